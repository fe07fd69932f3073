//! The `iceoryx2` transport: the harness's two pinned processes exchanging through iceoryx2's
//! zero-copy shared-memory publish-subscribe (0.10), busy polling, no codec: the peer a user
//! would pick instead of the bridge, measured in the same run. `rtt_hot` is a ping-pong of
//! 64-byte samples over two services (`ping`, `pong`); `stream` publishes 64-byte samples (or
//! 16 KiB slices) with back-pressure (no overflow: a full subscriber buffer makes the
//! publisher retry until it has room), each numbered and checked in order, then an end sample
//! with the count.
//!
//! The harness makes the services, then starts the peer, which opens them; the names carry
//! the harness's pid, so no run meets another's services. A stream begins with a handshake:
//! the producer's first sample is a hello, and it sends nothing more until the harness, having
//! taken it (so its subscriber is connected), says go on a service of its own. Without it, a
//! publisher that fills the subscriber's buffer before the subscriber has connected drops what
//! does not fit (iceoryx2 does not wait for a receiver that is not connected).

use std::hint::spin_loop;
use std::process::Child;
use std::process::Command;
use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

/// The environment variable that names the run's services to the peer.
pub const ENV: &str = "BRIDGE_BENCH_ICEORYX2";
/// Samples a subscriber holds before the publisher waits for room.
const BUFFER: usize = 1024;
/// 16 KiB slices a subscriber holds.
const SLICE_BUFFER: usize = 64;
/// The end sample's number.
const END: u64 = u64::MAX;
/// The hello sample's number.
const HELLO: u64 = u64::MAX - 1;
/// The longest any spin may last: a dead peer ends the benchmark instead of hanging it.
const GIVE_UP: Duration = Duration::from_secs(120);

type Fixed = [u8; 64];
type E = Box<dyn std::error::Error>;

/// The prefix of every file iceoryx2 makes for run `run` (in `/dev/shm` and its directory in
/// the temporary one): the harness removes them when the run ends, its global management
/// segment included, which iceoryx2 itself keeps.
fn prefix(run: &str) -> String {
    format!("bbiox2_{run}_")
}

fn node(run: &str) -> Result<Node<ipc::Service>, E> {
    set_log_level(LogLevel::Error);
    let mut config = Config::default();
    config.global.prefix = FileName::new(prefix(run).as_bytes())?;
    Ok(NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .config(&config)
        .create::<ipc::Service>()?)
}

/// Removes what iceoryx2 left in `/dev/shm` for run `run`.
fn remove_files(run: &str) {
    let prefix = prefix(run);
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in dir.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn name(run: &str, service: &str) -> Result<ServiceName, E> {
    Ok(ServiceName::new(&format!("bridge-bench/{run}/{service}"))?)
}

fn number(bytes: &[u8]) -> u64 {
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(n)
}

/// Spins until `ready()` gives a value; panics after [`GIVE_UP`], or as soon as the peer is
/// gone (looked at every 2^16 turns).
fn spin_for<T>(mut ready: impl FnMut() -> Option<T>, child: &mut Child) -> T {
    let (mut i, start) = (0u32, Instant::now());
    loop {
        if let Some(v) = ready() {
            return v;
        }
        spin_loop();
        i = i.wrapping_add(1);
        if i.is_multiple_of(1 << 16) {
            assert!(matches!(child.try_wait(), Ok(None)), "iceoryx2 peer gone");
            assert!(start.elapsed() < GIVE_UP, "iceoryx2 peer silent");
        }
    }
}

enum Ports {
    Rtt {
        tx: Publisher<ipc::Service, Fixed, ()>,
        rx: Subscriber<ipc::Service, Fixed, ()>,
    },
    Fixed(Subscriber<ipc::Service, Fixed, ()>),
    Slice(Subscriber<ipc::Service, [u8], ()>),
}

/// The parent's side of an iceoryx2 connection.
pub struct IceConn {
    child: Child,
    ports: Option<Ports>,
    /// A stream's go (after its hello).
    go: Option<Publisher<ipc::Service, Fixed, ()>>,
    seq: u64,
    node: Option<Node<ipc::Service>>,
    run: String,
}

impl IceConn {
    /// Makes the services of `mode` (`echo`, or `produce` of `len`-byte messages) and starts
    /// `cmd` (the harness's peer) on them.
    pub fn start(mut cmd: Command, mode: &str, len: usize) -> IceConn {
        Self::try_start(&mut cmd, mode, len).unwrap_or_else(|e| panic!("iceoryx2: {e}"))
    }

    fn try_start(cmd: &mut Command, mode: &str, len: usize) -> Result<IceConn, E> {
        let run = std::process::id().to_string();
        let node = node(&run)?;
        let fixed = |service: &str| -> Result<_, E> {
            Ok(node
                .service_builder(&name(&run, service)?)
                .publish_subscribe::<Fixed>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(BUFFER)
                .enable_safe_overflow(false)
                .create()?)
        };
        // A stream's go, before the peer looks for it.
        let go = match mode {
            "produce" => Some(fixed("go")?.publisher_builder().create()?),
            _ => None,
        };
        let (ports, services) = match (mode, len) {
            ("echo", _) => {
                let (ping, pong) = (fixed("ping")?, fixed("pong")?);
                let ports = Ports::Rtt {
                    tx: ping.publisher_builder().create()?,
                    rx: pong.subscriber_builder().create()?,
                };
                (ports, vec![ping, pong])
            }
            ("produce", 64) => {
                let s = fixed("stream")?;
                (Ports::Fixed(s.subscriber_builder().create()?), vec![s])
            }
            ("produce", _) => {
                let s = node
                    .service_builder(&name(&run, "slices")?)
                    .publish_subscribe::<[u8]>()
                    .max_publishers(1)
                    .max_subscribers(1)
                    .history_size(0)
                    .subscriber_max_buffer_size(SLICE_BUFFER)
                    .enable_safe_overflow(false)
                    .create()?;
                (Ports::Slice(s.subscriber_builder().create()?), Vec::new())
            }
            (other, _) => return Err(format!("no iceoryx2 mode {other:?}").into()),
        };
        let mut child = cmd.env(ENV, &run).spawn()?;
        // A ping-pong's timing starts once the peer is there (a ping sent before reaches
        // nobody); a stream waits for the producer's hello instead.
        for s in &services {
            if mode == "echo" {
                spin_for(
                    || (s.dynamic_config().number_of_publishers() > 0).then_some(()),
                    &mut child,
                );
                spin_for(
                    || (s.dynamic_config().number_of_subscribers() > 0).then_some(()),
                    &mut child,
                );
            }
        }
        Ok(IceConn {
            child,
            ports: Some(ports),
            go,
            seq: 0,
            node: Some(node),
            run,
        })
    }

    /// The peer's pid.
    pub fn peer_pid(&self) -> u32 {
        self.child.id()
    }

    /// One ping-pong of a 64-byte sample, its number checked.
    pub fn round_trip(&mut self) {
        self.seq += 1;
        let seq = self.seq;
        let Some(Ports::Rtt { tx, rx }) = &self.ports else {
            panic!("not an echo connection");
        };
        let mut ping = [0u8; 64];
        ping[..8].copy_from_slice(&seq.to_le_bytes());
        tx.send_copy(ping).expect("ping sent");
        let got = spin_for(
            || rx.receive().expect("pong").map(|s| number(s.payload())),
            &mut self.child,
        );
        assert_eq!(got, seq, "iceoryx2 pong out of order");
    }

    /// Takes samples until the producer's end sample; returns how many, and the time from
    /// the first.
    pub fn consume(&mut self) -> (u64, Duration) {
        let (mut count, mut first) = (0u64, None);
        let child = &mut self.child;
        loop {
            let (n, sent) = match &self.ports {
                Some(Ports::Fixed(sub)) => spin_for(
                    || {
                        sub.receive().expect("sample").map(|s| {
                            let p = s.payload();
                            (number(p), number(&p[8..]))
                        })
                    },
                    child,
                ),
                Some(Ports::Slice(sub)) => spin_for(
                    || {
                        sub.receive().expect("slice").map(|s| {
                            let p = s.payload();
                            (number(p), number(&p[8..]))
                        })
                    },
                    child,
                ),
                _ => panic!("not a stream connection"),
            };
            if n == HELLO {
                // The subscriber is connected: the producer may go.
                if let Some(go) = &self.go {
                    go.send_copy([0u8; 64]).expect("go sent");
                }
                continue;
            }
            first.get_or_insert_with(Instant::now);
            if n == END {
                assert_eq!(sent, count, "iceoryx2 samples lost or duplicated");
                break;
            }
            assert_eq!(n, count, "iceoryx2 sample out of order");
            count += 1;
        }
        (count, first.map(|f| f.elapsed()).unwrap_or_default())
    }

    /// Ends the peer and waits for it.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for IceConn {
    /// Drops this side's ports (the peer sees the harness gone and ends), then makes sure
    /// the peer has (also when the harness panics), and removes the run's files.
    fn drop(&mut self) {
        self.ports = None;
        self.go = None;
        let start = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(2)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.node = None;
        remove_files(&self.run);
    }
}

/// The peer's side: `echo` answers every ping until the harness's publisher is gone;
/// `produce` publishes `len`-byte messages for `secs`, then the end sample, and waits for
/// the harness to go.
pub fn peer(mode: &str, len: usize, secs: f64) -> Result<(), String> {
    run_peer(mode, len, secs).map_err(|e| e.to_string())
}

fn run_peer(mode: &str, len: usize, secs: f64) -> Result<(), E> {
    let run = std::env::var(ENV)?;
    let node = node(&run)?;
    let open_fixed = |service: &str| -> Result<_, E> {
        Ok(node
            .service_builder(&name(&run, service)?)
            .publish_subscribe::<Fixed>()
            .open()?)
    };
    let until = Instant::now() + Duration::from_secs_f64(secs);
    match (mode, len) {
        ("echo", _) => {
            let (ping, pong) = (open_fixed("ping")?, open_fixed("pong")?);
            let rx = ping.subscriber_builder().create()?;
            let tx = pong.publisher_builder().create()?;
            loop {
                if let Some(s) = rx.receive()? {
                    tx.send_copy(*s.payload())?;
                } else if ping.dynamic_config().number_of_publishers() == 0 {
                    return Ok(());
                } else {
                    spin_loop();
                }
            }
        }
        ("produce", 64) => {
            let s = open_fixed("stream")?;
            let tx = s
                .publisher_builder()
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()?;
            let go = open_fixed("go")?.subscriber_builder().create()?;
            let mut sample = [0xA5u8; 64];
            sample[..8].copy_from_slice(&HELLO.to_le_bytes());
            tx.loan_uninit()?.write_payload(sample).send()?;
            wait_for_go(&go)?;
            let mut n = 0u64;
            while Instant::now() < until {
                for _ in 0..256 {
                    sample[..8].copy_from_slice(&n.to_le_bytes());
                    tx.loan_uninit()?.write_payload(sample).send()?;
                    n += 1;
                }
            }
            sample[..8].copy_from_slice(&END.to_le_bytes());
            sample[8..16].copy_from_slice(&n.to_le_bytes());
            tx.loan_uninit()?.write_payload(sample).send()?;
            while s.dynamic_config().number_of_subscribers() > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
        ("produce", _) => {
            let s = node
                .service_builder(&name(&run, "slices")?)
                .publish_subscribe::<[u8]>()
                .open()?;
            let tx = s
                .publisher_builder()
                .initial_max_slice_len(len)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()?;
            let go = open_fixed("go")?.subscriber_builder().create()?;
            let mut buf = vec![0xA5u8; len.max(16)];
            buf[..8].copy_from_slice(&HELLO.to_le_bytes());
            tx.loan_slice_uninit(buf.len())?
                .write_from_slice(&buf)
                .send()?;
            wait_for_go(&go)?;
            let mut n = 0u64;
            while Instant::now() < until {
                for _ in 0..16 {
                    buf[..8].copy_from_slice(&n.to_le_bytes());
                    tx.loan_slice_uninit(buf.len())?
                        .write_from_slice(&buf)
                        .send()?;
                    n += 1;
                }
            }
            buf[..8].copy_from_slice(&END.to_le_bytes());
            buf[8..16].copy_from_slice(&n.to_le_bytes());
            tx.loan_slice_uninit(buf.len())?
                .write_from_slice(&buf)
                .send()?;
            while s.dynamic_config().number_of_subscribers() > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
        (other, _) => Err(format!("no iceoryx2 mode {other:?}").into()),
    }
}

/// Waits (spinning, at most [`GIVE_UP`]) for the harness's go.
fn wait_for_go(go: &Subscriber<ipc::Service, Fixed, ()>) -> Result<(), E> {
    let start = Instant::now();
    while go.receive()?.is_none() {
        if start.elapsed() > GIVE_UP {
            return Err("no go from the harness".into());
        }
        spin_loop();
    }
    Ok(())
}
