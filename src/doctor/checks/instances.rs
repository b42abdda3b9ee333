//! `instance.*` and `ctrl-dir.entry`: each instance's QEMU, socket,
//! shutdown file and verdict, against what kvmd monitors.

use std::collections::{BTreeMap, BTreeSet};

use kvmd_core::control::age;
use kvmd_core::decision::VerdictKind;

use super::{Found, INSTANCE_LIST, PROBE_SECONDS};
use crate::doctor::facts::{
    DirFacts, Entries, Entry, EntryKind, Facts, GntInstance, GntInstances, Mode, Probed, QemuFacts,
    Role, StatusInstance, escaped, role, shortened,
};
use crate::doctor::findings::{Check, Finding};

/// How long kvmd may stay connecting before that is worth a warning: it
/// connects in milliseconds, and retries a refused connect for seconds.
const CONNECTING_WARN_SECONDS: u64 = 10;

/// Everything known of one instance.
#[derive(Default)]
struct View<'a> {
    qemus: Vec<&'a QemuFacts>,
    socket: Option<&'a Entry>,
    shutdown: Option<&'a Entry>,
    status: Option<&'a StatusInstance>,
    given_up: bool,
    gnt: Option<&'a GntInstance>,
}

impl View<'_> {
    fn is_empty(&self) -> bool {
        self.qemus.is_empty()
            && self.socket.is_none()
            && self.shutdown.is_none()
            && self.status.is_none()
            && !self.given_up
            && self.gnt.is_none()
    }
}

fn views<'a>(facts: &'a Facts, running: Found<'a>) -> BTreeMap<String, View<'a>> {
    let mut views: BTreeMap<String, View<'a>> = BTreeMap::new();
    if let Probed::Got(entries) = &facts.entries {
        for entry in &entries.list {
            match role(&entry.name) {
                Role::Socket(name) => views.entry(name).or_default().socket = Some(entry),
                Role::Shutdown(name) => views.entry(name).or_default().shutdown = Some(entry),
                _ => {}
            }
        }
    }
    if let Probed::Got(qemus) = &facts.qemus {
        // On a Ganeti node, Ganeti's list of instances says which names
        // are instances: a QEMU known only by a `-name` Ganeti does not
        // know (a libvirt guest beside Ganeti's) is none of kvmd's.
        let known: Option<BTreeSet<String>> = match &facts.ganeti {
            Some(Probed::Got(g)) => match g.file(INSTANCE_LIST) {
                Some(Ok(text)) => Some(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(|l| escaped(l.as_bytes()))
                        .collect(),
                ),
                _ => None,
            },
            _ => None,
        };
        // An instance is a QEMU with a socket here, or with a `-name` (as
        // Ganeti starts them); one with neither, whose socket is in some
        // other directory, is another kvmd's (or nobody's) business.
        for qemu in qemus {
            let here = qemu.sockets.iter().find_map(|s| s.instance.as_deref());
            let named = qemu
                .name
                .as_deref()
                .filter(|n| known.as_ref().is_none_or(|known| known.contains(*n)));
            if let Some(name) = here.or(named) {
                views.entry(name.to_owned()).or_default().qemus.push(qemu);
            }
        }
    }
    if let Found::Kvmd { status, .. } = running {
        for instance in &status.instances {
            views.entry(instance.name.clone()).or_default().status = Some(instance);
        }
        for name in &status.given_up {
            views.entry(name.clone()).or_default().given_up = true;
        }
    }
    if let Some(Probed::Got(g)) = &facts.ganeti
        && let GntInstances::Listed(list) = &g.instances
    {
        for instance in list.iter().filter(|i| i.pnode == g.node) {
            views.entry(instance.name.clone()).or_default().gnt = Some(instance);
        }
    }
    if let Some(only) = &facts.instance {
        views.retain(|name, _| name == only);
        views.entry(only.clone()).or_default();
    }
    views
}

pub(super) fn instances(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    entries(facts, out);
    let status = match running {
        Found::Kvmd { status, .. } => Some(status),
        _ => None,
    };
    for (name, view) in views(facts, running) {
        let shown = shortened(&name, 80);
        let about = |f: Finding| f.about(&name);
        let verdict = status.and_then(|s| s.last_verdict(&name));
        if view.is_empty() && verdict.is_none() {
            // A stopped kvmd has no verdicts to tell: its journal has.
            out.push(about(
                Finding::warn(
                    Check::InstanceCoverage,
                    "no QEMU, socket, shutdown file, verdict or Ganeti instance by that name here",
                )
                .advice(format!(
                    "check the name; its past verdicts, if any: kvmd history {name}"
                )),
            ));
            continue;
        }
        if let Some(f) = coverage(facts, running, &shown, &view) {
            out.push(about(f));
        }
        if let Some(f) = shutdown_file(facts, &shown, &view) {
            out.push(about(f));
        }
        if let Some(v) = verdict {
            let verdict = VerdictKind::from_user(v.user).words();
            let said = format!(
                "last verdict {} ago: {verdict} ({}): {}; {shown}.shutdown {}",
                age(std::time::Duration::from_secs(v.age_seconds)),
                v.reason,
                v.why,
                v.file
            );
            out.push(about(match v.file.as_str() {
                "waiting" | "unwritable" => Finding::fail(
                    Check::InstanceVerdict,
                    format!(
                        "{said}: it could not be written ({})",
                        v.file_error.as_deref().unwrap_or("?")
                    ),
                )
                .advice(if v.file == "waiting" {
                    "kvmd tries again; make the control directory writable"
                } else {
                    "write or remove the file by hand as the verdict says; kvmd's log says why"
                }),
                _ => Finding::ok(Check::InstanceVerdict, said),
            }));
        }
        // An instance that does not run here is worth a line only when it
        // would not be covered once started.
        let here = !view.qemus.is_empty() || view.socket.is_some() || view.status.is_some();
        if let Some(g) = view.gnt.filter(|g| here || g.user_shutdown != Some(true)) {
            out.push(about(match g.user_shutdown {
                Some(true) => Finding::ok(Check::InstanceHvparam, "Ganeti's user_shutdown is on"),
                Some(false) => Finding::fail(
                    Check::InstanceHvparam,
                    "Ganeti's user_shutdown is off for this instance: Ganeti reports its user's \
                     shutdowns as ERROR_down, and its watcher starts it again, whatever kvmd \
                     records",
                )
                .advice(format!(
                    "gnt-instance modify -H user_shutdown=true {name} (on the master)"
                )),
                None => Finding::warn(
                    Check::InstanceHvparam,
                    "Ganeti did not say its user_shutdown",
                ),
            }));
        }
    }
}

/// Entries that name no instance kvmd can monitor, and the listing's bounds.
fn entries(facts: &Facts, out: &mut Vec<Finding>) {
    let Probed::Got(Entries { list, more, error }) = &facts.entries else {
        if matches!(facts.dir, Probed::Got(DirFacts::Dir { .. })) {
            out.push(Finding::fail(
                Check::CtrlDirEntry,
                format!(
                    "listing {} gave no answer within {PROBE_SECONDS} s",
                    facts.ctrl_dir
                ),
            ));
        }
        return;
    };
    for entry in list {
        match role(&entry.name) {
            Role::Nameless => out.push(
                Finding::warn(
                    Check::CtrlDirEntry,
                    format!(
                        "{}/.kvmd names no instance: kvmd ignores it",
                        facts.ctrl_dir
                    ),
                )
                .advice(format!("rm {}/.kvmd", facts.ctrl_dir)),
            ),
            Role::TooLong(name) => out.push(
                Finding::fail(
                    Check::CtrlDirEntry,
                    format!(
                        "{}.kvmd: the name is too long for its .shutdown file (255 bytes): \
                         kvmd can record no verdict for it",
                        shortened(&name, 40)
                    ),
                )
                .advice("name instances in at most 246 bytes"),
            ),
            _ => {}
        }
    }
    if *more > 0 {
        out.push(Finding::warn(
            Check::CtrlDirEntry,
            format!(
                "{} holds {more} more entries than the doctor looks at",
                facts.ctrl_dir
            ),
        ));
    }
    // Not there, or not a directory: the directory's own finding says so.
    if let (Some(e), Probed::Got(DirFacts::Dir { .. })) = (error, &facts.dir) {
        out.push(Finding::warn(
            Check::CtrlDirEntry,
            format!("could not list all of {}: {e}", facts.ctrl_dir),
        ));
    }
}

fn restart_advice(facts: &Facts, name: &str) -> String {
    match facts.mode {
        Mode::Ganeti => format!("restart it to be covered: gnt-instance reboot {name}"),
        Mode::Standalone => format!(
            "restart the guest to be covered, with -qmp unix:{}/{name}.kvmd,server=on,wait=off",
            facts.ctrl_dir
        ),
    }
}

/// `instance.coverage`: whether the instance's QEMU is monitored.
fn coverage(facts: &Facts, running: Found<'_>, name: &str, v: &View<'_>) -> Option<Finding> {
    let dir = &facts.ctrl_dir;
    // What kvmd says comes first: it knows the QEMU on the other end of
    // its connection, whatever the doctor made of the process list.
    if let Some(s) = v.status
        && s.phase == "monitoring"
    {
        let pid = s.qemu_pid.map_or(String::new(), |p| format!(" pid {p}"));
        return Some(Finding::ok(
            Check::InstanceCoverage,
            format!(
                "monitored by kvmd for {} (QEMU{pid} {}, guest {})",
                age(std::time::Duration::from_secs(s.since_seconds)),
                s.qemu.as_deref().unwrap_or("?"),
                s.guest.as_deref().unwrap_or("?")
            ),
        ));
    }
    if v.qemus.len() > 1 {
        let pids: Vec<String> = v.qemus.iter().map(|q| q.pid.to_string()).collect();
        return Some(
            Finding::warn(
                Check::InstanceCoverage,
                format!(
                    "{} QEMU processes claim this name (pids {})",
                    pids.len(),
                    pids.join(", ")
                ),
            )
            .advice("stop the one that is not the instance's"),
        );
    }
    let qemu = v.qemus.first().copied();
    if let Some(q) = qemu {
        let pid = q.pid;
        if q.sockets.is_empty() {
            return Some(
                Finding::fail(
                    Check::InstanceCoverage,
                    format!(
                        "its QEMU (pid {pid}) was started without a QMP socket for kvmd (no \
                         -qmp unix:{dir}/{name}.kvmd): nobody can learn how it stops{}",
                        match facts.mode {
                            Mode::Ganeti => {
                                " (Ganeti 3 gives every QEMU one: this one was started by an \
                                 older Ganeti, or otherwise)"
                            }
                            Mode::Standalone => "",
                        }
                    ),
                )
                .advice(restart_advice(facts, name)),
            );
        }
        if !q.sockets.iter().any(|s| s.instance.is_some()) {
            return Some(
                Finding::fail(
                    Check::InstanceCoverage,
                    format!(
                        "its QEMU (pid {pid}) has its kvmd socket at {}, outside {dir}, the \
                         directory kvmd watches",
                        q.sockets[0].path
                    ),
                )
                .advice("give QEMU and kvmd one control directory (--ctrl-dir)"),
            );
        }
        match v.socket {
            None => {
                return Some(
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!(
                            "{name}.kvmd was removed while its QEMU (pid {pid}) runs: nobody can \
                             connect to it again"
                        ),
                    )
                    .advice(restart_advice(facts, name)),
                );
            }
            Some(e) if e.kind != EntryKind::Socket => {
                return Some(
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!(
                            "{name}.kvmd is {}, not its QEMU's socket (pid {pid})",
                            e.kind.as_str()
                        ),
                    )
                    .advice(format!(
                        "rm {dir}/{name}.kvmd; {}",
                        restart_advice(facts, name)
                    )),
                );
            }
            Some(_) => {}
        }
    } else {
        let socket = v.socket?;
        if socket.kind != EntryKind::Socket {
            return Some(
                Finding::warn(
                    Check::InstanceCoverage,
                    format!(
                        "{name}.kvmd is {}, not a socket: kvmd ignores it",
                        socket.kind.as_str()
                    ),
                )
                .advice(format!("rm {dir}/{name}.kvmd")),
            );
        }
        let listening = facts
            .unix
            .as_ref()
            .map(|u| u.listening.contains(&socket.name));
        if listening != Some(true) {
            let why = match listening {
                Some(_) => "nobody listens on it: left by a QEMU that was killed",
                None => "no QEMU process names it",
            };
            return Some(
                Finding::warn(
                    Check::InstanceCoverage,
                    format!("{name}.kvmd has no QEMU behind it ({why})"),
                )
                .advice(format!(
                    "harmless: the instance's next QEMU replaces it; rm {dir}/{name}.kvmd if the \
                     instance is gone"
                )),
            );
        }
    }
    // A socket in the control directory with a QEMU (or a listener)
    // behind it: whether the daemon is on the other end.
    let socket = v.socket?;
    let connected = facts
        .unix
        .as_ref()
        .map(|u| u.connected.contains(&socket.name));
    let behind = qemu.map_or(
        "something that is not a QEMU process the doctor recognizes \
         listens on it"
            .to_owned(),
        |q| format!("QEMU pid {}", q.pid),
    );
    Some(match running {
        Found::Kvmd { status, process } => {
            if status.same_dir == Some(false) {
                Finding::fail(
                    Check::InstanceCoverage,
                    format!("not monitored ({behind}): kvmd watches {}", status.ctrl_dir),
                )
                .advice("see daemon.config")
            } else if let Some(s) = v.status {
                let since = s.since_seconds;
                match s.phase.as_str() {
                    "waiting-for-descriptor" => Finding::fail(
                        Check::InstanceCoverage,
                        format!("not monitored ({behind}): kvmd is out of file descriptors"),
                    )
                    .advice("raise kvmd's descriptor limit (LimitNOFILE=)"),
                    phase if since < CONNECTING_WARN_SECONDS => Finding::ok(
                        Check::InstanceCoverage,
                        format!("kvmd is connecting ({phase}, {since} s; {behind})"),
                    ),
                    phase => Finding::warn(
                        Check::InstanceCoverage,
                        format!("kvmd has been {phase} for {since} s ({behind})"),
                    )
                    .advice("QEMU does not answer on its socket: is it hung or stopped?"),
                }
            } else if v.given_up {
                Finding::fail(
                    Check::InstanceCoverage,
                    format!(
                        "not monitored ({behind}): kvmd gave up, nobody listened on \
                         {name}.kvmd when it tried"
                    ),
                )
                .advice(format!(
                    "kvmd tries again when the socket is made anew: {}",
                    restart_advice(facts, name)
                ))
            } else {
                let kvmd_uid = process.and_then(|p| p.uid).unwrap_or(0);
                let trusted = socket.uid == kvmd_uid || facts.socket_owners.contains(&socket.uid);
                if !trusted {
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!(
                            "not monitored ({behind}): {name}.kvmd is owned by uid {}, whose \
                             sockets kvmd does not trust",
                            socket.uid
                        ),
                    )
                    .advice(format!(
                        "if that is QEMU's user: kvmd --socket-owner {}",
                        socket.uid
                    ))
                } else {
                    Finding::fail(
                        Check::InstanceCoverage,
                        format!("not monitored ({behind}): kvmd does not list it"),
                    )
                    .advice(format!("look for {name} in kvmd's log"))
                }
            }
        }
        Found::Original { .. } => match connected {
            Some(true) => Finding::ok(
                Check::InstanceCoverage,
                format!(
                    "a client, the original ganeti-kvmd presumably, is connected to \
                     {name}.kvmd ({behind}); it has no status to say more"
                ),
            ),
            _ => Finding::fail(
                Check::InstanceCoverage,
                format!(
                    "nobody is connected to {name}.kvmd ({behind}): the original ganeti-kvmd \
                     never retries a refused connect, and watches nothing of this instance \
                     until its next start"
                ),
            )
            .advice("install kvmd-ganeti; or restart ganeti-kvmd"),
        },
        Found::Silent { process, .. } => match connected {
            Some(true) => Finding::ok(
                Check::InstanceCoverage,
                format!(
                    "a client, the daemon (pid {}) presumably, is connected to {name}.kvmd \
                     ({behind})",
                    process.pid
                ),
            ),
            _ => Finding::warn(
                Check::InstanceCoverage,
                format!(
                    "nobody is connected to {name}.kvmd ({behind}), and the daemon could not \
                     be asked why"
                ),
            )
            .advice("see daemon.running"),
        },
        Found::Stopped => Finding::fail(
            Check::InstanceCoverage,
            format!("not monitored ({behind}): kvmd is not running"),
        )
        .advice("see daemon.running"),
        Found::Unknown => Finding::warn(
            Check::InstanceCoverage,
            format!(
                "cannot tell whether kvmd monitors it ({behind}){}",
                match connected {
                    Some(true) => "; a client is connected to its socket",
                    Some(false) => "; no client is connected to its socket",
                    None => "",
                }
            ),
        ),
    })
}

/// `instance.shutdown-file`: a stale or odd `<name>.shutdown`.
fn shutdown_file(facts: &Facts, name: &str, v: &View<'_>) -> Option<Finding> {
    let file = v.shutdown?;
    let path = format!("{}/{name}.shutdown", facts.ctrl_dir);
    if file.kind != EntryKind::File {
        return Some(
            Finding::warn(
                Check::InstanceShutdownFile,
                format!(
                    "{name}.shutdown is {}, not the empty file kvmd writes: Ganeti takes \
                     anything by that name for its user's shutdown",
                    file.kind.as_str()
                ),
            )
            .advice(format!("rm {path}, unless its user shut {name} down")),
        );
    }
    let runs = !v.qemus.is_empty() || v.status.is_some_and(|s| s.phase == "monitoring");
    if runs {
        let (who, how) = match facts.mode {
            Mode::Ganeti => (
                "Ganeti",
                " (Ganeti removes it whenever it starts an instance: this QEMU was started \
                 otherwise, or the file written since)",
            ),
            Mode::Standalone => ("whoever reads it", ""),
        };
        return Some(
            Finding::warn(
                Check::InstanceShutdownFile,
                format!(
                    "{name}.shutdown exists while its QEMU runs: should QEMU end while kvmd is \
                     not watching, {who} would take that for its user's shutdown"
                ),
            )
            .advice(format!("rm {path}{how}")),
        );
    }
    Some(Finding::ok(
        Check::InstanceShutdownFile,
        format!(
            "down; {name}.shutdown says its user shut it down{}",
            match facts.mode {
                Mode::Ganeti => " (Ganeti reports USER_down)",
                Mode::Standalone => "",
            }
        ),
    ))
}
