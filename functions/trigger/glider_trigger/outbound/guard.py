"""Nothing doubled: a delivery that has triggered a portfolio does not trigger it again, and
what its earlier attempts may have started is recorded, not guessed.

A ledger on DynamoDB, one record per portfolio per delivery (TriggerRequest.guard_key;
domain/trigger_input.py builds delivery keys); the domain's TriggerGuard port. A record is:
- held (INPROGRESS) by one invocation at a time, until that invocation's deadline (a holder
  that dies leaves it to the next after that deadline);
- before the holder's first request leaves, given the window in which Glider may act on it
  (from now to the holder's deadline): a holder that dies mid-request leaves exactly that to
  look at, and one that never sent leaves nothing;
- settled (COMPLETED) with an outcome that settles the delivery: a success, or a 2xx answer that
  was not one (Glider may have acted on it); never sent again;
- otherwise released (OPEN) with the windows its attempts left unresolved (answers that prove
  nothing, not looked at since): the next holder looks for those rebalances, and only those,
  before it sends. A refusal (a 429, a 4xx, a request that never left) leaves none.
Record ids and the COMPLETED/INPROGRESS fields are Powertools Idempotency's, so that records
written before the ledger are read as they were written.

`once` runs an action (the dead letter of a settled failure, an outcome's log line) at most once
per key, on the same ledger under its own key prefix, so that a redelivery does not write it
twice: held while it runs, settled once it ran, released if it raised (records Powertools
Idempotency wrote for it earlier are read the same way).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import (
    DuplicateInProgressError,
    IdempotencyUnavailableError,
    OnceInProgressError,
    RememberedFailureError,
    classify,
)
from glider_trigger.domain.models import (
    Failed,
    Outcome,
    Receipt,
    Triggered,
    TriggerRequest,
    Window,
    merged,
)
from glider_trigger.domain.ports import Attempts

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


KEY_PREFIX: Final = "glider-rebalance-trigger"
# `once` keys live apart from trigger keys: no delivery key, however crafted, can name one.
ONCE_KEY_PREFIX: Final = f"{KEY_PREFIX}-once"
# Without a Lambda context (never in Lambda): held as long as Lambda's longest timeout.
_DEFAULT_HOLD_SECONDS: Final = 900.0


class Status(StrEnum):
    HELD = "INPROGRESS"  # Powertools' word
    SETTLED = "COMPLETED"  # Powertools' word
    OPEN = "OPEN"  # released with what its attempts may have started


# The record's attributes (the first four as Powertools names them).
_ID, _STATUS, _EXPIRY, _HELD_UNTIL_MS, _DATA = (
    "id",
    "status",
    "expiration",
    "in_progress_expiration",
    "data",
)
_HOLDER, _ATTEMPTS = "holder", "attempts"
# The table's TTL attribute (template.yaml's TimeToLiveSpecification): the history's records
# expire by it too (outbound/history.py).
TTL_ATTRIBUTE: Final = _EXPIRY


def record_id(key: str, *, prefix: str = KEY_PREFIX) -> str:
    """A delivery's record id: Powertools' form (its prefix, then the MD5 of the key as JSON)."""
    digest = hashlib.md5(json.dumps(key).encode(), usedforsecurity=False).hexdigest()
    return f"{prefix}#{digest}"


@dataclass(frozen=True)
class Record:
    """One delivery's record as stored (read by the function and by tools/trigger.py)."""

    status: Status | None
    held_until: float | None = None  # epoch seconds
    settled: dict[str, Any] | None = None  # the stored outcome (_stored)
    attempts: tuple[Window, ...] = ()  # what earlier holders may have started, unresolved

    def held(self, now: float) -> bool:
        return self.status is Status.HELD and (self.held_until or float("inf")) > now


def read(client: DynamoDBClient, table_name: str, key: str) -> Record | None:
    """A delivery's record (a strongly consistent read), or None when there is none."""
    item = client.get_item(
        TableName=table_name, Key={_ID: {"S": record_id(key)}}, ConsistentRead=True
    )
    found = item.get("Item")
    return _record(found) if found else None


class _Taken(Exception):
    """The record is settled, or held by another invocation: `record` says which."""

    def __init__(self, record: Record) -> None:
        super().__init__("the record is taken")
        self.record = record


class _Holding:
    """This invocation's hold of one record (the domain's Attempts port)."""

    def __init__(self, ledger: Ledger, key: str, holder: str, until: float) -> None:
        self._ledger = ledger
        self._key = key
        self._holder = holder
        self._until = until
        self.sending_since: float | None = None

    def sending(self) -> None:
        now = time.time()
        try:
            self._ledger.sending(self._key, self._holder, Window(now, self._until))
        except (ClientError, BotoCoreError) as exc:
            raise IdempotencyUnavailableError(
                f"idempotency store unavailable: {_describe(exc)}: nothing was sent"
            ) from exc
        self.sending_since = now


class Ledger:
    """The records' reads and writes, each one DynamoDB call."""

    def __init__(
        self,
        table_name: str,
        client: Callable[[], DynamoDBClient],
        expires_after_seconds: int,
        *,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self._table = table_name
        self._client = client
        self._expires_after = expires_after_seconds
        self._prefix = prefix

    def claim(self, key: str, holder: str, until: float) -> tuple[Window, ...] | None:
        """Hold the record until `until`; what earlier holders may have started (None: there
        was no record of this delivery). Raises _Taken when it is settled or held, ClientError
        or BotoCoreError when the store fails."""
        now = time.time()
        try:
            answer = self._client().update_item(
                TableName=self._table,
                Key={_ID: {"S": record_id(key, prefix=self._prefix)}},
                UpdateExpression=(
                    f"SET #{_STATUS} = :held, #{_HOLDER} = :holder, #{_HELD_UNTIL_MS} = :until, "
                    f"#{_EXPIRY} = :expiry REMOVE #{_DATA}"
                ),
                ConditionExpression=(
                    f"attribute_not_exists(#{_ID}) OR #{_EXPIRY} < :now OR #{_STATUS} = :open "
                    f"OR (#{_STATUS} = :held AND #{_HELD_UNTIL_MS} < :now_ms)"
                ),
                ExpressionAttributeNames=_names(
                    _ID, _STATUS, _HOLDER, _HELD_UNTIL_MS, _EXPIRY, _DATA
                ),
                ExpressionAttributeValues={
                    ":held": {"S": Status.HELD.value},
                    ":open": {"S": Status.OPEN.value},
                    ":holder": {"S": holder},
                    ":until": {"N": str(int(until * 1000))},
                    ":expiry": {"N": str(int(now) + self._expires_after)},
                    ":now": {"N": str(int(now))},
                    ":now_ms": {"N": str(int(now * 1000))},
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            taken: object = exc.response.get("Item")
            found = _record(taken) if isinstance(taken, Mapping) else Record(Status.HELD)
            raise _Taken(found) from exc
        old = answer.get("Attributes")
        if not old or _number(old.get(_EXPIRY), default=0.0) < now:
            return None  # nothing, or a record past its time: a delivery seen afresh
        # A record past its time keeps its attributes until this holder releases it: windows
        # older than the guard's memory are no delivery's any more.
        oldest = now - self._expires_after
        return tuple(w for w in _record(old).attempts if w.after >= oldest)

    def update(
        self, key: str, holder: str, expression: str, values: dict[str, AttributeValueTypeDef]
    ) -> None:
        """One write of this holder's, refused (ConditionalCheckFailed) if it holds no more."""
        names = [
            name
            for name in (_STATUS, _HOLDER, _HELD_UNTIL_MS, _DATA, _ATTEMPTS, _EXPIRY)
            if f"#{name}" in expression
        ]
        self._client().update_item(
            TableName=self._table,
            Key={_ID: {"S": record_id(key, prefix=self._prefix)}},
            UpdateExpression=expression,
            ConditionExpression=f"#{_HOLDER} = :holder",
            ExpressionAttributeNames=_names(_HOLDER, *names),
            ExpressionAttributeValues={":holder": {"S": holder}, **values},
        )

    def sending(self, key: str, holder: str, window: Window) -> None:
        self.update(
            key,
            holder,
            f"SET #{_ATTEMPTS} = list_append(if_not_exists(#{_ATTEMPTS}, :none), :window)",
            {":none": {"L": []}, ":window": {"L": [_window_value(window)]}},
        )

    def settle(self, key: str, holder: str, stored: Mapping[str, Any]) -> None:
        self.update(
            key,
            holder,
            f"SET #{_STATUS} = :settled, #{_DATA} = :data, #{_EXPIRY} = :expiry "
            f"REMOVE #{_HELD_UNTIL_MS}, #{_ATTEMPTS}",
            {
                ":settled": {"S": Status.SETTLED.value},
                ":data": {"S": json.dumps(stored, sort_keys=True)},
                ":expiry": {"N": str(int(time.time()) + self._expires_after)},
            },
        )

    def release(self, key: str, holder: str, unresolved: Sequence[Window]) -> None:
        self.update(
            key,
            holder,
            f"SET #{_STATUS} = :open, #{_ATTEMPTS} = :attempts REMOVE #{_HELD_UNTIL_MS}",
            {
                ":open": {"S": Status.OPEN.value},
                ":attempts": {"L": [_window_value(window) for window in unresolved]},
            },
        )


class IdempotencyGuard:
    def __init__(
        self,
        table_name: str,
        *,
        client: Callable[[], DynamoDBClient],
        expires_after_seconds: int,
        on_unrecorded: Callable[[str, str, str], None],
    ) -> None:
        self._ledger = Ledger(table_name, client, expires_after_seconds)
        self._once = Ledger(table_name, client, expires_after_seconds, prefix=ONCE_KEY_PREFIX)
        self._on_unrecorded = on_unrecorded
        self._context: LambdaContext | None = None

    def register(self, context: LambdaContext) -> None:
        """Per invocation: a record it holds is held until its deadline, and no longer."""
        self._context = context

    def _deadline(self) -> float:
        context = self._context
        if context is None:
            return time.time() + _DEFAULT_HOLD_SECONDS
        return time.time() + context.get_remaining_time_in_millis() / 1000

    def once(self, key: str, action: Callable[[], None]) -> None:
        holder = uuid.uuid4().hex
        try:
            self._once.claim(key, holder, self._deadline())
        except _Taken as taken:
            if taken.record.status is Status.SETTLED:
                return  # done before
            # Another invocation is doing it right now: running it too would do it twice. Not
            # now: the caller's delivery comes back (and finds it done, or does it).
            raise OnceInProgressError(f"{key} is being done by another invocation") from taken
        except (ClientError, BotoCoreError):
            action()  # the store cannot tell: a duplicate is noise, a missing one is a loss
            return
        try:
            action()
        except Exception:
            with contextlib.suppress(ClientError, BotoCoreError):
                self._once.release(key, holder, ())  # not done: the next delivery does it
            raise
        with contextlib.suppress(ClientError, BotoCoreError):
            # Unrecorded, the next delivery after this deadline does it again: noise, not loss.
            self._once.settle(key, holder, {"done": True})

    def run(
        self,
        key: str,
        request: TriggerRequest,
        trigger: Callable[[TriggerRequest, Attempts], Outcome],
    ) -> Outcome:
        holder, until = uuid.uuid4().hex, self._deadline()
        try:
            earlier = self._ledger.claim(key, holder, until)
        except _Taken as taken:
            if taken.record.status is Status.SETTLED:
                return _remembered(request, taken.record.settled)
            error = DuplicateInProgressError(
                "another invocation is triggering this delivery right now"
            )
            return Failed.not_attempted(request, error)
        except (ClientError, BotoCoreError) as exc:
            unavailable = IdempotencyUnavailableError(
                f"idempotency store unavailable: {_describe(exc)}"
            )
            return Failed.not_attempted(request, unavailable)
        # The record is exact, and holds at least what any letter of this delivery carries (one
        # window around them all): the letter's is used only where there is no record.
        windows = request.may_have_started if earlier is None else earlier
        held = replace(request, may_have_started=merged(windows))
        holding = _Holding(self._ledger, key, holder, until)
        try:
            outcome = trigger(held, holding)
        except Exception:
            # A bug: what was sent, if anything, stays to look for (the whole window).
            sent = holding.sending_since
            left = (*held.may_have_started, *([Window(sent, time.time())] if sent else []))
            self._write(request, "released", lambda: self._ledger.release(key, holder, left))
            raise
        if outcome.settles_delivery:
            stored = _stored(outcome)
            self._write(request, "settled", lambda: self._ledger.settle(key, holder, stored))
        else:
            unresolved = outcome.uncertain if isinstance(outcome, Failed) else ()
            self._write(request, "released", lambda: self._ledger.release(key, holder, unresolved))
        return outcome

    def _write(self, request: TriggerRequest, what: str, write: Callable[[], None]) -> None:
        """The holder's last write, tried three times. If it never lands, the record keeps the
        window recorded before sending, which the next holder looks at after this deadline."""
        last: Exception | None = None
        for delay in (0.0, 0.1, 0.5):
            time.sleep(delay)
            try:
                write()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    last = exc  # held past its deadline and taken over: nothing more to write
                    break
                last = exc
            except BotoCoreError as exc:
                last = exc
            else:
                return
        assert last is not None  # noqa: S101  # nosec B101 - the loop ran and failed
        self._on_unrecorded(request.portfolio_id, what, _describe(last))


def _stored(outcome: Outcome) -> dict[str, Any]:
    """What a record keeps of a settled outcome (a success has no "outcome" field, as before)."""
    if isinstance(outcome, Failed):
        return {"outcome": "failed", "reason": outcome.error.reason, "detail": str(outcome.error)}
    receipt = outcome.receipt
    return {
        "rebalanceId": receipt.rebalance_id,
        "scheduleId": receipt.schedule_id,
        "requestId": receipt.request_id,
        "correlationId": receipt.correlation_id,
        "unread": receipt.unread,
        "reconciled": receipt.reconciled,
    }


def _remembered(request: TriggerRequest, stored: object) -> Outcome:
    data = stored if isinstance(stored, dict) else {}
    if data.get("outcome") == "failed":
        error = RememberedFailureError(
            str(data.get("detail") or "settled by an earlier delivery"),
            reason=str(data.get("reason") or "UNEXPECTED_RESPONSE"),
        )
        return Failed(request, error, classify(error), attempts=0, remembered=True)
    receipt = Receipt(
        rebalance_id=data.get("rebalanceId"),
        schedule_id=data.get("scheduleId"),
        request_id=data.get("requestId"),
        correlation_id=data.get("correlationId"),
        unread=data.get("unread"),
        reconciled=data.get("reconciled") is True,
    )
    return Triggered(request, receipt, attempts=0, already_triggered=True)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _names(*attributes: str) -> dict[str, str]:
    return {f"#{name}": name for name in attributes}


def _window_value(window: Window) -> AttributeValueTypeDef:
    value: dict[str, AttributeValueTypeDef] = {"after": {"N": f"{window.after:.3f}"}}
    if window.before is not None:
        value["before"] = {"N": f"{window.before:.3f}"}
    return {"M": value}


def _number(value: Mapping[str, Any] | None, *, default: float | None = None) -> float:
    raw = value.get("N") if isinstance(value, Mapping) else None
    try:
        return float(Decimal(str(raw))) if raw is not None else float(default or 0.0)
    except ArithmeticError:
        return float(default or 0.0)


def _record(item: Mapping[str, Any]) -> Record:
    status_value = item.get(_STATUS, {}).get("S")
    status = Status(status_value) if status_value in {s.value for s in Status} else None
    held_ms = item.get(_HELD_UNTIL_MS)
    data = item.get(_DATA, {}).get("S")
    settled: dict[str, Any] | None = None
    if status is Status.SETTLED:
        try:
            parsed = json.loads(data) if isinstance(data, str) else {}
        except ValueError:
            parsed = {}
        settled = parsed if isinstance(parsed, dict) else {}
    attempts = []
    for entry in item.get(_ATTEMPTS, {}).get("L", []):
        fields = entry.get("M", {}) if isinstance(entry, Mapping) else {}
        if "after" in fields:
            before = _number(fields["before"]) if "before" in fields else None
            attempts.append(Window(_number(fields["after"]), before))
    return Record(
        status,
        held_until=_number(held_ms) / 1000 if held_ms else None,
        settled=settled,
        attempts=tuple(attempts),
    )
