//! The pid file, held under an exclusive lock for the daemon's life.
//!
//! The lock (not the file's existence) says a daemon runs: a stale file
//! left by a crash does not block a restart, while a second copy started
//! beside a live one is refused. Dropping a [`PidFile`] removes it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug)]
pub enum PidFileError {
    Open {
        path: PathBuf,
        source: io::Error,
    },
    /// Another process holds the lock; its pid, if the file says.
    Locked {
        path: PathBuf,
        pid: Option<u32>,
    },
    Write {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidFileError::Open { path, source } => {
                write!(f, "cannot open pid file {}: {source}", path.display())
            }
            PidFileError::Locked {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "another copy is running (pid {pid}, pid file {} is locked)",
                path.display()
            ),
            PidFileError::Locked { path, pid: None } => write!(
                f,
                "another copy is running (pid file {} is locked)",
                path.display()
            ),
            PidFileError::Write { path, source } => {
                write!(f, "cannot write pid file {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for PidFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PidFileError::Open { source, .. } | PidFileError::Write { source, .. } => Some(source),
            PidFileError::Locked { .. } => None,
        }
    }
}

/// A locked pid file with this process's pid in it.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Never read: holding it holds the lock, until the drop.
    _lock: Flock<File>,
}

impl PidFile {
    /// Creates (or takes over) `path`, locks it and writes our pid.
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let open_error = |source| PidFileError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(open_error)?;
        }
        // A daemon that is exiting unlinks its pid file while it still holds
        // the lock: a lock won on that unlinked file would be no lock at
        // all. Take it again when the path names another file by then.
        let mut attempts = 0;
        let mut file = loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                // As Ganeti's: readable by root only.
                .mode(0o600)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(path)
                .map_err(open_error)?;
            let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let mut text = String::new();
                    let pid = file
                        .read_to_string(&mut text)
                        .ok()
                        .and_then(|_| text.trim().parse().ok());
                    let path = path.to_owned();
                    return Err(PidFileError::Locked { path, pid });
                }
                Err((_, errno)) => return Err(open_error(io::Error::from(errno))),
            };
            let same = match (locked.metadata(), std::fs::metadata(path)) {
                (Ok(held), Ok(named)) => held.ino() == named.ino() && held.dev() == named.dev(),
                _ => false,
            };
            attempts += 1;
            if same || attempts == 3 {
                break locked;
            }
        };
        let write_error = |source| PidFileError::Write {
            path: path.to_owned(),
            source,
        };
        file.set_len(0).map_err(write_error)?;
        file.rewind().map_err(write_error)?;
        writeln!(file, "{}", std::process::id()).map_err(write_error)?;
        Ok(PidFile {
            path: path.to_owned(),
            _lock: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so no new daemon's file is taken away.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_locks_and_removes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("run/kvmd.pid");
        let pid_file = PidFile::create(&path).expect("first copy");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("{}\n", std::process::id()));
        match PidFile::create(&path) {
            Err(PidFileError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second copy not refused: {other:?}"),
        }
        drop(pid_file);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_file_is_taken_over() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("kvmd.pid");
        std::fs::write(&path, "999999999\nlonger junk\n").expect("write");
        let _pid_file = PidFile::create(&path).expect("stale file taken over");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, format!("{}\n", std::process::id()));
    }
}
