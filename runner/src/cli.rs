//! The `runner` command line: its commands and their flags ([`Cli`]), a configuration from
//! the flags ([`ConfigArgs::load`]), the hand orders from theirs ([`PlaceArgs::hand_order`],
//! [`ModifyArgs::change`]), and `check-config` ([`check_config`]).
//!
//! Invariants: every flag that sets a configuration value goes through [`Overrides`], so the
//! file, the environment and the flags are applied in one order for every command; a number
//! given by hand is checked here (positive, finite) before any worker starts.

use std::path::PathBuf;
use std::process::ExitCode;

use bridge::protocol::{OrderChange, Side};
use clap::{Args, Parser, Subcommand};

use crate::by_hand::HandOrder;
use crate::config::{parse_tif, Config, ConfigError, Overrides};
use crate::launch::{fail, EXIT_CONFIG};

#[derive(Parser)]
#[command(
    name = "runner",
    version,
    about = "Trading runner over a shared-memory bridge to an isolated broker worker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Share one worker, and so one broker connection, among local programs (they attach
    /// with --hub); `runner hub status` shows a running one.
    Hub(HubArgs),
    /// Serve as the broker worker of a runner (started by the runner itself).
    #[command(hide = true)]
    Worker,
}

/// The flags that make up a configuration (`run`, `check-config`).
#[derive(Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Broker backend: sim, ibkr or replay.
    #[arg(long, value_name = "sim|ibkr|replay")]
    pub backend: Option<String>,
    /// Comma-separated symbols.
    #[arg(long, value_name = "A,B,C")]
    pub symbols: Option<String>,
    /// Length of the live phase in seconds; 0 runs until Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<String>,
    /// Write signals as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub signals: Option<PathBuf>,
    /// Record every bar of the run, its configuration and its signals to this file.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Replay this recording, or a hub's JetStream stream (nats://HOST:PORT/HUB), its bars at
    /// replay.speed (implies --backend replay).
    #[arg(long, value_name = "FILE|nats://HOST:PORT/HUB")]
    pub replay: Option<PathBuf>,
    /// Where a replayed stream's live bars begin (before: the history): Unix seconds or
    /// YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Where a replayed stream's live bars end.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Seed of the simulated market.
    #[arg(long, value_name = "N")]
    pub seed: Option<String>,
    /// TWS / IB Gateway address (ibkr backend).
    #[arg(long, value_name = "HOST:PORT")]
    pub gateway: Option<String>,
    /// API client id (ibkr backend).
    #[arg(long, value_name = "N")]
    pub client_id: Option<String>,
    /// Fetch history and evaluate it, without a live phase.
    #[arg(long)]
    pub history_only: bool,
    /// End of the history: Unix seconds or YYYY-MM-DDTHH:MM:SSZ (default: now).
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Trade: the strategy's signals become orders (off unless given).
    #[arg(long)]
    pub trade: bool,
    /// Serve a live dashboard in the browser while the run lasts, at ADDR (default:
    /// dashboard.listen, 127.0.0.1:8787).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    pub dashboard: Option<String>,
    /// Write the run's report (one self-contained HTML file) here when it ends.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Attach to the hub of this name (default: `default`) instead of starting a worker.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "default")]
    pub hub: Option<String>,
    /// This program's name at the hub: the namespace of its order references.
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// Reach the hub (--hub NAME) on another machine through this NATS server.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
}

/// `runner hub`.
#[derive(Args)]
pub struct HubArgs {
    #[command(subcommand)]
    pub action: Option<HubAction>,
    /// The hub's name (default: hub.name, else `default`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// What `runner hub` does besides serving.
#[derive(Subcommand)]
pub enum HubAction {
    /// Print a running hub's clients, subscriptions, broker connection and counters.
    Status {
        /// The hub's name.
        #[arg(long, value_name = "NAME", default_value = "default")]
        name: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `runner order`.
#[derive(Args)]
pub struct OrderArgs {
    #[command(subcommand)]
    pub action: OrderAction,
}

#[derive(Subcommand)]
pub enum OrderAction {
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
pub struct ModifyArgs {
    /// The order's reference.
    #[arg(long = "ref", value_name = "ID")]
    pub order_ref: String,
    /// The new total quantity (filled shares included).
    #[arg(long, value_name = "QTY", required_unless_present = "limit")]
    pub quantity: Option<String>,
    /// The new limit price (limit orders).
    #[arg(long, value_name = "PRICE")]
    pub limit: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `runner order buy|sell`.
#[derive(Args)]
pub struct PlaceArgs {
    /// The instrument.
    pub symbol: String,
    /// Shares.
    pub quantity: String,
    /// A limit order at this price (default: a market order).
    #[arg(long, value_name = "PRICE")]
    pub limit: Option<String>,
    /// Time in force.
    #[arg(long, value_name = "day|gtc", default_value = "day")]
    pub tif: String,
    /// The order's reference (default: a new one); placing the same reference again finds
    /// the first order instead of placing a second.
    #[arg(long = "ref", value_name = "ID")]
    pub order_ref: Option<String>,
    /// Follow the order this long for a final state.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub wait: u64,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `runner order cancel`.
#[derive(Args)]
pub struct CancelArgs {
    /// The order's reference.
    #[arg(
        long = "ref",
        value_name = "ID",
        conflicts_with = "all",
        required_unless_present = "all"
    )]
    pub order_ref: Option<String>,
    /// Every working order.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The flags of `soak`.
#[derive(Args)]
pub struct SoakArgs {
    /// Length of the run in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: u64,
    /// Requests per second.
    #[arg(long, value_name = "MSGS_PER_S", default_value_t = 2000)]
    pub rate: u64,
    /// SIGKILL and SIGSTOP the worker at random moments (with --orders, also between the
    /// broker taking an order and its answer).
    #[arg(long)]
    pub chaos: bool,
    /// Place orders too (one share each, on the simulated market), and check at the end that
    /// the broker holds each exactly once.
    #[arg(long)]
    pub orders: bool,
    /// Orders per second with --orders.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub order_rate: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Symbols streaming real-time bars.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub symbols: usize,
    /// Allowed growth of the runner's memory, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub memory_bound: u64,
    /// TOML configuration file (bridge and supervisor settings apply).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Soak through a hub it starts, beside a second client; with --chaos the faults hit
    /// the hub's worker, the hub and the other client.
    #[arg(long)]
    pub hub: bool,
}

impl ConfigArgs {
    /// Defaults, then the file, the environment and these flags.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let flags = Overrides {
            backend: self.backend.clone(),
            symbols: self.symbols.clone(),
            duration: self.duration.clone(),
            signals: self.signals.clone(),
            record: self.record.clone(),
            replay: self.replay.clone(),
            replay_range: (self.from.clone(), self.to.clone()),
            seed: self.seed.clone(),
            gateway: self.gateway.clone(),
            client_id: self.client_id.clone(),
            history_only: self.history_only,
            end: self.end.clone(),
            trade: self.trade,
            dashboard: self
                .dashboard
                .as_ref()
                .map(|a| Some(a.clone()).filter(|a| !a.is_empty())),
            report: self.report.clone(),
            hub: self.hub.clone(),
            client: self.client.clone(),
            nats: self.nats.clone(),
        };
        Config::load(self.config.as_deref(), |k| std::env::var(k).ok(), &flags)
    }
}

impl PlaceArgs {
    /// The order these flags ask for, on `side`; or which flag is wrong.
    pub fn hand_order(&self, side: Side) -> Result<HandOrder, String> {
        let hand = HandOrder {
            side,
            symbol: self.symbol.clone(),
            quantity: positive("quantity", &self.quantity)?,
            limit: self
                .limit
                .as_deref()
                .map(|l| positive("--limit", l))
                .transpose()?,
            tif: parse_tif(&self.tif).map_err(|e| format!("--tif: {e}"))?,
            order_ref: self.order_ref.clone(),
            // At most a week: any longer is for ever, and would overflow the clock.
            wait: std::time::Duration::from_secs(self.wait.min(7 * 86_400)),
        };
        if !worker::backend::valid_symbol(&hand.symbol) {
            return Err(format!("invalid symbol {:?}", hand.symbol));
        }
        Ok(hand)
    }
}

impl ModifyArgs {
    /// The change these flags ask for; or which flag is wrong.
    pub fn change(&self) -> Result<OrderChange, String> {
        Ok(OrderChange {
            order_ref: self.order_ref.clone(),
            quantity: self
                .quantity
                .as_deref()
                .map(|q| positive("--quantity", q))
                .transpose()?,
            limit: self
                .limit
                .as_deref()
                .map(|l| positive("--limit", l))
                .transpose()?,
        })
    }
}

/// `text` as a positive number, or why not.
fn positive(what: &str, text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{what} must be a positive number, got {text:?}"))
}

/// `runner check-config`: the effective configuration, as TOML.
pub fn check_config(args: &ConfigArgs) -> ExitCode {
    match args.load() {
        Ok(cfg) => {
            print!("{}", cfg.to_toml());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_CONFIG, e),
    }
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
