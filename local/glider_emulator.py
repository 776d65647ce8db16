"""A local emulator of the Glider API's rebalance trigger (stdlib only).

It follows the contract in the project's Glider API notes: ``POST
/v1/portfolio/{portfolioId}/rebalance/schedule/trigger`` with an ``X-API-KEY`` header and a JSON
body ``{"skipScheduleValidation": bool}``; the success body; the v1 error envelope; the
non-envelope 429 body with ``Retry-After``; and ``X-RateLimit-*`` headers on every response.

Tests drive it in-process (``with GliderEmulator(["key"]) as api: ...``) and can script faults per
portfolio (errors, 429s, slow answers, connection resets, malformed bodies, lost responses). It can
also be run on its own::

    python -m local.glider_emulator --port 8080 --api-key KEY --portfolio ID

The API key is never written to a response, a log line or the console.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from types import FrameType
from typing import Any, Literal, cast
from urllib.parse import unquote

from local.loopback_server import BackgroundServer, StoppableHTTPServer

__all__ = ["Fault", "GliderEmulator", "Rebalance", "RecordedRequest", "main"]

# The trigger path, matched on the raw request target (before percent-decoding), so that an encoded
# "/" (%2F) stays inside the one portfolio segment.
_TRIGGER_PATH = re.compile(r"^/v1/portfolio/(?P<id>[^/]+)/rebalance/schedule/trigger$")
_MAX_BODY_BYTES = 1024 * 1024
_MAX_LINE_BYTES = 65536
# Reported in the X-RateLimit-* headers when no rate limit is configured.
_NOMINAL_LIMIT = 1000
_SENSITIVE_HEADERS = frozenset({"x-api-key", "authorization", "cookie"})

FaultKind = Literal[
    "error", "rate_limited", "slow", "connection_reset", "malformed", "lost_response", "truncated"
]


# --------------------------------------------------------------------------- public data types


@dataclass(frozen=True)
class Fault:
    """One scripted response for a portfolio; a portfolio's faults are consumed in order.

    Faults apply only to requests that reached the trigger path with a valid API key.
    """

    kind: FaultKind
    status: int = 0
    code: str = ""
    message: str = ""
    retry_after: int = 1
    seconds: float = 0.0
    body: bytes = b""
    content_type: str = ""

    @classmethod
    def error(cls, status: int, code: str, message: str) -> Fault:
        """Answer with the v1 error envelope, this HTTP status and this error code."""
        _check_status(status)
        return cls(kind="error", status=status, code=code, message=message)

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> Fault:
        """Answer 429 with ``Retry-After`` and the non-envelope 429 body."""
        if retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        return cls(kind="rate_limited", status=429, retry_after=retry_after)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Sleep, then answer normally (the trigger still happens, even if the client gave up)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return cls(kind="slow", seconds=seconds)

    @classmethod
    def connection_reset(cls) -> Fault:
        """Reset the TCP connection (RST) without answering; nothing is triggered."""
        return cls(kind="connection_reset")

    @classmethod
    def malformed(
        cls,
        status: int = 200,
        body: bytes = b"<html>oops</html>",
        content_type: str = "text/html",
    ) -> Fault:
        """Answer with this raw body and content type (e.g. a proxy's HTML page)."""
        _check_status(status)
        return cls(kind="malformed", status=status, body=body, content_type=content_type)

    @classmethod
    def lost_response(cls) -> Fault:
        """Trigger for real (recorded as a rebalance), then reset the connection unanswered."""
        return cls(kind="lost_response")

    @classmethod
    def truncated(cls) -> Fault:
        """Trigger for real, send the 200 status line, headers and half the success body, then
        reset the connection: the client knows Glider accepted, not the rebalance id."""
        return cls(kind="truncated")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str  # the raw request target, query string included
    portfolio_id: str | None  # percent-decoded path segment; None if the path did not match
    headers: dict[str, str]  # lower-cased names, values as received
    body: bytes
    status: int | None  # status answered; None if the connection was reset (or still in flight)
    received_at: float  # epoch seconds

    def __repr__(self) -> str:  # keeps the API key out of assertion messages and logs
        shown = {
            k: ("<redacted>" if k in _SENSITIVE_HEADERS else v) for k, v in self.headers.items()
        }
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, "
            f"portfolio_id={self.portfolio_id!r}, headers={shown!r}, body={self.body!r}, "
            f"status={self.status!r}, received_at={self.received_at!r})"
        )


@dataclass(frozen=True)
class Rebalance:
    """A rebalance the emulator actually triggered."""

    portfolio_id: str
    rebalance_id: str
    schedule_id: str
    request_id: str
    correlation_id: str
    skip_schedule_validation: bool
    trigger_time: int


# --------------------------------------------------------------------------- internals


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"HTTP status out of range: {status}")


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _schedule_id(portfolio_id: str) -> str:
    digest = hashlib.sha256(portfolio_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sched_{digest[:12]}"


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class _Entry:
    """A request being recorded (mutable until it is answered)."""

    method: str
    path: str
    portfolio_id: str | None
    headers: dict[str, str]
    body: bytes
    received_at: float
    status: int | None = None

    def frozen(self) -> RecordedRequest:
        return RecordedRequest(
            method=self.method,
            path=self.path,
            portfolio_id=self.portfolio_id,
            headers=dict(self.headers),
            body=self.body,
            status=self.status,
            received_at=self.received_at,
        )


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    reset: bool = False  # close with RST instead of answering
    truncate: bool = False  # send the head and half the body, then close with RST


@dataclass
class _Portfolio:
    has_schedule: bool


class _TokenBucket:
    """A token bucket: ``rate`` tokens a second, burst ``max(1, rate)``."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate_limit_per_second must be > 0")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self) -> float:
        """Take a token; return 0 on success, else the seconds until one is available."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def headers(self) -> list[tuple[str, str]]:
        self._refill()
        until_full = (self.capacity - self.tokens) / self.rate
        return [
            ("X-RateLimit-Limit", str(math.ceil(self.capacity))),
            ("X-RateLimit-Remaining", str(math.floor(self.tokens))),
            ("X-RateLimit-Reset", str(math.ceil(time.time() + until_full))),
        ]


def _json_response(status: int, payload: dict[str, Any]) -> _Response:
    return _Response(status=status, body=json.dumps(payload, separators=(",", ":")).encode())


def _error(status: int, code: str, message: str) -> _Response:
    return _json_response(
        status,
        {
            "success": False,
            "error": {"code": code, "message": message, "details": {}},
            "correlationId": _new_id("corr"),
            "requestId": _new_id("req"),
            "timestamp": _timestamp(),
        },
    )


def _too_many_requests(retry_after: int) -> _Response:
    response = _json_response(
        429,
        {
            "error": "Too Many Requests",
            "message": f"Rate limit exceeded. Try again in {retry_after} seconds.",
            "retryAfter": retry_after,
            "correlationId": _new_id("corr"),
            "requestId": _new_id("req"),
        },
    )
    response.headers.append(("Retry-After", str(retry_after)))
    return response


class _BadBody(Exception):
    pass


@dataclass
class _Incoming:
    method: str
    matched: bool
    portfolio_id: str | None
    api_key: str | None
    body: bytes


class _Server(StoppableHTTPServer):
    def __init__(self, address: tuple[str, int], emulator: GliderEmulator) -> None:
        self.emulator = emulator
        self.timeout = 0.5  # handle_request() never blocks for longer than this
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler, on_accept=emulator._connection_opened)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GliderEmulator/1.0"
    disable_nagle_algorithm = True

    @property
    def _emulator(self) -> GliderEmulator:
        return cast(_Server, self.server).emulator

    # Every method, known or not, goes to _dispatch (405 on the trigger path, 404 elsewhere).
    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silent: a log line could quote a request

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors found by the stdlib parser, answered with the envelope."""
        self.close_connection = True
        codes = {400: "API_002", 404: "API_006", 405: "API_003", 501: "API_003"}
        text = {400: "Invalid request", 501: "Method not allowed"}.get(code, "Request rejected")
        response = _error(code, codes.get(code, "API_000"), text)
        path = getattr(self, "path", "") or ""
        entry = self._emulator._record(_Entry(self.command or "", path, None, {}, b"", time.time()))
        self._emulator._finish(entry, response.status)
        self._write(response)

    def _headers_dict(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            result[key] = f"{result[key]}, {value}" if key in result else value
        return result

    def _read_body(self) -> bytes:
        transfer_encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in transfer_encoding:
            return self._read_chunked()
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        values = {v.strip() for v in lengths}
        if len(values) != 1:
            raise _BadBody("conflicting Content-Length")
        value = values.pop()
        if not value.isdigit():
            raise _BadBody("invalid Content-Length")
        length = int(value)
        if length > _MAX_BODY_BYTES:
            raise _BadBody("body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadBody("truncated body")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE_BYTES)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadBody("invalid chunk size") from exc
            if size < 0:
                raise _BadBody("invalid chunk size")
            if size == 0:
                while self.rfile.readline(_MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY_BYTES:
                raise _BadBody("body too large")
            data = self.rfile.read(size)
            if len(data) != size:
                raise _BadBody("truncated chunk")
            chunks.append(data)
            self.rfile.readline(_MAX_LINE_BYTES)

    def _dispatch(self) -> None:
        emulator = self._emulator
        received_at = time.time()
        method = self.command
        raw_path = self.path
        path_only = raw_path.split("?", 1)[0].split("#", 1)[0]
        match = _TRIGGER_PATH.match(path_only)
        portfolio_id = unquote(match.group("id"), errors="replace") if match else None
        headers = self._headers_dict()
        try:
            body = self._read_body()
        except _BadBody:
            # The rest of the request cannot be trusted: answer and close the connection.
            self.close_connection = True
            entry = emulator._record(
                _Entry(method, raw_path, portfolio_id, headers, b"", received_at)
            )
            response = _error(400, "API_002", "Invalid request")
            response.headers.extend(emulator._rate_limit_headers())
            emulator._finish(entry, response.status)
            self._write(response)
            return
        entry = emulator._record(_Entry(method, raw_path, portfolio_id, headers, body, received_at))
        try:
            response = emulator._process(
                _Incoming(
                    method=method,
                    matched=match is not None,
                    portfolio_id=portfolio_id,
                    api_key=self.headers.get("X-API-KEY"),
                    body=body,
                )
            )
        except Exception:  # never let a bug take the server down; answer like the API would
            response = _error(500, "API_000", "Internal server error")
            response.headers.extend(emulator._rate_limit_headers())
        emulator._finish(entry, None if response.reset else response.status)
        if response.reset:
            self._reset_connection()
        elif response.truncate:
            self._write(response, body_bytes=len(response.body) // 2)
            self._reset_connection()
        else:
            self._write(response)

    def _write(self, response: _Response, *, body_bytes: int | None = None) -> None:
        reason = self.responses.get(response.status, ("",))[0]
        lines = [
            f"HTTP/1.1 {response.status} {reason}".rstrip(),
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        payload = head if self.command == "HEAD" else head + response.body[:body_bytes]
        try:
            self.wfile.write(payload)  # one write: headers and body in one segment
            self.wfile.flush()
        except OSError:  # the client went away (e.g. it timed out during a slow answer)
            self.close_connection = True

    def _reset_connection(self) -> None:
        """Close the connection with a TCP RST and no response."""
        self.close_connection = True
        conn = self.connection
        cast(_Server, self.server).forget(conn)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop the makefile reference so close() really closes the socket
        conn.close()


# --------------------------------------------------------------------------- the emulator


class GliderEmulator(BackgroundServer):
    """The Glider trigger endpoint on a local port, with scripted faults and full recording."""

    def __init__(
        self,
        api_keys: Iterable[str] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_seconds: float = 0.0,
        rate_limit_per_second: float | None = None,
        cooldown_seconds: float = 0.0,
    ) -> None:
        super().__init__("glider-emulator")
        self._host = host
        self._bind_port = port
        self._lock = threading.Lock()
        self._api_keys: tuple[str, ...] = tuple(api_keys)
        self._latency = float(latency_seconds)
        self._rate_limit = rate_limit_per_second
        self._bucket = _TokenBucket(rate_limit_per_second) if rate_limit_per_second else None
        if rate_limit_per_second is not None and self._bucket is None:
            raise ValueError("rate_limit_per_second must be > 0")
        self._cooldown = float(cooldown_seconds)
        self._portfolios: dict[str, _Portfolio] = {}
        self._scripts: dict[str, deque[Fault]] = {}
        self._entries: list[_Entry] = []
        self._rebalances: list[Rebalance] = []
        self._last_trigger: dict[str, float] = {}
        self._outage: Fault | None = None
        self._stopping = threading.Event()

    # ---- lifecycle (start, stop, context manager: BackgroundServer)

    def _make_server(self) -> _Server:
        return _Server((self._host, self._bind_port), self)

    def _before_start(self) -> None:
        self._stopping.clear()

    def _before_stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a latency or slow fault

    @property
    def base_url(self) -> str:
        port = self._port()
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    # ---- configuration

    def add_portfolio(self, portfolio_id: str, *, has_schedule: bool = True) -> None:
        with self._lock:
            self._portfolios[portfolio_id] = _Portfolio(has_schedule=has_schedule)

    def set_api_keys(self, keys: Iterable[str]) -> None:
        """Replace the accepted keys (a rotation): old keys stop working at once."""
        new_keys = tuple(keys)
        with self._lock:
            self._api_keys = new_keys

    def script(self, portfolio_id: str, *faults: Fault) -> None:
        """Append faults to the portfolio's queue; each answers one authorised trigger."""
        with self._lock:
            self._scripts.setdefault(portfolio_id, deque()).extend(faults)

    def set_outage(self, fault: Fault | None) -> None:
        """Answer every authorised trigger with `fault` (scripts untouched) until set to None."""
        with self._lock:
            self._outage = fault

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = float(seconds)

    # ---- observation

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [entry.frozen() for entry in self._entries]

    @property
    def rebalances(self) -> list[Rebalance]:
        with self._lock:
            return list(self._rebalances)

    def rebalances_for(self, portfolio_id: str) -> list[Rebalance]:
        with self._lock:
            return [r for r in self._rebalances if r.portfolio_id == portfolio_id]

    def reset(self) -> None:
        """Forget requests, rebalances, scripts, cooldowns and counters; keep portfolios/keys."""
        with self._lock:
            self._entries.clear()
            self._rebalances.clear()
            self._scripts.clear()
            self._last_trigger.clear()
            if self._rate_limit:
                self._bucket = _TokenBucket(self._rate_limit)
        self._forget_connections()

    # ---- used by the handler

    def _record(self, entry: _Entry) -> _Entry:
        with self._lock:
            self._entries.append(entry)
        return entry

    def _finish(self, entry: _Entry, status: int | None) -> None:
        with self._lock:
            entry.status = status

    def _rate_limit_headers(self) -> list[tuple[str, str]]:
        with self._lock:
            return self._rate_limit_headers_locked()

    def _rate_limit_headers_locked(self) -> list[tuple[str, str]]:
        if self._bucket is not None:
            return self._bucket.headers()
        return [
            ("X-RateLimit-Limit", str(_NOMINAL_LIMIT)),
            ("X-RateLimit-Remaining", str(_NOMINAL_LIMIT)),
            ("X-RateLimit-Reset", str(math.ceil(time.time()) + 1)),
        ]

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _process(self, request: _Incoming) -> _Response:
        response = self._answer(request)
        response.headers.extend(self._rate_limit_headers())
        return response

    def _answer(self, request: _Incoming) -> _Response:
        # 1. route
        if not request.matched or request.portfolio_id is None:
            return _error(404, "API_006", "Not found")
        if request.method != "POST":
            response = _error(405, "API_003", "Method not allowed")
            response.headers.append(("Allow", "POST"))
            return response
        portfolio_id = request.portfolio_id
        # 2. latency
        with self._lock:
            latency = self._latency
        self._sleep(latency)
        # 3. auth
        if not request.api_key:
            return _error(401, "API_101", "API key missing")
        with self._lock:
            keys = self._api_keys
        presented = request.api_key.encode("latin-1", "replace")  # header bytes, as sent
        if not any(hmac.compare_digest(presented, k.encode("utf-8")) for k in keys):
            return _error(401, "API_102", "Invalid API key")
        # 4. an outage, else the portfolio's scripted faults
        with self._lock:
            queue = self._scripts.get(portfolio_id)
            fault = self._outage or (queue.popleft() if queue else None)
        if fault is not None:
            faulted = self._apply_fault(fault)
            if faulted is not None:
                return faulted
        kind = fault.kind if fault is not None else None
        # 5-7 under one lock, so that the cooldown check and the trigger are atomic.
        with self._lock:
            response = self._trigger_locked(portfolio_id, request.body)
        if kind == "lost_response":
            response.reset = True
        elif kind == "truncated" and 200 <= response.status < 300:
            response.truncate = True
        return response

    def _apply_fault(self, fault: Fault) -> _Response | None:
        """The fault's own response, or None to go on with the trigger (slow, lost_response)."""
        if fault.kind == "error":
            return _error(fault.status, fault.code, fault.message)
        if fault.kind == "rate_limited":
            return _too_many_requests(fault.retry_after)
        if fault.kind == "malformed":
            return _Response(fault.status, fault.body, content_type=fault.content_type)
        if fault.kind == "connection_reset":
            return _Response(0, b"", reset=True)
        if fault.kind == "slow":
            self._sleep(fault.seconds)
        return None

    def _trigger_locked(self, portfolio_id: str, body: bytes) -> _Response:
        # 5. rate limit, then the per-portfolio cooldown
        if self._bucket is not None:
            wait = self._bucket.take()
            if wait > 0:
                return _too_many_requests(max(1, math.ceil(wait)))
        now = time.monotonic()
        if self._cooldown > 0 and portfolio_id in self._last_trigger:
            remaining = self._last_trigger[portfolio_id] + self._cooldown - now
            if remaining > 0:
                return _too_many_requests(max(1, math.ceil(remaining)))
        # 6. body
        skip = _parse_skip(body)
        if skip is None:
            return _error(400, "API_002", "Invalid request")
        # 7. portfolio
        portfolio = self._portfolios.get(portfolio_id)
        if portfolio is None:
            return _error(404, "API_200", "Portfolio not found")
        if not portfolio.has_schedule and not skip:
            return _error(
                400,
                "API_002",
                "Invalid request: portfolio has no rebalance schedule "
                "(set skipScheduleValidation to trigger anyway)",
            )
        rebalance = Rebalance(
            portfolio_id=portfolio_id,
            rebalance_id=_new_id("rebal"),
            schedule_id=_schedule_id(portfolio_id),
            request_id=_new_id("req"),
            correlation_id=_new_id("corr"),
            skip_schedule_validation=skip,
            trigger_time=int(time.time()),
        )
        self._rebalances.append(rebalance)
        self._last_trigger[portfolio_id] = now
        return _json_response(
            200,
            {
                "success": True,
                "data": {
                    "portfolioId": rebalance.portfolio_id,
                    "scheduleId": rebalance.schedule_id,
                    "rebalanceId": rebalance.rebalance_id,
                    "status": "triggered",
                    "message": "Portfolio rebalance triggered successfully",
                    "triggerTime": rebalance.trigger_time,
                },
                "correlationId": rebalance.correlation_id,
                "requestId": rebalance.request_id,
                "timestamp": _timestamp(),
            },
        )


def _parse_skip(body: bytes) -> bool | None:
    """``skipScheduleValidation`` from the body; None if the body is invalid."""
    if not body.strip():
        return False
    try:
        payload = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(payload, dict):
        return None
    skip = payload.get("skipScheduleValidation", False)
    return skip if isinstance(skip, bool) else None


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.glider_emulator", description="Serve a local Glider API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="an accepted API key (repeatable; default: $GLIDER_API_KEY)",
    )
    parser.add_argument("--portfolio", action="append", default=[], metavar="ID")
    parser.add_argument(
        "--no-schedule",
        action="append",
        default=[],
        metavar="ID",
        help="a portfolio without a rebalance schedule (repeatable)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--cooldown", type=float, default=0.0, help="seconds between triggers")
    args = parser.parse_args(argv)

    keys: list[str] = args.api_key or (
        [os.environ["GLIDER_API_KEY"]] if "GLIDER_API_KEY" in os.environ else []
    )
    if not keys:
        parser.error("give --api-key (or set GLIDER_API_KEY)")
    emulator = GliderEmulator(
        keys,
        host=args.host,
        port=args.port,
        latency_seconds=args.latency_ms / 1000.0,
        rate_limit_per_second=args.rate_limit,
        cooldown_seconds=args.cooldown,
    )
    for portfolio_id in args.portfolio:
        emulator.add_portfolio(portfolio_id)
    for portfolio_id in args.no_schedule:
        emulator.add_portfolio(portfolio_id, has_schedule=False)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    with emulator:
        portfolios = ", ".join([*args.portfolio, *args.no_schedule]) or "none"
        print(f"Glider emulator listening on {emulator.base_url}", flush=True)
        print(f"portfolios: {portfolios}; {len(keys)} API key(s) accepted", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
