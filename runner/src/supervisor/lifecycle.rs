//! Where a supervisor is in its life ([`Life`]): idle, starting a worker, shutting down while a
//! start is under way, stopped, or given up. One value, kept under the supervisor's state lock, changed
//! only by the named transitions below; the supervisor's condition variable wakes whoever
//! waits for a change (a start to finish, a backoff to be cut short, a shutdown to complete).
//!
//! Invariants: at most one start (the first worker, or a replacement with its backoff) is
//! under way at a time, and only the thread that [claimed](Life::claim) it moves it on; once
//! shut down, no start is granted again; a start under way when the supervisor shuts down is
//! told so at each of its steps, and the supervisor is [`Life::Stopped`] only after it ended;
//! given up is for good and keeps its reason, through a shutdown that came before or after it.

use super::error::SupervisorError;

/// Where the supervisor is in its life; `W` is the worker being started (a bridge client).
#[derive(Debug)]
pub(super) enum Life<W> {
    /// No start under way; a worker is started when one is needed.
    Idle,
    /// One thread is starting a worker (the first, or a replacement, backoff included); others
    /// that need one wait for it. `worker`: the one it started, while it connects (shutting
    /// down closes it, which makes its connect fail at once). `awaited`: whether a shutdown
    /// waits for this start to end (a replacement's; the first start's caller learns of the
    /// shutdown from its result instead).
    Starting { worker: Option<W>, awaited: bool },
    /// Shut down while a start was under way: that start stops the worker it started, then
    /// the supervisor is stopped.
    ShuttingDown,
    /// Shut down: no worker runs, none is started.
    Stopped,
    /// Too many workers died within the restart window: none is started again, for `why`;
    /// `shut_down`: the supervisor was shut down too (before or after).
    GaveUp {
        why: SupervisorError,
        shut_down: bool,
    },
}

/// What [`Life::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claimed {
    /// The start is this thread's.
    Granted,
    /// Another start is under way: wait for a change and claim again.
    Wait,
    /// Shut down, or given up: no start.
    Stopped,
}

impl<W: Clone> Life<W> {
    /// Whether the supervisor was shut down (a start may still be ending).
    pub(super) fn is_shut_down(&self) -> bool {
        matches!(
            self,
            Life::ShuttingDown
                | Life::Stopped
                | Life::GaveUp {
                    shut_down: true,
                    ..
                }
        )
    }

    /// Why the supervisor gave up, if it did.
    pub(super) fn gave_up(&self) -> Option<&SupervisorError> {
        match self {
            Life::GaveUp { why, .. } => Some(why),
            _ => None,
        }
    }

    /// Idle → starting: the next start is this thread's, unless another is under way or the
    /// supervisor was shut down; `awaited`: a shutdown waits for it to end.
    pub(super) fn claim(&mut self, awaited: bool) -> Claimed {
        match self {
            Life::Idle => {
                *self = Life::Starting {
                    worker: None,
                    awaited,
                };
                Claimed::Granted
            }
            Life::Starting { .. } => Claimed::Wait,
            Life::ShuttingDown | Life::Stopped | Life::GaveUp { .. } => Claimed::Stopped,
        }
    }

    /// The start under way spawned `worker`, which now connects; `false` if the supervisor was
    /// shut down meanwhile (the worker must be stopped, not connected).
    pub(super) fn spawned(&mut self, worker: W) -> bool {
        match self {
            Life::Starting { worker: slot, .. } => {
                *slot = Some(worker);
                true
            }
            _ => false,
        }
    }

    /// The worker of the start under way connected or failed: shutting down no longer closes
    /// it. Whether the supervisor is still up.
    pub(super) fn connected(&mut self) -> bool {
        match self {
            Life::Starting { worker, .. } => {
                *worker = None;
                true
            }
            _ => false,
        }
    }

    /// The start under way gave up, for `why`: starting → given up; shutting down → given up
    /// and shut down (a start gives up only between its attempts, when any worker it spawned
    /// was already stopped: nothing is left to wait for).
    pub(super) fn give_up(&mut self, why: SupervisorError) {
        match self {
            Life::Starting { .. } => {
                *self = Life::GaveUp {
                    why,
                    shut_down: false,
                }
            }
            Life::ShuttingDown => {
                *self = Life::GaveUp {
                    why,
                    shut_down: true,
                }
            }
            Life::Idle | Life::Stopped | Life::GaveUp { .. } => {}
        }
    }

    /// The start under way ended: starting → idle, shutting down → stopped.
    pub(super) fn release(&mut self) {
        match self {
            Life::Starting { .. } => *self = Life::Idle,
            Life::ShuttingDown => *self = Life::Stopped,
            Life::Idle | Life::Stopped | Life::GaveUp { .. } => {}
        }
    }

    /// Shuts down: stopped at once unless an awaited start is under way, else shutting down
    /// until it ends; given up stays so. Returns the worker being started, to close, if there
    /// is one.
    pub(super) fn shut_down(&mut self) -> Option<W> {
        match std::mem::replace(self, Life::Stopped) {
            Life::Idle | Life::Stopped => None,
            Life::GaveUp { why, .. } => {
                *self = Life::GaveUp {
                    why,
                    shut_down: true,
                };
                None
            }
            Life::Starting { worker, awaited } => {
                if awaited {
                    *self = Life::ShuttingDown;
                }
                worker
            }
            Life::ShuttingDown => {
                *self = Life::ShuttingDown;
                None
            }
        }
    }

    /// Whether a start under way must still end before the shutdown is complete.
    pub(super) fn shutdown_waits(&self) -> bool {
        matches!(self, Life::ShuttingDown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_start_at_a_time_and_none_after_shutdown() {
        let mut life: Life<u32> = Life::Idle;
        assert_eq!(life.claim(true), Claimed::Granted);
        assert_eq!(life.claim(true), Claimed::Wait, "another start waits");
        assert!(life.spawned(7));
        assert!(life.connected());
        life.release();
        assert!(matches!(life, Life::Idle));
        assert_eq!(life.shut_down(), None);
        assert!(life.is_shut_down());
        assert!(!life.shutdown_waits());
        assert_eq!(life.claim(true), Claimed::Stopped);
    }

    #[test]
    fn a_shutdown_cuts_a_start_short_and_waits_for_it() {
        let mut life: Life<u32> = Life::Idle;
        assert_eq!(life.claim(true), Claimed::Granted);
        assert!(life.spawned(7));
        assert_eq!(
            life.shut_down(),
            Some(7),
            "the worker being started is closed"
        );
        assert!(life.shutdown_waits());
        assert!(!life.connected(), "the start learns it was shut down");
        assert_eq!(life.shut_down(), None, "a second shutdown closes nothing");
        life.release();
        assert!(matches!(life, Life::Stopped));
        assert!(!life.shutdown_waits());
    }

    #[test]
    fn a_shutdown_before_the_spawn_refuses_the_worker() {
        let mut life: Life<u32> = Life::Idle;
        assert_eq!(life.claim(true), Claimed::Granted);
        assert_eq!(life.shut_down(), None);
        assert!(!life.spawned(7));
        life.release();
        assert!(matches!(life, Life::Stopped));
    }

    #[test]
    fn a_shutdown_does_not_wait_for_the_first_start() {
        let mut life: Life<u32> = Life::Idle;
        assert_eq!(life.claim(false), Claimed::Granted);
        assert!(life.spawned(7));
        assert_eq!(life.shut_down(), Some(7));
        assert!(!life.shutdown_waits());
        assert!(!life.connected(), "the first start learns it was shut down");
        life.release();
        assert!(matches!(life, Life::Stopped));
    }

    #[test]
    fn giving_up_is_for_good_and_keeps_its_reason_through_a_shutdown() {
        let mut life: Life<u32> = Life::Idle;
        assert_eq!(life.claim(true), Claimed::Granted);
        life.give_up(SupervisorError::Stopped);
        life.release();
        assert!(matches!(life.gave_up(), Some(SupervisorError::Stopped)));
        assert_eq!(
            life.claim(true),
            Claimed::Stopped,
            "no start after giving up"
        );
        assert!(!life.is_shut_down());
        assert_eq!(life.shut_down(), None);
        assert!(!life.shutdown_waits());
        assert!(life.is_shut_down());
        assert!(
            life.gave_up().is_some(),
            "the reason stays after a shutdown"
        );
        // Given up while a shutdown waited for the start: the reason is kept, and the
        // shutdown waits no more.
        let mut life: Life<u32> = Life::Idle;
        assert_eq!(life.claim(true), Claimed::Granted);
        assert_eq!(life.shut_down(), None);
        assert!(life.shutdown_waits());
        life.give_up(SupervisorError::Stopped);
        assert!(!life.shutdown_waits());
        life.release();
        assert!(life.is_shut_down());
        assert!(life.gave_up().is_some());
    }
}
