//! The publishing thread: connects (and connects again), makes the stream if missing, and
//! publishes the buffer in order, each message acknowledged before the next.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream::StorageType};
use tokio::sync::mpsc::Receiver;
use tokio::time::{timeout, Instant};

use super::wire::{subject_prefix, Message, Shared};

/// How long a connection, a publish or its acknowledgement may take.
const WAIT: Duration = Duration::from_secs(2);
/// How long the thread waits before connecting again.
const RETRY: Duration = Duration::from_secs(1);
/// How long a stopping publisher still tries to publish what it holds.
pub(super) const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// Times a message is tried on a server that takes others before it is given up (a refusal
/// that does not pass: too large, a stream full): it must not hold up those behind it.
const ATTEMPTS: u32 = 5;

/// What the thread is told.
pub(super) struct Settings {
    pub(super) url: String,
    pub(super) creds_file: Option<PathBuf>,
    pub(super) token: Option<String>,
    pub(super) hub: String,
    pub(super) stream: String,
    pub(super) retention: Duration,
    pub(super) duplicate_window: Duration,
    pub(super) buffer: usize,
}

/// Connects to the server of `cfg` as hub `hub`'s (an error says why, never the token).
pub(crate) async fn connect(
    cfg: &crate::config::NatsConfig,
    hub: &str,
) -> Result<async_nats::Client, String> {
    let url = cfg.url.as_deref().ok_or("no NATS server configured")?;
    dial(url, cfg.creds_file.as_deref(), cfg.token.as_deref(), hub).await
}

async fn dial(
    url: &str,
    creds_file: Option<&std::path::Path>,
    token: Option<&str>,
    hub: &str,
) -> Result<async_nats::Client, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("ibbridge hub {hub}"))
        .connection_timeout(WAIT);
    if let Some(path) = creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("credentials file {}: {e}", path.display()))?;
    }
    if let Some(token) = token {
        options = options.token(token.to_string());
    }
    timeout(WAIT, options.connect(url))
        .await
        .map_err(|_| format!("no answer from {url} within {WAIT:?}"))?
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// The thread's body: its own runtime, until the publisher stops.
pub(super) fn run(settings: Settings, rx: Receiver<Message>, shared: &Shared) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            *shared.state.lock() = format!("down: no runtime: {e}");
            tracing::error!("NATS publishing cannot start: {e}");
            return;
        }
    };
    runtime.block_on(Publishing::new(settings, rx, shared).run());
}

struct Publishing<'a> {
    settings: Settings,
    rx: Receiver<Message>,
    shared: &'a Shared,
    pending: VecDeque<Message>,
    context: Option<jetstream::Context>,
    /// The handover closed: the publisher is gone.
    closed: bool,
    /// Messages lost to a full buffer since the last time it was said.
    lost_in_outage: u64,
    /// Failed tries of the oldest message.
    attempts: u32,
}

impl<'a> Publishing<'a> {
    fn new(settings: Settings, rx: Receiver<Message>, shared: &'a Shared) -> Self {
        Publishing {
            settings,
            rx,
            shared,
            pending: VecDeque::new(),
            context: None,
            closed: false,
            lost_in_outage: 0,
            attempts: 0,
        }
    }

    async fn run(mut self) {
        let mut stopping_since = None;
        loop {
            self.take_handed_over();
            if self.shared.stop.load(Ordering::Acquire) || self.closed {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if self.pending.is_empty() || since.elapsed() >= FINAL_FLUSH {
                    if !self.pending.is_empty() {
                        tracing::warn!(
                            messages = self.pending.len(),
                            "NATS: messages not published before the hub stopped"
                        );
                    }
                    return;
                }
            }
            if self.context.is_none() {
                match self.connect().await {
                    Ok(context) => {
                        self.context = Some(context);
                        self.set_state("connected".into());
                        self.say_lost();
                    }
                    Err(why) => {
                        self.down(why);
                        self.idle(RETRY).await;
                        continue;
                    }
                }
            }
            if self.pending.is_empty() {
                self.idle(Duration::from_millis(200)).await;
                continue;
            }
            match self.publish_front().await {
                Ok(()) => self.attempts = 0,
                Err(why) => {
                    self.attempts += 1;
                    if self.attempts >= ATTEMPTS {
                        self.give_up_front(&why);
                    }
                    self.context = None;
                    self.down(why);
                    self.idle(RETRY).await;
                }
            }
            self.say_lost();
        }
    }

    /// Connects, and makes the stream if it is missing.
    async fn connect(&self) -> Result<jetstream::Context, String> {
        let s = &self.settings;
        let client = dial(&s.url, s.creds_file.as_deref(), s.token.as_deref(), &s.hub).await?;
        let context = jetstream::new(client);
        let config = jetstream::stream::Config {
            name: s.stream.clone(),
            subjects: vec![format!("{}.>", subject_prefix(&s.hub))],
            max_age: s.retention,
            duplicate_window: s.duplicate_window,
            storage: StorageType::File,
            ..Default::default()
        };
        let subjects = config.subjects.clone();
        let stream = timeout(WAIT, context.get_or_create_stream(config))
            .await
            .map_err(|_| format!("stream {} not made within {WAIT:?}", s.stream))?
            .map_err(|e| format!("stream {}: {e}", s.stream))?;
        // A stream of that name made by someone else for other subjects takes none of ours.
        let theirs = &stream.cached_info().config.subjects;
        if !subjects.iter().all(|ours| theirs.contains(ours)) {
            return Err(format!(
                "stream {} exists for other subjects ({}), not {}",
                s.stream,
                theirs.join(", "),
                subjects.join(", ")
            ));
        }
        Ok(context)
    }

    /// Publishes the oldest message and waits for its acknowledgement; it leaves the buffer
    /// only then.
    async fn publish_front(&mut self) -> Result<(), String> {
        let (Some(context), Some(m)) = (&self.context, self.pending.front()) else {
            return Ok(());
        };
        let mut publish = PublishMessage::build().payload(m.payload.clone().into());
        if let Some(id) = &m.id {
            publish = publish.message_id(id);
        }
        let ack = timeout(WAIT, context.send_publish(m.subject.clone(), publish))
            .await
            .map_err(|_| "publish not sent in time".to_string())?
            .map_err(|e| format!("publish failed: {e}"))?;
        let ack = timeout(WAIT, ack)
            .await
            .map_err(|_| "publish not acknowledged in time".to_string())?
            .map_err(|e| format!("publish not acknowledged: {e}"))?;
        self.pending.pop_front();
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        if ack.duplicate {
            self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        self.count_buffered();
        Ok(())
    }

    /// Moves what was handed over into the buffer, dropping the oldest beyond its bound.
    fn take_handed_over(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(m) => self.keep(m),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        self.count_buffered();
    }

    /// Drops the oldest message after [`ATTEMPTS`] failed tries, counted as lost.
    fn give_up_front(&mut self, why: &str) {
        if let Some(m) = self.pending.pop_front() {
            self.shared.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subject = %m.subject, "NATS: a message given up after {ATTEMPTS} tries: {why}");
        }
        self.attempts = 0;
        self.count_buffered();
    }

    /// Says how many messages a full buffer lost since the last time, if any.
    fn say_lost(&mut self) {
        if self.lost_in_outage > 0 {
            tracing::warn!(
                lost = self.lost_in_outage,
                buffer = self.settings.buffer,
                "NATS: messages lost, the oldest first: the buffer was full"
            );
            self.lost_in_outage = 0;
        }
    }

    fn keep(&mut self, m: Message) {
        if self.pending.len() >= self.settings.buffer {
            self.pending.pop_front();
            self.shared.lost.fetch_add(1, Ordering::Relaxed);
            self.lost_in_outage += 1;
        }
        self.pending.push_back(m);
    }

    fn count_buffered(&self) {
        self.shared
            .buffered
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    /// Waits up to `d` for something to be handed over (or the publisher to stop).
    async fn idle(&mut self, d: Duration) {
        if self.closed {
            tokio::time::sleep(d.min(Duration::from_millis(50))).await;
            return;
        }
        match timeout(d, self.rx.recv()).await {
            Ok(Some(m)) => self.keep(m),
            Ok(None) => self.closed = true,
            Err(_) => {}
        }
    }

    fn down(&self, why: String) {
        let state = format!("down: {why}");
        if *self.shared.state.lock() != state {
            tracing::warn!(
                "NATS {state}; buffering up to {} messages",
                self.settings.buffer
            );
        }
        self.set_state(state);
    }

    fn set_state(&self, state: String) {
        *self.shared.state.lock() = state;
    }
}
