"""Dead letters: replayable bodies and attributes that say why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from glider_trigger.domain.errors import (
    ApiError,
    Certainty,
    FailureClass,
    InvalidInputError,
    InvalidPortfolioIdError,
    TriggerError,
    classify,
)
from glider_trigger.domain.letters import (
    MAX_ATTRIBUTES,
    for_failure,
    for_rejected_id,
    for_unparsable_input,
)
from glider_trigger.domain.models import (
    Failed,
    InputSource,
    SourceKind,
    TriggerRequest,
)
from glider_trigger.inbound.events import parse_event, parse_sqs_body
from glider_trigger.outbound.glider import shared
from glider_trigger.outbound.glider.http import unreachable

NOW = datetime(2024, 3, 1, 6, 0, 5, 123456, tzinfo=UTC)
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/glider-trigger-dlq"
SCHEDULE_ARN = "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/daily"
SQS_SOURCE = InputSource(SourceKind.SQS, delivery_id="059f36b4-87a3-44ab-83d2-661975830a7d")
SCHEDULE_SOURCE = InputSource(SourceKind.SCHEDULE, metadata={"scheduleArn": SCHEDULE_ARN})


def failed(
    error: TriggerError,
    *,
    source: InputSource = SQS_SOURCE,
    attempts: int = 3,
    portfolio_id: str = "port_abc123",
    skip: bool = False,
) -> Failed:
    request = TriggerRequest(portfolio_id, skip, source)
    return Failed(request, error, classify(error), attempts)


def api_error(**overrides: Any) -> ApiError:
    fields: dict[str, Any] = {
        "status": 404,
        "code": "API_200",
        "request_id": "req_efgh5678",
        "correlation_id": "corr_abcd1234",
    }
    fields.update(overrides)
    return shared.api_error("Portfolio not found", **fields)


# --- for_failure ---------------------------------------------------------------------------


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("portfolio_id", ["port_abc123", "ao04x0r6", "A-b_9"])
def test_failure_body_is_exactly_the_replayable_input(portfolio_id: str, skip: bool) -> None:
    letter = for_failure(failed(api_error(), portfolio_id=portfolio_id, skip=skip), now=NOW)

    assert json.loads(letter.body) == {
        "portfolioId": portfolio_id,
        "skipScheduleValidation": skip,
    }
    # Moving the DLQ back onto the work queue replays exactly this request...
    replayed = parse_sqs_body(letter.body, message_id="replay-1", default_skip=not skip)
    assert [(r.portfolio_id, r.skip_schedule_validation) for r in replayed.requests] == [
        (portfolio_id, skip)
    ]
    assert replayed.rejected == ()
    # ... and so does invoking the function with it directly.
    direct = parse_event(json.loads(letter.body), default_skip=not skip)
    assert [(r.portfolio_id, r.skip_schedule_validation) for r in direct.requests] == [
        (portfolio_id, skip)
    ]


def test_failure_attributes_say_why_and_carry_glider_ids() -> None:
    letter = for_failure(failed(api_error(), attempts=1), now=NOW)

    assert letter.attributes == {
        "failureClass": "permanent",
        "reason": "NOT_FOUND",
        "detail": "Portfolio not found",
        "attempts": 1,
        "source": "sqs:059f36b4-87a3-44ab-83d2-661975830a7d",
        "failedAt": "2024-03-01T06:00:05.123+00:00",
        "httpStatus": 404,
        "apiErrorCode": "API_200",
        "gliderRequestId": "req_efgh5678",
        "gliderCorrelationId": "corr_abcd1234",
    }


def test_source_of_a_scheduled_failure_names_the_schedule() -> None:
    error = unreachable("read timeout", timed_out=True, certainty=Certainty.LOST)

    letter = for_failure(failed(error, source=SCHEDULE_SOURCE, attempts=4), now=NOW)

    assert letter.attributes["source"] == f"schedule:{SCHEDULE_ARN}"
    assert letter.attributes["failureClass"] == "transient"
    assert letter.attributes["reason"] == "TIMEOUT"
    assert letter.attributes["attempts"] == 4
    # No HTTP response: no made-up HTTP facts.
    for name in ("httpStatus", "apiErrorCode", "gliderRequestId", "gliderCorrelationId"):
        assert name not in letter.attributes


def test_source_without_a_reference_is_just_the_kind() -> None:
    letter = for_failure(failed(api_error(), source=InputSource(SourceKind.DIRECT)), now=NOW)

    assert letter.attributes["source"] == "direct"


def test_failed_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    letter = for_failure(failed(api_error()))
    after = datetime.now(UTC)

    failed_at = datetime.fromisoformat(str(letter.attributes["failedAt"]))
    assert failed_at.utcoffset() is not None
    assert before.replace(microsecond=0) <= failed_at <= after


def test_never_more_than_ten_attributes_and_the_overflow_goes_into_detail() -> None:
    error = shared.api_error(
        "Rate limit exceeded",
        status=429,
        code="API_004",
        request_id="req_xyz789",
        correlation_id="corr_abc123",
        retry_after_seconds=42.0,
    )

    letter = for_failure(failed(error, source=SCHEDULE_SOURCE), now=NOW)

    assert len(letter.attributes) <= MAX_ATTRIBUTES == 10
    assert letter.attributes["httpStatus"] == 429
    assert letter.attributes["apiErrorCode"] == "API_004"
    assert letter.attributes["gliderRequestId"] == "req_xyz789"
    # When to replay: failedAt + Retry-After.
    assert letter.attributes["retryAt"] == (NOW + timedelta(seconds=42)).isoformat(
        timespec="seconds"
    )
    detail = str(letter.attributes["detail"])
    assert detail.startswith("Rate limit exceeded")
    assert "gliderCorrelationId=corr_abc123" in detail


def test_empty_error_message_falls_back_to_the_reason() -> None:
    letter = for_failure(failed(shared.api_error("", status=500)), now=NOW)

    assert letter.attributes["detail"] == "SERVER_ERROR"


def test_long_detail_is_truncated() -> None:
    letter = for_failure(failed(shared.api_error("x" * 5000, status=500)), now=NOW)

    assert len(str(letter.attributes["detail"])) == 1024


def test_no_attribute_is_empty() -> None:
    error = shared.api_error("", status=400, code="", request_id="", correlation_id="")

    letter = for_failure(failed(error, source=InputSource(SourceKind.DIRECT)), now=NOW)

    assert all(value != "" for value in letter.attributes.values())
    assert "apiErrorCode" not in letter.attributes


# --- rejected ids and unparsable input -----------------------------------------------------


@pytest.mark.parametrize("bad", ["../x", "a b", 123, None])
def test_rejected_id_letter_keeps_the_id_and_is_permanent(bad: object) -> None:
    parsed = parse_event(
        {"portfolioIds": [bad], "skipScheduleValidation": True}, default_skip=False
    )

    letter = for_rejected_id(parsed.rejected[0], SQS_SOURCE, now=NOW)

    assert json.loads(letter.body) == {"portfolioId": bad, "skipScheduleValidation": True}
    assert letter.attributes["failureClass"] == "permanent"
    assert letter.attributes["reason"] == "INVALID_PORTFOLIO_ID"
    assert letter.attributes["attempts"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        "not json at all",
        '{"portfolioIds": []}',
        '{ "portfolioId" :  "p1",\n "skipScheduleValidation": "yes" }',
        '{"portfolioId": "caf\\u00e9"} \u00e9\u6f22\u5b57 \U0001f600',
        "  \t\r\n",
    ],
)
def test_unparsable_input_body_is_kept_byte_for_byte(raw: str) -> None:
    error = InvalidInputError("input is not valid JSON")

    letter = for_unparsable_input(raw, error, SQS_SOURCE, now=NOW)

    assert letter.body == raw
    assert letter.body.encode() == raw.encode()
    assert letter.attributes["failureClass"] == "permanent"
    assert letter.attributes["reason"] == "MALFORMED_INPUT"
    assert letter.attributes["source"] == "sqs:059f36b4-87a3-44ab-83d2-661975830a7d"
    assert letter.attributes["attempts"] == 0


def test_rejected_id_error_class_is_permanent() -> None:
    assert classify(InvalidPortfolioIdError("bad")) is FailureClass.PERMANENT
