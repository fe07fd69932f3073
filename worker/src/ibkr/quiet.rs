//! When nothing is expected of a live stream ([`Quiet`]): the gateway's link to IB is lost
//! (1100, until 1101/1102), a market data farm broke (2103, until its 2104 or 2108, and for
//! [`FARM_QUIET`] at most: a farm that stays broken, or whose return is told otherwise, must
//! not silence the watchdog for good), or the symbol is not in session (a weekend, a holiday, outside regular hours with `use_rth`), as
//! its contract's hours at the gateway say ([`Sessions`]). A silence then is no silence.
//!
//! Invariants: a symbol's hours are looked up at most once per [`HOURS_FRESH`], or again
//! once the days they told of are over, and not again within [`LOOKUP_BACKOFF`] of a
//! lookup that failed; hours that are not known never make a stream quiet (a stream is
//! watched rather than let go silent).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ibapi::prelude::Contract;
use parking_lot::Mutex;

use super::hours::Sessions;

/// Hours looked up are looked up again after this long.
const HOURS_FRESH: Duration = Duration::from_secs(6 * 3600);
/// A lookup of hours that failed is not tried again sooner.
const LOOKUP_BACKOFF: Duration = Duration::from_secs(600);
/// Deadline of one lookup of hours.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A broken farm keeps the streams quiet this long at most.
pub(super) const FARM_QUIET: Duration = Duration::from_secs(300);

/// What the gateway told of a symbol's hours, and when it was asked.
struct Known {
    sessions: Option<Sessions>,
    asked: Instant,
}

/// Why nothing is expected of a stream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The gateway's link to IB is lost.
    LinkLost,
    /// A market data farm is broken.
    FarmBroken,
    /// The symbol is not in session.
    Closed,
}

/// What the live streams of one backend share about what may be expected of them.
#[derive(Default)]
pub(super) struct Quiet {
    link_lost: AtomicBool,
    /// Market data farms (IB's names: `usfarm`, ...) broken and not yet OK again, with when
    /// they broke.
    farms_broken: Mutex<BTreeMap<String, Instant>>,
    hours: Mutex<HashMap<String, Known>>,
}

impl Quiet {
    /// The gateway lost (`true`) or restored its link to IB.
    pub(super) fn link(&self, lost: bool) {
        self.link_lost.store(lost, Ordering::Relaxed);
    }

    /// A market data farm broke (2103); a second 2103 keeps the first's time.
    pub(super) fn farm_broken(&self, farm: &str) {
        self.farms_broken
            .lock()
            .entry(farm.to_string())
            .or_insert_with(Instant::now);
    }

    /// A market data farm is OK (2104) or idle (2108): when it broke, if it was broken (a
    /// flap).
    pub(super) fn farm_ok(&self, farm: &str) -> Option<Instant> {
        self.farms_broken.lock().remove(farm)
    }

    /// A new connection to the gateway: what the old one was told is behind us.
    pub(super) fn connection_new(&self) {
        self.link(false);
        self.farms_broken.lock().clear();
    }

    /// Why nothing is expected of `symbol`'s stream now, if nothing is; its hours looked up
    /// on `client` when they are not known (regular hours with `rth`).
    pub(super) async fn why(
        &self,
        client: &ibapi::Client,
        contract: &Contract,
        symbol: &str,
        rth: bool,
    ) -> Option<Why> {
        if self.link_lost.load(Ordering::Relaxed) {
            return Some(Why::LinkLost);
        }
        if self
            .farms_broken
            .lock()
            .values()
            .any(|broke| broke.elapsed() < FARM_QUIET)
        {
            return Some(Why::FarmBroken);
        }
        let now = base::unix_time::now().as_secs() as i64;
        let known = self.hours.lock().get(symbol).and_then(|k| {
            let open = k.sessions.as_ref().and_then(|s| s.open_at(now));
            let fresh = match open {
                Some(_) => k.asked.elapsed() < HOURS_FRESH,
                // Failed, or the days told of are over: asked again after a while.
                None => k.asked.elapsed() < LOOKUP_BACKOFF,
            };
            fresh.then_some(open)
        });
        let open = match known {
            Some(open) => open,
            None => {
                let sessions = look_up(client, contract, symbol, rth).await;
                let open = sessions.as_ref().and_then(|s| s.open_at(now));
                self.hours.lock().insert(
                    symbol.to_string(),
                    Known {
                        sessions,
                        asked: Instant::now(),
                    },
                );
                open
            }
        };
        (open == Some(false)).then_some(Why::Closed)
    }
}

/// `symbol`'s hours as the gateway tells them (its regular hours with `rth`), `None` if they
/// cannot be had or read (said in the log).
async fn look_up(
    client: &ibapi::Client,
    contract: &Contract,
    symbol: &str,
    rth: bool,
) -> Option<Sessions> {
    let found = match tokio::time::timeout(LOOKUP_TIMEOUT, client.contract_details(contract)).await
    {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::info!(%symbol, "trading hours not known ({e}): every hour is watched");
            return None;
        }
        Err(_) => {
            tracing::info!(%symbol, "trading hours not told in time: every hour is watched");
            return None;
        }
    };
    let details = found
        .iter()
        .find(|d| d.contract.contract_id == contract.contract_id)
        .or(found.first())?;
    let entries = if rth {
        &details.liquid_hours
    } else {
        &details.trading_hours
    };
    if entries.iter().all(|e| e.trim().is_empty()) {
        tracing::debug!(%symbol, "the gateway told no trading hours: every hour is watched");
        return None;
    }
    match Sessions::parse(entries, &details.time_zone_id) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(%symbol, "trading hours not understood ({e}): every hour is watched");
            None
        }
    }
}
