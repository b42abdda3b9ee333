//! The state directory's file formats: what each file's bytes mean.
//!
//! Three kinds of file, one instance each: `<instance>.state` (a
//! [`Saved`], one line), `<instance>.hook` (the hooks still to run, one
//! [`HookJob`] a line) and `<instance>.intent` (a [`SavedIntent`], JSON).
//! Decoding refuses anything it did not write itself: a file from another
//! version, or tampered with, is ignored rather than half-read. Where the
//! bytes are kept is the state directory's business (the daemon's).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::decision::{Carried, ReasonCode, ShutdownSeen, VerdictKind};
use crate::fleet::{HookJob, Intent, IntentState, Presses};
use crate::name::InstanceName;
use crate::qmp::Reason;
use crate::saved::{Qemu, Saved, SocketId};

const MAGIC: &str = "kvmd-state 2";
/// A state file is one short line; anything longer is not ours.
pub const MAX_FILE: usize = 256;

const HOOK_MAGIC: &str = "kvmd-hook 1";

impl Saved {
    /// The state file's line for this evidence.
    pub fn encode(&self) -> String {
        let c = &self.carried;
        let flag = |b: bool| u8::from(b);
        let shutdown = match &c.shutdown {
            None => "-".to_owned(),
            Some(s) => format!(
                "{},{},{},{},{}",
                match s.guest {
                    Some(true) => "t",
                    Some(false) => "f",
                    None => "-",
                },
                s.reason.map_or("-", Reason::as_str),
                flag(s.paused),
                flag(s.powerdown_pending),
                flag(s.panicked)
            ),
        };
        format!(
            "{MAGIC} dev={} ino={} pid={} start={} powerdown={} paused={} panicked={} shutdown={shutdown}\n",
            self.socket.dev,
            self.socket.ino,
            self.qemu.pid,
            self.qemu.start,
            flag(c.powerdown_pending),
            flag(c.paused),
            flag(c.panicked),
        )
    }

    /// The evidence in a state file's text; None: not a file this
    /// version wrote.
    pub fn decode(text: &str) -> Option<Saved> {
        let rest = text.strip_suffix('\n')?.strip_prefix(MAGIC)?;
        let mut fields = rest.split(' ').skip(1);
        let mut field =
            |key: &str| -> Option<&str> { fields.next()?.strip_prefix(key)?.strip_prefix('=') };
        let number = |text: Option<&str>| text?.parse::<u64>().ok();
        let flag = |text: &str| match text {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let socket = SocketId {
            dev: number(field("dev"))?,
            ino: number(field("ino"))?,
        };
        let qemu = Qemu {
            pid: u32::try_from(number(field("pid"))?).ok()?,
            start: number(field("start"))?,
        };
        let powerdown_pending = flag(field("powerdown")?)?;
        let paused = flag(field("paused")?)?;
        let panicked = flag(field("panicked")?)?;
        let shutdown = match field("shutdown")? {
            "-" => None,
            seen => {
                let parts: Vec<&str> = seen.split(',').collect();
                let [guest, reason, paused, powerdown_pending, panicked] = parts[..] else {
                    return None;
                };
                Some(ShutdownSeen {
                    guest: match guest {
                        "t" => Some(true),
                        "f" => Some(false),
                        "-" => None,
                        _ => return None,
                    },
                    reason: (reason != "-").then(|| Reason::from_wire(reason)),
                    paused: flag(paused)?,
                    powerdown_pending: flag(powerdown_pending)?,
                    panicked: flag(panicked)?,
                })
            }
        };
        if fields.next().is_some() {
            return None;
        }
        Some(Saved {
            socket,
            qemu,
            carried: Carried {
                powerdown_pending,
                paused,
                shutdown,
                panicked,
            },
        })
    }
}

/// The text of `<instance>.hook` for the jobs queued.
pub fn encode_hooks(jobs: &[HookJob]) -> String {
    jobs.iter().map(encode_hook).collect()
}

/// The jobs in the text of `name`'s hook file (unreadable lines are
/// skipped).
pub fn decode_hooks(name: &InstanceName, text: &str) -> Vec<HookJob> {
    text.lines().filter_map(|l| decode_hook(name, l)).collect()
}

/// One hook job as a line of `<instance>.hook`.
fn encode_hook(job: &HookJob) -> String {
    let number = |n: Option<u32>| n.map_or("-".to_owned(), |n| n.to_string());
    let running = job
        .running
        .map_or("-".to_owned(), |p| format!("{}:{}", p.pid, p.start));
    // `by` is free text: hex keeps the line one line of space-separated
    // fields. Absent in files of kvmd 1.0, which still read.
    let by = match &job.intent_by {
        None => String::new(),
        Some(by) => format!(" by={}", hex(by.as_bytes())),
    };
    format!(
        "{HOOK_MAGIC} user={} reason={} qemu={} attempt={} running={running}{by}\n",
        u8::from(job.user.is_user()),
        job.reason.as_str(),
        number(job.qemu_pid),
        job.attempt
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * crate::fleet::MAX_BY {
        return None;
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let by = String::from_utf8(bytes).ok()?;
    crate::fleet::valid_by(&by).then_some(by)
}

fn decode_hook(name: &InstanceName, line: &str) -> Option<HookJob> {
    let rest = line.strip_prefix(HOOK_MAGIC)?;
    let mut fields = rest.split(' ').skip(1);
    let mut field =
        |key: &str| -> Option<&str> { fields.next()?.strip_prefix(key)?.strip_prefix('=') };
    let user = match field("user")? {
        "1" => VerdictKind::User,
        "0" => VerdictKind::NotUser,
        _ => return None,
    };
    let reason: ReasonCode = field("reason")?.parse().ok()?;
    let qemu_pid = match field("qemu")? {
        "-" => None,
        pid => Some(pid.parse().ok()?),
    };
    let attempt = field("attempt")?.parse().ok()?;
    let running = match field("running")? {
        "-" => None,
        running => {
            let (pid, start) = running.split_once(':')?;
            Some(Qemu {
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            })
        }
    };
    let intent_by = match fields.next() {
        None => None,
        Some(by) => Some(unhex(by.strip_prefix("by=")?)?),
    };
    if fields.next().is_some() {
        return None;
    }
    Some(HookJob {
        name: name.clone(),
        user,
        reason,
        qemu_pid,
        attempt,
        running,
        intent_by,
    })
}

/// An intent as its file keeps it: wall-clock times, so it means the
/// same to a restarted kvmd (whose monotonic clock is another).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedIntent {
    /// Who gave it (`--by`).
    pub by: String,
    /// When it was given, in milliseconds since the epoch.
    pub given_ms: u64,
    /// When it lapses, in milliseconds since the epoch.
    pub until_ms: u64,
    /// The device of the socket it was given for.
    pub dev: u64,
    /// The inode of that socket.
    pub ino: u64,
    /// Its QEMU's pid, when known.
    pub pid: Option<u32>,
    /// That QEMU's start time, when known (with `pid`, or neither).
    pub start: Option<u64>,
    /// Waiting or claimed.
    pub state: SavedIntentState,
    /// Whether kvmd presses the power button for it.
    pub presses: SavedPresses,
}

/// [`IntentState`] as its file spells it (`waiting`, `claimed`): the file's
/// vocabulary is kept here, apart from the fleet's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavedIntentState {
    /// `waiting`: for its SHUTDOWN.
    Waiting,
    /// `claimed`: a SHUTDOWN took it.
    Claimed,
}

/// [`Presses`] as its file spells it (`none`, `until-shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavedPresses {
    /// `none`: kvmd presses nothing.
    None,
    /// `until-shutdown`: kvmd presses until the guest obeys.
    UntilShutdown,
}

impl SavedIntent {
    /// The intent file's text (JSON, one line).
    pub fn encode(&self) -> String {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The intent in an intent file's text; None: not one.
    pub fn decode(text: &str) -> Option<SavedIntent> {
        serde_json::from_str(text).ok()
    }

    /// The fleet's intent, its times told by `clock`.
    pub fn from_intent(intent: &Intent, wall: impl Fn(Instant) -> SystemTime) -> SavedIntent {
        let ms = |at: Instant| {
            wall(at)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        SavedIntent {
            by: intent.by.clone(),
            given_ms: ms(intent.given),
            until_ms: ms(intent.until),
            dev: intent.socket.dev,
            ino: intent.socket.ino,
            pid: intent.qemu.map(|q| q.pid),
            start: intent.qemu.map(|q| q.start),
            state: match intent.state {
                IntentState::Waiting => SavedIntentState::Waiting,
                IntentState::Claimed => SavedIntentState::Claimed,
            },
            presses: match intent.presses {
                Presses::None => SavedPresses::None,
                Presses::UntilShutdown => SavedPresses::UntilShutdown,
            },
        }
    }

    /// Back to the fleet's intent: `now` and `wall_now` are one moment on
    /// both clocks. None: not a valid intent (tampered, or from a kvmd
    /// that knew other words).
    pub fn to_intent(&self, now: Instant, wall_now: SystemTime) -> Option<Intent> {
        let instant = |ms: u64| {
            let at = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
            Some(match at.duration_since(wall_now) {
                Ok(ahead) => now.checked_add(ahead)?,
                Err(behind) => now.checked_sub(behind.duration())?,
            })
        };
        if !crate::fleet::valid_by(&self.by) {
            return None;
        }
        let qemu = match (self.pid, self.start) {
            (Some(pid), Some(start)) => Some(Qemu { pid, start }),
            (None, None) => None,
            _ => return None,
        };
        Some(Intent {
            by: self.by.clone(),
            // A time before this boot's clock began is as good as "long ago".
            given: instant(self.given_ms).unwrap_or(now),
            // A wall clock set back since it was kept would stretch the
            // window; no intent outlasts the longest window from now.
            until: instant(self.until_ms)?.min(now + crate::fleet::MAX_WINDOW),
            socket: SocketId {
                dev: self.dev,
                ino: self.ino,
            },
            qemu,
            state: match self.state {
                SavedIntentState::Waiting => IntentState::Waiting,
                SavedIntentState::Claimed => IntentState::Claimed,
            },
            presses: match self.presses {
                SavedPresses::None => Presses::None,
                SavedPresses::UntilShutdown => Presses::UntilShutdown,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(powerdown_pending: bool, paused: bool) -> Saved {
        Saved {
            socket: SocketId { dev: 2049, ino: 77 },
            qemu: Qemu {
                pid: 4242,
                start: 123_456,
            },
            carried: Carried {
                powerdown_pending,
                paused,
                shutdown: None,
                panicked: false,
            },
        }
    }

    #[test]
    fn round_trips() {
        for (p, q) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = saved(p, q);
            assert_eq!(Saved::decode(&s.encode()), Some(s));
        }
        let mut s = saved(false, true);
        s.carried.panicked = true;
        for (guest, reason) in [
            (Some(true), Some(Reason::GuestShutdown)),
            (Some(false), Some(Reason::HostQmpQuit)),
            (None, None),
        ] {
            s.carried.shutdown = Some(ShutdownSeen {
                guest,
                reason,
                paused: false,
                powerdown_pending: true,
                panicked: false,
            });
            assert_eq!(Saved::decode(&s.encode()), Some(s), "{}", s.encode());
        }
    }

    #[test]
    fn rejects_anything_else() {
        let good =
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-\n";
        assert!(Saved::decode(good).is_some());
        for text in [
            "",
            "kvmd-state 2\n",
            "kvmd-state 1 dev=1 ino=2 powerdown=1 paused=0\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=2 paused=0 panicked=0 shutdown=-\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-",
            "kvmd-state 2 ino=2 dev=1 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-\n",
            "kvmd-state 2 dev=-1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=-\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=t,x\n",
            "kvmd-state 2 dev=1 ino=2 pid=3 start=4 powerdown=1 paused=0 panicked=0 shutdown=- extra=1\n",
        ] {
            assert_eq!(Saved::decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_hook_file_reads_back_byte_for_byte_and_files_of_kvmd_1_0_still_read() {
        let name = InstanceName::new(std::ffi::OsStr::new("vm1")).expect("a name");
        // As kvmd 1.0 wrote them (no `by`), and as this one does.
        let text = "kvmd-hook 1 user=1 reason=guest-poweroff qemu=42 attempt=1 running=-\n\
                    kvmd-hook 1 user=0 reason=host-intent qemu=- attempt=0 running=7:8 by=6f7073\n";
        let jobs = decode_hooks(&name, text);
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            (jobs[0].user, jobs[0].reason, jobs[0].qemu_pid),
            (VerdictKind::User, ReasonCode::GuestPoweroff, Some(42))
        );
        assert_eq!(
            (jobs[1].user, jobs[1].reason, jobs[1].intent_by.as_deref()),
            (VerdictKind::NotUser, ReasonCode::HostIntent, Some("ops"))
        );
        assert_eq!(encode_hooks(&jobs), text);
        // A word that is not one is not read.
        for line in [
            "kvmd-hook 1 user=2 reason=guest-poweroff qemu=- attempt=0 running=-",
            "kvmd-hook 1 user=1 reason=GuestPoweroff qemu=- attempt=0 running=-",
        ] {
            assert!(decode_hooks(&name, line).is_empty(), "{line}");
        }
    }

    #[test]
    fn an_intent_file_is_read_by_its_words_and_refused_for_others() {
        let text = |state: &str, presses: &str| {
            format!(
                "{{\"by\":\"ops\",\"given_ms\":1,\"until_ms\":2,\"dev\":3,\"ino\":4,\
                 \"pid\":5,\"start\":6,\"state\":\"{state}\",\"presses\":\"{presses}\"}}"
            )
        };
        let read = |t: &str| serde_json::from_str::<SavedIntent>(t).ok();
        let kept = read(&text("claimed", "until-shutdown")).expect("read");
        assert_eq!(
            (kept.state, kept.presses),
            (SavedIntentState::Claimed, SavedPresses::UntilShutdown)
        );
        assert_eq!(
            serde_json::to_string(&kept).ok().as_deref(),
            Some(text("claimed", "until-shutdown").as_str()),
            "written as it is read"
        );
        assert!(read(&text("waiting", "none")).is_some());
        assert!(read(&text("Claimed", "none")).is_none());
        assert!(read(&text("waiting", "always")).is_none());
    }

    #[test]
    fn a_kept_intent_comes_back_on_this_runs_clock_and_never_longer_than_a_window() {
        use crate::fleet::{IntentState, MAX_WINDOW, Presses};
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let intent = Intent {
            by: "ops".to_owned(),
            given: now,
            until: now + Duration::from_secs(60),
            socket: SocketId { dev: 1, ino: 2 },
            qemu: None,
            state: IntentState::Waiting,
            presses: Presses::None,
        };
        let kept = SavedIntent::from_intent(&intent, |at| wall + (at - now));
        // Read back by a run whose clocks stand 10 s later.
        let later = now + Duration::from_secs(10);
        let back = kept
            .to_intent(later, wall + Duration::from_secs(10))
            .expect("valid");
        assert_eq!(back.until, now + Duration::from_secs(60));
        // The wall clock set back a day meanwhile: the window would be a day
        // longer; it is cut to the longest one.
        let back = kept
            .to_intent(later, wall - Duration::from_secs(86_400))
            .expect("valid");
        assert_eq!(back.until, later + MAX_WINDOW);
    }
}
