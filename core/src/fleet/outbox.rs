//! The outbox: what the fleet asks of its caller, in order, and whether
//! what an operator sees changed since the last report.
//!
//! It is the only way to queue an action. Both live here because they
//! move together: an action queued is, as a rule, something an operator
//! sees change (a report follows within [`timers::REPORT_EVERY`]); the
//! few that are not say so by how they are queued.

use std::collections::VecDeque;
use std::time::Instant;

use super::timers::{self, Timer, TimerTable};
use super::{Action, InstanceKey, Notice, VerdictKey};

/// What is queued for the caller. Questions about an instance or a verdict
/// are resolved when polled (see [`super::Fleet::poll_action`]): one that
/// went away meanwhile asks nothing.
#[derive(Debug)]
pub(super) enum Step {
    Act(Action),
    Connect(InstanceKey),
    Record(VerdictKey),
}

/// Reports since the last change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    /// Nothing changed since the last report (made at `last`, if ever).
    Done { last: Option<Instant> },
    /// Something changed; the report is due once a second has passed.
    Due { last: Option<Instant> },
    /// Nobody reads reports (no metrics file, no systemd): none is made,
    /// and no timer wakes the loop for one.
    Off,
}

/// The actions queued for the caller, and the report they make due.
#[derive(Debug)]
pub(super) struct Outbox {
    queue: VecDeque<Step>,
    report: Report,
}

impl Outbox {
    pub(super) fn new() -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            report: Report::Done { last: None },
        }
    }

    /// Never asks for a report (nobody reads one).
    pub(super) fn without_reports(&mut self) {
        self.report = Report::Off;
    }

    /// Queues `action`: something an operator sees changed.
    pub(super) fn act(&mut self, action: Action) {
        self.changed();
        self.queue.push_back(Step::Act(action));
    }

    /// Queues `action` without marking a change: a connection's reads
    /// queue commands and notices many times a turn, and mark a change
    /// themselves only when one is worth a report (a storm of RESETs is
    /// not).
    pub(super) fn act_quietly(&mut self, action: Action) {
        self.queue.push_back(Step::Act(action));
    }

    /// Queues `action` before everything queued so far: for what must be
    /// durable before anything else the turn did is carried out.
    pub(super) fn act_first(&mut self, action: Action) {
        self.changed();
        self.queue.push_front(Step::Act(action));
    }

    /// Tells the operator.
    pub(super) fn notify(&mut self, notice: Notice) {
        self.act(Action::Notify(notice));
    }

    /// Queues a connect for `key`, asked only if it still waits then.
    pub(super) fn connect(&mut self, key: InstanceKey) {
        self.queue.push_back(Step::Connect(key));
    }

    /// Queues a write of verdict `key`, asked only if it still stands then.
    pub(super) fn record(&mut self, key: VerdictKey) {
        self.queue.push_back(Step::Record(key));
    }

    /// The next step, first queued first.
    pub(super) fn next(&mut self) -> Option<Step> {
        self.queue.pop_front()
    }

    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Marks an operator's view as changed: a report follows within a
    /// second (once the turn's actions are carried out, see
    /// [`Outbox::schedule_report`]).
    pub(super) fn changed(&mut self) {
        if let Report::Done { last } = self.report {
            self.report = Report::Due { last };
        }
    }

    /// Asks for a report now, if one is due.
    pub(super) fn report(&mut self, now: Instant, timers: &mut TimerTable) {
        if let Report::Due { .. } = self.report {
            // Made now: a timer set for it earlier is spent too.
            timers.cancel(Timer::Report);
            self.report = Report::Done { last: Some(now) };
            self.queue.push_back(Step::Act(Action::Report));
        }
    }

    /// Reports what changed: now, when the last report is a second old
    /// (or there was none), else on a timer when it will be. `clock` is
    /// the latest time handed in (none yet: nothing to report against).
    pub(super) fn schedule_report(&mut self, clock: Option<Instant>, timers: &mut TimerTable) {
        let (Report::Due { last }, Some(clock)) = (self.report, clock) else {
            return;
        };
        match last {
            Some(last) if last + timers::REPORT_EVERY > clock => {
                if !timers.is_set(Timer::Report) {
                    timers.set(Timer::Report, last + timers::REPORT_EVERY);
                }
            }
            _ => self.report(clock, timers),
        }
    }
}
