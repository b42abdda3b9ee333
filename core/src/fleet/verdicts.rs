//! Verdicts on their way to disk: written at once when the file system
//! takes them, tried again while it cannot (full, read-only, the control
//! directory away), never dropped unsaid, and dropped only when a newer
//! QEMU of the same name makes them moot.
//!
//! [`Verdicts`] is the fleet's part that holds them, one per name, and
//! the history `kvmd status` shows of them; the policy around it (when to
//! write, retry, moot) is `Fleet`'s, here too.

use std::collections::HashMap;
use std::time::Instant;

use slab::Slab;

use super::instance::Instance;
use super::view::{FileState, History, PastVerdict};
use super::{
    Action, Fleet, IntentNote, JournalRecord, Look, Notice, Purpose, Reach, RecordError, Recorded,
    Timer, VerdictKey,
};
use crate::decision::Verdict;
use crate::fleet::Outcome;
use crate::name::InstanceName;
use crate::saved::{Qemu, SocketId};

#[derive(Debug)]
pub(super) struct PendingVerdict {
    pub name: InstanceName,
    /// The socket of the QEMU it is about.
    pub socket: SocketId,
    /// That QEMU's process, when known (a newer one may get the old
    /// socket's inode number; never its pid and start time).
    pub qemu: Option<Qemu>,
    pub verdict: Verdict,
    /// The evidence, as the decision line shows it.
    pub grounds: String,
    /// Writes tried and refused so far.
    pub attempts: u32,
    pub wait: Wait,
    /// Its entry in the history.
    pub serial: u64,
    /// Who said beforehand it would stop the QEMU, if anyone did.
    pub intent_by: Option<String>,
}

/// What an unwritten verdict waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Nothing: a write is on its way.
    Nothing,
    /// Its timer, to try again.
    Timer,
    /// The control directory, to be watched again (its timer also runs,
    /// in case the directory came back without being seen away).
    Dir,
}

/// The verdicts not written yet, at most one per name, and the history of
/// every verdict made (numbered here, so that a verdict's entry is found
/// again after its key is reused). Only [`Verdicts::insert`] and
/// [`Verdicts::remove`] touch both the slab and the name index.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    pending: Slab<PendingVerdict>,
    by_name: HashMap<InstanceName, VerdictKey>,
    /// Past verdicts, for status.
    history: History,
    /// Verdicts made so far (to tell one in the history from another).
    serial: u64,
}

impl Verdicts {
    pub(super) fn get(&self, key: VerdictKey) -> Option<&PendingVerdict> {
        self.pending.get(key.0)
    }

    pub(super) fn get_mut(&mut self, key: VerdictKey) -> Option<&mut PendingVerdict> {
        self.pending.get_mut(key.0)
    }

    /// The unwritten verdict for `name`, with its key.
    pub(super) fn for_name(&self, name: &InstanceName) -> Option<(VerdictKey, &PendingVerdict)> {
        let key = *self.by_name.get(name)?;
        Some((key, self.pending.get(key.0)?))
    }

    /// Keeps a fresh verdict until it is written, numbered, and enters it
    /// in the history as being written. Any verdict for its name was
    /// removed first (mooted).
    pub(super) fn insert(&mut self, decided: Instant, mut pending: PendingVerdict) -> VerdictKey {
        self.serial += 1;
        pending.serial = self.serial;
        self.history.push(PastVerdict {
            name: pending.name.clone(),
            verdict: pending.verdict,
            decided,
            file: FileState::Writing,
            serial: self.serial,
            intent_by: pending.intent_by.clone(),
        });
        let name = pending.name.clone();
        let key = VerdictKey(self.pending.insert(pending));
        self.by_name.insert(name, key);
        key
    }

    /// Forgets an unwritten verdict, and hands it back (its history entry
    /// stays).
    pub(super) fn remove(&mut self, key: VerdictKey) -> Option<PendingVerdict> {
        let v = self.pending.try_remove(key.0)?;
        self.by_name.remove(&v.name);
        Some(v)
    }

    /// Every unwritten verdict.
    pub(super) fn iter(&self) -> impl Iterator<Item = (VerdictKey, &PendingVerdict)> {
        self.pending.iter().map(|(key, v)| (VerdictKey(key), v))
    }

    /// Where verdict `serial`'s file stands now, for the history.
    pub(super) fn set_file(&mut self, serial: u64, file: FileState) {
        self.history.set_file(serial, file);
    }

    pub(super) fn history(&self) -> &History {
        &self.history
    }
}

impl Fleet {
    /// Records a fresh verdict: written at once.
    pub(super) fn decided(
        &mut self,
        now: Instant,
        instance: &Instance,
        qemu: Option<Qemu>,
        verdict: Verdict,
        grounds: String,
        intent: Option<IntentNote>,
    ) {
        // An older QEMU's verdict still unwritten says nothing of this one.
        self.moot(&instance.name);
        // In the journal, durably, before the shutdown file is touched:
        // the record of a stop never misses one Ganeti acted on.
        self.outbox.act(Action::Journal(JournalRecord {
            name: instance.name.clone(),
            qemu,
            at: now,
            what: Recorded::Verdict {
                verdict,
                grounds: grounds.clone(),
                intent: intent.clone(),
            },
        }));
        *self
            .counters
            .verdicts
            .entry(verdict.why().code().as_str())
            .or_default() += 1;
        let key = self.verdicts.insert(
            now,
            PendingVerdict {
                name: instance.name.clone(),
                socket: instance.socket,
                qemu,
                verdict,
                grounds,
                attempts: 0,
                wait: Wait::Nothing,
                serial: 0, // numbered by `insert`
                intent_by: intent.map(|i| i.by),
            },
        );
        self.outbox.record(key);
    }

    /// The write a queued step asks for, if its verdict still stands.
    pub(super) fn record_action(&mut self, key: VerdictKey) -> Option<Action> {
        let v = self.verdicts.get(key)?;
        (v.wait == Wait::Nothing).then(|| Action::Record {
            key,
            name: v.name.clone(),
            verdict: v.verdict,
        })
    }

    /// How a verdict's write went (see [`Fleet::handle_recorded`]).
    pub(super) fn record_answered(
        &mut self,
        now: Instant,
        key: VerdictKey,
        result: Result<Outcome, RecordError>,
    ) {
        let Some(serial) = self.verdicts.get(key).map(|v| v.serial) else {
            return;
        };
        let error = match result {
            Ok(outcome) => {
                self.verdicts.set_file(serial, FileState::Written(outcome));
                let v = self.remove_verdict(key);
                let Some(PendingVerdict {
                    name,
                    verdict,
                    grounds,
                    attempts,
                    qemu,
                    intent_by,
                    ..
                }) = v
                else {
                    return;
                };
                // Written: its hook may run (queued after the notice).
                let hook_for = name.clone();
                let notice = match attempts {
                    0 => Notice::Decided {
                        name,
                        verdict,
                        grounds,
                        outcome,
                        intent_by: intent_by.clone(),
                    },
                    n => Notice::RecordedAtLast {
                        name,
                        verdict,
                        outcome,
                        tries: n.saturating_add(1),
                        intent_by: intent_by.clone(),
                    },
                };
                self.outbox.notify(notice);
                return self.verdict_hook(&hook_for, verdict, qemu, intent_by);
            }
            Err(error) => error,
        };
        let again = error.mendable();
        self.counters.write_errors += 1;
        let file = if again {
            FileState::Waiting(error)
        } else {
            FileState::Unwritable(error)
        };
        self.verdicts.set_file(serial, file);
        let Some(v) = self.verdicts.get(key) else {
            return;
        };
        let (name, verdict, attempts) = (v.name.clone(), v.verdict, v.attempts);
        if attempts == 0 {
            let grounds = v.grounds.clone();
            self.outbox.notify(Notice::Unrecorded {
                name,
                verdict,
                grounds,
                error,
                again,
            });
        } else if again {
            self.outbox.notify(Notice::StillUnrecorded {
                name,
                verdict,
                error,
            });
        } else {
            self.outbox.notify(Notice::Unrecordable {
                name,
                verdict,
                error,
            });
        }
        if !again {
            self.remove_verdict(key);
            return;
        }
        let Some(v) = self.verdicts.get_mut(key) else {
            return;
        };
        let delay = super::timers::RECORD.delay(v.attempts);
        v.attempts = v.attempts.saturating_add(1);
        v.wait = match error {
            RecordError::DirAway => Wait::Dir,
            _ => Wait::Timer,
        };
        self.timers.set(Timer::Record(key), now + delay);
    }

    /// A verdict's timer is due: look whether a newer QEMU took the name,
    /// then write. One waiting for the directory waits on while it is away.
    pub(super) fn retry_record(&mut self, key: VerdictKey) {
        let reach = self.directory.reach();
        let Some(v) = self.verdicts.get_mut(key) else {
            return;
        };
        if v.wait == Wait::Dir && reach == Reach::Away {
            return;
        }
        v.wait = Wait::Nothing;
        let name = v.name.clone();
        self.outbox.act(Action::Look {
            name,
            purpose: Purpose::Verdict(key),
        });
    }

    /// The control directory is watched again: the verdicts waiting for it
    /// are tried now.
    pub(super) fn retry_records_waiting_for_dir(&mut self) {
        let waiting: Vec<VerdictKey> = self
            .verdicts
            .iter()
            .filter(|(_, v)| v.wait == Wait::Dir)
            .map(|(key, _)| key)
            .collect();
        for key in waiting {
            self.timers.cancel(Timer::Record(key));
            self.retry_record(key);
        }
    }

    /// What stands at the name of a verdict about to be written again.
    pub(super) fn verdict_looked(&mut self, key: VerdictKey, look: Look) {
        let Some(v) = self.verdicts.get(key) else {
            return;
        };
        // A new QEMU's socket under the name (one not seen created yet,
        // while a stalled watcher rescans) makes the verdict moot.
        if matches!(look, Look::Socket { id, .. } if id != v.socket) {
            let name = v.name.clone();
            return self.moot(&name);
        }
        self.outbox.record(key);
    }

    /// The unwritten verdict for `name`, with its QEMU's socket.
    pub(super) fn verdict_for(&self, name: &InstanceName) -> Option<(VerdictKey, SocketId)> {
        let (key, v) = self.verdicts.for_name(name)?;
        Some((key, v.socket))
    }

    /// The QEMU process an unwritten verdict for `name` is about.
    pub(super) fn verdict_qemu(&self, name: &InstanceName) -> Option<Qemu> {
        self.verdicts.for_name(name)?.1.qemu
    }

    /// Drops the unwritten verdict for `name`: a new QEMU of that name
    /// started, and the old verdict would mislead about it.
    pub(super) fn moot(&mut self, name: &InstanceName) {
        let Some((key, _)) = self.verdicts.for_name(name) else {
            return;
        };
        if let Some(v) = self.remove_verdict(key) {
            self.verdicts.set_file(v.serial, FileState::Moot);
            self.outbox.notify(Notice::Moot {
                name: v.name,
                verdict: v.verdict,
            });
        }
    }

    fn remove_verdict(&mut self, key: VerdictKey) -> Option<PendingVerdict> {
        let v = self.verdicts.remove(key)?;
        self.timers.cancel(Timer::Record(key));
        Some(v)
    }
}
