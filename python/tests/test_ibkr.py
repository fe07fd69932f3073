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
