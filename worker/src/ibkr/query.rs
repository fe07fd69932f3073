//! Queries of the gateway that end by themselves (an end message): open and completed
//! orders, executions ([`collect`]), and how long any query may take ([`QUERY_WAIT`]).
//!
//! Invariants: a query answers within [`QUERY_WAIT`] or fails with a timeout naming what was
//! asked; notices on the way are skipped; an error ends it.

use std::time::Duration;

use bridge::protocol::{ErrorKind, RemoteError};
use ibapi::prelude::{StreamExt, SubscriptionItem};

use super::errors::classify;
use crate::backend::error;

/// How long a query (open orders, executions, positions, ...) may take.
pub(super) const QUERY_WAIT: Duration = Duration::from_secs(15);

/// Collects a stream that ends by itself (an end message), within [`QUERY_WAIT`].
pub(super) async fn collect<T, S>(
    open: impl std::future::Future<Output = Result<S, ibapi::Error>>,
    what: &str,
) -> Result<Vec<T>, RemoteError>
where
    S: StreamExt<Item = Result<SubscriptionItem<T>, ibapi::Error>> + Unpin,
{
    let mut sub = open.await.map_err(|e| classify(&e))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + QUERY_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(SubscriptionItem::Data(item)))) => out.push(item),
            Ok(Some(Ok(SubscriptionItem::Notice(_)))) => {}
            Ok(Some(Err(e))) => return Err(classify(&e)),
            Ok(None) => return Ok(out),
            Err(_) => {
                return Err(error(
                    ErrorKind::Timeout,
                    format!("{what} not received within {} s", QUERY_WAIT.as_secs()),
                ))
            }
        }
    }
}
