//! The real-time bar stream of one symbol: IB's 5-second bars in, bars of the requested size
//! out as [`Event::Bar`], surviving a gateway reconnect.
//!
//! Invariants: a 5-second bar without valid prices is dropped before it is aggregated; bars
//! are built by [`BarBuilder`] (whole bars only); after a lost connection the task waits for
//! `ibapi` to reconnect and subscribes again (`ibapi` does not restore subscriptions), keeping
//! the bar in progress; it ends, with a warning, when the gateway does not come back within
//! [`RECONNECT_WAIT`] or refuses the subscription.

use std::sync::Arc;

use bridge::protocol::{Bar, Event};
use ibapi::prelude::{Contract, StreamExt, SubscriptionItem};

use super::bar_builder::BarBuilder;
use super::RECONNECT_WAIT;
use crate::backend::EventSink;

/// An `ibapi` subscription to 5-second real-time bars.
pub(super) type FiveSecondBars =
    ibapi::subscriptions::r#async::Subscription<ibapi::market_data::realtime::Bar>;

/// Builds `size`-second bars from IB's 5-second real-time bars and sends each as an event
/// when its last 5-second bar arrives. When the connection is lost, waits for `ibapi` to
/// reconnect and subscribes again.
pub(super) async fn stream_bars(
    client: Arc<ibapi::Client>,
    contract: Contract,
    mut subscription: FiveSecondBars,
    symbol: String,
    size: i64,
    events: EventSink,
) {
    let mut builder = BarBuilder::new(size);
    loop {
        match subscription.next().await {
            Some(Ok(SubscriptionItem::Data(b))) => {
                let five = Bar {
                    time: b.date.unix_timestamp(),
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                };
                if !five.has_valid_prices() {
                    tracing::warn!(%symbol, "real-time bar without a valid price dropped");
                    continue;
                }
                let pushed = builder.push(&five);
                if pushed.abandoned {
                    tracing::debug!(%symbol, "incomplete live bar dropped");
                }
                if let Some(bar) = pushed.complete {
                    events(Event::Bar {
                        symbol: symbol.clone(),
                        bar,
                    });
                }
            }
            Some(Ok(SubscriptionItem::Notice(n))) => events(Event::Notice {
                code: n.code,
                message: n.message,
            }),
            Some(Err(e)) if !e.is_connection_lost() => {
                tracing::warn!(%symbol, "real-time bars ended: {e}");
                return;
            }
            // Connection lost (or the stream ended with it): resubscribe once it is back.
            Some(Err(_)) | None => loop {
                if tokio::time::timeout(RECONNECT_WAIT, client.wait_connected())
                    .await
                    .is_err()
                {
                    tracing::warn!(%symbol, "gateway not back; real-time bars stopped");
                    return;
                }
                match client.realtime_bars(&contract).subscribe().await {
                    Ok(s) => {
                        tracing::info!(%symbol, "real-time bars resubscribed after a reconnect");
                        subscription = s;
                        break;
                    }
                    Err(e) if e.is_connection_lost() => continue,
                    Err(e) => {
                        tracing::warn!(%symbol, "real-time bars not restored: {e}");
                        return;
                    }
                }
            },
        }
    }
}
