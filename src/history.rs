//! `kvmd history`: the journal shown from its files alone, whether kvmd
//! runs or not (it needs only read permission on the journal directory).
//!
//! This module owns the command's output. Rendering is pure (tested
//! below); [`run`] reads, prints and picks the exit status: 0 the journal
//! was read (also when nothing matched, and when there is no journal yet);
//! 1 it could not be read (permission, not a directory). Usage errors (2)
//! are the command line's.
//!
//! Whatever the files hold is escaped before it reaches a terminal:
//! everything outside printable ASCII is shown as `\n`, `\x1b`, `\u{202e}`.
//! The daemon writes instance names already escaped (as `kvmd status`
//! shows them) and ASCII evidence, so its own records show unchanged.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use kvmd_core::decision::VerdictKind;
use kvmd_core::timestamp::Rfc3339;

use crate::adapters::journal::{self, Entry, Filter, JournalError, Read, What};
use crate::config::History;

/// Skipped lines told one by one on stderr; the rest are counted.
const WARNINGS_SHOWN: usize = 20;

/// `kvmd history`.
pub fn run(history: &History) -> ExitCode {
    let who = format!("{} history", history.program);
    let filter = Filter {
        instance: history.instance.clone(),
        since: history.since.map(|since| since.resolve(SystemTime::now())),
    };
    let (dir, read) = match located(history, &filter) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{who}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut notes = Vec::new();
    let nothing_there = read.files.is_empty() && read.skipped.is_empty();
    if nothing_there {
        notes.push(format!(
            "{who}: no journal at {} yet",
            shown(&dir.to_string_lossy())
        ));
    }
    let out = if history.json {
        render_json(dir, &read)
    } else {
        notes.extend(warnings(&who, &read, WARNINGS_SHOWN));
        if read.entries.is_empty() && !nothing_there {
            notes.push(format!("{who}: no records"));
        }
        render_text(&read.entries)
    };
    for note in notes {
        eprintln!("{note}");
    }
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (a pipe to head): it has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{who}: cannot write: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The journal read, and where: the one the flags name; with no flag, when
/// there is none where packaged daemons keep it, README's first-run
/// daemon's, if it has one (one that cannot be read is no journal there).
fn located<'h>(history: &'h History, filter: &Filter) -> Result<(&'h Path, Read), JournalError> {
    let read = journal::read(&history.journal_dir, filter)?;
    if let Some(first_run) = history.first_run_dir.as_deref()
        && read.files.is_empty()
        && read.skipped.is_empty()
        && let Ok(there) = journal::read(first_run, filter)
        && !there.files.is_empty()
    {
        return Ok((first_run, there));
    }
    Ok((&history.journal_dir, read))
}

/// `text` safe for a terminal and a single line: printable ASCII as is,
/// anything else escaped.
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            ' '..='~' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// A time to the second, as `--since` takes it back.
fn seconds(time: SystemTime) -> String {
    let text = Rfc3339(time).to_string();
    match text.get(..19) {
        Some(head) => format!("{head}Z"),
        None => text,
    }
}

/// One record as columns: time, instance, what happened, reason (or
/// QEMU's action), the intent followed, QEMU's pid, and the evidence.
fn columns(entry: &Entry) -> [String; 7] {
    let pid = match entry.qemu {
        Some((pid, _)) => format!("pid={pid}"),
        None => "pid=-".to_owned(),
    };
    let (what, reason, by, evidence) = match &entry.what {
        What::Verdict {
            user,
            reason,
            evidence,
            intent,
            ..
        } => (
            VerdictKind::from_user(*user).as_str().to_owned(),
            shown(reason).into_owned(),
            intent
                .as_ref()
                .map_or(String::new(), |i| format!("by={}", shown(&i.by))),
            format!("[{}]", shown(evidence)),
        ),
        What::GuestCrash { event, action } => (
            match event.as_str() {
                "GUEST_PANICKED" => "panicked".to_owned(),
                "GUEST_CRASHLOADED" => "crash-loaded".to_owned(),
                other => shown(other).into_owned(),
            },
            format!("action={}", shown(action.as_deref().unwrap_or("-"))),
            String::new(),
            String::new(),
        ),
    };
    [
        seconds(entry.at),
        shown(&entry.instance).into_owned(),
        what,
        reason,
        by,
        pid,
        evidence,
    ]
}

/// Columns wider than this (a tampered name) are not padded to: one odd
/// record must not push every other line off the screen.
const MAX_PAD: usize = 40;

/// The records, one line each, oldest first, in aligned columns.
pub(crate) fn render_text(entries: &[Entry]) -> String {
    let rows: Vec<[String; 7]> = entries.iter().map(columns).collect();
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            if cell.len() <= MAX_PAD {
                *width = (*width).max(cell.len());
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else if width > 0 || !cell.is_empty() {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One stderr line per skipped line, the first `limit`, then a count.
pub(crate) fn warnings(who: &str, read: &Read, limit: usize) -> Vec<String> {
    let mut lines: Vec<String> = read
        .skipped
        .iter()
        .take(limit)
        .map(|skipped| {
            let file = file_name(&skipped.file);
            match skipped.line {
                0 => format!("{who}: {file}: skipped: {}", skipped.why),
                n => format!("{who}: {file} line {n}: skipped: {}", skipped.why),
            }
        })
        .collect();
    let more = (read.skipped.len().saturating_sub(limit) as u64).saturating_add(read.skipped_more);
    if more > 0 {
        lines.push(format!("{who}: {more} more lines skipped"));
    }
    lines
}

fn file_name(path: &Path) -> String {
    let name = path.file_name().unwrap_or(path.as_os_str());
    shown(&name.to_string_lossy()).into_owned()
}

/// `{"version":1,"journal":DIR,"entries":[...],"skipped":[...],
/// "skipped_more":N}`: the entries as the journal stores them (unknown keys
/// dropped), each skipped line with its file's name, line, code and why.
pub(crate) fn render_json(dir: &Path, read: &Read) -> String {
    let string = |text: &str| serde_json::Value::from(text).to_string();
    let mut out = String::with_capacity(256 * (read.entries.len() + 1));
    let _ = write!(
        out,
        "{{\"version\":1,\"journal\":{},\"entries\":[",
        string(&dir.to_string_lossy())
    );
    for (i, entry) in read.entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&journal::record::to_json(entry));
    }
    out.push_str("],\"skipped\":[");
    for (i, skipped) in read.skipped.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let name = skipped.file.file_name().unwrap_or(skipped.file.as_os_str());
        let _ = write!(
            out,
            "{{\"file\":{},\"line\":{},\"code\":{},\"why\":{}}}",
            string(&name.to_string_lossy()),
            skipped.line,
            string(skipped.why.code()),
            string(&skipped.why.to_string())
        );
    }
    let _ = writeln!(out, "],\"skipped_more\":{}}}", read.skipped_more);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::journal::record::SkipReason;
    use crate::adapters::journal::{IntentNote, Skipped};
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn with_no_flag_the_first_run_daemons_journal_is_read_when_it_alone_has_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (packaged, first_run) = (tmp.path().join("lib"), tmp.path().join("run"));
        let history = |first_run_dir: Option<PathBuf>| History {
            program: "kvmd".to_owned(),
            journal_dir: packaged.clone(),
            first_run_dir,
            json: false,
            instance: None,
            since: None,
        };
        let write = |dir: &Path, name: &str| {
            let mut journal = journal::Journal::new(dir.to_owned(), Default::default());
            journal.append(&verdict(name, None)).expect("append");
        };
        let names = |(dir, read): (&Path, Read)| {
            let names: Vec<String> = read.entries.into_iter().map(|e| e.instance).collect();
            (dir.to_owned(), names)
        };
        let filter = Filter::default();
        let with = history(Some(first_run.clone()));
        // Neither has one: the packaged place is the one named.
        assert_eq!(
            names(located(&with, &filter).expect("read")),
            (packaged.clone(), vec![])
        );
        write(&first_run, "first");
        assert_eq!(
            names(located(&with, &filter).expect("read")),
            (first_run.clone(), vec!["first".to_owned()])
        );
        // A flag said where: only there.
        let without = history(None);
        assert_eq!(
            names(located(&without, &filter).expect("read")),
            (packaged.clone(), vec![])
        );
        // Both have one: the packaged daemon's.
        write(&packaged, "packaged");
        assert_eq!(
            names(located(&with, &filter).expect("read")),
            (packaged.clone(), vec!["packaged".to_owned()])
        );
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(seconds * 1000 + 123)
    }

    fn verdict(instance: &str, intent: Option<&str>) -> Entry {
        Entry {
            at: at(1_796_408_400),
            instance: instance.to_owned(),
            qemu: Some((4242, 99)),
            what: What::Verdict {
                user: intent.is_none(),
                reason: if intent.is_some() {
                    "host-intent"
                } else {
                    "guest-poweroff"
                }
                .to_owned(),
                why: "words".to_owned(),
                evidence: "first SHUTDOWN guest=true reason=guest-shutdown".to_owned(),
                intent: intent.map(|by| IntentNote {
                    by: by.to_owned(),
                    given: at(1_796_408_380),
                }),
            },
        }
    }

    fn crash(event: &str, action: Option<&str>) -> Entry {
        Entry {
            at: at(1_796_408_461),
            instance: "vm2".to_owned(),
            qemu: None,
            what: What::GuestCrash {
                event: event.to_owned(),
                action: action.map(str::to_owned),
            },
        }
    }

    #[test]
    fn one_aligned_line_per_record() {
        let text = render_text(&[
            verdict("vm1", Some("node-shutdown")),
            verdict("web-server-7", None),
            crash("GUEST_PANICKED", Some("run")),
            crash("GUEST_CRASHLOADED", None),
        ]);
        assert_eq!(
            text,
            "2026-12-04T18:20:00Z  vm1           not-user      host-intent     by=node-shutdown  pid=4242  [first SHUTDOWN guest=true reason=guest-shutdown]\n\
             2026-12-04T18:20:00Z  web-server-7  user          guest-poweroff                    pid=4242  [first SHUTDOWN guest=true reason=guest-shutdown]\n\
             2026-12-04T18:21:01Z  vm2           panicked      action=run                        pid=-\n\
             2026-12-04T18:21:01Z  vm2           crash-loaded  action=-                          pid=-\n"
        );
        assert_eq!(render_text(&[]), "");
    }

    #[test]
    fn tampered_text_is_escaped_and_cannot_break_a_line() {
        let mut entry = verdict("vm\n1\u{1b}[2J", Some("by\tme"));
        if let What::Verdict {
            evidence, reason, ..
        } = &mut entry.what
        {
            *evidence = "\u{202e}evil\r".to_owned();
            *reason = "é".to_owned();
        }
        let text = render_text(&[entry, crash("\u{7}BELL", Some("\0"))]);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.bytes()
                .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
            "{text:?}"
        );
        assert!(text.contains("vm\\n1\\x1b[2J"), "{text}");
        assert!(text.contains("by=by\\tme"), "{text}");
        assert!(text.contains("[\\u{202e}evil\\r]"), "{text}");
        assert!(text.contains(" \\u{e9} "), "{text}");
        assert!(text.contains("\\x07BELL  action=\\x00"), "{text}");
        // Printable ASCII, backslashes of the daemon's escaping included,
        // is shown as it is.
        assert_eq!(shown("vm\\x01-\"a\""), "vm\\x01-\"a\"");
    }

    #[test]
    fn a_huge_name_does_not_widen_every_line() {
        let long = "x".repeat(300);
        let text = render_text(&[verdict(&long, None), verdict("vm1", None)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("2026-12-04T18:20:00Z  vm1  user"),
            "{}",
            lines[1]
        );
        assert!(lines[0].contains(&long));
    }

    fn read_with(skipped: usize, more: u64) -> Read {
        Read {
            entries: vec![verdict("vm1", None)],
            skipped: (1..=skipped as u64)
                .map(|line| Skipped {
                    file: PathBuf::from("/j/journal.1"),
                    line,
                    why: SkipReason::NotJson,
                })
                .chain([Skipped {
                    file: PathBuf::from("/j/journal.3"),
                    line: 0,
                    why: SkipReason::NotRegularFile(journal::FileKind::Symlink),
                }])
                .collect(),
            skipped_more: more,
            files: vec![PathBuf::from("/j/journal")],
        }
    }

    #[test]
    fn warnings_are_bounded() {
        let read = read_with(2, 0);
        assert_eq!(
            warnings("kvmd history", &read, 20),
            [
                "kvmd history: journal.1 line 1: skipped: not JSON",
                "kvmd history: journal.1 line 2: skipped: not JSON",
                "kvmd history: journal.3: skipped: a symlink, not a regular file",
            ]
        );
        let read = read_with(30, 7);
        let lines = warnings("kvmd history", &read, 20);
        assert_eq!(lines.len(), 21);
        assert_eq!(lines[20], "kvmd history: 18 more lines skipped");
    }

    #[test]
    fn json_is_one_document_of_the_stored_objects() {
        let read = read_with(1, 3);
        let text = render_json(Path::new("/run/kvmd-state"), &read);
        assert!(text.ends_with("}\n") && text.lines().count() == 1);
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["version"], 1);
        assert_eq!(value["journal"], "/run/kvmd-state");
        let entries = value["entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 1);
        let stored: serde_json::Value =
            serde_json::from_str(&journal::record::to_json(&read.entries[0])).expect("JSON");
        assert_eq!(entries[0], stored);
        assert_eq!(entries[0]["verdict"], "user");
        assert_eq!(
            value["skipped"],
            serde_json::json!([
                {"file": "journal.1", "line": 1, "code": "not-json", "why": "not JSON"},
                {"file": "journal.3", "line": 0, "code": "not-regular-file",
                 "why": "a symlink, not a regular file"},
            ])
        );
        assert_eq!(value["skipped_more"], 3);
        let empty = render_json(Path::new("/x\"y"), &Read::default());
        assert_eq!(
            empty,
            "{\"version\":1,\"journal\":\"/x\\\"y\",\"entries\":[],\"skipped\":[],\"skipped_more\":0}\n"
        );
    }
}
