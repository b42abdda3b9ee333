//! systemd's readiness protocol (`sd_notify`), without libsystemd: one
//! datagram per message to `$NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace). Without the variable, nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use log::debug;

pub struct Notifier(Option<(UnixDatagram, SocketAddr)>);

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; a socket that cannot be used is logged at
    /// debug and ignored (readiness is a courtesy, never a reason to stop).
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier(None);
        };
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(&path),
        };
        // Non-blocking: a systemd that does not read its queue must never
        // stall the loop; a message that does not fit is dropped.
        let socket = UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s));
        match (socket, addr) {
            (Ok(socket), Ok(addr)) => Notifier(Some((socket, addr))),
            (Err(e), _) | (_, Err(e)) => {
                debug!("NOTIFY_SOCKET {}: {e}", path.to_string_lossy());
                Notifier(None)
            }
        }
    }

    /// Sends one message (`READY=1`, `STATUS=...`, `STOPPING=1`).
    pub fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.0
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            debug!("sd_notify {message:?}: {e}");
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_systemd_that_does_not_read_never_stalls_the_sender() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("notify");
        let _systemd = UnixDatagram::bind(&path).expect("bind");
        let socket = UnixDatagram::unbound().expect("socket");
        socket.set_nonblocking(true).expect("nonblocking");
        let notifier = Notifier(Some((
            socket,
            SocketAddr::from_pathname(&path).expect("address"),
        )));
        // Far more than a datagram queue holds (10 by default).
        let begun = Instant::now();
        for i in 0..1000 {
            notifier.send(&format!("STATUS=change {i}"));
        }
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "{:?}",
            begun.elapsed()
        );
    }
}
