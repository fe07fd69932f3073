//! The hub's door as a remote client knocks on it: one request on
//! `ibbridge-rpc.<hub>.<client>`, its answers on an inbox of the request's own ([`Door::ask`]),
//! and the keepalive that finds out when the hub let this client go and attaches it again
//! ([`keep_attached`]).
//!
//! Invariants: every step is bounded by the request's wait (subscribing, sending, each
//! answer); answers are numbered by the hub, and one missing (lost in transit) fails the
//! request rather than leaving a hole in a history or a list; a request carries its deadline,
//! and the hub drops one whose deadline passed before its turn.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    ErrorKind, Event, FeedState, RemoteError, Reply, Request, SubscribeRequest,
};
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::wire::{rpc_subject, CANCELS, DEADLINE, INSTANCE, MSG_ID, SEQ, WORKER};
use crate::backend::{error, EventSink};

/// How long a request that found no hub waits before it is sent again.
const NO_HUB_AGAIN: Duration = Duration::from_millis(200);
/// How often the hub hears from this client when it asks nothing (it lets a client silent
/// for some seconds go).
pub(super) const KEEPALIVE: Duration = Duration::from_secs(2);

/// A connection to the server, and the hub and client it speaks for.
#[derive(Clone)]
pub(super) struct Door {
    pub(super) client: async_nats::Client,
    pub(super) hub: String,
    pub(super) client_name: String,
    pub(super) instance: String,
    /// The worker's generation in its run (the hub lets a client go only at the word of its
    /// newest worker).
    pub(super) generation: u32,
    pub(super) url: String,
    /// Answers that were not ours (undecodable), ignored.
    pub(super) not_ours: Arc<AtomicU64>,
}

impl Door {
    /// Sends `request` (with `msg_id` as its `Nats-Msg-Id`, if any) and hands each answer
    /// before the final one to `each` (which returns whether it wants more); the final
    /// answer, or the error. Each step is awaited `wait` at most.
    pub(super) async fn ask<F: FnMut(Reply) -> bool + ?Sized>(
        &self,
        request: Request,
        msg_id: Option<&str>,
        wait: Duration,
        each: &mut F,
    ) -> Result<Reply, RemoteError> {
        let inbox = self.client.new_inbox();
        self.ask_on(inbox, request, msg_id, wait, each).await
    }

    /// Tells the hub that the request answered on `inbox` is given up (it stops working on
    /// it, and cancels it at the broker); waits a second at most.
    pub(super) async fn give_up(&self, inbox: &str) {
        let Ok(payload) = bridge::codec::encode(&Request::Cancel { id: 0 }) else {
            return;
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(INSTANCE, self.instance.as_str());
        headers.insert(CANCELS, inbox);
        let subject = rpc_subject(&self.hub, &self.client_name);
        let sent = self
            .client
            .publish_with_headers(subject, headers, payload.into());
        let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
    }

    /// [`ask`](Self::ask), its answers on `inbox`.
    pub(super) async fn ask_on<F: FnMut(Reply) -> bool + ?Sized>(
        &self,
        inbox: String,
        request: Request,
        msg_id: Option<&str>,
        wait: Duration,
        each: &mut F,
    ) -> Result<Reply, RemoteError> {
        let lost = |e: String| error(ErrorKind::NotConnected, format!("NATS: {e}"));
        let late = || {
            error(
                ErrorKind::Timeout,
                format!("hub {} did not answer within {wait:?}", self.hub),
            )
        };
        let mut answers = tokio::time::timeout(wait, self.client.subscribe(inbox.clone()))
            .await
            .map_err(|_| late())?
            .map_err(|e| lost(e.to_string()))?;
        let payload = bridge::codec::encode(&request)
            .map_err(|e| error(ErrorKind::Internal, e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(INSTANCE, self.instance.as_str());
        headers.insert(WORKER, self.generation.to_string().as_str());
        let deadline_ms = base::unix_time::now().as_millis() as u64 + wait.as_millis() as u64;
        headers.insert(DEADLINE, deadline_ms.to_string().as_str());
        if let Some(id) = msg_id {
            headers.insert(MSG_ID, id);
        }
        let subject = rpc_subject(&self.hub, &self.client_name);
        let send = || {
            self.client.publish_with_reply_and_headers(
                subject.clone(),
                inbox.clone(),
                headers.clone(),
                payload.clone().into(),
            )
        };
        tokio::time::timeout(wait, send())
            .await
            .map_err(|_| late())?
            .map_err(|e| lost(e.to_string()))?;
        // No hub listening may be a hub whose own connection is being made again (the server
        // restarted): asked again until `wait` is over. A request is the same each time, an
        // order's with its reference: never a second order.
        let deadline = tokio::time::Instant::now() + wait;
        let mut next_seq = 0u64;
        loop {
            let message = match tokio::time::timeout(wait, answers.next()).await {
                Err(_) => return Err(late()),
                Ok(None) => return Err(lost("the answers' subscription closed".into())),
                Ok(Some(m)) => m,
            };
            if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                if tokio::time::Instant::now() + NO_HUB_AGAIN < deadline {
                    tokio::time::sleep(NO_HUB_AGAIN).await;
                    tokio::time::timeout(wait, send())
                        .await
                        .map_err(|_| late())?
                        .map_err(|e| lost(e.to_string()))?;
                    continue;
                }
                return Err(error(
                    ErrorKind::NotConnected,
                    format!("no hub {} answers on NATS at {}", self.hub, self.url),
                ));
            }
            let reply: Reply = match bridge::codec::decode(&message.payload) {
                Ok(r) => r,
                Err(e) => {
                    self.not_ours.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("an answer that is not ours, ignored: {e}");
                    continue;
                }
            };
            let seq = message
                .headers
                .as_ref()
                .and_then(|h| h.get(SEQ))
                .and_then(|v| v.as_str().parse::<u64>().ok());
            if seq != Some(next_seq) {
                return Err(error(
                    ErrorKind::Disconnected,
                    format!(
                        "answers of hub {} lost in transit (answer {next_seq} expected, {} came)",
                        self.hub,
                        seq.map_or("one unnumbered".to_string(), |s| s.to_string())
                    ),
                ));
            }
            next_seq += 1;
            if reply.is_final() {
                return match reply {
                    Reply::Error(e) => Err(e),
                    other => Ok(other),
                };
            }
            if !each(reply) {
                return Err(error(ErrorKind::Internal, "the runner stopped listening"));
            }
        }
    }
}

/// The subscriptions this worker holds at the hub, by symbol.
pub(super) type Subscriptions = Arc<Mutex<BTreeMap<String, SubscribeRequest>>>;

/// Pings the hub every [`KEEPALIVE`]. A hub that no longer knows this client (it let it go:
/// silent too long, the server away) has it attached again and its symbols subscribed again,
/// each told to the runner as a stream made again (bars between may be missing).
pub(super) async fn keep_attached(door: Door, subs: Subscriptions, sink: EventSink) {
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        let ping = Request::Ping {
            payload: Vec::new(),
        };
        match door.ask(ping, None, KEEPALIVE, &mut |_| true).await {
            Err(e) if e.kind == ErrorKind::Disconnected => {
                tracing::warn!(hub = %door.hub, "the hub let this client go ({}): attaching again", e.message);
                if let Err(e) = attach_again(&door, &subs, &sink).await {
                    tracing::warn!("not attached again yet: {}", e.message);
                }
            }
            // Answered; or the server is away (the connection says so to the runner).
            _ => {}
        }
    }
}

async fn attach_again(
    door: &Door,
    subs: &Subscriptions,
    sink: &EventSink,
) -> Result<(), RemoteError> {
    let wait = KEEPALIVE * 5;
    door.ask(Request::Connect, None, wait, &mut |_| true)
        .await?;
    let held: Vec<SubscribeRequest> = subs.lock().values().cloned().collect();
    for request in held {
        let symbol = request.symbol.clone();
        door.ask(Request::Subscribe(request), None, wait, &mut |_| true)
            .await?;
        let told = Event::Feed {
            symbol,
            state: FeedState::Resubscribed {
                reason: "the hub let this client go and took it back: bars between may be missing"
                    .into(),
            },
        };
        tokio::task::block_in_place(|| sink(told));
    }
    Ok(())
}
