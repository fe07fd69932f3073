//! The worker's end: receives requests and answers them by id, from any thread; sends events
//! and log records.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::channel::{self, AttachError, Control, Receiver, RecvError, SendError, Sender};
use crate::protocol::{Body, Envelope, Event, LogRecord, Reply, Request};

/// A request received from the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The id every reply to it must carry.
    pub id: u64,
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
    pub fn attach(cfg: &channel::Config, reply_timeout: Duration) -> Result<Server, AttachError> {
        let channel::Channel {
            sender,
            receiver,
            control,
        } = channel::attach(cfg)?;
        Ok(Server {
            rx: receiver,
            responder: Responder {
                tx: Arc::new(Mutex::new(sender)),
                control,
                reply_timeout,
            },
        })
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
        let deadline = Instant::now() + timeout;
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
                Body::Heartbeat { .. } => {}
                other => {
                    tracing::warn!(target: "bridge", "unexpected frame from the runner ignored: {other:?}");
                }
            }
        }
    }
}

/// Sends replies, events and logs to the runner; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Responder {
    tx: Arc<Mutex<Sender>>,
    control: Control,
    reply_timeout: Duration,
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
        let deadline = Instant::now() + self.reply_timeout;
        let Some(mut tx) = self.tx.try_lock_until(deadline) else {
            return Err(SendError::Timeout);
        };
        tx.send(env, deadline)
    }

    /// Answers request `id`.
    pub fn reply(&self, id: u64, reply: Reply) -> Result<(), SendError> {
        self.send(&Envelope {
            id,
            body: Body::Reply(reply),
        })
    }

    /// Sends an event.
    pub fn event(&self, event: Event) -> Result<(), SendError> {
        self.send(&Envelope {
            id: 0,
            body: Body::Event(event),
        })
    }

    /// Sends a log record if there is room now; a record that does not fit is dropped and
    /// counted (logging never blocks the worker). Returns whether it was sent.
    pub fn log(&self, record: LogRecord) -> bool {
        let env = Envelope {
            id: 0,
            body: Body::Log(record),
        };
        let sent = match self.tx.try_lock_for(Duration::from_millis(5)) {
            Some(mut tx) => tx.try_send(&env).is_ok(),
            None => false,
        };
        if !sent {
            self.control
                .counters()
                .dropped_logs
                .fetch_add(1, crate::sync::Ordering::Relaxed);
        }
        sent
    }

    /// The connection's control.
    pub fn control(&self) -> &Control {
        &self.control
    }
}
