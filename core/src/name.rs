//! Instance names and every file name derived from one.
//!
//! This module owns the naming contract with Ganeti: QEMU's socket for the
//! daemon is `<instance>.kvmd`, the verdict is `<instance>.shutdown`, both
//! in the control directory; kvmd's own evidence file is
//! `<instance>.state` (written through `<instance>.new`) in the state
//! directory. It also owns the limit on a name's length, and the escaped
//! form used in log lines, so a hostile name cannot forge or break a line.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The longest file name Linux file systems take.
pub const NAME_MAX: usize = 255;

const SOCKET_SUFFIX: &[u8] = b".kvmd";
const SHUTDOWN_SUFFIX: &[u8] = b".shutdown";
const STATE_SUFFIX: &[u8] = b".state";
const HOOK_SUFFIX: &[u8] = b".hook";
const INTENT_SUFFIX: &[u8] = b".intent";
const TEMPORARY_SUFFIX: &[u8] = b".new";

/// An instance's name: the non-empty stem of its socket `<instance>.kvmd`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName(OsString);

impl InstanceName {
    /// The instance a control-directory entry belongs to, if it is named
    /// like a daemon socket (`<instance>.kvmd`, with a non-empty instance).
    pub fn from_socket_file(file_name: &OsStr) -> Option<InstanceName> {
        Self::with_suffix(file_name, SOCKET_SUFFIX)
    }

    /// The instance a state-directory entry belongs to (`<instance>.state`).
    pub fn from_state_file(file_name: &OsStr) -> Option<InstanceName> {
        Self::with_suffix(file_name, STATE_SUFFIX)
    }

    /// The instance an intent file belongs to (`<instance>.intent`).
    pub fn from_intent_file(file_name: &OsStr) -> Option<InstanceName> {
        Self::with_suffix(file_name, INTENT_SUFFIX)
    }

    /// `<instance>.intent`: the host's intent to stop it (state directory).
    pub fn intent_file(&self) -> OsString {
        self.file(INTENT_SUFFIX)
    }

    /// The instance a hook file belongs to (`<instance>.hook`).
    pub fn from_hook_file(file_name: &OsStr) -> Option<InstanceName> {
        Self::with_suffix(file_name, HOOK_SUFFIX)
    }

    /// An instance named `name` (not empty, no `/`).
    pub fn new(name: &OsStr) -> Option<InstanceName> {
        let bytes = name.as_bytes();
        (!bytes.is_empty() && !bytes.contains(&b'/')).then(|| InstanceName(name.to_owned()))
    }

    fn with_suffix(file_name: &OsStr, suffix: &[u8]) -> Option<InstanceName> {
        let stem = file_name.as_bytes().strip_suffix(suffix)?;
        InstanceName::new(OsStr::from_bytes(stem))
    }

    /// The name as given (the socket's file name without `.kvmd`).
    pub fn as_os_str(&self) -> &OsStr {
        &self.0
    }

    fn file(&self, suffix: &[u8]) -> OsString {
        let mut name = Vec::with_capacity(self.0.len() + suffix.len());
        name.extend_from_slice(self.0.as_bytes());
        name.extend_from_slice(suffix);
        OsString::from_vec(name)
    }

    /// `<instance>.kvmd`: QEMU's QMP socket for the daemon.
    pub fn socket_file(&self) -> OsString {
        self.file(SOCKET_SUFFIX)
    }

    /// `<instance>.shutdown`: the verdict Ganeti reads.
    pub fn shutdown_file(&self) -> OsString {
        self.file(SHUTDOWN_SUFFIX)
    }

    /// `<instance>.state`: evidence kept across a daemon restart.
    pub fn state_file(&self) -> OsString {
        self.file(STATE_SUFFIX)
    }

    /// `<instance>.hook`: verdict hooks not finished yet (state directory).
    pub fn hook_file(&self) -> OsString {
        self.file(HOOK_SUFFIX)
    }

    /// `<instance>.new`: a state file being written. No longer than the
    /// shutdown file's name, so it fits whenever [`Self::fits`].
    pub fn temporary_state_file(&self) -> OsString {
        self.file(TEMPORARY_SUFFIX)
    }

    /// Whether every file of this instance can exist: the longest,
    /// `<instance>.shutdown`, is 4 bytes longer than the socket's name, so
    /// a socket may exist whose verdict could never be written.
    pub fn fits(&self) -> bool {
        self.0.len() + SHUTDOWN_SUFFIX.len() <= NAME_MAX
    }

    /// The shutdown file's name, escaped for a log line.
    pub fn shutdown_file_shown(&self) -> Shown<'_> {
        Shown(self, SHUTDOWN_SUFFIX)
    }

    /// The socket file's name, escaped for a log line.
    pub fn socket_file_shown(&self) -> Shown<'_> {
        Shown(self, SOCKET_SUFFIX)
    }
}

/// The instance's name as log lines show it: escaped (`new\nline`,
/// `vm\xff`), so every line stays one well-formed line.
impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_bytes().escape_ascii())
    }
}

/// One of an instance's file names, escaped for a log line.
pub struct Shown<'a>(&'a InstanceName, &'static [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0, self.1.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> InstanceName {
        InstanceName::new(OsStr::new(s)).expect("a valid name")
    }

    /// The shutdown file for a socket name, if it can exist (moved here
    /// from shutdown_file.rs with its test).
    fn file_for(socket: &OsStr) -> Option<OsString> {
        let name = InstanceName::from_socket_file(socket)?;
        name.fits().then(|| name.shutdown_file())
    }

    #[test]
    fn names() {
        assert_eq!(
            file_for(OsStr::new("vm1.example.com.kvmd")),
            Some(OsString::from("vm1.example.com.shutdown"))
        );
        assert_eq!(file_for(OsStr::new(".kvmd")), None);
        let longest = OsString::from(format!("{}.kvmd", "x".repeat(246)));
        assert_eq!(file_for(&longest).map(|f| f.len()), Some(255));
        let too_long = OsString::from(format!("{}.kvmd", "x".repeat(247)));
        assert_eq!(file_for(&too_long), None);
    }

    #[test]
    fn parses_socket_and_state_names() {
        let vm = InstanceName::from_socket_file(OsStr::new("vm1.kvmd"));
        assert_eq!(vm, Some(name("vm1")));
        assert_eq!(
            InstanceName::from_state_file(OsStr::new("vm1.state")),
            Some(name("vm1"))
        );
        for not_ours in [".kvmd", "vm1.qmp", "vm1.kvmd.x", "kvmd", ""] {
            assert_eq!(
                InstanceName::from_socket_file(OsStr::new(not_ours)),
                None,
                "{not_ours}"
            );
        }
        assert_eq!(InstanceName::new(OsStr::new("a/b")), None);
    }

    #[test]
    fn derives_every_file_name() {
        let vm = name("vm1");
        assert_eq!(vm.socket_file(), "vm1.kvmd");
        assert_eq!(vm.shutdown_file(), "vm1.shutdown");
        assert_eq!(vm.state_file(), "vm1.state");
        assert_eq!(vm.temporary_state_file(), "vm1.new");
    }

    #[test]
    fn the_shutdown_file_must_fit_name_max() {
        let longest = "x".repeat(NAME_MAX - ".shutdown".len());
        assert!(name(&longest).fits());
        assert_eq!(name(&longest).shutdown_file().len(), NAME_MAX);
        let socket_fits = format!("{longest}xxxx");
        assert_eq!(socket_fits.len() + ".kvmd".len(), NAME_MAX);
        assert!(!name(&socket_fits).fits());
    }

    #[test]
    fn log_form_is_escaped() {
        let hostile = InstanceName::from_socket_file(OsStr::from_bytes(b"new\nline\xff.kvmd"))
            .expect("any bytes but / are a name");
        assert_eq!(hostile.to_string(), "new\\nline\\xff");
        assert_eq!(
            hostile.shutdown_file_shown().to_string(),
            "new\\nline\\xff.shutdown"
        );
    }
}
