//! kvmd: tells, for every QEMU/KVM guest on a node, whether its user shut
//! it down from inside or the host stopped it, and records the answer as
//! `<instance>.shutdown` in the control directory (Ganeti's contract).
//!
//! The protocol core ([`qmp`]) and the rule ([`decision`]) are pure; the
//! event loop ([`daemon`]) owns every descriptor; [`watch`] follows the
//! control directory; [`shutdown_file`] writes the verdict.

pub mod config;
pub mod daemon;
pub mod decision;
pub mod detach;
pub mod logging;
pub mod pidfile;
pub mod qmp;
pub mod shutdown_file;
pub mod ssconf;
pub mod state;
pub mod watch;
