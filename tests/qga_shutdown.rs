//! `contrib/ganeti/qga-shutdown` against the real daemon and a real QEMU
//! guest: it asks the guest agent first (`guest-sync` with a random id)
//! and gives kvmd the intent only when the agent answers, so that no
//! intent is left for a guest whose agent is not there (the guest's own
//! power-off within the window would then be taken for the host's).
//!
//! The agent is played by the test on the agent's socket, as Ganeti's
//! `<instance>.qga` would be QEMU's chardev: one that answers (after stale
//! lines an earlier client left, as a virtio-serial port keeps them) and
//! then carries the shutdown out by pressing the key the guest waits for;
//! one that takes the connection and never answers (no agent running in
//! the guest); none at all.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cli::{instance, pid_file, status};
use common::{Daemon, Guest, Options, World, program, qemu, wait_until};
use serde_json::{Value, json};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ganeti/qga-shutdown")
}

fn have_python() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        common::skip("python3 is missing (qga-shutdown is a Python script)");
    }
    found
}

/// `qga-shutdown INSTANCE` with the built kvmd, the test daemon's pid
/// file, and the agent at `agent`.
fn qga_shutdown(daemon: &Daemon, agent: &Path, instance: &str, extra: &[&str]) -> Output {
    let child = Command::new(script())
        .arg("--socket")
        .arg(agent)
        .args(["--kvmd", env!("CARGO_BIN_EXE_kvmd")])
        .args(["--pid-file", &pid_file(daemon)])
        .args(["--by", "qga-shutdown test"])
        .args(extra)
        .arg(instance)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qga-shutdown");
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
    wait_until("qga-shutdown to end", || waiter.is_finished().then_some(()));
    waiter.join().expect("join")
}

/// Accepts one connection on `listener` (with the suite's deadline).
fn accept(listener: &UnixListener) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let stream = wait_until("qga-shutdown to connect", || match listener.accept() {
        Ok((stream, _)) => Some(stream),
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(e) => panic!("accept: {e}"),
    });
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    stream
}

/// An agent that answers: stale lines first, then each `guest-sync` with
/// its id; at `guest-shutdown` it says so on `asked` (the test carries
/// the shutdown out). Returns the commands it was sent.
fn answering_agent(path: &Path, asked: mpsc::Sender<()>) -> std::thread::JoinHandle<Vec<Value>> {
    let listener = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let stream = accept(&listener);
        let mut writer = stream.try_clone().expect("clone");
        // What an earlier client left unanswered, and a line cut short.
        writer
            .write_all(b"{\"return\": 7}\n\xff{\"retu\n{\"return\": {}}\n")
            .expect("stale lines");
        let mut seen = Vec::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let request: Value = serde_json::from_str(&line).expect("JSON requests");
            seen.push(request.clone());
            match request["execute"].as_str() {
                Some("guest-sync") => {
                    let answer = json!({"return": request["arguments"]["id"]});
                    writeln!(writer, "{answer}").expect("answer");
                }
                Some("guest-shutdown") => {
                    let _ = asked.send(());
                    break;
                }
                _ => panic!("unexpected {request}"),
            }
        }
        seen
    })
}

/// `vm1`, a guest that powers itself off when a key is pressed (as it
/// would when its agent is told to), running and monitored by a kvmd;
/// `None` where QEMU or Python is missing (a failure under CI).
fn running_guest() -> Option<(World, Daemon, Guest)> {
    let qemu = qemu()?;
    if !have_python() {
        return None;
    }
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("vm1", &[program::WAIT_KEY, program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm1", &image, Options::default());
    daemon.wait_monitoring("vm1");
    guest.cont();
    Some((world, daemon, guest))
}

#[test]
fn the_agent_is_asked_only_after_it_answered_and_kvmd_took_the_intent() {
    let Some((world, daemon, mut guest)) = running_guest() else {
        return;
    };
    let agent = world.tmp.path().join("vm1.qga");
    let (asked, shutdown) = mpsc::channel();
    let stub = answering_agent(&agent, asked);

    let out = qga_shutdown(&daemon, &agent, "vm1", &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("vm1: the guest agent was asked to power it off (by qga-shutdown test)"),
        "{stdout}"
    );
    let seen = stub.join().expect("the agent");
    let commands: Vec<&str> = seen.iter().filter_map(|r| r["execute"].as_str()).collect();
    assert_eq!(commands, ["guest-sync", "guest-shutdown"], "{seen:?}");
    let id = &seen[0]["arguments"]["id"];
    assert!(id.as_u64().is_some_and(|id| id > 0), "{id}");
    assert_eq!(seen[1]["arguments"]["mode"], "powerdown");
    shutdown
        .recv_timeout(common::DEADLINE)
        .expect("guest-shutdown");
    // The agent carries it out: the guest powers itself off, the host's.
    guest.press_key();
    let line = daemon.wait_decision("vm1");
    assert!(line.contains("(host-intent)"), "{line}");
    assert!(line.contains("intent by qga-shutdown test"), "{line}");
}

#[test]
fn no_intent_is_given_for_a_guest_whose_agent_does_not_answer() {
    let Some((world, daemon, mut guest)) = running_guest() else {
        return;
    };

    // QEMU takes the connection whether an agent runs in the guest or
    // not; without one, nothing comes back.
    let agent = world.tmp.path().join("vm1.qga");
    let listener = UnixListener::bind(&agent).expect("bind");
    let silent = std::thread::spawn(move || {
        let stream = accept(&listener);
        let mut requests = Vec::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            requests.push(line);
        }
        requests
    });
    let started = Instant::now();
    let out = qga_shutdown(&daemon, &agent, "vm1", &["--ping-timeout", "2"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "qga-shutdown: vm1: the guest agent at {} does not answer (no answer to guest-sync \
             within 2 s); not shutting it down, no intent given",
            agent.display()
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let requests = silent.join().expect("the silent agent");
    assert_eq!(requests.len(), 1, "only the ping: {requests:?}");
    assert!(requests[0].contains("guest-sync"), "{requests:?}");

    // No agent socket at all.
    let nowhere = world.tmp.path().join("none.qga");
    let out = qga_shutdown(&daemon, &nowhere, "vm1", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");

    // kvmd was never told: no intent, and the guest's own power-off is
    // the user's.
    assert!(instance(&status(&daemon), "vm1").expect("listed")["intent"].is_null());
    assert_eq!(daemon.count_log("the host will stop it"), 0);
    guest.press_key();
    let line = daemon.wait_decision("vm1");
    assert!(!line.contains("host-intent"), "{line}");
}
