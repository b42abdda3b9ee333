//! Shared parts of the end-to-end tests: the real `kvmd` binary, real QEMU
//! guests booting 512-byte boot sectors, and a QMP client playing Ganeti's
//! (and the administrator's) part on the guest's second QMP socket.
//!
//! Every wait has a deadline and waits for the thing it checks: a line in
//! the daemon's log, QEMU's exit, an answer over QMP. Nothing sleeps and
//! hopes.

#![allow(dead_code)] // each test file uses a different part of this

pub mod bound;
pub mod cli;
pub mod peer;
pub mod trixie;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Generous: the suite runs on 2 cores with several TCG guests at once.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// How often a waiting test looks again.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` returns `Some`, or panics naming `what`.
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Skips a test whose part `why` names is missing: a line on stderr, or
/// under CI (`CI=true`), where tests must not pass by skipping, a failure.
pub fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {why}"
    );
    eprintln!("SKIPPED: {why}");
}

/// A work directory on tmpfs (as /run is on a node), removed when dropped.
pub fn tmpfs_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/dev/shm")
        .expect("work dir on tmpfs")
}

/// `systemd-analyze`, run so that it leaves nothing on the host: its
/// `verify` and `security` load units the way a system manager does, and
/// that touches `/run/systemd/systemd-units-load` on the machine. As root
/// it gets a private, empty /run (a mount namespace of its own); as any
/// other user it cannot write there anyway.
pub fn systemd_analyze() -> Command {
    if !nix::unistd::geteuid().is_root() {
        return Command::new("systemd-analyze");
    }
    let mut command = Command::new("unshare");
    command.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        r#"mount -t tmpfs -o mode=755 kvmd-test-run /run && exec systemd-analyze "$@""#,
        "systemd-analyze",
    ]);
    command
}

/// The QEMU binary, or `None` (test skipped) when it is missing outside
/// CI. Under CI (`CI=true`) a missing QEMU fails the test: end-to-end
/// tests must not pass by skipping.
pub fn qemu() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("qemu-system-x86_64"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "qemu-system-x86_64 is missing under CI; the test command installs it"
        );
        eprintln!("SKIPPED: qemu-system-x86_64 not found (apt-get install qemu-system-x86)");
    }
    found
}

/// Boot-sector programs (16-bit real mode, position-independent). Port
/// facts from QEMU's `pc` machine: PIIX4 ACPI PM1a status 0x600, enable
/// 0x602, control 0x604; keyboard controller 0x64; pvpanic 0x505.
pub mod program {
    /// `out 0x604, 0x2000`: SLP_EN with SLP_TYP 0, the S5 soft-off.
    pub const POWER_OFF: &[u8] = &[0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF];
    /// `hlt; jmp back to hlt`.
    pub const HALT: &[u8] = &[0xF4, 0xEB, 0xFD];
    /// Enable the ACPI power button, poll its status bit, then power off.
    pub const OBEY_BUTTON: &[u8] = &[
        0xBA, 0x02, 0x06, // mov dx, 0x602
        0xB8, 0x00, 0x01, // mov ax, 0x0100 (PWRBTN_EN)
        0xEF, // out dx, ax
        0xBA, 0x00, 0x06, // mov dx, 0x600
        0xED, // poll: in ax, dx
        0xA9, 0x00, 0x01, // test ax, 0x0100 (PWRBTN_STS)
        0x74, 0xFA, // jz poll
    ];
    /// `xor ax, ax; mov ds, ax; mov byte [0x500], 0xA5`: a mark in RAM
    /// the test can read over QMP (see [`super::Guest::marked`]).
    pub const MARK: &[u8] = &[0x31, 0xC0, 0x8E, 0xD8, 0xC6, 0x06, 0x00, 0x05, 0xA5];
    /// BIOS `int 0x16`, ah=0: wait for a key.
    pub const WAIT_KEY: &[u8] = &[0x31, 0xC0, 0xCD, 0x16];
    /// On the first boot, mark CMOS byte 0x7E and sleep (ACPI S3:
    /// SLP_TYP 1); after the wake-up reboot, go on after this code.
    pub const SLEEP_ONCE: &[u8] = &[
        0xB0, 0x7E, 0xE6, 0x70, // mov al, 0x7E; out 0x70, al
        0xE4, 0x71, // in al, 0x71
        0x3C, 0xA5, // cmp al, 0xA5
        0x74, 0x12, // je past the first-boot code (18 bytes)
        0xB0, 0x7E, 0xE6, 0x70, // mov al, 0x7E; out 0x70, al
        0xB0, 0xA5, 0xE6, 0x71, // mov al, 0xA5; out 0x71, al
        0xBA, 0x04, 0x06, 0xB8, 0x00, 0x24, 0xEF, // out 0x604, 0x2400 (S3)
        0xF4, 0xEB, 0xFD, // halt while asleep
    ];
    /// Keyboard controller pulse: reset the machine.
    pub const RESET: &[u8] = &[0xB0, 0xFE, 0xE6, 0x64];
    /// Write 1 to pvpanic's port: "guest panicked".
    pub const PANIC: &[u8] = &[0xB0, 0x01, 0xBA, 0x05, 0x05, 0xEE];
    /// Write 2 to pvpanic's port: "crash kernel loaded" (kdump).
    pub const CRASH_LOADED: &[u8] = &[0xB0, 0x02, 0xBA, 0x05, 0x05, 0xEE];
    /// On the first boot, mark CMOS byte 0x7E (kept across a reset) and
    /// reset; on the next boot, go on after this code.
    pub const RESET_ONCE: &[u8] = &[
        0xB0, 0x7E, 0xE6, 0x70, // mov al, 0x7E; out 0x70, al
        0xE4, 0x71, // in al, 0x71
        0x3C, 0xA5, // cmp al, 0xA5
        0x74, 0x0F, // je past the first-boot code (15 bytes)
        0xB0, 0x7E, 0xE6, 0x70, // mov al, 0x7E; out 0x70, al
        0xB0, 0xA5, 0xE6, 0x71, // mov al, 0xA5; out 0x71, al
        0xB0, 0xFE, 0xE6, 0x64, // reset
        0xF4, 0xEB, 0xFD, // halt until the reset lands
    ];
}

/// A bootable 512-byte image of `parts`, followed by a halt loop.
pub fn boot_image(dir: &Path, name: &str, parts: &[&[u8]]) -> PathBuf {
    let mut sector: Vec<u8> = parts.concat();
    sector.extend_from_slice(program::HALT);
    assert!(sector.len() <= 510, "boot sector code too long");
    sector.resize(510, 0);
    sector.extend_from_slice(&[0x55, 0xAA]);
    let path = dir.join(format!("{name}.img"));
    fs::write(&path, sector).expect("write boot image");
    path
}

/// The daemon under test, run as a user would: the built binary, in the
/// foreground, on a control directory of the test's own.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
    pub pid_file: PathBuf,
}

impl Daemon {
    /// With `-d`: every inotify event and QMP line in the log.
    pub fn start(ctrl: &Path, work: &Path) -> Daemon {
        Daemon::start_with(ctrl, work, &["-d"])
    }

    pub fn start_with(ctrl: &Path, work: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_wrapped(ctrl, work, &[], extra)
    }

    /// Runs kvmd under `wrapper` (for example `prlimit --nofile=32`).
    pub fn start_wrapped(ctrl: &Path, work: &Path, wrapper: &[&str], extra: &[&str]) -> Daemon {
        let log = work.join("kvmd.log");
        let pid_file = work.join("kvmd.pid");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(env!("CARGO_BIN_EXE_kvmd"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_kvmd")),
        };
        let child = command
            .args(extra)
            .args(["-f", "--no-ssconf", "--ctrl-dir"])
            .arg(ctrl)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--log-file")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kvmd");
        let daemon = Daemon {
            child,
            log,
            pid_file,
        };
        daemon.wait_log(" started on ", 1);
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far. Lossy: a raw byte a hostile peer or name slipped
    /// into a line must not hide the rest of the log from the test.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// How many log lines contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits for the line with `needle` and asserts there is no second
    /// one (call it once the case is over, so a repeat would be there).
    pub fn assert_logged_once(&self, needle: &str) -> String {
        let line = self.wait_log(needle, 1);
        let count = self.count_log(needle);
        assert_eq!(count, 1, "{count} lines with {needle:?}; the first: {line}");
        line
    }

    /// Whether the process is still there (not exited, not a zombie).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait kvmd").is_none()
    }

    /// The process's open descriptors, as `/proc` shows them.
    pub fn descriptors(&self) -> Vec<String> {
        let dir = format!("/proc/{}/fd", self.pid());
        let mut fds: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(Result::ok)
            .map(|entry| {
                let target = fs::read_link(entry.path()).unwrap_or_default();
                format!(
                    "{} -> {}",
                    entry.file_name().to_string_lossy(),
                    target.display()
                )
            })
            .collect();
        fds.sort();
        fds
    }

    /// A `kB` field of `/proc/<pid>/status`, such as `VmRSS` or `VmHWM`
    /// (the peak resident set).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// Whether the daemon sleeps in `epoll_wait`, i.e. has nothing to do.
    /// `None` where the kernel does not say (`wchan` hidden).
    pub fn is_idle(&self) -> Option<bool> {
        let wchan = fs::read_to_string(format!("/proc/{}/wchan", self.pid())).ok()?;
        match wchan.trim() {
            "" | "0" => None,
            wchan => Some(wchan.contains("epoll")),
        }
    }

    /// The `count`-th log line containing `needle`, once it is there.
    pub fn wait_log(&self, needle: &str, count: usize) -> String {
        wait_until(&format!("log line #{count} with {needle:?}"), || {
            self.log_text()
                .lines()
                .filter(|line| line.contains(needle))
                .nth(count - 1)
                .map(str::to_owned)
        })
    }

    /// Waits until the daemon negotiated with `instance` and knows its
    /// state: from then on no event of it can be missed.
    pub fn wait_monitoring(&self, instance: &str) {
        self.wait_log(&format!(" {instance}: monitoring"), 1);
    }

    /// The daemon's decision line for `instance`.
    pub fn wait_decision(&self, instance: &str) -> String {
        self.wait_log(&format!(" {instance}: decided "), 1)
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal kvmd");
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_until("kvmd to exit", || self.child.try_wait().expect("wait kvmd"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- kvmd log ----\n{}", self.log_text());
        }
    }
}

/// The test's own QMP connection to a guest (Ganeti's `<instance>.qmp`).
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The events read so far (between the replies), oldest first.
    events: Vec<Value>,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let stream = wait_until(&format!("QMP socket {}", path.display()), || {
            UnixStream::connect(path).ok()
        });
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("read timeout");
        let writer = stream.try_clone().expect("clone");
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.next_message().expect("greeting");
        assert!(greeting.get("QMP").is_some(), "no greeting: {greeting}");
        qmp.execute("qmp_capabilities", json!({}))
            .expect("negotiate");
        qmp
    }

    fn next_message(&mut self) -> Option<Value> {
        let mut line = String::new();
        let message: Value = match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => serde_json::from_str(&line).expect("QEMU sends JSON"),
        };
        if message.get("event").is_some() {
            self.events.push(message.clone());
        }
        Some(message)
    }

    /// How many `event`s QEMU sent this connection up to now: a command's
    /// reply comes after every event emitted before it.
    pub fn count_events(&mut self, event: &str) -> usize {
        self.execute("query-status", json!({}));
        self.events.iter().filter(|e| e["event"] == event).count()
    }

    /// Runs a command; `None` when QEMU hung up first (as `quit` may).
    pub fn execute(&mut self, command: &str, arguments: Value) -> Option<Value> {
        let request = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{request}").ok()?;
        loop {
            let message = self.next_message()?;
            if let Some(value) = message.get("return") {
                return Some(value.clone());
            }
            if let Some(error) = message.get("error") {
                panic!("QEMU refused {command}: {error}");
            }
        }
    }
}

/// Options of a guest beyond its boot sector.
#[derive(Clone, Copy, Default)]
pub struct Options {
    pub no_reboot: bool,
    pub no_shutdown: bool,
    pub pvpanic: bool,
    /// `-action panic=none`: a panicked guest runs on (QEMU 6.0+).
    pub panic_runs_on: bool,
}

/// A real QEMU guest, started paused (`-S`) with two QMP sockets in the
/// control directory: `<name>.kvmd` for the daemon, `<name>.qmp` for the
/// test.
pub struct Guest {
    pub name: String,
    child: Child,
    qmp_path: PathBuf,
    qmp: Option<Qmp>,
}

impl Guest {
    pub fn start(qemu: &Path, ctrl: &Path, name: &str, image: &Path, options: Options) -> Guest {
        let qmp_path = ctrl.join(format!("{name}.qmp"));
        let mut command = Command::new(qemu);
        command
            .args([
                "-machine",
                "pc,accel=tcg",
                "-nodefaults",
                "-display",
                "none",
            ])
            .args(["-m", "16", "-S", "-no-user-config"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=ide", image.display()))
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                ctrl.join(format!("{name}.kvmd")).display()
            ))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        if options.no_reboot {
            command.arg("-no-reboot");
        }
        if options.no_shutdown {
            command.arg("-no-shutdown");
        }
        if options.pvpanic {
            command.args(["-device", "pvpanic"]);
        }
        if options.panic_runs_on {
            command.args(["-action", "panic=none"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start qemu");
        Guest {
            name: name.to_owned(),
            child,
            qmp_path,
            qmp: None,
        }
    }

    pub fn qmp(&mut self) -> &mut Qmp {
        let path = &self.qmp_path;
        self.qmp.get_or_insert_with(|| Qmp::connect(path))
    }

    pub fn execute(&mut self, command: &str) -> Option<Value> {
        self.qmp().execute(command, json!({}))
    }

    pub fn cont(&mut self) {
        self.execute("cont").expect("cont");
    }

    pub fn stop(&mut self) {
        self.execute("stop").expect("stop");
    }

    pub fn quit(&mut self) {
        let _ = self.execute("quit");
        self.wait_exit();
    }

    pub fn status(&mut self) -> String {
        let status = self.execute("query-status").expect("query-status");
        status["status"].as_str().unwrap_or_default().to_owned()
    }

    pub fn signal(&mut self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal qemu");
        self.wait_exit();
    }

    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("wait qemu").is_some()
    }

    pub fn wait_exit(&mut self) {
        let name = self.name.clone();
        wait_until(&format!("QEMU {name} to exit"), || {
            self.child.try_wait().expect("wait qemu")
        });
    }

    /// Repeats `command` until QEMU exits: presses that land while SeaBIOS
    /// still boots, before the guest listens, are lost.
    pub fn repeat_until_exit(&mut self, command: &str, arguments: Value) {
        let deadline = Instant::now() + DEADLINE;
        while !self.exited() {
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            // QEMU may exit between the check and the command.
            let _ = self.qmp().execute(command, arguments.clone());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the guest has run [`program::MARK`].
    pub fn marked(&mut self) -> bool {
        let memory = self
            .qmp()
            .execute(
                "human-monitor-command",
                json!({"command-line": "xp /1bx 0x500"}),
            )
            .expect("xp");
        memory.as_str().is_some_and(|text| text.contains("0xa5"))
    }

    /// Presses the ACPI power button until the guest has seen it and run
    /// [`program::MARK`] (presses during SeaBIOS's boot are lost).
    pub fn press_power_button_until_marked(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        while !self.marked() {
            assert!(
                Instant::now() < deadline,
                "{} never saw the button",
                self.name
            );
            self.execute("system_powerdown");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The administrator's ACPI power button, until the guest obeys.
    pub fn press_power_button(&mut self) {
        self.repeat_until_exit("system_powerdown", json!({}));
    }

    /// A key for a guest waiting in `int 0x16`, until it acts.
    pub fn press_key(&mut self) {
        let key = json!({"keys": [{"type": "qcode", "data": "ret"}]});
        self.repeat_until_exit("send-key", key);
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's world: a work directory holding the control directory.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub ctrl: PathBuf,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ctrl = tmp.path().join("ctrl");
        fs::create_dir(&ctrl).expect("mkdir ctrl");
        World { tmp, ctrl }
    }

    pub fn image(&self, name: &str, parts: &[&[u8]]) -> PathBuf {
        boot_image(self.tmp.path(), name, parts)
    }

    pub fn shutdown_file(&self, instance: &str) -> PathBuf {
        self.ctrl.join(format!("{instance}.shutdown"))
    }

    /// A stale `<instance>.shutdown`, as left by an earlier run: every
    /// "not a user shutdown" case must remove it.
    pub fn plant_stale(&self, instance: &str) {
        fs::write(self.shutdown_file(instance), b"").expect("plant stale file");
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// Asserts the verdict in the decision line and the file on disk.
pub fn assert_user_shutdown(world: &World, daemon: &Daemon, instance: &str, user: bool) {
    let line = daemon.wait_decision(instance);
    let file = world.shutdown_file(instance);
    if user {
        assert!(line.contains("decided user shutdown"), "{line}");
        assert!(file.is_file(), "{} missing after: {line}", file.display());
    } else {
        assert!(line.contains("decided not a user shutdown"), "{line}");
        assert!(!file.exists(), "{} left after: {line}", file.display());
    }
}
