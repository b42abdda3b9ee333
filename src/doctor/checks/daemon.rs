//! `daemon.*`: whether kvmd runs, which binary, and where it looks.

use kvmd_core::control::age;

use super::{Found, PROBE_SECONDS, RESTART_GANETI_KVMD};
use crate::doctor::facts::{
    Adoption, BinaryKind, Control, Exe, Facts, Mode, PidFile, Probed, ProcessFacts,
};
use crate::doctor::findings::{Check, Finding};

/// What to do to start the daemon, in this mode. `blockers`: the checks
/// of Ganeti's start-up conditions that fail (the daemon would exit at
/// once: those come first).
fn start_advice(facts: &Facts, blockers: &[Check]) -> String {
    match facts.mode {
        Mode::Ganeti if !blockers.is_empty() => {
            let ids: Vec<&str> = blockers.iter().map(|c| c.id()).collect();
            format!(
                "it would exit at start as things are: fix {} first (below); then start it as \
                 Ganeti does: {START_GANETI_KVMD}",
                ids.join(", ")
            )
        }
        Mode::Ganeti => format!(
            "start it as Ganeti does: {START_GANETI_KVMD}; if it does not stay up, {} says why",
            facts.log_file
        ),
        Mode::Standalone => {
            let pid_file = match &facts.daemon {
                Probed::Got(d) => d.pid_file.clone(),
                Probed::NoAnswer => "FILE".to_owned(),
            };
            // kvmd.service watches /run/kvmd: it is no answer for
            // another directory.
            let unit = if facts.ctrl_dir == "/run/kvmd" {
                " (or systemctl start kvmd)"
            } else {
                ""
            };
            format!(
                "start it: kvmd --no-ssconf --ctrl-dir {} --pid-file {pid_file}{unit}",
                facts.ctrl_dir
            )
        }
    }
}

/// How Ganeti starts its daemon (`daemon-util` asks systemd where systemd
/// runs Ganeti).
const START_GANETI_KVMD: &str = "/usr/lib/ganeti/daemon-util start ganeti-kvmd";

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

pub(super) fn daemon(
    facts: &Facts,
    running: Found<'_>,
    blockers: &[Check],
    out: &mut Vec<Finding>,
) {
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
            .advice(start_advice(facts, blockers))
        }
        Found::Unknown => {
            let why = match &daemon.pid {
                PidFile::Unreadable(e) => format!("cannot read {pid_file}: {e}"),
                PidFile::NotAFile(kind) => format!("{pid_file} is {kind}, not a pid file"),
                PidFile::Missing => format!("no pid file at {pid_file}"),
                PidFile::Garbage(text) => format!("{pid_file} holds no pid ({text:?})"),
                PidFile::Pid(pid) => match &daemon.process {
                    Some(p) => format!("{pid_file} names pid {pid}, which is {}, not kvmd", p.comm),
                    None => format!(
                        "{pid_file} names pid {pid}, which is gone or hidden from this user"
                    ),
                },
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
    match &facts.adopted {
        Adoption::Flags => {}
        Adoption::Daemon { pid } => out.push(Finding::ok(
            Check::DaemonConfig,
            format!(
                "looked where kvmd (pid {pid}) looks: no flags were given, so its own command \
                 line said where"
            ),
        )),
        Adoption::Unasked { socket, control } => out.push(
            Finding::warn(
                Check::DaemonConfig,
                format!(
                    "a daemon holds another default control socket ({}) and did not say \
                     where it looks: this report is for the default paths ({} and \
                     {pid_file}), which may not be its",
                    control_said(control, socket),
                    facts.ctrl_dir
                ),
            )
            .advice(match control {
                Control::Denied => "run the doctor as root, or give it the daemon's own flags",
                _ => "give the doctor the daemon's own flags (from its unit or command line)",
            }),
        ),
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
