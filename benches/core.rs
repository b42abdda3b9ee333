//! The sans-IO core under criterion: framing and parsing QMP (as events/s
//! and MB/s), the decision rule, the fleet (a guest's whole life through
//! the instance policy, and a storm through it), and the inotify
//! crawler's handling of a burst of socket creations. Transcripts are what
//! QEMU 7.2 sends.
//!
//! `cargo bench --bench core`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvmd::adapters::watch::{Change, Watcher};
use kvmd_core::Errno;
use kvmd_core::decision::{Evidence, Verdict, decide};
use kvmd_core::fleet::{
    ConnectError, Connected, Fleet, Follow, HookId, HookJob, HookSignal, Host, InstanceKey, Intent,
    JournalRecord, Look, Notice, Outcome, Purpose, Reach, RecordError, VerdictKey, carry_out,
};
use kvmd_core::name::InstanceName;
use kvmd_core::qmp::{Command, Connection, Event, Output};
use kvmd_core::saved::{Qemu, Saved, SocketId};

use kvmd_core::test_kit::{
    DEBIAN_12_GREETING_LINE as GREETING, POWERDOWN_LINE, RESET_LINE as RESET, RETURN_LINE,
    STATUS_RUNNING_LINE, USER_OFF_LINE,
};

/// A guest's life as QEMU tells it: negotiated, rebooted twice, the ACPI
/// button obeyed, and a user poweroff.
fn life() -> Vec<u8> {
    [
        GREETING,
        RETURN_LINE,
        STATUS_RUNNING_LINE,
        RESET,
        RESET,
        POWERDOWN_LINE,
        USER_OFF_LINE,
    ]
    .concat()
}

/// The daemon reads up to 64 KiB at a time.
const READ: usize = 64 * 1024;

/// A connection past negotiation, as the daemon holds it.
fn negotiated() -> (Connection, Evidence) {
    let mut conn = Connection::new();
    let mut evidence = Evidence::new();
    let mut sink = |out: Output<'_>| {
        if let Output::Event(event) = out {
            evidence.record(event);
        }
    };
    conn.handle_bytes(GREETING, &mut sink);
    conn.handle_bytes(RETURN_LINE, &mut sink);
    conn.handle_bytes(STATUS_RUNNING_LINE, &mut sink);
    (conn, evidence)
}

/// Feeds `bytes` in reads of `READ` bytes, folding events as the daemon
/// does.
fn feed(conn: &mut Connection, evidence: &mut Evidence, bytes: &[u8]) {
    for chunk in bytes.chunks(READ) {
        conn.handle_bytes(chunk, &mut |out| {
            if let Output::Event(event) = out {
                evidence.record(event);
            }
        });
    }
}

fn storm(c: &mut Criterion) {
    const EVENTS: usize = 10_000;
    let bytes = RESET.repeat(EVENTS);
    let mut group = c.benchmark_group("reset_storm");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("events", |b| {
        let (mut conn, mut evidence) = negotiated();
        b.iter(|| feed(&mut conn, &mut evidence, black_box(&bytes)));
    });
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("bytes", |b| {
        let (mut conn, mut evidence) = negotiated();
        b.iter(|| feed(&mut conn, &mut evidence, black_box(&bytes)));
    });
    // Lines cut at awkward places: every read ends mid-message.
    group.bench_function("bytes_split_reads", |b| {
        let (mut conn, mut evidence) = negotiated();
        b.iter(|| {
            for chunk in black_box(&bytes).chunks(1000) {
                conn.handle_bytes(chunk, &mut |out| {
                    if let Output::Event(event) = out {
                        evidence.record(event);
                    }
                });
            }
        });
    });
    group.finish();
}

fn lifecycle(c: &mut Criterion) {
    // One guest's whole life: greeting to decision.
    let transcript = life();
    let mut group = c.benchmark_group("lifecycle");
    group.throughput(Throughput::Elements(1));
    group.bench_function("greeting_to_verdict", |b| {
        b.iter(|| {
            let mut conn = Connection::new();
            let mut evidence = Evidence::new();
            feed(&mut conn, &mut evidence, black_box(&transcript));
            conn.handle_eof(&mut |_| {});
            decide(&evidence)
        });
    });
    group.finish();
}

/// A fleet on a healthy node: every question answered as the loop would
/// find things (the socket there, the connect made, the file written),
/// every order taken and dropped.
struct HealthyNode {
    fleet: Fleet,
    /// The key of the last connect made.
    connected: Option<InstanceKey>,
}

impl HealthyNode {
    fn new(now: Instant) -> HealthyNode {
        let mut fleet = Fleet::new(vec![0]);
        fleet.handle_dir(now, Reach::Reached, Follow::Events);
        HealthyNode {
            fleet,
            connected: None,
        }
    }

    /// Carries out the fleet's actions; says the key of a connect made.
    fn drain(&mut self, now: Instant) -> Option<InstanceKey> {
        self.connected = None;
        carry_out(self, now);
        self.connected
    }
}

impl Host for HealthyNode {
    fn fleet(&mut self) -> &mut Fleet {
        &mut self.fleet
    }

    fn look(&mut self, _: Instant, _: &InstanceName, purpose: Purpose) -> Look {
        match purpose {
            Purpose::Attach => Look::Socket {
                id: SocketId { dev: 1, ino: 1 },
                owner: 0,
            },
            _ => Look::Absent,
        }
    }

    fn connect(
        &mut self,
        _: Instant,
        key: InstanceKey,
        _: &InstanceName,
        _: SocketId,
    ) -> Result<Connected, ConnectError> {
        self.connected = Some(key);
        Ok(Connected {
            qemu: None,
            saved: None,
        })
    }

    fn record(
        &mut self,
        _: Instant,
        _: VerdictKey,
        _: &InstanceName,
        _: Verdict,
    ) -> Result<Outcome, RecordError> {
        Ok(Outcome::Created)
    }

    fn run_hook(&mut self, _: Instant, _: HookId, _: &HookJob) -> Result<Qemu, Errno> {
        Err(Errno::ENOENT)
    }

    fn transmit(&mut self, _: InstanceKey, command: Command) {
        black_box(command);
    }

    fn close(&mut self, _: InstanceKey) {}

    fn save_state(&mut self, _: InstanceName, saved: Saved) {
        black_box(saved);
    }

    fn remove_state(&mut self, _: InstanceName) {}

    fn save_intent(&mut self, _: Instant, _: InstanceName, intent: Intent) {
        black_box(intent);
    }

    fn remove_intent(&mut self, _: InstanceName) {}

    fn save_hooks(&mut self, _: InstanceName, jobs: Vec<HookJob>) {
        black_box(jobs);
    }

    fn signal_hook(&mut self, _: HookId, _: HookSignal) {}

    fn journal(&mut self, _: Instant, record: JournalRecord) {
        black_box(record);
    }

    fn rescan(&mut self, _: Instant) {}

    fn notify(&mut self, _: Instant, notice: Notice) {
        black_box(notice);
    }

    fn report(&mut self, _: Instant) {}
}

fn fleet(c: &mut Criterion) {
    let now = Instant::now();
    let name = InstanceName::new(std::ffi::OsStr::new("vm1")).expect("name");
    let transcript = life();
    let mut group = c.benchmark_group("fleet");
    group.throughput(Throughput::Elements(1));
    // Socket created → looked at → connected → greeting to SHUTDOWN → hang-up
    // → verdict written: every step the loop hands the policy core.
    group.bench_function("socket_to_recorded", |b| {
        let mut node = HealthyNode::new(now);
        b.iter(|| {
            node.fleet
                .handle_change(now, kvmd_core::fleet::Change::Created(name.clone()));
            let key = node.drain(now).expect("connected");
            node.fleet.handle_bytes(now, key, black_box(&transcript));
            node.drain(now);
            node.fleet.handle_hangup(now, key);
            node.drain(now);
        });
    });
    group.finish();
    const EVENTS: usize = 10_000;
    let bytes = RESET.repeat(EVENTS);
    let mut group = c.benchmark_group("fleet_storm");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("events", |b| {
        let mut node = HealthyNode::new(now);
        node.fleet
            .handle_change(now, kvmd_core::fleet::Change::Created(name.clone()));
        let key = node.drain(now).expect("connected");
        node.fleet.handle_bytes(
            now,
            key,
            [GREETING, RETURN_LINE, STATUS_RUNNING_LINE]
                .concat()
                .as_slice(),
        );
        node.drain(now);
        b.iter(|| {
            for chunk in black_box(&bytes).chunks(READ) {
                node.fleet.handle_bytes(now, key, chunk);
            }
            node.drain(now);
        });
    });
    group.finish();
}

fn decision(c: &mut Criterion) {
    let mut evidence = Evidence::new();
    for event in [
        Event::Negotiated,
        Event::Status { paused: false },
        Event::Stop,
        Event::Resume,
        Event::Reset,
        Event::Shutdown {
            guest: Some(true),
            reason: None,
        },
    ] {
        evidence.record(event);
    }
    c.bench_function("decide", |b| b.iter(|| decide(black_box(&evidence))));
}

fn inotify_burst(c: &mut Criterion) {
    const SOCKETS: usize = 1000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctrl = tmp.path().join("ctrl");
    std::fs::create_dir(&ctrl).expect("mkdir");
    let mut watcher = Watcher::new(&ctrl).expect("inotify");
    let mut changes: Vec<Change> = Vec::new();
    watcher.crawl(&mut changes);
    let names: Vec<_> = (0..SOCKETS)
        .map(|i| ctrl.join(format!("vm{i}.kvmd")))
        .collect();
    let mut group = c.benchmark_group("inotify_burst");
    group.throughput(Throughput::Elements(SOCKETS as u64));
    group.bench_function("creates", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                // Untimed: a burst of creations waiting in the queue.
                for name in &names {
                    let _ = std::fs::remove_file(name);
                }
                watcher.handle_readable(&mut changes);
                changes.clear();
                for name in &names {
                    std::fs::write(name, b"").expect("create");
                }
                let start = Instant::now();
                watcher.handle_readable(&mut changes);
                timed += start.elapsed();
                assert!(changes.len() >= SOCKETS);
                changes.clear();
            }
            timed
        });
    });
    group.finish();
}

criterion_group!(benches, storm, lifecycle, fleet, decision, inotify_burst);
criterion_main!(benches);
