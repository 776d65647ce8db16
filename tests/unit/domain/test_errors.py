"""`classify` against the error table of docs/glider-api.md (as the v1 adapter reads an
answer), and the reason codes of the domain's own errors."""

from __future__ import annotations

from typing import Literal

import pytest

from glider_trigger.domain.errors import (
    Certainty,
    FailureClass,
    InvalidInputError,
    InvalidPortfolioIdError,
    KeyRefusedError,
    NotAttemptedError,
    SecretUnavailableError,
    TriggerError,
    classify,
)
from glider_trigger.outbound.glider.http import unreachable
from glider_trigger.outbound.glider.shared import api_error, unexpected_2xx

TRANSIENT, PERMANENT, SYSTEMIC = (
    FailureClass.TRANSIENT,
    FailureClass.PERMANENT,
    FailureClass.SYSTEMIC,
)


@pytest.mark.parametrize(
    ("status", "code", "expected", "reason"),
    [
        # rate limited: honour Retry-After and retry
        (429, None, TRANSIENT, "RATE_LIMITED"),
        (429, "API_004", TRANSIENT, "RATE_LIMITED"),
        (400, "API_004", TRANSIENT, "RATE_LIMITED"),
        # server side
        (500, None, TRANSIENT, "SERVER_ERROR"),
        (500, "API_000", TRANSIENT, "SERVER_ERROR"),
        (502, None, TRANSIENT, "SERVER_ERROR"),
        (503, None, TRANSIENT, "SERVER_ERROR"),
        (504, None, TRANSIENT, "SERVER_ERROR"),
        (400, "API_000", TRANSIENT, "BAD_REQUEST"),
        (408, None, TRANSIENT, "REQUEST_TIMEOUT"),
        # the request itself is wrong
        (400, None, PERMANENT, "BAD_REQUEST"),
        (400, "API_002", PERMANENT, "BAD_REQUEST"),
        (404, None, PERMANENT, "NOT_FOUND"),
        (404, "API_006", PERMANENT, "NOT_FOUND"),
        (405, None, PERMANENT, "CLIENT_ERROR"),
        (405, "API_003", PERMANENT, "CLIENT_ERROR"),
        (409, None, PERMANENT, "CONFLICT"),
        (422, None, PERMANENT, "BAD_REQUEST"),
        (400, "API_005", PERMANENT, "BAD_REQUEST"),
        (404, "API_200", PERMANENT, "NOT_FOUND"),
        (400, "API_201", PERMANENT, "BAD_REQUEST"),
        (400, "API_202", PERMANENT, "BAD_REQUEST"),
        (400, "API_203", PERMANENT, "BAD_REQUEST"),
        (400, "API_204", PERMANENT, "BAD_REQUEST"),
        (409, "API_205", PERMANENT, "CONFLICT"),
        (422, "API_206", PERMANENT, "BAD_REQUEST"),
        # every other call with this key fails the same way
        (401, None, SYSTEMIC, "UNAUTHORIZED"),
        (401, "API_100", SYSTEMIC, "UNAUTHORIZED"),
        (401, "API_101", SYSTEMIC, "UNAUTHORIZED"),
        (401, "API_102", SYSTEMIC, "UNAUTHORIZED"),
        (401, "API_103", SYSTEMIC, "UNAUTHORIZED"),
        (400, "API_102", SYSTEMIC, "UNAUTHORIZED"),  # the code says what the status may not
        (403, None, SYSTEMIC, "FORBIDDEN"),
        (403, "API_104", SYSTEMIC, "FORBIDDEN"),
        (403, "API_110", SYSTEMIC, "FORBIDDEN"),
        (400, "API_110", SYSTEMIC, "FORBIDDEN"),
        (403, "API_105", SYSTEMIC, "TENANT_UNAVAILABLE"),
        (404, "API_106", SYSTEMIC, "TENANT_UNAVAILABLE"),
        (500, "API_105", SYSTEMIC, "TENANT_UNAVAILABLE"),
    ],
)
def test_api_errors_follow_the_contract_table(
    status: int, code: str | None, expected: FailureClass, reason: str
) -> None:
    error = api_error("from Glider", status=status, code=code)

    assert classify(error) is expected
    assert error.reason == reason


@pytest.mark.parametrize(
    ("status", "code", "expected", "reason"),
    [
        # A 404 that is not Glider's envelope is a router's: the route, not the portfolio.
        (404, None, SYSTEMIC, "ROUTE_NOT_FOUND"),
        (404, "API_000", SYSTEMIC, "ROUTE_NOT_FOUND"),
        # A code that says more still says it.
        (404, "API_104", SYSTEMIC, "FORBIDDEN"),
        (404, "API_004", TRANSIENT, "RATE_LIMITED"),
        # Other statuses without the envelope read as before (a proxy's 502, say).
        (502, None, TRANSIENT, "SERVER_ERROR"),
        (400, None, PERMANENT, "BAD_REQUEST"),
    ],
)
def test_answers_without_gliders_envelope(
    status: int, code: str | None, expected: FailureClass, reason: str
) -> None:
    error = api_error("from a router", status=status, code=code, enveloped=False)

    assert classify(error) is expected
    assert error.reason == reason


@pytest.mark.parametrize(
    ("status", "code", "unauthorized"),
    [
        (401, None, True),
        (400, "API_100", True),
        (401, "API_103", True),
        (403, "API_104", False),
        (403, None, False),
        (500, None, False),
    ],
)
def test_unauthorized_is_status_401_or_an_api_10x_key_code(
    status: int, code: str | None, unauthorized: bool
) -> None:
    assert isinstance(api_error("x", status=status, code=code), KeyRefusedError) is unauthorized


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_unexpected_2xx_is_permanent_because_glider_may_have_acted(status: int) -> None:
    error = unexpected_2xx(status)

    assert classify(error) is PERMANENT
    assert error.reason == "UNEXPECTED_RESPONSE"


@pytest.mark.parametrize(
    ("timed_out", "certainty", "reason"),
    [
        (True, Certainty.NOT_SENT, "TIMEOUT"),
        (True, Certainty.LOST, "TIMEOUT"),
        (False, Certainty.NOT_SENT, "CONNECTION_ERROR"),
        (False, Certainty.LOST, "CONNECTION_ERROR"),
    ],
)
def test_transport_errors_are_transient(
    timed_out: bool, certainty: Literal[Certainty.NOT_SENT, Certainty.LOST], reason: str
) -> None:
    error = unreachable("boom", timed_out=timed_out, certainty=certainty)

    assert classify(error) is TRANSIENT
    assert error.reason == reason


@pytest.mark.parametrize(
    ("retryable", "expected", "reason"),
    [(True, TRANSIENT, "SECRET_THROTTLED"), (False, SYSTEMIC, "SECRET_UNAVAILABLE")],
)
def test_secret_errors_depend_on_retryable(
    retryable: bool, expected: FailureClass, reason: str
) -> None:
    error = SecretUnavailableError("secret", retryable=retryable)

    assert classify(error) is expected
    assert error.reason == reason


@pytest.mark.parametrize(
    ("error", "expected", "reason"),
    [
        (InvalidInputError("bad"), PERMANENT, "MALFORMED_INPUT"),
        (InvalidPortfolioIdError("bad id"), PERMANENT, "INVALID_PORTFOLIO_ID"),
        (NotAttemptedError("no time"), TRANSIENT, "DEADLINE_EXCEEDED"),
        (TriggerError("unforeseen"), TRANSIENT, "INTERNAL_ERROR"),
    ],
)
def test_other_errors(error: TriggerError, expected: FailureClass, reason: str) -> None:
    assert classify(error) is expected
    assert error.reason == reason


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_permanent_and_never_followed(status: int) -> None:
    error = api_error("moved", status=status)

    assert classify(error) is FailureClass.PERMANENT
    assert error.reason == "UNEXPECTED_REDIRECT"
