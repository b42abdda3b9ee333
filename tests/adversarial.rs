//! Issue #4's adversarial suite: the real daemon against hostile QMP peers
//! and hostile entries in the control directory.
//!
//! Each test function starts one daemon (without `-d`: what is asserted is
//! what an operator sees) and runs a sequence of cases on it. Before the
//! cases it takes a baseline: the daemon's open descriptors once it is up
//! and idle, and its peak resident memory. After every case a checker
//! asserts that the daemon is alive, that its descriptors come back to the
//! baseline, that its peak memory stayed under a bound, that the log is
//! still one well-formed line per message, that every line the suite
//! expects once is still there once, and that an unrelated real QEMU guest
//! powering itself off (the witness) is decided a user shutdown.
//!
//! For bad input from a peer, #4 asks: one clear log line, bounded memory,
//! the other instances unaffected, and the decision for that instance
//! still following the rule from the events that were valid. So each case
//! asserts its one expected line (exactly once: never per byte or per line
//! of a flood) and its verdict on disk. Where an invalid message would
//! change the verdict if it were read, the case makes it so: the verdict
//! then shows it was not. Cases whose right verdict is "not a user
//! shutdown" plant a stale `<instance>.shutdown` first, so its removal
//! shows.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::bound;
use common::peer::{
    self, ERROR, GREETING, HOST_QUIT, NEGOTIATION, Peer, RESET, RESUME, RETURN, RTC_CHANGE,
    STATUS_RUNNING, STOP, USER_OFF, transcript,
};
use common::{DEADLINE, Daemon, Guest, Options, World, program, qemu, wait_until};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, connect, listen, socket,
};
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

/// How much the daemon's peak resident memory may grow over the whole
/// run: generous, it is a bound, not a measurement.
const MEMORY_BOUND_KIB: u64 = 16 * 1024;

/// A pause for cases where the peer's silence is the point.
const SILENCE: Duration = Duration::from_millis(300);

/// One daemon, its world, and what the checker compares against.
struct Suite {
    world: World,
    daemon: Daemon,
    qemu: Option<PathBuf>,
    image: PathBuf,
    witnesses: usize,
    /// The daemon's descriptors at rest, before any case.
    baseline: Vec<String>,
    /// `VmHWM` (peak resident set) after start-up and a first instance.
    peak_kib: u64,
    /// Lines that must stay in the log exactly once, checked again after
    /// every later case.
    once: Vec<String>,
    /// Listeners kvmd must never connect to, checked after each witness
    /// (once it was decided, kvmd has long had the chance).
    untouched: Vec<(String, UnixListener)>,
    /// Files kvmd must leave alone.
    kept: Vec<PathBuf>,
    /// Log lines already shown by an earlier check.
    shown: usize,
}

impl Suite {
    fn start() -> Suite {
        Suite::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Suite {
        let world = World::new();
        let daemon = Daemon::start_with(&world.ctrl, world.tmp.path(), extra);
        let qemu = qemu();
        let image = world.image("witness", &[program::POWER_OFF]);
        let mut suite = Suite {
            world,
            daemon,
            qemu,
            image,
            witnesses: 0,
            baseline: Vec::new(),
            peak_kib: 0,
            once: Vec::new(),
            untouched: Vec::new(),
            kept: Vec::new(),
            shown: 0,
        };
        suite.baseline = suite.idle_descriptors();
        // A first instance, so what the first connection allocates for
        // good (buffers, the allocator's arenas) is in the memory baseline;
        // and the first check that the descriptors come back.
        suite.witness();
        suite.wait_descriptors("the first witness");
        suite.peak_kib = suite.daemon.status_kib("VmHWM");
        suite
    }

    /// The descriptors once the daemon sleeps in `epoll_wait` and two
    /// looks agree.
    fn idle_descriptors(&self) -> Vec<String> {
        wait_until("kvmd to be idle", || {
            let before = self.daemon.descriptors();
            let idle = self.daemon.is_idle() != Some(false);
            std::thread::sleep(Duration::from_millis(50));
            let after = self.daemon.descriptors();
            (idle && self.daemon.is_idle() != Some(false) && before == after).then_some(after)
        })
    }

    fn wait_descriptors(&self, case: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let now = self.daemon.descriptors();
            if now.len() == self.baseline.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {case}: kvmd holds {} descriptors, {} at rest before the cases\n\
                 now: {now:#?}\nbefore: {:#?}",
                now.len(),
                self.baseline.len(),
                self.baseline,
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The checker, after every case.
    fn check(&mut self, case: &str) {
        assert!(self.daemon.is_running(), "kvmd died in case {case}");
        self.wait_descriptors(case);
        let peak = self.daemon.status_kib("VmHWM");
        assert!(
            peak <= self.peak_kib + MEMORY_BOUND_KIB,
            "after {case}: kvmd's peak resident memory is {peak} KiB, {} KiB before the cases",
            self.peak_kib
        );
        self.assert_log_well_formed(case);
        self.witness();
        for needle in &self.once {
            let count = self.daemon.count_log(needle);
            assert_eq!(count, 1, "after {case}: {count} lines with {needle:?}");
        }
        for (what, listener) in &self.untouched {
            listener.set_nonblocking(true).expect("nonblocking");
            match listener.accept() {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Ok(_) => panic!("after {case}: kvmd connected to {what}"),
                Err(e) => panic!("accept on {what}: {e}"),
            }
        }
        for file in &self.kept {
            assert!(
                fs::symlink_metadata(file).is_ok(),
                "after {case}: {} was removed",
                file.display()
            );
        }
        // What the case made the daemon say (shown with --nocapture).
        let log = self.daemon.log_text();
        for line in log.lines().skip(self.shown) {
            let line: String = line.chars().take(300).collect();
            eprintln!("  | {line}");
        }
        self.shown = log.lines().count();
        eprintln!(
            "case {case}: checked ({} descriptors, peak {} KiB)",
            self.baseline.len(),
            peak
        );
    }

    /// Every line is one message of Ganeti's shape: no name or peer's
    /// bytes broke one in two or slipped raw bytes in.
    fn assert_log_well_formed(&self, case: &str) {
        let bytes = fs::read(&self.daemon.log).expect("read log");
        let text = std::str::from_utf8(&bytes)
            .unwrap_or_else(|e| panic!("after {case}: raw bytes in the log: {e}"));
        for line in text.lines() {
            let dated = line.len() > 10
                && line.as_bytes()[..4].iter().all(u8::is_ascii_digit)
                && line.as_bytes()[4] == b'-'
                && line.contains(" UTC: kvmd pid=");
            assert!(dated, "after {case}: a line that is no log line: {line:?}");
        }
    }

    /// A real QEMU guest that powers itself off must be decided a user
    /// shutdown. Without QEMU (outside CI only, see `qemu()`), a fake peer
    /// stands in.
    fn witness(&mut self) {
        self.witnesses += 1;
        let name = format!("witness-{}", self.witnesses);
        match &self.qemu {
            Some(qemu) => {
                let mut guest = Guest::start(
                    qemu,
                    &self.world.ctrl,
                    &name,
                    &self.image,
                    Options::default(),
                );
                self.daemon.wait_monitoring(&name);
                guest.cont();
                guest.wait_exit();
            }
            None => peer::serve(&self.socket(&name), &[USER_OFF]),
        }
        common::assert_user_shutdown(&self.world, &self.daemon, &name, true);
    }

    fn socket(&self, instance: &str) -> UnixListener {
        peer::listen(&self.world.ctrl.join(format!("{instance}.kvmd")))
    }

    /// Plays `script` as QEMU on a new socket for `instance`, to its end.
    fn play(&self, instance: &str, script: impl FnOnce(Peer) + Send + 'static) {
        let listener = self.socket(instance);
        peer::spawn(listener, script)
            .join()
            .unwrap_or_else(|_| panic!("the fake peer of {instance} failed"));
    }

    /// Asserts the line with `needle` is in the log once, now and after
    /// every later case.
    fn once(&mut self, needle: &str) -> String {
        let line = self.daemon.assert_logged_once(needle);
        self.once.push(needle.to_owned());
        line
    }

    /// The decision on `instance` and its shutdown file.
    fn verdict(&self, instance: &str, user: bool) -> String {
        self.verdict_at(instance, &self.world.shutdown_file(instance), user)
    }

    /// The decision logged for `label` (the escaped name) and the state of
    /// `file` (any kind of file counts as there, as for Ganeti).
    fn verdict_at(&self, label: &str, file: &Path, user: bool) -> String {
        let line = self.daemon.wait_decision(label);
        let there = fs::symlink_metadata(file).is_ok();
        if user {
            assert!(line.contains(" decided user shutdown"), "{line}");
            assert!(there, "{} missing after: {line}", file.display());
        } else {
            assert!(line.contains(" decided not a user shutdown"), "{line}");
            assert!(!there, "{} left after: {line}", file.display());
        }
        line
    }

    /// Nothing about `instance` was worth a warning or an error.
    fn assert_quiet(&self, instance: &str) {
        for level in ["WARNING", "ERROR"] {
            let needle = format!(" {level} {instance}: ");
            assert_eq!(self.daemon.count_log(&needle), 0, "{needle:?} logged");
        }
    }
}

type Case = fn(&mut Suite);

fn run(suite: &mut Suite, cases: &[(&str, Case)]) {
    for (name, case) in cases {
        eprintln!("case {name}: start");
        case(suite);
        suite.check(name);
    }
}

/// Deterministic noise: every byte value, NULs and newlines included, in
/// lines ending `\r\n` so the message after it starts a line of its own.
fn noise() -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9;
    let mut bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    bytes.extend(0..=255u8);
    bytes.extend_from_slice(b"\0\0\0\r\n");
    bytes
}

/// Sends one message a byte per write.
fn trickle(peer: &mut Peer, message: &str) {
    for byte in transcript(&[message]) {
        peer.send(&[byte]);
    }
}

// ---- hostile bytes from a peer ----

/// 1. Binary noise, NULs included, before the greeting and between the
///    events; then the guest powers off.
fn garbage(s: &mut Suite) {
    s.play("garbage", |mut peer| {
        peer.send(&noise());
        peer.negotiate();
        peer.send(&noise());
        peer.send_line(USER_OFF);
    });
    let line = s.verdict("garbage", true);
    assert!(line.contains(" unusable messages"), "{line}");
    s.once("WARNING garbage: ignored a malformed message");
}

/// 2. Invalid UTF-8 inside a host `quit` SHUTDOWN: if it were read, that
///    first SHUTDOWN would make the verdict "not user".
fn invalid_utf8(s: &mut Suite) {
    s.play("utf8", |mut peer| {
        peer.negotiate();
        peer.send(b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-\xff\xfe-quit\"}}\r\n");
        peer.send_line(USER_OFF);
    });
    s.verdict("utf8", true);
    let line = s.once("WARNING utf8: ignored a malformed message");
    assert!(line.contains("host-\\xff\\xfe-quit"), "not escaped: {line}");
}

/// 3. Invalid JSON: a host SHUTDOWN cut short, a POWERDOWN with a
///    trailing comma; either, if read, would make it "not user".
fn invalid_json(s: &mut Suite) {
    s.play("json", |mut peer| {
        peer.negotiate();
        peer.send_line(
            "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}",
        );
        peer.send_line("{\"event\": \"POWERDOWN\",}");
        peer.send_line(USER_OFF);
    });
    let line = s.verdict("json", true);
    assert!(line.contains("; 2 unusable messages"), "{line}");
    s.once("WARNING json: ignored a malformed message");
}

/// 4. JSON that is no object.
fn not_an_object(s: &mut Suite) {
    s.play("scalar", |mut peer| {
        peer.negotiate();
        for message in ["[1,2]", "\"x\"", "42", "[{\"event\": \"POWERDOWN\"}]"] {
            peer.send_line(message);
        }
        peer.send_line(USER_OFF);
    });
    let line = s.verdict("scalar", true);
    assert!(line.contains("; 4 unusable messages"), "{line}");
    s.once("WARNING scalar: ignored a malformed message");
}

/// 8. A POWERDOWN padded to 8 MB with no newline, then `\r\n`: dropped
///    (if it were read, "not user"), in bounded memory.
fn oversized(s: &mut Suite) {
    const MIB: usize = 1024 * 1024;
    s.play("oversized", |mut peer| {
        peer.negotiate();
        peer.send(b"{\"event\": \"POWERDOWN\", \"data\": {\"pad\": \"");
        let chunk = vec![b'x'; MIB];
        for _ in 0..8 {
            peer.send(&chunk);
        }
        peer.send(b"\"}}\r\n");
        peer.send_line(USER_OFF);
    });
    s.verdict("oversized", true);
    s.once("WARNING oversized: dropped a message longer than 65536 bytes");
    // Holding the line would have taken 8 MiB.
    let peak = s.daemon.status_kib("VmHWM");
    assert!(
        peak < s.peak_kib + 4 * 1024,
        "peak resident memory {peak} KiB, {} KiB before the cases",
        s.peak_kib
    );
}

/// 9. A whole conversation one byte per write.
fn byte_per_write(s: &mut Suite) {
    s.play("trickle", |mut peer| {
        trickle(&mut peer, GREETING);
        peer.expect_command("qmp_capabilities");
        trickle(&mut peer, RETURN);
        peer.expect_command("query-status");
        trickle(&mut peer, STATUS_RUNNING);
        trickle(&mut peer, RESET);
        trickle(&mut peer, USER_OFF);
    });
    let line = s.verdict("trickle", true);
    assert!(line.contains(" RESET=1"), "{line}");
    s.assert_quiet("trickle");
}

/// 10. The whole conversation and 10000 events in one write.
fn many_per_write(s: &mut Suite) {
    s.play("batch", |mut peer| {
        let mut messages = NEGOTIATION.to_vec();
        messages.extend(std::iter::repeat_n(RTC_CHANGE, 10_000));
        messages.push(USER_OFF);
        peer.send(&transcript(&messages));
    });
    s.verdict("batch", true);
    s.assert_quiet("batch");
}

/// 11. SHUTDOWNs whose fields have the wrong types are no evidence: with
///     no valid SHUTDOWN the guest ended without one.
fn wrong_types(s: &mut Suite) {
    s.world.plant_stale("types");
    s.play("types", |mut peer| {
        peer.negotiate();
        peer.send_line(
            "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": \"yes\", \"reason\": \"guest-shutdown\"}}",
        );
        peer.send_line("{\"event\": \"SHUTDOWN\", \"data\": []}");
    });
    let line = s.verdict("types", false);
    assert!(line.contains("[no SHUTDOWN; events: none"), "{line}");
    assert!(line.contains("; 2 unusable messages"), "{line}");
    s.once(
        "WARNING types: ignored a malformed message (invalid type: string \"yes\", expected a boolean",
    );
}

#[test]
fn hostile_bytes_from_a_peer() {
    let mut suite = Suite::start();
    run(
        &mut suite,
        &[
            ("1 garbage", garbage),
            ("2 invalid UTF-8", invalid_utf8),
            ("3 invalid JSON", invalid_json),
            ("4 not an object", not_an_object),
            ("8 an 8 MB line", oversized),
            ("9 a byte per write", byte_per_write),
            ("10 many messages per write", many_per_write),
            ("11 wrong field types", wrong_types),
        ],
    );
}

// ---- peers that break the conversation ----

/// 5. A peer that accepts and never greets, then hangs up.
fn no_greeting(s: &mut Suite) {
    s.world.plant_stale("silent");
    let listener = s.socket("silent");
    let peer = Peer::accept(&listener);
    // kvmd holds the connection: one descriptor more than at rest.
    let holding = s.baseline.len() + 1;
    wait_until("kvmd to hold the connection", || {
        (s.daemon.descriptors().len() == holding).then_some(())
    });
    std::thread::sleep(SILENCE);
    peer.hang_up();
    let line = s.verdict("silent", false);
    assert!(
        line.contains("the connection ended before QMP negotiation"),
        "{line}"
    );
    s.once(" silent: ");
}

/// 6. A greeting, then no reply to `qmp_capabilities`, then a hang-up.
fn no_return(s: &mut Suite) {
    s.world.plant_stale("mute");
    s.play("mute", |mut peer| {
        peer.send_line(GREETING);
        peer.expect_command("qmp_capabilities");
        std::thread::sleep(SILENCE);
    });
    let line = s.verdict("mute", false);
    assert!(
        line.contains("the connection ended before QMP negotiation"),
        "{line}"
    );
    s.once(" mute: ");
}

/// 7. QEMU refuses `qmp_capabilities`, then the guest powers off. The
///    daemon takes a refusal as the end of negotiation and goes on
///    listening; the SHUTDOWN is valid, the rule has nothing against it
///    (no POWERDOWN, no pause seen), so it is a user shutdown.
fn refused(s: &mut Suite) {
    s.play("refused", |mut peer| {
        peer.send_line(GREETING);
        peer.expect_command("qmp_capabilities");
        peer.send_line(ERROR);
        peer.send_line(USER_OFF);
    });
    let line = s.verdict("refused", true);
    assert!(line.contains("; never negotiated"), "{line}");
    let warning = s.once("WARNING refused: QEMU refused qmp_capabilities: ");
    assert!(warning.contains("CommandNotFound"), "{warning}");
    s.once("refused: monitoring (QEMU 7.2.0, guest state unknown)");
}

/// 12. A peer that never reads kvmd's commands after the greeting, yet
///     answers them and sends events.
fn deaf(s: &mut Suite) {
    s.play("deaf", |mut peer| {
        for message in NEGOTIATION {
            peer.send_line(message);
        }
        for event in [STOP, RESUME, RESET, USER_OFF] {
            peer.send_line(event);
        }
    });
    let line = s.verdict("deaf", true);
    assert!(line.contains(" RESET=1 STOP=1 RESUME=1"), "{line}");
    s.assert_quiet("deaf");
}

/// 13. A peer that accepts and closes at once.
fn abrupt(s: &mut Suite) {
    s.world.plant_stale("abrupt");
    s.play("abrupt", Peer::hang_up);
    let line = s.verdict("abrupt", false);
    assert!(
        line.contains("the connection ended before QMP negotiation"),
        "{line}"
    );
    s.once(" abrupt: ");
}

#[test]
fn peers_that_break_the_conversation() {
    let mut suite = Suite::start();
    run(
        &mut suite,
        &[
            ("5 no greeting", no_greeting),
            ("6 no return", no_return),
            ("7 capabilities refused", refused),
            ("12 a peer that stops reading", deaf),
            ("13 accepted and closed", abrupt),
        ],
    );
}

// ---- hostile entries in the control directory ----

/// 14. `*.kvmd` entries that are no sockets, among them a symlink to a
///     listening socket outside the control directory.
fn not_sockets(s: &mut Suite) {
    let elsewhere = s.world.tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let target = elsewhere.join("qemu.sock");
    let outside = peer::listen(&target);
    s.untouched
        .push(("a socket outside, behind a symlink".into(), outside));
    let ctrl = &s.world.ctrl;
    fs::write(ctrl.join("file.kvmd"), b"").expect("write");
    fs::create_dir(ctrl.join("dir.kvmd")).expect("mkdir");
    mkfifo(&ctrl.join("fifo.kvmd"), Mode::from_bits_truncate(0o600)).expect("mkfifo");
    std::os::unix::fs::symlink(&target, ctrl.join("link.kvmd")).expect("symlink");
    for name in ["file", "dir", "fifo", "link"] {
        s.once(&format!(
            "WARNING {name}: {name}.kvmd is not a socket; ignored"
        ));
    }
}

/// 15. A socket another user owns: never connected to, its shutdown file
///     left alone.
fn untrusted(s: &mut Suite) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to give a socket to another user");
        return;
    }
    s.world.plant_stale("untrusted");
    s.kept.push(s.world.shutdown_file("untrusted"));
    // Made outside and moved in: kvmd must not see it before the chown.
    let staging = s.world.tmp.path().join("staging-untrusted");
    fs::create_dir(&staging).expect("mkdir");
    let path = staging.join("untrusted.kvmd");
    let listener = peer::listen(&path);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
    fs::rename(&path, s.world.ctrl.join("untrusted.kvmd")).expect("move in");
    s.untouched.push(("another user's socket".into(), listener));
    s.once(
        "WARNING untrusted: untrusted.kvmd is owned by uid 65534, whom kvmd does not trust; ignored",
    );
}

/// 16. Names with a space, a newline, bytes that are no UTF-8: decided
///     right, shown escaped on one line, the shutdown file named exactly.
fn hostile_names(s: &mut Suite) {
    let cases: [(&[u8], &str, bool); 3] = [
        (b"a b", "a b", true),
        (b"new\nline", "new\\nline", false),
        (b"vm\xff\xfe", "vm\\xff\\xfe", true),
    ];
    let ctrl = s.world.ctrl.clone();
    let raw = |stem: &[u8], suffix: &str| {
        let mut name = stem.to_vec();
        name.extend_from_slice(suffix.as_bytes());
        ctrl.join(OsStr::from_bytes(&name))
    };
    let peers: Vec<_> = cases
        .iter()
        .map(|&(stem, _, user)| {
            if !user {
                fs::write(raw(stem, ".shutdown"), b"").expect("plant stale");
            }
            let listener = peer::listen(&raw(stem, ".kvmd"));
            let last = if user { USER_OFF } else { HOST_QUIT };
            std::thread::spawn(move || peer::serve(&listener, &[last]))
        })
        .collect();
    for peer in peers {
        peer.join().expect("peer");
    }
    for (stem, label, user) in cases {
        s.verdict_at(label, &raw(stem, ".shutdown"), user);
        s.once(&format!(" {label}: decided "));
        // Not under an escaped or mangled name.
        let escaped = s.world.ctrl.join(format!("{label}.shutdown"));
        assert!(label == "a b" || !escaped.exists(), "{}", escaped.display());
    }
}

/// 17. `<instance>.shutdown` is a symlink to a file outside: never
///     followed, whichever the verdict.
fn shutdown_symlink(s: &mut Suite) {
    let victims = [("link-user", true), ("link-not", false)].map(|(name, user)| {
        let victim = s.world.tmp.path().join(format!("victim-{name}"));
        fs::write(&victim, b"precious\n").expect("write");
        std::os::unix::fs::symlink(&victim, s.world.shutdown_file(name)).expect("symlink");
        let listener = s.socket(name);
        let last = if user { USER_OFF } else { HOST_QUIT };
        let peer = std::thread::spawn(move || peer::serve(&listener, &[last]));
        (name, user, victim, peer)
    });
    for (name, user, victim, peer) in victims {
        peer.join().expect("peer");
        let line = s.verdict(name, user);
        let file = s.world.shutdown_file(name);
        if user {
            assert!(
                line.contains("a symlink stood there; replaced by a file"),
                "{line}"
            );
            let meta = fs::symlink_metadata(&file).expect("stat");
            assert!(meta.file_type().is_file(), "{meta:?}");
        } else {
            assert!(line.ends_with(": removed"), "{line}");
        }
        assert_eq!(fs::read(&victim).expect("victim"), b"precious\n");
        s.once(&format!(" {name}: decided "));
    }
}

/// 18. `<instance>.shutdown` is a fifo: kept for a user shutdown (Ganeti
///     only asks whether it exists), removed otherwise, never opened.
fn shutdown_fifo(s: &mut Suite) {
    let peers = [("fifo-user", true), ("fifo-not", false)].map(|(name, user)| {
        mkfifo(
            &s.world.shutdown_file(name),
            Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        let listener = s.socket(name);
        let last = if user { USER_OFF } else { HOST_QUIT };
        let peer = std::thread::spawn(move || peer::serve(&listener, &[last]));
        (name, user, peer)
    });
    for (name, user, peer) in peers {
        peer.join().expect("peer");
        let line = s.verdict(name, user);
        if user {
            assert!(line.ends_with(": already there"), "{line}");
            let meta = fs::symlink_metadata(s.world.shutdown_file(name)).expect("stat");
            assert!(meta.file_type().is_fifo(), "{meta:?}");
        } else {
            assert!(line.ends_with(": removed"), "{line}");
        }
        s.once(&format!(" {name}: decided "));
    }
}

#[test]
fn hostile_entries_in_the_control_directory() {
    let mut suite = Suite::start();
    run(
        &mut suite,
        &[
            ("14 entries that are no sockets", not_sockets),
            ("15 another user's socket", untrusted),
            ("16 hostile names", hostile_names),
            ("17 shutdown file a symlink", shutdown_symlink),
            ("18 shutdown file a fifo", shutdown_fifo),
        ],
    );
}

// ---- connects that never succeed ----

/// 19. A socket bound and never listening (refused), and one whose
///     backlog is full (a non-blocking connect gets EAGAIN): retried with
///     back-off for about 30 s, then given up with one line; nothing
///     decided. The refused name, recreated, is monitored afresh.
#[test]
fn connects_that_never_succeed_are_given_up_then_started_over() {
    // -d: the retries are debug lines, and their number is asserted.
    let mut s = Suite::start_with(&["-d"]);
    s.world.plant_stale("refused");
    s.world.plant_stale("pending");
    let ctrl = s.world.ctrl.clone();
    let began = Instant::now();
    let refused = bound::bind_only(&ctrl.join("refused.kvmd"));

    // Backlog 0 with one client queued: the next connect finds it full.
    // Made outside and moved in, so kvmd cannot be that first client.
    let staging = s.world.tmp.path().join("staging-pending");
    fs::create_dir(&staging).expect("mkdir");
    let path = staging.join("pending.kvmd");
    let fd = bound::bind_only(&path);
    listen(&fd, Backlog::new(0).expect("backlog")).expect("listen");
    let pending = UnixListener::from(fd);
    let blocker = UnixStream::connect(&path).expect("the first client");
    assert_eq!(
        connect_nonblocking(&path),
        Err(Errno::EAGAIN),
        "a backlog of 0 has room for a second client"
    );
    fs::rename(&path, ctrl.join("pending.kvmd")).expect("move in");

    // Others are served meanwhile.
    s.witness();

    let refused_line = s.once("refused: not monitored");
    let pending_line = s.once("pending: not monitored");
    eprintln!("given up after {:?}", began.elapsed());
    assert!(
        refused_line.contains(
            "WARNING refused: not monitored: cannot connect to its QMP socket: Connection refused"
        ),
        "{refused_line}"
    );
    assert!(
        pending_line.contains(
            "WARNING pending: not monitored: cannot connect to its QMP socket: Resource temporarily unavailable"
        ),
        "{pending_line}"
    );
    // Bounded: the back-off reaches 1 s, so about 35 tries in 30 s.
    for name in ["refused", "pending"] {
        let tries = s.daemon.count_log(&format!(" {name}: connect: "));
        assert!((5..=60).contains(&tries), "{name}: {tries} tries");
    }
    // Nothing was decided for either.
    assert!(s.world.shutdown_file("refused").exists());
    assert!(s.world.shutdown_file("pending").exists());
    let decided = s.daemon.count_log(" decided ");
    assert_eq!(decided, s.witnesses, "only the witnesses were decided");
    // The only client the full socket ever queued is the blocker.
    pending.set_nonblocking(true).expect("nonblocking");
    let (_first, _) = pending.accept().expect("the blocker's connection");
    assert!(
        matches!(pending.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "kvmd got through a full backlog"
    );
    drop(blocker);
    s.check("19 connects that never succeed");

    // The same name recreated, now listening: a new inotify event, a new
    // start.
    drop(refused);
    fs::remove_file(ctrl.join("refused.kvmd")).expect("unlink");
    let listener = s.socket("refused");
    peer::serve(&listener, &[HOST_QUIT]);
    let line = s.verdict("refused", false);
    assert!(
        line.contains("the host shut it down (host-qmp-quit)"),
        "{line}"
    );
    s.check("19 the refused name recreated");
}

/// A non-blocking connect, as kvmd makes it.
fn connect_nonblocking(path: &Path) -> Result<(), Errno> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)
}

// ---- found by this suite (fixed in qmp.rs: payloads must be objects) ----

/// A SHUTDOWN whose `data` is a JSON array holding the right values in
/// the right order. QMP's `data` is an object; an array is a wrong type,
/// so the event is no evidence, as for case 11: one warning, and with no
/// valid SHUTDOWN the verdict is "not a user shutdown".
#[test]
fn a_shutdown_whose_data_is_an_array_is_no_evidence() {
    let mut s = Suite::start();
    s.world.plant_stale("array");
    s.play("array", |mut peer| {
        peer.negotiate();
        peer.send_line("{\"event\": \"SHUTDOWN\", \"data\": [true, \"guest-shutdown\"]}");
    });
    let line = s.verdict("array", false);
    assert!(line.contains("[no SHUTDOWN; events: none"), "{line}");
    assert!(line.contains("; 1 unusable messages"), "{line}");
    s.once("WARNING array: ignored a malformed message");
    s.check("a SHUTDOWN whose data is an array");
}
