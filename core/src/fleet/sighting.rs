//! Entries in the control directory: which are monitored, which are
//! ignored and told of once, and who takes a name when its QEMU ends.
//!
//! [`Directory`] is the fleet's part that holds what is known of the
//! directory beyond the instances tracked: whether it is reached and
//! followed, the entries not monitored (ignored, given up on, waiting for
//! a descriptor, not lookable), and the descriptor shortage.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use log::debug;

use super::instance::{Instance, Succession};
use super::timers::{self, Timer, TimerTable};
use super::{
    Action, Change, Fleet, Follow, Ignored, InstanceKey, Look, Notice, Purpose, Reach,
    out_of_descriptors,
};
use crate::name::InstanceName;
use crate::saved::SocketId;

/// A descriptor shortage, told once when it starts and once when over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shortage {
    None,
    Ongoing,
}

/// The control directory as the fleet knows it, beyond the instances it
/// tracks. See the module documentation.
#[derive(Debug)]
pub(super) struct Directory {
    /// Who may own a socket kvmd connects to. Anyone else's socket could
    /// make kvmd write a verdict that user chose.
    trusted_owners: Vec<u32>,
    reach: Reach,
    /// Crawls in a row while inotify cannot follow (for the back-off).
    rescans: u32,
    /// Entries not monitored on purpose (no socket, an untrusted owner, a
    /// name too long), so each file is told of once.
    ignored: HashMap<InstanceName, SocketId>,
    /// Sockets given up on (nobody listened), so a rescan does not try the
    /// very same file again; a creation under the name clears it.
    given_up: HashMap<InstanceName, SocketId>,
    /// Names to look at again once a descriptor is free.
    deferred: Vec<(InstanceName, Purpose)>,
    /// Names whose entry could not be looked at (an I/O error, the
    /// directory failing to open): their state files are not swept.
    /// Bounded by the names in the directory; a deletion clears one.
    unlooked: HashSet<InstanceName>,
    shortage: Shortage,
}

impl Directory {
    pub(super) fn new(trusted_owners: Vec<u32>) -> Directory {
        Directory {
            trusted_owners,
            reach: Reach::Away,
            rescans: 0,
            ignored: HashMap::new(),
            given_up: HashMap::new(),
            deferred: Vec::new(),
            unlooked: HashSet::new(),
            shortage: Shortage::None,
        }
    }

    pub(super) fn reach(&self) -> Reach {
        self.reach
    }

    /// The watcher's state after a crawl or an inotify read: crawls again
    /// on a backing-off timer while inotify cannot follow. Says whether
    /// the directory came back.
    pub(super) fn watched(
        &mut self,
        now: Instant,
        reach: Reach,
        follow: Follow,
        timers: &mut TimerTable,
    ) -> bool {
        let was = std::mem::replace(&mut self.reach, reach);
        match follow {
            Follow::Events => {
                self.rescans = 0;
                timers.cancel(Timer::Rescan);
            }
            Follow::Rescans if !timers.is_set(Timer::Rescan) => {
                let delay = timers::RESCAN.delay(self.rescans);
                self.rescans = self.rescans.saturating_add(1);
                timers.set(Timer::Rescan, now + delay);
            }
            Follow::Rescans => {}
        }
        was == Reach::Away && reach == Reach::Reached
    }

    /// Whether what stands at `name` is unknown for now: the directory is
    /// away, or the name waits for a descriptor or could not be looked at.
    pub(super) fn unknown(&self, name: &InstanceName) -> bool {
        self.reach == Reach::Away
            || self.deferred.iter().any(|(n, _)| n == name)
            || self.unlooked.contains(name)
    }

    /// The entry at `name` went: what was known of it is moot.
    pub(super) fn vanished(&mut self, name: &InstanceName) {
        self.ignored.remove(name);
        self.given_up.remove(name);
        self.unlooked.remove(name);
    }

    /// A new entry at `name`: it is worth a look, whatever stood there.
    pub(super) fn created(&mut self, name: &InstanceName) {
        self.ignored.remove(name);
        self.given_up.remove(name);
    }

    /// `name`'s entry was looked at.
    pub(super) fn looked(&mut self, name: &InstanceName) {
        self.unlooked.remove(name);
    }

    /// `name`'s entry could not be looked at.
    pub(super) fn not_looked(&mut self, name: InstanceName) {
        self.unlooked.insert(name);
    }

    pub(super) fn trusts(&self, owner: u32) -> bool {
        self.trusted_owners.contains(&owner)
    }

    /// Notes the file `id` at `name` as not monitored; whether it is news
    /// (another file than the one noted last).
    pub(super) fn ignore(&mut self, name: InstanceName, id: SocketId) -> bool {
        self.ignored.insert(name, id) != Some(id)
    }

    /// Whether the socket `id` at `name` was given up on.
    pub(super) fn gave_up_on(&self, name: &InstanceName, id: SocketId) -> bool {
        self.given_up.get(name) == Some(&id)
    }

    /// Gives up on the socket `id` at `name`: a rescan does not try it
    /// again.
    pub(super) fn give_up(&mut self, name: InstanceName, id: SocketId) {
        self.given_up.insert(name, id);
    }

    /// Another file stands at `name`: the one given up on is gone.
    pub(super) fn forget_given_up(&mut self, name: &InstanceName) {
        self.given_up.remove(name);
    }

    pub(super) fn given_up(&self) -> impl Iterator<Item = &InstanceName> {
        self.given_up.keys()
    }

    /// Keeps a name to look at again once a descriptor is free.
    pub(super) fn defer(
        &mut self,
        now: Instant,
        name: InstanceName,
        purpose: Purpose,
        timers: &mut TimerTable,
    ) {
        self.deferred.push((name, purpose));
        if !timers.is_set(Timer::Descriptors) {
            timers.set(Timer::Descriptors, now + timers::DESCRIPTOR_WAIT);
        }
    }

    /// The names deferred so far, to look at now.
    pub(super) fn take_deferred(&mut self) -> Vec<(InstanceName, Purpose)> {
        std::mem::take(&mut self.deferred)
    }

    pub(super) fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// Starts a descriptor shortage; whether one was not going on already.
    pub(super) fn start_shortage(&mut self) -> bool {
        let new = self.shortage == Shortage::None;
        self.shortage = Shortage::Ongoing;
        new
    }

    /// Whether a shortage goes on with no name waiting for a descriptor
    /// (it may be over, if no connect waits for one either).
    pub(super) fn shortage_may_be_over(&self) -> bool {
        self.shortage == Shortage::Ongoing && self.deferred.is_empty()
    }

    pub(super) fn end_shortage(&mut self) {
        self.shortage = Shortage::None;
    }

    pub(super) fn short_of_descriptors(&self) -> bool {
        self.shortage == Shortage::Ongoing
    }
}

impl Fleet {
    /// One entry the watcher reported (see [`Fleet::handle_change`]).
    pub(super) fn entry_changed(&mut self, now: Instant, change: Change) {
        let name = match change {
            Change::Vanished(name) => {
                self.directory.vanished(&name);
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
                self.directory.created(&name);
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

    /// What stands at a name (see [`Fleet::handle_looked`]).
    pub(super) fn look_answered(
        &mut self,
        now: Instant,
        name: InstanceName,
        purpose: Purpose,
        look: Look,
    ) {
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
            self.directory.looked(&name);
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
            Look::Socket { id, owner } if self.directory.trusts(owner) => {
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
                self.directory.not_looked(name.clone());
                self.outbox.notify(Notice::CannotLook { name, errno });
            }
            Look::DirFailed(errno) if out_of_descriptors(errno) => {
                self.short_of_descriptors(errno);
                self.directory.defer(now, name, purpose, &mut self.timers);
            }
            // Gone or replaced: the next crawl's recap finds it.
            Look::DirAway | Look::DirFailed(_) => {
                self.directory.not_looked(name);
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
        if self.directory.ignore(name.clone(), id) {
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
        if self.directory.gave_up_on(&name, id) {
            debug!("{name}: given up on this socket already");
            return;
        }
        // Another file stands at the name now: the one given up on is gone,
        // and a file with its inode number later is a new one.
        self.directory.forget_given_up(&name);
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
