//! Helpers shared by the tests of the fake gateway against the real `ibapi` client
//! (`gateway.rs`, `gateway_orders.rs`): the gateway started for a test, a runtime to drive
//! `ibapi` on, and waiting without blocking that runtime.
//!
//! Invariant: every wait is bounded by [`PROMPTLY`]; a wait that runs out fails the test or
//! answers `false`, never hangs it.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use tests::gateway::{Behaviour, Gateway};

/// How long a test waits for anything the gateway or the client should do promptly.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(10);

/// The fake gateway on a free loopback port, behaving as `behaviour` says.
pub(crate) fn gateway(behaviour: Behaviour) -> Gateway {
    Gateway::start(behaviour).expect("the fake gateway starts")
}

/// A single-threaded runtime with timers and I/O, for `ibapi`'s async client.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime can be built")
}

/// Whether `done` holds within [`PROMPTLY`], checked every 10 ms without blocking the runtime
/// (ibapi's tasks run meanwhile).
pub(crate) async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Waits up to [`PROMPTLY`] for `client` to be connected again; fails the test with `what`
/// when it is not, or with the error `ibapi` gave.
pub(crate) async fn reconnected(client: &ibapi::Client, what: &str) {
    tokio::time::timeout(PROMPTLY, client.wait_connected())
        .await
        .expect(what)
        .expect("no error while reconnecting");
}
