"""One invocation in: its deadline begun, the event routed, and its answer in Lambda's shape.

- SQS records go by their queue: the follow-up queue's to the follow-ups, every other queue's
  to the triggers (an event source mapping's batch holds one queue's records); the answer is a
  partial batch response.
- Anything else (Scheduler, a rule, a bus event, a direct invocation, an on-failure record) is
  one input: validated and queued (domain/intake.py); the answer says what was accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from glider_trigger.domain.errors import InvalidInputError
from glider_trigger.domain.intake import Intake
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import FollowUp, ParsedInput
from glider_trigger.inbound.events import is_sqs_event, parse_event, source_of_event
from glider_trigger.inbound.queues import QueueRole, QueueRoles
from glider_trigger.inbound.response import summary
from glider_trigger.inbound.sqs_batch import SqsBatchHandler, SqsRecord

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from glider_trigger.domain.ports import Deadline


@dataclass(frozen=True)
class ContextDeadline:
    """The Lambda deadline, less a margin kept for dead-lettering and returning."""

    context: LambdaContext
    margin_seconds: float

    def seconds_left(self) -> float:
        return self.context.get_remaining_time_in_millis() / 1000 - self.margin_seconds


@dataclass(frozen=True)
class Routes:
    """Where each kind of invocation goes."""

    intake: Intake
    triggers: SqsBatchHandler[ParsedInput]
    follow_ups: SqsBatchHandler[FollowUp]
    queues: QueueRoles


class LambdaEntry:
    def __init__(
        self,
        routes: Routes,
        *,
        begin: Callable[[Deadline, float], Invocation],
        on_invocation: Callable[[LambdaContext], None],
        deadline_margin_seconds: float,
        default_skip: bool,
    ) -> None:
        self._routes = routes
        self._begin = begin
        self._on_invocation = on_invocation  # the guard learns each invocation's deadline
        self._margin = deadline_margin_seconds
        self._default_skip = default_skip

    def handle(self, event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
        self._on_invocation(context)
        routes = self._routes
        if not is_sqs_event(event):
            try:
                parsed = parse_event(event, default_skip=self._default_skip)
            except InvalidInputError as exc:
                raw = json.dumps(event, default=str, ensure_ascii=True)
                return summary(routes.intake.refuse(raw, exc, source_of_event(event)))
            return summary(routes.intake.accept(parsed, request_id=context.aws_request_id))
        invocation = self._begin(
            ContextDeadline(context, self._margin),
            context.get_remaining_time_in_millis() / 1000,
        )
        records = [SqsRecord.of(record) for record in event["Records"]]
        follow_ups = [r for r in records if routes.queues.of(r.queue_arn) is QueueRole.FOLLOW_UP]
        triggers = [r for r in records if routes.queues.of(r.queue_arn) is QueueRole.WORK]
        again = routes.follow_ups.handle(follow_ups, invocation)
        again |= routes.triggers.handle(triggers, invocation)
        failures = [r.message.message_id for r in records if r.message.message_id in again]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failures]}
