"""Each failure class through the real handler: what is retried, how, and where it ends up."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest

from glider_trigger.domain.errors import DeadLetterWriteError
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.lambda_context import LocalLambdaContext
from local.fixtures.stack import Deployment, attribute_values

# Every input kind and failure class holds on both Glider API versions.
pytestmark = pytest.mark.both_api_versions


def only_result(response: dict[str, object]) -> dict[str, object]:
    [result] = response["results"]  # type: ignore[misc]
    return result  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.error(503, "API_000", "unavailable"),
        Fault.error(500, "API_000", "boom"),
        Fault.malformed(status=502, body=b"<html>bad gateway</html>"),
        Fault.rate_limited(retry_after=0),
        Fault.connection_reset(),
        Fault.slow(1.5),  # longer than the 0.5 s read timeout
    ],
    ids=["503", "500", "502-html", "429", "reset", "read-timeout"],
)
def test_transient_failures_are_retried_within_the_invocation(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment, fault: Fault
) -> None:
    emulator.script("port_abc123", fault)

    result = only_result(function.invoke({"portfolioId": "port_abc123"}))

    assert result["outcome"] == "triggered"
    assert result["attempts"] == 2
    assert deployment.dlq_messages() == []


def test_retry_after_is_honoured(function: LocalFunction, emulator: GliderEmulator) -> None:
    emulator.script("port_abc123", Fault.rate_limited(retry_after=1))

    function.invoke({"portfolioId": "port_abc123"})

    first, second = (r for r in emulator.trigger_requests if r.portfolio_id == "port_abc123")
    assert first.status == 429
    assert second.received_at - first.received_at >= 1.0


def test_a_retry_after_longer_than_the_budget_is_not_waited_for(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.script("port_abc123", Fault.rate_limited(retry_after=30))

    started = time.monotonic()
    result = only_result(function.invoke({"portfolioId": "port_abc123"}))

    assert time.monotonic() - started < 5
    assert result["reason"] == "RATE_LIMITED"
    [letter] = deployment.dlq_messages()
    attributes = attribute_values(letter)
    failed_at = datetime.fromisoformat(attributes["failedAt"])
    assert datetime.fromisoformat(attributes["retryAt"]) - failed_at >= timedelta(seconds=29)


def test_transient_failures_exhaust_the_attempt_budget_then_dead_letter(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(GLIDER_MAX_ATTEMPTS="3")
    emulator.script("port_abc123", *[Fault.error(503, "API_000", "still down")] * 5)
    context = LocalLambdaContext(timeout_seconds=30)

    result = only_result(function.invoke({"portfolioId": "port_abc123"}, context=context))

    assert result["failureClass"] == "transient"
    assert len(emulator.trigger_requests) == 3
    [letter] = deployment.dlq_messages()
    # Replayable, and naming its delivery (here the Lambda request id): a replay after that
    # delivery triggered the portfolio after all finds the success instead of a second trigger.
    # A 5xx proves no refusal: the letter says when those attempts were sent, to look first.
    body = json.loads(letter["Body"])
    assert set(body.pop("mayHaveStarted")) == {"after", "before"}
    assert body == {
        "portfolioId": "port_abc123",
        "skipScheduleValidation": False,
        "deliveryKey": f"lambda:{context.aws_request_id}",
    }
    attributes = attribute_values(letter)
    assert attributes["failureClass"] == "transient"
    assert attributes["reason"] == "SERVER_ERROR"
    assert attributes["httpStatus"] == "503"
    assert attributes["apiErrorCode"] == "API_000"
    assert attributes["detail"] == "still down"
    assert attributes["attempts"] == "3"
    assert attributes["gliderRequestId"].startswith("req_")
    assert attributes["gliderCorrelationId"].startswith("corr_")
    assert attributes["source"] == "direct"
    assert attributes["failedAt"].endswith("+00:00")


@pytest.mark.parametrize(
    ("portfolio_id", "setup", "reason", "status"),
    [
        ("port_gone", None, "NOT_FOUND", "404"),
        ("port_nosched", "no-schedule", "BAD_REQUEST", "400"),
        ("port_abc123", Fault.error(403, "API_104", "Permission denied"), "FORBIDDEN", "403"),
        (
            "port_abc123",
            Fault.error(403, "API_106", "Tenant disabled"),
            "TENANT_UNAVAILABLE",
            "403",
        ),
        ("port_abc123", Fault.malformed(status=200, body=b"ok"), "UNEXPECTED_RESPONSE", "200"),
    ],
)
def test_permanent_and_systemic_failures_are_not_retried(
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
    portfolio_id: str,
    setup: object,
    reason: str,
    status: str,
    api_version: str,
) -> None:
    if setup == "no-schedule":
        emulator.add_portfolio(portfolio_id, has_schedule=False)
        if api_version == "v2":
            # v2 has no schedule validation: it triggers a one-off rebalance outside it.
            outcome = only_result(function.invoke({"portfolioId": portfolio_id}))["outcome"]
            assert (outcome, deployment.dlq_messages()) == ("triggered", [])
            return
    elif isinstance(setup, Fault):
        emulator.script(portfolio_id, setup)

    result = only_result(function.invoke({"portfolioId": portfolio_id}))

    assert result["reason"] == reason
    assert len(emulator.trigger_requests) == 1
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["httpStatus"] == status


def test_a_rotated_key_is_refetched_once_after_a_401(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    assert function.invoke({"portfolioId": "port_abc123"})["triggered"] == 1  # key now cached
    deployment.put_api_key(json.dumps({"apiKey": "rotated-key-2"}))
    emulator.set_api_keys(["rotated-key-2"])

    result = only_result(function.invoke({"portfolioId": "port_def456"}))

    assert result["outcome"] == "triggered"
    keys = [
        r.headers["x-api-key"] for r in emulator.trigger_requests if r.portfolio_id == "port_def456"
    ]
    assert keys == ["test-canary-key-7Hq2ZpXv9L", "rotated-key-2"]


def test_a_key_refused_after_refetch_is_systemic(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.set_api_keys(["revoked-everything-else"])

    result = only_result(function.invoke({"portfolioId": "port_abc123"}))

    assert result["failureClass"] == "systemic"
    assert result["reason"] == "UNAUTHORIZED"
    assert len(emulator.trigger_requests) == 2  # the first try and one after refetching the key
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["apiErrorCode"] == "API_102"


def test_no_attempt_starts_that_cannot_finish_before_the_deadline(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment, lambda_context
) -> None:
    # 1.5 s left: less than the margin (0.5 s) plus a worst-case attempt (1 s + 0.5 s).
    result = only_result(
        function.invoke({"portfolioId": "port_abc123"}, context=lambda_context(1.5))
    )

    assert result["reason"] == "DEADLINE_EXCEEDED"
    assert result["failureClass"] == "transient"
    assert emulator.trigger_requests == []
    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"])["portfolioId"] == "port_abc123"


def test_backoff_stops_before_the_deadline_and_the_invocation_returns_in_time(
    start_function, emulator: GliderEmulator, lambda_context
) -> None:
    function = start_function(
        GLIDER_MAX_ATTEMPTS="10",
        RETRY_BASE_DELAY_SECONDS="1",
        RETRY_MAX_DELAY_SECONDS="1",
        # Each slow answer would be found among the recent rebalances: the deadline is the point.
        RECONCILE_LOST_ANSWERS="false",
    )
    emulator.script("port_abc123", *[Fault.slow(1.0)] * 10)

    started = time.monotonic()
    result = only_result(function.invoke({"portfolioId": "port_abc123"}, context=lambda_context(5)))

    assert time.monotonic() - started < 5
    assert result["reason"] == "TIMEOUT"
    assert 1 <= result["attempts"] < 10


def test_an_unwritable_dlq_fails_the_invocation_so_aws_keeps_the_event(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    missing = deployment.dlq.url.rsplit("/", 1)[0] + "/no-such-queue"
    function = start_function(DLQ_URL=missing)

    with pytest.raises(DeadLetterWriteError, match="no-such-queue"):
        function.invoke({"portfolioIds": ["port_abc123", "port_gone"]})
    assert [r.portfolio_id for r in emulator.rebalances] == ["port_abc123"]
    # What was done is still on record, although the invocation failed.
    triggered = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert [log["portfolio_id"] for log in triggered] == ["port_abc123"]


@pytest.mark.parametrize(
    ("status", "reason"), [(200, "UNEXPECTED_RESPONSE"), (502, "SERVER_ERROR")]
)
def test_an_oversized_response_is_not_read_into_memory_and_is_classified(
    start_function, emulator: GliderEmulator, status: int, reason: str
) -> None:
    function = start_function(GLIDER_MAX_ATTEMPTS="1")
    huge = b'{"success": true, "data": {"pad": "' + b"x" * 5_000_000 + b'"}}'
    emulator.script(
        "port_abc123", Fault.malformed(status=status, body=huge, content_type="application/json")
    )

    result = only_result(function.invoke({"portfolioId": "port_abc123"}))

    assert result["reason"] == reason
    # The function kept working afterwards (the oversized connection was dropped, not reused).
    assert only_result(function.invoke({"portfolioId": "port_def456"}))["outcome"] == "triggered"


TRIGGER_PATHS = {
    "v1": "/v1/portfolio/{}/rebalance/schedule/trigger",
    "v2": "/v2/portfolios/{}/rebalance",
}


def systemic_failures(function: LocalFunction) -> list[object]:
    return [m["SystemicFailures"] for m in function.metrics if "SystemicFailures" in m]


def test_a_route_that_does_not_exist_is_one_systemic_failure_not_a_missing_portfolio_each(
    start_function, emulator: GliderEmulator, deployment: Deployment, api_version: str
) -> None:
    # A base URL with a path Glider does not serve: every call meets the router's 404.
    base_url = emulator.base_url + "/api"
    function = start_function(GLIDER_API_BASE_URL=base_url, MAX_CONCURRENCY="1")

    response = function.invoke({"portfolioIds": ["port_abc123", "port_def456", "port_ghi789"]})

    results = {r["portfolioId"]: r for r in response["results"]}
    assert {(r["reason"], r["failureClass"]) for r in results.values()} == {
        ("ROUTE_NOT_FOUND", "systemic")
    }
    [called] = emulator.requests  # the invocation halted after the first call
    [first] = [r for r in results.values() if r["attempts"] == 1]
    path = TRIGGER_PATHS[api_version].format(first["portfolioId"])
    assert called.path == "/api" + path
    assert f"POST {base_url}{path}" in first["detail"]
    assert "not a missing portfolio" in first["detail"]
    letters = [attribute_values(letter) for letter in deployment.dlq_messages()]
    assert (
        sorted((a["reason"], a["failureClass"]) for a in letters)
        == [("ROUTE_NOT_FOUND", "systemic")] * 3
    )
    assert systemic_failures(function) == [[1.0]]  # the alarm's metric, once for the error
    [logged] = [log for log in function.logs if log.get("level") == "ERROR"][:1]
    assert logged["reason"] == "ROUTE_NOT_FOUND"

    # On SQS, the record is kept for redelivery (the route may be fixed), not dead-lettered.
    record = {
        "messageId": "m-route",
        "receiptHandle": "h",
        "body": '{"portfolioId": "port_abc123"}',
        "eventSource": "aws:sqs",
        "eventSourceARN": deployment.work_queue.arn,
    }
    assert function.invoke({"Records": [record]}) == {
        "batchItemFailures": [{"itemIdentifier": "m-route"}]
    }
    assert deployment.dlq_messages() == []


def test_gliders_own_404_still_dead_letters_only_that_portfolio(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(MAX_CONCURRENCY="1")

    response = function.invoke({"portfolioIds": ["port_gone", "port_abc123"]})

    outcomes = {r["portfolioId"]: (r["outcome"], r.get("reason")) for r in response["results"]}
    assert outcomes == {
        "port_gone": ("dead-lettered", "NOT_FOUND"),
        "port_abc123": ("triggered", None),
    }
    assert systemic_failures(function) == []


def test_a_lookup_that_meets_a_routers_404_is_systemic_and_loud(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function()
    emulator.script("port_abc123", Fault.lost_response())
    emulator.script_status("port_abc123", Fault.malformed(404, b"Not Found", "text/plain"))

    result = only_result(function.invoke({"portfolioId": "port_abc123"}))

    # Every other call would meet it too: nothing is sent again unlooked (a second rebalance,
    # if the lost attempt started one); the invocation halts and the work is kept, with the
    # lost attempt's window for its replay.
    assert (result["reason"], result["failureClass"]) == ("ROUTE_NOT_FOUND", "systemic")
    assert len(emulator.trigger_requests) == 1
    [letter] = deployment.dlq_messages()
    assert "mayHaveStarted" in json.loads(letter["Body"])
    [lookup] = [log for log in function.logs if log.get("reason") == "ROUTE_NOT_FOUND"]
    assert lookup["level"] == "ERROR"
    assert lookup["failure_class"] == "systemic"
    assert "answered HTTP 404 without Glider's error envelope" in lookup["detail"]
    assert systemic_failures(function) == [[1.0]]
