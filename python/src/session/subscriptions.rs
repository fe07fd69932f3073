//! The symbols a session streams ([`Subscriptions`]): each under the id it was first given
//! (its index), with how many streams want it, the bar size they want, and what the worker
//! has made of it.
//!
//! Invariants: an id is never given to another symbol (the supervisor holds it for the run,
//! and the stream names a bar's symbol by it); a symbol streams one bar size at a time; what
//! is wanted is recorded at once, in the caller's order, and the worker is brought to it
//! afterwards by whoever syncs ([`Subscriptions::step`]), so a stream closed and another
//! opened end subscribed however their requests interleave; a subscription is live only once
//! the worker said it is made.

use parking_lot::Mutex;

use crate::bar::Bar;
use crate::failure::{Failure, FailureKind};

/// A symbol a stream asked for.
struct Sub {
    symbol: String,
    /// The bar size wanted.
    bar_seconds: u32,
    /// How many streams want it.
    wanted: usize,
    /// The bar size the worker streams (and every new worker is given), once made.
    live: Option<u32>,
}

/// What is to be asked of the worker to bring a symbol to what is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Subscribe { id: u32, bar_seconds: u32 },
    Unsubscribe { id: u32 },
    Nothing,
}

/// Symbols asked for, by subscription id.
#[derive(Default)]
pub(super) struct Subscriptions {
    subs: Mutex<Vec<Sub>>,
}

impl Subscriptions {
    /// One more stream wants `symbol`'s bars of `bar_seconds`. Refused if another stream
    /// wants it in another size.
    pub(super) fn want(&self, symbol: &str, bar_seconds: u32) -> Result<(), Failure> {
        let mut subs = self.subs.lock();
        match subs.iter_mut().find(|s| s.symbol == symbol) {
            Some(s) if s.wanted > 0 && s.bar_seconds != bar_seconds => Err(Failure::new(
                FailureKind::Config,
                format!(
                    "{symbol} already streams {}-second bars in this session",
                    s.bar_seconds
                ),
            )),
            Some(s) => {
                s.wanted += 1;
                s.bar_seconds = bar_seconds;
                Ok(())
            }
            None => {
                subs.push(Sub {
                    symbol: symbol.to_owned(),
                    bar_seconds,
                    wanted: 1,
                    live: None,
                });
                Ok(())
            }
        }
    }

    /// One stream fewer wants `symbol`.
    pub(super) fn unwant(&self, symbol: &str) {
        if let Some(s) = self.subs.lock().iter_mut().find(|s| s.symbol == symbol) {
            s.wanted = s.wanted.saturating_sub(1);
        }
    }

    /// What to ask of the worker for `symbol` now.
    pub(super) fn step(&self, symbol: &str) -> Step {
        let subs = self.subs.lock();
        let Some(i) = subs.iter().position(|s| s.symbol == symbol) else {
            return Step::Nothing;
        };
        let (s, id) = (&subs[i], i as u32);
        match (s.wanted > 0, s.live) {
            (true, Some(size)) if size == s.bar_seconds => Step::Nothing,
            // Another size: the old one ends first.
            (true, Some(_)) | (false, Some(_)) => Step::Unsubscribe { id },
            (true, None) => Step::Subscribe {
                id,
                bar_seconds: s.bar_seconds,
            },
            (false, None) => Step::Nothing,
        }
    }

    /// What the worker made of subscription `id`: bars of this size, or none.
    pub(super) fn made(&self, id: u32, live: Option<u32>) {
        if let Some(s) = self.subs.lock().get_mut(id as usize) {
            s.live = live;
        }
    }

    /// `bars` by their subscription's symbol (a bar of an unknown id is left out).
    pub(super) fn name(&self, bars: Vec<(u32, Bar)>) -> Vec<(String, Bar)> {
        let subs = self.subs.lock();
        bars.into_iter()
            .filter_map(|(id, bar)| {
                let sub = subs.get(id as usize)?;
                Some((sub.symbol.clone(), bar))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symbol_is_subscribed_while_a_stream_wants_it_and_keeps_its_id() {
        let subs = Subscriptions::default();
        subs.want("SPY", 5).unwrap();
        subs.want("QQQ", 5).unwrap();
        assert_eq!(
            subs.step("QQQ"),
            Step::Subscribe {
                id: 1,
                bar_seconds: 5
            }
        );
        subs.made(1, Some(5));
        assert_eq!(subs.step("QQQ"), Step::Nothing);
        // Two streams want it; the first ending leaves it subscribed.
        subs.want("QQQ", 5).unwrap();
        subs.unwant("QQQ");
        assert_eq!(subs.step("QQQ"), Step::Nothing);
        subs.unwant("QQQ");
        assert_eq!(subs.step("QQQ"), Step::Unsubscribe { id: 1 });
        // Wanted again before the unsubscribe was sent: nothing to do.
        subs.want("QQQ", 5).unwrap();
        assert_eq!(subs.step("QQQ"), Step::Nothing);
        subs.unwant("QQQ");
        subs.made(1, None);
        assert_eq!(subs.step("QQQ"), Step::Nothing);
        subs.want("QQQ", 60).unwrap();
        assert_eq!(
            subs.step("QQQ"),
            Step::Subscribe {
                id: 1,
                bar_seconds: 60
            }
        );
        assert_eq!(subs.step("unknown"), Step::Nothing);
    }

    #[test]
    fn another_size_is_refused_while_wanted_and_replaces_the_old_once_not() {
        let subs = Subscriptions::default();
        subs.want("SPY", 5).unwrap();
        subs.made(0, Some(5));
        let refused = subs.want("SPY", 60).unwrap_err();
        assert_eq!(refused.category, FailureKind::Config);
        subs.unwant("SPY");
        subs.want("SPY", 60).unwrap();
        assert_eq!(subs.step("SPY"), Step::Unsubscribe { id: 0 });
        subs.made(0, None);
        assert_eq!(
            subs.step("SPY"),
            Step::Subscribe {
                id: 0,
                bar_seconds: 60
            }
        );
    }
}
