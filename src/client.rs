//! `kvmd status` and `kvmd events`: the same binary as a client of the
//! running daemon's control socket. Blocking I/O is fine here: this is a
//! short-lived command, not the daemon.
//!
//! Exit status (LSB's for status): 0 answered; 1 the daemon said no, or
//! cut a follower off; 3 no daemon answers where it looked; 4 not allowed
//! to ask.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use std::time::{Duration, Instant};

use crate::config::{Client, DEFAULT_CONTROL_SOCKETS, Order, OrderKind};
use crate::control::{self, Request};

/// The longest answer line read (a status of 10,000 instances is a few
/// MB; this leaves room and still bounds a confused peer).
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

enum Failure {
    NotRunning(Vec<PathBuf>),
    Denied(PathBuf),
    /// The daemon refused who is asking (its peer credentials).
    Refused(String),
    Other(String),
}

fn connect(control_socket: &Option<PathBuf>) -> Result<UnixStream, Failure> {
    let places: Vec<PathBuf> = match control_socket {
        Some(path) => vec![path.clone()],
        None => DEFAULT_CONTROL_SOCKETS.iter().map(PathBuf::from).collect(),
    };
    for place in &places {
        match UnixStream::connect(place) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Failure::Denied(place.clone()));
            }
            Err(_) => {}
        }
    }
    Err(Failure::NotRunning(places))
}

fn fail(program: &str, failure: Failure) -> ExitCode {
    match failure {
        Failure::NotRunning(places) => {
            let places: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "{program}: kvmd is not running (no control socket answers at {}; --control-socket or --pid-file name another)",
                places.join(", ")
            );
            ExitCode::from(3)
        }
        Failure::Denied(place) => {
            eprintln!(
                "{program}: not allowed to ask kvmd at {}: only root and kvmd's own user may",
                place.display()
            );
            ExitCode::from(4)
        }
        Failure::Refused(why) => {
            eprintln!("{program}: {why}");
            ExitCode::from(4)
        }
        Failure::Other(why) => {
            eprintln!("{program}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `request` and returns a reader of the answer lines.
fn ask(
    control_socket: &Option<PathBuf>,
    request: &Request,
) -> Result<BufReader<UnixStream>, Failure> {
    let mut stream = connect(control_socket)?;
    match stream.write_all(control::request_line(request).as_bytes()) {
        Ok(()) => {}
        // Refused before the request was read (another user, too many
        // clients): the reason is waiting to be read.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => return Err(Failure::Other(format!("cannot ask kvmd: {e}"))),
    }
    Ok(BufReader::new(stream))
}

/// Reads one answer line as JSON; an `error` answer is a failure.
fn answer(reader: &mut impl BufRead) -> Result<Option<(String, Value)>, Failure> {
    let mut line = String::new();
    let read = reader
        .by_ref()
        .take(MAX_ANSWER)
        .read_line(&mut line)
        .map_err(|e| Failure::Other(format!("cannot read kvmd's answer: {e}")))?;
    if read == 0 {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(&line)
        .map_err(|e| Failure::Other(format!("kvmd's answer is not JSON: {e}")))?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        let said = format!("kvmd says: {error}");
        return Err(match value.get("code").and_then(Value::as_str) {
            Some("denied") => Failure::Refused(said),
            Some("refused") => Failure::Other(error.to_owned()),
            _ => Failure::Other(said),
        });
    }
    Ok(Some((line, value)))
}

/// `kvmd status`.
pub fn status(client: &Client) -> ExitCode {
    let request = Request::Status {
        instances: client.instances.clone(),
    };
    let got = ask(&client.control_socket, &request).and_then(|mut reader| answer(&mut reader));
    let (line, value) = match got {
        Ok(Some(answer)) => answer,
        Ok(None) => return fail(&client.program, Failure::Other("kvmd hung up".to_owned())),
        Err(failure) => return fail(&client.program, failure),
    };
    if client.json {
        print!("{line}");
        return ExitCode::SUCCESS;
    }
    print!("{}", render_status(&value["status"]));
    ExitCode::SUCCESS
}

/// `kvmd events`.
pub fn events(client: &Client) -> ExitCode {
    let mut reader = match ask(&client.control_socket, &Request::Events) {
        Ok(reader) => reader,
        Err(failure) => return fail(&client.program, failure),
    };
    let mut stdout = io::stdout().lock();
    loop {
        match answer(&mut reader) {
            Ok(Some((line, value))) => {
                // In JSON every line is passed on, the first ("following":
                // attached) too; people see only the events.
                let text = if client.json {
                    line
                } else if let Some(event) = value.get("event") {
                    format!(
                        "{} {:<7} {}\n",
                        str_of(&event["time"]),
                        str_of(&event["level"]).to_ascii_uppercase(),
                        str_of(&event["message"])
                    )
                } else {
                    continue;
                };
                if stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::SUCCESS; // the reader went away (a pipe to head)
                }
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(failure) => return fail(&client.program, failure),
        }
    }
}

/// `kvmd expect-stop` and `kvmd powerdown-all`.
pub fn order(order: &Order) -> ExitCode {
    let request = match &order.what {
        OrderKind::ExpectStop {
            instance,
            seconds,
            by,
        } => Request::ExpectStop {
            instance: instance.clone(),
            seconds: *seconds,
            by: by.clone(),
        },
        OrderKind::Cancel { instance } => Request::CancelIntent {
            instance: instance.clone(),
        },
        OrderKind::PowerdownAll { seconds, by } => Request::PowerdownAll {
            seconds: *seconds,
            by: by.clone(),
        },
    };
    let mut reader = match ask(&order.control_socket, &request) {
        Ok(reader) => reader,
        Err(failure) => return fail(&order.program, failure),
    };
    let (line, value) = match answer(&mut reader) {
        Ok(Some(answer)) => answer,
        Ok(None) => return fail(&order.program, Failure::Other("kvmd hung up".to_owned())),
        Err(failure) => return fail(&order.program, failure),
    };
    if order.json {
        print!("{line}");
    }
    match &order.what {
        OrderKind::ExpectStop { .. } => {
            let i = &value["intent"];
            if !order.json {
                println!(
                    "{}: its next SHUTDOWN until {} ({} s) is the host's (by {})",
                    str_of(&i["instance"]),
                    str_of(&i["until"]),
                    i["seconds"],
                    str_of(&i["by"])
                );
            }
            ExitCode::SUCCESS
        }
        OrderKind::Cancel { .. } => {
            if !order.json {
                println!("{}: intent cancelled", str_of(&value["cancelled"]));
            }
            ExitCode::SUCCESS
        }
        OrderKind::PowerdownAll { seconds, .. } => {
            let deadline = Instant::now() + Duration::from_secs(*seconds);
            await_powerdown(order, &value["powerdown"], reader, deadline)
        }
    }
}

/// Follows `powerdown-all` until every pressed guest's QEMU is gone (its
/// verdict came) or `deadline`; says which did not stop. Exit 0 when all
/// stopped, 1 otherwise.
fn await_powerdown(
    order: &Order,
    powerdown: &Value,
    mut reader: BufReader<UnixStream>,
    deadline: Instant,
) -> ExitCode {
    let empty = Vec::new();
    let pressed = powerdown["pressed"].as_array().unwrap_or(&empty);
    let mut waiting: Vec<String> = pressed
        .iter()
        .map(|p| str_of(&p["instance"]).to_owned())
        .collect();
    let refused = powerdown["refused"].as_array().unwrap_or(&empty);
    if !order.json {
        println!(
            "pressed the power button of {} guests{}",
            waiting.len(),
            if refused.is_empty() {
                String::new()
            } else {
                format!("; {} not monitored yet, not pressed", refused.len())
            }
        );
        for r in refused {
            println!(
                "{}: not pressed: {}",
                str_of(&r["instance"]),
                str_of(&r["why"])
            );
        }
    }
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // A bounded wait: a daemon that stops answering cannot hold the
        // node's shutdown past the timeout.
        if reader.get_ref().set_read_timeout(Some(left)).is_err() {
            break;
        }
        match answer(&mut reader) {
            Ok(Some((line, value))) => {
                if order.json {
                    print!("{line}");
                }
                if value.get("done").is_some() {
                    break;
                }
                let event = &value["event"];
                let name = str_of(&event["instance"]);
                // The verdict comes at the hang-up, a moment before QEMU's
                // process is gone: wait for that too, so that whatever
                // stops next (Ganeti's unit, the init system) finds it gone.
                let qemu = pressed.iter().find(|p| str_of(&p["instance"]) == name);
                if let Some(qemu) = qemu
                    && !process_gone(&qemu["qemu_pid"], &qemu["qemu_start"], deadline)
                {
                    continue;
                }
                waiting.retain(|w| w != name);
                if !order.json {
                    println!(
                        "{name}: stopped: {} ({})",
                        str_of(&event["verdict"]),
                        str_of(&event["reason"])
                    );
                }
            }
            // Hung up (kvmd exiting) or timed out: whoever is left did not
            // stop in time, as far as anyone can tell.
            Ok(None) | Err(_) => break,
        }
    }
    let _ = io::stdout().flush();
    if waiting.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{}: {} guests still running: {}",
        order.program,
        waiting.len(),
        waiting.join(", ")
    );
    ExitCode::FAILURE
}

/// Waits until process `pid` started at `start` (clock ticks since boot,
/// as /proc says) is gone, or `deadline`. Whether it is gone. Without a pid
/// there is nothing to wait for.
fn process_gone(pid: &Value, start: &Value, deadline: Instant) -> bool {
    let (Some(pid), Some(start)) = (pid.as_u64(), start.as_u64()) else {
        return true;
    };
    let alive = || {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // Field 22, counted after the command name (which may hold spaces);
        // a reused pid has another start time. A zombie is gone for us.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split(' ');
        let state = fields.next();
        let started = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
        state != Some("Z") && started == Some(start)
    };
    while alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// A column of text, at most `max` characters wide (cut with `…`).
fn cell(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Rows as aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(c);
            } else {
                text.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn evidence_text(instance: &Value) -> String {
    let e = &instance["evidence"];
    let mut said = Vec::new();
    if let Some(s) = e.get("shutdown").filter(|s| !s.is_null()) {
        let guest = match s["guest"].as_bool() {
            Some(g) => format!(" guest={g}"),
            None => String::new(),
        };
        let reason = s["reason"]
            .as_str()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        said.push(format!("SHUTDOWN{guest}{reason}"));
    }
    if e["powerdown_pending"].as_bool() == Some(true) {
        said.push("power button pressed, not yet obeyed".to_owned());
    }
    if e["panicked"].as_bool() == Some(true) {
        said.push("panicked".to_owned());
    }
    match e["resets"].as_u64() {
        Some(0) | None => {}
        Some(1) => said.push("1 reset".to_owned()),
        Some(n) => said.push(format!("{n} resets")),
    }
    if e["restored"].as_bool() == Some(true) {
        said.push("restored after a restart".to_owned());
    }
    match instance["malformed"].as_u64() {
        Some(0) | None => {}
        Some(n) => said.push(format!("{n} malformed")),
    }
    if said.is_empty() {
        "-".to_owned()
    } else {
        said.join(", ")
    }
}

fn verdict_text(v: &Value) -> String {
    if v.is_null() {
        return "-".to_owned();
    }
    let verdict = match str_of(&v["verdict"]) {
        "user" => "user",
        _ => "not user",
    };
    format!("{verdict} ({})", str_of(&v["reason"]))
}

fn ago(v: &Value, key: &str) -> String {
    v[key].as_u64().map_or_else(
        || "-".to_owned(),
        |s| control::age(std::time::Duration::from_secs(s)),
    )
}

/// The human form of a status answer.
pub fn render_status(status: &Value) -> String {
    let k = &status["kvmd"];
    let mut out = format!(
        "kvmd {} (pid {}), up {}; {} {}\n",
        str_of(&k["version"]),
        k["pid"],
        ago(k, "uptime_seconds"),
        match str_of(&k["watch"]) {
            "watching" => "watching",
            "rescanning" => "rescanning (inotify short of watches)",
            _ => "waiting for",
        },
        str_of(&k["ctrl_dir"]),
    );
    let counts = &k["counts"];
    let mut phases: Vec<String> = counts["phases"]
        .as_object()
        .map(|p| p.iter().map(|(name, n)| format!("{n} {name}")).collect())
        .unwrap_or_default();
    phases.sort();
    out.push_str(&format!(
        "{} instances{}{}; {} verdicts not yet written; {} given up{}\n",
        counts["instances"],
        if phases.is_empty() { "" } else { ": " },
        phases.join(", "),
        counts["unwritten_verdicts"],
        counts["given_up"],
        if k["descriptor_shortage"].as_bool() == Some(true) {
            "; OUT OF FILE DESCRIPTORS"
        } else {
            ""
        },
    ));
    let empty = Vec::new();
    let instances = status["instances"].as_array().unwrap_or(&empty);
    if !instances.is_empty() {
        let rows: Vec<Vec<String>> = instances
            .iter()
            .map(|i| {
                vec![
                    cell(str_of(&i["name"]), 32),
                    str_of(&i["phase"]).to_owned(),
                    ago(i, "since_seconds"),
                    str_of(&i["qemu"]).to_owned(),
                    str_of(&i["guest"]).to_owned(),
                    cell(&evidence_text(i), 48),
                    verdict_text(&i["last_verdict"]),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "INSTANCE",
                "PHASE",
                "FOR",
                "QEMU",
                "GUEST",
                "EVIDENCE",
                "LAST VERDICT",
            ],
            &rows,
        ));
    }
    let hooks = status["hooks"].as_array().unwrap_or(&empty);
    if !hooks.is_empty() {
        let rows: Vec<Vec<String>> = hooks
            .iter()
            .map(|h| {
                vec![
                    cell(str_of(&h["name"]), 32),
                    verdict_text(h),
                    str_of(&h["state"]).to_owned(),
                    h["attempt"].to_string(),
                ]
            })
            .collect();
        out.push_str("\nhooks not finished:\n");
        out.push_str(&table(&["INSTANCE", "VERDICT", "STATE", "ATTEMPT"], &rows));
    }
    let given_up = status["given_up"].as_array().unwrap_or(&empty);
    if !given_up.is_empty() {
        let names: Vec<&str> = given_up.iter().map(str_of).collect();
        out.push_str(&format!(
            "\nnot monitored (nobody listened on their socket): {}\n",
            names.join(", ")
        ));
    }
    let verdicts = status["verdicts"].as_array().unwrap_or(&empty);
    if !verdicts.is_empty() {
        // Newest first, and few enough to read: --json has them all.
        let rows: Vec<Vec<String>> = verdicts
            .iter()
            .rev()
            .take(20)
            .map(|v| {
                vec![
                    cell(str_of(&v["name"]), 32),
                    verdict_text(v),
                    format!("{} ago", ago(v, "age_seconds")),
                    match v["file_error"].as_str() {
                        Some(e) => format!("{}: {e}", str_of(&v["file"])),
                        None => str_of(&v["file"]).to_owned(),
                    },
                    str_of(&v["why"]).to_owned(),
                ]
            })
            .collect();
        out.push_str(&format!(
            "\nrecent verdicts ({} kept, newest first):\n",
            verdicts.len()
        ));
        out.push_str(&table(
            &["INSTANCE", "VERDICT", "DECIDED", "FILE", "WHY"],
            &rows,
        ));
    }
    out
}
