//! Property tests of the QMP core and the decision, through the public API
//! only (issue #4, "Proof").
//!
//! The daemon hands `qmp::Connection` whatever a read returned: a message
//! may arrive in any number of pieces, and a peer (a broken or hostile
//! QEMU, or whatever else listens on the socket) may send anything. These
//! properties pin down what must hold for *every* stream and every way of
//! cutting it, where the unit tests in `core/src/qmp.rs` check chosen examples:
//!
//! - [`arbitrary_bytes_never_panic_and_stay_bounded`]: any bytes, any cuts;
//! - [`transcript_verdict_is_independent_of_cuts`]: QEMU's own transcripts,
//!   whole, cut at random points and one byte at a time;
//! - [`invalid_lines_never_change_the_verdict`]: lines that are no valid
//!   message, inserted anywhere.
//!
//! Each property runs proptest's default 256 cases (under a second in
//! all); `PROPTEST_CASES=100000` digs deeper by hand.
//!
//! The glue is the daemon's (`daemon::handle_output`): every
//! `Output::Event` goes into one `Evidence`, and `decide` reads it at EOF.

use kvmd_core::decision::{Evidence, Verdict, decide};
use kvmd_core::qmp::{Command, Event, MAX_LINE, Output, Problem, Reason, RunState, Version};
use proptest::prelude::*;

#[path = "common/feed.rs"]
mod feed;

// ---------------------------------------------------------------------------
// Driving a connection

/// An owned copy of an [`Output`]. `Oversized` drops its byte count: it
/// says how much was dropped *so far*, which depends on the cuts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Line(Vec<u8>),
    Transmit(Command),
    Event(Event),
    Ready(Option<Version>, Option<RunState>),
    Oversized,
    Malformed,
    Unexpected,
    Refused(Command),
}

fn own(out: Output<'_>) -> Seen {
    match out {
        Output::Line(line) => Seen::Line(line.to_vec()),
        Output::Transmit(c) => Seen::Transmit(c),
        Output::Event(e) => Seen::Event(e),
        Output::Ready { qemu, state } => Seen::Ready(qemu, state),
        Output::Problem(Problem::Oversized { .. }) => Seen::Oversized,
        Output::Problem(Problem::Malformed { .. }) => Seen::Malformed,
        Output::Problem(Problem::Unexpected { .. }) => Seen::Unexpected,
        Output::Problem(Problem::Refused { command, .. }) => Seen::Refused(command),
    }
}

/// What one connection produced, start to EOF.
#[derive(Debug)]
struct Run {
    seen: Vec<Seen>,
    evidence: Evidence,
}

impl Run {
    fn events(&self) -> Vec<Event> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Event(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    fn verdict(&self) -> Verdict {
        decide(&self.evidence)
    }
}

/// Feeds `stream` in chunks whose sizes cycle through `sizes` (all of it
/// at once when `sizes` is empty), then hangs up, as the daemon does.
/// Checks the memory bound after every chunk and the state after EOF
/// (see [`feed::feed_in_reads`]).
fn run(stream: &[u8], sizes: &[usize]) -> Run {
    let mut seen = Vec::new();
    let mut evidence = Evidence::new();
    feed::feed_in_reads(stream, sizes, &mut |out: Output<'_>| {
        let out = own(out);
        if let Seen::Event(e) = out {
            evidence.record(e);
        }
        seen.push(out);
    });
    Run { seen, evidence }
}

/// Chunk sizes: mostly small, the size of a short read on a busy socket,
/// now and then large, and 1 (a byte at a time) often.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![
            3 => 1..=8usize,
            3 => 1..=200usize,
            1 => 1..=3 * MAX_LINE,
        ],
        0..12,
    )
}

// ---------------------------------------------------------------------------
// (a) Arbitrary bytes

/// Pieces that arbitrary streams are made of: raw bytes, JSON-ish
/// fragments heavy in `{`, whole valid messages (so the state machine gets
/// past the greeting), lines around and over `MAX_LINE`, deep nesting.
#[derive(Clone, Debug)]
enum Piece {
    Raw(Vec<u8>),
    Fragments(Vec<&'static str>),
    Message(&'static str),
    Long { len: usize, fill: u8, newline: bool },
    Deep { depth: usize, open: &'static str },
}

const FRAGMENTS: &[&str] = &[
    "{",
    "{",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u00",
    "\\ud800",
    "\r",
    "\n",
    "\r\n",
    " ",
    "\"event\"",
    "\"data\"",
    "\"guest\"",
    "\"reason\"",
    "\"return\"",
    "\"QMP\"",
    "\"error\"",
    "\"SHUTDOWN\"",
    "\"STOP\"",
    "\"RESUME\"",
    "\"POWERDOWN\"",
    "\"RESET\"",
    "\"GUEST_PANICKED\"",
    "\"guest-shutdown\"",
    "true",
    "false",
    "null",
    "1e999",
    "-0",
    "\u{e9}",
    "\u{fffd}",
];

const MESSAGES: &[&str] = &[
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18\"}, \"capabilities\": [\"oob\"]}}\r\n",
    "{\"return\": {}}\r\n",
    "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n",
    "{\"return\": {\"status\": \"paused\", \"singlestep\": false, \"running\": false}}\r\n",
    "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}\r\n",
    "{\"event\": \"STOP\"}\r\n",
    "{\"event\": \"RESUME\"}\r\n",
    "{\"event\": \"POWERDOWN\"}\r\n",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n",
    "{\"event\": \"SHUTDOWN\"}\r\n",
];

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Piece::Raw),
        8 => prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24)
            .prop_map(Piece::Fragments),
        6 => prop::sample::select(MESSAGES).prop_map(Piece::Message),
        1 => (
            prop_oneof![
                MAX_LINE - 2..=MAX_LINE + 2,
                0..=3 * MAX_LINE,
            ],
            prop::sample::select(&b"x{\"\r \xff"[..]),
            any::<bool>(),
        )
            .prop_map(|(len, fill, newline)| Piece::Long { len, fill, newline }),
        1 => (1..=4096usize, prop::sample::select(&["{\"a\":", "[", "{\"event\":"][..]))
            .prop_map(|(depth, open)| Piece::Deep { depth, open }),
    ]
}

fn render(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Fragments(f) => out.extend(f.iter().flat_map(|s| s.bytes())),
            Piece::Message(m) => out.extend_from_slice(m.as_bytes()),
            Piece::Long { len, fill, newline } => {
                out.resize(out.len() + len, *fill);
                if *newline {
                    out.push(b'\n');
                }
            }
            Piece::Deep { depth, open } => {
                for _ in 0..*depth {
                    out.extend_from_slice(open.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out
}

proptest! {
    /// Whatever the peer sends, however the reads cut it: the connection
    /// does not panic (a panic aborts the whole daemon, release builds use
    /// `panic = "abort"`, so every guest on the node would lose its
    /// monitor), holds at most `MAX_LINE` bytes (a hostile peer cannot
    /// make kvmd grow), leaves nothing behind at EOF, and says exactly
    /// the same thing as when the same bytes come in one read: how the
    /// kernel happened to split the stream is no input to the verdict.
    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        pieces in prop::collection::vec(piece(), 0..24),
        sizes in chunk_sizes(),
    ) {
        let stream = render(&pieces);
        let whole = run(&stream, &[]);
        let cut = run(&stream, &sizes);
        prop_assert_eq!(&cut.seen, &whole.seen);
        prop_assert_eq!(cut.evidence, whole.evidence);
        prop_assert_eq!(cut.verdict(), whole.verdict());
        // A Verdict renders for the log whatever the evidence.
        let _ = format!("{} [{}]", whole.verdict(), whole.evidence);
    }
}

// ---------------------------------------------------------------------------
// (b) Valid transcripts, as QEMU sends them

/// `data` of SHUTDOWN and RESET across QEMU versions.
#[derive(Clone, Copy, Debug)]
enum Data {
    /// Before QEMU 2.10.
    Absent,
    /// QEMU 2.10 to 3.1.
    Guest(bool),
    /// QEMU 4.0 and later; an index into [`REASONS`].
    GuestReason(bool, usize),
}

/// Every `ShutdownCause` QEMU sends, plus two it does not (`none` is
/// internal; the last stands for a newer QEMU's value).
const REASONS: &[(&str, Reason)] = &[
    ("host-error", Reason::HostError),
    ("host-qmp-quit", Reason::HostQmpQuit),
    ("host-qmp-system-reset", Reason::HostQmpSystemReset),
    ("host-signal", Reason::HostSignal),
    ("host-ui", Reason::HostUi),
    ("guest-shutdown", Reason::GuestShutdown),
    ("guest-reset", Reason::GuestReset),
    ("guest-panic", Reason::GuestPanic),
    ("subsystem-reset", Reason::SubsystemReset),
    ("none", Reason::Unknown),
    ("snapshot-load-of-the-future", Reason::Unknown),
];

const GUEST_SHUTDOWN: usize = 5;

/// Events QEMU sends that the decision does not need; some name lifecycle
/// words inside strings, which must not match.
const UNRELATED: &[&str] = &[
    "\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 78, \"qom-path\": \"/machine/unattached/device[8]\"}",
    "\"event\": \"NIC_RX_FILTER_CHANGED\", \"data\": {\"name\": \"net0\", \"path\": \"/machine/peripheral/net0/virtio-backend\"}",
    "\"event\": \"BLOCK_JOB_COMPLETED\", \"data\": {\"device\": \"drive0\", \"len\": 1024, \"offset\": 1024, \"speed\": 0, \"type\": \"stream\"}",
    "\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"virtio-disk1\", \"path\": \"/machine/peripheral/virtio-disk1\"}",
    "\"event\": \"SUSPEND\"",
    "\"event\": \"WAKEUP\"",
    "\"event\": \"BALLOON_CHANGE\", \"data\": {\"actual\": 1073741824}",
    "\"event\": \"WATCHDOG\", \"data\": {\"action\": \"reset\"}",
    "\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"concluded\", \"id\": \"STOP\"}",
    "\"event\": \"BLOCK_IO_ERROR\", \"data\": {\"device\": \"SHUTDOWN\", \"operation\": \"write\", \"action\": \"stop\"}",
    "\"event\": \"VSERPORT_CHANGE\", \"data\": {\"open\": true, \"id\": \"POWERDOWN\"}",
];

/// `query-status` answers: `status` and `running` as QEMU pairs them.
const STATUSES: &[(&str, bool)] = &[
    ("running", true),
    ("paused", false),
    ("prelaunch", false),
    ("postmigrate", false),
    ("inmigrate", false),
    ("shutdown", false),
    ("suspended", false),
    ("io-error", false),
    ("internal-error", false),
    ("guest-panicked", false),
    ("finish-migrate", false),
    ("watchdog", false),
];

#[derive(Clone, Copy, Debug)]
enum Qmp {
    Shutdown(Data),
    Powerdown,
    Stop,
    Resume,
    Reset(Data),
    /// `action` of GUEST_PANICKED: pause, poweroff or run.
    GuestPanicked(usize),
    Unrelated(usize),
}

impl Qmp {
    /// What kvmd must make of it.
    fn expected(self) -> Option<Event> {
        Some(match self {
            Qmp::Shutdown(data) => {
                let (guest, reason) = match data {
                    Data::Absent => (None, None),
                    Data::Guest(g) => (Some(g), None),
                    Data::GuestReason(g, r) => (Some(g), Some(REASONS[r].1)),
                };
                Event::Shutdown { guest, reason }
            }
            Qmp::Powerdown => Event::Powerdown,
            Qmp::Stop => Event::Stop,
            Qmp::Resume => Event::Resume,
            Qmp::Reset(_) => Event::Reset,
            Qmp::GuestPanicked(_) => Event::GuestPanicked,
            Qmp::Unrelated(_) => return None,
        })
    }

    /// The line QEMU sends, `\r\n` excluded.
    fn line(self, seconds: u64, micros: u32) -> String {
        let data = |data: Data| match data {
            Data::Absent => String::new(),
            Data::Guest(g) => format!(", \"data\": {{\"guest\": {g}}}"),
            Data::GuestReason(g, r) => {
                format!(
                    ", \"data\": {{\"guest\": {g}, \"reason\": \"{}\"}}",
                    REASONS[r].0
                )
            }
        };
        let body = match self {
            Qmp::Shutdown(d) => format!("\"event\": \"SHUTDOWN\"{}", data(d)),
            Qmp::Powerdown => "\"event\": \"POWERDOWN\"".to_owned(),
            Qmp::Stop => "\"event\": \"STOP\"".to_owned(),
            Qmp::Resume => "\"event\": \"RESUME\"".to_owned(),
            Qmp::Reset(d) => format!("\"event\": \"RESET\"{}", data(d)),
            Qmp::GuestPanicked(a) => format!(
                "\"event\": \"GUEST_PANICKED\", \"data\": {{\"action\": \"{}\"}}",
                ["pause", "poweroff", "run"][a]
            ),
            Qmp::Unrelated(i) => UNRELATED[i].to_owned(),
        };
        format!("{{\"timestamp\": {{\"seconds\": {seconds}, \"microseconds\": {micros}}}, {body}}}")
    }
}

fn data() -> impl Strategy<Value = Data> {
    assert_eq!(REASONS[GUEST_SHUTDOWN].0, "guest-shutdown");
    prop_oneof![
        1 => Just(Data::Absent),
        1 => any::<bool>().prop_map(Data::Guest),
        4 => (any::<bool>(), 0..REASONS.len()).prop_map(|(g, r)| Data::GuestReason(g, r)),
        // What a user's power-off says, often enough that the verdict is
        // "user shutdown" in a fair share of cases.
        2 => Just(Data::GuestReason(true, GUEST_SHUTDOWN)),
    ]
}

fn qmp_event() -> impl Strategy<Value = Qmp> {
    prop_oneof![
        3 => data().prop_map(Qmp::Shutdown),
        2 => Just(Qmp::Powerdown),
        2 => Just(Qmp::Stop),
        2 => Just(Qmp::Resume),
        2 => data().prop_map(Qmp::Reset),
        1 => (0..3usize).prop_map(Qmp::GuestPanicked),
        2 => (0..UNRELATED.len()).prop_map(Qmp::Unrelated),
    ]
}

/// One connection's worth of what QEMU says, in order.
#[derive(Clone, Debug)]
struct Transcript {
    version: (u32, u32, u32),
    /// Events QEMU sent after `{"return": {}}` but before answering
    /// `query-status` (it does not wait), then the status, then the rest.
    early: Vec<Qmp>,
    status: usize,
    late: Vec<Qmp>,
    /// QEMU always ends a message with `\r\n`; a peer that hangs up
    /// mid-way may not, and the last line still counts at EOF.
    last_newline: bool,
}

impl Transcript {
    /// The lines, without their `\r\n`.
    fn lines(&self) -> Vec<Vec<u8>> {
        let (major, minor, micro) = self.version;
        let mut lines = vec![
            format!(
                "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": {micro}, \"minor\": {minor}, \"major\": {major}}}, \"package\": \"Debian 1:{major}.{minor}+dfsg\"}}, \"capabilities\": [\"oob\"]}}}}"
            ),
            "{\"return\": {}}".to_owned(),
        ];
        let mut clock = 1_764_000_000u64;
        let mut event = |e: &Qmp| {
            clock += 1;
            e.line(clock, (clock % 1_000_000) as u32)
        };
        lines.extend(self.early.iter().map(&mut event));
        let (status, running) = STATUSES[self.status];
        lines.push(format!(
            "{{\"return\": {{\"status\": \"{status}\", \"singlestep\": false, \"running\": {running}}}}}"
        ));
        lines.extend(self.late.iter().map(&mut event));
        lines.into_iter().map(String::into_bytes).collect()
    }

    /// The `Event`s kvmd must report, in wire order.
    fn expected(&self) -> Vec<Event> {
        let (status, running) = STATUSES[self.status];
        let paused = !running && status != "suspended";
        let mut events = vec![Event::Negotiated];
        events.extend(self.early.iter().filter_map(|e| e.expected()));
        events.push(Event::Status { paused });
        events.extend(self.late.iter().filter_map(|e| e.expected()));
        events
    }

    fn expected_state(&self) -> RunState {
        match STATUSES[self.status] {
            (_, true) => RunState::Running,
            ("suspended", false) => RunState::Suspended,
            ("prelaunch", false) => RunState::Prelaunch,
            ("shutdown", false) => RunState::ShutDown,
            (_, false) => RunState::Paused,
        }
    }
}

fn transcript() -> impl Strategy<Value = Transcript> {
    (
        (0..12u32, 0..3u32, 0..30u32),
        prop::collection::vec(qmp_event(), 0..3),
        0..STATUSES.len(),
        prop::collection::vec(qmp_event(), 0..16),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(version, early, status, late, last_newline)| Transcript {
            version,
            early,
            status,
            late,
            last_newline,
        })
}

/// Joins lines with QEMU's `\r\n`.
fn join(lines: &[Vec<u8>], last_newline: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    if !last_newline && !lines.is_empty() {
        out.truncate(out.len() - 2);
    }
    out
}

// ---------------------------------------------------------------------------
// Lines that are no valid message

/// Lines that must not change anything: not JSON, JSON that is no object,
/// and objects whose known fields have the wrong type. None is a valid
/// event, greeting, reply or error (each is `Malformed`, `Unexpected` or an
/// event name kvmd ignores), so they can go anywhere, even before the
/// greeting. Note what is *not* here: `{"event": "STOP", "data": []}` is a
/// valid STOP (STOP's data is not read), and `{"return": {}}` would answer
/// a command.
const INVALID: &[&str] = &[
    "",
    "   ",
    "hello",
    "STOP",
    "SHUTDOWN guest",
    "\"SHUTDOWN\"",
    "42",
    "null",
    "true",
    "[]",
    "[{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}]",
    "[{\"QMP\": {}}, {\"return\": {}}]",
    "\"{\\\"event\\\": \\\"STOP\\\"}\"",
    "{",
    "}",
    "{}",
    "{\"event\": \"STOP\"",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}",
    "{event: STOP}",
    "{'event': 'RESUME'}",
    "{\"event\": 5}",
    "{\"event\": [\"STOP\"]}",
    "{\"event\": {\"name\": \"RESUME\"}}",
    "{\"event\": true}",
    "{\"event\": null}",
    "{\"event\": \"stop\"}",
    "{\"event\": \"SHUTDOWN \"}",
    "{\"event\": \"STOP\\u0000\"}",
    "{\"Event\": \"RESUME\"}",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": \"yes\"}}",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": 1}}",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": 5}}",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": [\"guest-shutdown\"]}}",
    "{\"event\": \"SHUTDOWN\", \"data\": []}",
    "{\"event\": \"SHUTDOWN\", \"data\": \"guest\"}",
    "{\"event\": \"SHUTDOWN\", \"data\": 0}",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"guest\": true}}",
    "{\"event\": \"RESUME\", \"event\": \"STOP\"}",
    "{\"timestamp\": {\"seconds\": 1764000000, \"microseconds\": 1}}",
    "{\"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}",
    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}} trailing",
    "{\"event\": \"SHUTDOWN\"}}",
    "{\"event\": \"RESUME\"}{\"event\": \"STOP\"}",
    "{\"QMP\": 1, \"QMP\": 2}",
    "{\"return\": {}, \"return\": {}}",
    "{\"event\": \"\\ud800\"}",
    "\u{feff}{\"event\": \"STOP\"}",
    "\0{\"event\": \"RESUME\"}",
];

/// An invalid line: one of [`INVALID`], a deep nesting, or raw bytes that
/// are no JSON object (a random line almost never is one, and the filter
/// makes sure).
fn invalid_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(INVALID).prop_map(|s| s.as_bytes().to_vec()),
        1 => (1..300usize).prop_map(|depth| {
            let mut line = b"{\"event\": \"SHUTDOWN\", \"data\": ".to_vec();
            line.extend(std::iter::repeat_n(b'[', depth));
            line
        }),
        3 => prop::collection::vec(any::<u8>().prop_filter("newline", |b| *b != b'\n'), 0..80)
            .prop_filter("a JSON object", |line| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
                    .is_err()
            }),
    ]
}

/// Garbage lines to put into a transcript: (position among its lines, line).
fn insertions() -> impl Strategy<Value = Vec<(prop::sample::Index, Vec<u8>)>> {
    prop::collection::vec((any::<prop::sample::Index>(), invalid_line()), 0..8)
}

fn insert(lines: &[Vec<u8>], garbage: &[(prop::sample::Index, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut lines = lines.to_vec();
    for (at, line) in garbage {
        let at = at.index(lines.len() + 1);
        lines.insert(at, line.clone());
    }
    lines
}

// ---------------------------------------------------------------------------
// (b) and (c)

proptest! {
    /// A real transcript, with or without garbage between its messages,
    /// gives the same outputs (so the same events, evidence and verdict)
    /// whole, cut at random points, and one byte at a time: the verdict
    /// must not depend on how the kernel split QEMU's writes. The events
    /// are exactly those QEMU sent, in order, and the commands go out in
    /// protocol order: capabilities on the greeting, query-status on its
    /// reply, each once.
    #[test]
    fn transcript_verdict_is_independent_of_cuts(
        t in transcript(),
        garbage in insertions(),
        sizes in chunk_sizes(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let stream = join(&insert(&t.lines(), &garbage), t.last_newline);

        let whole = run(&stream, &[]);
        prop_assert_eq!(whole.events(), t.expected());
        let transmits: Vec<&Seen> =
            whole.seen.iter().filter(|s| matches!(s, Seen::Transmit(_))).collect();
        prop_assert_eq!(
            transmits,
            [&Seen::Transmit(Command::Capabilities), &Seen::Transmit(Command::QueryStatus)]
        );
        let at = |wanted: &Seen| whole.seen.iter().position(|s| s == wanted).unwrap();
        let negotiated = at(&Seen::Event(Event::Negotiated));
        prop_assert!(at(&Seen::Transmit(Command::Capabilities)) < negotiated);
        prop_assert!(negotiated < at(&Seen::Transmit(Command::QueryStatus)));
        let (major, minor, micro) = t.version;
        let ready = Seen::Ready(Some(Version { major, minor, micro }), Some(t.expected_state()));
        prop_assert_eq!(whole.seen.iter().filter(|s| matches!(s, Seen::Ready(..))).count(), 1);
        prop_assert!(at(&Seen::Transmit(Command::QueryStatus)) < at(&ready));

        // Random chunk sizes, then random cut points, then bytewise.
        let by_sizes = run(&stream, &sizes);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut at_points = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([stream.len()]) {
            if p > last {
                at_points.push(p - last);
                last = p;
            }
        }
        let by_points = run(&stream, &at_points);
        let bytewise = run(&stream, &[1]);
        for (how, other) in [("sizes", &by_sizes), ("points", &by_points), ("bytewise", &bytewise)] {
            prop_assert_eq!(&other.seen, &whole.seen, "fed by {}", how);
            prop_assert_eq!(other.evidence, whole.evidence, "fed by {}", how);
            prop_assert_eq!(other.verdict(), whole.verdict(), "fed by {}", how);
        }

        // And the verdict is the one the events QEMU sent call for.
        let mut evidence = Evidence::new();
        for e in t.expected() {
            evidence.record(e);
        }
        prop_assert_eq!(whole.verdict(), decide(&evidence));
    }

    /// Lines that are no valid message, inserted anywhere (even before the
    /// greeting), change neither the events, nor the evidence, nor the
    /// verdict: one bad line from a confused peer must not flip "the user
    /// shut it down" either way. Fed in random chunks too.
    #[test]
    fn invalid_lines_never_change_the_verdict(
        t in transcript(),
        garbage in insertions(),
        sizes in chunk_sizes(),
    ) {
        let lines = t.lines();
        let clean = run(&join(&lines, t.last_newline), &[]);
        let dirty = run(&join(&insert(&lines, &garbage), t.last_newline), &sizes);
        prop_assert_eq!(dirty.events(), clean.events());
        prop_assert_eq!(dirty.evidence, clean.evidence);
        prop_assert_eq!(dirty.verdict(), clean.verdict());
        // Framing neither merged nor split lines: each inserted line that
        // is not blank came out as one line of its own.
        let lines_of = |r: &Run| r.seen.iter().filter(|s| matches!(s, Seen::Line(_))).count();
        let blank = garbage.iter().filter(|(_, l)| l.trim_ascii().is_empty()).count();
        prop_assert_eq!(lines_of(&dirty), lines_of(&clean) + garbage.len() - blank);
    }
}

/// Every line of [`INVALID`] is as inert as its comment claims, wherever
/// it comes: before the greeting, while a command is pending, and among
/// events. Only the line itself and a problem come out of it.
#[test]
fn each_invalid_line_is_inert() {
    let t = Transcript {
        version: (7, 2, 22),
        early: vec![],
        status: 0,
        late: vec![Qmp::Stop],
        last_newline: true,
    };
    let lines = t.lines();
    let clean = run(&join(&lines, true), &[]);
    let meaning = |r: &Run| -> Vec<Seen> {
        r.seen
            .iter()
            .filter(|s| {
                !matches!(
                    s,
                    Seen::Line(_) | Seen::Malformed | Seen::Unexpected | Seen::Oversized
                )
            })
            .cloned()
            .collect()
    };
    for line in INVALID {
        for at in 0..=lines.len() {
            let mut dirty = lines.clone();
            dirty.insert(at, line.as_bytes().to_vec());
            let dirty = run(&join(&dirty, true), &[]);
            assert_eq!(meaning(&dirty), meaning(&clean), "{line:?} at line {at}");
        }
    }
}
