"""The dead-letter queue: a replayable message per failure, and the SQS sink that writes them.

A message's body is itself a valid input of this function ({"portfolioId", "skipScheduleValidation"}
for a failed portfolio; the original input, verbatim, for an input that could not be parsed), so
moving the DLQ back to the work queue replays it. Its message attributes say why it is there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.errors import (
    DeadLetterWriteError,
    FailureClass,
    GliderApiError,
    TriggerError,
    classify,
)
from glider_trigger.models import Failed, InputSource, RejectedId

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

# SQS allows 10 attributes a message; extra facts are folded into "detail" instead.
MAX_ATTRIBUTES: Final = 10
MAX_BATCH_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 256 * 1024
_MAX_DETAIL_CHARS: Final = 1024

AttributeValue = str | int | float


@dataclass(frozen=True)
class DeadLetter:
    body: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    portfolio_id: str | None = None  # for logs only


def for_failure(failed: Failed, *, now: datetime | None = None) -> DeadLetter:
    request = failed.request
    body = {
        "portfolioId": request.portfolio_id,
        "skipScheduleValidation": request.skip_schedule_validation,
    }
    return DeadLetter(
        body=json.dumps(body),
        attributes=_attributes(
            failed.error, failed.failure_class, failed.attempts, request.source, now
        ),
        portfolio_id=request.portfolio_id,
    )


def for_rejected_id(
    rejected: RejectedId, source: InputSource, *, now: datetime | None = None
) -> DeadLetter:
    body = {
        "portfolioId": rejected.portfolio_id,
        "skipScheduleValidation": rejected.skip_schedule_validation,
    }
    return DeadLetter(
        body=json.dumps(body, default=str),
        attributes=_attributes(rejected.error, classify(rejected.error), 0, source, now),
    )


def for_unparsable_input(
    raw_body: str, error: TriggerError, source: InputSource, *, now: datetime | None = None
) -> DeadLetter:
    """The input exactly as received, so nothing about it is lost."""
    return DeadLetter(body=raw_body, attributes=_attributes(error, classify(error), 0, source, now))


def _attributes(
    error: TriggerError,
    failure_class: FailureClass,
    attempts: int,
    source: InputSource,
    now: datetime | None,
) -> dict[str, AttributeValue]:
    api = error if isinstance(error, GliderApiError) else None
    failed_at = now or datetime.now(UTC)
    retry_at = (
        failed_at + timedelta(seconds=api.retry_after_seconds)
        if api and api.retry_after_seconds
        else None
    )
    source_ref = source.delivery_id or source.metadata.get("scheduleArn")
    candidates: list[tuple[str, AttributeValue | None]] = [
        ("failureClass", failure_class.value),
        ("reason", error.reason),
        ("detail", str(error)[:_MAX_DETAIL_CHARS] or error.reason),
        ("attempts", attempts),
        ("source", f"{source.kind.value}:{source_ref}" if source_ref else source.kind.value),
        ("failedAt", failed_at.isoformat(timespec="milliseconds")),
        ("httpStatus", api.status if api else None),
        # When Glider said a retry may succeed: a replay before then is likely to fail again.
        ("retryAt", retry_at.isoformat(timespec="seconds") if retry_at else None),
        ("apiErrorCode", api.code if api else None),
        ("gliderRequestId", api.request_id if api else None),
        ("gliderCorrelationId", api.correlation_id if api else None),
    ]
    present = [(name, value) for name, value in candidates if value not in (None, "")]
    kept: dict[str, AttributeValue] = {
        name: value for name, value in present[:MAX_ATTRIBUTES] if value is not None
    }
    overflow = [f"{name}={value}" for name, value in present[MAX_ATTRIBUTES:]]
    if overflow:
        # The folded facts go last but are never the part cut off.
        suffix = f" ({', '.join(overflow)})"
        kept["detail"] = str(kept["detail"])[: _MAX_DETAIL_CHARS - len(suffix)] + suffix
    return kept


class DeadLetterQueue:
    """Writes dead letters with SendMessageBatch; raises if any cannot be written."""

    def __init__(
        self,
        queue_url: str,
        *,
        client: SQSClient,
        max_send_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._queue_url = queue_url
        self._client = client
        self._max_send_attempts = max_send_attempts
        self._sleep = sleep

    @property
    def queue_url(self) -> str:
        return self._queue_url

    def send(self, letters: Sequence[DeadLetter]) -> None:
        for batch in _batches(letters):
            self._send_batch(batch)

    def _send_batch(self, batch: list[DeadLetter]) -> None:
        pending = {str(index): letter for index, letter in enumerate(batch)}
        problem = ""
        for attempt in range(1, self._max_send_attempts + 1):
            if attempt > 1:
                self._sleep(0.1 * 2**attempt)
            try:
                response = self._client.send_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[_entry(entry_id, letter) for entry_id, letter in pending.items()],
                )
            except (ClientError, BotoCoreError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            failed = response.get("Failed", [])
            pending = {item["Id"]: pending[item["Id"]] for item in failed}
            if not pending:
                return
            problem = "; ".join(
                sorted({f"{item['Code']}: {item.get('Message', '')}" for item in failed})
            )
            if any(item.get("SenderFault") for item in failed):
                break  # the request itself is wrong (too large, bad attribute): retrying won't help
        raise DeadLetterWriteError(
            f"{len(pending)} message(s) could not be written to the DLQ {self._queue_url} "
            f"after {attempt} attempt(s): {problem}"
        )


def _entry(entry_id: str, letter: DeadLetter) -> SendMessageBatchRequestEntryTypeDef:
    return {
        "Id": entry_id,
        "MessageBody": letter.body,
        "MessageAttributes": {
            name: _attribute_value(value) for name, value in letter.attributes.items()
        },
    }


def _attribute_value(value: AttributeValue) -> MessageAttributeValueTypeDef:
    if isinstance(value, int | float):
        return {
            "DataType": "Number",
            "StringValue": f"{value:g}" if isinstance(value, float) else str(value),
        }
    return {"DataType": "String", "StringValue": value}


def _batches(letters: Sequence[DeadLetter]) -> Iterator[list[DeadLetter]]:
    batch: list[DeadLetter] = []
    size = 0
    for letter in letters:
        # SQS counts the body plus each attribute's name, data type and value.
        letter_size = len(letter.body.encode()) + sum(
            len(name) + len("String") + len(str(value).encode())
            for name, value in letter.attributes.items()
        )
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + letter_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(letter)
        size += letter_size
    if batch:
        yield batch
