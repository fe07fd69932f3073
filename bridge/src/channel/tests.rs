//! Tests of a connection's two ends in one process ([`pair`](super::pair)), over a real
//! segment, with this test playing the hostile peer where needed.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bincode::enc::{Encode, Encoder};
use bincode::error::EncodeError;

use super::*;
use crate::protocol::{Body, Envelope, LogLevel, LogRecord, Request};
use crate::segment::{Geometry, Segment};
use crate::server::Server;

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn small(capacity: usize, max_frame: usize) -> ChannelConfig {
    ChannelConfig {
        geometry: Geometry {
            ring_capacity: capacity,
            max_frame,
        },
        ..ChannelConfig::default()
    }
}

fn ping(len: usize) -> Envelope {
    Envelope {
        id: 1,
        body: Body::Request(Request::Ping {
            payload: vec![7; len],
        }),
    }
}

/// Offsets of ring `index`'s positions in the segment.
fn tail_at(index: usize) -> usize {
    Segment::control_offset(index)
}
fn head_at(index: usize) -> usize {
    Segment::control_offset(index) + 128
}

/// A tracing subscriber that forwards every event over the bridge, as the worker's does.
struct ForwardEverything {
    responder: crate::Responder,
    busy: std::sync::atomic::AtomicBool,
}

impl tracing::Subscriber for ForwardEverything {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        // Events raised while forwarding are not forwarded again (as in the worker).
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.responder.log(LogRecord {
            level: LogLevel::Warn,
            target: event.metadata().target().to_string(),
            message: format!("{:?}", event.metadata().name()),
            dropped_before: 0,
        });
        self.busy.store(false, Ordering::Release);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A peer that corrupts both rings: the worker finds its receiving ring corrupt, declares the
/// runner gone and logs it; the log record goes out over the sending ring, which it finds
/// corrupt too, and declares the runner gone again, on the same thread. That must neither
/// deadlock nor lose the reason.
#[test]
fn a_corrupt_ring_found_while_logging_the_corruption_does_not_deadlock() {
    let (runner, worker) = pair(&small(4096, 1024)).unwrap();
    let segment = runner.control.segment().clone();
    let mut server = Server::over(worker, Duration::from_millis(50));
    // Fill the worker's sending ring, so its next send must look at the runner's position.
    let responder = server.responder();
    while responder
        .event(crate::protocol::Event::Notice {
            code: 1,
            message: "x".repeat(200),
        })
        .is_ok()
    {}
    segment.scribble(tail_at(0), &12345u64.to_le_bytes());
    segment.scribble(head_at(1), &u64::MAX.to_le_bytes());

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let subscriber = ForwardEverything {
        responder: server.responder(),
        busy: Default::default(),
    };
    std::thread::spawn(move || {
        let result =
            tracing::subscriber::with_default(subscriber, || server.next(Duration::from_secs(5)));
        let _ = done_tx.send(result.map(|_| ()));
    });
    let result = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the worker deadlocked while logging a corruption");
    assert!(
        matches!(result, Err(RecvError::PeerGone(GoneReason::Corrupt(_)))),
        "{result:?}"
    );
    drop(runner);
}

/// `check_geometry` accepts any maximum frame from 1; the sender's scratch buffer growth must
/// not assume one of at least 256 bytes.
#[test]
fn a_small_max_frame_does_not_panic_the_sender() {
    for max_frame in [1, 40, 255] {
        let (mut runner, mut worker) = pair(&small(1024, max_frame)).unwrap();
        runner.sender.send(&7u8, None).unwrap();
        assert_eq!(worker.receiver.recv::<u8>(soon()).unwrap(), 7);
        assert_eq!(
            runner.sender.send(&vec![1u8; 300], None),
            Err(SendError::TooLarge {
                len: max_frame + 1,
                max: max_frame
            })
        );
    }
}

/// Encodes as a sequence of `len` bytes, counting how many were asked for.
struct Counted {
    len: usize,
    visited: Arc<AtomicUsize>,
}

impl crate::codec::Wire for Counted {}

impl Encode for Counted {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        (self.len as u64).encode(e)?;
        for _ in 0..self.len {
            self.visited.fetch_add(1, Ordering::Relaxed);
            0u8.encode(e)?;
        }
        Ok(())
    }
}

#[test]
fn an_oversized_message_is_refused_without_encoding_it_in_full() {
    let (mut runner, _worker) = pair(&small(4096, 1024)).unwrap();
    let visited = Arc::new(AtomicUsize::new(0));
    let huge = Counted {
        len: 50_000_000,
        visited: visited.clone(),
    };
    let err = runner.sender.send(&huge, None).unwrap_err();
    assert_eq!(
        err,
        SendError::TooLarge {
            len: 1025,
            max: 1024
        }
    );
    // The scratch buffer grows by doubling up to max + 1, each try encoding afresh: at most
    // three times the limit in all, whatever the message's size.
    let work = visited.load(Ordering::Relaxed);
    assert!(work <= 3 * 1025, "encoded {work} elements to refuse it");
}

/// Frames written without publishing are delivered even when the batch guard is leaked and
/// the sender dropped.
#[test]
fn fed_frames_are_delivered_when_the_sender_is_dropped() {
    let (mut runner, mut worker) = pair(&small(4096, 1024)).unwrap();
    let mut batch = runner.sender.batch();
    for i in 0..3u32 {
        batch.feed(&i, Some(soon())).unwrap();
    }
    std::mem::forget(batch);
    assert_eq!(worker.receiver.try_recv::<u32>().unwrap(), None);
    drop(runner.sender);
    for i in 0..3u32 {
        assert_eq!(worker.receiver.recv::<u32>(soon()).unwrap(), i);
    }
}

#[test]
fn a_batch_publishes_when_it_ends() {
    let (mut runner, mut worker) = pair(&small(4096, 1024)).unwrap();
    {
        let mut batch = runner.sender.batch();
        batch.feed(&1u32, None).unwrap();
        batch.feed(&2u32, None).unwrap();
        assert_eq!(worker.receiver.try_recv::<u32>().unwrap(), None);
    }
    assert_eq!(worker.receiver.recv::<u32>(soon()).unwrap(), 1);
    assert_eq!(worker.receiver.recv::<u32>(soon()).unwrap(), 2);
}

/// The counters a side reports are its own: a peer that scribbles over every control block
/// of the segment cannot change them.
#[test]
fn counters_survive_a_peer_that_scribbles_over_the_segment() {
    let (mut runner, mut worker) = pair(&small(4096, 1024)).unwrap();
    for _ in 0..5 {
        runner.sender.send(&ping(10), None).unwrap();
    }
    for _ in 0..5 {
        worker.receiver.recv::<Envelope>(soon()).unwrap();
    }
    let before = runner.control.stats();
    assert_eq!(before.sent.frames, 5);
    let segment = runner.control.segment().clone();
    for ring in 0..2 {
        segment.scribble(Segment::control_offset(ring), &[0xA5; 512]);
    }
    assert_eq!(runner.control.stats(), before);
    assert_eq!(worker.control.stats().received.frames, 5);
    // And the garbage is found on the next use: the connection is torn down.
    assert!(matches!(
        worker.receiver.recv::<Envelope>(soon()),
        Err(RecvError::PeerGone(GoneReason::Corrupt(_)))
    ));
}

/// Why a peer is gone, as people read it: the process's status, the system's error.
#[test]
fn a_peer_gone_says_how_in_words() {
    use std::os::unix::process::ExitStatusExt;
    let exited = |raw| GoneReason::Exited(std::process::ExitStatus::from_raw(raw));
    assert_eq!(
        exited(3 << 8).to_string(),
        "worker process exited with code 3"
    );
    assert_eq!(
        exited(9).to_string(),
        "worker process was killed by signal 9"
    );
    let unwaitable = GoneReason::Unwaitable {
        kind: std::io::ErrorKind::Other,
        code: Some(libc::ECHILD),
    };
    assert_eq!(
        unwaitable.to_string(),
        "worker process cannot be waited for: No child processes (os error 10)"
    );
}

/// A whole conversation in one process: what `examples/echo.rs` does across two.
#[test]
fn a_pair_exchanges_both_ways_and_closes_cleanly() {
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    runner.sender.send(&ping(3), Some(soon())).unwrap();
    assert_eq!(worker.receiver.recv::<Envelope>(soon()).unwrap(), ping(3));
    worker.sender.send(&ping(4), Some(soon())).unwrap();
    assert_eq!(runner.receiver.recv::<Envelope>(soon()).unwrap(), ping(4));
    runner.control.close();
    assert_eq!(
        worker.receiver.recv::<Envelope>(soon()),
        Err(RecvError::PeerGone(GoneReason::Closed))
    );
}

fn record(message: &str) -> LogRecord {
    LogRecord {
        level: LogLevel::Info,
        target: "test".into(),
        message: message.into(),
        dropped_before: 0,
    }
}

/// A log record raised while another thread is sending waits for that send instead of being
/// lost; one that would wait longer than [`crate::server::LOG_WAIT`] is dropped, counted, and
/// the count travels with the next record.
#[test]
fn a_log_record_waits_briefly_for_another_threads_send() {
    let (mut runner, worker) = pair(&ChannelConfig::default()).unwrap();
    let server = Server::over(worker, Duration::from_secs(5));
    let responder = server.responder();

    // Another thread's send that ends soon: the record waits for it. (A sample where the
    // holder was kept from the processor longer than the wait proves nothing: taken again.)
    let mut waited = false;
    for _ in 0..50 {
        let tx = server.responder().tx.clone();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let guard = tx.lock();
            let since = Instant::now();
            let _ = held_tx.send(());
            std::thread::sleep(Duration::from_millis(2));
            drop(guard);
            since.elapsed()
        });
        held_rx.recv().unwrap();
        let sent = responder.log(record("waited"));
        let held = holder.join().unwrap();
        if held < crate::server::LOG_WAIT / 2 {
            assert!(sent, "held {held:?}");
            waited = true;
            break;
        }
        if sent {
            break;
        }
        // Dropped behind a hold longer than the wait, as it must be: try again.
    }
    assert!(waited, "the machine never let a 2 ms hold end within 10 ms");
    // The record sent carried the count of any dropped while sampling.
    assert_eq!(responder.dropped_logs(), 0);

    // A send that outlasts the wait: the record is dropped and counted.
    let tx = server.responder().tx.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let guard = tx.lock();
        let _ = held_tx.send(());
        let _ = done_rx.recv();
        drop(guard);
    });
    held_rx.recv().unwrap();
    assert!(!responder.log(record("dropped")));
    drop(done_tx);
    holder.join().unwrap();
    assert_eq!(responder.dropped_logs(), 1);

    assert!(responder.log(record("after")));
    let mut got = Vec::new();
    while let Some(env) = runner.receiver.try_recv::<Envelope>().unwrap() {
        if let Body::Log(r) = env.body {
            got.push((r.message, r.dropped_before));
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "waited");
    assert_eq!(got[1], ("after".to_string(), 1));
}

fn live_bar(sub: u32, time: i64) -> Envelope {
    Envelope {
        id: 0,
        body: Body::Event(crate::protocol::Event::Bar {
            sub,
            bar: crate::protocol::Bar {
                time,
                open: 100.0,
                high: 101.0,
                low: 99.5,
                close: 100.5,
                volume: 1200.0,
            },
        }),
    }
}

/// The hot path allocates nothing per message: once the buffers have grown, a live bar is
/// encoded, sent, taken from the ring, copied out and decoded without one heap allocation on
/// either side; a history batch decodes with one allocation (its vector) however many bars
/// it holds.
#[test]
fn a_live_bar_crosses_without_a_heap_allocation() {
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    // Warm-up: the scratch and batch buffers grow to their working size (a batch of a
    // thousand frames taken at once included).
    for t in 0..1000 {
        worker.sender.send(&live_bar(1, t), Some(soon())).unwrap();
    }
    for _ in 0..1000 {
        runner.receiver.recv::<Envelope>(soon()).unwrap();
    }
    let ((), sent, _) = crate::alloc_count::during(|| {
        for t in 1000..2000 {
            worker
                .sender
                .send(&live_bar(t as u32 % 20, t), Some(soon()))
                .unwrap();
        }
    });
    let mut got = Vec::with_capacity(1000);
    let ((), received, _) = crate::alloc_count::during(|| {
        for _ in 0..1000 {
            got.push(runner.receiver.recv::<Envelope>(soon()).unwrap());
        }
    });
    assert_eq!(got.len(), 1000);
    assert_eq!(got[999], live_bar(1999 % 20, 1999));
    assert_eq!(sent, 0, "allocations sending 1,000 bars");
    assert_eq!(received, 0, "allocations receiving 1,000 bars");

    let bars = vec![
        crate::protocol::Bar {
            time: 0,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
        };
        1000
    ];
    let batch = Envelope {
        id: 9,
        body: Body::Reply(crate::protocol::Reply::Bars(bars)),
    };
    let bytes = crate::codec::encode(&batch).unwrap();
    let (decoded, allocations, _) =
        crate::alloc_count::during(|| crate::codec::decode::<Envelope>(&bytes).unwrap());
    assert_eq!(decoded, batch);
    assert_eq!(allocations, 1, "a 1,000-bar batch decodes into one vector");
}

/// A live bar crosses in its fixed layout (one 64-byte frame), everything else through the
/// codec, in one stream and in order; the receiver reads both back as they were sent.
#[test]
fn bars_cross_in_their_fixed_layout_among_other_messages_in_order() {
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    let sent: Vec<Envelope> = (0..300)
        .map(|i| match i % 3 {
            0 => ping(i % 50),
            _ => live_bar(i as u32, i as i64),
        })
        .collect();
    let mut batch = worker.sender.batch();
    for env in &sent {
        batch.feed(env, Some(soon())).unwrap();
    }
    drop(batch);
    for env in &sent {
        assert_eq!(&runner.receiver.recv::<Envelope>(soon()).unwrap(), env);
    }
    // The frame itself: 56 bytes of fixed layout, not a codec envelope.
    worker.sender.send(&live_bar(4, 5), Some(soon())).unwrap();
    let frame = runner.receiver.recv_bytes(soon()).unwrap();
    assert_eq!(frame.len(), crate::protocol::BAR_FIXED_LEN);
    assert_eq!(crate::ring::frame_size(frame.len()), 64, "one cache line");
}

/// A full ring refuses a bar in its fixed layout as it refuses any message: at once without
/// a deadline (`Full`), at the deadline with one (`Timeout`), and nothing of a refused send is
/// written; a send waiting for room goes through once the receiver makes some.
#[test]
fn a_full_ring_refuses_a_fixed_layout_by_its_deadline_and_writes_nothing_of_it() {
    let (mut runner, mut worker) = pair(&small(1024, 128)).unwrap();
    // 64-byte frames: 16 fill the 1 KiB ring exactly.
    let mut sent = Vec::new();
    let mut refusal = None;
    {
        let mut batch = worker.sender.batch();
        for i in 0..64 {
            let bar = live_bar(i, i as i64);
            match batch.feed(&bar, None) {
                Ok(()) => sent.push(bar),
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            }
        }
    }
    assert_eq!((sent.len(), refusal), (16, Some(SendError::Full)));
    let start = Instant::now();
    let refused = worker.sender.send(
        &live_bar(99, 99),
        Some(Instant::now() + Duration::from_millis(50)),
    );
    assert_eq!(refused, Err(SendError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(worker.sender.send(&ping(8), None), Err(SendError::Full));
    for bar in &sent {
        assert_eq!(&runner.receiver.recv::<Envelope>(soon()).unwrap(), bar);
    }
    assert_eq!(runner.receiver.try_recv::<Envelope>().unwrap(), None);
    // A send that waits for room: the receiver drains a full ring while it waits.
    for i in 0..16 {
        worker.sender.send(&live_bar(i, i as i64), None).unwrap();
    }
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        (0..17)
            .map(|_| runner.receiver.recv::<Envelope>(soon()).unwrap())
            .collect::<Vec<_>>()
    });
    worker.sender.send(&live_bar(16, 16), Some(soon())).unwrap();
    let got = reader.join().unwrap();
    let want: Vec<Envelope> = (0..17).map(|i| live_bar(i, i as i64)).collect();
    assert_eq!(got, want);
}

/// Writes 56 bytes of a fixed layout with a class of its choosing.
struct FakeFixed {
    class: u32,
}

impl crate::codec::Wire for FakeFixed {
    fn to_fixed(&self, out: &mut [u8; crate::codec::FIXED_MAX]) -> Option<usize> {
        out[..56].fill(0x11);
        out[4..8].copy_from_slice(&self.class.to_le_bytes());
        Some(56)
    }
}

impl Encode for FakeFixed {
    fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
        self.class.encode(e)
    }
}

/// A fixed-layout frame that is not one of the receiving type's (another class, or a type
/// with no fixed layout at all) is corruption: the connection is torn down, nothing is
/// invented from it.
#[test]
fn a_fixed_frame_the_receiver_does_not_know_is_corruption() {
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    worker.sender.send(&live_bar(1, 1), Some(soon())).unwrap();
    worker
        .sender
        .send(&FakeFixed { class: 9 }, Some(soon()))
        .unwrap();
    assert_eq!(
        runner.receiver.recv::<Envelope>(soon()).unwrap(),
        live_bar(1, 1)
    );
    let err = runner.receiver.recv::<Envelope>(soon()).unwrap_err();
    assert!(
        matches!(
            err,
            RecvError::PeerGone(GoneReason::Corrupt(Damage::Frame(
                crate::codec::CodecError::Invalid(_)
            )))
        ),
        "{err:?}"
    );

    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    worker.sender.send(&live_bar(1, 1), Some(soon())).unwrap();
    let err = runner.receiver.recv::<u32>(soon()).unwrap_err();
    assert!(
        matches!(err, RecvError::PeerGone(GoneReason::Corrupt(_))),
        "{err:?}"
    );
}

/// What a peer sent before it closed is all delivered, however many batches it takes (here
/// more than one: a frame larger than the batch bound, then more), and only then `PeerGone`.
#[test]
fn everything_sent_before_a_close_is_delivered_across_several_batches() {
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    let sent = [
        ping(70 << 10),
        ping(10),
        live_bar(1, 2),
        ping(100 << 10),
        live_bar(3, 4),
    ];
    for env in &sent {
        worker.sender.send(env, Some(soon())).unwrap();
    }
    worker.control.close();
    for env in &sent {
        assert_eq!(&runner.receiver.recv::<Envelope>(soon()).unwrap(), env);
    }
    assert_eq!(
        runner.receiver.recv::<Envelope>(soon()),
        Err(RecvError::PeerGone(GoneReason::Closed))
    );
}

/// A peer declared gone (here: hung) that goes on publishing: what it had published when the
/// receiver saw the declaration is delivered, across as many batches as it takes, then
/// `PeerGone` with the declared reason; nothing published afterwards is ever handed out.
#[test]
fn a_peer_declared_gone_that_goes_on_is_not_read_past_the_declaration() {
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    let before = [ping(70 << 10), live_bar(1, 2), ping(100 << 10), ping(3)];
    for env in &before {
        worker.sender.send(env, Some(soon())).unwrap();
    }
    let hung = GoneReason::Hung(Duration::from_secs(5));
    assert_eq!(runner.control.declare_gone(hung.clone()), hung);
    // The first receive after the declaration reads the peer's position for the last time;
    // its first batch holds only the 70 KiB frame (batches are bounded at 64 KiB).
    assert_eq!(runner.receiver.recv::<Envelope>(soon()).unwrap(), before[0]);
    // The peer does not know and goes on; the ring has room for all of it.
    for env in [ping(4), live_bar(5, 6), ping(7)] {
        worker.sender.send(&env, Some(soon())).unwrap();
    }
    for env in &before[1..] {
        assert_eq!(&runner.receiver.recv::<Envelope>(soon()).unwrap(), env);
    }
    for _ in 0..2 {
        assert_eq!(
            runner.receiver.recv::<Envelope>(soon()),
            Err(RecvError::PeerGone(hung.clone()))
        );
    }
    assert_eq!(
        runner.receiver.try_recv::<Envelope>(),
        Err(RecvError::PeerGone(hung))
    );
}

/// A frame that does not decode ends the connection there: the frames after it in the same
/// batch are not handed out.
#[test]
fn nothing_after_an_undecodable_frame_is_handed_out() {
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    let mut batch = worker.sender.batch();
    batch.feed(&ping(1), Some(soon())).unwrap();
    batch.feed(&FakeFixed { class: 9 }, Some(soon())).unwrap();
    batch.feed(&ping(2), Some(soon())).unwrap();
    drop(batch);
    assert_eq!(runner.receiver.recv::<Envelope>(soon()).unwrap(), ping(1));
    for _ in 0..2 {
        let err = runner.receiver.recv::<Envelope>(soon()).unwrap_err();
        assert!(
            matches!(
                err,
                RecvError::PeerGone(GoneReason::Corrupt(Damage::Frame(_)))
            ),
            "{err:?}"
        );
    }
}

/// A `Wire` implementation whose fixed layout would not fit its buffer is sent through the
/// codec instead: no panic.
#[test]
fn a_fixed_layout_longer_than_its_buffer_goes_through_the_codec() {
    struct TooLong;
    impl crate::codec::Wire for TooLong {
        fn to_fixed(&self, _: &mut [u8; crate::codec::FIXED_MAX]) -> Option<usize> {
            Some(crate::codec::FIXED_MAX + 8)
        }
    }
    impl Encode for TooLong {
        fn encode<E: Encoder>(&self, e: &mut E) -> Result<(), EncodeError> {
            7u32.encode(e)
        }
    }
    let (mut runner, mut worker) = pair(&ChannelConfig::default()).unwrap();
    worker.sender.send(&TooLong, Some(soon())).unwrap();
    assert_eq!(runner.receiver.recv::<u32>(soon()).unwrap(), 7);
}

/// The receiver's place in a batch is shared by every way of receiving: runs of bars (one
/// header each, checked a comparison a frame) between pings of every size, across wraps of
/// a small ring and batches of every length, taken alternately by `recv`, `try_recv` and
/// `try_recv_bytes`, come out once each, in order, and nothing else comes.
#[test]
fn runs_of_bars_come_out_in_order_whichever_way_they_are_received() {
    let (mut runner, mut worker) = pair(&small(64 << 10, 16 << 10)).unwrap();
    let mut seq = 0i64;
    let mut taken = 0usize;
    for round in 0..300usize {
        let mut sent = Vec::new();
        let mut batch = worker.sender.batch();
        for k in 0..1 + round % 37 {
            let env = if k % 11 == 10 {
                ping((round * 7 + k) % 300)
            } else {
                live_bar((seq % 20) as u32, seq)
            };
            seq += 1;
            batch.feed(&env, Some(soon())).unwrap();
            sent.push(env);
        }
        drop(batch);
        for (k, env) in sent.iter().enumerate() {
            let got = match (round + k) % 3 {
                0 => runner.receiver.recv::<Envelope>(soon()).unwrap(),
                1 => runner
                    .receiver
                    .try_recv::<Envelope>()
                    .unwrap()
                    .expect("sent"),
                _ => {
                    let bytes = runner.receiver.try_recv_bytes().unwrap().expect("sent");
                    // A ping's encoding starts with its id (1), so its class word is 0: never a
                    // bar's fixed layout.
                    match <Envelope as crate::codec::Wire>::from_fixed(bytes) {
                        Some(bar) => bar,
                        None => crate::codec::decode(bytes).unwrap(),
                    }
                }
            };
            assert_eq!(&got, env, "round {round}, message {k}");
            taken += 1;
        }
        assert_eq!(
            runner.receiver.try_recv::<Envelope>(),
            Ok(None),
            "round {round}"
        );
    }
    assert_eq!(taken as i64, seq);
}
