"""Each failure class through the real handler: what is retried, how, and where it ends up.

An event's portfolios are triggered from the work queue (`deliver`): a transient or systemic
failure there is delivered again (the deployment's queue: visibility 1 s, maxReceiveCount 2) and
dead-lettered on its last receive; a permanent one is dead-lettered at once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from glider_trigger.domain.errors import DeadLetterWriteError
from local.fixtures.delivery import Story
from local.fixtures.event_source import PollResult, SqsEventSource
from local.fixtures.function import LocalFunction, json_records
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.lambda_context import LocalLambdaContext
from local.fixtures.stack import Deployment, attribute_values

# Every input kind and failure class holds on both Glider API versions.
pytestmark = pytest.mark.both_api_versions


def redeliveries(deployment: Deployment, function: LocalFunction, **invoke: Any) -> Story:
    """The work queue's messages delivered again until none comes back (each after its
    visibility timeout), as the event source mapping does; `invoke` goes to each invocation."""
    function.new_lines()
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    batches = source.drain(lambda event: function.invoke(event, **invoke), idle_seconds=3)
    logs = [r for r in json_records(function.new_lines()) if "_aws" not in r]
    return Story({}, batches, logs)


def delivered_once(
    deployment: Deployment, function: LocalFunction, event: object, **invoke: Any
) -> Story:
    """The event's invocation, then one receive of the work queue: what that receive keeps is
    not looked at again (`redeliveries` does), however long the receive took."""
    function.new_lines()
    answer = function.invoke(event, **invoke)
    batch = SqsEventSource(deployment.sqs, deployment.work_queue).poll(function.invoke)
    logs = [r for r in json_records(function.new_lines()) if "_aws" not in r]
    return Story(answer, [batch] if batch else [], logs)


def receive(
    deployment: Deployment, function: LocalFunction, context: LocalLambdaContext
) -> PollResult:
    """One batch of the work queue, handed to the function with this context."""
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    batch = source.poll(lambda event: function.invoke(event, context=context), wait_seconds=3)
    assert batch is not None, "nothing became visible on the work queue"
    return batch


def logged(function: LocalFunction, portfolio_id: str) -> list[dict[str, Any]]:
    """Every outcome line of one portfolio so far, in order."""
    return [r for r in function.logs if "outcome" in r and r.get("portfolio_id") == portfolio_id]


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
    deliver: Callable[..., Story], emulator: GliderEmulator, deployment: Deployment, fault: Fault
) -> None:
    emulator.script("port_abc123", fault)

    story = deliver({"portfolioId": "port_abc123"})

    result = story.of("port_abc123")
    assert result["outcome"] == "triggered"
    assert result["attempts"] == 2
    assert [len(batch.deleted) for batch in story.batches] == [1]  # one receive settled it
    assert deployment.dlq_messages() == []


def test_retry_after_is_honoured(deliver: Callable[..., Story], emulator: GliderEmulator) -> None:
    emulator.script("port_abc123", Fault.rate_limited(retry_after=1))

    deliver({"portfolioId": "port_abc123"})

    first, second = (r for r in emulator.trigger_requests if r.portfolio_id == "port_abc123")
    assert first.status == 429
    assert second.received_at - first.received_at >= 1.0


def test_a_retry_after_longer_than_the_budget_is_not_waited_for(
    deliver: Callable[..., Story], emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.script("port_abc123", Fault.rate_limited(retry_after=30))

    started = time.monotonic()
    story = deliver({"portfolioId": "port_abc123"})

    assert time.monotonic() - started < 5
    result = story.of("port_abc123")
    assert (result["reason"], result["action"]) == ("RATE_LIMITED", "retry")
    # Kept, and delivered again no sooner than Glider asked: its visibility timeout.
    [batch] = story.batches
    assert len(batch.redelivered) == 1
    [postponed] = [
        r for r in story.logs if r.get("message") == "Message postponed for its Retry-After"
    ]
    assert postponed["visibility_timeout_seconds"] >= 30
    assert deployment.dlq_messages() == []
    assert len(emulator.trigger_requests) == 1


def test_a_long_retry_after_on_the_last_receive_is_dead_lettered_with_its_retry_time(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # Every receive its last: the letter says when Glider would take the trigger again.
    function = start_function(MAX_RECEIVE_COUNT="1")
    emulator.script("port_abc123", Fault.rate_limited(retry_after=30))

    story = deliver({"portfolioId": "port_abc123"}, function=function)

    assert story.of("port_abc123")["action"] == "dead-lettered: last receive"
    [letter] = deployment.dlq_messages()
    attributes = attribute_values(letter)
    assert attributes["reason"] == "RATE_LIMITED"
    failed_at = datetime.fromisoformat(attributes["failedAt"])
    assert datetime.fromisoformat(attributes["retryAt"]) - failed_at >= timedelta(seconds=29)


def test_transient_failures_exhaust_the_attempt_budget_then_dead_letter(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
    lambda_context: Callable[..., LocalLambdaContext],
) -> None:
    function = start_function(GLIDER_MAX_ATTEMPTS="3")
    emulator.script("port_abc123", *[Fault.error(503, "API_000", "still down")] * 20)
    context = lambda_context(30)

    first = delivered_once(deployment, function, {"portfolioId": "port_abc123"}, context=context)

    # Each receive spends the attempt budget, then the message is kept for the next one...
    assert first.of("port_abc123")["attempts"] == 3
    assert first.of("port_abc123")["action"] == "retry"
    assert deployment.dlq_messages() == []
    then = redeliveries(deployment, function)
    # ... until its last receive dead-letters it, rather than the redrive (whose replay would
    # be a new delivery).
    assert then.of("port_abc123")["action"] == "dead-lettered: last receive"
    assert len(emulator.trigger_requests) == 3 * deployment.max_receive_count
    [letter] = deployment.dlq_messages()
    # Replayable, and naming its delivery (here the event's Lambda request id): a replay after
    # that delivery triggered the portfolio after all finds the success instead of a second
    # trigger. A 5xx proves no refusal: the letter says when those attempts were sent.
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
    assert attributes["failedAt"].endswith("+00:00")


@pytest.mark.parametrize(
    ("portfolio_id", "setup", "reason", "status", "failure_class"),
    [
        ("port_gone", None, "NOT_FOUND", "404", "permanent"),
        ("port_nosched", "no-schedule", "BAD_REQUEST", "400", "permanent"),
        (
            "port_abc123",
            Fault.error(403, "API_104", "Permission denied"),
            "FORBIDDEN",
            "403",
            "systemic",
        ),
        (
            "port_abc123",
            Fault.error(403, "API_106", "Tenant disabled"),
            "TENANT_UNAVAILABLE",
            "403",
            "systemic",
        ),
        (
            "port_abc123",
            Fault.malformed(status=200, body=b"ok"),
            "UNEXPECTED_RESPONSE",
            "200",
            "permanent",
        ),
    ],
)
def test_permanent_and_systemic_failures_are_not_retried(
    deliver: Callable[..., Story],
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
    portfolio_id: str,
    setup: object,
    reason: str,
    status: str,
    failure_class: str,
    api_version: str,
) -> None:
    if setup == "no-schedule":
        emulator.add_portfolio(portfolio_id, has_schedule=False)
        if api_version == "v2":
            # v2 has no schedule validation: it triggers a one-off rebalance outside it.
            outcome = deliver({"portfolioId": portfolio_id}).of(portfolio_id)["outcome"]
            assert (outcome, deployment.dlq_messages()) == ("triggered", [])
            return
    elif isinstance(setup, Fault):
        emulator.script(portfolio_id, *[setup] * deployment.max_receive_count)

    story = delivered_once(deployment, function, {"portfolioId": portfolio_id})

    result = story.of(portfolio_id)
    assert (result["reason"], result["failure_class"]) == (reason, failure_class)
    assert len(emulator.trigger_requests) == 1  # never retried within the invocation
    if failure_class == "systemic":
        # Every call would fail alike until someone mends it: the message is kept, one call
        # per receive, and dead-lettered on its last.
        assert (result["action"], deployment.dlq_messages()) == ("retry", [])
        then = redeliveries(deployment, function)
        assert then.of(portfolio_id)["action"] == "dead-lettered: last receive"
        assert len(emulator.trigger_requests) == deployment.max_receive_count
    else:
        assert result["action"] == "dead-lettered"
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["httpStatus"] == status
    assert attribute_values(letter)["reason"] == reason


def test_a_rotated_key_is_refetched_once_after_a_401(
    deliver: Callable[..., Story], emulator: GliderEmulator, deployment: Deployment
) -> None:
    assert deliver({"portfolioId": "port_abc123"}).triggered == 1  # key now cached
    deployment.put_api_key(json.dumps({"apiKey": "rotated-key-2"}))
    emulator.set_api_keys(["rotated-key-2"])

    result = deliver({"portfolioId": "port_def456"}).of("port_def456")

    assert result["outcome"] == "triggered"
    keys = [
        r.headers["x-api-key"] for r in emulator.trigger_requests if r.portfolio_id == "port_def456"
    ]
    assert keys == ["test-canary-key-7Hq2ZpXv9L", "rotated-key-2"]


def test_a_key_refused_after_refetch_is_systemic(
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    emulator.set_api_keys(["revoked-everything-else"])

    story = delivered_once(deployment, function, {"portfolioId": "port_abc123"})

    result = story.of("port_abc123")
    assert result["failure_class"] == "systemic"
    assert result["reason"] == "UNAUTHORIZED"
    assert len(emulator.trigger_requests) == 2  # the first try and one after refetching the key
    # Kept for the key to be mended, then dead-lettered on its last receive.
    assert (result["action"], deployment.dlq_messages()) == ("retry", [])
    assert redeliveries(deployment, function).of("port_abc123")["reason"] == "UNAUTHORIZED"
    assert len(emulator.trigger_requests) == 2 * deployment.max_receive_count
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["apiErrorCode"] == "API_102"


def test_no_attempt_starts_that_cannot_finish_before_the_deadline(
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
    lambda_context: Callable[..., LocalLambdaContext],
) -> None:
    assert function.invoke({"portfolioId": "port_abc123"})["queued"] == 1

    # 1.5 s left: less than the margin (0.5 s) plus a worst-case attempt (1 s + 0.5 s).
    first = receive(deployment, function, lambda_context(1.5))

    [result] = logged(function, "port_abc123")
    assert result["reason"] == "DEADLINE_EXCEEDED"
    assert result["failure_class"] == "transient"
    assert (result["action"], len(first.redelivered)) == ("retry", 1)
    assert emulator.trigger_requests == []
    assert deployment.dlq_messages() == []
    # Its last receive, as short: dead-lettered, never dropped.
    receive(deployment, function, lambda_context(1.5))
    assert logged(function, "port_abc123")[-1]["action"] == "dead-lettered: last receive"
    assert emulator.trigger_requests == []
    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"])["portfolioId"] == "port_abc123"


def test_backoff_stops_before_the_deadline_and_the_invocation_returns_in_time(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
    lambda_context: Callable[..., LocalLambdaContext],
) -> None:
    function = start_function(
        GLIDER_MAX_ATTEMPTS="10",
        RETRY_BASE_DELAY_SECONDS="1",
        RETRY_MAX_DELAY_SECONDS="1",
    )
    # Each slow answer would be found among the recent rebalances: the deadline is the point.
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))
    emulator.script("port_abc123", *[Fault.slow(1.0)] * 10)
    function.invoke({"portfolioId": "port_abc123"})

    context = lambda_context(5)
    started = time.monotonic()
    receive(deployment, function, context)

    assert time.monotonic() - started < 5
    [result] = logged(function, "port_abc123")
    assert result["reason"] == "TIMEOUT"
    assert 1 <= result["attempts"] < 10


def test_an_unwritable_dlq_keeps_the_message_on_the_work_queue(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    missing = deployment.dlq.url.rsplit("/", 1)[0] + "/no-such-queue"
    function = start_function(DLQ_URL=missing, MAX_CONCURRENCY="1")

    story = delivered_once(deployment, function, {"portfolioIds": ["port_abc123", "port_gone"]})

    assert [r.portfolio_id for r in emulator.rebalances] == ["port_abc123"]
    # What was done is on record; port_gone's letter could not be written, so its message
    # stays on the work queue for SQS to deliver again (and its redrive to keep).
    assert story.of("port_abc123")["outcome"] == "triggered"
    assert story.of("port_gone")["reason"] == "NOT_FOUND"
    [batch] = story.batches
    assert (len(batch.deleted), len(batch.redelivered)) == (1, 1)
    [failed] = [r for r in story.logs if r.get("dlq_url") == missing]
    assert failed["level"] == "ERROR"


def test_an_unwritable_dlq_fails_the_invocation_so_aws_keeps_the_event(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
    lambda_context: Callable[..., LocalLambdaContext],
) -> None:
    missing = deployment.dlq.url.rsplit("/", 1)[0] + "/no-such-queue"
    function = start_function(DLQ_URL=missing)
    event = {"portfolioIds": ["port_abc123", "../x"]}
    context = lambda_context()

    # The rejected id's letter cannot be written: the event's invocation fails, and Lambda
    # retries it (the same request id) ...
    with pytest.raises(DeadLetterWriteError, match="no-such-queue"):
        deliver(event, function=function, context=context)
    # One worker: the two copies' messages are taken in turn, not raced for the guard.
    retried = start_function(MAX_CONCURRENCY="1")
    story = deliver(event, function=retried, context=context)

    # ... whose portfolios are the same delivery: what the first copy queued (and was
    # triggered) is found done, and the rejected id is dead-lettered once the DLQ takes it.
    assert story.answer["deadLettered"] == 1
    assert sorted(r["outcome"] for r in story.outcomes if r["portfolio_id"] == "port_abc123") == [
        "already-triggered",
        "triggered",
    ]
    assert [r.portfolio_id for r in emulator.rebalances] == ["port_abc123"]
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["reason"] == "INVALID_PORTFOLIO_ID"


@pytest.mark.parametrize(
    ("status", "reason"), [(200, "UNEXPECTED_RESPONSE"), (502, "SERVER_ERROR")]
)
def test_an_oversized_response_is_not_read_into_memory_and_is_classified(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
    status: int,
    reason: str,
) -> None:
    function = start_function(GLIDER_MAX_ATTEMPTS="1")
    huge = b'{"success": true, "data": {"pad": "' + b"x" * 5_000_000 + b'"}}'
    emulator.script(
        "port_abc123", Fault.malformed(status=status, body=huge, content_type="application/json")
    )

    story = delivered_once(deployment, function, {"portfolioId": "port_abc123"})
    result = story.of("port_abc123")

    assert result["reason"] == reason
    # The function kept working afterwards (the oversized connection was dropped, not reused).
    later = deliver({"portfolioId": "port_def456"}, function=function)
    assert later.of("port_def456")["outcome"] == "triggered"


TRIGGER_PATHS = {
    "v1": "/v1/portfolio/{}/rebalance/schedule/trigger",
    "v2": "/v2/portfolios/{}/rebalance",
}


def systemic_failures(function: LocalFunction) -> list[object]:
    return [m["SystemicFailures"] for m in function.metrics if "SystemicFailures" in m]


def test_a_route_that_does_not_exist_is_one_systemic_failure_not_a_missing_portfolio_each(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
    api_version: str,
) -> None:
    # A base URL with a path Glider does not serve: every call meets the router's 404.
    base_url = emulator.base_url + "/api"
    function = start_function(GLIDER_API_BASE_URL=base_url, MAX_CONCURRENCY="1")
    ids = ["port_abc123", "port_def456", "port_ghi789"]

    story = delivered_once(deployment, function, {"portfolioIds": ids})

    results = {i: story.of(i) for i in ids}
    assert {(r["reason"], r["failure_class"]) for r in results.values()} == {
        ("ROUTE_NOT_FOUND", "systemic")
    }
    [called] = emulator.requests  # the invocation halted after the first call
    [first] = [r for r in results.values() if r["attempts"] == 1]
    path = TRIGGER_PATHS[api_version].format(first["portfolio_id"])
    assert called.path == "/api" + path
    assert f"POST {base_url}{path}" in first["detail"]
    assert "not a missing portfolio" in first["detail"]
    assert systemic_failures(function) == [[1.0]]  # the alarm's metric, once for the error
    [logged_error] = [log for log in story.logs if log.get("level") == "ERROR"][:1]
    assert logged_error["reason"] == "ROUTE_NOT_FOUND"
    # Every message is kept for redelivery (the route may be fixed), none dead-lettered yet.
    assert {r["action"] for r in results.values()} == {"retry"}
    assert sum(len(batch.redelivered) for batch in story.batches) == len(ids)
    assert deployment.dlq_messages() == []


def test_gliders_own_404_still_dead_letters_only_that_portfolio(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(MAX_CONCURRENCY="1")

    story = deliver({"portfolioIds": ["port_gone", "port_abc123"]}, function=function)

    outcomes = {
        i: (story.of(i)["outcome"], story.of(i).get("action"), story.of(i).get("reason"))
        for i in ("port_gone", "port_abc123")
    }
    assert outcomes == {
        "port_gone": ("failed", "dead-lettered", "NOT_FOUND"),
        "port_abc123": ("triggered", None, None),
    }
    assert [json.loads(m["Body"])["portfolioId"] for m in deployment.dlq_messages()] == [
        "port_gone"
    ]
    assert systemic_failures(function) == []


def test_a_lookup_that_meets_a_routers_404_is_systemic_and_loud(
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    emulator.script("port_abc123", Fault.lost_response())
    emulator.script_status("port_abc123", *[Fault.malformed(404, b"Not Found", "text/plain")] * 10)

    result = delivered_once(deployment, function, {"portfolioId": "port_abc123"}).of("port_abc123")

    # Every other call would meet it too: nothing is sent again unlooked (a second rebalance,
    # if the lost attempt started one); the invocation halts and the work is kept ...
    assert (result["reason"], result["failure_class"]) == ("ROUTE_NOT_FOUND", "systemic")
    assert result["action"] == "retry"
    assert len(emulator.trigger_requests) == 1
    [lookup] = [log for log in function.logs if log.get("reason") == "ROUTE_NOT_FOUND"][:1]
    assert lookup["level"] == "ERROR"
    assert lookup["failure_class"] == "systemic"
    assert "answered HTTP 404 without Glider's error envelope" in lookup["detail"]
    assert systemic_failures(function) == [[1.0]]
    # ... and on its last receive it is looked for again first, never sent blind: its letter
    # carries the lost attempt's window for its replay.
    assert redeliveries(deployment, function).of("port_abc123")["reason"] == "ROUTE_NOT_FOUND"
    assert len(emulator.trigger_requests) == 1
    [letter] = deployment.dlq_messages()
    assert "mayHaveStarted" in json.loads(letter["Body"])
