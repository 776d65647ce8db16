"""Nothing doubled: a delivery that has triggered a portfolio does not trigger it again.

Powertools Idempotency on DynamoDB, keyed per portfolio per delivery (TriggerRequest.guard_key;
domain/trigger_input.py builds delivery keys); the domain's TriggerGuard port. An outcome that
settles the delivery is remembered: a success, or a 2xx answer that was not one (Glider may
have acted on it). Any other failure deletes its record, so the
redelivery or replay of a failure is attempted again. The Lambda context is registered per
invocation, so a record left "in progress" by an interrupted invocation expires with it.

`once` runs an action (the dead letter of a settled failure) at most once per key, so that a
redelivery neither sends the portfolio again nor writes its dead letter twice.

Built on `idempotent_function`, Powertools' public API, used as documented: what the function
returns is stored; an exception deletes the record. So a failure that must not be remembered
leaves the function as an exception (_NotRemembered) carrying its outcome. When the store fails
to record a settled outcome, Powertools raises after the function ran: the outcome is kept
aside (_Slot) so it is not lost, and recording it is retried with the persistence layer's
public `save_success` before the failure is reported (a redelivery after the in-progress
record lapses would otherwise trigger the portfolio again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    BaseError,
    IdempotencyAlreadyInProgressError,
)

from glider_trigger.domain.errors import (
    DuplicateInProgressError,
    IdempotencyUnavailableError,
    OnceInProgressError,
    RememberedFailureError,
    classify,
)
from glider_trigger.domain.models import Failed, Outcome, Receipt, Triggered, TriggerRequest
from glider_trigger.outbound.aws import Lazy

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient


KEY_PREFIX = "glider-rebalance-trigger"
# `once` keys live apart from trigger keys: no delivery key, however crafted, can name one.
ONCE_KEY_PREFIX = f"{KEY_PREFIX}-once"


class NoGuard:
    """Without IDEMPOTENCY_TABLE_NAME: every delivery triggers."""

    def register(self, context: LambdaContext) -> None:
        pass

    def run(self, key: str, request: TriggerRequest, trigger: Callable[[], Outcome]) -> Outcome:
        return trigger()

    def once(self, key: str, action: Callable[[], None]) -> None:
        action()


class _NotRemembered(Exception):
    """Raised inside the guarded call so that Powertools deletes the record of a failure."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("trigger failed; not remembered")
        self.outcome = outcome


@dataclass
class _Slot:
    outcome: Outcome | None = None


def _trigger_once(delivery: dict[str, str], trigger: Callable[[], Outcome], slot: _Slot) -> Any:
    outcome = trigger()
    slot.outcome = outcome
    if not outcome.settles_delivery:
        raise _NotRemembered(outcome)
    return _stored(outcome)


def _run_once(delivery: dict[str, str], action: Callable[[], None]) -> Any:
    action()
    return {"done": True}


class IdempotencyGuard:
    def __init__(
        self,
        table_name: str,
        *,
        client: Callable[[], DynamoDBClient],
        expires_after_seconds: int,
        on_unrecorded: Callable[[str, str], None],
    ) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="key", expires_after_seconds=expires_after_seconds
        )
        # Powertools touches the client when constructed: build it with the first trigger.
        self._store = Lazy(
            lambda: DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client())
        )
        self._guarded = Lazy(lambda: self._idempotent(_trigger_once, KEY_PREFIX))
        self._guarded_action = Lazy(lambda: self._idempotent(_run_once, ONCE_KEY_PREFIX))
        self._on_unrecorded = on_unrecorded

    def _idempotent(self, function: Callable[..., Any], key_prefix: str) -> Callable[..., Any]:
        return idempotent_function(  # type: ignore[no-any-return]
            data_keyword_argument="delivery",
            persistence_store=self._store.get(),
            config=self._config,
            # Fixed, so that renaming the function (Lambda's or ours) in a deployment does
            # not change every key while redeliveries of the old ones are still arriving.
            key_prefix=key_prefix,
        )(function)

    def register(self, context: LambdaContext) -> None:
        """Per invocation: a record left in progress by it expires with its deadline."""
        self._config.register_lambda_context(context)

    def once(self, key: str, action: Callable[[], None]) -> None:
        completed = False

        def tracked() -> None:
            nonlocal completed
            action()
            completed = True

        try:
            self._guarded_action.get()(delivery={"key": key}, action=tracked)
        except IdempotencyAlreadyInProgressError as exc:
            # Another invocation is doing it right now: running it too would do it twice. Not
            # now: the caller's delivery comes back (and finds it done, or does it).
            raise OnceInProgressError(f"{key} is being done by another invocation") from exc
        except BaseError:
            # The store failed around the action: unless the action completed here, run it now
            # (its own failure then propagates to the caller).
            if not completed:
                action()

    def run(self, key: str, request: TriggerRequest, trigger: Callable[[], Outcome]) -> Outcome:
        slot = _Slot()
        try:
            stored = self._guarded.get()(delivery={"key": key}, trigger=trigger, slot=slot)
        except _NotRemembered as failure:
            return failure.outcome
        except IdempotencyAlreadyInProgressError:
            return _failed(
                request,
                DuplicateInProgressError(
                    "another invocation is triggering this delivery right now"
                ),
            )
        except BaseError as exc:
            if slot.outcome is not None and slot.outcome.settles_delivery:
                # Settled, but recording it failed: try again, or a redelivery after this
                # invocation's deadline (when its in-progress record lapses) sends it again.
                self._record_success(key, request, slot.outcome, exc)
                return slot.outcome
            return _failed(
                request,
                IdempotencyUnavailableError(
                    f"idempotency store unavailable: {type(exc).__name__}: {exc}"
                ),
            )
        if slot.outcome is not None:
            return slot.outcome
        return _remembered(request, stored)

    def _record_success(
        self, key: str, request: TriggerRequest, outcome: Outcome, error: BaseError
    ) -> None:
        last: Exception = error
        for delay in (0.1, 0.5):
            time.sleep(delay)
            try:
                self._store.get().save_success(data={"key": key}, result=_stored(outcome))
            except Exception as exc:  # noqa: BLE001 - any store failure: try again, then report
                last = exc
            else:
                return
        self._on_unrecorded(request.portfolio_id, f"{type(last).__name__}: {last}")


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
        "status": receipt.status,
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
        status=data.get("status"),
        unread=data.get("unread"),
        reconciled=data.get("reconciled") is True,
    )
    return Triggered(request, receipt, attempts=0, already_triggered=True)


def _failed(
    request: TriggerRequest, error: DuplicateInProgressError | IdempotencyUnavailableError
) -> Failed:
    # Not attempted: what an earlier attempt may have started stays to look for, on a replay.
    return Failed(request, error, classify(error), attempts=0, uncertain=request.may_have_started)
