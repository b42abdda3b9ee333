//! The command line: Ganeti 3.0's `ganeti-kvmd` flags plus kvmd's own.
//!
//! This module owns parsing and defaults; it touches nothing. Defaults are
//! Ganeti's paths, so the binary is a drop-in replacement; the path flags
//! make it usable without Ganeti (`--ctrl-dir`, `--no-ssconf`, ...).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) const DEFAULT_CTRL_DIR: &str = "/var/run/ganeti/kvm-hypervisor/ctrl";
/// The journal on a node: the Debian packages' units use it too, so
/// `kvmd history` finds it with no flag.
pub(crate) const DURABLE_JOURNAL_DIR: &str = "/var/lib/kvmd";
/// The control directory of README's first-run command.
const FIRST_RUN_CTRL_DIR: &str = "/run/kvmd";
pub(crate) const DEFAULT_SSCONF_DIR: &str = "/var/lib/ganeti";
pub(crate) const DEFAULT_PID_FILE: &str = "/var/run/ganeti/ganeti-kvmd.pid";
pub(crate) const DEFAULT_LOG_FILE: &str = "/var/log/ganeti/kvm-daemon.log";

/// `--syslog=no|yes|only`, Ganeti's meaning: `no` = log file only, `yes` =
/// log file and syslog, `only` = syslog only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syslog {
    No,
    Yes,
    Only,
}

/// How to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The name the program was invoked by, for logs and messages.
    pub program: String,
    pub foreground: bool,
    pub debug: bool,
    pub syslog: Syslog,
    pub user_checks: bool,
    pub ssconf_checks: bool,
    pub ctrl_dir: PathBuf,
    pub ssconf_dir: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    /// Where evidence that must survive a restart is kept; default: the
    /// control directory's sibling `kvmd-state`.
    pub state_dir: PathBuf,
    /// Users besides root (or kvmd's own user) whose sockets kvmd trusts.
    pub(crate) socket_owners: Vec<u32>,
    /// Where `kvmd status` and `kvmd events` ask (default: beside the pid
    /// file, `<pid file without .pid>.sock`).
    pub(crate) control_socket: PathBuf,
    /// Prometheus text-format metrics, rewritten when something changes.
    pub(crate) metrics_file: Option<PathBuf>,
    /// The program run after every verdict written (`--on-verdict`).
    pub on_verdict: Option<PathBuf>,
    /// Hooks run at once, at most.
    pub(crate) hook_jobs: usize,
    /// A hook running longer is killed (its process group).
    pub(crate) hook_timeout: std::time::Duration,
    /// Runs after the first for a hook that failed.
    pub(crate) hook_retries: u32,
    /// Where the journal of verdicts is kept (`--journal-dir`; default:
    /// the state directory).
    pub(crate) journal_dir: PathBuf,
    /// The bound on all the journal's files together (`--journal-max`).
    pub(crate) journal_max: u64,
}

/// `kvmd status` or `kvmd events`: a client of a running daemon.
#[derive(Debug, PartialEq, Eq)]
pub struct Client {
    pub(crate) program: String,
    /// The socket named by `--control-socket` (or derived from
    /// `--pid-file`); `None`: look in the default places.
    pub(crate) control_socket: Option<PathBuf>,
    pub(crate) json: bool,
    /// `status` only: the instances to show (all when empty).
    pub(crate) instances: Vec<String>,
}

/// `kvmd history`: the journal read from its files, whether kvmd runs or
/// not.
#[derive(Debug, PartialEq, Eq)]
pub struct History {
    pub(crate) program: String,
    /// `--journal-dir`, else `--state-dir`, else the state directory the
    /// daemon derives from `--ctrl-dir` (or its default).
    pub(crate) journal_dir: PathBuf,
    /// With no path flag at all: where README's first-run daemon keeps
    /// its journal, read when `journal_dir` has none (as `kvmd status`
    /// tries that daemon's socket too).
    pub(crate) first_run_dir: Option<PathBuf>,
    pub(crate) json: bool,
    /// Only this instance's records (its name as `kvmd status` shows it).
    pub(crate) instance: Option<String>,
    pub(crate) since: Option<crate::adapters::journal::Since>,
}

/// Where `kvmd status` looks when not told: beside Ganeti's pid file, then
/// the standalone unit's, then README's first-run command's.
pub(crate) const DEFAULT_CONTROL_SOCKETS: [&str; 3] = [
    "/var/run/ganeti/ganeti-kvmd.sock",
    "/run/kvmd-daemon/kvmd.sock",
    "/run/kvmd.sock",
];

/// `kvmd expect-stop` or `kvmd powerdown-all`: an order to a running
/// daemon.
#[derive(Debug, PartialEq, Eq)]
pub struct Order {
    pub(crate) program: String,
    /// As [`Client::control_socket`].
    pub(crate) control_socket: Option<PathBuf>,
    pub(crate) json: bool,
    pub(crate) what: OrderKind,
}

/// What is ordered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OrderKind {
    /// `expect-stop INSTANCE [--for SECONDS] [--by TEXT]`.
    ExpectStop {
        instance: String,
        seconds: u64,
        by: String,
    },
    /// `expect-stop --cancel INSTANCE`.
    Cancel { instance: String },
    /// `powerdown-all [--timeout SECONDS] [--by TEXT]`.
    PowerdownAll { seconds: u64, by: String },
}

/// `kvmd doctor`: the daemon's own flags (so its command line can be
/// pasted after `doctor`), plus `--json` and at most one instance.
#[derive(Debug, PartialEq, Eq)]
pub struct Doctor {
    /// Where to look, as the daemon would be configured by the same flags.
    pub(crate) config: Config,
    pub(crate) json: bool,
    /// Only this instance's findings (and the node's).
    pub(crate) instance: Option<String>,
    /// No flag named a path or `--no-ssconf`: the doctor may take the
    /// running daemon's own command line instead of the defaults.
    pub(crate) defaults: bool,
}

/// What the command line asks for.
// Made once per process: the size of `Run`'s `Config` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    Run(Config),
    Status(Client),
    Events(Client),
    Order(Order),
    Doctor(Doctor),
    Help(String),
    Version(String),
    History(History),
}

/// A command line kvmd cannot follow. The message names the flag.
#[derive(Debug, PartialEq, Eq)]
pub enum UsageError {
    UnknownFlag(String),
    MissingValue(&'static str),
    /// A command's argument is missing (`INSTANCE`).
    MissingArgument(&'static str),
    UnexpectedValue(&'static str),
    BadValue {
        flag: &'static str,
        value: String,
    },
    /// `--for` or `--timeout` that is not a whole number of seconds in
    /// the range an intent may have: said with the range, since this is
    /// often a value from a configuration file (`KVMD_POWERDOWN_TIMEOUT`).
    BadSeconds {
        flag: &'static str,
        value: String,
    },
    UnexpectedArgument(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::UnknownFlag(flag) => write!(f, "unknown option '{flag}'"),
            UsageError::MissingValue(flag) => write!(f, "option '{flag}' needs a value"),
            UsageError::MissingArgument(what) => write!(f, "missing {what}"),
            UsageError::UnexpectedValue(flag) => write!(f, "option '{flag}' takes no value"),
            UsageError::BadValue { flag, value } => {
                write!(f, "invalid value '{value}' for option '{flag}'")
            }
            UsageError::BadSeconds { flag, value } => write!(
                f,
                "invalid value '{value}' for option '{flag}': a whole number of seconds from 1 to {}",
                kvmd_core::fleet::MAX_WINDOW.as_secs()
            ),
            UsageError::UnexpectedArgument(arg) => write!(f, "unexpected argument '{arg}'"),
        }
    }
}

impl std::error::Error for UsageError {}

/// The program's name as invoked: the file name of `argv[0]`.
pub fn program_name(argv0: Option<&OsStr>) -> String {
    argv0
        .map(Path::new)
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kvmd".to_owned())
}

/// Parses `args` (with `argv[0]` first). Relative paths are made absolute
/// against `cwd`, since the daemon changes its directory to `/`.
pub fn parse<I>(args: I, cwd: &Path) -> Result<Invocation, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter().peekable();
    let program = program_name(args.next().as_deref());
    match args.peek().and_then(|a| a.to_str()) {
        Some("history") => {
            args.next();
            return parse_history(program, args, cwd).map(Invocation::History);
        }
        Some("status") => {
            args.next();
            return parse_client(program, args, cwd, true).map(Invocation::Status);
        }
        Some("events") => {
            args.next();
            return parse_client(program, args, cwd, false).map(Invocation::Events);
        }
        Some(command @ ("expect-stop" | "powerdown-all")) => {
            let powerdown = command == "powerdown-all";
            args.next();
            return parse_order(program, args, cwd, powerdown).map(Invocation::Order);
        }
        Some("doctor") => {
            args.next();
            return parse_doctor(program, args, cwd);
        }
        _ => {}
    }
    let mut control_socket = None;
    let mut config = Config {
        program,
        foreground: false,
        debug: false,
        syslog: Syslog::No,
        user_checks: true,
        ssconf_checks: true,
        ctrl_dir: PathBuf::from(DEFAULT_CTRL_DIR),
        ssconf_dir: PathBuf::from(DEFAULT_SSCONF_DIR),
        pid_file: PathBuf::from(DEFAULT_PID_FILE),
        log_file: PathBuf::from(DEFAULT_LOG_FILE),
        state_dir: PathBuf::new(),
        socket_owners: Vec::new(),
        control_socket: PathBuf::new(),
        metrics_file: None,
        on_verdict: None,
        hook_jobs: 4,
        hook_timeout: std::time::Duration::from_secs(60),
        hook_retries: 0,
        journal_dir: PathBuf::new(),
        journal_max: crate::adapters::journal::DEFAULT_MAX_TOTAL,
    };
    let mut state_dir = None;
    let mut journal_dir = None;
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            return Err(UsageError::UnexpectedArgument(
                arg.to_string_lossy().into_owned(),
            ));
        };
        // `--` ends the options, as getopt has it; nothing may follow.
        if text == "--" {
            if let Some(extra) = args.next() {
                let extra = extra.to_string_lossy().into_owned();
                return Err(UsageError::UnexpectedArgument(extra));
            }
            break;
        }
        // Short flags may be bundled (`-fd`), as getopt allows.
        if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.starts_with('-')) {
            if shorts.is_empty() {
                return Err(UsageError::UnexpectedArgument(text.to_owned()));
            }
            for short in shorts.chars() {
                match short {
                    'f' => config.foreground = true,
                    'd' => config.debug = true,
                    'h' => return Ok(Invocation::Help(help(&config.program))),
                    'V' => return Ok(Invocation::Version(version(&config.program))),
                    _ => return Err(UsageError::UnknownFlag(format!("-{short}"))),
                }
            }
            continue;
        }
        let Some(long) = text.strip_prefix("--") else {
            return Err(UsageError::UnexpectedArgument(text.to_owned()));
        };
        let (name, inline) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (long, None),
        };
        let flag = match LONG_FLAGS.iter().find(|flag| flag.name == name) {
            Some(flag) => flag,
            None => return Err(UsageError::UnknownFlag(format!("--{name}"))),
        };
        let value = match (flag.takes_value, inline) {
            (false, Some(_)) => return Err(UsageError::UnexpectedValue(flag.spelled)),
            (false, None) => None,
            (true, Some(value)) => Some(OsString::from(value)),
            (true, None) => Some(args.next().ok_or(UsageError::MissingValue(flag.spelled))?),
        };
        let path = |value: Option<OsString>| -> Result<PathBuf, UsageError> {
            match value {
                Some(value) if !value.is_empty() => Ok(cwd.join(value)),
                _ => Err(UsageError::BadValue {
                    flag: flag.spelled,
                    value: String::new(),
                }),
            }
        };
        match flag.name {
            "foreground" => config.foreground = true,
            "debug" => config.debug = true,
            "no-user-checks" => config.user_checks = false,
            "no-ssconf" => config.ssconf_checks = false,
            "help" => return Ok(Invocation::Help(help(&config.program))),
            "version" => return Ok(Invocation::Version(version(&config.program))),
            "syslog" => {
                let value = value.unwrap_or_default();
                config.syslog = match value.to_str() {
                    Some("no") => Syslog::No,
                    Some("yes") => Syslog::Yes,
                    Some("only") => Syslog::Only,
                    _ => {
                        return Err(UsageError::BadValue {
                            flag: flag.spelled,
                            value: value.to_string_lossy().into_owned(),
                        });
                    }
                }
            }
            "ctrl-dir" => config.ctrl_dir = path(value)?,
            "ssconf-dir" => config.ssconf_dir = path(value)?,
            "pid-file" => config.pid_file = path(value)?,
            "log-file" => config.log_file = path(value)?,
            "state-dir" => state_dir = Some(path(value)?),
            "journal-dir" => journal_dir = Some(path(value)?),
            "journal-max" => {
                let value = value.unwrap_or_default();
                match value
                    .to_str()
                    .and_then(crate::adapters::journal::parse_max_total)
                {
                    Some(bytes) => config.journal_max = bytes,
                    None => {
                        return Err(UsageError::BadValue {
                            flag: flag.spelled,
                            value: value.to_string_lossy().into_owned(),
                        });
                    }
                }
            }
            "control-socket" => control_socket = Some(path(value)?),
            "metrics-file" => config.metrics_file = Some(path(value)?),
            // Kept as given: a relative path is refused at start-up, with
            // the reason (an absolute one is required).
            "on-verdict" => {
                let value = value.unwrap_or_default();
                if value.is_empty() {
                    return Err(UsageError::BadValue {
                        flag: flag.spelled,
                        value: String::new(),
                    });
                }
                config.on_verdict = Some(PathBuf::from(value));
            }
            "hook-jobs" | "hook-timeout" | "hook-retries" => {
                let value = value.unwrap_or_default();
                let number = value.to_str().and_then(|v| v.parse::<u32>().ok());
                let bad = || UsageError::BadValue {
                    flag: flag.spelled,
                    value: value.to_string_lossy().into_owned(),
                };
                match (flag.name, number) {
                    ("hook-jobs", Some(n)) if n > 0 => config.hook_jobs = n as usize,
                    ("hook-timeout", Some(n)) if n > 0 => {
                        config.hook_timeout = std::time::Duration::from_secs(u64::from(n));
                    }
                    ("hook-retries", Some(n)) => config.hook_retries = n,
                    _ => return Err(bad()),
                }
            }
            "socket-owner" => {
                let value = value.unwrap_or_default();
                match value.to_str().and_then(|uid| uid.parse().ok()) {
                    Some(uid) => config.socket_owners.push(uid),
                    None => {
                        return Err(UsageError::BadValue {
                            flag: flag.spelled,
                            value: value.to_string_lossy().into_owned(),
                        });
                    }
                }
            }
            _ => unreachable!("every entry of LONG_FLAGS is matched"),
        }
    }
    if config.ctrl_dir == Path::new("/") {
        return Err(UsageError::BadValue {
            flag: "--ctrl-dir",
            value: "/".to_owned(),
        });
    }
    config.journal_dir = journal_dir
        .or_else(|| state_dir.clone())
        .unwrap_or_else(|| default_journal_dir(&config.ctrl_dir));
    config.state_dir = state_dir.unwrap_or_else(|| default_state_dir(&config.ctrl_dir));
    config.control_socket =
        control_socket.unwrap_or_else(|| default_control_socket(&config.pid_file));
    Ok(Invocation::Run(config))
}

/// The control socket beside a pid file: `ganeti-kvmd.pid` →
/// `ganeti-kvmd.sock`, in the same directory (Ganeti's run directory, or
/// the standalone unit's).
pub(crate) fn default_control_socket(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("sock")
}

/// `kvmd status [--json] [INSTANCE...]` and `kvmd events [--json]`, with
/// the flags that say where the daemon is.
fn parse_client<I>(program: String, args: I, cwd: &Path, status: bool) -> Result<Client, UsageError>
where
    I: Iterator<Item = OsString>,
{
    let mut client = Client {
        program,
        control_socket: None,
        json: false,
        instances: Vec::new(),
    };
    let mut args = args;
    let mut options = true;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if options && text == "--" {
            options = false;
            continue;
        }
        if options && text.starts_with('-') {
            let (name, inline) = match text.split_once('=') {
                Some((name, value)) => (name, Some(OsString::from(value))),
                None => (text.as_str(), None),
            };
            let mut value = |flag: &'static str| -> Result<PathBuf, UsageError> {
                let value = inline.clone().or_else(|| args.next());
                match value {
                    Some(value) if !value.is_empty() => Ok(cwd.join(value)),
                    Some(_) => Err(UsageError::BadValue {
                        flag,
                        value: String::new(),
                    }),
                    None => Err(UsageError::MissingValue(flag)),
                }
            };
            match name {
                "--json" if inline.is_none() => client.json = true,
                "--control-socket" => client.control_socket = Some(value("--control-socket")?),
                "--pid-file" => {
                    let pid_file = value("--pid-file")?;
                    client
                        .control_socket
                        .get_or_insert(default_control_socket(&pid_file));
                }
                _ => return Err(UsageError::UnknownFlag(name.to_owned())),
            }
            continue;
        }
        if !status {
            return Err(UsageError::UnexpectedArgument(text));
        }
        client.instances.push(text);
    }
    Ok(client)
}

/// An empty value given for `flag`, as the text to judge (and refuse with
/// the range: `KVMD_POWERDOWN_TIMEOUT=` in a file is the usual way to get
/// one); any other error as it is.
fn empty_is_text(error: UsageError, flag: &'static str) -> Result<String, UsageError> {
    match error {
        UsageError::BadValue { flag: f, value } if f == flag && value.is_empty() => Ok(value),
        other => Err(other),
    }
}

/// `kvmd expect-stop [--cancel] INSTANCE [--for S] [--by TEXT]` and
/// `kvmd powerdown-all [--timeout S] [--by TEXT]`.
fn parse_order<I>(
    program: String,
    args: I,
    cwd: &Path,
    powerdown: bool,
) -> Result<Order, UsageError>
where
    I: Iterator<Item = OsString>,
{
    let mut control_socket = None;
    let mut json = false;
    let mut cancel = false;
    let mut seconds = None;
    let mut by = None;
    let mut instance = None;
    let mut args = args;
    let mut options = true;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if options && text == "--" {
            options = false;
            continue;
        }
        if options && text.starts_with('-') {
            let (name, inline) = match text.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (text.clone(), None),
            };
            let mut value = |flag: &'static str| -> Result<String, UsageError> {
                match inline
                    .clone()
                    .or_else(|| args.next().map(|a| a.to_string_lossy().into_owned()))
                {
                    Some(value) if !value.is_empty() => Ok(value),
                    Some(_) => Err(UsageError::BadValue {
                        flag,
                        value: String::new(),
                    }),
                    None => Err(UsageError::MissingValue(flag)),
                }
            };
            // Digits only: `parse` would also take a sign (`+120`), and
            // nothing else may pass for a number of seconds.
            let window = |flag: &'static str, value: String| -> Result<u64, UsageError> {
                let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                match value.parse::<u64>() {
                    Ok(n)
                        if digits
                            && kvmd_core::fleet::valid_window(std::time::Duration::from_secs(
                                n,
                            )) =>
                    {
                        Ok(n)
                    }
                    _ => Err(UsageError::BadSeconds { flag, value }),
                }
            };
            match name.as_str() {
                "--json" if inline.is_none() => json = true,
                "--cancel" if inline.is_none() && !powerdown => cancel = true,
                "--for" if !powerdown => {
                    let given = value("--for").or_else(|e| empty_is_text(e, "--for"))?;
                    seconds = Some(window("--for", given)?);
                }
                "--timeout" if powerdown => {
                    let given = value("--timeout").or_else(|e| empty_is_text(e, "--timeout"))?;
                    seconds = Some(window("--timeout", given)?);
                }
                "--by" => {
                    let text = value("--by")?;
                    if !kvmd_core::fleet::valid_by(&text) {
                        return Err(UsageError::BadValue {
                            flag: "--by",
                            value: text,
                        });
                    }
                    by = Some(text);
                }
                "--control-socket" => {
                    control_socket = Some(cwd.join(value("--control-socket")?));
                }
                "--pid-file" => {
                    let pid_file = cwd.join(value("--pid-file")?);
                    control_socket.get_or_insert(default_control_socket(&pid_file));
                }
                _ => return Err(UsageError::UnknownFlag(name)),
            }
            continue;
        }
        if powerdown || instance.is_some() {
            return Err(UsageError::UnexpectedArgument(text));
        }
        if kvmd_core::name::InstanceName::new(text.as_ref()).is_none() {
            return Err(UsageError::BadValue {
                flag: "INSTANCE",
                value: text,
            });
        }
        instance = Some(text);
    }
    let seconds = seconds.unwrap_or(kvmd_core::fleet::DEFAULT_WINDOW.as_secs());
    let what = if powerdown {
        OrderKind::PowerdownAll {
            seconds,
            by: by.unwrap_or_else(|| kvmd_core::control::POWERDOWN_BY.to_owned()),
        }
    } else {
        let instance = instance.ok_or(UsageError::MissingArgument("INSTANCE"))?;
        if cancel {
            OrderKind::Cancel { instance }
        } else {
            OrderKind::ExpectStop {
                instance,
                seconds,
                by: by.unwrap_or_else(|| "expect-stop".to_owned()),
            }
        }
    };
    Ok(Order {
        program,
        control_socket,
        json,
        what,
    })
}

/// `kvmd doctor [--json] [DAEMON FLAGS] [INSTANCE]`: `--json` and the
/// instance are taken out, and the rest parsed as the daemon's flags.
fn parse_doctor<I>(program: String, args: I, cwd: &Path) -> Result<Invocation, UsageError>
where
    I: Iterator<Item = OsString>,
{
    let mut json = false;
    let mut instance = None;
    let mut rest = vec![OsString::from(&program)];
    let mut args = args;
    let mut options = true;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if options && text == "--" {
            options = false;
        } else if options && text == "--json" {
            json = true;
        } else if options && text.starts_with('-') {
            // A flag that takes its value as the next word keeps it.
            let name = text.trim_start_matches('-');
            let takes_value = text.starts_with("--")
                && !name.contains('=')
                && LONG_FLAGS.iter().any(|f| f.name == name && f.takes_value);
            rest.push(arg.clone());
            if takes_value && let Some(value) = args.next() {
                rest.push(value);
            }
        } else if instance.is_none() {
            instance = Some(text.into_owned());
        } else {
            return Err(UsageError::UnexpectedArgument(text.into_owned()));
        }
    }
    let defaults = rest.len() == 1;
    match parse(rest, cwd)? {
        Invocation::Run(config) => Ok(Invocation::Doctor(Doctor {
            config,
            json,
            instance,
            defaults,
        })),
        other => Ok(other),
    }
}

/// `kvmd-state` beside the control directory: on the same file system
/// (a tmpfs under /run on Ganeti nodes), so it lives exactly as long as
/// the guests it describes.
pub(crate) fn default_state_dir(ctrl_dir: &Path) -> PathBuf {
    ctrl_dir
        .parent()
        .unwrap_or_else(|| Path::new("/"))
        .join("kvmd-state")
}

/// Where the journal is when neither `--journal-dir` nor `--state-dir`
/// says: on a Ganeti node (Ganeti's control directory), on disk in
/// [`DURABLE_JOURNAL_DIR`], since the state directory is on a tmpfs and a
/// record of every stop must outlive a reboot (Ganeti starts ganeti-kvmd
/// with its own flags, so this default is what a node gets); elsewhere
/// beside the state, as a non-root run may write nowhere else.
pub(crate) fn default_journal_dir(ctrl_dir: &Path) -> PathBuf {
    if ctrl_dir == Path::new(DEFAULT_CTRL_DIR) {
        PathBuf::from(DURABLE_JOURNAL_DIR)
    } else {
        default_state_dir(ctrl_dir)
    }
}

/// `kvmd history [--json] [INSTANCE] [--since TIME]`, with the daemon's
/// path flags to find the journal.
fn parse_history<I>(program: String, args: I, cwd: &Path) -> Result<History, UsageError>
where
    I: Iterator<Item = OsString>,
{
    let mut history = History {
        program,
        journal_dir: PathBuf::new(),
        first_run_dir: None,
        json: false,
        instance: None,
        since: None,
    };
    let (mut journal_dir, mut state_dir, mut ctrl_dir) = (None, None, None);
    let mut args = args;
    let mut options = true;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if options && text == "--" {
            options = false;
            continue;
        }
        if options && text.starts_with('-') {
            let (name, inline) = match text.split_once('=') {
                Some((name, value)) => (name, Some(OsString::from(value))),
                None => (text.as_str(), None),
            };
            let mut value = |flag: &'static str| -> Result<OsString, UsageError> {
                match inline.clone().or_else(|| args.next()) {
                    Some(value) if !value.is_empty() => Ok(value),
                    Some(_) => Err(UsageError::BadValue {
                        flag,
                        value: String::new(),
                    }),
                    None => Err(UsageError::MissingValue(flag)),
                }
            };
            match name {
                "--json" if inline.is_none() => history.json = true,
                "--since" => {
                    let value = value("--since")?;
                    let since = value
                        .to_str()
                        .and_then(crate::adapters::journal::parse_since);
                    history.since = Some(since.ok_or_else(|| UsageError::BadValue {
                        flag: "--since",
                        value: value.to_string_lossy().into_owned(),
                    })?);
                }
                "--journal-dir" => journal_dir = Some(cwd.join(value("--journal-dir")?)),
                "--state-dir" => state_dir = Some(cwd.join(value("--state-dir")?)),
                "--ctrl-dir" => ctrl_dir = Some(cwd.join(value("--ctrl-dir")?)),
                _ => return Err(UsageError::UnknownFlag(name.to_owned())),
            }
            continue;
        }
        if history.instance.is_some() {
            return Err(UsageError::UnexpectedArgument(text));
        }
        history.instance = Some(text);
    }
    if journal_dir.is_none() && state_dir.is_none() && ctrl_dir.is_none() {
        history.first_run_dir = Some(default_journal_dir(Path::new(FIRST_RUN_CTRL_DIR)));
    }
    let ctrl_dir = ctrl_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_CTRL_DIR));
    if ctrl_dir == Path::new("/") {
        return Err(UsageError::BadValue {
            flag: "--ctrl-dir",
            value: "/".to_owned(),
        });
    }
    history.journal_dir = journal_dir
        .or(state_dir)
        .unwrap_or_else(|| default_journal_dir(&ctrl_dir));
    Ok(history)
}

struct LongFlag {
    name: &'static str,
    spelled: &'static str,
    takes_value: bool,
}

const fn flag(name: &'static str, spelled: &'static str, takes_value: bool) -> LongFlag {
    LongFlag {
        name,
        spelled,
        takes_value,
    }
}

const LONG_FLAGS: &[LongFlag] = &[
    flag("foreground", "--foreground", false),
    flag("debug", "--debug", false),
    flag("no-user-checks", "--no-user-checks", false),
    flag("no-ssconf", "--no-ssconf", false),
    flag("help", "--help", false),
    flag("version", "--version", false),
    flag("syslog", "--syslog", true),
    flag("ctrl-dir", "--ctrl-dir", true),
    flag("ssconf-dir", "--ssconf-dir", true),
    flag("pid-file", "--pid-file", true),
    flag("log-file", "--log-file", true),
    flag("state-dir", "--state-dir", true),
    flag("socket-owner", "--socket-owner", true),
    flag("control-socket", "--control-socket", true),
    flag("metrics-file", "--metrics-file", true),
    flag("on-verdict", "--on-verdict", true),
    flag("hook-jobs", "--hook-jobs", true),
    flag("hook-timeout", "--hook-timeout", true),
    flag("hook-retries", "--hook-retries", true),
    flag("journal-dir", "--journal-dir", true),
    flag("journal-max", "--journal-max", true),
];

fn version(program: &str) -> String {
    format!(
        "{program} (kvmd) {}\nA drop-in replacement for Ganeti's ganeti-kvmd.\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn help(program: &str) -> String {
    format!(
        "Usage: {program} [OPTION]...
Watches QEMU's QMP sockets (<instance>.kvmd) in the control directory and,
when a guest stops, records whether its user shut it down from inside
(<instance>.shutdown created) or not (removed).

Options (as Ganeti's ganeti-kvmd):
  -f, --foreground       do not detach; log to stderr too
  -d, --debug            log debug lines (every inotify event and QMP line)
      --syslog=no|yes|only
                         no: log file only (default); yes: log file and
                         syslog; only: syslog only
      --no-user-checks   do not insist on running as root
  -h, --help             show this help and exit
  -V, --version          show the version and exit

kvmd's own:
      --ctrl-dir DIR     control directory [{DEFAULT_CTRL_DIR}]
      --ssconf-dir DIR   Ganeti's ssconf directory [{DEFAULT_SSCONF_DIR}]
      --no-ssconf        skip Ganeti's start-up checks (no cluster needed)
      --pid-file FILE    pid file [{DEFAULT_PID_FILE}]
      --log-file FILE    log file [{DEFAULT_LOG_FILE}]
      --state-dir DIR    evidence kept across restarts [kvmd-state beside
                         the control directory]
      --socket-owner UID also trust QMP sockets owned by UID (repeatable;
                         root's, or kvmd's own user's, are always trusted)
      --control-socket PATH
                         where `status` and `events` ask [the pid file's
                         name with .sock for .pid]
      --metrics-file PATH
                         write Prometheus metrics there (for node_exporter's
                         textfile collector) when something changes
      --on-verdict PROG  run PROG INSTANCE VERDICT REASON after every verdict
                         written (at least once; it must be idempotent)
      --hook-jobs N      hooks run at once, at most [4]
      --hook-timeout S   a hook running longer is killed [60]
      --hook-retries N   runs after the first, for a failed hook [0]
      --journal-dir DIR  where every verdict is recorded [the state
                         directory]
      --journal-max BYTES
                         the journal's files together, at most (K, M, G:
                         KiB, MiB, GiB; 256K to 1G) [8M]

Reading the journal (kvmd need not run; same --journal-dir, --state-dir
or --ctrl-dir as the daemon):
  {program} history [--json] [INSTANCE] [--since TIME]
                         every verdict and guest crash recorded, oldest
                         first; TIME: 2026-12-04, 2026-12-04T18:20[:SS] (UTC),
                         or 90s, 30m, 2h, 7d ago

As a client of a running kvmd (same --pid-file or --control-socket):
  {program} status [--json] [INSTANCE]...
                         what kvmd knows: each instance's phase, guest state,
                         evidence so far, and recent verdicts with reasons
  {program} events [--json]
                         follow what kvmd does, one line per event
  {program} expect-stop INSTANCE [--for SECONDS] [--by TEXT]
                         the host is about to stop INSTANCE: its next
                         SHUTDOWN within SECONDS [120, at most 3600] is the
                         host's (verdict not-user, reason host-intent),
                         whatever QMP says
  {program} expect-stop --cancel INSTANCE
                         withdraw that intent
  {program} powerdown-all [--timeout SECONDS] [--by TEXT]
                         press every monitored guest's power button, each
                         stop recorded as the host's (by node-shutdown);
                         wait until each QEMU is gone or SECONDS [120] pass

Troubleshooting (kvmd running or not; the daemon's flags say where to look):
  {program} doctor [--json] [OPTION]... [INSTANCE]
                         check and explain why user-shutdown detection
                         works or not here: exit 0 all ok, 1 something
                         fails, 3 warnings only
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, UsageError> {
        let args = std::iter::once("/usr/sbin/ganeti-kvmd")
            .chain(args.iter().copied())
            .map(OsString::from);
        match parse(args, Path::new("/work"))? {
            Invocation::Run(config) => Ok(config),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    fn order(args: &[&str]) -> Result<Order, UsageError> {
        let args = std::iter::once("kvmd")
            .chain(args.iter().copied())
            .map(OsString::from);
        match parse(args, Path::new("/work"))? {
            Invocation::Order(order) => Ok(order),
            other => panic!("expected an order, got {other:?}"),
        }
    }

    /// `KVMD_POWERDOWN_TIMEOUT` reaches `--timeout` from a file an operator
    /// edits: anything but 1 to 3600 plain digits is refused, with the
    /// range, never taken for some other timeout or none.
    #[test]
    fn a_powerdown_timeout_is_whole_seconds_within_the_range() {
        for (given, seconds) in [("1", 1), ("120", 120), ("0300", 300), ("3600", 3600)] {
            let parsed = order(&["powerdown-all", "--timeout", given]).expect("parses");
            assert!(
                matches!(parsed.what, OrderKind::PowerdownAll { seconds: s, .. } if s == seconds),
                "{given}: {parsed:?}"
            );
        }
        let parsed = order(&["powerdown-all"]).expect("parses");
        assert!(matches!(
            parsed.what,
            OrderKind::PowerdownAll { seconds: 120, .. }
        ));
        for bad in [
            "",
            "0",
            "3601",
            "+120",
            "-1",
            "120 ",
            " 120",
            "2m",
            "1e3",
            "120s",
            "0x10",
            "99999999999999999999",
        ] {
            for flag in ["--timeout", "--timeout="] {
                let args: Vec<String> = if flag.ends_with('=') {
                    vec!["powerdown-all".into(), format!("{flag}{bad}")]
                } else {
                    vec!["powerdown-all".into(), flag.into(), bad.into()]
                };
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let error = order(&args).expect_err(bad);
                assert_eq!(
                    error,
                    UsageError::BadSeconds {
                        flag: "--timeout",
                        value: bad.to_owned()
                    },
                    "{args:?}"
                );
                assert_eq!(
                    error.to_string(),
                    format!(
                        "invalid value '{bad}' for option '--timeout': a whole number of seconds \
                         from 1 to 3600"
                    )
                );
            }
        }
        assert_eq!(
            order(&["powerdown-all", "--timeout"]).expect_err("no value"),
            UsageError::MissingValue("--timeout")
        );
        assert_eq!(
            order(&["expect-stop", "vm1", "--for", "+5"]).expect_err("a sign"),
            UsageError::BadSeconds {
                flag: "--for",
                value: "+5".to_owned()
            }
        );
    }

    #[test]
    fn defaults_are_ganetis() {
        let config = run(&[]).expect("parses");
        assert_eq!(config.program, "ganeti-kvmd");
        assert!(!config.foreground && !config.debug);
        assert!(config.user_checks && config.ssconf_checks);
        assert_eq!(config.syslog, Syslog::No);
        assert_eq!(config.ctrl_dir, Path::new(DEFAULT_CTRL_DIR));
        assert_eq!(config.pid_file, Path::new(DEFAULT_PID_FILE));
        assert_eq!(config.log_file, Path::new(DEFAULT_LOG_FILE));
        assert_eq!(
            config.state_dir,
            Path::new("/var/run/ganeti/kvm-hypervisor/kvmd-state")
        );
    }

    #[test]
    fn ganeti_flags() {
        let config = run(&["-fd", "--no-user-checks", "--syslog=only"]).expect("parses");
        assert!(config.foreground && config.debug && !config.user_checks);
        assert_eq!(config.syslog, Syslog::Only);
        let config = run(&["--foreground", "--debug", "--syslog", "yes"]).expect("parses");
        assert!(config.foreground && config.debug);
        assert_eq!(config.syslog, Syslog::Yes);
    }

    #[test]
    fn own_flags_and_relative_paths() {
        let config = run(&[
            "--no-ssconf",
            "--ctrl-dir",
            "ctrl",
            "--pid-file=/run/k.pid",
            "--log-file",
            "log/k.log",
            "--ssconf-dir=/etc/ss",
        ])
        .expect("parses");
        assert_eq!(config.state_dir, Path::new("/work/kvmd-state"));
        let other = run(&["--ctrl-dir=/c", "--state-dir", "/s"]).expect("parses");
        assert_eq!(other.state_dir, Path::new("/s"));
        let owners = run(&["--socket-owner", "107", "--socket-owner=64055"]).expect("parses");
        assert_eq!(owners.socket_owners, vec![107, 64055]);
        assert!(run(&["--socket-owner", "qemu"]).is_err());
        assert!(!config.ssconf_checks);
        assert_eq!(config.ctrl_dir, Path::new("/work/ctrl"));
        assert_eq!(config.pid_file, Path::new("/run/k.pid"));
        assert_eq!(config.log_file, Path::new("/work/log/k.log"));
        assert_eq!(config.ssconf_dir, Path::new("/etc/ss"));
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(
            run(&["--frobnicate"]).unwrap_err().to_string(),
            "unknown option '--frobnicate'"
        );
        assert_eq!(run(&["-x"]).unwrap_err().to_string(), "unknown option '-x'");
        assert_eq!(
            run(&["--syslog=maybe"]).unwrap_err().to_string(),
            "invalid value 'maybe' for option '--syslog'"
        );
        assert_eq!(
            run(&["--ctrl-dir"]).unwrap_err().to_string(),
            "option '--ctrl-dir' needs a value"
        );
        assert_eq!(
            run(&["--debug=1"]).unwrap_err().to_string(),
            "option '--debug' takes no value"
        );
        assert_eq!(
            run(&["stray"]).unwrap_err().to_string(),
            "unexpected argument 'stray'"
        );
        assert!(run(&["--ctrl-dir", "/"]).is_err());
        assert!(
            run(&["-f", "--"])
                .expect("a lone -- ends the options")
                .foreground
        );
        assert_eq!(
            run(&["--", "stray"]).unwrap_err().to_string(),
            "unexpected argument 'stray'"
        );
        assert!(run(&["--pid-file="]).is_err());
    }

    #[test]
    fn doctor_takes_the_daemons_flags_json_and_one_instance() {
        let doctor = |args: &[&str]| {
            let args = ["kvmd", "doctor"].iter().chain(args).map(OsString::from);
            parse(args, Path::new("/work"))
        };
        let Ok(Invocation::Doctor(d)) = doctor(&[]) else {
            panic!("a doctor")
        };
        assert!(d.defaults && !d.json && d.instance.is_none());
        assert_eq!(d.config.ctrl_dir, Path::new(DEFAULT_CTRL_DIR));
        let Ok(Invocation::Doctor(d)) = doctor(&[
            "-f",
            "--no-ssconf",
            "--ctrl-dir",
            "ctrl",
            "vm1",
            "--json",
            "--on-verdict=/usr/local/lib/hook",
        ]) else {
            panic!("a doctor")
        };
        assert!(!d.defaults && d.json && !d.config.ssconf_checks);
        assert_eq!(d.instance.as_deref(), Some("vm1"));
        assert_eq!(d.config.ctrl_dir, Path::new("/work/ctrl"));
        assert_eq!(
            d.config.on_verdict.as_deref(),
            Some(Path::new("/usr/local/lib/hook"))
        );
        assert_eq!(
            doctor(&["vm1", "vm2"]).unwrap_err().to_string(),
            "unexpected argument 'vm2'"
        );
        assert!(doctor(&["--frobnicate"]).is_err());
        assert!(matches!(doctor(&["--help"]), Ok(Invocation::Help(_))));
    }

    #[test]
    fn help_and_version() {
        let args = ["kvmd", "-h"].map(OsString::from);
        assert!(matches!(
            parse(args, Path::new("/")),
            Ok(Invocation::Help(text)) if text.contains("--ctrl-dir")
        ));
        let args = ["kvmd", "--version"].map(OsString::from);
        assert!(matches!(
            parse(args, Path::new("/")),
            Ok(Invocation::Version(text)) if text.starts_with("kvmd (kvmd) ")
        ));
    }

    #[test]
    fn the_journal_flags() {
        let config = run(&[]).expect("parses");
        assert_eq!(config.journal_dir, Path::new("/var/lib/kvmd"));
        let config = run(&["--ctrl-dir", "/run/kvmd"]).expect("parses");
        assert_eq!(config.journal_dir, config.state_dir);
        assert_eq!(config.journal_max, 8 << 20);
        let config = run(&["--state-dir", "s", "--journal-max=16M"]).expect("parses");
        assert_eq!(config.journal_dir, Path::new("/work/s"));
        assert_eq!(config.journal_max, 16 << 20);
        let config = run(&["--journal-dir", "j", "--state-dir", "s"]).expect("parses");
        assert_eq!(config.journal_dir, Path::new("/work/j"));
        assert_eq!(
            run(&["--journal-max", "1K"]).unwrap_err().to_string(),
            "invalid value '1K' for option '--journal-max'"
        );
        assert!(run(&["--journal-dir="]).is_err());
    }

    fn history(args: &[&str]) -> Result<History, UsageError> {
        let args = ["kvmd", "history"]
            .into_iter()
            .chain(args.iter().copied())
            .map(OsString::from);
        match parse(args, Path::new("/work"))? {
            Invocation::History(history) => Ok(history),
            other => panic!("expected history, got {other:?}"),
        }
    }

    #[test]
    fn history_finds_the_journal_as_the_daemon_does() {
        let h = history(&[]).expect("parses");
        assert_eq!(h.journal_dir, Path::new("/var/lib/kvmd"));
        assert_eq!(
            h.first_run_dir.as_deref(),
            Some(Path::new("/run/kvmd-state"))
        );
        let h = history(&["--ctrl-dir", "/var/run/ganeti/kvm-hypervisor/ctrl"]).expect("parses");
        assert_eq!(h.journal_dir, Path::new("/var/lib/kvmd"));
        assert_eq!(h.first_run_dir, None, "a path flag says where");
        assert!(!h.json && h.instance.is_none() && h.since.is_none());
        let h = history(&["--ctrl-dir", "/run/kvmd/ctrl"]).expect("parses");
        assert_eq!(h.journal_dir, Path::new("/run/kvmd/kvmd-state"));
        let h = history(&["--ctrl-dir=/c/d", "--state-dir", "s"]).expect("parses");
        assert_eq!(h.journal_dir, Path::new("/work/s"));
        let h = history(&["--journal-dir", "j", "--state-dir", "s"]).expect("parses");
        assert_eq!(h.journal_dir, Path::new("/work/j"));
        let h = history(&["vm1", "--json", "--since", "2h"]).expect("parses");
        assert!(h.json);
        assert_eq!(h.instance.as_deref(), Some("vm1"));
        assert_eq!(
            h.since,
            Some(crate::adapters::journal::Since::Ago(
                std::time::Duration::from_secs(7200)
            ))
        );
        let h = history(&["--", "-odd-name"]).expect("parses");
        assert_eq!(h.instance.as_deref(), Some("-odd-name"));
    }

    #[test]
    fn history_usage_errors_name_the_flag() {
        let error = |args: &[&str]| history(args).unwrap_err().to_string();
        assert_eq!(
            error(&["--since", "yesterday"]),
            "invalid value 'yesterday' for option '--since'"
        );
        assert_eq!(error(&["--since"]), "option '--since' needs a value");
        assert_eq!(
            error(&["--since="]),
            "invalid value '' for option '--since'"
        );
        assert_eq!(error(&["--follow"]), "unknown option '--follow'");
        assert_eq!(error(&["--json=yes"]), "unknown option '--json'");
        assert_eq!(error(&["vm1", "vm2"]), "unexpected argument 'vm2'");
        assert_eq!(
            error(&["--ctrl-dir", "/"]),
            "invalid value '/' for option '--ctrl-dir'"
        );
    }
}
