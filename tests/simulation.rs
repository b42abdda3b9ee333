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
//! - (H) The fleet, made without hooks, asks for no hook action.
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
//! # Where each part lives
//! This file holds this specification, the parameters, the state of a run
//! (`Simulation`) and the tests; the parts are in `tests/simulation/`:
//! - `world.rs`: the model world: the control directory, its entries and
//!   the shutdown files, the connections, inotify and the watcher, and the
//!   answers to the fleet's questions (look, connect, the shutdown file's
//!   write). The state directory is `Simulation::state` (state files) and
//!   `Simulation::intent_files`.
//! - `qemu.rs`: the QEMUs, their scripts (README's decision table), their
//!   acts and their monitor.
//! - `intents.rs`: the intents model: the host's orders, the scripted
//!   stories, presses, and the intent files handed back at start-up.
//! - `faults.rs`: fault injection.
//! - `driver.rs`: the fleet driven as the daemon's loop drives it:
//!   start-up, restarts, turns, `carry_out`; the steps and the quiescing.
//! - `invariants.rs`: the checks, one function per invariant
//!   (`invariant_1`, `invariant_2_verdict`, `invariant_3`, `invariant_4`,
//!   `invariant_5`, `invariant_6`, `invariant_6_order`, `invariant_7`,
//!   `invariant_s`, `invariant_r_report`, `invariant_h_hook_action`,
//!   `invariant_i2_intents_held`, `invariant_i2_intent_ended`,
//!   `invariant_i3_timers`, `invariant_i3_pressed`), and the end of a
//!   run's (`final_checks`). What the model sees happen as it happens
//!   (a QEMU connected twice, a hang-up not decided at once, a request
//!   answered other than the model reads it...) fails where it is seen,
//!   with the same labels: `fail("` finds them all.
//! - `report.rs`: statistics, the exception classes (`CLASSES`), the
//!   summary printed, and `intents_covered`.
//! - `run.rs`: running seeds, replaying a failed one with its trace.
//! - `rng.rs`: the generator.
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
    Answered, Change, ConnectError, Connected, Fleet, Follow, GiveUp, HookId, HookJob, HookSignal,
    Host, InstanceKey, Intent, IntentRefused, IntentState, JournalRecord, Look, MAX_WINDOW, Notice,
    Phase, Pressed, Presses, Purpose, Reach, RecordError, Timer, VerdictKey,
};
use kvmd_core::name::InstanceName;
use kvmd_core::qmp::{Command, Event, MAX_ASKED, Reason};
use kvmd_core::saved::{Qemu, Saved, SocketId};
use kvmd_core::test_kit;

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

// --- The trace --------------------------------------------------------------

/// A line of the trace (kept for a failure report, printed as it goes with
/// `KVMD_SIM_SEED`). Defined before the modules, so that each can use it.
macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {
        if $sim.tracing {
            let line = format!($($arg)*);
            $sim.trace_line(line);
        }
    };
}

// --- The parts ----------------------------------------------------------------

// A crate root's modules are found beside it (`tests/`, where each file is
// a test of its own): the parts are in `tests/simulation/`, named here.
#[path = "simulation/driver.rs"]
mod driver;
#[path = "simulation/faults.rs"]
mod faults;
#[path = "simulation/intents.rs"]
mod intents;
#[path = "simulation/invariants.rs"]
mod invariants;
#[path = "simulation/qemu.rs"]
mod qemu;
#[path = "simulation/report.rs"]
mod report;
#[path = "simulation/rng.rs"]
mod rng;
#[path = "simulation/run.rs"]
mod run;
#[path = "simulation/world.rs"]
mod world;

use driver::PendingVerdict;
use faults::Faults;
use intents::HeldIntent;
use qemu::{Act, Button, Life, QemuProc, Run, VerdictState};
use report::{Stats, intents_covered, report};
use rng::Rng;
use run::simulate;
use world::{
    Connection, DirModel, Entry, EntryKind, ExpectedFile, Mark, Name, WatcherEvent, WatcherModel,
};

/// How a seed's world behaves: rates vary from seed to seed.
#[derive(Clone, Copy, Debug)]
struct Profile {
    /// Per 10,000 steps.
    restarts: u64,
    faults: u64,
    dir_moves: u64,
    fs_churn: u64,
}

// --- The state of a run -------------------------------------------------------

/// One seed's run: the fleet under test, the model world around it, what
/// the checks need to know, and the statistics and trace. Its `impl` is
/// spread over the parts (see the module documentation).
struct Simulation {
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
    conns: BTreeMap<InstanceKey, Connection>,
    state: BTreeMap<Name, Saved>,
    verdicts: BTreeMap<Name, PendingVerdict>,
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

impl Simulation {
    fn new(seed: u64, tracing: bool, echo: bool, strict: bool) -> Simulation {
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
        let mut sim = Simulation {
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

    fn elapsed_secs(&self) -> f64 {
        (self.now - self.base).as_secs_f64()
    }
}

// --- The tests ------------------------------------------------------------------

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
