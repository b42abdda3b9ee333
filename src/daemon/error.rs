//! Why the daemon could not start or go on.

use std::fmt;
use std::io;

use nix::errno::Errno;

use super::ControlError;

/// Why the daemon could not start or go on. Only start-up and `poll`
/// failures end it; one connection's failure only ends that connection.
#[derive(Debug)]
pub enum DaemonError {
    Poll(io::Error),
    Inotify(io::Error),
    Signals(Errno),
    Control(ControlError),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Poll(e) => write!(f, "event loop failed: {e}"),
            DaemonError::Inotify(e) => write!(f, "cannot set up inotify: {e}"),
            DaemonError::Signals(e) => write!(f, "cannot set up signal handling: {e}"),
            DaemonError::Control(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::Poll(e) | DaemonError::Inotify(e) => Some(e),
            DaemonError::Signals(e) => Some(e),
            DaemonError::Control(e) => Some(e),
        }
    }
}
