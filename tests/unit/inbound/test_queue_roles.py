"""Each queue takes its own kind of body: a record's queue told by account and name, and what
each queue's records are parsed as (the real handler's side: tests/integration/test_outcomes.py)."""

from __future__ import annotations

import json

import pytest

from glider_trigger.domain.errors import InvalidInputError
from glider_trigger.domain.models import FollowUp, ParsedInput
from glider_trigger.inbound.events import parse_record_body
from glider_trigger.inbound.queues import QueueRole, QueueRoles

FOLLOW_UPS = "https://sqs.eu-west-1.amazonaws.com/123456789012/glider-follow-up"
FOLLOW_UPS_ARN = "arn:aws:sqs:eu-west-1:123456789012:glider-follow-up"
FOLLOW_UP_BODY = json.dumps(
    {
        "followUp": {
            "portfolioId": "p1",
            "rebalanceId": "rebal_1",
            "triggeredAt": "2026-12-02T06:00:00.412Z",
            "number": 1,
        }
    }
)
TRIGGER_BODY = json.dumps({"portfolioId": "p1"})


@pytest.mark.parametrize(
    "url",
    [
        FOLLOW_UPS,
        "http://127.0.0.1:5000/123456789012/glider-follow-up",  # a moto server
        "http://localhost:4566/queue/eu-west-1/123456789012/glider-follow-up",  # path style
    ],
)
def test_the_follow_up_queue_is_known_by_its_account_and_name_whatever_the_endpoint(
    url: str,
) -> None:
    assert QueueRoles(url).of(FOLLOW_UPS_ARN) is QueueRole.FOLLOW_UP


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sqs:eu-west-1:123456789012:glider-work",  # the work queue
        "arn:aws:sqs:eu-west-1:210987654321:glider-follow-up",  # the same name in another account
        "arn:aws:sqs:eu-west-1:123456789012:glider-follow-up-2",
        "glider-follow-up",
        "",
    ],
)
def test_every_other_queue_is_a_work_queue(arn: str) -> None:
    assert QueueRoles(FOLLOW_UPS).of(arn) is QueueRole.WORK


def test_without_a_follow_up_queue_every_queue_is_a_work_queue() -> None:
    assert QueueRoles(None).of(FOLLOW_UPS_ARN) is QueueRole.WORK


def test_each_queue_parses_its_own_kind_of_body() -> None:
    follow_up = parse_record_body(
        FOLLOW_UP_BODY, queue=QueueRole.FOLLOW_UP, message_id="m1", default_skip=False
    )
    trigger = parse_record_body(
        TRIGGER_BODY, queue=QueueRole.WORK, message_id="m2", default_skip=False
    )

    assert isinstance(follow_up, FollowUp)
    assert follow_up.rebalance_id == "rebal_1"
    assert isinstance(trigger, ParsedInput)
    assert [r.portfolio_id for r in trigger.requests] == ["p1"]


@pytest.mark.parametrize(
    ("body", "queue", "why"),
    [
        (TRIGGER_BODY, QueueRole.FOLLOW_UP, "a trigger body on the follow-up queue"),
        ("{}", QueueRole.FOLLOW_UP, "a trigger body on the follow-up queue"),
        ("not json", QueueRole.FOLLOW_UP, "not valid JSON"),
        (FOLLOW_UP_BODY, QueueRole.WORK, "a follow-up body on a queue other than the follow-up"),
    ],
)
def test_a_body_of_the_other_kind_is_malformed_input_that_says_why(
    body: str, queue: QueueRole, why: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_record_body(body, queue=queue, message_id="m1", default_skip=False)

    assert why in str(caught.value)
    assert caught.value.reason == "MALFORMED_INPUT"
