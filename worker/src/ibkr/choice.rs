//! What a symbol's bars are made of and which hours they cover, in `ibapi`'s terms: the run's
//! choice (`what_to_show`, `use_rth`), unless the symbol's contract says otherwise.
//!
//! Invariants: a symbol's choice is the same for its history and its live bars; a contract's
//! own setting always wins over the run's.

use ibapi::prelude::{HistoricalWhatToShow, RealtimeWhatToShow, TradingHours};

use crate::options::{IbkrOptions, WhatToShow};

/// One symbol's market data choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DataChoice {
    pub(super) what: WhatToShow,
    pub(super) rth: bool,
}

impl DataChoice {
    /// The choice for `symbol` under `opts`.
    pub(super) fn of(opts: &IbkrOptions, symbol: &str) -> DataChoice {
        let spec = opts.contracts.iter().find(|c| c.symbol == symbol);
        DataChoice {
            what: spec
                .and_then(|c| c.what_to_show)
                .unwrap_or(opts.what_to_show),
            rth: spec.and_then(|c| c.use_rth).unwrap_or(opts.use_rth),
        }
    }

    pub(super) fn historical(self) -> HistoricalWhatToShow {
        match self.what {
            WhatToShow::Trades => HistoricalWhatToShow::Trades,
            WhatToShow::Midpoint => HistoricalWhatToShow::MidPoint,
            WhatToShow::Bid => HistoricalWhatToShow::Bid,
            WhatToShow::Ask => HistoricalWhatToShow::Ask,
        }
    }

    pub(super) fn realtime(self) -> RealtimeWhatToShow {
        match self.what {
            WhatToShow::Trades => RealtimeWhatToShow::Trades,
            WhatToShow::Midpoint => RealtimeWhatToShow::MidPoint,
            WhatToShow::Bid => RealtimeWhatToShow::Bid,
            WhatToShow::Ask => RealtimeWhatToShow::Ask,
        }
    }

    pub(super) fn hours(self) -> TradingHours {
        if self.rth {
            TradingHours::Regular
        } else {
            TradingHours::Extended
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ContractSpec;

    #[test]
    fn a_contract_overrides_the_runs_choice_field_by_field() {
        let opts = IbkrOptions {
            what_to_show: WhatToShow::Trades,
            use_rth: true,
            contracts: vec![ContractSpec {
                exchange: "IDEALPRO".into(),
                what_to_show: Some(WhatToShow::Midpoint),
                ..ContractSpec::smart_stock("EUR")
            }],
            ..IbkrOptions::default()
        };
        let spy = DataChoice::of(&opts, "SPY");
        assert_eq!((spy.what, spy.rth), (WhatToShow::Trades, true));
        assert!(matches!(spy.hours(), TradingHours::Regular));
        let eur = DataChoice::of(&opts, "EUR");
        assert_eq!((eur.what, eur.rth), (WhatToShow::Midpoint, true));
        assert!(matches!(eur.realtime(), RealtimeWhatToShow::MidPoint));
        assert!(matches!(eur.historical(), HistoricalWhatToShow::MidPoint));
    }
}
