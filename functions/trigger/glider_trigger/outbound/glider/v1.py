"""Glider's v1 API as the domain's RebalancingApi: the trigger call, and its status and code
tables (shared/glider-api.md), which turn every answer into a Receipt or a classified ApiError.

A 2xx whose body could not be read to the end is an accepted trigger whose rebalance id is
unknown (a Receipt with `unread`); a 2xx that is not a success body may have been acted on, so
it settles the delivery (never sent again).
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import quote

from glider_trigger.domain.errors import ApiError, ApiFacts, FailureClass
from glider_trigger.domain.models import (
    ApiKey,
    FinalOutcome,
    FollowUp,
    RebalanceState,
    Receipt,
    TriggerRequest,
)
from glider_trigger.domain.ports import StartedRebalance
from glider_trigger.domain.trigger_input import epoch_of, validate_portfolio_id
from glider_trigger.outbound.glider.http import (
    Answer,
    HttpSession,
    json_object,
    retry_after,
    text,
)
from glider_trigger.outbound.glider.pacing import RateLimiter

TRIGGER_PATH: Final = "/v1/portfolio/{portfolio_id}/rebalance/schedule/trigger"
STATUS_PATH: Final = "/v1/portfolio/{portfolio_id}/rebalance/status?limit={limit}"
WORKFLOW_PATH: Final = "/v1/portfolio/{portfolio_id}/rebalance/status/{workflow_id}"
# A workflow engine's vocabulary (shared/glider-api.md): these end a rebalance; any other
# status (running, triggered, one we do not know) is not final yet.
_COMPLETED: Final = frozenset({"completed"})
_FAILED: Final = frozenset({"failed", "canceled", "cancelled", "terminated", "timed_out", "error"})
# Enough to hold the rebalance of a lost answer a few seconds ago, even on a busy portfolio.
RECENT_LIMIT: Final = 10

_UNAUTHORIZED_CODES: Final = frozenset({"API_100", "API_101", "API_102", "API_103"})
_FORBIDDEN_CODES: Final = frozenset({"API_104", "API_110"})
_TENANT_CODES: Final = frozenset({"API_105", "API_106"})
_SYSTEMIC_CODES: Final = _UNAUTHORIZED_CODES | _FORBIDDEN_CODES | _TENANT_CODES
_RATE_LIMITED_CODE: Final = "API_004"
_INTERNAL_CODE: Final = "API_000"
_REASON_BY_STATUS: Final = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    422: "BAD_REQUEST",
}


class GliderV1Client:
    def __init__(self, session: HttpSession, *, rate_limiter: RateLimiter | None = None) -> None:
        self._session = session
        self._rate_limiter = rate_limiter

    @property
    def worst_case_seconds(self) -> float:
        return self._session.worst_case_seconds

    def trigger(self, request: TriggerRequest, api_key: ApiKey) -> Receipt:
        # Validated by the parser already; checked again so that no caller can bend the path.
        return interpret(
            self._call(
                "POST",
                TRIGGER_PATH.format(portfolio_id=_segment(request.portfolio_id)),
                api_key,
                body={"skipScheduleValidation": request.skip_schedule_validation},
            )
        )

    def recent_rebalances(self, request: TriggerRequest, api_key: ApiKey) -> list[StartedRebalance]:
        path = STATUS_PATH.format(portfolio_id=_segment(request.portfolio_id), limit=RECENT_LIMIT)
        return read_recent(self._call("GET", path, api_key))

    def rebalance_state(self, follow_up: FollowUp, api_key: ApiKey) -> RebalanceState:
        path = WORKFLOW_PATH.format(
            portfolio_id=_segment(follow_up.portfolio_id),
            workflow_id=quote(follow_up.rebalance_id, safe=""),
        )
        return read_state(self._call("GET", path, api_key))

    def _call(
        self, method: str, path: str, api_key: ApiKey, *, body: dict[str, Any] | None = None
    ) -> Answer:
        headers = {"X-API-KEY": api_key.reveal()}
        if body is not None:
            headers["Content-Type"] = "application/json"
        answer = self._session.request(
            method,
            path,
            headers=headers,
            body=json.dumps(body).encode() if body is not None else None,
        )
        if self._rate_limiter is not None:
            self._rate_limiter.observe(answer.headers)  # slow down before Glider answers 429
        return answer


def _segment(portfolio_id: str) -> str:
    """A portfolio id as a path segment, validated so that no caller can bend the path."""
    return quote(validate_portfolio_id(portfolio_id), safe="")


def read_state(answer: Answer) -> RebalanceState:
    """One workflow's state; raises the classified ApiError otherwise."""
    document = _success_document(answer)
    data = document.get("data")
    if not isinstance(data, dict):
        raise _unreadable(answer, "rebalance state")
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
        started_at=epoch_of(data.get("startTime")),
        closed_at=epoch_of(data.get("closeTime")),
        error=_error_text(error),
    )


def _error_text(error: object) -> str | None:
    """Glider's error of a failed rebalance (its shape is not documented): a message if it has
    one, else the value as JSON, bounded."""
    if error is None:
        return None
    if isinstance(error, dict) and text(error.get("message")):
        return text(error.get("message"))
    return text(error if isinstance(error, str) else json.dumps(error, default=str))


def _success_document(answer: Answer) -> dict[str, Any]:
    """A 2xx success body; raises the classified ApiError of any other answer."""
    document = json_object(answer.payload)
    if not 200 <= answer.status < 300:
        raise _refusal(answer, document)
    if answer.unread is not None or document.get("success") is not True:
        raise _unreadable(answer, "answer")
    return document


def _unreadable(answer: Answer, what: str) -> ApiError:
    return ApiError(
        f"HTTP {answer.status}, but no {what} could be read",
        reason="UNEXPECTED_RESPONSE",
        failure_class=FailureClass.TRANSIENT,
        facts=ApiFacts(answer.status, None, None, None),
    )


def read_recent(answer: Answer) -> list[StartedRebalance]:
    """The `recentWorkflows` of a status answer; raises the classified ApiError otherwise."""
    data = _success_document(answer).get("data")
    workflows = data.get("recentWorkflows") if isinstance(data, dict) else None
    if not isinstance(workflows, list):
        raise _unreadable(answer, "list of recent rebalances")
    listed = []
    for workflow in workflows:
        if isinstance(workflow, dict) and (workflow_id := text(workflow.get("workflowId"))):
            # A workflow just triggered may not show its start yet: its scheduled time, then.
            started = epoch_of(workflow.get("startedAt")) or epoch_of(workflow.get("scheduledAt"))
            listed.append(StartedRebalance(workflow_id, started, text(workflow.get("status"))))
    return listed


def interpret(answer: Answer) -> Receipt:
    """A Receipt for a trigger Glider accepted; raises the classified ApiError otherwise."""
    status = answer.status
    document = json_object(answer.payload)
    request_id, correlation_id = _ids(answer, document)
    if 200 <= status < 300 and answer.unread is not None:
        # Glider accepted the trigger; sending it again would start a second rebalance.
        return Receipt(
            rebalance_id=None,
            schedule_id=None,
            request_id=request_id,
            correlation_id=correlation_id,
            unread=f"HTTP {status}, but {answer.unread}: the rebalance id is unknown",
        )
    if 200 <= status < 300:
        data = document.get("data")
        if document.get("success") is not True or not isinstance(data, dict):
            raise unexpected_2xx(status, request_id=request_id, correlation_id=correlation_id)
        return Receipt(
            rebalance_id=text(data.get("rebalanceId")),
            schedule_id=text(data.get("scheduleId")),
            request_id=request_id,
            correlation_id=correlation_id,
            status=text(data.get("status")),
        )
    raise _refusal(answer, document)


def _ids(answer: Answer, document: dict[str, Any]) -> tuple[str | None, str | None]:
    """Glider's request and correlation ids: from the body, else from the headers."""
    return (
        text(document.get("requestId")) or answer.headers.get("x-request-id"),
        text(document.get("correlationId")) or answer.headers.get("x-correlation-id"),
    )


def _refusal(answer: Answer, document: dict[str, Any]) -> ApiError:
    """A non-2xx answer as its classified ApiError."""
    code, message = _error_code_and_message(document)
    request_id, correlation_id = _ids(answer, document)
    return api_error(
        message or f"HTTP {answer.status} from Glider",
        status=answer.status,
        code=code,
        request_id=request_id,
        correlation_id=correlation_id,
        retry_after_seconds=retry_after(answer.headers.get("retry-after"), document),
    )


def api_error(
    message: str,
    *,
    status: int,
    code: str | None = None,
    request_id: str | None = None,
    correlation_id: str | None = None,
    retry_after_seconds: float | None = None,
) -> ApiError:
    """A non-2xx answer, read with the v1 status and code tables."""
    return ApiError(
        message,
        reason=_reason(status, code),
        failure_class=_failure_class(status, code),
        facts=ApiFacts(status, code, request_id, correlation_id),
        retry_after_seconds=retry_after_seconds,
        # The key was refused: it may have been rotated, so it is worth one refetch.
        unauthorized=status == 401 or code in _UNAUTHORIZED_CODES,
        # A 5xx proves no refusal: Glider may have started the rebalance and failed after.
        uncertain=status >= 500,
    )


def unexpected_2xx(
    status: int, *, request_id: str | None = None, correlation_id: str | None = None
) -> ApiError:
    """A 2xx that is not a success body: Glider may have acted on it, so it is never retried."""
    return ApiError(
        f"HTTP {status} without a success body; the rebalance may or may not have been triggered",
        reason="UNEXPECTED_RESPONSE",
        failure_class=FailureClass.PERMANENT,
        facts=ApiFacts(status, None, request_id, correlation_id),
        settles=True,
    )


def _rate_limited(status: int, code: str | None) -> bool:
    return status == 429 or code == _RATE_LIMITED_CODE


def _reason(status: int, code: str | None) -> str:
    if _rate_limited(status, code):
        return "RATE_LIMITED"
    if code in _TENANT_CODES:
        return "TENANT_UNAVAILABLE"
    if status >= 500:
        return "SERVER_ERROR"
    if 300 <= status < 400:
        return "UNEXPECTED_REDIRECT"  # never followed: the key must not travel elsewhere
    return _REASON_BY_STATUS.get(status, "CLIENT_ERROR")


def _failure_class(status: int, code: str | None) -> FailureClass:
    if code in _SYSTEMIC_CODES or status in (401, 403):
        return FailureClass.SYSTEMIC
    if _rate_limited(status, code) or status >= 500 or code == _INTERNAL_CODE:
        return FailureClass.TRANSIENT
    # 408 Request Timeout is the server giving up on us: as transient as a socket timeout.
    if status == 408:
        return FailureClass.TRANSIENT
    return FailureClass.PERMANENT


def _error_code_and_message(document: dict[str, Any]) -> tuple[str | None, str | None]:
    error = document.get("error")
    if isinstance(error, dict):  # the v1 envelope
        return text(error.get("code")), text(error.get("message"))
    # The 429 body: {"error": "Too Many Requests", "message": "..."}
    message = text(document.get("message")) or text(error)
    return None, message
