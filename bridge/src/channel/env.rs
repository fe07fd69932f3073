//! The environment a runner hands the worker it starts: the names of the variables that
//! carry the segment's name and the runner's pid.
//!
//! Invariants: set by [`spawn`](super::spawn) on the worker's command, read by
//! [`attach`](super::attach); nothing else in the environment is part of the connection.

#![forbid(unsafe_code)]

/// Environment variable that carries the segment to the worker: on Linux `fd:<number>`, the
/// descriptor of the sealed memory it inherited; elsewhere the segment's name.
pub const ENV_SEGMENT: &str = "IBBRIDGE_SEGMENT";
/// Environment variable that carries the runner's pid to the worker.
pub const ENV_PARENT_PID: &str = "IBBRIDGE_PARENT_PID";
