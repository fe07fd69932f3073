//! Sleeping on a 32-bit word of shared memory until it changes, and waking the sleepers: the
//! doorbell's system half ([`crate::doorbell`] decides when to sleep and when to wake).
//!
//! Invariants, on every platform and mechanism: [`wait`] returns at once if `*word !=
//! expected`, else sleeps until [`wake_all`] is called on the word, `timeout` passes, or for
//! no reason (the caller re-checks its condition); never longer than `timeout`. [`wake_all`]
//! wakes every sleeper on the word, in any process mapping it. The word lives in memory shared
//! between processes, so only the shared (not process-private) forms of the calls are used.
//!
//! - Linux: `futex` (`FUTEX_WAIT` with a relative timeout, `FUTEX_WAKE`).
//! - macOS 14.4 and newer: `os_sync_wait_on_address_with_timeout` and
//!   `os_sync_wake_by_address_all`, both with their `SHARED` flag. They are looked up at run
//!   time, so that one build also starts on older releases (a direct reference would stop the
//!   program at load time there).
//! - macOS before 14.4, any platform with `IBBRIDGE_DOORBELL=poll` in the environment, or a
//!   system that refuses its call (then from the first refusal on, with a warning): polling.
//!   The sleeper re-reads the word after sleeps growing from [`POLL_FIRST`] to [`POLL_MAX`];
//!   changing the word is the wake. Waking still goes through the system's call where there
//!   is one, so a peer that sleeps in it is woken whatever this process chose. It adds up to
//!   [`POLL_MAX`] of latency to a message that finds its reader asleep, and costs an idle
//!   sleeper about a thousand short wakeups a second. macOS's older address-wait calls
//!   (`__ulock_wait`) are private interfaces and are not used.

use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sync::{AtomicU32, Ordering};

/// The environment variable that forces the polling mechanism (`poll`).
pub(crate) const ENV_MECHANISM: &str = "IBBRIDGE_DOORBELL";

/// First sleep of a polling wait.
pub(crate) const POLL_FIRST: Duration = Duration::from_micros(50);
/// Longest sleep of a polling wait between two looks at the word.
pub(crate) const POLL_MAX: Duration = Duration::from_millis(1);

/// Set once the system refused its address wait in this process (a seccomp filter without
/// futex, a kernel refusing the shared flag): from then on this process polls.
static NATIVE_REFUSED: AtomicBool = AtomicBool::new(false);

/// The system refused its address wait outright.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) std::io::Error);

/// What a native wait call came to: `Ok` for every return the caller expects (woken, timed
/// out, interrupted, the word already changed), [`Refused`] when the call cannot be used.
type Waited = Result<(), Refused>;

/// The outcome of the native wait call that just returned, read from `errno` at once:
/// [`Refused`] if it `failed` with one of the `refused` error codes, else a return the caller
/// expects.
fn waited(failed: bool, refused: &[i32]) -> Waited {
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(code) if failed && refused.contains(&code) => Err(Refused(err)),
        _ => Ok(()),
    }
}

/// How this process sleeps and wakes.
///
/// Waking always uses the system's call where there is one, whatever this process sleeps by:
/// a peer that sleeps in it (another environment, another choice) is woken all the same; the
/// call is made only when a sleeper announced itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mechanism {
    /// The system's address wait (futex, `os_sync`), if it has one.
    native: Option<native::Calls>,
    /// Whether this process sleeps by polling.
    poll: bool,
}

impl Mechanism {
    /// The mechanism of this process, chosen once: polling if the environment asks for it,
    /// the system has no shared address wait, or it refused one; the system's otherwise.
    pub(crate) fn current() -> Mechanism {
        static CHOSEN: OnceLock<Mechanism> = OnceLock::new();
        let chosen = *CHOSEN.get_or_init(|| {
            let forced = std::env::var(ENV_MECHANISM).is_ok_and(|v| v == "poll");
            let native = native::Calls::find();
            Mechanism {
                native,
                poll: forced || native.is_none(),
            }
        });
        Mechanism {
            poll: chosen.poll || NATIVE_REFUSED.load(std::sync::atomic::Ordering::Relaxed),
            ..chosen
        }
    }

    /// The system's mechanism, if it has one.
    pub(crate) fn native() -> Option<Mechanism> {
        native::Calls::find().map(|calls| Mechanism {
            native: Some(calls),
            poll: false,
        })
    }

    /// Polling, waking through the system's call where there is one.
    #[cfg(test)]
    pub(crate) fn polling() -> Mechanism {
        Mechanism {
            native: native::Calls::find(),
            poll: true,
        }
    }

    /// Its name, for the log and the benchmarks: `futex`, `os_sync` or `poll`.
    pub(crate) fn name(self) -> &'static str {
        match (self.poll, self.native) {
            (false, Some(_)) => native::NAME,
            _ => "poll",
        }
    }

    /// See [`wait`].
    pub(crate) fn wait(self, word: &AtomicU32, expected: u32, timeout: Duration) {
        if let (false, Some(calls)) = (self.poll, self.native) {
            match calls.wait(word, expected, timeout) {
                Ok(()) => return,
                Err(Refused(e)) => {
                    if !NATIVE_REFUSED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(
                            target: "bridge",
                            "the system refused its shared address wait ({e}); the doorbells poll from now on"
                        );
                    }
                }
            }
        }
        poll_wait(word, expected, timeout)
    }

    /// See [`wake_all`].
    pub(crate) fn wake_all(self, word: &AtomicU32) {
        if let Some(calls) = self.native {
            calls.wake_all(word)
        }
    }
}

/// Sleeps while `*word == expected`, for at most `timeout`; see the module's contract.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    Mechanism::current().wait(word, expected, timeout)
}

/// Wakes every sleeper on `word`, in any process; see the module's contract.
pub(crate) fn wake_all(word: &AtomicU32) {
    Mechanism::current().wake_all(word)
}

/// The polling wait: portable, used where no shared address wait exists.
fn poll_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let start = Instant::now();
    let mut step = POLL_FIRST;
    while word.load(Ordering::Acquire) == expected {
        let Some(left) = timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return;
        };
        std::thread::sleep(step.min(left));
        step = (step * 2).min(POLL_MAX);
    }
}

#[cfg(target_os = "linux")]
mod native {
    use std::time::Duration;

    use super::{waited, Waited};
    use crate::sync::AtomicU32;

    pub(super) const NAME: &str = "futex";

    /// Linux always has the futex: nothing to look up.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Calls;

    impl Calls {
        pub(super) fn find() -> Option<Calls> {
            Some(Calls)
        }

        pub(super) fn wait(self, word: &AtomicU32, expected: u32, timeout: Duration) -> Waited {
            let ts = libc::timespec {
                tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            // SAFETY: `word` is a live, aligned u32 for the whole call (we hold a reference to
            // it); FUTEX_WAIT only reads it atomically, and `ts` is a valid timespec on our
            // stack. Not FUTEX_PRIVATE: the word is shared with another process.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    word.as_ptr(),
                    libc::FUTEX_WAIT,
                    expected,
                    &ts as *const libc::timespec,
                    std::ptr::null::<u32>(),
                    0u32,
                )
            };
            // EAGAIN (the word differs), ETIMEDOUT and EINTR are returns the caller expects.
            waited(rc != 0, &[libc::ENOSYS, libc::EPERM, libc::EINVAL])
        }

        pub(super) fn wake_all(self, word: &AtomicU32) {
            // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access user memory
            // beyond using its address as the key.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    word.as_ptr(),
                    libc::FUTEX_WAKE,
                    i32::MAX,
                    std::ptr::null::<libc::timespec>(),
                    std::ptr::null::<u32>(),
                    0u32,
                );
            }
        }
    }
}

#[cfg(target_os = "macos")]
mod native {
    use std::ffi::{c_int, c_void, CStr};
    use std::time::Duration;

    use super::{waited, Waited};
    use crate::sync::AtomicU32;

    pub(super) const NAME: &str = "os_sync";

    /// `os_sync_wait_on_address_with_timeout` (macOS 14.4+).
    type WaitFn = unsafe extern "C" fn(*mut c_void, u64, libc::size_t, u32, u32, u64) -> c_int;
    /// `os_sync_wake_by_address_all` (macOS 14.4+).
    type WakeFn = unsafe extern "C" fn(*mut c_void, libc::size_t, u32) -> c_int;

    /// The two calls, found in the running system.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Calls {
        wait: WaitFn,
        wake: WakeFn,
    }

    fn lookup(name: &CStr) -> *mut c_void {
        // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches every loaded image and
        // returns null when the symbol is absent.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
    }

    impl Calls {
        pub(super) fn find() -> Option<Calls> {
            let wait = lookup(c"os_sync_wait_on_address_with_timeout");
            let wake = lookup(c"os_sync_wake_by_address_all");
            if wait.is_null() || wake.is_null() {
                return None;
            }
            // SAFETY: both symbols are the functions <os/os_sync_wait_on_address.h> declares,
            // with exactly these C signatures; non-null addresses of loaded code.
            Some(unsafe {
                Calls {
                    wait: std::mem::transmute::<*mut c_void, WaitFn>(wait),
                    wake: std::mem::transmute::<*mut c_void, WakeFn>(wake),
                }
            })
        }

        pub(super) fn wait(self, word: &AtomicU32, expected: u32, timeout: Duration) -> Waited {
            // A zero timeout is invalid for the call; it would return at once anyway.
            let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            if ns == 0 {
                return Ok(());
            }
            // SAFETY: `word` is a live u32, aligned to its size, for the whole call; the call
            // only reads it atomically.
            let rc = unsafe {
                (self.wait)(
                    word.as_ptr().cast(),
                    u64::from(expected),
                    4,
                    libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                    libc::OS_CLOCK_MACH_ABSOLUTE_TIME,
                    ns,
                )
            };
            // A timeout, an interruption or a changed word are returns the caller expects.
            waited(
                rc < 0,
                &[libc::EINVAL, libc::ENOTSUP, libc::ENOSYS, libc::EPERM],
            )
        }

        pub(super) fn wake_all(self, word: &AtomicU32) {
            // SAFETY: `word` is a live, aligned u32; the call uses its address as a key. No
            // waiter (ENOENT) is not an error.
            unsafe {
                (self.wake)(
                    word.as_ptr().cast(),
                    4,
                    libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Both mechanisms this platform has keep the contract: a changed word returns at once,
    /// an unchanged one sleeps (a wait that returned at once every time would make every idle
    /// reader spin) but no longer than the timeout, a change plus wake ends the sleep.
    fn keeps_the_contract(m: Mechanism) {
        let word = Arc::new(AtomicU32::new(7));
        let start = Instant::now();
        m.wait(&word, 6, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5), "{}", m.name());

        let slept: Vec<Duration> = (0..5)
            .map(|_| {
                let start = Instant::now();
                m.wait(&word, 7, Duration::from_millis(30));
                start.elapsed()
            })
            .collect();
        assert!(
            slept.iter().any(|d| *d >= Duration::from_millis(15)),
            "{}: {slept:?}",
            m.name()
        );
        assert!(
            slept.iter().all(|d| *d < Duration::from_secs(5)),
            "{}: {slept:?}",
            m.name()
        );

        let waker = {
            let word = word.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                word.store(8, Ordering::Release);
                m.wake_all(&word);
            })
        };
        // Sleeps of at most 10 s each until the word changed: a lost wake would take 10 s
        // per round, and the changed word ends the loop.
        let start = Instant::now();
        while word.load(Ordering::Acquire) == 7 {
            m.wait(&word, 7, Duration::from_secs(10));
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{}", m.name());
        waker.join().unwrap();
    }

    #[test]
    fn the_native_mechanism_keeps_the_contract() {
        // Linux always has it; macOS from 14.4.
        match Mechanism::native() {
            Some(m) => keeps_the_contract(m),
            None if cfg!(target_os = "macos") => {}
            None => panic!("no futex on Linux"),
        }
    }

    #[test]
    fn the_polling_mechanism_keeps_the_contract() {
        keeps_the_contract(Mechanism::polling());
        // And one that wakes nothing: the changed word alone ends its sleep.
        keeps_the_contract(Mechanism {
            native: None,
            poll: true,
        });
    }

    /// A sleeper in the system's call is woken by a process that polls (another environment):
    /// waking goes through the system's call whenever there is one.
    #[test]
    fn a_polling_waker_wakes_a_native_sleeper() {
        let Some(native) = Mechanism::native() else {
            return;
        };
        let word = Arc::new(AtomicU32::new(0));
        let waker = {
            let word = word.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                word.store(1, Ordering::Release);
                Mechanism::polling().wake_all(&word);
            })
        };
        let start = Instant::now();
        // One sleep of up to 10 s: only the wake can end it early.
        native.wait(&word, 0, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5), "not woken");
        waker.join().unwrap();
    }

    /// A polling sleeper sees a change within its longest sleep, without any wake call.
    #[test]
    fn a_polling_sleeper_sees_a_change_without_a_wake() {
        let word = Arc::new(AtomicU32::new(0));
        let changer = {
            let word = word.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                word.store(1, Ordering::Release);
            })
        };
        let start = Instant::now();
        while word.load(Ordering::Acquire) == 0 {
            poll_wait(&word, 0, Duration::from_secs(10));
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        changer.join().unwrap();
    }
}
