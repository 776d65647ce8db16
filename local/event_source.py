"""What Lambda's SQS event source mapping does, on a moto queue: receive a batch, invoke the
handler with Lambda's SQS event, delete what succeeded, and leave the reported failures (or the
whole batch, if the handler raised) alone: they come back when their visibility timeout ends
(the queue's, or one the function set), and the queue's redrive policy has the last word."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from local.stack import Queue


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """Lambda's SQS event for received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


@dataclass
class PollResult:
    event: dict[str, Any]
    response: Mapping[str, Any] | None
    deleted: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    error: BaseException | None = None


class SqsEventSource:
    def __init__(
        self, sqs: SQSClient, queue: Queue, *, region: str = "us-east-1", batch_size: int = 10
    ) -> None:
        self._sqs = sqs
        self._queue = queue
        self._region = region
        self._batch_size = batch_size

    def poll(
        self, invoke: Callable[[dict[str, Any]], Mapping[str, Any]], *, wait_seconds: int = 0
    ) -> PollResult | None:
        """One batch; None when nothing became visible within `wait_seconds`."""
        messages: list[dict[str, Any]] = [
            dict(m)
            for m in self._sqs.receive_message(
                QueueUrl=self._queue.url,
                MaxNumberOfMessages=self._batch_size,
                AttributeNames=["All"],
                WaitTimeSeconds=wait_seconds,
            ).get("Messages", [])
        ]
        if not messages:
            return None
        result = PollResult(sqs_event(messages, self._queue.arn, self._region), None)
        try:
            result.response = invoke(result.event)
        except Exception as exc:  # the whole batch goes back, as Lambda does
            result.error = exc
            failed = {m["MessageId"] for m in messages}
        else:
            failed = {f["itemIdentifier"] for f in result.response.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] in failed:
                result.redelivered.append(message["MessageId"])
            else:
                self._sqs.delete_message(
                    QueueUrl=self._queue.url, ReceiptHandle=message["ReceiptHandle"]
                )
                result.deleted.append(message["MessageId"])
        return result

    def drain(
        self, invoke: Callable[[dict[str, Any]], Mapping[str, Any]], *, idle_seconds: int = 2
    ) -> list[PollResult]:
        """Poll until nothing has become visible for `idle_seconds` (redeliveries included)."""
        results = []
        while (result := self.poll(invoke, wait_seconds=idle_seconds)) is not None:
            results.append(result)
        return results
