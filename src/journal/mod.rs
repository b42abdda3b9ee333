//! The journal: the durable record of every verdict and of guest crashes
//! that decided nothing (issue #17), readable with `kvmd history` whether
//! kvmd runs or not.
//!
//! This module owns the journal directory's files (`journal`,
//! `journal.1` ... `journal.3`) and their format. [`record`] is pure: the
//! entry type, its one-line JSON codec, filters, time parsing.

pub mod record;

pub use record::{
    DEFAULT_MAX_TOTAL, Entry, FILES, FileKind, Filter, IntentNote, Limits, MAX_LINE, Since,
    SkipReason, What, parse_max_total, parse_rfc3339, parse_since,
};
