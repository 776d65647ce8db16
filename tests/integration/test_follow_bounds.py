"""Following ends within FOLLOW_MAX_SECONDS whatever a follow-up message says: a triggeredAt in
the future or a look number past the most a chain can reach does not keep a rebalance polled.

Driven through the follow-up queue of the moto server, as Lambda's event source would deliver
it; on v1 only: the bounds are the domain's, the same on either API version, and the first test
waits out FOLLOW_MAX_SECONDS (its smallest allowed value, 60 s) in real time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from glider_trigger.domain.follow import most_status_calls
from local.fixtures.delivery import Story, deliver
from local.fixtures.event_source import SqsEventSource, sqs_event
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import REGION, Deployment, drain

PORTFOLIO = "port_abc123"
MAX_SECONDS = 60  # the smallest FOLLOW_MAX_SECONDS the settings accept
FIRST_DELAY = 1


def running_rebalance(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator, deployment: Deployment
) -> str:
    """A rebalance that stays running for an hour, triggered (from the work queue, as the stack
    does) without following it."""
    emulator.set_workflow_seconds(3600)
    function = start_function(FOLLOW_OUTCOMES="false")
    work_queue = SqsEventSource(deployment.sqs, deployment.work_queue)
    story: Story = deliver(function, work_queue, {"portfolioId": PORTFOLIO})
    assert story.of(PORTFOLIO)["outcome"] == "triggered"
    return str(story.of(PORTFOLIO)["rebalance_id"])


def send_follow_up(
    deployment: Deployment, rebalance_id: str, *, triggered_at: datetime, number: int
) -> None:
    assert deployment.follow_up_queue is not None
    body = {
        "followUp": {
            "portfolioId": PORTFOLIO,
            "rebalanceId": rebalance_id,
            "triggeredAt": triggered_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "number": number,
            "skipScheduleValidation": False,
        }
    }
    deployment.sqs.send_message(
        QueueUrl=deployment.follow_up_queue.url, MessageBody=json.dumps(body)
    )


def outcome_lines(function: LocalFunction) -> list[dict[str, Any]]:
    return [log for log in function.logs if "rebalance_outcome" in log]


def follow_until_ended(function: LocalFunction, deployment: Deployment, *, within: float) -> float:
    """Deliver the follow-up queue's messages to the function as they become visible until an
    outcome is reported; returns when (epoch seconds). Fails after `within` seconds."""
    queue = deployment.follow_up_queue
    assert queue is not None
    give_up = time.time() + within
    while time.time() < give_up:
        messages = drain(deployment.sqs, queue.url, wait_seconds=1)
        if messages:
            response = function.invoke(sqs_event(messages, queue.arn, REGION))
            assert response == {"batchItemFailures": []}
            if outcome_lines(function):
                return time.time()
    pytest.fail(f"still followed {within:.0f} s after the first follow-up")


def test_a_follow_up_dated_a_year_ahead_ends_unknown_once_the_limit_has_passed(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    rebalance_id = running_rebalance(start_function, emulator, deployment)
    follower = start_function(
        FOLLOW_MAX_SECONDS=str(MAX_SECONDS), FOLLOW_FIRST_DELAY_SECONDS=str(FIRST_DELAY)
    )
    sent = time.time()
    ahead = datetime.now(UTC) + timedelta(days=365)
    send_follow_up(deployment, rebalance_id, triggered_at=ahead, number=1)

    ended = follow_until_ended(follower, deployment, within=MAX_SECONDS + 30)

    [line] = outcome_lines(follower)
    assert (line["rebalance_outcome"], line["reason"]) == ("unknown", "NOT_FINAL_IN_TIME")
    assert ended - sent >= MAX_SECONDS  # followed for the limit from its first read, not less
    looks = [r for r in emulator.requests if r.method == "GET"]
    assert len(looks) == line["follow_ups"] <= most_status_calls(MAX_SECONDS, FIRST_DELAY)
    assert deployment.follow_up_queue is not None
    assert drain(deployment.sqs, deployment.follow_up_queue.url) == []  # no further follow-up


def test_a_follow_up_numbered_past_the_most_status_calls_ends_unknown_at_once(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    rebalance_id = running_rebalance(start_function, emulator, deployment)
    follower = start_function()
    send_follow_up(deployment, rebalance_id, triggered_at=datetime.now(UTC), number=10**9)

    follow_until_ended(follower, deployment, within=10)

    [line] = outcome_lines(follower)
    assert (line["rebalance_outcome"], line["reason"]) == ("unknown", "NOT_FINAL_IN_TIME")
    assert [r for r in emulator.requests if r.method == "GET"] == []  # no status call
    assert deployment.follow_up_queue is not None
    assert drain(deployment.sqs, deployment.follow_up_queue.url, wait_seconds=1) == []
