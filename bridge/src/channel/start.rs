//! Starting a connection: the runner starts a worker process over a fresh segment
//! ([`spawn`]), the worker attaches from what the runner put in its environment ([`attach`]);
//! [`pair`] connects two ends in one process (tests, benchmarks, examples).
//!
//! Start-up: the runner creates the segment (on Linux in sealed anonymous memory nobody can
//! resize, which the worker inherits; elsewhere under a name), writes its hello into its ring,
//! and starts the worker with the segment's reference and its own pid in the environment, stdin closed, stdout and
//! stderr piped into threads that always drain them (lines go to the runner's log), in a
//! process group of its own. The worker opens the segment, unlinks its name at once, reads
//! the runner's hello and answers with its own; each side checks protocol version and build
//! id and refuses a mismatch.
//!
//! Invariants: on any error the worker is killed and nothing is left behind (no segment, no
//! name, no process).

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::{deadline_after, ChannelConfig};
use super::control::{Channel, Control};
use super::env::{ENV_PARENT_PID, ENV_SEGMENT};
use super::error::StartError;
use super::hello;
use super::link::{kill_and_reap, CloseOnDrop, Link, Peer};
use super::receiver::Receiver;
use super::sender::Sender;
use crate::ring::{Consumer, Producer};
use crate::segment::{Role, Segment, STATE_ATTACHED};
use crate::sys;

/// Lines of worker output kept for error messages.
const OUTPUT_TAIL: usize = 20;
/// Longest line of worker output forwarded in one piece.
const MAX_LINE: u64 = 64 << 10;

/// Starts `cmd` as a worker over a new segment and performs the hello exchange.
///
/// `cmd` gets the segment name and this process's pid in its environment, stdin closed,
/// stdout and stderr piped into threads that drain them into this process's log, and a
/// process group of its own (terminal signals go to the runner, which stops the worker; a
/// worker killed for hanging takes everything it started with it).
pub fn spawn(mut cmd: Command, cfg: &ChannelConfig) -> Result<Channel, StartError> {
    crate::segment::sweep_stale();
    // Where memfds cannot be made (an old kernel, a seccomp filter, `vm.memfd_noexec = 2`),
    // a named segment, as on macOS.
    #[cfg(target_os = "linux")]
    let segment = match Segment::create_sealed(cfg.geometry, cfg.protocol_version) {
        Err(crate::segment::SegmentError::Create(e)) => {
            tracing::warn!("no sealed shared memory ({e}): a named segment instead");
            Segment::create(cfg.geometry, cfg.protocol_version)
        }
        other => other,
    };
    #[cfg(not(target_os = "linux"))]
    let segment = Segment::create(cfg.geometry, cfg.protocol_version);
    let segment = segment.map_err(StartError::Segment)?;
    let (mut tx, mut rx) = segment
        .endpoints(Role::Runner)
        .map_err(StartError::Segment)?;
    hello::send(&mut tx, cfg)?;

    #[cfg(target_os = "linux")]
    let reference = segment
        .inherit_by(&mut cmd)
        .unwrap_or_else(|| segment.name().to_string());
    #[cfg(not(target_os = "linux"))]
    let reference = segment.name().to_string();
    cmd.env(ENV_SEGMENT, reference)
        .env(ENV_PARENT_PID, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(StartError::Spawn)?;
    let pid = child.id();
    let output = Arc::new(Mutex::new(VecDeque::new()));
    let mut forwarders = Vec::new();
    if let Some(out) = child.stdout.take() {
        forwarders.extend(forward_output(out, "stdout", output.clone()));
    }
    if let Some(err) = child.stderr.take() {
        forwarders.extend(forward_output(err, "stderr", output.clone()));
    }
    let last_output = |forwarders: &[JoinHandle<()>]| {
        // Give the forwarders a moment to read what a dying worker printed last.
        let until = Instant::now() + Duration::from_millis(500);
        while forwarders.iter().any(|d| !d.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        output.lock().iter().cloned().collect::<Vec<_>>()
    };

    let deadline = deadline_after(cfg.start_timeout);
    let result = hello::receive(
        &mut rx,
        deadline,
        || match child.try_wait() {
            Ok(Some(status)) => Err(StartError::Exited {
                status,
                output: last_output(&forwarders),
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(StartError::Spawn(e)),
        },
        || StartError::Timeout {
            waited: cfg.start_timeout,
            output: output.lock().iter().cloned().collect(),
        },
    )
    .and_then(|theirs| hello::check(&theirs, None, cfg));
    if let Err(e) = result {
        kill_and_reap(pid, &mut child);
        return Err(e);
    }
    let peer = Peer::Child {
        pid,
        child: Mutex::new(child),
    };
    let _ = segment.unlink();
    match Link::start(segment, Role::Runner, cfg, peer) {
        Ok(close) => Ok(assemble(tx, rx, close)),
        Err(source) => Err(StartError::Thread {
            name: "liveness",
            source,
        }),
    }
}

/// Attaches this process, started by [`spawn`], to its runner.
pub fn attach(cfg: &ChannelConfig) -> Result<Channel, StartError> {
    let name = std::env::var(ENV_SEGMENT).map_err(|_| StartError::NotStartedByRunner)?;
    let parent: u32 = std::env::var(ENV_PARENT_PID)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or(StartError::NotStartedByRunner)?;
    #[cfg(target_os = "linux")]
    let segment = if name.starts_with(crate::segment::INHERITED_PREFIX) {
        Segment::adopt(&name)
    } else {
        Segment::open(&name)
    };
    #[cfg(not(target_os = "linux"))]
    let segment = Segment::open(&name);
    let segment = segment.map_err(StartError::Segment)?;
    // Nobody else may open it from now on, and a crash of either side cannot leak it.
    let _ = segment.unlink();
    let runner_alive = || {
        if sys::process::parent_pid() == parent && sys::process::process_alive(parent) {
            Ok(())
        } else {
            Err(StartError::RunnerGone)
        }
    };
    runner_alive()?;
    mark_attached(&segment);
    let (mut tx, mut rx) = segment
        .endpoints(Role::Worker)
        .map_err(StartError::Segment)?;
    let deadline = deadline_after(cfg.start_timeout);
    let theirs = hello::receive(&mut rx, deadline, runner_alive, || StartError::Timeout {
        waited: cfg.start_timeout,
        output: Vec::new(),
    })?;
    // Our hello goes out even on a mismatch, so the runner can name it precisely.
    hello::send(&mut tx, cfg)?;
    hello::check(&theirs, Some(segment.protocol_version()), cfg)?;
    let close = Link::start(segment, Role::Worker, cfg, Peer::Parent { pid: parent }).map_err(
        |source| StartError::Thread {
            name: "liveness",
            source,
        },
    )?;
    Ok(assemble(tx, rx, close))
}

/// Connects a runner end and a worker end in this process, over a real segment (unlinked at
/// once). Liveness works as between processes, less the process probes: a side that closes,
/// or whose heartbeat stands still, is gone for the other.
///
/// ```
/// use std::time::{Duration, Instant};
/// let (mut runner, mut worker) = bridge::channel::pair(&bridge::channel::ChannelConfig::default())?;
/// runner.sender.send_bytes(b"ping", None)?;
/// let got = worker.receiver.recv_bytes(Instant::now() + Duration::from_secs(5))?;
/// assert_eq!(got, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pair(cfg: &ChannelConfig) -> Result<(Channel, Channel), StartError> {
    let segment =
        Segment::create(cfg.geometry, cfg.protocol_version).map_err(StartError::Segment)?;
    let _ = segment.unlink();
    mark_attached(&segment);
    let mut ends = Vec::with_capacity(2);
    for role in [Role::Runner, Role::Worker] {
        let (tx, rx) = segment.endpoints(role).map_err(StartError::Segment)?;
        let close = Link::start(segment.clone(), role, cfg, Peer::InProcess).map_err(|source| {
            StartError::Thread {
                name: "liveness",
                source,
            }
        })?;
        ends.push(assemble(tx, rx, close));
    }
    let worker = ends.pop();
    let runner = ends.pop();
    match (runner, worker) {
        (Some(r), Some(w)) => Ok((r, w)),
        _ => Err(StartError::Spawn(std::io::Error::other(
            "in-process pair incomplete",
        ))),
    }
}

pub(super) fn mark_attached(segment: &Segment) {
    let own = segment.header().block(Role::Worker);
    own.pid
        .store(std::process::id(), crate::sync::Ordering::Relaxed);
    own.state
        .store(STATE_ATTACHED, crate::sync::Ordering::Release);
}

pub(super) fn assemble(tx: Producer, rx: Consumer, close: Arc<CloseOnDrop>) -> Channel {
    Channel {
        sender: Sender::new(tx, close.clone()),
        receiver: Receiver::new(rx, close.clone()),
        control: Control::new(close),
    }
}

/// Forwards each line the worker prints on `stream` to this process's log (target
/// `worker`), keeping the last few for error messages. Ends when the stream does.
fn forward_output(
    stream: impl Read + Send + 'static,
    name: &'static str,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("worker-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                // A worker that writes without newlines gets its output cut into lines of
                // at most MAX_LINE bytes: memory stays bounded.
                match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                tracing::info!(target: "worker", stream = name, "{text}");
                let mut tail = tail.lock();
                if tail.len() == OUTPUT_TAIL {
                    tail.pop_front();
                }
                tail.push_back(text);
            }
        })
        .ok()
}
