//! The symbols a session asked to stream ([`Subscriptions`]): each under the id it was first
//! given (its index), with its bar size and whether the worker made it.
//!
//! Invariants: an id is never given to another symbol (the supervisor holds it for the run,
//! and the stream names a bar's symbol by it); a symbol streams one bar size at a time; a
//! subscription is live only once the worker said it is made, and one not live is sent again
//! when asked for again (making a subscription again replaces it).

use parking_lot::Mutex;

use crate::bar::Bar;
use crate::failure::{Failure, FailureKind};

/// A live subscription's symbol and bar size; `live`: made (and restored on every new
/// worker).
struct Sub {
    symbol: String,
    bar_seconds: u32,
    live: bool,
}

/// Symbols asked for, by subscription id.
#[derive(Default)]
pub(super) struct Subscriptions {
    subs: Mutex<Vec<Sub>>,
}

impl Subscriptions {
    /// The id to subscribe `symbol` to bars of `bar_seconds` under; `None` if it streams
    /// them already. Refused if it streams bars of another size.
    pub(super) fn claim(&self, symbol: &str, bar_seconds: u32) -> Result<Option<u32>, Failure> {
        let mut subs = self.subs.lock();
        let id = match subs.iter().position(|s| s.symbol == symbol) {
            Some(i) if subs[i].live && subs[i].bar_seconds == bar_seconds => return Ok(None),
            Some(i) if subs[i].live => {
                return Err(Failure::new(
                    FailureKind::Config,
                    format!(
                        "{symbol} already streams {}-second bars in this session",
                        subs[i].bar_seconds
                    ),
                ))
            }
            Some(i) => {
                // Refused before: asked for again, under the id it was given.
                subs[i].bar_seconds = bar_seconds;
                i
            }
            None => {
                subs.push(Sub {
                    symbol: symbol.to_owned(),
                    bar_seconds,
                    live: false,
                });
                subs.len() - 1
            }
        };
        Ok(Some(id as u32))
    }

    /// Whether the worker made subscription `id`.
    pub(super) fn made(&self, id: u32, live: bool) {
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
