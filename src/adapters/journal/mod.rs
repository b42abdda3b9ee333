//! The journal: the durable record of every verdict and of guest crashes
//! that decided nothing (issue #17), readable with `kvmd history` whether
//! kvmd runs or not.
//!
//! This module owns the journal directory's files (`journal`,
//! `journal.1` ... `journal.3`) and their format. [`record`] is pure: the
//! entry type, its one-line JSON codec, filters, time parsing. [`file`] is
//! the thin I/O around it: appending with an fsync and rotation within a
//! bound, and reading back, skipping whatever is not a well-formed line.

pub(crate) mod file;
pub(crate) mod record;

// What tests/history.rs writes and reads the journal with is public; the
// rest is the daemon's and `kvmd history`'s.
pub use file::{Appended, Journal, JournalError, Op, Read, Skipped, read};
pub(crate) use record::{DEFAULT_MAX_TOTAL, Since, parse_max_total, parse_since};
pub use record::{Entry, FileKind, Filter, IntentNote, Limits, What};
