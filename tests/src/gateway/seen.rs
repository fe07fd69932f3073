//! What the fake gateway saw its clients ask for, so a test can assert it: real-time bar and
//! market data requests per symbol, their cancels and those of historical data, the market data
//! types requested, the symbols of contract details requests, the connections refused
//! during an outage, and the orders placed and cancelled.
//!
//! Invariants: entries are only ever added, in the order the gateway read them (per
//! connection; across connections in the order their threads recorded them); a snapshot
//! ([`Seen`]) is a copy, never updated after it is taken.

use std::collections::BTreeMap;

/// A snapshot of what the gateway saw (see [`Gateway::seen`](super::Gateway::seen)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Real-time bar subscriptions received, per symbol (refused ones included).
    pub realtime_requests: BTreeMap<String, u32>,
    /// Request ids of the real-time bar subscriptions received, per symbol, in order.
    pub realtime_ids: BTreeMap<String, Vec<i32>>,
    /// Market data (tick) subscriptions received, per symbol (refused ones included).
    pub market_data_requests: BTreeMap<String, u32>,
    /// Request ids of the cancelMktData messages received, in order.
    pub market_data_cancels: Vec<i32>,
    /// Request ids of the cancelRealTimeBars messages received, in order.
    pub realtime_cancels: Vec<i32>,
    /// Request ids of the cancelHistoricalData messages received, in order.
    pub history_cancels: Vec<i32>,
    /// Market data types of the reqMarketDataType messages received, in order (1 real-time,
    /// 2 frozen, 3 delayed, 4 delayed frozen).
    pub market_data_types: Vec<i32>,
    /// Symbols of the contract details requests received, in order.
    pub contract_details: Vec<String>,
    /// When each outage of the gateway ends (ended), Unix seconds, in order.
    pub outage_ends: Vec<i64>,
    /// Connections accepted and closed at once because the gateway was in an outage.
    pub refused_connections: u32,
    /// (order id, order reference) of every PlaceOrder message received, in order
    /// (modifications and refused ones included; "" for no reference).
    pub orders_placed: Vec<(i32, String)>,
    /// Order ids of the CancelOrder messages received, in order.
    pub order_cancels: Vec<i32>,
    /// GlobalCancel messages received.
    pub global_cancels: u32,
}

impl Seen {
    /// Real-time bar subscriptions received for `symbol`.
    pub fn realtime_requests_for(&self, symbol: &str) -> u32 {
        self.realtime_requests.get(symbol).copied().unwrap_or(0)
    }

    /// How often `symbol`'s `n`-th real-time bar subscription (0: the first) was cancelled.
    pub fn realtime_cancels_of(&self, symbol: &str, n: usize) -> usize {
        let Some(id) = self.realtime_ids.get(symbol).and_then(|ids| ids.get(n)) else {
            return 0;
        };
        self.realtime_cancels.iter().filter(|c| *c == id).count()
    }
}
