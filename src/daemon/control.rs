//! The control socket's I/O: the listening socket and its clients, in the
//! same poll as everything else. What is said is [`kvmd_core::control`]'s.
//!
//! Bounded by design: a request longer than [`control::MAX_REQUEST`] is
//! refused, at most [`control::MAX_CLIENTS`] clients are served at once, a
//! status answer is produced only as fast as the client reads it, and a
//! follower with more than [`control::MAX_BACKLOG`] unread is cut off.
//! Only root and kvmd's own user may connect.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use log::{debug, info, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{Mode, umask};
use slab::Slab;

use kvmd_core::control::{self, Clock, DaemonInfo, Refusal, Request, StatusStream};
use kvmd_core::fleet::{Fleet, Notice};

/// Where a client's conversation is.
enum Talk {
    /// Waiting for its request line.
    Reading,
    /// Being sent a status, piece by piece.
    Status(Box<StatusStream>),
    /// Following events.
    Following,
    /// Asked something that changes the fleet: waiting for the loop to
    /// carry it out ([`ControlServer::take_orders`], then
    /// [`ControlServer::answer`]).
    Ordered(Request),
    /// `powerdown-all`: waiting for these instances' verdicts.
    Awaiting(HashSet<String>),
    /// Its last line is on its way; closed once sent.
    Closing,
}

/// How the loop answers an order.
pub enum Answer {
    /// One line, then the connection is closed.
    Last(String),
    /// A first line, then the verdicts of these instances as they come,
    /// then [`control::done_line`].
    AwaitVerdicts(String, HashSet<String>),
}

struct Client {
    stream: UnixStream,
    request: Vec<u8>,
    unsent: Vec<u8>,
    mode: Talk,
    /// Whether WRITABLE is registered: only while something waits to be
    /// written, so a follower reading its backlog never wakes the loop.
    writable: bool,
    /// Its place in the order of arrival (the oldest stalled one goes
    /// first when room is needed).
    serial: u64,
}

/// What the loop lends the control socket to answer a status.
pub struct Context<'a> {
    pub fleet: &'a Fleet,
    pub info: &'a DaemonInfo,
    pub clock: Clock,
    pub now: Instant,
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Slab<Client>,
    /// Who may ask: root and kvmd's own user.
    allowed: [u32; 2],
    /// Users refused so far (each told of once in the log).
    refused: HashSet<u32>,
    base: usize,
    /// Clients accepted so far.
    accepted: u64,
    /// Instances a `powerdown-all` client was still waiting for when it
    /// went away ([`ControlServer::take_abandoned`]).
    abandoned: Vec<String>,
}

/// Why the control socket could not be set up.
#[derive(Debug)]
pub struct ControlError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot set up the control socket {}: {}",
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for ControlError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Binds `path` with mode 0600 from the start (no moment in which it is
/// wider), replacing a socket a crashed kvmd left, never anything else.
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Someone answering there is a live daemon: not stale.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another kvmd answers there",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something that is not a socket stands there",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    bound
}

impl ControlServer {
    /// Binds the control socket and registers it under `listener`; its
    /// clients get tokens from `base` on.
    pub fn new(
        path: &Path,
        registry: &Registry,
        listener: Token,
        base: usize,
    ) -> Result<ControlServer, ControlError> {
        let error = |error| ControlError {
            path: path.to_owned(),
            error,
        };
        let mut socket = bind(path).map_err(error)?;
        registry
            .register(&mut socket, listener, Interest::READABLE)
            .map_err(error)?;
        Ok(ControlServer {
            listener: socket,
            path: path.to_owned(),
            clients: Slab::new(),
            allowed: [0, nix::unistd::geteuid().as_raw()],
            refused: HashSet::new(),
            base,
            accepted: 0,
            abandoned: Vec::new(),
        })
    }

    /// Whether `token` is one of this server's clients.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base
    }

    /// Whether anyone follows events (so they are worth rendering).
    pub fn has_followers(&self) -> bool {
        self.clients
            .iter()
            .any(|(_, c)| matches!(c.mode, Talk::Following | Talk::Awaiting(_)))
    }

    /// Requests that change the fleet, read since the last call: the loop
    /// carries each out and answers with [`ControlServer::answer`].
    pub fn take_orders(&mut self) -> Vec<(usize, Request)> {
        let mut orders = Vec::new();
        for (key, client) in self.clients.iter_mut() {
            if matches!(client.mode, Talk::Ordered(_)) {
                let Talk::Ordered(request) = std::mem::replace(&mut client.mode, Talk::Closing)
                else {
                    continue;
                };
                orders.push((key, request));
            }
        }
        orders
    }

    /// Answers the order of client `key`.
    pub fn answer(&mut self, key: usize, answer: Answer, registry: &Registry, ctx: &Context<'_>) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        match answer {
            Answer::Last(line) => {
                client.unsent.extend_from_slice(line.as_bytes());
                client.mode = Talk::Closing;
            }
            Answer::AwaitVerdicts(line, names) => {
                client.unsent.extend_from_slice(line.as_bytes());
                client.mode = Talk::Awaiting(names);
                client.done_if_nothing_awaited();
            }
        }
        if !client.write(ctx) || !client.sync_interest(registry, Token(self.base + key)) {
            self.close(key, registry);
        }
    }

    /// Takes every pending connection.
    pub fn accept(&mut self, registry: &Registry) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: the rest wait in the backlog
                    // until the next readiness.
                    debug!("control socket: accept: {e}");
                    return;
                }
            };
            let uid = getsockopt(&stream, PeerCredentials).map(|c| c.uid());
            let refusal = match uid {
                Ok(uid) if self.allowed.contains(&uid) => None,
                Ok(uid) => {
                    if self.refused.insert(uid) {
                        warn!(
                            "control socket: refused a client of uid {uid} (only root and kvmd's user may ask)"
                        );
                    }
                    Some((
                        Refusal::Denied,
                        "permission denied: only root and kvmd's own user may ask",
                    ))
                }
                Err(_) => Some((
                    Refusal::Denied,
                    "permission denied: who is asking is unknown",
                )),
            };
            // Full: a client that stopped reading (or never asked) makes
            // room; one that reads is never dropped for a newcomer.
            let full = refusal.is_none()
                && self.clients.len() >= control::MAX_CLIENTS
                && !self.evict_stalled(registry);
            let refusal = refusal
                .or_else(|| full.then_some((Refusal::Busy, "too many clients at once; try again")));
            if let Some((refusal, why)) = refusal {
                // One line, as much of it as the socket takes, then closed.
                let _ = stream.write(control::error_line(refusal, why).as_bytes());
                continue;
            }
            let entry = self.clients.vacant_entry();
            let token = Token(self.base + entry.key());
            if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                debug!("control socket: register: {e}");
                continue;
            }
            self.accepted += 1;
            entry.insert(Client {
                stream,
                request: Vec::new(),
                unsent: Vec::new(),
                mode: Talk::Reading,
                writable: false,
                serial: self.accepted,
            });
        }
    }

    /// Drops the oldest client that is no use to anyone: one whose last
    /// line could not be sent, one that never sent a request, or one that
    /// left part of a status unread. Whether one was dropped.
    fn evict_stalled(&mut self, registry: &Registry) -> bool {
        let rank = |c: &Client| match c.mode {
            Talk::Closing => Some(0),
            Talk::Reading => Some(1),
            Talk::Status(_) if !c.unsent.is_empty() => Some(2),
            Talk::Status(_) | Talk::Following | Talk::Ordered(_) | Talk::Awaiting(_) => None,
        };
        let oldest = self
            .clients
            .iter()
            .filter_map(|(key, c)| Some((rank(c)?, c.serial, key)))
            .min();
        match oldest {
            Some((_, _, key)) => {
                debug!("control socket: a stalled client dropped to make room");
                if let Some(client) = self.clients.get_mut(key) {
                    let why = "too many clients at once; this one was idle and made room";
                    let _ = client
                        .stream
                        .write(control::error_line(Refusal::Busy, why).as_bytes());
                }
                self.close(key, registry);
                true
            }
            None => false,
        }
    }

    /// Serves one client's readiness.
    pub fn handle(&mut self, token: Token, registry: &Registry, ctx: &Context<'_>) {
        let key = token.0 - self.base;
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let open = client.read(ctx) && client.write(ctx);
        if !open || !client.sync_interest(registry, token) {
            self.close(key, registry);
        }
    }

    /// Sends `line` (the event line of `notice`) to every follower, and a
    /// verdict to the `powerdown-all` client waiting for it; cuts off
    /// followers that fell behind.
    pub fn broadcast(
        &mut self,
        notice: &Notice,
        line: &str,
        registry: &Registry,
        ctx: &Context<'_>,
    ) {
        let mut closed = Vec::new();
        let verdict_of = notice
            .is_decision()
            .then(|| notice.instance().map(ToString::to_string))
            .flatten();
        for (key, client) in self.clients.iter_mut() {
            if let Talk::Awaiting(names) = &mut client.mode {
                // Bounded: one line per pressed instance, then done.
                if let Some(name) = &verdict_of
                    && names.remove(name)
                {
                    client.unsent.extend_from_slice(line.as_bytes());
                    client.done_if_nothing_awaited();
                    if !client.write(ctx) || !client.sync_interest(registry, Token(self.base + key))
                    {
                        closed.push(key);
                    }
                }
                continue;
            }
            if !matches!(client.mode, Talk::Following) {
                continue;
            }
            if client.unsent.len() + line.len() > control::MAX_BACKLOG {
                info!("control socket: a follower fell behind and was cut off");
                // Its last line, sent once the socket takes it; until
                // then it holds a slot only while no one else needs it
                // (a closing client is the first to make room).
                client.unsent.clear();
                client
                    .unsent
                    .extend_from_slice(control::cut_off_line().as_bytes());
                client.mode = Talk::Closing;
            } else {
                client.unsent.extend_from_slice(line.as_bytes());
            }
            if !client.write(ctx) || !client.sync_interest(registry, Token(self.base + key)) {
                closed.push(key);
            }
        }
        for key in closed {
            self.close(key, registry);
        }
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        if let Some(mut client) = self.clients.try_remove(key) {
            let _ = registry.deregister(&mut client.stream);
            // A `powerdown-all` that leaves before its guests stopped (its
            // client killed, or its socket broken): whoever ordered the
            // presses no longer waits for them.
            if let Talk::Awaiting(names) = client.mode {
                self.abandoned.extend(names);
            }
        }
    }

    /// Instances whose `powerdown-all` client went away before they
    /// stopped, since the last call, less those another `powerdown-all`
    /// client still waits for (its presses are its own).
    pub fn take_abandoned(&mut self) -> Vec<String> {
        let mut abandoned = std::mem::take(&mut self.abandoned);
        abandoned.sort();
        abandoned.dedup();
        abandoned.retain(|name| {
            !self
                .clients
                .iter()
                .any(|(_, c)| matches!(&c.mode, Talk::Awaiting(names) if names.contains(name)))
        });
        abandoned
    }
}

impl Drop for ControlServer {
    /// Removes the socket on a clean exit.
    fn drop(&mut self) {
        let socket = std::fs::symlink_metadata(&self.path);
        if socket.is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Client {
    /// A `powerdown-all` client with no verdict left to wait for gets its
    /// last line.
    fn done_if_nothing_awaited(&mut self) {
        if matches!(&self.mode, Talk::Awaiting(names) if names.is_empty()) {
            self.unsent
                .extend_from_slice(control::done_line().as_bytes());
            self.mode = Talk::Closing;
        }
    }

    /// Registers WRITABLE while output waits (or a status is being
    /// produced), and drops it after. False: the poll refused.
    fn sync_interest(&mut self, registry: &Registry, token: Token) -> bool {
        let wanted = !self.unsent.is_empty() || matches!(self.mode, Talk::Status(_));
        if wanted == self.writable {
            return true;
        }
        let interest = if wanted {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match registry.reregister(&mut self.stream, token, interest) {
            Ok(()) => {
                self.writable = wanted;
                true
            }
            Err(e) => {
                debug!("control socket: reregister: {e}");
                false
            }
        }
    }

    /// Reads the request, if still waiting for it. False: close now.
    fn read(&mut self, ctx: &Context<'_>) -> bool {
        let mut buf = [0u8; 1024];
        // Past the request, whatever a client sends is ignored, a few reads
        // a turn: it cannot keep the loop busy.
        for _ in 0..16 {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return match self.mode {
                        // The request's end, without its newline.
                        Talk::Reading => self.take_request(ctx),
                        // A follower that leaves is closed now, not at the
                        // next event (so is a powerdown-all client: its
                        // presses stop, see `ControlServer::close`).
                        Talk::Following | Talk::Awaiting(_) => false,
                        // A client may close its side once asked.
                        Talk::Status(_) | Talk::Ordered(_) | Talk::Closing => true,
                    };
                }
                Ok(n) => {
                    if !matches!(self.mode, Talk::Reading) {
                        continue;
                    }
                    self.request.extend_from_slice(&buf[..n]);
                    if self.request.contains(&b'\n') {
                        return self.take_request(ctx);
                    }
                    if self.request.len() > control::MAX_REQUEST {
                        self.refuse(&format!(
                            "request longer than {} bytes",
                            control::MAX_REQUEST
                        ));
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Acts on the request read so far (up to its newline, or all of it
    /// at the client's end of input).
    fn take_request(&mut self, _ctx: &Context<'_>) -> bool {
        let line = match self.request.iter().position(|&b| b == b'\n') {
            Some(end) => &self.request[..end],
            None if self.request.is_empty() => return false,
            None => &self.request[..],
        };
        if line.len() > control::MAX_REQUEST {
            self.refuse(&format!(
                "request longer than {} bytes",
                control::MAX_REQUEST
            ));
            return true;
        }
        match control::parse_request(line.trim_ascii()) {
            Ok(Request::Status { instances }) => {
                self.mode = Talk::Status(Box::new(StatusStream::new(instances)));
            }
            Ok(Request::Events) => {
                self.unsent
                    .extend_from_slice(control::following_line().as_bytes());
                self.mode = Talk::Following;
            }
            Ok(
                order @ (Request::ExpectStop { .. }
                | Request::CancelIntent { .. }
                | Request::PowerdownAll { .. }),
            ) => self.mode = Talk::Ordered(order),
            Err(why) => self.refuse(&why),
        }
        self.request = Vec::new();
        true
    }

    fn refuse(&mut self, why: &str) {
        self.unsent = control::error_line(Refusal::BadRequest, why).into_bytes();
        self.request = Vec::new();
        self.mode = Talk::Closing;
    }

    /// Writes what is pending, producing more of a status as the socket
    /// takes it. False: close now.
    fn write(&mut self, ctx: &Context<'_>) -> bool {
        loop {
            if self.unsent.is_empty() {
                match &mut self.mode {
                    Talk::Status(stream) => {
                        if stream.fill(ctx.fleet, ctx.info, &ctx.clock, ctx.now, &mut self.unsent) {
                            self.mode = Talk::Closing;
                        }
                    }
                    Talk::Closing => return false,
                    Talk::Reading | Talk::Following | Talk::Ordered(_) | Talk::Awaiting(_) => {
                        return true;
                    }
                }
                if self.unsent.is_empty() {
                    continue;
                }
            }
            match self.stream.write(&self.unsent) {
                Ok(0) => return false,
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}
