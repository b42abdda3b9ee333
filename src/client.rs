//! `kvmd status` and `kvmd events`: the same binary as a client of the
//! running daemon's control socket. Blocking I/O is fine here: this is a
//! short-lived command, not the daemon. But every wait is bounded: the
//! client runs in a Ganeti hook and in systemd's `ExecStop` at node
//! shutdown, where a daemon that accepts and never answers (hung, or not
//! kvmd at all) must not hold anything up for ever.
//!
//! Exit status (LSB's for status): 0 answered; 1 the daemon said no, cut a
//! follower off, or did not answer in time; 3 no daemon answers where it
//! looked; 4 not allowed to ask.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, socket};
use std::time::{Duration, Instant};

use kvmd_core::control::schema::{
    Answer, Event, InstanceStatus, Powerdown, PowerdownGuest, Status, VerdictStatus, Word,
};
use kvmd_core::control::{self, Refusal, Request, WatchState};
use kvmd_core::decision::{ReasonCode, VerdictKind};

use crate::config::{Client, DEFAULT_CONTROL_SOCKETS, Order, OrderKind};

/// The longest answer line read (a status of 10,000 instances is a few
/// MB; this leaves room and still bounds a confused peer).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

/// How long the daemon has to take the connection and send its whole
/// first answer. kvmd answers from its event loop in milliseconds (a
/// status of thousands of instances in well under a second); a peer
/// silent this long is hung, or is not kvmd.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How long `powerdown-all` waits past its `--timeout` for the last
/// verdicts: a guest that obeys at the very end of its window is decided
/// at QEMU's hang-up a moment later, and its process is gone a moment
/// after that.
pub(crate) const POWERDOWN_MARGIN: Duration = Duration::from_secs(5);

enum Failure {
    NotRunning(Vec<PathBuf>),
    Denied(PathBuf),
    /// The daemon refused who is asking (its peer credentials).
    Refused(String),
    /// Something at `place` took the connection (or left it waiting to be
    /// accepted) and said nothing by the deadline.
    NoAnswer {
        place: PathBuf,
        within: Duration,
    },
    Other(String),
}

/// The daemon's side of the conversation, read against a deadline: every
/// read gets the time left, so a peer trickling a byte now and then
/// cannot stretch it either.
struct Answers {
    stream: UnixStream,
    place: PathBuf,
    /// `None`: no limit (`kvmd events` following, once attached).
    deadline: Option<Instant>,
    /// What the deadline was set to be, for the message.
    within: Duration,
}

impl Answers {
    fn set_deadline(&mut self, within: Option<Duration>) {
        self.deadline = within.map(|w| Instant::now() + w);
        if let Some(within) = within {
            self.within = within;
        }
    }

    fn no_answer(&self) -> Failure {
        Failure::NoAnswer {
            place: self.place.clone(),
            within: self.within,
        }
    }
}

impl Read for Answers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
        };
        self.stream.set_read_timeout(timeout)?;
        self.stream.read(buf)
    }
}

/// Whether `e` is a read or write that ran out of time (a socket timeout
/// says `EAGAIN`).
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Connects to `place` by `deadline`. The send timeout bounds the connect
/// too: a listener whose queue is full (a stuck peer that never accepts)
/// keeps a blocking connect waiting until there is room, and the kernel
/// gives up with `EAGAIN` at the timeout.
fn connect_to(place: &Path, deadline: Instant) -> Result<UnixStream, Errno> {
    let address = UnixAddr::new(place)?;
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let stream = UnixStream::from(fd);
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Errno::EAGAIN);
    }
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    loop {
        match nix::sys::socket::connect(stream.as_raw_fd(), &address) {
            Ok(()) => return Ok(stream),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

fn connect(control_socket: &Option<PathBuf>, deadline: Instant) -> Result<Answers, Failure> {
    let places: Vec<PathBuf> = match control_socket {
        Some(path) => vec![path.clone()],
        None => DEFAULT_CONTROL_SOCKETS.iter().map(PathBuf::from).collect(),
    };
    for place in &places {
        match connect_to(place, deadline) {
            Ok(stream) => {
                return Ok(Answers {
                    stream,
                    place: place.clone(),
                    deadline: Some(deadline),
                    within: ANSWER_WITHIN,
                });
            }
            Err(Errno::EACCES | Errno::EPERM) => return Err(Failure::Denied(place.clone())),
            // Something listens there and did not take us in time.
            Err(Errno::EAGAIN) => {
                return Err(Failure::NoAnswer {
                    place: place.clone(),
                    within: ANSWER_WITHIN,
                });
            }
            // Nothing there, or nothing listening: the next place.
            Err(_) => {}
        }
    }
    Err(Failure::NotRunning(places))
}

fn fail(program: &str, failure: Failure) -> ExitCode {
    match failure {
        Failure::NotRunning(places) => {
            let places: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "{program}: kvmd is not running (no control socket answers at {}; --control-socket or --pid-file name another)",
                places.join(", ")
            );
            ExitCode::from(3)
        }
        Failure::Denied(place) => {
            eprintln!(
                "{program}: not allowed to ask kvmd at {}: only root and kvmd's own user may",
                place.display()
            );
            ExitCode::from(4)
        }
        Failure::Refused(why) => {
            eprintln!("{program}: {why}");
            ExitCode::from(4)
        }
        Failure::NoAnswer { place, within } => {
            eprintln!(
                "{program}: kvmd did not answer within {} s at {} (hung, or something else listens there); gave up",
                within.as_secs(),
                place.display()
            );
            ExitCode::FAILURE
        }
        Failure::Other(why) => {
            eprintln!("{program}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `request` and returns a reader of the answer lines, which must
/// begin within [`ANSWER_WITHIN`] of now (connecting included).
fn ask(control_socket: &Option<PathBuf>, request: &Request) -> Result<BufReader<Answers>, Failure> {
    let mut answers = connect(control_socket, Instant::now() + ANSWER_WITHIN)?;
    match answers
        .stream
        .write_all(control::request_line(request).as_bytes())
    {
        Ok(()) => {}
        // Refused before the request was read (another user, too many
        // clients): the reason is waiting to be read.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) if timed_out(&e) => return Err(answers.no_answer()),
        Err(e) => return Err(Failure::Other(format!("cannot ask kvmd: {e}"))),
    }
    Ok(BufReader::new(answers))
}

/// Reads one answer line (as the shared schema reads it: a newer
/// daemon's fields and words are no error); an `error` answer is a
/// failure, and so is silence past the reader's deadline.
fn answer(reader: &mut BufReader<Answers>) -> Result<Option<(String, Answer)>, Failure> {
    let mut line = String::new();
    let read = reader
        .by_ref()
        .take(MAX_ANSWER)
        .read_line(&mut line)
        .map_err(|e| {
            if timed_out(&e) {
                reader.get_ref().no_answer()
            } else {
                Failure::Other(format!("cannot read kvmd's answer: {e}"))
            }
        })?;
    if read == 0 {
        return Ok(None);
    }
    let value: Answer = kvmd_core::control::schema::read(line.as_bytes())
        .map_err(|e| Failure::Other(format!("kvmd's answer is {e}")))?;
    if let Some(error) = &value.error {
        let said = format!("kvmd says: {error}");
        return Err(match value.code.as_ref().and_then(Word::known) {
            Some(Refusal::Denied) => Failure::Refused(said),
            Some(Refusal::Refused) => Failure::Other(error.clone()),
            _ => Failure::Other(said),
        });
    }
    Ok(Some((line, value)))
}

/// `kvmd status`.
pub fn status(client: &Client) -> ExitCode {
    let request = Request::Status {
        instances: client.instances.clone(),
    };
    let got = ask(&client.control_socket, &request).and_then(|mut reader| answer(&mut reader));
    let (line, value) = match got {
        Ok(Some(answer)) => answer,
        Ok(None) => return fail(&client.program, Failure::Other("kvmd hung up".to_owned())),
        Err(failure) => return fail(&client.program, failure),
    };
    if client.json {
        print!("{line}");
        return ExitCode::SUCCESS;
    }
    print!("{}", render_status(&value.status.unwrap_or_default()));
    ExitCode::SUCCESS
}

/// `kvmd events`.
pub fn events(client: &Client) -> ExitCode {
    let mut reader = match ask(&client.control_socket, &Request::Events) {
        Ok(reader) => reader,
        Err(failure) => return fail(&client.program, failure),
    };
    let mut stdout = io::stdout().lock();
    loop {
        match answer(&mut reader) {
            Ok(Some((line, value))) => {
                // Attached: from now on events come when they happen,
                // which may be hours apart; a follower waits as long as
                // whoever runs it likes.
                reader.get_mut().set_deadline(None);
                // In JSON every line is passed on, the first ("following":
                // attached) too; people see only the events.
                let text = if client.json {
                    line
                } else if let Some(event) = &value.event {
                    format!(
                        "{} {:<7} {}\n",
                        or_dash(&event.time),
                        event.level.text().unwrap_or("-").to_ascii_uppercase(),
                        or_dash(&event.message)
                    )
                } else {
                    continue;
                };
                if stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::SUCCESS; // the reader went away (a pipe to head)
                }
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(failure) => return fail(&client.program, failure),
        }
    }
}

/// `kvmd expect-stop` and `kvmd powerdown-all`.
pub fn order(order: &Order) -> ExitCode {
    let request = match &order.what {
        OrderKind::ExpectStop {
            instance,
            seconds,
            by,
        } => Request::ExpectStop {
            instance: instance.clone(),
            seconds: *seconds,
            by: by.clone(),
        },
        OrderKind::Cancel { instance } => Request::CancelIntent {
            instance: instance.clone(),
        },
        OrderKind::PowerdownAll { seconds, by } => Request::PowerdownAll {
            seconds: *seconds,
            by: by.clone(),
        },
    };
    let mut reader = match ask(&order.control_socket, &request) {
        Ok(reader) => reader,
        Err(failure) => return fail(&order.program, failure),
    };
    let (line, value) = match answer(&mut reader) {
        Ok(Some(answer)) => answer,
        Ok(None) => return fail(&order.program, Failure::Other("kvmd hung up".to_owned())),
        Err(failure) => return fail(&order.program, failure),
    };
    if order.json {
        print!("{line}");
    }
    match &order.what {
        OrderKind::ExpectStop { .. } => {
            let i = value.intent.unwrap_or_default();
            if !order.json {
                println!(
                    "{}: its next SHUTDOWN until {} ({} s) is the host's (by {})",
                    or_dash(&i.instance),
                    or_dash(&i.until),
                    i.seconds,
                    or_dash(&i.by)
                );
            }
            ExitCode::SUCCESS
        }
        OrderKind::Cancel { .. } => {
            if !order.json {
                let cancelled = value.cancelled.as_deref().unwrap_or("-");
                println!("{cancelled}: intent cancelled");
            }
            ExitCode::SUCCESS
        }
        OrderKind::PowerdownAll { seconds, .. } => {
            // The intents' window began as kvmd answered: each guest has
            // `seconds` to stop, and its verdict and exit a moment more.
            let within = Duration::from_secs(*seconds) + POWERDOWN_MARGIN;
            reader.get_mut().set_deadline(Some(within));
            await_powerdown(order, &value.powerdown.unwrap_or_default(), reader)
        }
    }
}

/// A guest `powerdown-all` lists, and the QEMU process it names.
struct Listed<'a> {
    name: &'a str,
    /// Why kvmd did not press its button (refused guests only).
    why: &'a str,
    /// Its pid and start time, when kvmd knows them.
    qemu: Option<(u64, u64)>,
}

impl<'a> Listed<'a> {
    fn of(guest: &'a PowerdownGuest) -> Listed<'a> {
        Listed {
            name: or_dash(&guest.instance),
            why: guest.why.as_deref().unwrap_or("-"),
            qemu: guest.qemu_pid.map(u64::from).zip(guest.qemu_start),
        }
    }
}

/// Follows `powerdown-all` until every pressed guest's QEMU is gone (its
/// verdict came) or the reader's deadline; says which did not stop, and
/// which guests kvmd did not press are still running. Exit 0 when none
/// runs, 1 otherwise.
fn await_powerdown(
    order: &Order,
    powerdown: &Powerdown,
    mut reader: BufReader<Answers>,
) -> ExitCode {
    let deadline = reader.get_ref().deadline.unwrap_or_else(Instant::now);
    let pressed: Vec<Listed> = powerdown.pressed.iter().map(Listed::of).collect();
    let mut waiting: Vec<&str> = pressed.iter().map(|p| p.name).collect();
    let refused: Vec<Listed> = powerdown.refused.iter().map(Listed::of).collect();
    if !order.json {
        // Refused for any of IntentRefused's reasons (not monitored yet,
        // already shut down, a QEMU that does not answer): each says its
        // own below.
        println!(
            "pressed the power button of {} guests{}",
            waiting.len(),
            if refused.is_empty() {
                String::new()
            } else {
                format!("; {} not pressed", refused.len())
            }
        );
        for r in &refused {
            println!("{}: not pressed: {}", r.name, r.why);
        }
    }
    while !waiting.is_empty() {
        match answer(&mut reader) {
            Ok(Some((line, value))) => {
                if order.json {
                    print!("{line}");
                }
                if value.done.is_some() {
                    break;
                }
                let event = value.event.unwrap_or_default();
                let name = event.instance.as_deref().unwrap_or("-");
                // The verdict comes at the hang-up, a moment before QEMU's
                // process is gone: wait for that too, so that whatever
                // stops next (Ganeti's unit, the init system) finds it gone.
                let qemu = pressed.iter().find(|p| p.name == name);
                if let Some(Listed {
                    qemu: Some((pid, start)),
                    ..
                }) = qemu
                    && !process_gone(*pid, *start, deadline)
                {
                    continue;
                }
                waiting.retain(|w| *w != name);
                if !order.json {
                    println!(
                        "{name}: stopped: {} ({})",
                        event.verdict.as_ref().and_then(Word::text).unwrap_or("-"),
                        event_reason(&event)
                    );
                }
            }
            // Hung up (kvmd exiting) or timed out: whoever is left did not
            // stop in time, as far as anyone can tell.
            Ok(None) | Err(_) => break,
        }
    }
    let _ = io::stdout().flush();
    // A guest kvmd could not press is as much a guest still running as one
    // that ignored the button: whatever stops next kills it.
    let unpressed: Vec<String> = refused
        .iter()
        .filter_map(|r| match r.qemu {
            Some((pid, start)) => {
                process_alive(pid, start).then(|| format!("{} (QEMU pid {pid}; {})", r.name, r.why))
            }
            // Not connected yet: kvmd does not know its process, and
            // cannot say it is gone.
            None => Some(format!("{} (its QEMU unknown to kvmd; {})", r.name, r.why)),
        })
        .collect();
    if waiting.is_empty() && unpressed.is_empty() {
        return ExitCode::SUCCESS;
    }
    if !waiting.is_empty() {
        eprintln!(
            "{}: {} guests still running: {}",
            order.program,
            waiting.len(),
            waiting.join(", ")
        );
    }
    for guest in &unpressed {
        eprintln!("{}: not pressed and still running: {guest}", order.program);
    }
    ExitCode::FAILURE
}

/// Waits until process `pid` started at `start` is gone, or `deadline`.
/// Whether it is gone.
fn process_gone(pid: u64, start: u64, deadline: Instant) -> bool {
    while process_alive(pid, start) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Whether process `pid` started at `start` (clock ticks since boot, as
/// /proc says) is alive. A reused pid has another start time; a zombie
/// is gone for us.
fn process_alive(pid: u64, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 22, counted after the command name (which may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return false;
    };
    let mut fields = rest.split(' ');
    let state = fields.next();
    let started = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
    state != Some("Z") && started == Some(start)
}

/// Text as shown, `-` for none.
fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// An event's reason code (or a SHUTDOWN's reason), `-` for none.
fn event_reason(event: &Event) -> &str {
    event
        .reason
        .as_ref()
        .and_then(Option::as_deref)
        .unwrap_or("-")
}

/// A column of text, at most `max` characters wide (cut with `…`).
fn cell(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Rows as aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(c);
            } else {
                text.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn evidence_text(instance: &InstanceStatus) -> String {
    let mut said = Vec::new();
    if let Some(e) = &instance.evidence {
        if let Some(s) = &e.shutdown {
            let guest = match s.guest {
                Some(g) => format!(" guest={g}"),
                None => String::new(),
            };
            let reason = s
                .reason
                .as_ref()
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            said.push(format!("SHUTDOWN{guest}{reason}"));
        }
        if e.powerdown_pending {
            said.push("power button pressed, not yet obeyed".to_owned());
        }
        if e.panicked {
            said.push("panicked".to_owned());
        }
        match e.resets {
            0 => {}
            1 => said.push("1 reset".to_owned()),
            n => said.push(format!("{n} resets")),
        }
        if e.restored {
            said.push("restored after a restart".to_owned());
        }
    }
    match instance.malformed {
        0 => {}
        n => said.push(format!("{n} malformed")),
    }
    if said.is_empty() {
        "-".to_owned()
    } else {
        said.join(", ")
    }
}

fn verdict_text(verdict: &Word<VerdictKind>, reason: &Word<ReasonCode>) -> String {
    // Anything but `user` (a newer kvmd's word included) is not the user's.
    let user = verdict.known() == Some(VerdictKind::User);
    let verdict = VerdictKind::from_user(user).words();
    format!("{verdict} ({})", reason.text().unwrap_or("-"))
}

fn last_verdict_text(v: Option<&VerdictStatus>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| verdict_text(&v.verdict, &v.reason))
}

fn ago(seconds: u64) -> String {
    control::age(std::time::Duration::from_secs(seconds))
}

/// The human form of a status answer.
pub(crate) fn render_status(status: &Status) -> String {
    let k = &status.kvmd;
    let mut out = format!(
        "kvmd {} (pid {}), up {}; {} {}\n",
        k.version.as_deref().unwrap_or("-"),
        k.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
        ago(k.uptime_seconds),
        match k.watch.known() {
            Some(WatchState::Watching) => "watching",
            Some(WatchState::Rescanning) => "rescanning (inotify short of watches)",
            Some(WatchState::WaitingForDir) | None => "waiting for",
        },
        or_dash(&k.ctrl_dir),
    );
    let counts = &k.counts;
    let mut phases: Vec<String> = counts
        .phases
        .iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    phases.sort();
    out.push_str(&format!(
        "{} instances{}{}; {} verdicts not yet written; {} given up{}\n",
        counts.instances,
        if phases.is_empty() { "" } else { ": " },
        phases.join(", "),
        counts.unwritten_verdicts,
        counts.given_up,
        if k.descriptor_shortage {
            "; OUT OF FILE DESCRIPTORS"
        } else {
            ""
        },
    ));
    if !status.instances.is_empty() {
        let rows: Vec<Vec<String>> = status
            .instances
            .iter()
            .map(|i| {
                vec![
                    cell(or_dash(&i.name), 32),
                    or_dash(&i.phase).to_owned(),
                    ago(i.since_seconds),
                    i.qemu.as_deref().unwrap_or("-").to_owned(),
                    i.guest.as_deref().unwrap_or("-").to_owned(),
                    cell(&evidence_text(i), 48),
                    last_verdict_text(i.last_verdict.as_ref()),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "INSTANCE",
                "PHASE",
                "FOR",
                "QEMU",
                "GUEST",
                "EVIDENCE",
                "LAST VERDICT",
            ],
            &rows,
        ));
    }
    if !status.hooks.is_empty() {
        let rows: Vec<Vec<String>> = status
            .hooks
            .iter()
            .map(|h| {
                vec![
                    cell(or_dash(&h.name), 32),
                    verdict_text(&h.verdict, &h.reason),
                    h.state.text().unwrap_or("-").to_owned(),
                    h.attempt.to_string(),
                ]
            })
            .collect();
        out.push_str("\nhooks not finished:\n");
        out.push_str(&table(&["INSTANCE", "VERDICT", "STATE", "ATTEMPT"], &rows));
    }
    if !status.given_up.is_empty() {
        let names: Vec<&str> = status.given_up.iter().map(|n| or_dash(n)).collect();
        out.push_str(&format!(
            "\nnot monitored (nobody listened on their socket): {}\n",
            names.join(", ")
        ));
    }
    let verdicts = &status.verdicts;
    if !verdicts.is_empty() {
        // Newest first, and few enough to read: --json has them all.
        let rows: Vec<Vec<String>> = verdicts
            .iter()
            .rev()
            .take(20)
            .map(|v| {
                vec![
                    cell(or_dash(&v.name), 32),
                    verdict_text(&v.verdict, &v.reason),
                    format!("{} ago", ago(v.age_seconds)),
                    match &v.file_error {
                        Some(e) => format!("{}: {e}", or_dash(&v.file)),
                        None => or_dash(&v.file).to_owned(),
                    },
                    or_dash(&v.why).to_owned(),
                ]
            })
            .collect();
        out.push_str(&format!(
            "\nrecent verdicts ({} kept, newest first):\n",
            verdicts.len()
        ));
        out.push_str(&table(
            &["INSTANCE", "VERDICT", "DECIDED", "FILE", "WHY"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_daemons_status_still_renders() {
        let line = r#"{"version": 1, "status": {
            "kvmd": {"version": "9.0.0", "pid": 7, "uptime_seconds": 65, "ctrl_dir": "/run/kvmd",
                     "watch": "hibernating", "descriptor_shortage": false, "mood": "fine",
                     "counts": {"instances": 1, "phases": {"levitating": 1},
                                "unwritten_verdicts": 0, "given_up": 0, "extra": 1}},
            "given_up": [], "hooks": [],
            "instances": [{"name": "vm1", "phase": "levitating", "since_seconds": 4,
                           "qemu": "11.0.0", "qemu_pid": 99, "guest": "dreaming",
                           "evidence": {"shutdown": null, "resets": 1, "sneezes": 3},
                           "malformed": 0, "intent": null, "colour": "blue",
                           "last_verdict": {"name": "vm1", "verdict": "maybe",
                                            "reason": "cosmic-ray", "age_seconds": 9,
                                            "file": "engraved", "why": "rays"}}],
            "verdicts": [{"name": "vm1", "verdict": "maybe", "reason": "cosmic-ray",
                          "age_seconds": 9, "file": "engraved", "file_error": null,
                          "why": "rays", "seal": true}]}}"#;
        let answer: Answer = serde_json::from_str(line).expect("a newer status reads");
        let text = render_status(&answer.status.unwrap_or_default());
        assert!(
            text.starts_with("kvmd 9.0.0 (pid 7), up 1m; waiting for /run/kvmd\n"),
            "{text}"
        );
        assert!(text.contains("1 instances: 1 levitating;"), "{text}");
        assert!(text.contains("dreaming"), "{text}");
        assert!(text.contains("1 reset"), "{text}");
        // A verdict word this client does not know is not the user's.
        assert!(text.contains("not user (cosmic-ray)"), "{text}");
        assert!(text.contains("engraved"), "{text}");
    }
}
