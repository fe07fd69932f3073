//! The `runner` command.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use runner::config::{Config, Overrides};
use runner::supervisor::SupervisorError;
use runner::worker_setup::WorkerSetup;

#[derive(Parser)]
#[command(
    name = "runner",
    version,
    about = "Trading runner over a shared-memory bridge to an isolated broker worker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job: history for all symbols, the strategy, live bars, a summary.
    Run(ConfigArgs),
    /// Validate a configuration and print the effective one.
    CheckConfig(ConfigArgs),
    /// Sustained, sequence-checked traffic through the bridge, optionally with chaos.
    Soak(SoakArgs),
    /// Serve as the broker worker of a runner (started by the runner itself).
    #[command(hide = true)]
    Worker,
}

/// The flags that make up a configuration (`run`, `check-config`).
#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Broker backend: sim or ibkr.
    #[arg(long, value_name = "sim|ibkr")]
    backend: Option<String>,
    /// Comma-separated symbols.
    #[arg(long, value_name = "A,B,C")]
    symbols: Option<String>,
    /// Length of the live phase in seconds; 0 runs until Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<String>,
    /// Write signals as CSV to this file.
    #[arg(long, value_name = "FILE")]
    signals: Option<PathBuf>,
    /// Seed of the simulated market.
    #[arg(long, value_name = "N")]
    seed: Option<String>,
    /// TWS / IB Gateway address (ibkr backend).
    #[arg(long, value_name = "HOST:PORT")]
    gateway: Option<String>,
    /// API client id (ibkr backend).
    #[arg(long, value_name = "N")]
    client_id: Option<String>,
    /// Fetch history and evaluate it, without a live phase.
    #[arg(long)]
    history_only: bool,
    /// End of the history: Unix seconds or YYYY-MM-DDTHH:MM:SSZ (default: now).
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
}

/// The flags of `soak`.
#[derive(Args)]
struct SoakArgs {
    /// Length of the run in seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: u64,
    /// Requests per second.
    #[arg(long, value_name = "MSGS_PER_S", default_value_t = 2000)]
    rate: u64,
    /// SIGKILL and SIGSTOP the worker at random moments.
    #[arg(long)]
    chaos: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Symbols streaming real-time bars.
    #[arg(long, value_name = "N", default_value_t = 20)]
    symbols: usize,
    /// Allowed growth of the runner's memory, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    memory_bound: u64,
    /// TOML configuration file (bridge and supervisor settings apply).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Defaults, then the file, the environment and these flags.
    fn load(&self) -> Result<Config, String> {
        let flags = Overrides {
            backend: self.backend.clone(),
            symbols: self.symbols.clone(),
            duration: self.duration.clone(),
            signals: self.signals.clone(),
            seed: self.seed.clone(),
            gateway: self.gateway.clone(),
            client_id: self.client_id.clone(),
            history_only: self.history_only,
            end: self.end.clone(),
        };
        Config::load(self.config.as_deref(), |k| std::env::var(k).ok(), &flags)
            .map_err(|e| e.to_string())
    }
}

fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let spec = std::env::var("RUNNER_LOG").unwrap_or_else(|_| "info".into());
    let filter: tracing_subscriber::filter::Targets = spec.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(filter),
        )
        .try_init();
}

/// Exit code of a configuration error (one line on stderr names it).
const EXIT_CONFIG: u8 = 2;
/// Exit code of a run that could not proceed, or of a soak that failed.
const EXIT_FAILED: u8 = 1;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Worker => serve_as_worker(),
        Command::CheckConfig(args) => check_config(&args),
        Command::Soak(args) => soak(&args),
        Command::Run(args) => run(&args),
    }
}

/// Prints `error: {why}` and gives `code`.
fn fail(code: u8, why: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::from(code)
}

/// `runner worker`: serves the runner that started this process.
fn serve_as_worker() -> ExitCode {
    match worker::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            ExitCode::from(2)
        }
    }
}

/// `runner check-config`: the effective configuration, as TOML.
fn check_config(args: &ConfigArgs) -> ExitCode {
    match args.load() {
        Ok(cfg) => {
            print!("{}", cfg.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_CONFIG, e),
    }
}

/// `runner run`: the main job, then its summary.
fn run(args: &ConfigArgs) -> ExitCode {
    let cfg = match args.load() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    // Test-only faults of the simulated market; the worker's type reads its own text.
    let faults = match std::env::var("RUNNER_SIM_FAULTS") {
        Ok(text) => match text.parse::<worker::SimFaults>() {
            Ok(f) => f,
            Err(e) => return fail(EXIT_CONFIG, format!("RUNNER_SIM_FAULTS: {e}")),
        },
        Err(_) => worker::SimFaults::default(),
    };
    init_logging();
    let outcome = stop_flag().and_then(|stop| {
        let setup = WorkerSetup::from_config(&cfg, own_exe()?, faults);
        runner::job::run(&cfg, setup, &stop)
    });
    match outcome {
        Ok(outcome) => {
            print!("{}", runner::summary::render(&outcome));
            match outcome.gave_up {
                Some(why) => fail(EXIT_FAILED, why),
                None => ExitCode::SUCCESS,
            }
        }
        // The machine cannot host the bridge as configured: like a configuration error.
        Err(e)
            if matches!(
                e.downcast_ref::<SupervisorError>(),
                Some(SupervisorError::Environment(_))
            ) =>
        {
            fail(EXIT_CONFIG, format!("{e:#}"))
        }
        Err(e) => fail(EXIT_FAILED, format!("{e:#}")),
    }
}

/// `runner soak`: the soak, its report, and whether it passed.
fn soak(args: &SoakArgs) -> ExitCode {
    let loaded = Config::load(
        args.config.as_deref(),
        |k| std::env::var(k).ok(),
        &Overrides::default(),
    );
    let mut cfg = match loaded {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    // Bars every simulated second, 60 per real second per symbol; hangs found fast.
    cfg.sim.speed = 60.0;
    cfg.bridge.hang_timeout_ms = cfg.bridge.hang_timeout_ms.min(1000);
    cfg.supervisor.max_restarts = u32::MAX;
    cfg.supervisor.max_backoff_ms = cfg.supervisor.max_backoff_ms.min(1000);
    init_logging();
    let settings = runner::soak::SoakSettings {
        duration: std::time::Duration::from_secs(args.duration),
        rate: args.rate,
        chaos: args.chaos,
        symbols: args.symbols.max(1),
        memory_bound_mb: args.memory_bound,
    };
    let report = stop_flag().and_then(|stop| {
        let setup = WorkerSetup::from_config(&cfg, own_exe()?, worker::SimFaults::default());
        runner::soak::run(&settings, setup, &stop)
    });
    match report {
        Ok(report) => {
            if args.json {
                println!("{}", runner::soak::json(&report));
            } else {
                print!("{}", runner::soak::text(&report));
            }
            if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(e) => fail(EXIT_FAILED, format!("{e:#}")),
    }
}

/// The worker is this very executable. On Linux `/proc/self/exe` names the file this process
/// runs even after the path on disk was replaced by a new build, so a restarted worker is
/// always the same build as its runner; on macOS a replaced file is the new build, which the
/// worker's hello then refuses as another build.
fn own_exe() -> anyhow::Result<PathBuf> {
    bridge::platform::own_executable()
        .map_err(|e| anyhow::anyhow!("cannot find this program's executable: {e}"))
}

/// A flag set by Ctrl-C or SIGTERM.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
