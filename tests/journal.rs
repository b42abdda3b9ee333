//! The journal as the running daemon keeps it (issue #17): bounded however
//! many verdicts come, and a journal that cannot be written never stops a
//! decision. Hundreds of verdicts need hundreds of QEMUs: fake QMP peers
//! play them (tests/common/peer.rs), the one thing here real QEMU cannot be
//! made to do cheaply; tests/intents.rs reads real QEMU's records back, and
//! so does the hard-linked journal's test here.

mod common;

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;

use common::cli::cli;
use common::peer::{self, HOST_QUIT, USER_OFF};
use common::{Daemon, Guest, Options, World, program, qemu, tmpfs_dir, wait_until};
use serde_json::Value;

/// `count` instances named `{prefix}{i}` come, negotiate and end, the even
/// ones by the host, the odd ones by their user; waits for every verdict.
fn verdicts(world: &World, daemon: &Daemon, prefix: &str, count: usize, decided_before: usize) {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    let listeners: Vec<UnixListener> = names
        .iter()
        .map(|name| peer::listen(&world.ctrl.join(format!("{name}.kvmd"))))
        .collect();
    for (i, (name, listener)) in names.iter().zip(&listeners).enumerate() {
        peer::serve(listener, &[if i % 2 == 0 { HOST_QUIT } else { USER_OFF }]);
        fs::remove_file(world.ctrl.join(format!("{name}.kvmd"))).expect("unlink");
    }
    daemon.wait_log(" decided ", decided_before + count);
}

fn history(args: &[&str]) -> Value {
    let mut all = vec!["history", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = cli(&all);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("history is JSON")
}

fn files_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("journal dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn a_journal_filled_to_its_bound_keeps_the_newest_and_never_grows_past_it() {
    let world = World::new();
    let journal = tmpfs_dir("kvmd-journal-bound");
    let dir = journal.path().to_str().expect("utf-8 path");
    // The smallest bound: four files of 64 KiB.
    let daemon = Daemon::start_with(
        &world.ctrl,
        world.tmp.path(),
        &["--journal-dir", dir, "--journal-max", "256K"],
    );
    // About 300 bytes a record: 1,200 verdicts are well past the bound.
    let mut decided = 0;
    for round in 0..6 {
        verdicts(&world, &daemon, &format!("r{round}-"), 200, decided);
        decided += 200;
        let size = files_size(journal.path());
        assert!(size <= 256 * 1024, "round {round}: {size} bytes");
    }
    let all = history(&["--journal-dir", dir]);
    let entries = all["entries"].as_array().expect("entries");
    assert!(
        all["skipped"].as_array().is_some_and(Vec::is_empty),
        "{all}"
    );
    // The newest are all there, in order; the oldest went.
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["instance"].as_str().unwrap_or("-"))
        .collect();
    let last: Vec<String> = (150..200).map(|i| format!("r5-{i}")).collect();
    assert_eq!(names[names.len() - 50..], last, "the newest 50");
    assert!(!names.contains(&"r0-0"), "the oldest is gone");
    assert!(entries.len() > 400, "{} kept", entries.len());
    for e in entries {
        let even = e["instance"]
            .as_str()
            .and_then(|n| n.rsplit('-').next())
            .and_then(|i| i.parse::<u32>().ok())
            .is_some_and(|i| i % 2 == 0);
        let (verdict, reason) = if even {
            ("not-user", "host-quit")
        } else {
            ("user", "guest-poweroff")
        };
        assert_eq!(
            (e["verdict"].as_str(), e["reason"].as_str()),
            (Some(verdict), Some(reason)),
            "{e}"
        );
    }
    // Every decision was made and written: the journal's bound is its own.
    assert_eq!(daemon.count_log(" decided "), 1200);
}

#[test]
fn an_unwritable_journal_never_stops_a_decision_and_says_so_once() {
    let world = World::new();
    let place = tmpfs_dir("kvmd-journal-unwritable");
    // A file where the journal's directory should be.
    let dir = place.path().join("journal-dir");
    fs::write(&dir, b"not a directory").expect("write");
    let dir_arg = dir.to_str().expect("utf-8 path");
    let metrics = world.tmp.path().join("kvmd.prom");
    let metrics_arg = metrics.to_str().expect("utf-8 path");
    let daemon = Daemon::start_with(
        &world.ctrl,
        world.tmp.path(),
        &["--journal-dir", dir_arg, "--metrics-file", metrics_arg],
    );
    verdicts(&world, &daemon, "a", 6, 0);
    for i in 0..6 {
        assert_eq!(
            world.shutdown_file(&format!("a{i}")).exists(),
            i % 2 == 1,
            "a{i}"
        );
    }
    let said =
        daemon.assert_logged_once("are missing from the journal until it can be written again");
    assert!(said.contains(" ERROR "), "{said}");
    assert!(said.contains(dir_arg), "names the journal: {said}");
    wait_until("the metrics to count the failed records", || {
        let text = fs::read_to_string(&metrics).ok()?;
        text.lines()
            .any(|l| l == "kvmd_journal_write_errors_total 6")
            .then_some(())
    });
    // Mended: the next record is written, and that is said once too.
    fs::remove_file(&dir).expect("rm");
    verdicts(&world, &daemon, "b", 2, 6);
    let again = daemon.assert_logged_once(&format!("{dir_arg}/journal: written again"));
    assert!(again.contains(" INFO "), "{again}");
    let all = history(&["--journal-dir", dir_arg]);
    let names: Vec<&str> = all["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["instance"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(names, ["b0", "b1"]);
}

/// A backup that hard-links the journal (`cp -al`) is never written
/// through, and does not stop the journal either: the linked live file is
/// copied to one of its own, said once, and real QEMU guests' stops before
/// and after are all in `kvmd history`, no rotated file spent on it.
#[test]
fn a_journal_a_backup_hard_linked_is_copied_and_journaling_goes_on() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let place = tmpfs_dir("kvmd-journal-linked");
    let dir = place.path().join("journal");
    let dir_arg = dir.to_str().expect("utf-8 path");
    let daemon = Daemon::start_with(&world.ctrl, world.tmp.path(), &["--journal-dir", dir_arg]);
    let image = world.image("off", &[program::POWER_OFF]);
    let guest = |name: &str| {
        let mut guest = Guest::start(&qemu, &world.ctrl, name, &image, Options::default());
        daemon.wait_monitoring(name);
        guest.cont();
        guest.wait_exit();
        daemon.wait_decision(name);
    };
    guest("vm1");
    // The backup: every journal file linked into another directory.
    let backup = place.path().join("backup");
    fs::create_dir(&backup).expect("mkdir");
    fs::hard_link(dir.join("journal"), backup.join("journal")).expect("link");
    let kept = fs::read(backup.join("journal")).expect("read");
    guest("vm2");
    guest("vm3");
    assert_eq!(fs::read(backup.join("journal")).expect("read"), kept);
    let said = daemon.assert_logged_once("copied to a file of its own before appending");
    assert!(said.contains(" WARNING "), "{said}");
    assert!(
        said.contains(&format!("{dir_arg}/journal: had 2 names")),
        "{said}"
    );
    assert!(!daemon.log_text().contains("missing from the journal"));
    assert!(!dir.join("journal.1").exists(), "no rotation");
    let all = history(&["--journal-dir", dir_arg]);
    let names: Vec<(&str, &str)> = all["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or("-");
            (field("instance"), field("reason"))
        })
        .collect();
    assert_eq!(
        names,
        [
            ("vm1", "guest-poweroff"),
            ("vm2", "guest-poweroff"),
            ("vm3", "guest-poweroff")
        ]
    );
}
