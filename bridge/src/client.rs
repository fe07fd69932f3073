//! The runner's end: requests from many threads or async tasks, each matched to its replies by
//! id; events delivered on a channel; worker logs re-emitted in the runner's log.
//!
//! A dispatcher thread owns the receiving ring. It routes each reply to the slot of its
//! request id (a reply nobody awaits is dropped and counted as stray), forwards events, logs
//! worker records with target `worker`, and when the worker is declared gone fails every
//! request in flight with [`RequestError::PeerGone`]. It sleeps until a frame arrives or the
//! peer is gone: it never polls, unless [`ClientConfig::spin`] asks it to busy-poll instead
//! (no wake needed to deliver a frame; one core kept busy for as long as the worker is
//! connected).
//!
//! Deadlines: a blocking request waits on its own slot until its deadline. Async requests
//! ([`ReplyFuture`]) are expired by a timer thread that sleeps until the earliest of their
//! deadlines; while an async request waits for ring space (a full ring, a degraded state),
//! the timer also re-polls it every [`SPACE_RETRY`].
//!
//! Invariants: every request ends (a final reply, or `Timeout`, or `PeerGone`) by its
//! deadline; no lock is held while a waker is woken or a record logged.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
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
    self, Channel, ChannelStats, Control, GoneReason, Receiver, RecvError, SendError, Sender,
    StartError,
};
use crate::protocol::{Body, Envelope, Event, LogLevel, LogRecord, Reply, Request};

/// How long the dispatcher sleeps when no frame arrives (it wakes sooner for any frame, and
/// when the worker is gone or closes).
const DISPATCH_IDLE: Duration = Duration::from_secs(1);
/// How often an async request waiting for ring space retries.
pub const SPACE_RETRY: Duration = Duration::from_millis(1);

/// Where the worker's log records go in the runner: by default [`emit`], which re-emits each
/// in this process's `tracing` log with target `worker`.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// Settings of a [`Client`].
#[derive(Clone)]
pub struct ClientConfig {
    /// The connection's settings.
    pub channel: channel::Config,
    /// Events buffered for the application before new ones are dropped (and counted).
    pub event_capacity: usize,
    /// What to do with each log record of the worker (called on the dispatcher thread: it
    /// must not block).
    pub log_sink: LogSink,
    /// The dispatcher busy-polls the ring instead of sleeping on its doorbell: no wake is
    /// needed to deliver a frame, at the price of a core kept busy for as long as the client
    /// lives (off by default).
    pub spin: bool,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("channel", &self.channel)
            .field("event_capacity", &self.event_capacity)
            .field("spin", &self.spin)
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            channel: channel::Config::default(),
            event_capacity: 1 << 16,
            log_sink: Arc::new(emit),
            spin: false,
        }
    }
}

/// A request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The request was not sent: the ring stayed full until the deadline, the request is too
    /// large, or it could not be encoded. Never `SendError::PeerGone` (that is `PeerGone`).
    Send(SendError),
    /// No (final) reply before the deadline.
    Timeout,
    /// The worker is gone; the request may or may not have been carried out.
    PeerGone(GoneReason),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Send(e) => write!(f, "request not sent: {e}"),
            RequestError::Timeout => f.write_str("no reply before the deadline"),
            RequestError::PeerGone(r) => write!(f, "worker gone: {r}"),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<SendError> for RequestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::PeerGone(r) => RequestError::PeerGone(r),
            e => RequestError::Send(e),
        }
    }
}

/// What the client counted, in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// The connection's frames, bytes, full events and wakes.
    pub channel: ChannelStats,
    /// Replies whose request id was not (or no longer) awaited; dropped.
    pub stray_replies: u64,
    /// Events dropped because the application did not drain them.
    pub dropped_events: u64,
    /// Worker log records the worker reported dropped (its ring was full).
    pub dropped_logs: u64,
    /// Times the dispatcher woke with no frame to route.
    pub dispatcher_idle_wakes: u64,
    /// Requests given up (deadline passed, or dropped unfinished) that the worker was told to
    /// cancel.
    pub cancels: u64,
}

#[derive(Default)]
struct Counters {
    stray_replies: AtomicU64,
    dropped_events: AtomicU64,
    dropped_logs: AtomicU64,
    idle_wakes: AtomicU64,
    cancels: AtomicU64,
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

    /// Blocks for the next item until the request's deadline. Past the deadline the request
    /// has timed out, whatever is still queued: a caller slower than the worker's batches
    /// cannot make a stream outlive its deadline.
    fn next_blocking(&self) -> Result<Reply, RequestError> {
        let mut st = self.state.lock();
        loop {
            if Instant::now() >= self.deadline {
                return Err(RequestError::Timeout);
            }
            if let Some(item) = st.replies.pop_front() {
                return item;
            }
            let _ = self.cv.wait_until(&mut st, self.deadline);
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<Reply, RequestError>> {
        let mut st = self.state.lock();
        if Instant::now() >= self.deadline {
            return Poll::Ready(Err(RequestError::Timeout));
        }
        if let Some(item) = st.replies.pop_front() {
            return Poll::Ready(item);
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

/// What the timer thread watches: deadlines of async requests, and async requests waiting
/// for ring space.
#[derive(Default)]
struct Timers {
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    space_waiters: Vec<Waker>,
    stop: bool,
}

struct Inner {
    tx: Mutex<Sender>,
    control: Control,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    timers: Mutex<Timers>,
    timers_cv: Condvar,
    /// Ids of requests given up whose `Cancel` found the sender busy: sent by the next thread
    /// that holds it, or by the timer thread within [`DISPATCH_IDLE`].
    cancels_pending: Mutex<Vec<u64>>,
    events: crossbeam_channel::Sender<Event>,
    log_sink: LogSink,
    counters: Counters,
    #[cfg(test)]
    before_space_wait: Mutex<Option<Box<dyn Fn() + Send>>>,
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

    /// Forgets request `id`, which ended without its final reply (its deadline passed or its
    /// caller gave up), and tells the worker to stop working on it, never waiting: if another
    /// thread holds the sender, the `Cancel` is left for it (or for the timer thread) to send.
    fn abandon(&self, id: u64) {
        self.forget(id);
        self.cancels_pending.lock().push(id);
        if let Some(mut tx) = self.tx.try_lock() {
            self.flush_cancels(&mut tx);
        }
    }

    /// Sends the `Cancel`s left pending, with `tx` held, as far as the ring has room now.
    fn flush_cancels(&self, tx: &mut Sender) {
        let ids = std::mem::take(&mut *self.cancels_pending.lock());
        let mut left = Vec::new();
        for id in ids {
            let env = Envelope {
                id: 0,
                body: Body::Request(Request::Cancel { id }),
            };
            match tx.send(&env, None) {
                Ok(()) => {
                    self.counters.cancels.fetch_add(1, Ordering::Relaxed);
                }
                Err(SendError::Full) => left.push(id),
                // Gone, or not encodable: nobody is left to cancel anything.
                Err(_) => {}
            }
        }
        if !left.is_empty() {
            self.cancels_pending.lock().extend(left);
        }
    }

    fn gone(&self) -> Option<GoneReason> {
        self.pending.lock().gone.clone()
    }

    /// Asks the timer thread to expire request `id` at `deadline`.
    fn expire_at(&self, deadline: Instant, id: u64) {
        let mut timers = self.timers.lock();
        let earlier = timers
            .deadlines
            .peek()
            .is_none_or(|Reverse((d, _))| deadline < *d);
        timers.deadlines.push(Reverse((deadline, id)));
        drop(timers);
        if earlier {
            self.timers_cv.notify_one();
        }
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
        let (mut tx, sent) = if wait {
            let Some(mut tx) = self.tx.try_lock_until(deadline) else {
                return Err(SendError::Timeout);
            };
            let sent = tx.send(&env, Some(deadline));
            (tx, sent)
        } else {
            let Some(mut tx) = self.tx.try_lock() else {
                return Err(SendError::Full);
            };
            let sent = tx.send(&env, None);
            (tx, sent)
        };
        self.flush_cancels(&mut tx);
        sent
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
                        self.counters.stray_replies.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "bridge", id = env.id, "stray reply dropped");
                    }
                }
            }
            Body::Event(event) => {
                if let Err(crossbeam_channel::TrySendError::Full(_)) = self.events.try_send(event) {
                    self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
                }
            }
            Body::Log(record) => {
                if record.dropped_before > 0 {
                    self.counters
                        .dropped_logs
                        .fetch_add(record.dropped_before, Ordering::Relaxed);
                }
                (self.log_sink)(&record)
            }
            Body::Hello(_) | Body::Request(_) => {
                tracing::warn!(target: "bridge", "unexpected frame from the worker ignored");
            }
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
        let waiters = std::mem::take(&mut self.timers.lock().space_waiters);
        for w in waiters {
            w.wake();
        }
    }

    /// Takes the slots of the async requests whose deadline passed.
    fn expire_due(&self, timers: &mut Timers, now: Instant) -> Vec<Arc<Slot>> {
        let mut due = Vec::new();
        while let Some(Reverse((d, id))) = timers.deadlines.peek().copied() {
            if d > now {
                break;
            }
            timers.deadlines.pop();
            due.push(id);
        }
        if due.is_empty() {
            return Vec::new();
        }
        let mut pending = self.pending.lock();
        due.iter()
            .filter_map(|id| pending.slots.remove(id))
            .collect()
    }
}

/// Re-emits a worker log record in this process's log, with `worker` as its target and the
/// record's own target as the field `origin`.
pub fn emit(r: &LogRecord) {
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

/// The dispatcher: routes every frame from the worker until it is gone, then fails every
/// request in flight.
fn dispatch(inner: Arc<Inner>, mut rx: Receiver, spin: bool) {
    let gone = |reason: GoneReason| {
        if let GoneReason::Corrupt(_) = reason {
            // A worker that corrupts the segment is not trusted to exit by itself.
            inner.control.declare_gone(reason.clone());
        }
        inner.fail_all(reason);
        let mut timers = inner.timers.lock();
        timers.stop = true;
        drop(timers);
        inner.timers_cv.notify_all();
    };
    if spin {
        // Never sleeps: a frame is routed as soon as it is published. The gone state is
        // looked at on every empty poll (`try_recv` reports it once the ring is drained).
        let mut idle = 0u32;
        loop {
            match rx.try_recv::<Envelope>() {
                Ok(Some(env)) => {
                    idle = 0;
                    inner.route(env);
                }
                Ok(None) | Err(RecvError::Timeout) => spin_once(&mut idle),
                Err(RecvError::PeerGone(reason)) => return gone(reason),
            }
        }
    }
    loop {
        match rx.recv::<Envelope>(Instant::now() + DISPATCH_IDLE) {
            Ok(env) => {
                inner.route(env);
                // Drain what else is there before sleeping again.
                loop {
                    match rx.try_recv::<Envelope>() {
                        Ok(Some(env)) => inner.route(env),
                        Ok(None) | Err(RecvError::Timeout) => break,
                        Err(RecvError::PeerGone(reason)) => return gone(reason),
                    }
                }
            }
            Err(RecvError::Timeout) => {
                inner.counters.idle_wakes.fetch_add(1, Ordering::Relaxed);
            }
            Err(RecvError::PeerGone(reason)) => return gone(reason),
        }
    }
}

/// One turn of a busy-poll: a spin hint, and every [`SPIN_YIELD_EVERY`] turns a yield, so
/// that a poller sharing its core with another runnable thread (the application's, on a
/// machine without a core to spare for each) hands it the core at once instead of at the end
/// of its time slice. Never sleeps.
pub fn spin_once(turns: &mut u32) {
    *turns = turns.wrapping_add(1);
    if turns.is_multiple_of(SPIN_YIELD_EVERY) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Spin turns between two yields of a busy-poll.
pub const SPIN_YIELD_EVERY: u32 = 64;

/// The timer: sleeps until the earliest async deadline (or, while async requests wait for
/// ring space, at most [`SPACE_RETRY`]), expires what is due and wakes space waiters.
fn run_timers(inner: Arc<Inner>) {
    let mut timers = inner.timers.lock();
    loop {
        // Stopped by the dispatcher when the worker is gone; the gone state itself is looked
        // at too, so that no wait here outlives the connection whatever became of the
        // dispatcher.
        if timers.stop || inner.control.is_gone() {
            return;
        }
        let due = inner.expire_due(&mut timers, Instant::now());
        if !due.is_empty() {
            drop(timers);
            for slot in due {
                slot.deliver(Err(RequestError::Timeout));
            }
            timers = inner.timers.lock();
            continue;
        }
        if !inner.cancels_pending.lock().is_empty() {
            if let Some(mut tx) = inner.tx.try_lock() {
                inner.flush_cancels(&mut tx);
            }
        }
        let next = timers.deadlines.peek().map(|Reverse((d, _))| *d);
        if timers.space_waiters.is_empty() {
            // Nothing to retry: sleep until the next deadline, or until told of a new one.
            let idle = Instant::now() + DISPATCH_IDLE;
            inner
                .timers_cv
                .wait_until(&mut timers, next.map_or(idle, |d| d.min(idle)));
            continue;
        }
        // Async requests wait for ring space: let them try again after a short pause.
        let retry = Instant::now() + SPACE_RETRY;
        inner
            .timers_cv
            .wait_until(&mut timers, next.map_or(retry, |d| d.min(retry)));
        let waiters = std::mem::take(&mut timers.space_waiters);
        drop(timers);
        for w in waiters {
            w.wake();
        }
        timers = inner.timers.lock();
    }
}

/// The runner's connection to one worker process.
pub struct Client {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
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
        let channel = channel::spawn(cmd, &cfg.channel)?;
        Client::over(channel, cfg)
    }

    /// A client over the runner end of a connection made otherwise (for example
    /// [`channel::pair`]).
    pub fn over(
        channel: Channel,
        cfg: &ClientConfig,
    ) -> Result<(Client, crossbeam_channel::Receiver<Event>), StartError> {
        let Channel {
            sender,
            receiver,
            control,
        } = channel;
        let (events_tx, events_rx) = crossbeam_channel::bounded(cfg.event_capacity.max(1));
        let inner = Arc::new(Inner {
            tx: Mutex::new(sender),
            control,
            pending: Mutex::new(Pending {
                slots: HashMap::new(),
                gone: None,
            }),
            next_id: AtomicU64::new(1),
            timers: Mutex::new(Timers::default()),
            timers_cv: Condvar::new(),
            cancels_pending: Mutex::new(Vec::new()),
            events: events_tx,
            log_sink: cfg.log_sink.clone(),
            counters: Counters::default(),
            #[cfg(test)]
            before_space_wait: Mutex::new(None),
        });
        let mut client = Client {
            inner: inner.clone(),
            threads: Vec::new(),
        };
        let for_dispatcher = inner.clone();
        let spin = cfg.spin;
        let dispatcher = std::thread::Builder::new()
            .name("bridge-dispatch".into())
            .spawn(move || dispatch(for_dispatcher, receiver, spin))
            .map_err(|e| StartError::Spawn(format!("cannot start dispatcher thread: {e}")))?;
        client.threads.push(dispatcher);
        let timers = std::thread::Builder::new()
            .name("bridge-timers".into())
            .spawn(move || run_timers(inner))
            .map_err(|e| StartError::Spawn(format!("cannot start timer thread: {e}")))?;
        client.threads.push(timers);
        Ok((client, events_rx))
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
        let deadline = channel::deadline_after(timeout);
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
            deadline: channel::deadline_after(timeout),
            state: FutureState::Unsent(Some(request)),
        }
    }

    /// The connection's control: worker pid, liveness, closing.
    pub fn control(&self) -> &Control {
        &self.inner.control
    }

    /// What this client counted.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            channel: self.inner.control.stats(),
            stray_replies: c.stray_replies.load(Ordering::Relaxed),
            dropped_events: c.dropped_events.load(Ordering::Relaxed),
            dropped_logs: c.dropped_logs.load(Ordering::Relaxed),
            dispatcher_idle_wakes: c.idle_wakes.load(Ordering::Relaxed),
            cancels: c.cancels.load(Ordering::Relaxed),
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.lock().slots.len()
    }

    /// Closes the connection: the worker sees it and exits; waits for it up to the configured
    /// grace, then kills it. Requests in flight fail.
    pub fn close(&mut self) {
        self.inner.control.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
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
            Err(RequestError::Timeout) => {
                self.done = true;
                self.inner.abandon(self.id);
            }
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
            self.inner.abandon(self.id);
        }
    }
}

enum FutureState {
    Unsent(Option<Request>),
    Sent(u64, Arc<Slot>),
    Done,
}

/// A request in flight, awaited without blocking the runtime. Resolves to the final reply
/// (batches of a streamed answer are skipped) or an error, by its deadline.
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

impl ReplyFuture {
    /// Tries to send the request; on a full ring parks the task with the timer thread.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RequestError>> {
        let FutureState::Unsent(request) = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        let Some(req) = request.take() else {
            return Poll::Ready(Err(RequestError::Timeout));
        };
        let (id, slot) = self.inner.register(self.deadline)?;
        match self.inner.send(id, req.clone(), self.deadline, false) {
            Ok(()) => {
                self.inner.expire_at(self.deadline, id);
                self.state = FutureState::Sent(id, slot);
                Poll::Ready(Ok(()))
            }
            Err(SendError::Full) if Instant::now() < self.deadline => {
                self.inner.forget(id);
                *request = Some(req);
                #[cfg(test)]
                if let Some(hook) = &*self.inner.before_space_wait.lock() {
                    hook();
                }
                {
                    let mut timers = self.inner.timers.lock();
                    timers.space_waiters.push(cx.waker().clone());
                }
                self.inner.timers_cv.notify_one();
                // The worker may have been declared gone, and the waiters woken, between the
                // failed send and the registration above: look again now that we are
                // registered, or nobody would ever wake this task.
                match self.inner.gone() {
                    Some(reason) => Poll::Ready(Err(RequestError::PeerGone(reason))),
                    None => Poll::Pending,
                }
            }
            Err(SendError::Full) => {
                self.inner.forget(id);
                Poll::Ready(Err(RequestError::Send(SendError::Timeout)))
            }
            Err(e) => {
                self.inner.forget(id);
                Poll::Ready(Err(e.into()))
            }
        }
    }
}

impl Future for ReplyFuture {
    type Output = Result<Reply, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.poll_send(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.state = FutureState::Done;
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(())) => {}
        }
        loop {
            let FutureState::Sent(id, slot) = &this.state else {
                return Poll::Ready(Err(RequestError::Timeout));
            };
            match slot.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(reply)) if !reply.is_final() => continue,
                Poll::Ready(item) => {
                    let id = *id;
                    this.state = FutureState::Done;
                    if let Err(RequestError::Timeout) = item {
                        this.inner.abandon(id);
                    } else {
                        this.inner.forget(id);
                    }
                    return Poll::Ready(item);
                }
            }
        }
    }
}

impl Drop for ReplyFuture {
    fn drop(&mut self) {
        if let FutureState::Sent(id, _) = self.state {
            self.inner.abandon(id);
        }
    }
}

#[cfg(test)]
mod tests;
