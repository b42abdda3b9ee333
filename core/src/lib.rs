//! kvmd's core: everything kvmd decides, and nothing it does.
//!
//! This crate reads no clock, holds no descriptor and makes no system
//! call; it does not depend on `mio`, `inotify` or `nix`. Results of
//! system calls and the time go in, actions come out (the `kvmd` crate's
//! event loop carries them out, and `tests/simulation.rs` drives the
//! same code with a simulated world):
//!
//! - [`qmp`]: QMP's framing and conversation with one QEMU.
//! - [`decision`]: the rule: who stopped the guest, from the evidence.
//! - [`fleet`]: every instance's fate, from a socket appearing to its
//!   verdict written; intents, hooks, the timers.
//! - [`name`]: instance names and every file name derived from one.
//! - [`saved`]: what identifies one QEMU, and what is kept of it across a
//!   restart; [`codec`]: the state directory's file formats.
//! - [`control`]: the control protocol (`kvmd status`, `kvmd events`);
//!   [`control::schema`]: its answers as types, written by the daemon and
//!   read back by the clients.
//! - [`metrics`]: the metrics file's text.
//! - [`errno`]: the adapters' failures as the core carries them.
//! - [`timestamp`]: wall-clock times as text.
//! - `test_kit` (feature `test-kit`): what QEMU sends, for tests and
//!   benches.

#![warn(unreachable_pub)]
#![deny(missing_docs)]

pub mod codec;
pub mod control;
pub mod decision;
pub mod errno;
pub mod fleet;
pub mod metrics;
pub mod name;
pub mod qmp;
pub mod saved;
#[cfg(any(test, feature = "test-kit"))]
pub mod test_kit;
pub mod timestamp;

pub use errno::Errno;
