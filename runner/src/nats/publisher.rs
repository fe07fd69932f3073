//! The hub's publisher to NATS JetStream ([`Publisher`]) and what its status shows
//! ([`NatsView`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bridge::protocol::Bar;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[cfg(feature = "nats")]
use super::publish;
use super::wire::{bar_id, PublishedBar};
#[cfg(feature = "nats")]
use super::wire::{stream_name, subject_prefix};
use super::wire::{symbol_token, Message, Shared};
use crate::config::NatsConfig;

/// Messages handed over but not yet taken by the publishing thread; beyond, they are lost
/// (counted) without the hub waiting.
#[cfg(feature = "nats")]
const HANDOVER: usize = 65_536;

/// The publisher, as the hub's status shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatsView {
    /// The server.
    pub url: String,
    /// The stream.
    pub stream: String,
    /// `connected`, `connecting` or `down: why`.
    pub state: String,
    /// Messages the server acknowledged.
    pub published: u64,
    /// Of those, ones it already held (published again).
    pub duplicates: u64,
    /// Messages waiting for the server.
    pub buffered: u64,
    /// Messages lost: the buffer or the handover was full.
    pub lost: u64,
    /// Messages at the hub's door that were not ours (another subject, undecodable, no
    /// inbox), ignored.
    #[serde(default)]
    pub not_ours: u64,
}

/// The hub's publisher to NATS JetStream.
pub struct Publisher {
    tx: Option<tokio::sync::mpsc::Sender<Message>>,
    shared: Arc<Shared>,
    prefix: String,
    hub: String,
    url: String,
    stream: String,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// When the hub started (Unix ms) and the events handed over since: an event's message
    /// id, so that one published again (its acknowledgement lost) is stored once.
    started_ms: u64,
    events: AtomicU64,
}

impl Publisher {
    /// Starts publishing for hub `hub` as `cfg` says, if it names a server (`None` if not).
    /// A server that is down is no error: the publisher connects when it comes. A build
    /// without the `nats` feature refuses a server.
    #[cfg(not(feature = "nats"))]
    pub fn start(cfg: &NatsConfig, hub: &str) -> anyhow::Result<Option<Publisher>> {
        match &cfg.url {
            None => Ok(None),
            Some(url) => anyhow::bail!(
                "hub {hub}: nats.url is {url}, but this build of the runner has no NATS support \
                 (built without its nats feature)"
            ),
        }
    }

    /// Starts publishing for hub `hub` as `cfg` says, if it names a server (`None` if not).
    /// A server that is down is no error: the publisher connects when it comes.
    #[cfg(feature = "nats")]
    pub fn start(cfg: &NatsConfig, hub: &str) -> anyhow::Result<Option<Publisher>> {
        let Some(url) = cfg.url.clone() else {
            return Ok(None);
        };
        let (tx, rx) = tokio::sync::mpsc::channel(HANDOVER);
        let shared = Arc::new(Shared::default());
        *shared.state.lock() = "connecting".into();
        let settings = publish::Settings {
            url: url.clone(),
            creds_file: cfg.creds_file.clone(),
            token: cfg.token.clone(),
            hub: hub.to_string(),
            stream: stream_name(hub),
            retention: std::time::Duration::from_secs(cfg.retention_seconds),
            duplicate_window: std::time::Duration::from_secs(cfg.duplicate_window_seconds),
            buffer: cfg.buffer.max(1),
        };
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hub-nats".into())
                .spawn(move || publish::run(settings, rx, &shared))?
        };
        tracing::info!(%url, stream = %stream_name(hub), "publishing to NATS JetStream");
        Ok(Some(Publisher {
            tx: Some(tx),
            shared,
            prefix: subject_prefix(hub),
            hub: hub.to_string(),
            url,
            stream: stream_name(hub),
            thread: Mutex::new(Some(thread)),
            started_ms: base::unix_time::now().as_millis() as u64,
            events: AtomicU64::new(0),
        }))
    }

    /// Hands a live bar of `symbol` over for publishing, without waiting.
    pub fn bar(&self, symbol: &str, bar_seconds: u32, bar: &Bar) {
        let payload = match serde_json::to_string(&PublishedBar::of(bar_seconds, bar)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("bar not published: {e}");
                return;
            }
        };
        self.hand_over(Message {
            subject: format!("{}.bars.{}", self.prefix, symbol_token(symbol)),
            id: Some(bar_id(symbol, bar_seconds, bar.time)),
            payload: payload.into_bytes(),
        });
    }

    /// Hands an event (a JSON object) over for publishing on the hub's events subject.
    pub fn event(&self, event: &serde_json::Value) {
        self.hand_over(Message {
            subject: format!("{}.events", self.prefix),
            id: Some(self.event_id()),
            payload: event.to_string().into_bytes(),
        });
    }

    /// Hands an event of remote client `client` (encoded) over for publishing on its events
    /// subject.
    pub fn client_event(&self, client: &str, payload: Vec<u8>) {
        self.hand_over(Message {
            subject: worker::remote::wire::client_events_subject(&self.hub, client),
            id: Some(self.event_id()),
            payload,
        });
    }

    /// The message id of the next event: the hub's start and the event's number.
    fn event_id(&self) -> String {
        let n = self.events.fetch_add(1, Ordering::Relaxed);
        format!("{}.event.{}.{n}", self.hub, self.started_ms)
    }

    /// Counts a message at the hub's door that was not ours; how many so far.
    pub fn count_not_ours(&self) -> u64 {
        self.shared.not_ours.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn hand_over(&self, message: Message) {
        let Some(tx) = &self.tx else {
            return;
        };
        if tx.try_send(message).is_err() {
            self.shared.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Where it stands.
    pub fn view(&self) -> NatsView {
        let s = &self.shared;
        NatsView {
            url: self.url.clone(),
            stream: self.stream.clone(),
            state: s.state.lock().clone(),
            published: s.published.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
            buffered: s.buffered.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            not_ours: s.not_ours.load(Ordering::Relaxed),
        }
    }
}

impl Publisher {
    /// Stops the thread: what is buffered is published if the server takes it within two
    /// seconds, else left (said in the log). Nothing is taken after.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.tx = None;
        self.stop();
    }
}
