//! What a session's run tells beside the strategy ([`Observer`]), and the observer that
//! does nothing ([`Unobserved`]).
//!
//! Invariants: an observer sees a symbol's history once, before any of its live bars, and
//! each live bar once, in time order, after the strategy saw it; each report of a fill of
//! the run (the first one once); an error it returns ends the run with that error. Its calls are on the live loop: an
//! observer that waits holds the next bar up.

use anyhow::Result;
use bridge::protocol::{Bar, Event, Fill, OrderReport};

use super::report::NoHistory;
use crate::strategy::Signal;

/// What a run tells beside the strategy: the history before it is cut to the strategy's
/// window, each live bar with the signal and order it led to, and every other event (the
/// broker connection, notices, refusals). The `runner` binary's signals file and summary are
/// an observer; by default nothing is done.
pub trait Observer {
    /// A symbol's whole history, before only the strategy's window of it is kept.
    fn on_history(&mut self, _symbol: &str, _bars: &[Bar]) -> Result<()> {
        Ok(())
    }

    /// A live bar was added to `symbol` (`bars`: its most recent ones), the strategy said
    /// `signal`, and `order` is the reference of the order that placed, if any.
    fn on_live_bar(
        &mut self,
        _symbol: &str,
        _bars: &[Bar],
        _signal: Signal,
        _order: Option<&str>,
    ) -> Result<()> {
        Ok(())
    }

    /// An order of the run changed (placed on a signal, or reported by the broker):
    /// `report` is the run's book's view of it after the change.
    fn on_order(&mut self, _report: &OrderReport) {}

    /// A fill of the run as the broker reports it: each new fill, and a fill told again
    /// (IB tells its commission in a second report); who counts fills goes by `exec_id`.
    fn on_fill(&mut self, _fill: &Fill) {}

    /// A symbol's history could not be had (`why`): it gets no live bars in this run.
    fn on_history_failed(&mut self, _symbol: &str, _why: &NoHistory) {}

    /// Any event other than bars, orders and fills; `false` ends the live phase (nothing
    /// more can come).
    fn on_event(&mut self, _event: &Event) -> bool {
        true
    }
}

/// An observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl Observer for Unobserved {}
