//! The QMP client protocol, sans-IO.
//!
//! This module owns the byte-level framing and the protocol state of one
//! QMP connection: greeting → `qmp_capabilities` → `query-status` → events.
//! It holds no file descriptor and no clock. Bytes go in through
//! [`Connection::handle_bytes`]; what the caller must do or know comes out as
//! [`Output`]s through a sink closure (commands to send, lifecycle events,
//! problems worth a log line). The event loop owns the socket.
//!
//! Framing: QEMU ends every message with `\r\n`; `\n` alone is accepted too.
//! A message may arrive split over many reads or many in one read. A line
//! longer than [`MAX_LINE`] is dropped and parsing resumes after the next
//! newline, so the memory one connection holds stays bounded whatever the
//! peer sends.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest message kvmd accepts, its `\n` excluded. QEMU's own lifecycle
/// events are a few hundred bytes; 64 KiB leaves room for any greeting or
/// reply while capping what a hostile peer can make us hold.
pub const MAX_LINE: usize = 64 * 1024;

/// A partial line buffer larger than this is released once its line is
/// complete, so a connection that once saw a big message does not keep the
/// allocation for the rest of the guest's life.
const KEEP_CAPACITY: usize = 4 * 1024;

/// A command kvmd sends. Both are fixed strings: nothing from the peer is
/// ever echoed back to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `qmp_capabilities`: leaves negotiation mode, so QEMU sends events.
    Capabilities,
    /// `query-status`: whether the guest runs, once negotiated.
    QueryStatus,
    /// The ACPI power button (`kvmd powerdown-all`).
    SystemPowerdown,
}

impl Command {
    /// The command on the wire, line ending included.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Command::Capabilities => b"{\"execute\": \"qmp_capabilities\"}\r\n",
            Command::QueryStatus => b"{\"execute\": \"query-status\"}\r\n",
            Command::SystemPowerdown => b"{\"execute\": \"system_powerdown\"}\r\n",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Command::Capabilities => "qmp_capabilities",
            Command::QueryStatus => "query-status",
            Command::SystemPowerdown => "system_powerdown",
        }
    }
}

/// `data.reason` of SHUTDOWN and RESET (QEMU 4.0+, `ShutdownCause` in
/// QEMU's qapi/run-state.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `host-error`: QEMU stopped on an error of its own.
    HostError,
    /// `host-qmp-quit`: a QMP `quit` command.
    HostQmpQuit,
    /// `host-qmp-system-reset`: a QMP `system_reset` command.
    HostQmpSystemReset,
    /// `host-signal`: QEMU received a signal (SIGTERM, SIGINT, SIGHUP).
    HostSignal,
    /// `host-ui`: the window closed, or the monitor's `quit`.
    HostUi,
    /// `guest-shutdown`: the guest powered itself off (ACPI, or the like).
    GuestShutdown,
    /// `guest-reset`: the guest rebooted itself.
    GuestReset,
    /// `guest-panic`: the guest panicked and QEMU was told to stop then.
    GuestPanic,
    /// `subsystem-reset`: a reset from a device (s390x's subsystem reset).
    SubsystemReset,
    /// A value this version of kvmd does not know (a newer QEMU).
    Unknown,
}

impl Reason {
    /// The reason `data.reason` spells `s`; [`Reason::Unknown`] for any
    /// other word.
    pub fn from_wire(s: &str) -> Reason {
        match s {
            "host-error" => Reason::HostError,
            "host-qmp-quit" => Reason::HostQmpQuit,
            "host-qmp-system-reset" => Reason::HostQmpSystemReset,
            "host-signal" => Reason::HostSignal,
            "host-ui" => Reason::HostUi,
            "guest-shutdown" => Reason::GuestShutdown,
            "guest-reset" => Reason::GuestReset,
            "guest-panic" => Reason::GuestPanic,
            "subsystem-reset" => Reason::SubsystemReset,
            _ => Reason::Unknown,
        }
    }

    /// The word QEMU spells it with (`unknown` for [`Reason::Unknown`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HostError => "host-error",
            Reason::HostQmpQuit => "host-qmp-quit",
            Reason::HostQmpSystemReset => "host-qmp-system-reset",
            Reason::HostSignal => "host-signal",
            Reason::HostUi => "host-ui",
            Reason::GuestShutdown => "guest-shutdown",
            Reason::GuestReset => "guest-reset",
            Reason::GuestPanic => "guest-panic",
            Reason::SubsystemReset => "subsystem-reset",
            Reason::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connection learned about the guest's life, in wire order. Only
/// the events the shutdown decision needs are named; others are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `qmp_capabilities` succeeded: from now on QEMU sends events.
    Negotiated,
    /// The `query-status` reply: whether the host had the guest paused
    /// then (`running: false`, except `suspended`: a guest in its own S3
    /// sleep is not running, but nobody paused it; waking it sends
    /// WAKEUP, not RESUME).
    Status {
        /// Whether the host had the guest stopped.
        paused: bool,
    },
    /// `SHUTDOWN`; `guest` since QEMU 2.10, `reason` since 4.0.
    Shutdown {
        /// `data.guest`: true when the guest itself asked to stop.
        guest: Option<bool>,
        /// `data.reason`: what stopped it.
        reason: Option<Reason>,
    },
    /// `POWERDOWN`: someone pressed the ACPI power button (the guest has
    /// not obeyed yet).
    Powerdown,
    /// `RESET`: the guest was reset (it goes on running).
    Reset,
    /// `STOP`: the host paused the guest.
    Stop,
    /// `RESUME`: the guest runs again.
    Resume,
    /// `GUEST_PANICKED`: the guest's kernel panicked (pvpanic).
    GuestPanicked,
    /// `GUEST_CRASHLOADED` (QEMU 5.0+): the guest crashed and loaded its
    /// crash kernel (kdump); it goes on running. Recorded, never decisive.
    GuestCrashLoaded,
}

/// The guest's state as `query-status` gave it, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Running.
    Running,
    /// Not running because the host stopped it (`stop`, migration, an I/O
    /// error, ...).
    Paused,
    /// Started with `-S` and not yet continued (Ganeti starts every guest
    /// so): paused too.
    Prelaunch,
    /// Shut down under `-no-shutdown`: QEMU lives on, the guest does not.
    ShutDown,
    /// In its own S3 sleep.
    Suspended,
}

impl RunState {
    /// The state's stable name (in `kvmd status --json`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Prelaunch => "prelaunch",
            RunState::ShutDown => "shutdown",
            RunState::Suspended => "suspended",
        }
    }

    /// Whether the host has the guest stopped (a suspended guest sleeps
    /// on its own).
    pub fn is_paused(self) -> bool {
        !matches!(self, RunState::Running | RunState::Suspended)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Prelaunch => "paused (prelaunch)",
            RunState::ShutDown => "paused (shut down)",
            RunState::Suspended => "suspended (S3)",
        })
    }
}

/// QEMU's version from the greeting, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Version {
    /// The major version (the 7 of 7.2.0).
    pub major: u32,
    /// The minor version.
    pub minor: u32,
    /// The micro (patch) version.
    pub micro: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Something the peer sent that kvmd could not use. The connection goes on;
/// the caller decides how loudly to log it.
#[derive(Debug)]
pub enum Problem<'a> {
    /// A line longer than [`MAX_LINE`]; `dropped` bytes were discarded so
    /// far (more may follow until the next newline).
    Oversized {
        /// Bytes discarded so far.
        dropped: usize,
    },
    /// Not a JSON object, or a known field of the wrong type. The event it
    /// carried, if any, is ignored.
    Malformed {
        /// The line, as received.
        line: &'a [u8],
        /// Why it did not parse; None: it parsed, but as something else.
        error: Option<serde_json::Error>,
    },
    /// A well-formed message that makes no sense in the current state.
    Unexpected {
        /// The line, as received.
        line: &'a [u8],
        /// What it was (for the log).
        what: &'static str,
    },
    /// QEMU answered one of our commands with an error.
    Refused {
        /// The command refused.
        command: Command,
        /// QEMU's error reply, as received.
        line: &'a [u8],
    },
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Oversized { dropped } => write!(
                f,
                "dropped a message longer than {MAX_LINE} bytes ({dropped} bytes so far)"
            ),
            Problem::Malformed { line, error } => {
                write!(f, "ignored a malformed message")?;
                if let Some(error) = error {
                    write!(f, " ({error})")?;
                }
                write!(f, ": {}", Snippet(line))
            }
            Problem::Unexpected { line, what } => {
                write!(f, "ignored {what}: {}", Snippet(line))
            }
            Problem::Refused { command, line } => {
                write!(f, "QEMU refused {}: {}", command.name(), Snippet(line))
            }
        }
    }
}

/// A peer's line for a log message: escaped, and cut short so one line of
/// garbage cannot fill the log.
pub struct Snippet<'a>(pub &'a [u8]);

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 200;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "{}", shown.escape_ascii())?;
        if self.0.len() > SHOWN {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// What [`Connection::handle_bytes`] asks of the caller, in order.
#[derive(Debug)]
pub enum Output<'a> {
    /// A complete line, as received (for debug logging).
    Line(&'a [u8]),
    /// Send this command to the peer.
    Transmit(Command),
    /// A fact for the shutdown decision.
    Event(Event),
    /// Negotiation is over and the guest's state is known (or QEMU would
    /// not say): the instance is now being monitored.
    Ready {
        /// QEMU's version, if its greeting said.
        qemu: Option<Version>,
        /// The guest's state, if `query-status` said.
        state: Option<RunState>,
    },
    /// Something to log; nothing to do.
    Problem(Problem<'a>),
}

/// Where the conversation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Connected; QEMU speaks first.
    AwaitingGreeting,
    /// `qmp_capabilities` sent.
    AwaitingCapabilities { qemu: Option<Version> },
    /// `query-status` sent.
    AwaitingStatus { qemu: Option<Version> },
    /// Negotiated (or QEMU refused to negotiate): only events from here on.
    Events,
}

/// One QMP client connection, without the socket.
#[derive(Debug)]
pub struct Connection {
    state: State,
    /// The start of a line whose newline has not arrived yet; never longer
    /// than [`MAX_LINE`].
    partial: Vec<u8>,
    /// Inside an oversized line: drop bytes until the next newline.
    discarding: bool,
    /// Commands of the caller's sent once negotiated, oldest first, whose
    /// replies are still to come (QMP answers in order). Bounded by
    /// [`MAX_ASKED`].
    asked: std::collections::VecDeque<Command>,
}

/// Commands of the caller's awaiting a reply at once, at most: a QEMU
/// that never answers cannot make the list grow.
pub const MAX_ASKED: usize = 4;

/// Why [`Connection::execute`] sent nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// Negotiation is not over: QEMU would take the command for part of it.
    NotNegotiated,
    /// [`MAX_ASKED`] commands are still unanswered.
    TooManyUnanswered,
}

impl Default for Connection {
    fn default() -> Self {
        Connection::new()
    }
}

impl Connection {
    /// A connection just made: the greeting comes next.
    pub fn new() -> Connection {
        Connection {
            state: State::AwaitingGreeting,
            partial: Vec::new(),
            discarding: false,
            asked: std::collections::VecDeque::new(),
        }
    }

    /// Sends `command` (the power button) on a negotiated connection; its
    /// reply is then expected, not a problem.
    pub fn execute<F>(&mut self, command: Command, out: &mut F) -> Result<(), NotSent>
    where
        F: FnMut(Output<'_>),
    {
        if self.state != State::Events {
            return Err(NotSent::NotNegotiated);
        }
        if self.asked.len() >= MAX_ASKED {
            return Err(NotSent::TooManyUnanswered);
        }
        self.asked.push_back(command);
        out(Output::Transmit(command));
        Ok(())
    }

    /// Bytes held for an incomplete line (bounded by [`MAX_LINE`]).
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feeds bytes read from the socket; calls `out` for every consequence.
    pub fn handle_bytes<F>(&mut self, mut data: &[u8], out: &mut F)
    where
        F: FnMut(Output<'_>),
    {
        while let Some(newline) = memchr::memchr(b'\n', data) {
            let (head, rest) = (&data[..newline], &data[newline + 1..]);
            data = rest;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            if self.partial.len() + head.len() > MAX_LINE {
                let dropped = self.partial.len() + head.len();
                self.release_partial();
                out(Output::Problem(Problem::Oversized { dropped }));
                continue;
            }
            if self.partial.is_empty() {
                self.handle_line(head, out);
                continue;
            }
            // Borrow the buffer out of `self` so the line can be handled
            // with `&mut self`, then put it back to reuse its allocation.
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(head);
            self.handle_line(&line, out);
            line.clear();
            self.partial = line;
            if self.partial.capacity() > KEEP_CAPACITY {
                self.release_partial();
            }
        }
        if data.is_empty() || self.discarding {
            return;
        }
        if self.partial.len() + data.len() > MAX_LINE {
            let dropped = self.partial.len() + data.len();
            self.release_partial();
            self.discarding = true;
            out(Output::Problem(Problem::Oversized { dropped }));
            return;
        }
        self.partial.extend_from_slice(data);
    }

    /// The peer hung up. A last message without its line ending is still
    /// a message: handle it, so no valid event is lost.
    pub fn handle_eof<F>(&mut self, out: &mut F)
    where
        F: FnMut(Output<'_>),
    {
        if !self.discarding && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.handle_line(&line, out);
        }
        self.release_partial();
        self.discarding = false;
    }

    fn release_partial(&mut self) {
        self.partial = Vec::new();
    }

    fn handle_line<F>(&mut self, line: &[u8], out: &mut F)
    where
        F: FnMut(Output<'_>),
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(first) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
            return; // blank line: nothing to say
        };
        out(Output::Line(line));
        // serde would also read a JSON array into a struct; QMP messages
        // are always objects.
        if line[first] != b'{' {
            out(Output::Problem(Problem::Malformed { line, error: None }));
            return;
        }
        let message: Message<'_> = match serde_json::from_slice(line) {
            Ok(message) => message,
            Err(error) => {
                let error = Some(error);
                out(Output::Problem(Problem::Malformed { line, error }));
                return;
            }
        };
        // Dispatch on the top-level key, as QMP defines the message kinds.
        if message.greeting.is_some() {
            self.handle_greeting(&message, line, out);
        } else if let Some(reply) = message.reply {
            self.handle_reply(reply, line, out);
        } else if message.error.is_some() {
            self.handle_error(line, out);
        } else if let Some(name) = &message.event {
            handle_event(name, message.data, line, out);
        } else {
            let what = "a message that is no greeting, reply or event";
            out(Output::Problem(Problem::Unexpected { line, what }));
        }
    }

    fn handle_greeting<F>(&mut self, message: &Message<'_>, line: &[u8], out: &mut F)
    where
        F: FnMut(Output<'_>),
    {
        if self.state != State::AwaitingGreeting {
            let what = "a second greeting";
            out(Output::Problem(Problem::Unexpected { line, what }));
            return;
        }
        // The version is only for the log: a greeting kvmd cannot read it
        // from is still a greeting.
        let qemu = message
            .greeting
            .and_then(|raw| from_object::<Greeting>(raw).ok())
            .map(|greeting| greeting.version.qemu);
        self.state = State::AwaitingCapabilities { qemu };
        out(Output::Transmit(Command::Capabilities));
    }

    fn handle_reply<F>(&mut self, reply: &RawValue, line: &[u8], out: &mut F)
    where
        F: FnMut(Output<'_>),
    {
        match self.state {
            State::AwaitingCapabilities { qemu } => {
                self.state = State::AwaitingStatus { qemu };
                out(Output::Event(Event::Negotiated));
                out(Output::Transmit(Command::QueryStatus));
            }
            State::AwaitingStatus { qemu } => {
                self.state = State::Events;
                let status = from_object::<StatusReply>(reply).ok();
                let state = status.and_then(|status| match status.running? {
                    true => Some(RunState::Running),
                    false => Some(match status.status.as_deref() {
                        Some("suspended") => RunState::Suspended,
                        Some("prelaunch") => RunState::Prelaunch,
                        Some("shutdown") => RunState::ShutDown,
                        _ => RunState::Paused,
                    }),
                });
                match state {
                    Some(state) => {
                        let paused = state.is_paused();
                        out(Output::Event(Event::Status { paused }));
                    }
                    None => {
                        let what = "a query-status reply without a boolean 'running'";
                        out(Output::Problem(Problem::Unexpected { line, what }));
                    }
                }
                out(Output::Ready { qemu, state });
            }
            // The reply to the caller's own command (QMP answers in order).
            State::Events if !self.asked.is_empty() => {
                self.asked.pop_front();
            }
            State::AwaitingGreeting | State::Events => {
                let what = "a reply to no command of ours";
                out(Output::Problem(Problem::Unexpected { line, what }));
            }
        }
    }

    fn handle_error<F>(&mut self, line: &[u8], out: &mut F)
    where
        F: FnMut(Output<'_>),
    {
        match self.state {
            State::AwaitingCapabilities { qemu } => {
                // Without negotiation QEMU sends no events; the hang-up
                // still tells when the guest is gone, so keep listening.
                self.state = State::Events;
                let command = Command::Capabilities;
                out(Output::Problem(Problem::Refused { command, line }));
                out(Output::Ready { qemu, state: None });
            }
            State::AwaitingStatus { qemu } => {
                self.state = State::Events;
                let command = Command::QueryStatus;
                out(Output::Problem(Problem::Refused { command, line }));
                out(Output::Ready { qemu, state: None });
            }
            State::Events if !self.asked.is_empty() => {
                if let Some(command) = self.asked.pop_front() {
                    out(Output::Problem(Problem::Refused { command, line }));
                }
            }
            State::AwaitingGreeting | State::Events => {
                let what = "an error reply to no command of ours";
                out(Output::Problem(Problem::Unexpected { line, what }));
            }
        }
    }
}

/// Events are matched by exact name, never as substrings of the line (the
/// Haskell daemon's mistake: `"STOP"` is inside other words and strings).
fn handle_event<F>(name: &str, data: Option<&RawValue>, line: &[u8], out: &mut F)
where
    F: FnMut(Output<'_>),
{
    let event = match name {
        "SHUTDOWN" => {
            // `data` is absent before QEMU 2.10. A `data` kvmd cannot read
            // (wrong types) makes the whole event invalid: guessing who
            // shut the guest down is worse than not knowing.
            let data = match data
                .filter(|raw| raw.get() != "null")
                .map(from_object::<ShutdownData>)
            {
                None => None,
                Some(Ok(data)) => Some(data),
                Some(Err(error)) => {
                    let error = Some(error);
                    out(Output::Problem(Problem::Malformed { line, error }));
                    return;
                }
            };
            let (guest, reason) = match data {
                Some(data) => (data.guest, data.reason.as_deref().map(Reason::from_wire)),
                None => (None, None),
            };
            Event::Shutdown { guest, reason }
        }
        "POWERDOWN" => Event::Powerdown,
        "RESET" => Event::Reset,
        "STOP" => Event::Stop,
        "RESUME" => Event::Resume,
        "GUEST_PANICKED" => Event::GuestPanicked,
        "GUEST_CRASHLOADED" => Event::GuestCrashLoaded,
        _ => return,
    };
    out(Output::Event(event));
}

/// Reads a payload QMP defines as an object. serde's derived structs take
/// a JSON array too, field by field in order, and `"data": [true,
/// "guest-shutdown"]` must not pass for a user shutdown.
fn from_object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, serde_json::Error> {
    if raw.get().starts_with('{') {
        serde_json::from_str(raw.get())
    } else {
        let found = serde::de::Unexpected::Other("a non-object");
        Err(serde::de::Error::invalid_type(found, &"an object"))
    }
}

/// A QMP message, read without copying: only the key that says what kind of
/// message it is, and the event's name. Payloads stay raw until needed, so
/// an odd payload of an event kvmd ignores cannot spoil the line.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "QMP", borrow)]
    greeting: Option<&'a RawValue>,
    #[serde(rename = "return", borrow)]
    reply: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Greeting {
    version: GreetingVersion,
}

#[derive(Deserialize)]
struct GreetingVersion {
    qemu: Version,
}

#[derive(Deserialize)]
struct StatusReply<'a> {
    running: Option<bool>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ShutdownData<'a> {
    guest: Option<bool>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of an [`Output`], for assertions.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Seen {
        Line(Vec<u8>),
        Transmit(Command),
        Event(Event),
        Ready(Option<Version>, Option<RunState>),
        Oversized,
        Malformed,
        Unexpected,
        Refused(Command),
    }

    fn feed(conn: &mut Connection, bytes: &[u8]) -> Vec<Seen> {
        let mut seen = Vec::new();
        conn.handle_bytes(bytes, &mut |out| seen.push(own(out)));
        seen
    }

    fn own(out: Output<'_>) -> Seen {
        match out {
            Output::Line(line) => Seen::Line(line.to_vec()),
            Output::Transmit(c) => Seen::Transmit(c),
            Output::Event(e) => Seen::Event(e),
            Output::Ready { qemu, state } => Seen::Ready(qemu, state),
            Output::Problem(Problem::Oversized { .. }) => Seen::Oversized,
            Output::Problem(Problem::Malformed { .. }) => Seen::Malformed,
            Output::Problem(Problem::Unexpected { .. }) => Seen::Unexpected,
            Output::Problem(Problem::Refused { command, .. }) => Seen::Refused(command),
        }
    }

    /// Everything but the raw lines.
    fn meaning(seen: Vec<Seen>) -> Vec<Seen> {
        seen.into_iter()
            .filter(|s| !matches!(s, Seen::Line(_)))
            .collect()
    }

    use crate::test_kit::{
        DEBIAN_12_GREETING_LINE as GREETING, RETURN_LINE as RETURN,
        STATUS_RUNNING_LINE as STATUS_RUNNING,
    };
    const V72: Version = Version {
        major: 7,
        minor: 2,
        micro: 22,
    };

    fn negotiated() -> Connection {
        let mut conn = Connection::new();
        feed(&mut conn, GREETING);
        feed(&mut conn, RETURN);
        feed(&mut conn, STATUS_RUNNING);
        conn
    }

    #[test]
    fn negotiates_capabilities_then_asks_status() {
        let mut conn = Connection::new();
        assert_eq!(
            meaning(feed(&mut conn, GREETING)),
            vec![Seen::Transmit(Command::Capabilities)]
        );
        assert_eq!(
            meaning(feed(&mut conn, RETURN)),
            vec![
                Seen::Event(Event::Negotiated),
                Seen::Transmit(Command::QueryStatus)
            ]
        );
        assert_eq!(
            meaning(feed(&mut conn, STATUS_RUNNING)),
            vec![
                Seen::Event(Event::Status { paused: false }),
                Seen::Ready(Some(V72), Some(RunState::Running))
            ]
        );
    }

    #[test]
    fn the_power_button_is_pressed_only_once_negotiated_and_its_reply_expected() {
        let execute = |conn: &mut Connection| {
            let mut seen = Vec::new();
            let r = conn.execute(Command::SystemPowerdown, &mut |out| seen.push(own(out)));
            (r, seen)
        };
        let mut conn = Connection::new();
        assert_eq!(execute(&mut conn), (Err(NotSent::NotNegotiated), vec![]));
        let mut conn = negotiated();
        assert_eq!(
            execute(&mut conn),
            (Ok(()), vec![Seen::Transmit(Command::SystemPowerdown)])
        );
        // Its reply is no problem; a second, unasked one is.
        assert_eq!(meaning(feed(&mut conn, RETURN)), vec![]);
        assert_eq!(meaning(feed(&mut conn, RETURN)), vec![Seen::Unexpected]);
        // QEMU's refusal is said, with the command it refused.
        execute(&mut conn).0.expect("sent");
        let error = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n";
        assert_eq!(
            meaning(feed(&mut conn, error)),
            vec![Seen::Refused(Command::SystemPowerdown)]
        );
        // A QEMU that never answers cannot make the list grow.
        for _ in 0..MAX_ASKED {
            execute(&mut conn).0.expect("sent");
        }
        assert_eq!(execute(&mut conn).0, Err(NotSent::TooManyUnanswered));
        // Events still come through between the presses and the replies.
        assert_eq!(
            meaning(feed(&mut conn, b"{\"event\": \"GUEST_CRASHLOADED\"}\r\n")),
            vec![Seen::Event(Event::GuestCrashLoaded)]
        );
    }

    /// QEMU 10.0 (Debian 13), byte for byte: its greeting, and a
    /// query-status without the `singlestep` that 7.2 sends.
    #[test]
    fn negotiates_with_qemu_10() {
        let mut conn = Connection::new();
        let greeting = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 13, \"minor\": 0, \"major\": 10}, \"package\": \"Debian 1:10.0.13+ds-0+deb13u1\"}, \"capabilities\": [\"oob\"]}}\r\n";
        assert_eq!(
            meaning(feed(&mut conn, greeting)),
            vec![Seen::Transmit(Command::Capabilities)]
        );
        feed(&mut conn, RETURN);
        let seen = feed(
            &mut conn,
            b"{\"return\": {\"status\": \"prelaunch\", \"running\": false}}\r\n",
        );
        let v10 = Version {
            major: 10,
            minor: 0,
            micro: 13,
        };
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Event(Event::Status { paused: true }),
                Seen::Ready(Some(v10), Some(RunState::Prelaunch))
            ]
        );
    }

    #[test]
    fn paused_guest_is_reported_by_status() {
        let mut conn = Connection::new();
        feed(&mut conn, GREETING);
        feed(&mut conn, RETURN);
        let seen = feed(
            &mut conn,
            b"{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Event(Event::Status { paused: true }),
                // Paused as Ganeti starts every guest: with -S.
                Seen::Ready(Some(V72), Some(RunState::Prelaunch))
            ]
        );
    }

    #[test]
    fn a_guest_in_s3_sleep_is_not_paused() {
        let mut conn = Connection::new();
        feed(&mut conn, GREETING);
        feed(&mut conn, RETURN);
        let seen = feed(
            &mut conn,
            b"{\"return\": {\"status\": \"suspended\", \"singlestep\": false, \"running\": false}}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Event(Event::Status { paused: false }),
                Seen::Ready(Some(V72), Some(RunState::Suspended))
            ]
        );
    }

    #[test]
    fn events_before_the_status_reply_keep_wire_order() {
        // Negotiated: QEMU sends events at once, possibly before it answers
        // query-status. The reply describes the state after them.
        let mut conn = Connection::new();
        feed(&mut conn, GREETING);
        feed(&mut conn, RETURN);
        let seen = feed(
            &mut conn,
            b"{\"event\": \"STOP\"}\r\n\
              {\"return\": {\"status\": \"paused\", \"singlestep\": false, \"running\": false}}\r\n\
              {\"event\": \"RESUME\"}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Event(Event::Stop),
                Seen::Event(Event::Status { paused: true }),
                Seen::Ready(Some(V72), Some(RunState::Paused)),
                Seen::Event(Event::Resume),
            ]
        );
    }

    #[test]
    fn commands_are_exact_qmp() {
        for c in [Command::Capabilities, Command::QueryStatus] {
            let v: serde_json::Value =
                serde_json::from_slice(c.as_bytes()).expect("our commands are JSON");
            assert_eq!(v["execute"], c.name());
            assert!(c.as_bytes().ends_with(b"\r\n"));
        }
    }

    #[test]
    fn shutdown_carries_guest_and_reason() {
        let mut conn = negotiated();
        let seen = feed(
            &mut conn,
            b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![Seen::Event(Event::Shutdown {
                guest: Some(true),
                reason: Some(Reason::GuestShutdown)
            })]
        );
    }

    #[test]
    fn old_qemu_shutdown_without_data() {
        let mut conn = negotiated();
        let seen = feed(
            &mut conn,
            b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"SHUTDOWN\"}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![Seen::Event(Event::Shutdown {
                guest: None,
                reason: None
            })]
        );
    }

    #[test]
    fn events_match_by_exact_name_only() {
        let mut conn = negotiated();
        let seen = feed(
            &mut conn,
            b"{\"event\": \"BLOCK_JOB_STOPPED_SHUTDOWN\", \"data\": {\"device\": \"STOP POWERDOWN\"}}\r\n\
              {\"event\": \"STOP\"}\r\n{\"event\": \"RESUME\"}\r\n{\"event\": \"POWERDOWN\"}\r\n\
              {\"event\": \"RESET\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\r\n\
              {\"event\": \"GUEST_PANICKED\", \"data\": {\"action\": \"poweroff\"}}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Event(Event::Stop),
                Seen::Event(Event::Resume),
                Seen::Event(Event::Powerdown),
                Seen::Event(Event::Reset),
                Seen::Event(Event::GuestPanicked),
            ]
        );
    }

    #[test]
    fn bare_newlines_and_crlf_both_end_messages() {
        let mut conn = Connection::new();
        let seen = feed(&mut conn, b"{\"QMP\": {}}\n{\"return\": {}}\r\n");
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Transmit(Command::Capabilities),
                Seen::Event(Event::Negotiated),
                Seen::Transmit(Command::QueryStatus)
            ]
        );
    }

    #[test]
    fn greeting_without_readable_version_still_counts() {
        let mut conn = Connection::new();
        let seen = feed(&mut conn, b"{\"QMP\": {\"version\": 7}}\r\n");
        assert_eq!(meaning(seen), vec![Seen::Transmit(Command::Capabilities)]);
    }

    /// A transcript of a real QEMU 7.2 session: greeting, negotiation, a
    /// pause, and the guest powering off.
    const TRANSCRIPT: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18\"}, \"capabilities\": [\"oob\"]}}\r\n\
{\"return\": {}}\r\n\
{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n\
{\"timestamp\": {\"seconds\": 1764000000, \"microseconds\": 1}, \"event\": \"RESUME\"}\r\n\
{\"timestamp\": {\"seconds\": 1764000001, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n\
{\"timestamp\": {\"seconds\": 1764000002, \"microseconds\": 3}, \"event\": \"RESUME\"}\r\n\
{\"timestamp\": {\"seconds\": 1764000003, \"microseconds\": 4}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n";

    #[test]
    fn any_split_gives_the_same_outputs() {
        let whole = feed(&mut Connection::new(), TRANSCRIPT);
        assert_eq!(
            whole.iter().filter(|s| matches!(s, Seen::Event(_))).count(),
            6
        );
        for cut in 0..=TRANSCRIPT.len() {
            let mut conn = Connection::new();
            let mut seen = feed(&mut conn, &TRANSCRIPT[..cut]);
            seen.extend(feed(&mut conn, &TRANSCRIPT[cut..]));
            assert_eq!(seen, whole, "cut at byte {cut}");
        }
        let mut conn = Connection::new();
        let mut seen = Vec::new();
        for byte in TRANSCRIPT {
            seen.extend(feed(&mut conn, std::slice::from_ref(byte)));
        }
        assert_eq!(seen, whole, "one byte at a time");
    }

    #[test]
    fn oversized_line_is_dropped_and_parsing_resumes() {
        let mut conn = negotiated();
        let mut seen = feed(&mut conn, b"{\"event\": \"STOP\", \"data\": \"");
        let junk = vec![b'x'; 16 * 1024];
        for _ in 0..10 {
            seen.extend(feed(&mut conn, &junk));
            assert!(conn.buffered() <= MAX_LINE);
        }
        seen.extend(feed(&mut conn, b"\"}\r\n{\"event\": \"RESUME\"}\r\n"));
        assert_eq!(
            meaning(seen),
            vec![Seen::Oversized, Seen::Event(Event::Resume)]
        );
        assert_eq!(conn.buffered(), 0);
    }

    #[test]
    fn oversized_line_in_one_read_is_dropped() {
        let mut conn = negotiated();
        let mut bytes = b"{\"event\": \"STOP\", \"data\": \"".to_vec();
        bytes.resize(MAX_LINE + 1, b'y');
        bytes.extend_from_slice(b"\"}\n{\"event\": \"RESUME\"}\n");
        assert_eq!(
            meaning(feed(&mut conn, &bytes)),
            vec![Seen::Oversized, Seen::Event(Event::Resume)]
        );
    }

    #[test]
    fn line_exactly_at_the_bound_is_kept() {
        let mut conn = negotiated();
        let mut line = b"{\"event\": \"STOP\", \"data\": {\"pad\": \"".to_vec();
        let tail = b"\"}}";
        line.resize(MAX_LINE - tail.len(), b'p');
        line.extend_from_slice(tail);
        assert_eq!(line.len(), MAX_LINE);
        let (a, b) = line.split_at(100);
        let mut seen = feed(&mut conn, a);
        seen.extend(feed(&mut conn, b));
        seen.extend(feed(&mut conn, b"\n"));
        assert_eq!(meaning(seen), vec![Seen::Event(Event::Stop)]);
    }

    #[test]
    fn garbage_is_reported_and_skipped() {
        let mut conn = negotiated();
        let seen = feed(
            &mut conn,
            b"\xff\xfe garbage\r\n[1, 2]\r\n\"text\"\r\n{\"event\": \"STOP\"\r\n{\"event\": 5}\r\n\
              {\"event\": \"SHUTDOWN\", \"data\": {\"guest\": \"yes\"}}\r\n\
              {\"event\": \"SHUTDOWN\", \"data\": []}\r\n{\"event\": \"\xff\"}\r\n\
              {\"event\": \"SHUTDOWN\", \"data\": [true, \"guest-shutdown\"]}\r\n\
              {\"neither\": 1}\r\n  \r\n{\"event\": \"RESUME\"}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Malformed,
                Seen::Malformed,
                Seen::Malformed,
                Seen::Malformed,
                Seen::Malformed,
                Seen::Malformed,
                Seen::Malformed,
                Seen::Malformed,
                Seen::Malformed,
                Seen::Unexpected,
                Seen::Event(Event::Resume),
            ]
        );
    }

    #[test]
    fn a_status_reply_that_is_an_array_is_no_state() {
        let mut conn = Connection::new();
        feed(&mut conn, GREETING);
        feed(&mut conn, RETURN);
        // An array would fill StatusReply's fields in order.
        let seen = feed(&mut conn, b"{\"return\": [false, \"paused\"]}\r\n");
        let qemu = Version {
            major: 7,
            minor: 2,
            micro: 22,
        };
        assert_eq!(
            meaning(seen),
            vec![Seen::Unexpected, Seen::Ready(Some(qemu), None)]
        );
    }

    #[test]
    fn refused_capabilities_is_reported_and_monitoring_goes_on() {
        let mut conn = Connection::new();
        feed(&mut conn, GREETING);
        let seen = feed(
            &mut conn,
            b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}\r\n",
        );
        assert_eq!(
            meaning(seen),
            vec![
                Seen::Refused(Command::Capabilities),
                Seen::Ready(Some(V72), None)
            ]
        );
        // No Event::Negotiated came out, so the evidence says "never
        // negotiated"; and no events follow.
        assert_eq!(
            meaning(feed(&mut conn, b"{\"event\": \"STOP\"}\r\n")),
            vec![Seen::Event(Event::Stop)]
        );
    }

    #[test]
    fn replies_out_of_turn_are_unexpected() {
        let mut conn = Connection::new();
        assert_eq!(meaning(feed(&mut conn, RETURN)), vec![Seen::Unexpected]);
        feed(&mut conn, GREETING);
        assert_eq!(meaning(feed(&mut conn, GREETING)), vec![Seen::Unexpected]);
        let mut conn = negotiated();
        assert_eq!(meaning(feed(&mut conn, RETURN)), vec![Seen::Unexpected]);
    }

    #[test]
    fn last_message_without_newline_is_handled_at_eof() {
        let mut conn = negotiated();
        feed(
            &mut conn,
            b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false}}",
        );
        let mut seen = Vec::new();
        conn.handle_eof(&mut |out| seen.push(own(out)));
        assert_eq!(
            meaning(seen),
            vec![Seen::Event(Event::Shutdown {
                guest: Some(false),
                reason: None
            })]
        );
    }

    #[test]
    fn escaped_event_names_still_match() {
        let mut conn = negotiated();
        let seen = feed(&mut conn, b"{\"event\": \"ST\\u004fP\"}\r\n");
        assert_eq!(meaning(seen), vec![Seen::Event(Event::Stop)]);
    }

    #[test]
    fn snippet_escapes_and_truncates() {
        let long = vec![b'a'; 300];
        let shown = Snippet(&long).to_string();
        assert!(shown.starts_with(&"a".repeat(200)));
        assert!(shown.ends_with("… (300 bytes)"));
        assert_eq!(Snippet(b"a\nb\xff").to_string(), "a\\nb\\xff");
    }
}
