//! Benchmarks of the bridge and the baselines it is compared with.
#![forbid(unsafe_code)]
