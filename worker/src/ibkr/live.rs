//! The live subscriptions the runner asked for, and what brings them back: a stream task per
//! symbol, restarted all at once when the gateway dropped every market data request (IB 1101)
//! or the connection to the gateway came back, or when a market data farm broke and came
//! back (2103, then 2104: IB may leave the streams it had dead without a word). Each symbol's
//! [`Watchdog`] outlives its tasks: a stream that goes silent is made again by its own task.
//!
//! Invariants: at most one stream task per symbol (starting one aborts the one before, which
//! cancels its subscription at the gateway); a restart makes each subscription again exactly
//! once; a symbol unsubscribed is never restarted; a farm's flap counts as the
//! resubscription of the silence it caused, with one log line and one
//! [`FeedState::Resubscribed`] per symbol.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::protocol::{Event, FeedState};
use ibapi::prelude::Contract;
use parking_lot::Mutex;

use super::choice::DataChoice;
use super::quiet::Quiet;
use super::realtime::{stream_bars, Feed, FiveSecondBars};
use super::watchdog::Watchdog;
use crate::backend::EventSink;

/// The length of IB's real-time bars, which a stream delivers one of every so often.
pub(super) const FIVE_SECONDS: Duration = Duration::from_secs(5);

/// What the runner asked for one symbol's live bars.
#[derive(Clone)]
pub(super) struct Wanted {
    /// The runner's id of the subscription.
    pub(super) sub: u32,
    pub(super) contract: Contract,
    pub(super) choice: DataChoice,
    /// Bar size, seconds.
    pub(super) size: i64,
}

/// One symbol's live stream.
struct Live {
    wanted: Wanted,
    task: tokio::task::AbortHandle,
    /// Its silence, shared with its task and kept across its restarts.
    watch: Arc<Mutex<Watchdog>>,
}

/// The live streams of one gateway connection.
pub(super) struct LiveStreams {
    handle: tokio::runtime::Handle,
    events: EventSink,
    /// Fall back to delayed data for a symbol whose live bars are refused as not permitted.
    delayed_fallback: bool,
    /// Interruptions of the market data (losses and restorations) so far: a stream that
    /// sees it change drops the bar it was building.
    interruptions: Arc<AtomicU64>,
    /// How long a stream may deliver nothing while something is expected of it.
    silence: Duration,
    /// When nothing is expected of a stream.
    quiet: Arc<Quiet>,
    streams: Mutex<HashMap<String, Live>>,
}

impl LiveStreams {
    pub(super) fn new(
        handle: tokio::runtime::Handle,
        events: EventSink,
        delayed_fallback: bool,
        silent_bars: u32,
    ) -> Self {
        LiveStreams {
            handle,
            events,
            delayed_fallback,
            interruptions: Arc::default(),
            silence: FIVE_SECONDS * silent_bars.max(1),
            quiet: Arc::default(),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// When nothing is expected of the streams.
    pub(super) fn quiet(&self) -> &Quiet {
        &self.quiet
    }

    /// A watchdog for a stream made now.
    fn watchdog(&self) -> Arc<Mutex<Watchdog>> {
        let now_unix = base::unix_time::now().as_secs() as i64;
        Arc::new(Mutex::new(Watchdog::new(
            self.silence,
            Instant::now(),
            now_unix,
        )))
    }

    /// The market data was interrupted (lost, or restored after a loss): bars in progress
    /// span a gap.
    pub(super) fn interrupted(&self) {
        self.interruptions.fetch_add(1, Ordering::Relaxed);
    }

    /// The feed of `symbol`'s `wanted` bars on `client`, watched by `watch`.
    fn feed(
        &self,
        client: Arc<ibapi::Client>,
        symbol: &str,
        wanted: &Wanted,
        watch: &Arc<Mutex<Watchdog>>,
    ) -> Feed {
        Feed {
            client,
            contract: wanted.contract.clone(),
            choice: wanted.choice,
            symbol: symbol.to_string(),
            sub: wanted.sub,
            size: wanted.size,
            events: self.events.clone(),
            delayed_fallback: self.delayed_fallback,
            interruptions: self.interruptions.clone(),
            watch: watch.clone(),
            quiet: self.quiet.clone(),
        }
    }

    /// Starts (or starts again) `symbol`'s stream of `wanted` bars; `subscription` if
    /// already made, else the task makes it.
    pub(super) fn start(
        &self,
        client: Arc<ibapi::Client>,
        symbol: &str,
        wanted: Wanted,
        subscription: Option<FiveSecondBars>,
    ) {
        let watch = self.watchdog();
        let feed = self.feed(client, symbol, &wanted, &watch);
        let task = self.handle.spawn(stream_bars(feed, subscription));
        self.replace(symbol, wanted, task.abort_handle(), watch);
    }

    /// Keeps `symbol`'s subscription without making it now (the gateway is down): the next
    /// [`restart_all`](Self::restart_all) makes it.
    pub(super) fn keep(&self, symbol: &str, wanted: Wanted) {
        // A task that has already ended: aborting it is a no-op.
        let idle = self.handle.spawn(async {}).abort_handle();
        self.replace(symbol, wanted, idle, self.watchdog());
    }

    /// Makes `task` the stream of `symbol`, aborting the one before.
    fn replace(
        &self,
        symbol: &str,
        wanted: Wanted,
        task: tokio::task::AbortHandle,
        watch: Arc<Mutex<Watchdog>>,
    ) {
        let live = Live {
            wanted,
            task,
            watch,
        };
        if let Some(old) = self.streams.lock().insert(symbol.to_string(), live) {
            old.task.abort();
        }
    }

    /// Makes every live subscription again on `client`. Returns how many.
    pub(super) fn restart_all(&self, client: &Arc<ibapi::Client>) -> usize {
        let mut streams = self.streams.lock();
        for (symbol, live) in streams.iter_mut() {
            live.task.abort();
            live.watch.lock().restarted(Instant::now());
            let feed = self.feed(client.clone(), symbol, &live.wanted, &live.watch);
            live.task = self.handle.spawn(stream_bars(feed, None)).abort_handle();
        }
        streams.len()
    }

    /// Makes every live subscription open when market data farm `farm` broke (at `broke`)
    /// again on `client` now that it came back, saying so for each symbol; one made since
    /// (the gateway's data came back meanwhile, say) or ended (refused, or waiting for the
    /// connection) is left as it is. Returns how many were made again.
    pub(super) fn resubscribe_after_flap(
        &self,
        client: &Arc<ibapi::Client>,
        farm: &str,
        broke: Instant,
    ) -> usize {
        let reason = format!("market data farm {farm} broke and came back (IB 2103, 2104)");
        let mut streams = self.streams.lock();
        let mut count = 0;
        for (symbol, live) in streams.iter_mut() {
            if live.task.is_finished() || live.watch.lock().made() > broke {
                continue;
            }
            count += 1;
            live.task.abort();
            live.watch.lock().resubscribed(Instant::now());
            tracing::warn!(%symbol, "live bars made again: {reason}");
            (self.events)(Event::Feed {
                symbol: symbol.clone(),
                state: FeedState::Resubscribed {
                    reason: reason.clone(),
                },
            });
            let feed = self.feed(client.clone(), symbol, &live.wanted, &live.watch);
            live.task = self.handle.spawn(stream_bars(feed, None)).abort_handle();
        }
        count
    }

    /// Stops `symbol`'s stream.
    pub(super) fn stop(&self, symbol: &str) {
        if let Some(live) = self.streams.lock().remove(symbol) {
            live.task.abort();
        }
    }

    /// Stops every stream.
    pub(super) fn stop_all(&self) {
        for (_, live) in self.streams.lock().drain() {
            live.task.abort();
        }
    }
}
