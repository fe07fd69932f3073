//! What a session is under its Python object ([`Inner`]): its configuration, its
//! [`Lifecycle`], and the calls that go through the supervisor (connect, ping, history,
//! the subscriptions) and close.
//!
//! Invariants: a call reaches the supervisor only while the session is connected (and not
//! closing, forgotten, or the interpreter exiting); a connect is made of named steps, each of
//! which leaves nothing running when it fails (the lifecycle goes back to idle, or stays
//! closing when a close came meanwhile); once `close` has returned no worker of the session
//! runs, the stream has ended, and the calls under way have heard back (or their grace is
//! spent).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU32, Ordering};

use bridge::protocol::{ConnectionStatus, Event, HistoryRequest, Reply, Request, SubscribeRequest};
use bridge::RequestError;
use runner::config::Config;
use runner::supervisor::{Supervisor, SupervisorError};
use runner::worker_events::WorkerEvents;
use runner::worker_setup::PreparedRun;

use super::lifecycle::{ConnectClaim, Lifecycle, Serving, ToStop};
use super::program::Program;
use super::subscriptions::{Step, Subscriptions};
use super::trading::Desk;
use crate::bar::Bar;
use crate::failure::{Failure, FailureKind};
use crate::pool::Pool;
use crate::stream::{self, Bars};

/// How long closing waits for the calls under way to hear back.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub(super) struct Inner {
    pub(super) cfg: Config,
    program: Program,
    pub(super) life: Arc<Lifecycle>,
    pub(super) subs: Arc<Subscriptions>,
    pub(super) bars: Arc<Bars>,
    pub(super) pool: Pool,
    pub(super) desk: Arc<Desk>,
    /// Held while the worker is brought to the subscriptions wanted.
    syncing: parking_lot::Mutex<()>,
}

impl Inner {
    pub(super) fn new(cfg: Config, program: Program, buffer: usize) -> Inner {
        let trading = cfg.trading.enabled;
        Inner {
            cfg,
            program,
            life: Arc::new(Lifecycle::new()),
            subs: Arc::default(),
            bars: Arc::new(Bars::new(buffer)),
            pool: Pool::new(),
            desk: Arc::new(Desk::new(trading)),
            syncing: parking_lot::Mutex::new(()),
        }
    }

    /// The connected worker's supervisor.
    pub(super) fn sup(&self) -> Result<Arc<Supervisor>, Failure> {
        self.life.supervisor()
    }

    /// Starts the worker and connects it to the broker (nothing if already done); the
    /// broker's accounts.
    pub(super) fn connect(&self) -> Result<Vec<String>, Failure> {
        match self.life.claim_connect()? {
            ConnectClaim::Connected(sup) => match sup.gave_up() {
                Some(e) => Err(e.into()),
                None => Ok(sup.accounts()),
            },
            ConnectClaim::Connect => match self.start() {
                Ok(connected) => self.settle(connected),
                Err(e) => {
                    self.life.connect_failed();
                    Err(e)
                }
            },
        }
    }

    /// The connect's work: the worker started and connected to the broker, its bars pumped.
    fn start(&self) -> Result<Serving, Failure> {
        let PreparedRun { setup, journal } = self.program.prepare(&self.cfg)?;
        let (sup, events) = Supervisor::begin(setup);
        // From here `close` can end the start (it shuts the supervisor down).
        self.life.started(&sup)?;
        if let Err(e) = sup.connect_first() {
            sup.shutdown();
            return Err(match self.life.is_closed() {
                true => Failure::closed(),
                false => e.into(),
            });
        }
        match self.spawn_pump(events, &sup) {
            Ok(pump) => Ok(Serving { sup, pump, journal }),
            Err(e) => {
                sup.shutdown();
                Err(e)
            }
        }
    }

    /// The thread that takes the workers' events into the stream until the session closes.
    fn spawn_pump(
        &self,
        events: WorkerEvents,
        sup: &Arc<Supervisor>,
    ) -> Result<JoinHandle<()>, Failure> {
        let (bars, sup, life) = (self.bars.clone(), sup.clone(), self.life.clone());
        let desk = self.desk.clone();
        let news = self.news_of(sup.clone());
        std::thread::Builder::new()
            .name("ibbridge-bars".into())
            .spawn(move || {
                let (heard, settled) = (desk.clone(), desk.clone());
                let why = stream::pump(
                    events,
                    bars,
                    sup,
                    // Until the close is done with the book: the fills of orders its
                    // cancel on close raced are still read and told.
                    move || life.is_closed() && settled.settled(),
                    move |e| {
                        heard.heard(e);
                        news(e);
                    },
                );
                // A close ends the order events itself, after its cancel on close.
                if why.category != FailureKind::Closed {
                    stream::wake(desk.events.end(why));
                }
            })
            .map_err(|e| {
                Failure::new(
                    FailureKind::Error,
                    format!("cannot start the bar pump: {e}"),
                )
            })
    }

    /// What the pump does with an event besides its bars: the news of the subscribed
    /// symbols, told in the stream in order with their bars. A `Connected` once the
    /// supervisor has replaced a worker is the replacement's.
    fn news_of(&self, sup: Arc<Supervisor>) -> impl Fn(&Event) + Send + 'static {
        let (subs, bars) = (self.subs.clone(), self.bars.clone());
        let restarts = AtomicU32::new(sup.stats().restarts);
        move |event| {
            if let Event::Bar { sub, .. } = event {
                subs.bar_came(*sub);
                return;
            }
            let replaced = matches!(event, Event::Connection(ConnectionStatus::Connected)) && {
                let now = sup.stats().restarts;
                restarts.swap(now, Ordering::Relaxed) != now
            };
            for (id, news) in subs.news(event, replaced) {
                stream::wake(bars.tell(id, news));
            }
        }
    }

    /// The connect's last step, `Connecting` -> `Connected`; the broker's accounts. Closed
    /// while the worker started: the close shut its supervisor down but found no pump, so the
    /// worker is stopped here.
    fn settle(&self, connected: Serving) -> Result<Vec<String>, Failure> {
        let accounts = connected.sup.accounts();
        match self.life.connected(connected) {
            Ok(()) => Ok(accounts),
            Err(connected) => {
                connected.stop();
                Err(Failure::closed())
            }
        }
    }

    /// One round trip through the bridge to the worker (not the broker).
    pub(super) fn ping(&self, timeout: Duration) -> Result<f64, Failure> {
        let sup = self.sup()?;
        let started = Instant::now();
        let payload = Vec::new();
        match sup.request(Request::Ping { payload }, timeout)? {
            Reply::Pong { .. } => Ok(started.elapsed().as_secs_f64()),
            other => Err(Failure::new(
                FailureKind::Error,
                format!("{other:?} to ping"),
            )),
        }
    }

    pub(super) fn history(
        &self,
        request: &HistoryRequest,
        timeout: Duration,
    ) -> Result<Vec<Bar>, Failure> {
        let sup = self.sup()?;
        let bars = sup.history(request, timeout)?;
        Ok(bars.into_iter().map(Bar::from).collect())
    }

    /// One more stream wants each of `symbols` in bars of `bar_seconds` (all or none).
    pub(super) fn want(&self, symbols: &[String], bar_seconds: u32) -> Result<(), Failure> {
        for (i, symbol) in symbols.iter().enumerate() {
            if let Err(e) = self.subs.want(symbol, bar_seconds) {
                symbols[..i].iter().for_each(|s| self.subs.unwant(s));
                return Err(e);
            }
        }
        Ok(())
    }

    /// One stream fewer wants each of `symbols`.
    pub(super) fn unwant(&self, symbols: &[String]) {
        symbols.iter().for_each(|s| self.subs.unwant(s));
    }

    /// Brings the worker to what is wanted of `symbols`: subscribes those wanted and not
    /// streaming, unsubscribes those nobody wants. One sync at a time, so that what is asked
    /// of the worker follows what was wanted last. The first failure, after every symbol.
    pub(super) fn sync(&self, symbols: &[String]) -> Result<(), Failure> {
        let sup = self.sup()?;
        let _one = self.syncing.lock();
        let mut first = None;
        for symbol in symbols {
            // At most an unsubscribe (of another size) and a subscribe.
            for _ in 0..2 {
                let done = match self.subs.step(symbol) {
                    Step::Nothing => break,
                    Step::Subscribe { id, bar_seconds } => {
                        let sub = SubscribeRequest {
                            symbol: symbol.clone(),
                            id,
                            bar_seconds,
                        };
                        self.subs.asking(id);
                        let made = sup.subscribe(sub, self.cfg.request_timeout());
                        // Not live unless the worker said so: wanted again, it is sent again.
                        // Refused, or never sent: the supervisor does not hold it. Any other
                        // failure (no answer in time): it does, and gives it to every new
                        // worker, so it counts as made (and is unsubscribed once let go).
                        let refused = matches!(made, Err(SupervisorError::Remote(_)));
                        let unsent =
                            matches!(made, Err(SupervisorError::Request(RequestError::Send(_))));
                        let held = !(refused || unsent);
                        self.subs.made(id, held.then_some(bar_seconds), refused);
                        made
                    }
                    Step::Unsubscribe { id } => {
                        // Not restored on a new worker from now on, whatever this one says.
                        self.subs.made(id, None, false);
                        sup.unsubscribe(symbol, self.cfg.request_timeout())
                    }
                };
                if let Err(e) = done {
                    first.get_or_insert(Failure::from(e));
                    break;
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Stops the worker (a connect under way included) and ends the stream, then waits for
    /// the calls under way; a second close returns once the first is done.
    pub(super) fn close(&self) {
        let Some(stop) = self.life.begin_close() else {
            return;
        };
        match stop {
            // The pump ends the stream, after every bar it took in.
            ToStop::Connected(connected) => {
                self.desk.cancel_on_close(&self.cfg);
                connected.stop()
            }
            ToStop::Starting(sup) => {
                sup.shutdown();
                stream::wake(self.bars.end(Failure::closed()));
            }
            ToStop::Nothing => stream::wake(self.bars.end(Failure::closed())),
        }
        // Told after every change the cancel on close made (the pump ends them too).
        stream::wake(self.desk.events.end(Failure::closed()));
        let left = self.pool.close(CLOSE_GRACE);
        if left > 0 {
            tracing::warn!(left, "calls still under way when the session closed");
        }
        self.life.finish_close();
    }
}
