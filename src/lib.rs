//! kvmd: tells, for every QEMU/KVM guest on a node, whether its user shut
//! it down from inside or the host stopped it, and records the answer as
//! `<instance>.shutdown` in the control directory (Ganeti's contract).
//!
//! The protocol core ([`qmp`]), the rule ([`decision`]), the instance
//! policy ([`fleet`]) and what they share ([`saved`], [`errno`],
//! [`codec`], [`control`], [`metrics`], [`timestamp`]) are pure: none of
//! them imports a module that makes a system call. The event loop
//! ([`daemon`]) owns every descriptor and makes every system call;
//! [`watch`] follows the control directory; [`shutdown_file`] writes the
//! verdict; [`state`] keeps what survives a restart; [`peer`] finds the
//! QEMU behind a connection; [`name`] derives every file name from an
//! instance's; [`doctor`] explains why detection works on a node, or not.

pub mod client;
pub mod codec;
pub mod config;
pub mod control;
pub mod daemon;
pub mod decision;
pub mod detach;
pub mod doctor;
pub mod errno;
pub mod fleet;
pub mod history;
pub mod hook_program;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod name;
pub mod peer;
pub mod pidfile;
pub mod qmp;
pub mod saved;
pub mod shutdown_file;
pub mod ssconf;
pub mod state;
pub mod timestamp;
pub mod watch;
