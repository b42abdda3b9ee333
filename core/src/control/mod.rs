//! The control protocol, sans-IO: what `kvmd status` and `kvmd events`
//! ask, and what the daemon answers.
//!
//! One JSON object a line, both ways. A client sends one request:
//! `{"version": 1, "command": "status", "instances": ["vm1"]}` (the
//! instance list is optional) or `{"version": 1, "command": "events"}`.
//! `status` is answered by one line, `{"version": 1, "status": {...}}`;
//! `events` by `{"version": 1, "following": true}` and then one
//! `{"version": 1, "event": {...}}` line per thing that happens. Anything
//! wrong is answered `{"version": 1, "error": "..."}` and the connection
//! closed. The schema is in README ("Control socket") and kvmd(8).
//!
//! A status line is produced piece by piece as the socket drains
//! ([`StatusStream`]), so what one client costs stays bounded however many
//! instances there are.
//!
//! Every answer's fields are typed once, in [`schema`]: the daemon
//! writes them from there, and the clients read them back as the same
//! types, leniently (a newer daemon's fields and words do not fail them).

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

pub mod schema;

use schema::{
    Answer, Counts, DaemonStatus, EvidenceStatus, HookResult, HookRun, HookStatus, InstanceStatus,
    IntentGiven, IntentStatus, IntentWord, Level, Powerdown, PowerdownGuest, ShutdownStatus,
    VerdictStatus,
};

use crate::fleet::{
    FileState, Fleet, Follow, HookEnd, InstanceView, IntentState, Notice, Outcome, PastVerdict,
    Phase, Reach, RecordError, WaitFor,
};
use crate::name::InstanceName;
use crate::qmp::Event;
use crate::timestamp::Rfc3339;

/// The protocol's version: a client can tell what it talks to.
pub const VERSION: u32 = 1;
/// The longest request taken; a longer one is refused.
pub const MAX_REQUEST: usize = 4096;
/// Clients served at once; more are refused with a message.
pub const MAX_CLIENTS: usize = 16;
/// Output a client may leave unread: past it a follower is cut off.
pub const MAX_BACKLOG: usize = 256 * 1024;
/// A status line is produced in pieces of about this size.
pub const STATUS_PIECE: usize = 32 * 1024;

/// What a client asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// The daemon and its instances; only the named ones if any.
    Status {
        /// The instances asked about; empty: all.
        instances: Vec<String>,
    },
    /// Every notice from now on.
    Events,
    /// `kvmd expect-stop`: the next SHUTDOWN of the instance's QEMU within
    /// `seconds` is the host's.
    ExpectStop {
        /// The instance.
        instance: String,
        /// The window, in seconds.
        seconds: u64,
        /// Who says so (`--by`).
        by: String,
    },
    /// `kvmd expect-stop --cancel`.
    CancelIntent {
        /// The instance.
        instance: String,
    },
    /// `kvmd powerdown-all`: press every monitored guest's power button,
    /// with an intent for `seconds`; answered as the guests stop.
    PowerdownAll {
        /// Each intent's window, in seconds.
        seconds: u64,
        /// Who says so (`--by`).
        by: String,
    },
}

/// The `by` of `kvmd powerdown-all`'s intents when none is given.
pub const POWERDOWN_BY: &str = "node-shutdown";

/// Reads one request line.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON request: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("a request is a JSON object".to_owned());
    };
    match object.get("version") {
        None => {}
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v} (this is {VERSION})"
            ));
        }
    }
    match object.get("command").and_then(Value::as_str) {
        Some("status") => {
            let instances = match object.get("instances") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(names)) => names
                    .iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("instances must be strings")?,
                Some(_) => return Err("instances must be a list".to_owned()),
            };
            Ok(Request::Status { instances })
        }
        Some("events") => Ok(Request::Events),
        Some("expect-stop") => Ok(Request::ExpectStop {
            instance: instance(object)?,
            seconds: seconds(object)?,
            by: by(object, "expect-stop")?,
        }),
        Some("cancel-intent") => Ok(Request::CancelIntent {
            instance: instance(object)?,
        }),
        Some("powerdown-all") => Ok(Request::PowerdownAll {
            seconds: seconds(object)?,
            by: by(object, POWERDOWN_BY)?,
        }),
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("a request names a command".to_owned()),
    }
}

type Object = serde_json::Map<String, Value>;

fn instance(object: &Object) -> Result<String, String> {
    match object.get("instance").and_then(Value::as_str) {
        Some(name) if crate::name::InstanceName::new(name.as_ref()).is_some() => {
            Ok(name.to_owned())
        }
        Some(_) => Err("an instance name is not empty and has no '/'".to_owned()),
        None => Err("the request names no instance".to_owned()),
    }
}

/// The window, checked as the fleet would (a clear answer before any).
fn seconds(object: &Object) -> Result<u64, String> {
    let seconds = match object.get("seconds") {
        None | Some(Value::Null) => crate::fleet::DEFAULT_WINDOW.as_secs(),
        Some(v) => v.as_u64().ok_or("seconds must be a whole number")?,
    };
    if !crate::fleet::valid_window(Duration::from_secs(seconds)) {
        return Err(format!(
            "a window of {seconds} s is not allowed (1 s to {} s)",
            crate::fleet::MAX_WINDOW.as_secs()
        ));
    }
    Ok(seconds)
}

fn by(object: &Object, default: &str) -> Result<String, String> {
    let by = match object.get("by") {
        None | Some(Value::Null) => default,
        Some(v) => v.as_str().ok_or("by must be a string")?,
    };
    if by.is_empty() || !crate::fleet::valid_by(by) {
        return Err(format!(
            "by takes 1 to {} bytes of printable text",
            crate::fleet::MAX_BY
        ));
    }
    Ok(by.to_owned())
}

/// A request line, as a client sends it.
pub fn request_line(request: &Request) -> String {
    let value = match request {
        Request::Status { instances } => {
            json!({"version": VERSION, "command": "status", "instances": instances})
        }
        Request::Events => json!({"version": VERSION, "command": "events"}),
        Request::ExpectStop {
            instance,
            seconds,
            by,
        } => json!({"version": VERSION, "command": "expect-stop", "instance": instance,
                    "seconds": seconds, "by": by}),
        Request::CancelIntent { instance } => {
            json!({"version": VERSION, "command": "cancel-intent", "instance": instance})
        }
        Request::PowerdownAll { seconds, by } => {
            json!({"version": VERSION, "command": "powerdown-all", "seconds": seconds, "by": by})
        }
    };
    format!("{value}\n")
}

/// Why a request was refused, for a client to act on (`kvmd status`
/// exits 4 for `denied`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// Not root, nor kvmd's own user.
    Denied,
    /// Too many clients at once.
    Busy,
    /// The request could not be followed.
    BadRequest,
    /// A follower left too much unread.
    CutOff,
    /// A command the daemon would not carry out (an intent for an
    /// instance it does not monitor, say); the message says why.
    Refused,
}

impl Refusal {
    /// The answer's `code` field.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::Busy => "busy",
            Refusal::BadRequest => "bad-request",
            Refusal::CutOff => "cut-off",
            Refusal::Refused => "refused",
        }
    }
}

/// An error answer: `{"version": 1, "error": "...", "code": "..."}`.
pub fn error_line(refusal: Refusal, message: &str) -> String {
    answer_line(Answer {
        error: Some(message.to_owned()),
        code: Some(refusal.into()),
        ..Answer::default()
    })
}

/// An answer as one line.
fn answer_line(answer: Answer) -> String {
    let answer = Answer {
        version: VERSION,
        ..answer
    };
    // Strings, numbers and maps with string keys: cannot fail.
    let mut line = serde_json::to_string(&answer).unwrap_or_default();
    line.push('\n');
    line
}

/// The first line to a follower.
pub fn following_line() -> String {
    answer_line(Answer {
        following: Some(true),
        ..Answer::default()
    })
}

/// The answer to `expect-stop`.
pub fn intent_line(instance: &str, by: &str, seconds: u64, until: SystemTime) -> String {
    answer_line(Answer {
        intent: Some(IntentGiven {
            by: by.to_owned(),
            instance: instance.to_owned(),
            seconds,
            until: Rfc3339(until).to_string(),
        }),
        ..Answer::default()
    })
}

/// The answer to `cancel-intent`.
pub fn cancelled_line(instance: &str) -> String {
    answer_line(Answer {
        cancelled: Some(instance.to_owned()),
        ..Answer::default()
    })
}

/// The first answer to `powerdown-all`: whose button was pressed, and who
/// could not be (then come their verdicts as event lines, then
/// [`done_line`]).
pub fn powerdown_line(pressed: &[crate::fleet::Pressed]) -> String {
    // Its QEMU too, when known, for refused guests as well: the client
    // tells whether a guest it could not press is still running at the
    // end.
    let guest = |p: &crate::fleet::Pressed| PowerdownGuest {
        instance: p.name.to_string(),
        qemu_pid: p.qemu.map(|q| q.pid),
        qemu_start: p.qemu.map(|q| q.start),
        why: p.result.as_ref().err().map(ToString::to_string),
    };
    let (ok, refused): (Vec<_>, Vec<_>) = pressed.iter().partition(|p| p.result.is_ok());
    answer_line(Answer {
        powerdown: Some(Powerdown {
            pressed: ok.into_iter().map(guest).collect(),
            refused: refused.into_iter().map(guest).collect(),
        }),
        ..Answer::default()
    })
}

/// The last line to `powerdown-all`: every pressed guest has stopped.
pub fn done_line() -> String {
    answer_line(Answer {
        done: Some(true),
        ..Answer::default()
    })
}

/// Turns the loop's monotonic times into wall-clock times.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    instant: Instant,
    wall: SystemTime,
}

impl Clock {
    /// Both clocks read at one moment.
    pub fn new(instant: Instant, wall: SystemTime) -> Clock {
        Clock { instant, wall }
    }

    /// The wall-clock time of the monotonic `at`.
    pub fn wall(&self, at: Instant) -> SystemTime {
        if at >= self.instant {
            self.wall + (at - self.instant)
        } else {
            self.wall - (self.instant - at)
        }
    }

    /// `at` as an RFC 3339 time, for answers.
    pub fn rfc3339(&self, at: Instant) -> String {
        Rfc3339(self.wall(at)).to_string()
    }
}

/// What the daemon says of itself in a status.
#[derive(Clone, Debug)]
pub struct DaemonInfo {
    /// Its process id.
    pub pid: u32,
    /// When it started.
    pub started: Instant,
    /// The control directory it watches.
    pub ctrl_dir: PathBuf,
    /// How it follows the control directory now.
    pub watch: WatchState,
}

/// How the daemon follows its control directory, as `kvmd status` says
/// (`"watch"`): the daemon writes it, `kvmd status` and `kvmd doctor`
/// read it back (serde, kebab-case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchState {
    /// `watching`: inotify tells of every change.
    Watching,
    /// `rescanning`: short of inotify watches, it crawls the directory
    /// every few seconds instead.
    Rescanning,
    /// `waiting-for-dir`: the directory is not there (or cannot be
    /// opened) yet.
    WaitingForDir,
}

impl WatchState {
    /// The state that a reach of the directory and a way of following it
    /// make.
    pub fn of(reach: Reach, follow: Follow) -> WatchState {
        match (reach, follow) {
            (Reach::Away, _) => WatchState::WaitingForDir,
            (Reach::Reached, Follow::Rescans) => WatchState::Rescanning,
            (Reach::Reached, Follow::Events) => WatchState::Watching,
        }
    }

    /// As `kvmd status` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchState::Watching => "watching",
            WatchState::Rescanning => "rescanning",
            WatchState::WaitingForDir => "waiting-for-dir",
        }
    }

    /// As a status answer's `"watch"` says it; `None` for anything else
    /// (a newer kvmd's state, or no status at all). Readers use
    /// `schema::Word<WatchState>`; this is the tests' check of the spelling.
    #[cfg(test)]
    pub(crate) fn from_json(value: &Value) -> Option<WatchState> {
        <WatchState as serde::Deserialize>::deserialize(value).ok()
    }
}

impl fmt::Display for WatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase as status and metrics spell it (`waiting-for-listener`).
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Connecting(WaitFor::Nothing) => "connecting",
        Phase::Connecting(WaitFor::Listener) => "waiting-for-listener",
        Phase::Connecting(WaitFor::Descriptor) => "waiting-for-descriptor",
        Phase::Negotiating => "negotiating",
        Phase::Monitoring => "monitoring",
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Created => "created",
        Outcome::Kept => "kept",
        Outcome::ReplacedSymlink => "replaced-symlink",
        Outcome::Removed => "removed",
        Outcome::RemovedDirectory => "removed-directory",
        Outcome::WasAbsent => "absent",
    }
}

fn record_error(error: RecordError) -> String {
    match error {
        RecordError::File(e) => e.to_string(),
        RecordError::DirAway => "the control directory is away".to_owned(),
        RecordError::DirFailed(e) => format!("cannot open the control directory: {e}"),
    }
}

/// A verdict as status shows it.
fn verdict_status(past: &PastVerdict, clock: &Clock, now: Instant) -> VerdictStatus {
    let (file, error) = match past.file {
        FileState::Writing => ("writing", None),
        FileState::Written(outcome) => (outcome_name(outcome), None),
        FileState::Waiting(e) => ("waiting", Some(record_error(e))),
        FileState::Unwritable(e) => ("unwritable", Some(record_error(e))),
        FileState::Moot => ("moot", None),
    };
    let why = past.verdict.why();
    VerdictStatus {
        age_seconds: now.saturating_duration_since(past.decided).as_secs(),
        decided: clock.rfc3339(past.decided),
        file: file.to_owned(),
        file_error: error,
        intent_by: past.intent_by.clone(),
        name: past.name.to_string(),
        reason: why.code().into(),
        verdict: past.verdict.kind().into(),
        why: why.to_string(),
    }
}

fn instance_status(
    v: &InstanceView<'_>,
    last: Option<&VerdictStatus>,
    clock: &Clock,
    now: Instant,
) -> InstanceStatus {
    let evidence = v.evidence.map(|e| EvidenceStatus {
        crash_loads: e.crash_loads().into(),
        panicked: e.panicked(),
        panics: e.panics().into(),
        paused: e.paused(),
        powerdown_pending: e.powerdown_pending(),
        resets: e.resets().into(),
        restored: e.is_restored(),
        shutdown: e.first_shutdown().map(|s| ShutdownStatus {
            guest: s.guest,
            reason: s.reason.map(|r| r.as_str().to_owned()),
        }),
    });
    let intent = v.intent.map(|i| IntentStatus {
        by: i.by.to_owned(),
        expires_in_seconds: match i.state {
            IntentState::Waiting => Some(i.until.saturating_duration_since(now).as_secs()),
            IntentState::Claimed => None,
        },
        given: clock.rfc3339(i.given),
        // Whether kvmd presses its power button again while it waits
        // (a `powerdown-all` whose client is still there).
        pressing: i.state == IntentState::Waiting
            && i.presses == crate::fleet::Presses::UntilShutdown,
        state: match i.state {
            IntentState::Waiting => IntentWord::Waiting,
            IntentState::Claimed => IntentWord::Claimed,
        }
        .into(),
        until: clock.rfc3339(i.until),
    });
    InstanceStatus {
        evidence,
        guest: v.state.map(|s| s.as_str().to_owned()),
        intent,
        last_verdict: last.cloned(),
        malformed: v.malformed.into(),
        name: v.name.to_string(),
        phase: phase_name(v.phase).to_owned(),
        qemu: v.version.map(|q| q.to_string()),
        qemu_pid: v.qemu.map(|q| q.pid),
        since: clock.rfc3339(v.since),
        since_seconds: now.saturating_duration_since(v.since).as_secs(),
    }
}

/// Where a status line being produced stands.
#[derive(Debug)]
enum Stage {
    Head,
    /// Instances from this slab position on.
    Instances(usize),
    /// Past verdicts from this position on (oldest first).
    Verdicts(usize),
    Done,
}

/// A status answer, produced piece by piece. See the module documentation.
#[derive(Debug)]
pub struct StatusStream {
    /// The instances asked for, as status names them (escaped); all when
    /// empty.
    filter: std::collections::HashSet<String>,
    stage: Stage,
    /// Each name's last verdict, made once (the history is bounded).
    last: HashMap<String, VerdictStatus>,
    /// Whether an element was written in the current list (for commas).
    any: bool,
}

impl StatusStream {
    /// A status of the `instances` named (empty: all), not begun yet.
    pub fn new(instances: Vec<String>) -> StatusStream {
        StatusStream {
            filter: instances.into_iter().collect(),
            stage: Stage::Head,
            last: HashMap::new(),
            any: false,
        }
    }

    fn wanted(&self, name: &InstanceName) -> bool {
        self.filter.is_empty() || self.filter.contains(&name.to_string())
    }

    /// Appends the next piece (about [`STATUS_PIECE`] bytes) to `out`.
    /// True once the line is complete.
    pub fn fill(
        &mut self,
        fleet: &Fleet,
        info: &DaemonInfo,
        clock: &Clock,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> bool {
        let limit = out.len() + STATUS_PIECE;
        while out.len() < limit {
            match self.stage {
                Stage::Head => {
                    for past in fleet.history() {
                        self.last
                            .insert(past.name.to_string(), verdict_status(past, clock, now));
                    }
                    let head = daemon_status(fleet, info, clock, now);
                    let hooks: Vec<HookStatus> = fleet
                        .hook_views()
                        .into_iter()
                        .filter(|h| self.wanted(&h.name))
                        .map(|h| HookStatus {
                            attempt: h.attempt,
                            name: h.name.to_string(),
                            reason: h.reason.into(),
                            state: if h.running {
                                HookRun::Running
                            } else {
                                HookRun::Waiting
                            }
                            .into(),
                            verdict: h.verdict.into(),
                        })
                        .collect();
                    let given_up: Vec<String> = fleet
                        .given_up()
                        .filter(|n| self.wanted(n))
                        .map(ToString::to_string)
                        .collect();
                    // The head of a `schema::StatusLine`, its lists left
                    // open: instances and verdicts follow one by one.
                    let mut text = format!("{{\"version\":{VERSION},\"status\":{{\"kvmd\":");
                    let _ = write!(text, "{}", json_text(&head));
                    let _ = write!(text, ",\"given_up\":{}", json_text(&given_up));
                    let _ = write!(text, ",\"hooks\":{}", json_text(&hooks));
                    text.push_str(",\"instances\":[");
                    out.extend_from_slice(text.as_bytes());
                    self.stage = Stage::Instances(0);
                    self.any = false;
                }
                Stage::Instances(from) => {
                    let mut next = None;
                    for (position, view) in fleet.views_from(from) {
                        if out.len() >= limit {
                            next = Some(position);
                            break;
                        }
                        if !self.wanted(view.name) {
                            continue;
                        }
                        self.comma(out);
                        let last = self.last.get(&view.name.to_string());
                        let _ = serde_json::to_writer(
                            &mut *out,
                            &instance_status(&view, last, clock, now),
                        );
                    }
                    match next {
                        Some(position) => self.stage = Stage::Instances(position),
                        None => {
                            out.extend_from_slice(b"],\"verdicts\":[");
                            self.stage = Stage::Verdicts(0);
                            self.any = false;
                        }
                    }
                }
                Stage::Verdicts(from) => {
                    let mut next = None;
                    for (position, past) in fleet.history().enumerate().skip(from) {
                        if out.len() >= limit {
                            next = Some(position);
                            break;
                        }
                        if !self.wanted(&past.name) {
                            continue;
                        }
                        self.comma(out);
                        let _ = serde_json::to_writer(&mut *out, &verdict_status(past, clock, now));
                    }
                    match next {
                        Some(position) => self.stage = Stage::Verdicts(position),
                        None => {
                            out.extend_from_slice(b"]}}\n");
                            self.stage = Stage::Done;
                        }
                    }
                }
                Stage::Done => return true,
            }
        }
        matches!(self.stage, Stage::Done)
    }

    fn comma(&mut self, out: &mut Vec<u8>) {
        if self.any {
            out.push(b',');
        }
        self.any = true;
    }
}

/// A value as JSON text (strings, numbers, and maps with string keys:
/// cannot fail).
fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn daemon_status(fleet: &Fleet, info: &DaemonInfo, clock: &Clock, now: Instant) -> DaemonStatus {
    let mut phases: std::collections::BTreeMap<String, u64> = Default::default();
    for view in fleet.views() {
        *phases.entry(phase_name(view.phase).to_owned()).or_default() += 1;
    }
    let count = |n: usize| n as u64;
    DaemonStatus {
        counts: Counts {
            given_up: count(fleet.given_up().count()),
            instances: count(fleet.instances()),
            phases,
            unwritten_verdicts: count(fleet.unrecorded().count()),
            verdicts_kept: count(fleet.history().count()),
        },
        ctrl_dir: info.ctrl_dir.to_string_lossy().into_owned(),
        descriptor_shortage: fleet.short_of_descriptors_now(),
        pid: Some(info.pid),
        started: clock.rfc3339(info.started),
        uptime_seconds: now.saturating_duration_since(info.started).as_secs(),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        watch: info.watch.into(),
    }
}

/// One event line for followers: the notice, its log line, and for a
/// verdict its verdict, reason and file.
pub fn event_line(notice: &Notice, message: &str, at: SystemTime) -> String {
    let mut event = schema::Event {
        time: Rfc3339(at).to_string(),
        // As the log names them.
        level: match notice.level() {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            log::Level::Info => Level::Info,
            log::Level::Debug | log::Level::Trace => Level::Debug,
        }
        .into(),
        kind: notice.kind().to_owned(),
        instance: notice.instance().map(ToString::to_string),
        message: message.to_owned(),
        ..schema::Event::default()
    };
    if let Some((verdict, outcome)) = notice.verdict() {
        event.verdict = Some(verdict.kind().into());
        event.reason = Some(Some(verdict.why().code().as_str().to_owned()));
        event.file = Some(outcome.map(|o| outcome_name(o).to_owned()));
    }
    if let Notice::IntentGiven { by, .. }
    | Notice::IntentCancelled { by, .. }
    | Notice::IntentExpired { by, .. }
    | Notice::PressesStopped { by, .. } = notice
    {
        event.by = Some(by.clone());
    }
    // A verdict's intent (`null` when none applied), so a follower need
    // not read it out of the message.
    if let Notice::Decided { intent_by, .. } | Notice::RecordedAtLast { intent_by, .. } = notice {
        event.intent_by = Some(intent_by.clone());
    }
    if let Notice::HookEnded {
        verdict,
        reason,
        attempt,
        end,
        took,
        retry_in,
        ..
    } = notice
    {
        let (outcome, code) = match end {
            HookEnd::Exited(0) => (HookResult::Succeeded, Some(0)),
            HookEnd::Exited(code) => (HookResult::Failed, Some(*code)),
            HookEnd::Signaled(_) => (HookResult::Killed, None),
            HookEnd::TimedOut => (HookResult::TimedOut, None),
            HookEnd::NotStarted(_) => (HookResult::NotStarted, None),
        };
        event.verdict = Some((*verdict).into());
        event.reason = Some(Some(reason.as_str().to_owned()));
        event.attempt = Some(*attempt);
        event.hook = Some(outcome.into());
        event.exit_code = Some(code);
        event.took_ms = Some(took.as_millis() as u64);
        event.retry_in_seconds = Some(retry_in.map(|d| d.as_secs()));
    }
    if let Notice::Guest { event: e, .. } = notice {
        let (name, guest, reason) = match e {
            Event::Shutdown { guest, reason } => ("SHUTDOWN", *guest, reason.map(|r| r.as_str())),
            Event::Powerdown => ("POWERDOWN", None, None),
            Event::Reset => ("RESET", None, None),
            Event::Stop => ("STOP", None, None),
            Event::Resume => ("RESUME", None, None),
            Event::GuestPanicked => ("GUEST_PANICKED", None, None),
            Event::GuestCrashLoaded => ("GUEST_CRASHLOADED", None, None),
            Event::Negotiated | Event::Status { .. } => ("NEGOTIATED", None, None),
        };
        event.event = Some(name.to_owned());
        if matches!(e, Event::Shutdown { .. }) {
            event.guest = Some(guest);
            event.reason = Some(reason.map(str::to_owned));
        }
    }
    answer_line(Answer {
        event: Some(event),
        ..Answer::default()
    })
}

/// The line that ends a follower who fell behind.
pub fn cut_off_line() -> String {
    error_line(
        Refusal::CutOff,
        &format!(
            "cut off: more than {} KiB of events left unread; follow again",
            MAX_BACKLOG / 1024
        ),
    )
}

/// How long ago, for humans: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_states_are_written_as_status_always_wrote_them() {
        for (reach, follow, text) in [
            (Reach::Away, Follow::Events, "waiting-for-dir"),
            (Reach::Away, Follow::Rescans, "waiting-for-dir"),
            (Reach::Reached, Follow::Rescans, "rescanning"),
            (Reach::Reached, Follow::Events, "watching"),
        ] {
            let state = WatchState::of(reach, follow);
            assert_eq!(json!({ "watch": state }), json!({ "watch": text }));
            assert_eq!(state.as_str(), text);
            assert_eq!(WatchState::from_json(&json!(text)), Some(state));
        }
        assert_eq!(WatchState::from_json(&json!("sleeping")), None);
        assert_eq!(WatchState::from_json(&Value::Null), None);
    }

    #[test]
    fn requests_are_parsed_and_bad_ones_said_why() {
        assert_eq!(
            parse_request(b"{\"version\": 1, \"command\": \"status\"}"),
            Ok(Request::Status { instances: vec![] })
        );
        assert_eq!(
            parse_request(b"{\"command\": \"status\", \"instances\": [\"vm1\"]}"),
            Ok(Request::Status {
                instances: vec!["vm1".into()]
            })
        );
        assert_eq!(
            parse_request(b"{\"command\": \"events\"}"),
            Ok(Request::Events)
        );
        for (bad, says) in [
            (&b"garbage"[..], "not a JSON request"),
            (b"[1]", "a request is a JSON object"),
            (
                b"{\"version\": 2, \"command\": \"status\"}",
                "unsupported protocol version 2",
            ),
            (b"{\"command\": \"reboot\"}", "unknown command"),
            (b"{}", "names a command"),
            (
                b"{\"command\": \"status\", \"instances\": [1]}",
                "must be strings",
            ),
        ] {
            let e = parse_request(bad).expect_err("refused");
            assert!(e.contains(says), "{e}");
        }
        let line = request_line(&Request::Status {
            instances: vec!["a".into()],
        });
        assert_eq!(
            parse_request(line.trim_end().as_bytes()),
            Ok(Request::Status {
                instances: vec!["a".into()]
            })
        );
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(Duration::from_secs(45)), "45s");
        assert_eq!(age(Duration::from_secs(754)), "12m");
        assert_eq!(age(Duration::from_secs(3 * 3600 + 5 * 60)), "3h05m");
        assert_eq!(age(Duration::from_secs(2 * 86_400 + 4 * 3600)), "2d04h");
    }
}

#[cfg(test)]
mod wire_tests;
