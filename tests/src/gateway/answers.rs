//! The market the fake gateway serves: deterministic prices, the answer to a historical
//! request (bars and end marker, or the configured error), the answer to a contract details
//! request, a stream of 5-second real-time bars, and a stream of last-trade ticks (live or
//! delayed).
//!
//! Invariants: prices are positive and a pure function of (symbol, time), so any test can
//! predict them; historical bars end with the last whole bar before the answer's end; without
//! `realistic_history` there are exactly `duration / bar size` of them and the end marker is
//! in UTC, with it they lie in trading sessions only and the end marker is in US/Eastern;
//! real-time bars start on a multiple of 5 s and advance by 5 s each, a bar held back while
//! the link to IB is lost is never sent later; contract ids are a pure function of (symbol,
//! primary exchange).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::behaviour::Behaviour;
use super::calendar::{self, Hours};
use super::connections::lock;
use super::connections::{self, Connection, Offer};
use super::state::GatewayState;
use super::wire::{
    bar_size_seconds, codes, con_id, duration_seconds, error_frame, incoming, proto_frame, texts,
    ticks, utc_text, Contract, ContractData, ContractDataEnd, ContractDataRequest, ContractDetails,
    HistoricalData, HistoricalDataBar, HistoricalDataEnd, HistoricalDataRequest, MarketDataType,
    RealTimeBarTick, TickPrice, TickSize,
};

/// A deterministic price for `symbol` at `t`: positive, smooth, symbol-dependent.
fn price(symbol: &str, t: i64) -> f64 {
    let base = 50.0 + symbol.bytes().map(f64::from).sum::<f64>() % 400.0;
    base * (1.0 + 0.01 * ((t as f64) / 1800.0).sin() + 0.002 * ((t as f64) / 97.0).cos())
}

/// The historical bar starting at `t`, `size` seconds long, dated `date`.
fn history_bar(symbol: &str, t: i64, size: i64, date: String) -> HistoricalDataBar {
    let (open, close) = (price(symbol, t), price(symbol, t + size));
    HistoricalDataBar {
        date: Some(date),
        open: Some(open),
        high: Some(open.max(close) * 1.001),
        low: Some(open.min(close) * 0.999),
        close: Some(close),
        volume: Some("100".into()),
        wap: Some(format!("{:.4}", (open + close) / 2.0)),
        bar_count: Some(10),
    }
}

/// A request's end written `yyyymmdd hh:mm:ss UTC` (or `yyyymmdd-hh:mm:ss`), in Unix seconds.
fn parse_request_end(text: &str) -> Option<i64> {
    let t = text.trim().trim_end_matches(" UTC");
    let (date, clock) = t.split_once([' ', '-'])?;
    if date.len() != 8 || clock.len() != 8 {
        return None;
    }
    base::unix_time::parse_utc(&format!(
        "{}-{}-{}T{}Z",
        &date[..4],
        &date[4..6],
        &date[6..],
        clock
    ))
}

/// The answer to a historical data request: the bars and the end marker, or an error.
pub(super) fn history(req: &HistoricalDataRequest, b: &Behaviour, n: u32) -> Vec<u8> {
    let id = req.req_id.unwrap_or(-1);
    let contract = req.contract.clone().unwrap_or_default();
    let symbol = contract.symbol.clone().unwrap_or_default();
    if n < b.pacing_violations {
        return error_frame(
            id,
            codes::HISTORICAL_DATA_SERVICE,
            &format!(
                "{}Historical data request pacing violation",
                texts::HMDS_ERROR
            ),
        );
    }
    if b.unknown_symbols.contains(&symbol) {
        return error_frame(
            id,
            codes::NO_SECURITY_DEFINITION,
            texts::NO_SECURITY_DEFINITION,
        );
    }
    if b.history_no_permissions.contains(&symbol) {
        return no_permissions(id, &contract);
    }
    if b.history_no_data.contains(&symbol) {
        return no_data(id, req);
    }
    let size = req
        .bar_size_setting
        .as_deref()
        .and_then(bar_size_seconds)
        .unwrap_or(60);
    if b.step_sizes {
        let asked = req
            .duration
            .as_deref()
            .and_then(duration_seconds)
            .unwrap_or(0);
        if asked as u64 > worker::pacing::max_request_span(size as u32) {
            return error_frame(
                id,
                codes::HISTORICAL_DATA_SERVICE,
                &format!("{}Time length exceed max.", texts::HMDS_ERROR),
            );
        }
    }
    // The request's own end (`yyyymmdd hh:mm:ss UTC`, as `ibapi` writes it), else the
    // gateway's.
    let end = req
        .end_date_time
        .as_deref()
        .and_then(parse_request_end)
        .or(b.history_end)
        .unwrap_or_else(|| base::unix_time::now().as_secs() as i64);
    let (bars, start, end_text) = if b.realistic_history {
        let (bars, start) = session_bars(req, &symbol, size, end);
        if bars.is_empty() {
            return no_data(id, req);
        }
        (
            bars,
            calendar::eastern_text(start),
            calendar::eastern_text(end),
        )
    } else {
        let span = req
            .duration
            .as_deref()
            .and_then(duration_seconds)
            .unwrap_or(86_400);
        let last = end.div_euclid(size) * size - size;
        let count = span / size;
        let bars = (0..count)
            .map(|i| {
                let t = last - (count - 1 - i) * size;
                history_bar(&symbol, t, size, t.to_string())
            })
            .collect();
        (bars, utc_text(last - (count - 1) * size), utc_text(end))
    };
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
            start_date_str: Some(start),
            end_date_str: Some(end_text),
        },
    ));
    out
}

/// The bars of the trading sessions in the request's window ending at `end`, and the
/// window's start. An `N D` duration is the last `N` sessions opened before `end`; any other
/// is that much wall-clock time before `end`. Intraday bars start at a session's open, step
/// by `size`, end at the latest at its close, and are dated in Unix seconds (format 2); bars
/// of a day or more are one per session, dated `YYYYMMDD`.
fn session_bars(
    req: &HistoricalDataRequest,
    symbol: &str,
    size: i64,
    end: i64,
) -> (Vec<HistoricalDataBar>, i64) {
    let hours = if req.use_rth.unwrap_or(false) {
        Hours::Regular
    } else {
        Hours::Extended
    };
    let duration = req.duration.as_deref().unwrap_or("1 D");
    let start = match duration.trim().split_once(' ') {
        Some((n, "D")) => {
            let n = n.parse().unwrap_or(1);
            calendar::sessions_before(end, n, hours)
                .first()
                .map_or(end, |(open, _)| *open)
        }
        _ => end - duration_seconds(duration).unwrap_or(86_400),
    };
    let mut bars = Vec::new();
    for day in calendar::eastern_day(start)..=calendar::eastern_day(end) {
        let Some((open, close)) = calendar::session(day, hours) else {
            continue;
        };
        if size >= 86_400 {
            if open >= start && close <= end {
                bars.push(history_bar(
                    symbol,
                    open,
                    close - open,
                    calendar::date_text(day),
                ));
            }
            continue;
        }
        let mut t = open;
        while t < close {
            let bar_end = (t + size).min(close);
            if t >= start && bar_end <= end {
                bars.push(history_bar(symbol, t, bar_end - t, t.to_string()));
            }
            t += size;
        }
    }
    (bars, start)
}

/// Error 162 "HMDS query returned no data", as the real gateway words it.
fn no_data(id: i32, req: &HistoricalDataRequest) -> Vec<u8> {
    let c = req.contract.clone().unwrap_or_default();
    let what = req.what_to_show.as_deref().unwrap_or("TRADES");
    // The gateway names the data type in title case: TRADES -> Trades.
    let what: String = what
        .chars()
        .enumerate()
        .map(|(i, ch)| {
            if i == 0 {
                ch.to_ascii_uppercase()
            } else {
                ch.to_ascii_lowercase()
            }
        })
        .collect();
    error_frame(
        id,
        codes::HISTORICAL_DATA_SERVICE,
        &format!(
            "{}HMDS query returned no data: {}@{} {what}",
            texts::HMDS_ERROR,
            c.symbol.as_deref().unwrap_or_default(),
            c.exchange.as_deref().unwrap_or("SMART"),
        ),
    )
}

/// Error 162 "No market data permissions", as the real gateway words it.
fn no_permissions(id: i32, c: &Contract) -> Vec<u8> {
    let exchange = c
        .primary_exchange
        .as_deref()
        .filter(|e| !e.is_empty())
        .or(c.exchange.as_deref())
        .unwrap_or("SMART");
    error_frame(
        id,
        codes::HISTORICAL_DATA_SERVICE,
        &format!(
            "{}No market data permissions for {exchange} {}",
            texts::HMDS_ERROR,
            c.sec_type.as_deref().unwrap_or("STK"),
        ),
    )
}

/// The answer to a contract details request: one contract per primary exchange the symbol is
/// listed on (two for an ambiguous symbol; otherwise the one the request names, or NASDAQ)
/// that matches the request's primary exchange and contract id when it names them, then the
/// end marker; error 200 when none does.
pub(super) fn contract_details(req: &ContractDataRequest, b: &Behaviour) -> Vec<u8> {
    let id = req.req_id.unwrap_or(-1);
    let asked = req.contract.clone().unwrap_or_default();
    let symbol = asked.symbol.clone().unwrap_or_default();
    let wanted_exchange = asked.primary_exchange.as_deref().filter(|e| !e.is_empty());
    // An ambiguous symbol is listed on NASDAQ and NYSE; any other on the primary exchange
    // the request names (as a real listing abroad, SHOP on TSE), else on NASDAQ.
    let listed: Vec<&str> = if b.ambiguous_symbols.contains(&symbol) {
        vec!["NASDAQ", "NYSE"]
    } else {
        vec![wanted_exchange.unwrap_or("NASDAQ")]
    };
    let wanted_id = asked.con_id.filter(|id| *id != 0);
    let found: Vec<(&str, i32)> = listed
        .iter()
        .map(|e| (*e, con_id(&symbol, e)))
        .filter(|(e, c)| {
            wanted_exchange.is_none_or(|w| w == *e) && wanted_id.is_none_or(|w| w == *c)
        })
        .collect();
    if b.unknown_symbols.contains(&symbol) || found.is_empty() {
        return error_frame(
            id,
            codes::NO_SECURITY_DEFINITION,
            texts::NO_SECURITY_DEFINITION,
        );
    }
    let now = base::unix_time::now().as_secs() as i64;
    let mut out = Vec::new();
    for (exchange, con_id) in found {
        out.extend(proto_frame(
            incoming::CONTRACT_DATA,
            &ContractData {
                req_id: Some(id),
                contract: Some(Contract {
                    con_id: Some(con_id),
                    symbol: Some(symbol.clone()),
                    sec_type: Some(asked.sec_type.clone().unwrap_or_else(|| "STK".into())),
                    exchange: Some(asked.exchange.clone().unwrap_or_else(|| "SMART".into())),
                    primary_exchange: Some(exchange.into()),
                    currency: Some(asked.currency.clone().unwrap_or_else(|| "USD".into())),
                    last_trade_date_or_contract_month: asked
                        .last_trade_date_or_contract_month
                        .clone(),
                    local_symbol: Some(
                        asked
                            .local_symbol
                            .clone()
                            .filter(|l| !l.is_empty())
                            .unwrap_or_else(|| symbol.clone()),
                    ),
                }),
                contract_details: Some(ContractDetails {
                    market_name: Some(symbol.clone()),
                    min_tick: Some("0.01".into()),
                    valid_exchanges: Some(format!("SMART,{exchange}")),
                    long_name: Some(format!("{symbol} ({exchange})")),
                    time_zone_id: Some("US/Eastern".into()),
                    trading_hours: b
                        .trading_hours
                        .then(|| calendar::hours_text(now, Hours::Extended, &b.holidays)),
                    liquid_hours: b
                        .trading_hours
                        .then(|| calendar::hours_text(now, Hours::Regular, &b.holidays)),
                }),
            },
        ));
    }
    out.extend(proto_frame(
        incoming::CONTRACT_DATA_END,
        &ContractDataEnd { req_id: Some(id) },
    ));
    out
}

/// Whether `symbol`'s real-time data, of a stream opened at `opened`, is sent now: not while
/// the symbol is silenced ([`GatewayState::silenced`]), nor, with `trading_hours`, outside
/// its sessions (`hours`).
fn flows(
    symbol: &str,
    opened: Instant,
    hours: Hours,
    shared: &GatewayState,
    b: &Behaviour,
) -> bool {
    let now = base::unix_time::now().as_secs() as i64;
    !shared.silenced(symbol, opened)
        && (!b.trading_hours || calendar::in_session(now, hours, &b.holidays))
}

/// Sends 5-second bars for `symbol` every `realtime_interval` until the stream ends (cancelled,
/// ended by a restoration that lost data, the connection closed); while the link to IB is
/// lost or the market data farm broken the bars are held back (skipped), and on a stream
/// left dead by a flap, or silenced, or outside the symbol's hours (regular ones with `rth`)
/// with `trading_hours`, none is sent. After each bar sent, the knobs that act after a number
/// of bars in all.
pub(super) fn stream_bars(
    id: i32,
    symbol: &str,
    rth: bool,
    conn: &Connection,
    shared: &GatewayState,
    b: &Behaviour,
) {
    let opened = Instant::now();
    let hours = if rth { Hours::Regular } else { Hours::Extended };
    let now = base::unix_time::now().as_secs() as i64;
    let mut t = now.div_euclid(5) * 5;
    loop {
        std::thread::sleep(b.realtime_interval);
        if shared.stop.load(Ordering::Acquire) {
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
        t += 5;
        if !flows(symbol, opened, hours, shared, b) {
            if !conn.stream_live(id) {
                return;
            }
            continue;
        }
        match conn.offer_bar(id, &proto_frame(incoming::REAL_TIME_BARS, &bar)) {
            Ok(Offer::Sent) => {
                let sent = shared.realtime_bars.fetch_add(1, Ordering::Relaxed) + 1;
                after_bar(sent, conn, shared, b);
            }
            Ok(Offer::Held) => {}
            Ok(Offer::Ended) | Err(_) => return,
        }
    }
}

/// Streams `symbol`'s last trades every `realtime_interval` until the stream ends, as IB's
/// level-1 ticks: first the market data type (live or delayed), then for each trade its
/// price (with its size, as IB sends it) and its size again on its own. Delayed data is the
/// price of 15 minutes before. Held back while the link to IB is lost, like the bars.
pub(super) fn stream_ticks(
    id: i32,
    symbol: &str,
    delayed: bool,
    conn: &Connection,
    shared: &GatewayState,
    b: &Behaviour,
) {
    let (data_type, last, last_size, lag) = if delayed {
        (3, ticks::DELAYED_LAST, ticks::DELAYED_LAST_SIZE, 900)
    } else {
        (1, ticks::LAST, ticks::LAST_SIZE, 0)
    };
    let kind = proto_frame(
        incoming::MARKET_DATA_TYPE,
        &MarketDataType {
            req_id: Some(id),
            market_data_type: Some(data_type),
        },
    );
    if !matches!(conn.offer_bar(id, &kind), Ok(Offer::Sent)) {
        return;
    }
    let opened = Instant::now();
    let mut n: i64 = 0;
    loop {
        std::thread::sleep(b.realtime_interval);
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if !flows(symbol, opened, Hours::Extended, shared, b) {
            if !conn.stream_live(id) {
                return;
            }
            continue;
        }
        let now = base::unix_time::now().as_millis() as i64;
        let size = format!("{}", 100 + 100 * (n % 3));
        let mut frames = proto_frame(
            incoming::TICK_PRICE,
            &TickPrice {
                req_id: Some(id),
                tick_type: Some(last),
                price: Some(price(symbol, now / 1000 - lag)),
                size: Some(size.clone()),
                attr_mask: Some(0),
            },
        );
        frames.extend(proto_frame(
            incoming::TICK_SIZE,
            &TickSize {
                req_id: Some(id),
                tick_type: Some(last_size),
                size: Some(size),
            },
        ));
        match conn.offer_bar(id, &frames) {
            Ok(Offer::Sent | Offer::Held) => {}
            Ok(Offer::Ended) | Err(_) => return,
        }
        n += 1;
    }
}

/// What follows the `sent`-th real-time bar sent in all (on `conn`): the knobs that act after
/// a number of bars.
fn after_bar(sent: u32, conn: &Connection, shared: &GatewayState, b: &Behaviour) {
    if b.drop_after_realtime_bars == Some(sent) {
        conn.close();
    }
    if let Some(loss) = b.connectivity_loss.filter(|l| l.after_bars == sent) {
        connections::lose_link_for(&shared.connections, loss.lasts, loss.data_lost);
    }
    if let Some(flap) = b.farm_flap.filter(|f| f.after_bars == sent) {
        connections::flap_farm_for(&shared.connections, flap.lasts, flap.silent_streams);
    }
    for feed in b.silent_feeds.iter().filter(|f| f.after_bars == sent) {
        lock(&shared.silenced).insert(feed.symbol.clone(), Instant::now());
    }
    if let Some(outage) = b.outage.filter(|o| o.after_bars == sent) {
        let now = base::unix_time::now();
        lock(&shared.seen)
            .outage_ends
            .push((now + outage.lasts).as_secs_f64().ceil() as i64);
        shared.connections.outage(outage.lasts);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::gateway::PROTOBUF;

    /// The frames of `bytes`, each as (message id, body).
    fn frames(mut bytes: &[u8]) -> Vec<(i32, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 8 {
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let id = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            out.push((id - PROTOBUF, bytes[8..4 + len].to_vec()));
            bytes = &bytes[4 + len..];
        }
        out
    }

    #[test]
    fn realistic_history_ends_with_us_eastern_times() {
        let req = HistoricalDataRequest {
            req_id: Some(7),
            contract: Some(Contract {
                symbol: Some("SPY".into()),
                ..Contract::default()
            }),
            bar_size_setting: Some("1 min".into()),
            duration: Some("1 D".into()),
            use_rth: Some(true),
            ..HistoricalDataRequest::default()
        };
        let b = Behaviour {
            realistic_history: true,
            history_end: Some(1_763_805_600),
            ..Behaviour::default()
        };
        let out = frames(&history(&req, &b, 0));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, incoming::HISTORICAL_DATA);
        let bars = HistoricalData::decode(&out[0].1[..]).unwrap();
        assert_eq!(bars.historical_data_bars.len(), 390);
        assert_eq!(out[1].0, incoming::HISTORICAL_DATA_END);
        let end = HistoricalDataEnd::decode(&out[1].1[..]).unwrap();
        assert_eq!(end.req_id, Some(7));
        assert_eq!(
            end.start_date_str.as_deref(),
            Some("20251121 09:30:00 US/Eastern")
        );
        assert_eq!(
            end.end_date_str.as_deref(),
            Some("20251122 05:00:00 US/Eastern")
        );
        // Off: the same request gets every minute of the day, times in UTC.
        let plain = Behaviour {
            realistic_history: false,
            ..b
        };
        let out = frames(&history(&req, &plain, 0));
        let end = HistoricalDataEnd::decode(&out[1].1[..]).unwrap();
        assert_eq!(end.end_date_str.as_deref(), Some("20251122-10:00:00"));
        let bars = HistoricalData::decode(&out[0].1[..]).unwrap();
        assert_eq!(bars.historical_data_bars.len(), 1440);
    }

    #[test]
    fn contract_ids_differ_by_listing_and_stay_positive() {
        let (a, b) = (con_id("AMBG", "NASDAQ"), con_id("AMBG", "NYSE"));
        assert_ne!(a, b);
        assert!(a > 0 && b > 0);
        assert_eq!(a, con_id("AMBG", "NASDAQ"));
    }
}
