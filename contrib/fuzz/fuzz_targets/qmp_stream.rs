//! One QMP connection fed whatever libFuzzer makes, cut as libFuzzer says.
//!
//! Input: the low 4 bits of the first byte say how many chunk-size bytes
//! follow (0: the stream comes in one read); each size byte `s` is a read
//! of `s + 1` bytes, cycled; the rest is the stream. The same stream is
//! also fed whole, and both runs must agree.
//!
//! Checked: no panic (release builds abort on one, taking every guest's
//! monitor down), at most `MAX_LINE` bytes held after every read, nothing
//! held once a stream that ends in a newline is in nor after EOF, and the
//! same events, evidence and verdict whichever way the stream was cut.
//! Every problem is rendered as the daemon logs it. The feeding and its
//! checks are `tests/common/feed.rs`, shared with `tests/qmp_properties.rs`.

#![no_main]

use kvmd_core::decision::{Evidence, Verdict, decide};
use kvmd_core::qmp::{Event, Output};
use libfuzzer_sys::fuzz_target;

#[path = "../../../tests/common/feed.rs"]
mod feed;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(head & 0x0f).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();

    let cut = feed(stream, &sizes);
    let whole = feed(stream, &[]);
    assert_eq!(cut, whole, "the cuts changed the outcome");
});

/// Feeds `stream` in reads of `sizes` (cycled; all at once if empty), then
/// hangs up; returns the events, the evidence and the verdict.
fn feed(stream: &[u8], sizes: &[usize]) -> (Vec<Event>, Evidence, Verdict) {
    let mut events = Vec::new();
    let mut evidence = Evidence::new();
    feed::feed_in_reads(stream, sizes, &mut |out: Output<'_>| {
        if let Output::Event(event) = out {
            events.push(event);
            evidence.record(event);
        }
    });
    let verdict = decide(&evidence);
    let _ = format!("{verdict} [{evidence}]");
    (events, evidence, verdict)
}
