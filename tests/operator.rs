//! Issue #10, the operator's view, against the real daemon and real QEMU
//! guests: `kvmd status` (human and `--json`), `kvmd events`, the metrics
//! file (checked by `promtool check metrics`), systemd readiness (a
//! datagram socket standing in for systemd's), and the control socket's
//! life (mode, a stale one replaced, removed at exit).

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Stdio;

use common::cli::{Follower, cli, instance, kvmd, metric, pid_file, promtool, status, wait_status};
use common::{Daemon, Guest, Options, World, program, qemu, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

#[test]
fn status_events_and_metrics_follow_a_real_guest() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let metrics = world.tmp.path().join("kvmd.prom");
    let metrics_arg = metrics.display().to_string();
    // A fifo where the temporary file goes: never opened (it would block
    // the loop), replaced.
    nix::unistd::mkfifo(
        &world.tmp.path().join(".kvmd.prom.tmp"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let daemon = Daemon::start_with(
        &world.ctrl,
        world.tmp.path(),
        &["--metrics-file", &metrics_arg],
    );
    // The guest sees the button, marks it, and waits for a key before it
    // obeys: "pressed, not yet obeyed" lasts as long as the test likes.
    let parts = [
        program::OBEY_BUTTON,
        program::MARK,
        program::WAIT_KEY,
        program::POWER_OFF,
    ];
    let image = world.image("vm", &parts);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    let follower = Follower::start(&daemon);
    follower.wait_attached();

    // Monitored, with its QEMU and the state Ganeti starts guests in.
    let now = status(&daemon);
    let vm = instance(&now, "vm").expect("vm listed");
    assert_eq!(vm["phase"], "monitoring", "{vm}");
    assert!(
        vm["qemu"].as_str().is_some_and(|v| v.starts_with("7.")),
        "{vm}"
    );
    assert_eq!(vm["guest"], "prelaunch", "{vm}");
    assert!(vm["qemu_pid"].as_u64().is_some(), "{vm}");
    assert_eq!(now["kvmd"]["watch"], "watching");
    assert_eq!(now["kvmd"]["counts"]["instances"], 1);

    guest.cont();
    wait_status(&daemon, "the guest running", |s| {
        instance(s, "vm").is_some_and(|vm| vm["guest"] == "running")
    });
    guest.press_power_button_until_marked();
    let pressed = wait_status(&daemon, "the button pending", |s| {
        instance(s, "vm").is_some_and(|vm| vm["evidence"]["powerdown_pending"] == true)
    });
    let (code, human, _) = cli(&["status", "--pid-file", &pid_file(&daemon), "vm"]);
    assert_eq!(code, 0);
    assert!(
        human.contains("power button pressed, not yet obeyed"),
        "{human}"
    );
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("vm ") && l.contains("monitoring")),
        "{human}"
    );
    assert_eq!(instance(&pressed, "vm").expect("vm")["guest"], "running");
    guest.stop();
    wait_status(&daemon, "the guest paused", |s| {
        instance(s, "vm").is_some_and(|vm| vm["guest"] == "paused")
    });
    guest.cont();
    guest.press_key();
    guest.wait_exit();
    let line = daemon.wait_decision("vm");
    assert!(
        line.contains("decided not a user shutdown (host-acpi)"),
        "{line}"
    );

    // Gone, and still explained.
    let after = wait_status(&daemon, "the verdict listed", |s| {
        instance(s, "vm").is_none() && s["verdicts"].as_array().is_some_and(|v| !v.is_empty())
    });
    let verdict = &after["verdicts"][0];
    assert_eq!(verdict["name"], "vm");
    assert_eq!(verdict["verdict"], "not-user");
    assert_eq!(verdict["reason"], "host-acpi");
    assert_eq!(verdict["file"], "absent");
    let (_, human, _) = cli(&["status", "--pid-file", &pid_file(&daemon)]);
    assert!(human.contains("not user (host-acpi)"), "{human}");

    // Every step, in order, to the follower.
    follower.wait("decided", None);
    let seen: Vec<String> = follower
        .events()
        .iter()
        .filter(|e| e["instance"] == "vm")
        .map(|e| match e["event"].as_str() {
            Some(event) => format!("{}:{event}", e["kind"].as_str().unwrap_or("")),
            None => e["kind"].as_str().unwrap_or("").to_owned(),
        })
        .collect();
    let want = [
        "guest:RESUME",
        "guest:POWERDOWN",
        "guest:STOP",
        "guest:RESUME",
        "guest:SHUTDOWN",
        "decided",
    ];
    let mut rest = seen.iter();
    for step in want {
        assert!(
            rest.any(|s| s == step),
            "{step} missing (in order) from {seen:?}"
        );
    }
    let decided = follower.wait("decided", None);
    assert_eq!(decided["reason"], "host-acpi");
    assert_eq!(decided["verdict"], "not-user");

    // The metrics follow, and pass promtool.
    let text = wait_until("the verdict in the metrics", || {
        let text = fs::read_to_string(&metrics).ok()?;
        let series = "kvmd_verdicts_total{verdict=\"not-user\",reason=\"host-acpi\"}";
        (metric(&text, series) == Some(1.0)).then_some(text)
    });
    assert_eq!(
        metric(&text, "kvmd_instances{phase=\"monitoring\"}"),
        Some(0.0)
    );
    if let Some((ok, said)) = promtool(&metrics) {
        assert!(ok, "promtool: {said}\n{text}");
    }
    // No temporary file is left beside it.
    let leftovers: Vec<_> = fs::read_dir(world.tmp.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_user_poweroff_is_reported_with_its_reason() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    world.plant_stale("vm");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("vm", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    guest.cont();
    guest.wait_exit();
    let line = daemon.wait_decision("vm");
    assert!(
        line.contains("decided user shutdown (guest-poweroff)"),
        "{line}"
    );
    let after = wait_status(&daemon, "the verdict listed", |s| {
        s["verdicts"].as_array().is_some_and(|v| !v.is_empty())
    });
    assert_eq!(after["verdicts"][0]["reason"], "guest-poweroff");
    assert_eq!(after["verdicts"][0]["verdict"], "user");
    assert_eq!(after["verdicts"][0]["file"], "kept");
    // Asking about one instance shows only it.
    let (code, out, _) = cli(&[
        "status",
        "--json",
        "--pid-file",
        &pid_file(&daemon),
        "other",
    ]);
    assert_eq!(code, 0);
    let only: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(only["status"]["verdicts"], Value::Array(vec![]));
}

#[test]
fn status_says_where_it_looked_when_kvmd_is_not_running() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("kvmd.sock");
    let socket_arg = socket.display().to_string();
    let (code, out, err) = cli(&["status", "--control-socket", &socket_arg]);
    assert_eq!(code, 3, "LSB: program is not running");
    assert!(out.is_empty());
    assert!(err.contains("kvmd is not running"), "{err}");
    assert!(err.contains(&socket_arg), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, err) = cli(&["events", "--control-socket", &socket_arg]);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = cli(&["status", "--bogus"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown option '--bogus'"), "{err}");
}

#[test]
fn the_control_socket_is_private_replaces_a_stale_one_and_goes_at_exit() {
    let world = World::new();
    let socket = world.tmp.path().join("kvmd.sock");
    // A crashed kvmd's socket: bound, nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());
    let mut daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let meta = fs::symlink_metadata(&socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(status(&daemon)["kvmd"]["pid"], daemon.pid());
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit();
    assert!(!socket.exists(), "removed on a clean exit");

    // Something that is no socket is never removed: kvmd refuses to start.
    fs::write(&socket, b"precious").expect("a file in the way");
    let out = kvmd()
        .args(["-f", "--no-ssconf", "--ctrl-dir"])
        .arg(&world.ctrl)
        .arg("--pid-file")
        .arg(world.tmp.path().join("kvmd.pid"))
        .arg("--log-file")
        .arg(world.tmp.path().join("kvmd2.log"))
        .output()
        .expect("run kvmd");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot set up the control socket"), "{err}");
    assert_eq!(fs::read(&socket).expect("kept"), b"precious");
}

/// Receives one datagram from the stand-in for systemd's socket.
fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn readiness_and_status_are_told_to_systemd() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let notify = world.tmp.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&notify).expect("bind notify socket");
    systemd
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    let log = world.tmp.path().join("kvmd.log");
    let pid_file: PathBuf = world.tmp.path().join("kvmd.pid");
    let mut child = kvmd()
        .args(["-f", "--no-ssconf", "--ctrl-dir"])
        .arg(&world.ctrl)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--log-file")
        .arg(&log)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kvmd");
    let mut said = Vec::new();
    // Its status first, then ready once the first scan is attached.
    while !said.iter().any(|s: &String| s == "READY=1") {
        said.push(receive(&systemd));
    }
    assert!(
        said.iter()
            .any(|s| s.starts_with("STATUS=watching ") && s.ends_with(": 0 monitored")),
        "{said:?}"
    );
    let image = world.image("vm", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    let line = wait_until("STATUS with one monitored", || {
        let got = receive(&systemd);
        got.ends_with(": 1 monitored").then_some(got)
    });
    assert!(line.starts_with("STATUS=watching "), "{line}");
    guest.cont();
    guest.wait_exit();
    wait_until("STATUS with none monitored", || {
        receive(&systemd).ends_with(": 0 monitored").then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .expect("SIGTERM");
    wait_until("STOPPING=1", || {
        (receive(&systemd) == "STOPPING=1").then_some(())
    });
    assert!(child.wait().expect("wait").success());
}
