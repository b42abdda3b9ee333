//! Evidence that must survive a daemon restart.
//!
//! This module owns the state directory: one small file per instance
//! holding what a restarted daemon cannot learn from QEMU again. The case
//! that matters: an administrator pressed the ACPI power button
//! (POWERDOWN), the daemon stopped or crashed, and the guest obeyed later.
//! QEMU does not repeat past events, and the guest's SHUTDOWN says
//! `guest: true`: without the file, a restarted daemon would call that a
//! user shutdown.
//!
//! A file names the QEMU it belongs to: the socket (device and inode) and
//! the process behind it (pid and start time, from the connection's peer
//! credentials). A file left for a socket that is gone, or for another
//! QEMU — file systems hand a re-bound socket the same inode — is stale
//! and ignored.
//! Files are written atomically (temporary file, then rename) relative to
//! a descriptor of the directory, without following symlinks, and removed
//! once the instance is decided.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, mkdir, unlinkat};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::decision::{Carried, ShutdownSeen};
use crate::fleet::{HookJob, Intent, IntentState, Presses};
use crate::name::InstanceName;
use crate::qmp::Reason;

/// A socket file's identity: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketId {
    pub dev: u64,
    pub ino: u64,
}

/// The QEMU process on the other end of a connection: a pid is reused,
/// a pid with its start time (clock ticks since boot) is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qemu {
    pub pid: u32,
    pub start: u64,
}

impl Qemu {
    /// The process behind a connected unix socket, if /proc says.
    pub fn of_peer<S: std::os::fd::AsFd>(socket: &S) -> Option<Qemu> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let pid = u32::try_from(getsockopt(socket, PeerCredentials).ok()?.pid()).ok()?;
        Qemu::of_pid(pid)
    }

    /// The process `pid` (with its start time), if it exists.
    pub fn of_pid(pid: u32) -> Option<Qemu> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Field 22, counted after the command name (which may hold spaces).
        let start = stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()?;
        Some(Qemu { pid, start })
    }
}

/// What one instance's file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub socket: SocketId,
    pub qemu: Qemu,
    pub carried: Carried,
}

const MAGIC: &str = "kvmd-state 2";
/// A state file is one short line; anything longer is not ours.
const MAX_FILE: usize = 256;

impl Saved {
    fn encode(&self) -> String {
        let c = &self.carried;
        let flag = |b: bool| u8::from(b);
        let shutdown = match &c.shutdown {
            None => "-".to_owned(),
            Some(s) => format!(
                "{},{},{},{},{}",
                match s.guest {
                    Some(true) => "t",
                    Some(false) => "f",
                    None => "-",
                },
                s.reason.map_or("-", Reason::as_str),
                flag(s.paused),
                flag(s.powerdown_pending),
                flag(s.panicked)
            ),
        };
        format!(
            "{MAGIC} dev={} ino={} pid={} start={} powerdown={} paused={} panicked={} shutdown={shutdown}\n",
            self.socket.dev,
            self.socket.ino,
            self.qemu.pid,
            self.qemu.start,
            flag(c.powerdown_pending),
            flag(c.paused),
            flag(c.panicked),
        )
    }

    fn decode(text: &str) -> Option<Saved> {
        let rest = text.strip_suffix('\n')?.strip_prefix(MAGIC)?;
        let mut fields = rest.split(' ').skip(1);
        let mut field =
            |key: &str| -> Option<&str> { fields.next()?.strip_prefix(key)?.strip_prefix('=') };
        let number = |text: Option<&str>| text?.parse::<u64>().ok();
        let flag = |text: &str| match text {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let socket = SocketId {
            dev: number(field("dev"))?,
            ino: number(field("ino"))?,
        };
        let qemu = Qemu {
            pid: u32::try_from(number(field("pid"))?).ok()?,
            start: number(field("start"))?,
        };
        let powerdown_pending = flag(field("powerdown")?)?;
        let paused = flag(field("paused")?)?;
        let panicked = flag(field("panicked")?)?;
        let shutdown = match field("shutdown")? {
            "-" => None,
            seen => {
                let parts: Vec<&str> = seen.split(',').collect();
                let [guest, reason, paused, powerdown_pending, panicked] = parts[..] else {
                    return None;
                };
                Some(ShutdownSeen {
                    guest: match guest {
                        "t" => Some(true),
                        "f" => Some(false),
                        "-" => None,
                        _ => return None,
                    },
                    reason: (reason != "-").then(|| Reason::from_wire(reason)),
                    paused: flag(paused)?,
                    powerdown_pending: flag(powerdown_pending)?,
                    panicked: flag(panicked)?,
                })
            }
        };
        if fields.next().is_some() {
            return None;
        }
        Some(Saved {
            socket,
            qemu,
            carried: Carried {
                powerdown_pending,
                paused,
                shutdown,
                panicked,
            },
        })
    }
}

/// One hook job as a line of `<instance>.hook`.
fn encode_hook(job: &HookJob) -> String {
    let number = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
    let running = job
        .running
        .map_or("-".to_owned(), |p| format!("{}:{}", p.pid, p.start));
    // `by` is free text: hex keeps the line one line of space-separated
    // fields. Absent in files of kvmd 1.0, which still read.
    let by = match &job.intent_by {
        None => String::new(),
        Some(by) => format!(" by={}", hex(by.as_bytes())),
    };
    format!(
        "{HOOK_MAGIC} user={} reason={} qemu={} attempt={} running={running}{by}\n",
        u8::from(job.user),
        job.reason,
        number(job.qemu_pid),
        job.attempt
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * crate::fleet::MAX_BY {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let by = String::from_utf8(bytes).ok()?;
    crate::fleet::valid_by(&by).then_some(by)
}

fn decode_hook(name: &InstanceName, line: &str) -> Option<HookJob> {
    let rest = line.strip_prefix(HOOK_MAGIC)?;
    let mut fields = rest.split(' ').skip(1);
    let mut field =
        |key: &str| -> Option<&str> { fields.next()?.strip_prefix(key)?.strip_prefix('=') };
    let user = match field("user")? {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    let reason = HookJob::reason_code(field("reason")?)?;
    let qemu_pid = match field("qemu")? {
        "-" => None,
        pid => Some(pid.parse().ok()?),
    };
    let attempt = field("attempt")?.parse().ok()?;
    let running = match field("running")? {
        "-" => None,
        running => {
            let (pid, start) = running.split_once(':')?;
            Some(Qemu {
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            })
        }
    };
    let intent_by = match fields.next() {
        None => None,
        Some(by) => Some(unhex(by.strip_prefix("by=")?)?),
    };
    if fields.next().is_some() {
        return None;
    }
    Some(HookJob {
        name: name.clone(),
        user,
        reason,
        qemu_pid,
        attempt,
        running,
        intent_by,
    })
}

/// An intent as its file keeps it: wall-clock times, so it means the
/// same to a restarted kvmd (whose monotonic clock is another).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedIntent {
    pub by: String,
    /// Milliseconds since the epoch.
    pub given_ms: u64,
    pub until_ms: u64,
    pub dev: u64,
    pub ino: u64,
    pub pid: Option<u32>,
    pub start: Option<u64>,
    pub state: SavedIntentState,
    pub presses: SavedPresses,
}

/// [`IntentState`] as its file spells it (`waiting`, `claimed`): the file's
/// vocabulary is kept here, apart from the fleet's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavedIntentState {
    Waiting,
    Claimed,
}

/// [`Presses`] as its file spells it (`none`, `until-shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavedPresses {
    None,
    UntilShutdown,
}

impl SavedIntent {
    /// The fleet's intent, its times told by `clock`.
    pub fn from_intent(intent: &Intent, wall: impl Fn(Instant) -> SystemTime) -> SavedIntent {
        let ms = |at: Instant| {
            wall(at)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        SavedIntent {
            by: intent.by.clone(),
            given_ms: ms(intent.given),
            until_ms: ms(intent.until),
            dev: intent.socket.dev,
            ino: intent.socket.ino,
            pid: intent.qemu.map(|q| q.pid),
            start: intent.qemu.map(|q| q.start),
            state: match intent.state {
                IntentState::Waiting => SavedIntentState::Waiting,
                IntentState::Claimed => SavedIntentState::Claimed,
            },
            presses: match intent.presses {
                Presses::None => SavedPresses::None,
                Presses::UntilShutdown => SavedPresses::UntilShutdown,
            },
        }
    }

    /// Back to the fleet's intent: `now` and `wall_now` are one moment on
    /// both clocks. None: not a valid intent (tampered, or from a kvmd
    /// that knew other words).
    pub fn to_intent(&self, now: Instant, wall_now: SystemTime) -> Option<Intent> {
        let instant = |ms: u64| {
            let at = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
            Some(match at.duration_since(wall_now) {
                Ok(ahead) => now.checked_add(ahead)?,
                Err(behind) => now.checked_sub(behind.duration())?,
            })
        };
        if !crate::fleet::valid_by(&self.by) {
            return None;
        }
        let qemu = match (self.pid, self.start) {
            (Some(pid), Some(start)) => Some(Qemu { pid, start }),
            (None, None) => None,
            _ => return None,
        };
        Some(Intent {
            by: self.by.clone(),
            // A time before this boot's clock began is as good as "long ago".
            given: instant(self.given_ms).unwrap_or(now),
            // A wall clock set back since it was kept would stretch the
            // window; no intent outlasts the longest window from now.
            until: instant(self.until_ms)?.min(now + crate::fleet::MAX_WINDOW),
            socket: SocketId {
                dev: self.dev,
                ino: self.ino,
            },
            qemu,
            state: match self.state {
                SavedIntentState::Waiting => IntentState::Waiting,
                SavedIntentState::Claimed => IntentState::Claimed,
            },
            presses: match self.presses {
                SavedPresses::None => Presses::None,
                SavedPresses::UntilShutdown => Presses::UntilShutdown,
            },
        })
    }
}

const HOOK_MAGIC: &str = "kvmd-hook 1";

/// Why a state file could not be written.
#[derive(Debug)]
pub struct StateError {
    pub path: PathBuf,
    pub errno: Errno,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.errno)
    }
}

impl std::error::Error for StateError {}

/// The state directory (made on first use).
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub fn new(path: PathBuf) -> StateDir {
        StateDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self, create: bool) -> Result<OwnedFd, Errno> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match open(&self.path, flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                // Only the daemon reads it.
                match mkdir(&self.path, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => open(&self.path, flags, Mode::empty()),
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    /// Writes `saved` for `instance`.
    pub fn save(&self, instance: &InstanceName, saved: &Saved) -> Result<(), StateError> {
        self.replace(instance, &instance.state_file(), saved.encode().as_bytes())
    }

    /// Replaces `instance`'s file `name` with `bytes` atomically: written
    /// to the instance's temporary file, then renamed over it.
    fn replace(
        &self,
        instance: &InstanceName,
        name: &OsStr,
        bytes: &[u8],
    ) -> Result<(), StateError> {
        let error = |errno| StateError {
            path: self.path.join(name),
            errno,
        };
        let dir = self.open(true).map_err(error)?;
        let temporary = instance.temporary_state_file();
        write_new(dir.as_fd(), &temporary, bytes)
            .and_then(|()| renameat(&dir, temporary.as_bytes(), &dir, name.as_bytes()))
            .map_err(|e| {
                let _ = unlinkat(&dir, temporary.as_bytes(), UnlinkatFlags::NoRemoveDir);
                error(e)
            })
    }

    /// What was saved for `instance`, if anything readable.
    pub fn load(&self, instance: &InstanceName) -> Option<Saved> {
        let dir = self.open(false).ok()?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(&dir, instance.state_file().as_bytes(), flags, Mode::empty()).ok()?;
        let mut text = Vec::with_capacity(MAX_FILE);
        let file = std::fs::File::from(fd);
        io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE as u64 + 1), &mut text).ok()?;
        if text.len() > MAX_FILE {
            return None;
        }
        Saved::decode(std::str::from_utf8(&text).ok()?)
    }

    /// Forgets the instance (decided, or its file is stale).
    pub fn remove(&self, instance: &InstanceName) {
        if let Ok(dir) = self.open(false) {
            let name = instance.state_file();
            let _ = unlinkat(&dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// Saves the hooks queued for `instance` (`<instance>.hook`, written
    /// atomically); none: the file is removed.
    pub fn save_hooks(&self, instance: &InstanceName, jobs: &[HookJob]) -> Result<(), StateError> {
        let name = instance.hook_file();
        if jobs.is_empty() {
            if let Ok(dir) = self.open(false) {
                let _ = unlinkat(&dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir);
            }
            return Ok(());
        }
        let text: String = jobs.iter().map(encode_hook).collect();
        self.replace(instance, &name, text.as_bytes())
    }

    /// Writes `instance`'s intent file (atomically).
    pub fn save_intent(
        &self,
        instance: &InstanceName,
        intent: &SavedIntent,
    ) -> Result<(), StateError> {
        let mut text = serde_json::to_string(intent).unwrap_or_default();
        text.push('\n');
        self.replace(instance, &instance.intent_file(), text.as_bytes())
    }

    /// Removes `instance`'s intent file, if there is one.
    pub fn remove_intent(&self, instance: &InstanceName) {
        if let Ok(dir) = self.open(false) {
            let name = instance.intent_file();
            let _ = unlinkat(&dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// Every intent file's instance and content; unreadable ones are
    /// `None` (the caller removes them).
    pub fn intents(&self) -> Vec<(InstanceName, Option<SavedIntent>)> {
        self.names(InstanceName::from_intent_file)
            .into_iter()
            .map(|name| {
                let saved = self
                    .read_small(&name.intent_file(), 4 * MAX_FILE)
                    .and_then(|text| serde_json::from_str(&text).ok());
                (name, saved)
            })
            .collect()
    }

    /// Every instance's unfinished hooks (unreadable lines are skipped).
    pub fn hooks(&self) -> Vec<(InstanceName, Vec<HookJob>)> {
        let names = self.names(InstanceName::from_hook_file);
        let mut all = Vec::new();
        for name in names {
            let Some(text) = self.read_small(&name.hook_file(), 16 * MAX_FILE) else {
                continue;
            };
            let jobs: Vec<HookJob> = text.lines().filter_map(|l| decode_hook(&name, l)).collect();
            if !jobs.is_empty() {
                all.push((name, jobs));
            }
        }
        all
    }

    /// A small file of the state directory, as text (not a symlink, not
    /// longer than `max`).
    fn read_small(&self, file: &OsStr, max: usize) -> Option<String> {
        let dir = self.open(false).ok()?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(&dir, file.as_bytes(), flags, Mode::empty()).ok()?;
        let mut text = Vec::with_capacity(256);
        let file = std::fs::File::from(fd);
        io::Read::read_to_end(&mut io::Read::take(file, max as u64 + 1), &mut text).ok()?;
        if text.len() > max {
            return None;
        }
        String::from_utf8(text).ok()
    }

    /// The instances that have a state file.
    pub fn instances(&self) -> Vec<InstanceName> {
        self.names(InstanceName::from_state_file)
    }

    /// The instances with a file of the kind `of` recognizes.
    fn names(&self, of: fn(&OsStr) -> Option<InstanceName>) -> Vec<InstanceName> {
        let Ok(dir) = self.open(false) else {
            return Vec::new();
        };
        let Ok(mut entries) = nix::dir::Dir::from_fd(dir) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(Result::ok)
            .filter_map(|entry| of(OsStr::from_bytes(entry.file_name().to_bytes())))
            .collect()
    }
}

/// Writes `bytes` to a new file `name` in `dir`. Whatever was at `name`
/// (a crashed run's file, or a symlink or FIFO put there) is removed first
/// and the file made anew with `O_EXCL`: nothing is written through a
/// link, and opening a FIFO for writing cannot block the event loop.
fn write_new(dir: BorrowedFd<'_>, name: &OsStr, bytes: &[u8]) -> Result<(), Errno> {
    match unlinkat(dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let flags = OFlag::O_WRONLY
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_CLOEXEC;
    let fd = openat(dir, name.as_bytes(), flags, Mode::from_bits_truncate(0o600))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(io_errno)
}

fn io_errno(e: io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(powerdown_pending: bool, paused: bool) -> Saved {
        Saved {
            socket: SocketId { dev: 2049, ino: 77 },
            qemu: Qemu {
                pid: 4242,
                start: 123_456,
            },
            carried: Carried {
                powerdown_pending,
                paused,
                shutdown: None,
                panicked: false,
            },
        }
    }

    #[test]
    fn round_trips() {
        for (p, q) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = saved(p, q);
            assert_eq!(Saved::decode(&s.encode()), Some(s));
        }
        let mut s = saved(false, true);
        s.carried.panicked = true;
        for (guest, reason) in [
            (Some(true), Some(Reason::GuestShutdown)),
            (Some(false), Some(Reason::HostQmpQuit)),
            (None, None),
        ] {
            s.carried.shutdown = Some(ShutdownSeen {
                guest,
                reason,
                paused: false,
                powerdown_pending: true,
                panicked: false,
            });
            assert_eq!(Saved::decode(&s.encode()), Some(s), "{}", s.encode());
        }
    }

    #[test]
    fn rejects_anything_else() {
        let good =
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-\n";
        assert!(Saved::decode(good).is_some());
        for text in [
            "",
            "kvmd-state 2\n",
            "kvmd-state 1 dev=1 ino=2 powerdown=1 paused=0\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=2 paused=0 panicked=0 shutdown=-\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-",
            "kvmd-state 2 ino=2 dev=1 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-\n",
            "kvmd-state 2 dev=-1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=t,x\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=- extra=1\n",
        ] {
            assert_eq!(Saved::decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn saves_loads_lists_and_removes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::new(tmp.path().join("state"));
        let name = &InstanceName::new(OsStr::new("vm1")).expect("name");
        assert_eq!(dir.load(name), None);
        dir.save(name, &saved(true, false)).expect("save");
        assert_eq!(dir.load(name), Some(saved(true, false)));
        dir.save(name, &saved(false, true)).expect("overwrite");
        assert_eq!(dir.load(name), Some(saved(false, true)));
        assert_eq!(dir.instances(), vec![name.clone()]);
        let mode = std::fs::metadata(dir.path()).expect("stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        dir.remove(name);
        assert_eq!(dir.load(name), None);
        assert!(dir.instances().is_empty());
    }

    #[test]
    fn never_follows_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::new(tmp.path().join("state"));
        let named = |s: &str| InstanceName::new(OsStr::new(s)).expect("name");
        dir.save(&named("other"), &saved(false, false))
            .expect("save");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        std::os::unix::fs::symlink(&victim, dir.path().join("vm.new")).expect("symlink");
        dir.save(&named("vm"), &saved(true, false))
            .expect("saved beside the link, not through it");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert_eq!(dir.load(&named("vm")), Some(saved(true, false)));
        // A FIFO where the temporary file goes would block a writer's
        // open(2) for ever: it is replaced instead.
        nix::unistd::mkfifo(&dir.path().join("vm3.new"), Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        dir.save(&named("vm3"), &saved(false, true))
            .expect("saved over the FIFO");
        assert_eq!(dir.load(&named("vm3")), Some(saved(false, true)));
        std::os::unix::fs::symlink(&victim, dir.path().join("vm2.state")).expect("symlink");
        assert_eq!(dir.load(&named("vm2")), None);
    }

    #[test]
    fn an_intent_file_is_read_by_its_words_and_refused_for_others() {
        let text = |state: &str, presses: &str| {
            format!(
                "{{\"by\":\"ops\",\"given_ms\":1,\"until_ms\":2,\"dev\":3,\"ino\":4,\
                 \"pid\":5,\"start\":6,\"state\":\"{state}\",\"presses\":\"{presses}\"}}"
            )
        };
        let read = |t: &str| serde_json::from_str::<SavedIntent>(t).ok();
        let kept = read(&text("claimed", "until-shutdown")).expect("read");
        assert_eq!(
            (kept.state, kept.presses),
            (SavedIntentState::Claimed, SavedPresses::UntilShutdown)
        );
        assert_eq!(
            serde_json::to_string(&kept).ok().as_deref(),
            Some(text("claimed", "until-shutdown").as_str()),
            "written as it is read"
        );
        assert!(read(&text("waiting", "none")).is_some());
        assert!(read(&text("Claimed", "none")).is_none());
        assert!(read(&text("waiting", "always")).is_none());
    }

    #[test]
    fn a_kept_intent_comes_back_on_this_runs_clock_and_never_longer_than_a_window() {
        use crate::fleet::{IntentState, MAX_WINDOW, Presses};
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let intent = Intent {
            by: "ops".to_owned(),
            given: now,
            until: now + Duration::from_secs(60),
            socket: SocketId { dev: 1, ino: 2 },
            qemu: None,
            state: IntentState::Waiting,
            presses: Presses::None,
        };
        let kept = SavedIntent::from_intent(&intent, |at| wall + (at - now));
        // Read back by a run whose clocks stand 10 s later.
        let later = now + Duration::from_secs(10);
        let back = kept
            .to_intent(later, wall + Duration::from_secs(10))
            .expect("valid");
        assert_eq!(back.until, now + Duration::from_secs(60));
        // The wall clock set back a day meanwhile: the window would be a day
        // longer; it is cut to the longest one.
        let back = kept
            .to_intent(later, wall - Duration::from_secs(86_400))
            .expect("valid");
        assert_eq!(back.until, later + MAX_WINDOW);
    }
}
