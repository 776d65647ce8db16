"""Which of the function's queues an SQS record came from: each queue takes one kind of body.

A record names its queue by ARN (`eventSourceARN`, arn:<partition>:sqs:<region>:<account>:<name>),
the settings name the follow-up queue by URL (https://sqs.<region>.amazonaws.com/<account>/<name>,
or an endpoint's own host with the same path): both are read here into the queue's account and
name, the one comparison that tells the follow-up queue from any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class QueueRole(StrEnum):
    """What a queue's records may hold."""

    WORK = "work"  # the work queue, or any queue but the follow-up queue: trigger inputs only
    FOLLOW_UP = "follow-up"  # the follow-up queue: the function's own follow-ups only


@dataclass(frozen=True)
class QueueId:
    """A queue as both its URL and its ARN name it: its account and its name."""

    account: str
    name: str

    @classmethod
    def of_arn(cls, arn: str) -> QueueId | None:
        """arn:<partition>:sqs:<region>:<account>:<name>; None for anything else."""
        parts = arn.split(":")
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not all(parts[4:]):
            return None
        return cls(parts[4], parts[5])

    @classmethod
    def of_url(cls, url: str) -> QueueId | None:
        """A queue URL's last two path segments (…/<account>/<name>); None without them."""
        segments = [part for part in urlsplit(url).path.split("/") if part]
        return cls(segments[-2], segments[-1]) if len(segments) >= 2 else None


class QueueRoles:
    """The role of each record's queue, from the follow-up queue's URL, read once."""

    def __init__(self, follow_up_queue_url: str | None) -> None:
        self._follow_up = QueueId.of_url(follow_up_queue_url) if follow_up_queue_url else None
        if follow_up_queue_url and self._follow_up is None:
            # Settings validate the URL's path; a queue not recognised would silently make
            # every follow-up malformed.
            raise ValueError(f"not a queue URL (…/<account>/<name>): {follow_up_queue_url!r}")

    def of(self, queue_arn: str) -> QueueRole:
        """FOLLOW_UP for the follow-up queue's records; WORK for every other queue's (and for a
        record whose ARN cannot be read: it is no follow-up queue's record)."""
        if self._follow_up is not None and QueueId.of_arn(queue_arn) == self._follow_up:
            return QueueRole.FOLLOW_UP
        return QueueRole.WORK
