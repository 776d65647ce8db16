"""Each followed rebalance's final outcome as an EventBridge event on OUTCOME_EVENT_BUS_NAME, so
that users route outcomes (chat, e-mail, their own systems) with a rule of their own.

Source `glider-rebalance-trigger`; detail-type `Glider Rebalance Completed`, `... Failed` or
`... Outcome Unknown`; the detail holds the facts of the outcome's log line in camelCase.
Implements the domain's OutcomeEvents port.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import OutcomeEventError
from glider_trigger.domain.models import FinalOutcome
from glider_trigger.domain.ports import OutcomeReport
from glider_trigger.outbound.telemetry import outcome_fields

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

SOURCE: Final = "glider-rebalance-trigger"
DETAIL_TYPES: Final = {
    FinalOutcome.COMPLETED: "Glider Rebalance Completed",
    FinalOutcome.FAILED: "Glider Rebalance Failed",
    FinalOutcome.UNKNOWN: "Glider Rebalance Outcome Unknown",
}


class EventBridgeOutcomes:
    def __init__(self, bus_name: str, *, client: Callable[[], EventBridgeClient]) -> None:
        self._bus_name = bus_name
        self._client = client  # built on the first outcome

    def publish(self, report: OutcomeReport) -> None:
        try:
            answer = self._client().put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": DETAIL_TYPES[report.outcome],
                        "Detail": json.dumps(detail(report)),
                        "EventBusName": self._bus_name,
                    }
                ]
            )
        except (ClientError, BotoCoreError) as exc:
            raise OutcomeEventError(f"{type(exc).__name__}: {exc}") from exc
        if answer.get("FailedEntryCount"):
            entry = answer.get("Entries", [{}])[0]
            raise OutcomeEventError(
                f"{entry.get('ErrorCode', 'Failed')}: {entry.get('ErrorMessage', '')}"
            )


def detail(report: OutcomeReport) -> dict[str, Any]:
    """The event's detail: the outcome and its facts, camelCase."""
    fields = {"outcome": str(report.outcome), **outcome_fields(report)}
    return {_camel(name): value for name, value in fields.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
