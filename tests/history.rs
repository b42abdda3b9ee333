//! The journal and `kvmd history`, with real parts: journals written by the
//! library's own `Journal::append` (or crafted byte by byte, as a tampering
//! root or a crash would leave them) on tmpfs, read by the real binary.
//!
//! The file-system faults (read-only, full) mount a small tmpfs and need
//! root; outside CI they are skipped without it, under CI they fail.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvmd::adapters::journal::{self, Entry, IntentNote, Journal, JournalError, Limits, What};
use serde_json::Value;

/// What one run of `kvmd` said.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the real binary; a run that does not end in time (blocked on a
/// FIFO, say) is killed and fails the test.
fn kvmd_with(args: &[&str], setup: impl FnOnce(&mut Command)) -> Out {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kvmd"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    setup(&mut command);
    let mut child = command.spawn().expect("spawn kvmd");
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kvmd {args:?} did not end within {:?}", common::DEADLINE);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    Out {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

fn kvmd(args: &[&str]) -> Out {
    kvmd_with(args, |_| {})
}

fn history(dir: &Path, extra: &[&str]) -> Out {
    let dir = dir.to_str().expect("path");
    let mut args = vec!["history", "--journal-dir", dir];
    args.extend_from_slice(extra);
    kvmd(&args)
}

/// 2026-12-04T18:20:00Z plus `seconds`.
fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_408_400 + seconds)
}

fn verdict(time: SystemTime, instance: &str, by: Option<&str>) -> Entry {
    Entry {
        at: time,
        instance: instance.to_owned(),
        qemu: Some((4242, 123_456)),
        what: What::Verdict {
            user: by.is_none(),
            reason: if by.is_some() {
                "host-intent"
            } else {
                "guest-poweroff"
            }
            .to_owned(),
            why: "as it was".to_owned(),
            evidence: "first SHUTDOWN guest=true reason=guest-shutdown; events: SHUTDOWN=1"
                .to_owned(),
            intent: by.map(|by| IntentNote {
                by: by.to_owned(),
                given: at(0),
            }),
        },
    }
}

fn crash(time: SystemTime, instance: &str, event: &str, action: Option<&str>) -> Entry {
    Entry {
        at: time,
        instance: instance.to_owned(),
        qemu: Some((5120, 777)),
        what: What::GuestCrash {
            event: event.to_owned(),
            action: action.map(str::to_owned),
        },
    }
}

fn journal_of(dir: &Path, entries: &[Entry]) -> Journal {
    let mut journal = Journal::new(dir.to_owned(), Limits::default());
    for entry in entries {
        journal.append(entry).expect("append");
    }
    journal
}

fn json(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).expect("one JSON document")
}

#[test]
fn text_and_json_show_every_record_oldest_first() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let dir = tmp.path().join("state");
    let entries = [
        verdict(at(0), "vm1", Some("node-shutdown")),
        crash(at(61), "web-7", "GUEST_PANICKED", Some("run")),
        crash(at(62), "web-7", "GUEST_CRASHLOADED", None),
        verdict(at(3600), "web-7", None),
    ];
    journal_of(&dir, &entries);

    let out = history(&dir, &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "\
2026-12-04T18:20:00Z  vm1    not-user      host-intent     by=node-shutdown  pid=4242  [first SHUTDOWN guest=true reason=guest-shutdown; events: SHUTDOWN=1]
2026-12-04T18:21:01Z  web-7  panicked      action=run                        pid=5120
2026-12-04T18:21:02Z  web-7  crash-loaded  action=-                          pid=5120
2026-12-04T19:20:00Z  web-7  user          guest-poweroff                    pid=4242  [first SHUTDOWN guest=true reason=guest-shutdown; events: SHUTDOWN=1]
"
    );

    let out = history(&dir, &["--json"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let doc = json(&out);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["journal"], dir.to_str().expect("path"));
    assert_eq!(doc["skipped"], serde_json::json!([]));
    let got = doc["entries"].as_array().expect("entries");
    assert_eq!(got.len(), entries.len());
    assert_eq!(
        got[0],
        serde_json::json!({
            "v": 1, "at": "2026-12-04T18:20:00.000Z", "instance": "vm1",
            "qemu_pid": 4242, "qemu_start": 123456, "kind": "verdict",
            "verdict": "not-user", "reason": "host-intent", "why": "as it was",
            "evidence": "first SHUTDOWN guest=true reason=guest-shutdown; events: SHUTDOWN=1",
            "intent": {"by": "node-shutdown", "given": "2026-12-04T18:20:00.000Z"}
        })
    );
    assert_eq!(
        got[2],
        serde_json::json!({
            "v": 1, "at": "2026-12-04T18:21:02.000Z", "instance": "web-7",
            "qemu_pid": 5120, "qemu_start": 777, "kind": "guest-crash",
            "event": "GUEST_CRASHLOADED", "action": null
        })
    );
    // The document's entries are the file's lines, object for object.
    let stored: Vec<Value> = fs::read_to_string(dir.join("journal"))
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(got, &stored);
}

#[test]
fn filters_by_instance_and_time() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let dir = tmp.path().join("j");
    let now = SystemTime::now();
    let hours = |h: u64| now - Duration::from_secs(h * 3600);
    journal_of(
        &dir,
        &[
            verdict(hours(48), "vm1", None),
            verdict(hours(2), "vm2", None),
            crash(
                now - Duration::from_secs(600),
                "vm1",
                "GUEST_PANICKED",
                None,
            ),
            verdict(now - Duration::from_secs(300), "vm1", Some("expect-stop")),
        ],
    );
    let instances = |out: &Out| -> Vec<String> {
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().nth(1).expect("instance").to_owned())
            .collect()
    };
    assert_eq!(instances(&history(&dir, &[])), ["vm1", "vm2", "vm1", "vm1"]);
    assert_eq!(instances(&history(&dir, &["vm1"])), ["vm1", "vm1", "vm1"]);
    assert_eq!(
        instances(&history(&dir, &["--since", "1h"])),
        ["vm1", "vm1"]
    );
    assert_eq!(instances(&history(&dir, &["--since=3h", "vm2"])), ["vm2"]);
    assert_eq!(
        instances(&history(&dir, &["vm1", "--since", "7d"])).len(),
        3
    );
    let out = history(&dir, &["--since", "1h", "--json"]);
    let whats: Vec<String> = json(&out)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect();
    assert_eq!(whats, ["guest-crash", "verdict"]);

    // An absolute time, in any of the accepted spellings.
    let fixed = tmp.path().join("fixed");
    journal_of(
        &fixed,
        &[
            verdict(at(0), "a", None),
            verdict(at(86_400), "b", None),
            verdict(at(86_400 + 90), "c", None),
        ],
    );
    for (since, want) in [
        ("2026-12-04", vec!["a", "b", "c"]),
        ("2026-12-05", vec!["b", "c"]),
        ("2026-12-05T18:20", vec!["b", "c"]),
        ("2026-12-05T18:20:00.001Z", vec!["c"]),
        ("2026-12-05 18:21:30", vec!["c"]),
        ("2026-12-05T18:21:31Z", vec![]),
    ] {
        assert_eq!(
            instances(&history(&fixed, &["--since", since])),
            want,
            "{since}"
        );
    }
    // Nothing matched: still exit 0, said on stderr only.
    let out = history(&fixed, &["nosuch"]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "kvmd history: no records\n");
    let out = history(&fixed, &["nosuch", "--json"]);
    assert_eq!(out.stderr, "");
    assert_eq!(json(&out)["entries"], serde_json::json!([]));
}

#[test]
fn the_journal_is_found_where_the_daemon_keeps_it() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let root = tmp.path().to_str().expect("path");
    // The daemon's default: the state directory beside the control one.
    journal_of(
        &tmp.path().join("kvmd-state"),
        &[verdict(at(0), "by-ctrl", None)],
    );
    journal_of(&tmp.path().join("s"), &[verdict(at(0), "by-state", None)]);
    journal_of(&tmp.path().join("j"), &[verdict(at(0), "by-journal", None)]);
    let ctrl = format!("{root}/ctrl");
    let (state, dir) = (format!("{root}/s"), format!("{root}/j"));
    for (args, want) in [
        (vec!["--ctrl-dir", &ctrl], "by-ctrl"),
        (vec!["--ctrl-dir", &ctrl, "--state-dir", &state], "by-state"),
        (
            vec!["--state-dir", &state, "--journal-dir", &dir],
            "by-journal",
        ),
    ] {
        let mut all = vec!["history"];
        all.extend(args.iter().copied());
        let out = kvmd(&all);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(out.stdout.contains(want), "{args:?}: {}", out.stdout);
        assert_eq!(out.stdout.lines().count(), 1);
    }
    // Relative paths are taken from the working directory.
    let out = kvmd_with(&["history", "--journal-dir", "j"], |c| {
        c.current_dir(tmp.path());
    });
    assert!(out.stdout.contains("by-journal"), "{}", out.stderr);
}

#[test]
fn no_journal_yet_is_said_and_is_not_an_error() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let dir = tmp.path().join("never");
    let out = history(&dir, &[]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        format!("kvmd history: no journal at {} yet\n", dir.display())
    );
    let out = history(&dir, &["--json"]);
    assert_eq!(out.code, 0);
    assert_eq!(json(&out)["entries"], serde_json::json!([]));
    // An empty directory: the same.
    fs::create_dir(&dir).expect("mkdir");
    assert_eq!(history(&dir, &[]).stderr, out.stderr);
    // Reading made nothing.
    assert_eq!(fs::read_dir(&dir).expect("read_dir").count(), 0);
}

/// Valid lines in the documented format, written by hand.
const VM1: &str = r#"{"v":1,"at":"2026-12-04T18:20:00.123Z","instance":"vm1","qemu_pid":4242,"qemu_start":123456,"kind":"verdict","verdict":"not-user","reason":"host-intent","why":"the host said so","evidence":"first SHUTDOWN guest=true reason=guest-shutdown","intent":{"by":"node-shutdown","given":"2026-12-04T18:19:40.000Z"}}"#;
const VM3: &str = r#"{"v":1,"at":"2026-12-04T18:30:00.000Z","instance":"vm3","qemu_pid":null,"qemu_start":null,"kind":"verdict","verdict":"user","reason":"guest-poweroff","why":"the guest powered itself off","evidence":"x","intent":null,"added_by_a_newer_kvmd":[1,2]}"#;

#[test]
fn a_tampered_journal_is_read_around_and_never_mis_rendered() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let dir = tmp.path().join("j");
    fs::create_dir(&dir).expect("mkdir");
    let hostile = VM1
        .replace(
            r#""instance":"vm1""#,
            r#""instance":"vm\u001b[2J\r\nFAKE\u202e""#,
        )
        .replace(r#""by":"node-shutdown""#, r#""by":"a\tb""#)
        .replace("first SHUTDOWN", "\\u0007\\u009bfirst SHUTDOWN");
    let mut rotated: Vec<u8> = Vec::new();
    for line in [
        VM1.to_owned(),
        "garbage, not JSON".to_owned(),
        "a".repeat(100 * 1024),
        hostile,
        VM1.replace("4242", "99999999999999999999999"),
        VM1.replace(r#""vm1""#, "42"),
        VM1.replace(r#""v":1"#, r#""v":2"#),
        VM1.replace(r#""kind":"verdict""#, r#""kind":"reboot""#),
        String::new(),
        "[1,2,3]".to_owned(),
        VM1.replace("2026-12-04T18:20:00.123Z", "2026-02-30T00:00:00Z"),
    ] {
        rotated.extend_from_slice(line.as_bytes());
        rotated.push(b'\n');
    }
    rotated.extend_from_slice(b"{\"v\":1,\"instance\":\"\xff\xfe\"}\n");
    fs::write(dir.join("journal.1"), rotated).expect("write");
    // The live file ends in a line cut off by a crash.
    fs::write(
        dir.join("journal"),
        format!("{VM3}\n{{\"v\":1,\"at\":\"2026-12-04T18:3"),
    )
    .expect("write");

    let out = history(&dir, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "\
2026-12-04T18:20:00Z  vm1                        not-user  host-intent     by=node-shutdown  pid=4242  [first SHUTDOWN guest=true reason=guest-shutdown]
2026-12-04T18:20:00Z  vm\\x1b[2J\\r\\nFAKE\\u{202e}  not-user  host-intent     by=a\\tb           pid=4242  [\\x07\\u{9b}first SHUTDOWN guest=true reason=guest-shutdown]
2026-12-04T18:30:00Z  vm3                        user      guest-poweroff                    pid=-     [x]
"
    );
    assert!(
        out.stdout
            .bytes()
            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b))
    );
    assert_eq!(
        out.stderr,
        "\
kvmd history: journal.1 line 2: skipped: not JSON
kvmd history: journal.1 line 3: skipped: too long (102400 bytes; at most 65535)
kvmd history: journal.1 line 5: skipped: bad or missing \"qemu_pid\"
kvmd history: journal.1 line 6: skipped: bad or missing \"instance\"
kvmd history: journal.1 line 7: skipped: unknown version 2
kvmd history: journal.1 line 8: skipped: unknown kind
kvmd history: journal.1 line 9: skipped: empty line
kvmd history: journal.1 line 10: skipped: not a JSON object
kvmd history: journal.1 line 11: skipped: bad or missing \"at\"
kvmd history: journal.1 line 12: skipped: not UTF-8
kvmd history: journal line 2: skipped: truncated (no newline at the end)
"
    );

    let out = history(&dir, &["--json"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let doc = json(&out);
    let entries = doc["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3);
    // Control characters stay escaped JSON; unknown keys are dropped.
    assert_eq!(entries[1]["instance"], "vm\u{1b}[2J\r\nFAKE\u{202e}");
    assert!(entries[2].get("added_by_a_newer_kvmd").is_none());
    let skipped: Vec<(String, u64, String)> = doc["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            (
                s["file"].as_str().expect("file").to_owned(),
                s["line"].as_u64().expect("line"),
                s["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 11);
    assert_eq!(skipped[1], ("journal.1".into(), 3, "too-long".into()));
    assert_eq!(skipped[10], ("journal".into(), 2, "truncated".into()));
}

#[test]
fn many_bad_lines_are_told_up_to_twenty_then_counted() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let dir = tmp.path().join("j");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(
        dir.join("journal"),
        format!("{}{VM1}\n", "junk\n".repeat(25)),
    )
    .expect("write");
    let out = history(&dir, &[]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout.lines().count(), 1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 21);
    assert_eq!(
        lines[19],
        "kvmd history: journal line 20: skipped: not JSON"
    );
    assert_eq!(lines[20], "kvmd history: 5 more lines skipped");
}

#[test]
fn rotated_files_are_read_as_one_journal_within_the_bound() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let dir = tmp.path().join("j");
    let limits = Limits {
        max_total: 32 * 1024,
    };
    let mut journal = Journal::new(dir.clone(), limits);
    let count: u64 = 600;
    for n in 0..count {
        journal
            .append(&verdict(at(n), &format!("vm{n}"), None))
            .expect("append");
    }
    let mut total = 0;
    for name in ["journal", "journal.1", "journal.2", "journal.3"] {
        let meta = fs::symlink_metadata(dir.join(name)).expect(name);
        assert!(meta.is_file() && meta.len() <= limits.per_file(), "{name}");
        total += meta.len();
    }
    assert!(total <= limits.max_total);
    assert_eq!(fs::read_dir(&dir).expect("read_dir").count(), 4);

    let out = history(&dir, &["--json"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let names: Vec<u64> = json(&out)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            e["instance"].as_str().expect("instance")[2..]
                .parse()
                .expect("n")
        })
        .collect();
    // The newest kept, in order, without a gap; the oldest dropped.
    assert_eq!(names.last(), Some(&(count - 1)));
    assert!(names.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(names[0] > 0 && names.len() > 50, "{}", names.len());
    // The text lists the same records.
    let text = history(&dir, &[]);
    assert_eq!(text.stdout.lines().count(), names.len());
    assert!(
        text.stdout
            .starts_with(&format!("2026-12-04T18:{:02}", names[0] / 60 + 20))
    );
}

#[test]
fn a_fifo_or_symlink_at_a_journal_name_is_neither_waited_on_nor_followed() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let dir = tmp.path().join("j");
    journal_of(&dir, &[verdict(at(0), "vm1", None)]);
    fs::rename(dir.join("journal"), dir.join("journal.1")).expect("rename");
    // A FIFO as the live file, with no writer: opening it to read would
    // wait forever without O_NONBLOCK (the run's deadline would fail).
    nix::unistd::mkfifo(
        &dir.join("journal"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    // A symlink to a journal elsewhere: never read.
    let elsewhere = tmp.path().join("elsewhere");
    journal_of(&elsewhere, &[verdict(at(5), "vm-secret", None)]);
    std::os::unix::fs::symlink(elsewhere.join("journal"), dir.join("journal.2")).expect("symlink");
    let out = history(&dir, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1);
    assert!(out.stdout.contains("vm1") && !out.stdout.contains("vm-secret"));
    assert_eq!(
        out.stderr,
        "kvmd history: journal.2: skipped: a symlink, not a regular file\n\
         kvmd history: journal: skipped: a FIFO, not a regular file\n"
    );

    // The writer refuses both too, and waits on neither.
    let mut journal = Journal::new(dir.clone(), Limits::default());
    let err = journal
        .append(&verdict(at(9), "vm1", None))
        .expect_err("a FIFO");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is a FIFO, not a regular file: left alone",
            dir.join("journal").display()
        )
    );
    fs::remove_file(dir.join("journal")).expect("rm");
    std::os::unix::fs::symlink(elsewhere.join("journal"), dir.join("journal")).expect("symlink");
    assert!(matches!(
        journal.append(&verdict(at(9), "vm1", None)),
        Err(JournalError::NotRegular { .. })
    ));
    let out = history(&elsewhere, &[]);
    assert_eq!(out.stdout.lines().count(), 1, "the target was not written");
}

/// `command` as an ordinary user: root runs it as nobody; anyone else
/// already is one.
fn unprivileged(command: &mut Command) {
    if nix::unistd::geteuid().is_root() {
        command.uid(65534).gid(65534);
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_journal_that_cannot_be_read_is_exit_1_and_says_why() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    chmod(tmp.path(), 0o755);
    let dir = tmp.path().join("j");
    journal_of(&dir, &[verdict(at(0), "vm1", None)]);
    let journal_dir = dir.to_str().expect("path");
    let run = || kvmd_with(&["history", "--journal-dir", journal_dir], unprivileged);

    // Readable by all: an ordinary user reads it (no daemon, no socket).
    chmod(&dir, 0o755);
    chmod(&dir.join("journal"), 0o644);
    let out = run();
    assert_eq!(
        (out.code, out.stdout.lines().count()),
        (0, 1),
        "{}",
        out.stderr
    );

    // The file not readable.
    chmod(&dir.join("journal"), 0o000);
    let out = run();
    chmod(&dir.join("journal"), 0o600);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        format!(
            "kvmd history: cannot open {}/journal: EACCES: Permission denied\n",
            journal_dir
        )
    );

    // The directory not readable (as the daemon makes it: 0700, root's).
    chmod(&dir, 0o000);
    let out = run();
    chmod(&dir, 0o700);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!("kvmd history: cannot open directory {journal_dir}: EACCES: Permission denied\n")
    );

    // Not a directory.
    let file = tmp.path().join("file");
    fs::write(&file, VM1).expect("write");
    let out = history(&file, &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("ENOTDIR"), "{}", out.stderr);
}

#[test]
fn usage_errors_are_exit_2_and_help_lists_history() {
    for (args, says) in [
        (vec!["history", "--since", "yesterday"], "'--since'"),
        (vec!["history", "--since", "5w"], "'--since'"),
        (vec!["history", "--since"], "'--since' needs a value"),
        (vec!["history", "vm1", "vm2"], "unexpected argument 'vm2'"),
        (vec!["history", "--follow"], "unknown option '--follow'"),
        (vec!["--journal-max", "1K"], "'--journal-max'"),
        (vec!["--journal-max", "2G"], "'--journal-max'"),
    ] {
        let out = kvmd(&args);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "");
    }
    let out = kvmd(&["--help"]);
    assert_eq!(out.code, 0);
    for needle in [
        "kvmd history [--json] [INSTANCE] [--since TIME]",
        "--journal-dir DIR",
        "--journal-max BYTES",
    ] {
        assert!(out.stdout.contains(needle), "--help lacks {needle}");
    }
}

/// A tmpfs mounted for one test; lazily unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (skipped) without root.
    fn mount(at: &Path, options: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            common::skip("mounting a tmpfs needs root");
            return None;
        }
        fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "kvmd-test"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(status.success(), "mount: {status}");
        Some(Tmpfs(at.to_owned()))
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(status.success(), "remount {options}: {status}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_file_system_is_an_error_and_the_journal_goes_on_after() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let Some(fs_) = Tmpfs::mount(&tmp.path().join("fs"), "size=1m") else {
        return;
    };
    let dir = fs_.0.join("state");
    let mut journal = journal_of(&dir, &[verdict(at(0), "vm1", None)]);
    fs_.remount("ro");
    let err = journal
        .append(&verdict(at(1), "vm2", None))
        .expect_err("read-only");
    assert!(
        matches!(
            err,
            JournalError::Io {
                errno: nix::errno::Errno::EROFS,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "cannot open {}: EROFS: Read-only file system",
            journal.path().display()
        )
    );
    // A directory still to be made: refused the same way.
    let mut elsewhere = Journal::new(fs_.0.join("new"), Limits::default());
    let err = elsewhere
        .append(&verdict(at(1), "vm2", None))
        .expect_err("read-only");
    assert!(err.to_string().contains("EROFS"), "{err}");
    // Readable all along.
    let out = history(&dir, &[]);
    assert_eq!((out.code, out.stdout.lines().count()), (0, 1));
    fs_.remount("rw");
    journal
        .append(&verdict(at(2), "vm3", None))
        .expect("writable again");
    let out = history(&dir, &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let names: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().nth(1).expect("name"))
        .collect();
    assert_eq!(names, ["vm1", "vm3"]);
}

#[test]
fn a_full_file_system_is_an_error_and_leaves_no_half_line() {
    let tmp = common::tmpfs_dir("kvmd-history-");
    let Some(fs_) = Tmpfs::mount(&tmp.path().join("fs"), "size=64k") else {
        return;
    };
    let dir = fs_.0.join("state");
    let mut journal = journal_of(&dir, &[verdict(at(0), "vm1", None)]);
    // Fill what is left, a page at a time.
    let filler = fs_.0.join("filler");
    {
        use std::io::Write;
        let mut file = fs::File::create(&filler).expect("filler");
        let page = [0u8; 4096];
        while file.write_all(&page).is_ok() {}
    }
    // Larger than the room left in the journal's last page: the write
    // needs a new one, and gets part of the way at most.
    let mut big = verdict(at(1), "vm2", None);
    if let What::Verdict { evidence, .. } = &mut big.what {
        *evidence = "e".repeat(8000);
    }
    let before = fs::metadata(journal.path()).expect("stat").len();
    let err = journal.append(&big).expect_err("full");
    assert!(
        matches!(
            err,
            JournalError::ShortWrite { .. }
                | JournalError::Io {
                    errno: nix::errno::Errno::ENOSPC,
                    ..
                }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&journal.path().display().to_string())
    );
    assert_eq!(
        fs::metadata(journal.path()).expect("stat").len(),
        before,
        "a part written was taken back"
    );
    let out = history(&dir, &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert_eq!(out.stdout.lines().count(), 1);
    // Room again: the next append lands, whole.
    fs::remove_file(&filler).expect("rm");
    journal.append(&big).expect("room again");
    let out = history(&dir, &["--json"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let doc = json(&out);
    assert_eq!(doc["entries"].as_array().expect("entries").len(), 2);
    assert_eq!(
        doc["entries"][1]["evidence"].as_str().map(str::len),
        Some(8000)
    );
    // The journal itself never exceeds what it is allowed: `journal::read`
    // (the library) agrees with the binary.
    let read = journal::read(&dir, &journal::Filter::default()).expect("read");
    assert_eq!((read.entries.len(), read.skipped.len()), (2, 0));
}
