//! End to end: the built `kvmd` against real QEMU guests (TCG, boot-sector
//! guests), real inotify and real unix sockets. Each test asserts the
//! decision the daemon logged and the `<instance>.shutdown` file's final
//! state. Every "not a user shutdown" case first plants a stale shutdown
//! file and checks it is removed.

mod common;

use std::fs;

use common::{Daemon, Guest, Options, World, assert_user_shutdown, program, qemu, wait_until};
use nix::sys::signal::Signal;

/// One guest, one daemon: start the guest paused, wait until the daemon
/// monitors it, let `act` play the scenario, check the verdict.
fn scenario(parts: &[&[u8]], options: Options, user: bool, act: impl FnOnce(&mut Guest)) {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    if !user {
        world.plant_stale("vm");
    }
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("vm", parts);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, options);
    daemon.wait_monitoring("vm");
    act(&mut guest);
    assert_user_shutdown(&world, &daemon, "vm", user);
}

#[test]
fn user_powers_off() {
    scenario(&[program::POWER_OFF], Options::default(), true, |guest| {
        guest.cont();
        guest.wait_exit();
    });
}

#[test]
fn acpi_power_button_obeyed_is_not_user() {
    let parts = [program::OBEY_BUTTON, program::POWER_OFF];
    scenario(&parts, Options::default(), false, |guest| {
        guest.cont();
        guest.press_power_button();
    });
}

/// Kills the daemon (SIGKILL: no chance to tidy up), starts another on
/// the same directories, and waits until it monitors `instance` again with
/// the evidence the first one kept.
fn crash_and_restart(world: &World, mut first: Daemon, instance: &str) -> Daemon {
    first.signal(Signal::SIGKILL);
    first.wait_exit();
    let second_dir = world.tmp.path().join("second");
    fs::create_dir(&second_dir).expect("mkdir");
    let second = Daemon::start(&world.ctrl, &second_dir);
    second.wait_log(
        &format!(" {instance}: evidence restored from before a restart"),
        1,
    );
    second.wait_monitoring(instance);
    second
}

#[test]
fn power_button_before_a_daemon_crash_still_counts_after_restart() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    world.plant_stale("vm");
    let first = Daemon::start(&world.ctrl, world.tmp.path());
    let parts = [
        program::OBEY_BUTTON,
        program::MARK,
        program::WAIT_KEY,
        program::POWER_OFF,
    ];
    let image = world.image("vm", &parts);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    first.wait_monitoring("vm");
    guest.cont();
    // The administrator presses the button; the guest has seen it and
    // waits (for a key) before it obeys.
    guest.press_power_button_until_marked();
    let state = world.tmp.path().join("kvmd-state/vm.state");
    wait_until("state file", || state.exists().then_some(()));
    // The daemon dies; another starts while the guest still runs.
    let second = crash_and_restart(&world, first, "vm");
    // Now the guest obeys: a POWERDOWN the second daemon never saw.
    guest.press_key();
    assert_user_shutdown(&world, &second, "vm", false);
    let line = second.wait_decision("vm");
    assert!(
        line.contains("restored from before a restart: POWERDOWN"),
        "{line}"
    );
    assert!(
        !line.contains("POWERDOWN=1"),
        "the second daemon saw the press itself: {line}"
    );
    assert!(!state.exists(), "state file left after the decision");
}

#[test]
fn no_shutdown_user_poweroff_survives_a_daemon_crash_before_the_quit() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let first = Daemon::start(&world.ctrl, world.tmp.path());
    let options = Options {
        no_shutdown: true,
        ..Options::default()
    };
    let image = world.image("vm", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, options);
    first.wait_monitoring("vm");
    guest.cont();
    wait_until("guest off", || (guest.status() == "shutdown").then_some(()));
    let state = world.tmp.path().join("kvmd-state/vm.state");
    wait_until("state file", || state.exists().then_some(()));
    let second = crash_and_restart(&world, first, "vm");
    // The administrator's quit sends a SHUTDOWN with a host reason; the
    // user's earlier one decides.
    guest.quit();
    assert_user_shutdown(&world, &second, "vm", true);
    assert!(!state.exists(), "state file left after the decision");
}

#[test]
fn qmp_quit_is_not_user() {
    scenario(&[], Options::default(), false, |guest| {
        guest.cont();
        guest.quit();
    });
}

#[test]
fn sigterm_to_qemu_is_not_user() {
    scenario(&[], Options::default(), false, |guest| {
        guest.cont();
        guest.signal(Signal::SIGTERM);
    });
}

#[test]
fn sigint_to_qemu_is_not_user() {
    scenario(&[], Options::default(), false, |guest| {
        guest.cont();
        guest.signal(Signal::SIGINT);
    });
}

#[test]
fn sigkill_to_qemu_is_not_user() {
    scenario(&[], Options::default(), false, |guest| {
        guest.cont();
        guest.signal(Signal::SIGKILL);
    });
}

#[test]
fn guest_reset_under_no_reboot_is_not_user() {
    let options = Options {
        no_reboot: true,
        ..Options::default()
    };
    scenario(&[program::RESET], options, false, |guest| {
        guest.cont();
        guest.wait_exit();
    });
}

#[test]
fn guest_panic_is_not_user() {
    let options = Options {
        pvpanic: true,
        ..Options::default()
    };
    scenario(&[program::PANIC], options, false, |guest| {
        guest.cont();
        guest.wait_exit();
    });
}

#[test]
fn stop_and_cont_then_user_poweroff_is_user() {
    let parts = [program::WAIT_KEY, program::POWER_OFF];
    scenario(&parts, Options::default(), true, |guest| {
        guest.cont();
        guest.stop();
        guest.cont();
        guest.press_key();
    });
}

#[test]
fn stop_then_quit_is_not_user() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    world.plant_stale("vm");
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("vm", &[]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    guest.cont();
    guest.stop();
    guest.quit();
    assert_user_shutdown(&world, &daemon, "vm", false);
    // The pause was seen (the host's quit decides either way).
    let line = daemon.wait_decision("vm");
    assert!(line.contains(" STOP=1"), "{line}");
}

#[test]
fn reboot_then_later_user_poweroff_is_user() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("vm", &[program::RESET_ONCE, program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    guest.cont();
    guest.wait_exit();
    assert_user_shutdown(&world, &daemon, "vm", true);
    // The guest really did reboot on the way.
    let line = daemon.wait_decision("vm");
    assert!(line.contains(" RESET="), "{line}");
}

#[test]
fn no_shutdown_user_poweroff_then_admin_quit_is_user() {
    let options = Options {
        no_shutdown: true,
        ..Options::default()
    };
    scenario(&[program::POWER_OFF], options, true, |guest| {
        guest.cont();
        // The guest is off but QEMU stays, paused; then the host quits it,
        // which sends a second SHUTDOWN with a host reason.
        wait_until("guest status 'shutdown'", || {
            (guest.status() == "shutdown").then_some(())
        });
        guest.quit();
    });
}

#[test]
fn daemon_started_after_the_vm_picks_it_up() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let image = world.image("vm", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    // QEMU is up (its QMP answers) and paused before the daemon exists.
    assert_eq!(guest.status(), "prelaunch");
    assert!(world.ctrl.join("vm.kvmd").exists());
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let line = daemon.wait_log(" vm: monitoring", 1);
    assert!(line.contains("guest paused"), "{line}");
    guest.cont();
    guest.wait_exit();
    assert_user_shutdown(&world, &daemon, "vm", true);
}

#[test]
fn a_guest_asleep_in_s3_when_the_daemon_starts_is_not_taken_for_paused() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let image = world.image("vm", &[program::SLEEP_ONCE, program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &world.ctrl, "vm", &image, Options::default());
    guest.cont();
    wait_until("guest asleep", || {
        (guest.status() == "suspended").then_some(())
    });
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let line = daemon.wait_log(" vm: monitoring", 1);
    assert!(line.contains("guest suspended (S3)"), "{line}");
    // Woken, it reboots (no RESUME: QEMU sends WAKEUP) and powers off.
    guest.execute("system_wakeup");
    guest.wait_exit();
    assert_user_shutdown(&world, &daemon, "vm", true);
}

#[test]
fn control_dir_and_parents_created_after_the_daemon() {
    let Some(qemu) = qemu() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctrl = tmp.path().join("run/ganeti/kvm-hypervisor/ctrl");
    let world = World {
        ctrl: ctrl.clone(),
        tmp,
    };
    let daemon = Daemon::start(&ctrl, world.tmp.path());
    daemon.wait_log(" waiting for ", 1);
    fs::create_dir_all(&ctrl).expect("mkdir -p ctrl");
    daemon.wait_log(" watching ", 1);
    let image = world.image("vm", &[program::POWER_OFF]);
    let mut guest = Guest::start(&qemu, &ctrl, "vm", &image, Options::default());
    daemon.wait_monitoring("vm");
    guest.cont();
    guest.wait_exit();
    assert_user_shutdown(&world, &daemon, "vm", true);
}

#[test]
fn control_dir_deleted_and_recreated_under_the_daemon() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    // An instance that keeps running through it all.
    let halt = world.image("old", &[]);
    let mut old = Guest::start(&qemu, &world.ctrl, "old", &halt, Options::default());
    daemon.wait_monitoring("old");
    old.cont();

    fs::remove_dir_all(&world.ctrl).expect("rm -r ctrl");
    daemon.wait_log(" waiting for ", 1);
    fs::create_dir(&world.ctrl).expect("mkdir ctrl");
    daemon.wait_log(" watching ", 2);

    // A new instance in the new directory is found and decided there.
    let image = world.image("new", &[program::POWER_OFF]);
    let mut new = Guest::start(&qemu, &world.ctrl, "new", &image, Options::default());
    daemon.wait_monitoring("new");
    new.cont();
    new.wait_exit();
    assert_user_shutdown(&world, &daemon, "new", true);

    // The old instance's connection survived; its verdict lands in the
    // control directory as it is now.
    world.plant_stale("old");
    old.quit();
    assert_user_shutdown(&world, &daemon, "old", false);
}

#[test]
fn eight_guests_at_once_with_mixed_outcomes() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let off: &[&[u8]] = &[program::POWER_OFF];
    let halt: &[&[u8]] = &[];
    let plain = Options::default();
    let no_reboot = Options {
        no_reboot: true,
        ..plain
    };
    let pvpanic = Options {
        pvpanic: true,
        ..plain
    };
    // (name, program, options, user shutdown?)
    let cases = [
        ("off1", off, plain, true),
        ("off2", off, plain, true),
        ("off3", off, plain, true),
        ("off4", off, plain, true),
        ("quit1", halt, plain, false),
        ("kill1", halt, plain, false),
        ("reset1", &[program::RESET], no_reboot, false),
        ("panic1", &[program::PANIC], pvpanic, false),
    ];
    let mut guests = Vec::new();
    for (name, parts, options, user) in cases {
        if !user {
            world.plant_stale(name);
        }
        // One image each: QEMU locks its disk image against other writers.
        let image = world.image(name, parts);
        guests.push(Guest::start(&qemu, &world.ctrl, name, &image, options));
    }
    for guest in &guests {
        daemon.wait_monitoring(&guest.name);
    }
    for guest in &mut guests {
        guest.cont();
    }
    for guest in &mut guests {
        match guest.name.as_str() {
            "quit1" => guest.quit(),
            "kill1" => guest.signal(Signal::SIGKILL),
            _ => guest.wait_exit(),
        }
    }
    for (name, _, _, user) in cases {
        assert_user_shutdown(&world, &daemon, name, user);
    }
}

/// A guest started again under the same name before the daemon has read
/// the first one's hang-up: the new socket's creation is read first (as
/// "already monitored"), and on ext4 it even gets the old socket's inode
/// number. The hang-up must still pick the new QEMU up.
#[test]
fn a_guest_restarted_before_its_hang_up_is_read_is_monitored() {
    let Some(qemu) = qemu() else { return };
    let world = World::new();
    let daemon = Daemon::start(&world.ctrl, world.tmp.path());
    let image = world.image("again", &[program::POWER_OFF]);
    let mut first = Guest::start(&qemu, &world.ctrl, "again", &image, Options::default());
    daemon.wait_monitoring("again");
    daemon.signal(Signal::SIGSTOP);
    // inotify is ready before the hang-up, so the creation is read first.
    fs::write(world.ctrl.join("noise"), b"").expect("write");
    first.cont();
    first.wait_exit();
    let mut second = Guest::start(&qemu, &world.ctrl, "again", &image, Options::default());
    let socket = world.ctrl.join("again.kvmd");
    wait_until("the second QEMU to bind", || socket.exists().then_some(()));
    daemon.signal(Signal::SIGCONT);
    let line = daemon.wait_decision("again");
    assert!(line.contains("decided user shutdown"), "{line}");
    daemon.wait_log(" again: monitoring", 2);
    fs::remove_file(world.shutdown_file("again")).expect("Ganeti clears it at start");
    second.cont();
    second.wait_exit();
    let line = daemon.wait_log(" again: decided ", 2);
    assert!(line.contains("decided user shutdown"), "{line}");
    assert!(world.shutdown_file("again").is_file());
}
