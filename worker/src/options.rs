//! What the runner tells a worker it starts.

use std::time::Duration;

use bridge::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

/// Environment variable carrying the encoded [`WorkerOptions`].
pub const OPTIONS_ENV: &str = "IBBRIDGE_WORKER_OPTIONS";

/// Everything a worker needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerOptions {
    /// The build id the runner presents; the worker presents its own and they must match.
    pub build_id: String,
    /// Which broker to talk to.
    pub backend: BackendOptions,
    /// How often the liveness thread beats and probes (ms).
    pub heartbeat_ms: u64,
    /// A runner silent this long is declared hung (ms).
    pub hang_timeout_ms: u64,
    /// How long `connect` may wait for the broker to be ready (ms).
    pub handshake_timeout_ms: u64,
    /// Threads serving requests concurrently.
    pub handler_threads: usize,
    /// How many workers the runner started before this one (0 for the first). Injected
    /// crash and hang faults apply to the first worker only.
    pub generation: u32,
    /// Most verbose level forwarded to the runner: 0 error … 4 trace.
    pub log_level: u8,
}

impl WorkerOptions {
    /// Options with defaults around a backend.
    pub fn new(build_id: String, backend: BackendOptions) -> Self {
        WorkerOptions {
            build_id,
            backend,
            heartbeat_ms: 100,
            hang_timeout_ms: 3000,
            handshake_timeout_ms: 10_000,
            handler_threads: 16,
            generation: 0,
            log_level: 2,
        }
    }

    /// Hex text of the bincode encoding, for the environment.
    pub fn encode(&self) -> Result<String, CodecError> {
        let bytes = codec::encode(self)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Reads [`encode`](Self::encode)'s output back.
    pub fn decode(text: &str) -> Result<Self, CodecError> {
        let text = text.trim();
        if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CodecError::Decode("options are not hex text".into()));
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or(0))
            .collect();
        codec::decode(&bytes)
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// The broker behind the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BackendOptions {
    /// The built-in simulated market.
    Sim(SimOptions),
    /// Interactive Brokers TWS or IB Gateway.
    Ibkr(IbkrOptions),
}

/// Settings of the simulated market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimOptions {
    /// Seed of the price paths: same seed, same prices.
    pub seed: u64,
    /// Simulated seconds per real second for real-time bars.
    pub speed: f64,
    /// The market clock (Unix seconds) at wall-clock time `anchor_ms`; `None` is the wall
    /// clock.
    pub start: Option<i64>,
    /// Wall-clock Unix milliseconds at which the market clock read `start` (`None`: when this
    /// worker started). The runner sets it once, so every worker it starts, first or
    /// replacement, continues the same market clock.
    pub anchor_ms: Option<u64>,
    /// Injected faults (for tests).
    pub faults: SimFaults,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 42,
            speed: 1.0,
            start: None,
            anchor_ms: None,
            faults: SimFaults::default(),
        }
    }
}

/// Faults the simulated market can inject, for tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimFaults {
    /// Managed accounts arrive this long after the connection starts (ms).
    pub accounts_delay_ms: u64,
    /// Managed accounts never arrive.
    pub accounts_never: bool,
    /// Every request but `ping` is answered this much later (ms).
    pub reply_delay_ms: u64,
    /// The first worker kills itself (SIGKILL) after sending this many history batches.
    pub crash_after_batches: Option<u64>,
    /// The first worker stops itself (SIGSTOP) after sending this many history batches.
    pub hang_after_batches: Option<u64>,
    /// Symbols for which the market has no data.
    pub no_data: Vec<String>,
}

/// Settings of the Interactive Brokers connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IbkrOptions {
    /// `host:port` of TWS or IB Gateway.
    pub gateway: String,
    /// The API client id.
    pub client_id: i32,
    /// Client ids tried, from `client_id` up, while the gateway says one is in use.
    pub client_id_attempts: u32,
    /// Contracts that are not SMART-routed USD stocks.
    pub contracts: Vec<ContractSpec>,
}

/// How a symbol is traded, where it is not a SMART-routed USD stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractSpec {
    pub symbol: String,
    /// Routing exchange, e.g. `SMART`.
    pub exchange: String,
    /// Currency, e.g. `CAD`.
    pub currency: String,
    /// Primary listing exchange, to disambiguate, e.g. `TSE`.
    pub primary_exchange: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_the_environment_form() {
        let mut o = WorkerOptions::new("b".into(), BackendOptions::Sim(SimOptions::default()));
        o.generation = 3;
        let text = o.encode().unwrap();
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(WorkerOptions::decode(&text).unwrap(), o);
        assert!(WorkerOptions::decode("zz").is_err());
        assert!(WorkerOptions::decode("abc").is_err());
    }
}
