//! The control-directory watcher: an inotify crawler.
//!
//! This module owns the inotify descriptor and every watch on it. It turns
//! kernel events into [`Change`]s: a `*.kvmd` entry appeared or vanished.
//! The event loop registers [`Watcher::fd`] with its poll and calls
//! [`Watcher::handle_readable`]; nothing here blocks.
//!
//! How it follows the control directory `C`:
//! - every existing ancestor of `C` is watched for its own deletion, move
//!   or unmount, so `C` moved away with a parent is noticed too;
//! - the deepest ancestor reached (the *gate*: `C`'s parent once `C`
//!   exists) is also watched for its next component being created, deleted
//!   or moved. `C`'s own DELETE_SELF cannot be relied on: the kernel sends
//!   it only once the directory's dentry is released, and a running QEMU's
//!   socket inside it pins that dentry until QEMU exits;
//! - while the crawl waits for a missing level, the gate's own parent also
//!   keeps watching for the gate's name: a directory removed just as the
//!   crawler looked in it for the next level may never send DELETE_SELF
//!   (the failed lookup leaves a cached negative entry that pins it);
//! - `C` itself is opened (`O_NOFOLLOW`: a symlink is not a control
//!   directory) and watched through `/proc/self/fd`, so the watch is on the
//!   directory that was checked. No descriptor of it is kept (that would
//!   keep its file system busy); [`Watcher::open_ctrl_dir`] opens it anew
//!   for each piece of work and checks it is still the watched one;
//! - whenever `C` becomes watched, each `*.kvmd` entry already in it is
//!   reported as appeared (the recap), so a restarted daemon picks up the
//!   running instances;
//! - any change to the path, an unmount, a dropped watch or a queue
//!   overflow makes it crawl again from `/`. Crawling is rare and cheap;
//!   one mechanism for every case is easier to trust than many.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use log::{debug, error, info, warn};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fstat};

use kvmd_core::name::InstanceName;

/// A bare `.kvmd` names no instance; told of once.
const SOCKET_SUFFIX: &[u8] = b".kvmd";

pub use kvmd_core::fleet::Change;

/// Why the control directory cannot be opened now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// Not there, or not the watched one: a crawl is due.
    NotWatched,
    /// It is there, but opening it failed (out of descriptors, say).
    Error(Errno),
}

/// What a watch is for.
#[derive(Debug)]
enum Role {
    /// An existing ancestor of the control directory: only its own
    /// deletion, move or unmount matters from now on. It was the gate for
    /// `next` until the level below `next` was found, and events queued
    /// while it was (`next` deleted just as the crawler stepped into it)
    /// still change the path: they are read under this role.
    Ancestor { next: OsString },
    /// The deepest ancestor reached: `next` appearing or going away there
    /// changes the path.
    Gate { next: OsString },
    /// The control directory.
    CtrlDir,
}

#[derive(Debug)]
struct Watched {
    path: PathBuf,
    role: Role,
}

/// Events that mean the watched directory is no longer where the path
/// says (the kernel adds UNMOUNT and IGNORED to any watch by itself).
const SELF_GONE: EventMask = EventMask::DELETE_SELF
    .union(EventMask::MOVE_SELF)
    .union(EventMask::UNMOUNT)
    .union(EventMask::IGNORED);

const ANCESTOR_MASK: WatchMask = WatchMask::DELETE_SELF
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);
/// `.kvmd` alone names no instance: there is no `<instance>.shutdown` to
/// write for it, so it is not monitored.
fn warn_nameless() {
    warn!("an entry named .kvmd has no instance name; ignored");
}

/// Names coming and going in a directory.
const ENTRY_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM);
const GATE_MASK: WatchMask = ANCESTOR_MASK.union(ENTRY_MASK);
const CTRL_DIR_MASK: WatchMask = ANCESTOR_MASK.union(ENTRY_MASK);
const ENTRY_EVENTS: EventMask = EventMask::CREATE
    .union(EventMask::MOVED_TO)
    .union(EventMask::DELETE)
    .union(EventMask::MOVED_FROM);

/// Big enough for many events; `read` needs real length, not capacity.
const EVENT_BUFFER: usize = 16 * 1024;

/// The control-directory crawler. See the module documentation.
pub struct Watcher {
    inotify: Inotify,
    ctrl_dir: PathBuf,
    buffer: Box<[u8]>,
    watches: HashMap<WatchDescriptor, Watched>,
    /// The control directory's identity, while it is watched (or, when
    /// stalled, scanned without a watch: it is still the one to act in).
    ctrl_dir_id: Option<DirId>,
    /// The last crawl could not add a watch it needed (the inotify watch
    /// limit, say): nothing may tell of changes, so the caller crawls again
    /// from time to time until one succeeds.
    stalled: bool,
    /// A stall was logged and its end was not yet.
    stall_reported: bool,
    /// A bare `.kvmd` was reported, and has not gone since: a recap does
    /// not report it again.
    nameless_reported: bool,
    /// inotify queue overflows so far (for the metrics).
    overflows: u64,
}

/// What adding one watch came to.
enum Added {
    Yes,
    /// The directory went away in between: the crawl ends here, and the
    /// watch above will tell when it comes back.
    Gone,
    /// The kernel refused (the watch limit, memory): the crawl goes on
    /// without it, and the watcher is stalled.
    Refused,
}

/// Device and inode: which directory a descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirId {
    dev: u64,
    ino: u64,
}

impl DirId {
    fn of(fd: &OwnedFd) -> Result<DirId, Errno> {
        let stat = fstat(fd)?;
        Ok(DirId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        })
    }
}

const OPEN_DIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Watcher {
    /// Sets up inotify for `ctrl_dir` (an absolute path). Nothing is watched
    /// until [`Watcher::crawl`].
    pub fn new(ctrl_dir: &Path) -> io::Result<Watcher> {
        Ok(Watcher {
            inotify: Inotify::init()?,
            ctrl_dir: normalize(ctrl_dir),
            buffer: vec![0; EVENT_BUFFER].into_boxed_slice(),
            watches: HashMap::new(),
            ctrl_dir_id: None,
            stalled: false,
            stall_reported: false,
            nameless_reported: false,
            overflows: 0,
        })
    }

    /// The inotify descriptor, to register with the event loop's poll.
    pub(crate) fn fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    /// Opens the control directory, if it is watched and still the watched
    /// one. [`Unavailable::NotWatched`] otherwise: it is gone or being
    /// replaced, and inotify is about to say so.
    pub(crate) fn open_ctrl_dir(&self) -> Result<OwnedFd, Unavailable> {
        let watched = self.ctrl_dir_id.ok_or(Unavailable::NotWatched)?;
        let dir = match open(&self.ctrl_dir, OPEN_DIR, Mode::empty()) {
            Ok(dir) => dir,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
                return Err(Unavailable::NotWatched);
            }
            Err(e) => return Err(Unavailable::Error(e)),
        };
        match DirId::of(&dir) {
            Ok(id) if id == watched => Ok(dir),
            Ok(_) => Err(Unavailable::NotWatched),
            Err(e) => Err(Unavailable::Error(e)),
        }
    }

    /// Whether the control directory was reached: watched, or (stalled)
    /// at least scanned.
    pub(crate) fn is_watching(&self) -> bool {
        self.ctrl_dir_id.is_some()
    }

    /// Whether the last crawl missed a watch: only another crawl, not an
    /// event, will find what changes meanwhile.
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// inotify queue overflows since the watcher was made.
    pub(crate) fn overflows(&self) -> u64 {
        self.overflows
    }

    pub(crate) fn ctrl_dir_path(&self) -> &Path {
        &self.ctrl_dir
    }

    /// Drops every watch and walks from `/` down towards the control
    /// directory again, reporting its `*.kvmd` entries if it is reached.
    pub fn crawl(&mut self, out: &mut Vec<Change>) {
        self.stalled = false;
        self.walk(out);
        if !self.stalled && self.stall_reported {
            self.stall_reported = false;
            info!(
                "{} can be watched again; followed by events, no more rescans",
                self.ctrl_dir.display()
            );
        }
    }

    fn walk(&mut self, out: &mut Vec<Change>) {
        for (wd, _) in self.watches.drain() {
            // The watch may be gone already (its directory was deleted).
            let _ = self.inotify.watches().remove(wd);
        }
        let was_watched = self.ctrl_dir_id.take().is_some();

        let names: Vec<OsString> = self
            .ctrl_dir
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name.to_owned()),
                _ => None,
            })
            .collect();
        let mut parent = PathBuf::from("/");
        // The gate above `parent`: it keeps watching for `parent` until the
        // next level is found there. A directory's own DELETE_SELF can come
        // late or never: the kernel sends it when the last reference to the
        // directory's dentry goes, and a lookup that misses in a directory
        // being removed (ours, for the next level) leaves a cached negative
        // entry there that keeps it referenced. Its parent's DELETE of its
        // name comes at once, so the parent keeps listening for it while
        // the crawl may have looked in vain below.
        let mut above: Option<PathBuf> = None;
        for (depth, name) in names.iter().enumerate() {
            // Watch the parent for `name` before looking for it, so that
            // nothing created in between goes unnoticed.
            let gate = Role::Gate { next: name.clone() };
            if let Added::Gone = self.add_watch(&parent, GATE_MASK, gate) {
                // Gone again: the gate above saw it go and will crawl.
                return;
            }
            let child = parent.join(name);
            let is_ctrl_dir = depth + 1 == names.len();
            // Ancestors may be symlinks (Debian's /var/run -> /run); the
            // control directory itself may not.
            let found = if is_ctrl_dir {
                self.watch_ctrl_dir(child.clone(), out)
            } else {
                child.is_dir()
            };
            if !found {
                if self.stalled {
                    // Said already, once: a stall's rescans stay quiet.
                    return;
                }
                info!(
                    "waiting for {} to appear (watching {})",
                    self.ctrl_dir.display(),
                    parent.display()
                );
                return;
            }
            if let Some(above) = above.take() {
                // Nothing was missed below it: it now only needs to say if
                // it goes away itself.
                let next = names[depth - 1].clone();
                self.add_watch(&above, ANCESTOR_MASK, Role::Ancestor { next });
            }
            // The control directory's parent stays its gate.
            if !is_ctrl_dir {
                above = Some(std::mem::replace(&mut parent, child));
            }
        }
        if !was_watched && !self.stalled {
            info!("watching {}", self.ctrl_dir.display());
        }
    }

    /// Reads every pending inotify event. Changes to the path itself are
    /// collected while reading and acted on once, afterwards.
    pub fn handle_readable(&mut self, out: &mut Vec<Change>) {
        let mut crawl_again = false;
        loop {
            let events = match self.inotify.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Not expected from inotify; do not spin on it.
                    error!("cannot read inotify events: {e}");
                    crawl_again = true;
                    break;
                }
            };
            for event in events {
                debug!(
                    "inotify: wd={} {:?} {:?}",
                    event.wd.get_watch_descriptor_id(),
                    event.mask,
                    event.name
                );
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    self.overflows += 1;
                    warn!(
                        "inotify queue overflowed; rescanning {}",
                        self.ctrl_dir.display()
                    );
                    crawl_again = true;
                    continue;
                }
                let Some(watched) = self.watches.get(&event.wd) else {
                    debug!("inotify: event for a dropped watch, skipped");
                    continue;
                };
                if event.mask.intersects(SELF_GONE) {
                    info!(
                        "{} was deleted, moved or unmounted; looking for {} again",
                        watched.path.display(),
                        self.ctrl_dir.display()
                    );
                    crawl_again = true;
                    continue;
                }
                let Some(name) = event.name else { continue };
                match &watched.role {
                    // Once the directory moved or the queue overflowed, later
                    // events on the old watch describe the old directory; the
                    // recap after crawling reports what the new one holds.
                    Role::CtrlDir
                        if !crawl_again && InstanceName::from_socket_file(name).is_some() =>
                    {
                        let Some(instance) = InstanceName::from_socket_file(name) else {
                            continue;
                        };
                        if event
                            .mask
                            .intersects(EventMask::CREATE | EventMask::MOVED_TO)
                        {
                            out.push(Change::Created(instance));
                        } else if event
                            .mask
                            .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
                        {
                            out.push(Change::Vanished(instance));
                        }
                    }
                    Role::CtrlDir if name.as_bytes() == SOCKET_SUFFIX => {
                        let created = event
                            .mask
                            .intersects(EventMask::CREATE | EventMask::MOVED_TO);
                        self.nameless_reported = created;
                        if created {
                            warn_nameless();
                        }
                    }
                    Role::Gate { next } | Role::Ancestor { next }
                        if name == next && event.mask.intersects(ENTRY_EVENTS) =>
                    {
                        crawl_again = true;
                    }
                    _ => {}
                }
            }
        }
        if crawl_again {
            self.crawl(out);
        }
    }

    fn add_watch(&mut self, path: &Path, mask: WatchMask, role: Role) -> Added {
        match self.inotify.watches().add(path, mask) {
            Ok(wd) => {
                let path = path.to_owned();
                self.watches.insert(wd, Watched { path, role });
                Added::Yes
            }
            // Gone again between looking and watching: the crawl goes on
            // from the gate above, nothing to tell an operator.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                debug!("cannot watch {}: {e}", path.display());
                Added::Gone
            }
            Err(e) => {
                self.stall(path, &e);
                Added::Refused
            }
        }
    }

    /// A watch could not be added: logged once until crawls succeed again.
    fn stall(&mut self, path: &Path, e: &io::Error) {
        self.stalled = true;
        if self.stall_reported {
            debug!("still cannot watch or open {}: {e}", path.display());
            return;
        }
        self.stall_reported = true;
        let hint = if e.raw_os_error() == Some(Errno::ENOSPC as i32) {
            " (the inotify watch limit: sysctl fs.inotify.max_user_watches)"
        } else {
            ""
        };
        warn!(
            "cannot watch or open {}: {e}{hint}; rescanning {} now and then until it can",
            path.display(),
            self.ctrl_dir.display()
        );
    }

    /// Opens and watches the control directory, then reports its entries.
    /// False when it is not there (or not a directory).
    fn watch_ctrl_dir(&mut self, path: PathBuf, out: &mut Vec<Change>) -> bool {
        let dir = match open(&path, OPEN_DIR, Mode::empty()) {
            Ok(dir) => dir,
            Err(Errno::ENOENT) => return false,
            Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
                warn!(
                    "{} is not a directory ({e}); waiting for a real one",
                    path.display()
                );
                return false;
            }
            Err(e) => {
                // Out of descriptors, say: a later crawl may succeed.
                self.stall(&path, &io::Error::from(e));
                return false;
            }
        };
        // Watch the very directory just opened, not whatever the path names
        // a moment later.
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let wd = match self.inotify.watches().add(&by_fd, CTRL_DIR_MASK) {
            Ok(wd) => Ok(wd),
            Err(_) => self
                .inotify
                .watches()
                .add(&path, CTRL_DIR_MASK | WatchMask::DONT_FOLLOW),
        };
        let id = match DirId::of(&dir) {
            Ok(id) => id,
            Err(e) => {
                warn!("cannot stat {}: {e}", path.display());
                return false;
            }
        };
        match wd {
            Ok(wd) => {
                let role = Role::CtrlDir;
                self.watches.insert(wd, Watched { path, role });
            }
            // Unwatched, it is still scanned: what is there now is found,
            // and the next crawl finds what comes later.
            Err(e) => self.stall(&path, &e),
        }
        self.ctrl_dir_id = Some(id);
        self.recap(dir, out);
        true
    }

    /// Reports every `*.kvmd` entry of the control directory as appeared.
    fn recap(&mut self, dir: OwnedFd, out: &mut Vec<Change>) {
        let mut entries = match Dir::from_fd(dir) {
            Ok(entries) => entries,
            Err(e) => {
                warn!("cannot list {}: {e}", self.ctrl_dir.display());
                return;
            }
        };
        for entry in entries.iter() {
            match entry {
                Ok(entry) => {
                    let name = OsStr::from_bytes(entry.file_name().to_bytes());
                    if let Some(instance) = InstanceName::from_socket_file(name) {
                        out.push(Change::Appeared(instance));
                    } else if name.as_bytes() == SOCKET_SUFFIX && !self.nameless_reported {
                        self.nameless_reported = true;
                        warn_nameless();
                    }
                }
                Err(e) => {
                    warn!("cannot list {}: {e}", self.ctrl_dir.display());
                    break;
                }
            }
        }
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system: the path is
/// followed as named, symlinks and all, component by component.
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => normal.push(name),
            Component::ParentDir => {
                normal.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::BorrowedFd;
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};

    /// The instance of a socket name, as the watcher reads it.
    fn instance_name(file_name: &OsStr) -> Option<&OsStr> {
        let stem = file_name.as_bytes().strip_suffix(SOCKET_SUFFIX)?;
        InstanceName::from_socket_file(file_name).map(|_| OsStr::from_bytes(stem))
    }

    #[test]
    fn socket_names() {
        assert_eq!(
            instance_name(OsStr::new("vm1.example.com.kvmd")),
            Some(OsStr::new("vm1.example.com"))
        );
        assert_eq!(instance_name(OsStr::new(".kvmd")), None);
        assert_eq!(instance_name(OsStr::new("vm1.qmp")), None);
        assert_eq!(instance_name(OsStr::new("vm1.kvmd.shutdown")), None);
        assert_eq!(
            instance_name(OsStr::from_bytes(b"\xff\n.kvmd")),
            Some(OsStr::from_bytes(b"\xff\n"))
        );
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../a")), Path::new("/a"));
    }

    /// Feeds the watcher inotify's events until `done` holds, or fails
    /// after a deadline. Returns every change seen on the way.
    fn pump_until(
        watcher: &mut Watcher,
        what: &str,
        done: impl Fn(&Watcher, &[Change]) -> bool,
    ) -> Vec<Change> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let fd = unsafe { BorrowedFd::borrow_raw(watcher.fd()) };
            let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            watcher.handle_readable(&mut seen);
            if done(watcher, &seen) {
                return seen;
            }
        }
        panic!("not {what} within 10 s; saw {seen:?}");
    }

    /// Reads changes until `want` is among them.
    fn wait_for(watcher: &mut Watcher, want: &Change) -> Vec<Change> {
        pump_until(watcher, &format!("{want:?}"), |_, seen| seen.contains(want))
    }

    /// The name of a socket reported, whether by a recap or an event.
    fn arrival(change: &Change) -> Option<String> {
        match change {
            Change::Appeared(name) | Change::Created(name) => {
                name.socket_file().to_str().map(str::to_owned)
            }
            Change::Vanished(_) => None,
        }
    }

    /// Reads changes until `name` is reported: by an event, or by the
    /// recap of a directory that appeared with it inside.
    fn wait_for_arrival(watcher: &mut Watcher, name: &str) -> Vec<Change> {
        pump_until(watcher, name, |_, seen| {
            seen.iter().any(|c| arrival(c).as_deref() == Some(name))
        })
    }

    /// The instance of a socket name.
    fn socket(name: &str) -> InstanceName {
        InstanceName::from_socket_file(OsStr::new(name)).expect("a socket name")
    }

    /// Found by a recap.
    fn appeared(name: &str) -> Change {
        Change::Appeared(socket(name))
    }

    /// Reported by an event.
    fn created(name: &str) -> Change {
        Change::Created(socket(name))
    }

    #[test]
    fn recap_reports_existing_sockets_only_by_name() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let _a = UnixListener::bind(tmp.path().join("a.kvmd")).expect("bind");
        std::fs::write(tmp.path().join("b.qmp"), b"").expect("write");
        std::fs::write(tmp.path().join("c.kvmd"), b"").expect("write");
        let mut watcher = Watcher::new(tmp.path()).expect("inotify");
        let mut seen = Vec::new();
        watcher.crawl(&mut seen);
        seen.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(seen, vec![appeared("a.kvmd"), appeared("c.kvmd")]);
        assert!(watcher.is_watching());
    }

    #[test]
    fn follows_creations_and_deletions() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut watcher = Watcher::new(tmp.path()).expect("inotify");
        let mut seen = Vec::new();
        watcher.crawl(&mut seen);
        assert!(seen.is_empty());
        let _l = UnixListener::bind(tmp.path().join("vm.kvmd")).expect("bind");
        wait_for(&mut watcher, &created("vm.kvmd"));
        std::fs::remove_file(tmp.path().join("vm.kvmd")).expect("rm");
        wait_for(&mut watcher, &Change::Vanished(socket("vm.kvmd")));
    }

    #[test]
    fn walks_down_as_missing_levels_appear() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ctrl = tmp.path().join("a/b/ctrl");
        let mut watcher = Watcher::new(&ctrl).expect("inotify");
        let mut seen = Vec::new();
        watcher.crawl(&mut seen);
        assert!(!watcher.is_watching());
        std::fs::create_dir(tmp.path().join("a")).expect("mkdir");
        std::fs::create_dir(tmp.path().join("a/b")).expect("mkdir");
        std::fs::create_dir(&ctrl).expect("mkdir");
        let _l = UnixListener::bind(ctrl.join("vm.kvmd")).expect("bind");
        wait_for_arrival(&mut watcher, "vm.kvmd");
        assert!(watcher.is_watching());
    }

    #[test]
    fn starts_over_when_the_directory_is_replaced() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ctrl = tmp.path().join("ctrl");
        std::fs::create_dir(&ctrl).expect("mkdir");
        let mut watcher = Watcher::new(&ctrl).expect("inotify");
        let mut seen = Vec::new();
        watcher.crawl(&mut seen);
        std::fs::rename(&ctrl, tmp.path().join("old")).expect("mv");
        std::fs::create_dir(&ctrl).expect("mkdir");
        let _l = UnixListener::bind(ctrl.join("new.kvmd")).expect("bind");
        // Also made in the old directory: must not be reported.
        let _o = UnixListener::bind(tmp.path().join("old/stale.kvmd")).expect("bind");
        let seen = wait_for_arrival(&mut watcher, "new.kvmd");
        assert!(
            !seen
                .iter()
                .any(|c| arrival(c).as_deref() == Some("stale.kvmd")),
            "{seen:?}"
        );
    }

    #[test]
    fn deletion_is_seen_while_a_live_socket_pins_the_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ctrl = tmp.path().join("ctrl");
        std::fs::create_dir(&ctrl).expect("mkdir");
        // A bound socket, like a running QEMU's, keeps the directory's
        // dentry alive: no DELETE_SELF comes until it is closed.
        let _pin = UnixListener::bind(ctrl.join("running.kvmd")).expect("bind");
        let mut watcher = Watcher::new(&ctrl).expect("inotify");
        let mut seen = Vec::new();
        watcher.crawl(&mut seen);
        std::fs::remove_dir_all(&ctrl).expect("rm -r");
        pump_until(&mut watcher, "noticed the deletion", |w, _| {
            !w.is_watching()
        });
        std::fs::create_dir(&ctrl).expect("mkdir");
        let _l = UnixListener::bind(ctrl.join("new.kvmd")).expect("bind");
        wait_for_arrival(&mut watcher, "new.kvmd");
        assert!(watcher.open_ctrl_dir().is_ok());
    }

    #[test]
    fn never_goes_blind_while_directories_flicker() {
        // An intermediate directory created and removed while the crawler
        // walks down: whatever the interleaving, some watch must still be
        // waiting for the path, so the control directory is found once it
        // is finally made.
        for _ in 0..20 {
            let tmp = tempfile::tempdir().expect("tempdir");
            let ctrl = tmp.path().join("a/b/ctrl");
            let mut watcher = Watcher::new(&ctrl).expect("inotify");
            watcher.crawl(&mut Vec::new());
            let a = tmp.path().join("a");
            let flicker = std::thread::spawn(move || {
                for _ in 0..300 {
                    let _ = std::fs::create_dir_all(a.join("b"));
                    let _ = std::fs::remove_dir_all(&a);
                }
            });
            while !flicker.is_finished() {
                watcher.handle_readable(&mut Vec::new());
            }
            flicker.join().expect("flicker");
            std::fs::create_dir_all(&ctrl).expect("mkdir -p");
            let _l = UnixListener::bind(ctrl.join("vm.kvmd")).expect("bind");
            wait_for_arrival(&mut watcher, "vm.kvmd");
        }
    }

    #[test]
    fn open_ctrl_dir_refuses_a_replacement_it_has_not_crawled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ctrl = tmp.path().join("ctrl");
        std::fs::create_dir(&ctrl).expect("mkdir");
        let mut watcher = Watcher::new(&ctrl).expect("inotify");
        watcher.crawl(&mut Vec::new());
        assert!(watcher.open_ctrl_dir().is_ok());
        std::fs::rename(&ctrl, tmp.path().join("old")).expect("mv");
        std::fs::create_dir(&ctrl).expect("mkdir");
        // Not read inotify yet: the new directory is not the watched one.
        assert!(watcher.open_ctrl_dir().is_err());
    }

    #[test]
    fn a_symlink_is_not_the_control_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let _l = UnixListener::bind(real.join("vm.kvmd")).expect("bind");
        let ctrl = tmp.path().join("ctrl");
        std::os::unix::fs::symlink(&real, &ctrl).expect("symlink");
        let mut watcher = Watcher::new(&ctrl).expect("inotify");
        let mut seen = Vec::new();
        watcher.crawl(&mut seen);
        assert!(seen.is_empty(), "{seen:?}");
        assert!(!watcher.is_watching());
        // Replaced by a real directory: picked up.
        std::fs::remove_file(&ctrl).expect("rm");
        std::fs::create_dir(&ctrl).expect("mkdir");
        let _m = UnixListener::bind(ctrl.join("vm2.kvmd")).expect("bind");
        wait_for_arrival(&mut watcher, "vm2.kvmd");
    }
}
