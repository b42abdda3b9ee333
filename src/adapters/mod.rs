//! The adapters: every system call the daemon makes outside its loop's
//! own descriptors, one module per thing on the host it talks to. They
//! decide nothing (the core does) and run no loop (the daemon does):
//!
//! - [`watch`]: the control directory, followed through inotify.
//! - [`shutdown_file`]: `<instance>.shutdown`, written or removed.
//! - [`state`]: the state directory, storing the core's `codec` bytes.
//! - [`journal`]: the journal of verdicts, appended by the daemon and
//!   read back by `kvmd history`.
//! - [`peer`]: the QEMU process behind a connection.
//! - [`hook_program`]: whether `--on-verdict`'s program is safe to run, and
//!   the state directory safe to trust.
//! - [`pidfile`], [`ssconf`], [`logging`], [`detach`]: the rest of a
//!   daemon's chores (the locked pid file, Ganeti's node files, log lines
//!   to syslog or stderr, detaching from the terminal).

pub mod detach;
pub mod hook_program;
pub mod journal;
pub mod logging;
pub(crate) mod peer;
pub mod pidfile;
pub(crate) mod shutdown_file;
pub mod ssconf;
pub(crate) mod state;
pub mod watch;
