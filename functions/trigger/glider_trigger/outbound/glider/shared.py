"""What every Glider API version shares: one call on the session (paced by Glider's rate-limit
headers), the status and error-code tables (v1 and v2 use the same API_xxx codes), a success
body, and the classified ApiError of anything else. The version modules own their paths,
headers, bodies and where their ids live.

A 404 is Glider's own "not found" only in Glider's error envelope; without it, a router
answered for a route that does not exist (ROUTE_NOT_FOUND, systemic), whatever was called.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote

from glider_trigger.domain.errors import (
    ApiError,
    ApiFacts,
    Certainty,
    FailureClass,
    KeyRefusedError,
)
from glider_trigger.domain.models import ApiKey, Receipt
from glider_trigger.domain.trigger_input import MAX_REBALANCE_ID_CHARS, validate_portfolio_id
from glider_trigger.outbound.glider.http import Answer, HttpSession, json_object, retry_after, text
from glider_trigger.outbound.glider.pacing import RateLimiter


class Reason(StrEnum):
    """Why Glider's answer failed, as logs, metrics and the DLQ's `reason` say it."""

    RATE_LIMITED = "RATE_LIMITED"
    SERVER_ERROR = "SERVER_ERROR"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    TENANT_UNAVAILABLE = "TENANT_UNAVAILABLE"
    GLIDER_CONFIGURATION_ERROR = "GLIDER_CONFIGURATION_ERROR"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    CLIENT_ERROR = "CLIENT_ERROR"
    UNEXPECTED_REDIRECT = "UNEXPECTED_REDIRECT"
    UNEXPECTED_RESPONSE = "UNEXPECTED_RESPONSE"
    # A 404 without Glider's envelope: a router's, for a path that does not exist (a wrong base
    # URL or version, or the v2 docs' other trigger path), not a missing portfolio.
    ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND"


# Refused keys and tokens: the key may have been rotated, so each is worth one refetch.
UNAUTHORIZED_CODES: Final = frozenset(
    {"API_100", "API_101", "API_102", "API_103", "API_108", "API_109"}
)
FORBIDDEN_CODES: Final = frozenset({"API_104", "API_110"})
TENANT_CODES: Final = frozenset({"API_105", "API_106"})
_CONFIGURATION_CODE: Final = "API_001"  # Glider's own configuration: nothing works until fixed
_USER_NOT_FOUND_CODE: Final = "API_107"  # the portfolio's user: this portfolio only
_SYSTEMIC_CODES: Final = UNAUTHORIZED_CODES | FORBIDDEN_CODES | TENANT_CODES | {_CONFIGURATION_CODE}
_PERMANENT_CODES: Final = frozenset({_USER_NOT_FOUND_CODE})
# Glider's own "not found": the portfolio (or the operation) does not exist. `make doctor`
# expects one of these for an id that cannot exist, to prove the trigger route does.
NOT_FOUND_CODES: Final = frozenset({"API_200", "API_006"})
_RATE_LIMITED_CODE: Final = "API_004"
_INTERNAL_CODE: Final = "API_000"
# The code says what the status may not (the docs map no code to a status).
_REASON_BY_CODE: Final = {
    **dict.fromkeys(UNAUTHORIZED_CODES, Reason.UNAUTHORIZED),
    **dict.fromkeys(FORBIDDEN_CODES, Reason.FORBIDDEN),
    **dict.fromkeys(TENANT_CODES, Reason.TENANT_UNAVAILABLE),
    _CONFIGURATION_CODE: Reason.GLIDER_CONFIGURATION_ERROR,
    _USER_NOT_FOUND_CODE: Reason.USER_NOT_FOUND,
}
_REASON_BY_STATUS: Final = {
    400: Reason.BAD_REQUEST,
    401: Reason.UNAUTHORIZED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    408: Reason.REQUEST_TIMEOUT,
    409: Reason.CONFLICT,
    422: Reason.BAD_REQUEST,
}


def send(
    session: HttpSession,
    rate_limiter: RateLimiter | None,
    method: str,
    path: str,
    *,
    key_header: str,
    api_key: ApiKey,
    body: dict[str, Any] | None = None,
) -> Answer:
    """One request with the key in `key_header`, its answer scrubbed of that key; its rate-limit
    headers slow the next ones down before Glider answers 429."""
    secret = api_key.reveal()
    headers = {key_header: secret}
    if body is not None:
        headers["Content-Type"] = "application/json"
    answer = session.request(
        method,
        path,
        headers=headers,
        secret=secret,
        body=json.dumps(body).encode() if body is not None else None,
    )
    if rate_limiter is not None:
        rate_limiter.observe(answer.headers)
    return answer


def segment(value: str) -> str:
    """A portfolio id as a path segment, validated so that no caller can bend the path."""
    return quote(validate_portfolio_id(value), safe="")


def success_document(answer: Answer, refusal: Refusal) -> dict[str, Any]:
    """A 2xx success body; raises the classified ApiError of any other answer."""
    document = json_object(answer.payload)
    if not 200 <= answer.status < 300:
        raise refusal(answer, document)
    if answer.unread is not None or document.get("success") is not True:
        raise unreadable(answer, "answer")
    return document


class Refusal:
    """Turns a non-2xx answer into its ApiError, with the ids where this version puts them."""

    def __init__(self, ids: Ids, *, forbidden_hint: str = "") -> None:
        self._ids = ids
        self._forbidden_hint = forbidden_hint

    def __call__(self, answer: Answer, document: dict[str, Any]) -> ApiError:
        code, message = error_code_and_message(document)
        enveloped = glider_envelope(document)
        request_id, correlation_id = self._ids(answer, document)
        message = message or f"HTTP {answer.status} from Glider"
        # Only a refusal for the key's permissions names a scope: a disabled tenant (API_105,
        # API_106) is a 403 too, and sends an operator after another fix.
        lacks_scope = code in FORBIDDEN_CODES or (answer.status == 403 and code is None)
        if self._forbidden_hint and lacks_scope:
            message = f"{message}: {self._forbidden_hint}"
        return api_error(
            message,
            status=answer.status,
            code=code,
            enveloped=enveloped,
            called=answer.called,
            request_id=request_id,
            correlation_id=correlation_id,
            retry_after_seconds=retry_after(answer.headers.get("retry-after"), document),
        )

    def needing(self, hint: str) -> Refusal:
        """The same refusal, whose 403 says what the key lacks for this call."""
        return Refusal(self._ids, forbidden_hint=hint)


class Ids:
    """Where a version's answers carry Glider's request and correlation ids: v1 in the body,
    v2 in the X-Request-Id / X-Correlation-Id headers; each falls back to the other place (a
    per-IP 429 may come in v1's non-envelope body whatever the version)."""

    def __init__(self, *, in_body: bool) -> None:
        self._in_body = in_body

    def __call__(self, answer: Answer, document: dict[str, Any]) -> tuple[str | None, str | None]:
        headers = (
            text(answer.headers.get("x-request-id")),
            text(answer.headers.get("x-correlation-id")),
        )
        body = (text(document.get("requestId")), text(document.get("correlationId")))
        first, second = (body, headers) if self._in_body else (headers, body)
        return first[0] or second[0], first[1] or second[1]


def unreadable(answer: Answer, what: str) -> ApiError:
    """A status or state answer that could not be read: looked at again later."""
    return ApiError(
        f"HTTP {answer.status}, but no {what} could be read",
        reason=Reason.UNEXPECTED_RESPONSE,
        failure_class=FailureClass.TRANSIENT,
        # A read starts nothing, whatever its answer said.
        certainty=Certainty.REFUSED,
        facts=ApiFacts(answer.status, None, None, None),
    )


def api_error(
    message: str,
    *,
    status: int,
    code: str | None = None,
    enveloped: bool = True,
    called: str = "",
    request_id: str | None = None,
    correlation_id: str | None = None,
    retry_after_seconds: float | None = None,
) -> ApiError:
    """A non-2xx answer, read with the status and code tables. `enveloped`: its body was
    Glider's error envelope (Glider's own handlers answered, not a router in front of them);
    `called`: the request it answers, named when the route turns out not to exist."""
    reason = _reason(status, code, enveloped=enveloped)
    if reason is Reason.ROUTE_NOT_FOUND:
        # Not Glider's words: nothing the router said tells more than that it has no such route.
        message = no_such_route(called)
    # The key was refused: it may have been rotated, so it is worth one refetch.
    kind = KeyRefusedError if status == 401 or code in UNAUTHORIZED_CODES else ApiError
    return kind(
        message,
        reason=reason,
        failure_class=_failure_class(status, code, reason),
        # A 5xx proves no refusal: Glider may have started the rebalance and failed after.
        certainty=Certainty.UNPROVEN if status >= 500 else Certainty.REFUSED,
        facts=ApiFacts(status, code, request_id, correlation_id),
        retry_after_seconds=retry_after_seconds,
    )


def trigger_receipt(
    answer: Answer,
    *,
    ids: Ids,
    refusal: Refusal,
    what: str,
    fields: Callable[[dict[str, Any]], dict[str, Any]],
) -> Receipt:
    """A Receipt for a trigger Glider accepted, with the `fields` a version reads from its
    success data; raises the classified ApiError of any other answer. A 2xx whose body was cut
    off is accepted with its `what` (the rebalance's id) unknown: sending it again would start a
    second rebalance."""
    document = json_object(answer.payload)
    request_id, correlation_id = ids(answer, document)
    if not 200 <= answer.status < 300:
        raise refusal(answer, document)
    if answer.unread is not None:
        return Receipt(
            rebalance_id=None,
            schedule_id=None,
            request_id=request_id,
            correlation_id=correlation_id,
            unread=f"HTTP {answer.status}, but {answer.unread}: the {what} is unknown",
        )
    data = document.get("data")
    if document.get("success") is not True or not isinstance(data, dict):
        raise unexpected_2xx(answer.status, request_id=request_id, correlation_id=correlation_id)
    receipt = Receipt(request_id=request_id, correlation_id=correlation_id, **fields(data))
    return replace(receipt, rebalance_id=rebalance_id(receipt.rebalance_id))


def rebalance_id(value: object) -> str | None:
    """A rebalance (or operation) id from any of Glider's answers, as a follow-up can carry it;
    None for one longer than that. Never shortened: a shortened id would be followed as another
    rebalance. Without its id a rebalance is triggered, and its outcome `unknown` at once."""
    if isinstance(value, str) and 0 < len(value) <= MAX_REBALANCE_ID_CHARS:
        return value
    return None


def unexpected_2xx(
    status: int, *, request_id: str | None = None, correlation_id: str | None = None
) -> ApiError:
    """A 2xx that is not a success body: Glider may have acted on it, so it is never retried."""
    return ApiError(
        f"HTTP {status} without a success body; the rebalance may or may not have been triggered",
        reason=Reason.UNEXPECTED_RESPONSE,
        failure_class=FailureClass.PERMANENT,
        certainty=Certainty.ACTED_UNREADABLE,
        facts=ApiFacts(status, None, request_id, correlation_id),
    )


def error_text(error: object) -> str | None:
    """Glider's error of a failed rebalance (its shape is not documented): a message if it has
    one, else the value as JSON, bounded."""
    if error is None:
        return None
    if isinstance(error, dict) and text(error.get("message")):
        return text(error.get("message"))
    return text(error if isinstance(error, str) else json.dumps(error, default=str))


def no_such_route(called: str) -> str:
    """What a router's 404 means, for the request it answered ("POST https://host/path")."""
    return (
        f"{called or 'the request'} answered HTTP 404 without Glider's error envelope: no such "
        "route (check GLIDER_API_BASE_URL, the API's root, and GLIDER_API_VERSION; or Glider "
        "moved the endpoint), not a missing portfolio"
    )


def glider_envelope(document: dict[str, Any]) -> bool:
    """Whether a body is Glider's error envelope, `{"success": false, "error": {...}}`: what
    Glider's own handlers answer. A router or proxy in front of them answers otherwise."""
    return document.get("success") is False and isinstance(document.get("error"), dict)


def error_code_and_message(document: dict[str, Any]) -> tuple[str | None, str | None]:
    error = document.get("error")
    if isinstance(error, dict):  # the envelope
        return text(error.get("code")), text(error.get("message"))
    # v1's 429 body: {"error": "Too Many Requests", "message": "..."}
    message = text(document.get("message")) or text(error)
    return None, message


def _rate_limited(status: int, code: str | None) -> bool:
    return status == 429 or code == _RATE_LIMITED_CODE


def _reason(status: int, code: str | None, *, enveloped: bool) -> Reason:
    if _rate_limited(status, code):
        return Reason.RATE_LIMITED
    if code in _REASON_BY_CODE:
        return _REASON_BY_CODE[code]
    if status == 404 and not enveloped:
        return Reason.ROUTE_NOT_FOUND
    if status >= 500:
        return Reason.SERVER_ERROR
    if 300 <= status < 400:
        return Reason.UNEXPECTED_REDIRECT  # never followed: the key must not travel elsewhere
    return _REASON_BY_STATUS.get(status, Reason.CLIENT_ERROR)


def _failure_class(status: int, code: str | None, reason: Reason) -> FailureClass:
    if code in _SYSTEMIC_CODES:
        return FailureClass.SYSTEMIC
    if code in _PERMANENT_CODES:
        return FailureClass.PERMANENT  # whatever the status: the code names what is missing
    # A missing route fails every call the same way: halt, keep the work, alarm.
    if status in (401, 403) or reason is Reason.ROUTE_NOT_FOUND:
        return FailureClass.SYSTEMIC
    if _rate_limited(status, code) or status >= 500 or code == _INTERNAL_CODE:
        return FailureClass.TRANSIENT
    # 408 Request Timeout is the server giving up on us: as transient as a socket timeout.
    if status == 408:
        return FailureClass.TRANSIENT
    return FailureClass.PERMANENT
