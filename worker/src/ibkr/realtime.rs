//! The real-time bar stream of one symbol: IB's 5-second bars in, bars of the requested size
//! out as [`Event::Bar`], watched for silence.
//!
//! Invariants: a 5-second bar without valid prices is dropped before it is aggregated; bars
//! are built by [`BarBuilder`] (whole bars only: a bar joined midway, or with a 5-second bar
//! missing or repeated, is never sent); a refusal by the gateway after the request was
//! accepted (354 not subscribed, 10197 competing session, ...) is sent as
//! [`Event::Refused`] and ends the stream, unless it is for want of a market data permission
//! or subscription and the delayed fallback is on: then the symbol's bars are built from the
//! delayed last-trade ticks ([`TickBars`]), said first with [`Event::Delayed`]; a stream that
//! ends with the gateway connection ends quietly: [`LiveStreams`](super::live::LiveStreams)
//! starts it again, once, when the connection is back. Whatever the feed, its [`Watchdog`]
//! hears of every item it delivers; a silence it rules on is acted on here: the request
//! cancelled and made again (the bar in progress dropped), or the stream reported stalled
//! ([`FeedState::Stalled`]), and flowing when data comes again ([`FeedState::Flowing`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::{Bar, ErrorKind, Event, FeedState, RemoteError};
use ibapi::contracts::tick_types::TickType;
use ibapi::prelude::{Contract, StreamExt, SubscriptionItem, TickTypes};
use parking_lot::Mutex;

use super::bar_builder::BarBuilder;
use super::choice::DataChoice;
use super::errors::classify;
use super::quiet::Quiet;
use super::tick_bars::TickBars;
use super::watchdog::{Verdict, Watchdog};
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
    /// The stream's silence, kept across its tasks.
    pub(super) watch: Arc<Mutex<Watchdog>>,
    /// When nothing is expected of it.
    pub(super) quiet: Arc<Quiet>,
}

impl Feed {
    /// Data came: a stall, if there was one, is over (said once).
    fn fed(&self) {
        let now_unix = base::unix_time::now().as_secs() as i64;
        if self.watch.lock().fed(Instant::now(), now_unix) {
            tracing::info!(symbol = %self.symbol, "live data flows again after a stall");
            (self.events)(Event::Feed {
                symbol: self.symbol.clone(),
                state: FeedState::Flowing,
            });
        }
    }

    /// When the watchdog wants to be asked next.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.watch.lock().deadline())
    }

    /// The watchdog's deadline passed with no data: whether to cancel the stream and make it
    /// again. A stall is reported here; a silence while nothing is expected is none.
    async fn silent(&self) -> bool {
        let symbol = &self.symbol;
        if Instant::now() < self.watch.lock().deadline() {
            return false;
        }
        let quiet = if self.client.is_connected() {
            self.quiet
                .why(&self.client, &self.contract, symbol, self.choice.rth)
                .await
        } else {
            // The connection's watcher makes the stream again when it is back.
            Some(super::quiet::Why::LinkLost)
        };
        if let Some(why) = quiet {
            tracing::trace!(%symbol, ?why, "no live data, none expected");
            let now_unix = base::unix_time::now().as_secs() as i64;
            self.watch.lock().quiet(Instant::now(), now_unix);
            return false;
        }
        let verdict = self.watch.lock().verdict(Instant::now());
        match verdict {
            Verdict::Wait => false,
            Verdict::Resubscribe { silent_for } => {
                let reason = format!(
                    "no live data for {} s while the gateway is connected and the market open",
                    silent_for.as_secs()
                );
                tracing::warn!(%symbol, "{reason}: the subscription is cancelled and made again");
                (self.events)(Event::Feed {
                    symbol: symbol.clone(),
                    state: FeedState::Resubscribed { reason },
                });
                true
            }
            Verdict::Stall { since } => {
                tracing::warn!(
                    %symbol,
                    "still no live data after the subscription was made again: stalled since {}",
                    base::unix_time::clock_text(since)
                );
                (self.events)(Event::Feed {
                    symbol: symbol.clone(),
                    state: FeedState::Stalled { since },
                });
                false
            }
            Verdict::Retry => {
                tracing::info!(%symbol, "stalled: the subscription is made again");
                true
            }
        }
    }
}

/// Requests the feed's 5-second bars; a refusal is reported (or the delayed fallback taken).
async fn subscribe_bars(feed: &Feed) -> Result<FiveSecondBars, Option<ibapi::Error>> {
    match feed
        .client
        .realtime_bars(&feed.contract)
        .what_to_show(feed.choice.realtime())
        .trading_hours(feed.choice.hours())
        .subscribe()
        .await
    {
        Ok(s) => Ok(s),
        Err(e) if ended_with_connection(&e) => {
            tracing::debug!(symbol = %feed.symbol, "real-time bars not subscribed: the connection is down");
            Err(None)
        }
        Err(e) => Err(Some(e)),
    }
}

/// Builds `size`-second bars from IB's 5-second real-time bars of the feed's contract and
/// sends each as an event when its last 5-second bar arrives. Subscribes first unless
/// `subscription` is given.
pub(super) async fn stream_bars(feed: Feed, subscription: Option<FiveSecondBars>) {
    let mut subscription = match subscription {
        Some(s) => s,
        None => match subscribe_bars(&feed).await {
            Ok(s) => s,
            Err(None) => return,
            Err(Some(e)) => return refused(feed, &e).await,
        },
    };
    let (symbol, sub, events) = (&feed.symbol, feed.sub, &feed.events);
    let mut builder = BarBuilder::new(feed.size);
    loop {
        let item = tokio::select! {
            item = subscription.next() => item,
            () = tokio::time::sleep_until(feed.deadline()) => {
                if feed.silent().await {
                    drop(subscription);
                    // The bar in progress spans the silence: never sent.
                    builder = BarBuilder::new(feed.size);
                    subscription = match subscribe_bars(&feed).await {
                        Ok(s) => s,
                        Err(None) => return,
                        Err(Some(e)) => return refused(feed, &e).await,
                    };
                }
                continue;
            }
        };
        match item {
            Some(Ok(SubscriptionItem::Data(b))) => {
                feed.fed();
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
                    events(Event::Bar { sub, bar });
                }
            }
            // `ibapi` passes these on as advisories, but no bar follows them.
            Some(Ok(SubscriptionItem::Notice(n))) if NO_LIVE_BARS.contains(&n.code) => {
                drop(subscription);
                return refused(feed, &ibapi::Error::Notice(n)).await;
            }
            Some(Ok(SubscriptionItem::Notice(n))) => {
                events(Event::Notice {
                    code: n.code,
                    message: n.message,
                });
            }
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
    let subscribe = || async {
        match client.market_data(contract).subscribe().await {
            Ok(s) => Ok(s),
            Err(e) if ended_with_connection(&e) => Err(None),
            Err(e) => Err(Some(e)),
        }
    };
    let mut ticks = match subscribe().await {
        Ok(s) => s,
        Err(None) => return,
        Err(Some(e)) => return report_refusal(symbol, &e, events),
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
            None if feed.silent().await => {
                drop(ticks);
                ticks = match subscribe().await {
                    Ok(s) => s,
                    Err(None) => return,
                    Err(Some(e)) => return report_refusal(symbol, &e, events),
                };
                // The bar in progress spans the silence: started again, never sent.
                bars = TickBars::new(*size, now());
                None
            }
            None => bars.tick(now()),
            Some(Some(Ok(SubscriptionItem::Data(tick)))) => {
                // Only a trade is data: the type and parameters IB sends on every request
                // (and a quote) say nothing of whether the feed lives.
                if is_trade_tick(&tick) {
                    feed.fed();
                }
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

/// Whether `tick` tells of a trade (its price or its size).
fn is_trade_tick(tick: &TickTypes) -> bool {
    match tick {
        TickTypes::Price(p) => is_trade(p.tick_type),
        TickTypes::PriceSize(p) => is_trade(p.price_tick_type),
        TickTypes::Size(s) => is_trade_size(s.tick_type),
        _ => false,
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
