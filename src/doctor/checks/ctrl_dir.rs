//! `ctrl-dir.*` and `inotify.*`: the control directory, and what kvmd
//! needs to watch it.

use kvmd_core::control::WatchState;

use super::{Found, PROBE_SECONDS};
use crate::doctor::facts::{DirFacts, Facts, FsKind, InotifyFacts, Mode, Probed};
use crate::doctor::findings::{Check, Finding};

pub(super) fn ctrl_dir(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    let dir = &facts.ctrl_dir;
    let found = match &facts.dir {
        Probed::NoAnswer => {
            out.push(
                Finding::fail(
                    Check::CtrlDir,
                    format!(
                        "no answer from {dir} within {PROBE_SECONDS} s (a hung network file \
                         system?)"
                    ),
                )
                .advice("keep the control directory on a local tmpfs (/run)"),
            );
            return;
        }
        Probed::Got(found) => found,
    };
    let (uid, mode, fs) = match found {
        DirFacts::Dir { uid, mode, fs } => (*uid, *mode, *fs),
        DirFacts::Missing => {
            out.push(match facts.mode {
                Mode::Ganeti => Finding::warn(
                    Check::CtrlDir,
                    format!(
                        "{dir} does not exist: Ganeti makes it when it starts an instance, and \
                         kvmd waits for it"
                    ),
                ),
                Mode::Standalone => Finding::fail(
                    Check::CtrlDir,
                    format!("{dir} does not exist: QEMU cannot bind its socket there"),
                )
                .advice(format!("mkdir -p {dir}")),
            });
            return;
        }
        DirFacts::Symlink => {
            out.push(
                Finding::fail(
                    Check::CtrlDir,
                    format!(
                        "{dir} is a symlink: kvmd never follows one to its control directory \
                         (it waits for a real directory)"
                    ),
                )
                .advice("point --ctrl-dir, and QEMU's sockets, at the real directory"),
            );
            return;
        }
        DirFacts::NotADir => {
            out.push(
                Finding::fail(Check::CtrlDir, format!("{dir} is not a directory"))
                    .advice(format!("remove it; mkdir -p {dir}")),
            );
            return;
        }
        DirFacts::Failed(e) => {
            out.push(
                Finding::warn(Check::CtrlDir, format!("cannot look at {dir}: {e}"))
                    .advice("run the doctor as root"),
            );
            return;
        }
    };
    out.push(Finding::ok(Check::CtrlDir, format!("{dir} exists")));
    let daemon_uid = running.process().and_then(|p| p.uid).unwrap_or(0);
    let shown_mode = format!("{:04o}", mode & 0o7777);
    // Who acts on the shutdown files: Ganeti, or whatever reads them.
    let reader = match facts.mode {
        Mode::Ganeti => "Ganeti",
        Mode::Standalone => "whatever reads them",
    };
    out.push(if uid != 0 && uid != daemon_uid {
        Finding::warn(
            Check::CtrlDirOwner,
            format!(
                "{dir} is owned by uid {uid} (mode {shown_mode}): that user can make and remove \
                 the shutdown files, and {reader} would believe them"
            ),
        )
        .advice(format!("chown root {dir}"))
    } else if mode & 0o002 != 0 {
        // The sticky bit keeps others from removing kvmd's files, not from
        // creating a name that is not there yet: a running instance's.
        let sticky = if mode & 0o1000 != 0 {
            " (the sticky bit only keeps others from removing kvmd's files)"
        } else {
            ""
        };
        Finding::warn(
            Check::CtrlDirOwner,
            format!(
                "{dir} is writable by anyone (mode {shown_mode}){sticky}: anyone can create \
                 <instance>.shutdown for a running instance, and after a crash {reader} would \
                 take it for its user's shutdown"
            ),
        )
        .advice(format!(
            "chmod o-w {dir} (QEMU run as another user needs its group to write there, not \
             everyone)"
        ))
    } else {
        Finding::ok(
            Check::CtrlDirOwner,
            format!("owned by uid {uid}, mode {shown_mode}"),
        )
    });
    out.push(match fs {
        FsKind::Tmpfs | FsKind::Ramfs => Finding::ok(
            Check::CtrlDirFilesystem,
            "on tmpfs: shutdown files go with a reboot, as the instances do",
        ),
        FsKind::Other { magic, name } => Finding::warn(
            Check::CtrlDirFilesystem,
            format!(
                "on {name} (statfs magic {magic:#x}), not tmpfs: shutdown files outlive a \
                 reboot ({}), and every verdict waits for the disk",
                match facts.mode {
                    Mode::Ganeti => {
                        "after a crash Ganeti reads the last ones as USER_down, and its \
                         watcher leaves those instances down"
                    }
                    Mode::Standalone => {
                        "after the node crashes, the last ones still say their guests' users \
                         shut them down"
                    }
                }
            ),
        )
        .advice("keep the control directory on tmpfs (under /run, as Ganeti's is)"),
    });
}

pub(super) fn inotify(facts: &Facts, running: Found<'_>, out: &mut Vec<Finding>) {
    let needed = facts.watches_needed;
    if let Found::Kvmd { status, .. } = running {
        match status.watch {
            Some(WatchState::Rescanning) => {
                out.push(
                    Finding::fail(
                        Check::InotifyWatches,
                        format!(
                            "kvmd could not get the {needed} inotify watches it needs for {}: \
                             it rescans it every few seconds instead of being told (verdicts \
                             wait, the node works harder)",
                            facts.ctrl_dir
                        ),
                    )
                    .advice(
                        "raise sysctl fs.inotify.max_user_watches (in a container also \
                         /proc/sys/user/max_inotify_watches); kvmd watches again by itself",
                    ),
                );
                return;
            }
            Some(WatchState::Watching) => {
                out.push(Finding::ok(
                    Check::InotifyWatches,
                    format!("kvmd has the {needed} inotify watches it needs"),
                ));
                return;
            }
            // Waiting for the directory: the numbers below say whether it
            // will have its watches once it appears.
            _ => {}
        }
    }
    let n = match &facts.inotify {
        Probed::Got(n) => n,
        Probed::NoAnswer => {
            out.push(Finding::warn(
                Check::InotifyWatches,
                format!(
                    "could not count inotify watches within {PROBE_SECONDS} s (/proc did not \
                     answer)"
                ),
            ));
            return;
        }
    };
    // A running daemon holds its watches already: only the limit matters.
    let has_them = running.is_running();
    out.push(limit_finding(
        Check::InotifyWatches,
        "watches",
        n,
        n.max_watches,
        n.used_watches,
        needed,
        has_them,
        &facts.ctrl_dir,
    ));
    out.push(limit_finding(
        Check::InotifyInstances,
        "instances",
        n,
        n.max_instances,
        n.used_instances,
        1,
        has_them,
        &facts.ctrl_dir,
    ));
}

/// inotify `what` (watches or instances): the limit against what kvmd
/// needs, and (when it does not run yet) against what is left.
#[allow(clippy::too_many_arguments)]
fn limit_finding(
    check: Check,
    what: &str,
    n: &InotifyFacts,
    limit: Option<u64>,
    used: u64,
    needed: u64,
    has_them: bool,
    dir: &str,
) -> Finding {
    let sysctl = match what {
        "watches" => {
            "fs.inotify.max_user_watches (in a container also /proc/sys/user/max_inotify_watches)"
        }
        _ => {
            "fs.inotify.max_user_instances (in a container also /proc/sys/user/max_inotify_instances)"
        }
    };
    let uid = n.uid;
    let Some(limit) = limit else {
        return Finding::warn(check, format!("cannot read the inotify {what} limit"));
    };
    // Processes whose descriptors this user may not read hold watches
    // too: what was counted is a floor.
    let (at_least, counted) = if n.uncounted > 0 {
        (
            "at least ",
            format!(
                " ({} of uid {uid}'s processes could not be counted: run the doctor as root)",
                n.uncounted
            ),
        )
    } else {
        ("", String::new())
    };
    if limit < needed {
        return Finding::fail(
            check,
            format!(
                "uid {uid} may have {limit} inotify {what}, and kvmd needs {needed} for {dir}: \
                 it can never watch it, only rescan now and then"
            ),
        )
        .advice(format!(
            "raise {sysctl} to {} or more",
            needed.max(used + needed)
        ));
    }
    let free = limit.saturating_sub(used);
    if !has_them && free < needed {
        return Finding::warn(
            check,
            format!(
                "uid {uid}'s processes use {at_least}{used} of {limit} inotify {what}{counted}: kvmd \
                 needs {needed} more for {dir}, and would rescan instead of being told"
            ),
        )
        .advice(format!("raise {sysctl} to {} or more", used + needed));
    }
    Finding::ok(
        check,
        format!(
            "uid {uid} may have {limit} inotify {what}, {at_least}{used} in use{counted}; kvmd \
             needs {needed}"
        ),
    )
}
