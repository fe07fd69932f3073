//! The state one side's sender, receiver, control and liveness thread share: who the peer is,
//! whether it is gone and why, and this side's counters.
//!
//! Liveness: a thread bumps this side's heartbeat in the header every period and probes the
//! peer: child exit (runner side), parent death (worker side), a peer heartbeat silent for
//! longer than the hang timeout, or a peer that closed. A dead or hung peer is declared gone:
//! every waiter wakes and every later operation fails with [`GoneReason`]. A hung worker is
//! killed with its whole process group.
//!
//! Invariants:
//! - the first reason declared wins; `is_gone` is set before anybody is woken;
//! - no lock of this module is held while logging, waking or calling out (a log record may be
//!   forwarded over this very connection, and find it corrupt: that call must not block on a
//!   lock its caller holds).

#![forbid(unsafe_code)]

use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::config::{deadline_after, ChannelConfig};
use super::error::GoneReason;
use crate::ring::RingStats;
use crate::segment::{Role, Segment, STATE_CLOSED};
use crate::sys;

/// Who is at the other end.
pub(crate) enum Peer {
    /// The worker process this runner started (in a process group of its own).
    Child { pid: u32, child: Mutex<Child> },
    /// The runner that started this worker.
    Parent { pid: u32 },
    /// The other side lives in this process ([`pair`](super::pair)).
    InProcess,
    /// A hub's client, or the hub a client attached to: an unrelated process, watched
    /// through the socket it attached over (closed when it ends) and its heartbeat.
    Socket {
        pid: u32,
        stream: Mutex<std::os::unix::net::UnixStream>,
    },
}

/// One ring end's counters, as atomics other threads can read.
#[derive(Default)]
pub(crate) struct StatCells {
    frames: AtomicU64,
    bytes: AtomicU64,
    full_events: AtomicU64,
    wakes: AtomicU64,
    sleeps: AtomicU64,
}

impl StatCells {
    pub(crate) fn store(&self, s: RingStats) {
        self.frames.store(s.frames, Ordering::Relaxed);
        self.bytes.store(s.bytes, Ordering::Relaxed);
        self.full_events.store(s.full_events, Ordering::Relaxed);
        self.wakes.store(s.wakes, Ordering::Relaxed);
        self.sleeps.store(s.sleeps, Ordering::Relaxed);
    }

    pub(crate) fn load(&self) -> RingStats {
        RingStats {
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            full_events: self.full_events.load(Ordering::Relaxed),
            wakes: self.wakes.load(Ordering::Relaxed),
            sleeps: self.sleeps.load(Ordering::Relaxed),
        }
    }
}

/// State shared by a side's sender, receiver, control and liveness thread.
pub(crate) struct Link {
    pub(crate) segment: Arc<Segment>,
    pub(crate) role: Role,
    cfg: ChannelConfig,
    pub(crate) peer: Peer,
    is_gone: AtomicBool,
    gone: Mutex<Option<GoneReason>>,
    closing: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// What this side's producer published.
    pub(crate) sent: StatCells,
    /// What this side's consumer took.
    pub(crate) received: StatCells,
}

impl Link {
    /// Makes the link and starts its liveness thread.
    pub(crate) fn start(
        segment: Arc<Segment>,
        role: Role,
        cfg: &ChannelConfig,
        peer: Peer,
    ) -> Result<Arc<CloseOnDrop>, std::io::Error> {
        let link = Arc::new(Link {
            segment,
            role,
            cfg: cfg.clone(),
            peer,
            is_gone: AtomicBool::new(false),
            gone: Mutex::new(None),
            closing: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            thread: Mutex::new(None),
            sent: StatCells::default(),
            received: StatCells::default(),
        });
        let for_thread = link.clone();
        let spawned = std::thread::Builder::new()
            .name("bridge-liveness".into())
            .spawn(move || for_thread.liveness());
        let t = match spawned {
            Ok(t) => t,
            Err(e) => {
                // Nothing would watch or reap the worker: it goes now.
                link.kill_peer();
                return Err(e);
            }
        };
        *link.thread.lock() = Some(t);
        Ok(Arc::new(CloseOnDrop { link }))
    }

    #[inline]
    pub(crate) fn is_gone(&self) -> bool {
        self.is_gone.load(Ordering::Acquire)
    }

    pub(crate) fn gone_reason(&self) -> Option<GoneReason> {
        if !self.is_gone() {
            return None;
        }
        self.gone.lock().clone()
    }

    /// The reason the peer is gone, for an operation that found it gone.
    pub(crate) fn gone_or_closed(&self) -> GoneReason {
        self.gone_reason().unwrap_or(GoneReason::ClosedHere)
    }

    pub(crate) fn peer_closed(&self) -> bool {
        self.segment
            .header()
            .block(self.role.peer())
            .state
            .load(crate::sync::Ordering::Acquire)
            == STATE_CLOSED
    }

    /// Records why the peer is gone (the first reason wins), wakes every waiter, and returns
    /// the reason that stands. The lock is released before anything is logged or woken.
    pub(crate) fn declare_gone(&self, reason: GoneReason) -> GoneReason {
        let (standing, first) = {
            let mut gone = self.gone.lock();
            match &*gone {
                Some(r) => (r.clone(), false),
                None => {
                    *gone = Some(reason.clone());
                    self.is_gone.store(true, Ordering::Release);
                    (reason, true)
                }
            }
        };
        if first {
            match &standing {
                GoneReason::ClosedHere => {}
                GoneReason::Closed => {
                    tracing::debug!(target: "bridge", side = ?self.role, "peer closed")
                }
                r => tracing::warn!(target: "bridge", side = ?self.role, "peer gone: {r}"),
            }
        }
        self.segment.wake_all();
        standing
    }

    pub(crate) fn peer_pid(&self) -> u32 {
        match &self.peer {
            Peer::Child { pid, .. } | Peer::Parent { pid } | Peer::Socket { pid, .. } => *pid,
            Peer::InProcess => std::process::id(),
        }
    }

    /// Kills the worker and everything in its process group, and reaps it (runner side).
    pub(crate) fn kill_peer(&self) {
        if let Peer::Child { pid, child } = &self.peer {
            kill_and_reap(*pid, &mut child.lock());
        }
    }

    /// One liveness probe of the peer.
    fn probe(&self, silent: Duration) -> Option<GoneReason> {
        if self.peer_closed() {
            return Some(GoneReason::Closed);
        }
        match &self.peer {
            Peer::Child { child, .. } => {
                let status = child.lock().try_wait();
                match status {
                    Ok(Some(status)) => return Some(GoneReason::Exited(status)),
                    Ok(None) => {}
                    Err(e) => {
                        return Some(GoneReason::Unwaitable {
                            kind: e.kind(),
                            code: e.raw_os_error(),
                        })
                    }
                }
            }
            Peer::Parent { pid } => {
                if sys::process::parent_pid() != *pid || !sys::process::process_alive(*pid) {
                    return Some(GoneReason::RunnerDied);
                }
            }
            Peer::Socket { stream, .. } => {
                if sys::socket::closed(&stream.lock()) {
                    return Some(GoneReason::Left);
                }
            }
            Peer::InProcess => {}
        }
        (silent > self.cfg.hang_timeout).then_some(GoneReason::Hung(silent))
    }

    fn liveness(self: Arc<Self>) {
        let header = self.segment.header();
        let own = header.block(self.role);
        let peer = header.block(self.role.peer());
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
                if let GoneReason::Hung(_) = reason {
                    self.kill_peer();
                }
                self.declare_gone(reason);
                return;
            }
        }
    }

    /// Closes this side: marks it closed in the header, wakes everybody, stops the liveness
    /// thread, and on the runner side waits for the worker to exit (killing its process group
    /// after the grace period). Idempotent.
    pub(crate) fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.segment
            .header()
            .block(self.role)
            .state
            .store(STATE_CLOSED, crate::sync::Ordering::Release);
        self.declare_gone(GoneReason::ClosedHere);
        *self.stop.lock() = true;
        self.stop_cv.notify_all();
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        if let Peer::Child { child, .. } = &self.peer {
            let deadline = deadline_after(self.cfg.exit_grace);
            loop {
                let status = child.lock().try_wait();
                match status {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        self.kill_peer();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }
}

#[cfg(test)]
impl Link {
    /// Plays this side's process dying, for the other side's tests: the heartbeat stops and
    /// a hub connection's socket closes, without the segment saying so.
    pub(crate) fn drop_socket_for_tests(&self) {
        *self.stop.lock() = true;
        self.stop_cv.notify_all();
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        if let Peer::Socket { stream, .. } = &self.peer {
            let _ = stream.lock().shutdown(std::net::Shutdown::Both);
        }
    }

    /// Plays a peer writing junk on its hub socket after attaching.
    pub(crate) fn write_socket_for_tests(&self) {
        use std::io::Write;
        if let Peer::Socket { stream, .. } = &self.peer {
            let _ = (&*stream.lock()).write_all(b"junk");
        }
    }
}

/// Closes the link when the last of sender, receiver and control is dropped.
pub(crate) struct CloseOnDrop {
    pub(crate) link: Arc<Link>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.link.close();
    }
}

/// Kills a worker and its process group, and reaps it. Only while the worker is not reaped
/// yet is its pid (its group's id) still ours to signal.
pub(crate) fn kill_and_reap(pid: u32, child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        sys::process::kill_process_group(pid);
        let _ = child.kill();
    }
    let _ = child.wait();
}
