//! The one driver: what the fleet asks of the world ([`Host`]), and the one
//! function that carries it out until the fleet is quiet ([`carry_out`]).
//!
//! Whoever drives a fleet (the daemon's event loop with system calls, the
//! simulation with its model of a node, the benches and unit harnesses
//! with canned answers) implements [`Host`], one method per kind of
//! [`Action`], and calls [`carry_out`] after every input. The rule of the
//! contract that is easy to get wrong by hand lives here only: actions are
//! carried out in the order they come, and a question (look, connect,
//! record, run a hook) is answered before the next action is polled.
//!
//! The step-by-step unit tests (`fleet/tests.rs`) poll [`Fleet::poll_action`]
//! themselves on purpose: what they check is the order of the actions and
//! the fleet's state between a question and its answer.

use std::time::Instant;

use super::{
    Action, ConnectError, Connected, Fleet, HookId, HookJob, HookSignal, InstanceKey, Intent,
    JournalRecord, Look, Notice, Outcome, Purpose, RecordError, VerdictKey,
};
use crate::decision::Verdict;
use crate::errno::Errno;
use crate::name::InstanceName;
use crate::qmp::Command;
use crate::saved::{Qemu, Saved, SocketId};

/// What the fleet asks of the world it runs in. Questions return their
/// answer, which [`carry_out`] hands to the fleet at once; orders return
/// nothing. `now` is the time of the loop turn, as handed to the input.
pub trait Host {
    /// Whether [`Host::answered`] is wanted. Off, an answer's name is
    /// never copied for it.
    const OBSERVES_ANSWERS: bool = false;

    /// The fleet whose actions this host carries out.
    fn fleet(&mut self) -> &mut Fleet;

    /// What stands at `<name>.kvmd` (`fstatat`, no symlink followed).
    fn look(&mut self, now: Instant, name: &InstanceName, purpose: Purpose) -> Look;

    /// Connects to `<name>.kvmd` if it is still the file `socket`,
    /// registers the connection under `key` and reads the instance's state
    /// file.
    fn connect(
        &mut self,
        now: Instant,
        key: InstanceKey,
        name: &InstanceName,
        socket: SocketId,
    ) -> Result<Connected, ConnectError>;

    /// Creates (a user shutdown) or removes `<name>.shutdown`.
    fn record(
        &mut self,
        now: Instant,
        key: VerdictKey,
        name: &InstanceName,
        verdict: Verdict,
    ) -> Result<Outcome, RecordError>;

    /// Starts the verdict hook `job`; says the process it started.
    fn run_hook(&mut self, now: Instant, id: HookId, job: &HookJob) -> Result<Qemu, Errno>;

    /// Sends `command` on `key`'s connection.
    fn transmit(&mut self, key: InstanceKey, command: Command);

    /// Closes `key`'s connection.
    fn close(&mut self, key: InstanceKey);

    /// Writes the instance's state file.
    fn save_state(&mut self, name: InstanceName, saved: Saved);

    /// Removes the instance's state file, if there is one.
    fn remove_state(&mut self, name: InstanceName);

    /// Writes the instance's intent file.
    fn save_intent(&mut self, now: Instant, name: InstanceName, intent: Intent);

    /// Removes the instance's intent file, if there is one.
    fn remove_intent(&mut self, name: InstanceName);

    /// Saves the hooks queued for `name` (none: removes its file).
    fn save_hooks(&mut self, name: InstanceName, jobs: Vec<HookJob>);

    /// Signals a running hook's process group.
    fn signal_hook(&mut self, id: HookId, signal: HookSignal);

    /// Appends to the journal and makes it durable.
    fn journal(&mut self, now: Instant, record: JournalRecord);

    /// Crawls the control directory again and hands the fleet what the
    /// watcher finds (its own inputs may call [`carry_out`] again).
    fn rescan(&mut self, now: Instant);

    /// Tells the operator.
    fn notify(&mut self, now: Instant, notice: Notice);

    /// Rewrites what an operator reads (metrics, systemd's status line).
    fn report(&mut self, now: Instant);

    /// After each answer was handed to the fleet, when
    /// [`Host::OBSERVES_ANSWERS`] is set: for a model that checks what
    /// the fleet made of it, or a harness that feeds the next input.
    fn answered(&mut self, _now: Instant, _answer: Answered) {}
}

/// A question's answer, as it was handed to the fleet (for
/// [`Host::answered`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answered {
    /// A look at `name`.
    Look {
        /// The instance.
        name: InstanceName,
        /// Why the fleet looked.
        purpose: Purpose,
        /// What stood there.
        look: Look,
    },
    /// A connect for `key`.
    Connect {
        /// The connection's key.
        key: InstanceKey,
        /// The instance.
        name: InstanceName,
        /// What came of it.
        result: Result<Connected, ConnectError>,
    },
    /// A verdict's write.
    Record {
        /// The verdict's key.
        key: VerdictKey,
        /// The instance.
        name: InstanceName,
        /// What came of it.
        result: Result<Outcome, RecordError>,
    },
    /// A hook's start.
    RunHook {
        /// The run.
        id: HookId,
        /// What came of it.
        result: Result<Qemu, Errno>,
    },
}

/// Carries out the fleet's actions in order, answering each question
/// before the next action is polled, until the fleet has nothing left to
/// ask. See the contract in the [module documentation](super).
pub fn carry_out<H: Host>(host: &mut H, now: Instant) {
    while let Some(action) = host.fleet().poll_action() {
        match action {
            Action::Look { name, purpose } => {
                let look = host.look(now, &name, purpose);
                let seen = H::OBSERVES_ANSWERS.then(|| name.clone());
                host.fleet().handle_looked(now, name, purpose, look);
                if let Some(name) = seen {
                    host.answered(
                        now,
                        Answered::Look {
                            name,
                            purpose,
                            look,
                        },
                    );
                }
            }
            Action::Connect { key, name, socket } => {
                let result = host.connect(now, key, &name, socket);
                host.fleet().handle_connect(now, key, result);
                if H::OBSERVES_ANSWERS {
                    host.answered(now, Answered::Connect { key, name, result });
                }
            }
            Action::Record { key, name, verdict } => {
                let result = host.record(now, key, &name, verdict);
                host.fleet().handle_recorded(now, key, result);
                if H::OBSERVES_ANSWERS {
                    host.answered(now, Answered::Record { key, name, result });
                }
            }
            Action::RunHook { id, job } => {
                let result = host.run_hook(now, id, &job);
                host.fleet().handle_hook_spawned(now, id, result);
                if H::OBSERVES_ANSWERS {
                    host.answered(now, Answered::RunHook { id, result });
                }
            }
            Action::Transmit { key, command } => host.transmit(key, command),
            Action::Close { key } => host.close(key),
            Action::SaveState { name, saved } => host.save_state(name, saved),
            Action::RemoveState { name } => host.remove_state(name),
            Action::SaveIntent { name, intent } => host.save_intent(now, name, intent),
            Action::RemoveIntent { name } => host.remove_intent(name),
            Action::SaveHooks { name, jobs } => host.save_hooks(name, jobs),
            Action::SignalHook { id, signal } => host.signal_hook(id, signal),
            Action::Journal(record) => host.journal(now, record),
            Action::Rescan => host.rescan(now),
            Action::Notify(notice) => host.notify(now, notice),
            Action::Report => host.report(now),
        }
    }
}
