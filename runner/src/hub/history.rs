//! History requests of a hub's clients joined: identical requests under way at once are
//! sent to the hub's worker once, and each asker gets the same bars.
//!
//! Invariants: one fetch per distinct request under way; a request is under way from its
//! first asker's start to its end, so one asked after it ended is fetched again (the market
//! moved on), and its end is told to the others however the first asker's fetch ends; an
//! asker waits at most twice the fetch's own timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{Bar, ErrorKind, HistoryRequest, RemoteError};
use parking_lot::{Condvar, Mutex};

use crate::supervisor::{Supervisor, SupervisorError};

/// One fetch under way, and its outcome once there.
#[derive(Debug, Default)]
struct Shared {
    outcome: Mutex<Option<Result<Arc<Vec<Bar>>, RemoteError>>>,
    done: Condvar,
}

/// History requests under way, by what they ask.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    under_way: Mutex<HashMap<HistoryRequest, Arc<Shared>>>,
}

impl Coalescer {
    /// The bars `request` asks for: fetched through `sup` by the first asker (within
    /// `timeout`, its error told by `told`), waited for by the others; and whether this asker
    /// was one of the others.
    pub(crate) fn fetch(
        &self,
        sup: &Supervisor,
        request: &HistoryRequest,
        timeout: Duration,
        told: impl Fn(SupervisorError) -> RemoteError,
    ) -> (Result<Arc<Vec<Bar>>, RemoteError>, bool) {
        let (shared, first) = {
            let mut under_way = self.under_way.lock();
            match under_way.get(request) {
                Some(s) => (s.clone(), false),
                None => {
                    let s = Arc::new(Shared::default());
                    under_way.insert(request.clone(), s.clone());
                    (s, true)
                }
            }
        };
        if first {
            let mut leader = Leader {
                coalescer: self,
                request,
                shared: &shared,
                outcome: None,
            };
            let outcome = sup.history(request, timeout).map(Arc::new).map_err(told);
            leader.outcome = Some(outcome.clone());
            return (outcome, false);
        }
        let mut outcome = shared.outcome.lock();
        // The first asker's fetch ends within its own timeout (a worker replaced meanwhile
        // starts it again): twice that is more than it can take.
        let deadline = std::time::Instant::now() + timeout * 2;
        while outcome.is_none() {
            if shared.done.wait_until(&mut outcome, deadline).timed_out() {
                break;
            }
        }
        let outcome = outcome.clone().unwrap_or_else(|| {
            Err(RemoteError {
                kind: ErrorKind::Timeout,
                message: "the same history request of another client did not end in time".into(),
            })
        });
        (outcome, true)
    }
}

/// The first asker of a request: when it ends, however it ends (a panic included), the
/// request is no longer under way and the others are told its outcome, or an error.
struct Leader<'a> {
    coalescer: &'a Coalescer,
    request: &'a HistoryRequest,
    shared: &'a Shared,
    outcome: Option<Result<Arc<Vec<Bar>>, RemoteError>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.coalescer.under_way.lock().remove(self.request);
        let outcome = self.outcome.take().unwrap_or_else(|| {
            Err(RemoteError {
                kind: ErrorKind::Internal,
                message: "the same history request of another client failed".into(),
            })
        });
        *self.shared.outcome.lock() = Some(outcome);
        self.shared.done.notify_all();
    }
}
