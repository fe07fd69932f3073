//! A remote client's durable consumers of the hub's stream: one per symbol for its live bars
//! ([`Feed`]), one for its own events ([`own_events`]).
//!
//! Invariants: a bar is acknowledged only once it is in the ring to the runner, and the
//! server sends the next one only after that (one unacknowledged message at most), so the
//! bars keep their order and a worker replaced, or a program restarted under the same name,
//! goes on from the first bar not handed over: none missing, none twice (a bar handed over
//! whose acknowledgement was lost comes again, and the runner drops it as not newer); a
//! message that is not a bar of the subscription's size is acknowledged, counted, and not
//! handed over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use bridge::protocol::{ErrorKind, Event, FeedState, RemoteError, SubscribeRequest};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::wire::{bars_subject, client_events_subject, consumer_name, PublishedBar};
use crate::backend::{error, EventSink};
use crate::options::RemoteOptions;

/// A message handed over and not acknowledged is sent again after this.
const ACK_WAIT: Duration = Duration::from_secs(2);
/// A consumer nobody reads for this long is removed by the server.
const INACTIVE: Duration = Duration::from_secs(7 * 86_400);
/// How long a consumer that failed waits before it is read again.
const AGAIN: Duration = Duration::from_millis(250);

type Consumer = async_nats::jetstream::consumer::Consumer<pull::Config>;

fn config(name: String, filter: String) -> pull::Config {
    pull::Config {
        durable_name: Some(name),
        filter_subject: filter,
        // A consumer made now starts with what comes next; one made before goes on where it
        // was left.
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: 1,
        inactive_threshold: INACTIVE,
        ..Default::default()
    }
}

/// The consumer of `opts`' client for `symbol`'s bars: made if missing; made afresh (what
/// an earlier run left in it dropped) if `fresh`.
pub(super) async fn consumer(
    stream: &Stream,
    opts: &RemoteOptions,
    symbol: &str,
    fresh: bool,
    wait: Duration,
) -> Result<Consumer, RemoteError> {
    let name = consumer_name(&opts.client, Some(symbol));
    let filter = bars_subject(&opts.hub, symbol);
    let made = async {
        if fresh {
            // Missing is as good as deleted.
            let _ = stream.delete_consumer(&name).await;
        }
        stream
            .get_or_create_consumer(&name, config(name.clone(), filter))
            .await
    };
    tokio::time::timeout(wait, made)
        .await
        .map_err(|_| {
            error(
                ErrorKind::Timeout,
                format!("consumer {name} not made in time"),
            )
        })?
        .map_err(|e| error(ErrorKind::NotConnected, format!("consumer {name}: {e}")))
}

/// Whether `consumer`'s durable had to be made again: gone at the server (removed, or the
/// server lost its store), it is, and the runner is told that bars may be missing.
async fn made_again(
    stream: &Stream,
    consumer: &mut Consumer,
    symbol: &str,
    sink: &EventSink,
) -> bool {
    let Some(name) = consumer.cached_info().config.durable_name.clone() else {
        return false;
    };
    let wait = Duration::from_secs(2);
    let found = tokio::time::timeout(wait, stream.consumer_info(&name)).await;
    // Found, or no answer: not known to be gone.
    let Ok(Err(e)) = found else {
        return false;
    };
    if !e.to_string().contains("not found") {
        return false;
    }
    let filter = consumer.cached_info().config.filter_subject.clone();
    let again = stream.get_or_create_consumer(&name, config(name.clone(), filter));
    let Ok(Ok(c)) = tokio::time::timeout(wait, again).await else {
        return false;
    };
    *consumer = c;
    tracing::warn!(%symbol, consumer = %name, "the consumer was gone: made again, bars between may be missing");
    let told = Event::Feed {
        symbol: symbol.to_string(),
        state: FeedState::Resubscribed {
            reason: format!("consumer {name} was gone at the server: bars between may be missing"),
        },
    };
    tokio::task::block_in_place(|| sink(told));
    true
}

/// A symbol's bars being handed to the runner.
pub(super) struct Feed {
    task: JoinHandle<()>,
}

impl Feed {
    /// Hands `consumer`'s bars to `sink` as bars of `request`'s subscription.
    pub(super) fn start(
        runtime: &tokio::runtime::Runtime,
        (stream, mut consumer): (Stream, Consumer),
        request: &SubscribeRequest,
        sink: EventSink,
        not_ours: Arc<AtomicU64>,
    ) -> Feed {
        let (sub, size, symbol) = (request.id, request.bar_seconds, request.symbol.clone());
        let task = runtime.spawn(async move {
            let mut failed = 0u32;
            loop {
                let mut messages = match consumer.messages().await {
                    Ok(m) => {
                        failed = 0;
                        m
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::debug!(%symbol, "bars not read: {e}");
                        if failed.is_multiple_of(8)
                            && !made_again(&stream, &mut consumer, &symbol, &sink).await
                        {
                            tracing::warn!(%symbol, "bars not read for a while: {e}");
                        }
                        tokio::time::sleep(AGAIN).await;
                        continue;
                    }
                };
                while let Some(message) = messages.next().await {
                    let message = match message {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::debug!(%symbol, "bars interrupted: {e}");
                            break;
                        }
                    };
                    let bar = serde_json::from_slice::<PublishedBar>(&message.payload)
                        .ok()
                        .filter(|p| p.bar_seconds == size)
                        .map(|p| p.bar())
                        .filter(|b| b.has_valid_prices());
                    match bar {
                        Some(bar) => {
                            // The ring may be full for a while: not on the runtime's time.
                            let bar = Event::Bar { sub, bar };
                            if !tokio::task::block_in_place(|| sink(bar)) {
                                // Not handed over: sent again after ACK_WAIT.
                                continue;
                            }
                        }
                        None => {
                            let n = not_ours.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::warn!(%symbol, not_ours = n, subject = %message.subject, "a message that is not a bar of ours, ignored");
                        }
                    }
                    if let Err(e) = message.ack().await {
                        tracing::debug!(%symbol, "acknowledgement not sent: {e}");
                    }
                }
                tokio::time::sleep(AGAIN).await;
            }
        });
        Feed { task }
    }

    /// Stops handing bars over (the consumer stays, for whoever comes back).
    pub(super) fn stop(self) {
        self.task.abort();
    }
}

/// Hands this client's own events (its orders' news, the broker connection) to `sink`, from
/// its consumer of `ibbridge.<hub>.clients.<client>.events`.
pub(super) async fn own_events(
    stream: Stream,
    opts: &RemoteOptions,
    sink: EventSink,
    not_ours: Arc<AtomicU64>,
) -> Result<JoinHandle<()>, RemoteError> {
    let name = consumer_name(&opts.client, None);
    let filter = client_events_subject(&opts.hub, &opts.client);
    let consumer: Consumer = stream
        .get_or_create_consumer(&name, config(name.clone(), filter))
        .await
        .map_err(|e| error(ErrorKind::NotConnected, format!("consumer {name}: {e}")))?;
    Ok(tokio::spawn(async move {
        loop {
            let mut messages = match consumer.messages().await {
                Ok(m) => m,
                Err(_) => {
                    tokio::time::sleep(AGAIN).await;
                    continue;
                }
            };
            while let Some(Ok(message)) = messages.next().await {
                match bridge::codec::decode::<Event>(&message.payload) {
                    Ok(event) => {
                        if !tokio::task::block_in_place(|| sink(event)) {
                            continue;
                        }
                    }
                    Err(e) => {
                        let n = not_ours.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(not_ours = n, "an event that is not ours, ignored: {e}");
                    }
                }
                let _ = message.ack().await;
            }
            tokio::time::sleep(AGAIN).await;
        }
    }))
}
