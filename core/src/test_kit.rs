//! What QEMU sends on a QMP socket, message by message: the copy the unit
//! tests, the benches, the load tool, the simulation and the fake peers
//! of the integration tests share (feature `test-kit`; the core's own
//! tests have it always). Transcripts made for one test only (malformed
//! or odd input, the property tests' generators, older QEMUs in the
//! simulation) stay with that test.
//!
//! Each message comes twice: as text without its line ending (`GREETING`),
//! for a peer that writes lines, and as bytes on the wire with QEMU's
//! `\r\n` (`GREETING_LINE`), for a test that hands bytes to the core.
//! [`transcript`] joins messages as QEMU sends them. The event timestamps
//! are real ones; nothing in kvmd reads them.

/// Declares each message as text and as a line on the wire.
macro_rules! messages {
    ($($(#[doc = $doc:literal])* $name:ident, $line:ident = $text:expr;)*) => {$(
        $(#[doc = $doc])*
        pub const $name: &str = $text;
        #[doc = concat!("[`", stringify!($name), "`] as on the wire, ending in `\\r\\n`.")]
        pub const $line: &[u8] = concat!($text, "\r\n").as_bytes();
    )*};
}

messages! {
    /// QEMU 7.2's greeting, the first thing it sends on every connection.
    GREETING, GREETING_LINE = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}";
    /// The same, as Debian 12 builds it (QEMU 7.2.22, its package named).
    DEBIAN_12_GREETING, DEBIAN_12_GREETING_LINE = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18\"}, \"capabilities\": [\"oob\"]}}";
    /// The success reply to `qmp_capabilities` (and to most commands).
    RETURN, RETURN_LINE = "{\"return\": {}}";
    /// The reply to `query-status` for a running guest.
    STATUS_RUNNING, STATUS_RUNNING_LINE = "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}";
    /// What QEMU says when a command is refused.
    ERROR, ERROR_LINE = "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command qmp_capabilities has not been found\"}}";
    /// The guest powered itself off: the one user shutdown.
    USER_OFF, USER_OFF_LINE = "{\"timestamp\": {\"seconds\": 1795526782, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}";
    /// QMP `quit` by the host: not a user shutdown.
    HOST_QUIT, HOST_QUIT_LINE = "{\"timestamp\": {\"seconds\": 1795526782, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}";
    /// The administrator's ACPI power button.
    POWERDOWN, POWERDOWN_LINE = "{\"timestamp\": {\"seconds\": 1795526781, \"microseconds\": 1}, \"event\": \"POWERDOWN\"}";
    /// The guest rebooted (QEMU runs on).
    RESET, RESET_LINE = "{\"timestamp\": {\"seconds\": 1795526780, \"microseconds\": 400293}, \"event\": \"RESET\", \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}";
    /// The host paused the guest.
    STOP, STOP_LINE = "{\"timestamp\": {\"seconds\": 1795526783, \"microseconds\": 3}, \"event\": \"STOP\"}";
    /// The guest runs again.
    RESUME, RESUME_LINE = "{\"timestamp\": {\"seconds\": 1795526784, \"microseconds\": 4}, \"event\": \"RESUME\"}";
    /// An event the decision ignores (QEMU throttles these; a peer need not).
    RTC_CHANGE, RTC_CHANGE_LINE = "{\"timestamp\": {\"seconds\": 1795526785, \"microseconds\": 5}, \"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 0, \"qom-path\": \"/machine/unattached/device[8]/rtc\"}}";
}

/// Everything QEMU sends in a negotiation, in order: greeting, the reply
/// to `qmp_capabilities`, the reply to `query-status` (running). A peer
/// may send these without reading kvmd's commands: the replies are
/// matched by the conversation's state, not by the command read.
pub const NEGOTIATION: [&str; 3] = [GREETING, RETURN, STATUS_RUNNING];

/// `messages`, each followed by `\r\n`, as one byte string.
pub fn transcript(messages: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        bytes.extend_from_slice(message.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_one_json_object_and_its_line_ends_as_qemu_ends_it() {
        for (text, line) in [
            (GREETING, GREETING_LINE),
            (DEBIAN_12_GREETING, DEBIAN_12_GREETING_LINE),
            (RETURN, RETURN_LINE),
            (STATUS_RUNNING, STATUS_RUNNING_LINE),
            (ERROR, ERROR_LINE),
            (USER_OFF, USER_OFF_LINE),
            (HOST_QUIT, HOST_QUIT_LINE),
            (POWERDOWN, POWERDOWN_LINE),
            (RESET, RESET_LINE),
            (STOP, STOP_LINE),
            (RESUME, RESUME_LINE),
            (RTC_CHANGE, RTC_CHANGE_LINE),
        ] {
            let value: serde_json::Value = serde_json::from_str(text).expect(text);
            assert!(value.is_object(), "{text}");
            assert_eq!(line, transcript(&[text]).as_slice());
        }
    }
}
