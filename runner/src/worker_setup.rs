//! What every worker of a run is started with ([`WorkerSetup`]), how it follows from the
//! runner's configuration ([`WorkerSetup::from_config`]), and the one set-up every front end
//! uses before it starts workers ([`prepare`]: the program the workers are, the simulated
//! broker's journal of the run, the setup on the journal's clock).
//!
//! Invariants: the runner and its workers use the same bridge settings (ring sizes, heartbeat,
//! hang timeout) and the same build id (the worker is the runner's own executable, or the file
//! an interpreter loads as the worker, [`WorkerProgram`]); the simulated market's clock is
//! fixed once per run, so a replacement worker continues the market of the worker it replaces;
//! a run's own journal lives exactly as long as its [`RunJournal`]; the worker forwards logs at
//! the most verbose level the runner shows for its `worker` or `ibapi` target; records of the
//! `ibapi` crate appear in the runner's log under the target `ibapi` (filterable on their own:
//! `RUNNER_LOG=info,ibapi=debug`), every other record of the worker under `worker`.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{LogLevel, LogRecord};
use bridge::ClientConfig;
use worker::options::{ContractSpec, IbkrOptions};
use worker::{BackendOptions, Handover, SimFaults, SimOptions, WorkerOptions};

use crate::config::{BackendKind, Config, SupervisorConfig};

/// What the supervisor needs to start workers.
#[derive(Debug, Clone)]
pub struct WorkerSetup {
    /// The executable to start as worker (the runner itself).
    pub exe: PathBuf,
    /// Arguments before the worker's own (an interpreter's: `-c <program>`); usually none.
    pub exe_args: Vec<std::ffi::OsString>,
    /// Options of every worker; the generation is filled in per start.
    pub options: WorkerOptions,
    /// Bridge settings.
    pub client: ClientConfig,
    /// How long `connect` may take, waiting for the broker included.
    pub handshake: Duration,
    /// Restart policy.
    pub policy: SupervisorConfig,
    /// Attach to this hub instead of starting workers (`None`: start them).
    pub hub: Option<HubTarget>,
}

/// A hub a program attaches to instead of starting a worker of its own: the hub's one
/// worker serves it (and the hub's other clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubTarget {
    /// The directory hubs are found in.
    pub dir: PathBuf,
    /// The hub's name.
    pub name: String,
    /// This program's name at the hub: the namespace of its order references.
    pub client: String,
    /// How long a lost hub is waited for before the run fails.
    pub wait: Duration,
}

impl WorkerSetup {
    /// The setup of the workers of a run with `cfg`, started from `exe`; `faults` are injected
    /// into the simulated market (tests only).
    pub fn from_config(cfg: &Config, exe: PathBuf, faults: SimFaults) -> WorkerSetup {
        let build_id = worker::build_id_of(&exe);
        let mut options = WorkerOptions::new(backend_options(cfg, faults));
        options.heartbeat_ms = cfg.bridge.heartbeat_ms;
        options.hang_timeout_ms = cfg.bridge.hang_timeout_ms;
        options.handshake_timeout_ms = cfg.bridge.handshake_timeout_ms;
        options.log_level = worker_log_level();
        let channel = bridge::channel::ChannelConfig {
            geometry: bridge::segment::Geometry {
                ring_capacity: cfg.bridge.ring_capacity,
                max_frame: cfg.bridge.max_frame,
            },
            heartbeat_interval: Duration::from_millis(cfg.bridge.heartbeat_ms),
            hang_timeout: Duration::from_millis(cfg.bridge.hang_timeout_ms),
            build_id,
            ..bridge::channel::ChannelConfig::default()
        };
        WorkerSetup {
            exe,
            exe_args: Vec::new(),
            options,
            client: ClientConfig {
                channel,
                log_sink: Arc::new(log_worker_record),
                spin: cfg.bridge.spin,
                ..ClientConfig::default()
            },
            handshake: Duration::from_millis(cfg.bridge.handshake_timeout_ms)
                + match cfg.backend {
                    BackendKind::Ibkr => Duration::from_secs(cfg.ibkr.connect_wait_seconds),
                    BackendKind::Sim | BackendKind::Replay => Duration::ZERO,
                }
                + match cfg.hub.over_nats {
                    true => Duration::from_secs(cfg.hub.wait_seconds),
                    false => Duration::ZERO,
                },
            policy: cfg.supervisor.clone(),
            hub: HubTarget::of(cfg, &format!("run-{}", std::process::id())),
        }
    }
}

impl HubTarget {
    /// The hub `cfg` names (`hub.name`), with `client` as this program's name there unless
    /// `hub.client` names one; `None` when no hub is named.
    pub fn of(cfg: &Config, client: &str) -> Option<HubTarget> {
        if cfg.hub.name.is_empty() || cfg.hub.over_nats {
            return None;
        }
        Some(HubTarget {
            dir: cfg.hub.directory(),
            name: cfg.hub.name.clone(),
            client: match cfg.hub.client.as_str() {
                "" => client.to_string(),
                named => named.to_string(),
            },
            wait: Duration::from_secs(cfg.hub.wait_seconds),
        })
    }
}

/// The program every worker of a run is: an executable started with the `worker` argument,
/// after the arguments an interpreter needs to load the worker's code (none for a program of
/// one's own), and the build id both ends present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerProgram {
    /// The executable started.
    pub exe: PathBuf,
    /// Arguments before the worker's own (an interpreter's: `-c <program> <library>`).
    pub args: Vec<OsString>,
    /// The build id the worker presents, when its code is not the executable's own (the
    /// library an interpreter loads); `None`: the executable's ([`worker::build_id_of`]).
    pub build_id: Option<String>,
}

impl WorkerProgram {
    /// Workers that are `exe` itself (the `runner` binary, or a program that serves as a
    /// worker when asked).
    pub fn executable(exe: PathBuf) -> WorkerProgram {
        WorkerProgram {
            exe,
            args: Vec::new(),
            build_id: None,
        }
    }

    /// Workers that are this very program. On Linux `/proc/self/exe` names the file this
    /// process runs even after the path on disk was replaced by a new build, so a restarted
    /// worker is always the same build as its runner; on macOS a replaced file is the new
    /// build, which the worker's hello then refuses as another build.
    pub fn this_program() -> Result<WorkerProgram, SetupError> {
        bridge::platform::own_executable()
            .map(WorkerProgram::executable)
            .map_err(|e| SetupError::Executable(Arc::new(e)))
    }

    /// Workers run by an interpreter `exe` with `args` (which load the worker's code), whose
    /// code has the build id `build_id`.
    pub fn interpreted(exe: PathBuf, args: Vec<OsString>, build_id: String) -> WorkerProgram {
        WorkerProgram {
            exe,
            args,
            build_id: Some(build_id),
        }
    }
}

/// Why the workers of a run cannot be set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SetupError {
    /// This program's executable cannot be found.
    Executable(Arc<std::io::Error>),
    /// The simulated broker's orders file cannot be used as this run's journal.
    Journal(JournalError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Executable(e) => write!(f, "cannot find this program's executable: {e}"),
            SetupError::Journal(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Executable(e) => Some(e.as_ref()),
            SetupError::Journal(e) => Some(e),
        }
    }
}

impl PartialEq for SetupError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SetupError::Executable(a), SetupError::Executable(b)) => a.kind() == b.kind(),
            (SetupError::Journal(a), SetupError::Journal(b)) => a == b,
            _ => false,
        }
    }
}

/// Why the simulated broker's orders file cannot be this run's journal (the worker's: the
/// journal is its simulated broker's).
pub use worker::JournalError;

/// The workers of a run, ready to start: their setup, and the simulated broker's journal the
/// run keeps for as long as any of them may live.
#[derive(Debug)]
pub struct PreparedRun {
    /// What every worker is started with.
    pub setup: WorkerSetup,
    /// The run's journal: keep it until the last worker is gone (a journal of the run's own
    /// is removed when it is dropped).
    pub journal: RunJournal,
}

/// The one set-up before a run's workers start, for every front end (the `runner` commands,
/// a [`Session`](crate::session::Session), the Python core): points `cfg` at the run's journal
/// ([`RunJournal::for_run`]), then sets the workers up as `program` with `cfg`
/// ([`WorkerSetup::from_config`]), their simulated market on the journal's clock
/// ([`RunJournal::adopt_clock`]); `faults` are injected into the simulated market (tests
/// only).
pub fn prepare(
    cfg: &mut Config,
    program: WorkerProgram,
    faults: SimFaults,
) -> Result<PreparedRun, SetupError> {
    let journal = RunJournal::for_run(cfg);
    let WorkerProgram {
        exe,
        args,
        build_id,
    } = program;
    let mut setup = journal.setup(cfg, exe, faults)?;
    setup.exe_args = args;
    if let Some(id) = build_id {
        setup.client.channel.build_id = id;
    }
    Ok(PreparedRun { setup, journal })
}

/// The simulated broker's book of orders (its journal) for a run on the simulated market: the
/// configured `sim.orders_file`, or else a file of the run's own in the temporary directory,
/// removed when this is dropped. Every worker of the run shares it, so an order outlives the
/// worker that placed it.
#[derive(Debug)]
pub struct RunJournal {
    path: Option<PathBuf>,
    temporary: bool,
    /// A temporary journal's lock file, locked for as long as the run lives: a journal whose
    /// lock can be taken belongs to a run that is gone.
    lock: Option<(PathBuf, std::fs::File)>,
}

impl RunJournal {
    /// Points `cfg` at a journal of the run's own if it runs on the simulated market without
    /// one configured.
    pub fn for_run(cfg: &mut Config) -> RunJournal {
        if !matches!(cfg.backend, BackendKind::Sim | BackendKind::Replay) {
            return RunJournal {
                path: None,
                temporary: false,
                lock: None,
            };
        }
        // A replay's broker keeps a book of the run's own: a book kept across runs belongs
        // to the simulated market's times, not to a recording's.
        if let (Some(p), BackendKind::Sim) = (&cfg.sim.orders_file, cfg.backend) {
            return RunJournal {
                path: Some(p.clone()),
                temporary: false,
                lock: None,
            };
        }
        sweep_dead_runs(&std::env::temp_dir());
        let unique = base::random::mix(
            u64::from(std::process::id()) << 32 ^ base::unix_time::now().as_nanos() as u64,
        );
        let stem = format!("{RUN_JOURNAL_PREFIX}{}-{unique:016x}", std::process::id());
        let dir = std::env::temp_dir();
        // The lock first: from the moment the journal exists, its run is seen alive.
        let lock_path = dir.join(format!("{stem}{RUN_LOCK_SUFFIX}"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::from));
        let lock = match lock {
            Ok(f) => Some((lock_path, f)),
            Err(e) => {
                tracing::debug!(
                    "run journal not locked ({e}): it is not swept if the run is killed"
                );
                let _ = std::fs::remove_file(&lock_path);
                None
            }
        };
        let path = dir.join(format!("{stem}{RUN_JOURNAL_SUFFIX}"));
        cfg.sim.orders_file = Some(path.clone());
        RunJournal {
            path: Some(path),
            temporary: true,
            lock,
        }
    }

    /// The setup of the run's workers ([`WorkerSetup::from_config`]), its simulated market on
    /// the journal's clock ([`adopt_clock`](Self::adopt_clock)).
    pub fn setup(
        &self,
        cfg: &Config,
        exe: PathBuf,
        faults: SimFaults,
    ) -> Result<WorkerSetup, SetupError> {
        let mut setup = WorkerSetup::from_config(cfg, exe, faults);
        self.adopt_clock(&mut setup)?;
        Ok(setup)
    }

    /// Runs the simulated market of `setup` on the journal's clock: a journal kept across
    /// runs holds the clock of the run that began it, so its times mean the same in every
    /// run (a new journal takes this run's). Fails if the file is not a journal or cannot be
    /// used.
    pub fn adopt_clock(&self, setup: &mut WorkerSetup) -> Result<(), SetupError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let handover =
            Handover::journal_clock(path, &setup.options).map_err(SetupError::Journal)?;
        setup.options.inherit(handover);
        Ok(())
    }
}

/// The prefix and suffixes of a run's own journal in the temporary directory and of its lock
/// file; the run's pid and a random number follow the prefix.
const RUN_JOURNAL_PREFIX: &str = "ibbridge-sim-orders-";
const RUN_JOURNAL_SUFFIX: &str = ".journal";
const RUN_LOCK_SUFFIX: &str = ".lock";
/// A lock file younger than this is never swept (its run is taking the lock).
const SWEEP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// Removes from `dir` the journals of runs that are gone (a runner killed before it could
/// remove its own): each run holds its journal's lock file locked while it lives, so a lock
/// that can be taken is a dead run's, whatever process namespace or machine it ran in (as far
/// as the file system's locks reach). Another user's files stay (the temporary directory does
/// not let us remove them), and so do journals without a lock file.
fn sweep_dead_runs(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .filter(|n| n.starts_with(RUN_JOURNAL_PREFIX))
            .and_then(|n| n.strip_suffix(RUN_LOCK_SUFFIX))
        else {
            continue;
        };
        // A lock file made a moment ago may not be locked yet by its run.
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .map_or(true, |at| {
                at.elapsed().map_or(true, |age| age < SWEEP_MIN_AGE)
            });
        if young {
            continue;
        }
        let Ok(lock) = std::fs::OpenOptions::new().write(true).open(entry.path()) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            let journal = dir.join(format!("{stem}{RUN_JOURNAL_SUFFIX}"));
            let _ = std::fs::remove_file(worker::sim::broker::fold::fold_file(&journal));
            let _ = std::fs::remove_file(journal);
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for RunJournal {
    fn drop(&mut self) {
        if let (true, Some(p)) = (self.temporary, &self.path) {
            let _ = std::fs::remove_file(worker::sim::broker::fold::fold_file(p));
            let _ = std::fs::remove_file(p);
        }
        if let Some((path, _locked)) = self.lock.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// This program's name at a hub reached over NATS: `hub.client`, else the machine's name
/// (letters, digits, `-` and `_`, at most 24): the same at every start, so that its durable
/// consumers resume where the last run left them.
pub fn remote_client(cfg: &Config) -> String {
    if !cfg.hub.client.is_empty() {
        return cfg.hub.client.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = host
        .trim()
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '-',
            },
        )
        .take(crate::config::MAX_CLIENT_NAME)
        .collect();
    match name.is_empty() {
        true => "remote".to_string(),
        false => name,
    }
}

/// The backend section of the worker options.
fn backend_options(cfg: &Config, faults: SimFaults) -> BackendOptions {
    if cfg.hub.over_nats {
        return BackendOptions::Remote(worker::options::RemoteOptions {
            url: cfg.nats.url.clone().unwrap_or_default(),
            creds_file: cfg
                .nats
                .creds_file
                .as_ref()
                .map(|p| p.display().to_string()),
            token: cfg.nats.token.clone(),
            hub: cfg.hub.name.clone(),
            client: remote_client(cfg),
            request_timeout_ms: cfg.request_timeout().as_millis() as u64,
            history_timeout_ms: cfg.history.timeout_seconds.saturating_mul(1000),
            instance: format!(
                "{}-{}",
                std::process::id(),
                base::unix_time::now().as_millis()
            ),
        });
    }
    match cfg.backend {
        BackendKind::Sim | BackendKind::Replay => {
            let replay = cfg.backend == BackendKind::Replay;
            // One market clock for every worker of this run, replacements included (a
            // replay's is its recording's).
            let now = base::unix_time::now();
            BackendOptions::Sim(SimOptions {
                seed: cfg.sim.seed,
                speed: match replay {
                    true => cfg.replay.speed,
                    false => cfg.sim.speed,
                },
                start: Some(cfg.sim.start.unwrap_or(now.as_secs() as i64)),
                anchor_ms: Some(now.as_millis() as u64),
                faults,
                stamp_bars: false,
                broker: worker::options::SimBrokerOptions {
                    account: cfg.sim.account.clone(),
                    orders_file: cfg
                        .sim
                        .orders_file
                        .as_ref()
                        .map(|p| p.display().to_string()),
                    cash: cfg.sim.cash,
                    slippage_bps: cfg.sim.slippage_bps,
                    commission_per_share: cfg.sim.commission_per_share,
                    min_commission: cfg.sim.min_commission,
                    max_fill_per_bar: cfg.sim.max_fill_per_bar,
                    fill_seconds: cfg.sim.fill_seconds,
                    keep_orders: Some(cfg.sim.keep_orders),
                },
                book_told_through: None,
                skip_forming_bar: cfg.sim.skip_forming_bar && !replay,
                // A recording's bars are its calendar.
                calendar: match replay {
                    true => worker::options::SimCalendar::default(),
                    false => cfg.sim.calendar_options(),
                },
                replay: cfg
                    .replay
                    .file
                    .as_ref()
                    .filter(|_| replay)
                    .map(|p| p.display().to_string()),
            })
        }
        BackendKind::Ibkr => BackendOptions::Ibkr(IbkrOptions {
            gateway: cfg.ibkr.gateway.clone(),
            client_id: cfg.ibkr.client_id,
            client_id_attempts: cfg.ibkr.client_id_attempts,
            connect_wait_ms: cfg.ibkr.connect_wait_seconds.saturating_mul(1000),
            what_to_show: cfg.ibkr.what_to_show,
            use_rth: cfg.ibkr.use_rth,
            market_data_type: cfg.ibkr.market_data_type,
            reconnect_attempts: cfg.ibkr.reconnect_attempts,
            delayed_fallback: cfg.ibkr.delayed_fallback,
            silent_bars: cfg.ibkr.silent_bars,
            allow_live: cfg.trading.allow_live,
            contracts: cfg
                .ibkr
                .contracts
                .iter()
                .map(|(symbol, c)| ContractSpec {
                    symbol: symbol.clone(),
                    exchange: c.exchange.clone(),
                    currency: c.currency.clone(),
                    primary_exchange: c.primary_exchange.clone(),
                    what_to_show: c.what_to_show,
                    use_rth: c.use_rth,
                    sec_type: c.sec_type,
                    con_id: c.con_id,
                    ib_symbol: c.ib_symbol.clone(),
                    local_symbol: c.local_symbol.clone(),
                    expiry: c.expiry.clone(),
                })
                .collect(),
        }),
    }
}

/// The most verbose level the runner's log shows for the `worker` or the `ibapi` target:
/// 2 info, 3 debug, 4 trace (as [`WorkerOptions::log_level`] counts).
fn worker_log_level() -> u8 {
    if tracing::enabled!(target: "worker", tracing::Level::TRACE)
        || tracing::enabled!(target: "ibapi", tracing::Level::TRACE)
    {
        4
    } else if tracing::enabled!(target: "worker", tracing::Level::DEBUG)
        || tracing::enabled!(target: "ibapi", tracing::Level::DEBUG)
    {
        3
    } else {
        2
    }
}

/// Re-emits a worker's log record in the runner's log: records of the `ibapi` crate under the
/// target `ibapi`, every other one under `worker`; the record's own target is the field
/// `origin` either way.
fn log_worker_record(r: &LogRecord) {
    if !(r.target == "ibapi" || r.target.starts_with("ibapi::")) {
        return bridge::client::emit(r);
    }
    let origin = r.target.as_str();
    let msg = r.message.as_str();
    match r.level {
        LogLevel::Error => tracing::error!(target: "ibapi", origin, "{msg}"),
        LogLevel::Warn => tracing::warn!(target: "ibapi", origin, "{msg}"),
        LogLevel::Info => tracing::info!(target: "ibapi", origin, "{msg}"),
        LogLevel::Debug => tracing::debug!(target: "ibapi", origin, "{msg}"),
        LogLevel::Trace => tracing::trace!(target: "ibapi", origin, "{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ContractConfig;

    #[test]
    fn bridge_settings_and_policy_follow_the_configuration() {
        let mut cfg = Config::default();
        cfg.bridge.ring_capacity = 1 << 16;
        cfg.bridge.max_frame = 1 << 12;
        cfg.bridge.heartbeat_ms = 50;
        cfg.bridge.hang_timeout_ms = 700;
        cfg.bridge.handshake_timeout_ms = 1234;
        cfg.supervisor.max_restarts = 3;
        let exe = PathBuf::from("/nonexistent/runner");
        let setup = WorkerSetup::from_config(&cfg, exe, SimFaults::default());
        let ch = &setup.client.channel;
        assert_eq!(ch.geometry.ring_capacity, 1 << 16);
        assert_eq!(ch.geometry.max_frame, 1 << 12);
        assert_eq!(ch.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(ch.hang_timeout, Duration::from_millis(700));
        assert_eq!(ch.build_id, worker::build_id_of(&setup.exe));
        assert!(!setup.client.spin);
        cfg.bridge.spin = true;
        let spinning = WorkerSetup::from_config(
            &cfg,
            PathBuf::from("/nonexistent/runner"),
            SimFaults::default(),
        );
        assert!(spinning.client.spin);
        assert_eq!(setup.options.heartbeat_ms, 50);
        assert_eq!(setup.options.hang_timeout_ms, 700);
        assert_eq!(setup.options.handshake_timeout_ms, 1234);
        assert_eq!(setup.handshake, Duration::from_millis(1234));
        assert_eq!(setup.policy.max_restarts, 3);
        assert_eq!(setup.exe, PathBuf::from("/nonexistent/runner"));
    }

    #[test]
    fn the_simulated_market_gets_one_clock_and_the_faults() {
        let mut cfg = Config::default();
        cfg.sim.start = Some(1_700_000_000);
        cfg.sim.seed = 9;
        let faults: SimFaults = "no_data=TSLA".parse().unwrap();
        let setup = WorkerSetup::from_config(&cfg, PathBuf::from("x"), faults.clone());
        let BackendOptions::Sim(sim) = &setup.options.backend else {
            panic!("{:?}", setup.options.backend);
        };
        assert_eq!(sim.seed, 9);
        assert_eq!(sim.start, Some(1_700_000_000));
        assert!(sim.anchor_ms.is_some());
        assert_eq!(sim.faults, faults);
    }

    #[test]
    fn journals_of_runs_that_are_gone_are_swept_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("ibbridge-sweep-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file =
            |stem: &str, suffix: &str| dir.join(format!("{RUN_JOURNAL_PREFIX}{stem}{suffix}"));
        // A run that is gone: its lock file is there, unlocked (and not new), and the file
        // of a fold its worker was writing when it was killed.
        std::fs::write(file("1-dead", RUN_JOURNAL_SUFFIX), "T\n").unwrap();
        let journal = file("1-dead", RUN_JOURNAL_SUFFIX);
        std::fs::write(worker::sim::broker::fold::fold_file(&journal), "T\n").unwrap();
        let lock = std::fs::File::create(file("1-dead", RUN_LOCK_SUFFIX)).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
        lock.set_modified(old).unwrap();
        drop(lock);
        // A run taking its lock this very moment: its new lock file is not locked yet.
        std::fs::write(file("3-new", RUN_JOURNAL_SUFFIX), "T\n").unwrap();
        std::fs::write(file("3-new", RUN_LOCK_SUFFIX), "").unwrap();
        // A live run (whatever its pid says): its lock is held; its fold file is its own.
        std::fs::write(file("4194305-live", RUN_JOURNAL_SUFFIX), "T\n").unwrap();
        let live_fold =
            worker::sim::broker::fold::fold_file(&file("4194305-live", RUN_JOURNAL_SUFFIX));
        std::fs::write(&live_fold, "T\n").unwrap();
        let held = std::fs::File::create(file("4194305-live", RUN_LOCK_SUFFIX)).unwrap();
        held.try_lock().unwrap();
        // A journal without a lock file, and a journal of the user's own: left alone.
        std::fs::write(file("2-old", RUN_JOURNAL_SUFFIX), "T\n").unwrap();
        std::fs::write(dir.join("book.journal"), "T\n").unwrap();
        sweep_dead_runs(&dir);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let name = |stem: &str, suffix: &str| format!("{RUN_JOURNAL_PREFIX}{stem}{suffix}");
        let mut expected = vec![
            name("4194305-live", RUN_JOURNAL_SUFFIX),
            name("4194305-live", RUN_LOCK_SUFFIX),
            format!("{}.fold", name("4194305-live", RUN_JOURNAL_SUFFIX)),
            name("2-old", RUN_JOURNAL_SUFFIX),
            name("3-new", RUN_JOURNAL_SUFFIX),
            name("3-new", RUN_LOCK_SUFFIX),
            "book.journal".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ibkr_contracts_are_passed_per_symbol() {
        let mut cfg = Config {
            backend: BackendKind::Ibkr,
            ..Config::default()
        };
        cfg.ibkr.client_id = 17;
        cfg.ibkr.contracts.insert(
            "SHOP".into(),
            ContractConfig {
                currency: "CAD".into(),
                primary_exchange: Some("TSE".into()),
                ..ContractConfig::default()
            },
        );
        let setup = WorkerSetup::from_config(&cfg, PathBuf::from("x"), SimFaults::default());
        let BackendOptions::Ibkr(ib) = &setup.options.backend else {
            panic!("{:?}", setup.options.backend);
        };
        assert_eq!(ib.client_id, 17);
        assert_eq!(
            ib.contracts,
            vec![ContractSpec {
                currency: "CAD".into(),
                primary_exchange: Some("TSE".into()),
                ..ContractSpec::smart_stock("SHOP")
            }]
        );
    }
}
