//! A fake TWS / IB Gateway that speaks the real wire protocol on loopback, for tests.
//!
//! Knobs ([`Behaviour`]) make it slow to send accounts, silent about the next valid id, or
//! refuse a client id as in use. Every connection's life is recorded ([`Gateway::connections`])
//! so a test can assert that the client closed its socket.
//!
//! Here: the gateway's life (listening, one thread per connection, the handshake, the request
//! loop). The wire format is in [`wire`], the bars it answers with in `answers`.
//!
//! Invariants: frames written to one connection never interleave (one lock per connection);
//! every connection is recorded from its first byte to its close, and whether the gateway or
//! the client closed it.

mod answers;
pub mod wire;

pub use wire::*;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;

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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
                lock(writer).write_all(&answers::history(&req, b, n))?;
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
                    answers::stream_bars(id, &symbol, &writer, &streams, &shared, &b)
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
