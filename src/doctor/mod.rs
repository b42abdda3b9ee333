//! `kvmd doctor`: why user-shutdown detection works here, or not, in one
//! command, whether kvmd runs or not.
//!
//! Ganeti users have had to run the daemon under strace to learn why user
//! shutdowns were not detected: the feature needs the cluster's switch,
//! the hypervisor parameter, a daemon that runs and watches the right
//! directory, and a QMP socket for it in every QEMU. The doctor checks each
//! of those and says, one line each, `ok`, `warn` or `fail` and what to do.
//!
//! It is split as the daemon is: [`probe`] does every read (files, `/proc`,
//! the control socket, Ganeti's tools), each bounded in time, and produces
//! [`facts::Facts`]; [`checks`] turns facts into [`findings`], and
//! [`render`] prints them; those three are pure and unit-tested. This
//! module only wires them together.

pub(crate) mod checks;
pub(crate) mod facts;
pub mod findings;
pub(crate) mod probe;
pub(crate) mod render;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use crate::config::{self, Config, DEFAULT_CONTROL_SOCKETS, Doctor, Invocation};
use facts::{Adoption, Control, DaemonFlags, Facts, Mode, Probed, escaped};
use findings::Report;

/// Runs the doctor: prints its report, and returns its exit status (0 all
/// ok, 1 something fails, 3 warnings only).
pub fn run(doctor: &Doctor) -> ExitCode {
    let (config, adopted) = adopt(doctor);
    let facts = gather(&config, doctor, adopted);
    let report = Report::new(checks::evaluate(&facts));
    let context = render::Context {
        mode: match facts.mode {
            Mode::Ganeti => "ganeti",
            Mode::Standalone => "standalone",
        },
        ctrl_dir: facts.ctrl_dir.clone(),
    };
    let text = if doctor.json {
        render::json(&report, &context)
    } else {
        render::text(&report, &context)
    };
    // A closed stdout (a pipe to `head`) is no reason to say otherwise.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::from(report.exit_code())
}

/// The daemon's own configuration, from its command line: what it was
/// started with, parsed as it parsed it. (Reading another process's
/// command line waits for its memory lock: bounded like every probe.)
fn daemon_config(pid: u32) -> Option<Config> {
    let read = probe::spawn(move || {
        let args: Vec<OsString> = probe::cmdline(pid)?;
        Some((args, probe::cwd(pid)))
    });
    let Probed::Got(Some((args, cwd))) = read.wait(Instant::now() + probe::PROBE) else {
        return None;
    };
    match config::parse(args, &cwd) {
        Ok(Invocation::Run(config)) => Some(config),
        _ => None,
    }
}

/// With no flags given, the doctor looks where a running kvmd looks:
/// the first daemon that answers on a default control socket lends its
/// command line. Otherwise the flags (or their defaults) say where; a
/// daemon on another default socket that would not say is told of.
fn adopt(doctor: &Doctor) -> (Config, Adoption) {
    if !doctor.defaults {
        return (doctor.config.clone(), Adoption::Flags);
    }
    let own = doctor.config.control_socket.clone();
    let mut sockets = vec![own.clone()];
    sockets.extend(DEFAULT_CONTROL_SOCKETS.iter().map(PathBuf::from));
    sockets.dedup();
    let mut unasked = None;
    for socket in sockets {
        let path = socket.clone();
        let asked = probe::spawn(move || probe::control(&path));
        let deadline = Instant::now() + probe::PROBE;
        let control = match asked.wait(deadline) {
            Probed::Got(Control::Status(status)) => match daemon_config(status.pid) {
                Some(config) => return (config, Adoption::Daemon { pid: status.pid }),
                None => Control::Status(status),
            },
            Probed::Got(control) => control,
            Probed::NoAnswer => Control::NoAnswer,
        };
        // Nobody there; or the doctor's own socket, which daemon.running
        // reports on.
        let nobody = matches!(
            control,
            Control::Absent | Control::Refused | Control::Failed(_)
        );
        if unasked.is_none() && !nobody && socket != own {
            unasked = Some(Adoption::Unasked {
                socket: escaped(socket.as_os_str().as_bytes()),
                control,
            });
        }
    }
    (doctor.config.clone(), unasked.unwrap_or(Adoption::Flags))
}

/// inotify watches kvmd needs for `ctrl_dir`: one for each directory from
/// `/` down to it (its crawl watches every ancestor, see [`crate::adapters::watch`]).
pub(crate) fn watches_needed(ctrl_dir: &Path) -> u64 {
    let levels = ctrl_dir
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    levels as u64 + 1
}

/// Runs every probe (each bounded in time) and collects the facts.
fn gather(config: &Config, doctor: &Doctor, adopted: Adoption) -> Facts {
    let mode = if config.ssconf_checks {
        Mode::Ganeti
    } else {
        Mode::Standalone
    };
    let ctrl = config.ctrl_dir.clone();
    let (pid_file, socket, dir) = (
        config.pid_file.clone(),
        config.control_socket.clone(),
        ctrl.clone(),
    );
    let daemon = probe::spawn(move || probe::daemon(&pid_file, &socket, &dir))
        .wait(Instant::now() + probe::PROBE + probe::PROBE);

    // What the running daemon was started with fills in what the doctor
    // was not told (its hook, its metrics file).
    let process = match &daemon {
        Probed::Got(d) => d.process.as_ref().filter(|p| p.is_daemon()),
        Probed::NoAnswer => None,
    };
    let running = process.and_then(|p| daemon_config(p.pid));
    let daemon_flags = DaemonFlags::of(&daemon, running.is_some());
    let uid = process.and_then(|p| p.uid).unwrap_or(0);

    let ganeti = config.ssconf_checks.then(|| {
        let ssconf = config.ssconf_dir.clone();
        probe::spawn(move || probe::ganeti(&ssconf))
    });
    let dir = {
        let ctrl = ctrl.clone();
        probe::spawn(move || probe::dir(&ctrl))
    };
    let entries = {
        let ctrl = ctrl.clone();
        probe::spawn(move || probe::entries(&ctrl))
    };
    let inotify = probe::spawn(move || probe::inotify(uid));
    let qemus = {
        let ctrl = ctrl.clone();
        probe::spawn(move || probe::qemus(&ctrl))
    };
    let unix = {
        let ctrl = ctrl.clone();
        probe::spawn(move || probe::unix_sockets(&ctrl))
    };
    let hook = match (&config.on_verdict, &running) {
        (Some(program), _) => Some((program.clone(), false)),
        (None, Some(daemon)) => daemon.on_verdict.clone().map(|program| (program, true)),
        (None, None) => None,
    }
    .map(|(program, from_daemon)| probe::spawn(move || probe::hook(&program, from_daemon)));
    // The running daemon's state directory is the one that decides.
    let state_dir = {
        let (path, from_daemon) = match &running {
            Some(daemon) => (daemon.state_dir.clone(), true),
            None => (config.state_dir.clone(), false),
        };
        let owner = process
            .and_then(|p| p.uid)
            .unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        probe::spawn(move || probe::state_dir(&path, from_daemon, owner))
    };
    let metrics = match (&config.metrics_file, &running) {
        (Some(path), _) => Some((path.clone(), false)),
        (None, Some(daemon)) => daemon.metrics_file.clone().map(|path| (path, true)),
        (None, None) => None,
    }
    .map(|(path, from_daemon)| probe::spawn(move || probe::metrics(&path, from_daemon)));

    let deadline = Instant::now() + probe::PROBE;
    let mut ganeti = ganeti.map(|g| g.wait(deadline));
    if let Some(Probed::Got(g)) = &mut ganeti {
        g.instances = probe::gnt_instances(g);
    }
    let entries = match entries.wait(deadline) {
        Probed::Got(Ok(entries)) => Probed::Got(entries),
        // Not there, or not a directory: the directory's own finding says.
        Probed::Got(Err(error)) => Probed::Got(facts::Entries {
            list: Vec::new(),
            more: 0,
            error: Some(error),
        }),
        Probed::NoAnswer => Probed::NoAnswer,
    };
    Facts {
        mode,
        ctrl_dir: escaped(ctrl.as_os_str().as_bytes()),
        log_file: escaped(config.log_file.as_os_str().as_bytes()),
        watches_needed: watches_needed(&ctrl),
        doctor_uid: nix::unistd::geteuid().as_raw(),
        socket_owners: config.socket_owners.clone(),
        instance: doctor.instance.as_ref().map(|i| escaped(i.as_bytes())),
        adopted,
        daemon,
        ganeti,
        dir: dir.wait(deadline),
        entries,
        inotify: inotify.wait(deadline),
        qemus: qemus.wait(deadline),
        unix: match unix.wait(deadline) {
            Probed::Got(unix) => unix,
            Probed::NoAnswer => None,
        },
        daemon_flags,
        state_dir: state_dir.wait(deadline),
        hook: hook.map(|h| h.wait(deadline)),
        metrics: metrics.map(|m| m.wait(deadline)),
        now: probe::now(),
    }
}
