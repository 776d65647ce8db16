"""The one HTTP call this function makes: trigger a portfolio's rebalance on Glider.

Speaks the contract in shared/glider-api.md and turns every answer into either a Receipt or a
TriggerError. It does not retry (the trigger service owns retries) and never follows redirects.

Once the status line has arrived, it is the answer: a body cut off after a 2xx is an accepted
trigger whose rebalance id is unknown (a Receipt with `unread`), never a transport error that
would be sent again. Numbers from the answer (Retry-After) are clamped before any arithmetic.
"""

from __future__ import annotations

import json
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from glider_trigger.api_key import ApiKey
from glider_trigger.errors import (
    GliderApiError,
    GliderTransportError,
    UnexpectedResponseError,
)
from glider_trigger.events import validate_portfolio_id
from glider_trigger.models import Receipt
from glider_trigger.rate_limit import RateLimiter

TRIGGER_PATH = "/v1/portfolio/{portfolio_id}/rebalance/schedule/trigger"
# Success and error bodies are a few hundred bytes; anything near this is not Glider talking.
MAX_RESPONSE_BYTES = 64 * 1024
# A longer Retry-After is taken as this (a day): whatever Glider says, waiting longer than the
# guard remembers and SQS keeps a message would be meaningless, and dates must not overflow.
MAX_RETRY_AFTER_SECONDS = 86_400.0
_DIGITS = re.compile(r"[0-9]+")
USER_AGENT = "glider-rebalance-trigger/0.1 (+aws-lambda)"


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


class GliderClient:
    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        http: urllib3.PoolManager | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._rate_limiter = rate_limiter
        self._base_url = base_url.rstrip("/")
        self._timeout = urllib3.Timeout(connect=connect_timeout_seconds, read=read_timeout_seconds)
        self._http = http or build_pool_manager()
        self.worst_case_seconds = connect_timeout_seconds + read_timeout_seconds
        """How long one attempt may take before it times out."""

    def trigger(
        self, portfolio_id: str, *, skip_schedule_validation: bool, api_key: ApiKey
    ) -> Receipt:
        # Validated by the parser already; checked again so that no caller can bend the path.
        path = TRIGGER_PATH.format(portfolio_id=quote(validate_portfolio_id(portfolio_id), safe=""))
        body = json.dumps({"skipScheduleValidation": skip_schedule_validation}).encode()
        try:
            response = self._http.request(
                "POST",
                self._base_url + path,
                body=body,
                headers={
                    "X-API-KEY": api_key.reveal(),
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                },
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except NewConnectionError as exc:  # before its base class, ConnectTimeoutError
            raise GliderTransportError(
                f"could not connect to Glider: {type(exc).__name__}",
                timed_out=False,
                maybe_delivered=False,
            ) from exc
        except ConnectTimeoutError as exc:
            raise GliderTransportError(
                "could not connect to Glider within the connect timeout",
                timed_out=True,
                maybe_delivered=False,
            ) from exc
        except Urllib3TimeoutError as exc:
            raise GliderTransportError(
                "no response from Glider within the read timeout",
                timed_out=True,
                maybe_delivered=True,
            ) from exc
        except HTTPError as exc:
            # Reset or closed after the request went out: Glider may have acted on it.
            raise GliderTransportError(
                f"connection to Glider failed: {type(exc).__name__}",
                timed_out=False,
                maybe_delivered=True,
            ) from exc
        headers = {name.lower(): value for name, value in response.headers.items()}
        payload, unread = _read_bounded(response)
        if self._rate_limiter is not None:
            self._rate_limiter.observe(headers)  # slow down before Glider answers 429
        return _interpret(response.status, headers, payload, unread)


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


def _interpret(
    status: int, headers: dict[str, str], payload: bytes, unread: str | None = None
) -> Receipt:
    document = _json_object(payload)
    request_id = _text(document.get("requestId")) or headers.get("x-request-id")
    correlation_id = _text(document.get("correlationId")) or headers.get("x-correlation-id")
    if 200 <= status < 300 and unread is not None:
        # Glider accepted the trigger; sending it again would start a second rebalance.
        return Receipt(
            rebalance_id=None,
            schedule_id=None,
            request_id=request_id,
            correlation_id=correlation_id,
            unread=f"HTTP {status}, but {unread}: the rebalance id is unknown",
        )
    if 200 <= status < 300:
        data = document.get("data")
        if document.get("success") is not True or not isinstance(data, dict):
            raise UnexpectedResponseError(
                f"HTTP {status} without a success body; the rebalance may or may not have "
                "been triggered",
                status=status,
                request_id=request_id,
                correlation_id=correlation_id,
            )
        return Receipt(
            rebalance_id=_text(data.get("rebalanceId")),
            schedule_id=_text(data.get("scheduleId")),
            request_id=request_id,
            correlation_id=correlation_id,
            status=_text(data.get("status")),
        )
    code, message = _error_code_and_message(document)
    raise GliderApiError(
        message or f"HTTP {status} from Glider",
        status=status,
        code=code,
        request_id=request_id,
        correlation_id=correlation_id,
        retry_after_seconds=_retry_after(headers.get("retry-after"), document),
    )


def _error_code_and_message(document: dict[str, Any]) -> tuple[str | None, str | None]:
    error = document.get("error")
    if isinstance(error, dict):  # the v1 envelope
        return _text(error.get("code")), _text(error.get("message"))
    # The 429 body: {"error": "Too Many Requests", "message": "..."}
    message = _text(document.get("message")) or _text(error)
    return None, message


def _retry_after(header: str | None, document: dict[str, Any]) -> float | None:
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


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}


def _text(value: object) -> str | None:
    """A short string from the response, for logs and DLQ attributes."""
    if isinstance(value, str) and value:
        return value[:512]
    return None
