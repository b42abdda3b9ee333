//! Evidence that must survive a daemon restart.
//!
//! This module owns the state directory: one small file per instance
//! holding what a restarted daemon cannot learn from QEMU again. The case
//! that matters: an administrator pressed the ACPI power button
//! (POWERDOWN), the daemon stopped or crashed, and the guest obeyed later.
//! QEMU does not repeat past events, and the guest's SHUTDOWN says
//! `guest: true`: without the file, a restarted daemon would call that a
//! user shutdown.
//!
//! A file names the socket it belongs to (device and inode), so a file
//! left for a socket that is gone or was recreated is stale and ignored.
//! Files are written atomically (temporary file, then rename) relative to
//! a descriptor of the directory, without following symlinks, and removed
//! once the instance is decided.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, mkdir, unlinkat};

use crate::decision::Carried;

/// A socket file's identity: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketId {
    pub dev: u64,
    pub ino: u64,
}

/// What one instance's file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub socket: SocketId,
    pub carried: Carried,
}

const MAGIC: &str = "kvmd-state 1";
/// A state file is one short line; anything longer is not ours.
const MAX_FILE: usize = 256;

impl Saved {
    fn encode(&self) -> String {
        format!(
            "{MAGIC} dev={} ino={} powerdown={} paused={}\n",
            self.socket.dev,
            self.socket.ino,
            u8::from(self.carried.powerdown_pending),
            u8::from(self.carried.paused)
        )
    }

    fn decode(text: &str) -> Option<Saved> {
        let rest = text.strip_suffix('\n')?.strip_prefix(MAGIC)?;
        let mut fields = rest.split(' ').skip(1);
        let mut field = |key: &str| -> Option<u64> {
            fields
                .next()?
                .strip_prefix(key)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        let dev = field("dev")?;
        let ino = field("ino")?;
        let flag = |value: u64| match value {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        let powerdown_pending = flag(field("powerdown")?)?;
        let paused = flag(field("paused")?)?;
        Some(Saved {
            socket: SocketId { dev, ino },
            carried: Carried {
                powerdown_pending,
                paused,
            },
        })
    }
}

/// Why a state file could not be written.
#[derive(Debug)]
pub struct StateError {
    pub path: PathBuf,
    pub errno: Errno,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.errno)
    }
}

impl std::error::Error for StateError {}

/// The state directory (made on first use).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub fn new(path: PathBuf) -> StateDir {
        StateDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self, create: bool) -> Result<OwnedFd, Errno> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match open(&self.path, flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                // Only the daemon reads it.
                match mkdir(&self.path, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => open(&self.path, flags, Mode::empty()),
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    fn error(&self, name: &OsStr, errno: Errno) -> StateError {
        StateError {
            path: self.path.join(name),
            errno,
        }
    }

    /// Writes `saved` for the instance whose socket is `socket_name`.
    pub fn save(&self, socket_name: &OsStr, saved: &Saved) -> Result<(), StateError> {
        let name = file_name(socket_name);
        let dir = self.open(true).map_err(|e| self.error(&name, e))?;
        let mut temporary = name.clone();
        temporary.push(".new");
        write_new(dir.as_fd(), &temporary, saved.encode().as_bytes())
            .and_then(|()| renameat(&dir, temporary.as_bytes(), &dir, name.as_bytes()))
            .map_err(|e| {
                let _ = unlinkat(&dir, temporary.as_bytes(), UnlinkatFlags::NoRemoveDir);
                self.error(&name, e)
            })
    }

    /// What was saved for the socket `socket_name`, if anything readable.
    pub fn load(&self, socket_name: &OsStr) -> Option<Saved> {
        let dir = self.open(false).ok()?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(
            &dir,
            file_name(socket_name).as_bytes(),
            flags,
            Mode::empty(),
        )
        .ok()?;
        let mut text = Vec::with_capacity(MAX_FILE);
        let file = std::fs::File::from(fd);
        io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE as u64 + 1), &mut text).ok()?;
        if text.len() > MAX_FILE {
            return None;
        }
        Saved::decode(std::str::from_utf8(&text).ok()?)
    }

    /// Forgets the instance (decided, or its file is stale).
    pub fn remove(&self, socket_name: &OsStr) {
        if let Ok(dir) = self.open(false) {
            let _ = unlinkat(
                &dir,
                file_name(socket_name).as_bytes(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }

    /// The socket names that have a state file.
    pub fn socket_names(&self) -> Vec<OsString> {
        let Ok(dir) = self.open(false) else {
            return Vec::new();
        };
        let Ok(mut entries) = nix::dir::Dir::from_fd(dir) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_bytes();
                let stem = name.strip_suffix(SUFFIX.as_bytes())?;
                let mut socket = OsStr::from_bytes(stem).to_owned();
                socket.push(".kvmd");
                Some(socket)
            })
            .collect()
    }
}

const SUFFIX: &str = ".state";

/// `<instance>.state` for the socket `<instance>.kvmd`.
fn file_name(socket_name: &OsStr) -> OsString {
    let bytes = socket_name.as_bytes();
    let stem = bytes.strip_suffix(b".kvmd").unwrap_or(bytes);
    let mut name = OsStr::from_bytes(stem).to_owned();
    name.push(SUFFIX);
    name
}

fn write_new(dir: BorrowedFd<'_>, name: &OsStr, bytes: &[u8]) -> Result<(), Errno> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, name.as_bytes(), flags, Mode::from_bits_truncate(0o600))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(io_errno)
}

fn io_errno(e: io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(powerdown_pending: bool, paused: bool) -> Saved {
        Saved {
            socket: SocketId { dev: 2049, ino: 77 },
            carried: Carried {
                powerdown_pending,
                paused,
            },
        }
    }

    #[test]
    fn round_trips() {
        for (p, q) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = saved(p, q);
            assert_eq!(Saved::decode(&s.encode()), Some(s));
        }
    }

    #[test]
    fn rejects_anything_else() {
        for text in [
            "",
            "kvmd-state 1\n",
            "kvmd-state 2 dev=1 ino=2 powerdown=1 paused=0\n",
            "kvmd-state 1 dev=1 ino=2 powerdown=2 paused=0\n",
            "kvmd-state 1 dev=1 ino=2 powerdown=1 paused=0",
            "kvmd-state 1 ino=2 dev=1 powerdown=1 paused=0\n",
            "kvmd-state 1 dev=-1 ino=2 powerdown=1 paused=0\n",
        ] {
            assert_eq!(Saved::decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn saves_loads_lists_and_removes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::new(tmp.path().join("state"));
        let name = OsStr::new("vm1.kvmd");
        assert_eq!(dir.load(name), None);
        dir.save(name, &saved(true, false)).expect("save");
        assert_eq!(dir.load(name), Some(saved(true, false)));
        dir.save(name, &saved(false, true)).expect("overwrite");
        assert_eq!(dir.load(name), Some(saved(false, true)));
        assert_eq!(dir.socket_names(), vec![OsString::from("vm1.kvmd")]);
        let mode = std::fs::metadata(dir.path()).expect("stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        dir.remove(name);
        assert_eq!(dir.load(name), None);
        assert!(dir.socket_names().is_empty());
    }

    #[test]
    fn never_follows_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::new(tmp.path().join("state"));
        dir.save(OsStr::new("other.kvmd"), &saved(false, false))
            .expect("save");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        std::os::unix::fs::symlink(&victim, dir.path().join("vm.state.new")).expect("symlink");
        assert!(
            dir.save(OsStr::new("vm.kvmd"), &saved(true, false))
                .is_err()
        );
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        std::os::unix::fs::symlink(&victim, dir.path().join("vm2.state")).expect("symlink");
        assert_eq!(dir.load(OsStr::new("vm2.kvmd")), None);
    }
}
