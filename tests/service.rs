//! The daemon as a node service: command line, Ganeti's start-up checks,
//! the root check, detaching, the pid file and its lock, signals. Every
//! test runs the built binary on paths of its own.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Daemon, Guest, Options, World, qemu, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn kvmd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kvmd"));
    command.stdin(Stdio::null());
    command
}

/// Runs to completion (with a deadline: a refusal must not hang).
fn run(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kvmd");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
    wait_until("kvmd to exit", || waiter.is_finished().then_some(()));
    let _ = kill(Pid::from_raw(pid as i32), None);
    waiter.join().expect("join")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Paths of one test's own node.
struct Node {
    tmp: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let node = Node {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        fs::create_dir(node.ssconf()).expect("mkdir ssconf");
        node
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn ssconf(&self) -> PathBuf {
        self.path("ssconf")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("kvmd.log")).unwrap_or_default()
    }

    /// The three ssconf files; `None` leaves one out.
    fn write_ssconf(
        &self,
        hypervisors: Option<&str>,
        enabled: Option<&str>,
        capable: Option<&str>,
    ) {
        for (name, text) in [
            ("ssconf_hypervisor_list", hypervisors),
            ("ssconf_enabled_user_shutdown", enabled),
            ("ssconf_node_vm_capable", capable),
        ] {
            let path = self.ssconf().join(name);
            let _ = fs::remove_file(&path);
            if let Some(text) = text {
                fs::write(path, text).expect("write ssconf");
            }
        }
    }

    /// kvmd on this node's paths (ssconf checks on).
    fn kvmd(&self) -> Command {
        let mut command = kvmd();
        command
            .arg("--ssconf-dir")
            .arg(self.ssconf())
            .arg("--ctrl-dir")
            .arg(self.path("ctrl"))
            .arg("--pid-file")
            .arg(self.path("kvmd.pid"))
            .arg("--log-file")
            .arg(self.path("kvmd.log"));
        command
    }

    fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.path("kvmd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

fn this_node_capable() -> String {
    format!(
        "other.example.com=False\n{}=True\n",
        kvmd::adapters::ssconf::node_name()
    )
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(true)
}

#[test]
fn help_and_version() {
    let out = run(kvmd().arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--foreground",
        "--debug",
        "--syslog",
        "--no-user-checks",
        "--ctrl-dir",
        "--no-ssconf",
    ] {
        assert!(help.contains(flag), "help lacks {flag}: {help}");
    }
    let out = run(kvmd().arg("-V"));
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("kvmd (kvmd) {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
}

#[test]
fn bad_flags_get_one_line_naming_them_and_status_2() {
    for (args, named) in [
        (&["--frobnicate"][..], "'--frobnicate'"),
        (&["-x"], "'-x'"),
        (&["--syslog=maybe"], "'--syslog'"),
        (&["--syslog"], "'--syslog'"),
        (&["--ctrl-dir"], "'--ctrl-dir'"),
        (&["--foreground=yes"], "'--foreground'"),
    ] {
        let out = run(kvmd().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("kvmd: ") && first.contains(named),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn ssconf_checks_refuse_with_one_info_line_and_status_0() {
    let capable = this_node_capable();
    let capable = capable.as_str();
    let not_capable = format!("{}=False\n", kvmd::adapters::ssconf::node_name());
    /// The three ssconf files (`None`: missing), and what the refusal says.
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str);
    let cases: [Case<'_>; 6] = [
        (None, Some("True"), Some(capable), "ssconf_hypervisor_list"),
        (
            Some("kvm"),
            None,
            Some(capable),
            "ssconf_enabled_user_shutdown",
        ),
        (Some("kvm"), Some("True"), None, "ssconf_node_vm_capable"),
        (
            Some("xen-pvm\nxen-hvm\n"),
            Some("True"),
            Some(capable),
            "KVM is not an enabled hypervisor",
        ),
        (
            Some("kvm"),
            Some("False"),
            Some(capable),
            "user shutdown is not enabled",
        ),
        (
            Some("kvm"),
            Some("True"),
            Some(&not_capable),
            "is not VM capable",
        ),
    ];
    for (foreground, (hypervisors, enabled, vm_capable, why)) in [true, false]
        .into_iter()
        .flat_map(|fg| cases.iter().map(move |c| (fg, c)))
    {
        let node = Node::new();
        node.write_ssconf(*hypervisors, *enabled, *vm_capable);
        let mut command = node.kvmd();
        if foreground {
            command.arg("-f");
        }
        let out = run(&mut command);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{why} (-f: {foreground}): {}",
            stderr(&out)
        );
        let log = node.log();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0].contains(" INFO ") && lines[0].contains(why),
            "{log}"
        );
        assert!(!node.path("kvmd.pid").exists());
    }
}

#[test]
fn ssconf_checks_pass_on_a_kvm_node() {
    let node = Node::new();
    node.write_ssconf(
        Some("xen-pvm\nkvm\n"),
        Some("True\n"),
        Some(&this_node_capable()),
    );
    let out = run(&mut node.kvmd());
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = wait_until("pid file", || node.pid());
    assert!(node.log().contains(" started on "));
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    wait_until("daemon gone", || (!alive(pid)).then_some(()));
}

#[test]
fn refuses_to_run_as_anyone_but_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run as another user");
        return;
    }
    let node = Node::new();
    let out = run(node
        .kvmd()
        .args(["-f", "--no-ssconf"])
        .uid(65534)
        .gid(65534));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("must run as root"),
        "{}",
        stderr(&out)
    );
    assert!(node.log().is_empty());

    // --no-user-checks lets it run as nobody (on paths nobody may write).
    nix::unistd::chown(node.tmp.path(), Some(65534.into()), Some(65534.into())).expect("chown");
    let mut child = node
        .kvmd()
        .args(["-f", "--no-ssconf", "--no-user-checks"])
        .uid(65534)
        .gid(65534)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until("started as nobody", || {
        node.log().contains(" started on ").then_some(())
    });
    child.kill().expect("kill");
    let _ = child.wait();
}

#[test]
fn detaches_and_holds_a_locked_pid_file() {
    let node = Node::new();
    let out = run(node.kvmd().arg("--no-ssconf"));
    assert!(out.status.success(), "{}", stderr(&out));
    // The invoker exits only once the daemon has started.
    let pid = node
        .pid()
        .expect("pid file written before the invoker exits");
    assert!(
        node.log().contains(&format!("pid={pid} INFO kvmd ")),
        "{}",
        node.log()
    );
    assert!(alive(pid));
    // A daemon: its own session (not its leader), stdin on /dev/null,
    // working directory /, nothing of ours inherited.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat").1.split(' ').collect();
    let session: i32 = fields[3].parse().expect("sid");
    assert_ne!(
        session,
        nix::unistd::getsid(None).expect("our sid").as_raw()
    );
    assert_ne!(session, pid, "a session leader could acquire a terminal");
    let link = |what: &str| fs::read_link(format!("/proc/{pid}/{what}")).expect("readlink");
    assert_eq!(link("fd/0"), Path::new("/dev/null"));
    assert_eq!(link("fd/2"), Path::new("/dev/null"));
    assert_eq!(link("cwd"), Path::new("/"));

    // A second copy is refused, saying why.
    let out = run(node.kvmd().arg("--no-ssconf"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("another copy is running (pid {pid}")),
        "{}",
        stderr(&out)
    );
    assert!(alive(pid));
    assert_eq!(node.pid(), Some(pid));

    // A clean exit removes the pid file.
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    wait_until("daemon gone", || (!alive(pid)).then_some(()));
    assert!(!node.path("kvmd.pid").exists());
    assert!(node.log().contains("SIGTERM: exiting"));
}

#[test]
fn a_stale_pid_file_does_not_block_a_start() {
    let node = Node::new();
    fs::write(node.path("kvmd.pid"), "4194304\n").expect("write");
    let out = run(node.kvmd().arg("--no-ssconf"));
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = node.pid().expect("pid");
    assert_ne!(pid, 4_194_304);
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    wait_until("daemon gone", || (!alive(pid)).then_some(()));
}

#[test]
fn sighup_reopens_a_rotated_log() {
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let rotated = world.tmp.path().join("kvmd.log.1");
    fs::rename(&daemon.log, &rotated).expect("rotate");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log("SIGHUP: log file reopened", 1);
    assert!(
        !fs::read_to_string(&rotated)
            .expect("read")
            .contains("reopened")
    );
    // Lines go on landing in the new file.
    fs::write(world.ctrl.join("junk.kvmd"), b"").expect("write");
    daemon.wait_log("junk.kvmd is not a socket", 1);
}

#[test]
fn log_lines_have_ganetis_shape() {
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let line = daemon.wait_log(" started on ", 1);
    // 2026-11-24 11:52:58,054020 UTC: kvmd pid=4486 INFO message
    let (stamp, rest) = line.split_at(26);
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99 99:99:99,999999", "{line}");
    let expected = format!(" UTC: kvmd pid={} INFO kvmd ", daemon.pid());
    assert!(rest.starts_with(&expected), "{line}");
}

#[test]
fn sigterm_leaves_shutdown_files_of_running_guests_alone() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let mut daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image_a = world.image("a", &[]);
    let image_b = world.image("b", &[]);
    let mut a = Guest::start(&qemu, &world.ctrl, "a", &image_a, Options::default());
    let mut b = Guest::start(&qemu, &world.ctrl, "b", &image_b, Options::default());
    world.plant_stale("a");
    daemon.wait_monitoring("a");
    daemon.wait_monitoring("b");
    a.cont();
    b.cont();
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit().success());
    assert!(daemon.log_text().contains("SIGTERM: exiting"));
    assert!(
        !daemon.log_text().contains(": decided "),
        "{}",
        daemon.log_text()
    );
    assert!(world.shutdown_file("a").exists());
    assert!(!world.shutdown_file("b").exists());
    assert!(!daemon.pid_file.exists());
    // The guests never noticed.
    assert_eq!(a.status(), "running");
    assert_eq!(b.status(), "running");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze not found");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // The units as shipped, with their binaries pointed at the build (verify
    // checks that ExecStart exists), next to stand-ins for Ganeti's units
    // and with the man page they document on MANPATH.
    let units = [
        "kvmd.service",
        "ganeti-kvmd.service",
        "kvmd-powerdown.service",
    ];
    for unit in units {
        let text = fs::read_to_string(contrib(&format!("systemd/{unit}"))).expect("unit");
        let text = text
            .replace("/usr/sbin/kvmd", env!("CARGO_BIN_EXE_kvmd"))
            .replace("/usr/sbin/ganeti-kvmd", env!("CARGO_BIN_EXE_kvmd"));
        fs::write(tmp.path().join(unit), text).expect("write unit");
    }
    let stub = "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n";
    fs::write(tmp.path().join("ganeti-common.service"), stub).expect("stub");
    for target in ["ganeti-node.target", "ganeti.target"] {
        fs::write(tmp.path().join(target), "[Unit]\nDescription=stand-in\n").expect("stub");
    }
    let man8 = tmp.path().join("man/man8");
    fs::create_dir_all(&man8).expect("mkdir");
    fs::copy(contrib("kvmd.8"), man8.join("kvmd.8")).expect("man page");
    let out = common::systemd_analyze()
        .arg("verify")
        .args(units.map(|unit| tmp.path().join(unit)))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", tmp.path().display()))
        .env("MANPATH", tmp.path().join("man"))
        .output()
        .expect("systemd-analyze");
    // It exits 0 even for unknown or malformed directives: any output is
    // a finding.
    let said = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success() && said.is_empty(), "{said}");
}

/// The shell script of kvmd-powerdown.service's `ExecStop`, as systemd
/// hands it to `/bin/sh -c`: continued lines joined with a space, `$$`
/// made `$`. The unit's line has one shape: `/bin/sh -c '...' NAME ARG`.
fn powerdown_script() -> String {
    let unit = fs::read_to_string(contrib("systemd/kvmd-powerdown.service")).expect("unit");
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStop="))
        .expect("an ExecStop line");
    let quoted = line.strip_prefix("/bin/sh -c '").expect("/bin/sh -c '...'");
    let (script, rest) = quoted.split_once('\'').expect("the closing quote");
    assert_eq!(rest, " kvmd-powerdown ${KVMD_POWERDOWN_TIMEOUT}");
    script.replace("$$", "$")
}

/// What kvmd-powerdown.service does at shutdown with the value
/// `KVMD_POWERDOWN_TIMEOUT` has (`${...}` is one argument, empty
/// included): kvmd judges it, and a value it refuses costs the guests
/// nothing but the default's wait. kvmd is the built binary, pointed at a
/// control socket of the test's own where no daemon answers (it must not
/// find a real one on this machine); `systemctl` says what the system is
/// doing.
#[test]
fn the_powerdown_unit_takes_the_timeout_kvmd_accepts_and_else_the_default() {
    let tmp = common::tmpfs_dir("kvmd-powerdown-unit");
    let bin = tmp.path().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    let calls = tmp.path().join("calls");
    let nobody = tmp.path().join("nobody.sock");
    let kvmd = bin.join("kvmd");
    fs::write(
        &kvmd,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\" --control-socket {}\n",
            calls.display(),
            env!("CARGO_BIN_EXE_kvmd"),
            nobody.display()
        ),
    )
    .expect("write");
    let script = powerdown_script().replace("/usr/sbin/kvmd", &kvmd.display().to_string());
    for (value, system, calls_made, status, said) in [
        (
            "300",
            "stopping",
            &["powerdown-all --timeout 300"][..],
            3,
            "kvmd is not running",
        ),
        (
            "",
            "stopping",
            &["powerdown-all --timeout ", "powerdown-all --timeout 120"],
            3,
            "KVMD_POWERDOWN_TIMEOUT= is not a number of seconds from 1 to 3600 \
             (kvmd said why above): 120 s instead",
        ),
        (
            "5m",
            "stopping",
            &["powerdown-all --timeout 5m", "powerdown-all --timeout 120"],
            3,
            "invalid value '5m' for option '--timeout': a whole number of seconds from 1 to 3600",
        ),
        (
            "7200",
            "stopping",
            &[
                "powerdown-all --timeout 7200",
                "powerdown-all --timeout 120",
            ],
            3,
            "KVMD_POWERDOWN_TIMEOUT=7200 is not",
        ),
        // Stopped while the system runs (an upgrade, a removal).
        (
            "300",
            "running",
            &[],
            0,
            "the system is not shutting down: no guest powered down",
        ),
    ] {
        let systemctl = bin.join("systemctl");
        fs::write(&systemctl, format!("#!/bin/sh\necho {system}\n")).expect("write");
        for program in [&kvmd, &systemctl] {
            fs::set_permissions(program, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let _ = fs::remove_file(&calls);
        let out = run(Command::new("/bin/sh")
            .args(["-c", &script, "kvmd-powerdown", value])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display())));
        let said_all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert_eq!(out.status.code(), Some(status), "{value:?}: {said_all}");
        assert!(said_all.contains(said), "{value:?}: {said_all}");
        let made = fs::read_to_string(&calls).unwrap_or_default();
        let made: Vec<&str> = made.lines().collect();
        assert_eq!(made, calls_made, "{value:?}: {said_all}");
    }
}

#[test]
fn man_page_renders_without_warnings() {
    if !have("man") {
        eprintln!("SKIPPED: man not found");
        return;
    }
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(contrib("kvmd.8"))
        .env("MANWIDTH", "80")
        .output()
        .expect("man");
    assert!(out.status.success());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--foreground",
        "--syslog",
        "--ctrl-dir",
        "--no-ssconf",
        "SIGHUP",
    ] {
        assert!(text.contains(flag), "man page lacks {flag}");
    }
}

#[test]
fn logrotate_file_rotates_and_the_daemon_reopens() {
    if !have("logrotate") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "logrotate is missing under CI; the test command installs it"
        );
        eprintln!("SKIPPED: logrotate not found");
        return;
    }
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    // The shipped file, on this test's log, signalling this test's daemon
    // (its `pkill -x kvmd` would reach other tests' daemons too).
    let shipped = fs::read_to_string(contrib("logrotate/kvmd")).expect("logrotate file");
    assert!(shipped.contains("pkill -HUP -x kvmd"));
    let config = world.tmp.path().join("logrotate.conf");
    let text = shipped
        .replace("/var/log/kvmd/kvmd.log", &daemon.log.display().to_string())
        .replace("pkill -HUP -x kvmd", &format!("kill -HUP {}", daemon.pid()));
    fs::write(&config, text).expect("config");
    let out = Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(world.tmp.path().join("logrotate.state"))
        .arg(&config)
        .output()
        .expect("logrotate");
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated = world.tmp.path().join("kvmd.log.1");
    assert!(
        fs::read_to_string(&rotated)
            .expect("rotated")
            .contains(" started on ")
    );
    daemon.wait_log("SIGHUP: log file reopened", 1);
}

/// Removes the stand-in syslog socket even when the test fails.
struct DevLog(std::os::unix::net::UnixDatagram);

impl Drop for DevLog {
    fn drop(&mut self) {
        let _ = fs::remove_file("/dev/log");
    }
}

#[test]
fn syslog_gets_facility_daemon_the_programs_name_and_no_debug() {
    if Path::new("/dev/log").exists() || !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: /dev/log belongs to a real syslog here (or not root)");
        return;
    }
    let node = Node::new();
    fs::create_dir(node.path("ctrl")).expect("mkdir ctrl");
    // No syslog at all: --syslog=only is a start-up failure, not a daemon
    // that runs without a word, whether detached or not.
    for foreground in [true, false] {
        let mut command = node.kvmd();
        command.args(["--no-ssconf", "--syslog=only"]);
        if foreground {
            command.arg("-f");
        }
        let out = run(&mut command);
        assert_eq!(out.status.code(), Some(1), "-f: {foreground}");
        assert!(stderr(&out).contains("/dev/log"), "{}", stderr(&out));
    }
    let dev_log =
        DevLog(std::os::unix::net::UnixDatagram::bind("/dev/log").expect("bind /dev/log"));
    let named = node.path("ganeti-kvmd");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kvmd"), &named).expect("symlink");
    let mut child = Command::new(&named)
        .args(["-f", "-d", "--no-ssconf", "--syslog=only", "--ctrl-dir"])
        .arg(node.path("ctrl"))
        .arg("--pid-file")
        .arg(node.path("kvmd.pid"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut seen: Vec<String> = Vec::new();
    let mut receive_until = |what: &str| {
        let socket = &dev_log.0;
        socket.set_nonblocking(true).expect("nonblocking");
        wait_until(&format!("syslog line with {what:?}"), || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            seen.iter().any(|line| line.contains(what)).then_some(())
        });
    };
    receive_until(" started on ");
    // A warning, and with -d many debug lines (the inotify event).
    fs::write(node.path("ctrl/junk.kvmd"), b"").expect("write");
    receive_until("junk.kvmd is not a socket");
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).expect("SIGTERM");
    receive_until("SIGTERM: exiting");
    let _ = child.wait();
    for line in &seen {
        // RFC 3164: <facility * 8 + severity>; daemon is facility 3.
        let priority: u32 = line[1..line.find('>').expect("priority")]
            .parse()
            .expect("number");
        assert_eq!(priority / 8, 3, "not facility daemon: {line}");
        assert_ne!(priority % 8, 7, "a debug line: {line}");
        assert!(
            line.contains(&format!(" ganeti-kvmd[{pid}]: ")),
            "ident: {line}"
        );
        assert!(!line.contains("DEBUG"), "{line}");
    }
    let warning = seen
        .iter()
        .find(|line| line.contains("not a socket"))
        .expect("warning");
    assert!(warning.starts_with("<28>"), "{warning}");
    assert!(
        !node.path("kvmd.log").exists(),
        "--syslog=only wrote a log file"
    );

    // A syslog that stops reading must not stall the daemon: its queue
    // fills after a few lines, and the loop goes on (lines land in the
    // file).
    let _ = fs::remove_file(node.path("kvmd.pid"));
    let mut child = node
        .kvmd()
        .args(["-f", "--no-ssconf", "--syslog=yes"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_until("started", || {
        node.log().contains(" started on ").then_some(())
    });
    for i in 0..200 {
        fs::write(node.path(&format!("ctrl/stuck{i}.kvmd")), b"").expect("write");
    }
    wait_until("all 200 warnings logged", || {
        node.log()
            .contains("stuck199.kvmd is not a socket")
            .then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    drop(dev_log);
}

#[test]
fn ganeti_hostname_names_the_node_as_in_a_virtual_cluster() {
    let node = Node::new();
    node.write_ssconf(Some("kvm"), Some("True"), Some("virt1.example.com=True\n"));
    // Not this host's name: refused.
    let out = run(node.kvmd().arg("-f"));
    assert_eq!(out.status.code(), Some(0));
    assert!(node.log().contains("is not VM capable"), "{}", node.log());
    // Named so by the environment, as Ganeti's virtual clusters do: runs.
    let out = run(node.kvmd().env("GANETI_HOSTNAME", "virt1.example.com"));
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = wait_until("pid file", || node.pid());
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    wait_until("daemon gone", || (!alive(pid)).then_some(()));
}
