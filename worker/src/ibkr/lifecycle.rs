//! The gateway connection's life as the runner sees it: IB's system notices turned into
//! [`ConnectionStatus`] events, and the live subscriptions made again whenever the gateway
//! has dropped them.
//!
//! - 1100 (connectivity between the gateway and IB lost): `Lost`; no live data meanwhile.
//! - 1101 (restored, data lost: IB cancelled every market data request): `Restored { data_lost:
//!   true }`, after every live subscription was made again.
//! - 1102 (restored, data maintained): `Restored { data_lost: false }`.
//! - The socket to the gateway closing: `Lost`; then `Reconnecting { attempt }` before each
//!   attempt `ibapi` makes (with backoff: 1 s, 2 s, 3 s, 5 s, ... up to 30 s apart); once it
//!   is connected again every live subscription is made again (`ibapi` ends them with the
//!   connection) and `Restored { data_lost: true }`; or, when the configured number of
//!   attempts is spent, `GaveUp`. `ibapi` reports an attempt when it starts waiting for it
//!   (1 s, 2 s, ... 30 s before it is made). A session `ibapi` ends for good otherwise (a
//!   fatal read error) ends the worker, which the supervisor replaces.
//! - 2103 (a market data farm broken): no live data is expected until its 2104; 2104 after
//!   a 2103 of the same farm (a flap): every live subscription is made again at once, since
//!   IB may leave the streams it had dead without a word. Both are forwarded as notices.
//! - Every other notice is forwarded as it is.
//!
//! `ibapi` announces its reconnection attempts only in its log ("next reconnection attempt
//! in ..."); the worker's log layer counts those records ([`ibapi_logged`]), and the watcher
//! reports each new one. If a later `ibapi` words them otherwise, no `Reconnecting` comes
//! (the test `reconnection_attempts_and_giving_up_reach_the_runner` says so); `Lost`,
//! `Restored` and `GaveUp` do not depend on it.
//!
//! Invariants: each transition is reported once; subscriptions are made again only after the
//! gateway is back, once per loss; attempts are numbered from 1 for each loss.

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{ConnectionStatus, Event};

use super::connection::Notices;
use super::live::LiveStreams;
use crate::backend::EventSink;

/// IB: connectivity between the gateway and IB's servers lost.
pub(super) const CONNECTIVITY_LOST: i32 = 1100;
/// IB: connectivity restored, market data requests lost.
pub(super) const RESTORED_DATA_LOST: i32 = 1101;
/// IB: connectivity restored, market data requests kept.
pub(super) const RESTORED_DATA_KEPT: i32 = 1102;

/// IB: a market data farm's connection is broken (`...:usfarm`).
pub(super) const FARM_BROKEN: i32 = 2103;
/// IB: a market data farm's connection is OK.
pub(super) const FARM_OK: i32 = 2104;
/// IB: a market data farm's connection is inactive, available on demand (`...demand.usfarm`).
pub(super) const FARM_INACTIVE: i32 = 2108;

/// The farm a farm notice names: the text after its last colon (`...is OK:usfarm.nj`), or
/// after `demand.` (`...available upon demand.usfarm`).
fn farm_of(message: &str) -> &str {
    message
        .rsplit_once(':')
        .or_else(|| message.rsplit_once("demand."))
        .map_or("", |(_, farm)| farm.trim())
}

/// The worker's exit code when the gateway session ended for good while it was to be
/// reconnected: the supervisor replaces the worker.
const EXIT_SESSION_FAILED: i32 = 3;

/// How often the socket to the gateway is looked at.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

/// Reconnection attempts `ibapi` has announced in this process, in all.
static ATTEMPTS_ANNOUNCED: AtomicU32 = AtomicU32::new(0);

/// What `ibapi` says before each reconnection attempt (target `ibapi::connection::...`).
const ATTEMPT_ANNOUNCEMENT: &str = "next reconnection attempt in";

/// Whether a log record of `target` matters to [`ibapi_logged`]: `ibapi`'s connection
/// module, at info or more severe.
pub(crate) fn announces_attempts(target: &str) -> bool {
    target.starts_with("ibapi::connection")
}

/// Takes in one log record of `ibapi`'s connection module: counts the announcements of a
/// reconnection attempt.
pub(crate) fn ibapi_logged(message: &str) {
    if message.starts_with(ATTEMPT_ANNOUNCEMENT) {
        ATTEMPTS_ANNOUNCED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Forwards the gateway's notices until the connection is shut down, turning the system codes
/// into connection events.
pub(super) async fn forward_notices(
    mut notices: Notices,
    client: Arc<ibapi::Client>,
    live: Arc<LiveStreams>,
    events: EventSink,
) {
    while let Some(n) = notices.next().await {
        match n.code {
            CONNECTIVITY_LOST => {
                live.interrupted();
                live.quiet().link(true);
                tracing::warn!(
                    code = n.code,
                    "gateway lost its connection to IB: {}",
                    n.message
                );
                events(Event::Connection(ConnectionStatus::Lost {
                    reason: n.message,
                }));
            }
            RESTORED_DATA_LOST => {
                live.interrupted();
                live.quiet().link(false);
                let count = live.restart_all(&client);
                tracing::warn!(
                    code = n.code,
                    resubscribed = count,
                    "gateway connection to IB restored, market data lost: live subscriptions made again"
                );
                events(Event::Connection(ConnectionStatus::Restored {
                    data_lost: true,
                }));
            }
            RESTORED_DATA_KEPT => {
                live.interrupted();
                live.quiet().link(false);
                tracing::info!(
                    code = n.code,
                    "gateway connection to IB restored, market data kept"
                );
                events(Event::Connection(ConnectionStatus::Restored {
                    data_lost: false,
                }));
            }
            FARM_BROKEN | FARM_OK | FARM_INACTIVE => {
                let farm = farm_of(&n.message);
                if n.code == FARM_BROKEN {
                    tracing::warn!(code = n.code, farm, "{}", n.message);
                    live.quiet().farm_broken(farm);
                } else if let Some(broke) = live.quiet().farm_ok(farm) {
                    let count = live.resubscribe_after_flap(&client, farm, broke);
                    tracing::info!(code = n.code, farm, resubscribed = count, "{}", n.message);
                } else {
                    tracing::debug!(code = n.code, "{}", n.message);
                }
                events(Event::Notice {
                    code: n.code,
                    message: n.message,
                });
            }
            _ => {
                tracing::debug!(code = n.code, "{}", n.message);
                events(Event::Notice {
                    code: n.code,
                    message: n.message,
                });
            }
        }
    }
}

/// Watches the socket to the gateway: reports it lost, each reconnection attempt, and once
/// `ibapi` has connected again, makes every live subscription again and reports it restored;
/// or reports that `ibapi` gave up, and ends.
///
/// `limit`: the reconnection attempts configured (0: for ever). A session that `ibapi` ends
/// for good before they are spent (a fatal read error, not a lost connection) is not a
/// giving up: the worker exits, and the supervisor replaces it with one that connects anew.
pub(super) async fn watch_socket(
    client: Arc<ibapi::Client>,
    live: Arc<LiveStreams>,
    events: EventSink,
    limit: u32,
) {
    // Counted from while the connection is up: `ibapi` may announce its first attempt
    // before this task sees the loss.
    let mut before = ATTEMPTS_ANNOUNCED.load(Ordering::Relaxed);
    loop {
        while client.is_connected() {
            tokio::time::sleep(WATCH_PERIOD).await;
        }
        live.interrupted();
        tracing::warn!("connection to the gateway lost; reconnecting");
        events(Event::Connection(ConnectionStatus::Lost {
            reason: "the connection to the gateway closed".into(),
        }));
        let mut reported = 0;
        let report_attempts = |reported: &mut u32| {
            let announced = ATTEMPTS_ANNOUNCED
                .load(Ordering::Relaxed)
                .wrapping_sub(before);
            while *reported < announced {
                *reported += 1;
                tracing::info!(attempt = *reported, "reconnecting to the gateway");
                events(Event::Connection(ConnectionStatus::Reconnecting {
                    attempt: *reported,
                }));
            }
        };
        let back = client.wait_connected();
        tokio::pin!(back);
        let outcome = loop {
            tokio::select! {
                outcome = &mut back => break outcome,
                _ = tokio::time::sleep(WATCH_PERIOD) => report_attempts(&mut reported),
            }
        };
        report_attempts(&mut reported);
        match outcome {
            Ok(()) => {
                before = ATTEMPTS_ANNOUNCED.load(Ordering::Relaxed);
                live.interrupted();
                live.quiet().connection_new();
                let count = live.restart_all(&client);
                tracing::info!(
                    resubscribed = count,
                    "connection to the gateway back: live subscriptions made again"
                );
                events(Event::Connection(ConnectionStatus::Restored {
                    data_lost: true,
                }));
            }
            Err(e) if limit == 0 || reported < limit => {
                tracing::error!(
                    attempts = reported,
                    "the gateway session ended for good ({e}); the worker stops so that a new one connects"
                );
                let _ = writeln!(
                    std::io::stderr(),
                    "worker stopping: the gateway session ended for good ({e})"
                );
                std::process::exit(EXIT_SESSION_FAILED);
            }
            Err(e) => {
                tracing::error!(
                    attempts = reported,
                    "gave up reconnecting to the gateway: {e}"
                );
                events(Event::Connection(ConnectionStatus::GaveUp {
                    attempts: reported,
                    reason: format!("the gateway did not come back ({e})"),
                }));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_farm_notice_names_its_farm() {
        assert_eq!(
            farm_of("Market data farm connection is broken:usfarm"),
            "usfarm"
        );
        assert_eq!(
            farm_of("Market data farm connection is OK:usfarm.nj"),
            "usfarm.nj"
        );
        assert_eq!(
            farm_of("Market data farm connection is inactive but should be available upon demand.usfarm"),
            "usfarm"
        );
        assert_eq!(farm_of("no farm here"), "");
    }
}
