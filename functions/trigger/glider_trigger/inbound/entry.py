"""One invocation in: its deadline and state begun, the event told apart (an SQS batch or one
input), handed to the use case, and its answer returned in the shape Lambda expects."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from glider_trigger.domain.delivery import DeliveryService
from glider_trigger.domain.errors import InvalidInputError
from glider_trigger.inbound.events import is_sqs_event, parse_event, source_of_event
from glider_trigger.inbound.response import summary
from glider_trigger.inbound.sqs_batch import SqsBatchHandler

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@dataclass(frozen=True)
class ContextDeadline:
    """The Lambda deadline, less a margin kept for dead-lettering and returning."""

    context: LambdaContext
    margin_seconds: float

    def seconds_left(self) -> float:
        return self.context.get_remaining_time_in_millis() / 1000 - self.margin_seconds


class LambdaEntry:
    def __init__(
        self,
        service: DeliveryService,
        sqs_batches: SqsBatchHandler,
        *,
        on_invocation: Callable[[LambdaContext], None],
        deadline_margin_seconds: float,
        default_skip: bool,
    ) -> None:
        self._service = service
        self._sqs_batches = sqs_batches
        self._on_invocation = on_invocation  # the guard learns each invocation's deadline
        self._margin = deadline_margin_seconds
        self._default_skip = default_skip

    def handle(self, event: dict[str, Any], context: LambdaContext) -> Mapping[str, object]:
        self._on_invocation(context)
        invocation = self._service.begin(
            ContextDeadline(context, self._margin),
            request_id=context.aws_request_id,
            lifetime_seconds=context.get_remaining_time_in_millis() / 1000,
        )
        if is_sqs_event(event):
            return self._sqs_batches.handle(event, invocation)
        try:
            parsed = parse_event(event, default_skip=self._default_skip)
        except InvalidInputError as exc:
            raw = json.dumps(event, default=str, ensure_ascii=True)
            return summary(self._service.reject_event(raw, exc, source_of_event(event)))
        return summary(self._service.deliver_event(parsed, invocation))
