//! What the fleet tells an operator, as typed notices: the event loop
//! turns each into one log line (and, later, into what followers and
//! metrics see). The wording of each line lives here, and so does every
//! question asked of a notice as a whole (its level, its kind, the
//! instance and verdict it is about), so a new notice is matched in one
//! file.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use log::Level;

use super::HookEnd;
use crate::decision::{ReasonCode, Verdict, VerdictKind};
use crate::errno::Errno;
use crate::name::InstanceName;
use crate::qmp::{Event, RunState, Version};

/// Why an entry is not monitored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// A socket owned by someone kvmd does not trust.
    Untrusted {
        /// The socket's owner (uid).
        owner: u32,
    },
    /// A file, directory, fifo or symlink.
    NotASocket,
    /// Its `.shutdown` file would exceed `NAME_MAX`.
    NameTooLong,
}

/// Why an instance was given up on before it was ever connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The control directory went away.
    DirGone,
    /// The socket went away before it was connected.
    SocketWent,
    /// Opening the socket file failed.
    CannotOpen(Errno),
    /// Refused for longer than the connect window, or refused for good.
    CannotConnect(Errno),
    /// The connection could not be added to the poll.
    Unpollable,
}

/// Why a verdict could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Creating or removing the file failed.
    File(Errno),
    /// The control directory is not watched (gone, or being replaced).
    DirAway,
    /// Opening the control directory failed.
    DirFailed(Errno),
}

impl RecordError {
    /// Whether trying again may succeed once something passing is over
    /// (room on the disk, a read-write remount, descriptors). The rest
    /// (a non-empty directory in the file's place, say) needs a hand.
    pub fn mendable(self) -> bool {
        match self {
            RecordError::File(e) => !matches!(
                e,
                Errno::ENOTEMPTY
                    | Errno::EEXIST
                    | Errno::ENOTDIR
                    | Errno::EISDIR
                    | Errno::ELOOP
                    | Errno::ENAMETOOLONG
                    | Errno::EINVAL
            ),
            RecordError::DirAway | RecordError::DirFailed(_) => true,
        }
    }
}

/// What recording a verdict did to `<instance>.shutdown` (the adapter
/// that writes it says; the fleet shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file was created.
    Created,
    /// It existed already (any kind of file: Ganeti only asks "exists?").
    Kept,
    /// A symlink stood there; it was removed and a file created instead.
    ReplacedSymlink,
    /// The file was removed.
    Removed,
    /// An empty directory stood there (Ganeti would take it for a user
    /// shutdown); it was removed.
    RemovedDirectory,
    /// There was nothing to remove.
    WasAbsent,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Kept => "already there",
            Outcome::ReplacedSymlink => "a symlink stood there; replaced by a file",
            Outcome::Removed => "removed",
            Outcome::RemovedDirectory => "an empty directory stood there; removed",
            Outcome::WasAbsent => "already absent",
        })
    }
}

/// One thing to tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Negotiated: the instance is monitored.
    Monitoring {
        /// The instance.
        name: InstanceName,
        /// QEMU's version, if its greeting said.
        qemu: Option<Version>,
        /// The guest's state, if `query-status` said.
        state: Option<RunState>,
    },
    /// A connection's first unusable message (the rest go to debug).
    Malformed {
        /// The instance.
        name: InstanceName,
        /// What was wrong with it.
        problem: String,
    },
    /// QEMU refused the power button kvmd pressed (`kvmd powerdown-all`);
    /// the first refusal of a connection.
    PressRefused {
        /// The instance.
        name: InstanceName,
        /// QEMU's error reply.
        reply: String,
    },
    /// A lifecycle event of a monitored guest that changes its state or
    /// the evidence (STOP, RESUME, POWERDOWN, GUEST_PANICKED, SHUTDOWN; a
    /// reset storm is only counted). A debug line; `kvmd events` shows it.
    Guest {
        /// The instance.
        name: InstanceName,
        /// The event.
        event: Event,
    },
    /// Evidence an earlier run kept for this very QEMU was taken up.
    Restored {
        /// The instance.
        name: InstanceName,
    },
    /// An entry is not monitored (see [`Ignored`]).
    Ignored {
        /// The instance.
        name: InstanceName,
        /// Why.
        why: Ignored,
    },
    /// `fstatat` on its socket file failed.
    CannotLook {
        /// The instance.
        name: InstanceName,
        /// What the system call said.
        errno: Errno,
    },
    /// Its connection could not be added to the poll.
    Unpollable {
        /// The instance.
        name: InstanceName,
        /// What the system call said.
        errno: Errno,
    },
    /// An instance given up on before it was ever connected.
    NotMonitored {
        /// The instance.
        name: InstanceName,
        /// Why.
        why: GiveUp,
    },
    /// A verdict, written at the first try.
    Decided {
        /// The instance.
        name: InstanceName,
        /// The verdict.
        verdict: Verdict,
        /// The evidence, as the decision line shows it.
        grounds: String,
        /// What writing the file did.
        outcome: Outcome,
        /// The host intent that applied (`--by`), for followers.
        intent_by: Option<String>,
    },
    /// A verdict written after the file system refused it.
    RecordedAtLast {
        /// The instance.
        name: InstanceName,
        /// The verdict.
        verdict: Verdict,
        /// What writing the file did.
        outcome: Outcome,
        /// Writes tried before this one took.
        tries: u32,
        /// The host intent that applied (`--by`), for followers.
        intent_by: Option<String>,
    },
    /// A verdict the file system refused at the first try.
    Unrecorded {
        /// The instance.
        name: InstanceName,
        /// The verdict.
        verdict: Verdict,
        /// The evidence, as the decision line shows it.
        grounds: String,
        /// Why the file system refused it.
        error: RecordError,
        /// Whether it is tried again.
        again: bool,
    },
    /// A verdict refused again, and tried again (a debug line).
    StillUnrecorded {
        /// The instance.
        name: InstanceName,
        /// The verdict.
        verdict: Verdict,
        /// Why the file system refused it.
        error: RecordError,
    },
    /// A verdict refused again, for a reason no retry mends.
    Unrecordable {
        /// The instance.
        name: InstanceName,
        /// The verdict.
        verdict: Verdict,
        /// Why the file system refused it.
        error: RecordError,
    },
    /// An unwritten verdict dropped: a newer QEMU took the name.
    Moot {
        /// The instance.
        name: InstanceName,
        /// The verdict.
        verdict: Verdict,
    },
    /// No descriptor was free: instances wait until some are.
    OutOfDescriptors {
        /// What the system call said.
        errno: Errno,
    },
    /// Descriptors are free again: the waiting instances go on.
    DescriptorsFree,
    /// At exit, a verdict still unwritten.
    ExitingUnrecorded {
        /// The instance.
        name: InstanceName,
        /// The verdict.
        verdict: Verdict,
    },
    /// A verdict's hook ran (or could not).
    HookEnded {
        /// The instance.
        name: InstanceName,
        /// The verdict the hook was for: the user's or not.
        verdict: VerdictKind,
        /// The verdict's reason code.
        reason: ReasonCode,
        /// Which run it was (1: the first).
        attempt: u32,
        /// How the run came out.
        end: HookEnd,
        /// How long it ran.
        took: Duration,
        /// When it is tried again, if it is.
        retry_in: Option<Duration>,
    },
    /// An intent was given (`kvmd expect-stop`, `kvmd powerdown-all`).
    IntentGiven {
        /// The instance.
        name: InstanceName,
        /// Who gave the intent (`--by`).
        by: String,
        /// How long it stands, unclaimed.
        window: Duration,
    },
    /// An intent was withdrawn (`kvmd expect-stop --cancel`).
    IntentCancelled {
        /// The instance.
        name: InstanceName,
        /// Who gave the intent (`--by`).
        by: String,
    },
    /// An intent's window ended with no SHUTDOWN.
    IntentExpired {
        /// The instance.
        name: InstanceName,
        /// Who gave the intent (`--by`).
        by: String,
    },
    /// The `powerdown-all` that pressed its power button went away before
    /// the guest stopped: no more presses; the intent stands.
    PressesStopped {
        /// The instance.
        name: InstanceName,
        /// Who gave the intent (`--by`).
        by: String,
    },
    /// A verdict's hook waiting behind another was replaced by a newer
    /// verdict's (at most one waits per instance).
    HookSuperseded {
        /// The instance.
        name: InstanceName,
        /// The verdict the hook was for: the user's or not.
        verdict: VerdictKind,
        /// The verdict's reason code.
        reason: ReasonCode,
    },
}

impl Notice {
    /// How loudly it is logged.
    pub fn level(&self) -> Level {
        match self {
            Notice::Guest {
                event: Event::GuestPanicked | Event::GuestCrashLoaded,
                ..
            } => Level::Warn,
            Notice::StillUnrecorded { .. } | Notice::Guest { .. } => Level::Debug,
            Notice::IntentGiven { .. }
            | Notice::IntentCancelled { .. }
            | Notice::IntentExpired { .. }
            | Notice::PressesStopped { .. } => Level::Info,
            Notice::HookEnded {
                end: HookEnd::Exited(0),
                ..
            } => Level::Info,
            Notice::HookEnded { .. } | Notice::HookSuperseded { .. } => Level::Warn,
            Notice::Monitoring { .. }
            | Notice::Restored { .. }
            | Notice::Decided { .. }
            | Notice::RecordedAtLast { .. }
            | Notice::DescriptorsFree => Level::Info,
            Notice::Malformed { .. }
            | Notice::PressRefused { .. }
            | Notice::Ignored { .. }
            | Notice::CannotLook { .. }
            | Notice::NotMonitored { .. }
            | Notice::Moot { .. }
            | Notice::OutOfDescriptors { .. } => Level::Warn,
            Notice::Unpollable { .. }
            | Notice::Unrecorded { .. }
            | Notice::Unrecordable { .. }
            | Notice::ExitingUnrecorded { .. } => Level::Error,
        }
    }

    /// What kind of thing it tells, as `kvmd events` names it (`"kind"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Monitoring { .. } => "monitoring",
            Notice::Malformed { .. } => "malformed",
            Notice::PressRefused { .. } => "press-refused",
            Notice::Guest { .. } => "guest",
            Notice::Restored { .. } => "restored",
            Notice::Ignored { .. } => "ignored",
            Notice::CannotLook { .. } => "cannot-look",
            Notice::Unpollable { .. } => "unpollable",
            Notice::NotMonitored { .. } => "not-monitored",
            Notice::Decided { .. } => "decided",
            Notice::RecordedAtLast { .. } => "recorded",
            Notice::Unrecorded { .. } => "unrecorded",
            Notice::StillUnrecorded { .. } => "still-unrecorded",
            Notice::Unrecordable { .. } => "unrecordable",
            Notice::Moot { .. } => "moot",
            Notice::OutOfDescriptors { .. } => "out-of-descriptors",
            Notice::DescriptorsFree => "descriptors-free",
            Notice::ExitingUnrecorded { .. } => "exiting-unrecorded",
            Notice::HookEnded { .. } => "hook",
            Notice::HookSuperseded { .. } => "hook-superseded",
            Notice::IntentGiven { .. } => "intent-given",
            Notice::IntentCancelled { .. } => "intent-cancelled",
            Notice::IntentExpired { .. } => "intent-expired",
            Notice::PressesStopped { .. } => "presses-stopped",
        }
    }

    /// The instance it is about, if one.
    pub fn instance(&self) -> Option<&InstanceName> {
        match self {
            Notice::Monitoring { name, .. }
            | Notice::Malformed { name, .. }
            | Notice::PressRefused { name, .. }
            | Notice::Guest { name, .. }
            | Notice::Restored { name }
            | Notice::Ignored { name, .. }
            | Notice::CannotLook { name, .. }
            | Notice::Unpollable { name, .. }
            | Notice::NotMonitored { name, .. }
            | Notice::Decided { name, .. }
            | Notice::RecordedAtLast { name, .. }
            | Notice::Unrecorded { name, .. }
            | Notice::StillUnrecorded { name, .. }
            | Notice::Unrecordable { name, .. }
            | Notice::Moot { name, .. }
            | Notice::ExitingUnrecorded { name, .. }
            | Notice::HookEnded { name, .. }
            | Notice::HookSuperseded { name, .. }
            | Notice::IntentGiven { name, .. }
            | Notice::IntentCancelled { name, .. }
            | Notice::IntentExpired { name, .. }
            | Notice::PressesStopped { name, .. } => Some(name),
            Notice::OutOfDescriptors { .. } | Notice::DescriptorsFree => None,
        }
    }

    /// The verdict it tells of, if any, with what writing its file did
    /// when that is known (`kvmd events` adds both to the line).
    pub fn verdict(&self) -> Option<(Verdict, Option<Outcome>)> {
        match self {
            Notice::Decided {
                verdict, outcome, ..
            }
            | Notice::RecordedAtLast {
                verdict, outcome, ..
            } => Some((*verdict, Some(*outcome))),
            Notice::Unrecorded { verdict, .. }
            | Notice::Unrecordable { verdict, .. }
            | Notice::Moot { verdict, .. }
            | Notice::ExitingUnrecorded { verdict, .. } => Some((*verdict, None)),
            _ => None,
        }
    }

    /// Whether it is the verdict of its instance's QEMU (decided, written
    /// or not): what `powerdown-all` waits for.
    pub fn is_decision(&self) -> bool {
        matches!(self, Notice::Decided { .. } | Notice::Unrecorded { .. })
    }

    /// The log line (without its prefix); `ctrl_dir` names the directory
    /// in lines about it.
    pub fn line<'a>(&'a self, ctrl_dir: &'a Path) -> Line<'a> {
        Line(self, ctrl_dir)
    }
}

/// A notice as a log line.
pub struct Line<'a>(&'a Notice, &'a Path);

/// An errno as `std::io::Error` shows it ("Connection refused (os error
/// 111)"), as the system call's own error would read.
fn os_error(errno: Errno) -> io::Error {
    io::Error::from(errno)
}

/// "create" or "remove", and the past forms, for a verdict's file.
fn doing(verdict: Verdict) -> (&'static str, &'static str) {
    if verdict.is_user_shutdown() {
        ("create", "created")
    } else {
        ("remove", "removed")
    }
}

struct Cause<'a>(RecordError, &'a Path);

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            RecordError::File(e) => write!(f, "{e}"),
            RecordError::DirAway => write!(f, "{} is away", self.1.display()),
            RecordError::DirFailed(e) => write!(f, "cannot open {}: {e}", self.1.display()),
        }
    }
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ctrl_dir = self.1;
        match self.0 {
            Notice::Monitoring { name, qemu, state } => {
                write!(f, "{name}: monitoring (QEMU ")?;
                match qemu {
                    Some(v) => write!(f, "{v}")?,
                    None => write!(f, "version unknown")?,
                }
                match state {
                    Some(s) => write!(f, ", guest {s})"),
                    None => write!(f, ", guest state unknown)"),
                }
            }
            Notice::Malformed { name, problem } => write!(f, "{name}: {problem}"),
            Notice::PressRefused { name, reply } => write!(
                f,
                "{name}: QEMU refused the power button (system_powerdown): {reply}; \
                 pressed again while the intent waits"
            ),
            Notice::Guest { name, event } => {
                write!(f, "{name}: ")?;
                match event {
                    Event::Stop => write!(f, "guest paused (STOP)"),
                    Event::Resume => write!(f, "guest resumed (RESUME)"),
                    Event::Powerdown => write!(f, "ACPI power button pressed (POWERDOWN)"),
                    Event::GuestPanicked => write!(f, "guest panicked (GUEST_PANICKED)"),
                    Event::GuestCrashLoaded => {
                        write!(
                            f,
                            "guest crashed and loaded its crash kernel (GUEST_CRASHLOADED)"
                        )
                    }
                    Event::Shutdown { guest, reason } => {
                        write!(f, "guest shut down (SHUTDOWN")?;
                        if let Some(guest) = guest {
                            write!(f, " guest={guest}")?;
                        }
                        if let Some(reason) = reason {
                            write!(f, " reason={reason}")?;
                        }
                        write!(f, ")")
                    }
                    Event::Reset => write!(f, "guest reset (RESET)"),
                    Event::Negotiated | Event::Status { .. } => write!(f, "negotiated"),
                }
            }
            Notice::Restored { name } => {
                write!(f, "{name}: evidence restored from before a restart")
            }
            Notice::Ignored { name, why } => {
                let socket = name.socket_file_shown();
                match why {
                    Ignored::Untrusted { owner } => write!(
                        f,
                        "{name}: {socket} is owned by uid {owner}, whom kvmd does not trust; \
                         ignored (--socket-owner {owner} would allow it)"
                    ),
                    Ignored::NotASocket => write!(f, "{name}: {socket} is not a socket; ignored"),
                    Ignored::NameTooLong => write!(
                        f,
                        "{name}: its .shutdown file would be longer than a file name may be; \
                         not monitored (its verdict could never be recorded)"
                    ),
                }
            }
            Notice::CannotLook { name, errno } => {
                write!(f, "{name}: cannot look at its socket: {errno}")
            }
            Notice::Unpollable { name, errno } => {
                write!(f, "{name}: cannot poll its socket: {}", os_error(*errno))
            }
            Notice::NotMonitored { name, why } => {
                write!(f, "{name}: not monitored: ")?;
                match why {
                    GiveUp::DirGone => write!(f, "the control directory is gone"),
                    GiveUp::SocketWent => write!(f, "its socket went away before QEMU listened"),
                    GiveUp::CannotOpen(e) => write!(f, "cannot open its socket: {e}"),
                    GiveUp::CannotConnect(e) => {
                        write!(f, "cannot connect to its QMP socket: {}", os_error(*e))
                    }
                    GiveUp::Unpollable => write!(f, "it cannot be polled"),
                }
            }
            Notice::Decided {
                name,
                verdict,
                grounds,
                outcome,
                ..
            } => {
                let shown = name.shutdown_file_shown();
                write!(
                    f,
                    "{name}: decided {verdict} [{grounds}]; {shown}: {outcome}"
                )
            }
            Notice::RecordedAtLast {
                name,
                verdict,
                outcome,
                tries,
                ..
            } => {
                let shown = name.shutdown_file_shown();
                write!(
                    f,
                    "{name}: {shown}: {outcome} at last, after {tries} tries (decided {verdict})"
                )
            }
            Notice::Unrecorded {
                name,
                verdict,
                grounds,
                error,
                again,
            } => {
                let shown = name.shutdown_file_shown();
                let (doing, _) = doing(*verdict);
                let then = if *again {
                    "trying again until it can"
                } else {
                    "not retried: that needs an operator"
                };
                let cause = Cause(*error, ctrl_dir);
                write!(
                    f,
                    "{name}: decided {verdict} [{grounds}], but cannot {doing} {shown}: {cause}; {then}"
                )
            }
            Notice::StillUnrecorded {
                name,
                verdict: v,
                error,
            } => {
                let shown = name.shutdown_file_shown();
                let (doing, _) = doing(*v);
                let cause = Cause(*error, ctrl_dir);
                write!(f, "{name}: still cannot {doing} {shown}: {cause}")
            }
            Notice::Unrecordable {
                name,
                verdict: v,
                error,
            } => {
                let shown = name.shutdown_file_shown();
                let (doing, _) = doing(*v);
                let cause = Cause(*error, ctrl_dir);
                write!(
                    f,
                    "{name}: cannot {doing} {shown}: {cause}; not retried: that needs an operator"
                )
            }
            Notice::Moot { name, verdict } => {
                let shown = name.shutdown_file_shown();
                let (_, done) = doing(*verdict);
                write!(
                    f,
                    "{name}: a new QEMU started before {shown} could be {done}; \
                     that verdict ({verdict}) is moot now"
                )
            }
            Notice::OutOfDescriptors { errno } => write!(
                f,
                "out of file descriptors ({errno}): instances wait until descriptors free up \
                 (raise the limit, e.g. LimitNOFILE=, for this many instances)"
            ),
            Notice::DescriptorsFree => {
                write!(
                    f,
                    "file descriptors free again: every instance is monitored"
                )
            }
            Notice::HookEnded {
                name,
                verdict,
                reason,
                attempt,
                end,
                took,
                retry_in,
            } => {
                let ms = took.as_millis();
                write!(
                    f,
                    "{name}: hook for {verdict} ({reason}), attempt {attempt}: "
                )?;
                match end {
                    HookEnd::Exited(0) => return write!(f, "exit 0 in {ms} ms"),
                    HookEnd::Exited(code) => write!(f, "failed: exit {code} in {ms} ms")?,
                    HookEnd::Signaled(signal) => {
                        write!(f, "failed: killed by signal {signal} in {ms} ms")?
                    }
                    HookEnd::TimedOut => write!(
                        f,
                        "failed: still running after {ms} ms (--hook-timeout); its process group was killed"
                    )?,
                    HookEnd::NotStarted(errno) => write!(f, "failed: cannot start it: {errno}")?,
                }
                match retry_in {
                    Some(delay) => write!(f, "; trying again in {} s", delay.as_secs()),
                    None => write!(f, "; not tried again"),
                }
            }
            Notice::HookSuperseded {
                name,
                verdict,
                reason,
            } => {
                write!(
                    f,
                    "{name}: the hook for {verdict} ({reason}) waited behind another and a newer \
                     verdict's replaces it"
                )
            }
            Notice::IntentGiven { name, by, window } => write!(
                f,
                "{name}: the host will stop it (by {by}): its next SHUTDOWN within {} s is the host's",
                window.as_secs()
            ),
            Notice::IntentCancelled { name, by } => {
                write!(f, "{name}: intent by {by} cancelled")
            }
            Notice::IntentExpired { name, by } => write!(
                f,
                "{name}: intent by {by} expired with no SHUTDOWN; QMP's evidence decides again"
            ),
            Notice::PressesStopped { name, by } => write!(
                f,
                "{name}: powerdown-all (by {by}) went away before it stopped: its power button is \
                 not pressed again; the intent stands until its window ends"
            ),
            Notice::ExitingUnrecorded { name, verdict } => {
                let shown = name.shutdown_file_shown();
                let (_, done) = doing(*verdict);
                write!(
                    f,
                    "{name}: exiting with {shown} still not {done} (decided {verdict})"
                )
            }
        }
    }
}
