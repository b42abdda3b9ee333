//! Every deadline the fleet keeps, in one table, and the one back-off rule.
//!
//! A deadline is named by a [`Timer`]; setting one replaces its earlier
//! deadline, cancelling removes it. The table answers "when next?" for
//! [`super::Fleet::poll_timeout`] and hands out what is due, earliest
//! first, for [`super::Fleet::handle_timeout`]. Nothing here reads a clock.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::{HookId, InstanceKey, VerdictKey};

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Connect again: QEMU was not listening yet, or no descriptor was
    /// free.
    Connect(InstanceKey),
    /// Write a verdict again that the file system refused.
    Record(VerdictKey),
    /// Look again at names that appeared when no descriptor was free.
    Descriptors,
    /// Crawl the control directory again while inotify cannot follow it.
    Rescan,
    /// Report what changed (metrics, systemd's status line), at most once
    /// per [`REPORT_EVERY`].
    Report,
    /// A hook is past `--hook-timeout`: SIGTERM.
    HookTimeout(HookId),
    /// ...and still there a few seconds later: SIGKILL.
    HookKill(HookId),
    /// A failed hook's back-off is over (the earliest of them).
    HookRetry,
    /// An instance's intent window is over, unclaimed.
    Intent(InstanceKey),
    /// Press an instance's power button again (`kvmd powerdown-all`).
    Press(InstanceKey),
    /// The earliest end of an intent kept from an earlier run that still
    /// waits for its name to be looked at.
    AwaitingIntents,
}

/// The fleet's deadlines. See the module documentation.
#[derive(Debug, Default)]
pub struct TimerTable {
    deadlines: HashMap<Timer, Instant>,
    /// The same entries, ordered by deadline.
    queue: BTreeSet<(Instant, Timer)>,
}

impl TimerTable {
    /// Sets `timer` to fire at `at` (moved, if it was set).
    pub fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(old) = self.deadlines.insert(timer, at) {
            self.queue.remove(&(old, timer));
        }
        self.queue.insert((at, timer));
    }

    /// Unsets `timer`, if it was set.
    pub fn cancel(&mut self, timer: Timer) {
        if let Some(old) = self.deadlines.remove(&timer) {
            self.queue.remove(&(old, timer));
        }
    }

    /// Whether `timer` is set.
    pub fn is_set(&self, timer: Timer) -> bool {
        self.deadlines.contains_key(&timer)
    }

    /// The earliest deadline, if any timer is set.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|&(at, _)| at)
    }

    /// Removes and returns a timer whose deadline is `now` or earlier.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.pop_first();
        self.deadlines.remove(&timer);
        Some(timer)
    }

    /// How many timers are set.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether no timer is set.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

/// Waits that start short and double up to a ceiling: something passing
/// (QEMU about to listen, a disk about to have room) is caught quickly,
/// something lasting costs a wake-up every few seconds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits of `first`, doubled each try up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait before try `attempts + 1`.
    pub fn delay(self, attempts: u32) -> Duration {
        self.first
            .saturating_mul(1 << attempts.min(16))
            .min(self.max)
    }
}

/// QEMU creates its socket file (bind) a moment before it listens, so a
/// refused connect is tried again soon.
pub const CONNECT: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
/// A verdict the file system refused (full, read-only) is tried again
/// until it has room.
pub const RECORD: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
/// While a watch is missing, only a crawl finds a socket created meanwhile.
pub const RESCAN: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
/// Names and connects waiting for a descriptor look again this often: a
/// hang-up or another process may have freed one.
pub const DESCRIPTOR_WAIT: Duration = Duration::from_millis(100);
/// Reports (the metrics file, systemd's status line) are made at most
/// this often, and only when something changed.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A socket nobody listened on for this long is taken for stale (a QEMU
/// killed with SIGKILL leaves its socket file behind).
pub const CONNECT_FOR: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_due_timers_earliest_first_and_forgets_cancelled_ones() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Rescan, t0 + ms(30));
        table.set(Timer::Connect(InstanceKey(1)), t0 + ms(10));
        table.set(Timer::Descriptors, t0 + ms(20));
        table.cancel(Timer::Descriptors);
        // Setting again moves the deadline, never adds a second one.
        table.set(Timer::Rescan, t0 + ms(5));
        assert_eq!(table.len(), 2);
        assert_eq!(table.next(), Some(t0 + ms(5)));
        assert_eq!(table.pop_due(t0), None);
        assert_eq!(table.pop_due(t0 + ms(10)), Some(Timer::Rescan));
        assert_eq!(
            table.pop_due(t0 + ms(10)),
            Some(Timer::Connect(InstanceKey(1)))
        );
        assert_eq!(table.pop_due(t0 + ms(100)), None);
        assert!(table.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        assert_eq!(CONNECT.delay(0), Duration::from_millis(5));
        assert_eq!(CONNECT.delay(1), Duration::from_millis(10));
        assert_eq!(CONNECT.delay(7), Duration::from_millis(640));
        assert_eq!(CONNECT.delay(8), Duration::from_secs(1));
        assert_eq!(RECORD.delay(u32::MAX), Duration::from_secs(5));
    }
}
