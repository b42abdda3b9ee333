//! The `kvmd` (or `ganeti-kvmd`) binary: the start-up sequence of
//! Ganeti's daemon — command line, user check, detach, logging, ssconf
//! checks, pid file — then the event loop.

use std::path::PathBuf;
use std::process::ExitCode;

use kvmd::adapters::detach;
use kvmd::adapters::logging;
use kvmd::adapters::pidfile::PidFile;
use kvmd::adapters::ssconf;
use kvmd::config::{self, Config, Invocation, Syslog};
use kvmd::daemon::Daemon;
use log::{error, info};

fn main() -> ExitCode {
    if let Err(e) = kvmd::daemon::block_signals() {
        eprintln!("kvmd: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let program = config::program_name(std::env::args_os().next().as_deref());
    match config::parse(std::env::args_os(), &cwd) {
        Ok(Invocation::Run(config)) => run(config),
        Ok(Invocation::History(history)) => kvmd::history::run(&history),
        Ok(Invocation::Status(client)) => kvmd::client::status(&client),
        Ok(Invocation::Events(client)) => kvmd::client::events(&client),
        Ok(Invocation::Order(order)) => kvmd::client::order(&order),
        Ok(Invocation::Doctor(doctor)) => kvmd::doctor::run(&doctor),
        Ok(Invocation::Help(text) | Invocation::Version(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{program}: {e}\nTry '{program} --help' for more information.");
            ExitCode::from(2)
        }
    }
}

/// How start-up ended, short of running.
enum Stop {
    /// ssconf says this node needs no kvmd: exit 0, as Ganeti's does.
    NotNeeded,
    /// Already logged where possible; `why` is for the invoker.
    Failed(String),
}

fn run(config: Config) -> ExitCode {
    let program = config.program.clone();
    if config.user_checks && !nix::unistd::geteuid().is_root() {
        eprintln!(
            "{program}: must run as root to manage shutdown files for every instance \
             (--no-user-checks skips this check)"
        );
        return ExitCode::FAILURE;
    }
    let report = if config.foreground {
        None
    } else {
        match detach::detach(&program) {
            Ok(report) => Some(report),
            Err(e) => {
                eprintln!("{program}: cannot detach: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match start(&config) {
        Ok((mut daemon, pid_file)) => {
            if let Some(report) = report {
                report.ready();
            }
            serve(&mut daemon, pid_file)
        }
        Err(Stop::NotNeeded) => {
            if let Some(report) = report {
                report.not_needed();
            }
            ExitCode::SUCCESS
        }
        Err(Stop::Failed(why)) => {
            if let Some(report) = report {
                report.failed(&why);
            }
            ExitCode::FAILURE
        }
    }
}

/// Everything up to the event loop, in the daemon process (after
/// detaching, so the pid in logs and the pid file is the daemon's).
fn start(config: &Config) -> Result<(Daemon, PidFile), Stop> {
    let setup = logging::Setup {
        program: config.program.clone(),
        debug: config.debug,
        stderr: config.foreground,
        file: (config.syslog != Syslog::Only).then(|| config.log_file.clone()),
        syslog: config.syslog != Syslog::No,
    };
    if let Err(e) = logging::init(setup) {
        let why = e.to_string();
        if config.foreground {
            eprintln!("{}: {why}", config.program);
        }
        return Err(Stop::Failed(why));
    }
    let failed = |why: String| {
        error!("{why}");
        Stop::Failed(why)
    };
    let node_check = || ssconf::check(&config.ssconf_dir, &ssconf::node_name());
    if let Err(refusal) = config.ssconf_checks.then(node_check).unwrap_or(Ok(())) {
        info!("{refusal}");
        return Err(Stop::NotNeeded);
    }
    // Refused before anything else is set up: whoever could write there
    // could forge intents and evidence (which verdict), and hooks (run
    // as root).
    kvmd::adapters::hook_program::check_state_dir(&config.state_dir).map_err(|why| {
        failed(format!(
            "{why}: anyone who can write there could forge what decides verdicts; \
             chown it to root (or kvmd's own user) and chmod 700, or remove it (kvmd creates \
             it so)"
        ))
    })?;
    let mut config = config.clone();
    if let Some(program) = &config.on_verdict {
        // Refused too: it would run as root.
        let checked = kvmd::adapters::hook_program::check(program).map_err(failed)?;
        config.on_verdict = Some(checked);
    }
    let pid_file = PidFile::create(&config.pid_file).map_err(|e| failed(e.to_string()))?;
    let daemon = Daemon::new(&config).map_err(|e| failed(e.to_string()))?;
    info!(
        "kvmd {} started on {}",
        env!("CARGO_PKG_VERSION"),
        config.ctrl_dir.display()
    );
    Ok((daemon, pid_file))
}

fn serve(daemon: &mut Daemon, pid_file: PidFile) -> ExitCode {
    match daemon.run() {
        Ok(signal) => {
            info!("{signal}: exiting; running instances are left undecided");
            drop(pid_file);
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
