"""Glider's v2 API (the "integrator API") as the domain's RebalancingApi: the trigger, the
operation it starts, and the portfolio's last rebalance, read with the shared code tables.

What differs from v1 (docs/glider-api.md, "The v2 API"):
- the trigger answers 202 with an `operationId` (opaque: percent-encoded in every path) and a
  `submittedAt`; a repeat while that rebalance is in flight answers the same operation with its
  original `submittedAt`, which the domain reads as "joined": nothing new started;
- Glider's request and correlation ids are in the X-Request-Id / X-Correlation-Id headers;
- there is no `skipScheduleValidation`: an input's flag is said once in the log and ignored;
- a 403 names the scope the key lacks (`portfolios:write` to trigger, `portfolios:read` to
  follow and reconcile);
- there is no list of recent rebalances: reconciling reads the portfolio's `lastRebalanceAt`,
  which says when, not which (a rebalance found that way cannot be followed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final
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
from glider_trigger.domain.trigger_input import SKIP_SCHEDULE_VALIDATION, epoch_of
from glider_trigger.outbound.glider.http import Answer, HttpSession, text
from glider_trigger.outbound.glider.pacing import RateLimiter
from glider_trigger.outbound.glider.shared import (
    Ids,
    Refusal,
    error_text,
    segment,
    send,
    success_document,
    trigger_receipt,
    unreadable,
)

KEY_HEADER: Final = "x-api-key"  # canonical lowercase, as v2's docs spell it
TRIGGER_PATH: Final = "/v2/portfolios/{portfolio_id}/rebalance"
OPERATION_PATH: Final = "/v2/portfolios/{portfolio_id}/operations/{operation_id}"
PORTFOLIO_PATH: Final = "/v2/portfolios/{portfolio_id}"
WRITE_SCOPE: Final = "portfolios:write"
READ_SCOPE: Final = "portfolios:read"
# The operation states that end a rebalance; accepted, running, retrying, awaiting_user and any
# state we do not know are not final yet.
_FINAL: Final = {
    "completed": FinalOutcome.COMPLETED,
    "failed": FinalOutcome.FAILED,
    "cancelled": FinalOutcome.FAILED,
    "canceled": FinalOutcome.FAILED,  # the docs spell it "cancelled"; both end it
}
AWAITING_USER: Final = "awaiting_user"
_SKIP_IGNORED: Final = (
    "Glider's v2 trigger has no such option (it dispatches a one-off rebalance outside the "
    "schedule either way); the rebalance is triggered as asked"
)

_IDS: Final = Ids(in_body=False)
_TRIGGER_REFUSAL: Final = Refusal(
    _IDS,
    forbidden_hint=f"the API key lacks the {WRITE_SCOPE} scope, which triggering needs: ask "
    f"Glider for {WRITE_SCOPE} (a standard, self-service scope)",
)
_READ_REFUSAL: Final = _TRIGGER_REFUSAL.needing(
    f"the API key lacks the {READ_SCOPE} scope, which following outcomes and reconciling "
    f"lost answers need: ask Glider for {READ_SCOPE}"
)


class GliderV2Client:
    def __init__(
        self,
        session: HttpSession,
        *,
        rate_limiter: RateLimiter | None = None,
        on_ignored: Callable[[str, str], None] | None = None,
    ) -> None:
        self._session = session
        self._rate_limiter = rate_limiter
        self._on_ignored = on_ignored
        self._skip_said = threading.Event()

    @property
    def worst_case_seconds(self) -> float:
        return self._session.worst_case_seconds

    @property
    def version(self) -> str:
        return "v2"

    def trigger(self, request: TriggerRequest, api_key: ApiKey) -> Receipt:
        if request.skip_schedule_validation:
            self._say_skip_ignored()
        path = TRIGGER_PATH.format(portfolio_id=segment(request.portfolio_id))
        return interpret(self._call("POST", path, api_key))

    def recent_rebalances(
        self, request: TriggerRequest, api_key: ApiKey, since: float, *, longer: bool = False
    ) -> RecentRebalances:
        path = PORTFOLIO_PATH.format(portfolio_id=segment(request.portfolio_id))
        # The latest only, and complete as such: one at or after the window closes it.
        return RecentRebalances(tuple(read_last_rebalance(self._call("GET", path, api_key))))

    def rebalance_state(self, follow_up: FollowUp, api_key: ApiKey) -> RebalanceState:
        path = OPERATION_PATH.format(
            portfolio_id=segment(follow_up.portfolio_id),
            operation_id=quote(follow_up.rebalance_id, safe=""),  # it may hold ':' and '%'
        )
        return read_operation(self._call("GET", path, api_key))

    def _call(self, method: str, path: str, api_key: ApiKey) -> Answer:
        return send(
            self._session, self._rate_limiter, method, path, key_header=KEY_HEADER, api_key=api_key
        )

    def _say_skip_ignored(self) -> None:
        if self._skip_said.is_set():
            return
        self._skip_said.set()  # once per execution environment; a race may say it twice
        if self._on_ignored is not None:
            self._on_ignored(SKIP_SCHEDULE_VALIDATION, _SKIP_IGNORED)


def interpret(answer: Answer) -> Receipt:
    """A Receipt for a trigger Glider accepted; raises the classified ApiError otherwise."""
    return trigger_receipt(
        answer,
        ids=_IDS,
        refusal=_TRIGGER_REFUSAL,
        what="operation id",
        fields=lambda data: {
            "rebalance_id": text(data.get("operationId")),
            "schedule_id": None,
            "submitted_at": answer.local(epoch_of(data.get("submittedAt"))),
        },
    )


def read_operation(answer: Answer) -> RebalanceState:
    """One operation's state; raises the classified ApiError otherwise."""
    data = success_document(answer, _READ_REFUSAL).get("data")
    if not isinstance(data, dict):
        raise unreadable(answer, "operation")
    state = text(data.get("state"))
    return RebalanceState(
        status=state,
        final=_FINAL.get(state or ""),
        started_at=answer.local(epoch_of(data.get("createdAt"))),
        closed_at=answer.local(epoch_of(data.get("finishedAt"))),
        error=error_text(data.get("error")),
        awaiting_user=state == AWAITING_USER,
    )


def read_last_rebalance(answer: Answer) -> list[StartedRebalance]:
    """The portfolio's last rebalance as v2 shows it: when (`schedule.lastRebalanceAt`), not
    which, and the latest only (`latest_only`: one at or after the lost attempt closes it,
    whenever it ran, since the docs do not say whether the time is a start or an end). A
    portfolio without a schedule block cannot tell: the classified ApiError, as for an answer
    that is not the portfolio (the trigger is then sent again, flagged)."""
    data = success_document(answer, _READ_REFUSAL).get("data")
    schedule = data.get("schedule") if isinstance(data, dict) else None
    if not isinstance(schedule, dict):
        raise unreadable(answer, "portfolio schedule (lastRebalanceAt)")
    last = answer.local(epoch_of(schedule.get("lastRebalanceAt")))
    return [] if last is None else [StartedRebalance(None, last, latest_only=True)]
