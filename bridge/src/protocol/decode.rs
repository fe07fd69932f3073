//! The envelope and the messages it carries, decoded by hand: bincode's own encoding (the
//! derived `Encode` writes it), read back in one pass with no bookkeeping per field.
//!
//! The derived decoders return every level of a message (field, variant, body, envelope)
//! through memory and charge each integer against the decode limit; a frame of a few dozen
//! bytes then takes 30-40 ns to decode. These read the integers in place and charge the limit
//! only where something is allocated, as bincode does for a sequence or a string, so the
//! limit's promise stands (a small frame cannot make the decoder allocate much) and every valid
//! message still fits under it. With any configuration other than the codec's (fixed-width
//! little-endian integers) the integers are read by bincode's own decoders.
//!
//! Variant numbers are the order of declaration, as the derived `Encode` numbers them. Each
//! enum's variants are named below (`variants!`): a variant added to an enum stops this file
//! compiling until it is named there, which counts it; the tests then need a sample of every
//! counted variant, and round-trip each. The other types (history and subscription requests,
//! orders) keep their derived decoders.

use std::mem::size_of;

use bincode::config::{Config, Endianness, IntEncoding};
use bincode::de::read::Reader;
use bincode::de::{Decode, Decoder};
use bincode::error::{AllowedEnumVariants, DecodeError};

use super::*;

/// Whether `d` reads the codec's integers: fixed width, little-endian.
#[inline(always)]
fn plain<D: Decoder>(d: &D) -> bool {
    matches!(d.config().int_encoding(), IntEncoding::Fixed)
        && matches!(d.config().endianness(), Endianness::Little)
}

macro_rules! fixed_width {
    ($($name:ident: $t:ty),*) => {$(
        /// Reads one value of its type.
        #[inline(always)]
        fn $name<D: Decoder>(d: &mut D) -> Result<$t, DecodeError> {
            if !plain(d) {
                return <$t as Decode<D::Context>>::decode(d);
            }
            let mut b = [0u8; size_of::<$t>()];
            d.reader().read(&mut b)?;
            Ok(<$t>::from_le_bytes(b))
        }
    )*};
}
fixed_width!(read_u32: u32, read_u64: u64, read_i32: i32, read_i64: i64, read_f64: f64);

/// Reads a `bool` (one byte, 0 or 1).
#[inline(always)]
fn read_bool<D: Decoder>(d: &mut D) -> Result<bool, DecodeError> {
    let mut b = [0u8; 1];
    d.reader().read(&mut b)?;
    match b[0] {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(DecodeError::InvalidBooleanValue(v)),
    }
}

/// Reads a sequence's length.
#[inline(always)]
fn read_len<D: Decoder>(d: &mut D) -> Result<usize, DecodeError> {
    let n = read_u64(d)?;
    usize::try_from(n).map_err(|_| DecodeError::OutsideUsizeRange(n))
}

/// Reads a byte string, charging its length to the limit before allocating it.
#[inline(always)]
fn read_bytes<D: Decoder>(d: &mut D) -> Result<Vec<u8>, DecodeError> {
    let len = read_len(d)?;
    d.claim_container_read::<u8>(len)?;
    if let Some(bytes) = d.reader().peek_read(len) {
        let out = bytes.to_vec();
        d.reader().consume(len);
        return Ok(out);
    }
    let mut out = vec![0u8; len];
    d.reader().read(&mut out)?;
    Ok(out)
}

/// Reads a UTF-8 string.
#[inline(always)]
fn read_string<D: Decoder>(d: &mut D) -> Result<String, DecodeError> {
    String::from_utf8(read_bytes(d)?).map_err(|e| DecodeError::Utf8 {
        inner: e.utf8_error(),
    })
}

/// Reads a sequence of `T`, charging it to the limit as bincode does: all of it before
/// allocating, each element given back as it is decoded (its own allocations are charged by
/// its decoder).
#[inline(always)]
fn read_vec<T: Decode<D::Context>, D: Decoder>(d: &mut D) -> Result<Vec<T>, DecodeError> {
    let len = read_len(d)?;
    d.claim_container_read::<T>(len)?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        d.unclaim_bytes_read(size_of::<T>());
        out.push(T::decode(d)?);
    }
    Ok(out)
}

/// A variant number with no variant: the error the derived decoders give.
#[cold]
#[inline(never)]
fn unknown(
    type_name: &'static str,
    allowed: &'static AllowedEnumVariants,
    found: u32,
) -> DecodeError {
    DecodeError::UnexpectedVariant {
        type_name,
        allowed,
        found,
    }
}

/// The error for a variant number of `$t` past its last (`$count` variants).
macro_rules! no_variant {
    ($t:literal, $count:expr, $found:expr) => {
        Err(unknown(
            $t,
            &AllowedEnumVariants::Range {
                min: 0,
                max: $count - 1,
            },
            $found,
        ))
    };
}

/// `$count`: how many variants `$t` has, every one named (a pattern each) in an exhaustive
/// match that stops compiling when a variant is added and not named.
macro_rules! variants {
    ($($count:ident = $t:ident [$($variant:pat),+])*) => {$(
        pub(super) const $count: u32 = [$(stringify!($variant)),+].len() as u32;
        const _: fn(&$t) = |v| match v {
            $($variant)|+ => {}
        };
    )*};
}

variants! {
    BODIES = Body [Body::Hello(_), Body::Request(_), Body::Reply(_), Body::Event(_), Body::Log(_)]
    REQUESTS = Request [Request::Ping { .. }, Request::Connect, Request::Accounts,
        Request::History(_), Request::Subscribe(_), Request::Unsubscribe { .. },
        Request::Shutdown, Request::Cancel { .. }, Request::PlaceOrder(_),
        Request::ModifyOrder(_), Request::CancelOrder { .. }, Request::CancelAll,
        Request::Orders, Request::FoldedOrders, Request::Executions, Request::Positions,
        Request::Account]
    REPLIES = Reply [Reply::Pong { .. }, Reply::Connected { .. }, Reply::Accounts(_),
        Reply::Bars(_), Reply::HistoryEnd { .. }, Reply::Subscribed, Reply::Unsubscribed,
        Reply::ShuttingDown, Reply::Order(_), Reply::CancelledAll { .. }, Reply::Orders(_),
        Reply::Fills(_), Reply::Positions(_), Reply::Folded(_), Reply::FoldedPage(_),
        Reply::OrdersPage(_), Reply::FillsPage(_), Reply::PositionsPage(_), Reply::Account(_),
        Reply::Error(_)]
    EVENTS = Event [Event::Bar { .. }, Event::Connection(_), Event::Refused { .. },
        Event::Delayed { .. }, Event::Feed { .. }, Event::Order(_), Event::Fill(_),
        Event::Position(_), Event::BookTold { .. }, Event::Dropped { .. }, Event::Notice { .. }]
    FEED_STATES = FeedState [FeedState::Resubscribed { .. }, FeedState::Stalled { .. },
        FeedState::Flowing, FeedState::Ended]
    CONNECTION_STATUSES = ConnectionStatus [ConnectionStatus::Connected,
        ConnectionStatus::Lost { .. }, ConnectionStatus::Restored { .. },
        ConnectionStatus::Reconnecting { .. }, ConnectionStatus::GaveUp { .. }]
}

/// For an enum of unit variants, besides [`variants!`]'s count and exhaustive match, `$all`:
/// every variant in order of declaration, which its decoder indexes by the variant number.
macro_rules! unit_variants {
    ($($count:ident, $all:ident = $t:ident [$($variant:ident),+])*) => {$(
        variants! { $count = $t [$($t::$variant),+] }
        const $all: [$t; $count as usize] = [$($t::$variant),+];
    )*};
}

unit_variants! {
    ERROR_KINDS, ALL_ERROR_KINDS = ErrorKind [Timeout, NotConnected, UnknownSymbol, NoData,
        Pacing, NoSecurityDefinition, AmbiguousContract, FarmDown, Disconnected, ClientIdInUse,
        NotPermitted, CompetingSession, BadRequest, Cancelled, UnknownOrder, LiveAccount,
        TooLarge, Internal]
    LOG_LEVELS, ALL_LOG_LEVELS = LogLevel [Error, Warn, Info, Debug, Trace]
}

/// `Decode` (and `BorrowDecode`) for each type, from the body that reads one. In line always:
/// a message is then decoded in one function, its values built where they end up, where a
/// call per level would return each through memory (a stall of its own on every level).
macro_rules! by_hand {
    ($($t:ty => |$d:ident| $body:expr;)*) => {$(
        impl<Ctx> Decode<Ctx> for $t {
            #[inline(always)]
            fn decode<D: Decoder<Context = Ctx>>($d: &mut D) -> Result<Self, DecodeError> {
                $body
            }
        }
        bincode::impl_borrow_decode!($t);
    )*};
}

by_hand! {
    Envelope => |d| Ok(Envelope {
        id: read_u64(d)?,
        body: Body::decode(d)?,
    });

    Body => |d| Ok(match read_u32(d)? {
        0 => Body::Hello(Hello::decode(d)?),
        1 => Body::Request(Request::decode(d)?),
        2 => Body::Reply(Reply::decode(d)?),
        3 => Body::Event(Event::decode(d)?),
        4 => Body::Log(LogRecord::decode(d)?),
        n => return no_variant!("Body", BODIES, n),
    });

    Hello => |d| Ok(Hello {
        protocol_version: read_u32(d)?,
        build_id: read_string(d)?,
        pid: read_u32(d)?,
    });

    Request => |d| Ok(match read_u32(d)? {
        0 => Request::Ping {
            payload: read_bytes(d)?,
        },
        1 => Request::Connect,
        2 => Request::Accounts,
        3 => Request::History(HistoryRequest::decode(d)?),
        4 => Request::Subscribe(SubscribeRequest::decode(d)?),
        5 => Request::Unsubscribe {
            symbol: read_string(d)?,
        },
        6 => Request::Shutdown,
        7 => Request::Cancel { id: read_u64(d)? },
        8 => Request::PlaceOrder(OrderRequest::decode(d)?),
        9 => Request::ModifyOrder(OrderChange::decode(d)?),
        10 => Request::CancelOrder {
            order_ref: read_string(d)?,
        },
        11 => Request::CancelAll,
        12 => Request::Orders,
        13 => Request::FoldedOrders,
        14 => Request::Executions,
        15 => Request::Positions,
        16 => Request::Account,
        n => return no_variant!("Request", REQUESTS, n),
    });

    Reply => |d| Ok(match read_u32(d)? {
        0 => Reply::Pong {
            payload: read_bytes(d)?,
        },
        1 => Reply::Connected {
            accounts: read_vec(d)?,
            next_order_id: read_i64(d)?,
        },
        2 => Reply::Accounts(read_vec(d)?),
        3 => Reply::Bars(read_vec(d)?),
        4 => Reply::HistoryEnd {
            count: read_u64(d)?,
        },
        5 => Reply::Subscribed,
        6 => Reply::Unsubscribed,
        7 => Reply::ShuttingDown,
        8 => Reply::Order(Box::new(OrderReport::decode(d)?)),
        9 => Reply::CancelledAll {
            count: read_u32(d)?,
        },
        10 => Reply::Orders(read_vec(d)?),
        11 => Reply::Fills(read_vec(d)?),
        12 => Reply::Positions(read_vec(d)?),
        13 => Reply::Folded(read_vec(d)?),
        14 => Reply::FoldedPage(read_vec(d)?),
        15 => Reply::OrdersPage(read_vec(d)?),
        16 => Reply::FillsPage(read_vec(d)?),
        17 => Reply::PositionsPage(read_vec(d)?),
        18 => Reply::Account(Box::new(AccountSummary::decode(d)?)),
        19 => Reply::Error(RemoteError::decode(d)?),
        n => return no_variant!("Reply", REPLIES, n),
    });

    Bar => |d| Ok(Bar {
        time: read_i64(d)?,
        open: read_f64(d)?,
        high: read_f64(d)?,
        low: read_f64(d)?,
        close: read_f64(d)?,
        volume: read_f64(d)?,
    });

    RemoteError => |d| Ok(RemoteError {
        kind: ErrorKind::decode(d)?,
        message: read_string(d)?,
    });

    ErrorKind => |d| {
        let n = read_u32(d)?;
        match ALL_ERROR_KINDS.get(n as usize) {
            Some(kind) => Ok(*kind),
            None => no_variant!("ErrorKind", ERROR_KINDS, n),
        }
    };

    Event => |d| Ok(match read_u32(d)? {
        0 => Event::Bar {
            sub: read_u32(d)?,
            bar: Bar::decode(d)?,
        },
        1 => Event::Connection(ConnectionStatus::decode(d)?),
        2 => Event::Refused {
            symbol: read_string(d)?,
            error: RemoteError::decode(d)?,
        },
        3 => Event::Delayed {
            symbol: read_string(d)?,
            refused: RemoteError::decode(d)?,
        },
        4 => Event::Feed {
            symbol: read_string(d)?,
            state: FeedState::decode(d)?,
        },
        5 => Event::Order(Box::new(OrderReport::decode(d)?)),
        6 => Event::Fill(Box::new(Fill::decode(d)?)),
        7 => Event::Position(Box::new(Position::decode(d)?)),
        8 => Event::BookTold {
            through: read_i64(d)?,
        },
        9 => Event::Dropped {
            count: read_u64(d)?,
        },
        10 => Event::Notice {
            code: read_i32(d)?,
            message: read_string(d)?,
        },
        n => return no_variant!("Event", EVENTS, n),
    });

    FeedState => |d| Ok(match read_u32(d)? {
        0 => FeedState::Resubscribed {
            reason: read_string(d)?,
        },
        1 => FeedState::Stalled {
            since: read_i64(d)?,
        },
        2 => FeedState::Flowing,
        3 => FeedState::Ended,
        n => return no_variant!("FeedState", FEED_STATES, n),
    });

    ConnectionStatus => |d| Ok(match read_u32(d)? {
        0 => ConnectionStatus::Connected,
        1 => ConnectionStatus::Lost {
            reason: read_string(d)?,
        },
        2 => ConnectionStatus::Restored {
            data_lost: read_bool(d)?,
        },
        3 => ConnectionStatus::Reconnecting {
            attempt: read_u32(d)?,
        },
        4 => ConnectionStatus::GaveUp {
            attempts: read_u32(d)?,
            reason: read_string(d)?,
        },
        n => return no_variant!("ConnectionStatus", CONNECTION_STATUSES, n),
    });

    LogRecord => |d| Ok(LogRecord {
        level: LogLevel::decode(d)?,
        target: read_string(d)?,
        message: read_string(d)?,
        dropped_before: read_u64(d)?,
    });

    LogLevel => |d| {
        let n = read_u32(d)?;
        match ALL_LOG_LEVELS.get(n as usize) {
            Some(level) => Ok(*level),
            None => no_variant!("LogLevel", LOG_LEVELS, n),
        }
    };
}

#[cfg(test)]
mod tests;
