//! The simulated broker's journal file: what the broker was told, one line each ([`Entry`]),
//! starting with the market clock its times are read on ([`JournalClock`]).
//!
//! A line is `P` (a placement, with the broker's decision), `C` (a cancel), `M` (a change of
//! quantity or limit) or `T` (the clock, the first line only), its fields separated by tabs.
//! The file is appended to under a file lock ([`lock_within`]) by whichever process talks to
//! the broker. A journal that was folded (`broker::fold`) holds, after its clock, an `F` line
//! (the fold's generation and totals), an `S` line per symbol (the folded orders' position)
//! and `R` lines (the folded orders' references), then the orders it kept, whole.
//!
//! Invariants: a line read back is the entry written (a rejection's reason loses its tabs and
//! line breaks); a line that does not parse is not an entry; times beyond [`TIME_BOUND`] are
//! refused, so that no arithmetic on them overflows; a journal's clock, once written, is never
//! replaced.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bridge::protocol::{
    valid_order_ref, OrderChange, OrderRequest, OrderType, RefRun, Side, TimeInForce,
};

/// The market clock a journal's times are read on: market time `start` (Unix seconds) at
/// wall-clock Unix milliseconds `anchor_ms`, running `speed` times real time. A journal
/// starts with it, and every run that uses the journal runs its market on it, so that the
/// times of the book mean the same to every process that reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct JournalClock {
    /// Market time at `anchor_ms`.
    pub(crate) start: i64,
    /// Wall-clock Unix milliseconds.
    pub(crate) anchor_ms: u64,
    /// Simulated seconds per real second.
    pub(crate) speed: f64,
    /// The seed of the market's prices: the book's fills are worked out from them.
    pub(crate) seed: u64,
}

/// `what` went wrong with the journal at `path`: the message every journal error carries.
pub(super) fn file_error(path: &str, what: &str, e: impl fmt::Display) -> String {
    format!("simulated broker's orders file {path}: {what}: {e}")
}

/// Why the simulated broker's orders file cannot be a run's journal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JournalError {
    /// The file cannot be opened, locked, read or written.
    File {
        /// The file.
        path: PathBuf,
        /// What was done: `cannot open`, `cannot lock`, ...
        what: &'static str,
        /// Why it failed.
        source: Arc<std::io::Error>,
    },
    /// The file does not start with a clock line: it is not a journal.
    NotAJournal {
        /// The file.
        path: PathBuf,
    },
    /// The file holds the book of a market of another seed.
    OtherSeed {
        /// The file.
        path: PathBuf,
        /// The seed of the market whose book it holds.
        held: u64,
        /// This run's seed.
        ours: u64,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::File { path, what, source } => {
                f.write_str(&file_error(&path.display().to_string(), what, source))
            }
            JournalError::NotAJournal { path } => write!(
                f,
                "simulated broker's orders file {}: does not start with its clock line; \
                 not an orders file?",
                path.display()
            ),
            JournalError::OtherSeed { path, held, ours } => write!(
                f,
                "orders file {} holds a book of the market of seed {held}, not {ours}: use \
                 that seed or another orders file",
                path.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::File { source, .. } => Some(source.as_ref()),
            JournalError::NotAJournal { .. } | JournalError::OtherSeed { .. } => None,
        }
    }
}

/// Errors are equal when they say the same of the same file (an I/O error by its kind).
impl PartialEq for JournalError {
    fn eq(&self, other: &Self) -> bool {
        use JournalError::{File, NotAJournal, OtherSeed};
        match (self, other) {
            (
                File { path, what, source },
                File {
                    path: p,
                    what: w,
                    source: s,
                },
            ) => path == p && what == w && source.kind() == s.kind(),
            (NotAJournal { path }, NotAJournal { path: p }) => path == p,
            (
                OtherSeed { path, held, ours },
                OtherSeed {
                    path: p,
                    held: h,
                    ours: o,
                },
            ) => path == p && held == h && ours == o,
            _ => false,
        }
    }
}

impl Eq for JournalError {}

/// The clock of the journal at `path`: the one it starts with, or, for a new or empty
/// journal, `proposed`, which is written as its first line.
pub(crate) fn claim_clock(
    path: &Path,
    proposed: JournalClock,
) -> Result<JournalClock, JournalError> {
    let named = |what: &'static str, e: std::io::Error| JournalError::File {
        path: path.to_path_buf(),
        what,
        source: Arc::new(e),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| named("cannot open", e))?;
    lock_within(&file, true, LOCK_WAIT).map_err(|e| named("cannot lock", e))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| named("cannot read", e))?;
    if !text.contains('\n') && !text.is_empty() {
        // A first line cut short by a writer killed mid-write: nothing was ever in the book.
        file.set_len(0).map_err(|e| named("cannot truncate", e))?;
        text.clear();
    }
    if let Some(first) = text.lines().next() {
        return match Entry::parse(first) {
            Some(Entry::Clock(clock)) => Ok(clock),
            _ => Err(JournalError::NotAJournal {
                path: path.to_path_buf(),
            }),
        };
    }
    let line = Entry::Clock(proposed).to_line();
    file.write_all(line.as_bytes())
        .and_then(|_| file.sync_data())
        .map_err(|e| named("cannot write", e))?;
    Ok(proposed)
}

/// How long a process waits for another to release the journal.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Times a journal may hold: about 35,000 years either side of 1970, so that no arithmetic on
/// them overflows.
pub(super) const TIME_BOUND: i64 = 1 << 40;

/// Locks `file` (exclusively or shared), waiting at most `wait` for another holder.
pub(super) fn lock_within(file: &File, exclusive: bool, wait: Duration) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let tried = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("held by another process for more than {} s", wait.as_secs()),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Entry {
    /// The journal's clock (its first line).
    Clock(JournalClock),
    /// The broker took an order at `time` (Unix seconds of the market clock) as `id`,
    /// rejecting it with a reason or not.
    Place {
        time: i64,
        id: i64,
        request: OrderRequest,
        rejected: Option<String>,
    },
    /// The order with this reference was cancelled at `time`.
    Cancel { time: i64, order_ref: String },
    /// The order with this reference was changed at `time`: its quantity, its limit, or both.
    Modify { time: i64, change: OrderChange },
    /// The journal was folded (generation `gen`, the second line): `orders` orders in all,
    /// their fills' cash flows added up; the book had been worked out to `time` and had
    /// taken broker ids up to `max_id`.
    Fold {
        gen: u64,
        orders: u64,
        time: i64,
        max_id: i64,
        cash_flows: f64,
    },
    /// The folded orders' position in `symbol`.
    Base {
        symbol: String,
        quantity: f64,
        avg: f64,
    },
    /// References of folded orders.
    Folded(RefRun),
}

impl Entry {
    pub(super) fn to_line(&self) -> String {
        match self {
            Entry::Place {
                time,
                id,
                request: r,
                rejected,
            } => {
                let (kind, limit) = match r.order_type {
                    OrderType::Market => ("M", "-".to_string()),
                    OrderType::Limit { price } => ("L", price.to_string()),
                };
                let side = match r.side {
                    Side::Buy => "B",
                    Side::Sell => "S",
                };
                let tif = match r.tif {
                    TimeInForce::Day => "D",
                    TimeInForce::Gtc => "G",
                };
                let reason = rejected
                    .as_deref()
                    .map(|s| s.replace(['\t', '\n', '\r'], " "))
                    .unwrap_or_default();
                format!(
                    "P\t{time}\t{id}\t{}\t{}\t{side}\t{}\t{kind}\t{limit}\t{tif}\t{}\t{reason}\n",
                    r.order_ref,
                    r.symbol,
                    r.quantity,
                    if rejected.is_some() { "R" } else { "A" },
                )
            }
            Entry::Cancel { time, order_ref } => format!("C\t{time}\t{order_ref}\n"),
            Entry::Modify { time, change } => {
                let or_dash = |v: &Option<f64>| v.map_or("-".to_string(), |v| v.to_string());
                format!(
                    "M\t{time}\t{}\t{}\t{}\n",
                    change.order_ref,
                    or_dash(&change.quantity),
                    or_dash(&change.limit)
                )
            }
            Entry::Clock(c) => {
                format!("T\t{}\t{}\t{}\t{}\n", c.start, c.anchor_ms, c.speed, c.seed)
            }
            Entry::Fold {
                gen,
                orders,
                time,
                max_id,
                cash_flows,
            } => format!("F\t{gen}\t{orders}\t{time}\t{max_id}\t{cash_flows}\n"),
            Entry::Base {
                symbol,
                quantity,
                avg,
            } => format!("S\t{symbol}\t{quantity}\t{avg}\n"),
            Entry::Folded(run) => match run.numbers {
                Some((a, b)) => format!("R\t{}\t{a}\t{b}\n", run.prefix),
                None => format!("R\t{}\t-\t-\n", run.prefix),
            },
        }
    }

    pub(super) fn parse(line: &str) -> Option<Entry> {
        let bounded = |t: &str| t.parse::<i64>().ok().filter(|t| t.abs() <= TIME_BOUND);
        let finite = |v: &str| v.parse::<f64>().ok().filter(|v| v.is_finite());
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["P", time, id, order_ref, symbol, side, qty, kind, limit, tif, decision, reason] => {
                let order_type = match *kind {
                    "M" => OrderType::Market,
                    "L" => OrderType::Limit {
                        price: limit.parse().ok()?,
                    },
                    _ => return None,
                };
                let request = OrderRequest {
                    order_ref: order_ref.to_string(),
                    symbol: symbol.to_string(),
                    side: match *side {
                        "B" => Side::Buy,
                        "S" => Side::Sell,
                        _ => return None,
                    },
                    quantity: qty.parse().ok()?,
                    order_type,
                    tif: match *tif {
                        "D" => TimeInForce::Day,
                        "G" => TimeInForce::Gtc,
                        _ => return None,
                    },
                };
                if request.check().is_err() {
                    return None;
                }
                let rejected = match *decision {
                    "A" => None,
                    "R" => Some(reason.to_string()),
                    _ => return None,
                };
                Some(Entry::Place {
                    time: bounded(time)?,
                    id: id.parse().ok()?,
                    request,
                    rejected,
                })
            }
            ["T", start, anchor_ms, speed, seed] => Some(Entry::Clock(JournalClock {
                seed: seed.parse().ok()?,
                start: bounded(start)?,
                anchor_ms: anchor_ms.parse().ok()?,
                speed: speed
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)?,
            })),
            ["M", time, order_ref, quantity, limit] => {
                let value = |v: &str| -> Option<Option<f64>> {
                    match v {
                        "-" => Some(None),
                        v => v
                            .parse()
                            .ok()
                            .filter(|v: &f64| v.is_finite() && *v > 0.0)
                            .map(Some),
                    }
                };
                Some(Entry::Modify {
                    time: bounded(time)?,
                    change: OrderChange {
                        order_ref: order_ref.to_string(),
                        quantity: value(quantity)?,
                        limit: value(limit)?,
                    },
                })
            }
            ["C", time, order_ref] => Some(Entry::Cancel {
                time: bounded(time)?,
                order_ref: order_ref.to_string(),
            }),
            ["F", gen, orders, time, max_id, cash_flows] => Some(Entry::Fold {
                gen: gen.parse().ok()?,
                orders: orders.parse().ok()?,
                time: bounded(time)?,
                max_id: max_id.parse().ok()?,
                cash_flows: finite(cash_flows)?,
            }),
            ["S", symbol, quantity, avg] => Some(Entry::Base {
                symbol: symbol.to_string(),
                quantity: finite(quantity)?,
                avg: finite(avg)?,
            }),
            ["R", prefix, "-", "-"] => Some(Entry::Folded(RefRun {
                prefix: prefix.to_string(),
                numbers: None,
            }))
            .filter(|_| valid_order_ref(prefix)),
            ["R", prefix, a, b] => {
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                let valid = a <= b && valid_order_ref(&format!("{prefix}-{b}"));
                valid.then(|| {
                    Entry::Folded(RefRun {
                        prefix: prefix.to_string(),
                        numbers: Some((a, b)),
                    })
                })
            }
            _ => None,
        }
    }
}

/// An open journal, locked for as long as it lives.
pub(super) struct Locked {
    pub(super) file: File,
}
