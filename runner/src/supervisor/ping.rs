//! The bridge's round trip as the supervisor measures it: pings on the current worker, for
//! the summary ([`Supervisor::ping_round_trips`]), and one from an onlooker that must never
//! start a worker ([`Supervisor::ping_if_alive`]).
//!
//! Invariants: each ping waits 5 s at most (`ping_if_alive`: as long as told); only
//! `ping_round_trips` may replace a dead worker, as any request of the run does.

use std::time::{Duration, Instant};

use bridge::protocol::{Reply, Request};
use bridge::Client;

use super::{ProtocolError, Supervisor, SupervisorError};

impl Supervisor {
    /// Measures `n` ping round trips on the current worker.
    pub fn ping_round_trips(&self, n: usize) -> Result<Vec<Duration>, SupervisorError> {
        let (_, client) = self.client()?;
        Self::pings(&client, n)
    }

    /// One ping round trip on the current worker if it lives, waiting `timeout` at most; a
    /// worker gone is [`SupervisorError::Stopped`], never a reason to start another (an
    /// onlooker such as the dashboard must not drive replacements).
    pub fn ping_if_alive(&self, timeout: Duration) -> Result<Duration, SupervisorError> {
        let client = {
            let st = self.state.lock();
            match &st.client {
                Some(c) if !c.control().is_gone() && !st.life.is_shut_down() => c.clone(),
                _ => return Err(SupervisorError::Stopped),
            }
        };
        let start = Instant::now();
        match client.request(
            Request::Ping {
                payload: Vec::new(),
            },
            timeout,
        ) {
            Ok(Reply::Pong { .. }) => Ok(start.elapsed()),
            Ok(other) => Err(SupervisorError::Protocol(ProtocolError::unexpected(
                other, "ping",
            ))),
            Err(e) => Err(SupervisorError::Request(e)),
        }
    }

    fn pings(client: &Client, n: usize) -> Result<Vec<Duration>, SupervisorError> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let start = Instant::now();
            let payload = (i as u64).to_le_bytes().to_vec();
            match client.request(Request::Ping { payload }, Duration::from_secs(5)) {
                Ok(Reply::Pong { .. }) => out.push(start.elapsed()),
                Ok(other) => {
                    return Err(SupervisorError::Protocol(ProtocolError::unexpected(
                        other, "ping",
                    )))
                }
                Err(e) => return Err(SupervisorError::Request(e)),
            }
        }
        Ok(out)
    }
}
