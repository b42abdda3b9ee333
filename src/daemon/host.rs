//! What the fleet asks of the node, done with system calls: the daemon is
//! the fleet's [`Host`], and [`kvmd_core::fleet::carry_out`] drives it.
//!
//! Each method is one kind of action; the rule that a question is answered
//! before the next action is taken is the driver's, not this file's.

use std::time::Instant;

use log::error;

use kvmd_core::Errno;
use kvmd_core::codec::SavedIntent;
use kvmd_core::decision::Verdict;
use kvmd_core::fleet::{
    ConnectError, Connected, Fleet, HookId, HookJob, HookSignal, Host, InstanceKey, Intent,
    JournalRecord, Look, Notice, Outcome, Purpose, RecordError, VerdictKey,
};
use kvmd_core::name::InstanceName;
use kvmd_core::qmp::Command;
use kvmd_core::saved::{Qemu, Saved, SocketId};

use super::control::Context;
use super::{Daemon, files};

impl Host for Daemon {
    fn fleet(&mut self) -> &mut Fleet {
        &mut self.fleet
    }

    fn look(&mut self, _now: Instant, name: &InstanceName, _purpose: Purpose) -> Look {
        files::look(&mut self.dir, &self.watcher, name)
    }

    fn connect(
        &mut self,
        _now: Instant,
        key: InstanceKey,
        name: &InstanceName,
        socket: SocketId,
    ) -> Result<Connected, ConnectError> {
        files::connect(&mut self.dir, &self.watcher, name, socket)
            .and_then(|stream| self.register(key, stream))
            .map(|qemu| Connected {
                qemu,
                saved: self.state.load(name),
            })
    }

    fn record(
        &mut self,
        _now: Instant,
        _key: VerdictKey,
        name: &InstanceName,
        verdict: Verdict,
    ) -> Result<Outcome, RecordError> {
        files::record(&mut self.dir, &self.watcher, name, verdict)
    }

    fn run_hook(&mut self, _now: Instant, id: HookId, job: &HookJob) -> Result<Qemu, Errno> {
        match &mut self.hooks {
            Some(runner) => runner.spawn(id, job, self.poll.registry()),
            None => Err(Errno::ENOENT),
        }
    }

    fn transmit(&mut self, key: InstanceKey, command: Command) {
        if let Some(t) = self.transport(key) {
            t.send(command.as_bytes());
        }
        self.sync_interest(key);
    }

    fn close(&mut self, key: InstanceKey) {
        if let Some(mut t) = self.transports.get_mut(key.0).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut t.stream);
        }
    }

    fn save_state(&mut self, name: InstanceName, saved: Saved) {
        if let Err(e) = self.state.save(&name, &saved) {
            error!("{name}: {e}; a daemon restart would lose what it saw");
        }
    }

    fn remove_state(&mut self, name: InstanceName) {
        self.state.remove(&name);
    }

    fn save_intent(&mut self, _now: Instant, name: InstanceName, intent: Intent) {
        let clock = self.clock;
        let saved = SavedIntent::from_intent(&intent, |at| clock.wall(at));
        if let Err(e) = self.state.save_intent(&name, &saved) {
            error!("{name}: {e}; a kvmd restart would forget the intent");
        }
    }

    fn remove_intent(&mut self, name: InstanceName) {
        self.state.remove_intent(&name);
    }

    fn save_hooks(&mut self, name: InstanceName, jobs: Vec<HookJob>) {
        if let Err(e) = self.state.save_hooks(&name, &jobs) {
            error!("{name}: {e}; a kvmd restart would not run its hook again");
        }
    }

    fn signal_hook(&mut self, id: HookId, signal: HookSignal) {
        if let Some(runner) = &mut self.hooks {
            runner.signal(id, signal);
        }
    }

    fn journal(&mut self, _now: Instant, record: JournalRecord) {
        self.append_to_journal(record);
    }

    fn rescan(&mut self, now: Instant) {
        self.crawl(now);
    }

    fn notify(&mut self, now: Instant, notice: Notice) {
        let ctrl_dir = self.watcher.ctrl_dir_path();
        let line = notice.line(ctrl_dir);
        log::log!(notice.level(), "{line}");
        if self.control.has_followers() {
            let message = line.to_string();
            let event = kvmd_core::control::event_line(&notice, &message, self.clock.wall(now));
            let ctx = Context {
                fleet: &self.fleet,
                info: &self.info,
                clock: self.clock,
                now,
            };
            self.control
                .broadcast(&notice, &event, self.poll.registry(), &ctx);
        }
    }

    fn report(&mut self, _now: Instant) {
        self.write_report();
    }
}
