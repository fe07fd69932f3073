//! The hub's door as a remote client knocks on it: one request on
//! `ibbridge-rpc.<hub>.<client>`, its answers on an inbox of the request's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{ErrorKind, RemoteError, Reply, Request};
use futures_util::StreamExt;

use super::wire::{rpc_subject, INSTANCE, MSG_ID};
use crate::backend::error;

/// How long a request that found no hub waits before it is sent again.
const NO_HUB_AGAIN: Duration = Duration::from_millis(200);

/// A connection to the server, and the hub and client it speaks for.
pub(super) struct Door {
    pub(super) client: async_nats::Client,
    pub(super) hub: String,
    pub(super) client_name: String,
    pub(super) instance: String,
    pub(super) url: String,
    /// Answers that were not ours (undecodable), ignored.
    pub(super) not_ours: Arc<AtomicU64>,
}

impl Door {
    /// Sends `request` (with `msg_id` as its `Nats-Msg-Id`, if any) and hands each answer
    /// before the final one to `each` (which returns whether it wants more); the final
    /// answer, or the error. Each answer is awaited `wait` at most.
    pub(super) async fn ask(
        &self,
        request: Request,
        msg_id: Option<&str>,
        wait: Duration,
        each: &mut dyn FnMut(Reply) -> bool,
    ) -> Result<Reply, RemoteError> {
        let lost = |e: String| error(ErrorKind::NotConnected, format!("NATS: {e}"));
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| lost(e.to_string()))?;
        let payload = bridge::codec::encode(&request)
            .map_err(|e| error(ErrorKind::Internal, e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(INSTANCE, self.instance.as_str());
        if let Some(id) = msg_id {
            headers.insert(MSG_ID, id);
        }
        let subject = rpc_subject(&self.hub, &self.client_name);
        let send = || {
            self.client.publish_with_reply_and_headers(
                subject.clone(),
                inbox.clone(),
                headers.clone(),
                payload.clone().into(),
            )
        };
        send().await.map_err(|e| lost(e.to_string()))?;
        // No hub listening may be a hub whose own connection is being made again (the server
        // restarted): asked again until `wait` is over. A request is the same each time, an
        // order's with its reference: never a second order.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout(wait, answers.next()).await {
                Err(_) => {
                    return Err(error(
                        ErrorKind::Timeout,
                        format!("hub {} did not answer within {wait:?}", self.hub),
                    ))
                }
                Ok(None) => return Err(lost("the answers' subscription closed".into())),
                Ok(Some(m)) => m,
            };
            if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                if tokio::time::Instant::now() + NO_HUB_AGAIN < deadline {
                    tokio::time::sleep(NO_HUB_AGAIN).await;
                    send().await.map_err(|e| lost(e.to_string()))?;
                    continue;
                }
                return Err(error(
                    ErrorKind::NotConnected,
                    format!("no hub {} answers on NATS at {}", self.hub, self.url),
                ));
            }
            let reply: Reply = match bridge::codec::decode(&message.payload) {
                Ok(r) => r,
                Err(e) => {
                    self.not_ours.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("an answer that is not ours, ignored: {e}");
                    continue;
                }
            };
            if reply.is_final() {
                return match reply {
                    Reply::Error(e) => Err(e),
                    other => Ok(other),
                };
            }
            if !each(reply) {
                return Err(error(ErrorKind::Internal, "the runner stopped listening"));
            }
        }
    }
}
