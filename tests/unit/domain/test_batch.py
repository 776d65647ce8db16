"""A queue's batch: prepared at once, each message settled on its own."""

from __future__ import annotations

from collections.abc import Sequence

from glider_trigger.domain.batch import SETTLED, BatchWork, Settlement
from glider_trigger.domain.errors import (
    DeadLetterWriteError,
    InvalidInputError,
    OnceInProgressError,
)
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import Message
from tests.fakes.api import FakeDeadline, retry_policy


class Work(BatchWork[str, Message]):
    """Prepares every message at once; settles each by its id."""

    def __init__(self) -> None:
        self.prepared: list[list[str]] = []

    def prepare(
        self, messages: Sequence[tuple[Message, str | InvalidInputError]], invocation: Invocation
    ) -> list[Message]:
        self.prepared.append([message.message_id for message, _ in messages])
        return [message for message, _ in messages]

    def settle(self, record: Message, invocation: Invocation) -> Settlement:
        if record.message_id == "dlq-refused":
            raise DeadLetterWriteError("the DLQ refused", unsent=1)
        if record.message_id == "bug":
            raise KeyError("a bug")
        if record.message_id == "busy":
            raise OnceInProgressError("its letter is being written by another invocation")
        return SETTLED


def test_a_message_whose_settlement_cannot_be_carried_out_is_delivered_again_alone() -> None:
    work, bugs = Work(), list[str]()
    ids = ("ok-1", "dlq-refused", "bug", "busy", "ok-2")
    messages = [(Message(i, "{}"), "body") for i in ids]
    invocation = Invocation(FakeDeadline(60), retry_policy())

    settlements = work.deliver(messages, invocation, on_bug=bugs.append)

    assert work.prepared == [list(ids)]  # one batch, at once
    assert [s.redeliver for s in settlements] == [False, True, True, True, False]
    # A queue that refused is logged where it happened, and work another invocation is doing
    # right now comes back later: neither is a bug.
    assert bugs == ["bug"]
