//! The real-time bar stream of one symbol: IB's 5-second bars in, bars of the requested size
//! out as [`Event::Bar`].
//!
//! Invariants: a 5-second bar without valid prices is dropped before it is aggregated; bars
//! are built by [`BarBuilder`] (whole bars only: a bar joined midway, or with a 5-second bar
//! missing or repeated, is never sent); a refusal by the gateway after the request was
//! accepted (354 not subscribed, 10197 competing session, ...) is sent as
//! [`Event::Refused`] and ends the stream, unless it is for want of a market data permission
//! or subscription and the delayed fallback is on: then the symbol's bars are built from the
//! delayed last-trade ticks ([`TickBars`]), said first with [`Event::Delayed`]; a stream that
//! ends with the gateway connection ends
//! quietly: [`LiveStreams`](super::live::LiveStreams) starts it again, once, when the
//! connection is back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{Bar, ErrorKind, Event, RemoteError};
use ibapi::contracts::tick_types::TickType;
use ibapi::prelude::{Contract, StreamExt, SubscriptionItem, TickTypes};

use super::bar_builder::BarBuilder;
use super::choice::DataChoice;
use super::errors::classify;
use super::tick_bars::TickBars;
use crate::backend::EventSink;

/// Notices bound to a real-time bars request after which no bar comes, though `ibapi` passes
/// them on as advisories: 10089 (needs an API subscription; delayed data available), 10167
/// (displaying delayed data: real-time bars have none).
const NO_LIVE_BARS: [i32; 2] = [10089, 10167];
/// The same for a market data (ticks) request: 10089 (no data without a subscription).
const NO_TICKS: i32 = 10089;

/// An `ibapi` subscription to 5-second real-time bars.
pub(super) type FiveSecondBars =
    ibapi::subscriptions::r#async::Subscription<ibapi::market_data::realtime::Bar>;

/// One symbol's live stream: where it comes from and where its bars go.
pub(super) struct Feed {
    pub(super) client: Arc<ibapi::Client>,
    pub(super) contract: Contract,
    pub(super) choice: DataChoice,
    pub(super) symbol: String,
    /// The runner's id of the subscription, which the bars carry.
    pub(super) sub: u32,
    /// Seconds of the bars built.
    pub(super) size: i64,
    pub(super) events: EventSink,
    /// Build bars from the delayed feed when live bars are refused for want of a market data
    /// permission or subscription.
    pub(super) delayed_fallback: bool,
    /// Interruptions of the market data so far (see `LiveStreams::interrupted`).
    pub(super) interruptions: Arc<AtomicU64>,
}

/// Builds `size`-second bars from IB's 5-second real-time bars of the feed's contract and
/// sends each as an event when its last 5-second bar arrives. Subscribes first unless
/// `subscription` is given.
pub(super) async fn stream_bars(feed: Feed, subscription: Option<FiveSecondBars>) {
    let Feed {
        client,
        contract,
        choice,
        symbol,
        sub,
        size,
        events,
        ..
    } = &feed;
    let mut subscription = match subscription {
        Some(s) => s,
        None => match client
            .realtime_bars(contract)
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
            Err(e) => return refused(feed, &e).await,
        },
    };
    let mut builder = BarBuilder::new(*size);
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
                    events(Event::Bar { sub: *sub, bar });
                }
            }
            // `ibapi` passes these on as advisories, but no bar follows them.
            Some(Ok(SubscriptionItem::Notice(n))) if NO_LIVE_BARS.contains(&n.code) => {
                drop(subscription);
                return refused(feed, &ibapi::Error::Notice(n)).await;
            }
            Some(Ok(SubscriptionItem::Notice(n))) => events(Event::Notice {
                code: n.code,
                message: n.message,
            }),
            Some(Err(e)) if !ended_with_connection(&e) => {
                drop(subscription);
                return refused(feed, &e).await;
            }
            // Ended with the connection: started again when it is back.
            Some(Err(_)) | None => {
                tracing::debug!(%symbol, "real-time bars ended with the gateway connection");
                return;
            }
        }
    }
}

/// Builds `size`-second bars from the feed's last-trade ticks (delayed ones, the connection
/// having asked for delayed data), timed when they arrive, after live bars were refused with
/// `live_refused`. Says so with [`Event::Delayed`] once the feed answers with data; a bar in
/// progress when the market data is interrupted (lost or restored) is dropped, never sent
/// with a gap in it.
async fn stream_delayed(feed: Feed, live_refused: RemoteError) {
    let Feed {
        client,
        contract,
        symbol,
        size,
        events,
        interruptions,
        ..
    } = &feed;
    let mut ticks = match client.market_data(contract).subscribe().await {
        Ok(s) => s,
        Err(e) if ended_with_connection(&e) => return,
        Err(e) => return report_refusal(symbol, &e, events),
    };
    let mut live_refused = Some(live_refused);
    let now = || base::unix_time::now().as_secs() as i64;
    let mut bars = TickBars::new(*size, now());
    let mut seen = interruptions.load(Ordering::Relaxed);
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    loop {
        let item = tokio::select! {
            item = ticks.next() => Some(item),
            _ = clock.tick() => None,
        };
        let interrupted = interruptions.load(Ordering::Relaxed);
        if interrupted != seen {
            // The bar in progress spans the interruption: started again, never sent.
            seen = interrupted;
            bars = TickBars::new(*size, now());
        }
        let done = match item {
            None => bars.tick(now()),
            Some(Some(Ok(SubscriptionItem::Data(tick)))) => {
                if let Some(refused) = live_refused.take() {
                    tracing::warn!(
                        %symbol,
                        "live bars refused ({}): bars built from delayed data instead",
                        refused.message
                    );
                    events(Event::Delayed {
                        symbol: symbol.clone(),
                        refused,
                    });
                }
                match tick {
                    TickTypes::Price(p) if is_trade(p.tick_type) => bars.price(now(), p.price),
                    TickTypes::PriceSize(p) if is_trade(p.price_tick_type) => {
                        bars.price(now(), p.price)
                    }
                    // Sizes are counted from their own ticks only: IB sends each trade's size
                    // with its price and again on its own.
                    TickTypes::Size(s) if is_trade_size(s.tick_type) => bars.size(now(), s.size),
                    TickTypes::MarketDataType(kind) => {
                        tracing::info!(%symbol, ?kind, "market data type of the feed");
                        None
                    }
                    _ => None,
                }
            }
            Some(Some(Ok(SubscriptionItem::Notice(n)))) if n.code == NO_TICKS => {
                return report_refusal(symbol, &ibapi::Error::Notice(n), events);
            }
            Some(Some(Ok(SubscriptionItem::Notice(n)))) => {
                // 10167: "Displaying delayed market data", as asked.
                tracing::debug!(%symbol, code = n.code, "{}", n.message);
                None
            }
            Some(Some(Err(e))) if !ended_with_connection(&e) => {
                return report_refusal(symbol, &e, events)
            }
            Some(Some(Err(_)) | None) => {
                tracing::debug!(%symbol, "delayed data ended with the gateway connection");
                return;
            }
        };
        if let Some(bar) = done {
            events(Event::Bar { sub: feed.sub, bar });
        }
    }
}

/// Whether a price tick is a trade's (live or delayed last price).
fn is_trade(t: TickType) -> bool {
    matches!(t, TickType::Last | TickType::DelayedLast)
}

/// Whether a size tick is a trade's (live or delayed last size).
fn is_trade_size(t: TickType) -> bool {
    matches!(t, TickType::LastSize | TickType::DelayedLastSize)
}

/// Whether `e` ended the stream with the connection (lost, or `ibapi` shutting down), not
/// as a refusal of the gateway's.
fn ended_with_connection(e: &ibapi::Error) -> bool {
    e.is_connection_lost() || matches!(e, ibapi::Error::Shutdown)
}

/// Live bars were refused with `e`: falls back to delayed data if that is configured and the
/// refusal is for want of a permission or subscription, else reports the refusal.
async fn refused(feed: Feed, e: &ibapi::Error) {
    let error = classify(e);
    if feed.delayed_fallback && error.kind == ErrorKind::NotPermitted {
        return stream_delayed(feed, error).await;
    }
    report_refusal(&feed.symbol, e, &feed.events);
}

/// Reports a refusal of `symbol`'s live data.
fn report_refusal(symbol: &str, e: &ibapi::Error, events: &EventSink) {
    let error = classify(e);
    tracing::warn!(%symbol, kind = ?error.kind, "live data refused: {}", error.message);
    events(Event::Refused {
        symbol: symbol.to_string(),
        error,
    });
}
