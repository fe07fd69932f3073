//! A session's life as one value ([`Lifecycle`]) with named transitions:
//!
//! ```text
//! Idle ──claim_connect──▶ Connecting ──connected──▶ Connected
//!  ▲                          │ (connect_failed)        │
//!  └──────────────────────────┘                         │
//! Idle, Connecting, Connected ──begin_close──▶ Closing ──finish_close──▶ Closed
//! any ──forget (a forked child)──▶ Forgotten
//! ```
//!
//! Invariants: the state and what it holds (the supervisor of a connect under way, the
//! connected worker) change together, under one lock, and every change wakes the calls that
//! wait on one (a connect waits out another connect, a close waits out another close); one
//! connect at a time owns `Connecting`, and only it moves the session out of it, unless a
//! close takes it first (the connect then finds `Closing` or `Closed` and stops what it
//! started, so that no worker outlives the close); a close never goes back, and `Closed` is
//! set only once everything of the session is stopped. The phase is also kept in an atomic,
//! read without the lock; `Forgotten` is written only there, without the lock: in a child
//! made by `os.fork` the lock may be held by a thread of the parent's, which does not exist
//! there, so nothing of a forgotten session ever takes it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, MutexGuard};
use runner::supervisor::Supervisor;
use runner::worker_setup::RunJournal;

use crate::failure::Failure;

/// A connected session's worker: its supervisor, the pump of its live bars, and the journal
/// of its simulated orders (removed when dropped).
pub(super) struct Serving {
    pub(super) sup: Arc<Supervisor>,
    pub(super) pump: JoinHandle<()>,
    pub(super) journal: RunJournal,
}

impl Serving {
    /// Stops the worker, then waits for the pump to end the stream; the journal goes last.
    pub(super) fn stop(self) {
        self.sup.shutdown();
        let _ = self.pump.join();
        drop(self.journal);
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// Not connected (never, or a connect failed).
    Idle,
    /// A connect is under way.
    Connecting,
    /// A worker serves the session.
    Connected,
    /// A close is under way.
    Closing,
    /// Closed: no worker of the session runs.
    Closed,
    /// Inherited by a forked child: nothing of it is used or closed there.
    Forgotten,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Idle,
            1 => Phase::Connecting,
            2 => Phase::Connected,
            3 => Phase::Closing,
            4 => Phase::Closed,
            _ => Phase::Forgotten,
        }
    }
}

/// The phase and what it holds.
enum State {
    Idle,
    /// The connect's supervisor, once it has begun one: a close shuts it down.
    Connecting(Option<Arc<Supervisor>>),
    Connected(Serving),
    Closing,
    Closed,
}

impl State {
    fn phase(&self) -> Phase {
        match self {
            State::Idle => Phase::Idle,
            State::Connecting(_) => Phase::Connecting,
            State::Connected(_) => Phase::Connected,
            State::Closing => Phase::Closing,
            State::Closed => Phase::Closed,
        }
    }
}

/// What [`Lifecycle::claim_connect`] found.
pub(super) enum ConnectClaim {
    /// The session was idle and is now `Connecting`: the caller connects it, and ends with
    /// [`Lifecycle::connected`] or [`Lifecycle::connect_failed`].
    Connect,
    /// Already connected, to this supervisor.
    Connected(Arc<Supervisor>),
}

/// What [`Lifecycle::begin_close`] handed over to be stopped.
pub(super) enum ToStop {
    /// Nothing runs (never connected, or a connect has not begun its supervisor yet).
    Nothing,
    /// The supervisor of a connect under way.
    Starting(Arc<Supervisor>),
    /// The connected worker.
    Connected(Serving),
}

/// A session's lifecycle: one state, its transitions, and the waits on them.
pub(super) struct Lifecycle {
    /// The state's phase, for readers without the lock: written under it, but for
    /// `Forgotten`, which is written without it and never overwritten.
    phase: AtomicU8,
    state: Mutex<State>,
    /// Notified on every change of `state`.
    changed: Condvar,
}

impl Lifecycle {
    pub(super) fn new() -> Lifecycle {
        Lifecycle {
            phase: AtomicU8::new(Phase::Idle as u8),
            state: Mutex::new(State::Idle),
            changed: Condvar::new(),
        }
    }

    /// The phase, read without the lock.
    pub(super) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Whether a close has begun (or is done).
    pub(super) fn is_closed(&self) -> bool {
        matches!(self.phase(), Phase::Closing | Phase::Closed)
    }

    /// Whether the session was inherited by a forked child.
    pub(super) fn is_forgotten(&self) -> bool {
        self.phase() == Phase::Forgotten
    }

    /// Refuses a session inherited by a forked child; without the lock.
    pub(super) fn not_forgotten(&self) -> Result<(), Failure> {
        match self.is_forgotten() {
            true => Err(Failure::forgotten()),
            false => Ok(()),
        }
    }

    /// Refuses a session closed (or being closed, or the interpreter exiting) or forgotten;
    /// without the lock.
    fn open(&self) -> Result<(), Failure> {
        if self.is_closed() || crate::interpreter::exiting() {
            return Err(Failure::closed());
        }
        self.not_forgotten()
    }

    /// The connected worker's supervisor.
    pub(super) fn supervisor(&self) -> Result<Arc<Supervisor>, Failure> {
        self.open()?;
        match &*self.state.lock() {
            State::Connected(c) => Ok(c.sup.clone()),
            _ => Err(Failure::not_connected()),
        }
    }

    /// A connect's first step: waits out another connect under way, then refuses a closed
    /// or forgotten session, gives the supervisor of a connected one, or moves an idle one to
    /// `Connecting`, owned by the caller.
    pub(super) fn claim_connect(&self) -> Result<ConnectClaim, Failure> {
        self.open()?;
        let mut st = self.state.lock();
        loop {
            self.open()?;
            match &*st {
                State::Connecting(_) => self.changed.wait(&mut st),
                State::Connected(c) => return Ok(ConnectClaim::Connected(c.sup.clone())),
                State::Closing | State::Closed => return Err(Failure::closed()),
                State::Idle => {
                    self.set(&mut st, State::Connecting(None));
                    return Ok(ConnectClaim::Connect);
                }
            }
        }
    }

    /// The connect under way has begun `sup`: from here a close shuts it down. Refused if
    /// the session closed meanwhile (`sup` has started nothing yet).
    pub(super) fn started(&self, sup: &Arc<Supervisor>) -> Result<(), Failure> {
        match &mut *self.state.lock() {
            State::Connecting(slot) => {
                *slot = Some(sup.clone());
                Ok(())
            }
            _ => Err(Failure::closed()),
        }
    }

    /// `Connecting` -> `Connected`. Gives `c` back if the session closed meanwhile (the close
    /// shut its supervisor down, but found nothing else of it): the caller stops it.
    pub(super) fn connected(&self, c: Serving) -> Result<(), Serving> {
        let mut st = self.state.lock();
        match &*st {
            State::Connecting(_) => {
                self.set(&mut st, State::Connected(c));
                Ok(())
            }
            _ => Err(c),
        }
    }

    /// A connect failed: `Connecting` -> `Idle` (the next connect tries again), unless the
    /// session closed meanwhile.
    pub(super) fn connect_failed(&self) {
        let mut st = self.state.lock();
        if let State::Connecting(_) = &*st {
            self.set(&mut st, State::Idle);
        }
    }

    /// A close's first step: moves the session to `Closing` and hands over what runs, to be
    /// stopped; `None` (nothing to do) if the session is forgotten or closed, once a close
    /// under way elsewhere is done.
    pub(super) fn begin_close(&self) -> Option<ToStop> {
        if self.is_forgotten() {
            return None;
        }
        let mut st = self.state.lock();
        loop {
            let stop = match std::mem::replace(&mut *st, State::Closing) {
                State::Idle => ToStop::Nothing,
                State::Connecting(None) => ToStop::Nothing,
                State::Connecting(Some(sup)) => ToStop::Starting(sup),
                State::Connected(c) => ToStop::Connected(c),
                // Left as it was: closing (waited for) or closed.
                State::Closing => {
                    self.changed.wait(&mut st);
                    continue;
                }
                State::Closed => {
                    *st = State::Closed;
                    return None;
                }
            };
            self.set(&mut st, State::Closing);
            return Some(stop);
        }
    }

    /// `Closing` -> `Closed`: everything of the session is stopped.
    pub(super) fn finish_close(&self) {
        let mut st = self.state.lock();
        self.set(&mut st, State::Closed);
    }

    /// In a forked child: the session is the parent's. Whether it was not forgotten already.
    pub(super) fn forget(&self) -> bool {
        // Without the lock: a thread of the parent's may have held it at the fork.
        self.phase.swap(Phase::Forgotten as u8, Ordering::AcqRel) != Phase::Forgotten as u8
    }

    /// Shuts the connected worker's supervisor down where no close can run.
    pub(super) fn shutdown_now(&self) {
        if let State::Connected(c) = &*self.state.lock() {
            c.sup.shutdown();
        }
    }

    fn set(&self, st: &mut MutexGuard<'_, State>, new: State) {
        **st = new;
        let phase = st.phase() as u8;
        let forgotten = Phase::Forgotten as u8;
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p != forgotten).then_some(phase)
            });
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests;
