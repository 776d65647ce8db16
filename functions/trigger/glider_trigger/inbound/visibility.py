"""Postpones an SQS message's next delivery, to honour a Retry-After longer than an invocation
can wait: the message's visibility timeout becomes the Retry-After.

SQS counts its 12-hour visibility limit from the receive, and refuses a ChangeMessageVisibility
that would end later; the time since the receive (the invocation's age, plus a slack for the
event source's poll before the invocation) is taken off."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.inbound.queues import QueueId

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_VISIBILITY_SECONDS = 43_200  # SQS's limit: 12 hours from the receive
# Between the event source's receive and the invocation's start: the batching window (0 in the
# template) and the poller's own latency, with room to spare.
RECEIVE_SLACK_SECONDS = 30


class PostponeError(Exception):
    """SQS refused to change the message's visibility (its default timeout still applies)."""


class WorkQueueVisibility:
    def __init__(self, *, client: Callable[[], SQSClient]) -> None:
        self._client = client  # built on the first postponement
        self._urls: dict[str, str] = {}

    def postpone(
        self, queue_arn: str, receipt_handle: str, seconds: float, *, received_seconds_ago: float
    ) -> int:
        """Make the message visible again in `seconds` (rounded up), or as late as SQS allows
        for a message received `received_seconds_ago`; returns what was set. Raises
        PostponeError when SQS refuses."""
        allowed = MAX_VISIBILITY_SECONDS - RECEIVE_SLACK_SECONDS - max(0.0, received_seconds_ago)
        timeout = max(0, math.ceil(min(seconds, allowed)))
        try:
            self._client().change_message_visibility(
                QueueUrl=self._queue_url(queue_arn),
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=timeout,
            )
        except (ClientError, BotoCoreError) as exc:
            raise PostponeError(f"{type(exc).__name__}: {exc}") from exc
        return timeout

    def _queue_url(self, queue_arn: str) -> str:
        # GetQueueUrl keeps endpoints out of our code.
        if queue_arn not in self._urls:
            queue = QueueId.of_arn(queue_arn)
            if queue is None:
                raise PostponeError(f"not an SQS queue ARN: {queue_arn!r}")
            self._urls[queue_arn] = self._client().get_queue_url(
                QueueName=queue.name, QueueOwnerAWSAccountId=queue.account
            )["QueueUrl"]
        return self._urls[queue_arn]
