//! Side by side with the daemon kvmd replaces: Debian's `ganeti-kvmd`
//! (ganeti-haskell-3.0) and kvmd installed under the name `ganeti-kvmd`,
//! each started exactly as Ganeti starts it (no flags, Ganeti's fixed
//! paths and ssconf files), on the same real QEMU scenarios.
//!
//! Where the original decides right, both must leave the same files. Where
//! `ganeti-kvmd-facts.md` lists it as wrong, the test checks the original
//! really is wrong there (so the scenario does tell them apart) and that
//! kvmd is right.
//!
//! Ganeti's paths are global, so the scenarios take turns (one lock), and
//! nothing runs on a machine that is a real Ganeti node.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use common::{Guest, Options, program, qemu, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const REFERENCE: &str = "/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd";
const RUN_DIR: &str = "/var/run/ganeti";
const CTRL: &str = "/var/run/ganeti/kvm-hypervisor/ctrl";
const PID_FILE: &str = "/var/run/ganeti/ganeti-kvmd.pid";
const LOG_DIR: &str = "/var/log/ganeti";
const LOG: &str = "/var/log/ganeti/kvm-daemon.log";
const SSCONF: &str = "/var/lib/ganeti";
/// Where kvmd keeps its journal when it runs with Ganeti's control
/// directory, as here (kvmd(8), `--journal-dir`).
const JOURNAL_DIR: &str = "/var/lib/kvmd";

static GANETI_PATHS: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Daemon {
    Reference,
    Kvmd,
}

/// What a scenario left in the control directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum File {
    Absent,
    Regular,
    Symlink,
}

/// The node: Ganeti's paths, owned by one scenario at a time.
struct Node {
    _turn: MutexGuard<'static, ()>,
    qemu: PathBuf,
    /// Holds kvmd installed as `ganeti-kvmd`, and the guests' images.
    tmp: tempfile::TempDir,
    /// Whether Ganeti's log file was there before: if not, it goes at the
    /// end (tests/run.sh checks that the suite leaves no file behind).
    log_was_there: bool,
    /// The same for kvmd's journal directory.
    journal_was_there: bool,
}

impl Node {
    /// `None` (skipped) without QEMU or the reference, outside CI.
    fn take() -> Option<Node> {
        let turn = GANETI_PATHS.lock().unwrap_or_else(PoisonError::into_inner);
        let qemu = qemu()?;
        if !Path::new(REFERENCE).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{REFERENCE} is missing under CI; the test command installs ganeti-haskell-3.0"
            );
            eprintln!("SKIPPED: {REFERENCE} not found (apt-get install ganeti-haskell-3.0)");
            return None;
        }
        assert!(
            nix::unistd::geteuid().is_root(),
            "the side-by-side tests use Ganeti's paths and need root"
        );
        assert!(
            !Path::new(SSCONF).join("config.data").exists(),
            "refusing to run on a real Ganeti node"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        symlink(env!("CARGO_BIN_EXE_kvmd"), tmp.path().join("ganeti-kvmd")).expect("install");
        fs::create_dir_all(SSCONF).expect("mkdir ssconf");
        fs::write(Path::new(SSCONF).join("ssconf_hypervisor_list"), "kvm\n").expect("ssconf");
        fs::write(
            Path::new(SSCONF).join("ssconf_enabled_user_shutdown"),
            "True\n",
        )
        .expect("ssconf");
        let host = nix::unistd::gethostname().expect("hostname");
        let capable = format!(
            "{}=True\n{}=True\n",
            kvmd::adapters::ssconf::node_name(),
            host.to_string_lossy()
        );
        fs::write(Path::new(SSCONF).join("ssconf_node_vm_capable"), capable).expect("ssconf");
        let node = Node {
            _turn: turn,
            qemu,
            tmp,
            log_was_there: Path::new(LOG).exists(),
            journal_was_there: Path::new(JOURNAL_DIR).exists(),
        };
        node.clean();
        Some(node)
    }

    /// No daemon running, no run directory, an empty log.
    fn clean(&self) {
        if let Some(pid) = daemon_pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_until("old daemon gone", || (!alive(pid)).then_some(()));
        }
        let _ = fs::remove_dir_all(RUN_DIR);
        fs::create_dir_all(LOG_DIR).expect("mkdir log dir");
        fs::write(LOG, b"").expect("empty log");
    }

    fn start(&self, daemon: Daemon) {
        let mut command = match daemon {
            // Its user checks want Ganeti's users, which a test machine
            // does not have; -d makes it log the QMP lines waited for.
            Daemon::Reference => {
                let mut command = Command::new(REFERENCE);
                command.args(["--no-user-checks", "-d"]);
                command
            }
            Daemon::Kvmd => Command::new(self.tmp.path().join("ganeti-kvmd")),
        };
        let status = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("start daemon");
        assert!(status.success(), "{daemon:?} did not start");
        wait_until(&format!("{daemon:?} pid file"), daemon_pid);
    }

    /// Stops it as Ganeti's daemon-util does: start-stop-daemon finds it
    /// by its pid file and its process name.
    fn stop(&self, daemon: Daemon) {
        let pid = daemon_pid().expect("daemon running");
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
        assert_eq!(comm.trim(), "ganeti-kvmd", "{daemon:?}'s process name");
        let status = Command::new("start-stop-daemon")
            .args(["--stop", "--quiet"])
            .args(["--pidfile", PID_FILE, "--name", "ganeti-kvmd"])
            .status()
            .expect("start-stop-daemon");
        assert!(
            status.success(),
            "start-stop-daemon could not stop {daemon:?}"
        );
        wait_until(&format!("{daemon:?} to exit"), || {
            (!alive(pid)).then_some(())
        });
    }

    fn wait_log(&self, daemon: Daemon, what: &str) {
        wait_until(&format!("{daemon:?} log: {what}"), || {
            fs::read_to_string(LOG)
                .unwrap_or_default()
                .contains(what)
                .then_some(())
        });
    }

    fn wait_watching(&self, daemon: Daemon) {
        match daemon {
            Daemon::Reference => self.wait_log(daemon, &format!("Watch directory \"{CTRL}/\"")),
            Daemon::Kvmd => self.wait_log(daemon, &format!("watching {CTRL}")),
        }
    }

    /// From then on the daemon misses no event of the guest.
    fn wait_negotiated(&self, daemon: Daemon) {
        match daemon {
            Daemon::Reference => self.wait_log(daemon, "Receive QMP message: {\"return\": {}}"),
            Daemon::Kvmd => self.wait_log(daemon, " vm: monitoring"),
        }
    }

    fn wait_decided(&self, daemon: Daemon) {
        match daemon {
            Daemon::Reference => self.wait_log(daemon, &format!("Stop monitor \"{CTRL}/vm.kvmd\"")),
            Daemon::Kvmd => self.wait_log(daemon, " vm: decided "),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {LOG} ----\n{}",
                fs::read_to_string(LOG).unwrap_or_default()
            );
        }
        self.clean();
        if !self.log_was_there {
            let _ = fs::remove_file(LOG);
        }
        if !self.journal_was_there {
            let _ = fs::remove_dir_all(JOURNAL_DIR);
        }
        for name in [
            "ssconf_hypervisor_list",
            "ssconf_enabled_user_shutdown",
            "ssconf_node_vm_capable",
        ] {
            let _ = fs::remove_file(Path::new(SSCONF).join(name));
        }
    }
}

fn daemon_pid() -> Option<i32> {
    let pid = fs::read_to_string(PID_FILE).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(true)
}

/// How the daemon meets the guest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Daemon first, then the guest.
    Normal,
    /// The guest runs (paused) before the daemon starts.
    DaemonAfterVm,
    /// The daemon starts before the control directory exists.
    CtrlDirLate,
}

struct Scenario {
    parts: &'static [&'static [u8]],
    options: Options,
    start: Start,
    /// What stands at `vm.shutdown` beforehand: a stale file, or a symlink
    /// to a file that must not be touched.
    stale: Option<File>,
    act: fn(&mut Guest),
}

impl Scenario {
    fn new(parts: &'static [&'static [u8]], act: fn(&mut Guest)) -> Scenario {
        Scenario {
            parts,
            options: Options::default(),
            start: Start::Normal,
            stale: None,
            act,
        }
    }
}

/// What one daemon left: the file, and whether the symlink's target (if
/// one was planted) still holds its content.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    file: File,
    victim_intact: bool,
}

fn play(node: &Node, daemon: Daemon, scenario: &Scenario) -> Outcome {
    node.clean();
    let ctrl = Path::new(CTRL);
    let victim = node.tmp.path().join("victim");
    fs::write(&victim, b"precious").expect("victim");
    if scenario.start == Start::CtrlDirLate {
        fs::create_dir_all(RUN_DIR).expect("mkdir run dir");
        node.start(daemon);
        fs::create_dir_all(ctrl).expect("mkdir ctrl");
    } else {
        fs::create_dir_all(ctrl).expect("mkdir ctrl");
    }
    let shutdown = ctrl.join("vm.shutdown");
    match scenario.stale {
        Some(File::Regular) => fs::write(&shutdown, b"").expect("stale file"),
        Some(File::Symlink) => symlink(&victim, &shutdown).expect("symlink"),
        _ => {}
    }
    if scenario.start == Start::Normal {
        node.start(daemon);
    }
    if scenario.start != Start::DaemonAfterVm {
        node.wait_watching(daemon);
    }
    let mut guest = stage_guest(node, daemon, scenario.parts, scenario.options);
    if scenario.start == Start::DaemonAfterVm {
        node.start(daemon);
    }
    node.wait_negotiated(daemon);
    (scenario.act)(&mut guest);
    node.wait_decided(daemon);
    node.stop(daemon);
    let file = match fs::symlink_metadata(&shutdown) {
        Err(_) => File::Absent,
        Ok(meta) if meta.file_type().is_symlink() => File::Symlink,
        Ok(_) => File::Regular,
    };
    let victim_intact = fs::read(&victim).expect("victim") == b"precious";
    Outcome {
        file,
        victim_intact,
    }
}

/// A paused guest `vm` whose daemon socket appears in the control
/// directory already listening.
///
/// The original connects once, at the socket's creation, and never again:
/// a socket created a moment before QEMU listens is lost to it (kvmd
/// retries). So QEMU binds in a staging directory, and its socket is linked
/// into the control directory once QEMU answers on QMP, that is, listens:
/// both daemons see the creation of a listening socket.
fn stage_guest(node: &Node, daemon: Daemon, parts: &[&[u8]], options: Options) -> Guest {
    let stage = node.tmp.path().join(format!("stage-{daemon:?}"));
    fs::create_dir_all(&stage).expect("mkdir stage");
    let image = common::boot_image(node.tmp.path(), "vm", parts);
    let mut guest = Guest::start(&node.qemu, &stage, "vm", &image, options);
    assert_eq!(guest.status(), "prelaunch");
    let ctrl = Path::new(CTRL);
    fs::hard_link(stage.join("vm.kvmd"), ctrl.join("vm.kvmd")).expect("link socket");
    guest
}

/// The administrator presses the power button; the daemon is restarted
/// (as `daemon-util stop` and `start` do) before the guest obeys.
fn play_restart(node: &Node, daemon: Daemon) -> File {
    node.clean();
    fs::create_dir_all(CTRL).expect("mkdir ctrl");
    let shutdown = Path::new(CTRL).join("vm.shutdown");
    fs::write(&shutdown, b"").expect("stale file");
    node.start(daemon);
    node.wait_watching(daemon);
    let parts = [
        program::OBEY_BUTTON,
        program::MARK,
        program::WAIT_KEY,
        program::POWER_OFF,
    ];
    let mut guest = stage_guest(node, daemon, &parts, Options::default());
    node.wait_negotiated(daemon);
    guest.cont();
    guest.press_power_button_until_marked();
    // The daemon has taken in the POWERDOWN before it is stopped.
    match daemon {
        Daemon::Reference => node.wait_log(daemon, "\"event\": \"POWERDOWN\""),
        Daemon::Kvmd => wait_until("kvmd's state file", || {
            Path::new(CTRL)
                .with_file_name("kvmd-state/vm.state")
                .exists()
                .then_some(())
        }),
    }
    node.stop(daemon);
    fs::write(LOG, b"").expect("empty log");
    node.start(daemon);
    node.wait_negotiated(daemon);
    guest.press_key();
    node.wait_decided(daemon);
    node.stop(daemon);
    if fs::symlink_metadata(&shutdown).is_ok() {
        File::Regular
    } else {
        File::Absent
    }
}

/// Both daemons decide the same, and that is `expected`.
fn agree(scenario: Scenario, expected: File) {
    let Some(node) = Node::take() else { return };
    let reference = play(&node, Daemon::Reference, &scenario);
    let ours = play(&node, Daemon::Kvmd, &scenario);
    assert_eq!(reference.file, expected, "ganeti-kvmd");
    assert_eq!(ours, reference, "kvmd differs from ganeti-kvmd");
}

/// The original is wrong here (it leaves `wrong`), kvmd is right.
fn kvmd_is_right(scenario: Scenario, wrong: Outcome, right: Outcome) {
    let Some(node) = Node::take() else { return };
    let reference = play(&node, Daemon::Reference, &scenario);
    let ours = play(&node, Daemon::Kvmd, &scenario);
    assert_eq!(
        reference, wrong,
        "ganeti-kvmd no longer decides as documented"
    );
    assert_eq!(ours, right, "kvmd");
}

const USER: Outcome = Outcome {
    file: File::Regular,
    victim_intact: true,
};
const NOT_USER: Outcome = Outcome {
    file: File::Absent,
    victim_intact: true,
};

fn run_to_exit(guest: &mut Guest) {
    guest.cont();
    guest.wait_exit();
}

// Where the original is right: the same files.

#[test]
fn same_on_user_poweroff() {
    agree(
        Scenario::new(&[program::POWER_OFF], run_to_exit),
        File::Regular,
    );
}

#[test]
fn same_on_obeyed_acpi_powerdown() {
    let scenario = Scenario {
        stale: Some(File::Regular),
        ..Scenario::new(&[program::OBEY_BUTTON, program::POWER_OFF], |guest| {
            guest.cont();
            guest.press_power_button();
        })
    };
    agree(scenario, File::Absent);
}

#[test]
fn same_on_sigkill() {
    let scenario = Scenario {
        stale: Some(File::Regular),
        ..Scenario::new(&[], |guest| {
            guest.cont();
            guest.signal(Signal::SIGKILL);
        })
    };
    agree(scenario, File::Absent);
}

#[test]
fn same_when_the_daemon_starts_after_the_vm() {
    let scenario = Scenario {
        start: Start::DaemonAfterVm,
        ..Scenario::new(&[program::POWER_OFF], run_to_exit)
    };
    agree(scenario, File::Regular);
}

#[test]
fn same_when_the_control_dir_is_created_late() {
    let scenario = Scenario {
        start: Start::CtrlDirLate,
        ..Scenario::new(&[program::POWER_OFF], run_to_exit)
    };
    agree(scenario, File::Regular);
}

// Where the original is wrong: kvmd is right.

#[test]
fn right_on_qmp_quit() {
    let scenario = Scenario::new(&[], |guest| {
        guest.cont();
        guest.quit();
    });
    kvmd_is_right(scenario, USER, NOT_USER);
}

#[test]
fn right_on_sigterm_to_qemu() {
    let scenario = Scenario::new(&[], |guest| {
        guest.cont();
        guest.signal(Signal::SIGTERM);
    });
    kvmd_is_right(scenario, USER, NOT_USER);
}

#[test]
fn right_on_reset_under_no_reboot() {
    let scenario = Scenario {
        options: Options {
            no_reboot: true,
            ..Options::default()
        },
        ..Scenario::new(&[program::RESET], run_to_exit)
    };
    kvmd_is_right(scenario, USER, NOT_USER);
}

#[test]
fn right_on_guest_panic() {
    let scenario = Scenario {
        options: Options {
            pvpanic: true,
            ..Options::default()
        },
        ..Scenario::new(&[program::PANIC], run_to_exit)
    };
    kvmd_is_right(scenario, USER, NOT_USER);
}

#[test]
fn right_on_pause_and_resume_then_user_poweroff() {
    let scenario = Scenario::new(&[program::WAIT_KEY, program::POWER_OFF], |guest| {
        guest.cont();
        guest.stop();
        guest.cont();
        guest.press_key();
    });
    kvmd_is_right(scenario, NOT_USER, USER);
}

#[test]
fn right_when_restarted_between_power_button_and_obeying() {
    let Some(node) = Node::take() else { return };
    let reference = play_restart(&node, Daemon::Reference);
    let ours = play_restart(&node, Daemon::Kvmd);
    assert_eq!(
        reference,
        File::Regular,
        "ganeti-kvmd no longer decides as documented"
    );
    assert_eq!(ours, File::Absent, "kvmd");
}

#[test]
fn right_on_a_symlinked_shutdown_file() {
    let scenario = Scenario {
        stale: Some(File::Symlink),
        ..Scenario::new(&[program::POWER_OFF], run_to_exit)
    };
    // The original writes through the link and truncates its target.
    let wrong = Outcome {
        file: File::Symlink,
        victim_intact: false,
    };
    kvmd_is_right(scenario, wrong, USER);
}
