//! The journal's files: appending with rotation, and reading them back.
//!
//! The directory holds `journal` (the live file) and `journal.1` (newest)
//! to `journal.3` (oldest). Every name is opened relative to a descriptor
//! of the directory, never following a symlink, never blocking on a FIFO,
//! and checked to be a regular file before it is used: the journal is
//! written by root, and nothing planted in its directory can make kvmd
//! write elsewhere or hang.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat, renameat};
use nix::sys::stat::{Mode, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, fsync, ftruncate, mkdir, unlinkat};

use super::record::{self, Entry, FILES, FileKind, Filter, Limits, MAX_LINE, SkipReason};

/// The live file's name.
const LIVE: &str = "journal";

/// Where a copy of the live file is made before it takes the live name.
const COPY: &str = "journal.new";

/// The most of one file `kvmd history` reads: a file of the largest
/// `--journal-max`'s share. Anything past it was not written by kvmd.
const MAX_FILE_READ: u64 = record::MAX_MAX_TOTAL / FILES;

/// Skipped lines kept for the report; more are only counted, so a file of
/// empty lines cannot fill memory.
const MAX_SKIPPED: usize = 1000;

/// The `n`th file: `journal` for 0, `journal.<n>` after.
fn file_name(n: u64) -> String {
    if n == 0 {
        LIVE.to_owned()
    } else {
        format!("{LIVE}.{n}")
    }
}

/// What was being done when a system call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    OpenDir,
    CreateDir,
    SyncDir,
    Open,
    Stat,
    Append,
    Sync,
    Rotate,
    Copy,
    Read,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::OpenDir => "open directory",
            Op::CreateDir => "create directory",
            Op::SyncDir => "sync directory",
            Op::Open => "open",
            Op::Stat => "stat",
            Op::Append => "append to",
            Op::Sync => "sync",
            Op::Rotate => "rotate",
            Op::Copy => "copy to a name of its own",
            Op::Read => "read",
        })
    }
}

/// Why the journal could not be written or read.
#[derive(Debug, PartialEq, Eq)]
pub enum JournalError {
    /// A system call failed.
    Io { op: Op, path: PathBuf, errno: Errno },
    /// Something else than a regular file stands at a journal file's name;
    /// it was left alone.
    NotRegular { path: PathBuf, kind: FileKind },
    /// The live file has more than one name even after it was copied to
    /// one of its own (someone linked it again meanwhile): appending would
    /// change the other names' file too. It was left alone.
    Linked { path: PathBuf, links: u64 },
    /// Fewer bytes written than the line has (a full file system); the
    /// part written was taken back where possible.
    ShortWrite {
        path: PathBuf,
        written: usize,
        wanted: usize,
    },
    /// The line does not fit in one file even with its free text cut.
    TooLong {
        path: PathBuf,
        bytes: usize,
        max: usize,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { op, path, errno } => {
                write!(f, "cannot {op} {}: {errno}", path.display())
            }
            JournalError::NotRegular { path, kind } => write!(
                f,
                "{} is {kind}, not a regular file: left alone",
                path.display()
            ),
            JournalError::Linked { path, links } => write!(
                f,
                "{} has {links} names (a hard link to another file?): left alone",
                path.display()
            ),
            JournalError::ShortWrite {
                path,
                written,
                wanted,
            } => write!(
                f,
                "cannot append to {}: only {written} of {wanted} bytes written",
                path.display()
            ),
            JournalError::TooLong { path, bytes, max } => write!(
                f,
                "cannot append to {}: a record of {bytes} bytes, at most {max} fit",
                path.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {}

fn io_errno(e: &io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// The journal, for appending. Holds no descriptor between appends: each
/// append finds the directory and the live file again, so a directory
/// removed or replaced while kvmd runs is simply made again.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    live: PathBuf,
    limits: Limits,
}

/// What an append did besides writing its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The line went to the live file.
    Written,
    /// The live file had other names (a hard link: a backup made with
    /// `cp -al` or `ln`). Appending to it would change the other names'
    /// file too, so it was first copied to a file of its own, which took
    /// the live name; the other names keep the old file, untouched.
    Unshared { links: u64 },
}

/// Whether an append made a new directory entry (then the directory is
/// synced too, or the line could be lost with the entry after a crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entered {
    Existing,
    New,
}

impl Journal {
    /// A journal in `dir` (created on the first append). No I/O.
    pub fn new(dir: PathBuf, limits: Limits) -> Journal {
        let live = dir.join(LIVE);
        Journal { dir, live, limits }
    }

    /// The live file, for log lines.
    pub fn path(&self) -> &Path {
        &self.live
    }

    fn error(&self, op: Op, path: &Path) -> impl Fn(Errno) -> JournalError {
        let path = path.to_owned();
        move |errno| JournalError::Io {
            op,
            path: path.clone(),
            errno,
        }
    }

    /// Appends one line and fsyncs it (and the directory when a file was
    /// created or rotated): when this returns `Ok`, the record survives a
    /// crash of the machine. Never panics, never blocks on a FIFO, never
    /// follows a symlink, never writes to a file with another name.
    pub fn append(&mut self, entry: &Entry) -> Result<Appended, JournalError> {
        let max = self.limits.max_line();
        let line = record::encode(entry, max).map_err(|e| JournalError::TooLong {
            path: self.live.clone(),
            bytes: e.bytes,
            max,
        })?;
        let (dir, mut entered) = self.open_dir()?;
        let mut appended = Appended::Written;
        let (mut file, created) = match self.open_live(&dir) {
            Err(JournalError::Linked { links, .. }) => {
                // Refusing every append from now on would leave every later
                // stop unrecorded for as long as the backup exists; setting
                // the file aside by a rotation would cost a rotated file's
                // worth of history at every backup. A copy keeps both.
                self.copy_to_own_name(&dir)?;
                appended = Appended::Unshared { links };
                entered = Entered::New;
                self.open_live(&dir)?
            }
            opened => opened?,
        };
        if created == Entered::New {
            entered = Entered::New;
        }
        let size = self.size(&file)?;
        // A line left without its newline (a crash or a full disk in the
        // middle of a write) is ended first, so this one stays whole.
        let mut bytes = Vec::with_capacity(line.len() + 1);
        if size > 0 && !Journal::ends_with_newline(&file, size) {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line.as_bytes());
        let mut size = size;
        if size > 0 && size.saturating_add(bytes.len() as u64) > self.limits.per_file() {
            self.rotate(&dir)?;
            (file, _) = self.open_live(&dir)?;
            entered = Entered::New;
            size = 0;
            bytes.clear();
            bytes.extend_from_slice(line.as_bytes());
        }
        self.write_line(&file, size, &bytes)?;
        fsync(file.as_fd()).map_err(self.error(Op::Sync, &self.live))?;
        if entered == Entered::New {
            fsync(dir.as_fd()).map_err(self.error(Op::SyncDir, &self.dir))?;
        }
        Ok(appended)
    }

    /// The directory, made (0700) if missing; `New` when it was made.
    fn open_dir(&self) -> Result<(OwnedFd, Entered), JournalError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let opened = |errno| self.error(Op::OpenDir, &self.dir)(errno);
        match open(&self.dir, flags, Mode::empty()) {
            Ok(fd) => Ok((fd, Entered::Existing)),
            Err(Errno::ENOENT) => {
                // Private to kvmd's user (root), as the state directory is.
                match mkdir(&self.dir, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(self.error(Op::CreateDir, &self.dir)(e)),
                }
                let fd = open(&self.dir, flags, Mode::empty()).map_err(opened)?;
                // The new directory's own entry, in its parent.
                if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let parent_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                    open(parent, parent_flags, Mode::empty())
                        .and_then(|p| fsync(p.as_fd()))
                        .map_err(self.error(Op::SyncDir, parent))?;
                }
                Ok((fd, Entered::New))
            }
            Err(e) => Err(opened(e)),
        }
    }

    /// The live file for appending, created (0600) if missing.
    fn open_live(&self, dir: &OwnedFd) -> Result<(File, Entered), JournalError> {
        // O_NONBLOCK: a FIFO is opened without waiting for a reader (then
        // refused by its fstat); O_NOFOLLOW: a symlink fails (ELOOP);
        // O_NOCTTY: a terminal planted there cannot become the detached
        // daemon's controlling terminal. Read and write: the last byte is
        // looked at before appending.
        let flags = OFlag::O_RDWR
            | OFlag::O_APPEND
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let mut entered = Entered::Existing;
        let opened = match openat(dir, LIVE, flags, Mode::empty()) {
            Err(Errno::ENOENT) => {
                entered = Entered::New;
                let create = flags | OFlag::O_CREAT | OFlag::O_EXCL;
                match openat(dir, LIVE, create, Mode::from_bits_truncate(0o600)) {
                    Err(Errno::EEXIST) => {
                        entered = Entered::Existing;
                        openat(dir, LIVE, flags, Mode::empty())
                    }
                    other => other,
                }
            }
            other => other,
        };
        let fd = opened.map_err(|errno| self.not_regular(dir, errno))?;
        let stat = fstat(&fd).map_err(self.error(Op::Stat, &self.live))?;
        if let Some(kind) = FileKind::of_mode(stat.st_mode) {
            return Err(JournalError::NotRegular {
                path: self.live.clone(),
                kind,
            });
        }
        if stat.st_nlink > 1 {
            // nlink_t is u64 on x86_64 but u32 on aarch64.
            #[allow(clippy::useless_conversion)]
            let links = u64::from(stat.st_nlink);
            return Err(JournalError::Linked {
                path: self.live.clone(),
                links,
            });
        }
        Ok((File::from(fd), entered))
    }

    /// An open's failure: what stands at the name when it is not a file,
    /// else the errno.
    fn not_regular(&self, dir: &OwnedFd, errno: Errno) -> JournalError {
        match fstatat(dir, LIVE, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileKind::of_mode(stat.st_mode) {
                Some(kind) => JournalError::NotRegular {
                    path: self.live.clone(),
                    kind,
                },
                None => self.error(Op::Open, &self.live)(errno),
            },
            Err(_) => self.error(Op::Open, &self.live)(errno),
        }
    }

    fn size(&self, file: &File) -> Result<u64, JournalError> {
        let stat = fstat(file).map_err(self.error(Op::Stat, &self.live))?;
        Ok(u64::try_from(stat.st_size).unwrap_or(0))
    }

    /// Whether the file's last byte is a newline; when it cannot be read,
    /// no: a needless newline makes an empty line, which readers skip.
    fn ends_with_newline(file: &File, size: u64) -> bool {
        let mut last = [0u8];
        let read = std::os::unix::fs::FileExt::read_at(file, &mut last, size.saturating_sub(1));
        matches!(read, Ok(1)) && last[0] == b'\n'
    }

    /// The live file copied to `journal.new`, synced, then renamed over
    /// `journal`: the rename replaces this directory's name only, so the
    /// other names keep the old file, which kvmd never writes again. At
    /// most one file's share is copied: more was not written by kvmd.
    fn copy_to_own_name(&self, dir: &OwnedFd) -> Result<(), JournalError> {
        let failed = |errno| self.error(Op::Copy, &self.live)(errno);
        let read_flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let old =
            openat(dir, LIVE, read_flags, Mode::empty()).map_err(|e| self.not_regular(dir, e))?;
        let stat = fstat(&old).map_err(self.error(Op::Stat, &self.live))?;
        if let Some(kind) = FileKind::of_mode(stat.st_mode) {
            return Err(JournalError::NotRegular {
                path: self.live.clone(),
                kind,
            });
        }
        let mut bytes = Vec::new();
        File::from(old)
            .take(self.limits.per_file())
            .read_to_end(&mut bytes)
            .map_err(|e| failed(io_errno(&e)))?;
        // A copy a crash left behind is only this directory's name.
        let _ = unlinkat(dir, COPY, UnlinkatFlags::NoRemoveDir);
        let write_flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let new =
            openat(dir, COPY, write_flags, Mode::from_bits_truncate(0o600)).map_err(failed)?;
        let mut new = File::from(new);
        let copied = std::io::Write::write_all(&mut new, &bytes)
            .map_err(|e| io_errno(&e))
            .and_then(|()| fsync(new.as_fd()))
            .and_then(|()| renameat(dir, COPY, dir, LIVE));
        if let Err(errno) = copied {
            let _ = unlinkat(dir, COPY, UnlinkatFlags::NoRemoveDir);
            return Err(failed(errno));
        }
        Ok(())
    }

    /// `journal.2` → `journal.3`, `journal.1` → `journal.2`, `journal` →
    /// `journal.1`; the oldest is dropped. Renames never follow symlinks
    /// (a symlink planted as `journal.2` moves as a symlink).
    fn rotate(&self, dir: &OwnedFd) -> Result<(), JournalError> {
        let oldest = file_name(FILES - 1);
        match unlinkat(dir, oldest.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(self.error(Op::Rotate, &self.dir.join(&oldest))(e)),
        }
        for n in (0..FILES - 1).rev() {
            let (from, to) = (file_name(n), file_name(n + 1));
            match renameat(dir, from.as_str(), dir, to.as_str()) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.error(Op::Rotate, &self.dir.join(&from))(e)),
            }
        }
        Ok(())
    }

    /// One `write` of the whole line; a short one is taken back.
    fn write_line(&self, file: &File, size: u64, bytes: &[u8]) -> Result<(), JournalError> {
        let written = loop {
            match nix::unistd::write(file, bytes) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        match written {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => {
                // Best effort: a part left behind is ended by the next
                // append's newline and skipped by readers.
                let _ = ftruncate(file, i64::try_from(size).unwrap_or(i64::MAX));
                Err(JournalError::ShortWrite {
                    path: self.live.clone(),
                    written: n,
                    wanted: bytes.len(),
                })
            }
            Err(e) => Err(self.error(Op::Append, &self.live)(e)),
        }
    }
}

/// One file's problem, or one line's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub(crate) file: PathBuf,
    /// 1-based; 0 for the whole file.
    pub(crate) line: u64,
    pub(crate) why: SkipReason,
}

/// What [`read`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Read {
    /// Oldest first (in the order written, across rotated files).
    pub entries: Vec<Entry>,
    /// The first lines (and files) not taken, in the order met.
    pub skipped: Vec<Skipped>,
    /// Further lines not taken beyond those listed in `skipped`.
    pub(crate) skipped_more: u64,
    /// The files read, oldest first: none when there is no journal yet.
    pub(crate) files: Vec<PathBuf>,
}

impl Read {
    fn skip(&mut self, file: &Path, line: u64, why: SkipReason) {
        if self.skipped.len() < MAX_SKIPPED {
            self.skipped.push(Skipped {
                file: file.to_owned(),
                line,
                why,
            });
        } else {
            self.skipped_more += 1;
        }
    }
}

/// The journal in `dir`, oldest record first, filtered. A missing
/// directory or no file is an empty [`Read`] (no files); a directory that
/// cannot be read, or a file that cannot, is an error. Bad lines and
/// anything but a regular file at a journal name are skipped and listed.
pub fn read(dir: &Path, filter: &Filter) -> Result<Read, JournalError> {
    let mut read = Read::default();
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir_fd = match open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(read),
        Err(errno) => {
            return Err(JournalError::Io {
                op: Op::OpenDir,
                path: dir.to_owned(),
                errno,
            });
        }
    };
    // Opened newest first: a rotation meanwhile moves files to higher
    // numbers, opened later, so none is missed; one seen twice (the same
    // inode under two names) is read once.
    let mut files: Vec<(PathBuf, File, u64)> = Vec::new();
    let mut seen = Vec::new();
    for n in 0..FILES {
        let name = file_name(n);
        let path = dir.join(&name);
        // Never waits on a FIFO, never follows a symlink (see Journal).
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match openat(&dir_fd, name.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(Errno::ELOOP) => {
                read.skip(&path, 0, SkipReason::NotRegularFile(FileKind::Symlink));
                continue;
            }
            Err(errno) => {
                return Err(JournalError::Io {
                    op: Op::Open,
                    path,
                    errno,
                });
            }
        };
        let stat = fstat(&fd).map_err(|errno| JournalError::Io {
            op: Op::Stat,
            path: path.clone(),
            errno,
        })?;
        if let Some(kind) = FileKind::of_mode(stat.st_mode) {
            read.skip(&path, 0, SkipReason::NotRegularFile(kind));
            continue;
        }
        let id = (stat.st_dev, stat.st_ino);
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        files.push((path, File::from(fd), size));
    }
    // The skips met while opening were newest first too.
    read.skipped.reverse();
    for (path, file, size) in files.into_iter().rev() {
        read_file(&path, file, size, filter, &mut read)?;
        read.files.push(path);
    }
    Ok(read)
}

fn read_file(
    path: &Path,
    file: File,
    size: u64,
    filter: &Filter,
    read: &mut Read,
) -> Result<(), JournalError> {
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(MAX_FILE_READ));
    let mut buffer = Vec::with_capacity(1024);
    let mut number = 0u64;
    let too_large = size > MAX_FILE_READ;
    loop {
        let got =
            next_line(&mut reader, MAX_LINE - 1, &mut buffer).map_err(|e| JournalError::Io {
                op: Op::Read,
                path: path.to_owned(),
                errno: io_errno(&e),
            })?;
        number += 1;
        match got {
            Line::End => break,
            Line::Whole => match record::decode(&buffer) {
                Ok(entry) if filter.matches(&entry) => read.entries.push(entry),
                Ok(_) => {}
                Err(why) => read.skip(path, number, why),
            },
            Line::TooLong { bytes } => read.skip(path, number, SkipReason::TooLong { bytes }),
            // The cap, not a crash, cut this one: said once, below.
            Line::Unterminated if too_large => break,
            Line::Unterminated => read.skip(path, number, SkipReason::Truncated),
        }
    }
    if too_large {
        read.skip(
            path,
            number,
            SkipReason::FileTooLarge {
                read: MAX_FILE_READ,
            },
        );
    }
    Ok(())
}

/// How [`next_line`] found a line.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// In the buffer, without its newline.
    Whole,
    /// Longer than the cap: only counted (bytes without the newline).
    TooLong {
        bytes: u64,
    },
    /// The input ended without a newline (the buffer holds the start).
    Unterminated,
    End,
}

/// The next line of `reader`, at most `cap` bytes of it kept in `buffer`;
/// the rest of a longer line is read past, never held.
fn next_line(reader: &mut impl BufRead, cap: usize, buffer: &mut Vec<u8>) -> io::Result<Line> {
    buffer.clear();
    let mut bytes = 0u64;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if bytes == 0 {
                Line::End
            } else {
                Line::Unterminated
            });
        }
        let newline = memchr::memchr(b'\n', chunk);
        let content = newline.unwrap_or(chunk.len());
        let room = cap.saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..content.min(room)]);
        bytes += content as u64;
        reader.consume(newline.map_or(content, |i| i + 1));
        if newline.is_some() {
            return Ok(if bytes > cap as u64 {
                Line::TooLong { bytes }
            } else {
                Line::Whole
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::journal::record::{IntentNote, What};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn tmpfs() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("kvmd-journal-")
            .tempdir_in("/dev/shm")
            .expect("tmpfs dir")
    }

    fn entry(n: u64, instance: &str) -> Entry {
        Entry {
            at: UNIX_EPOCH + Duration::from_secs(1_796_408_400 + n),
            instance: instance.to_owned(),
            qemu: Some((1000 + n as u32, n)),
            what: What::Verdict {
                user: n.is_multiple_of(2),
                reason: "guest-poweroff".to_owned(),
                why: "the guest powered itself off".to_owned(),
                evidence: format!("record {n:06}"),
                intent: n.is_multiple_of(3).then(|| IntentNote {
                    by: "node-shutdown".to_owned(),
                    given: UNIX_EPOCH + Duration::from_secs(1_796_408_000),
                }),
            },
        }
    }

    fn number(entry: &Entry) -> u64 {
        match &entry.what {
            What::Verdict { evidence, .. } => evidence["record ".len()..].parse().expect("n"),
            What::GuestCrash { .. } => panic!("a verdict"),
        }
    }

    fn total_size(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").metadata().expect("stat").len())
            .sum()
    }

    #[test]
    fn appends_and_reads_back_oldest_first() {
        let tmp = tmpfs();
        let dir = tmp.path().join("state");
        let mut journal = Journal::new(dir.clone(), Limits::default());
        assert_eq!(journal.path(), dir.join("journal"));
        assert!(!dir.exists(), "new() does no I/O");
        for n in 0..10 {
            journal.append(&entry(n, "vm1")).expect("append");
        }
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(
            got.entries,
            (0..10).map(|n| entry(n, "vm1")).collect::<Vec<_>>()
        );
        assert!(got.skipped.is_empty());
        assert_eq!(got.files, vec![dir.join("journal")]);
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("journal")), 0o600);
        let text = std::fs::read_to_string(dir.join("journal")).expect("read");
        assert_eq!(text.lines().count(), 10);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn filling_past_the_bound_keeps_the_newest_within_it() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        let limits = Limits { max_total: 16_384 };
        let mut journal = Journal::new(dir.clone(), limits);
        let line_len = record::encode(&entry(0, "vm1"), MAX_LINE)
            .expect("fits")
            .len() as u64;
        // Twenty times what the bound holds.
        let count = 20 * limits.max_total / line_len;
        for n in 0..count {
            journal.append(&entry(n, "vm1")).expect("append");
            assert!(
                total_size(&dir) <= limits.max_total,
                "after {n}: {} bytes",
                total_size(&dir)
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["journal", "journal.1", "journal.2", "journal.3"]);
        for name in &names {
            let size = std::fs::metadata(dir.join(name)).expect("stat").len();
            assert!(size <= limits.per_file(), "{name}: {size}");
        }
        let got = read(&dir, &Filter::default()).expect("read");
        assert!(got.skipped.is_empty(), "{:?}", got.skipped);
        let numbers: Vec<u64> = got.entries.iter().map(number).collect();
        // The newest is kept, the rest run back without a gap, and the
        // oldest are gone: at least three full files' worth are kept.
        assert_eq!(numbers.last(), Some(&(count - 1)));
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        assert!(numbers[0] > 0, "the oldest were dropped");
        let per_file = limits.per_file() / line_len;
        assert!(numbers.len() as u64 > 3 * per_file, "{}", numbers.len());
        assert_eq!(
            got.files,
            ["journal.3", "journal.2", "journal.1", "journal"].map(|n| dir.join(n))
        );
    }

    #[test]
    fn an_oversized_record_is_cut_not_the_bound() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        let limits = Limits { max_total: 8192 };
        let mut journal = Journal::new(dir.clone(), limits);
        let mut big = entry(1, "vm1");
        if let What::Verdict { evidence, .. } = &mut big.what {
            *evidence = "x".repeat(100_000);
        }
        journal.append(&entry(0, "vm1")).expect("append");
        journal.append(&big).expect("cut to fit");
        journal.append(&entry(2, "vm1")).expect("append");
        assert!(total_size(&dir) <= limits.max_total);
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(got.entries.len(), 3);
        let What::Verdict { evidence, .. } = &got.entries[1].what else {
            panic!("a verdict");
        };
        assert!(evidence.ends_with(" [cut]") && evidence.len() < 2048);
        // What cannot be cut is refused, and the journal is untouched.
        let mut absurd = entry(3, &"v".repeat(3000));
        absurd.what = What::GuestCrash {
            event: "GUEST_PANICKED".to_owned(),
            action: None,
        };
        let before = total_size(&dir);
        let err = journal.append(&absurd).expect_err("too long");
        assert!(
            matches!(err, JournalError::TooLong { max: 2048, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&dir.join("journal").display().to_string())
        );
        assert_eq!(total_size(&dir), before);
    }

    #[test]
    fn a_line_cut_off_by_a_crash_is_ended_not_joined() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        let mut journal = Journal::new(dir.clone(), Limits::default());
        journal.append(&entry(0, "vm1")).expect("append");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("journal"))
            .expect("open");
        std::io::Write::write_all(&mut file, b"{\"v\":1,\"at\":\"2026-").expect("write");
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(got.entries.len(), 1);
        assert_eq!(
            got.skipped,
            [Skipped {
                file: dir.join("journal"),
                line: 2,
                why: SkipReason::Truncated
            }]
        );
        journal.append(&entry(1, "vm1")).expect("append");
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(got.entries, [entry(0, "vm1"), entry(1, "vm1")]);
        assert_eq!(got.skipped.len(), 1);
        assert_eq!(got.skipped[0].line, 2);
        assert_eq!(got.skipped[0].why, SkipReason::NotJson);
    }

    fn ino(path: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("stat"))
    }

    #[test]
    fn a_live_file_with_another_name_is_copied_to_its_own_never_written() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        let mut journal = Journal::new(dir.clone(), Limits::default());
        journal.append(&entry(0, "vm1")).expect("append");
        let backup = tmp.path().join("backup");
        std::fs::hard_link(dir.join("journal"), &backup).expect("link");
        let kept = std::fs::read(&backup).expect("read");
        assert_eq!(
            journal.append(&entry(1, "vm1")),
            Ok(Appended::Unshared { links: 2 })
        );
        assert_eq!(journal.append(&entry(2, "vm1")), Ok(Appended::Written));
        // The other name's file is as it was; the live name is a file of
        // its own, with every record, and no rotation was spent on it.
        assert_eq!(std::fs::read(&backup).expect("read"), kept);
        assert_ne!(ino(&dir.join("journal")), ino(&backup));
        assert!(!dir.join("journal.1").exists());
        assert!(!dir.join(COPY).exists());
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(
            got.entries,
            [entry(0, "vm1"), entry(1, "vm1"), entry(2, "vm1")]
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("journal"))
                .expect("stat")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_hard_link_backup_of_every_file_is_left_as_it_was() {
        // `cp -al` links every file: only the live one is copied to a name
        // of its own; none of the backup's files is written.
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        std::fs::create_dir(&dir).expect("mkdir");
        let backup = tmp.path().join("backup");
        std::fs::create_dir(&backup).expect("mkdir");
        for n in (0..FILES).rev() {
            let name = file_name(n);
            let mut journal = Journal::new(dir.clone(), Limits::default());
            journal.append(&entry(10 - n, &name)).expect("append");
            if n > 0 {
                std::fs::rename(dir.join("journal"), dir.join(&name)).expect("rename");
            }
        }
        for n in 0..FILES {
            let name = file_name(n);
            std::fs::hard_link(dir.join(&name), backup.join(&name)).expect("link");
        }
        let before: Vec<Vec<u8>> = (0..FILES)
            .map(|n| std::fs::read(backup.join(file_name(n))).expect("read"))
            .collect();
        let mut journal = Journal::new(dir.clone(), Limits::default());
        assert_eq!(
            journal.append(&entry(11, "new")),
            Ok(Appended::Unshared { links: 2 })
        );
        for (n, was) in before.iter().enumerate() {
            let now = std::fs::read(backup.join(file_name(n as u64))).expect("read");
            assert_eq!(&now, was, "{}", file_name(n as u64));
        }
        let got = read(&dir, &Filter::default()).expect("read");
        let names: Vec<String> = got.entries.iter().map(|e| e.instance.clone()).collect();
        assert_eq!(
            names,
            ["journal.3", "journal.2", "journal.1", "journal", "new"]
        );
    }

    #[test]
    fn a_live_file_linked_again_is_said_so() {
        let err = JournalError::Linked {
            path: PathBuf::from("/j/journal"),
            links: 3,
        };
        assert_eq!(
            err.to_string(),
            "/j/journal has 3 names (a hard link to another file?): left alone"
        );
    }

    #[test]
    fn nothing_but_a_regular_file_is_written_to() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        std::fs::create_dir(&dir).expect("mkdir");
        let live = dir.join("journal");
        let mut journal = Journal::new(dir.clone(), Limits::default());

        // A symlink: not followed, its target untouched.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        std::os::unix::fs::symlink(&victim, &live).expect("symlink");
        let err = journal.append(&entry(0, "vm1")).expect_err("symlink");
        assert_eq!(
            err,
            JournalError::NotRegular {
                path: live.clone(),
                kind: FileKind::Symlink
            }
        );
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        std::fs::remove_file(&live).expect("rm");

        // A FIFO with no reader: refused at once, not waited on.
        nix::unistd::mkfifo(&live, Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let err = journal.append(&entry(0, "vm1")).expect_err("fifo");
        assert_eq!(
            err,
            JournalError::NotRegular {
                path: live.clone(),
                kind: FileKind::Fifo
            }
        );
        // With a reader, the open succeeds and fstat refuses it.
        let reader = open(
            &live,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open fifo");
        let err = journal.append(&entry(0, "vm1")).expect_err("fifo");
        assert!(matches!(
            err,
            JournalError::NotRegular {
                kind: FileKind::Fifo,
                ..
            }
        ));
        let mut buf = [0u8; 16];
        // Empty (EAGAIN), or no writer left (0): nothing was written.
        let got = nix::unistd::read(&reader, &mut buf);
        assert!(matches!(got, Ok(0) | Err(Errno::EAGAIN)), "{got:?}");
        drop(reader);
        std::fs::remove_file(&live).expect("rm");

        // A directory.
        std::fs::create_dir(&live).expect("mkdir");
        let err = journal.append(&entry(0, "vm1")).expect_err("dir");
        assert_eq!(
            err.to_string(),
            format!(
                "{} is a directory, not a regular file: left alone",
                live.display()
            )
        );
    }

    #[test]
    fn reading_skips_what_is_not_a_file_and_reads_the_rest() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        let mut journal = Journal::new(dir.clone(), Limits::default());
        journal.append(&entry(5, "vm1")).expect("append");
        let victim = tmp.path().join("victim");
        std::fs::write(
            &victim,
            record::encode(&entry(1, "vm9"), MAX_LINE).expect("line"),
        )
        .expect("write");
        std::os::unix::fs::symlink(&victim, dir.join("journal.2")).expect("symlink");
        nix::unistd::mkfifo(&dir.join("journal.1"), Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        std::fs::create_dir(dir.join("journal.3")).expect("mkdir");
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(
            got.entries,
            [entry(5, "vm1")],
            "the symlink's target not read"
        );
        let skipped: Vec<(String, SkipReason)> = got
            .skipped
            .iter()
            .map(|s| {
                (
                    s.file.file_name().expect("name").to_string_lossy().into(),
                    s.why,
                )
            })
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    "journal.3".into(),
                    SkipReason::NotRegularFile(FileKind::Directory)
                ),
                (
                    "journal.2".into(),
                    SkipReason::NotRegularFile(FileKind::Symlink)
                ),
                (
                    "journal.1".into(),
                    SkipReason::NotRegularFile(FileKind::Fifo)
                ),
            ]
        );
    }

    #[test]
    fn reading_a_missing_or_wrong_directory() {
        let tmp = tmpfs();
        let missing = read(&tmp.path().join("none"), &Filter::default()).expect("no journal");
        assert_eq!(missing, Read::default());
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").expect("write");
        assert!(matches!(
            read(&file, &Filter::default()),
            Err(JournalError::Io {
                op: Op::OpenDir,
                errno: Errno::ENOTDIR,
                ..
            })
        ));
    }

    #[test]
    fn filters_apply_while_reading() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        let mut journal = Journal::new(dir.clone(), Limits::default());
        for n in 0..6 {
            journal
                .append(&entry(n, if n % 2 == 0 { "vm1" } else { "vm2" }))
                .expect("append");
        }
        let filter = Filter {
            instance: Some("vm2".to_owned()),
            since: Some(UNIX_EPOCH + Duration::from_secs(1_796_408_402)),
        };
        let got = read(&dir, &filter).expect("read");
        assert_eq!(got.entries, [entry(3, "vm2"), entry(5, "vm2")]);
    }

    #[test]
    fn lines_are_read_within_their_cap() {
        let mut input: &[u8] = b"abc\n\nxxxxxxxxxx\nlast";
        let mut buffer = Vec::new();
        let mut next = || {
            let line = next_line(&mut input, 5, &mut buffer).expect("read");
            (line, String::from_utf8_lossy(&buffer).into_owned())
        };
        assert_eq!(next(), (Line::Whole, "abc".into()));
        assert_eq!(next(), (Line::Whole, String::new()));
        assert_eq!(next(), (Line::TooLong { bytes: 10 }, "xxxxx".into()));
        assert_eq!(next(), (Line::Unterminated, "last".into()));
        assert_eq!(next(), (Line::End, String::new()));
        // A long line across many small reads is never held whole.
        let long = [vec![b'y'; 1 << 20], b"\nok\n".to_vec()].concat();
        let mut reader = BufReader::with_capacity(7, &long[..]);
        let mut buffer = Vec::new();
        assert_eq!(
            next_line(&mut reader, 100, &mut buffer).expect("read"),
            Line::TooLong { bytes: 1 << 20 }
        );
        assert!(buffer.len() <= 100 && buffer.capacity() < 4096);
        assert_eq!(
            next_line(&mut reader, 100, &mut buffer).expect("read"),
            Line::Whole
        );
        assert_eq!(buffer, b"ok");
    }

    #[test]
    fn a_file_seen_under_two_names_is_read_once() {
        // What a rotation between opening `journal` and `journal.1` looks
        // like to a reader: the same file under both names.
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        let mut journal = Journal::new(dir.clone(), Limits::default());
        journal.append(&entry(0, "vm1")).expect("append");
        std::fs::hard_link(dir.join("journal"), dir.join("journal.1")).expect("link");
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(got.entries, [entry(0, "vm1")]);
        assert_eq!(got.files, [dir.join("journal")]);
    }

    #[test]
    fn too_many_bad_lines_are_counted_not_kept() {
        let tmp = tmpfs();
        let dir = tmp.path().join("j");
        std::fs::create_dir(&dir).expect("mkdir");
        let garbage = "x\n".repeat(MAX_SKIPPED + 5);
        std::fs::write(dir.join("journal"), garbage).expect("write");
        let got = read(&dir, &Filter::default()).expect("read");
        assert_eq!(got.skipped.len(), MAX_SKIPPED);
        assert_eq!(got.skipped_more, 5);
    }

    #[test]
    fn errors_name_the_path_and_the_errno() {
        let err = JournalError::Io {
            op: Op::Append,
            path: PathBuf::from("/run/kvmd-state/journal"),
            errno: Errno::ENOSPC,
        };
        assert_eq!(
            err.to_string(),
            "cannot append to /run/kvmd-state/journal: ENOSPC: No space left on device"
        );
        let _: &dyn std::error::Error = &err;
        let _ = SystemTime::now();
    }
}
