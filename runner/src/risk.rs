//! Risk limits, checked in the runner before an order leaves ([`RiskLimits::check`]).
//!
//! Invariants: a refused order names the limit (its configuration key) and the figures: it never
//! reaches the worker, and it does not count against the rate limit.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bridge::protocol::{OrderRequest, OrderType};

use crate::config::TradingConfig;

/// The window of `max_orders_per_minute`.
const MINUTE: Duration = Duration::from_secs(60);

/// An order refused by a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitBreach {
    /// The limit's configuration key (`trading.max_order_quantity`, ...).
    pub limit: &'static str,
    /// What the order would have done, against the limit.
    pub detail: String,
}

impl fmt::Display for LimitBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by {}: {}", self.limit, self.detail)
    }
}

impl std::error::Error for LimitBreach {}

/// The configured limits, and the orders of the last minute.
#[derive(Debug)]
pub struct RiskLimits {
    max_order_quantity: f64,
    max_order_value: f64,
    max_position: f64,
    max_orders_per_minute: u32,
    sent: VecDeque<Instant>,
}

impl RiskLimits {
    /// The limits of `cfg`.
    pub fn new(cfg: &TradingConfig) -> Self {
        RiskLimits {
            max_order_quantity: cfg.max_order_quantity,
            max_order_value: cfg.max_order_value,
            max_position: cfg.max_position,
            max_orders_per_minute: cfg.max_orders_per_minute,
            sent: VecDeque::new(),
        }
    }

    /// Checks `order` at `now`, valued at its limit price or else at `last_price`, against a
    /// holding of `position` shares in its symbol; counts it as sent if it passes.
    pub fn check(
        &mut self,
        order: &OrderRequest,
        last_price: Option<f64>,
        position: f64,
        now: Instant,
    ) -> Result<(), LimitBreach> {
        if order.quantity > self.max_order_quantity {
            return Err(LimitBreach {
                limit: "trading.max_order_quantity",
                detail: format!(
                    "{} shares, at most {}",
                    order.quantity, self.max_order_quantity
                ),
            });
        }
        let price = match order.order_type {
            OrderType::Limit { price } => Some(price),
            OrderType::Market => last_price,
        };
        let Some(price) = price.filter(|p| p.is_finite() && *p > 0.0) else {
            return Err(LimitBreach {
                limit: "trading.max_order_value",
                detail: format!(
                    "no price known for {} to value a market order",
                    order.symbol
                ),
            });
        };
        let value = order.quantity * price;
        if value > self.max_order_value {
            return Err(LimitBreach {
                limit: "trading.max_order_value",
                detail: format!(
                    "{} shares at {price:.2} is {value:.2}, at most {}",
                    order.quantity, self.max_order_value
                ),
            });
        }
        let after = position + order.side.sign() * order.quantity;
        if after.abs() > self.max_position {
            return Err(LimitBreach {
                limit: "trading.max_position",
                detail: format!(
                    "{} would hold {after} shares, at most {} either way",
                    order.symbol, self.max_position
                ),
            });
        }
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= MINUTE)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.max_orders_per_minute as usize {
            return Err(LimitBreach {
                limit: "trading.max_orders_per_minute",
                detail: format!(
                    "{} orders sent in the last 60 s, at most {}",
                    self.sent.len(),
                    self.max_orders_per_minute
                ),
            });
        }
        self.sent.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::protocol::{Side, TimeInForce};

    fn limits() -> RiskLimits {
        RiskLimits::new(&TradingConfig {
            max_order_quantity: 100.0,
            max_order_value: 10_000.0,
            max_position: 150.0,
            max_orders_per_minute: 3,
            ..TradingConfig::default()
        })
    }

    fn order(side: Side, quantity: f64, order_type: OrderType) -> OrderRequest {
        OrderRequest {
            order_ref: "r".into(),
            symbol: "SPY".into(),
            side,
            quantity,
            order_type,
            tif: TimeInForce::Day,
        }
    }

    #[test]
    fn each_limit_refuses_with_its_name_and_figures() {
        let now = Instant::now();
        let mut l = limits();
        let e = l
            .check(
                &order(Side::Buy, 101.0, OrderType::Market),
                Some(1.0),
                0.0,
                now,
            )
            .unwrap_err();
        assert_eq!(e.limit, "trading.max_order_quantity");
        assert_eq!(e.detail, "101 shares, at most 100");
        let e = l
            .check(
                &order(Side::Buy, 100.0, OrderType::Limit { price: 100.5 }),
                Some(1.0),
                0.0,
                now,
            )
            .unwrap_err();
        assert_eq!(e.limit, "trading.max_order_value");
        assert_eq!(e.detail, "100 shares at 100.50 is 10050.00, at most 10000");
        let e = l
            .check(
                &order(Side::Sell, 60.0, OrderType::Market),
                Some(10.0),
                -100.0,
                now,
            )
            .unwrap_err();
        assert_eq!(e.limit, "trading.max_position");
        assert_eq!(
            e.detail,
            "SPY would hold -160 shares, at most 150 either way"
        );
        let e = l
            .check(&order(Side::Buy, 1.0, OrderType::Market), None, 0.0, now)
            .unwrap_err();
        assert_eq!(e.limit, "trading.max_order_value");
        assert!(e
            .to_string()
            .starts_with("refused by trading.max_order_value: no price"));
    }

    #[test]
    fn the_rate_limit_counts_only_orders_sent_in_the_last_minute() {
        let t0 = Instant::now();
        let mut l = limits();
        let ok = order(Side::Buy, 1.0, OrderType::Market);
        // A refused order does not count.
        assert!(l
            .check(
                &order(Side::Buy, 1e6, OrderType::Market),
                Some(1.0),
                0.0,
                t0
            )
            .is_err());
        for i in 0..3 {
            l.check(&ok, Some(1.0), 0.0, t0 + Duration::from_secs(i))
                .unwrap();
        }
        let e = l
            .check(&ok, Some(1.0), 0.0, t0 + Duration::from_secs(59))
            .unwrap_err();
        assert_eq!(e.limit, "trading.max_orders_per_minute");
        assert_eq!(e.detail, "3 orders sent in the last 60 s, at most 3");
        // The first one leaves the window at 60 s.
        l.check(&ok, Some(1.0), 0.0, t0 + Duration::from_secs(60))
            .unwrap();
    }
}
