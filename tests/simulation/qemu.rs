//! The model QEMUs: processes, their versions, options and states, what
//! each one (or its guest, or an administrator) does, the rows of README's
//! decision table they play, and their monitor (greeting, replies,
//! lifecycle events to a negotiated client).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QemuVersion {
    /// 7.2: SHUTDOWN `{guest, reason}`.
    Modern,
    /// 2.12: SHUTDOWN `{guest}`.
    Guest,
    /// 2.6: SHUTDOWN without data.
    Legacy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    /// Bound, not listening yet: connects are refused.
    Bound,
    Listening,
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Run {
    /// `-S`, not started yet (status `prelaunch`).
    Prelaunch,
    Running,
    Paused,
    /// The guest's own S3 sleep.
    Suspended,
    /// Panicked under `panic=pause` or `-no-shutdown`.
    PanicPaused,
    /// `-no-shutdown` after the guest's SHUTDOWN (status `shutdown`).
    ShutdownPaused,
    /// Its main loop is over: it greets and answers no one, and exits.
    Exiting,
}

/// What a QEMU (or its guest, or an administrator) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Act {
    Kill,
    Exit,
    Quit,
    Signal,
    HostUi,
    Poweroff,
    Powerdown,
    Reboot,
    HostReset,
    Stop,
    Cont,
    Panic,
    Suspend,
    Wakeup,
    ResetCont,
    Garbage,
    Noise,
    /// The daemon is killed and restarted (in a scripted row).
    Restart,
    /// (Scripted) the host says it will stop this QEMU
    /// (`kvmd expect-stop`), once kvmd monitors it: a window of 120 s.
    ExpectStop,
    /// (Scripted) the same, for a window of 1 s.
    ExpectStopBriefly,
    /// (Scripted) the host withdraws its intent (`--cancel`).
    CancelIntent,
    /// (Scripted) waits until the daemon's intent for this QEMU is gone
    /// (expired).
    AwaitExpiry,
    /// (Scripted) waits until the daemon read everything sent so far.
    AwaitRead,
    /// (Scripted) `kvmd powerdown-all`, once kvmd monitors this QEMU.
    PowerdownAll,
    /// (Scripted) the last `powerdown-all`'s client goes away.
    AbandonPowerdown,
    /// (Scripted) an idle guest: waits for the power button, or for its
    /// intent to end.
    AwaitButton,
    /// (Scripted) waits until `MAX_ASKED` presses went unanswered (its
    /// monitor hangs), or its intent ended.
    AwaitUnanswered,
    /// (Scripted) a new QEMU of the same name takes the socket's place
    /// (often its inode number), and this one ends.
    Replace,
    /// (Scripted) the same while the daemon is down: killed, this QEMU
    /// ends, the new one binds its inode number (not listening yet), and
    /// the daemon starts: the intent file fits the socket, the QEMU is
    /// known only once connected.
    ReplaceWhileDown,
    /// (Scripted) the daemon restarts at the very end of this QEMU's
    /// intent's window (`until == now`: expired).
    RestartAtWindowEnd,
}

/// What a guest does with the power button (`system_powerdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Button {
    /// Shuts down (an ACPI-enabled guest).
    Obeys,
    /// Ignores it (no ACPI, or a guest that hangs).
    Ignores,
    /// Loses presses until this one (a guest still booting, its button not
    /// enabled yet): kvmd's presses again are what make it shut down.
    ObeysFrom(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VerdictState {
    None,
    Decided,
    Mooted,
    Lost,
}

pub(super) struct QemuProc {
    pub(super) seq: usize,
    pub(super) name: Name,
    pub(super) pid: u32,
    pub(super) start: u64,
    pub(super) ino: u64,
    pub(super) owner: u32,
    pub(super) ver: QemuVersion,
    pub(super) no_shutdown: bool,
    pub(super) no_reboot: bool,
    pub(super) panic_pause: bool,
    pub(super) life: Life,
    pub(super) run: Run,
    pub(super) bound_at: Instant,
    /// Bound at the control directory's path: a clean exit unlinks it.
    pub(super) in_dir: bool,
    pub(super) client: Option<InstanceKey>,
    /// A README row to play, each act once the daemon negotiated.
    pub(super) script: VecDeque<Act>,
    /// The reference: everything it sent to a negotiated daemon
    /// connection, across connections (folded as it is sent).
    pub(super) sent: Evidence,
    /// Everything the daemon read of it, across connections.
    pub(super) read: Evidence,
    /// Ground truth: every lifecycle event it emitted, client or not (and
    /// negotiations and status replies).
    pub(super) truth: Evidence,
    /// What a daemon keeping only the state file knows.
    pub(super) kept: Evidence,
    /// `kept.carried()` when the last connection was dropped by a restart.
    pub(super) carried_at_drop: Option<Carried>,
    /// As `kept`, had no state file ever been swept (a counterfactual, to
    /// tell why `kept` and `sent` differ).
    pub(super) unswept: Evidence,
    pub(super) unswept_at_drop: Option<Carried>,
    /// Connections dropped by a daemon restart.
    pub(super) drops: u32,
    /// The state file was gone when it was needed.
    pub(super) swept: bool,
    /// B2: the state file was swept at a daemon's start while this QEMU's
    /// socket stood at its name (in the control directory, or in the
    /// directory moved away with it).
    pub(super) swept_at_start: bool,
    /// Lines sent to a connection that a restart dropped before the daemon
    /// read them.
    pub(super) unread_at_kill: bool,
    /// A lifecycle event sent while no daemon connection was negotiated,
    /// after one had been: lost to every daemon, so the references are
    /// stale from then on.
    pub(super) lost_in_gap: bool,
    pub(super) negotiated_once: bool,
    /// A `Created` was handed to the fleet while its socket stood at its
    /// name.
    pub(super) creation_told: bool,
    pub(super) hangup: Option<u64>,
    /// The socket it was monitored through when it hung up.
    pub(super) hung_up_on: Option<SocketId>,
    pub(super) verdict: VerdictState,
    pub(super) monitorable_since: Option<Instant>,
    pub(super) stalled_meanwhile: bool,
    pub(super) excused: Option<&'static str>,
    /// What its guest does with the power button.
    pub(super) button: Button,
    /// Power button presses it took (`system_powerdown` answered).
    pub(super) presses: u32,
    /// Its monitor answers no command until then (a QEMU whose main loop is
    /// stuck on a slow disk): kvmd's presses pile up unanswered.
    pub(super) deaf_until: Option<Instant>,
    /// Its monitor hangs for 40 s at the first press (scripted).
    pub(super) hangs_when_pressed: bool,
    /// I1: what the host said of its stop, as the model says the daemon
    /// knew it at its hang-up.
    pub(super) expected: Expected,
}

impl QemuProc {
    pub(super) fn qemu(&self) -> Qemu {
        Qemu {
            pid: self.pid,
            start: self.start,
        }
    }

    pub(super) fn alive(&self) -> bool {
        self.life != Life::Dead
    }
}

impl Simulation {
    pub(super) fn spawn(&mut self) {
        let alive = self.qemus.values().filter(|q| q.alive()).count();
        if alive >= MAX_QEMUS || self.dir.is_none() {
            return;
        }
        let name = self.pick_name();
        let same = self.qemus.values().any(|q| q.alive() && q.name == name);
        if same && !self.rng.chance(1, 10) {
            return;
        }
        let there = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
        if there.is_some_and(|e| e.kind == EntryKind::Dir) {
            return; // bind fails: EADDRINUSE after unlink's EISDIR
        }
        let Some(ino) = self.alloc_ino() else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.qemus += 1;
        self.names_used.insert(name.clone());
        let owner = if self.rng.chance(1, 30) {
            UNTRUSTED
        } else {
            TRUSTED
        };
        let ver = [
            QemuVersion::Modern,
            QemuVersion::Modern,
            QemuVersion::Modern,
            QemuVersion::Guest,
            QemuVersion::Legacy,
        ][self.rng.index(5)];
        let mut q = self.new_qemu(seq, name.clone(), ino, owner, ver);
        q.no_shutdown = self.rng.chance(1, 4);
        q.no_reboot = self.rng.chance(1, 5);
        q.panic_pause = self.rng.chance(1, 10);
        q.life = if self.rng.chance(2, 5) {
            Life::Listening
        } else {
            Life::Bound
        };
        q.run = if self.rng.chance(3, 5) {
            Run::Prelaunch
        } else {
            Run::Running
        };
        self.script(&mut q);
        self.intent_script(&mut q);
        let entry = Entry {
            ino,
            kind: EntryKind::Socket {
                owner,
                qemu: Some(seq),
            },
            born: self.step,
        };
        if self.rng.chance(1, 8) {
            // Bound elsewhere and moved in over whatever stood there: one
            // MOVED_TO, no DELETE. A clean exit unlinks the other path.
            q.in_dir = false;
            trace!(
                self,
                "world: q{seq} {name} binds elsewhere, moved in (ino {ino}) {:?}", q.ver
            );
            self.dir
                .as_mut()
                .expect("a dir")
                .kvmd
                .insert(name.clone(), entry);
        } else {
            trace!(
                self,
                "world: q{seq} {name} binds (ino {ino}) {:?} {:?} no_shutdown={} no_reboot={} script={:?}",
                q.ver,
                q.life,
                q.no_shutdown,
                q.no_reboot,
                q.script
            );
            self.unlink(&name);
            self.dir
                .as_mut()
                .expect("a dir")
                .kvmd
                .insert(name.clone(), entry);
        }
        self.entry_event(&name, true);
        self.qemus.insert(seq, q);
    }

    /// A QEMU process as it starts: listening, its guest running, no
    /// option (`spawn` draws them), its guest's button drawn from the
    /// intents' stream.
    pub(super) fn new_qemu(
        &mut self,
        seq: usize,
        name: Name,
        ino: u64,
        owner: u32,
        ver: QemuVersion,
    ) -> QemuProc {
        let button = match self.intent_rng.below(4) {
            0 | 1 => Button::Obeys,
            2 => Button::Ignores,
            _ => Button::ObeysFrom(2 + u32::try_from(self.intent_rng.below(2)).expect("small")),
        };
        QemuProc {
            seq,
            name,
            pid: 1000 + u32::try_from(seq).expect("a pid"),
            start: 50_000 + 7 * seq as u64,
            ino,
            owner,
            ver,
            no_shutdown: false,
            no_reboot: false,
            panic_pause: false,
            life: Life::Listening,
            run: Run::Running,
            bound_at: self.now,
            in_dir: true,
            client: None,
            script: VecDeque::new(),
            sent: Evidence::new(),
            read: Evidence::new(),
            truth: Evidence::new(),
            kept: Evidence::new(),
            carried_at_drop: None,
            unswept: Evidence::new(),
            unswept_at_drop: None,
            drops: 0,
            swept: false,
            swept_at_start: false,
            unread_at_kill: false,
            lost_in_gap: false,
            negotiated_once: false,
            creation_told: false,
            hangup: None,
            hung_up_on: None,
            verdict: VerdictState::None,
            monitorable_since: None,
            stalled_meanwhile: false,
            excused: None,
            button,
            presses: 0,
            deaf_until: None,
            hangs_when_pressed: false,
            expected: Expected::Nothing,
        }
    }

    /// Some QEMUs play a row of README's decision table, act by act.
    pub(super) fn script(&mut self, q: &mut QemuProc) {
        use Act::*;
        let rows: [&[Act]; 14] = [
            &[Poweroff],
            &[Powerdown, Poweroff],
            &[Quit],
            &[Signal],
            &[Kill],
            &[Reboot],
            &[Panic],
            &[Stop, Cont, Poweroff],
            &[Stop, Quit],
            &[Reboot, Poweroff],
            &[Poweroff, Quit],
            &[Powerdown, Restart, Poweroff],
            &[Suspend, Restart, Wakeup, Poweroff],
            &[Stop, Restart, Cont, Poweroff],
        ];
        if !self.rng.chance(1, 3) {
            return;
        }
        let row = self.rng.index(rows.len());
        match row {
            5 => q.no_reboot = true,
            6 => {
                q.panic_pause = false;
                q.no_shutdown = false;
            }
            9 => q.no_reboot = false,
            10 => q.no_shutdown = true,
            _ => {}
        }
        q.script = rows[row].iter().copied().collect();
    }

    /// Sends a line to `seq`'s client: lifecycle events only once it is
    /// negotiated (else they are lost), other lines to any client.
    pub(super) fn send(
        &mut self,
        seq: usize,
        json: &[u8],
        mark: Option<Event>,
        only_negotiated: bool,
    ) {
        let Some(key) = self.qemus.get(&seq).and_then(|q| q.client) else {
            return;
        };
        let crlf = !self.rng.chance(1, 20);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closed || (only_negotiated && !conn.negotiated) {
            return;
        }
        conn.since.get_or_insert(self.now);
        conn.out.extend_from_slice(json);
        let json_end = conn.out.len();
        conn.out
            .extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        if let Some(event) = mark {
            conn.marks.push_back(Mark {
                json_end,
                line_end: conn.out.len(),
                event: Some(event),
            });
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.sent.record(event);
                if !matches!(
                    event,
                    Event::Shutdown { .. }
                        | Event::Powerdown
                        | Event::Reset
                        | Event::Stop
                        | Event::Resume
                        | Event::GuestPanicked
                ) {
                    q.truth.record(event);
                }
            }
        }
    }

    pub(super) fn event_json(&self, name: &str, data: Option<&str>) -> Vec<u8> {
        let secs = 1_764_000_000 + (self.now - self.base).as_secs();
        let mut line = format!(
            "{{\"timestamp\": {{\"seconds\": {secs}, \"microseconds\": 1}}, \"event\": \"{name}\""
        );
        if let Some(data) = data {
            let _ = write!(line, ", \"data\": {data}");
        }
        line.push('}');
        line.into_bytes()
    }

    pub(super) fn lifecycle(
        &mut self,
        seq: usize,
        name: &str,
        data: Option<&str>,
        event: Option<Event>,
    ) {
        let json = self.event_json(name, data);
        let client = self
            .qemus
            .get(&seq)
            .and_then(|q| q.client)
            .and_then(|k| self.conns.get(&k))
            .is_some_and(|c| c.negotiated && !c.closed);
        trace!(
            self,
            "world: q{seq} sends {name} {}{}",
            data.unwrap_or(""),
            if client {
                ""
            } else {
                " (lost: no negotiated client)"
            }
        );
        if let (Some(event), Some(q)) = (event, self.qemus.get_mut(&seq)) {
            q.truth.record(event);
            if !client {
                q.lost_in_gap |= q.negotiated_once;
            }
        }
        self.send(seq, &json, event, true);
    }

    /// `{guest, reason}` as this QEMU's version sends them.
    pub(super) fn guest_reason(
        &self,
        seq: usize,
        guest: bool,
        reason: &str,
    ) -> (Option<String>, Option<bool>, Option<Reason>) {
        match self.qemus[&seq].ver {
            QemuVersion::Modern => (
                Some(format!("{{\"guest\": {guest}, \"reason\": \"{reason}\"}}")),
                Some(guest),
                Some(Reason::from_wire(reason)),
            ),
            QemuVersion::Guest => (Some(format!("{{\"guest\": {guest}}}")), Some(guest), None),
            QemuVersion::Legacy => (None, None, None),
        }
    }

    pub(super) fn shutdown(&mut self, seq: usize, guest: bool, reason: &str) {
        let (data, guest_seen, reason_seen) = self.guest_reason(seq, guest, reason);
        let event = Event::Shutdown {
            guest: guest_seen,
            reason: reason_seen,
        };
        self.lifecycle(seq, "SHUTDOWN", data.as_deref(), Some(event));
        let q = &self.qemus[&seq];
        let host_ends = matches!(reason, "host-qmp-quit" | "host-signal");
        if q.run == Run::ShutdownPaused || host_ends || !q.no_shutdown {
            self.qemus.get_mut(&seq).expect("q").run = Run::Exiting;
            // QEMU usually exits at once; flushing disks may take a while.
            if self.rng.chance(4, 5) {
                self.die(seq, true);
            }
        } else {
            self.lifecycle(seq, "STOP", None, Some(Event::Stop));
            self.qemus.get_mut(&seq).expect("q").run = Run::ShutdownPaused;
        }
    }

    pub(super) fn reset(&mut self, seq: usize, guest: bool, reason: &str) {
        let (data, _, _) = self.guest_reason(seq, guest, reason);
        self.lifecycle(seq, "RESET", data.as_deref(), Some(Event::Reset));
    }

    pub(super) fn set_run(&mut self, seq: usize, run: Run) {
        if let Some(q) = self.qemus.get_mut(&seq) {
            q.run = run;
        }
    }

    pub(super) fn garbage(&mut self, seq: usize) {
        const LINES: [&[u8]; 11] = [
            b"\xff\xfe garbage",
            b"[1, 2]",
            b"\"text\"",
            b"{\"event\": \"STOP\"",
            b"{\"event\": 5}",
            b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": \"yes\"}}",
            b"{\"event\": \"SHUTDOWN\", \"data\": [true, \"guest-shutdown\"]}",
            b"{\"neither\": 1}",
            b"  ",
            b"{\"event\": \"BLOCK_JOB_STOPPED_SHUTDOWN\", \"data\": {\"device\": \"STOP POWERDOWN\"}}",
            b"{\"event\": \"GUEST_PANICKED\", \"data\": {\"action\": 5}, \"x\": }",
        ];
        let line: Vec<u8> = if self.rng.chance(1, 500) {
            // Longer than kvmd takes (64 KiB): dropped, parsing resumes.
            let mut long = b"{\"event\": \"STOP\", \"data\": \"".to_vec();
            long.resize(70_000, b'y');
            long.extend_from_slice(b"\"}");
            long
        } else {
            LINES[self.rng.index(LINES.len())].to_vec()
        };
        trace!(self, "world: q{seq} sends garbage ({} bytes)", line.len());
        self.send(seq, &line, None, false);
    }

    /// QEMU ends. Clean: it unlinks its path first, then closes. SIGKILL:
    /// the socket file stays; a line being written may be cut short.
    pub(super) fn die(&mut self, seq: usize, clean: bool) {
        let Some(q) = self.qemus.get(&seq) else {
            return;
        };
        if !q.alive() {
            return;
        }
        let (name, in_dir, client) = (q.name.clone(), q.in_dir, q.client);
        trace!(
            self,
            "world: q{seq} {name} {}",
            if clean { "exits" } else { "is killed" }
        );
        if clean && in_dir {
            let there = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
            if there.is_some_and(|e| e.kind != EntryKind::Dir) {
                self.unlink(&name);
            }
        }
        if !clean && self.rng.chance(1, 3) {
            let negotiated = client
                .and_then(|k| self.conns.get(&k))
                .is_some_and(|c| c.negotiated);
            if negotiated {
                let json = self.event_json("POWERDOWN", None);
                let cut = self.rng.index(json.len() + 3);
                let mut line = json.clone();
                line.extend_from_slice(b"\r\n");
                line.truncate(cut);
                let key = client.expect("a client");
                let conn = self.conns.get_mut(&key).expect("the connection");
                let start = conn.out.len();
                conn.out.extend_from_slice(&line);
                if cut >= json.len() {
                    if let Some(q) = self.qemus.get_mut(&seq) {
                        q.sent.record(Event::Powerdown);
                    }
                    let conn = self.conns.get_mut(&key).expect("the connection");
                    conn.marks.push_back(Mark {
                        json_end: start + json.len(),
                        line_end: if cut >= json.len() + 2 {
                            start + json.len() + 2
                        } else {
                            usize::MAX
                        },
                        event: Some(Event::Powerdown),
                    });
                }
                trace!(
                    self,
                    "  ... cut short: {:?}",
                    line.escape_ascii().to_string()
                );
            }
        }
        let now = self.now;
        let q = self.qemus.get_mut(&seq).expect("q");
        q.life = Life::Dead;
        self.stats.lifetime_total += now - q.bound_at;
        if let Some(key) = client
            && let Some(conn) = self.conns.get_mut(&key)
        {
            conn.closed = true;
            conn.since.get_or_insert(now);
        }
    }

    /// What `seq` can do now, and its weight.
    pub(super) fn choices(q: &QemuProc) -> Vec<(u64, Act)> {
        use Act::*;
        match q.life {
            Life::Dead => return vec![],
            Life::Bound => return vec![(3, Kill), (2, Exit)],
            Life::Listening => {}
        }
        match q.run {
            Run::Prelaunch => vec![
                (30, Cont),
                (4, Powerdown),
                (1, Quit),
                (1, Signal),
                (1, Kill),
                (3, Garbage),
                (2, Noise),
            ],
            Run::Running => vec![
                (3, Poweroff),
                (6, Powerdown),
                (8, Reboot),
                (2, HostReset),
                (8, Stop),
                (1, Panic),
                (3, Suspend),
                (2, Quit),
                (1, Signal),
                (1, HostUi),
                (2, Kill),
                (5, Garbage),
                (8, Noise),
            ],
            Run::Paused => vec![
                (20, Cont),
                (2, Quit),
                (1, Signal),
                (4, Powerdown),
                (1, Kill),
                (3, Garbage),
            ],
            Run::Suspended => vec![(20, Wakeup), (4, Powerdown), (2, Quit), (1, Kill)],
            Run::PanicPaused => vec![(6, Quit), (2, Signal), (2, Kill), (6, ResetCont)],
            Run::ShutdownPaused => vec![(10, Quit), (4, Signal), (3, Kill), (2, Garbage)],
            Run::Exiting => vec![(10, Exit), (2, Kill)],
        }
    }

    pub(super) fn act(&mut self, seq: usize, act: Act) {
        let Some(q) = self.qemus.get(&seq) else {
            return;
        };
        let (no_reboot, panic_pause, no_shutdown) = (q.no_reboot, q.panic_pause, q.no_shutdown);
        match act {
            Act::Kill => self.die(seq, false),
            Act::Exit => self.die(seq, true),
            Act::Quit => self.shutdown(seq, false, "host-qmp-quit"),
            Act::Signal => self.shutdown(seq, false, "host-signal"),
            Act::HostUi => self.shutdown(seq, false, "host-ui"),
            Act::Poweroff => self.shutdown(seq, true, "guest-shutdown"),
            Act::Powerdown => self.lifecycle(seq, "POWERDOWN", None, Some(Event::Powerdown)),
            Act::Reboot if no_reboot => self.shutdown(seq, true, "guest-reset"),
            Act::Reboot => self.reset(seq, true, "guest-reset"),
            Act::HostReset if no_reboot => self.shutdown(seq, false, "host-qmp-system-reset"),
            Act::HostReset => self.reset(seq, false, "host-qmp-system-reset"),
            Act::Stop => {
                self.lifecycle(seq, "STOP", None, Some(Event::Stop));
                self.set_run(seq, Run::Paused);
            }
            Act::Cont => {
                self.lifecycle(seq, "RESUME", None, Some(Event::Resume));
                self.set_run(seq, Run::Running);
            }
            Act::Panic if panic_pause || no_shutdown => {
                let data = "{\"action\": \"pause\"}";
                self.lifecycle(
                    seq,
                    "GUEST_PANICKED",
                    Some(data),
                    Some(Event::GuestPanicked),
                );
                self.lifecycle(seq, "STOP", None, Some(Event::Stop));
                self.set_run(seq, Run::PanicPaused);
            }
            Act::Panic => {
                let data = "{\"action\": \"poweroff\"}";
                self.lifecycle(
                    seq,
                    "GUEST_PANICKED",
                    Some(data),
                    Some(Event::GuestPanicked),
                );
                self.shutdown(seq, true, "guest-panic");
            }
            Act::Suspend => {
                self.lifecycle(seq, "SUSPEND", None, None);
                self.set_run(seq, Run::Suspended);
            }
            Act::Wakeup => {
                self.lifecycle(seq, "WAKEUP", None, None);
                self.set_run(seq, Run::Running);
            }
            Act::ResetCont => {
                self.reset(seq, false, "host-qmp-system-reset");
                self.lifecycle(seq, "RESUME", None, Some(Event::Resume));
                self.set_run(seq, Run::Running);
            }
            Act::Garbage => self.garbage(seq),
            Act::Noise => {
                let data = "{\"offset\": 1, \"qom-path\": \"/machine/unattached/device[0]\"}";
                self.lifecycle(seq, "RTC_CHANGE", Some(data), None);
            }
            Act::Restart => self.restart(),
            Act::ExpectStop
            | Act::ExpectStopBriefly
            | Act::CancelIntent
            | Act::AwaitExpiry
            | Act::AwaitRead
            | Act::PowerdownAll
            | Act::AbandonPowerdown
            | Act::AwaitButton
            | Act::AwaitUnanswered
            | Act::Replace
            | Act::ReplaceWhileDown
            | Act::RestartAtWindowEnd => {
                self.intent_act(seq, act);
            }
        }
    }

    /// Whether `act` is a step of an intents story (`intent_act`).
    pub(super) fn is_intent_act(act: Act) -> bool {
        matches!(
            act,
            Act::ExpectStop
                | Act::ExpectStopBriefly
                | Act::CancelIntent
                | Act::AwaitExpiry
                | Act::AwaitRead
                | Act::PowerdownAll
                | Act::AbandonPowerdown
                | Act::AwaitButton
                | Act::AwaitUnanswered
                | Act::Replace
                | Act::ReplaceWhileDown
                | Act::RestartAtWindowEnd
        )
    }

    /// A random QEMU does something: its script's next act once its client
    /// is negotiated, or anything its state allows.
    pub(super) fn qemu_act(&mut self) {
        let alive: Vec<usize> = self
            .qemus
            .values()
            .filter(|q| q.alive())
            .map(|q| q.seq)
            .collect();
        if alive.is_empty() {
            return;
        }
        let seq = alive[self.rng.index(alive.len())];
        let q = &self.qemus[&seq];
        if let Some(&next) = q.script.front()
            && Self::is_intent_act(next)
            && q.life == Life::Listening
            && q.run != Run::Exiting
        {
            if self.intent_act(seq, next) {
                if let Some(q) = self.qemus.get_mut(&seq)
                    && q.script.front() == Some(&next)
                {
                    q.script.pop_front();
                }
            } else {
                // Never monitored (an untrusted owner, a name too long), or
                // waiting too long: the story is given up.
                let q = &self.qemus[&seq];
                let never = q.owner != TRUSTED || !q.name.fits();
                if never || self.intent_rng.chance(1, 20) {
                    self.qemus.get_mut(&seq).expect("q").script.clear();
                }
            }
            return;
        }
        if let Some(&next) = q.script.front() {
            let negotiated = q
                .client
                .and_then(|k| self.conns.get(&k))
                .is_some_and(|c| c.negotiated);
            if q.life == Life::Listening && q.run != Run::Exiting {
                if !negotiated && !self.rng.chance(1, 20) {
                    return; // wait for the daemon, as the e2e tests do
                }
                let needs_running = matches!(
                    next,
                    Act::Poweroff | Act::Reboot | Act::Panic | Act::Stop | Act::Suspend
                );
                let act = match q.run {
                    Run::Prelaunch if needs_running => Act::Cont,
                    _ => {
                        self.qemus.get_mut(&seq).expect("q").script.pop_front();
                        next
                    }
                };
                let applicable = match act {
                    Act::Poweroff | Act::Reboot | Act::Panic | Act::Stop | Act::Suspend => {
                        self.qemus[&seq].run == Run::Running
                    }
                    Act::Cont => matches!(self.qemus[&seq].run, Run::Paused | Run::Prelaunch),
                    Act::Wakeup => self.qemus[&seq].run == Run::Suspended,
                    _ => true,
                };
                if applicable {
                    return self.act(seq, act);
                }
                self.qemus.get_mut(&seq).expect("q").script.clear();
                return;
            }
        }
        let choices = Self::choices(&self.qemus[&seq]);
        if let Some(act) = self.rng.weighted(&choices) {
            if act == Act::Restart {
                return;
            }
            self.act(seq, act);
        }
    }

    /// Every QEMU does what it has to: listen, greet, answer, exit.
    pub(super) fn qemu_turns(&mut self, all: bool) {
        let seqs: Vec<usize> = self.qemus.keys().copied().collect();
        for seq in seqs {
            let Some(q) = self.qemus.get(&seq) else {
                continue;
            };
            match (q.life, q.run) {
                (Life::Dead, _) => {}
                (Life::Bound, _) => {
                    let overdue = self.now - q.bound_at > Duration::from_secs(1);
                    if all || overdue || self.rng.chance(1, 4) {
                        trace!(self, "world: q{seq} listens");
                        self.qemus.get_mut(&seq).expect("q").life = Life::Listening;
                    }
                }
                (Life::Listening, Run::Exiting) => {
                    if all || self.rng.chance(1, 3) {
                        self.die(seq, true);
                    }
                }
                (Life::Listening, _) => {
                    if all || self.rng.chance(1, 2) {
                        self.serve(seq);
                    }
                }
            }
        }
    }

    /// QEMU's monitor: the greeting, then one command's reply.
    pub(super) fn serve(&mut self, seq: usize) {
        let Some(key) = self.qemus[&seq].client else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closed {
            return;
        }
        if conn.greet_pending {
            conn.greet_pending = false;
            let greeting: &[u8] = match self.qemus[&seq].ver {
                QemuVersion::Modern => test_kit::DEBIAN_12_GREETING.as_bytes(),
                // Older QEMUs: only the simulation plays them.
                QemuVersion::Guest => b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 12, \"major\": 2}, \"package\": \"\"}, \"capabilities\": []}}",
                QemuVersion::Legacy => b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 6, \"major\": 2}, \"package\": \"\"}, \"capabilities\": []}}",
            };
            trace!(self, "world: q{seq} greets");
            return self.send(seq, greeting, None, false);
        }
        if self.qemus[&seq].deaf_until.is_some_and(|t| self.now < t) {
            return;
        }
        let Some(command) = conn.cmds.pop_front() else {
            return;
        };
        if command == Command::SystemPowerdown {
            return self.take_press(seq, key);
        }
        let refuse = self.rng.chance(1, 60);
        match command {
            Command::Capabilities if refuse => {
                trace!(self, "world: q{seq} refuses qmp_capabilities");
                let line = b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}";
                self.send(seq, line, None, false);
            }
            Command::Capabilities => {
                trace!(self, "world: q{seq} negotiated");
                self.send(
                    seq,
                    test_kit::RETURN.as_bytes(),
                    Some(Event::Negotiated),
                    false,
                );
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.negotiated = true;
                }
                if let Some(q) = self.qemus.get_mut(&seq) {
                    q.negotiated_once = true;
                }
            }
            Command::SystemPowerdown => unreachable!("taken above"),
            Command::QueryStatus if refuse => {
                trace!(self, "world: q{seq} refuses query-status");
                let line = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}";
                self.send(seq, line, None, false);
            }
            Command::QueryStatus => {
                let (status, running) = match self.qemus[&seq].run {
                    Run::Prelaunch => ("prelaunch", false),
                    Run::Running | Run::Exiting => ("running", true),
                    Run::Paused => ("paused", false),
                    Run::Suspended => ("suspended", false),
                    Run::PanicPaused => ("guest-panicked", false),
                    Run::ShutdownPaused => ("shutdown", false),
                };
                let paused = !running && status != "suspended";
                trace!(self, "world: q{seq} status {status}");
                let line = format!(
                    "{{\"return\": {{\"status\": \"{status}\", \"singlestep\": false, \"running\": {running}}}}}"
                );
                self.send(seq, line.as_bytes(), Some(Event::Status { paused }), false);
            }
        }
    }
}
