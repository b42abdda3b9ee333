//! The event loop: one `mio::Poll`, one thread, every descriptor.
//!
//! This module owns the poll, the signalfd, the inotify watcher and every
//! QMP `UnixStream`, and does every system call; the [`Fleet`] decides
//! everything. A loop turn: wait in `poll` until the kernel has news or the
//! fleet's next deadline; read `now` once; hand each readiness to the
//! watcher, the signal reader or a connection's transport, and what comes
//! of it to the fleet; fire the fleet's due timers; then carry out the
//! fleet's actions ([`host`], driven by [`carry_out`]).
//!
//! Tokens: [`INOTIFY`] and [`SIGNALS`] are fixed; a connection's token is
//! its instance's key plus [`FIRST_CONNECTION`]. An idle daemon sleeps in
//! `epoll_wait` until the kernel has news: the poll has a timeout only
//! while the fleet waits for something, or a flooded connection still has
//! unread input.

mod control;
mod error;
mod files;
mod hooks;
mod host;
mod journal;
mod notify;
mod report;
mod signals;
mod transport;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal;

use kvmd_core::control::{Clock, DaemonInfo, Request, WatchState};
use kvmd_core::fleet::{
    Change, Fleet, Follow, HookPolicy, InstanceKey, IntentRefused, Reach, carry_out,
};
use kvmd_core::name::InstanceName;
use kvmd_core::saved::Qemu;

use crate::adapters::state::StateDir;
use crate::adapters::watch::Watcher;
use crate::config::Config;

use control::{Answer, Context, ControlServer};
use files::CtrlDir;
use hooks::HookRunner;
use notify::Notifier;
use signals::Signals;
use transport::{Pump, Transport, Turn};

pub use control::ControlError;
pub use error::DaemonError;

pub use signals::block_signals;

const INOTIFY: Token = Token(0);
const SIGNALS: Token = Token(1);
const CONTROL: Token = Token(2);
const FIRST_CONNECTION: usize = 3;
/// Control-socket clients' tokens start here, far above any connection's.
const FIRST_CLIENT: usize = usize::MAX / 2;
/// Hooks' tokens (three each: exit, stdout, stderr) start here, between.
const FIRST_HOOK: usize = usize::MAX / 4;

/// One read's worth; shared by all connections (per-connection memory is
/// only the partial line `qmp` keeps).
const READ_CHUNK: usize = 64 * 1024;

fn token(key: InstanceKey) -> Token {
    Token(key.0 + FIRST_CONNECTION)
}

/// The daemon: see the module documentation.
pub struct Daemon {
    poll: Poll,
    watcher: Watcher,
    signals: Signals,
    fleet: Fleet,
    /// Each connected instance's transport, at its fleet key.
    transports: Vec<Option<Transport>>,
    /// Connections with input left after their turn.
    backlog: Vec<InstanceKey>,
    state: StateDir,
    dir: CtrlDir,
    read_buf: Box<[u8]>,
    control: ControlServer,
    notifier: Notifier,
    metrics_file: Option<PathBuf>,
    /// A metrics write failed, and has not succeeded since (told once).
    metrics_failing: bool,
    /// The last status line sent to systemd (sent again only if changed).
    status_line: String,
    info: DaemonInfo,
    clock: Clock,
    started_wall: SystemTime,
    /// inotify overflows already reported.
    overflows: u64,
    /// `--on-verdict`'s program and the hooks running.
    hooks: Option<HookRunner>,
    /// Every verdict and guest crash, durably (`--journal-dir`).
    journal: crate::adapters::journal::Journal,
    /// An append failed, and none succeeded since (told once).
    journal_failing: bool,
    /// Appends that failed (for the metrics).
    journal_errors: u64,
}

impl Daemon {
    /// Sets up the poll, inotify and signals. Signals TERM, INT and HUP are
    /// blocked and read from a signalfd in the loop.
    pub fn new(config: &Config) -> Result<Daemon, DaemonError> {
        let mut trusted_owners = vec![nix::unistd::geteuid().as_raw()];
        trusted_owners.extend_from_slice(&config.socket_owners);
        let poll = Poll::new().map_err(DaemonError::Poll)?;
        let watcher = Watcher::new(&config.ctrl_dir).map_err(DaemonError::Inotify)?;
        let signals = Signals::new().map_err(DaemonError::Signals)?;
        let registry = poll.registry();
        registry
            .register(&mut SourceFd(&watcher.fd()), INOTIFY, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        registry
            .register(&mut SourceFd(&signals.fd()), SIGNALS, Interest::READABLE)
            .map_err(DaemonError::Poll)?;
        let control = ControlServer::new(&config.control_socket, registry, CONTROL, FIRST_CLIENT)
            .map_err(DaemonError::Control)?;
        let notifier = Notifier::from_env();
        let mut fleet = Fleet::new(trusted_owners);
        let hooks = config.on_verdict.as_ref().map(|program| {
            fleet = std::mem::replace(&mut fleet, Fleet::new(Vec::new())).with_hooks(HookPolicy {
                jobs: config.hook_jobs,
                timeout: config.hook_timeout,
                retries: config.hook_retries,
            });
            HookRunner::new(program.clone(), &config.ctrl_dir, FIRST_HOOK)
        });
        if config.metrics_file.is_none() && !notifier.is_enabled() {
            fleet = fleet.without_reports();
        }
        let now = Instant::now();
        let started_wall = SystemTime::now();
        Ok(Daemon {
            poll,
            watcher,
            signals,
            fleet,
            transports: Vec::new(),
            backlog: Vec::new(),
            state: StateDir::new(config.state_dir.clone()),
            dir: CtrlDir::default(),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            control,
            notifier,
            metrics_file: config.metrics_file.clone(),
            metrics_failing: false,
            status_line: String::new(),
            info: DaemonInfo {
                pid: std::process::id(),
                started: now,
                ctrl_dir: config.ctrl_dir.clone(),
                watch: WatchState::WaitingForDir,
            },
            clock: Clock::new(now, started_wall),
            started_wall,
            overflows: 0,
            hooks,
            journal: crate::adapters::journal::Journal::new(
                config.journal_dir.clone(),
                crate::adapters::journal::Limits {
                    max_total: config.journal_max,
                },
            ),
            journal_failing: false,
            journal_errors: 0,
        })
    }

    /// Runs until SIGTERM or SIGINT, and returns which. Instances still
    /// running are left as they are: nothing is decided for them.
    pub fn run(&mut self) -> Result<Signal, DaemonError> {
        let mut events = Events::with_capacity(1024);
        let now = Instant::now();
        self.crawl(now);
        // Every state file whose socket is not monitored now is stale.
        self.fleet.handle_state_files(self.state.instances());
        carry_out(self, now);
        self.restore_intents(now);
        // Hooks a killed kvmd had not finished run again (or wait, kept,
        // for --on-verdict to be given again).
        let files = self.state.hooks();
        if self.hooks.is_none() && !files.is_empty() {
            info!(
                "{} instances have unfinished verdict hooks; kept until kvmd runs with --on-verdict",
                files.len()
            );
        }
        if self.hooks.is_some() {
            for (_, jobs) in &files {
                jobs.iter().for_each(hooks::end_orphan);
            }
            self.fleet.handle_hook_files(now, files);
            carry_out(self, now);
        }
        self.dir.close();
        // Every socket there was is attached or queued: ready.
        self.write_report();
        self.notifier.send("READY=1");
        loop {
            let timeout = if self.backlog.is_empty() {
                let next = self.fleet.poll_timeout();
                next.map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(DaemonError::Poll(e));
            }
            let now = Instant::now();
            // The wall clock read afresh at each wake-up: the times written
            // (the journal's, an intent's) stay right across a step of the
            // wall clock (NTP, an operator), which one reading at start
            // would carry on for ever.
            self.clock = Clock::new(now, SystemTime::now());
            for event in events.iter() {
                match event.token() {
                    INOTIFY => {
                        let mut changes = Vec::new();
                        self.watcher.handle_readable(&mut changes);
                        self.apply(now, changes);
                    }
                    SIGNALS => {
                        if let Some(signal) = self.signals.handle_readable() {
                            self.notifier.send("STOPPING=1");
                            self.fleet.handle_exit();
                            carry_out(self, now);
                            return Ok(signal);
                        }
                    }
                    CONTROL => self.control.accept(self.poll.registry()),
                    token
                        if !self.control.owns(token)
                            && self.hooks.as_ref().is_some_and(|h| h.owns(token)) =>
                    {
                        let ended = self
                            .hooks
                            .as_mut()
                            .and_then(|h| h.handle(token, self.poll.registry()));
                        if let Some((id, exit)) = ended {
                            self.fleet.handle_hook_exited(now, id, exit);
                            carry_out(self, now);
                        }
                    }
                    token if self.control.owns(token) => {
                        let ctx = Context {
                            fleet: &self.fleet,
                            info: &self.info,
                            clock: self.clock,
                            now,
                        };
                        self.control.handle(token, self.poll.registry(), &ctx);
                        self.carry_out_orders(now);
                    }
                    Token(token) => self.service(now, InstanceKey(token - FIRST_CONNECTION)),
                }
            }
            for key in std::mem::take(&mut self.backlog) {
                if let Some(t) = self.transport(key) {
                    t.turn = Turn::Poll;
                }
                self.service(now, key);
            }
            // Before the timers: a press due this very turn for a client
            // that went away is not sent.
            self.abandon_orders(now);
            self.fleet.handle_timeout(now);
            carry_out(self, now);
            self.dir.close();
        }
    }

    /// Crawls from `/` to the control directory, and applies what it found.
    fn crawl(&mut self, now: Instant) {
        let mut changes = Vec::new();
        self.watcher.crawl(&mut changes);
        self.apply(now, changes);
    }

    /// Hands the fleet the watcher's changes, one at a time (each one's
    /// actions are carried out before the next is told), then its state.
    fn apply(&mut self, now: Instant, changes: Vec<Change>) {
        // What the watcher did may have replaced the directory.
        self.dir.close();
        if self.watcher.overflows() != self.overflows {
            self.overflows = self.watcher.overflows();
            self.fleet.handle_external_change();
        }
        for change in changes {
            self.fleet.handle_change(now, change);
            carry_out(self, now);
        }
        let reach = if self.watcher.is_watching() {
            Reach::Reached
        } else {
            Reach::Away
        };
        let follow = if self.watcher.is_stalled() {
            Follow::Rescans
        } else {
            Follow::Events
        };
        self.info.watch = WatchState::of(reach, follow);
        self.fleet.handle_dir(now, reach, follow);
        carry_out(self, now);
    }

    /// Services one connection: on its poll event, or from the backlog.
    fn service(&mut self, now: Instant, key: InstanceKey) {
        let Some(Some(t)) = self.transports.get_mut(key.0) else {
            return; // an event for a connection closed earlier this turn
        };
        match t.pump(now, key, &mut self.fleet, &mut self.read_buf) {
            Pump::Open => {}
            Pump::Backlogged => {
                if t.turn == Turn::Poll {
                    t.turn = Turn::Backlog;
                    self.backlog.push(key);
                    if !t.flooded {
                        t.flooded = true;
                        if let Some(name) = self.fleet.name(key) {
                            info!(
                                "{name}: sends faster than one turn reads; served in turns with the others"
                            );
                        }
                    }
                }
            }
            Pump::Closed(cause) => {
                if let (Some(cause), Some(name)) = (cause, self.fleet.name(key)) {
                    debug!("{name}: connection ended: {cause}");
                }
                self.fleet.handle_hangup(now, key);
            }
        }
        carry_out(self, now);
        self.sync_interest(key);
    }

    fn transport(&mut self, key: InstanceKey) -> Option<&mut Transport> {
        self.transports.get_mut(key.0)?.as_mut()
    }

    fn sync_interest(&mut self, key: InstanceKey) {
        let registry = self.poll.registry();
        if let Some(Some(t)) = self.transports.get_mut(key.0)
            && let Err(e) = t.sync_interest(registry, token(key))
            && let Some(name) = self.fleet.name(key)
        {
            debug!("{name}: reregister: {e}");
        }
    }

    /// Intents a previous run kept: handed to the fleet, which keeps those
    /// whose QEMU is still the one they were given for.
    fn restore_intents(&mut self, now: Instant) {
        let wall_now = self.clock.wall(now);
        let mut intents = Vec::new();
        for (name, saved) in self.state.intents() {
            match saved.and_then(|s| s.to_intent(now, wall_now)) {
                Some(intent) => intents.push((name, intent)),
                None => {
                    warn!("{name}: its intent file cannot be read; removed");
                    self.state.remove_intent(&name);
                }
            }
        }
        if !intents.is_empty() {
            self.fleet.handle_intent_files(now, intents);
            carry_out(self, now);
        }
    }

    /// Carries out what control clients asked that changes the fleet, and
    /// answers each.
    fn carry_out_orders(&mut self, now: Instant) {
        for (client, request) in self.control.take_orders() {
            let answer = self.order(now, request);
            carry_out(self, now);
            let ctx = Context {
                fleet: &self.fleet,
                info: &self.info,
                clock: self.clock,
                now,
            };
            self.control
                .answer(client, answer, self.poll.registry(), &ctx);
        }
    }

    /// Tells the fleet of `powerdown-all` clients that went away before
    /// their guests stopped: their presses end.
    fn abandon_orders(&mut self, now: Instant) {
        let names: Vec<InstanceName> = self
            .control
            .take_abandoned()
            .iter()
            .filter_map(|name| InstanceName::new(name.as_ref()))
            .collect();
        if names.is_empty() {
            return;
        }
        self.fleet.handle_orders_abandoned(now, &names);
        carry_out(self, now);
    }

    fn order(&mut self, now: Instant, request: Request) -> Answer {
        use kvmd_core::control::{Refusal, error_line};
        let refused = |instance: &str, e: IntentRefused| {
            Answer::Last(error_line(Refusal::Refused, &format!("{instance}: {e}")))
        };
        match request {
            Request::ExpectStop {
                instance,
                seconds,
                by,
            } => {
                let Some(name) = InstanceName::new(instance.as_ref()) else {
                    return refused(&instance, IntentRefused::NotMonitored);
                };
                let window = Duration::from_secs(seconds);
                match self
                    .fleet
                    .handle_expect_stop(now, &name, window, by.clone())
                {
                    Ok(()) => Answer::Last(kvmd_core::control::intent_line(
                        &name.to_string(),
                        &by,
                        seconds,
                        self.clock.wall(now + window),
                    )),
                    Err(e) => refused(&name.to_string(), e),
                }
            }
            Request::CancelIntent { instance } => {
                let Some(name) = InstanceName::new(instance.as_ref()) else {
                    return refused(&instance, IntentRefused::NotMonitored);
                };
                match self.fleet.handle_cancel_intent(now, &name) {
                    Ok(()) => Answer::Last(kvmd_core::control::cancelled_line(&name.to_string())),
                    Err(e) => refused(&name.to_string(), e),
                }
            }
            Request::PowerdownAll { seconds, by } => {
                let window = Duration::from_secs(seconds);
                let pressed = self.fleet.handle_powerdown_all(now, window, &by);
                info!(
                    "powerdown-all (by {by}): pressed the power button of {} of {} instances",
                    pressed.iter().filter(|p| p.result.is_ok()).count(),
                    pressed.len()
                );
                let waiting = pressed
                    .iter()
                    .filter(|p| p.result.is_ok())
                    .map(|p| p.name.to_string())
                    .collect();
                Answer::AwaitVerdicts(kvmd_core::control::powerdown_line(&pressed), waiting)
            }
            // Answered by the control socket itself.
            Request::Status { .. } | Request::Events => Answer::Last(error_line(
                Refusal::BadRequest,
                "not a command that changes anything",
            )),
        }
    }

    /// Adds a new connection to the poll under `key`; says whose it is.
    fn register(
        &mut self,
        key: InstanceKey,
        mut stream: mio::net::UnixStream,
    ) -> Result<Option<Qemu>, kvmd_core::fleet::ConnectError> {
        self.poll
            .registry()
            .register(&mut stream, token(key), Interest::READABLE)
            .map_err(|e| kvmd_core::fleet::ConnectError::Register(files::errno(&e)))?;
        let qemu = crate::adapters::peer::of_peer(&stream);
        if self.transports.len() <= key.0 {
            self.transports.resize_with(key.0 + 1, || None);
        }
        self.transports[key.0] = Some(Transport::new(stream));
        Ok(qemu)
    }
}
