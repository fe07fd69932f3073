//! Wakeups on futex words that live in the shared segment.
//!
//! A [`Bell`] belongs to one condition of one ring ("data available" or "space available").
//! The side that waits spins briefly, then yields, then announces itself in `waiting` and
//! sleeps on `seq`. The side that makes the condition true publishes its index and then calls
//! [`Bell::ring`], which issues a wake only when somebody announced that it sleeps. Under load
//! the waiter never reaches the sleep, so there are almost no syscalls; when idle, nothing spins.
//!
//! The lost-wakeup window is closed Dekker-style by a `SeqCst` fence on both sides:
//!
//! ```text
//! waiter                                   ringer
//! token = seq                              publish index (Release)
//! waiting += 1                             fence(SeqCst)
//! fence(SeqCst)                            if waiting > 0 { seq += 1; wake(seq) }
//! if condition { return }                 
//! futex_wait(seq, token)
//! ```
//!
//! Invariants: no wakeup is lost: either the waiter's re-check sees the published index, or the ringer sees `waiting > 0`;
//! then `seq` differs from `token`, so the futex wait returns at once or is woken.

#![forbid(unsafe_code)]

#[cfg(not(loom))]
use std::time::{Duration, Instant};

#[cfg(not(loom))]
use crate::sync::spin_loop;
use crate::sync::{fence, AtomicU32, Ordering};

/// Longest single sleep, so a waiter re-checks its abort condition at least this often even
/// if a wake were somehow missed (a dead peer cannot ring).
#[cfg(not(loom))]
const MAX_SLEEP: Duration = Duration::from_millis(250);

/// How long a waiter spins before yielding, and yields before sleeping.
#[cfg(not(loom))]
const SPIN_FOR: Duration = Duration::from_micros(30);
#[cfg(not(loom))]
const YIELD_FOR: Duration = Duration::from_micros(100);

/// One wakeup channel. `#[repr(C)]` with plain atomics so that it can live in shared memory;
/// all-zero bytes are its initial state.
#[repr(C)]
pub(crate) struct Bell {
    /// Number of threads announced as about to sleep (or sleeping) on `seq`.
    waiting: AtomicU32,
    /// The futex word: bumped by every wake, so a sleeper whose token is stale returns.
    seq: AtomicU32,
    /// loom has no futex: a mutex and condvar model its check-and-sleep atomicity.
    #[cfg(loom)]
    model: loom::sync::Mutex<()>,
    #[cfg(loom)]
    cv: loom::sync::Condvar,
}

/// What ended a [`Bell::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The condition became true.
    Ready,
    /// The deadline passed first.
    TimedOut,
}

impl Bell {
    #[cfg(any(loom, test))]
    pub(crate) fn new() -> Self {
        Bell {
            waiting: AtomicU32::new(0),
            seq: AtomicU32::new(0),
            #[cfg(loom)]
            model: loom::sync::Mutex::new(()),
            #[cfg(loom)]
            cv: loom::sync::Condvar::new(),
        }
    }

    /// Called after publishing: wakes sleepers if any announced themselves. Returns whether a
    /// wake was issued (the caller counts them).
    #[inline]
    pub(crate) fn ring(&self) -> bool {
        // SYNC POINT (Dekker, ringer half): orders the caller's index store before the load of
        // `waiting`; pairs with the fence in `wait`.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.wake_all();
        true
    }

    /// Wakes every sleeper unconditionally (used when a peer is declared gone).
    pub(crate) fn wake_all(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        self.futex_wake();
    }

    /// Waits until `ready()` is true or `deadline` passes. `ready` is re-evaluated after every
    /// spin, yield and wake, so it may also test abort conditions (a peer declared dead).
    #[cfg(not(loom))]
    pub(crate) fn wait(&self, ready: impl FnMut() -> bool, deadline: Instant) -> Wait {
        self.wait_counted(ready, deadline, &mut 0)
    }

    /// [`wait`](Self::wait), adding to `sleeps` each time it goes to sleep on the word (each
    /// such sleep ends with a wake from the other side, a timeout, or at once if the word had
    /// already moved).
    #[cfg(not(loom))]
    pub(crate) fn wait_counted(
        &self,
        ready: impl FnMut() -> bool,
        deadline: Instant,
        sleeps: &mut u64,
    ) -> Wait {
        self.wait_counted_as(ready, deadline, sleeps, true)
    }

    /// [`wait_counted`](Self::wait_counted); with `spin` false it sleeps at once, without the
    /// spin and yield phases: for a waiter that expects nothing soon (a live bar a second
    /// away) and would only take the CPU from threads that have work.
    #[cfg(not(loom))]
    pub(crate) fn wait_counted_as(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Instant,
        sleeps: &mut u64,
        spin: bool,
    ) -> Wait {
        if ready() {
            return Wait::Ready;
        }
        if !spin {
            return self.sleep_until(ready, deadline, sleeps);
        }
        let start = Instant::now();
        let mut i = 0u32;
        loop {
            spin_loop();
            if ready() {
                return Wait::Ready;
            }
            i = i.wrapping_add(1);
            if i.is_multiple_of(64) && start.elapsed() >= SPIN_FOR {
                break;
            }
        }
        while start.elapsed() < SPIN_FOR + YIELD_FOR {
            std::thread::yield_now();
            if ready() {
                return Wait::Ready;
            }
        }
        self.sleep_until(ready, deadline, sleeps)
    }

    /// Sleeps on the word (at most [`MAX_SLEEP`] at a time) until `ready()` or `deadline`.
    #[cfg(not(loom))]
    fn sleep_until(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Instant,
        sleeps: &mut u64,
    ) -> Wait {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return if ready() { Wait::Ready } else { Wait::TimedOut };
            }
            match self.sleep_once(&mut ready, (deadline - now).min(MAX_SLEEP), sleeps) {
                Wait::Ready => return Wait::Ready,
                Wait::TimedOut => continue,
            }
        }
    }

    /// The loom form of [`wait`](Self::wait): no time, no spinning, sleeps until woken. A lost
    /// wakeup shows up as a deadlock, which loom reports.
    #[cfg(loom)]
    pub(crate) fn wait(&self, mut ready: impl FnMut() -> bool) -> Wait {
        loop {
            if ready() {
                return Wait::Ready;
            }
            if let Wait::Ready = self.sleep_once(&mut ready, ()) {
                return Wait::Ready;
            }
        }
    }

    #[cfg(not(loom))]
    fn sleep_once(
        &self,
        ready: &mut impl FnMut() -> bool,
        timeout: Duration,
        sleeps: &mut u64,
    ) -> Wait {
        let token = self.announce();
        if ready() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Wait::Ready;
        }
        *sleeps += 1;
        crate::sys::wait::wait(&self.seq, token, timeout);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if ready() {
            Wait::Ready
        } else {
            Wait::TimedOut
        }
    }

    #[cfg(loom)]
    fn sleep_once(&self, ready: &mut impl FnMut() -> bool, _timeout: ()) -> Wait {
        let token = self.announce();
        if ready() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Wait::Ready;
        }
        {
            let mut guard = self.model.lock().unwrap_or_else(|e| e.into_inner());
            while self.seq.load(Ordering::Acquire) == token {
                guard = self.cv.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        }
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if ready() {
            Wait::Ready
        } else {
            Wait::TimedOut
        }
    }

    /// Announces a sleeper and returns the futex token to sleep on.
    #[inline]
    fn announce(&self) -> u32 {
        let token = self.seq.load(Ordering::Acquire);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        // SYNC POINT (Dekker, waiter half): orders the `waiting` increment before the caller's
        // re-check of the condition; pairs with the fence in `ring`.
        fence(Ordering::SeqCst);
        token
    }

    #[cfg(not(loom))]
    fn futex_wake(&self) {
        crate::sys::wait::wake_all(&self.seq);
    }

    #[cfg(loom)]
    fn futex_wake(&self) {
        let _guard = self.model.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn wait_times_out_when_nobody_rings() {
        let bell = Bell::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(bell.wait(|| false, deadline), Wait::TimedOut);
        assert!(Instant::now() >= deadline);
        assert_eq!(bell.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ring_without_sleepers_issues_no_wake() {
        let bell = Bell::new();
        assert!(!bell.ring());
        assert_eq!(bell.seq.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_sleeper_is_woken_by_ring() {
        let bell = Arc::new(Bell::new());
        let flag = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (bell, flag) = (bell.clone(), flag.clone());
            std::thread::spawn(move || {
                bell.wait(
                    || flag.load(Ordering::Acquire),
                    Instant::now() + Duration::from_secs(30),
                )
            })
        };
        // Let the waiter get past its spin and yield phases and go to sleep.
        while bell.waiting.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        flag.store(true, Ordering::Release);
        // The waiter may already have seen the flag in its re-check; either way it must end.
        bell.ring();
        assert_eq!(waiter.join().unwrap(), Wait::Ready);
    }
}
