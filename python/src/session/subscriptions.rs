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

use bridge::protocol::{ConnectionStatus, Event, FeedState};
use parking_lot::Mutex;

use crate::failure::{Failure, FailureKind};
use crate::stream::{Item, News};

/// How a subscribed symbol's data comes, as its news said last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Streaming,
    Delayed,
    Refused,
    Stalled,
    Interrupted,
}

/// A symbol a stream asked for.
struct Sub {
    symbol: String,
    /// The bar size wanted.
    bar_seconds: u32,
    /// How many streams want it.
    wanted: usize,
    /// The bar size the worker streams (and every new worker is given), once made.
    live: Option<u32>,
    /// A subscribe is on its way to the worker: its news (a refusal, delayed data) may
    /// come before its answer does, and is kept.
    asking: bool,
    /// How its data comes, as its news said last.
    feed: Feed,
    /// Refused by the broker when it was subscribed (a failure of the subscribe itself).
    refused: bool,
}

impl Sub {
    /// Whether the worker's news of this symbol is told to its streams: it is subscribed, or
    /// being subscribed.
    fn told(&self) -> bool {
        self.live.is_some() || self.asking
    }
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
                    asking: false,
                    feed: Feed::Streaming,
                    refused: false,
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

    /// Subscription `id` is about to be asked of the worker: what the worker tells of it from
    /// now on is its news, even before the answer comes. A new subscription starts streaming.
    pub(super) fn asking(&self, id: u32) {
        if let Some(s) = self.subs.lock().get_mut(id as usize) {
            if s.live.is_none() {
                s.feed = Feed::Streaming;
                // A refusal of an earlier try is not this one's.
                s.refused = false;
            }
            s.asking = true;
        }
    }

    /// What the worker made of subscription `id`: bars of this size, or none (`refused`: the
    /// broker refused it). News told while it was asked for stands.
    pub(super) fn made(&self, id: u32, live: Option<u32>, refused: bool) {
        if let Some(s) = self.subs.lock().get_mut(id as usize) {
            s.live = live;
            s.asking = false;
            s.refused = refused;
        }
    }

    /// `items` by their subscription's symbol (one of an unknown id is left out).
    pub(super) fn name(&self, items: Vec<(u32, Item)>) -> Vec<(String, Item)> {
        let subs = self.subs.lock();
        items
            .into_iter()
            .filter_map(|(id, item)| {
                let sub = subs.get(id as usize)?;
                Some((sub.symbol.clone(), item))
            })
            .collect()
    }

    /// What `symbol`'s stream is now: `not_subscribed`, `subscribing`, `refused`,
    /// `streaming`, `delayed`, `stalled` or `interrupted`.
    pub(super) fn state(&self, symbol: &str) -> &'static str {
        let subs = self.subs.lock();
        let Some(s) = subs.iter().find(|s| s.symbol == symbol) else {
            return "not_subscribed";
        };
        let feed = match s.feed {
            Feed::Streaming => "streaming",
            Feed::Delayed => "delayed",
            Feed::Refused => "refused",
            Feed::Stalled => "stalled",
            Feed::Interrupted => "interrupted",
        };
        match (s.live, s.wanted > 0) {
            (None, false) => "not_subscribed",
            (None, true) if s.refused => "refused",
            // Being subscribed: what its news said already, if it said anything.
            (None, true) if s.asking && s.feed != Feed::Streaming => feed,
            (None, true) => "subscribing",
            (Some(_), _) => feed,
        }
    }

    /// A bar of subscription `id` came: its data flows.
    pub(super) fn bar_came(&self, id: u32) {
        if let Some(s) = self.subs.lock().get_mut(id as usize) {
            if matches!(s.feed, Feed::Stalled | Feed::Interrupted) {
                s.feed = Feed::Streaming;
            }
        }
    }

    /// The news `event` is of the subscribed symbols, by subscription id, their states
    /// updated; `replaced` says whether a `Connected` is a replacement worker's.
    pub(super) fn news(&self, event: &Event, replaced: bool) -> Vec<(u32, News)> {
        let mut subs = self.subs.lock();
        let one = |subs: &mut Vec<Sub>, symbol: &str, feed: Option<Feed>, news: News| {
            let Some(i) = subs.iter().position(|s| s.symbol == symbol && s.told()) else {
                return Vec::new();
            };
            if let Some(feed) = feed {
                subs[i].feed = feed;
            }
            vec![(i as u32, news)]
        };
        let every = |subs: &mut Vec<Sub>, feed: Option<Feed>, what: &'static str, why: String| {
            subs.iter_mut()
                .enumerate()
                .filter(|(_, s)| s.told())
                .map(|(i, s)| {
                    if let Some(feed) = feed {
                        s.feed = feed;
                    }
                    (i as u32, (what, None, None, why.clone()))
                })
                .collect()
        };
        match event {
            Event::Refused { symbol, error } => {
                let f = Failure::from_remote(error);
                one(
                    &mut subs,
                    symbol,
                    Some(Feed::Refused),
                    ("refused", f.kind, f.code, f.message),
                )
            }
            Event::Delayed { symbol, refused } => {
                let f = Failure::from_remote(refused);
                let news = ("delayed", f.kind, f.code, f.message);
                one(&mut subs, symbol, Some(Feed::Delayed), news)
            }
            Event::Feed { symbol, state } => match state {
                FeedState::Stalled { since } => {
                    let why = format!("no bar since {since} (Unix seconds)");
                    one(
                        &mut subs,
                        symbol,
                        Some(Feed::Stalled),
                        ("stalled", None, None, why),
                    )
                }
                FeedState::Flowing => {
                    let news = ("flowing", None, None, String::new());
                    one(&mut subs, symbol, Some(Feed::Streaming), news)
                }
                FeedState::Resubscribed { reason } => one(
                    &mut subs,
                    symbol,
                    None,
                    ("resubscribed", None, None, reason.clone()),
                ),
                FeedState::Ended => {
                    let why = "no bar will come any more (the replay's are over)".to_string();
                    one(&mut subs, symbol, None, ("ended", None, None, why))
                }
            },
            Event::Connection(status) => match status {
                ConnectionStatus::Connected if !replaced => Vec::new(),
                ConnectionStatus::Connected => every(
                    &mut subs,
                    Some(Feed::Streaming),
                    "worker_replaced",
                    "a new worker took over the broker connection".into(),
                ),
                ConnectionStatus::Lost { reason } => every(
                    &mut subs,
                    Some(Feed::Interrupted),
                    "interrupted",
                    reason.clone(),
                ),
                ConnectionStatus::Restored { data_lost } => {
                    let why = match data_lost {
                        true => "the broker connection is back; data was lost meanwhile",
                        false => "the broker connection is back",
                    };
                    every(&mut subs, Some(Feed::Streaming), "restored", why.into())
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
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
        subs.made(1, Some(5), false);
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
        subs.made(1, None, false);
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
        subs.made(0, Some(5), false);
        let refused = subs.want("SPY", 60).unwrap_err();
        assert_eq!(refused.category, FailureKind::Config);
        subs.unwant("SPY");
        subs.want("SPY", 60).unwrap();
        assert_eq!(subs.step("SPY"), Step::Unsubscribe { id: 0 });
        subs.made(0, None, false);
        assert_eq!(
            subs.step("SPY"),
            Step::Subscribe {
                id: 0,
                bar_seconds: 60
            }
        );
    }

    fn refusal(symbol: &str) -> Event {
        Event::Refused {
            symbol: symbol.into(),
            error: bridge::protocol::RemoteError {
                kind: bridge::protocol::ErrorKind::NotPermitted,
                message: "[354] Requested market data is not subscribed.".into(),
            },
        }
    }

    /// The worker answers a subscribe and tells of the symbol's feed on two paths: a refusal
    /// that overtakes the answer is still the stream's news, and the state it set stands.
    #[test]
    fn news_that_comes_before_the_subscribes_answer_is_kept() {
        let subs = Subscriptions::default();
        subs.want("SPY", 5).unwrap();
        subs.want("ZZZL", 5).unwrap();
        // Not asked for yet: nothing to tell.
        assert!(subs.news(&refusal("ZZZL"), false).is_empty());
        subs.asking(1);
        let news = subs.news(&refusal("ZZZL"), false);
        assert_eq!(news.len(), 1);
        assert_eq!(news[0].0, 1);
        assert_eq!((news[0].1).0, "refused");
        assert_eq!(subs.state("ZZZL"), "refused", "what the news said, at once");
        assert_eq!(subs.state("SPY"), "subscribing");
        subs.made(1, Some(5), false);
        assert_eq!(subs.state("ZZZL"), "refused");
        // A subscription made again starts afresh.
        subs.unwant("ZZZL");
        subs.made(1, None, false);
        subs.want("ZZZL", 5).unwrap();
        subs.asking(1);
        subs.made(1, Some(5), false);
        assert_eq!(subs.state("ZZZL"), "streaming");
        // Refused when subscribed, let go, wanted again: the new try's news is what counts.
        subs.want("QQQ", 5).unwrap();
        subs.asking(2);
        subs.made(2, None, true);
        assert_eq!(subs.state("QQQ"), "refused");
        subs.asking(2);
        let delayed = Event::Delayed {
            symbol: "QQQ".into(),
            refused: bridge::protocol::RemoteError {
                kind: bridge::protocol::ErrorKind::NotPermitted,
                message: "[10089] delayed data instead".into(),
            },
        };
        assert_eq!(subs.news(&delayed, false).len(), 1);
        assert_eq!(subs.state("QQQ"), "delayed");
    }
}
