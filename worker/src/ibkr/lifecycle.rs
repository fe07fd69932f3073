//! The gateway connection's life as the runner sees it: IB's system notices turned into
//! [`ConnectionStatus`] events, and the live subscriptions made again whenever the gateway
//! has dropped them.
//!
//! - 1100 (connectivity between the gateway and IB lost): `Lost`; no live data meanwhile.
//! - 1101 (restored, data lost: IB cancelled every market data request): `Restored { data_lost:
//!   true }`, after every live subscription was made again.
//! - 1102 (restored, data maintained): `Restored { data_lost: false }`.
//! - The socket to the gateway closing (`ibapi` reconnects by itself, for ever, and says so
//!   only in its log): `Lost`, then once it is connected again every live subscription is made
//!   again (`ibapi` ends them with the connection) and `Restored { data_lost: true }`.
//! - Every other notice is forwarded as it is.
//!
//! Invariants: each transition is reported once; subscriptions are made again only after the
//! gateway is back, once per loss.

use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{ConnectionStatus, Event};

use super::live::LiveStreams;
use super::Notices;
use crate::backend::EventSink;

/// IB: connectivity between the gateway and IB's servers lost.
pub(super) const CONNECTIVITY_LOST: i32 = 1100;
/// IB: connectivity restored, market data requests lost.
pub(super) const RESTORED_DATA_LOST: i32 = 1101;
/// IB: connectivity restored, market data requests kept.
pub(super) const RESTORED_DATA_KEPT: i32 = 1102;

/// How often the socket to the gateway is looked at.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

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
                tracing::info!(
                    code = n.code,
                    "gateway connection to IB restored, market data kept"
                );
                events(Event::Connection(ConnectionStatus::Restored {
                    data_lost: false,
                }));
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

/// Watches the socket to the gateway: reports it lost, and once `ibapi` has connected again,
/// makes every live subscription again and reports it restored.
pub(super) async fn watch_socket(
    client: Arc<ibapi::Client>,
    live: Arc<LiveStreams>,
    events: EventSink,
) {
    let mut up = true;
    loop {
        tokio::time::sleep(WATCH_PERIOD).await;
        let now = client.is_connected();
        if up && !now {
            tracing::warn!("connection to the gateway lost; reconnecting");
            events(Event::Connection(ConnectionStatus::Lost {
                reason: "the connection to the gateway closed".into(),
            }));
        } else if !up && now {
            let count = live.restart_all(&client);
            tracing::info!(
                resubscribed = count,
                "connection to the gateway back: live subscriptions made again"
            );
            events(Event::Connection(ConnectionStatus::Restored {
                data_lost: true,
            }));
        }
        up = now;
    }
}
