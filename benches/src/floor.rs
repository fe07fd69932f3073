//! The `floor` transport: the harness's two pinned processes exchanging over raw shared words
//! (`bridge::floor`), spinning, with no ring, codec, protocol or doorbell. `rtt_hot` is an
//! atomic ping-pong on two words a cache line pair apart; `stream` moves fixed 64-byte slots
//! (eight words each) through a ring of 1,024 with a head and a tail word. What this machine
//! allows, measured in the same run as the bridge.

use std::hint::spin_loop;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bridge::floor::Floor;

/// The environment variable that names the region to the peer.
pub const ENV: &str = "BRIDGE_BENCH_FLOOR";

// Word indexes: every shared word on its own 128-byte line pair.
const REQUEST: usize = 0;
const ANSWER: usize = 16;
const HEAD: usize = 32;
const TAIL: usize = 48;
/// 1 + the number of slots sent, once the producer is done.
const DONE: usize = 64;
const SLOTS_AT: usize = 80;
const SLOT_WORDS: usize = 8;
const SLOTS: u64 = 1024;
const WORDS: usize = SLOTS_AT + SLOTS as usize * SLOT_WORDS;

/// The longest any spin may last: a dead peer ends the benchmark instead of hanging it.
const GIVE_UP: Duration = Duration::from_secs(120);

/// Spins until `ready()`; panics after [`GIVE_UP`], or as soon as `gone()` says the peer is
/// gone (looked at every 2^16 turns).
fn spin_until(mut ready: impl FnMut() -> bool, mut gone: impl FnMut() -> bool) {
    let mut i = 0u32;
    let start = Instant::now();
    while !ready() {
        spin_loop();
        i = i.wrapping_add(1);
        if i.is_multiple_of(1 << 16) {
            assert!(!gone(), "floor peer gone");
            assert!(
                start.elapsed() < GIVE_UP,
                "floor peer silent for {GIVE_UP:?}"
            );
        }
    }
}

/// The peer side never gives up early: its parent's end of the run is the signal.
fn never() -> bool {
    false
}

/// The parent's side of a floor connection.
pub struct FloorConn {
    child: Child,
    floor: Floor,
    seq: u64,
}

impl FloorConn {
    /// Makes the region and starts `cmd` (the harness's peer) on it.
    pub fn start(mut cmd: Command) -> FloorConn {
        let floor = Floor::create(WORDS).unwrap();
        let child = cmd.env(ENV, floor.name()).spawn().unwrap();
        FloorConn {
            child,
            floor,
            seq: 0,
        }
    }

    fn w(&self, i: usize) -> &AtomicU64 {
        &self.floor.words()[i]
    }

    /// The peer's pid.
    pub fn peer_pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the peer process has ended.
    fn peer_gone(child: &mut Child) -> bool {
        !matches!(child.try_wait(), Ok(None))
    }

    /// One ping-pong.
    pub fn round_trip(&mut self) {
        self.seq += 1;
        let seq = self.seq;
        let words = self.floor.words();
        words[REQUEST].store(seq, Ordering::Release);
        let child = &mut self.child;
        spin_until(
            || words[ANSWER].load(Ordering::Acquire) == seq,
            || Self::peer_gone(child),
        );
    }

    /// Takes slots until the producer's end; returns how many, and the time from the first.
    pub fn consume(&mut self) -> (u64, Duration) {
        let words = self.floor.words();
        let mut tail = 0u64;
        let mut first = None;
        let mut slot = [0u64; SLOT_WORDS];
        loop {
            let mut head = tail;
            let mut ended = false;
            let child = &mut self.child;
            spin_until(
                || {
                    head = words[HEAD].load(Ordering::Acquire);
                    let done = words[DONE].load(Ordering::Acquire);
                    ended = head == tail && done != 0 && done - 1 == tail;
                    head != tail || ended
                },
                || Self::peer_gone(child),
            );
            if ended {
                break;
            }
            first.get_or_insert_with(Instant::now);
            while tail < head {
                let at = SLOTS_AT + (tail % SLOTS) as usize * SLOT_WORDS;
                for (k, v) in slot.iter_mut().enumerate() {
                    *v = words[at + k].load(Ordering::Relaxed);
                }
                assert_eq!(slot[0], tail, "floor slot out of order");
                tail += 1;
            }
            words[TAIL].store(tail, Ordering::Release);
        }
        (tail, first.map(|f| f.elapsed()).unwrap_or_default())
    }

    /// Ends the peer and waits for it.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for FloorConn {
    /// Tells the peer to stop, then makes sure it has (also when the harness panics).
    fn drop(&mut self) {
        self.w(REQUEST).store(u64::MAX, Ordering::Release);
        let start = Instant::now();
        while !Self::peer_gone(&mut self.child) && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer's side: `echo` answers every ping until told to stop; `produce` sends slots for
/// `secs`, publishing them 256 at a time (as the bridge's producer batches), then waits to be
/// told to stop.
pub fn peer(mode: &str, secs: f64) -> Result<(), String> {
    let name = std::env::var(ENV).map_err(|e| e.to_string())?;
    let floor = Floor::open(&name).map_err(|e| e.to_string())?;
    let words = floor.words();
    match mode {
        "echo" => {
            let mut last = 0;
            loop {
                let mut seq = last;
                spin_until(
                    || {
                        seq = words[REQUEST].load(Ordering::Acquire);
                        seq != last
                    },
                    never,
                );
                if seq == u64::MAX {
                    return Ok(());
                }
                words[ANSWER].store(seq, Ordering::Release);
                last = seq;
            }
        }
        "produce" => {
            let until = Instant::now() + Duration::from_secs_f64(secs);
            let mut head = 0u64;
            let mut tail = 0u64;
            while Instant::now() < until {
                for _ in 0..256 {
                    if head - tail == SLOTS {
                        // Full: what is written so far goes out before waiting for room.
                        words[HEAD].store(head, Ordering::Release);
                        spin_until(
                            || {
                                tail = words[TAIL].load(Ordering::Acquire);
                                head - tail < SLOTS
                            },
                            never,
                        );
                    }
                    let at = SLOTS_AT + (head % SLOTS) as usize * SLOT_WORDS;
                    words[at].store(head, Ordering::Relaxed);
                    for k in 1..SLOT_WORDS {
                        words[at + k].store(0xA5A5_A5A5_A5A5_A5A5, Ordering::Relaxed);
                    }
                    head += 1;
                }
                words[HEAD].store(head, Ordering::Release);
            }
            words[DONE].store(head + 1, Ordering::Release);
            spin_until(|| words[REQUEST].load(Ordering::Acquire) == u64::MAX, never);
            Ok(())
        }
        other => Err(format!("unknown floor mode {other:?}")),
    }
}
