"""The `ibkr` backend from Python, against the project's fake TWS gateway (`fake-gateway`,
built by `cargo build -p tests --bin fake-gateway`; CI points IBBRIDGE_FAKE_GATEWAY at it, and
then a missing binary is a failure, not a skip)."""

import asyncio
import os
import pathlib
import socket
import subprocess
import time

import pytest

import ibbridge
from conftest import children, in_thread

ROOT = pathlib.Path(__file__).resolve().parents[2]


def fake_gateway_binary():
    configured = os.environ.get("IBBRIDGE_FAKE_GATEWAY")
    if configured:
        path = pathlib.Path(configured)
        assert path.is_file(), f"IBBRIDGE_FAKE_GATEWAY={configured} does not exist"
        return path
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / "fake-gateway"
        if path.is_file():
            return path
    pytest.skip("no fake-gateway binary: cargo build -p tests --bin fake-gateway")


def start_gateway(*args):
    p = subprocess.Popen(
        [str(fake_gateway_binary()), "0", *args], stdout=subprocess.PIPE, text=True
    )
    line = p.stdout.readline()
    assert line.startswith("listening on "), line
    return p, line.split()[-1]


def stop_gateway(p):
    p.kill()
    p.wait(timeout=10)
    p.stdout.close()


@pytest.fixture
def gateway():
    p, address = start_gateway("--unknown", "ZZZZ")
    try:
        yield address
    finally:
        stop_gateway(p)


def test_connect_history_and_refusals_through_the_gateway(gateway):
    with ibbridge.Session(backend="ibkr", gateway=gateway, client_id=7) as s:
        assert s.backend == "ibkr"
        assert s.connect() == ["DU1234567"]
        bars = s.history("SPY", bar_seconds=60, duration_seconds=86400)
        assert len(bars) == 1440
        assert all(b.time % 60 == 0 and b.close > 0 for b in bars)
        assert [b.time for b in bars] == sorted({b.time for b in bars})
        with pytest.raises(ibbridge.BrokerError) as e:
            s.history("ZZZZ", bar_seconds=60, duration_seconds=3600)
        assert (e.value.kind, e.value.code) == ("no_security_definition", 200)
        # The refusal broke nothing.
        assert len(s.history("QQQ", bar_seconds=60, duration_seconds=3600)) == 60


def test_live_bars_through_the_gateway_in_asyncio(gateway):
    async def main():
        async with ibbridge.Session(backend="ibkr", gateway=gateway, client_id=8) as s:
            await s.connect_async()
            got = {}
            async for symbol, bar in s.stream(["SPY", "QQQ"]):
                got.setdefault(symbol, []).append(bar.time)
                if sum(map(len, got.values())) >= 8:
                    return got

    got = asyncio.run(asyncio.wait_for(main(), 60))
    assert set(got) <= {"SPY", "QQQ"}
    for times in got.values():
        assert times == sorted(set(times))
        assert all(t % 5 == 0 for t in times)


def test_a_gateway_that_is_down_is_a_broker_error_at_once():
    s0 = socket.socket()
    s0.bind(("127.0.0.1", 0))
    port = s0.getsockname()[1]
    s0.close()
    with ibbridge.Session(backend="ibkr", gateway=f"127.0.0.1:{port}", client_id=7) as s:
        t = time.monotonic()
        with pytest.raises(ibbridge.BrokerError) as e:
            s.connect()
        assert time.monotonic() - t < 10
    assert e.value.kind == "not_connected"
    assert "connect_wait_seconds" in str(e.value)


def test_closing_during_a_slow_handshake_is_prompt_and_leaves_no_worker():
    # The gateway takes 20 s to send its accounts (still logging in).
    p, address = start_gateway("--accounts-delay", "20")
    try:
        s = ibbridge.Session(backend="ibkr", gateway=address, client_id=9)
        t, result = in_thread(s.connect)
        time.sleep(1.0)
        started = time.monotonic()
        s.close()
        assert time.monotonic() - started < 3.0
        assert [c for c in children(os.getpid()) if c != p.pid] == []
        t.join(10)
        assert not t.is_alive()
        assert isinstance(result.get("error"), ibbridge.SessionClosed), result
    finally:
        stop_gateway(p)


class Reported:
    """A fake gateway started with --report, and the lines it printed so far."""

    def __init__(self, *args):
        import threading

        self.p, self.address = start_gateway("--report", *args)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.split())

    def until(self, seconds, f):
        deadline = time.monotonic() + seconds
        while not f(self.lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.lines)

    def stop(self):
        stop_gateway(self.p)
        self.reader.join(10)


def test_a_stream_left_unsubscribes_its_symbols_at_the_gateway_and_a_new_one_subscribes():
    g = Reported()
    try:
        async def main():
            async with ibbridge.Session(backend="ibkr", gateway=g.address, client_id=11) as s:
                await s.connect_async()
                async for symbol, bar in s.stream(["SPY", "QQQ"]):
                    break
                lines = await asyncio.to_thread(
                    g.until, 10, lambda ls: sum(l[0] == "realtime-cancel" for l in ls) == 2
                )
                subscribed = {l[1]: l[2] for l in lines if l[0] == "realtime"}
                cancelled = sorted(l[1] for l in lines if l[0] == "realtime-cancel")
                assert sorted(subscribed) == ["QQQ", "SPY"]
                assert cancelled == sorted(subscribed.values())
                # A later stream subscribes again, and the blocking iterator lets go too.
                it = s.bars(["SPY"])
                assert next(it)[0] == "SPY"
                it.close()
                return await asyncio.to_thread(
                    g.until, 10, lambda ls: sum(l[0] == "realtime-cancel" for l in ls) == 3
                )

        lines = asyncio.run(asyncio.wait_for(main(), 60))
        realtime = [l[1] for l in lines if l[0] == "realtime"]
        assert sorted(realtime) == ["QQQ", "SPY", "SPY"]
        assert sum(l[0] == "realtime-cancel" for l in lines) == 3
    finally:
        g.stop()


def test_orders_through_the_gateway_are_placed_once_changed_and_cancelled():
    g = Reported()
    try:
        with ibbridge.Session(backend="ibkr", gateway=g.address, client_id=12, trade=True) as s:
            s.connect()
            events = s.order_events()
            o = s.place_order("SPY", "buy", 2, limit=1.0, ref="gw-1")
            assert (o.ref, o.status, o.limit) == ("gw-1", "working", 1.0)
            again = s.place_order("SPY", "buy", 2, limit=1.0, ref="gw-1")
            assert again.broker_id == o.broker_id
            changed = s.modify_order("gw-1", limit=1.25)
            assert changed.limit == 1.25
            cancelled = s.cancel_order("gw-1")
            assert cancelled.status == "cancelled"
            states = []
            for e in events:
                states.append((e.ref, e.status, e.limit))
                if e.status == "cancelled":
                    break
            assert states[0] == ("gw-1", "working", 1.0)
            assert ("gw-1", "working", 1.25) in states
            assert states[-1] == ("gw-1", "cancelled", 1.25)
            account = s.account()
            assert account["account"] == "DU1234567"
        lines = g.until(10, lambda ls: any(l[0] == "order-cancel" for l in ls))
        # One placement and one change (both PlaceOrder messages, the same id), one cancel.
        placed = [l for l in lines if l[0] == "order"]
        assert [l[2] for l in placed] == ["gw-1", "gw-1"]
        assert placed[0][1] == placed[1][1] == str(o.broker_id)
        assert [l[1] for l in lines if l[0] == "order-cancel"] == [str(o.broker_id)]
    finally:
        g.stop()


def test_a_gateway_dropping_the_connection_right_after_an_order_leaves_one_order():
    g = Reported("--drop-after-order", "0")
    try:
        with ibbridge.Session(backend="ibkr", gateway=g.address, client_id=13, trade=True) as s:
            s.connect()
            events = s.order_events()
            try:
                o = s.place_order("SPY", "buy", 3, ref="drop-1")
            except ibbridge.Error as e:
                # No answer came on the dropped connection: placed again under its ref, it
                # is the one order the gateway holds.
                assert e.ref == "drop-1"
                o = until_placed(s, "drop-1")
            assert o.ref == "drop-1"
            # The fill and the final state, in whichever order the gateway tells them.
            told = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                any(isinstance(e, ibbridge.Fill) for e in told)
                and any(isinstance(e, ibbridge.Order) and e.status == "filled" for e in told)
            ):
                told.extend(events.poll())
                time.sleep(0.05)
            fills = [e for e in told if isinstance(e, ibbridge.Fill)]
            assert [(f.ref, f.quantity) for f in fills] == [("drop-1", 3.0)]
            assert [(x.ref, x.status) for x in s.orders()] == [("drop-1", "filled")]
        placed = [l for l in g.lines if l[0] == "order"]
        assert [l[2] for l in placed] == ["drop-1"], placed
    finally:
        g.stop()


def until_placed(s, ref):
    deadline = time.monotonic() + 30
    while True:
        try:
            return s.place_order("SPY", "buy", 3, ref=ref)
        except ibbridge.Error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_an_order_the_gateway_rejects_is_a_broker_error_with_its_code():
    g = Reported("--reject-orders", "TSLA")
    try:
        with ibbridge.Session(backend="ibkr", gateway=g.address, client_id=14, trade=True) as s:
            s.connect()
            with pytest.raises(ibbridge.BrokerError) as e:
                s.place_order("TSLA", "buy", 1, limit=100.0, ref="rej-1")
            assert (e.value.kind, e.value.code, e.value.ref) == ("rejected", 201, "rej-1")
            assert [(o.ref, o.status) for o in s.orders()] == [("rej-1", "rejected")]
            # The same ref again is the same order: refused the same way, nothing sent.
            with pytest.raises(ibbridge.BrokerError, match="rejected"):
                s.place_order("TSLA", "buy", 1, limit=100.0, ref="rej-1")
        assert [l[2] for l in g.lines if l[0] == "order"] == ["rej-1"]
    finally:
        g.stop()


def test_a_live_account_is_refused_before_anything_is_sent_unless_allowed(tmp_path):
    g = Reported("--accounts", "U7654321")
    try:
        with ibbridge.Session(backend="ibkr", gateway=g.address, client_id=15, trade=True) as s:
            assert s.connect() == ["U7654321"]
            # The configuration does not allow it: refused by the session, not the broker.
            with pytest.raises(ibbridge.ConfigError, match=r"live account \(U7654321\)") as e:
                s.place_order("SPY", "buy", 1, limit=1.0, ref="live-1")
            assert e.value.ref == "live-1"
            assert "trading.allow_live" in str(e.value)
        allowed = tmp_path / "live.toml"
        allowed.write_text("[trading]\nallow_live = true\n")
        with ibbridge.Session(
            backend="ibkr", gateway=g.address, client_id=16, trade=True, config=allowed
        ) as s:
            s.connect()
            assert s.place_order("SPY", "buy", 1, limit=1.0, ref="live-2").status == "working"
        lines = g.until(10, lambda ls: any(l[0] == "order" for l in ls))
        assert [l[2] for l in lines if l[0] == "order"] == ["live-2"]
    finally:
        g.stop()


def test_a_refused_symbol_is_told_in_the_stream_in_order_and_its_state_answers():
    g = Reported("--refuse-live", "ZZZL:354")
    try:
        async def main():
            async with ibbridge.Session(backend="ibkr", gateway=g.address, client_id=17) as s:
                await s.connect_async()
                assert s.symbol_state("SPY") == "not_subscribed"
                told = []
                async for symbol, item in s.stream(["SPY", "ZZZL"], events=True):
                    told.append((symbol, item))
                    states = (s.symbol_state("SPY"), s.symbol_state("ZZZL"))
                    if sum(isinstance(i, ibbridge.Bar) for _, i in told) >= 3 and any(
                        isinstance(i, ibbridge.SymbolEvent) for _, i in told
                    ):
                        break
                # Left: both let go.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and {
                    s.symbol_state("SPY"), s.symbol_state("ZZZL")
                } != {"not_subscribed"}:
                    await asyncio.sleep(0.02)
                assert (s.symbol_state("SPY"), s.symbol_state("ZZZL")) == ("not_subscribed",) * 2
                return told, states

        told, states = asyncio.run(asyncio.wait_for(main(), 60))
        events = [(sym, i) for sym, i in told if isinstance(i, ibbridge.SymbolEvent)]
        assert len(events) == 1, events
        symbol, event = events[0]
        assert symbol == event.symbol == "ZZZL"
        assert (event.what, event.kind, event.code) == ("refused", "not_permitted", 354), event
        assert "not subscribed" in event.message
        assert states == ("streaming", "refused")
        assert {sym for sym, i in told if isinstance(i, ibbridge.Bar)} == {"SPY"}
    finally:
        g.stop()
