//! The intents model (module documentation, "Intents"): the host's orders
//! (`expect-stop`, its cancel, `powerdown-all` and its client going away),
//! the intent the model says the daemon must hold for each name, the
//! scripted stories of intents, the power button's presses, and the intent
//! files handed back at start-up.

use super::*;

/// An intent as the model says the daemon holds it, by instance name
/// (invariants I1 to I3).
#[derive(Clone, Debug)]
pub(super) struct HeldIntent {
    /// The instance holding it.
    pub(super) key: InstanceKey,
    /// What the fleet's `InstanceView::intent`, and the intent file, must
    /// say.
    pub(super) intent: Intent,
    /// When the button was last pressed for it (I3: presses again come
    /// `PRESS_AGAIN` apart).
    pub(super) last_press: Option<Instant>,
    /// A press was refused because `MAX_ASKED` went unanswered: kvmd
    /// presses no more, by design.
    pub(super) presses_over: bool,
    /// A press came due while its instance was not monitored yet (after a
    /// restart): when the next one comes is kvmd's choice; that one comes
    /// is invariant I3's liveness.
    pub(super) press_unsure: bool,
}

impl Simulation {
    // --- Stories -----------------------------------------------------------------

    /// Some QEMUs play a story of intents (drawn from the intents' stream,
    /// so the rows of README's table keep their share).
    pub(super) fn intent_script(&mut self, q: &mut QemuProc) {
        use Act::*;
        let rows: [&[Act]; 11] = [
            // A guest agent's shutdown (no POWERDOWN): host-intent.
            &[ExpectStop, Poweroff],
            // Expired unclaimed: the same shutdown is a user shutdown.
            &[ExpectStopBriefly, AwaitExpiry, Poweroff],
            // Cancelled: a user shutdown.
            &[ExpectStop, CancelIntent, Poweroff],
            // Another QEMU takes the name: it inherits nothing.
            &[ExpectStop, Replace],
            // A restart between the intent and the SHUTDOWN: honoured.
            &[ExpectStop, Restart, Poweroff],
            // A restart between the SHUTDOWN and the hang-up: still claimed
            // (and too late to cancel).
            &[ExpectStop, Poweroff, AwaitRead, CancelIntent, Restart, Quit],
            // powerdown-all, pressed again until the guest obeys.
            &[PowerdownAll, AwaitButton],
            // powerdown-all while `MAX_ASKED` presses are unanswered.
            &[PowerdownAll, AwaitUnanswered, PowerdownAll, AwaitButton],
            // Replaced while the daemon is down: the intent file fits the
            // socket, then the connect finds another QEMU.
            &[ExpectStop, ReplaceWhileDown],
            // A restart at the window's very end: expired, not taken up.
            &[ExpectStopBriefly, RestartAtWindowEnd, Poweroff],
            // powerdown-all whose client goes away while the guest ignores
            // the button: no more presses; the intent waits out its window.
            &[PowerdownAll, AbandonPowerdown, AwaitExpiry],
        ];
        if !self.intent_rng.chance(1, 16) {
            return;
        }
        let row = self.intent_rng.index(rows.len());
        match row {
            5 => q.no_shutdown = true,
            6 => {
                q.button = if self.intent_rng.chance(3, 4) {
                    Button::ObeysFrom(2)
                } else {
                    Button::Ignores
                };
            }
            7 => {
                q.button = Button::Ignores;
                q.hangs_when_pressed = true;
            }
            10 => q.button = Button::Ignores,
            _ => {}
        }
        q.script = rows[row].iter().copied().collect();
    }

    // --- The host, through the control socket ------------------------------------

    /// The wall clock at `at` (intent files hold wall time).
    pub(super) fn wall(&self, at: Instant) -> SystemTime {
        UNIX_EPOCH + WALL_AT_BASE + (at - self.base)
    }

    /// Now and then, the host says something of a stop: an intent for a
    /// name (monitored or not, some requests malformed), a cancel, or
    /// `powerdown-all`.
    pub(super) fn intent_world(&mut self) {
        let roll = self.intent_rng.below(10_000);
        if roll >= 40 {
            return;
        }
        if roll >= 37 {
            if !self.powerdown_clients.is_empty() {
                let client = self.intent_rng.index(self.powerdown_clients.len());
                self.abandon_powerdown(client);
            }
            return;
        }
        let name = if self.intent_rng.chance(1, 40) {
            self.names[NAMES.len()].clone()
        } else {
            self.names[self.intent_rng.index(NAMES.len())].clone()
        };
        if roll < 25 {
            const WINDOWS: [u64; 8] = [0, 1, 2, 5, 30, 120, 3600, 3601];
            let window = Duration::from_secs(WINDOWS[self.intent_rng.index(WINDOWS.len())]);
            let by = self.random_by();
            trace!(
                self,
                "world: host: expect-stop {name} for {window:?} by {by:?}"
            );
            let _ = self.expect_stop(&name, window, by);
        } else if roll < 35 {
            trace!(self, "world: host: expect-stop --cancel {name}");
            self.cancel_intent(&name);
        } else {
            const WINDOWS: [u64; 5] = [0, 3, 20, 120, 3601];
            let window = Duration::from_secs(WINDOWS[self.intent_rng.index(WINDOWS.len())]);
            let by = self.random_by();
            trace!(self, "world: host: powerdown-all for {window:?} by {by:?}");
            self.powerdown_all(window, &by);
        }
    }

    /// Who says so: mostly fine, sometimes too long or with control
    /// characters (refused: `BadBy`).
    pub(super) fn random_by(&mut self) -> String {
        let choices = [
            "ganeti-watcher".to_owned(),
            String::new(),
            "gnt-node modify --offline=yes node2".to_owned(),
            "opérateur".to_owned(),
            "line\nbreak".to_owned(),
            "tab\there".to_owned(),
            "x".repeat(201),
            "y".repeat(200),
        ];
        let i = if self.intent_rng.chance(3, 4) {
            0
        } else {
            self.intent_rng.index(choices.len())
        };
        choices[i].clone()
    }

    /// Whether kvmd must take `by` (the spec: at most 200 bytes of text
    /// without control characters).
    pub(super) fn by_allowed(by: &str) -> bool {
        by.len() <= 200 && !by.chars().any(char::is_control)
    }

    /// The intent kvmd must give `name`'s instance at `key`, or why not:
    /// the model's own reading of the request.
    pub(super) fn predict_give(
        &self,
        key: InstanceKey,
        window: Duration,
        by: &str,
        presses: Presses,
    ) -> Result<HeldIntent, IntentRefused> {
        if window.is_zero() || window > MAX_WINDOW {
            return Err(IntentRefused::BadWindow(window));
        }
        if !Self::by_allowed(by) {
            return Err(IntentRefused::BadBy);
        }
        let Some(conn) = self.conns.get(&key) else {
            return Err(IntentRefused::NotYetMonitoring);
        };
        let q = &self.qemus[&conn.qemu];
        // What the daemon read (`kept`) already holds the first SHUTDOWN.
        if q.kept.first_shutdown().is_some() {
            return Err(IntentRefused::AlreadyShutDown);
        }
        Ok(HeldIntent {
            key,
            intent: Intent {
                by: by.to_owned(),
                given: self.now,
                until: self.now + window,
                socket: conn.socket,
                qemu: Some(q.qemu()),
                state: IntentState::Waiting,
                presses,
            },
            last_press: None,
            presses_over: false,
            press_unsure: false,
        })
    }

    pub(super) fn refused(&mut self, why: &IntentRefused) {
        let kind = format!("{why:?}");
        let kind = kind.split('(').next().unwrap_or_default().to_owned();
        *self.stats.intents.refused.entry(kind).or_default() += 1;
    }

    /// `kvmd expect-stop NAME`: a control-socket order, drained at once.
    pub(super) fn expect_stop(
        &mut self,
        name: &Name,
        window: Duration,
        by: String,
    ) -> Result<(), IntentRefused> {
        let predicted = match self.fleet.instance(name) {
            None => Err(IntentRefused::NotMonitored),
            Some((_, phase, _)) if phase != Phase::Monitoring => {
                Err(IntentRefused::NotYetMonitoring)
            }
            Some((key, _, _)) => self.predict_give(key, window, &by, Presses::None),
        };
        let before = self.intent_actions;
        let result = self
            .fleet
            .handle_expect_stop(self.now, name, window, by.clone());
        trace!(self, "  fleet <- expect-stop {name} -> {result:?}");
        let want = predicted.as_ref().map(|_| ()).map_err(Clone::clone);
        if result != want {
            self.fail(
                "I2",
                format!("{name}: expect-stop for {window:?} by {by:?}: {result:?}, the model says {want:?}"),
            );
        }
        match predicted {
            Ok(held) => {
                self.stats.intents.given += 1;
                self.intents.insert(name.clone(), held);
            }
            Err(why) => self.refused(&why),
        }
        self.carry_out();
        if result.is_err() && self.intent_actions != before {
            self.fail(
                "I2",
                format!("{name}: a refused expect-stop wrote or pressed something"),
            );
        }
        result
    }

    /// `kvmd expect-stop --cancel NAME`.
    pub(super) fn cancel_intent(&mut self, name: &Name) {
        let instance = self.fleet.instance(name).map(|(key, _, _)| key);
        let held = instance.and_then(|key| self.intents.get(name).filter(|h| h.key == key));
        let want = match (instance, held) {
            (None, _) => Err(IntentRefused::NotMonitored),
            (Some(_), None) => Err(IntentRefused::NoIntent),
            (Some(_), Some(h)) if h.intent.state == IntentState::Claimed => {
                Err(IntentRefused::AlreadyClaimed)
            }
            (Some(_), Some(_)) => Ok(()),
        };
        let before = self.intent_actions;
        let result = self.fleet.handle_cancel_intent(self.now, name);
        trace!(self, "  fleet <- cancel {name} -> {result:?}");
        if result != want {
            self.fail(
                "I2",
                format!("{name}: cancel: {result:?}, the model says {want:?}"),
            );
        }
        match &want {
            Ok(()) => {
                self.stats.intents.cancelled += 1;
                self.intents.remove(name);
            }
            Err(why) => self.refused(why),
        }
        self.carry_out();
        if result.is_err() && self.intent_actions != before {
            self.fail(
                "I2",
                format!("{name}: a refused cancel wrote or pressed something"),
            );
        }
    }

    /// `kvmd powerdown-all`: an intent for every monitored instance, and
    /// its button pressed.
    pub(super) fn powerdown_all(&mut self, window: Duration, by: &str) {
        self.stats.intents.powerdowns_all += 1;
        let instances: Vec<(Name, InstanceKey, Phase)> = self
            .fleet
            .each_instance()
            .map(|(name, key, phase, _)| (name.clone(), key, phase))
            .collect();
        let mut want: Vec<Pressed> = Vec::new();
        for (name, key, phase) in instances {
            let qemu = self
                .conns
                .get(&key)
                .and_then(|c| self.qemus.get(&c.qemu))
                .map(QemuProc::qemu);
            let result = if phase == Phase::Monitoring {
                match self.predict_give(key, window, by, Presses::UntilShutdown) {
                    Ok(held) => {
                        let asked = self.conns.get(&key).map_or(0, |c| c.asked);
                        if asked >= MAX_ASKED {
                            // Refused before anything is given (O3, fixed):
                            // whatever intent it held stays as it was.
                            self.stats.intents.presses_refused += 1;
                            Err(IntentRefused::CannotPress)
                        } else {
                            self.stats.intents.given += 1;
                            self.intents.insert(name.clone(), held);
                            Ok(())
                        }
                    }
                    Err(why) => Err(why),
                }
            } else {
                Err(IntentRefused::NotYetMonitoring)
            };
            if let Err(why) = &result {
                self.refused(why);
            }
            want.push(Pressed { name, qemu, result });
        }
        self.pressing_all = true;
        let pressed = self.fleet.handle_powerdown_all(self.now, window, by);
        trace!(self, "  fleet <- powerdown-all -> {pressed:?}");
        if pressed != want {
            self.fail(
                "I2",
                format!(
                    "powerdown-all for {window:?} by {by:?}: {pressed:?}, the model says {want:?}"
                ),
            );
        }
        self.carry_out();
        self.pressing_all = false;
        let pressed: Vec<Name> = want
            .iter()
            .filter(|p| p.result.is_ok())
            .map(|p| p.name.clone())
            .collect();
        self.invariant_i3_pressed(&pressed, "powerdown-all said pressed");
        self.powerdown_clients.push(pressed);
    }

    /// The `powerdown-all` client `client` goes away (killed, interrupted) before its
    /// guests stopped: the daemon hands the fleet the names it was waiting
    /// for, less those another client still waits for (as
    /// `ControlServer::take_abandoned` does). Each waiting intent that
    /// presses stops pressing and is kept (I2 compares it, presses
    /// included, with the fleet's and the file; I3 then wants no press).
    pub(super) fn abandon_powerdown(&mut self, client: usize) {
        let mut names = self.powerdown_clients.swap_remove(client);
        names.retain(|name| !self.powerdown_clients.iter().any(|c| c.contains(name)));
        self.stats.intents.abandoned += 1;
        trace!(
            self,
            "world: host: a powerdown-all client goes away ({names:?})"
        );
        for name in &names {
            if let Some(held) = self.intents.get_mut(name)
                && held.intent.state == IntentState::Waiting
                && held.intent.presses == Presses::UntilShutdown
            {
                held.intent.presses = Presses::None;
                self.stats.intents.presses_stopped += 1;
                self.stopping.insert(name.clone());
            }
        }
        self.fleet.handle_orders_abandoned(self.now, &names);
        self.carry_out();
        if !self.stopping.is_empty() {
            let names = std::mem::take(&mut self.stopping);
            self.fail(
                "I3",
                format!("presses of {names:?} stopped in the model, not told stopped"),
            );
        }
    }

    /// The intent the daemon holds for `seq`'s connection, if any.
    pub(super) fn intent_of(&self, seq: usize) -> Option<&HeldIntent> {
        let q = self.qemus.get(&seq)?;
        let key = q.client?;
        self.intents.get(&q.name).filter(|h| h.key == key)
    }

    /// One scripted act about intents (`Act::ExpectStop` ...): `true` once
    /// done, `false` while it waits.
    pub(super) fn intent_act(&mut self, seq: usize, act: Act) -> bool {
        let q = &self.qemus[&seq];
        let name = q.name.clone();
        let client = q.client;
        let monitored = client.is_some_and(|client| {
            self.fleet
                .instance(&name)
                .is_some_and(|(key, phase, _)| key == client && phase == Phase::Monitoring)
        });
        match act {
            Act::ExpectStop | Act::ExpectStopBriefly | Act::PowerdownAll if !monitored => false,
            Act::ExpectStop => {
                let by = "gnt-instance shutdown --agent".to_owned();
                let _ = self.expect_stop(&name, Duration::from_secs(120), by);
                true
            }
            Act::ExpectStopBriefly => {
                let _ = self.expect_stop(&name, Duration::from_secs(1), "qa".to_owned());
                true
            }
            Act::PowerdownAll => {
                self.powerdown_all(Duration::from_secs(30), "gnt-node power-off");
                true
            }
            Act::AbandonPowerdown => {
                let last = self.powerdown_clients.len().checked_sub(1);
                if let Some(last) = last {
                    self.abandon_powerdown(last);
                }
                true
            }
            Act::CancelIntent => {
                self.cancel_intent(&name);
                true
            }
            Act::AwaitExpiry | Act::AwaitButton => self.intent_of(seq).is_none(),
            Act::AwaitUnanswered => {
                self.intent_of(seq).is_none()
                    || client
                        .and_then(|key| self.conns.get(&key))
                        .is_some_and(|c| c.asked >= MAX_ASKED)
            }
            Act::AwaitRead => client
                .and_then(|key| self.conns.get(&key))
                .is_none_or(|c| c.marks.is_empty()),
            Act::Replace => {
                self.replace(seq, false);
                true
            }
            Act::ReplaceWhileDown => {
                self.replace(seq, true);
                true
            }
            Act::RestartAtWindowEnd => {
                // The world's moment: this step happens at the window's
                // end (no daemon turn ran since the step began).
                if let Some(until) = self.intent_of(seq).map(|h| h.intent.until)
                    && until > self.now
                {
                    self.now = until;
                    trace!(
                        self,
                        "world: (the clock is at the intent's end, t={:.3}s)",
                        self.elapsed_secs()
                    );
                }
                self.restart();
                true
            }
            _ => true,
        }
    }

    // --- QEMU and its guest ------------------------------------------------------

    /// A new QEMU of `seq`'s name takes its place: `seq` ends (killed, or
    /// exits), and the new one binds, with the old inode number when it is
    /// free (two times in three), and soon powers off from inside. While
    /// the daemon is down (`while_down`): it is killed first and started
    /// last, the new QEMU not listening yet, on the old inode number.
    pub(super) fn replace(&mut self, seq: usize, while_down: bool) {
        if self.dir.is_none() {
            return;
        }
        let q = &self.qemus[&seq];
        let (name, ino, owner, ver) = (q.name.clone(), q.ino, q.owner, q.ver);
        let clean = self.intent_rng.chance(1, 2);
        self.die(seq, clean);
        let its_own = |e: &Entry| {
            e.kind
                == EntryKind::Socket {
                    owner,
                    qemu: Some(seq),
                }
        };
        if self
            .dir
            .as_ref()
            .and_then(|d| d.kvmd.get(&name))
            .is_some_and(its_own)
        {
            self.unlink(&name);
        }
        let there = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
        if there.is_some_and(|e| e.kind == EntryKind::Dir) {
            return;
        }
        let reuse = while_down || self.intent_rng.chance(2, 3);
        let ino = if !self.inos_in_use().contains(&ino) && reuse {
            ino
        } else {
            match self.alloc_ino() {
                Some(ino) => ino,
                None => return,
            }
        };
        let new = self.next_seq;
        self.next_seq += 1;
        self.stats.qemus += 1;
        let mut q = self.new_qemu(new, name.clone(), ino, owner, ver);
        q.life = if while_down {
            Life::Bound
        } else {
            Life::Listening
        };
        q.run = Run::Running;
        q.script = VecDeque::from([Act::Poweroff]);
        trace!(
            self,
            "world: q{new} {name} replaces q{seq} (ino {ino}) {ver:?}"
        );
        self.unlink(&name);
        self.dir.as_mut().expect("a dir").kvmd.insert(
            name.clone(),
            Entry {
                ino,
                kind: EntryKind::Socket {
                    owner,
                    qemu: Some(new),
                },
                born: self.step,
            },
        );
        self.entry_event(&name, true);
        self.qemus.insert(new, q);
        if while_down {
            self.restart();
        }
    }

    /// QEMU takes a `system_powerdown`: `{"return": {}}` (an error before
    /// negotiation), then POWERDOWN; the guest obeys or not. Sometimes its
    /// monitor then hangs a while, so presses pile up unanswered.
    pub(super) fn take_press(&mut self, seq: usize, key: InstanceKey) {
        let negotiated = self.conns.get(&key).is_some_and(|c| c.negotiated);
        if !negotiated {
            trace!(
                self,
                "world: q{seq} refuses system_powerdown before negotiation"
            );
            let line = b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}";
            return self.send_press_reply(key, line);
        }
        self.send_press_reply(key, test_kit::RETURN.as_bytes());
        self.lifecycle(seq, "POWERDOWN", None, Some(Event::Powerdown));
        let q = self.qemus.get_mut(&seq).expect("q");
        q.presses += 1;
        let obeys = match q.button {
            Button::Obeys => true,
            Button::Ignores => false,
            Button::ObeysFrom(n) => q.presses >= n,
        };
        let presses = q.presses;
        if obeys && q.run == Run::Running {
            q.script = VecDeque::from([Act::Poweroff]);
        }
        let hangs = std::mem::take(&mut self.qemus.get_mut(&seq).expect("q").hangs_when_pressed);
        if hangs || self.intent_rng.chance(1, 10) {
            let hang = Duration::from_secs(if hangs {
                40
            } else {
                10 + self.intent_rng.below(30)
            });
            self.qemus.get_mut(&seq).expect("q").deaf_until = Some(self.now + hang);
            trace!(self, "world: q{seq}'s monitor hangs for {hang:?}");
        }
        trace!(
            self,
            "world: q{seq} pressed (#{presses}): the guest {}",
            if obeys { "obeys" } else { "ignores it" }
        );
    }

    /// A reply to a press, marked so that reading it counts it answered.
    pub(super) fn send_press_reply(&mut self, key: InstanceKey, json: &[u8]) {
        let crlf = !self.intent_rng.chance(1, 20);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closed {
            return;
        }
        conn.since.get_or_insert(self.now);
        conn.out.extend_from_slice(json);
        let json_end = conn.out.len();
        conn.out
            .extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        conn.marks.push_back(Mark {
            json_end,
            line_end: conn.out.len(),
            event: None,
        });
    }

    /// The daemon sent a press on `key`'s connection (I3).
    pub(super) fn press_sent(&mut self, key: InstanceKey) {
        self.intent_actions += 1;
        self.stats.intents.presses += 1;
        let Some(conn) = self.conns.get_mut(&key) else {
            return; // invariant 4 fails on it already
        };
        conn.asked += 1;
        let (asked, name) = (conn.asked, conn.name.clone());
        if asked > MAX_ASKED {
            self.fail(
                "I3",
                format!("{name}: {asked} presses unanswered, more than {MAX_ASKED}"),
            );
        }
        let now = self.now;
        let again = !self.pressing_all;
        let held = self.intents.get_mut(&name).filter(|h| h.key == key);
        let wrong = match held {
            Some(h)
                if h.intent.state == IntentState::Waiting
                    && h.intent.presses == Presses::UntilShutdown =>
            {
                let last = h.last_press.replace(now);
                h.press_unsure = false;
                match last {
                    Some(last) if again && now < last + PRESS_AGAIN => Some(format!(
                        "pressed again {:?} after the last press",
                        now - last
                    )),
                    _ => None,
                }
            }
            other => Some(format!(
                "a press with no waiting powerdown-all intent (the model holds {:?})",
                other.map(|h| (h.intent.state, h.intent.presses))
            )),
        };
        if again {
            self.stats.intents.presses_again += 1;
        }
        if let Some(wrong) = wrong {
            self.fail("I3", format!("{name}: {wrong}"));
        }
    }

    // --- What the daemon must hold -----------------------------------------------

    /// The daemon read the first SHUTDOWN of `key`'s QEMU: an intent
    /// waiting for it is claimed (I1), or expires then if its window is
    /// over and its timer has not fired yet.
    pub(super) fn first_shutdown_read(&mut self, key: InstanceKey, name: &Name) {
        let now = self.now;
        if let Some(held) = self.intents.get(name)
            && held.key == key
            && held.intent.state == IntentState::Waiting
            && held.intent.until <= now
        {
            trace!(self, "  {name}: the model: intent expires at the SHUTDOWN");
            self.intents.remove(name);
            self.stats.intents.expired += 1;
            self.expiring.insert(name.clone());
            return;
        }
        if let Some(held) = self.intents.get_mut(name)
            && held.key == key
            && held.intent.state == IntentState::Waiting
        {
            held.intent.state = IntentState::Claimed;
            self.stats.intents.claimed += 1;
            trace!(
                self,
                "  {name}: the model: intent by {:?} claimed", held.intent.by
            );
        }
    }

    /// Before `handle_timeout(now)`: waiting intents whose window is over
    /// expire in it (their timer is due: `until <= now`); a press due now
    /// on a QEMU with `MAX_ASKED` presses unanswered is refused, and kvmd
    /// presses no more.
    pub(super) fn intents_due(&mut self) -> Vec<Name> {
        let now = self.now;
        let mut expired = Vec::new();
        let mut presses = Vec::new();
        for (name, held) in &mut self.intents {
            if held.intent.state != IntentState::Waiting {
                continue;
            }
            let press_due = held.intent.presses == Presses::UntilShutdown
                && !held.presses_over
                && held.last_press.is_none_or(|last| last + PRESS_AGAIN <= now);
            let asked = self.conns.get(&held.key).map_or(0, |c| c.asked);
            if press_due && asked >= MAX_ASKED {
                held.presses_over = true;
                self.stats.intents.presses_refused += 1;
            }
            let monitored = self
                .fleet
                .instance(name)
                .is_some_and(|(key, phase, _)| key == held.key && phase == Phase::Monitoring);
            // Restored to an instance still connecting: its connect
            // decides (see `connected_with_intent_over`).
            let connecting = self
                .fleet
                .instance(name)
                .is_some_and(|(key, _, _)| key == held.key)
                && !self.conns.contains_key(&held.key);
            if held.intent.until <= now {
                if !connecting {
                    expired.push(name.clone());
                }
            } else if press_due && !monitored {
                held.press_unsure = true;
            } else if press_due && asked < MAX_ASKED && !held.press_unsure {
                presses.push(name.clone());
            }
        }
        for name in expired {
            trace!(self, "  {name}: the model: intent expires");
            self.intents.remove(&name);
            self.stats.intents.expired += 1;
            self.expiring.insert(name);
        }
        presses
    }

    /// An intent handed back at start-up (or waiting for a look since):
    /// taken up by the instance on the same socket, of the same QEMU once
    /// it is known, while its window is open or its instance is still
    /// connecting (claimed at once if that QEMU's restored evidence has its
    /// first SHUTDOWN); dropped otherwise. One given anew meanwhile stays.
    pub(super) fn take_up(&mut self, name: &Name, intent: Intent) {
        let now = self.now;
        let instance = self.fleet.instance(name);
        if let Some((key, _, _)) = instance
            && self.intents.get(name).is_some_and(|h| h.key == key)
        {
            trace!(
                self,
                "  {name}: the model: kept intent given anew meanwhile"
            );
            self.stats.intents.dropped += 1;
            return;
        }
        let connected = instance.and_then(|(key, _, _)| self.conns.get(&key));
        let connecting = instance.is_some() && connected.is_none();
        let qemu = connected.map(|c| self.qemus[&c.qemu].qemu());
        let shut_down =
            connected.is_some_and(|c| self.qemus[&c.qemu].kept.first_shutdown().is_some());
        let fits = instance.is_some_and(|(_, _, socket)| socket == intent.socket)
            && match (qemu, intent.qemu) {
                (Some(now), Some(then)) => now == then,
                _ => true,
            };
        let expired = intent.state == IntentState::Waiting
            && intent.until <= now
            && !shut_down
            && !connecting;
        if expired && intent.until == now {
            self.stats.intents.dropped_at_until += 1;
        }
        let Some((key, _, _)) = instance.filter(|_| fits && !expired) else {
            trace!(
                self,
                "  {name}: the model: kept intent dropped (fits={fits}, expired={expired})"
            );
            self.stats.intents.dropped += 1;
            return;
        };
        let mut intent = intent;
        if shut_down {
            intent.state = IntentState::Claimed;
        }
        self.stats.intents.restored += 1;
        if intent.state == IntentState::Claimed {
            self.stats.intents.restored_claimed += 1;
        }
        trace!(
            self,
            "  {name}: the model: kept intent taken up ({:?})", intent.state
        );
        self.intents.insert(
            name.clone(),
            HeldIntent {
                key,
                intent,
                last_press: None,
                presses_over: false,
                press_unsure: false,
            },
        );
    }

    /// A look the fleet asked for was answered: whether it told what stands
    /// at the name (then an intent waiting for that is settled) or not.
    /// Looks for a verdict or a recheck, and a successor's look that found
    /// the ended QEMU's own socket or nothing, attach nothing and settle
    /// nothing.
    pub(super) fn looked(&mut self, name: &Name, purpose: Purpose, look: Look) {
        let attaching = match purpose {
            Purpose::Attach => true,
            Purpose::Successor { ended, renewed } => {
                renewed
                    || matches!(look, Look::Socket { id, .. } if id != ended)
                    || matches!(look, Look::DirFailed(_))
            }
            Purpose::Verdict(_) | Purpose::Recheck => false,
        };
        if !attaching {
            return;
        }
        if matches!(
            look,
            Look::Socket { .. } | Look::Other { .. } | Look::Absent
        ) {
            self.looks_unsettled.remove(name);
            self.settle_awaiting(name);
        } else {
            self.looks_unsettled.insert(name.clone());
        }
    }

    /// `name` was looked at, or its entry went: an intent waiting for it
    /// is taken up or dropped now.
    pub(super) fn settle_awaiting(&mut self, name: &Name) {
        if let Some(intent) = self.intents_awaiting_look.remove(name) {
            trace!(self, "  {name}: the model: kept intent settled by a look");
            self.stats.intents.awaited_settled += 1;
            self.take_up(name, intent);
        }
    }

    /// Intents still waiting for a look at the end of their window are
    /// dropped in this `handle_timeout`.
    pub(super) fn awaiting_intents_due(&mut self) {
        let now = self.now;
        let over: Vec<Name> = self
            .intents_awaiting_look
            .iter()
            .filter(|(_, intent)| intent.until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in over {
            trace!(self, "  {name}: the model: kept intent ends unlooked at");
            self.intents_awaiting_look.remove(&name);
            self.stats.intents.awaited_ended += 1;
            self.stats.intents.dropped += 1;
        }
    }

    /// A connect made: an intent restored to the instance while it was
    /// connecting, whose window ended meanwhile, is claimed by a SHUTDOWN
    /// the previous run read, or ends now (told expired).
    pub(super) fn connected_with_intent_over(&mut self, name: &Name, key: InstanceKey) {
        let now = self.now;
        let over = self.intents.get(name).is_some_and(|h| {
            h.key == key && h.intent.state == IntentState::Waiting && h.intent.until <= now
        });
        if !over {
            return;
        }
        let shut_down = self
            .conns
            .get(&key)
            .is_some_and(|c| self.qemus[&c.qemu].kept.first_shutdown().is_some());
        if shut_down {
            trace!(
                self,
                "  {name}: the model: kept intent claimed at the connect"
            );
            if let Some(held) = self.intents.get_mut(name) {
                held.intent.state = IntentState::Claimed;
            }
            return;
        }
        trace!(self, "  {name}: the model: kept intent ends at the connect");
        self.intents.remove(name);
        self.stats.intents.expired += 1;
        self.stats.intents.expired_at_connect += 1;
        self.expiring.insert(name.clone());
    }

    /// `Daemon::restore_intents`, right after the state files' drain: the
    /// intent files, through their form on disk, handed back once. The
    /// model says which are taken up: by the instance on the same socket,
    /// of the same QEMU once it is known, and only while the window is
    /// open (or claimed); claimed at once if that QEMU's restored evidence
    /// already has its first SHUTDOWN.
    pub(super) fn restore_intents(&mut self) {
        let now = self.now;
        let wall_now = self.wall(now);
        let mut files = Vec::new();
        for (name, intent) in &self.intent_files {
            let saved = SavedIntent::from_intent(intent, |at| self.wall(at));
            files.push((name.clone(), intent.clone(), saved.to_intent(now, wall_now)));
        }
        let mut handed = Vec::new();
        for (name, intent, back) in files {
            if back.as_ref() != Some(&intent) {
                return self.fail(
                    "I2",
                    format!("{name}: the intent file of {intent:?} reads back as {back:?}"),
                );
            }
            handed.push((name, intent));
        }
        if handed.is_empty() {
            return;
        }
        for (name, intent) in &handed {
            // A name the fleet has not looked at: what stands there is not
            // known, and the intent waits for it, as state files do.
            let unknown = self.told_reach == Reach::Away || self.looks_unsettled.contains(name);
            if self.fleet.instance(name).is_none() && unknown {
                trace!(self, "  {name}: the model: kept intent waits for a look");
                self.stats.intents.awaited += 1;
                self.intents_awaiting_look
                    .insert(name.clone(), intent.clone());
                continue;
            }
            self.take_up(name, intent.clone());
        }
        trace!(
            self,
            "  fleet <- intent files {:?}",
            handed.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        // Each is taken up or removed now.
        self.orphans.clear();
        self.fleet.handle_intent_files(now, handed);
        self.carry_out();
    }
}
