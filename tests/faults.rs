//! Faults of the host around the daemon, with real QEMU guests: hostile
//! socket names, a full or read-only file system under the control
//! directory, the inotify watch limit, an overflowing inotify queue. Each
//! test makes the fault real (a small tmpfs, a read-only remount, a user
//! namespace with a low watch limit, a stopped daemon whose queue fills)
//! and checks that the verdict still lands, late if need be, never lost.
//!
//! These need root (mount, user namespaces); outside CI they are skipped
//! without it, under CI (`CI=true`) they fail.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::peer::{self, HOST_QUIT, USER_OFF};
use common::{Daemon, Guest, Options, World, assert_user_shutdown, program, qemu, wait_until};
use nix::sys::signal::Signal;

/// Whether the test can do what only root can; panics under CI.
fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "these tests need root (mount, user namespaces)"
    );
    eprintln!("skipped: needs root");
    false
}

fn run(program: &str, args: &[&OsStr]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// A tmpfs mounted for one test; lazily unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Tmpfs {
        fs::create_dir_all(at).expect("mkdir mount point");
        let args = [
            "-t",
            "tmpfs",
            "-o",
            options,
            "kvmd-test",
            at.to_str().expect("path"),
        ];
        run("mount", &args.map(OsStr::new));
        Tmpfs(at.to_owned())
    }

    fn remount(&self, options: &str) {
        let options = format!("remount,{options}");
        run(
            "mount",
            &[OsStr::new("-o"), OsStr::new(&options), self.0.as_os_str()],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A world whose control directory is on its own small tmpfs; the
/// daemon's state directory stays outside it.
fn world_on_tmpfs(options: &str) -> (World, Tmpfs, PathBuf) {
    let world = World::new();
    let fs = Tmpfs::mount(&world.tmp.path().join("fs"), options);
    let ctrl = fs.0.join("ctrl");
    fs::create_dir(&ctrl).expect("mkdir ctrl");
    (world, fs, ctrl)
}

fn state_dir_args(world: &World) -> Vec<String> {
    let state = world.tmp.path().join("state");
    vec!["--state-dir".into(), state.display().to_string()]
}

/// With `-d`: the retries are logged at debug level only.
fn start(ctrl: &Path, world: &World) -> Daemon {
    let mut args = state_dir_args(world);
    args.push("-d".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start_with(ctrl, world.tmp.path(), &args)
}

#[test]
fn a_full_file_system_delays_the_verdict_until_there_is_room() {
    let Some(qemu) = qemu() else { return };
    if !root() {
        return;
    }
    let (world, fs, ctrl) = world_on_tmpfs("nr_inodes=64,size=1m");
    let daemon = start(&ctrl, &world);
    let image = world.image("full", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &ctrl, "full", &image, Options::default());
    daemon.wait_monitoring("full");
    // Stopped, the daemon sees the guest's end only after the file system
    // is full: QEMU's exit unlinks its sockets and frees their inodes.
    daemon.signal(Signal::SIGSTOP);
    guest.cont();
    guest.wait_exit();
    let mut fillers = Vec::new();
    loop {
        let filler = fs.0.join(format!("filler-{}", fillers.len()));
        match fs::write(&filler, b"") {
            Ok(()) => fillers.push(filler),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    daemon.signal(Signal::SIGCONT);
    let line = daemon.wait_log(" full: decided user shutdown", 1);
    assert!(
        line.contains("cannot create full.shutdown: ENOSPC") && line.contains("trying again"),
        "{line}"
    );
    assert!(!ctrl.join("full.shutdown").exists());
    // Still failing, and still quiet: one error line for the episode.
    daemon.wait_log("full: still cannot create full.shutdown", 1);
    fs::remove_file(fillers.pop().expect("a filler")).expect("free an inode");
    let line = daemon.wait_log(" full: full.shutdown: created at last", 1);
    assert!(line.contains("decided user shutdown"), "{line}");
    assert!(ctrl.join("full.shutdown").is_file());
    let errors = daemon.log_text();
    let errors = errors
        .lines()
        .filter(|l| l.contains(" ERROR ") && l.contains("cannot create"));
    assert_eq!(errors.count(), 1);
}

#[test]
fn a_read_only_file_system_delays_the_removal_until_it_is_writable() {
    let Some(qemu) = qemu() else { return };
    if !root() {
        return;
    }
    let (world, fs, ctrl) = world_on_tmpfs("size=1m");
    fs::write(ctrl.join("ro.shutdown"), b"").expect("plant stale file");
    let daemon = start(&ctrl, &world);
    let image = world.image("ro", &[program::HALT]);
    let mut guest = Guest::start(&qemu, &ctrl, "ro", &image, Options::default());
    daemon.wait_monitoring("ro");
    guest.cont();
    fs.remount("ro");
    guest.quit();
    let line = daemon.wait_log(" ro: decided not a user shutdown", 1);
    assert!(line.contains("cannot remove ro.shutdown: EROFS"), "{line}");
    daemon.wait_log("ro: still cannot remove ro.shutdown", 1);
    assert!(ctrl.join("ro.shutdown").exists());
    fs.remount("rw");
    daemon.wait_log(" ro: ro.shutdown: removed at last", 1);
    assert!(!ctrl.join("ro.shutdown").exists());
}

/// Starts a guest whose daemon socket gets `socket_name` in the control
/// directory: QEMU binds a plain name in `staging` (same file system) and
/// the socket is moved in, so the name can hold any byte and be as long as
/// a file name may be, beyond `sun_path` and QEMU's option syntax.
fn guest_named(qemu: &Path, world: &World, socket_name: &OsStr, tag: &str) -> Guest {
    let staging = world.tmp.path().join(format!("staging-{tag}"));
    fs::create_dir(&staging).expect("mkdir staging");
    let image = world.image(tag, &[program::POWER_OFF]);
    let guest = Guest::start(qemu, &staging, tag, &image, Options::default());
    let bound = staging.join(format!("{tag}.kvmd"));
    wait_until(&format!("QEMU {tag} to bind"), || {
        bound.exists().then_some(())
    });
    fs::rename(&bound, world.ctrl.join(socket_name)).expect("move the socket in");
    guest
}

fn with_suffix(stem: &[u8], suffix: &str) -> OsString {
    let mut name = stem.to_vec();
    name.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(name)
}

#[test]
fn hostile_names_are_decided_under_their_exact_names() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let long = vec![b'x'; 246]; // "<246 x>.shutdown" is 255 bytes, NAME_MAX
    let stems: [&[u8]; 4] = [b"with space", b"new\nline", b"vm\xff\xfe", &long];
    let mut guests = Vec::new();
    for (i, stem) in stems.iter().enumerate() {
        let socket = with_suffix(stem, ".kvmd");
        guests.push(guest_named(&qemu, &world, &socket, &format!("g{i}")));
    }
    for (stem, guest) in stems.iter().zip(&mut guests) {
        // One line per instance: the name is escaped, never raw.
        let label = stem.escape_ascii().to_string();
        daemon.wait_monitoring(&label);
        guest.cont();
        guest.wait_exit();
        let line = daemon.wait_decision(&label);
        assert!(line.contains("decided user shutdown"), "{line}");
        let file = world.ctrl.join(with_suffix(stem, ".shutdown"));
        assert!(file.is_file(), "{} missing after: {line}", file.display());
    }
    assert!(!daemon.log_text().contains("new\nline"));

    // `.kvmd` names no instance: said so, not monitored, nothing written.
    let nameless = guest_named(&qemu, &world, OsStr::new(".kvmd"), "nameless");
    daemon.wait_log("an entry named .kvmd has no instance name; ignored", 1);
    drop(nameless);
    assert!(!world.ctrl.join(".shutdown").exists());

    // A socket name can be 4 bytes longer than its shutdown file's may.
    let too_long = with_suffix(&[b'y'; 250], ".kvmd");
    let unrecordable = guest_named(&qemu, &world, &too_long, "too-long");
    let line = daemon.wait_log("would be longer than a file name may be", 1);
    assert!(line.contains("not monitored"), "{line}");
    drop(unrecordable);
}

/// kvmd (with `-d` and `extra`) in a user namespace, root there so it
/// trusts root's sockets, whose inotify watch limit is one watch short of
/// one per directory from / down to `ctrl`: the control directory itself
/// stays unwatched.
fn start_short_of_watches(ctrl: &Path, world: &World, extra: &[String]) -> Daemon {
    let limit = ctrl.components().count() - 1;
    let script = format!("echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\"");
    let wrapper = ["unshare", "--user", "--map-root-user", "sh", "-c", &script];
    let mut args = vec!["-d"];
    args.extend(extra.iter().map(String::as_str));
    Daemon::start_wrapped(ctrl, world.tmp.path(), &wrapper, &args)
}

#[test]
fn the_inotify_watch_limit_is_survived_by_rescanning() {
    let Some(qemu) = qemu() else { return };
    if !root() {
        return;
    }
    let world = World::new();
    let daemon = start_short_of_watches(&world.ctrl, &world, &[]);
    let line = daemon.wait_log("the inotify watch limit", 1);
    assert!(line.contains("rescanning"), "{line}");
    // Rescans stay quiet: what each finds again is not logged again.
    fs::write(world.ctrl.join(".kvmd"), b"").expect("a bare .kvmd");
    daemon.wait_log("still cannot watch or open", 3);
    let log = daemon.log_text();
    assert_eq!(log.matches("has no instance name").count(), 1, "{log}");
    assert!(!log.contains("waiting for"), "{log}");

    // No event will tell of this socket; a rescan finds it.
    let image = world.image("unwatched", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "unwatched", &image, Options::default());
    daemon.wait_monitoring("unwatched");
    guest.cont();
    guest.wait_exit();
    assert_user_shutdown(&world, &daemon, "unwatched", true);

    // Watches to spare again: the next rescan watches, and says so once.
    let raise = "echo 1000 > /proc/sys/user/max_inotify_watches";
    let target = daemon.pid().to_string();
    let args = ["--user", "--target", &target, "sh", "-c", raise];
    run("nsenter", &args.map(OsStr::new));
    daemon.wait_log("can be watched again; followed by events", 1);
    let image = world.image("watched", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "watched", &image, Options::default());
    daemon.wait_monitoring("watched");
    guest.cont();
    guest.wait_exit();
    assert_user_shutdown(&world, &daemon, "watched", true);
    assert_eq!(
        daemon.log_text().matches("the inotify watch limit").count(),
        1
    );
}

#[test]
fn a_socket_created_while_the_inotify_queue_overflows_is_found() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    daemon.wait_log("watching ", 1);
    // Stopped, the daemon reads nothing: the kernel's queue (16384 events
    // by default) fills with the churn and drops the rest, the guest's
    // socket creation among them.
    daemon.signal(Signal::SIGSTOP);
    let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .map_or(16384, |text| text.trim().parse().unwrap_or(16384));
    for i in 0..limit / 2 + 100 {
        let junk = world.ctrl.join(format!("junk-{i}"));
        fs::write(&junk, b"").expect("churn");
        fs::remove_file(&junk).expect("churn");
    }
    let image = world.image("lost", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "lost", &image, Options::default());
    let socket = world.ctrl.join("lost.kvmd");
    wait_until("QEMU to bind", || socket.exists().then_some(()));
    daemon.signal(Signal::SIGCONT);
    daemon.wait_log("inotify queue overflowed; rescanning", 1);
    daemon.wait_monitoring("lost");
    guest.cont();
    guest.wait_exit();
    assert_user_shutdown(&world, &daemon, "lost", true);
}

/// Entries of `/proc/<pid>/fd`.
fn fd_count(pid: u32) -> usize {
    match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => entries.count(),
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("kvmd {pid} is gone"),
        Err(e) => panic!("/proc/{pid}/fd: {e}"),
    }
}

/// Resident memory, from `/proc/<pid>/status`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// One round of churn: `count` instances appear, negotiate, end (half by
/// the user, half by the host) and go, the way QEMU's sockets do.
fn churn_round(world: &World, daemon: &Daemon, round: usize, count: usize) {
    let names: Vec<String> = (0..count).map(|i| format!("r{round}-{i}")).collect();
    let listeners: Vec<UnixListener> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if i % 2 == 0 {
                world.plant_stale(name);
            }
            peer::listen(&world.ctrl.join(format!("{name}.kvmd")))
        })
        .collect();
    for (i, (name, listener)) in names.iter().zip(&listeners).enumerate() {
        peer::serve(listener, &[if i % 2 == 0 { HOST_QUIT } else { USER_OFF }]);
        fs::remove_file(world.ctrl.join(format!("{name}.kvmd"))).expect("unlink");
    }
    drop(listeners);
    let decided = (round + 1) * count;
    daemon.wait_log(" decided ", decided);
    for (i, name) in names.iter().enumerate() {
        let user = i % 2 == 1;
        assert_eq!(world.shutdown_file(name).exists(), user, "{name}");
    }
}

#[test]
fn thousands_of_instances_come_and_go_and_leave_nothing_behind() {
    const ROUNDS: usize = 15;
    const PER_ROUND: usize = 200;
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    daemon.wait_log("watching ", 1);
    let pid = daemon.pid();
    let fds = fd_count(pid);
    // The first round sizes the tables; the memory baseline is taken after
    // it, the descriptors' before.
    churn_round(&world, &daemon, 0, PER_ROUND);
    wait_until("kvmd's descriptors back at the baseline", || {
        (fd_count(pid) == fds).then_some(())
    });
    let rss = rss_kib(pid);
    for round in 1..ROUNDS {
        churn_round(&world, &daemon, round, PER_ROUND);
    }
    wait_until("kvmd's descriptors back at the baseline", || {
        (fd_count(pid) == fds).then_some(())
    });
    let after = rss_kib(pid);
    assert!(
        after <= rss + 1024,
        "RSS grew from {rss} KiB to {after} KiB over {} instances",
        ROUNDS * PER_ROUND
    );
    eprintln!(
        "{} instances: fds {fds} -> {}, RSS {rss} KiB -> {after} KiB",
        ROUNDS * PER_ROUND,
        fd_count(pid)
    );
}

#[test]
fn a_control_dir_replaced_by_a_symlink_is_not_followed() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    daemon.wait_log("watching ", 1);
    // Someone swaps the control directory for a symlink to a directory
    // with a socket and a stale file in it.
    let elsewhere = world.tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::write(elsewhere.join("outside.shutdown"), b"").expect("plant");
    let image = world.image("outside", &[program::POWER_OFF]);
    let mut outside = Guest::start(&qemu, &elsewhere, "outside", &image, Options::default());
    fs::rename(&world.ctrl, world.tmp.path().join("ctrl.old")).expect("move away");
    std::os::unix::fs::symlink(&elsewhere, &world.ctrl).expect("symlink");
    let line = daemon.wait_log("is not a directory", 1);
    assert!(line.contains("waiting for a real one"), "{line}");
    outside.quit();

    // A real directory again: watched, and its guests decided.
    fs::remove_file(&world.ctrl).expect("rm symlink");
    fs::create_dir(&world.ctrl).expect("mkdir");
    daemon.wait_log("watching ", 2);
    let image = world.image("inside", &[program::POWER_OFF]);
    let mut inside = Guest::start(&qemu, &world.ctrl, "inside", &image, Options::default());
    daemon.wait_monitoring("inside");
    inside.cont();
    inside.wait_exit();
    assert_user_shutdown(&world, &daemon, "inside", true);
    // Nothing was done through the symlink.
    assert!(elsewhere.join("outside.shutdown").exists());
    assert!(!daemon.log_text().contains(" outside:"));
}

/// A verdict the disk refused stays pending when a rescan finds the very
/// socket it was about (a QEMU killed with SIGKILL leaves its socket file):
/// only a new QEMU makes it moot.
#[test]
fn a_pending_verdict_survives_rescans_of_its_leftover_socket() {
    let Some(qemu) = qemu() else { return };
    if !root() {
        return;
    }
    let (world, fs, ctrl) = world_on_tmpfs("size=1m");
    fs::write(ctrl.join("kept.shutdown"), b"").expect("plant stale file");
    // Short of watches, the daemon rescans (and recaps) every few seconds.
    let daemon = start_short_of_watches(&ctrl, &world, &state_dir_args(&world));
    let image = world.image("kept", &[program::HALT]);
    let mut guest = Guest::start(&qemu, &ctrl, "kept", &image, Options::default());
    daemon.wait_monitoring("kept");
    fs.remount("ro");
    guest.signal(Signal::SIGKILL);
    let line = daemon.wait_log(" kept: decided not a user shutdown", 1);
    assert!(
        line.contains("cannot remove kept.shutdown: EROFS"),
        "{line}"
    );
    // A rescan found the leftover socket again and tried it.
    daemon.wait_log(" kept: connect: Connection refused", 1);
    fs.remount("rw");
    daemon.wait_log(" kept: kept.shutdown: removed at last", 1);
    assert!(!ctrl.join("kept.shutdown").exists());
    assert!(!daemon.log_text().contains("moot"));
}
