"""A work-queue message's fate, decided from its portfolio's outcome: a pure function.

- triggered (now or by an earlier receive): settled;
- a permanent failure: dead-lettered, settled;
- a transient or systemic one: delivered again, no sooner than a Retry-After longer than the
  invocation waits; on the message's last receive (MAX_RECEIVE_COUNT) dead-lettered here, with a
  letter that names the delivery, instead of leaving the message to the queue's redrive (whose
  replay, a new message, would trigger again what the delivery had triggered);
- held in progress by another invocation on the last receive: deferred (a delayed message with
  the delivery's key looks again once the holder's window has passed), never dead-lettered (a
  replay would be a second trigger).
The delivery service carries the fate out (domain/delivery.py); this module acts on nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from glider_trigger.domain.batch import SETTLED, Settlement
from glider_trigger.domain.errors import FailureClass
from glider_trigger.domain.models import Failed, Next, Outcome


@dataclass(frozen=True)
class Fate:
    action: Next  # the failure's log line says where it went (unused for a success)
    settlement: Settlement = SETTLED
    dead_letter: bool = False
    defer: bool = False


def decide(
    outcome: Outcome,
    *,
    last_receive: bool,
    waits_for: Callable[[float], bool],
) -> Fate:
    """`waits_for(seconds)`: whether the invocation waits out a Retry-After that long itself."""
    if not isinstance(outcome, Failed):
        return Fate(Next.DEAD_LETTERED)
    remembered = Next.NOTHING_DEAD_LETTERED_BEFORE if outcome.remembered else None
    if outcome.failure_class is FailureClass.PERMANENT:
        return Fate(remembered or Next.DEAD_LETTERED, dead_letter=True)
    if last_receive and outcome.held_elsewhere:
        return Fate(Next.DEFERRED, defer=True)
    if last_receive:
        return Fate(remembered or Next.DEAD_LETTERED_LAST_RECEIVE, dead_letter=True)
    wait = outcome.error.retry_after_seconds
    # A Retry-After the invocation waited out needs nothing more; a longer one becomes the
    # earliest redelivery (the queue's own visibility timeout is longer than the former).
    not_before = wait if wait and not waits_for(wait) else None
    return Fate(remembered or Next.RETRY, Settlement(True, not_before))
