//! A fake TWS / IB Gateway that speaks the real wire protocol on loopback, for tests.
//!
//! Knobs ([`Behaviour`]) make it slow to send accounts, silent about the next valid id, refuse
//! a client id as in use (or keep one taken after its connection ended), refuse real-time bars
//! or history for some symbols, answer history the way the real gateway does (exchange time
//! zone, trading sessions), find several contracts for a symbol, lose its link to IB's servers
//! and restore it, or go down for a while. Market data (level-1 ticks) follows the account's
//! subscriptions as IB's does: a symbol whose real-time bars are refused as not subscribed
//! (354) gets 354 for live ticks too, and delayed ticks (10167, then tick types 68/71) once
//! the client asked for delayed data. Every connection's life is recorded
//! ([`Gateway::connections`]) so a test can assert that the client closed its socket, and what
//! the clients asked for is recorded too ([`Gateway::seen`]).
//!
//! Orders: behind the gateway is a broker's book ([`orders`]) shared by every connection and
//! surviving them, as a real broker's is: orders (place, modify, cancel, cancel all), their
//! fills at a constant price per symbol ([`Gateway::price`]), executions with commissions,
//! positions and account figures; the next valid id, at the handshake and on request, is above
//! every order id ever placed here. Its knobs: `reject_orders` (201, then Inactive),
//! `order_ack_delay` (acknowledgements held back while the gateway goes on reading) and
//! `drop_after_order` (the connection closed right after an order was received and recorded,
//! before it is acknowledged). A test reads the book ([`Gateway::orders`],
//! [`Gateway::executions`], [`Gateway::positions`]) and the PlaceOrder messages received
//! ([`Gateway::place_order_messages`], [`Seen::orders_placed`]).
//!
//! Here: the gateway's life (listening, one thread per connection, the handshake, the request
//! loop). The knobs are in `behaviour`, what the threads share in `state`, the wire format in
//! [`wire`], the answers in `answers`, the broker's book in [`orders`] and its requests in
//! `order_requests`, the exchange's clock in `calendar`, the live connections with the link
//! and outage state they share in `connections`, the record of requests in [`seen`].
//!
//! Invariants: frames written to one connection never interleave (one lock per connection);
//! every connection is recorded from its first byte to its close, and whether the gateway or
//! the client closed it; an order id is never handed out twice (the next valid id is above
//! every order id received); an order's events reach its client's connections in the order
//! they happened; with every knob at its default the gateway behaves as it did before the
//! knob existed (with no order placed, the next valid id is 1).

mod answers;
mod behaviour;
mod calendar;
mod connections;
mod order_requests;
pub mod orders;
pub mod seen;
mod state;
pub mod wire;

pub use behaviour::{Behaviour, ConnectivityLoss, FarmFlap, Outage, SilentFeed};
pub use orders::{BookExecution, BookOrder, BookPosition};
pub use seen::Seen;
pub use state::ConnectionRecord;
pub use wire::*;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;

use connections::{lock, Connection, Connections};
use state::GatewayState;

/// A running fake gateway.
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<GatewayState>,
    acceptor: Option<JoinHandle<()>>,
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
            history_requests: AtomicU32::new(0),
            realtime_bars: AtomicU32::new(0),
            realtime_requests: AtomicU32::new(0),
            contracts: Mutex::new(Vec::new()),
            connections: Arc::new(Connections::new()),
            seen: Mutex::new(Seen::default()),
            book: Mutex::new(orders::Book::default()),
            place_orders: AtomicU32::new(0),
            silenced: Mutex::new(std::collections::HashMap::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) if s.connections.in_outage() => {
                        // Down: the connection is closed before a byte is read.
                        lock(&s.seen).refused_connections += 1;
                        let _ = stream.shutdown(Shutdown::Both);
                    }
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

    /// Real-time bars sent so far, on every connection.
    pub fn realtime_bars_sent(&self) -> u32 {
        self.shared.realtime_bars.load(Ordering::Relaxed)
    }

    /// Every connection so far, in the order they were made.
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        lock(&self.shared.records).clone()
    }

    /// What the clients asked for so far.
    pub fn seen(&self) -> Seen {
        lock(&self.shared.seen).clone()
    }

    /// The broker's orders now, every client's, in the order they were placed.
    pub fn orders(&self) -> Vec<BookOrder> {
        lock(&self.shared.book).orders()
    }

    /// The broker's executions now, in the order they happened.
    pub fn executions(&self) -> Vec<BookExecution> {
        lock(&self.shared.book).executions()
    }

    /// The broker's positions now, closed ones (quantity 0) included, in the order opened.
    pub fn positions(&self) -> Vec<BookPosition> {
        lock(&self.shared.book).positions()
    }

    /// How many PlaceOrder messages with this order reference the gateway received, on
    /// every connection (modifications and refused ones included).
    pub fn place_order_messages(&self, order_ref: &str) -> u32 {
        lock(&self.shared.seen)
            .orders_placed
            .iter()
            .filter(|(_, r)| r == order_ref)
            .count() as u32
    }

    /// The price `symbol` fills at: 100 + (the sum of its bytes mod 100), constant (see
    /// [`orders`]).
    pub fn price(symbol: &str) -> f64 {
        orders::price(symbol)
    }

    /// Loses the link between the gateway and IB's servers now: error 1100 "Connectivity
    /// between IB and Trader Workstation has been lost." (request id -1) on every connection
    /// (and at once on any connection made meanwhile), and no real-time bars. After `lasts`,
    /// restores it: with `data_lost`, every real-time bar stream ends server-side (no more
    /// bars on those request ids; a new request starts a new stream) and 1101 "...restored-
    /// data lost." is sent; otherwise 1102 "...restored- data maintained." and the streams
    /// resume. Historical requests are answered meanwhile. A loss during a loss extends it:
    /// one 1100, and the restoration of the last one.
    pub fn lose_connectivity(&self, lasts: Duration, data_lost: bool) {
        connections::lose_link_for(&self.shared.connections, lasts, data_lost);
    }

    /// A flap of the market data farm: 2103 "Market data farm connection is broken:usfarm"
    /// on every connection now (and at once on any connection made meanwhile), no real-time
    /// data, and after `lasts` 2104 "Market data farm connection is OK:usfarm". With
    /// `silent_streams` the real-time streams open now never send again, without an error,
    /// until cancelled (as IB's gateway does at times); otherwise they resume. A flap during a
    /// flap extends it: its 2104 comes with the end of the last.
    pub fn farm_flap(&self, lasts: Duration, silent_streams: bool) {
        connections::flap_farm_for(&self.shared.connections, lasts, silent_streams);
    }

    /// The US/Eastern date now, as days since 1970-01-01 (what [`Behaviour::holidays`]
    /// holds).
    pub fn exchange_today() -> i64 {
        calendar::eastern_day(base::unix_time::now().as_secs() as i64)
    }

    /// An outage of the gateway process (a daily restart): every connection is closed now and
    /// every connection made in the next `lasts` is accepted and closed at once, before a
    /// byte is read (see [`Seen::refused_connections`]); then connections are served again,
    /// with the link to IB up.
    pub fn outage(&self, lasts: Duration) {
        self.shared.connections.outage(lasts);
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
    let taken = |id: i32| {
        b.ids_in_use.contains(&id)
            || (!b.client_id_linger.is_zero() && shared.connections.id_taken(id))
    };
    if client_id.is_some_and(taken) {
        s.write_all(&error_frame(
            -1,
            codes::CLIENT_ID_IN_USE,
            texts::CLIENT_ID_IN_USE,
        ))?;
        return Ok(true);
    }
    if !b.no_next_valid_id {
        // Above every order id ever placed here, by any client: ids are never reused.
        let next = lock(&shared.book).next_valid_id();
        s.write_all(&proto_frame(
            incoming::NEXT_VALID_ID,
            &NextValidId {
                order_id: Some(next),
            },
        ))?;
    }
    if b.farm_notices {
        for (code, text) in [
            (codes::MARKET_DATA_FARM_OK, texts::MARKET_DATA_FARM_OK),
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
    // Requests until the client goes away. From here on other threads write to this
    // connection too (real-time streams, the link's notices), all through its one lock.
    let Some(conn) = shared.connections.register(s.try_clone()?, client_id) else {
        return Ok(true); // down since the handshake began
    };
    let result = requests(s, shared, b, &conn, client_id.unwrap_or(0));
    // A read error after the gateway closed the socket is the gateway's doing too.
    let by_gateway = conn.closed_by_gateway() || matches!(result, Ok(true));
    conn.close(); // ends its streams
    shared.connections.unregister(&conn, b.client_id_linger);
    if by_gateway {
        Ok(true)
    } else {
        result
    }
}

fn requests(
    s: &mut TcpStream,
    shared: &Arc<GatewayState>,
    b: &Behaviour,
    conn: &Arc<Connection>,
    client_id: i32,
) -> io::Result<bool> {
    // IB's market data types: 1 live, 2 frozen, 3 delayed, 4 delayed frozen.
    const LIVE: i32 = 1;
    const DELAYED: i32 = 3;
    let mut data_type = LIVE;
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
        let msg = &body[4..];
        if let Some(closed) = order_requests::serve(id, msg, conn, client_id, shared, b) {
            if closed {
                return Ok(true);
            }
        } else if id == outgoing::REQUEST_HISTORICAL_DATA + PROTOBUF {
            let n = shared.history_requests.fetch_add(1, Ordering::Relaxed);
            if b.drop_on_history.contains(&n) {
                return Ok(true);
            }
            if let Ok(req) = HistoricalDataRequest::decode(msg) {
                if let Some(c) = &req.contract {
                    lock(&shared.contracts).push(c.clone());
                }
                let answer = answers::history(&req, b, n);
                if b.reply_delay.is_zero() {
                    conn.write(&answer)?;
                } else {
                    // A slow answer comes later while the gateway goes on reading (a cancel
                    // among what it reads); a request cancelled meanwhile is not answered.
                    let (conn, shared, delay) = (conn.clone(), shared.clone(), b.reply_delay);
                    let req_id = req.req_id.unwrap_or(-1);
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        if !lock(&shared.seen).history_cancels.contains(&req_id) {
                            let _ = conn.write(&answer);
                        }
                    });
                }
            }
        } else if id == outgoing::CANCEL_HISTORICAL_DATA + PROTOBUF {
            if let Ok(req) = CancelHistoricalData::decode(msg) {
                lock(&shared.seen)
                    .history_cancels
                    .push(req.req_id.unwrap_or(-1));
            }
        } else if id == outgoing::REQUEST_REAL_TIME_BARS + PROTOBUF {
            shared.realtime_requests.fetch_add(1, Ordering::Relaxed);
            if let Ok(req) = RealTimeBarsRequest::decode(msg) {
                let id = req.req_id.unwrap_or(-1);
                let rth = req.use_rth.unwrap_or(false);
                let symbol = req.contract.and_then(|c| c.symbol).unwrap_or_default();
                {
                    let mut seen = lock(&shared.seen);
                    *seen.realtime_requests.entry(symbol.clone()).or_default() += 1;
                    seen.realtime_ids
                        .entry(symbol.clone())
                        .or_default()
                        .push(id);
                }
                if let Some((_, code, text)) =
                    b.realtime_refused.iter().find(|(s, _, _)| *s == symbol)
                {
                    conn.write(&error_frame(id, *code, text))?;
                    continue;
                }
                conn.open_stream(id);
                let (conn, shared, b) = (conn.clone(), shared.clone(), b.clone());
                std::thread::spawn(move || {
                    answers::stream_bars(id, &symbol, rth, &conn, &shared, &b)
                });
            }
        } else if id == outgoing::CANCEL_REAL_TIME_BARS + PROTOBUF {
            if let Ok(req) = CancelRealTimeBars::decode(msg) {
                let id = req.req_id.unwrap_or(-1);
                lock(&shared.seen).realtime_cancels.push(id);
                conn.cancel_stream(id);
            }
        } else if id == outgoing::REQUEST_MARKET_DATA_TYPE + PROTOBUF {
            if let Ok(req) = MarketDataTypeRequest::decode(msg) {
                data_type = req.market_data_type.unwrap_or(LIVE);
                lock(&shared.seen).market_data_types.push(data_type);
            }
        } else if id == outgoing::REQUEST_MARKET_DATA + PROTOBUF {
            if let Ok(req) = MarketDataRequest::decode(msg) {
                let id = req.req_id.unwrap_or(-1);
                let symbol = req.contract.and_then(|c| c.symbol).unwrap_or_default();
                *lock(&shared.seen)
                    .market_data_requests
                    .entry(symbol.clone())
                    .or_default() += 1;
                // A symbol without a subscription has delayed data, if the client asked for
                // it; a competing session refuses both.
                let refusal = b.realtime_refused.iter().find(|(s, _, _)| *s == symbol);
                let delayed = match refusal {
                    None => false,
                    Some((_, codes::NOT_SUBSCRIBED, _)) if data_type >= DELAYED => true,
                    Some((_, code, text)) => {
                        conn.write(&error_frame(id, *code, text))?;
                        continue;
                    }
                };
                if delayed {
                    conn.write(&error_frame(
                        id,
                        codes::DELAYED_DISPLAYED,
                        texts::DELAYED_DISPLAYED,
                    ))?;
                }
                conn.open_stream(id);
                let (conn, shared, b) = (conn.clone(), shared.clone(), b.clone());
                std::thread::spawn(move || {
                    answers::stream_ticks(id, &symbol, delayed, &conn, &shared, &b)
                });
            }
        } else if id == outgoing::CANCEL_MARKET_DATA + PROTOBUF {
            if let Ok(req) = CancelMarketData::decode(msg) {
                let id = req.req_id.unwrap_or(-1);
                lock(&shared.seen).market_data_cancels.push(id);
                conn.cancel_stream(id);
            }
        } else if id == outgoing::REQUEST_CONTRACT_DATA + PROTOBUF {
            if let Ok(req) = ContractDataRequest::decode(msg) {
                let symbol = req.contract.as_ref().and_then(|c| c.symbol.clone());
                lock(&shared.seen)
                    .contract_details
                    .push(symbol.unwrap_or_default());
                conn.write(&answers::contract_details(&req, b))?;
            }
        } else if id == outgoing::REQUEST_CURRENT_TIME + PROTOBUF
            || id == outgoing::REQUEST_CURRENT_TIME
        {
            let now = base::unix_time::now().as_secs() as i64;
            conn.write(&proto_frame(
                incoming::CURRENT_TIME,
                &CurrentTime {
                    current_time: Some(now),
                },
            ))?;
        }
    }
}
