//! A session's native core as Python holds it ([`Core`]): the methods the Python layer
//! calls, each a check of its arguments and then a blocking call ([`interruptible`]) or an
//! asynchronous one ([`later`]) on the session's [`Inner`].
//!
//! Invariants: blocking calls release the GIL for as long as they wait, and the long ones
//! (connect, history, subscribe) look for Ctrl-C every 100 ms; asynchronous calls return at
//! once and answer through their `done(error, value)` callback, called exactly once; a
//! session dropped unclosed is closed on a thread of its own (never with the GIL held, as the
//! garbage collector drops it); a session inherited by a forked child is forgotten there,
//! never closed nor dropped (its worker, threads and memory are the parent's), and nothing
//! of it that may wait on a lock of the parent's threads is touched.

use std::collections::HashMap;

use bridge::protocol::OrderChange;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use runner::config::BackendKind;
use runner::supervisor::Supervisor;

use super::arguments::{self, history_request};
use super::calls::{answer, interruptible, later, raise};
use super::inner::Inner;
use super::program::{remember_image, Program};
use super::trading::{self, AccountTuple, Asked, FillTuple, OrderTuple, PositionTuple, Told};
use crate::bar::{Bar, BarList};
use crate::failure::{Failure, FailureKind};
use crate::mailbox::Taken;
use crate::stream::Item;

/// A session's native core.
#[pyclass(module = "ibbridge._native")]
pub(crate) struct Core {
    inner: Arc<Inner>,
}

impl Core {
    /// Refuses a session inherited by a forked child (its locks may be held by threads of
    /// the parent's, which do not exist there).
    fn not_forgotten(&self) -> PyResult<()> {
        raise(self.inner.life.not_forgotten())
    }

    fn timeout(&self, seconds: Option<f64>) -> PyResult<std::time::Duration> {
        raise(arguments::timeout(&self.inner.cfg, seconds))
    }
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (python, image, config=None, backend=None, gateway=None,
        client_id=None, seed=None, speed=None, buffer=65536, trade=false, hub=None, client=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        python: PathBuf,
        image: PathBuf,
        config: Option<PathBuf>,
        backend: Option<String>,
        gateway: Option<String>,
        client_id: Option<i64>,
        seed: Option<i64>,
        speed: Option<f64>,
        buffer: usize,
        trade: bool,
        hub: Option<String>,
        client: Option<String>,
    ) -> PyResult<Core> {
        crate::log::install(py);
        let flags = arguments::overrides(backend, gateway, client_id, seed, trade, hub, client);
        let cfg = raise(arguments::config(config, flags, speed))?;
        raise(arguments::check_buffer(buffer))?;
        remember_image(image.clone());
        let program = Program { python, image };
        Ok(Core {
            inner: Arc::new(Inner::new(cfg, program, buffer)),
        })
    }

    /// `sim`, `ibkr` or `replay`.
    #[getter]
    fn backend(&self) -> &'static str {
        match self.inner.cfg.backend {
            BackendKind::Sim => "sim",
            BackendKind::Ibkr => "ibkr",
            BackendKind::Replay => "replay",
        }
    }

    /// Whether the session trades (`trade=True`, or `trading.enabled` in its configuration).
    #[getter]
    fn trading(&self) -> bool {
        self.inner.cfg.trading.enabled
    }

    /// The history a strategy run starts from: (bar seconds, duration seconds), as the
    /// configuration's `[history]` says.
    #[getter]
    fn history_settings(&self) -> (u32, u64) {
        let h = &self.inner.cfg.history;
        (h.bar_seconds, h.duration_seconds)
    }

    /// The effective configuration, as TOML.
    fn config_toml(&self) -> String {
        self.inner.cfg.to_toml()
    }

    fn connect(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        interruptible(py, &self.inner, Inner::connect)
    }

    fn connect_async(&self, done: Py<PyAny>) -> PyResult<()> {
        later(&self.inner, done, Inner::connect)
    }

    /// A new reference for an order of this session's (made before anything is sent).
    fn next_ref(&self) -> String {
        self.inner.desk.next_ref()
    }

    /// Places an order (`trade=True` sessions): its state once the broker took it.
    #[pyo3(signature = (symbol, side, quantity, limit, tif, order_ref))]
    #[allow(clippy::too_many_arguments)]
    fn place_order(
        &self,
        py: Python<'_>,
        symbol: String,
        side: String,
        quantity: f64,
        limit: Option<f64>,
        tif: String,
        order_ref: String,
    ) -> PyResult<OrderTuple> {
        let asked = Asked {
            symbol,
            side,
            quantity,
            limit,
            tif,
        };
        interruptible(py, &self.inner, place(asked, order_ref))
    }

    #[pyo3(signature = (done, symbol, side, quantity, limit, tif, order_ref))]
    #[allow(clippy::too_many_arguments)]
    fn place_order_async(
        &self,
        done: Py<PyAny>,
        symbol: String,
        side: String,
        quantity: f64,
        limit: Option<f64>,
        tif: String,
        order_ref: String,
    ) -> PyResult<()> {
        let asked = Asked {
            symbol,
            side,
            quantity,
            limit,
            tif,
        };
        later(&self.inner, done, place(asked, order_ref))
    }

    /// Changes a working order's total quantity or limit price: its state after.
    #[pyo3(signature = (order_ref, quantity=None, limit=None))]
    fn modify_order(
        &self,
        py: Python<'_>,
        order_ref: String,
        quantity: Option<f64>,
        limit: Option<f64>,
    ) -> PyResult<OrderTuple> {
        interruptible(py, &self.inner, modify(order_ref, quantity, limit))
    }

    #[pyo3(signature = (done, order_ref, quantity=None, limit=None))]
    fn modify_order_async(
        &self,
        done: Py<PyAny>,
        order_ref: String,
        quantity: Option<f64>,
        limit: Option<f64>,
    ) -> PyResult<()> {
        later(&self.inner, done, modify(order_ref, quantity, limit))
    }

    /// Cancels the order `order_ref`: its state after.
    fn cancel_order(&self, py: Python<'_>, order_ref: String) -> PyResult<OrderTuple> {
        interruptible(py, &self.inner, cancel(order_ref))
    }

    fn cancel_order_async(&self, done: Py<PyAny>, order_ref: String) -> PyResult<()> {
        later(&self.inner, done, cancel(order_ref))
    }

    /// Cancels every working order of the session's: how many.
    fn cancel_all(&self, py: Python<'_>) -> PyResult<usize> {
        interruptible(py, &self.inner, cancel_all)
    }

    fn cancel_all_async(&self, done: Py<PyAny>) -> PyResult<()> {
        later(&self.inner, done, cancel_all)
    }

    /// The session's orders.
    fn orders(&self, py: Python<'_>) -> PyResult<Vec<OrderTuple>> {
        interruptible(py, &self.inner, |inner| {
            inner.desk.orders(&inner.cfg, inner.sup()?)
        })
    }

    /// The session's fills.
    fn fills(&self, py: Python<'_>) -> PyResult<Vec<FillTuple>> {
        interruptible(py, &self.inner, |inner| {
            inner.desk.fills(&inner.cfg, inner.sup()?)
        })
    }

    /// The broker's positions.
    #[pyo3(signature = (timeout=None))]
    fn positions(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<PositionTuple>> {
        interruptible(
            py,
            &self.inner,
            asking(trading::positions, self.timeout(timeout)?),
        )
    }

    #[pyo3(signature = (done, timeout=None))]
    fn positions_async(&self, done: Py<PyAny>, timeout: Option<f64>) -> PyResult<()> {
        later(
            &self.inner,
            done,
            asking(trading::positions, self.timeout(timeout)?),
        )
    }

    /// The account's figures.
    #[pyo3(signature = (timeout=None))]
    fn account(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<AccountTuple> {
        interruptible(
            py,
            &self.inner,
            asking(trading::account, self.timeout(timeout)?),
        )
    }

    #[pyo3(signature = (done, timeout=None))]
    fn account_async(&self, done: Py<PyAny>, timeout: Option<f64>) -> PyResult<()> {
        later(
            &self.inner,
            done,
            asking(trading::account, self.timeout(timeout)?),
        )
    }

    /// Up to `max` changes of the book as `("order", order)` or `("fill", fill)`, oldest
    /// first, without waiting; raises their end once nothing is queued and nothing more will
    /// come. Refused unless the session trades.
    fn take_order_events(&self, max: usize) -> PyResult<Vec<Told>> {
        self.not_forgotten()?;
        raise(trading::trading_on(&self.inner.cfg))?;
        match self.inner.desk.events.take(max) {
            Taken::Ended(why) => Err(why.into_pyerr()),
            Taken::Items(told) => Ok(told),
        }
    }

    /// Calls `waker()` once when an order event or their end arrives; `False` (nothing
    /// registered) if one is there already. `None` unregisters.
    fn set_order_waker(&self, waker: Option<Py<PyAny>>) -> PyResult<bool> {
        self.not_forgotten()?;
        Ok(self.inner.desk.events.set_waker(waker))
    }

    /// Waits, without the GIL, until an order event or their end is there, at most
    /// `timeout` seconds; whether one is.
    fn wait_order_events(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = raise(arguments::wait_timeout(timeout))?;
        self.not_forgotten()?;
        let inner = self.inner.clone();
        Ok(py.detach(move || inner.desk.events.wait(timeout)))
    }

    /// One round trip to the worker and back, in seconds.
    #[pyo3(signature = (timeout=None))]
    fn ping(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<f64> {
        let timeout = self.timeout(timeout)?;
        let inner = self.inner.clone();
        raise(py.detach(move || inner.ping(timeout)))
    }

    #[pyo3(signature = (done, timeout=None))]
    fn ping_async(&self, done: Py<PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = self.timeout(timeout)?;
        later(&self.inner, done, move |inner| inner.ping(timeout))
    }

    #[pyo3(signature = (symbol, bar_seconds, duration_seconds, end=None, timeout=None))]
    fn history(
        &self,
        py: Python<'_>,
        symbol: String,
        bar_seconds: u32,
        duration_seconds: u64,
        end: Option<i64>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<Bar>> {
        let request = raise(history_request(symbol, bar_seconds, duration_seconds, end))?;
        let timeout = self.timeout(timeout)?;
        interruptible(py, &self.inner, move |inner| {
            inner.history(&request, timeout)
        })
    }

    #[pyo3(signature = (done, symbol, bar_seconds, duration_seconds, end=None, timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn history_async(
        &self,
        done: Py<PyAny>,
        symbol: String,
        bar_seconds: u32,
        duration_seconds: u64,
        end: Option<i64>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let request = raise(history_request(symbol, bar_seconds, duration_seconds, end))?;
        let timeout = self.timeout(timeout)?;
        later(&self.inner, done, move |inner| {
            inner.history(&request, timeout).map(BarList)
        })
    }

    /// One more stream wants `symbols` in live bars of `bar_seconds` (all or none, at once:
    /// refused if one streams another size); [`subscribe`](Self::subscribe) then makes them,
    /// and [`release`](Self::release) lets them go once the stream ends.
    fn want(&self, symbols: Vec<String>, bar_seconds: u32) -> PyResult<()> {
        self.not_forgotten()?;
        raise(arguments::check_subscription(&symbols, bar_seconds))?;
        raise(self.inner.want(&symbols, bar_seconds))
    }

    /// Brings the worker to what is wanted of `symbols` (subscribes those not streaming).
    fn subscribe(&self, py: Python<'_>, symbols: Vec<String>) -> PyResult<()> {
        interruptible(py, &self.inner, move |inner| inner.sync(&symbols))
    }

    fn subscribe_async(&self, done: Py<PyAny>, symbols: Vec<String>) -> PyResult<()> {
        later(&self.inner, done, move |inner| {
            inner.sync(&symbols).map(|()| None::<bool>)
        })
    }

    /// One stream fewer wants `symbols`: those nobody else streams are unsubscribed, on a
    /// thread of the session's (returns at once; a failure is logged). Nothing once closed.
    fn release(&self, symbols: Vec<String>) {
        if self.inner.life.is_closed() || self.inner.life.is_forgotten() {
            return;
        }
        self.inner.unwant(&symbols);
        let inner = self.inner.clone();
        let _ = self.inner.pool.submit(move || {
            if let Err(e) = inner.sync(&symbols) {
                if e.category != FailureKind::Closed {
                    tracing::warn!(?symbols, "live bars not unsubscribed: {}", e.message);
                }
            }
        });
    }

    /// What `symbol`'s stream is now: `not_subscribed`, `subscribing`, `refused`,
    /// `streaming`, `delayed`, `stalled` or `interrupted`.
    fn symbol_state(&self, symbol: &str) -> &'static str {
        self.inner.subs.state(symbol)
    }

    /// Up to `max` buffered live bars as `(symbol, bar)` and news of the symbols as
    /// `(symbol, (what, kind, code, message))`, oldest first, without waiting; raises the
    /// stream's end once nothing is buffered and nothing more will come.
    fn take_bars(&self, max: usize) -> PyResult<Vec<(String, Item)>> {
        self.not_forgotten()?;
        match self.inner.bars.take(max) {
            Taken::Ended(why) => Err(why.into_pyerr()),
            Taken::Items(bars) => Ok(self.inner.subs.name(bars)),
        }
    }

    /// Calls `waker()` once when a bar or the stream's end arrives; `False` (nothing
    /// registered) if one is there already. `None` unregisters.
    fn set_waker(&self, waker: Option<Py<PyAny>>) -> PyResult<bool> {
        self.not_forgotten()?;
        Ok(self.inner.bars.set_waker(waker))
    }

    /// Waits, without the GIL, until a bar or the stream's end is there, at most `timeout`
    /// seconds; whether one is.
    fn wait_bars(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = raise(arguments::wait_timeout(timeout))?;
        self.not_forgotten()?;
        let bars = self.inner.bars.clone();
        Ok(py.detach(move || bars.wait(timeout)))
    }

    /// The managed accounts the broker reported (none before `connect`).
    fn accounts(&self) -> Vec<String> {
        self.inner.sup().map(|s| s.accounts()).unwrap_or_default()
    }

    /// The current worker's process id.
    #[getter]
    fn worker_pid(&self) -> Option<u32> {
        self.inner.sup().ok().and_then(|s| s.stats().worker_pid)
    }

    /// Counters: workers restarted, requests that failed on a dead worker, live bars taken
    /// in, dropped (buffer full) and buffered, and events the current worker's connection
    /// dropped (its own buffer full).
    fn stats(&self) -> HashMap<&'static str, u64> {
        if self.inner.life.is_forgotten() {
            // Its locks may be held by the parent's threads, which do not exist here.
            return HashMap::new();
        }
        let (received, dropped, buffered) = self.inner.bars.counts();
        let (restarts, failed, events_dropped) = self
            .inner
            .sup()
            .map(|s| {
                let st = s.stats();
                (
                    u64::from(st.restarts),
                    st.failed_requests,
                    st.bridge.dropped_events,
                )
            })
            .unwrap_or_default();
        HashMap::from([
            ("restarts", restarts),
            ("failed_requests", failed),
            ("bars_received", received),
            ("bars_dropped", dropped),
            ("bars_buffered", buffered as u64),
            ("events_dropped", events_dropped),
            ("order_events_dropped", self.inner.desk.events.counts().1),
        ])
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.life.is_closed() || self.inner.life.is_forgotten()
    }

    /// Stops the worker (it disconnects from the broker and exits) and ends the stream.
    fn close(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || inner.close());
    }

    /// Closes on a thread of its own and answers `done`: `True`. Once the interpreter is
    /// exiting (no thread of the library can answer then) closes here: `False`.
    fn close_async(&self, py: Python<'_>, done: Py<PyAny>) -> bool {
        let inner = self.inner.clone();
        if crate::interpreter::exiting() {
            py.detach(move || inner.close());
            return false;
        }
        let done = Arc::new(Mutex::new(Some(done)));
        let for_thread = done.clone();
        // Not on the pool: closing waits for the pool.
        let spawned = std::thread::Builder::new()
            .name("ibbridge-close".into())
            .spawn(move || {
                inner.close();
                if let Some(done) = for_thread.lock().take() {
                    answer(done, Ok::<Option<bool>, Failure>(None));
                }
            });
        if let Err(e) = spawned {
            if let Some(done) = done.lock().take() {
                let why = format!("cannot close on a thread: {e}");
                answer::<Option<bool>>(done, Err(Failure::new(FailureKind::Error, why)));
            }
        }
        true
    }

    /// In a process forked from the one that made this session: forgets it (its worker,
    /// threads and memory are the parent's), so that nothing of it is used or closed here.
    fn forget(&self) {
        if self.inner.life.forget() {
            // Never dropped here: dropping would close what belongs to the parent.
            std::mem::forget(self.inner.clone());
        }
    }
}

/// A question to the broker (`ask`, with its timeout), as a call of the pool runs it.
fn asking<T: 'static>(
    ask: fn(&Supervisor, Duration) -> Result<T, Failure>,
    timeout: Duration,
) -> impl FnOnce(&Inner) -> Result<T, Failure> + Send + 'static {
    move |inner| ask(&*inner.sup()?, timeout)
}

/// A placement, as a call of the pool runs it.
fn place(
    asked: Asked,
    order_ref: String,
) -> impl FnOnce(&Inner) -> Result<OrderTuple, Failure> + Send + 'static {
    move |inner| {
        inner
            .desk
            .place_order(&inner.cfg, inner.sup()?, asked, order_ref)
    }
}

/// A change of an order, as a call of the pool runs it.
fn modify(
    order_ref: String,
    quantity: Option<f64>,
    limit: Option<f64>,
) -> impl FnOnce(&Inner) -> Result<OrderTuple, Failure> + Send + 'static {
    let change = OrderChange {
        order_ref,
        quantity,
        limit,
    };
    move |inner| inner.desk.modify_order(&inner.cfg, inner.sup()?, change)
}

/// A cancel, as a call of the pool runs it.
fn cancel(
    order_ref: String,
) -> impl FnOnce(&Inner) -> Result<OrderTuple, Failure> + Send + 'static {
    move |inner| {
        inner
            .desk
            .cancel_order(&inner.cfg, inner.sup()?, &order_ref)
    }
}

/// Cancelling every working order, as a call of the pool runs it.
fn cancel_all(inner: &Inner) -> Result<usize, Failure> {
    inner.desk.cancel_all(&inner.cfg, inner.sup()?)
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.closed() {
            return;
        }
        // Dropped by the garbage collector, with the GIL: closing waits, so not here.
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("ibbridge-close".into())
            .spawn(move || inner.close());
        if spawned.is_err() {
            self.inner.life.shutdown_now();
        }
    }
}
