//! Signals, read from a signalfd inside the loop: no work in handlers.

use log::{error, info};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsRawFd, RawFd};

use crate::adapters::logging;

/// Blocks the signals the loop reads from its signalfd. `main` calls it
/// first thing: a SIGHUP from a log rotation during start-up must not kill
/// the daemon with the default action (the mask survives the forks of
/// detaching).
pub fn block_signals() -> Result<SigSet, Errno> {
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(signal);
    }
    mask.thread_block()?;
    Ok(mask)
}

/// TERM, INT and HUP, blocked and read from a signalfd.
pub struct Signals(SignalFd);

impl Signals {
    pub fn new() -> Result<Signals, Errno> {
        let mask = block_signals()?;
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        SignalFd::with_flags(&mask, flags).map(Signals)
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Reads every pending signal: SIGHUP reopens the log file; SIGTERM or
    /// SIGINT is returned, to end the loop.
    pub fn handle_readable(&mut self) -> Option<Signal> {
        loop {
            match self.0.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    // Logged after reopening, so the line opens the new file.
                    Ok(Signal::SIGHUP) => match logging::reopen() {
                        Ok(()) => info!("SIGHUP: log file reopened"),
                        Err(e) => error!("SIGHUP: {e}; still logging to the old file"),
                    },
                    Ok(signal) => return Some(signal),
                    Err(_) => {}
                },
                Ok(None) => return None,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    error!("cannot read signals: {e}");
                    return None;
                }
            }
        }
    }
}
