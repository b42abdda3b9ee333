//! Issue #11's verdict hooks, against the real daemon and real QEMU
//! guests: what a hook is given, a failing hook and its retries, a hook
//! killed past its time with its children, a flooding hook, two verdicts
//! of one name in order, hooks run again after kvmd is killed, and
//! programs kvmd refuses to run.
//!
//! Hook programs must be root's and not writable by group or others, in
//! directories likewise: they are made under `/run` (the test runs as
//! root), not in a temporary directory under the world-writable `/tmp`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, Guest, Options, World, program, qemu, wait_until};
use nix::sys::signal::Signal;

/// A root-owned directory for hook programs and what they record.
struct HookDir(PathBuf);

impl HookDir {
    /// `None` (skipped) unless root; under CI a failure.
    fn new(test: &str) -> Option<HookDir> {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "the hook tests need root (hook programs must be root's)"
            );
            eprintln!("SKIPPED: not root");
            return None;
        }
        // In /run itself (root's, not writable by others, as the hook
        // checks want every level), one per test: nothing shared is left.
        let dir = PathBuf::from(format!("/run/kvmd-hook-test-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("runs")).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        // What the hook writes into must be writable by it: root, here.
        Some(HookDir(dir))
    }

    /// A hook program: `body` after a prologue recording the run.
    fn program(&self, name: &str, body: &str) -> PathBuf {
        let path = self.0.join(name);
        let runs = self.0.join("runs");
        let text = format!(
            "#!/bin/sh\n\
             run=\"{runs}/$KVMD_INSTANCE.$KVMD_HOOK_ATTEMPT.$$\"\n\
             {{ echo \"args: $*\"; env | grep -E '^(KVMD_|PATH=)' | sort; }} > \"$run.part\"\n\
             mv \"$run.part\" \"$run\"\n\
             {body}\n",
            runs = runs.display()
        );
        fs::write(&path, text).expect("write hook");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// The runs recorded for `instance`: (attempt, what it recorded).
    fn runs(&self, instance: &str) -> Vec<(u32, String)> {
        let mut runs: Vec<(u32, String)> = fs::read_dir(self.0.join("runs"))
            .expect("runs")
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                if file.ends_with(".part") {
                    return None; // still being written
                }
                let rest = file.strip_prefix(&format!("{instance}."))?;
                let attempt = rest.split('.').next()?.parse().ok()?;
                Some((attempt, fs::read_to_string(e.path()).ok()?))
            })
            .collect();
        runs.sort();
        runs
    }

    fn wait_runs(&self, instance: &str, count: usize) -> Vec<(u32, String)> {
        wait_until(&format!("{count} hook runs for {instance}"), || {
            let runs = self.runs(instance);
            (runs.len() >= count).then_some(runs)
        })
    }
}

impl Drop for HookDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn start(world: &World, hook: &Path, extra: &[&str]) -> Daemon {
    let mut args = vec!["--on-verdict", hook.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    Daemon::start_with(&world.ctrl, world.tmp.path(), &args)
}

/// Starts a guest of `parts` and runs it until it ends by `end`.
fn guest_life(
    qemu: &Path,
    world: &World,
    daemon: &Daemon,
    name: &str,
    parts: &[&[u8]],
    options: Options,
    end: impl FnOnce(&mut Guest),
) {
    let image = world.image(name, parts);
    let mut guest = Guest::start(qemu, &world.ctrl, name, &image, options);
    daemon.wait_monitoring(name);
    guest.cont();
    end(&mut guest);
    guest.wait_exit();
    daemon.wait_decision(name);
}

/// A guest's life and the hook it must get: name, boot sector, options, how
/// it ends, verdict, reason.
type Case = (
    &'static str,
    &'static [&'static [u8]],
    Options,
    fn(&mut Guest),
    &'static str,
    &'static str,
);

#[test]
fn each_verdict_runs_its_hook_with_its_arguments_and_environment() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("args") else {
        return;
    };
    let world = World::new();
    let hook = hooks.program("hook", "exit 0");
    let daemon = start(&world, &hook, &[]);
    let cases: [Case; 4] = [
        (
            "off",
            &[program::POWER_OFF],
            Options::default(),
            |_| {},
            "user",
            "guest-poweroff",
        ),
        (
            "quit",
            &[program::HALT],
            Options::default(),
            |g| g.quit(),
            "not-user",
            "host-quit",
        ),
        (
            "killed",
            &[program::HALT],
            Options::default(),
            |g| g.signal(Signal::SIGKILL),
            "not-user",
            "no-shutdown",
        ),
        (
            "panic",
            &[program::PANIC],
            Options {
                pvpanic: true,
                ..Options::default()
            },
            |_| {},
            "not-user",
            "guest-panic",
        ),
    ];
    for (name, parts, options, end, verdict, reason) in cases {
        guest_life(&qemu, &world, &daemon, name, parts, options, end);
        let runs = hooks.wait_runs(name, 1);
        let (attempt, said) = &runs[0];
        assert_eq!(*attempt, 1);
        assert!(
            said.contains(&format!("args: {name} {verdict} {reason}\n")),
            "{said}"
        );
        for line in [
            format!("KVMD_INSTANCE={name}"),
            format!("KVMD_VERDICT={verdict}"),
            format!("KVMD_REASON={reason}"),
            format!("KVMD_CTRL_DIR={}", world.ctrl.display()),
            format!(
                "KVMD_SHUTDOWN_FILE={}",
                world.ctrl.join(format!("{name}.shutdown")).display()
            ),
            "KVMD_HOOK_ATTEMPT=1".to_owned(),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ] {
            assert!(said.lines().any(|l| l == line), "{line} missing in\n{said}");
        }
        assert!(said.contains("KVMD_QEMU_PID="), "{said}");
        let line = daemon.wait_log(
            &format!(" {name}: hook for {verdict} ({reason}), attempt 1: exit 0"),
            1,
        );
        assert!(line.contains(" INFO "), "{line}");
        // Written before the hook ran.
        assert_eq!(world.shutdown_file(name).exists(), verdict == "user");
    }
}

#[test]
fn a_failing_hook_is_told_and_retried_when_asked() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("failing") else {
        return;
    };
    let world = World::new();
    let hook = hooks.program("hook", "echo 'something broke' >&2; exit 3");
    let daemon = start(&world, &hook, &["--hook-retries", "2"]);
    guest_life(
        &qemu,
        &world,
        &daemon,
        "vm",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    let runs = hooks.wait_runs("vm", 3);
    let attempts: Vec<u32> = runs.iter().map(|(a, _)| *a).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    for (attempt, said) in &runs {
        assert!(
            said.contains(&format!("KVMD_HOOK_ATTEMPT={attempt}")),
            "{said}"
        );
    }
    let first = daemon.wait_log(
        " vm: hook for user (guest-poweroff), attempt 1: failed: exit 3",
        1,
    );
    assert!(
        first.contains(" WARNING ") && first.ends_with("trying again in 1 s"),
        "{first}"
    );
    let last = daemon.wait_log(
        " vm: hook for user (guest-poweroff), attempt 3: failed: exit 3",
        1,
    );
    assert!(last.ends_with("; not tried again"), "{last}");
    daemon.wait_log(" vm: hook: something broke", 3);
    // Nothing left to run again after a restart.
    wait_until("the hook file gone", || {
        (!world.tmp.path().join("kvmd-state/vm.hook").exists()).then_some(())
    });
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("timeout") else {
        return;
    };
    let world = World::new();
    let child = hooks.0.join("child.pid");
    // The child ignores SIGTERM: only the group's SIGKILL ends it.
    let body = format!(
        "sh -c 'trap \"\" TERM; exec sleep 1000' & echo $! > {}; sleep 1000",
        child.display()
    );
    let hook = hooks.program("hook", &body);
    let daemon = start(&world, &hook, &["--hook-timeout", "1"]);
    guest_life(
        &qemu,
        &world,
        &daemon,
        "vm",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    let line = daemon.wait_log(
        " vm: hook for user (guest-poweroff), attempt 1: failed: still running",
        1,
    );
    assert!(line.contains("its process group was killed"), "{line}");
    let pid: i32 = fs::read_to_string(&child)
        .expect("the hook's child")
        .trim()
        .parse()
        .expect("a pid");
    wait_until("the hook's child gone with it", || {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init.
        (state.is_empty() || state.contains(") Z ")).then_some(())
    });
}

#[test]
fn a_flooding_hook_costs_a_bounded_log() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("flood") else {
        return;
    };
    let world = World::new();
    let hook = hooks.program(
        "hook",
        "head -c 10000000 /dev/zero | tr '\\0' 'x' | fold -w 100",
    );
    let daemon = start(&world, &hook, &[]);
    let before = daemon.status_kib("VmHWM");
    guest_life(
        &qemu,
        &world,
        &daemon,
        "vm",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    let dropped = daemon.wait_log(" vm: hook: ", 1);
    assert!(dropped.contains("vm: hook: x"), "{dropped}");
    let line = daemon.wait_log("more bytes of its output not logged", 1);
    assert!(line.contains(" WARNING "), "{line}");
    daemon.wait_log(" vm: hook for user (guest-poweroff), attempt 1: exit 0", 1);
    let logged = daemon.count_log(" vm: hook: x");
    assert!(logged <= 170, "{logged} lines logged");
    let after = daemon.status_kib("VmHWM");
    assert!(
        after < before + 8 * 1024,
        "peak memory {before} -> {after} KiB"
    );
}

#[test]
fn two_verdicts_for_one_name_run_their_hooks_in_order_never_at_once() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("order") else {
        return;
    };
    let world = World::new();
    let lock = hooks.0.join("lock");
    let order = hooks.0.join("order");
    let body = format!(
        "mkdir {lock} || {{ echo overlap >> {order}; exit 1; }}\n\
         echo \"$KVMD_REASON\" >> {order}\n\
         sleep 1\n\
         rmdir {lock}",
        lock = lock.display(),
        order = order.display()
    );
    let hook = hooks.program("hook", &body);
    let daemon = start(&world, &hook, &[]);
    // The first guest powers itself off; the next of the name is quit
    // while the first one's hook still runs.
    guest_life(
        &qemu,
        &world,
        &daemon,
        "vm",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    hooks.wait_runs("vm", 1);
    let image = world.image("vm2", &[program::HALT]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_log(" vm: monitoring", 2);
    guest.quit();
    daemon.wait_log(" vm: decided ", 2);
    daemon.wait_log(" vm: hook for not-user (host-quit), attempt 1: exit 0", 1);
    let said = fs::read_to_string(&order).expect("order");
    assert_eq!(said, "guest-poweroff\nhost-quit\n");
}

#[test]
fn hooks_not_finished_run_again_after_kvmd_is_killed() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("crash") else {
        return;
    };
    let world = World::new();
    // The first finishes at once; the others take long: one runs, one
    // waits for the single slot when kvmd is killed.
    let body = "[ \"$KVMD_INSTANCE\" = done ] && exit 0; sleep 30";
    let hook = hooks.program("hook", body);
    let first = start(&world, &hook, &["--hook-jobs", "1"]);
    guest_life(
        &qemu,
        &world,
        &first,
        "done",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    first.wait_log(
        " done: hook for user (guest-poweroff), attempt 1: exit 0",
        1,
    );
    guest_life(
        &qemu,
        &world,
        &first,
        "running",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    hooks.wait_runs("running", 1);
    guest_life(
        &qemu,
        &world,
        &first,
        "pending",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    assert!(hooks.runs("pending").is_empty());
    let mut first = first;
    first.signal(Signal::SIGKILL);
    first.wait_exit();
    drop(first);
    let log = world.tmp.path().join("kvmd.log");
    let _ = fs::rename(&log, world.tmp.path().join("first.log"));
    let second = start(&world, &hook, &["--hook-jobs", "2"]);
    let runs = hooks.wait_runs("running", 2);
    assert_eq!(runs.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![1, 2]);
    let runs = hooks.wait_runs("pending", 1);
    assert_eq!(runs[0].0, 1);
    second.wait_log(" running: a hook a killed kvmd left running", 1);
    // What had finished does not run again.
    assert_eq!(hooks.runs("done").len(), 1);
}

#[test]
fn programs_anyone_else_could_change_are_refused() {
    let Some(hooks) = HookDir::new("refused") else {
        return;
    };
    let world = World::new();
    let run = |program: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_kvmd"))
            .args(["-f", "--no-ssconf", "--ctrl-dir"])
            .arg(&world.ctrl)
            .arg("--pid-file")
            .arg(world.tmp.path().join("kvmd.pid"))
            .arg("--log-file")
            .arg(world.tmp.path().join("kvmd.log"))
            .args(["--on-verdict", program])
            .output()
            .expect("run kvmd");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = hooks.program("good", "exit 0");
    let group_writable = hooks.program("gw", "exit 0");
    fs::set_permissions(&group_writable, fs::Permissions::from_mode(0o775)).expect("chmod");
    let not_executable = hooks.program("nx", "exit 0");
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).expect("chmod");
    let open_dir = hooks.0.join("open");
    fs::create_dir(&open_dir).expect("mkdir");
    let in_open_dir = open_dir.join("hook");
    fs::copy(&good, &in_open_dir).expect("copy");
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let missing = hooks.0.join("missing");
    for (program, says) in [
        ("relative/hook".to_owned(), "must be an absolute path"),
        (missing.display().to_string(), "No such file or directory"),
        (
            group_writable.display().to_string(),
            "writable by group or others",
        ),
        (
            in_open_dir.display().to_string(),
            "writable by group or others",
        ),
        (not_executable.display().to_string(), "is not executable"),
    ] {
        let (code, err) = run(&program);
        assert_eq!(code, Some(1), "{program}: {err}");
        assert!(
            err.contains("--on-verdict") && err.contains(says),
            "{program}: {err}"
        );
    }
}

#[test]
fn the_restart_unit_example_starts_what_stopped_and_leaves_user_poweroffs_down() {
    let Some(hooks) = HookDir::new("example") else {
        return;
    };
    if Command::new("systemd-escape").arg("x").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-escape is missing (the test command installs systemd)"
        );
        eprintln!("SKIPPED: systemd-escape not found");
        return;
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/hooks/restart-unit");
    let calls = hooks.0.join("systemctl.calls");
    let systemctl = hooks.program("systemctl", &format!("echo \"$*\" >> {}", calls.display()));
    let config = hooks.0.join("config");
    fs::write(
        &config,
        format!("UNIT=guest@.service\nSYSTEMCTL={}\n", systemctl.display()),
    )
    .expect("config");
    let run = |instance: &str, verdict: &str, reason: &str| {
        let out = Command::new(&example)
            .args([instance, verdict, reason])
            .env("KVMD_RESTART_UNIT_CONFIG", &config)
            .output()
            .expect("run the example");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = run("vm1", "user", "guest-poweroff");
    assert_eq!(code, Some(0));
    assert!(said.contains("left down"), "{said}");
    assert!(!calls.exists(), "a user poweroff must not start the guest");
    let (code, said) = run("vm1", "not-user", "guest-panic");
    assert_eq!(code, Some(0), "{said}");
    let (code, _) = run("web-1 a", "not-user", "no-shutdown");
    assert_eq!(code, Some(0));
    // Run again (at least once means maybe twice): start is idempotent.
    run("vm1", "not-user", "guest-panic");
    let said = fs::read_to_string(&calls).expect("calls");
    assert_eq!(
        said,
        "start -- guest@vm1.service\n\
         start -- guest@web\\x2d1\\x20a.service\n\
         start -- guest@vm1.service\n"
    );
    let (code, _) = run("vm1", "maybe", "x");
    assert_eq!(code, Some(2));
}

#[test]
fn hooks_show_in_status_events_and_metrics() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("shown") else {
        return;
    };
    let world = World::new();
    let go = hooks.0.join("go");
    let body = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; exit 0",
        go.display()
    );
    let hook = hooks.program("hook", &body);
    let metrics = world.tmp.path().join("kvmd.prom");
    let metrics_arg = metrics.display().to_string();
    let daemon = start(&world, &hook, &["--metrics-file", &metrics_arg]);
    let pid_file = daemon.pid_file.display().to_string();
    let mut follower = Command::new(env!("CARGO_BIN_EXE_kvmd"))
        .args(["events", "--json", "--pid-file", &pid_file])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kvmd events");
    guest_life(
        &qemu,
        &world,
        &daemon,
        "vm",
        &[program::POWER_OFF],
        Options::default(),
        |_| {},
    );
    hooks.wait_runs("vm", 1);
    let status = || -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_kvmd"))
            .args(["status", "--json", "--pid-file", &pid_file])
            .output()
            .expect("kvmd status");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let running = wait_until("the hook listed as running", || {
        let s = status();
        let hooks = s["status"]["hooks"].as_array()?.clone();
        (hooks.len() == 1 && hooks[0]["state"] == "running").then_some(hooks)
    });
    assert_eq!(running[0]["name"], "vm");
    assert_eq!(running[0]["reason"], "guest-poweroff");
    assert_eq!(running[0]["attempt"], 1);
    let metric = |series: &str| -> Option<f64> {
        fs::read_to_string(&metrics)
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    wait_until("kvmd_hooks_running 1", || {
        (metric("kvmd_hooks_running") == Some(1.0)).then_some(())
    });
    fs::write(&go, b"").expect("let the hook end");
    wait_until("the hook done in the metrics", || {
        (metric("kvmd_hooks_total{outcome=\"succeeded\"}") == Some(1.0)
            && metric("kvmd_hooks_running") == Some(0.0))
        .then_some(())
    });
    let after = status();
    assert_eq!(after["status"]["hooks"], serde_json::json!([]));
    daemon.signal(Signal::SIGTERM);
    let out = follower.wait_with_output_timeout();
    let event = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["event"].clone())
        .find(|e| e["kind"] == "hook")
        .expect("a hook event");
    assert_eq!(event["hook"], "succeeded");
    assert_eq!(event["exit_code"], 0);
    assert_eq!(event["reason"], "guest-poweroff");
    assert_eq!(event["attempt"], 1);
}

/// Reads a child's stdout to its end (the daemon it follows is gone).
trait WaitOutput {
    fn wait_with_output_timeout(&mut self) -> String;
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_timeout(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        let _ = self.wait();
        text
    }
}

#[test]
fn a_host_intent_verdict_tells_the_hook_who_stopped_the_guest() {
    let Some(qemu) = qemu() else { return };
    let Some(hooks) = HookDir::new("intent") else {
        return;
    };
    let world = World::new();
    let hook = hooks.program("hook", "exit 0");
    let daemon = start(&world, &hook, &[]);
    let image = world.image("vm", &[program::WAIT_KEY, program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    guest.cont();
    let pid_file = daemon.pid_file.to_str().expect("utf-8 path").to_owned();
    let by = "gnt-instance shutdown --timeout=0 vm";
    let out = Command::new(env!("CARGO_BIN_EXE_kvmd"))
        .args(["expect-stop", "vm", "--by", by, "--pid-file", &pid_file])
        .output()
        .expect("kvmd expect-stop");
    assert!(out.status.success(), "{out:?}");
    guest.press_key();
    let runs = hooks.wait_runs("vm", 1);
    let said = &runs[0].1;
    assert!(said.contains("args: vm not-user host-intent\n"), "{said}");
    assert!(
        said.lines().any(|l| l == format!("KVMD_INTENT_BY={by}")),
        "{said}"
    );
    // A verdict without an intent has no such variable.
    let image = world.image("plain", &[program::POWER_OFF]);
    let mut plain = Guest::start(&qemu, &world.ctrl, "plain", &image, Options::default());
    daemon.wait_monitoring("plain");
    plain.cont();
    let runs = hooks.wait_runs("plain", 1);
    assert!(!runs[0].1.contains("KVMD_INTENT_BY"), "{}", runs[0].1);
}
