//! Who stopped the guest: the shutdown decision, as pure code.
//!
//! This module owns [`Evidence`] — the little a connection must remember of
//! what it saw — and [`decide`], the rule that turns it into a [`Verdict`]
//! when the connection ends. It does no I/O: writing or removing the
//! `<instance>.shutdown` file is `shutdown_file`'s job.
//!
//! The rule (a user shutdown, and only then):
//! - the connection's *first* SHUTDOWN decides. With `-no-shutdown` a later
//!   `quit` or signal sends a second SHUTDOWN that says nothing about who
//!   shut the guest down;
//! - that SHUTDOWN said `guest: true` (QEMU 2.10+), and `reason` (4.0+),
//!   when present, is `guest-shutdown`: not `guest-reset` (`-no-reboot`),
//!   not `guest-panic`, not a host reason;
//! - no GUEST_PANICKED came before it;
//! - no POWERDOWN came before it, unless a RESET came after that POWERDOWN:
//!   an administrator's ACPI button that the guest obeys also ends in
//!   `guest: true`, and only the POWERDOWN tells it apart; a guest that
//!   rebooted instead has left the button behind;
//! - the guest was not paused then (a STOP, or a `query-status` that said
//!   not running, without a RESUME since): QEMU only pauses when an
//!   administrator, a migration or an error asks. A guest in its own S3
//!   sleep (`suspended`) is not paused;
//! - QEMU before 2.10 sends no `guest`: then Ganeti's rule stands — SHUTDOWN
//!   seen, no POWERDOWN, not paused — with the same refinements.
//!
//! Everything else is not a user shutdown, including a connection that
//! ended with no SHUTDOWN at all (a crash, SIGKILL, or no negotiation).

use std::fmt;
use std::str::FromStr;

use crate::qmp::{Event, Reason};

/// The first SHUTDOWN and the guest's state at that moment: all the
/// decision rests on once it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownSeen {
    /// The SHUTDOWN's `guest` (QEMU 2.10+).
    pub guest: Option<bool>,
    /// The SHUTDOWN's `reason` (QEMU 4.0+).
    pub reason: Option<Reason>,
    /// Whether the host had the guest paused then.
    pub paused: bool,
    /// Whether a power button press was not yet obeyed then.
    pub powerdown_pending: bool,
    /// Whether the guest had panicked before.
    pub panicked: bool,
}

/// How many of each lifecycle event a connection saw (for the log line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    shutdown: u32,
    powerdown: u32,
    reset: u32,
    stop: u32,
    resume: u32,
    panicked: u32,
    crash_loaded: u32,
}

/// What a connection knows that QEMU will not tell a restarted daemon
/// again, and so is kept in the state directory (see `state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// A POWERDOWN with no RESET since.
    pub powerdown_pending: bool,
    /// A STOP with no RESUME since. (A restarted daemon's `query-status`
    /// also says, and wins.)
    pub paused: bool,
    /// The first SHUTDOWN, once it came: with `-no-shutdown` QEMU lives on
    /// after it, and a later `quit` sends a second SHUTDOWN that must not
    /// decide in its place.
    pub shutdown: Option<ShutdownSeen>,
    /// A GUEST_PANICKED seen.
    pub panicked: bool,
}

/// What one QMP connection saw that matters to the decision. Constant size:
/// an event storm changes counters, never the footprint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    negotiated: bool,
    /// A STOP (or a `query-status` that said not running) with no RESUME
    /// since.
    paused: bool,
    /// A POWERDOWN with no RESET since.
    powerdown_pending: bool,
    panicked: bool,
    /// What the decision rests on; later events no longer matter.
    first_shutdown: Option<ShutdownSeen>,
    counts: Counts,
    /// Evidence an earlier run of the daemon left for this socket.
    restored: Option<Carried>,
}

impl Evidence {
    /// Nothing seen yet: a new connection's.
    pub fn new() -> Evidence {
        Evidence::default()
    }

    /// Evidence that starts from what an earlier connection to the same
    /// socket had seen (before a daemon restart).
    pub fn restored(carried: Carried) -> Evidence {
        Evidence {
            powerdown_pending: carried.powerdown_pending,
            paused: carried.paused,
            panicked: carried.panicked,
            first_shutdown: carried.shutdown,
            restored: Some(carried),
            ..Evidence::default()
        }
    }

    /// What must outlive this daemon (default: nothing to keep).
    ///
    /// Only what QEMU cannot tell a restarted daemon: a pending POWERDOWN,
    /// a panic, and the first SHUTDOWN. QEMU usually exits right after
    /// that SHUTDOWN and the hang-up decides; but a daemon killed between
    /// reading it and reading the hang-up reconnects to a QEMU that is
    /// exiting (no greeting comes), and only the kept SHUTDOWN lets it
    /// decide right (the deterministic simulation found this). With
    /// `-no-shutdown` QEMU lives on after it, paused. A pause alone needs
    /// nothing kept: `query-status` reports it exactly, and Ganeti starts
    /// every guest paused (`-S`).
    pub fn carried(&self) -> Carried {
        let shutdown = self.first_shutdown;
        if !self.powerdown_pending && !self.panicked && shutdown.is_none() {
            return Carried::default();
        }
        Carried {
            powerdown_pending: self.powerdown_pending,
            paused: self.paused,
            shutdown,
            panicked: self.panicked,
        }
    }

    /// Whether `qmp_capabilities` succeeded on this connection.
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// A STOP (or a status that said not running) with no RESUME since.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// An ACPI power button press the guest has not obeyed (or reset) yet.
    pub fn powerdown_pending(&self) -> bool {
        self.powerdown_pending
    }

    /// A GUEST_PANICKED seen (a crash, not a shutdown).
    pub fn panicked(&self) -> bool {
        self.panicked
    }

    /// The first SHUTDOWN, once it came.
    pub fn first_shutdown(&self) -> Option<ShutdownSeen> {
        self.first_shutdown
    }

    /// RESET events seen (guest reboots).
    pub fn resets(&self) -> u32 {
        self.counts.reset
    }

    /// GUEST_PANICKED events seen on this connection.
    pub fn panics(&self) -> u32 {
        self.counts.panicked
    }

    /// GUEST_CRASHLOADED events seen on this connection.
    pub fn crash_loads(&self) -> u32 {
        self.counts.crash_loaded
    }

    /// Whether evidence from before a daemon restart was taken up.
    pub fn is_restored(&self) -> bool {
        self.restored.is_some()
    }

    /// Folds one event, in wire order.
    pub fn record(&mut self, event: Event) {
        let counts = &mut self.counts;
        match event {
            Event::Negotiated => self.negotiated = true,
            Event::Status { paused } => self.paused = paused,
            Event::Shutdown { guest, reason } => {
                counts.shutdown = counts.shutdown.saturating_add(1);
                self.first_shutdown.get_or_insert(ShutdownSeen {
                    guest,
                    reason,
                    paused: self.paused,
                    powerdown_pending: self.powerdown_pending,
                    panicked: self.panicked,
                });
            }
            Event::Powerdown => {
                counts.powerdown = counts.powerdown.saturating_add(1);
                self.powerdown_pending = true;
            }
            Event::Reset => {
                counts.reset = counts.reset.saturating_add(1);
                self.powerdown_pending = false;
            }
            Event::Stop => {
                counts.stop = counts.stop.saturating_add(1);
                self.paused = true;
            }
            Event::Resume => {
                counts.resume = counts.resume.saturating_add(1);
                self.paused = false;
            }
            Event::GuestPanicked => {
                counts.panicked = counts.panicked.saturating_add(1);
                self.panicked = true;
            }
            // The guest lives on in its crash kernel: worth a record, but
            // whatever stops it later decides (a kdump guest reboots, or
            // its user powers it off after the dump).
            Event::GuestCrashLoaded => {
                counts.crash_loaded = counts.crash_loaded.saturating_add(1);
            }
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_shutdown {
            None => write!(f, "no SHUTDOWN")?,
            Some(s) => {
                write!(f, "first SHUTDOWN guest=")?;
                match s.guest {
                    Some(guest) => write!(f, "{guest}")?,
                    None => write!(f, "absent")?,
                }
                write!(f, " reason=")?;
                match s.reason {
                    Some(reason) => write!(f, "{reason}")?,
                    None => write!(f, "absent")?,
                }
            }
        }
        let c = &self.counts;
        write!(f, "; events:")?;
        let mut any = false;
        for (name, n) in [
            ("SHUTDOWN", c.shutdown),
            ("POWERDOWN", c.powerdown),
            ("RESET", c.reset),
            ("STOP", c.stop),
            ("RESUME", c.resume),
            ("GUEST_PANICKED", c.panicked),
            ("GUEST_CRASHLOADED", c.crash_loaded),
        ] {
            if n > 0 {
                write!(f, " {name}={n}")?;
                any = true;
            }
        }
        if !any {
            write!(f, " none")?;
        }
        if !self.negotiated {
            write!(f, "; never negotiated")?;
        }
        if let Some(carried) = self.restored {
            write!(f, "; restored from before a restart:")?;
            for (seen, name) in [
                (carried.powerdown_pending, "POWERDOWN"),
                (carried.paused, "STOP"),
                (carried.panicked, "GUEST_PANICKED"),
                (carried.shutdown.is_some(), "SHUTDOWN"),
            ] {
                if seen {
                    write!(f, " {name}")?;
                }
            }
        }
        Ok(())
    }
}

/// Why the verdict is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The guest powered itself off (`guest: true`, `guest-shutdown`).
    GuestPoweredOff,
    /// QEMU older than 2.10: SHUTDOWN with no POWERDOWN and not paused.
    LegacyShutdown,
    /// The connection ended before QMP was negotiated.
    NeverNegotiated,
    /// No SHUTDOWN: QEMU crashed or was killed.
    NoShutdown,
    /// The host asked (`guest: false`): QMP `quit`, a signal, the UI.
    HostRequested(Option<Reason>),
    /// The guest reset itself under `-no-reboot`.
    GuestReset,
    /// The guest panicked.
    GuestPanicked,
    /// An administrator pressed the ACPI power button and the guest obeyed.
    PowerButton,
    /// The guest was paused when it shut down.
    Paused,
    /// A reason this rule does not know as a user's.
    OtherReason(Reason),
    /// The host said beforehand that it would stop this QEMU (`kvmd
    /// expect-stop`, `kvmd powerdown-all`), and the first SHUTDOWN came
    /// within that window: the host's, whatever QMP says.
    HostIntent,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::GuestPoweredOff => write!(f, "the guest powered itself off"),
            Why::LegacyShutdown => write!(
                f,
                "SHUTDOWN without POWERDOWN or pause (QEMU too old to say who)"
            ),
            Why::NeverNegotiated => write!(f, "the connection ended before QMP negotiation"),
            Why::NoShutdown => write!(f, "QEMU ended without a SHUTDOWN (crash or kill)"),
            Why::HostRequested(Some(reason)) => write!(f, "the host shut it down ({reason})"),
            Why::HostRequested(None) => write!(f, "the host shut it down"),
            Why::GuestReset => write!(f, "the guest reset under -no-reboot"),
            Why::GuestPanicked => write!(f, "the guest panicked"),
            Why::PowerButton => write!(f, "the ACPI power button was pressed"),
            Why::Paused => write!(f, "the guest was paused"),
            Why::OtherReason(reason) => write!(f, "shutdown reason {reason}"),
            Why::HostIntent => write!(f, "the host said beforehand it would stop it"),
        }
    }
}

impl Why {
    /// The reason's stable code: the same in the decision log line,
    /// `kvmd status`, `kvmd events`, the metrics and the hooks. Never
    /// renamed; new reasons get new codes (see [`ReasonCode`]).
    pub fn code(self) -> ReasonCode {
        match self {
            Why::GuestPoweredOff => ReasonCode::GuestPoweroff,
            Why::LegacyShutdown => ReasonCode::LegacyPoweroff,
            Why::NeverNegotiated => ReasonCode::NotNegotiated,
            Why::NoShutdown => ReasonCode::NoShutdown,
            Why::HostRequested(None) => ReasonCode::HostShutdown,
            Why::HostRequested(Some(reason)) => match reason {
                Reason::HostQmpQuit => ReasonCode::HostQuit,
                Reason::HostSignal => ReasonCode::HostSignal,
                Reason::HostUi => ReasonCode::HostUi,
                Reason::HostError => ReasonCode::HostError,
                Reason::HostQmpSystemReset => ReasonCode::HostReset,
                _ => ReasonCode::HostOther,
            },
            Why::GuestReset => ReasonCode::GuestReset,
            Why::GuestPanicked => ReasonCode::GuestPanic,
            Why::PowerButton => ReasonCode::HostAcpi,
            Why::Paused => ReasonCode::Paused,
            Why::OtherReason(_) => ReasonCode::OtherReason,
            Why::HostIntent => ReasonCode::HostIntent,
        }
    }
}

/// A verdict's reason code: what operators, scripts, dashboards and hooks
/// key on. Written out (log lines, `kvmd status` and `kvmd events`, the
/// metrics' `reason` label, `KVMD_REASON`, the journal, the hooks' state
/// file) always as [`ReasonCode::as_str`], which serde and [`FromStr`]
/// use too. Codes are never renamed; a new reason gets a new code, in
/// [`ReasonCode::ALL`], README's "Reasons" table and kvmd(8) (a test in
/// `tests/release.rs` holds the two documents to [`ReasonCode::ALL`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonCode {
    /// `guest-poweroff`: the guest powered itself off.
    GuestPoweroff,
    /// `legacy-poweroff`: QEMU before 2.10, Ganeti's rule.
    LegacyPoweroff,
    /// `host-acpi`: the guest obeyed the ACPI power button.
    HostAcpi,
    /// `host-quit`: QMP `quit`.
    HostQuit,
    /// `host-signal`: a signal to QEMU.
    HostSignal,
    /// `host-ui`: the display window was closed.
    HostUi,
    /// `host-error`: QEMU hit an error.
    HostError,
    /// `host-reset`: `system_reset` under `-no-reboot`.
    HostReset,
    /// `host-other`: another host reason.
    HostOther,
    /// `host-shutdown`: the host's, without a reason (QEMU 2.10-3.1).
    HostShutdown,
    /// `guest-reset`: the guest rebooted under `-no-reboot`.
    GuestReset,
    /// `guest-panic`: the guest panicked.
    GuestPanic,
    /// `paused`: the guest was paused when it shut down.
    Paused,
    /// `other-reason`: a reason not the user's.
    OtherReason,
    /// `host-intent`: the host said beforehand it would stop it.
    HostIntent,
    /// `no-shutdown`: no SHUTDOWN (a kill or a crash).
    NoShutdown,
    /// `not-negotiated`: the connection ended before QMP negotiation.
    NotNegotiated,
}

impl ReasonCode {
    /// Every code, in the order the metrics list them (and README's and
    /// kvmd(8)'s tables): the user's first, then the host's, then the
    /// rest.
    pub const ALL: [ReasonCode; 17] = [
        ReasonCode::GuestPoweroff,
        ReasonCode::LegacyPoweroff,
        ReasonCode::HostAcpi,
        ReasonCode::HostQuit,
        ReasonCode::HostSignal,
        ReasonCode::HostUi,
        ReasonCode::HostError,
        ReasonCode::HostReset,
        ReasonCode::HostOther,
        ReasonCode::HostShutdown,
        ReasonCode::GuestReset,
        ReasonCode::GuestPanic,
        ReasonCode::Paused,
        ReasonCode::OtherReason,
        ReasonCode::HostIntent,
        ReasonCode::NoShutdown,
        ReasonCode::NotNegotiated,
    ];

    /// The code as written everywhere (`guest-poweroff`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            ReasonCode::GuestPoweroff => "guest-poweroff",
            ReasonCode::LegacyPoweroff => "legacy-poweroff",
            ReasonCode::HostAcpi => "host-acpi",
            ReasonCode::HostQuit => "host-quit",
            ReasonCode::HostSignal => "host-signal",
            ReasonCode::HostUi => "host-ui",
            ReasonCode::HostError => "host-error",
            ReasonCode::HostReset => "host-reset",
            ReasonCode::HostOther => "host-other",
            ReasonCode::HostShutdown => "host-shutdown",
            ReasonCode::GuestReset => "guest-reset",
            ReasonCode::GuestPanic => "guest-panic",
            ReasonCode::Paused => "paused",
            ReasonCode::OtherReason => "other-reason",
            ReasonCode::HostIntent => "host-intent",
            ReasonCode::NoShutdown => "no-shutdown",
            ReasonCode::NotNegotiated => "not-negotiated",
        }
    }

    /// The verdict a reason makes: the user's only for a guest that
    /// powered itself off, by either rule. The one place that says so.
    pub const fn verdict(self) -> VerdictKind {
        match self {
            ReasonCode::GuestPoweroff | ReasonCode::LegacyPoweroff => VerdictKind::User,
            _ => VerdictKind::NotUser,
        }
    }

    /// Whether this reason makes a user shutdown.
    pub const fn is_user(self) -> bool {
        matches!(self.verdict(), VerdictKind::User)
    }

    /// The rule behind the code, for listings (README's and kvmd(8)'s
    /// tables say the same in their own words).
    pub const fn description(self) -> &'static str {
        match self {
            ReasonCode::GuestPoweroff => {
                "SHUTDOWN guest=true reason=guest-shutdown (or no reason, QEMU 2.10-3.1), no POWERDOWN pending, no panic, not paused"
            }
            ReasonCode::LegacyPoweroff => {
                "QEMU before 2.10 (no guest field): SHUTDOWN, no POWERDOWN pending, not paused"
            }
            ReasonCode::HostAcpi => {
                "the guest obeyed the ACPI power button (POWERDOWN before SHUTDOWN, no RESET between)"
            }
            ReasonCode::HostQuit => "SHUTDOWN guest=false reason=host-qmp-quit: QMP quit",
            ReasonCode::HostSignal => {
                "SHUTDOWN reason=host-signal: SIGTERM, SIGINT or SIGHUP to QEMU"
            }
            ReasonCode::HostUi => "SHUTDOWN reason=host-ui: the display window was closed",
            ReasonCode::HostError => "SHUTDOWN reason=host-error: QEMU hit an error",
            ReasonCode::HostReset => {
                "SHUTDOWN reason=host-qmp-system-reset: a system_reset under -no-reboot"
            }
            ReasonCode::HostOther => "SHUTDOWN guest=false with another host reason",
            ReasonCode::HostShutdown => "SHUTDOWN guest=false without a reason (QEMU 2.10-3.1)",
            ReasonCode::GuestReset => {
                "SHUTDOWN reason=guest-reset: the guest rebooted under -no-reboot"
            }
            ReasonCode::GuestPanic => "GUEST_PANICKED, or SHUTDOWN reason=guest-panic",
            ReasonCode::Paused => {
                "the guest was paused (STOP, or query-status not running) when it shut down"
            }
            ReasonCode::OtherReason => {
                "SHUTDOWN guest=true with a reason not the user's (subsystem-reset, or one this kvmd does not know)"
            }
            ReasonCode::HostIntent => {
                "the host said beforehand it would stop this QEMU (kvmd expect-stop, kvmd powerdown-all) and the first SHUTDOWN came within that window, whatever it said"
            }
            ReasonCode::NoShutdown => {
                "the connection ended without a SHUTDOWN: QEMU was killed or crashed"
            }
            ReasonCode::NotNegotiated => "the connection ended before QMP was negotiated",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not a word of one of these vocabularies (`FromStr` for
/// [`ReasonCode`] and [`VerdictKind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownWord {
    /// What the text was meant to be (`a reason code`, ...).
    pub expected: &'static str,
    /// The text.
    pub text: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not {}: {:?}", self.expected, self.text)
    }
}

impl std::error::Error for UnknownWord {}

/// The word of `all` written as `text`: one rule for reading back every
/// vocabulary, from the same `as_str` that writes it.
fn word<T: Copy>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    text: &str,
    expected: &'static str,
) -> Result<T, UnknownWord> {
    all.iter()
        .copied()
        .find(|&word| as_str(word) == text)
        .ok_or_else(|| UnknownWord {
            expected,
            text: text.to_owned(),
        })
}

impl FromStr for ReasonCode {
    type Err = UnknownWord;

    fn from_str(text: &str) -> Result<ReasonCode, UnknownWord> {
        word(&ReasonCode::ALL, ReasonCode::as_str, text, "a reason code")
    }
}

// Tests (and callers holding text) compare a code with its text directly.
impl PartialEq<str> for ReasonCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ReasonCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Whether a verdict is a user shutdown, as the verdict is written out:
/// `user` or `not-user` (status, events, metrics, hooks, the journal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// The user shut the guest down from inside; Ganeti leaves it down.
    User,
    /// Anything else; Ganeti may restart it.
    NotUser,
}

impl VerdictKind {
    /// `User` for true.
    pub const fn from_user(user: bool) -> VerdictKind {
        if user {
            VerdictKind::User
        } else {
            VerdictKind::NotUser
        }
    }

    /// Whether this is a user shutdown.
    pub const fn is_user(self) -> bool {
        matches!(self, VerdictKind::User)
    }

    /// `user` or `not-user`, as written everywhere.
    pub const fn as_str(self) -> &'static str {
        match self {
            VerdictKind::User => "user",
            VerdictKind::NotUser => "not-user",
        }
    }

    /// `user` or `not user`, for people (`kvmd status`, `kvmd doctor`).
    pub const fn words(self) -> &'static str {
        match self {
            VerdictKind::User => "user",
            VerdictKind::NotUser => "not user",
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VerdictKind {
    type Err = UnknownWord;

    fn from_str(text: &str) -> Result<VerdictKind, UnknownWord> {
        word(
            &[VerdictKind::User, VerdictKind::NotUser],
            VerdictKind::as_str,
            text,
            "a verdict (user or not-user)",
        )
    }
}

/// The answer to "who stopped it": a reason, from which whether it was
/// the user follows. Built only from a [`Why`], so a verdict cannot say
/// "user shutdown" for a reason that is not the user's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict(Why);

impl Verdict {
    /// True: the user shut the guest down from inside; Ganeti leaves it
    /// down. False: anything else; Ganeti may restart it.
    pub fn is_user_shutdown(self) -> bool {
        self.kind().is_user()
    }

    /// `user` or `not-user`, as written out (its reason code's).
    pub fn kind(self) -> VerdictKind {
        self.0.code().verdict()
    }

    /// What the verdict rests on (its reason code).
    pub fn why(self) -> Why {
        self.0
    }
}

impl From<Why> for Verdict {
    fn from(why: Why) -> Verdict {
        Verdict(why)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_user_shutdown() {
            "user shutdown"
        } else {
            "not a user shutdown"
        };
        write!(f, "{verdict} ({}): {}", self.0.code(), self.0)
    }
}

/// Whether the host said it would stop the QEMU before its first
/// SHUTDOWN came (an intent, see `kvmd expect-stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Nobody said anything: QMP's evidence decides.
    Nothing,
    /// An intent was in force when the first SHUTDOWN came.
    HostStop,
}

/// The rule (see the module documentation).
pub fn decide(evidence: &Evidence) -> Verdict {
    decide_expected(evidence, Expected::Nothing)
}

/// The rule, with what the host said beforehand: a SHUTDOWN the host
/// announced is the host's even when QEMU cannot tell it from the user's
/// (a guest agent's `guest-shutdown` ends in `guest: true` with no
/// POWERDOWN). Without a SHUTDOWN the evidence decides as ever.
pub fn decide_expected(evidence: &Evidence, expected: Expected) -> Verdict {
    match (expected, evidence.first_shutdown) {
        (Expected::HostStop, Some(_)) => Verdict(Why::HostIntent),
        _ => Verdict(why(evidence)),
    }
}

fn why(evidence: &Evidence) -> Why {
    let Some(s) = evidence.first_shutdown else {
        return if evidence.negotiated {
            Why::NoShutdown
        } else {
            Why::NeverNegotiated
        };
    };
    if s.panicked || s.reason == Some(Reason::GuestPanic) {
        return Why::GuestPanicked;
    }
    if s.guest == Some(false) {
        return Why::HostRequested(s.reason);
    }
    match s.reason {
        None | Some(Reason::GuestShutdown) => {}
        Some(Reason::GuestReset) => return Why::GuestReset,
        Some(reason) if s.guest.is_none() => return Why::HostRequested(Some(reason)),
        Some(reason) => return Why::OtherReason(reason),
    }
    if s.powerdown_pending {
        return Why::PowerButton;
    }
    if s.paused {
        return Why::Paused;
    }
    if s.guest.is_some() {
        Why::GuestPoweredOff
    } else {
        Why::LegacyShutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn shutdown(guest: bool, reason: Reason) -> Event {
        Event::Shutdown {
            guest: Some(guest),
            reason: Some(reason),
        }
    }
    const USER_OFF: Event = shutdown(true, Reason::GuestShutdown);
    const LEGACY_OFF: Event = Event::Shutdown {
        guest: None,
        reason: None,
    };

    /// Decides a connection that negotiated, saw `running`, then `events`.
    fn verdict(events: &[Event]) -> Verdict {
        let mut evidence = Evidence::new();
        evidence.record(Event::Negotiated);
        evidence.record(Event::Status { paused: false });
        for &event in events {
            evidence.record(event);
        }
        decide(&evidence)
    }

    fn is_user(events: &[Event]) -> bool {
        verdict(events).is_user_shutdown()
    }

    // One test per row of the scenario table in docs/qemu.md.

    #[test]
    fn guest_powers_off() {
        assert_eq!(verdict(&[USER_OFF]), Verdict::from(Why::GuestPoweredOff));
    }

    #[test]
    fn acpi_button_obeyed_is_not_user() {
        use Event::Powerdown;
        assert_eq!(verdict(&[Powerdown, USER_OFF]).why(), Why::PowerButton);
        assert!(!is_user(&[Powerdown, Powerdown, USER_OFF]));
    }

    #[test]
    fn qmp_quit_is_not_user() {
        let quit = shutdown(false, Reason::HostQmpQuit);
        assert_eq!(
            verdict(&[quit]).why(),
            Why::HostRequested(Some(Reason::HostQmpQuit))
        );
    }

    #[test]
    fn signals_are_not_user() {
        assert!(!is_user(&[shutdown(false, Reason::HostSignal)]));
    }

    #[test]
    fn crash_or_kill_is_not_user() {
        assert_eq!(verdict(&[]).why(), Why::NoShutdown);
    }

    #[test]
    fn normal_reboot_then_user_poweroff_is_user() {
        let reset = Event::Reset;
        assert!(is_user(&[reset, reset, USER_OFF]));
    }

    #[test]
    fn no_reboot_reset_is_not_user() {
        let reset = shutdown(true, Reason::GuestReset);
        assert_eq!(verdict(&[reset]).why(), Why::GuestReset);
    }

    #[test]
    fn panic_is_not_user() {
        let panic = shutdown(true, Reason::GuestPanic);
        assert_eq!(
            verdict(&[Event::GuestPanicked, panic]).why(),
            Why::GuestPanicked
        );
        assert_eq!(
            verdict(&[Event::GuestPanicked, Event::Stop, panic]).why(),
            Why::GuestPanicked
        );
        // A panic whose SHUTDOWN reason alone says so.
        assert!(!is_user(&[panic]));
        // A panic event before a shutdown that claims guest-shutdown.
        assert!(!is_user(&[Event::GuestPanicked, USER_OFF]));
    }

    #[test]
    fn stop_cont_then_user_poweroff_is_user() {
        assert!(is_user(&[Event::Stop, Event::Resume, USER_OFF]));
    }

    #[test]
    fn stop_then_quit_is_not_user() {
        let quit = shutdown(false, Reason::HostQmpQuit);
        assert!(!is_user(&[Event::Stop, quit]));
    }

    #[test]
    fn paused_when_shutdown_came_is_not_user() {
        assert_eq!(verdict(&[Event::Stop, USER_OFF]).why(), Why::Paused);
    }

    #[test]
    fn late_daemon_learns_pause_from_status() {
        let mut evidence = Evidence::new();
        evidence.record(Event::Negotiated);
        evidence.record(Event::Status { paused: true });
        evidence.record(USER_OFF);
        assert_eq!(decide(&evidence).why(), Why::Paused);

        let mut evidence = Evidence::new();
        evidence.record(Event::Negotiated);
        evidence.record(Event::Status { paused: true });
        evidence.record(Event::Resume);
        evidence.record(USER_OFF);
        assert!(decide(&evidence).is_user_shutdown());
    }

    #[test]
    fn no_shutdown_pause_after_user_poweroff_then_quit_is_user() {
        // -no-shutdown: SHUTDOWN (guest), STOP, later quit sends a second
        // SHUTDOWN with a host reason. The first one decides.
        let quit = shutdown(false, Reason::HostQmpQuit);
        assert!(is_user(&[USER_OFF, Event::Stop, quit]));
        // ...and the other way round.
        assert!(!is_user(&[quit, USER_OFF]));
    }

    #[test]
    fn reset_after_powerdown_clears_the_button() {
        use Event::{Powerdown, Reset};
        assert!(is_user(&[Powerdown, Reset, USER_OFF]));
        assert!(!is_user(&[Reset, Powerdown, USER_OFF]));
    }

    #[test]
    fn legacy_qemu_follows_ganetis_rule() {
        use Event::{Powerdown, Reset, Resume, Stop};
        assert_eq!(verdict(&[LEGACY_OFF]).why(), Why::LegacyShutdown);
        assert!(!is_user(&[Powerdown, LEGACY_OFF]));
        assert!(!is_user(&[Stop, LEGACY_OFF]));
        assert!(is_user(&[Stop, Resume, LEGACY_OFF]));
        assert!(is_user(&[Powerdown, Reset, LEGACY_OFF]));
        assert!(!is_user(&[Event::GuestPanicked, LEGACY_OFF]));
    }

    #[test]
    fn guest_without_reason_qemu_2_10_to_3_1() {
        let off = Event::Shutdown {
            guest: Some(true),
            reason: None,
        };
        assert!(is_user(&[off]));
        let host = Event::Shutdown {
            guest: Some(false),
            reason: None,
        };
        assert_eq!(verdict(&[host]).why(), Why::HostRequested(None));
    }

    #[test]
    fn unknown_or_odd_reasons_are_not_user() {
        assert!(!is_user(&[shutdown(true, Reason::Unknown)]));
        assert!(!is_user(&[shutdown(true, Reason::HostQmpSystemReset)]));
        let odd = Event::Shutdown {
            guest: None,
            reason: Some(Reason::HostSignal),
        };
        assert!(!is_user(&[odd]));
    }

    #[test]
    fn a_power_button_pressed_before_a_restart_still_counts() {
        let mut before = Evidence::new();
        before.record(Event::Negotiated);
        before.record(Event::Powerdown);
        let carried = before.carried();
        assert!(carried.powerdown_pending);
        // The restarted daemon sees only the guest obeying.
        let mut after = Evidence::restored(carried);
        after.record(Event::Negotiated);
        after.record(Event::Status { paused: false });
        after.record(USER_OFF);
        assert_eq!(decide(&after).why(), Why::PowerButton);
        assert!(
            after
                .to_string()
                .ends_with("restored from before a restart: POWERDOWN")
        );
        // A reset in between clears it, as in one connection.
        let mut after = Evidence::restored(carried);
        after.record(Event::Reset);
        after.record(USER_OFF);
        assert!(decide(&after).is_user_shutdown());
    }

    #[test]
    fn nothing_is_carried_from_a_clean_connection() {
        let mut evidence = Evidence::new();
        evidence.record(Event::Negotiated);
        evidence.record(Event::Status { paused: false });
        evidence.record(Event::Reset);
        assert_eq!(evidence.carried(), Carried::default());
        // A pause alone: query-status tells a restarted daemon.
        evidence.record(Event::Stop);
        assert_eq!(evidence.carried(), Carried::default());
        // A SHUTDOWN: kept until the hang-up decides (QEMU exits right
        // after; a daemon killed in between must still know it).
        let mut evidence = Evidence::new();
        evidence.record(USER_OFF);
        assert!(evidence.carried().shutdown.is_some());
        // Paused after it (-no-shutdown): kept, with the pause.
        evidence.record(Event::Stop);
        assert!(evidence.carried().shutdown.is_some() && evidence.carried().paused);
        // A power button: kept, with the pause beside it.
        let mut evidence = Evidence::new();
        evidence.record(Event::Stop);
        evidence.record(Event::Powerdown);
        let carried = evidence.carried();
        assert!(carried.powerdown_pending && carried.paused);
    }

    #[test]
    fn a_no_shutdown_poweroff_before_a_restart_still_decides() {
        // -no-shutdown: the user powers off, the daemon restarts, then the
        // administrator quits QEMU.
        let mut before = Evidence::new();
        before.record(Event::Negotiated);
        before.record(USER_OFF);
        before.record(Event::Stop);
        let mut after = Evidence::restored(before.carried());
        after.record(Event::Negotiated);
        after.record(Event::Status { paused: true });
        after.record(shutdown(false, Reason::HostQmpQuit));
        assert_eq!(decide(&after).why(), Why::GuestPoweredOff);
    }

    #[test]
    fn an_announced_shutdown_is_the_hosts_whatever_qmp_says() {
        let mut evidence = Evidence::new();
        evidence.record(Event::Negotiated);
        // Nothing announced and nothing seen: as ever.
        assert_eq!(
            decide_expected(&evidence, Expected::HostStop).why(),
            Why::NoShutdown
        );
        // A guest agent's shutdown looks exactly like the user's own.
        evidence.record(USER_OFF);
        assert!(decide(&evidence).is_user_shutdown());
        let verdict = decide_expected(&evidence, Expected::HostStop);
        assert_eq!(verdict.why(), Why::HostIntent);
        assert!(!verdict.is_user_shutdown());
        assert_eq!(
            decide_expected(&evidence, Expected::Nothing),
            decide(&evidence)
        );
    }

    #[test]
    fn never_negotiated_is_not_user() {
        assert_eq!(decide(&Evidence::new()).why(), Why::NeverNegotiated);
    }

    #[test]
    fn evidence_stays_small_whatever_the_storm() {
        let mut evidence = Evidence::new();
        let size = std::mem::size_of_val(&evidence);
        for _ in 0..100_000 {
            evidence.record(Event::Reset);
        }
        assert_eq!(std::mem::size_of_val(&evidence), size);
        assert!(size <= 64, "Evidence is {size} bytes");
    }

    #[test]
    fn log_line_names_the_evidence() {
        let mut evidence = Evidence::new();
        evidence.record(Event::Negotiated);
        evidence.record(Event::Powerdown);
        evidence.record(USER_OFF);
        let line = format!("{} [{evidence}]", decide(&evidence));
        assert_eq!(
            line,
            "not a user shutdown (host-acpi): the ACPI power button was pressed \
             [first SHUTDOWN guest=true reason=guest-shutdown; events: SHUTDOWN=1 POWERDOWN=1]"
        );
        assert_eq!(
            Evidence::new().to_string(),
            "no SHUTDOWN; events: none; never negotiated"
        );
    }

    #[test]
    fn every_reason_has_one_documented_code() {
        let reasons = [
            Why::GuestPoweredOff,
            Why::LegacyShutdown,
            Why::NeverNegotiated,
            Why::NoShutdown,
            Why::HostRequested(None),
            Why::HostRequested(Some(Reason::HostQmpQuit)),
            Why::HostRequested(Some(Reason::HostSignal)),
            Why::HostRequested(Some(Reason::HostUi)),
            Why::HostRequested(Some(Reason::HostError)),
            Why::HostRequested(Some(Reason::HostQmpSystemReset)),
            Why::HostRequested(Some(Reason::SubsystemReset)),
            Why::GuestReset,
            Why::GuestPanicked,
            Why::PowerButton,
            Why::Paused,
            Why::OtherReason(Reason::Unknown),
            Why::HostIntent,
        ];
        for why in reasons {
            let code = why.code();
            assert!(ReasonCode::ALL.contains(&code), "{code} is not in ALL");
            // The user's verdicts are these two reasons, whatever the codes
            // say (the rule, independently of `ReasonCode::verdict`).
            let user = matches!(why, Why::GuestPoweredOff | Why::LegacyShutdown);
            assert_eq!(user, Verdict::from(why).is_user_shutdown(), "{code}");
        }
        let codes: std::collections::BTreeSet<_> = reasons.iter().map(|w| w.code()).collect();
        assert_eq!(
            codes.len(),
            ReasonCode::ALL.len(),
            "a code in ALL no reason gives"
        );
    }

    #[test]
    fn reason_codes_read_back_as_written() {
        let texts: std::collections::BTreeSet<_> =
            ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), ReasonCode::ALL.len(), "a code written twice");
        for code in ReasonCode::ALL {
            assert_eq!(code.as_str().parse(), Ok(code));
            assert_eq!(code.to_string(), code.as_str());
            let json = serde_json::to_string(&code).expect("a code serializes");
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(serde_json::from_str::<ReasonCode>(&json).ok(), Some(code));
            assert!(!code.description().is_empty());
        }
        assert!("guest-shutdown".parse::<ReasonCode>().is_err());
        for kind in [VerdictKind::User, VerdictKind::NotUser] {
            assert_eq!(kind.as_str().parse(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("a verdict serializes");
            assert_eq!(json, format!("\"{kind}\""));
        }
        assert_eq!(VerdictKind::NotUser.as_str(), "not-user");
        assert!("not user".parse::<VerdictKind>().is_err());
    }
}
