//! kvmd inside a real one-node Ganeti cluster, and Debian's original
//! `ganeti-kvmd` in the same cluster, scenario by scenario, read through
//! Ganeti's own tools (`gnt-instance list`, `ganeti-watcher`), and
//! `contrib/ganeti/qa-user-shutdown`, the operator's end-to-end check, run
//! against each cluster: Ganeti 3.0 with QEMU 7.2 on this Debian 12
//! machine, and Ganeti 3.1 with QEMU 10.0 in the Debian 13 root
//! (tests/common/trixie.rs). It prints README's table, each cell measured.
//!
//! `tests/cluster/one-node.sh` builds the cluster in private mount, UTS and
//! network namespaces (the host's Ganeti directories are never touched) and
//! prints one `RESULT` line per scenario. Each run takes one to two minutes;
//! the runs are one test, in sequence, because a cluster holds Ganeti's
//! fixed paths (inside its namespace) and the machine's two cores.

mod common;

use common::skip;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

type Results = BTreeMap<String, BTreeMap<String, String>>;

/// The kvmd the intent scenarios' client runs (`kvmd expect-stop` from
/// Ganeti's hook and from qga-shutdown), whichever daemon Ganeti runs.
const KVMD_CLI: &str = env!("CARGO_BIN_EXE_kvmd");

/// Where a cluster runs: on this machine, or in a throwaway overlay of the
/// Debian 13 root.
enum Release {
    Debian12,
    Debian13(PathBuf),
}

/// Runs the cluster with `daemon` as its ganeti-kvmd ("original": Debian's)
/// and returns scenario → key → value.
fn cluster(release: &Release, daemon: &str) -> Results {
    let work = common::tmpfs_dir("kvmd-cluster");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/one-node.sh");
    let out = match release {
        // tests/cluster/doctor.sh runs this binary as `kvmd doctor`.
        Release::Debian12 => Command::new(&script)
            .arg(daemon)
            .arg(work.path())
            .arg(KVMD_CLI)
            .env("ONE_NODE_DOCTOR", env!("CARGO_BIN_EXE_kvmd"))
            .output()
            .expect("tests/cluster/one-node.sh"),
        Release::Debian13(root) => {
            let script = script.to_str().expect("utf-8 path");
            let dir = work.path().to_str().expect("utf-8 path");
            let doctor = format!("ONE_NODE_DOCTOR={}", env!("CARGO_BIN_EXE_kvmd"));
            let command = ["env", &doctor, script, daemon, dir, KVMD_CLI];
            common::trixie::enter(root, work.path(), &[], &command)
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cluster with {daemon}: {}\n{stdout}\n{stderr}",
        out.status
    );
    let mut results = Results::new();
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("RESULT") {
            continue;
        }
        let Some(scenario) = words.next() else {
            continue;
        };
        let fields = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        results.insert(scenario.to_owned(), fields);
    }
    eprintln!("cluster with {daemon}:\n{stdout}");
    results
}

fn get<'a>(results: &'a Results, scenario: &str, key: &str) -> &'a str {
    results
        .get(scenario)
        .and_then(|fields| fields.get(key))
        .map_or("(missing)", String::as_str)
}

/// What Ganeti's watcher needs, scenario by scenario (kvmd's answers).
const KVMD: &[(&str, &str, &str)] = &[
    ("init", "daemon", "running"),
    ("poweroff", "status", "USER_down"),
    ("poweroff", "file", "present"),
    ("poweroff-watcher", "state", "USER_down,N,down,user"),
    ("poweroff-start", "status", "running"),
    ("poweroff-start", "file", "absent"),
    ("shutdown-timeout-5", "status", "ADMIN_down"),
    ("shutdown-timeout-0", "status", "ADMIN_down"),
    ("sigkill", "status", "ERROR_down"),
    ("sigkill-watcher", "status", "running"),
    ("sigterm", "status", "ERROR_down"),
    ("sigterm", "file", "absent"),
    ("reset", "status", "ERROR_down"),
    ("reset", "file", "absent"),
    ("restart-daemon", "daemon", "running"),
    // Intents: Ganeti's hook before gnt-instance shutdown, and qga-shutdown
    // (a guest agent's shutdown, which QMP cannot tell from the user's).
    ("intent-hook", "status", "ADMIN_down"),
    ("intent-hook", "reason", "host-intent"),
    ("intent-hook", "by", "gnt-instance_shutdown"),
    ("intent-agent", "rc", "0"),
    ("intent-agent", "status", "ERROR_down"),
    ("intent-agent", "file", "absent"),
    ("intent-agent", "reason", "host-intent"),
    ("intent-agent", "by", "qga-shutdown_test"),
    ("intent-agent", "journal", "host-intent"),
    // contrib/ganeti/qa-user-shutdown: a real poweroff from inside, twice.
    ("qa", "rc", "0"),
    ("qa", "poweroff", "USER_down"),
    ("qa", "watcher", "down,user"),
    ("qa", "restart", "running"),
    ("qa", "again", "USER_down"),
    ("qa", "attached", "yes"),
];

/// `kvmd doctor` in the cluster with kvmd (tests/cluster/doctor.sh):
/// each scenario's exit status and the severity of the findings that
/// answer it (`check@instance`).
const DOCTOR: &[(&str, &str, &str)] = &[
    ("doctor-all-ok", "rc", "0"),
    ("doctor-all-ok", "daemon.running", "ok"),
    ("doctor-all-ok", "ganeti.kvmd-binary", "ok"),
    ("doctor-all-ok", "ganeti.daemon-path", "ok"),
    ("doctor-all-ok", "ganeti.user-shutdown", "ok"),
    ("doctor-all-ok", "instance.coverage@doc", "ok"),
    ("doctor-all-ok", "instance.hvparam@doc", "ok"),
    ("doctor-hvparam-off", "rc", "1"),
    ("doctor-hvparam-off", "instance.hvparam@doc", "fail"),
    ("doctor-hvparam-off", "ganeti.hvparam", "ok"),
    ("doctor-not-running", "rc", "1"),
    ("doctor-not-running", "daemon.running", "fail"),
    ("doctor-not-running", "instance.coverage@doc", "fail"),
    ("doctor-ssconf-off", "rc", "1"),
    ("doctor-ssconf-off", "ganeti.user-shutdown", "fail"),
    ("doctor-ssconf-off", "daemon.running", "fail"),
    // Ganeti 3 gives every QEMU its .kvmd socket, whatever the switches
    // said when it started: turned on later, the daemon covers it.
    ("doctor-started-before", "rc", "0"),
    ("doctor-started-before", "instance.coverage@doc", "ok"),
    ("doctor-started-before", "ganeti.user-shutdown", "ok"),
    ("doctor-started-before", "ganeti.hvparam", "ok"),
    ("doctor-socket-lost", "rc", "1"),
    ("doctor-socket-lost", "instance.coverage@doc", "fail"),
    ("doctor-rebooted", "rc", "0"),
    ("doctor-rebooted", "instance.coverage@doc", "ok"),
];

/// `kvmd doctor` with Debian's daemon installed as Ganeti's, and running.
const DOCTOR_ORIGINAL: &[(&str, &str, &str)] = &[
    ("doctor-original", "rc", "3"),
    ("doctor-original", "ganeti.kvmd-binary", "warn"),
    ("doctor-original", "daemon.running", "ok"),
];

/// The doctor's answers (`expected`) in one cluster run.
fn check_doctor(daemon: &str, results: &Results, expected: &[(&str, &str, &str)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter_map(|&(scenario, key, want)| {
            let got = get(results, scenario, key);
            (got != want).then(|| format!("{scenario} {key}: {got}, not {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "kvmd doctor with {daemon}: {wrong:#?}");
}

fn check(daemon: &str, results: &Results) {
    assert_ne!(
        get(results, "versions", "ganeti"),
        "(missing)",
        "{daemon}: no versions line"
    );
    let mut wrong = Vec::new();
    for &(scenario, key, want) in KVMD {
        let got = get(results, scenario, key);
        if got != want {
            wrong.push(format!("{scenario} {key}: {got}, not {want}"));
        }
    }
    let starts = get(results, "attach", "starts");
    assert!(
        starts.parse::<u32>().is_ok_and(|n| n > 0),
        "{daemon}: no starts counted ({starts})"
    );
    assert_eq!(
        get(results, "attach", "watched"),
        starts,
        "{daemon} must attach to the instance on every start"
    );
    assert!(wrong.is_empty(), "{daemon} in Ganeti: {wrong:#?}");
}

/// The original, where it is right and where it is not (README's table).
/// Where it missed the start (a refused connect it never retries), it
/// watches nothing and its answer is ERROR_down: that is its flaw too, but
/// a race, so only its reported cases are checked.
fn check_original(original: &Results) {
    for &(scenario, key, want) in KVMD {
        let got = get(original, scenario, key);
        if get(original, scenario, "attached") == "no" {
            eprintln!("the original missed the start before {scenario}: {key}={got}");
            continue;
        }
        // A scenario that goes on from another goes on from whatever the
        // original made of that one: a connect it made late, after the
        // check, can leave a shutdown file for the next.
        let from = match scenario {
            "poweroff-watcher" | "poweroff-start" => Some("poweroff"),
            "sigkill-watcher" => Some("sigkill"),
            _ => None,
        };
        if let Some(from) = from
            && get(original, from, "attached") == "no"
        {
            eprintln!("the original missed the start before {from}, which {scenario} follows");
            continue;
        }
        // The original takes no intent: its hook says so and Ganeti goes
        // on; qga-shutdown then refuses to ask the agent (exit 1), and
        // the guest runs on.
        let intent = match (scenario, key) {
            ("intent-hook", "status") | ("intent-agent", "file") => None,
            ("intent-hook" | "intent-agent", "reason" | "by") | ("intent-agent", "journal") => {
                Some("-")
            }
            ("intent-agent", "rc") => Some("1"),
            ("intent-agent", "status") => Some("running"),
            _ => None,
        };
        let differs = matches!(scenario, "sigterm" | "reset");
        if let Some(wrong) = intent {
            assert_eq!(got, wrong, "the original on {scenario} {key}");
        } else if differs {
            let wrong = if key == "status" {
                "USER_down"
            } else {
                "present"
            };
            assert_eq!(got, wrong, "the original on {scenario} {key}");
        } else {
            assert_eq!(got, want, "the original on {scenario} {key}");
        }
    }
}

/// README's rows: what happened, and the results that answer it.
const ROWS: &[(&str, &str, &[&str])] = &[
    ("guest powers itself off", "poweroff", &["status", "file"]),
    (
        "`ganeti-watcher` after that",
        "poweroff-watcher",
        &["state"],
    ),
    (
        "`gnt-instance start` again",
        "poweroff-start",
        &["status", "file"],
    ),
    (
        "`gnt-instance shutdown --timeout=5`, guest ignores the button",
        "shutdown-timeout-5",
        &["status"],
    ),
    (
        "`gnt-instance shutdown --timeout=0`",
        "shutdown-timeout-0",
        &["status"],
    ),
    ("QEMU killed with SIGKILL", "sigkill", &["status", "file"]),
    (
        "`ganeti-watcher` after that",
        "sigkill-watcher",
        &["status"],
    ),
    ("QEMU sent SIGTERM", "sigterm", &["status", "file"]),
    (
        "`reboot_behavior=exit`, the guest resets",
        "reset",
        &["status", "file"],
    ),
    (
        "daemon killed; `gnt-instance start` starts it",
        "restart-daemon",
        &["daemon"],
    ),
    (
        "`gnt-instance shutdown` with the `kvmd-expect-stop` hook",
        "intent-hook",
        &["status", "reason"],
    ),
    (
        "`qga-shutdown` (the guest agent's poweroff, announced)",
        "intent-agent",
        &["rc", "status", "reason"],
    ),
    ("`qa-user-shutdown`", "qa", &["verdict"]),
];

/// The table README quotes, one column per cluster run: every cell as
/// measured, a start the daemon missed marked so.
fn table(columns: &[(String, &Results)]) -> String {
    let mut out = String::from("| scenario |");
    for (name, _) in columns {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(columns.len()));
    out.push('\n');
    for &(label, scenario, keys) in ROWS {
        out.push_str(&format!("| {label} |"));
        for (_, results) in columns {
            let mut cell: Vec<String> = keys
                .iter()
                .map(|&key| match key {
                    "file" | "rc" => format!("{key} {}", get(results, scenario, key)),
                    _ => get(results, scenario, key).to_owned(),
                })
                .collect();
            if get(results, scenario, "attached") == "no" {
                cell.push("(start missed)".to_owned());
            }
            out.push_str(&format!(" {} |", cell.join(", ")));
        }
        out.push('\n');
    }
    out.push_str("| attached after each start |");
    for (_, results) in columns {
        out.push_str(&format!(
            " {} of {} |",
            get(results, "attach", "watched"),
            get(results, "attach", "starts")
        ));
    }
    out.push('\n');
    out
}

fn versions(results: &Results) -> String {
    format!(
        "Ganeti {}, QEMU {}",
        get(results, "versions", "ganeti"),
        get(results, "versions", "qemu")
    )
}

#[test]
fn in_a_real_ganeti_cluster_kvmd_gives_the_watcher_what_it_needs() {
    if !nix::unistd::geteuid().is_root() {
        return skip("not root: the cluster test needs namespaces");
    }
    for path in [
        "/usr/sbin/gnt-cluster",
        "/usr/sbin/ganeti-kvmd",
        "/usr/bin/qemu-system-x86_64",
        "/usr/bin/unshare",
    ] {
        if !Path::new(path).exists() {
            return skip(&format!("{path} missing (tests/run.sh installs ganeti)"));
        }
    }
    if Path::new("/var/lib/ganeti/config.data").exists() {
        return skip("this machine is a Ganeti node; the test builds its own cluster");
    }

    let mut releases = vec![("3.0", Release::Debian12)];
    if let Some(root) = common::trixie::root() {
        releases.push(("3.1", Release::Debian13(root)));
    }
    let mut runs = Vec::new();
    for (ganeti, release) in &releases {
        let kvmd = cluster(release, env!("CARGO_BIN_EXE_kvmd"));
        let original = cluster(release, "original");
        for results in [&kvmd, &original] {
            let measured = get(results, "versions", "ganeti");
            assert!(
                measured.starts_with(ganeti),
                "Ganeti {ganeti} expected, measured {measured}"
            );
        }
        check("kvmd", &kvmd);
        check_original(&original);
        check_doctor("kvmd", &kvmd, DOCTOR);
        check_doctor("the original", &original, DOCTOR_ORIGINAL);
        eprintln!(
            "{}: qa-user-shutdown kvmd rc={}, original rc={} (attached={}); \
             attached on start: kvmd {}/{}, original {}/{}",
            versions(&kvmd),
            get(&kvmd, "qa", "rc"),
            get(&original, "qa", "rc"),
            get(&original, "qa", "attached"),
            get(&kvmd, "attach", "watched"),
            get(&kvmd, "attach", "starts"),
            get(&original, "attach", "watched"),
            get(&original, "attach", "starts"),
        );
        runs.push((versions(&kvmd), original, kvmd));
    }
    let mut columns = Vec::new();
    for (versions, original, kvmd) in &runs {
        columns.push((format!("original, {versions}"), original));
        columns.push((format!("kvmd, {versions}"), kvmd));
    }
    eprintln!("README's table, as measured:\n{}", table(&columns));
}
