//! The threads a session's asynchronous calls wait on: a bridge request waits on one of
//! these, with the GIL released, and its answer is handed to the caller's event loop. They are
//! the session's own, so no other work can hold them up (asyncio's default executor is
//! shared with whatever else the program runs there, which is how the pipe-based design
//! starved).
//!
//! Invariants: at most [`MAX_THREADS`] threads, and a thread for each job under way while
//! fewer run (jobs submitted together run together); a job taken is run; a job refused is
//! given back to the caller, who answers for it; [`Pool::close`] waits, at most for its
//! deadline, until every job under way has finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

/// Threads per session: more than the requests a broker answers at once (IB paces history
/// requests well below this); a call beyond them waits for one to be free.
const MAX_THREADS: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Counts {
    threads: usize,
    /// Jobs submitted and not finished.
    busy: usize,
}

/// Why a job was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The pool is closed (its session is).
    Closed,
    /// No thread could be started.
    NoThread,
}

pub(crate) struct Pool {
    tx: Mutex<Option<Sender<Job>>>,
    rx: Receiver<Job>,
    counts: Arc<(Mutex<Counts>, Condvar)>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx: Mutex::new(Some(tx)),
            rx,
            counts: Arc::default(),
        }
    }

    /// Runs `job` on a thread of the pool; gives it back if the pool is closed or has no
    /// thread and cannot start one.
    pub(crate) fn submit<F: FnOnce() + Send + 'static>(&self, job: F) -> Result<(), Refused> {
        let guard = self.tx.lock();
        let Some(tx) = guard.as_ref() else {
            return Err(Refused::Closed);
        };
        let spawn = {
            let mut c = self.counts.0.lock();
            // A thread for every job under way, up to the limit: a slow request never holds
            // up another while threads can be had.
            let spawn = c.busy >= c.threads && c.threads < MAX_THREADS;
            if spawn {
                c.threads += 1;
            }
            spawn
        };
        if spawn {
            let rx = self.rx.clone();
            let counts = self.counts.clone();
            let started = std::thread::Builder::new()
                .name("ibbridge-request".into())
                .spawn(move || serve(rx, counts));
            if started.is_err() {
                let mut c = self.counts.0.lock();
                c.threads -= 1;
                if c.threads == 0 {
                    return Err(Refused::NoThread);
                }
            }
        }
        self.counts.0.lock().busy += 1;
        if tx.send(Box::new(job)).is_err() {
            // Only when the pool's receiver is gone, which it never is while `self` lives.
            self.counts.0.lock().busy -= 1;
            return Err(Refused::Closed);
        }
        Ok(())
    }

    /// No more jobs; waits up to `grace` for those under way to finish. Returns how many
    /// had not.
    pub(crate) fn close(&self, grace: Duration) -> usize {
        self.tx.lock().take();
        let deadline = Instant::now() + grace;
        let (lock, cv) = &*self.counts;
        let mut c = lock.lock();
        while c.busy > 0 {
            if cv.wait_until(&mut c, deadline).timed_out() {
                break;
            }
        }
        c.busy
    }
}

fn serve(rx: Receiver<Job>, counts: Arc<(Mutex<Counts>, Condvar)>) {
    loop {
        let Ok(job) = rx.recv() else {
            counts.0.lock().threads -= 1;
            return;
        };
        // A job that panics is done too (its caller hears of it through its own channel).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        let mut c = counts.0.lock();
        c.busy -= 1;
        if c.busy == 0 {
            counts.1.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_and_close_waits_for_them() {
        let pool = Pool::new();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..40 {
            let done = done.clone();
            pool.submit(move || {
                std::thread::sleep(Duration::from_millis(5));
                done.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        assert_eq!(pool.close(Duration::from_secs(10)), 0);
        assert_eq!(done.load(Ordering::SeqCst), 40);
        assert!(pool.counts.0.lock().threads <= MAX_THREADS);
        // After close a job is given back.
        assert_eq!(pool.submit(|| {}), Err(Refused::Closed));
    }

    #[test]
    fn a_slow_job_does_not_hold_up_the_next() {
        let pool = Pool::new();
        let (release, wait) = crossbeam_channel::bounded::<()>(0);
        pool.submit(move || {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        pool.submit(move || {
            let _ = tx.send(());
        })
        .unwrap();
        // The second runs while the first still waits.
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        drop(release);
        assert_eq!(pool.close(Duration::from_secs(10)), 0);
    }
}
