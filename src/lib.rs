//! kvmd: tells, for every QEMU/KVM guest on a node, whether its user shut
//! it down from inside or the host stopped it, and records the answer as
//! `<instance>.shutdown` in the control directory (Ganeti's contract).
//!
//! The protocol core ([`qmp`]) and the rule ([`decision`]) are pure; the
//! event loop ([`daemon`]) owns every descriptor.

pub mod decision;
pub mod qmp;
