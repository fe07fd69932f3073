//! The dashboard's JSON: what `/api/state` ([`state`]) and `/api/bars/SYMBOL` ([`bars`])
//! answer, and each [`Message`] of `/api/events` ([`tell`], from the board's [`Change`]s).
//!
//! Invariants: a figure is the board's own value, unrounded (the page rounds it for people);
//! a missing figure is `null`, never 0; every message carries the board's sequence number
//! after the change it tells, so a page that read the state at `seq` skips what it holds.

use std::sync::Arc;

use bridge::protocol::{Bar, Fill, OrderReport, OrderType};
use serde_json::{json, Value};

use super::board::{Board, Change, Marker, Point, SymbolState, Warning};
use crate::strategy::{NoSignal, Signal};

/// One Server-Sent Event: its name, the board's sequence number after the change, its JSON.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) seq: u64,
    pub(crate) name: &'static str,
    pub(crate) data: Arc<str>,
}

impl Message {
    pub(crate) fn new(seq: u64, name: &'static str, data: Value) -> Message {
        Message {
            seq,
            name,
            data: data.to_string().into(),
        }
    }
}

/// A symbol's state in words: (`state`, `detail`).
fn state_words(state: &SymbolState) -> (&'static str, String) {
    match state {
        SymbolState::Waiting => ("waiting", "history not in yet".into()),
        SymbolState::History => ("history", "history in, no live bar yet".into()),
        SymbolState::NoData(why) => ("no data", why.clone()),
        SymbolState::Live => ("live", String::new()),
        SymbolState::Delayed(why) => ("delayed data", format!("live refused: {why}")),
        SymbolState::Refused(why) => ("refused", why.clone()),
        SymbolState::Stalled(since) => (
            "stalled",
            format!(
                "since {}: no live data, even after the subscription was made again",
                base::unix_time::clock_text(*since)
            ),
        ),
        SymbolState::Interrupted(why) => ("interrupted", format!("broker connection lost ({why})")),
    }
}

/// The newest bar time of any symbol: what a symbol's freshness is measured against.
fn market_time(board: &Board) -> i64 {
    board
        .symbols
        .iter()
        .filter_map(|s| s.points.back().map(|p| p.bar.time))
        .max()
        .unwrap_or(0)
}

/// Symbol `i`'s signal as the run's summary gives it: the crossover over its newest bars,
/// none if it lags the market, and none while its data is refused, stalled, interrupted or
/// missing; or why there is none.
fn signal(board: &Board, i: usize) -> Result<Signal, String> {
    let s = &board.symbols[i];
    match &s.state {
        SymbolState::Live | SymbolState::History | SymbolState::Delayed(_) => {}
        SymbolState::Waiting => return Err("no history yet".into()),
        other => return Err(state_words(other).0.to_string()),
    }
    let need = board.crossover.slow + 1;
    let mut window: Vec<Bar> = s.points.iter().rev().take(need).map(|p| p.bar).collect();
    window.reverse();
    board
        .crossover
        .evaluate_fresh(
            &window,
            board.bar_seconds,
            market_time(board),
            board.stale_after,
        )
        .map(|e| e.signal)
        .map_err(|e: NoSignal| e.to_string())
}

/// A figure as the summary prints it (two decimals, `-` for none).
fn text(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// The row of symbol `i`: its figures and state, and the figures as the summary prints them.
pub(crate) fn row(board: &Board, i: usize) -> Value {
    let s = &board.symbols[i];
    let eval = s.last_eval();
    let (state, detail) = state_words(&s.state);
    let (signal, no_signal) = match signal(board, i) {
        Ok(sig) => (Some(sig.to_string()), None),
        Err(why) => (None, Some(why)),
    };
    let last_price = s.points.back().map(|p| p.bar.close);
    let (fast, slow) = (eval.map(|e| e.fast), eval.map(|e| e.slow));
    json!({
        "symbol": s.symbol,
        "state": state,
        "detail": detail,
        "last_price": last_price,
        "last_bar_time": s.points.back().map(|p| p.bar.time),
        "fast": fast,
        "slow": slow,
        "signal": signal,
        "no_signal": no_signal,
        "history_bars": s.history_bars,
        "live_bars": s.live_bars,
        "last_live_bar_at_ms": s.last_bar_at_ms,
        "text": { "last_price": text(last_price), "fast": text(fast), "slow": text(slow) },
    })
}

/// A bar held for a chart, with the averages and signal at it.
pub(crate) fn point(p: Option<&Point>, _bar_seconds: u32) -> Value {
    match p {
        None => Value::Null,
        Some(p) => json!({
            "time": p.bar.time,
            "open": p.bar.open,
            "high": p.bar.high,
            "low": p.bar.low,
            "close": p.bar.close,
            "volume": p.bar.volume,
            "fast": p.eval.map(|e| e.fast),
            "slow": p.eval.map(|e| e.slow),
            "signal": p.eval.map(|e| e.signal.to_string()),
            "live": p.live,
        }),
    }
}

pub(crate) fn marker(m: &Marker) -> Value {
    match m {
        Marker::Order { time, price, text } => {
            json!({ "kind": "order", "time": time, "price": price, "text": text })
        }
        Marker::Fill { time, price, text } => {
            json!({ "kind": "fill", "time": time, "price": price, "text": text })
        }
    }
}

/// The positions the run's fills made, valued at each symbol's last close held.
pub(crate) fn positions(board: &Board) -> Value {
    Value::Array(
        board
            .book
            .holdings()
            .iter()
            .map(|(symbol, h)| {
                let last = board.last_price(symbol);
                json!({
                    "symbol": symbol,
                    "quantity": h.quantity,
                    "avg_cost": h.avg_cost,
                    "last_price": last,
                    "unrealised": last.map(|p| h.unrealised(p)),
                    "realised": h.realised,
                    "commissions": h.commissions,
                })
            })
            .collect(),
    )
}

pub(crate) fn order(o: &OrderReport) -> Value {
    let limit = match o.request.order_type {
        OrderType::Limit { price } => Some(price),
        OrderType::Market => None,
    };
    json!({
        "ref": o.request.order_ref,
        "symbol": o.request.symbol,
        "side": o.request.side.to_string(),
        "quantity": o.request.quantity,
        "limit": limit,
        "status": o.status.to_string(),
        "filled": o.filled,
        "avg_price": o.avg_price,
        "reason": o.reason,
    })
}

pub(crate) fn fill(f: &Fill) -> Value {
    json!({
        "ref": f.order_ref,
        "exec_id": f.exec_id,
        "symbol": f.symbol,
        "side": f.side.to_string(),
        "quantity": f.quantity,
        "price": f.price,
        "commission": f.commission,
        "time": f.time,
    })
}

pub(crate) fn warning(w: &Warning) -> Value {
    json!({ "at_ms": w.0, "level": w.1, "text": w.2 })
}

/// The median of the round trips held, microseconds.
fn median_round_trip(board: &Board) -> Option<f64> {
    let mut v: Vec<f64> = board.health.round_trips.iter().map(|r| r.1).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

pub(crate) fn health(board: &Board) -> Value {
    let h = &board.health;
    json!({
        "broker": h.broker,
        "broker_detail": h.broker_detail,
        "broker_losses": h.losses,
        "broker_restores_data_lost": h.restores_data_lost,
        "worker_restarts": h.worker_restarts,
        "replacements": h.replacements.iter().map(|r| json!({
            "at_ms": r.at_ms, "generation": r.generation, "reason": r.reason,
        })).collect::<Vec<_>>(),
        "round_trip_us": {
            "last": h.round_trips.back().map(|r| r.1),
            "median": median_round_trip(board),
            "samples": h.round_trips.len(),
        },
        "dropped": {
            "dashboard_updates": board.dropped_updates,
            "browser_events": board.lagged_events,
            "worker_logs": h.dropped_logs,
            "worker_events": h.dropped_events,
        },
        "warnings": h.warnings.iter().rev().take(20).map(warning).collect::<Vec<_>>(),
    })
}

/// `/api/state`: one object with everything but the bars.
pub(crate) fn state(board: &Board) -> Value {
    let mut orders: Vec<&OrderReport> = board.book.orders().collect();
    orders.sort_by(|a, b| a.request.order_ref.cmp(&b.request.order_ref));
    json!({
        "seq": board.seq,
        "ended": board.ended,
        "run": {
            "backend": board.backend,
            "started_ms": board.started_ms,
            "bar_seconds": board.bar_seconds,
            "strategy": { "fast": board.crossover.fast, "slow": board.crossover.slow },
            "trading": board.trading,
            "bars_held": board.bars,
        },
        "symbols": (0..board.symbols.len()).map(|i| row(board, i)).collect::<Vec<_>>(),
        "positions": positions(board),
        "orders": orders.into_iter().map(order).collect::<Vec<_>>(),
        "fills": board.fills.iter().map(fill).collect::<Vec<_>>(),
        "pnl": board.pnl.back().map(|p| p.1),
        "health": health(board),
    })
}

/// `/api/bars/SYMBOL`: the bars held, with the averages, signals and markers; `None` for a
/// symbol the run does not have.
pub(crate) fn bars(board: &Board, symbol: &str) -> Option<Value> {
    let s = board.symbol(symbol)?;
    Some(json!({
        "seq": board.seq,
        "symbol": s.symbol,
        "bar_seconds": board.bar_seconds,
        "bars": s.points.iter().map(|p| point(Some(p), board.bar_seconds)).collect::<Vec<_>>(),
        "markers": s.markers.iter().map(marker).collect::<Vec<_>>(),
    }))
}

/// What the report adds to the state: every symbol's bars, the P&L over time and the round
/// trips measured.
pub(crate) fn report(board: &Board, final_round_trips_us: &[f64]) -> Value {
    let mut v = state(board);
    v["bars"] = Value::Array(
        board
            .symbols
            .iter()
            .filter_map(|s| bars(board, &s.symbol))
            .collect(),
    );
    v["pnl_series"] = Value::Array(
        board
            .pnl
            .iter()
            .map(|(t, p)| json!({ "time": t, "value": p }))
            .collect(),
    );
    v["round_trips"] = Value::Array(
        board
            .health
            .round_trips
            .iter()
            .map(|(at, us)| json!({ "at_ms": at, "us": us }))
            .collect(),
    );
    let pct = |q: f64| -> Option<f64> {
        if final_round_trips_us.is_empty() {
            return None;
        }
        let i = ((q * final_round_trips_us.len() as f64).ceil() as usize)
            .clamp(1, final_round_trips_us.len())
            - 1;
        final_round_trips_us.get(i).copied()
    };
    v["final_round_trip_us"] = json!({
        "samples": final_round_trips_us.len(),
        "p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999),
    });
    v["warnings_all"] = Value::Array(board.health.warnings.iter().map(warning).collect());
    v
}

/// The messages that tell `changes` (just made to `board`) to the browsers.
pub(crate) fn tell(board: &Board, changes: Vec<Change>) -> Vec<Message> {
    let seq = board.seq;
    changes
        .into_iter()
        .map(|c| match c {
            Change::History(i) => Message::new(seq, "history", row(board, i)),
            Change::Bar { i, order } => {
                let s = &board.symbols[i];
                let mut data = json!({
                    "symbol": s.symbol,
                    "point": point(s.points.back(), board.bar_seconds),
                    "order": order,
                    "row": row(board, i),
                });
                if board.trading {
                    data["positions"] = positions(board);
                }
                Message::new(seq, "bar", data)
            }
            Change::Order {
                order_ref,
                marker: m,
            } => {
                let shown = board.book.order(&order_ref).map(order);
                Message::new(
                    seq,
                    "order",
                    json!({ "order": shown, "marker": m.as_ref().map(marker) }),
                )
            }
            Change::Fill { fill: f, marker: m } => Message::new(
                seq,
                "fill",
                json!({
                    "fill": fill(&f),
                    "positions": positions(board),
                    "marker": m.as_ref().map(marker),
                }),
            ),
            Change::Symbol(i) => Message::new(seq, "symbol", row(board, i)),
            Change::Positions => Message::new(seq, "positions", positions(board)),
            Change::Health => Message::new(seq, "health", health(board)),
            Change::Warning(w) => Message::new(seq, "warning", warning(&w)),
            Change::Notice { code, message } => {
                Message::new(seq, "notice", json!({ "code": code, "message": message }))
            }
            Change::End => Message::new(seq, "end", state(board)),
        })
        .collect()
}
