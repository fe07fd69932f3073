//! Tests of the order types: changes applied to a report, the progress of statuses, paper
//! accounts.

use super::*;

fn request() -> OrderRequest {
    OrderRequest {
        order_ref: "run1-7".into(),
        symbol: "SPY".into(),
        side: Side::Buy,
        quantity: 10.0,
        order_type: OrderType::Limit { price: 5.0 },
        tif: TimeInForce::Gtc,
    }
}

#[test]
fn malformed_orders_are_told_why() {
    assert_eq!(request().check(), Ok(()));
    for (bad, says) in [
        (
            OrderRequest {
                order_ref: String::new(),
                ..request()
            },
            "order reference",
        ),
        (
            OrderRequest {
                order_ref: "a b".into(),
                ..request()
            },
            "order reference",
        ),
        (
            OrderRequest {
                order_ref: "x".repeat(41),
                ..request()
            },
            "order reference",
        ),
        (
            OrderRequest {
                quantity: 0.0,
                ..request()
            },
            "quantity",
        ),
        (
            OrderRequest {
                quantity: f64::NAN,
                ..request()
            },
            "quantity",
        ),
        (
            OrderRequest {
                order_type: OrderType::Limit { price: -1.0 },
                ..request()
            },
            "limit price",
        ),
    ] {
        let problem = bad.check().expect_err("refused").to_string();
        assert!(problem.contains(says), "{problem}");
    }
}

#[test]
fn a_change_applies_to_a_working_order_only_and_within_reason() {
    let working = OrderReport {
        request: request(),
        broker_id: 3,
        status: OrderStatus::PartiallyFilled,
        filled: 4.0,
        avg_price: Some(5.0),
        reason: None,
    };
    let change = |quantity, limit| OrderChange {
        order_ref: "run1-7".into(),
        quantity,
        limit,
    };
    let changed = change(Some(20.0), Some(4.5)).applied_to(&working).unwrap();
    assert_eq!(changed.quantity, 20.0);
    assert_eq!(changed.order_type, OrderType::Limit { price: 4.5 });
    assert_eq!(changed.order_ref, "run1-7");
    for (bad, says) in [
        (change(None, None), "nothing to change"),
        (
            change(Some(4.0), None),
            "more than the 4 shares already filled",
        ),
        (change(None, Some(0.0)), "limit price 0 must be positive"),
    ] {
        let e = bad.applied_to(&working).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    let market = OrderReport {
        request: OrderRequest {
            order_type: OrderType::Market,
            ..request()
        },
        ..working.clone()
    };
    assert_eq!(
        change(None, Some(4.0)).applied_to(&market).unwrap_err(),
        OrderProblem::NoLimit("run1-7".into())
    );
    let filled = OrderReport {
        status: OrderStatus::Filled,
        ..working
    };
    let refused = change(Some(30.0), None).applied_to(&filled).unwrap_err();
    assert_eq!(
        refused,
        OrderProblem::Final {
            order_ref: "run1-7".into(),
            status: OrderStatus::Filled
        }
    );
    assert_eq!(
        refused.to_string(),
        "order run1-7 is filled: it cannot change"
    );
}

#[test]
fn statuses_progress_in_declaration_order_and_the_last_three_are_final() {
    use OrderStatus::*;
    let all = OrderStatus::ALL;
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    let finals: Vec<_> = all.iter().filter(|s| s.is_final()).collect();
    assert_eq!(finals, vec![&Filled, &Cancelled, &Rejected]);
}

#[test]
fn paper_accounts_start_with_d() {
    assert!(is_paper_account("DU1234567"));
    assert!(is_paper_account("DF100"));
    assert!(!is_paper_account("U1234567"));
    assert!(!is_paper_account(""));
}
