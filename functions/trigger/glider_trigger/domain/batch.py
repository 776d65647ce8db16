"""A queue's batch, as both queues' use cases take it: every message prepared at once (on one
worker pool), then each settled on its own, and one message's failure to carry its settlement
out costs only it a redelivery (the hooks of Powertools' batch processor, kept to what the two
queues need: `prepare` and `settle`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from glider_trigger.domain.errors import InvalidInputError, OnceInProgressError, QueueWriteError
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import Message

_Parsed = TypeVar("_Parsed")
_Prepared = TypeVar("_Prepared")


@dataclass(frozen=True)
class Settlement:
    """A message's fate in its queue: settled (it leaves the queue), or delivered again, no
    sooner than `not_before_seconds` when the API asked for longer than an invocation waits."""

    redeliver: bool = False
    not_before_seconds: float | None = None


SETTLED: Final = Settlement()
AGAIN: Final = Settlement(redeliver=True)  # what could not be carried out is delivered again


class BatchWork(ABC, Generic[_Parsed, _Prepared]):
    def deliver(
        self,
        messages: Sequence[tuple[Message, _Parsed | InvalidInputError]],
        invocation: Invocation,
        *,
        on_bug: Callable[[str], None],
    ) -> list[Settlement]:
        """Each message's settlement, in order. A queue that cannot be written (logged where it
        happened) or a bug (`on_bug(message id)`, called while it is handled) costs that message
        a redelivery, never the batch its progress."""
        settlements = []
        for message, record in zip(
            (m for m, _ in messages), self.prepare(messages, invocation), strict=True
        ):
            try:
                settlements.append(self.settle(record, invocation))
            except (QueueWriteError, OnceInProgressError):
                # Logged where it happened, or another invocation is doing it right now.
                settlements.append(AGAIN)
            except Exception:  # noqa: BLE001 - reported, and the message delivered again
                on_bug(message.message_id)
                settlements.append(AGAIN)
        return settlements

    @abstractmethod
    def prepare(
        self,
        messages: Sequence[tuple[Message, _Parsed | InvalidInputError]],
        invocation: Invocation,
    ) -> list[_Prepared]:
        """The batch's work done at once; one prepared record per message, in order."""

    @abstractmethod
    def settle(self, record: _Prepared, invocation: Invocation) -> Settlement:
        """One message's settlement carried out; raises QueueWriteError when a queue refused."""
