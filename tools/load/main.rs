//! Whole-daemon load tool: kvmd and, when installed, the reference
//! `ganeti-kvmd` (Debian's ganeti-haskell-3.0) against the same fleet of
//! fake QMP servers, in the same run, one daemon at a time.
//!
//! ```sh
//! cargo bench --bench load                    # 1000 instances, 200 events each
//! cargo bench --bench load -- --instances 10000 --daemons kvmd
//! cargo bench --bench load -- --soak 660      # kvmd alone, 11 minutes of churn
//! cargo bench --bench load -- --daemons kvmd --kvmd /work/before-target/release/kvmd
//! ```
//!
//! Options: `--instances N`, `--events E` (per instance, in the storm),
//! `--idle S` (seconds of idle CPU measurement), `--churn R` (rounds of
//! 100 instances created and destroyed), `--daemons kvmd,reference`.
//! `--kvmd PATH` measures (and soaks) that kvmd binary in place of the one
//! `cargo bench` built: a build of an older commit (`git worktree add` it,
//! `cargo build --release` there) is measured by the same tool, same fleet,
//! same session, for a before/after table. The binary measured is named
//! in the output (above the table; in the soak's first line).
//! `--no-follower` measures kvmd with no follower attached (as an older
//! kvmd measured with `--kvmd` is).
//! `--status-poll MS` has a client ask kvmd's control socket for a full
//! `status` every MS milliseconds through the storm and the decisions (to
//! compare decision latency with and without one). kvmd is always
//! measured with a follower of `events` attached (reading), and its
//! `status --json` is timed once after the idle period.
//! `--hook-ms MS` runs kvmd with `--on-verdict` set to a hook that takes
//! MS milliseconds and counts its runs: after the decisions, every
//! verdict's hook must have run exactly once, no zombie be left and the
//! descriptors be back (compare the decision latency with a run without).
//! `--soak S` runs the soak instead (`soak.rs`: kvmd alone in a
//! temporary directory, no root needed; `--instances` alive, default 300;
//! `--restart-every S`, `--seed N`, `--dir D` for its control directory,
//! default /dev/shm).
//!
//! The fake QEMU side is this process: one thread, one mio poll, written in
//! Rust; its own CPU time is printed beside the daemons'. Both daemons use
//! Ganeti's control directory (the reference's is fixed), so this needs
//! root and refuses to run on a real Ganeti node.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

#[path = "../../tests/common/bound.rs"]
mod bound;
mod soak;

const REFERENCE: &str = "/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd";
const CTRL: &str = "/var/run/ganeti/kvm-hypervisor/ctrl";
const SSCONF: &str = "/var/lib/ganeti";

// What QEMU sends: the one copy in the core's test kit.
use kvmd_core::test_kit::{
    GREETING_LINE as GREETING, RESET_LINE as RESET, RETURN_LINE, STATUS_RUNNING_LINE,
    USER_OFF_LINE as USER_OFF,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Kvmd,
    Reference,
}

struct Args {
    instances: usize,
    instances_given: bool,
    /// Soak mode: seconds of churn (see `soak.rs`).
    soak: Option<u64>,
    restart_every: Option<u64>,
    seed: Option<u64>,
    dir: Option<PathBuf>,
    events: usize,
    idle: u64,
    churn: usize,
    daemons: Vec<Which>,
    /// The kvmd binary to run (`--kvmd`; default: the one cargo built).
    kvmd: PathBuf,
    /// Ask for a status this often during the storm and decisions.
    status_poll: Option<Duration>,
    /// Run a verdict hook that takes this long (`--hook-ms`).
    hook: Option<Duration>,
    /// Measure kvmd without a follower of its events (`--no-follower`:
    /// as an older kvmd, which has no control socket, is measured).
    follower: bool,
}

fn args() -> Args {
    let mut args = Args {
        instances: 1000,
        instances_given: false,
        soak: None,
        restart_every: None,
        seed: None,
        dir: None,
        events: 200,
        idle: 10,
        churn: 5,
        daemons: vec![Which::Kvmd, Which::Reference],
        kvmd: PathBuf::from(env!("CARGO_BIN_EXE_kvmd")),
        status_poll: None,
        hook: None,
        follower: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match arg.as_str() {
            "--instances" => {
                args.instances = value().parse().unwrap_or(args.instances);
                args.instances_given = true;
            }
            "--soak" => args.soak = value().parse().ok(),
            "--restart-every" => args.restart_every = value().parse().ok().filter(|&s| s > 0),
            "--seed" => args.seed = value().parse().ok(),
            "--dir" => args.dir = Some(PathBuf::from(value())),
            "--events" => args.events = value().parse().unwrap_or(args.events),
            "--idle" => args.idle = value().parse().unwrap_or(args.idle),
            "--churn" => args.churn = value().parse().unwrap_or(args.churn),
            "--kvmd" => args.kvmd = PathBuf::from(value()),
            "--hook-ms" => args.hook = value().parse().ok().map(Duration::from_millis),
            "--no-follower" => args.follower = false,
            "--status-poll" => {
                args.status_poll = value().parse().ok().map(Duration::from_millis);
            }
            "--daemons" => {
                args.daemons = value()
                    .split(',')
                    .filter_map(|d| match d {
                        "kvmd" => Some(Which::Kvmd),
                        "reference" => Some(Which::Reference),
                        _ => None,
                    })
                    .collect();
            }
            _ => {} // `cargo bench` passes --bench
        }
    }
    args
}

/// What `query-status` answers: QEMU 7.2's reply for the guest's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Status {
    #[default]
    Running,
    /// `stop`ped by the host.
    Paused,
    /// Powered off under `-no-shutdown`: QEMU lives on, paused.
    Shutdown,
}

impl Status {
    fn reply(self) -> &'static [u8] {
        match self {
            Status::Running => {
                STATUS_RUNNING_LINE
            }
            Status::Paused => {
                b"{\"return\": {\"status\": \"paused\", \"singlestep\": false, \"running\": false}}\r\n"
            }
            Status::Shutdown => {
                b"{\"return\": {\"status\": \"shutdown\", \"singlestep\": false, \"running\": false}}\r\n"
            }
        }
    }
}

/// One fake QEMU: its listening socket and, once the daemon connected, the
/// connection.
struct Fake {
    name: String,
    listener: Option<UnixListener>,
    conn: Option<UnixStream>,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    /// qmp_capabilities first answered.
    negotiated: Option<Instant>,
    /// When this QEMU "exited": the start of its decision latency.
    closed: Option<Instant>,
    /// The current client negotiated: events sent from now on reach it
    /// (QEMU does not queue events for a client that has not).
    ready: bool,
    /// What `query-status` says.
    status: Status,
    /// False for a hostile peer that hangs up before its greeting.
    greet: bool,
    /// Clients accepted so far (a restarted daemon is a new client).
    clients: u32,
}

impl Fake {
    fn new(name: String) -> Fake {
        Fake {
            name,
            listener: None,
            conn: None,
            inbox: Vec::new(),
            outbox: Vec::new(),
            negotiated: None,
            closed: None,
            ready: false,
            status: Status::Running,
            greet: true,
            clients: 0,
        }
    }
}

/// The fleet of fake QEMUs, served from one poll.
struct Fleet {
    poll: Poll,
    /// The control directory their sockets are in.
    dir: PathBuf,
    fakes: Vec<Fake>,
    /// Slots of fakes that are gone, for the next ones (the soak's churn).
    free: Vec<usize>,
    /// Keep listening after the first client, as QEMU does, so a
    /// restarted daemon can connect again. Off for the big runs, whose
    /// descriptors are counted.
    keep_listening: bool,
}

// Token = index * 2 (listener) or index * 2 + 1 (connection).
impl Fleet {
    fn new(dir: &Path) -> Fleet {
        Fleet {
            poll: Poll::new().expect("poll"),
            dir: dir.to_owned(),
            fakes: Vec::new(),
            free: Vec::new(),
            keep_listening: false,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.kvmd"))
    }

    /// A slot for a new fake: a free one, or a new one at the end.
    fn slot(&mut self, name: String) -> usize {
        let fake = Fake::new(name);
        match self.free.pop() {
            Some(index) => {
                self.fakes[index] = fake;
                index
            }
            None => {
                self.fakes.push(fake);
                self.fakes.len() - 1
            }
        }
    }

    fn add(&mut self, name: String) -> usize {
        let path = self.path(&name);
        let _ = fs::remove_file(&path);
        let mut listener = UnixListener::bind(&path).expect("bind");
        let index = self.slot(name);
        self.poll
            .registry()
            .register(&mut listener, Token(index * 2), Interest::READABLE)
            .expect("register");
        self.fakes[index].listener = Some(listener);
        index
    }

    /// Polls once, up to `wait`, and serves what is ready.
    fn turn(&mut self, events: &mut Events, wait: Duration) {
        if let Err(e) = self.poll.poll(events, Some(wait)) {
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "poll: {e}");
            return;
        }
        for event in events.iter() {
            let index = event.token().0 / 2;
            if event.token().0 % 2 == 0 {
                self.accept(index);
            } else {
                self.talk(index);
            }
        }
    }

    /// Serves until `done` holds or `limit` passes. False on timeout.
    fn serve_until(&mut self, limit: Duration, mut done: impl FnMut(&Fleet) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut events = Events::with_capacity(4096);
        while !done(self) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.turn(&mut events, (deadline - now).min(Duration::from_millis(50)));
        }
        true
    }

    fn accept(&mut self, index: usize) {
        let fake = &mut self.fakes[index];
        let Some(listener) = &fake.listener else {
            return;
        };
        // One client at a time, as QEMU's server,nowait socket: the next
        // waits in the backlog until this one leaves.
        while fake.conn.is_none() {
            let Ok((mut conn, _)) = listener.accept() else {
                break;
            };
            fake.clients += 1;
            if !fake.greet {
                continue; // dropped: hung up before the greeting
            }
            self.poll
                .registry()
                .register(
                    &mut conn,
                    Token(index * 2 + 1),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .expect("register");
            fake.inbox.clear();
            fake.outbox.clear();
            fake.outbox.extend_from_slice(GREETING);
            fake.conn = Some(conn);
        }
        // QEMU keeps listening; the tool closes its listener once the one
        // client it serves is in, so that 10,000 instances fit in a
        // 20,000-descriptor limit (this machine's hard limit).
        if fake.conn.is_some() && !self.keep_listening {
            fake.listener = None;
        }
        self.talk(index);
    }

    fn talk(&mut self, index: usize) {
        let fake = &mut self.fakes[index];
        let Some(conn) = &mut fake.conn else { return };
        let mut buf = [0u8; 4096];
        let gone = loop {
            match conn.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => fake.inbox.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break e.kind() != io::ErrorKind::WouldBlock,
            }
        };
        while let Some(end) = fake.inbox.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = fake.inbox.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            if text.contains("qmp_capabilities") {
                fake.outbox.extend_from_slice(RETURN_LINE);
                fake.negotiated.get_or_insert_with(Instant::now);
                fake.ready = true;
            } else if text.contains("query-status") {
                fake.outbox.extend_from_slice(fake.status.reply());
            }
        }
        flush(conn, &mut fake.outbox);
        if gone {
            // The client left (a daemon killed or stopped): QEMU serves
            // the next one.
            fake.conn = None;
            fake.ready = false;
            fake.inbox.clear();
            fake.outbox.clear();
            self.accept(index);
        }
    }

    /// A new QEMU, created as QEMU does it: the socket is bound (the file
    /// appears, the daemon hears of it) a moment before it listens.
    /// [`Fleet::listen_late`] finishes the job.
    fn bind_late(&mut self, name: String) -> (usize, std::os::fd::OwnedFd, Instant) {
        let fd = bound::bind_only(&self.path(&name));
        let bound = Instant::now();
        (self.slot(name), fd, bound)
    }

    fn listen_late(&mut self, index: usize, fd: std::os::fd::OwnedFd) {
        use nix::sys::socket::{Backlog, listen};
        listen(&fd, Backlog::new(16).expect("backlog")).expect("listen");
        let std_listener = std::os::unix::net::UnixListener::from(fd);
        std_listener.set_nonblocking(true).expect("nonblocking");
        let mut listener = UnixListener::from_std(std_listener);
        self.poll
            .registry()
            .register(&mut listener, Token(index * 2), Interest::READABLE)
            .expect("register");
        self.fakes[index].listener = Some(listener);
        self.accept(index);
    }

    fn negotiated(&self) -> usize {
        self.fakes.iter().filter(|f| f.negotiated.is_some()).count()
    }

    /// Bytes written by the fleet that the daemon has not read yet.
    fn unread(&self) -> usize {
        self.fakes
            .iter()
            .filter_map(|f| f.conn.as_ref())
            .map(|conn| {
                let mut queued: i32 = 0;
                // SAFETY: SIOCOUTQ writes one int.
                unsafe { nix::libc::ioctl(conn.as_raw_fd(), nix::libc::TIOCOUTQ, &mut queued) };
                queued.max(0) as usize
            })
            .sum::<usize>()
            + self.fakes.iter().map(|f| f.outbox.len()).sum::<usize>()
    }

    fn send_all(&mut self, bytes: &[u8]) {
        for index in 0..self.fakes.len() {
            self.send(index, bytes);
        }
    }

    /// Queues and writes what the socket takes; the rest goes out as the
    /// daemon reads (WRITABLE events).
    fn send(&mut self, index: usize, bytes: &[u8]) {
        let fake = &mut self.fakes[index];
        // A QEMU the daemon never reached has nobody to talk to.
        if let Some(conn) = &mut fake.conn {
            fake.outbox.extend_from_slice(bytes);
            flush(conn, &mut fake.outbox);
        }
    }

    /// One QEMU exits: its connection closes (what the daemon decides on),
    /// then its socket file goes. Its slot is free for the next.
    fn exit(&mut self, index: usize) {
        let path = self.path(&self.fakes[index].name);
        self.fakes[index] = Fake::new(String::new());
        let _ = fs::remove_file(path);
        self.free.push(index);
    }

    /// QEMU exits: its connection closes (what the daemon decides on),
    /// then its socket file goes, as QEMU does it. Each instance's clock
    /// starts at its own close: closing a thousand takes the tool time.
    fn close_all(&mut self) {
        for fake in &mut self.fakes {
            fake.conn = None;
            fake.closed = Some(Instant::now());
            fake.listener = None;
        }
        for fake in &self.fakes {
            let _ = fs::remove_file(self.path(&fake.name));
        }
    }
}

fn flush(conn: &mut UnixStream, outbox: &mut Vec<u8>) {
    while !outbox.is_empty() {
        match conn.write(outbox) {
            Ok(n) => {
                outbox.drain(..n);
            }
            Err(_) => break,
        }
    }
}

/// A running daemon and what /proc says of it.
struct Running {
    which: Which,
    child: Child,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn status_field(&self, field: &str) -> u64 {
        fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    fn wakeups(&self) -> u64 {
        self.status_field("voluntary_ctxt_switches:")
            + self.status_field("nonvoluntary_ctxt_switches:")
    }

    fn fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// CPU time so far, in nanoseconds (the scheduler's own account; the
    /// tick counts in /proc/PID/stat are 10 ms coarse), all threads.
    fn cpu(&self) -> Duration {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Duration::ZERO;
        };
        let nanos: u64 = tasks
            .filter_map(Result::ok)
            .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn own_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// kvmd's command line: foreground, no Ganeti checks, its files in `work`.
fn kvmd_command(program: &Path, ctrl: &Path, work: &Path) -> Command {
    let mut c = Command::new(program);
    c.args(["-f", "--no-ssconf", "--no-user-checks", "--ctrl-dir"])
        .arg(ctrl);
    if std::env::var_os("LOAD_DEBUG").is_some() {
        c.arg("-d");
    }
    // With Ganeti's control directory the journal would go to
    // /var/lib/kvmd; the measurement keeps it in its own directory, on the
    // same disk (`LOAD_JOURNAL_DIR` puts it elsewhere, e.g. on a tmpfs to
    // see what its fsync costs).
    c.arg("--pid-file")
        .arg(work.join("kvmd.pid"))
        .arg("--log-file")
        .arg(work.join("kvmd.log"))
        .arg("--journal-dir")
        .arg(
            std::env::var_os("LOAD_JOURNAL_DIR")
                .map_or_else(|| work.join("journal"), PathBuf::from),
        );
    c
}

fn start(which: Which, work: &Path, hook: Option<&Path>) -> Running {
    let command = match which {
        Which::Kvmd => {
            let mut c = kvmd_command(&work.join("ganeti-kvmd"), Path::new(CTRL), work);
            if let Some(hook) = hook {
                c.arg("--on-verdict").arg(hook);
            }
            c
        }
        Which::Reference => {
            let mut c = Command::new(REFERENCE);
            c.args(["-f", "--no-user-checks"]);
            c
        }
    };
    spawn(which, command, work)
}

/// Starts a daemon, its stderr appended to `<which>.stderr` in `work`
/// (where [`why_failed`] looks).
fn spawn(which: Which, mut command: Command, work: &Path) -> Running {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join(format!("{which:?}.stderr")))
        .expect("stderr file");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start daemon");
    Running { which, child }
}

/// Timestamps of `<instance>.shutdown` creations and deletions.
type Seen = Arc<Mutex<HashMap<String, (Instant, bool)>>>;

fn watch_decisions() -> Seen {
    let seen: Seen = Arc::default();
    let mut inotify = inotify::Inotify::init().expect("inotify");
    inotify
        .watches()
        .add(
            CTRL,
            inotify::WatchMask::CREATE | inotify::WatchMask::DELETE,
        )
        .expect("watch");
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(events) = inotify.read_events_blocking(&mut buf) {
            let now = Instant::now();
            let mut seen = record.lock().expect("lock");
            for event in events {
                let Some(name) = event.name.and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some(instance) = name.strip_suffix(".shutdown") else {
                    continue;
                };
                let created = event.mask.contains(inotify::EventMask::CREATE);
                seen.entry(instance.to_owned()).or_insert((now, created));
            }
        }
    });
    seen
}

#[derive(Default, Clone)]
struct Row {
    failed: Option<String>,
    attach: Option<Duration>,
    idle_rss_kib: u64,
    idle_fds: usize,
    idle_cpu: Duration,
    idle_wakeups: u64,
    storm_cpu_per_event: Option<Duration>,
    storm_wall: Option<Duration>,
    storm_rss_kib: u64,
    live_p50: Option<Duration>,
    live_p99: Option<Duration>,
    live_missing: usize,
    decide_p50: Option<Duration>,
    decide_p99: Option<Duration>,
    decide_max: Option<Duration>,
    missing: usize,
    wrong: usize,
    churn_fds: usize,
    churn_rss_kib: u64,
    tool_cpu: Duration,
    /// kvmd only: a full `status --json` through the control socket.
    status_time: Option<Duration>,
    status_bytes: usize,
    rss_after_status_kib: u64,
    /// Status answers read by the poller (`--status-poll`).
    polls: usize,
    /// Event lines the follower read.
    followed: usize,
    /// `--hook-ms`: hook runs counted for the decisions' verdicts, the
    /// verdicts that ran more than once, and zombies left.
    hook_runs: Option<usize>,
    hook_repeats: usize,
    zombies: usize,
    /// Descriptors once every hook ran.
    hook_fds: usize,
}

/// Where the load tool's hook lives: root's, not under the world-writable
/// /tmp (kvmd refuses such a program).
const HOOK_DIR: &str = "/run/kvmd-load-hook";

/// Writes the hook: sleeps `took`, then counts its run.
fn write_hook(took: Duration) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(HOOK_DIR);
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("hook dir");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let hook = dir.join("hook");
    let text = format!(
        "#!/bin/sh\nsleep {:.3}\necho \"$1 $2 $3\" >> {HOOK_DIR}/runs\n",
        took.as_secs_f64()
    );
    fs::write(&hook, text).expect("write hook");
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).expect("chmod");
    hook
}

/// Hook runs so far, by instance.
fn hook_runs() -> HashMap<String, usize> {
    let mut runs = HashMap::new();
    for line in fs::read_to_string(Path::new(HOOK_DIR).join("runs"))
        .unwrap_or_default()
        .lines()
    {
        let name = line.split(' ').next().unwrap_or("").to_owned();
        *runs.entry(name).or_insert(0) += 1;
    }
    runs
}

/// Zombie children of `pid`.
fn zombies_of(pid: u32) -> usize {
    let Ok(procs) = fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|p| fs::read_to_string(p.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut fields = rest.split(' ');
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(pid)
        })
        .count()
}

/// One request to kvmd's control socket, read to its end: the answer's
/// bytes and how long it took (`None` if the socket is not there: an
/// older kvmd measured with `--kvmd`).
fn ask(socket: &Path, request: &str) -> Option<(usize, Duration)> {
    let begun = Instant::now();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    Some((answer.len(), begun.elapsed()))
}

const STATUS_REQUEST: &str = "{\"version\": 1, \"command\": \"status\"}\n";

/// A follower of kvmd's events on a thread of its own, reading every line
/// (until kvmd goes); returns the count read when joined.
fn follow(socket: &Path) -> Option<std::thread::JoinHandle<usize>> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream
        .write_all(b"{\"version\": 1, \"command\": \"events\"}\n")
        .ok()?;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).ok()?;
    Some(std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
            .count()
    }))
}

/// A client asking for a full status every `every` until stopped; returns
/// the number of answers.
fn poll_status(
    socket: PathBuf,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut answers = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if ask(&socket, STATUS_REQUEST).is_some() {
                answers += 1;
            }
            std::thread::sleep(every);
        }
        answers
    })
}

fn fresh_ctrl() {
    // On the tmpfs mount point itself only the contents can go.
    if let Ok(entries) = fs::read_dir("/var/run/ganeti") {
        for entry in entries.flatten() {
            let _ = fs::remove_dir_all(entry.path());
            let _ = fs::remove_file(entry.path());
        }
    }
    fs::create_dir_all(CTRL).expect("mkdir ctrl");
}

/// Ganeti's run directory on a tmpfs, as /run is on a Debian node: file
/// creation costs there are those of memory, not of a disk file system's
/// inode allocator. Returns whether it mounted.
fn mount_run_tmpfs() -> bool {
    fs::create_dir_all("/var/run/ganeti").expect("mkdir");
    Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=512m,mode=0755",
            "tmpfs",
            "/var/run/ganeti",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn measure(which: Which, args: &Args, work: &Path) -> Row {
    let mut row = Row::default();
    fresh_ctrl();
    let tool_start = own_cpu();
    let mut fleet = Fleet::new(Path::new(CTRL));
    for i in 0..args.instances {
        fleet.add(format!("vm{i}"));
    }
    // Attach: N sockets already there when the daemon starts.
    let hook = match (which, args.hook) {
        (Which::Kvmd, Some(took)) => Some(write_hook(took)),
        _ => None,
    };
    let started = Instant::now();
    let mut daemon = start(which, work, hook.as_deref());
    let n = args.instances;
    if !fleet.serve_until(Duration::from_secs(60), |f| f.negotiated() == n) {
        if std::env::var_os("LOAD_DEBUG").is_some() {
            for fake in fleet.fakes.iter().filter(|f| f.negotiated.is_none()) {
                eprintln!(
                    "{}: accepted {} inbox {} outbox {}",
                    fake.name,
                    fake.conn.is_some(),
                    fake.inbox.len(),
                    fake.outbox.len()
                );
            }
        }
        row.failed = Some(why_failed(&mut daemon, work, fleet.negotiated(), n));
        return row;
    }
    row.attach = Some(started.elapsed());
    // Let kvmd's query-status replies land before measuring idle, and its
    // last report of the attach be made (at most a second after a change).
    fleet.serve_until(Duration::from_millis(1300), |_| false);
    // kvmd is measured with a follower attached throughout.
    let socket = work.join("kvmd.sock");
    let follower = match which {
        Which::Kvmd if args.follower => follow(&socket),
        _ => None,
    };

    // Idle.
    let (cpu0, wake0) = (daemon.cpu(), daemon.wakeups());
    std::thread::sleep(Duration::from_secs(args.idle));
    row.idle_cpu = daemon.cpu() - cpu0;
    row.idle_wakeups = daemon.wakeups() - wake0;
    row.idle_rss_kib = daemon.rss_kib();
    row.idle_fds = daemon.fds();

    // A full status, once, through the control socket.
    if which == Which::Kvmd
        && let Some((bytes, took)) = ask(&socket, STATUS_REQUEST)
    {
        row.status_time = Some(took);
        row.status_bytes = bytes;
        row.rss_after_status_kib = daemon.rss_kib();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = match (which, args.status_poll) {
        (Which::Kvmd, Some(every)) => Some(poll_status(socket.clone(), every, Arc::clone(&stop))),
        _ => None,
    };

    // Every instance was reached (attach above waited for all).
    let reached: Vec<usize> = (0..n).collect();

    // Event storm: every instance sends `events` RESETs at once.
    let storm = RESET.repeat(args.events);
    let cpu0 = daemon.cpu();
    let begun = Instant::now();
    fleet.send_all(&storm);
    let drained = fleet.serve_until(Duration::from_secs(300), |f| f.unread() == 0);
    if !drained || !daemon.alive() {
        row.failed = Some(why_failed(&mut daemon, work, 0, 0));
        return row;
    }
    row.storm_wall = Some(begun.elapsed());
    // The last read bytes are parsed right after the read; give the
    // daemon's CPU accounting a tick to settle.
    std::thread::sleep(Duration::from_millis(50));
    let total = (args.events * n) as u32;
    row.storm_cpu_per_event = Some((daemon.cpu() - cpu0) / total.max(1));
    row.storm_rss_kib = daemon.rss_kib();

    // Decisions: half power off as users, all exit at once. Every
    // not-user instance has a stale shutdown file to remove.
    let seen = watch_decisions();
    for &i in &reached {
        if i % 2 == 0 {
            fleet.send(i, USER_OFF);
        } else {
            let stale = Path::new(CTRL).join(format!("{}.shutdown", fleet.fakes[i].name));
            fs::write(stale, b"").expect("stale");
        }
    }
    fleet.serve_until(Duration::from_secs(30), |f| f.unread() == 0);
    // Forget the stale files' own creation events.
    std::thread::sleep(Duration::from_millis(100));
    seen.lock().expect("lock").clear();
    fleet.close_all();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().expect("lock").len() < n && Instant::now() < deadline && daemon.alive() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.lock().expect("lock").clone();
    let mut latencies: Vec<Duration> = Vec::new();
    for &i in &reached {
        let fake = &fleet.fakes[i];
        match seen.get(&fake.name) {
            None => {
                if std::env::var_os("LOAD_DEBUG").is_some() {
                    eprintln!("missing {} (user: {})", fake.name, i % 2 == 0);
                }
                row.missing += 1
            }
            Some(&(at, created)) => {
                if created != (i % 2 == 0) {
                    row.wrong += 1;
                }
                let closed = fake.closed.expect("closed");
                latencies.push(at.saturating_duration_since(closed));
            }
        }
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
    };
    row.decide_p50 = pick(0.50);
    row.decide_p99 = pick(0.99);
    row.decide_max = latencies.last().copied();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(poller) = poller {
        row.polls = poller.join().unwrap_or(0);
    }
    // Every decided verdict's hook, exactly once.
    if hook.is_some() {
        let decided: Vec<&str> = reached
            .iter()
            .map(|&i| fleet.fakes[i].name.as_str())
            .filter(|name| seen.contains_key(*name))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut runs = hook_runs();
        while decided.iter().any(|n| !runs.contains_key(*n)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            runs = hook_runs();
        }
        // Let any second run (a bug) show.
        std::thread::sleep(Duration::from_millis(300));
        runs = hook_runs();
        row.hook_runs = Some(decided.iter().filter(|n| runs.contains_key(**n)).count());
        row.hook_repeats = decided
            .iter()
            .filter(|n| runs.get(**n).copied().unwrap_or(0) > 1)
            .count();
        row.zombies = zombies_of(daemon.pid());
        row.hook_fds = daemon.fds();
    }

    // Live attach: new QEMUs appear while the daemon runs, each binding
    // its socket 2 ms before it listens. From bind to negotiated. (After
    // the others ended, so the reference's descriptor ceiling allows.)
    let mut late = Fleet::new(Path::new(CTRL));
    let live = n.min(100);
    let mut pending = Vec::new();
    for i in 0..live {
        pending.push(late.bind_late(format!("live{i}")));
    }
    std::thread::sleep(Duration::from_millis(2));
    let mut bound_at = Vec::new();
    for (index, fd, bound) in pending {
        late.listen_late(index, fd);
        bound_at.push((index, bound));
    }
    late.serve_until(Duration::from_secs(10), |f| f.negotiated() == live);
    let mut attach: Vec<Duration> = bound_at
        .iter()
        .filter_map(|&(index, bound)| {
            Some(
                late.fakes[index]
                    .negotiated?
                    .saturating_duration_since(bound),
            )
        })
        .collect();
    attach.sort();
    row.live_missing = live - attach.len();
    row.live_p50 = attach.get(attach.len() / 2).copied();
    row.live_p99 = attach
        .get((attach.len() * 99 / 100).min(attach.len().saturating_sub(1)))
        .copied();
    late.close_all();

    // Churn: rounds of 100 instances created, negotiated, closed.
    for round in 0..args.churn {
        let mut batch = Fleet::new(Path::new(CTRL));
        for i in 0..100 {
            batch.add(format!("churn{round}x{i}"));
        }
        batch.serve_until(Duration::from_secs(30), |f| f.negotiated() == 100);
        batch.close_all();
    }
    std::thread::sleep(Duration::from_millis(500));
    row.churn_fds = daemon.fds();
    row.churn_rss_kib = daemon.rss_kib();
    if !daemon.alive() {
        row.failed = Some(why_failed(&mut daemon, work, 0, 0));
    }
    row.tool_cpu = own_cpu() - tool_start;
    drop(daemon);
    if let Some(follower) = follower {
        row.followed = follower.join().unwrap_or(0);
    }
    row
}

fn why_failed(daemon: &mut Running, work: &Path, negotiated: usize, wanted: usize) -> String {
    let stderr =
        fs::read_to_string(work.join(format!("{:?}.stderr", daemon.which))).unwrap_or_default();
    let last: String = stderr
        .lines()
        .rev()
        .find(|l| l.contains("out of range") || l.contains("ERROR") || l.contains("rror:"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .chars()
        .take(140)
        .collect();
    match daemon.child.try_wait() {
        Ok(Some(status)) => format!("exited ({status}): {last}"),
        _ => format!("only {negotiated} of {wanted} instances negotiated in time; last: {last}"),
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3))
}

fn ratio(kvmd: f64, reference: f64) -> String {
    if kvmd > 0.0 && reference > 0.0 {
        format!("{:.1}x", reference / kvmd)
    } else {
        "-".into()
    }
}

/// Raises the descriptor limit to `want` (the daemons inherit it).
fn raise_nofile(want: u64) {
    let nofile = nix::sys::resource::Resource::RLIMIT_NOFILE;
    let (soft, hard) = nix::sys::resource::getrlimit(nofile).expect("getrlimit");
    if soft < want
        && let Err(e) = nix::sys::resource::setrlimit(nofile, want, hard.max(want))
    {
        panic!("cannot raise RLIMIT_NOFILE from {soft}/{hard} to {want}: {e}");
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // too, without it: then a small smoke run checks the tool and kvmd.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let mut args = args();
    // Absolute: the Ganeti run reaches it through a symlink in a
    // temporary directory.
    args.kvmd = match fs::canonicalize(&args.kvmd) {
        Ok(path) if path.is_file() => path,
        Ok(path) => {
            eprintln!("--kvmd {}: not a file", path.display());
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("--kvmd {}: {e}", args.kvmd.display());
            std::process::exit(2);
        }
    };
    let kvmd = args.kvmd.as_path();
    // Each soak instance costs the tool up to three descriptors (a socket
    // bound early, its listener, its connection) and kvmd one.
    let soak_nofile = |instances: usize| 3 * instances as u64 + 1024;
    if let Some(seconds) = args.soak {
        let instances = if args.instances_given {
            args.instances
        } else {
            300
        };
        raise_nofile(soak_nofile(instances));
        let options = soak::Options {
            seconds,
            instances,
            restart_every: args.restart_every,
            seed: args.seed,
            max_life: 3.0,
            dir: args.dir.clone(),
            hook: args.hook.map(write_hook),
        };
        if !soak::run(options, kvmd) {
            std::process::exit(1);
        }
        return;
    }
    if smoke {
        // A short soak, with kvmd killed and restarted twice; it needs no
        // root (its own directory).
        raise_nofile(soak_nofile(50));
        let options = soak::Options {
            seconds: 5,
            instances: 50,
            restart_every: Some(2),
            seed: args.seed,
            max_life: 1.0,
            dir: None,
            hook: None,
        };
        assert!(soak::run(options, kvmd), "the soak smoke run failed");
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: the load tool needs root");
            println!("load: 1 passed, 0 failed, 1 skipped");
            return;
        }
        args.instances = 20;
        args.events = 10;
        args.idle = 0;
        args.churn = 1;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the load tool uses Ganeti's paths and needs root"
    );
    assert!(
        !Path::new(SSCONF).join("config.data").exists(),
        "refusing to run on a real Ganeti node"
    );
    // Each instance costs the tool up to two descriptors (one once the
    // daemon connected) and a daemon one; the daemons inherit the limit.
    raise_nofile((args.instances as u64) + 1024);
    let work = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("LOAD_KEEP").is_some() {
        eprintln!("keeping {}", work.path().display());
    }
    symlink(kvmd, work.path().join("ganeti-kvmd")).expect("symlink");
    fs::create_dir_all(SSCONF).expect("ssconf dir");
    // Ganeti's daemon logs to its fixed path; removed at the end unless
    // it was there before.
    let log = Path::new("/var/log/ganeti/kvm-daemon.log");
    let log_was_there = log.exists();
    fs::create_dir_all("/var/log/ganeti").expect("log dir");
    fs::write(Path::new(SSCONF).join("ssconf_hypervisor_list"), "kvm\n").expect("ssconf");
    fs::write(
        Path::new(SSCONF).join("ssconf_enabled_user_shutdown"),
        "True\n",
    )
    .expect("ssconf");
    fs::write(
        Path::new(SSCONF).join("ssconf_node_vm_capable"),
        format!("{}=True\n", kvmd::adapters::ssconf::node_name()),
    )
    .expect("ssconf");

    let tmpfs = mount_run_tmpfs();
    if !tmpfs {
        eprintln!("could not mount a tmpfs on /var/run/ganeti; measuring on the disk file system");
    }
    let mut rows: Vec<(Which, Row)> = Vec::new();
    for &which in &args.daemons {
        if which == Which::Reference && !Path::new(REFERENCE).exists() {
            eprintln!("reference not installed ({REFERENCE}): apt-get install ganeti-haskell-3.0");
            continue;
        }
        eprintln!(
            "measuring {which:?} ({} instances, {} events each)...",
            args.instances, args.events
        );
        rows.push((which, measure(which, &args, work.path())));
    }
    fresh_ctrl();
    if tmpfs {
        let _ = Command::new("umount").arg("/var/run/ganeti").status();
    }
    let _ = fs::remove_dir_all("/var/run/ganeti");
    if !log_was_there {
        let _ = fs::remove_file(log);
    }
    for name in [
        "ssconf_hypervisor_list",
        "ssconf_enabled_user_shutdown",
        "ssconf_node_vm_capable",
    ] {
        let _ = fs::remove_file(Path::new(SSCONF).join(name));
    }
    print_table(&args, &rows, tmpfs);
    if smoke {
        for (which, row) in &rows {
            assert!(row.failed.is_none(), "{which:?}: {:?}", row.failed);
            assert_eq!((row.missing, row.wrong), (0, 0), "{which:?}");
        }
        println!("load: 2 passed, 0 failed");
    }
    if std::env::var_os("LOAD_KEEP").is_some() {
        let _ = work.keep();
    }
}

fn print_table(args: &Args, rows: &[(Which, Row)], tmpfs: bool) {
    let get = |w: Which| rows.iter().find(|(x, _)| *x == w).map(|(_, r)| r.clone());
    let k = get(Which::Kvmd).unwrap_or_default();
    let r = get(Which::Reference);
    println!(
        "\n{} instances, {} events each, {} s idle, {} churn rounds of 100; control directory on {}\n",
        args.instances,
        args.events,
        args.idle,
        args.churn,
        if tmpfs {
            "tmpfs"
        } else {
            "the disk file system"
        }
    );
    println!("kvmd: {}\n", args.kvmd.display());
    println!("| measure | kvmd | ganeti-kvmd | ratio |");
    println!("|---|---|---|---|");
    let line = |what: &str, kv: String, rv: String, ratio: String| {
        println!("| {what} | {kv} | {rv} | {ratio} |");
    };
    let rf = |f: &dyn Fn(&Row) -> String| match &r {
        Some(r) if r.failed.is_none() => f(r),
        Some(r) => format!("failed: {}", r.failed.clone().unwrap_or_default()),
        None => "not run".into(),
    };
    let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
    let rr = |f: &dyn Fn(&Row) -> f64| match &r {
        Some(r) if r.failed.is_none() => ratio(f(&k), f(r)),
        _ => "-".into(),
    };
    if let Some(why) = &k.failed {
        println!("| kvmd failed | {why} | | |");
    }
    line(
        "attach N existing sockets (ms)",
        ms(k.attach),
        rf(&|r| ms(r.attach)),
        rr(&|x| secs(x.attach)),
    );
    line(
        "idle RSS (KiB)",
        k.idle_rss_kib.to_string(),
        rf(&|r| r.idle_rss_kib.to_string()),
        rr(&|x| x.idle_rss_kib as f64),
    );
    line(
        "idle fds",
        k.idle_fds.to_string(),
        rf(&|r| r.idle_fds.to_string()),
        "-".into(),
    );
    line(
        &format!("idle CPU over {} s (ms)", args.idle),
        ms(Some(k.idle_cpu)),
        rf(&|r| ms(Some(r.idle_cpu))),
        "-".into(),
    );
    line(
        "idle wake-ups (context switches; kvmd with a follower attached)",
        k.idle_wakeups.to_string(),
        rf(&|r| r.idle_wakeups.to_string()),
        "-".into(),
    );
    line(
        "storm CPU per event (µs)",
        k.storm_cpu_per_event
            .map_or("-".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e6)),
        rf(&|r| {
            r.storm_cpu_per_event
                .map_or("-".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e6))
        }),
        rr(&|x| secs(x.storm_cpu_per_event)),
    );
    line(
        "live attach, bind to negotiated, p50 (ms)",
        ms(k.live_p50),
        rf(&|r| ms(r.live_p50)),
        rr(&|x| secs(x.live_p50)),
    );
    line(
        "live attach p99 (ms)",
        ms(k.live_p99),
        rf(&|r| ms(r.live_p99)),
        rr(&|x| secs(x.live_p99)),
    );
    line(
        "live sockets never attached",
        k.live_missing.to_string(),
        rf(&|r| r.live_missing.to_string()),
        "-".into(),
    );
    line(
        "storm wall time (ms)",
        ms(k.storm_wall),
        rf(&|r| ms(r.storm_wall)),
        rr(&|x| secs(x.storm_wall)),
    );
    line(
        "RSS after storm (KiB)",
        k.storm_rss_kib.to_string(),
        rf(&|r| r.storm_rss_kib.to_string()),
        rr(&|x| x.storm_rss_kib as f64),
    );
    line(
        "decision p50 (ms)",
        ms(k.decide_p50),
        rf(&|r| ms(r.decide_p50)),
        rr(&|x| secs(x.decide_p50)),
    );
    line(
        "decision p99 (ms)",
        ms(k.decide_p99),
        rf(&|r| ms(r.decide_p99)),
        rr(&|x| secs(x.decide_p99)),
    );
    line(
        "decision max (ms)",
        ms(k.decide_max),
        rf(&|r| ms(r.decide_max)),
        rr(&|x| secs(x.decide_max)),
    );
    line(
        "decisions missing / wrong",
        format!("{} / {}", k.missing, k.wrong),
        rf(&|r| format!("{} / {}", r.missing, r.wrong)),
        "-".into(),
    );
    line(
        "fds after churn",
        k.churn_fds.to_string(),
        rf(&|r| r.churn_fds.to_string()),
        "-".into(),
    );
    line(
        "RSS after churn (KiB)",
        k.churn_rss_kib.to_string(),
        rf(&|r| r.churn_rss_kib.to_string()),
        rr(&|x| x.churn_rss_kib as f64),
    );
    line(
        "status --json: time to answer (ms) / size (KiB)",
        k.status_time.map_or("-".into(), |t| {
            format!("{} / {}", ms(Some(t)), k.status_bytes / 1024)
        }),
        "-".into(),
        "-".into(),
    );
    line(
        "RSS after that status (KiB)",
        k.rss_after_status_kib.to_string(),
        "-".into(),
        "-".into(),
    );
    line(
        "events followed (lines read by a follower)",
        k.followed.to_string(),
        "-".into(),
        "-".into(),
    );
    if let Some(every) = args.status_poll {
        line(
            &format!(
                "status answers while polling every {} ms",
                every.as_millis()
            ),
            k.polls.to_string(),
            "-".into(),
            "-".into(),
        );
    }
    if let Some(runs) = k.hook_runs {
        line(
            &format!(
                "hooks of {} ms: verdicts whose hook ran / ran twice",
                args.hook.map_or(0, |d| d.as_millis())
            ),
            format!("{runs} / {}", k.hook_repeats),
            "-".into(),
            "-".into(),
        );
        line(
            "zombies / fds once every hook ran",
            format!("{} / {}", k.zombies, k.hook_fds),
            "-".into(),
            "-".into(),
        );
    }
    line(
        "load tool's own CPU (ms)",
        ms(Some(k.tool_cpu)),
        rf(&|r| ms(Some(r.tool_cpu))),
        "-".into(),
    );
}
