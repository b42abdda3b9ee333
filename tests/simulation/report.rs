//! What a run counts and prints: statistics, the exception classes of the
//! module documentation (`CLASSES`, `Simulation::exception`), the summary
//! printed at the end, and the check that a full run took every path of
//! intents (`intents_covered`).

use super::*;

/// How an intent's story went (counted for the summary).
#[derive(Clone, Debug, Default)]
pub(super) struct IntentStats {
    pub(super) given: u64,
    pub(super) claimed: u64,
    pub(super) expired: u64,
    pub(super) cancelled: u64,
    /// Dropped at a restart (expired, or another QEMU) or at a connect.
    pub(super) dropped: u64,
    /// Of them, at the connect that found another QEMU.
    pub(super) dropped_at_connect: u64,
    /// Taken up again after a restart.
    pub(super) restored: u64,
    /// Restored already claimed, or claimed at once at restoring.
    pub(super) restored_claimed: u64,
    /// Dropped at a restart as expired, exactly at the window's end.
    pub(super) dropped_at_until: u64,
    /// Kept at a restart for a name not looked at yet; of them, settled
    /// by a look, and dropped at the end of their window still waiting.
    pub(super) awaited: u64,
    pub(super) awaited_settled: u64,
    pub(super) awaited_ended: u64,
    /// Restored to an instance still connecting, its window over before
    /// the connect: ended at the connect.
    pub(super) expired_at_connect: u64,
    /// Presses sent; of them, presses again (from the timer).
    pub(super) presses: u64,
    pub(super) presses_again: u64,
    /// Presses kvmd refused: `MAX_ASKED` unanswered.
    pub(super) presses_refused: u64,
    pub(super) powerdowns_all: u64,
    /// `powerdown-all` clients that went away before their guests stopped;
    /// intents whose presses that stopped.
    pub(super) abandoned: u64,
    pub(super) presses_stopped: u64,
    /// Requests refused, by the reason the fleet gave.
    pub(super) refused: BTreeMap<String, u64>,
}

impl IntentStats {
    pub(super) fn add(&mut self, other: &IntentStats) {
        self.given += other.given;
        self.claimed += other.claimed;
        self.expired += other.expired;
        self.cancelled += other.cancelled;
        self.dropped += other.dropped;
        self.dropped_at_connect += other.dropped_at_connect;
        self.restored += other.restored;
        self.restored_claimed += other.restored_claimed;
        self.dropped_at_until += other.dropped_at_until;
        self.awaited += other.awaited;
        self.awaited_settled += other.awaited_settled;
        self.awaited_ended += other.awaited_ended;
        self.expired_at_connect += other.expired_at_connect;
        self.presses += other.presses;
        self.presses_again += other.presses_again;
        self.presses_refused += other.presses_refused;
        self.powerdowns_all += other.powerdowns_all;
        self.abandoned += other.abandoned;
        self.presses_stopped += other.presses_stopped;
        for (k, v) in &other.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
    }
}

/// The exceptions and gaps of the module documentation: the invariant
/// each one is about, whether it is a gap in kvmd (fails under strict),
/// and what it is.
pub(super) const CLASSES: [(&str, &str, bool, &str); 17] = [
    (
        "E1",
        "2",
        false,
        "never negotiated, where an earlier connection did",
    ),
    (
        "E2",
        "2",
        false,
        "another reason, the same answer, after a restart",
    ),
    (
        "E3",
        "2",
        false,
        "a pause read, not retold: QEMU exited before query-status",
    ),
    (
        "E4",
        "2",
        false,
        "what decides was unread when the daemon was killed",
    ),
    (
        "E5",
        "2",
        false,
        "the reference is stale; kvmd agrees with the truth",
    ),
    (
        "E6",
        "2",
        false,
        "state file swept while its socket was not at its name",
    ),
    ("E7", "2", false, "an event no daemon could see decides"),
    (
        "B1",
        "7",
        true,
        "given up on a socket that was gone, refused ever after",
    ),
    (
        "B1/dir",
        "7",
        true,
        "(of B1) given up because its directory was away",
    ),
    (
        "B2",
        "2",
        true,
        "state file swept at start-up, its socket in place",
    ),
    (
        "B3",
        "3",
        true,
        "old verdict written over a newer QEMU with its inode",
    ),
    (
        "L1",
        "7",
        false,
        "inode reused for a socket given up on, while stalled",
    ),
    (
        "L2",
        "7",
        false,
        "inode reused for a monitored socket while stalled, unseen at its hang-up",
    ),
    (
        "moot",
        "2",
        false,
        "a verdict mooted before its first write",
    ),
    (
        "O1",
        "I2",
        true,
        "(fixed) an instance holding an intent given up, its intent file left",
    ),
    (
        "O2",
        "I3",
        true,
        "(fixed) powerdown-all's presses stopped while its intent waits",
    ),
    (
        "O3",
        "I2",
        true,
        "(fixed) powerdown-all refused (CannotPress), yet gave an intent (a recurrence fails I2)",
    ),
];

/// How often one exception happened, and where first.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    pub(super) count: u64,
    pub(super) first: Option<(u64, u64, String)>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Stats {
    pub(super) steps: u64,
    pub(super) qemus: u64,
    pub(super) hangups: u64,
    pub(super) user: u64,
    pub(super) not_user: u64,
    pub(super) written: u64,
    pub(super) restarts: u64,
    pub(super) overflows: u64,
    pub(super) crawls: u64,
    pub(super) mooted: u64,
    pub(super) unrecordable: u64,
    pub(super) lost_to_restart: u64,
    /// Reports asked for (metrics, systemd's status): at most one a second.
    pub(super) reports: u64,
    pub(super) max_deferred: usize,
    pub(super) max_instances: usize,
    pub(super) lifetime_total: Duration,
    pub(super) why: BTreeMap<String, u64>,
    pub(super) exceptions: BTreeMap<&'static str, Tally>,
    pub(super) intents: IntentStats,
}

impl Stats {
    pub(super) fn add(&mut self, other: &Stats) {
        self.steps += other.steps;
        self.qemus += other.qemus;
        self.hangups += other.hangups;
        self.user += other.user;
        self.not_user += other.not_user;
        self.written += other.written;
        self.restarts += other.restarts;
        self.overflows += other.overflows;
        self.crawls += other.crawls;
        self.reports += other.reports;
        self.mooted += other.mooted;
        self.unrecordable += other.unrecordable;
        self.lost_to_restart += other.lost_to_restart;
        self.max_deferred = self.max_deferred.max(other.max_deferred);
        self.max_instances = self.max_instances.max(other.max_instances);
        self.lifetime_total += other.lifetime_total;
        for (k, v) in &other.why {
            *self.why.entry(k.clone()).or_default() += v;
        }
        for (class, t) in &other.exceptions {
            let mine = self.exceptions.entry(class).or_default();
            mine.count += t.count;
            if mine.first.is_none() {
                mine.first.clone_from(&t.first);
            }
        }
        self.intents.add(&other.intents);
    }
}

pub(super) fn report(total: &Stats, elapsed: Duration) {
    eprintln!(
        "simulation: {} steps in {:.2}s; {} QEMUs, {} hang-ups ({} user, {} not), {} written, \
         {} restarts, {} crawls, {} overflows, {} mooted, {} refused for good, {} lost to restarts, \
         mean QEMU life {:.1}s, max instances {}, max deferred {}",
        total.steps,
        elapsed.as_secs_f64(),
        total.qemus,
        total.hangups,
        total.user,
        total.not_user,
        total.written,
        total.restarts,
        total.crawls,
        total.overflows,
        total.mooted,
        total.unrecordable,
        total.lost_to_restart,
        total.lifetime_total.as_secs_f64() / total.qemus.max(1) as f64,
        total.max_instances,
        total.max_deferred,
    );
    eprintln!("simulation: verdicts by reason {:?}", total.why);
    let i = &total.intents;
    eprintln!(
        "simulation: intents: {} given, {} claimed, {} expired, {} cancelled, {} dropped ({} at a connect), \
         {} restored ({} claimed, {} ended at a connect after the window), {} kept for a name not \
         looked at yet ({} settled by a look, {} ended unlooked at), {} powerdown-all ({} abandoned, \
         {} presses stopped), {} presses ({} again, {} refused: {MAX_ASKED} unanswered); requests \
         refused {:?}",
        i.given,
        i.claimed,
        i.expired,
        i.cancelled,
        i.dropped,
        i.dropped_at_connect,
        i.restored,
        i.restored_claimed,
        i.expired_at_connect,
        i.awaited,
        i.awaited_settled,
        i.awaited_ended,
        i.powerdowns_all,
        i.abandoned,
        i.presses_stopped,
        i.presses,
        i.presses_again,
        i.presses_refused,
        i.refused,
    );
    for (class, invariant, gap, what) in CLASSES {
        let Some(tally) = total.exceptions.get(class) else {
            continue;
        };
        let kind = if gap { "GAP in kvmd" } else { "exception" };
        eprintln!(
            "simulation: {class} ({kind}, invariant {invariant}) x{}: {what}",
            tally.count
        );
        if let Some((seed, step, first)) = &tally.first {
            eprintln!("    first: KVMD_SIM_SEED={seed}, step {step}: {first}");
        }
    }
}

/// A full run takes every path of intents (the scripted stories make
/// sure): a path no run takes is one no invariant checks.
pub(super) fn intents_covered(total: &Stats) {
    let i = &total.intents;
    let paths = [
        ("given", i.given),
        ("claimed", i.claimed),
        ("expired", i.expired),
        ("cancelled", i.cancelled),
        ("dropped", i.dropped),
        ("dropped at a connect", i.dropped_at_connect),
        ("dropped at the window's very end", i.dropped_at_until),
        ("kept for a name not looked at yet", i.awaited),
        ("kept for a name, settled by a look", i.awaited_settled),
        ("kept for a name, ended unlooked at", i.awaited_ended),
        ("ended at a connect after the window", i.expired_at_connect),
        ("restored", i.restored),
        ("restored claimed", i.restored_claimed),
        ("powerdown-all", i.powerdowns_all),
        ("pressed", i.presses),
        ("pressed again", i.presses_again),
        ("press refused", i.presses_refused),
        ("powerdown-all abandoned", i.abandoned),
        ("presses stopped", i.presses_stopped),
        (
            "host-intent verdicts",
            total.why.get("HostIntent").copied().unwrap_or(0),
        ),
    ];
    let refusals = [
        "NotMonitored",
        "NotYetMonitoring",
        "AlreadyShutDown",
        "BadWindow",
        "BadBy",
        "NoIntent",
        "AlreadyClaimed",
        "CannotPress",
    ];
    let missing: Vec<&str> = paths
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(what, _)| *what)
        .chain(refusals.into_iter().filter(|r| !i.refused.contains_key(*r)))
        .collect();
    assert!(
        missing.is_empty(),
        "paths of intents no seed took: {missing:?}"
    );
}

impl Simulation {
    /// Counts an exception (see `CLASSES`); a gap fails under strict.
    pub(super) fn exception(&mut self, class: &'static str, what: String) {
        let &(_, invariant, gap, _) = CLASSES
            .iter()
            .find(|c| c.0 == class)
            .expect("a known class");
        trace!(self, "  {class}: {what}");
        let tally = self.stats.exceptions.entry(class).or_default();
        tally.count += 1;
        if tally.first.is_none() {
            tally.first = Some((self.seed, self.step, what.clone()));
        }
        if gap {
            self.fail(&format!("{invariant} (gap {class})"), what);
        } else if self.strict {
            self.fail(&format!("{invariant} (strict, {class})"), what);
        }
    }
}
