//! Entries in the control directory: which are monitored, which are
//! ignored and told of once, and who takes a name when its QEMU ends.

use std::time::Instant;

use log::debug;

use super::instance::{Instance, Succession};
use super::{
    Action, Change, Fleet, Ignored, InstanceKey, Look, Notice, Purpose, out_of_descriptors,
};
use crate::name::InstanceName;
use crate::saved::SocketId;

impl Fleet {
    /// One entry the watcher reported.
    pub fn handle_change(&mut self, now: Instant, change: Change) {
        self.tick(now);
        let name = match change {
            Change::Vanished(name) => {
                self.ignored.remove(&name);
                self.given_up.remove(&name);
                self.unlooked.remove(&name);
                if let Some(key) = self.instances.key(&name)
                    && let Some(instance) = self.instances.get_mut(key)
                {
                    instance.unlinked();
                }
                self.settle_awaiting_intent(now, &name);
                return;
            }
            Change::Created(name) => {
                // A new entry: whatever was known of the name is old news,
                // and a verdict still unwritten would mislead about it.
                self.ignored.remove(&name);
                self.given_up.remove(&name);
                self.moot(&name);
                if let Some(key) = self.instances.key(&name) {
                    debug!("{name}: already monitored");
                    // A new QEMU bound the name before the old one's
                    // hang-up was read; the hang-up picks it up.
                    if let Some(instance) = self.instances.get_mut(key) {
                        instance.created_again();
                    }
                    return;
                }
                name
            }
            Change::Appeared(name) => {
                if self.instances.contains(&name) {
                    debug!("{name}: already monitored");
                    self.outbox.act(Action::Look {
                        name,
                        purpose: Purpose::Recheck,
                    });
                    return;
                }
                name
            }
        };
        self.outbox.act(Action::Look {
            name,
            purpose: Purpose::Attach,
        });
    }

    /// What stands at a name, as asked by an [`Action::Look`].
    pub fn handle_looked(
        &mut self,
        now: Instant,
        name: InstanceName,
        purpose: Purpose,
        look: Look,
    ) {
        self.tick(now);
        let succession = match purpose {
            Purpose::Verdict(key) => return self.verdict_looked(key, look),
            Purpose::Recheck => {
                if let Look::Socket { id, .. } = look
                    && let Some(key) = self.instances.key(&name)
                    && let Some(instance) = self.instances.get_mut(key)
                    && instance.socket != id
                {
                    debug!("{name}: another socket stands at its name; renewed");
                    instance.succession = Succession::Renewed;
                }
                return;
            }
            Purpose::Attach => Succession::Current,
            Purpose::Successor { ended, renewed } => {
                let replaced = matches!(look, Look::Socket { id, .. } if id != ended);
                if !renewed && !replaced && !matches!(look, Look::DirFailed(_)) {
                    return; // the ended QEMU's own socket, or nothing
                }
                // Unless a creation under the name was read already (and
                // marked the old one renewed), the new socket's is queued.
                if renewed {
                    Succession::Current
                } else {
                    Succession::CreationPending
                }
            }
        };
        if matches!(
            look,
            Look::Socket { .. } | Look::Other { .. } | Look::Absent
        ) {
            self.unlooked.remove(&name);
        }
        // Only at start-up, for a kept intent: the name, once looked at.
        let settled = matches!(
            look,
            Look::Socket { .. } | Look::Other { .. } | Look::Absent
        );
        let awaited = (!self.awaiting_intents.is_empty()
            && self.awaiting_intents.contains_key(&name))
        .then(|| name.clone());
        match look {
            Look::Socket { id, owner } if self.trusted_owners.contains(&owner) => {
                // A socket created again under the name while the old one
                // lived is a new QEMU even with the old inode number (ext4
                // reuses them): an unwritten verdict is the old one's.
                if matches!(purpose, Purpose::Successor { renewed: true, .. }) {
                    self.moot(&name);
                }
                self.attach(now, name, id, succession);
            }
            Look::Socket { id, owner } => self.ignore(name, id, Ignored::Untrusted { owner }),
            Look::Other { id } => self.ignore(name, id, Ignored::NotASocket),
            Look::Absent => debug!("{name}: gone before it could be monitored"),
            Look::Failed(errno) => {
                // What stands there is unknown: its state file stays.
                self.unlooked.insert(name.clone());
                self.outbox.notify(Notice::CannotLook { name, errno });
            }
            Look::DirFailed(errno) if out_of_descriptors(errno) => {
                self.short_of_descriptors(errno);
                self.defer(now, name, purpose);
            }
            // Gone or replaced: the next crawl's recap finds it.
            Look::DirAway | Look::DirFailed(_) => {
                self.unlooked.insert(name);
            }
        }
        // A definite answer settles it; an error leaves it waiting (its
        // timer drops it at the end of its window).
        if let Some(name) = awaited
            && settled
        {
            self.settle_awaiting_intent(now, &name);
        }
    }

    /// Tells of an entry that is not monitored, once per file.
    fn ignore(&mut self, name: InstanceName, id: SocketId, why: Ignored) {
        if self.ignored.insert(name.clone(), id) != Some(id) {
            self.outbox.notify(Notice::Ignored { name, why });
        }
    }

    /// Starts monitoring the socket `id` at `name`, unless it is monitored
    /// already, was given up on, or its verdict could never be written.
    fn attach(&mut self, now: Instant, name: InstanceName, id: SocketId, succession: Succession) {
        if self.instances.contains(&name) {
            debug!("{name}: already monitored");
            return;
        }
        if self.given_up.get(&name) == Some(&id) {
            debug!("{name}: given up on this socket already");
            return;
        }
        // Another file stands at the name now: the one given up on is gone,
        // and a file with its inode number later is a new one.
        self.given_up.remove(&name);
        if !name.fits() {
            return self.ignore(name, id, Ignored::NameTooLong);
        }
        if self
            .verdict_for(&name)
            .is_some_and(|(_, socket)| socket != id)
        {
            self.moot(&name);
        }
        let key = self
            .instances
            .insert(Instance::new(name, id, succession, now));
        self.outbox.connect(key);
        self.outbox.changed();
    }

    /// Removes an instance from every table. The caller says what follows.
    pub(super) fn forget(&mut self, key: InstanceKey) -> Option<Instance> {
        let instance = self.instances.remove(key)?;
        self.outbox.changed();
        self.timers.cancel(super::Timer::Connect(key));
        self.timers.cancel(super::Timer::Intent(key));
        self.timers.cancel(super::Timer::Press(key));
        Some(instance)
    }

    /// Looks for the socket that took the name of an ended instance: one
    /// created while it lived, or one that is not its socket.
    pub(super) fn look_for_successor(&mut self, ended: &Instance) {
        self.outbox.act(Action::Look {
            name: ended.name.clone(),
            purpose: Purpose::Successor {
                ended: ended.socket,
                renewed: ended.succession == Succession::Renewed,
            },
        });
    }
}
