//! The `runner` command.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use runner::config::{Config, Overrides, ENV_VARS};

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
    Run(Opts),
    /// Validate a configuration and print the effective one.
    CheckConfig(Opts),
    /// Serve as the broker worker of a runner (started by the runner itself).
    #[command(hide = true)]
    Worker,
}

#[derive(Args)]
struct Opts {
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
}

impl Opts {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker => match worker::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker: {e}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig(opts) => match opts.load() {
            Ok(cfg) => {
                print!("{}", cfg.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run(opts) => {
            let cfg = match opts.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let faults = match std::env::var("RUNNER_SIM_FAULTS") {
                Ok(text) => match runner::sim_faults(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                },
                Err(_) => worker::SimFaults::default(),
            };
            init_logging();
            match run(&cfg, faults) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn run(cfg: &Config, faults: worker::SimFaults) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // The worker is this very executable, as it is now (even if the file is replaced later).
    let exe =
        std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let exe = if exe.exists() {
        exe
    } else {
        PathBuf::from("/proc/self/exe")
    };
    tracing::debug!(vars = ?ENV_VARS.iter().map(|(k, _)| *k).collect::<Vec<_>>(), "configuration read");
    let launch = runner::job::launch(cfg, exe, faults);
    let outcome = runner::job::run(cfg, launch, &stop)?;
    print!("{}", runner::job::summary(&outcome));
    Ok(())
}
