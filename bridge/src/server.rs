//! The worker's end: receives requests and answers them by id, from any thread; sends events
//! and log records.
//!
//! Invariants: a reply or event waits for ring space at most the reply timeout; a log record
//! never waits for ring space, and waits for another thread's send in progress at most
//! [`LOG_WAIT`] (never for its own thread's: a record raised while this thread sends is
//! dropped at once). A record that cannot go is dropped and counted, and the count travels
//! with the next record that gets through, so logging can never block or deadlock the worker.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::channel::{self, Channel, Control, Receiver, RecvError, SendError, Sender, StartError};
use crate::pages::{Unpageable, PAGE_OVERHEAD};
use crate::protocol::{Body, Envelope, ErrorKind, Event, LogRecord, RemoteError, Reply, Request};

/// How long a log record waits for another thread's send in progress (a frame copied into
/// the ring: microseconds, unless that send waits for ring space).
pub const LOG_WAIT: Duration = Duration::from_millis(20);

thread_local! {
    /// Set while this thread holds the sending side.
    static SENDING: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as sending for as long as it lives.
struct Sending(bool);

impl Sending {
    fn enter() -> Sending {
        Sending(SENDING.with(|s| s.replace(true)))
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let before = self.0;
        SENDING.with(|s| s.set(before));
    }
}

/// A request received from the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The id every reply to it must carry.
    pub id: u64,
    /// What the runner asks.
    pub request: Request,
}

/// The worker's connection to its runner.
#[derive(Debug)]
pub struct Server {
    rx: Receiver,
    responder: Responder,
}

impl Server {
    /// Attaches to the runner that started this process. `reply_timeout` bounds how long a
    /// reply or event may wait for ring space before failing.
    pub fn attach(
        cfg: &channel::ChannelConfig,
        reply_timeout: Duration,
    ) -> Result<Server, StartError> {
        Ok(Server::over(channel::attach(cfg)?, reply_timeout))
    }

    /// A server over the worker end of a connection made otherwise (for example
    /// [`channel::pair`]).
    pub fn over(channel: Channel, reply_timeout: Duration) -> Server {
        let Channel {
            sender,
            receiver,
            control,
        } = channel;
        Server {
            rx: receiver,
            responder: Responder {
                tx: Arc::new(Mutex::new(sender)),
                control,
                reply_timeout,
                dropped_logs: Arc::new(AtomicU64::new(0)),
            },
        }
    }

    /// A handle for answering from other threads.
    pub fn responder(&self) -> Responder {
        self.responder.clone()
    }

    /// The connection's control.
    pub fn control(&self) -> &Control {
        &self.responder.control
    }

    /// The next request, waiting at most `timeout`: `Ok(None)` if none came. Fails with
    /// `PeerGone` once the runner is gone or closed (after every request it sent).
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Incoming>, RecvError> {
        let deadline = channel::deadline_after(timeout);
        loop {
            let env: Envelope = match self.rx.recv(deadline) {
                Ok(env) => env,
                Err(RecvError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            };
            match env.body {
                Body::Request(request) => {
                    return Ok(Some(Incoming {
                        id: env.id,
                        request,
                    }))
                }
                other => {
                    tracing::warn!(target: "bridge", "unexpected frame from the runner ignored: {other:?}");
                    // A runner sending nothing but such frames cannot keep us past the
                    // deadline.
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// Sends replies, events and logs to the runner; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Responder {
    pub(crate) tx: Arc<Mutex<Sender>>,
    control: Control,
    reply_timeout: Duration,
    /// Log records dropped since the last one delivered.
    dropped_logs: Arc<AtomicU64>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("reply_timeout", &self.reply_timeout)
            .finish()
    }
}

impl Responder {
    fn send(&self, env: &Envelope) -> Result<(), SendError> {
        let deadline = channel::deadline_after(self.reply_timeout);
        let Some(mut tx) = self.tx.try_lock_until(deadline) else {
            return Err(SendError::Timeout);
        };
        let _sending = Sending::enter();
        tx.send(env, Some(deadline))
    }

    /// Answers request `id`.
    pub fn reply(&self, id: u64, reply: Reply) -> Result<(), SendError> {
        self.send(&Envelope {
            id,
            body: Body::Reply(reply),
        })
    }

    /// Answers request `id` whatever the size of `reply`: a list too long for one frame goes
    /// in pages ([`Reply::into_pages`]); a reply that cannot fit (not a list, or a list with
    /// one item larger than a frame) is answered at once with an error of kind
    /// [`ErrorKind::TooLarge`] instead, so that the runner never waits for an answer that
    /// cannot come. Fails only if nothing could be sent.
    pub fn reply_whole(&self, id: u64, reply: Reply) -> Result<(), SendError> {
        let env = Envelope {
            id,
            body: Body::Reply(reply),
        };
        let (len, max) = match self.send(&env) {
            Err(SendError::TooLarge { len, max }) => (len, max),
            other => return other,
        };
        let Body::Reply(reply) = env.body else {
            return Err(SendError::TooLarge { len, max });
        };
        let why = match reply.into_pages(max.saturating_sub(PAGE_OVERHEAD)) {
            Ok(pages) => {
                for page in pages {
                    if let Err(e) = self.reply(id, page) {
                        // The pages before are with the runner: end the request there now.
                        let _ = self.reply(
                            id,
                            Reply::Error(RemoteError {
                                kind: ErrorKind::Internal,
                                message: format!("the answer was cut short: {e}"),
                            }),
                        );
                        return Err(e);
                    }
                }
                return Ok(());
            }
            Err(Unpageable::ItemTooLarge { len }) => {
                format!("an item of the answer takes {len} bytes, more than the maximum frame of {max} bytes (bridge.max_frame)")
            }
            Err(Unpageable::NotAList) => format!(
                "the answer takes {} bytes, more than the maximum frame of {max} bytes (bridge.max_frame)",
                if len > max + 1 { len.to_string() } else { format!("more than {max}") }
            ),
            Err(Unpageable::Encode(e)) => format!("the answer cannot be encoded: {e}"),
        };
        self.reply(
            id,
            Reply::Error(RemoteError {
                kind: ErrorKind::TooLarge,
                message: why,
            }),
        )
    }

    /// Sends an event.
    pub fn event(&self, event: Event) -> Result<(), SendError> {
        self.send(&Envelope {
            id: 0,
            body: Body::Event(event),
        })
    }

    /// Sends an event only if it can go now: the ring has room and no other thread is
    /// sending (`Full` otherwise). Never waits: a hub fans events out so, to clients that may
    /// not read.
    pub fn try_event(&self, event: Event) -> Result<(), SendError> {
        let Some(mut tx) = self.tx.try_lock() else {
            return Err(SendError::Full);
        };
        let _sending = Sending::enter();
        tx.send(
            &Envelope {
                id: 0,
                body: Body::Event(event),
            },
            None,
        )
    }

    /// Sends a log record if the ring has room, after another thread's send in progress
    /// (waiting for it at most [`LOG_WAIT`]); a record that cannot go is dropped and counted
    /// (logging never waits for ring space, nor for a send of its own thread). The count of
    /// records dropped before travels with the next record delivered. Returns whether it was
    /// sent.
    pub fn log(&self, mut record: LogRecord) -> bool {
        let tx = if SENDING.with(Cell::get) {
            None
        } else {
            self.tx.try_lock_for(LOG_WAIT)
        };
        let Some(mut tx) = tx else {
            self.dropped_logs.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let _sending = Sending::enter();
        record.dropped_before = self.dropped_logs.swap(0, Ordering::Relaxed);
        let dropped_before = record.dropped_before;
        let env = Envelope {
            id: 0,
            body: Body::Log(record),
        };
        let sent = tx.send(&env, None).is_ok();
        drop(tx);
        if !sent {
            self.dropped_logs
                .fetch_add(dropped_before + 1, Ordering::Relaxed);
        }
        sent
    }

    /// Log records dropped since the last one delivered.
    pub fn dropped_logs(&self) -> u64 {
        self.dropped_logs.load(Ordering::Relaxed)
    }

    /// The connection's control.
    pub fn control(&self) -> &Control {
        &self.control
    }
}
