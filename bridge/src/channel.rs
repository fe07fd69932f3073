//! Frame-level endpoints: the runner starts a worker process over a fresh segment ([`spawn`]),
//! the worker attaches from what the runner put in its environment ([`attach`]). Each side gets
//! a [`Sender`], a [`Receiver`] and a [`Control`].
//!
//! Start-up: the runner creates the segment, writes its [`Hello`] into its ring, and starts the
//! worker with the segment name and its own pid in the environment, stdin closed and stdout and
//! stderr piped into threads that always drain them (lines go to the runner's log). The worker
//! opens the segment, unlinks its name at once, reads the runner's hello and answers with its
//! own; the runner checks protocol version and build id and refuses a mismatch.
//!
//! Liveness: each side runs a thread that bumps its heartbeat in the header and probes the
//! peer: child exit (runner side), parent death (worker side), a peer heartbeat silent for
//! longer than the hang timeout, or a peer that closed. A dead or hung peer is declared gone:
//! every waiter wakes and every later operation fails with [`GoneReason`]. A hung worker is
//! killed.

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{de::DeserializeOwned, Serialize};

use crate::codec::{self, CodecError};
use crate::protocol::{Body, Envelope, Hello, PROTOCOL_VERSION};
use crate::ring::{Consumer, Producer, PushError};
use crate::segment::{
    Geometry, Segment, SegmentError, SegmentStats, Side, STATE_ATTACHED, STATE_CLOSED,
};
use crate::sys;

/// Environment variable that carries the segment name to the worker.
pub const ENV_SEGMENT: &str = "IBBRIDGE_SEGMENT";
/// Environment variable that carries the runner's pid to the worker.
pub const ENV_PARENT_PID: &str = "IBBRIDGE_PARENT_PID";

/// Lines of worker output kept for error messages.
const OUTPUT_TAIL: usize = 20;

/// Settings of a bridge connection. Both sides should use the same values.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ring sizes (runner side; the worker reads them from the segment).
    pub geometry: Geometry,
    /// How often each side bumps its heartbeat and probes its peer.
    pub heartbeat_interval: Duration,
    /// A peer whose heartbeat stays still this long is declared hung.
    pub hang_timeout: Duration,
    /// How long the hello exchange may take.
    pub start_timeout: Duration,
    /// How long the runner waits for the worker to exit after closing, before killing it.
    pub exit_grace: Duration,
    /// Identifies this build; both sides must present the same.
    pub build_id: String,
    /// The protocol version announced; differs from [`PROTOCOL_VERSION`] only in tests.
    pub protocol_version: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            geometry: Geometry::default(),
            heartbeat_interval: Duration::from_millis(100),
            hang_timeout: Duration::from_secs(3),
            start_timeout: Duration::from_secs(10),
            exit_grace: Duration::from_secs(2),
            build_id: concat!("bridge-", env!("CARGO_PKG_VERSION")).to_string(),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// Why the peer is no longer there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoneReason {
    /// The worker process ended (runner side); the text says how.
    Exited(String),
    /// The runner process died (worker side).
    RunnerDied,
    /// The peer's heartbeat stood still for this long.
    Hung(Duration),
    /// The peer closed its end cleanly.
    Closed,
    /// This side closed the connection.
    ClosedHere,
    /// The shared memory was found corrupt; the connection was torn down.
    Corrupt(String),
}

impl fmt::Display for GoneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoneReason::Exited(how) => write!(f, "worker process {how}"),
            GoneReason::RunnerDied => f.write_str("runner process died"),
            GoneReason::Hung(d) => write!(f, "peer hung (no heartbeat for {} ms)", d.as_millis()),
            GoneReason::Closed => f.write_str("peer closed the connection"),
            GoneReason::ClosedHere => f.write_str("connection closed"),
            GoneReason::Corrupt(what) => write!(f, "shared memory corrupt: {what}"),
        }
    }
}

/// A send failed; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The ring is full and the caller asked not to wait.
    Full,
    /// The ring stayed full until the deadline.
    Timeout,
    /// The frame is larger than the ring's maximum.
    TooLarge { len: usize, max: usize },
    /// The peer is gone; see the reason.
    PeerGone(GoneReason),
    /// The message could not be encoded.
    Encode(CodecError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full => f.write_str("ring full"),
            SendError::Timeout => f.write_str("ring stayed full until the deadline"),
            SendError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            SendError::PeerGone(r) => write!(f, "peer gone: {r}"),
            SendError::Encode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}

/// A receive failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The peer is gone and everything it sent has been received.
    PeerGone(GoneReason),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Timeout => f.write_str("nothing received before the deadline"),
            RecvError::PeerGone(r) => write!(f, "peer gone: {r}"),
        }
    }
}

impl std::error::Error for RecvError {}

/// The runner could not start a worker.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The segment could not be created.
    Segment(SegmentError),
    /// The worker process could not be started.
    Spawn(String),
    /// The worker exited before its hello; `output` is the end of what it printed.
    Exited { status: String, output: Vec<String> },
    /// No hello within the start timeout.
    Timeout {
        waited: Duration,
        output: Vec<String>,
    },
    /// The worker's first frame was not a valid hello.
    Handshake(String),
    /// The worker speaks another protocol version.
    ProtocolMismatch { ours: u32, theirs: u32 },
    /// The worker is another build.
    BuildMismatch { ours: String, theirs: String },
}

fn tail_text(output: &[String]) -> String {
    match output.last() {
        Some(last) => format!("; last output: {last}"),
        None => String::new(),
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Segment(e) => e.fmt(f),
            StartError::Spawn(e) => write!(f, "cannot start the worker process: {e}"),
            StartError::Exited { status, output } => write!(
                f,
                "worker process {status} during start{}",
                tail_text(output)
            ),
            StartError::Timeout { waited, output } => write!(
                f,
                "worker sent no hello within {} ms{}",
                waited.as_millis(),
                tail_text(output)
            ),
            StartError::Handshake(e) => write!(f, "bad hello from the worker: {e}"),
            StartError::ProtocolMismatch { ours, theirs } => write!(
                f,
                "worker speaks protocol version {theirs}, this runner speaks {ours}: refused"
            ),
            StartError::BuildMismatch { ours, theirs } => write!(
                f,
                "worker is build {theirs}, this runner is build {ours}: refused"
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// The worker could not attach to its runner.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// The process was not started by a runner (no segment in the environment).
    NotStartedByRunner,
    /// The segment could not be opened or is invalid.
    Segment(SegmentError),
    /// The runner died before the exchange finished.
    RunnerGone,
    /// No hello from the runner within the start timeout.
    Timeout,
    /// The runner's first frame was not a valid hello.
    Handshake(String),
    /// The runner speaks another protocol version.
    ProtocolMismatch { ours: u32, theirs: u32 },
    /// The runner is another build.
    BuildMismatch { ours: String, theirs: String },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::NotStartedByRunner => write!(
                f,
                "not started by a runner ({ENV_SEGMENT} and {ENV_PARENT_PID} are not set)"
            ),
            AttachError::Segment(e) => e.fmt(f),
            AttachError::RunnerGone => f.write_str("the runner died during start"),
            AttachError::Timeout => f.write_str("no hello from the runner in time"),
            AttachError::Handshake(e) => write!(f, "bad hello from the runner: {e}"),
            AttachError::ProtocolMismatch { ours, theirs } => write!(
                f,
                "runner speaks protocol version {theirs}, this worker speaks {ours}: refused"
            ),
            AttachError::BuildMismatch { ours, theirs } => write!(
                f,
                "runner is build {theirs}, this worker is build {ours}: refused"
            ),
        }
    }
}

impl std::error::Error for AttachError {}

// ---------------------------------------------------------------------------------------------

enum Peer {
    Child { pid: u32, child: Mutex<Child> },
    Parent { pid: u32 },
}

/// State shared by a side's sender, receiver, control and liveness thread.
struct Link {
    segment: Arc<Segment>,
    side: Side,
    cfg: Config,
    peer: Peer,
    is_gone: AtomicBool,
    gone: Mutex<Option<GoneReason>>,
    closing: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Link {
    #[inline]
    fn is_gone(&self) -> bool {
        self.is_gone.load(Ordering::Acquire)
    }

    fn gone_reason(&self) -> Option<GoneReason> {
        if !self.is_gone() {
            return None;
        }
        self.gone.lock().clone()
    }

    fn peer_closed(&self) -> bool {
        self.segment
            .header()
            .side(self.side.peer())
            .state
            .load(crate::sync::Ordering::Acquire)
            == STATE_CLOSED
    }

    /// Records why the peer is gone (the first reason wins) and wakes every waiter.
    fn declare_gone(&self, reason: GoneReason) -> GoneReason {
        let reason = {
            let mut gone = self.gone.lock();
            if gone.is_none() {
                match &reason {
                    GoneReason::ClosedHere => {}
                    GoneReason::Closed => {
                        tracing::debug!(target: "bridge", side = ?self.side, "peer closed")
                    }
                    r => tracing::warn!(target: "bridge", side = ?self.side, "peer gone: {r}"),
                }
                *gone = Some(reason);
                self.is_gone.store(true, Ordering::Release);
            }
            gone.clone().unwrap_or(GoneReason::ClosedHere)
        };
        self.segment.wake_all();
        reason
    }

    fn peer_pid(&self) -> u32 {
        match &self.peer {
            Peer::Child { pid, .. } | Peer::Parent { pid } => *pid,
        }
    }

    /// One liveness probe of the peer.
    fn probe(&self, silent: Duration) -> Option<GoneReason> {
        if self.peer_closed() {
            return Some(GoneReason::Closed);
        }
        match &self.peer {
            Peer::Child { child, .. } => match child.lock().try_wait() {
                Ok(Some(status)) => return Some(GoneReason::Exited(describe(status))),
                Ok(None) => {}
                Err(e) => return Some(GoneReason::Exited(format!("cannot be waited for: {e}"))),
            },
            Peer::Parent { pid } => {
                if sys::parent_pid() != *pid || !sys::process_alive(*pid) {
                    return Some(GoneReason::RunnerDied);
                }
            }
        }
        (silent > self.cfg.hang_timeout).then_some(GoneReason::Hung(silent))
    }

    fn liveness(self: Arc<Self>) {
        let header = self.segment.header();
        let own = header.side(self.side);
        let peer = header.side(self.side.peer());
        let mut last_beat = peer.heartbeat.load(crate::sync::Ordering::Relaxed);
        let mut last_change = Instant::now();
        loop {
            {
                let mut stop = self.stop.lock();
                if !*stop {
                    self.stop_cv
                        .wait_for(&mut stop, self.cfg.heartbeat_interval);
                }
                if *stop {
                    return;
                }
            }
            own.heartbeat.fetch_add(1, crate::sync::Ordering::Relaxed);
            if self.is_gone() {
                return;
            }
            let beat = peer.heartbeat.load(crate::sync::Ordering::Relaxed);
            if beat != last_beat {
                last_beat = beat;
                last_change = Instant::now();
            }
            if let Some(reason) = self.probe(last_change.elapsed()) {
                if let (GoneReason::Hung(_), Peer::Child { child, .. }) = (&reason, &self.peer) {
                    let mut child = child.lock();
                    let _ = child.kill();
                    let _ = child.wait();
                }
                self.declare_gone(reason);
                return;
            }
        }
    }

    /// Closes this side: marks it closed in the header, wakes everybody, stops the liveness
    /// thread, and on the runner side waits for the worker to exit (killing it after the
    /// grace period). Idempotent.
    fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.segment
            .header()
            .side(self.side)
            .state
            .store(STATE_CLOSED, crate::sync::Ordering::Release);
        self.declare_gone(GoneReason::ClosedHere);
        *self.stop.lock() = true;
        self.stop_cv.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        if let Peer::Child { child, .. } = &self.peer {
            let mut child = child.lock();
            let deadline = Instant::now() + self.cfg.exit_grace;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }

    fn start(
        segment: Arc<Segment>,
        side: Side,
        cfg: &Config,
        peer: Peer,
    ) -> Result<Arc<Handle>, std::io::Error> {
        let link = Arc::new(Link {
            segment,
            side,
            cfg: cfg.clone(),
            peer,
            is_gone: AtomicBool::new(false),
            gone: Mutex::new(None),
            closing: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            thread: Mutex::new(None),
        });
        let for_thread = link.clone();
        let t = std::thread::Builder::new()
            .name("bridge-liveness".into())
            .spawn(move || for_thread.liveness())?;
        *link.thread.lock() = Some(t);
        Ok(Arc::new(Handle { link }))
    }
}

/// Closes the link when the last of sender, receiver and control is dropped.
struct Handle {
    link: Arc<Link>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.link.close();
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({status})"),
    }
}

// ---------------------------------------------------------------------------------------------

/// Both directions of one side plus its control.
#[derive(Debug)]
pub struct Channel {
    pub sender: Sender,
    pub receiver: Receiver,
    pub control: Control,
}

/// Management of a side's connection: peer identity, liveness, counters, closing.
#[derive(Clone)]
pub struct Control {
    handle: Arc<Handle>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("side", &self.handle.link.side)
            .field("peer_pid", &self.peer_pid())
            .field("gone", &self.gone())
            .finish()
    }
}

impl Control {
    fn link(&self) -> &Link {
        &self.handle.link
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.link().side
    }

    /// The peer's process id.
    pub fn peer_pid(&self) -> u32 {
        self.link().peer_pid()
    }

    /// Why the peer is gone, if it is.
    pub fn gone(&self) -> Option<GoneReason> {
        self.link().gone_reason()
    }

    /// Whether the peer is gone (cheap).
    pub fn is_gone(&self) -> bool {
        self.link().is_gone()
    }

    /// Declares the peer gone for a reason found above this layer (a protocol violation, a
    /// request that proves the worker hung). Wakes every waiter. On the runner side the worker
    /// is killed.
    pub fn declare_gone(&self, reason: GoneReason) -> GoneReason {
        let reason = self.link().declare_gone(reason);
        if let Peer::Child { child, .. } = &self.link().peer {
            let mut child = child.lock();
            let _ = child.kill();
            let _ = child.wait();
        }
        reason
    }

    /// Closes the connection now (also done when the last handle is dropped).
    pub fn close(&self) {
        self.link().close();
    }

    /// The segment's name (already unlinked once the worker attached).
    pub fn segment_name(&self) -> &str {
        self.link().segment.name()
    }

    /// Counters of the segment.
    pub fn stats(&self) -> SegmentStats {
        self.link().segment.stats()
    }

    pub(crate) fn counters(&self) -> &crate::segment::Counters {
        &self.link().segment.header().counters.0
    }
}

/// The writing end of a side.
pub struct Sender {
    tx: Producer,
    link: Arc<Link>,
    _handle: Arc<Handle>,
    scratch: Vec<u8>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("ring", &self.tx).finish()
    }
}

impl Sender {
    /// Sends one frame if there is room now.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        push(&mut self.tx, &self.link, bytes, None)
    }

    /// Sends one frame, waiting for room until `deadline`.
    pub fn send_bytes(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), SendError> {
        push(&mut self.tx, &self.link, bytes, Some(deadline))
    }

    /// Encodes and sends one message, waiting for room until `deadline`.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        msg: &T,
        deadline: Instant,
    ) -> Result<(), SendError> {
        let n = self.encode(msg)?;
        push(&mut self.tx, &self.link, &self.scratch[..n], Some(deadline))
    }

    /// Encodes and sends one message if there is room now.
    pub fn try_send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), SendError> {
        let n = self.encode(msg)?;
        push(&mut self.tx, &self.link, &self.scratch[..n], None)
    }

    /// Encodes `msg` at the start of the scratch buffer, growing it as needed up to one byte
    /// more than the maximum frame; returns the length.
    fn encode<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<usize, SendError> {
        let max = self.tx.max_frame();
        loop {
            match codec::encode_to_slice(msg, &mut self.scratch) {
                Ok(n) if n > max => return Err(SendError::TooLarge { len: n, max }),
                Ok(n) => return Ok(n),
                Err(CodecError::BufferTooSmall) if self.scratch.len() <= max => {
                    let grown = (self.scratch.len() * 2).clamp(256, max + 1);
                    self.scratch.resize(grown, 0);
                }
                Err(CodecError::BufferTooSmall) => {
                    let len = codec::encode(msg).map(|v| v.len()).unwrap_or(max + 1);
                    return Err(SendError::TooLarge { len, max });
                }
                Err(e) => return Err(SendError::Encode(e)),
            }
        }
    }

    /// Encodes and writes one message without publishing it, waiting for room until
    /// `deadline`: for a producer with more to send. The receiver sees it after [`flush`], or
    /// sooner once a quarter of the ring is pending (or the ring fills).
    ///
    /// [`flush`]: Self::flush
    pub fn feed<T: Serialize + ?Sized>(
        &mut self,
        msg: &T,
        deadline: Instant,
    ) -> Result<(), SendError> {
        let n = self.encode(msg)?;
        write(&mut self.tx, &self.link, &self.scratch[..n], Some(deadline))?;
        if self.tx.unpublished() >= self.tx.capacity() / 4 {
            self.tx.publish();
        }
        Ok(())
    }

    /// Publishes everything fed so far.
    pub fn flush(&mut self) {
        self.tx.publish();
    }

    /// Largest frame accepted.
    pub fn max_frame(&self) -> usize {
        self.tx.max_frame()
    }
}

fn push(
    tx: &mut Producer,
    link: &Link,
    bytes: &[u8],
    deadline: Option<Instant>,
) -> Result<(), SendError> {
    write(tx, link, bytes, deadline)?;
    tx.publish();
    Ok(())
}

/// Writes one frame (unpublished), waiting for room until `deadline` (`None`: not at all).
fn write(
    tx: &mut Producer,
    link: &Link,
    bytes: &[u8],
    deadline: Option<Instant>,
) -> Result<(), SendError> {
    loop {
        if link.is_gone() {
            return Err(SendError::PeerGone(
                link.gone_reason().unwrap_or(GoneReason::ClosedHere),
            ));
        }
        match tx.write(bytes) {
            Ok(()) => return Ok(()),
            // What is pending must be visible, or the consumer cannot make room.
            Err(PushError::Full) => tx.publish(),
            Err(PushError::TooLarge { len, max }) => return Err(SendError::TooLarge { len, max }),
            Err(PushError::Corrupt(c)) => {
                return Err(SendError::PeerGone(
                    link.declare_gone(GoneReason::Corrupt(c.to_string())),
                ))
            }
        }
        let Some(deadline) = deadline else {
            return Err(SendError::Full);
        };
        if Instant::now() >= deadline {
            return Err(SendError::Timeout);
        }
        tx.wait_for_space(bytes.len(), deadline, || link.is_gone());
    }
}

/// The reading end of a side.
///
/// Frames are taken from the ring in batches: everything published is copied out with one
/// bulk copy per contiguous span, its space freed at once, and the frames are then handed out
/// one by one from the private copy.
pub struct Receiver {
    rx: Consumer,
    link: Arc<Link>,
    _handle: Arc<Handle>,
    batch: Vec<u8>,
    frames: Vec<(usize, usize)>,
    next: usize,
    current: (usize, usize),
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("ring", &self.rx).finish()
    }
}

impl Receiver {
    fn frame(&self) -> &[u8] {
        let (start, len) = self.current;
        &self.batch[start..start + len]
    }

    /// Takes the next batch from the ring: `Ok(true)` if it holds a frame.
    fn fill(&mut self) -> Result<bool, RecvError> {
        match self.rx.take_batch(&mut self.batch, &mut self.frames) {
            Ok(n) => {
                // Copied out: the producer may reuse the space right away.
                self.rx.release();
                self.next = 0;
                Ok(n > 0)
            }
            Err(c) => Err(RecvError::PeerGone(
                self.link.declare_gone(GoneReason::Corrupt(c.to_string())),
            )),
        }
    }

    /// Makes the next frame current: `Ok(true)` if there was one. Once the peer is gone,
    /// frames it sent before are still delivered; only then comes `PeerGone`.
    fn poll(&mut self) -> Result<bool, RecvError> {
        if self.next >= self.frames.len() && !self.fill()? {
            let closed = self.link.peer_closed();
            if !closed && !self.link.is_gone() {
                return Ok(false);
            }
            // Frames published just before the close or death are still delivered.
            if !self.fill()? {
                return Err(RecvError::PeerGone(if closed {
                    self.link.declare_gone(GoneReason::Closed)
                } else {
                    self.link.gone_reason().unwrap_or(GoneReason::ClosedHere)
                }));
            }
        }
        self.current = self.frames[self.next];
        self.next += 1;
        Ok(true)
    }

    /// The next frame if one is waiting.
    pub fn try_recv_bytes(&mut self) -> Result<Option<&[u8]>, RecvError> {
        Ok(if self.poll()? {
            Some(self.frame())
        } else {
            None
        })
    }

    /// The next frame, waiting until `deadline`.
    pub fn recv_bytes(&mut self, deadline: Instant) -> Result<&[u8], RecvError> {
        loop {
            if self.poll()? {
                return Ok(self.frame());
            }
            if Instant::now() >= deadline {
                return Err(RecvError::Timeout);
            }
            let link = &self.link;
            self.rx
                .wait_for_data(deadline, || link.is_gone() || link.peer_closed());
        }
    }

    /// The next message, waiting until `deadline`. A frame that does not decode is corruption:
    /// the connection is torn down.
    pub fn recv<T: DeserializeOwned>(&mut self, deadline: Instant) -> Result<T, RecvError> {
        self.recv_bytes(deadline)?;
        self.decode()
    }

    /// The next message if one is waiting.
    pub fn try_recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, RecvError> {
        if self.poll()? {
            self.decode().map(Some)
        } else {
            Ok(None)
        }
    }

    fn decode<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        codec::decode(self.frame()).map_err(|e| {
            RecvError::PeerGone(
                self.link
                    .declare_gone(GoneReason::Corrupt(format!("undecodable frame: {e}"))),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------

fn hello(cfg: &Config) -> Envelope {
    Envelope {
        id: 0,
        body: Body::Hello(Hello {
            protocol_version: cfg.protocol_version,
            build_id: cfg.build_id.clone(),
            pid: std::process::id(),
        }),
    }
}

/// Polls `rx` for the peer's hello until `deadline`, checking `alive` between waits.
fn await_hello<E>(
    rx: &mut Consumer,
    deadline: Instant,
    mut alive: impl FnMut() -> Result<(), E>,
    timeout: impl Fn() -> E,
    bad: impl Fn(String) -> E,
) -> Result<Hello, E> {
    let mut buf = Vec::new();
    loop {
        match rx.pop_into(&mut buf) {
            Ok(true) => {
                let env: Envelope = codec::decode(&buf).map_err(|e| bad(e.to_string()))?;
                return match env.body {
                    Body::Hello(h) => Ok(h),
                    other => Err(bad(format!("expected a hello, got {other:?}"))),
                };
            }
            Ok(false) => {}
            Err(c) => return Err(bad(format!("ring corrupt: {c}"))),
        }
        alive()?;
        let now = Instant::now();
        if now >= deadline {
            return Err(timeout());
        }
        rx.wait_for_data(deadline.min(now + Duration::from_millis(20)), || false);
    }
}

fn drain(
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
                match reader.read_until(b'\n', &mut line) {
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

/// Starts `cmd` as a worker over a new segment and performs the hello exchange.
///
/// `cmd` gets the segment name and this process's pid in its environment, stdin closed,
/// stdout and stderr piped into threads that drain them into this process's log, and a
/// process group of its own (terminal signals go to the runner, which stops the worker).
pub fn spawn(mut cmd: Command, cfg: &Config) -> Result<Channel, StartError> {
    crate::segment::sweep_stale();
    let segment =
        Segment::create(cfg.geometry, cfg.protocol_version).map_err(StartError::Segment)?;
    let (mut tx, mut rx) = segment.endpoints(Side::Runner);
    let ours = codec::encode(&hello(cfg)).map_err(|e| StartError::Handshake(e.to_string()))?;
    tx.try_push(&ours)
        .map_err(|e| StartError::Handshake(e.to_string()))?;

    cmd.env(ENV_SEGMENT, segment.name())
        .env(ENV_PARENT_PID, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A process group of its own: Ctrl-C at the terminal reaches the runner, which then shuts
    // the worker down in order, instead of killing the worker mid-request.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| StartError::Spawn(e.to_string()))?;
    let pid = child.id();
    let output = Arc::new(Mutex::new(VecDeque::new()));
    let mut drains = Vec::new();
    if let Some(out) = child.stdout.take() {
        drains.extend(drain(out, "stdout", output.clone()));
    }
    if let Some(err) = child.stderr.take() {
        drains.extend(drain(err, "stderr", output.clone()));
    }
    let snapshot = |drains: &[JoinHandle<()>]| {
        // Give the drains a moment to read what a dying worker printed last.
        let until = Instant::now() + Duration::from_millis(500);
        while drains.iter().any(|d| !d.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        output.lock().iter().cloned().collect::<Vec<_>>()
    };

    let deadline = Instant::now() + cfg.start_timeout;
    let result = await_hello(
        &mut rx,
        deadline,
        || match child.try_wait() {
            Ok(Some(status)) => Err(StartError::Exited {
                status: describe(status),
                output: snapshot(&drains),
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(StartError::Spawn(e.to_string())),
        },
        || StartError::Timeout {
            waited: cfg.start_timeout,
            output: output.lock().iter().cloned().collect(),
        },
        StartError::Handshake,
    )
    .and_then(|theirs| {
        if theirs.protocol_version != cfg.protocol_version {
            Err(StartError::ProtocolMismatch {
                ours: cfg.protocol_version,
                theirs: theirs.protocol_version,
            })
        } else if theirs.build_id != cfg.build_id {
            Err(StartError::BuildMismatch {
                ours: cfg.build_id.clone(),
                theirs: theirs.build_id,
            })
        } else {
            Ok(())
        }
    });
    if let Err(e) = result {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let _ = segment.unlink();
    let peer = Peer::Child {
        pid,
        child: Mutex::new(child),
    };
    let handle = match Link::start(segment, Side::Runner, cfg, peer) {
        Ok(h) => h,
        Err(e) => {
            return Err(StartError::Spawn(format!(
                "cannot start liveness thread: {e}"
            )))
        }
    };
    Ok(finish(tx, rx, handle))
}

fn finish(tx: Producer, rx: Consumer, handle: Arc<Handle>) -> Channel {
    let link = handle.link.clone();
    Channel {
        sender: Sender {
            tx,
            link: link.clone(),
            _handle: handle.clone(),
            scratch: Vec::new(),
        },
        receiver: Receiver {
            rx,
            link,
            _handle: handle.clone(),
            batch: Vec::new(),
            frames: Vec::new(),
            next: 0,
            current: (0, 0),
        },
        control: Control { handle },
    }
}

/// Attaches this process, started by [`spawn`], to its runner.
pub fn attach(cfg: &Config) -> Result<Channel, AttachError> {
    let name = std::env::var(ENV_SEGMENT).map_err(|_| AttachError::NotStartedByRunner)?;
    let parent: u32 = std::env::var(ENV_PARENT_PID)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or(AttachError::NotStartedByRunner)?;
    let segment = Segment::open(&name).map_err(AttachError::Segment)?;
    // Nobody else may open it from now on, and a crash of either side cannot leak it.
    let _ = segment.unlink();
    let runner_alive = || {
        if sys::parent_pid() == parent && sys::process_alive(parent) {
            Ok(())
        } else {
            Err(AttachError::RunnerGone)
        }
    };
    runner_alive()?;
    let own = segment.header().side(Side::Worker);
    own.pid
        .store(std::process::id(), crate::sync::Ordering::Relaxed);
    own.state
        .store(STATE_ATTACHED, crate::sync::Ordering::Release);
    let (mut tx, mut rx) = segment.endpoints(Side::Worker);
    let deadline = Instant::now() + cfg.start_timeout;
    let theirs = await_hello(
        &mut rx,
        deadline,
        runner_alive,
        || AttachError::Timeout,
        AttachError::Handshake,
    )?;
    // Our hello goes out even on a mismatch, so the runner can name it precisely.
    let ours = codec::encode(&hello(cfg)).map_err(|e| AttachError::Handshake(e.to_string()))?;
    tx.try_push(&ours)
        .map_err(|e| AttachError::Handshake(e.to_string()))?;
    let header_version = segment.protocol_version();
    for theirs_version in [header_version, theirs.protocol_version] {
        if theirs_version != cfg.protocol_version {
            return Err(AttachError::ProtocolMismatch {
                ours: cfg.protocol_version,
                theirs: theirs_version,
            });
        }
    }
    if theirs.build_id != cfg.build_id {
        return Err(AttachError::BuildMismatch {
            ours: cfg.build_id.clone(),
            theirs: theirs.build_id,
        });
    }
    let handle = Link::start(segment, Side::Worker, cfg, Peer::Parent { pid: parent })
        .map_err(|e| AttachError::Handshake(format!("cannot start liveness thread: {e}")))?;
    Ok(finish(tx, rx, handle))
}
