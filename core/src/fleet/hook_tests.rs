//! The hook policy alone: order, limits, time-outs, retries, and what is
//! kept across a restart, driven through `handle_*` with a virtual clock.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use super::*;
use crate::decision::{ReasonCode, VerdictKind, Why};
use crate::errno::Errno;
use crate::fleet::Outcome;

fn name(s: &str) -> InstanceName {
    InstanceName::new(OsStr::new(s)).expect("a name")
}

const POLICY: HookPolicy = HookPolicy {
    jobs: 2,
    timeout: Duration::from_secs(60),
    retries: 0,
};

const PROCESS: Qemu = Qemu { pid: 99, start: 1 };

/// A fleet with hooks; verdicts are handed in as written.
struct HookHarness {
    fleet: Fleet,
    now: Instant,
    /// Hook runs asked for, in order: (id, job).
    runs: Vec<(HookId, HookJob)>,
    saved: Vec<(InstanceName, Vec<HookJob>)>,
    signals: Vec<(HookId, HookSignal)>,
    notices: Vec<Notice>,
    /// How the next spawns fail (then they succeed).
    spawn_failures: std::collections::VecDeque<Errno>,
    /// The socket a look finds at the next name.
    ino: u64,
}

impl HookHarness {
    fn new(policy: HookPolicy) -> HookHarness {
        let now = Instant::now();
        let mut fleet = Fleet::new(vec![0]).with_hooks(policy).without_reports();
        fleet.handle_dir(now, Reach::Reached, Follow::Events);
        let mut h = HookHarness {
            fleet,
            now,
            runs: Vec::new(),
            saved: Vec::new(),
            signals: Vec::new(),
            notices: Vec::new(),
            spawn_failures: Default::default(),
            ino: 0,
        };
        h.drain();
        h
    }

    /// Carries out the actions through the driver (see the `Host` impl).
    fn drain(&mut self) {
        let now = self.now;
        carry_out(self, now);
    }

    /// A verdict for `n`, written: through a real monitor's hang-up.
    fn verdict(&mut self, n: &str, ino: u64) {
        self.ino = ino;
        self.fleet.handle_change(self.now, Change::Created(name(n)));
        self.drain();
    }

    fn exit(&mut self, id: HookId, code: i32) {
        self.fleet
            .handle_hook_exited(self.now, id, HookExit::Exited(code));
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.fleet.handle_timeout(self.now);
        self.drain();
    }

    fn ended(&self) -> Vec<(String, u32, HookEnd)> {
        self.notices
            .iter()
            .filter_map(|n| match n {
                Notice::HookEnded {
                    name, attempt, end, ..
                } => Some((name.to_string(), *attempt, *end)),
                _ => None,
            })
            .collect()
    }
}

/// The node as the hook policy sees it: a look finds a root socket, a
/// connect succeeds and its QEMU hangs up at once, a write succeeds, a
/// spawn fails as `spawn_failures` says; hook orders and notices are kept.
impl Host for HookHarness {
    const OBSERVES_ANSWERS: bool = true;

    fn fleet(&mut self) -> &mut Fleet {
        &mut self.fleet
    }

    fn look(&mut self, _: Instant, _: &InstanceName, _: Purpose) -> Look {
        let id = SocketId {
            dev: 1,
            ino: self.ino,
        };
        Look::Socket { id, owner: 0 }
    }

    fn connect(
        &mut self,
        _: Instant,
        _: InstanceKey,
        _: &InstanceName,
        _: SocketId,
    ) -> Result<Connected, ConnectError> {
        Ok(Connected {
            qemu: Some(PROCESS),
            saved: None,
        })
    }

    fn record(
        &mut self,
        _: Instant,
        _: VerdictKey,
        _: &InstanceName,
        _: Verdict,
    ) -> Result<Outcome, RecordError> {
        Ok(Outcome::Created)
    }

    fn run_hook(&mut self, _: Instant, id: HookId, job: &HookJob) -> Result<Qemu, Errno> {
        self.runs.push((id, job.clone()));
        self.spawn_failures.pop_front().map_or(Ok(PROCESS), Err)
    }

    fn transmit(&mut self, _: InstanceKey, _: Command) {}

    fn close(&mut self, _: InstanceKey) {}

    fn save_state(&mut self, _: InstanceName, _: Saved) {}

    fn remove_state(&mut self, _: InstanceName) {}

    fn save_intent(&mut self, _: Instant, _: InstanceName, _: Intent) {}

    fn remove_intent(&mut self, _: InstanceName) {}

    fn save_hooks(&mut self, name: InstanceName, jobs: Vec<HookJob>) {
        self.saved.push((name, jobs));
    }

    fn signal_hook(&mut self, id: HookId, signal: HookSignal) {
        self.signals.push((id, signal));
    }

    fn journal(&mut self, _: Instant, _: JournalRecord) {}

    fn rescan(&mut self, _: Instant) {}

    fn notify(&mut self, _: Instant, notice: Notice) {
        self.notices.push(notice);
    }

    fn report(&mut self, _: Instant) {}

    /// The QEMU hangs up as soon as it is connected.
    fn answered(&mut self, now: Instant, answer: Answered) {
        if let Answered::Connect { key, .. } = answer {
            self.fleet.handle_hangup(now, key);
        }
    }
}

#[test]
fn a_written_verdict_runs_its_hook_with_its_reason() {
    let mut h = HookHarness::new(POLICY);
    h.verdict("vm", 1);
    let [(id, job)] = h.runs.as_slice() else {
        panic!("{:?}", h.runs);
    };
    assert_eq!(job.name, name("vm"));
    assert_eq!(
        (job.user.is_user(), job.reason.as_str(), job.attempt),
        (false, "not-negotiated", 1)
    );
    assert_eq!(job.qemu_pid, Some(99));
    // Saved with its process once spawned, so a restart can end it.
    let last = h.saved.last().expect("saved");
    assert_eq!(last.1[0].running, Some(PROCESS));
    let id = *id;
    h.exit(id, 0);
    assert_eq!(h.ended(), vec![("vm".into(), 1, HookEnd::Exited(0))]);
    // Done: nothing left in the file.
    assert_eq!(h.saved.last(), Some(&(name("vm"), vec![])));
    assert_eq!(h.fleet.hook_counts().map(|c| c.succeeded), Some(1));
    assert_eq!(h.fleet.poll_timeout(), None);
}

#[test]
fn one_hook_per_instance_at_a_time_and_a_limit_over_all() {
    let mut h = HookHarness::new(POLICY);
    h.verdict("a", 1);
    h.verdict("a", 2);
    h.verdict("b", 3);
    h.verdict("c", 4);
    // a's first and b's run (two slots); a's second and c's wait.
    let started: Vec<String> = h.runs.iter().map(|(_, j)| j.name.to_string()).collect();
    assert_eq!(started, vec!["a", "b"]);
    let first_a = h.runs[0].0;
    h.exit(first_a, 0);
    let started: Vec<String> = h.runs.iter().map(|(_, j)| j.name.to_string()).collect();
    // c was ready before a's second: the order is kept.
    assert_eq!(started, vec!["a", "b", "c"]);
    let b = h.runs[1].0;
    h.exit(b, 0);
    let started: Vec<String> = h.runs.iter().map(|(_, j)| j.name.to_string()).collect();
    assert_eq!(started, vec!["a", "b", "c", "a"]);
}

#[test]
fn a_third_verdict_replaces_the_one_waiting() {
    let mut h = HookHarness::new(POLICY);
    h.verdict("a", 1);
    h.verdict("a", 2);
    h.verdict("a", 3);
    assert!(
        h.notices
            .iter()
            .any(|n| matches!(n, Notice::HookSuperseded { .. }))
    );
    let queued: Vec<usize> = h.saved.iter().map(|(_, jobs)| jobs.len()).collect();
    assert!(queued.iter().all(|&n| n <= 2), "{queued:?}");
    // The newest verdict's hook is the one kept: it runs next.
    let first = h.runs[0].0;
    h.exit(first, 0);
    assert_eq!(h.runs.len(), 2);
    assert_eq!(h.runs[1].1.qemu_pid, Some(99));
    let last = h.saved.last().expect("saved");
    assert_eq!(last.1.len(), 1);
    assert_eq!(last.1[0].attempt, 1);
}

#[test]
fn a_hook_past_its_time_gets_term_then_kill_and_counts_as_timed_out() {
    let mut h = HookHarness::new(HookPolicy {
        timeout: Duration::from_secs(10),
        ..POLICY
    });
    h.verdict("vm", 1);
    let id = h.runs[0].0;
    h.advance(Duration::from_secs(10));
    assert_eq!(h.signals, vec![(id, HookSignal::Term)]);
    h.advance(hooks::KILL_AFTER);
    assert_eq!(
        h.signals,
        vec![(id, HookSignal::Term), (id, HookSignal::Kill)]
    );
    h.fleet.handle_hook_exited(h.now, id, HookExit::Signaled(9));
    h.drain();
    assert_eq!(h.ended(), vec![("vm".into(), 1, HookEnd::TimedOut)]);
    assert_eq!(h.fleet.hook_counts().map(|c| c.timed_out), Some(1));
    assert_eq!(h.fleet.poll_timeout(), None);
}

#[test]
fn failures_are_retried_backing_off_as_many_times_as_asked() {
    let mut h = HookHarness::new(HookPolicy {
        retries: 2,
        ..POLICY
    });
    h.verdict("vm", 1);
    for attempt in 1..=3 {
        let (id, job) = h.runs.last().cloned().expect("a run");
        assert_eq!(job.attempt, attempt);
        h.exit(id, 1);
        if attempt < 3 {
            let wait = h.fleet.poll_timeout().expect("a retry") - h.now;
            assert_eq!(wait, Duration::from_secs(1 << (attempt - 1)));
            h.advance(wait);
        }
    }
    assert_eq!(h.runs.len(), 3);
    let notices: Vec<Option<Duration>> = h
        .notices
        .iter()
        .filter_map(|n| match n {
            Notice::HookEnded { retry_in, .. } => Some(*retry_in),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        vec![
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(2)),
            None
        ]
    );
    assert_eq!(h.fleet.poll_timeout(), None);
}

#[test]
fn a_hook_that_cannot_start_is_a_failure_told() {
    let mut h = HookHarness::new(POLICY);
    h.spawn_failures.push_back(Errno::EACCES);
    h.verdict("vm", 1);
    assert_eq!(
        h.ended(),
        vec![("vm".into(), 1, HookEnd::NotStarted(Errno::EACCES))]
    );
}

#[test]
fn hooks_left_by_a_killed_kvmd_run_again_counting_their_runs() {
    let mut h = HookHarness::new(POLICY);
    let job = |n: &str, attempt| HookJob {
        name: name(n),
        user: VerdictKind::User,
        reason: ReasonCode::GuestPoweroff,
        qemu_pid: Some(7),
        attempt,
        running: Some(PROCESS),
        intent_by: None,
    };
    h.fleet.handle_hook_files(
        h.now,
        vec![
            (name("a"), vec![job("a", 1), job("a", 0)]),
            (name("b"), vec![job("b", 0)]),
        ],
    );
    h.drain();
    let runs: Vec<(String, u32)> = h
        .runs
        .iter()
        .map(|(_, j)| (j.name.to_string(), j.attempt))
        .collect();
    assert_eq!(runs, vec![("a".into(), 2), ("b".into(), 1)]);
    let a = h.runs[0].0;
    h.exit(a, 0);
    assert_eq!(h.runs.last().map(|(_, j)| j.attempt), Some(1));
    assert_eq!(
        Verdict::from(Why::GuestPoweredOff).why().code(),
        "guest-poweroff"
    );
}

#[test]
fn a_hook_short_of_descriptors_waits_and_is_not_counted_as_a_run() {
    let mut h = HookHarness::new(POLICY);
    h.spawn_failures.push_back(Errno::EMFILE);
    h.verdict("vm", 1);
    // Tried again a moment later, with the same attempt number, and no
    // failure told.
    h.advance(timers::DESCRIPTOR_WAIT);
    let attempts: Vec<u32> = h.runs.iter().map(|(_, j)| j.attempt).collect();
    assert_eq!(attempts, vec![1, 1]);
    assert!(h.ended().is_empty(), "{:?}", h.ended());
}
