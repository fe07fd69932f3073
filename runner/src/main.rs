//! The `runner` command.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bridge::protocol::Side;
use clap::{Args, Parser, Subcommand};
use runner::config::{Config, Overrides};
use runner::supervisor::SupervisorError;
use runner::trader::LiveAccountRefused;
use runner::worker_setup::{prepare, PreparedRun, WorkerProgram, WorkerSetup};

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
    /// Place or cancel one order by hand, and follow it.
    Order(OrderArgs),
    /// List the orders the broker holds with a reference.
    Orders(ConfigArgs),
    /// List the positions the broker holds, and the account's figures.
    Positions(ConfigArgs),
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
    /// Trade: the strategy's signals become orders (off unless given).
    #[arg(long)]
    trade: bool,
}

/// `runner order`.
#[derive(Args)]
struct OrderArgs {
    #[command(subcommand)]
    action: OrderAction,
}

#[derive(Subcommand)]
enum OrderAction {
    /// Buy SYMBOL QTY.
    Buy(PlaceArgs),
    /// Sell SYMBOL QTY.
    Sell(PlaceArgs),
    /// Change a working order's quantity or limit price.
    Modify(ModifyArgs),
    /// Cancel one order (--ref) or every working order (--all).
    Cancel(CancelArgs),
}

/// `runner order modify`.
#[derive(Args)]
struct ModifyArgs {
    /// The order's reference.
    #[arg(long = "ref", value_name = "ID")]
    order_ref: String,
    /// The new total quantity (filled shares included).
    #[arg(long, value_name = "QTY", required_unless_present = "limit")]
    quantity: Option<String>,
    /// The new limit price (limit orders).
    #[arg(long, value_name = "PRICE")]
    limit: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

/// `runner order buy|sell`.
#[derive(Args)]
struct PlaceArgs {
    /// The instrument.
    symbol: String,
    /// Shares.
    quantity: String,
    /// A limit order at this price (default: a market order).
    #[arg(long, value_name = "PRICE")]
    limit: Option<String>,
    /// Time in force.
    #[arg(long, value_name = "day|gtc", default_value = "day")]
    tif: String,
    /// The order's reference (default: a new one); placing the same reference again finds
    /// the first order instead of placing a second.
    #[arg(long = "ref", value_name = "ID")]
    order_ref: Option<String>,
    /// Follow the order this long for a final state.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    wait: u64,
    #[command(flatten)]
    config: ConfigArgs,
}

/// `runner order cancel`.
#[derive(Args)]
struct CancelArgs {
    /// The order's reference.
    #[arg(
        long = "ref",
        value_name = "ID",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    order_ref: Option<String>,
    /// Every working order.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    config: ConfigArgs,
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
    /// SIGKILL and SIGSTOP the worker at random moments (with --orders, also between the
    /// broker taking an order and its answer).
    #[arg(long)]
    chaos: bool,
    /// Place orders too (one share each, on the simulated market), and check at the end that
    /// the broker holds each exactly once.
    #[arg(long)]
    orders: bool,
    /// Orders per second with --orders.
    #[arg(long, value_name = "N", default_value_t = 5)]
    order_rate: u64,
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
            trade: self.trade,
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
        Command::Worker => ExitCode::from(worker::entry::serve(None)),
        Command::CheckConfig(args) => check_config(&args),
        Command::Soak(args) => soak(&args),
        Command::Run(args) => run(&args),
        Command::Order(args) => order(args),
        Command::Orders(args) => by_hand(&args, |cfg, setup, _, say| {
            runner::by_hand::orders(cfg, setup, say)
        }),
        Command::Positions(args) => by_hand(&args, |cfg, setup, _, say| {
            runner::by_hand::positions(cfg, setup, say)
        }),
    }
}

/// `runner order buy|sell|cancel`.
fn order(args: OrderArgs) -> ExitCode {
    match args.action {
        OrderAction::Buy(p) => place(Side::Buy, &p),
        OrderAction::Sell(p) => place(Side::Sell, &p),
        OrderAction::Modify(m) => {
            let change = (|| {
                Ok::<_, String>(bridge::protocol::OrderChange {
                    order_ref: m.order_ref.clone(),
                    quantity: m
                        .quantity
                        .as_deref()
                        .map(|q| positive("--quantity", q))
                        .transpose()?,
                    limit: m
                        .limit
                        .as_deref()
                        .map(|l| positive("--limit", l))
                        .transpose()?,
                })
            })();
            let change = match change {
                Ok(c) => c,
                Err(e) => return fail(EXIT_CONFIG, e),
            };
            by_hand(&m.config, move |cfg, setup, _, say| {
                runner::by_hand::modify(cfg, setup, change, say)
            })
        }
        OrderAction::Cancel(c) => {
            let order_ref = if c.all { None } else { c.order_ref.clone() };
            by_hand(&c.config, move |cfg, setup, _, say| {
                runner::by_hand::cancel(cfg, setup, order_ref.as_deref(), say)
            })
        }
    }
}

/// `runner order buy|sell SYMBOL QTY`.
fn place(side: Side, p: &PlaceArgs) -> ExitCode {
    let number = positive;
    let parsed = (|| {
        Ok::<_, String>(runner::by_hand::HandOrder {
            side,
            symbol: p.symbol.clone(),
            quantity: number("quantity", &p.quantity)?,
            limit: p
                .limit
                .as_deref()
                .map(|l| number("--limit", l))
                .transpose()?,
            tif: runner::config::parse_tif(&p.tif).map_err(|e| format!("--tif: {e}"))?,
            order_ref: p.order_ref.clone(),
            // At most a week: any longer is for ever, and would overflow the clock.
            wait: std::time::Duration::from_secs(p.wait.min(7 * 86_400)),
        })
    })();
    let hand = match parsed {
        Ok(h) => h,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    if !worker::backend::valid_symbol(&hand.symbol) {
        return fail(EXIT_CONFIG, format!("invalid symbol {:?}", hand.symbol));
    }
    by_hand(&p.config, move |cfg, setup, stop, say| {
        runner::by_hand::place(cfg, setup, &hand, stop, say)
    })
}

/// `text` as a positive number, or why not.
fn positive(what: &str, text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{what} must be a positive number, got {text:?}"))
}

/// Runs one of the commands by hand with its worker; prints what it says on stdout and, if
/// it failed, why on stderr (exit 1; 2 for a configuration error or a refused live account).
fn by_hand(
    args: &ConfigArgs,
    command: impl FnOnce(
        &Config,
        WorkerSetup,
        &AtomicBool,
        &mut dyn FnMut(&str),
    ) -> anyhow::Result<runner::by_hand::Failed>,
) -> ExitCode {
    let mut cfg = match args.load() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let faults = match sim_faults() {
        Ok(f) => f,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    init_logging();
    let outcome = stop_flag().and_then(|stop| {
        let program = WorkerProgram::this_program()?;
        let PreparedRun { setup, journal } = match prepare(&mut cfg, program, faults) {
            Ok(run) => run,
            Err(e) => return Ok(Err(e)),
        };
        let done = command(&cfg, setup, &stop, &mut |line: &str| println!("{line}"));
        drop(journal);
        done.map(Ok)
    });
    let outcome = match outcome {
        Ok(Err(journal_problem)) => return fail(EXIT_CONFIG, journal_problem),
        Ok(Ok(o)) => Ok(o),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(why)) => fail(EXIT_FAILED, why),
        Err(e) => fail(exit_code_of(&e), format!("{e:#}")),
    }
}

/// Exit code of a failed command: a configuration error's for what the operator must fix in
/// the configuration or the machine, else 1.
fn exit_code_of(e: &anyhow::Error) -> u8 {
    let environment = matches!(
        e.downcast_ref::<SupervisorError>(),
        Some(SupervisorError::Environment(_))
    );
    if environment || e.downcast_ref::<LiveAccountRefused>().is_some() {
        EXIT_CONFIG
    } else {
        EXIT_FAILED
    }
}

/// Test-only faults of the simulated market (`RUNNER_SIM_FAULTS`); the worker's type reads
/// its own text.
fn sim_faults() -> Result<worker::SimFaults, String> {
    match std::env::var("RUNNER_SIM_FAULTS") {
        Ok(text) => text
            .parse::<worker::SimFaults>()
            .map_err(|e| format!("RUNNER_SIM_FAULTS: {e}")),
        Err(_) => Ok(worker::SimFaults::default()),
    }
}

/// Prints `error: {why}` and gives `code`.
fn fail(code: u8, why: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::from(code)
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
    let mut cfg = match args.load() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    let faults = match sim_faults() {
        Ok(f) => f,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    init_logging();
    let outcome = stop_flag().and_then(|stop| {
        let PreparedRun { setup, journal } = prepare_here(&mut cfg, faults)?;
        let done = runner::run_command::run(&cfg, setup, &stop);
        drop(journal);
        done
    });
    match outcome {
        Ok(outcome) => {
            print!("{}", runner::summary::render(&outcome));
            match outcome.gave_up {
                Some(why) => fail(EXIT_FAILED, why),
                None => ExitCode::SUCCESS,
            }
        }
        // The machine cannot host the bridge as configured, or trading on a live account was
        // not allowed: like a configuration error.
        Err(e) => fail(exit_code_of(&e), format!("{e:#}")),
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
        order_rate: if args.orders {
            args.order_rate.max(1)
        } else {
            0
        },
    };
    if args.orders && cfg.backend != runner::config::BackendKind::Sim {
        return fail(
            EXIT_CONFIG,
            "soak --orders runs on the simulated market only",
        );
    }
    let faults = worker::SimFaults {
        // The window between the broker taking an order and its answer, which the chaos
        // aims at.
        order_ack_delay_ms: if args.orders {
            runner::soak::ORDER_ACK_DELAY_MS
        } else {
            0
        },
        ..worker::SimFaults::default()
    };
    let report = stop_flag().and_then(|stop| {
        let PreparedRun { setup, journal } = prepare_here(&mut cfg, faults)?;
        let done = runner::soak::run(&settings, setup, &stop);
        drop(journal);
        done
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

/// The workers of a run with `cfg`, this very program: a journal that cannot be used is the
/// machine's problem, like a bridge it cannot host.
fn prepare_here(cfg: &mut Config, faults: worker::SimFaults) -> anyhow::Result<PreparedRun> {
    let program = WorkerProgram::this_program()?;
    Ok(prepare(cfg, program, faults).map_err(SupervisorError::from)?)
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
