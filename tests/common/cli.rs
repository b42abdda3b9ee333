//! The `kvmd` binary as a client: `status`, `events` and the other
//! commands run as an operator would, and what they say parsed.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{Daemon, wait_until};

pub fn kvmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvmd"))
}

/// `kvmd ARGS`: exit code, stdout, stderr.
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = kvmd().args(args).output().expect("run kvmd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn pid_file(daemon: &Daemon) -> String {
    daemon.pid_file.display().to_string()
}

/// `kvmd status --json` of `daemon`'s control socket.
pub fn status(daemon: &Daemon) -> Value {
    let (code, out, err) = cli(&["status", "--json", "--pid-file", &pid_file(daemon)]);
    assert_eq!(code, 0, "{err}");
    let value: Value = serde_json::from_str(&out).expect("status is JSON");
    assert_eq!(value["version"], 1);
    value["status"].clone()
}

/// The instance `name` in a status, if listed.
pub fn instance<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["instances"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

/// Waits until `check` holds of `daemon`'s status; returns that status.
pub fn wait_status(daemon: &Daemon, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_until(what, || {
        let status = status(daemon);
        check(&status).then_some(status)
    })
}

/// `kvmd events --json`, its lines collected as they come.
pub struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Follower {
    pub fn start(daemon: &Daemon) -> Follower {
        let mut child = kvmd()
            .args(["events", "--json", "--pid-file", &pid_file(daemon)])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kvmd events");
        let stdout = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).expect("events are JSON");
                sink.lock().expect("lock").push(value);
            }
        });
        Follower { child, lines }
    }

    /// The events so far (the lines less the first, `following`).
    pub fn events(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("lock");
        lines
            .iter()
            .filter(|l| l.get("event").is_some())
            .map(|l| l["event"].clone())
            .collect()
    }

    /// Waits until the daemon took the follower on.
    pub fn wait_attached(&self) {
        wait_until("the follower taken on", || {
            let lines = self.lines.lock().expect("lock");
            lines.iter().any(|l| l["following"] == true).then_some(())
        });
    }

    /// Waits for an event of `kind` (and `event`, for guest events).
    pub fn wait(&self, kind: &str, event: Option<&str>) -> Value {
        wait_until(&format!("a {kind} {event:?} event"), || {
            self.events()
                .into_iter()
                .find(|e| e["kind"] == kind && event.is_none_or(|name| e["event"] == name))
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check metrics` on `file`: its verdict, or `None` without
/// promtool (a failure under CI).
pub fn promtool(file: &Path) -> Option<(bool, String)> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (Debian package prometheus; tests/run.sh installs it)"
        );
        return None;
    }
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(file).expect("metrics file"))
        .output()
        .expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

/// A metric's value in a Prometheus text file.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
