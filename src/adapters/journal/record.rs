//! The journal's records, without I/O: the entry type, its one-line JSON
//! codec, the filter `kvmd history` applies, the times it reads and
//! writes, and the reasons a line is skipped.
//!
//! One line is one JSON object (README.md, "History", has the schema):
//! `{"v":1,"at":"2026-12-04T18:20:00.123Z","instance":"vm1","qemu_pid":4242,
//! "qemu_start":123456,"kind":"verdict",...}`. Keys are written in a fixed
//! order, every key of a kind always present (`null` when unknown), so a
//! line reads the same with `grep` as with `jq`. The decoder is strict about
//! the keys it knows and ignores keys it does not (version 1 only ever
//! gains keys); anything it cannot take is a [`SkipReason`], never a panic.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use kvmd_core::decision::VerdictKind;
use kvmd_core::timestamp::Rfc3339;

/// The schema version written in every line's `v`.
pub(crate) const VERSION: u64 = 1;

/// The longest line, its newline included. The daemon bounds evidence far
/// below this; a longer line is cut (see [`encode`]), so one record can
/// never break the journal's bound, and the reader never holds more than
/// this of a line in memory.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// How many files the journal keeps: the live one and `FILES - 1` rotated.
pub(crate) const FILES: u64 = 4;

/// `--journal-max`'s default: 8 MiB for all files together.
pub(crate) const DEFAULT_MAX_TOTAL: u64 = 8 << 20;
/// The smallest `--journal-max`: every file can hold a longest line.
pub(crate) const MIN_MAX_TOTAL: u64 = FILES * MAX_LINE as u64;
/// The largest `--journal-max` (1 GiB): `kvmd history` reads all of it.
pub(crate) const MAX_MAX_TOTAL: u64 = 1 << 30;

/// Appended to a text field cut to make its line fit.
const CUT_MARK: &str = " [cut]";

/// One record: a verdict, or a guest crash that decided nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When the verdict was decided, or when the crash event came.
    pub at: SystemTime,
    /// The instance's name as `kvmd status` shows it (already escaped).
    pub instance: String,
    /// QEMU's pid and start time (clock ticks since boot), when known.
    pub qemu: Option<(u32, u64)>,
    pub what: What,
}

/// What an [`Entry`] records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    Verdict {
        /// Written as `"user"` or `"not-user"`.
        user: bool,
        /// The reason code (`guest-poweroff`, `host-acpi`, ...).
        reason: String,
        /// The reason in words.
        why: String,
        /// The evidence, as the decision log line shows it.
        evidence: String,
        /// A host intent that applied, if any.
        intent: Option<IntentNote>,
    },
    GuestCrash {
        /// `GUEST_PANICKED` or `GUEST_CRASHLOADED`.
        event: String,
        /// QEMU's `action` (`run`, `pause`, `poweroff`, ...), when given.
        action: Option<String>,
    },
}

/// A host intent ("this stop is the host's") that a verdict followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntentNote {
    /// Who declared it (`node-shutdown`, `expect-stop`, ...).
    pub by: String,
    /// When it was declared.
    pub given: SystemTime,
}

/// The bound on the journal's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// All files together, at most; each file gets `max_total / FILES`.
    pub max_total: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_total: DEFAULT_MAX_TOTAL,
        }
    }
}

impl Limits {
    /// One file's share: a file is rotated before it would pass this.
    pub fn per_file(&self) -> u64 {
        self.max_total / FILES
    }

    /// The longest line these limits take (newline included): a file must
    /// be able to hold one line whole.
    pub(crate) fn max_line(&self) -> usize {
        usize::try_from(self.per_file()).map_or(MAX_LINE, |share| share.min(MAX_LINE))
    }
}

/// What `kvmd history` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this instance (its name as stored: as `kvmd status` shows it).
    pub(crate) instance: Option<String>,
    /// Only records at or after this time.
    pub(crate) since: Option<SystemTime>,
}

impl Filter {
    pub(crate) fn matches(&self, entry: &Entry) -> bool {
        self.instance.as_ref().is_none_or(|i| *i == entry.instance)
            && self.since.is_none_or(|since| entry.at >= since)
    }
}

/// A line that could not be encoded within the limit, even cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TooLong {
    /// The line's length, uncut.
    pub(crate) bytes: usize,
    pub(crate) max: usize,
}

/// The entry as one journal line, newline included, at most `max` bytes.
///
/// A line that would be longer has its free text (`evidence`, `why`) cut,
/// each marked ` [cut]`: the verdict and its reason code are what the
/// record is for, and they are kept. Only a line too long with both empty
/// (an absurd instance name) is refused.
pub(crate) fn encode(entry: &Entry, max: usize) -> Result<String, TooLong> {
    let line = write_line(entry, None);
    if line.len() <= max {
        return Ok(line);
    }
    let too_long = TooLong {
        bytes: line.len(),
        max,
    };
    let What::Verdict { why, evidence, .. } = &entry.what else {
        return Err(too_long);
    };
    let fixed = write_line(entry, Some(("", ""))).len();
    let room = max
        .checked_sub(fixed)
        .filter(|room| *room >= 2 * CUT_MARK.len())
        .ok_or(too_long)?;
    // The shorter field is kept whole when it takes at most half the room;
    // the other gets the rest.
    let (why_len, evidence_len) = (escaped_len(why), escaped_len(evidence));
    let half = room / 2;
    let (why_room, evidence_room) = if why_len <= half {
        (why_len, room - why_len)
    } else if evidence_len <= half {
        (room - evidence_len, evidence_len)
    } else {
        (half, room - half)
    };
    let why = cut(why, why_room);
    let evidence = cut(evidence, evidence_room);
    let line = write_line(entry, Some((&why, &evidence)));
    // The arithmetic above guarantees this; checked rather than trusted.
    if line.len() <= max {
        Ok(line)
    } else {
        Err(too_long)
    }
}

/// `text`, cut with [`CUT_MARK`] so that its JSON form takes at most
/// `room` bytes (given `room >= CUT_MARK.len()`).
fn cut(text: &str, room: usize) -> String {
    if escaped_len(text) <= room {
        return text.to_owned();
    }
    let budget = room.saturating_sub(CUT_MARK.len());
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        used += escaped_char_len(c);
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push_str(CUT_MARK);
    out
}

/// The line; `texts` replaces a verdict's `why` and `evidence`.
fn write_line(entry: &Entry, texts: Option<(&str, &str)>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"v\":");
    let _ = write!(out, "{VERSION}");
    out.push_str(",\"at\":");
    push_time(&mut out, entry.at);
    out.push_str(",\"instance\":");
    push_str(&mut out, &entry.instance);
    match entry.qemu {
        Some((pid, start)) => {
            let _ = write!(out, ",\"qemu_pid\":{pid},\"qemu_start\":{start}");
        }
        None => out.push_str(",\"qemu_pid\":null,\"qemu_start\":null"),
    }
    match &entry.what {
        What::Verdict {
            user,
            reason,
            why,
            evidence,
            intent,
        } => {
            let (why, evidence) = texts.unwrap_or((why, evidence));
            out.push_str(",\"kind\":\"verdict\",\"verdict\":");
            push_str(&mut out, VerdictKind::from_user(*user).as_str());
            out.push_str(",\"reason\":");
            push_str(&mut out, reason);
            out.push_str(",\"why\":");
            push_str(&mut out, why);
            out.push_str(",\"evidence\":");
            push_str(&mut out, evidence);
            out.push_str(",\"intent\":");
            match intent {
                Some(intent) => {
                    out.push_str("{\"by\":");
                    push_str(&mut out, &intent.by);
                    out.push_str(",\"given\":");
                    push_time(&mut out, intent.given);
                    out.push('}');
                }
                None => out.push_str("null"),
            }
        }
        What::GuestCrash { event, action } => {
            out.push_str(",\"kind\":\"guest-crash\",\"event\":");
            push_str(&mut out, event);
            out.push_str(",\"action\":");
            match action {
                Some(action) => push_str(&mut out, action),
                None => out.push_str("null"),
            }
        }
    }
    out.push_str("}\n");
    out
}

/// The entry as one JSON object (no newline), as the journal stores it:
/// what `kvmd history --json` lists.
pub(crate) fn to_json(entry: &Entry) -> String {
    let mut line = write_line(entry, None);
    line.pop();
    line
}

fn push_time(out: &mut String, time: SystemTime) {
    let _ = write!(out, "\"{}\"", Rfc3339(time));
}

/// A JSON string. Every control character is escaped (C1 and DEL too,
/// which JSON would allow raw), so a journal shown with `cat` or `less`
/// cannot move a terminal's cursor.
fn push_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What [`push_str`] writes for `c`, in bytes.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' => 2,
        c if c.is_control() => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(text: &str) -> usize {
    text.chars().map(escaped_char_len).sum()
}

/// What a journal file is when it is not a regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Symlink,
    Fifo,
    Directory,
    Socket,
    Device,
}

impl FileKind {
    /// The kind of a file of `st_mode` `mode`; `None` for a regular file.
    pub(crate) fn of_mode(mode: u32) -> Option<FileKind> {
        match mode & 0o170_000 {
            0o100_000 => None,
            0o120_000 => Some(FileKind::Symlink),
            0o010_000 => Some(FileKind::Fifo),
            0o040_000 => Some(FileKind::Directory),
            0o140_000 => Some(FileKind::Socket),
            _ => Some(FileKind::Device),
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Symlink => "a symlink",
            FileKind::Fifo => "a FIFO",
            FileKind::Directory => "a directory",
            FileKind::Socket => "a socket",
            FileKind::Device => "a device",
        })
    }
}

/// Why a line (or a whole file) of the journal was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SkipReason {
    Empty,
    NotUtf8,
    NotJson,
    NotAnObject,
    /// `v` is a number, not one this kvmd reads.
    UnknownVersion(u64),
    /// A known key missing, of the wrong type, or out of range.
    BadField(&'static str),
    /// `kind` is not one this kvmd reads (a newer kvmd's record).
    UnknownKind,
    /// Longer than [`MAX_LINE`]; `bytes` without the newline.
    TooLong {
        bytes: u64,
    },
    /// The last line has no newline: cut off while it was written.
    Truncated,
    /// The file is not a regular file; it was not opened, or not read.
    NotRegularFile(FileKind),
    /// The file is larger than `kvmd history` reads; the rest was not read.
    FileTooLarge {
        read: u64,
    },
}

impl SkipReason {
    /// A stable code for `kvmd history --json`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            SkipReason::Empty => "empty",
            SkipReason::NotUtf8 => "not-utf8",
            SkipReason::NotJson => "not-json",
            SkipReason::NotAnObject => "not-object",
            SkipReason::UnknownVersion(_) => "unknown-version",
            SkipReason::BadField(_) => "bad-field",
            SkipReason::UnknownKind => "unknown-kind",
            SkipReason::TooLong { .. } => "too-long",
            SkipReason::Truncated => "truncated",
            SkipReason::NotRegularFile(_) => "not-regular-file",
            SkipReason::FileTooLarge { .. } => "file-too-large",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Empty => write!(f, "empty line"),
            SkipReason::NotUtf8 => write!(f, "not UTF-8"),
            SkipReason::NotJson => write!(f, "not JSON"),
            SkipReason::NotAnObject => write!(f, "not a JSON object"),
            SkipReason::UnknownVersion(v) => write!(f, "unknown version {v}"),
            SkipReason::BadField(key) => write!(f, "bad or missing \"{key}\""),
            SkipReason::UnknownKind => write!(f, "unknown kind"),
            SkipReason::TooLong { bytes } => {
                write!(f, "too long ({bytes} bytes; at most {})", MAX_LINE - 1)
            }
            SkipReason::Truncated => write!(f, "truncated (no newline at the end)"),
            SkipReason::NotRegularFile(kind) => write!(f, "{kind}, not a regular file"),
            SkipReason::FileTooLarge { read } => {
                write!(f, "file too large: only its first {read} bytes read")
            }
        }
    }
}

/// One journal line (without its newline) as an entry.
pub(crate) fn decode(line: &[u8]) -> Result<Entry, SkipReason> {
    if line.is_empty() {
        return Err(SkipReason::Empty);
    }
    let text = std::str::from_utf8(line).map_err(|_| SkipReason::NotUtf8)?;
    let value: Value = serde_json::from_str(text).map_err(|_| SkipReason::NotJson)?;
    let object = value.as_object().ok_or(SkipReason::NotAnObject)?;
    match object.get("v").map(Value::as_u64) {
        Some(Some(VERSION)) => {}
        Some(Some(v)) => return Err(SkipReason::UnknownVersion(v)),
        _ => return Err(SkipReason::BadField("v")),
    }
    let at = time_field(object, "at")?;
    let instance = string_field(object, "instance")?;
    if instance.is_empty() {
        return Err(SkipReason::BadField("instance"));
    }
    let pid = optional(object, "qemu_pid", |v| {
        v.as_u64().and_then(|n| u32::try_from(n).ok())
    })?;
    let start = optional(object, "qemu_start", Value::as_u64)?;
    let qemu = match (pid, start) {
        (Some(pid), Some(start)) => Some((pid, start)),
        (None, None) => None,
        (Some(_), None) => return Err(SkipReason::BadField("qemu_start")),
        (None, Some(_)) => return Err(SkipReason::BadField("qemu_pid")),
    };
    let what = match object.get("kind").and_then(Value::as_str) {
        Some("verdict") => {
            let user = match object
                .get("verdict")
                .and_then(Value::as_str)
                .map(str::parse::<VerdictKind>)
            {
                Some(Ok(VerdictKind::User)) => true,
                Some(Ok(VerdictKind::NotUser)) => false,
                _ => return Err(SkipReason::BadField("verdict")),
            };
            let intent = optional(object, "intent", |v| {
                let intent = v.as_object()?;
                Some(IntentNote {
                    by: intent.get("by")?.as_str()?.to_owned(),
                    given: parse_rfc3339(intent.get("given")?.as_str()?)?,
                })
            })?;
            What::Verdict {
                user,
                reason: string_field(object, "reason")?,
                why: string_field(object, "why")?,
                evidence: string_field(object, "evidence")?,
                intent,
            }
        }
        Some("guest-crash") => What::GuestCrash {
            event: string_field(object, "event")?,
            action: optional(object, "action", |v| v.as_str().map(str::to_owned))?,
        },
        Some(_) => return Err(SkipReason::UnknownKind),
        None => return Err(SkipReason::BadField("kind")),
    };
    Ok(Entry {
        at,
        instance,
        qemu,
        what,
    })
}

fn string_field(object: &Map<String, Value>, key: &'static str) -> Result<String, SkipReason> {
    match object.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(SkipReason::BadField(key)),
    }
}

fn time_field(object: &Map<String, Value>, key: &'static str) -> Result<SystemTime, SkipReason> {
    object
        .get(key)
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
        .ok_or(SkipReason::BadField(key))
}

/// A key that may be absent or `null`; present, it must convert.
fn optional<T>(
    object: &Map<String, Value>,
    key: &'static str,
    convert: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>, SkipReason> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => convert(value).map(Some).ok_or(SkipReason::BadField(key)),
    }
}

/// `--since`: a point in time, or a span back from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Since {
    At(SystemTime),
    Ago(Duration),
}

impl Since {
    /// The time meant, seen at `now`.
    pub(crate) fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            Since::At(time) => time,
            // Not before the epoch: the journal has nothing older.
            Since::Ago(span) => match now.duration_since(UNIX_EPOCH) {
                Ok(since_epoch) if since_epoch > span => now - span,
                _ => UNIX_EPOCH,
            },
        }
    }
}

/// `--since`'s value: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]][Z]` (UTC;
/// a space for the `T` too), or `90s`, `30m`, `2h`, `7d` ago.
pub(crate) fn parse_since(text: &str) -> Option<Since> {
    if let Some(span) = parse_span(text) {
        return Some(Since::Ago(span));
    }
    parse_time(text, Strictness::Lenient).map(Since::At)
}

/// `<digits><s|m|h|d>`.
fn parse_span(text: &str) -> Option<Duration> {
    let unit = match text.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

/// An RFC 3339 time in UTC as the journal writes it:
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    parse_time(text, Strictness::Rfc3339)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// Exactly the journal's form.
    Rfc3339,
    /// What a person types for `--since`.
    Lenient,
}

/// Reads fixed-width fields off the front of a time.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn digits(&mut self, n: usize) -> Option<u64> {
        let (head, rest) = self.0.split_at_checked(n)?;
        if !head.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = rest;
        head.iter()
            .try_fold(0u64, |v, d| Some(v * 10 + u64::from(d - b'0')))
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.0.split_first() {
            Some((first, rest)) if *first == byte => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_time(text: &str, strictness: Strictness) -> Option<SystemTime> {
    let strict = strictness == Strictness::Rfc3339;
    let mut fields = Fields(text.as_bytes());
    let year = fields.digits(4)?;
    let month = fields.eat(b'-').then(|| fields.digits(2))??;
    let day = fields.eat(b'-').then(|| fields.digits(2))??;
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0);
    // `--since` takes a date alone, meaning its midnight, UTC.
    let date_only = !strict && fields.done();
    if !date_only {
        if !(fields.eat(b'T') || (!strict && fields.eat(b' '))) {
            return None;
        }
        hour = fields.digits(2)?;
        minute = fields.eat(b':').then(|| fields.digits(2))??;
        let seconds_given = fields.eat(b':');
        if seconds_given {
            second = fields.digits(2)?;
        } else if strict {
            return None;
        }
        if seconds_given && fields.eat(b'.') {
            let digits = fields.0.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            let fraction = fields.digits(digits)?;
            nanos = fraction * 10u64.pow(9 - digits as u32);
        }
        if !fields.eat(b'Z') && strict {
            return None;
        }
    }
    if !fields.done() {
        return None;
    }
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = u64::try_from(days_from_civil(year as i64, month as u32, day as u32)).ok()?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::new(seconds, u32::try_from(nanos).ok()?))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date: the inverse of
/// `logging`'s `civil_from_days` (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `--journal-max`'s value: bytes, or with `K`, `M`, `G` (binary: KiB,
/// MiB, GiB), between [`MIN_MAX_TOTAL`] and [`MAX_MAX_TOTAL`].
pub(crate) fn parse_max_total(text: &str) -> Option<u64> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 1 << 10),
        b'M' | b'm' => (&text[..text.len() - 1], 1 << 20),
        b'G' | b'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (MIN_MAX_TOTAL..=MAX_MAX_TOTAL)
        .contains(&bytes)
        .then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(seconds * 1000 + millis)
    }

    fn verdict() -> Entry {
        Entry {
            at: at(1_796_408_400, 123), // 2026-12-04T18:20:00.123Z
            instance: "vm1".to_owned(),
            qemu: Some((4242, 123_456)),
            what: What::Verdict {
                user: false,
                reason: "host-intent".to_owned(),
                why: "the host said it would stop it".to_owned(),
                evidence: "first SHUTDOWN guest=true reason=guest-shutdown".to_owned(),
                intent: Some(IntentNote {
                    by: "node-shutdown".to_owned(),
                    given: at(1_796_408_380, 0),
                }),
            },
        }
    }

    fn crash() -> Entry {
        Entry {
            at: at(1_796_408_401, 7),
            instance: "vm2".to_owned(),
            qemu: None,
            what: What::GuestCrash {
                event: "GUEST_PANICKED".to_owned(),
                action: Some("run".to_owned()),
            },
        }
    }

    fn line(entry: &Entry) -> String {
        encode(entry, MAX_LINE).expect("fits")
    }

    fn decoded(text: &str) -> Result<Entry, SkipReason> {
        decode(text.as_bytes())
    }

    #[test]
    fn the_documented_line() {
        assert_eq!(
            line(&verdict()),
            "{\"v\":1,\"at\":\"2026-12-04T18:20:00.123Z\",\"instance\":\"vm1\",\
             \"qemu_pid\":4242,\"qemu_start\":123456,\"kind\":\"verdict\",\
             \"verdict\":\"not-user\",\"reason\":\"host-intent\",\
             \"why\":\"the host said it would stop it\",\
             \"evidence\":\"first SHUTDOWN guest=true reason=guest-shutdown\",\
             \"intent\":{\"by\":\"node-shutdown\",\"given\":\"2026-12-04T18:19:40.000Z\"}}\n"
        );
        assert_eq!(
            line(&crash()),
            "{\"v\":1,\"at\":\"2026-12-04T18:20:01.007Z\",\"instance\":\"vm2\",\
             \"qemu_pid\":null,\"qemu_start\":null,\"kind\":\"guest-crash\",\
             \"event\":\"GUEST_PANICKED\",\"action\":\"run\"}\n"
        );
    }

    #[test]
    fn round_trips() {
        let mut no_intent = verdict();
        if let What::Verdict { intent, user, .. } = &mut no_intent.what {
            *intent = None;
            *user = true;
        }
        let mut no_action = crash();
        if let What::GuestCrash { action, event } = &mut no_action.what {
            *action = None;
            *event = "GUEST_CRASHLOADED".to_owned();
        }
        let mut hostile = verdict();
        hostile.instance = "vm\\n\"\u{1b}[2J\u{7f}\u{85}é".to_owned();
        if let What::Verdict { evidence, .. } = &mut hostile.what {
            *evidence = "\0\t\r\n\u{202e}".to_owned();
        }
        for entry in [verdict(), crash(), no_intent, no_action, hostile] {
            let text = line(&entry);
            assert!(text.ends_with('\n'));
            let body = &text[..text.len() - 1];
            assert!(!body.contains('\n'), "one line: {text:?}");
            assert!(
                !body.chars().any(char::is_control),
                "no raw control character: {text:?}"
            );
            assert_eq!(decoded(body), Ok(entry.clone()), "{text}");
            assert_eq!(to_json(&entry), body);
            // serde_json reads what was written, the same.
            let value: Value = serde_json::from_str(body).expect("JSON");
            assert_eq!(value["instance"], entry.instance.as_str());
        }
    }

    #[test]
    fn escaping_is_counted_exactly() {
        let text: String = (0u32..0x2100).filter_map(char::from_u32).collect();
        let mut out = String::new();
        push_str(&mut out, &text);
        assert_eq!(out.len(), escaped_len(&text) + 2);
        let back: String = serde_json::from_str(&out).expect("JSON");
        assert_eq!(back, text);
    }

    #[test]
    fn a_long_line_is_cut_to_the_limit_keeping_the_verdict() {
        let mut entry = verdict();
        let long = "é\u{1}".repeat(40_000);
        if let What::Verdict { evidence, why, .. } = &mut entry.what {
            *evidence = long.clone();
            *why = "short".to_owned();
        }
        for max in [MAX_LINE, 4096, 1000, 400] {
            let text = encode(&entry, max).expect("cut to fit");
            assert!(text.len() <= max, "{} > {max}", text.len());
            assert!(text.len() > max - 8, "the room is used: {}", text.len());
            let got = decoded(&text[..text.len() - 1]).expect("still a record");
            let What::Verdict {
                evidence,
                why,
                reason,
                ..
            } = got.what
            else {
                panic!("a verdict")
            };
            assert_eq!(reason, "host-intent");
            assert_eq!(why, "short", "the short field is kept whole");
            assert!(evidence.ends_with(CUT_MARK));
            assert!(long.starts_with(evidence.trim_end_matches(CUT_MARK)));
        }
        // Both long: each gets about half.
        if let What::Verdict { why, .. } = &mut entry.what {
            *why = "w".repeat(100_000);
        }
        let text = encode(&entry, 4096).expect("cut to fit");
        assert!(text.len() <= 4096);
        let Ok(Entry {
            what: What::Verdict { why, .. },
            ..
        }) = decoded(&text[..text.len() - 1])
        else {
            panic!("a verdict")
        };
        assert!(why.len() > 1000 && why.ends_with(CUT_MARK), "{}", why.len());
    }

    #[test]
    fn what_cannot_be_cut_is_refused() {
        let mut entry = crash();
        entry.instance = "x".repeat(500);
        assert_eq!(
            encode(&entry, 400),
            Err(TooLong {
                bytes: line(&entry).len(),
                max: 400
            })
        );
        let mut entry = verdict();
        entry.instance = "x".repeat(500);
        assert!(encode(&entry, 400).is_err());
    }

    #[test]
    fn bad_lines_say_why() {
        let good = to_json(&verdict());
        let with = |from: &str, to: &str| {
            assert!(good.contains(from), "{from}");
            good.replacen(from, to, 1)
        };
        let cases: Vec<(String, SkipReason)> = vec![
            (String::new(), SkipReason::Empty),
            ("not json".into(), SkipReason::NotJson),
            (good[..good.len() - 1].into(), SkipReason::NotJson),
            ("[1,2]".into(), SkipReason::NotAnObject),
            ("\"vm1\"".into(), SkipReason::NotAnObject),
            (with("\"v\":1", "\"v\":2"), SkipReason::UnknownVersion(2)),
            (with("\"v\":1", "\"v\":\"1\""), SkipReason::BadField("v")),
            (with("\"v\":1,", ""), SkipReason::BadField("v")),
            (
                with("2026-12-04T18:20:00.123Z", "yesterday"),
                SkipReason::BadField("at"),
            ),
            (
                with("2026-12-04T18:20:00.123Z", "2026-02-30T00:00:00Z"),
                SkipReason::BadField("at"),
            ),
            (with("\"vm1\"", "17"), SkipReason::BadField("instance")),
            (with("\"vm1\"", "\"\""), SkipReason::BadField("instance")),
            (
                with("4242", "99999999999"),
                SkipReason::BadField("qemu_pid"),
            ),
            (with("4242", "-1"), SkipReason::BadField("qemu_pid")),
            (
                with("123456", "1e400"),
                SkipReason::NotJson, // serde_json: number out of range
            ),
            (
                with("123456", "184467440737095516160"),
                SkipReason::BadField("qemu_start"),
            ),
            (with("123456", "null"), SkipReason::BadField("qemu_start")),
            (
                with("\"kind\":\"verdict\"", "\"kind\":\"reboot\""),
                SkipReason::UnknownKind,
            ),
            (
                with("\"kind\":\"verdict\",", ""),
                SkipReason::BadField("kind"),
            ),
            (
                with("\"not-user\"", "\"maybe\""),
                SkipReason::BadField("verdict"),
            ),
            (
                with("\"host-intent\"", "[]"),
                SkipReason::BadField("reason"),
            ),
            (
                with("\"node-shutdown\"", "1"),
                SkipReason::BadField("intent"),
            ),
            (
                with(",\"given\":\"2026-12-04T18:19:40.000Z\"", ""),
                SkipReason::BadField("intent"),
            ),
        ];
        for (text, why) in cases {
            assert_eq!(decoded(&text), Err(why), "{text}");
        }
        assert_eq!(decode(b"{\"v\":1,\xff}"), Err(SkipReason::NotUtf8));
        // Deeply nested JSON is refused by serde_json's recursion limit,
        // not by a stack overflow.
        let deep = "[".repeat(100_000);
        assert_eq!(decoded(&deep), Err(SkipReason::NotJson));
        // Unknown keys are a newer kvmd's additions: ignored.
        let newer = with("\"v\":1,", "\"v\":1,\"host\":\"node1\",");
        assert_eq!(decoded(&newer), Ok(verdict()));
        // `null` and absent mean the same for the optional keys.
        let crash_line = to_json(&crash()).replace(",\"action\":\"run\"", "");
        assert!(matches!(
            decoded(&crash_line),
            Ok(Entry {
                what: What::GuestCrash { action: None, .. },
                ..
            })
        ));
    }

    #[test]
    fn filters() {
        let entry = verdict();
        assert!(Filter::default().matches(&entry));
        let only = |name: &str| Filter {
            instance: Some(name.to_owned()),
            since: None,
        };
        assert!(only("vm1").matches(&entry));
        assert!(!only("vm10").matches(&entry));
        assert!(!only("vm").matches(&entry));
        let since = |time| Filter {
            instance: None,
            since: Some(time),
        };
        assert!(since(entry.at).matches(&entry), "at the instant: shown");
        assert!(!since(entry.at + Duration::from_millis(1)).matches(&entry));
        assert!(since(entry.at - Duration::from_secs(3600)).matches(&entry));
    }

    #[test]
    fn rfc3339_is_the_inverse_of_the_formatter() {
        for seconds in [
            0,
            951_782_400,     // 2000-02-29
            1_796_408_400,   // 2026-12-04
            4_107_542_399,   // 2100-02-28T23:59:59
            4_107_542_400,   // 2100-03-01 (no 29 February)
            253_402_300_799, // 9999-12-31T23:59:59
        ] {
            for millis in [0, 1, 999] {
                let time = at(seconds, millis);
                let text = Rfc3339(time).to_string();
                assert_eq!(parse_rfc3339(&text), Some(time), "{text}");
            }
        }
        // Every day of four years around 2000 (a leap century) and 2100
        // (not one).
        for start in [946_684_800, 4_102_444_800] {
            for day in 0..(4 * 366) {
                let time =
                    UNIX_EPOCH + Duration::from_secs(start - 2 * 366 * 86_400 + day * 86_400);
                assert_eq!(parse_rfc3339(&Rfc3339(time).to_string()), Some(time));
            }
        }
        assert_eq!(
            parse_rfc3339("2026-12-04T18:20:00.5Z"),
            Some(at(1_796_408_400, 500))
        );
        assert_eq!(
            parse_rfc3339("2026-12-04T18:20:00.000000001Z"),
            Some(UNIX_EPOCH + Duration::new(1_796_408_400, 1))
        );
        assert_eq!(
            parse_rfc3339("2026-12-04T18:20:00Z"),
            Some(at(1_796_408_400, 0))
        );
        for bad in [
            "",
            "2026-12-04",
            "2026-12-04T18:20Z",
            "2026-12-04T18:20:00",
            "2026-12-04 18:20:00Z",
            "2026-12-04T18:20:00.Z",
            "2026-12-04T18:20:00.1234567890Z",
            "2026-12-04T18:20:00+01:00",
            "2026-13-04T18:20:00Z",
            "2026-00-04T18:20:00Z",
            "2026-11-31T18:20:00Z",
            "2025-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04T18:60:00Z",
            "2026-12-04T18:20:60Z",
            "1969-12-31T23:59:59Z",
            "+2026-12-04T18:20:00Z",
            "2026-12-04T18:20:00Zjunk",
            "2026-1-04T18:20:00Z",
            "２０２６-12-04T18:20:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn since_takes_what_people_type() {
        let day = at(1_796_342_400, 0); // 2026-12-04T00:00:00Z
        for (text, want) in [
            ("2026-12-04", Since::At(day)),
            ("2026-12-04T18:20", Since::At(at(1_796_408_400, 0))),
            ("2026-12-04 18:20", Since::At(at(1_796_408_400, 0))),
            ("2026-12-04T18:20Z", Since::At(at(1_796_408_400, 0))),
            ("2026-12-04T18:20:07", Since::At(at(1_796_408_407, 0))),
            ("2026-12-04T18:20:07.25Z", Since::At(at(1_796_408_407, 250))),
            ("90s", Since::Ago(Duration::from_secs(90))),
            ("30m", Since::Ago(Duration::from_secs(1800))),
            ("2h", Since::Ago(Duration::from_secs(7200))),
            ("7d", Since::Ago(Duration::from_secs(7 * 86_400))),
            ("0s", Since::Ago(Duration::ZERO)),
        ] {
            assert_eq!(parse_since(text), Some(want), "{text}");
        }
        for bad in [
            "",
            "h",
            "1",
            "-1h",
            "1.5h",
            "1w",
            "1 h",
            "99999999999999999999d",
            "18446744073709551615d",
            "2026-12-04T",
            "2026-12-04T18",
            "2026-12-04T18:20.5",
            "2026-12-32",
            "yesterday",
            "2026-12-04Z",
        ] {
            assert_eq!(parse_since(bad), None, "{bad}");
        }
        let now = at(1_796_408_400, 0);
        assert_eq!(
            Since::Ago(Duration::from_secs(3600)).resolve(now),
            at(1_796_404_800, 0)
        );
        assert_eq!(Since::At(day).resolve(now), day);
        assert_eq!(
            Since::Ago(Duration::from_secs(u64::MAX / 2)).resolve(now),
            UNIX_EPOCH,
            "further back than the epoch: all of it"
        );
    }

    #[test]
    fn journal_max_sizes() {
        assert_eq!(parse_max_total("8M"), Some(8 << 20));
        assert_eq!(parse_max_total("256K"), Some(MIN_MAX_TOTAL));
        assert_eq!(parse_max_total("1g"), Some(1 << 30));
        assert_eq!(parse_max_total("1048576"), Some(1 << 20));
        for bad in [
            "",
            "M",
            "255K",
            "2G",
            "1.5M",
            "-8M",
            "8MiB",
            "8 M",
            "99999999999999999999",
        ] {
            assert_eq!(parse_max_total(bad), None, "{bad}");
        }
        assert_eq!(Limits::default().per_file(), 2 << 20);
        assert_eq!(Limits::default().max_line(), MAX_LINE);
        assert_eq!(Limits { max_total: 4000 }.max_line(), 1000);
    }

    #[test]
    fn skip_reasons_read_well() {
        assert_eq!(SkipReason::NotJson.to_string(), "not JSON");
        assert_eq!(
            SkipReason::BadField("at").to_string(),
            "bad or missing \"at\""
        );
        assert_eq!(
            SkipReason::NotRegularFile(FileKind::Fifo).to_string(),
            "a FIFO, not a regular file"
        );
        assert_eq!(SkipReason::TooLong { bytes: 70_000 }.code(), "too-long");
        assert_eq!(FileKind::of_mode(0o100_644), None);
        assert_eq!(FileKind::of_mode(0o010_600), Some(FileKind::Fifo));
        assert_eq!(FileKind::of_mode(0o120_777), Some(FileKind::Symlink));
        assert_eq!(FileKind::of_mode(0o020_600), Some(FileKind::Device));
    }
}
