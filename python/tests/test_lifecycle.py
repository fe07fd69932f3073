"""A session's life at its edges: closing while a worker starts, forks, the interpreter's
exit, Ctrl-C, a worker started from a hostile working directory, and what a killed program
leaves in the temporary directory."""

import asyncio
import glob
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import ibbridge
from conftest import alive, children, in_thread, start_program, wait_gone


def run_child(code, cwd=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.08])
def test_closing_while_connecting_leaves_no_worker(delay):
    s = ibbridge.Session()
    t, result = in_thread(s.connect)
    time.sleep(delay)
    s.close()
    # Once close has returned, no worker of the session runs.
    assert children(os.getpid()) == []
    t.join(30)
    assert not t.is_alive()
    assert s.closed
    if "error" in result:
        assert isinstance(result["error"], ibbridge.SessionClosed)
    with pytest.raises(ibbridge.SessionClosed):
        s.history("SPY", 60, 3600)


def test_closing_while_a_dead_worker_is_replaced_leaves_no_worker():
    for delay in (0.05, 0.15, 0.3):
        s = ibbridge.Session()
        s.connect()
        os.kill(s.worker_pid, signal.SIGKILL)
        t, result = in_thread(lambda: len(s.history("SPY", 5, 86400 * 30)))
        time.sleep(delay)
        s.close()
        assert children(os.getpid()) == [], delay
        t.join(30)
        assert not t.is_alive()
        # Either it finished before the close, whole, or it was stopped by it.
        if "error" in result:
            assert isinstance(result["error"], ibbridge.SessionClosed), result
        else:
            assert result["result"] == 518400


def test_a_refused_subscription_does_not_keep_other_symbols_from_streaming():
    with ibbridge.Session() as s:
        s.connect()
        with pytest.raises(ibbridge.BrokerError) as e:
            next(s.bars(["NO_SUCH_SYMBOL"]))
        assert e.value.kind == "unknown_symbol"
        # Asked for again: refused again, for the same reason.
        with pytest.raises(ibbridge.BrokerError):
            next(s.bars(["NO_SUCH_SYMBOL"]))
        symbol, bar = next(s.bars(["SPY"]))
        assert symbol == "SPY" and bar.close > 0


def test_a_slow_call_does_not_hold_up_the_next():
    async def main():
        async with ibbridge.Session() as s:
            await s.connect_async()
            order = []

            async def tagged(name, aw):
                r = await aw
                order.append(name)
                return r

            big, _ = await asyncio.gather(
                tagged("history", s.history_async("SPY", 5, 86400 * 30)),
                tagged("ping", s.ping_async()),
            )
            return len(big), order

    n, order = asyncio.run(main())
    assert n == 518400
    assert order == ["ping", "history"]


def test_one_task_at_a_time_reads_a_stream_and_aclose_stops_the_one_waiting():
    async def main():
        async with ibbridge.Session(speed=1.0) as s:  # a bar every 5 s: the stream waits
            await s.connect_async()
            stream = s.stream(["SPY"])
            first = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.3)
            with pytest.raises(ibbridge.Error, match="one task at a time"):
                await stream.__anext__()
            await stream.aclose()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(first, 5)

    asyncio.run(main())


def test_a_forked_child_does_not_touch_the_parents_session():
    out = run_child(
        """
        import os, ibbridge
        s = ibbridge.Session()
        s.connect()
        worker = s.worker_pid
        pid = os.fork()
        if pid == 0:
            # The child: the session is the parent's; its exit must leave it alone.
            try:
                s.history("SPY", 60, 3600)
                print("child used it")
            except ibbridge.SessionClosed:
                pass
            raise SystemExit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert s.worker_pid == worker
        assert len(s.history("SPY", 60, 3600)) == 60
        assert s.stats()["restarts"] == 0
        s.close()
        print("ok")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok"], out.stdout


def test_an_async_call_at_exit_after_the_package_closed_raises_instead_of_hanging():
    out = run_child(
        """
        import atexit, asyncio

        def late():
            import ibbridge
            async def main():
                s = ibbridge.Session()
                try:
                    await s.connect_async()
                    print("connected")
                except ibbridge.SessionClosed as e:
                    print("refused:", e)
                await s.close_async()
            asyncio.run(main())

        atexit.register(late)  # runs after ibbridge's own exit handlers
        import ibbridge
        """,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "refused: the interpreter is exiting"


def test_a_process_started_as_a_worker_cannot_open_a_session():
    env = dict(os.environ, IBBRIDGE_WORKER_OPTIONS="00")
    out = subprocess.run(
        [sys.executable, "-c", "import ibbridge; ibbridge.Session().connect()"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 1
    assert "started as a session's worker" in out.stderr


def test_ctrl_c_interrupts_a_blocking_call(tmp_path):
    # The worker is stopped: the answer never comes. Its hang is not declared during the test
    # (a replacement would answer), and the call is interrupted by Python's own Ctrl-C
    # handler whatever the test's environment inherited (a SIGINT ignored by the shell that
    # started it, as `cmd &` does, would stay ignored).
    config = tmp_path / "runner.toml"
    config.write_text("[bridge]\nhang_timeout_ms = 120000\n")
    p = start_program(
        f"""
                import signal, time, ibbridge
                signal.signal(signal.SIGINT, signal.default_int_handler)
                s = ibbridge.Session(config={str(config)!r})
                s.connect()
                print(s.worker_pid, flush=True)
                input()
                try:
                    print("calling", flush=True)
                    s.history("SPY", 60, 3600, timeout=30)
                    print("answered", s.stats(), flush=True)
                except KeyboardInterrupt:
                    print("interrupted", flush=True)
                s.close()
                """
    )
    worker = int(p.stdout.readline())
    os.kill(worker, signal.SIGSTOP)  # the answer will not come
    try:
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "calling"
        time.sleep(0.3)  # in the call, waiting
        sent = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        said = p.stdout.readline().strip()
        took = time.monotonic() - sent
        out, err = p.communicate(timeout=30)
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGCONT)
    assert p.returncode == 0, err
    assert said == "interrupted", said + out + err
    assert took < 2.0, took
    assert wait_gone(worker, 10)


def test_a_hostile_working_directory_does_not_reach_the_worker(tmp_path):
    hostile = tmp_path / "cwd"
    hostile.mkdir()
    for name in ("asyncio", "datetime", "logging", "typing", "importlib", "ibbridge"):
        (hostile / f"{name}.py").write_text("raise ImportError('shadowed')\n")
    script = tmp_path / "program.py"
    script.write_text(
        "import ibbridge\n"
        "with ibbridge.Session() as s:\n"
        "    s.connect()\n"
        "    print(len(s.history('SPY', 60, 3600)))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=hostile
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "60"


def test_the_journal_a_killed_program_left_is_swept_by_the_next_session():
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ibbridge, time; s = ibbridge.Session(); s.connect(); "
            "print(s.worker_pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = int(p.stdout.readline())
    pattern = os.path.join(tempfile.gettempdir(), f"ibbridge-sim-orders-{p.pid}-*.journal")
    assert len(glob.glob(pattern)) == 1
    p.kill()
    p.wait(10)
    p.stdout.close()
    # Its worker notices within the hang timeout and exits (until then it uses the journal).
    assert wait_gone(worker, 10)
    assert len(glob.glob(pattern)) == 1  # killed: it could not remove its own
    # A lock file is swept once it is 2 s old (younger, its run may be taking the lock).
    (lock,) = glob.glob(pattern[: -len(".journal")] + ".lock")
    time.sleep(max(0.0, 2.2 - (time.time() - os.path.getmtime(lock))))
    with ibbridge.Session() as s:
        s.connect()
    assert glob.glob(pattern) == []


def test_close_is_prompt_while_a_replacement_waits_out_its_backoff(tmp_path):
    config = tmp_path / "slow-restarts.toml"
    config.write_text("[supervisor]\nbackoff_ms = 20000\nmax_backoff_ms = 20000\n")
    s = ibbridge.Session(config=config)
    s.connect()
    os.kill(s.worker_pid, signal.SIGKILL)
    time.sleep(0.5)  # the supervisor has seen it and sleeps before starting another
    t = time.monotonic()
    s.close()
    assert time.monotonic() - t < 3.0
    assert children(os.getpid()) == []


def test_a_subscription_that_cannot_be_sent_is_refused_and_not_restored():
    with ibbridge.Session() as s:
        s.connect()
        with pytest.raises(ibbridge.ConfigError, match="symbol"):
            next(s.bars(["X" * 10_000]))
        first = s.worker_pid
        os.kill(first, signal.SIGKILL)
        # The replacement starts (nothing unsendable is restored on it) and streams.
        symbol, bar = next(s.bars(["SPY"]))
        assert symbol == "SPY"
        assert s.worker_pid != first
        assert s.stats()["restarts"] == 1


def test_a_forked_childs_view_of_the_parents_session_is_closed_and_harmless():
    out = run_child(
        """
        import os, ibbridge
        s = ibbridge.Session()
        s.connect()
        pid = os.fork()
        if pid == 0:
            assert s.closed
            stats = s.stats()
            assert stats["bars_buffered"] == 0, stats
            s.close()
            raise SystemExit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert not s.closed and len(s.history("SPY", 60, 3600)) == 60
        s.close()
        print("ok")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok"]


def test_a_program_without_standard_input_still_starts_its_worker():
    # The segment's descriptor would be made where stdin was (0), where the worker's own
    # standard input goes before it inherits the segment.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.close(0); import ibbridge\n"
            "with ibbridge.Session() as s:\n"
            "    s.connect()\n"
            "    print(len(s.history('SPY', 60, 3600)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "60"
