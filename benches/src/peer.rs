//! The child side of every transport: `bridge-bench --peer TRANSPORT MODE [ARGS]`.
//!
//! Modes: `echo` answers every request; `produce LEN SECONDS` sends requests of LEN payload
//! bytes as fast as it can for SECONDS, then an end marker; `produce_bars` does the same with
//! live bar events; `idle` waits to be closed. The `floor` transport has its own peer
//! (`crate::floor`: `echo` and `produce` only).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bridge::channel::{self, RecvError};
use bridge::codec::{self, Wire, FIXED_MAX};
use bridge::protocol::Envelope;

use crate::{end_of_stream, framing, live_bar, reply, request};

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

/// Runs the peer; returns an error text for the parent to see on stderr.
pub fn run(args: &[String]) -> Result<(), String> {
    let transport = args.first().map(String::as_str).unwrap_or("");
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let len: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let secs: f64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    match transport {
        "shm" => shm(mode, len, secs),
        "pipe" | "pipe_buffered" | "pipe_buffered_fixed" => {
            let input = File::from(
                std::io::stdin()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| e.to_string())?,
            );
            let output = File::from(
                std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| e.to_string())?,
            );
            let framing = match transport {
                "pipe" => Framing::Unbuffered,
                "pipe_buffered" => Framing::Buffered,
                _ => Framing::BufferedFixed,
            };
            stream_peer(input, output, mode, len, secs, framing)
        }
        "floor" => crate::floor::peer(mode, secs),
        "iceoryx2" => crate::ice::peer(mode, len, secs),
        "uds" => {
            let path = std::env::var("BRIDGE_BENCH_SOCKET").map_err(|e| e.to_string())?;
            let s = UnixStream::connect(&path).map_err(|e| format!("{path}: {e}"))?;
            let r = s.try_clone().map_err(|e| e.to_string())?;
            stream_peer(r, s, mode, len, secs, Framing::Unbuffered)
        }
        other => Err(format!("unknown transport {other:?}")),
    }
}

fn shm(mode: &str, len: usize, secs: f64) -> Result<(), String> {
    let channel::Channel {
        mut sender,
        mut receiver,
        control,
    } = channel::attach(&crate::shm_config()).map_err(|e| e.to_string())?;
    match mode {
        "echo" => loop {
            let deadline = far();
            match receiver.recv::<Envelope>(deadline) {
                Ok(req) => sender
                    .send(&reply(req), Some(deadline))
                    .map_err(|e| e.to_string())?,
                Err(RecvError::PeerGone(_)) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        },
        "produce" | "produce_bars" => {
            let bars = mode == "produce_bars";
            let mut msg = request(0, len);
            let until = Instant::now() + Duration::from_secs_f64(secs);
            let mut sent = 0u64;
            while Instant::now() < until {
                // Like `pipe_buffered`: batch, publish when nothing more is queued right now.
                let deadline = Some(far());
                let mut batch = sender.batch();
                for _ in 0..256 {
                    if bars {
                        batch
                            .feed(&live_bar(sent), deadline)
                            .map_err(|e| e.to_string())?;
                    } else {
                        msg.id = sent;
                        batch.feed(&msg, deadline).map_err(|e| e.to_string())?;
                    }
                    sent += 1;
                }
            }
            let wakes = control.stats().sent.wakes;
            sender
                .send(&end_of_stream(sent, wakes), Some(far()))
                .map_err(|e| e.to_string())?;
            // Stay until the parent has read everything and closes.
            while !control.is_gone() {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
        "idle" => {
            while !control.is_gone() {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        other => Err(format!("unknown mode {other:?}")),
    }
}

/// How a stream peer writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// One write per message.
    Unbuffered,
    /// Through a 64 KiB buffer.
    Buffered,
    /// Through a 64 KiB buffer, live bars in the bridge's fixed layout.
    BufferedFixed,
}

fn stream_peer(
    input: impl std::io::Read,
    output: impl Write,
    mode: &str,
    len: usize,
    secs: f64,
    framing: Framing,
) -> Result<(), String> {
    let mut input = BufReader::with_capacity(64 << 10, input);
    let mut buf = Vec::new();
    let mut scratch = Vec::new();
    let mut frame = Vec::new();
    match mode {
        "echo" => {
            let mut output = output;
            while framing::read(&mut input, &mut buf).map_err(|e| e.to_string())? {
                let req: Envelope = codec::decode(&buf).map_err(|e| e.to_string())?;
                codec::encode_into(&reply(req), &mut scratch).map_err(|e| e.to_string())?;
                framing::write(&mut output, &mut frame, &scratch).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "produce" | "produce_bars" => {
            let bars = mode == "produce_bars";
            let mut msg = request(0, len);
            let mut fixed = [0u8; FIXED_MAX];
            let until = Instant::now() + Duration::from_secs_f64(secs);
            let mut sent = 0u64;
            let mut out: Box<dyn Write> = if framing != Framing::Unbuffered {
                Box::new(BufWriter::with_capacity(64 << 10, output))
            } else {
                Box::new(output)
            };
            while Instant::now() < until {
                for _ in 0..256 {
                    if bars && framing == Framing::BufferedFixed {
                        let n = live_bar(sent)
                            .to_fixed(&mut fixed)
                            .ok_or("a live bar has a fixed layout")?;
                        framing::write_fixed(&mut out, &mut frame, &fixed[..n])
                            .map_err(|e| e.to_string())?;
                        sent += 1;
                        continue;
                    } else if bars {
                        codec::encode_into(&live_bar(sent), &mut scratch)
                            .map_err(|e| e.to_string())?;
                    } else {
                        msg.id = sent;
                        codec::encode_into(&msg, &mut scratch).map_err(|e| e.to_string())?;
                    }
                    framing::write(&mut out, &mut frame, &scratch).map_err(|e| e.to_string())?;
                    sent += 1;
                }
            }
            codec::encode_into(&end_of_stream(sent, 0), &mut scratch).map_err(|e| e.to_string())?;
            framing::write(&mut out, &mut frame, &scratch).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            // Wait for the parent to close its end.
            while framing::read(&mut input, &mut buf).map_err(|e| e.to_string())? {}
            Ok(())
        }
        "idle" => {
            while framing::read(&mut input, &mut buf).map_err(|e| e.to_string())? {}
            Ok(())
        }
        other => Err(format!("unknown mode {other:?}")),
    }
}
