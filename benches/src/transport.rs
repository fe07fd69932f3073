//! The parent side of every transport.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bridge::channel::ChannelStats;
use bridge::channel::{self, Channel};
use bridge::codec::{self, Wire};
use bridge::protocol::Envelope;

use crate::{end_of_stream, framing, is_end};

/// The transports compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The bridge: shared-memory rings.
    Shm,
    /// A pipe, one write per message.
    Pipe,
    /// A pipe through a 64 KiB buffer (stream case only).
    PipeBuffered,
    /// `PipeBuffered` with the bridge's fixed layout for live bars (a flag in the length
    /// prefix says which frames have it): what a pipe design gets from the same layout
    /// (`stream_bars` only).
    PipeBufferedFixed,
    /// A Unix stream socket, one write per message.
    Uds,
    /// Raw shared words, spinning, no ring or codec: the machine's floor.
    Floor,
    /// iceoryx2's zero-copy publish-subscribe, busy polling, no codec: the peer.
    Iceoryx2,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Shm => "shm",
            Kind::Pipe => "pipe",
            Kind::PipeBuffered => "pipe_buffered",
            Kind::PipeBufferedFixed => "pipe_buffered_fixed",
            Kind::Uds => "uds",
            Kind::Floor => "floor",
            Kind::Iceoryx2 => "iceoryx2",
        }
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

enum Inner {
    Shm(Box<Channel>),
    Floor(Box<crate::floor::FloorConn>),
    Ice(Box<crate::ice::IceConn>),
    Stream {
        child: Child,
        writer: Box<dyn Write + Send>,
        reader: Option<Box<dyn Read + Send>>,
        replies: Option<crossbeam_channel::Receiver<Envelope>>,
        socket: Option<PathBuf>,
    },
}

/// A peer process and the parent's end of the transport to it.
pub struct Connection {
    kind: Kind,
    inner: Inner,
    deadline: Instant,
    scratch: Vec<u8>,
    frame: Vec<u8>,
}

/// What a stream run measured.
#[derive(Debug, Clone, Copy)]
pub struct Streamed {
    /// Messages received (and decoded), equal to what the peer says it sent.
    pub messages: u64,
    /// From the first message to the end marker.
    pub elapsed: Duration,
    /// Futex wakes the peer's producer issued (shm only; 0 for the baselines).
    pub peer_wakes: u64,
    /// Heap allocations the receiving thread made while it received and decoded the messages
    /// after the first [`WARM_UP`] (shm only; its buffers grow to their working size first).
    pub allocations: u64,
    /// The messages those allocations were counted over.
    pub counted: u64,
}

/// Messages received before allocations are counted.
pub const WARM_UP: u64 = 10_000;

impl Connection {
    /// Starts `exe --peer KIND MODE LEN SECS` and connects to it. With `BRIDGE_BENCH_PEER_CPU`
    /// set, the peer runs pinned to that CPU (through `taskset`, which execs in place).
    pub fn start(exe: &Path, kind: Kind, mode: &str, len: usize, secs: f64) -> Connection {
        let mut cmd = match std::env::var("BRIDGE_BENCH_PEER_CPU") {
            Ok(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu]).arg(exe);
                c
            }
            Err(_) => Command::new(exe),
        };
        cmd.args([
            "--peer",
            kind.name(),
            mode,
            &len.to_string(),
            &secs.to_string(),
        ]);
        let reads_replies = mode == "echo";
        let inner = match kind {
            Kind::Shm => Inner::Shm(Box::new(channel::spawn(cmd, &crate::shm_config()).unwrap())),
            Kind::Floor => Inner::Floor(Box::new(crate::floor::FloorConn::start(cmd))),
            Kind::Iceoryx2 => Inner::Ice(Box::new(crate::ice::IceConn::start(cmd, mode, len))),
            Kind::Pipe | Kind::PipeBuffered | Kind::PipeBufferedFixed => {
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap();
                let writer: Box<dyn Write + Send> = Box::new(child.stdin.take().unwrap());
                let reader: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
                Self::stream(child, writer, reader, reads_replies, None)
            }
            Kind::Uds => {
                let path = std::env::temp_dir().join(format!(
                    "bridge-bench-{}-{}.sock",
                    std::process::id(),
                    mode
                ));
                let _ = std::fs::remove_file(&path);
                let listener = UnixListener::bind(&path).unwrap();
                let child = cmd
                    .env("BRIDGE_BENCH_SOCKET", &path)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap();
                let (s, _) = listener.accept().unwrap();
                let reader: Box<dyn Read + Send> = Box::new(s.try_clone().unwrap());
                Self::stream(child, Box::new(s), reader, reads_replies, Some(path))
            }
        };
        Connection {
            kind,
            inner,
            deadline: far(),
            scratch: Vec::new(),
            frame: Vec::new(),
        }
    }

    fn stream(
        child: Child,
        writer: Box<dyn Write + Send>,
        reader: Box<dyn Read + Send>,
        reads_replies: bool,
        socket: Option<PathBuf>,
    ) -> Inner {
        if !reads_replies {
            return Inner::Stream {
                child,
                writer,
                reader: Some(reader),
                replies: None,
                socket,
            };
        }
        // The reply reader: a dedicated thread that decodes and hands each reply over.
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(64 << 10, reader);
            let mut buf = Vec::new();
            while let Ok(true) = framing::read(&mut r, &mut buf) {
                let Ok(env) = codec::decode::<Envelope>(&buf) else {
                    return;
                };
                if tx.send(env).is_err() {
                    return;
                }
            }
        });
        Inner::Stream {
            child,
            writer,
            reader: None,
            replies: Some(rx),
            socket,
        }
    }

    /// The transport.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// This process and the peer.
    pub fn pids(&self) -> [u32; 2] {
        let peer = match &self.inner {
            Inner::Shm(c) => c.control.peer_pid(),
            Inner::Floor(f) => f.peer_pid(),
            Inner::Ice(c) => c.peer_pid(),
            Inner::Stream { child, .. } => child.id(),
        };
        [std::process::id(), peer]
    }

    /// This side's counters of the connection (shm only).
    pub fn shm_stats(&self) -> Option<ChannelStats> {
        match &self.inner {
            Inner::Shm(c) => Some(c.control.stats()),
            Inner::Floor(_) | Inner::Ice(_) | Inner::Stream { .. } => None,
        }
    }

    /// Sends `req` and waits for its reply; encode and decode included. The floor has no
    /// messages: after its ping-pong it returns `None`.
    pub fn round_trip(&mut self, req: &Envelope) -> Option<Envelope> {
        Some(match &mut self.inner {
            Inner::Floor(f) => {
                f.round_trip();
                return None;
            }
            Inner::Ice(c) => {
                c.round_trip();
                return None;
            }
            Inner::Shm(c) => {
                // One deadline for the whole run: reading the clock per call would be measured.
                c.sender.send(req, Some(self.deadline)).unwrap();
                c.receiver.recv(self.deadline).unwrap()
            }
            Inner::Stream {
                writer, replies, ..
            } => {
                codec::encode_into(req, &mut self.scratch).unwrap();
                framing::write(writer, &mut self.frame, &self.scratch).unwrap();
                replies
                    .as_ref()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap()
            }
        })
    }

    /// Receives and decodes messages until the peer's end marker.
    pub fn consume(&mut self) -> Streamed {
        let mut count = 0u64;
        let mut first = None;
        let deadline = far();
        let allocated = bridge::alloc_count::allocations_on_this_thread;
        let mut counting_from = None;
        let mut allocations = 0;
        let (sent, peer_wakes) = match &mut self.inner {
            Inner::Ice(c) => {
                let (n, elapsed) = c.consume();
                return Streamed {
                    messages: n,
                    elapsed,
                    peer_wakes: 0,
                    allocations: 0,
                    counted: 0,
                };
            }
            Inner::Floor(f) => {
                let (n, elapsed) = f.consume();
                return Streamed {
                    messages: n,
                    elapsed,
                    peer_wakes: 0,
                    allocations: 0,
                    counted: 0,
                };
            }
            Inner::Shm(c) => {
                // The end marker's own decode (a ping with a payload) is not counted: what it
                // allocates is measured here and taken off at the end, rather than the counter
                // read around every receive (a pipe's loop reads none).
                let marker = codec::encode(&end_of_stream(0, 0)).unwrap();
                let before = allocated();
                drop(codec::decode::<Envelope>(&marker).unwrap());
                let for_marker = allocated() - before;
                loop {
                    let env: Envelope = c.receiver.recv(deadline).unwrap();
                    first.get_or_insert_with(Instant::now);
                    if let Some(end) = is_end(&env) {
                        allocations = counting_from.map_or(0, |from: u64| {
                            (allocated() - from).saturating_sub(for_marker)
                        });
                        break end;
                    }
                    count += 1;
                    if count == WARM_UP {
                        counting_from = Some(allocated());
                    }
                }
            }
            Inner::Stream { reader, .. } => {
                let mut r = BufReader::with_capacity(64 << 10, reader.as_mut().unwrap());
                let mut buf = Vec::new();
                let fixed = self.kind == Kind::PipeBufferedFixed;
                loop {
                    let layout = framing::read_flagged(&mut r, &mut buf).unwrap();
                    assert!(layout.is_some(), "stream ended early");
                    first.get_or_insert_with(Instant::now);
                    let env: Envelope = if fixed && layout == Some(true) {
                        Envelope::from_fixed(&buf).unwrap()
                    } else {
                        codec::decode(&buf).unwrap()
                    };
                    if let Some(end) = is_end(&env) {
                        break end;
                    }
                    count += 1;
                }
            }
        };
        let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
        assert_eq!(count, sent, "messages lost or duplicated");
        Streamed {
            messages: count,
            elapsed,
            peer_wakes,
            allocations,
            counted: counting_from.map_or(0, |_| count - WARM_UP),
        }
    }

    /// Closes the transport and waits for the peer to exit.
    pub fn close(self) {
        match self.inner {
            Inner::Shm(c) => {
                c.control.close();
            }
            Inner::Floor(f) => f.close(),
            Inner::Ice(c) => c.close(),
            Inner::Stream {
                mut child,
                writer,
                reader,
                replies,
                socket,
            } => {
                drop(writer);
                drop(reader);
                drop(replies);
                let _ = child.kill();
                let _ = child.wait();
                if let Some(p) = socket {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}
