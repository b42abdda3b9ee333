//! `state-dir.owner`, `hooks.*` and `metrics.file`: what kvmd keeps, runs
//! and writes besides the shutdown files.

use kvmd_core::control::age;

use super::{Found, PROBE_SECONDS};
use crate::doctor::facts::{DaemonFlags, Facts, MetricsProblem, Probed};
use crate::doctor::findings::{Check, Finding};

/// Metrics written within this many seconds of the daemon's start are its.
const START_SLACK_SECONDS: f64 = 2.0;

/// `what` was neither given to the doctor nor found in the running
/// daemon's command line: say which of those was looked at.
fn none_given(facts: &Facts, check: Check, what: &str) -> Finding {
    match facts.daemon_flags {
        DaemonFlags::Read => Finding::ok(
            check,
            format!("no {what} (none given, none in the running kvmd's command line)"),
        ),
        DaemonFlags::NoDaemon => Finding::ok(
            check,
            format!("no {what} given (and no running kvmd to take one from)"),
        ),
        DaemonFlags::Unread => Finding::warn(
            check,
            format!(
                "no {what} given, and no running kvmd's command line could be read: whether \
                 kvmd runs with one cannot be told"
            ),
        )
        .advice(format!(
            "run the doctor as root, or give it the daemon's {}",
            what.split(' ').next().unwrap_or(what)
        )),
    }
}

pub(super) fn hooks(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(hook) = &facts.hook else {
        out.push(none_given(facts, Check::HookProgram, "--on-verdict hook"));
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
}

/// `state-dir.owner`: the daemon's own start-up check of the state
/// directory, whose intents and evidence decide verdicts and whose hook
/// files run programs as root.
pub(super) fn state_dir(facts: &Facts, out: &mut Vec<Finding>) {
    let s = match &facts.state_dir {
        Probed::Got(s) => s,
        Probed::NoAnswer => {
            out.push(Finding::fail(
                Check::StateDirOwner,
                format!("checking the state directory gave no answer within {PROBE_SECONDS} s"),
            ));
            return;
        }
    };
    let whose = if s.from_daemon {
        " (the running kvmd's)"
    } else {
        ""
    };
    out.push(match (&s.check, s.exists) {
        (Ok(()), true) => Finding::ok(
            Check::StateDirOwner,
            format!(
                "{}{whose} is kvmd's alone (its intents, evidence and hooks decide verdicts)",
                s.path
            ),
        ),
        (Ok(()), false) => Finding::ok(
            Check::StateDirOwner,
            format!(
                "{}{whose} is not there yet: kvmd creates it, its own, mode 0700",
                s.path
            ),
        ),
        (Err(why), _) => Finding::fail(
            Check::StateDirOwner,
            format!(
                "{why}{whose}: kvmd refuses to start with it (anyone who can write there could \
                 forge intents and evidence, and hooks run as root)"
            ),
        )
        .advice(
            "chown the state directory to root (or kvmd's own user) and chmod 700, or remove it \
             (kvmd creates it so)",
        ),
    });
}

pub(super) fn metrics(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    let Some(metrics) = &facts.metrics else {
        out.push(none_given(facts, Check::MetricsFile, "--metrics-file"));
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
    // Whether a kvmd runs to write it: yes, no, or the doctor cannot tell.
    let writer = match running {
        Found::Kvmd { .. } | Found::Silent { .. } => Some(true),
        Found::Stopped | Found::Original { .. } => Some(false),
        Found::Unknown => None,
    };
    out.push(match &m.file {
        Ok(file) => {
            let ago = age(std::time::Duration::from_secs_f64(
                file.age_seconds.max(0.0),
            ));
            match (file.start_time, writer, started) {
                (None, ..) => Finding::warn(
                    Check::MetricsFile,
                    format!("{path} is not kvmd's metrics (no kvmd_start_time_seconds)"),
                ),
                (Some(written), Some(true), Some(started))
                    if (written - started).abs() <= START_SLACK_SECONDS =>
                {
                    Finding::ok(
                        Check::MetricsFile,
                        format!(
                            "{path} is the running kvmd's, written {ago} ago (at every change)"
                        ),
                    )
                }
                (Some(_), Some(true), Some(_)) => Finding::warn(
                    Check::MetricsFile,
                    format!(
                        "{path} was written by an earlier kvmd, not by the running one: it \
                         cannot write there, and node_exporter exports old numbers"
                    ),
                )
                .advice("kvmd's log says why it cannot write it (\"cannot write\")"),
                (Some(_), Some(false), _) => Finding::warn(
                    Check::MetricsFile,
                    format!(
                        "{path} was left by a kvmd that is no longer running: node_exporter \
                         exports its last numbers as if they were current"
                    ),
                )
                .advice(format!("start kvmd, or rm {path}")),
                // Not known whether kvmd runs, or since when.
                (Some(_), ..) => Finding::warn(
                    Check::MetricsFile,
                    format!(
                        "{path} was written {ago} ago by a kvmd: whether by the running one \
                         cannot be told"
                    ),
                )
                .advice("see daemon.running"),
            }
        }
        Err(MetricsProblem::Missing) => match writer {
            Some(true) => Finding::warn(
                Check::MetricsFile,
                format!("{path} does not exist: kvmd writes it at start and at every change"),
            )
            .advice("give kvmd --metrics-file with this path, or see its log (\"cannot write\")"),
            Some(false) => Finding::ok(
                Check::MetricsFile,
                format!("{path} does not exist (kvmd is not running)"),
            ),
            None => Finding::warn(
                Check::MetricsFile,
                format!(
                    "{path} does not exist, and whether kvmd runs (and should have written \
                     it) cannot be told"
                ),
            )
            .advice("see daemon.running"),
        },
        Err(MetricsProblem::NotAFile(kind)) => Finding::warn(
            Check::MetricsFile,
            format!("{path} is {kind}, not a metrics file: kvmd replaces it when it writes"),
        ),
        Err(MetricsProblem::Unreadable(e)) => {
            Finding::warn(Check::MetricsFile, format!("cannot read {path}: {e}"))
        }
    });
}
