//! The state directory: evidence that must survive a daemon restart.
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
//! and ignored. What the files say is [`kvmd_core::codec`]'s; this module
//! only keeps them.
//! Files are written atomically (temporary file, then rename) relative to
//! a descriptor of the directory, without following symlinks, and removed
//! once the instance is decided.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, mkdir, unlinkat};

use kvmd_core::codec::{self, MAX_FILE, SavedIntent};
use kvmd_core::fleet::HookJob;
use kvmd_core::name::InstanceName;
use kvmd_core::saved::Saved;

/// Why a state file could not be written.
#[derive(Debug)]
pub(crate) struct StateError {
    pub(crate) path: PathBuf,
    pub(crate) errno: Errno,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.errno)
    }
}

impl std::error::Error for StateError {}

/// The state directory (made on first use).
#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub(crate) fn new(path: PathBuf) -> StateDir {
        StateDir { path }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
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
    pub(crate) fn save(&self, instance: &InstanceName, saved: &Saved) -> Result<(), StateError> {
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
    pub(crate) fn load(&self, instance: &InstanceName) -> Option<Saved> {
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
    pub(crate) fn remove(&self, instance: &InstanceName) {
        if let Ok(dir) = self.open(false) {
            let name = instance.state_file();
            let _ = unlinkat(&dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// Saves the hooks queued for `instance` (`<instance>.hook`, written
    /// atomically); none: the file is removed.
    pub(crate) fn save_hooks(
        &self,
        instance: &InstanceName,
        jobs: &[HookJob],
    ) -> Result<(), StateError> {
        let name = instance.hook_file();
        if jobs.is_empty() {
            if let Ok(dir) = self.open(false) {
                let _ = unlinkat(&dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir);
            }
            return Ok(());
        }
        self.replace(instance, &name, codec::encode_hooks(jobs).as_bytes())
    }

    /// Writes `instance`'s intent file (atomically).
    pub(crate) fn save_intent(
        &self,
        instance: &InstanceName,
        intent: &SavedIntent,
    ) -> Result<(), StateError> {
        self.replace(
            instance,
            &instance.intent_file(),
            intent.encode().as_bytes(),
        )
    }

    /// Removes `instance`'s intent file, if there is one.
    pub(crate) fn remove_intent(&self, instance: &InstanceName) {
        if let Ok(dir) = self.open(false) {
            let name = instance.intent_file();
            let _ = unlinkat(&dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// Every intent file's instance and content; unreadable ones are
    /// `None` (the caller removes them).
    pub(crate) fn intents(&self) -> Vec<(InstanceName, Option<SavedIntent>)> {
        self.names(InstanceName::from_intent_file)
            .into_iter()
            .map(|name| {
                let saved = self
                    .read_small(&name.intent_file(), 4 * MAX_FILE)
                    .and_then(|text| SavedIntent::decode(&text));
                (name, saved)
            })
            .collect()
    }

    /// Every instance's unfinished hooks (unreadable lines are skipped).
    pub(crate) fn hooks(&self) -> Vec<(InstanceName, Vec<HookJob>)> {
        let names = self.names(InstanceName::from_hook_file);
        let mut all = Vec::new();
        for name in names {
            let Some(text) = self.read_small(&name.hook_file(), 16 * MAX_FILE) else {
                continue;
            };
            let jobs = codec::decode_hooks(&name, &text);
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
    pub(crate) fn instances(&self) -> Vec<InstanceName> {
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

    /// Evidence to store: the codec's own tests build it field by field;
    /// here it is read from the line the directory keeps.
    fn saved(powerdown_pending: bool, paused: bool) -> Saved {
        let (p, q) = (u8::from(powerdown_pending), u8::from(paused));
        let line = format!(
            "kvmd-state 2 dev=2049 ino=77 pid=4242 start=123456 powerdown={p} paused={q} \
             panicked=0 shutdown=-\n"
        );
        Saved::decode(&line).expect("a state line")
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
}
