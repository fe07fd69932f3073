//! A plain HTTP/1.1 client over a TCP socket for the dashboard's tests: one request per
//! connection ([`request`]), and a Server-Sent Events reader ([`events`]). Every read and
//! connect is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const IO_LIMIT: Duration = Duration::from_secs(20);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("the server answers");
    s.set_read_timeout(Some(IO_LIMIT)).unwrap();
    s.set_write_timeout(Some(IO_LIMIT)).unwrap();
    s
}

/// `METHOD path` to `addr`: the status and the body.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    request_as(addr, &addr.to_string(), method, path)
}

/// [`request`] with `host` as its `Host` header.
pub(crate) fn request_as(addr: SocketAddr, host: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = connect(addr);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    // The head, then a body of its length (or up to the end of the connection).
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .expect("a head within the limit");
        if n == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut raw = Vec::new();
    match length {
        Some(n) => {
            raw.resize(n, 0);
            reader
                .read_exact(&mut raw)
                .expect("the body within the limit");
        }
        None => {
            reader
                .read_to_end(&mut raw)
                .expect("the body within the limit");
        }
    }
    let body = String::from_utf8_lossy(&raw).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let body = if lower.contains("transfer-encoding: chunked") {
        unchunk(&body)
    } else {
        body
    };
    (status, body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` whose body is JSON.
pub(crate) fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = request(addr, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// One Server-Sent Event: its name, id and data.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    pub(crate) event: String,
    pub(crate) id: Option<u64>,
    pub(crate) data: serde_json::Value,
}

/// Reads `GET path` as Server-Sent Events until one named `last` (included) or the stream
/// ends, within `limit`.
pub(crate) fn events(addr: SocketAddr, path: &str, last: &str, limit: Duration) -> Vec<Sse> {
    let mut s = connect(addr);
    write!(
        s,
        // HTTP/1.0: the stream comes as it is, not in chunks, and ends with the connection.
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let until = Instant::now() + limit;
    let mut lines = BufReader::new(s).lines();
    // The head, up to its blank line.
    for line in lines.by_ref() {
        if line.expect("a head").is_empty() {
            break;
        }
    }
    let mut out = Vec::new();
    let (mut event, mut id, mut data) = (String::new(), None, String::new());
    for line in lines {
        assert!(
            Instant::now() < until,
            "no {last:?} event within {limit:?}: {out:?}"
        );
        let Ok(line) = line else { break };
        if line.is_empty() {
            if !data.is_empty() {
                let parsed = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event {event}: {e}: {data}"));
                let done = event == last;
                out.push(Sse {
                    event: std::mem::take(&mut event),
                    id: id.take(),
                    data: parsed,
                });
                data.clear();
                if done {
                    break;
                }
            }
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_string();
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    out
}
