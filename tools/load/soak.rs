//! Soak mode: kvmd alone, for minutes, against a fleet of fake QEMUs that
//! never stops churning, every decision checked.
//!
//! ```sh
//! cargo bench --bench load -- --soak 660 --instances 300 [--restart-every 60] [--seed N]
//! ```
//!
//! About `--instances` fake QEMUs are alive at all times, in a temporary
//! control directory of their own (kvmd runs standalone, so this needs no
//! root and touches nothing of Ganeti's). Each plays QEMU 7.2's transcript
//! (greeting, `qmp_capabilities`, `query-status` answered with the guest's
//! real state), lives 0.1 to 3 s with some noise (RTC_CHANGE, reboots, a
//! pause), then ends with one scenario whose right verdict is known (see
//! [`Scenario`]). A few are hostile ([`Hostile`]). Before a socket is
//! created, a stale `<instance>.shutdown` is planted or removed at random,
//! so each verdict shows as a creation or a removal. Names come back from a
//! pool (a socket recreated under the same name, sometimes before the last
//! one was decided), and some are new.
//!
//! A decision is kvmd's `<instance>: decided ...` log line; the verdict is
//! checked in that line and in the shutdown file. Missing: no decision 10 s
//! after the hang-up. `--restart-every S` SIGKILLs kvmd every S seconds
//! (once everything sent is read and every hang-up decided) and starts it
//! again: guests paused, powered down (ACPI) or powered off under
//! `-no-shutdown` before the kill must still be decided right after.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::Events;

use super::{Fleet, GREETING, Running, Status, Which, kvmd_command, own_cpu, spawn, why_failed};

/// What the command line asks of a soak run.
pub struct Options {
    pub seconds: u64,
    pub instances: usize,
    pub restart_every: Option<u64>,
    pub seed: Option<u64>,
    /// Longest life of one QEMU, in seconds (the shortest is 0.1 s).
    pub max_life: f64,
    /// Where the control and state directories go (default: a tmpfs, as
    /// `/run` is on a node, when /dev/shm is one).
    pub dir: Option<PathBuf>,
    /// A verdict hook for kvmd to run (`--hook-ms`: it counts its runs).
    pub hook: Option<PathBuf>,
}

/// /dev/shm when it is a tmpfs, else the temporary directory.
fn default_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    match nix::sys::statfs::statfs(shm) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => shm.to_owned(),
        _ => std::env::temp_dir(),
    }
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

const MIN_LIFE: f64 = 0.1;
/// No decision this long after the hang-up: missing.
const DECISION_LIMIT: Duration = Duration::from_secs(10);
/// Not negotiated this long after its socket appeared: never attached.
const ATTACH_LIMIT: Duration = Duration::from_secs(15);
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Share of instances given a name never used before.
const NEW_NAMES: f64 = 0.1;
/// Share of exits followed at once by a new QEMU of the same name (as
/// `gnt-instance reboot` does), before kvmd decided the old one.
const RECREATE_AT_ONCE: f64 = 0.05;
/// Share of sockets bound a moment (1-20 ms) before they listen.
const BIND_EARLY: f64 = 0.3;
/// Share of hostile peers.
const HOSTILE: f64 = 0.08;
/// Pool of names to reuse, per instance kept alive.
const POOL_PER_INSTANCE: f64 = 1.5;

/// xorshift64*: the tool needs cheap, reproducible draws, not a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low).max(0.0) * self.unit()
    }
}

/// A QMP event as QEMU 7.2 sends it; the timestamp is taken when sent.
#[derive(Clone, Copy)]
struct Ev {
    name: &'static str,
    data: Option<&'static str>,
}

impl Ev {
    fn render(self) -> Vec<u8> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let data = self
            .data
            .map_or(String::new(), |d| format!(", \"data\": {d}"));
        format!(
            "{{\"timestamp\": {{\"seconds\": {}, \"microseconds\": {}}}, \"event\": \"{}\"{data}}}\r\n",
            now.as_secs(),
            now.subsec_micros(),
            self.name
        )
        .into_bytes()
    }
}

const fn ev(name: &'static str, data: Option<&'static str>) -> Ev {
    Ev { name, data }
}

const USER_OFF: Ev = ev(
    "SHUTDOWN",
    Some(r#"{"guest": true, "reason": "guest-shutdown"}"#),
);
const QUIT: Ev = ev(
    "SHUTDOWN",
    Some(r#"{"guest": false, "reason": "host-qmp-quit"}"#),
);
const SIGNAL: Ev = ev(
    "SHUTDOWN",
    Some(r#"{"guest": false, "reason": "host-signal"}"#),
);
const NO_REBOOT: Ev = ev(
    "SHUTDOWN",
    Some(r#"{"guest": true, "reason": "guest-reset"}"#),
);
const PANIC_OFF: Ev = ev(
    "SHUTDOWN",
    Some(r#"{"guest": true, "reason": "guest-panic"}"#),
);
const PANICKED: Ev = ev("GUEST_PANICKED", Some(r#"{"action": "poweroff"}"#));
const POWERDOWN: Ev = ev("POWERDOWN", None);
const STOP: Ev = ev("STOP", None);
const RESUME: Ev = ev("RESUME", None);
const REBOOT: Ev = ev("RESET", Some(r#"{"guest": true, "reason": "guest-reset"}"#));
/// Events that say nothing about who stops the guest.
const NOISE: [Ev; 4] = [
    ev("RTC_CHANGE", Some(r#"{"offset": 1}"#)),
    ev(
        "NIC_RX_FILTER_CHANGED",
        Some(r#"{"name": "net0", "path": "/machine/peripheral/net0/virtio-backend"}"#),
    ),
    ev("BALLOON_CHANGE", Some(r#"{"actual": 1073741824}"#)),
    ev(
        "VSERPORT_CHANGE",
        Some(r#"{"id": "channel0", "open": true}"#),
    ),
];

/// Lines a hostile peer sends that must change nothing. (No stray
/// `return` or `error`: kvmd would rightly take one for the reply to its
/// pending `query-status`.)
const GARBAGE: [&[u8]; 8] = [
    GREETING,
    b"this is not json\r\n",
    b"[\"SHUTDOWN\", {\"guest\": true}]\r\n",
    b"{\"event\": 42}\r\n",
    b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": \"yes\", \"reason\": \"guest-shutdown\"}}\r\n",
    b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"\r\n",
    b"\x00\xff\xfe\x01 binary \x1b[2J\r\n",
    b"{}\r\n",
];

/// How a guest's life ends, each with its one right verdict (the rule in
/// core/src/decision.rs; the events are QEMU 7.2's, see docs/qemu.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// SHUTDOWN guest=true guest-shutdown: user.
    UserPoweroff,
    /// QMP `quit`: SHUTDOWN guest=false host-qmp-quit: not user.
    HostQuit,
    /// SIGTERM to QEMU: SHUTDOWN guest=false host-signal: not user.
    HostSignal,
    /// POWERDOWN (ACPI button), the guest obeys: SHUTDOWN guest=true: not
    /// user.
    AcpiObeyed,
    /// SIGKILL or a crash: the hang-up alone: not user.
    Killed,
    /// `stop`, then `quit`: not user.
    StopThenQuit,
    /// `stop`, `cont`, then the guest powers off: user.
    StopResumeThenPoweroff,
    /// The guest reboots under `-no-reboot`: SHUTDOWN guest-reset: not user.
    NoRebootReset,
    /// GUEST_PANICKED, STOP, SHUTDOWN guest-panic: not user.
    Panic,
    /// `-no-shutdown`: the guest powers off (SHUTDOWN, STOP, QEMU stays),
    /// later `quit` sends a second SHUTDOWN: the first decides: user.
    NoShutdownThenQuit,
    /// The ACPI button, but the guest rebooted (RESET), then powered off
    /// by itself: user.
    AcpiThenRebootThenPoweroff,
}

const SCENARIOS: [Scenario; 11] = [
    Scenario::UserPoweroff,
    Scenario::HostQuit,
    Scenario::HostSignal,
    Scenario::AcpiObeyed,
    Scenario::Killed,
    Scenario::StopThenQuit,
    Scenario::StopResumeThenPoweroff,
    Scenario::NoRebootReset,
    Scenario::Panic,
    Scenario::NoShutdownThenQuit,
    Scenario::AcpiThenRebootThenPoweroff,
];

impl Scenario {
    fn user(self) -> bool {
        matches!(
            self,
            Scenario::UserPoweroff
                | Scenario::StopResumeThenPoweroff
                | Scenario::NoShutdownThenQuit
                | Scenario::AcpiThenRebootThenPoweroff
        )
    }

    fn index(self) -> usize {
        SCENARIOS.iter().position(|&s| s == self).unwrap_or(0)
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::UserPoweroff => "user poweroff",
            Scenario::HostQuit => "host quit",
            Scenario::HostSignal => "host signal",
            Scenario::AcpiObeyed => "ACPI powerdown obeyed",
            Scenario::Killed => "killed (no SHUTDOWN)",
            Scenario::StopThenQuit => "stop then quit",
            Scenario::StopResumeThenPoweroff => "stop/cont then user poweroff",
            Scenario::NoRebootReset => "reset under -no-reboot",
            Scenario::Panic => "panic",
            Scenario::NoShutdownThenQuit => "-no-shutdown poweroff then quit",
            Scenario::AcpiThenRebootThenPoweroff => "ACPI, reboot, then user poweroff",
        }
    }
}

/// A hostile peer. Only [`Hostile::BeforeGreeting`] changes the verdict
/// (not user: nothing was negotiated); the others wrap a scenario whose
/// verdict must not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostile {
    No,
    /// Hangs up before its greeting.
    BeforeGreeting,
    /// Garbage lines during its life.
    Garbage,
    /// A SHUTDOWN guest=true line longer than 64 KiB (kvmd must drop it).
    LongLine,
    /// Its last message arrives in pieces, milliseconds apart.
    Fragmented,
    /// Its last message has no line ending before the hang-up.
    Unterminated,
}

const HOSTILES: [Hostile; 6] = [
    Hostile::No,
    Hostile::BeforeGreeting,
    Hostile::Garbage,
    Hostile::LongLine,
    Hostile::Fragmented,
    Hostile::Unterminated,
];

impl Hostile {
    fn index(self) -> usize {
        HOSTILES.iter().position(|&h| h == self).unwrap_or(0)
    }

    fn name(self) -> &'static str {
        match self {
            Hostile::No => "none",
            Hostile::BeforeGreeting => "hang-up before greeting",
            Hostile::Garbage => "garbage lines",
            Hostile::LongLine => "line > 64 KiB",
            Hostile::Fragmented => "last message in pieces",
            Hostile::Unterminated => "last message unterminated",
        }
    }
}

enum Act {
    Event(Ev),
    Raw(Vec<u8>),
    /// What `query-status` answers from now on.
    Status(Status),
    /// QEMU exits.
    Exit,
}

struct Step {
    /// Seconds after the first negotiation.
    at: f64,
    act: Act,
}

/// The life of one QEMU, from its first negotiation to its exit.
fn script(rng: &mut Rng, scenario: Scenario, hostile: Hostile, max_life: f64) -> Vec<Step> {
    let end = rng.between(MIN_LIFE, max_life.max(MIN_LIFE));
    // Noise before `turn`; the scenario's own events after it, and before
    // `last`, which leaves room for a last message in pieces.
    let turn = end * 0.6;
    let last = end - 0.012;
    let mut steps = Vec::new();
    let mut at = |at: f64, act: Act| steps.push(Step { at, act });
    for _ in 0..rng.below(4) {
        at(
            rng.between(0.0, last),
            Act::Event(NOISE[rng.below(NOISE.len())]),
        );
    }
    if rng.chance(0.2) {
        for _ in 0..=rng.below(3) {
            at(rng.between(0.0, turn), Act::Event(REBOOT));
        }
    } else if rng.chance(0.15) {
        let stop = rng.between(0.0, turn);
        let resume = rng.between(stop, turn);
        at(stop, Act::Status(Status::Paused));
        at(stop, Act::Event(STOP));
        at(resume, Act::Status(Status::Running));
        at(resume, Act::Event(RESUME));
    }
    match hostile {
        Hostile::Garbage => {
            for _ in 0..=rng.below(3) {
                let line = GARBAGE[rng.below(GARBAGE.len())];
                at(rng.between(0.0, last), Act::Raw(line.to_vec()));
            }
        }
        Hostile::LongLine => {
            let mut line = USER_OFF.render();
            let pad = format!(", \"pad\": \"{}\"}}}}\r\n", "x".repeat(70 * 1024));
            line.truncate(line.len() - 4); // `}}\r\n`
            line.extend_from_slice(pad.as_bytes());
            at(rng.between(0.0, turn), Act::Raw(line));
        }
        _ => {}
    }
    let mid = rng.between(turn, last);
    let later = rng.between(mid, last);
    let finale: &[Ev] = match scenario {
        Scenario::UserPoweroff => &[USER_OFF],
        Scenario::HostQuit => &[QUIT],
        Scenario::HostSignal => &[SIGNAL],
        Scenario::AcpiObeyed => {
            at(mid, Act::Event(POWERDOWN));
            if rng.chance(0.3) {
                at(later, Act::Event(POWERDOWN));
            }
            &[USER_OFF]
        }
        Scenario::Killed => &[],
        Scenario::StopThenQuit => {
            at(mid, Act::Status(Status::Paused));
            at(mid, Act::Event(STOP));
            &[QUIT]
        }
        Scenario::StopResumeThenPoweroff => {
            at(mid, Act::Status(Status::Paused));
            at(mid, Act::Event(STOP));
            at(later, Act::Status(Status::Running));
            at(later, Act::Event(RESUME));
            &[USER_OFF]
        }
        Scenario::NoRebootReset => &[NO_REBOOT],
        Scenario::Panic => &[PANICKED, STOP, PANIC_OFF],
        Scenario::NoShutdownThenQuit => {
            at(mid, Act::Event(USER_OFF));
            at(mid, Act::Status(Status::Shutdown));
            at(mid, Act::Event(STOP));
            &[QUIT]
        }
        Scenario::AcpiThenRebootThenPoweroff => {
            at(mid, Act::Event(POWERDOWN));
            at(later, Act::Event(REBOOT));
            &[USER_OFF]
        }
    };
    let words: Vec<u8> = finale.iter().flat_map(|e| e.render()).collect();
    match hostile {
        Hostile::Fragmented if !words.is_empty() => {
            let a = 1 + rng.below(words.len() - 1);
            let b = a + rng.below(words.len() - a);
            at(end - 0.008, Act::Raw(words[..a].to_vec()));
            at(end - 0.004, Act::Raw(words[a..b].to_vec()));
            at(end, Act::Raw(words[b..].to_vec()));
        }
        Hostile::Unterminated if !words.is_empty() => {
            at(end, Act::Raw(words[..words.len() - 2].to_vec()));
        }
        _ => {
            for &e in finale {
                at(end, Act::Event(e));
            }
        }
    }
    at(end, Act::Exit);
    // Stable: steps at the same moment keep their order.
    steps.sort_by(|a, b| a.at.total_cmp(&b.at));
    steps
}

/// One QEMU, alive.
struct Life {
    id: u64,
    slot: usize,
    name: String,
    /// A name used once (not from the pool).
    new_name: bool,
    /// Made at once after a QEMU of the same name exited.
    recreated: bool,
    scenario: Scenario,
    hostile: Hostile,
    steps: Vec<Step>,
    next: usize,
    created: Instant,
    /// When it first negotiated (pushed back by the time a restart held
    /// the fleet).
    origin: Option<Instant>,
    /// A socket bound but not yet listening, and when it will.
    early: Option<(OwnedFd, Instant)>,
    /// During a restart: its count of clients when kvmd was killed.
    clients_at_kill: Option<u32>,
    /// It was negotiated when kvmd was killed.
    killed_under: bool,
}

enum Fate {
    Alive,
    Exited,
    NeverAttached,
}

/// A QEMU that exited, awaiting kvmd's decision.
struct Pending {
    id: u64,
    scenario: Scenario,
    hostile: Hostile,
    user: bool,
    new_name: bool,
    /// It lived through a kill of kvmd.
    across: bool,
    at: Instant,
    /// Seconds since the epoch, for the latency to the log line's time.
    wall: f64,
}

#[derive(PartialEq)]
enum Phase {
    Running,
    /// Before a kill: steps held until everything sent is read and every
    /// hang-up decided, then quiet for `SETTLE`.
    Draining {
        since: Instant,
        quiet: Option<Instant>,
    },
    /// After a restart: steps held until every QEMU that was negotiated
    /// before is negotiated with the new kvmd.
    Reattaching {
        held: Instant,
        since: Instant,
    },
}

const SETTLE: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Stats {
    incarnations: u64,
    new_names: u64,
    pool_names: u64,
    recreated_at_once: u64,
    bound_early: u64,
    planted: u64,
    hostile: [u64; 6],
    decisions: u64,
    right: u64,
    wrong: u64,
    missing: u64,
    lost_in_restart: u64,
    spurious: u64,
    never_attached: u64,
    not_reattached: u64,
    drain_timeouts: u64,
    files_checked: u64,
    by_scenario: [(u64, u64); 11],
    user_decisions: u64,
    /// Decisions of QEMUs that lived through a kill: right, wrong.
    across: (u64, u64),
    latencies_us: Vec<u64>,
    log_lines: u64,
    warnings: u64,
    hostile_warnings: u64,
    hooks_superseded: u64,
    hooks_orphaned: u64,
    errors: u64,
    restored: u64,
    starts: u64,
    restarts: u64,
    examples: Vec<String>,
}

impl Stats {
    fn example(&mut self, what: String) {
        if self.examples.len() < 20 {
            eprintln!("soak: {what}");
            self.examples.push(what);
        }
    }
}

/// kvmd's log file, read as it grows.
struct LogTail {
    path: PathBuf,
    file: Option<fs::File>,
    partial: Vec<u8>,
}

impl LogTail {
    fn lines(&mut self) -> Vec<String> {
        if self.file.is_none() {
            self.file = fs::File::open(&self.path).ok();
        }
        let Some(file) = &mut self.file else {
            return Vec::new();
        };
        let _ = file.read_to_end(&mut self.partial);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Seconds since the epoch of a log line's `YYYY-MM-DD HH:MM:SS,uuuuuu`,
/// modulo a day (enough for a latency).
fn day_seconds(line: &str) -> Option<f64> {
    let time = line.get(11..26)?;
    let h: f64 = time.get(0..2)?.parse().ok()?;
    let m: f64 = time.get(3..5)?.parse().ok()?;
    let s: f64 = time.get(6..8)?.parse().ok()?;
    let us: f64 = time.get(9..15)?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s + us / 1e6)
}

struct Soak {
    opts: Options,
    rng: Rng,
    work: PathBuf,
    ctrl: PathBuf,
    state: PathBuf,
    program: PathBuf,
    fleet: Fleet,
    daemon: Running,
    lives: Vec<Life>,
    next_id: u64,
    free_names: Vec<String>,
    live_names: HashSet<String>,
    pending: HashMap<String, VecDeque<Pending>>,
    pending_count: usize,
    log: LogTail,
    kills: Vec<Instant>,
    /// VmHWM and CPU of kvmds killed so far.
    peak_rss_kib: u64,
    cpu_before: Duration,
    stats: Stats,
    failed: Option<String>,
    /// Decisions per name (each owes one hook run, `--hook-ms`).
    decided_by_name: HashMap<String, u64>,
}

/// Runs a soak; prints progress and the summary. True if it passed.
pub fn run(opts: Options, program: &Path) -> bool {
    let seed = opts.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    // kvmd's log and stderr on the disk; its control and state
    // directories where `--dir` says.
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().to_owned();
    let dirs = tempfile::Builder::new()
        .prefix("kvmd-soak")
        .tempdir_in(opts.dir.clone().unwrap_or_else(default_dir))
        .expect("tempdir for the control directory");
    let ctrl = dirs.path().join("ctrl");
    let state = dirs.path().join("state");
    fs::create_dir_all(&ctrl).expect("mkdir ctrl");
    println!(
        "soak: {} s, {} instances alive, lives {MIN_LIFE}-{} s, restarts every {}, seed {seed}; \
         control directory {} ({}), log in {}; kvmd {}",
        opts.seconds,
        opts.instances,
        opts.max_life,
        opts.restart_every
            .map_or("never".to_owned(), |s| format!("{s} s")),
        ctrl.display(),
        if is_tmpfs(&ctrl) {
            "tmpfs"
        } else {
            "not tmpfs"
        },
        work.display(),
        program.display()
    );
    let mut fleet = Fleet::new(&ctrl);
    fleet.keep_listening = true;
    let pool = ((opts.instances as f64 * POOL_PER_INSTANCE) as usize).max(opts.instances + 1);
    let log = LogTail {
        path: work.join("kvmd.log"),
        file: None,
        partial: Vec::new(),
    };
    let daemon = start(program, &ctrl, &state, &work, opts.hook.as_deref());
    let mut soak = Soak {
        rng: Rng(seed),
        opts,
        work,
        ctrl,
        state,
        program: program.to_owned(),
        fleet,
        daemon,
        lives: Vec::new(),
        next_id: 0,
        free_names: (0..pool).map(|i| format!("vm{i}")).collect(),
        live_names: HashSet::new(),
        pending: HashMap::new(),
        pending_count: 0,
        log,
        kills: Vec::new(),
        peak_rss_kib: 0,
        cpu_before: Duration::ZERO,
        stats: Stats::default(),
        failed: None,
        decided_by_name: HashMap::new(),
    };
    let passed = soak.run();
    if std::env::var_os("LOAD_KEEP").is_some() {
        eprintln!(
            "keeping {} and {}",
            soak.work.display(),
            dirs.path().display()
        );
        let _ = tmp.keep();
        let _ = dirs.keep();
    }
    passed
}

fn start(program: &Path, ctrl: &Path, state: &Path, work: &Path, hook: Option<&Path>) -> Running {
    let mut command = kvmd_command(program, ctrl, work);
    command.arg("--state-dir").arg(state);
    if let Some(hook) = hook {
        command.arg("--on-verdict").arg(hook);
    }
    spawn(Which::Kvmd, command, work)
}

impl Soak {
    fn run(&mut self) -> bool {
        let Some(fds_start) = self.wait_started() else {
            return self.summary(Duration::ZERO, Duration::ZERO, 0, None);
        };
        let tool_cpu = own_cpu();
        let begin = Instant::now();
        let deadline = begin + Duration::from_secs(self.opts.seconds);
        let every = self.opts.restart_every.map(Duration::from_secs);
        let mut next_restart = every.map(|every| begin + every);
        let mut next_progress = begin + PROGRESS_EVERY;
        let mut phase = Phase::Running;
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let ending = now >= deadline;
            let running = phase == Phase::Running;
            if running && !ending {
                while self.lives.len() < self.opts.instances {
                    self.spawn(None);
                }
            }
            self.fleet.turn(&mut events, Duration::from_millis(10));
            let now = Instant::now();
            self.advance(now, &phase, !ending);
            self.read_log();
            self.expire(now);
            if !self.daemon.alive() {
                let why = why_failed(&mut self.daemon, &self.work, 0, 0);
                self.failed = Some(format!("kvmd died: {why}"));
                break;
            }
            phase = match phase {
                Phase::Running => match next_restart {
                    Some(at) if !ending && now >= at => Phase::Draining {
                        since: now,
                        quiet: None,
                    },
                    _ => Phase::Running,
                },
                Phase::Draining { since, quiet } => {
                    let calm = self.pending_count == 0
                        && self.fleet.unread() == 0
                        && self.lives.iter().all(|l| {
                            l.hostile != Hostile::BeforeGreeting
                                || l.early.is_some()
                                || self.fleet.fakes[l.slot].listener.is_none()
                        });
                    let quiet = if calm { quiet.or(Some(now)) } else { None };
                    let timed_out = now - since > DECISION_LIMIT;
                    if quiet.is_some_and(|q| now - q >= SETTLE) || timed_out {
                        if timed_out {
                            self.stats.drain_timeouts += 1;
                        }
                        self.restart(now);
                        Phase::Reattaching {
                            held: since,
                            since: now,
                        }
                    } else {
                        Phase::Draining { since, quiet }
                    }
                }
                Phase::Reattaching { held, since } => {
                    if self.reattached(now - since > ATTACH_LIMIT) {
                        let pause = now - held;
                        for life in &mut self.lives {
                            if let Some(origin) = &mut life.origin {
                                *origin += pause;
                            }
                        }
                        next_restart = every.map(|every| now + every);
                        Phase::Running
                    } else {
                        Phase::Reattaching { held, since }
                    }
                }
            };
            if now >= next_progress {
                next_progress += PROGRESS_EVERY;
                self.progress(now - begin);
            }
            if ending && self.lives.is_empty() && self.pending_count == 0 {
                break;
            }
            if now > deadline + Duration::from_secs_f64(self.opts.max_life) + ATTACH_LIMIT * 2 {
                self.failed = Some(format!(
                    "could not wind down: {} instances alive, {} awaiting a decision",
                    self.lives.len(),
                    self.pending_count
                ));
                break;
            }
        }
        let churn = deadline - begin;
        let wind_down = Instant::now().saturating_duration_since(deadline);
        let tool_cpu = own_cpu() - tool_cpu;
        self.summary(churn, wind_down, fds_start, Some(tool_cpu))
    }

    /// Waits for kvmd's start line; returns its descriptor count then.
    fn wait_started(&mut self) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stats.starts == 0 {
            if Instant::now() > deadline || !self.daemon.alive() {
                let why = why_failed(&mut self.daemon, &self.work, 0, 0);
                self.failed = Some(format!("kvmd did not start: {why}"));
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
            self.read_log();
        }
        std::thread::sleep(Duration::from_millis(200));
        Some(self.daemon.fds())
    }

    /// A new QEMU: `name` to recreate one at once, else from the pool or
    /// new.
    fn spawn(&mut self, again: Option<(String, bool)>) {
        let id = self.next_id;
        self.next_id += 1;
        let stats = &mut self.stats;
        stats.incarnations += 1;
        let recreated = again.is_some();
        let (name, new_name) = match again {
            Some(again) => {
                stats.recreated_at_once += 1;
                again
            }
            None if self.free_names.is_empty() || self.rng.chance(NEW_NAMES) => {
                stats.new_names += 1;
                (format!("new{id}"), true)
            }
            None => {
                stats.pool_names += 1;
                let k = self.rng.below(self.free_names.len());
                (self.free_names.swap_remove(k), false)
            }
        };
        // A stale verdict file that the decision must create over or
        // remove. (Not when recreated at once: the old QEMU's decision is
        // still to come and writes it.)
        if !recreated {
            let stale = self.ctrl.join(format!("{name}.shutdown"));
            if self.rng.chance(0.5) {
                stats.planted += 1;
                fs::write(stale, b"").expect("plant a stale shutdown file");
            } else {
                let _ = fs::remove_file(stale);
            }
        }
        let scenario = SCENARIOS[self.rng.below(SCENARIOS.len())];
        let hostile = if self.rng.chance(HOSTILE) {
            HOSTILES[1 + self.rng.below(HOSTILES.len() - 1)]
        } else {
            Hostile::No
        };
        stats.hostile[hostile.index()] += 1;
        let steps = script(&mut self.rng, scenario, hostile, self.opts.max_life);
        let now = Instant::now();
        let (slot, early) = if self.rng.chance(BIND_EARLY) {
            stats.bound_early += 1;
            let (slot, fd, _) = self.fleet.bind_late(name.clone());
            let listen = now + Duration::from_secs_f64(self.rng.between(0.001, 0.020));
            (slot, Some((fd, listen)))
        } else {
            (self.fleet.add(name.clone()), None)
        };
        self.fleet.fakes[slot].greet = hostile != Hostile::BeforeGreeting;
        self.live_names.insert(name.clone());
        self.lives.push(Life {
            id,
            slot,
            name,
            new_name,
            recreated,
            scenario,
            hostile,
            steps,
            next: 0,
            created: now,
            origin: None,
            early,
            clients_at_kill: None,
            killed_under: false,
        });
    }

    /// Moves every life on: its socket listens, its clock starts, its due
    /// steps are played, it exits.
    fn advance(&mut self, now: Instant, phase: &Phase, churning: bool) {
        let mut i = 0;
        while i < self.lives.len() {
            match self.step(i, now, phase) {
                Fate::Alive => i += 1,
                fate => {
                    let life = self.lives.swap_remove(i);
                    self.end(life, fate, now, churning && *phase == Phase::Running);
                }
            }
        }
    }

    fn step(&mut self, i: usize, now: Instant, phase: &Phase) -> Fate {
        let Soak { lives, fleet, .. } = self;
        let life = &mut lives[i];
        // Held while draining: a new connection then could be cut by the
        // kill before kvmd decides it.
        let draining = matches!(phase, Phase::Draining { .. });
        if !draining
            && life.early.as_ref().is_some_and(|(_, at)| now >= *at)
            && let Some((fd, _)) = life.early.take()
        {
            fleet.listen_late(life.slot, fd);
        }
        let fake = &fleet.fakes[life.slot];
        if life.hostile == Hostile::BeforeGreeting {
            if fake.clients > 0 {
                return Fate::Exited;
            }
        } else if life.origin.is_none() && fake.ready {
            life.origin = Some(now);
        }
        let Some(origin) = life.origin else {
            if now - life.created > ATTACH_LIMIT {
                return Fate::NeverAttached;
            }
            return Fate::Alive;
        };
        if *phase != Phase::Running || !fake.ready {
            return Fate::Alive;
        }
        while let Some(step) = life.steps.get(life.next) {
            if origin + Duration::from_secs_f64(step.at) > now {
                break;
            }
            match &step.act {
                Act::Event(e) => fleet.send(life.slot, &e.render()),
                Act::Raw(bytes) => fleet.send(life.slot, bytes),
                Act::Status(status) => fleet.fakes[life.slot].status = *status,
                // QEMU exits once its last words are out.
                Act::Exit if fleet.fakes[life.slot].outbox.is_empty() => return Fate::Exited,
                Act::Exit => break,
            }
            life.next += 1;
        }
        Fate::Alive
    }

    fn end(&mut self, life: Life, fate: Fate, now: Instant, churning: bool) {
        let clients = self.fleet.fakes[life.slot].clients;
        self.fleet.exit(life.slot);
        self.live_names.remove(&life.name);
        match fate {
            Fate::Alive => {}
            Fate::NeverAttached => {
                self.stats.never_attached += 1;
                self.stats.example(format!(
                    "{} (#{}, hostile: {}{}) never negotiated in {ATTACH_LIMIT:?}; {} clients, {}",
                    life.name,
                    life.id,
                    life.hostile.name(),
                    if life.recreated {
                        ", made at once after a QEMU of the name exited"
                    } else {
                        ""
                    },
                    clients,
                    if life.early.is_some() {
                        "never listened"
                    } else {
                        "listening"
                    }
                ));
                // Its name is not reused: a late decision would confuse.
            }
            Fate::Exited => {
                let wall = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                self.pending
                    .entry(life.name.clone())
                    .or_default()
                    .push_back(Pending {
                        id: life.id,
                        scenario: life.scenario,
                        hostile: life.hostile,
                        user: life.scenario.user() && life.hostile != Hostile::BeforeGreeting,
                        new_name: life.new_name,
                        across: life.killed_under,
                        at: now,
                        wall,
                    });
                self.pending_count += 1;
                if churning && self.rng.chance(RECREATE_AT_ONCE) {
                    self.spawn(Some((life.name, life.new_name)));
                }
            }
        }
    }

    fn read_log(&mut self) {
        for line in self.log.lines() {
            self.on_line(&line);
        }
    }

    fn on_line(&mut self, line: &str) {
        self.stats.log_lines += 1;
        let Some((_, rest)) = line.split_once(" pid=") else {
            return;
        };
        let rest = rest.split_once(' ').map_or("", |(_, rest)| rest);
        let (level, message) = rest.split_once(' ').unwrap_or((rest, ""));
        if message.contains(" started on ") {
            self.stats.starts += 1;
        }
        if message.ends_with(": evidence restored from before a restart") {
            self.stats.restored += 1;
        }
        if let Some((name, verdict)) = message.split_once(": decided ") {
            self.decided(name, verdict, level, line);
            return;
        }
        match level {
            "WARNING" => {
                self.stats.warnings += 1;
                // What hostile peers earn.
                if message.contains(": ignored ")
                    || message.contains(": dropped a message longer than ")
                {
                    self.stats.hostile_warnings += 1;
                } else if message.contains("a newer verdict's replaces it") {
                    // A third verdict of a name before the first's hook
                    // ended: the waiting one is replaced, as designed.
                    self.stats.hooks_superseded += 1;
                } else if message.contains("a hook a killed kvmd left running") {
                    self.stats.hooks_orphaned += 1;
                } else if message.ends_with("guest panicked (GUEST_PANICKED)") {
                    // Every panic is told as it happens, a warning; the
                    // verdict comes at the exit (the soak's panics power
                    // the guest off).
                } else {
                    self.stats.example(format!("unexpected log line: {line}"));
                }
            }
            "ERROR" => {
                self.stats.errors += 1;
                self.stats.example(format!("log error: {line}"));
            }
            _ => {}
        }
    }

    fn decided(&mut self, name: &str, verdict: &str, level: &str, line: &str) {
        *self.decided_by_name.entry(name.to_owned()).or_default() += 1;
        let said_user = verdict.starts_with("user shutdown");
        let Some(queue) = self.pending.get_mut(name) else {
            self.stats.spurious += 1;
            self.stats
                .example(format!("decision for no QEMU that exited: {line}"));
            return;
        };
        let Some(p) = queue.pop_front() else {
            self.stats.spurious += 1;
            return;
        };
        // The file shows this decision unless a later QEMU of the name
        // has exited too (and may be decided already).
        let later = !queue.is_empty();
        if !later {
            self.pending.remove(name);
        }
        self.pending_count -= 1;
        let stats = &mut self.stats;
        stats.decisions += 1;
        let mut right = level == "INFO" && said_user == p.user;
        let file = if later {
            None
        } else {
            stats.files_checked += 1;
            let exists = fs::symlink_metadata(self.ctrl.join(format!("{name}.shutdown"))).is_ok();
            right &= exists == p.user;
            Some(exists)
        };
        let counts = &mut stats.by_scenario[p.scenario.index()];
        if p.across {
            if right {
                stats.across.0 += 1;
            } else {
                stats.across.1 += 1;
            }
        }
        if right {
            stats.right += 1;
            counts.0 += 1;
            stats.user_decisions += u64::from(p.user);
        } else {
            stats.wrong += 1;
            counts.1 += 1;
            stats.example(format!(
                "WRONG: {name} (#{}, {}, hostile: {}{}): expected {}, file {:?}: {line}",
                p.id,
                p.scenario.name(),
                p.hostile.name(),
                if p.across {
                    ", lived through a kill"
                } else {
                    ""
                },
                if p.user { "user" } else { "not user" },
                file,
            ));
        }
        if let Some(logged) = day_seconds(line) {
            let exited = p.wall % 86_400.0;
            let mut latency = logged - exited;
            if latency < -43_200.0 {
                latency += 86_400.0;
            }
            stats.latencies_us.push((latency.max(0.0) * 1e6) as u64);
        }
        if !later {
            self.settled(name, p.new_name);
        }
    }

    /// A name with no QEMU alive and none awaiting a decision.
    fn settled(&mut self, name: &str, new_name: bool) {
        if self.live_names.contains(name) {
            return;
        }
        if new_name {
            // The instance is gone for good, as Ganeti would clean up.
            let _ = fs::remove_file(self.ctrl.join(format!("{name}.shutdown")));
        } else {
            self.free_names.push(name.to_owned());
        }
    }

    /// Counts decisions that never came. One whose QEMU exited before a
    /// kill no daemon could make: lost in the restart (the drain before
    /// each kill should leave none).
    fn expire(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (name, queue) in &mut self.pending {
            while queue.front().is_some_and(|p| now - p.at > DECISION_LIMIT) {
                if let Some(p) = queue.pop_front() {
                    expired.push((name.clone(), p));
                }
            }
        }
        for (name, p) in expired {
            self.pending_count -= 1;
            if self.pending.get(&name).is_some_and(VecDeque::is_empty) {
                self.pending.remove(&name);
            }
            let lost = self.kills.iter().any(|&kill| kill >= p.at);
            let what = if lost {
                self.stats.lost_in_restart += 1;
                "lost in a restart"
            } else {
                self.stats.missing += 1;
                "MISSING"
            };
            self.stats.example(format!(
                "{what}: no decision for {name} (#{}, {}, hostile: {}) {DECISION_LIMIT:?} after it exited",
                p.id,
                p.scenario.name(),
                p.hostile.name()
            ));
            // The name is not reused: a late decision would confuse.
        }
    }

    /// SIGKILL, then a new kvmd at once.
    fn restart(&mut self, now: Instant) {
        self.peak_rss_kib = self.peak_rss_kib.max(self.daemon.status_field("VmHWM:"));
        self.cpu_before += self.daemon.cpu();
        let _ = self.daemon.child.kill();
        let _ = self.daemon.child.wait();
        self.kills.push(now);
        self.stats.restarts += 1;
        for life in &mut self.lives {
            if life.origin.is_some() {
                life.clients_at_kill = Some(self.fleet.fakes[life.slot].clients);
                life.killed_under = true;
            }
        }
        self.daemon = start(
            &self.program,
            &self.ctrl,
            &self.state,
            &self.work,
            self.opts.hook.as_deref(),
        );
    }

    /// Whether every QEMU negotiated before the kill is negotiated with the
    /// new kvmd; `give_up` counts those that are not.
    fn reattached(&mut self, give_up: bool) -> bool {
        let mut waiting = 0;
        for life in &mut self.lives {
            if let Some(before) = life.clients_at_kill {
                let fake = &self.fleet.fakes[life.slot];
                if fake.ready && fake.clients > before {
                    life.clients_at_kill = None;
                } else if give_up {
                    self.stats.not_reattached += 1;
                    life.clients_at_kill = None;
                } else {
                    waiting += 1;
                }
            }
        }
        waiting == 0
    }

    fn progress(&mut self, elapsed: Duration) {
        let s = &self.stats;
        println!(
            "soak {:>5} s: {} alive, {} decided (right {}, wrong {}, missing {}), {} awaiting, \
             kvmd RSS {} KiB (peak {} KiB), {} fds, CPU {:.2} s, {} restarts",
            elapsed.as_secs(),
            self.lives.len(),
            s.decisions,
            s.right,
            s.wrong,
            s.missing,
            self.pending_count,
            self.daemon.rss_kib(),
            self.peak_rss_kib.max(self.daemon.status_field("VmHWM:")),
            self.daemon.fds(),
            (self.cpu_before + self.daemon.cpu()).as_secs_f64(),
            s.restarts,
        );
    }

    /// Measures kvmd with every QEMU gone, stops it, prints the summary.
    fn summary(
        &mut self,
        churn: Duration,
        wind_down: Duration,
        fds_start: usize,
        tool_cpu: Option<Duration>,
    ) -> bool {
        std::thread::sleep(Duration::from_millis(500));
        self.read_log();
        // With a hook: every decision's hook run, once (less those a newer
        // verdict replaced while waiting, as designed).
        let hooks = self.opts.hook.is_some().then(|| {
            let owed = |runs: &HashMap<String, usize>, s: &Self| -> u64 {
                s.decided_by_name
                    .iter()
                    .map(|(name, &d)| d.saturating_sub(runs.get(name).copied().unwrap_or(0) as u64))
                    .sum::<u64>()
                    .saturating_sub(s.stats.hooks_superseded)
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut runs = super::hook_runs();
            while owed(&runs, self) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                self.read_log();
                runs = super::hook_runs();
            }
            std::thread::sleep(Duration::from_millis(300));
            self.read_log();
            runs = super::hook_runs();
            let missing = owed(&runs, self);
            let repeated: u64 = runs
                .iter()
                .map(|(name, &r)| {
                    (r as u64).saturating_sub(self.decided_by_name.get(name).copied().unwrap_or(0))
                })
                .sum();
            let total: usize = runs.values().sum();
            (
                total,
                missing,
                repeated,
                super::zombies_of(self.daemon.pid()),
            )
        });
        let alive = self.daemon.alive();
        let fds_end = self.daemon.fds();
        let rss_end = self.daemon.rss_kib();
        let peak = self.peak_rss_kib.max(self.daemon.status_field("VmHWM:"));
        let cpu = self.cpu_before + self.daemon.cpu();
        let count = |dir: &Path, suffix: &str| {
            fs::read_dir(dir).map_or(0, |d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                    .count()
            })
        };
        let sockets_left = count(&self.ctrl, ".kvmd");
        let state_left = count(&self.state, "");
        // SIGTERM: kvmd exits 0, leaving nothing undecided behind.
        let mut exit = None;
        if alive {
            let pid = nix::unistd::Pid::from_raw(self.daemon.pid() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = self.daemon.child.try_wait() {
                    exit = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.read_log();
        let clean_exit = exit.is_some_and(|status| status.success());

        let s = &mut self.stats;
        s.latencies_us.sort_unstable();
        let pick = |q: f64| {
            let l = &s.latencies_us;
            l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
                .map_or("-".to_owned(), |us| format!("{:.1} ms", *us as f64 / 1e3))
        };
        let n = |v: u64| {
            let text = v.to_string();
            let mut out = String::new();
            for (i, c) in text.chars().enumerate() {
                if i > 0 && (text.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        let passed = self.failed.is_none()
            && s.wrong == 0
            && s.missing == 0
            && s.lost_in_restart == 0
            && s.spurious == 0
            && s.never_attached == 0
            && s.not_reattached == 0
            && s.errors == 0
            && fds_end == fds_start
            && sockets_left == 0
            && state_left == 0
            && clean_exit
            && hooks.is_none_or(|(_, missing, repeated, zombies)| {
                // Only a kill may make a hook run twice.
                missing == 0 && zombies == 0 && (repeated == 0 || s.restarts > 0)
            });
        let secs = churn.as_secs_f64().max(1e-9);
        println!();
        println!("| soak | |");
        println!("|---|---|");
        println!(
            "| duration | {:.0} s of churn, then {:.1} s to wind down |",
            churn.as_secs_f64(),
            wind_down.as_secs_f64()
        );
        println!("| instances alive (target) | {} |", self.opts.instances);
        println!(
            "| QEMUs started | {} ({:.0}/s): {} from a pool of {} names, {} new names, {} recreated before the last decision; {} bound before listening; {} stale shutdown files planted |",
            n(s.incarnations),
            s.incarnations as f64 / secs,
            n(s.pool_names),
            ((self.opts.instances as f64 * POOL_PER_INSTANCE) as usize)
                .max(self.opts.instances + 1),
            n(s.new_names),
            n(s.recreated_at_once),
            n(s.bound_early),
            n(s.planted),
        );
        println!(
            "| hostile peers | {} |",
            HOSTILES[1..]
                .iter()
                .map(|h| format!("{} {}", h.name(), n(s.hostile[h.index()])))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "| decisions made | {} ({} user, {} not user) |",
            n(s.decisions),
            n(s.user_decisions),
            n(s.right - s.user_decisions)
        );
        println!(
            "| right / wrong | {} / {} ({} also checked by the file) |",
            n(s.right),
            n(s.wrong),
            n(s.files_checked)
        );
        println!(
            "| missing (no decision in {} s) | {} |",
            DECISION_LIMIT.as_secs(),
            n(s.missing)
        );
        println!(
            "| decision latency, exit to log line: p50 / p99 / max | {} / {} / {} |",
            pick(0.5),
            pick(0.99),
            pick(1.0)
        );
        println!(
            "| by scenario (right/wrong) | {} |",
            SCENARIOS
                .iter()
                .map(|sc| {
                    let (r, w) = s.by_scenario[sc.index()];
                    format!("{} {}/{}", sc.name(), n(r), n(w))
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(every) = self.opts.restart_every {
            println!(
                "| kvmd SIGKILLed and restarted | {} (every {every} s); {} decisions of QEMUs that lived through a kill ({} right, {} wrong); evidence restored {} times; {} lost in a restart, {} not reattached, {} drains timed out |",
                s.restarts,
                n(s.across.0 + s.across.1),
                n(s.across.0),
                n(s.across.1),
                n(s.restored),
                s.lost_in_restart,
                s.not_reattached,
                s.drain_timeouts
            );
        }
        println!(
            "| never attached / decisions for no exit | {} / {} |",
            s.never_attached, s.spurious
        );
        println!("| kvmd peak RSS (VmHWM) | {} KiB |", n(peak));
        println!("| kvmd RSS at the end | {} KiB |", n(rss_end));
        println!(
            "| kvmd fds: after start-up / at the end, all QEMUs gone | {fds_start} / {fds_end} |"
        );
        println!(
            "| kvmd CPU | {:.2} s ({:.2} % of one core) |",
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / (churn + wind_down).as_secs_f64().max(1e-9)
        );
        if let Some(tool) = tool_cpu {
            println!("| load tool's own CPU | {:.2} s |", tool.as_secs_f64());
        }
        println!(
            "| kvmd log | {} lines, {} warnings ({} from hostile peers), {} errors |",
            n(s.log_lines),
            n(s.warnings),
            n(s.hostile_warnings),
            s.errors
        );
        println!("| left behind | {sockets_left} sockets, {state_left} state files |");
        println!(
            "| kvmd exit on SIGTERM | {} |",
            exit.map_or("none (killed)".to_owned(), |status| status.to_string())
        );
        if let Some(why) = &self.failed {
            println!("| failed | {why} |");
        }
        if let Some((total, missing, repeated, zombies)) = hooks {
            println!(
                "| verdict hooks | {} run, {} owed and not run, {} verdicts whose hook ran twice (kills: {}), {} replaced while waiting, {} left running by a killed kvmd, {zombies} zombies |",
                n(total as u64),
                n(missing),
                n(repeated),
                n(s.restarts),
                n(s.hooks_superseded),
                n(s.hooks_orphaned)
            );
        }
        println!("| result | {} |", if passed { "PASS" } else { "FAIL" });
        passed
    }
}
