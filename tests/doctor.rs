//! Issue #19, `kvmd doctor`, without Ganeti: the built binary against the
//! real daemon, real QEMU guests (boot sectors under TCG), real sockets
//! and real files, each case made real rather than described. A case's
//! finding is read from `--json` (the document the man page promises)
//! and checked against the text report and the exit status.
//!
//! The Ganeti cases (ssconf, hypervisor parameters, the original daemon)
//! run against a real cluster in tests/cluster.rs; here Ganeti's mode is
//! only fed a made-up ssconf directory.
//!
//! Cases that need root (QEMU as another user, user namespaces, files of
//! root's read by another user) are skipped without it, and fail under
//! `CI=true`, as the rest of the suite does.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Daemon, Guest, Options, World, program, qemu, wait_until};
use nix::sys::signal::Signal;
use serde_json::Value;

/// What one run of `kvmd doctor` gave.
struct Run {
    code: i32,
    text: String,
    json: Value,
}

impl Run {
    /// The one finding of `check` about `instance`.
    fn finding(&self, check: &str, instance: Option<&str>) -> &Value {
        let all: Vec<&Value> = self.findings(check, instance);
        assert_eq!(all.len(), 1, "{check} {instance:?} in:\n{}", self.text);
        all[0]
    }

    fn findings(&self, check: &str, instance: Option<&str>) -> Vec<&Value> {
        self.json["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["check"] == check && f["instance"].as_str() == instance)
            .collect()
    }

    /// Asserts the finding's severity and that its summary or advice says
    /// `says`.
    fn assert(&self, check: &str, instance: Option<&str>, severity: &str, says: &str) {
        let f = self.finding(check, instance);
        let said = format!("{} {}", f["summary"], f["advice"]);
        assert_eq!(f["severity"], severity, "{f}\n{}", self.text);
        assert!(said.contains(says), "{says:?} not in {f}\n{}", self.text);
    }
}

/// Runs `kvmd doctor ARGS` (text, then `--json`) under `wrapper` (a
/// command it is the argument of, or nothing). Each run must end: a hung
/// doctor fails the test at the suite's deadline.
fn doctor_wrapped(wrapper: &[&str], args: &[&OsStr]) -> Run {
    let once = |json: bool| {
        let out = tempfile::tempfile().expect("a file for its output");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_kvmd"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_kvmd")),
        };
        command.arg("doctor").args(args);
        if json {
            command.arg("--json");
        }
        let mut child: Child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run kvmd doctor");
        let status = wait_until("kvmd doctor to finish", || child.try_wait().expect("wait"));
        let mut out = out;
        let mut text = String::new();
        std::io::Seek::rewind(&mut out).expect("rewind");
        std::io::Read::read_to_string(&mut out, &mut text).expect("read its output");
        (status.code().unwrap_or(-1), text)
    };
    let (code, text) = once(false);
    let (json_code, json_text) = once(true);
    let json: Value = serde_json::from_str(&json_text)
        .unwrap_or_else(|e| panic!("--json is not JSON ({e}):\n{json_text}"));
    // One document, one report: the same status, one text line a finding,
    // and nothing in a line that a terminal would act on.
    assert_eq!(
        code, json_code,
        "text and --json disagree:\n{text}\n{json_text}"
    );
    assert_eq!(json["version"], 1);
    assert_eq!(json["exit_code"], code);
    let findings = json["findings"].as_array().expect("findings").len();
    assert_eq!(text.lines().count(), findings + 2, "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "a control character in:\n{text:?}"
    );
    let want = match json["status"].as_str() {
        Some("ok") => 0,
        Some("fail") => 1,
        Some("warn") => 3,
        other => panic!("status {other:?}"),
    };
    assert_eq!(code, want, "{text}");
    Run { code, text, json }
}

fn doctor(args: &[&OsStr]) -> Run {
    doctor_wrapped(&[], args)
}

/// The flags of a standalone daemon in `world`, for the doctor.
fn flags(world: &World) -> Vec<std::ffi::OsString> {
    let tmp = world.tmp.path();
    vec![
        "--no-ssconf".into(),
        "--ctrl-dir".into(),
        world.ctrl.clone().into(),
        "--pid-file".into(),
        tmp.join("kvmd.pid").into(),
    ]
}

fn with<'a>(flags: &'a [std::ffi::OsString], more: &'a [&'a str]) -> Vec<&'a OsStr> {
    flags
        .iter()
        .map(|f| f.as_os_str())
        .chain(more.iter().map(OsStr::new))
        .collect()
}

/// A world on tmpfs, as a node's /run is.
fn tmpfs_world() -> World {
    let tmp = common::tmpfs_dir("kvmd-doctor");
    let ctrl = tmp.path().join("ctrl");
    fs::create_dir(&ctrl).expect("mkdir ctrl");
    World { tmp, ctrl }
}

/// A QEMU started with `args` besides a boot sector that halts: the kinds
/// of command line the doctor must read (with or without `-name`, a
/// kvmd socket or none), under `wrapper` (`setpriv` for another user).
struct Qemu(Child);

impl Qemu {
    fn start(qemu: &Path, image: &Path, wrapper: &[&str], args: &[String]) -> Qemu {
        let (program, rest): (&OsStr, Vec<&OsStr>) = match wrapper.split_first() {
            Some((first, rest)) => (
                OsStr::new(first),
                rest.iter()
                    .map(OsStr::new)
                    .chain([qemu.as_os_str()])
                    .collect(),
            ),
            None => (qemu.as_os_str(), Vec::new()),
        };
        let child = Command::new(program)
            .args(rest)
            .args([
                "-machine",
                "pc,accel=tcg",
                "-nodefaults",
                "-display",
                "none",
            ])
            .args(["-m", "16", "-no-user-config", "-drive"])
            .arg(format!("file={},format=raw,if=ide", image.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start qemu");
        Qemu(child)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tests of this file one at a time: the doctor looks at every QEMU
/// of the machine, and one test's odd guests are another's findings.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    common::skip("needs root");
    false
}

#[test]
fn a_standalone_node_all_ok_then_kvmd_not_running() {
    let _serial = serial();
    let Some(qemu) = qemu() else { return };
    let world = tmpfs_world();
    let metrics = world.tmp.path().join("kvmd.prom");
    let daemon = Daemon::start_with(
        &world.ctrl,
        world.tmp.path(),
        &["--metrics-file", metrics.to_str().expect("utf-8")],
    );
    let image = world.image("vm1", &[program::HALT]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm1", &image, Options::default());
    daemon.wait_monitoring("vm1");
    guest.cont();
    let flags = flags(&world);

    // All ok: kvmd runs and monitors the one guest; the metrics file is
    // the running daemon's (taken from its command line: not given here).
    let run = doctor(&with(&flags, &[]));
    assert_eq!(run.code, 0, "{}", run.text);
    run.assert("daemon.running", None, "ok", "is running");
    run.assert("instance.coverage", Some("vm1"), "ok", "monitored by kvmd");
    run.assert("ctrl-dir.filesystem", None, "ok", "on tmpfs");
    run.assert("metrics.file", None, "ok", "the running kvmd's");
    run.assert("inotify.watches", None, "ok", "kvmd has the");

    // The verdict and its reason, after the guest is gone.
    guest.quit();
    daemon.wait_decision("vm1");
    let run = doctor(&with(&flags, &["vm1"]));
    run.assert(
        "instance.verdict",
        Some("vm1"),
        "ok",
        "not user (host-quit)",
    );

    // kvmd not running: said so, with how to start it; the metrics file
    // it left is stale; a guest running meanwhile is not covered.
    let image = world.image("vm2", &[program::HALT]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm2", &image, Options::default());
    daemon.wait_monitoring("vm2");
    let mut daemon = daemon;
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit();
    let metrics_flag = ["--metrics-file", metrics.to_str().expect("utf-8")];
    let run = doctor(&with(&flags, &metrics_flag));
    assert_eq!(run.code, 1, "{}", run.text);
    run.assert("daemon.running", None, "fail", "kvmd is not running");
    run.assert("daemon.running", None, "fail", "start it: kvmd --no-ssconf");
    run.assert(
        "instance.coverage",
        Some("vm2"),
        "fail",
        "kvmd is not running",
    );
    run.assert("metrics.file", None, "warn", "no longer running");
    guest.quit();
}

#[test]
fn what_kvmd_does_not_cover() {
    let _serial = serial();
    let Some(qemu) = qemu() else { return };
    if !root() {
        return;
    }
    let world = tmpfs_world();
    // QEMU as another user needs to write in the control directory: its
    // group may, as the doctor's own check would have it (anyone may not).
    fs::set_permissions(world.tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    nix::unistd::chown(&world.ctrl, None, Some(65534.into())).expect("chgrp");
    fs::set_permissions(&world.ctrl, fs::Permissions::from_mode(0o1770)).expect("chmod");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let ctrl = world.ctrl.display().to_string();

    // A QEMU started without a socket for kvmd (as before user shutdown
    // was enabled): restart it to be covered.
    let image = world.image("nosocket", &[program::HALT]);
    let _nosocket = Qemu::start(&qemu, &image, &[], &["-name".into(), "nosocket".into()]);
    // A socket with no QEMU behind it (a QEMU killed with SIGKILL leaves
    // one so): nobody listens.
    let _orphan = common::bound::bind_only(&world.ctrl.join("orphan.kvmd"));
    // A QEMU run as another user, whose socket kvmd does not trust.
    let image = world.image("other", &[program::HALT]);
    nix::unistd::chown(&image, Some(65534.into()), None).expect("chown");
    let setpriv = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let socket = format!("unix:{ctrl}/other.kvmd,server=on,wait=off");
    let _other = Qemu::start(
        &qemu,
        &image,
        &setpriv,
        &["-name".into(), "other".into(), "-qmp".into(), socket],
    );
    daemon.wait_log("other.kvmd is owned by uid 65534", 1);
    // A QEMU whose socket is in another directory than kvmd's.
    let elsewhere = world.tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let image = world.image("astray", &[program::HALT]);
    let socket = format!(
        "unix:{}/astray.kvmd,server=on,wait=off",
        elsewhere.display()
    );
    let _astray = Qemu::start(
        &qemu,
        &image,
        &[],
        &["-name".into(), "astray".into(), "-qmp".into(), socket],
    );
    wait_until("astray's socket", || {
        elsewhere.join("astray.kvmd").exists().then_some(())
    });
    // A monitored guest with a stale shutdown file beside it.
    let image = world.image("stale", &[program::HALT]);
    let _stale = Guest::start(&qemu, &world.ctrl, "stale", &image, Options::default());
    daemon.wait_monitoring("stale");
    fs::write(world.ctrl.join("stale.shutdown"), b"").expect("plant");

    let run = doctor(&with(&flags(&world), &[]));
    assert_eq!(run.code, 1, "{}", run.text);
    run.assert(
        "instance.coverage",
        Some("nosocket"),
        "fail",
        "restart the guest to be covered",
    );
    run.assert(
        "instance.coverage",
        Some("orphan"),
        "warn",
        "nobody listens on it",
    );
    run.assert(
        "instance.coverage",
        Some("other"),
        "fail",
        "--socket-owner 65534",
    );
    run.assert("instance.coverage", Some("astray"), "fail", "outside");
    run.assert(
        "instance.coverage",
        Some("stale"),
        "ok",
        "monitored by kvmd",
    );
    run.assert(
        "instance.shutdown-file",
        Some("stale"),
        "warn",
        "exists while its QEMU runs",
    );
    run.assert("ctrl-dir.owner", None, "ok", "mode 1770");
    // Asked about one instance: the node's findings and that one's only.
    let run = doctor(&with(&flags(&world), &["nosocket"]));
    assert!(
        run.findings("instance.coverage", Some("orphan")).is_empty(),
        "{}",
        run.text
    );
    run.assert(
        "instance.coverage",
        Some("nosocket"),
        "fail",
        "without a QMP socket for kvmd",
    );
}

#[test]
fn a_control_directory_on_disk_and_an_unsafe_hook() {
    let _serial = serial();
    if !root() {
        return;
    }
    // World's directory is under /tmp: a disk on this machine and most.
    let world = World::new();
    let on_tmpfs = nix::sys::statfs::statfs(&world.ctrl)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    let hooks = PathBuf::from(format!("/run/kvmd-doctor-test-{}", std::process::id()));
    let _ = fs::remove_dir_all(&hooks);
    fs::create_dir(&hooks).expect("mkdir");
    let _cleanup = Cleanup(hooks.clone());
    fs::set_permissions(&hooks, fs::Permissions::from_mode(0o755)).expect("chmod");
    let hook = hooks.join("hook");
    fs::write(&hook, "#!/bin/sh\nexit 0\n").expect("write");
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).expect("chmod");
    let hook_arg = hook.to_str().expect("utf-8");
    // /run is root's and not writable by others on a sane machine: the
    // daemon's own check is the judge, the doctor's must agree with it.
    let daemon = Daemon::start_with(&world.ctrl, world.tmp.path(), &["--on-verdict", hook_arg]);

    let run = doctor(&with(&flags(&world), &[]));
    if on_tmpfs {
        eprintln!(
            "{} is on tmpfs: the disk case is not made here",
            world.ctrl.display()
        );
    } else {
        run.assert("ctrl-dir.filesystem", None, "warn", "outlive a reboot");
    }
    // Taken from the running daemon's command line, and as safe as it was.
    run.assert(
        "hooks.program",
        None,
        "ok",
        "the running kvmd's --on-verdict",
    );

    // Made writable by others since kvmd started: it would refuse now.
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o757)).expect("chmod");
    let run = doctor(&with(&flags(&world), &[]));
    assert_eq!(run.code, 1, "{}", run.text);
    run.assert("hooks.program", None, "fail", "writable by group or others");
    run.assert(
        "hooks.program",
        None,
        "fail",
        "kvmd refuses to start with it",
    );
    // Given on the doctor's command line: the same checks.
    let run = doctor(&with(&flags(&world), &["--on-verdict", "relative/hook"]));
    run.assert("hooks.program", None, "fail", "must be an absolute path");
    drop(daemon);
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn too_few_inotify_watches() {
    let _serial = serial();
    let Some(qemu) = qemu() else { return };
    if !root() {
        return;
    }
    let world = tmpfs_world();
    let flags = flags(&world);
    // kvmd needs one watch per directory from / down to its control
    // directory. The limit is set in a user namespace of the doctor's own
    // (there, root may set it): the host's sysctl is not touched.
    let needed = world.ctrl.components().count();
    let limited = |limit: usize| {
        let script =
            format!("echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"");
        doctor_wrapped(
            &["unshare", "--user", "--map-root-user", "sh", "-c", &script],
            &with(&flags, &[]),
        )
    };
    let run = limited(needed - 1);
    assert_eq!(run.code, 1, "{}", run.text);
    run.assert(
        "inotify.watches",
        None,
        "fail",
        &format!(
            "may have {} inotify watches, and kvmd needs {needed}",
            needed - 1
        ),
    );
    let run = limited(needed + 100);
    run.assert(
        "inotify.watches",
        None,
        "ok",
        &format!("kvmd needs {needed}"),
    );

    // kvmd itself short of watches (one short, in its own namespace): it
    // rescans, and the doctor asks it rather than counting.
    let script = format!(
        "echo {} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"",
        needed - 1
    );
    let wrapper = ["unshare", "--user", "--map-root-user", "sh", "-c", &script];
    let daemon = Daemon::start_wrapped(&world.ctrl, world.tmp.path(), &wrapper, &["-d"]);
    daemon.wait_log("the inotify watch limit", 1);
    let image = world.image("vm", &[program::HALT]);
    let _guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    let run = doctor(&with(&flags, &[]));
    assert_eq!(run.code, 1, "{}", run.text);
    run.assert("inotify.watches", None, "fail", "it rescans");
    run.assert("instance.coverage", Some("vm"), "ok", "monitored by kvmd");
}

#[test]
fn bad_input_gives_findings_never_a_crash_or_a_hang() {
    let _serial = serial();
    if !root() {
        return;
    }
    let world = tmpfs_world();
    let tmp = world.tmp.path();
    let flags = flags(&world);
    let make_fifo = |path: &Path| {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo")
    };
    // Hostile names: a newline and a terminal escape, a name too long
    // for its shutdown file, a bare `.kvmd`, symlinks that must not be
    // followed, a FIFO and a directory where files are expected.
    let ctrl = &world.ctrl;
    let _hostile = common::bound::bind_only(&ctrl.join("new\nline\x1b[2J.kvmd"));
    // (Too long for a socket's address too: a file stands in for it.)
    let long = format!("{}.kvmd", "y".repeat(250));
    fs::write(ctrl.join(&long), b"").expect("write");
    fs::write(ctrl.join(".kvmd"), b"").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", ctrl.join("link.kvmd")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent", ctrl.join("link.shutdown")).expect("symlink");
    make_fifo(&ctrl.join("fifo.shutdown"));
    make_fifo(&ctrl.join("fifo.kvmd"));
    fs::create_dir(ctrl.join("dir.kvmd")).expect("mkdir");

    // A pid file naming a dead process, then a foreign one, then garbage,
    // then a FIFO (which must not block the doctor).
    let pid_file = tmp.join("kvmd.pid");
    let mut child = Command::new("true").spawn().expect("true");
    let dead = child.id();
    child.wait().expect("wait");
    fs::write(&pid_file, format!("{dead}\n")).expect("write");
    let run = doctor(&with(&flags, &[]));
    run.assert(
        "daemon.running",
        None,
        "fail",
        &format!("names pid {dead}, which is gone"),
    );
    fs::write(&pid_file, format!("{}\n", std::process::id())).expect("write");
    let run = doctor(&with(&flags, &[]));
    run.assert("daemon.running", None, "fail", "not kvmd (a stale pid file");
    fs::write(&pid_file, "\x1b]0;pwned\x07 not a pid\n").expect("write");
    let run = doctor(&with(&flags, &[]));
    run.assert("daemon.running", None, "fail", "holds no pid");
    fs::remove_file(&pid_file).expect("rm");
    make_fifo(&pid_file);
    // A control socket that takes the connection and never answers, and
    // a metrics "file" that is a FIFO.
    let silent = tmp.join("silent.sock");
    let _listener = UnixListener::bind(&silent).expect("bind");
    let metrics = tmp.join("metrics.prom");
    make_fifo(&metrics);
    let run = doctor(&with(
        &flags,
        &[
            "--control-socket",
            silent.to_str().expect("utf-8"),
            "--metrics-file",
            metrics.to_str().expect("utf-8"),
        ],
    ));
    run.assert("daemon.running", None, "warn", "no answer on");
    run.assert("daemon.running", None, "warn", "is a FIFO, not a pid file");
    run.assert("metrics.file", None, "warn", "is a FIFO");
    // The names: each shown escaped, none followed, none a crash.
    run.assert(
        "instance.coverage",
        Some("new\\nline\\x1b[2J"),
        "warn",
        "nobody listens on it",
    );
    run.assert(
        "instance.coverage",
        Some("link"),
        "warn",
        "a symlink, not a socket",
    );
    run.assert(
        "instance.coverage",
        Some("fifo"),
        "warn",
        "a FIFO, not a socket",
    );
    run.assert(
        "instance.coverage",
        Some("dir"),
        "warn",
        "a directory, not a socket",
    );
    run.assert(
        "instance.shutdown-file",
        Some("link"),
        "warn",
        "is a symlink",
    );
    run.assert("instance.shutdown-file", Some("fifo"), "warn", "is a FIFO");
    let entries = run.findings("ctrl-dir.entry", None);
    assert!(
        entries.iter().any(|f| f["summary"]
            .as_str()
            .is_some_and(|s| s.contains("too long"))),
        "{}",
        run.text
    );
    assert!(
        entries.iter().any(|f| f["summary"]
            .as_str()
            .is_some_and(|s| s.contains("names no instance"))),
        "{}",
        run.text
    );
    assert!(fs::read_to_string("/etc/passwd").is_ok_and(|p| !p.is_empty()));

    // Ganeti's mode with unreadable ssconf files: a FIFO, a directory,
    // and (below) files only root may read.
    let ssconf = tmp.join("ssconf");
    fs::create_dir(&ssconf).expect("mkdir");
    make_fifo(&ssconf.join("ssconf_hypervisor_list"));
    fs::create_dir(ssconf.join("ssconf_enabled_user_shutdown")).expect("mkdir");
    fs::write(
        ssconf.join("ssconf_node_vm_capable"),
        "other.example.com=True\n",
    )
    .expect("write");
    let ganeti = [
        "--ssconf-dir".as_ref(),
        ssconf.as_os_str(),
        "--ctrl-dir".as_ref(),
        ctrl.as_os_str(),
        "--pid-file".as_ref(),
        pid_file.as_os_str(),
    ];
    let run = doctor(&ganeti);
    assert_eq!(run.code, 1, "{}", run.text);
    run.assert("ganeti.hypervisor", None, "fail", "a FIFO, not a file");
    run.assert(
        "ganeti.user-shutdown",
        None,
        "fail",
        "a directory, not a file",
    );
    run.assert("ganeti.node", None, "fail", "it lists other.example.com");
}

#[test]
fn another_user_is_told_what_it_cannot_see() {
    let _serial = serial();
    let Some(qemu) = qemu() else { return };
    if !root() {
        return;
    }
    let world = tmpfs_world();
    fs::set_permissions(world.tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("vm", &[program::HALT]);
    let _guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    // ssconf files only root may read, as Ganeti writes some.
    let ssconf = world.tmp.path().join("ssconf");
    fs::create_dir(&ssconf).expect("mkdir");
    fs::set_permissions(&ssconf, fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, text) in [
        ("ssconf_hypervisor_list", "kvm\n"),
        ("ssconf_enabled_user_shutdown", "True\n"),
        ("ssconf_node_vm_capable", "x=True\n"),
    ] {
        fs::write(ssconf.join(name), text).expect("write");
        fs::set_permissions(ssconf.join(name), fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let run = doctor_wrapped(&nobody, &with(&flags(&world), &[]));
    // The pid file and control socket are root's: it cannot tell, and
    // says to ask as root, rather than calling kvmd stopped.
    run.assert("daemon.running", None, "warn", "run the doctor as root");
    run.assert(
        "instance.coverage",
        Some("vm"),
        "warn",
        "cannot tell whether kvmd monitors it",
    );
    let standalone = flags(&world);
    let mut args = with(&standalone, &[]);
    args.retain(|a| *a != "--no-ssconf");
    args.extend(["--ssconf-dir".as_ref(), ssconf.as_os_str()]);
    let run = doctor_wrapped(&nobody, &args);
    run.assert("ganeti.ssconf", None, "fail", "Permission denied");
    run.assert("ganeti.ssconf", None, "fail", "run the doctor as root");
}

#[test]
fn every_check_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| fs::read_to_string(root.join(path)).expect(path);
    // troff spells a hyphen `\-`.
    let man = read("contrib/kvmd.8").replace("\\-", "-");
    let readme = read("README.md");
    for check in kvmd::doctor::findings::Check::ALL {
        let id = check.id();
        assert!(man.contains(id), "kvmd.8 does not document {id}");
        assert!(
            readme.contains(&format!("`{id}`")),
            "README does not document {id}"
        );
    }
}
