//! The checks, case by case, on made-up facts: each test starts from a
//! node where everything is right and breaks one thing.

use kvmd_core::control::WatchState;

use super::*;
use crate::adapters::ssconf;
use crate::doctor::facts::{
    Adoption, DaemonFacts, DaemonFlags, DirFacts, Diversion, Entries, Entry, EntryKind, Exe,
    FsKind, GanetiBinary, GanetiFacts, GntInstance, GntInstances, HookFacts, InotifyFacts,
    MetricsFacts, MetricsFile, MetricsProblem, Mode, QemuFacts, QmpSocket, StateDirFacts,
    StatusInstance, StatusVerdict, UnixSockets, Unread,
};
use crate::doctor::findings::{Check, Report, Severity};

const CTRL: &str = "/run/kvmd";

fn process(pid: u32, comm: &str, kind: BinaryKind) -> ProcessFacts {
    ProcessFacts {
        pid,
        comm: comm.to_owned(),
        uid: Some(0),
        exe: Exe::Path {
            path: "/usr/sbin/kvmd".to_owned(),
            replaced: false,
        },
        kind,
        exe_id: Some((1, 2)),
        started: Some(1_000.0),
    }
}

fn status() -> StatusFacts {
    StatusFacts {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: 100,
        uptime_seconds: 60,
        ctrl_dir: CTRL.to_owned(),
        watch: Some(WatchState::Watching),
        descriptor_shortage: false,
        instances: vec![StatusInstance {
            name: "vm1".to_owned(),
            phase: "monitoring".to_owned(),
            since_seconds: 30,
            qemu: Some("7.2.22".to_owned()),
            qemu_pid: Some(200),
            guest: Some("running".to_owned()),
            last_verdict: None,
        }],
        given_up: Vec::new(),
        verdicts: Vec::new(),
        same_dir: Some(true),
    }
}

fn socket(name: &str, uid: u32) -> Entry {
    Entry {
        name: format!("{name}.kvmd").into_bytes(),
        kind: EntryKind::Socket,
        uid,
    }
}

fn qemu(pid: u32, name: &str) -> QemuFacts {
    QemuFacts {
        pid,
        uid: Some(0),
        name: Some(name.to_owned()),
        sockets: vec![QmpSocket {
            path: format!("{CTRL}/{name}.kvmd"),
            instance: Some(name.to_owned()),
        }],
    }
}

/// A standalone node where all is well: kvmd runs and monitors vm1.
fn healthy() -> Facts {
    let mut unix = UnixSockets::default();
    unix.listening.insert(b"vm1.kvmd".to_vec());
    unix.connected.insert(b"vm1.kvmd".to_vec());
    Facts {
        mode: Mode::Standalone,
        ctrl_dir: CTRL.to_owned(),
        log_file: "/var/log/kvmd/kvmd.log".to_owned(),
        watches_needed: 3,
        doctor_uid: 0,
        socket_owners: Vec::new(),
        instance: None,
        adopted: Adoption::Flags,
        daemon: Probed::Got(DaemonFacts {
            pid_file: "/run/kvmd.pid".to_owned(),
            pid: PidFile::Pid(100),
            process: Some(process(100, "kvmd", BinaryKind::Kvmd)),
            control_socket: "/run/kvmd.sock".to_owned(),
            control: Control::Status(status()),
        }),
        ganeti: None,
        dir: Probed::Got(DirFacts::Dir {
            uid: 0,
            mode: 0o40755,
            fs: FsKind::Tmpfs,
        }),
        entries: Probed::Got(Entries {
            list: vec![socket("vm1", 0)],
            more: 0,
            error: None,
        }),
        inotify: Probed::Got(InotifyFacts {
            uid: 0,
            max_watches: Some(8192),
            max_instances: Some(128),
            used_watches: 10,
            used_instances: 2,
            uncounted: 0,
        }),
        qemus: Probed::Got(vec![qemu(200, "vm1")]),
        unix: Some(unix),
        daemon_flags: DaemonFlags::Read,
        state_dir: Probed::Got(StateDirFacts {
            path: "/run/kvmd-state".to_owned(),
            from_daemon: true,
            exists: true,
            check: Ok(()),
        }),
        hook: None,
        metrics: None,
        now: 10_000.0,
    }
}

fn daemon_mut(facts: &mut Facts) -> &mut DaemonFacts {
    match &mut facts.daemon {
        Probed::Got(d) => d,
        Probed::NoAnswer => panic!("no daemon facts"),
    }
}

fn status_mut(facts: &mut Facts) -> &mut StatusFacts {
    match &mut daemon_mut(facts).control {
        Control::Status(s) => s,
        _ => panic!("no status"),
    }
}

fn not_running(facts: &mut Facts) {
    let daemon = daemon_mut(facts);
    daemon.pid = PidFile::Missing;
    daemon.process = None;
    daemon.control = Control::Absent;
}

/// The one finding of `check` (about `instance`), asserting there is one.
fn finding(facts: &Facts, check: Check, instance: Option<&str>) -> Finding {
    let all: Vec<Finding> = evaluate(facts)
        .into_iter()
        .filter(|f| f.check == check && f.instance.as_deref() == instance)
        .collect();
    assert_eq!(all.len(), 1, "{check:?} {instance:?}: {all:#?}");
    all.into_iter().next().expect("one")
}

fn assert_finding(
    facts: &Facts,
    check: Check,
    instance: Option<&str>,
    severity: Severity,
    says: &str,
) -> Finding {
    let f = finding(facts, check, instance);
    assert_eq!(f.severity, severity, "{f:#?}");
    assert!(
        f.summary.contains(says) || f.advice.as_deref().is_some_and(|a| a.contains(says)),
        "{says:?} not in {f:#?}"
    );
    f
}

fn exit_code(facts: &Facts) -> u8 {
    Report::new(evaluate(facts)).exit_code()
}

#[test]
fn a_healthy_node_is_all_ok() {
    let facts = healthy();
    let findings = evaluate(&facts);
    assert!(
        findings.iter().all(|f| f.severity == Severity::Ok),
        "{findings:#?}"
    );
    assert_eq!(exit_code(&facts), 0);
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Ok,
        "monitored by kvmd",
    );
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Ok,
        "is running (pid 100",
    );
}

#[test]
fn kvmd_not_running_fails_and_says_how_to_start_it() {
    let mut facts = healthy();
    not_running(&mut facts);
    let f = assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Fail,
        "kvmd is not running",
    );
    assert!(f.summary.contains("no pid file at /run/kvmd.pid"), "{f:#?}");
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.contains("kvmd --no-ssconf --ctrl-dir /run/kvmd"))
    );
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "kvmd is not running",
    );
    assert_eq!(exit_code(&facts), 1);
    // Not running, it holds no watches: what is left must be enough.
    let f = finding(&facts, Check::InotifyWatches, None);
    assert_eq!(f.severity, Severity::Ok, "{f:#?}");
    facts.mode = Mode::Ganeti;
    let f = finding(&facts, Check::DaemonRunning, None);
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.contains("daemon-util start ganeti-kvmd"))
    );
}

#[test]
fn a_pid_file_naming_a_dead_or_foreign_process_or_garbage() {
    let mut facts = healthy();
    not_running(&mut facts);
    daemon_mut(&mut facts).pid = PidFile::Pid(4242);
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Fail,
        "pid 4242, which is gone",
    );

    daemon_mut(&mut facts).process = Some(process(4242, "bash", BinaryKind::Other));
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Fail,
        "which is bash, not kvmd",
    );

    let daemon = daemon_mut(&mut facts);
    daemon.process = None;
    daemon.pid = PidFile::Garbage("hello\\n".to_owned());
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Fail,
        "holds no pid",
    );

    daemon_mut(&mut facts).pid = PidFile::NotAFile("a FIFO");
    let f = finding(&facts, Check::DaemonRunning, None);
    assert_eq!(f.severity, Severity::Fail, "{f:#?}");
    assert!(f.summary.contains("is a FIFO, not a pid file"), "{f:#?}");
    daemon_mut(&mut facts).control = Control::Denied;
    let f = finding(&facts, Check::DaemonRunning, None);
    assert_eq!(f.severity, Severity::Warn, "{f:#?}");
    assert!(f.summary.contains("cannot tell"), "{f:#?}");
    // Unreadable, and no control socket: the original has none either.
    daemon_mut(&mut facts).pid = PidFile::Unreadable("Permission denied".to_owned());
    daemon_mut(&mut facts).control = Control::Absent;
    let f = finding(&facts, Check::DaemonRunning, None);
    assert_eq!(f.severity, Severity::Warn, "{f:#?}");
    assert!(f.summary.contains("Permission denied"), "{f:#?}");
}

#[test]
fn a_listener_on_the_control_socket_is_no_stopped_daemon() {
    // Another user under hidepid: the pid file's process cannot be seen,
    // and the control socket refuses this user. Something runs.
    let mut facts = healthy();
    facts.doctor_uid = 1000;
    let daemon = daemon_mut(&mut facts);
    daemon.process = None;
    daemon.control = Control::Denied;
    let f = assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Warn,
        "cannot tell whether kvmd runs: /run/kvmd.pid names pid 100, which is gone or hidden",
    );
    assert!(
        f.advice
            .is_some_and(|a| a.contains("run the doctor as root"))
    );
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Warn,
        "cannot tell whether kvmd monitors it",
    );
    // Nobody listens: then the pid file is stale.
    daemon_mut(&mut facts).control = Control::Refused;
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Fail,
        "which is gone",
    );
}

#[test]
fn a_daemon_on_another_default_socket_that_would_not_say_where_it_looks() {
    // kvmd.service runs; another user runs the doctor with no flags: the
    // daemon refuses it, and the report is for Ganeti's paths.
    let mut facts = healthy();
    not_running(&mut facts);
    facts.adopted = Adoption::Unasked {
        socket: "/run/kvmd-daemon/kvmd.sock".to_owned(),
        control: Control::Denied,
    };
    let f = assert_finding(
        &facts,
        Check::DaemonConfig,
        None,
        Severity::Warn,
        "a daemon holds another default control socket (not allowed to ask it at \
         /run/kvmd-daemon/kvmd.sock) and did not say where it looks",
    );
    assert!(
        f.advice
            .is_some_and(|a| a.contains("run the doctor as root"))
    );
    facts.adopted = Adoption::Daemon { pid: 100 };
    assert_finding(
        &facts,
        Check::DaemonConfig,
        None,
        Severity::Ok,
        "looked where kvmd (pid 100) looks",
    );
}

#[test]
fn a_daemon_that_cannot_be_asked_is_judged_by_its_connections() {
    let mut facts = healthy();
    let daemon = daemon_mut(&mut facts);
    daemon.control = Control::Denied;
    facts.doctor_uid = 1000;
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Warn,
        "run the doctor as root",
    );
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Ok,
        "is connected",
    );
    if let Some(unix) = &mut facts.unix {
        unix.connected.clear();
    }
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Warn,
        "nobody is connected",
    );
}

#[test]
fn the_original_daemon() {
    let mut facts = healthy();
    let daemon = daemon_mut(&mut facts);
    daemon.control = Control::Absent;
    daemon.process = Some(process(100, "ganeti-kvmd", BinaryKind::GanetiOriginal));
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Ok,
        "original ganeti-kvmd is running",
    );
    assert_finding(
        &facts,
        Check::DaemonBinary,
        None,
        Severity::Warn,
        "not kvmd",
    );
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Ok,
        "original ganeti-kvmd presumably",
    );
    if let Some(unix) = &mut facts.unix {
        unix.connected.clear();
    }
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "never retries a refused connect",
    );
}

#[test]
fn qemu_without_a_socket_must_be_restarted() {
    let mut facts = healthy();
    status_mut(&mut facts).instances.clear();
    facts.entries = Probed::Got(Entries {
        list: vec![],
        more: 0,
        error: None,
    });
    facts.qemus = Probed::Got(vec![QemuFacts {
        sockets: vec![],
        ..qemu(200, "vm1")
    }]);
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "restart the guest to be covered",
    );
    facts.mode = Mode::Ganeti;
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "gnt-instance reboot vm1",
    );

    // Started with one, which was removed since.
    facts.qemus = Probed::Got(vec![qemu(200, "vm1")]);
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "was removed while its QEMU",
    );

    // With one in another directory.
    facts.qemus = Probed::Got(vec![QemuFacts {
        sockets: vec![QmpSocket {
            path: "/elsewhere/vm1.kvmd".to_owned(),
            instance: None,
        }],
        ..qemu(200, "vm1")
    }]);
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "outside /run/kvmd",
    );
}

#[test]
fn a_qemu_of_another_directory_without_a_name_is_none_of_its_business() {
    let mut facts = healthy();
    facts.qemus = Probed::Got(vec![
        qemu(200, "vm1"),
        QemuFacts {
            pid: 300,
            uid: Some(0),
            name: None,
            sockets: vec![QmpSocket {
                path: "/tmp/other/vm.kvmd".to_owned(),
                instance: None,
            }],
        },
    ]);
    assert_eq!(exit_code(&facts), 0, "{:#?}", evaluate(&facts));
}

#[test]
fn a_socket_with_no_qemu_behind_it() {
    let mut facts = healthy();
    status_mut(&mut facts).instances.clear();
    facts.qemus = Probed::Got(vec![]);
    if let Some(unix) = &mut facts.unix {
        unix.listening.clear();
        unix.connected.clear();
    }
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Warn,
        "nobody listens on it",
    );
    facts.unix = None;
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Warn,
        "no QEMU process names it",
    );
}

#[test]
fn a_socket_kvmd_does_not_monitor() {
    let mut facts = healthy();
    status_mut(&mut facts).instances.clear();
    facts.entries = Probed::Got(Entries {
        list: vec![socket("vm1", 107)],
        more: 0,
        error: None,
    });
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "--socket-owner 107",
    );
    facts.socket_owners = vec![107];
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "kvmd does not list it",
    );
    status_mut(&mut facts).given_up = vec!["vm1".to_owned()];
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "kvmd gave up",
    );

    // Connecting is fine for a moment, not for long.
    let mut facts = healthy();
    status_mut(&mut facts).instances[0].phase = "waiting-for-listener".to_owned();
    status_mut(&mut facts).instances[0].since_seconds = 2;
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Ok,
        "connecting",
    );
    status_mut(&mut facts).instances[0].since_seconds = 200;
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Warn,
        "waiting-for-listener for 200 s",
    );
}

#[test]
fn kvmd_watching_another_directory() {
    let mut facts = healthy();
    let status = status_mut(&mut facts);
    status.same_dir = Some(false);
    status.ctrl_dir = "/run/other".to_owned();
    status.instances.clear();
    assert_finding(
        &facts,
        Check::DaemonConfig,
        None,
        Severity::Fail,
        "kvmd watches /run/other",
    );
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm1"),
        Severity::Fail,
        "kvmd watches /run/other",
    );
}

#[test]
fn stale_and_odd_shutdown_files() {
    let mut facts = healthy();
    let shutdown = |name: &str, kind: EntryKind| Entry {
        name: format!("{name}.shutdown").into_bytes(),
        kind,
        uid: 0,
    };
    facts.entries = Probed::Got(Entries {
        list: vec![
            socket("vm1", 0),
            shutdown("vm1", EntryKind::File),
            shutdown("gone", EntryKind::File),
            shutdown("odd", EntryKind::Fifo),
        ],
        more: 0,
        error: None,
    });
    assert_finding(
        &facts,
        Check::InstanceShutdownFile,
        Some("vm1"),
        Severity::Warn,
        "exists while its QEMU runs",
    );
    assert_finding(
        &facts,
        Check::InstanceShutdownFile,
        Some("gone"),
        Severity::Ok,
        "its user shut it down",
    );
    assert_finding(
        &facts,
        Check::InstanceShutdownFile,
        Some("odd"),
        Severity::Warn,
        "is a FIFO",
    );
}

#[test]
fn the_last_verdict_with_its_reason() {
    let mut facts = healthy();
    let verdict = StatusVerdict {
        name: "vm7".to_owned(),
        user: false,
        reason: "host-quit".to_owned(),
        why: "the host shut it down (host-qmp-quit)".to_owned(),
        age_seconds: 300,
        file: "removed".to_owned(),
        file_error: None,
    };
    status_mut(&mut facts).verdicts = vec![verdict.clone()];
    // Not listed without being asked: its QEMU, socket and file are gone.
    assert!(
        evaluate(&facts)
            .iter()
            .all(|f| f.instance.as_deref() != Some("vm7"))
    );
    facts.instance = Some("vm7".to_owned());
    assert_finding(
        &facts,
        Check::InstanceVerdict,
        Some("vm7"),
        Severity::Ok,
        "not user (host-quit)",
    );
    status_mut(&mut facts).verdicts = vec![StatusVerdict {
        file: "waiting".to_owned(),
        file_error: Some("No space left on device".to_owned()),
        ..verdict
    }];
    assert_finding(
        &facts,
        Check::InstanceVerdict,
        Some("vm7"),
        Severity::Fail,
        "No space left",
    );
    // Asked about an instance nobody knows.
    facts.instance = Some("vm9".to_owned());
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm9"),
        Severity::Warn,
        "no QEMU, socket",
    );
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm9"),
        Severity::Warn,
        "kvmd history vm9",
    );
    assert!(
        evaluate(&facts)
            .iter()
            .all(|f| f.instance.as_deref() != Some("vm1"))
    );
}

#[test]
fn hostile_and_unusable_names() {
    let mut facts = healthy();
    let long = format!("{}.kvmd", "x".repeat(250));
    facts.entries = Probed::Got(Entries {
        list: vec![
            socket("vm1", 0),
            Entry {
                name: b"new\nline\x1b[2J.kvmd".to_vec(),
                kind: EntryKind::Socket,
                uid: 0,
            },
            Entry {
                name: b".kvmd".to_vec(),
                kind: EntryKind::Socket,
                uid: 0,
            },
            Entry {
                name: long.into_bytes(),
                kind: EntryKind::Socket,
                uid: 0,
            },
        ],
        more: 3,
        error: None,
    });
    let hostile = finding(&facts, Check::InstanceCoverage, Some("new\\nline\\x1b[2J"));
    assert_eq!(hostile.severity, Severity::Warn);
    assert!(!hostile.summary.contains('\n') && !hostile.summary.contains('\x1b'));
    let entries: Vec<Finding> = evaluate(&facts)
        .into_iter()
        .filter(|f| f.check == Check::CtrlDirEntry)
        .collect();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    assert!(
        entries
            .iter()
            .any(|f| f.severity == Severity::Fail && f.summary.contains("too long"))
    );
    assert!(
        entries
            .iter()
            .any(|f| f.summary.contains(".kvmd names no instance"))
    );
    assert!(entries.iter().any(|f| f.summary.contains("3 more entries")));
}

#[test]
fn the_control_directory() {
    let mut facts = healthy();
    facts.dir = Probed::Got(DirFacts::Dir {
        uid: 0,
        mode: 0o40777,
        fs: fs_kind_ext4(),
    });
    assert_finding(
        &facts,
        Check::CtrlDirOwner,
        None,
        Severity::Warn,
        "writable by anyone",
    );
    let f = assert_finding(
        &facts,
        Check::CtrlDirFilesystem,
        None,
        Severity::Warn,
        "outlive a reboot (after the node crashes",
    );
    assert!(!f.summary.contains("Ganeti"), "{f:#?}");
    let mut ganeti = facts.clone();
    ganeti.mode = Mode::Ganeti;
    assert_finding(
        &ganeti,
        Check::CtrlDirFilesystem,
        None,
        Severity::Warn,
        "Ganeti reads the last ones as USER_down",
    );
    facts.dir = Probed::Got(DirFacts::Dir {
        uid: 0,
        mode: 0o41777,
        fs: FsKind::Tmpfs,
    });
    // Sticky: others' files are safe, a name not there yet is not.
    let f = assert_finding(
        &facts,
        Check::CtrlDirOwner,
        None,
        Severity::Warn,
        "writable by anyone (mode 1777) (the sticky bit only",
    );
    assert!(f.summary.contains("whatever reads them"), "{f:#?}");
    facts.dir = Probed::Got(DirFacts::Dir {
        uid: 0,
        mode: 0o41775,
        fs: FsKind::Tmpfs,
    });
    assert_finding(&facts, Check::CtrlDirOwner, None, Severity::Ok, "mode 1775");
    facts.dir = Probed::Got(DirFacts::Symlink);
    assert_finding(&facts, Check::CtrlDir, None, Severity::Fail, "is a symlink");
    facts.dir = Probed::Got(DirFacts::Missing);
    assert_finding(
        &facts,
        Check::CtrlDir,
        None,
        Severity::Fail,
        "mkdir -p /run/kvmd",
    );
    facts.mode = Mode::Ganeti;
    assert_finding(
        &facts,
        Check::CtrlDir,
        None,
        Severity::Warn,
        "Ganeti makes it",
    );
    facts.dir = Probed::NoAnswer;
    assert_finding(&facts, Check::CtrlDir, None, Severity::Fail, "no answer");
}

fn fs_kind_ext4() -> FsKind {
    crate::doctor::facts::fs_kind(0xef53)
}

#[test]
fn inotify_limits_against_what_kvmd_needs() {
    let mut facts = healthy();
    status_mut(&mut facts).watch = Some(WatchState::Rescanning);
    assert_finding(
        &facts,
        Check::InotifyWatches,
        None,
        Severity::Fail,
        "rescans",
    );

    let mut facts = healthy();
    not_running(&mut facts);
    let set = |facts: &mut Facts, max: u64, used: u64| {
        if let Probed::Got(n) = &mut facts.inotify {
            n.max_watches = Some(max);
            n.used_watches = used;
        }
    };
    set(&mut facts, 2, 0);
    let f = assert_finding(
        &facts,
        Check::InotifyWatches,
        None,
        Severity::Fail,
        "may have 2 inotify watches, and kvmd needs 3",
    );
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.contains("max_user_watches"))
    );
    set(&mut facts, 100, 99);
    assert_finding(
        &facts,
        Check::InotifyWatches,
        None,
        Severity::Warn,
        "use 99 of 100",
    );
    set(&mut facts, 100, 97);
    assert_finding(
        &facts,
        Check::InotifyWatches,
        None,
        Severity::Ok,
        "may have 100 inotify watches, 97 in use; kvmd needs 3",
    );
    // Another user counts only what it may read: a floor, said so.
    let mut other = facts.clone();
    if let Probed::Got(n) = &mut other.inotify {
        n.uncounted = 5;
    }
    assert_finding(
        &other,
        Check::InotifyWatches,
        None,
        Severity::Ok,
        "at least 97 in use (5 of uid 0's processes could not be counted",
    );
    if let Probed::Got(n) = &mut facts.inotify {
        n.max_instances = Some(2);
        n.used_instances = 2;
    }
    assert_finding(
        &facts,
        Check::InotifyInstances,
        None,
        Severity::Warn,
        "needs 1 more",
    );
}

fn ganeti_facts() -> GanetiFacts {
    let file = |name: &str, text: &str| (name.to_owned(), Ok(text.to_owned()));
    GanetiFacts {
        ssconf_dir: "/var/lib/ganeti".to_owned(),
        node: "node1.example.com".to_owned(),
        ssconf: vec![
            file("ssconf_hypervisor_list", "kvm\n"),
            file("ssconf_enabled_user_shutdown", "True"),
            file("ssconf_node_vm_capable", "node1.example.com=True\n"),
            file(HVPARAMS_KVM, "acpi=True\nuser_shutdown=True\n"),
            file(MASTER_NODE, "node1.example.com"),
            file(INSTANCE_LIST, "vm1\nvm8\n"),
        ],
        instances: GntInstances::Listed(vec![GntInstance {
            name: "vm1".to_owned(),
            pnode: "node1.example.com".to_owned(),
            user_shutdown: Some(true),
        }]),
        binary: GanetiBinary {
            path: "/usr/sbin/ganeti-kvmd".to_owned(),
            // kvmd-ganeti's layout: the diverted path is a link to kvmd.
            target: Ok("/usr/sbin/kvmd".to_owned()),
            kind: BinaryKind::Kvmd,
            id: Some((1, 2)),
            diversion: Some(Diversion {
                path: "/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd".to_owned(),
                to: "/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd.distrib".to_owned(),
                by: Some("kvmd-ganeti".to_owned()),
            }),
        },
    }
}

fn ganeti_node() -> Facts {
    let mut facts = healthy();
    facts.mode = Mode::Ganeti;
    facts.ganeti = Some(Probed::Got(ganeti_facts()));
    facts
}

fn ganeti_mut(facts: &mut Facts) -> &mut GanetiFacts {
    match &mut facts.ganeti {
        Some(Probed::Got(g)) => g,
        _ => panic!("no Ganeti facts"),
    }
}

fn set_file(facts: &mut Facts, name: &str, text: Result<&str, Unread>) {
    let g = ganeti_mut(facts);
    g.ssconf.retain(|(n, _)| n != name);
    g.ssconf.push((name.to_owned(), text.map(str::to_owned)));
}

#[test]
fn a_healthy_ganeti_node_is_all_ok() {
    let facts = ganeti_node();
    let findings = evaluate(&facts);
    assert!(
        findings.iter().all(|f| f.severity == Severity::Ok),
        "{findings:#?}"
    );
    assert_finding(
        &facts,
        Check::GanetiKvmdBinary,
        None,
        Severity::Ok,
        "/usr/sbin/ganeti-kvmd is kvmd (/usr/sbin/kvmd, through \
         /usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd, diverted by kvmd-ganeti: Debian's binary \
         kept at /usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd.distrib)",
    );
    // install-kvmd's: kvmd itself at the diverted path.
    let mut local = facts.clone();
    let g = ganeti_mut(&mut local);
    g.binary.target = Ok("/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd".to_owned());
    if let Some(d) = &mut g.binary.diversion {
        d.by = None;
        d.to = "/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd.haskell".to_owned();
    }
    assert_finding(
        &local,
        Check::GanetiKvmdBinary,
        None,
        Severity::Ok,
        "(/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd, a local diversion",
    );
    assert_finding(
        &facts,
        Check::GanetiDaemonPath,
        None,
        Severity::Ok,
        "the binary Ganeti starts",
    );
    assert_finding(
        &facts,
        Check::InstanceHvparam,
        Some("vm1"),
        Severity::Ok,
        "user_shutdown is on",
    );
}

#[test]
fn instances_that_do_not_run_here_are_told_of_only_when_not_covered() {
    let mut facts = ganeti_node();
    let stopped = |user_shutdown| GntInstance {
        name: "vm8".to_owned(),
        pnode: "node1.example.com".to_owned(),
        user_shutdown,
    };
    ganeti_mut(&mut facts).instances = GntInstances::Listed(vec![stopped(Some(true))]);
    assert!(
        evaluate(&facts)
            .iter()
            .all(|f| f.instance.as_deref() != Some("vm8"))
    );
    ganeti_mut(&mut facts).instances = GntInstances::Listed(vec![stopped(Some(false))]);
    let f = finding(&facts, Check::InstanceHvparam, Some("vm8"));
    assert_eq!(f.severity, Severity::Fail, "{f:#?}");
}

#[test]
fn a_qemu_ganeti_does_not_know_is_no_instance_of_its() {
    // A libvirt guest on a Ganeti node: a `-name`, no socket for kvmd.
    let mut facts = ganeti_node();
    let guest = QemuFacts {
        sockets: vec![],
        ..qemu(300, "libvirt-guest")
    };
    facts.qemus = Probed::Got(vec![qemu(200, "vm1"), guest]);
    assert_eq!(exit_code(&facts), 0, "{:#?}", evaluate(&facts));
    // Ganeti's own, started without one (an older Ganeti's), still fails.
    facts.qemus = Probed::Got(vec![QemuFacts {
        sockets: vec![],
        ..qemu(300, "vm8")
    }]);
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("vm8"),
        Severity::Fail,
        "without a QMP socket for kvmd",
    );
    // Without the list, every `-name` is taken for an instance's.
    set_file(&mut facts, INSTANCE_LIST, Err(Unread::Missing));
    facts.qemus = Probed::Got(vec![QemuFacts {
        sockets: vec![],
        ..qemu(300, "libvirt-guest")
    }]);
    assert_finding(
        &facts,
        Check::InstanceCoverage,
        Some("libvirt-guest"),
        Severity::Fail,
        "without a QMP socket for kvmd",
    );
}

#[test]
fn user_shutdown_off_in_ssconf() {
    let mut facts = ganeti_node();
    set_file(&mut facts, "ssconf_enabled_user_shutdown", Ok("False\n"));
    let f = assert_finding(
        &facts,
        Check::GanetiUserShutdown,
        None,
        Severity::Fail,
        "user shutdown is off",
    );
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.contains("--user-shutdown=yes"))
    );
    assert_eq!(exit_code(&facts), 1);
    set_file(
        &mut facts,
        "ssconf_enabled_user_shutdown",
        Err(Unread::Denied("Permission denied".to_owned())),
    );
    assert_finding(
        &facts,
        Check::GanetiUserShutdown,
        None,
        Severity::Fail,
        "Permission denied",
    );
}

#[test]
fn a_node_without_ssconf_is_still_told_which_daemon_ganeti_would_start() {
    // The packages go in before `gnt-cluster init`: the diversion is worth
    // telling about while there is no ssconf yet.
    let mut facts = ganeti_node();
    for name in ssconf::FILES {
        set_file(&mut facts, name, Err(Unread::Missing));
    }
    assert_finding(
        &facts,
        Check::GanetiSsconf,
        None,
        Severity::Fail,
        "no ssconf in",
    );
    assert_finding(
        &facts,
        Check::GanetiKvmdBinary,
        None,
        Severity::Ok,
        "diverted by kvmd-ganeti: Debian's binary kept at \
         /usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd.distrib",
    );
    // No Ganeti at all (a standalone node, --no-ssconf forgotten): the
    // ssconf finding says so, and no advice to install Ganeti follows.
    let g = ganeti_mut(&mut facts);
    g.binary.target = Err("No such file or directory".to_owned());
    g.binary.diversion = None;
    g.binary.id = None;
    let findings = evaluate(&facts);
    assert!(
        !findings
            .iter()
            .any(|f| matches!(f.check, Check::GanetiKvmdBinary | Check::GanetiDaemonPath)),
        "{findings:#?}"
    );
}

#[test]
fn a_daemon_that_would_exit_at_start_is_not_just_to_be_started() {
    let mut facts = ganeti_node();
    not_running(&mut facts);
    let f = assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Fail,
        "start it as Ganeti does: /usr/lib/ganeti/daemon-util start ganeti-kvmd",
    );
    assert!(
        f.advice
            .is_some_and(|a| a.contains("/var/log/kvmd/kvmd.log says why")),
        "{facts:#?}"
    );
    // As `gnt-cluster modify --user-shutdown=no` leaves it: started, it
    // would exit at once.
    set_file(&mut facts, "ssconf_enabled_user_shutdown", Ok("False\n"));
    set_file(&mut facts, "ssconf_hypervisor_list", Ok("xen-pvm\n"));
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Fail,
        "it would exit at start as things are: fix ganeti.hypervisor, ganeti.user-shutdown \
         first",
    );
}

#[test]
fn the_standalone_unit_is_advised_only_for_its_directory() {
    let mut facts = healthy();
    not_running(&mut facts);
    let f = finding(&facts, Check::DaemonRunning, None);
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.ends_with("--pid-file /run/kvmd.pid (or systemctl start kvmd)")),
        "{f:#?}"
    );
    facts.ctrl_dir = "/srv/ctrl".to_owned();
    let f = finding(&facts, Check::DaemonRunning, None);
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.ends_with("--ctrl-dir /srv/ctrl --pid-file /run/kvmd.pid")),
        "{f:#?}"
    );
}

#[test]
fn the_hypervisor_parameter_off() {
    let mut facts = ganeti_node();
    ganeti_mut(&mut facts).instances = GntInstances::Listed(vec![GntInstance {
        name: "vm1".to_owned(),
        pnode: "node1.example.com".to_owned(),
        user_shutdown: Some(false),
    }]);
    let f = assert_finding(
        &facts,
        Check::InstanceHvparam,
        Some("vm1"),
        Severity::Fail,
        "ERROR_down",
    );
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.contains("gnt-instance modify -H user_shutdown=true vm1"))
    );
    set_file(&mut facts, HVPARAMS_KVM, Ok("user_shutdown=False\n"));
    assert_finding(
        &facts,
        Check::GanetiHvparam,
        None,
        Severity::Warn,
        "kvm:user_shutdown=true",
    );
    set_file(&mut facts, HVPARAMS_KVM, Err(Unread::Missing));
    assert_finding(
        &facts,
        Check::GanetiHvparam,
        None,
        Severity::Warn,
        "cannot be told here",
    );
    // Instances of other nodes are theirs to check.
    ganeti_mut(&mut facts).instances = GntInstances::Listed(vec![GntInstance {
        name: "vm5".to_owned(),
        pnode: "node2.example.com".to_owned(),
        user_shutdown: Some(false),
    }]);
    assert!(
        evaluate(&facts)
            .iter()
            .all(|f| f.instance.as_deref() != Some("vm5"))
    );
    ganeti_mut(&mut facts).instances = GntInstances::NotMaster {
        master: "node2.example.com".to_owned(),
    };
    assert_finding(
        &facts,
        Check::GanetiInstances,
        None,
        Severity::Ok,
        "only be asked on the master, node2",
    );
    ganeti_mut(&mut facts).instances =
        GntInstances::Failed("gnt-instance gave no answer".to_owned());
    assert_finding(
        &facts,
        Check::GanetiInstances,
        None,
        Severity::Warn,
        "gave no answer",
    );
}

#[test]
fn the_node_name_and_the_hypervisor_list() {
    let mut facts = ganeti_node();
    set_file(
        &mut facts,
        "ssconf_node_vm_capable",
        Ok("node2=True\nnode3=True\n"),
    );
    assert_finding(
        &facts,
        Check::GanetiNode,
        None,
        Severity::Fail,
        "it lists node2, node3",
    );
    set_file(
        &mut facts,
        "ssconf_node_vm_capable",
        Ok("node1.example.com=False\n"),
    );
    assert_finding(
        &facts,
        Check::GanetiNode,
        None,
        Severity::Fail,
        "--vm-capable=yes",
    );
    set_file(&mut facts, "ssconf_hypervisor_list", Ok("xen-pvm\n"));
    assert_finding(
        &facts,
        Check::GanetiHypervisor,
        None,
        Severity::Fail,
        "not an enabled hypervisor",
    );
    for name in ssconf::FILES {
        set_file(&mut facts, name, Err(Unread::Missing));
    }
    // Not there: no matter of permissions.
    let f = assert_finding(
        &facts,
        Check::GanetiSsconf,
        None,
        Severity::Fail,
        "no ssconf in /var/lib/ganeti: this is no Ganeti node",
    );
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.contains("--no-ssconf") && !a.contains("as root")),
        "{f:#?}"
    );
    let mut denied = facts.clone();
    set_file(
        &mut denied,
        "ssconf_node_vm_capable",
        Err(Unread::Denied("Permission denied".to_owned())),
    );
    let f = assert_finding(
        &denied,
        Check::GanetiSsconf,
        None,
        Severity::Fail,
        "this user may not read Ganeti's ssconf in /var/lib/ganeti (Permission denied)",
    );
    assert!(
        f.advice
            .is_some_and(|a| a.contains("run the doctor as root"))
    );
    assert!(
        evaluate(&facts)
            .iter()
            .all(|f| f.check != Check::GanetiNode)
    );
}

#[test]
fn the_original_installed_and_a_daemon_ganeti_would_not_start() {
    let mut facts = ganeti_node();
    let g = ganeti_mut(&mut facts);
    g.binary.kind = BinaryKind::GanetiOriginal;
    g.binary.diversion = None;
    g.binary.id = Some((1, 3));
    let f = assert_finding(
        &facts,
        Check::GanetiKvmdBinary,
        None,
        Severity::Warn,
        "original ganeti-kvmd",
    );
    assert!(
        f.advice
            .as_deref()
            .is_some_and(|a| a.contains("kvmd-ganeti"))
    );
    assert_finding(
        &facts,
        Check::GanetiDaemonPath,
        None,
        Severity::Warn,
        "Ganeti would start",
    );
    assert_eq!(exit_code(&facts), 3);
    ganeti_mut(&mut facts).binary.target = Err("No such file or directory".to_owned());
    assert_finding(
        &facts,
        Check::GanetiKvmdBinary,
        None,
        Severity::Fail,
        "no daemon to start",
    );
}

#[test]
fn a_daemon_binary_replaced_on_disk() {
    let mut facts = healthy();
    if let Some(p) = &mut daemon_mut(&mut facts).process {
        p.exe = Exe::Path {
            path: "/usr/sbin/kvmd".to_owned(),
            replaced: true,
        };
    }
    assert_finding(
        &facts,
        Check::DaemonBinary,
        None,
        Severity::Warn,
        "replaced or removed since it started",
    );
}

#[test]
fn hooks_get_the_daemons_safety_checks() {
    let mut facts = healthy();
    facts.hook = Some(Probed::Got(HookFacts {
        program: "/tmp/hook".to_owned(),
        from_daemon: true,
        check: Err(
            "--on-verdict /tmp/hook: /tmp is writable by group or others (mode 1777)".to_owned(),
        ),
    }));
    assert_finding(
        &facts,
        Check::HookProgram,
        None,
        Severity::Fail,
        "the running kvmd's --on-verdict",
    );
    facts.hook = Some(Probed::NoAnswer);
    assert_finding(
        &facts,
        Check::HookProgram,
        None,
        Severity::Fail,
        "no answer",
    );
}

#[test]
fn no_hook_or_metrics_file_says_where_it_looked() {
    let mut facts = healthy();
    assert_finding(
        &facts,
        Check::HookProgram,
        None,
        Severity::Ok,
        "none in the running kvmd's command line",
    );
    not_running(&mut facts);
    facts.daemon_flags = DaemonFlags::NoDaemon;
    let f = assert_finding(
        &facts,
        Check::MetricsFile,
        None,
        Severity::Ok,
        "no --metrics-file given (and no running kvmd to take one from)",
    );
    assert!(!f.summary.contains("the running kvmd's command line"));
    facts.daemon_flags = DaemonFlags::Unread;
    assert_finding(
        &facts,
        Check::HookProgram,
        None,
        Severity::Warn,
        "give it the daemon's --on-verdict",
    );
}

#[test]
fn the_metrics_file_is_the_running_kvmds_or_stale() {
    let mut facts = healthy();
    let written = |start: f64| {
        Some(Probed::Got(MetricsFacts {
            path: "/run/kvmd.prom".to_owned(),
            from_daemon: false,
            file: Ok(MetricsFile {
                age_seconds: 3.0,
                start_time: Some(start),
                version: Some("1.0.0".to_owned()),
            }),
        }))
    };
    // The status says up 60 s at 10,000 s: started at 9,940.
    facts.metrics = written(9_940.5);
    assert_finding(
        &facts,
        Check::MetricsFile,
        None,
        Severity::Ok,
        "the running kvmd's",
    );
    facts.metrics = written(5_000.0);
    assert_finding(
        &facts,
        Check::MetricsFile,
        None,
        Severity::Warn,
        "an earlier kvmd",
    );
    // Not known whether kvmd runs (another user): not said to be stopped.
    let daemon = daemon_mut(&mut facts);
    daemon.pid = PidFile::Unreadable("Permission denied".to_owned());
    daemon.process = None;
    daemon.control = Control::Denied;
    assert_finding(
        &facts,
        Check::MetricsFile,
        None,
        Severity::Warn,
        "whether by the running one cannot be told",
    );
    let missing = Some(Probed::Got(MetricsFacts {
        path: "/run/kvmd.prom".to_owned(),
        from_daemon: false,
        file: Err(MetricsProblem::Missing),
    }));
    let mut unknown = facts.clone();
    unknown.metrics = missing.clone();
    assert_finding(
        &unknown,
        Check::MetricsFile,
        None,
        Severity::Warn,
        "whether kvmd runs (and should have written it) cannot be told",
    );
    not_running(&mut facts);
    assert_finding(
        &facts,
        Check::MetricsFile,
        None,
        Severity::Warn,
        "no longer running",
    );
    let mut stopped = facts.clone();
    stopped.metrics = missing;
    assert_finding(
        &stopped,
        Check::MetricsFile,
        None,
        Severity::Ok,
        "(kvmd is not running)",
    );
    facts.metrics = Some(Probed::Got(MetricsFacts {
        path: "/run/kvmd.prom".to_owned(),
        from_daemon: false,
        file: Err(MetricsProblem::NotAFile("a FIFO")),
    }));
    assert_finding(
        &facts,
        Check::MetricsFile,
        None,
        Severity::Warn,
        "is a FIFO",
    );
}

#[test]
fn probes_that_did_not_answer_are_said_so() {
    let mut facts = healthy();
    facts.daemon = Probed::NoAnswer;
    facts.qemus = Probed::NoAnswer;
    facts.inotify = Probed::NoAnswer;
    facts.entries = Probed::NoAnswer;
    assert_finding(
        &facts,
        Check::DaemonRunning,
        None,
        Severity::Warn,
        "no answer",
    );
    assert_finding(
        &facts,
        Check::InotifyWatches,
        None,
        Severity::Warn,
        "/proc did not answer",
    );
    assert_finding(
        &facts,
        Check::CtrlDirEntry,
        None,
        Severity::Fail,
        "no answer",
    );
    facts.mode = Mode::Ganeti;
    facts.ganeti = Some(Probed::NoAnswer);
    assert_finding(
        &facts,
        Check::GanetiSsconf,
        None,
        Severity::Fail,
        "no answer",
    );
}

#[test]
fn the_state_directory_gets_the_daemons_start_up_check_hooks_or_not() {
    let mut facts = healthy();
    assert_finding(
        &facts,
        Check::StateDirOwner,
        None,
        Severity::Ok,
        "/run/kvmd-state (the running kvmd's) is kvmd's alone",
    );
    facts.state_dir = Probed::Got(StateDirFacts {
        path: "/tmp/state".to_owned(),
        from_daemon: false,
        exists: true,
        check: Err(
            "state directory: /tmp/state is writable by group or others (mode 0777)".to_owned(),
        ),
    });
    assert_finding(
        &facts,
        Check::StateDirOwner,
        None,
        Severity::Fail,
        "mode 0777): kvmd refuses to start with it",
    );
    facts.state_dir = Probed::Got(StateDirFacts {
        path: "/tmp/state".to_owned(),
        from_daemon: false,
        exists: false,
        check: Ok(()),
    });
    assert_finding(
        &facts,
        Check::StateDirOwner,
        None,
        Severity::Ok,
        "not there yet: kvmd creates it",
    );
    facts.state_dir = Probed::NoAnswer;
    assert_finding(
        &facts,
        Check::StateDirOwner,
        None,
        Severity::Fail,
        "no answer",
    );
}
