//! kvmd: tells, for every QEMU/KVM guest on a node, whether its user shut
//! it down from inside or the host stopped it, and records the answer as
//! `<instance>.shutdown` in the control directory (Ganeti's contract).
//!
//! Two crates. [`kvmd_core`] (core/) decides: QMP, the rule, the instance
//! policy, the control protocol, the metrics text, the state-file formats;
//! it makes no system call. This crate does: the event loop ([`daemon`])
//! owns every descriptor and makes every system call, carrying out what
//! the core's fleet asks; [`watch`] follows the control directory;
//! [`shutdown_file`] writes the verdict; [`state`] keeps what survives a
//! restart; [`journal`] and [`history`] keep and show past verdicts;
//! [`peer`] finds the QEMU behind a connection; [`pidfile`], [`ssconf`],
//! [`logging`], [`detach`] and [`hook_program`] are the rest of a
//! daemon's chores; [`config`] and [`client`] are the command line;
//! [`doctor`] explains why detection works on a node, or not.

pub mod client;
pub mod config;
pub mod daemon;
pub mod detach;
pub mod doctor;
pub mod history;
pub mod hook_program;
pub mod journal;
pub mod logging;
pub mod peer;
pub mod pidfile;
pub mod shutdown_file;
pub mod ssconf;
pub mod state;
pub mod watch;
