//! The event loop: one `mio::Poll`, one thread, every descriptor.
//!
//! This module owns the poll, the signalfd, every QMP `UnixStream` (one
//! [`Monitor`] per `<instance>.kvmd` socket, kept in a slab), the connect
//! retry queue, and the point where a verdict is recorded. It dispatches on
//! tokens and applies what the pure parts ([`qmp`], [`decision`]) and the
//! watcher return; it does not parse or decide anything itself.
//!
//! Tokens: [`INOTIFY`] and [`SIGNALS`] are fixed; monitors get their slab
//! key plus [`FIRST_MONITOR`]. The poll has a timeout only while something
//! waits to be tried again: a connect, a verdict the disk refused, a crawl
//! while inotify is short of watches, a socket that found no descriptor (or
//! a flooded connection still has unread input). An idle daemon sleeps in
//! `epoll_wait` until the kernel has news.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::UnixStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use slab::Slab;

use crate::decision::{self, Carried, Evidence, Verdict};
use crate::logging;
use crate::qmp::{self, Output};
use crate::shutdown_file;
use crate::state::{Qemu, Saved, SocketId, StateDir};
use crate::watch::{Change, Unavailable, Watcher, instance_name};

const INOTIFY: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_MONITOR: usize = 2;

/// One read's worth; shared by all connections (per-connection memory is
/// only the partial line `qmp` keeps).
const READ_CHUNK: usize = 64 * 1024;
/// Reads one connection may do before the others get a turn, so a flooding
/// peer cannot starve the rest. Edge-triggered poll will not report what
/// is left, so such a connection goes on the backlog.
const READS_PER_TURN: usize = 16;

/// QEMU creates the socket file (bind) a moment before it listens, so a
/// refused connect is retried: quickly at first, then backing off.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(5);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);
/// After this long without a listener the socket is taken for stale (a
/// QEMU killed with SIGKILL leaves its socket file behind).
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Why the daemon could not start or go on. Only start-up and `poll`
/// failures end it; one connection's failure only ends that connection.
#[derive(Debug)]
pub enum DaemonError {
    Poll(io::Error),
    Inotify(io::Error),
    Signals(Errno),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Poll(e) => write!(f, "event loop failed: {e}"),
            DaemonError::Inotify(e) => write!(f, "cannot set up inotify: {e}"),
            DaemonError::Signals(e) => write!(f, "cannot set up signal handling: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::Poll(e) | DaemonError::Inotify(e) => Some(e),
            DaemonError::Signals(e) => Some(e),
        }
    }
}

/// What stands at a name in the control directory.
enum Entry {
    Socket { id: SocketId, owner: u32 },
    Other(SocketId),
}

fn entry(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Entry, Errno> {
    let stat = fstatat(dir, name.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok(Entry::of(&stat))
}

impl Entry {
    fn of(stat: &FileStat) -> Entry {
        let id = SocketId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFSOCK {
            Entry::Socket {
                id,
                owner: stat.st_uid,
            }
        } else {
            Entry::Other(id)
        }
    }
}

/// Opens the socket file itself (`O_PATH`; a symlink is not followed) and
/// says which it is. Connecting through `/proc/self/fd/N` of this handle
/// reaches exactly the inode that was checked, and fits `sun_path` however
/// long the name or the control directory's path is.
fn open_socket(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(OwnedFd, Entry), Errno> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let handle = openat(dir, name.as_bytes(), flags, Mode::empty())?;
    let stat = fstat(&handle)?;
    Ok((handle, Entry::of(&stat)))
}

fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// The instance's name for log lines: escaped, so a hostile name cannot
/// forge or break lines.
fn label(socket_name: &OsStr) -> String {
    let stem = instance_name(socket_name).unwrap_or(socket_name);
    stem.as_bytes().escape_ascii().to_string()
}

/// Connect errors that mean "not yet" rather than "never".
fn worth_retrying(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ECONNREFUSED | Errno::EAGAIN | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// This process (EMFILE) or the system (ENFILE) has no descriptor to give.
fn out_of_descriptors(errno: Errno) -> bool {
    matches!(errno, Errno::EMFILE | Errno::ENFILE)
}

/// How long sockets that found no descriptor wait before the next try.
const DESCRIPTOR_RETRY: Duration = Duration::from_millis(100);

/// The wait before try `attempts + 1`: `first`, doubling up to `max`.
fn backoff(first: Duration, max: Duration, attempts: u32) -> Duration {
    first.saturating_mul(1 << attempts.min(16)).min(max)
}

/// The sooner of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How often a stalled watcher crawls again: soon, then every few seconds.
const FIRST_RESCAN_DELAY: Duration = Duration::from_millis(500);
const MAX_RESCAN_DELAY: Duration = Duration::from_secs(5);

/// A verdict whose shutdown file could not be written yet.
struct Unrecorded {
    /// The socket of the QEMU it is about.
    socket: SocketId,
    label: String,
    file: OsString,
    verdict: Verdict,
    /// The evidence, as the decision line shows it.
    grounds: String,
    attempts: u32,
    /// When to try again.
    at: Instant,
    /// The control directory is away: tried again when it is watched, not
    /// on a timer.
    waits_for_dir: bool,
}

/// Whether trying again may succeed once something passing is over (room
/// on the disk, a read-write remount, descriptors). The rest needs a hand.
fn mendable(e: Errno) -> bool {
    !matches!(
        e,
        Errno::ENOTEMPTY
            | Errno::EEXIST
            | Errno::ENOTDIR
            | Errno::EISDIR
            | Errno::ELOOP
            | Errno::ENAMETOOLONG
            | Errno::EINVAL
    )
}

/// How long an unrecorded verdict waits before it is tried again: soon at
/// first, then every few seconds until the disk has room again.
const FIRST_RECORD_RETRY: Duration = Duration::from_millis(250);
const MAX_RECORD_RETRY: Duration = Duration::from_secs(5);

/// One `<instance>.kvmd` socket and what its connection has seen.
struct Monitor {
    socket_name: OsString,
    label: String,
    /// The socket file this monitor was made for (a socket recreated
    /// under the same name belongs to a new QEMU).
    socket: SocketId,
    /// What the state directory holds for it (default: no file).
    saved: Carried,
    link: Link,
    evidence: Evidence,
    /// Messages that could not be used; the first is logged as a warning,
    /// the rest at debug, and the count goes with the decision.
    problems: u32,
    /// A socket of this name was created while this monitor lived: at its
    /// end, whatever socket stands there is a new QEMU's.
    renewed: bool,
    /// Attached at an old monitor's hang-up, before inotify told of this
    /// socket's creation: that event is still to come, and is not news.
    creation_pending: bool,
}

enum Link {
    /// Connect was refused (or found no free descriptor: `starved`); try
    /// again at `at`.
    Waiting {
        attempts: u32,
        since: Instant,
        at: Instant,
        starved: bool,
    },
    Connected(Connection),
    /// The connection is closed; the instance is being decided.
    Ended,
}

struct Connection {
    stream: UnixStream,
    /// The QEMU process behind the socket (for the state file).
    qemu: Option<Qemu>,
    qmp: qmp::Connection,
    /// Command bytes the socket did not take yet (almost always empty).
    unsent: Vec<u8>,
    /// Whether WRITABLE interest is registered: only while `unsent` is not
    /// empty, so an idle connection costs no wake-ups.
    writable: bool,
    /// Whether it is on the backlog already (at most once per turn).
    backlogged: bool,
    /// Whether it ever used up a turn's reads (logged once).
    flooded: bool,
}

/// What servicing a connection left it in.
enum Pump {
    Open,
    /// Reads left over after this turn's budget.
    Backlogged,
    Closed(Option<io::Error>),
}

impl Monitor {
    /// Sends pending bytes, then reads and handles what the peer sent.
    fn pump(&mut self, buf: &mut [u8]) -> Pump {
        let Monitor {
            label,
            evidence,
            problems,
            link,
            ..
        } = self;
        let Link::Connected(conn) = link else {
            return Pump::Open;
        };
        let Connection {
            stream,
            qmp,
            unsent,
            ..
        } = conn;
        if !unsent.is_empty() {
            let pending = std::mem::take(unsent);
            send(stream, unsent, &pending);
        }
        for _ in 0..READS_PER_TURN {
            let (data, end) = match stream.read(buf) {
                Ok(0) => (&[][..], Some(None)),
                Ok(n) => (&buf[..n], None),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => (&[][..], Some(Some(e))),
            };
            let mut handle = |out: Output<'_>| {
                handle_output(label, evidence, problems, stream, unsent, out);
            };
            match end {
                None => qmp.handle_bytes(data, &mut handle),
                Some(cause) => {
                    qmp.handle_eof(&mut handle);
                    return Pump::Closed(cause);
                }
            }
        }
        Pump::Backlogged
    }
}

/// Applies one output of the QMP state machine to a connection.
fn handle_output(
    label: &str,
    evidence: &mut Evidence,
    problems: &mut u32,
    stream: &mut UnixStream,
    unsent: &mut Vec<u8>,
    out: Output<'_>,
) {
    match out {
        Output::Line(line) => debug!("{label}: QMP <- {}", line.escape_ascii()),
        Output::Transmit(command) => {
            let bytes = command.as_bytes();
            debug!("{label}: QMP -> {}", bytes.trim_ascii_end().escape_ascii());
            send(stream, unsent, bytes);
        }
        Output::Event(event) => evidence.record(event),
        Output::Ready { qemu, state } => {
            let qemu = qemu.map_or_else(|| "version unknown".to_owned(), |v| v.to_string());
            let state = state.map_or_else(|| "state unknown".to_owned(), |s| s.to_string());
            info!("{label}: monitoring (QEMU {qemu}, guest {state})");
        }
        Output::Problem(problem) => {
            *problems = problems.saturating_add(1);
            if *problems == 1 {
                warn!("{label}: {problem}");
            } else {
                debug!("{label}: {problem}");
            }
        }
    }
}

/// Writes `bytes` after whatever is already queued; queues what the socket
/// does not take. A failed write needs no handling here: the read side
/// sees the hang-up.
fn send(stream: &mut UnixStream, unsent: &mut Vec<u8>, bytes: &[u8]) {
    if !unsent.is_empty() {
        unsent.extend_from_slice(bytes);
        return;
    }
    match stream.write(bytes) {
        Ok(n) => unsent.extend_from_slice(&bytes[n..]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => unsent.extend_from_slice(bytes),
        Err(e) => debug!("write failed: {e}"),
    }
}

/// Blocks the signals the loop reads from its signalfd. `main` calls it
/// first thing: a SIGHUP from a log rotation during start-up must not kill
/// the daemon with the default action (the mask survives the forks of
/// detaching).
pub fn block_signals() -> Result<SigSet, Errno> {
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(signal);
    }
    mask.thread_block()?;
    Ok(mask)
}

/// The daemon: see the module documentation.
pub struct Daemon {
    poll: Poll,
    watcher: Watcher,
    signals: SignalFd,
    monitors: Slab<Monitor>,
    /// Socket name → slab key: exactly one monitor per socket.
    by_name: HashMap<OsString, usize>,
    /// When to try connecting again; entries of monitors that went away
    /// are skipped when they come up.
    retries: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Connections with input left after their turn.
    backlog: Vec<usize>,
    /// `*.kvmd` entries ignored (no socket, or an untrusted owner's), so
    /// each is logged once.
    ignored: HashMap<OsString, SocketId>,
    /// Who may own a socket kvmd connects to: root (or kvmd's own user
    /// when not root), and whom `--socket-owner` names. Anyone else's
    /// socket could make kvmd write a verdict that user chose.
    trusted_owners: Vec<u32>,
    read_buf: Box<[u8]>,
    changes: Vec<Change>,
    state: StateDir,
    /// Sockets that appeared when no descriptor was free to look at them,
    /// and when to try them again.
    deferred: Vec<OsString>,
    deferred_at: Option<Instant>,
    /// Monitors waiting for a free descriptor to connect.
    starved: usize,
    /// A descriptor shortage is going on (logged once when it starts, once
    /// when it is over).
    shortage: bool,
    /// Verdicts not written yet, by socket name.
    unrecorded: HashMap<OsString, Unrecorded>,
    /// Sockets given up on (nobody listened), so a recap does not retry
    /// the very same socket file; a creation under the name clears it.
    given_up: HashMap<OsString, SocketId>,
    /// When to crawl again while the watcher is stalled (no event would
    /// tell of a change), and how many such crawls in a row.
    rescan_at: Option<Instant>,
    rescans: u32,
}

impl Daemon {
    /// Sets up the poll, inotify and signals. Signals TERM, INT and HUP are
    /// blocked and read from a signalfd in the loop: no work in handlers.
    pub fn new(
        ctrl_dir: &Path,
        state_dir: &Path,
        socket_owners: &[u32],
    ) -> Result<Daemon, DaemonError> {
        let mut trusted_owners = vec![nix::unistd::geteuid().as_raw()];
        trusted_owners.extend_from_slice(socket_owners);
        let poll = Poll::new().map_err(DaemonError::Poll)?;
        let watcher = Watcher::new(ctrl_dir).map_err(DaemonError::Inotify)?;
        let mask = block_signals().map_err(DaemonError::Signals)?;
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        let signals = SignalFd::with_flags(&mask, flags).map_err(DaemonError::Signals)?;
        let registry = poll.registry();
        registry
            .register(&mut SourceFd(&watcher.fd()), INOTIFY, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        registry
            .register(
                &mut SourceFd(&signals.as_raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(DaemonError::Poll)?;
        Ok(Daemon {
            poll,
            watcher,
            signals,
            monitors: Slab::new(),
            by_name: HashMap::new(),
            retries: BinaryHeap::new(),
            backlog: Vec::new(),
            ignored: HashMap::new(),
            trusted_owners,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            changes: Vec::new(),
            state: StateDir::new(state_dir.to_owned()),
            deferred: Vec::new(),
            deferred_at: None,
            starved: 0,
            shortage: false,
            unrecorded: HashMap::new(),
            given_up: HashMap::new(),
            rescan_at: None,
            rescans: 0,
        })
    }

    /// Runs until SIGTERM or SIGINT, and returns which. Instances still
    /// running are left as they are: nothing is decided for them.
    pub fn run(&mut self) -> Result<Signal, DaemonError> {
        let mut events = Events::with_capacity(1024);
        let mut changes = std::mem::take(&mut self.changes);
        self.watcher.crawl(&mut changes);
        self.apply(&mut changes);
        self.sweep_state();
        self.schedule_rescan();
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(DaemonError::Poll(e));
            }
            for event in events.iter() {
                match event.token() {
                    INOTIFY => {
                        self.watcher.handle_readable(&mut changes);
                        self.apply(&mut changes);
                        self.schedule_rescan();
                    }
                    SIGNALS => {
                        if let Some(signal) = self.handle_signals() {
                            self.report_unrecorded();
                            return Ok(signal);
                        }
                    }
                    Token(token) => self.service(token - FIRST_MONITOR),
                }
            }
            for key in std::mem::take(&mut self.backlog) {
                if let Some(Monitor {
                    link: Link::Connected(conn),
                    ..
                }) = self.monitors.get_mut(key)
                {
                    conn.backlogged = false;
                }
                self.service(key);
            }
            self.connect_due();
            self.attach_deferred();
            self.record_due();
            if self.rescan_at.is_some_and(|at| at <= Instant::now()) {
                self.rescan_at = None;
                self.watcher.crawl(&mut changes);
                self.apply(&mut changes);
                self.schedule_rescan();
            }
        }
    }

    /// How long `poll` may sleep: forever unless a retry or backlog waits.
    fn timeout(&mut self) -> Option<Duration> {
        if !self.backlog.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = earliest(self.deferred_at, self.rescan_at);
        let watching = self.watcher.is_watching();
        for u in self.unrecorded.values() {
            if watching || !u.waits_for_dir {
                next = earliest(next, Some(u.at));
            }
        }
        while let Some(&Reverse((at, key))) = self.retries.peek() {
            if self.is_waiting(key, at) {
                next = earliest(next, Some(at));
                break;
            }
            self.retries.pop();
        }
        next.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Keeps crawling, backing off, while the watcher is stalled: with a
    /// watch missing, only a scan finds a socket created meanwhile.
    fn schedule_rescan(&mut self) {
        if !self.watcher.is_stalled() {
            self.rescans = 0;
            self.rescan_at = None;
        } else if self.rescan_at.is_none() {
            let delay = backoff(FIRST_RESCAN_DELAY, MAX_RESCAN_DELAY, self.rescans);
            self.rescans += 1;
            self.rescan_at = Some(Instant::now() + delay);
        }
    }

    fn is_waiting(&self, key: usize, due: Instant) -> bool {
        matches!(
            self.monitors.get(key),
            Some(Monitor { link: Link::Waiting { at, .. }, .. }) if *at == due
        )
    }

    fn apply(&mut self, changes: &mut Vec<Change>) {
        // Opened at most once per batch, and only when a socket appeared:
        // a batch of QEMU exits needs no directory.
        let mut dir = None;
        for change in changes.drain(..) {
            let (name, created) = match change {
                Change::Created(name) => (name, true),
                Change::Appeared(name) => (name, false),
                Change::Vanished(name) => {
                    self.ignored.remove(&name);
                    self.given_up.remove(&name);
                    continue;
                }
            };
            if created {
                // A new entry: whatever was known of the name is old news.
                self.ignored.remove(&name);
                self.given_up.remove(&name);
                self.moot(&name);
            }
            if let Some(&key) = self.by_name.get(&name) {
                debug!("{}: already monitored", label(&name));
                // A new QEMU bound the name before the old one's hang-up
                // was read; the hang-up picks it up, even if it got the old
                // socket's inode number. Unless this is the creation of the
                // monitor's own socket, read after it was attached.
                if let (true, Some(monitor)) = (created, self.monitors.get_mut(key)) {
                    if monitor.creation_pending {
                        monitor.creation_pending = false;
                    } else {
                        monitor.renewed = true;
                    }
                }
                continue;
            }
            match dir.get_or_insert_with(|| self.watcher.open_ctrl_dir()) {
                Ok(dir) => {
                    let dir = dir.as_fd();
                    self.attach(dir, name, false);
                }
                Err(Unavailable::Error(e)) if out_of_descriptors(*e) => {
                    let e = *e;
                    self.short_of_descriptors(e);
                    self.defer(name);
                }
                Err(_) => {} // gone or replaced: the next recap finds it
            }
        }
    }

    fn handle_signals(&mut self) -> Option<Signal> {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    // Logged after reopening, so the line opens the new file.
                    Ok(Signal::SIGHUP) => match logging::reopen() {
                        Ok(()) => info!("SIGHUP: log file reopened"),
                        Err(e) => error!("SIGHUP: {e}; still logging to the old file"),
                    },
                    Ok(signal) => return Some(signal),
                    Err(_) => {}
                },
                Ok(None) => return None,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    error!("cannot read signals: {e}");
                    return None;
                }
            }
        }
    }

    /// Starts monitoring `name` unless it is monitored already or is no
    /// socket. `creation_pending`: inotify has yet to tell of this
    /// socket's creation (see [`Monitor::creation_pending`]).
    fn attach(&mut self, dir: BorrowedFd<'_>, name: OsString, creation_pending: bool) {
        if self.by_name.contains_key(&name) {
            debug!("{}: already monitored", label(&name));
            return;
        }
        let socket = match entry(dir, &name) {
            Ok(Entry::Socket { id, owner }) if self.trusted_owners.contains(&owner) => id,
            Ok(Entry::Socket { id, owner }) => {
                if self.ignored.insert(name.clone(), id) != Some(id) {
                    warn!(
                        "{}: {} is owned by uid {owner}, whom kvmd does not trust; ignored \
                         (--socket-owner {owner} would allow it)",
                        label(&name),
                        name.as_bytes().escape_ascii()
                    );
                }
                return;
            }
            Ok(Entry::Other(id)) => {
                if self.ignored.insert(name.clone(), id) != Some(id) {
                    warn!(
                        "{}: {} is not a socket; ignored",
                        label(&name),
                        name.as_bytes().escape_ascii()
                    );
                }
                return;
            }
            Err(Errno::ENOENT) => {
                debug!("{}: gone before it could be monitored", label(&name));
                return;
            }
            Err(e) => {
                warn!("{}: cannot look at its socket: {e}", label(&name));
                return;
            }
        };
        if self.given_up.get(&name) == Some(&socket) {
            debug!("{}: given up on this socket already", label(&name));
            return;
        }
        if shutdown_file::file_for(&name).is_none() {
            if self.ignored.insert(name.clone(), socket) != Some(socket) {
                warn!(
                    "{}: its .shutdown file would be longer than a file name may be; \
                     not monitored (its verdict could never be recorded)",
                    label(&name)
                );
            }
            return;
        }
        let now = Instant::now();
        let key = self.monitors.insert(Monitor {
            label: label(&name),
            socket_name: name.clone(),
            socket,
            saved: Carried::default(),
            link: Link::Waiting {
                attempts: 0,
                since: now,
                at: now,
                starved: false,
            },
            evidence: Evidence::new(),
            problems: 0,
            renewed: false,
            creation_pending,
        });
        if self
            .unrecorded
            .get(&name)
            .is_some_and(|u| u.socket != socket)
        {
            self.moot(&name);
        }
        self.by_name.insert(name, key);
        self.connect(dir, key);
    }

    /// Tries to connect a waiting monitor; schedules a retry or gives up.
    fn connect(&mut self, dir: BorrowedFd<'_>, key: usize) {
        let Some(monitor) = self.monitors.get_mut(key) else {
            return;
        };
        let Link::Waiting { since, starved, .. } = monitor.link else {
            return;
        };
        // Connect only to the socket this monitor was made for.
        let handle = match open_socket(dir, &monitor.socket_name) {
            Ok((handle, Entry::Socket { id, .. })) if id == monitor.socket => handle,
            Err(e) if out_of_descriptors(e) => {
                self.wait_for_descriptor(key, e);
                return;
            }
            Ok(_) | Err(Errno::ENOENT | Errno::ELOOP) => {
                self.give_up(Some(dir), key, "its socket went away before QEMU listened");
                return;
            }
            Err(e) => {
                let why = format!("cannot open its socket: {e}");
                self.give_up(Some(dir), key, &why);
                return;
            }
        };
        let connected = UnixStream::connect(proc_path(handle.as_fd()));
        drop(handle);
        let failed = match connected {
            Ok(mut stream) => {
                let token = Token(key + FIRST_MONITOR);
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                {
                    error!("{}: cannot poll its socket: {e}", monitor.label);
                    self.give_up(Some(dir), key, "it cannot be polled");
                    return;
                }
                debug!("{}: connected", monitor.label);
                // What an earlier run saw of this very QEMU still counts.
                let qemu = Qemu::of_peer(&stream);
                match (qemu, self.state.load(&monitor.socket_name)) {
                    (Some(qemu), Some(saved))
                        if saved.socket == monitor.socket && saved.qemu == qemu =>
                    {
                        info!("{}: evidence restored from before a restart", monitor.label);
                        monitor.evidence = Evidence::restored(saved.carried);
                        monitor.saved = saved.carried;
                    }
                    (_, Some(_)) => self.state.remove(&monitor.socket_name),
                    (_, None) => {}
                }
                monitor.link = Link::Connected(Connection {
                    stream,
                    qemu,
                    qmp: qmp::Connection::new(),
                    unsent: Vec::new(),
                    writable: false,
                    backlogged: false,
                    flooded: false,
                });
                None
            }
            Err(e) => Some(e),
        };
        let Some(e) = failed else {
            if starved {
                self.starved -= 1;
            }
            self.end_shortage_if_over();
            return;
        };
        let errno = e.raw_os_error().map(Errno::from_raw);
        if let Some(errno) = errno.filter(|&errno| out_of_descriptors(errno)) {
            self.wait_for_descriptor(key, errno);
        } else if worth_retrying(&e) && since.elapsed() < RETRY_FOR {
            self.retry_later(key, false, format_args!("connect: {e}"));
        } else {
            let why = format!("cannot connect to its QMP socket: {e}");
            self.give_up(Some(dir), key, &why);
        }
        self.end_shortage_if_over();
    }

    /// A monitor found no free descriptor: it waits (never giving up for
    /// that) and tries again a moment later, when a hang-up or another
    /// process may have freed one.
    fn wait_for_descriptor(&mut self, key: usize, e: Errno) {
        self.short_of_descriptors(e);
        self.retry_later(key, true, format_args!("no free descriptor ({e})"));
    }

    /// Schedules a waiting monitor's next connect, backing off, and keeps
    /// the count of those waiting for a descriptor (`starved`).
    fn retry_later(&mut self, key: usize, starved: bool, why: fmt::Arguments<'_>) {
        let Some(monitor) = self.monitors.get_mut(key) else {
            return;
        };
        let Link::Waiting {
            attempts,
            since,
            starved: was_starved,
            ..
        } = monitor.link
        else {
            return;
        };
        let delay = backoff(FIRST_RETRY_DELAY, MAX_RETRY_DELAY, attempts);
        let at = Instant::now() + delay;
        debug!("{}: {why}; again in {delay:?}", monitor.label);
        monitor.link = Link::Waiting {
            attempts: attempts + 1,
            since,
            at,
            starved,
        };
        match (was_starved, starved) {
            (false, true) => self.starved += 1,
            (true, false) => self.starved -= 1,
            _ => {}
        }
        self.retries.push(Reverse((at, key)));
    }

    /// Starts a descriptor-shortage episode, logged once.
    fn short_of_descriptors(&mut self, e: Errno) {
        if !self.shortage {
            self.shortage = true;
            warn!(
                "out of file descriptors ({e}): instances wait until descriptors free up \
                 (raise the limit, e.g. LimitNOFILE=, for this many instances)"
            );
        }
    }

    /// Ends the episode, logged once, when nobody waits for a descriptor.
    fn end_shortage_if_over(&mut self) {
        if self.shortage && self.starved == 0 && self.deferred.is_empty() {
            self.shortage = false;
            info!("file descriptors free again: every instance is monitored");
        }
    }

    /// Keeps a socket that appeared when no descriptor was free.
    fn defer(&mut self, name: OsString) {
        self.deferred.push(name);
        self.deferred_at
            .get_or_insert_with(|| Instant::now() + DESCRIPTOR_RETRY);
    }

    /// Tries the deferred sockets again, when their time has come.
    fn attach_deferred(&mut self) {
        if self.deferred_at.is_none_or(|at| at > Instant::now()) {
            return;
        }
        self.deferred_at = None;
        let names = std::mem::take(&mut self.deferred);
        match self.watcher.open_ctrl_dir() {
            Ok(dir) => {
                for name in names {
                    self.attach(dir.as_fd(), name, false);
                }
            }
            Err(Unavailable::Error(e)) if out_of_descriptors(e) => {
                self.deferred = names;
                self.deferred_at = Some(Instant::now() + DESCRIPTOR_RETRY);
            }
            // Gone or replaced: the recap after the crawl finds them.
            Err(_) => {}
        }
        self.end_shortage_if_over();
    }

    fn connect_due(&mut self) {
        let now = Instant::now();
        let mut dir = None;
        while let Some(&Reverse((at, key))) = self.retries.peek() {
            if at > now {
                break;
            }
            self.retries.pop();
            if !self.is_waiting(key, at) {
                continue;
            }
            // Opened once for all the retries due now.
            let dir = dir.get_or_insert_with(|| self.watcher.open_ctrl_dir());
            match dir {
                Ok(dir) => self.connect(dir.as_fd(), key),
                Err(Unavailable::Error(e)) if out_of_descriptors(*e) => {
                    let e = *e;
                    self.wait_for_descriptor(key, e);
                }
                Err(_) => self.give_up(None, key, "the control directory is gone"),
            }
        }
    }

    /// Stops trying to reach an instance that was never connected. Nothing
    /// is decided: nothing was seen. A later creation of the socket starts
    /// over.
    fn give_up(&mut self, dir: Option<BorrowedFd<'_>>, key: usize, why: &str) {
        let Some(monitor) = self.forget(key) else {
            return;
        };
        warn!("{}: not monitored: {why}", monitor.label);
        // Whatever an earlier run kept for this socket is stale now.
        self.state.remove(&monitor.socket_name);
        // A rescan finds this very socket again; only a new one (created,
        // or another inode) is tried.
        self.given_up
            .insert(monitor.socket_name.clone(), monitor.socket);
        if let Some(dir) = dir {
            self.attach_successor(dir, monitor);
        }
    }

    /// Services one connection: on its poll event, or from the backlog.
    fn service(&mut self, key: usize) {
        let Some(monitor) = self.monitors.get_mut(key) else {
            return; // an event for a connection closed earlier this turn
        };
        let mut pump = monitor.pump(&mut self.read_buf);
        if let Link::Connected(conn) = &mut monitor.link {
            if matches!(pump, Pump::Backlogged) {
                if conn.backlogged {
                    pump = Pump::Open; // queued already
                } else {
                    conn.backlogged = true;
                    if !conn.flooded {
                        conn.flooded = true;
                        info!(
                            "{}: sends faster than one turn reads; served in turns with the others",
                            monitor.label
                        );
                    }
                }
            }
            let wants = !conn.unsent.is_empty();
            if wants != conn.writable {
                let interest = if wants {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let token = Token(key + FIRST_MONITOR);
                match self
                    .poll
                    .registry()
                    .reregister(&mut conn.stream, token, interest)
                {
                    Ok(()) => conn.writable = wants,
                    Err(e) => debug!("{}: reregister: {e}", monitor.label),
                }
            }
        }
        match pump {
            Pump::Open => self.keep_state(key),
            Pump::Backlogged => {
                self.keep_state(key);
                self.backlog.push(key);
            }
            Pump::Closed(cause) => self.hang_up(key, cause),
        }
    }

    /// Writes what must survive a restart when it changed (rarely: a
    /// POWERDOWN, a STOP, their undoing; never per event of a storm).
    fn keep_state(&mut self, key: usize) {
        let Some(monitor) = self.monitors.get_mut(key) else {
            return;
        };
        let carried = monitor.evidence.carried();
        if carried == monitor.saved {
            return;
        }
        // Tried once per change, whatever happens: a state directory that
        // cannot be written must not cost a syscall and a log line per read.
        monitor.saved = carried;
        let Link::Connected(Connection {
            qemu: Some(qemu), ..
        }) = monitor.link
        else {
            debug!(
                "{}: QEMU's process unknown; evidence not kept",
                monitor.label
            );
            return;
        };
        if carried == Carried::default() {
            self.state.remove(&monitor.socket_name);
            return;
        }
        let saved = Saved {
            socket: monitor.socket,
            qemu,
            carried,
        };
        if let Err(e) = self.state.save(&monitor.socket_name, &saved) {
            error!(
                "{}: {e}; a daemon restart would lose what it saw",
                monitor.label
            );
        }
    }

    /// Removes state files whose socket is not monitored: it is gone, was
    /// recreated, or is no socket.
    fn sweep_state(&mut self) {
        for name in self.state.socket_names() {
            if !self.by_name.contains_key(&name) {
                debug!("{}: stale state file removed", label(&name));
                self.state.remove(&name);
            }
        }
    }

    /// The connection ended: decide, record, and look for a successor.
    fn hang_up(&mut self, key: usize, cause: Option<io::Error>) {
        let Some(monitor) = self.forget(key) else {
            return;
        };
        if let Some(cause) = cause {
            debug!("{}: connection ended: {cause}", monitor.label);
        }
        let verdict = decision::decide(&monitor.evidence);
        // The connection's own descriptor was closed just before: one is
        // free for the directory even in a shortage (a successor's connect
        // needs two more, and waits for them if need be).
        let dir = self.watcher.open_ctrl_dir();
        if let Some(file) = shutdown_file::file_for(&monitor.socket_name) {
            let bad = match monitor.problems {
                0 => String::new(),
                n => format!("; {n} unusable messages"),
            };
            let unrecorded = Unrecorded {
                socket: monitor.socket,
                label: monitor.label.clone(),
                file,
                verdict,
                grounds: format!("{}{bad}", monitor.evidence),
                attempts: 0,
                at: Instant::now(),
                waits_for_dir: false,
            };
            let dir = dir.as_ref().map(|dir| dir.as_fd()).map_err(|e| *e);
            self.record(dir, monitor.socket_name.clone(), unrecorded);
        }
        if monitor.saved != Carried::default() {
            self.state.remove(&monitor.socket_name);
        }
        // A new QEMU of the same name may have bound its socket before this
        // hang-up was seen; its creation was skipped as "already monitored".
        if let Ok(dir) = &dir {
            self.attach_successor(dir.as_fd(), monitor);
        }
    }

    /// Removes a monitor from every table and the poll.
    fn forget(&mut self, key: usize) -> Option<Monitor> {
        let mut monitor = self.monitors.try_remove(key)?;
        self.by_name.remove(&monitor.socket_name);
        match &mut monitor.link {
            Link::Connected(conn) => {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
            Link::Waiting { starved: true, .. } => self.starved -= 1,
            Link::Waiting { .. } | Link::Ended => {}
        }
        // Closes the socket now, freeing its descriptor for what follows.
        monitor.link = Link::Ended;
        self.end_shortage_if_over();
        Some(monitor)
    }

    /// Attaches the socket that took the name of `ended`, if one did: one
    /// created while it lived, or one that is not its socket.
    fn attach_successor(&mut self, dir: BorrowedFd<'_>, ended: Monitor) {
        let renewed = ended.renewed
            || matches!(entry(dir, &ended.socket_name), Ok(Entry::Socket { id, .. }) if id != ended.socket);
        if renewed {
            // Unless a creation under the name was read already (and made
            // the old one renewed), the new socket's is still queued.
            self.attach(dir, ended.socket_name, !ended.renewed);
        }
    }

    /// Writes a verdict into the control directory. What cannot be written
    /// for a passing reason (disk full, a read-only file system, the
    /// directory away) is logged once and tried again, backing off, until
    /// it is written or a new QEMU of that name makes it moot: a verdict is
    /// never dropped unsaid. What a retry cannot mend (a non-empty
    /// directory in the file's place, say) is logged and left to an
    /// operator.
    fn record(
        &mut self,
        dir: Result<BorrowedFd<'_>, Unavailable>,
        socket_name: OsString,
        mut u: Unrecorded,
    ) {
        let shown = u.file.as_bytes().escape_ascii();
        let user = u.verdict.user_shutdown;
        let ctrl_dir = self.watcher.ctrl_dir_path().display();
        let (why, again) = match dir {
            Ok(dir) => match shutdown_file::record(dir, &u.file, user) {
                Ok(outcome) => {
                    let Unrecorded { label, verdict, .. } = &u;
                    match u.attempts {
                        0 => info!(
                            "{label}: decided {verdict} [{}]; {shown}: {outcome}",
                            u.grounds
                        ),
                        n => info!(
                            "{label}: {shown}: {outcome} at last, after {} tries (decided {verdict})",
                            n + 1
                        ),
                    }
                    return;
                }
                Err(e) => (e.to_string(), mendable(e)),
            },
            Err(Unavailable::NotWatched) => {
                u.waits_for_dir = true;
                (format!("{ctrl_dir} is away"), true)
            }
            Err(Unavailable::Error(e)) => (format!("cannot open {ctrl_dir}: {e}"), true),
        };
        let Unrecorded {
            label,
            verdict,
            grounds,
            attempts,
            ..
        } = &u;
        let doing = if user { "create" } else { "remove" };
        let then = if again {
            "trying again until it can"
        } else {
            "not retried: that needs an operator"
        };
        if *attempts == 0 {
            error!(
                "{label}: decided {verdict} [{grounds}], but cannot {doing} {shown}: {why}; {then}"
            );
        } else if again {
            debug!("{label}: still cannot {doing} {shown}: {why}");
        } else {
            error!("{label}: cannot {doing} {shown}: {why}; {then}");
        }
        if again {
            let delay = backoff(FIRST_RECORD_RETRY, MAX_RECORD_RETRY, u.attempts);
            u.attempts += 1;
            u.at = Instant::now() + delay;
            self.unrecorded.insert(socket_name, u);
        }
    }

    /// Tries again the verdicts whose time has come (those waiting for the
    /// control directory, once it is watched again).
    fn record_due(&mut self) {
        let now = Instant::now();
        let watching = self.watcher.is_watching();
        let due: Vec<OsString> = self
            .unrecorded
            .iter()
            .filter(|(_, u)| u.at <= now && (watching || !u.waits_for_dir))
            .map(|(name, _)| name.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let dir = self.watcher.open_ctrl_dir();
        for name in due {
            // A new QEMU's socket under the name (one not seen created yet,
            // while a stalled watcher rescans) makes the verdict moot.
            if let Ok(dir) = &dir {
                let socket = self.unrecorded.get(&name).map(|u| u.socket);
                if matches!(entry(dir.as_fd(), &name), Ok(Entry::Socket { id, .. }) if Some(id) != socket)
                {
                    self.moot(&name);
                    continue;
                }
            }
            if let Some(mut u) = self.unrecorded.remove(&name) {
                u.waits_for_dir = false;
                let dir = dir.as_ref().map(|dir| dir.as_fd()).map_err(|e| *e);
                self.record(dir, name, u);
            }
        }
    }

    /// Drops the unwritten verdict for `name`: a new QEMU of that name
    /// started, and the old verdict would mislead about it.
    fn moot(&mut self, name: &OsStr) {
        if let Some(u) = self.unrecorded.remove(name) {
            warn!(
                "{}: a new QEMU started before {} could be {}; that verdict ({}) is moot now",
                u.label,
                u.file.as_bytes().escape_ascii(),
                if u.verdict.user_shutdown {
                    "created"
                } else {
                    "removed"
                },
                u.verdict
            );
        }
    }

    /// At exit: says which verdicts never made it to disk.
    fn report_unrecorded(&self) {
        for u in self.unrecorded.values() {
            let doing = if u.verdict.user_shutdown {
                "created"
            } else {
                "removed"
            };
            error!(
                "{}: exiting with {} still not {doing} (decided {})",
                u.label,
                u.file.as_bytes().escape_ascii(),
                u.verdict
            );
        }
    }
}
