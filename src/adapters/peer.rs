//! Who is at the other end of a connection: the QEMU process behind a
//! unix socket, from its peer credentials and `/proc`.

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use kvmd_core::saved::Qemu;

/// The process behind a connected unix socket, if /proc says.
pub(crate) fn of_peer<S: AsFd>(socket: &S) -> Option<Qemu> {
    let pid = u32::try_from(getsockopt(socket, PeerCredentials).ok()?.pid()).ok()?;
    of_pid(pid)
}

/// The process `pid` (with its start time), if it exists.
pub(crate) fn of_pid(pid: u32) -> Option<Qemu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name (which may hold spaces).
    let start = stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()?;
    Some(Qemu { pid, start })
}
