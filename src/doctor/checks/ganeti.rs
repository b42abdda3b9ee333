//! `ganeti.*`: the switches and the binary Ganeti has, as ssconf and
//! Ganeti's tools tell them.

use super::{Found, HVPARAMS_KVM, PROBE_SECONDS, RESTART_GANETI_KVMD};
use crate::adapters::ssconf;
use crate::doctor::facts::{
    BinaryKind, Exe, GanetiFacts, GntInstances, Probed, Unread, ssconf_value,
};
use crate::doctor::findings::{Check, Finding, Severity};

/// The checks among `findings` that fail on one of the conditions Ganeti's
/// daemon checks at start (kvm enabled, user shutdown on, this node VM
/// capable, ssconf readable): with any, it exits at once.
pub(super) fn start_blockers(findings: &[Finding]) -> Vec<Check> {
    let mut blockers: Vec<Check> = findings
        .iter()
        .filter(|f| f.severity == Severity::Fail)
        .map(|f| f.check)
        .filter(|c| {
            matches!(
                c,
                Check::GanetiSsconf
                    | Check::GanetiHypervisor
                    | Check::GanetiUserShutdown
                    | Check::GanetiNode
            )
        })
        .collect();
    blockers.sort();
    blockers.dedup();
    blockers
}

fn file_text<'a>(g: &'a GanetiFacts, name: &str) -> Result<&'a str, Unread> {
    match g.file(name) {
        Some(Ok(text)) => Ok(text),
        Some(Err(e)) => Err(e.clone()),
        None => Err(Unread::Failed("not read".to_owned())),
    }
}

pub(super) fn ganeti(ganeti: &Probed<GanetiFacts>, running: Found<'_>, out: &mut Vec<Finding>) {
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
    let ssconf = switches(g, out);
    // Ganeti's binary is worth telling about on a node whose cluster is
    // not (yet) set up too: the package installs it before `gnt-cluster init`.
    // Neither ssconf nor Ganeti's binary: no Ganeti here at all (a
    // standalone node where --no-ssconf was forgotten), and the ssconf
    // finding's advice says so already.
    if ssconf == Ssconf::Missing && g.binary.target.is_err() {
        return;
    }
    binary(g, running, out);
}

/// What the doctor found of ssconf's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ssconf {
    /// At least one of them read.
    Read,
    /// None there.
    Missing,
    /// None readable (denied, or another error).
    Unreadable,
}

/// The cluster's switches, from ssconf: none readable is one failure.
fn switches(g: &GanetiFacts, out: &mut Vec<Finding>) -> Ssconf {
    let [hypervisors, enabled, capable] = ssconf::FILES;
    let read = [hypervisors, enabled, capable].map(|name| file_text(g, name));
    if read.iter().all(Result::is_err) {
        let denied = read.iter().any(|r| matches!(r, Err(Unread::Denied(_))));
        let missing = read.iter().all(|r| matches!(r, Err(Unread::Missing)));
        // What keeps this user out says most; else the first error.
        let why = read
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find(|e| matches!(e, Unread::Denied(_)) || !denied)
            .map(ToString::to_string)
            .unwrap_or_default();
        let summary = if missing {
            format!(
                "no ssconf in {}: this is no Ganeti node, or its ssconf is elsewhere",
                g.ssconf_dir
            )
        } else if denied {
            format!(
                "this user may not read Ganeti's ssconf in {} ({why})",
                g.ssconf_dir
            )
        } else {
            format!(
                "cannot read Ganeti's ssconf in {} ({why}): not a Ganeti node?",
                g.ssconf_dir
            )
        };
        out.push(
            Finding::fail(Check::GanetiSsconf, summary).advice(if denied {
                "run the doctor as root (Ganeti's ssconf files are root's)".to_owned()
            } else {
                "on a Ganeti node, --ssconf-dir names where its ssconf is; without Ganeti: \
                 kvmd doctor --no-ssconf, with the daemon's own --ctrl-dir and --pid-file"
                    .to_owned()
            }),
        );
        return if missing {
            Ssconf::Missing
        } else {
            Ssconf::Unreadable
        };
    }
    let [hypervisors_text, enabled_text, capable_text] = read;
    let unreadable = |check: Check, name: &str, e: &Unread| {
        Finding::fail(
            check,
            format!(
                "cannot read {}/{name} ({e}): the daemon does not start without it",
                g.ssconf_dir
            ),
        )
        .advice(match e {
            Unread::Denied(_) => "run the doctor as root",
            _ => "on the master: gnt-cluster redist-conf (this node's ssconf is incomplete)",
        })
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
    Ssconf::Read
}

/// Which daemon Ganeti would start, and whether it is the one running.
fn binary(g: &GanetiFacts, running: Found<'_>, out: &mut Vec<Finding>) {
    let b = &g.binary;
    let diversion = match &b.diversion {
        Some(d) => {
            // kvmd-ganeti diverts a link on the way (Ganeti's versioned
            // path), not the file the way ends at: name it.
            let what = match &b.target {
                Ok(target) if *target == d.path => String::new(),
                _ => format!(" through {},", d.path),
            };
            match &d.by {
                Some(package) => format!(
                    ",{what} diverted by {package}: Debian's binary kept at {}",
                    d.to
                ),
                None => format!(
                    ",{what} a local diversion (contrib/ganeti/install-kvmd): Debian's binary \
                     kept at {}",
                    d.to
                ),
            }
        }
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
