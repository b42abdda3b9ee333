//! The journal as the loop keeps it: the fleet's records turned into
//! journal entries (wall-clock times, the reason in words), appended and
//! made durable before the verdict's shutdown file is touched, and a
//! journal that cannot be written said once, while decisions go on.

use log::{error, info, warn};

use kvmd_core::control::Clock;
use kvmd_core::fleet::{JournalRecord, Recorded};
use kvmd_core::qmp::Event;

use super::Daemon;
use crate::adapters::journal::{Appended, Entry, IntentNote, What};

/// A fleet record as a journal entry.
pub(super) fn entry(record: JournalRecord, clock: &Clock) -> Entry {
    let what = match record.what {
        Recorded::Verdict {
            verdict,
            grounds,
            intent,
        } => What::Verdict {
            user: verdict.is_user_shutdown(),
            reason: verdict.why().code().as_str().to_owned(),
            why: verdict.why().to_string(),
            evidence: grounds,
            intent: intent.map(|i| IntentNote {
                by: i.by,
                given: clock.wall(i.given),
            }),
        },
        Recorded::Crash(event) => What::GuestCrash {
            event: match event {
                Event::GuestCrashLoaded => "GUEST_CRASHLOADED",
                _ => "GUEST_PANICKED",
            }
            .to_owned(),
            action: None,
        },
    };
    Entry {
        at: clock.wall(record.at),
        instance: record.name.to_string(),
        qemu: record.qemu.map(|q| (q.pid, q.start)),
        what,
    }
}

impl Daemon {
    /// Appends a record (fsync'd). A journal that cannot be written is an
    /// ERROR once, until it can again; the verdict is decided and written
    /// all the same.
    pub(super) fn append_to_journal(&mut self, record: JournalRecord) {
        let name = record.name.clone();
        let entry = entry(record, &self.clock);
        match self.journal.append(&entry) {
            Ok(appended) => {
                if let Appended::Unshared { links } = appended {
                    warn!(
                        "{}: had {links} names (a hard link, as a backup by `cp -al` \
                         makes): copied to a file of its own before appending; the other \
                         names keep the old file, untouched",
                        self.journal.path().display()
                    );
                }
                if self.journal_failing {
                    self.journal_failing = false;
                    info!("{}: written again", self.journal.path().display());
                }
            }
            Err(e) => {
                self.journal_errors += 1;
                if !self.journal_failing {
                    self.journal_failing = true;
                    error!(
                        "{name}: {e}; verdicts are still made and written, but are missing \
                         from the journal until it can be written again"
                    );
                } else {
                    log::debug!("{name}: {e}");
                }
            }
        }
    }
}
