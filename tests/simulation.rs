//! A deterministic simulation of the whole instance policy, in the manner
//! of FoundationDB's: `kvmd_core::fleet::Fleet` driven exactly as the event loop
//! (`src/daemon/mod.rs`) drives it, against a seeded random model of
//! everything the kernel, the file system and QEMU can do, with invariants
//! checked after every step. No socket, no file, no sleep, no thread: the
//! world is a handful of ordered maps and a SplitMix64 generator, and the
//! clock is virtual, so a seed replays exactly.
//!
//! # How the fleet is driven (as `Daemon::run` does)
//! - start: crawl, hand each change to `handle_change` and drain the
//!   actions after each, then `handle_dir`; then `handle_state_files` with
//!   the model state directory's names; drain; then, if the state
//!   directory holds intent files, `handle_intent_files` with them (each
//!   through its form on disk, `SavedIntent`, and a virtual wall clock)
//!   and a drain, as `Daemon::restore_intents` does. The model says which
//!   wait for their name to be looked at (the directory away, the name's
//!   look failed or deferred), which look settles each (one that tells what
//!   stands there, or the entry's deletion), and that one still waiting at
//!   the end of its window is dropped;
//! - each turn: the host's orders, as the control socket brings them
//!   (`handle_expect_stop`, `handle_cancel_intent`, `handle_powerdown_all`),
//!   each drained at once as `carry_out_orders` does; inotify's events (a
//!   crawl on overflow or a path change), then connections in any order:
//!   bytes in arbitrary chunks through `handle_bytes`, then `handle_hangup`
//!   at end-of-file, then one drain; then `handle_timeout(now)` once and a
//!   drain. The control directory's descriptor is opened at most once per
//!   turn, as `CtrlDir` does;
//! - every question is answered at once: `Look` → `handle_looked`,
//!   `Connect` → `handle_connect`, `Record` → `handle_recorded`; `Rescan`
//!   crawls (and drains, nested, as the daemon does).
//!
//! # The model world
//! - **The control directory**: `<name>.kvmd` entries (sockets, with an
//!   owner, trusted or not; files, directories, fifos, symlinks) and
//!   `<name>.shutdown` files (a file, a symlink, an empty or a non-empty
//!   directory). Inode numbers come from a small pool, so reuse is common;
//!   a socket's inode stays taken while its QEMU holds it. Sockets are
//!   created (QEMU unlinks what stood there and binds, or binds elsewhere
//!   and is moved in over it), deleted, moved out and back in. The
//!   directory itself is moved away and back, or replaced by a fresh one.
//! - **inotify**: a bounded queue of Created/Vanished events while the
//!   directory is watched; when full, one overflow marker (the watcher
//!   crawls); path changes make it crawl; a crawl drops the queued events
//!   of the old watches and reports every `*.kvmd` entry as Appeared, in
//!   any order. The watch limit makes crawls stall (`Follow::Rescans`), no
//!   event arrives then, until a rescan succeeds.
//! - **QEMU**: binds (refusing connects until it listens, sometimes EAGAIN),
//!   serves one client, greets it, answers `qmp_capabilities` (sometimes
//!   with an error) and `query-status` (truthfully), and sends lifecycle
//!   events only to a negotiated client: events with no such client are
//!   lost, as real QEMU loses them. Versions: 7.2 (`guest` and `reason`),
//!   2.12 (`guest`), 2.6 (no data). `-no-shutdown`, `-no-reboot` and
//!   `panic=pause` change what a power-off, a reset or a panic send and
//!   whether QEMU lives on. Exits are clean (the socket is unlinked first,
//!   then the client reads the rest and end-of-file) or SIGKILL (the socket
//!   stays; sometimes a line is cut short). Every row of README's decision
//!   table is scripted for some QEMUs; the rest act at random; garbage lines
//!   come in between.
//! - **Faults**: a full or read-only file system for the shutdown file; a
//!   non-empty directory in its place (not mendable); out of descriptors
//!   (the directory's open, the socket's open, `socket(2)`); `EAGAIN`;
//!   a failing `fstatat`; a connection that cannot be polled; the watch
//!   limit; queue overflows; the directory away.
//! - **Daemon restarts**: the fleet is dropped without `handle_exit`
//!   (SIGKILL), its connections close (each QEMU is free again and greets
//!   its next client), unwritten verdicts are lost, and a new fleet starts
//!   with the state directory that survived (state and intent files).
//! - **The host** (drawn from a stream of its own, so that a seed's world
//!   runs as before until the first intent changes it): now and then
//!   `expect-stop` for a random name, monitored or not, with a window of
//!   0 s to 3601 s and a `--by` sometimes too long or with control
//!   characters; a cancel; `powerdown-all`; a `powerdown-all` client going
//!   away before its guests stopped (`handle_orders_abandoned` with the
//!   names it waited for, less those another client still waits for: its
//!   intents stay, their presses stop). QEMU answers `system_powerdown`
//!   with `{"return": {}}` (an error before negotiation) and POWERDOWN; its
//!   guest obeys (SHUTDOWN guest=true guest-shutdown), ignores it, or
//!   obeys only a later press (its button not enabled yet); its monitor
//!   sometimes hangs, so presses pile up unanswered. Scripted stories, so
//!   that every path is taken in every full run (the run asserts it): an
//!   intent claimed by a guest agent's shutdown (no POWERDOWN: without the
//!   intent, a user shutdown); one that expires unclaimed (the same
//!   shutdown is the user's again); one cancelled; one whose QEMU is
//!   replaced by another of the name, often on the same inode number (the
//!   new one inherits nothing), or replaced while the daemon is down, the
//!   new one not listening yet when it starts (the intent file fits the
//!   socket, and is dropped at the connect that finds another QEMU); a
//!   restart between the intent and the SHUTDOWN (honoured), at the
//!   window's very end (`until == now`: expired), and between the SHUTDOWN
//!   and the hang-up (still claimed, too late to cancel); `powerdown-all`
//!   pressing again until the guest obeys; and `powerdown-all` while
//!   `MAX_ASKED` presses go unanswered. Time jumps to the next deadline
//!   at most 5 s at a time (an intent's window is up to an hour).
//!
//! # Invariants (checked after every step; the number is in the message)
//! 1. At most one monitor per socket file: a QEMU never has two live
//!    connections from the daemon, and `each_instance` never shows two
//!    instances of one name.
//! 2. Every QEMU whose hang-up the fleet was handed gets exactly one
//!    verdict, in the drain of that hang-up: its first `Record` (a `Moot`
//!    before any write would count as its decision; it is counted apart,
//!    since its decision line is never logged). Per QEMU, three folds of
//!    `Evidence` are kept:
//!    - *sent*, the reference: every message it sent to a negotiated
//!      daemon connection (`Negotiated`, the status replies, lifecycle
//!      events), across connections and daemon restarts;
//!    - *read*: what the daemon read of those (a restart drops what is
//!      still unread);
//!    - *kept*: what a daemon that keeps only the state file can know: the
//!      same fold, started again at each restart from `Evidence::restored`
//!      of the state file it finds (or from nothing).
//!
//!    The verdict must be `decide_expected(kept, expected)` exactly, reason
//!    included, where `expected` is what I1 says (`Nothing`, so
//!    `decide(kept)`, unless an intent was claimed). Without a restart the
//!    three are one fold; after one, they may differ only as the
//!    exceptions below say (each fold read with the same `expected`). Each
//!    difference is attributed with two counterfactual folds: *unswept*
//!    (had no state file been swept) and *truth* (every event QEMU
//!    emitted, whether a daemon was connected or not).
//! 3. No verdict for a QEMU that is alive or connected; no verdict written
//!    while its name's instance negotiates with or monitors another QEMU
//!    (on another socket, or on the old inode number reused).
//! 4. What is tracked stays bounded: every instance is either connected
//!    (the model has that connection, and every model connection is a
//!    connected instance) or connecting with its retry timer set; the
//!    hang-up of a connection is followed by its `Close`; instances ≤
//!    socket files present + connections whose hang-up is not delivered +
//!    connecting instances whose file went (each looked at again at its
//!    timer); at most one unrecorded verdict per name, the fleet's list
//!    equal to the model's, ≤ names ever used; deferred names ≤ 3 per name
//!    and only with their timer set; timers ≤ instances + intent timers +
//!    verdicts + 4, each set for something tracked (an instance's connect,
//!    window or presses; a verdict's retry; the four of the fleet's own,
//!    one of them the end of intents waiting for a look, set exactly while
//!    one waits).
//! 5. `poll_timeout()` is `None` whenever nothing waits (no instance
//!    connecting, no unrecorded verdict, nothing deferred, the watcher
//!    following by events, no report of a change due, no intent waiting
//!    for its SHUTDOWN; and (R) reports,
//!    for the metrics file and systemd, come at most one a second within
//!    one daemon's life). Also (5b) `Some` whenever something waits,
//!    except verdicts waiting for the control directory while it is away
//!    (`handle_dir` wakes them, not a timer; a waiting intent is never
//!    excused); and after a turn no deadline is in the past.
//! 6. The shutdown file in the control directory matches the latest verdict
//!    written for that name (absent if none was), unless an operator put
//!    something there since or a non-mendable error left it; and verdicts
//!    are written in hang-up order: an older QEMU's never after a newer's.
//! 7. (Liveness, added here: without it, removing the successor logic
//!    breaks no safety property, the successor just goes unmonitored.) A
//!    QEMU that listens on a trusted socket at its name in the watched
//!    directory, while no other connection of that name is alive and no
//!    descriptor or EAGAIN fault goes on, is connected within 3 s (12 s if
//!    the watcher stalled meanwhile: rescans back off to 5 s), unless a
//!    fault that makes the fleet give up on that very file hit it.
//! - (S) The state file of every connection holds exactly what must
//!   survive a restart (`Evidence::carried` of *kept*), and a state file
//!   restored after a restart holds what the killed daemon had kept.
//!
//! Intents (`kvmd expect-stop`, `kvmd powerdown-all`). The model keeps,
//! by its own reading of each request, the intent the daemon must hold
//! for each name: given (for the instance monitoring the name, naming its
//! QEMU) when `Monitoring`, the window 1 s to 3600 s, `--by` at most 200
//! bytes without control characters, and no first SHUTDOWN read yet; gone
//! when cancelled, expired (in the `handle_timeout(now)` with `until <=
//! now`, as the fleet's timer fires), at its QEMU's hang-up, when its
//! instance is given up, or at a restart; taken up again at a restart by
//! the instance on the same socket, of the same QEMU once known (else
//! dropped there or at the connect), unless expired; claimed when the
//! daemon reads its QEMU's first SHUTDOWN while it waits within its window
//! (read at `until` or later, before the timer fired, it expires there),
//! or at once at a restart if the restored evidence holds one.
//! - (I1) The verdict of every QEMU is `decide_expected(kept, expected)`
//!   (invariant 2's check), `expected` being `HostStop` exactly when the
//!   daemon held a claimed intent for *that* QEMU at its hang-up: given for
//!   it (not another QEMU of the name), in force when the daemon read its
//!   first SHUTDOWN (not cancelled, not expired by an earlier
//!   `handle_timeout`, not dropped at a restart), or carried across
//!   restarts as claimed. An intent is told expired exactly when the model
//!   expires it.
//! - (I2) Requests are answered as the model reads them, the right
//!   `IntentRefused` included (`powerdown-all`'s list too), and a refused
//!   one writes and presses nothing. After every drain the intents the
//!   model holds, the fleet's (`InstanceView::intent`, on that instance),
//!   and the intent files are the same; after a hang-up's drain no intent
//!   file names the QEMU that ended; intent files read back as written.
//! - (I3) `Timer::Intent` is set exactly while an intent waits;
//!   `Timer::Press` only while one waits. Every `system_powerdown` is for
//!   a waiting `powerdown-all` intent, at most `MAX_ASKED` go unanswered,
//!   presses again come at least 5 s apart, and every press due (5 s after
//!   the last, its QEMU monitored, fewer than `MAX_ASKED` unanswered) goes
//!   out in that turn; while such an intent waits on a monitored QEMU
//!   whose presses were not refused, a press stays due (its timer set).
//!   Once its client went away the intent presses nothing (told
//!   `PressesStopped` exactly when the model stops them).
//!
//! At the end of each run (quiesce): faults stop, the directory is back,
//! every QEMU is left time to be monitored, then ends; everything is
//! delivered and time runs past every timer. Then every hang-up was
//! decided; every verdict was written, mooted, refused for good, or lost
//! to a restart; nothing is tracked, and `poll_timeout()` is `None`.
//!
//! # Exceptions (each counted and printed at the end)
//! Right, or beyond any daemon's reach:
//! - **E1** *kept* says "the connection ended before QMP negotiation",
//!   *sent* "QEMU ended without a SHUTDOWN": an earlier daemon run
//!   negotiated with this QEMU, the connection that ended never did. Both
//!   are "not a user shutdown", and the reason speaks of the connection
//!   that ended.
//! - **E2** other reasons, the same answer: a restart lost evidence that
//!   does not change the verdict (a SHUTDOWN `{guest: false}` read by the
//!   killed daemon, say); the decision line can only cite what survived.
//! - **E4** another answer, but *read* agrees with *kept*: what decides was
//!   sent to a connection that a restart dropped before the daemon read it
//!   (it died in a killed process's socket buffer).
//! - **E5** another answer, and *kept* agrees with *truth*: the reference
//!   is stale. A STOP was read, the daemon restarted, the RESUME came while
//!   no daemon was connected (so it is in no fold), and the guest's
//!   power-off came before the new connection's status reply.
//! - **E6** another answer because the state file was swept while the
//!   QEMU's socket was not at its name (moved out; or another QEMU of that
//!   name replaced the file): README says a state file is ignored "when
//!   its socket is gone or was recreated".
//! - **E7** another answer, and *truth* disagrees with both: an event that
//!   decides was emitted while no daemon connection was negotiated.
//! - **L1** (liveness) a socket given up on for good (refused for 30 s) was
//!   replaced by one with the same inode number while a stalled watcher
//!   told nothing: `(dev, ino)` is all the fleet has to tell them apart.
//! - **L2** (liveness) the same for a socket kvmd monitored: replaced by a
//!   new QEMU's on the same inode number while the watcher was stalled, it
//!   looks at the old one's hang-up like the old socket left behind, and
//!   the new QEMU goes unmonitored until its name changes again. Only a
//!   control directory on disk reuses inode numbers this way: tmpfs (`/run`,
//!   Ganeti's and kvmd's default) does not hand out a freed number again.
//! - **Lost to a restart**: a verdict not yet written when the daemon is
//!   killed is gone; only memory held it.
//!
//! - **E3** another answer because the killed daemon had read evidence
//!   that kvmd keeps on purpose only in QEMU's own answers: a pause, which
//!   `query-status` retells a restarted daemon, unless QEMU exits before
//!   answering it (a `quit` from Ganeti's own monitor in that window). Not
//!   keeping pauses spares a state file per guest start (Ganeti starts
//!   every guest paused).
//!
//! Gaps the simulation found in kvmd, all fixed since; they stay named so
//! that one coming back fails: every run fails on them (`KVMD_SIM_STRICT=1`
//! also fails on the exceptions above, to list them):
//! - **E3, the first SHUTDOWN** (fixed): `Evidence::carried` kept the first
//!   SHUTDOWN only while the guest was paused; a daemon killed between a
//!   guest's power-off and QEMU's exit, restarted while QEMU still exits,
//!   got no greeting and decided "never negotiated". It is kept now.
//! - **B1** (liveness, fixed) the fleet gave up on a socket because it was
//!   gone (`SocketWent`) or its directory was (`DirGone`), and refused that
//!   `(dev, ino)` ever after: a later socket with the reused inode number
//!   that a rescan finds, or the very same socket once its directory was
//!   back, was never monitored.
//! - **B2** (fixed) `handle_state_files` at start-up swept the state file
//!   of every name not attached yet, including names it could not look at
//!   (the look deferred for want of a descriptor, or the directory away):
//!   a pending POWERDOWN was forgotten, and the guest obeying it taken for
//!   a user shutdown.
//! - **B3** (fixed) a verdict the disk refused was written later while a
//!   newer QEMU whose socket has the old inode number was monitored, when
//!   no creation event told of it: verdicts now also name their QEMU
//!   process (`Connected::qemu`).
//!
//! Gaps the intents model found in kvmd, fixed since (one coming back
//! fails every run):
//! - **O1** (I2) an instance holding an intent is given up (`give_up`: it
//!   only ever connects with an intent restored at start-up, and its QEMU
//!   went meanwhile): the state file is removed, the intent file is left,
//!   held by nobody, until a later restart drops it.
//! - **O2** (I3) after a restart, `powerdown-all`'s presses stop for good:
//!   `handle_intent_files` sets `Timer::Press` for now, it fires in the
//!   first turn while the new connection still negotiates, `press` fails
//!   (`CannotPress`) and is not set again; the guest that had not enabled
//!   its button yet is never pressed again.
//! - **O3** (I2) `powerdown-all` answers `CannotPress` for a QEMU with
//!   `MAX_ASKED` presses unanswered, yet gave it an intent first (saved,
//!   its window's timer set): the caller is told refused, and the next
//!   SHUTDOWN is the host's anyway.
//!
//! # Running
//! `cargo test --test simulation` runs 250 seeds of 4,000 steps (and their
//! quiescing), over a million steps, and asserts that every path of
//! intents was taken (each refusal, claims, expiries, restores, presses). `KVMD_SIM_SEED=N` runs one seed and
//! prints its trace as it goes; `KVMD_SIM_STEPS=N` changes the steps per
//! seed, `KVMD_SIM_SEEDS=N` the number of seeds, `KVMD_SIM_STRICT=1` fails
//! on the gaps above. A failure prints the seed, the step, the invariant
//! with its details, and the last 30 steps of the trace.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvmd_core::codec::SavedIntent;
use kvmd_core::decision::{Carried, Evidence, Expected, Verdict, Why, decide_expected};
use kvmd_core::errno::Errno;
use kvmd_core::fleet::Outcome;
use kvmd_core::fleet::{
    Action, Change, ConnectError, Connected, Fleet, Follow, GiveUp, InstanceKey, Intent,
    IntentRefused, IntentState, Look, MAX_WINDOW, Notice, Phase, Pressed, Presses, Purpose, Reach,
    RecordError, Timer, VerdictKey,
};
use kvmd_core::name::InstanceName;
use kvmd_core::qmp::{Command, Event, MAX_ASKED, Reason};
use kvmd_core::saved::{Qemu, Saved, SocketId};

// --- Parameters -------------------------------------------------------------

/// Seeds and steps of the default run: 1,000,000 steps in all.
const SEEDS: u64 = 250;
const STEPS: u64 = 4_000;
const TRUSTED: u32 = 0;
const UNTRUSTED: u32 = 1000;
const DEV: u64 = 0x801;
/// Inode numbers the file system hands out: few, so they are reused.
const INO_POOL: u64 = 8;
/// inotify's queue, small so that it overflows.
const QUEUE_CAP: usize = 12;
const MAX_QEMUS: usize = 6;
const NAMES: [&str; 4] = ["vm0", "vm1", "vm2", "vm3"];
/// Liveness: how long a monitorable QEMU may wait for its connection.
const GRACE: Duration = Duration::from_secs(3);
const GRACE_STALLED: Duration = Duration::from_secs(12);
/// The kernel wakes the daemon when inotify or a connection has news: a
/// turn handles it within this, however the model's turns fall.
const LATENCY: Duration = Duration::from_millis(50);
/// Trace lines kept for a failure report: the last this many steps.
const TRACE_STEPS: u64 = 30;
/// kvmd presses a waiting guest's power button again this often (the
/// spec's number: `intents::PRESS_AGAIN` is not exported).
const PRESS_AGAIN: Duration = Duration::from_secs(5);
/// The wall clock's reading at `base` (for intent files, which hold wall
/// time): the virtual clock's start, some day in 2025.
const WALL_AT_BASE: Duration = Duration::from_secs(1_764_000_000);

// --- A small generator --------------------------------------------------------

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).expect("an index")
    }

    /// True `num` times in `den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// One of `choices`, by weight.
    fn weighted<T: Copy>(&mut self, choices: &[(u64, T)]) -> Option<T> {
        let total: u64 = choices.iter().map(|c| c.0).sum();
        if total == 0 {
            return None;
        }
        let mut roll = self.below(total);
        for &(weight, choice) in choices {
            if roll < weight {
                return Some(choice);
            }
            roll -= weight;
        }
        None
    }
}

// --- The model world --------------------------------------------------------------

type Name = InstanceName;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A socket; `qemu` is the process that bound it, if any ever did.
    Socket {
        owner: u32,
        qemu: Option<usize>,
    },
    File,
    Dir,
    Fifo,
    Symlink,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    ino: u64,
    kind: Kind,
    /// The step it was created in (moves keep it).
    born: u64,
}

impl Entry {
    fn id(&self) -> SocketId {
        SocketId {
            dev: DEV,
            ino: self.ino,
        }
    }
}

/// What stands at `<name>.shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sd {
    File,
    Symlink,
    EmptyDir,
    FullDir,
}

/// What invariant 6 expects at `<name>.shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Present(bool),
    /// An operator put something there, or a non-mendable error left it.
    Unknown,
}

struct DirModel {
    id: u64,
    kvmd: BTreeMap<Name, Entry>,
    shutdown: BTreeMap<Name, Sd>,
    /// Missing: never written, so absent.
    expect: BTreeMap<Name, Expect>,
}

impl DirModel {
    fn new(id: u64) -> DirModel {
        DirModel {
            id,
            kvmd: BTreeMap::new(),
            shutdown: BTreeMap::new(),
            expect: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ver {
    /// 7.2: SHUTDOWN `{guest, reason}`.
    Modern,
    /// 2.12: SHUTDOWN `{guest}`.
    Guest,
    /// 2.6: SHUTDOWN without data.
    Legacy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Bound, not listening yet: connects are refused.
    Bound,
    Listening,
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// `-S`, not started yet (status `prelaunch`).
    Prelaunch,
    Running,
    Paused,
    /// The guest's own S3 sleep.
    Suspended,
    /// Panicked under `panic=pause` or `-no-shutdown`.
    PanicPaused,
    /// `-no-shutdown` after the guest's SHUTDOWN (status `shutdown`).
    ShutdownPaused,
    /// Its main loop is over: it greets and answers no one, and exits.
    Exiting,
}

/// What a QEMU (or its guest, or an administrator) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Kill,
    Exit,
    Quit,
    Signal,
    HostUi,
    Poweroff,
    Powerdown,
    Reboot,
    HostReset,
    Stop,
    Cont,
    Panic,
    Suspend,
    Wakeup,
    ResetCont,
    Garbage,
    Noise,
    /// The daemon is killed and restarted (in a scripted row).
    Restart,
    /// (Scripted) the host says it will stop this QEMU
    /// (`kvmd expect-stop`), once kvmd monitors it: a window of 120 s.
    ExpectStop,
    /// (Scripted) the same, for a window of 1 s.
    ExpectStopBriefly,
    /// (Scripted) the host withdraws its intent (`--cancel`).
    CancelIntent,
    /// (Scripted) waits until the daemon's intent for this QEMU is gone
    /// (expired).
    AwaitExpiry,
    /// (Scripted) waits until the daemon read everything sent so far.
    AwaitRead,
    /// (Scripted) `kvmd powerdown-all`, once kvmd monitors this QEMU.
    PowerdownAll,
    /// (Scripted) the last `powerdown-all`'s client goes away.
    AbandonPowerdown,
    /// (Scripted) an idle guest: waits for the power button, or for its
    /// intent to end.
    AwaitButton,
    /// (Scripted) waits until `MAX_ASKED` presses went unanswered (its
    /// monitor hangs), or its intent ended.
    AwaitUnanswered,
    /// (Scripted) a new QEMU of the same name takes the socket's place
    /// (often its inode number), and this one ends.
    Replace,
    /// (Scripted) the same while the daemon is down: killed, this QEMU
    /// ends, the new one binds its inode number (not listening yet), and
    /// the daemon starts: the intent file fits the socket, the QEMU is
    /// known only once connected.
    ReplaceWhileDown,
    /// (Scripted) the daemon restarts at the very end of this QEMU's
    /// intent's window (`until == now`: expired).
    RestartAtWindowEnd,
}

/// What a guest does with the power button (`system_powerdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Button {
    /// Shuts down (an ACPI-enabled guest).
    Obeys,
    /// Ignores it (no ACPI, or a guest that hangs).
    Ignores,
    /// Loses presses until this one (a guest still booting, its button not
    /// enabled yet): kvmd's presses again are what make it shut down.
    ObeysFrom(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VState {
    None,
    Decided,
    Mooted,
    Lost,
}

struct QemuProc {
    seq: usize,
    name: Name,
    pid: u32,
    start: u64,
    ino: u64,
    owner: u32,
    ver: Ver,
    no_shutdown: bool,
    no_reboot: bool,
    panic_pause: bool,
    life: Life,
    run: Run,
    bound_at: Instant,
    /// Bound at the control directory's path: a clean exit unlinks it.
    in_dir: bool,
    client: Option<InstanceKey>,
    /// A README row to play, each act once the daemon negotiated.
    script: VecDeque<Act>,
    /// The reference: everything it sent to a negotiated daemon
    /// connection, across connections (folded as it is sent).
    sent: Evidence,
    /// Everything the daemon read of it, across connections.
    read: Evidence,
    /// Ground truth: every lifecycle event it emitted, client or not (and
    /// negotiations and status replies).
    truth: Evidence,
    /// What a daemon keeping only the state file knows.
    kept: Evidence,
    /// `kept.carried()` when the last connection was dropped by a restart.
    carried_at_drop: Option<Carried>,
    /// As `kept`, had no state file ever been swept (a counterfactual, to
    /// tell why `kept` and `sent` differ).
    unswept: Evidence,
    unswept_at_drop: Option<Carried>,
    /// Connections dropped by a daemon restart.
    drops: u32,
    /// The state file was gone when it was needed.
    swept: bool,
    /// B2: the state file was swept at a daemon's start while this QEMU's
    /// socket stood at its name (in the control directory, or in the
    /// directory moved away with it).
    swept_at_start: bool,
    /// Lines sent to a connection that a restart dropped before the daemon
    /// read them.
    unread_at_kill: bool,
    /// A lifecycle event sent while no daemon connection was negotiated,
    /// after one had been: lost to every daemon, so the references are
    /// stale from then on.
    lost_in_gap: bool,
    negotiated_once: bool,
    /// A `Created` was handed to the fleet while its socket stood at its
    /// name.
    creation_told: bool,
    hangup: Option<u64>,
    /// The socket it was monitored through when it hung up.
    hung_up_on: Option<SocketId>,
    verdict: VState,
    monitorable_since: Option<Instant>,
    stalled_meanwhile: bool,
    excused: Option<&'static str>,
    /// What its guest does with the power button.
    button: Button,
    /// Power button presses it took (`system_powerdown` answered).
    presses: u32,
    /// Its monitor answers no command until then (a QEMU whose main loop is
    /// stuck on a slow disk): kvmd's presses pile up unanswered.
    deaf_until: Option<Instant>,
    /// Its monitor hangs for 40 s at the first press (scripted).
    hangs_when_pressed: bool,
    /// I1: what the host said of its stop, as the model says the daemon
    /// knew it at its hang-up.
    expected: Expected,
}

impl QemuProc {
    fn qemu(&self) -> Qemu {
        Qemu {
            pid: self.pid,
            start: self.start,
        }
    }

    fn alive(&self) -> bool {
        self.life != Life::Dead
    }
}

/// A line's JSON ends at `json_end`, its newline at `line_end`; reading it
/// gives the fleet `event` (none: it is the reply to a power button press).
#[derive(Clone, Copy, Debug)]
struct Mark {
    json_end: usize,
    line_end: usize,
    event: Option<Event>,
}

struct Conn {
    qemu: usize,
    name: Name,
    socket: SocketId,
    /// QEMU → daemon, `read` bytes of it handed to the fleet.
    out: Vec<u8>,
    read: usize,
    marks: VecDeque<Mark>,
    /// Commands the daemon sent, not yet answered.
    cmds: VecDeque<Command>,
    /// Power button presses sent whose replies the daemon has not read
    /// (I3: at most `MAX_ASKED`).
    asked: usize,
    greet_pending: bool,
    /// QEMU's side: it answered `qmp_capabilities`, events flow.
    negotiated: bool,
    /// QEMU's side is closed (it exited).
    closed: bool,
    /// Its hang-up was handed to the fleet: a `Close` must follow.
    hung_up: bool,
    /// Since when it has had something to read (bytes or end-of-file).
    since: Option<Instant>,
}

/// One inotify event in the model queue.
#[derive(Clone, Debug, PartialEq, Eq)]
enum QEv {
    Entry {
        generation: u64,
        created: bool,
        name: Name,
    },
    /// The path to the control directory changed (moved away or back).
    Path {
        generation: u64,
    },
    Overflow,
}

struct WatcherModel {
    /// The directory watched (or, stalled, scanned).
    watched: Option<u64>,
    stalled: bool,
    /// Watches are replaced at each crawl: events of older ones are
    /// skipped.
    generation: u64,
    queue: VecDeque<QEv>,
    /// When the oldest unread event was queued: the kernel wakes the daemon
    /// at once, so a turn reads it within `LATENCY`.
    since: Option<Instant>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    full: bool,
    readonly: bool,
    emfile: bool,
    eagain: bool,
    watch_limit: bool,
    register_once: bool,
    look_fail_once: bool,
}

/// A verdict the model knows to be waiting in the fleet.
#[derive(Clone, Copy, Debug)]
struct PendingV {
    key: VerdictKey,
    qemu: usize,
    socket: SocketId,
    verdict: Verdict,
    hangup: u64,
    last_error: Option<RecordError>,
    b3: bool,
}

/// An intent as the model says the daemon holds it, by instance name
/// (invariants I1 to I3).
#[derive(Clone, Debug)]
struct HeldIntent {
    /// The instance holding it.
    key: InstanceKey,
    /// What the fleet's `InstanceView::intent`, and the intent file, must
    /// say.
    intent: Intent,
    /// When the button was last pressed for it (I3: presses again come
    /// `PRESS_AGAIN` apart).
    last_press: Option<Instant>,
    /// A press was refused because `MAX_ASKED` went unanswered: kvmd
    /// presses no more, by design.
    presses_over: bool,
    /// A press came due while its instance was not monitored yet (after a
    /// restart): when the next one comes is kvmd's choice; that one comes
    /// is invariant I3's liveness.
    press_unsure: bool,
}

/// How an intent's story went (counted for the summary).
#[derive(Clone, Debug, Default)]
struct IntentStats {
    given: u64,
    claimed: u64,
    expired: u64,
    cancelled: u64,
    /// Dropped at a restart (expired, or another QEMU) or at a connect.
    dropped: u64,
    /// Of them, at the connect that found another QEMU.
    dropped_at_connect: u64,
    /// Taken up again after a restart.
    restored: u64,
    /// Restored already claimed, or claimed at once at restoring.
    restored_claimed: u64,
    /// Dropped at a restart as expired, exactly at the window's end.
    dropped_at_until: u64,
    /// Kept at a restart for a name not looked at yet; of them, settled
    /// by a look, and dropped at the end of their window still waiting.
    awaited: u64,
    awaited_settled: u64,
    awaited_ended: u64,
    /// Restored to an instance still connecting, its window over before
    /// the connect: ended at the connect.
    expired_at_connect: u64,
    /// Presses sent; of them, presses again (from the timer).
    presses: u64,
    presses_again: u64,
    /// Presses kvmd refused: `MAX_ASKED` unanswered.
    presses_refused: u64,
    powerdowns_all: u64,
    /// `powerdown-all` clients that went away before their guests stopped;
    /// intents whose presses that stopped.
    abandoned: u64,
    presses_stopped: u64,
    /// Requests refused, by the reason the fleet gave.
    refused: BTreeMap<String, u64>,
}

impl IntentStats {
    fn add(&mut self, o: &IntentStats) {
        self.given += o.given;
        self.claimed += o.claimed;
        self.expired += o.expired;
        self.cancelled += o.cancelled;
        self.dropped += o.dropped;
        self.dropped_at_connect += o.dropped_at_connect;
        self.restored += o.restored;
        self.restored_claimed += o.restored_claimed;
        self.dropped_at_until += o.dropped_at_until;
        self.awaited += o.awaited;
        self.awaited_settled += o.awaited_settled;
        self.awaited_ended += o.awaited_ended;
        self.expired_at_connect += o.expired_at_connect;
        self.presses += o.presses;
        self.presses_again += o.presses_again;
        self.presses_refused += o.presses_refused;
        self.powerdowns_all += o.powerdowns_all;
        self.abandoned += o.abandoned;
        self.presses_stopped += o.presses_stopped;
        for (k, v) in &o.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
    }
}

/// The exceptions and gaps of the module documentation: the invariant
/// each one is about, whether it is a gap in kvmd (fails under strict),
/// and what it is.
const CLASSES: [(&str, &str, bool, &str); 17] = [
    (
        "E1",
        "2",
        false,
        "never negotiated, where an earlier connection did",
    ),
    (
        "E2",
        "2",
        false,
        "another reason, the same answer, after a restart",
    ),
    (
        "E3",
        "2",
        false,
        "a pause read, not retold: QEMU exited before query-status",
    ),
    (
        "E4",
        "2",
        false,
        "what decides was unread when the daemon was killed",
    ),
    (
        "E5",
        "2",
        false,
        "the reference is stale; kvmd agrees with the truth",
    ),
    (
        "E6",
        "2",
        false,
        "state file swept while its socket was not at its name",
    ),
    ("E7", "2", false, "an event no daemon could see decides"),
    (
        "B1",
        "7",
        true,
        "given up on a socket that was gone, refused ever after",
    ),
    (
        "B1/dir",
        "7",
        true,
        "(of B1) given up because its directory was away",
    ),
    (
        "B2",
        "2",
        true,
        "state file swept at start-up, its socket in place",
    ),
    (
        "B3",
        "3",
        true,
        "old verdict written over a newer QEMU with its inode",
    ),
    (
        "L1",
        "7",
        false,
        "inode reused for a socket given up on, while stalled",
    ),
    (
        "L2",
        "7",
        false,
        "inode reused for a monitored socket while stalled, unseen at its hang-up",
    ),
    (
        "moot",
        "2",
        false,
        "a verdict mooted before its first write",
    ),
    (
        "O1",
        "I2",
        true,
        "(fixed) an instance holding an intent given up, its intent file left",
    ),
    (
        "O2",
        "I3",
        true,
        "(fixed) powerdown-all's presses stopped while its intent waits",
    ),
    (
        "O3",
        "I2",
        true,
        "(fixed) powerdown-all refused (CannotPress), yet gave an intent (a recurrence fails I2)",
    ),
];

/// How often one exception happened, and where first.
#[derive(Clone, Debug, Default)]
struct Tally {
    count: u64,
    first: Option<(u64, u64, String)>,
}

#[derive(Clone, Debug, Default)]
struct Stats {
    steps: u64,
    qemus: u64,
    hangups: u64,
    user: u64,
    not_user: u64,
    written: u64,
    restarts: u64,
    overflows: u64,
    crawls: u64,
    mooted: u64,
    unrecordable: u64,
    lost_to_restart: u64,
    /// Reports asked for (metrics, systemd's status): at most one a second.
    reports: u64,
    max_deferred: usize,
    max_instances: usize,
    lifetime_total: Duration,
    why: BTreeMap<String, u64>,
    exceptions: BTreeMap<&'static str, Tally>,
    intents: IntentStats,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.qemus += o.qemus;
        self.hangups += o.hangups;
        self.user += o.user;
        self.not_user += o.not_user;
        self.written += o.written;
        self.restarts += o.restarts;
        self.overflows += o.overflows;
        self.crawls += o.crawls;
        self.reports += o.reports;
        self.mooted += o.mooted;
        self.unrecordable += o.unrecordable;
        self.lost_to_restart += o.lost_to_restart;
        self.max_deferred = self.max_deferred.max(o.max_deferred);
        self.max_instances = self.max_instances.max(o.max_instances);
        self.lifetime_total += o.lifetime_total;
        for (k, v) in &o.why {
            *self.why.entry(k.clone()).or_default() += v;
        }
        for (class, t) in &o.exceptions {
            let mine = self.exceptions.entry(class).or_default();
            mine.count += t.count;
            if mine.first.is_none() {
                mine.first.clone_from(&t.first);
            }
        }
        self.intents.add(&o.intents);
    }
}

/// How a seed's world behaves: rates vary from seed to seed.
#[derive(Clone, Copy, Debug)]
struct Profile {
    /// Per 10,000 steps.
    restarts: u64,
    faults: u64,
    dir_moves: u64,
    fs_churn: u64,
}

enum DirErr {
    Away,
    Failed(Errno),
}

// --- The simulation -----------------------------------------------------------

struct Sim {
    rng: Rng,
    /// Every choice about intents is drawn from its own stream, so that a
    /// seed's world runs as it did before intents until the first intent
    /// changes it.
    intent_rng: Rng,
    seed: u64,
    step: u64,
    profile: Profile,
    base: Instant,
    now: Instant,
    fleet: Fleet,
    watcher: WatcherModel,
    /// `CtrlDir`'s descriptor, open for the rest of the turn.
    dir_fd_open: bool,
    told_reach: Reach,
    told_follow: Follow,
    /// When the fleet last asked for a report (invariant R).
    last_report: Option<Instant>,
    dir: Option<DirModel>,
    aside: Vec<DirModel>,
    /// Sockets moved out of the directory, by the name they had.
    moved: Vec<(Name, Entry)>,
    next_dir: u64,
    qemus: BTreeMap<usize, QemuProc>,
    next_seq: usize,
    conns: BTreeMap<InstanceKey, Conn>,
    state: BTreeMap<Name, Saved>,
    verdicts: BTreeMap<Name, PendingV>,
    /// Hang-ups handed, whose verdict has not come out yet.
    awaiting: BTreeMap<Name, usize>,
    last_written: BTreeMap<Name, u64>,
    /// The socket of each name's last connect, and what the fleet gave up
    /// on (its `given_up`, as far as the actions tell).
    last_connect: BTreeMap<Name, SocketId>,
    given_up: BTreeMap<Name, (SocketId, GiveUp)>,
    /// The daemon's intents, as the model says it holds them (lost at a
    /// restart; the files survive).
    intents: BTreeMap<Name, HeldIntent>,
    /// The state directory's intent files.
    intent_files: BTreeMap<Name, Intent>,
    /// Names whose instance was given up while it held an intent, in the
    /// drain being carried out.
    forgotten: BTreeSet<Name>,
    /// O1: intent files left by an instance given up, tolerated as long
    /// as they stay as they were (a restart hands them back).
    orphans: BTreeMap<Name, Intent>,
    /// Intents handed back at start-up for a name the fleet had not looked
    /// at (the directory away, the look failed or deferred): their files
    /// stay until a look settles them or their window ends.
    intents_awaiting_look: BTreeMap<Name, Intent>,
    /// This daemon's names whose last look (to attach) told nothing: an
    /// error, the directory away, no descriptor.
    looks_unsettled: BTreeSet<Name>,
    /// Intents whose window the model says ends in this `handle_timeout`:
    /// each must be told expired.
    expiring: BTreeSet<Name>,
    /// SaveIntent, RemoveIntent and presses carried out so far (a refused
    /// request must add none).
    intent_actions: u64,
    /// Inside `handle_powerdown_all` (its presses are not presses again).
    pressing_all: bool,
    /// The `powerdown-all` clients still connected: the names each was
    /// pressed for. They go with the daemon that answered them.
    powerdown_clients: Vec<Vec<Name>>,
    /// Intents whose presses the model says stop in this
    /// `handle_orders_abandoned`: each must be told.
    stopping: BTreeSet<Name>,
    /// A daemon's start-up until it handed the intent files back: the
    /// files are not the fleet's yet (I2 waits).
    starting: bool,
    hangups: u64,
    faults: Faults,
    names: Vec<Name>,
    names_used: BTreeSet<Name>,
    stats: Stats,
    strict: bool,
    failure: Option<String>,
    tracing: bool,
    echo: bool,
    trace: VecDeque<(u64, String)>,
}

macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.tracing {
            let line = format!($($arg)*);
            $sim.trace_line(line);
        }
    };
}

impl Sim {
    fn new(seed: u64, tracing: bool, echo: bool, strict: bool) -> Sim {
        let mut rng = Rng(seed ^ 0x6B76_6D64_5349_4D00);
        let intent_rng = Rng(seed ^ 0x696E_7465_6E74_5300);
        let profile = Profile {
            restarts: [0, 2, 5, 12, 30][rng.index(5)],
            faults: [0, 10, 30, 80][rng.index(4)],
            dir_moves: [0, 3, 10, 30][rng.index(4)],
            fs_churn: [20, 80, 200][rng.index(3)],
        };
        let mut names: Vec<Name> = NAMES
            .iter()
            .map(|n| InstanceName::new(OsStr::new(n)).expect("a name"))
            .collect();
        let long = "x".repeat(250);
        names.push(InstanceName::new(OsStr::new(&long)).expect("a long name"));
        let base = Instant::now();
        let mut sim = Sim {
            rng,
            intent_rng,
            seed,
            step: 0,
            profile,
            base,
            now: base,
            fleet: Fleet::new(vec![TRUSTED]),
            watcher: WatcherModel {
                watched: None,
                stalled: false,
                generation: 0,
                queue: VecDeque::new(),
                since: None,
            },
            dir_fd_open: false,
            told_reach: Reach::Away,
            told_follow: Follow::Events,
            last_report: None,
            dir: Some(DirModel::new(1)),
            aside: Vec::new(),
            moved: Vec::new(),
            next_dir: 2,
            qemus: BTreeMap::new(),
            next_seq: 0,
            conns: BTreeMap::new(),
            state: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            last_written: BTreeMap::new(),
            last_connect: BTreeMap::new(),
            given_up: BTreeMap::new(),
            intents: BTreeMap::new(),
            intent_files: BTreeMap::new(),
            forgotten: BTreeSet::new(),
            orphans: BTreeMap::new(),
            expiring: BTreeSet::new(),
            intents_awaiting_look: BTreeMap::new(),
            looks_unsettled: BTreeSet::new(),
            intent_actions: 0,
            pressing_all: false,
            powerdown_clients: Vec::new(),
            stopping: BTreeSet::new(),
            starting: false,
            hangups: 0,
            faults: Faults::default(),
            names,
            names_used: BTreeSet::new(),
            stats: Stats::default(),
            strict,
            failure: None,
            tracing,
            echo,
            trace: VecDeque::new(),
        };
        trace!(sim, "seed {seed}: profile {:?}", sim.profile);
        sim.startup();
        sim.check();
        sim
    }

    fn trace_line(&mut self, line: String) {
        if self.echo {
            eprintln!("[{:>5}] {line}", self.step);
        }
        self.trace.push_back((self.step, line));
        while self
            .trace
            .front()
            .is_some_and(|(s, _)| *s + TRACE_STEPS < self.step)
        {
            self.trace.pop_front();
        }
    }

    fn fail(&mut self, invariant: &str, message: String) {
        if self.failure.is_none() {
            trace!(self, "FAILED: invariant {invariant}: {message}");
            self.failure = Some(format!("invariant {invariant}: {message}"));
        }
    }

    /// Counts an exception (see `CLASSES`); a gap fails under strict.
    fn exception(&mut self, class: &'static str, what: String) {
        let &(_, invariant, gap, _) = CLASSES
            .iter()
            .find(|c| c.0 == class)
            .expect("a known class");
        trace!(self, "  {class}: {what}");
        let tally = self.stats.exceptions.entry(class).or_default();
        tally.count += 1;
        if tally.first.is_none() {
            tally.first = Some((self.seed, self.step, what.clone()));
        }
        if gap {
            self.fail(&format!("{invariant} (gap {class})"), what);
        } else if self.strict {
            self.fail(&format!("{invariant} (strict, {class})"), what);
        }
    }

    fn t(&self) -> f64 {
        (self.now - self.base).as_secs_f64()
    }

    // --- The daemon: start-up, turns, actions ------------------------------------

    fn startup(&mut self) {
        trace!(self, "daemon: start (crawl, state files)");
        self.starting = true;
        self.dir_fd_open = false;
        let changes = self.watcher_crawl();
        self.apply(changes);
        let names: Vec<Name> = self.state.keys().cloned().collect();
        // The QEMUs whose state file matches and whose socket is in place
        // (in the control directory, or in one moved away with it).
        let mut live: Vec<(Name, usize)> = Vec::new();
        for (name, saved) in &self.state {
            let Some(q) = self
                .qemus
                .values()
                .find(|q| q.alive() && q.qemu() == saved.qemu)
            else {
                continue;
            };
            let its_socket = Kind::Socket {
                owner: q.owner,
                qemu: Some(q.seq),
            };
            let in_place = |d: &DirModel| {
                d.kvmd
                    .get(name)
                    .is_some_and(|e| e.id() == saved.socket && e.kind == its_socket)
            };
            // At its name in the directory kvmd watches: a sweep of its
            // file is a gap (B2). In a directory moved aside, it is not at
            // its name: the sweep is the rule (E6).
            if self.dir.iter().any(in_place) {
                live.push((name.clone(), q.seq));
            }
        }
        self.fleet.handle_state_files(names);
        self.carry_out();
        self.restore_intents();
        self.starting = false;
        self.check_intents_held();
        self.dir_fd_open = false;
        for (name, seq) in live {
            if !self.state.contains_key(&name) {
                trace!(
                    self,
                    "  B2: {name}: q{seq}'s state file swept, its socket in place"
                );
                if let Some(q) = self.qemus.get_mut(&seq) {
                    q.swept_at_start = true;
                }
            }
        }
    }

    /// The daemon is killed (SIGKILL) and started again.
    fn restart(&mut self) {
        trace!(self, "daemon: SIGKILL, restart");
        // A new daemon: its first report owes nothing to the old one's.
        self.last_report = None;
        self.stats.restarts += 1;
        for (_, conn) in std::mem::take(&mut self.conns) {
            if let Some(q) = self.qemus.get_mut(&conn.qemu) {
                q.unread_at_kill |= !conn.marks.is_empty();
                q.client = None;
                q.carried_at_drop = Some(q.kept.carried());
                q.unswept_at_drop = Some(q.unswept.carried());
                q.drops += 1;
            }
        }
        for (name, pv) in std::mem::take(&mut self.verdicts) {
            trace!(self, "  {name}: unwritten verdict lost: {}", pv.verdict);
            self.stats.lost_to_restart += 1;
            if let Some(q) = self.qemus.get_mut(&pv.qemu) {
                q.verdict = VState::Lost;
            }
        }
        if !self.awaiting.is_empty() {
            let awaiting = format!("{:?}", self.awaiting);
            self.fail(
                "2",
                format!("hang-ups without a verdict at restart: {awaiting}"),
            );
        }
        self.watcher.watched = None;
        self.watcher.stalled = false;
        self.watcher.generation += 1;
        self.watcher.queue.clear();
        self.watcher.since = None;
        self.fleet = Fleet::new(vec![TRUSTED]);
        self.given_up.clear();
        // Its intents were memory; their files survive. Its control
        // clients are cut off with it.
        self.intents.clear();
        self.intents_awaiting_look.clear();
        self.looks_unsettled.clear();
        self.powerdown_clients.clear();
        self.expiring.clear();
        self.told_reach = Reach::Away;
        self.told_follow = Follow::Events;
        self.startup();
    }

    /// One loop turn of the daemon after the world moved.
    fn daemon_turn(&mut self, all: bool) {
        let now = self.now;
        let overdue = move |since: Option<Instant>| since.is_some_and(|t| now - t >= LATENCY);
        if !self.watcher.queue.is_empty()
            && (all || overdue(self.watcher.since) || self.rng.chance(6, 10))
        {
            self.inotify_readable();
        }
        let mut ready: Vec<(InstanceKey, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.read < c.out.len() || c.closed)
            .map(|(k, c)| (*k, overdue(c.since)))
            .collect();
        self.rng.shuffle(&mut ready);
        for (key, overdue) in ready {
            if all || overdue || self.rng.chance(6, 10) {
                self.service(key, all);
            }
        }
        let presses = self.intents_due();
        self.awaiting_intents_due();
        self.fleet.handle_timeout(self.now);
        self.carry_out();
        self.check_pressed(&presses, "a press was due");
        if !self.expiring.is_empty() {
            let names = std::mem::take(&mut self.expiring);
            self.fail(
                "I1",
                format!("intents of {names:?} expired in the model, not told expired"),
            );
        }
        self.dir_fd_open = false;
    }

    /// inotify is readable: read every event, crawl if one says so.
    fn inotify_readable(&mut self) {
        let events: Vec<QEv> = self.watcher.queue.drain(..).collect();
        self.watcher.since = None;
        let mut crawl_again = false;
        let mut changes = Vec::new();
        for event in events {
            match event {
                QEv::Overflow => crawl_again = true,
                QEv::Path { generation } if generation == self.watcher.generation => {
                    crawl_again = true;
                }
                QEv::Entry {
                    generation,
                    created,
                    name,
                } if generation == self.watcher.generation && !crawl_again => {
                    changes.push(if created {
                        Change::Created(name)
                    } else {
                        Change::Vanished(name)
                    });
                }
                _ => {}
            }
        }
        if crawl_again {
            changes.extend(self.watcher_crawl());
        }
        self.apply(changes);
    }

    /// The watcher crawls: new watches, and every entry as appeared.
    fn watcher_crawl(&mut self) -> Vec<Change> {
        self.stats.crawls += 1;
        self.watcher.generation += 1;
        self.watcher.stalled = self.faults.watch_limit;
        let mut changes = Vec::new();
        match &self.dir {
            Some(dir) => {
                self.watcher.watched = Some(dir.id);
                let mut names: Vec<Name> = dir.kvmd.keys().cloned().collect();
                // An entry created while the crawl ran is in the recap and,
                // its watch being added first, also told by an event.
                let step = self.step;
                let racing: Vec<Name> = dir
                    .kvmd
                    .iter()
                    .filter(|(_, e)| e.born == step)
                    .map(|(n, _)| n.clone())
                    .collect();
                self.rng.shuffle(&mut names);
                changes.extend(names.into_iter().map(Change::Appeared));
                if !self.watcher.stalled {
                    for name in racing {
                        if self.rng.chance(1, 2) {
                            let generation = self.watcher.generation;
                            self.push_event(QEv::Entry {
                                generation,
                                created: true,
                                name,
                            });
                        }
                    }
                }
            }
            None => self.watcher.watched = None,
        }
        trace!(
            self,
            "  watcher: crawl: {} stalled={} {changes:?}",
            if self.watcher.watched.is_some() {
                "reached"
            } else {
                "away"
            },
            self.watcher.stalled
        );
        changes
    }

    fn apply(&mut self, changes: Vec<Change>) {
        self.dir_fd_open = false;
        for change in changes {
            trace!(self, "  fleet <- {change:?}");
            if let Change::Created(name) | Change::Vanished(name) = &change {
                self.given_up.remove(name);
            }
            // The fleet is told of this very socket's creation.
            if let Change::Created(name) = &change
                && let Some(entry) = self.dir.as_ref().and_then(|d| d.kvmd.get(name))
                && let Kind::Socket {
                    qemu: Some(seq), ..
                } = entry.kind
                && let Some(q) = self.qemus.get_mut(&seq)
            {
                q.creation_told = true;
            }
            let vanished = match &change {
                Change::Vanished(name) => Some(name.clone()),
                _ => None,
            };
            self.fleet.handle_change(self.now, change);
            if let Some(name) = vanished {
                self.looks_unsettled.remove(&name);
                self.settle_awaiting(&name);
            }
            self.carry_out();
        }
        let reach = if self.watcher.watched.is_some() {
            Reach::Reached
        } else {
            Reach::Away
        };
        let follow = if self.watcher.stalled {
            Follow::Rescans
        } else {
            Follow::Events
        };
        trace!(self, "  fleet <- dir {reach:?} {follow:?}");
        self.told_reach = reach;
        self.told_follow = follow;
        self.fleet.handle_dir(self.now, reach, follow);
        self.carry_out();
    }

    /// A connection's turn: bytes in chunks, then end-of-file.
    fn service(&mut self, key: InstanceKey, all: bool) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        let (seq, name, socket) = (conn.qemu, conn.name.clone(), conn.socket);
        let reads = if all { 8 } else { 1 + self.rng.below(3) };
        for _ in 0..reads {
            let conn = &self.conns[&key];
            let left = conn.out.len() - conn.read;
            if left == 0 {
                break;
            }
            let n = match self.rng.below(10) {
                0..=4 => left,
                5 => 1,
                _ => 1 + self.rng.index(left),
            };
            let conn = self.conns.get_mut(&key).expect("the connection");
            let chunk = conn.out[conn.read..conn.read + n].to_vec();
            conn.read += n;
            trace!(
                self,
                "  fleet <- bytes {key:?} \"{}\"",
                chunk.escape_ascii()
            );
            self.fleet.handle_bytes(self.now, key, &chunk);
            self.fold_read(key, false);
        }
        let conn = &self.conns[&key];
        let eof = conn.closed && conn.read == conn.out.len();
        let mut ended = None;
        if eof {
            self.fold_read(key, true);
            // I1: what the daemon holds for this QEMU at its hang-up
            // decides (a SHUTDOWN in the last line has claimed already).
            let held = self.intents.get(&name).filter(|h| h.key == key);
            let expected = match held.map(|h| h.intent.state) {
                Some(IntentState::Claimed) => Expected::HostStop,
                _ => Expected::Nothing,
            };
            if held.is_some() {
                self.intents.remove(&name);
            }
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.expected = expected;
                ended = Some(q.qemu());
            }
            self.hangups += 1;
            self.stats.hangups += 1;
            let hangup = self.hangups;
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.hangup = Some(hangup);
                q.hung_up_on = Some(socket);
            }
            if self.awaiting.insert(name.clone(), seq).is_some() {
                self.fail("2", format!("{name}: two hang-ups await a verdict"));
            }
            trace!(self, "  fleet <- hangup {key:?} ({name} q{seq})");
            self.conns.get_mut(&key).expect("the connection").hung_up = true;
            self.fleet.handle_hangup(self.now, key);
        }
        self.carry_out();
        if eof {
            if self.conns.get(&key).is_some_and(|c| c.hung_up) {
                self.fail(
                    "4",
                    format!("{name}: the hang-up of {key:?} was not closed"),
                );
            }
            if self.awaiting.contains_key(&name) {
                self.fail(
                    "2",
                    format!("{name}: hang-up of q{seq} not decided at once"),
                );
                self.awaiting.remove(&name);
            }
            self.check_intent_ended(&name, seq, ended);
        }
        if let Some(conn) = self.conns.get_mut(&key)
            && conn.read == conn.out.len()
            && !conn.closed
        {
            conn.since = None;
        }
        self.compact(key);
    }

    /// Folds what the fleet has read of `key`'s connection into the
    /// references: whole lines, and at end-of-file a last line whose JSON is
    /// complete.
    fn fold_read(&mut self, key: InstanceKey, eof: bool) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let mut events = Vec::new();
        let mut replies = 0;
        while let Some(mark) = conn.marks.front() {
            let whole = mark.line_end <= conn.read;
            let last = eof && mark.json_end <= conn.read;
            if !whole && !last {
                break;
            }
            match mark.event {
                Some(event) => events.push(event),
                None => replies += 1,
            }
            conn.marks.pop_front();
        }
        if eof {
            conn.marks.clear();
        }
        conn.asked = conn.asked.saturating_sub(replies);
        let (seq, name) = (conn.qemu, conn.name.clone());
        let mut first_shutdown = false;
        if let Some(q) = self.qemus.get_mut(&seq) {
            for event in events {
                first_shutdown |=
                    matches!(event, Event::Shutdown { .. }) && q.kept.first_shutdown().is_none();
                q.read.record(event);
                q.kept.record(event);
                q.unswept.record(event);
            }
        }
        if first_shutdown {
            self.first_shutdown_read(key, &name);
        }
    }

    fn compact(&mut self, key: InstanceKey) {
        if let Some(conn) = self.conns.get_mut(&key)
            && conn.read > 4096
        {
            let read = conn.read;
            conn.out.drain(..read);
            conn.read = 0;
            for mark in &mut conn.marks {
                mark.json_end -= read;
                mark.line_end -= read;
            }
        }
    }

    /// Carries out the fleet's actions in order, answering each question at
    /// once.
    fn carry_out(&mut self) {
        while let Some(action) = self.fleet.poll_action() {
            match action {
                Action::Look { name, purpose } => {
                    let look = self.look(&name);
                    trace!(self, "  {name}: look ({purpose:?}) -> {look:?}");
                    self.fleet
                        .handle_looked(self.now, name.clone(), purpose, look);
                    self.looked(&name, purpose, look);
                }
                Action::Connect { key, name, socket } => {
                    self.last_connect.insert(name.clone(), socket);
                    let result = self.connect(key, &name, socket);
                    trace!(self, "  {name}: connect {key:?} {socket:?} -> {result:?}");
                    let reached = result.as_ref().ok().and_then(|c| c.qemu);
                    self.fleet.handle_connect(self.now, key, result);
                    if reached.is_some() {
                        self.connected_with_intent_over(&name, key);
                    }
                    // An intent taken up at start-up for another QEMU goes.
                    if let Some(reached) = reached
                        && let Some(held) = self.intents.get(&name)
                        && held.key == key
                        && held.intent.qemu.is_some_and(|then| then != reached)
                    {
                        trace!(self, "  {name}: the model: kept intent was another QEMU's");
                        self.intents.remove(&name);
                        self.stats.intents.dropped += 1;
                        self.stats.intents.dropped_at_connect += 1;
                    }
                }
                Action::Transmit { key, command } => {
                    trace!(self, "  transmit {key:?} {command:?}");
                    match self.conns.get_mut(&key) {
                        Some(conn) => conn.cmds.push_back(command),
                        None => self.fail("4", format!("transmit on no connection: {key:?}")),
                    }
                    if command == Command::SystemPowerdown {
                        self.press_sent(key);
                    }
                }
                Action::Close { key } => {
                    trace!(self, "  close {key:?}");
                    match self.conns.remove(&key) {
                        Some(conn) => {
                            if let Some(q) = self.qemus.get_mut(&conn.qemu) {
                                q.client = None;
                            }
                        }
                        None => self.fail("4", format!("close of no connection: {key:?}")),
                    }
                }
                Action::Record { key, name, verdict } => self.record_action(key, name, verdict),
                Action::SaveState { name, saved } => {
                    trace!(self, "  {name}: save state {:?}", saved.carried);
                    self.state.insert(name, saved);
                }
                Action::RemoveState { name } => {
                    trace!(self, "  {name}: remove state");
                    self.state.remove(&name);
                }
                Action::Rescan => {
                    trace!(self, "  rescan");
                    let changes = self.watcher_crawl();
                    self.apply(changes);
                }
                Action::Notify(notice) => self.notice(notice),
                // The journal is I/O this model has no part of.
                Action::Journal(_) => {}
                Action::SaveIntent { name, intent } => {
                    trace!(
                        self,
                        "  {name}: save intent {:?} by {:?}", intent.state, intent.by
                    );
                    self.intent_actions += 1;
                    self.orphans.remove(&name);
                    self.intent_files.insert(name, intent);
                }
                Action::RemoveIntent { name } => {
                    trace!(self, "  {name}: remove intent");
                    self.intent_actions += 1;
                    self.orphans.remove(&name);
                    self.intent_files.remove(&name);
                }
                Action::RunHook { .. } | Action::SignalHook { .. } | Action::SaveHooks { .. } => {
                    self.fail("H", "a hook action from a fleet without hooks".to_owned());
                }
                // What the loop does with it (metrics, systemd) is I/O
                // this model has no part of; counted, for invariant 5.
                Action::Report => {
                    trace!(self, "  report");
                    self.stats.reports += 1;
                    // R: at most one report a second.
                    if let Some(last) = self.last_report
                        && self.now < last + Duration::from_secs(1)
                    {
                        let gap = self.now - last;
                        self.fail("R", format!("two reports {gap:?} apart"));
                    }
                    self.last_report = Some(self.now);
                }
            }
        }
        self.check_intents_held();
    }

    /// `CtrlDir::get`: opened once per turn, if the watched directory is
    /// the one at the path.
    fn dir_get(&mut self) -> Result<(), DirErr> {
        if self.dir_fd_open {
            return Ok(());
        }
        let current = self.dir.as_ref().map(|d| d.id);
        if current.is_none() || self.watcher.watched != current {
            return Err(DirErr::Away);
        }
        if self.faults.emfile && self.rng.chance(1, 2) {
            return Err(DirErr::Failed(Errno::EMFILE));
        }
        self.dir_fd_open = true;
        Ok(())
    }

    fn look(&mut self, name: &Name) -> Look {
        match self.dir_get() {
            Err(DirErr::Away) => return Look::DirAway,
            Err(DirErr::Failed(e)) => return Look::DirFailed(e),
            Ok(()) => {}
        }
        let entry = self.dir.as_ref().and_then(|d| d.kvmd.get(name)).copied();
        if self.faults.look_fail_once {
            self.faults.look_fail_once = false;
            // The fleet tells of it and waits for the next news of the
            // name: whatever stands there now is excused from liveness.
            if let Some(Entry {
                kind: Kind::Socket {
                    qemu: Some(seq), ..
                },
                ..
            }) = entry
                && let Some(q) = self.qemus.get_mut(&seq)
            {
                q.excused = Some("its look failed");
            }
            return Look::Failed(Errno::EIO);
        }
        match entry {
            None => Look::Absent,
            Some(e) => match e.kind {
                Kind::Socket { owner, .. } => Look::Socket { id: e.id(), owner },
                _ => Look::Other { id: e.id() },
            },
        }
    }

    fn connect(
        &mut self,
        key: InstanceKey,
        name: &Name,
        socket: SocketId,
    ) -> Result<Connected, ConnectError> {
        match self.dir_get() {
            Err(DirErr::Away) => return Err(ConnectError::DirAway),
            Err(DirErr::Failed(e)) => return Err(ConnectError::DirFailed(e)),
            Ok(()) => {}
        }
        if self.faults.emfile && self.rng.chance(1, 3) {
            return Err(ConnectError::Open(Errno::EMFILE));
        }
        let entry = self.dir.as_ref().and_then(|d| d.kvmd.get(name)).copied();
        let Some(entry) = entry else {
            return Err(ConnectError::Open(Errno::ENOENT));
        };
        let Kind::Socket { qemu, .. } = entry.kind else {
            return Err(ConnectError::NotThisSocket);
        };
        if entry.id() != socket {
            return Err(ConnectError::NotThisSocket);
        }
        if self.faults.emfile && self.rng.chance(1, 3) {
            return Err(ConnectError::Connect(Errno::EMFILE));
        }
        let listening = qemu.filter(|seq| {
            self.qemus
                .get(seq)
                .is_some_and(|q| q.life == Life::Listening)
        });
        let Some(seq) = listening else {
            return Err(ConnectError::Connect(Errno::ECONNREFUSED));
        };
        if self.faults.eagain && self.rng.chance(1, 2) {
            return Err(ConnectError::Connect(Errno::EAGAIN));
        }
        if self.faults.register_once {
            self.faults.register_once = false;
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.excused = Some("its connection could not be polled");
            }
            return Err(ConnectError::Register(Errno::ENOMEM));
        }
        if let Some(other) = self.qemus[&seq].client {
            self.fail(
                "1",
                format!("{name}: q{seq} connected twice ({other:?} is live, now {key:?})"),
            );
        }
        if self.conns.contains_key(&key) {
            self.fail(
                "4",
                format!("{name}: {key:?} is the key of a live connection"),
            );
        }
        let saved = self.state.get(name).copied();
        let q = self.qemus.get_mut(&seq).expect("the QEMU");
        let expected_carried = q.carried_at_drop.unwrap_or_default();
        let mut mismatch = None;
        q.kept = match saved {
            Some(s) if s.socket == socket && s.qemu == q.qemu() => {
                if s.carried != expected_carried {
                    mismatch = Some(format!(
                        "{name}: q{seq}'s state file holds {:?}, the killed daemon kept {expected_carried:?}",
                        s.carried
                    ));
                }
                Evidence::restored(s.carried)
            }
            _ => {
                if expected_carried != Carried::default() {
                    q.swept = true;
                }
                Evidence::new()
            }
        };
        q.unswept = match q.unswept_at_drop {
            Some(c) if c != Carried::default() => Evidence::restored(c),
            _ => Evidence::new(),
        };
        q.client = Some(key);
        let greet = q.run != Run::Exiting;
        let qemu = q.qemu();
        if let Some(m) = mismatch {
            self.fail("S", m);
        }
        self.conns.insert(
            key,
            Conn {
                qemu: seq,
                name: name.clone(),
                socket,
                out: Vec::new(),
                read: 0,
                marks: VecDeque::new(),
                cmds: VecDeque::new(),
                asked: 0,
                greet_pending: greet,
                negotiated: false,
                closed: false,
                hung_up: false,
                since: None,
            },
        );
        Ok(Connected {
            qemu: Some(qemu),
            saved,
        })
    }

    fn record_action(&mut self, key: VerdictKey, name: Name, verdict: Verdict) {
        trace!(self, "  {name}: record {key:?} {verdict}");
        if let Some(seq) = self.awaiting.remove(&name) {
            self.fresh_verdict(key, &name, seq, verdict);
        } else {
            match self.verdicts.get(&name) {
                Some(pv) if pv.key == key && pv.verdict == verdict => {}
                other => {
                    let other = format!("{other:?}");
                    self.fail(
                        "2",
                        format!(
                            "{name}: a record nobody decided: {key:?} {verdict}; model: {other}"
                        ),
                    );
                    return;
                }
            }
        }
        let Some(pv) = self.verdicts.get(&name).copied() else {
            return;
        };
        // 3: not while its QEMU is connected, not over a newer QEMU.
        if let Some((key, phase, socket)) = self.fleet.instance(&name) {
            let newer = self.conns.get(&key).map(|c| c.qemu);
            let connected = matches!(phase, Phase::Negotiating | Phase::Monitoring);
            if connected && (socket != pv.socket || newer != Some(pv.qemu)) {
                let what = format!(
                    "{name}: verdict of q{} ({}) written while {} on {socket:?} is {phase:?}",
                    pv.qemu,
                    pv.verdict,
                    newer.map_or("no QEMU".to_owned(), |q| format!("q{q}")),
                );
                let told =
                    newer.is_some_and(|q| self.qemus.get(&q).is_some_and(|q| q.creation_told));
                if socket == pv.socket && !told {
                    // B3: the newer QEMU's socket has the old one's inode
                    // number and its creation was never told (a stalled
                    // watcher, an overflow): the fleet, which tells QEMUs
                    // apart by socket only, cannot see it is newer. Told
                    // (the old instance was renewed, or the creation was
                    // read after the hang-up), the verdict must be moot.
                    if let Some(pv) = self.verdicts.get_mut(&name)
                        && !std::mem::replace(&mut pv.b3, true)
                    {
                        self.exception("B3", what);
                    }
                } else {
                    self.fail("3", what);
                }
            }
        }
        if let Some(q) = self.qemus.get(&pv.qemu)
            && (q.client.is_some() || q.alive())
        {
            self.fail(
                "3",
                format!("{name}: verdict for q{} still connected", pv.qemu),
            );
        }
        let result = self.write_shutdown_file(&name, verdict);
        trace!(self, "  {name}: record -> {result:?}");
        match result {
            Ok(_) => {
                self.stats.written += 1;
                if let Some(&last) = self.last_written.get(&name)
                    && last > pv.hangup
                {
                    self.fail(
                        "6",
                        format!(
                            "{name}: verdict of hang-up #{} written after that of hang-up #{last}",
                            pv.hangup
                        ),
                    );
                }
                self.last_written.insert(name.clone(), pv.hangup);
                if let Some(dir) = self.dir.as_mut() {
                    dir.expect
                        .insert(name.clone(), Expect::Present(verdict.is_user_shutdown()));
                }
            }
            Err(e) if !e.mendable() => {
                if let Some(dir) = self.dir.as_mut() {
                    dir.expect.insert(name.clone(), Expect::Unknown);
                }
            }
            Err(_) => {}
        }
        if let Some(pv) = self.verdicts.get_mut(&name) {
            pv.last_error = result.err();
        }
        self.fleet.handle_recorded(self.now, key, result);
    }

    /// The first record of the verdict for `seq`'s hang-up: invariant 2.
    fn fresh_verdict(&mut self, key: VerdictKey, name: &Name, seq: usize, verdict: Verdict) {
        if let Some(old) = self.verdicts.get(name) {
            let old = *old;
            self.fail(
                "2",
                format!(
                    "{name}: new verdict while q{}'s is pending, not mooted",
                    old.qemu
                ),
            );
        }
        let q = &self.qemus[&seq];
        // I1: the host's intent, claimed while the daemon held it, makes
        // the verdict; without one, `decide(kept)` is the reference. Every
        // fold is read with it (the exceptions compare the folds).
        let expected = q.expected;
        let kept = decide_expected(&q.kept, expected);
        let sent = decide_expected(&q.sent, expected);
        let read = decide_expected(&q.read, expected);
        let unswept = decide_expected(&q.unswept, expected);
        let truth = decide_expected(&q.truth, expected);
        let (drops, swept, unread, gap) = (q.drops, q.swept, q.unread_at_kill, q.lost_in_gap);
        let swept_at_start = q.swept_at_start;
        let Some(socket) = q.hung_up_on else {
            self.fail(
                "2",
                format!("{name}: verdict for q{seq}, whose socket is unknown"),
            );
            return;
        };
        *self
            .stats
            .why
            .entry(format!("{:?}", verdict.why()))
            .or_default() += 1;
        if verdict.is_user_shutdown() {
            self.stats.user += 1;
        } else {
            self.stats.not_user += 1;
        }
        if verdict != kept {
            let invariant = if verdict.why() == Why::HostIntent || expected == Expected::HostStop {
                "2/I1"
            } else {
                "2"
            };
            self.fail(
                invariant,
                format!(
                    "{name}: q{seq} decided {verdict}, but what the daemon read says {kept} with {expected:?} (reference: {sent})"
                ),
            );
        }
        if kept != sent {
            let what = format!(
                "{name}: q{seq} decided {kept}; the reference says {sent}, what was read {read} \
                 ({drops} connection(s) dropped by restarts{}{}{})",
                if swept { ", state file swept" } else { "" },
                if unread {
                    ", lines unread at a kill"
                } else {
                    ""
                },
                if gap {
                    ", events lost between connections"
                } else {
                    ""
                },
            );
            if drops == 0 && !swept {
                self.fail("2", format!("{what}: they differ without a restart"));
            } else if kept.why() == Why::NeverNegotiated && sent.why() == Why::NoShutdown {
                self.exception("E1", what);
            } else if kept.is_user_shutdown() == sent.is_user_shutdown() {
                self.exception("E2", what);
            } else if unswept.is_user_shutdown() != kept.is_user_shutdown() {
                // The swept state file made the difference.
                self.exception(if swept_at_start { "B2" } else { "E6" }, what);
            } else if read.is_user_shutdown() == kept.is_user_shutdown() {
                if !unread {
                    self.fail(
                        "2",
                        format!("{what}: nothing unread, yet the reference differs"),
                    );
                }
                self.exception("E4", what);
            } else if gap && truth.is_user_shutdown() == kept.is_user_shutdown() {
                // The reference is stale: what changed while no daemon
                // listened (a RESUME, say) is in the truth, and kvmd agrees
                // with the truth.
                self.exception("E5", format!("{what}; truth: {truth}"));
            } else if gap {
                // Neither kvmd nor the reference saw what decides.
                self.exception("E7", format!("{what}; truth: {truth}"));
            } else {
                self.exception("E3", what);
            }
        }
        if let Some(q) = self.qemus.get_mut(&seq) {
            q.verdict = VState::Decided;
        }
        self.verdicts.insert(
            name.clone(),
            PendingV {
                key,
                qemu: seq,
                socket,
                verdict,
                hangup: self.qemus[&seq].hangup.unwrap_or(0),
                last_error: None,
                b3: false,
            },
        );
    }

    fn notice(&mut self, notice: Notice) {
        trace!(self, "  notice: {notice:?}");
        match notice {
            Notice::Decided { name, verdict, .. }
            | Notice::RecordedAtLast { name, verdict, .. } => match self.verdicts.remove(&name) {
                Some(pv) if pv.verdict == verdict => {}
                other => {
                    let other = format!("{other:?}");
                    self.fail(
                        "2",
                        format!("{name}: told written {verdict}; model: {other}"),
                    );
                }
            },
            Notice::Unrecorded {
                name, again: false, ..
            }
            | Notice::Unrecordable { name, .. } => {
                if self.verdicts.remove(&name).is_none() {
                    self.fail("2", format!("{name}: refused for good, but unknown"));
                }
                self.stats.unrecordable += 1;
            }
            Notice::NotMonitored { name, why } => {
                // The instance is forgotten, and any intent it held.
                if self.intents.remove(&name).is_some() {
                    trace!(self, "  {name}: the model: intent gone with its instance");
                    self.stats.intents.dropped += 1;
                    self.forgotten.insert(name.clone());
                }
                if let Some(&socket) = self.last_connect.get(&name) {
                    self.given_up.insert(name, (socket, why));
                }
            }
            // Told expired: the model must have expired it in this turn (the
            // guard takes it off the list).
            Notice::IntentExpired { name, .. } if !self.expiring.remove(&name) => {
                self.fail(
                    "I1",
                    format!("{name}: told its intent expired, the model says it holds"),
                );
            }
            Notice::PressesStopped { name, .. } if !self.stopping.remove(&name) => {
                self.fail(
                    "I3",
                    format!("{name}: told its presses stopped, the model says otherwise"),
                );
            }
            Notice::Moot { name, .. } => {
                if let Some(pv) = self.verdicts.remove(&name) {
                    self.stats.mooted += 1;
                    if let Some(q) = self.qemus.get_mut(&pv.qemu) {
                        q.verdict = VState::Mooted;
                    }
                } else if let Some(seq) = self.awaiting.remove(&name) {
                    // Counts as its decision, but its line is never logged.
                    let what = format!("{name}: q{seq}'s verdict mooted before its first write");
                    self.exception("moot", what);
                    if let Some(q) = self.qemus.get_mut(&seq) {
                        q.verdict = VState::Mooted;
                    }
                } else {
                    self.fail("2", format!("{name}: moot of no verdict"));
                }
            }
            _ => {}
        }
    }

    /// `shutdown_file::record`, in the model directory.
    fn write_shutdown_file(
        &mut self,
        name: &Name,
        verdict: Verdict,
    ) -> Result<Outcome, RecordError> {
        match self.dir_get() {
            Err(DirErr::Away) => return Err(RecordError::DirAway),
            Err(DirErr::Failed(e)) => return Err(RecordError::DirFailed(e)),
            Ok(()) => {}
        }
        let (full, readonly) = (self.faults.full, self.faults.readonly);
        let dir = self.dir.as_mut().expect("a reachable directory");
        let there = dir.shutdown.get(name).copied();
        let file = |e| Err(RecordError::File(e));
        if verdict.is_user_shutdown() {
            match there {
                None if readonly => file(Errno::EROFS),
                None if full => file(Errno::ENOSPC),
                None => {
                    dir.shutdown.insert(name.clone(), Sd::File);
                    Ok(Outcome::Created)
                }
                Some(Sd::Symlink) if readonly => file(Errno::EROFS),
                Some(Sd::Symlink) => {
                    dir.shutdown.remove(name);
                    if full {
                        return file(Errno::ENOSPC);
                    }
                    dir.shutdown.insert(name.clone(), Sd::File);
                    Ok(Outcome::ReplacedSymlink)
                }
                Some(_) => Ok(Outcome::Kept),
            }
        } else {
            match there {
                None => Ok(Outcome::WasAbsent),
                Some(_) if readonly => file(Errno::EROFS),
                Some(Sd::FullDir) => file(Errno::ENOTEMPTY),
                Some(Sd::EmptyDir) => {
                    dir.shutdown.remove(name);
                    Ok(Outcome::RemovedDirectory)
                }
                Some(Sd::File | Sd::Symlink) => {
                    dir.shutdown.remove(name);
                    Ok(Outcome::Removed)
                }
            }
        }
    }

    // --- The world: inotify ----------------------------------------------------------

    fn push_event(&mut self, event: QEv) {
        self.watcher.since.get_or_insert(self.now);
        if self.watcher.queue.len() >= QUEUE_CAP {
            if self.watcher.queue.back() != Some(&QEv::Overflow) {
                self.stats.overflows += 1;
                self.watcher.queue.push_back(QEv::Overflow);
            }
            return;
        }
        self.watcher.queue.push_back(event);
    }

    /// An entry of the current directory changed.
    fn entry_event(&mut self, name: &Name, created: bool) {
        let current = self.dir.as_ref().map(|d| d.id);
        if current.is_some() && self.watcher.watched == current && !self.watcher.stalled {
            let generation = self.watcher.generation;
            self.push_event(QEv::Entry {
                generation,
                created,
                name: name.clone(),
            });
        }
    }

    /// The path to the directory changed.
    fn path_event(&mut self) {
        if !self.watcher.stalled {
            let generation = self.watcher.generation;
            self.push_event(QEv::Path { generation });
        }
    }

    // --- The world: the file system ----------------------------------------------------

    fn inos_in_use(&self) -> BTreeSet<u64> {
        let mut used = BTreeSet::new();
        for dir in self.dir.iter().chain(self.aside.iter()) {
            used.extend(dir.kvmd.values().map(|e| e.ino));
        }
        used.extend(self.moved.iter().map(|(_, e)| e.ino));
        used.extend(self.qemus.values().filter(|q| q.alive()).map(|q| q.ino));
        used
    }

    fn alloc_ino(&mut self) -> Option<u64> {
        let used = self.inos_in_use();
        let free: Vec<u64> = (1..=INO_POOL).filter(|i| !used.contains(i)).collect();
        if free.is_empty() {
            return None;
        }
        // ext4 often hands out the inode just freed: the lowest, half the
        // time.
        if self.rng.chance(1, 2) {
            return Some(free[0]);
        }
        Some(free[self.rng.index(free.len())])
    }

    /// Removes `name`'s entry from the current directory (unlink).
    fn unlink(&mut self, name: &Name) -> Option<Entry> {
        let entry = self.dir.as_mut()?.kvmd.remove(name)?;
        self.entry_event(name, false);
        Some(entry)
    }

    fn pick_name(&mut self) -> Name {
        if self.rng.chance(1, 40) {
            return self.names[NAMES.len()].clone();
        }
        let i = self.rng.index(NAMES.len());
        self.names[i].clone()
    }

    fn fs_act(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let name = self.pick_name();
        let entry = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
        let choice = self.rng.below(7);
        match (choice, entry) {
            (0, Some(_)) => {
                trace!(self, "world: rm {name}.kvmd");
                self.unlink(&name);
            }
            (1, Some(e)) if matches!(e.kind, Kind::Socket { .. }) => {
                trace!(self, "world: mv {name}.kvmd out");
                self.unlink(&name);
                self.moved.push((name, e));
            }
            (2, _) if !self.moved.is_empty() => {
                let i = self.rng.index(self.moved.len());
                let (n, e) = self.moved[i].clone();
                let free = self.dir.as_ref().is_some_and(|d| !d.kvmd.contains_key(&n));
                if free {
                    trace!(self, "world: mv {n}.kvmd back in (ino {})", e.ino);
                    self.moved.remove(i);
                    self.dir.as_mut().expect("a dir").kvmd.insert(n.clone(), e);
                    self.entry_event(&n, true);
                } else if self.rng.chance(1, 2) {
                    trace!(self, "world: rm moved-out {n}.kvmd");
                    self.moved.remove(i);
                }
            }
            (3 | 4, None) => {
                let Some(ino) = self.alloc_ino() else {
                    return;
                };
                let kind = match self.rng.below(6) {
                    0 => Kind::File,
                    1 => Kind::Dir,
                    2 => Kind::Fifo,
                    3 => Kind::Symlink,
                    4 => Kind::Socket {
                        owner: UNTRUSTED,
                        qemu: None,
                    },
                    _ => Kind::Socket {
                        owner: TRUSTED,
                        qemu: None,
                    },
                };
                trace!(self, "world: create {name}.kvmd as {kind:?} (ino {ino})");
                self.names_used.insert(name.clone());
                self.dir.as_mut().expect("a dir").kvmd.insert(
                    name.clone(),
                    Entry {
                        ino,
                        kind,
                        born: self.step,
                    },
                );
                self.entry_event(&name, true);
            }
            (5, _) => {
                // An operator (or Ganeti starting the instance) touches the
                // shutdown file.
                let dir = self.dir.as_mut().expect("a dir");
                let what = if dir.shutdown.contains_key(&name) && self.rng.chance(1, 2) {
                    dir.shutdown.remove(&name);
                    "removes".to_owned()
                } else {
                    let sd = [Sd::File, Sd::Symlink, Sd::EmptyDir, Sd::FullDir][self.rng.index(4)];
                    dir.shutdown.insert(name.clone(), sd);
                    format!("puts a {sd:?} at")
                };
                dir.expect.insert(name.clone(), Expect::Unknown);
                trace!(self, "world: operator {what} {name}.shutdown");
            }
            _ => {}
        }
    }

    fn dir_away(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        trace!(self, "world: control directory {} moved away", dir.id);
        self.aside.push(dir);
        if self.aside.len() > 2 {
            self.aside.remove(0);
        }
        self.path_event();
    }

    fn dir_back(&mut self) {
        if self.dir.is_some() {
            return;
        }
        if !self.aside.is_empty() && self.rng.chance(2, 3) {
            let i = self.rng.index(self.aside.len());
            let dir = self.aside.remove(i);
            trace!(self, "world: control directory {} moved back", dir.id);
            self.dir = Some(dir);
        } else {
            let id = self.next_dir;
            self.next_dir += 1;
            trace!(self, "world: control directory {id} created afresh");
            self.dir = Some(DirModel::new(id));
        }
        self.path_event();
    }

    // --- The world: QEMU ------------------------------------------------------------------

    fn spawn(&mut self) {
        let alive = self.qemus.values().filter(|q| q.alive()).count();
        if alive >= MAX_QEMUS || self.dir.is_none() {
            return;
        }
        let name = self.pick_name();
        let same = self.qemus.values().any(|q| q.alive() && q.name == name);
        if same && !self.rng.chance(1, 10) {
            return;
        }
        let there = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
        if there.is_some_and(|e| e.kind == Kind::Dir) {
            return; // bind fails: EADDRINUSE after unlink's EISDIR
        }
        let Some(ino) = self.alloc_ino() else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.qemus += 1;
        self.names_used.insert(name.clone());
        let owner = if self.rng.chance(1, 30) {
            UNTRUSTED
        } else {
            TRUSTED
        };
        let ver = [
            Ver::Modern,
            Ver::Modern,
            Ver::Modern,
            Ver::Guest,
            Ver::Legacy,
        ][self.rng.index(5)];
        let mut q = self.new_qemu(seq, name.clone(), ino, owner, ver);
        q.no_shutdown = self.rng.chance(1, 4);
        q.no_reboot = self.rng.chance(1, 5);
        q.panic_pause = self.rng.chance(1, 10);
        q.life = if self.rng.chance(2, 5) {
            Life::Listening
        } else {
            Life::Bound
        };
        q.run = if self.rng.chance(3, 5) {
            Run::Prelaunch
        } else {
            Run::Running
        };
        self.script(&mut q);
        self.intent_script(&mut q);
        let entry = Entry {
            ino,
            kind: Kind::Socket {
                owner,
                qemu: Some(seq),
            },
            born: self.step,
        };
        if self.rng.chance(1, 8) {
            // Bound elsewhere and moved in over whatever stood there: one
            // MOVED_TO, no DELETE. A clean exit unlinks the other path.
            q.in_dir = false;
            trace!(
                self,
                "world: q{seq} {name} binds elsewhere, moved in (ino {ino}) {:?}", q.ver
            );
            self.dir
                .as_mut()
                .expect("a dir")
                .kvmd
                .insert(name.clone(), entry);
        } else {
            trace!(
                self,
                "world: q{seq} {name} binds (ino {ino}) {:?} {:?} no_shutdown={} no_reboot={} script={:?}",
                q.ver,
                q.life,
                q.no_shutdown,
                q.no_reboot,
                q.script
            );
            self.unlink(&name);
            self.dir
                .as_mut()
                .expect("a dir")
                .kvmd
                .insert(name.clone(), entry);
        }
        self.entry_event(&name, true);
        self.qemus.insert(seq, q);
    }

    /// A QEMU process as it starts: listening, its guest running, no
    /// option (`spawn` draws them), its guest's button drawn from the
    /// intents' stream.
    fn new_qemu(&mut self, seq: usize, name: Name, ino: u64, owner: u32, ver: Ver) -> QemuProc {
        let button = match self.intent_rng.below(4) {
            0 | 1 => Button::Obeys,
            2 => Button::Ignores,
            _ => Button::ObeysFrom(2 + u32::try_from(self.intent_rng.below(2)).expect("small")),
        };
        QemuProc {
            seq,
            name,
            pid: 1000 + u32::try_from(seq).expect("a pid"),
            start: 50_000 + 7 * seq as u64,
            ino,
            owner,
            ver,
            no_shutdown: false,
            no_reboot: false,
            panic_pause: false,
            life: Life::Listening,
            run: Run::Running,
            bound_at: self.now,
            in_dir: true,
            client: None,
            script: VecDeque::new(),
            sent: Evidence::new(),
            read: Evidence::new(),
            truth: Evidence::new(),
            kept: Evidence::new(),
            carried_at_drop: None,
            unswept: Evidence::new(),
            unswept_at_drop: None,
            drops: 0,
            swept: false,
            swept_at_start: false,
            unread_at_kill: false,
            lost_in_gap: false,
            negotiated_once: false,
            creation_told: false,
            hangup: None,
            hung_up_on: None,
            verdict: VState::None,
            monitorable_since: None,
            stalled_meanwhile: false,
            excused: None,
            button,
            presses: 0,
            deaf_until: None,
            hangs_when_pressed: false,
            expected: Expected::Nothing,
        }
    }

    /// Some QEMUs play a story of intents (drawn from the intents' stream,
    /// so the rows of README's table keep their share).
    fn intent_script(&mut self, q: &mut QemuProc) {
        use Act::*;
        let rows: [&[Act]; 11] = [
            // A guest agent's shutdown (no POWERDOWN): host-intent.
            &[ExpectStop, Poweroff],
            // Expired unclaimed: the same shutdown is a user shutdown.
            &[ExpectStopBriefly, AwaitExpiry, Poweroff],
            // Cancelled: a user shutdown.
            &[ExpectStop, CancelIntent, Poweroff],
            // Another QEMU takes the name: it inherits nothing.
            &[ExpectStop, Replace],
            // A restart between the intent and the SHUTDOWN: honoured.
            &[ExpectStop, Restart, Poweroff],
            // A restart between the SHUTDOWN and the hang-up: still claimed
            // (and too late to cancel).
            &[ExpectStop, Poweroff, AwaitRead, CancelIntent, Restart, Quit],
            // powerdown-all, pressed again until the guest obeys.
            &[PowerdownAll, AwaitButton],
            // powerdown-all while `MAX_ASKED` presses are unanswered.
            &[PowerdownAll, AwaitUnanswered, PowerdownAll, AwaitButton],
            // Replaced while the daemon is down: the intent file fits the
            // socket, then the connect finds another QEMU.
            &[ExpectStop, ReplaceWhileDown],
            // A restart at the window's very end: expired, not taken up.
            &[ExpectStopBriefly, RestartAtWindowEnd, Poweroff],
            // powerdown-all whose client goes away while the guest ignores
            // the button: no more presses; the intent waits out its window.
            &[PowerdownAll, AbandonPowerdown, AwaitExpiry],
        ];
        if !self.intent_rng.chance(1, 16) {
            return;
        }
        let row = self.intent_rng.index(rows.len());
        match row {
            5 => q.no_shutdown = true,
            6 => {
                q.button = if self.intent_rng.chance(3, 4) {
                    Button::ObeysFrom(2)
                } else {
                    Button::Ignores
                };
            }
            7 => {
                q.button = Button::Ignores;
                q.hangs_when_pressed = true;
            }
            10 => q.button = Button::Ignores,
            _ => {}
        }
        q.script = rows[row].iter().copied().collect();
    }

    /// Some QEMUs play a row of README's decision table, act by act.
    fn script(&mut self, q: &mut QemuProc) {
        use Act::*;
        let rows: [&[Act]; 14] = [
            &[Poweroff],
            &[Powerdown, Poweroff],
            &[Quit],
            &[Signal],
            &[Kill],
            &[Reboot],
            &[Panic],
            &[Stop, Cont, Poweroff],
            &[Stop, Quit],
            &[Reboot, Poweroff],
            &[Poweroff, Quit],
            &[Powerdown, Restart, Poweroff],
            &[Suspend, Restart, Wakeup, Poweroff],
            &[Stop, Restart, Cont, Poweroff],
        ];
        if !self.rng.chance(1, 3) {
            return;
        }
        let row = self.rng.index(rows.len());
        match row {
            5 => q.no_reboot = true,
            6 => {
                q.panic_pause = false;
                q.no_shutdown = false;
            }
            9 => q.no_reboot = false,
            10 => q.no_shutdown = true,
            _ => {}
        }
        q.script = rows[row].iter().copied().collect();
    }

    /// Sends a line to `seq`'s client: lifecycle events only once it is
    /// negotiated (else they are lost), other lines to any client.
    fn send(&mut self, seq: usize, json: &[u8], mark: Option<Event>, only_negotiated: bool) {
        let Some(key) = self.qemus.get(&seq).and_then(|q| q.client) else {
            return;
        };
        let crlf = !self.rng.chance(1, 20);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closed || (only_negotiated && !conn.negotiated) {
            return;
        }
        conn.since.get_or_insert(self.now);
        conn.out.extend_from_slice(json);
        let json_end = conn.out.len();
        conn.out
            .extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        if let Some(event) = mark {
            conn.marks.push_back(Mark {
                json_end,
                line_end: conn.out.len(),
                event: Some(event),
            });
            if let Some(q) = self.qemus.get_mut(&seq) {
                q.sent.record(event);
                if !matches!(
                    event,
                    Event::Shutdown { .. }
                        | Event::Powerdown
                        | Event::Reset
                        | Event::Stop
                        | Event::Resume
                        | Event::GuestPanicked
                ) {
                    q.truth.record(event);
                }
            }
        }
    }

    fn event_json(&self, name: &str, data: Option<&str>) -> Vec<u8> {
        let secs = 1_764_000_000 + (self.now - self.base).as_secs();
        let mut line = format!(
            "{{\"timestamp\": {{\"seconds\": {secs}, \"microseconds\": 1}}, \"event\": \"{name}\""
        );
        if let Some(data) = data {
            let _ = write!(line, ", \"data\": {data}");
        }
        line.push('}');
        line.into_bytes()
    }

    fn lifecycle(&mut self, seq: usize, name: &str, data: Option<&str>, event: Option<Event>) {
        let json = self.event_json(name, data);
        let client = self
            .qemus
            .get(&seq)
            .and_then(|q| q.client)
            .and_then(|k| self.conns.get(&k))
            .is_some_and(|c| c.negotiated && !c.closed);
        trace!(
            self,
            "world: q{seq} sends {name} {}{}",
            data.unwrap_or(""),
            if client {
                ""
            } else {
                " (lost: no negotiated client)"
            }
        );
        if let (Some(event), Some(q)) = (event, self.qemus.get_mut(&seq)) {
            q.truth.record(event);
            if !client {
                q.lost_in_gap |= q.negotiated_once;
            }
        }
        self.send(seq, &json, event, true);
    }

    /// `{guest, reason}` as this QEMU's version sends them.
    fn guest_reason(
        &self,
        seq: usize,
        guest: bool,
        reason: &str,
    ) -> (Option<String>, Option<bool>, Option<Reason>) {
        match self.qemus[&seq].ver {
            Ver::Modern => (
                Some(format!("{{\"guest\": {guest}, \"reason\": \"{reason}\"}}")),
                Some(guest),
                Some(Reason::from_wire(reason)),
            ),
            Ver::Guest => (Some(format!("{{\"guest\": {guest}}}")), Some(guest), None),
            Ver::Legacy => (None, None, None),
        }
    }

    fn shutdown(&mut self, seq: usize, guest: bool, reason: &str) {
        let (data, guest_seen, reason_seen) = self.guest_reason(seq, guest, reason);
        let event = Event::Shutdown {
            guest: guest_seen,
            reason: reason_seen,
        };
        self.lifecycle(seq, "SHUTDOWN", data.as_deref(), Some(event));
        let q = &self.qemus[&seq];
        let host_ends = matches!(reason, "host-qmp-quit" | "host-signal");
        if q.run == Run::ShutdownPaused || host_ends || !q.no_shutdown {
            self.qemus.get_mut(&seq).expect("q").run = Run::Exiting;
            // QEMU usually exits at once; flushing disks may take a while.
            if self.rng.chance(4, 5) {
                self.die(seq, true);
            }
        } else {
            self.lifecycle(seq, "STOP", None, Some(Event::Stop));
            self.qemus.get_mut(&seq).expect("q").run = Run::ShutdownPaused;
        }
    }

    fn reset(&mut self, seq: usize, guest: bool, reason: &str) {
        let (data, _, _) = self.guest_reason(seq, guest, reason);
        self.lifecycle(seq, "RESET", data.as_deref(), Some(Event::Reset));
    }

    fn set_run(&mut self, seq: usize, run: Run) {
        if let Some(q) = self.qemus.get_mut(&seq) {
            q.run = run;
        }
    }

    fn garbage(&mut self, seq: usize) {
        const LINES: [&[u8]; 11] = [
            b"\xff\xfe garbage",
            b"[1, 2]",
            b"\"text\"",
            b"{\"event\": \"STOP\"",
            b"{\"event\": 5}",
            b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": \"yes\"}}",
            b"{\"event\": \"SHUTDOWN\", \"data\": [true, \"guest-shutdown\"]}",
            b"{\"neither\": 1}",
            b"  ",
            b"{\"event\": \"BLOCK_JOB_STOPPED_SHUTDOWN\", \"data\": {\"device\": \"STOP POWERDOWN\"}}",
            b"{\"event\": \"GUEST_PANICKED\", \"data\": {\"action\": 5}, \"x\": }",
        ];
        let line: Vec<u8> = if self.rng.chance(1, 500) {
            // Longer than kvmd takes (64 KiB): dropped, parsing resumes.
            let mut long = b"{\"event\": \"STOP\", \"data\": \"".to_vec();
            long.resize(70_000, b'y');
            long.extend_from_slice(b"\"}");
            long
        } else {
            LINES[self.rng.index(LINES.len())].to_vec()
        };
        trace!(self, "world: q{seq} sends garbage ({} bytes)", line.len());
        self.send(seq, &line, None, false);
    }

    /// QEMU ends. Clean: it unlinks its path first, then closes. SIGKILL:
    /// the socket file stays; a line being written may be cut short.
    fn die(&mut self, seq: usize, clean: bool) {
        let Some(q) = self.qemus.get(&seq) else {
            return;
        };
        if !q.alive() {
            return;
        }
        let (name, in_dir, client) = (q.name.clone(), q.in_dir, q.client);
        trace!(
            self,
            "world: q{seq} {name} {}",
            if clean { "exits" } else { "is killed" }
        );
        if clean && in_dir {
            let there = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
            if there.is_some_and(|e| e.kind != Kind::Dir) {
                self.unlink(&name);
            }
        }
        if !clean && self.rng.chance(1, 3) {
            let negotiated = client
                .and_then(|k| self.conns.get(&k))
                .is_some_and(|c| c.negotiated);
            if negotiated {
                let json = self.event_json("POWERDOWN", None);
                let cut = self.rng.index(json.len() + 3);
                let mut line = json.clone();
                line.extend_from_slice(b"\r\n");
                line.truncate(cut);
                let key = client.expect("a client");
                let conn = self.conns.get_mut(&key).expect("the connection");
                let start = conn.out.len();
                conn.out.extend_from_slice(&line);
                if cut >= json.len() {
                    if let Some(q) = self.qemus.get_mut(&seq) {
                        q.sent.record(Event::Powerdown);
                    }
                    let conn = self.conns.get_mut(&key).expect("the connection");
                    conn.marks.push_back(Mark {
                        json_end: start + json.len(),
                        line_end: if cut >= json.len() + 2 {
                            start + json.len() + 2
                        } else {
                            usize::MAX
                        },
                        event: Some(Event::Powerdown),
                    });
                }
                trace!(
                    self,
                    "  ... cut short: {:?}",
                    line.escape_ascii().to_string()
                );
            }
        }
        let now = self.now;
        let q = self.qemus.get_mut(&seq).expect("q");
        q.life = Life::Dead;
        self.stats.lifetime_total += now - q.bound_at;
        if let Some(key) = client
            && let Some(conn) = self.conns.get_mut(&key)
        {
            conn.closed = true;
            conn.since.get_or_insert(now);
        }
    }

    /// What `seq` can do now, and its weight.
    fn choices(q: &QemuProc) -> Vec<(u64, Act)> {
        use Act::*;
        match q.life {
            Life::Dead => return vec![],
            Life::Bound => return vec![(3, Kill), (2, Exit)],
            Life::Listening => {}
        }
        match q.run {
            Run::Prelaunch => vec![
                (30, Cont),
                (4, Powerdown),
                (1, Quit),
                (1, Signal),
                (1, Kill),
                (3, Garbage),
                (2, Noise),
            ],
            Run::Running => vec![
                (3, Poweroff),
                (6, Powerdown),
                (8, Reboot),
                (2, HostReset),
                (8, Stop),
                (1, Panic),
                (3, Suspend),
                (2, Quit),
                (1, Signal),
                (1, HostUi),
                (2, Kill),
                (5, Garbage),
                (8, Noise),
            ],
            Run::Paused => vec![
                (20, Cont),
                (2, Quit),
                (1, Signal),
                (4, Powerdown),
                (1, Kill),
                (3, Garbage),
            ],
            Run::Suspended => vec![(20, Wakeup), (4, Powerdown), (2, Quit), (1, Kill)],
            Run::PanicPaused => vec![(6, Quit), (2, Signal), (2, Kill), (6, ResetCont)],
            Run::ShutdownPaused => vec![(10, Quit), (4, Signal), (3, Kill), (2, Garbage)],
            Run::Exiting => vec![(10, Exit), (2, Kill)],
        }
    }

    fn act(&mut self, seq: usize, act: Act) {
        let Some(q) = self.qemus.get(&seq) else {
            return;
        };
        let (no_reboot, panic_pause, no_shutdown) = (q.no_reboot, q.panic_pause, q.no_shutdown);
        match act {
            Act::Kill => self.die(seq, false),
            Act::Exit => self.die(seq, true),
            Act::Quit => self.shutdown(seq, false, "host-qmp-quit"),
            Act::Signal => self.shutdown(seq, false, "host-signal"),
            Act::HostUi => self.shutdown(seq, false, "host-ui"),
            Act::Poweroff => self.shutdown(seq, true, "guest-shutdown"),
            Act::Powerdown => self.lifecycle(seq, "POWERDOWN", None, Some(Event::Powerdown)),
            Act::Reboot if no_reboot => self.shutdown(seq, true, "guest-reset"),
            Act::Reboot => self.reset(seq, true, "guest-reset"),
            Act::HostReset if no_reboot => self.shutdown(seq, false, "host-qmp-system-reset"),
            Act::HostReset => self.reset(seq, false, "host-qmp-system-reset"),
            Act::Stop => {
                self.lifecycle(seq, "STOP", None, Some(Event::Stop));
                self.set_run(seq, Run::Paused);
            }
            Act::Cont => {
                self.lifecycle(seq, "RESUME", None, Some(Event::Resume));
                self.set_run(seq, Run::Running);
            }
            Act::Panic if panic_pause || no_shutdown => {
                let data = "{\"action\": \"pause\"}";
                self.lifecycle(
                    seq,
                    "GUEST_PANICKED",
                    Some(data),
                    Some(Event::GuestPanicked),
                );
                self.lifecycle(seq, "STOP", None, Some(Event::Stop));
                self.set_run(seq, Run::PanicPaused);
            }
            Act::Panic => {
                let data = "{\"action\": \"poweroff\"}";
                self.lifecycle(
                    seq,
                    "GUEST_PANICKED",
                    Some(data),
                    Some(Event::GuestPanicked),
                );
                self.shutdown(seq, true, "guest-panic");
            }
            Act::Suspend => {
                self.lifecycle(seq, "SUSPEND", None, None);
                self.set_run(seq, Run::Suspended);
            }
            Act::Wakeup => {
                self.lifecycle(seq, "WAKEUP", None, None);
                self.set_run(seq, Run::Running);
            }
            Act::ResetCont => {
                self.reset(seq, false, "host-qmp-system-reset");
                self.lifecycle(seq, "RESUME", None, Some(Event::Resume));
                self.set_run(seq, Run::Running);
            }
            Act::Garbage => self.garbage(seq),
            Act::Noise => {
                let data = "{\"offset\": 1, \"qom-path\": \"/machine/unattached/device[0]\"}";
                self.lifecycle(seq, "RTC_CHANGE", Some(data), None);
            }
            Act::Restart => self.restart(),
            Act::ExpectStop
            | Act::ExpectStopBriefly
            | Act::CancelIntent
            | Act::AwaitExpiry
            | Act::AwaitRead
            | Act::PowerdownAll
            | Act::AbandonPowerdown
            | Act::AwaitButton
            | Act::AwaitUnanswered
            | Act::Replace
            | Act::ReplaceWhileDown
            | Act::RestartAtWindowEnd => {
                self.intent_act(seq, act);
            }
        }
    }

    /// Whether `act` is a step of an intents story (`intent_act`).
    fn is_intent_act(act: Act) -> bool {
        matches!(
            act,
            Act::ExpectStop
                | Act::ExpectStopBriefly
                | Act::CancelIntent
                | Act::AwaitExpiry
                | Act::AwaitRead
                | Act::PowerdownAll
                | Act::AbandonPowerdown
                | Act::AwaitButton
                | Act::AwaitUnanswered
                | Act::Replace
                | Act::ReplaceWhileDown
                | Act::RestartAtWindowEnd
        )
    }

    /// A random QEMU does something: its script's next act once its client
    /// is negotiated, or anything its state allows.
    fn qemu_act(&mut self) {
        let alive: Vec<usize> = self
            .qemus
            .values()
            .filter(|q| q.alive())
            .map(|q| q.seq)
            .collect();
        if alive.is_empty() {
            return;
        }
        let seq = alive[self.rng.index(alive.len())];
        let q = &self.qemus[&seq];
        if let Some(&next) = q.script.front()
            && Self::is_intent_act(next)
            && q.life == Life::Listening
            && q.run != Run::Exiting
        {
            if self.intent_act(seq, next) {
                if let Some(q) = self.qemus.get_mut(&seq)
                    && q.script.front() == Some(&next)
                {
                    q.script.pop_front();
                }
            } else {
                // Never monitored (an untrusted owner, a name too long), or
                // waiting too long: the story is given up.
                let q = &self.qemus[&seq];
                let never = q.owner != TRUSTED || !q.name.fits();
                if never || self.intent_rng.chance(1, 20) {
                    self.qemus.get_mut(&seq).expect("q").script.clear();
                }
            }
            return;
        }
        if let Some(&next) = q.script.front() {
            let negotiated = q
                .client
                .and_then(|k| self.conns.get(&k))
                .is_some_and(|c| c.negotiated);
            if q.life == Life::Listening && q.run != Run::Exiting {
                if !negotiated && !self.rng.chance(1, 20) {
                    return; // wait for the daemon, as the e2e tests do
                }
                let needs_running = matches!(
                    next,
                    Act::Poweroff | Act::Reboot | Act::Panic | Act::Stop | Act::Suspend
                );
                let act = match q.run {
                    Run::Prelaunch if needs_running => Act::Cont,
                    _ => {
                        self.qemus.get_mut(&seq).expect("q").script.pop_front();
                        next
                    }
                };
                let applicable = match act {
                    Act::Poweroff | Act::Reboot | Act::Panic | Act::Stop | Act::Suspend => {
                        self.qemus[&seq].run == Run::Running
                    }
                    Act::Cont => matches!(self.qemus[&seq].run, Run::Paused | Run::Prelaunch),
                    Act::Wakeup => self.qemus[&seq].run == Run::Suspended,
                    _ => true,
                };
                if applicable {
                    return self.act(seq, act);
                }
                self.qemus.get_mut(&seq).expect("q").script.clear();
                return;
            }
        }
        let choices = Self::choices(&self.qemus[&seq]);
        if let Some(act) = self.rng.weighted(&choices) {
            if act == Act::Restart {
                return;
            }
            self.act(seq, act);
        }
    }

    /// Every QEMU does what it has to: listen, greet, answer, exit.
    fn qemu_turns(&mut self, all: bool) {
        let seqs: Vec<usize> = self.qemus.keys().copied().collect();
        for seq in seqs {
            let Some(q) = self.qemus.get(&seq) else {
                continue;
            };
            match (q.life, q.run) {
                (Life::Dead, _) => {}
                (Life::Bound, _) => {
                    let overdue = self.now - q.bound_at > Duration::from_secs(1);
                    if all || overdue || self.rng.chance(1, 4) {
                        trace!(self, "world: q{seq} listens");
                        self.qemus.get_mut(&seq).expect("q").life = Life::Listening;
                    }
                }
                (Life::Listening, Run::Exiting) => {
                    if all || self.rng.chance(1, 3) {
                        self.die(seq, true);
                    }
                }
                (Life::Listening, _) => {
                    if all || self.rng.chance(1, 2) {
                        self.serve(seq);
                    }
                }
            }
        }
    }

    /// QEMU's monitor: the greeting, then one command's reply.
    fn serve(&mut self, seq: usize) {
        let Some(key) = self.qemus[&seq].client else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closed {
            return;
        }
        if conn.greet_pending {
            conn.greet_pending = false;
            let greeting: &[u8] = match self.qemus[&seq].ver {
                Ver::Modern => b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18\"}, \"capabilities\": [\"oob\"]}}",
                Ver::Guest => b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 12, \"major\": 2}, \"package\": \"\"}, \"capabilities\": []}}",
                Ver::Legacy => b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 6, \"major\": 2}, \"package\": \"\"}, \"capabilities\": []}}",
            };
            trace!(self, "world: q{seq} greets");
            return self.send(seq, greeting, None, false);
        }
        if self.qemus[&seq].deaf_until.is_some_and(|t| self.now < t) {
            return;
        }
        let Some(command) = conn.cmds.pop_front() else {
            return;
        };
        if command == Command::SystemPowerdown {
            return self.take_press(seq, key);
        }
        let refuse = self.rng.chance(1, 60);
        match command {
            Command::Capabilities if refuse => {
                trace!(self, "world: q{seq} refuses qmp_capabilities");
                let line = b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}";
                self.send(seq, line, None, false);
            }
            Command::Capabilities => {
                trace!(self, "world: q{seq} negotiated");
                self.send(seq, b"{\"return\": {}}", Some(Event::Negotiated), false);
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.negotiated = true;
                }
                if let Some(q) = self.qemus.get_mut(&seq) {
                    q.negotiated_once = true;
                }
            }
            Command::SystemPowerdown => unreachable!("taken above"),
            Command::QueryStatus if refuse => {
                trace!(self, "world: q{seq} refuses query-status");
                let line = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}";
                self.send(seq, line, None, false);
            }
            Command::QueryStatus => {
                let (status, running) = match self.qemus[&seq].run {
                    Run::Prelaunch => ("prelaunch", false),
                    Run::Running | Run::Exiting => ("running", true),
                    Run::Paused => ("paused", false),
                    Run::Suspended => ("suspended", false),
                    Run::PanicPaused => ("guest-panicked", false),
                    Run::ShutdownPaused => ("shutdown", false),
                };
                let paused = !running && status != "suspended";
                trace!(self, "world: q{seq} status {status}");
                let line = format!(
                    "{{\"return\": {{\"status\": \"{status}\", \"singlestep\": false, \"running\": {running}}}}}"
                );
                self.send(seq, line.as_bytes(), Some(Event::Status { paused }), false);
            }
        }
    }

    // --- The world: intents (the host, through the control socket) ----------------------

    /// The wall clock at `at` (intent files hold wall time).
    fn wall(&self, at: Instant) -> SystemTime {
        UNIX_EPOCH + WALL_AT_BASE + (at - self.base)
    }

    /// Now and then, the host says something of a stop: an intent for a
    /// name (monitored or not, some requests malformed), a cancel, or
    /// `powerdown-all`.
    fn intent_world(&mut self) {
        let roll = self.intent_rng.below(10_000);
        if roll >= 40 {
            return;
        }
        if roll >= 37 {
            if !self.powerdown_clients.is_empty() {
                let client = self.intent_rng.index(self.powerdown_clients.len());
                self.abandon_powerdown(client);
            }
            return;
        }
        let name = if self.intent_rng.chance(1, 40) {
            self.names[NAMES.len()].clone()
        } else {
            self.names[self.intent_rng.index(NAMES.len())].clone()
        };
        if roll < 25 {
            const WINDOWS: [u64; 8] = [0, 1, 2, 5, 30, 120, 3600, 3601];
            let window = Duration::from_secs(WINDOWS[self.intent_rng.index(WINDOWS.len())]);
            let by = self.random_by();
            trace!(
                self,
                "world: host: expect-stop {name} for {window:?} by {by:?}"
            );
            let _ = self.expect_stop(&name, window, by);
        } else if roll < 35 {
            trace!(self, "world: host: expect-stop --cancel {name}");
            self.cancel_intent(&name);
        } else {
            const WINDOWS: [u64; 5] = [0, 3, 20, 120, 3601];
            let window = Duration::from_secs(WINDOWS[self.intent_rng.index(WINDOWS.len())]);
            let by = self.random_by();
            trace!(self, "world: host: powerdown-all for {window:?} by {by:?}");
            self.powerdown_all(window, &by);
        }
    }

    /// Who says so: mostly fine, sometimes too long or with control
    /// characters (refused: `BadBy`).
    fn random_by(&mut self) -> String {
        let choices = [
            "ganeti-watcher".to_owned(),
            String::new(),
            "gnt-node modify --offline=yes node2".to_owned(),
            "opérateur".to_owned(),
            "line\nbreak".to_owned(),
            "tab\there".to_owned(),
            "x".repeat(201),
            "y".repeat(200),
        ];
        let i = if self.intent_rng.chance(3, 4) {
            0
        } else {
            self.intent_rng.index(choices.len())
        };
        choices[i].clone()
    }

    /// Whether kvmd must take `by` (the spec: at most 200 bytes of text
    /// without control characters).
    fn by_allowed(by: &str) -> bool {
        by.len() <= 200 && !by.chars().any(char::is_control)
    }

    /// The intent kvmd must give `name`'s instance at `key`, or why not:
    /// the model's own reading of the request.
    fn predict_give(
        &self,
        key: InstanceKey,
        window: Duration,
        by: &str,
        presses: Presses,
    ) -> Result<HeldIntent, IntentRefused> {
        if window.is_zero() || window > MAX_WINDOW {
            return Err(IntentRefused::BadWindow(window));
        }
        if !Self::by_allowed(by) {
            return Err(IntentRefused::BadBy);
        }
        let Some(conn) = self.conns.get(&key) else {
            return Err(IntentRefused::NotYetMonitoring);
        };
        let q = &self.qemus[&conn.qemu];
        // What the daemon read (`kept`) already holds the first SHUTDOWN.
        if q.kept.first_shutdown().is_some() {
            return Err(IntentRefused::AlreadyShutDown);
        }
        Ok(HeldIntent {
            key,
            intent: Intent {
                by: by.to_owned(),
                given: self.now,
                until: self.now + window,
                socket: conn.socket,
                qemu: Some(q.qemu()),
                state: IntentState::Waiting,
                presses,
            },
            last_press: None,
            presses_over: false,
            press_unsure: false,
        })
    }

    fn refused(&mut self, why: &IntentRefused) {
        let kind = format!("{why:?}");
        let kind = kind.split('(').next().unwrap_or_default().to_owned();
        *self.stats.intents.refused.entry(kind).or_default() += 1;
    }

    /// `kvmd expect-stop NAME`: a control-socket order, drained at once.
    fn expect_stop(
        &mut self,
        name: &Name,
        window: Duration,
        by: String,
    ) -> Result<(), IntentRefused> {
        let predicted = match self.fleet.instance(name) {
            None => Err(IntentRefused::NotMonitored),
            Some((_, phase, _)) if phase != Phase::Monitoring => {
                Err(IntentRefused::NotYetMonitoring)
            }
            Some((key, _, _)) => self.predict_give(key, window, &by, Presses::None),
        };
        let before = self.intent_actions;
        let result = self
            .fleet
            .handle_expect_stop(self.now, name, window, by.clone());
        trace!(self, "  fleet <- expect-stop {name} -> {result:?}");
        let want = predicted.as_ref().map(|_| ()).map_err(Clone::clone);
        if result != want {
            self.fail(
                "I2",
                format!("{name}: expect-stop for {window:?} by {by:?}: {result:?}, the model says {want:?}"),
            );
        }
        match predicted {
            Ok(held) => {
                self.stats.intents.given += 1;
                self.intents.insert(name.clone(), held);
            }
            Err(why) => self.refused(&why),
        }
        self.carry_out();
        if result.is_err() && self.intent_actions != before {
            self.fail(
                "I2",
                format!("{name}: a refused expect-stop wrote or pressed something"),
            );
        }
        result
    }

    /// `kvmd expect-stop --cancel NAME`.
    fn cancel_intent(&mut self, name: &Name) {
        let instance = self.fleet.instance(name).map(|(key, _, _)| key);
        let held = instance.and_then(|key| self.intents.get(name).filter(|h| h.key == key));
        let want = match (instance, held) {
            (None, _) => Err(IntentRefused::NotMonitored),
            (Some(_), None) => Err(IntentRefused::NoIntent),
            (Some(_), Some(h)) if h.intent.state == IntentState::Claimed => {
                Err(IntentRefused::AlreadyClaimed)
            }
            (Some(_), Some(_)) => Ok(()),
        };
        let before = self.intent_actions;
        let result = self.fleet.handle_cancel_intent(self.now, name);
        trace!(self, "  fleet <- cancel {name} -> {result:?}");
        if result != want {
            self.fail(
                "I2",
                format!("{name}: cancel: {result:?}, the model says {want:?}"),
            );
        }
        match &want {
            Ok(()) => {
                self.stats.intents.cancelled += 1;
                self.intents.remove(name);
            }
            Err(why) => self.refused(why),
        }
        self.carry_out();
        if result.is_err() && self.intent_actions != before {
            self.fail(
                "I2",
                format!("{name}: a refused cancel wrote or pressed something"),
            );
        }
    }

    /// `kvmd powerdown-all`: an intent for every monitored instance, and
    /// its button pressed.
    fn powerdown_all(&mut self, window: Duration, by: &str) {
        self.stats.intents.powerdowns_all += 1;
        let instances: Vec<(Name, InstanceKey, Phase)> = self
            .fleet
            .each_instance()
            .map(|(name, key, phase, _)| (name.clone(), key, phase))
            .collect();
        let mut want: Vec<Pressed> = Vec::new();
        for (name, key, phase) in instances {
            let qemu = self
                .conns
                .get(&key)
                .and_then(|c| self.qemus.get(&c.qemu))
                .map(QemuProc::qemu);
            let result = if phase == Phase::Monitoring {
                match self.predict_give(key, window, by, Presses::UntilShutdown) {
                    Ok(held) => {
                        let asked = self.conns.get(&key).map_or(0, |c| c.asked);
                        if asked >= MAX_ASKED {
                            // Refused before anything is given (O3, fixed):
                            // whatever intent it held stays as it was.
                            self.stats.intents.presses_refused += 1;
                            Err(IntentRefused::CannotPress)
                        } else {
                            self.stats.intents.given += 1;
                            self.intents.insert(name.clone(), held);
                            Ok(())
                        }
                    }
                    Err(why) => Err(why),
                }
            } else {
                Err(IntentRefused::NotYetMonitoring)
            };
            if let Err(why) = &result {
                self.refused(why);
            }
            want.push(Pressed { name, qemu, result });
        }
        self.pressing_all = true;
        let pressed = self.fleet.handle_powerdown_all(self.now, window, by);
        trace!(self, "  fleet <- powerdown-all -> {pressed:?}");
        if pressed != want {
            self.fail(
                "I2",
                format!(
                    "powerdown-all for {window:?} by {by:?}: {pressed:?}, the model says {want:?}"
                ),
            );
        }
        self.carry_out();
        self.pressing_all = false;
        let pressed: Vec<Name> = want
            .iter()
            .filter(|p| p.result.is_ok())
            .map(|p| p.name.clone())
            .collect();
        self.check_pressed(&pressed, "powerdown-all said pressed");
        self.powerdown_clients.push(pressed);
    }

    /// The `powerdown-all` client `client` goes away (killed, interrupted) before its
    /// guests stopped: the daemon hands the fleet the names it was waiting
    /// for, less those another client still waits for (as
    /// `ControlServer::take_abandoned` does). Each waiting intent that
    /// presses stops pressing and is kept (I2 compares it, presses
    /// included, with the fleet's and the file; I3 then wants no press).
    fn abandon_powerdown(&mut self, client: usize) {
        let mut names = self.powerdown_clients.swap_remove(client);
        names.retain(|name| !self.powerdown_clients.iter().any(|c| c.contains(name)));
        self.stats.intents.abandoned += 1;
        trace!(
            self,
            "world: host: a powerdown-all client goes away ({names:?})"
        );
        for name in &names {
            if let Some(held) = self.intents.get_mut(name)
                && held.intent.state == IntentState::Waiting
                && held.intent.presses == Presses::UntilShutdown
            {
                held.intent.presses = Presses::None;
                self.stats.intents.presses_stopped += 1;
                self.stopping.insert(name.clone());
            }
        }
        self.fleet.handle_orders_abandoned(self.now, &names);
        self.carry_out();
        if !self.stopping.is_empty() {
            let names = std::mem::take(&mut self.stopping);
            self.fail(
                "I3",
                format!("presses of {names:?} stopped in the model, not told stopped"),
            );
        }
    }

    /// The intent the daemon holds for `seq`'s connection, if any.
    fn intent_of(&self, seq: usize) -> Option<&HeldIntent> {
        let q = self.qemus.get(&seq)?;
        let key = q.client?;
        self.intents.get(&q.name).filter(|h| h.key == key)
    }

    /// One scripted act about intents (`Act::ExpectStop` ...): `true` once
    /// done, `false` while it waits.
    fn intent_act(&mut self, seq: usize, act: Act) -> bool {
        let q = &self.qemus[&seq];
        let name = q.name.clone();
        let client = q.client;
        let monitored = client.is_some_and(|client| {
            self.fleet
                .instance(&name)
                .is_some_and(|(key, phase, _)| key == client && phase == Phase::Monitoring)
        });
        match act {
            Act::ExpectStop | Act::ExpectStopBriefly | Act::PowerdownAll if !monitored => false,
            Act::ExpectStop => {
                let by = "gnt-instance shutdown --agent".to_owned();
                let _ = self.expect_stop(&name, Duration::from_secs(120), by);
                true
            }
            Act::ExpectStopBriefly => {
                let _ = self.expect_stop(&name, Duration::from_secs(1), "qa".to_owned());
                true
            }
            Act::PowerdownAll => {
                self.powerdown_all(Duration::from_secs(30), "gnt-node power-off");
                true
            }
            Act::AbandonPowerdown => {
                let last = self.powerdown_clients.len().checked_sub(1);
                if let Some(last) = last {
                    self.abandon_powerdown(last);
                }
                true
            }
            Act::CancelIntent => {
                self.cancel_intent(&name);
                true
            }
            Act::AwaitExpiry | Act::AwaitButton => self.intent_of(seq).is_none(),
            Act::AwaitUnanswered => {
                self.intent_of(seq).is_none()
                    || client
                        .and_then(|key| self.conns.get(&key))
                        .is_some_and(|c| c.asked >= MAX_ASKED)
            }
            Act::AwaitRead => client
                .and_then(|key| self.conns.get(&key))
                .is_none_or(|c| c.marks.is_empty()),
            Act::Replace => {
                self.replace(seq, false);
                true
            }
            Act::ReplaceWhileDown => {
                self.replace(seq, true);
                true
            }
            Act::RestartAtWindowEnd => {
                // The world's moment: this step happens at the window's
                // end (no daemon turn ran since the step began).
                if let Some(until) = self.intent_of(seq).map(|h| h.intent.until)
                    && until > self.now
                {
                    self.now = until;
                    trace!(
                        self,
                        "world: (the clock is at the intent's end, t={:.3}s)",
                        self.t()
                    );
                }
                self.restart();
                true
            }
            _ => true,
        }
    }

    /// A new QEMU of `seq`'s name takes its place: `seq` ends (killed, or
    /// exits), and the new one binds, with the old inode number when it is
    /// free (two times in three), and soon powers off from inside. While
    /// the daemon is down (`while_down`): it is killed first and started
    /// last, the new QEMU not listening yet, on the old inode number.
    fn replace(&mut self, seq: usize, while_down: bool) {
        if self.dir.is_none() {
            return;
        }
        let q = &self.qemus[&seq];
        let (name, ino, owner, ver) = (q.name.clone(), q.ino, q.owner, q.ver);
        let clean = self.intent_rng.chance(1, 2);
        self.die(seq, clean);
        let its_own = |e: &Entry| {
            e.kind
                == Kind::Socket {
                    owner,
                    qemu: Some(seq),
                }
        };
        if self
            .dir
            .as_ref()
            .and_then(|d| d.kvmd.get(&name))
            .is_some_and(its_own)
        {
            self.unlink(&name);
        }
        let there = self.dir.as_ref().and_then(|d| d.kvmd.get(&name)).copied();
        if there.is_some_and(|e| e.kind == Kind::Dir) {
            return;
        }
        let reuse = while_down || self.intent_rng.chance(2, 3);
        let ino = if !self.inos_in_use().contains(&ino) && reuse {
            ino
        } else {
            match self.alloc_ino() {
                Some(ino) => ino,
                None => return,
            }
        };
        let new = self.next_seq;
        self.next_seq += 1;
        self.stats.qemus += 1;
        let mut q = self.new_qemu(new, name.clone(), ino, owner, ver);
        q.life = if while_down {
            Life::Bound
        } else {
            Life::Listening
        };
        q.run = Run::Running;
        q.script = VecDeque::from([Act::Poweroff]);
        trace!(
            self,
            "world: q{new} {name} replaces q{seq} (ino {ino}) {ver:?}"
        );
        self.unlink(&name);
        self.dir.as_mut().expect("a dir").kvmd.insert(
            name.clone(),
            Entry {
                ino,
                kind: Kind::Socket {
                    owner,
                    qemu: Some(new),
                },
                born: self.step,
            },
        );
        self.entry_event(&name, true);
        self.qemus.insert(new, q);
        if while_down {
            self.restart();
        }
    }

    /// QEMU takes a `system_powerdown`: `{"return": {}}` (an error before
    /// negotiation), then POWERDOWN; the guest obeys or not. Sometimes its
    /// monitor then hangs a while, so presses pile up unanswered.
    fn take_press(&mut self, seq: usize, key: InstanceKey) {
        let negotiated = self.conns.get(&key).is_some_and(|c| c.negotiated);
        if !negotiated {
            trace!(
                self,
                "world: q{seq} refuses system_powerdown before negotiation"
            );
            let line = b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}";
            return self.send_press_reply(key, line);
        }
        self.send_press_reply(key, b"{\"return\": {}}");
        self.lifecycle(seq, "POWERDOWN", None, Some(Event::Powerdown));
        let q = self.qemus.get_mut(&seq).expect("q");
        q.presses += 1;
        let obeys = match q.button {
            Button::Obeys => true,
            Button::Ignores => false,
            Button::ObeysFrom(n) => q.presses >= n,
        };
        let presses = q.presses;
        if obeys && q.run == Run::Running {
            q.script = VecDeque::from([Act::Poweroff]);
        }
        let hangs = std::mem::take(&mut self.qemus.get_mut(&seq).expect("q").hangs_when_pressed);
        if hangs || self.intent_rng.chance(1, 10) {
            let hang = Duration::from_secs(if hangs {
                40
            } else {
                10 + self.intent_rng.below(30)
            });
            self.qemus.get_mut(&seq).expect("q").deaf_until = Some(self.now + hang);
            trace!(self, "world: q{seq}'s monitor hangs for {hang:?}");
        }
        trace!(
            self,
            "world: q{seq} pressed (#{presses}): the guest {}",
            if obeys { "obeys" } else { "ignores it" }
        );
    }

    /// A reply to a press, marked so that reading it counts it answered.
    fn send_press_reply(&mut self, key: InstanceKey, json: &[u8]) {
        let crlf = !self.intent_rng.chance(1, 20);
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.closed {
            return;
        }
        conn.since.get_or_insert(self.now);
        conn.out.extend_from_slice(json);
        let json_end = conn.out.len();
        conn.out
            .extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        conn.marks.push_back(Mark {
            json_end,
            line_end: conn.out.len(),
            event: None,
        });
    }

    /// The daemon sent a press on `key`'s connection (I3).
    fn press_sent(&mut self, key: InstanceKey) {
        self.intent_actions += 1;
        self.stats.intents.presses += 1;
        let Some(conn) = self.conns.get_mut(&key) else {
            return; // invariant 4 fails on it already
        };
        conn.asked += 1;
        let (asked, name) = (conn.asked, conn.name.clone());
        if asked > MAX_ASKED {
            self.fail(
                "I3",
                format!("{name}: {asked} presses unanswered, more than {MAX_ASKED}"),
            );
        }
        let now = self.now;
        let again = !self.pressing_all;
        let held = self.intents.get_mut(&name).filter(|h| h.key == key);
        let wrong = match held {
            Some(h)
                if h.intent.state == IntentState::Waiting
                    && h.intent.presses == Presses::UntilShutdown =>
            {
                let last = h.last_press.replace(now);
                h.press_unsure = false;
                match last {
                    Some(last) if again && now < last + PRESS_AGAIN => Some(format!(
                        "pressed again {:?} after the last press",
                        now - last
                    )),
                    _ => None,
                }
            }
            other => Some(format!(
                "a press with no waiting powerdown-all intent (the model holds {:?})",
                other.map(|h| (h.intent.state, h.intent.presses))
            )),
        };
        if again {
            self.stats.intents.presses_again += 1;
        }
        if let Some(wrong) = wrong {
            self.fail("I3", format!("{name}: {wrong}"));
        }
    }

    /// The daemon read the first SHUTDOWN of `key`'s QEMU: an intent
    /// waiting for it is claimed (I1), or expires then if its window is
    /// over and its timer has not fired yet.
    fn first_shutdown_read(&mut self, key: InstanceKey, name: &Name) {
        let now = self.now;
        if let Some(held) = self.intents.get(name)
            && held.key == key
            && held.intent.state == IntentState::Waiting
            && held.intent.until <= now
        {
            trace!(self, "  {name}: the model: intent expires at the SHUTDOWN");
            self.intents.remove(name);
            self.stats.intents.expired += 1;
            self.expiring.insert(name.clone());
            return;
        }
        if let Some(held) = self.intents.get_mut(name)
            && held.key == key
            && held.intent.state == IntentState::Waiting
        {
            held.intent.state = IntentState::Claimed;
            self.stats.intents.claimed += 1;
            trace!(
                self,
                "  {name}: the model: intent by {:?} claimed", held.intent.by
            );
        }
    }

    /// Before `handle_timeout(now)`: waiting intents whose window is over
    /// expire in it (their timer is due: `until <= now`); a press due now
    /// on a QEMU with `MAX_ASKED` presses unanswered is refused, and kvmd
    /// presses no more.
    fn intents_due(&mut self) -> Vec<Name> {
        let now = self.now;
        let mut expired = Vec::new();
        let mut presses = Vec::new();
        for (name, held) in &mut self.intents {
            if held.intent.state != IntentState::Waiting {
                continue;
            }
            let press_due = held.intent.presses == Presses::UntilShutdown
                && !held.presses_over
                && held.last_press.is_none_or(|last| last + PRESS_AGAIN <= now);
            let asked = self.conns.get(&held.key).map_or(0, |c| c.asked);
            if press_due && asked >= MAX_ASKED {
                held.presses_over = true;
                self.stats.intents.presses_refused += 1;
            }
            let monitored = self
                .fleet
                .instance(name)
                .is_some_and(|(key, phase, _)| key == held.key && phase == Phase::Monitoring);
            // Restored to an instance still connecting: its connect
            // decides (see `connected_with_intent_over`).
            let connecting = self
                .fleet
                .instance(name)
                .is_some_and(|(key, _, _)| key == held.key)
                && !self.conns.contains_key(&held.key);
            if held.intent.until <= now {
                if !connecting {
                    expired.push(name.clone());
                }
            } else if press_due && !monitored {
                held.press_unsure = true;
            } else if press_due && asked < MAX_ASKED && !held.press_unsure {
                presses.push(name.clone());
            }
        }
        for name in expired {
            trace!(self, "  {name}: the model: intent expires");
            self.intents.remove(&name);
            self.stats.intents.expired += 1;
            self.expiring.insert(name);
        }
        presses
    }

    /// An intent handed back at start-up (or waiting for a look since):
    /// taken up by the instance on the same socket, of the same QEMU once
    /// it is known, while its window is open or its instance is still
    /// connecting (claimed at once if that QEMU's restored evidence has its
    /// first SHUTDOWN); dropped otherwise. One given anew meanwhile stays.
    fn take_up(&mut self, name: &Name, intent: Intent) {
        let now = self.now;
        let instance = self.fleet.instance(name);
        if let Some((key, _, _)) = instance
            && self.intents.get(name).is_some_and(|h| h.key == key)
        {
            trace!(
                self,
                "  {name}: the model: kept intent given anew meanwhile"
            );
            self.stats.intents.dropped += 1;
            return;
        }
        let connected = instance.and_then(|(key, _, _)| self.conns.get(&key));
        let connecting = instance.is_some() && connected.is_none();
        let qemu = connected.map(|c| self.qemus[&c.qemu].qemu());
        let shut_down =
            connected.is_some_and(|c| self.qemus[&c.qemu].kept.first_shutdown().is_some());
        let fits = instance.is_some_and(|(_, _, socket)| socket == intent.socket)
            && match (qemu, intent.qemu) {
                (Some(now), Some(then)) => now == then,
                _ => true,
            };
        let expired = intent.state == IntentState::Waiting
            && intent.until <= now
            && !shut_down
            && !connecting;
        if expired && intent.until == now {
            self.stats.intents.dropped_at_until += 1;
        }
        let Some((key, _, _)) = instance.filter(|_| fits && !expired) else {
            trace!(
                self,
                "  {name}: the model: kept intent dropped (fits={fits}, expired={expired})"
            );
            self.stats.intents.dropped += 1;
            return;
        };
        let mut intent = intent;
        if shut_down {
            intent.state = IntentState::Claimed;
        }
        self.stats.intents.restored += 1;
        if intent.state == IntentState::Claimed {
            self.stats.intents.restored_claimed += 1;
        }
        trace!(
            self,
            "  {name}: the model: kept intent taken up ({:?})", intent.state
        );
        self.intents.insert(
            name.clone(),
            HeldIntent {
                key,
                intent,
                last_press: None,
                presses_over: false,
                press_unsure: false,
            },
        );
    }

    /// A look the fleet asked for was answered: whether it told what stands
    /// at the name (then an intent waiting for that is settled) or not.
    /// Looks for a verdict or a recheck, and a successor's look that found
    /// the ended QEMU's own socket or nothing, attach nothing and settle
    /// nothing.
    fn looked(&mut self, name: &Name, purpose: Purpose, look: Look) {
        let attaching = match purpose {
            Purpose::Attach => true,
            Purpose::Successor { ended, renewed } => {
                renewed
                    || matches!(look, Look::Socket { id, .. } if id != ended)
                    || matches!(look, Look::DirFailed(_))
            }
            Purpose::Verdict(_) | Purpose::Recheck => false,
        };
        if !attaching {
            return;
        }
        if matches!(
            look,
            Look::Socket { .. } | Look::Other { .. } | Look::Absent
        ) {
            self.looks_unsettled.remove(name);
            self.settle_awaiting(name);
        } else {
            self.looks_unsettled.insert(name.clone());
        }
    }

    /// `name` was looked at, or its entry went: an intent waiting for it
    /// is taken up or dropped now.
    fn settle_awaiting(&mut self, name: &Name) {
        if let Some(intent) = self.intents_awaiting_look.remove(name) {
            trace!(self, "  {name}: the model: kept intent settled by a look");
            self.stats.intents.awaited_settled += 1;
            self.take_up(name, intent);
        }
    }

    /// Intents still waiting for a look at the end of their window are
    /// dropped in this `handle_timeout`.
    fn awaiting_intents_due(&mut self) {
        let now = self.now;
        let over: Vec<Name> = self
            .intents_awaiting_look
            .iter()
            .filter(|(_, intent)| intent.until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in over {
            trace!(self, "  {name}: the model: kept intent ends unlooked at");
            self.intents_awaiting_look.remove(&name);
            self.stats.intents.awaited_ended += 1;
            self.stats.intents.dropped += 1;
        }
    }

    /// A connect made: an intent restored to the instance while it was
    /// connecting, whose window ended meanwhile, is claimed by a SHUTDOWN
    /// the previous run read, or ends now (told expired).
    fn connected_with_intent_over(&mut self, name: &Name, key: InstanceKey) {
        let now = self.now;
        let over = self.intents.get(name).is_some_and(|h| {
            h.key == key && h.intent.state == IntentState::Waiting && h.intent.until <= now
        });
        if !over {
            return;
        }
        let shut_down = self
            .conns
            .get(&key)
            .is_some_and(|c| self.qemus[&c.qemu].kept.first_shutdown().is_some());
        if shut_down {
            trace!(
                self,
                "  {name}: the model: kept intent claimed at the connect"
            );
            if let Some(held) = self.intents.get_mut(name) {
                held.intent.state = IntentState::Claimed;
            }
            return;
        }
        trace!(self, "  {name}: the model: kept intent ends at the connect");
        self.intents.remove(name);
        self.stats.intents.expired += 1;
        self.stats.intents.expired_at_connect += 1;
        self.expiring.insert(name.clone());
    }

    /// I3: every press the model said was due went out.
    fn check_pressed(&mut self, names: &[Name], what: &str) {
        let now = self.now;
        let missed = names.iter().find(|name| {
            self.intents
                .get(*name)
                .is_some_and(|h| h.last_press != Some(now))
        });
        if let Some(name) = missed {
            let name = name.clone();
            self.fail("I3", format!("{name}: {what}, and no press was sent"));
        }
    }

    /// `Daemon::restore_intents`, right after the state files' drain: the
    /// intent files, through their form on disk, handed back once. The
    /// model says which are taken up: by the instance on the same socket,
    /// of the same QEMU once it is known, and only while the window is
    /// open (or claimed); claimed at once if that QEMU's restored evidence
    /// already has its first SHUTDOWN.
    fn restore_intents(&mut self) {
        let now = self.now;
        let wall_now = self.wall(now);
        let mut files = Vec::new();
        for (name, intent) in &self.intent_files {
            let saved = SavedIntent::from_intent(intent, |at| self.wall(at));
            files.push((name.clone(), intent.clone(), saved.to_intent(now, wall_now)));
        }
        let mut handed = Vec::new();
        for (name, intent, back) in files {
            if back.as_ref() != Some(&intent) {
                return self.fail(
                    "I2",
                    format!("{name}: the intent file of {intent:?} reads back as {back:?}"),
                );
            }
            handed.push((name, intent));
        }
        if handed.is_empty() {
            return;
        }
        for (name, intent) in &handed {
            // A name the fleet has not looked at: what stands there is not
            // known, and the intent waits for it, as state files do.
            let unknown = self.told_reach == Reach::Away || self.looks_unsettled.contains(name);
            if self.fleet.instance(name).is_none() && unknown {
                trace!(self, "  {name}: the model: kept intent waits for a look");
                self.stats.intents.awaited += 1;
                self.intents_awaiting_look
                    .insert(name.clone(), intent.clone());
                continue;
            }
            self.take_up(name, intent.clone());
        }
        trace!(
            self,
            "  fleet <- intent files {:?}",
            handed.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        // Each is taken up or removed now.
        self.orphans.clear();
        self.fleet.handle_intent_files(now, handed);
        self.carry_out();
    }

    // --- The world: faults ---------------------------------------------------------------

    fn faults_tick(&mut self) {
        let p = self.profile.faults;
        let toggle = |rng: &mut Rng, on: &mut bool, start: u64, stop: u64| {
            if *on {
                if rng.chance(stop, 10_000) {
                    *on = false;
                    return Some(false);
                }
            } else if rng.chance(start, 10_000) {
                *on = true;
                return Some(true);
            }
            None
        };
        let mut f = self.faults;
        let changes = [
            ("fs full", toggle(&mut self.rng, &mut f.full, p, 150)),
            (
                "fs read-only",
                toggle(&mut self.rng, &mut f.readonly, p, 150),
            ),
            ("EMFILE", toggle(&mut self.rng, &mut f.emfile, p, 200)),
            ("EAGAIN", toggle(&mut self.rng, &mut f.eagain, p / 2, 300)),
            (
                "watch limit",
                toggle(&mut self.rng, &mut f.watch_limit, p, 100),
            ),
        ];
        if p > 0 && self.rng.chance(p / 10 + 1, 10_000) {
            f.register_once = true;
        }
        if p > 0 && self.rng.chance(p / 10 + 1, 10_000) {
            f.look_fail_once = true;
        }
        let began_stall = !self.faults.watch_limit && f.watch_limit;
        self.faults = f;
        for (what, change) in changes {
            if let Some(on) = change {
                trace!(
                    self,
                    "world: fault {what} {}",
                    if on { "begins" } else { "ends" }
                );
            }
        }
        if began_stall && self.watcher.watched.is_some() {
            // Watches are refused at the next crawl: make one happen.
            self.push_event(QEv::Overflow);
        }
        if self.rng.chance(p / 4, 10_000) {
            trace!(self, "world: inotify queue floods");
            self.stats.overflows += 1;
            for _ in 0..=QUEUE_CAP {
                self.push_event(QEv::Overflow);
            }
            if self.watcher.queue.back() != Some(&QEv::Overflow) {
                self.watcher.queue.push_back(QEv::Overflow);
            }
        }
        let moves = self.profile.dir_moves;
        if self.dir.is_some() && self.rng.chance(moves, 10_000) {
            self.dir_away();
        } else if self.dir.is_none() && self.rng.chance(300, 10_000) {
            self.dir_back();
        }
    }

    fn faults_off(&mut self) {
        self.faults = Faults::default();
        if self.dir.is_none() {
            self.dir_back();
        }
    }

    // --- Steps -----------------------------------------------------------------------------

    fn advance_time(&mut self) {
        let dt = match self.rng.below(100) {
            0..=39 => Duration::ZERO,
            40..=79 => Duration::from_millis(1 + self.rng.below(20)),
            80..=94 => Duration::from_millis(20 + self.rng.below(480)),
            // To the next deadline, but no further than 5 s: every timer but
            // an intent's is that close, and a world that sleeps through an
            // intent's hour is a world where nothing happens.
            _ => match self.fleet.poll_timeout() {
                Some(at) if at > self.now => (at - self.now).min(Duration::from_secs(5)),
                _ => Duration::from_millis(1 + self.rng.below(3000)),
            },
        };
        self.now += dt;
    }

    fn step(&mut self) {
        self.step += 1;
        self.stats.steps += 1;
        self.advance_time();
        trace!(self, "--- step {} t={:.3}s", self.step, self.t());
        let roll = self.rng.below(10_000);
        let restart = self.profile.restarts;
        let churn = self.profile.fs_churn;
        if roll < 500 {
            self.spawn();
        } else if roll < 4000 {
            self.qemu_act();
        } else if roll < 4000 + churn {
            self.fs_act();
        } else if roll < 4000 + churn + restart {
            self.restart();
        }
        self.intent_world();
        self.qemu_turns(false);
        self.faults_tick();
        self.daemon_turn(false);
        self.check();
    }

    /// A step with no fault and no news: everything pending is delivered.
    fn quiet_step(&mut self, to_timer: bool) {
        self.step += 1;
        self.stats.steps += 1;
        self.now += match self.fleet.poll_timeout() {
            Some(at) if to_timer && at > self.now => at - self.now,
            _ => Duration::from_millis(50),
        };
        trace!(self, "--- quiet step {} t={:.3}s", self.step, self.t());
        self.qemu_turns(true);
        self.daemon_turn(true);
        self.check();
    }

    fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
            if self.failure.is_some() {
                return;
            }
        }
        self.quiesce();
    }

    /// Faults stop, the directory comes back, every QEMU is monitored, then
    /// ends; everything is delivered and time runs past every timer.
    fn quiesce(&mut self) {
        trace!(self, "=== quiesce");
        self.faults_off();
        for _ in 0..300 {
            self.quiet_step(false);
            if self.failure.is_some() {
                return;
            }
        }
        let seqs: Vec<usize> = self.qemus.keys().copied().collect();
        for seq in seqs {
            for _ in 0..3 {
                let Some(q) = self.qemus.get(&seq) else {
                    break;
                };
                if !q.alive() {
                    break;
                }
                let act = match (q.life, q.run) {
                    (Life::Bound, _) | (_, Run::Exiting) => Act::Exit,
                    (_, Run::Running) => [Act::Poweroff, Act::Quit, Act::Kill][self.rng.index(3)],
                    _ => [Act::Quit, Act::Kill][self.rng.index(2)],
                };
                self.act(seq, act);
                self.qemu_turns(true);
            }
        }
        for i in 0..3000 {
            self.quiet_step(i >= 20);
            if self.failure.is_some() {
                return;
            }
            if i >= 20 && self.fleet.poll_timeout().is_none() && self.conns.is_empty() {
                break;
            }
        }
        self.final_checks();
    }

    fn final_checks(&mut self) {
        let alive: Vec<usize> = self
            .qemus
            .values()
            .filter(|q| q.alive())
            .map(|q| q.seq)
            .collect();
        if !alive.is_empty() {
            self.fail("end", format!("QEMUs still alive: {alive:?}"));
        }
        if !self.conns.is_empty() || self.fleet.instances() != 0 {
            let conns: Vec<_> = self.conns.keys().collect();
            let instances: Vec<String> = self
                .fleet
                .each_instance()
                .map(|(n, k, p, s)| format!("{n} {k:?} {p:?} {s:?}"))
                .collect();
            self.fail(
                "end",
                format!("still tracked: connections {conns:?}, instances {instances:?}"),
            );
        }
        if !self.verdicts.is_empty() || self.fleet.unrecorded().count() != 0 {
            let v: Vec<String> = self.verdicts.keys().map(ToString::to_string).collect();
            self.fail("end", format!("verdicts never written: {v:?}"));
        }
        if self.fleet.deferred() != 0 {
            self.fail(
                "end",
                format!("{} names still deferred", self.fleet.deferred()),
            );
        }
        if let Some(at) = self.fleet.poll_timeout() {
            let left = at.saturating_duration_since(self.now);
            self.fail("end", format!("a timer still set, due in {left:?}"));
        }
        let files: Vec<String> = self
            .intent_files
            .keys()
            .filter(|name| !self.orphans.contains_key(*name))
            .map(ToString::to_string)
            .collect();
        if !self.intents.is_empty() || !files.is_empty() {
            let held: Vec<String> = self.intents.keys().map(ToString::to_string).collect();
            self.fail(
                "end/I2",
                format!("intents outlive every QEMU: held {held:?}, files {files:?}"),
            );
        }
        let hung_up: Vec<(usize, VState)> = self
            .qemus
            .values()
            .filter(|q| q.hangup.is_some())
            .map(|q| (q.seq, q.verdict))
            .collect();
        for (seq, verdict) in hung_up {
            if verdict == VState::None {
                self.fail("end", format!("q{seq} hung up, never decided"));
            }
        }
    }

    // --- Invariants -----------------------------------------------------------------------

    /// I2, after every drain: the intents the model says the daemon holds,
    /// the fleet's (`InstanceView::intent`, on the instance the model
    /// says), and the intent files are one and the same.
    fn check_intents_held(&mut self) {
        if self.failure.is_some() || self.starting {
            return;
        }
        // Nothing held anywhere, the common case: the fleet must hold
        // nothing either (no allocation, no lookup by name).
        if self.intents.is_empty()
            && self.intent_files.is_empty()
            && self.forgotten.is_empty()
            && self.intents_awaiting_look.is_empty()
        {
            let held = self.fleet.views().find(|v| v.intent.is_some()).map(|v| {
                format!(
                    "{}: the fleet holds {:?}, the model and the files nothing",
                    v.name, v.intent
                )
            });
            if let Some(what) = held {
                self.fail("I2", what);
            }
            return;
        }
        let mut orphaned = Vec::new();
        let mut wrong = None;
        let mut tracked: Vec<&Name> = Vec::new();
        // The instances (a slab position is the instance's key).
        for (position, view) in self.fleet.views_from(0) {
            tracked.push(view.name);
            let name = view.name;
            let model = self.intents.get(name);
            let file = self.intent_files.get(name);
            if let (None, None, Some(file)) = (model, view.intent, file) {
                if self.orphans.get(name) != Some(file) && self.forgotten.contains(name) {
                    orphaned.push((name.clone(), file.clone()));
                } else if self.orphans.get(name) != Some(file) {
                    wrong = Some(format!(
                        "{name}: the intent file {file:?} is held by nobody"
                    ));
                }
                continue;
            }
            let model_key = model.map(|h| h.key);
            let same = model.map(|h| &h.intent) == view.intent
                && view.intent == file
                && model_key.is_none_or(|key| key.0 == position);
            if !same {
                wrong = Some(format!(
                    "{name}: the model holds {:?} on {model_key:?}; the fleet {:?} on {position}; the file {file:?}",
                    model.map(|h| &h.intent),
                    view.intent
                ));
            }
        }
        // Names no instance has: nothing held, no file but an orphan.
        for (name, held) in &self.intents {
            if !tracked.contains(&name) {
                wrong = Some(format!(
                    "{name}: the model holds {:?}, no instance does",
                    held.intent
                ));
            }
        }
        for (name, intent) in &self.intents_awaiting_look {
            if self.intent_files.get(name) != Some(intent) {
                wrong = Some(format!(
                    "{name}: {intent:?} waits for a look, yet its file is {:?}",
                    self.intent_files.get(name)
                ));
            }
        }
        for (name, file) in &self.intent_files {
            if tracked.contains(&name)
                || self.orphans.get(name) == Some(file)
                || self.intents_awaiting_look.get(name) == Some(file)
            {
                continue;
            }
            if self.forgotten.contains(name) {
                orphaned.push((name.clone(), file.clone()));
            } else {
                wrong = Some(format!(
                    "{name}: the intent file {file:?} is held by nobody"
                ));
            }
        }
        self.forgotten.clear();
        if let Some(wrong) = wrong {
            return self.fail("I2", wrong);
        }
        for (name, file) in orphaned {
            self.exception(
                "O1",
                format!(
                    "{name}: its instance was given up holding an intent; the intent file is left: {file:?}"
                ),
            );
            self.orphans.insert(name, file);
        }
    }

    /// I2, after a hang-up's drain: no intent file is left for the QEMU
    /// that ended (`qemu`); only a newer QEMU's may stand at its name.
    fn check_intent_ended(&mut self, name: &Name, seq: usize, qemu: Option<Qemu>) {
        let Some(qemu) = qemu else {
            return;
        };
        if let Some(file) = self.intent_files.get(name)
            && file.qemu == Some(qemu)
            && self.orphans.get(name) != Some(file)
        {
            let file = file.clone();
            self.fail(
                "I2",
                format!("{name}: q{seq} hung up, its intent file is left: {file:?}"),
            );
        }
    }

    /// I3: the window's timer is set exactly while an intent waits, the
    /// presses' only while one waits (for `powerdown-all`); and while kvmd
    /// may press (the QEMU monitored, fewer than `MAX_ASKED` unanswered,
    /// none refused) the presses go on. Returns how many intent timers are
    /// set.
    fn check_intent_timers(&mut self) -> usize {
        // Holding none, the fleet must set none: the exact count of
        // invariant 4 finds a stray one without a lookup per instance.
        if self.intents.is_empty() {
            return 0;
        }
        let mut set = 0;
        let mut wrong = None;
        let mut presses_stopped = Vec::new();
        for (name, key, phase, _) in self.fleet.each_instance() {
            let held = self.intents.get(name).filter(|h| h.key == key);
            let waiting = held.filter(|h| h.intent.state == IntentState::Waiting);
            let window = self.fleet.timer_is_set(Timer::Intent(key));
            let press = self.fleet.timer_is_set(Timer::Press(key));
            set += usize::from(window) + usize::from(press);
            // Restored to an instance still connecting, its window over:
            // the timer may have fired already, and the connect decides.
            let over_connecting = waiting.is_some_and(|h| h.intent.until <= self.now)
                && !self.conns.contains_key(&key);
            if window != waiting.is_some() && !over_connecting {
                wrong = Some(format!(
                    "{name}: the window's timer set={window}, the model holds {:?}",
                    held.map(|h| h.intent.state)
                ));
            }
            let pressing = waiting.filter(|h| h.intent.presses == Presses::UntilShutdown);
            if press && waiting.is_none() {
                wrong = Some(format!(
                    "{name}: the presses' timer is set, the model holds {:?}",
                    held.map(|h| (h.intent.state, h.intent.presses))
                ));
            }
            let asked = self.conns.get(&key).map_or(0, |c| c.asked);
            if let Some(h) = pressing
                && !press
                && !h.presses_over
                && phase == Phase::Monitoring
                && asked < MAX_ASKED
            {
                presses_stopped.push((
                    name.clone(),
                    format!(
                        "{name}: powerdown-all's intent{} waits {:?} more, its QEMU monitored, {asked} presses unanswered, and no press is due",
                        if h.press_unsure {
                            " (restored at a restart, a press due while it negotiated)"
                        } else {
                            ""
                        },
                        h.intent.until - self.now
                    ),
                    h.press_unsure,
                ));
            }
        }
        if let Some(wrong) = wrong {
            self.fail("I3", wrong);
        }
        for (name, what, after_restart) in presses_stopped {
            // O2's very trigger only: any other stop is a failure.
            if !after_restart {
                self.fail("I3", what);
                break;
            }
            // Counted once per intent: the model expects no more presses.
            if let Some(held) = self.intents.get_mut(&name) {
                held.presses_over = true;
            }
            self.exception("O2", what);
        }
        set
    }

    fn check(&mut self) {
        if self.failure.is_some() {
            return;
        }
        let now = self.now;
        // 1, and what is tracked.
        let mut names = BTreeSet::new();
        let mut connected = BTreeMap::new();
        let mut connecting = Vec::new();
        let mut twice = None;
        for (name, key, phase, socket) in self.fleet.each_instance() {
            if !names.insert(name.clone()) {
                twice = Some(name.clone());
            }
            match phase {
                Phase::Connecting(_) => connecting.push((key, name.clone(), socket)),
                Phase::Negotiating | Phase::Monitoring => {
                    connected.insert(key, name.clone());
                }
            }
        }
        if let Some(name) = twice {
            return self.fail("1", format!("two instances of {name}"));
        }
        let instances = self.fleet.instances();
        self.stats.max_instances = self.stats.max_instances.max(instances);
        for (key, name) in &connected {
            match self.conns.get(key) {
                Some(conn) if &conn.name == name => {}
                _ => return self.fail("4", format!("{name}: {key:?} connected, no connection")),
            }
        }
        for (key, conn) in &self.conns {
            if !connected.contains_key(key) {
                let name = conn.name.clone();
                return self.fail("4", format!("{name}: connection {key:?} not tracked"));
            }
        }
        for (key, name, _) in &connecting {
            if !self.fleet.timer_is_set(Timer::Connect(*key)) {
                return self.fail("4", format!("{name}: connecting {key:?} with no timer"));
            }
        }
        let present = self.dir.as_ref().map_or(0, |d| {
            d.kvmd
                .values()
                .filter(|e| matches!(e.kind, Kind::Socket { .. }))
                .count()
        });
        let gone = connecting
            .iter()
            .filter(|(_, name, socket)| {
                self.dir
                    .as_ref()
                    .and_then(|d| d.kvmd.get(name))
                    .is_none_or(|e| e.id() != *socket || !matches!(e.kind, Kind::Socket { .. }))
            })
            .count();
        if instances > present + self.conns.len() + gone {
            return self.fail(
                "4",
                format!(
                    "{instances} instances, {present} sockets, {} connections",
                    self.conns.len()
                ),
            );
        }
        // 4: verdicts, the model's and the fleet's.
        let unrecorded: Vec<(Name, SocketId, Verdict)> = self
            .fleet
            .unrecorded()
            .map(|(n, s, v)| (n.clone(), s, v))
            .collect();
        let mut seen = BTreeSet::new();
        for (name, socket, verdict) in &unrecorded {
            if !seen.insert(name.clone()) {
                return self.fail("4", format!("{name}: two unrecorded verdicts"));
            }
            match self.verdicts.get(name) {
                Some(pv) if pv.socket == *socket && pv.verdict == *verdict => {}
                other => {
                    let other = format!("{other:?}");
                    return self.fail(
                        "4",
                        format!("{name}: unrecorded {verdict} {socket:?}; model: {other}"),
                    );
                }
            }
        }
        if unrecorded.len() != self.verdicts.len() {
            let model: Vec<String> = self.verdicts.keys().map(ToString::to_string).collect();
            return self.fail("4", format!("unrecorded {unrecorded:?}, model {model:?}"));
        }
        if unrecorded.len() > self.names_used.len() {
            return self.fail("4", "more verdicts than names".to_owned());
        }
        let deferred = self.fleet.deferred();
        self.stats.max_deferred = self.stats.max_deferred.max(deferred);
        if deferred > 3 * self.names.len() {
            return self.fail("4", format!("{deferred} names deferred"));
        }
        if deferred > 0 && !self.fleet.timer_is_set(Timer::Descriptors) {
            return self.fail("4", format!("{deferred} names deferred, no timer"));
        }
        // Timers: at most three per instance (its connect, and an intent's
        // window and presses), one per verdict, and three of the fleet's
        // own; each one set for something tracked.
        let timers = self.fleet.timers();
        let intent_timers = self.check_intent_timers();
        if self.failure.is_some() {
            return;
        }
        let awaiting_timer = self.fleet.timer_is_set(Timer::AwaitingIntents);
        if awaiting_timer == self.intents_awaiting_look.is_empty() {
            return self.fail(
                "I3",
                format!(
                    "the timer of intents waiting for a look set={awaiting_timer}, {} wait",
                    self.intents_awaiting_look.len()
                ),
            );
        }
        if timers > instances + intent_timers + unrecorded.len() + 4 {
            return self.fail(
                "4",
                format!(
                    "{timers} timers for {instances} instances ({intent_timers} for intents), {} verdicts",
                    unrecorded.len()
                ),
            );
        }
        // Each connecting instance has its connect timer (checked above);
        // the intent timers were counted instance by instance.
        let tracked = connecting.len()
            + intent_timers
            + self
                .verdicts
                .values()
                .filter(|v| self.fleet.timer_is_set(Timer::Record(v.key)))
                .count()
            + [
                Timer::Descriptors,
                Timer::Rescan,
                Timer::Report,
                Timer::AwaitingIntents,
            ]
            .into_iter()
            .filter(|&t| self.fleet.timer_is_set(t))
            .count();
        if timers != tracked {
            return self.fail(
                "4",
                format!("{timers} timers set, {tracked} of them for something tracked"),
            );
        }
        // 5
        // A report of what changed is made at most a second after it.
        let report_due = self.fleet.timer_is_set(Timer::Report);
        let intent_waits = self
            .intents
            .values()
            .any(|h| h.intent.state == IntentState::Waiting);
        let waits = !connecting.is_empty()
            || !unrecorded.is_empty()
            || deferred > 0
            || self.told_follow == Follow::Rescans
            || report_due
            || intent_waits
            || !self.intents_awaiting_look.is_empty();
        let next = self.fleet.poll_timeout();
        if !waits && next.is_some() {
            return self.fail("5", format!("nothing waits, yet a timeout: {next:?}"));
        }
        let only_dir_waits = connecting.is_empty()
            && deferred == 0
            && self.told_follow == Follow::Events
            && self.told_reach == Reach::Away
            && self
                .verdicts
                .values()
                .all(|v| v.last_error == Some(RecordError::DirAway));
        if waits && next.is_none() && (!only_dir_waits || intent_waits) {
            return self.fail(
                "5b",
                format!(
                    "something waits (connecting {}, verdicts {}, deferred {deferred}, {:?}, intent waiting {intent_waits}) with no timeout",
                    connecting.len(),
                    unrecorded.len(),
                    self.told_follow
                ),
            );
        }
        if next.is_some_and(|at| at <= now) {
            return self.fail("5", "a deadline in the past after a turn".to_owned());
        }
        // 6
        if let Some(dir) = &self.dir {
            let names: BTreeSet<&Name> = dir.expect.keys().chain(dir.shutdown.keys()).collect();
            let wrong = names.into_iter().find_map(|name| {
                let expect = dir.expect.get(name).copied();
                let present = dir.shutdown.contains_key(name);
                match expect.unwrap_or(Expect::Present(false)) {
                    Expect::Present(want) if want != present => Some(format!(
                        "{name}.shutdown present={present}, the last verdict written says {want}"
                    )),
                    _ => None,
                }
            });
            if let Some(wrong) = wrong {
                return self.fail("6", wrong);
            }
        }
        // S: the state file of each connection.
        for conn in self.conns.values() {
            let Some(q) = self.qemus.get(&conn.qemu) else {
                continue;
            };
            let carried = q.kept.carried();
            let want = (carried != Carried::default()).then_some(Saved {
                socket: conn.socket,
                qemu: q.qemu(),
                carried,
            });
            let have = self.state.get(&conn.name).copied();
            if have != want {
                let name = conn.name.clone();
                let seq = q.seq;
                return self.fail(
                    "S",
                    format!("{name}: q{seq}'s state file is {have:?}, want {want:?}"),
                );
            }
        }
        // 7: liveness.
        let stalled = self.watcher.stalled;
        let current = self.dir.as_ref().map(|d| d.id);
        let watched = current.is_some() && self.watcher.watched == current;
        let blocked = self.faults.emfile || self.faults.eagain;
        let mut late = None;
        let seqs: Vec<usize> = self.qemus.keys().copied().collect();
        for seq in seqs {
            let q = &self.qemus[&seq];
            let at_name = self
                .dir
                .as_ref()
                .and_then(|d| d.kvmd.get(&q.name))
                .is_some_and(|e| {
                    e.kind
                        == Kind::Socket {
                            owner: q.owner,
                            qemu: Some(seq),
                        }
                });
            let other_conn = self
                .conns
                .values()
                .any(|c| c.name == q.name && c.qemu != seq);
            let monitorable = q.life == Life::Listening
                && q.run != Run::Exiting
                && q.owner == TRUSTED
                && q.name.fits()
                && q.excused.is_none()
                && at_name
                && watched
                && !blocked
                && !other_conn
                && q.client.is_none();
            let q = self.qemus.get_mut(&seq).expect("q");
            if !monitorable {
                q.monitorable_since = None;
                q.stalled_meanwhile = false;
                continue;
            }
            let since = *q.monitorable_since.get_or_insert(now);
            q.stalled_meanwhile |= stalled;
            let grace = if q.stalled_meanwhile {
                GRACE_STALLED
            } else {
                GRACE
            };
            if now - since > grace {
                late = Some((seq, q.name.clone(), now - since));
            }
        }
        if let Some((seq, name, waited)) = late {
            let id = SocketId {
                dev: DEV,
                ino: self.qemus[&seq].ino,
            };
            let what = format!(
                "{name}: q{seq} listens at its name, monitorable for {waited:?}, not connected"
            );
            match self.given_up.get(&name).copied() {
                // B1: the fleet gave up on a file that was gone (or whose
                // directory was), and keeps refusing that file identity.
                Some((given, why @ (GiveUp::SocketWent | GiveUp::DirGone))) if given == id => {
                    let what = format!("{what}: given up on {id:?} ({why:?})");
                    self.qemus.get_mut(&seq).expect("q").excused = Some("B1");
                    if why == GiveUp::DirGone {
                        self.exception("B1/dir", what.clone());
                    }
                    self.exception("B1", what);
                }
                // L1: a socket given up on for good was replaced, while no
                // event could tell, by one with the same inode number.
                Some((given, _)) if given == id => {
                    self.qemus.get_mut(&seq).expect("q").excused = Some("L1");
                    self.exception("L1", what);
                }
                // L2: the socket kvmd monitored was replaced, while no
                // event could tell, by one with its inode number: at the
                // old QEMU's hang-up the name shows the identity it had.
                _ if !self.qemus[&seq].creation_told
                    && self.last_connect.get(&name) == Some(&id) =>
                {
                    self.qemus.get_mut(&seq).expect("q").excused = Some("L2");
                    self.exception("L2", what);
                }
                _ => self.fail("7", what),
            }
        }
        // The sweep: QEMUs that are done need no more watching.
        self.qemus.retain(|_, q| {
            q.alive() || q.client.is_some() || (q.hangup.is_some() && q.verdict == VState::None)
        });
    }
}

// --- Running seeds ------------------------------------------------------------------

struct Failure {
    seed: u64,
    step: u64,
    message: String,
}

fn run_seed(seed: u64, steps: u64, echo: bool, strict: bool) -> Result<Stats, Failure> {
    let mut sim = Sim::new(seed, echo, echo, strict);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
    if let Err(payload) = outcome {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned());
        return Err(Failure {
            seed,
            step: sim.step,
            message: format!("panicked: {message}"),
        });
    }
    match sim.failure.take() {
        Some(message) => Err(Failure {
            seed,
            step: sim.step,
            message,
        }),
        None => Ok(sim.stats),
    }
}

/// Runs `seed` again with the trace on, and returns its last steps.
fn replay_trace(seed: u64, steps: u64, strict: bool) -> String {
    let mut sim = Sim::new(seed, true, false, strict);
    let _ = panic::catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
    let mut out = String::new();
    for (step, line) in &sim.trace {
        let _ = writeln!(out, "[{step:>5}] {line}");
    }
    out
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

fn report(total: &Stats, elapsed: Duration) {
    eprintln!(
        "simulation: {} steps in {:.2}s; {} QEMUs, {} hang-ups ({} user, {} not), {} written, \
         {} restarts, {} crawls, {} overflows, {} mooted, {} refused for good, {} lost to restarts, \
         mean QEMU life {:.1}s, max instances {}, max deferred {}",
        total.steps,
        elapsed.as_secs_f64(),
        total.qemus,
        total.hangups,
        total.user,
        total.not_user,
        total.written,
        total.restarts,
        total.crawls,
        total.overflows,
        total.mooted,
        total.unrecordable,
        total.lost_to_restart,
        total.lifetime_total.as_secs_f64() / total.qemus.max(1) as f64,
        total.max_instances,
        total.max_deferred,
    );
    eprintln!("simulation: verdicts by reason {:?}", total.why);
    let i = &total.intents;
    eprintln!(
        "simulation: intents: {} given, {} claimed, {} expired, {} cancelled, {} dropped ({} at a connect), \
         {} restored ({} claimed, {} ended at a connect after the window), {} kept for a name not \
         looked at yet ({} settled by a look, {} ended unlooked at), {} powerdown-all ({} abandoned, \
         {} presses stopped), {} presses ({} again, {} refused: {MAX_ASKED} unanswered); requests \
         refused {:?}",
        i.given,
        i.claimed,
        i.expired,
        i.cancelled,
        i.dropped,
        i.dropped_at_connect,
        i.restored,
        i.restored_claimed,
        i.expired_at_connect,
        i.awaited,
        i.awaited_settled,
        i.awaited_ended,
        i.powerdowns_all,
        i.abandoned,
        i.presses_stopped,
        i.presses,
        i.presses_again,
        i.presses_refused,
        i.refused,
    );
    for (class, invariant, gap, what) in CLASSES {
        let Some(tally) = total.exceptions.get(class) else {
            continue;
        };
        let kind = if gap { "GAP in kvmd" } else { "exception" };
        eprintln!(
            "simulation: {class} ({kind}, invariant {invariant}) x{}: {what}",
            tally.count
        );
        if let Some((seed, step, first)) = &tally.first {
            eprintln!("    first: KVMD_SIM_SEED={seed}, step {step}: {first}");
        }
    }
}

fn run_many(seeds: impl Iterator<Item = u64>, steps: u64, strict: bool) -> Stats {
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in seeds {
        match run_seed(seed, steps, false, strict) {
            Ok(stats) => total.add(&stats),
            Err(f) => {
                let trace = replay_trace(f.seed, steps, strict);
                let strict = if strict { "KVMD_SIM_STRICT=1 " } else { "" };
                panic!(
                    "simulation failed: seed {} step {}: {}\n\
                     replay: {strict}KVMD_SIM_SEED={} KVMD_SIM_STEPS={steps} \
                     cargo test --test simulation -- --nocapture\n\
                     last {TRACE_STEPS} steps:\n{trace}",
                    f.seed, f.step, f.message, f.seed
                );
            }
        }
    }
    report(&total, started.elapsed());
    total
}

/// One seed with its trace (`KVMD_SIM_SEED`), or every seed.
fn simulate(strict: bool) {
    let steps = env_u64("KVMD_SIM_STEPS").unwrap_or(STEPS);
    if let Some(seed) = env_u64("KVMD_SIM_SEED") {
        match run_seed(seed, steps, true, strict) {
            Ok(stats) => report(&stats, Duration::ZERO),
            Err(f) => panic!("seed {} failed at step {}: {}", f.seed, f.step, f.message),
        }
        return;
    }
    let seeds = env_u64("KVMD_SIM_SEEDS").unwrap_or(SEEDS);
    let total = run_many(0..seeds, steps, strict);
    if seeds >= SEEDS && steps >= STEPS {
        intents_covered(&total);
    }
}

/// A full run takes every path of intents (the scripted stories make
/// sure): a path no run takes is one no invariant checks.
fn intents_covered(total: &Stats) {
    let i = &total.intents;
    let paths = [
        ("given", i.given),
        ("claimed", i.claimed),
        ("expired", i.expired),
        ("cancelled", i.cancelled),
        ("dropped", i.dropped),
        ("dropped at a connect", i.dropped_at_connect),
        ("dropped at the window's very end", i.dropped_at_until),
        ("kept for a name not looked at yet", i.awaited),
        ("kept for a name, settled by a look", i.awaited_settled),
        ("kept for a name, ended unlooked at", i.awaited_ended),
        ("ended at a connect after the window", i.expired_at_connect),
        ("restored", i.restored),
        ("restored claimed", i.restored_claimed),
        ("powerdown-all", i.powerdowns_all),
        ("pressed", i.presses),
        ("pressed again", i.presses_again),
        ("press refused", i.presses_refused),
        ("powerdown-all abandoned", i.abandoned),
        ("presses stopped", i.presses_stopped),
        (
            "host-intent verdicts",
            total.why.get("HostIntent").copied().unwrap_or(0),
        ),
    ];
    let refusals = [
        "NotMonitored",
        "NotYetMonitoring",
        "AlreadyShutDown",
        "BadWindow",
        "BadBy",
        "NoIntent",
        "AlreadyClaimed",
        "CannotPress",
    ];
    let missing: Vec<&str> = paths
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(what, _)| *what)
        .chain(refusals.into_iter().filter(|r| !i.refused.contains_key(*r)))
        .collect();
    assert!(
        missing.is_empty(),
        "paths of intents no seed took: {missing:?}"
    );
}

#[test]
fn simulation() {
    simulate(std::env::var_os("KVMD_SIM_STRICT").is_some());
}

/// Stops at the first documented exception, to show one: each comes
/// with its seed and trace (`KVMD_SIM_STRICT=1` does the same).
#[test]
#[ignore = "stops at the first documented exception, by design: see the module documentation"]
fn strict_stops_at_the_first_exception() {
    simulate(true);
}
