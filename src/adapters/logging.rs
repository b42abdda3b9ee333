//! Where log lines go: stderr (in the foreground), the log file, syslog.
//!
//! This module owns the process's `log` backend. File and stderr lines have
//! Ganeti's shape, so existing log tooling keeps working:
//! `2026-11-24 11:52:58,054020 UTC: ganeti-kvmd pid=4486 INFO message`.
//! Syslog gets facility daemon, the program's name as ident, and no debug
//! lines (as the original). The log file is reopened, and syslog
//! reconnected, by [`reopen`] (SIGHUP after log rotation).
//!
//! Syslog must never stall the event loop: its socket is non-blocking and a
//! line it cannot take at once is dropped (the log file has it); after an
//! error (syslogd restarted) the next line reconnects.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

use kvmd_core::timestamp::Timestamp;

/// Where to log, from the command line.
#[derive(Clone, Debug)]
pub struct Setup {
    /// As invoked (`kvmd`, `ganeti-kvmd`): the name in every line.
    pub program: String,
    pub debug: bool,
    pub stderr: bool,
    pub file: Option<PathBuf>,
    pub syslog: bool,
}

#[derive(Debug)]
pub enum LogError {
    File {
        path: PathBuf,
        source: io::Error,
    },
    /// Syslog was to be the only output and cannot be reached.
    NoSyslog,
    AlreadyInitialised,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::File { path, source } => {
                write!(f, "cannot open log file {}: {source}", path.display())
            }
            LogError::NoSyslog => {
                write!(f, "--syslog=only, but no syslog socket (/dev/log) answers")
            }
            LogError::AlreadyInitialised => write!(f, "logging set up twice"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::File { source, .. } => Some(source),
            LogError::NoSyslog | LogError::AlreadyInitialised => None,
        }
    }
}

/// The syslog connection, made again after an error.
struct Syslog {
    formatter: Formatter3164,
    logger: Option<syslog::Logger<LoggerBackend, Formatter3164>>,
}

impl Syslog {
    fn connect(formatter: &Formatter3164) -> Option<syslog::Logger<LoggerBackend, Formatter3164>> {
        let logger = syslog::unix(formatter.clone()).ok()?;
        let nonblocking = match &logger.backend {
            LoggerBackend::Unix(socket) => socket.set_nonblocking(true),
            LoggerBackend::UnixStream(socket) => socket.get_ref().set_nonblocking(true),
            LoggerBackend::Udp(socket, _) => socket.set_nonblocking(true),
            LoggerBackend::Tcp(socket) => socket.get_ref().set_nonblocking(true),
        };
        nonblocking.ok().map(|()| logger)
    }

    /// Sends one line; drops it when syslog cannot take it now.
    fn send(&mut self, level: Level, message: &str) {
        for attempt in 0..2 {
            if self.logger.is_none() {
                self.logger = Syslog::connect(&self.formatter);
            }
            let Some(logger) = &mut self.logger else {
                return;
            };
            let sent = match level {
                Level::Error => logger.err(message),
                Level::Warn => logger.warning(message),
                _ => logger.info(message),
            };
            match sent {
                Ok(()) => return,
                // Full: drop the line rather than stall the daemon.
                Err(syslog::Error::Io(e) | syslog::Error::Write(e))
                    if e.kind() == io::ErrorKind::WouldBlock =>
                {
                    return;
                }
                // Gone (syslogd restarted): connect again, once.
                Err(_) if attempt == 0 => self.logger = None,
                Err(_) => return,
            }
        }
    }
}

struct Logger {
    program: String,
    level: LevelFilter,
    stderr: bool,
    file_path: Option<PathBuf>,
    /// kvmd is single-threaded; the mutexes only satisfy `Log:
    /// Sync` and are never contended.
    file: Mutex<Option<File>>,
    syslog: Option<Mutex<Syslog>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger. Fails when the log file cannot be opened; a missing
/// syslog socket is reported on stderr and otherwise ignored (the daemon
/// still has its file).
pub fn init(setup: Setup) -> Result<(), LogError> {
    let file = match &setup.file {
        Some(path) => Some(open_log_file(path).map_err(|source| LogError::File {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let syslog = if setup.syslog {
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: setup.program.clone(),
            pid: std::process::id(),
        };
        let logger = Syslog::connect(&formatter);
        if logger.is_none() {
            if setup.file.is_none() {
                return Err(LogError::NoSyslog);
            }
            eprintln!(
                "{}: cannot reach syslog (/dev/log); logging to the file only until it answers",
                setup.program
            );
        }
        Some(Mutex::new(Syslog { formatter, logger }))
    } else {
        None
    };
    let level = if setup.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let logger = Logger {
        program: setup.program,
        level,
        stderr: setup.stderr,
        file_path: setup.file,
        file: Mutex::new(file),
        syslog,
    };
    LOGGER
        .set(logger)
        .map_err(|_| LogError::AlreadyInitialised)?;
    let logger = LOGGER.get().ok_or(LogError::AlreadyInitialised)?;
    log::set_logger(logger).map_err(|_| LogError::AlreadyInitialised)?;
    log::set_max_level(level);
    Ok(())
}

/// Reopens the log file by path, for log rotation. The old file stays in
/// use when the new one cannot be opened.
pub(crate) fn reopen() -> Result<(), LogError> {
    let Some(logger) = LOGGER.get() else {
        return Ok(());
    };
    if let Some(syslog) = &logger.syslog {
        let mut syslog = syslog.lock().unwrap_or_else(PoisonError::into_inner);
        syslog.logger = Syslog::connect(&syslog.formatter);
    }
    let Some(path) = &logger.file_path else {
        return Ok(());
    };
    let file = open_log_file(path).map_err(|source| LogError::File {
        path: path.clone(),
        source,
    })?;
    *logger.file.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
    Ok(())
}

fn open_log_file(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = level_name(record.level());
        if self.stderr || self.file_path.is_some() {
            let mut line = String::with_capacity(128);
            let _ = writeln!(
                line,
                "{} UTC: {} pid={} {} {}",
                Timestamp(SystemTime::now()),
                self.program,
                // Read each time: daemonizing changes it after set-up.
                std::process::id(),
                level,
                record.args()
            );
            // Write errors cannot be logged anywhere better; drop them.
            if self.stderr {
                let _ = io::stderr().write_all(line.as_bytes());
            }
            let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(file) = file.as_mut() {
                let _ = file.write_all(line.as_bytes());
            }
        }
        if let Some(syslog) = self
            .syslog
            .as_ref()
            .filter(|_| record.level() <= Level::Info)
        {
            let message = format!("{level} {}", record.args());
            let mut syslog = syslog.lock().unwrap_or_else(PoisonError::into_inner);
            syslog.send(record.level(), &message);
        }
    }

    fn flush(&self) {}
}

/// Level names as Ganeti's (Python-style) log files spell them.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}
