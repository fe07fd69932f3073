//! A session as Python holds it ([`Core`]): the configuration, and once connected the
//! runner's supervisor over this library's workers, the pump of live bars and the pool that
//! asynchronous calls wait on.
//!
//! Invariants: blocking calls release the GIL for as long as they wait; asynchronous calls
//! return at once and answer through their `done(error, value)` callback, called exactly
//! once, on a thread of the session's pool; closing stops the supervisor (its worker
//! disconnects from the broker and exits), ends the stream and waits, bounded, for the calls
//! under way; a session dropped unclosed is closed on a thread of its own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge::protocol::{HistoryRequest, Reply, Request, SubscribeRequest};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::BoundObject;
use runner::config::{BackendKind, Config, Overrides};
use runner::supervisor::Supervisor;
use runner::worker_setup::RunJournal;

use crate::pool::Pool;
use crate::stream::{self, Bars, Taken};
use crate::{Bar, Failure};

/// How long closing waits for the calls under way to hear back.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The program `python -c` runs in a worker: the package from where the session found it.
const WORKER_PROGRAM: &str = "import sys; sys.path.insert(0, sys.argv[1]); \
     from ibbridge import _native; _native.serve_worker(_native.__file__)";

/// How to start a worker: the interpreter, the directory holding the `ibbridge` package, and
/// this library's file.
struct Program {
    python: PathBuf,
    packages: PathBuf,
    image: PathBuf,
}

struct Connected {
    sup: Arc<Supervisor>,
    pump: Option<JoinHandle<()>>,
    _journal: RunJournal,
}

struct Inner {
    cfg: Config,
    program: Program,
    conn: Mutex<Option<Connected>>,
    /// Held while a worker is being started: one connection per session.
    connecting: Mutex<()>,
    /// Symbols subscribed, by subscription id (their index), with the bar size.
    subs: Mutex<Vec<(String, u32)>>,
    bars: Arc<Bars>,
    pool: Pool,
    closed: Arc<AtomicBool>,
}

/// A session's native core.
#[pyclass(module = "ibbridge._native")]
pub(crate) struct Core {
    inner: Arc<Inner>,
}

fn config(
    file: Option<PathBuf>,
    backend: Option<String>,
    gateway: Option<String>,
    client_id: Option<String>,
    seed: Option<String>,
    speed: Option<f64>,
) -> Result<Config, Failure> {
    let flags = Overrides {
        backend,
        gateway,
        client_id,
        seed,
        ..Overrides::default()
    };
    // The environment's RUNNER_* variables are the binary's; a library session is what its
    // arguments say.
    let mut cfg =
        Config::load(file.as_deref(), |_| None, &flags).map_err(|e| Failure::new("config", e.0))?;
    if let Some(speed) = speed {
        cfg.sim.speed = speed;
    }
    cfg.validate().map_err(|e| Failure::new("config", e.0))?;
    Ok(cfg)
}

impl Inner {
    fn sup(&self) -> Result<Arc<Supervisor>, Failure> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Failure::new("closed", "the session is closed"));
        }
        match &*self.conn.lock() {
            Some(c) => Ok(c.sup.clone()),
            None => Err(Failure::new(
                "closed",
                "the session is not connected: call connect() first",
            )),
        }
    }

    /// Starts the worker and connects it to the broker (nothing if already done); the
    /// broker's accounts.
    fn connect(&self) -> Result<Vec<String>, Failure> {
        let _one = self.connecting.lock();
        if let Ok(sup) = self.sup() {
            return Ok(sup.accounts());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Failure::new("closed", "the session is closed"));
        }
        let mut cfg = self.cfg.clone();
        let journal = RunJournal::for_run(&mut cfg);
        let mut setup = journal
            .setup(
                &cfg,
                self.program.python.clone(),
                worker::SimFaults::default(),
            )
            .map_err(|e| Failure::new("worker_gone", format!("cannot start the worker: {e}")))?;
        setup.exe_args = vec![
            "-c".into(),
            WORKER_PROGRAM.into(),
            self.program.packages.clone().into_os_string(),
        ];
        // The worker's code is this library, not the interpreter: both ends name its file.
        setup.client.channel.build_id = worker::build_id_of(&self.program.image);
        let (sup, events) = Supervisor::start(setup)?;
        let pump = {
            let (bars, sup, closed) = (self.bars.clone(), sup.clone(), self.closed.clone());
            std::thread::Builder::new()
                .name("ibbridge-bars".into())
                .spawn(move || stream::pump(events, bars, sup, closed))
        };
        let pump = match pump {
            Ok(p) => p,
            Err(e) => {
                sup.shutdown();
                return Err(Failure::new(
                    "error",
                    format!("cannot start the bar pump: {e}"),
                ));
            }
        };
        let accounts = sup.accounts();
        *self.conn.lock() = Some(Connected {
            sup,
            pump: Some(pump),
            _journal: journal,
        });
        Ok(accounts)
    }

    /// One round trip through the bridge to the worker (not the broker).
    fn ping(&self, timeout: Duration) -> Result<f64, Failure> {
        let sup = self.sup()?;
        let started = Instant::now();
        match sup.request(
            Request::Ping {
                payload: Vec::new(),
            },
            timeout,
        )? {
            Reply::Pong { .. } => Ok(started.elapsed().as_secs_f64()),
            other => Err(Failure::new("error", format!("{other:?} to ping"))),
        }
    }

    fn history(&self, request: &HistoryRequest, timeout: Duration) -> Result<Vec<Bar>, Failure> {
        let sup = self.sup()?;
        let bars = sup.history(request, timeout)?;
        Ok(bars.into_iter().map(Bar::from).collect())
    }

    /// Subscribes each of `symbols` not yet subscribed to live bars of `bar_seconds`.
    fn subscribe(&self, symbols: &[String], bar_seconds: u32) -> Result<(), Failure> {
        let sup = self.sup()?;
        for symbol in symbols {
            let id = {
                let mut subs = self.subs.lock();
                match subs.iter().position(|(s, _)| s == symbol) {
                    Some(i) if subs[i].1 == bar_seconds => continue,
                    Some(i) => {
                        return Err(Failure::new(
                            "error",
                            format!(
                                "{symbol} already streams {}-second bars in this session",
                                subs[i].1
                            ),
                        ))
                    }
                    None => {
                        subs.push((symbol.clone(), bar_seconds));
                        subs.len() - 1
                    }
                }
            };
            let sub = SubscribeRequest {
                symbol: symbol.clone(),
                id: id as u32,
                bar_seconds,
            };
            if let Err(e) = sup.subscribe(sub, self.cfg.request_timeout()) {
                // Not subscribed: the symbol may be asked for again.
                let mut subs = self.subs.lock();
                if subs.len() == id + 1 {
                    subs.pop();
                } else if let Some(s) = subs.get_mut(id) {
                    s.0.clear();
                }
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let conn = self.conn.lock().take();
        if let Some(mut c) = conn {
            c.sup.shutdown();
            if let Some(pump) = c.pump.take() {
                let _ = pump.join();
            }
        } else {
            stream::wake(
                self.bars
                    .end(Failure::new("closed", "the session is closed")),
            );
        }
        let left = self.pool.close(CLOSE_GRACE);
        if left > 0 {
            tracing::warn!(left, "calls still under way when the session closed");
        }
    }
}

/// Calls `done(None, value)` or `done((category, kind, code, message), None)`.
fn answer<T>(done: Py<PyAny>, result: Result<T, Failure>)
where
    T: for<'py> IntoPyObject<'py>,
{
    let _ = crate::attach(|py| {
        let called = match result {
            Ok(v) => v
                .into_pyobject(py)
                .map_err(Into::into)
                .and_then(|v| done.call1(py, (py.None(), v.into_bound().into_any()))),
            Err(f) => done.call1(py, (f.args(), py.None())),
        };
        if let Err(e) = called {
            e.print(py);
        }
    });
}

fn raise<T>(r: Result<T, Failure>) -> PyResult<T> {
    r.map_err(Failure::into_pyerr)
}

fn history_request(
    symbol: String,
    bar_seconds: u32,
    duration_seconds: u64,
    end: Option<i64>,
) -> Result<HistoryRequest, Failure> {
    if symbol.trim().is_empty() {
        return Err(Failure::new("config", "symbol: empty"));
    }
    if bar_seconds == 0 || duration_seconds == 0 {
        return Err(Failure::new(
            "config",
            "bar_seconds and duration_seconds must be above 0",
        ));
    }
    Ok(HistoryRequest {
        symbol,
        bar_seconds,
        duration_seconds,
        end,
    })
}

impl Core {
    fn timeout(&self, seconds: Option<f64>) -> Result<Duration, Failure> {
        match seconds {
            None => Ok(Duration::from_secs(self.inner.cfg.history.timeout_seconds)),
            Some(s) if s.is_finite() && s > 0.0 && s <= 7.0 * 86400.0 => {
                Ok(Duration::from_secs_f64(s))
            }
            Some(s) => Err(Failure::new(
                "config",
                format!("timeout: {s} is not a number of seconds above 0 and within a week"),
            )),
        }
    }
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (python, packages, image, config=None, backend=None, gateway=None,
        client_id=None, seed=None, speed=None, buffer=65536))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        python: PathBuf,
        packages: PathBuf,
        image: PathBuf,
        config: Option<PathBuf>,
        backend: Option<String>,
        gateway: Option<String>,
        client_id: Option<i64>,
        seed: Option<i64>,
        speed: Option<f64>,
        buffer: usize,
    ) -> PyResult<Core> {
        crate::log::install(py);
        let cfg = raise(self::config(
            config,
            backend,
            gateway,
            client_id.map(|c| c.to_string()),
            seed.map(|s| s.to_string()),
            speed,
        ))?;
        if buffer == 0 {
            return Err(Failure::new("config", "buffer: at least 1 bar").into_pyerr());
        }
        Ok(Core {
            inner: Arc::new(Inner {
                cfg,
                program: Program {
                    python,
                    packages,
                    image,
                },
                conn: Mutex::new(None),
                connecting: Mutex::new(()),
                subs: Mutex::new(Vec::new()),
                bars: Arc::new(Bars::new(buffer)),
                pool: Pool::new(),
                closed: Arc::new(AtomicBool::new(false)),
            }),
        })
    }

    /// `sim` or `ibkr`.
    #[getter]
    fn backend(&self) -> &'static str {
        match self.inner.cfg.backend {
            BackendKind::Sim => "sim",
            BackendKind::Ibkr => "ibkr",
        }
    }

    /// The effective configuration, as TOML.
    fn config_toml(&self) -> String {
        self.inner.cfg.to_toml()
    }

    fn connect(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let inner = self.inner.clone();
        raise(py.detach(move || inner.connect()))
    }

    fn connect_async(&self, done: Py<PyAny>) {
        let inner = self.inner.clone();
        self.inner
            .pool
            .submit(move || answer(done, inner.connect()));
    }

    /// One round trip to the worker and back, in seconds.
    #[pyo3(signature = (timeout=None))]
    fn ping(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<f64> {
        let timeout = raise(self.timeout(timeout))?;
        let inner = self.inner.clone();
        raise(py.detach(move || inner.ping(timeout)))
    }

    #[pyo3(signature = (done, timeout=None))]
    fn ping_async(&self, done: Py<PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = raise(self.timeout(timeout))?;
        let inner = self.inner.clone();
        self.inner
            .pool
            .submit(move || answer(done, inner.ping(timeout)));
        Ok(())
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
        let timeout = raise(self.timeout(timeout))?;
        let inner = self.inner.clone();
        raise(py.detach(move || inner.history(&request, timeout)))
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
        let timeout = raise(self.timeout(timeout))?;
        let inner = self.inner.clone();
        self.inner
            .pool
            .submit(move || answer(done, inner.history(&request, timeout)));
        Ok(())
    }

    fn subscribe(&self, py: Python<'_>, symbols: Vec<String>, bar_seconds: u32) -> PyResult<()> {
        let inner = self.inner.clone();
        raise(py.detach(move || inner.subscribe(&symbols, bar_seconds)))
    }

    fn subscribe_async(&self, done: Py<PyAny>, symbols: Vec<String>, bar_seconds: u32) {
        let inner = self.inner.clone();
        self.inner.pool.submit(move || {
            answer(
                done,
                inner
                    .subscribe(&symbols, bar_seconds)
                    .map(|()| None::<bool>),
            )
        });
    }

    /// Up to `max` buffered live bars as `(symbol, bar)`, oldest first, without waiting;
    /// raises the stream's end once nothing is buffered and nothing more will come.
    fn take_bars(&self, max: usize) -> PyResult<Vec<(String, Bar)>> {
        match self.inner.bars.take(max) {
            Taken::Ended(why) => Err(why.into_pyerr()),
            Taken::Bars(bars) => {
                let subs = self.inner.subs.lock();
                Ok(bars
                    .into_iter()
                    .filter_map(|(id, bar)| {
                        let (symbol, _) = subs.get(id as usize)?;
                        Some((symbol.clone(), bar))
                    })
                    .collect())
            }
        }
    }

    /// Calls `waker()` once when a bar or the stream's end arrives; `False` (nothing
    /// registered) if one is there already. `None` unregisters.
    fn set_waker(&self, waker: Option<Py<PyAny>>) -> bool {
        self.inner.bars.set_waker(waker)
    }

    /// Waits, without the GIL, until a bar or the stream's end is there, at most `timeout`
    /// seconds; whether one is.
    fn wait_bars(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        if !(timeout.is_finite() && timeout >= 0.0) {
            return Err(Failure::new("config", "timeout: not a number of seconds").into_pyerr());
        }
        let bars = self.inner.bars.clone();
        let timeout = Duration::from_secs_f64(timeout.min(7.0 * 86400.0));
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
    /// in, dropped (buffer full) and buffered.
    fn stats(&self) -> HashMap<&'static str, u64> {
        let (received, dropped, buffered) = self.inner.bars.counts();
        let (restarts, failed) = self
            .inner
            .sup()
            .map(|s| {
                let st = s.stats();
                (u64::from(st.restarts), st.failed_requests)
            })
            .unwrap_or_default();
        HashMap::from([
            ("restarts", restarts),
            ("failed_requests", failed),
            ("bars_received", received),
            ("bars_dropped", dropped),
            ("bars_buffered", buffered as u64),
        ])
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Stops the worker (it disconnects from the broker and exits) and ends the stream.
    fn close(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || inner.close());
    }

    fn close_async(&self, done: Py<PyAny>) {
        let inner = self.inner.clone();
        // Not on the pool: closing waits for the pool.
        let spawned = std::thread::Builder::new()
            .name("ibbridge-close".into())
            .spawn(move || {
                inner.close();
                answer(done, Ok::<Option<bool>, Failure>(None));
            });
        if let Err(e) = spawned {
            tracing::error!("cannot close the session on a thread: {e}");
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        // Dropped by the garbage collector, with the GIL: closing waits, so not here.
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("ibbridge-close".into())
            .spawn(move || inner.close());
        if spawned.is_err() {
            if let Some(c) = &*self.inner.conn.lock() {
                c.sup.shutdown();
            }
        }
    }
}
