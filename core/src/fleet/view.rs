//! Read-only views of the fleet, for the operator: what `kvmd status`,
//! `kvmd events`, the metrics file and systemd's status line show. Views
//! borrow the fleet's own state; nothing here changes it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::instance::{Instance, Link};
use super::{Fleet, Phase, RecordError};
use crate::decision::{Evidence, Verdict};
use crate::fleet::Outcome;
use crate::name::InstanceName;
use crate::qmp::{RunState, Version};
use crate::saved::{Qemu, SocketId};

/// How many past verdicts are kept for `kvmd status`, so "why is vm7
/// down?" has an answer after its QEMU is gone, at a bounded cost.
pub const HISTORY: usize = 1000;

/// One tracked instance, as status shows it.
#[derive(Debug)]
pub struct InstanceView<'a> {
    /// The instance.
    pub name: &'a InstanceName,
    /// How far monitoring got.
    pub phase: Phase,
    /// When it entered this phase.
    pub since: Instant,
    /// The socket it is monitored on.
    pub socket: SocketId,
    /// The QEMU behind it, when known.
    pub qemu: Option<Qemu>,
    /// QEMU's version, once its greeting came.
    pub version: Option<Version>,
    /// The guest's state: from `query-status`, then from STOP, RESUME and
    /// SHUTDOWN.
    pub state: Option<RunState>,
    /// What the connection saw so far (none before it connected).
    pub evidence: Option<&'a Evidence>,
    /// Messages that could not be used.
    pub malformed: u32,
    /// What the host said of its stop beforehand.
    pub intent: Option<&'a super::Intent>,
}

/// Where a verdict's shutdown file stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    /// On its way (the write is being made).
    Writing,
    /// Written; what the write did.
    Written(Outcome),
    /// Refused; tried again until it can be written.
    Waiting(RecordError),
    /// Refused for a reason no retry mends.
    Unwritable(RecordError),
    /// Dropped: a newer QEMU of the name started first.
    Moot,
}

/// A verdict, kept after its instance is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastVerdict {
    /// The instance.
    pub name: InstanceName,
    /// The verdict.
    pub verdict: Verdict,
    /// When it was decided.
    pub decided: Instant,
    /// Where its shutdown file stands.
    pub file: FileState,
    /// Which verdict this is, to find it again (keys are reused).
    pub(super) serial: u64,
    /// Who said beforehand it would stop the QEMU (a `host-intent`
    /// verdict).
    pub intent_by: Option<String>,
}

/// Running totals since the daemon started (for the metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Verdicts by reason code (the code says user or not).
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Shutdown-file writes the file system refused.
    pub write_errors: u64,
    /// Messages from QMP peers that could not be used.
    pub malformed: u64,
    /// Sockets given up on (nobody listened).
    pub given_up: u64,
    /// Descriptor-shortage episodes.
    pub descriptor_shortages: u64,
    /// GUEST_PANICKED events.
    pub guest_panics: u64,
    /// GUEST_CRASHLOADED events.
    pub crash_loads: u64,
}

/// The past verdicts, newest last, bounded by [`HISTORY`].
#[derive(Debug, Default)]
pub(super) struct History(VecDeque<PastVerdict>);

impl History {
    pub(crate) fn push(&mut self, past: PastVerdict) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(past);
    }

    /// Updates the file state of verdict `serial`, if still kept.
    pub(crate) fn set_file(&mut self, serial: u64, file: FileState) {
        if let Some(past) = self.0.iter_mut().rev().find(|p| p.serial == serial) {
            past.file = file;
        }
    }
}

impl Instance {
    pub(super) fn view(&self) -> InstanceView<'_> {
        let (qemu, version, state, evidence, malformed) = match &self.link {
            Link::Connecting { .. } => (None, None, None, None, 0),
            Link::Connected(c) => (c.qemu, c.version, c.state, Some(&c.evidence), c.problems),
        };
        InstanceView {
            name: &self.name,
            phase: self.phase(),
            since: self.since,
            socket: self.socket,
            qemu,
            version,
            state,
            evidence,
            malformed,
            intent: self.intent.as_ref(),
        }
    }
}

impl Fleet {
    /// Every tracked instance, in no particular order.
    pub fn views(&self) -> impl Iterator<Item = InstanceView<'_>> {
        self.instances.iter().map(|(_, i)| i.view())
    }

    /// Tracked instances from slab position `from` on, with their
    /// positions (to go on from there later: a status is made in pieces).
    pub fn views_from(&self, from: usize) -> impl Iterator<Item = (usize, InstanceView<'_>)> {
        self.instances
            .iter()
            .skip_while(move |(key, _)| key.0 < from)
            .map(|(key, i)| (key.0, i.view()))
    }

    /// The instance tracked for `name`, if any.
    pub fn view(&self, name: &InstanceName) -> Option<InstanceView<'_>> {
        let key = self.instances.key(name)?;
        Some(self.instances.get(key)?.view())
    }

    /// Past verdicts, oldest first (at most [`HISTORY`]).
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &PastVerdict> {
        self.verdicts.history().0.iter()
    }

    /// The latest verdict for `name`, if one is kept.
    pub fn last_verdict(&self, name: &InstanceName) -> Option<&PastVerdict> {
        self.verdicts
            .history()
            .0
            .iter()
            .rev()
            .find(|p| &p.name == name)
    }

    /// Names given up on (nobody listened on their socket).
    pub fn given_up(&self) -> impl Iterator<Item = &InstanceName> {
        self.directory.given_up()
    }

    /// Totals since kvmd started (for metrics).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether a descriptor shortage is going on.
    pub fn short_of_descriptors_now(&self) -> bool {
        self.directory.short_of_descriptors()
    }
}
