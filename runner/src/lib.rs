//! The trading runner: configuration, the worker supervisor, the strategy and the main job.
#![forbid(unsafe_code)]

pub mod config;
pub mod job;
pub mod soak;
pub mod strategy;
pub mod supervisor;
