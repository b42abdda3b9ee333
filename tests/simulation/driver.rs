//! The fleet driven as `Daemon::run` drives it (module documentation, "How
//! the fleet is driven"): start-up, restarts, the loop's turns, inotify
//! read, connections serviced, every action carried out (`carry_out`) and
//! each question answered at once; and the steps that move the world and
//! the daemon in turn, then the quiescing at the end of a run.

use super::*;

/// A verdict the model knows to be waiting in the fleet.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingVerdict {
    pub(super) key: VerdictKey,
    pub(super) qemu: usize,
    pub(super) socket: SocketId,
    pub(super) verdict: Verdict,
    pub(super) hangup: u64,
    pub(super) last_error: Option<RecordError>,
    pub(super) b3: bool,
}

impl Simulation {
    // --- The daemon: start-up, turns, actions ------------------------------------

    pub(super) fn startup(&mut self) {
        trace!(self, "daemon: start (crawl, state files)");
        self.starting = true;
        self.dir_fd_open = false;
        let changes = self.watcher_crawl();
        self.apply(changes);
        let names: Vec<Name> = self.state.keys().cloned().collect();
        // The QEMUs whose state file matches and whose socket is in place
        // (in the control directory, or in one moved away with it).
        let mut live: Vec<(Name, usize)> = Vec::new();
        for (name, saved) in &self.state {
            let Some(q) = self
                .qemus
                .values()
                .find(|q| q.alive() && q.qemu() == saved.qemu)
            else {
                continue;
            };
            let its_socket = EntryKind::Socket {
                owner: q.owner,
                qemu: Some(q.seq),
            };
            let in_place = |d: &DirModel| {
                d.kvmd
                    .get(name)
                    .is_some_and(|e| e.id() == saved.socket && e.kind == its_socket)
            };
            // At its name in the directory kvmd watches: a sweep of its
            // file is a gap (B2). In a directory moved aside, it is not at
            // its name: the sweep is the rule (E6).
            if self.dir.iter().any(in_place) {
                live.push((name.clone(), q.seq));
            }
        }
        self.fleet.handle_state_files(names);
        self.carry_out();
        self.restore_intents();
        self.starting = false;
        self.invariant_i2_intents_held();
        self.dir_fd_open = false;
        for (name, seq) in live {
            if !self.state.contains_key(&name) {
                trace!(
                    self,
                    "  B2: {name}: q{seq}'s state file swept, its socket in place"
                );
                if let Some(q) = self.qemus.get_mut(&seq) {
                    q.swept_at_start = true;
                }
            }
        }
    }

    /// The daemon is killed (SIGKILL) and started again.
    pub(super) fn restart(&mut self) {
        trace!(self, "daemon: SIGKILL, restart");
        // A new daemon: its first report owes nothing to the old one's.
        self.last_report = None;
        self.stats.restarts += 1;
        for (_, conn) in std::mem::take(&mut self.conns) {
            if let Some(q) = self.qemus.get_mut(&conn.qemu) {
                q.unread_at_kill |= !conn.marks.is_empty();
                q.client = None;
                q.carried_at_drop = Some(q.kept.carried());
                q.unswept_at_drop = Some(q.unswept.carried());
                q.drops += 1;
            }
        }
        for (name, pending) in std::mem::take(&mut self.verdicts) {
            trace!(
                self,
                "  {name}: unwritten verdict lost: {}", pending.verdict
            );
            self.stats.lost_to_restart += 1;
            if let Some(q) = self.qemus.get_mut(&pending.qemu) {
                q.verdict = VerdictState::Lost;
            }
        }
        if !self.awaiting.is_empty() {
            let awaiting = format!("{:?}", self.awaiting);
            self.fail(
                "2",
                format!("hang-ups without a verdict at restart: {awaiting}"),
            );
        }
        self.watcher.watched = None;
        self.watcher.stalled = false;
        self.watcher.generation += 1;
        self.watcher.queue.clear();
        self.watcher.since = None;
        self.fleet = Fleet::new(vec![TRUSTED]);
        self.given_up.clear();
        // Its intents were memory; their files survive. Its control
        // clients are cut off with it.
        self.intents.clear();
        self.intents_awaiting_look.clear();
        self.looks_unsettled.clear();
        self.powerdown_clients.clear();
        self.expiring.clear();
        self.told_reach = Reach::Away;
        self.told_follow = Follow::Events;
        self.startup();
    }

    /// One loop turn of the daemon after the world moved.
    pub(super) fn daemon_turn(&mut self, all: bool) {
        let now = self.now;
        let overdue = move |since: Option<Instant>| since.is_some_and(|t| now - t >= LATENCY);
        if !self.watcher.queue.is_empty()
            && (all || overdue(self.watcher.since) || self.rng.chance(6, 10))
        {
            self.inotify_readable();
        }
        let mut ready: Vec<(InstanceKey, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.read < c.out.len() || c.closed)
            .map(|(k, c)| (*k, overdue(c.since)))
            .collect();
        self.rng.shuffle(&mut ready);
        for (key, overdue) in ready {
            if all || overdue || self.rng.chance(6, 10) {
                self.service(key, all);
            }
        }
        let presses = self.intents_due();
        self.awaiting_intents_due();
        self.fleet.handle_timeout(self.now);
        self.carry_out();
        self.invariant_i3_pressed(&presses, "a press was due");
        if !self.expiring.is_empty() {
            let names = std::mem::take(&mut self.expiring);
            self.fail(
                "I1",
                format!("intents of {names:?} expired in the model, not told expired"),
            );
        }
        self.dir_fd_open = false;
    }

    /// inotify is readable: read every event, crawl if one says so.
    pub(super) fn inotify_readable(&mut self) {
        let events: Vec<WatcherEvent> = self.watcher.queue.drain(..).collect();
        self.watcher.since = None;
        let mut crawl_again = false;
        let mut changes = Vec::new();
        for event in events {
            match event {
                WatcherEvent::Overflow => crawl_again = true,
                WatcherEvent::Path { generation } if generation == self.watcher.generation => {
                    crawl_again = true;
                }
                WatcherEvent::Entry {
                    generation,
                    created,
                    name,
                } if generation == self.watcher.generation && !crawl_again => {
                    changes.push(if created {
                        Change::Created(name)
                    } else {
                        Change::Vanished(name)
                    });
                }
                _ => {}
            }
        }
        if crawl_again {
            changes.extend(self.watcher_crawl());
        }
        self.apply(changes);
    }

    /// The watcher crawls: new watches, and every entry as appeared.
    pub(super) fn watcher_crawl(&mut self) -> Vec<Change> {
        self.stats.crawls += 1;
        self.watcher.generation += 1;
        self.watcher.stalled = self.faults.watch_limit;
        let mut changes = Vec::new();
        match &self.dir {
            Some(dir) => {
                self.watcher.watched = Some(dir.id);
                let mut names: Vec<Name> = dir.kvmd.keys().cloned().collect();
                // An entry created while the crawl ran is in the recap and,
                // its watch being added first, also told by an event.
                let step = self.step;
                let racing: Vec<Name> = dir
                    .kvmd
                    .iter()
                    .filter(|(_, e)| e.born == step)
                    .map(|(n, _)| n.clone())
                    .collect();
                self.rng.shuffle(&mut names);
                changes.extend(names.into_iter().map(Change::Appeared));
                if !self.watcher.stalled {
                    for name in racing {
                        if self.rng.chance(1, 2) {
                            let generation = self.watcher.generation;
                            self.push_event(WatcherEvent::Entry {
                                generation,
                                created: true,
                                name,
                            });
                        }
                    }
                }
            }
            None => self.watcher.watched = None,
        }
        trace!(
            self,
            "  watcher: crawl: {} stalled={} {changes:?}",
            if self.watcher.watched.is_some() {
                "reached"
            } else {
                "away"
            },
            self.watcher.stalled
        );
        changes
    }

    pub(super) fn apply(&mut self, changes: Vec<Change>) {
        self.dir_fd_open = false;
        for change in changes {
            trace!(self, "  fleet <- {change:?}");
            if let Change::Created(name) | Change::Vanished(name) = &change {
                self.given_up.remove(name);
            }
            // The fleet is told of this very socket's creation.
            if let Change::Created(name) = &change
                && let Some(entry) = self.dir.as_ref().and_then(|d| d.kvmd.get(name))
                && let EntryKind::Socket {
                    qemu: Some(seq), ..
                } = entry.kind
                && let Some(q) = self.qemus.get_mut(&seq)
            {
                q.creation_told = true;
            }
            let vanished = match &change {
                Change::Vanished(name) => Some(name.clone()),
                _ => None,
            };
            self.fleet.handle_change(self.now, change);
            if let Some(name) = vanished {
                self.looks_unsettled.remove(&name);
                self.settle_awaiting(&name);
            }
            self.carry_out();
        }
        let reach = if self.watcher.watched.is_some() {
            Reach::Reached
        } else {
            Reach::Away
        };
        let follow = if self.watcher.stalled {
            Follow::Rescans
        } else {
            Follow::Events
        };
        trace!(self, "  fleet <- dir {reach:?} {follow:?}");
        self.told_reach = reach;
        self.told_follow = follow;
        self.fleet.handle_dir(self.now, reach, follow);
        self.carry_out();
    }

    /// A connection's turn: bytes in chunks, then end-of-file.
    pub(super) fn service(&mut self, key: InstanceKey, all: bool) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let (seq, name, socket) = (conn.qemu, conn.name.clone(), conn.socket);
        let reads = if all { 8 } else { 1 + self.rng.below(3) };
        for _ in 0..reads {
            let conn = &self.conns[&key];
            let left = conn.out.len() - conn.read;
            if left == 0 {
                break;
            }
            let n = match self.rng.below(10) {
                0..=4 => left,
                5 => 1,
                _ => 1 + self.rng.index(left),
            };
            let conn = self.conns.get_mut(&key).expect("the connection");
            let chunk = conn.out[conn.read..conn.read + n].to_vec();
            conn.read += n;
            trace!(
                self,
                "  fleet <- bytes {key:?} \"{}\"",
                chunk.escape_ascii()
            );
            self.fleet.handle_bytes(self.now, key, &chunk);
            self.fold_read(key, false);
        }
        let conn = &self.conns[&key];
        let eof = conn.closed && conn.read == conn.out.len();
        let mut ended = None;
        if eof {
            self.fold_read(key, true);
            // I1: what the daemon holds for this QEMU at its hang-up
            // decides (a SHUTDOWN in the last line has claimed already).
            let held = self.intents.get(&name).filter(|h| h.key == key);
            let expected = match held.map(|h| h.intent.state) {
                Some(IntentState::Claimed) => Expected::HostStop,
                _ => Expected::Nothing,
            };
            if held.is_some() {
                self.intents.remove(&name);
            }
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.expected = expected;
                ended = Some(q.qemu());
            }
            self.hangups += 1;
            self.stats.hangups += 1;
            let hangup = self.hangups;
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.hangup = Some(hangup);
                q.hung_up_on = Some(socket);
            }
            if self.awaiting.insert(name.clone(), seq).is_some() {
                self.fail("2", format!("{name}: two hang-ups await a verdict"));
            }
            trace!(self, "  fleet <- hangup {key:?} ({name} q{seq})");
            self.conns.get_mut(&key).expect("the connection").hung_up = true;
            self.fleet.handle_hangup(self.now, key);
        }
        self.carry_out();
        if eof {
            if self.conns.get(&key).is_some_and(|c| c.hung_up) {
                self.fail(
                    "4",
                    format!("{name}: the hang-up of {key:?} was not closed"),
                );
            }
            if self.awaiting.contains_key(&name) {
                self.fail(
                    "2",
                    format!("{name}: hang-up of q{seq} not decided at once"),
                );
                self.awaiting.remove(&name);
            }
            self.invariant_i2_intent_ended(&name, seq, ended);
        }
        if let Some(conn) = self.conns.get_mut(&key)
            && conn.read == conn.out.len()
            && !conn.closed
        {
            conn.since = None;
        }
        self.compact(key);
    }

    /// Folds what the fleet has read of `key`'s connection into the
    /// references: whole lines, and at end-of-file a last line whose JSON is
    /// complete.
    pub(super) fn fold_read(&mut self, key: InstanceKey, eof: bool) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let mut events = Vec::new();
        let mut replies = 0;
        while let Some(mark) = conn.marks.front() {
            let whole = mark.line_end <= conn.read;
            let last = eof && mark.json_end <= conn.read;
            if !whole && !last {
                break;
            }
            match mark.event {
                Some(event) => events.push(event),
                None => replies += 1,
            }
            conn.marks.pop_front();
        }
        if eof {
            conn.marks.clear();
        }
        conn.asked = conn.asked.saturating_sub(replies);
        let (seq, name) = (conn.qemu, conn.name.clone());
        let mut first_shutdown = false;
        if let Some(q) = self.qemus.get_mut(&seq) {
            for event in events {
                first_shutdown |=
                    matches!(event, Event::Shutdown { .. }) && q.kept.first_shutdown().is_none();
                q.read.record(event);
                q.kept.record(event);
                q.unswept.record(event);
            }
        }
        if first_shutdown {
            self.first_shutdown_read(key, &name);
        }
    }

    pub(super) fn compact(&mut self, key: InstanceKey) {
        if let Some(conn) = self.conns.get_mut(&key)
            && conn.read > 4096
        {
            let read = conn.read;
            conn.out.drain(..read);
            conn.read = 0;
            for mark in &mut conn.marks {
                mark.json_end -= read;
                mark.line_end -= read;
            }
        }
    }

    /// Carries out the fleet's actions as the daemon does, through the one
    /// driver; then checks the intents the model holds.
    pub(super) fn carry_out(&mut self) {
        let now = self.now;
        kvmd_core::fleet::carry_out(self, now);
        self.invariant_i2_intents_held();
    }

    /// A verdict's write, checked against the model (invariants 2, 3, 6).
    /// One the model cannot account for fails the run, and is written as
    /// the daemon would.
    pub(super) fn record_action(
        &mut self,
        key: VerdictKey,
        name: &Name,
        verdict: Verdict,
    ) -> Result<Outcome, RecordError> {
        trace!(self, "  {name}: record {key:?} {verdict}");
        if let Some(seq) = self.awaiting.remove(name) {
            self.invariant_2_verdict(key, name, seq, verdict);
        } else {
            match self.verdicts.get(name) {
                Some(pending) if pending.key == key && pending.verdict == verdict => {}
                other => {
                    let other = format!("{other:?}");
                    self.fail(
                        "2",
                        format!(
                            "{name}: a record nobody decided: {key:?} {verdict}; model: {other}"
                        ),
                    );
                    return self.write_shutdown_file(name, verdict);
                }
            }
        }
        let Some(pending) = self.verdicts.get(name).copied() else {
            return self.write_shutdown_file(name, verdict);
        };
        self.invariant_3(name, pending);
        let result = self.write_shutdown_file(name, verdict);
        trace!(self, "  {name}: record -> {result:?}");
        match result {
            Ok(_) => {
                self.stats.written += 1;
                self.invariant_6_order(name, pending.hangup);
                self.last_written.insert(name.clone(), pending.hangup);
                if let Some(dir) = self.dir.as_mut() {
                    dir.expect.insert(
                        name.clone(),
                        ExpectedFile::Present(verdict.is_user_shutdown()),
                    );
                }
            }
            Err(e) if !e.mendable() => {
                if let Some(dir) = self.dir.as_mut() {
                    dir.expect.insert(name.clone(), ExpectedFile::Unknown);
                }
            }
            Err(_) => {}
        }
        if let Some(pending) = self.verdicts.get_mut(name) {
            pending.last_error = result.err();
        }
        result
    }

    pub(super) fn notice(&mut self, notice: Notice) {
        trace!(self, "  notice: {notice:?}");
        match notice {
            Notice::Decided { name, verdict, .. }
            | Notice::RecordedAtLast { name, verdict, .. } => match self.verdicts.remove(&name) {
                Some(pending) if pending.verdict == verdict => {}
                other => {
                    let other = format!("{other:?}");
                    self.fail(
                        "2",
                        format!("{name}: told written {verdict}; model: {other}"),
                    );
                }
            },
            Notice::Unrecorded {
                name, again: false, ..
            }
            | Notice::Unrecordable { name, .. } => {
                if self.verdicts.remove(&name).is_none() {
                    self.fail("2", format!("{name}: refused for good, but unknown"));
                }
                self.stats.unrecordable += 1;
            }
            Notice::NotMonitored { name, why } => {
                // The instance is forgotten, and any intent it held.
                if self.intents.remove(&name).is_some() {
                    trace!(self, "  {name}: the model: intent gone with its instance");
                    self.stats.intents.dropped += 1;
                    self.forgotten.insert(name.clone());
                }
                if let Some(&socket) = self.last_connect.get(&name) {
                    self.given_up.insert(name, (socket, why));
                }
            }
            // Told expired: the model must have expired it in this turn (the
            // guard takes it off the list).
            Notice::IntentExpired { name, .. } if !self.expiring.remove(&name) => {
                self.fail(
                    "I1",
                    format!("{name}: told its intent expired, the model says it holds"),
                );
            }
            Notice::PressesStopped { name, .. } if !self.stopping.remove(&name) => {
                self.fail(
                    "I3",
                    format!("{name}: told its presses stopped, the model says otherwise"),
                );
            }
            Notice::Moot { name, .. } => {
                if let Some(pending) = self.verdicts.remove(&name) {
                    self.stats.mooted += 1;
                    if let Some(q) = self.qemus.get_mut(&pending.qemu) {
                        q.verdict = VerdictState::Mooted;
                    }
                } else if let Some(seq) = self.awaiting.remove(&name) {
                    // Counts as its decision, but its line is never logged.
                    let what = format!("{name}: q{seq}'s verdict mooted before its first write");
                    self.exception("moot", what);
                    if let Some(q) = self.qemus.get_mut(&seq) {
                        q.verdict = VerdictState::Mooted;
                    }
                } else {
                    self.fail("2", format!("{name}: moot of no verdict"));
                }
            }
            _ => {}
        }
    }

    // --- Steps -------------------------------------------------------------------

    pub(super) fn advance_time(&mut self) {
        let dt = match self.rng.below(100) {
            0..=39 => Duration::ZERO,
            40..=79 => Duration::from_millis(1 + self.rng.below(20)),
            80..=94 => Duration::from_millis(20 + self.rng.below(480)),
            // To the next deadline, but no further than 5 s: every timer but
            // an intent's is that close, and a world that sleeps through an
            // intent's hour is a world where nothing happens.
            _ => match self.fleet.poll_timeout() {
                Some(at) if at > self.now => (at - self.now).min(Duration::from_secs(5)),
                _ => Duration::from_millis(1 + self.rng.below(3000)),
            },
        };
        self.now += dt;
    }

    pub(super) fn step(&mut self) {
        self.step += 1;
        self.stats.steps += 1;
        self.advance_time();
        trace!(self, "--- step {} t={:.3}s", self.step, self.elapsed_secs());
        let roll = self.rng.below(10_000);
        let restart = self.profile.restarts;
        let churn = self.profile.fs_churn;
        if roll < 500 {
            self.spawn();
        } else if roll < 4000 {
            self.qemu_act();
        } else if roll < 4000 + churn {
            self.fs_act();
        } else if roll < 4000 + churn + restart {
            self.restart();
        }
        self.intent_world();
        self.qemu_turns(false);
        self.faults_tick();
        self.daemon_turn(false);
        self.check();
    }

    /// A step with no fault and no news: everything pending is delivered.
    pub(super) fn quiet_step(&mut self, to_timer: bool) {
        self.step += 1;
        self.stats.steps += 1;
        self.now += match self.fleet.poll_timeout() {
            Some(at) if to_timer && at > self.now => at - self.now,
            _ => Duration::from_millis(50),
        };
        trace!(
            self,
            "--- quiet step {} t={:.3}s",
            self.step,
            self.elapsed_secs()
        );
        self.qemu_turns(true);
        self.daemon_turn(true);
        self.check();
    }

    pub(super) fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
            if self.failure.is_some() {
                return;
            }
        }
        self.quiesce();
    }

    /// Faults stop, the directory comes back, every QEMU is monitored, then
    /// ends; everything is delivered and time runs past every timer.
    pub(super) fn quiesce(&mut self) {
        trace!(self, "=== quiesce");
        self.faults_off();
        for _ in 0..300 {
            self.quiet_step(false);
            if self.failure.is_some() {
                return;
            }
        }
        let seqs: Vec<usize> = self.qemus.keys().copied().collect();
        for seq in seqs {
            for _ in 0..3 {
                let Some(q) = self.qemus.get(&seq) else {
                    break;
                };
                if !q.alive() {
                    break;
                }
                let act = match (q.life, q.run) {
                    (Life::Bound, _) | (_, Run::Exiting) => Act::Exit,
                    (_, Run::Running) => [Act::Poweroff, Act::Quit, Act::Kill][self.rng.index(3)],
                    _ => [Act::Quit, Act::Kill][self.rng.index(2)],
                };
                self.act(seq, act);
                self.qemu_turns(true);
            }
        }
        for i in 0..3000 {
            self.quiet_step(i >= 20);
            if self.failure.is_some() {
                return;
            }
            if i >= 20 && self.fleet.poll_timeout().is_none() && self.conns.is_empty() {
                break;
            }
        }
        self.final_checks();
    }
}

/// The simulated node as the fleet's host: each question answered from the
/// model of the world, each order applied to it and checked.
impl Host for Simulation {
    /// The model follows what the fleet made of a look or a connect.
    const OBSERVES_ANSWERS: bool = true;

    fn fleet(&mut self) -> &mut Fleet {
        &mut self.fleet
    }

    fn look(&mut self, _now: Instant, name: &Name, purpose: Purpose) -> Look {
        let look = self.look_at(name);
        trace!(self, "  {name}: look ({purpose:?}) -> {look:?}");
        look
    }

    fn connect(
        &mut self,
        _now: Instant,
        key: InstanceKey,
        name: &Name,
        socket: SocketId,
    ) -> Result<Connected, ConnectError> {
        self.last_connect.insert(name.clone(), socket);
        let result = self.connect_to(key, name, socket);
        trace!(self, "  {name}: connect {key:?} {socket:?} -> {result:?}");
        result
    }

    fn record(
        &mut self,
        _now: Instant,
        key: VerdictKey,
        name: &Name,
        verdict: Verdict,
    ) -> Result<Outcome, RecordError> {
        self.record_action(key, name, verdict)
    }

    fn run_hook(&mut self, _now: Instant, _id: HookId, _job: &HookJob) -> Result<Qemu, Errno> {
        self.invariant_h_hook_action();
        Err(Errno::ENOENT)
    }

    fn transmit(&mut self, key: InstanceKey, command: Command) {
        trace!(self, "  transmit {key:?} {command:?}");
        match self.conns.get_mut(&key) {
            Some(conn) => conn.cmds.push_back(command),
            None => self.fail("4", format!("transmit on no connection: {key:?}")),
        }
        if command == Command::SystemPowerdown {
            self.press_sent(key);
        }
    }

    fn close(&mut self, key: InstanceKey) {
        trace!(self, "  close {key:?}");
        match self.conns.remove(&key) {
            Some(conn) => {
                if let Some(q) = self.qemus.get_mut(&conn.qemu) {
                    q.client = None;
                }
            }
            None => self.fail("4", format!("close of no connection: {key:?}")),
        }
    }

    fn save_state(&mut self, name: Name, saved: Saved) {
        trace!(self, "  {name}: save state {:?}", saved.carried);
        self.state.insert(name, saved);
    }

    fn remove_state(&mut self, name: Name) {
        trace!(self, "  {name}: remove state");
        self.state.remove(&name);
    }

    fn save_intent(&mut self, _now: Instant, name: Name, intent: Intent) {
        trace!(
            self,
            "  {name}: save intent {:?} by {:?}", intent.state, intent.by
        );
        self.intent_actions += 1;
        self.orphans.remove(&name);
        self.intent_files.insert(name, intent);
    }

    fn remove_intent(&mut self, name: Name) {
        trace!(self, "  {name}: remove intent");
        self.intent_actions += 1;
        self.orphans.remove(&name);
        self.intent_files.remove(&name);
    }

    fn save_hooks(&mut self, _name: Name, _jobs: Vec<HookJob>) {
        self.invariant_h_hook_action();
    }

    fn signal_hook(&mut self, _id: HookId, _signal: HookSignal) {
        self.invariant_h_hook_action();
    }

    /// The journal is I/O this model has no part of.
    fn journal(&mut self, _now: Instant, _record: JournalRecord) {}

    fn rescan(&mut self, _now: Instant) {
        trace!(self, "  rescan");
        let changes = self.watcher_crawl();
        self.apply(changes);
    }

    fn notify(&mut self, _now: Instant, notice: Notice) {
        self.notice(notice);
    }

    /// What the loop does with it (metrics, systemd) is I/O this model has
    /// no part of; counted, for invariant 5.
    fn report(&mut self, _now: Instant) {
        trace!(self, "  report");
        self.stats.reports += 1;
        self.invariant_r_report();
    }

    fn answered(&mut self, _now: Instant, answer: Answered) {
        match answer {
            Answered::Look {
                name,
                purpose,
                look,
            } => self.looked(&name, purpose, look),
            Answered::Connect { key, name, result } => {
                let reached = result.ok().and_then(|c| c.qemu);
                if reached.is_some() {
                    self.connected_with_intent_over(&name, key);
                }
                // An intent taken up at start-up for another QEMU goes.
                if let Some(reached) = reached
                    && let Some(held) = self.intents.get(&name)
                    && held.key == key
                    && held.intent.qemu.is_some_and(|then| then != reached)
                {
                    trace!(self, "  {name}: the model: kept intent was another QEMU's");
                    self.intents.remove(&name);
                    self.stats.intents.dropped += 1;
                    self.stats.intents.dropped_at_connect += 1;
                }
            }
            Answered::Record { .. } | Answered::RunHook { .. } => {}
        }
    }
}
