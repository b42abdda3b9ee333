//! Issue #17's review: the command-line client never waits for ever. A
//! Ganeti hook and systemd's `ExecStop` at node shutdown run it, and
//! something at the control socket's path that takes the connection and
//! says nothing (a hung daemon, or not kvmd at all), or that never even
//! accepts it, must cost them a bounded wait, a clear message and a
//! non-zero exit. QEMU is not involved: the peer is a real unix socket
//! played by the test, as only a test can make one that misbehaves so.
//!
//! Each case takes the client's own bound (10 s for an answer), so the
//! cases run side by side.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cli::kvmd;
use common::{tmpfs_dir, wait_until};
use serde_json::json;

/// The client's bound on an answer (`client::ANSWER_WITHIN`).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How far past its bound a client may be seen to end (a loaded
/// machine, the process's start and exit).
const SLACK: Duration = Duration::from_secs(10);

/// A peer at `path` that takes every connection and never says a word;
/// it holds them open (and reads nothing) while the test runs.
fn silent_peer(path: &Path) -> Arc<Mutex<Vec<UnixStream>>> {
    let listener = UnixListener::bind(path).expect("bind");
    let held = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            sink.lock().expect("lock").push(stream);
        }
    });
    held
}

/// A command running in the background, in a process group of its own:
/// killed with everything it started if the test fails first (a client
/// that hangs is what a failure here looks like).
struct Running {
    child: Option<Child>,
    started: Instant,
}

impl Running {
    fn start(command: &mut Command) -> Running {
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run it");
        Running {
            child: Some(child),
            started: Instant::now(),
        }
    }

    /// Waits (with the suite's deadline) for it to end; its output and how
    /// long it ran.
    fn finish(mut self) -> (Output, Duration) {
        let child = self.child.as_mut().expect("running");
        wait_until("the client to give up", || child.try_wait().expect("wait"));
        let took = self.started.elapsed();
        let child = self.child.take().expect("running");
        (child.wait_with_output().expect("output"), took)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Runs `kvmd ARGS` in the background.
fn spawn(args: &[&str]) -> Running {
    Running::start(kvmd().args(args))
}

fn finish(running: Running) -> (Output, Duration) {
    running.finish()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The start time of process `pid` (clock ticks since boot), as the
/// daemon reports a QEMU's.
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(") ").expect("stat's shape");
    rest.split(' ')
        .nth(19)
        .expect("field 22")
        .parse()
        .expect("a number")
}

#[test]
fn a_silent_daemon_costs_each_command_its_bound_and_an_error() {
    let work = tmpfs_dir("kvmd-client-silent");
    let socket = work.path().join("kvmd.sock");
    let held = silent_peer(&socket);
    let path = socket.to_str().expect("utf-8 path");
    let commands: [&[&str]; 5] = [
        &["status", "--control-socket", path],
        &["events", "--control-socket", path],
        &["expect-stop", "vm1", "--control-socket", path],
        &["expect-stop", "--cancel", "vm1", "--control-socket", path],
        // The powerdown's own timeout is for the guests, after kvmd said
        // which it pressed: a silent daemon gets the answer's bound.
        &[
            "powerdown-all",
            "--timeout",
            "3600",
            "--control-socket",
            path,
        ],
    ];
    let running: Vec<_> = commands.iter().map(|args| (args, spawn(args))).collect();
    for (args, child) in running {
        let (out, took) = finish(child);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "kvmd did not answer within 10 s at {path} (hung, or something else listens there)"
            )),
            "{args:?}: {err}"
        );
        assert!(
            took >= ANSWER_WITHIN - Duration::from_millis(100) && took < ANSWER_WITHIN + SLACK,
            "{args:?} took {took:?}"
        );
    }
    // Each was taken and held (the peer did accept them all).
    assert_eq!(held.lock().expect("lock").len(), commands.len());
}

#[test]
fn a_peer_that_never_accepts_costs_the_connect_its_bound() {
    let work = tmpfs_dir("kvmd-client-backlog");
    let socket = work.path().join("kvmd.sock");
    // Listening with no room in its queue, and never accepting: one
    // connection fills it, and the next connect waits for room.
    let fd = common::bound::bind_only(&socket);
    nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(0).expect("backlog"))
        .expect("listen");
    let _filler = UnixStream::connect(&socket).expect("the first connection");
    let path = socket.to_str().expect("utf-8 path");
    let (out, took) = finish(spawn(&["status", "--control-socket", path]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("kvmd did not answer within 10 s"), "{err}");
    assert!(took < ANSWER_WITHIN + SLACK, "took {took:?}");
    drop(fd);
}

/// A daemon that answers `powerdown-all` (the guests it pressed, those it
/// did not) and then says nothing more: the client waits the timeout and
/// its margin, no longer, and names every guest still running, pressed
/// or not. The test process plays the running QEMUs (it is alive; a
/// finished child is a QEMU that is gone).
#[test]
fn powerdown_all_waits_its_timeout_then_names_every_guest_still_running() {
    let work = tmpfs_dir("kvmd-client-powerdown");
    let socket = work.path().join("kvmd.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let me = std::process::id();
    let mut gone = Command::new("true").spawn().expect("true");
    let gone_pid = gone.id();
    let gone_start = start_time(gone_pid);
    gone.wait().expect("wait");
    let answer = json!({"version": 1, "powerdown": {
        "pressed": [
            {"instance": "deaf", "qemu_pid": me, "qemu_start": start_time(me)},
        ],
        "refused": [
            {"instance": "booting", "why": "kvmd is not monitoring it yet (still connecting to its QEMU); \
              try again once `kvmd status` says monitoring", "qemu_pid": null, "qemu_start": null},
            {"instance": "hung", "why": "its QEMU has not answered kvmd's last commands (hung?); \
              its power button was not pressed", "qemu_pid": me, "qemu_start": start_time(me)},
            {"instance": "down", "why": "its guest has already shut down; the SHUTDOWN that decides \
              came before", "qemu_pid": gone_pid, "qemu_start": gone_start},
        ],
    }});
    let peer = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request = String::new();
        reader.read_line(&mut request).expect("request");
        let mut stream = stream;
        writeln!(stream, "{answer}").expect("answer");
        // Then silence, the connection held open, until the client goes.
        let mut rest = String::new();
        let _ = reader.read_line(&mut rest);
        request
    });
    let path = socket.to_str().expect("utf-8 path");
    let (out, took) = finish(spawn(&[
        "powerdown-all",
        "--timeout",
        "2",
        "--control-socket",
        path,
    ]));
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    // The timeout (2 s) and the margin (5 s) for the last verdicts.
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(7) + SLACK,
        "took {took:?}"
    );
    let request: serde_json::Value =
        serde_json::from_str(&peer.join().expect("peer")).expect("a JSON request");
    assert_eq!(request["command"], "powerdown-all");
    assert!(
        stdout.contains("pressed the power button of 1 guests; 3 not pressed\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("booting: not pressed: kvmd is not monitoring it yet"),
        "{stdout}"
    );
    assert!(
        err.contains("kvmd: 1 guests still running: deaf\n"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "kvmd: not pressed and still running: hung (QEMU pid {me}; its QEMU has not answered"
        )),
        "{err}"
    );
    assert!(
        err.contains("kvmd: not pressed and still running: booting (its QEMU unknown to kvmd;"),
        "{err}"
    );
    assert!(!err.contains("down"), "its QEMU is gone: {err}");
}

/// A directory for the `kvmd` the hook finds first on PATH.
fn bin_dir(work: &Path) -> PathBuf {
    let dir = work.join("bin");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn hook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ganeti/hooks/kvmd-expect-stop")
}

/// Runs the Ganeti hook as Ganeti runs it before `gnt-instance shutdown`
/// of `vm1` on this node, with `path` first on PATH.
fn run_hook(path: &Path, limit: Option<&str>) -> (Output, Duration) {
    let fqdn = Command::new("hostname")
        .arg("--fqdn")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| {
            text(&Command::new("hostname").output().expect("hostname").stdout)
                .trim()
                .to_owned()
        });
    let mut command = Command::new(hook());
    command
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", path.display()),
        )
        .env("GANETI_HOOKS_PHASE", "pre")
        .env("GANETI_OP_CODE", "OP_INSTANCE_SHUTDOWN")
        .env("GANETI_INSTANCE_NAME", "vm1")
        .env("GANETI_INSTANCE_PRIMARY", fqdn)
        .env("GANETI_TIMEOUT", "120");
    if let Some(limit) = limit {
        command.env("KVMD_EXPECT_STOP_LIMIT", limit);
    }
    Running::start(&mut command).finish()
}

/// The Ganeti pre hook with kvmd's client at a silent daemon: it gives up
/// with the client's bound and exits 0 (a failing pre hook would cancel
/// the shutdown), saying why.
#[test]
fn the_ganeti_hook_gives_up_on_a_silent_daemon_and_lets_the_stop_go_on() {
    let work = tmpfs_dir("kvmd-client-hook");
    let socket = work.path().join("kvmd.sock");
    let _held = silent_peer(&socket);
    let bin = bin_dir(work.path());
    // kvmd as the hook finds it on PATH, asking the silent peer.
    let wrapper = bin.join("kvmd");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} \"$@\" --control-socket {}\n",
            env!("CARGO_BIN_EXE_kvmd"),
            socket.display()
        ),
    )
    .expect("write");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let (out, took) = run_hook(&bin, None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("kvmd did not answer within 10 s"), "{err}");
    assert!(
        err.contains("kvmd-expect-stop: vm1: no intent given"),
        "{err}"
    );
    assert!(took < ANSWER_WITHIN + SLACK, "took {took:?}");
}

/// The hook's own bound, for a client that hangs however it hangs (a
/// `kvmd` on PATH that is not this one, a stuck file system): killed, and
/// the stop goes on.
#[test]
fn the_ganeti_hook_bounds_a_client_that_hangs() {
    let work = tmpfs_dir("kvmd-client-hook-hang");
    let bin = bin_dir(work.path());
    let fifo = work.path().join("never");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    // Blocks in open(2) for as long as nobody opens the FIFO to write.
    let hung = bin.join("kvmd");
    fs::write(
        &hung,
        format!("#!/bin/sh\nread line < {}\n", fifo.display()),
    )
    .expect("write");
    fs::set_permissions(&hung, fs::Permissions::from_mode(0o755)).expect("chmod");
    let (out, took) = run_hook(&bin, Some("2"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("kvmd-expect-stop: vm1: kvmd did not finish within 2 s; no intent given"),
        "{err}"
    );
    assert!(took < Duration::from_secs(2) + SLACK, "took {took:?}");
}
