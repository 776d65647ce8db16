"""The work queue's use case and an event's intake wired to in-memory fakes of every port: the
world the domain's delivery tests drive (test_delivery.py, test_intake.py, test_history_port.py).
The API answers `api`'s script; each other port keeps what it was given, to be read back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import count

from glider_trigger.domain.batch import Settlement
from glider_trigger.domain.delivery import DeliveryRules, DeliveryService
from glider_trigger.domain.errors import DeadLetterWriteError, FanOutError, InvalidInputError
from glider_trigger.domain.follow import OutcomeFollower
from glider_trigger.domain.intake import Accepted, Intake
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.letterbox import LetterBox
from glider_trigger.domain.models import Message, Next, ParsedInput
from glider_trigger.inbound.events import parse_event, parse_sqs_body
from tests.fakes.api import FakeApi, FakeDeadline, FakeKeys, rebalance_trigger, retry_policy
from tests.fakes.clock import FakeClock
from tests.fakes.events import InMemoryEvents
from tests.fakes.guard import InMemoryGuard
from tests.fakes.history import RecordingHistory
from tests.fakes.queues import InMemoryQueue
from tests.fakes.telemetry import RecordingTelemetry

LIFETIME = 60.0  # each invocation's whole time at its start


@dataclass
class DeliveryWorld:
    api: FakeApi
    guard: InMemoryGuard = field(default_factory=InMemoryGuard)
    dlq: InMemoryQueue = field(default_factory=lambda: InMemoryQueue(DeadLetterWriteError, "dlq"))
    work: InMemoryQueue = field(default_factory=lambda: InMemoryQueue(FanOutError, "work"))
    telemetry: RecordingTelemetry = field(default_factory=RecordingTelemetry)
    events: InMemoryEvents = field(default_factory=InMemoryEvents)
    history: RecordingHistory = field(default_factory=RecordingHistory)
    max_receive_count: int = 5
    max_attempts: int = 4
    max_concurrency: int = 4
    follower: OutcomeFollower | None = None
    _ids: count[int] = field(default_factory=lambda: count(1))

    def __post_init__(self) -> None:
        policy = retry_policy(
            base_delay_seconds=0, max_delay_seconds=8.0, max_attempts=self.max_attempts
        )
        self.letterbox = LetterBox(self.dlq, self.guard, self.telemetry, self.events)
        self.intake = Intake(
            self.work, self.letterbox, self.telemetry, parallelism=self.max_concurrency
        )
        self.service = DeliveryService(
            rebalance_trigger(self.api, FakeKeys(), policy, clock=FakeClock()),
            self.guard,
            self.letterbox,
            self.work,
            self.telemetry,
            intake=self.intake,
            rules=DeliveryRules(
                max_concurrency=self.max_concurrency, max_receive_count=self.max_receive_count
            ),
            follower=self.follower,
            history=self.history,
        )

    def invocation(self) -> Invocation:
        return self.service.begin(FakeDeadline(), lifetime_seconds=LIFETIME)

    def event(self, event: object, request_id: str = "req-1") -> Accepted:
        """An input that is not an SQS record: validated and queued by the intake."""
        return self.intake.accept(parse_event(event, default_skip=False), request_id=request_id)

    def batch(self, *messages: Message) -> list[Settlement]:
        """One SQS batch: every message prepared at once, then each settled on its own."""
        invocation = self.invocation()
        prepared = self.service.prepare([(m, parsed(m)) for m in messages], invocation)
        return [self.service.settle(record, invocation) for record in prepared]

    def message(self, body: object, *, message_id: str = "m-1", receive: int = 1) -> Settlement:
        [settlement] = self.batch(Message(message_id, json.dumps(body), receive))
        return settlement

    def drain(self) -> list[Settlement]:
        """What the work queue holds, delivered once each as new messages (and taken off it)."""
        queued, self.work.messages = self.work.messages, []
        return self.batch(*(Message(f"w-{next(self._ids)}", m.body) for m in queued))

    def letters(self) -> list[dict[str, object]]:
        return self.dlq.bodies()

    def actions(self) -> list[Next]:
        return [line["action"] for line in self.telemetry.named("outcome")]


def parsed(message: Message) -> ParsedInput | InvalidInputError:
    """A work-queue message's body as the SQS route parses it (its error, for one it refuses)."""
    try:
        return parse_sqs_body(message.body, message_id=message.message_id, default_skip=False)
    except InvalidInputError as exc:
        return exc
