"""How Glider's v2 answers become a Receipt, a RebalanceState or a classified ApiError."""

from __future__ import annotations

import json
from typing import Any

import pytest

from glider_trigger.domain.errors import (
    ApiError,
    Certainty,
    FailureClass,
    KeyRefusedError,
    classify,
)
from glider_trigger.domain.models import (
    ApiKey,
    FinalOutcome,
    FollowUp,
    InputSource,
    SourceKind,
    TriggerRequest,
)
from glider_trigger.domain.trigger_input import epoch_of
from glider_trigger.outbound.glider.http import Answer
from glider_trigger.outbound.glider.v2 import (
    GliderV2Client,
    interpret,
    read_last_rebalance,
    read_operation,
)
from tests.fakes.http import AnsweringPool, session

OPERATION_ID = "rebalance:pf_abc:01HX%2F7"
SUBMITTED = "2026-04-17T12:00:00.000Z"
IDS = {"x-request-id": "req_v2", "x-correlation-id": "corr_v2"}


def answer(status: int, document: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {**IDS, **(headers or {})}, json.dumps(document).encode())


def refusal(status: int, code: str | None, **headers: str) -> ApiError:
    error: dict[str, Any] = {"message": f"HTTP {status}"}
    if code:
        error["code"] = code
    with pytest.raises(ApiError) as caught:
        interpret(answer(status, {"success": False, "error": error}, headers))
    return caught.value


def test_202_is_a_receipt_of_the_operation_with_its_submission_and_header_ids() -> None:
    receipt = interpret(
        answer(
            202, {"success": True, "data": {"operationId": OPERATION_ID, "submittedAt": SUBMITTED}}
        )
    )

    assert receipt.rebalance_id == OPERATION_ID
    assert receipt.submitted_at == epoch_of(SUBMITTED)
    assert (receipt.request_id, receipt.correlation_id) == ("req_v2", "corr_v2")
    assert receipt.unread is None
    assert not receipt.joined


def test_a_202_cut_off_is_accepted_with_the_operation_unknown() -> None:
    receipt = interpret(Answer(202, IDS, b'{"success": true, "da', "cut off"))

    assert receipt.rebalance_id is None
    assert receipt.unread is not None
    assert "operation id is unknown" in receipt.unread


def test_a_2xx_that_is_not_a_success_settles_the_delivery() -> None:
    with pytest.raises(ApiError) as caught:
        interpret(answer(202, {"ok": True}))

    assert caught.value.settles_delivery
    assert caught.value.facts is not None
    assert caught.value.facts.request_id == "req_v2"


@pytest.mark.parametrize(
    ("status", "code", "reason", "failure_class"),
    [
        (401, "API_102", "UNAUTHORIZED", FailureClass.SYSTEMIC),
        (403, "API_104", "FORBIDDEN", FailureClass.SYSTEMIC),
        (404, "API_200", "NOT_FOUND", FailureClass.PERMANENT),
        (404, None, "NOT_FOUND", FailureClass.PERMANENT),  # the envelope, without a code
        (429, "API_004", "RATE_LIMITED", FailureClass.TRANSIENT),
        (500, "API_000", "SERVER_ERROR", FailureClass.TRANSIENT),
        (503, None, "SERVER_ERROR", FailureClass.TRANSIENT),
    ],
)
def test_refusals_are_classified_as_on_v1(
    status: int, code: str | None, reason: str, failure_class: FailureClass
) -> None:
    error = refusal(status, code)

    assert (error.reason, classify(error)) == (reason, failure_class)
    assert error.facts is not None
    assert (error.facts.http_status, error.facts.code) == (status, code)
    assert (error.facts.request_id, error.facts.correlation_id) == ("req_v2", "corr_v2")
    assert isinstance(error, KeyRefusedError) is (status == 401)
    assert (error.certainty is Certainty.UNPROVEN) is (status >= 500)


@pytest.mark.parametrize(
    ("status", "code", "reason", "failure_class"),
    [
        (500, "API_001", "GLIDER_CONFIGURATION_ERROR", FailureClass.SYSTEMIC),
        (404, "API_107", "USER_NOT_FOUND", FailureClass.PERMANENT),
        (401, "API_108", "UNAUTHORIZED", FailureClass.SYSTEMIC),
        (401, "API_109", "UNAUTHORIZED", FailureClass.SYSTEMIC),
    ],
)
def test_the_codes_the_contract_did_not_list_are_classified_as_on_v1(
    status: int, code: str, reason: str, failure_class: FailureClass
) -> None:
    error = refusal(status, code)

    assert (error.reason, classify(error)) == (reason, failure_class)
    assert isinstance(error, KeyRefusedError) is (code in ("API_108", "API_109"))
    assert "portfolios:" not in str(error)  # not a scope the key lacks


def test_a_403_names_the_scope_the_trigger_needs() -> None:
    error = refusal(403, "API_104")

    assert "portfolios:write" in str(error)
    assert "ask Glider" in str(error)


def test_a_403_on_a_read_names_the_read_scope() -> None:
    document = {"success": False, "error": {"code": "API_104", "message": "Permission denied"}}
    with pytest.raises(ApiError) as caught:
        read_operation(answer(403, document))

    assert caught.value.reason == "FORBIDDEN"
    assert "portfolios:read" in str(caught.value)
    assert "portfolios:write" not in str(caught.value)


def test_the_cooldown_429_carries_its_retry_after() -> None:
    error = refusal(429, "API_004", **{"retry-after": "42"})

    assert error.retry_after_seconds == 42.0


def operation(state: str, **fields: Any) -> dict[str, Any]:
    data = {
        "operationId": OPERATION_ID,
        "portfolioId": "pf_abc",
        "kind": "rebalance",
        "state": state,
        "createdAt": "2026-04-17T12:00:00.000Z",
        "updatedAt": "2026-04-17T12:01:00.000Z",
        "finishedAt": None,
        "error": None,
    }
    return {"success": True, "data": data | fields}


@pytest.mark.parametrize(
    ("state", "final"),
    [
        ("accepted", None),
        ("running", None),
        ("retrying", None),
        ("awaiting_user", None),
        ("something_new", None),
        ("completed", FinalOutcome.COMPLETED),
        ("failed", FinalOutcome.FAILED),
        ("cancelled", FinalOutcome.FAILED),
    ],
)
def test_operation_states_map_onto_the_outcomes(state: str, final: FinalOutcome | None) -> None:
    read = read_operation(answer(200, operation(state)))

    assert (read.status, read.final) == (state, final)
    assert read.awaiting_user is (state == "awaiting_user")


def test_a_failed_operation_carries_its_error_and_duration() -> None:
    read = read_operation(
        answer(
            200,
            operation(
                "failed",
                finishedAt="2026-04-17T12:02:30.000Z",
                error={"code": "REBALANCE_FAILED", "message": "execution reverted"},
            ),
        )
    )

    assert read.error == "execution reverted"
    assert read.started_at is not None
    assert read.closed_at is not None
    assert read.closed_at - read.started_at == 150.0


def test_an_unreadable_operation_is_looked_at_again() -> None:
    with pytest.raises(ApiError) as caught:
        read_operation(answer(200, {"success": True, "data": []}))

    assert classify(caught.value) is FailureClass.TRANSIENT


def portfolio(last: str | None) -> dict[str, Any]:
    schedule = {"status": "active", "intervalMs": 21_600_000, "lastRebalanceAt": last}
    return {"success": True, "data": {"portfolioId": "pf_abc", "schedule": schedule}}


def test_the_last_rebalance_says_when_not_which() -> None:
    (listed,) = read_last_rebalance(answer(200, portfolio(SUBMITTED)))

    assert listed.rebalance_id is None
    assert listed.started_at == epoch_of(SUBMITTED)


@pytest.mark.parametrize("last", [None, "yesterday"])
def test_a_portfolio_never_rebalanced_lists_nothing(last: str | None) -> None:
    assert read_last_rebalance(answer(200, portfolio(last))) == []


class RecordingSession:
    worst_case_seconds = 13.0

    def __init__(self, reply: Answer) -> None:
        self.reply = reply
        self.calls: list[tuple[str, str, dict[str, str], bytes | None]] = []

    def request(
        self, method: str, path: str, *, headers: dict[str, str], secret: str, body: bytes | None
    ) -> Answer:
        assert secret == headers["x-api-key"]  # the answer is scrubbed of the key it carried
        self.calls.append((method, path, headers, body))
        return self.reply


def client(reply: Answer, ignored: list[tuple[str, str]] | None = None) -> tuple[Any, Any]:
    session = RecordingSession(reply)
    on_ignored = (
        (lambda option, why: ignored.append((option, why))) if ignored is not None else None
    )
    return GliderV2Client(session, on_ignored=on_ignored), session  # type: ignore[arg-type]


def test_the_trigger_posts_no_body_with_the_v2_key_header() -> None:
    accepted = answer(202, {"success": True, "data": {"operationId": OPERATION_ID}})
    glider, session = client(accepted)

    glider.trigger(
        TriggerRequest("pf_abc", False, InputSource(SourceKind.DIRECT)), ApiKey("gldr_sk_x")
    )

    ((method, path, headers, sent),) = session.calls
    assert (method, path, sent) == ("POST", "/v2/portfolios/pf_abc/rebalance", None)
    assert headers == {"x-api-key": "gldr_sk_x"}


def test_the_operation_id_is_one_percent_encoded_path_segment() -> None:
    glider, session = client(answer(200, operation("running")))

    glider.rebalance_state(FollowUp("pf_abc", OPERATION_ID, False, None, 0.0), ApiKey("k"))

    ((_, path, _, _),) = session.calls
    assert path == "/v2/portfolios/pf_abc/operations/rebalance%3Apf_abc%3A01HX%252F7"


def test_skip_schedule_validation_is_said_once_and_never_fails_the_trigger() -> None:
    ignored: list[tuple[str, str]] = []
    accepted = answer(202, {"success": True, "data": {"operationId": OPERATION_ID}})
    glider, session = client(accepted, ignored)
    skipping = TriggerRequest("pf_abc", True, InputSource(SourceKind.DIRECT))

    for _ in range(3):
        assert glider.trigger(skipping, ApiKey("k")).rebalance_id == OPERATION_ID

    assert len(session.calls) == 3
    assert [option for option, _ in ignored] == ["skipScheduleValidation"]


@pytest.mark.parametrize(("status", "code"), [(403, "API_105"), (403, "API_106"), (401, "API_102")])
def test_only_a_refused_permission_names_a_scope(status: int, code: str) -> None:
    error = refusal(status, code)

    assert "portfolios:" not in str(error)


def test_the_ids_of_a_body_only_429_are_kept() -> None:
    body = {"error": "Too Many Requests", "requestId": "req_body", "correlationId": "corr_body"}
    with pytest.raises(ApiError) as caught:
        interpret(Answer(429, {"retry-after": "3"}, json.dumps(body).encode()))

    assert caught.value.facts is not None
    assert (caught.value.facts.request_id, caught.value.facts.correlation_id) == (
        "req_body",
        "corr_body",
    )


def test_an_operation_id_too_long_to_follow_is_not_shortened() -> None:
    long_id = "rebalance:" + "x" * 600
    receipt = interpret(answer(202, {"success": True, "data": {"operationId": long_id}}))

    assert receipt.rebalance_id is None  # triggered; which one, unknown: `unknown` at once


def test_a_portfolio_without_a_schedule_block_cannot_tell() -> None:
    with pytest.raises(ApiError):
        read_last_rebalance(answer(200, {"success": True, "data": {"portfolioId": "pf_abc"}}))


def test_the_latest_rebalance_is_marked_latest_only() -> None:
    (listed,) = read_last_rebalance(answer(200, portfolio(SUBMITTED)))

    assert listed.latest_only


KEY = "gldr_sk_ours_5TnW2qL8vZ"
OTHER_KEY = "gldr_sk_theirs_0pQ7xR3m"


def test_an_operation_error_that_quotes_a_key_is_scrubbed_before_it_is_read() -> None:
    failed = operation("failed", error={"code": "REBALANCE_FAILED", "message": f"signer {KEY}"})
    pool = AnsweringPool(200, json.dumps(failed).encode(), {"X-Request-Id": OTHER_KEY})
    glider = GliderV2Client(session(pool))

    state = glider.rebalance_state(FollowUp("pf_abc", OPERATION_ID, False, None, 0.0), ApiKey(KEY))

    assert (state.final, state.error) == (FinalOutcome.FAILED, "signer <redacted>")


def test_a_refusal_that_quotes_the_key_in_its_headers_and_body_is_scrubbed() -> None:
    refused = {"success": False, "error": {"code": "API_102", "message": f"bad key {KEY}"}}
    headers = {"X-Request-Id": f"req_{KEY}", "X-Correlation-Id": OTHER_KEY}
    glider = GliderV2Client(session(AnsweringPool(401, json.dumps(refused).encode(), headers)))

    with pytest.raises(ApiError) as caught:
        glider.trigger(TriggerRequest("pf_abc", False, InputSource(SourceKind.DIRECT)), ApiKey(KEY))

    error = caught.value
    assert str(error) == "bad key <redacted>"
    assert (error.facts.request_id, error.facts.correlation_id) == ("req_<redacted>", "<redacted>")


def test_the_docs_other_trigger_path_answering_a_router_404_is_a_missing_route() -> None:
    # Glider's docs name the trigger `/rebalance` and, on one page, `/trigger`: if the one we
    # call does not exist, every trigger says so, as one systemic failure, not per portfolio.
    pool = AnsweringPool(404, b"Cannot POST /v2/portfolios/pf_abc/rebalance", {})
    glider = GliderV2Client(session(pool))

    with pytest.raises(ApiError) as caught:
        glider.trigger(TriggerRequest("pf_abc", False, InputSource(SourceKind.DIRECT)), ApiKey("k"))

    assert (caught.value.reason, classify(caught.value)) == (
        "ROUTE_NOT_FOUND",
        FailureClass.SYSTEMIC,
    )
    assert "POST https://api.glider.fi/v2/portfolios/pf_abc/rebalance" in str(caught.value)
    assert "portfolios:" not in str(caught.value).replace("/v2/portfolios/", "")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"success": False, "error": {"code": "API_006", "message": "Not found"}}, "NOT_FOUND"),
        ({"message": "Not Found", "statusCode": 404}, "ROUTE_NOT_FOUND"),
    ],
)
def test_an_operation_read_ends_as_not_found_only_on_gliders_envelope(
    document: dict[str, Any], reason: str
) -> None:
    glider = GliderV2Client(session(AnsweringPool(404, json.dumps(document).encode())))

    with pytest.raises(ApiError) as caught:
        glider.rebalance_state(FollowUp("pf_abc", OPERATION_ID, False, None, 0.0), ApiKey("k"))

    assert caught.value.reason == reason
