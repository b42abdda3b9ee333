//! What the probes found, as plain data, and the pure parsers that turn
//! the texts they read (a QEMU command line, `/proc/net/unix`, dpkg's
//! diversions, a status answer, a metrics file) into it.
//!
//! This module owns the boundary between the doctor's I/O
//! ([`super::probe`]) and its judgement ([`super::checks`]): everything a
//! check needs is here, so every check can be tested with made-up facts.
//! Names from outside (instances, file names, command lines) are kept
//! escaped, as kvmd's log shows them, from the moment they are read.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use kvmd_core::control::WatchState;
use kvmd_core::control::schema::{Status, VerdictStatus};
use kvmd_core::decision::VerdictKind;

/// Bytes as kvmd's log shows them: printable ASCII as is, anything else
/// escaped (`new\nline`, `vm\xff`), so a hostile name cannot forge a line
/// or send escape sequences to a terminal.
pub(crate) fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// At most `max` characters of an escaped name, with how long it was.
pub(crate) fn shortened(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_owned();
    }
    let cut: String = name.chars().take(max).collect();
    format!("{cut}… ({} characters)", name.chars().count())
}

/// Whether the doctor runs for a Ganeti node or standalone (`--no-ssconf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Ganeti,
    Standalone,
}

/// A probe's answer: what it found, or that it did not answer in time
/// (a hung network file system, a process holding its memory lock).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Probed<T> {
    Got(T),
    NoAnswer,
}

/// Everything the checks look at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Facts {
    pub(crate) mode: Mode,
    /// The control directory asked about, as given.
    pub(crate) ctrl_dir: String,
    /// kvmd's log file, as configured (escaped): where it says why it
    /// stopped.
    pub(crate) log_file: String,
    /// inotify watches kvmd needs for it: one per directory from `/` down.
    pub(crate) watches_needed: u64,
    /// Who runs the doctor (what it may read depends on it).
    pub(crate) doctor_uid: u32,
    /// `--socket-owner`: users besides kvmd's own whose sockets it trusts.
    pub(crate) socket_owners: Vec<u32>,
    /// Only this instance (escaped), when one was named.
    pub(crate) instance: Option<String>,
    /// Whether the flags were taken from a running daemon's command line.
    pub(crate) adopted: Adoption,
    pub(crate) daemon: Probed<DaemonFacts>,
    pub(crate) ganeti: Option<Probed<GanetiFacts>>,
    pub(crate) dir: Probed<DirFacts>,
    pub(crate) entries: Probed<Entries>,
    pub(crate) inotify: Probed<InotifyFacts>,
    pub(crate) qemus: Probed<Vec<QemuFacts>>,
    /// `None`: `/proc/net/unix` could not be read.
    pub(crate) unix: Option<UnixSockets>,
    /// Whether the running daemon's own command line was read (for its
    /// hook and metrics file, when the doctor was given none).
    pub(crate) daemon_flags: DaemonFlags,
    /// The state directory (the running daemon's, else the doctor's).
    pub(crate) state_dir: Probed<StateDirFacts>,
    pub(crate) hook: Option<Probed<HookFacts>>,
    pub(crate) metrics: Option<Probed<MetricsFacts>>,
    /// Seconds since the epoch, when the facts were gathered.
    pub(crate) now: f64,
}

/// Where the doctor's paths came from, when it was given no flags.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Adoption {
    /// From its flags, or their defaults (no daemon answered elsewhere).
    Flags,
    /// From the command line of kvmd `pid`, which answered on a default
    /// control socket.
    Daemon { pid: u32 },
    /// A daemon holds another default control socket (escaped) but did
    /// not say where it looks: the defaults may not be its paths.
    Unasked { socket: String, control: Control },
}

/// The running daemon's own command line, as far as the doctor got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DaemonFlags {
    /// No daemon was found to read it from.
    NoDaemon,
    Read,
    /// A daemon runs (or may: the doctor could not tell), but its command
    /// line was not read.
    Unread,
}

impl DaemonFlags {
    /// What became of the daemon's command line, from what was found of
    /// the daemon and whether its command line was `read`.
    pub(crate) fn of(daemon: &Probed<DaemonFacts>, read: bool) -> DaemonFlags {
        if read {
            return DaemonFlags::Read;
        }
        let Probed::Got(d) = daemon else {
            return DaemonFlags::Unread;
        };
        match &d.process {
            // Ganeti's original has neither hooks nor metrics to read.
            Some(p) if p.kind == BinaryKind::GanetiOriginal => DaemonFlags::NoDaemon,
            Some(p) if p.is_daemon() => DaemonFlags::Unread,
            // None for sure: nobody at the control socket.
            _ if matches!(d.control, Control::Absent | Control::Refused) => DaemonFlags::NoDaemon,
            // One answered, or something refused this user: one may run.
            _ => DaemonFlags::Unread,
        }
    }
}

/// The pid file, the process it names, and the control socket.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DaemonFacts {
    pub(crate) pid_file: String,
    pub(crate) pid: PidFile,
    /// The process the pid file names, when it exists.
    pub(crate) process: Option<ProcessFacts>,
    pub(crate) control_socket: String,
    pub(crate) control: Control,
}

/// What the pid file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PidFile {
    Missing,
    Unreadable(String),
    /// A FIFO, a directory, a symlink: not read (a FIFO would block).
    NotAFile(&'static str),
    /// Not a pid (escaped, shortened).
    Garbage(String),
    Pid(u32),
}

/// A live process a pid file names.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProcessFacts {
    pub(crate) pid: u32,
    /// `/proc/<pid>/comm`, escaped.
    pub(crate) comm: String,
    pub(crate) uid: Option<u32>,
    pub(crate) exe: Exe,
    /// What its binary is, when it could be read.
    pub(crate) kind: BinaryKind,
    /// Its binary's device and inode (`stat /proc/<pid>/exe`).
    pub(crate) exe_id: Option<(u64, u64)>,
    /// Seconds since the epoch it started at (from /proc).
    pub(crate) started: Option<f64>,
}

impl ProcessFacts {
    /// Whether it looks like a KVM daemon at all: kvmd or Ganeti's.
    pub(crate) fn is_daemon(&self) -> bool {
        matches!(self.kind, BinaryKind::Kvmd | BinaryKind::GanetiOriginal)
            || matches!(self.comm.as_str(), "kvmd" | "ganeti-kvmd")
    }
}

/// A process's binary path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Exe {
    /// `replaced`: the kernel says `(deleted)`, the file was replaced since.
    Path {
        path: String,
        replaced: bool,
    },
    Unreadable(String),
}

/// What a daemon binary is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryKind {
    /// kvmd (any version): it carries kvmd's marker.
    Kvmd,
    /// Not kvmd, but names Ganeti: Debian's Haskell `ganeti-kvmd`.
    GanetiOriginal,
    /// Neither.
    Other,
    /// It could not be read.
    Unknown,
}

/// The text of kvmd's `--version`: every kvmd binary carries it, so it
/// tells kvmd from Ganeti's original without running either.
pub(crate) const KVMD_MARKER: &[u8] = b"A drop-in replacement for Ganeti's ganeti-kvmd.";

/// The Haskell module of Ganeti's own daemon, as GHC names it in every
/// `ganeti-kvmd` binary (3.0 and 3.1 alike).
pub(crate) const GANETI_MARKER: &[u8] = b"Ganeti.Runtime.GanetiKvmd";

/// What a binary's bytes say it is (kvmd's marker first: kvmd carries
/// Ganeti's too, in this very constant).
pub(crate) fn binary_kind(bytes: &[u8]) -> BinaryKind {
    if memchr::memmem::find(bytes, KVMD_MARKER).is_some() {
        BinaryKind::Kvmd
    } else if memchr::memmem::find(bytes, GANETI_MARKER).is_some() {
        BinaryKind::GanetiOriginal
    } else {
        BinaryKind::Other
    }
}

/// What the control socket answered.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Control {
    Status(StatusFacts),
    /// Nothing there.
    Absent,
    /// A socket file nobody listens on (left by a kvmd that was killed).
    Refused,
    /// Not allowed to connect, or refused as another user.
    Denied,
    /// Too many clients, or its queue full.
    Busy,
    /// Connected, but no answer within the deadline.
    NoAnswer,
    /// An answer that is not a status (escaped, shortened).
    Garbled(String),
    Failed(String),
}

/// The parts of a status answer the doctor uses.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StatusFacts {
    pub(crate) version: String,
    pub(crate) pid: u32,
    pub(crate) uptime_seconds: u64,
    pub(crate) ctrl_dir: String,
    /// How kvmd follows its directory; `None`: a state this doctor does
    /// not know (or none said).
    pub(crate) watch: Option<WatchState>,
    pub(crate) descriptor_shortage: bool,
    pub(crate) instances: Vec<StatusInstance>,
    pub(crate) given_up: Vec<String>,
    /// Oldest first, as the daemon lists them.
    pub(crate) verdicts: Vec<StatusVerdict>,
    /// Whether `ctrl_dir` is the directory the doctor looks at (same
    /// device and inode); `None` when either could not be looked at.
    pub(crate) same_dir: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatusInstance {
    pub(crate) name: String,
    pub(crate) phase: String,
    pub(crate) since_seconds: u64,
    pub(crate) qemu: Option<String>,
    pub(crate) qemu_pid: Option<u32>,
    pub(crate) guest: Option<String>,
    pub(crate) last_verdict: Option<StatusVerdict>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatusVerdict {
    pub(crate) name: String,
    pub(crate) user: bool,
    pub(crate) reason: String,
    pub(crate) why: String,
    pub(crate) age_seconds: u64,
    pub(crate) file: String,
    pub(crate) file_error: Option<String>,
}

fn verdict(v: &VerdictStatus) -> Option<StatusVerdict> {
    if v.name.is_empty() {
        return None;
    }
    Some(StatusVerdict {
        name: v.name.clone(),
        // Anything but `user` (a newer kvmd's word included) is not the
        // user's; no verdict at all is no verdict.
        user: v.verdict.text()?.parse() == Ok(VerdictKind::User),
        reason: v.reason.text().unwrap_or_default().to_owned(),
        why: v.why.clone(),
        age_seconds: v.age_seconds,
        file: v.file.clone(),
        file_error: v.file_error.clone(),
    })
}

impl StatusFacts {
    /// From a status answer's `status` (see README, "Control socket");
    /// `None` when it does not say which kvmd answered.
    pub(crate) fn from_status(status: &Status) -> Option<StatusFacts> {
        let k = &status.kvmd;
        Some(StatusFacts {
            version: k.version.clone()?,
            pid: k.pid?,
            uptime_seconds: k.uptime_seconds,
            ctrl_dir: k.ctrl_dir.clone(),
            watch: k.watch.known(),
            descriptor_shortage: k.descriptor_shortage,
            instances: status
                .instances
                .iter()
                .filter(|i| !i.name.is_empty())
                .map(|i| StatusInstance {
                    name: i.name.clone(),
                    phase: i.phase.clone(),
                    since_seconds: i.since_seconds,
                    qemu: i.qemu.clone(),
                    qemu_pid: i.qemu_pid,
                    guest: i.guest.clone(),
                    last_verdict: i.last_verdict.as_ref().and_then(verdict),
                })
                .collect(),
            given_up: status.given_up.clone(),
            verdicts: status.verdicts.iter().filter_map(verdict).collect(),
            same_dir: None,
        })
    }

    /// From a status answer line's `status` object as JSON; `None` when
    /// it is not one.
    #[cfg(test)]
    pub(crate) fn from_json(status: &serde_json::Value) -> Option<StatusFacts> {
        serde_json::from_value::<Status>(status.clone())
            .ok()
            .and_then(|s| StatusFacts::from_status(&s))
    }

    /// The newest verdict for `name`.
    pub(crate) fn last_verdict(&self, name: &str) -> Option<&StatusVerdict> {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.last_verdict.as_ref())
            .or_else(|| self.verdicts.iter().rev().find(|v| v.name == name))
    }
}

/// Ganeti's side: ssconf, its tools, its daemon's binary.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GanetiFacts {
    pub(crate) ssconf_dir: String,
    /// This node's name as Ganeti resolves it.
    pub(crate) node: String,
    /// ssconf files by name (`ssconf_...`): their text or why not.
    pub(crate) ssconf: Vec<(String, Result<String, Unread>)>,
    pub(crate) instances: GntInstances,
    pub(crate) binary: GanetiBinary,
}

impl GanetiFacts {
    pub(crate) fn file(&self, name: &str) -> Option<&Result<String, Unread>> {
        self.ssconf.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }
}

/// Why a file was not read: what to do differs (another user is to ask
/// as root; a missing file is no matter of permissions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unread {
    Missing,
    /// A FIFO, a directory, a symlink: not read (a FIFO would block).
    NotAFile(&'static str),
    /// Not allowed to this user (the error, as the system says it).
    Denied(String),
    Failed(String),
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unread::Missing => f.write_str("no such file"),
            Unread::NotAFile(kind) => write!(f, "{kind}, not a file"),
            Unread::Denied(e) | Unread::Failed(e) => f.write_str(e),
        }
    }
}

/// What Ganeti's tools said of the instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GntInstances {
    /// This node is not the master: only the master answers.
    NotMaster {
        master: String,
    },
    /// The master is not known (no `ssconf_master_node`).
    Unknown,
    Listed(Vec<GntInstance>),
    /// It failed or timed out (and was killed): what it said.
    Failed(String),
}

/// One line of `gnt-instance list -o name,pnode,hv/user_shutdown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GntInstance {
    pub(crate) name: String,
    pub(crate) pnode: String,
    /// The instance's effective `user_shutdown` (its own or the cluster's).
    pub(crate) user_shutdown: Option<bool>,
}

/// Parses `gnt-instance list --no-headers --separator=| -o
/// name,pnode,hv/user_shutdown`: Ganeti prints booleans as `Y`/`N`.
pub(crate) fn parse_gnt_instances(output: &str) -> Vec<GntInstance> {
    output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('|');
            let name = fields.next()?.trim();
            let pnode = fields.next()?.trim();
            let flag = fields.next()?.trim();
            (!name.is_empty()).then(|| GntInstance {
                name: escaped(name.as_bytes()),
                pnode: pnode.to_owned(),
                user_shutdown: match flag {
                    "Y" | "True" | "true" => Some(true),
                    "N" | "False" | "false" => Some(false),
                    _ => None,
                },
            })
        })
        .collect()
}

/// `key=value` lines (ssconf's maps, such as `ssconf_hvparams_kvm`).
pub(crate) fn ssconf_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
}

/// `/usr/sbin/ganeti-kvmd` and what it leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GanetiBinary {
    pub(crate) path: String,
    /// Where its links lead, or why not.
    pub(crate) target: Result<String, String>,
    pub(crate) kind: BinaryKind,
    pub(crate) id: Option<(u64, u64)>,
    /// A dpkg diversion of the target, if any.
    pub(crate) diversion: Option<Diversion>,
}

/// One entry of dpkg's diversions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Diversion {
    pub(crate) path: String,
    pub(crate) to: String,
    /// The package, or `None` for a local diversion (`dpkg-divert --local`).
    pub(crate) by: Option<String>,
}

/// The diversion of `path` from what `dpkg-divert --listpackage` and
/// `--truename` print for it: the package (`LOCAL` for a local diversion,
/// nothing when there is none) and the name the file really has.
pub(crate) fn diversion_of(path: &str, package: &str, truename: &str) -> Option<Diversion> {
    let package = package.trim_end_matches('\n');
    let to = truename.trim_end_matches('\n');
    if package.is_empty() || package.contains('\n') || to.is_empty() || to == path {
        return None;
    }
    Some(Diversion {
        path: path.to_owned(),
        to: to.to_owned(),
        by: (package != "LOCAL").then(|| package.to_owned()),
    })
}

/// The control directory itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DirFacts {
    Missing,
    /// kvmd opens it with `O_NOFOLLOW`: a symlink is no control directory.
    Symlink,
    NotADir,
    Dir {
        uid: u32,
        mode: u32,
        fs: FsKind,
    },
    Failed(String),
}

/// The file system under the control directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FsKind {
    Tmpfs,
    Ramfs,
    /// A disk or network file system: its `statfs` magic and a name.
    Other {
        magic: u64,
        name: &'static str,
    },
}

/// A `statfs` magic number as a file system.
pub(crate) fn fs_kind(magic: u64) -> FsKind {
    match magic {
        0x0102_1994 => FsKind::Tmpfs,
        0x8584_58f6 => FsKind::Ramfs,
        _ => FsKind::Other {
            magic,
            name: match magic {
                0xef53 => "ext2/3/4",
                0x5846_5342 => "xfs",
                0x9123_683e => "btrfs",
                0x6969 => "nfs",
                0x794c_7630 => "overlayfs",
                0x2fc1_2fc1 => "zfs",
                0xff53_4d42 | 0xfe53_4d42 => "cifs/smb",
                0x6573_5546 => "fuse",
                _ => "a file system that is not tmpfs",
            },
        },
    }
}

/// The control directory's entries that concern kvmd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entries {
    pub(crate) list: Vec<Entry>,
    /// Entries past the doctor's bound, not looked at.
    pub(crate) more: usize,
    /// The listing stopped early: why.
    pub(crate) error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The raw file name.
    pub(crate) name: Vec<u8>,
    pub(crate) kind: EntryKind,
    pub(crate) uid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Socket,
    File,
    Symlink,
    Dir,
    Fifo,
    Other,
}

impl EntryKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EntryKind::Socket => "a socket",
            EntryKind::File => "a regular file",
            EntryKind::Symlink => "a symlink",
            EntryKind::Dir => "a directory",
            EntryKind::Fifo => "a FIFO",
            EntryKind::Other => "a device or other special file",
        }
    }
}

/// What an entry of the control directory is to kvmd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `<instance>.kvmd`, the instance escaped.
    Socket(String),
    /// `<instance>.shutdown`.
    Shutdown(String),
    /// `.kvmd`: no instance name.
    Nameless,
    /// `<instance>.kvmd` whose `<instance>.shutdown` would not fit a file name.
    TooLong(String),
    Unrelated,
}

/// An entry's role, as kvmd's naming contract ([`kvmd_core::name`]) has it.
pub(crate) fn role(name: &[u8]) -> Role {
    use kvmd_core::name::InstanceName;
    let name = OsStr::from_bytes(name);
    if name.as_bytes() == b".kvmd" {
        return Role::Nameless;
    }
    if let Some(instance) = InstanceName::from_socket_file(name) {
        let shown = escaped(instance.as_os_str().as_bytes());
        return if instance.fits() {
            Role::Socket(shown)
        } else {
            Role::TooLong(shown)
        };
    }
    match name.as_bytes().strip_suffix(b".shutdown") {
        Some(stem) if !stem.is_empty() => Role::Shutdown(escaped(stem)),
        _ => Role::Unrelated,
    }
}

/// inotify's limits for kvmd's user, and what that user's processes use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InotifyFacts {
    /// The user counted for (kvmd's, or root's when it does not run).
    pub(crate) uid: u32,
    /// The lower of `fs.inotify.max_user_watches` and this user
    /// namespace's `user.max_inotify_watches`.
    pub(crate) max_watches: Option<u64>,
    pub(crate) max_instances: Option<u64>,
    pub(crate) used_watches: u64,
    pub(crate) used_instances: u64,
    /// The user's processes whose descriptors could not be read.
    pub(crate) uncounted: usize,
}

/// Counts the watches in one inotify descriptor's `/proc/<pid>/fdinfo`.
pub(crate) fn fdinfo_watches(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("inotify wd:"))
        .count() as u64
}

/// One QEMU process that looks like an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QemuFacts {
    pub(crate) pid: u32,
    pub(crate) uid: Option<u32>,
    /// Its `-name` (escaped), as Ganeti passes the instance's.
    pub(crate) name: Option<String>,
    /// Its QMP sockets named `*.kvmd` (`-qmp unix:PATH,...`).
    pub(crate) sockets: Vec<QmpSocket>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QmpSocket {
    /// The path as QEMU was given it (escaped).
    pub(crate) path: String,
    /// The instance, when the socket is `<ctrl>/<instance>.kvmd`.
    pub(crate) instance: Option<String>,
}

/// What a QEMU command line says, raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QemuArgs {
    /// Its `-name`.
    pub(crate) name: Option<Vec<u8>>,
    /// Its QMP sockets named `*.kvmd` (`-qmp unix:PATH,...`).
    pub(crate) sockets: Vec<Vec<u8>>,
}

/// What a QEMU command line says; `None` when it is not QEMU. `cmdline`
/// as `/proc/<pid>/cmdline` has it, NUL-separated.
pub(crate) fn parse_qemu_cmdline(cmdline: &[u8]) -> Option<QemuArgs> {
    let args: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let program = args.first()?;
    let base = program.rsplit(|&b| b == b'/').next().unwrap_or(program);
    let is_qemu = base.starts_with(b"qemu") || base == b"kvm" || base.starts_with(b"kvm-");
    if !is_qemu {
        return None;
    }
    let mut name = None;
    let mut sockets = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        // QEMU takes `-opt` and `--opt` alike.
        let opt = arg
            .strip_prefix(b"-")
            .map(|a| a.strip_prefix(b"-").unwrap_or(a));
        match opt {
            Some(b"name") => {
                if let Some(value) = rest.next() {
                    name = Some(qemu_name(value));
                }
            }
            Some(b"qmp" | b"qmp-pretty") => {
                if let Some(path) = rest.next().and_then(|v| v.strip_prefix(b"unix:")) {
                    let path = first_option(path);
                    if path.ends_with(b".kvmd") {
                        sockets.push(path);
                    }
                }
            }
            _ => {}
        }
    }
    Some(QemuArgs { name, sockets })
}

/// The first of QEMU's comma-separated options, `,,` being a comma.
fn first_option(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b',' {
            if value.get(i + 1) == Some(&b',') {
                out.push(b',');
                i += 2;
                continue;
            }
            break;
        }
        out.push(value[i]);
        i += 1;
    }
    out
}

/// `-name [guest=]NAME[,process=...]`: the guest's name.
fn qemu_name(value: &[u8]) -> Vec<u8> {
    let first = first_option(value);
    match first.strip_prefix(b"guest=") {
        Some(name) => name.to_vec(),
        None => first,
    }
}

/// Unix sockets bound in the control directory, by file name, from
/// `/proc/net/unix` (this network namespace's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UnixSockets {
    /// Someone listens on it.
    pub(crate) listening: BTreeSet<Vec<u8>>,
    /// A client is connected to it (the listener's accepted end).
    pub(crate) connected: BTreeSet<Vec<u8>>,
}

/// Parses `/proc/net/unix`, keeping the sockets whose path is
/// `<dir>/<name>` for one of `dirs` (the control directory under each of
/// its spellings: `/var/run/...` and `/run/...` are one directory).
/// Paths holding a space or a newline cannot be told apart in this file
/// and are skipped.
pub(crate) fn parse_proc_net_unix(text: &[u8], dirs: &[Vec<u8>]) -> UnixSockets {
    let mut found = UnixSockets::default();
    for line in text.split(|&b| b == b'\n').skip(1) {
        let fields: Vec<&[u8]> = line
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        // Num RefCount Protocol Flags Type St Inode Path
        let [_, _, _, flags, _, state, _, path] = fields[..] else {
            continue;
        };
        let Some((dir, name)) = path
            .iter()
            .rposition(|&b| b == b'/')
            .map(|i| (&path[..i], &path[i + 1..]))
        else {
            continue;
        };
        if !dirs.iter().any(|d| d.as_slice() == dir) {
            continue;
        }
        // __SO_ACCEPTCON (0x10000): a listening socket.
        if flags == b"00010000" {
            found.listening.insert(name.to_vec());
        } else if state == b"03" {
            found.connected.insert(name.to_vec());
        }
    }
    found
}

/// The `--on-verdict` program, as the daemon would check it at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HookFacts {
    pub(crate) program: String,
    /// Taken from the running daemon's command line.
    pub(crate) from_daemon: bool,
    pub(crate) check: Result<String, String>,
}

/// The state directory, as the daemon checks it at every start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StateDirFacts {
    /// Its path (escaped).
    pub(crate) path: String,
    /// Taken from the running daemon's command line.
    pub(crate) from_daemon: bool,
    /// Whether it exists (kvmd creates it, root's and 0700, when not).
    pub(crate) exists: bool,
    /// The daemon's own check of its owner and mode.
    pub(crate) check: Result<(), String>,
}

/// The metrics file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MetricsFacts {
    pub(crate) path: String,
    pub(crate) from_daemon: bool,
    pub(crate) file: Result<MetricsFile, MetricsProblem>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MetricsFile {
    /// Seconds since it was last written.
    pub(crate) age_seconds: f64,
    /// `kvmd_start_time_seconds`: when the kvmd that wrote it started.
    pub(crate) start_time: Option<f64>,
    /// `kvmd_build_info{version}`.
    pub(crate) version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MetricsProblem {
    Missing,
    NotAFile(&'static str),
    Unreadable(String),
}

/// The series the doctor reads from a metrics file.
pub(crate) fn parse_metrics(text: &str) -> (Option<f64>, Option<String>) {
    let start = text.lines().find_map(|l| {
        l.strip_prefix("kvmd_start_time_seconds ")?
            .trim()
            .parse()
            .ok()
    });
    let version = text.lines().find_map(|l| {
        let rest = l.strip_prefix("kvmd_build_info{version=\"")?;
        Some(rest.split_once('"')?.0.to_owned())
    });
    (start, version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kvmd_says_the_marker() {
        // `--version` has said it since 1.0.0: older binaries carry it too.
        let args = ["kvmd", "--version"].map(std::ffi::OsString::from);
        let Ok(crate::config::Invocation::Version(text)) =
            crate::config::parse(args, std::path::Path::new("/"))
        else {
            panic!("a version")
        };
        let marker = std::str::from_utf8(KVMD_MARKER).expect("ASCII");
        assert!(text.contains(marker), "{text}");
    }

    #[test]
    fn a_daemon_command_line_not_read_is_not_one_that_is_not_there() {
        let facts = |control: Control| {
            Probed::Got(DaemonFacts {
                pid_file: "/run/kvmd.pid".to_owned(),
                pid: PidFile::Unreadable("Permission denied".to_owned()),
                process: None,
                control_socket: "/run/kvmd.sock".to_owned(),
                control,
            })
        };
        assert_eq!(
            DaemonFlags::of(&facts(Control::Absent), false),
            DaemonFlags::NoDaemon
        );
        assert_eq!(
            DaemonFlags::of(&facts(Control::Absent), true),
            DaemonFlags::Read
        );
        // Another user, refused by the daemon: it may well run.
        assert_eq!(
            DaemonFlags::of(&facts(Control::Denied), false),
            DaemonFlags::Unread
        );
        assert_eq!(
            DaemonFlags::of(&Probed::NoAnswer, false),
            DaemonFlags::Unread
        );
    }

    #[test]
    fn qemu_command_lines() {
        let ganeti = b"/usr/bin/qemu-system-x86_64\0-name\0web1.example.com\0-m\x00128\0\
            -qmp\0unix:/var/run/ganeti/kvm-hypervisor/ctrl/web1.example.com.qmp,server,nowait\0\
            -qmp\0unix:/var/run/ganeti/kvm-hypervisor/ctrl/web1.example.com.kvmd,server,nowait\0";
        let QemuArgs { name, sockets } = parse_qemu_cmdline(ganeti).expect("QEMU");
        assert_eq!(name.as_deref(), Some(&b"web1.example.com"[..]));
        assert_eq!(
            sockets,
            vec![b"/var/run/ganeti/kvm-hypervisor/ctrl/web1.example.com.kvmd".to_vec()]
        );
        let other =
            b"kvm\0--name\0guest=a,,b,process=x\0-qmp\0unix:/run/kvmd/a,,b.kvmd,server=on\0";
        let QemuArgs { name, sockets } = parse_qemu_cmdline(other).expect("kvm is QEMU");
        assert_eq!(name.as_deref(), Some(&b"a,b"[..]));
        assert_eq!(sockets, vec![b"/run/kvmd/a,b.kvmd".to_vec()]);
        assert_eq!(parse_qemu_cmdline(b"/bin/bash\0-name\0x\0"), None);
        assert_eq!(parse_qemu_cmdline(b""), None);
        // A last flag without its value is no crash.
        assert_eq!(
            parse_qemu_cmdline(b"qemu-system-x86_64\0-name"),
            Some(QemuArgs {
                name: None,
                sockets: vec![]
            })
        );
    }

    #[test]
    fn proc_net_unix() {
        let text = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1234 /run/kvmd/vm1.kvmd\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 1235 /run/kvmd/vm1.kvmd\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1236 /var/run/kvmd/vm2.kvmd\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 1237 /elsewhere/vm3.kvmd\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 1238\n\
            garbage\n";
        let dirs = [b"/run/kvmd".to_vec(), b"/var/run/kvmd".to_vec()];
        let found = parse_proc_net_unix(text, &dirs);
        let names = |set: &BTreeSet<Vec<u8>>| set.iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&found.listening),
            vec![b"vm1.kvmd".to_vec(), b"vm2.kvmd".to_vec()]
        );
        assert_eq!(names(&found.connected), vec![b"vm1.kvmd".to_vec()]);
    }

    #[test]
    fn diversions_and_ssconf_maps() {
        let path = "/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd";
        let by_package = diversion_of(path, "kvmd-ganeti\n", &format!("{path}.distrib\n"));
        assert_eq!(
            by_package.as_ref().map(|d| d.to.as_str()),
            Some(&*format!("{path}.distrib"))
        );
        assert_eq!(
            by_package.and_then(|d| d.by).as_deref(),
            Some("kvmd-ganeti")
        );
        let local = diversion_of(path, "LOCAL\n", "/usr/bin/x.haskell\n");
        assert_eq!(local.map(|d| d.by), Some(None));
        assert_eq!(diversion_of(path, "", &format!("{path}\n")), None);
        assert_eq!(diversion_of(path, "odd\nlines\n", "/x\n"), None);
        let hv = "acpi=True\nuser_shutdown=False\nkvm_path=/usr/bin/kvm\n";
        assert_eq!(ssconf_value(hv, "user_shutdown"), Some("False"));
        assert_eq!(ssconf_value(hv, "missing"), None);
    }

    #[test]
    fn gnt_instance_lines() {
        let out = "vm1|node1.gnt.test|Y\nvm2|node2|N\nbad line\nvm3|node1|?\n";
        let listed = parse_gnt_instances(out);
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].user_shutdown, Some(true));
        assert_eq!(listed[1].user_shutdown, Some(false));
        assert_eq!(listed[2].user_shutdown, None);
    }

    #[test]
    fn roles_follow_the_naming_contract() {
        assert_eq!(role(b"vm1.kvmd"), Role::Socket("vm1".into()));
        assert_eq!(role(b"vm1.shutdown"), Role::Shutdown("vm1".into()));
        assert_eq!(role(b".kvmd"), Role::Nameless);
        assert_eq!(role(b"vm1.qmp"), Role::Unrelated);
        assert_eq!(role(b".shutdown"), Role::Unrelated);
        assert_eq!(
            role(b"new\nline\x1b[2J.kvmd"),
            Role::Socket("new\\nline\\x1b[2J".into())
        );
        let long = [b'x'; 250];
        let mut socket = long.to_vec();
        socket.extend_from_slice(b".kvmd");
        assert!(matches!(role(&socket), Role::TooLong(_)));
        assert_eq!(shortened("abcdef", 3), "abc… (6 characters)");
    }

    #[test]
    fn status_answers() {
        let status = json!({
            "kvmd": {"version": "1.0.0", "pid": 42, "uptime_seconds": 7,
                     "ctrl_dir": "/run/kvmd", "watch": "watching"},
            "given_up": ["gone"],
            "instances": [{"name": "vm1", "phase": "monitoring", "since_seconds": 3,
                           "qemu": "7.2.22", "qemu_pid": 99, "guest": "running",
                           "last_verdict": null}],
            "verdicts": [
                {"name": "vm1", "verdict": "user", "reason": "guest-poweroff", "age_seconds": 9,
                 "file": "created", "why": "the guest powered itself off"},
                {"name": "vm1", "verdict": "not-user", "reason": "host-quit", "age_seconds": 5,
                 "file": "removed"}
            ]
        });
        let facts = StatusFacts::from_json(&status).expect("a status");
        assert_eq!(facts.pid, 42);
        assert_eq!(facts.instances[0].qemu_pid, Some(99));
        assert_eq!(facts.given_up, vec!["gone".to_owned()]);
        let last = facts.last_verdict("vm1").expect("newest");
        assert_eq!((last.user, last.reason.as_str()), (false, "host-quit"));
        assert_eq!(StatusFacts::from_json(&json!({"kvmd": {}})), None);
        assert_eq!(StatusFacts::from_json(&json!("garbage")), None);
    }

    #[test]
    fn metrics_and_binaries() {
        let text = "# HELP x\nkvmd_start_time_seconds 1700000000.250\n\
            kvmd_build_info{version=\"1.0.0\"} 1\n";
        assert_eq!(
            parse_metrics(text),
            (Some(1_700_000_000.25), Some("1.0.0".into()))
        );
        assert_eq!(parse_metrics("junk"), (None, None));
        let mut kvmd = b"\x7fELF...".to_vec();
        kvmd.extend_from_slice(KVMD_MARKER);
        assert_eq!(binary_kind(&kvmd), BinaryKind::Kvmd);
        assert_eq!(
            binary_kind(b"\x7fELF ganeti-3.1-8dYzu:Ganeti.Runtime.GanetiKvmd"),
            BinaryKind::GanetiOriginal
        );
        // Naming Ganeti is not being its daemon.
        assert_eq!(binary_kind(b"\x7fELF Ganeti ganeti"), BinaryKind::Other);
        assert_eq!(binary_kind(b"\x7fELF"), BinaryKind::Other);
        assert_eq!(
            fdinfo_watches("pos:\t0\ninotify wd:1 ino:2\ninotify wd:2 ino:3\n"),
            2
        );
        assert_eq!(fs_kind(0x0102_1994), FsKind::Tmpfs);
        assert!(matches!(
            fs_kind(0xef53),
            FsKind::Other {
                name: "ext2/3/4",
                ..
            }
        ));
    }
}
