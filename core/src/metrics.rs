//! The metrics file: Prometheus' text format, for node_exporter's textfile
//! collector. This module only renders; the loop writes the file
//! atomically (a temporary file renamed over it) when the fleet asks for a
//! report, at most about once a second and never while nothing changes.
//!
//! Every series is always present (zeros included), so a dashboard or an
//! alert never sees one appear out of nowhere.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::control::phase_name;
use crate::decision::ReasonCode;
use crate::fleet::{Fleet, Phase, WaitFor};

/// What the loop knows that the fleet does not.
#[derive(Clone, Copy, Debug)]
pub struct Outside {
    /// When kvmd started.
    pub started: SystemTime,
    /// Whether the control directory is watched now.
    pub watched: bool,
    /// inotify queue overflows so far (each followed by a rescan).
    pub inotify_overflows: u64,
    /// Journal appends that failed.
    pub journal_errors: u64,
}

const PHASES: [Phase; 5] = [
    Phase::Connecting(WaitFor::Nothing),
    Phase::Connecting(WaitFor::Listener),
    Phase::Connecting(WaitFor::Descriptor),
    Phase::Negotiating,
    Phase::Monitoring,
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole file.
pub fn render(fleet: &Fleet, outside: &Outside) -> String {
    let mut out = String::with_capacity(4096);
    let mut phases = [0usize; PHASES.len()];
    for view in fleet.views() {
        if let Some(i) = PHASES.iter().position(|&p| p == view.phase) {
            phases[i] += 1;
        }
    }
    family(
        &mut out,
        "kvmd_instances",
        "gauge",
        "Instances kvmd tracks, by phase.",
    );
    for (phase, n) in PHASES.iter().zip(phases) {
        let _ = writeln!(
            out,
            "kvmd_instances{{phase=\"{}\"}} {n}",
            phase_name(*phase)
        );
    }
    let counters = fleet.counters();
    family(
        &mut out,
        "kvmd_verdicts_total",
        "counter",
        "Verdicts made since kvmd started, by verdict and reason code.",
    );
    for code in ReasonCode::ALL {
        let n = counters.verdicts.get(code.as_str()).copied().unwrap_or(0);
        let verdict = code.verdict();
        let _ = writeln!(
            out,
            "kvmd_verdicts_total{{verdict=\"{verdict}\",reason=\"{code}\"}} {n}"
        );
    }
    family(
        &mut out,
        "kvmd_guest_panics_total",
        "counter",
        "Guest crashes QEMU told of since kvmd started, by event (the guest may live on).",
    );
    for (event, n) in [
        ("GUEST_PANICKED", counters.guest_panics),
        ("GUEST_CRASHLOADED", counters.crash_loads),
    ] {
        let _ = writeln!(out, "kvmd_guest_panics_total{{event=\"{event}\"}} {n}");
    }
    let simple = [
        (
            "kvmd_unwritten_verdicts",
            "gauge",
            "Verdicts decided but whose shutdown file could not be written yet.",
            fleet.unrecorded().count() as u64,
        ),
        (
            "kvmd_given_up_instances",
            "gauge",
            "Sockets given up on because nobody listened (until created anew).",
            fleet.given_up().count() as u64,
        ),
        (
            "kvmd_shutdown_file_write_errors_total",
            "counter",
            "Shutdown-file writes the file system refused.",
            counters.write_errors,
        ),
        (
            "kvmd_malformed_messages_total",
            "counter",
            "Messages from QMP peers that could not be used.",
            counters.malformed,
        ),
        (
            "kvmd_connects_given_up_total",
            "counter",
            "Sockets given up on because nobody listened.",
            counters.given_up,
        ),
        (
            "kvmd_descriptor_shortages_total",
            "counter",
            "Episodes of running out of file descriptors.",
            counters.descriptor_shortages,
        ),
        (
            "kvmd_inotify_overflows_total",
            "counter",
            "inotify queue overflows (each followed by a rescan).",
            outside.inotify_overflows,
        ),
        (
            "kvmd_journal_write_errors_total",
            "counter",
            "Journal records that could not be written (the verdicts were decided all the same).",
            outside.journal_errors,
        ),
        (
            "kvmd_control_dir_watched",
            "gauge",
            "1 while the control directory is watched (or scanned), 0 while kvmd waits for it.",
            u64::from(outside.watched),
        ),
    ];
    for (name, kind, help, value) in simple {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    let hooks = fleet.hook_counts().unwrap_or_default();
    family(
        &mut out,
        "kvmd_hooks_total",
        "counter",
        "Verdict hook runs finished, by outcome (each run counted once).",
    );
    for (outcome, n) in [
        ("succeeded", hooks.succeeded),
        ("failed", hooks.failed),
        ("timed-out", hooks.timed_out),
    ] {
        let _ = writeln!(out, "kvmd_hooks_total{{outcome=\"{outcome}\"}} {n}");
    }
    for (name, help, value) in [
        (
            "kvmd_hooks_pending",
            "Verdict hooks queued or running (each to run at least once).",
            hooks.pending,
        ),
        (
            "kvmd_hooks_running",
            "Verdict hooks running now.",
            hooks.running,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "kvmd_start_time_seconds",
        "gauge",
        "When kvmd started, in seconds since the epoch.",
    );
    let started = outside
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let _ = writeln!(out, "kvmd_start_time_seconds {started:.3}");
    family(
        &mut out,
        "kvmd_build_info",
        "gauge",
        "kvmd's version, as a label; always 1.",
    );
    let _ = writeln!(
        out,
        "kvmd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_from_the_start() {
        let fleet = Fleet::new(vec![0]);
        let outside = Outside {
            started: UNIX_EPOCH + std::time::Duration::from_millis(1_500),
            watched: true,
            inotify_overflows: 2,
            journal_errors: 0,
        };
        let text = render(&fleet, &outside);
        for line in [
            "kvmd_instances{phase=\"monitoring\"} 0",
            "kvmd_instances{phase=\"waiting-for-descriptor\"} 0",
            "kvmd_verdicts_total{verdict=\"user\",reason=\"guest-poweroff\"} 0",
            "kvmd_verdicts_total{verdict=\"not-user\",reason=\"no-shutdown\"} 0",
            "kvmd_inotify_overflows_total 2",
            "kvmd_journal_write_errors_total 0",
            "kvmd_guest_panics_total{event=\"GUEST_PANICKED\"} 0",
            "kvmd_verdicts_total{verdict=\"not-user\",reason=\"host-intent\"} 0",
            "kvmd_control_dir_watched 1",
            "kvmd_start_time_seconds 1.500",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with('\n'));
    }
}
