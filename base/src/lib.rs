//! Small helpers that every crate of the workspace may use, with no dependencies: the wall
//! clock and UTC calendar arithmetic ([`unix_time`]), deterministic pseudo-random numbers
//! ([`random`]), and signals to processes ([`signal`]).
//!
//! Invariants: nothing here knows of the bridge, the worker or the runner; every function is
//! safe code (signals are sent by the `kill` command, not a system call of our own).
#![forbid(unsafe_code)]

pub mod random;
pub mod signal;
pub mod unix_time;
