//! The runner's end: requests from many threads or async tasks, each matched to its replies by
//! id; events delivered on a channel; worker logs re-emitted in the runner's log.
//!
//! A dispatcher thread owns the receiving ring. It routes each reply to the slot of its
//! request id (a reply nobody awaits is dropped and counted as stray), forwards events, logs
//! worker records with target `worker`, expires deadlines of async requests, and when the
//! worker is declared gone fails every request in flight with [`RequestError::PeerGone`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::channel::{
    self, Control, GoneReason, Receiver, RecvError, SendError, Sender, StartError,
};
use crate::protocol::{Body, Envelope, Event, LogLevel, LogRecord, Reply, Request};

/// How often the dispatcher looks at deadlines while requests are in flight.
const EXPIRY_TICK: Duration = Duration::from_millis(5);
/// How long the dispatcher sleeps when nothing is in flight.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The connection's settings.
    pub channel: channel::Config,
    /// Events buffered for the application before new ones are dropped (and counted).
    pub event_capacity: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            channel: channel::Config::default(),
            event_capacity: 1 << 16,
        }
    }
}

/// A request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The request could not be sent: the ring stayed full.
    Full,
    /// No (final) reply before the deadline.
    Timeout,
    /// The request is larger than the ring's maximum frame.
    TooLarge { len: usize, max: usize },
    /// The worker is gone; the request may or may not have been carried out.
    PeerGone(GoneReason),
    /// The request could not be encoded.
    Encode(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Full => f.write_str("request not sent: the ring stayed full"),
            RequestError::Timeout => f.write_str("no reply before the deadline"),
            RequestError::TooLarge { len, max } => {
                write!(
                    f,
                    "request of {len} bytes exceeds the maximum frame of {max}"
                )
            }
            RequestError::PeerGone(r) => write!(f, "worker gone: {r}"),
            RequestError::Encode(e) => write!(f, "cannot encode request: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<SendError> for RequestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Full | SendError::Timeout => RequestError::Full,
            SendError::TooLarge { len, max } => RequestError::TooLarge { len, max },
            SendError::PeerGone(r) => RequestError::PeerGone(r),
            SendError::Encode(e) => RequestError::Encode(e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Where the replies of one request collect.
struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
    deadline: Instant,
}

struct SlotState {
    replies: VecDeque<Result<Reply, RequestError>>,
    finished: bool,
    waker: Option<Waker>,
}

impl Slot {
    fn new(deadline: Instant) -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(SlotState {
                replies: VecDeque::new(),
                finished: false,
                waker: None,
            }),
            cv: Condvar::new(),
            deadline,
        })
    }

    /// Adds a reply or the error that ends the request.
    fn deliver(&self, item: Result<Reply, RequestError>) {
        let mut st = self.state.lock();
        if st.finished {
            return;
        }
        st.finished = match &item {
            Ok(reply) => reply.is_final(),
            Err(_) => true,
        };
        st.replies.push_back(item);
        let waker = st.waker.take();
        drop(st);
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Blocks for the next item until the request's deadline.
    fn next_blocking(&self) -> Result<Reply, RequestError> {
        let mut st = self.state.lock();
        loop {
            if let Some(item) = st.replies.pop_front() {
                return item;
            }
            if self.cv.wait_until(&mut st, self.deadline).timed_out() {
                return st.replies.pop_front().unwrap_or(Err(RequestError::Timeout));
            }
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<Reply, RequestError>> {
        let mut st = self.state.lock();
        if let Some(item) = st.replies.pop_front() {
            return Poll::Ready(item);
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(Err(RequestError::Timeout));
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

struct Pending {
    slots: HashMap<u64, Arc<Slot>>,
    /// Set once the worker is gone: no new request is accepted.
    gone: Option<GoneReason>,
}

struct Inner {
    tx: Mutex<Sender>,
    control: Control,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// Async requests waiting for ring space; woken by the dispatcher each tick.
    space_waiters: Mutex<Vec<Waker>>,
    events: crossbeam_channel::Sender<Event>,
}

impl Inner {
    fn register(&self, deadline: Instant) -> Result<(u64, Arc<Slot>), RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::new(deadline);
        let mut pending = self.pending.lock();
        if let Some(reason) = &pending.gone {
            return Err(RequestError::PeerGone(reason.clone()));
        }
        pending.slots.insert(id, slot.clone());
        Ok((id, slot))
    }

    fn forget(&self, id: u64) {
        self.pending.lock().slots.remove(&id);
    }

    /// Sends a registered request. `wait`: block for ring space until the deadline.
    fn send(
        &self,
        id: u64,
        request: Request,
        deadline: Instant,
        wait: bool,
    ) -> Result<(), SendError> {
        let env = Envelope {
            id,
            body: Body::Request(request),
        };
        if wait {
            let Some(mut tx) = self.tx.try_lock_until(deadline) else {
                return Err(SendError::Timeout);
            };
            tx.send(&env, deadline)
        } else {
            let Some(mut tx) = self.tx.try_lock() else {
                return Err(SendError::Full);
            };
            tx.try_send(&env)
        }
    }

    fn route(&self, env: Envelope) {
        match env.body {
            Body::Reply(reply) => {
                let slot = {
                    let mut pending = self.pending.lock();
                    if reply.is_final() {
                        pending.slots.remove(&env.id)
                    } else {
                        pending.slots.get(&env.id).cloned()
                    }
                };
                match slot {
                    Some(slot) => slot.deliver(Ok(reply)),
                    None => {
                        self.control
                            .counters()
                            .stray_replies
                            .fetch_add(1, crate::sync::Ordering::Relaxed);
                        tracing::debug!(target: "bridge", id = env.id, "stray reply dropped");
                    }
                }
            }
            Body::Event(event) => {
                if let Err(crossbeam_channel::TrySendError::Full(_)) = self.events.try_send(event) {
                    self.control
                        .counters()
                        .dropped_events
                        .fetch_add(1, crate::sync::Ordering::Relaxed);
                }
            }
            Body::Log(record) => emit(&record),
            Body::Heartbeat { .. } => {}
            Body::Hello(_) | Body::Request(_) => {
                tracing::warn!(target: "bridge", "unexpected frame from the worker ignored");
            }
        }
    }

    fn expire(&self) {
        let now = Instant::now();
        let expired: Vec<Arc<Slot>> = {
            let mut pending = self.pending.lock();
            let ids: Vec<u64> = pending
                .slots
                .iter()
                .filter(|(_, s)| s.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| pending.slots.remove(id))
                .collect()
        };
        for slot in expired {
            slot.deliver(Err(RequestError::Timeout));
        }
        for w in std::mem::take(&mut *self.space_waiters.lock()) {
            w.wake();
        }
    }

    fn fail_all(&self, reason: GoneReason) {
        let slots: Vec<Arc<Slot>> = {
            let mut pending = self.pending.lock();
            pending.gone = Some(reason.clone());
            pending.slots.drain().map(|(_, s)| s).collect()
        };
        for slot in slots {
            slot.deliver(Err(RequestError::PeerGone(reason.clone())));
        }
        for w in std::mem::take(&mut *self.space_waiters.lock()) {
            w.wake();
        }
    }

    fn busy(&self) -> bool {
        !self.pending.lock().slots.is_empty() || !self.space_waiters.lock().is_empty()
    }
}

/// Re-emits a worker log record in this process's log, with `worker` as its target.
fn emit(r: &LogRecord) {
    let origin = r.target.as_str();
    let msg = r.message.as_str();
    match r.level {
        LogLevel::Error => tracing::error!(target: "worker", origin, "{msg}"),
        LogLevel::Warn => tracing::warn!(target: "worker", origin, "{msg}"),
        LogLevel::Info => tracing::info!(target: "worker", origin, "{msg}"),
        LogLevel::Debug => tracing::debug!(target: "worker", origin, "{msg}"),
        LogLevel::Trace => tracing::trace!(target: "worker", origin, "{msg}"),
    }
}

fn dispatch(inner: Arc<Inner>, mut rx: Receiver) {
    let gone = |reason: GoneReason| {
        if let GoneReason::Corrupt(_) = reason {
            // A worker that corrupts the segment is not trusted to exit by itself.
            inner.control.declare_gone(reason.clone());
        }
        inner.fail_all(reason)
    };
    loop {
        let tick = if inner.busy() { EXPIRY_TICK } else { IDLE_TICK };
        match rx.recv::<Envelope>(Instant::now() + tick) {
            Ok(env) => {
                inner.route(env);
                // Drain what else is there before looking at the clock.
                loop {
                    match rx.try_recv::<Envelope>() {
                        Ok(Some(env)) => inner.route(env),
                        Ok(None) => break,
                        Err(RecvError::PeerGone(reason)) => return gone(reason),
                        Err(RecvError::Timeout) => break,
                    }
                }
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::PeerGone(reason)) => return gone(reason),
        }
        inner.expire();
    }
}

/// The runner's connection to one worker process.
pub struct Client {
    inner: Arc<Inner>,
    dispatcher: Option<JoinHandle<()>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("control", &self.inner.control)
            .finish()
    }
}

impl Client {
    /// Starts `cmd` as a worker and connects to it. Returns the client and the stream of the
    /// worker's events.
    pub fn spawn(
        cmd: Command,
        cfg: &ClientConfig,
    ) -> Result<(Client, crossbeam_channel::Receiver<Event>), StartError> {
        let channel::Channel {
            sender,
            receiver,
            control,
        } = channel::spawn(cmd, &cfg.channel)?;
        let (events_tx, events_rx) = crossbeam_channel::bounded(cfg.event_capacity.max(1));
        let inner = Arc::new(Inner {
            tx: Mutex::new(sender),
            control,
            pending: Mutex::new(Pending {
                slots: HashMap::new(),
                gone: None,
            }),
            next_id: AtomicU64::new(1),
            space_waiters: Mutex::new(Vec::new()),
            events: events_tx,
        });
        let for_thread = inner.clone();
        let dispatcher = std::thread::Builder::new()
            .name("bridge-dispatch".into())
            .spawn(move || dispatch(for_thread, receiver))
            .map_err(|e| StartError::Spawn(format!("cannot start dispatcher thread: {e}")))?;
        Ok((
            Client {
                inner,
                dispatcher: Some(dispatcher),
            },
            events_rx,
        ))
    }

    /// Sends `request` and waits for its final reply, at most `timeout` in all. For requests
    /// answered in batches use [`stream`](Self::stream).
    pub fn request(&self, request: Request, timeout: Duration) -> Result<Reply, RequestError> {
        let mut stream = self.stream(request, timeout)?;
        loop {
            match stream.next() {
                Some(Ok(reply)) if reply.is_final() => return Ok(reply),
                Some(Ok(_batch)) => continue,
                Some(Err(e)) => return Err(e),
                None => return Err(RequestError::Timeout),
            }
        }
    }

    /// Sends `request` and returns an iterator over its replies, ending after the final one.
    /// The whole stream must complete within `timeout`.
    pub fn stream(&self, request: Request, timeout: Duration) -> Result<ReplyStream, RequestError> {
        let deadline = Instant::now() + timeout;
        let (id, slot) = self.inner.register(deadline)?;
        if let Err(e) = self.inner.send(id, request, deadline, true) {
            self.inner.forget(id);
            return Err(e.into());
        }
        Ok(ReplyStream {
            inner: self.inner.clone(),
            id,
            slot,
            done: false,
        })
    }

    /// The async form of [`request`](Self::request): never blocks the calling thread.
    pub fn request_async(&self, request: Request, timeout: Duration) -> ReplyFuture {
        ReplyFuture {
            inner: self.inner.clone(),
            deadline: Instant::now() + timeout,
            state: FutureState::Unsent(Some(request)),
        }
    }

    /// The connection's control: worker pid, liveness, counters.
    pub fn control(&self) -> &Control {
        &self.inner.control
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.lock().slots.len()
    }

    /// Closes the connection: the worker sees it and exits; waits for it up to the configured
    /// grace, then kills it. Requests in flight fail.
    pub fn close(&mut self) {
        self.inner.control.close();
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// The replies of one request, in order, ending after the final one.
pub struct ReplyStream {
    inner: Arc<Inner>,
    id: u64,
    slot: Arc<Slot>,
    done: bool,
}

impl fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyStream").field("id", &self.id).finish()
    }
}

impl ReplyStream {
    /// The request's id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Iterator for ReplyStream {
    type Item = Result<Reply, RequestError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.slot.next_blocking();
        match &item {
            Ok(r) if !r.is_final() => {}
            _ => {
                self.done = true;
                self.inner.forget(self.id);
            }
        }
        Some(item)
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        if !self.done {
            self.inner.forget(self.id);
        }
    }
}

enum FutureState {
    Unsent(Option<Request>),
    Sent(u64, Arc<Slot>),
    Done,
}

/// A request in flight, awaited without blocking the runtime. Resolves to the final reply
/// (batches of a streamed answer are skipped).
pub struct ReplyFuture {
    inner: Arc<Inner>,
    deadline: Instant,
    state: FutureState,
}

impl fmt::Debug for ReplyFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyFuture").finish_non_exhaustive()
    }
}

impl Future for ReplyFuture {
    type Output = Result<Reply, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                FutureState::Done => return Poll::Ready(Err(RequestError::Timeout)),
                FutureState::Unsent(request) => {
                    let Some(req) = request.take() else {
                        this.state = FutureState::Done;
                        return Poll::Ready(Err(RequestError::Timeout));
                    };
                    let (id, slot) = match this.inner.register(this.deadline) {
                        Ok(x) => x,
                        Err(e) => {
                            this.state = FutureState::Done;
                            return Poll::Ready(Err(e));
                        }
                    };
                    match this.inner.send(id, req.clone(), this.deadline, false) {
                        Ok(()) => this.state = FutureState::Sent(id, slot),
                        Err(SendError::Full) if Instant::now() < this.deadline => {
                            this.inner.forget(id);
                            *request = Some(req);
                            this.inner.space_waiters.lock().push(cx.waker().clone());
                            return Poll::Pending;
                        }
                        Err(e) => {
                            this.inner.forget(id);
                            this.state = FutureState::Done;
                            return Poll::Ready(Err(e.into()));
                        }
                    }
                }
                FutureState::Sent(id, slot) => match slot.poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(reply)) if !reply.is_final() => continue,
                    Poll::Ready(item) => {
                        let id = *id;
                        this.state = FutureState::Done;
                        this.inner.forget(id);
                        return Poll::Ready(item);
                    }
                },
            }
        }
    }
}

impl Drop for ReplyFuture {
    fn drop(&mut self) {
        if let FutureState::Sent(id, _) = self.state {
            self.inner.forget(id);
        }
    }
}
