//! The model world around the fleet (module documentation, "The model
//! world"): the control directory and its entries, the connections between
//! the daemon and QEMU, inotify and the watcher, and the answers the world
//! gives the fleet's questions (`Look`, `Connect`, `Record`). QEMU itself
//! is in `qemu`, the faults in `faults`, the state directory is
//! `Simulation::state` and `Simulation::intent_files`.

use super::*;

pub(super) type Name = InstanceName;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// A socket; `qemu` is the process that bound it, if any ever did.
    Socket {
        owner: u32,
        qemu: Option<usize>,
    },
    File,
    Dir,
    Fifo,
    Symlink,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) ino: u64,
    pub(super) kind: EntryKind,
    /// The step it was created in (moves keep it).
    pub(super) born: u64,
}

impl Entry {
    pub(super) fn id(&self) -> SocketId {
        SocketId {
            dev: DEV,
            ino: self.ino,
        }
    }
}

/// What stands at `<name>.shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShutdownEntry {
    File,
    Symlink,
    EmptyDir,
    FullDir,
}

/// What invariant 6 expects at `<name>.shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ExpectedFile {
    Present(bool),
    /// An operator put something there, or a non-mendable error left it.
    Unknown,
}

pub(super) struct DirModel {
    pub(super) id: u64,
    pub(super) kvmd: BTreeMap<Name, Entry>,
    pub(super) shutdown: BTreeMap<Name, ShutdownEntry>,
    /// Missing: never written, so absent.
    pub(super) expect: BTreeMap<Name, ExpectedFile>,
}

impl DirModel {
    pub(super) fn new(id: u64) -> DirModel {
        DirModel {
            id,
            kvmd: BTreeMap::new(),
            shutdown: BTreeMap::new(),
            expect: BTreeMap::new(),
        }
    }
}

/// A line's JSON ends at `json_end`, its newline at `line_end`; reading it
/// gives the fleet `event` (none: it is the reply to a power button press).
#[derive(Clone, Copy, Debug)]
pub(super) struct Mark {
    pub(super) json_end: usize,
    pub(super) line_end: usize,
    pub(super) event: Option<Event>,
}

pub(super) struct Connection {
    pub(super) qemu: usize,
    pub(super) name: Name,
    pub(super) socket: SocketId,
    /// QEMU → daemon, `read` bytes of it handed to the fleet.
    pub(super) out: Vec<u8>,
    pub(super) read: usize,
    pub(super) marks: VecDeque<Mark>,
    /// Commands the daemon sent, not yet answered.
    pub(super) cmds: VecDeque<Command>,
    /// Power button presses sent whose replies the daemon has not read
    /// (I3: at most `MAX_ASKED`).
    pub(super) asked: usize,
    pub(super) greet_pending: bool,
    /// QEMU's side: it answered `qmp_capabilities`, events flow.
    pub(super) negotiated: bool,
    /// QEMU's side is closed (it exited).
    pub(super) closed: bool,
    /// Its hang-up was handed to the fleet: a `Close` must follow.
    pub(super) hung_up: bool,
    /// Since when it has had something to read (bytes or end-of-file).
    pub(super) since: Option<Instant>,
}

/// One inotify event in the model queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum WatcherEvent {
    Entry {
        generation: u64,
        created: bool,
        name: Name,
    },
    /// The path to the control directory changed (moved away or back).
    Path {
        generation: u64,
    },
    Overflow,
}

pub(super) struct WatcherModel {
    /// The directory watched (or, stalled, scanned).
    pub(super) watched: Option<u64>,
    pub(super) stalled: bool,
    /// Watches are replaced at each crawl: events of older ones are
    /// skipped.
    pub(super) generation: u64,
    pub(super) queue: VecDeque<WatcherEvent>,
    /// When the oldest unread event was queued: the kernel wakes the daemon
    /// at once, so a turn reads it within `LATENCY`.
    pub(super) since: Option<Instant>,
}

pub(super) enum DirError {
    Away,
    Failed(Errno),
}

impl Simulation {
    // --- The world answers the fleet's questions ---------------------------------

    /// `CtrlDir::get`: opened once per turn, if the watched directory is
    /// the one at the path.
    pub(super) fn dir_get(&mut self) -> Result<(), DirError> {
        if self.dir_fd_open {
            return Ok(());
        }
        let current = self.dir.as_ref().map(|d| d.id);
        if current.is_none() || self.watcher.watched != current {
            return Err(DirError::Away);
        }
        if self.faults.emfile && self.rng.chance(1, 2) {
            return Err(DirError::Failed(Errno::EMFILE));
        }
        self.dir_fd_open = true;
        Ok(())
    }

    pub(super) fn look_at(&mut self, name: &Name) -> Look {
        match self.dir_get() {
            Err(DirError::Away) => return Look::DirAway,
            Err(DirError::Failed(e)) => return Look::DirFailed(e),
            Ok(()) => {}
        }
        let entry = self.dir.as_ref().and_then(|d| d.kvmd.get(name)).copied();
        if self.faults.look_fail_once {
            self.faults.look_fail_once = false;
            // The fleet tells of it and waits for the next news of the
            // name: whatever stands there now is excused from liveness.
            if let Some(Entry {
                kind: EntryKind::Socket {
                    qemu: Some(seq), ..
                },
                ..
            }) = entry
                && let Some(q) = self.qemus.get_mut(&seq)
            {
                q.excused = Some("its look failed");
            }
            return Look::Failed(Errno::EIO);
        }
        match entry {
            None => Look::Absent,
            Some(e) => match e.kind {
                EntryKind::Socket { owner, .. } => Look::Socket { id: e.id(), owner },
                _ => Look::Other { id: e.id() },
            },
        }
    }

    pub(super) fn connect_to(
        &mut self,
        key: InstanceKey,
        name: &Name,
        socket: SocketId,
    ) -> Result<Connected, ConnectError> {
        match self.dir_get() {
            Err(DirError::Away) => return Err(ConnectError::DirAway),
            Err(DirError::Failed(e)) => return Err(ConnectError::DirFailed(e)),
            Ok(()) => {}
        }
        if self.faults.emfile && self.rng.chance(1, 3) {
            return Err(ConnectError::Open(Errno::EMFILE));
        }
        let entry = self.dir.as_ref().and_then(|d| d.kvmd.get(name)).copied();
        let Some(entry) = entry else {
            return Err(ConnectError::Open(Errno::ENOENT));
        };
        let EntryKind::Socket { qemu, .. } = entry.kind else {
            return Err(ConnectError::NotThisSocket);
        };
        if entry.id() != socket {
            return Err(ConnectError::NotThisSocket);
        }
        if self.faults.emfile && self.rng.chance(1, 3) {
            return Err(ConnectError::Connect(Errno::EMFILE));
        }
        let listening = qemu.filter(|seq| {
            self.qemus
                .get(seq)
                .is_some_and(|q| q.life == Life::Listening)
        });
        let Some(seq) = listening else {
            return Err(ConnectError::Connect(Errno::ECONNREFUSED));
        };
        if self.faults.eagain && self.rng.chance(1, 2) {
            return Err(ConnectError::Connect(Errno::EAGAIN));
        }
        if self.faults.register_once {
            self.faults.register_once = false;
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.excused = Some("its connection could not be polled");
            }
            return Err(ConnectError::Register(Errno::ENOMEM));
        }
        if let Some(other) = self.qemus[&seq].client {
            self.fail(
                "1",
                format!("{name}: q{seq} connected twice ({other:?} is live, now {key:?})"),
            );
        }
        if self.conns.contains_key(&key) {
            self.fail(
                "4",
                format!("{name}: {key:?} is the key of a live connection"),
            );
        }
        let saved = self.state.get(name).copied();
        let q = self.qemus.get_mut(&seq).expect("the QEMU");
        let expected_carried = q.carried_at_drop.unwrap_or_default();
        let mut mismatch = None;
        q.kept = match saved {
            Some(s) if s.socket == socket && s.qemu == q.qemu() => {
                if s.carried != expected_carried {
                    mismatch = Some(format!(
                        "{name}: q{seq}'s state file holds {:?}, the killed daemon kept {expected_carried:?}",
                        s.carried
                    ));
                }
                Evidence::restored(s.carried)
            }
            _ => {
                if expected_carried != Carried::default() {
                    q.swept = true;
                }
                Evidence::new()
            }
        };
        q.unswept = match q.unswept_at_drop {
            Some(c) if c != Carried::default() => Evidence::restored(c),
            _ => Evidence::new(),
        };
        q.client = Some(key);
        let greet = q.run != Run::Exiting;
        let qemu = q.qemu();
        if let Some(m) = mismatch {
            self.fail("S", m);
        }
        self.conns.insert(
            key,
            Connection {
                qemu: seq,
                name: name.clone(),
                socket,
                out: Vec::new(),
                read: 0,
                marks: VecDeque::new(),
                cmds: VecDeque::new(),
                asked: 0,
                greet_pending: greet,
                negotiated: false,
                closed: false,
                hung_up: false,
                since: None,
            },
        );
        Ok(Connected {
            qemu: Some(qemu),
            saved,
        })
    }

    /// `shutdown_file::record`, in the model directory.
    pub(super) fn write_shutdown_file(
        &mut self,
        name: &Name,
        verdict: Verdict,
    ) -> Result<Outcome, RecordError> {
        match self.dir_get() {
            Err(DirError::Away) => return Err(RecordError::DirAway),
            Err(DirError::Failed(e)) => return Err(RecordError::DirFailed(e)),
            Ok(()) => {}
        }
        let (full, readonly) = (self.faults.full, self.faults.readonly);
        let dir = self.dir.as_mut().expect("a reachable directory");
        let there = dir.shutdown.get(name).copied();
        let file = |e| Err(RecordError::File(e));
        if verdict.is_user_shutdown() {
            match there {
                None if readonly => file(Errno::EROFS),
                None if full => file(Errno::ENOSPC),
                None => {
                    dir.shutdown.insert(name.clone(), ShutdownEntry::File);
                    Ok(Outcome::Created)
                }
                Some(ShutdownEntry::Symlink) if readonly => file(Errno::EROFS),
                Some(ShutdownEntry::Symlink) => {
                    dir.shutdown.remove(name);
                    if full {
                        return file(Errno::ENOSPC);
                    }
                    dir.shutdown.insert(name.clone(), ShutdownEntry::File);
                    Ok(Outcome::ReplacedSymlink)
                }
                Some(_) => Ok(Outcome::Kept),
            }
        } else {
            match there {
                None => Ok(Outcome::WasAbsent),
                Some(_) if readonly => file(Errno::EROFS),
                Some(ShutdownEntry::FullDir) => file(Errno::ENOTEMPTY),
                Some(ShutdownEntry::EmptyDir) => {
                    dir.shutdown.remove(name);
                    Ok(Outcome::RemovedDirectory)
                }
                Some(ShutdownEntry::File | ShutdownEntry::Symlink) => {
                    dir.shutdown.remove(name);
                    Ok(Outcome::Removed)
                }
            }
        }
    }

    // --- inotify -----------------------------------------------------------------

    pub(super) fn push_event(&mut self, event: WatcherEvent) {
        self.watcher.since.get_or_insert(self.now);
        if self.watcher.queue.len() >= QUEUE_CAP {
            if self.watcher.queue.back() != Some(&WatcherEvent::Overflow) {
                self.stats.overflows += 1;
                self.watcher.queue.push_back(WatcherEvent::Overflow);
            }
            return;
        }
        self.watcher.queue.push_back(event);
    }

    /// An entry of the current directory changed.
    pub(super) fn entry_event(&mut self, name: &Name, created: bool) {
        let current = self.dir.as_ref().map(|d| d.id);
        if current.is_some() && self.watcher.watched == current && !self.watcher.stalled {
            let generation = self.watcher.generation;
            self.push_event(WatcherEvent::Entry {
                generation,
                created,
                name: name.clone(),
            });
        }
    }

    /// The path to the directory changed.
    pub(super) fn path_event(&mut self) {
        if !self.watcher.stalled {
            let generation = self.watcher.generation;
            self.push_event(WatcherEvent::Path { generation });
        }
    }

    // --- The file system ---------------------------------------------------------

    pub(super) fn inos_in_use(&self) -> BTreeSet<u64> {
        let mut used = BTreeSet::new();
        for dir in self.dir.iter().chain(self.aside.iter()) {
            used.extend(dir.kvmd.values().map(|e| e.ino));
        }
        used.extend(self.moved.iter().map(|(_, e)| e.ino));
        used.extend(self.qemus.values().filter(|q| q.alive()).map(|q| q.ino));
        used
    }

    pub(super) fn alloc_ino(&mut self) -> Option<u64> {
        let used = self.inos_in_use();
        let free: Vec<u64> = (1..=INO_POOL).filter(|i| !used.contains(i)).collect();
        if free.is_empty() {
            return None;
        }
        // ext4 often hands out the inode just freed: the lowest, half the
        // time.
        if self.rng.chance(1, 2) {
            return Some(free[0]);
        }
        Some(free[self.rng.index(free.len())])
    }

    /// Removes `name`'s entry from the current directory (unlink).
    pub(super) fn unlink(&mut self, name: &Name) -> Option<Entry> {
        let entry = self.dir.as_mut()?.kvmd.remove(name)?;
        self.entry_event(name, false);
        Some(entry)
    }

    pub(super) fn pick_name(&mut self) -> Name {
        if self.rng.chance(1, 40) {
            return self.names[NAMES.len()].clone();
        }
        let i = self.rng.index(NAMES.len());
        self.names[i].clone()
    }

    pub(super) fn fs_act(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let name = self.pick_name();
        let entry = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
        let choice = self.rng.below(7);
        match (choice, entry) {
            (0, Some(_)) => {
                trace!(self, "world: rm {name}.kvmd");
                self.unlink(&name);
            }
            (1, Some(e)) if matches!(e.kind, EntryKind::Socket { .. }) => {
                trace!(self, "world: mv {name}.kvmd out");
                self.unlink(&name);
                self.moved.push((name, e));
            }
            (2, _) if !self.moved.is_empty() => {
                let i = self.rng.index(self.moved.len());
                let (n, e) = self.moved[i].clone();
                let free = self.dir.as_ref().is_some_and(|d| !d.kvmd.contains_key(&n));
                if free {
                    trace!(self, "world: mv {n}.kvmd back in (ino {})", e.ino);
                    self.moved.remove(i);
                    self.dir.as_mut().expect("a dir").kvmd.insert(n.clone(), e);
                    self.entry_event(&n, true);
                } else if self.rng.chance(1, 2) {
                    trace!(self, "world: rm moved-out {n}.kvmd");
                    self.moved.remove(i);
                }
            }
            (3 | 4, None) => {
                let Some(ino) = self.alloc_ino() else {
                    return;
                };
                let kind = match self.rng.below(6) {
                    0 => EntryKind::File,
                    1 => EntryKind::Dir,
                    2 => EntryKind::Fifo,
                    3 => EntryKind::Symlink,
                    4 => EntryKind::Socket {
                        owner: UNTRUSTED,
                        qemu: None,
                    },
                    _ => EntryKind::Socket {
                        owner: TRUSTED,
                        qemu: None,
                    },
                };
                trace!(self, "world: create {name}.kvmd as {kind:?} (ino {ino})");
                self.names_used.insert(name.clone());
                self.dir.as_mut().expect("a dir").kvmd.insert(
                    name.clone(),
                    Entry {
                        ino,
                        kind,
                        born: self.step,
                    },
                );
                self.entry_event(&name, true);
            }
            (5, _) => {
                // An operator (or Ganeti starting the instance) touches the
                // shutdown file.
                let dir = self.dir.as_mut().expect("a dir");
                let what = if dir.shutdown.contains_key(&name) && self.rng.chance(1, 2) {
                    dir.shutdown.remove(&name);
                    "removes".to_owned()
                } else {
                    let put = [
                        ShutdownEntry::File,
                        ShutdownEntry::Symlink,
                        ShutdownEntry::EmptyDir,
                        ShutdownEntry::FullDir,
                    ][self.rng.index(4)];
                    dir.shutdown.insert(name.clone(), put);
                    format!("puts a {put:?} at")
                };
                dir.expect.insert(name.clone(), ExpectedFile::Unknown);
                trace!(self, "world: operator {what} {name}.shutdown");
            }
            _ => {}
        }
    }

    pub(super) fn dir_away(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        trace!(self, "world: control directory {} moved away", dir.id);
        self.aside.push(dir);
        if self.aside.len() > 2 {
            self.aside.remove(0);
        }
        self.path_event();
    }

    pub(super) fn dir_back(&mut self) {
        if self.dir.is_some() {
            return;
        }
        if !self.aside.is_empty() && self.rng.chance(2, 3) {
            let i = self.rng.index(self.aside.len());
            let dir = self.aside.remove(i);
            trace!(self, "world: control directory {} moved back", dir.id);
            self.dir = Some(dir);
        } else {
            let id = self.next_dir;
            self.next_dir += 1;
            trace!(self, "world: control directory {id} created afresh");
            self.dir = Some(DirModel::new(id));
        }
        self.path_event();
    }
}
