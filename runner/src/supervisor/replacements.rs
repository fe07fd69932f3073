//! The supervisor's record of the workers it replaced ([`Replacements`]): when, which
//! generation took over, and why the old one went, for whoever shows the run's health.
//!
//! Invariants: at most [`REPLACEMENTS_KEPT`] are kept, the most recent, oldest first.

use std::collections::VecDeque;

/// Replacements of a worker remembered.
pub const REPLACEMENTS_KEPT: usize = 64;

/// A worker replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The generation that took over (the first worker is 0).
    pub generation: u32,
    /// Why the old one went, in words.
    pub reason: String,
}

/// The most recent replacements.
#[derive(Debug, Default)]
pub(crate) struct Replacements {
    kept: VecDeque<Replacement>,
}

impl Replacements {
    /// Records `r`, forgetting the oldest beyond [`REPLACEMENTS_KEPT`].
    pub(crate) fn record(&mut self, r: Replacement) {
        if self.kept.len() == REPLACEMENTS_KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(r);
    }

    /// What is kept, oldest first.
    pub(crate) fn list(&self) -> Vec<Replacement> {
        self.kept.iter().cloned().collect()
    }
}
