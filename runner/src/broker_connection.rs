//! What the run saw of the broker connection: losses and restorations (as the worker reports
//! them, `Event::Connection`) and the symbols whose live data the broker refused
//! (`Event::Refused`), for the log, the summary table and its counters.
//!
//! Invariants: `down` is the reason of the last loss not followed by a restoration; a symbol
//! refused stays refused for the rest of the run (a restoration makes subscriptions again,
//! and a refusal then comes again).

use std::collections::BTreeMap;

use bridge::protocol::{ConnectionStatus, ErrorKind, FeedState, RemoteError};

/// The broker connection's history in one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerConnection {
    /// Losses seen (IB 1100, or the socket to the gateway).
    pub lost: u32,
    /// Restorations after which the broker had dropped every market data request (IB 1101,
    /// or a new socket): the worker made the subscriptions again.
    pub restored_data_lost: u32,
    /// Restorations with market data kept (IB 1102).
    pub restored_data_kept: u32,
    /// Reconnection attempts to the gateway, in all.
    pub reconnect_attempts: u32,
    /// Why the worker stopped trying to reconnect, if it did: the run fails.
    pub gave_up: Option<String>,
    /// Why the connection is down now, if it is.
    pub down: Option<String>,
    /// Symbols whose live data the broker refused, with why, in words.
    pub refused: BTreeMap<String, String>,
    /// Symbols whose live bars come from the broker's delayed feed since their live data
    /// was refused, with why, in words.
    pub delayed: BTreeMap<String, String>,
    /// Live feeds found silent and made again (the worker logs each, with why).
    pub resubscribed: u32,
    /// Symbols whose live feed is stalled now (silent even after it was made again), with
    /// since when (Unix seconds).
    pub stalled: BTreeMap<String, i64>,
}

impl BrokerConnection {
    /// Takes in a change of the connection, and logs it.
    pub fn observe(&mut self, status: &ConnectionStatus) {
        match status {
            ConnectionStatus::Connected => {
                // A new worker's connection: whatever the one before lost is behind us.
                self.down = None;
                tracing::info!("broker connected");
            }
            ConnectionStatus::Lost { reason } => {
                self.lost += 1;
                self.down = Some(reason.clone());
                tracing::warn!(
                    "broker connection lost ({reason}): live bars stop until it is restored"
                );
            }
            ConnectionStatus::Restored { data_lost: true } => {
                self.restored_data_lost += 1;
                self.down = None;
                tracing::warn!(
                    "broker connection restored; the broker had dropped the live subscriptions, the worker made them again"
                );
            }
            ConnectionStatus::Restored { data_lost: false } => {
                self.restored_data_kept += 1;
                self.down = None;
                tracing::info!("broker connection restored; live subscriptions kept");
            }
            ConnectionStatus::Reconnecting { attempt } => {
                self.reconnect_attempts += 1;
                tracing::info!("reconnecting to the gateway: attempt {attempt}");
            }
            ConnectionStatus::GaveUp { attempts, reason } => {
                let why = format!("gave up reconnecting after {attempts} attempt(s): {reason}");
                tracing::error!("broker connection {why}");
                self.gave_up = Some(why);
            }
        }
    }

    /// Takes in a refusal of `symbol`'s live data, and logs it.
    pub fn refuse(&mut self, symbol: &str, error: &RemoteError) {
        let why = refusal_text(error);
        tracing::warn!(%symbol, "live data refused: {why}");
        // Delayed data too, if it was the fallback.
        self.delayed.remove(symbol);
        self.refused.insert(symbol.to_string(), why);
    }

    /// Takes in that `symbol`'s live data was refused and its bars now come from the
    /// broker's delayed feed, and logs it.
    pub fn delayed(&mut self, symbol: &str, refused: &RemoteError) {
        let why = refusal_text(refused);
        tracing::warn!(%symbol, "live data refused ({why}): bars from delayed data instead");
        self.refused.remove(symbol);
        self.delayed.insert(symbol.to_string(), why);
    }

    /// `symbol`'s live data flows again (a refusal that lifted: a competing session gone, a
    /// subscription bought): it is no longer refused.
    pub fn flowing(&mut self, symbol: &str) {
        if self.refused.remove(symbol).is_some() {
            tracing::info!(%symbol, "live data flows again");
        }
    }

    /// Takes in a change of `symbol`'s live feed (the worker logged it, with why).
    pub fn feed(&mut self, symbol: &str, state: &FeedState) {
        match state {
            FeedState::Resubscribed { .. } => self.resubscribed += 1,
            FeedState::Stalled { since } => {
                self.stalled.insert(symbol.to_string(), *since);
            }
            FeedState::Flowing => {
                self.stalled.remove(symbol);
            }
            FeedState::Ended => tracing::info!(%symbol, "no more bars: the replay's are over"),
        }
    }

    /// A live bar of `symbol` came: whatever kept its data away is over.
    pub fn bar(&mut self, symbol: &str) {
        self.stalled.remove(symbol);
        self.flowing(symbol);
    }

    /// The summary's line, if anything happened to the connection.
    pub fn summary_line(&self) -> Option<String> {
        if self.lost == 0
            && self.refused.is_empty()
            && self.delayed.is_empty()
            && self.down.is_none()
            && self.gave_up.is_none()
            && self.resubscribed == 0
            && self.stalled.is_empty()
        {
            return None;
        }
        let mut line = format!(
            "broker connection: lost {}, reconnection attempts {}, restored {} (market data lost and subscriptions made again {}, kept {}), live data refused for {} symbol(s), delayed data for {}",
            self.lost,
            self.reconnect_attempts,
            self.restored_data_lost + self.restored_data_kept,
            self.restored_data_lost,
            self.restored_data_kept,
            self.refused.len(),
            self.delayed.len()
        );
        if self.resubscribed > 0 || !self.stalled.is_empty() {
            line.push_str(&format!(
                "; silent live feeds made again {}, stalled at the end {}",
                self.resubscribed,
                self.stalled.len()
            ));
        }
        if let Some(reason) = &self.down {
            line.push_str(&format!("; down at the end ({reason})"));
        }
        if let Some(why) = &self.gave_up {
            line.push_str(&format!("; {why}"));
        }
        Some(line)
    }
}

/// A refusal in words, with the broker's own message (which carries its code).
pub fn refusal_text(e: &RemoteError) -> String {
    let what = match e.kind {
        ErrorKind::NotPermitted => "no market data permission or subscription",
        ErrorKind::CompetingSession => "a competing live session holds the market data",
        ErrorKind::NoSecurityDefinition => "no such contract",
        ErrorKind::Pacing => "pacing",
        ErrorKind::NoData => "no data",
        _ => "refused",
    };
    format!("{what}: {}", e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_and_restorations_are_counted_and_the_state_follows_them() {
        let mut b = BrokerConnection::default();
        assert_eq!(b.summary_line(), None);
        b.observe(&ConnectionStatus::Connected);
        b.observe(&ConnectionStatus::Lost {
            reason: "1100".into(),
        });
        assert_eq!(b.down.as_deref(), Some("1100"));
        b.observe(&ConnectionStatus::Restored { data_lost: true });
        b.observe(&ConnectionStatus::Lost {
            reason: "socket".into(),
        });
        b.observe(&ConnectionStatus::Reconnecting { attempt: 1 });
        b.observe(&ConnectionStatus::Reconnecting { attempt: 2 });
        b.observe(&ConnectionStatus::Restored { data_lost: false });
        b.observe(&ConnectionStatus::Lost {
            reason: "again".into(),
        });
        assert_eq!(
            (b.lost, b.restored_data_lost, b.restored_data_kept),
            (3, 1, 1)
        );
        assert_eq!(
            b.summary_line().unwrap(),
            "broker connection: lost 3, reconnection attempts 2, restored 2 (market data lost and subscriptions made again 1, kept 1), live data refused for 0 symbol(s), delayed data for 0; down at the end (again)"
        );
        assert_eq!(b.gave_up, None);
        b.observe(&ConnectionStatus::GaveUp {
            attempts: 3,
            reason: "connection refused".into(),
        });
        assert_eq!(
            b.gave_up.as_deref(),
            Some("gave up reconnecting after 3 attempt(s): connection refused")
        );
        assert!(b
            .summary_line()
            .unwrap()
            .ends_with("; down at the end (again); gave up reconnecting after 3 attempt(s): connection refused"));
    }

    #[test]
    fn silent_feeds_are_counted_and_a_stall_lasts_until_data_comes() {
        let mut b = BrokerConnection::default();
        let resubscribed = FeedState::Resubscribed {
            reason: "no live data for 60 s".into(),
        };
        b.feed("SPY", &resubscribed);
        b.feed("QQQ", &resubscribed);
        b.feed(
            "QQQ",
            &FeedState::Stalled {
                since: 1_700_000_000,
            },
        );
        b.feed(
            "IWM",
            &FeedState::Stalled {
                since: 1_700_000_005,
            },
        );
        assert_eq!(b.resubscribed, 2);
        assert_eq!(
            b.stalled.iter().collect::<Vec<_>>(),
            [
                (&"IWM".to_string(), &1_700_000_005),
                (&"QQQ".to_string(), &1_700_000_000)
            ]
        );
        b.feed("IWM", &FeedState::Flowing);
        assert_eq!(
            b.summary_line().unwrap(),
            "broker connection: lost 0, reconnection attempts 0, restored 0 (market data lost and subscriptions made again 0, kept 0), live data refused for 0 symbol(s), delayed data for 0; silent live feeds made again 2, stalled at the end 1"
        );
        b.bar("QQQ");
        assert!(b.stalled.is_empty(), "a bar ends a stall");
    }

    #[test]
    fn a_refusal_says_why_in_words_and_keeps_the_brokers_code() {
        let mut b = BrokerConnection::default();
        b.refuse(
            "TSLA",
            &RemoteError {
                kind: ErrorKind::NotPermitted,
                message: "[354] Requested market data is not subscribed.".into(),
            },
        );
        assert_eq!(
            b.refused["TSLA"],
            "no market data permission or subscription: [354] Requested market data is not subscribed."
        );
        assert!(b
            .summary_line()
            .unwrap()
            .ends_with("refused for 1 symbol(s), delayed data for 0"));
    }

    #[test]
    fn a_new_connection_and_flowing_data_lift_what_was_lost_or_refused() {
        let mut b = BrokerConnection::default();
        b.observe(&ConnectionStatus::Lost {
            reason: "socket".into(),
        });
        // The worker was replaced meanwhile: its successor connected.
        b.observe(&ConnectionStatus::Connected);
        assert_eq!(b.down, None);
        b.refuse(
            "SPY",
            &RemoteError {
                kind: ErrorKind::CompetingSession,
                message: "[10197] No market data during competing live session".into(),
            },
        );
        b.flowing("SPY");
        assert!(b.refused.is_empty());
    }

    #[test]
    fn a_symbol_on_delayed_data_is_not_refused_and_says_why() {
        let mut b = BrokerConnection::default();
        let not_subscribed = RemoteError {
            kind: ErrorKind::NotPermitted,
            message: "[354] Requested market data is not subscribed.".into(),
        };
        b.refuse("SPY", &not_subscribed);
        b.delayed("SPY", &not_subscribed);
        assert!(b.refused.is_empty());
        assert_eq!(
            b.delayed["SPY"],
            "no market data permission or subscription: [354] Requested market data is not subscribed."
        );
        assert!(b.summary_line().unwrap().ends_with("delayed data for 1"));
    }
}
