//! The market the fake gateway serves: deterministic prices, the answer to a historical
//! request (bars and end marker, or the configured error), and a stream of 5-second
//! real-time bars.
//!
//! Invariants: prices are positive and a pure function of (symbol, time), so any test can
//! predict them; historical bars end with the last whole bar before the answer's end and
//! there are exactly `duration / bar size` of them; real-time bars start on a multiple of 5 s
//! and advance by 5 s each.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::wire::{
    bar_size_seconds, codes, duration_seconds, error_frame, incoming, proto_frame, utc_text,
    HistoricalData, HistoricalDataBar, HistoricalDataEnd, HistoricalDataRequest, RealTimeBarTick,
};
use super::{lock, Behaviour, GatewayState};

/// A deterministic price for `symbol` at `t`: positive, smooth, symbol-dependent.
fn price(symbol: &str, t: i64) -> f64 {
    let base = 50.0 + symbol.bytes().map(f64::from).sum::<f64>() % 400.0;
    base * (1.0 + 0.01 * ((t as f64) / 1800.0).sin() + 0.002 * ((t as f64) / 97.0).cos())
}

/// The answer to a historical data request: the bars and the end marker, or an error.
pub(super) fn history(req: &HistoricalDataRequest, b: &Behaviour, n: u32) -> Vec<u8> {
    let id = req.req_id.unwrap_or(-1);
    let symbol = req
        .contract
        .as_ref()
        .and_then(|c| c.symbol.clone())
        .unwrap_or_default();
    if n < b.pacing_violations {
        return error_frame(
            id,
            codes::HISTORICAL_DATA_SERVICE,
            "Historical Market Data Service error message:Historical data request pacing violation",
        );
    }
    if b.unknown_symbols.contains(&symbol) {
        return error_frame(
            id,
            codes::NO_SECURITY_DEFINITION,
            "No security definition has been found for the request",
        );
    }
    let size = req
        .bar_size_setting
        .as_deref()
        .and_then(bar_size_seconds)
        .unwrap_or(60);
    let span = req
        .duration
        .as_deref()
        .and_then(duration_seconds)
        .unwrap_or(86_400);
    let end = b
        .history_end
        .unwrap_or_else(|| worker::unix_time::now().as_secs() as i64);
    let last = end.div_euclid(size) * size - size;
    let count = span / size;
    let bars = (0..count)
        .map(|i| {
            let t = last - (count - 1 - i) * size;
            let (open, close) = (price(&symbol, t), price(&symbol, t + size));
            HistoricalDataBar {
                date: Some(t.to_string()),
                open: Some(open),
                high: Some(open.max(close) * 1.001),
                low: Some(open.min(close) * 0.999),
                close: Some(close),
                volume: Some("100".into()),
                wap: Some(format!("{:.4}", (open + close) / 2.0)),
                bar_count: Some(10),
            }
        })
        .collect();
    let mut out = proto_frame(
        incoming::HISTORICAL_DATA,
        &HistoricalData {
            req_id: Some(id),
            historical_data_bars: bars,
        },
    );
    out.extend(proto_frame(
        incoming::HISTORICAL_DATA_END,
        &HistoricalDataEnd {
            req_id: Some(id),
            start_date_str: Some(utc_text(last - (count - 1) * size)),
            end_date_str: Some(utc_text(end)),
        },
    ));
    out
}

/// Sends 5-second bars for `symbol` every `realtime_interval` until cancelled or the
/// connection ends; drops the connection after the configured number of bars in all.
pub(super) fn stream_bars(
    id: i32,
    symbol: &str,
    writer: &Mutex<TcpStream>,
    streams: &Mutex<Vec<i32>>,
    shared: &GatewayState,
    b: &Behaviour,
) {
    let now = worker::unix_time::now().as_secs() as i64;
    let mut t = now.div_euclid(5) * 5;
    loop {
        std::thread::sleep(b.realtime_interval);
        if shared.stop.load(Ordering::Acquire) || !lock(streams).contains(&id) {
            return;
        }
        let (open, close) = (price(symbol, t), price(symbol, t + 5));
        let bar = RealTimeBarTick {
            req_id: Some(id),
            time: Some(t),
            open: Some(open),
            high: Some(open.max(close) * 1.0005),
            low: Some(open.min(close) * 0.9995),
            close: Some(close),
            volume: Some("10".into()),
            wap: Some(format!("{:.4}", (open + close) / 2.0)),
            count: Some(3),
        };
        let sent = shared.realtime_bars.fetch_add(1, Ordering::Relaxed) + 1;
        let mut w = lock(writer);
        if w.write_all(&proto_frame(incoming::REAL_TIME_BARS, &bar))
            .is_err()
        {
            return;
        }
        if b.drop_after_realtime_bars == Some(sent) {
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
        t += 5;
    }
}
