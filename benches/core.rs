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
use kvmd_core::decision::{Evidence, decide};
use kvmd_core::fleet::Outcome;
use kvmd_core::fleet::{Action, Connected, Fleet, Follow, InstanceKey, Look, Purpose, Reach};
use kvmd_core::name::InstanceName;
use kvmd_core::qmp::{Connection, Event, Output};
use kvmd_core::saved::SocketId;

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n";
const REPLIES: &[u8] = b"{\"return\": {}}\r\n{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n";
/// What a guest rebooting in a loop makes QEMU send, as fast as it can.
const RESET: &[u8] = b"{\"timestamp\": {\"seconds\": 1795526780, \"microseconds\": 400293}, \"event\": \"RESET\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\r\n";
/// The ACPI button obeyed, and a user poweroff.
const ENDINGS: &[u8] = b"{\"timestamp\": {\"seconds\": 1795526781, \"microseconds\": 1}, \"event\": \"POWERDOWN\"}\r\n\
{\"timestamp\": {\"seconds\": 1795526782, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n";

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
    conn.handle_bytes(REPLIES, &mut sink);
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
    let transcript = [GREETING, REPLIES, RESET, RESET, ENDINGS].concat();
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

/// Carries out a fleet's actions as the loop does, answering every question
/// as a healthy node would; returns the key of a connect, if one was asked.
fn drain(fleet: &mut Fleet, now: Instant) -> Option<InstanceKey> {
    let mut connected = None;
    while let Some(action) = fleet.poll_action() {
        match action {
            Action::Look { name, purpose } => {
                let look = match purpose {
                    Purpose::Attach => Look::Socket {
                        id: SocketId { dev: 1, ino: 1 },
                        owner: 0,
                    },
                    _ => Look::Absent,
                };
                fleet.handle_looked(now, name, purpose, look);
            }
            Action::Connect { key, .. } => {
                let ok = Connected {
                    qemu: None,
                    saved: None,
                };
                fleet.handle_connect(now, key, Ok(ok));
                connected = Some(key);
            }
            Action::Record { key, .. } => {
                fleet.handle_recorded(now, key, Ok(Outcome::Created));
            }
            other => {
                black_box(other);
            }
        }
    }
    connected
}

fn fleet(c: &mut Criterion) {
    let now = Instant::now();
    let name = InstanceName::new(std::ffi::OsStr::new("vm1")).expect("name");
    let transcript = [GREETING, REPLIES, RESET, RESET, ENDINGS].concat();
    let mut group = c.benchmark_group("fleet");
    group.throughput(Throughput::Elements(1));
    // Socket created → looked at → connected → greeting to SHUTDOWN → hang-up
    // → verdict written: every step the loop hands the policy core.
    group.bench_function("socket_to_recorded", |b| {
        let mut fleet = Fleet::new(vec![0]);
        fleet.handle_dir(now, Reach::Reached, Follow::Events);
        b.iter(|| {
            fleet.handle_change(now, kvmd_core::fleet::Change::Created(name.clone()));
            let key = drain(&mut fleet, now).expect("connected");
            fleet.handle_bytes(now, key, black_box(&transcript));
            drain(&mut fleet, now);
            fleet.handle_hangup(now, key);
            drain(&mut fleet, now);
        });
    });
    group.finish();
    const EVENTS: usize = 10_000;
    let bytes = RESET.repeat(EVENTS);
    let mut group = c.benchmark_group("fleet_storm");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("events", |b| {
        let mut fleet = Fleet::new(vec![0]);
        fleet.handle_dir(now, Reach::Reached, Follow::Events);
        fleet.handle_change(now, kvmd_core::fleet::Change::Created(name.clone()));
        let key = drain(&mut fleet, now).expect("connected");
        fleet.handle_bytes(now, key, [GREETING, REPLIES].concat().as_slice());
        drain(&mut fleet, now);
        b.iter(|| {
            for chunk in black_box(&bytes).chunks(READ) {
                fleet.handle_bytes(now, key, chunk);
            }
            drain(&mut fleet, now);
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
