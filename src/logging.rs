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
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

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
pub fn reopen() -> Result<(), LogError> {
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

/// A wall-clock time split into its UTC calendar fields.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    /// Below the second.
    fraction: std::time::Duration,
}

impl Civil {
    fn of(time: SystemTime) -> Civil {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            fraction: std::time::Duration::from_nanos(u64::from(since.subsec_nanos())),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS,uuuuuu` in UTC.
struct Timestamp(SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = Civil::of(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:06}",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.fraction.as_micros()
        )
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC), for machine-read output.
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = Civil::of(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.fraction.as_millis()
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_in_ganetis_shape() {
        // `date -u -d @1795953178` says 2026-11-29 11:52:58.
        let t = UNIX_EPOCH + Duration::from_micros(1_795_953_178_054_020);
        assert_eq!(Timestamp(t).to_string(), "2026-11-29 11:52:58,054020");
        assert_eq!(
            Timestamp(UNIX_EPOCH).to_string(),
            "1970-01-01 00:00:00,000000"
        );
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(Timestamp(leap).to_string(), "2000-02-29 00:00:00,000000");
        assert_eq!(Rfc3339(t).to_string(), "2026-11-29T11:52:58.054Z");
    }
}
