"""Each followed rebalance's final outcome as an EventBridge event on OUTCOME_EVENT_BUS_NAME, so
that users route outcomes (chat, e-mail, their own systems) with a rule of their own.

Source `glider-rebalance-trigger`; detail-type `Glider Rebalance Completed`, `... Failed` or
`... Outcome Unknown`; the detail holds the facts of the outcome's log line in camelCase.
Each dead letter the function writes for a portfolio whose trigger failed is one more event,
`Glider Rebalance Trigger Failed`: the portfolio, its delivery key, Glider's answer in brief
("HTTP 404 API_200") and the letter's attributes under their own names (what `glider-trigger
dlq list` shows). Implements the domain's
OutcomeEvents port.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import OutcomeEventError
from glider_trigger.domain.models import FinalOutcome
from glider_trigger.domain.ports import FailedTriggerLetter, OutcomeReport
from glider_trigger.outbound.telemetry import outcome_fields

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SOURCE: Final = "glider-rebalance-trigger"
DETAIL_TYPES: Final = {
    FinalOutcome.COMPLETED: "Glider Rebalance Completed",
    FinalOutcome.FAILED: "Glider Rebalance Failed",
    FinalOutcome.UNKNOWN: "Glider Rebalance Outcome Unknown",
}
TRIGGER_FAILED: Final = "Glider Rebalance Trigger Failed"
MAX_ENTRIES: Final = 10  # PutEvents' limit per call


class EventBridgeOutcomes:
    def __init__(self, bus_name: str, *, client: Callable[[], EventBridgeClient]) -> None:
        self._bus_name = bus_name
        self._client = client  # built on the first outcome

    def publish(self, report: OutcomeReport) -> None:
        problems = self._put([self._entry(DETAIL_TYPES[report.outcome], detail(report))])
        if problems:
            raise OutcomeEventError(problems[0])

    def trigger_failed(self, letters: Sequence[FailedTriggerLetter]) -> None:
        """Every batch is tried; the first problem is raised after, naming how many were not put."""
        entries = [self._entry(TRIGGER_FAILED, letter_detail(letter)) for letter in letters]
        problems: list[str] = []
        for start in range(0, len(entries), MAX_ENTRIES):
            problems += self._put(entries[start : start + MAX_ENTRIES])
        if problems:
            raise OutcomeEventError(f"{len(problems)} of {len(entries)} not put: {problems[0]}")

    def _entry(self, detail_type: str, facts: dict[str, Any]) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(facts),
            "EventBusName": self._bus_name,
        }

    def _put(self, entries: list[PutEventsRequestEntryTypeDef]) -> list[str]:
        """One PutEvents call: the problem of each entry not put (every entry when it failed)."""
        try:
            answer = self._client().put_events(Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            return [f"{type(exc).__name__}: {exc}"] * len(entries)
        if not answer.get("FailedEntryCount"):
            return []
        return [
            f"{entry.get('ErrorCode', 'Failed')}: {entry.get('ErrorMessage', '')}"
            for entry in answer.get("Entries", [])
            if entry.get("ErrorCode")
        ] or ["Failed: no entry said why"]


def detail(report: OutcomeReport) -> dict[str, Any]:
    """The event's detail: the outcome and its facts, camelCase."""
    fields = {"outcome": str(report.outcome), **outcome_fields(report)}
    return {_camel(name): value for name, value in fields.items()}


def letter_detail(letter: FailedTriggerLetter) -> dict[str, Any]:
    """A failed trigger's event detail: its portfolio, delivery and the letter's attributes."""
    attributes = letter.letter.attributes
    status, code = attributes.get("httpStatus"), attributes.get("apiErrorCode")
    facts: dict[str, Any] = {
        "portfolioId": letter.portfolio_id,
        # Always there, for a notice to quote: a missing field leaves its placeholder unfilled.
        "gliderAnswer": " ".join(str(v) for v in ("HTTP", status, code) if v is not None)
        if status is not None
        else "no HTTP answer",
    }
    if letter.delivery_key:
        facts["deliveryKey"] = letter.delivery_key
    return facts | attributes


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
