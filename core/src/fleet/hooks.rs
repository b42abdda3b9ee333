//! Verdict hooks, as policy: which run when, in which order, how many at
//! once, when one has run too long, whether a failed one is tried again,
//! and what is kept so that a restarted kvmd runs again what had not
//! finished. The loop spawns, signals and reaps; this module decides.
//!
//! Per instance, at most one hook runs at a time, and at most one more
//! waits behind it (a third verdict for the name before the first hook is
//! done replaces the waiting one, told as superseded): what is queued is
//! bounded by the instances. At most [`HookPolicy::jobs`] run at once.
//! Every change to an instance's queue is saved ([`Action::SaveHooks`]),
//! each job with the runs started so far, so a hook is run at least once
//! per verdict, even across a crash of kvmd.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use slab::Slab;

use super::timers::{Backoff, Timer};
use super::{Action, Fleet, Notice};
use crate::decision::{ReasonCode, Verdict, VerdictKind};
use crate::errno::Errno;
use crate::name::InstanceName;
use crate::saved::Qemu;

/// How hooks are run (`--hook-jobs`, `--hook-timeout`, `--hook-retries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookPolicy {
    /// Hooks run at once, at most (the rest queue).
    pub jobs: usize,
    /// How long a run may take before its process group is stopped.
    pub timeout: Duration,
    /// Runs after the first, for a hook that failed.
    pub retries: u32,
}

/// After SIGTERM to a hook past its time, SIGKILL follows this much later.
pub(crate) const KILL_AFTER: Duration = Duration::from_secs(5);
/// A failed hook is tried again after this back-off (when retries are on).
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// One verdict's hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookJob {
    /// The instance the verdict is about.
    pub name: InstanceName,
    /// Whether the verdict is a user shutdown (`user` or `not-user`, as
    /// the hook is told). Kept as saved rather than derived from `reason`:
    /// a hook file is run as it was written.
    pub user: VerdictKind,
    /// The verdict's reason code (the hook is handed
    /// [`ReasonCode::as_str`]).
    pub reason: ReasonCode,
    /// The pid of the QEMU that stopped (`KVMD_QEMU_PID`), if known.
    pub qemu_pid: Option<u32>,
    /// Runs started so far (the one starting now included, once started).
    pub attempt: u32,
    /// The process of the run in progress, once spawned: a restarted kvmd
    /// ends it before running the hook again (its outcome is unknown).
    pub running: Option<Qemu>,
    /// Who said beforehand it would stop the QEMU (`KVMD_INTENT_BY`).
    pub intent_by: Option<String>,
}

impl HookJob {
    /// `user` or `not-user`, as the hook is told.
    pub fn verdict(&self) -> VerdictKind {
        self.user
    }
}

/// A running hook's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookId(pub usize);

/// How a hook's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookExit {
    /// It exited with this status.
    Exited(i32),
    /// A signal (this number) ended it.
    Signaled(i32),
}

/// How a hook's run came out, as told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookEnd {
    /// It exited with this status (0: success).
    Exited(i32),
    /// A signal (this number) ended it.
    Signaled(i32),
    /// Past `--hook-timeout`: its process group was sent SIGTERM (then
    /// SIGKILL).
    TimedOut,
    /// It could not be started.
    NotStarted(Errno),
}

/// Which signal a hook's process group is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookSignal {
    /// SIGTERM: past its time.
    Term,
    /// SIGKILL: still there after SIGTERM.
    Kill,
}

#[derive(Debug)]
enum Stage {
    /// Waiting for a slot (`not_before`: for a retry's back-off).
    Waiting {
        not_before: Option<Instant>,
    },
    Running {
        started: Instant,
        timed_out: bool,
    },
}

/// One instance's hooks: the current job first, at most one behind it.
#[derive(Debug)]
struct Queue {
    jobs: VecDeque<HookJob>,
    stage: Stage,
}

#[derive(Debug)]
pub(super) struct Hooks {
    policy: HookPolicy,
    queues: HashMap<InstanceName, Queue>,
    /// Names whose current job may start now, in order.
    ready: VecDeque<InstanceName>,
    running: Slab<InstanceName>,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
}

impl Hooks {
    pub(crate) fn new(policy: HookPolicy) -> Hooks {
        Hooks {
            policy: HookPolicy {
                jobs: policy.jobs.max(1),
                ..policy
            },
            queues: HashMap::new(),
            ready: VecDeque::new(),
            running: Slab::new(),
            succeeded: 0,
            failed: 0,
            timed_out: 0,
        }
    }

    /// Jobs queued or running.
    pub(crate) fn pending(&self) -> usize {
        self.queues.values().map(|q| q.jobs.len()).sum()
    }

    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}

/// Hook totals since kvmd started, and what is queued now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookCounts {
    /// Runs that exited 0.
    pub succeeded: u64,
    /// Runs that exited otherwise, were killed, or could not start.
    pub failed: u64,
    /// Runs stopped past `--hook-timeout`.
    pub timed_out: u64,
    /// Jobs waiting for a slot or a retry now.
    pub pending: u64,
    /// Runs in progress now.
    pub running: u64,
}

/// What status shows of an instance's hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookView {
    /// The instance the verdict is about.
    pub name: InstanceName,
    /// The verdict the hook is for: the user's or not.
    pub verdict: VerdictKind,
    /// The verdict's reason code.
    pub reason: ReasonCode,
    /// Runs started so far.
    pub attempt: u32,
    /// Running now (else waiting for a slot or a retry).
    pub running: bool,
}

impl Fleet {
    /// A fleet that runs a hook after every verdict written.
    pub fn with_hooks(mut self, policy: HookPolicy) -> Fleet {
        self.hooks = Some(Hooks::new(policy));
        self
    }

    /// Hooks succeeded, failed (timed out included), timed out, queued or
    /// running, and running: for the metrics.
    pub fn hook_counts(&self) -> Option<HookCounts> {
        let hooks = self.hooks.as_ref()?;
        Some(HookCounts {
            succeeded: hooks.succeeded,
            failed: hooks.failed,
            timed_out: hooks.timed_out,
            pending: hooks.pending() as u64,
            running: hooks.running() as u64,
        })
    }

    /// The hooks queued or running, for status.
    pub fn hook_views(&self) -> Vec<HookView> {
        let Some(hooks) = &self.hooks else {
            return Vec::new();
        };
        let mut views = Vec::new();
        for (name, queue) in &hooks.queues {
            for (i, job) in queue.jobs.iter().enumerate() {
                views.push(HookView {
                    name: name.clone(),
                    verdict: job.verdict(),
                    reason: job.reason,
                    attempt: job.attempt,
                    running: i == 0 && matches!(queue.stage, Stage::Running { .. }),
                });
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// A verdict was written: its hook is queued behind the instance's
    /// earlier one, if any.
    pub(super) fn verdict_hook(
        &mut self,
        name: &InstanceName,
        verdict: Verdict,
        qemu: Option<Qemu>,
        intent_by: Option<String>,
    ) {
        let Some(hooks) = &mut self.hooks else {
            return;
        };
        let job = HookJob {
            name: name.clone(),
            user: verdict.kind(),
            reason: verdict.why().code(),
            qemu_pid: qemu.map(|q| q.pid),
            attempt: 0,
            running: None,
            intent_by,
        };
        let mut superseded = None;
        match hooks.queues.get_mut(name) {
            Some(queue) => {
                if queue.jobs.len() >= 2 {
                    superseded = queue.jobs.pop_back();
                }
                queue.jobs.push_back(job);
            }
            None => {
                hooks.queues.insert(
                    name.clone(),
                    Queue {
                        jobs: VecDeque::from([job]),
                        stage: Stage::Waiting { not_before: None },
                    },
                );
                hooks.ready.push_back(name.clone());
            }
        }
        if let Some(old) = superseded {
            self.outbox.notify(Notice::HookSuperseded {
                name: name.clone(),
                verdict: old.verdict(),
                reason: old.reason,
            });
        }
        // Saved before anything else is done: the verdict is on disk, its
        // hook must be too, with as small a window as can be.
        let save = self.hooks_to_save(name);
        self.outbox.act_first(save);
    }

    /// Takes up the hooks a killed kvmd left (see [`Fleet::handle_hook_files`]).
    pub(super) fn restore_hooks(&mut self, files: Vec<(InstanceName, Vec<HookJob>)>) {
        let Some(hooks) = &mut self.hooks else {
            return;
        };
        for (name, mut jobs) in files {
            // The newest two: one current, one waiting, as when saved.
            while jobs.len() > 2 {
                jobs.remove(0);
            }
            for job in &mut jobs {
                job.running = None;
            }
            if jobs.is_empty() || hooks.queues.contains_key(&name) {
                continue;
            }
            hooks.queues.insert(
                name.clone(),
                Queue {
                    jobs: jobs.into(),
                    stage: Stage::Waiting { not_before: None },
                },
            );
            hooks.ready.push_back(name);
        }
    }

    /// Starts what may start: the ready names' current jobs, while slots
    /// are free. Called as a drain settles.
    pub(super) fn start_hooks(&mut self) {
        let Some(now) = self.clock else {
            return;
        };
        loop {
            let Some(hooks) = &mut self.hooks else {
                return;
            };
            if hooks.running.len() >= hooks.policy.jobs {
                return;
            }
            let Some(name) = hooks.ready.pop_front() else {
                return;
            };
            let Some(queue) = hooks.queues.get_mut(&name) else {
                continue;
            };
            let Some(job) = queue.jobs.front_mut() else {
                continue;
            };
            if !matches!(queue.stage, Stage::Waiting { not_before: None }) {
                continue;
            }
            job.attempt = job.attempt.saturating_add(1);
            let job = job.clone();
            let id = HookId(hooks.running.insert(name.clone()));
            queue.stage = Stage::Running {
                started: now,
                timed_out: false,
            };
            let timeout = hooks.policy.timeout;
            self.timers.set(Timer::HookTimeout(id), now + timeout);
            self.outbox.act(Action::RunHook { id, job });
        }
    }

    /// A hook's start, as the caller tried it (see [`Fleet::handle_hook_spawned`]).
    pub(super) fn hook_spawned(&mut self, now: Instant, id: HookId, result: Result<Qemu, Errno>) {
        match result {
            Ok(process) => {
                let Some(name) = self.hook_name(id) else {
                    return;
                };
                if let Some(job) = self
                    .hooks
                    .as_mut()
                    .and_then(|h| h.queues.get_mut(&name))
                    .and_then(|q| q.jobs.front_mut())
                {
                    job.running = Some(process);
                }
                self.save_hooks(&name);
            }
            // No descriptor or memory for it now: not a run of the hook;
            // it waits and starts again shortly, whatever the retries.
            Err(errno @ (Errno::EMFILE | Errno::ENFILE | Errno::EAGAIN | Errno::ENOMEM)) => {
                if matches!(errno, Errno::EMFILE | Errno::ENFILE) {
                    self.short_of_descriptors(errno);
                }
                self.hook_postponed(now, id);
            }
            Err(errno) => self.hook_ended(now, id, HookEnd::NotStarted(errno)),
        }
    }

    /// A hook that could not start for want of resources: back to waiting,
    /// its attempt not counted, tried again after a short wait.
    fn hook_postponed(&mut self, now: Instant, id: HookId) {
        self.timers.cancel(Timer::HookTimeout(id));
        let Some(hooks) = &mut self.hooks else {
            return;
        };
        let Some(name) = hooks.running.try_remove(id.0) else {
            return;
        };
        if let Some(queue) = hooks.queues.get_mut(&name) {
            if let Some(job) = queue.jobs.front_mut() {
                job.attempt = job.attempt.saturating_sub(1);
                job.running = None;
            }
            queue.stage = Stage::Waiting {
                not_before: Some(now + super::timers::DESCRIPTOR_WAIT),
            };
        }
        log::debug!("{name}: hook postponed: no resources to start it");
        self.schedule_hook_retry();
    }

    /// A hook's process ended (see [`Fleet::handle_hook_exited`]).
    pub(super) fn hook_exited(&mut self, now: Instant, id: HookId, exit: HookExit) {
        let timed_out = self.hook_name(id).is_some_and(|name| {
            self.hooks
                .as_ref()
                .and_then(|h| h.queues.get(&name))
                .is_some_and(|q| {
                    matches!(
                        q.stage,
                        Stage::Running {
                            timed_out: true,
                            ..
                        }
                    )
                })
        });
        let end = match exit {
            _ if timed_out => HookEnd::TimedOut,
            HookExit::Exited(code) => HookEnd::Exited(code),
            HookExit::Signaled(signal) => HookEnd::Signaled(signal),
        };
        self.hook_ended(now, id, end);
    }

    fn hook_name(&self, id: HookId) -> Option<InstanceName> {
        self.hooks.as_ref()?.running.get(id.0).cloned()
    }

    /// A run is over: told, then the next job of the name (or a retry of
    /// this one) is queued.
    fn hook_ended(&mut self, now: Instant, id: HookId, end: HookEnd) {
        self.timers.cancel(Timer::HookTimeout(id));
        self.timers.cancel(Timer::HookKill(id));
        let Some(hooks) = &mut self.hooks else {
            return;
        };
        let Some(name) = hooks.running.try_remove(id.0) else {
            return;
        };
        let Some(queue) = hooks.queues.get_mut(&name) else {
            return;
        };
        let Stage::Running { started, .. } = queue.stage else {
            return;
        };
        let Some(job) = queue.jobs.front_mut() else {
            return;
        };
        job.running = None;
        let took = now.saturating_duration_since(started);
        let job = job.clone();
        match end {
            HookEnd::Exited(0) => hooks.succeeded += 1,
            HookEnd::TimedOut => hooks.timed_out += 1,
            _ => hooks.failed += 1,
        }
        let again = end != HookEnd::Exited(0) && job.attempt <= hooks.policy.retries;
        let retry_in = again.then(|| RETRY.delay(job.attempt.saturating_sub(1)));
        match retry_in {
            Some(delay) => {
                queue.stage = Stage::Waiting {
                    not_before: Some(now + delay),
                };
                self.schedule_hook_retry();
            }
            None => {
                queue.jobs.pop_front();
                queue.stage = Stage::Waiting { not_before: None };
                if queue.jobs.is_empty() {
                    hooks.queues.remove(&name);
                } else {
                    hooks.ready.push_back(name.clone());
                }
            }
        }
        self.outbox.notify(Notice::HookEnded {
            name: name.clone(),
            verdict: job.verdict(),
            reason: job.reason,
            attempt: job.attempt,
            end,
            took,
            retry_in,
        });
        self.save_hooks(&name);
    }

    /// The timer for the earliest retry due.
    fn schedule_hook_retry(&mut self) {
        let Some(hooks) = &self.hooks else {
            return;
        };
        let next = hooks
            .queues
            .values()
            .filter_map(|q| match q.stage {
                Stage::Waiting { not_before } => not_before,
                Stage::Running { .. } => None,
            })
            .min();
        match next {
            Some(at) => self.timers.set(Timer::HookRetry, at),
            None => self.timers.cancel(Timer::HookRetry),
        }
    }

    /// The retry timer is due: what may be tried again is made ready.
    pub(super) fn hook_retry_due(&mut self, now: Instant) {
        if let Some(hooks) = &mut self.hooks {
            for (name, queue) in hooks.queues.iter_mut() {
                if let Stage::Waiting {
                    not_before: Some(at),
                } = queue.stage
                    && at <= now
                {
                    queue.stage = Stage::Waiting { not_before: None };
                    hooks.ready.push_back(name.clone());
                }
            }
        }
        self.schedule_hook_retry();
    }

    /// A hook is past its time: SIGTERM to its process group, SIGKILL a
    /// few seconds later if it is still there.
    pub(super) fn hook_timed_out(&mut self, now: Instant, id: HookId) {
        let Some(name) = self.hook_name(id) else {
            return;
        };
        if let Some(Queue {
            stage: Stage::Running { timed_out, .. },
            ..
        }) = self.hooks.as_mut().and_then(|h| h.queues.get_mut(&name))
        {
            *timed_out = true;
        }
        self.timers.set(Timer::HookKill(id), now + KILL_AFTER);
        self.outbox.act(Action::SignalHook {
            id,
            signal: HookSignal::Term,
        });
    }

    pub(super) fn hook_kill_due(&mut self, id: HookId) {
        if self.hook_name(id).is_some() {
            self.outbox.act(Action::SignalHook {
                id,
                signal: HookSignal::Kill,
            });
        }
    }

    /// Saves what is queued for `name` (nothing: the file goes).
    fn save_hooks(&mut self, name: &InstanceName) {
        let save = self.hooks_to_save(name);
        self.outbox.act(save);
    }

    /// The action that saves what is queued for `name`.
    fn hooks_to_save(&self, name: &InstanceName) -> Action {
        let jobs = self
            .hooks
            .as_ref()
            .and_then(|h| h.queues.get(name))
            .map(|q| q.jobs.iter().cloned().collect())
            .unwrap_or_default();
        Action::SaveHooks {
            name: name.clone(),
            jobs,
        }
    }
}
