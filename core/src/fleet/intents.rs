//! Intents: the host saying, before it stops a QEMU, that the stop is its
//! own (`kvmd expect-stop`, `kvmd powerdown-all`).
//!
//! Some host-initiated stops look like the user's to QMP: a guest agent's
//! `guest-shutdown` ends in `SHUTDOWN {"guest": true, "reason":
//! "guest-shutdown"}` with no POWERDOWN before it. An intent closes that
//! gap without guessing from timing: it names one QEMU process (its socket
//! and, when known, its pid and start time, so a new QEMU of the same name
//! inherits nothing), it holds for a window, and the first SHUTDOWN of
//! that QEMU within the window *claims* it. A claimed intent makes the
//! verdict `host-intent` at the hang-up, whatever the SHUTDOWN said; an
//! intent never claimed expires (or ends with its QEMU) and changes
//! nothing.
//!
//! Intents are kept in the state directory ([`Action::SaveIntent`]), so a
//! restarted kvmd honours them; the caller hands them back with
//! [`Fleet::handle_intent_files`].

use std::fmt;
use std::time::{Duration, Instant};

use super::instance::{Instance, Link};
use super::{Action, Fleet, InstanceKey, Notice, Phase, Timer};
use crate::decision::Expected;
use crate::name::InstanceName;
use crate::qmp::Command;
use crate::saved::{Qemu, SocketId};

/// The window when none is given.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// The longest window: an intent is for a stop about to happen, not a
/// standing exemption (an hour covers the slowest guest's shutdown).
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// The longest `--by` text (it goes into log lines, hooks and the journal).
pub const MAX_BY: usize = 200;
/// While `kvmd powerdown-all` waits, the power button is pressed again
/// this often: a guest that had not yet enabled its button when it was
/// first pressed loses that press (Ganeti's own stop presses every 10 s).
pub(crate) const PRESS_AGAIN: Duration = Duration::from_secs(5);

/// Where an intent stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentState {
    /// Given; no SHUTDOWN yet. Expires at `until`.
    Waiting,
    /// The first SHUTDOWN came within the window: the verdict is the
    /// host's. Never expires; ends with its QEMU.
    Claimed,
}

/// Whether the power button is pressed again while the intent waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presses {
    /// `kvmd expect-stop`: the caller stops the guest its own way.
    None,
    /// `kvmd powerdown-all`: kvmd presses the button until the guest obeys.
    UntilShutdown,
}

/// One intent. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// Who said so (`--by`): shown in the log, status, events, hooks and
    /// the journal.
    pub by: String,
    /// When it was given.
    pub given: Instant,
    /// When it lapses, unclaimed.
    pub until: Instant,
    /// The QEMU it was given for: its socket ...
    pub socket: SocketId,
    /// ... and its process, when known.
    pub qemu: Option<Qemu>,
    /// Waiting for its SHUTDOWN, or claimed by one.
    pub state: IntentState,
    /// Whether kvmd presses the power button for it.
    pub presses: Presses,
}

/// A claimed intent, as a verdict carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntentNote {
    /// Who gave it.
    pub by: String,
    /// When it was given.
    pub given: Instant,
}

/// Who read the SHUTDOWN that claims an intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShutdownRead {
    /// This run, just now.
    Now,
    /// An earlier run: it came back with the evidence kept in the state
    /// directory.
    ByEarlierRun,
}

/// Why an intent was not given (or withdrawn).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntentRefused {
    /// kvmd does not monitor an instance of that name.
    NotMonitored,
    /// It is still connecting or negotiating: which QEMU it is is not
    /// known yet.
    NotYetMonitoring,
    /// Its guest already shut down: the SHUTDOWN that decides came before.
    AlreadyShutDown,
    /// Zero, or longer than [`MAX_WINDOW`].
    BadWindow(Duration),
    /// `--by` too long or with control characters.
    BadBy,
    /// Nothing to cancel.
    NoIntent,
    /// Too late to cancel: the SHUTDOWN it covers came.
    AlreadyClaimed,
    /// The QEMU has left the last presses (or other commands)
    /// unanswered: another would only pile up.
    CannotPress,
}

impl fmt::Display for IntentRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntentRefused::NotMonitored => {
                write!(f, "kvmd does not monitor an instance of that name")
            }
            // Connecting or negotiating: either way not monitored yet.
            IntentRefused::NotYetMonitoring => write!(
                f,
                "kvmd is not monitoring it yet (still connecting to its QEMU); try again once \
                 `kvmd status` says monitoring"
            ),
            IntentRefused::AlreadyShutDown => write!(
                f,
                "its guest has already shut down; the SHUTDOWN that decides came before"
            ),
            IntentRefused::BadWindow(window) => write!(
                f,
                "a window of {} s is not allowed (1 s to {} s)",
                window.as_secs(),
                MAX_WINDOW.as_secs()
            ),
            IntentRefused::BadBy => {
                write!(
                    f,
                    "--by takes at most {MAX_BY} bytes of printable text (no control, \
                     bidirectional or invisible characters)"
                )
            }
            IntentRefused::NoIntent => write!(f, "no intent is given for it"),
            IntentRefused::AlreadyClaimed => write!(
                f,
                "too late: the SHUTDOWN it covers already came, and the verdict will be the host's"
            ),
            // In `Monitoring`, the only way a press is not sent: the last
            // ones are still unanswered (`qmp::MAX_ASKED`).
            IntentRefused::CannotPress => write!(
                f,
                "its QEMU has not answered kvmd's last commands (hung?); its power button \
                 was not pressed"
            ),
        }
    }
}

impl std::error::Error for IntentRefused {}

/// Whether `by` may be kept and shown as it is: no control character,
/// and none that reorders or hides text (bidirectional overrides such as
/// U+202E, zero-width characters, line and paragraph separators), which
/// would let a `--by` forge what a log line or `kvmd history` seems to say.
pub fn valid_by(by: &str) -> bool {
    by.len() <= MAX_BY
        && !by
            .chars()
            .any(|c| c.is_control() || is_format_or_separator(c))
}

/// Unicode's format characters (Cf) and line/paragraph separators (Zl,
/// Zp) that text may carry: what a terminal draws invisibly or reorders.
fn is_format_or_separator(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Whether `window` is one an intent may have.
pub fn valid_window(window: Duration) -> bool {
    !window.is_zero() && window <= MAX_WINDOW
}

/// What [`Fleet::handle_powerdown_all`] did for one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pressed {
    /// The instance.
    pub name: InstanceName,
    /// Its QEMU, when known.
    pub qemu: Option<Qemu>,
    /// Pressed (an intent given), or why not.
    pub result: Result<(), IntentRefused>,
}

impl Fleet {
    /// `kvmd expect-stop` (see [`Fleet::handle_expect_stop`]).
    pub(super) fn expect_stop(
        &mut self,
        now: Instant,
        name: &InstanceName,
        window: Duration,
        by: String,
    ) -> Result<(), IntentRefused> {
        let key = self.monitored(name)?;
        self.give_intent(now, key, window, by, Presses::None)
    }

    /// `kvmd expect-stop --cancel` (see [`Fleet::handle_cancel_intent`]).
    pub(super) fn cancel_intent(&mut self, name: &InstanceName) -> Result<(), IntentRefused> {
        let key = self
            .instances
            .key(name)
            .ok_or(IntentRefused::NotMonitored)?;
        let instance = self
            .instances
            .get_mut(key)
            .ok_or(IntentRefused::NotMonitored)?;
        match &instance.intent {
            None => return Err(IntentRefused::NoIntent),
            Some(intent) if intent.state == IntentState::Claimed => {
                return Err(IntentRefused::AlreadyClaimed);
            }
            Some(_) => {}
        }
        let Some(intent) = instance.intent.take() else {
            return Err(IntentRefused::NoIntent);
        };
        self.timers.cancel(Timer::Intent(key));
        self.timers.cancel(Timer::Press(key));
        let name = name.clone();
        self.outbox.act(Action::RemoveIntent { name: name.clone() });
        self.outbox.notify(Notice::IntentCancelled {
            name,
            by: intent.by,
        });
        Ok(())
    }

    /// `kvmd powerdown-all` (see [`Fleet::handle_powerdown_all`]).
    pub(super) fn powerdown_all(
        &mut self,
        now: Instant,
        window: Duration,
        by: &str,
    ) -> Vec<Pressed> {
        let keys: Vec<InstanceKey> = self.instances.iter().map(|(key, _)| key).collect();
        let mut pressed = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(instance) = self.instances.get(key) else {
                continue;
            };
            let name = instance.name.clone();
            let qemu = match &instance.link {
                Link::Connected(c) => c.qemu,
                Link::Connecting { .. } => None,
            };
            // Pressed first, the intent given only once the press went
            // out: a QEMU that cannot take the button gets no intent
            // either (it is told refused, and nothing changes for it).
            let result = match instance.phase() {
                Phase::Monitoring => self
                    .check_intent(key, window, by)
                    .and_then(|()| self.press(key))
                    .and_then(|()| {
                        self.give_intent(now, key, window, by.to_owned(), Presses::UntilShutdown)
                    }),
                _ => Err(IntentRefused::NotYetMonitoring),
            };
            pressed.push(Pressed { name, qemu, result });
        }
        pressed
    }

    /// Stops the presses nobody waits for any more (see
    /// [`Fleet::handle_orders_abandoned`]).
    pub(super) fn orders_abandoned(&mut self, names: &[InstanceName]) {
        for name in names {
            let Some(key) = self.instances.key(name) else {
                continue;
            };
            let Some(instance) = self.instances.get_mut(key) else {
                continue;
            };
            let Some(intent) = instance.intent.as_mut() else {
                continue;
            };
            if intent.state != IntentState::Waiting || intent.presses != Presses::UntilShutdown {
                continue;
            }
            intent.presses = Presses::None;
            let intent = intent.clone();
            self.timers.cancel(Timer::Press(key));
            // Kept so: a restarted kvmd does not start pressing again.
            self.save_intent(name, &intent);
            self.outbox.notify(Notice::PressesStopped {
                name: name.clone(),
                by: intent.by,
            });
        }
    }

    /// Takes up or drops the intents a previous run kept (see
    /// [`Fleet::handle_intent_files`]).
    pub(super) fn restore_intents(&mut self, now: Instant, intents: Vec<(InstanceName, Intent)>) {
        for (name, intent) in intents {
            // As with state files: what stands at a name nobody could look
            // at yet is unknown, and the intent waits for it.
            let unknown = self.directory.unknown(&name);
            if !self.instances.contains(&name) && unknown {
                log::info!("{name}: its kept intent waits until its socket is looked at");
                self.awaiting_intents.insert(name, intent);
                continue;
            }
            self.restore_intent(now, name, intent);
        }
        self.time_awaiting_intents();
    }

    /// `name` was looked at (or its entry went away): an intent kept for it
    /// is taken up or dropped now, whatever else is still to be looked at.
    pub(super) fn settle_awaiting_intent(&mut self, now: Instant, name: &InstanceName) {
        if let Some(intent) = self.awaiting_intents.remove(name) {
            self.restore_intent(now, name.clone(), intent);
            self.time_awaiting_intents();
        }
    }

    /// [`Timer::AwaitingIntents`]: intents still waiting for a look at the
    /// end of their window are dropped (a name never looked at again: the
    /// directory back without it, an entry that stays unreadable).
    pub(super) fn awaiting_intents_due(&mut self, now: Instant) {
        let over: Vec<InstanceName> = self
            .awaiting_intents
            .iter()
            .filter(|(_, intent)| intent.until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in over {
            if let Some(intent) = self.awaiting_intents.remove(&name) {
                log::info!(
                    "{name}: an intent kept by {:?} ended before its socket could be looked \
                     at; removed",
                    intent.by
                );
                self.outbox.act(Action::RemoveIntent { name });
            }
        }
        self.time_awaiting_intents();
    }

    fn time_awaiting_intents(&mut self) {
        match self.awaiting_intents.values().map(|i| i.until).min() {
            Some(until) => self.timers.set(Timer::AwaitingIntents, until),
            None => self.timers.cancel(Timer::AwaitingIntents),
        }
    }

    /// A kept intent taken up by the instance it was given for, or dropped
    /// (its QEMU is gone, or it expired meanwhile).
    fn restore_intent(&mut self, now: Instant, name: InstanceName, intent: Intent) {
        let key = self.instances.key(&name);
        let instance = key.and_then(|key| self.instances.get(key));
        if instance.is_some_and(|i| i.intent.is_some()) {
            // Given anew while the kept one waited for a look: the file is
            // the new one's now.
            log::info!(
                "{name}: an intent kept by {:?} was given anew; dropped",
                intent.by
            );
            return;
        }
        let fits = instance.is_some_and(|i| intent_fits(i, &intent));
        // Still connecting: whether the previous run read the SHUTDOWN is
        // not known yet, and the connect decides (see `handle_connect`).
        let connecting = instance.is_some_and(|i| matches!(i.link, Link::Connecting { .. }));
        let shut_down = key.is_some_and(|key| self.shut_down(key));
        let expired = intent.state == IntentState::Waiting
            && intent.until <= now
            && !shut_down
            && !connecting;
        let (Some(key), true, false) = (key, fits, expired) else {
            let why = match (instance, expired) {
                (None, _) => "the instance is not monitored",
                (Some(_), true) => "its window ended",
                (Some(_), false) => "it was given for another QEMU",
            };
            log::info!(
                "{name}: an intent kept by {:?} no longer applies ({why}); removed",
                intent.by
            );
            self.outbox.act(Action::RemoveIntent { name });
            return;
        };
        let mut intent = intent;
        // A SHUTDOWN read by the previous run (kept with the evidence)
        // while the intent was in force claims it now.
        if shut_down && intent.state == IntentState::Waiting {
            intent.state = IntentState::Claimed;
            self.save_intent(&name, &intent);
        }
        if intent.state == IntentState::Waiting {
            // Over while connecting: the connect ends it (`expire_if_over`),
            // no timer in the past meanwhile.
            if intent.until > now {
                self.timers.set(Timer::Intent(key), intent.until);
            }
            // Connecting, it cannot be pressed before it is monitored: the
            // first try comes when a press again would.
            if intent.presses == Presses::UntilShutdown {
                let first = if connecting { now + PRESS_AGAIN } else { now };
                self.timers.set(Timer::Press(key), first);
            }
        }
        if let Some(instance) = self.instances.get_mut(key) {
            instance.intent = Some(intent);
        }
    }

    /// The key of `name`'s instance, if it is monitored.
    fn monitored(&self, name: &InstanceName) -> Result<InstanceKey, IntentRefused> {
        let key = self
            .instances
            .key(name)
            .ok_or(IntentRefused::NotMonitored)?;
        let instance = self.instances.get(key).ok_or(IntentRefused::NotMonitored)?;
        match instance.phase() {
            Phase::Monitoring => Ok(key),
            _ => Err(IntentRefused::NotYetMonitoring),
        }
    }

    /// Whether `key` may be given an intent for `window` by `by`.
    fn check_intent(
        &self,
        key: InstanceKey,
        window: Duration,
        by: &str,
    ) -> Result<(), IntentRefused> {
        if !valid_window(window) {
            return Err(IntentRefused::BadWindow(window));
        }
        if !valid_by(by) {
            return Err(IntentRefused::BadBy);
        }
        let instance = self.instances.get(key).ok_or(IntentRefused::NotMonitored)?;
        let Link::Connected(conv) = &instance.link else {
            return Err(IntentRefused::NotYetMonitoring);
        };
        if conv.evidence.first_shutdown().is_some() {
            return Err(IntentRefused::AlreadyShutDown);
        }
        Ok(())
    }

    fn give_intent(
        &mut self,
        now: Instant,
        key: InstanceKey,
        window: Duration,
        by: String,
        presses: Presses,
    ) -> Result<(), IntentRefused> {
        self.check_intent(key, window, &by)?;
        let instance = self
            .instances
            .get_mut(key)
            .ok_or(IntentRefused::NotMonitored)?;
        let Link::Connected(conv) = &instance.link else {
            return Err(IntentRefused::NotYetMonitoring);
        };
        let intent = Intent {
            by: by.clone(),
            given: now,
            until: now + window,
            socket: instance.socket,
            qemu: conv.qemu,
            state: IntentState::Waiting,
            presses,
        };
        let name = instance.name.clone();
        instance.intent = Some(intent.clone());
        self.timers.set(Timer::Intent(key), intent.until);
        // An intent that presses nothing replaces one that did (an
        // expect-stop over powerdown-all's): its presses end with it.
        if presses == Presses::None {
            self.timers.cancel(Timer::Press(key));
        }
        self.save_intent(&name, &intent);
        self.outbox.notify(Notice::IntentGiven { name, by, window });
        Ok(())
    }

    fn save_intent(&mut self, name: &InstanceName, intent: &Intent) {
        self.outbox.act(Action::SaveIntent {
            name: name.clone(),
            intent: intent.clone(),
        });
    }

    /// Presses `key`'s power button, and sets the timer to press again.
    fn press(&mut self, key: InstanceKey) -> Result<(), IntentRefused> {
        let Some(instance) = self.instances.get_mut(key) else {
            return Err(IntentRefused::NotMonitored);
        };
        let Link::Connected(conv) = &mut instance.link else {
            return Err(IntentRefused::NotYetMonitoring);
        };
        let mut sent = None;
        conv.qmp
            .execute(Command::SystemPowerdown, &mut |out| {
                if let crate::qmp::Output::Transmit(command) = out {
                    sent = Some(command);
                }
            })
            .map_err(|e| match e {
                crate::qmp::NotSent::NotNegotiated => IntentRefused::NotYetMonitoring,
                crate::qmp::NotSent::TooManyUnanswered => IntentRefused::CannotPress,
            })?;
        if let Some(command) = sent {
            self.outbox.act(Action::Transmit { key, command });
        }
        if let Some(now) = self.clock {
            self.timers.set(Timer::Press(key), now + PRESS_AGAIN);
        }
        Ok(())
    }

    /// [`Timer::Press`]: the guest has not shut down yet; press again. A
    /// QEMU that leaves a press unanswered is not pressed more (the
    /// presses are bounded by [`crate::qmp::MAX_ASKED`]).
    pub(super) fn press_due(&mut self, key: InstanceKey) {
        let waiting = self.instances.get(key).is_some_and(|i| {
            i.intent.as_ref().is_some_and(|intent| {
                intent.state == IntentState::Waiting && intent.presses == Presses::UntilShutdown
            })
        });
        if !waiting {
            return;
        }
        if let Err(e) = self.press(key) {
            // Not negotiated yet (a restarted kvmd), or QEMU has not
            // answered the last presses: tried again while the intent
            // waits (its expiry cancels this timer).
            log::debug!("power button not pressed now ({e}); again in {PRESS_AGAIN:?}");
            if let Some(now) = self.clock {
                self.timers.set(Timer::Press(key), now + PRESS_AGAIN);
            }
        }
    }

    /// [`Timer::Intent`]: a waiting intent's window is over.
    pub(super) fn intent_expired(&mut self, key: InstanceKey) {
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        if !instance
            .intent
            .as_ref()
            .is_some_and(|i| i.state == IntentState::Waiting)
        {
            return;
        }
        // An intent handed back at start-up to an instance still
        // connecting: a SHUTDOWN the previous run read within the window
        // may come back with its evidence; the connect decides.
        if matches!(instance.link, Link::Connecting { .. }) {
            return;
        }
        let Some(intent) = instance.intent.take() else {
            return;
        };
        // Set still when a connect or a SHUTDOWN ends it before its time.
        self.timers.cancel(Timer::Intent(key));
        self.timers.cancel(Timer::Press(key));
        let name = instance.name.clone();
        self.outbox.act(Action::RemoveIntent { name: name.clone() });
        self.outbox.notify(Notice::IntentExpired {
            name,
            by: intent.by,
        });
    }

    /// The first SHUTDOWN of `key`'s QEMU came: a waiting intent is
    /// claimed if its window is still open. One whose window ended expires
    /// now: its timer may not have fired yet (the daemon reads sockets
    /// before it runs due timers), and a SHUTDOWN after the window is not
    /// the one the host announced.
    pub(super) fn claim_intent(&mut self, key: InstanceKey, read: ShutdownRead) {
        let now = self.clock;
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        let Some(intent) = instance.intent.as_mut() else {
            return;
        };
        if intent.state != IntentState::Waiting {
            return;
        }
        // A SHUTDOWN an earlier run read came while the intent waited
        // there (it refuses intents after one), so within its window.
        if read == ShutdownRead::Now && now.is_some_and(|now| intent.until <= now) {
            self.intent_expired(key);
            return;
        }
        intent.state = IntentState::Claimed;
        let (name, intent) = (instance.name.clone(), intent.clone());
        self.timers.cancel(Timer::Intent(key));
        self.timers.cancel(Timer::Press(key));
        self.save_intent(&name, &intent);
    }

    /// A connection was made: an intent handed back at start-up whose
    /// window ended while it was connecting, and which no SHUTDOWN read by
    /// an earlier run claimed, expires now.
    pub(super) fn expire_if_over(&mut self, key: InstanceKey) {
        let over = self.clock.is_some_and(|now| {
            self.instances.get(key).is_some_and(|i| {
                i.intent.as_ref().is_some_and(|intent| {
                    intent.state == IntentState::Waiting && intent.until <= now
                })
            })
        });
        if over {
            self.intent_expired(key);
        }
    }

    /// A connection learned which QEMU is behind the socket: an intent
    /// (restored at start-up before it connected) for another QEMU goes.
    pub(super) fn check_intent_qemu(&mut self, key: InstanceKey) {
        let Some(instance) = self.instances.get_mut(key) else {
            return;
        };
        let fits = instance
            .intent
            .as_ref()
            .is_none_or(|intent| intent_fits(instance, intent));
        if fits {
            return;
        }
        instance.intent = None;
        let name = instance.name.clone();
        self.timers.cancel(Timer::Intent(key));
        self.timers.cancel(Timer::Press(key));
        self.outbox.act(Action::RemoveIntent { name });
    }
}

impl Instance {
    /// What the host said of this QEMU's stop, for the decision, and the
    /// intent to record with the verdict.
    pub(super) fn expected(&self) -> (Expected, Option<IntentNote>) {
        match &self.intent {
            Some(intent) if intent.state == IntentState::Claimed => (
                Expected::HostStop,
                Some(IntentNote {
                    by: intent.by.clone(),
                    given: intent.given,
                }),
            ),
            _ => (Expected::Nothing, None),
        }
    }
}

/// Whether `intent` was given for the QEMU `instance` monitors: the same
/// socket, and (once both are known) the same process.
fn intent_fits(instance: &Instance, intent: &Intent) -> bool {
    let qemu = match &instance.link {
        Link::Connected(c) => c.qemu,
        Link::Connecting { .. } => None,
    };
    instance.socket == intent.socket
        && match (qemu, intent.qemu) {
            (Some(now), Some(then)) => now == then,
            _ => true,
        }
}
