//! The fleet: every instance's fate, from "a socket appeared" to "verdict
//! recorded", as pure code.
//!
//! This module owns the instance policy: which control-directory entries
//! are trusted and monitored, connecting and its back-off, giving up on a
//! socket nobody listens on, waiting out a descriptor shortage, the QMP
//! conversation and its evidence, what is kept across a daemon restart,
//! the verdict and its writing until the file system takes it, and the
//! succession of QEMUs under one name. It holds no descriptor, reads no
//! clock and makes no system call, in the manner of quinn-proto's
//! `Connection`: results of system calls and the time go in, actions come
//! out, and one timer table says when to call again.
//!
//! # Contract
//! The caller (the event loop, or a simulation) owns every descriptor and
//! the clock. It reads `now` once per loop turn and passes it to every
//! `handle_*` call of that turn. These methods, all in this file, are the
//! whole of it; everything else public is read-only (views, counts).
//!
//! Inputs, and when the caller hands each in:
//! - The control directory: [`Fleet::handle_change`] for each entry the
//!   watcher reports, then [`Fleet::handle_dir`] with the watcher's state,
//!   after every crawl or inotify read.
//! - Answers, each at once when its action is carried out (see Outputs):
//!   [`Fleet::handle_looked`] for [`Action::Look`],
//!   [`Fleet::handle_connect`] for [`Action::Connect`],
//!   [`Fleet::handle_recorded`] for [`Action::Record`],
//!   [`Fleet::handle_hook_spawned`] for [`Action::RunHook`].
//! - Connections: [`Fleet::handle_bytes`] for bytes read from one,
//!   [`Fleet::handle_hangup`] when it ends.
//! - Hook processes: [`Fleet::handle_hook_exited`] when one is reaped.
//! - Start-up, once each, in this order, after the first crawl's actions
//!   were carried out: [`Fleet::handle_state_files`] (the names with a
//!   state file), [`Fleet::handle_intent_files`] (the intents kept),
//!   [`Fleet::handle_hook_files`] (the hooks left unfinished; only with
//!   hooks on, [`Fleet::with_hooks`]).
//! - Orders from control clients, each answered with what it returns:
//!   [`Fleet::handle_expect_stop`], [`Fleet::handle_cancel_intent`],
//!   [`Fleet::handle_powerdown_all`]; and
//!   [`Fleet::handle_orders_abandoned`] when a `powerdown-all` client
//!   went away before its guests stopped.
//! - Time: [`Fleet::handle_timeout`] once every turn, after the rest; it
//!   fires what is due, and its actions are polled like any others.
//! - [`Fleet::handle_external_change`] when something an operator sees
//!   changed outside the fleet (an inotify overflow), and
//!   [`Fleet::handle_exit`] once, at exit.
//!
//! Outputs: after any input, call [`carry_out`] with the caller's
//! [`Host`] (the driver, `driver.rs`): it polls [`Fleet::poll_action`]
//! until it says `None` and carries each [`Action`] out in order through
//! the host. Actions that ask a
//! question (look, connect, record, run a hook) are answered at once,
//! before the next action is polled: the fleet relies on that order (a
//! verdict's write answered after the successor's look would be dropped as
//! moot). When its queue runs dry the fleet settles what the answers
//! changed (it keeps the evidence of connections that read something, once
//! per drain; it ends a descriptor shortage that is over; it starts the
//! hooks that may start; it asks for a report if one is due), which may
//! queue more: `None` means everything is done. Then sleep until
//! [`Fleet::poll_timeout`] (forever on `None`: an idle fleet waits for
//! nothing).
//!
//! # Parts
//! The fleet's state is a few owned parts, each keeping its own
//! invariants with its own methods; the policy that uses several at once
//! is `Fleet`'s, in the file of the part it concerns most.
//! - `Directory` (`sighting.rs`): the control directory as known beyond
//!   the instances tracked: reached or away, followed by events or by
//!   crawls (and their back-off), the entries not monitored (ignored,
//!   given up on, waiting for a descriptor, not lookable), the trusted
//!   owners, and the descriptor shortage.
//! - `Instances` (`instance.rs`): the instances tracked, one per name,
//!   each with its connection, evidence and intent; and which connections
//!   read something this turn.
//! - `Verdicts` (`verdicts.rs`): the verdicts not written yet, one per
//!   name, and the history of all (numbered there).
//! - `Hooks` (`hooks.rs`, with `--on-verdict` only): the hook queues and
//!   runs, and their totals.
//! - `Outbox` (`outbox.rs`): the actions queued for the caller, the only
//!   way to queue one, and whether a report is due.
//! - `TimerTable` (`timers.rs`): every deadline of every part.
//! - Besides: the totals for the metrics ([`Counters`]), the intents kept
//!   for names not looked at yet (`intents.rs`), and the latest `now`.
//!
//! Connections' QMP conversations are `link.rs`'s, intents `intents.rs`'s,
//! operator views `view.rs`'s and notices' wording `notice.rs`'s.
//!
//! Debug tracing (QMP lines, retries) goes to the `log` facade directly; it
//! carries nothing anyone acts on. Everything the fleet tells an operator
//! comes out as an [`Action::Notify`] with a typed [`Notice`]; the loop
//! logs only what is its own (a flooding connection served in turns, a
//! state file it could not write, signals).

mod driver;
mod hooks;
mod instance;
mod intents;
mod link;
mod notice;
mod outbox;
mod sighting;
pub mod timers;
mod verdicts;
mod view;

#[cfg(test)]
mod hook_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::decision::Verdict;
use crate::errno::Errno;
use crate::name::InstanceName;
use crate::qmp::Command;
use crate::saved::{Qemu, Saved, SocketId};

pub use driver::{Answered, Host, carry_out};
pub use hooks::{HookCounts, HookEnd, HookExit, HookId, HookJob, HookPolicy, HookSignal, HookView};
pub use instance::{Phase, Succession, WaitFor};
pub use intents::{
    DEFAULT_WINDOW, Intent, IntentNote, IntentRefused, IntentState, MAX_BY, MAX_WINDOW, Pressed,
    Presses, valid_by, valid_window,
};
pub use notice::{GiveUp, Ignored, Notice, Outcome, RecordError};
pub use timers::Timer;
pub use view::{Counters, FileState, HISTORY, InstanceView, PastVerdict};

use instance::Instances;
use outbox::{Outbox, Step};
use sighting::Directory;
use timers::TimerTable;
use verdicts::Verdicts;

/// An instance's key: also the event loop's key for its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey(pub usize);

/// A verdict's key while it waits to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerdictKey(pub usize);

/// What the watcher reports of a `<instance>.kvmd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Found when the control directory became watched, or was scanned.
    Appeared(InstanceName),
    /// Created or moved in: a new socket, even when the file system gives
    /// it the inode number of the one before (ext4 does).
    Created(InstanceName),
    /// Deleted or moved out.
    Vanished(InstanceName),
}

/// Whether the control directory was reached (watched, or at least
/// scanned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// It was: what the watcher reported is the directory's content.
    Reached,
    /// It was not (absent, or not openable): the watcher tries again.
    Away,
}

/// How changes in the control directory become known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// inotify tells of every change.
    Events,
    /// A watch could not be added (the watch limit, say): only crawling
    /// again finds what changed.
    Rescans,
}

/// Why the fleet asked to look at an entry; handed back with the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The watcher reported the name: monitor what stands there.
    Attach,
    /// A monitor of the name ended: monitor the socket that took its
    /// place, if one did.
    Successor {
        /// The socket whose monitor ended.
        ended: SocketId,
        /// Whether a creation under the name was read already while the
        /// old socket lived (the new socket is then the current one).
        renewed: bool,
    },
    /// A verdict is about to be written again: is a newer QEMU there?
    Verdict(VerdictKey),
    /// A crawl found the name of a monitored instance: is it still its
    /// socket? (A socket created while inotify could not follow, a stalled
    /// watch or an overflow, is told of by no event; seen here, the name
    /// is renewed, and the successor is picked up at the hang-up.)
    Recheck,
}

/// What stands at a name in the control directory (`fstatat`, no
/// symlink followed), or why the caller could not look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// A unix socket.
    Socket {
        /// Its identity.
        id: SocketId,
        /// Its owner's uid (only trusted owners are monitored).
        owner: u32,
    },
    /// Anything but a socket: a file, a directory, a fifo, a symlink.
    Other {
        /// Its identity.
        id: SocketId,
    },
    /// Nothing stands there.
    Absent,
    /// `fstatat` failed otherwise.
    Failed(Errno),
    /// The control directory is not watched (gone, or being replaced).
    DirAway,
    /// Opening the control directory failed (out of descriptors, say).
    DirFailed(Errno),
}

/// A connection that was made: whom it reaches, and what the state
/// directory held for the instance (read at connect time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connected {
    /// The process behind the socket, if its peer credentials and /proc
    /// said.
    pub qemu: Option<Qemu>,
    /// The instance's state file, if one was there and readable.
    pub saved: Option<Saved>,
}

/// Why a connect did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// The control directory is not watched.
    DirAway,
    /// Opening the control directory failed.
    DirFailed(Errno),
    /// Opening the socket file itself failed.
    Open(Errno),
    /// Another file stands at the name now.
    NotThisSocket,
    /// `connect(2)` failed.
    Connect(Errno),
    /// The connection could not be added to the poll.
    Register(Errno),
}

/// What the caller must do, in order. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Look at `<name>.kvmd`; answer with [`Fleet::handle_looked`].
    Look {
        /// The instance.
        name: InstanceName,
        /// Why; handed back with the answer.
        purpose: Purpose,
    },
    /// Connect to `<name>.kvmd`, only if it is still the file `socket`;
    /// register the connection under `key`, read the instance's state
    /// file, and answer with [`Fleet::handle_connect`].
    Connect {
        /// The key to register the connection under.
        key: InstanceKey,
        /// The instance.
        name: InstanceName,
        /// The socket file looked at: connect only if it still stands there.
        socket: SocketId,
    },
    /// Send a command on `key`'s connection.
    Transmit {
        /// The connection.
        key: InstanceKey,
        /// What to send ([`Command::as_bytes`]).
        command: Command,
    },
    /// Close `key`'s connection (it ended, or is given up).
    Close {
        /// The connection.
        key: InstanceKey,
    },
    /// Create (a user shutdown) or remove `<name>.shutdown`; answer with
    /// [`Fleet::handle_recorded`].
    Record {
        /// The verdict's key, for the answer.
        key: VerdictKey,
        /// The instance.
        name: InstanceName,
        /// What to record.
        verdict: Verdict,
    },
    /// Write the instance's state file (atomically).
    SaveState {
        /// The instance.
        name: InstanceName,
        /// What to keep.
        saved: Saved,
    },
    /// Remove the instance's state file, if there is one.
    RemoveState {
        /// The instance.
        name: InstanceName,
    },
    /// Crawl the control directory again and report what the watcher
    /// finds ([`Fleet::handle_change`], [`Fleet::handle_dir`]).
    Rescan,
    /// Start the verdict hook `job` (its process group, its output to the
    /// log, its exit reaped under `id`); answer with
    /// [`Fleet::handle_hook_spawned`], then [`Fleet::handle_hook_exited`].
    RunHook {
        /// The run's key, for the answers.
        id: HookId,
        /// What to run it for.
        job: HookJob,
    },
    /// Signal a running hook's process group.
    SignalHook {
        /// The run.
        id: HookId,
        /// Which signal.
        signal: HookSignal,
    },
    /// Save the hooks queued for `name` (none: remove its file).
    SaveHooks {
        /// The instance.
        name: InstanceName,
        /// Its queue, in order.
        jobs: Vec<HookJob>,
    },
    /// Append to the journal, and make it durable, before anything else
    /// the record's verdict causes (its shutdown file, its hook).
    Journal(JournalRecord),
    /// Write the instance's intent file (atomically).
    SaveIntent {
        /// The instance.
        name: InstanceName,
        /// The intent (the caller turns its times into wall-clock ones).
        intent: Intent,
    },
    /// Remove the instance's intent file, if there is one.
    RemoveIntent {
        /// The instance.
        name: InstanceName,
    },
    /// Tell the operator.
    Notify(Notice),
    /// Something an operator sees changed: rewrite the metrics file and
    /// systemd's status line. At most once per [`timers::REPORT_EVERY`],
    /// and never while nothing changes.
    Report,
}

/// One journal line, as the fleet knows it (the caller adds wall-clock
/// times).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    /// The instance.
    pub name: InstanceName,
    /// Its QEMU, when known.
    pub qemu: Option<Qemu>,
    /// When it was decided, or the event came.
    pub at: Instant,
    /// What happened.
    pub what: Recorded,
}

/// What a journal line records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A verdict, with its evidence and the intent that made it, if any.
    Verdict {
        /// The verdict.
        verdict: Verdict,
        /// The evidence, as the decision line shows it.
        grounds: String,
        /// The intent it claimed, if any.
        intent: Option<IntentNote>,
    },
    /// A guest crash that left the guest running (GUEST_PANICKED with a
    /// panic action of `none` or `pause`, GUEST_CRASHLOADED).
    Crash(crate::qmp::Event),
}

/// The fleet. See the module documentation.
#[derive(Debug)]
pub struct Fleet {
    /// The control directory as known beyond the instances tracked.
    directory: Directory,
    /// The instances tracked, one per name.
    instances: Instances,
    /// Verdicts being written, or waiting to be written again, and the
    /// history of all.
    verdicts: Verdicts,
    /// Intents a previous run kept for names nobody has looked at yet (the
    /// directory away, an entry deferred or unreadable at start-up): taken
    /// up or dropped once the name is looked at. Bounded by the intent
    /// files read once.
    awaiting_intents: HashMap<InstanceName, Intent>,
    /// Verdict hooks, when `--on-verdict` is given.
    hooks: Option<hooks::Hooks>,
    /// Every deadline of every part.
    timers: TimerTable,
    /// What the caller is asked to do, and whether a report is due.
    outbox: Outbox,
    /// Totals since start (for the metrics).
    counters: Counters,
    /// The latest `now` handed in (for the report's deadline, and what
    /// is timed from outside a `handle_*`).
    clock: Option<Instant>,
}

impl Fleet {
    /// A fleet that trusts sockets owned by `trusted_owners` (root, or
    /// kvmd's own user, and whom `--socket-owner` names).
    pub fn new(trusted_owners: Vec<u32>) -> Fleet {
        Fleet {
            directory: Directory::new(trusted_owners),
            instances: Instances::default(),
            verdicts: Verdicts::default(),
            awaiting_intents: HashMap::new(),
            hooks: None,
            timers: TimerTable::default(),
            outbox: Outbox::new(),
            counters: Counters::default(),
            clock: None,
        }
    }

    /// A fleet that never asks for a report: for a loop with no metrics
    /// file and no systemd to tell.
    pub fn without_reports(mut self) -> Fleet {
        self.outbox.without_reports();
        self
    }
}

/// The contract: what the caller asks ([`Fleet::poll_action`],
/// [`Fleet::poll_timeout`]) and every input it hands in, each a
/// `handle_*`, in the order of the module documentation's list. Each
/// input given a `now` notes it first; the work is done in the file of
/// the part it concerns.
impl Fleet {
    /// The next thing to do, if any. See the module documentation.
    pub fn poll_action(&mut self) -> Option<Action> {
        loop {
            while let Some(step) = self.outbox.next() {
                let action = match step {
                    Step::Act(action) => Some(action),
                    Step::Connect(key) => self.connect_action(key),
                    Step::Record(key) => self.record_action(key),
                };
                if action.is_some() {
                    return action;
                }
            }
            // All carried out: what the answers changed is settled now,
            // once per drain (not per read, not per answer).
            self.settle();
            if self.outbox.is_empty() {
                return None;
            }
        }
    }

    /// When [`Fleet::handle_timeout`] is next due; `None` while nothing
    /// waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// One entry the watcher reported.
    pub fn handle_change(&mut self, now: Instant, change: Change) {
        self.tick(now);
        self.entry_changed(now, change);
    }

    /// The watcher's state, after every crawl or inotify read.
    pub fn handle_dir(&mut self, now: Instant, reach: Reach, follow: Follow) {
        self.tick(now);
        if self.directory.watched(now, reach, follow, &mut self.timers) {
            self.retry_records_waiting_for_dir();
        }
    }

    /// What stands at a name, as asked by an [`Action::Look`].
    pub fn handle_looked(
        &mut self,
        now: Instant,
        name: InstanceName,
        purpose: Purpose,
        look: Look,
    ) {
        self.tick(now);
        self.look_answered(now, name, purpose, look);
    }

    /// How an [`Action::Connect`] went.
    pub fn handle_connect(
        &mut self,
        now: Instant,
        key: InstanceKey,
        result: Result<Connected, ConnectError>,
    ) {
        self.tick(now);
        self.connect_answered(now, key, result);
    }

    /// How an [`Action::Record`] went.
    pub fn handle_recorded(
        &mut self,
        now: Instant,
        key: VerdictKey,
        result: Result<Outcome, RecordError>,
    ) {
        self.tick(now);
        self.record_answered(now, key, result);
    }

    /// How an [`Action::RunHook`] went: its process (saved, so that a
    /// restarted kvmd can end it), or why it did not start.
    pub fn handle_hook_spawned(&mut self, now: Instant, id: HookId, result: Result<Qemu, Errno>) {
        self.tick(now);
        self.hook_spawned(now, id, result);
    }

    /// Bytes read from `key`'s connection.
    pub fn handle_bytes(&mut self, now: Instant, key: InstanceKey, bytes: &[u8]) {
        self.tick(now);
        self.read(now, key, bytes);
    }

    /// `key`'s connection ended (QEMU exited, or the peer hung up): decide,
    /// record, and look for a successor.
    pub fn handle_hangup(&mut self, now: Instant, key: InstanceKey) {
        self.tick(now);
        self.hung_up(now, key);
    }

    /// A hook's process ended (reaped by the loop).
    pub fn handle_hook_exited(&mut self, now: Instant, id: HookId, exit: HookExit) {
        self.tick(now);
        self.hook_exited(now, id, exit);
    }

    /// The instances that have a state file, once at start-up, after the
    /// first crawl's actions were carried out: files of sockets that are
    /// not monitored are stale (gone, recreated, or no socket).
    pub fn handle_state_files(&mut self, names: Vec<InstanceName>) {
        // With the directory away, or a name still waiting for a descriptor
        // to be looked at, nobody knows yet what stands there: a file kept
        // is checked when its socket is connected, a file lost is a
        // verdict gone wrong (a pending power button forgotten).
        if self.directory.reach() == Reach::Away {
            return;
        }
        for name in names {
            if !self.instances.contains(&name) && !self.directory.unknown(&name) {
                log::debug!("{name}: stale state file removed");
                self.outbox.act(Action::RemoveState { name });
            }
        }
    }

    /// Intents a previous run kept, once at start-up after the first
    /// crawl's connects: each is taken up by the instance it was given
    /// for, or dropped (its QEMU is gone, or it expired meanwhile).
    pub fn handle_intent_files(&mut self, now: Instant, intents: Vec<(InstanceName, Intent)>) {
        self.tick(now);
        self.restore_intents(now, intents);
    }

    /// Hooks a killed kvmd had not finished, read back at start-up: each
    /// runs again (its runs so far counted).
    pub fn handle_hook_files(&mut self, now: Instant, files: Vec<(InstanceName, Vec<HookJob>)>) {
        self.tick(now);
        self.restore_hooks(files);
    }

    /// `kvmd expect-stop NAME --for WINDOW --by BY`: the next SHUTDOWN of
    /// `name`'s current QEMU within `window` is the host's. A second call
    /// replaces the first.
    pub fn handle_expect_stop(
        &mut self,
        now: Instant,
        name: &InstanceName,
        window: Duration,
        by: String,
    ) -> Result<(), IntentRefused> {
        self.tick(now);
        self.expect_stop(now, name, window, by)
    }

    /// `kvmd expect-stop --cancel NAME`: withdraws a waiting intent.
    pub fn handle_cancel_intent(
        &mut self,
        now: Instant,
        name: &InstanceName,
    ) -> Result<(), IntentRefused> {
        self.tick(now);
        self.cancel_intent(name)
    }

    /// `kvmd powerdown-all`: an intent `by` for `window` on every monitored
    /// guest, and its power button pressed (again every `PRESS_AGAIN`
    /// until it shuts down or the window ends). Instances not monitored
    /// yet are listed as refused.
    pub fn handle_powerdown_all(
        &mut self,
        now: Instant,
        window: Duration,
        by: &str,
    ) -> Vec<Pressed> {
        self.tick(now);
        self.powerdown_all(now, window, by)
    }

    /// The `kvmd powerdown-all` that gave `names` their intents went away
    /// before they stopped (killed, interrupted, timed out): nobody waits
    /// for those presses any more, and a node shutdown that was called off
    /// must not leave kvmd pressing power buttons every `PRESS_AGAIN`
    /// until the windows end. The presses stop; the intents stay, since a
    /// guest already shutting down from a press is still the host's doing.
    /// Names without a waiting, pressing intent are left alone.
    pub fn handle_orders_abandoned(&mut self, now: Instant, names: &[InstanceName]) {
        self.tick(now);
        self.orders_abandoned(names);
    }

    /// Fires every timer due at `now`. Call once per loop turn.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Connect(key) => self.outbox.connect(key),
                Timer::Record(key) => self.retry_record(key),
                Timer::Descriptors => {
                    for (name, purpose) in self.directory.take_deferred() {
                        self.outbox.act(Action::Look { name, purpose });
                    }
                }
                Timer::Rescan => self.outbox.act(Action::Rescan),
                Timer::Report => self.outbox.report(now, &mut self.timers),
                Timer::HookTimeout(id) => self.hook_timed_out(now, id),
                Timer::HookKill(id) => self.hook_kill_due(id),
                Timer::HookRetry => self.hook_retry_due(now),
                Timer::Intent(key) => self.intent_expired(key),
                Timer::Press(key) => self.press_due(key),
                Timer::AwaitingIntents => self.awaiting_intents_due(now),
            }
        }
    }

    /// Something an operator sees changed outside the fleet (an inotify
    /// overflow, say): a report follows, as for the fleet's own changes.
    pub fn handle_external_change(&mut self) {
        self.outbox.changed();
    }

    /// At exit: tells which verdicts never made it to disk. Instances still
    /// running are left undecided.
    pub fn handle_exit(&mut self) {
        let pending: Vec<_> = self
            .verdicts
            .iter()
            .map(|(_, v)| (v.name.clone(), v.verdict))
            .collect();
        for (name, verdict) in pending {
            self.outbox
                .notify(Notice::ExitingUnrecorded { name, verdict });
        }
    }
}

impl Fleet {
    /// Once every action was carried out: keeps the evidence of
    /// connections that read something, and closes a descriptor shortage
    /// that is over (only now is it known whether the looks and connects
    /// just answered found descriptors).
    fn settle(&mut self) {
        for key in self.instances.take_read() {
            self.keep_state(key);
        }
        self.end_shortage_if_over();
        self.start_hooks();
        self.outbox.schedule_report(self.clock, &mut self.timers);
    }

    /// Notes the time handed in with an input.
    pub(super) fn tick(&mut self, now: Instant) {
        self.clock = Some(now);
    }

    /// How many instances are tracked (monitored or waiting to be).
    pub fn instances(&self) -> usize {
        self.instances.len()
    }

    /// The name of the instance at `key`.
    pub fn name(&self, key: InstanceKey) -> Option<&InstanceName> {
        self.instances.get(key).map(|i| &i.name)
    }

    /// The instance monitoring `name`, with its phase and socket.
    pub fn instance(&self, name: &InstanceName) -> Option<(InstanceKey, Phase, SocketId)> {
        let key = self.instances.key(name)?;
        let instance = self.instances.get(key)?;
        Some((key, instance.phase(), instance.socket))
    }

    /// Every tracked instance's name, key, phase and socket.
    pub fn each_instance(
        &self,
    ) -> impl Iterator<Item = (&InstanceName, InstanceKey, Phase, SocketId)> {
        self.instances
            .iter()
            .map(|(key, i)| (&i.name, key, i.phase(), i.socket))
    }

    /// Verdicts decided but not yet written: name, socket, verdict.
    pub fn unrecorded(&self) -> impl Iterator<Item = (&InstanceName, SocketId, Verdict)> {
        self.verdicts
            .iter()
            .map(|(_, v)| (&v.name, v.socket, v.verdict))
    }

    /// Names waiting for a descriptor before they can even be looked at.
    pub fn deferred(&self) -> usize {
        self.directory.deferred()
    }

    /// How many deadlines are set.
    pub fn timers(&self) -> usize {
        self.timers.len()
    }

    /// Whether `timer` is set. Read-only, for tests and simulations: an
    /// instance waiting to connect without its timer would wait forever.
    pub fn timer_is_set(&self, timer: Timer) -> bool {
        self.timers.is_set(timer)
    }

    /// Starts a descriptor-shortage episode, told once.
    fn short_of_descriptors(&mut self, errno: Errno) {
        if self.directory.start_shortage() {
            self.counters.descriptor_shortages += 1;
            self.outbox.notify(Notice::OutOfDescriptors { errno });
        }
    }

    /// Ends the episode, told once, when nothing waits for a descriptor.
    /// Counted afresh at the end of each drain, never kept in step by
    /// hand (it costs a scan only while a shortage lasts).
    fn end_shortage_if_over(&mut self) {
        if !self.directory.shortage_may_be_over() {
            return;
        }
        let starved = self
            .instances
            .iter()
            .any(|(_, i)| i.phase() == Phase::Connecting(WaitFor::Descriptor));
        if !starved {
            self.directory.end_shortage();
            self.outbox.notify(Notice::DescriptorsFree);
        }
    }
}

/// This process (EMFILE) or the system (ENFILE) has no descriptor to give.
fn out_of_descriptors(errno: Errno) -> bool {
    matches!(errno, Errno::EMFILE | Errno::ENFILE)
}
