//! A session as Python holds it ([`Core`]): the configuration, and once connected the
//! runner's supervisor over this library's workers, the pump of live bars and the pool that
//! asynchronous calls wait on.
//!
//! Invariants: blocking calls release the GIL for as long as they wait, and the long ones
//! (connect, history, subscribe) look for Ctrl-C every 100 ms; asynchronous calls return at
//! once and answer through their `done(error, value)` callback, called exactly once (on a
//! thread of the session's pool, or at once if the call is refused); once `close` has
//! returned no worker of the session runs (a connect or a replacement under way stops the
//! worker it started) and the stream has ended; a session dropped unclosed is closed on a
//! thread of its own; a session inherited by a forked child is forgotten there, never closed
//! (its worker is the parent's).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge::protocol::{HistoryRequest, Reply, Request, SubscribeRequest};
use crossbeam_channel::RecvTimeoutError;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::BoundObject;
use runner::config::{BackendKind, Config, Overrides};
use runner::supervisor::Supervisor;
use runner::worker_setup::RunJournal;

use crate::pool::{Pool, Refused};
use crate::stream::{self, Bars, Taken};
use crate::{Bar, Failure};

/// How long closing waits for the calls under way to hear back.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The program `python -c` runs in a worker: this library, loaded from its file (the first
/// argument) without the package around it, and with the working directory (which `-c`
/// puts first) off the module path: nothing there can stand in for the standard library.
/// (Not `-I`, which would also ignore `PYTHONHOME`, which some installations need.)
const WORKER_PROGRAM: &str =
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; \
     import importlib.util as u; \
     s = u.spec_from_file_location('ibbridge._native', sys.argv[1]); \
     m = u.module_from_spec(s); s.loader.exec_module(m); m.serve_worker(sys.argv[1])";

/// The build id of this library as it was when it was imported ([`remember_image`]): a worker
/// started from a file replaced since then (a `pip install` of another build) is refused, as
/// the code loaded here is not the new file's.
static BUILD_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Takes the build id of this library's file `image`, once (at import).
#[pyfunction]
pub(crate) fn remember_image(image: PathBuf) {
    BUILD_ID.get_or_init(|| worker::build_id_of(&image));
}

fn closed_failure() -> Failure {
    if crate::exiting() {
        Failure::new("closed", "the interpreter is exiting")
    } else {
        Failure::new("closed", "the session is closed")
    }
}

/// How to start a worker: the interpreter and this library's file.
struct Program {
    python: PathBuf,
    image: PathBuf,
}

/// A live subscription's symbol and bar size; `live`: made (and restored on every new
/// worker). An id is never given to another symbol (the supervisor holds it for the run).
struct Sub {
    symbol: String,
    bar_seconds: u32,
    live: bool,
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
    /// Held while the session closes: a second `close` returns when the first is done.
    closing: Mutex<()>,
    /// The supervisor of a connect under way: `close` shuts it down.
    starting: Mutex<Option<Arc<Supervisor>>>,
    /// Symbols asked for, by subscription id (their index).
    subs: Mutex<Vec<Sub>>,
    bars: Arc<Bars>,
    pool: Pool,
    closed: Arc<AtomicBool>,
    /// Inherited by a forked child: nothing of it is used or closed there.
    forgotten: AtomicBool,
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
        if self.closed.load(Ordering::Acquire) || crate::exiting() {
            return Err(closed_failure());
        }
        if self.forgotten.load(Ordering::Acquire) {
            return Err(Failure::new(
                "closed",
                "this session belongs to the parent process (os.fork): open a new one here",
            ));
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
            return match sup.gave_up() {
                Some(e) => Err(e.into()),
                None => Ok(sup.accounts()),
            };
        }
        if self.closed.load(Ordering::Acquire)
            || crate::exiting()
            || self.forgotten.load(Ordering::Acquire)
        {
            return Err(self.sup().err().unwrap_or_else(closed_failure));
        }
        if std::env::var_os(worker::OPTIONS_ENV).is_some() {
            // Started as a worker (sys.executable is this very program, as in a frozen
            // application) and opening a session instead of serving: every worker would start
            // another.
            return Err(Failure::new(
                "error",
                format!(
                    "this process was started as a session's worker ({} is set): it cannot \
                     open a session",
                    worker::OPTIONS_ENV
                ),
            ));
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
            self.program.image.clone().into_os_string(),
        ];
        // The worker's code is this library, not the interpreter: both ends name its file.
        setup.client.channel.build_id = BUILD_ID
            .get_or_init(|| worker::build_id_of(&self.program.image))
            .clone();
        let (sup, events) = Supervisor::begin(setup);
        {
            // From here `close` can end the start (it shuts the supervisor down).
            let _conn = self.conn.lock();
            if self.closed.load(Ordering::Acquire) {
                return Err(closed_failure());
            }
            *self.starting.lock() = Some(sup.clone());
        }
        let first = sup.connect_first();
        self.starting.lock().take();
        if let Err(e) = first {
            sup.shutdown();
            return Err(match self.closed.load(Ordering::Acquire) {
                true => closed_failure(),
                false => e.into(),
            });
        }
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
        let mut conn = self.conn.lock();
        // Closed while the worker started: `close` found nothing to stop, so it stops here
        // (`close` marks the session closed before it looks at `conn`).
        if self.closed.load(Ordering::Acquire) {
            drop(conn);
            sup.shutdown();
            let _ = pump.join();
            return Err(closed_failure());
        }
        *conn = Some(Connected {
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
                match subs.iter().position(|s| s.symbol == *symbol) {
                    Some(i) if subs[i].live && subs[i].bar_seconds == bar_seconds => continue,
                    Some(i) if subs[i].live => {
                        return Err(Failure::new(
                            "config",
                            format!(
                                "{symbol} already streams {}-second bars in this session",
                                subs[i].bar_seconds
                            ),
                        ))
                    }
                    Some(i) => {
                        // Refused before: asked for again, under the id it was given.
                        subs[i].bar_seconds = bar_seconds;
                        i
                    }
                    None => {
                        subs.push(Sub {
                            symbol: symbol.clone(),
                            bar_seconds,
                            live: false,
                        });
                        subs.len() - 1
                    }
                }
            };
            let sub = SubscribeRequest {
                symbol: symbol.clone(),
                id: id as u32,
                bar_seconds,
            };
            let made = sup.subscribe(sub, self.cfg.request_timeout());
            // Not live unless the worker said so: asked for again, it is sent again (making a
            // subscription again replaces it).
            if let Some(s) = self.subs.lock().get_mut(id) {
                s.live = made.is_ok();
            }
            made?;
        }
        Ok(())
    }

    fn close(&self) {
        if self.forgotten.load(Ordering::Acquire) {
            return;
        }
        let _one = self.closing.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // `closed` is set: a connect that has not yet recorded its supervisor will not.
        let starting = {
            let _conn = self.conn.lock();
            self.starting.lock().take()
        };
        if let Some(sup) = starting {
            sup.shutdown();
        }
        let conn = self.conn.lock().take();
        if let Some(mut c) = conn {
            c.sup.shutdown();
            if let Some(pump) = c.pump.take() {
                let _ = pump.join();
            }
        } else {
            stream::wake(self.bars.end(closed_failure()));
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
    check_symbol(&symbol)?;
    if bar_seconds == 0 || duration_seconds == 0 {
        return Err(Failure::new(
            "config",
            "bar_seconds and duration_seconds must be above 0",
        ));
    }
    // 1970 to the end of year 9999: times the brokers' own arithmetic takes.
    if end.is_some_and(|e| !(0..=253_402_300_799).contains(&e)) {
        return Err(Failure::new(
            "config",
            "end: Unix seconds between 1970 and the year 9999",
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
    /// Runs `f` on the session's pool and waits for it without the GIL, looking for Ctrl-C
    /// (and any other signal Python handles) every 100 ms; on one, raises it and leaves `f`
    /// to finish on its own.
    fn interruptible<T: Send + 'static>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Inner) -> Result<T, Failure> + Send + 'static,
    ) -> PyResult<T> {
        // In a forked child the pool's threads are the parent's: nothing would run the call.
        self.not_forgotten()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let inner = self.inner.clone();
        if let Err(refused) = self.inner.pool.submit(move || {
            let _ = tx.send(f(&inner));
        }) {
            return Err(refusal(refused).into_pyerr());
        }
        loop {
            match py.detach(|| rx.recv_timeout(SIGNAL_CHECK)) {
                Ok(r) => return raise(r),
                Err(RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(
                        Failure::new("error", "the call ended without an answer").into_pyerr()
                    )
                }
            }
        }
    }

    /// Runs `f` on the session's pool and answers `done` with its result. Raises instead
    /// once the interpreter is exiting (no thread of the library could answer then).
    fn later<T>(
        &self,
        done: Py<PyAny>,
        f: impl FnOnce(&Inner) -> Result<T, Failure> + Send + 'static,
    ) -> PyResult<()>
    where
        T: for<'py> IntoPyObject<'py>,
    {
        if crate::exiting() {
            return Err(closed_failure().into_pyerr());
        }
        self.not_forgotten()?;
        let inner = self.inner.clone();
        let answered = Arc::new(Mutex::new(Some(done)));
        let for_job = answered.clone();
        let submitted = self.inner.pool.submit(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&inner)))
                .unwrap_or_else(|_| Err(Failure::new("error", "internal error (a panic)")));
            if let Some(done) = for_job.lock().take() {
                answer(done, result);
            }
        });
        if let Err(refused) = submitted {
            if let Some(done) = answered.lock().take() {
                answer::<Option<bool>>(done, Err(refusal(refused)));
            }
        }
        Ok(())
    }

    /// Refuses a session inherited by a forked child (its locks may be held by threads of
    /// the parent's, which do not exist there).
    fn not_forgotten(&self) -> PyResult<()> {
        match self.inner.forgotten.load(Ordering::Acquire) {
            true => Err(Failure::new(
                "closed",
                "this session belongs to the parent process (os.fork): open a new one here",
            )
            .into_pyerr()),
            false => Ok(()),
        }
    }

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

/// How often a blocking call looks for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

fn refusal(refused: Refused) -> Failure {
    match refused {
        Refused::Closed => closed_failure(),
        Refused::NoThread => Failure::new("error", "cannot start a thread for the call"),
    }
}

#[pymethods]
impl Core {
    #[new]
    #[pyo3(signature = (python, image, config=None, backend=None, gateway=None,
        client_id=None, seed=None, speed=None, buffer=65536))]
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
        remember_image(image.clone());
        Ok(Core {
            inner: Arc::new(Inner {
                cfg,
                program: Program { python, image },
                conn: Mutex::new(None),
                connecting: Mutex::new(()),
                closing: Mutex::new(()),
                starting: Mutex::new(None),
                subs: Mutex::new(Vec::new()),
                bars: Arc::new(Bars::new(buffer)),
                pool: Pool::new(),
                closed: Arc::new(AtomicBool::new(false)),
                forgotten: AtomicBool::new(false),
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
        self.interruptible(py, Inner::connect)
    }

    fn connect_async(&self, done: Py<PyAny>) -> PyResult<()> {
        self.later(done, Inner::connect)
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
        self.later(done, move |inner| inner.ping(timeout))
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
        self.interruptible(py, move |inner| inner.history(&request, timeout))
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
        self.later(done, move |inner| inner.history(&request, timeout))
    }

    fn subscribe(&self, py: Python<'_>, symbols: Vec<String>, bar_seconds: u32) -> PyResult<()> {
        raise(check_bar_seconds(bar_seconds))?;
        for s in &symbols {
            raise(check_symbol(s))?;
        }
        self.interruptible(py, move |inner| inner.subscribe(&symbols, bar_seconds))
    }

    fn subscribe_async(
        &self,
        done: Py<PyAny>,
        symbols: Vec<String>,
        bar_seconds: u32,
    ) -> PyResult<()> {
        raise(check_bar_seconds(bar_seconds))?;
        for s in &symbols {
            raise(check_symbol(s))?;
        }
        self.later(done, move |inner| {
            inner
                .subscribe(&symbols, bar_seconds)
                .map(|()| None::<bool>)
        })
    }

    /// Up to `max` buffered live bars as `(symbol, bar)`, oldest first, without waiting;
    /// raises the stream's end once nothing is buffered and nothing more will come.
    fn take_bars(&self, max: usize) -> PyResult<Vec<(String, Bar)>> {
        self.not_forgotten()?;
        match self.inner.bars.take(max) {
            Taken::Ended(why) => Err(why.into_pyerr()),
            Taken::Bars(bars) => {
                let subs = self.inner.subs.lock();
                Ok(bars
                    .into_iter()
                    .filter_map(|(id, bar)| {
                        let sub = subs.get(id as usize)?;
                        Some((sub.symbol.clone(), bar))
                    })
                    .collect())
            }
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
        if !(timeout.is_finite() && timeout >= 0.0) {
            return Err(Failure::new("config", "timeout: not a number of seconds").into_pyerr());
        }
        self.not_forgotten()?;
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
    /// in, dropped (buffer full) and buffered, and events the current worker's connection
    /// dropped (its own buffer full).
    fn stats(&self) -> HashMap<&'static str, u64> {
        if self.inner.forgotten.load(Ordering::Acquire) {
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
        ])
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire) || self.inner.forgotten.load(Ordering::Acquire)
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
        if crate::exiting() {
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
                answer::<Option<bool>>(
                    done,
                    Err(Failure::new(
                        "error",
                        format!("cannot close on a thread: {e}"),
                    )),
                );
            }
        }
        true
    }

    /// In a process forked from the one that made this session: forgets it (its worker,
    /// threads and memory are the parent's), so that nothing of it is used or closed here.
    fn forget(&self) {
        if !self.inner.forgotten.swap(true, Ordering::AcqRel) {
            // Never dropped here: dropping would close what belongs to the parent.
            std::mem::forget(self.inner.clone());
        }
    }
}

/// The longest symbol taken (IB's longest local symbols, options', are about 21).
const MAX_SYMBOL: usize = 128;

fn check_symbol(symbol: &str) -> Result<(), Failure> {
    if symbol.trim().is_empty() {
        return Err(Failure::new("config", "symbol: empty"));
    }
    if symbol.len() > MAX_SYMBOL {
        return Err(Failure::new(
            "config",
            format!("symbol: {} bytes, at most {MAX_SYMBOL}", symbol.len()),
        ));
    }
    Ok(())
}

fn check_bar_seconds(bar_seconds: u32) -> Result<(), Failure> {
    if bar_seconds == 0 {
        return Err(Failure::new("config", "bar_seconds must be above 0"));
    }
    Ok(())
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.inner.closed.load(Ordering::Acquire) || self.inner.forgotten.load(Ordering::Acquire)
        {
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
