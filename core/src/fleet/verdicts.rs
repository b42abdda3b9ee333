//! Verdicts on their way to disk: written at once when the file system
//! takes them, tried again while it cannot (full, read-only, the control
//! directory away), never dropped unsaid, and dropped only when a newer
//! QEMU of the same name makes them moot.

use std::time::Instant;

use super::instance::Instance;
use super::view::{FileState, PastVerdict};
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
        self.serial += 1;
        let serial = self.serial;
        *self
            .counters
            .verdicts
            .entry(verdict.why().code().as_str())
            .or_default() += 1;
        self.history.push(PastVerdict {
            name: instance.name.clone(),
            verdict,
            decided: now,
            file: FileState::Writing,
            serial,
            intent_by: intent.as_ref().map(|i| i.by.clone()),
        });
        let key = VerdictKey(self.verdicts.insert(PendingVerdict {
            name: instance.name.clone(),
            socket: instance.socket,
            qemu,
            verdict,
            grounds,
            attempts: 0,
            wait: Wait::Nothing,
            serial,
            intent_by: intent.map(|i| i.by),
        }));
        self.verdict_by_name.insert(instance.name.clone(), key);
        self.outbox.record(key);
    }

    /// The write a queued step asks for, if its verdict still stands.
    pub(super) fn record_action(&mut self, key: VerdictKey) -> Option<Action> {
        let v = self.verdicts.get(key.0)?;
        (v.wait == Wait::Nothing).then(|| Action::Record {
            key,
            name: v.name.clone(),
            verdict: v.verdict,
        })
    }

    /// How an [`Action::Record`] went.
    pub fn handle_recorded(
        &mut self,
        now: Instant,
        key: VerdictKey,
        result: Result<Outcome, RecordError>,
    ) {
        self.tick(now);
        let Some(v) = self.verdicts.get_mut(key.0) else {
            return;
        };
        let error = match result {
            Ok(outcome) => {
                self.history.set_file(v.serial, FileState::Written(outcome));
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
        self.history.set_file(v.serial, file);
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
        let Some(v) = self.verdicts.get_mut(key.0) else {
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
        let reach = self.reach;
        let Some(v) = self.verdicts.get_mut(key.0) else {
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
            .map(|(key, _)| VerdictKey(key))
            .collect();
        for key in waiting {
            self.timers.cancel(Timer::Record(key));
            self.retry_record(key);
        }
    }

    /// What stands at the name of a verdict about to be written again.
    pub(super) fn verdict_looked(&mut self, key: VerdictKey, look: Look) {
        let Some(v) = self.verdicts.get(key.0) else {
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
        let key = *self.verdict_by_name.get(name)?;
        Some((key, self.verdicts.get(key.0)?.socket))
    }

    /// The QEMU process an unwritten verdict for `name` is about.
    pub(super) fn verdict_qemu(&self, name: &InstanceName) -> Option<Qemu> {
        let key = self.verdict_by_name.get(name)?;
        self.verdicts.get(key.0)?.qemu
    }

    /// Drops the unwritten verdict for `name`: a new QEMU of that name
    /// started, and the old verdict would mislead about it.
    pub(super) fn moot(&mut self, name: &InstanceName) {
        let Some(&key) = self.verdict_by_name.get(name) else {
            return;
        };
        if let Some(v) = self.remove_verdict(key) {
            self.history.set_file(v.serial, FileState::Moot);
            self.outbox.notify(Notice::Moot {
                name: v.name,
                verdict: v.verdict,
            });
        }
    }

    fn remove_verdict(&mut self, key: VerdictKey) -> Option<PendingVerdict> {
        let v = self.verdicts.try_remove(key.0)?;
        self.verdict_by_name.remove(&v.name);
        self.timers.cancel(Timer::Record(key));
        Some(v)
    }
}
