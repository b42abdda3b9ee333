//! Detaching from the terminal, as a classic Unix daemon.
//!
//! This module owns the fork: [`detach`] returns only in the daemon (a
//! grandchild in its own session, working directory `/`, standard streams
//! on `/dev/null`). The process that was started waits until the daemon
//! reports how its start-up went through a [`StartupReport`], and exits
//! with a status that says so: 0 when the daemon runs (or is not needed on
//! this node), 1 with the reason on its stderr when it could not start.
//! So `start-stop-daemon` and init scripts see failures.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid};

const READY: u8 = b'R';
const NOT_NEEDED: u8 = b'N';
const FAILED: u8 = b'F';

/// The daemon's end of the start-up pipe. Dropping it unsent tells the
/// waiting process that start-up failed without a word.
#[derive(Debug)]
pub struct StartupReport {
    pipe: File,
}

impl StartupReport {
    /// The daemon is running: the invoker exits 0.
    pub fn ready(self) {
        self.send(READY, "");
    }

    /// The node does not need kvmd: the invoker exits 0, as Ganeti's does.
    pub fn not_needed(self) {
        self.send(NOT_NEEDED, "");
    }

    /// The daemon cannot start: the invoker prints `why` and exits 1.
    pub fn failed(self, why: &str) {
        self.send(FAILED, why);
    }

    fn send(mut self, status: u8, message: &str) {
        let mut bytes = vec![status];
        bytes.extend_from_slice(message.as_bytes());
        // Nothing to do if the invoker is gone.
        let _ = self.pipe.write_all(&bytes);
    }
}

/// Forks into the background. Returns in the daemon only; the invoking
/// process exits from in here once the daemon has reported.
pub fn detach(program: &str) -> nix::Result<StartupReport> {
    close_inherited();
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: kvmd is single-threaded at this point (no thread was ever
    // started), so the child may do anything after fork.
    if let ForkResult::Parent { child } = unsafe { fork() }? {
        drop(write_end);
        let status = await_report(program, read_end);
        // The intermediate child exits at once; reap it.
        let _ = waitpid(child, None);
        std::process::exit(status);
    }
    drop(read_end);
    // A new session: no controlling terminal, immune to the invoker's
    // hang-up. Then fork again, so the daemon is no session leader and
    // can never acquire a terminal.
    setsid()?;
    // SAFETY: as above, still single-threaded.
    if let ForkResult::Parent { .. } = unsafe { fork() }? {
        std::process::exit(0);
    }
    chdir("/")?;
    umask(Mode::from_bits_truncate(0o022));
    let null = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())?;
    dup2_stdin(&null)?;
    dup2_stdout(&null)?;
    dup2_stderr(&null)?;
    Ok(StartupReport {
        pipe: File::from(write_end),
    })
}

/// A daemon keeps nothing its invoker left open (a shell's or a
/// supervisor's descriptors would otherwise live for months).
fn close_inherited() {
    // SAFETY: no descriptor above stderr is owned by anything in this
    // process yet: detaching is the first thing kvmd does.
    if unsafe { nix::libc::close_range(3, nix::libc::c_uint::MAX, 0) } == 0 {
        return;
    }
    // Kernels before 5.9 have no close_range: close what /proc lists.
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in open {
        // SAFETY: as above; the descriptor read_dir itself used is closed
        // already, and closing it again only fails.
        unsafe { nix::libc::close(fd) };
    }
}

/// What the invoking process exits with, once the daemon reported.
fn await_report(program: &str, read_end: OwnedFd) -> i32 {
    let mut report = Vec::new();
    let _ = File::from(read_end).read_to_end(&mut report);
    match report.split_first() {
        Some((&READY | &NOT_NEEDED, _)) => 0,
        Some((&FAILED, why)) => {
            eprintln!("{program}: {}", String::from_utf8_lossy(why));
            1
        }
        _ => {
            eprintln!("{program}: the daemon ended during start-up; see its log");
            1
        }
    }
}
