//! The doctor's I/O: reading files, `/proc`, the control socket, `statfs`,
//! and asking Ganeti's tools. Thin on purpose: each probe turns what it
//! reads into [`super::facts`] and judges nothing.
//!
//! Every probe is bounded in time, because what it reads is not to be
//! trusted to answer: a file that may be a FIFO is opened with
//! `O_NONBLOCK` and must be a regular file before it is read, and only
//! so much of it; the control socket is connected without blocking and
//! read against a deadline; `gnt-instance` is killed with its process
//! group past its time; and each group of probes runs on a thread of its
//! own that the doctor stops waiting for at [`PROBE`] (a hung network file
//! system or a process holding its memory lock blocks a system call, not
//! the doctor). Nothing is followed that kvmd would not follow: entries of
//! the control directory are looked at with `AT_SYMLINK_NOFOLLOW`.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
use nix::sys::stat::{Mode as FileMode, fstatat};

use kvmd_core::control::schema::{Answer, Word};
use kvmd_core::control::{self, Refusal, Request};

use super::checks::{HVPARAMS_KVM, INSTANCE_LIST, MASTER_NODE, PROBE_SECONDS};
use super::facts::{
    Control, DaemonFacts, DirFacts, Diversion, Entries, Entry, EntryKind, Exe, GanetiBinary,
    GanetiFacts, GntInstances, HookFacts, InotifyFacts, MetricsFacts, MetricsFile, MetricsProblem,
    PidFile, Probed, ProcessFacts, QemuArgs, QemuFacts, QmpSocket, Role, StateDirFacts,
    StatusFacts, UnixSockets, Unread, binary_kind, diversion_of, escaped, fdinfo_watches, fs_kind,
    parse_gnt_instances, parse_metrics, parse_proc_net_unix, parse_qemu_cmdline, role, shortened,
};

/// How long one group of probes may take.
pub(crate) const PROBE: Duration = Duration::from_secs(PROBE_SECONDS);
/// How long `gnt-instance list` may take (it asks the master's daemons).
pub(crate) const GNT_TIMEOUT: Duration = Duration::from_secs(20);
/// Where Ganeti starts its daemon from (`daemon-util`, its systemd unit).
pub(crate) const GANETI_KVMD: &str = "/usr/sbin/ganeti-kvmd";
/// dpkg's tool for diversions: asked rather than its database read, which
/// is dpkg's own business (its format is not an interface).
const DPKG_DIVERT: &str = "/usr/bin/dpkg-divert";
const SMALL_FILE: u64 = 1 << 20;
/// The most of a status answer read: 10,000 instances are a few MB.
const MAX_ANSWER: usize = 256 << 20;
/// The most of a binary scanned for kvmd's marker.
const MAX_BINARY: u64 = 512 << 20;
/// Entries of the control directory looked at, at most.
const MAX_ENTRIES: usize = 200_000;

/// Runs `probe` on a thread of its own; [`Probed::NoAnswer`] when it has
/// not finished by `deadline`. A probe stuck in a system call is left
/// behind: the doctor's exit ends it.
pub(crate) struct Pending<T> {
    rx: Option<mpsc::Receiver<T>>,
}

pub(crate) fn spawn<T: Send + 'static>(probe: impl FnOnce() -> T + Send + 'static) -> Pending<T> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kvmd-doctor-probe".to_owned())
        .spawn(move || {
            let _ = tx.send(probe());
        });
    Pending {
        rx: spawned.ok().map(|_| rx),
    }
}

impl<T> Pending<T> {
    pub(crate) fn wait(self, deadline: Instant) -> Probed<T> {
        let Some(rx) = self.rx else {
            return Probed::NoAnswer;
        };
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(value) => Probed::Got(value),
            Err(_) => Probed::NoAnswer,
        }
    }
}

/// A small file as text: opened without following a last symlink (when
/// `nofollow`) and without blocking (a FIFO), read only if it is a regular
/// file, at most [`SMALL_FILE`] bytes.
#[derive(Debug)]
pub(crate) enum Small {
    Text(String),
    Missing,
    NotAFile(&'static str),
    /// Not allowed to this user.
    Denied(String),
    Unreadable(String),
}

fn kind_of(mode: u32) -> &'static str {
    match mode & 0o170000 {
        0o140000 => "a socket",
        0o120000 => "a symlink",
        0o040000 => "a directory",
        0o010000 => "a FIFO",
        0o020000 | 0o060000 => "a device",
        _ => "not a regular file",
    }
}

pub(crate) fn read_small(path: &Path, nofollow: bool) -> Small {
    let mut flags = OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    if nofollow {
        flags |= OFlag::O_NOFOLLOW;
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Small::Missing,
        Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
            return Small::NotAFile("a symlink");
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Small::Denied(e.to_string());
        }
        Err(e) => return Small::Unreadable(e.to_string()),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => {}
        Ok(meta) => return Small::NotAFile(kind_of(meta.mode())),
        Err(e) => return Small::Unreadable(e.to_string()),
    }
    let mut bytes = Vec::new();
    match file.take(SMALL_FILE).read_to_end(&mut bytes) {
        Ok(_) => Small::Text(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => Small::Unreadable(e.to_string()),
    }
}

fn small_result(small: Small) -> Result<String, Unread> {
    match small {
        Small::Text(text) => Ok(text),
        Small::Missing => Err(Unread::Missing),
        Small::NotAFile(kind) => Err(Unread::NotAFile(kind)),
        Small::Denied(e) => Err(Unread::Denied(e)),
        Small::Unreadable(e) => Err(Unread::Failed(e)),
    }
}

/// The bytes of a `/proc` file (these may not be regular files to
/// `fstat`, and are read as they come), at most `max`.
fn read_proc(path: &str, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ---- the daemon ------------------------------------------------------

pub(crate) fn pid_file(path: &Path) -> PidFile {
    match read_small(path, true) {
        Small::Missing => PidFile::Missing,
        Small::NotAFile(kind) => PidFile::NotAFile(kind),
        Small::Denied(e) | Small::Unreadable(e) => PidFile::Unreadable(e),
        Small::Text(text) => match text.trim().parse::<u32>() {
            Ok(pid) if pid > 0 => PidFile::Pid(pid),
            _ => PidFile::Garbage(shortened(&escaped(text.trim().as_bytes()), 40)),
        },
    }
}

/// Seconds since the epoch at which the system booted.
fn boot_time() -> Option<f64> {
    let stat = read_proc("/proc/stat", SMALL_FILE).ok()?;
    let text = String::from_utf8_lossy(&stat);
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// A process's effective uid, from `/proc/<pid>/status`.
fn proc_uid(pid: u32) -> Option<u32> {
    let status = read_proc(&format!("/proc/{pid}/status"), SMALL_FILE).ok()?;
    let text = String::from_utf8_lossy(&status);
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The live process `pid`, if it exists.
pub(crate) fn process(pid: u32) -> Option<ProcessFacts> {
    let stat = read_proc(&format!("/proc/{pid}/stat"), 4096).ok()?;
    let stat = String::from_utf8_lossy(&stat);
    // Field 22 (start time, in clock ticks since boot), counted after the
    // command name, which may hold spaces and parentheses.
    let ticks: Option<f64> = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').nth(19)?.parse().ok());
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0);
    let started = match (ticks, hz, boot_time()) {
        (Some(ticks), Some(hz), Some(boot)) => Some(boot + ticks / hz as f64),
        _ => None,
    };
    let comm = read_proc(&format!("/proc/{pid}/comm"), 256)
        .map(|c| escaped(c.strip_suffix(b"\n").unwrap_or(&c)))
        .unwrap_or_default();
    let exe_link = format!("/proc/{pid}/exe");
    let exe = match std::fs::read_link(&exe_link) {
        Ok(path) => {
            let path = escaped(path.as_os_str().as_bytes());
            match path.strip_suffix(" (deleted)") {
                Some(path) => Exe::Path {
                    path: path.to_owned(),
                    replaced: true,
                },
                None => Exe::Path {
                    path,
                    replaced: false,
                },
            }
        }
        Err(e) => Exe::Unreadable(e.to_string()),
    };
    let exe_id = std::fs::metadata(&exe_link)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let kind = binary_kind_of(Path::new(&exe_link), exe_id);
    Some(ProcessFacts {
        pid,
        comm,
        uid: proc_uid(pid),
        exe,
        kind,
        exe_id,
        started,
    })
}

/// What a binary is: kvmd when it is this very binary, else by its bytes
/// (streamed, at most [`MAX_BINARY`]).
fn binary_kind_of(path: &Path, id: Option<(u64, u64)>) -> super::facts::BinaryKind {
    use super::facts::BinaryKind;
    let own = std::fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()));
    if id.is_some() && id == own {
        return BinaryKind::Kvmd;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
    else {
        return BinaryKind::Unknown;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return BinaryKind::Other;
    }
    let mut reader = file.take(MAX_BINARY);
    let mut chunk = vec![0u8; 1 << 20];
    // Each chunk keeps the end of the one before: a marker may straddle.
    let keep = 64;
    let mut carried = 0;
    let mut ganetis = false;
    loop {
        let read = match reader.read(&mut chunk[carried..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return BinaryKind::Unknown,
        };
        let filled = carried + read;
        match binary_kind(&chunk[..filled]) {
            BinaryKind::Kvmd => return BinaryKind::Kvmd,
            BinaryKind::GanetiOriginal => ganetis = true,
            _ => {}
        }
        carried = keep.min(filled);
        chunk.copy_within(filled - carried..filled, 0);
    }
    if ganetis {
        BinaryKind::GanetiOriginal
    } else {
        BinaryKind::Other
    }
}

/// Asks the control socket for a status, never blocking past [`PROBE`].
pub(crate) fn control(path: &Path) -> Control {
    let deadline = Instant::now() + PROBE;
    let Ok(address) = UnixAddr::new(path) else {
        return Control::Failed("the path is too long for a unix socket".to_owned());
    };
    let fd: OwnedFd = match socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => return Control::Failed(e.to_string()),
    };
    // Without blocking: a listener whose queue is full would keep a
    // blocking connect waiting for as long as it likes.
    match connect(fd.as_raw_fd(), &address) {
        Ok(()) => {}
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Control::Absent,
        Err(Errno::ECONNREFUSED) => return Control::Refused,
        Err(Errno::EACCES | Errno::EPERM) => return Control::Denied,
        Err(Errno::EAGAIN) => return Control::Busy,
        Err(e) => return Control::Failed(e.to_string()),
    }
    let mut stream = UnixStream::from(fd);
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_write_timeout(Some(PROBE)));
    if let Err(e) = setup {
        return Control::Failed(e.to_string());
    }
    let request = control::request_line(&Request::Status {
        instances: Vec::new(),
    });
    match stream.write_all(request.as_bytes()) {
        Ok(()) => {}
        // Refused before it read the request: the reason waits to be read.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Control::NoAnswer;
        }
        Err(e) => return Control::Failed(e.to_string()),
    }
    let mut answer = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Control::NoAnswer;
        }
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            return Control::Failed(e.to_string());
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.contains(&b'\n') {
                    break;
                }
                if answer.len() > MAX_ANSWER {
                    return Control::Garbled("an endless line".to_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Control::NoAnswer;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Control::Failed(e.to_string()),
        }
    }
    let line = match answer.iter().position(|&b| b == b'\n') {
        Some(end) => &answer[..end],
        None if answer.is_empty() => return Control::Garbled("it hung up".to_owned()),
        None => &answer[..],
    };
    let garbled = || Control::Garbled(shortened(&escaped(line), 60));
    let Ok(answer) = kvmd_core::control::schema::read::<Answer>(line) else {
        return garbled();
    };
    if let Some(error) = &answer.error {
        return match answer.code.as_ref().and_then(Word::known) {
            Some(Refusal::Denied) => Control::Denied,
            Some(Refusal::Busy) => Control::Busy,
            _ => Control::Garbled(shortened(&escaped(error.as_bytes()), 60)),
        };
    }
    match answer.status.as_ref().and_then(StatusFacts::from_status) {
        Some(status) => Control::Status(status),
        None => garbled(),
    }
}

/// Device and inode of a directory, following links (as kvmd's crawl
/// follows them above its control directory).
fn dir_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

pub(crate) fn daemon(pid_path: &Path, socket: &Path, ctrl_dir: &Path) -> DaemonFacts {
    let pid = pid_file(pid_path);
    let mut control = control(socket);
    if let Control::Status(status) = &mut control {
        status.same_dir = match (dir_id(Path::new(&status.ctrl_dir)), dir_id(ctrl_dir)) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
    }
    // The process that answered: it is the daemon, whatever the pid file
    // says (the checks tell of a pid file naming another). Else the pid
    // file's, to tell a live daemon from a stale file.
    let named = match (&control, &pid) {
        (Control::Status(status), _) => Some(status.pid),
        (_, PidFile::Pid(pid)) => Some(*pid),
        _ => None,
    };
    DaemonFacts {
        pid_file: escaped(pid_path.as_os_str().as_bytes()),
        pid,
        process: named.and_then(process),
        control_socket: escaped(socket.as_os_str().as_bytes()),
        control,
    }
}

/// The command line of process `pid`, as arguments.
pub(crate) fn cmdline(pid: u32) -> Option<Vec<std::ffi::OsString>> {
    let bytes = read_proc(&format!("/proc/{pid}/cmdline"), 256 * 1024).ok()?;
    let args: Vec<std::ffi::OsString> = bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| OsStr::from_bytes(a).to_owned())
        .collect();
    (!args.is_empty()).then_some(args)
}

/// The working directory of process `pid` (relative paths on its command
/// line are relative to it), or `/`.
pub(crate) fn cwd(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| PathBuf::from("/"))
}

// ---- Ganeti ----------------------------------------------------------

pub(crate) fn ganeti(ssconf_dir: &Path) -> GanetiFacts {
    let node = crate::adapters::ssconf::node_name();
    let mut names: Vec<&str> = crate::adapters::ssconf::FILES.to_vec();
    names.extend([HVPARAMS_KVM, MASTER_NODE, INSTANCE_LIST]);
    let ssconf = names
        .into_iter()
        .map(|name| {
            (
                name.to_owned(),
                small_result(read_small(&ssconf_dir.join(name), false)),
            )
        })
        .collect();
    GanetiFacts {
        ssconf_dir: escaped(ssconf_dir.as_os_str().as_bytes()),
        node,
        ssconf,
        // Asked separately, with its own time limit (see [`gnt_instances`]).
        instances: GntInstances::Unknown,
        binary: ganeti_binary(Path::new(GANETI_KVMD), dpkg_diversion),
    }
}

/// The most symlinks followed from `/usr/sbin/ganeti-kvmd` (the kernel's
/// own limit): a loop ends there.
const MAX_LINKS: usize = 40;

/// Every path from `path` to the file it leads to: `path` itself, then
/// each symlink's target in turn, each with its directories resolved (as
/// dpkg names files: `/usr/lib/ganeti/3.0/...`, not `.../default/...`).
fn link_chain(path: &Path) -> Vec<PathBuf> {
    let resolved = |path: &Path| -> Option<PathBuf> {
        let name = path.file_name()?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
        Some(std::fs::canonicalize(parent).ok()?.join(name))
    };
    let mut chain = Vec::new();
    let mut here = resolved(path);
    while let Some(path) = here.take() {
        if chain.len() == MAX_LINKS {
            break;
        }
        if let Ok(target) = std::fs::read_link(&path) {
            // A relative target is relative to the link's directory.
            let next = path
                .parent()
                .map_or(target.clone(), |dir| dir.join(&target));
            here = resolved(&next);
        }
        chain.push(path);
    }
    chain
}

/// What dpkg-divert says of `path`: a diversion, or none (not diverted,
/// no dpkg, or no answer in time).
fn dpkg_diversion(path: &Path) -> Option<Diversion> {
    let path = path.to_str()?;
    if !Path::new(DPKG_DIVERT).exists() {
        return None;
    }
    let package = run_bounded(DPKG_DIVERT, &["--listpackage", path], PROBE).ok()?;
    if package.trim().is_empty() {
        return None;
    }
    let truename = run_bounded(DPKG_DIVERT, &["--truename", path], PROBE).ok()?;
    diversion_of(path, &package, &truename)
}

/// What `path` (Ganeti's `/usr/sbin/ganeti-kvmd`) leads to, and the
/// diversion `diverted` finds on the way. kvmd-ganeti diverts
/// `/usr/lib/ganeti/<version>/usr/sbin/ganeti-kvmd` and puts a link to
/// `/usr/sbin/kvmd` there: the diversion is on a link of the chain, not
/// on the file at its end.
fn ganeti_binary(path: &Path, diverted: impl Fn(&Path) -> Option<Diversion>) -> GanetiBinary {
    let target = std::fs::canonicalize(path);
    let id = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let kind = match &target {
        Ok(_) => binary_kind_of(path, id),
        Err(_) => super::facts::BinaryKind::Unknown,
    };
    let diversion = match &target {
        Ok(_) => link_chain(path).iter().find_map(|p| diverted(p)),
        Err(_) => None,
    };
    GanetiBinary {
        path: escaped(path.as_os_str().as_bytes()),
        target: target
            .map(|t| escaped(t.as_os_str().as_bytes()))
            .map_err(|e| e.to_string()),
        kind,
        id,
        diversion,
    }
}

/// Asks the master's Ganeti for each instance's primary node and
/// `user_shutdown`, killing `gnt-instance` (and what it started) past
/// [`GNT_TIMEOUT`]. Only on the master: elsewhere Ganeti's tools do not
/// answer.
pub(crate) fn gnt_instances(facts: &GanetiFacts) -> GntInstances {
    let master = match facts.file(MASTER_NODE) {
        Some(Ok(text)) => text.trim().to_owned(),
        _ => return GntInstances::Unknown,
    };
    if master != facts.node {
        return GntInstances::NotMaster {
            master: escaped(master.as_bytes()),
        };
    }
    let program = ["/usr/sbin/gnt-instance", "/usr/local/sbin/gnt-instance"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("gnt-instance");
    let args = [
        "list",
        "--no-headers",
        "--separator=|",
        "-o",
        "name,pnode,hv/user_shutdown",
    ];
    match run_bounded(program, &args, GNT_TIMEOUT) {
        Ok(out) => GntInstances::Listed(parse_gnt_instances(&out)),
        Err(why) => GntInstances::Failed(why),
    }
}

/// Runs `program` in a process group of its own, and kills the group
/// past `limit`. Its standard output, or why not.
fn run_bounded(program: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> Pending<String> {
        spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(SMALL_FILE).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(None) | Err(_) => break None,
        }
    };
    let Some(status) = status else {
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        return Err(format!(
            "{program} gave no answer within {} s (killed)",
            limit.as_secs()
        ));
    };
    // The pipes end with the process (or within a moment, its group).
    let pipes_by = Instant::now() + PROBE;
    let out = match stdout.wait(pipes_by) {
        Probed::Got(out) => out,
        Probed::NoAnswer => String::new(),
    };
    if status.success() {
        return Ok(out);
    }
    let err = match stderr.wait(pipes_by) {
        Probed::Got(err) => err,
        Probed::NoAnswer => String::new(),
    };
    let said = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    Err(format!(
        "{program} {}: {status}{}",
        args.join(" "),
        if said.is_empty() {
            String::new()
        } else {
            format!(": {}", shortened(&escaped(said.trim().as_bytes()), 120))
        }
    ))
}

// ---- the control directory ---------------------------------------------

pub(crate) fn dir(path: &Path) -> DirFacts {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return DirFacts::Missing,
        Err(e) => return DirFacts::Failed(e.to_string()),
    };
    if meta.file_type().is_symlink() {
        return DirFacts::Symlink;
    }
    if !meta.is_dir() {
        return DirFacts::NotADir;
    }
    let fs = match nix::sys::statfs::statfs(path) {
        Ok(st) => fs_kind(st.filesystem_type().0 as u64),
        Err(e) => return DirFacts::Failed(format!("statfs: {e}")),
    };
    DirFacts::Dir {
        uid: meta.uid(),
        mode: meta.mode(),
        fs,
    }
}

/// The control directory's entries that concern kvmd (sockets, shutdown
/// files, names it cannot use), each looked at without following it.
pub(crate) fn entries(path: &Path) -> Result<Entries, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(path, flags, FileMode::empty()).map_err(|e| e.to_string())?;
    let for_stat = fd.try_clone().map_err(|e| e.to_string())?;
    let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| e.to_string())?;
    let mut found = Entries {
        list: Vec::new(),
        more: 0,
        error: None,
    };
    for (seen, entry) in dir.iter().enumerate() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                found.error = Some(e.to_string());
                break;
            }
        };
        if seen >= MAX_ENTRIES {
            found.more += 1;
            continue;
        }
        let name = entry.file_name().to_bytes();
        if role(name) == Role::Unrelated {
            continue;
        }
        let Ok(stat) = fstatat(&for_stat, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue; // gone in between
        };
        let kind = match stat.st_mode & 0o170000 {
            0o140000 => EntryKind::Socket,
            0o100000 => EntryKind::File,
            0o120000 => EntryKind::Symlink,
            0o040000 => EntryKind::Dir,
            0o010000 => EntryKind::Fifo,
            _ => EntryKind::Other,
        };
        found.list.push(Entry {
            name: name.to_vec(),
            kind,
            uid: stat.st_uid,
        });
    }
    Ok(found)
}

/// The control directory under each spelling a socket path may use: as
/// given, resolved, and `/var/run` for `/run` (Ganeti's spelling).
fn spellings(ctrl_dir: &Path) -> Vec<Vec<u8>> {
    let mut all = vec![ctrl_dir.as_os_str().as_bytes().to_vec()];
    if let Ok(real) = std::fs::canonicalize(ctrl_dir) {
        let real = real.as_os_str().as_bytes().to_vec();
        if let Some(rest) = real.strip_prefix(b"/run/") {
            let mut var = b"/var/run/".to_vec();
            var.extend_from_slice(rest);
            all.push(var);
        }
        all.push(real);
    }
    all.sort();
    all.dedup();
    all
}

pub(crate) fn unix_sockets(ctrl_dir: &Path) -> Option<UnixSockets> {
    let text = read_proc("/proc/net/unix", 64 << 20).ok()?;
    Some(parse_proc_net_unix(&text, &spellings(ctrl_dir)))
}

// ---- processes ---------------------------------------------------------

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// QEMU processes that look like instances: a `-name`, or a `.kvmd` QMP
/// socket (which [`super::checks`] keeps only in the control directory).
pub(crate) fn qemus(ctrl_dir: &Path) -> Vec<QemuFacts> {
    let ctrl = dir_id(ctrl_dir);
    // A QEMU in another mount namespace (a container, a test cluster)
    // names paths of another tree: its sockets are not these.
    let own_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut found = Vec::new();
    for pid in pids() {
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        if ns.is_some() && ns != own_ns {
            continue;
        }
        let Ok(cmdline) = read_proc(&format!("/proc/{pid}/cmdline"), 256 * 1024) else {
            continue;
        };
        let Some(QemuArgs { name, sockets }) = parse_qemu_cmdline(&cmdline) else {
            continue;
        };
        if name.is_none() && sockets.is_empty() {
            continue;
        }
        let sockets = sockets
            .into_iter()
            .map(|raw| {
                let mut path = PathBuf::from(OsStr::from_bytes(&raw));
                if path.is_relative() {
                    path = cwd(pid).join(path);
                }
                let in_ctrl = path
                    .parent()
                    .and_then(dir_id)
                    .is_some_and(|d| Some(d) == ctrl);
                let instance = match (in_ctrl, path.file_name().map(|n| role(n.as_bytes()))) {
                    (true, Some(Role::Socket(name) | Role::TooLong(name))) => Some(name),
                    _ => None,
                };
                QmpSocket {
                    path: escaped(&raw),
                    instance,
                }
            })
            .collect();
        found.push(QemuFacts {
            pid,
            uid: proc_uid(pid),
            name: name.map(|n| escaped(&n)),
            sockets,
        });
    }
    found
}

fn limit(paths: &[&str]) -> Option<u64> {
    paths
        .iter()
        .filter_map(|p| {
            String::from_utf8_lossy(&read_proc(p, 64).ok()?)
                .trim()
                .parse()
                .ok()
        })
        .min()
}

/// inotify's limits for `uid`, and what that user's processes in this
/// user namespace hold (the limits of a user namespace are its own).
pub(crate) fn inotify(uid: u32) -> InotifyFacts {
    let own_ns = std::fs::read_link("/proc/self/ns/user").ok();
    let me = std::process::id();
    let mut facts = InotifyFacts {
        uid,
        max_watches: limit(&[
            "/proc/sys/fs/inotify/max_user_watches",
            "/proc/sys/user/max_inotify_watches",
        ]),
        max_instances: limit(&[
            "/proc/sys/fs/inotify/max_user_instances",
            "/proc/sys/user/max_inotify_instances",
        ]),
        used_watches: 0,
        used_instances: 0,
        uncounted: 0,
    };
    for pid in pids() {
        if pid == me || proc_uid(pid) != Some(uid) {
            continue;
        }
        let ns = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        if ns.is_some() && ns != own_ns {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            facts.uncounted += 1;
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let is_inotify = std::fs::read_link(fd.path())
                .is_ok_and(|t| t.as_os_str().as_bytes() == b"anon_inode:inotify");
            if !is_inotify {
                continue;
            }
            facts.used_instances += 1;
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            if let Ok(text) = read_proc(&info, SMALL_FILE) {
                facts.used_watches += fdinfo_watches(&String::from_utf8_lossy(&text));
            }
        }
    }
    facts
}

// ---- hooks and metrics -------------------------------------------------

pub(crate) fn hook(program: &Path, from_daemon: bool) -> HookFacts {
    HookFacts {
        program: escaped(program.as_os_str().as_bytes()),
        from_daemon,
        check: crate::adapters::hook_program::check(program)
            .map(|real| escaped(real.as_os_str().as_bytes())),
    }
}

/// `uid`: whom the daemon runs as (the running one's user, else the
/// doctor's), the owner it trusts besides root.
pub(crate) fn state_dir(path: &Path, from_daemon: bool, uid: u32) -> StateDirFacts {
    StateDirFacts {
        path: escaped(path.as_os_str().as_bytes()),
        from_daemon,
        exists: std::fs::symlink_metadata(path).is_ok(),
        check: crate::adapters::hook_program::check_state_dir_of(path, uid),
    }
}

pub(crate) fn metrics(path: &Path, from_daemon: bool) -> MetricsFacts {
    let shown = escaped(path.as_os_str().as_bytes());
    let file = match read_small(path, true) {
        Small::Text(text) => {
            let age = std::fs::symlink_metadata(path)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            let (start_time, version) = parse_metrics(&text);
            Ok(MetricsFile {
                age_seconds: age,
                start_time,
                version,
            })
        }
        Small::Missing => Err(MetricsProblem::Missing),
        Small::NotAFile(kind) => Err(MetricsProblem::NotAFile(kind)),
        Small::Denied(e) | Small::Unreadable(e) => Err(MetricsProblem::Unreadable(e)),
    };
    MetricsFacts {
        path: shown,
        from_daemon,
        file,
    }
}

pub(crate) fn now() -> f64 {
    now_epoch()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_stuck_in_a_system_call_is_given_up_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // Opening a FIFO to read blocks until a writer comes: none will
        // until the doctor has given up.
        let path = fifo.clone();
        let stuck = spawn(move || File::open(&path).is_ok());
        assert_eq!(
            stuck.wait(Instant::now() + Duration::from_millis(50)),
            Probed::NoAnswer
        );
        // The reader waits: a writer opens without blocking and frees it.
        let _writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(&fifo);
        // The doctor's own reader never blocks on it.
        assert!(matches!(read_small(&fifo, true), Small::NotAFile("a FIFO")));
    }

    #[test]
    fn kvmd_ganetis_diversion_is_found_on_the_link_it_made() {
        use super::super::facts::{BinaryKind, KVMD_MARKER};
        use std::os::unix::fs::symlink;
        // As Debian lays Ganeti out, and kvmd-ganeti changes it:
        // sbin/ganeti-kvmd -> ../lib/ganeti/default/sbin/ganeti-kvmd,
        // default -> 3.0, and 3.0's ganeti-kvmd (diverted) -> kvmd.
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let kvmd = root.join("kvmd");
        std::fs::write(&kvmd, KVMD_MARKER).expect("write");
        let version = root.join("lib/ganeti/3.0/sbin");
        std::fs::create_dir_all(&version).expect("mkdir");
        symlink("3.0", root.join("lib/ganeti/default")).expect("symlink");
        let diverted = version.join("ganeti-kvmd");
        symlink(&kvmd, &diverted).expect("symlink");
        std::fs::create_dir(root.join("sbin")).expect("mkdir");
        let path = root.join("sbin/ganeti-kvmd");
        symlink("../lib/ganeti/default/sbin/ganeti-kvmd", &path).expect("symlink");

        let asked = std::sync::Mutex::new(Vec::new());
        let binary = ganeti_binary(&path, |p| {
            asked.lock().expect("lock").push(p.to_path_buf());
            (p == diverted).then(|| Diversion {
                path: p.display().to_string(),
                to: format!("{}.distrib", p.display()),
                by: Some("kvmd-ganeti".to_owned()),
            })
        });
        assert_eq!(binary.kind, BinaryKind::Kvmd);
        assert_eq!(binary.target, Ok(kvmd.display().to_string()));
        assert_eq!(
            binary.diversion.map(|d| d.path),
            Some(diverted.display().to_string())
        );
        // Asked along the chain, as dpkg names the files, and no further.
        assert_eq!(*asked.lock().expect("lock"), vec![path.clone(), diverted]);
        // A loop ends.
        let looped = root.join("loop");
        symlink("loop", &looped).expect("symlink");
        assert_eq!(link_chain(&looped).len(), MAX_LINKS);
    }

    #[test]
    fn the_daemon_is_the_process_that_answered_not_a_stale_pid_file() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("kvmd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let me = std::process::id();
        // A daemon that answers a status, as this very process.
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut line = String::new();
            let mut reader = io::BufReader::new(&stream);
            reader.read_line(&mut line).expect("request");
            let answer = format!(
                "{{\"status\": {{\"kvmd\": {{\"version\": \"9.9.9\", \"pid\": {me}}}}}}}\n"
            );
            (&stream).write_all(answer.as_bytes()).expect("answer");
        });
        // A pid file left by an earlier daemon, naming a process now gone.
        let mut child = Command::new("true").spawn().expect("true");
        let gone = child.id();
        child.wait().expect("wait");
        let pid_file = dir.path().join("kvmd.pid");
        std::fs::write(&pid_file, format!("{gone}\n")).expect("write");

        let facts = daemon(&pid_file, &socket, dir.path());
        server.join().expect("server");
        assert!(matches!(facts.control, Control::Status(_)), "{facts:#?}");
        assert_eq!(facts.pid, PidFile::Pid(gone));
        assert_eq!(facts.process.map(|p| p.pid), Some(me));
    }

    #[test]
    fn a_pid_file_says_a_pid_or_what_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kvmd.pid");
        assert_eq!(pid_file(&path), PidFile::Missing);
        std::fs::write(&path, "4242\n").expect("write");
        assert_eq!(pid_file(&path), PidFile::Pid(4242));
        std::fs::write(&path, "0\n").expect("write");
        assert!(matches!(pid_file(&path), PidFile::Garbage(_)));
        std::fs::write(&path, "\x1b[2J\n").expect("write");
        assert_eq!(pid_file(&path), PidFile::Garbage("\\x1b[2J".to_owned()));
        std::fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", &path).expect("symlink");
        assert_eq!(pid_file(&path), PidFile::NotAFile("a symlink"));
    }
}
