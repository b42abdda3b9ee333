//! Fake QMP peers: the QEMU side of a `<instance>.kvmd` socket, played by
//! the test, for what real QEMU cannot be made to do on demand (a socket
//! bound long before it listens, a peer that hangs up before the greeting,
//! garbage, floods, odd message shapes).
//!
//! Messages are kept without their line ending; [`Peer::send_line`] and
//! [`transcript`] add QEMU's `\r\n`. Accepting and every blocking read of
//! a peer have the suite's [`DEADLINE`](super::DEADLINE), so a daemon that
//! never connects or stops talking fails the test instead of hanging it.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread::JoinHandle;

use super::{DEADLINE, wait_until};

// What QEMU sends: the one copy in the core's test kit. Each test crate
// uses a few (as with the rest of `common`, the others are unused there).
#[allow(unused_imports)]
pub use kvmd_core::test_kit::{
    ERROR, GREETING, HOST_QUIT, NEGOTIATION, POWERDOWN, RESET, RESUME, RETURN, RTC_CHANGE,
    STATUS_RUNNING, STOP, USER_OFF, transcript,
};

/// A listening unix socket at `path`, as QEMU's `-qmp unix:PATH,server`.
pub fn listen(path: &Path) -> UnixListener {
    UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()))
}

/// One connection from kvmd, seen from QEMU's side.
pub struct Peer {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Peer {
    /// Waits (up to the deadline) for kvmd to connect to `listener`.
    pub fn accept(listener: &UnixListener) -> Peer {
        listener.set_nonblocking(true).expect("nonblocking");
        let stream = wait_until("kvmd to connect", || match listener.accept() {
            Ok((stream, _)) => Some(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(e) => panic!("accept: {e}"),
        });
        listener.set_nonblocking(false).expect("blocking");
        stream.set_nonblocking(false).expect("blocking");
        Peer::new(stream)
    }

    /// A peer on a connection accepted elsewhere.
    pub fn new(stream: UnixStream) -> Peer {
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("read timeout");
        let writer = stream.try_clone().expect("clone");
        Peer {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Sends raw bytes, as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to kvmd");
    }

    /// Sends one message and QEMU's `\r\n`.
    pub fn send_line(&mut self, message: &str) {
        self.send(&transcript(&[message]));
    }

    /// The next line kvmd sent (a command), without its line ending.
    pub fn read_command(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a command");
        assert!(n > 0, "kvmd hung up instead of sending a command");
        line.trim_end().to_owned()
    }

    /// Reads the next command and asserts it is `{"execute": name}`.
    pub fn expect_command(&mut self, name: &str) {
        let line = self.read_command();
        assert!(line.contains(&format!("\"execute\": \"{name}\"")), "{line}");
    }

    /// QEMU's side of the greeting, capabilities and status exchange, each
    /// reply sent once kvmd's command has been read: the guest is running.
    pub fn negotiate(&mut self) {
        self.send_line(GREETING);
        self.expect_command("qmp_capabilities");
        self.send_line(RETURN);
        self.expect_command("query-status");
        self.send_line(STATUS_RUNNING);
    }

    /// The writing half, for tests that drive the socket themselves.
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.writer
    }

    /// Closes the connection, as QEMU exiting does.
    pub fn hang_up(self) {}
}

/// Accepts one connection, negotiates, sends `events` and hangs up: a
/// guest whose life was exactly these events.
pub fn serve(listener: &UnixListener, events: &[&str]) {
    let mut peer = Peer::accept(listener);
    peer.negotiate();
    for event in events {
        peer.send_line(event);
    }
    peer.hang_up();
}

/// Plays `script` on the next connection to `listener`, on a thread of
/// its own (join the handle to see the peer's own assertions fail).
pub fn spawn(listener: UnixListener, script: impl FnOnce(Peer) + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || script(Peer::accept(&listener)))
}
