"""What a non-SQS invocation returns to its caller (and `make run` shows): the delivery's
report as a summary, one result per portfolio."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from glider_trigger.domain.delivery import Report
from glider_trigger.domain.errors import FailureClass, TriggerError, classify
from glider_trigger.domain.models import Outcome, Triggered


class Result(StrEnum):
    """A portfolio's result in the summary."""

    TRIGGERED = "triggered"
    ALREADY_TRIGGERED = "already-triggered"
    DEAD_LETTERED = "dead-lettered"
    ALREADY_DEAD_LETTERED = "already-dead-lettered"
    IN_PROGRESS_ELSEWHERE = "in-progress-elsewhere"


DEFERRED = "deferred"  # the action of a portfolio in progress elsewhere


def summary(report: Report) -> dict[str, Any]:
    results = [_failure_result(r.portfolio_id, r.error, classify(r.error)) for r in report.rejected]
    if report.unparsable is not None:
        error = report.unparsable
        results.append(_failure_result(None, error, classify(error)))
    results.extend(_outcome_result(outcome) for outcome in report.outcomes)

    def count(*kinds: Result) -> int:
        return sum(1 for result in results if result["outcome"] in kinds)

    return {
        "source": report.source.kind.value,
        "deliveryId": report.source.delivery_id,
        "portfolios": len(results) + report.fanned_out,
        "fannedOut": report.fanned_out,
        "triggered": count(Result.TRIGGERED, Result.ALREADY_TRIGGERED),
        "deadLettered": count(Result.DEAD_LETTERED, Result.ALREADY_DEAD_LETTERED),
        "inProgressElsewhere": count(Result.IN_PROGRESS_ELSEWHERE),
        "results": results,
    }


def _outcome_result(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Triggered):
        triggered: dict[str, Any] = {
            "portfolioId": outcome.request.portfolio_id,
            "outcome": Result.ALREADY_TRIGGERED if outcome.already_triggered else Result.TRIGGERED,
            "rebalanceId": outcome.receipt.rebalance_id,
            "attempts": outcome.attempts,
        }
        if outcome.receipt.reason is not None:
            triggered["reason"] = outcome.receipt.reason
        if outcome.receipt.reconciled:
            triggered["reconciled"] = True
        return triggered
    result = _failure_result(outcome.request.portfolio_id, outcome.error, outcome.failure_class)
    result["attempts"] = outcome.attempts
    if outcome.held_elsewhere:
        result["outcome"] = Result.IN_PROGRESS_ELSEWHERE
        result["action"] = DEFERRED
    elif outcome.remembered:
        result["outcome"] = Result.ALREADY_DEAD_LETTERED
    return result


def _failure_result(
    portfolio_id: object, error: TriggerError, failure_class: FailureClass
) -> dict[str, Any]:
    return {
        "portfolioId": portfolio_id if isinstance(portfolio_id, str) else None,
        "outcome": Result.DEAD_LETTERED,
        "failureClass": failure_class.value,
        "reason": error.reason,
        "detail": str(error),
    }
