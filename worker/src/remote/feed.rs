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
/// A consumer silent this long is looked for at the server (it may have been removed).
const LOOK_AFTER: Duration = Duration::from_secs(3);
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
/// server lost its store), it is, and for a symbol's the runner is told that bars may be
/// missing.
async fn made_again(
    stream: &Stream,
    consumer: &mut Consumer,
    symbol: Option<&str>,
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
    tracing::warn!(consumer = %name, "the consumer was gone: made again, messages between may be missing");
    if let Some(symbol) = symbol {
        let told = Event::Feed {
            symbol: symbol.to_string(),
            state: FeedState::Resubscribed {
                reason: format!(
                    "consumer {name} was gone at the server: bars between may be missing"
                ),
            },
        };
        tokio::task::block_in_place(|| sink(told));
    }
    true
}

/// Reads `consumer` for ever: each message made an event by `event` (`None`: not ours,
/// counted) and handed to `sink`, acknowledged once handed over (or not ours); a consumer
/// that cannot be read is read again, made again if it is gone. `symbol`: whose bars these
/// are (`None`: the client's own events).
async fn follow(
    stream: Stream,
    mut consumer: Consumer,
    symbol: Option<String>,
    (sink, not_ours): (EventSink, Arc<AtomicU64>),
    event: impl Fn(&[u8]) -> Option<Event>,
) {
    let what = symbol.as_deref().unwrap_or("this client's events");
    let mut failed = 0u32;
    loop {
        let mut messages = match consumer.messages().await {
            Ok(m) => {
                failed = 0;
                m
            }
            Err(e) => {
                failed += 1;
                tracing::debug!(what, "not read: {e}");
                if failed.is_multiple_of(8)
                    && !made_again(&stream, &mut consumer, symbol.as_deref(), &sink).await
                {
                    tracing::warn!(what, "not read for a while: {e}");
                }
                tokio::time::sleep(AGAIN).await;
                continue;
            }
        };
        loop {
            // A consumer removed at the server leaves the reader silent, not failed: a
            // silence makes it look.
            let message = match tokio::time::timeout(LOOK_AFTER, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(what, "interrupted: {e}");
                    made_again(&stream, &mut consumer, symbol.as_deref(), &sink).await;
                    break;
                }
                Err(_) => {
                    if made_again(&stream, &mut consumer, symbol.as_deref(), &sink).await {
                        break;
                    }
                    continue;
                }
            };
            match event(&message.payload) {
                // The ring may be full for a while: not on the runtime's time. Not handed
                // over: sent again after ACK_WAIT.
                Some(e) => {
                    if !tokio::task::block_in_place(|| sink(e)) {
                        continue;
                    }
                }
                None => {
                    let n = not_ours.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(what, not_ours = n, subject = %message.subject, "a message that is not a bar of ours, ignored");
                }
            }
            if let Err(e) = message.ack().await {
                tracing::debug!(what, "acknowledgement not sent: {e}");
            }
        }
        tokio::time::sleep(AGAIN).await;
    }
}

/// A symbol's bars being handed to the runner.
pub(super) struct Feed {
    task: JoinHandle<()>,
}

impl Feed {
    /// Hands `consumer`'s bars to `sink` as bars of `request`'s subscription.
    pub(super) fn start(
        runtime: &tokio::runtime::Runtime,
        (stream, consumer): (Stream, Consumer),
        request: &SubscribeRequest,
        sink: EventSink,
        not_ours: Arc<AtomicU64>,
    ) -> Feed {
        let (sub, size, symbol) = (request.id, request.bar_seconds, request.symbol.clone());
        let bar = move |payload: &[u8]| {
            serde_json::from_slice::<PublishedBar>(payload)
                .ok()
                .filter(|p| p.bar_seconds == size)
                .map(|p| p.bar())
                .filter(|b| b.has_valid_prices())
                .map(|bar| Event::Bar { sub, bar })
        };
        let followed = follow(stream, consumer, Some(symbol), (sink, not_ours), bar);
        Feed {
            task: runtime.spawn(followed),
        }
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
    let event = |payload: &[u8]| bridge::codec::decode::<Event>(payload).ok();
    Ok(tokio::spawn(follow(
        stream,
        consumer,
        None,
        (sink, not_ours),
        event,
    )))
}
