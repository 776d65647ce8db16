"""The history: each trigger and each final outcome of a portfolio, kept in the guard's table
for the guard's window, for `glider-trigger history` and `status`. The one owner of its format.

One record per portfolio per UTC day (`history#<portfolio>#<YYYY-MM-DD>`, apart from the
guard's `glider-rebalance-trigger#...` records), whose `entries` list grows by one per trigger
or outcome: one UpdateItem each on the function's path (an action its role already has), and
the record expires with the guard's memory of its latest entry. Read without a Scan:
- a portfolio's history: its day records, by key (BatchGetItem);
- the latest entries across portfolios: the table's one index, `ByDay` (hash `historyDay`,
  range `historyAt`, the time of the record's latest entry), newest first. The N latest
  entries are among the N records updated last, so N records are enough.
One index, not one per question: CloudFormation adds a single global secondary index to an
existing table per stack update, so a deployed stack takes this one in one update.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from glider_trigger.domain.errors import TriggerError
from glider_trigger.domain.models import (
    Failed,
    Outcome,
    SourceKind,
    Triggered,
    kind_of,
)
from glider_trigger.domain.ports import OutcomeReport
from glider_trigger.domain.trigger_input import epoch_of, iso_time
from glider_trigger.outbound.guard import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        AttributeValueTypeDef,
        GlobalSecondaryIndexTypeDef,
        QueryInputTypeDef,
    )

KEY_PREFIX: Final = "history"
INDEX: Final = "ByDay"
DAY: Final = "historyDay"  # the index's hash key: YYYY-MM-DD (UTC)
AT: Final = "historyAt"  # the index's range key: the latest entry's time, ISO 8601 UTC
PORTFOLIO: Final = "historyPortfolio"
ENTRIES: Final = "entries"
# The index as the template declares it (tests/unit/outbound/test_history.py keeps the two
# equal; local/fixtures/stack.py creates the moto table from these).
ATTRIBUTE_DEFINITIONS: Final[Sequence[AttributeDefinitionTypeDef]] = (
    {"AttributeName": DAY, "AttributeType": "S"},
    {"AttributeName": AT, "AttributeType": "S"},
)
GLOBAL_SECONDARY_INDEXES: Final[Sequence[GlobalSecondaryIndexTypeDef]] = (
    {
        "IndexName": INDEX,
        "KeySchema": [
            {"AttributeName": DAY, "KeyType": "HASH"},
            {"AttributeName": AT, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
)
# Bounds on the free-text fields: a record holds a day's entries within DynamoDB's 400 KB.
_TEXT_CHARS: Final = 300
_BATCH_GET_KEYS: Final = 100  # BatchGetItem's limit


class Kind(StrEnum):
    TRIGGER = "trigger"  # what a delivery did: triggered, or failed (and why)
    OUTCOME = "outcome"  # how a followed rebalance ended: completed, failed, unknown


@dataclass(frozen=True)
class HistoryEntry:
    """One trigger or one final outcome of a portfolio."""

    at: float  # epoch seconds
    portfolio_id: str
    kind: Kind
    source: str  # the input's SourceKind (`follow-up` for an outcome)
    outcome: str  # OutcomeKind for a trigger, FinalOutcome for an outcome
    reason: str | None = None
    rebalance_id: str | None = None  # Glider's rebalance (v1) or operation (v2) id
    detail: str | None = None
    delivery_key: str | None = None  # the delivery (domain/trigger_input.py's keys)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": iso_time(self.at),
            "portfolioId": self.portfolio_id,
            "kind": self.kind.value,
            "source": self.source,
            "outcome": self.outcome,
            "reason": self.reason,
            "rebalanceId": self.rebalance_id,
            "detail": self.detail,
            "deliveryKey": self.delivery_key,
        }


def of_trigger(outcome: Outcome, at: float) -> HistoryEntry:
    request = outcome.request
    reason: str | None
    detail: str | None
    if isinstance(outcome, Failed):
        reason, rebalance_id, detail = outcome.error.reason, None, _error_detail(outcome.error)
    else:
        reason, rebalance_id = outcome.receipt.reason, outcome.receipt.rebalance_id
        detail = _triggered_detail(outcome)
    return HistoryEntry(
        at=at,
        portfolio_id=request.portfolio_id,
        kind=Kind.TRIGGER,
        source=request.source.origin.value,
        outcome=kind_of(outcome).value,
        reason=reason,
        rebalance_id=rebalance_id,
        detail=detail,
        delivery_key=request.source.dedupe_key,
    )


def of_outcome(report: OutcomeReport, at: float) -> HistoryEntry:
    follow_up, state = report.follow_up, report.state
    facts = []
    if state is not None and state.status:
        facts.append(f"status {state.status}")
    duration = report.duration_seconds
    if duration is not None:
        facts.append(f"took {duration:.0f} s")
    return HistoryEntry(
        at=report.decided_at or at,
        portfolio_id=follow_up.portfolio_id,
        kind=Kind.OUTCOME,
        source=SourceKind.FOLLOW_UP.value,
        outcome=report.outcome.value,
        reason=report.reason,
        rebalance_id=follow_up.rebalance_id or None,
        detail=", ".join(facts) or None,
        delivery_key=follow_up.delivery_key,
    )


def _error_detail(error: TriggerError) -> str:
    return str(error)


def _triggered_detail(outcome: Triggered) -> str | None:
    receipt, facts = outcome.receipt, []
    if receipt.unread is not None:
        facts.append(f"Glider's answer was cut off ({receipt.unread})")
    if receipt.reconciled:
        facts.append("found among the portfolio's recent rebalances: not sent again")
    if receipt.joined:
        facts.append("joined the rebalance already in flight")
    if outcome.maybe_delivered_attempts:
        facts.append(f"{outcome.maybe_delivered_attempts} earlier attempt(s) may have triggered")
    if outcome.attempts > 1:
        facts.append(f"{outcome.attempts} attempts")
    return "; ".join(facts) or None


# --- the record ------------------------------------------------------------------------------


def day_of(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def record_id(portfolio_id: str, day: str) -> str:
    """A portfolio's record of one day: apart from the guard's ids, which start with its own
    prefix (outbound/guard.py KEY_PREFIX)."""
    return f"{KEY_PREFIX}#{portfolio_id}#{day}"


def _entry_value(entry: HistoryEntry) -> AttributeValueTypeDef:
    fields: dict[str, AttributeValueTypeDef] = {
        "at": {"S": iso_time(entry.at)},
        "kind": {"S": entry.kind.value},
        "source": {"S": entry.source},
        "outcome": {"S": entry.outcome},
    }
    optional = {
        "reason": entry.reason,
        "rebalanceId": entry.rebalance_id,
        "detail": entry.detail,
        "deliveryKey": entry.delivery_key,
    }
    for name, value in optional.items():
        if value:
            fields[name] = {"S": value[:_TEXT_CHARS]}
    return {"M": fields}


def write(client: DynamoDBClient, table: str, entry: HistoryEntry, *, keep_seconds: int) -> None:
    """One UpdateItem: the entry appended to its portfolio's record of the day, which then
    expires when the guard forgets this entry's delivery (`keep_seconds` after it)."""
    client.update_item(
        TableName=table,
        Key={"id": {"S": record_id(entry.portfolio_id, day_of(entry.at))}},
        UpdateExpression=(
            "SET #entries = list_append(if_not_exists(#entries, :none), :entry), "
            "#day = :day, #at = :at, #portfolio = :portfolio, #expiry = :expiry"
        ),
        ExpressionAttributeNames={
            "#entries": ENTRIES,
            "#day": DAY,
            "#at": AT,
            "#portfolio": PORTFOLIO,
            "#expiry": TTL_ATTRIBUTE,
        },
        ExpressionAttributeValues={
            ":none": {"L": []},
            ":entry": {"L": [_entry_value(entry)]},
            ":day": {"S": day_of(entry.at)},
            ":at": {"S": iso_time(entry.at)},
            ":portfolio": {"S": entry.portfolio_id},
            ":expiry": {"N": str(int(entry.at) + keep_seconds)},
        },
    )


class DynamoDBHistory:
    """The domain's History port on the guard's table."""

    def __init__(
        self,
        table: str,
        *,
        client: Callable[[], DynamoDBClient],
        keep_seconds: int,
        on_not_written: Callable[[HistoryEntry, str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._client = client
        self._keep = keep_seconds
        self._on_not_written = on_not_written
        self._clock = clock

    def trigger(self, outcome: Outcome) -> None:
        self._write(of_trigger(outcome, self._clock()))

    def outcome(self, report: OutcomeReport) -> None:
        self._write(of_outcome(report, self._clock()))

    def _write(self, entry: HistoryEntry) -> None:
        try:
            write(self._client(), self._table, entry, keep_seconds=self._keep)
        except Exception as exc:  # noqa: BLE001 - reported; see below
            # Never raised: the trigger or the outcome it records has happened and is recorded
            # where it counts (the guard, the log line, the event); failing now would only
            # make SQS deliver it again. Logged and counted, and the history misses one line.
            self._on_not_written(entry, f"{type(exc).__name__}: {exc}")


# --- reading ---------------------------------------------------------------------------------


def of_portfolio(
    client: DynamoDBClient, table: str, portfolio_id: str, since: float, *, now: float | None = None
) -> list[HistoryEntry]:
    """The portfolio's entries at or after `since` (epoch seconds), oldest first: its records
    of each day since then, read by key."""
    now = time.time() if now is None else now
    ids = [record_id(portfolio_id, day) for day in _days(since, now)]
    entries: list[HistoryEntry] = []
    for start in range(0, len(ids), _BATCH_GET_KEYS):
        for item in _batch_get(client, table, ids[start : start + _BATCH_GET_KEYS]):
            entries.extend(entries_of(item))
    return sorted((e for e in entries if e.at >= since), key=lambda e: e.at)


def recent(
    client: DynamoDBClient, table: str, limit: int, since: float, *, now: float | None = None
) -> list[HistoryEntry]:
    """The `limit` latest entries at or after `since`, across portfolios, newest first."""
    now = time.time() if now is None else now
    items: list[Mapping[str, Any]] = []
    for day in reversed(_days(since, now)):
        items.extend(_query_day(client, table, day, limit - len(items)))
        if len(items) >= limit:
            break
    entries = [e for item in items for e in entries_of(item) if e.at >= since]
    return sorted(entries, key=lambda e: e.at, reverse=True)[:limit]


def _days(since: float, now: float) -> list[str]:
    """The UTC days from `since`'s to `now`'s, oldest first."""
    first = datetime.fromtimestamp(since, UTC).date()
    last = datetime.fromtimestamp(now, UTC).date()
    return [(first + timedelta(days=n)).isoformat() for n in range(max(0, (last - first).days) + 1)]


def _query_day(
    client: DynamoDBClient, table: str, day: str, limit: int
) -> Iterator[Mapping[str, Any]]:
    """The day's records, the one updated last first, at most `limit`."""
    request: QueryInputTypeDef = {
        "TableName": table,
        "IndexName": INDEX,
        "KeyConditionExpression": "#day = :day",
        "ExpressionAttributeNames": {"#day": DAY},
        "ExpressionAttributeValues": {":day": {"S": day}},
        "ScanIndexForward": False,
    }
    left = limit
    while left > 0:
        request["Limit"] = left
        page = client.query(**request)
        items = page.get("Items", [])
        yield from items
        left -= len(items)
        start = page.get("LastEvaluatedKey")
        if not start:
            return
        request["ExclusiveStartKey"] = start


def _batch_get(client: DynamoDBClient, table: str, ids: Sequence[str]) -> list[Mapping[str, Any]]:
    keys: list[dict[str, AttributeValueTypeDef]] = [{"id": {"S": one}} for one in ids]
    found: list[Mapping[str, Any]] = []
    for _ in range(5):  # what DynamoDB leaves unprocessed (throttled), asked again
        answer = client.batch_get_item(RequestItems={table: {"Keys": keys}})
        found.extend(answer.get("Responses", {}).get(table, []))
        left = answer.get("UnprocessedKeys", {}).get(table)
        keys = list(left["Keys"]) if left else []
        if not keys:
            return found
        time.sleep(0.2)
    raise HistoryUnreadableError(f"{len(keys)} of the portfolio's day records left unread")


class HistoryUnreadableError(Exception):
    """DynamoDB kept leaving records unprocessed."""


def entries_of(item: Mapping[str, Any]) -> list[HistoryEntry]:
    """The entries of one record; entries it cannot read are left out."""
    portfolio = _text(item.get(PORTFOLIO))
    if portfolio is None:
        return []
    entries = []
    for value in item.get(ENTRIES, {}).get("L", []):
        fields = value.get("M", {}) if isinstance(value, Mapping) else {}
        at = epoch_of(_text(fields.get("at")))
        kind = _text(fields.get("kind"))
        if at is None or kind not in {k.value for k in Kind}:
            continue
        entries.append(
            HistoryEntry(
                at=at,
                portfolio_id=portfolio,
                kind=Kind(kind),
                source=_text(fields.get("source")) or "",
                outcome=_text(fields.get("outcome")) or "",
                reason=_text(fields.get("reason")),
                rebalance_id=_text(fields.get("rebalanceId")),
                detail=_text(fields.get("detail")),
                delivery_key=_text(fields.get("deliveryKey")),
            )
        )
    return entries


def _text(value: object) -> str | None:
    text = value.get("S") if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else None
