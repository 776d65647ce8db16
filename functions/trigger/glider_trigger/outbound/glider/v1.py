"""Glider's v1 API as the domain's RebalancingApi: the trigger call, and its status and code
tables (docs/glider-api.md), which turn every answer into a Receipt or a classified ApiError.

A 2xx whose body could not be read to the end is an accepted trigger whose rebalance id is
unknown (a Receipt with `unread`); a 2xx that is not a success body may have been acted on, so
it settles the delivery (never sent again).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from glider_trigger.domain.models import (
    ApiKey,
    FinalOutcome,
    FollowUp,
    RebalanceState,
    Receipt,
    TriggerRequest,
)
from glider_trigger.domain.ports import RecentRebalances, StartedRebalance
from glider_trigger.domain.trigger_input import epoch_of
from glider_trigger.outbound.glider.http import Answer, HttpSession, text
from glider_trigger.outbound.glider.pacing import RateLimiter
from glider_trigger.outbound.glider.shared import (
    Ids,
    Refusal,
    error_text,
    rebalance_id,
    segment,
    send,
    success_document,
    trigger_receipt,
    unreadable,
)

KEY_HEADER: Final = "X-API-KEY"  # as v1's docs spell it
TRIGGER_PATH: Final = "/v1/portfolio/{portfolio_id}/rebalance/schedule/trigger"
STATUS_PATH: Final = "/v1/portfolio/{portfolio_id}/rebalance/status?limit={limit}"
WORKFLOW_PATH: Final = "/v1/portfolio/{portfolio_id}/rebalance/status/{workflow_id}"
# A workflow engine's vocabulary (docs/glider-api.md): these end a rebalance; any other
# status (running, triggered, one we do not know) is not final yet.
_COMPLETED: Final = frozenset({"completed"})
_FAILED: Final = frozenset({"failed", "canceled", "cancelled", "terminated", "timed_out", "error"})
# The list's lengths asked for: enough for a lost answer a few seconds ago on a busy portfolio,
# then, when that does not reach back to it, one more page as long as Glider gives (its cap is
# not documented). The only paging v1 has is `limit`.
RECENT_LIMITS: Final = (10, 100)
# The length Glider lists by default: a shorter list holds every rebalance there is; a longer
# one may have been cut at a cap of Glider's, whatever length was asked for.
_DEFAULT_LIMIT: Final = 5

# v1 puts Glider's ids in the body (headers as a fallback).
_IDS: Final = Ids(in_body=True)
_REFUSAL: Final = Refusal(_IDS)


class GliderV1Client:
    def __init__(self, session: HttpSession, *, rate_limiter: RateLimiter | None = None) -> None:
        self._session = session
        self._rate_limiter = rate_limiter

    @property
    def worst_case_seconds(self) -> float:
        return self._session.worst_case_seconds

    @property
    def version(self) -> str:
        return "v1"

    def trigger(self, request: TriggerRequest, api_key: ApiKey) -> Receipt:
        # Validated by the parser already; checked again so that no caller can bend the path.
        return interpret(
            self._call(
                "POST",
                TRIGGER_PATH.format(portfolio_id=segment(request.portfolio_id)),
                api_key,
                body={"skipScheduleValidation": request.skip_schedule_validation},
            )
        )

    def recent_rebalances(
        self, request: TriggerRequest, api_key: ApiKey, since: float, *, longer: bool = False
    ) -> RecentRebalances:
        limit = RECENT_LIMITS[1] if longer else RECENT_LIMITS[0]
        path = STATUS_PATH.format(portfolio_id=segment(request.portfolio_id), limit=limit)
        listed = read_recent(self._call("GET", path, api_key))
        complete = reaches_back(listed, since)
        return RecentRebalances(tuple(listed), complete=complete, more=not complete and not longer)

    def rebalance_state(self, follow_up: FollowUp, api_key: ApiKey) -> RebalanceState:
        path = WORKFLOW_PATH.format(
            portfolio_id=segment(follow_up.portfolio_id),
            workflow_id=quote(follow_up.rebalance_id, safe=""),
        )
        return read_state(self._call("GET", path, api_key))

    def _call(
        self, method: str, path: str, api_key: ApiKey, *, body: dict[str, Any] | None = None
    ) -> Answer:
        return send(
            self._session,
            self._rate_limiter,
            method,
            path,
            key_header=KEY_HEADER,
            api_key=api_key,
            body=body,
        )


def read_state(answer: Answer) -> RebalanceState:
    """One workflow's state; raises the classified ApiError otherwise."""
    document = success_document(answer, _REFUSAL)
    data = document.get("data")
    if not isinstance(data, dict):
        raise unreadable(answer, "rebalance state")
    status = text(data.get("status"))
    given = data.get("result")
    result: dict[str, Any] = given if isinstance(given, dict) else {}
    result_status = text(result.get("status"))
    error = data.get("error")
    final = None
    if status in _FAILED or (result_status is not None and result_status != "success"):
        final = FinalOutcome.FAILED
    elif status in _COMPLETED or result_status == "success":
        final = FinalOutcome.COMPLETED
    block = result.get("blockNumber")
    return RebalanceState(
        status=status,
        final=final,
        transaction_hash=text(result.get("transactionHash")),
        block_number=block if isinstance(block, int) and not isinstance(block, bool) else None,
        gas_used=text(str(gas)) if (gas := result.get("gasUsed")) else None,  # string or number
        started_at=answer.local(epoch_of(data.get("startTime"))),
        closed_at=answer.local(epoch_of(data.get("closeTime"))),
        error=error_text(error),
    )


def read_recent(answer: Answer) -> list[StartedRebalance]:
    """The `recentWorkflows` of a status answer; raises the classified ApiError otherwise."""
    data = success_document(answer, _REFUSAL).get("data")
    workflows = data.get("recentWorkflows") if isinstance(data, dict) else None
    if not isinstance(workflows, list):
        raise unreadable(answer, "list of recent rebalances")
    listed = []
    for workflow in workflows:
        if isinstance(workflow, dict) and isinstance(workflow.get("workflowId"), str):
            # An id too long to follow is listed as unknown: when, not which.
            workflow_id = rebalance_id(workflow.get("workflowId"))
            # A workflow just triggered may not show its start yet: its scheduled time, then.
            started = epoch_of(workflow.get("startedAt")) or epoch_of(workflow.get("scheduledAt"))
            listed.append(StartedRebalance(workflow_id, answer.local(started)))
    return listed


def reaches_back(listed: list[StartedRebalance], since: float) -> bool:
    """Whether the list holds every rebalance started since `since`: it is shorter than
    Glider's default length (there are no more), or its oldest started before then."""
    if len(listed) < _DEFAULT_LIMIT:
        return True
    oldest = listed[-1].started_at
    return oldest is not None and oldest <= since


def interpret(answer: Answer) -> Receipt:
    """A Receipt for a trigger Glider accepted; raises the classified ApiError otherwise."""
    return trigger_receipt(
        answer,
        ids=_IDS,
        refusal=_REFUSAL,
        what="rebalance id",
        fields=lambda data: {
            "rebalance_id": text(data.get("rebalanceId")),
            "schedule_id": text(data.get("scheduleId")),
        },
    )
