"""Trading from Python beyond placing: the awaited forms, changing an order, the account,
the order events (each change once, in order, ending with the session) and a strategy run
(history then live bars, its orders through the trader, an exception ending it with its
working orders cancelled)."""

import asyncio
import threading
import time

import pytest

import ibbridge
from test_orders import FAST, until


def test_the_awaited_calls_place_change_cancel_and_read_the_account():
    async def main():
        async with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
            await s.connect_async()
            a, b = await asyncio.gather(
                s.place_order_async("SPY", "buy", 3, limit=1.0, ref="a-1"),
                s.place_order_async("QQQ", "sell", 2, limit=10000.0, ref="a-2"),
            )
            assert (a.ref, a.status, b.ref, b.status) == ("a-1", "working", "a-2", "working")
            changed = await s.modify_order_async("a-1", quantity=4, limit=2.0)
            assert (changed.quantity, changed.limit, changed.status) == (4.0, 2.0, "working")
            cancelled = await s.cancel_order_async("a-1")
            assert cancelled.status == "cancelled"
            assert await s.cancel_all_async() == 1
            positions = await s.positions_async()
            assert positions == []
            account = await s.account_async()
            assert sorted(account) == [
                "account", "buying_power", "cash", "currency", "net_liquidation"
            ]
            assert account["account"] in s.accounts
            assert isinstance(account["net_liquidation"], float)
            with pytest.raises(ibbridge.ConfigError) as e:
                await s.place_order_async("SPY", "buy", 0, ref="a-3")
            assert e.value.ref == "a-3"

    asyncio.run(main())


def test_an_order_is_changed_once_checked_and_refused_when_it_cannot_change():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        s.connect()
        o = s.place_order("SPY", "buy", 5, limit=1.0, ref="m-1")
        changed = s.modify_order("m-1", limit=1.5)
        assert (changed.ref, changed.quantity, changed.limit) == ("m-1", 5.0, 1.5)
        assert changed.broker_id == o.broker_id
        assert [(x.ref, x.limit) for x in s.orders()] == [("m-1", 1.5)]
        with pytest.raises(ibbridge.ConfigError, match="nothing to change"):
            s.modify_order("m-1")
        with pytest.raises(ibbridge.ConfigError, match="no order"):
            s.modify_order("nobody's", limit=2.0)
        with pytest.raises(ibbridge.ConfigError, match="a number"):
            s.modify_order("m-1", quantity="6")
        # Over trading.max_order_quantity (default 1,000) once changed: nothing changes.
        with pytest.raises(ibbridge.RiskLimit) as e:
            s.modify_order("m-1", quantity=5000)
        assert e.value.limit == "trading.max_order_quantity"
        assert [(x.quantity, x.limit) for x in s.orders()] == [(5.0, 1.5)]
        s.cancel_order("m-1")
        with pytest.raises(ibbridge.ConfigError, match="cannot change"):
            s.modify_order("m-1", limit=2.0)
        with pytest.raises(ibbridge.ConfigError, match="no order"):
            s.cancel_order("never-placed")


def test_order_events_tell_each_change_once_in_order_then_end_with_the_session():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        told_in_order(s)


def told_in_order(s):
    s.connect()
    events = s.order_events()
    # The resting one first: its state is told before the market order fills.
    resting = s.place_order("SPY", "buy", 1, limit=1.0, ref="e-2")
    filled = s.place_order("SPY", "buy", 2, ref="e-1")
    seen = []
    for event in events:
        seen.append(event)
        fills = [e for e in seen if isinstance(e, ibbridge.Fill)]
        states = [e for e in seen if isinstance(e, ibbridge.Order) and e.ref == "e-1"]
        if fills and states and states[-1].status == "filled":
            break
    fills = [e for e in seen if isinstance(e, ibbridge.Fill)]
    assert [(f.ref, f.quantity) for f in fills] == [("e-1", 2.0)]
    e1 = [e.status for e in seen if isinstance(e, ibbridge.Order) and e.ref == "e-1"]
    assert e1[0] == filled.status and e1[-1] == "filled" and e1.count("filled") == 1
    # The fill is told before the state it made.
    assert seen.index(fills[0]) < max(i for i, e in enumerate(seen) if e == states[-1])
    e2 = [e.status for e in seen if isinstance(e, ibbridge.Order) and e.ref == "e-2"]
    assert e2 == [resting.status]
    # Closing cancels the resting order (trading.cancel_on_exit), tells it, then ends.
    closer = threading.Thread(target=s.close)
    closer.start()
    rest = list(events)
    closer.join(30)
    assert [(e.ref, e.status) for e in rest] == [("e-2", "cancelled")]
    assert list(events) == []
    with pytest.raises(ibbridge.ConfigError, match="trade=True"):
        ibbridge.Session(backend="sim").order_events()


def test_order_events_are_awaited_and_a_fill_is_told_once_across_a_killed_worker():
    import os
    import signal

    from conftest import wait_gone

    async def main():
        async with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
            await s.connect_async()
            events = s.order_events()
            await s.place_order_async("QQQ", "buy", 3, ref="k-1")
            pid = s.worker_pid
            os.kill(pid, signal.SIGKILL)
            assert wait_gone(pid, 10)
            seen = []

            async def read():
                async for e in events:
                    seen.append(e)
                    if isinstance(e, ibbridge.Order) and e.status == "filled":
                        return

            await asyncio.wait_for(read(), 30)
            # Let a replacement catch up: the fill it tells again is not told twice.
            until(10, lambda: s.worker_pid not in (None, pid))
            await asyncio.sleep(1.0)
            seen.extend(events.poll())
            fills = [e for e in seen if isinstance(e, ibbridge.Fill)]
            assert [(f.ref, f.quantity) for f in fills] == [("k-1", 3.0)]
            assert [f.exec_id for f in s.fills()] == [fills[0].exec_id]

    asyncio.run(main())


class Crossing:
    """Buys one share of a symbol each time its close is above the mean of the window."""

    window = 3

    def __init__(self, fail_after=None):
        self.calls = []
        self.fills = []
        self.fail_after = fail_after

    def on_bars(self, symbol, bars):
        self.calls.append((symbol, len(bars), bars[-1].time))
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            raise RuntimeError("the strategy broke")
        assert len(bars) <= self.window
        assert [b.time for b in bars] == sorted(b.time for b in bars)
        if len(self.calls) == 1:
            # One resting order, and one over the limit (trading.max_order_quantity). Good till
            # cancelled: a day order expires at the end of its UTC day, which the fast simulated
            # clock (started at the wall clock's time) passes within the run late in a UTC day.
            return [
                {"side": "buy", "quantity": 1, "limit": 1.0, "tif": "GTC"},
                {"side": "buy", "quantity": 10**6},
            ]
        if len(self.calls) == 2:
            return {"side": "buy", "quantity": 1}
        return None

    def on_fill(self, fill):
        self.fills.append(fill)


def test_a_strategy_runs_history_then_live_bars_with_its_orders_through_the_trader():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        strategy = Crossing()
        summary = s.run(strategy, ["SPY", "QQQ"], bar_seconds=5, duration=3.0)
        assert set(summary.history) == {"SPY", "QQQ"} and all(summary.history.values())
        # History first: one call per symbol, with the whole window.
        assert [c[:2] for c in strategy.calls[:2]] == [("SPY", 3), ("QQQ", 3)]
        assert summary.live_bars > 0
        assert len(strategy.calls) == 2 + summary.live_bars
        assert summary.refused == 1
        assert [o.limit for o in summary.orders] == [1.0, None]
        assert summary.orders[0].status == "working"
        # The market order (placed after QQQ's history, seconds before the end) filled, and
        # the strategy was told once.
        fills = [f for f in s.fills() if f.ref == summary.orders[1].ref]
        assert len(fills) == 1 and summary.orders[1].status == "filled"
        assert [f.exec_id for f in strategy.fills] == [fills[0].exec_id]
        assert summary.fills == strategy.fills
        assert 3.0 <= summary.seconds < 30


def test_a_strategy_that_raises_ends_the_run_with_its_exception_and_orders_cancelled():
    with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
        strategy = Crossing(fail_after=2)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="the strategy broke"):
            s.run(strategy, ["SPY"], bar_seconds=5, duration=60)
        assert time.monotonic() - started < 30
        resting = [o for o in s.orders() if o.limit == 1.0]
        assert len(resting) == 1 and resting[0].status == "cancelled"
        assert not [o for o in s.orders() if not o.final]


def test_a_run_refuses_a_strategy_it_cannot_drive_before_anything_starts():
    with ibbridge.Session(backend="sim", trade=True) as s:
        class NoWindow:
            def on_bars(self, symbol, bars):
                return None

        with pytest.raises(ibbridge.ConfigError, match="window"):
            s.run(NoWindow(), ["SPY"])
        with pytest.raises(ibbridge.ConfigError, match="duration"):
            s.run(Crossing(), ["SPY"], duration=-1)
        assert s.worker_pid is None


def test_the_loop_keeps_ticking_while_orders_and_bars_flow(tmp_path):
    from test_async import Ticker

    config = tmp_path / "fast.toml"
    config.write_text("[trading]\nmax_orders_per_minute = 100000\n")

    async def main():
        async with ibbridge.Session(backend="sim", config=config, trade=True, speed=FAST) as s:
            with Ticker() as ticker:
                await s.connect_async()
                events = s.order_events()
                placed = 0
                started = time.monotonic()
                bars = 0
                async for symbol, bar in s.stream(["SPY", "QQQ"]):
                    bars += 1
                    # An order per bar, half of them cancelled at once.
                    o = await s.place_order_async(symbol, "buy", 1, limit=1.0)
                    placed += 1
                    if placed % 2:
                        await s.cancel_order_async(o.ref)
                    if time.monotonic() - started > 2.0:
                        break
                await s.cancel_all_async()
                told = events.poll()
            return ticker, placed, bars, told

    ticker, placed, bars, told = asyncio.run(asyncio.wait_for(main(), 60))
    assert placed == bars and placed > 10
    working = {e.ref for e in told if isinstance(e, ibbridge.Order) and e.status == "working"}
    assert len(working) == placed
    assert ticker.ticks > 100
    extra = ticker.longest - ticker.period
    assert extra <= 0.050, f"the loop was held up for {extra * 1000:.1f} ms more than its tick"


def test_ctrl_c_during_place_order_leaves_one_order_under_its_ref(tmp_path):
    # The worker is stopped while the order is on its way: Ctrl-C ends the wait; the worker
    # resumed, the same ref placed again is the one order, never a second.
    import os
    import signal

    from conftest import start_program, wait_gone

    config = tmp_path / "runner.toml"
    config.write_text("[bridge]\nhang_timeout_ms = 120000\n")
    p = start_program(
        f"""
                import signal, ibbridge
                signal.signal(signal.SIGINT, signal.default_int_handler)
                s = ibbridge.Session(config={str(config)!r}, trade=True)
                s.connect()
                print(s.worker_pid, flush=True)
                input()
                try:
                    print("calling", flush=True)
                    s.place_order("SPY", "buy", 1, limit=1.0, ref="c-1")
                    print("answered", flush=True)
                except KeyboardInterrupt:
                    print("interrupted", flush=True)
                input()
                o = s.place_order("SPY", "buy", 1, limit=1.0, ref="c-1")
                print(o.ref, o.status, [x.ref for x in s.orders()], flush=True)
                s.close()
                """
    )
    worker = int(p.stdout.readline())
    os.kill(worker, signal.SIGSTOP)
    try:
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "calling"
        time.sleep(0.3)
        sent = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        said = p.stdout.readline().strip()
        took = time.monotonic() - sent
        os.kill(worker, signal.SIGCONT)
        p.stdin.write("\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        if wait_gone(worker, 0.1) is False:
            os.kill(worker, signal.SIGCONT)
    assert said == "interrupted", said + out + err
    assert took < 2.0, took
    assert p.returncode == 0, err
    assert out.strip() == "c-1 working ['c-1']", out + err
    assert wait_gone(worker, 10)


def test_order_events_are_one_iterator_awaited_by_one_task_at_a_time():
    async def main():
        async with ibbridge.Session(backend="sim", trade=True, speed=FAST) as s:
            await s.connect_async()
            events = s.order_events()
            assert s.order_events() is events
            first = asyncio.ensure_future(events.__anext__())
            await asyncio.sleep(0.05)
            with pytest.raises(ibbridge.Error, match="one task at a time"):
                await events.__anext__()
            await s.place_order_async("SPY", "buy", 1, limit=1.0, ref="one-1")
            got = await asyncio.wait_for(first, 10)
            assert (got.ref, got.status) == ("one-1", "working")
            assert s.stats()["order_events_dropped"] == 0

    asyncio.run(main())


def test_closing_cancels_more_working_orders_than_go_out_at_once(tmp_path):
    # 40 resting orders: the cancels on close go out 16 at a time, every one is cancelled
    # and told before the events end.
    config = tmp_path / "many.toml"
    config.write_text("[trading]\nmax_orders_per_minute = 1000\n")
    s = ibbridge.Session(backend="sim", config=config, trade=True, speed=FAST)
    try:
        s.connect()
        events = s.order_events()
        refs = [s.place_order("SPY", "buy", 1, limit=1.0).ref for _ in range(40)]
        assert {e.ref for e in events.poll()} == set(refs)
    finally:
        s.close()
    told = list(events)
    assert sorted(e.ref for e in told) == sorted(refs)
    assert {e.status for e in told} == {"cancelled"}
