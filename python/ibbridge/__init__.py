"""Interactive Brokers (or a simulated market) from Python, through an isolated worker process.

A :class:`Session` starts a worker process (the same code as the Rust ``runner``'s, shipped in
this package), talks to it over two shared-memory ring buffers, and replaces it if it dies or
hangs. The worker owns the broker connection; your program keeps its own strategy::

    import ibbridge

    with ibbridge.Session(backend="sim") as s:
        accounts = s.connect()
        bars = s.history("SPY", bar_seconds=60, duration_seconds=86400)

    async with ibbridge.Session(backend="sim") as s:
        await s.connect_async()
        bars = await s.history_async("SPY", bar_seconds=60, duration_seconds=86400)
        async for symbol, bar in s.stream(["SPY", "QQQ"]):
            ...

Blocking calls release the GIL while they wait. Asynchronous calls never block the event
loop: a request waits on a thread of the session's own (never asyncio's executor, which other
work can starve) and its answer is handed to the loop with ``call_soon_threadsafe``; live bars
are buffered (bounded, drops counted in :meth:`Session.stats`) until the stream takes them.

Errors are :class:`Error` and its kinds: :class:`Timeout`, :class:`WorkerGone`,
:class:`BrokerError` (with the broker's ``kind`` and IB's ``code``), :class:`ConfigError`,
:class:`SessionClosed`. The log of the session and its workers goes to :mod:`logging` under
``ibbridge.*``, at the levels the ``ibbridge`` logger is enabled for when the first session
is made.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import dataclasses
import datetime as _dt
import logging  # noqa: F401  (first: its exit handler must run after the sessions close)
import os
import sys
import time
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Literal,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
    cast,
    overload,
)

from . import _native
from ._native import Bar

_log = logging.getLogger("ibbridge.session")

if TYPE_CHECKING:
    import pandas

# The library's build as imported: a worker started from a file replaced since (a `pip
# install` of another build meanwhile) is refused rather than run against this code.
_native.remember_image(_native.__file__)

__all__ = [
    "Bar",
    "BarStream",
    "BrokerError",
    "ConfigError",
    "Error",
    "Fill",
    "Order",
    "Position",
    "OrderEvents",
    "RiskLimit",
    "RunSummary",
    "Session",
    "SessionClosed",
    "Strategy",
    "SymbolEvent",
    "Timeout",
    "WorkerGone",
    "to_frame",
]


class Error(Exception):
    """An error of the bridge, the worker or the broker. Raised by
    :meth:`Session.place_order`, it carries the order's reference as ``ref``."""

    ref: Optional[str] = None


class Timeout(Error, TimeoutError):
    """No answer in time (from the worker, or from the broker through it)."""


class WorkerGone(Error):
    """The worker died or hung and could not be replaced, or could not be started."""


class BrokerError(Error):
    """The broker refused: ``kind`` is the bridge's kind of error (``unknown_symbol``,
    ``no_data``, ``pacing``, ``not_permitted``, ...), ``code`` IB's error code when it gave
    one."""

    def __init__(self, message: str, kind: Optional[str] = None, code: Optional[int] = None):
        super().__init__(message)
        self.kind = kind
        self.code = code


class ConfigError(Error, ValueError):
    """A setting or argument that cannot be used."""


class SessionClosed(Error):
    """The session is closed, or not connected yet."""


class RiskLimit(Error):
    """A risk limit of the configuration (``[trading]``) refused an order before anything was
    sent: ``limit`` is its key (``trading.max_order_quantity``, ``trading.max_order_value``,
    ``trading.max_position``, ``trading.max_orders_per_minute``)."""

    def __init__(self, message: str, limit: Optional[str] = None):
        super().__init__(message)
        self.limit = limit


@dataclasses.dataclass(frozen=True)
class Order:
    """An order as the session's book knows it. ``side`` is ``"buy"`` or ``"sell"``,
    ``limit`` ``None`` for a market order, ``tif`` ``"DAY"`` or ``"GTC"``, ``status`` one of
    ``pending``, ``working``, ``partially_filled``, ``filled``, ``cancelled``, ``rejected``
    (the last three final)."""

    ref: str
    symbol: str
    side: str
    quantity: float
    limit: Optional[float]
    tif: str
    status: str
    filled: float
    avg_price: Optional[float]
    reason: Optional[str]
    broker_id: int

    @property
    def final(self) -> bool:
        return self.status in ("filled", "cancelled", "rejected")


@dataclasses.dataclass(frozen=True)
class Fill:
    """An execution of an order of the session's, counted once whatever way and however often
    it was told; ``time`` in Unix seconds."""

    exec_id: str
    ref: str
    symbol: str
    side: str
    quantity: float
    price: float
    commission: Optional[float]
    time: int


@dataclasses.dataclass(frozen=True)
class Position:
    """What an account holds of a symbol, as the broker says: ``quantity`` positive long,
    negative short."""

    account: str
    symbol: str
    quantity: float
    avg_cost: float


@dataclasses.dataclass(frozen=True)
class SymbolEvent:
    """What happened to a streamed symbol (``stream(..., events=True)``), in order with its
    bars. ``what``: ``refused`` (the broker will not stream it: ``kind`` and IB's ``code``
    say why), ``delayed`` (delayed data instead), ``stalled`` (no bar for too long; the
    worker subscribes again), ``resubscribed``, ``flowing`` (bars come again),
    ``interrupted`` (the broker connection is lost), ``restored`` (it is back),
    ``worker_replaced`` (a new worker took over; its subscriptions were made again) or
    ``ended`` (no bar will come any more: a replayed recording's are over)."""

    symbol: str
    what: str
    kind: Optional[str]
    code: Optional[int]
    message: str


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What :meth:`Session.run` did: ``history`` bars per symbol, ``live_bars`` taken, the
    ``orders`` it placed (as last known), the ``fills`` of the session's it told the
    strategy, ``refused`` orders (risk limits, the broker) and ``seconds`` it ran."""

    history: Dict[str, int]
    live_bars: int
    orders: List[Order]
    fills: List[Fill]
    refused: int
    seconds: float


class Strategy(Protocol):
    """What :meth:`Session.run` drives: ``window`` (how many of a symbol's last bars it is
    given), ``on_bars`` (returns ``None`` or orders to place, as :meth:`Session.place_order`
    keyword arguments) and, optionally, ``on_fill``."""

    @property
    def window(self) -> int: ...

    def on_bars(
        self, symbol: str, bars: List[Bar]
    ) -> Optional[Iterable[Dict[str, Any]]]: ...


_CLASSES = {
    "timeout": Timeout,
    "worker_gone": WorkerGone,
    "config": ConfigError,
    "closed": SessionClosed,
}


_T = TypeVar("_T")
# An asynchronous call's completion, as the core calls it: (error arguments or None, value).
_Done = Callable[[Optional[Tuple[Any, ...]], Any], None]


def _error(args: Tuple[Any, ...]) -> Error:
    """The exception for a native error's ``(category, kind, code, message)``."""
    category, kind, code, message = args
    if category == "broker":
        return BrokerError(message, kind, code)
    if category == "risk_limit":
        return RiskLimit(message, kind)
    return _CLASSES.get(category, Error)(message)


def _number(name: str, value: Any) -> float:
    """A quantity or price as a float; anything but a number is refused before it is sent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: a number, not {value!r}")
    return float(value)


def _price(name: str, value: Any) -> Optional[float]:
    return None if value is None else _number(name, value)


_ACCOUNT_FIELDS = ("account", "net_liquidation", "cash", "buying_power", "currency")


def _account(t: Tuple[Any, ...]) -> Dict[str, Union[str, float]]:
    return dict(zip(_ACCOUNT_FIELDS, t))


def _told(item: Tuple[str, Tuple[Any, ...]]) -> "Union[Order, Fill]":
    kind, t = item
    return Order(*t) if kind == "order" else Fill(*t)


def _call(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    try:
        return fn(*args, **kwargs)
    except _native.NativeError as e:
        raise _error(e.args) from None


def _settle(fut: "asyncio.Future[Any]", err: Optional[Tuple[Any, ...]], value: Any) -> None:
    if fut.done():  # cancelled meanwhile: the answer is not wanted
        return
    if err is not None:
        fut.set_exception(_error(err))
    else:
        fut.set_result(value)


def _future() -> "Tuple[asyncio.Future[Any], _Done]":
    """A future of the running loop, and the ``done(error, value)`` that settles it from any
    thread."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done(err: Optional[Tuple[Any, ...]], value: Any) -> None:
        try:
            loop.call_soon_threadsafe(_settle, fut, err, value)
        except RuntimeError:  # the loop is closed: nobody waits
            pass

    return fut, done


async def _awaited(fn: Callable[..., Any], *args: Any) -> Any:
    """The answer of the core's asynchronous ``fn(done, *args)``."""
    fut, done = _future()
    _call(fn, done, *args)
    return await fut


def _wake(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_result(None)


async def _woken(
    set_waker: Callable[[Optional[Callable[[], None]]], bool],
    waiting: "Optional[Callable[[Optional[asyncio.Future[None]]], None]]" = None,
) -> None:
    """Waits until the core calls the waker given to ``set_waker`` (at once if it says
    something is there already); ``waiting`` is told the future awaited, and ``None`` after."""
    loop = asyncio.get_running_loop()
    fut: "asyncio.Future[None]" = loop.create_future()

    def waker() -> None:
        try:
            loop.call_soon_threadsafe(_wake, fut)
        except RuntimeError:  # the loop is closed
            pass

    if not set_waker(waker):
        return  # something came meanwhile
    if waiting is not None:
        waiting(fut)
    try:
        await fut
    finally:
        if waiting is not None:
            waiting(None)
        set_waker(None)


# When a history ends: Unix seconds or an aware datetime; `None`: now.
_When = Union[None, int, _dt.datetime]


def _unix_seconds(end: _When) -> Optional[int]:
    if end is None:
        return None
    if isinstance(end, _dt.datetime):
        if end.tzinfo is None:
            raise ConfigError("end: a datetime needs a time zone (datetime.timezone.utc)")
        return int(end.timestamp())
    if isinstance(end, bool) or not isinstance(end, int):
        raise ConfigError(f"end: Unix seconds or an aware datetime, not {end!r}")
    return end


_FRAME_COLUMNS = ("open", "high", "low", "close", "volume")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:
        raise ImportError(
            "ibbridge.to_frame needs pandas, an optional extra: pip install \"ibbridge[pandas]\" "
            "(from a checkout: pip install \"./python[pandas]\")"
        ) from e
    return pandas


def to_frame(bars: Iterable[Bar]) -> "pandas.DataFrame":
    """``bars`` as a pandas ``DataFrame``: one row per bar, in the order given, indexed by
    the bar's start as a UTC timestamp (index name ``time``), with float columns ``open``,
    ``high``, ``low``, ``close`` and ``volume``. Needs pandas (``pip install
    "ibbridge[pandas]"``); without it, an ``ImportError`` that says so."""
    pd = _pandas()
    bars = list(bars)
    for b in bars:
        if not isinstance(b, Bar):
            raise TypeError(f"to_frame takes Bars, not {type(b).__name__}")
    index = pd.DatetimeIndex(
        pd.to_datetime([b.time for b in bars], unit="s", utc=True), name="time"
    )
    columns = {c: [getattr(b, c) for b in bars] for c in _FRAME_COLUMNS}
    frame: "pandas.DataFrame" = pd.DataFrame(
        columns, index=index, columns=list(_FRAME_COLUMNS), dtype="float64"
    )
    return frame


_open_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()

# At exit, after every session is closed (atexit runs the last registered first), the
# library's threads stop taking the GIL: a thread that takes it while the interpreter finishes
# brings the process down.
atexit.register(_native.at_exit)


@atexit.register
def _close_all() -> None:
    for s in list(_open_sessions):
        s.close()


def _forget_all() -> None:
    # In a forked child: the sessions, their workers and threads are the parent's. Closing
    # them here would stop the parent's workers.
    _native.after_fork_in_child()
    for s in list(_open_sessions):
        s._core.forget()
    _open_sessions.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)


class Session:
    """A supervised worker and its broker connection.

    ``backend`` is ``"sim"`` (a simulated market, nothing to install) or ``"ibkr"`` (TWS or
    IB Gateway at ``gateway``, ``"127.0.0.1:4002"`` by default, as API client ``client_id``).
    ``config`` is a TOML file as the ``runner`` binary reads it (the keyword arguments
    override it); ``seed`` and ``speed`` set the simulated market's. ``buffer`` bounds the
    live bars held for :meth:`stream` (the oldest are dropped, and counted, beyond it).

    Nothing starts until :meth:`connect`. Closing the session (``with``, :meth:`close`, the
    end of the program) stops its worker; if the program is killed, the worker notices and
    exits by itself.

    ``hub`` attaches to the hub of that name (``runner hub --name NAME``) instead of starting a
    worker: the hub's one worker and broker connection serve this session and the hub's other
    clients. ``client`` is the session's name there (default ``"python"``): its order
    references live in that namespace, so sessions of one name see each other's orders and
    sessions of different names do not. A hub that goes away is waited for
    (``hub.wait_seconds`` of the configuration, 60 by default) and attached to again.
    """

    def __init__(
        self,
        backend: str = "sim",
        *,
        config: Optional[Union[str, "os.PathLike[str]"]] = None,
        gateway: Optional[str] = None,
        client_id: Optional[int] = None,
        seed: Optional[int] = None,
        speed: Optional[float] = None,
        buffer: int = 65536,
        trade: bool = False,
        hub: Optional[str] = None,
        client: Optional[str] = None,
    ):
        if not sys.executable:
            raise ConfigError("sys.executable is unknown: cannot start a worker")
        self._core = _call(
            _native.Core,
            sys.executable,
            _native.__file__,
            config=None if config is None else os.fspath(config),
            backend=backend,
            gateway=gateway,
            client_id=client_id,
            seed=seed,
            speed=speed,
            buffer=buffer,
            trade=trade,
            hub=hub,
            client=client,
        )
        self._stream: "Optional[weakref.ref[BarStream[Any]]]" = None
        # Live bars (and news of their symbols) taken from the core and not yet handed out:
        # a stream dropped or ended leaves them to the next.
        self._ready: "collections.deque[Tuple[str, Any]]" = collections.deque()
        self._discarded = 0
        self._order_events: Optional[OrderEvents] = None
        _open_sessions.add(self)

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> List[str]:
        """Starts the worker and connects it to the broker; returns the managed accounts once
        the broker's handshake is complete. Raises on failure."""
        return _call(self._core.connect)

    async def connect_async(self) -> List[str]:
        """:meth:`connect`, awaited."""
        return cast(List[str], await _awaited(self._core.connect_async))

    @property
    def accounts(self) -> List[str]:
        """The managed accounts the broker reported."""
        return self._core.accounts()

    @property
    def backend(self) -> str:
        return self._core.backend

    @property
    def worker_pid(self) -> Optional[int]:
        """The current worker's process id (it changes when a worker is replaced)."""
        return self._core.worker_pid

    @property
    def closed(self) -> bool:
        return self._core.closed

    def stats(self) -> Dict[str, int]:
        """Counters: ``restarts`` (workers replaced), ``failed_requests`` (requests a dying
        worker failed, retried where safe), ``bars_received``, ``bars_dropped`` (the buffer
        was full), ``bars_buffered`` (waiting to be taken), ``bars_discarded`` (of symbols
        the open stream did not ask for), ``events_dropped`` (by the current worker's
        connection, its own buffer full), ``order_events_dropped`` (order events nobody
        took, beyond 65,536)."""
        stats = self._core.stats()
        stats["bars_buffered"] = stats.get("bars_buffered", 0) + len(self._ready)
        stats["bars_discarded"] = self._discarded
        return stats

    def _next_bars(self) -> bool:
        """Moves what the core holds into ``_ready``: whether anything came. Raises the
        stream's end."""
        items = self._core.take_bars(1024)
        for item in items:
            self._ready.append(item)
        return bool(items)

    def _pop(self, wanted: "set[str]", events: bool = False) -> Optional[Tuple[str, Any]]:
        """The next ready bar of a symbol in ``wanted`` (bars of others are discarded,
        counted), or, with ``events``, news of one as a :class:`SymbolEvent` (news is
        otherwise left out: :meth:`symbol_state` holds what it said)."""
        while self._ready:
            symbol, item = self._ready.popleft()
            if isinstance(item, Bar):
                if symbol in wanted:
                    return symbol, item
                self._discarded += 1
            elif events and symbol in wanted:
                return symbol, SymbolEvent(symbol, *item)
        return None

    def symbol_state(self, symbol: str) -> str:
        """What ``symbol``'s live bars are doing now: ``not_subscribed``, ``subscribing``,
        ``refused`` (the broker would not stream it), ``streaming``, ``delayed`` (delayed
        data instead of real time), ``stalled`` (no bar for longer than the feed's rule
        allows; the worker subscribes again) or ``interrupted`` (the broker connection is
        down)."""
        return self._core.symbol_state(symbol)

    def config_toml(self) -> str:
        """The effective configuration, as TOML."""
        return self._core.config_toml()

    def ping(self, timeout: Optional[float] = None) -> float:
        """One round trip to the worker and back (not to the broker), in seconds."""
        return _call(self._core.ping, timeout)

    async def ping_async(self, timeout: Optional[float] = None) -> float:
        """:meth:`ping`, awaited."""
        return cast(float, await _awaited(self._core.ping_async, timeout))

    # -- history ------------------------------------------------------------------------

    @overload
    def history(
        self, symbol: str, bar_seconds: int = ..., duration_seconds: int = ...,
        end: _When = ..., timeout: Optional[float] = ..., *, frame: Literal[False] = ...,
    ) -> List[Bar]: ...

    @overload
    def history(
        self, symbol: str, bar_seconds: int = ..., duration_seconds: int = ...,
        end: _When = ..., timeout: Optional[float] = ..., *, frame: Literal[True],
    ) -> "pandas.DataFrame": ...

    def history(
        self, symbol: str, bar_seconds: int = 60, duration_seconds: int = 86400,
        end: _When = None, timeout: Optional[float] = None, *, frame: bool = False,
    ) -> Union[List[Bar], "pandas.DataFrame"]:
        """Bars of ``symbol`` of ``bar_seconds`` each, over ``duration_seconds`` up to
        ``end`` (Unix seconds or an aware datetime; ``None``: now), oldest first; with
        ``frame=True`` as a pandas ``DataFrame`` (:func:`to_frame`). If the worker dies
        meanwhile the whole request is made again on its replacement."""
        if frame:
            _pandas()  # before anything is asked of the worker
        args = (symbol, bar_seconds, duration_seconds, _unix_seconds(end), timeout)
        bars = _call(self._core.history, *args)
        return to_frame(bars) if frame else bars

    @overload
    async def history_async(
        self, symbol: str, bar_seconds: int = ..., duration_seconds: int = ...,
        end: _When = ..., timeout: Optional[float] = ..., *, frame: Literal[False] = ...,
    ) -> List[Bar]: ...

    @overload
    async def history_async(
        self, symbol: str, bar_seconds: int = ..., duration_seconds: int = ...,
        end: _When = ..., timeout: Optional[float] = ..., *, frame: Literal[True],
    ) -> "pandas.DataFrame": ...

    async def history_async(
        self, symbol: str, bar_seconds: int = 60, duration_seconds: int = 86400,
        end: _When = None, timeout: Optional[float] = None, *, frame: bool = False,
    ) -> Union[List[Bar], "pandas.DataFrame"]:
        """:meth:`history`, awaited; many can be under way at once (``asyncio.gather``)."""
        if frame:
            _pandas()
        args = (symbol, bar_seconds, duration_seconds, _unix_seconds(end), timeout)
        bars = cast(List[Bar], await _awaited(self._core.history_async, *args))
        return to_frame(bars) if frame else bars

    # -- orders -------------------------------------------------------------------------

    def place_order(
        self, symbol: str, side: str, quantity: float, *, limit: Optional[float] = None,
        tif: str = "DAY", ref: Optional[str] = None,
    ) -> Order:
        """Places an order (a session made with ``trade=True``) and returns it once the broker
        has taken it. ``side`` is ``"buy"`` or ``"sell"``; ``limit`` ``None`` for a market
        order; ``ref`` a reference of your own, or one is made before anything is sent. The
        order is sent once: if the worker dies meanwhile it is asked for again under the same
        reference, and the same ``ref`` placed again is the same order, never a second one
        (an exception raised here carries the reference as ``.ref``: placing again with it
        cannot make a second order; one whose fate was unknown is asked for again). Refused
        before anything leaves: bad arguments (:class:`ConfigError`) and the configuration's
        risk limits (:class:`RiskLimit`); by the broker: :class:`BrokerError`; no price for a
        market order: :class:`BrokerError` (``kind="no_data"``) or :class:`Timeout`."""
        args = self._order_args(symbol, side, quantity, limit, tif, ref)
        try:
            return Order(*_call(self._core.place_order, *args))
        except Error as e:
            # Made again with this reference, a call that failed is the same order.
            e.ref = args[-1]
            raise

    async def place_order_async(
        self, symbol: str, side: str, quantity: float, *, limit: Optional[float] = None,
        tif: str = "DAY", ref: Optional[str] = None,
    ) -> Order:
        """:meth:`place_order`, awaited. Cancelling the awaiting task does not take the order
        back: it may still be placed (placing again with its ``ref`` is the same order)."""
        args = self._order_args(symbol, side, quantity, limit, tif, ref)
        try:
            return Order(*await _awaited(self._core.place_order_async, *args))
        except Error as e:
            e.ref = args[-1]
            raise

    def _order_args(
        self, symbol: str, side: str, quantity: float, limit: Optional[float], tif: str,
        ref: Optional[str],
    ) -> Tuple[str, str, float, Optional[float], str, str]:
        """``place_order``'s arguments as the core takes them, its reference made if none
        was given; the rest is checked by the core before anything is sent."""
        for name, value in (("symbol", symbol), ("side", side), ("tif", tif)):
            if not isinstance(value, str):
                raise ConfigError(f"{name}: a string, not {value!r}")
        if ref is not None and not isinstance(ref, str):
            raise ConfigError(f"ref: a string or None, not {ref!r}")
        return (
            symbol, side, _number("quantity", quantity), _price("limit", limit), tif,
            self._core.next_ref() if ref is None else ref,
        )

    def modify_order(
        self, ref: str, *, quantity: Optional[float] = None, limit: Optional[float] = None
    ) -> Order:
        """Changes a working order of this session's: its total ``quantity`` (filled shares
        included; more than what filled) and/or its ``limit`` price (a limit order's). The
        changed order is checked against the risk limits as a new one would be, less what
        filled. Returns it once the broker took the change; a final order, nothing to change
        or an unknown ``ref``: :class:`ConfigError`, before anything is sent."""
        args = (ref, _price("quantity", quantity), _price("limit", limit))
        return Order(*_call(self._core.modify_order, *args))

    async def modify_order_async(
        self, ref: str, *, quantity: Optional[float] = None, limit: Optional[float] = None
    ) -> Order:
        """:meth:`modify_order`, awaited."""
        args = (ref, _price("quantity", quantity), _price("limit", limit))
        return Order(*await _awaited(self._core.modify_order_async, *args))

    def cancel_order(self, ref: str) -> Order:
        """Cancels the order ``ref`` of this session's; returns its state after (a filled
        order stays filled). An unknown ``ref``: :class:`ConfigError`."""
        return Order(*_call(self._core.cancel_order, ref))

    async def cancel_order_async(self, ref: str) -> Order:
        """:meth:`cancel_order`, awaited."""
        return Order(*await _awaited(self._core.cancel_order_async, ref))

    def cancel_all(self) -> int:
        """Cancels every working order this session placed; returns how many were asked."""
        return _call(self._core.cancel_all)

    async def cancel_all_async(self) -> int:
        """:meth:`cancel_all`, awaited."""
        return cast(int, await _awaited(self._core.cancel_all_async))

    def orders(self) -> List[Order]:
        """This session's orders: the working ones and the latest finished."""
        return [Order(*t) for t in _call(self._core.orders)]

    def fills(self) -> List[Fill]:
        """This session's fills, each once, in the order they were counted."""
        return [Fill(*t) for t in _call(self._core.fills)]

    def positions(self, timeout: Optional[float] = None) -> List[Position]:
        """What the broker's accounts hold."""
        return [Position(*t) for t in _call(self._core.positions, timeout)]

    async def positions_async(self, timeout: Optional[float] = None) -> List[Position]:
        """:meth:`positions`, awaited."""
        return [Position(*t) for t in await _awaited(self._core.positions_async, timeout)]

    def account(self, timeout: Optional[float] = None) -> Dict[str, Union[str, float]]:
        """The account's figures, as the broker says: ``account``, ``net_liquidation``,
        ``cash``, ``buying_power``, ``currency``."""
        return _account(_call(self._core.account, timeout))

    async def account_async(self, timeout: Optional[float] = None) -> Dict[str, Union[str, float]]:
        """:meth:`account`, awaited."""
        return _account(await _awaited(self._core.account_async, timeout))

    def order_events(self) -> "OrderEvents":
        """Changes of this session's orders as they happen, each once and in order: an
        :class:`Order` for each new state (status, fills, terms) and a :class:`Fill` for each
        execution, counted once across worker restarts. Iterate it (blocking) or ``async
        for`` it (one task at a time); it ends when the session closes. It is the session's
        one iterator of them, whoever asks: an event goes to one reader. Events wait (bounded; the oldest dropped and counted as
        ``order_events_dropped``) from the first order on, whether an iterator is there or
        not."""
        if not self._core.trading:
            raise ConfigError("trading is off: make the session with Session(..., trade=True)")
        if self._order_events is None:
            self._order_events = OrderEvents(self)
        return self._order_events

    def run(
        self, strategy: "Strategy", symbols: Iterable[str], *, bar_seconds: int = 5,
        duration: Optional[float] = None,
    ) -> "RunSummary":
        """Runs ``strategy`` over ``symbols`` as the ``runner`` runs its own: it connects,
        fetches each symbol's history (the configuration's ``[history]``), then takes live
        bars of ``bar_seconds`` for ``duration`` seconds (``None``: until the session closes
        or Ctrl-C). After the history and after each live bar, ``strategy.on_bars(symbol,
        bars)`` is given the symbol's last ``strategy.window`` bars, oldest first; what it
        returns (``None``, or a list of :meth:`place_order` keyword arguments as dicts, the
        ``symbol`` the bar's unless given) is placed through the session's trader, each
        order checked against the risk limits (a refusal is counted, not raised).
        ``strategy.on_fill(fill)``, if it has one, is told each fill of the session's once.
        An exception of the strategy's (or Ctrl-C) ends the run with it, the session's
        working orders cancelled. Its live bars are unsubscribed when it ends (those no
        stream takes). Order events are taken by the run while it runs; it returns a
        :class:`RunSummary`."""
        return _Run(self, strategy, symbols, bar_seconds, duration).run()

    # -- live bars ----------------------------------------------------------------------

    @overload
    def stream(
        self, symbols: Iterable[str], bar_seconds: int = ..., *, events: Literal[False] = ...
    ) -> "BarStream[Bar]": ...

    @overload
    def stream(
        self, symbols: Iterable[str], bar_seconds: int = ..., *, events: Literal[True]
    ) -> "BarStream[Union[Bar, SymbolEvent]]": ...

    def stream(
        self, symbols: Iterable[str], bar_seconds: int = 5, *, events: bool = False
    ) -> "BarStream[Any]":
        """Live bars of ``symbols`` as an asyncio async iterator of ``(symbol, bar)``. The
        subscriptions are made when it is first awaited and last, across worker restarts,
        until the stream ends (:meth:`BarStream.aclose`, leaving its ``async for``, the
        session closing): then the symbols no other stream takes are unsubscribed. With
        ``events=True`` it also yields, in order with the bars, ``(symbol, event)`` with a
        :class:`SymbolEvent` for what happens to a symbol (refused, delayed, stalled,
        flowing again, the connection interrupted or restored, the worker replaced). One
        stream at a time."""
        symbols = _symbols(symbols)
        current = self._stream() if self._stream is not None else None
        if current is not None and not current._done:
            raise Error("a stream of this session is open: one at a time (give it every symbol)")
        stream: "BarStream[Any]" = BarStream(self, symbols, bar_seconds, events)
        self._stream = weakref.ref(stream)
        return stream

    @overload
    def bars(
        self, symbols: Iterable[str], bar_seconds: int = ..., *, events: Literal[False] = ...
    ) -> Iterator[Tuple[str, Bar]]: ...

    @overload
    def bars(
        self, symbols: Iterable[str], bar_seconds: int = ..., *, events: Literal[True]
    ) -> Iterator[Tuple[str, Union[Bar, "SymbolEvent"]]]: ...

    def bars(
        self, symbols: Iterable[str], bar_seconds: int = 5, *, events: bool = False
    ) -> Iterator[Tuple[str, Any]]:
        """Live bars of ``symbols`` as a blocking iterator of ``(symbol, bar)``, for programs
        without an event loop; it ends when the session closes. Waits release the GIL.
        Leaving it (``break``, an exception, dropping it) unsubscribes the symbols no other
        stream of the session's takes. ``events``: as for :meth:`stream`."""
        return self._bars(_symbols(symbols), bar_seconds, events)

    def _bars(
        self, symbols: List[str], bar_seconds: int, events: bool
    ) -> Iterator[Tuple[str, Any]]:
        # Wanted once iterated: an iterator never started holds nothing.
        _call(self._core.want, symbols, bar_seconds)
        try:
            _call(self._core.subscribe, symbols)
            wanted = set(symbols)
            while True:
                item = self._pop(wanted, events)
                if item is not None:
                    yield item
                    continue
                try:
                    if not self._next_bars():
                        # Short waits, so that Ctrl-C is seen between them.
                        self._core.wait_bars(0.2)
                except _native.NativeError as e:
                    err = _error(e.args)
                    if isinstance(err, SessionClosed):
                        return
                    raise err from None
        finally:
            # Left (break, an exception, the iterator dropped): the symbols nobody else
            # streams are unsubscribed.
            self._core.release(symbols)


    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the worker (it disconnects from the broker and exits) and ends the stream.
        Nothing happens if already closed."""
        self._core.close()
        _open_sessions.discard(self)

    async def close_async(self) -> None:
        """:meth:`close`, awaited."""
        # Also when it is closed already: a close under way elsewhere is waited for.
        fut, done = _future()
        if self._core.close_async(done):
            await fut
        _open_sessions.discard(self)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Session":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"worker {self.worker_pid}"
        return f"<ibbridge.Session {self.backend} {state}>"


def _symbols(symbols: Iterable[str]) -> List[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    out = [s for s in symbols]
    if not out or not all(isinstance(s, str) and s.strip() for s in out):
        raise ConfigError(f"symbols: a list of names, got {out!r}")
    return out


_Item = TypeVar("_Item")


class BarStream(Generic[_Item]):
    """Live bars of some symbols, as ``(symbol, bar)``: an asyncio async iterator. It ends
    when the session closes, and raises :class:`WorkerGone` if the supervisor gave up on the
    worker; a worker that dies and is replaced is not seen here, beyond the bars it missed,
    unless the stream was made with ``events=True`` (then a :class:`SymbolEvent` says so)."""

    def __init__(self, session: Session, symbols: List[str], bar_seconds: int, events: bool):
        self._events = events
        self._session = session
        self._symbols = symbols
        self._wanted = set(symbols)
        self._bar_seconds = bar_seconds
        self._subscribed = False
        # Whether this stream has asked for its symbols (and must let them go).
        self._wanting = False
        self._done = False
        self._busy = False
        self._waiting: "Optional[asyncio.Future[None]]" = None

    def __aiter__(self) -> "BarStream[_Item]":
        return self

    async def __anext__(self) -> Tuple[str, _Item]:
        if self._busy:
            raise Error("a stream is read by one task at a time")
        self._busy = True
        try:
            return await self._next()
        finally:
            self._busy = False

    async def _next(self) -> Tuple[str, _Item]:
        session = self._session
        core = session._core
        if not self._subscribed and not self._done:
            if not self._wanting:  # once: a first read that failed is retried, not wanted again
                _call(core.want, self._symbols, self._bar_seconds)
                self._wanting = True
            await _awaited(core.subscribe_async, self._symbols)
            self._subscribed = True
        while True:
            if self._done:
                raise StopAsyncIteration
            item = session._pop(self._wanted, self._events)
            if item is not None:
                return cast(Tuple[str, _Item], item)
            try:
                if session._next_bars():
                    continue
            except _native.NativeError as e:
                self._done = True
                err = _error(e.args)
                if isinstance(err, SessionClosed):
                    raise StopAsyncIteration from None
                raise err from None
            await _woken(core.set_waker, self._set_waiting)

    def _set_waiting(self, fut: "Optional[asyncio.Future[None]]") -> None:
        self._waiting = fut

    async def aclose(self) -> None:
        """Ends the stream: a task waiting on it stops, the symbols no other stream takes are
        unsubscribed, and bars not yet taken stay for the next stream."""
        self._end()
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    def _end(self) -> None:
        self._done = True
        if self._wanting:
            self._wanting = False
            self._session._core.release(self._symbols)

    def __del__(self) -> None:
        # Left without aclose (a `break` out of its `async for`): its symbols are let go.
        try:
            self._end()
        except Exception:  # at exit, the core may be gone
            pass


class OrderEvents:
    """Changes of a session's orders (:meth:`Session.order_events`): an iterator, blocking
    (``for``) and asynchronous (``async for``), of :class:`Order` and :class:`Fill`. It ends
    when the session closes, after every change the cancel on close made."""

    def __init__(self, session: Session):
        self._core = session._core
        self._ready: "collections.deque[Union[Order, Fill]]" = collections.deque()
        self._done = False
        self._awaited = False

    def _take(self) -> bool:
        """Moves what the core holds into ``_ready``: whether anything came. Ends the
        iterator, or raises, once nothing more will come."""
        try:
            items = self._core.take_order_events(256)
        except _native.NativeError as e:
            self._done = True
            err = _error(e.args)
            if isinstance(err, SessionClosed):
                return False
            raise err from None
        self._ready.extend(_told(i) for i in items)
        return bool(items)

    def poll(self) -> "List[Union[Order, Fill]]":
        """Every change there is now, without waiting."""
        if not self._done:
            while self._take():
                pass
        out = list(self._ready)
        self._ready.clear()
        return out

    def __iter__(self) -> "OrderEvents":
        return self

    def __next__(self) -> "Union[Order, Fill]":
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._done or (not self._take() and self._done):
                raise StopIteration
            if not self._ready:
                # Short waits, so that Ctrl-C is seen between them.
                self._core.wait_order_events(0.2)

    def __aiter__(self) -> "OrderEvents":
        return self

    async def __anext__(self) -> "Union[Order, Fill]":
        # One waker: a second task waiting would take the first one's.
        if self._awaited:
            raise Error("order events are awaited by one task at a time")
        self._awaited = True
        try:
            return await self._anext()
        finally:
            self._awaited = False

    async def _anext(self) -> "Union[Order, Fill]":
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._done or (not self._take() and self._done):
                raise StopAsyncIteration
            if not self._ready:
                await _woken(self._core.set_order_waker)


class _Run:
    """One :meth:`Session.run`."""

    def __init__(
        self, session: Session, strategy: Strategy, symbols: Iterable[str], bar_seconds: int,
        duration: Optional[float],
    ):
        window = getattr(strategy, "window", None)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(f"strategy.window: a positive int, not {window!r}")
        if not callable(getattr(strategy, "on_bars", None)):
            raise ConfigError("strategy.on_bars(symbol, bars) is missing")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0
        ):
            raise ConfigError(f"duration: seconds (>= 0) or None, not {duration!r}")
        self.session = session
        self.strategy = strategy
        self.symbols = _symbols(symbols)
        self.bar_seconds = bar_seconds
        self.duration = duration
        self.window = window
        self.on_fill: Optional[Callable[[Fill], Any]] = getattr(strategy, "on_fill", None)
        self.bars: Dict[str, "collections.deque[Bar]"] = {
            s: collections.deque(maxlen=window) for s in self.symbols
        }
        self.placed: List[str] = []
        self.fills: List[Fill] = []
        self.refused = 0
        self.live_bars = 0
        self.events = session.order_events() if session._core.trading else None

    def run(self) -> RunSummary:
        started = time.monotonic()
        s = self.session
        s.connect()
        try:
            history = self._history()
            self._live(started)
        except BaseException:
            if s._core.trading and not s.closed:
                try:
                    s.cancel_all()
                except Error as e:
                    _log.warning("working orders not cancelled after the strategy failed: %s", e)
            raise
        try:
            orders = {o.ref: o for o in s.orders()} if s._core.trading else {}
        except SessionClosed:  # the session closing ended the run
            orders = {}
        return RunSummary(
            history=history,
            live_bars=self.live_bars,
            orders=[orders[r] for r in self.placed if r in orders],
            fills=self.fills,
            refused=self.refused,
            seconds=time.monotonic() - started,
        )

    def _history(self) -> Dict[str, int]:
        bar_seconds, duration = self.session._core.history_settings
        counts = {}
        for symbol in self.symbols:
            bars = self.session.history(symbol, bar_seconds, duration)
            counts[symbol] = len(bars)
            self.bars[symbol].extend(bars)
            if bars:
                self._call_strategy(symbol)
        return counts

    def _live(self, started: float) -> None:
        s = self.session
        _call(s._core.want, self.symbols, self.bar_seconds)
        try:
            _call(s._core.subscribe, self.symbols)
            self._take_bars(started)
        finally:
            s._core.release(self.symbols)

    def _take_bars(self, started: float) -> None:
        s = self.session
        wanted = set(self.symbols)
        deadline = None if self.duration is None else started + self.duration
        while True:
            self._tell_fills()
            item = s._pop(wanted)
            if item is not None:
                symbol, bar = item
                self.live_bars += 1
                self.bars[symbol].append(bar)
                self._call_strategy(symbol)
                continue
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                if not s._next_bars():
                    s._core.wait_bars(left)
            except _native.NativeError as e:
                err = _error(e.args)
                if isinstance(err, SessionClosed):
                    return
                raise err from None

    def _tell_fills(self) -> None:
        if self.events is None:
            return
        for event in self.events.poll():
            if isinstance(event, Fill):
                self.fills.append(event)
                if self.on_fill is not None:
                    self.on_fill(event)

    def _call_strategy(self, symbol: str) -> None:
        orders = self.strategy.on_bars(symbol, list(self.bars[symbol]))
        if orders is None:
            return
        if isinstance(orders, dict):
            orders = [orders]
        for spec in orders:
            if not isinstance(spec, dict):
                raise ConfigError(f"on_bars returns place_order's arguments as dicts, not {spec!r}")
            spec = dict(spec)
            spec.setdefault("symbol", symbol)
            spec.setdefault("ref", self.session._core.next_ref())
            try:
                self.session.place_order(**spec)
            except TypeError as e:
                raise ConfigError(f"on_bars returned an order place_order does not take: {e}")
            except (RiskLimit, BrokerError) as e:
                self.refused += 1
                _log.warning("order of %s refused: %s", symbol, e)
                continue
            finally:
                self.placed.append(spec["ref"])
            self._tell_fills()
