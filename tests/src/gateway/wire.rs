//! The wire protocol of TWS / IB Gateway, as much as the fake gateway speaks: framing,
//! message ids, error codes, the protobuf messages, and IB's text for bar sizes, durations
//! and times.
//!
//! Framing: every message is a 4-byte big-endian length and a body. The client opens with
//! `API\0` and a framed `v<min>..<max>`; the gateway answers with the framed text
//! `<server version>\0<yyyymmdd hh:mm:ss> <zone>\0` (no message id). Every later body is a
//! 4-byte big-endian message id and, for ids above 200, a protobuf message of type
//! `id - 200`. Message structs are written by hand with `prost` derive (no `protoc`), holding
//! only the fields the gateway reads or writes; unknown fields are skipped when decoding.
//!
//! Invariants: a frame read is at most 16 MiB (a larger length is an error, not an
//! allocation); every frame written carries its own length.

use std::io::{self, Read};
use std::net::TcpStream;

use prost::Message;

/// The server version announced (the newest `ibapi` 5.5 speaks).
pub const SERVER_VERSION: i32 = 226;
/// Offset of protobuf message ids.
pub const PROTOBUF: i32 = 200;

/// Incoming (to the client) message ids.
pub mod incoming {
    pub const TICK_PRICE: i32 = 1;
    pub const TICK_SIZE: i32 = 2;
    pub const ORDER_STATUS: i32 = 3;
    pub const ERROR: i32 = 4;
    pub const OPEN_ORDER: i32 = 5;
    pub const NEXT_VALID_ID: i32 = 9;
    pub const CONTRACT_DATA: i32 = 10;
    pub const EXECUTION_DATA: i32 = 11;
    pub const MANAGED_ACCOUNTS: i32 = 15;
    pub const HISTORICAL_DATA: i32 = 17;
    pub const CURRENT_TIME: i32 = 49;
    pub const REAL_TIME_BARS: i32 = 50;
    pub const CONTRACT_DATA_END: i32 = 52;
    pub const OPEN_ORDER_END: i32 = 53;
    pub const EXECUTION_DATA_END: i32 = 55;
    pub const MARKET_DATA_TYPE: i32 = 58;
    pub const COMMISSION_REPORT: i32 = 59;
    pub const POSITION: i32 = 61;
    pub const POSITION_END: i32 = 62;
    pub const ACCOUNT_SUMMARY: i32 = 63;
    pub const ACCOUNT_SUMMARY_END: i32 = 64;
    pub const COMPLETED_ORDER: i32 = 101;
    pub const COMPLETED_ORDERS_END: i32 = 102;
    pub const HISTORICAL_DATA_END: i32 = 108;
}

/// Outgoing (from the client) message ids.
pub mod outgoing {
    pub const REQUEST_MARKET_DATA: i32 = 1;
    pub const CANCEL_MARKET_DATA: i32 = 2;
    pub const PLACE_ORDER: i32 = 3;
    pub const CANCEL_ORDER: i32 = 4;
    pub const REQUEST_OPEN_ORDERS: i32 = 5;
    pub const REQUEST_EXECUTIONS: i32 = 7;
    pub const REQUEST_IDS: i32 = 8;
    pub const REQUEST_CONTRACT_DATA: i32 = 9;
    pub const REQUEST_AUTO_OPEN_ORDERS: i32 = 15;
    pub const REQUEST_ALL_OPEN_ORDERS: i32 = 16;
    pub const REQUEST_MANAGED_ACCOUNTS: i32 = 17;
    pub const REQUEST_HISTORICAL_DATA: i32 = 20;
    pub const CANCEL_HISTORICAL_DATA: i32 = 25;
    pub const REQUEST_CURRENT_TIME: i32 = 49;
    pub const REQUEST_REAL_TIME_BARS: i32 = 50;
    pub const CANCEL_REAL_TIME_BARS: i32 = 51;
    pub const REQUEST_GLOBAL_CANCEL: i32 = 58;
    pub const REQUEST_MARKET_DATA_TYPE: i32 = 59;
    pub const REQUEST_POSITIONS: i32 = 61;
    pub const REQUEST_ACCOUNT_SUMMARY: i32 = 62;
    pub const CANCEL_ACCOUNT_SUMMARY: i32 = 63;
    pub const CANCEL_POSITIONS: i32 = 64;
    pub const START_API: i32 = 71;
    pub const REQUEST_COMPLETED_ORDERS: i32 = 99;
}

/// Error codes the gateway sends.
pub mod codes {
    pub const DUPLICATE_ORDER_ID: i32 = 103;
    pub const CANNOT_MODIFY_FILLED_ORDER: i32 = 104;
    pub const HISTORICAL_DATA_SERVICE: i32 = 162;
    pub const NO_SECURITY_DEFINITION: i32 = 200;
    pub const ORDER_REJECTED: i32 = 201;
    pub const ORDER_CANCELLED: i32 = 202;
    pub const CLIENT_ID_IN_USE: i32 = 326;
    pub const NOT_SUBSCRIBED: i32 = 354;
    pub const CONNECTIVITY_LOST: i32 = 1100;
    pub const CONNECTIVITY_RESTORED_DATA_LOST: i32 = 1101;
    pub const CONNECTIVITY_RESTORED_DATA_MAINTAINED: i32 = 1102;
    pub const MARKET_DATA_FARM_BROKEN: i32 = 2103;
    pub const MARKET_DATA_FARM_OK: i32 = 2104;
    pub const HMDS_FARM_OK: i32 = 2106;
    pub const SEC_DEF_FARM_OK: i32 = 2158;
    pub const DELAYED_DISPLAYED: i32 = 10167;
    pub const CANCEL_NOT_FOUND: i32 = 10147;
    pub const CANNOT_CANCEL: i32 = 10148;
    pub const COMPETING_LIVE_SESSION: i32 = 10197;
}

/// IB's tick types the gateway sends.
pub mod ticks {
    pub const LAST: i32 = 4;
    pub const LAST_SIZE: i32 = 5;
    pub const DELAYED_LAST: i32 = 68;
    pub const DELAYED_LAST_SIZE: i32 = 71;
}

/// The gateway's text for the error codes, as the real gateway words them.
pub mod texts {
    pub const CLIENT_ID_IN_USE: &str =
        "Unable to connect as the client id is already in use. Retry with a unique client id.";
    pub const NOT_SUBSCRIBED: &str = "Requested market data is not subscribed.";
    pub const COMPETING_LIVE_SESSION: &str = "No market data during competing live session";
    pub const DELAYED_DISPLAYED: &str =
        "Requested market data is not subscribed. Displaying delayed market data.";
    pub const MARKET_DATA_FARM_BROKEN: &str = "Market data farm connection is broken:usfarm";
    pub const MARKET_DATA_FARM_OK: &str = "Market data farm connection is OK:usfarm";
    pub const CONNECTIVITY_LOST: &str =
        "Connectivity between IB and Trader Workstation has been lost.";
    pub const CONNECTIVITY_RESTORED_DATA_LOST: &str =
        "Connectivity between IB and TWS has been restored- data lost.";
    pub const CONNECTIVITY_RESTORED_DATA_MAINTAINED: &str =
        "Connectivity between IB and TWS has been restored- data maintained.";
    /// Prefix of every historical data service error (162).
    pub const HMDS_ERROR: &str = "Historical Market Data Service error message:";
    pub const NO_SECURITY_DEFINITION: &str =
        "No security definition has been found for the request";
    pub const DUPLICATE_ORDER_ID: &str = "Duplicate order id";
    pub const CANNOT_MODIFY_FILLED_ORDER: &str = "Can't modify a filled order.";
    /// An order refused for lack of buying power (201).
    pub const INSUFFICIENT_BUYING_POWER: &str =
        "Order rejected - reason:The account has insufficient buying power.";
    pub const ORDER_CANCELLED: &str = "Order Canceled - reason:";

    /// Error 10147 for order `id`.
    pub fn cancel_not_found(id: i32) -> String {
        format!("OrderId {id} that needs to be cancelled is not found.")
    }

    /// Error 10148 for order `id` in `state`.
    pub fn cannot_cancel(id: i32, state: &str) -> String {
        format!("OrderId {id} that needs to be cancelled cannot be cancelled, state: {state}.")
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct StartApiRequest {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NextValidId {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ManagedAccounts {
    #[prost(string, optional, tag = "1")]
    pub accounts_list: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ErrorMessage {
    #[prost(int32, optional, tag = "1")]
    pub id: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub error_time: Option<i64>,
    #[prost(int32, optional, tag = "3")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub error_msg: Option<String>,
}

/// The contract fields the gateway looks at.
#[derive(Clone, PartialEq, Message)]
pub struct Contract {
    #[prost(int32, optional, tag = "1")]
    pub con_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub symbol: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub sec_type: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub last_trade_date_or_contract_month: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub primary_exchange: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub currency: Option<String>,
    #[prost(string, optional, tag = "11")]
    pub local_symbol: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalDataRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(string, optional, tag = "3")]
    pub end_date_time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub bar_size_setting: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub duration: Option<String>,
    /// Regular trading hours only (absent: all hours).
    #[prost(bool, optional, tag = "6")]
    pub use_rth: Option<bool>,
    #[prost(string, optional, tag = "7")]
    pub what_to_show: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalDataBar {
    #[prost(string, optional, tag = "1")]
    pub date: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub open: Option<f64>,
    #[prost(double, optional, tag = "3")]
    pub high: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub low: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub close: Option<f64>,
    #[prost(string, optional, tag = "6")]
    pub volume: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub wap: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub bar_count: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, repeated, tag = "2")]
    pub historical_data_bars: Vec<HistoricalDataBar>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HistoricalDataEnd {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub start_date_str: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub end_date_str: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RealTimeBarsRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(bool, optional, tag = "5")]
    pub use_rth: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MarketDataRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CancelMarketData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

/// The market data type a market data request is answered with.
#[derive(Clone, PartialEq, Message)]
pub struct MarketDataType {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub market_data_type: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TickPrice {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub tick_type: Option<i32>,
    #[prost(double, optional, tag = "3")]
    pub price: Option<f64>,
    #[prost(string, optional, tag = "4")]
    pub size: Option<String>,
    #[prost(int32, optional, tag = "5")]
    pub attr_mask: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TickSize {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub tick_type: Option<i32>,
    #[prost(string, optional, tag = "3")]
    pub size: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CancelRealTimeBars {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CancelHistoricalData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MarketDataTypeRequest {
    #[prost(int32, optional, tag = "1")]
    pub market_data_type: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ContractDataRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
}

/// The contract details fields the gateway fills in.
#[derive(Clone, PartialEq, Message)]
pub struct ContractDetails {
    #[prost(string, optional, tag = "1")]
    pub market_name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub min_tick: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub valid_exchanges: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub long_name: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub time_zone_id: Option<String>,
    /// The sessions of a few days (`YYYYMMDD:HHMM-YYYYMMDD:HHMM` or `YYYYMMDD:CLOSED`,
    /// `;`-separated), in `time_zone_id`.
    #[prost(string, optional, tag = "13")]
    pub trading_hours: Option<String>,
    /// The same, regular hours only.
    #[prost(string, optional, tag = "14")]
    pub liquid_hours: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ContractData {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub contract_details: Option<ContractDetails>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ContractDataEnd {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RealTimeBarTick {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(int64, optional, tag = "2")]
    pub time: Option<i64>,
    #[prost(double, optional, tag = "3")]
    pub open: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub high: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub low: Option<f64>,
    #[prost(double, optional, tag = "6")]
    pub close: Option<f64>,
    #[prost(string, optional, tag = "7")]
    pub volume: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub wap: Option<String>,
    #[prost(int32, optional, tag = "9")]
    pub count: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CurrentTime {
    #[prost(int64, optional, tag = "1")]
    pub current_time: Option<i64>,
}

/// A message without fields (the end markers, requests without arguments).
#[derive(Clone, PartialEq, Message)]
pub struct Empty {}

/// The order fields the gateway reads or writes (IB's `Order`, tags as in IB's protobuf).
#[derive(Clone, PartialEq, Message)]
pub struct Order {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub order_id: Option<i32>,
    #[prost(int64, optional, tag = "3")]
    pub perm_id: Option<i64>,
    #[prost(int32, optional, tag = "4")]
    pub parent_id: Option<i32>,
    /// "BUY", "SELL", "SSHORT" or "SLONG".
    #[prost(string, optional, tag = "5")]
    pub action: Option<String>,
    /// A decimal.
    #[prost(string, optional, tag = "6")]
    pub total_quantity: Option<String>,
    /// "MKT", "LMT", ...
    #[prost(string, optional, tag = "8")]
    pub order_type: Option<String>,
    #[prost(double, optional, tag = "9")]
    pub lmt_price: Option<f64>,
    #[prost(double, optional, tag = "10")]
    pub aux_price: Option<f64>,
    /// "DAY", "GTC", ...
    #[prost(string, optional, tag = "11")]
    pub tif: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub account: Option<String>,
    #[prost(string, optional, tag = "28")]
    pub order_ref: Option<String>,
    /// Absent in a request: false (`ibapi` omits it then); absent in an answer: true.
    #[prost(bool, optional, tag = "66")]
    pub transmit: Option<bool>,
    /// A decimal (completed orders).
    #[prost(string, optional, tag = "115")]
    pub filled_quantity: Option<String>,
}

/// The order state fields the gateway writes.
#[derive(Clone, PartialEq, Message)]
pub struct OrderState {
    /// Required by `ibapi`: "PendingSubmit", "Submitted", "Filled", "Cancelled", "Inactive", ...
    #[prost(string, optional, tag = "1")]
    pub status: Option<String>,
    #[prost(double, optional, tag = "11")]
    pub commission_and_fees: Option<f64>,
    #[prost(string, optional, tag = "14")]
    pub commission_and_fees_currency: Option<String>,
    #[prost(string, optional, tag = "26")]
    pub reject_reason: Option<String>,
    #[prost(string, optional, tag = "29")]
    pub completed_time: Option<String>,
    #[prost(string, optional, tag = "30")]
    pub completed_status: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PlaceOrderRequest {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub order: Option<Order>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OrderCancel {
    #[prost(string, optional, tag = "1")]
    pub manual_order_cancel_time: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CancelOrderRequest {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub order_cancel: Option<OrderCancel>,
}

/// An open order (contract, order and order state are required by `ibapi`): the order's id
/// and state, then the contract and order as a [`PlaceOrderRequest`] carries them. Encoded in
/// tag order whatever the order of declaration.
#[derive(Clone, PartialEq, Message)]
pub struct OpenOrder {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(message, optional, tag = "4")]
    pub order_state: Option<OrderState>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub order: Option<Order>,
}

/// An order's status (status, filled and remaining are required by `ibapi`).
#[derive(Clone, PartialEq, Message)]
pub struct OrderStatus {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub status: Option<String>,
    /// A decimal.
    #[prost(string, optional, tag = "3")]
    pub filled: Option<String>,
    /// A decimal.
    #[prost(string, optional, tag = "4")]
    pub remaining: Option<String>,
    #[prost(double, optional, tag = "5")]
    pub avg_fill_price: Option<f64>,
    #[prost(int64, optional, tag = "6")]
    pub perm_id: Option<i64>,
    #[prost(int32, optional, tag = "7")]
    pub parent_id: Option<i32>,
    #[prost(double, optional, tag = "8")]
    pub last_fill_price: Option<f64>,
    #[prost(int32, optional, tag = "9")]
    pub client_id: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub why_held: Option<String>,
}

/// A completed order: no order id at the top (`ibapi` reads it as -1).
#[derive(Clone, PartialEq, Message)]
pub struct CompletedOrder {
    #[prost(message, optional, tag = "1")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "2")]
    pub order: Option<Order>,
    #[prost(message, optional, tag = "3")]
    pub order_state: Option<OrderState>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CompletedOrdersRequest {
    #[prost(bool, optional, tag = "1")]
    pub api_only: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct IdsRequest {
    #[prost(int32, optional, tag = "1")]
    pub num_ids: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExecutionFilter {
    #[prost(int32, optional, tag = "1")]
    pub client_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub acct_code: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub symbol: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub sec_type: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub exchange: Option<String>,
    /// "BUY" or "SELL".
    #[prost(string, optional, tag = "7")]
    pub side: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub last_n_days: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExecutionRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub execution_filter: Option<ExecutionFilter>,
}

/// One fill (side "BOT" or "SLD" is required by `ibapi`).
#[derive(Clone, PartialEq, Message)]
pub struct Execution {
    #[prost(int32, optional, tag = "1")]
    pub order_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub exec_id: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub time: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub acct_number: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub exchange: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub side: Option<String>,
    /// A decimal.
    #[prost(string, optional, tag = "7")]
    pub shares: Option<String>,
    #[prost(double, optional, tag = "8")]
    pub price: Option<f64>,
    #[prost(int64, optional, tag = "9")]
    pub perm_id: Option<i64>,
    #[prost(int32, optional, tag = "10")]
    pub client_id: Option<i32>,
    /// A decimal.
    #[prost(string, optional, tag = "12")]
    pub cum_qty: Option<String>,
    #[prost(double, optional, tag = "13")]
    pub avg_price: Option<f64>,
    #[prost(string, optional, tag = "14")]
    pub order_ref: Option<String>,
    /// 1 added liquidity, 2 removed it.
    #[prost(int32, optional, tag = "18")]
    pub last_liquidity: Option<i32>,
}

/// An execution: request id -1 for a live fill, the request's for an answer to one.
#[derive(Clone, PartialEq, Message)]
pub struct ExecutionDetails {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    #[prost(message, optional, tag = "3")]
    pub execution: Option<Execution>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExecutionDetailsEnd {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

/// The commission of one execution; `ibapi` routes it by execution id, so it must follow
/// its execution.
#[derive(Clone, PartialEq, Message)]
pub struct CommissionAndFeesReport {
    #[prost(string, optional, tag = "1")]
    pub exec_id: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub commission_and_fees: Option<f64>,
    #[prost(string, optional, tag = "3")]
    pub currency: Option<String>,
    #[prost(double, optional, tag = "4")]
    pub realized_pnl: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Position {
    #[prost(string, optional, tag = "1")]
    pub account: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub contract: Option<Contract>,
    /// A decimal, required by `ibapi`.
    #[prost(string, optional, tag = "3")]
    pub position: Option<String>,
    #[prost(double, optional, tag = "4")]
    pub avg_cost: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AccountSummaryRequest {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub group: Option<String>,
    /// Comma-separated.
    #[prost(string, optional, tag = "3")]
    pub tags: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AccountSummary {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub account: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub tag: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub value: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub currency: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AccountSummaryEnd {
    #[prost(int32, optional, tag = "1")]
    pub req_id: Option<i32>,
}

pub(super) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub(super) fn proto_frame(id: i32, msg: &impl Message) -> Vec<u8> {
    let mut body = (id + PROTOBUF).to_be_bytes().to_vec();
    msg.encode(&mut body).expect("a Vec grows as needed");
    frame(&body)
}

/// The framed error (notice) message.
pub fn error_frame(id: i32, code: i32, text: &str) -> Vec<u8> {
    proto_frame(
        incoming::ERROR,
        &ErrorMessage {
            id: Some(id),
            error_time: Some(0),
            error_code: Some(code),
            error_msg: Some(text.into()),
        },
    )
}

pub(super) fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 16 << 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// Seconds of an IB bar size (`"1 min"`, `"5 secs"`, `"1 hour"`, `"1 day"`, ...).
pub fn bar_size_seconds(text: &str) -> Option<i64> {
    let (n, unit) = text.trim().split_once(' ')?;
    let n: i64 = n.parse().ok()?;
    let unit = match unit.trim_end_matches('s') {
        "sec" => 1,
        "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        _ => return None,
    };
    Some(n * unit)
}

/// Seconds of an IB duration (`"86400 S"`, `"1 D"`, `"2 W"`, `"1 M"`, `"1 Y"`).
pub fn duration_seconds(text: &str) -> Option<i64> {
    let (n, unit) = text.trim().split_once(' ')?;
    let n: i64 = n.parse().ok()?;
    let unit = match unit {
        "S" => 1,
        "D" => 86_400,
        "W" => 7 * 86_400,
        "M" => 30 * 86_400,
        "Y" => 365 * 86_400,
        _ => return None,
    };
    Some(n * unit)
}

/// `YYYYMMDD-HH:MM:SS` (UTC) of a Unix time.
pub(super) fn utc_text(t: i64) -> String {
    let (year, month, day, h, m, s) = base::unix_time::civil_time(t);
    format!("{year:04}{month:02}{day:02}-{h:02}:{m:02}:{s:02}")
}

/// A contract id for `symbol` listed on `exchange`: positive, stable.
pub(super) fn con_id(symbol: &str, exchange: &str) -> i32 {
    // FNV-1a, folded into 1..=i32::MAX.
    let hash = symbol
        .bytes()
        .chain([b'@'])
        .chain(exchange.bytes())
        .fold(0x811c_9dc5_u32, |h, byte| {
            (h ^ u32::from(byte)).wrapping_mul(0x0100_0193)
        });
    (hash % (i32::MAX as u32)) as i32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ib_units_read_as_seconds() {
        assert_eq!(bar_size_seconds("1 min"), Some(60));
        assert_eq!(bar_size_seconds("5 secs"), Some(5));
        assert_eq!(bar_size_seconds("2 hours"), Some(7200));
        assert_eq!(bar_size_seconds("1 day"), Some(86_400));
        assert_eq!(bar_size_seconds("1 fortnight"), None);
        assert_eq!(duration_seconds("86400 S"), Some(86_400));
        assert_eq!(duration_seconds("2 W"), Some(14 * 86_400));
        assert_eq!(duration_seconds("1 Y"), Some(365 * 86_400));
        assert_eq!(duration_seconds("D"), None);
        assert_eq!(utc_text(1_700_000_000), "20231114-22:13:20");
    }

    #[test]
    fn frames_carry_their_length_and_protobuf_ids_are_offset() {
        assert_eq!(frame(b"abc"), vec![0, 0, 0, 3, b'a', b'b', b'c']);
        let f = proto_frame(incoming::NEXT_VALID_ID, &NextValidId { order_id: Some(1) });
        let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        let id = i32::from_be_bytes([f[4], f[5], f[6], f[7]]);
        assert_eq!(id, incoming::NEXT_VALID_ID + PROTOBUF);
        assert_eq!(
            NextValidId::decode(&f[8..]).unwrap(),
            NextValidId { order_id: Some(1) }
        );
    }
}
