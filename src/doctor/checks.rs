//! The doctor's judgement, pure: facts in, findings out.
//!
//! This module owns what each fact means for user-shutdown detection,
//! how bad it is, and what to do about it. It reads no file and asks no
//! process ([`super::probe`] does), so every case is a unit test below.

use std::collections::BTreeMap;

use super::facts::{
    BinaryKind, Control, DirFacts, Entries, Entry, EntryKind, Exe, Facts, FsKind, GanetiFacts,
    GntInstance, GntInstances, InotifyFacts, MetricsProblem, Mode, PidFile, Probed, ProcessFacts,
    QemuFacts, Role, StatusFacts, StatusInstance, ssconf_value,
};
use super::findings::{Check, Finding};
use crate::control::age;
use crate::ssconf;

/// How long a probe may take before the doctor gives up on it: said in
/// findings about probes that did not answer.
pub const PROBE_SECONDS: u64 = 5;

/// How long kvmd may stay connecting before that is worth a warning: it
/// connects in milliseconds, and retries a refused connect for seconds.
const CONNECTING_WARN_SECONDS: u64 = 10;

/// Metrics written within this many seconds of the daemon's start are its.
const START_SLACK_SECONDS: f64 = 2.0;

/// Which daemon the doctor found, in the terms the checks need.
#[derive(Clone, Copy, Debug)]
enum Found<'a> {
    /// kvmd, and it answered its status.
    Kvmd {
        status: &'a StatusFacts,
        process: Option<&'a ProcessFacts>,
    },
    /// A daemon process that did not answer (another user's socket, a
    /// kvmd before 1.0, a hung one), with why.
    Silent {
        process: &'a ProcessFacts,
        why: &'a Control,
    },
    /// Ganeti's original daemon: it has no status to ask.
    Original {
        process: &'a ProcessFacts,
    },
    Stopped,
    /// The doctor could not tell (unreadable pid file, no answer).
    Unknown,
}

impl Found<'_> {
    fn process(&self) -> Option<&ProcessFacts> {
        match self {
            Found::Kvmd { process, .. } => *process,
            Found::Silent { process, .. } | Found::Original { process } => Some(process),
            Found::Stopped | Found::Unknown => None,
        }
    }

    fn is_running(&self) -> bool {
        !matches!(self, Found::Stopped | Found::Unknown)
    }

    /// When the running daemon started, in seconds since the epoch.
    fn started(&self, now: f64) -> Option<f64> {
        match self {
            Found::Kvmd { status, .. } => Some(now - status.uptime_seconds as f64),
            _ => self.process().and_then(|p| p.started),
        }
    }
}

fn running(facts: &Facts) -> Found<'_> {
    let Probed::Got(daemon) = &facts.daemon else {
        return Found::Unknown;
    };
    if let Control::Status(status) = &daemon.control {
        return Found::Kvmd {
            status,
            process: daemon.process.as_ref(),
        };
    }
    match (&daemon.pid, &daemon.process) {
        (_, Some(p)) if p.is_daemon() => match p.kind {
            BinaryKind::GanetiOriginal => Found::Original { process: p },
            _ => Found::Silent {
                process: p,
                why: &daemon.control,
            },
        },
        // A live process that is no daemon: the pid file is stale and its
        // number was reused.
        (_, Some(_)) | (PidFile::Pid(_), None) => Found::Stopped,
        (PidFile::Missing | PidFile::Garbage(_) | PidFile::NotAFile(_), None) => {
            match daemon.control {
                Control::Absent | Control::Refused => Found::Stopped,
                _ => Found::Unknown,
            }
        }
        _ => Found::Unknown,
    }
}

/// Every finding the facts support, in no particular order.
pub fn evaluate(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let running = running(facts);
    daemon(facts, running, &mut out);
    if let Some(ganeti) = &facts.ganeti {
        self::ganeti(facts, ganeti, running, &mut out);
    }
    ctrl_dir(facts, running, &mut out);
    inotify(facts, running, &mut out);
    instances(facts, running, &mut out);
    hooks(facts, &mut out);
    metrics(facts, running, &mut out);
    out
}

/// What to do to start the daemon, in this mode.
fn start_advice(facts: &Facts) -> String {
    match facts.mode {
        Mode::Ganeti => "start it as Ganeti does: /usr/lib/ganeti/daemon-util start ganeti-kvmd \
             (systemd: systemctl start ganeti-kvmd); Ganeti also starts it with the next \
             instance start"
            .to_owned(),
        Mode::Standalone => {
            let pid_file = match &facts.daemon {
                Probed::Got(d) => d.pid_file.clone(),
                Probed::NoAnswer => "FILE".to_owned(),
            };
            format!(
                "start it: kvmd --no-ssconf --ctrl-dir {} --pid-file {pid_file} \
                 (or systemctl start kvmd)",
                facts.ctrl_dir
            )
        }
    }
}

fn control_said(control: &Control, socket: &str) -> String {
    match control {
        Control::Status(_) => format!("it answers on {socket}"),
        Control::Absent => format!("no control socket at {socket}"),
        Control::Refused => format!("nobody listens on {socket}"),
        Control::Denied => format!("not allowed to ask it at {socket}"),
        Control::Busy => format!("{socket} is busy"),
        Control::NoAnswer => format!("no answer on {socket} within {PROBE_SECONDS} s"),
        Control::Garbled(what) => format!("{socket} answered something else: {what}"),
        Control::Failed(why) => format!("cannot ask it at {socket}: {why}"),
    }
}

fn daemon(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    let daemon = match &facts.daemon {
        Probed::Got(daemon) => daemon,
        Probed::NoAnswer => {
            out.push(
                Finding::warn(
                    Check::DaemonRunning,
                    format!(
                        "cannot tell whether kvmd runs: no answer from its pid file, its \
                         process or its control socket within {PROBE_SECONDS} s"
                    ),
                )
                .advice("look for a hung file system under the pid file's directory"),
            );
            return;
        }
    };
    let pid_file = &daemon.pid_file;
    let socket = &daemon.control_socket;
    let finding = match running {
        Found::Kvmd { status, .. } => {
            let mut finding = Finding::ok(
                Check::DaemonRunning,
                format!(
                    "kvmd {} is running (pid {}, up {}), answering on {socket}",
                    status.version,
                    status.pid,
                    age(std::time::Duration::from_secs(status.uptime_seconds))
                ),
            );
            match &daemon.pid {
                PidFile::Pid(pid) if *pid == status.pid => {}
                PidFile::Pid(pid) => {
                    finding = Finding::warn(
                        Check::DaemonRunning,
                        format!(
                            "kvmd {} answers on {socket} as pid {}, but {pid_file} names pid {pid}",
                            status.version, status.pid
                        ),
                    )
                    .advice("give the doctor the daemon's own --pid-file and --control-socket");
                }
                PidFile::Missing => {
                    finding = Finding::warn(
                        Check::DaemonRunning,
                        format!(
                            "kvmd {} answers on {socket} (pid {}), but there is no pid file at \
                             {pid_file}",
                            status.version, status.pid
                        ),
                    )
                    .advice(
                        "give the doctor the daemon's own --pid-file (Ganeti looks for its \
                         daemon there)",
                    );
                }
                _ => {}
            }
            finding
        }
        Found::Original { process } => Finding::ok(
            Check::DaemonRunning,
            format!(
                "Ganeti's original ganeti-kvmd is running (pid {}, from {pid_file}); it has no \
                 status to ask",
                process.pid
            ),
        ),
        Found::Silent { process, why } => {
            let advice = match why {
                Control::Denied => "run the doctor as root (only root and kvmd's own user may ask)",
                _ => "give the doctor the daemon's --control-socket (a kvmd before 1.0 has none)",
            };
            Finding::warn(
                Check::DaemonRunning,
                format!(
                    "a daemon runs (pid {}, {}), but {}: what it monitors cannot be asked",
                    process.pid,
                    process.comm,
                    control_said(why, socket)
                ),
            )
            .advice(advice)
        }
        Found::Stopped => {
            let why = match (&daemon.pid, &daemon.process) {
                (PidFile::Pid(pid), Some(p)) => format!(
                    "{pid_file} names pid {pid}, which is {}, not kvmd (a stale pid file \
                     whose number was reused)",
                    p.comm
                ),
                (PidFile::Pid(pid), None) => {
                    format!("{pid_file} names pid {pid}, which is gone (left by a crash or a kill)")
                }
                (PidFile::Garbage(text), _) => {
                    format!("{pid_file} holds no pid ({text:?})")
                }
                (PidFile::NotAFile(kind), _) => format!("{pid_file} is {kind}, not a pid file"),
                _ => format!("no pid file at {pid_file}"),
            };
            Finding::fail(
                Check::DaemonRunning,
                format!(
                    "kvmd is not running: {why}; {}",
                    control_said(&daemon.control, socket)
                ),
            )
            .advice(start_advice(facts))
        }
        Found::Unknown => {
            let why = match &daemon.pid {
                PidFile::Unreadable(e) => format!("cannot read {pid_file}: {e}"),
                PidFile::NotAFile(kind) => format!("{pid_file} is {kind}, not a pid file"),
                PidFile::Missing => format!("no pid file at {pid_file}"),
                PidFile::Garbage(text) => format!("{pid_file} holds no pid ({text:?})"),
                PidFile::Pid(pid) => format!("{pid_file} names pid {pid}"),
            };
            Finding::warn(
                Check::DaemonRunning,
                format!(
                    "cannot tell whether kvmd runs: {why}; {}",
                    control_said(&daemon.control, socket)
                ),
            )
            .advice(if facts.doctor_uid == 0 {
                "give the doctor the daemon's own --pid-file and --control-socket"
            } else {
                "run the doctor as root"
            })
        }
    };
    out.push(finding);

    if let Some(process) = running.process() {
        out.push(binary(facts, running, process));
    }
    if let Some(pid) = facts.adopted {
        out.push(Finding::ok(
            Check::DaemonConfig,
            format!(
                "looked where kvmd (pid {pid}) looks: no flags were given, so its own command \
                 line said where"
            ),
        ));
    }
    if let Found::Kvmd { status, .. } = running {
        if status.same_dir == Some(false) {
            out.push(
                Finding::fail(
                    Check::DaemonConfig,
                    format!(
                        "kvmd watches {}, not {}, the control directory looked at",
                        status.ctrl_dir, facts.ctrl_dir
                    ),
                )
                .advice(
                    "give QEMU, kvmd and the doctor one control directory (--ctrl-dir; \
                     Ganeti's is /var/run/ganeti/kvm-hypervisor/ctrl)",
                ),
            );
        }
        if status.descriptor_shortage {
            out.push(
                Finding::fail(
                    Check::DaemonConfig,
                    "kvmd is out of file descriptors: instances past its limit wait to be \
                     monitored",
                )
                .advice("raise its limit (LimitNOFILE= in its unit, ulimit -n)"),
            );
        }
    }
}

/// `daemon.binary`: which binary the running daemon is.
fn binary(facts: &Facts, running: Found<'_>, process: &ProcessFacts) -> Finding {
    let pid = process.pid;
    let exe = match &process.exe {
        Exe::Path {
            path,
            replaced: true,
        } => {
            return Finding::warn(
                Check::DaemonBinary,
                format!(
                    "pid {pid} runs {path}, which was replaced or removed since it started \
                     (an upgrade not followed by a restart)"
                ),
            )
            .advice(match facts.mode {
                Mode::Ganeti => RESTART_GANETI_KVMD,
                Mode::Standalone => "restart it (systemctl restart kvmd)",
            });
        }
        Exe::Path { path, .. } => path.clone(),
        Exe::Unreadable(why) => format!("a binary the doctor cannot see ({why})"),
    };
    match (process.kind, running) {
        (_, Found::Kvmd { status, .. }) => {
            let mut said = format!("pid {pid} runs {exe}: kvmd {}", status.version);
            if status.version != env!("CARGO_PKG_VERSION") {
                said.push_str(&format!(" (this doctor is {})", env!("CARGO_PKG_VERSION")));
            }
            Finding::ok(Check::DaemonBinary, said)
        }
        (BinaryKind::GanetiOriginal, _) if facts.mode == Mode::Ganeti => Finding::ok(
            Check::DaemonBinary,
            format!("pid {pid} runs {exe}: Ganeti's original ganeti-kvmd (see ganeti.kvmd-binary)"),
        ),
        (BinaryKind::GanetiOriginal, _) => Finding::warn(
            Check::DaemonBinary,
            format!("pid {pid} runs {exe}: Ganeti's original ganeti-kvmd, not kvmd"),
        )
        .advice("run kvmd instead: it decides SIGTERM, QMP quit, resets and panics right"),
        (BinaryKind::Kvmd, _) => {
            Finding::ok(Check::DaemonBinary, format!("pid {pid} runs {exe}: kvmd"))
        }
        (BinaryKind::Other | BinaryKind::Unknown, _) => {
            Finding::ok(Check::DaemonBinary, format!("pid {pid} runs {exe}"))
        }
    }
}

fn file_text<'a>(g: &'a GanetiFacts, name: &str) -> Result<&'a str, String> {
    match g.file(name) {
        Some(Ok(text)) => Ok(text),
        Some(Err(e)) => Err(e.clone()),
        None => Err("not read".to_owned()),
    }
}

fn ganeti(facts: &Facts, ganeti: &Probed<GanetiFacts>, running: Found<'_>, out: &mut Vec<Finding>) {
    let g = match ganeti {
        Probed::Got(g) => g,
        Probed::NoAnswer => {
            out.push(
                Finding::fail(
                    Check::GanetiSsconf,
                    format!(
                        "no answer within {PROBE_SECONDS} s from Ganeti's ssconf files or from \
                         resolving this node's name (a hung file system, or DNS?)"
                    ),
                )
                .advice("Ganeti's daemon needs both at start: make them answer"),
            );
            return;
        }
    };
    let [hypervisors, enabled, capable] = ssconf::FILES;
    let read = [hypervisors, enabled, capable].map(|name| file_text(g, name));
    if read.iter().all(Result::is_err) {
        let why = read[0].clone().err().unwrap_or_default();
        out.push(
            Finding::fail(
                Check::GanetiSsconf,
                format!(
                    "cannot read Ganeti's ssconf in {} ({why}): not a Ganeti node?",
                    g.ssconf_dir
                ),
            )
            .advice(format!(
                "{}; without Ganeti: kvmd doctor --no-ssconf --ctrl-dir {}",
                if facts.doctor_uid == 0 {
                    "on a Ganeti node, --ssconf-dir names where its ssconf is"
                } else {
                    "on a Ganeti node, run the doctor as root"
                },
                facts.ctrl_dir
            )),
        );
        return;
    }
    let [hypervisors_text, enabled_text, capable_text] = read;
    let unreadable = |check: Check, name: &str, e: &str| {
        Finding::fail(
            check,
            format!(
                "cannot read {}/{name} ({e}): the daemon does not start without it",
                g.ssconf_dir
            ),
        )
        .advice("as root; on a node that lost its ssconf: gnt-cluster redist-conf on the master")
    };
    out.push(match &hypervisors_text {
        Ok(text) if ssconf::lists_kvm(text) => {
            Finding::ok(Check::GanetiHypervisor, "kvm is an enabled hypervisor")
        }
        Ok(text) => Finding::fail(
            Check::GanetiHypervisor,
            format!(
                "kvm is not an enabled hypervisor ({hypervisors}: {:?}): the daemon exits at \
                 start",
                text.trim()
            ),
        )
        .advice("gnt-cluster modify --enabled-hypervisors=kvm,... (on the master)"),
        Err(e) => unreadable(Check::GanetiHypervisor, hypervisors, e),
    });
    out.push(match &enabled_text {
        Ok(text) if ssconf::user_shutdown_enabled(text) => Finding::ok(
            Check::GanetiUserShutdown,
            format!("user shutdown is enabled for the cluster ({enabled} is True)"),
        ),
        Ok(text) => Finding::fail(
            Check::GanetiUserShutdown,
            format!(
                "user shutdown is off for the cluster ({enabled} is {:?}): the daemon exits at \
                 start (\"User shutdown not enabled\"), and Ganeti reports every stop as \
                 ERROR_down",
                text.trim()
            ),
        )
        .advice("gnt-cluster modify --user-shutdown=yes (on the master)"),
        Err(e) => unreadable(Check::GanetiUserShutdown, enabled, e),
    });
    out.push(match &capable_text {
        Ok(text) => match ssconf::vm_capable(text, &g.node) {
            Some(true) => Finding::ok(
                Check::GanetiNode,
                format!(
                    "this node is {} (as Ganeti resolves it), VM capable",
                    g.node
                ),
            ),
            Some(false) => Finding::fail(
                Check::GanetiNode,
                format!(
                    "this node, {}, is not VM capable: the daemon exits at start",
                    g.node
                ),
            )
            .advice(format!(
                "gnt-node modify --vm-capable=yes {} (on the master)",
                g.node
            )),
            None => {
                let names: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.split_once('=').map(|(n, _)| n.trim()))
                    .take(5)
                    .collect();
                Finding::fail(
                    Check::GanetiNode,
                    format!(
                        "this node's name as Ganeti resolves it ({}, Python's socket.getfqdn()) \
                         is not in {capable} (it lists {}): the daemon exits at start",
                        g.node,
                        names.join(", ")
                    ),
                )
                .advice(
                    "make `hostname -f` say the node's name as Ganeti knows it (/etc/hosts, \
                     /etc/hostname), or set GANETI_HOSTNAME",
                )
            }
        },
        Err(e) => unreadable(Check::GanetiNode, capable, e),
    });

    out.push(match file_text(g, HVPARAMS_KVM) {
        Ok(text) => match ssconf_value(text, "user_shutdown") {
            Some("True") => Finding::ok(
                Check::GanetiHvparam,
                "the cluster's kvm parameter user_shutdown is on",
            ),
            Some(value) => Finding::warn(
                Check::GanetiHvparam,
                format!(
                    "the cluster's kvm parameter user_shutdown is {value:?}: instances that do \
                     not turn it on themselves are reported ERROR_down after their user's \
                     shutdown, and Ganeti's watcher starts them again"
                ),
            )
            .advice("gnt-cluster modify -H kvm:user_shutdown=true (on the master)"),
            None => Finding::warn(
                Check::GanetiHvparam,
                format!("{HVPARAMS_KVM} does not say user_shutdown: cannot tell the cluster's"),
            )
            .advice("gnt-cluster info | grep user_shutdown (on the master)"),
        },
        Err(e) => Finding::warn(
            Check::GanetiHvparam,
            format!(
                "cannot read {HVPARAMS_KVM} ({e}): the cluster's user_shutdown cannot be told \
                 here"
            ),
        )
        .advice("gnt-cluster info | grep user_shutdown (on the master)"),
    });
    out.push(match &g.instances {
        GntInstances::NotMaster { master } => Finding::ok(
            Check::GanetiInstances,
            format!(
                "each instance's user_shutdown can only be asked on the master, {master}; \
                 this node is not it"
            ),
        )
        .advice(format!(
            "on {master}: gnt-instance list -o name,pnode,hv/user_shutdown"
        )),
        GntInstances::Unknown => Finding::warn(
            Check::GanetiInstances,
            "no ssconf_master_node: cannot tell which node may be asked for each instance's \
             user_shutdown",
        ),
        GntInstances::Listed(list) => Finding::ok(
            Check::GanetiInstances,
            format!(
                "asked Ganeti (gnt-instance list): {} of the cluster's {} instances have this \
                 node as primary",
                list.iter().filter(|i| i.pnode == g.node).count(),
                list.len()
            ),
        ),
        GntInstances::Failed(why) => Finding::warn(
            Check::GanetiInstances,
            format!("could not ask Ganeti for each instance's user_shutdown: {why}"),
        )
        .advice("run the doctor as root on the master (gnt-instance list)"),
    });

    let b = &g.binary;
    let diversion = match &b.diversion {
        Some(d) => match &d.by {
            Some(package) => format!(", diverted by {package}: Debian's binary kept at {}", d.to),
            None => format!(
                ", a local diversion (contrib/ganeti/install-kvmd): Debian's binary kept at {}",
                d.to
            ),
        },
        None => String::new(),
    };
    out.push(match (&b.target, b.kind) {
        (Err(e), _) => Finding::fail(
            Check::GanetiKvmdBinary,
            format!("{}: {e}: Ganeti has no daemon to start", b.path),
        )
        .advice("install ganeti-haskell-3.0 or -3.1, and kvmd-ganeti"),
        (Ok(target), BinaryKind::Kvmd) => Finding::ok(
            Check::GanetiKvmdBinary,
            format!(
                "{} is kvmd ({target}{})",
                b.path,
                if diversion.is_empty() {
                    ", not through a dpkg diversion: placed by hand".to_owned()
                } else {
                    diversion.clone()
                }
            ),
        ),
        (Ok(target), BinaryKind::GanetiOriginal) => Finding::warn(
            Check::GanetiKvmdBinary,
            format!(
                "{} is Ganeti's original ganeti-kvmd ({target}{diversion}): it takes SIGTERM, \
                 QMP quit, resets and panics for user shutdowns, never retries a refused \
                 connect, and has no status",
                b.path
            ),
        )
        .advice(
            "apt install kvmd-ganeti (or contrib/ganeti/install-kvmd), which restarts it onto kvmd",
        ),
        (Ok(target), BinaryKind::Other) => Finding::warn(
            Check::GanetiKvmdBinary,
            format!("{} ({target}) is neither kvmd nor Ganeti's daemon", b.path),
        ),
        (Ok(target), BinaryKind::Unknown) => Finding::warn(
            Check::GanetiKvmdBinary,
            format!(
                "cannot read {} ({target}) to tell which daemon it is",
                b.path
            ),
        )
        .advice("run the doctor as root"),
    });
    if let Some(process) = running.process() {
        let target = b.target.as_deref().unwrap_or(&b.path);
        let exe = match &process.exe {
            Exe::Path { path, .. } => path.as_str(),
            Exe::Unreadable(_) => "?",
        };
        out.push(match (process.exe_id, b.id) {
            (Some(running_id), Some(ganeti_id)) if running_id == ganeti_id => Finding::ok(
                Check::GanetiDaemonPath,
                format!(
                    "the running daemon (pid {}) is the binary Ganeti starts ({target})",
                    process.pid
                ),
            ),
            (Some(_), Some(_)) => Finding::warn(
                Check::GanetiDaemonPath,
                format!(
                    "the running daemon (pid {}) runs {exe}, but Ganeti would start {target}: \
                     its next restart changes which daemon runs",
                    process.pid
                ),
            )
            .advice(RESTART_GANETI_KVMD),
            _ => Finding::warn(
                Check::GanetiDaemonPath,
                format!(
                    "cannot tell whether the running daemon (pid {}) is the binary Ganeti \
                     starts ({target})",
                    process.pid
                ),
            )
            .advice("run the doctor as root"),
        });
    }
}

/// How Ganeti's daemon is restarted (daemon-util has no `restart`).
const RESTART_GANETI_KVMD: &str = "restart it: /usr/lib/ganeti/daemon-util stop ganeti-kvmd \
     && /usr/lib/ganeti/daemon-util start ganeti-kvmd (systemd: systemctl restart ganeti-kvmd)";

/// ssconf's copy of the cluster's kvm hypervisor parameters.
pub const HVPARAMS_KVM: &str = "ssconf_hvparams_kvm";
/// The master node's name, in ssconf.
pub const MASTER_NODE: &str = "ssconf_master_node";

fn ctrl_dir(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    let dir = &facts.ctrl_dir;
    let found = match &facts.dir {
        Probed::NoAnswer => {
            out.push(
                Finding::fail(
                    Check::CtrlDir,
                    format!(
                        "no answer from {dir} within {PROBE_SECONDS} s (a hung network file \
                         system?)"
                    ),
                )
                .advice("keep the control directory on a local tmpfs (/run)"),
            );
            return;
        }
        Probed::Got(found) => found,
    };
    let (uid, mode, fs) = match found {
        DirFacts::Dir { uid, mode, fs } => (*uid, *mode, *fs),
        DirFacts::Missing => {
            out.push(match facts.mode {
                Mode::Ganeti => Finding::warn(
                    Check::CtrlDir,
                    format!(
                        "{dir} does not exist: Ganeti makes it when it starts an instance, and \
                         kvmd waits for it"
                    ),
                ),
                Mode::Standalone => Finding::fail(
                    Check::CtrlDir,
                    format!("{dir} does not exist: QEMU cannot bind its socket there"),
                )
                .advice(format!("mkdir -p {dir}")),
            });
            return;
        }
        DirFacts::Symlink => {
            out.push(
                Finding::fail(
                    Check::CtrlDir,
                    format!(
                        "{dir} is a symlink: kvmd never follows one to its control directory \
                         (it waits for a real directory)"
                    ),
                )
                .advice("point --ctrl-dir, and QEMU's sockets, at the real directory"),
            );
            return;
        }
        DirFacts::NotADir => {
            out.push(
                Finding::fail(Check::CtrlDir, format!("{dir} is not a directory"))
                    .advice(format!("remove it; mkdir -p {dir}")),
            );
            return;
        }
        DirFacts::Failed(e) => {
            out.push(
                Finding::warn(Check::CtrlDir, format!("cannot look at {dir}: {e}"))
                    .advice("run the doctor as root"),
            );
            return;
        }
    };
    out.push(Finding::ok(Check::CtrlDir, format!("{dir} exists")));
    let daemon_uid = running.process().and_then(|p| p.uid).unwrap_or(0);
    let shown_mode = format!("{:04o}", mode & 0o7777);
    out.push(if uid != 0 && uid != daemon_uid {
        Finding::warn(
            Check::CtrlDirOwner,
            format!(
                "{dir} is owned by uid {uid} (mode {shown_mode}): that user can make and remove \
                 the shutdown files Ganeti reads"
            ),
        )
        .advice(format!("chown root {dir}"))
    } else if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        Finding::warn(
            Check::CtrlDirOwner,
            format!(
                "{dir} is writable by anyone (mode {shown_mode}): anyone can create \
                 <instance>.shutdown, and Ganeti would take a crash for its user's shutdown"
            ),
        )
        .advice(format!("chmod o-w {dir}"))
    } else {
        Finding::ok(
            Check::CtrlDirOwner,
            format!("owned by uid {uid}, mode {shown_mode}"),
        )
    });
    out.push(match fs {
        FsKind::Tmpfs | FsKind::Ramfs => Finding::ok(
            Check::CtrlDirFilesystem,
            "on tmpfs: shutdown files go with a reboot, as the instances do",
        ),
        FsKind::Other { magic, name } => Finding::warn(
            Check::CtrlDirFilesystem,
            format!(
                "on {name} (statfs magic {magic:#x}), not tmpfs: shutdown files outlive a \
                 reboot (after a crash Ganeti reads the last ones as USER_down, and its watcher \
                 leaves those instances down), and every verdict waits for the disk"
            ),
        )
        .advice("keep the control directory on tmpfs (under /run, as Ganeti's is)"),
    });
}

fn inotify(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    let needed = facts.watches_needed;
    if let Found::Kvmd { status, .. } = running {
        match status.watch.as_str() {
            "rescanning" => {
                out.push(
                    Finding::fail(
                        Check::InotifyWatches,
                        format!(
                            "kvmd could not get the {needed} inotify watches it needs for {}: \
                             it rescans it every few seconds instead of being told (verdicts \
                             wait, the node works harder)",
                            facts.ctrl_dir
                        ),
                    )
                    .advice(
                        "raise sysctl fs.inotify.max_user_watches (in a container also \
                         /proc/sys/user/max_inotify_watches); kvmd watches again by itself",
                    ),
                );
                return;
            }
            "watching" => {
                out.push(Finding::ok(
                    Check::InotifyWatches,
                    format!("kvmd has the {needed} inotify watches it needs"),
                ));
                return;
            }
            // Waiting for the directory: the numbers below say whether it
            // will have its watches once it appears.
            _ => {}
        }
    }
    let n = match &facts.inotify {
        Probed::Got(n) => n,
        Probed::NoAnswer => {
            out.push(Finding::warn(
                Check::InotifyWatches,
                format!(
                    "could not count inotify watches within {PROBE_SECONDS} s (/proc did not \
                     answer)"
                ),
            ));
            return;
        }
    };
    // A running daemon holds its watches already: only the limit matters.
    let has_them = running.is_running();
    out.push(limit_finding(
        Check::InotifyWatches,
        "watches",
        n,
        n.max_watches,
        n.used_watches,
        needed,
        has_them,
        &facts.ctrl_dir,
    ));
    out.push(limit_finding(
        Check::InotifyInstances,
        "instances",
        n,
        n.max_instances,
        n.used_instances,
        1,
        has_them,
        &facts.ctrl_dir,
    ));
}

/// inotify `what` (watches or instances): the limit against what kvmd
/// needs, and (when it does not run yet) against what is left.
#[allow(clippy::too_many_arguments)]
fn limit_finding(
    check: Check,
    what: &str,
    n: &InotifyFacts,
    limit: Option<u64>,
    used: u64,
    needed: u64,
    has_them: bool,
    dir: &str,
) -> Finding {
    let sysctl = match what {
        "watches" => {
            "fs.inotify.max_user_watches (in a container also /proc/sys/user/max_inotify_watches)"
        }
        _ => {
            "fs.inotify.max_user_instances (in a container also /proc/sys/user/max_inotify_instances)"
        }
    };
    let uid = n.uid;
    let Some(limit) = limit else {
        return Finding::warn(check, format!("cannot read the inotify {what} limit"));
    };
    let counted = if n.uncounted > 0 {
        format!(
            " ({} of uid {uid}'s processes could not be counted: run the doctor as root)",
            n.uncounted
        )
    } else {
        String::new()
    };
    if limit < needed {
        return Finding::fail(
            check,
            format!(
                "uid {uid} may have {limit} inotify {what}, and kvmd needs {needed} for {dir}: \
                 it can never watch it, only rescan now and then"
            ),
        )
        .advice(format!(
            "raise {sysctl} to {} or more",
            needed.max(used + needed)
        ));
    }
    let free = limit.saturating_sub(used);
    if !has_them && free < needed {
        return Finding::warn(
            check,
            format!(
                "uid {uid}'s processes use {used} of {limit} inotify {what}{counted}: kvmd \
                 needs {needed} more for {dir}, and would rescan instead of being told"
            ),
        )
        .advice(format!("raise {sysctl} to {} or more", used + needed));
    }
    Finding::ok(
        check,
        format!(
            "uid {uid} may have {limit} inotify {what}, {used} in use{counted}; kvmd needs \
             {needed}"
        ),
    )
}

/// Everything known of one instance.
#[derive(Default)]
struct View<'a> {
    qemus: Vec<&'a QemuFacts>,
    socket: Option<&'a Entry>,
    shutdown: Option<&'a Entry>,
    status: Option<&'a StatusInstance>,
    given_up: bool,
    gnt: Option<&'a GntInstance>,
}

impl View<'_> {
    fn is_empty(&self) -> bool {
        self.qemus.is_empty()
            && self.socket.is_none()
            && self.shutdown.is_none()
            && self.status.is_none()
            && !self.given_up
            && self.gnt.is_none()
    }
}

fn views<'a>(facts: &'a Facts, running: Found<'a>) -> BTreeMap<String, View<'a>> {
    let mut views: BTreeMap<String, View<'a>> = BTreeMap::new();
    if let Probed::Got(entries) = &facts.entries {
        for entry in &entries.list {
            match super::facts::role(&entry.name) {
                Role::Socket(name) => views.entry(name).or_default().socket = Some(entry),
                Role::Shutdown(name) => views.entry(name).or_default().shutdown = Some(entry),
                _ => {}
            }
        }
    }
    if let Probed::Got(qemus) = &facts.qemus {
        // An instance is a QEMU with a socket here, or with a `-name` (as
        // Ganeti starts them); one with neither, whose socket is in some
        // other directory, is another kvmd's (or nobody's) business.
        for qemu in qemus {
            if let Some(name) = qemu.instance() {
                views.entry(name.to_owned()).or_default().qemus.push(qemu);
            }
        }
    }
    if let Found::Kvmd { status, .. } = running {
        for instance in &status.instances {
            views.entry(instance.name.clone()).or_default().status = Some(instance);
        }
        for name in &status.given_up {
            views.entry(name.clone()).or_default().given_up = true;
        }
    }
    if let Some(Probed::Got(g)) = &facts.ganeti
        && let GntInstances::Listed(list) = &g.instances
    {
        for instance in list.iter().filter(|i| i.pnode == g.node) {
            views.entry(instance.name.clone()).or_default().gnt = Some(instance);
        }
    }
    if let Some(only) = &facts.instance {
        views.retain(|name, _| name == only);
        views.entry(only.clone()).or_default();
    }
    views
}

fn instances(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    entries(facts, out);
    let status = match running {
        Found::Kvmd { status, .. } => Some(status),
        _ => None,
    };
    for (name, view) in views(facts, running) {
        let shown = super::facts::shortened(&name, 80);
        let about = |f: Finding| f.about(&name);
        let verdict = status.and_then(|s| s.last_verdict(&name));
        if view.is_empty() && verdict.is_none() {
            out.push(about(Finding::warn(
                Check::InstanceCoverage,
                "no QEMU, socket, shutdown file, verdict or Ganeti instance by that name here",
            )));
            continue;
        }
        if let Some(f) = coverage(facts, running, &shown, &view) {
            out.push(about(f));
        }
        if let Some(f) = shutdown_file(facts, &shown, &view) {
            out.push(about(f));
        }
        if let Some(v) = verdict {
            let verdict = if v.user { "user" } else { "not user" };
            let said = format!(
                "last verdict {} ago: {verdict} ({}): {}; {shown}.shutdown {}",
                age(std::time::Duration::from_secs(v.age_seconds)),
                v.reason,
                v.why,
                v.file
            );
            out.push(about(match v.file.as_str() {
                "waiting" | "unwritable" => Finding::fail(
                    Check::InstanceVerdict,
                    format!(
                        "{said}: it could not be written ({})",
                        v.file_error.as_deref().unwrap_or("?")
                    ),
                )
                .advice(if v.file == "waiting" {
                    "kvmd tries again; make the control directory writable"
                } else {
                    "write or remove the file by hand as the verdict says; kvmd's log says why"
                }),
                _ => Finding::ok(Check::InstanceVerdict, said),
            }));
        }
        // An instance that does not run here is worth a line only when it
        // would not be covered once started.
        let here = !view.qemus.is_empty() || view.socket.is_some() || view.status.is_some();
        if let Some(g) = view.gnt.filter(|g| here || g.user_shutdown != Some(true)) {
            out.push(about(match g.user_shutdown {
                Some(true) => Finding::ok(Check::InstanceHvparam, "Ganeti's user_shutdown is on"),
                Some(false) => Finding::fail(
                    Check::InstanceHvparam,
                    "Ganeti's user_shutdown is off for this instance: Ganeti reports its user's \
                     shutdowns as ERROR_down, and its watcher starts it again, whatever kvmd \
                     records",
                )
                .advice(format!(
                    "gnt-instance modify -H user_shutdown=true {name} (on the master)"
                )),
                None => Finding::warn(
                    Check::InstanceHvparam,
                    "Ganeti did not say its user_shutdown",
                ),
            }));
        }
    }
}

/// Entries that name no instance kvmd can monitor, and the listing's bounds.
fn entries(facts: &Facts, out: &mut Vec<Finding>) {
    let Probed::Got(Entries { list, more, error }) = &facts.entries else {
        if matches!(facts.dir, Probed::Got(DirFacts::Dir { .. })) {
            out.push(Finding::fail(
                Check::CtrlDirEntry,
                format!(
                    "listing {} gave no answer within {PROBE_SECONDS} s",
                    facts.ctrl_dir
                ),
            ));
        }
        return;
    };
    for entry in list {
        match super::facts::role(&entry.name) {
            Role::Nameless => out.push(
                Finding::warn(
                    Check::CtrlDirEntry,
                    format!(
                        "{}/.kvmd names no instance: kvmd ignores it",
                        facts.ctrl_dir
                    ),
                )
                .advice(format!("rm {}/.kvmd", facts.ctrl_dir)),
            ),
            Role::TooLong(name) => out.push(
                Finding::fail(
                    Check::CtrlDirEntry,
                    format!(
                        "{}.kvmd: the name is too long for its .shutdown file (255 bytes): \
                         kvmd can record no verdict for it",
                        super::facts::shortened(&name, 40)
                    ),
                )
                .advice("name instances in at most 246 bytes"),
            ),
            _ => {}
        }
    }
    if *more > 0 {
        out.push(Finding::warn(
            Check::CtrlDirEntry,
            format!(
                "{} holds {more} more entries than the doctor looks at",
                facts.ctrl_dir
            ),
        ));
    }
    // Not there, or not a directory: the directory's own finding says so.
    if let (Some(e), Probed::Got(DirFacts::Dir { .. })) = (error, &facts.dir) {
        out.push(Finding::warn(
            Check::CtrlDirEntry,
            format!("could not list all of {}: {e}", facts.ctrl_dir),
        ));
    }
}

fn restart_advice(facts: &Facts, name: &str) -> String {
    match facts.mode {
        Mode::Ganeti => format!("restart it to be covered: gnt-instance reboot {name}"),
        Mode::Standalone => format!(
            "restart the guest to be covered, with -qmp unix:{}/{name}.kvmd,server=on,wait=off",
            facts.ctrl_dir
        ),
    }
}

/// `instance.coverage`: whether the instance's QEMU is monitored.
fn coverage(facts: &Facts, running: Found<'_>, name: &str, v: &View<'_>) -> Option<Finding> {
    let dir = &facts.ctrl_dir;
    // What kvmd says comes first: it knows the QEMU on the other end of
    // its connection, whatever the doctor made of the process list.
    if let Some(s) = v.status
        && s.phase == "monitoring"
    {
        let pid = s.qemu_pid.map_or(String::new(), |p| format!(" pid {p}"));
        return Some(Finding::ok(
            Check::InstanceCoverage,
            format!(
                "monitored by kvmd for {} (QEMU{pid} {}, guest {})",
                age(std::time::Duration::from_secs(s.since_seconds)),
                s.qemu.as_deref().unwrap_or("?"),
                s.guest.as_deref().unwrap_or("?")
            ),
        ));
    }
    if v.qemus.len() > 1 {
        let pids: Vec<String> = v.qemus.iter().map(|q| q.pid.to_string()).collect();
        return Some(
            Finding::warn(
                Check::InstanceCoverage,
                format!(
                    "{} QEMU processes claim this name (pids {})",
                    pids.len(),
                    pids.join(", ")
                ),
            )
            .advice("stop the one that is not the instance's"),
        );
    }
    let qemu = v.qemus.first().copied();
    if let Some(q) = qemu {
        let pid = q.pid;
        if q.sockets.is_empty() {
            return Some(
                Finding::fail(
                    Check::InstanceCoverage,
                    format!(
                        "its QEMU (pid {pid}) was started without a QMP socket for kvmd (no \
                         -qmp unix:{dir}/{name}.kvmd): nobody can learn how it stops{}",
                        match facts.mode {
                            Mode::Ganeti => {
                                " (Ganeti 3 gives every QEMU one: this one was started by an \
                                 older Ganeti, or otherwise)"
                            }
                            Mode::Standalone => "",
                        }
                    ),
                )
                .advice(restart_advice(facts, name)),
            );
        }
        if !q.sockets.iter().any(|s| s.instance.is_some()) {
            return Some(
                Finding::fail(
                    Check::InstanceCoverage,
                    format!(
                        "its QEMU (pid {pid}) has its kvmd socket at {}, outside {dir}, the \
                         directory kvmd watches",
                        q.sockets[0].path
                    ),
                )
                .advice("give QEMU and kvmd one control directory (--ctrl-dir)"),
            );
        }
        match v.socket {
            None => {
                return Some(
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!(
                            "{name}.kvmd was removed while its QEMU (pid {pid}) runs: nobody can \
                             connect to it again"
                        ),
                    )
                    .advice(restart_advice(facts, name)),
                );
            }
            Some(e) if e.kind != EntryKind::Socket => {
                return Some(
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!(
                            "{name}.kvmd is {}, not its QEMU's socket (pid {pid})",
                            e.kind.as_str()
                        ),
                    )
                    .advice(format!(
                        "rm {dir}/{name}.kvmd; {}",
                        restart_advice(facts, name)
                    )),
                );
            }
            Some(_) => {}
        }
    } else {
        let socket = v.socket?;
        if socket.kind != EntryKind::Socket {
            return Some(
                Finding::warn(
                    Check::InstanceCoverage,
                    format!(
                        "{name}.kvmd is {}, not a socket: kvmd ignores it",
                        socket.kind.as_str()
                    ),
                )
                .advice(format!("rm {dir}/{name}.kvmd")),
            );
        }
        let listening = facts
            .unix
            .as_ref()
            .map(|u| u.listening.contains(&socket.name));
        if listening != Some(true) {
            let why = match listening {
                Some(_) => "nobody listens on it: left by a QEMU that was killed",
                None => "no QEMU process names it",
            };
            return Some(
                Finding::warn(
                    Check::InstanceCoverage,
                    format!("{name}.kvmd has no QEMU behind it ({why})"),
                )
                .advice(format!(
                    "harmless: the instance's next QEMU replaces it; rm {dir}/{name}.kvmd if the \
                     instance is gone"
                )),
            );
        }
    }
    // A socket in the control directory with a QEMU (or a listener)
    // behind it: whether the daemon is on the other end.
    let socket = v.socket?;
    let connected = facts
        .unix
        .as_ref()
        .map(|u| u.connected.contains(&socket.name));
    let behind = qemu.map_or(
        "something that is not a QEMU process the doctor recognizes \
         listens on it"
            .to_owned(),
        |q| format!("QEMU pid {}", q.pid),
    );
    Some(match running {
        Found::Kvmd { status, process } => {
            if status.same_dir == Some(false) {
                Finding::fail(
                    Check::InstanceCoverage,
                    format!("not monitored ({behind}): kvmd watches {}", status.ctrl_dir),
                )
                .advice("see daemon.config")
            } else if let Some(s) = v.status {
                let since = s.since_seconds;
                match s.phase.as_str() {
                    "waiting-for-descriptor" => Finding::fail(
                        Check::InstanceCoverage,
                        format!("not monitored ({behind}): kvmd is out of file descriptors"),
                    )
                    .advice("raise kvmd's descriptor limit (LimitNOFILE=)"),
                    phase if since < CONNECTING_WARN_SECONDS => Finding::ok(
                        Check::InstanceCoverage,
                        format!("kvmd is connecting ({phase}, {since} s; {behind})"),
                    ),
                    phase => Finding::warn(
                        Check::InstanceCoverage,
                        format!("kvmd has been {phase} for {since} s ({behind})"),
                    )
                    .advice("QEMU does not answer on its socket: is it hung or stopped?"),
                }
            } else if v.given_up {
                Finding::fail(
                    Check::InstanceCoverage,
                    format!(
                        "not monitored ({behind}): kvmd gave up, nobody listened on \
                         {name}.kvmd when it tried"
                    ),
                )
                .advice(format!(
                    "kvmd tries again when the socket is made anew: {}",
                    restart_advice(facts, name)
                ))
            } else {
                let kvmd_uid = process.and_then(|p| p.uid).unwrap_or(0);
                let trusted = socket.uid == kvmd_uid || facts.socket_owners.contains(&socket.uid);
                if !trusted {
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!(
                            "not monitored ({behind}): {name}.kvmd is owned by uid {}, whose \
                             sockets kvmd does not trust",
                            socket.uid
                        ),
                    )
                    .advice(format!(
                        "if that is QEMU's user: kvmd --socket-owner {}",
                        socket.uid
                    ))
                } else {
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!("not monitored ({behind}): kvmd does not list it"),
                    )
                    .advice(format!("look for {name} in kvmd's log"))
                }
            }
        }
        Found::Original { .. } => match connected {
            Some(true) => Finding::ok(
                Check::InstanceCoverage,
                format!(
                    "a client, the original ganeti-kvmd presumably, is connected to \
                     {name}.kvmd ({behind}); it has no status to say more"
                ),
            ),
            _ => Finding::fail(
                Check::InstanceCoverage,
                format!(
                    "nobody is connected to {name}.kvmd ({behind}): the original ganeti-kvmd \
                     never retries a refused connect, and watches nothing of this instance \
                     until its next start"
                ),
            )
            .advice("install kvmd-ganeti; or restart ganeti-kvmd"),
        },
        Found::Silent { process, .. } => match connected {
            Some(true) => Finding::ok(
                Check::InstanceCoverage,
                format!(
                    "a client, the daemon (pid {}) presumably, is connected to {name}.kvmd \
                     ({behind})",
                    process.pid
                ),
            ),
            _ => Finding::warn(
                Check::InstanceCoverage,
                format!(
                    "nobody is connected to {name}.kvmd ({behind}), and the daemon could not \
                     be asked why"
                ),
            )
            .advice("see daemon.running"),
        },
        Found::Stopped => Finding::fail(
            Check::InstanceCoverage,
            format!("not monitored ({behind}): kvmd is not running"),
        )
        .advice("see daemon.running"),
        Found::Unknown => Finding::warn(
            Check::InstanceCoverage,
            format!(
                "cannot tell whether kvmd monitors it ({behind}){}",
                match connected {
                    Some(true) => "; a client is connected to its socket",
                    Some(false) => "; no client is connected to its socket",
                    None => "",
                }
            ),
        ),
    })
}

/// `instance.shutdown-file`: a stale or odd `<name>.shutdown`.
fn shutdown_file(facts: &Facts, name: &str, v: &View<'_>) -> Option<Finding> {
    let file = v.shutdown?;
    let path = format!("{}/{name}.shutdown", facts.ctrl_dir);
    if file.kind != EntryKind::File {
        return Some(
            Finding::warn(
                Check::InstanceShutdownFile,
                format!(
                    "{name}.shutdown is {}, not the empty file kvmd writes: Ganeti takes \
                     anything by that name for its user's shutdown",
                    file.kind.as_str()
                ),
            )
            .advice(format!("rm {path}, unless its user shut {name} down")),
        );
    }
    let runs = !v.qemus.is_empty() || v.status.is_some_and(|s| s.phase == "monitoring");
    if runs {
        let (who, how) = match facts.mode {
            Mode::Ganeti => (
                "Ganeti",
                " (Ganeti removes it whenever it starts an instance: this QEMU was started \
                 otherwise, or the file written since)",
            ),
            Mode::Standalone => ("whoever reads it", ""),
        };
        return Some(
            Finding::warn(
                Check::InstanceShutdownFile,
                format!(
                    "{name}.shutdown exists while its QEMU runs: should QEMU end while kvmd is \
                     not watching, {who} would take that for its user's shutdown"
                ),
            )
            .advice(format!("rm {path}{how}")),
        );
    }
    Some(Finding::ok(
        Check::InstanceShutdownFile,
        format!(
            "down; {name}.shutdown says its user shut it down{}",
            match facts.mode {
                Mode::Ganeti => " (Ganeti reports USER_down)",
                Mode::Standalone => "",
            }
        ),
    ))
}

fn hooks(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(hook) = &facts.hook else {
        out.push(Finding::ok(
            Check::HookProgram,
            "no --on-verdict hook (none given, none in the running kvmd's command line)",
        ));
        return;
    };
    let h = match hook {
        Probed::Got(h) => h,
        Probed::NoAnswer => {
            out.push(Finding::fail(
                Check::HookProgram,
                format!("checking the hook program gave no answer within {PROBE_SECONDS} s"),
            ));
            return;
        }
    };
    let whose = if h.from_daemon {
        " (the running kvmd's --on-verdict)"
    } else {
        ""
    };
    out.push(match &h.check {
        Ok(real) => Finding::ok(
            Check::HookProgram,
            format!("{}{whose} ({real}) passes kvmd's safety checks", h.program),
        ),
        Err(why) => Finding::fail(
            Check::HookProgram,
            format!("{why}{whose}: kvmd refuses to start with it (it would run as root)"),
        )
        .advice(
            "an absolute path to an executable file owned by root, not writable by group or \
             others, in directories likewise (chown root; chmod go-w)",
        ),
    });
    out.push(match &h.state_dir {
        Ok(()) => Finding::ok(
            Check::HookStateDir,
            "the state directory (which says what runs again) is kvmd's alone",
        ),
        Err(why) => Finding::fail(
            Check::HookStateDir,
            format!("{why}: kvmd refuses to start with hooks"),
        )
        .advice("chown root and chmod 700 the state directory"),
    });
}

fn metrics(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    let Some(metrics) = &facts.metrics else {
        out.push(Finding::ok(
            Check::MetricsFile,
            "no --metrics-file (none given, none in the running kvmd's command line)",
        ));
        return;
    };
    let m = match metrics {
        Probed::Got(m) => m,
        Probed::NoAnswer => {
            out.push(Finding::warn(
                Check::MetricsFile,
                format!("the metrics file gave no answer within {PROBE_SECONDS} s"),
            ));
            return;
        }
    };
    let path = &m.path;
    let started = running.started(facts.now);
    let kvmd = matches!(running, Found::Kvmd { .. } | Found::Silent { .. });
    out.push(match &m.file {
        Ok(file) => match (file.start_time, started) {
            (None, _) => Finding::warn(
                Check::MetricsFile,
                format!("{path} is not kvmd's metrics (no kvmd_start_time_seconds)"),
            ),
            (Some(written), Some(started))
                if kvmd && (written - started).abs() <= START_SLACK_SECONDS =>
            {
                Finding::ok(
                    Check::MetricsFile,
                    format!(
                        "{path} is the running kvmd's, written {} ago (at every change)",
                        age(std::time::Duration::from_secs_f64(
                            file.age_seconds.max(0.0)
                        ))
                    ),
                )
            }
            (Some(_), Some(_)) if kvmd => Finding::warn(
                Check::MetricsFile,
                format!(
                    "{path} was written by an earlier kvmd, not by the running one: it cannot \
                     write there, and node_exporter exports old numbers"
                ),
            )
            .advice("kvmd's log says why it cannot write it (\"cannot write\")"),
            _ => Finding::warn(
                Check::MetricsFile,
                format!(
                    "{path} was left by a kvmd that is no longer running: node_exporter exports \
                     its last numbers as if they were current"
                ),
            )
            .advice(format!("start kvmd, or rm {path}")),
        },
        Err(MetricsProblem::Missing) if kvmd => Finding::warn(
            Check::MetricsFile,
            format!("{path} does not exist: kvmd writes it at start and at every change"),
        )
        .advice("give kvmd --metrics-file with this path, or see its log (\"cannot write\")"),
        Err(MetricsProblem::Missing) => Finding::ok(
            Check::MetricsFile,
            format!("{path} does not exist (kvmd is not running)"),
        ),
        Err(MetricsProblem::NotAFile(kind)) => Finding::warn(
            Check::MetricsFile,
            format!("{path} is {kind}, not a metrics file: kvmd replaces it when it writes"),
        ),
        Err(MetricsProblem::Unreadable(e)) => {
            Finding::warn(Check::MetricsFile, format!("cannot read {path}: {e}"))
        }
    });
}

#[cfg(test)]
mod tests;
