//! Tests of the client over an in-process [`pair`](crate::channel::pair), the worker end
//! played by the test.

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::*;
use crate::channel::{pair, ChannelConfig, GoneReason};
use crate::protocol::Reply;
use crate::segment::Geometry;
use crate::server::Server;

fn connect(capacity: usize) -> (Client, Server) {
    let (client, _events, server) = connect_with(capacity, 16, false);
    (client, server)
}

/// A client over rings of `capacity` bytes, its events, and the worker end as a server.
fn connect_with(
    capacity: usize,
    event_capacity: usize,
    spin: bool,
) -> (Client, super::Events, Server) {
    let cfg = ChannelConfig {
        geometry: Geometry {
            ring_capacity: capacity,
            max_frame: capacity / 4,
        },
        ..ChannelConfig::default()
    };
    let (runner, worker) = pair(&cfg).unwrap();
    let (client, events) = Client::over(
        runner,
        &ClientConfig {
            channel: cfg,
            event_capacity,
            spin,
            ..ClientConfig::default()
        },
    )
    .unwrap();
    (client, events, Server::over(worker, Duration::from_secs(1)))
}

fn ping(len: usize) -> Request {
    Request::Ping {
        payload: vec![1; len],
    }
}

struct Flag(std::sync::atomic::AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The worker is declared gone, and every waiter woken, between an async request's failed
/// send on a full ring and its registration as a waiter: it must still end, at once.
#[test]
fn an_async_request_parked_as_the_worker_dies_is_not_lost() {
    let (client, server) = connect(4096);
    // Fill the ring (the worker never reads).
    let flag = Arc::new(Flag(Default::default()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut sent = Vec::new();
    let mut parked = loop {
        let mut f = client.request_async(ping(500), Duration::from_secs(30));
        let before = client.in_flight();
        // Pending and not in flight: parked for ring space.
        if Pin::new(&mut f).poll(&mut cx).is_pending() && client.in_flight() == before {
            break f;
        }
        sent.push(f);
        assert!(sent.len() < 100, "the ring never filled");
    };
    // Poll once more, with the worker closing in the window.
    let worker = server.control().clone();
    let inner = client.inner.clone();
    *client.inner.before_space_wait.lock() = Some(Box::new(move || {
        worker.close();
        let until = Instant::now() + Duration::from_secs(10);
        while inner.gone().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(inner.gone().is_some(), "the worker was never declared gone");
    }));
    match Pin::new(&mut parked).poll(&mut cx) {
        Poll::Ready(Err(RequestError::PeerGone(GoneReason::Closed))) => {}
        other => panic!("{other:?}"),
    }
}

/// While requests are in flight and nothing arrives, the dispatcher sleeps: no polling.
#[test]
fn the_dispatcher_sleeps_while_requests_wait() {
    let (client, _server) = connect(1 << 16);
    let start = client.stats().dispatcher_idle_wakes;
    let blocking = client.request(ping(1), Duration::from_millis(1500));
    assert_eq!(blocking, Err(RequestError::Timeout));
    let woke = client.stats().dispatcher_idle_wakes - start;
    assert!(woke <= 2, "the dispatcher woke {woke} times in 1.5 s");
}

/// An async request's deadline is kept by the timer, which sleeps until it.
#[test]
fn an_async_deadline_expires_without_polling() {
    let (client, _server) = connect(1 << 16);
    let flag = Arc::new(Flag(Default::default()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = client.request_async(ping(1), Duration::from_millis(300));
    assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
    let until = Instant::now() + Duration::from_secs(10);
    while !flag.0.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        Pin::new(&mut f).poll(&mut cx),
        Poll::Ready(Err(RequestError::Timeout))
    );
    assert_eq!(client.in_flight(), 0);
    assert!(client.stats().dispatcher_idle_wakes <= 1);
}

/// Log records the worker could not send are counted there, and the count reaches the
/// runner with the next record.
#[test]
fn dropped_worker_logs_are_counted_on_the_runner() {
    let (client, server) = connect(1 << 16);
    let responder = server.responder();
    let record = |m: &str| crate::protocol::LogRecord {
        level: crate::protocol::LogLevel::Info,
        target: "test".into(),
        message: m.into(),
        dropped_before: 0,
    };
    {
        // Another thread holds the sender: logging neither waits nor blocks.
        let _busy = responder.tx.lock();
        let r = responder.clone();
        let rec = record("a");
        let logged = std::thread::spawn(move || r.log(rec)).join().unwrap();
        assert!(!logged);
        assert!(!responder.log(record("b")));
    }
    assert_eq!(responder.dropped_logs(), 2);
    assert!(responder.log(record("c")));
    assert_eq!(responder.dropped_logs(), 0);
    // A reply after the record: once it is routed, so is the record.
    responder
        .reply(u64::MAX, Reply::Pong { payload: vec![] })
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while client.stats().stray_replies == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(client.stats().dropped_logs, 2);
}

/// A worker that keeps sending batches faster than the caller takes them cannot make a
/// blocking stream outlive its deadline (nor grow the runner's memory for ever).
#[test]
fn a_blocking_stream_ends_at_its_deadline_however_fast_batches_come() {
    use crate::protocol::{Bar, HistoryRequest};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (client, mut server) = connect(1 << 16);
    let stop = Arc::new(AtomicBool::new(false));
    let worker_done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (stop, done) = (stop.clone(), worker_done.clone());
        std::thread::spawn(move || {
            let incoming = server.next(Duration::from_secs(10)).unwrap().unwrap();
            let responder = server.responder();
            let bar = Bar {
                time: 0,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
            };
            let until = Instant::now() + Duration::from_secs(10);
            while !stop.load(Ordering::Acquire) && Instant::now() < until {
                let _ = responder.reply(incoming.id, Reply::Bars(vec![bar]));
                std::thread::sleep(Duration::from_millis(1));
            }
            done.store(true, Ordering::Release);
        })
    };
    let request = Request::History(HistoryRequest {
        symbol: "SPY".into(),
        bar_seconds: 60,
        duration_seconds: 60,
        end: None,
    });
    let mut items = 0;
    let mut last = None;
    for item in client.stream(request, Duration::from_millis(300)).unwrap() {
        items += 1;
        last = Some(item);
        std::thread::sleep(Duration::from_millis(3));
    }
    assert!(
        !worker_done.load(Ordering::Acquire),
        "the stream outlived the worker's 10 s of batches"
    );
    stop.store(true, Ordering::Release);
    worker.join().unwrap();
    assert_eq!(last, Some(Err(RequestError::Timeout)));
    assert!(items < 300, "{items} items in 300 ms");
}

/// `Duration::MAX` as "no deadline to speak of" is a far deadline, not an overflow panic.
#[test]
fn a_forever_timeout_is_a_far_deadline_not_a_panic() {
    let (client, _server) = connect(1 << 16);
    let flag = Arc::new(Flag(Default::default()));
    let waker = Waker::from(flag);
    let mut cx = Context::from_waker(&waker);
    let mut f = client.request_async(ping(1), Duration::MAX);
    assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
    let stream = client.stream(ping(1), Duration::MAX).unwrap();
    assert_eq!(client.in_flight(), 2);
    drop((f, stream));
    assert!(crate::channel::deadline_after(Duration::MAX) > Instant::now());
}

/// A request given up (deadline passed, or dropped unfinished) is cancelled at the worker:
/// the worker receives `Cancel` with its id, and never has to answer it.
#[test]
fn a_request_given_up_is_cancelled_at_the_worker() {
    let (client, mut server) = connect(1 << 16);
    assert_eq!(
        client.request(ping(1), Duration::from_millis(100)),
        Err(RequestError::Timeout)
    );
    let first = server.next(Duration::from_secs(5)).unwrap().unwrap();
    let cancel = server.next(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(cancel.request, Request::Cancel { id: first.id });
    // A stream dropped before its final reply.
    let stream = client.stream(ping(2), Duration::from_secs(30)).unwrap();
    let id = stream.id();
    drop(stream);
    let _ = server.next(Duration::from_secs(5)).unwrap().unwrap();
    let cancel = server.next(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(cancel.request, Request::Cancel { id });
    assert_eq!(client.stats().cancels, 2);
    // A request answered is not cancelled.
    let flag = Arc::new(Flag(Default::default()));
    let waker = Waker::from(flag);
    let mut cx = Context::from_waker(&waker);
    let mut f = client.request_async(ping(3), Duration::from_secs(30));
    assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
    let incoming = server.next(Duration::from_secs(5)).unwrap().unwrap();
    server
        .responder()
        .reply(incoming.id, Reply::Pong { payload: vec![] })
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        if let Poll::Ready(r) = Pin::new(&mut f).poll(&mut cx) {
            break r;
        }
        assert!(Instant::now() < until, "no reply");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(reply.is_ok());
    drop(f);
    assert_eq!(server.next(Duration::from_millis(200)).unwrap(), None);
    assert_eq!(client.stats().cancels, 2);
}

/// With `spin`, the dispatcher never sleeps on the doorbell: replies and events arrive the
/// same, and the dispatcher still ends (failing what waits) when the worker goes.
#[test]
fn a_spinning_dispatcher_delivers_without_sleeping_and_ends_with_the_worker() {
    let (client, events, mut server) = connect_with(1 << 20, 256, true);
    let answering = std::thread::spawn(move || {
        for _ in 0..100 {
            let Ok(Some(req)) = server.next(Duration::from_secs(10)) else {
                return server;
            };
            // A pause, so the dispatcher has all the time it wants to fall asleep.
            std::thread::sleep(Duration::from_micros(500));
            let _ = server.responder().event(crate::protocol::Event::Notice {
                code: 1,
                message: String::new(),
            });
            if let Request::Ping { payload } = req.request {
                let _ = server.responder().reply(req.id, Reply::Pong { payload });
            }
        }
        server
    });
    for i in 0..100u8 {
        let reply = client
            .request(Request::Ping { payload: vec![i] }, Duration::from_secs(10))
            .unwrap();
        assert_eq!(reply, Reply::Pong { payload: vec![i] });
    }
    assert_eq!(std::iter::from_fn(|| events.try_recv().ok()).count(), 100);
    assert_eq!(
        client.stats().channel.received.sleeps,
        0,
        "the dispatcher slept"
    );
    let server = answering.join().unwrap();
    server.control().close();
    assert!(matches!(
        client.request(ping(1), Duration::from_secs(10)),
        Err(RequestError::PeerGone(_))
    ));
}

/// A spinning client closed while its worker still runs: the dispatcher sees the local close
/// and ends, and dropping the client returns.
#[test]
fn a_spinning_client_closed_while_the_worker_runs_ends_its_dispatcher() {
    let (client, _events, _worker) = connect_with(1 << 20, 16, true);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(client);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("dropping a spinning client did not return");
}

/// The worker end of `server` answers its next request with `reply` through
/// [`Responder::reply_whole`](crate::server::Responder::reply_whole), on a thread of its own.
fn answer_whole(server: &mut Server, reply: Reply) -> std::thread::JoinHandle<()> {
    let incoming = server.next(Duration::from_secs(10)).unwrap().unwrap();
    let responder = server.responder();
    std::thread::spawn(move || responder.reply_whole(incoming.id, reply).unwrap())
}

fn fills(n: usize) -> Vec<crate::protocol::Fill> {
    (0..n)
        .map(|i| crate::protocol::Fill {
            order_ref: format!("run-{i}"),
            exec_id: format!("0001f4e8.{i:08}.01.01"),
            symbol: "SPY".into(),
            side: crate::protocol::Side::Buy,
            quantity: 10.0,
            price: 100.0 + i as f64,
            commission: Some(1.0),
            time: 1_700_000_000 + i as i64,
        })
        .collect()
}

/// A list many frames long (and several rings) comes back whole, in order, blocking and
/// async alike; a reply that cannot fit is an error of its own kind, at once.
#[test]
fn a_list_longer_than_a_frame_comes_in_pages_and_is_joined_and_a_reply_too_large_is_an_error() {
    let (client, mut server) = connect(4096);
    let list = fills(500);
    let client = Arc::new(client);
    let asking = {
        let client = client.clone();
        std::thread::spawn(move || client.request(Request::Executions, Duration::from_secs(10)))
    };
    let answering = answer_whole(&mut server, Reply::Fills(list.clone()));
    assert_eq!(asking.join().unwrap().unwrap(), Reply::Fills(list.clone()));
    answering.join().unwrap();

    let asking = {
        let client = client.clone();
        std::thread::spawn(move || {
            block_on(client.request_async(Request::Executions, Duration::from_secs(10)))
        })
    };
    let answering = answer_whole(&mut server, Reply::Fills(list.clone()));
    assert_eq!(asking.join().unwrap().unwrap(), Reply::Fills(list));
    answering.join().unwrap();

    // Not answered, the request would end with a timeout instead.
    let asking = {
        let client = client.clone();
        std::thread::spawn(move || client.request(ping(1), Duration::from_secs(30)))
    };
    let answering = answer_whole(
        &mut server,
        Reply::Pong {
            payload: vec![7; 2000],
        },
    );
    match asking.join().unwrap() {
        Ok(Reply::Error(e)) => {
            assert_eq!(e.kind, crate::protocol::ErrorKind::TooLarge);
            assert!(
                e.message.contains("maximum frame of 1024 bytes"),
                "{}",
                e.message
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    answering.join().unwrap();
}

/// Polls `f` to completion on this thread, parked between polls.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A client whose events are seen, as they are routed, by `tap`.
fn connect_tapped(tap: EventTap) -> (Client, Events, Server) {
    let cfg = ChannelConfig::default();
    let (runner, worker) = pair(&cfg).unwrap();
    let (client, events) = Client::over(
        runner,
        &ClientConfig {
            channel: cfg,
            event_tap: Some(tap),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    (client, events, Server::over(worker, Duration::from_secs(1)))
}

fn notice(code: i32) -> crate::protocol::Event {
    crate::protocol::Event::Notice {
        code,
        message: String::new(),
    }
}

fn code(event: crate::protocol::Event) -> i32 {
    match event {
        crate::protocol::Event::Notice { code, .. } => code,
        other => panic!("{other:?}"),
    }
}

/// Waits until the event reader (another thread) holds the ring.
fn reader_takes_the_ring(client: &Client) {
    let until = Instant::now() + Duration::from_secs(10);
    while !client.inner.seat.reader_leads() {
        assert!(Instant::now() < until, "the reader never took the ring");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Records the thread each event is routed on; checks that the first, and only it, is told
/// as the first.
fn routing_threads() -> (
    EventTap,
    Arc<parking_lot::Mutex<Vec<std::thread::ThreadId>>>,
) {
    let threads = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = threads.clone();
    let firsts = AtomicU64::new(0);
    let tap: EventTap = Arc::new(move |e, first| {
        // The tap is told of this client's first event, once, whoever routes it.
        let earlier = firsts.fetch_add(u64::from(first), Ordering::Relaxed);
        assert!(!first || earlier == 0, "a first event told twice");
        let mut seen = seen.lock();
        assert_eq!(first, seen.is_empty(), "the first event not told as such");
        seen.push(std::thread::current().id());
        Some(e)
    });
    (tap, threads)
}

/// A thread waiting for events reads the ring itself once the dispatcher handed it over: every
/// event is routed on that thread, in order, with at most one sleep (one wake) each.
#[test]
fn a_waiting_reader_reads_the_ring_itself_one_wake_per_event() {
    let (tap, threads) = routing_threads();
    let (client, events, server) = connect_tapped(tap);
    // The first waits take the ring (the dispatcher, starting, may take it in between; then
    // it is asked for it and hands it over).
    for _ in 0..2 {
        assert!(matches!(
            events.recv_timeout(Duration::from_millis(50)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        ));
    }
    let handovers = client.stats().handovers;
    assert!(handovers <= 1);
    let sleeps_from = client.stats().channel.received.sleeps;
    let worker = std::thread::spawn(move || {
        for i in 0..50 {
            // Time for the reader to fall asleep on the ring.
            std::thread::sleep(Duration::from_millis(2));
            server.responder().event(notice(i)).unwrap();
        }
        server
    });
    for i in 0..50 {
        assert_eq!(
            code(events.recv_timeout(Duration::from_secs(10)).unwrap()),
            i
        );
    }
    let _server = worker.join().unwrap();
    let me = std::thread::current().id();
    let threads = threads.lock().clone();
    assert_eq!(threads.len(), 50);
    assert!(threads.iter().all(|t| *t == me), "routed on the dispatcher");
    let stats = client.stats();
    assert_eq!(stats.handovers, handovers);
    let sleeps = stats.channel.received.sleeps - sleeps_from;
    assert!(sleeps <= 50, "{sleeps} sleeps on the ring for 50 events");
    assert_eq!(stats.dropped_events, 0);
}

/// Requests made while the event reader holds the ring, and while it is busy elsewhere, are
/// answered; events and replies interleaved by the worker all arrive, in order, exactly once.
#[test]
fn requests_are_answered_whoever_holds_the_ring() {
    let (client, events, mut server) = connect_with(1 << 16, 1 << 16, false);
    let n = 300;
    let answering = std::thread::spawn(move || {
        let mut answered = 0;
        while answered < n {
            let Ok(Some(req)) = server.next(Duration::from_secs(10)) else {
                panic!("no request");
            };
            server.responder().event(notice(answered)).unwrap();
            if let Request::Ping { payload } = req.request {
                server
                    .responder()
                    .reply(req.id, Reply::Pong { payload })
                    .unwrap();
            }
            answered += 1;
        }
        server
    });
    let reading = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < n as usize {
            match events.recv_timeout(Duration::from_millis(20)) {
                Ok(e) => seen.push(code(e)),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("{e:?}"),
            }
            // Now and then busy elsewhere: the ring is nobody's.
            if seen.len() % 37 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        (seen, events)
    });
    for i in 0..n {
        let payload = i.to_le_bytes().to_vec();
        let reply = client
            .request(
                Request::Ping {
                    payload: payload.clone(),
                },
                // Far below the dispatcher's idle look: a request nobody read for would fail.
                Duration::from_millis(500),
            )
            .unwrap();
        assert_eq!(reply, Reply::Pong { payload });
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (seen, _events) = reading.join().unwrap();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    let _server = answering.join().unwrap();
    assert_eq!(client.stats().stray_replies, 0);
}

/// A request made while the reader holds the ring and then goes off to work (not waiting) is
/// still answered: the reader, letting go, calls the dispatcher.
#[test]
fn a_reader_that_lets_go_with_a_request_in_flight_calls_the_dispatcher() {
    let (client, events, mut server) = connect_with(1 << 16, 16, false);
    let client = Arc::new(client);
    // The reader takes the ring and waits on it.
    let reading = std::thread::spawn(move || {
        let first = events.recv_timeout(Duration::from_secs(10)).map(code);
        // Busy elsewhere for longer than the request may take.
        std::thread::sleep(Duration::from_millis(1500));
        (first, events)
    });
    reader_takes_the_ring(&client);
    std::thread::sleep(Duration::from_millis(20));
    let asking = {
        let client = client.clone();
        std::thread::spawn(move || client.request(ping(3), Duration::from_millis(700)))
    };
    let req = server.next(Duration::from_secs(10)).unwrap().unwrap();
    // The event ends the reader's wait; the reply comes after it has let go.
    server.responder().event(notice(7)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    server
        .responder()
        .reply(
            req.id,
            Reply::Pong {
                payload: vec![1; 3],
            },
        )
        .unwrap();
    assert_eq!(
        asking.join().unwrap(),
        Ok(Reply::Pong {
            payload: vec![1; 3]
        })
    );
    let (first, _events) = reading.join().unwrap();
    assert_eq!(first, Ok(7));
}

/// The worker going away while the reader holds the ring ends every request in flight, and the
/// reader's queue ends once the client is dropped.
#[test]
fn a_worker_gone_while_the_reader_holds_the_ring_ends_everything() {
    let (client, events, mut server) = connect_with(1 << 16, 16, false);
    let client = Arc::new(client);
    let reading = std::thread::spawn(move || events.recv_timeout(Duration::from_secs(30)));
    reader_takes_the_ring(&client);
    let asking = {
        let client = client.clone();
        std::thread::spawn(move || client.request(ping(1), Duration::from_secs(30)))
    };
    let _req = server.next(Duration::from_secs(10)).unwrap().unwrap();
    server.control().close();
    assert!(matches!(
        asking.join().unwrap(),
        Err(RequestError::PeerGone(GoneReason::Closed))
    ));
    let mut client = Arc::into_inner(client).expect("the only handle left");
    client.close();
    drop(client);
    assert_eq!(
        reading.join().unwrap(),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    );
}

/// Closing the client while the reader holds the ring and the dispatcher stands by ends both
/// at once, not after the dispatcher's idle look.
#[test]
fn closing_while_the_reader_holds_the_ring_ends_the_dispatcher() {
    let (mut client, events, _server) = connect_with(1 << 16, 16, false);
    let reading = std::thread::spawn(move || {
        let got = events.recv_timeout(Duration::from_secs(30));
        (got, events)
    });
    reader_takes_the_ring(&client);
    client.close();
    assert!(client.inner.gone().is_some());
    drop(client);
    let (got, _events) = reading.join().unwrap();
    assert_eq!(got, Err(crossbeam_channel::RecvTimeoutError::Disconnected));
}

/// A reader that goes away gives the ring back to the dispatcher for good: events keep being
/// routed (to nobody) and requests answered.
#[test]
fn a_reader_dropped_gives_the_ring_back_for_good() {
    let (tap, threads) = routing_threads();
    let (client, events, mut server) = connect_tapped(tap);
    assert!(events.recv_timeout(Duration::from_millis(20)).is_err());
    let handovers = client.stats().handovers;
    drop(events);
    let answering = std::thread::spawn(move || {
        for i in 0..20 {
            let req = server.next(Duration::from_secs(10)).unwrap().unwrap();
            server.responder().event(notice(i)).unwrap();
            server
                .responder()
                .reply(req.id, Reply::Pong { payload: vec![] })
                .unwrap();
        }
        server
    });
    for _ in 0..20 {
        assert_eq!(
            client.request(ping(0), Duration::from_millis(500)),
            Ok(Reply::Pong { payload: vec![] })
        );
    }
    let _server = answering.join().unwrap();
    let me = std::thread::current().id();
    let threads = threads.lock().clone();
    assert_eq!(threads.len(), 20);
    assert!(threads.iter().all(|t| *t != me));
    assert_eq!(client.stats().handovers, handovers);
}

/// A flood of events, faster than the reader hands them out: its turns at the ring are bounded
/// (the dispatcher reads on meanwhile), and every event arrives once, in order, none dropped.
#[test]
fn a_flood_of_events_arrives_whole_and_in_order_whoever_reads() {
    let (client, events, server) = connect_with(1 << 16, 1 << 17, false);
    let n = 60_000;
    let flooding = std::thread::spawn(move || {
        for i in 0..n {
            server.responder().event(notice(i)).unwrap();
        }
        server
    });
    for i in 0..n {
        let asked = Instant::now();
        let got = events.recv_timeout(Duration::from_secs(3)).unwrap();
        // An event that waited in the queue while the reader slept at the ring would be
        // handed out only at the wait's deadline.
        assert!(
            asked.elapsed() < Duration::from_millis(2500),
            "event {i} handed out at the deadline"
        );
        assert_eq!(code(got), i);
        if i % 10_000 == 0 {
            // Busy elsewhere now and then.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _server = flooding.join().unwrap();
    assert_eq!(client.stats().dropped_events, 0);
    assert!(matches!(
        events.recv_timeout(Duration::from_millis(20)),
        Err(crossbeam_channel::RecvTimeoutError::Timeout)
    ));
}

/// A worker that corrupts the ring while the event reader holds it (a producer position no
/// ring can have): the reader finds it, the request in flight fails with the corruption as its
/// reason, and the client closes cleanly.
#[test]
fn a_ring_corrupted_while_the_reader_holds_it_ends_everything_with_the_reason() {
    let (client, events, mut server) = connect_with(1 << 16, 16, false);
    let client = Arc::new(client);
    let reading = std::thread::spawn(move || {
        let got = events.recv_timeout(Duration::from_secs(30));
        (got, events)
    });
    reader_takes_the_ring(&client);
    let asking = {
        let client = client.clone();
        std::thread::spawn(move || client.request(ping(1), Duration::from_secs(30)))
    };
    let _req = server.next(Duration::from_secs(10)).unwrap().unwrap();
    // The runner reads ring 1; its producer position, scribbled over as a hostile worker could.
    let segment = client.inner.control.segment().clone();
    segment.scribble(
        crate::segment::Segment::control_offset(1),
        &12345u64.to_le_bytes(),
    );
    assert!(matches!(
        asking.join().unwrap(),
        Err(RequestError::PeerGone(GoneReason::Corrupt(_)))
    ));
    let mut client = Arc::into_inner(client).expect("the only handle left");
    client.close();
    drop(client);
    let (got, _events) = reading.join().unwrap();
    assert_eq!(got, Err(crossbeam_channel::RecvTimeoutError::Disconnected));
}
