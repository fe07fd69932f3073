//! The account at IB: whether it may trade ([`check_account`]), its positions and its
//! figures (net liquidation, cash, buying power).
//!
//! Invariants: a live (non-paper) account is refused before anything is sent unless
//! `allow_live`; a query answers within [`QUERY_WAIT`] or fails with a timeout; an account
//! summary lacking a figure is an error, never a zero.

use bridge::protocol::{is_paper_account, AccountSummary, ErrorKind, Position, RemoteError};
use ibapi::accounts::types::AccountGroup;
use ibapi::accounts::{AccountSummaryResult, PositionUpdate};
use ibapi::prelude::{StreamExt, SubscriptionItem};

use super::errors::classify;
use super::query::QUERY_WAIT;
use crate::backend::error;

/// Refuses trading on a live account unless allowed.
pub(super) fn check_account(accounts: &[String], allow_live: bool) -> Result<(), RemoteError> {
    let live: Vec<&str> = accounts
        .iter()
        .filter(|a| !is_paper_account(a))
        .map(String::as_str)
        .collect();
    if allow_live || live.is_empty() {
        return Ok(());
    }
    Err(error(
        ErrorKind::LiveAccount,
        format!(
            "the gateway manages a live account ({}): orders refused without allow_live",
            live.join(", ")
        ),
    ))
}

/// The positions the gateway reports.
pub(super) async fn positions(client: &ibapi::Client) -> Result<Vec<Position>, RemoteError> {
    let mut sub = client.positions().await.map_err(|e| classify(&e))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + QUERY_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(SubscriptionItem::Data(PositionUpdate::Position(p))))) => {
                out.push(Position {
                    account: p.account,
                    symbol: p.contract.symbol.to_string(),
                    quantity: p.position,
                    avg_cost: p.average_cost,
                })
            }
            Ok(Some(Ok(SubscriptionItem::Data(PositionUpdate::PositionEnd)))) | Ok(None) => {
                return Ok(out)
            }
            Ok(Some(Ok(SubscriptionItem::Notice(_)))) => {}
            Ok(Some(Err(e))) => return Err(classify(&e)),
            Err(_) => return Err(error(ErrorKind::Timeout, "positions not received in time")),
        }
    }
}

/// The account figures of `account` (or the first account reported).
pub(super) async fn account(
    client: &ibapi::Client,
    account: Option<&str>,
) -> Result<AccountSummary, RemoteError> {
    let tags = ["NetLiquidation", "TotalCashValue", "BuyingPower"];
    let mut sub = client
        .account_summary(&AccountGroup("All".into()), &tags)
        .await
        .map_err(|e| classify(&e))?;
    let mut rows: Vec<ibapi::accounts::AccountSummary> = Vec::new();
    let deadline = tokio::time::Instant::now() + QUERY_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(SubscriptionItem::Data(AccountSummaryResult::Summary(s))))) => rows.push(s),
            Ok(Some(Ok(SubscriptionItem::Data(AccountSummaryResult::End)))) | Ok(None) => break,
            Ok(Some(Ok(SubscriptionItem::Notice(_)))) => {}
            Ok(Some(Err(e))) => return Err(classify(&e)),
            Err(_) => {
                return Err(error(
                    ErrorKind::Timeout,
                    "account summary not received in time",
                ))
            }
        }
    }
    let name = account
        .map(str::to_string)
        .or_else(|| rows.first().map(|r| r.account.clone()))
        .ok_or_else(|| error(ErrorKind::NoData, "no account summary"))?;
    let value = |tag: &str| {
        rows.iter()
            .find(|r| r.account == name && r.tag == tag)
            .and_then(|r| r.value.parse::<f64>().ok())
    };
    let currency = rows
        .iter()
        .find(|r| r.account == name && !r.currency.is_empty())
        .map_or_else(|| "USD".to_string(), |r| r.currency.clone());
    match (
        value("NetLiquidation"),
        value("TotalCashValue"),
        value("BuyingPower"),
    ) {
        (Some(net_liquidation), Some(cash), Some(buying_power)) => Ok(AccountSummary {
            account: name,
            net_liquidation,
            cash,
            buying_power,
            currency,
        }),
        _ => Err(error(
            ErrorKind::NoData,
            format!("the account summary of {name} lacks a figure"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paper_accounts_trade_without_allow_live() {
        assert!(check_account(&["DU1".into()], false).is_ok());
        let e = check_account(&["DU1".into(), "U2".into()], false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::LiveAccount);
        assert!(e.message.contains("(U2)"), "{}", e.message);
        assert!(check_account(&["U2".into()], true).is_ok());
    }
}
