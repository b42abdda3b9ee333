//! Fault injection: a full or read-only file system, out of descriptors,
//! `EAGAIN`, the watch limit, a connection that cannot be polled, a failing
//! look, inotify floods, the control directory moved away and back. The
//! faults bite where the world answers the fleet (`world`).

use super::*;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Faults {
    pub(super) full: bool,
    pub(super) readonly: bool,
    pub(super) emfile: bool,
    pub(super) eagain: bool,
    pub(super) watch_limit: bool,
    pub(super) register_once: bool,
    pub(super) look_fail_once: bool,
}

impl Simulation {
    pub(super) fn faults_tick(&mut self) {
        let rate = self.profile.faults;
        let toggle = |rng: &mut Rng, on: &mut bool, start: u64, stop: u64| {
            if *on {
                if rng.chance(stop, 10_000) {
                    *on = false;
                    return Some(false);
                }
            } else if rng.chance(start, 10_000) {
                *on = true;
                return Some(true);
            }
            None
        };
        let mut next = self.faults;
        let changes = [
            ("fs full", toggle(&mut self.rng, &mut next.full, rate, 150)),
            (
                "fs read-only",
                toggle(&mut self.rng, &mut next.readonly, rate, 150),
            ),
            ("EMFILE", toggle(&mut self.rng, &mut next.emfile, rate, 200)),
            (
                "EAGAIN",
                toggle(&mut self.rng, &mut next.eagain, rate / 2, 300),
            ),
            (
                "watch limit",
                toggle(&mut self.rng, &mut next.watch_limit, rate, 100),
            ),
        ];
        if rate > 0 && self.rng.chance(rate / 10 + 1, 10_000) {
            next.register_once = true;
        }
        if rate > 0 && self.rng.chance(rate / 10 + 1, 10_000) {
            next.look_fail_once = true;
        }
        let began_stall = !self.faults.watch_limit && next.watch_limit;
        self.faults = next;
        for (what, change) in changes {
            if let Some(on) = change {
                trace!(
                    self,
                    "world: fault {what} {}",
                    if on { "begins" } else { "ends" }
                );
            }
        }
        if began_stall && self.watcher.watched.is_some() {
            // Watches are refused at the next crawl: make one happen.
            self.push_event(WatcherEvent::Overflow);
        }
        if self.rng.chance(rate / 4, 10_000) {
            trace!(self, "world: inotify queue floods");
            self.stats.overflows += 1;
            for _ in 0..=QUEUE_CAP {
                self.push_event(WatcherEvent::Overflow);
            }
            if self.watcher.queue.back() != Some(&WatcherEvent::Overflow) {
                self.watcher.queue.push_back(WatcherEvent::Overflow);
            }
        }
        let moves = self.profile.dir_moves;
        if self.dir.is_some() && self.rng.chance(moves, 10_000) {
            self.dir_away();
        } else if self.dir.is_none() && self.rng.chance(300, 10_000) {
            self.dir_back();
        }
    }

    pub(super) fn faults_off(&mut self) {
        self.faults = Faults::default();
        if self.dir.is_none() {
            self.dir_back();
        }
    }
}
