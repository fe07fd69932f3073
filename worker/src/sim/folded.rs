//! What the orders folded out of the simulated broker's book add up to ([`Fold`]), and
//! their references ([`RefSet`]): all that is left of them once `broker::fold` took them out.
//!
//! Invariants: a reference set holds each reference once, numbered ones as runs that neither
//! overlap nor touch; the totals change only by a fold, or by reading a folded journal.

use std::collections::{BTreeMap, BTreeSet};

use bridge::protocol::RefRun;

/// What the orders folded out of the book add up to.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Fold {
    /// How many times the journal was folded.
    pub(super) gen: u64,
    /// Orders folded, in all.
    pub(super) orders: u64,
    /// Their fills' cash flows, added up in the order the broker took them.
    pub(super) cash_flows: f64,
    /// The positions their fills add up to, by symbol: (shares, average cost).
    pub(super) base: BTreeMap<String, (f64, f64)>,
    /// Their references.
    pub(super) refs: RefSet,
}

/// A set of order references, numbered ones (`<prefix>-<n>`, as a run makes them) kept as
/// runs of numbers: a run's thousands of references take a few bytes.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct RefSet {
    numbered: BTreeMap<String, Vec<(u64, u64)>>,
    whole: BTreeSet<String>,
}

impl RefSet {
    pub(super) fn insert(&mut self, order_ref: &str) {
        match RefRun::split(order_ref) {
            (prefix, Some(n)) => self.insert_run(&RefRun {
                prefix: prefix.to_string(),
                numbers: Some((n, n)),
            }),
            (whole, None) => {
                self.whole.insert(whole.to_string());
            }
        }
    }

    pub(super) fn insert_run(&mut self, run: &RefRun) {
        let Some((a, b)) = run.numbers.filter(|(a, b)| a <= b) else {
            if run.numbers.is_none() {
                self.whole.insert(run.prefix.clone());
            }
            return;
        };
        let runs = self.numbered.entry(run.prefix.clone()).or_default();
        // The runs that overlap or touch [a, b] are runs[i..j]: merged into one.
        let i = runs.partition_point(|&(_, y)| y.saturating_add(1) < a);
        let j = runs.partition_point(|&(x, _)| x <= b.saturating_add(1));
        let merged = if i < j {
            (runs[i].0.min(a), runs[j - 1].1.max(b))
        } else {
            (a, b)
        };
        runs.splice(i..j, [merged]);
    }

    pub(super) fn contains(&self, order_ref: &str) -> bool {
        match RefRun::split(order_ref) {
            (prefix, Some(n)) => self.numbered.get(prefix).is_some_and(|runs| {
                let i = runs.partition_point(|&(_, y)| y < n);
                runs.get(i).is_some_and(|&(x, _)| x <= n)
            }),
            (whole, None) => self.whole.contains(whole),
        }
    }

    /// Every reference, as runs: numbered ones by prefix and number, then whole ones.
    pub(super) fn runs(&self) -> Vec<RefRun> {
        let numbered = self.numbered.iter().flat_map(|(prefix, runs)| {
            runs.iter().map(|&n| RefRun {
                prefix: prefix.clone(),
                numbers: Some(n),
            })
        });
        let whole = self.whole.iter().map(|r| RefRun {
            prefix: r.clone(),
            numbers: None,
        });
        numbered.chain(whole).collect()
    }
}
