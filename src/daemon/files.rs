//! The system calls the fleet's actions need in the control directory,
//! all relative to one descriptor of it, none following a symlink.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use mio::net::UnixStream;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use kvmd_core::decision::Verdict;
use kvmd_core::fleet::{ConnectError, Look, Outcome, RecordError};
use kvmd_core::name::InstanceName;
use kvmd_core::saved::SocketId;

use crate::adapters::shutdown_file;
use crate::adapters::watch::{Unavailable, Watcher};

/// The control directory, opened at most once per loop turn (and again
/// after a crawl). Closed at the end of the turn: a descriptor kept would
/// keep its file system busy.
#[derive(Default)]
pub struct CtrlDir(Option<OwnedFd>);

impl CtrlDir {
    pub fn get(&mut self, watcher: &Watcher) -> Result<BorrowedFd<'_>, Unavailable> {
        let fd = match self.0.take() {
            Some(fd) => fd,
            None => watcher.open_ctrl_dir()?,
        };
        let fd: &OwnedFd = self.0.insert(fd);
        Ok(fd.as_fd())
    }

    pub fn close(&mut self) {
        self.0 = None;
    }
}

/// What stands at `name`'s socket file.
pub fn look(dir: &mut CtrlDir, watcher: &Watcher, name: &InstanceName) -> Look {
    let dir = match dir.get(watcher) {
        Ok(dir) => dir,
        Err(Unavailable::NotWatched) => return Look::DirAway,
        Err(Unavailable::Error(e)) => return Look::DirFailed(core(e)),
    };
    let socket = name.socket_file();
    match fstatat(dir, socket.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => classify(&stat),
        Err(Errno::ENOENT) => Look::Absent,
        Err(e) => Look::Failed(core(e)),
    }
}

fn classify(stat: &FileStat) -> Look {
    let id = SocketId {
        dev: stat.st_dev,
        ino: stat.st_ino,
    };
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK {
        Look::Socket {
            id,
            owner: stat.st_uid,
        }
    } else {
        Look::Other { id }
    }
}

/// Connects to `name`'s socket if it is still the file `socket`.
///
/// The socket file itself is opened (`O_PATH`, no symlink followed) and
/// checked; connecting through `/proc/self/fd/N` of that handle reaches
/// exactly the inode that was checked, and fits `sun_path` however long
/// the name or the control directory's path is.
pub fn connect(
    dir: &mut CtrlDir,
    watcher: &Watcher,
    name: &InstanceName,
    socket: SocketId,
) -> Result<UnixStream, ConnectError> {
    let dir = match dir.get(watcher) {
        Ok(dir) => dir,
        Err(Unavailable::NotWatched) => return Err(ConnectError::DirAway),
        Err(Unavailable::Error(e)) => return Err(ConnectError::DirFailed(core(e))),
    };
    let handle = open_path(dir, &name.socket_file()).map_err(|e| ConnectError::Open(core(e)))?;
    let stat = fstat(&handle).map_err(|e| ConnectError::Open(core(e)))?;
    if !matches!(classify(&stat), Look::Socket { id, .. } if id == socket) {
        return Err(ConnectError::NotThisSocket);
    }
    let path = format!("/proc/self/fd/{}", handle.as_raw_fd());
    UnixStream::connect(path).map_err(|e| ConnectError::Connect(errno(&e)))
}

fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name.as_bytes(), flags, Mode::empty())
}

/// Creates or removes `name`'s shutdown file, as `verdict` says.
pub fn record(
    dir: &mut CtrlDir,
    watcher: &Watcher,
    name: &InstanceName,
    verdict: Verdict,
) -> Result<Outcome, RecordError> {
    let dir = match dir.get(watcher) {
        Ok(dir) => dir,
        Err(Unavailable::NotWatched) => return Err(RecordError::DirAway),
        Err(Unavailable::Error(e)) => return Err(RecordError::DirFailed(core(e))),
    };
    let file = name.shutdown_file();
    shutdown_file::record(dir, &file, verdict.is_user_shutdown())
        .map_err(|e| RecordError::File(core(e)))
}

/// The errno behind an I/O error (EIO when it has none), as the fleet
/// takes it.
pub fn errno(e: &std::io::Error) -> kvmd_core::Errno {
    e.raw_os_error()
        .map_or(kvmd_core::Errno::EIO, kvmd_core::Errno::from_raw)
}

/// A system call's error as the fleet takes it: the boundary between
/// `nix` and the pure core, which has its own type.
pub fn core(e: Errno) -> kvmd_core::Errno {
    kvmd_core::Errno::from_raw(e as i32)
}

/// Replaces the file at `path` with `bytes` atomically: a temporary file
/// beside it (so on the same file system) renamed over it. A reader sees
/// the old file or the new one, never half of one.
pub fn replace(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    let name = path.file_name().unwrap_or_default();
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(".tmp");
    let temporary = dir.join(temporary);
    // Whatever stands at the temporary name goes first (a fifo there
    // must not block the loop in open, a symlink must not be followed);
    // the file is then created new, never opened.
    let _ = std::fs::remove_file(&temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .mode(0o644)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
