//! A hub's live feeds: each symbol subscribed upstream once, whatever the number of its
//! clients that stream it, and every bar of it handed to each of them under the subscription
//! id the client chose.
//!
//! Invariants: a symbol is subscribed at the hub's worker while at least one client streams
//! it and cancelled there when the last one stops or goes; its upstream subscription id is
//! the same for the hub's whole life (the supervisor's rule); subscription changes happen one
//! at a time (`changes`), and routing a bar never waits for them longer than a route update;
//! no lock is held while the supervisor is asked anything but `changes`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{ErrorKind, Event, FeedState, RemoteError, SubscribeRequest};
use parking_lot::Mutex;

use super::clients::Client;
use crate::supervisor::{Supervisor, SupervisorError};
use bridge::RequestError;

/// How long the cancellation of a subscription that failed is waited for.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// One symbol's stream at the hub.
#[derive(Debug)]
struct Feed {
    symbol: String,
    bar_seconds: u32,
    /// Its clients, with the subscription id each chose.
    routes: Vec<(Arc<Client>, u32)>,
    /// Bars routed.
    bars: u64,
}

#[derive(Debug, Default)]
struct Routes {
    /// Upstream subscription id → feed.
    by_upstream: HashMap<u32, Feed>,
    /// Symbol → its upstream id (kept for the hub's life, as the supervisor requires).
    ids: BTreeMap<String, u32>,
}

/// Every symbol the hub streams.
#[derive(Debug, Default)]
pub(crate) struct Feeds {
    routes: Mutex<Routes>,
    /// Held while a subscription is made or cancelled upstream.
    changes: Mutex<()>,
}

/// One feed, as the status shows it.
#[derive(Debug, Clone)]
pub(crate) struct FeedView {
    pub(crate) symbol: String,
    pub(crate) bar_seconds: u32,
    pub(crate) clients: Vec<String>,
}

impl Feeds {
    /// Client `client` streams `symbol` in bars of `bar_seconds` under its id `sub`: the
    /// first client of a symbol subscribes it upstream; a later one joins its stream (in the
    /// same bar size only).
    pub(crate) fn subscribe(
        &self,
        sup: &Supervisor,
        client: &Arc<Client>,
        symbol: &str,
        sub: u32,
        bar_seconds: u32,
        timeout: Duration,
    ) -> Result<(), SupervisorError> {
        let _change = self.changes.lock();
        // Gone before its turn (its subscriptions wait in order): nothing to make.
        if client.is_gone() {
            return Err(SupervisorError::Stopped);
        }
        let upstream = {
            let mut r = self.routes.lock();
            let next = r.ids.len() as u32;
            let id = *r.ids.entry(symbol.to_string()).or_insert(next);
            if let Some(feed) = r.by_upstream.get_mut(&id) {
                if feed.bar_seconds != bar_seconds {
                    return Err(SupervisorError::Remote(RemoteError {
                        kind: ErrorKind::BadRequest,
                        message: format!(
                            "{symbol} streams at this hub in bars of {} s, not {bar_seconds} s",
                            feed.bar_seconds
                        ),
                    }));
                }
                if client.is_gone() {
                    return Err(SupervisorError::Stopped);
                }
                feed.routes.retain(|(c, _)| c.id != client.id);
                feed.routes.push((client.clone(), sub));
                client.subs.lock().insert(symbol.to_string(), sub);
                return Ok(());
            }
            id
        };
        // The route is there before the subscription: the worker's first bars are routed
        // (the reply may reach the client after them, as when it joins a running stream).
        self.routes.lock().by_upstream.insert(
            upstream,
            Feed {
                symbol: symbol.to_string(),
                bar_seconds,
                routes: vec![(client.clone(), sub)],
                bars: 0,
            },
        );
        let made = sup.subscribe(
            SubscribeRequest {
                symbol: symbol.to_string(),
                id: upstream,
                bar_seconds,
            },
            timeout,
        );
        // A client that went meanwhile keeps no route: its departure looked at its streams
        // under `changes` (after its connection was closed), so this one would never be
        // released. A subscription that failed keeps none either, and one whose answer never
        // came (a timeout, the worker gone) may be made at the broker, and the supervisor
        // would make it again on its next worker: cancelled, or a market-data line streams
        // for nobody.
        // A refusal is cancelled too: a worker replaced meanwhile may have been given the
        // subscription by the supervisor before the refusal removed it. The supervisor forgets
        // it before asking; the cancellation is only waited for briefly, under `changes`
        // still (released first, it could cancel the next client's fresh subscription).
        if made.is_err() || client.is_gone() {
            let routed = self.routes.lock().by_upstream.remove(&upstream);
            // Bars it was given before the failure: told that no more come.
            if let (Err(e), Some(_)) = (&made, routed.filter(|f| f.bars > 0)) {
                client.deliver(Event::Refused {
                    symbol: symbol.to_string(),
                    error: RemoteError {
                        kind: ErrorKind::Internal,
                        message: format!("the subscription failed after its first bars: {e}"),
                    },
                });
            }
            let refused = matches!(
                made,
                Err(SupervisorError::Remote(_) | SupervisorError::Request(RequestError::Send(_)))
            );
            match sup.unsubscribe(symbol, timeout.min(CANCEL_TIMEOUT)) {
                Err(e) if !refused => tracing::warn!(symbol, "not cancelled at the broker: {e}"),
                _ => {}
            }
            return made.and(Err(SupervisorError::Stopped));
        }
        client.subs.lock().insert(symbol.to_string(), sub);
        Ok(())
    }

    /// Client `client` stops streaming `symbol`; the last client of a symbol cancels it
    /// upstream.
    pub(crate) fn unsubscribe(
        &self,
        sup: &Supervisor,
        client: &Client,
        symbol: &str,
        timeout: Duration,
    ) -> Result<(), SupervisorError> {
        let _change = self.changes.lock();
        client.subs.lock().remove(symbol);
        let last = {
            let mut r = self.routes.lock();
            let Some(&id) = r.ids.get(symbol) else {
                return Ok(());
            };
            let Some(feed) = r.by_upstream.get_mut(&id) else {
                return Ok(());
            };
            feed.routes.retain(|(c, _)| c.id != client.id);
            let last = feed.routes.is_empty();
            if last {
                r.by_upstream.remove(&id);
            }
            last
        };
        if last {
            tracing::info!(
                symbol,
                "no client streams it any more: cancelled at the broker"
            );
            sup.unsubscribe(symbol, timeout)?;
        }
        Ok(())
    }

    /// Every stream of a client that went away (its connection already closed), released.
    /// Its streams are looked at under `changes`: a subscription of its under way either
    /// ended before (and is among them) or finds it gone and takes no route.
    pub(crate) fn release(&self, sup: &Supervisor, client: &Client, timeout: Duration) {
        let symbols: Vec<String> = {
            let _change = self.changes.lock();
            client.subs.lock().keys().cloned().collect()
        };
        for symbol in symbols {
            if let Err(e) = self.unsubscribe(sup, client, &symbol, timeout) {
                tracing::warn!(symbol, "not cancelled at the broker: {e}");
            }
        }
    }

    /// Hands a live bar of upstream subscription `sub` to every client of its symbol, and to
    /// `nats` (without waiting), if the hub publishes there.
    pub(crate) fn route_bar(
        &self,
        sub: u32,
        bar: bridge::protocol::Bar,
        nats: Option<&crate::nats::Publisher>,
    ) -> usize {
        let mut r = self.routes.lock();
        let Some(feed) = r.by_upstream.get_mut(&sub) else {
            return 0;
        };
        feed.bars += 1;
        if let Some(nats) = nats {
            nats.bar(&feed.symbol, feed.bar_seconds, &bar);
        }
        for (client, id) in &feed.routes {
            client.deliver(Event::Bar { sub: *id, bar });
        }
        feed.routes.len()
    }

    /// Hands an event about `symbol`'s stream to every client of it.
    pub(crate) fn route_symbol_event(&self, symbol: &str, event: &Event) {
        let r = self.routes.lock();
        let Some(feed) = r.ids.get(symbol).and_then(|id| r.by_upstream.get(id)) else {
            return;
        };
        for (client, _) in &feed.routes {
            client.deliver(event.clone());
        }
    }

    /// Tells every client of every feed what became of its stream.
    pub(crate) fn tell_all(&self, state: &FeedState) {
        let r = self.routes.lock();
        for feed in r.by_upstream.values() {
            let event = Event::Feed {
                symbol: feed.symbol.clone(),
                state: state.clone(),
            };
            for (client, _) in &feed.routes {
                client.deliver(event.clone());
            }
        }
    }

    /// The feeds, for the status.
    pub(crate) fn view(&self) -> Vec<FeedView> {
        let r = self.routes.lock();
        let mut out: Vec<FeedView> = r
            .by_upstream
            .values()
            .map(|f| FeedView {
                symbol: f.symbol.clone(),
                bar_seconds: f.bar_seconds,
                clients: f.routes.iter().map(|(c, _)| c.name.clone()).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        out
    }
}
