//! The checks (module documentation, "Invariants"): one function per
//! numbered invariant, in `check`'s order, after every step; the verdict's
//! check (2, I1) at its first record, the intents' (I2, I3) after drains
//! and turns, and the end of a run's. A check that fails records the
//! first failure (`Simulation::fail`) with the invariant's label.

use std::ops::ControlFlow;

use super::*;

impl Simulation {
    /// The first record of the verdict for `seq`'s hang-up: invariant 2.
    pub(super) fn invariant_2_verdict(
        &mut self,
        key: VerdictKey,
        name: &Name,
        seq: usize,
        verdict: Verdict,
    ) {
        if let Some(old) = self.verdicts.get(name) {
            let old = *old;
            self.fail(
                "2",
                format!(
                    "{name}: new verdict while q{}'s is pending, not mooted",
                    old.qemu
                ),
            );
        }
        let q = &self.qemus[&seq];
        // I1: the host's intent, claimed while the daemon held it, makes
        // the verdict; without one, `decide(kept)` is the reference. Every
        // fold is read with it (the exceptions compare the folds).
        let expected = q.expected;
        let kept = decide_expected(&q.kept, expected);
        let sent = decide_expected(&q.sent, expected);
        let read = decide_expected(&q.read, expected);
        let unswept = decide_expected(&q.unswept, expected);
        let truth = decide_expected(&q.truth, expected);
        let (drops, swept, unread, gap) = (q.drops, q.swept, q.unread_at_kill, q.lost_in_gap);
        let swept_at_start = q.swept_at_start;
        let Some(socket) = q.hung_up_on else {
            self.fail(
                "2",
                format!("{name}: verdict for q{seq}, whose socket is unknown"),
            );
            return;
        };
        *self
            .stats
            .why
            .entry(format!("{:?}", verdict.why()))
            .or_default() += 1;
        if verdict.is_user_shutdown() {
            self.stats.user += 1;
        } else {
            self.stats.not_user += 1;
        }
        if verdict != kept {
            let invariant = if verdict.why() == Why::HostIntent || expected == Expected::HostStop {
                "2/I1"
            } else {
                "2"
            };
            self.fail(
                invariant,
                format!(
                    "{name}: q{seq} decided {verdict}, but what the daemon read says {kept} with {expected:?} (reference: {sent})"
                ),
            );
        }
        if kept != sent {
            let what = format!(
                "{name}: q{seq} decided {kept}; the reference says {sent}, what was read {read} \
                 ({drops} connection(s) dropped by restarts{}{}{})",
                if swept { ", state file swept" } else { "" },
                if unread {
                    ", lines unread at a kill"
                } else {
                    ""
                },
                if gap {
                    ", events lost between connections"
                } else {
                    ""
                },
            );
            if drops == 0 && !swept {
                self.fail("2", format!("{what}: they differ without a restart"));
            } else if kept.why() == Why::NeverNegotiated && sent.why() == Why::NoShutdown {
                self.exception("E1", what);
            } else if kept.is_user_shutdown() == sent.is_user_shutdown() {
                self.exception("E2", what);
            } else if unswept.is_user_shutdown() != kept.is_user_shutdown() {
                // The swept state file made the difference.
                self.exception(if swept_at_start { "B2" } else { "E6" }, what);
            } else if read.is_user_shutdown() == kept.is_user_shutdown() {
                if !unread {
                    self.fail(
                        "2",
                        format!("{what}: nothing unread, yet the reference differs"),
                    );
                }
                self.exception("E4", what);
            } else if gap && truth.is_user_shutdown() == kept.is_user_shutdown() {
                // The reference is stale: what changed while no daemon
                // listened (a RESUME, say) is in the truth, and kvmd agrees
                // with the truth.
                self.exception("E5", format!("{what}; truth: {truth}"));
            } else if gap {
                // Neither kvmd nor the reference saw what decides.
                self.exception("E7", format!("{what}; truth: {truth}"));
            } else {
                self.exception("E3", what);
            }
        }
        if let Some(q) = self.qemus.get_mut(&seq) {
            q.verdict = VerdictState::Decided;
        }
        self.verdicts.insert(
            name.clone(),
            PendingVerdict {
                key,
                qemu: seq,
                socket,
                verdict,
                hangup: self.qemus[&seq].hangup.unwrap_or(0),
                last_error: None,
                b3: false,
            },
        );
    }

    /// I3: every press the model said was due went out.
    pub(super) fn invariant_i3_pressed(&mut self, names: &[Name], what: &str) {
        let now = self.now;
        let missed = names.iter().find(|name| {
            self.intents
                .get(*name)
                .is_some_and(|h| h.last_press != Some(now))
        });
        if let Some(name) = missed {
            let name = name.clone();
            self.fail("I3", format!("{name}: {what}, and no press was sent"));
        }
    }

    pub(super) fn final_checks(&mut self) {
        let alive: Vec<usize> = self
            .qemus
            .values()
            .filter(|q| q.alive())
            .map(|q| q.seq)
            .collect();
        if !alive.is_empty() {
            self.fail("end", format!("QEMUs still alive: {alive:?}"));
        }
        if !self.conns.is_empty() || self.fleet.instances() != 0 {
            let conns: Vec<_> = self.conns.keys().collect();
            let instances: Vec<String> = self
                .fleet
                .each_instance()
                .map(|(n, k, p, s)| format!("{n} {k:?} {p:?} {s:?}"))
                .collect();
            self.fail(
                "end",
                format!("still tracked: connections {conns:?}, instances {instances:?}"),
            );
        }
        if !self.verdicts.is_empty() || self.fleet.unrecorded().count() != 0 {
            let v: Vec<String> = self.verdicts.keys().map(ToString::to_string).collect();
            self.fail("end", format!("verdicts never written: {v:?}"));
        }
        if self.fleet.deferred() != 0 {
            self.fail(
                "end",
                format!("{} names still deferred", self.fleet.deferred()),
            );
        }
        if let Some(at) = self.fleet.poll_timeout() {
            let left = at.saturating_duration_since(self.now);
            self.fail("end", format!("a timer still set, due in {left:?}"));
        }
        let files: Vec<String> = self
            .intent_files
            .keys()
            .filter(|name| !self.orphans.contains_key(*name))
            .map(ToString::to_string)
            .collect();
        if !self.intents.is_empty() || !files.is_empty() {
            let held: Vec<String> = self.intents.keys().map(ToString::to_string).collect();
            self.fail(
                "end/I2",
                format!("intents outlive every QEMU: held {held:?}, files {files:?}"),
            );
        }
        let hung_up: Vec<(usize, VerdictState)> = self
            .qemus
            .values()
            .filter(|q| q.hangup.is_some())
            .map(|q| (q.seq, q.verdict))
            .collect();
        for (seq, verdict) in hung_up {
            if verdict == VerdictState::None {
                self.fail("end", format!("q{seq} hung up, never decided"));
            }
        }
    }

    /// I2, after every drain: the intents the model says the daemon holds,
    /// the fleet's (`InstanceView::intent`, on the instance the model
    /// says), and the intent files are one and the same.
    pub(super) fn invariant_i2_intents_held(&mut self) {
        if self.failure.is_some() || self.starting {
            return;
        }
        // Nothing held anywhere, the common case: the fleet must hold
        // nothing either (no allocation, no lookup by name).
        if self.intents.is_empty()
            && self.intent_files.is_empty()
            && self.forgotten.is_empty()
            && self.intents_awaiting_look.is_empty()
        {
            let held = self.fleet.views().find(|v| v.intent.is_some()).map(|v| {
                format!(
                    "{}: the fleet holds {:?}, the model and the files nothing",
                    v.name, v.intent
                )
            });
            if let Some(what) = held {
                self.fail("I2", what);
            }
            return;
        }
        let mut orphaned = Vec::new();
        let mut wrong = None;
        let mut tracked: Vec<&Name> = Vec::new();
        // The instances (a slab position is the instance's key).
        for (position, view) in self.fleet.views_from(0) {
            tracked.push(view.name);
            let name = view.name;
            let model = self.intents.get(name);
            let file = self.intent_files.get(name);
            if let (None, None, Some(file)) = (model, view.intent, file) {
                if self.orphans.get(name) != Some(file) && self.forgotten.contains(name) {
                    orphaned.push((name.clone(), file.clone()));
                } else if self.orphans.get(name) != Some(file) {
                    wrong = Some(format!(
                        "{name}: the intent file {file:?} is held by nobody"
                    ));
                }
                continue;
            }
            let model_key = model.map(|h| h.key);
            let same = model.map(|h| &h.intent) == view.intent
                && view.intent == file
                && model_key.is_none_or(|key| key.0 == position);
            if !same {
                wrong = Some(format!(
                    "{name}: the model holds {:?} on {model_key:?}; the fleet {:?} on {position}; the file {file:?}",
                    model.map(|h| &h.intent),
                    view.intent
                ));
            }
        }
        // Names no instance has: nothing held, no file but an orphan.
        for (name, held) in &self.intents {
            if !tracked.contains(&name) {
                wrong = Some(format!(
                    "{name}: the model holds {:?}, no instance does",
                    held.intent
                ));
            }
        }
        for (name, intent) in &self.intents_awaiting_look {
            if self.intent_files.get(name) != Some(intent) {
                wrong = Some(format!(
                    "{name}: {intent:?} waits for a look, yet its file is {:?}",
                    self.intent_files.get(name)
                ));
            }
        }
        for (name, file) in &self.intent_files {
            if tracked.contains(&name)
                || self.orphans.get(name) == Some(file)
                || self.intents_awaiting_look.get(name) == Some(file)
            {
                continue;
            }
            if self.forgotten.contains(name) {
                orphaned.push((name.clone(), file.clone()));
            } else {
                wrong = Some(format!(
                    "{name}: the intent file {file:?} is held by nobody"
                ));
            }
        }
        self.forgotten.clear();
        if let Some(wrong) = wrong {
            return self.fail("I2", wrong);
        }
        for (name, file) in orphaned {
            self.exception(
                "O1",
                format!(
                    "{name}: its instance was given up holding an intent; the intent file is left: {file:?}"
                ),
            );
            self.orphans.insert(name, file);
        }
    }

    /// I2, after a hang-up's drain: no intent file is left for the QEMU
    /// that ended (`qemu`); only a newer QEMU's may stand at its name.
    pub(super) fn invariant_i2_intent_ended(
        &mut self,
        name: &Name,
        seq: usize,
        qemu: Option<Qemu>,
    ) {
        let Some(qemu) = qemu else {
            return;
        };
        if let Some(file) = self.intent_files.get(name)
            && file.qemu == Some(qemu)
            && self.orphans.get(name) != Some(file)
        {
            let file = file.clone();
            self.fail(
                "I2",
                format!("{name}: q{seq} hung up, its intent file is left: {file:?}"),
            );
        }
    }

    /// I3: the window's timer is set exactly while an intent waits, the
    /// presses' only while one waits (for `powerdown-all`); and while kvmd
    /// may press (the QEMU monitored, fewer than `MAX_ASKED` unanswered,
    /// none refused) the presses go on. Returns how many intent timers are
    /// set.
    pub(super) fn invariant_i3_intent_timers(&mut self) -> usize {
        // Holding none, the fleet must set none: the exact count of
        // invariant 4 finds a stray one without a lookup per instance.
        if self.intents.is_empty() {
            return 0;
        }
        let mut set = 0;
        let mut wrong = None;
        let mut presses_stopped = Vec::new();
        for (name, key, phase, _) in self.fleet.each_instance() {
            let held = self.intents.get(name).filter(|h| h.key == key);
            let waiting = held.filter(|h| h.intent.state == IntentState::Waiting);
            let window = self.fleet.timer_is_set(Timer::Intent(key));
            let press = self.fleet.timer_is_set(Timer::Press(key));
            set += usize::from(window) + usize::from(press);
            // Restored to an instance still connecting, its window over:
            // the timer may have fired already, and the connect decides.
            let over_connecting = waiting.is_some_and(|h| h.intent.until <= self.now)
                && !self.conns.contains_key(&key);
            if window != waiting.is_some() && !over_connecting {
                wrong = Some(format!(
                    "{name}: the window's timer set={window}, the model holds {:?}",
                    held.map(|h| h.intent.state)
                ));
            }
            let pressing = waiting.filter(|h| h.intent.presses == Presses::UntilShutdown);
            if press && waiting.is_none() {
                wrong = Some(format!(
                    "{name}: the presses' timer is set, the model holds {:?}",
                    held.map(|h| (h.intent.state, h.intent.presses))
                ));
            }
            let asked = self.conns.get(&key).map_or(0, |c| c.asked);
            if let Some(h) = pressing
                && !press
                && !h.presses_over
                && phase == Phase::Monitoring
                && asked < MAX_ASKED
            {
                presses_stopped.push((
                    name.clone(),
                    format!(
                        "{name}: powerdown-all's intent{} waits {:?} more, its QEMU monitored, {asked} presses unanswered, and no press is due",
                        if h.press_unsure {
                            " (restored at a restart, a press due while it negotiated)"
                        } else {
                            ""
                        },
                        h.intent.until - self.now
                    ),
                    h.press_unsure,
                ));
            }
        }
        if let Some(wrong) = wrong {
            self.fail("I3", wrong);
        }
        for (name, what, after_restart) in presses_stopped {
            // O2's very trigger only: any other stop is a failure.
            if !after_restart {
                self.fail("I3", what);
                break;
            }
            // Counted once per intent: the model expects no more presses.
            if let Some(held) = self.intents.get_mut(&name) {
                held.presses_over = true;
            }
            self.exception("O2", what);
        }
        set
    }

    /// 3, at a record: no verdict while its QEMU is alive or connected,
    /// none while its name's instance negotiates with or monitors another
    /// QEMU (a newer one on the old inode number, its creation untold:
    /// B3).
    pub(super) fn invariant_3(&mut self, name: &Name, pending: PendingVerdict) {
        if let Some((key, phase, socket)) = self.fleet.instance(name) {
            let newer = self.conns.get(&key).map(|c| c.qemu);
            let connected = matches!(phase, Phase::Negotiating | Phase::Monitoring);
            if connected && (socket != pending.socket || newer != Some(pending.qemu)) {
                let what = format!(
                    "{name}: verdict of q{} ({}) written while {} on {socket:?} is {phase:?}",
                    pending.qemu,
                    pending.verdict,
                    newer.map_or("no QEMU".to_owned(), |q| format!("q{q}")),
                );
                let told =
                    newer.is_some_and(|q| self.qemus.get(&q).is_some_and(|q| q.creation_told));
                if socket == pending.socket && !told {
                    // B3: the newer QEMU's socket has the old one's inode
                    // number and its creation was never told (a stalled
                    // watcher, an overflow): the fleet, which tells QEMUs
                    // apart by socket only, cannot see it is newer. Told
                    // (the old instance was renewed, or the creation was
                    // read after the hang-up), the verdict must be moot.
                    if let Some(pending) = self.verdicts.get_mut(name)
                        && !std::mem::replace(&mut pending.b3, true)
                    {
                        self.exception("B3", what);
                    }
                } else {
                    self.fail("3", what);
                }
            }
        }
        if let Some(q) = self.qemus.get(&pending.qemu)
            && (q.client.is_some() || q.alive())
        {
            self.fail(
                "3",
                format!("{name}: verdict for q{} still connected", pending.qemu),
            );
        }
    }

    /// 6, at a write: verdicts are written in hang-up order, an older
    /// QEMU's never after a newer's.
    pub(super) fn invariant_6_order(&mut self, name: &Name, hangup: u64) {
        if let Some(&last) = self.last_written.get(name)
            && last > hangup
        {
            self.fail(
                "6",
                format!(
                    "{name}: verdict of hang-up #{hangup} written after that of hang-up #{last}"
                ),
            );
        }
    }

    /// R: reports (for the metrics file and systemd) come at most one a
    /// second within one daemon's life; this one is noted.
    pub(super) fn invariant_r_report(&mut self) {
        if let Some(last) = self.last_report
            && self.now < last + Duration::from_secs(1)
        {
            let gap = self.now - last;
            self.fail("R", format!("two reports {gap:?} apart"));
        }
        self.last_report = Some(self.now);
    }

    /// H: the fleet is made without hooks (`Fleet::new`): it asks for no
    /// hook to be run, signalled or saved.
    pub(super) fn invariant_h_hook_action(&mut self) {
        self.fail("H", "a hook action from a fleet without hooks".to_owned());
    }

    /// After every step: the invariants in order, each one's function
    /// stopping the rest at its first failure; then QEMUs that are done
    /// are swept.
    pub(super) fn check(&mut self) {
        if self.failure.is_some() {
            return;
        }
        let _ = self.check_step();
    }

    fn check_step(&mut self) -> ControlFlow<()> {
        let census = self.invariant_1()?;
        let waiting = self.invariant_4(&census)?;
        self.invariant_5(&census, &waiting)?;
        self.invariant_6()?;
        self.invariant_s()?;
        self.invariant_7();
        self.sweep_done_qemus();
        ControlFlow::Continue(())
    }

    /// Records a failure (see `fail`) and stops the checks of this step.
    fn failed<T>(&mut self, invariant: &str, message: String) -> ControlFlow<(), T> {
        self.fail(invariant, message);
        ControlFlow::Break(())
    }

    /// 1: no two instances of one name (no QEMU connected twice is checked
    /// at each connect). Takes the census of the fleet's instances the
    /// next invariants read.
    fn invariant_1(&mut self) -> ControlFlow<(), Census> {
        let mut names = BTreeSet::new();
        let mut connected = BTreeMap::new();
        let mut connecting = Vec::new();
        let mut twice = None;
        for (name, key, phase, socket) in self.fleet.each_instance() {
            if !names.insert(name.clone()) {
                twice = Some(name.clone());
            }
            match phase {
                Phase::Connecting(_) => connecting.push((key, name.clone(), socket)),
                Phase::Negotiating | Phase::Monitoring => {
                    connected.insert(key, name.clone());
                }
            }
        }
        if let Some(name) = twice {
            return self.failed("1", format!("two instances of {name}"));
        }
        let instances = self.fleet.instances();
        self.stats.max_instances = self.stats.max_instances.max(instances);
        ControlFlow::Continue(Census {
            connected,
            connecting,
            instances,
        })
    }

    /// 4: what is tracked stays bounded: instances, verdicts, deferred
    /// names, timers (the intents' own checked on the way: I3).
    fn invariant_4(&mut self, census: &Census) -> ControlFlow<(), Waiting> {
        self.invariant_4_instances(census)?;
        let unrecorded = self.invariant_4_verdicts()?;
        let deferred = self.invariant_4_deferred()?;
        self.invariant_4_timers(census, &unrecorded)?;
        ControlFlow::Continue(Waiting {
            unrecorded,
            deferred,
        })
    }

    /// 4: every instance is connected (and the model has its connection)
    /// or connecting with its timer set, and there are no more instances
    /// than sockets, connections and connecting instances whose file went.
    fn invariant_4_instances(&mut self, census: &Census) -> ControlFlow<()> {
        let Census {
            connected,
            connecting,
            instances,
        } = census;
        let instances = *instances;
        for (key, name) in connected {
            match self.conns.get(key) {
                Some(conn) if &conn.name == name => {}
                _ => return self.failed("4", format!("{name}: {key:?} connected, no connection")),
            }
        }
        for (key, conn) in &self.conns {
            if !connected.contains_key(key) {
                let name = conn.name.clone();
                return self.failed("4", format!("{name}: connection {key:?} not tracked"));
            }
        }
        for (key, name, _) in connecting {
            if !self.fleet.timer_is_set(Timer::Connect(*key)) {
                return self.failed("4", format!("{name}: connecting {key:?} with no timer"));
            }
        }
        let present = self.dir.as_ref().map_or(0, |d| {
            d.kvmd
                .values()
                .filter(|e| matches!(e.kind, EntryKind::Socket { .. }))
                .count()
        });
        let gone = connecting
            .iter()
            .filter(|(_, name, socket)| {
                self.dir
                    .as_ref()
                    .and_then(|d| d.kvmd.get(name))
                    .is_none_or(|e| {
                        e.id() != *socket || !matches!(e.kind, EntryKind::Socket { .. })
                    })
            })
            .count();
        if instances > present + self.conns.len() + gone {
            return self.failed(
                "4",
                format!(
                    "{instances} instances, {present} sockets, {} connections",
                    self.conns.len()
                ),
            );
        }
        ControlFlow::Continue(())
    }

    /// 4: at most one unrecorded verdict per name, the fleet's list equal
    /// to the model's, no more than names ever used.
    fn invariant_4_verdicts(&mut self) -> ControlFlow<(), Vec<(Name, SocketId, Verdict)>> {
        let unrecorded: Vec<(Name, SocketId, Verdict)> = self
            .fleet
            .unrecorded()
            .map(|(n, s, v)| (n.clone(), s, v))
            .collect();
        let mut seen = BTreeSet::new();
        for (name, socket, verdict) in &unrecorded {
            if !seen.insert(name.clone()) {
                return self.failed("4", format!("{name}: two unrecorded verdicts"));
            }
            match self.verdicts.get(name) {
                Some(pending) if pending.socket == *socket && pending.verdict == *verdict => {}
                other => {
                    let other = format!("{other:?}");
                    return self.failed(
                        "4",
                        format!("{name}: unrecorded {verdict} {socket:?}; model: {other}"),
                    );
                }
            }
        }
        if unrecorded.len() != self.verdicts.len() {
            let model: Vec<String> = self.verdicts.keys().map(ToString::to_string).collect();
            return self.failed("4", format!("unrecorded {unrecorded:?}, model {model:?}"));
        }
        if unrecorded.len() > self.names_used.len() {
            return self.failed("4", "more verdicts than names".to_owned());
        }
        ControlFlow::Continue(unrecorded)
    }

    /// 4: deferred names ≤ 3 per name, and only with their timer set.
    fn invariant_4_deferred(&mut self) -> ControlFlow<(), usize> {
        let deferred = self.fleet.deferred();
        self.stats.max_deferred = self.stats.max_deferred.max(deferred);
        if deferred > 3 * self.names.len() {
            return self.failed("4", format!("{deferred} names deferred"));
        }
        if deferred > 0 && !self.fleet.timer_is_set(Timer::Descriptors) {
            return self.failed("4", format!("{deferred} names deferred, no timer"));
        }
        ControlFlow::Continue(deferred)
    }

    /// 4: timers: at most three per instance (its connect, and an intent's
    /// window and presses), one per verdict, and the four of the fleet's
    /// own; each one set for something tracked. I3's timers are checked on
    /// the way.
    fn invariant_4_timers(
        &mut self,
        census: &Census,
        unrecorded: &[(Name, SocketId, Verdict)],
    ) -> ControlFlow<()> {
        let instances = census.instances;
        let timers = self.fleet.timers();
        let intent_timers = self.invariant_i3_timers()?;
        if timers > instances + intent_timers + unrecorded.len() + 4 {
            return self.failed(
                "4",
                format!(
                    "{timers} timers for {instances} instances ({intent_timers} for intents), {} verdicts",
                    unrecorded.len()
                ),
            );
        }
        // Each connecting instance has its connect timer (checked above);
        // the intent timers were counted instance by instance.
        let tracked = census.connecting.len()
            + intent_timers
            + self
                .verdicts
                .values()
                .filter(|v| self.fleet.timer_is_set(Timer::Record(v.key)))
                .count()
            + [
                Timer::Descriptors,
                Timer::Rescan,
                Timer::Report,
                Timer::AwaitingIntents,
            ]
            .into_iter()
            .filter(|&t| self.fleet.timer_is_set(t))
            .count();
        if timers != tracked {
            return self.failed(
                "4",
                format!("{timers} timers set, {tracked} of them for something tracked"),
            );
        }
        ControlFlow::Continue(())
    }

    /// I3, the timers: those of each instance's intent
    /// (`invariant_i3_intent_timers`), and the end of intents waiting for
    /// a look set exactly while one waits. Returns how many intent timers
    /// are set.
    fn invariant_i3_timers(&mut self) -> ControlFlow<(), usize> {
        let intent_timers = self.invariant_i3_intent_timers();
        if self.failure.is_some() {
            return ControlFlow::Break(());
        }
        let awaiting_timer = self.fleet.timer_is_set(Timer::AwaitingIntents);
        if awaiting_timer == self.intents_awaiting_look.is_empty() {
            return self.failed(
                "I3",
                format!(
                    "the timer of intents waiting for a look set={awaiting_timer}, {} wait",
                    self.intents_awaiting_look.len()
                ),
            );
        }
        ControlFlow::Continue(intent_timers)
    }

    /// 5: `poll_timeout()` is `None` whenever nothing waits, (5b) `Some`
    /// whenever something waits (but verdicts waiting for the directory
    /// to come back), and no deadline is in the past after a turn.
    fn invariant_5(&mut self, census: &Census, waiting: &Waiting) -> ControlFlow<()> {
        let now = self.now;
        let Census { connecting, .. } = census;
        let Waiting {
            unrecorded,
            deferred,
        } = waiting;
        let deferred = *deferred;
        // A report of what changed is made at most a second after it.
        let report_due = self.fleet.timer_is_set(Timer::Report);
        let intent_waits = self
            .intents
            .values()
            .any(|h| h.intent.state == IntentState::Waiting);
        let waits = !connecting.is_empty()
            || !unrecorded.is_empty()
            || deferred > 0
            || self.told_follow == Follow::Rescans
            || report_due
            || intent_waits
            || !self.intents_awaiting_look.is_empty();
        let next = self.fleet.poll_timeout();
        if !waits && next.is_some() {
            return self.failed("5", format!("nothing waits, yet a timeout: {next:?}"));
        }
        let only_dir_waits = connecting.is_empty()
            && deferred == 0
            && self.told_follow == Follow::Events
            && self.told_reach == Reach::Away
            && self
                .verdicts
                .values()
                .all(|v| v.last_error == Some(RecordError::DirAway));
        if waits && next.is_none() && (!only_dir_waits || intent_waits) {
            return self.failed(
                "5b",
                format!(
                    "something waits (connecting {}, verdicts {}, deferred {deferred}, {:?}, intent waiting {intent_waits}) with no timeout",
                    connecting.len(),
                    unrecorded.len(),
                    self.told_follow
                ),
            );
        }
        if next.is_some_and(|at| at <= now) {
            return self.failed("5", "a deadline in the past after a turn".to_owned());
        }
        ControlFlow::Continue(())
    }

    /// 6: the shutdown file matches the latest verdict written for its
    /// name, unless an operator or a non-mendable error left it unknown
    /// (the order of writes: `invariant_6_order`).
    fn invariant_6(&mut self) -> ControlFlow<()> {
        if let Some(dir) = &self.dir {
            let names: BTreeSet<&Name> = dir.expect.keys().chain(dir.shutdown.keys()).collect();
            let wrong = names.into_iter().find_map(|name| {
                let expect = dir.expect.get(name).copied();
                let present = dir.shutdown.contains_key(name);
                match expect.unwrap_or(ExpectedFile::Present(false)) {
                    ExpectedFile::Present(want) if want != present => Some(format!(
                        "{name}.shutdown present={present}, the last verdict written says {want}"
                    )),
                    _ => None,
                }
            });
            if let Some(wrong) = wrong {
                return self.failed("6", wrong);
            }
        }
        ControlFlow::Continue(())
    }

    /// S: the state file of each connection holds exactly what must survive
    /// a restart (a restored one is checked at its connect).
    fn invariant_s(&mut self) -> ControlFlow<()> {
        for conn in self.conns.values() {
            let Some(q) = self.qemus.get(&conn.qemu) else {
                continue;
            };
            let carried = q.kept.carried();
            let want = (carried != Carried::default()).then_some(Saved {
                socket: conn.socket,
                qemu: q.qemu(),
                carried,
            });
            let have = self.state.get(&conn.name).copied();
            if have != want {
                let name = conn.name.clone();
                let seq = q.seq;
                return self.failed(
                    "S",
                    format!("{name}: q{seq}'s state file is {have:?}, want {want:?}"),
                );
            }
        }
        ControlFlow::Continue(())
    }

    /// 7 (liveness): a QEMU that listens on a trusted socket at its name in
    /// the watched directory, with nothing in the way, is connected within
    /// `GRACE` (`GRACE_STALLED` if the watcher stalled meanwhile); the
    /// exceptions B1, L1 and L2 excuse it.
    fn invariant_7(&mut self) {
        let now = self.now;
        let stalled = self.watcher.stalled;
        let current = self.dir.as_ref().map(|d| d.id);
        let watched = current.is_some() && self.watcher.watched == current;
        let blocked = self.faults.emfile || self.faults.eagain;
        let mut late = None;
        let seqs: Vec<usize> = self.qemus.keys().copied().collect();
        for seq in seqs {
            let q = &self.qemus[&seq];
            let at_name = self
                .dir
                .as_ref()
                .and_then(|d| d.kvmd.get(&q.name))
                .is_some_and(|e| {
                    e.kind
                        == EntryKind::Socket {
                            owner: q.owner,
                            qemu: Some(seq),
                        }
                });
            let other_conn = self
                .conns
                .values()
                .any(|c| c.name == q.name && c.qemu != seq);
            let monitorable = q.life == Life::Listening
                && q.run != Run::Exiting
                && q.owner == TRUSTED
                && q.name.fits()
                && q.excused.is_none()
                && at_name
                && watched
                && !blocked
                && !other_conn
                && q.client.is_none();
            let q = self.qemus.get_mut(&seq).expect("q");
            if !monitorable {
                q.monitorable_since = None;
                q.stalled_meanwhile = false;
                continue;
            }
            let since = *q.monitorable_since.get_or_insert(now);
            q.stalled_meanwhile |= stalled;
            let grace = if q.stalled_meanwhile {
                GRACE_STALLED
            } else {
                GRACE
            };
            if now - since > grace {
                late = Some((seq, q.name.clone(), now - since));
            }
        }
        if let Some((seq, name, waited)) = late {
            let id = SocketId {
                dev: DEV,
                ino: self.qemus[&seq].ino,
            };
            let what = format!(
                "{name}: q{seq} listens at its name, monitorable for {waited:?}, not connected"
            );
            match self.given_up.get(&name).copied() {
                // B1: the fleet gave up on a file that was gone (or whose
                // directory was), and keeps refusing that file identity.
                Some((given, why @ (GiveUp::SocketWent | GiveUp::DirGone))) if given == id => {
                    let what = format!("{what}: given up on {id:?} ({why:?})");
                    self.qemus.get_mut(&seq).expect("q").excused = Some("B1");
                    if why == GiveUp::DirGone {
                        self.exception("B1/dir", what.clone());
                    }
                    self.exception("B1", what);
                }
                // L1: a socket given up on for good was replaced, while no
                // event could tell, by one with the same inode number.
                Some((given, _)) if given == id => {
                    self.qemus.get_mut(&seq).expect("q").excused = Some("L1");
                    self.exception("L1", what);
                }
                // L2: the socket kvmd monitored was replaced, while no
                // event could tell, by one with its inode number: at the
                // old QEMU's hang-up the name shows the identity it had.
                _ if !self.qemus[&seq].creation_told
                    && self.last_connect.get(&name) == Some(&id) =>
                {
                    self.qemus.get_mut(&seq).expect("q").excused = Some("L2");
                    self.exception("L2", what);
                }
                _ => self.fail("7", what),
            }
        }
    }

    /// QEMUs that are done need no more watching: dead, not connected, and
    /// decided (or never hung up on a daemon).
    fn sweep_done_qemus(&mut self) {
        self.qemus.retain(|_, q| {
            q.alive()
                || q.client.is_some()
                || (q.hangup.is_some() && q.verdict == VerdictState::None)
        });
    }
}

/// The fleet's instances after a step (invariant 1's census).
struct Census {
    connected: BTreeMap<InstanceKey, Name>,
    connecting: Vec<(InstanceKey, Name, SocketId)>,
    instances: usize,
}

/// What waits in the fleet besides its instances (invariant 4's counts).
struct Waiting {
    unrecorded: Vec<(Name, SocketId, Verdict)>,
    deferred: usize,
}
