"""What an event's invocation returns to its caller (and `make run` shows): the portfolios it
queued, and each id it dead-lettered at once (rejected, or the whole input unreadable)."""

from __future__ import annotations

from typing import Any

from glider_trigger.domain.errors import TriggerError, classify
from glider_trigger.domain.intake import Accepted

DEAD_LETTERED = "dead-lettered"  # the one result an accepted input's summary lists


def summary(accepted: Accepted) -> dict[str, Any]:
    results = [_dead_lettered(r.portfolio_id, r.error) for r in accepted.rejected]
    if accepted.unparsable is not None:
        results.append(_dead_lettered(None, accepted.unparsable))
    return {
        "source": accepted.source.kind.value,
        "deliveryId": accepted.source.delivery_id,
        "deliveryKey": accepted.source.dedupe_key,
        # One work-queue message per portfolio, each triggered from the work queue.
        "queued": accepted.queued,
        "deadLettered": len(results),
        "results": results,
    }


def _dead_lettered(portfolio_id: object, error: TriggerError) -> dict[str, Any]:
    return {
        "portfolioId": portfolio_id if isinstance(portfolio_id, str) else None,
        "outcome": DEAD_LETTERED,
        "failureClass": classify(error).value,
        "reason": error.reason,
        "detail": str(error),
    }
