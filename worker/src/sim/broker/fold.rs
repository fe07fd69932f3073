//! Folding the simulated broker's book, so that a book kept for weeks stays small: orders
//! that can change no more, whose every fill and final state the runner was told, are kept
//! only as totals (`Fold`: their cash flows, the positions they add up to, their
//! references) and the journal is rewritten without them.
//!
//! Only the run's own worker folds (`keep_orders`), and only orders it found told final with
//! every fill at least `TOLD_AGE` of real time ago (the events that told them have reached
//! the runner), keeping the latest `keep_orders` of those whole (what the end-of-run
//! reconciliation of a run asks about). The rewrite goes to a file beside the journal, is
//! synced and renamed over it under the journal's lock; a process that opened the journal
//! before checks, once it holds the lock, that its file is still the journal, and that the
//! journal's fold generation is the one it read, before it trusts its byte offsets (it reads
//! the journal again otherwise).
//!
//! Invariants: a fresh book over the folded journal finds the same orders, fills, positions
//! and account as the book that folded it (cash to the rounding of its additions, which a
//! fold may reorder); positions add fills in time order, so an order is folded only if its
//! fills all come before every fill of the orders of its symbol kept; a folded reference is
//! never placed again; a fold interrupted at any point leaves the journal as it was.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bridge::protocol::{OrderRequest, OrderType, RefRun, RemoteError};

use super::super::folded::Fold;

use super::super::book::{add_fill, cash_flow, fill_key, Book, Order};
use super::super::journal::{Entry, Locked};
use super::SimBroker;

/// How long an order must have been told final with every fill, in real time, before it
/// may be folded: the events that told it have reached the runner by then.
const TOLD_AGE: Duration = Duration::from_secs(5);

/// How often, at most, the book is looked at for orders to fold.
const FOLD_CHECK: Duration = Duration::from_secs(5);

/// The least number of orders one fold takes out (beyond those kept), so that a rewrite of
/// the journal is paid for by many orders.
const FOLD_LEAST: usize = 64;

impl SimBroker {
    /// The references of the orders folded out of the book.
    pub fn folded_orders(&self, now: i64) -> Result<Vec<RefRun>, RemoteError> {
        self.with_book(now, false, |_, book, _, _| Ok(book.fold.refs.runs()))
    }

    /// Folds the book if this broker folds (`keep_orders`), was not looked at in the last
    /// `FOLD_CHECK`, and enough orders can go; returns how many went. Called after the
    /// changes of the book were told.
    pub fn fold_if_due(&self, now: i64) -> Result<usize, RemoteError> {
        let Some(keep) = self.opts.keep_orders.map(|k| k as usize) else {
            return Ok(0);
        };
        {
            let mut last = self.fold_checked.lock();
            if last.is_some_and(|t| t.elapsed() < FOLD_CHECK) {
                return Ok(0);
            }
            *last = Some(Instant::now());
            let book = self.book.lock();
            let done = book.orders.len() - book.untold.union(&book.open).count();
            if done < keep + FOLD_LEAST {
                return Ok(0);
            }
        }
        let told_before = Instant::now().checked_sub(TOLD_AGE);
        let Some(told_before) = told_before else {
            return Ok(0);
        };
        self.with_book(now, true, |b, book, j, _| {
            b.fold(book, j, keep, FOLD_LEAST, told_before)
        })
    }

    /// Folds out of `book` the orders final and told (by `told_before`), but the latest
    /// `keep` of them, if at least `least` can go: rewrites the journal `j` (if any) without
    /// them. Returns how many went.
    pub(super) fn fold(
        &self,
        book: &mut Book,
        j: Option<&mut Locked>,
        keep: usize,
        least: usize,
        told_before: Instant,
    ) -> Result<usize, RemoteError> {
        let out = foldable(book, keep, told_before);
        let count = out.iter().filter(|&&f| f).count();
        if count == 0 || count < least {
            return Ok(0);
        }
        let mut next = book.fold.clone();
        let (Some(gen), Some(orders)) = (
            next.gen.checked_add(1),
            next.orders.checked_add(count as u64),
        ) else {
            return Err(self.journal_error("cannot fold", "its fold counts are at their end"));
        };
        (next.gen, next.orders) = (gen, orders);
        let mut fills = Vec::new();
        for (o, _) in book.orders.iter().zip(&out).filter(|(_, &f)| f) {
            next.cash_flows = o
                .fills
                .iter()
                .map(cash_flow)
                .fold(next.cash_flows, |a, b| a + b);
            next.refs.insert(&o.request.order_ref);
            fills.extend(&o.fills);
        }
        fills.sort_by(|a, b| fill_key(a).cmp(&fill_key(b)));
        for f in fills {
            add_fill(next.base.entry(f.symbol.clone()).or_default(), f);
        }
        let finite = |v: f64| v.is_finite();
        if !finite(next.cash_flows) || !next.base.values().all(|&(q, a)| finite(q) && finite(a)) {
            // A journal line could not hold them: the book stays whole.
            tracing::warn!("simulated broker: totals beyond numbers; the book is not folded");
            return Ok(0);
        }
        let kept: Vec<Order> = book
            .orders
            .iter()
            .zip(&out)
            .filter(|(_, &f)| !f)
            .map(|(o, _)| o.clone())
            .collect();
        let written = match (j, self.path()) {
            (Some(j), Some(path)) => {
                let Some(clock) = book.clock else {
                    return Err(self.journal_error("cannot fold", "its clock line was not read"));
                };
                let mut text = Entry::Clock(clock).to_line();
                text.push_str(&journal_of(&next, book.max_id, book.last_time, &kept));
                let written = rewrite(&path, &j.file, text.as_bytes())
                    .map_err(|e| self.journal_error("cannot fold", e))?;
                let Some(id) = written else {
                    tracing::info!("simulated broker: the journal was removed; not folded");
                    return Ok(0);
                };
                (text.len() as u64, Some(id))
            }
            _ => (0, None),
        };
        let remap: HashMap<usize, usize> = out
            .iter()
            .enumerate()
            .filter(|(_, &f)| !f)
            .enumerate()
            .map(|(new, (old, _))| (old, new))
            .collect();
        book.open = book
            .open
            .iter()
            .filter_map(|i| remap.get(i).copied())
            .collect();
        book.untold = book
            .untold
            .iter()
            .filter_map(|i| remap.get(i).copied())
            .collect();
        book.by_ref = kept
            .iter()
            .enumerate()
            .map(|(i, o)| (o.request.order_ref.clone(), i))
            .collect();
        book.orders = kept;
        book.settled_flows.set((0, next.cash_flows));
        book.fold = next;
        if let (len, Some(id)) = written {
            // The journal is the file just written.
            book.read_to = len;
            book.file_id = Some(id);
        }
        tracing::info!(
            folded = count,
            kept = book.orders.len(),
            generation = book.fold.gen,
            "simulated broker: settled orders folded out of the book"
        );
        Ok(count)
    }
}

/// Which orders of `book` may be folded: final and told by `told_before` (all but the latest
/// `keep` of those), with every fill before the first fill, worked out or to come, of every
/// order of its symbol kept.
fn foldable(book: &Book, keep: usize, told_before: Instant) -> Vec<bool> {
    let orders = &book.orders;
    let done: Vec<usize> = (0..orders.len())
        .filter(|i| !book.open.contains(i) && !book.untold.contains(i))
        .filter(|&i| orders[i].told_at.is_some_and(|t| t <= told_before))
        .collect();
    let mut out = vec![false; orders.len()];
    for &i in &done[..done.len().saturating_sub(keep)] {
        out[i] = true;
    }
    // The earliest fill of the orders kept, by symbol: one a bar may still fill may fill at
    // its next bar (which a pass capped at `BARS_PER_PASS` may not have brought to now).
    let mut first: HashMap<&str, (i64, &str)> = HashMap::new();
    for (i, o) in orders.iter().enumerate().filter(|(i, _)| !out[*i]) {
        let mut earliest = o.fills.iter().map(fill_key).min();
        if book.open.contains(&i) {
            let next = (o.next_bar, "");
            earliest = Some(earliest.map_or(next, |k| k.min(next)));
        }
        if let Some(k) = earliest {
            let w = first.entry(o.request.symbol.as_str()).or_insert(k);
            *w = (*w).min(k);
        }
    }
    // The candidates, latest last fill first: one whose fills reach a kept fill is kept, and
    // its own fills count from then on. Once one is not kept, no later one of its symbol is
    // (their last fills come before its own, which comes before every kept fill): one pass
    // finds what keeping until nothing changes would.
    let span = |i: usize| {
        let keys = orders[i].fills.iter().map(fill_key);
        (keys.clone().min(), keys.max())
    };
    let mut candidates: Vec<usize> = (0..orders.len())
        .filter(|&i| out[i] && !orders[i].fills.is_empty())
        .collect();
    candidates.sort_by(|&a, &b| span(b).1.cmp(&span(a).1));
    for i in candidates {
        let (Some(earliest), Some(last)) = span(i) else {
            continue;
        };
        if let Some(w) = first.get_mut(orders[i].request.symbol.as_str()) {
            if last >= *w {
                out[i] = false;
                *w = (*w).min(earliest);
            }
        }
    }
    out
}

/// The lines of a folded journal after its clock: the fold, its positions and references,
/// then each order kept, as placed, with its changes and its cancel.
fn journal_of(fold: &Fold, max_id: i64, time: i64, kept: &[Order]) -> String {
    let mut lines = vec![Entry::Fold {
        gen: fold.gen,
        orders: fold.orders,
        time,
        max_id,
        cash_flows: fold.cash_flows,
    }];
    lines.extend(
        fold.base
            .iter()
            .map(|(symbol, &(quantity, avg))| Entry::Base {
                symbol: symbol.clone(),
                quantity,
                avg,
            }),
    );
    lines.extend(fold.refs.runs().into_iter().map(Entry::Folded));
    for o in kept {
        let (quantity, order_type) = o.placed_as;
        lines.push(Entry::Place {
            time: o.placed_at,
            id: o.id,
            request: OrderRequest {
                quantity,
                order_type,
                ..o.request.clone()
            },
            rejected: o.rejected.clone(),
        });
        for &(time, quantity, kind) in &o.changes {
            let limit = match kind {
                OrderType::Limit { price } => Some(price),
                OrderType::Market => None,
            };
            lines.push(Entry::Modify {
                time,
                change: bridge::protocol::OrderChange {
                    order_ref: o.request.order_ref.clone(),
                    quantity: Some(quantity),
                    limit,
                },
            });
        }
        if let Some(time) = o.cancelled_at {
            lines.push(Entry::Cancel {
                time,
                order_ref: o.request.order_ref.clone(),
            });
        }
    }
    lines.iter().map(Entry::to_line).collect()
}

/// Where a fold writes the journal before it is renamed over it.
pub fn fold_file(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".fold");
    PathBuf::from(name)
}

/// Writes `text` as the journal at `path`, whose file `held` is locked: to the fold file,
/// synced, renamed over the journal, and the directory synced. On failure the journal is as
/// it was. Returns the new journal's device and inode, or nothing, writing nothing, if `path`
/// is no longer `held` (its run removed it: a fold must not make it again).
fn rewrite(path: &Path, held: &File, text: &[u8]) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    let tmp = fold_file(path);
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(text)?;
            f.sync_all()?;
            f.metadata()
        })
        .and_then(|new| {
            let still = match std::fs::metadata(path) {
                Ok(now) => id(now) == id(held.metadata()?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            };
            if still {
                std::fs::rename(&tmp, path)?;
            }
            Ok(still.then(|| id(new)))
        });
    let new = match written {
        Ok(Some(new)) => new,
        Ok(None) => {
            let _ = std::fs::remove_file(&tmp);
            return Ok(None);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map(|()| Some(new))
}
