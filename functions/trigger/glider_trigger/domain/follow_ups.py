"""The follow-up queue's messages: each a look at one triggered rebalance, settled on its own.

A follow-up (domain/follow.py) is taken only from the follow-up queue, never mixed with
triggers: its batch is its own. Its look ends the rebalance (an outcome reported) or sends the
next follow-up; a look that could not be done (no time left, another look at the same
rebalance writing right now) is delivered again; what it raised (the outcome or the next
follow-up not written) is raised to the batch, which delivers it again too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from glider_trigger.domain.batch import AGAIN, SETTLED, BatchWork, Settlement
from glider_trigger.domain.errors import InvalidInputError, OnceInProgressError
from glider_trigger.domain.follow import OutcomeFollower
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.letterbox import LetterBox
from glider_trigger.domain.models import FollowUp, InputSource, Message, SourceKind
from glider_trigger.domain.pool import on_pool


@dataclass
class PreparedFollowUp:
    message: Message
    follow_up: FollowUp | InvalidInputError
    # The look at its rebalance: done, not done (no time left), or what it raised.
    followed: bool | Exception = False


class FollowUpDelivery(BatchWork[FollowUp, PreparedFollowUp]):
    def __init__(
        self,
        follower: OutcomeFollower | None,
        letterbox: LetterBox,
        *,
        max_concurrency: int,
    ) -> None:
        self._follower = follower
        self._letterbox = letterbox
        self._workers = max_concurrency

    def prepare(
        self,
        messages: Sequence[tuple[Message, FollowUp | InvalidInputError]],
        invocation: Invocation,
    ) -> list[PreparedFollowUp]:
        """Look at every follow-up's rebalance at once, on the worker pool."""
        records = [PreparedFollowUp(message, follow_up) for message, follow_up in messages]
        follower = self._follower
        if follower is not None:  # None: FOLLOW_OUTCOMES was switched off since they were sent
            look = partial(_look, follower, invocation=invocation)
            on_pool(look, records, workers=self._workers)
        return records

    def settle(self, record: PreparedFollowUp, invocation: Invocation) -> Settlement:
        del invocation  # every look was done in prepare
        if isinstance(record.follow_up, InvalidInputError):
            source = InputSource(SourceKind.SQS, delivery_id=record.message.message_id)
            self._letterbox.unparsable(record.message.body, record.follow_up, source)
            return SETTLED
        if self._follower is None:
            return SETTLED
        if isinstance(record.followed, OnceInProgressError):
            # Another follow-up of the same rebalance (two deliveries that got one rebalance,
            # or a redelivery) is writing its outcome right now: looked at again later, when
            # it is done or, if its holder died, is done by this one.
            return AGAIN
        if isinstance(record.followed, Exception):
            raise record.followed  # the outcome or the next follow-up was not written
        if not record.followed:
            return AGAIN  # no time was left to look at the rebalance
        return SETTLED


def _look(follower: OutcomeFollower, record: PreparedFollowUp, *, invocation: Invocation) -> None:
    """One follow-up's look, on a worker; what it raised is settled on the invocation's thread."""
    if isinstance(record.follow_up, InvalidInputError):
        return
    try:
        record.followed = follower.follow(record.follow_up, invocation)
    except Exception as exc:  # noqa: BLE001 - the message is then delivered again
        record.followed = exc
