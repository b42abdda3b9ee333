//! What identifies one QEMU, and what the daemon keeps of it across a
//! restart: the vocabulary the fleet and the state directory share.
//!
//! A QEMU is told apart by its socket (device and inode) and by its
//! process (pid and start time): file systems hand a re-bound socket the
//! same inode and pids are reused, the pair is not. How these are written
//! to files is [`crate::codec`]'s; finding them out (peer credentials,
//! /proc) is the adapters'.

use crate::decision::Carried;

/// A socket file's identity: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketId {
    /// The device the socket file is on (`st_dev`).
    pub dev: u64,
    /// Its inode number (`st_ino`).
    pub ino: u64,
}

/// The QEMU process on the other end of a connection: a pid is reused,
/// a pid with its start time (clock ticks since boot) is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qemu {
    /// Its process id.
    pub pid: u32,
    /// When it started, in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`).
    pub start: u64,
}

/// What one instance's state file holds: the evidence a restarted daemon
/// cannot learn from QEMU again, and the QEMU it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    /// The socket the evidence was gathered on.
    pub socket: SocketId,
    /// The process behind it.
    pub qemu: Qemu,
    /// The evidence itself.
    pub carried: Carried,
}
