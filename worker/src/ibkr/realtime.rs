//! The real-time bar stream of one symbol: IB's 5-second bars in, bars of the requested size
//! out as [`Event::Bar`].
//!
//! Invariants: a 5-second bar without valid prices is dropped before it is aggregated; bars
//! are built by [`BarBuilder`] (whole bars only: a bar joined midway, or with a 5-second bar
//! missing or repeated, is never sent); a refusal by the gateway after the request was
//! accepted (354 not subscribed, 10197 competing session, ...) is sent as
//! [`Event::Refused`] and ends the stream; a stream that ends with the gateway connection ends
//! quietly: [`LiveStreams`](super::live::LiveStreams) starts it again, once, when the
//! connection is back.

use std::sync::Arc;

use bridge::protocol::{Bar, Event};
use ibapi::prelude::{Contract, StreamExt, SubscriptionItem};

use super::bar_builder::BarBuilder;
use super::choice::DataChoice;
use super::classify;
use crate::backend::EventSink;

/// An `ibapi` subscription to 5-second real-time bars.
pub(super) type FiveSecondBars =
    ibapi::subscriptions::r#async::Subscription<ibapi::market_data::realtime::Bar>;

/// Builds `size`-second bars from IB's 5-second real-time bars of `contract` and sends each as
/// an event when its last 5-second bar arrives. Subscribes first unless `subscription` is
/// given.
pub(super) async fn stream_bars(
    client: Arc<ibapi::Client>,
    contract: Contract,
    choice: DataChoice,
    subscription: Option<FiveSecondBars>,
    symbol: String,
    size: i64,
    events: EventSink,
) {
    let mut subscription = match subscription {
        Some(s) => s,
        None => match client
            .realtime_bars(&contract)
            .what_to_show(choice.realtime())
            .trading_hours(choice.hours())
            .subscribe()
            .await
        {
            Ok(s) => s,
            Err(e) if ended_with_connection(&e) => {
                tracing::debug!(%symbol, "real-time bars not subscribed: the connection is down");
                return;
            }
            Err(e) => return refused(&symbol, &e, &events),
        },
    };
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
            Some(Err(e)) if !ended_with_connection(&e) => return refused(&symbol, &e, &events),
            // Ended with the connection: started again when it is back.
            Some(Err(_)) | None => {
                tracing::debug!(%symbol, "real-time bars ended with the gateway connection");
                return;
            }
        }
    }
}

/// Whether `e` ended the stream with the connection (lost, or `ibapi` shutting down), not
/// as a refusal of the gateway's.
fn ended_with_connection(e: &ibapi::Error) -> bool {
    e.is_connection_lost() || matches!(e, ibapi::Error::Shutdown)
}

/// Reports a refusal of `symbol`'s live data.
fn refused(symbol: &str, e: &ibapi::Error, events: &EventSink) {
    let error = classify(e);
    tracing::warn!(%symbol, kind = ?error.kind, "real-time bars refused: {}", error.message);
    events(Event::Refused {
        symbol: symbol.to_string(),
        error,
    });
}
