//! Intents (`kvmd expect-stop`, `kvmd powerdown-all`) in the fleet alone:
//! given, claimed, expired, cancelled, refused, carried over a restart,
//! and never inherited by a new QEMU of the same name.

use super::*;
use crate::decision::Why;

const PANICKED: &[u8] = b"{\"event\": \"GUEST_PANICKED\", \"data\": {\"action\": \"run\"}}\r\n";
const CRASHLOADED: &[u8] =
    b"{\"event\": \"GUEST_CRASHLOADED\", \"data\": {\"action\": \"run\"}}\r\n";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn expect(h: &mut Harness, n: &str, window: Duration) -> Result<Vec<Action>, IntentRefused> {
    let r = h
        .fleet
        .handle_expect_stop(h.now, &name(n), window, "test".to_owned());
    r.map(|()| h.drain())
}

fn saved_intent(actions: &[Action]) -> Option<&Intent> {
    actions.iter().find_map(|a| match a {
        Action::SaveIntent { intent, .. } => Some(intent),
        _ => None,
    })
}

fn removes_intent(actions: &[Action], n: &str) -> bool {
    actions
        .iter()
        .any(|a| *a == Action::RemoveIntent { name: name(n) })
}

fn journaled_verdict(actions: &[Action]) -> (Verdict, Option<IntentNote>) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Journal(JournalRecord {
                what: Recorded::Verdict {
                    verdict, intent, ..
                },
                ..
            }) => Some((*verdict, intent.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no journal record in {actions:?}"))
}

#[test]
fn an_intent_makes_a_guest_agent_shutdown_the_hosts() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let given = expect(&mut h, "vm", secs(120)).expect("given");
    let intent = saved_intent(&given).expect("kept in the state directory");
    assert_eq!(
        (intent.state, intent.qemu, intent.socket),
        (IntentState::Waiting, Some(QEMU), socket(1))
    );
    assert_eq!(intent.until, h.now + secs(120));
    assert!(h.fleet.timer_is_set(Timer::Intent(key)));
    // The guest agent's shutdown: exactly what the user's own looks like.
    let seen = h.bytes(key, USER_OFF);
    let claimed = saved_intent(&seen).expect("the claim is kept");
    assert_eq!(claimed.state, IntentState::Claimed);
    assert!(
        !h.fleet.timer_is_set(Timer::Intent(key)),
        "a claim never expires"
    );
    let ended = h.hangup(key);
    let (verdict, intent) = journaled_verdict(&ended);
    assert_eq!(verdict.why(), Why::HostIntent);
    assert_eq!(intent.map(|i| i.by), Some("test".to_owned()));
    // Journaled before the shutdown file is touched.
    let journal = ended.iter().position(|a| matches!(a, Action::Journal(_)));
    let record = ended
        .iter()
        .position(|a| matches!(a, Action::Record { .. }));
    assert!(journal < record, "{ended:?}");
    assert_eq!(record_of(&ended).1.why(), Why::HostIntent);
    assert!(!record_of(&ended).1.is_user_shutdown());
    assert!(removes_intent(&ended, "vm"));
    let last = h.fleet.last_verdict(&name("vm")).expect("kept for status");
    assert_eq!(last.intent_by.as_deref(), Some("test"));
}

#[test]
fn an_unclaimed_intent_expires_and_qmp_decides_again() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let given_at = h.now;
    expect(&mut h, "vm", secs(2)).expect("given");
    assert_eq!(h.quiet(), Some(given_at + secs(2)));
    let expired = h.advance(given_at + secs(2) - h.now);
    assert!(removes_intent(&expired, "vm"), "{expired:?}");
    assert!(matches!(
        notices(&expired).as_slice(),
        [Notice::IntentExpired { .. }]
    ));
    assert_eq!(h.quiet(), None, "nothing waits any more");
    h.bytes(key, USER_OFF);
    let ended = h.hangup(key);
    assert_eq!(record_of(&ended).1.why(), Why::GuestPoweredOff);
}

#[test]
fn intents_are_refused_for_what_they_cannot_cover() {
    let mut h = Harness::watching();
    let refused = |h: &mut Harness, n: &str, w| expect(h, n, w).expect_err("refused");
    assert_eq!(
        refused(&mut h, "nobody", secs(60)),
        IntentRefused::NotMonitored
    );
    let key = h.attach("vm", 1);
    assert_eq!(
        refused(&mut h, "vm", secs(60)),
        IntentRefused::NotYetMonitoring
    );
    let ok = Ok(Connected {
        qemu: Some(QEMU),
        saved: None,
    });
    h.connect(key, ok);
    h.negotiate(key);
    assert_eq!(
        refused(&mut h, "vm", secs(0)),
        IntentRefused::BadWindow(secs(0))
    );
    let ten_days = secs(10 * 86_400);
    assert_eq!(
        refused(&mut h, "vm", ten_days),
        IntentRefused::BadWindow(ten_days)
    );
    for by in [
        "",
        "a\nb",
        &"x".repeat(MAX_BY + 1),
        "ops\u{202E}nimda",
        "a\u{2028}b",
        "zero\u{200B}width",
    ] {
        let r = h
            .fleet
            .handle_expect_stop(h.now, &name("vm"), secs(60), by.to_owned());
        let expected = if by.is_empty() {
            Ok(())
        } else {
            Err(IntentRefused::BadBy)
        };
        assert_eq!(r, expected, "{by:?}");
    }
    // Letters of any script are text.
    let r = h
        .fleet
        .handle_expect_stop(h.now, &name("vm"), secs(60), "Jörg Ødegård".to_owned());
    assert_eq!(r, Ok(()));
    h.drain();
    // Cancelling: a waiting intent goes; nothing to cancel is said.
    h.fleet
        .handle_cancel_intent(h.now, &name("vm"))
        .expect("cancelled");
    assert!(removes_intent(&h.drain(), "vm"));
    assert!(!h.fleet.timer_is_set(Timer::Intent(key)));
    assert_eq!(
        h.fleet.handle_cancel_intent(h.now, &name("vm")),
        Err(IntentRefused::NoIntent)
    );
    // Once the guest shut down, it is too late either way.
    expect(&mut h, "vm", secs(60)).expect("given again");
    h.bytes(key, USER_OFF);
    assert_eq!(
        h.fleet.handle_cancel_intent(h.now, &name("vm")),
        Err(IntentRefused::AlreadyClaimed)
    );
    h.drain();
    let mut other = Harness::watching();
    let key = other.monitor("vm", 1);
    other.bytes(key, USER_OFF);
    assert_eq!(
        refused(&mut other, "vm", secs(60)),
        IntentRefused::AlreadyShutDown
    );
    assert!(
        refused(&mut other, "vm", secs(60))
            .to_string()
            .contains("already shut down")
    );
}

#[test]
fn a_new_qemu_of_the_same_name_inherits_nothing() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    expect(&mut h, "vm", secs(120)).expect("given");
    // Killed: no SHUTDOWN, nothing claimed.
    let ended = h.hangup(key);
    assert_eq!(record_of(&ended).1.why(), Why::NoShutdown);
    assert!(removes_intent(&ended, "vm"));
    assert!(!h.fleet.timer_is_set(Timer::Intent(key)));
    let (vkey, _) = record_of(&ended);
    h.recorded(vkey, Ok(Outcome::WasAbsent));
    // The successor, on another inode.
    h.looked(
        "vm",
        Purpose::Successor {
            ended: socket(1),
            renewed: false,
        },
        Look::Absent,
    );
    let key = h.monitor("vm", 2);
    assert!(h.fleet.view(&name("vm")).expect("tracked").intent.is_none());
    h.bytes(key, USER_OFF);
    let ended = h.hangup(key);
    assert_eq!(record_of(&ended).1.why(), Why::GuestPoweredOff);
}

#[test]
fn intents_survive_a_restart_for_the_same_qemu_only() {
    let mut before = Harness::watching();
    before.monitor("vm", 1);
    let given = expect(&mut before, "vm", secs(60)).expect("given");
    let kept = saved_intent(&given).expect("kept").clone();

    // A restarted kvmd, connected again to the same QEMU.
    let mut after = Harness::watching();
    after.now = before.now + secs(5);
    let key = after.monitor("vm", 1);
    after
        .fleet
        .handle_intent_files(after.now, vec![(name("vm"), kept.clone())]);
    assert_eq!(after.drain(), vec![]);
    assert!(after.fleet.timer_is_set(Timer::Intent(key)));
    after.bytes(key, USER_OFF);
    assert_eq!(record_of(&after.hangup(key)).1.why(), Why::HostIntent);

    // Another QEMU behind the same socket, or an expired one: dropped.
    let mut other = Harness::watching();
    let key = other.attach("vm", 1);
    let someone_else = Qemu { pid: 7, start: 1 };
    other.connect(
        key,
        Ok(Connected {
            qemu: Some(someone_else),
            saved: None,
        }),
    );
    other.negotiate(key);
    other
        .fleet
        .handle_intent_files(other.now, vec![(name("vm"), kept.clone())]);
    assert!(removes_intent(&other.drain(), "vm"));
    let mut late = Harness::watching();
    late.now = kept.until;
    late.monitor("vm", 1);
    late.fleet
        .handle_intent_files(late.now, vec![(name("vm"), kept.clone())]);
    assert!(removes_intent(&late.drain(), "vm"));
    // For a name nobody monitors: dropped too.
    let mut gone = Harness::watching();
    gone.fleet
        .handle_intent_files(gone.now, vec![(name("vm"), kept.clone())]);
    assert!(removes_intent(&gone.drain(), "vm"));
}

#[test]
fn a_shutdown_read_before_a_restart_claims_the_kept_intent() {
    let mut before = Harness::watching();
    let key = before.monitor("vm", 1);
    let given = expect(&mut before, "vm", secs(60)).expect("given");
    let kept = saved_intent(&given).expect("kept").clone();
    // The SHUTDOWN was read and kept with the evidence, but the claim's
    // own write was lost (a kill between the two).
    before.bytes(key, USER_OFF);
    let carried = match before.fleet.view(&name("vm")).and_then(|v| v.evidence) {
        Some(evidence) => evidence.carried(),
        None => panic!("connected"),
    };
    let mut after = Harness::watching();
    let key = after.attach("vm", 1);
    let saved = Saved {
        socket: socket(1),
        qemu: QEMU,
        carried,
    };
    let (kept_again, saved_again) = (kept.clone(), saved);
    after.connect(
        key,
        Ok(Connected {
            qemu: Some(QEMU),
            saved: Some(saved),
        }),
    );
    after
        .fleet
        .handle_intent_files(after.now, vec![(name("vm"), kept)]);
    let claimed = after.drain();
    assert_eq!(
        saved_intent(&claimed).map(|i| i.state),
        Some(IntentState::Claimed)
    );
    assert_eq!(record_of(&after.hangup(key)).1.why(), Why::HostIntent);

    // The same, with the intent handed back while the connect was still
    // to be made (the first try refused: QEMU busy): the connect's
    // restored SHUTDOWN claims it.
    let mut slow = Harness::watching();
    let key = slow.attach("vm", 1);
    slow.fleet
        .handle_intent_files(slow.now, vec![(name("vm"), kept_again)]);
    assert_eq!(slow.drain(), vec![]);
    slow.connect(key, Err(ConnectError::Connect(Errno::EAGAIN)));
    let retry = slow.next_deadline();
    assert!(
        retry.iter().any(|a| matches!(a, Action::Connect { .. })),
        "{retry:?}"
    );
    let connected = slow.connect(
        key,
        Ok(Connected {
            qemu: Some(QEMU),
            saved: Some(saved_again),
        }),
    );
    assert_eq!(
        saved_intent(&connected).map(|i| i.state),
        Some(IntentState::Claimed),
        "{connected:?}"
    );
    slow.negotiate(key);
    assert_eq!(record_of(&slow.hangup(key)).1.why(), Why::HostIntent);
}

#[test]
fn powerdown_all_presses_every_monitored_guest_until_it_obeys() {
    let mut h = Harness::watching();
    let a = h.monitor("a", 1);
    let b = h.monitor("b", 2);
    h.attach("c", 3);
    let mut pressed = h
        .fleet
        .handle_powerdown_all(h.now, secs(60), "node-shutdown");
    pressed.sort_by(|x, y| x.name.cmp(&y.name));
    let results: Vec<_> = pressed
        .iter()
        .map(|p| (p.name.to_string(), p.result.clone()))
        .collect();
    assert_eq!(
        results,
        vec![
            ("a".to_owned(), Ok(())),
            ("b".to_owned(), Ok(())),
            ("c".to_owned(), Err(IntentRefused::NotYetMonitoring)),
        ]
    );
    let actions = h.drain();
    for key in [a, b] {
        assert!(
            actions.contains(&transmit(key, Command::SystemPowerdown)),
            "{actions:?}"
        );
    }
    // QEMU's answer to the press is expected, not a malformed message.
    assert_eq!(h.bytes(a, RETURN), vec![]);
    assert_eq!(h.bytes(b, RETURN), vec![]);
    // The guests had not enabled their button yet: pressed again.
    let again = h.advance(crate::fleet::intents::PRESS_AGAIN);
    assert!(
        again.contains(&transmit(a, Command::SystemPowerdown)),
        "{again:?}"
    );
    h.bytes(a, RETURN);
    h.bytes(b, RETURN);
    // a obeys: no more presses for it.
    h.bytes(a, POWERDOWN);
    h.bytes(a, USER_OFF);
    let again = h.advance(crate::fleet::intents::PRESS_AGAIN);
    assert!(!again.contains(&transmit(a, Command::SystemPowerdown)));
    assert!(again.contains(&transmit(b, Command::SystemPowerdown)));
    let ended = h.hangup(a);
    assert_eq!(record_of(&ended).1.why(), Why::HostIntent);
    assert_eq!(
        journaled_verdict(&ended).1.map(|i| i.by),
        Some("node-shutdown".to_owned())
    );
    // A QEMU that never answers is not pressed past the bound: b has had
    // one press answered since its last RETURN (the one above), and no
    // more than MAX_ASKED go out unanswered however long it waits.
    let mut unanswered = 1;
    for _ in 0..10 {
        let actions = h.advance(crate::fleet::intents::PRESS_AGAIN);
        unanswered += actions
            .iter()
            .filter(|a| **a == transmit(b, Command::SystemPowerdown))
            .count();
    }
    assert_eq!(unanswered, crate::qmp::MAX_ASKED);
    assert_eq!(h.fleet.counters().malformed, 0);
}

#[test]
fn an_abandoned_powerdown_all_stops_pressing_but_keeps_its_intents() {
    let mut h = Harness::watching();
    let a = h.monitor("a", 1);
    let b = h.monitor("b", 2);
    let c = h.monitor("c", 3);
    let pressed = h
        .fleet
        .handle_powerdown_all(h.now, secs(60), "node-shutdown");
    assert!(pressed.iter().all(|p| p.result.is_ok()), "{pressed:?}");
    h.drain();
    for key in [a, b, c] {
        h.bytes(key, RETURN);
    }
    // c is handed over to an expect-stop: it presses nothing anyway.
    expect(&mut h, "c", secs(60)).expect("given");
    // The client went away before a and b stopped; a name that is not
    // monitored (gone meanwhile) is passed over.
    h.fleet
        .handle_orders_abandoned(h.now, &[name("a"), name("b"), name("c"), name("gone")]);
    let stopped = h.drain();
    for n in ["a", "b"] {
        let saved = stopped.iter().find_map(|act| match act {
            Action::SaveIntent { name: s, intent } if *s == name(n) => Some(intent),
            _ => None,
        });
        let saved = saved.unwrap_or_else(|| panic!("{n}: no intent saved in {stopped:?}"));
        // Kept, so that a restarted kvmd does not press again either.
        assert_eq!(
            (saved.state, saved.presses),
            (IntentState::Waiting, Presses::None)
        );
        assert!(
            notices(&stopped).iter().any(
                |no| matches!(no, Notice::PressesStopped { name: x, by } if *x == name(n) && by == "node-shutdown")
            ),
            "{stopped:?}"
        );
    }
    assert_eq!(
        notices(&stopped).len(),
        2,
        "c and gone are left alone: {stopped:?}"
    );
    // No press again, however long the windows last.
    for _ in 0..4 {
        let later = h.advance(crate::fleet::intents::PRESS_AGAIN);
        assert!(
            !later
                .iter()
                .any(|act| matches!(act, Action::Transmit { .. })),
            "{later:?}"
        );
    }
    // The intents stand: a guest obeying a press it had already been
    // given is the host's doing.
    h.bytes(b, USER_OFF);
    assert_eq!(record_of(&h.hangup(b)).1.why(), Why::HostIntent);
    let ended = h.advance(secs(60));
    assert!(
        notices(&ended)
            .iter()
            .any(|no| matches!(no, Notice::IntentExpired { name: x, .. } if *x == name("a"))),
        "{ended:?}"
    );
    assert!(
        !ended
            .iter()
            .any(|act| matches!(act, Action::Transmit { .. }))
    );
}

#[test]
fn guest_crashes_are_counted_and_journaled_while_the_guest_lives_on() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    for event in [PANICKED, CRASHLOADED] {
        let actions = h.bytes(key, event);
        assert!(
            actions.iter().any(|a| matches!(
                a,
                Action::Journal(JournalRecord {
                    what: Recorded::Crash(_),
                    qemu: Some(QEMU),
                    ..
                })
            )),
            "{actions:?}"
        );
    }
    let counters = h.fleet.counters();
    assert_eq!((counters.guest_panics, counters.crash_loads), (1, 1));
    let view = h.fleet.view(&name("vm")).expect("tracked");
    let evidence = view.evidence.expect("connected");
    assert_eq!((evidence.panics(), evidence.crash_loads()), (1, 1));
}

#[test]
fn an_intent_is_claimed_within_its_window_and_expires_at_its_end() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    expect(&mut h, "vm", secs(1)).expect("given");
    // Within the window: the guest agent's SHUTDOWN claims it.
    h.now += ms(999);
    h.bytes(key, USER_OFF);
    let (_, verdict) = record_of(&h.hangup(key));
    assert_eq!(verdict.why(), Why::HostIntent);

    // At the window's end, read before the expiry timer ran (the daemon
    // reads sockets first): the SHUTDOWN is not the announced one.
    let key = h.monitor("vm2", 2);
    expect(&mut h, "vm2", secs(1)).expect("given");
    h.now += secs(1);
    let read = h.bytes(key, USER_OFF);
    assert!(removes_intent(&read, "vm2"), "{read:?}");
    assert!(
        notices(&read)
            .iter()
            .any(|n| matches!(n, Notice::IntentExpired { name: n, .. } if *n == name("vm2"))),
        "{read:?}"
    );
    let (_, verdict) = record_of(&h.hangup(key));
    assert_eq!(verdict.why(), Why::GuestPoweredOff);
}

#[test]
fn a_refused_press_is_told_once_and_is_no_malformed_message() {
    let mut h = Harness::watching();
    let key = h.monitor("vm", 1);
    let pressed = h
        .fleet
        .handle_powerdown_all(h.now, secs(60), "node-shutdown");
    assert_eq!(pressed.len(), 1);
    h.drain();
    const REFUSED: &[u8] =
        b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no power button\"}}\r\n";
    let told = h.bytes(key, REFUSED);
    assert!(
        matches!(notices(&told).as_slice(), [Notice::PressRefused { reply, .. }] if reply.contains("no power button")),
        "{told:?}"
    );
    // Pressed again, refused again: not told again.
    let again = h.advance(crate::fleet::intents::PRESS_AGAIN);
    assert!(again.contains(&transmit(key, Command::SystemPowerdown)));
    assert_eq!(notices(&h.bytes(key, REFUSED)), Vec::<&Notice>::new());
    assert_eq!(h.fleet.counters().malformed, 0);
    // Nor is it an unusable message in the verdict's grounds.
    h.bytes(key, QUIT);
    let ended = h.hangup(key);
    let (vkey, _) = record_of(&ended);
    let told = h.recorded(vkey, Ok(Outcome::Removed));
    assert!(
        matches!(notices(&told).as_slice(), [Notice::Decided { grounds, .. }] if !grounds.contains("unusable")),
        "{told:?}"
    );
}

#[test]
fn a_kept_intent_waits_for_a_name_nobody_could_look_at_yet() {
    let mut before = Harness::watching();
    before.monitor("vm", 1);
    before.monitor("gone", 2);
    let vm = saved_intent(&expect(&mut before, "vm", secs(60)).expect("given"))
        .expect("kept")
        .clone();
    let gone = saved_intent(&expect(&mut before, "gone", secs(60)).expect("given"))
        .expect("kept")
        .clone();

    // The restarted kvmd could not look at either entry (an I/O error):
    // what stands there is unknown, and the intents wait.
    let mut after = Harness::watching();
    after.now = before.now + secs(5);
    for n in ["vm", "gone"] {
        after.change(Change::Created(name(n)));
        after.looked(n, Purpose::Attach, Look::Failed(Errno::EIO));
    }
    after.drain();
    after
        .fleet
        .handle_intent_files(after.now, vec![(name("vm"), vm), (name("gone"), gone)]);
    assert_eq!(after.drain(), vec![], "nothing removed while unknown");

    // Looked at again: vm's socket is there and takes its intent up; the
    // other is gone, and its intent with it.
    after.change(Change::Appeared(name("vm")));
    let connect = after.looked("vm", Purpose::Attach, root_socket(1));
    let key = match connect.as_slice() {
        [Action::Connect { key, .. }] => *key,
        other => panic!("expected a connect, got {other:?}"),
    };
    assert!(after.fleet.timer_is_set(Timer::Intent(key)));
    let ok = Ok(Connected {
        qemu: Some(QEMU),
        saved: None,
    });
    after.connect(key, ok);
    after.negotiate(key);
    let dropped = after.looked("gone", Purpose::Attach, Look::Absent);
    assert!(removes_intent(&dropped, "gone"), "{dropped:?}");
    after.bytes(key, USER_OFF);
    assert_eq!(record_of(&after.hangup(key)).1.why(), Why::HostIntent);
}

#[test]
fn a_kept_intent_for_a_deferred_name_is_settled_by_the_look_that_attaches_it() {
    let mut before = Harness::watching();
    before.monitor("vm", 1);
    let kept = saved_intent(&expect(&mut before, "vm", secs(60)).expect("given"))
        .expect("kept")
        .clone();
    // No descriptor to look at vm with at start-up: deferred.
    let mut after = Harness::watching();
    after.now = before.now + secs(5);
    after.change(Change::Created(name("vm")));
    after.looked("vm", Purpose::Attach, Look::DirFailed(Errno::EMFILE));
    after.drain();
    after
        .fleet
        .handle_intent_files(after.now, vec![(name("vm"), kept)]);
    assert_eq!(after.drain(), vec![]);
    // An event attaches it before the deferred look is made again: its
    // intent is taken up at once, not left waiting behind the deferral.
    after.change(Change::Appeared(name("vm")));
    let connect = after.looked("vm", Purpose::Attach, root_socket(1));
    let key = match connect.as_slice() {
        [Action::Connect { key, .. }] => *key,
        other => panic!("expected a connect, got {other:?}"),
    };
    assert!(
        after
            .fleet
            .view(&name("vm"))
            .expect("tracked")
            .intent
            .is_some()
    );
    assert!(after.fleet.timer_is_set(Timer::Intent(key)));
}

#[test]
fn a_kept_intent_whose_name_is_never_looked_at_again_ends_with_its_window() {
    let mut before = Harness::watching();
    before.monitor("vm", 1);
    let kept = saved_intent(&expect(&mut before, "vm", secs(60)).expect("given"))
        .expect("kept")
        .clone();
    // The directory away at start-up, back later without vm.
    let mut after = Harness::new();
    after.now = before.now + secs(5);
    after
        .fleet
        .handle_intent_files(after.now, vec![(name("vm"), kept.clone())]);
    assert_eq!(after.drain(), vec![], "kept while the directory is away");
    after
        .fleet
        .handle_dir(after.now, Reach::Reached, Follow::Events);
    assert!(!removes_intent(&after.drain(), "vm"));
    // Its window ends: removed, and nothing waits any more.
    let due = after.next_deadline();
    assert_eq!(after.now, kept.until);
    assert!(removes_intent(&due, "vm"), "{due:?}");
    assert_eq!(after.quiet(), None);
}

#[test]
fn a_kept_intent_that_ends_while_connecting_is_claimed_by_the_shutdown_read_before() {
    let mut before = Harness::watching();
    let key = before.monitor("vm", 1);
    let kept = saved_intent(&expect(&mut before, "vm", secs(60)).expect("given"))
        .expect("kept")
        .clone();
    before.bytes(key, USER_OFF);
    let carried = match before.fleet.view(&name("vm")).and_then(|v| v.evidence) {
        Some(evidence) => evidence.carried(),
        None => panic!("connected"),
    };
    // Restarted just before the window ends; QEMU busy, the first connect
    // refused, and the window over before the retry.
    let restarted = |kept: &Intent| {
        let mut after = Harness::watching();
        after.now = kept.until - ms(2);
        let key = after.attach("vm", 1);
        after
            .fleet
            .handle_intent_files(after.now, vec![(name("vm"), kept.clone())]);
        assert_eq!(after.drain(), vec![]);
        after.connect(key, Err(ConnectError::Connect(Errno::EAGAIN)));
        let mut retried = Vec::new();
        while !retried.iter().any(|a| matches!(a, Action::Connect { .. })) {
            retried.extend(after.next_deadline());
        }
        assert!(after.now > kept.until, "the window ended meanwhile");
        assert!(!removes_intent(&retried, "vm"), "{retried:?}");
        (after, key)
    };
    let (mut after, key) = restarted(&kept);
    let connected = after.connect(
        key,
        Ok(Connected {
            qemu: Some(QEMU),
            saved: Some(Saved {
                socket: socket(1),
                qemu: QEMU,
                carried,
            }),
        }),
    );
    assert_eq!(
        saved_intent(&connected).map(|i| i.state),
        Some(IntentState::Claimed),
        "{connected:?}"
    );
    assert_eq!(record_of(&after.hangup(key)).1.why(), Why::HostIntent);

    // Without a SHUTDOWN read before, the connect ends the intent.
    let (mut plain, key) = restarted(&kept);
    let connected = plain.connect(
        key,
        Ok(Connected {
            qemu: Some(QEMU),
            saved: None,
        }),
    );
    assert!(removes_intent(&connected, "vm"), "{connected:?}");
    assert!(
        plain
            .fleet
            .view(&name("vm"))
            .expect("tracked")
            .intent
            .is_none()
    );
}
