//! What `kvmd doctor` reports: findings, their order, and the exit status.
//!
//! This module owns the vocabulary of the report: each [`Check`] has a
//! stable id (the `check` field of `--json`, documented in kvmd(8)), each
//! finding a [`Severity`]. It is pure: the checks ([`super::checks`]) make
//! findings from facts, [`super::render`] prints them.

/// How bad a finding is. Ordered: the report's status is the worst one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Severity {
    /// Works as it should; said so that the operator knows it was looked at.
    Ok,
    /// Works, but not as well as it should, or the doctor cannot tell.
    Warn,
    /// User shutdowns are (or will be) missed, or taken for what they are not.
    Fail,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        }
    }

    /// `kvmd doctor`'s exit status for a report this bad: LSB's "program
    /// is not running" (3) is taken for warnings only, as `kvmd status`
    /// uses 3 for "not running" and the two are never confused by a
    /// script that asks for `--json`.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Fail => 1,
            Severity::Warn => 3,
        }
    }
}

/// Where a check belongs in the report: the order an operator fixes
/// things in (a daemon that does not run explains everything below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Section {
    Daemon,
    Ganeti,
    ControlDirectory,
    Inotify,
    Instances,
    StateDirectory,
    Hooks,
    Metrics,
}

/// Every check the doctor makes. The ids are part of kvmd's interface:
/// never renamed, only added to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// Whether kvmd (or Ganeti's original daemon) runs: pid file, process,
    /// control socket.
    DaemonRunning,
    /// Which binary the running daemon is, and whether it was replaced on
    /// disk since it started.
    DaemonBinary,
    /// Whether the running daemon watches the control directory asked about.
    DaemonConfig,
    /// Ganeti's ssconf files can be read (this is a Ganeti node).
    GanetiSsconf,
    /// `ssconf_hypervisor_list` lists kvm.
    GanetiHypervisor,
    /// `ssconf_enabled_user_shutdown`, the cluster's switch.
    GanetiUserShutdown,
    /// This node's name, as Ganeti resolves it, is VM capable.
    GanetiNode,
    /// The cluster's `user_shutdown` hypervisor parameter (ssconf).
    GanetiHvparam,
    /// Whether Ganeti's tools could be asked for each instance's parameter.
    GanetiInstances,
    /// What `/usr/sbin/ganeti-kvmd` is: kvmd or Ganeti's original.
    GanetiKvmdBinary,
    /// Whether the running daemon is the binary Ganeti would start.
    GanetiDaemonPath,
    /// The control directory exists and is a directory.
    CtrlDir,
    /// Its owner and mode.
    CtrlDirOwner,
    /// Its file system (tmpfs or a disk).
    CtrlDirFilesystem,
    /// inotify watches allowed against what kvmd needs.
    InotifyWatches,
    /// inotify instances allowed against what kvmd needs.
    InotifyInstances,
    /// An instance's QEMU, its socket, and whether kvmd monitors it.
    InstanceCoverage,
    /// An instance's `user_shutdown` hypervisor parameter.
    InstanceHvparam,
    /// An instance's `<name>.shutdown` file (stale, or odd).
    InstanceShutdownFile,
    /// An instance's last verdict with its reason.
    InstanceVerdict,
    /// An entry of the control directory that names no instance kvmd
    /// could monitor (`.kvmd`, a name too long).
    CtrlDirEntry,
    /// The state directory's owner and mode: what is kept there decides
    /// verdicts (intents, evidence) and runs programs (hooks).
    StateDirOwner,
    /// The `--on-verdict` program against the daemon's safety checks.
    HookProgram,
    /// The metrics file: written by the running kvmd or left behind.
    MetricsFile,
}

impl Check {
    /// The stable id, as `--json` and the text report show it.
    pub fn id(self) -> &'static str {
        match self {
            Check::DaemonRunning => "daemon.running",
            Check::DaemonBinary => "daemon.binary",
            Check::DaemonConfig => "daemon.config",
            Check::GanetiSsconf => "ganeti.ssconf",
            Check::GanetiHypervisor => "ganeti.hypervisor",
            Check::GanetiUserShutdown => "ganeti.user-shutdown",
            Check::GanetiNode => "ganeti.node",
            Check::GanetiHvparam => "ganeti.hvparam",
            Check::GanetiInstances => "ganeti.instances",
            Check::GanetiKvmdBinary => "ganeti.kvmd-binary",
            Check::GanetiDaemonPath => "ganeti.daemon-path",
            Check::CtrlDir => "ctrl-dir.present",
            Check::CtrlDirOwner => "ctrl-dir.owner",
            Check::CtrlDirFilesystem => "ctrl-dir.filesystem",
            Check::InotifyWatches => "inotify.watches",
            Check::InotifyInstances => "inotify.instances",
            Check::InstanceCoverage => "instance.coverage",
            Check::InstanceHvparam => "instance.hvparam",
            Check::InstanceShutdownFile => "instance.shutdown-file",
            Check::InstanceVerdict => "instance.verdict",
            Check::CtrlDirEntry => "ctrl-dir.entry",
            Check::StateDirOwner => "state-dir.owner",
            Check::HookProgram => "hooks.program",
            Check::MetricsFile => "metrics.file",
        }
    }

    pub(crate) fn section(self) -> Section {
        match self {
            Check::DaemonRunning | Check::DaemonBinary | Check::DaemonConfig => Section::Daemon,
            Check::GanetiSsconf
            | Check::GanetiHypervisor
            | Check::GanetiUserShutdown
            | Check::GanetiNode
            | Check::GanetiHvparam
            | Check::GanetiInstances
            | Check::GanetiKvmdBinary
            | Check::GanetiDaemonPath => Section::Ganeti,
            Check::CtrlDir | Check::CtrlDirOwner | Check::CtrlDirFilesystem => {
                Section::ControlDirectory
            }
            Check::InotifyWatches | Check::InotifyInstances => Section::Inotify,
            Check::InstanceCoverage
            | Check::InstanceHvparam
            | Check::InstanceShutdownFile
            | Check::InstanceVerdict
            | Check::CtrlDirEntry => Section::Instances,
            Check::StateDirOwner => Section::StateDirectory,
            Check::HookProgram => Section::Hooks,
            Check::MetricsFile => Section::Metrics,
        }
    }

    /// Every check, in report order (for the man page and its test).
    pub const ALL: [Check; 24] = [
        Check::DaemonRunning,
        Check::DaemonBinary,
        Check::DaemonConfig,
        Check::GanetiSsconf,
        Check::GanetiHypervisor,
        Check::GanetiUserShutdown,
        Check::GanetiNode,
        Check::GanetiHvparam,
        Check::GanetiInstances,
        Check::GanetiKvmdBinary,
        Check::GanetiDaemonPath,
        Check::CtrlDir,
        Check::CtrlDirOwner,
        Check::CtrlDirFilesystem,
        Check::InotifyWatches,
        Check::InotifyInstances,
        Check::InstanceCoverage,
        Check::InstanceHvparam,
        Check::InstanceShutdownFile,
        Check::InstanceVerdict,
        Check::CtrlDirEntry,
        Check::StateDirOwner,
        Check::HookProgram,
        Check::MetricsFile,
    ];
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) check: Check,
    pub(crate) severity: Severity,
    /// The instance it is about, escaped as kvmd's log shows names.
    pub(crate) instance: Option<String>,
    /// What was found, in a sentence.
    pub(crate) summary: String,
    /// What to do about it; `None` when nothing is to be done.
    pub(crate) advice: Option<String>,
}

impl Finding {
    pub(crate) fn new(check: Check, severity: Severity, summary: impl Into<String>) -> Finding {
        Finding {
            check,
            severity,
            instance: None,
            summary: summary.into(),
            advice: None,
        }
    }

    pub(crate) fn ok(check: Check, summary: impl Into<String>) -> Finding {
        Finding::new(check, Severity::Ok, summary)
    }

    pub(crate) fn warn(check: Check, summary: impl Into<String>) -> Finding {
        Finding::new(check, Severity::Warn, summary)
    }

    pub(crate) fn fail(check: Check, summary: impl Into<String>) -> Finding {
        Finding::new(check, Severity::Fail, summary)
    }

    pub(crate) fn advice(mut self, advice: impl Into<String>) -> Finding {
        self.advice = Some(advice.into());
        self
    }

    pub(crate) fn about(mut self, instance: &str) -> Finding {
        self.instance = Some(instance.to_owned());
        self
    }
}

/// The findings, in report order: by section, the node's before any
/// instance's, instances by name, then by check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Report {
    findings: Vec<Finding>,
}

impl Report {
    pub(crate) fn new(mut findings: Vec<Finding>) -> Report {
        // Stable: two findings of one check keep the order they were made in.
        findings.sort_by(|a, b| {
            let key = |f: &Finding| (f.check.section(), f.instance.clone(), f.check);
            key(a).cmp(&key(b))
        });
        Report { findings }
    }

    pub(crate) fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The worst severity found (`Ok` for an empty report).
    pub(crate) fn status(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.status().exit_code()
    }

    /// How many findings of `severity`.
    pub(crate) fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_finding_is_the_status_and_exit_code() {
        assert_eq!(Report::new(vec![]).exit_code(), 0);
        let ok = Finding::ok(Check::CtrlDir, "there");
        let warn = Finding::warn(Check::MetricsFile, "old");
        let fail = Finding::fail(Check::DaemonRunning, "not running");
        assert_eq!(Report::new(vec![ok.clone()]).exit_code(), 0);
        let warned = Report::new(vec![ok.clone(), warn.clone()]);
        assert_eq!((warned.status(), warned.exit_code()), (Severity::Warn, 3));
        let failed = Report::new(vec![warn, ok, fail]);
        assert_eq!((failed.status(), failed.exit_code()), (Severity::Fail, 1));
        assert_eq!(failed.count(Severity::Ok), 1);
    }

    #[test]
    fn findings_are_ordered_by_section_then_instance() {
        let report = Report::new(vec![
            Finding::ok(Check::MetricsFile, "m"),
            Finding::ok(Check::InstanceVerdict, "b").about("vm2"),
            Finding::fail(Check::InstanceCoverage, "b").about("vm2"),
            Finding::ok(Check::InstanceCoverage, "a").about("vm1"),
            Finding::ok(Check::CtrlDirEntry, ".kvmd"),
            Finding::ok(Check::DaemonRunning, "d"),
            Finding::ok(Check::GanetiNode, "n"),
        ]);
        let order: Vec<(&str, Option<&str>)> = report
            .findings()
            .iter()
            .map(|f| (f.check.id(), f.instance.as_deref()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("daemon.running", None),
                ("ganeti.node", None),
                ("ctrl-dir.entry", None),
                ("instance.coverage", Some("vm1")),
                ("instance.coverage", Some("vm2")),
                ("instance.verdict", Some("vm2")),
                ("metrics.file", None),
            ]
        );
    }

    #[test]
    fn ids_are_unique_and_all_listed_in_order() {
        let ids: Vec<&str> = Check::ALL.iter().map(|c| c.id()).collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        let mut sorted = Check::ALL;
        sorted.sort_by_key(|c| (c.section(), *c));
        assert_eq!(sorted, Check::ALL);
    }
}
