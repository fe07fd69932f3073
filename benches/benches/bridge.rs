//! criterion benchmarks: the ring in one process, the bridge across processes (round trip and
//! one-way stream), and the codec.

#![allow(clippy::unwrap_used)] // a benchmark that cannot proceed should stop loudly

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use benches::transport::{Connection, Kind};
use bridge::codec;
use bridge::protocol::{Bar, Body, ConnectionStatus, Envelope, Event, LogLevel, LogRecord, Reply};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PEER: &str = env!("CARGO_BIN_EXE_bridge-bench");

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    for len in [64usize, 16 * 1024] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("push_pop_{len}"), |b| {
            // The bridge's default ring, as the runner uses it.
            let g = bridge::segment::Geometry::default();
            let (mut tx, mut rx) = bridge::ring::heap(g.ring_capacity, g.max_frame).unwrap();
            let frame = vec![7u8; len];
            let mut out = Vec::with_capacity(len);
            b.iter(|| {
                tx.try_push(black_box(&frame)).unwrap();
                assert!(rx.pop_into(&mut out).unwrap());
                black_box(&out);
            })
        });
    }
    g.finish();
}

/// Both ends of a channel in one thread: 256 messages fed as one batch, then received and
/// decoded; the time per message is the work of the two ends together (without the cache
/// lines' trips between two cores), steadier than a cross-process stream on a shared host.
fn channel(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel");
    let (mut a, mut b) = bridge::channel::pair(&Default::default()).unwrap();
    let far = Instant::now() + Duration::from_secs(3600);
    let bars: Vec<Envelope> = (0..256).map(benches::live_bar).collect();
    let pings: Vec<Envelope> = (0..256).map(|i| benches::request(i, 64)).collect();
    g.throughput(Throughput::Elements(256));
    for (name, msgs) in [("bars_256", &bars), ("pings_256", &pings)] {
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut batch = a.sender.batch();
                for m in msgs {
                    batch.feed(m, None).unwrap();
                }
                drop(batch);
                for _ in 0..msgs.len() {
                    black_box(b.receiver.recv::<Envelope>(far).unwrap());
                }
            })
        });
    }
    g.finish();
}

fn cross_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_process");
    g.measurement_time(Duration::from_secs(5));
    let mut conn = Connection::start(Path::new(PEER), Kind::Shm, "echo", 64, 0.0);
    let mut req = benches::request(0, 64);
    g.bench_function("rtt_64", |b| {
        b.iter(|| {
            req.id += 1;
            black_box(conn.round_trip(&req));
        })
    });
    conn.close();
    for len in [64usize, 16 * 1024] {
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("stream_{len}"), |b| {
            b.iter_custom(|iters| {
                // One producer run per sample: time per message received.
                let secs = (iters as f64 * 1e-7).clamp(0.05, 2.0);
                let mut conn = Connection::start(Path::new(PEER), Kind::Shm, "produce", len, secs);
                let start = Instant::now();
                let s = conn.consume();
                let took = start.elapsed();
                conn.close();
                took.mul_f64(iters as f64 / s.messages.max(1) as f64)
            })
        });
    }
    g.finish();
}

fn codec_cases(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let bar = Bar::sample();
    let cases = [
        ("request", benches::request(7, 64)),
        ("reply", benches::reply(benches::request(7, 64))),
        (
            "log",
            Envelope {
                id: 0,
                body: Body::Log(LogRecord {
                    level: LogLevel::Info,
                    target: "worker::ibkr".into(),
                    message: "connected to 127.0.0.1:4002, client id 7".into(),
                    dropped_before: 0,
                }),
            },
        ),
        (
            "event",
            Envelope {
                id: 0,
                body: Body::Event(Event::Connection(ConnectionStatus::Restored {
                    data_lost: true,
                })),
            },
        ),
        (
            "bars_1000",
            Envelope {
                id: 7,
                body: Body::Reply(Reply::Bars(vec![bar; 1000])),
            },
        ),
    ];
    for (name, msg) in cases {
        let mut buf = Vec::new();
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| codec::encode_into(black_box(&msg), &mut buf).unwrap())
        });
        let bytes = codec::encode(&msg).unwrap();
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| black_box(codec::decode::<Envelope>(black_box(&bytes)).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, ring, channel, cross_process, codec_cases);
criterion_main!(benches);
