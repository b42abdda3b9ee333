//! The answers' schema, as types the daemon writes and the clients
//! (`kvmd status`, `kvmd events`, `kvmd powerdown-all`, `kvmd doctor`)
//! read back: one definition of every field, shared by both sides.
//!
//! Two rules make a client of one version read a daemon of another:
//!
//! - Fields are only ever added (README, "Control socket"). Readers
//!   ignore fields they do not know, and every field a reader may miss
//!   has a default (`#[serde(default)]` on every struct read back).
//! - A word from a vocabulary that may grow (the watch state, a verdict,
//!   a log level) is read as a [`Word`]: [`Word::Known`] when this
//!   version knows it, else [`Word::Other`] as it came, never an error.
//! - A field this version reads as another type than a newer daemon
//!   writes (it should never happen: a key keeps its type) costs that
//!   field only: [`read`] drops what it cannot read and reads the rest.
//!
//! The bytes stay those of kvmd 1.0 (`wire.golden` pins them): fields
//! are declared in alphabetical order, the order in which 1.0's
//! `serde_json::json!` maps wrote them; a field some lines have and
//! others lack is skipped when absent (`Option`), and one that is `null`
//! in some lines is an `Option` inside it (see [`present`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{Refusal, WatchState};
use crate::decision::{ReasonCode, VerdictKind};

/// A word from a vocabulary a newer kvmd may add to: known to this
/// version, or kept as it came.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Word<T> {
    /// A word this version knows.
    Known(T),
    /// Anything else (a newer daemon's word, or `null`), as it came.
    Other(Value),
}

impl<T> Default for Word<T> {
    fn default() -> Word<T> {
        Word::Other(Value::Null)
    }
}

impl<T: Copy> Word<T> {
    /// The word, when this version knows it.
    pub fn known(&self) -> Option<T> {
        match self {
            Word::Known(t) => Some(*t),
            Word::Other(_) => None,
        }
    }
}

impl<T: Spelled> Word<T> {
    /// The word as it was written; `None` when it was no string at all.
    pub fn text(&self) -> Option<&str> {
        match self {
            Word::Known(t) => Some(t.spelled()),
            Word::Other(v) => v.as_str(),
        }
    }
}

// Readers get words from whole lines (`read`); the tests, from text.
#[cfg(test)]
impl<T: serde::de::DeserializeOwned> Word<T> {
    /// A word from its text: known if this version reads it so.
    pub(crate) fn from_text(text: &str) -> Word<T> {
        let value = Value::String(text.to_owned());
        T::deserialize(&value).map_or(Word::Other(value), Word::Known)
    }
}

impl<T> From<T> for Word<T> {
    fn from(t: T) -> Word<T> {
        Word::Known(t)
    }
}

/// Why an answer line could not be read.
#[derive(Debug)]
pub enum Unreadable {
    /// It is not JSON at all.
    NotJson(serde_json::Error),
    /// It is JSON, but not an object.
    NotAnObject,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::NotJson(e) => write!(f, "not JSON: {e}"),
            Unreadable::NotAnObject => write!(f, "not a JSON object"),
        }
    }
}

/// Reads one answer line as `T` (a struct with `#[serde(default)]`). A
/// field whose value this version cannot read as its type is dropped, as
/// an unknown one would be; the rest is read as usual.
pub fn read<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, Unreadable> {
    let value: Value = serde_json::from_slice(line).map_err(Unreadable::NotJson)?;
    if !value.is_object() {
        return Err(Unreadable::NotAnObject);
    }
    if let Ok(t) = T::deserialize(&value) {
        return Ok(t);
    }
    let cleaned = readable::<T>(value, &|v| v);
    T::deserialize(&cleaned).map_err(|_| Unreadable::NotAnObject)
}

/// `value` less what `T` cannot read: each field is tried alone, in place
/// (`wrap` puts it back where it was), kept if `T` reads it, else cleaned
/// in turn if it is an object or an array of them, else dropped. Only
/// for a line that did not read whole, so its cost is no one's usual.
fn readable<T: serde::de::DeserializeOwned>(value: Value, wrap: &dyn Fn(Value) -> Value) -> Value {
    let reads = |v: Value| T::deserialize(&wrap(v)).is_ok();
    match value {
        Value::Object(map) => {
            let mut kept = serde_json::Map::new();
            for (key, field) in map {
                let alone =
                    |v: Value| Value::Object(serde_json::Map::from_iter([(key.clone(), v)]));
                if reads(alone(field.clone())) {
                    kept.insert(key, field);
                    continue;
                }
                let inner = |v: Value| wrap(alone(v));
                let cleaned = readable::<T>(field, &inner);
                if reads(alone(cleaned.clone())) {
                    kept.insert(key, cleaned);
                }
            }
            Value::Object(kept)
        }
        Value::Array(items) => {
            let each = |v: Value| wrap(Value::Array(vec![v]));
            Value::Array(
                items
                    .into_iter()
                    .map(|item| readable::<T>(item, &each))
                    .filter(|item| T::deserialize(&each(item.clone())).is_ok())
                    .collect(),
            )
        }
        other => other,
    }
}

/// A vocabulary's word as the protocol spells it.
pub trait Spelled: Copy {
    /// The word.
    fn spelled(self) -> &'static str;
}

impl Spelled for WatchState {
    fn spelled(self) -> &'static str {
        self.as_str()
    }
}

impl Spelled for VerdictKind {
    fn spelled(self) -> &'static str {
        self.as_str()
    }
}

impl Spelled for ReasonCode {
    fn spelled(self) -> &'static str {
        self.as_str()
    }
}

impl Spelled for Refusal {
    fn spelled(self) -> &'static str {
        self.code()
    }
}

/// Declares a closed-for-now vocabulary: kebab-case on the wire,
/// [`Spelled`] and `Display` by the same words.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $word)] $variant,)+
        }

        impl Spelled for $name {
            fn spelled(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.spelled())
            }
        }
    };
}

vocabulary! {
    /// An event's `level`, as the log names them.
    Level {
        /// `error`.
        Error = "error",
        /// `warning`.
        Warning = "warning",
        /// `info`.
        Info = "info",
        /// `debug` (trace too).
        Debug = "debug",
    }
}

vocabulary! {
    /// An intent's `state` in a status.
    IntentWord {
        /// Waiting for the guest's SHUTDOWN.
        Waiting = "waiting",
        /// A SHUTDOWN within the window claimed it.
        Claimed = "claimed",
    }
}

vocabulary! {
    /// An unfinished hook's `state` in a status.
    HookRun {
        /// Its process runs.
        Running = "running",
        /// Waiting for a slot or a retry.
        Waiting = "waiting",
    }
}

vocabulary! {
    /// How a hook's run came out (an event's `hook`).
    HookResult {
        /// Exit status 0.
        Succeeded = "succeeded",
        /// Another exit status.
        Failed = "failed",
        /// A signal ended it.
        Killed = "killed",
        /// Past `--hook-timeout`.
        TimedOut = "timed-out",
        /// It could not be started.
        NotStarted = "not-started",
    }
}

/// For a field that some lines have as `null` and others lack: `None`
/// absent, `Some(None)` null (serde alone reads both as `None`).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Any one answer line but a status's (that one is written in pieces,
/// [`super::StatusStream`], and read as [`StatusLine`]); also what a
/// client reads every line as. Exactly one of the optional fields is
/// there in a line the daemon writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Answer {
    /// `cancel-intent`'s answer: the instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<String>,
    /// An error's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Word<Refusal>>,
    /// The last line to `powerdown-all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    /// An error: what was wrong (the connection is closed after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One event, to a follower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// The first line to a follower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub following: Option<bool>,
    /// `expect-stop`'s answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<IntentGiven>,
    /// `powerdown-all`'s first answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub powerdown: Option<Powerdown>,
    /// A status (read only: see [`StatusLine`]).
    #[serde(skip_serializing)]
    pub status: Option<Status>,
    /// The protocol's version.
    pub version: u32,
}

/// A status answer line, `{"version": 1, "status": {...}}`, as written
/// (this order, unlike the other answers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusLine {
    /// The protocol's version.
    pub version: u32,
    /// The status.
    pub status: Status,
}

/// A status: the daemon, then four lists (written in this order).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The daemon itself.
    pub kvmd: DaemonStatus,
    /// Names given up on (nobody listened on their socket).
    pub given_up: Vec<String>,
    /// Hooks not finished.
    pub hooks: Vec<HookStatus>,
    /// Every instance monitored or being connected.
    pub instances: Vec<InstanceStatus>,
    /// The verdicts kept, oldest first.
    pub verdicts: Vec<VerdictStatus>,
}

/// What the daemon says of itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonStatus {
    /// How many of what.
    pub counts: Counts,
    /// The control directory it watches.
    pub ctrl_dir: String,
    /// Whether it is short of file descriptors now.
    pub descriptor_shortage: bool,
    /// Its process id (`None`: not said).
    pub pid: Option<u32>,
    /// When it started (RFC 3339).
    pub started: String,
    /// For how long.
    pub uptime_seconds: u64,
    /// Its version (`None`: not said).
    pub version: Option<String>,
    /// How it follows the control directory.
    pub watch: Word<WatchState>,
}

/// A status's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Names given up on.
    pub given_up: u64,
    /// Instances.
    pub instances: u64,
    /// Instances by phase (as [`super::phase_name`] spells it).
    pub phases: BTreeMap<String, u64>,
    /// Verdicts decided and not yet written.
    pub unwritten_verdicts: u64,
    /// Verdicts kept for status.
    pub verdicts_kept: u64,
}

/// An unfinished hook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookStatus {
    /// Runs started so far.
    pub attempt: u32,
    /// The instance (escaped).
    pub name: String,
    /// The verdict's reason code.
    pub reason: Word<ReasonCode>,
    /// Running or waiting.
    pub state: Word<HookRun>,
    /// The verdict the hook is for.
    pub verdict: Word<VerdictKind>,
}

/// One instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStatus {
    /// The evidence so far (`None` before it is monitored).
    pub evidence: Option<EvidenceStatus>,
    /// The guest's run state, as QEMU said it (an open vocabulary).
    pub guest: Option<String>,
    /// Its intent, if any.
    pub intent: Option<IntentStatus>,
    /// The newest verdict about its name.
    pub last_verdict: Option<VerdictStatus>,
    /// Malformed messages from its QEMU.
    pub malformed: u64,
    /// Its name (escaped).
    pub name: String,
    /// Its phase (as [`super::phase_name`] spells it).
    pub phase: String,
    /// Its QEMU's version.
    pub qemu: Option<String>,
    /// Its QEMU's process id.
    pub qemu_pid: Option<u32>,
    /// Since when it is in that phase (RFC 3339).
    pub since: String,
    /// For how long.
    pub since_seconds: u64,
}

/// An instance's evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceStatus {
    /// GUEST_CRASHLOADED events.
    pub crash_loads: u64,
    /// Whether the guest panicked.
    pub panicked: bool,
    /// GUEST_PANICKED events.
    pub panics: u64,
    /// Whether it is paused.
    pub paused: bool,
    /// Whether its power button was pressed and not yet obeyed.
    pub powerdown_pending: bool,
    /// RESET events.
    pub resets: u64,
    /// Whether the evidence was restored after a restart.
    pub restored: bool,
    /// The first SHUTDOWN, if any.
    pub shutdown: Option<ShutdownStatus>,
}

/// A SHUTDOWN's data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShutdownStatus {
    /// `data.guest` (QEMU 2.10 on).
    pub guest: Option<bool>,
    /// `data.reason` (QEMU 4.0 on).
    pub reason: Option<String>,
}

/// An instance's intent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntentStatus {
    /// Who said so.
    pub by: String,
    /// Seconds left while it waits; `None` once claimed.
    pub expires_in_seconds: Option<u64>,
    /// When it was given (RFC 3339).
    pub given: String,
    /// Whether kvmd presses the power button again while it waits.
    pub pressing: bool,
    /// Waiting or claimed.
    pub state: Word<IntentWord>,
    /// The end of its window (RFC 3339).
    pub until: String,
}

/// A verdict, in a status's `verdicts` and an instance's `last_verdict`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerdictStatus {
    /// How long ago it was decided.
    pub age_seconds: u64,
    /// When (RFC 3339).
    pub decided: String,
    /// What became of its file (`created`, `waiting`, ...: an open
    /// vocabulary, shown as it is).
    pub file: String,
    /// Why the file is not written, while it is not.
    pub file_error: Option<String>,
    /// The `--by` of a host intent that applied.
    pub intent_by: Option<String>,
    /// The instance (escaped).
    pub name: String,
    /// Its reason code.
    pub reason: Word<ReasonCode>,
    /// User or not.
    pub verdict: Word<VerdictKind>,
    /// The reason, for people.
    pub why: String,
}

/// One event line's event. The first five fields are always there; the
/// rest only for some kinds (README, "kvmd events").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// A hook's run: which (1: the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// An intent's `--by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A guest event's QMP name (`SHUTDOWN`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A hook's exit status (`null` when it did not exit).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub exit_code: Option<Option<i32>>,
    /// A verdict's file outcome (`null` while not written).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub file: Option<Option<String>>,
    /// A SHUTDOWN's `data.guest`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub guest: Option<Option<bool>>,
    /// A hook's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<Word<HookResult>>,
    /// The instance (escaped); `null` for the daemon's own.
    pub instance: Option<String>,
    /// A verdict's host intent (`null` when none applied).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub intent_by: Option<Option<String>>,
    /// What happened (`monitoring`, `decided`, ...: an open vocabulary).
    pub kind: String,
    /// As the log names it.
    pub level: Word<Level>,
    /// The log line.
    pub message: String,
    /// A verdict's or hook's reason code; a SHUTDOWN's `data.reason`
    /// (`null` when QEMU gave none).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub reason: Option<Option<String>>,
    /// When a failed hook is tried again (`null`: not again).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub retry_in_seconds: Option<Option<u64>>,
    /// When (RFC 3339).
    pub time: String,
    /// How long a hook ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    /// A verdict's or hook's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Word<VerdictKind>>,
}

/// `expect-stop`'s answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntentGiven {
    /// Who said so.
    pub by: String,
    /// The instance.
    pub instance: String,
    /// The window.
    pub seconds: u64,
    /// Its end (RFC 3339).
    pub until: String,
}

/// `powerdown-all`'s first answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Powerdown {
    /// The guests whose power button was pressed.
    pub pressed: Vec<PowerdownGuest>,
    /// The guests it could not be pressed for, and why.
    pub refused: Vec<PowerdownGuest>,
}

/// A guest in `powerdown-all`'s answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PowerdownGuest {
    /// The instance (escaped).
    pub instance: String,
    /// Its QEMU's pid, when kvmd knows it.
    pub qemu_pid: Option<u32>,
    /// Its QEMU's start time (clock ticks since boot), when known.
    pub qemu_start: Option<u64>,
    /// Why it was not pressed (refused guests only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_daemons_fields_and_words_are_read_not_refused() {
        let line = r#"{"version": 1, "status": {
            "kvmd": {"version": "9.0.0", "pid": 7, "watch": "hibernating", "mood": "fine",
                     "counts": {"instances": 1, "phases": {"levitating": 1}, "extra": [1]}},
            "instances": [{"name": "vm1", "phase": "levitating", "guest": "dreaming",
                           "evidence": {"resets": 2, "sneezes": 3},
                           "intent": {"by": "x", "state": "pondering"},
                           "last_verdict": {"name": "vm1", "verdict": "maybe",
                                            "reason": "cosmic-ray", "file": "engraved"},
                           "colour": "blue"}],
            "hooks": [{"name": "vm1", "verdict": "user", "reason": "guest-poweroff",
                       "state": "sleeping", "attempt": 1}],
            "telemetry": {"nested": true}}}"#;
        let answer: Answer = serde_json::from_str(line).expect("read");
        let status = answer.status.expect("a status");
        assert_eq!(status.kvmd.watch.known(), None);
        assert_eq!(status.kvmd.watch.text(), Some("hibernating"));
        assert_eq!(status.kvmd.version.as_deref(), Some("9.0.0"));
        assert_eq!(status.kvmd.counts.phases.get("levitating"), Some(&1));
        let vm1 = &status.instances[0];
        assert_eq!(vm1.evidence.as_ref().map(|e| e.resets), Some(2));
        assert_eq!(vm1.qemu_pid, None);
        let intent = vm1.intent.as_ref().expect("an intent");
        assert_eq!(intent.state.text(), Some("pondering"));
        let last = vm1.last_verdict.as_ref().expect("a verdict");
        assert_eq!(last.verdict.known(), None);
        assert_eq!(last.verdict.text(), Some("maybe"));
        assert_eq!(last.reason.text(), Some("cosmic-ray"));
        assert_eq!(status.hooks[0].verdict.known(), Some(VerdictKind::User));
        assert_eq!(
            status.hooks[0].reason.known(),
            Some(ReasonCode::GuestPoweroff)
        );
        assert_eq!(status.hooks[0].state.known(), None);
        // Nothing said: defaults, and no kvmd named.
        let bare: Answer = serde_json::from_str(r#"{"status": {}}"#).expect("read");
        let bare = bare.status.expect("a status");
        assert_eq!((bare.kvmd.pid, bare.kvmd.watch.known()), (None, None));
        assert!(bare.instances.is_empty());
    }

    #[test]
    fn a_field_of_another_type_costs_that_field_only() {
        // `attempt` a string, `exit_code` an object, an instance's `name`
        // a number: each dropped where it stands, the rest read.
        let line = br#"{"version": 1, "event": {"time": "t", "level": "warning",
            "message": "up", "attempt": "third", "exit_code": {"code": 1}}}"#;
        let answer: Answer = read(line).expect("read");
        let event = answer.event.expect("an event");
        assert_eq!((event.message.as_str(), event.attempt), ("up", None));
        assert_eq!(event.level.known(), Some(Level::Warning));
        assert_eq!(event.exit_code, None);
        let line = br#"{"status": {"kvmd": {"pid": "seven", "version": "9"},
            "instances": [{"name": 5, "phase": "monitoring"}, {"name": "vm2"}]}}"#;
        let status = read::<Answer>(line)
            .expect("read")
            .status
            .expect("a status");
        assert_eq!(
            (status.kvmd.pid, status.kvmd.version.as_deref()),
            (None, Some("9"))
        );
        let names: Vec<&str> = status.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["", "vm2"]);
        assert_eq!(status.instances[0].phase, "monitoring");
        // Not JSON, or no object: said so.
        assert!(matches!(
            read::<Answer>(b"{\"ver"),
            Err(Unreadable::NotJson(_))
        ));
        assert!(matches!(
            read::<Answer>(b"[1]"),
            Err(Unreadable::NotAnObject)
        ));
    }

    #[test]
    fn events_and_errors_with_new_words_are_read() {
        let line = r#"{"version": 2, "event": {"time": "t", "level": "critical",
            "kind": "levitated", "instance": null, "message": "up", "verdict": "maybe",
            "hook": "exploded", "exit_code": null, "altitude": 3}}"#;
        let answer: Answer = serde_json::from_str(line).expect("read");
        let event = answer.event.expect("an event");
        assert_eq!(event.level.text(), Some("critical"));
        assert_eq!(event.level.known(), None);
        assert_eq!(event.kind, "levitated");
        assert_eq!(event.instance, None);
        assert_eq!(event.verdict.as_ref().and_then(Word::text), Some("maybe"));
        assert_eq!(event.hook.as_ref().and_then(Word::known), None);
        // `null` is not absent.
        assert_eq!(event.exit_code, Some(None));
        assert_eq!(event.retry_in_seconds, None);
        let error: Answer =
            serde_json::from_str(r#"{"version": 1, "error": "no", "code": "on-strike"}"#)
                .expect("read");
        assert_eq!(error.error.as_deref(), Some("no"));
        assert_eq!(error.code.as_ref().and_then(Word::known), None);
        let denied: Answer =
            serde_json::from_str(r#"{"error": "no", "code": "denied"}"#).expect("read");
        assert_eq!(denied.code.and_then(|c| c.known()), Some(Refusal::Denied));
    }

    #[test]
    fn words_are_written_as_they_are_read() {
        for (word, text) in [
            (Level::Error, "error"),
            (Level::Warning, "warning"),
            (Level::Info, "info"),
            (Level::Debug, "debug"),
        ] {
            let written = serde_json::to_string(&Word::from(word)).expect("written");
            assert_eq!(written, format!("\"{text}\""));
            assert_eq!(Word::<Level>::from_text(text), Word::Known(word));
            assert_eq!(word.to_string(), text);
        }
        let other = Word::<HookResult>::from_text("exploded");
        assert_eq!(
            serde_json::to_string(&other).expect("written"),
            "\"exploded\""
        );
        assert_eq!(Word::<HookRun>::default().text(), None);
    }
}
