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

/// QEMU 7.2's greeting, the first thing it sends on every connection.
pub const GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}";
/// The success reply to `qmp_capabilities` (and to most commands).
pub const RETURN: &str = "{\"return\": {}}";
/// The reply to `query-status` for a running guest.
pub const STATUS_RUNNING: &str =
    "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}";
/// What QEMU says when a command is refused.
pub const ERROR: &str = "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command qmp_capabilities has not been found\"}}";

/// Everything QEMU sends in a negotiation, in order: greeting, the reply
/// to `qmp_capabilities`, the reply to `query-status` (running). A peer
/// may send these without reading kvmd's commands: the replies are
/// matched by the conversation's state, not by the command read.
pub const NEGOTIATION: [&str; 3] = [GREETING, RETURN, STATUS_RUNNING];

/// The guest powered itself off: the one user shutdown.
pub const USER_OFF: &str = "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}";
/// QMP `quit` by the host: not a user shutdown.
pub const HOST_QUIT: &str = "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}";
/// The administrator's ACPI power button.
pub const POWERDOWN: &str =
    "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"POWERDOWN\"}";
/// The guest rebooted (QEMU runs on).
pub const RESET: &str = "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"RESET\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}";
/// The host paused the guest.
pub const STOP: &str =
    "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"STOP\"}";
/// The guest runs again.
pub const RESUME: &str =
    "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"RESUME\"}";
/// An event the decision ignores (QEMU throttles these; a peer need not).
pub const RTC_CHANGE: &str = "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 0, \"qom-path\": \"/machine/unattached/device[8]/rtc\"}}";

/// `messages`, each followed by `\r\n`, as one byte string.
pub fn transcript(messages: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        bytes.extend_from_slice(message.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

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
