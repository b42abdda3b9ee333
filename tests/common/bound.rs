//! A unix socket bound but not listening, the state QEMU leaves its QMP
//! socket in between `bind` and `listen`.
//!
//! Part of the tests' `common` module, and included by the load tool
//! (`tools/load/main.rs`) with `#[path = ...] mod bound;`: it depends on
//! nothing but `nix`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};

/// A unix socket bound at `path` but not listening: what QEMU has made
/// for a moment between `bind` and `listen`, and what a QEMU killed with
/// SIGKILL leaves behind. `nix::sys::socket::listen` on it (then
/// `UnixListener::from`) makes it a listener.
pub fn bind_only(path: &Path) -> OwnedFd {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(fd.as_raw_fd(), &UnixAddr::new(path).expect("address")).expect("bind");
    fd
}
