//! The worker side of the cross-process tests: one binary, one mode per behaviour.
//!
//! Modes: `serve`, `stream COUNT SEED`, `flood`, `deaf`, `garbage`, `fail`,
//! `parent RECORD_FILE`, `start RING_CAPACITY`.

use std::io::Write;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use bridge::channel::{self, Channel, RecvError};
use bridge::protocol::{LogLevel, LogRecord, Reply, Request};
use bridge::{Client, ClientConfig, Server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = tests::config();
    if let Some(v) = std::env::var("BRIDGE_PEER_PROTOCOL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.protocol_version = v;
    }
    if let Ok(b) = std::env::var("BRIDGE_PEER_BUILD") {
        cfg.build_id = b;
    }
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&cfg),
        Some("stream") => stream(&cfg, &args[1..]),
        Some("flood") => flood(&cfg),
        Some("deaf") => deaf(&cfg),
        Some("garbage") => garbage(&cfg),
        Some("fail") => {
            eprintln!("peer: failing on purpose");
            return ExitCode::from(3);
        }
        Some("parent") => parent(&args[1..]),
        Some("start") => start(&args[1..]),
        Some("create-named") => create_named(&args[1..]),
        Some("idle-pings") => idle_pings(&args[1..]),
        _ => Err("usage: bridge-peer MODE [ARGS]".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer: {e}");
            ExitCode::from(2)
        }
    }
}

fn record(text: &str) {
    if let Ok(path) = std::env::var("BRIDGE_PEER_RECORD") {
        let _ = std::fs::write(path, text);
    }
}

/// Answers pings on four threads, with small payload-dependent delays so that replies leave
/// out of order.
fn serve(cfg: &channel::ChannelConfig) -> Result<(), String> {
    let mut server = Server::attach(cfg, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    // With BRIDGE_PEER_CHILD=FILE: start a long-lived child of our own (in our process group)
    // and write its pid to FILE.
    let _child = match std::env::var("BRIDGE_PEER_CHILD") {
        Ok(file) => {
            let child = Command::new("sleep")
                .arg("300")
                .spawn()
                .map_err(|e| e.to_string())?;
            std::fs::write(file, child.id().to_string()).map_err(|e| e.to_string())?;
            Some(child)
        }
        Err(_) => None,
    };
    let (work_tx, work_rx) = crossbeam_channel::unbounded::<(u64, Vec<u8>)>();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let rx = work_rx.clone();
        let responder = server.responder();
        workers.push(std::thread::spawn(move || {
            for (id, payload) in rx {
                match payload.as_slice() {
                    b"silent" => continue,
                    b"stray" => {
                        let _ = responder.reply(u64::MAX, Reply::Pong { payload: vec![] });
                    }
                    b"doorbell" => {
                        let payload = bridge::platform::doorbell_mechanism().as_bytes().to_vec();
                        if responder.reply(id, Reply::Pong { payload }).is_err() {
                            return;
                        }
                        continue;
                    }
                    b"log" => {
                        responder.log(LogRecord {
                            level: LogLevel::Info,
                            target: "peer".into(),
                            message: "hello from the worker".into(),
                            dropped_before: 0,
                        });
                    }
                    p if p.first().is_some_and(|b| b % 4 == 0) => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    _ => {}
                }
                if responder.reply(id, Reply::Pong { payload }).is_err() {
                    return;
                }
            }
        }));
    }
    let started = Instant::now();
    let outcome = loop {
        match server.next(Duration::from_secs(1)) {
            Ok(Some(incoming)) => match incoming.request {
                Request::Ping { payload } => {
                    let _ = work_tx.send((incoming.id, payload));
                }
                Request::Shutdown => {
                    let _ = server.responder().reply(incoming.id, Reply::ShuttingDown);
                    break "shutdown".to_string();
                }
                other => {
                    let _ = server.responder().reply(
                        incoming.id,
                        Reply::Error(bridge::protocol::RemoteError {
                            kind: bridge::protocol::ErrorKind::BadRequest,
                            message: format!("not served here: {other:?}"),
                        }),
                    );
                }
            },
            Ok(None) => {}
            Err(RecvError::PeerGone(reason)) => break format!("gone: {reason:?}"),
            Err(e) => break format!("error: {e}"),
        }
    };
    record(&format!(
        "{outcome} after {} ms",
        started.elapsed().as_millis()
    ));
    drop(work_tx);
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

/// Sends COUNT frames of stream SEED+1 while verifying COUNT frames of stream SEED from the
/// runner, then reports `verified N` or the first discrepancy as one more frame.
fn stream(cfg: &channel::ChannelConfig, args: &[String]) -> Result<(), String> {
    let count: u64 = args.first().and_then(|a| a.parse().ok()).ok_or("COUNT")?;
    let seed: u64 = args.get(1).and_then(|a| a.parse().ok()).ok_or("SEED")?;
    let Channel {
        mut sender,
        mut receiver,
        control,
    } = channel::attach(cfg).map_err(|e| e.to_string())?;
    let far = || Instant::now() + Duration::from_secs(60);
    let writer = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for seq in 0..count {
            tests::frame(seed + 1, seq, &mut buf);
            if let Err(e) = sender.send_bytes(&buf, Some(far())) {
                return Err(format!("send {seq}: {e}"));
            }
        }
        Ok(sender)
    });
    let mut expected = Vec::new();
    let mut verdict = format!("verified {count}");
    for seq in 0..count {
        tests::frame(seed, seq, &mut expected);
        match receiver.recv_bytes(far()) {
            Ok(got) if got == expected.as_slice() => {}
            Ok(got) => {
                let got_seq = got
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                verdict = format!("mismatch at {seq}: got seq {got_seq:?}, len {}", got.len());
                break;
            }
            Err(e) => {
                verdict = format!("recv {seq}: {e}");
                break;
            }
        }
    }
    let mut sender = writer.join().map_err(|_| "writer panicked")??;
    sender
        .send_bytes(verdict.as_bytes(), Some(far()))
        .map_err(|e| e.to_string())?;
    // Stay until the runner closes, so it can read everything.
    loop {
        match receiver.recv_bytes(far()) {
            Err(RecvError::PeerGone(_)) => break,
            Err(RecvError::Timeout) => return Err("runner never closed".into()),
            Err(e) => return Err(e.to_string()),
            Ok(_) => {}
        }
    }
    drop(control);
    Ok(())
}

/// Sends numbered frames as fast as the runner takes them, until it is gone.
fn flood(cfg: &channel::ChannelConfig) -> Result<(), String> {
    let Channel { mut sender, .. } = channel::attach(cfg).map_err(|e| e.to_string())?;
    for seq in 0u64.. {
        if sender
            .send_bytes(
                &seq.to_le_bytes(),
                Some(Instant::now() + Duration::from_secs(60)),
            )
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// Attaches and never reads, until the runner is gone.
fn deaf(cfg: &channel::ChannelConfig) -> Result<(), String> {
    let channel = channel::attach(cfg).map_err(|e| e.to_string())?;
    let until = Instant::now() + Duration::from_secs(60);
    while !channel.control.is_gone() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Answers the first frame with bytes that are no valid message.
fn garbage(cfg: &channel::ChannelConfig) -> Result<(), String> {
    let Channel {
        mut sender,
        mut receiver,
        ..
    } = channel::attach(cfg).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    receiver.recv_bytes(deadline).map_err(|e| e.to_string())?;
    sender
        .send_bytes(&[0xff; 24], Some(deadline))
        .map_err(|e| e.to_string())?;
    // Wait to be killed or closed.
    while receiver.recv_bytes(deadline).is_ok() {}
    Ok(())
}

/// A runner of its own: starts `serve` as its worker, prints the worker's pid and segment,
/// then pings until killed.
fn parent(args: &[String]) -> Result<(), String> {
    let record_file = args.first().ok_or("RECORD_FILE")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve").env("BRIDGE_PEER_RECORD", record_file);
    let cfg = ClientConfig {
        channel: tests::config(),
        ..ClientConfig::default()
    };
    let (client, _events) = Client::spawn(cmd, &cfg).map_err(|e| e.to_string())?;
    println!(
        "worker {} segment {}",
        client.control().peer_pid(),
        client.control().segment_name()
    );
    let _ = std::io::stdout().flush();
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        client
            .request(Request::Ping { payload: vec![1] }, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A runner of its own that starts `serve` as its worker over rings of RING_CAPACITY bytes,
/// then prints `started`, or `error: ` and why it could not, and the number of files left in
/// /dev/shm.
fn start(args: &[String]) -> Result<(), String> {
    let capacity: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or("RING_CAPACITY")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve");
    let mut cfg = ClientConfig {
        channel: tests::config(),
        ..ClientConfig::default()
    };
    cfg.channel.geometry = bridge::segment::Geometry {
        ring_capacity: capacity,
        max_frame: 1024,
    };
    match Client::spawn(cmd, &cfg) {
        Ok((client, _)) => {
            client
                .request(Request::Ping { payload: vec![1] }, Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            println!("started");
        }
        Err(e) => println!("error: {e}"),
    }
    let left = std::fs::read_dir("/dev/shm")
        .map_err(|e| e.to_string())?
        .count();
    println!("left {left}");
    Ok(())
}

/// Creates a named segment (POSIX shared memory, as on macOS) with rings of RING_CAPACITY
/// bytes; prints `created` or `error: ...`, then how many files `/dev/shm` holds.
fn create_named(args: &[String]) -> Result<(), String> {
    let capacity: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or("RING_CAPACITY")?;
    let geometry = bridge::segment::Geometry {
        ring_capacity: capacity,
        max_frame: 1024,
    };
    match bridge::segment::Segment::create(geometry, bridge::protocol::PROTOCOL_VERSION) {
        Ok(_segment) => println!("created"),
        Err(e) => println!("error: {e}"),
    }
    let left = std::fs::read_dir("/dev/shm")
        .map_err(|e| e.to_string())?
        .count();
    println!("left {left}");
    Ok(())
}

/// A runner of its own that starts `serve` as its worker, then sends COUNT pings, each after
/// both sides had time to fall asleep; prints the doorbell mechanism of each side and how many
/// pings were answered.
fn idle_pings(args: &[String]) -> Result<(), String> {
    let count: usize = args.first().and_then(|a| a.parse().ok()).ok_or("COUNT")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve");
    let cfg = ClientConfig {
        channel: tests::config(),
        ..ClientConfig::default()
    };
    let (client, _) = Client::spawn(cmd, &cfg).map_err(|e| e.to_string())?;
    let ask = |payload: &[u8]| {
        client
            .request(
                Request::Ping {
                    payload: payload.to_vec(),
                },
                Duration::from_secs(5),
            )
            .map_err(|e| e.to_string())
    };
    let worker = match ask(b"doorbell")? {
        Reply::Pong { payload } => String::from_utf8_lossy(&payload).into_owned(),
        other => return Err(format!("{other:?}")),
    };
    let mut answered = 0;
    let mut took = Vec::with_capacity(count);
    for i in 0..count {
        // Long enough for both sides to pass their spinning and sleep on the doorbell.
        std::thread::sleep(Duration::from_millis(3));
        let payload = [1, (i % 256) as u8];
        let start = Instant::now();
        if let Reply::Pong { payload: back } = ask(&payload)? {
            answered += usize::from(back == payload);
        }
        took.push(start.elapsed());
    }
    took.sort();
    let median = took.get(count / 2).copied().unwrap_or_default();
    println!(
        "runner {} worker {worker} answered {answered} median_us {}",
        bridge::platform::doorbell_mechanism(),
        median.as_micros()
    );
    Ok(())
}
