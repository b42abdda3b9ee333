//! Issue #10's hostile clients of the control socket, against one running
//! daemon, in the adversarial suite's manner: after every case the daemon
//! is alive, its descriptors come back to the baseline, its peak memory
//! stayed bounded, and a real QEMU guest powering itself off (the witness)
//! is still decided right. Clients are only ever a cost to themselves.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use common::peer::{self, USER_OFF};
use common::{Daemon, Guest, Options, World, program, qemu, wait_until};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::Value;

/// How much the daemon's peak resident memory may grow over the run.
const MEMORY_BOUND_KIB: u64 = 16 * 1024;

struct Suite {
    world: World,
    daemon: Daemon,
    qemu: Option<PathBuf>,
    socket: PathBuf,
    baseline: Vec<String>,
    peak: u64,
    witnesses: usize,
}

impl Suite {
    fn new() -> Suite {
        let world = World::new();
        let daemon = Daemon::start_with(&world.ctrl, world.tmp.path(), &[]);
        let socket = world.tmp.path().join("kvmd.sock");
        let baseline = wait_until("the daemon idle", || {
            (daemon.is_idle() != Some(false)).then(|| daemon.descriptors())
        });
        let peak = daemon.status_kib("VmHWM");
        Suite {
            world,
            daemon,
            qemu: qemu(),
            socket,
            baseline,
            peak,
            witnesses: 0,
        }
    }

    fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.socket).expect("connect to the control socket");
        stream
            .set_read_timeout(Some(common::DEADLINE))
            .expect("timeout");
        stream
    }

    /// The checks after every case.
    fn check(&mut self, case: &str) {
        assert!(self.daemon.is_running(), "{case}: kvmd died");
        wait_until(&format!("{case}: descriptors back to the baseline"), || {
            (self.daemon.descriptors() == self.baseline).then_some(())
        });
        let peak = self.daemon.status_kib("VmHWM");
        assert!(
            peak <= self.peak + MEMORY_BOUND_KIB,
            "{case}: peak memory {peak} KiB, {} at the start",
            self.peak
        );
        let Some(qemu) = &self.qemu else { return };
        self.witnesses += 1;
        let name = format!("witness{}", self.witnesses);
        let image = self.world.image(&name, &[program::POWER_OFF]);
        let mut guest = Guest::start(qemu, &self.world.ctrl, &name, &image, Options::default());
        self.daemon.wait_monitoring(&name);
        guest.cont();
        guest.wait_exit();
        common::assert_user_shutdown(&self.world, &self.daemon, &name, true);
        wait_until(
            &format!("{case}: descriptors back after the witness"),
            || (self.daemon.descriptors() == self.baseline).then_some(()),
        );
    }

    /// `count` fake QEMUs, one after another, each powered off by its
    /// user: so many verdicts in the history (and events to follow).
    fn decide_many(&self, count: usize, prefix: &str) {
        for i in 0..count {
            let name = format!("{prefix}{i:04}");
            let path = self.world.ctrl.join(format!("{name}.kvmd"));
            let listener = peer::listen(&path);
            // Blocking accept, bounded by the deadline: a poll on it.
            let mut ready = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(common::DEADLINE).expect("timeout");
            assert_eq!(
                poll(&mut ready, timeout),
                Ok(1),
                "kvmd never connected to {name}"
            );
            let (stream, _) = listener.accept().expect("accept");
            let mut peer = peer::Peer::new(stream);
            peer.negotiate();
            peer.send_line(USER_OFF);
            // As QEMU exits: the socket file goes, then the connection.
            let _ = fs::remove_file(&path);
            peer.hang_up();
        }
        self.daemon
            .wait_decision(&format!("{prefix}{:04}", count - 1));
    }
}

/// Reads one line (the daemon's answer) and then the end of the stream.
fn answer_then_close(mut stream: UnixStream) -> Value {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("an answer");
    let value: Value = serde_json::from_str(&line).expect("JSON");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "more after the answer: {rest:?}");
    value
}

fn error_of(value: &Value) -> &str {
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {value}"))
}

#[test]
fn hostile_clients_cost_only_themselves() {
    let mut s = Suite::new();

    // Garbage, then an error line and the end.
    let mut stream = s.connect();
    stream.write_all(b"garbage\n").expect("write");
    let said = answer_then_close(stream);
    assert!(error_of(&said).starts_with("not a JSON request"), "{said}");
    assert_eq!(said["version"], 1);
    s.check("garbage");

    // A follower that leaves is closed at once, not at the next event.
    let mut follower = s.connect();
    follower
        .write_all(b"{\"version\": 1, \"command\": \"events\"}\n")
        .expect("write");
    let mut first = String::new();
    BufReader::new(&follower)
        .read_line(&mut first)
        .expect("following");
    assert!(first.contains("\"following\":true"), "{first}");
    drop(follower);
    s.check("a follower that leaves");

    // An endless line: refused past 4 KiB, not buffered for ever.
    let mut stream = s.connect();
    let _ = stream.write_all(&vec![b'x'; 64 * 1024]);
    let said = answer_then_close(stream);
    assert!(error_of(&said).contains("longer than 4096 bytes"), "{said}");
    s.check("endless line");

    // A thousand connects at once: 16 served, the rest told so.
    let mut served = Vec::new();
    let mut refused = 0;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        clients.push(s.connect());
    }
    for mut client in clients {
        let _ = client.write_all(b"{\"version\": 1, \"command\": \"status\"}\n");
        let mut line = String::new();
        let _ = BufReader::new(&client).read_line(&mut line);
        let value: Value = serde_json::from_str(&line).expect("every client is answered");
        match value.get("error").and_then(Value::as_str) {
            Some(e) if e.contains("too many clients") => refused += 1,
            Some(e) => panic!("unexpected error: {e}"),
            None => served.push(value),
        }
    }
    assert!(served.len() >= 16, "{} served", served.len());
    assert!(refused > 0, "none refused");
    assert_eq!(served.len() + refused, 1000);
    s.check("a thousand connects");

    // A big status nobody reads: produced only as fast as it is read.
    s.decide_many(1000, &format!("{}-", "long-instance-name".repeat(3)));
    let mut stuck = s.connect();
    stuck
        .write_all(b"{\"version\": 1, \"command\": \"status\"}\n")
        .expect("write");
    // Meanwhile decisions go on (the witness), then it goes away.
    let mut peek = [0u8; 16];
    stuck.read_exact(&mut peek).expect("the answer starts");
    if let Some(qemu) = s.qemu.clone() {
        let image = s.world.image("during", &[program::POWER_OFF]);
        let mut guest = Guest::start(&qemu, &s.world.ctrl, "during", &image, Options::default());
        s.daemon.wait_monitoring("during");
        guest.cont();
        guest.wait_exit();
        common::assert_user_shutdown(&s.world, &s.daemon, "during", true);
    }
    drop(stuck);
    s.check("a status nobody reads");

    // Sixteen clients that never ask take every slot; a newcomer still
    // gets its answer: the oldest idle one makes room (and is told so).
    let mut idle: Vec<UnixStream> = (0..16).map(|_| s.connect()).collect();
    wait_until("16 idle clients taken on", || {
        (s.daemon.descriptors().len() == s.baseline.len() + 16).then_some(())
    });
    let mut asking = s.connect();
    asking
        .write_all(b"{\"version\": 1, \"command\": \"status\"}\n")
        .expect("write");
    let answer = answer_then_close(asking);
    assert!(answer.get("status").is_some(), "{answer}");
    let oldest = answer_then_close(idle.remove(0));
    assert!(error_of(&oldest).contains("made room"), "{oldest}");
    drop(idle);
    s.check("idle clients in every slot");

    // Hanging up in the middle of a status.
    let mut stream = s.connect();
    stream
        .write_all(b"{\"version\": 1, \"command\": \"status\"}\n")
        .expect("write");
    let mut some = [0u8; 1000];
    stream.read_exact(&mut some).expect("part of the answer");
    drop(stream);
    s.check("hang-up mid-answer");

    // A follower that stops reading is cut off, with a last line.
    let mut follower = s.connect();
    follower
        .write_all(b"{\"version\": 1, \"command\": \"events\"}\n")
        .expect("write");
    s.decide_many(1000, "burst");
    s.daemon
        .wait_log("a follower fell behind and was cut off", 1);
    let mut all = String::new();
    follower.read_to_string(&mut all).expect("read to the end");
    let last = all.lines().last().expect("lines");
    let last: Value = serde_json::from_str(last).expect("JSON");
    assert!(error_of(&last).starts_with("cut off"), "{last}");
    drop(follower);
    s.check("a follower that fell behind");

    // Another user: one error line, one WARNING however often it asks.
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(&s.socket, fs::Permissions::from_mode(0o666)).expect("chmod");
        for _ in 0..3 {
            let out = Command::new(env!("CARGO_BIN_EXE_kvmd"))
                .args(["status", "--control-socket"])
                .arg(&s.socket)
                .uid(65534)
                .gid(65534)
                .output()
                .expect("run as nobody");
            // LSB: 4, not allowed to ask.
            assert_eq!(out.status.code(), Some(4));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("permission denied"), "{err}");
        }
        fs::set_permissions(&s.socket, fs::Permissions::from_mode(0o600)).expect("chmod");
        let line = s.daemon.assert_logged_once("refused a client of uid 65534");
        assert!(line.contains(" WARNING "), "{line}");
        s.check("another user");
    }
}
