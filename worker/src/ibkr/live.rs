//! The live subscriptions the runner asked for, and what brings them back: a stream task per
//! symbol, restarted all at once when the gateway dropped every market data request (IB 1101)
//! or the connection to the gateway came back.
//!
//! Invariants: at most one stream task per symbol (starting one aborts the one before, which
//! cancels its subscription at the gateway); a restart makes each subscription again exactly
//! once; a symbol unsubscribed is never restarted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ibapi::prelude::Contract;
use parking_lot::Mutex;

use super::choice::DataChoice;
use super::realtime::{stream_bars, Feed, FiveSecondBars};
use crate::backend::EventSink;

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
    streams: Mutex<HashMap<String, Live>>,
}

impl LiveStreams {
    pub(super) fn new(
        handle: tokio::runtime::Handle,
        events: EventSink,
        delayed_fallback: bool,
    ) -> Self {
        LiveStreams {
            handle,
            events,
            delayed_fallback,
            interruptions: Arc::default(),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// The market data was interrupted (lost, or restored after a loss): bars in progress
    /// span a gap.
    pub(super) fn interrupted(&self) {
        self.interruptions.fetch_add(1, Ordering::Relaxed);
    }

    /// The feed of `symbol`'s `wanted` bars on `client`.
    fn feed(&self, client: Arc<ibapi::Client>, symbol: &str, wanted: &Wanted) -> Feed {
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
        let feed = self.feed(client, symbol, &wanted);
        let task = self.handle.spawn(stream_bars(feed, subscription));
        self.replace(symbol, wanted, task.abort_handle());
    }

    /// Keeps `symbol`'s subscription without making it now (the gateway is down): the next
    /// [`restart_all`](Self::restart_all) makes it.
    pub(super) fn keep(&self, symbol: &str, wanted: Wanted) {
        // A task that has already ended: aborting it is a no-op.
        let idle = self.handle.spawn(async {}).abort_handle();
        self.replace(symbol, wanted, idle);
    }

    /// Makes `task` the stream of `symbol`, aborting the one before.
    fn replace(&self, symbol: &str, wanted: Wanted, task: tokio::task::AbortHandle) {
        let live = Live { wanted, task };
        if let Some(old) = self.streams.lock().insert(symbol.to_string(), live) {
            old.task.abort();
        }
    }

    /// Makes every live subscription again on `client`. Returns how many.
    pub(super) fn restart_all(&self, client: &Arc<ibapi::Client>) -> usize {
        let mut streams = self.streams.lock();
        for (symbol, live) in streams.iter_mut() {
            live.task.abort();
            let feed = self.feed(client.clone(), symbol, &live.wanted);
            live.task = self.handle.spawn(stream_bars(feed, None)).abort_handle();
        }
        streams.len()
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
