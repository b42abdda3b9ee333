//! The real daemon against hand-driven QMP peers, for what QEMU cannot be
//! made to do on demand: a socket bound long before it listens, a peer
//! that hangs up before the greeting, entries that are not sockets.

mod common;

use std::fs;
use std::os::unix::net::UnixListener;

use common::bound::bind_only;
use common::peer::{Peer, RESET, USER_OFF, listen as bind_listener, serve, transcript};
use common::{Daemon, World, assert_user_shutdown};
use nix::sys::socket::{Backlog, listen};

#[test]
fn a_socket_that_listens_late_is_retried_until_it_does() {
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let fd = bind_only(&world.ctrl.join("late.kvmd"));
    // The daemon saw the socket and was refused, more than once.
    daemon.wait_log(" late: connect: Connection refused", 2);
    listen(&fd, Backlog::new(1).expect("backlog")).expect("listen");
    let listener = UnixListener::from(fd);
    serve(&listener, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "late", true);
}

#[test]
fn a_peer_that_hangs_up_before_negotiation_is_not_user() {
    let world = World::new();
    world.plant_stale("abrupt");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let listener = bind_listener(&world.ctrl.join("abrupt.kvmd"));
    let (stream, _) = listener.accept().expect("accept");
    drop(stream);
    assert_user_shutdown(&world, &daemon, "abrupt", false);
    let line = daemon.wait_decision("abrupt");
    assert!(line.contains("before QMP negotiation"), "{line}");
}

#[test]
fn a_non_socket_is_ignored_and_logged_once() {
    let world = World::new();
    fs::write(world.ctrl.join("file.kvmd"), b"").expect("write");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    daemon.wait_log(" file: file.kvmd is not a socket; ignored", 1);

    // Move the directory away and back: the recap finds the file again.
    let away = world.tmp.path().join("away");
    fs::rename(&world.ctrl, &away).expect("mv away");
    daemon.wait_log(" waiting for ", 1);
    fs::rename(&away, &world.ctrl).expect("mv back");
    daemon.wait_log(" watching ", 2);
    // A real instance after the recap proves the recap was handled.
    let listener = bind_listener(&world.ctrl.join("real.kvmd"));
    serve(&listener, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "real", true);
    let warnings = daemon.log_text().matches("is not a socket").count();
    assert_eq!(warnings, 1, "{}", daemon.log_text());
    // It was never connected to.
    assert!(!daemon.log_text().contains("file: connected"));

    // The same name as a socket later is monitored.
    fs::remove_file(world.ctrl.join("file.kvmd")).expect("rm");
    let listener = bind_listener(&world.ctrl.join("file.kvmd"));
    serve(&listener, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "file", true);
}

#[test]
fn a_stale_socket_left_by_sigkill_is_not_a_live_instance() {
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    // Bound, never listening, like the file a killed QEMU leaves behind.
    let _fd = bind_only(&world.ctrl.join("dead.kvmd"));
    daemon.wait_log(" dead: connect: Connection refused", 1);
    // Meanwhile other instances are served as usual.
    let listener = bind_listener(&world.ctrl.join("alive.kvmd"));
    serve(&listener, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "alive", true);
}

/// A peer sending faster than the daemon reads: every event is counted,
/// the connection is served in turns (READS_PER_TURN) and others go on
/// being served. Whether a flood without turns would starve the others is
/// a race of CPU speeds that no test here can force; that the turns are
/// taken is what this asserts, through the log line saying so.
#[test]
fn a_flooding_peer_is_served_in_turns_and_loses_no_event() {
    let world = World::new();
    // No -d: the log would get every flooded line.
    let daemon = Daemon::start_with(&world.ctrl, world.tmp.path(), &[]);
    let flood = bind_listener(&world.ctrl.join("flood.kvmd"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peer = Peer::accept(&flood);
            peer.negotiate();
            let chunk = transcript(&[RESET]).repeat(10_000);
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peer.send(&chunk);
                sent += 10_000;
            }
            peer.send_line(USER_OFF);
            sent
        })
    };
    daemon.wait_monitoring("flood");
    // Another instance is served to its decision while the flood goes on.
    let listener = bind_listener(&world.ctrl.join("quiet.kvmd"));
    serve(&listener, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "quiet", true);
    assert!(!flooding.is_finished(), "the flood ended before the check");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flooding.join().expect("flood thread");
    assert_user_shutdown(&world, &daemon, "flood", true);
    daemon.wait_log(" flood: sends faster than one turn reads", 1);
    let line = daemon.wait_decision("flood");
    assert!(
        line.contains(&format!(" RESET={sent}")),
        "sent {sent}: {line}"
    );
}

#[test]
fn stale_state_files_are_ignored_and_removed() {
    use std::os::unix::fs::MetadataExt;
    let world = World::new();
    let state = world.tmp.path().join("kvmd-state");
    fs::create_dir(&state).expect("mkdir");
    let listener = bind_listener(&world.ctrl.join("vm.kvmd"));
    // A power button pressed for this very socket file (file systems give a
    // re-bound socket the same inode) but another QEMU process; and one
    // for an instance that is gone altogether.
    let socket = fs::metadata(world.ctrl.join("vm.kvmd")).expect("stat");
    let line = |dev: u64, ino: u64| {
        format!(
            "kvmd-state 2 dev={dev} ino={ino} pid=1 start=1 powerdown=1 paused=0 panicked=0 shutdown=-\n"
        )
    };
    fs::write(state.join("vm.state"), line(socket.dev(), socket.ino())).expect("write");
    fs::write(state.join("gone.state"), line(1, 1)).expect("write");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    serve(&listener, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "vm", true);
    assert!(!daemon.log_text().contains("restored"));
    assert!(!state.join("vm.state").exists());
    assert!(!state.join("gone.state").exists());
}

#[test]
fn out_of_descriptors_it_serves_what_it_can_and_picks_up_the_rest() {
    // 32 descriptors: about 20 are left for sockets once the daemon's own
    // (stdio, log, pid file, epoll, inotify, signalfd...) are open.
    const INSTANCES: usize = 40;
    let world = World::new();
    let mut listeners = Vec::new();
    for i in 0..INSTANCES {
        let path = world.ctrl.join(format!("vm{i}.kvmd"));
        listeners.push(bind_listener(&path));
    }
    let daemon = Daemon::start_wrapped(
        &world.ctrl,
        world.tmp.path(),
        &["prlimit", "--nofile=32"],
        &[],
    );
    // Every peer is served on its own thread; each powers off as a user
    // once told to, then hangs up, freeing a descriptor in the daemon.
    let (go, told) = std::sync::mpsc::channel::<()>();
    let told = std::sync::Arc::new(std::sync::Mutex::new(told));
    let peers: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let told = told.clone();
            std::thread::spawn(move || {
                let mut peer = Peer::accept(&listener);
                peer.negotiate();
                told.lock().expect("lock").recv().expect("go");
                peer.send_line(USER_OFF);
            })
        })
        .collect();
    daemon.wait_log("out of file descriptors", 1);
    let served = || daemon.log_text().matches(": monitoring").count();
    common::wait_until("some instances monitored", || {
        (served() >= 10).then_some(())
    });
    assert!(
        served() < INSTANCES,
        "all {INSTANCES} fit in 32 descriptors?"
    );
    // Instances end one by one; the waiting ones get their descriptors.
    for _ in 0..INSTANCES {
        go.send(()).expect("go");
    }
    for i in 0..INSTANCES {
        assert_user_shutdown(&world, &daemon, &format!("vm{i}"), true);
    }
    for peer in peers {
        peer.join().expect("peer");
    }
    daemon.wait_log("file descriptors free again", 1);
    let log = daemon.log_text();
    assert_eq!(log.matches("out of file descriptors").count(), 1, "{log}");
    assert!(!log.contains("not monitored"), "{log}");
}

#[test]
fn sockets_of_untrusted_owners_are_ignored_unless_allowed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to give a socket to another user");
        return;
    }
    let world = World::new();
    world.plant_stale("theirs");
    // A socket someone else owns, as if a guest's user could plant one.
    let theirs = bind_listener(&world.ctrl.join("theirs.kvmd"));
    std::os::unix::fs::chown(world.ctrl.join("theirs.kvmd"), Some(65534), Some(65534))
        .expect("chown");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    daemon.wait_log(" theirs: theirs.kvmd is owned by uid 65534", 1);
    // Root's own instance beside it is served as usual...
    let ours = bind_listener(&world.ctrl.join("ours.kvmd"));
    serve(&ours, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "ours", true);
    // ...while the other was never connected to, and its stale shutdown
    // file is untouched (kvmd decides nothing for it).
    theirs.set_nonblocking(true).expect("nonblocking");
    assert!(
        theirs.accept().is_err(),
        "kvmd connected to an untrusted socket"
    );
    assert!(!daemon.log_text().contains("theirs: connected"));
    assert!(world.shutdown_file("theirs").exists());
    assert_eq!(daemon.log_text().matches("owned by uid 65534").count(), 1);
    drop(daemon);

    // Allowed explicitly, the same socket is monitored.
    let second = world.tmp.path().join("second");
    fs::create_dir(&second).expect("mkdir");
    let daemon = Daemon::start_with(&world.ctrl, &second, &["-d", "--socket-owner", "65534"]);
    theirs.set_nonblocking(false).expect("blocking");
    serve(&theirs, &[USER_OFF]);
    assert_user_shutdown(&world, &daemon, "theirs", true);
}
