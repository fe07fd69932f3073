//! What a soak's threads share (`Soak`): its settings, its supervisor, its counts, the
//! round trips, memory and recoveries it records, the orders it sent; and the limits every
//! part of it keeps to.
//!
//! Invariants: counters only grow; every thread ends within a tick of the soak's end or of
//! `stop` (`is_over`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::histogram::Minutes;
use super::settings::SoakSettings;
use crate::supervisor::Supervisor;

/// How long the simulated broker holds back each order's answer in a soak with orders: the
/// window the chaos aims its kills at.
pub const ORDER_ACK_DELAY_MS: u64 = 100;

/// Deadline of one request (a ping, or a subscription).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replaced worker has to answer before the run fails.
pub(super) const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// One recovery from an injected fault.
#[derive(Debug, Clone)]
pub(super) struct Recovery {
    pub(super) at_s: f64,
    pub(super) action: &'static str,
    pub(super) recovered_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) sent: AtomicU64,
    pub(super) answered: AtomicU64,
    pub(super) mismatched: AtomicU64,
    pub(super) failed_declared: AtomicU64,
    pub(super) bars: AtomicU64,
    pub(super) bar_duplicates: AtomicU64,
    pub(super) bar_reordered: AtomicU64,
    pub(super) bar_gaps_declared: AtomicU64,
    pub(super) bar_gaps_undeclared: AtomicU64,
    pub(super) bar_overlaps_declared: AtomicU64,
    pub(super) orders_sent: AtomicU64,
    pub(super) orders_acknowledged: AtomicU64,
    pub(super) orders_failed: AtomicU64,
}

/// A soak in progress: what its threads share.
pub(super) struct Soak<'a> {
    pub(super) settings: &'a SoakSettings,
    pub(super) sup: &'a Supervisor,
    pub(super) started: Instant,
    pub(super) until: Instant,
    /// Set when the duration is over.
    pub(super) done: AtomicBool,
    /// Set by Ctrl-C.
    pub(super) stop: &'a AtomicBool,
    pub(super) counts: Counts,
    pub(super) minutes: Mutex<Minutes>,
    pub(super) memory: Mutex<Vec<(f64, u64, u64)>>,
    pub(super) recoveries: Mutex<Vec<Recovery>>,
    /// Every order sent: its reference, and whether the broker acknowledged it.
    pub(super) orders: Mutex<Vec<(String, bool)>>,
    /// Set while an order waits for its answer.
    pub(super) order_in_flight: AtomicBool,
}

/// The soak's symbol of subscription `sub`.
pub(super) fn soak_symbol(sub: u32) -> String {
    format!("SOAK{sub:03}")
}

impl Soak<'_> {
    /// Whether the soak is over: its duration passed, or Ctrl-C.
    pub(super) fn is_over(&self) -> bool {
        self.done.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps until `until` or the end of the soak, looking every `tick`.
    pub(super) fn sleep_until(&self, until: Instant, tick: Duration) {
        while Instant::now() < until && !self.is_over() {
            std::thread::sleep(tick);
        }
    }
}
