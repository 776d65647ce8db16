"""Writes messages to an SQS queue with SendMessageBatch: batches of at most 10 entries and
256 KiB, entries SQS reports as failed retried, and an error if any still cannot be written.
One class for every queue the function writes: the DLQ (DeadLetterWriteError), the work queue
(fan-out and deferrals, FanOutError) and the follow-up queue (FollowUpError); they differ only by
the error they raise. A worker's follow-up is a call of its own: gathering the workers' into
fewer calls made each wait for the write in flight, and cost 7-15% of the invocation's wall time
at 20-40 ms per SQS call (docs/scaling.md).

Attribute values often quote the outside world (an event id, a schedule ARN, Glider's error
message); SQS refuses characters outside XML 1.0's set with InvalidMessageContents, so every
String value is made SQS-safe here (each such character becomes U+FFFD). Bodies are written as
given: the function's own are ASCII JSON, and an input kept verbatim came through SQS already."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import QueueWriteError
from glider_trigger.domain.models import AttributeValue, OutgoingMessage
from glider_trigger.domain.ports import MAX_DELAY_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

MAX_BATCH_ENTRIES: Final = 10
MAX_BATCH_BYTES: Final = 256 * 1024
MAX_SEND_ATTEMPTS: Final = 3  # per batch, on top of the SDK's own retries of a failed call

# What SQS refuses in a String attribute value: the complement of XML 1.0's characters (#x9,
# #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF), spelled as the few it leaves out:
# the negated class of the large allowed ranges takes 10 times longer to compile, at every
# cold start.
_NOT_SQS_SAFE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def sqs_safe(text: str) -> str:
    """`text` with every character SQS refuses in a message replaced by U+FFFD."""
    return _NOT_SQS_SAFE.sub("\ufffd", text)


class QueueWriter:
    def __init__(
        self,
        queue_url: str,
        *,
        client: Callable[[], SQSClient],
        error_type: type[QueueWriteError],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._queue_url = queue_url
        self._client = client  # built on the first write
        self.error_type = error_type
        self._sleep = sleep

    @property
    def queue_url(self) -> str:
        return self._queue_url

    def send(self, messages: Sequence[OutgoingMessage], *, parallelism: int = 1) -> None:
        """Raises `error_type` naming how many messages could not be written."""
        batches = list(_batches(messages))
        if parallelism <= 1 or len(batches) <= 1:
            for batch in batches:
                self._send_batch(batch)
            return
        # Large fan-outs: 100,000 ids are 10,000 calls; one after another they would not fit
        # in an invocation. Every batch is attempted; the first failure is raised after. The
        # pool's module is imported here: most invocations never make one (a cold start less).
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        with ThreadPoolExecutor(max_workers=min(parallelism, len(batches))) as pool:
            failures = [f for f in pool.map(self._try_batch, batches) if f is not None]
        if failures:
            unsent = sum(f.unsent for f in failures)
            raise self.error_type(f"{unsent} message(s) in all: {failures[0]}", unsent=unsent)

    def _try_batch(self, batch: list[OutgoingMessage]) -> QueueWriteError | None:
        try:
            self._send_batch(batch)
        except QueueWriteError as exc:
            return exc
        return None

    def _send_batch(self, batch: list[OutgoingMessage]) -> None:
        pending = {str(index): message for index, message in enumerate(batch)}
        problem = ""
        attempt = 0
        for attempt in range(1, MAX_SEND_ATTEMPTS + 1):
            if attempt > 1:
                self._sleep(0.1 * 2**attempt)
            try:
                response = self._client().send_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[_entry(entry_id, message) for entry_id, message in pending.items()],
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
        raise self.error_type(
            f"{len(pending)} message(s) could not be written to {self._queue_url} "
            f"after {attempt} attempt(s): {problem}",
            unsent=len(pending),
        )


def _entry(entry_id: str, message: OutgoingMessage) -> SendMessageBatchRequestEntryTypeDef:
    entry: SendMessageBatchRequestEntryTypeDef = {
        "Id": entry_id,
        "MessageBody": message.body,
        "MessageAttributes": {
            name: _attribute_value(value) for name, value in message.attributes.items()
        },
    }
    if message.delay_seconds:
        entry["DelaySeconds"] = min(MAX_DELAY_SECONDS, max(0, message.delay_seconds))
    return entry


def _attribute_value(value: AttributeValue) -> MessageAttributeValueTypeDef:
    if isinstance(value, float):
        return {"DataType": "Number", "StringValue": f"{value:g}"}
    if isinstance(value, int):
        return {"DataType": "Number", "StringValue": str(value)}
    return {"DataType": "String", "StringValue": sqs_safe(value)}


def _batches(messages: Sequence[OutgoingMessage]) -> Iterator[list[OutgoingMessage]]:
    batch: list[OutgoingMessage] = []
    size = 0
    for message in messages:
        # SQS counts the body plus each attribute's name, data type and value.
        message_size = len(message.body.encode()) + sum(
            len(name) + len("String") + len(sqs_safe(str(value)).encode())
            for name, value in message.attributes.items()
        )
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + message_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += message_size
    if batch:
        yield batch
