//! A fake TWS / IB Gateway that speaks the real wire protocol on loopback, for tests.
//!
//! Framing: every message is a 4-byte big-endian length and a body. The client opens with
//! `API\0` and a framed `v<min>..<max>`; the gateway answers with the framed text
//! `<server version>\0<yyyymmdd hh:mm:ss> <zone>\0` (no message id). Every later body is a
//! 4-byte big-endian message id and, for ids above 200, a protobuf message of type
//! `id - 200`. Message structs are written by hand with `prost` derive (no `protoc`), holding
//! only the fields the gateway reads or writes; unknown fields are skipped when decoding.
//!
//! Knobs ([`Behaviour`]) make it slow to send accounts, silent about the next valid id, or
//! refuse a client id as in use. Every connection's life is recorded ([`Gateway::connections`])
//! so a test can assert that the client closed its socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;

/// The server version announced (the newest `ibapi` 5.5 speaks).
pub const SERVER_VERSION: i32 = 226;
/// Offset of protobuf message ids.
pub const PROTOBUF: i32 = 200;

/// Incoming (to the client) message ids.
pub mod incoming {
    pub const ERROR: i32 = 4;
    pub const NEXT_VALID_ID: i32 = 9;
    pub const MANAGED_ACCOUNTS: i32 = 15;
    pub const HISTORICAL_DATA: i32 = 17;
    pub const CURRENT_TIME: i32 = 49;
    pub const REAL_TIME_BARS: i32 = 50;
    pub const HISTORICAL_DATA_END: i32 = 108;
}

/// Outgoing (from the client) message ids.
pub mod outgoing {
    pub const REQUEST_HISTORICAL_DATA: i32 = 20;
    pub const REQUEST_CURRENT_TIME: i32 = 49;
    pub const REQUEST_REAL_TIME_BARS: i32 = 50;
    pub const CANCEL_REAL_TIME_BARS: i32 = 51;
    pub const START_API: i32 = 71;
}

/// Error codes the gateway sends.
pub mod codes {
    pub const HISTORICAL_DATA_SERVICE: i32 = 162;
    pub const NO_SECURITY_DEFINITION: i32 = 200;
    pub const CLIENT_ID_IN_USE: i32 = 326;
    pub const MARKET_DATA_FARM_OK: i32 = 2104;
    pub const HMDS_FARM_OK: i32 = 2106;
    pub const SEC_DEF_FARM_OK: i32 = 2158;
}

#[derive(Clone, PartialEq, Message)]
pub struct StartApiRequest {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NextValidId {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ManagedAccounts {
    #[prost(string, optional, tag = "1")]
    pub accounts_list: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ErrorMessage {
    #[prost(int32, optional, tag = "1")]
    pub id: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub error_time: Option<i64>,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_msg: Option<String>,
}

/// The contract fields the gateway looks at.
#[derive(Clone, PartialEq, Message)]
pub struct Contract {
    #[prost(string, optional, tag = "2")]
    pub symbol: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub sec_type: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub primary_exchange: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub currency: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalDataRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(string, optional, tag = "3")]
    pub end_date_time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub bar_size_setting: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub duration: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalDataBar {
    #[prost(string, optional, tag = "1")]
    pub date: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub open: Option<f64>,
    #[prost(double, optional, tag = "3")]
    pub high: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub low: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub close: Option<f64>,
    #[prost(string, optional, tag = "6")]
    pub volume: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub wap: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub bar_count: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, repeated, tag = "2")]
    pub historical_data_bars: Vec<HistoricalDataBar>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalDataEnd {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub start_date_str: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub end_date_str: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RealTimeBarsRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CancelRealTimeBars {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RealTimeBarTick {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub time: Option<i64>,
    #[prost(double, optional, tag = "3")]
    pub open: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub high: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub low: Option<f64>,
    #[prost(double, optional, tag = "6")]
    pub close: Option<f64>,
    #[prost(string, optional, tag = "7")]
    pub volume: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub wap: Option<String>,
    #[prost(int32, optional, tag = "9")]
    pub count: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CurrentTime {
    #[prost(int64, optional, tag = "1")]
    pub current_time: Option<i64>,
}

/// How the gateway behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Managed accounts.
    pub accounts: Vec<String>,
    /// Managed accounts are sent this long after start-API.
    pub accounts_delay: Duration,
    /// Never send the next valid id.
    pub no_next_valid_id: bool,
    /// Refuse these client ids as already in use (error 326, then close).
    pub ids_in_use: Vec<i32>,
    /// Send the farm status notices after the handshake.
    pub farm_notices: bool,
    /// Symbols without a security definition (error 200).
    pub unknown_symbols: Vec<String>,
    /// The first this many historical requests get a pacing violation (error 162).
    pub pacing_violations: u32,
    /// End of every historical answer, Unix seconds (`None`: now).
    pub history_end: Option<i64>,
    /// Close the connection, unanswered, on these historical requests (0 = the first the
    /// gateway receives).
    pub drop_on_history: Vec<u32>,
    /// Real time between two 5-second real-time bars (a fast market clock).
    pub realtime_interval: Duration,
    /// Close the connection after sending this many real-time bars in all (mid-stream).
    pub drop_after_realtime_bars: Option<u32>,
    /// Historical answers are sent this much later (a slow gateway).
    pub reply_delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            accounts: vec!["DU1234567".into()],
            accounts_delay: Duration::ZERO,
            no_next_valid_id: false,
            ids_in_use: Vec::new(),
            farm_notices: true,
            unknown_symbols: Vec::new(),
            pacing_violations: 0,
            history_end: None,
            drop_on_history: Vec::new(),
            realtime_interval: Duration::from_millis(100),
            drop_after_realtime_bars: None,
            reply_delay: Duration::ZERO,
        }
    }
}

/// The life of one client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The client id sent with start-API, if any.
    pub client_id: Option<i32>,
    /// When the client's socket was seen closed (EOF or error), if it was.
    pub closed_after: Option<Duration>,
    /// Whether the gateway closed it (client id in use, shutdown).
    pub closed_by_gateway: bool,
}

/// What the acceptor and every connection's threads share.
struct GatewayState {
    behaviour: Mutex<Behaviour>,
    records: Mutex<Vec<ConnectionRecord>>,
    stop: AtomicBool,
    history_requests: std::sync::atomic::AtomicU32,
    realtime_bars: std::sync::atomic::AtomicU32,
    realtime_requests: std::sync::atomic::AtomicU32,
    contracts: Mutex<Vec<Contract>>,
}

/// A running fake gateway.
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<GatewayState>,
    acceptor: Option<JoinHandle<()>>,
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn proto_frame(id: i32, msg: &impl Message) -> Vec<u8> {
    let mut body = (id + PROTOBUF).to_be_bytes().to_vec();
    msg.encode(&mut body).expect("a Vec grows as needed");
    frame(&body)
}

/// The framed error (notice) message.
pub fn error_frame(id: i32, code: i32, text: &str) -> Vec<u8> {
    proto_frame(
        incoming::ERROR,
        &ErrorMessage {
            id: Some(id),
            error_time: Some(0),
            error_code: Some(code),
            error_msg: Some(text.into()),
        },
    )
}

fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 16 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(body)
}

impl Gateway {
    /// Starts a gateway on a free loopback port.
    pub fn start(behaviour: Behaviour) -> io::Result<Gateway> {
        Self::start_on("127.0.0.1:0", behaviour)
    }

    /// Starts a gateway listening on `addr` (`host:port`).
    pub fn start_on(addr: &str, behaviour: Behaviour) -> io::Result<Gateway> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(GatewayState {
            behaviour: Mutex::new(behaviour),
            records: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            history_requests: std::sync::atomic::AtomicU32::new(0),
            realtime_bars: std::sync::atomic::AtomicU32::new(0),
            realtime_requests: std::sync::atomic::AtomicU32::new(0),
            contracts: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(stream, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(Gateway {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// `host:port` to connect to.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Historical data requests received so far.
    pub fn history_requests(&self) -> u32 {
        self.shared.history_requests.load(Ordering::Relaxed)
    }

    /// The contracts of the historical requests received so far.
    pub fn history_contracts(&self) -> Vec<Contract> {
        lock(&self.shared.contracts).clone()
    }

    /// Real-time bar subscriptions received so far.
    pub fn realtime_requests(&self) -> u32 {
        self.shared.realtime_requests.load(Ordering::Relaxed)
    }

    /// Every connection so far, in the order they were made.
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        lock(&self.shared.records).clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One client connection, until it closes.
fn serve(mut s: TcpStream, shared: Arc<GatewayState>) {
    let _ = s.set_nodelay(true);
    let opened = Instant::now();
    let index = {
        let mut r = lock(&shared.records);
        r.push(ConnectionRecord {
            client_id: None,
            closed_after: None,
            closed_by_gateway: false,
        });
        r.len() - 1
    };
    let behaviour = lock(&shared.behaviour).clone();
    // An error is the client going away mid-frame: not the gateway's doing.
    let by_gateway = session(&mut s, &shared, index, &behaviour).unwrap_or_default();
    if by_gateway {
        let _ = s.shutdown(Shutdown::Both);
    }
    let mut r = lock(&shared.records);
    r[index].closed_after = Some(opened.elapsed());
    r[index].closed_by_gateway = by_gateway;
}

/// Runs the protocol; `Ok(true)` if the gateway ended the connection, `Ok(false)` or an
/// error when the client did.
fn session(
    s: &mut TcpStream,
    shared: &Arc<GatewayState>,
    index: usize,
    b: &Behaviour,
) -> io::Result<bool> {
    // Handshake: "API\0", then the framed version range.
    let mut api = [0u8; 4];
    s.read_exact(&mut api)?;
    if &api != b"API\0" {
        return Ok(true);
    }
    let _versions = read_frame(s)?;
    let reply = format!("{SERVER_VERSION}\u{0}20261122 10:00:00 UTC\u{0}");
    s.write_all(&frame(reply.as_bytes()))?;
    // start-API
    let body = read_frame(s)?;
    let client_id = match body.get(..4) {
        Some(id)
            if i32::from_be_bytes([id[0], id[1], id[2], id[3]])
                == outgoing::START_API + PROTOBUF =>
        {
            StartApiRequest::decode(&body[4..])
                .ok()
                .and_then(|r| r.client_id)
        }
        _ => None,
    };
    lock(&shared.records)[index].client_id = client_id;
    if client_id.is_some_and(|id| b.ids_in_use.contains(&id)) {
        s.write_all(&error_frame(
            -1,
            codes::CLIENT_ID_IN_USE,
            "Unable to connect as the client id is already in use. Retry with a unique client id.",
        ))?;
        return Ok(true);
    }
    if !b.no_next_valid_id {
        s.write_all(&proto_frame(
            incoming::NEXT_VALID_ID,
            &NextValidId { order_id: Some(1) },
        ))?;
    }
    if b.farm_notices {
        for (code, text) in [
            (
                codes::MARKET_DATA_FARM_OK,
                "Market data farm connection is OK:usfarm",
            ),
            (
                codes::HMDS_FARM_OK,
                "HMDS data farm connection is OK:ushmds",
            ),
            (
                codes::SEC_DEF_FARM_OK,
                "Sec-def data farm connection is OK:secdefnj",
            ),
        ] {
            s.write_all(&error_frame(-1, code, text))?;
        }
    }
    if !b.accounts_delay.is_zero() {
        std::thread::sleep(b.accounts_delay);
    }
    s.write_all(&proto_frame(
        incoming::MANAGED_ACCOUNTS,
        &ManagedAccounts {
            accounts_list: Some(b.accounts.join(",")),
        },
    ))?;
    // Requests until the client goes away. Real-time streams write from threads of their own,
    // so every write from here on goes through one lock (frames never interleave).
    let writer = Arc::new(Mutex::new(s.try_clone()?));
    let streams: Arc<Mutex<Vec<i32>>> = Arc::new(Mutex::new(Vec::new()));
    let result = requests(s, shared, b, &writer, &streams);
    lock(&streams).clear();
    result
}

fn requests(
    s: &mut TcpStream,
    shared: &Arc<GatewayState>,
    b: &Behaviour,
    writer: &Arc<Mutex<TcpStream>>,
    streams: &Arc<Mutex<Vec<i32>>>,
) -> io::Result<bool> {
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return Ok(true);
        }
        let body = match read_frame(s) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(id) = body
            .get(..4)
            .map(|i| i32::from_be_bytes([i[0], i[1], i[2], i[3]]))
        else {
            continue;
        };
        if id == outgoing::REQUEST_HISTORICAL_DATA + PROTOBUF {
            let n = shared.history_requests.fetch_add(1, Ordering::Relaxed);
            if b.drop_on_history.contains(&n) {
                return Ok(true);
            }
            if let Ok(req) = HistoricalDataRequest::decode(&body[4..]) {
                if let Some(c) = &req.contract {
                    lock(&shared.contracts).push(c.clone());
                }
                if !b.reply_delay.is_zero() {
                    std::thread::sleep(b.reply_delay);
                }
                lock(writer).write_all(&history(&req, b, n))?;
            }
        } else if id == outgoing::REQUEST_REAL_TIME_BARS + PROTOBUF {
            shared.realtime_requests.fetch_add(1, Ordering::Relaxed);
            if let Ok(req) = RealTimeBarsRequest::decode(&body[4..]) {
                let id = req.req_id.unwrap_or(-1);
                let symbol = req.contract.and_then(|c| c.symbol).unwrap_or_default();
                lock(streams).push(id);
                let (writer, streams, shared, b) =
                    (writer.clone(), streams.clone(), shared.clone(), b.clone());
                std::thread::spawn(move || {
                    stream_bars(id, &symbol, &writer, &streams, &shared, &b)
                });
            }
        } else if id == outgoing::CANCEL_REAL_TIME_BARS + PROTOBUF {
            if let Ok(req) = CancelRealTimeBars::decode(&body[4..]) {
                lock(streams).retain(|s| Some(*s) != req.req_id);
            }
        } else if id == outgoing::REQUEST_CURRENT_TIME + PROTOBUF
            || id == outgoing::REQUEST_CURRENT_TIME
        {
            let now = worker::unix_time::now().as_secs() as i64;
            lock(writer).write_all(&proto_frame(
                incoming::CURRENT_TIME,
                &CurrentTime {
                    current_time: Some(now),
                },
            ))?;
        }
    }
}

/// Seconds of an IB bar size (`"1 min"`, `"5 secs"`, `"1 hour"`, `"1 day"`, ...).
pub fn bar_size_seconds(text: &str) -> Option<i64> {
    let (n, unit) = text.trim().split_once(' ')?;
    let n: i64 = n.parse().ok()?;
    let unit = match unit.trim_end_matches('s') {
        "sec" => 1,
        "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        _ => return None,
    };
    Some(n * unit)
}

/// Seconds of an IB duration (`"86400 S"`, `"1 D"`, `"2 W"`, `"1 M"`, `"1 Y"`).
pub fn duration_seconds(text: &str) -> Option<i64> {
    let (n, unit) = text.trim().split_once(' ')?;
    let n: i64 = n.parse().ok()?;
    let unit = match unit {
        "S" => 1,
        "D" => 86_400,
        "W" => 7 * 86_400,
        "M" => 30 * 86_400,
        "Y" => 365 * 86_400,
        _ => return None,
    };
    Some(n * unit)
}

/// `YYYYMMDD-HH:MM:SS` (UTC) of a Unix time.
fn utc_text(t: i64) -> String {
    let (year, month, day, h, m, s) = worker::unix_time::civil_time(t);
    format!("{year:04}{month:02}{day:02}-{h:02}:{m:02}:{s:02}")
}

/// A deterministic price for `symbol` at `t`: positive, smooth, symbol-dependent.
fn price(symbol: &str, t: i64) -> f64 {
    let base = 50.0 + symbol.bytes().map(f64::from).sum::<f64>() % 400.0;
    base * (1.0 + 0.01 * ((t as f64) / 1800.0).sin() + 0.002 * ((t as f64) / 97.0).cos())
}

/// The answer to a historical data request: the bars and the end marker, or an error.
fn history(req: &HistoricalDataRequest, b: &Behaviour, n: u32) -> Vec<u8> {
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
fn stream_bars(
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
