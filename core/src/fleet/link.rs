//! Connections: connecting and its back-off, giving up, the QMP
//! conversation, what is kept across a restart, and the hang-up.

use std::time::Instant;

use log::debug;

use super::instance::{Conversation, Link, Readiness, WaitFor};
use super::intents::ShutdownRead;
use super::{
    Action, ConnectError, Connected, Fleet, GiveUp, InstanceKey, Notice, Timer, out_of_descriptors,
    timers,
};
use crate::decision::{self, Carried, Evidence};
use crate::errno::Errno;
use crate::qmp::{self, Command, Event, Output, Problem, RunState, Snippet};
use crate::saved::Saved;

/// Guest crashes (GUEST_PANICKED, GUEST_CRASHLOADED) journaled and told
/// per connection; more are only counted.
pub(crate) const MAX_CRASH_RECORDS: u32 = 8;

/// What the peer did, for the QMP state machine.
enum Feed<'a> {
    Bytes(&'a [u8]),
    Eof,
}

/// Connect errors that mean "not yet" rather than "never".
fn worth_retrying(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::ECONNREFUSED | Errno::EAGAIN | Errno::ENOBUFS | Errno::ENOMEM
    )
}

impl Fleet {
    /// The connect a queued step asks for, if its instance still waits.
    pub(super) fn connect_action(&mut self, key: InstanceKey) -> Option<Action> {
        let instance = self.instances.get(key)?;
        matches!(instance.link, Link::Connecting { .. }).then(|| Action::Connect {
            key,
            name: instance.name.clone(),
            socket: instance.socket,
        })
    }

    /// How a connect went (see [`Fleet::handle_connect`]).
    pub(super) fn connect_answered(
        &mut self,
        now: Instant,
        key: InstanceKey,
        result: Result<Connected, ConnectError>,
    ) {
        let waiting = self.instances.get(key).and_then(|i| match i.link {
            Link::Connecting { since, .. } => Some(since),
            Link::Connected(_) => None,
        });
        let Some(since) = waiting else {
            // Not asked for (questions are answered at once, so this does
            // not happen): a connection made anyway is closed, not leaked.
            if result.is_ok() {
                self.outbox.act(Action::Close { key });
            }
            return;
        };
        let Connected { qemu, saved } = match result {
            Ok(connected) => connected,
            Err(e) => return self.connect_failed(now, key, since, e),
        };
        // Another QEMU process behind the name than the one an unwritten
        // verdict is about: a new QEMU, even on the old inode number.
        if let Some(name) = self.instances.get(key).map(|i| i.name.clone())
            && self
                .verdict_qemu(&name)
                .is_some_and(|old| qemu.is_some_and(|new| new != old))
        {
            self.moot(&name);
        }
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        debug!("{}: connected", instance.name);
        instance.since = now;
        // What an earlier run saw of this very QEMU still counts.
        let mut evidence = Evidence::new();
        let mut restored = false;
        match (qemu, saved) {
            (Some(qemu), Some(saved)) if saved.socket == instance.socket && saved.qemu == qemu => {
                evidence = Evidence::restored(saved.carried);
                instance.saved = saved.carried;
                restored = true;
            }
            (_, Some(_)) => {
                let name = instance.name.clone();
                self.outbox.act(Action::RemoveState { name });
            }
            (_, None) => {}
        }
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        instance.link = Link::Connected(Box::new(Conversation {
            qmp: qmp::Connection::new(),
            evidence,
            qemu,
            problems: 0,
            presses_refused: 0,
            ready: Readiness::Negotiating,
            version: None,
            state: None,
        }));
        let name = instance.name.clone();
        self.outbox.changed();
        if restored {
            self.outbox.notify(Notice::Restored { name });
        }
        self.check_intent_qemu(key);
        // A SHUTDOWN the previous run read (kept with the evidence) claims
        // an intent restored before this connect, as it would have had
        // the connect come first (see `handle_intent_files`).
        if restored && self.shut_down(key) {
            self.claim_intent(key, ShutdownRead::ByEarlierRun);
        }
        self.expire_if_over(key);
    }

    /// Whether `key`'s QEMU has sent (or an earlier run read) its SHUTDOWN.
    pub(super) fn shut_down(&self, key: InstanceKey) -> bool {
        self.instances.get(key).is_some_and(|i| match &i.link {
            Link::Connected(c) => c.evidence.first_shutdown().is_some(),
            Link::Connecting { .. } => false,
        })
    }

    fn connect_failed(&mut self, now: Instant, key: InstanceKey, since: Instant, e: ConnectError) {
        let why = match e {
            ConnectError::DirFailed(errno)
            | ConnectError::Open(errno)
            | ConnectError::Connect(errno)
                if out_of_descriptors(errno) =>
            {
                self.short_of_descriptors(errno);
                return self.retry_later(now, key, WaitFor::Descriptor, &errno);
            }
            ConnectError::Connect(errno)
                if worth_retrying(errno) && now.duration_since(since) < timers::CONNECT_FOR =>
            {
                return self.retry_later(now, key, WaitFor::Listener, &errno);
            }
            ConnectError::DirAway | ConnectError::DirFailed(_) => {
                // No directory to look for a successor in: the next
                // crawl's recap finds whatever stands there.
                return self.give_up(key, GiveUp::DirGone, false);
            }
            ConnectError::NotThisSocket | ConnectError::Open(Errno::ENOENT | Errno::ELOOP) => {
                GiveUp::SocketWent
            }
            ConnectError::Open(errno) => GiveUp::CannotOpen(errno),
            ConnectError::Connect(errno) => GiveUp::CannotConnect(errno),
            ConnectError::Register(errno) => {
                if let Some(instance) = self.instances.get(key) {
                    let name = instance.name.clone();
                    self.outbox.notify(Notice::Unpollable { name, errno });
                }
                GiveUp::Unpollable
            }
        };
        self.give_up(key, why, true);
    }

    /// Schedules a waiting instance's next connect, backing off.
    fn retry_later(&mut self, now: Instant, key: InstanceKey, wait: WaitFor, errno: &Errno) {
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        let Link::Connecting {
            attempts,
            ref mut waits_for,
            ..
        } = instance.link
        else {
            return;
        };
        *waits_for = wait;
        let delay = timers::CONNECT.delay(attempts);
        match wait {
            WaitFor::Descriptor => debug!(
                "{}: no free descriptor ({errno}); again in {delay:?}",
                instance.name
            ),
            _ => debug!(
                "{}: connect: {}; again in {delay:?}",
                instance.name,
                std::io::Error::from(*errno)
            ),
        }
        if let Link::Connecting { attempts, .. } = &mut instance.link {
            *attempts = attempts.saturating_add(1);
        }
        self.timers.set(Timer::Connect(key), now + delay);
    }

    /// Stops trying to reach an instance that was never connected. Nothing
    /// is decided: nothing was seen. A later creation of the socket starts
    /// over.
    pub(super) fn give_up(&mut self, key: InstanceKey, why: GiveUp, successor: bool) {
        let Some(instance) = self.forget(key) else {
            return;
        };
        self.outbox.notify(Notice::NotMonitored {
            name: instance.name.clone(),
            why,
        });
        // Whatever an earlier run kept for this socket is stale now: its
        // evidence, and an intent restored for it at start-up.
        self.outbox.act(Action::RemoveState {
            name: instance.name.clone(),
        });
        if instance.intent.is_some() {
            self.outbox.act(Action::RemoveIntent {
                name: instance.name.clone(),
            });
        }
        // A rescan finds this very socket again; only a new one is tried.
        // Not for a socket that went away (or a directory away): whatever
        // stands there later is another file, even with the same inode
        // number, and no creation event may tell of it (a stalled watch).
        if !matches!(why, GiveUp::SocketWent | GiveUp::DirGone) {
            self.directory
                .give_up(instance.name.clone(), instance.socket);
        }
        self.counters.given_up += 1;
        if successor {
            self.look_for_successor(&instance);
        }
    }

    /// Bytes read from `key`'s connection (see [`Fleet::handle_bytes`]).
    pub(super) fn read(&mut self, now: Instant, key: InstanceKey, bytes: &[u8]) {
        self.converse(now, key, Feed::Bytes(bytes));
    }

    /// Runs the QMP state machine on `key`'s conversation and applies what
    /// it says; then keeps what must survive a restart, if it changed.
    fn converse(&mut self, now: Instant, key: InstanceKey, feed: Feed<'_>) {
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        let Link::Connected(conv) = &mut instance.link else {
            return;
        };
        let name = &instance.name;
        let since = &mut instance.since;
        let outbox = &mut self.outbox;
        let counters = &mut self.counters;
        let mut changed = false;
        let had_shutdown = conv.evidence.first_shutdown().is_some();
        let Conversation {
            qmp,
            evidence,
            problems,
            presses_refused,
            ready,
            version,
            state,
            qemu,
            ..
        } = &mut **conv;
        let qemu = *qemu;
        let mut out = |output: Output<'_>| match output {
            Output::Line(line) => debug!("{name}: QMP <- {}", line.escape_ascii()),
            Output::Transmit(command) => {
                let bytes = command.as_bytes().trim_ascii_end();
                debug!("{name}: QMP -> {}", bytes.escape_ascii());
                outbox.act_quietly(Action::Transmit { key, command });
            }
            Output::Event(event) => {
                evidence.record(event);
                // What a follower is told: state changes, never a storm.
                let told = match event {
                    Event::Stop => {
                        if *state != Some(RunState::ShutDown) {
                            *state = Some(RunState::Paused);
                        }
                        true
                    }
                    Event::Resume => {
                        *state = Some(RunState::Running);
                        true
                    }
                    Event::Shutdown { .. } => {
                        *state = Some(RunState::ShutDown);
                        true
                    }
                    Event::GuestPanicked | Event::GuestCrashLoaded => {
                        // Recorded as it comes: a guest that lives on in
                        // its crash kernel, or with a panic action of
                        // `none` or `pause`, leaves no verdict behind.
                        match event {
                            Event::GuestPanicked => counters.guest_panics += 1,
                            _ => counters.crash_loads += 1,
                        }
                        // A guest that keeps panicking (panic=none) must not
                        // flood the journal, each line fsync'd, nor rotate
                        // real verdicts out of it: the first few are
                        // recorded, the rest counted (status, metrics, the
                        // verdict's evidence).
                        let seen = evidence.panics().saturating_add(evidence.crash_loads());
                        if seen <= MAX_CRASH_RECORDS {
                            let record = super::JournalRecord {
                                name: name.clone(),
                                qemu,
                                at: now,
                                what: super::Recorded::Crash(event),
                            };
                            outbox.act_quietly(Action::Journal(record));
                        }
                        seen <= MAX_CRASH_RECORDS
                    }
                    Event::Powerdown => true,
                    Event::Reset | Event::Negotiated | Event::Status { .. } => false,
                };
                if told {
                    let notice = Notice::Guest {
                        name: name.clone(),
                        event,
                    };
                    outbox.act_quietly(Action::Notify(notice));
                    changed = true;
                }
            }
            Output::Ready {
                qemu,
                state: status,
            } => {
                *ready = Readiness::Ready;
                *version = qemu;
                *state = status;
                *since = now;
                let name = name.clone();
                let notice = Notice::Monitoring {
                    name,
                    qemu,
                    state: status,
                };
                outbox.act_quietly(Action::Notify(notice));
                changed = true;
            }
            // QEMU may refuse the power button (a guest not running, a
            // machine without one): its answer, told once, is no fault of
            // the peer's and counts in neither the metrics nor the grounds.
            Output::Problem(Problem::Refused {
                command: Command::SystemPowerdown,
                line,
            }) => {
                *presses_refused = presses_refused.saturating_add(1);
                let reply = Snippet(line).to_string();
                if *presses_refused == 1 {
                    let name = name.clone();
                    let notice = Notice::PressRefused { name, reply };
                    outbox.act_quietly(Action::Notify(notice));
                } else {
                    debug!("{name}: QEMU refused system_powerdown again: {reply}");
                }
            }
            Output::Problem(problem) => {
                *problems = problems.saturating_add(1);
                counters.malformed += 1;
                changed = true;
                if *problems == 1 {
                    let name = name.clone();
                    let problem = problem.to_string();
                    let notice = Notice::Malformed { name, problem };
                    outbox.act_quietly(Action::Notify(notice));
                } else {
                    debug!("{name}: {problem}");
                }
            }
        };
        let read = match feed {
            Feed::Bytes(bytes) => {
                qmp.handle_bytes(bytes, &mut out);
                true
            }
            Feed::Eof => {
                qmp.handle_eof(&mut out);
                false
            }
        };
        // Kept once the turn's reads are done (see `settle`). At the
        // hang-up nothing is kept: the verdict is made now.
        if read {
            self.instances.read(key);
        }
        if changed {
            self.outbox.changed();
        }
        if !had_shutdown && self.shut_down(key) {
            self.claim_intent(key, ShutdownRead::Now);
        }
    }

    /// Writes what must survive a restart when it changed (rarely: a
    /// POWERDOWN, a STOP, their undoing; never per event of a storm).
    pub(super) fn keep_state(&mut self, key: InstanceKey) {
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        let Link::Connected(conv) = &instance.link else {
            return;
        };
        let carried = conv.evidence.carried();
        if carried == instance.saved {
            return;
        }
        // Asked once per change, whatever happens: a state directory that
        // cannot be written must not cost a write and a line per read.
        instance.saved = carried;
        let name = instance.name.clone();
        let Some(qemu) = conv.qemu else {
            debug!("{name}: QEMU's process unknown; evidence not kept");
            return;
        };
        if carried == Carried::default() {
            return self.outbox.act(Action::RemoveState { name });
        }
        let saved = Saved {
            socket: instance.socket,
            qemu,
            carried,
        };
        self.outbox.act(Action::SaveState { name, saved });
    }

    /// Decides, records, and looks for a successor (see
    /// [`Fleet::handle_hangup`]).
    pub(super) fn hung_up(&mut self, now: Instant, key: InstanceKey) {
        // A last message without its line ending is still a message.
        self.converse(now, key, Feed::Eof);
        let Some(instance) = self.forget(key) else {
            return;
        };
        let Link::Connected(conv) = &instance.link else {
            // Not connected: nothing was seen, nothing to decide.
            return;
        };
        // Closed first: its descriptor is then free for the directory even
        // in a shortage.
        self.outbox.act(Action::Close { key });
        let (expected, intent) = instance.expected();
        let verdict = decision::decide_expected(&conv.evidence, expected);
        let mut grounds = match conv.problems {
            0 => conv.evidence.to_string(),
            n => format!("{}; {n} unusable messages", conv.evidence),
        };
        if let Some(intent) = &intent {
            grounds.push_str(&format!("; intent by {}", intent.by));
        }
        self.decided(now, &instance, conv.qemu, verdict, grounds, intent);
        if instance.saved != Carried::default() {
            self.outbox.act(Action::RemoveState {
                name: instance.name.clone(),
            });
        }
        if instance.intent.is_some() {
            self.outbox.act(Action::RemoveIntent {
                name: instance.name.clone(),
            });
        }
        // A new QEMU of the same name may have bound its socket before this
        // hang-up was seen; its creation was taken for "already monitored".
        self.look_for_successor(&instance);
    }
}
