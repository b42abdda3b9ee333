//! Verdict hooks' processes: spawned without waiting, each in its own
//! process group, reaped through a pidfd in the loop's poll, their output
//! read through pipes in the same poll and logged line by line, bounded.
//! What runs when is the fleet's ([`kvmd_core::fleet::HookPolicy`]).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};

use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg, sigprocmask};
use nix::unistd::Pid;

use kvmd_core::Errno;
use kvmd_core::fleet::{HookExit, HookId, HookJob, HookSignal};
use kvmd_core::name::InstanceName;
use kvmd_core::saved::Qemu;

/// The PATH a hook gets: the system's, nothing of kvmd's environment.
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// What one run may put in the log; the rest is counted, not kept.
const MAX_LOGGED: usize = 16 * 1024;
/// A line longer than this is cut (and the cut counted).
const MAX_LINE: usize = 1024;

/// Which of a hook's descriptors a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Exit,
    Stdout,
    Stderr,
}

/// A hook's tokens: three per hook from `base` on.
pub fn token(base: usize, id: HookId, part: Part) -> Token {
    let offset = match part {
        Part::Exit => 0,
        Part::Stdout => 1,
        Part::Stderr => 2,
    };
    Token(base + id.0 * 3 + offset)
}

/// The hook and part a token is for.
pub fn part_of(base: usize, token: Token) -> (HookId, Part) {
    let n = token.0 - base;
    let part = match n % 3 {
        0 => Part::Exit,
        1 => Part::Stdout,
        _ => Part::Stderr,
    };
    (HookId(n / 3), part)
}

/// A stream of a hook's output, read into lines.
struct Output<R> {
    pipe: Option<R>,
    partial: Vec<u8>,
}

impl<R: Read + AsRawFd> Output<R> {
    fn new(pipe: Option<R>) -> Self {
        Output {
            pipe,
            partial: Vec::new(),
        }
    }
}

struct Running {
    name: InstanceName,
    child: Child,
    /// Sent SIGTERM (past its time): when its first process ends, the rest
    /// of its group gets SIGKILL (a child may ignore SIGTERM).
    terminated: bool,
    pidfd: OwnedFd,
    stdout: Output<ChildStdout>,
    stderr: Output<ChildStderr>,
    logged: usize,
    dropped: usize,
}

/// The hook program and the hooks running. See the module documentation.
pub struct HookRunner {
    program: PathBuf,
    ctrl_dir: PathBuf,
    base: usize,
    running: HashMap<HookId, Running>,
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call; the descriptor returned, if any, is
    // new and owned by no one else.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by pidfd_open and is not shared.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn set_nonblocking(fd: &impl std::os::fd::AsFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
    }
}

impl HookRunner {
    pub fn new(program: PathBuf, ctrl_dir: &Path, base: usize) -> HookRunner {
        HookRunner {
            program,
            ctrl_dir: ctrl_dir.to_owned(),
            base,
            running: HashMap::new(),
        }
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base
    }

    /// Starts `job`'s hook: `PROG INSTANCE VERDICT REASON` with its
    /// environment, stdin from /dev/null, its own process group, every
    /// descriptor but 0-2 closed, no signal blocked.
    pub fn spawn(&mut self, id: HookId, job: &HookJob, registry: &Registry) -> Result<Qemu, Errno> {
        let verdict = job.verdict().as_str();
        let name = job.name.as_os_str();
        let mut command = Command::new(&self.program);
        command
            .arg(name)
            .arg(verdict)
            .arg(job.reason.as_str())
            .env_clear()
            .env("PATH", HOOK_PATH)
            .env("KVMD_INSTANCE", name)
            .env("KVMD_VERDICT", verdict)
            .env("KVMD_REASON", job.reason.as_str())
            .env("KVMD_CTRL_DIR", &self.ctrl_dir)
            .env(
                "KVMD_SHUTDOWN_FILE",
                self.ctrl_dir.join(job.name.shutdown_file()),
            )
            .env("KVMD_HOOK_ATTEMPT", job.attempt.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir("/")
            .process_group(0);
        if let Some(pid) = job.qemu_pid {
            command.env("KVMD_QEMU_PID", pid.to_string());
        }
        if let Some(by) = &job.intent_by {
            command.env("KVMD_INTENT_BY", by);
        }
        // SAFETY: only async-signal-safe system calls between fork and exec:
        // kvmd blocks TERM, INT and HUP (read from a signalfd) and a hook
        // must not inherit that; and every descriptor above 2 is marked
        // close-on-exec, whatever kvmd inherited in the foreground.
        unsafe {
            command.pre_exec(|| {
                sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
                nix::libc::syscall(
                    nix::libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    nix::libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| super::files::errno(&e))?;
        let pid = child.id();
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // Not watchable: end it now rather than leave it unreaped.
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ = child.wait();
                return Err(super::files::errno(&e));
            }
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let register = |fd: i32, part| {
            registry.register(
                &mut SourceFd(&fd),
                token(self.base, id, part),
                Interest::READABLE,
            )
        };
        // Unwatched, it would never be reaped: ended at once instead.
        if let Err(e) = register(pidfd.as_raw_fd(), Part::Exit) {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(super::files::errno(&e));
        }
        if let Some(out) = &stdout {
            set_nonblocking(out);
            let _ = register(out.as_raw_fd(), Part::Stdout);
        }
        if let Some(err) = &stderr {
            set_nonblocking(err);
            let _ = register(err.as_raw_fd(), Part::Stderr);
        }
        debug!(
            "{}: hook started (pid {pid}, attempt {})",
            job.name, job.attempt
        );
        let process = crate::adapters::peer::of_pid(pid).unwrap_or(Qemu { pid, start: 0 });
        self.running.insert(
            id,
            Running {
                name: job.name.clone(),
                child,
                terminated: false,
                pidfd,
                stdout: Output::new(stdout),
                stderr: Output::new(stderr),
                logged: 0,
                dropped: 0,
            },
        );
        Ok(process)
    }

    /// Serves a hook's readiness: its output, or its exit (then reaped,
    /// its descriptors closed, and the exit returned).
    pub fn handle(&mut self, token: Token, registry: &Registry) -> Option<(HookId, HookExit)> {
        let (id, part) = part_of(self.base, token);
        let hook = self.running.get_mut(&id)?;
        match part {
            Part::Stdout => read_lines(
                &mut hook.stdout,
                &hook.name,
                &mut hook.logged,
                &mut hook.dropped,
            ),
            Part::Stderr => read_lines(
                &mut hook.stderr,
                &hook.name,
                &mut hook.logged,
                &mut hook.dropped,
            ),
            Part::Exit => {}
        }
        if part != Part::Exit {
            return None;
        }
        if hook.terminated {
            // Its first process ended; whatever it left in its group (which
            // the unreaped process still holds) goes too.
            let _ = killpg(Pid::from_raw(hook.child.id() as i32), Signal::SIGKILL);
        }
        let status = match hook.child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return None, // not yet (a spurious readiness)
            Err(e) => {
                debug!("{}: hook: wait: {e}", hook.name);
                return None;
            }
        };
        // What it printed before it ended; a grandchild keeping the pipes
        // open is not waited for.
        let mut hook = self.running.remove(&id)?;
        read_lines(
            &mut hook.stdout,
            &hook.name,
            &mut hook.logged,
            &mut hook.dropped,
        );
        read_lines(
            &mut hook.stderr,
            &hook.name,
            &mut hook.logged,
            &mut hook.dropped,
        );
        flush_partial(
            &mut hook.stdout,
            &hook.name,
            &mut hook.logged,
            &mut hook.dropped,
        );
        flush_partial(
            &mut hook.stderr,
            &hook.name,
            &mut hook.logged,
            &mut hook.dropped,
        );
        if hook.dropped > 0 {
            warn!(
                "{}: hook: {} more bytes of its output not logged (at most {MAX_LOGGED} a run)",
                hook.name, hook.dropped
            );
        }
        let _ = registry.deregister(&mut SourceFd(&hook.pidfd.as_raw_fd()));
        for fd in [
            hook.stdout.pipe.as_ref().map(AsRawFd::as_raw_fd),
            hook.stderr.pipe.as_ref().map(AsRawFd::as_raw_fd),
        ]
        .into_iter()
        .flatten()
        {
            let _ = registry.deregister(&mut SourceFd(&fd));
        }
        let exit = match (status.code(), status.signal()) {
            (Some(code), _) => HookExit::Exited(code),
            (None, Some(signal)) => HookExit::Signaled(signal),
            (None, None) => HookExit::Signaled(0),
        };
        Some((id, exit))
    }

    /// Signals a hook's whole process group (its children too).
    pub fn signal(&mut self, id: HookId, signal: HookSignal) {
        let Some(hook) = self.running.get_mut(&id) else {
            return;
        };
        let signal = match signal {
            HookSignal::Term => {
                hook.terminated = true;
                Signal::SIGTERM
            }
            HookSignal::Kill => Signal::SIGKILL,
        };
        if let Err(e) = killpg(Pid::from_raw(hook.child.id() as i32), signal) {
            debug!("{}: hook: {signal}: {e}", hook.name);
        }
    }
}

/// Ends the process group of a hook a killed kvmd left running (its
/// outcome cannot be known; the hook runs again), if that very process
/// still exists.
pub fn end_orphan(job: &HookJob) {
    let Some(process) = job.running else {
        return;
    };
    // Its group: processes whose group is the hook's first pid and that
    // started no earlier than it (a pid reused since cannot pass).
    let members = group_members(process);
    if members.is_empty() {
        return;
    }
    warn!(
        "{}: a hook a killed kvmd left running (pid {}) is ended; it runs again",
        job.name, process.pid
    );
    for pid in members {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// The processes of the group `leader` led, by /proc: group id the
/// leader's pid, started at or after it.
fn group_members(leader: Qemu) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split(' ').collect();
            // After the name: state, ppid, pgrp, ..., starttime (the 20th).
            let pgrp = fields.get(2).and_then(|f| f.parse::<u32>().ok());
            let start = fields.get(19).and_then(|f| f.parse::<u64>().ok());
            pgrp == Some(leader.pid) && start.is_some_and(|s| s >= leader.start)
        })
        .collect()
}

/// Reads what a pipe has, logging whole lines while the run's budget
/// lasts.
fn read_lines<R: Read + AsRawFd>(
    out: &mut Output<R>,
    name: &InstanceName,
    logged: &mut usize,
    dropped: &mut usize,
) {
    let Some(pipe) = &mut out.pipe else {
        return;
    };
    let mut buf = [0u8; 4096];
    // A few reads a turn: a flooding hook cannot keep the loop busy.
    for _ in 0..16 {
        let n = match pipe.read(&mut buf) {
            Ok(0) => {
                out.pipe = None;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        for &byte in &buf[..n] {
            if byte == b'\n' {
                let line = std::mem::take(&mut out.partial);
                log_line(&line, name, logged, dropped);
            } else if out.partial.len() < MAX_LINE {
                out.partial.push(byte);
            } else {
                *dropped += 1;
            }
        }
    }
}

fn flush_partial<R>(
    out: &mut Output<R>,
    name: &InstanceName,
    logged: &mut usize,
    dropped: &mut usize,
) {
    if !out.partial.is_empty() {
        let line = std::mem::take(&mut out.partial);
        log_line(&line, name, logged, dropped);
    }
}

fn log_line(line: &[u8], name: &InstanceName, logged: &mut usize, dropped: &mut usize) {
    if *logged + line.len() > MAX_LOGGED {
        *dropped += line.len() + 1;
        return;
    }
    *logged += line.len() + 1;
    info!("{name}: hook: {}", line.escape_ascii());
}
