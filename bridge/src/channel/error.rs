//! The channel layer's errors: why a peer is gone, why a send or a receive failed, and why a
//! connection could not be started (from either side).
//!
//! Invariants: every error says which side and what was found, with its cause as a value
//! where one exists; a peer gone is told by one [`GoneReason`], the same to every caller.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use crate::codec::CodecError;
use crate::ring::{Corruption, PushError};
use crate::segment::SegmentError;

use super::env::{ENV_PARENT_PID, ENV_SEGMENT};

/// Why the peer is no longer there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoneReason {
    /// The worker process ended (runner side), with this status.
    Exited(ExitStatus),
    /// The worker process could not be waited for (runner side): the system's error, by its
    /// kind and, where there is one, its number.
    Unwaitable {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The system's error number.
        code: Option<i32>,
    },
    /// The runner process died (worker side).
    RunnerDied,
    /// The peer's heartbeat stood still for this long.
    Hung(Duration),
    /// The peer closed its end cleanly.
    Closed,
    /// This side closed the connection.
    ClosedHere,
    /// The shared memory was found corrupt; the connection was torn down.
    Corrupt(Damage),
    /// The peer process of a hub connection ended or let go of its socket without closing
    /// the connection (the socket closed, or written to, which no peer of ours does).
    Left,
}

/// What was found corrupt in the shared memory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// A ring's positions or a frame's header.
    Ring(Corruption),
    /// A frame whose bytes do not decode as a message.
    Frame(CodecError),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Ring(c) => c.fmt(f),
            Damage::Frame(e) => write!(f, "undecodable frame: {e}"),
        }
    }
}

// Its text says what was found: the source is what that has below it.
impl std::error::Error for Damage {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Damage::Ring(c) => c.source(),
            Damage::Frame(e) => e.source(),
        }
    }
}

impl fmt::Display for GoneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoneReason::Exited(status) => write!(f, "worker process {}", exit_text(*status)),
            GoneReason::Unwaitable { kind, code } => match code {
                Some(code) => write!(
                    f,
                    "worker process cannot be waited for: {}",
                    io::Error::from_raw_os_error(*code)
                ),
                None => write!(f, "worker process cannot be waited for: {kind}"),
            },
            GoneReason::RunnerDied => f.write_str("runner process died"),
            GoneReason::Hung(d) => write!(f, "peer hung (no heartbeat for {} ms)", d.as_millis()),
            GoneReason::Closed => f.write_str("peer closed the connection"),
            GoneReason::ClosedHere => f.write_str("connection closed"),
            GoneReason::Corrupt(what) => write!(f, "shared memory corrupt: {what}"),
            GoneReason::Left => {
                f.write_str("peer process ended or let go of its socket (closed, or written to)")
            }
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
    /// The message is larger than the ring's maximum frame.
    TooLarge {
        /// The message's size in bytes; `max + 1` when encoding was stopped at the limit (the
        /// message is at least that big).
        len: usize,
        /// The maximum frame.
        max: usize,
    },
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
            SendError::TooLarge { len, max } if *len > *max + 1 => {
                write!(
                    f,
                    "message of {len} bytes exceeds the maximum frame of {max}"
                )
            }
            SendError::TooLarge { max, .. } => {
                write!(f, "message exceeds the maximum frame of {max} bytes")
            }
            SendError::PeerGone(r) => write!(f, "peer gone: {r}"),
            SendError::Encode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Told whole by `Display`: what comes next is the codec's own cause.
            SendError::Encode(e) => e.source(),
            _ => None,
        }
    }
}

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

/// A connection could not be started: the runner could not start its worker ([`spawn`]), or
/// the worker could not attach to its runner ([`attach`]).
///
/// [`spawn`]: super::spawn
/// [`attach`]: super::attach
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The segment could not be created, opened or used.
    Segment(SegmentError),
    /// The worker process could not be started (or waited for).
    Spawn(io::Error),
    /// A thread of the connection could not be started.
    Thread {
        /// Which thread: `liveness`, `dispatcher`, `timer`.
        name: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// The process was not started by a runner (no segment in the environment).
    NotStartedByRunner,
    /// The worker exited before its hello; `output` is the end of what it printed.
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// The last lines it printed.
        output: Vec<String>,
    },
    /// The runner died before the exchange finished.
    RunnerGone,
    /// No hello from the peer within the start timeout.
    Timeout {
        /// How long we waited.
        waited: Duration,
        /// The last lines the worker printed (runner side).
        output: Vec<String>,
    },
    /// The peer's first frame was not a valid hello (or this side's could not be sent).
    Handshake(HelloError),
    /// The peer speaks another protocol version.
    ProtocolMismatch {
        /// Ours.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer is another build.
    BuildMismatch {
        /// Ours.
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// No hub of that name listens (none runs, or it does not accept).
    NoHub {
        /// The hub's name.
        hub: String,
        /// Its socket.
        path: std::path::PathBuf,
        /// What connecting to it said.
        source: io::Error,
    },
    /// The hub refused this client, for `reason`.
    Refused {
        /// The hub's name.
        hub: String,
        /// Why, in the hub's words.
        reason: String,
    },
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
            StartError::Thread { name, source } => write!(
                f,
                "cannot start the worker process: cannot start {name} thread: {source}"
            ),
            StartError::NotStartedByRunner => write!(
                f,
                "not started by a runner ({ENV_SEGMENT} and {ENV_PARENT_PID} are not set)"
            ),
            StartError::Exited { status, output } => write!(
                f,
                "worker process {} during start{}",
                exit_text(*status),
                tail_text(output)
            ),
            StartError::RunnerGone => f.write_str("the runner died during start"),
            StartError::Timeout { waited, output } => write!(
                f,
                "peer sent no hello within {} ms{}",
                waited.as_millis(),
                tail_text(output)
            ),
            StartError::Handshake(e) => write!(f, "bad hello from the peer: {e}"),
            StartError::ProtocolMismatch { ours, theirs } => write!(
                f,
                "peer speaks protocol version {theirs}, this side speaks {ours}: refused"
            ),
            StartError::BuildMismatch { ours, theirs } => write!(
                f,
                "peer is build {theirs}, this side is build {ours}: refused"
            ),
            StartError::NoHub { hub, path, source } => write!(
                f,
                "no hub named {hub} to attach to ({}: {source}); start one with `runner hub \
                 --name {hub}`",
                path.display()
            ),
            StartError::Refused { hub, reason } => write!(f, "hub {hub} refused: {reason}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Told whole by `Display`: what comes next is their own cause.
            StartError::Segment(e) => e.source(),
            StartError::Spawn(e) | StartError::Thread { source: e, .. } => e.source(),
            StartError::NoHub { source, .. } => Some(source),
            StartError::Handshake(e) => e.source(),
            StartError::NotStartedByRunner
            | StartError::Exited { .. }
            | StartError::RunnerGone
            | StartError::Timeout { .. }
            | StartError::ProtocolMismatch { .. }
            | StartError::BuildMismatch { .. }
            | StartError::Refused { .. } => None,
        }
    }
}

/// Why the hello exchange failed at the frame level.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloError {
    /// A hello could not be encoded, or the peer's decoded.
    Codec(CodecError),
    /// This side's hello could not be written into its ring.
    Push(PushError),
    /// The peer's ring was found corrupt.
    Corrupt(Corruption),
    /// The peer's first frame was something else; the frame as debug text.
    NotAHello(String),
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloError::Codec(e) => e.fmt(f),
            HelloError::Push(e) => e.fmt(f),
            HelloError::Corrupt(c) => write!(f, "ring corrupt: {c}"),
            HelloError::NotAHello(frame) => write!(f, "expected a hello, got {frame}"),
        }
    }
}

impl std::error::Error for HelloError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HelloError::Codec(e) => e.source(),
            HelloError::Push(e) => e.source(),
            HelloError::Corrupt(c) => c.source(),
            HelloError::NotAHello(_) => None,
        }
    }
}

/// How a process ended, in words.
fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({status})"),
    }
}
