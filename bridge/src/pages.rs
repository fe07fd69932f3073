//! Lists that outgrow a frame: the broker's orders, executions, positions and folded
//! references grow with time and are answered in pages (as history is in batches), never as
//! one frame that cannot be sent. The worker splits a list reply with [`Reply::into_pages`]; the client joins the pages
//! with [`Pages`], so that a caller of `request` gets the whole list as one reply.
//!
//! Invariants: every page but the last is a page variant (not final), the last is the list's
//! own reply (final); the pages hold every item once, in order; each page encodes within the
//! budget it was cut for, so a list is refused only when one item alone exceeds it.

#![forbid(unsafe_code)]

use crate::codec::{self, CodecError};
use crate::protocol::{Fill, OrderReport, Position, RefRun, Reply};

/// Bytes a page's envelope may add to its items: the request id, the frame's and the reply's
/// variant tags and the list's length (variable-length integers of at most 10 bytes each).
pub const PAGE_OVERHEAD: usize = 48;

/// Why a reply cannot be cut into pages that fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpageable {
    /// Not a list: it travels whole or not at all.
    NotAList,
    /// One item alone encodes in `len` bytes, more than the budget.
    ItemTooLarge {
        /// The item's size.
        len: usize,
    },
    /// An item could not be encoded.
    Encode(CodecError),
}

impl Reply {
    /// Cuts a list reply ([`Reply::Orders`], [`Reply::Fills`], [`Reply::Positions`]) into
    /// pages whose items encode within `budget` bytes each (a page's envelope adds at most
    /// [`PAGE_OVERHEAD`]): every page but the last as its page variant, the last as the list's
    /// own reply. A list that fits is one page.
    pub fn into_pages(self, budget: usize) -> Result<Vec<Reply>, Unpageable> {
        match self {
            Reply::Orders(v) => cut(v, budget, Reply::OrdersPage, Reply::Orders),
            Reply::Fills(v) => cut(v, budget, Reply::FillsPage, Reply::Fills),
            Reply::Positions(v) => cut(v, budget, Reply::PositionsPage, Reply::Positions),
            Reply::Folded(v) => cut(v, budget, Reply::FoldedPage, Reply::Folded),
            _ => Err(Unpageable::NotAList),
        }
    }
}

/// `items` in pages of at most `budget` encoded bytes: `page` for all but the last, `last`
/// for the last.
fn cut<T: bincode::Encode>(
    items: Vec<T>,
    budget: usize,
    page: fn(Vec<T>) -> Reply,
    last: fn(Vec<T>) -> Reply,
) -> Result<Vec<Reply>, Unpageable> {
    let mut pages = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for item in items {
        let len = codec::encode(&item).map_err(Unpageable::Encode)?.len();
        if len > budget {
            return Err(Unpageable::ItemTooLarge { len });
        }
        if used + len > budget {
            pages.push(page(std::mem::take(&mut current)));
            used = 0;
        }
        used += len;
        current.push(item);
    }
    pages.push(last(current));
    Ok(pages)
}

/// The pages of one list reply received so far, joined into the whole list when its last
/// page (its final reply) comes.
#[derive(Debug, Default)]
pub struct Pages {
    orders: Vec<OrderReport>,
    fills: Vec<Fill>,
    positions: Vec<Position>,
    folded: Vec<RefRun>,
}

impl Pages {
    /// Keeps `reply` if it is a page; returns it otherwise (a history batch, say).
    pub fn keep(&mut self, reply: Reply) -> Option<Reply> {
        match reply {
            Reply::OrdersPage(v) => self.orders.extend(v),
            Reply::FillsPage(v) => self.fills.extend(v),
            Reply::PositionsPage(v) => self.positions.extend(v),
            Reply::FoldedPage(v) => self.folded.extend(v),
            other => return Some(other),
        }
        None
    }

    /// The final reply `last`, with the pages kept before it in front of its items.
    pub fn join(self, last: Reply) -> Reply {
        match last {
            Reply::Orders(v) => Reply::Orders(prepend(self.orders, v)),
            Reply::Fills(v) => Reply::Fills(prepend(self.fills, v)),
            Reply::Positions(v) => Reply::Positions(prepend(self.positions, v)),
            Reply::Folded(v) => Reply::Folded(prepend(self.folded, v)),
            other => other,
        }
    }
}

/// `before` followed by `rest`.
fn prepend<T>(mut before: Vec<T>, rest: Vec<T>) -> Vec<T> {
    if before.is_empty() {
        return rest;
    }
    before.extend(rest);
    before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(i: usize) -> Position {
        Position {
            account: "DU1".into(),
            symbol: format!("S{i:04}"),
            quantity: i as f64,
            avg_cost: 1.5,
        }
    }

    fn positions(n: usize) -> Vec<Position> {
        (0..n).map(position).collect()
    }

    #[test]
    fn a_list_is_cut_into_pages_that_fit_and_joined_whole_in_order() {
        let item = codec::encode(&position(0)).unwrap().len();
        let budget = item * 10 + item / 2;
        let pages = Reply::Positions(positions(95)).into_pages(budget).unwrap();
        assert_eq!(pages.len(), 10, "ten pages of ten, and the last of five");
        for page in &pages[..9] {
            assert!(page.is_page() && !page.is_final());
            let len = codec::encode(page).unwrap().len();
            assert!(len <= budget + PAGE_OVERHEAD, "{len}");
        }
        assert!(matches!(&pages[9], Reply::Positions(v) if v.len() == 5));
        let mut joined = Pages::default();
        let mut last = None;
        for page in pages {
            if page.is_final() {
                last = Some(page);
            } else {
                assert!(joined.keep(page).is_none());
            }
        }
        assert_eq!(joined.join(last.unwrap()), Reply::Positions(positions(95)));
    }

    #[test]
    fn a_list_that_fits_is_one_page_and_an_empty_one_too() {
        let pages = Reply::Fills(Vec::new()).into_pages(100).unwrap();
        assert_eq!(pages, vec![Reply::Fills(Vec::new())]);
        let pages = Reply::Positions(positions(3)).into_pages(10_000).unwrap();
        assert_eq!(pages, vec![Reply::Positions(positions(3))]);
    }

    #[test]
    fn what_cannot_be_cut_to_fit_is_said() {
        let item = codec::encode(&position(0)).unwrap().len();
        assert_eq!(
            Reply::Positions(positions(2)).into_pages(item - 1),
            Err(Unpageable::ItemTooLarge { len: item })
        );
        assert_eq!(
            Reply::Pong {
                payload: vec![0; 10]
            }
            .into_pages(1),
            Err(Unpageable::NotAList)
        );
    }

    #[test]
    fn folded_references_travel_in_pages_like_the_other_lists() {
        let runs: Vec<RefRun> = (0..40)
            .map(|i| RefRun {
                prefix: format!("run{i:03}"),
                numbers: Some((1, 1_000 + i)),
            })
            .collect();
        let pages = Reply::Folded(runs.clone()).into_pages(100).unwrap();
        assert!(pages.len() > 10, "{} pages", pages.len());
        let mut joined = Pages::default();
        let mut last = None;
        for page in pages {
            assert_ne!(page.is_page(), page.is_final());
            last = joined.keep(page);
        }
        assert_eq!(joined.join(last.unwrap()), Reply::Folded(runs));
    }

    #[test]
    fn a_reply_that_is_not_a_page_is_handed_back() {
        let mut pages = Pages::default();
        assert_eq!(
            pages.keep(Reply::Bars(Vec::new())),
            Some(Reply::Bars(Vec::new()))
        );
        assert_eq!(
            pages.join(Reply::HistoryEnd { count: 0 }),
            Reply::HistoryEnd { count: 0 }
        );
    }
}
