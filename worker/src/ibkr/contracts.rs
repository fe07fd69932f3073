//! Which instrument a symbol names at IB: the contract built from the configuration
//! (`[ibkr.contracts.SYMBOL]`: kind, exchange, currency, primary exchange, IB's own symbol,
//! local symbol, expiry, contract id), then looked up once at the gateway unless its contract
//! id is given, so that a name IB knows several instruments by is an error that lists them,
//! never a guess.
//!
//! Invariants: a contract is looked up at most once per symbol and connection that succeeds
//! (the answer is kept); one match gives the contract its id; none is
//! [`ErrorKind::NoSecurityDefinition`]; several are [`ErrorKind::AmbiguousContract`], listing
//! each candidate's contract id, primary exchange, currency and local symbol.

use std::collections::HashMap;
use std::time::Duration;

use bridge::protocol::{ErrorKind, RemoteError};
use ibapi::prelude::{Contract, SecurityType};
use parking_lot::Mutex;

use super::connection::reconnected;
use super::errors::classify;
use crate::backend::error;
use crate::options::{IbkrOptions, SecType};

/// Deadline of one contract lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Times a lookup cut by a lost connection is sent again.
const LOOKUP_RETRIES: u32 = 3;

/// The contract of `symbol` as configured, else a SMART-routed USD stock.
pub(super) fn configured(opts: &IbkrOptions, symbol: &str) -> Contract {
    let Some(spec) = opts.contracts.iter().find(|c| c.symbol == symbol) else {
        return Contract::stock(symbol).build();
    };
    Contract {
        contract_id: spec.con_id.unwrap_or(0),
        symbol: spec.ib_symbol.as_deref().unwrap_or(symbol).into(),
        security_type: match spec.sec_type {
            SecType::Stock => SecurityType::Stock,
            SecType::Future => SecurityType::Future,
            SecType::Forex => SecurityType::ForexPair,
            SecType::Index => SecurityType::Index,
        },
        exchange: spec.exchange.as_str().into(),
        currency: spec.currency.as_str().into(),
        primary_exchange: spec.primary_exchange.as_deref().unwrap_or("").into(),
        local_symbol: spec.local_symbol.clone().unwrap_or_default(),
        last_trade_date_or_contract_month: spec.expiry.clone().unwrap_or_default(),
        ..Contract::default()
    }
}

/// Contracts looked up so far, by symbol.
#[derive(Default)]
pub(super) struct Resolved(Mutex<HashMap<String, Contract>>);

impl Resolved {
    /// The contract of `symbol`: as configured when it carries its contract id, else as the
    /// gateway knows it (exactly one instrument).
    pub(super) async fn contract(
        &self,
        client: &ibapi::Client,
        opts: &IbkrOptions,
        symbol: &str,
    ) -> Result<Contract, RemoteError> {
        if let Some(c) = self.0.lock().get(symbol) {
            return Ok(c.clone());
        }
        let mut contract = configured(opts, symbol);
        if contract.contract_id == 0 {
            let found = lookup(client, &contract, symbol).await?;
            let ids: Vec<Candidate> = found.iter().map(|d| Candidate::of(&d.contract)).collect();
            contract.contract_id = pick(symbol, &ids)?;
        }
        self.0.lock().insert(symbol.to_string(), contract.clone());
        Ok(contract)
    }
}

/// The gateway's contract details for `contract`, within [`LOOKUP_TIMEOUT`]; a lookup cut by
/// a lost connection (`ibapi` does not re-send it) is sent again once the gateway is back,
/// at most [`LOOKUP_RETRIES`] times.
async fn lookup(
    client: &ibapi::Client,
    contract: &Contract,
    symbol: &str,
) -> Result<Vec<ibapi::contracts::ContractDetails>, RemoteError> {
    let mut retries = 0;
    loop {
        match tokio::time::timeout(LOOKUP_TIMEOUT, client.contract_details(contract)).await {
            Err(_) => {
                return Err(error(
                    ErrorKind::Timeout,
                    format!(
                        "the contract of {symbol} not found within {} s",
                        LOOKUP_TIMEOUT.as_secs()
                    ),
                ))
            }
            Ok(Ok(found)) => return Ok(found),
            Ok(Err(e)) if e.is_connection_lost() && retries < LOOKUP_RETRIES => {
                retries += 1;
                tracing::warn!(
                    symbol,
                    "gateway connection lost mid-lookup; asking again after the reconnect"
                );
                if let Err(why) = reconnected(client, LOOKUP_TIMEOUT).await {
                    return Err(error(
                        ErrorKind::Disconnected,
                        format!("cannot look up {symbol}: {why}"),
                    ));
                }
            }
            Ok(Err(e)) => return Err(classify(&e)),
        }
    }
}

/// What tells one instrument from another in an ambiguity error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    con_id: i32,
    primary_exchange: String,
    currency: String,
    local_symbol: String,
}

impl Candidate {
    fn of(c: &Contract) -> Candidate {
        Candidate {
            con_id: c.contract_id,
            primary_exchange: c.primary_exchange.to_string(),
            currency: c.currency.to_string(),
            local_symbol: c.local_symbol.clone(),
        }
    }
}

/// The one contract id among `found`, or why there is none.
fn pick(symbol: &str, found: &[Candidate]) -> Result<i32, RemoteError> {
    match found {
        [one] => Ok(one.con_id),
        [] => Err(error(
            ErrorKind::NoSecurityDefinition,
            format!("IB knows no instrument for {symbol}"),
        )),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|c| {
                    format!(
                        "con_id {} on {} ({}, local symbol {:?})",
                        c.con_id, c.primary_exchange, c.currency, c.local_symbol
                    )
                })
                .collect();
            Err(error(
                ErrorKind::AmbiguousContract,
                format!(
                    "{symbol} names {} instruments: {}; name one with primary_exchange or con_id in [ibkr.contracts.{symbol}]",
                    many.len(),
                    list.join("; ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ContractSpec;

    fn opts(spec: ContractSpec) -> IbkrOptions {
        IbkrOptions {
            contracts: vec![spec],
            ..IbkrOptions::default()
        }
    }

    fn spec(symbol: &str) -> ContractSpec {
        ContractSpec::smart_stock(symbol)
    }

    #[test]
    fn a_configured_contract_carries_every_field() {
        let es = ContractSpec {
            exchange: "CME".into(),
            sec_type: SecType::Future,
            local_symbol: Some("ESZ6".into()),
            expiry: Some("202612".into()),
            ..spec("ES")
        };
        let c = configured(&opts(es), "ES");
        assert_eq!(c.security_type, SecurityType::Future);
        assert_eq!(c.exchange.to_string(), "CME");
        assert_eq!(c.local_symbol, "ESZ6");
        assert_eq!(c.last_trade_date_or_contract_month, "202612");
        let brk = ContractSpec {
            ib_symbol: Some("BRK B".into()),
            con_id: Some(72_063_691),
            ..spec("BRK.B")
        };
        let c = configured(&opts(brk), "BRK.B");
        assert_eq!(c.symbol.to_string(), "BRK B");
        assert_eq!(c.contract_id, 72_063_691);
        let eur = ContractSpec {
            sec_type: SecType::Forex,
            exchange: "IDEALPRO".into(),
            ib_symbol: Some("EUR".into()),
            ..spec("EURUSD")
        };
        assert_eq!(
            configured(&opts(eur), "EURUSD").security_type,
            SecurityType::ForexPair
        );
        let plain = configured(&opts(spec("X")), "SPY");
        assert_eq!(plain.security_type, SecurityType::Stock);
        assert_eq!(plain.symbol.to_string(), "SPY");
    }

    #[test]
    fn one_match_names_the_contract_none_or_several_are_errors_that_say_which() {
        let c = |id, p: &str| Candidate {
            con_id: id,
            primary_exchange: p.into(),
            currency: "USD".into(),
            local_symbol: "SPY".into(),
        };
        assert_eq!(pick("SPY", &[c(7, "ARCA")]), Ok(7));
        assert_eq!(
            pick("SPY", &[]).unwrap_err().kind,
            ErrorKind::NoSecurityDefinition
        );
        let e = pick("SPY", &[c(7, "NASDAQ"), c(8, "NYSE")]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AmbiguousContract);
        assert!(
            e.message.starts_with("SPY names 2 instruments: con_id 7 on NASDAQ (USD, local symbol \"SPY\"); con_id 8 on NYSE"),
            "{}",
            e.message
        );
        assert!(e.message.ends_with("[ibkr.contracts.SPY]"), "{}", e.message);
    }
}
