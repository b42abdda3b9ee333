//! One instance: the socket it is monitored through, and how far that
//! got; and [`Instances`], the fleet's part that holds them all, one per
//! name.

use std::collections::HashMap;
use std::time::Instant;

use slab::Slab;

use super::InstanceKey;

use crate::decision::{Carried, Evidence};
use crate::name::InstanceName;
use crate::qmp::{self, RunState, Version};
use crate::saved::{Qemu, SocketId};

/// Where a monitored name stands in the succession of QEMUs using it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Succession {
    /// Nothing is known of a newer socket.
    Current,
    /// Attached at a predecessor's hang-up, before inotify told of this
    /// socket's creation: that event is still to come, and is not news.
    CreationPending,
    /// Its socket file was deleted (QEMU exiting unlinks it): any creation
    /// under the name from now on is a newer QEMU's, never its own (whose
    /// creation event, pending or lost while inotify could not follow, can
    /// no longer come after its deletion).
    Unlinked,
    /// A socket of this name was created while this one was monitored: at
    /// its end, whatever stands at the name is a newer QEMU's, even with
    /// this socket's inode number.
    Renewed,
}

/// What a connect waits for before it is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// Nothing: the first try is on its way.
    Nothing,
    /// QEMU binds its socket a moment before it listens.
    Listener,
    /// No descriptor was free.
    Descriptor,
}

/// How far monitoring an instance got (for the caller's reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not connected yet, waiting for what it names.
    Connecting(WaitFor),
    /// Connected; greeting, capabilities and status are being exchanged.
    Negotiating,
    /// Following the guest's events.
    Monitoring,
}

#[derive(Debug)]
pub(super) struct Instance {
    pub name: InstanceName,
    /// The socket file this instance was attached for: one recreated under
    /// the same name belongs to a new QEMU.
    pub socket: SocketId,
    pub succession: Succession,
    /// What the state directory holds for it (default: no file).
    pub saved: Carried,
    pub link: Link,
    /// When it entered its current phase.
    pub since: Instant,
    /// What the host said of its stop beforehand (`kvmd expect-stop`).
    pub intent: Option<super::Intent>,
}

#[derive(Debug)]
pub(super) enum Link {
    Connecting {
        /// Connects tried so far (for the back-off).
        attempts: u32,
        /// The first try: after [`super::timers::CONNECT_FOR`] without a
        /// listener the socket is given up.
        since: Instant,
        waits_for: WaitFor,
    },
    Connected(Box<Conversation>),
}

/// A connection's protocol state and what it saw.
#[derive(Debug)]
pub(super) struct Conversation {
    pub qmp: qmp::Connection,
    pub evidence: Evidence,
    /// The QEMU process behind the socket (binds the state file to it).
    pub qemu: Option<Qemu>,
    /// Messages that could not be used: the first is told as a warning,
    /// the rest at debug, and the count goes with the decision.
    pub problems: u32,
    /// Power-button presses QEMU refused (`kvmd powerdown-all`): a
    /// guest's answer, not an unusable message. The first is told.
    pub presses_refused: u32,
    pub ready: Readiness,
    /// From the greeting.
    pub version: Option<Version>,
    /// The guest's state: `query-status`'s answer, then what STOP, RESUME
    /// and SHUTDOWN say.
    pub state: Option<RunState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Readiness {
    Negotiating,
    Ready,
}

impl Instance {
    pub(crate) fn new(
        name: InstanceName,
        socket: SocketId,
        succession: Succession,
        now: Instant,
    ) -> Self {
        Instance {
            name,
            socket,
            succession,
            saved: Carried::default(),
            link: Link::Connecting {
                attempts: 0,
                since: now,
                waits_for: WaitFor::Nothing,
            },
            since: now,
            intent: None,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        match &self.link {
            Link::Connecting { waits_for, .. } => Phase::Connecting(*waits_for),
            Link::Connected(c) if c.ready == Readiness::Ready => Phase::Monitoring,
            Link::Connected(_) => Phase::Negotiating,
        }
    }

    /// A creation under this name was reported while it is monitored.
    pub(crate) fn created_again(&mut self) {
        self.succession = match self.succession {
            // Its own creation, read after it was attached.
            Succession::CreationPending => Succession::Current,
            Succession::Current | Succession::Unlinked | Succession::Renewed => Succession::Renewed,
        };
    }

    /// The name's socket file was deleted while this one is monitored.
    pub(crate) fn unlinked(&mut self) {
        if self.succession != Succession::Renewed {
            self.succession = Succession::Unlinked;
        }
    }
}

/// The instances tracked (monitored, or waiting to be), keyed for the
/// event loop, and exactly one per name: so one monitor per socket file.
/// Its invariant, kept by [`Instances::insert`] and [`Instances::remove`]
/// alone: a name maps to a key exactly while that key holds an instance
/// of that name.
#[derive(Debug, Default)]
pub(super) struct Instances {
    slab: Slab<Instance>,
    by_name: HashMap<InstanceName, InstanceKey>,
    /// Connections that read something since the last drain: their
    /// evidence is kept (if it changed) once per drain, not per read.
    read: Vec<InstanceKey>,
}

impl Instances {
    pub(super) fn get(&self, key: InstanceKey) -> Option<&Instance> {
        self.slab.get(key.0)
    }

    pub(super) fn get_mut(&mut self, key: InstanceKey) -> Option<&mut Instance> {
        self.slab.get_mut(key.0)
    }

    /// The key of the instance tracked for `name`.
    pub(super) fn key(&self, name: &InstanceName) -> Option<InstanceKey> {
        self.by_name.get(name).copied()
    }

    /// Whether an instance is tracked for `name`.
    pub(super) fn contains(&self, name: &InstanceName) -> bool {
        self.by_name.contains_key(name)
    }

    /// Tracks `instance`; its name must not be tracked already (the
    /// caller asked [`Instances::contains`]).
    pub(super) fn insert(&mut self, instance: Instance) -> InstanceKey {
        let name = instance.name.clone();
        let key = InstanceKey(self.slab.insert(instance));
        self.by_name.insert(name, key);
        key
    }

    /// Stops tracking `key`'s instance, and hands it back.
    pub(super) fn remove(&mut self, key: InstanceKey) -> Option<Instance> {
        let instance = self.slab.try_remove(key.0)?;
        self.by_name.remove(&instance.name);
        Some(instance)
    }

    /// Every instance, in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (InstanceKey, &Instance)> {
        self.slab.iter().map(|(key, i)| (InstanceKey(key), i))
    }

    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// `key`'s connection read something this turn.
    pub(super) fn read(&mut self, key: InstanceKey) {
        if !self.read.contains(&key) {
            self.read.push(key);
        }
    }

    /// The connections that read something since the last call.
    pub(super) fn take_read(&mut self) -> Vec<InstanceKey> {
        std::mem::take(&mut self.read)
    }
}
