"""Each queue takes its own kind of body: a record's queue told by account and name, what each
queue's records are parsed as, and the entry sending each record to its queue's route (the real
handler's side: tests/integration/test_outcomes.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from glider_trigger.domain.batch import SETTLED, BatchWork, Settlement
from glider_trigger.domain.errors import DeadLetterWriteError, FanOutError, InvalidInputError
from glider_trigger.domain.intake import Intake
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.letterbox import LetterBox
from glider_trigger.domain.models import FollowUp, Message, ParsedInput
from glider_trigger.inbound.entry import LambdaEntry, Routes
from glider_trigger.inbound.events import follow_up_queue_parser, work_queue_parser
from glider_trigger.inbound.queues import QueueRole, QueueRoles
from glider_trigger.inbound.sqs_batch import SqsBatchHandler, SqsRecord
from glider_trigger.inbound.visibility import WorkQueueVisibility
from tests.fakes.api import retry_policy
from tests.fakes.guard import InMemoryGuard
from tests.fakes.queues import InMemoryQueue
from tests.fakes.telemetry import RecordingTelemetry

FOLLOW_UPS = "https://sqs.eu-west-1.amazonaws.com/123456789012/glider-follow-up"
FOLLOW_UPS_ARN = "arn:aws:sqs:eu-west-1:123456789012:glider-follow-up"
WORK_ARN = "arn:aws:sqs:eu-west-1:123456789012:glider-work"
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


def record(body: str, *, queue_arn: str = WORK_ARN, message_id: str = "m1") -> SqsRecord:
    return SqsRecord.of(
        {
            "messageId": message_id,
            "body": body,
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "receiptHandle": f"rh-{message_id}",
            "attributes": {"ApproximateReceiveCount": "1"},
        }
    )


def test_each_queue_parses_its_own_kind_of_body() -> None:
    follow_up = follow_up_queue_parser(record(FOLLOW_UP_BODY, queue_arn=FOLLOW_UPS_ARN))
    trigger = work_queue_parser(default_skip=False)(record(TRIGGER_BODY, message_id="m2"))

    assert isinstance(follow_up, FollowUp)
    assert follow_up.rebalance_id == "rebal_1"
    assert isinstance(trigger, ParsedInput)
    assert [r.portfolio_id for r in trigger.requests] == ["p1"]
    assert trigger.source.dedupe_key == "sqs:m2"  # a message is its own delivery


@pytest.mark.parametrize("default_skip", [False, True])
def test_the_work_queue_parser_applies_the_default_skip(default_skip: bool) -> None:
    parsed = work_queue_parser(default_skip=default_skip)(record(TRIGGER_BODY))

    assert [r.skip_schedule_validation for r in parsed.requests] == [default_skip]


@pytest.mark.parametrize(
    ("body", "queue", "why"),
    [
        (TRIGGER_BODY, QueueRole.FOLLOW_UP, "a trigger body on the follow-up queue"),
        ("{}", QueueRole.FOLLOW_UP, "a trigger body on the follow-up queue"),
        ("not json", QueueRole.FOLLOW_UP, "not valid JSON"),
        ("not json", QueueRole.WORK, "not valid JSON"),
        (FOLLOW_UP_BODY, QueueRole.WORK, "a follow-up body on a queue other than the follow-up"),
    ],
)
def test_a_body_of_the_other_kind_is_malformed_input_that_says_why(
    body: str, queue: QueueRole, why: str
) -> None:
    parse: Callable[[SqsRecord], object] = (
        follow_up_queue_parser
        if queue is QueueRole.FOLLOW_UP
        else work_queue_parser(default_skip=False)
    )

    with pytest.raises(InvalidInputError) as caught:
        parse(record(body))

    assert why in str(caught.value)
    assert caught.value.reason == "MALFORMED_INPUT"


# --- the entry routes each record by its queue ---------------------------------------------


class Recorded(BatchWork[object, Message]):
    """A queue's work that keeps what it was given, and asks for the redelivery of `again`."""

    def __init__(self, *again: str) -> None:
        self.given: list[tuple[str, object]] = []
        self.again = set(again)

    def prepare(
        self, messages: Sequence[tuple[Message, object]], invocation: Invocation
    ) -> list[Message]:
        self.given.extend((message.message_id, parsed) for message, parsed in messages)
        return [message for message, _ in messages]

    def settle(self, record: Message, invocation: Invocation) -> Settlement:
        return Settlement(redeliver=True) if record.message_id in self.again else SETTLED


@dataclass
class Context:
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Entry:
    triggers: Recorded
    follow_ups: Recorded
    work: InMemoryQueue = field(default_factory=lambda: InMemoryQueue(FanOutError, "work"))

    def __post_init__(self) -> None:
        telemetry = RecordingTelemetry()
        letterbox = LetterBox(
            InMemoryQueue(DeadLetterWriteError, "dlq"), InMemoryGuard(), telemetry
        )
        visibility = WorkQueueVisibility(client=lambda: pytest.fail("nothing is postponed"))
        routes = Routes(
            Intake(self.work, letterbox, telemetry, parallelism=1),
            SqsBatchHandler(
                self.triggers, work_queue_parser(default_skip=False), visibility, telemetry
            ),  # type: ignore[arg-type]
            SqsBatchHandler(self.follow_ups, follow_up_queue_parser, visibility, telemetry),  # type: ignore[arg-type]
            QueueRoles(FOLLOW_UPS),
        )
        self.entry = LambdaEntry(
            routes,
            begin=lambda deadline, lifetime: Invocation(
                deadline, retry_policy(), lifetime_seconds=lifetime
            ),
            on_invocation=lambda context: None,
            deadline_margin_seconds=2,
            default_skip=False,
        )

    def handle(self, event: dict[str, Any]) -> Mapping[str, object]:
        return self.entry.handle(event, Context())  # type: ignore[arg-type]


def sqs_event(*records: tuple[str, str, str]) -> dict[str, Any]:
    """Records as (message id, queue ARN, body)."""
    return {
        "Records": [
            {"messageId": i, "body": body, "eventSource": "aws:sqs", "eventSourceARN": arn}
            for i, arn, body in records
        ]
    }


def test_the_follow_up_queues_records_are_followed_and_every_other_queues_triggered() -> None:
    routed = Entry(Recorded(), Recorded())

    answer = routed.handle(
        sqs_event(
            ("w1", WORK_ARN, TRIGGER_BODY),
            ("f1", FOLLOW_UPS_ARN, FOLLOW_UP_BODY),
            ("w2", WORK_ARN, FOLLOW_UP_BODY),  # a follow-up on the work queue: malformed there
        )
    )

    assert answer == {"batchItemFailures": []}
    assert [i for i, _ in routed.triggers.given] == ["w1", "w2"]
    assert isinstance(routed.triggers.given[0][1], ParsedInput)
    assert isinstance(routed.triggers.given[1][1], InvalidInputError)
    assert [i for i, _ in routed.follow_ups.given] == ["f1"]
    assert isinstance(routed.follow_ups.given[0][1], FollowUp)
    assert routed.work.messages == []  # a record is never queued again as an event would be


def test_the_batch_asks_for_the_redelivery_of_what_either_route_did_not_settle() -> None:
    routed = Entry(Recorded("w2"), Recorded("f1"))

    answer = routed.handle(
        sqs_event(
            ("w1", WORK_ARN, TRIGGER_BODY),
            ("f1", FOLLOW_UPS_ARN, FOLLOW_UP_BODY),
            ("w2", WORK_ARN, TRIGGER_BODY),
        )
    )

    # In the batch's own order.
    assert answer == {"batchItemFailures": [{"itemIdentifier": "f1"}, {"itemIdentifier": "w2"}]}


def test_any_other_event_is_queued_not_triggered() -> None:
    routed = Entry(Recorded(), Recorded())

    answer = routed.handle({"portfolioIds": ["p1", "p2"]})

    assert (answer["queued"], answer["deliveryKey"]) == (2, "lambda:req-1")
    assert [json.loads(m.body)["portfolioId"] for m in routed.work.messages] == ["p1", "p2"]
    assert routed.triggers.given == []
    assert routed.follow_ups.given == []
