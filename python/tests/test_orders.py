"""Orders from Python on the simulated market: the runner's trader (exactly once, risk limits,
the book), refusals as exceptions of their kinds, a worker killed after the broker took an
order."""

import os
import signal
import time

import pytest

import ibbridge
from conftest import wait_gone

# The simulated market 600 times real time: an order fills at the next minute's bar, 0.1 s on.
FAST = 600.0


def until(seconds, f):
    """Polls `f` until it returns something true, at most `seconds`; its last answer."""
    deadline = time.monotonic() + seconds
    got = f()
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
        got = f()
    return got


def test_without_trade_every_order_call_is_a_config_error():
    with ibbridge.Session(backend="sim") as s:
        s.connect()
        for call in (
            lambda: s.place_order("SPY", "buy", 1),
            lambda: s.cancel_order("x"),
            lambda: s.orders(),
        ):
            with pytest.raises(ibbridge.ConfigError, match=r"trade=True"):
                call()


def test_a_market_order_is_taken_filled_once_and_held():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        order = s.place_order("SPY", "buy", 10)
        assert (order.symbol, order.side, order.quantity, order.limit, order.tif) == (
            "SPY", "buy", 10.0, None, "DAY"
        )
        assert order.status in ("working", "partially_filled", "filled")
        assert order.broker_id > 0 and order.ref
        fills = until(10, lambda: [f for f in s.fills() if f.ref == order.ref])
        assert len(fills) == 1, fills
        (fill,) = fills
        assert (fill.symbol, fill.side, fill.quantity) == ("SPY", "buy", 10.0)
        assert fill.price > 0 and fill.commission is not None and fill.time > 0
        done = until(10, lambda: [o for o in s.orders() if o.ref == order.ref and o.final])
        assert done and done[0].status == "filled" and done[0].filled == 10.0
        assert done[0].avg_price == pytest.approx(fill.price)
        held = {p.symbol: p.quantity for p in s.positions()}
        assert held == {"SPY": 10.0}


def test_the_same_ref_placed_twice_is_one_order():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        first = s.place_order("QQQ", "buy", 5, limit=1.0, ref="mine-1")
        again = s.place_order("QQQ", "buy", 5, limit=1.0, ref="mine-1")
        assert first.ref == again.ref == "mine-1"
        assert first.broker_id == again.broker_id
        assert [o.ref for o in s.orders()] == ["mine-1"]
        with pytest.raises(ibbridge.ConfigError, match="other terms"):
            s.place_order("QQQ", "buy", 6, limit=1.0, ref="mine-1")
        assert len(s.orders()) == 1


def test_a_working_order_is_cancelled_and_cancel_all_counts():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        # Far below the market: it works and never fills.
        a = s.place_order("SPY", "buy", 1, limit=1.0)
        b = s.place_order("SPY", "buy", 2, limit=1.0, tif="GTC")
        assert a.status == b.status == "working" and b.tif == "GTC"
        cancelled = s.cancel_order(a.ref)
        assert cancelled.ref == a.ref and cancelled.status == "cancelled"
        assert s.cancel_all() == 1
        final = until(10, lambda: all(o.final for o in s.orders()) and s.orders())
        assert {o.ref: o.status for o in final} == {a.ref: "cancelled", b.ref: "cancelled"}
        assert s.fills() == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(quantity=0), "quantity"),
        (dict(quantity=-3), "quantity"),
        (dict(quantity=float("nan")), "quantity"),
        (dict(quantity="10"), "quantity"),
        (dict(side="hold"), "side"),
        (dict(limit=-1.0), "limit"),
        (dict(limit=0.0), "limit"),
        (dict(tif="IOC"), "tif"),
        (dict(ref="x" * 200), "ref"),
        (dict(ref="bad ref\n"), "ref"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(kwargs, message):
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        args = dict(symbol="SPY", side="buy", quantity=1)
        args.update(kwargs)
        symbol, side, quantity = args.pop("symbol"), args.pop("side"), args.pop("quantity")
        with pytest.raises(ibbridge.ConfigError, match=message):
            s.place_order(symbol, side, quantity, **args)
        assert s.orders() == []


def test_a_risk_limit_refuses_before_anything_leaves():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        with pytest.raises(ibbridge.RiskLimit) as refused:
            s.place_order("SPY", "buy", 5000, limit=10.0)
        assert refused.value.limit == "trading.max_order_quantity"
        assert "5000" in str(refused.value)
        with pytest.raises(ibbridge.RiskLimit) as refused:
            s.place_order("SPY", "buy", 900, limit=500.0)
        assert refused.value.limit == "trading.max_order_value"
        assert s.orders() == []


def test_a_worker_killed_after_the_broker_took_the_order_leaves_one_order_and_one_fill():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        order = s.place_order("AAPL", "buy", 3)
        victim = s.worker_pid
        os.kill(victim, signal.SIGKILL)
        assert wait_gone(victim, 5)
        # The replacement tells what it learns; the fill is counted once.
        fills = until(20, lambda: [f for f in s.fills() if f.ref == order.ref])
        assert len(fills) == 1, fills
        # The fill may have come before the kill: the replacement may take a moment more.
        assert until(20, lambda: s.worker_pid not in (None, victim))
        assert [f.exec_id for f in s.fills()] == [fills[0].exec_id]
        assert s.stats()["restarts"] >= 1
        assert [o.ref for o in s.orders()] == [order.ref]
        assert {p.symbol: p.quantity for p in s.positions()} == {"AAPL": 3.0}


@pytest.mark.parametrize("cancel_on_exit", [True, False])
def test_closing_cancels_the_working_orders_when_configured(tmp_path, cancel_on_exit):
    journal = tmp_path / "orders.journal"
    config = tmp_path / "trading.toml"
    config.write_text(
        f'[sim]\norders_file = "{journal}"\n'
        f"[trading]\ncancel_on_exit = {str(cancel_on_exit).lower()}\n"
    )
    with ibbridge.Session(backend="sim", trade=True, speed=FAST, config=config) as s:
        s.connect()
        working = s.place_order("SPY", "buy", 1, limit=1.0)
        filled = s.place_order("SPY", "buy", 1)
        until(10, lambda: any(f.ref == filled.ref for f in s.fills()))
    lines = journal.read_text().splitlines()
    placed = [l.split("\t")[3] for l in lines if l.startswith("P\t")]
    cancelled = [l.split("\t")[2] for l in lines if l.startswith("C\t")]
    assert placed == [working.ref, filled.ref]
    assert cancelled == ([working.ref] if cancel_on_exit else [])


def test_a_refused_order_carries_its_ref_and_placing_again_with_it_is_one_order():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        with pytest.raises(ibbridge.RiskLimit) as refused:
            s.place_order("SPY", "buy", 5000, limit=10.0)
        ref = refused.value.ref
        assert isinstance(ref, str) and ref
        # Refused before it left: the reference is free for the order as it should be.
        order = s.place_order("SPY", "buy", 5, limit=10.0, ref=ref)
        assert order.ref == ref and order.status == "working"
        assert s.place_order("SPY", "buy", 5, limit=10.0, ref=ref).broker_id == order.broker_id
        assert [o.ref for o in s.orders()] == [ref]


def test_a_market_order_without_a_price_is_the_brokers_refusal_not_a_risk_limit():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        with pytest.raises(ibbridge.BrokerError) as refused:
            s.place_order("NO_SUCH_SYMBOL", "buy", 1)
        assert refused.value.kind == "unknown_symbol"
        assert refused.value.ref
        assert s.orders() == []


def test_no_order_is_sent_once_the_session_closed():
    s = ibbridge.Session(backend="sim", trade=True, speed=FAST)
    s.connect()
    s.place_order("SPY", "buy", 1, limit=1.0)
    s.close()
    with pytest.raises(ibbridge.SessionClosed):
        s.place_order("SPY", "buy", 1, limit=1.0)
