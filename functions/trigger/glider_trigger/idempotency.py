"""Nothing doubled: a delivery that has triggered a portfolio does not trigger it again.

Powertools Idempotency on DynamoDB, keyed per portfolio per delivery (see events.py for the
delivery key). Only a trigger that succeeded is remembered: a failed one deletes its record, so
the redelivery or replay of a failure is attempted again. The Lambda context is registered per
invocation, so a record left "in progress" by an interrupted invocation expires with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    BaseError,
    IdempotencyAlreadyInProgressError,
)

from glider_trigger.errors import (
    DuplicateInProgressError,
    IdempotencyUnavailableError,
    classify,
)
from glider_trigger.lazy import Lazy
from glider_trigger.models import Failed, Outcome, Receipt, Triggered, TriggerRequest

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient


KEY_PREFIX = "glider-rebalance-trigger"


class TriggerGuard(Protocol):
    def register(self, context: LambdaContext) -> None: ...

    def run(self, key: str, request: TriggerRequest, trigger: Callable[[], Outcome]) -> Outcome:
        """Run `trigger` unless `key` was triggered before; then return that earlier result."""
        ...


class NoGuard:
    """Without IDEMPOTENCY_TABLE_NAME: every delivery triggers."""

    def register(self, context: LambdaContext) -> None:
        pass

    def run(self, key: str, request: TriggerRequest, trigger: Callable[[], Outcome]) -> Outcome:
        return trigger()


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
    if isinstance(outcome, Failed):
        raise _NotRemembered(outcome)
    return _stored(outcome)


class IdempotencyGuard:
    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient,
        expires_after_seconds: int,
        on_unrecorded: Callable[[str, str], None] = lambda portfolio_id, error: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="key", expires_after_seconds=expires_after_seconds
        )
        # Powertools touches the client when constructed: build it with the first trigger.
        self._store = Lazy(
            lambda: DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        )
        self._guarded = Lazy(
            lambda: idempotent_function(
                data_keyword_argument="delivery",
                persistence_store=self._store.get(),
                config=self._config,
                # Fixed, so that renaming the function (Lambda's or ours) in a deployment does
                # not change every key while redeliveries of the old ones are still arriving.
                key_prefix=KEY_PREFIX,
            )(_trigger_once)
        )
        self._on_unrecorded = on_unrecorded
        self._sleep = sleep

    def register(self, context: LambdaContext) -> None:
        self._config.register_lambda_context(context)

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
            if isinstance(slot.outcome, Triggered):
                # Triggered, but recording it failed: try again, or a redelivery after this
                # invocation's deadline (when its in-progress record lapses) triggers again.
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
        return Triggered(request, _receipt(stored), attempts=0, already_triggered=True)

    def _record_success(
        self, key: str, request: TriggerRequest, outcome: Triggered, error: BaseError
    ) -> None:
        last: Exception = error
        for delay in (0.1, 0.5):
            self._sleep(delay)
            try:
                self._store.get().save_success(data={"key": key}, result=_stored(outcome))
            except Exception as exc:  # noqa: BLE001 - any store failure: try again, then report
                last = exc
            else:
                return
        self._on_unrecorded(request.portfolio_id, f"{type(last).__name__}: {last}")


def _stored(outcome: Triggered) -> dict[str, Any]:
    receipt = outcome.receipt
    return {
        "rebalanceId": receipt.rebalance_id,
        "scheduleId": receipt.schedule_id,
        "requestId": receipt.request_id,
        "correlationId": receipt.correlation_id,
        "status": receipt.status,
    }


def _receipt(stored: object) -> Receipt:
    data = stored if isinstance(stored, dict) else {}
    return Receipt(
        rebalance_id=data.get("rebalanceId"),
        schedule_id=data.get("scheduleId"),
        request_id=data.get("requestId"),
        correlation_id=data.get("correlationId"),
        status=data.get("status"),
    )


def _failed(
    request: TriggerRequest, error: DuplicateInProgressError | IdempotencyUnavailableError
) -> Failed:
    return Failed(request, error, classify(error), attempts=0)
