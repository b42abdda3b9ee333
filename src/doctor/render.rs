//! The report as text (one line a finding) and as `--json`, pure.
//!
//! The JSON document is part of kvmd's interface (kvmd(8), "DOCTOR"):
//! `{"version": 1, "kvmd": "<version>", "mode": "ganeti" | "standalone",
//! "ctrl_dir": "<path>", "status": "ok" | "warn" | "fail", "exit_code": 0 |
//! 1 | 3, "counts": {"ok": n, "warn": n, "fail": n}, "findings": [{"check":
//! "<id>", "severity": "ok" | "warn" | "fail", "instance": "<name>" | null,
//! "summary": "<text>", "advice": "<text>" | null}, ...]}`. Fields are only
//! ever added; `version` changes if one changes meaning.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::findings::{Report, Severity};

/// The protocol version of the `--json` document.
pub(crate) const VERSION: u32 = 1;

/// What the report is about, for its first line and the JSON fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Context {
    /// `ganeti` or `standalone` (`--no-ssconf`).
    pub(crate) mode: &'static str,
    /// The control directory looked at, as shown.
    pub(crate) ctrl_dir: String,
}

/// Control characters (and only those) escaped: a summary quotes file
/// contents and error messages, and the report stays one line a finding
/// whatever they hold. Names are escaped already by the checks.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The report for people: a heading, one line per finding (severity,
/// check, instance, what was found, `→` what to do), and a last line.
pub(crate) fn text(report: &Report, context: &Context) -> String {
    let mut out = format!(
        "kvmd doctor {} ({}): {}\n",
        env!("CARGO_PKG_VERSION"),
        context.mode,
        one_line(&context.ctrl_dir)
    );
    let width = report
        .findings()
        .iter()
        .map(|f| f.check.id().len())
        .max()
        .unwrap_or(0);
    for f in report.findings() {
        let mut line = format!("{:<4}  {:<width$}  ", f.severity.as_str(), f.check.id());
        if let Some(instance) = &f.instance {
            // The JSON has the whole name; a line needs only enough of it.
            let mut shown: String = instance.chars().take(64).collect();
            if shown.len() < instance.len() {
                shown.push('…');
            }
            let _ = write!(line, "{shown}: ");
        }
        line.push_str(&f.summary);
        if let Some(advice) = &f.advice {
            let _ = write!(line, " → {advice}");
        }
        out.push_str(&one_line(&line));
        out.push('\n');
    }
    let (fail, warn, ok) = (
        report.count(Severity::Fail),
        report.count(Severity::Warn),
        report.count(Severity::Ok),
    );
    let verdict = match report.status() {
        Severity::Ok => "all ok",
        // Not "detected": a warning may be what the doctor could not tell.
        Severity::Warn => {
            "warnings only: nothing found failing, but read each warning (some say what could \
             not be told)"
        }
        Severity::Fail => "user shutdowns are not (all) detected here: fix the failures first",
    };
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let _ = writeln!(
        out,
        "{}, {}, {} ok: {verdict}",
        plural(fail, "failure", "failures"),
        plural(warn, "warning", "warnings"),
        ok
    );
    out
}

/// The report as one JSON document (see the module documentation).
pub(crate) fn json(report: &Report, context: &Context) -> String {
    let findings: Vec<Value> = report
        .findings()
        .iter()
        .map(|f| {
            json!({
                "check": f.check.id(),
                "severity": f.severity.as_str(),
                "instance": f.instance,
                "summary": f.summary,
                "advice": f.advice,
            })
        })
        .collect();
    let document = json!({
        "version": VERSION,
        "kvmd": env!("CARGO_PKG_VERSION"),
        "mode": context.mode,
        "ctrl_dir": context.ctrl_dir,
        "status": report.status().as_str(),
        "exit_code": report.exit_code(),
        "counts": {
            "ok": report.count(Severity::Ok),
            "warn": report.count(Severity::Warn),
            "fail": report.count(Severity::Fail),
        },
        "findings": findings,
    });
    format!("{document}\n")
}

#[cfg(test)]
mod tests {
    use super::super::findings::{Check, Finding};
    use super::*;

    fn context() -> Context {
        Context {
            mode: "standalone",
            ctrl_dir: "/run/kvmd".to_owned(),
        }
    }

    fn report() -> Report {
        Report::new(vec![
            Finding::ok(Check::DaemonRunning, "kvmd 1.0.0 is running (pid 7)"),
            Finding::fail(Check::InstanceCoverage, "QEMU has no socket")
                .about("vm\\n1")
                .advice("restart it to be covered"),
            Finding::warn(Check::MetricsFile, "left\nbehind\x1b[31m"),
        ])
    }

    #[test]
    fn text_is_one_line_per_finding_with_what_to_do() {
        let text = text(&report(), &context());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("kvmd doctor ") && lines[0].ends_with(": /run/kvmd"));
        assert_eq!(
            lines[1],
            "ok    daemon.running     kvmd 1.0.0 is running (pid 7)"
        );
        assert_eq!(
            lines[2],
            "fail  instance.coverage  vm\\n1: QEMU has no socket → restart it to be covered"
        );
        // What a file held cannot break the line or reach the terminal raw.
        assert_eq!(
            lines[3],
            "warn  metrics.file       left\\nbehind\\u{1b}[31m"
        );
        assert!(lines[4].starts_with("1 failure, 1 warning, 1 ok: "));
    }

    #[test]
    fn warnings_only_claim_nothing_they_do_not_know() {
        let report = Report::new(vec![Finding::warn(
            Check::DaemonRunning,
            "cannot tell whether kvmd runs",
        )]);
        let text = text(&report, &context());
        let last = text.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("0 failures, 1 warning, 0 ok: warnings only"),
            "{last}"
        );
        assert!(!last.contains("are detected"), "{last}");
    }

    #[test]
    fn json_is_the_documented_document() {
        let value: Value = serde_json::from_str(&json(&report(), &context())).expect("JSON");
        assert_eq!(value["version"], 1);
        assert_eq!(value["mode"], "standalone");
        assert_eq!(value["ctrl_dir"], "/run/kvmd");
        assert_eq!(value["status"], "fail");
        assert_eq!(value["exit_code"], 1);
        assert_eq!(value["counts"], json!({"ok": 1, "warn": 1, "fail": 1}));
        assert_eq!(
            value["findings"][1],
            json!({
                "check": "instance.coverage",
                "severity": "fail",
                "instance": "vm\\n1",
                "summary": "QEMU has no socket",
                "advice": "restart it to be covered",
            })
        );
        assert_eq!(value["findings"][0]["instance"], Value::Null);
        assert_eq!(value["findings"][0]["advice"], Value::Null);
    }
}
