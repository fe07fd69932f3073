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
    pub const CURRENT_TIME: i32 = 49;
}

/// Outgoing (from the client) message ids.
pub mod outgoing {
    pub const REQUEST_CURRENT_TIME: i32 = 49;
    pub const START_API: i32 = 71;
}

/// Error codes the gateway sends.
pub mod codes {
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
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            accounts: vec!["DU1234567".into()],
            accounts_delay: Duration::ZERO,
            no_next_valid_id: false,
            ids_in_use: Vec::new(),
            farm_notices: true,
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

struct Shared {
    behaviour: Mutex<Behaviour>,
    records: Mutex<Vec<ConnectionRecord>>,
    stop: AtomicBool,
}

/// A running fake gateway.
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
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
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            records: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(stream, &s));
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

    /// Changes the behaviour for connections made from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = behaviour;
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
fn serve(mut s: TcpStream, shared: &Shared) {
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
    let by_gateway = session(&mut s, shared, index, &behaviour).unwrap_or_default();
    if by_gateway {
        let _ = s.shutdown(Shutdown::Both);
    }
    let mut r = lock(&shared.records);
    r[index].closed_after = Some(opened.elapsed());
    r[index].closed_by_gateway = by_gateway;
}

/// Runs the protocol; `Ok(true)` if the gateway ended the connection, `Ok(false)` or an
/// error when the client did.
fn session(s: &mut TcpStream, shared: &Shared, index: usize, b: &Behaviour) -> io::Result<bool> {
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
    // Requests until the client goes away.
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
        if id == outgoing::REQUEST_CURRENT_TIME + PROTOBUF || id == outgoing::REQUEST_CURRENT_TIME {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            s.write_all(&proto_frame(
                incoming::CURRENT_TIME,
                &CurrentTime {
                    current_time: Some(now),
                },
            ))?;
        }
    }
}
