//! The broker worker: serves the bridge and owns the broker connection.
#![forbid(unsafe_code)]
