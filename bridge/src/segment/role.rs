//! Which of the two processes a value belongs to: the runner, which creates the segment, or
//! the worker it starts. (Named a role, not a side, so as not to be confused with an order's
//! side in the protocol.)
//!
//! Invariants: a role's index is 0 for the runner and 1 for the worker, everywhere (header
//! blocks, the take-once claims); the runner writes ring 0 and reads ring 1, the worker the
//! opposite.

#![forbid(unsafe_code)]

/// Which process a value belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The process that created the segment and started the worker.
    Runner,
    /// The process started by the runner.
    Worker,
}

impl Role {
    /// The other role.
    pub fn peer(self) -> Role {
        match self {
            Role::Runner => Role::Worker,
            Role::Worker => Role::Runner,
        }
    }

    /// 0 for the runner, 1 for the worker.
    pub(super) fn index(self) -> usize {
        match self {
            Role::Runner => 0,
            Role::Worker => 1,
        }
    }

    /// The rings this role (producer, consumer) uses: the runner writes ring 0 and reads ring
    /// 1, the worker the opposite.
    pub(super) fn rings(self) -> (usize, usize) {
        match self {
            Role::Runner => (0, 1),
            Role::Worker => (1, 0),
        }
    }
}
