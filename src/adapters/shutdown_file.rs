//! Recording a verdict: `<instance>.shutdown` in the control directory.
//!
//! This module owns the only writes kvmd makes in the control directory.
//! Ganeti tests the file's existence only. Every call works relative to a
//! descriptor of the control directory, never by path, so a directory
//! swapped under the daemon cannot redirect it; a symlink in the file's
//! place is never followed and an existing file is never truncated.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use kvmd_core::fleet::Outcome;

/// Creates (`user_shutdown`) or removes the shutdown file `name` in `dir`.
pub(crate) fn record(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    user_shutdown: bool,
) -> Result<Outcome, Errno> {
    if user_shutdown {
        create(dir, name)
    } else {
        remove(dir, name)
    }
}

fn create(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Outcome, Errno> {
    match create_new(dir, name) {
        Err(Errno::EEXIST) => {}
        other => return other.map(|()| Outcome::Created),
    }
    // O_CREAT|O_EXCL fails on any existing name, symlinks included, so
    // nothing was followed. Only a symlink needs mending: it would make
    // Ganeti's existence test look at someone else's file.
    if !is_symlink(&fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?) {
        return Ok(Outcome::Kept);
    }
    unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
    create_new(dir, name).map(|()| Outcome::ReplacedSymlink)
}

fn create_new(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    // Read-only: the file stays empty; kvmd never writes into it.
    let flags = OFlag::O_RDONLY
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_NOCTTY
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o644);
    openat(dir, name.as_bytes(), flags, mode).map(drop)
}

fn remove(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Outcome, Errno> {
    // unlinkat removes a symlink itself, never its target.
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(Outcome::Removed),
        Err(Errno::ENOENT) => Ok(Outcome::WasAbsent),
        // Ganeti's existence test would read a directory as "user shut it
        // down". An empty one holds nothing and goes; anything in one is
        // someone's, and stays (an error the caller retries and logs).
        Err(e @ (Errno::EISDIR | Errno::EPERM)) => {
            // EPERM is also an immutable file's answer: report that, not
            // what rmdir would say of a non-directory.
            let kind = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?.st_mode;
            if SFlag::from_bits_truncate(kind) & SFlag::S_IFMT != SFlag::S_IFDIR {
                return Err(e);
            }
            unlinkat(dir, name, UnlinkatFlags::RemoveDir).map(|()| Outcome::RemovedDirectory)
        }
        Err(e) => Err(e),
    }
}

fn is_symlink(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::fd::AsFd;

    fn dir() -> (tempfile::TempDir, fs::File) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fd = fs::File::open(tmp.path()).expect("open dir");
        (tmp, fd)
    }

    const NAME: &str = "vm.shutdown";

    #[test]
    fn creates_and_removes() {
        let (tmp, fd) = dir();
        let name = OsStr::new(NAME);
        assert_eq!(record(fd.as_fd(), name, true), Ok(Outcome::Created));
        assert!(tmp.path().join(NAME).is_file());
        assert_eq!(record(fd.as_fd(), name, true), Ok(Outcome::Kept));
        assert_eq!(record(fd.as_fd(), name, false), Ok(Outcome::Removed));
        assert!(!tmp.path().join(NAME).exists());
        assert_eq!(record(fd.as_fd(), name, false), Ok(Outcome::WasAbsent));
    }

    #[test]
    fn never_truncates() {
        let (tmp, fd) = dir();
        fs::write(tmp.path().join(NAME), b"keep me").expect("write");
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), true),
            Ok(Outcome::Kept)
        );
        assert_eq!(fs::read(tmp.path().join(NAME)).expect("read"), b"keep me");
    }

    #[test]
    fn never_follows_a_symlink() {
        let (tmp, fd) = dir();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").expect("write");
        std::os::unix::fs::symlink(&victim, tmp.path().join(NAME)).expect("symlink");
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), true),
            Ok(Outcome::ReplacedSymlink)
        );
        let meta = fs::symlink_metadata(tmp.path().join(NAME)).expect("stat");
        assert!(meta.is_file());
        assert_eq!(fs::read(&victim).expect("read"), b"precious");

        // Removal takes the link away, not its target.
        fs::remove_file(tmp.path().join(NAME)).expect("rm");
        std::os::unix::fs::symlink(&victim, tmp.path().join(NAME)).expect("symlink");
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), false),
            Ok(Outcome::Removed)
        );
        assert_eq!(fs::read(&victim).expect("read"), b"precious");
    }

    #[test]
    fn a_directory_in_the_way_is_removed_only_when_empty() {
        let (tmp, fd) = dir();
        let path = tmp.path().join(NAME);
        fs::create_dir(&path).expect("mkdir");
        fs::write(path.join("someones"), b"data").expect("write");
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), true),
            Ok(Outcome::Kept)
        );
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), false),
            Err(Errno::ENOTEMPTY)
        );
        assert_eq!(fs::read(path.join("someones")).expect("read"), b"data");
        fs::remove_file(path.join("someones")).expect("rm");
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), false),
            Ok(Outcome::RemovedDirectory)
        );
        assert!(!path.exists());
    }

    #[test]
    fn a_fifo_is_never_opened() {
        let (tmp, fd) = dir();
        let path = tmp.path().join(NAME);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).expect("mkfifo");
        // Opening a fifo for writing would block the daemon: it is kept as
        // it stands, or removed.
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), true),
            Ok(Outcome::Kept)
        );
        assert_eq!(
            record(fd.as_fd(), OsStr::new(NAME), false),
            Ok(Outcome::Removed)
        );
        assert!(fs::symlink_metadata(&path).is_err());
    }
}
