"""A CoinGecko look-alike: a real HTTP server on 127.0.0.1 (free port, own thread).

It answers ``/api/v3/coins/{id}/ohlc`` and ``/api/v3/coins/{id}/market_chart/range`` with
CoinGecko's response shapes, computed from a smooth synthetic price path per coin, and its
error shapes (401 with ``{"status": {"error_code", "error_message"}}``, 10012 nested under
``"error"``, 404 ``{"error": "coin not found"}``, 429 with ``retry-after``). Tests script
failures by queueing replies; every request is recorded.

Usage::

    from tests.coingecko_server import FakeCoinGecko, Reply

    with FakeCoinGecko(now=clock.now, demo_key="k") as server:
        app = bootstrap(overrides={"COINGECKO_BASE_URL": server.base_url,
                                   "COINGECKO_API_KEY": "k", ...}, clock=clock)
        server.queue(Reply.rate_limited(retry_after="7"))   # next request → 429
        server.queue(Reply.server_error(502), endpoint="ohlc")
        server.queue(Reply.slow(0.5))                        # answers after 0.5 s
        server.queue(Reply.json([[1704067200000, "x", 1, 1, 1]]))
        ...
        server.requests[-1].headers["x-cg-demo-api-key"]

Coins ``bitcoin`` (≈ 40,000) and ``ethereum`` (≈ 2,200) exist from the start; add others
with :meth:`FakeCoinGecko.add_coin`. ``now`` (a callable, e.g. a ``ManualClock``'s) is the
server's "current time": candles and points never go past it, except the one still-open
``/ohlc`` candle that CoinGecko also returns. ``stale_by`` makes every answer describe the
market as it was that long before ``now``, like CoinGecko's caches (``/ohlc`` is refreshed
about every 15–30 minutes): the candle stamped at the last close is then still forming.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
API_ROOT = "/api/v3"

# Recorded response shapes (bodies as CoinGecko sends them).
RATE_LIMIT_BODY = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit "
        "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher "
        "rate limits.",
    }
}
KEY_MISSING_BODY = {"status": {"error_code": 10002, "error_message": "API Key Missing"}}
KEY_INVALID_BODY = {
    "status": {
        "error_code": 10002,
        "error_message": "Incorrect API Key. Please check your keys in developer dashboard.",
    }
}
PRO_KEY_ON_DEMO_ROOT_BODY = {
    "status": {
        "error_code": 10010,
        "error_message": "If you are using Pro API key, please change your root URL from "
        "api.coingecko.com to pro-api.coingecko.com",
    }
}
DEMO_KEY_ON_PRO_ROOT_BODY = {
    "status": {
        "error_code": 10011,
        "error_message": "If you are using Demo API key, please change your root URL from "
        "pro-api.coingecko.com to api.coingecko.com",
    }
}
HISTORY_LIMIT_BODY = {
    "error": {
        "status": {
            "timestamp": "2024-04-20T22:00:05.123+00:00",
            "error_code": 10012,
            "error_message": "Your request exceeds the allowed time range. Public API users "
            "are limited to querying historical data within the past 365 days. Upgrade to a "
            "paid plan to enjoy full historical data access: "
            "https://www.coingecko.com/en/api/pricing. ",
        }
    }
}
PLAN_RESTRICTED_BODY = {
    "status": {
        "error_code": 10005,
        "error_message": "You may not have access to this endpoint. e.g. 'This request is "
        "limited Pro API subscribers'.",
    }
}
COIN_NOT_FOUND_BODY = {"error": "coin not found"}
SAMPLE_OHLC = [
    [1709395200000, 61942, 62211, 61721, 61845],
    [1709409600000, 61828, 62139, 61726, 62139],
    [1709424000000, 62171, 62210, 61821, 62068],
]
"""A recorded ``/ohlc`` answer (bitcoin, 4-hour candles): integers for round prices."""

_DEFAULT = object()


@dataclass
class Reply:
    """A scripted answer. ``body`` left at its default means "the normal answer" (after
    ``delay`` seconds, with ``status`` and extra ``headers``); bytes/str go out as is;
    anything else is JSON (NaN allowed, as CoinGecko's encoder would not, to test it)."""

    status: int = 200
    body: Any = _DEFAULT
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: str | None = "7") -> Reply:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return cls(429, RATE_LIMIT_BODY, headers)

    @classmethod
    def server_error(cls, status: int = 500, retry_after: str | None = None) -> Reply:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        text = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return cls(
            status,
            f"<html><body>{status} {text.get(status, 'Error')}</body></html>",
            {"content-type": "text/html", **headers},
        )

    @classmethod
    def unauthorized(cls, body: Any = None) -> Reply:
        return cls(401, body if body is not None else KEY_INVALID_BODY)

    @classmethod
    def forbidden(cls) -> Reply:
        return cls(403, "error code: 1020", {"content-type": "text/plain"})

    @classmethod
    def not_found(cls) -> Reply:
        return cls(404, COIN_NOT_FOUND_BODY)

    @classmethod
    def slow(cls, seconds: float) -> Reply:
        """The normal answer, after ``seconds`` (a client with a shorter timeout gives up)."""
        return cls(delay=seconds)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Reply:
        return cls(status, payload)

    @classmethod
    def raw(
        cls, body: str | bytes, status: int = 200, content_type: str = "application/json"
    ) -> Reply:
        return cls(status, body, {"content-type": content_type})


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-case names."""

    @property
    def coin(self) -> str | None:
        parts = self.path.removeprefix(API_ROOT).strip("/").split("/")
        return parts[1] if len(parts) >= 3 and parts[0] == "coins" else None

    @property
    def endpoint(self) -> str:
        parts = self.path.removeprefix(API_ROOT).strip("/").split("/")
        return "/".join(parts[2:]) if len(parts) >= 3 and parts[0] == "coins" else "/".join(parts)


@dataclass
class PricePath:
    """A smooth, deterministic price in USD at any time (moves < 1 % an hour)."""

    base: float
    amplitude: float = 0.04
    period_hours: float = 61.0
    volume: float = 2.0e10

    def price(self, when: datetime) -> float:
        hours = (when - EPOCH).total_seconds() / 3600
        wave = self.amplitude * math.sin(2 * math.pi * hours / self.period_hours)
        ripple = 0.004 * math.sin(2 * math.pi * hours / 5.3)
        return self.base * (1 + wave + ripple)

    def volume_24h(self, when: datetime) -> float:
        hours = (when - EPOCH).total_seconds() / 3600
        return self.volume * (1 + 0.2 * math.sin(2 * math.pi * hours / 24))


class FakeCoinGecko:
    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        demo_key: str | None = None,
        pro_key: str | None = None,
        history_days: int | None = 365,
        include_open_candle: bool = True,
        latency: float = 0.0,
        stale_by: timedelta = timedelta(0),
    ) -> None:
        self.now = now or (lambda: datetime.now(UTC))
        self.stale_by = stale_by
        """Answers are computed as of ``now() - stale_by`` (a cached answer)."""
        self.latency = latency
        """Seconds every answer waits before it is sent (a slow network)."""
        self.demo_key = demo_key
        self.pro_key = pro_key
        self.history_days = history_days
        """Public/Demo requests older than this many days → 401 with error 10012."""
        self.include_open_candle = include_open_candle
        self.coins: dict[str, PricePath] = {
            "bitcoin": PricePath(40_000.0),
            "ethereum": PricePath(2_200.0, amplitude=0.05, period_hours=47.0, volume=9.0e9),
        }
        self.requests: list[Request] = []
        self._queue: list[tuple[str | None, Reply]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> FakeCoinGecko:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeCoinGecko:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """Set ``COINGECKO_BASE_URL`` to this."""
        return f"http://127.0.0.1:{self.port}{API_ROOT}"

    # -------------------------------------------------------------- scripting

    def add_coin(self, coin_id: str, base: float, **kwargs: Any) -> None:
        self.coins[coin_id] = PricePath(base, **kwargs)

    def queue(self, *replies: Reply, endpoint: str | None = None) -> None:
        """Answer the next matching requests with ``replies``, in order. ``endpoint``
        (``"ohlc"`` or ``"market_chart/range"``) limits them to that endpoint."""
        with self._lock:
            self._queue.extend((endpoint, reply) for reply in replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def requests_to(self, endpoint: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def _next_reply(self, request: Request) -> Reply | None:
        with self._lock:
            self.requests.append(request)
            for index, (endpoint, reply) in enumerate(self._queue):
                if endpoint is None or endpoint == request.endpoint:
                    del self._queue[index]
                    return reply
        return None

    # -------------------------------------------------------------- answers

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        """The normal answer to ``request``: (status, JSON body, headers)."""
        denied = self._check_key(request.headers)
        if denied is not None:
            return 401, denied, {}
        paid = self.pro_key is not None and request.headers.get("x-cg-pro-api-key") == self.pro_key
        coin = request.coin
        if coin is None or request.endpoint not in ("ohlc", "market_chart/range"):
            return 404, {"error": "Not Found"}, {}
        path = self.coins.get(coin)
        if path is None:
            return 404, COIN_NOT_FOUND_BODY, {}
        if request.query.get("vs_currency") != "usd":
            return 400, {"error": "invalid vs_currency"}, {}
        now = self.now() - self.stale_by
        if request.endpoint == "ohlc":
            return self._ohlc(path, request.query, now, paid)
        return self._range(path, request.query, now, paid)

    def _check_key(self, headers: dict[str, str]) -> Any:
        demo = headers.get("x-cg-demo-api-key")
        pro = headers.get("x-cg-pro-api-key")
        if self.demo_key is None and self.pro_key is None:
            return None
        if demo is not None and demo == self.demo_key:
            return None
        if pro is not None and pro == self.pro_key:
            return None
        if demo is not None and demo == self.pro_key:
            return PRO_KEY_ON_DEMO_ROOT_BODY
        if pro is not None and pro == self.demo_key:
            return DEMO_KEY_ON_PRO_ROOT_BODY
        if demo is None and pro is None:
            return KEY_MISSING_BODY
        return KEY_INVALID_BODY

    def _ohlc(
        self, path: PricePath, query: dict[str, str], now: datetime, paid: bool
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            days = int(query.get("days", ""))
        except ValueError:
            return 400, {"error": "invalid days"}, {}
        if query.get("interval") == "hourly":
            if not paid:
                return 401, PLAN_RESTRICTED_BODY, {}
            step = timedelta(hours=1)
        elif days <= 2:
            step = timedelta(minutes=30)
        elif days <= 30:
            step = timedelta(hours=4)
        else:
            step = timedelta(days=4)
        first = _ceil(now - timedelta(days=days), step)
        rows = []
        close = first
        while close <= now or (self.include_open_candle and close - step < now):
            rows.append(_ohlc_row(path, close - step, min(close, now), close))
            close += step
        return 200, rows, {}

    def _range(
        self, path: PricePath, query: dict[str, str], now: datetime, paid: bool
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            start = EPOCH + timedelta(seconds=float(query["from"]))
            end = EPOCH + timedelta(seconds=float(query["to"]))
        except (KeyError, ValueError):
            return 400, {"error": "from and to are required unix times"}, {}
        if (
            not paid
            and self.history_days is not None
            and start < now - timedelta(days=self.history_days)
        ):
            return 401, HISTORY_LIMIT_BODY, {}
        end = min(end, now)
        times: list[datetime] = []
        if start >= now - timedelta(days=1):
            current = _ceil(start, timedelta(minutes=5))
            while current <= end:
                times.append(current)
                current += timedelta(minutes=5)
        elif end - start <= timedelta(days=90):
            current = _ceil(start, timedelta(hours=1))
            while current <= end:
                hour = int((current - EPOCH).total_seconds() // 3600)
                jitter = timedelta(seconds=1 + (hour * 7919) % 240, milliseconds=hour % 997)
                if start <= current + jitter <= end:
                    times.append(current + jitter)
                current += timedelta(hours=1)
        else:
            current = _ceil(start, timedelta(days=1))
            while current <= end:
                times.append(current)
                current += timedelta(days=1)
        if end == now and (not times or times[-1] < now):
            times.append(now)  # CoinGecko appends the live price
        prices = [[_ms(t), round(path.price(t), 8)] for t in times]
        caps = [[_ms(t), round(path.price(t) * 19_600_000, 2)] for t in times]
        volumes = [[_ms(t), round(path.volume_24h(t), 2)] for t in times]
        return 200, {"prices": prices, "market_caps": caps, "total_volumes": volumes}, {}


def _ceil(when: datetime, step: timedelta) -> datetime:
    micros = (when - EPOCH) // timedelta(microseconds=1)
    size = step // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=-(-micros // size) * size)


def _ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


def _ohlc_row(path: PricePath, start: datetime, end: datetime, stamp: datetime) -> list[Any]:
    samples = [path.price(start)]
    current = start
    while current < end:
        current = min(current + timedelta(minutes=5), end)
        samples.append(path.price(current))
    return [
        _ms(stamp),
        round(samples[0], 2),
        round(max(samples), 2),
        round(min(samples), 2),
        round(samples[-1], 2),
    ]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected here; nothing to report.
        return


class _Handler(BaseHTTPRequestHandler):
    fake: FakeCoinGecko
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request("GET", parts.path, query, headers)
        reply = self.fake._next_reply(request)
        if reply is not None and reply.delay and self.fake._stopping.wait(reply.delay):
            return
        if self.fake.latency and self.fake._stopping.wait(self.fake.latency):
            return
        if reply is None or reply.body is _DEFAULT:
            status, body, extra = self.fake.answer(request)
            if reply is not None:
                status = reply.status if reply.status != 200 else status
                extra = {**extra, **reply.headers}
        else:
            status, body, extra = reply.status, reply.body, dict(reply.headers)
        if isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body, allow_nan=True).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", extra.pop("content-type", "application/json"))
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return


def serve(**kwargs: Any) -> Iterator[FakeCoinGecko]:
    """For a pytest fixture: ``yield from serve(now=clock.now)``."""
    with FakeCoinGecko(**kwargs) as server:
        yield server
