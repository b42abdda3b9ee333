//! kvmd: tells, for every QEMU/KVM guest on a node, whether its user shut
//! it down from inside or the host stopped it, and records the answer as
//! `<instance>.shutdown` in the control directory (Ganeti's contract).
//!
//! The protocol core ([`qmp`]), the rule ([`decision`]) and the instance
//! policy ([`fleet`]) are pure; the event loop ([`daemon`]) owns every
//! descriptor and makes every system call; [`watch`] follows the control
//! directory; [`shutdown_file`] writes the verdict; [`name`] derives every
//! file name from an instance's; [`doctor`] explains why detection works
//! on a node, or not.

pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod decision;
pub mod detach;
pub mod doctor;
pub mod fleet;
pub mod history;
pub mod hook_program;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod name;
pub mod pidfile;
pub mod qmp;
pub mod shutdown_file;
pub mod ssconf;
pub mod state;
pub mod watch;
