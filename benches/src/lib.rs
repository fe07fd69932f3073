//! The comparison harness's pieces: the messages, the framing of the baselines, the peer
//! process of every transport, and the parent-side transports.
//!
//! Every transport carries the same [`Envelope`]s encoded by the same codec
//! (`bridge::codec`). The baselines frame them with a 4-byte length prefix, write each message
//! with one `write` (as a request/reply system must; `pipe_buffered` batches into 64 KiB), and
//! read on a dedicated thread that hands replies to the requester, which is how a correct
//! pipe-based client works.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // a benchmark that cannot proceed should stop loudly

pub mod fan_out;
pub mod floor;
pub mod ice;
pub mod peer;
#[cfg(feature = "nats")]
pub mod remote;
pub mod results;
pub mod transport;

use bridge::protocol::{Bar, Body, Envelope, Event, Reply, Request};

/// A request with a payload of `len` bytes.
pub fn request(id: u64, len: usize) -> Envelope {
    Envelope {
        id,
        body: Body::Request(Request::Ping {
            payload: vec![0xA5; len],
        }),
    }
}

/// Live bar number `i`, as the worker sends it: one of 20 subscriptions.
pub fn live_bar(i: u64) -> Envelope {
    Envelope {
        id: 0,
        body: Body::Event(Event::Bar {
            sub: (i % 20) as u32,
            bar: Bar {
                time: 1_700_000_000 + i as i64,
                open: 100.0,
                high: 101.25,
                low: 99.5,
                close: 100.75,
                volume: 1200.0,
            },
        }),
    }
}

/// The reply a peer sends for `req`.
pub fn reply(req: Envelope) -> Envelope {
    let payload = match req.body {
        Body::Request(Request::Ping { payload }) => payload,
        _ => Vec::new(),
    };
    Envelope {
        id: req.id,
        body: Body::Reply(Reply::Pong { payload }),
    }
}

/// The message that ends a stream, carrying how many messages were sent and how many futex
/// wakes the producer issued (0 for the baselines).
pub fn end_of_stream(sent: u64, wakes: u64) -> Envelope {
    let mut payload = sent.to_le_bytes().to_vec();
    payload.extend_from_slice(&wakes.to_le_bytes());
    Envelope {
        id: u64::MAX,
        body: Body::Request(Request::Ping { payload }),
    }
}

/// Whether `env` ends a stream; returns the message count and wakes it carries.
pub fn is_end(env: &Envelope) -> Option<(u64, u64)> {
    match &env.body {
        Body::Request(Request::Ping { payload }) if env.id == u64::MAX && payload.len() == 16 => {
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&payload[i..i + 8]);
                u64::from_le_bytes(b)
            };
            Some((word(0), word(8)))
        }
        _ => None,
    }
}

/// The connection settings of the harness's shm transport.
pub fn shm_config() -> bridge::channel::ChannelConfig {
    bridge::channel::ChannelConfig {
        build_id: "bridge-bench".into(),
        ..bridge::channel::ChannelConfig::default()
    }
}

/// Length-prefixed framing for the pipe and socket baselines.
pub mod framing {
    use std::io::{self, Read, Write};

    /// Writes one frame with one `write_all`.
    pub fn write(w: &mut impl Write, scratch: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
        write_flagged(w, scratch, bytes, 0)
    }

    /// Writes one frame, `flag` or'ed into its length prefix, with one `write_all`.
    fn write_flagged(
        w: &mut impl Write,
        scratch: &mut Vec<u8>,
        bytes: &[u8],
        flag: u32,
    ) -> io::Result<()> {
        scratch.clear();
        scratch.extend_from_slice(&(bytes.len() as u32 | flag).to_le_bytes());
        scratch.extend_from_slice(bytes);
        w.write_all(scratch)
    }

    /// The length prefix's flag of a frame in a message's fixed layout.
    pub const FIXED: u32 = 1 << 31;

    /// Writes one frame flagged as a fixed layout with one `write_all`.
    pub fn write_fixed(w: &mut impl Write, scratch: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
        write_flagged(w, scratch, bytes, FIXED)
    }

    /// Reads one frame into `buf`; `Some(true)` if it is flagged as a fixed layout, `None` at
    /// end of stream.
    pub fn read_flagged(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(len);
        buf.resize((len & !FIXED) as usize, 0);
        r.read_exact(buf)?;
        Ok(Some(len & FIXED != 0))
    }

    /// Reads one frame into `buf`; `Ok(false)` at end of stream.
    pub fn read(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
        read_flagged(r, buf).map(|frame| frame.is_some())
    }
}

/// CPU time (user + system, all threads) a process has used, in nanoseconds.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
