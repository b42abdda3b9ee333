//! The `kvmd` (or `ganeti-kvmd`) binary: parse the command line, set up
//! logging and the pid file, run the event loop.

use std::path::PathBuf;
use std::process::ExitCode;

use kvmd::config::{self, Config, Invocation, Syslog};
use kvmd::daemon::Daemon;
use kvmd::logging;
use kvmd::pidfile::PidFile;
use log::{error, info};

fn main() -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let program = config::program_name(std::env::args_os().next().as_deref());
    match config::parse(std::env::args_os(), &cwd) {
        Ok(Invocation::Run(config)) => run(config),
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

fn run(config: Config) -> ExitCode {
    let program = config.program.clone();
    if !config.foreground {
        eprintln!("{program}: detaching is not supported yet; run with -f");
        return ExitCode::FAILURE;
    }
    let setup = logging::Setup {
        program: program.clone(),
        debug: config.debug,
        stderr: config.foreground,
        file: (config.syslog != Syslog::Only).then(|| config.log_file.clone()),
        syslog: config.syslog != Syslog::No,
    };
    if let Err(e) = logging::init(setup) {
        eprintln!("{program}: {e}");
        return ExitCode::FAILURE;
    }
    let pid_file = match PidFile::create(&config.pid_file) {
        Ok(pid_file) => pid_file,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut daemon = match Daemon::new(&config.ctrl_dir) {
        Ok(daemon) => daemon,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    info!(
        "kvmd {} started on {}",
        env!("CARGO_PKG_VERSION"),
        config.ctrl_dir.display()
    );
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
