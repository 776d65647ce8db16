"""How Glider's answers become a Receipt or a TriggerError (docs/glider-api.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from glider_trigger.domain.errors import (
    ApiError,
    FailureClass,
    InvalidPortfolioIdError,
    KeyRefusedError,
    TriggerError,
    classify,
)
from glider_trigger.domain.models import (
    ApiKey,
    FollowUp,
    InputSource,
    Receipt,
    SourceKind,
    TriggerRequest,
)
from glider_trigger.domain.ports import StartedRebalance
from glider_trigger.outbound.glider.http import Answer, HttpSession, scrub
from glider_trigger.outbound.glider.http import retry_after as _retry_after
from glider_trigger.outbound.glider.v1 import GliderV1Client, interpret, reaches_back, read_recent
from tests.fakes.http import AnsweringPool

SUCCESS = {
    "success": True,
    "data": {
        "portfolioId": "port_abc123",
        "scheduleId": "sched_abc123",
        "rebalanceId": "rebal_def456",
        "status": "triggered",
        "message": "Portfolio rebalance triggered successfully",
        "triggerTime": 1684734312,
    },
    "correlationId": "corr_abc123",
    "requestId": "req_xyz789",
    "timestamp": "2023-05-21T13:45:12.345Z",
}
ENVELOPE = {
    "success": False,
    "error": {"code": "API_200", "message": "Portfolio not found", "details": {}},
    "correlationId": "corr_abcd1234",
    "requestId": "req_efgh5678",
    "timestamp": "2023-05-21T12:34:56.789Z",
}
RATE_LIMITED = {
    "error": "Too Many Requests",
    "message": "Rate limit exceeded. Try again in 42 seconds.",
    "retryAfter": 42,
    "correlationId": "corr_abc123",
    "requestId": "req_xyz789",
}
JSON_HEADERS = {"content-type": "application/json"}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def _interpret(
    status: int, headers: dict[str, str], payload: bytes, unread: str | None = None
) -> Receipt:
    return interpret(Answer(status, headers, payload, unread))


def request(portfolio_id: str, skip: bool) -> TriggerRequest:
    return TriggerRequest(portfolio_id, skip, InputSource(SourceKind.DIRECT))


def api_error(status: int, headers: dict[str, str], payload: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        _interpret(status, headers, payload)
    return caught.value


# --- success -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202])
def test_success_body_becomes_a_receipt(status: int) -> None:
    receipt = _interpret(status, JSON_HEADERS, body(SUCCESS))

    assert receipt == Receipt(
        rebalance_id="rebal_def456",
        schedule_id="sched_abc123",
        request_id="req_xyz789",
        correlation_id="corr_abc123",
    )


def test_ids_fall_back_to_response_headers() -> None:
    document = {"success": True, "data": {"rebalanceId": "rebal_1"}}
    headers = {"x-request-id": "req_h", "x-correlation-id": "corr_h"}

    receipt = _interpret(200, headers, body(document))

    assert receipt.rebalance_id == "rebal_1"
    assert receipt.schedule_id is None
    assert receipt.request_id == "req_h"
    assert receipt.correlation_id == "corr_h"


@pytest.mark.parametrize(
    "payload",
    [
        body({**SUCCESS, "success": False}),
        body({**SUCCESS, "success": "true"}),
        body({k: v for k, v in SUCCESS.items() if k != "success"}),
        body({**SUCCESS, "data": None}),
        body({**SUCCESS, "data": ["rebal_def456"]}),
        body([SUCCESS]),
        b"OK",
        b"<html><body>Welcome</body></html>",
        b"",
        b"\xff\xfe\x00",
    ],
)
def test_2xx_without_a_success_body_is_unexpected_and_never_retried(payload: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        _interpret(200, JSON_HEADERS, payload)

    assert caught.value.facts.http_status == 200
    assert classify(caught.value) is FailureClass.PERMANENT
    assert "may or may not" in str(caught.value)


def test_unexpected_2xx_keeps_the_glider_ids() -> None:
    with pytest.raises(ApiError) as caught:
        _interpret(204, {"x-request-id": "req_h"}, body({**SUCCESS, "success": False}))

    assert caught.value.facts.request_id == "req_xyz789"
    assert caught.value.facts.correlation_id == "corr_abc123"


# --- errors --------------------------------------------------------------------------------


def test_error_envelope_becomes_an_api_error_with_code_message_and_ids() -> None:
    error = api_error(404, JSON_HEADERS, body(ENVELOPE))

    assert error.facts.http_status == 404
    assert error.facts.code == "API_200"
    assert str(error) == "Portfolio not found"
    assert error.facts.request_id == "req_efgh5678"
    assert error.facts.correlation_id == "corr_abcd1234"
    assert error.retry_after_seconds is None
    assert classify(error) is FailureClass.PERMANENT


TRIGGER_URL = "https://api.glider.fi/v1/portfolio/port_abc123/rebalance/schedule/trigger"


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"<html><body>Cannot POST /v1/portfolio/x</body></html>", "text/html"),
        (b"Not Found", "text/plain"),
        (b"", "text/plain"),
        (b'{"message": "Route not found", "error": "Not Found", "statusCode": 404}', "json"),
        (b'{"error": {"code": "NOT_FOUND", "message": "no route"}}', "json"),  # no `success`
    ],
    ids=["html", "text", "empty", "json", "json-error-object"],
)
def test_a_404_without_gliders_envelope_is_a_missing_route_naming_the_path(
    payload: bytes, content_type: str
) -> None:
    answering = AnsweringPool(404, payload, {"Content-Type": content_type})

    with pytest.raises(ApiError) as caught:
        client(answering).trigger(request("port_abc123", False), ApiKey("k"))

    error = caught.value
    assert (error.reason, classify(error)) == ("ROUTE_NOT_FOUND", FailureClass.SYSTEMIC)
    assert f"POST {TRIGGER_URL}" in str(error)
    assert "Cannot POST" not in str(error)  # the router's words say nothing more
    assert error.facts.http_status == 404
    assert not isinstance(error, KeyRefusedError)


def test_gliders_own_404_is_the_portfolio_not_found() -> None:
    answering = AnsweringPool(404, body(ENVELOPE), JSON_HEADERS)

    with pytest.raises(ApiError) as caught:
        client(answering).trigger(request("port_abc123", False), ApiKey("k"))

    assert (caught.value.reason, classify(caught.value)) == ("NOT_FOUND", FailureClass.PERMANENT)
    assert str(caught.value) == "Portfolio not found"


def test_a_status_read_that_meets_a_router_404_is_a_missing_route_not_a_missing_rebalance() -> None:
    client_ = client(AnsweringPool(404, b"Not Found", {"Content-Type": "text/plain"}))

    with pytest.raises(ApiError) as caught:
        client_.rebalance_state(FollowUp("port_abc123", "rebal_1", False, None, 0.0), ApiKey("k"))

    assert caught.value.reason == "ROUTE_NOT_FOUND"
    assert "GET https://api.glider.fi/v1/portfolio/port_abc123/rebalance/status/rebal_1" in str(
        caught.value
    )


def test_no_schedule_400_is_permanent_bad_request() -> None:
    document = {**ENVELOPE, "error": {"code": "API_002", "message": "No rebalance schedule"}}

    error = api_error(400, JSON_HEADERS, body(document))

    assert error.facts.code == "API_002"
    assert error.reason == "BAD_REQUEST"
    assert classify(error) is FailureClass.PERMANENT


def test_invalid_key_envelope_is_unauthorized() -> None:
    document = {**ENVELOPE, "error": {"code": "API_102", "message": "Invalid API key"}}

    error = api_error(401, JSON_HEADERS, body(document))

    assert isinstance(error, KeyRefusedError)
    assert classify(error) is FailureClass.SYSTEMIC


@pytest.mark.parametrize(
    ("status", "code", "reason", "failure_class", "unauthorized"),
    [
        # Glider's side is misconfigured: every call fails the same way until it is fixed.
        (500, "API_001", "GLIDER_CONFIGURATION_ERROR", FailureClass.SYSTEMIC, False),
        (400, "API_001", "GLIDER_CONFIGURATION_ERROR", FailureClass.SYSTEMIC, False),
        # The portfolio's user is gone: this portfolio will not succeed, the others may.
        (404, "API_107", "USER_NOT_FOUND", FailureClass.PERMANENT, False),
        (500, "API_107", "USER_NOT_FOUND", FailureClass.PERMANENT, False),
        # Refused tokens are refused keys: one refetch (it may have been rotated), then systemic.
        (401, "API_108", "UNAUTHORIZED", FailureClass.SYSTEMIC, True),
        (401, "API_109", "UNAUTHORIZED", FailureClass.SYSTEMIC, True),
        (400, "API_109", "UNAUTHORIZED", FailureClass.SYSTEMIC, True),
    ],
)
def test_the_codes_the_contract_did_not_list_are_classified(
    status: int, code: str, reason: str, failure_class: FailureClass, unauthorized: bool
) -> None:
    document = {**ENVELOPE, "error": {"code": code, "message": "from Glider"}}

    error = api_error(status, JSON_HEADERS, body(document))

    assert (error.reason, classify(error), isinstance(error, KeyRefusedError)) == (
        reason,
        failure_class,
        unauthorized,
    )


def test_429_body_with_retry_after_header_in_seconds() -> None:
    error = api_error(429, {**JSON_HEADERS, "retry-after": "17"}, body(RATE_LIMITED))

    assert error.facts.http_status == 429
    assert error.facts.code is None
    assert str(error) == "Rate limit exceeded. Try again in 42 seconds."
    assert error.retry_after_seconds == 17.0  # the header wins over the body
    assert error.facts.request_id == "req_xyz789"
    assert error.facts.correlation_id == "corr_abc123"
    assert error.reason == "RATE_LIMITED"
    assert classify(error) is FailureClass.TRANSIENT


def test_429_body_with_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    error = api_error(429, {"retry-after": when}, body(RATE_LIMITED))

    assert error.retry_after_seconds is not None
    assert 110 <= error.retry_after_seconds <= 121


def test_retry_after_http_date_in_the_past_means_now() -> None:
    when = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)

    error = api_error(429, {"retry-after": when}, body({"error": "Too Many Requests"}))

    assert error.retry_after_seconds == 0.0


def test_429_with_only_the_body_retry_after() -> None:
    error = api_error(429, JSON_HEADERS, body(RATE_LIMITED))

    assert error.retry_after_seconds == 42.0


@pytest.mark.parametrize("header", ["soon", "-5", "1.5e3", "", "Sun, 99 Foo 2024"])
def test_unusable_retry_after_header_falls_back_to_the_body(header: str) -> None:
    error = api_error(429, {"retry-after": header}, body(RATE_LIMITED))

    assert error.retry_after_seconds == 42.0


@pytest.mark.parametrize("value", [-1, "42", True, None, [42]])
def test_unusable_body_retry_after_is_ignored(value: object) -> None:
    error = api_error(429, {}, body({**RATE_LIMITED, "retryAfter": value}))

    assert error.retry_after_seconds is None


@pytest.mark.parametrize("header", ["\u00b2", "\u00b9", "\u00b3", "1\u00b2"])
def test_odd_retry_after_header_is_still_a_classified_api_error(header: str) -> None:
    # Header values arrive decoded as latin-1; "²" passes str.isdigit() but not float().
    error = api_error(429, {"retry-after": header}, body(RATE_LIMITED))

    assert error.facts.http_status == 429
    assert error.retry_after_seconds == 42.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("120", 120.0), (" 8 ", 8.0), (None, None)],
)
def test_retry_after_header_values(header: str | None, expected: float | None) -> None:
    assert _retry_after(header, {}) == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_html_gateway_error_is_a_generic_transient_api_error(status: int) -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

    error = api_error(status, {"content-type": "text/html"}, html)

    assert error.facts.http_status == status
    assert str(error) == f"HTTP {status} from Glider"
    assert error.facts.code is None
    assert error.facts.request_id is None
    assert classify(error) is FailureClass.TRANSIENT


def test_long_error_message_is_bounded() -> None:
    document = {**ENVELOPE, "error": {"code": "API_000", "message": "x" * 10_000}}

    error = api_error(500, {}, body(document))

    assert len(str(error)) <= 512


@pytest.mark.parametrize("payload", [body({"error": {"code": 5}}), body({"error": None}), b"[]"])
def test_odd_error_bodies_still_become_api_errors(payload: bytes) -> None:
    error = api_error(418, {}, payload)

    assert error.facts.http_status == 418
    assert str(error) == "HTTP 418 from Glider"
    assert error.facts.code is None


# --- GliderClient refuses to build a bad path ----------------------------------------------


class NoNetwork:
    """Stands in for the urllib3 PoolManager: any request fails the test."""

    def request(self, *args: object, **kwargs: object) -> None:
        pytest.fail(f"no request may be sent, got {args!r}")


class Stop(Exception):
    pass


class RecordingHttp:
    """Records the request, then stops the call before any response handling."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
        raise Stop


def client(http: object) -> GliderV1Client:
    session = HttpSession(
        "https://api.glider.fi/",
        connect_timeout_seconds=3,
        read_timeout_seconds=10,
        http=http,  # type: ignore[arg-type]
    )
    return GliderV1Client(session)


KEY = "s3cr3t-Key_0123456789"
OTHER_KEY = "gldr_sk_live_9QmZ2vX8pLr4"  # a v2 key that is not ours: scrubbed by its look


def test_a_key_quoted_anywhere_in_an_answer_never_reaches_the_error() -> None:
    document = {
        "success": False,
        "error": {
            "code": "API_104",
            "message": f"Permission denied for API key {KEY} (also tried {OTHER_KEY})",
            "details": {"apiKey": KEY},
        },
        "requestId": f"req_{KEY}",
        "correlationId": OTHER_KEY,
    }
    answering = AnsweringPool(403, body(document), {"X-Correlation-Id": KEY})

    with pytest.raises(ApiError) as caught:
        client(answering).trigger(request("port_abc123", False), ApiKey(KEY))

    error = caught.value
    assert str(error) == ("Permission denied for API key <redacted> (also tried <redacted>)")
    assert (error.facts.code, error.facts.request_id, error.facts.correlation_id) == (
        "API_104",
        "req_<redacted>",
        "<redacted>",
    )
    assert error.reason == "FORBIDDEN"


@pytest.mark.parametrize(
    "payload",
    [
        # JSON escapes spell the key without showing it in the bytes
        b'{"success": false, "error": {"code": "API_000", "message": "key \\u0073'
        + KEY[1:].encode()
        + b'"}}',
        # ... and so does UTF-16
        json.dumps({"success": False, "error": {"code": "API_000", "message": KEY}}).encode(
            "utf-16"
        ),
    ],
    ids=["json-escape", "utf-16"],
)
def test_a_key_spelled_with_json_escapes_is_scrubbed_too(payload: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        client(AnsweringPool(500, payload)).trigger(request("port_abc123", False), ApiKey(KEY))

    assert KEY not in str(caught.value)
    assert "<redacted>" in str(caught.value)
    assert caught.value.facts.code == "API_000"


def test_a_body_nested_too_deep_to_scrub_as_json_is_still_read_and_classified() -> None:
    nested = b"[" * 5000 + b"]" * 5000

    with pytest.raises(ApiError) as caught:
        client(AnsweringPool(500, nested)).trigger(request("port_abc123", False), ApiKey(KEY))

    assert (caught.value.reason, caught.value.facts.http_status) == ("SERVER_ERROR", 500)


def test_a_receipt_copies_no_key_from_a_success_body() -> None:
    document = {**SUCCESS, "data": {**SUCCESS["data"], "scheduleId": f"sched_{KEY}"}}
    receipt = client(AnsweringPool(200, body(document), {"X-Request-Id": OTHER_KEY})).trigger(
        request("port_abc123", False), ApiKey(KEY)
    )

    assert receipt.schedule_id == "sched_<redacted>"
    assert receipt.rebalance_id == "rebal_def456"  # nothing else is touched


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (f"key {KEY}!", "key <redacted>!"),
        ("gldr_sk_AbC-12_x/y+z=, next", "<redacted>, next"),
        ("GLDR_PK_live_0123 and gldr_test", "<redacted> and <redacted>"),  # any gldr_ token
        ("no key here: gldr-sk is not one", "no key here: gldr-sk is not one"),
        ("", ""),
    ],
)
def test_scrub_takes_out_the_key_and_anything_that_looks_like_a_glider_key(
    text: str, scrubbed: str
) -> None:
    assert scrub(text, KEY) == scrubbed


def test_scrub_without_a_key_of_its_own_still_takes_out_glider_keys() -> None:
    assert scrub(f"{OTHER_KEY} and {KEY}", "") == f"<redacted> and {KEY}"


@pytest.mark.parametrize("bad", ["../x", "a/b", "a?b", "a#b", "%2e%2e", "", "a b", "é"])
def test_client_refuses_an_invalid_portfolio_id_before_any_io(bad: str) -> None:
    with pytest.raises(InvalidPortfolioIdError):
        client(NoNetwork()).trigger(request(bad, False), ApiKey("k"))


def test_client_posts_to_the_contract_path_with_the_key_header() -> None:
    http = RecordingHttp()

    with pytest.raises(Stop):
        client(http).trigger(request("port_abc123", True), ApiKey("k1"))

    ((args, kwargs),) = http.calls
    assert args == (
        "POST",
        "https://api.glider.fi/v1/portfolio/port_abc123/rebalance/schedule/trigger",
    )
    assert json.loads(kwargs["body"]) == {"skipScheduleValidation": True}
    assert kwargs["headers"]["X-API-KEY"] == "k1"
    assert kwargs["headers"]["Content-Type"] == "application/json"
    assert kwargs["redirect"] is False
    assert kwargs["retries"] is False


def test_client_worst_case_is_connect_plus_read_timeout() -> None:
    assert client(NoNetwork()).worst_case_seconds == 13


def test_every_outcome_of_interpret_is_a_receipt_or_a_trigger_error() -> None:
    for status in (200, 400, 401, 403, 404, 409, 429, 500, 503):
        for payload in (body(SUCCESS), body(ENVELOPE), body(RATE_LIMITED), b"garbage"):
            try:
                result = _interpret(status, {}, payload)
            except TriggerError:
                continue
            assert isinstance(result, Receipt)
            assert 200 <= status < 300


@pytest.mark.parametrize(
    ("header", "body_value", "expected"),
    [
        ("1" + "0" * 400, None, 86_400.0),  # 400 digits: infinity as a float
        ("100000000000", None, 86_400.0),
        ("00000000000000000000042", None, 42.0),  # leading zeros are not a long wait
        (None, 1e999, 86_400.0),  # JSON's 1e999 is infinity
        (None, 10**400, 86_400.0),  # no float holds it
        (None, 86_401, 86_400.0),
        (None, 30, 30.0),
    ],
)
def test_retry_after_is_clamped_before_any_arithmetic(
    header: str | None, body_value: object, expected: float
) -> None:
    assert _retry_after(header, {"retryAfter": body_value}) == expected


def test_a_2xx_whose_body_could_not_be_read_is_an_accepted_trigger_with_unknown_id() -> None:
    receipt = _interpret(
        200, {"x-request-id": "req-1"}, b"", "the answer's body was cut off: ProtocolError"
    )

    assert receipt.rebalance_id is None
    assert receipt.reason == "REBALANCE_ID_UNKNOWN"
    assert receipt.request_id == "req-1"
    assert receipt.unread is not None
    assert "HTTP 200" in receipt.unread


def test_a_non_2xx_whose_body_could_not_be_read_is_classified_by_its_status() -> None:
    with pytest.raises(ApiError) as raised:
        _interpret(503, {"retry-after": "3"}, b"", "the answer's body was cut off: ProtocolError")
    assert (raised.value.reason, raised.value.retry_after_seconds) == ("SERVER_ERROR", 3.0)


def listed(*starts: float) -> list[StartedRebalance]:
    return [StartedRebalance(f"rebal_{n}", start) for n, start in enumerate(starts)]


@pytest.mark.parametrize(
    ("starts", "since", "complete"),
    [
        ((), 100.0, True),  # nothing at all
        ((500.0, 400.0, 300.0, 200.0), 100.0, True),  # shorter than Glider's default: all
        ((500.0, 400.0, 300.0, 200.0, 150.0), 100.0, False),  # cut off at the default
        ((500.0, 400.0, 300.0, 200.0, 90.0), 100.0, True),  # its oldest is before `since`
        ((500.0, 400.0, 300.0, 200.0, 100.0), 100.0, True),
    ],
)
def test_a_list_reaches_back_only_when_it_is_short_or_older_than_asked(
    starts: tuple[float, ...], since: float, complete: bool
) -> None:
    assert reaches_back(listed(*starts), since) is complete


def test_a_listed_id_too_long_to_follow_is_listed_as_unknown() -> None:
    workflows = [{"workflowId": "rebal_" + "x" * 300, "startedAt": "2026-01-01T00:00:00Z"}]
    document = {"success": True, "data": {"recentWorkflows": workflows}}

    [found] = read_recent(Answer(200, {}, body(document)))

    assert found.rebalance_id is None
    assert found.started_at is not None
