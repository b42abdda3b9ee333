//! The bytes on the wire, pinned: a status answer and event lines of a
//! small fleet driven through its `handle_*`, compared byte for byte with
//! `wire.golden` (what kvmd 1.0 wrote). Field names, their order, null
//! against absent: a client of another version reads these.

use std::ffi::OsStr;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::decision::{ReasonCode, Verdict, VerdictKind, Why};
use crate::errno::Errno;
use crate::fleet::{Action, Change, ConnectError, Connected, Look, Purpose, RecordError};
use crate::qmp::Event;
use crate::saved::{Qemu, SocketId};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";
const RETURN: &[u8] = b"{\"return\": {}}\r\n";
const RUNNING: &[u8] = b"{\"return\": {\"status\": \"running\", \"running\": true}}\r\n";
const USER_OFF: &[u8] =
    b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n";
const POWERDOWN: &[u8] = b"{\"event\": \"POWERDOWN\"}\r\n";
const RESET: &[u8] = b"{\"event\": \"RESET\"}\r\n";

fn name(s: &str) -> InstanceName {
    InstanceName::new(OsStr::new(s)).expect("a valid name")
}

/// A fleet, its virtual clock, and every notice it gave.
struct World {
    fleet: Fleet,
    now: Instant,
    notices: Vec<Notice>,
    records: Vec<crate::fleet::VerdictKey>,
}

impl World {
    fn drain(&mut self) -> Vec<Action> {
        let mut rest = Vec::new();
        while let Some(action) = self.fleet.poll_action() {
            match action {
                Action::Notify(notice) => self.notices.push(notice),
                Action::Record { key, .. } => self.records.push(key),
                other => rest.push(other),
            }
        }
        rest
    }

    /// A socket `n` appears and is looked at: the actions that follow
    /// (its connect).
    fn appear(&mut self, n: &str, ino: u64) -> Vec<Action> {
        self.fleet.handle_change(self.now, Change::Created(name(n)));
        self.drain();
        let id = SocketId { dev: 1, ino };
        let socket = Look::Socket { id, owner: 0 };
        self.fleet
            .handle_looked(self.now, name(n), Purpose::Attach, socket);
        self.drain()
    }

    fn monitor(&mut self, n: &str, ino: u64, pid: u32) -> crate::fleet::InstanceKey {
        let key = self
            .appear(n, ino)
            .into_iter()
            .find_map(|a| match a {
                Action::Connect { key, .. } => Some(key),
                _ => None,
            })
            .expect("a connect");
        let connected = Connected {
            qemu: Some(Qemu { pid, start: 99 }),
            saved: None,
        };
        self.fleet.handle_connect(self.now, key, Ok(connected));
        for bytes in [GREETING, RETURN, RUNNING] {
            self.fleet.handle_bytes(self.now, key, bytes);
            self.drain();
        }
        key
    }

    /// The status answer of a daemon (`pid`, started at `t0`) asked now
    /// for the instances `filter` names (all when empty).
    fn status(&self, t0: Instant, pid: u32, filter: Vec<String>) -> String {
        let clock = Clock::new(t0, wall());
        let info = DaemonInfo {
            pid,
            started: t0,
            ctrl_dir: PathBuf::from("/run/kvmd"),
            watch: WatchState::Watching,
        };
        let mut stream = StatusStream::new(filter);
        let mut bytes = Vec::new();
        while !stream.fill(&self.fleet, &info, &clock, self.now, &mut bytes) {}
        String::from_utf8(bytes).expect("UTF-8")
    }
}

fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_400_000_123)
}

fn produced() -> String {
    let t0 = Instant::now();
    let mut w = World {
        fleet: Fleet::new(vec![0]),
        now: t0,
        notices: Vec::new(),
        records: Vec::new(),
    };
    w.fleet.handle_dir(t0, Reach::Reached, Follow::Events);
    w.drain();
    let vm1 = w.monitor("vm1", 1, 4242);
    let vm2 = w.monitor("vm2", 2, 4343);
    let vm3 = w.monitor("vm\n3", 3, 4444);
    w.now += Duration::from_secs(7);
    w.fleet.handle_bytes(w.now, vm1, POWERDOWN);
    w.fleet.handle_bytes(w.now, vm1, RESET);
    w.drain();
    w.fleet
        .handle_expect_stop(
            w.now,
            &name("vm1"),
            Duration::from_secs(120),
            "ganeti".into(),
        )
        .expect("given");
    w.drain();
    w.fleet.handle_bytes(w.now, vm2, USER_OFF);
    w.drain();
    w.now += Duration::from_secs(3);
    w.fleet.handle_hangup(w.now, vm2);
    w.drain();
    let records = std::mem::take(&mut w.records);
    for key in records {
        w.fleet
            .handle_recorded(w.now, key, Ok(crate::fleet::Outcome::Created));
    }
    w.drain();
    // vm2 again, with its last verdict; vm3 shut down, not hung up yet.
    w.monitor("vm2", 5, 4545);
    w.fleet.handle_bytes(w.now, vm3, USER_OFF);
    w.drain();
    w.now += Duration::from_secs(65);

    let mut out = String::new();
    for filter in [vec![], vec!["vm1".to_owned()], vec!["vm\\n3".to_owned()]] {
        out.push_str(&w.status(t0, 8041, filter));
    }
    let vm = name("vm1");
    let off = Verdict::from(Why::GuestPoweredOff);
    let mut notices = w.notices.clone();
    notices.extend([
        Notice::Guest {
            name: vm.clone(),
            event: Event::Shutdown {
                guest: None,
                reason: None,
            },
        },
        Notice::Guest {
            name: vm.clone(),
            event: Event::Stop,
        },
        Notice::Guest {
            name: vm.clone(),
            event: Event::Resume,
        },
        Notice::Guest {
            name: vm.clone(),
            event: Event::GuestPanicked,
        },
        Notice::Guest {
            name: vm.clone(),
            event: Event::GuestCrashLoaded,
        },
        Notice::RecordedAtLast {
            name: vm.clone(),
            verdict: off,
            outcome: crate::fleet::Outcome::Removed,
            tries: 3,
            intent_by: Some("ganeti".into()),
        },
        Notice::IntentCancelled {
            name: vm.clone(),
            by: "x".into(),
        },
        Notice::IntentExpired {
            name: vm.clone(),
            by: "y".into(),
        },
        Notice::PressesStopped {
            name: vm.clone(),
            by: "node-shutdown".into(),
        },
        Notice::DescriptorsFree,
    ]);
    for end in [
        crate::fleet::HookEnd::Exited(0),
        crate::fleet::HookEnd::Exited(3),
        crate::fleet::HookEnd::Signaled(9),
        crate::fleet::HookEnd::TimedOut,
        crate::fleet::HookEnd::NotStarted(Errno::ENOENT),
    ] {
        notices.push(Notice::HookEnded {
            name: vm.clone(),
            verdict: VerdictKind::NotUser,
            reason: ReasonCode::HostQuit,
            attempt: 2,
            end,
            took: Duration::from_millis(1500),
            retry_in: matches!(end, crate::fleet::HookEnd::Exited(3))
                .then(|| Duration::from_secs(30)),
        });
    }
    for notice in &notices {
        out.push_str(&event_line(notice, "the message", wall()));
    }
    let pressed = [
        crate::fleet::Pressed {
            name: name("vm1"),
            qemu: Some(Qemu {
                pid: 4242,
                start: 99,
            }),
            result: Ok(()),
        },
        crate::fleet::Pressed {
            name: name("vm2"),
            qemu: Some(Qemu {
                pid: 4545,
                start: 98,
            }),
            result: Err(crate::fleet::IntentRefused::NotMonitored),
        },
        crate::fleet::Pressed {
            name: name("vm\n3"),
            qemu: None,
            result: Err(crate::fleet::IntentRefused::NotMonitored),
        },
    ];
    out.push_str(&powerdown_line(&pressed));
    out.push_str(&powerdown_line(&[]));
    out.push_str(&intent_line("vm1", "ganeti", 120, wall()));
    out.push_str(&cancelled_line("vm\\n3"));
    out.push_str(&following_line());
    out.push_str(&done_line());
    out.push_str(&cut_off_line());
    for refusal in [
        Refusal::Denied,
        Refusal::Busy,
        Refusal::BadRequest,
        Refusal::Refused,
    ] {
        out.push_str(&error_line(refusal, "no \"way\""));
    }
    out.push_str(&with_hooks_and_troubles());
    out
}

/// The status's other lists, pinned too: hooks running and queued, names
/// given up on, an instance still connecting, a verdict not written yet.
fn with_hooks_and_troubles() -> String {
    let t0 = Instant::now();
    let policy = crate::fleet::HookPolicy {
        jobs: 1,
        timeout: Duration::from_secs(60),
        retries: 2,
    };
    let mut w = World {
        fleet: Fleet::new(vec![0]).with_hooks(policy),
        now: t0,
        notices: Vec::new(),
        records: Vec::new(),
    };
    w.fleet.handle_dir(t0, Reach::Reached, Follow::Events);
    w.drain();
    // Two verdicts, both written: two hooks, one running, one queued.
    for (n, ino) in [("vm1", 1), ("vm2", 2)] {
        let key = w.monitor(n, ino, 4000 + u32::try_from(ino).expect("small"));
        w.fleet.handle_bytes(w.now, key, USER_OFF);
        w.fleet.handle_hangup(w.now, key);
        w.drain();
    }
    w.now += Duration::from_secs(2);
    let mut runs = Vec::new();
    for key in std::mem::take(&mut w.records) {
        w.fleet
            .handle_recorded(w.now, key, Ok(crate::fleet::Outcome::Created));
        runs.extend(w.drain().into_iter().filter_map(|a| match a {
            Action::RunHook { id, .. } => Some(id),
            _ => None,
        }));
    }
    for id in runs {
        w.fleet.handle_hook_spawned(
            w.now,
            id,
            Ok(Qemu {
                pid: 7001,
                start: 5,
            }),
        );
        w.drain();
    }
    // A verdict whose file could not be written (it is tried again).
    let vm3 = w.monitor("vm3", 3, 4003);
    w.fleet.handle_hangup(w.now, vm3);
    w.drain();
    for key in std::mem::take(&mut w.records) {
        w.fleet
            .handle_recorded(w.now, key, Err(RecordError::File(Errno::EROFS)));
        w.drain();
    }
    // Given up on: a socket that cannot be opened.
    for action in w.appear("locked", 8) {
        if let Action::Connect { key, .. } = action {
            w.fleet
                .handle_connect(w.now, key, Err(ConnectError::Open(Errno::EACCES)));
        }
    }
    w.drain();
    // Still connecting: looked at, the connect not answered yet.
    w.appear("new", 9);
    w.now += Duration::from_secs(3);

    w.status(t0, 8042, vec![])
}

#[test]
fn status_and_event_lines_are_byte_for_byte_what_they_were() {
    let produced = produced();
    if std::env::var_os("KVMD_WRITE_GOLDEN").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/control/wire.golden"),
            &produced,
        )
        .expect("written");
    }
    let golden = include_str!("wire.golden");
    for (line, (got, want)) in produced.lines().zip(golden.lines()).enumerate() {
        assert_eq!(got, want, "line {}", line + 1);
    }
    assert_eq!(produced, golden);
}

/// The readers' types cover every field the daemon writes: each golden
/// line read back and written again is the same line.
#[test]
fn every_line_read_back_and_written_again_is_the_same() {
    for line in include_str!("wire.golden").lines() {
        let again = if line.starts_with("{\"version\":1,\"status\":") {
            let status: schema::StatusLine = serde_json::from_str(line).expect("a status");
            serde_json::to_string(&status)
        } else {
            let answer: schema::Answer = serde_json::from_str(line).expect("an answer");
            serde_json::to_string(&answer)
        };
        assert_eq!(again.expect("written"), line);
    }
}
