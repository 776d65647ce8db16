"""HTTP mechanics every Glider adapter shares: the pool, one request with its transport
failures classified, a bounded body read scrubbed of keys, Retry-After clamped, JSON bodies read
defensively.

An answer is scrubbed where it enters, before anything reads it: the key the request carried
and anything that looks like a Glider key (`scrub`) are taken out of its body and headers, so
no error message, detail, id or state copied from it can carry a key to a log line, a letter,
a trace or the invocation's answer.

Once the status line has arrived, it is the answer: a body cut off after it is reported as
`unread`, never as a transport error that would be sent again. Redirects are never followed
(the key must not travel elsewhere) and nothing is retried here (the domain owns retries).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from glider_trigger.domain.errors import ApiError, Certainty, FailureClass

# Success and error bodies are a few hundred bytes; anything near this is not Glider talking.
MAX_RESPONSE_BYTES: Final = 64 * 1024
# A longer Retry-After is taken as this (a day): whatever Glider says, waiting longer than the
# guard remembers and SQS keeps a message would be meaningless, and dates must not overflow.
MAX_RETRY_AFTER_SECONDS: Final = 86_400.0
USER_AGENT: Final = "glider-rebalance-trigger/0.1 (+aws-lambda)"
_DIGITS: Final = re.compile(r"[0-9]+")
REDACTED: Final = "<redacted>"
# What a Glider key looks like, whoever's it is. v2 keys are `gldr_sk_...` (docs/glider-api.md);
# what other kinds Glider issues (test, publishable, v1...) is not published, so, erring on the
# side of hiding, any token that starts with `gldr_` (any case) counts, up to the first character
# outside letters, digits and `_-+/=.~` (base64 and URL-safe alphabets).
GLIDER_KEY: Final = re.compile(r"gldr_[A-Za-z0-9_\-+/=.~]*", re.IGNORECASE)


def scrub(value: str, secret: str | None) -> str:
    """`value` without `secret` (the key a request carried) and without anything that looks
    like a Glider key: the one scrub every text from outside passes before it is kept."""
    if secret:
        value = value.replace(secret, REDACTED)
    return GLIDER_KEY.sub(REDACTED, value)


def build_pool_manager(*, max_connections: int = 4) -> urllib3.PoolManager:
    """One pool for the life of the execution environment: connections are kept alive
    across warm invocations, and never more of them than workers (`block`: a worker waits
    for a free connection instead of opening one more). TLS is verified against the system
    trust store."""
    return urllib3.PoolManager(
        num_pools=2,
        maxsize=max_connections,
        block=True,
        retries=False,
        cert_reqs="CERT_REQUIRED",
    )


@dataclass(frozen=True)
class Answer:
    """What came back: the status line and headers (names lower-case), the body (bounded),
    why the body could not be read whole, if it could not, and to which request."""

    status: int
    headers: dict[str, str]
    payload: bytes
    unread: str | None = None
    called: str = ""  # the request it answers, "POST https://host/path", for messages
    # Glider's clock minus ours, as its Date header showed it (0 without one): the times in the
    # answer are read on our clock, so that a lost answer's window is compared with like.
    clock_offset: float = 0.0

    def local(self, glider_time: float | None) -> float | None:
        """One of the answer's times (epoch seconds on Glider's clock) on ours."""
        return None if glider_time is None else glider_time - self.clock_offset


class HttpSession:
    """Sends one request on the shared pool and turns every way it can fail before an answer
    arrives into a transient ApiError (Certainty.LOST once the request had left)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        http: urllib3.PoolManager,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = urllib3.Timeout(connect=connect_timeout_seconds, read=read_timeout_seconds)
        self._http = http
        self.worst_case_seconds = connect_timeout_seconds + read_timeout_seconds
        """How long one request may take before it times out."""

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        secret: str,
        body: bytes | None = None,
    ) -> Answer:
        """One request; `secret` is the key it carries, which its answer is scrubbed of."""
        sent_at = time.time()
        try:
            response = self._http.request(
                method,
                self._base_url + path,
                body=body,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT, **headers},
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except HTTPError as exc:
            raise _unanswered(exc) from exc
        headers = {name.lower(): scrub(value, secret) for name, value in response.headers.items()}
        answered_at = time.time()
        offset = clock_offset(headers.get("date"), sent_at, answered_at)
        payload, unread = _read_bounded(response)
        called = f"{method} {self._base_url}{path}"
        return Answer(
            response.status,
            headers,
            scrub_payload(payload, secret),
            unread,
            called=called,
            clock_offset=offset,
        )


def _unanswered(exc: HTTPError) -> ApiError:
    """A request without an answer, as what it proves: never sent, or lost after it left."""
    if isinstance(exc, NewConnectionError):  # before its base class, ConnectTimeoutError
        return unreachable(
            f"could not connect to Glider: {type(exc).__name__}",
            timed_out=False,
            certainty=Certainty.NOT_SENT,
        )
    if isinstance(exc, ConnectTimeoutError):
        return unreachable(
            "could not connect to Glider within the connect timeout",
            timed_out=True,
            certainty=Certainty.NOT_SENT,
        )
    if isinstance(exc, Urllib3TimeoutError):
        return unreachable(
            "no response from Glider within the read timeout",
            timed_out=True,
            certainty=Certainty.LOST,
        )
    # Reset or closed after the request went out: Glider may have acted on it.
    return unreachable(
        f"connection to Glider failed: {type(exc).__name__}",
        timed_out=False,
        certainty=Certainty.LOST,
    )


def scrub_payload(payload: bytes, secret: str | None) -> bytes:
    """A body scrubbed as text, then as the JSON the adapters read from it: escapes
    (`\\u0067ldr_...`, `\\/`) and UTF-16 can spell a key that the bytes do not show."""
    cleaned = scrub(payload.decode("utf-8", "surrogateescape"), secret).encode(
        "utf-8", "surrogateescape"
    )
    try:
        document = json.loads(cleaned)
        scrubbed = _scrub_json(document, secret)
        # Re-encoded only when the JSON held a key: any other body is passed on byte for byte.
        return json.dumps(scrubbed).encode() if scrubbed != document else cleaned
    except (ValueError, RecursionError):
        # Not JSON, or nested deeper than the walk can go: scrubbed as text only.
        return cleaned


def _scrub_json(value: Any, secret: str | None) -> Any:
    if isinstance(value, str):
        return scrub(value, secret)
    if isinstance(value, list):
        return [_scrub_json(item, secret) for item in value]
    if isinstance(value, dict):
        return {scrub(k, secret): _scrub_json(v, secret) for k, v in value.items()}
    return value


def clock_offset(date: str | None, sent_at: float, answered_at: float) -> float:
    """Glider's clock minus ours, from an answer's Date header; 0 when there is none or it does
    not parse; clamped.

    Glider stamps its Date (whole seconds) somewhere between our send and its answer, so the
    difference lies between `Date - answered_at` and `Date + 1 - sent_at`. The value taken is the
    one of that interval nearest 0 (0 when the interval holds 0): never more correction than the
    answer proves, and off by at most the round trip and a second, however slow the answer was
    (a slow answer read from its middle could be off by half its round trip the other way, and a
    slow answer ignored leaves the whole difference)."""
    if not date:
        return 0.0
    try:
        glider_at = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
    lowest = glider_at - max(answered_at, sent_at)
    highest = glider_at + 1 - sent_at
    if lowest <= 0 <= highest:
        return 0.0
    offset = lowest if lowest > 0 else highest
    return max(-MAX_RETRY_AFTER_SECONDS, min(MAX_RETRY_AFTER_SECONDS, offset))


def unreachable(
    message: str, *, timed_out: bool, certainty: Literal[Certainty.NOT_SENT, Certainty.LOST]
) -> ApiError:
    """No HTTP answer: a timeout, a refused or reset connection, a TLS failure (transient);
    NOT_SENT before the request left, LOST after (Glider may have acted on it)."""
    return ApiError(
        message,
        reason="TIMEOUT" if timed_out else "CONNECTION_ERROR",
        failure_class=FailureClass.TRANSIENT,
        certainty=certainty,
    )


def _read_bounded(response: urllib3.BaseHTTPResponse) -> tuple[bytes, str | None]:
    """The body (at most MAX_RESPONSE_BYTES), and why it could not be read whole, if not."""
    try:
        payload = response.read(MAX_RESPONSE_BYTES + 1)
        if len(payload) > MAX_RESPONSE_BYTES:
            # Do not drain an unbounded body into memory: drop this connection instead.
            response.close()
            payload = payload[:MAX_RESPONSE_BYTES]
    except Urllib3TimeoutError:
        return b"", "the answer's body did not arrive within the read timeout"
    except HTTPError as exc:
        return b"", f"the answer's body was cut off: {type(exc).__name__}"
    finally:
        response.release_conn()
    return payload, None


def retry_after(header: str | None, document: dict[str, Any]) -> float | None:
    """Seconds, clamped to [0, MAX_RETRY_AFTER_SECONDS]; None when the answer gives none."""
    if header:
        header = header.strip()
        if _DIGITS.fullmatch(header):  # not str.isdigit(): it accepts "²", which float() refuses
            # Compared as digits: 400 of them would be infinity as a float.
            too_long = len(header.lstrip("0")) > len(str(int(MAX_RETRY_AFTER_SECONDS)))
            return MAX_RETRY_AFTER_SECONDS if too_long else _clamp(int(header))
        try:
            return _clamp(parsedate_to_datetime(header).timestamp() - time.time())
        except (TypeError, ValueError, OverflowError):
            pass
    body_value = document.get("retryAfter")
    if isinstance(body_value, int | float) and not isinstance(body_value, bool) and body_value >= 0:
        return _clamp(body_value)  # JSON allows 1e999 (inf) and 10**400 (no float holds it)
    return None


def _clamp(seconds: float) -> float:
    """Into [0, MAX_RETRY_AFTER_SECONDS], compared before any conversion (NaN: 0)."""
    if not seconds >= 0:  # also NaN
        return 0.0
    return MAX_RETRY_AFTER_SECONDS if seconds >= MAX_RETRY_AFTER_SECONDS else float(seconds)


def json_object(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}


def text(value: object) -> str | None:
    """A short string from the response, for logs and DLQ attributes."""
    if isinstance(value, str) and value:
        return value[:512]
    return None
