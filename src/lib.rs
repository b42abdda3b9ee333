//! kvmd: tells, for every QEMU/KVM guest on a node, whether its user shut
//! it down from inside or the host stopped it, and records the answer as
//! `<instance>.shutdown` in the control directory (Ganeti's contract).
//!
//! Two crates, and in this one a folder for each side of the boundary:
//!
//! - [`kvmd_core`] (core/) decides: QMP, the rule, the instance policy,
//!   the control protocol and its messages, the metrics text, the
//!   state-file formats; it makes no system call.
//! - [`adapters`] make the system calls: the control directory
//!   ([`adapters::watch`]), the verdict's file, the state directory, the
//!   journal, the QEMU behind a connection, and a daemon's chores (pid
//!   file, ssconf, logging, detaching, the hook program's checks).
//! - [`daemon`] is the loop: it owns every descriptor, polls, and carries
//!   out what the core's fleet asks, through the adapters.
//! - [`config`], [`client`], [`history`] and [`doctor`] are the command
//!   line: the flags, the control socket's clients (`kvmd status`,
//!   `events`, `expect-stop`, `powerdown-all`), `kvmd history`, and
//!   `kvmd doctor` (why detection works on a node, or not).

//!
//! `pub` here is what the binary (`src/main.rs`), the integration tests,
//! the benches and `tools/` use; everything else is `pub(crate)` or
//! private, so the compiler names what nothing uses. The modules' docs
//! describe their internals too: read them with `cargo doc
//! --document-private-items`.

#![allow(rustdoc::private_intra_doc_links)]

pub mod adapters;
pub mod client;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod history;
