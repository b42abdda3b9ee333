//! Issue #17 against the real daemon and real QEMU guests: `kvmd
//! expect-stop` (given, claimed, expired, cancelled, carried over a kvmd
//! restart, never inherited by a new QEMU, refused with a clear error),
//! `kvmd powerdown-all` (every guest's power button, waiting for each QEMU
//! to go, saying which did not), and guest crashes that leave the guest
//! running (counted in metrics, shown in status and events).
//!
//! A guest agent's `guest-shutdown` is played by a guest that powers
//! itself off when a key is pressed: kvmd sees exactly the same (SHUTDOWN
//! guest=true reason=guest-shutdown, no POWERDOWN).

mod common;

use std::fs;

use common::cli::{Follower, cli, instance, metric, pid_file, status, wait_status};
use common::{Daemon, Guest, Options, World, assert_user_shutdown, program, qemu, wait_until};
use nix::sys::signal::Signal;

/// A guest that powers itself off when a key is pressed: what a guest
/// agent's shutdown looks like to QMP.
fn agent_like_guest(world: &World, qemu: &std::path::Path, name: &str) -> Guest {
    let image = world.image(name, &[program::WAIT_KEY, program::POWER_OFF]);
    Guest::start(qemu, &world.ctrl, name, &image, Options::default())
}

/// kvmd with a metrics file, and a follower of its events taken on.
fn watched(world: &World) -> (Daemon, std::path::PathBuf, Follower) {
    let metrics = world.tmp.path().join("kvmd.prom");
    let metrics_arg = metrics.to_str().expect("utf-8 path");
    let daemon = Daemon::start_with(
        &world.ctrl,
        world.tmp.path(),
        &["-d", "--metrics-file", metrics_arg],
    );
    let follower = Follower::start(&daemon);
    follower.wait_attached();
    (daemon, metrics, follower)
}

fn expect_stop(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let pid_file = pid_file(daemon);
    let mut all = vec!["expect-stop", "--pid-file", &pid_file];
    all.extend_from_slice(args);
    cli(&all)
}

#[test]
fn an_announced_guest_agent_shutdown_is_the_hosts() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let (daemon, metrics, follower) = watched(&world);
    let mut guest = agent_like_guest(&world, &qemu, "vm1");
    daemon.wait_monitoring("vm1");
    world.plant_stale("vm1");
    guest.cont();

    let (code, out, err) = expect_stop(&daemon, &["vm1", "--for", "300", "--by", "qga shutdown"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vm1: its next SHUTDOWN until"), "{out}");
    assert!(out.contains("(by qga shutdown)"), "{out}");
    daemon.wait_log("vm1: the host will stop it (by qga shutdown)", 1);
    let given = follower.wait("intent-given", None);
    assert_eq!(given["by"], "qga shutdown");
    let now = status(&daemon);
    let qemu_pid = instance(&now, "vm1").expect("listed")["qemu_pid"].clone();
    let intent = &instance(&now, "vm1").expect("listed")["intent"];
    assert_eq!(intent["by"], "qga shutdown");
    assert_eq!(intent["state"], "waiting");
    assert!(
        intent["expires_in_seconds"]
            .as_u64()
            .is_some_and(|s| s <= 300)
    );
    assert!(
        world.tmp.path().join("kvmd-state/vm1.intent").is_file(),
        "kept in the state directory"
    );

    guest.press_key();
    assert_user_shutdown(&world, &daemon, "vm1", false);
    let line = daemon.assert_logged_once("vm1: decided");
    assert!(line.contains("(host-intent)"), "{line}");
    assert!(line.contains("reason=guest-shutdown"), "{line}");
    assert!(line.contains("intent by qga shutdown"), "{line}");
    assert!(!world.tmp.path().join("kvmd-state/vm1.intent").exists());
    let decided = follower.wait("decided", None);
    assert_eq!(
        (
            &decided["verdict"],
            &decided["reason"],
            &decided["intent_by"]
        ),
        (
            &"not-user".into(),
            &"host-intent".into(),
            &"qga shutdown".into()
        )
    );
    let after = wait_status(&daemon, "the verdict in status", |s| {
        s["verdicts"].as_array().is_some_and(|v| !v.is_empty())
    });
    let verdict = &after["verdicts"][0];
    assert_eq!(verdict["reason"], "host-intent");
    assert_eq!(verdict["intent_by"], "qga shutdown");
    wait_until("the metrics to count it", || {
        let text = fs::read_to_string(&metrics).ok()?;
        let series = "kvmd_verdicts_total{verdict=\"not-user\",reason=\"host-intent\"}";
        (metric(&text, series) == Some(1.0)).then_some(())
    });
    // The journal has it, with the intent, whoever reads it and whether
    // kvmd runs or not.
    let mut daemon = daemon;
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit().success());
    let ctrl = world.ctrl.to_str().expect("utf-8 path");
    let (code, out, err) = cli(&["history", "--json", "--ctrl-dir", ctrl]);
    assert_eq!(code, 0, "{err}");
    let history: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let entries = history["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{out}");
    let entry = &entries[0];
    assert_eq!(entry["instance"], "vm1");
    assert_eq!(entry["kind"], "verdict");
    assert_eq!(entry["verdict"], "not-user");
    assert_eq!(entry["reason"], "host-intent");
    assert_eq!(entry["intent"]["by"], "qga shutdown");
    assert_eq!(entry["qemu_pid"], qemu_pid);
    assert!(qemu_pid.as_u64().is_some(), "{qemu_pid}");
    assert!(
        entry["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("reason=guest-shutdown")),
        "{entry}"
    );
    let (code, text, _) = cli(&["history", "--ctrl-dir", ctrl, "vm1"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("host-intent") && text.contains("by=qga shutdown"),
        "{text}"
    );
}

#[test]
fn an_intent_left_to_expire_changes_nothing() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let mut guest = agent_like_guest(&world, &qemu, "vm1");
    daemon.wait_monitoring("vm1");
    guest.cont();
    let (code, _, err) = expect_stop(&daemon, &["vm1", "--for", "1"]);
    assert_eq!(code, 0, "{err}");
    daemon.wait_log("vm1: intent by expect-stop expired with no SHUTDOWN", 1);
    assert!(!world.tmp.path().join("kvmd-state/vm1.intent").exists());
    guest.press_key();
    assert_user_shutdown(&world, &daemon, "vm1", true);
    let line = daemon.assert_logged_once("vm1: decided");
    assert!(line.contains("(guest-poweroff)"), "{line}");
}

#[test]
fn a_cancelled_intent_changes_nothing() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let mut guest = agent_like_guest(&world, &qemu, "vm1");
    daemon.wait_monitoring("vm1");
    guest.cont();
    assert_eq!(expect_stop(&daemon, &["vm1"]).0, 0);
    let (code, out, err) = expect_stop(&daemon, &["--cancel", "vm1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vm1: intent cancelled"), "{out}");
    let (code, _, err) = expect_stop(&daemon, &["--cancel", "vm1"]);
    assert_eq!(code, 1, "nothing left to cancel: {err}");
    assert!(err.contains("no intent is given for it"), "{err}");
    guest.press_key();
    assert_user_shutdown(&world, &daemon, "vm1", true);
}

#[test]
fn an_intent_outlives_a_kvmd_restart_but_not_its_qemu() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let first = Daemon::start(&world.ctrl, world.tmp.path());
    let mut vm1 = agent_like_guest(&world, &qemu, "vm1");
    let mut vm2 = agent_like_guest(&world, &qemu, "vm2");
    first.wait_monitoring("vm1");
    first.wait_monitoring("vm2");
    vm1.cont();
    assert_eq!(expect_stop(&first, &["vm1", "--by", "maintenance"]).0, 0);
    assert_eq!(expect_stop(&first, &["vm2", "--by", "maintenance"]).0, 0);
    first.signal(Signal::SIGTERM);
    let mut first = first;
    assert!(first.wait_exit().success());

    // vm2's QEMU is replaced while kvmd is down: the new one under the
    // same name (even on a reused inode) inherits nothing.
    vm2.quit();
    let mut vm2 = agent_like_guest(&world, &qemu, "vm2");
    // Its own log (the state directory beside the control directory is
    // the same).
    let second_dir = world.tmp.path().join("second");
    fs::create_dir(&second_dir).expect("mkdir");
    let second = Daemon::start(&world.ctrl, &second_dir);
    second.wait_monitoring("vm1");
    second.wait_monitoring("vm2");
    let now = status(&second);
    assert_eq!(
        instance(&now, "vm1").expect("listed")["intent"]["by"],
        "maintenance"
    );
    assert!(instance(&now, "vm2").expect("listed")["intent"].is_null());
    assert!(!world.tmp.path().join("kvmd-state/vm2.intent").exists());

    vm1.press_key();
    assert_user_shutdown(&world, &second, "vm1", false);
    assert!(second.wait_decision("vm1").contains("(host-intent)"));
    vm2.cont();
    vm2.press_key();
    assert_user_shutdown(&world, &second, "vm2", true);
}

#[test]
fn bad_requests_get_a_clear_error_and_change_nothing() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let _guest = agent_like_guest(&world, &qemu, "vm1");
    daemon.wait_monitoring("vm1");
    let (code, _, err) = expect_stop(&daemon, &["nosuch"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("nosuch: kvmd does not monitor an instance of that name"),
        "{err}"
    );
    for (args, says) in [
        (
            &["vm1", "--for", "0"][..],
            "invalid value '0' for option '--for'",
        ),
        (
            &["vm1", "--for", "864000"],
            "invalid value '864000' for option '--for'",
        ),
        (
            &["vm1", "--for", "soon"],
            "invalid value 'soon' for option '--for'",
        ),
        (&["vm1", "--by", "a\u{1b}[2Jb"], "for option '--by'"),
        (&["a/b"], "invalid value 'a/b' for option 'INSTANCE'"),
        (&[], "missing INSTANCE"),
        (&["vm1", "vm2"], "unexpected argument 'vm2'"),
    ] {
        let (code, _, err) = expect_stop(&daemon, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, _, err) = cli(&[
        "powerdown-all",
        "--timeout",
        "0",
        "--pid-file",
        &pid_file(&daemon),
    ]);
    assert_eq!(code, 2, "{err}");
    // Nothing was given.
    assert!(instance(&status(&daemon), "vm1").expect("listed")["intent"].is_null());
    // No daemon where it looks: 3, as `kvmd status` says.
    let elsewhere = world.tmp.path().join("elsewhere.pid");
    let (code, _, err) = cli(&[
        "expect-stop",
        "vm1",
        "--pid-file",
        elsewhere.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("kvmd is not running"), "{err}");
}

#[test]
fn powerdown_all_powers_every_guest_down_and_says_who_did_not_go() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let names = ["g1", "g2", "g3"];
    let mut guests: Vec<Guest> = names
        .iter()
        .map(|name| {
            let image = world.image(name, &[program::OBEY_BUTTON, program::POWER_OFF]);
            Guest::start(&qemu, &world.ctrl, name, &image, Options::default())
        })
        .collect();
    // One guest that never listens to its button.
    let image = world.image("deaf", &[program::HALT]);
    let mut deaf = Guest::start(&qemu, &world.ctrl, "deaf", &image, Options::default());
    for name in names.iter().chain(&["deaf"]) {
        daemon.wait_monitoring(name);
    }
    for guest in &mut guests {
        guest.cont();
    }
    deaf.cont();
    let (code, out, err) = cli(&[
        "powerdown-all",
        "--timeout",
        "15",
        "--pid-file",
        &pid_file(&daemon),
    ]);
    assert_eq!(code, 1, "the deaf guest is still running: {out}{err}");
    assert!(
        out.contains("pressed the power button of 4 guests"),
        "{out}"
    );
    for name in names {
        assert!(
            out.contains(&format!("{name}: stopped: not-user (host-intent)")),
            "{out}"
        );
        assert_user_shutdown(&world, &daemon, name, false);
        let line = daemon.wait_decision(name);
        assert!(line.contains("intent by node-shutdown"), "{line}");
        assert!(
            line.contains("POWERDOWN="),
            "pressed through kvmd's own QMP: {line}"
        );
    }
    for guest in &mut guests {
        guest.wait_exit();
    }
    assert!(err.contains("1 guests still running: deaf"), "{err}");
    assert!(!deaf.exited());
    // The deaf one's window ends with it still running: it is stopped the
    // hard way, as the node's shutdown would, and decided as such.
    daemon.wait_log("deaf: intent by node-shutdown expired", 1);
    deaf.signal(Signal::SIGTERM);
    assert!(daemon.wait_decision("deaf").contains("(host-signal)"));

    // Nothing left to press: done at once.
    let (code, out, err) = cli(&["powerdown-all", "--pid-file", &pid_file(&daemon)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("pressed the power button of 0 guests"),
        "{out}"
    );
}

#[test]
fn guest_crashes_that_leave_the_guest_running_are_counted_and_shown() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let (daemon, metrics, follower) = watched(&world);
    let options = Options {
        pvpanic: true,
        panic_runs_on: true,
        ..Options::default()
    };
    let image = world.image("vm1", &[program::PANIC, program::CRASH_LOADED]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm1", &image, options);
    daemon.wait_monitoring("vm1");
    guest.cont();
    follower.wait("guest", Some("GUEST_PANICKED"));
    follower.wait("guest", Some("GUEST_CRASHLOADED"));
    daemon.wait_log("vm1: guest panicked (GUEST_PANICKED)", 1);
    let now = wait_status(&daemon, "both crashes in status", |s| {
        instance(s, "vm1").is_some_and(|i| i["evidence"]["crash_loads"] == 1)
    });
    let evidence = &instance(&now, "vm1").expect("listed")["evidence"];
    assert_eq!(evidence["panics"], 1);
    assert_eq!(guest.status(), "running", "the guest lives on");
    wait_until("the metrics to count them", || {
        let text = fs::read_to_string(&metrics).ok()?;
        let panics = metric(&text, "kvmd_guest_panics_total{event=\"GUEST_PANICKED\"}");
        let loads = metric(
            &text,
            "kvmd_guest_panics_total{event=\"GUEST_CRASHLOADED\"}",
        );
        (panics == Some(1.0) && loads == Some(1.0)).then_some(())
    });
    // It decides nothing by itself: the guest is still monitored.
    assert!(daemon.count_log("vm1: decided") == 0);
    // Both are in the journal already, before any verdict.
    let ctrl = world.ctrl.to_str().expect("utf-8 path");
    let (code, out, err) = cli(&["history", "--json", "--ctrl-dir", ctrl]);
    assert_eq!(code, 0, "{err}");
    let history: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let events: Vec<(&str, &str)> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("-"),
                e["event"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("guest-crash", "GUEST_PANICKED"),
            ("guest-crash", "GUEST_CRASHLOADED")
        ],
        "{out}"
    );
    guest.quit();
    assert!(daemon.wait_decision("vm1").contains("(guest-panic)"));
}

/// Guests `powerdown-all` could not press are not passed over in silence:
/// one whose guest had already shut down while its QEMU lives on
/// (`-no-shutdown`), and one kvmd is still negotiating with (a peer that
/// never greets, played by the test, so its "QEMU" is this process). Each
/// is named with kvmd's reason, and since their QEMUs still run at the end
/// the command fails, though every guest it pressed stopped.
#[test]
fn powerdown_all_names_the_guests_it_could_not_press_that_still_run() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("g1", &[program::OBEY_BUTTON, program::POWER_OFF]);
    let mut g1 = Guest::start(&qemu, &world.ctrl, "g1", &image, Options::default());
    let image = world.image("off", &[program::POWER_OFF]);
    let no_shutdown = Options {
        no_shutdown: true,
        ..Options::default()
    };
    let mut off = Guest::start(&qemu, &world.ctrl, "off", &image, no_shutdown);
    let listener = common::peer::listen(&world.ctrl.join("stuck.kvmd"));
    let stuck = std::thread::spawn(move || {
        // Connected, never greeted: negotiating for as long as it holds.
        let mut peer = common::peer::Peer::accept(&listener);
        let mut byte = [0u8; 1];
        let _ = std::io::Read::read(peer.stream(), &mut byte);
    });
    daemon.wait_monitoring("g1");
    daemon.wait_monitoring("off");
    g1.cont();
    off.cont();
    let now = wait_status(&daemon, "off shut down and stuck negotiating", |s| {
        instance(s, "off").is_some_and(|i| !i["evidence"]["shutdown"].is_null())
            && instance(s, "stuck").is_some_and(|i| i["phase"] == "negotiating")
    });
    let off_pid = instance(&now, "off").expect("listed")["qemu_pid"].clone();
    let me = std::process::id();

    let (code, out, err) = cli(&[
        "powerdown-all",
        "--timeout",
        "60",
        "--pid-file",
        &pid_file(&daemon),
    ]);
    assert_eq!(code, 1, "two guests not pressed still run: {out}{err}");
    assert!(
        out.contains("pressed the power button of 1 guests; 2 not pressed\n"),
        "{out}"
    );
    assert!(out.contains("g1: stopped: not-user (host-intent)"), "{out}");
    g1.wait_exit();
    assert!(
        out.contains(
            "off: not pressed: its guest has already shut down; the SHUTDOWN that decides came before"
        ),
        "{out}"
    );
    assert!(
        out.contains("stuck: not pressed: kvmd is not monitoring it yet (still connecting"),
        "{out}"
    );
    assert!(!err.contains("guests still running"), "g1 stopped: {err}");
    assert!(
        err.contains(&format!(
            "kvmd: not pressed and still running: off (QEMU pid {off_pid}; its guest has already shut down"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "kvmd: not pressed and still running: stuck (QEMU pid {me}; kvmd is not monitoring it yet"
        )),
        "{err}"
    );
    // Gone, it is no longer named: off's QEMU quits (stuck's peer stays).
    off.quit();
    daemon.wait_decision("off");
    let (code, out, err) = cli(&["powerdown-all", "--pid-file", &pid_file(&daemon)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!err.contains("off"), "{err}");
    assert!(err.contains("still running: stuck"), "{err}");
    drop(daemon);
    stuck.join().expect("the stuck peer");
}

/// An interrupted `powerdown-all` (its client killed, as Ctrl-C or a
/// killed ExecStop would) stops kvmd pressing: the guest that ignores its
/// button gets the one press it had, not one every 5 s until the window
/// ends. The intents stay: a guest that goes down within its window is
/// still the host's doing.
#[test]
fn an_interrupted_powerdown_all_stops_pressing_and_keeps_its_intents() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("deaf", &[program::HALT]);
    let mut deaf = Guest::start(&qemu, &world.ctrl, "deaf", &image, Options::default());
    let mut agent = agent_like_guest(&world, &qemu, "agent");
    daemon.wait_monitoring("deaf");
    daemon.wait_monitoring("agent");
    // The test's own QMP connections (made by `cont`) see every POWERDOWN.
    deaf.cont();
    agent.cont();

    // Presses would come again 5 s and 10 s in; the window ends at 12 s.
    let mut client = common::cli::kvmd()
        .args(["powerdown-all", "--json", "--timeout", "12", "--pid-file"])
        .arg(pid_file(&daemon))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kvmd powerdown-all");
    let stdout = client.stdout.take().expect("piped");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)
        .expect("the answer");
    let answer: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(
        answer["powerdown"]["pressed"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    client.kill().expect("kill the client");
    client.wait().expect("wait");

    for name in ["deaf", "agent"] {
        daemon.wait_log(
            &format!(
                "{name}: powerdown-all (by node-shutdown) went away before it stopped: its power \
                 button is not pressed again; the intent stands until its window ends"
            ),
            1,
        );
    }
    let now = status(&daemon);
    for name in ["deaf", "agent"] {
        let intent = &instance(&now, name).expect("listed")["intent"];
        assert_eq!(
            (&intent["state"], &intent["pressing"], &intent["by"]),
            (&"waiting".into(), &false.into(), &"node-shutdown".into()),
            "{name}: {intent}"
        );
    }
    let kept = fs::read_to_string(world.tmp.path().join("kvmd-state/deaf.intent"))
        .expect("the intent file");
    assert!(kept.contains("\"presses\":\"none\""), "{kept}");

    // The intent stands: the agent-like guest going down now is the host's.
    agent.press_key();
    let line = daemon.wait_decision("agent");
    assert!(line.contains("(host-intent)"), "{line}");
    assert!(line.contains("intent by node-shutdown"), "{line}");

    // The deaf guest's window ends with the one press it had.
    daemon.wait_log("deaf: intent by node-shutdown expired", 1);
    assert_eq!(deaf.qmp().count_events("POWERDOWN"), 1);
    assert!(!deaf.exited());
}

/// An intent file makes a stop the host's: a state directory someone else
/// could write to would let them forge one (or forge evidence, or a hook
/// to run as root). kvmd refuses to start with one, hooks or not, and
/// says why; with the directory its own again, it starts.
#[test]
fn a_state_directory_others_could_write_to_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let state = world.tmp.path().join("kvmd-state");
    fs::create_dir(&state).expect("mkdir");
    fs::write(state.join("vm1.intent"), "forged").expect("plant");
    let state_arg = state.to_str().expect("utf-8 path");
    // Its exit status and what it said; one that starts is stopped at the
    // deadline (and the test fails on its status).
    let run = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kvmd"))
            .args(["-f", "--no-ssconf", "--state-dir", state_arg, "--ctrl-dir"])
            .arg(&world.ctrl)
            .arg("--pid-file")
            .arg(world.tmp.path().join("kvmd.pid"))
            .arg("--log-file")
            .arg(world.tmp.path().join("kvmd.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kvmd");
        let deadline = std::time::Instant::now() + common::DEADLINE;
        while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let out = child.wait_with_output().expect("its output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).expect("chmod");
    let (code, err) = run();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("state directory") && err.contains("writable by group or others"),
        "{err}"
    );
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).expect("chmod");
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&state, Some(nobody), None).expect("chown");
        let (code, err) = run();
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("owned by uid 65534"), "{err}");
        nix::unistd::chown(&state, Some(nix::unistd::geteuid()), None).expect("chown");
    }
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).expect("chmod");
    let daemon = Daemon::start_with(&world.ctrl, world.tmp.path(), &["--state-dir", state_arg]);
    // The file it could not have written is refused as such, not obeyed.
    daemon.wait_log("vm1: its intent file cannot be read; removed", 1);
}
