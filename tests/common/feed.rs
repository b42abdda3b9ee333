//! Driving one `kvmd_core::qmp::Connection` with a stream cut into reads, as
//! the daemon does, with the memory bound checked all along.
//!
//! Shared by `tests/qmp_properties.rs` (proptest) and the libFuzzer target
//! in `contrib/fuzz` (a crate of its own), which include this file with
//! `#[path = ...] mod feed;`: it depends on nothing but `kvmd-core`.

use kvmd_core::qmp::{Connection, MAX_LINE, Output};

/// Feeds `stream` to a new connection in reads whose sizes cycle through
/// `sizes` (all of it at once when `sizes` is empty), then hangs up, as
/// the daemon does; every output goes to `sink`, in order. Checks that at
/// most `MAX_LINE` bytes are held after every read, none once a stream
/// that ends in a newline is in, and none after EOF. Every problem is
/// also rendered, as the daemon's log lines do: `Display` must not panic
/// on whatever the peer sent either.
pub fn feed_in_reads<F>(stream: &[u8], sizes: &[usize], sink: &mut F)
where
    F: FnMut(Output<'_>),
{
    let mut conn = Connection::new();
    let mut out = |out: Output<'_>| {
        if let Output::Problem(problem) = &out {
            let _ = problem.to_string();
        }
        sink(out);
    };
    let mut rest = stream;
    let mut sizes = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        conn.handle_bytes(chunk, &mut out);
        assert!(
            conn.buffered() <= MAX_LINE,
            "buffered {} > MAX_LINE after a chunk of {n}",
            conn.buffered()
        );
    }
    if stream.ends_with(b"\n") {
        assert_eq!(conn.buffered(), 0, "a complete line stayed buffered");
    }
    conn.handle_eof(&mut out);
    assert_eq!(conn.buffered(), 0, "bytes left buffered after EOF");
}
