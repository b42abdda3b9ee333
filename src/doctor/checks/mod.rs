//! The doctor's judgement, pure: facts in, findings out.
//!
//! This module owns what each fact means for user-shutdown detection,
//! how bad it is, and what to do about it. It reads no file and asks no
//! process ([`super::probe`] does), so every case is a unit test (in
//! `tests.rs`). Each area of the report has a module of its own: the
//! daemon, Ganeti, the control directory (and inotify), the instances, and
//! hooks and metrics; this one says which daemon was found, which they all
//! need, and puts their findings together.

mod ctrl_dir;
mod daemon;
mod ganeti;
mod instances;
mod outputs;

use super::facts::{BinaryKind, Control, Facts, PidFile, Probed, ProcessFacts, StatusFacts};
use super::findings::Finding;

/// How long a probe may take before the doctor gives up on it: said in
/// findings about probes that did not answer.
pub(crate) const PROBE_SECONDS: u64 = 5;

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
    // Something took the connection or refused this user: a daemon runs,
    // whatever the pid file says (a process of another user is invisible
    // under `hidepid`, and a pid file may be another daemon's).
    let listens = matches!(
        daemon.control,
        Control::Denied | Control::Busy | Control::NoAnswer | Control::Garbled(_)
    );
    match (&daemon.pid, &daemon.process) {
        (_, Some(p)) if p.is_daemon() => match p.kind {
            BinaryKind::GanetiOriginal => Found::Original { process: p },
            _ => Found::Silent {
                process: p,
                why: &daemon.control,
            },
        },
        _ if listens => Found::Unknown,
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
pub(crate) fn evaluate(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let running = running(facts);
    // Ganeti's first: a daemon that is not running is told what keeps it
    // from starting.
    let mut of_ganeti = Vec::new();
    if let Some(ganeti) = &facts.ganeti {
        ganeti::ganeti(ganeti, running, &mut of_ganeti);
    }
    daemon::daemon(
        facts,
        running,
        &ganeti::start_blockers(&of_ganeti),
        &mut out,
    );
    out.extend(of_ganeti);
    ctrl_dir::ctrl_dir(facts, running, &mut out);
    ctrl_dir::inotify(facts, running, &mut out);
    instances::instances(facts, running, &mut out);
    outputs::state_dir(facts, &mut out);
    outputs::hooks(facts, &mut out);
    outputs::metrics(facts, running, &mut out);
    out
}

/// How Ganeti's daemon is restarted (daemon-util has no `restart`).
const RESTART_GANETI_KVMD: &str = "restart it: /usr/lib/ganeti/daemon-util stop ganeti-kvmd \
     && /usr/lib/ganeti/daemon-util start ganeti-kvmd (systemd: systemctl restart ganeti-kvmd)";

/// ssconf's copy of the cluster's kvm hypervisor parameters.
pub(crate) const HVPARAMS_KVM: &str = "ssconf_hvparams_kvm";
/// The master node's name, in ssconf.
pub(crate) const MASTER_NODE: &str = "ssconf_master_node";
/// The cluster's instances, one name a line, in ssconf.
pub(crate) const INSTANCE_LIST: &str = "ssconf_instance_list";

#[cfg(test)]
mod tests;
