//! One QMP connection's bytes: reading in turns, writing what the socket
//! takes, and asking for WRITABLE only while output waits.

use std::io::{self, Read, Write};
use std::time::Instant;

use log::debug;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

use kvmd_core::fleet::{Fleet, InstanceKey};

/// Reads one connection may do before the others get a turn, so a flooding
/// peer cannot starve the rest. Edge-triggered poll will not report what
/// is left, so such a connection goes on the backlog.
const READS_PER_TURN: usize = 16;

/// Which readiness the connection is registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registered {
    Readable,
    /// Only while `unsent` is not empty, so an idle connection costs no
    /// wake-ups.
    ReadableAndWritable,
}

/// Whether the connection waits on the backlog for another turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Poll,
    Backlog,
}

pub struct Transport {
    pub stream: UnixStream,
    /// Command bytes the socket did not take yet (almost always empty).
    unsent: Vec<u8>,
    registered: Registered,
    pub turn: Turn,
    /// Whether it ever used up a turn's reads (told once).
    pub flooded: bool,
}

/// What servicing a connection left it in.
pub enum Pump {
    Open,
    /// Reads left over after this turn's budget.
    Backlogged,
    Closed(Option<io::Error>),
}

impl Transport {
    pub fn new(stream: UnixStream) -> Transport {
        Transport {
            stream,
            unsent: Vec::new(),
            registered: Registered::Readable,
            turn: Turn::Poll,
            flooded: false,
        }
    }

    /// Sends pending bytes, then reads and hands the fleet what came.
    pub fn pump(
        &mut self,
        now: Instant,
        key: InstanceKey,
        fleet: &mut Fleet,
        buf: &mut [u8],
    ) -> Pump {
        if !self.unsent.is_empty() {
            let pending = std::mem::take(&mut self.unsent);
            self.send(&pending);
        }
        for _ in 0..READS_PER_TURN {
            match self.stream.read(buf) {
                Ok(0) => return Pump::Closed(None),
                Ok(n) => fleet.handle_bytes(now, key, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Pump::Closed(Some(e)),
            }
        }
        Pump::Backlogged
    }

    /// Writes `bytes` after whatever is already queued; queues what the
    /// socket does not take. A failed write needs no handling here: the
    /// read side sees the hang-up.
    pub fn send(&mut self, bytes: &[u8]) {
        if !self.unsent.is_empty() {
            self.unsent.extend_from_slice(bytes);
            return;
        }
        match self.stream.write(bytes) {
            Ok(n) => self.unsent.extend_from_slice(&bytes[n..]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.unsent.extend_from_slice(bytes),
            Err(e) => debug!("write failed: {e}"),
        }
    }

    /// Registers for WRITABLE while output waits, and drops it after.
    pub fn sync_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let wanted = if self.unsent.is_empty() {
            Registered::Readable
        } else {
            Registered::ReadableAndWritable
        };
        if wanted == self.registered {
            return Ok(());
        }
        let interest = match wanted {
            Registered::Readable => Interest::READABLE,
            Registered::ReadableAndWritable => Interest::READABLE | Interest::WRITABLE,
        };
        registry.reregister(&mut self.stream, token, interest)?;
        self.registered = wanted;
        Ok(())
    }
}
