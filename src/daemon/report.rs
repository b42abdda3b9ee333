//! What the loop tells outside the log when the fleet asks for a report:
//! the metrics file and systemd's status line.

use log::{debug, info};

use kvmd_core::control::WatchState;
use kvmd_core::metrics;

use super::{Daemon, files};

impl Daemon {
    /// Tells what changed: the metrics file, and systemd's status line.
    pub(super) fn write_report(&mut self) {
        if let Some(path) = &self.metrics_file {
            let outside = metrics::Outside {
                started: self.started_wall,
                watched: self.watcher.is_watching(),
                inotify_overflows: self.watcher.overflows(),
                journal_errors: self.journal_errors,
            };
            let text = metrics::render(&self.fleet, &outside);
            match files::replace(path, text.as_bytes()) {
                Ok(()) if self.metrics_failing => {
                    self.metrics_failing = false;
                    info!("{}: written again", path.display());
                }
                Ok(()) => {}
                Err(e) if !self.metrics_failing => {
                    self.metrics_failing = true;
                    log::warn!(
                        "cannot write {}: {e}; trying again at the next change",
                        path.display()
                    );
                }
                Err(e) => debug!("still cannot write {}: {e}", path.display()),
            }
        }
        if self.notifier.is_enabled() {
            let line = self.status_text();
            if line != self.status_line {
                self.notifier.send(&format!("STATUS={line}"));
                self.status_line = line;
            }
        }
    }

    /// One line for `systemctl status`.
    fn status_text(&self) -> String {
        let ctrl_dir = self.watcher.ctrl_dir_path().display();
        let monitored = self
            .fleet
            .views()
            .filter(|v| v.phase == kvmd_core::fleet::Phase::Monitoring)
            .count();
        let unwritten = self.fleet.unrecorded().count();
        let mut line = match self.info.watch {
            WatchState::WaitingForDir => format!("waiting for {ctrl_dir} to appear"),
            WatchState::Rescanning => {
                format!("rescanning {ctrl_dir} (inotify short of watches): {monitored} monitored")
            }
            WatchState::Watching => format!("watching {ctrl_dir}: {monitored} monitored"),
        };
        if unwritten > 0 {
            line.push_str(&format!(", {unwritten} verdicts not yet written"));
        }
        line
    }
}
