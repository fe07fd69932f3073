//! What a run did ([`Outcome`], one [`SymbolReport`] per symbol) and the summary printed at
//! its end ([`render`]): the table of symbols, then the timings, the
//! bridge's round trip and counters, and the supervisor's counts.
//!
//! Invariants: one row per configured symbol, in configuration order; a symbol without a
//! signal shows `-` for its figures and says why; percentiles are nearest-rank over the
//! sorted round trips, `-` when there are none.

use std::fmt;
use std::time::Duration;

use crate::broker_connection::BrokerConnection;
use crate::session::NoHistory;
use crate::strategy::{Evaluation, NoSignal};
use crate::supervisor::{SupervisorError, SupervisorStats};
use crate::trader::TradingSummary;

/// How one symbol fared.
#[derive(Debug, Clone)]
pub struct SymbolReport {
    pub symbol: String,
    pub history_bars: usize,
    pub live_bars: usize,
    /// The last evaluation, or why there is none.
    pub last: Result<Evaluation, NoFigures>,
    /// What else the row must say (its live bars come from delayed data, ...).
    pub note: Option<String>,
}

/// Why a symbol's row has no figures.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NoFigures {
    /// Its history could not be had.
    NoData(NoHistory),
    /// The broker refused its live data, for this reason (in the broker's words).
    Refused(String),
    /// The broker connection was down at the end, for this reason.
    Interrupted(String),
    /// Its live feed was silent at the end since this time (Unix seconds), even after its
    /// subscription was made again.
    Stalled(i64),
    /// Its bars give no signal.
    NoSignal(NoSignal),
}

impl fmt::Display for NoFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoFigures::NoData(why) => write!(f, "no data: {why}"),
            NoFigures::Refused(why) => write!(f, "refused: {why}"),
            NoFigures::Interrupted(why) => {
                write!(f, "interrupted: broker connection lost ({why})")
            }
            NoFigures::Stalled(since) => write!(
                f,
                "stalled since {}: no live data, even after the subscription was made again",
                base::unix_time::clock_text(*since)
            ),
            NoFigures::NoSignal(why) => why.fmt(f),
        }
    }
}

/// Why a run failed, whatever it printed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RunFailure {
    /// The supervisor gave up replacing a dead worker.
    Supervisor(SupervisorError),
    /// The worker gave up reconnecting to the gateway: its words.
    Broker(String),
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunFailure::Supervisor(e) => e.fmt(f),
            RunFailure::Broker(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for RunFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunFailure::Supervisor(e) => Some(e),
            RunFailure::Broker(_) => None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub symbols: Vec<SymbolReport>,
    pub history_elapsed: Duration,
    pub live_elapsed: Duration,
    /// Round trips of `RTT_PINGS` pings, sorted.
    pub round_trips: Vec<Duration>,
    pub supervisor: SupervisorStats,
    pub signals_written: u64,
    pub interrupted: bool,
    /// Why the supervisor gave up replacing a dead worker, if it did: the run failed, whatever
    /// it printed.
    pub gave_up: Option<RunFailure>,
    /// What the run saw of the broker connection.
    pub broker: BrokerConnection,
    /// What trading did (`--trade`).
    pub trading: Option<TradingSummary>,
}

/// The summary table and counters, as printed at the end.
pub fn render(o: &Outcome) -> String {
    let mut s = String::new();
    let line = |s: &mut String, cols: [&str; 7]| {
        s.push_str(&format!(
            "{:<8} {:>8} {:>6} {:>12} {:>12} {:>12}  {}\n",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
        ));
    };
    line(
        &mut s,
        [
            "symbol",
            "history",
            "live",
            "last price",
            "fast SMA",
            "slow SMA",
            "signal",
        ],
    );
    for r in &o.symbols {
        let h = r.history_bars.to_string();
        let l = r.live_bars.to_string();
        match &r.last {
            Ok(e) => {
                let (p, f, sl) = (
                    format!("{:.2}", e.price),
                    format!("{:.2}", e.fast),
                    format!("{:.2}", e.slow),
                );
                let sig = match &r.note {
                    Some(note) => format!("{} ({note})", e.signal),
                    None => e.signal.to_string(),
                };
                line(&mut s, [&r.symbol, &h, &l, &p, &f, &sl, &sig]);
            }
            Err(why) => {
                let why = match &r.note {
                    Some(note) => format!("{why} ({note})"),
                    None => why.to_string(),
                };
                line(&mut s, [&r.symbol, &h, &l, "-", "-", "-", &why])
            }
        }
    }
    let b = &o.supervisor.bridge;
    s.push_str(&format!(
        "\nhistory: {} symbols in {:.2} s; live phase {:.1} s{}\n",
        o.symbols.len(),
        o.history_elapsed.as_secs_f64(),
        o.live_elapsed.as_secs_f64(),
        if o.interrupted { " (interrupted)" } else { "" }
    ));
    s.push_str(&format!(
        "bridge round trip: p50 {}, p99 {} ({} pings)\n",
        micros(percentile(&o.round_trips, 0.50)),
        micros(percentile(&o.round_trips, 0.99)),
        o.round_trips.len()
    ));
    s.push_str(&format!(
        "bridge counters: to worker {} frames / {} bytes, to runner {} frames / {} bytes, \
         wakes {}, full {}, stray replies {}, dropped logs {}, dropped events {}\n",
        b.channel.sent.frames,
        b.channel.sent.bytes,
        b.channel.received.frames,
        b.channel.received.bytes,
        b.channel.sent.wakes + b.channel.received.wakes,
        b.channel.sent.full_events,
        b.stray_replies,
        b.dropped_logs,
        b.dropped_events
    ));
    s.push_str(&format!(
        "worker restarts: {}; requests failed by a worker's death and retried: {}; signals written: {}\n",
        o.supervisor.restarts, o.supervisor.failed_requests, o.signals_written
    ));
    if let Some(line) = o.broker.summary_line() {
        s.push_str(&line);
        s.push('\n');
    }
    if let Some(t) = &o.trading {
        s.push_str(&trading(t));
    }
    s
}

/// The trading part: the orders' fates, then one row per symbol traded.
fn trading(t: &TradingSummary) -> String {
    let mut s = format!(
        "\ntrading: {} orders ({} filled, {} working, {} cancelled, {} rejected), {} fills; \
         {} refused by the risk limits, {} failed\n",
        t.orders,
        t.filled,
        t.working,
        t.cancelled,
        t.rejected,
        t.fills,
        t.refused_by_limits,
        t.failed
    );
    if t.rows.is_empty() {
        return s;
    }
    let line = |s: &mut String, cols: [&str; 6]| {
        s.push_str(&format!(
            "{:<8} {:>10} {:>10} {:>12} {:>12} {:>11}\n",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]
        ));
    };
    line(
        &mut s,
        [
            "symbol",
            "position",
            "avg cost",
            "realised",
            "unrealised",
            "commission",
        ],
    );
    for r in &t.rows {
        line(
            &mut s,
            [
                &r.symbol,
                &r.position.to_string(),
                &format!("{:.2}", r.avg_cost),
                &format!("{:.2}", r.realised),
                &r.unrealised.map_or("-".into(), |u| format!("{u:.2}")),
                &format!("{:.2}", r.commissions),
            ],
        );
    }
    s
}

/// The value at quantile `p` of `sorted` (nearest rank); `None` if empty.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied()
}

fn micros(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} µs", d.as_secs_f64() * 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Evaluation, Signal};
    use crate::supervisor::SupervisorStats;

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 0.5), Some(Duration::from_micros(51)));
        assert_eq!(percentile(&v, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_table_has_a_row_per_symbol_and_says_why_a_signal_is_missing() {
        let o = Outcome {
            symbols: vec![
                SymbolReport {
                    symbol: "SPY".into(),
                    history_bars: 1440,
                    live_bars: 5,
                    last: Ok(Evaluation {
                        time: 0,
                        price: 335.971,
                        fast: 336.98,
                        slow: 337.34,
                        signal: Signal::Hold,
                    }),
                    note: None,
                },
                SymbolReport {
                    symbol: "QQQ".into(),
                    history_bars: 1440,
                    live_bars: 2,
                    last: Ok(Evaluation {
                        time: 0,
                        price: 400.0,
                        fast: 401.0,
                        slow: 399.0,
                        signal: Signal::Buy,
                    }),
                    note: Some("delayed data: live refused".into()),
                },
                SymbolReport {
                    symbol: "TSLA".into(),
                    history_bars: 0,
                    live_bars: 0,
                    last: Err(NoFigures::NoData(NoHistory::Failed(
                        SupervisorError::Remote(bridge::protocol::RemoteError {
                            kind: bridge::protocol::ErrorKind::NoData,
                            message: "no data for TSLA".into(),
                        }),
                    ))),
                    note: None,
                },
            ],
            history_elapsed: Duration::from_millis(20),
            live_elapsed: Duration::from_millis(5100),
            round_trips: Vec::new(),
            supervisor: SupervisorStats::default(),
            signals_written: 3,
            interrupted: true,
            gave_up: None,
            broker: Default::default(),
            trading: None,
        };
        let text = render(&o);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "symbol    history   live   last price     fast SMA     slow SMA  signal"
        );
        assert_eq!(
            lines[1],
            "SPY          1440      5       335.97       336.98       337.34  hold"
        );
        assert_eq!(
            lines[2],
            "QQQ          1440      2       400.00       401.00       399.00  buy (delayed data: live refused)"
        );
        assert_eq!(
            lines[3],
            "TSLA            0      0            -            -            -  no data: NoData: no data for TSLA"
        );
        assert_eq!(lines[4], "");
        assert_eq!(
            lines[5],
            "history: 3 symbols in 0.02 s; live phase 5.1 s (interrupted)"
        );
        assert_eq!(lines[6], "bridge round trip: p50 -, p99 - (0 pings)");
        assert!(lines[8].ends_with("signals written: 3"), "{}", lines[8]);
        assert!(
            !text.contains("trading:"),
            "no trading part without --trade"
        );
    }

    #[test]
    fn trading_shows_the_orders_fates_and_each_symbols_profit() {
        use crate::trader::TradingRow;
        let t = TradingSummary {
            orders: 3,
            filled: 2,
            working: 0,
            cancelled: 1,
            rejected: 0,
            refused_by_limits: 1,
            failed: 0,
            fills: 2,
            rows: vec![
                TradingRow {
                    symbol: "SPY".into(),
                    position: 10.0,
                    avg_cost: 401.234,
                    realised: 0.0,
                    unrealised: Some(12.3),
                    commissions: 1.0,
                },
                TradingRow {
                    symbol: "QQQ".into(),
                    position: 0.0,
                    avg_cost: 0.0,
                    realised: -5.5,
                    unrealised: None,
                    commissions: 2.0,
                },
            ],
        };
        let text = trading(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "trading: 3 orders (2 filled, 0 working, 1 cancelled, 0 rejected), 2 fills; \
             1 refused by the risk limits, 0 failed"
        );
        assert_eq!(
            lines[2],
            "symbol     position   avg cost     realised   unrealised  commission"
        );
        assert_eq!(
            lines[3],
            "SPY              10     401.23         0.00        12.30        1.00"
        );
        assert_eq!(
            lines[4],
            "QQQ               0       0.00        -5.50            -        2.00"
        );
    }
}
