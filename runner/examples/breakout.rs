//! A strategy of one's own, run by a session on the simulated market: a breakout that buys
//! when a bar closes above the highest high of the bars before it and sells when one closes
//! below their lowest low, with trading on. The program is its own worker: it calls
//! `serve_worker_if_requested` first, and the session starts it again as the worker.
//!
//! `cargo run -p runner --example breakout [SECONDS]` (default 5 seconds of live bars).

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use bridge::protocol::{Bar, Fill};
use runner::config::Config;
use runner::session::{serve_worker_if_requested, Session};
use runner::strategy::{Signal, Strategy};

/// Breakouts over the last `lookback` bars.
struct Breakout {
    lookback: usize,
    fills: usize,
}

impl Strategy for Breakout {
    fn window(&self) -> usize {
        self.lookback + 1
    }

    fn on_bars(&mut self, _symbol: &str, bars: &[Bar]) -> Signal {
        let Some((last, before)) = bars.split_last() else {
            return Signal::Hold;
        };
        if before.len() < self.lookback {
            return Signal::Hold;
        }
        let high = before.iter().map(|b| b.high).fold(f64::MIN, f64::max);
        let low = before.iter().map(|b| b.low).fold(f64::MAX, f64::min);
        if last.close > high {
            Signal::Buy
        } else if last.close < low {
            Signal::Sell
        } else {
            Signal::Hold
        }
    }

    fn on_fill(&mut self, fill: &Fill) {
        self.fills += 1;
        println!(
            "fill: {} {} {} @ {:.2}",
            fill.side, fill.quantity, fill.symbol, fill.price
        );
    }
}

fn main() -> ExitCode {
    if let Some(code) = serve_worker_if_requested() {
        return code;
    }
    let seconds = match std::env::args().nth(1).map(|s| s.parse::<u64>()) {
        None => 5,
        Some(Ok(s)) => s,
        Some(Err(_)) => {
            eprintln!("usage: breakout [SECONDS]");
            return ExitCode::from(2);
        }
    };
    let mut cfg = Config {
        symbols: ["SPY", "QQQ", "AAPL", "MSFT"].map(String::from).to_vec(),
        ..Config::default()
    };
    // Five-second bars: at the simulated market's 60x, a dozen a second per symbol.
    cfg.history.bar_seconds = 5;
    cfg.history.duration_seconds = 3600;
    cfg.live.duration_seconds = seconds;
    cfg.trading.enabled = true;
    let mut session = match Session::start_here(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("accounts: {:?}", session.accounts());
    let mut strategy = Breakout {
        lookback: 12,
        fills: 0,
    };
    let report = match session.run(&mut strategy, &AtomicBool::new(false)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for s in &report.symbols {
        match &s.error {
            Some(e) => println!("{}: no data ({e})", s.symbol),
            None => println!(
                "{}: {} bars of history, {} live, last signal {}",
                s.symbol,
                s.history_bars,
                s.live_bars,
                s.last_signal.map_or("-".to_string(), |x| x.to_string())
            ),
        }
    }
    if let Some(t) = &report.trading {
        println!(
            "orders: {} ({} filled, {} cancelled, {} rejected), fills seen by the strategy: {}",
            t.orders, t.filled, t.cancelled, t.rejected, strategy.fills
        );
        for r in &t.rows {
            println!(
                "{}: position {} at {:.2}, realised {:.2}",
                r.symbol, r.position, r.avg_cost, r.realised
            );
        }
    }
    ExitCode::SUCCESS
}
