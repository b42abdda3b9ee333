//! The fleet alone: every policy concern driven through `handle_*` and
//! checked on the actions that come out. No socket, no file, no clock.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use super::*;
use crate::decision::{Carried, Why};
use crate::errno::Errno;
use crate::fleet::Outcome;
use crate::qmp::Event;

const ROOT: u32 = 0;
use crate::test_kit::{
    GREETING_LINE as GREETING, HOST_QUIT_LINE as QUIT, POWERDOWN_LINE as POWERDOWN,
    RETURN_LINE as RETURN, STATUS_RUNNING_LINE as RUNNING, USER_OFF_LINE as USER_OFF,
};
const QEMU: Qemu = Qemu {
    pid: 4242,
    start: 99,
};

fn name(s: &str) -> InstanceName {
    InstanceName::new(OsStr::new(s)).expect("a valid name")
}

fn socket(ino: u64) -> SocketId {
    SocketId { dev: 1, ino }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fleet and a virtual clock.
struct Harness {
    fleet: Fleet,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        let t0 = Instant::now();
        Harness {
            fleet: Fleet::new(vec![ROOT]),
            t0,
            now: t0,
        }
    }

    /// A fleet whose control directory is watched.
    fn watching() -> Harness {
        let mut h = Harness::new();
        h.fleet.handle_dir(h.now, Reach::Reached, Follow::Events);
        assert_eq!(h.drain(), vec![]);
        h
    }

    /// Every action queued, polled before any is answered: for steps
    /// whose questions' answers do not change what else comes out (the
    /// loop answers each at once; tests where that matters poll one by
    /// one). Less reports (see `reports_are_made...`) and guest-event
    /// notices (see `guest_events_are_told...`).
    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.fleet.poll_action())
            .filter(|a| !matches!(a, Action::Report | Action::Notify(Notice::Guest { .. })))
            .collect()
    }

    /// The next action (less reports), to be answered before the next.
    fn next_action(&mut self) -> Option<Action> {
        std::iter::from_fn(|| self.fleet.poll_action()).find(|a| *a != Action::Report)
    }

    /// Lets a pending report be made (a report is due within a second of
    /// any change), then says when the fleet would next wake.
    fn quiet(&mut self) -> Option<Instant> {
        while self.fleet.timer_is_set(Timer::Report) {
            let at = self.fleet.poll_timeout().expect("the report's deadline");
            self.now = self.now.max(at);
            self.fleet.handle_timeout(self.now);
            self.drain();
        }
        self.fleet.poll_timeout()
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.fleet.handle_timeout(self.now);
        self.drain()
    }

    /// Runs the clock to the fleet's next deadline (past those that only
    /// made a report).
    fn next_deadline(&mut self) -> Vec<Action> {
        loop {
            let at = self.fleet.poll_timeout().expect("something waits");
            assert!(at >= self.now, "a deadline in the past");
            self.now = at;
            self.fleet.handle_timeout(at);
            let raw: Vec<Action> = std::iter::from_fn(|| self.fleet.poll_action()).collect();
            let only_reports = !raw.is_empty() && raw.iter().all(|a| *a == Action::Report);
            if !only_reports {
                return raw
                    .into_iter()
                    .filter(|a| !matches!(a, Action::Report | Action::Notify(Notice::Guest { .. })))
                    .collect();
            }
        }
    }

    fn change(&mut self, change: Change) -> Vec<Action> {
        self.fleet.handle_change(self.now, change);
        self.drain()
    }

    fn looked(&mut self, n: &str, purpose: Purpose, look: Look) -> Vec<Action> {
        self.fleet.handle_looked(self.now, name(n), purpose, look);
        self.drain()
    }

    fn connect(&mut self, key: InstanceKey, r: Result<Connected, ConnectError>) -> Vec<Action> {
        self.fleet.handle_connect(self.now, key, r);
        self.drain()
    }

    fn bytes(&mut self, key: InstanceKey, bytes: &[u8]) -> Vec<Action> {
        self.fleet.handle_bytes(self.now, key, bytes);
        self.drain()
    }

    fn hangup(&mut self, key: InstanceKey) -> Vec<Action> {
        self.fleet.handle_hangup(self.now, key);
        self.drain()
    }

    fn recorded(&mut self, key: VerdictKey, r: Result<Outcome, RecordError>) -> Vec<Action> {
        self.fleet.handle_recorded(self.now, key, r);
        self.drain()
    }

    /// A root-owned socket `n` (inode `ino`) reported and looked at: the
    /// fleet asks to connect; returns the instance's key.
    fn attach(&mut self, n: &str, ino: u64) -> InstanceKey {
        let look = self.change(Change::Created(name(n)));
        assert_eq!(look, vec![attach_look(n)]);
        let actions = self.looked(n, Purpose::Attach, root_socket(ino));
        match actions.as_slice() {
            [
                Action::Connect {
                    key,
                    name: got,
                    socket: s,
                },
            ] => {
                assert_eq!((got, *s), (&name(n), socket(ino)));
                *key
            }
            other => panic!("expected a connect, got {other:?}"),
        }
    }

    /// `attach`, connected and negotiated with a QEMU that runs.
    fn monitor(&mut self, n: &str, ino: u64) -> InstanceKey {
        let key = self.attach(n, ino);
        let ok = Ok(Connected {
            qemu: Some(QEMU),
            saved: None,
        });
        assert_eq!(self.connect(key, ok), vec![]);
        self.negotiate(key);
        key
    }

    fn negotiate(&mut self, key: InstanceKey) {
        let sent = self.bytes(key, GREETING);
        assert_eq!(sent, vec![transmit(key, Command::Capabilities)]);
        let sent = self.bytes(key, RETURN);
        assert_eq!(sent, vec![transmit(key, Command::QueryStatus)]);
        let ready = self.bytes(key, RUNNING);
        assert!(
            matches!(
                ready.as_slice(),
                [Action::Notify(Notice::Monitoring { .. })]
            ),
            "{ready:?}"
        );
    }
}

fn attach_look(n: &str) -> Action {
    Action::Look {
        name: name(n),
        purpose: Purpose::Attach,
    }
}

fn root_socket(ino: u64) -> Look {
    Look::Socket {
        id: socket(ino),
        owner: ROOT,
    }
}

fn transmit(key: InstanceKey, command: Command) -> Action {
    Action::Transmit { key, command }
}

/// The record action among `actions`, with its key.
fn record_of(actions: &[Action]) -> (VerdictKey, Verdict) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Record { key, verdict, .. } => Some((*key, *verdict)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no record in {actions:?}"))
}

fn notices(actions: &[Action]) -> Vec<&Notice> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify(n) => Some(n),
            _ => None,
        })
        .collect()
}

// --- Inspecting and trusting entries -------------------------------------

#[test]
fn only_trusted_sockets_are_monitored_and_the_rest_told_once() {
    let mut h = Harness::watching();
    h.change(Change::Appeared(name("evil")));
    let untrusted = Look::Socket {
        id: socket(1),
        owner: 1000,
    };
    let told = h.looked("evil", Purpose::Attach, untrusted);
    assert_eq!(
        told,
        vec![Action::Notify(Notice::Ignored {
            name: name("evil"),
            why: Ignored::Untrusted { owner: 1000 }
        })]
    );
    // A rescan finds the same file: not told again.
    assert_eq!(h.looked("evil", Purpose::Attach, untrusted), vec![]);
    // Another file at the name is news.
    let other = Look::Other { id: socket(2) };
    assert_eq!(notices(&h.looked("evil", Purpose::Attach, other)).len(), 1);
    // Once it vanished, the same file again is told again.
    h.change(Change::Vanished(name("evil")));
    assert_eq!(notices(&h.looked("evil", Purpose::Attach, other)).len(), 1);
    assert_eq!(h.fleet.instances(), 0);
    assert_eq!(h.quiet(), None);
}

#[test]
fn a_name_whose_verdict_could_not_be_written_is_not_monitored() {
    let mut h = Harness::watching();
    let long = "x".repeat(crate::name::NAME_MAX - ".shutdown".len() + 1);
    let told = h.looked(&long, Purpose::Attach, root_socket(1));
    assert!(
        matches!(
            notices(&told).as_slice(),
            [Notice::Ignored {
                why: Ignored::NameTooLong,
                ..
            }]
        ),
        "{told:?}"
    );
    assert_eq!(h.fleet.instances(), 0);
}

#[test]
fn looks_that_find_nothing_or_fail_attach_nothing() {
    let mut h = Harness::watching();
    assert_eq!(h.looked("vm", Purpose::Attach, Look::Absent), vec![]);
    assert_eq!(h.looked("vm", Purpose::Attach, Look::DirAway), vec![]);
    let failed = h.looked("vm", Purpose::Attach, Look::Failed(Errno::EACCES));
    assert!(matches!(
        notices(&failed).as_slice(),
        [Notice::CannotLook { .. }]
    ));
    assert_eq!(h.fleet.instances(), 0);
    assert_eq!(h.quiet(), None);
}

// --- Connecting, its back-off, and giving up ------------------------------

#[test]
fn a_refused_connect_is_retried_backing_off_then_given_up() {
    let mut h = Harness::watching();
    let key = h.attach("vm", 1);
    let refused = Err(ConnectError::Connect(Errno::ECONNREFUSED));
    let mut waits = Vec::new();
    let mut given_up = None;
    for _ in 0..100 {
        let before = h.now;
        if !h.connect(key, refused).is_empty() {
            given_up = Some(h.now - h.t0);
            break;
        }
        let actions = h.next_deadline();
        waits.push(h.now - before);
        assert!(matches!(actions.as_slice(), [Action::Connect { .. }]));
    }
    assert_eq!(&waits[..4], &[ms(5), ms(10), ms(20), ms(40)]);
    assert!(waits.iter().all(|&w| w <= Duration::from_secs(1)));
    let given_up = given_up.expect("given up at last");
    assert!(given_up >= timers::CONNECT_FOR, "{given_up:?}");
    assert!(given_up < timers::CONNECT_FOR + Duration::from_secs(2));
    assert_eq!(h.fleet.instances(), 0);
    assert_eq!(h.quiet(), None);
    // The very same socket found again by a rescan is not tried again...
    assert_eq!(h.looked("vm", Purpose::Attach, root_socket(1)), vec![]);
    // ...but created anew it is.
    h.attach("vm", 1);
}

#[test]
fn giving_up_says_why_and_forgets_the_state_file() {
    let mut h = Harness::watching();
    let key = h.attach("vm", 1);
    let actions = h.connect(key, Err(ConnectError::NotThisSocket));
    assert_eq!(
        actions,
        vec![
            Action::Notify(Notice::NotMonitored {
                name: name("vm"),
                why: GiveUp::SocketWent
            }),
            Action::RemoveState { name: name("vm") },
            Action::Look {
                name: name("vm"),
                purpose: Purpose::Successor {
                    ended: socket(1),
                    renewed: false
                }
            },
        ]
    );
    // With the directory gone there is nowhere to look for a successor.
    let key = h.attach("vm2", 2);
    let actions = h.connect(key, Err(ConnectError::DirAway));
    assert!(!actions.iter().any(|a| matches!(a, Action::Look { .. })));
}

// --- Descriptor shortage --------------------------------------------------

#[test]
fn a_descriptor_shortage_is_told_once_waited_out_and_told_over() {
    let mut h = Harness::watching();
    // No descriptor for the directory: the name waits.
    h.change(Change::Created(name("a")));
    let told = h.looked("a", Purpose::Attach, Look::DirFailed(Errno::EMFILE));
    assert!(matches!(
        notices(&told).as_slice(),
        [Notice::OutOfDescriptors { .. }]
    ));
    assert_eq!(h.fleet.deferred(), 1);
    // No descriptor to connect: the instance waits, never given up for it.
    let key = h.attach("b", 2);
    let emfile = Err(ConnectError::Connect(Errno::EMFILE));
    assert_eq!(h.connect(key, emfile), vec![]);
    assert_eq!(
        h.fleet.instance(&name("b")).map(|i| i.1),
        Some(Phase::Connecting(WaitFor::Descriptor))
    );
    // The deferred name is looked at again after a short wait.
    let again = h.advance(timers::DESCRIPTOR_WAIT);
    assert!(again.contains(&attach_look("a")), "{again:?}");
    assert!(again.iter().any(|a| matches!(a, Action::Connect { .. })));
    assert_eq!(h.connect(key, emfile), vec![]);
    let connect = h.looked("a", Purpose::Attach, root_socket(1));
    let Some(Action::Connect { key: a, .. }) = connect.first() else {
        panic!("{connect:?}");
    };
    let a = *a;
    let ok = Ok(Connected {
        qemu: None,
        saved: None,
    });
    assert_eq!(h.connect(a, ok), vec![]);
    // Still one waiting for a descriptor: not over yet.
    assert!(notices(&h.advance(ms(1))).is_empty());
    for _ in 0..1000 {
        // Waiting for a descriptor for much longer than a connect window
        // never gives up.
        if h.now - h.t0 > timers::CONNECT_FOR * 2 {
            break;
        }
        let actions = h.next_deadline();
        if actions.iter().any(|a| matches!(a, Action::Connect { .. })) {
            assert_eq!(h.connect(key, emfile), vec![]);
        }
    }
    assert_eq!(h.fleet.instances(), 2);
    h.next_deadline();
    // Told over as soon as the last one connected, in the same drain.
    let over = h.connect(key, ok);
    assert_eq!(over, vec![Action::Notify(Notice::DescriptorsFree)]);
    assert_eq!(h.quiet(), None);
}

#[test]
fn a_shortage_that_ends_by_giving_up_is_told_over_at_once() {
    let mut h = Harness::watching();
    let key = h.attach("vm", 1);
    h.connect(key, Err(ConnectError::Connect(Errno::EMFILE)));
    h.next_deadline();
    // Its socket went away meanwhile: given up, and nothing else waits.
    let actions = h.connect(key, Err(ConnectError::Open(Errno::ENOENT)));
    let told = notices(&actions);
    assert!(matches!(told[0], Notice::NotMonitored { .. }), "{told:?}");
    assert_eq!(told.last(), Some(&&Notice::DescriptorsFree), "{told:?}");
    // A later shortage is a new episode, told again.
    let key = h.attach("vm2", 2);
    let again = h.connect(key, Err(ConnectError::Connect(Errno::ENFILE)));
    assert!(matches!(
        notices(&again).as_slice(),
        [Notice::OutOfDescriptors { .. }]
    ));
}

#[test]
fn names_still_short_of_a_descriptor_keep_the_shortage_going() {
    let mut h = Harness::watching();
    h.change(Change::Created(name("a")));
    h.looked("a", Purpose::Attach, Look::DirFailed(Errno::ENFILE));
    for _ in 0..5 {
        // Answered at once, as the loop does.
        h.now += timers::DESCRIPTOR_WAIT;
        h.fleet.handle_timeout(h.now);
        assert_eq!(h.next_action(), Some(attach_look("a")));
        // Failing again is neither "over" nor a new "out of" line.
        let quiet = h.looked("a", Purpose::Attach, Look::DirFailed(Errno::ENFILE));
        assert_eq!(quiet, vec![]);
    }
    h.advance(timers::DESCRIPTOR_WAIT);
    let ok = h.looked("a", Purpose::Attach, root_socket(1));
    assert!(
        ok.iter().any(|a| matches!(a, Action::Connect { .. })),
        "{ok:?}"
    );
}

#[test]
fn a_successor_look_without_a_descriptor_is_tried_again() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    h.change(Change::Created(name("vm")));
    let actions = h.hangup(key);
    h.recorded(record_of(&actions).0, Ok(Outcome::WasAbsent));
    let successor = Purpose::Successor {
        ended: socket(1),
        renewed: true,
    };
    h.looked("vm", successor, Look::DirFailed(Errno::EMFILE));
    assert_eq!(h.fleet.deferred(), 1);
    h.now += timers::DESCRIPTOR_WAIT;
    h.fleet.handle_timeout(h.now);
    let again = h.next_action();
    assert_eq!(
        again,
        Some(Action::Look {
            name: name("vm"),
            purpose: successor
        })
    );
    let attached = h.looked("vm", successor, root_socket(2));
    assert!(
        matches!(
            attached.as_slice(),
            [
                Action::Connect { .. },
                Action::Notify(Notice::DescriptorsFree)
            ]
        ),
        "{attached:?}"
    );
}

// --- The QMP conversation and the decision --------------------------------

#[test]
fn negotiates_follows_events_and_decides_at_hang_up() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    assert_eq!(
        h.fleet.instance(&name("vm")).map(|i| i.1),
        Some(Phase::Monitoring)
    );
    // The SHUTDOWN is kept until the hang-up decides.
    let kept = h.bytes(key, USER_OFF);
    assert!(
        matches!(kept.as_slice(), [Action::SaveState { .. }]),
        "{kept:?}"
    );
    let actions = h.hangup(key);
    assert_eq!(actions[0], Action::Close { key });
    assert!(actions.contains(&Action::RemoveState { name: name("vm") }));
    let (vkey, verdict) = record_of(&actions);
    assert_eq!(verdict.why(), Why::GuestPoweredOff);
    assert_eq!(
        actions.last(),
        Some(&Action::Look {
            name: name("vm"),
            purpose: Purpose::Successor {
                ended: socket(1),
                renewed: false
            }
        })
    );
    let told = h.recorded(vkey, Ok(Outcome::Created));
    assert!(
        matches!(
            notices(&told).as_slice(),
            [Notice::Decided { grounds, outcome: Outcome::Created, .. }]
                if grounds.starts_with("first SHUTDOWN guest=true reason=guest-shutdown")
        ),
        "{told:?}"
    );
    assert_eq!(h.fleet.instances(), 0);
    assert_eq!(h.fleet.unrecorded().count(), 0);
    assert_eq!(h.quiet(), None);
}

#[test]
fn the_first_malformed_message_is_told_and_all_are_counted() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let first = h.bytes(key, b"garbage\r\n");
    assert!(matches!(
        notices(&first).as_slice(),
        [Notice::Malformed { .. }]
    ));
    assert_eq!(h.bytes(key, b"more garbage\r\n"), vec![]);
    h.bytes(key, QUIT);
    let (vkey, verdict) = record_of(&h.hangup(key));
    assert!(!verdict.is_user_shutdown());
    let told = h.recorded(vkey, Ok(Outcome::WasAbsent));
    assert!(
        matches!(notices(&told).as_slice(), [Notice::Decided { grounds, .. }] if grounds.ends_with("; 2 unusable messages")),
        "{told:?}"
    );
}

#[test]
fn a_hang_up_before_negotiation_is_not_a_user_shutdown() {
    let mut h = Harness::watching();
    let key = h.attach("vm", 1);
    let ok = Ok(Connected {
        qemu: None,
        saved: None,
    });
    h.connect(key, ok);
    assert_eq!(
        h.fleet.instance(&name("vm")).map(|i| i.1),
        Some(Phase::Negotiating)
    );
    let (_, verdict) = record_of(&h.hangup(key));
    assert_eq!(verdict.why(), Why::NeverNegotiated);
}

// --- State kept across a restart ------------------------------------------

#[test]
fn a_pending_powerdown_is_kept_and_forgotten_once_decided() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let saved = h.bytes(key, POWERDOWN);
    let [Action::SaveState { name: n, saved }] = saved.as_slice() else {
        panic!("{saved:?}");
    };
    assert_eq!(n, &name("vm"));
    assert_eq!((saved.socket, saved.qemu), (socket(1), QEMU));
    assert!(saved.carried.powerdown_pending);
    // Pressed again: nothing new to keep.
    assert_eq!(h.bytes(key, POWERDOWN), vec![]);
    h.bytes(key, USER_OFF);
    let actions = h.hangup(key);
    assert!(actions.contains(&Action::RemoveState { name: name("vm") }));
    assert_eq!(record_of(&actions).1.why(), Why::PowerButton);
}

#[test]
fn evidence_is_restored_only_for_the_very_same_qemu() {
    let carried = Carried {
        powerdown_pending: true,
        ..Carried::default()
    };
    let same = Saved {
        socket: socket(1),
        qemu: QEMU,
        carried,
    };
    // The same socket and process: the power button still counts.
    let mut h = Harness::watching();
    let key = h.attach("vm", 1);
    let restored = h.connect(
        key,
        Ok(Connected {
            qemu: Some(QEMU),
            saved: Some(same),
        }),
    );
    assert_eq!(
        restored,
        vec![Action::Notify(Notice::Restored { name: name("vm") })]
    );
    h.negotiate(key);
    h.bytes(key, USER_OFF);
    assert_eq!(record_of(&h.hangup(key)).1.why(), Why::PowerButton);
    // Another process behind a socket of that inode, or a file of another
    // socket: stale, removed, and nothing of it counts.
    let other_process = Qemu { pid: 7, start: 1 };
    let other_socket = Saved {
        socket: socket(9),
        ..same
    };
    for (qemu, saved) in [(other_process, same), (QEMU, other_socket)] {
        let mut h = Harness::watching();
        let key = h.attach("vm", 1);
        let stale = h.connect(
            key,
            Ok(Connected {
                qemu: Some(qemu),
                saved: Some(saved),
            }),
        );
        assert_eq!(stale, vec![Action::RemoveState { name: name("vm") }]);
        h.negotiate(key);
        h.bytes(key, USER_OFF);
        assert!(record_of(&h.hangup(key)).1.is_user_shutdown());
    }
}

#[test]
fn evidence_is_kept_once_per_drain_and_never_at_the_hang_up() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    // Pressed and reset within one turn's reads: nothing to keep.
    h.fleet.handle_bytes(h.now, key, POWERDOWN);
    h.fleet
        .handle_bytes(h.now, key, b"{\"event\": \"RESET\"}\r\n");
    assert_eq!(h.drain(), vec![]);
    // A POWERDOWN in the last, unterminated message is decided on at the
    // hang-up; no state file is written to be removed right after.
    h.bytes(key, POWERDOWN.strip_suffix(b"\r\n").unwrap_or(POWERDOWN));
    let actions = h.hangup(key);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SaveState { .. } | Action::RemoveState { .. })),
        "{actions:?}"
    );
    assert_eq!(record_of(&actions).1.why(), Why::NoShutdown);
}

#[test]
fn state_files_of_unmonitored_instances_are_swept_at_start() {
    let mut h = Harness::watching();
    h.monitor("alive", 1);
    h.fleet
        .handle_state_files(vec![name("alive"), name("gone")]);
    assert_eq!(h.drain(), vec![Action::RemoveState { name: name("gone") }]);
}

// --- Verdicts the file system refused -------------------------------------

fn decided_user(h: &mut Harness, n: &str, ino: u64) -> VerdictKey {
    let key = h.monitor(n, ino);
    h.bytes(key, USER_OFF);
    record_of(&h.hangup(key)).0
}

#[test]
fn a_refused_verdict_is_told_once_retried_and_told_when_written() {
    let mut h = Harness::watching();
    let vkey = decided_user(&mut h, "vm", 1);
    let enospc = Err(RecordError::File(Errno::ENOSPC));
    let told = h.recorded(vkey, enospc);
    assert!(matches!(
        notices(&told).as_slice(),
        [Notice::Unrecorded { again: true, .. }]
    ));
    let mut tries = 1;
    loop {
        // Each retry first looks whether a newer QEMU took the name.
        let look = h.next_deadline();
        assert_eq!(
            look,
            vec![Action::Look {
                name: name("vm"),
                purpose: Purpose::Verdict(vkey)
            }]
        );
        let again = h.looked("vm", Purpose::Verdict(vkey), Look::Absent);
        assert_eq!(record_of(&again).0, vkey);
        tries += 1;
        if tries == 5 {
            break;
        }
        // Told at debug only: one error line for the episode.
        let told = h.recorded(vkey, enospc);
        let told = notices(&told);
        assert!(matches!(told.as_slice(), [Notice::StillUnrecorded { .. }]));
        assert_eq!(told[0].level(), log::Level::Debug);
    }
    let told = h.recorded(vkey, Ok(Outcome::Created));
    assert!(matches!(
        notices(&told).as_slice(),
        [Notice::RecordedAtLast { tries: 5, .. }]
    ));
    assert_eq!(h.quiet(), None);
}

#[test]
fn what_no_retry_mends_is_left_to_an_operator() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    h.bytes(key, QUIT);
    let (vkey, _) = record_of(&h.hangup(key));
    let told = h.recorded(vkey, Err(RecordError::File(Errno::ENOTEMPTY)));
    assert!(matches!(
        notices(&told).as_slice(),
        [Notice::Unrecorded { again: false, .. }]
    ));
    assert_eq!(h.fleet.unrecorded().count(), 0);
    assert_eq!(h.quiet(), None);
}

#[test]
fn a_verdict_waiting_for_the_directory_is_written_once_it_is_back() {
    let mut h = Harness::watching();
    let vkey = decided_user(&mut h, "vm", 1);
    h.recorded(vkey, Err(RecordError::DirAway));
    h.fleet.handle_dir(h.now, Reach::Away, Follow::Events);
    assert_eq!(h.drain(), vec![]);
    // Its timer comes and goes while the directory is away.
    assert_eq!(h.advance(Duration::from_secs(10)), vec![]);
    assert_eq!(h.advance(Duration::from_secs(10)), vec![]);
    assert_eq!(h.quiet(), None);
    h.fleet.handle_dir(h.now, Reach::Reached, Follow::Events);
    let look = h.drain();
    assert_eq!(
        look,
        vec![Action::Look {
            name: name("vm"),
            purpose: Purpose::Verdict(vkey)
        }]
    );
}

#[test]
fn a_newer_socket_found_by_a_rescan_makes_an_unwritten_verdict_moot() {
    let mut h = Harness::watching();
    let vkey = decided_user(&mut h, "vm", 1);
    h.recorded(vkey, Err(RecordError::File(Errno::EROFS)));
    // Events were lost (an overflow): the new socket only Appeared.
    h.change(Change::Appeared(name("vm")));
    let moot = h.looked("vm", Purpose::Attach, root_socket(2));
    assert!(
        matches!(notices(&moot).as_slice(), [Notice::Moot { .. }]),
        "{moot:?}"
    );
    assert_eq!(h.fleet.unrecorded().count(), 0);
}

#[test]
fn a_second_verdict_for_a_name_supersedes_an_unwritten_one() {
    let mut h = Harness::watching();
    let old = decided_user(&mut h, "vm", 1);
    h.recorded(old, Err(RecordError::File(Errno::EROFS)));
    // The same inode again (ext4), its creation event lost: not moot yet.
    h.change(Change::Appeared(name("vm")));
    let connect = h.looked("vm", Purpose::Attach, root_socket(1));
    let Some(Action::Connect { key, .. }) = connect.first() else {
        panic!("{connect:?}");
    };
    let key = *key;
    assert_eq!(h.fleet.unrecorded().count(), 1);
    h.connect(
        key,
        Ok(Connected {
            qemu: None,
            saved: None,
        }),
    );
    h.negotiate(key);
    h.bytes(key, QUIT);
    let actions = h.hangup(key);
    assert!(
        notices(&actions)
            .iter()
            .any(|n| matches!(n, Notice::Moot { verdict, .. } if verdict.is_user_shutdown())),
        "{actions:?}"
    );
    assert_eq!(h.fleet.unrecorded().count(), 1);
    let (_, newer) = record_of(&actions);
    assert!(!newer.is_user_shutdown());
}

#[test]
fn a_renewed_successor_with_the_old_inode_makes_the_old_verdict_moot() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    h.change(Change::Created(name("vm")));
    h.bytes(key, USER_OFF);
    let actions = h.hangup(key);
    h.recorded(record_of(&actions).0, Err(RecordError::File(Errno::EROFS)));
    let successor = Purpose::Successor {
        ended: socket(1),
        renewed: true,
    };
    let attached = h.looked("vm", successor, root_socket(1));
    assert!(
        matches!(notices(&attached).as_slice(), [Notice::Moot { .. }]),
        "{attached:?}"
    );
    assert_eq!(h.fleet.unrecorded().count(), 0);
}

#[test]
fn a_new_qemu_makes_an_unwritten_verdict_moot() {
    // Told of by a creation...
    let mut h = Harness::watching();
    let vkey = decided_user(&mut h, "vm", 1);
    h.recorded(vkey, Err(RecordError::File(Errno::EROFS)));
    let moot = h.change(Change::Created(name("vm")));
    assert!(matches!(notices(&moot).as_slice(), [Notice::Moot { .. }]));
    assert_eq!(h.fleet.unrecorded().count(), 0);
    // ...or found at the retry, when events were missed.
    let mut h = Harness::watching();
    let vkey = decided_user(&mut h, "vm", 1);
    h.recorded(vkey, Err(RecordError::File(Errno::EROFS)));
    h.next_deadline();
    let moot = h.looked("vm", Purpose::Verdict(vkey), root_socket(2));
    assert!(matches!(notices(&moot).as_slice(), [Notice::Moot { .. }]));
    assert_eq!(h.quiet(), None);
}

// --- Succession of QEMUs under one name -----------------------------------

#[test]
fn a_qemu_restarted_before_the_hang_up_is_read_is_picked_up() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    // The new QEMU's socket is created (with the old inode number, as ext4
    // may do) before the old connection's end is read.
    assert_eq!(h.change(Change::Created(name("vm"))), vec![]);
    h.bytes(key, USER_OFF);
    let actions = h.hangup(key);
    let successor = Purpose::Successor {
        ended: socket(1),
        renewed: true,
    };
    assert!(actions.contains(&Action::Look {
        name: name("vm"),
        purpose: successor
    }));
    // Answered in order: the verdict's write before the successor's look.
    h.recorded(record_of(&actions).0, Ok(Outcome::Created));
    let connect = h.looked("vm", successor, root_socket(1));
    assert!(matches!(connect.as_slice(), [Action::Connect { .. }]));
    assert_eq!(h.fleet.instance(&name("vm")).map(|i| i.2), Some(socket(1)));
    // Its own creation was read already: a later one is news again, and
    // its hang-up looks for a renewed successor.
    let (key, ..) = h.fleet.instance(&name("vm")).expect("attached");
    h.connect(
        key,
        Ok(Connected {
            qemu: None,
            saved: None,
        }),
    );
    h.change(Change::Created(name("vm")));
    let actions = h.hangup(key);
    assert_eq!(
        actions.last(),
        Some(&Action::Look {
            name: name("vm"),
            purpose: Purpose::Successor {
                ended: socket(1),
                renewed: true
            }
        })
    );
}

#[test]
fn the_ended_qemus_own_socket_is_not_attached_again() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let actions = h.hangup(key);
    h.recorded(record_of(&actions).0, Ok(Outcome::WasAbsent));
    let Some(Action::Look { purpose, .. }) = actions.last() else {
        panic!("{actions:?}");
    };
    // A SIGKILLed QEMU's socket file stays: not a successor.
    assert_eq!(h.looked("vm", *purpose, root_socket(1)), vec![]);
    // Another inode there is, and its creation event is still to come.
    let connect = h.looked("vm", *purpose, root_socket(2));
    assert!(matches!(connect.as_slice(), [Action::Connect { .. }]));
    assert_eq!(h.change(Change::Created(name("vm"))), vec![]);
    let (key, ..) = h.fleet.instance(&name("vm")).expect("attached");
    let ok = Ok(Connected {
        qemu: None,
        saved: None,
    });
    h.connect(key, ok);
    let actions = h.hangup(key);
    // That creation was its own, not news: not renewed.
    assert!(actions.contains(&Action::Look {
        name: name("vm"),
        purpose: Purpose::Successor {
            ended: socket(2),
            renewed: false
        }
    }));
}

#[test]
fn one_instance_per_name_whatever_is_reported_twice() {
    let mut h = Harness::watching();
    h.change(Change::Appeared(name("vm")));
    h.change(Change::Appeared(name("vm")));
    let first = h.looked("vm", Purpose::Attach, root_socket(1));
    assert_eq!(first.len(), 1);
    assert_eq!(h.looked("vm", Purpose::Attach, root_socket(1)), vec![]);
    // Found again by a crawl: only a look whether it is still its socket.
    let recheck = Action::Look {
        name: name("vm"),
        purpose: Purpose::Recheck,
    };
    assert_eq!(h.change(Change::Appeared(name("vm"))), vec![recheck]);
    assert_eq!(h.looked("vm", Purpose::Recheck, root_socket(1)), vec![]);
    assert_eq!(h.fleet.instances(), 1);
}

#[test]
fn a_creation_after_the_deletion_of_its_socket_is_always_a_new_qemu() {
    // Attached as a successor: its own creation event is taken to be still
    // queued. But it was lost (inotify could not follow): the next creation
    // event, after its socket's deletion, is a new QEMU's, even on the
    // same inode number.
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let actions = h.hangup(key);
    h.recorded(record_of(&actions).0, Ok(Outcome::WasAbsent));
    let successor = Purpose::Successor {
        ended: socket(1),
        renewed: false,
    };
    h.looked("vm", successor, root_socket(2));
    let (key, ..) = h.fleet.instance(&name("vm")).expect("attached");
    h.connect(
        key,
        Ok(Connected {
            qemu: None,
            saved: None,
        }),
    );
    h.change(Change::Vanished(name("vm")));
    h.change(Change::Created(name("vm")));
    let actions = h.hangup(key);
    assert_eq!(
        actions.last(),
        Some(&Action::Look {
            name: name("vm"),
            purpose: Purpose::Successor {
                ended: socket(2),
                renewed: true
            }
        })
    );
}

#[test]
fn a_socket_a_crawl_finds_in_place_of_a_monitored_one_is_picked_up_at_the_hang_up() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    // While inotify could not follow, a new QEMU bound the name: no event
    // tells, a crawl finds it.
    h.change(Change::Appeared(name("vm")));
    h.looked("vm", Purpose::Recheck, root_socket(2));
    let actions = h.hangup(key);
    h.recorded(record_of(&actions).0, Ok(Outcome::WasAbsent));
    assert_eq!(
        actions.last(),
        Some(&Action::Look {
            name: name("vm"),
            purpose: Purpose::Successor {
                ended: socket(1),
                renewed: true
            }
        })
    );
}

// --- Following the control directory --------------------------------------

#[test]
fn a_stalled_watcher_is_crawled_again_backing_off_until_it_follows() {
    let mut h = Harness::new();
    h.fleet.handle_dir(h.now, Reach::Reached, Follow::Rescans);
    let mut waits = Vec::new();
    for _ in 0..6 {
        let before = h.now;
        assert_eq!(h.next_deadline(), vec![Action::Rescan]);
        waits.push(h.now - before);
        h.fleet.handle_dir(h.now, Reach::Reached, Follow::Rescans);
    }
    assert_eq!(
        waits,
        vec![ms(500), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000)]
    );
    h.fleet.handle_dir(h.now, Reach::Reached, Follow::Events);
    assert_eq!(h.quiet(), None);
    // The next stall starts from the short wait again.
    h.fleet.handle_dir(h.now, Reach::Reached, Follow::Rescans);
    assert_eq!(h.fleet.poll_timeout(), Some(h.now + ms(500)));
}

// --- What an operator sees -------------------------------------------------

#[test]
fn reports_are_made_when_something_changed_at_most_once_a_second() {
    let mut h = Harness::watching();
    // Every action of an input, counting the reports among them.
    fn reports(h: &mut Harness) -> usize {
        std::iter::from_fn(|| h.fleet.poll_action())
            .filter(|a| *a == Action::Report)
            .count()
    }
    let tick = |h: &mut Harness, by: Duration| {
        h.now += by;
        h.fleet.handle_timeout(h.now);
        reports(h)
    };
    // Idle: nothing to report, nothing to wake for.
    assert_eq!(tick(&mut h, ms(0)), 0);
    assert_eq!(h.fleet.poll_timeout(), None);
    // A change is reported at once, in the same drain.
    h.fleet.handle_change(h.now, Change::Created(name("vm")));
    assert_eq!(reports(&mut h), 1);
    h.fleet
        .handle_looked(h.now, name("vm"), Purpose::Attach, root_socket(1));
    assert_eq!(
        reports(&mut h),
        0,
        "a second change within the second waits"
    );
    assert_eq!(h.fleet.poll_timeout(), Some(h.now + ms(1000)));
    assert_eq!(tick(&mut h, ms(999)), 0);
    assert_eq!(tick(&mut h, ms(1)), 1);
    assert_eq!(h.fleet.poll_timeout(), None);
    let (key, ..) = h.fleet.instance(&name("vm")).expect("attached");
    h.now += Duration::from_secs(5);
    h.fleet.handle_connect(
        h.now,
        key,
        Ok(Connected {
            qemu: Some(QEMU),
            saved: None,
        }),
    );
    assert_eq!(reports(&mut h), 1);
    h.now += Duration::from_secs(5);
    h.negotiate(key);
    // A reset storm changes nothing an operator sees.
    h.now += Duration::from_secs(5);
    for _ in 0..100 {
        h.fleet
            .handle_bytes(h.now, key, b"{\"event\": \"RESET\"}\r\n");
        assert_eq!(reports(&mut h), 0);
    }
    assert_eq!(tick(&mut h, Duration::from_secs(5)), 0);
    assert_eq!(h.fleet.poll_timeout(), None);
}

#[test]
fn a_fleet_without_reports_never_wakes_for_one() {
    let mut h = Harness::new();
    h.fleet = Fleet::new(vec![ROOT]).without_reports();
    h.fleet.handle_dir(h.now, Reach::Reached, Follow::Events);
    let key = h.monitor("vm", 1);
    h.bytes(key, POWERDOWN);
    h.now += Duration::from_secs(5);
    h.fleet.handle_timeout(h.now);
    let all: Vec<Action> = std::iter::from_fn(|| h.fleet.poll_action()).collect();
    assert!(!all.contains(&Action::Report), "{all:?}");
    assert_eq!(h.fleet.poll_timeout(), None);
}

#[test]
fn guest_events_are_told_and_kept_in_the_view() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let told = |h: &mut Harness, bytes: &[u8]| -> Vec<Event> {
        h.fleet.handle_bytes(h.now, key, bytes);
        std::iter::from_fn(|| h.fleet.poll_action())
            .filter_map(|a| match a {
                Action::Notify(Notice::Guest { event, .. }) => Some(event),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        told(&mut h, b"{\"event\": \"STOP\"}\r\n"),
        vec![Event::Stop]
    );
    let view = h.fleet.view(&name("vm")).expect("tracked");
    assert_eq!(view.state, Some(crate::qmp::RunState::Paused));
    assert_eq!(told(&mut h, b"{\"event\": \"RESET\"}\r\n"), vec![]);
    assert_eq!(
        told(&mut h, b"{\"event\": \"RESUME\"}\r\n"),
        vec![Event::Resume]
    );
    assert_eq!(told(&mut h, POWERDOWN), vec![Event::Powerdown]);
    let view = h.fleet.view(&name("vm")).expect("tracked");
    assert_eq!(view.state, Some(crate::qmp::RunState::Running));
    let evidence = view.evidence.expect("connected");
    assert!(evidence.powerdown_pending());
    assert_eq!(evidence.resets(), 1);
    assert_eq!(view.phase, Phase::Monitoring);
}

#[test]
fn verdicts_are_kept_in_a_bounded_history_with_their_file() {
    let mut h = Harness::watching();
    let vkey = decided_user(&mut h, "vm", 1);
    let past = h.fleet.last_verdict(&name("vm")).expect("kept");
    assert_eq!(past.file, FileState::Writing);
    h.recorded(vkey, Err(RecordError::File(Errno::ENOSPC)));
    let past = h.fleet.last_verdict(&name("vm")).expect("kept");
    assert_eq!(
        past.file,
        FileState::Waiting(RecordError::File(Errno::ENOSPC))
    );
    h.next_deadline();
    h.looked("vm", Purpose::Verdict(vkey), Look::Absent);
    h.recorded(vkey, Ok(Outcome::Created));
    let past = h.fleet.last_verdict(&name("vm")).expect("kept");
    assert_eq!(past.file, FileState::Written(Outcome::Created));
    assert_eq!(past.verdict.why(), Why::GuestPoweredOff);
    assert_eq!(h.fleet.counters().verdicts.get("guest-poweroff"), Some(&1));
    assert_eq!(h.fleet.counters().write_errors, 1);
    for i in 0..HISTORY + 5 {
        let n = format!("vm{i}");
        let vkey = decided_user(&mut h, &n, 10 + i as u64);
        h.recorded(vkey, Ok(Outcome::Created));
    }
    assert_eq!(h.fleet.history().count(), HISTORY);
    assert_eq!(h.fleet.last_verdict(&name("vm")), None);
}

// --- Exit -----------------------------------------------------------------

#[test]
fn at_exit_unwritten_verdicts_are_named() {
    let mut h = Harness::watching();
    let vkey = decided_user(&mut h, "vm", 1);
    h.recorded(vkey, Err(RecordError::File(Errno::ENOSPC)));
    h.monitor("running", 2);
    h.fleet.handle_exit();
    let told = h.drain();
    assert!(matches!(
        notices(&told).as_slice(),
        [Notice::ExitingUnrecorded { name: n, .. }] if n == &name("vm")
    ));
}

#[test]
fn every_notice_renders_as_one_line() {
    let ctrl = std::path::Path::new("/run/kvmd");
    let hostile = InstanceName::new(OsStr::new("a\nb")).expect("a name");
    let verdict = Verdict::from(Why::GuestPoweredOff);
    for notice in [
        Notice::Decided {
            name: hostile.clone(),
            verdict,
            grounds: "g".into(),
            outcome: Outcome::Created,
            intent_by: Some("a\nb".into()),
        },
        Notice::PressRefused {
            name: hostile.clone(),
            reply: "r".into(),
        },
        Notice::Unrecorded {
            name: hostile.clone(),
            verdict,
            grounds: "g".into(),
            error: RecordError::DirAway,
            again: true,
        },
        Notice::NotMonitored {
            name: hostile.clone(),
            why: GiveUp::CannotConnect(Errno::ECONNREFUSED),
        },
        Notice::Moot {
            name: hostile,
            verdict,
        },
    ] {
        let line = notice.line(ctrl).to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("a\\nb: "), "{line}");
    }
    let vm = || name("vm");
    let off = Verdict::from(Why::GuestPoweredOff);
    for (notice, line) in [
        (
            Notice::NotMonitored {
                name: vm(),
                why: GiveUp::CannotConnect(Errno::ECONNREFUSED),
            },
            "vm: not monitored: cannot connect to its QMP socket: Connection refused (os error 111)",
        ),
        (
            Notice::Moot {
                name: vm(),
                verdict: off,
            },
            "vm: a new QEMU started before vm.shutdown could be created; that verdict \
             (user shutdown (guest-poweroff): the guest powered itself off) is moot now",
        ),
        (
            Notice::ExitingUnrecorded {
                name: vm(),
                verdict: off,
            },
            "vm: exiting with vm.shutdown still not created (decided user shutdown \
             (guest-poweroff): the guest powered itself off)",
        ),
        (
            Notice::Unrecorded {
                name: vm(),
                verdict: off,
                grounds: "g".into(),
                error: RecordError::DirAway,
                again: true,
            },
            "vm: decided user shutdown (guest-poweroff): the guest powered itself off [g], but \
             cannot create vm.shutdown: /run/kvmd is away; trying again until it can",
        ),
        (
            Notice::Unrecordable {
                name: vm(),
                verdict: Verdict::from(Why::NoShutdown),
                error: RecordError::File(Errno::ENOTEMPTY),
            },
            "vm: cannot remove vm.shutdown: ENOTEMPTY: Directory not empty; not retried: that \
             needs an operator",
        ),
        (
            Notice::CannotLook {
                name: vm(),
                errno: Errno::EACCES,
            },
            "vm: cannot look at its socket: EACCES: Permission denied",
        ),
        (
            Notice::StillUnrecorded {
                name: vm(),
                verdict: off,
                error: RecordError::DirFailed(Errno::EMFILE),
            },
            "vm: still cannot create vm.shutdown: cannot open /run/kvmd: EMFILE: Too many open files",
        ),
    ] {
        assert_eq!(notice.line(ctrl).to_string(), line);
    }
}

mod intents;
