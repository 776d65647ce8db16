"""Every rebalance followed to its outcome, through the real handler, the moto server (the
follow-up queue, the DLQ, an EventBridge bus whose rule delivers outcome events to a queue) and
the emulator's status endpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.fixtures.delivery import Story
from local.fixtures.delivery import deliver as delivered
from local.fixtures.event_source import SqsEventSource, sqs_event
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import REGION, Deployment, attribute_values, drain
from tests.conftest import API_KEY

# Every promise here holds on both Glider API versions.
pytestmark = pytest.mark.both_api_versions

PORTFOLIO = "port_abc123"


@pytest.fixture
def follow(start_function: Callable[..., LocalFunction]) -> LocalFunction:
    return start_function(FOLLOW_FIRST_DELAY_SECONDS="1")


Deliver = Callable[..., Story]


@pytest.fixture
def deliver(deployment: Deployment) -> Deliver:
    """conftest's `deliver`, to a function the test starts itself (`function=`), without
    starting the default execution environment as well: the function's logger is the process's
    one, and the environment started last would take its lines."""

    def run(event: object, *, function: LocalFunction, **invoke: object) -> Story:
        work_queue = SqsEventSource(deployment.sqs, deployment.work_queue)
        return delivered(function, work_queue, event, **invoke)

    return run


def triggered_rebalance(deliver: Deliver, function: LocalFunction, event: object) -> str:
    """The event delivered as the stack does (queued, then triggered from the work queue): the
    id of the one rebalance it triggered."""
    story = deliver(event, function=function)
    [line] = story.outcomes
    assert line["outcome"] == "triggered", line
    return str(line["rebalance_id"])


def as_sqs_event(messages: list[dict[str, Any]], arn: str) -> dict[str, Any]:
    return sqs_event(messages, arn, REGION)


def run_follow_ups(function: LocalFunction, deployment: Deployment, *, limit: int = 20) -> int:
    """Deliver the follow-up queue's messages to the function, as its event source would, until
    none is left; returns how many were delivered."""
    queue = deployment.follow_up_queue
    assert queue is not None
    delivered = 0
    for _ in range(limit):
        messages = drain(deployment.sqs, queue.url, wait_seconds=3)
        if not messages:
            return delivered
        delivered += len(messages)
        response = function.invoke(as_sqs_event(messages, queue.arn))
        assert response == {"batchItemFailures": []}
    pytest.fail("the follow-ups did not end")


def outcome_events(deployment: Deployment) -> list[dict[str, Any]]:
    assert deployment.outcome_events is not None
    received = drain(deployment.sqs, deployment.outcome_events.url, wait_seconds=1)
    return [json.loads(m["Body"]) for m in received]


def outcome_lines(function: LocalFunction) -> list[dict[str, Any]]:
    return [log for log in function.logs if "rebalance_outcome" in log]


def test_a_rebalance_is_followed_to_completed(
    follow: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
    api_version: str,
    deliver: Deliver,
) -> None:
    emulator.set_workflow_seconds(3.0)

    rebalance_id = triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    looks = run_follow_ups(follow, deployment)

    assert looks >= 2  # running at the first look, completed later
    [line] = outcome_lines(follow)
    assert line["rebalance_outcome"] == "completed"
    assert line["rebalance_id"] == rebalance_id
    if api_version == "v1":
        assert line["transaction_hash"].startswith("0x")
    else:  # v2's operation carries no transaction
        assert "transaction_hash" not in line
    assert line["duration_seconds"] == pytest.approx(3.0, abs=0.01)
    [event] = outcome_events(deployment)
    assert event["source"] == "glider-rebalance-trigger"
    assert event["detail-type"] == "Glider Rebalance Completed"
    assert event["detail"]["rebalanceId"] == rebalance_id
    assert event["detail"].get("transactionHash") == line.get("transaction_hash")
    assert [m["RebalancesCompleted"] for m in follow.metrics if "RebalancesCompleted" in m]
    assert deployment.dlq_messages() == []


def events_not_put(function: LocalFunction) -> list[float]:
    return [v for m in function.metrics for v in m.get("OutcomeEventsNotPut", [])]


def test_an_outcome_event_put_on_the_bus_is_not_counted_as_not_put(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
    deliver: Deliver,
) -> None:
    # OutcomeEventsNotPut counts the events the bus refused (test_trigger_failed_events.py).
    delivered = start_function(FOLLOW_FIRST_DELAY_SECONDS="1")
    triggered_rebalance(deliver, delivered, {"portfolioId": PORTFOLIO})
    run_follow_ups(delivered, deployment)
    assert [event["detail-type"] for event in outcome_events(deployment)] == [
        "Glider Rebalance Completed"
    ]
    assert events_not_put(delivered) == []


def test_a_failed_rebalance_is_dead_lettered_for_an_operator_and_announced(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment, deliver: Deliver
) -> None:
    emulator.fail_next_rebalance(PORTFOLIO, "execution reverted: slippage too high")

    rebalance_id = triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    run_follow_ups(follow, deployment)

    [line] = outcome_lines(follow)
    assert (line["rebalance_outcome"], line["reason"]) == (
        "failed",
        "execution reverted: slippage too high",
    )
    [event] = outcome_events(deployment)
    assert event["detail-type"] == "Glider Rebalance Failed"
    [letter] = deployment.dlq_messages()
    attributes = attribute_values(letter)
    assert attributes["reason"] == "REBALANCE_FAILED"
    assert "slippage too high" in attributes["detail"]
    assert attributes["source"] == f"follow-up:{rebalance_id}"
    body = json.loads(letter["Body"])
    assert body == {
        "portfolioId": PORTFOLIO,
        "skipScheduleValidation": False,
        "idempotencyKey": f"retrigger:{rebalance_id}",
    }
    assert len(emulator.rebalances) == 1  # never triggered again by the function itself

    replayed = deliver(body, function=follow)  # an operator decides to trigger it again
    again = deliver(body, function=follow)  # ... and replays the letter twice by mistake

    assert replayed.of(PORTFOLIO)["outcome"] == "triggered"
    assert again.of(PORTFOLIO)["outcome"] == "already-triggered"
    assert len(emulator.rebalances) == 2


def test_a_failed_rebalance_whose_error_quotes_a_key_keeps_it_out_of_every_output(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment, deliver: Deliver
) -> None:
    # Glider's error text of a failed rebalance is copied into the log line, the letter and the
    # event: it quotes the function's own key and another tenant's v2 key.
    other_key = "gldr_sk_Zq81vQ2LmNp4R7sTe"
    emulator.fail_next_rebalance(PORTFOLIO, f"reverted: signer {API_KEY} ({other_key}) refused")

    triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    run_follow_ups(follow, deployment)

    [line] = outcome_lines(follow)
    assert line["reason"] == "reverted: signer <redacted> (<redacted>) refused"
    letters, events = deployment.dlq_messages(), outcome_events(deployment)
    assert [attribute_values(letter)["reason"] for letter in letters] == ["REBALANCE_FAILED"]
    assert [event["detail-type"] for event in events] == ["Glider Rebalance Failed"]
    everything = "\n".join([*follow.output.lines, json.dumps(letters), json.dumps(events)])
    assert API_KEY not in everything
    assert other_key not in everything


def follow_up_message(
    deployment: Deployment, rebalance_id: str, *, triggered_ago: float, number: int = 1
) -> dict[str, Any]:
    triggered_at = datetime.now(UTC) - timedelta(seconds=triggered_ago)
    body = {
        "followUp": {
            "portfolioId": PORTFOLIO,
            "rebalanceId": rebalance_id,
            "triggeredAt": triggered_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "number": number,
            "skipScheduleValidation": False,
        }
    }
    return {"MessageId": f"f-{number}", "ReceiptHandle": "h", "Body": json.dumps(body)}


def test_a_rebalance_not_final_in_time_ends_unknown(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
    api_version: str,
    deliver: Deliver,
) -> None:
    function = start_function(FOLLOW_OUTCOMES="false")
    emulator.set_workflow_seconds(3600)
    rebalance_id = triggered_rebalance(deliver, function, {"portfolioId": PORTFOLIO})
    follower = start_function(FOLLOW_MAX_SECONDS="60")
    assert deployment.follow_up_queue is not None
    # At 60 s and a first delay of 30 s, the second look is the one at the limit.
    late = follow_up_message(deployment, rebalance_id, triggered_ago=61, number=2)

    follower.invoke(as_sqs_event([late], deployment.follow_up_queue.arn))

    [line] = outcome_lines(follower)
    assert (line["rebalance_outcome"], line["reason"]) == ("unknown", "NOT_FINAL_IN_TIME")
    assert line["rebalance_status"] == {"v1": "running", "v2": "accepted"}[api_version]
    [event] = outcome_events(deployment)
    assert event["detail-type"] == "Glider Rebalance Outcome Unknown"
    assert drain(deployment.sqs, deployment.follow_up_queue.url) == []  # no further follow-up


def test_a_redelivered_follow_up_reports_nothing_twice(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment, deliver: Deliver
) -> None:
    rebalance_id = triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    assert deployment.follow_up_queue is not None
    first = drain(deployment.sqs, deployment.follow_up_queue.url, wait_seconds=3)
    time.sleep(0.1)
    event = as_sqs_event(first, deployment.follow_up_queue.arn)

    follow.invoke(event)
    follow.invoke(event)  # SQS delivers it again

    assert len(outcome_lines(follow)) == 1
    assert len(outcome_events(deployment)) == 1
    assert rebalance_id == outcome_lines(follow)[0]["rebalance_id"]


def test_two_follow_ups_of_one_rebalance_in_one_batch_report_it_once_without_an_error(
    follow: LocalFunction, deployment: Deployment, deliver: Deliver
) -> None:
    # Two deliveries that got the same rebalance (v2 answers a repeat with the one in flight),
    # each followed: their follow-ups meet in one batch, each on its own worker.
    rebalance_id = triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    assert deployment.follow_up_queue is not None
    message = follow_up_message(deployment, rebalance_id, triggered_ago=1)
    twin = {**message, "MessageId": "f-twin"}

    response = follow.invoke(as_sqs_event([message, twin], deployment.follow_up_queue.arn))

    assert len(outcome_lines(follow)) == 1
    assert len(outcome_events(deployment)) == 1
    assert [log for log in follow.logs if log["level"] == "ERROR"] == []
    # The one whose outcome was being written by the other is looked at again, or was done.
    assert len(response["batchItemFailures"]) <= 1


def test_a_redelivered_follow_up_of_a_running_rebalance_schedules_the_next_one_once(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment, deliver: Deliver
) -> None:
    emulator.set_workflow_seconds(3600)
    rebalance_id = triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    assert deployment.follow_up_queue is not None
    first = drain(deployment.sqs, deployment.follow_up_queue.url, wait_seconds=3)
    event = as_sqs_event(first, deployment.follow_up_queue.arn)

    follow.invoke(event)
    follow.invoke(event)

    later = drain(deployment.sqs, deployment.follow_up_queue.url, wait_seconds=4)
    assert [json.loads(m["Body"])["followUp"]["number"] for m in later] == [2]
    assert json.loads(later[0]["Body"])["followUp"]["rebalanceId"] == rebalance_id
    assert outcome_lines(follow) == []


def test_each_follow_up_makes_at_most_one_status_call(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment, deliver: Deliver
) -> None:
    emulator.set_workflow_seconds(2.5)

    triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    looks = run_follow_ups(follow, deployment)

    status_calls = sum(1 for r in emulator.requests if r.method == "GET")
    assert status_calls == looks


# --- each queue takes only its own kind of body ----------------------------------------------


def status_calls(emulator: GliderEmulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "GET")


def test_a_trigger_body_on_the_follow_up_queue_triggers_nothing_and_is_dead_lettered(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    # Whoever may write to the follow-up queue must not get a second way to trigger.
    queue = deployment.follow_up_queue
    assert queue is not None
    body = json.dumps({"portfolioId": PORTFOLIO, "skipScheduleValidation": True})
    [message_id] = [deployment.sqs.send_message(QueueUrl=queue.url, MessageBody=body)["MessageId"]]

    result = SqsEventSource(deployment.sqs, queue).poll(follow.invoke)

    assert result is not None
    assert result.deleted == [message_id]  # settled: it does not come back
    assert emulator.trigger_requests == []
    [letter] = deployment.dlq_messages()
    assert letter["Body"] == body  # verbatim
    attributes = attribute_values(letter)
    assert (attributes["reason"], attributes["failureClass"]) == ("MALFORMED_INPUT", "permanent")
    assert "a trigger body on the follow-up queue" in attributes["detail"]
    assert attributes["source"] == f"sqs:{message_id}"


def test_a_follow_up_body_on_the_work_queue_is_not_followed_and_is_dead_lettered(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment, deliver: Deliver
) -> None:
    # a real rebalance
    rebalance_id = triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    body = follow_up_message(deployment, rebalance_id, triggered_ago=1)["Body"]
    message_id = deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=body)[
        "MessageId"
    ]

    polled = SqsEventSource(deployment.sqs, deployment.work_queue).poll(follow.invoke)

    assert polled is not None
    assert polled.deleted == [message_id]
    assert status_calls(emulator) == 0  # never looked at
    assert outcome_lines(follow) == []
    [letter] = deployment.dlq_messages()
    assert letter["Body"] == body
    attributes = attribute_values(letter)
    assert attributes["reason"] == "MALFORMED_INPUT"
    assert "a follow-up body on a queue other than the follow-up queue" in attributes["detail"]
    assert len(emulator.rebalances) == 1  # nor triggered: it names no portfolio to trigger


def test_each_queue_still_takes_its_own_kind_of_body(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    body = json.dumps({"portfolioId": PORTFOLIO})
    deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=body)

    SqsEventSource(deployment.sqs, deployment.work_queue).poll(follow.invoke)
    run_follow_ups(follow, deployment)

    assert len(emulator.rebalances) == 1
    [line] = outcome_lines(follow)
    assert line["rebalance_outcome"] == "completed"
    assert status_calls(emulator) >= 1
    assert deployment.dlq_messages() == []


def test_follow_ups_keep_to_the_client_side_rate_limit(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
    deliver: Deliver,
) -> None:
    # Ten rebalances triggered without a limit; their ten follow-ups then meet in one batch of an
    # execution environment limited to one request a second.
    portfolios = [f"port_paced{n:02d}" for n in range(10)]
    for portfolio_id in portfolios:
        emulator.add_portfolio(portfolio_id)
    # A generous read timeout: a busy machine must not cut an answer off (its rebalance would
    # then be unknown at once, with no follow-up to pace).
    unlimited = start_function(FOLLOW_FIRST_DELAY_SECONDS="1", GLIDER_READ_TIMEOUT_SECONDS="5")
    assert deliver({"portfolioIds": portfolios}, function=unlimited).triggered == len(portfolios)
    queue = deployment.follow_up_queue
    assert queue is not None
    follow_ups: list[dict[str, Any]] = []
    for _ in range(10):
        follow_ups += drain(deployment.sqs, queue.url, wait_seconds=3)
        if len(follow_ups) >= len(portfolios):
            break
    assert len(follow_ups) == len(portfolios)
    paced = start_function(RATE_LIMIT_PER_SECOND="1")
    started = time.time()

    response = paced.invoke(as_sqs_event(follow_ups, queue.arn))

    assert response == {"batchItemFailures": []}
    looks = sorted(r.received_at for r in emulator.requests if r.received_at >= started)
    assert len(looks) == len(portfolios)  # one status call each
    # One request a second, a burst of one: nine seconds between the first and the tenth (less
    # what the first alone spent on its way, a connection of its own).
    assert looks[-1] - looks[0] >= 8.8
    assert len(outcome_lines(paced)) == len(portfolios)


def test_a_status_call_that_meets_a_routers_404_does_not_end_the_rebalance_as_not_found(
    follow: LocalFunction, emulator: GliderEmulator, deployment: Deployment, deliver: Deliver
) -> None:
    # Only Glider's own 404 says the rebalance does not exist; a router's says the path does not.
    emulator.script_status(PORTFOLIO, Fault.malformed(404, b"Not Found", "text/plain"))

    rebalance_id = triggered_rebalance(deliver, follow, {"portfolioId": PORTFOLIO})
    looks = run_follow_ups(follow, deployment)

    assert looks == 2  # the router's 404, then the rebalance's own state
    [line] = outcome_lines(follow)
    assert (line["rebalance_outcome"], line["rebalance_id"]) == ("completed", rebalance_id)
    [unreadable] = [log for log in follow.logs if log.get("reason") == "ROUTE_NOT_FOUND"]
    assert unreadable["level"] == "ERROR"
    assert unreadable["detail"].startswith("GET http://127.0.0.1:")
    systemic = [m["SystemicFailures"] for m in follow.metrics if "SystemicFailures" in m]
    assert systemic == [[1.0]]  # the alarm's metric
    assert deployment.dlq_messages() == []
