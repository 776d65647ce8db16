"""What only Glider's v2 API does, through the real handler, the moto server and the emulator:
a lost answer closed by the portfolio's lastRebalanceAt, a repeat Glider joins to the rebalance
in flight, a key that lacks a scope, and the operation states v1 does not have."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from glider_trigger.domain.trigger_input import iso_time
from local.fixtures.event_source import sqs_event
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import REGION, Deployment, attribute_values, drain

PORTFOLIO = "port_abc123"


@pytest.fixture
def api_version() -> str:
    return "v2"


def only_result(response: dict[str, Any]) -> dict[str, Any]:
    [result] = response["results"]
    return result  # type: ignore[no-any-return]


def posts(emulator: GliderEmulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST")


def lines(function: LocalFunction, field: str) -> list[dict[str, Any]]:
    return [log for log in function.logs if field in log]


def run_follow_ups(function: LocalFunction, deployment: Deployment) -> None:
    queue = deployment.follow_up_queue
    assert queue is not None
    for _ in range(20):
        messages = drain(deployment.sqs, queue.url, wait_seconds=3)
        if not messages:
            return
        assert function.invoke(sqs_event(messages, queue.arn, REGION)) == {"batchItemFailures": []}
    pytest.fail("the follow-ups did not end")


def test_a_lost_answer_closed_by_last_rebalance_at_is_not_sent_again(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.set_workflow_seconds(60)
    emulator.script(PORTFOLIO, Fault.lost_response())

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert posts(emulator) == 1  # the lost one: never sent twice
    assert len(emulator.rebalances) == 1
    [triggered] = [log for log in lines(function, "outcome") if log["outcome"] == "triggered"]
    assert triggered["reconciled"] is True
    assert triggered.get("rebalance_id") is None  # v2 says when, not which
    # Which rebalance is unknown, so it cannot be followed: its outcome is said at once.
    [outcome] = lines(function, "rebalance_outcome")
    assert (outcome["rebalance_outcome"], outcome["reason"]) == ("unknown", "REBALANCE_ID_UNKNOWN")


def test_without_reconciling_a_late_repeat_answered_with_the_lost_attempts_rebalance_stays_flagged(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator
) -> None:
    emulator.set_workflow_seconds(60)
    # Lost, then a cooldown answer that holds the repeat back 6 s, then Glider's own answer:
    # the rebalance in flight, submitted after the delivery's first attempt left. Nothing
    # doubled, but nothing proves which attempt started it: flagged, not called "joined".
    emulator.script(PORTFOLIO, Fault.lost_response(), Fault.rate_limited(retry_after=6))
    function = start_function(RECONCILE_LOST_ANSWERS="false", RETRY_MAX_DELAY_SECONDS="10")

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert posts(emulator) == 3
    [rebalance] = emulator.rebalances  # one rebalance for three POSTs
    assert result["rebalanceId"] == rebalance.operation_id
    assert emulator.collapsed_triggers() == 1
    [triggered] = [log for log in lines(function, "outcome") if log["outcome"] == "triggered"]
    assert "joined_in_flight" not in triggered
    assert triggered["level"] == "WARNING"
    assert triggered["maybe_delivered_attempts"] == 1


def test_a_glider_clock_behind_ours_never_passes_a_second_rebalance_off_as_joined(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.set_clock_offset(-10)  # Glider's clock 10 s behind ours
    emulator.script(PORTFOLIO, Fault.lost_response())
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert len(emulator.rebalances) == 2  # the lost one had finished: the repeat started one
    [triggered] = [log for log in lines(function, "outcome") if log["outcome"] == "triggered"]
    assert "joined_in_flight" not in triggered  # never "started no new one"
    assert triggered["maybe_delivered_attempts"] == 1  # flagged for support


def test_a_key_without_portfolios_write_is_systemic_and_says_what_to_ask_for(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.add_v2_key("gldr_sk_readonly", scopes=("portfolios:read",))
    deployment.put_api_key(json.dumps({"apiKey": "gldr_sk_readonly"}))
    function = LocalFunction(function.env)  # a new environment: the new key, not the cached one

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert (result["failureClass"], result["reason"]) == ("systemic", "FORBIDDEN")
    assert emulator.rebalances == []
    [letter] = deployment.dlq_messages()
    attributes = attribute_values(letter)
    assert attributes["apiErrorCode"] == "API_104"
    assert "ask Glider for portfolios:write" in attributes["detail"]
    assert "gldr_sk_readonly" not in json.dumps(function.logs)


def test_if_glider_serves_the_trigger_under_the_docs_other_name_it_is_said_once_loudly(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # The docs disagree: /rebalance (which we call) or /trigger. Were it /trigger, no portfolio
    # would be "not found": the invocation halts on the route, keeps the work and alarms.
    emulator.set_v2_trigger_route("trigger")
    function = start_function(MAX_CONCURRENCY="1")
    record = {
        "messageId": "m-1",
        "receiptHandle": "h",
        "body": json.dumps({"portfolioIds": [PORTFOLIO, "port_def456"]}),
        "eventSource": "aws:sqs",
        "eventSourceARN": deployment.work_queue.arn,
    }

    response = function.invoke({"Records": [record]})

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}  # kept for later
    assert [r.path for r in emulator.requests] == [f"/v2/portfolios/{PORTFOLIO}/rebalance"]
    [failed] = [log for log in function.logs if log.get("outcome") == "failed"][:1]
    assert (failed["reason"], failed["level"]) == ("ROUTE_NOT_FOUND", "ERROR")
    assert f"POST {emulator.base_url}/v2/portfolios/{PORTFOLIO}/rebalance" in failed["detail"]
    assert [m["SystemicFailures"] for m in function.metrics if "SystemicFailures" in m] == [[1.0]]
    assert emulator.rebalances == []
    assert deployment.dlq_messages() == []


def test_a_rebalance_awaiting_its_owner_is_said_once_counted_and_followed_on(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(FOLLOW_FIRST_DELAY_SECONDS="1")
    emulator.set_workflow_seconds(2)
    emulator.await_user_next_rebalance(PORTFOLIO)

    function.invoke({"portfolioId": PORTFOLIO})
    run_follow_ups(function, deployment)

    awaiting = [log for log in function.logs if log.get("rebalance_status") == "awaiting_user"]
    assert len([log for log in awaiting if log["level"] == "WARNING"]) == 1
    counted = [
        m["RebalancesAwaitingUser"] for m in function.metrics if "RebalancesAwaitingUser" in m
    ]
    assert counted == [[1.0]]  # one EMF record, one value
    [outcome] = lines(function, "rebalance_outcome")
    assert outcome["rebalance_outcome"] == "completed"


def test_a_cancelled_rebalance_is_failed_with_its_letter(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(FOLLOW_FIRST_DELAY_SECONDS="1")
    emulator.set_workflow_seconds(1)
    emulator.fail_next_rebalance(PORTFOLIO, "cancelled by the owner", state="cancelled")

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))
    run_follow_ups(function, deployment)

    [outcome] = lines(function, "rebalance_outcome")
    assert (outcome["rebalance_outcome"], outcome["rebalance_status"]) == ("failed", "cancelled")
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["reason"] == "REBALANCE_FAILED"
    assert attribute_values(letter)["source"] == f"follow-up:{result['rebalanceId']}"


# --- lastRebalanceAt read as an end time (the docs say neither): still nothing doubled -------


def test_read_as_an_end_a_lost_answer_still_in_flight_is_sent_again_and_joined_not_doubled(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.set_last_rebalance_at("end")
    emulator.set_workflow_seconds(60)  # still running when the repeat comes
    emulator.script(PORTFOLIO, Fault.lost_response())

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert posts(emulator) == 2  # nothing has ended yet: the repeat is sent ...
    [rebalance] = emulator.rebalances  # ... and Glider answers it with the one in flight
    assert emulator.collapsed_triggers() == 1
    assert result["rebalanceId"] == rebalance.operation_id  # known, so it is followed


def test_read_as_an_end_a_lost_answers_finished_rebalance_closes_it(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.set_last_rebalance_at("end")  # instantly final: it has ended when looked for
    emulator.script(PORTFOLIO, Fault.lost_response())

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert posts(emulator) == 1
    assert len(emulator.rebalances) == 1


def test_a_replay_after_the_lost_attempts_rebalance_ended_long_after_its_window_sends_nothing(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    # A letter of a failure after a lost answer carries the window its attempt was sent in; the
    # rebalance it started ran for 7 s and ended long after that window closed. Read as an
    # end, lastRebalanceAt is outside the window; it still says a rebalance ran since.
    emulator.set_last_rebalance_at("end")
    emulator.set_workflow_seconds(7)
    before = time.time()
    function.invoke({"portfolioId": PORTFOLIO})  # the lost attempt's rebalance, as it were
    after = time.time()
    time.sleep(7.5)
    window = {"after": iso_time(before), "before": iso_time(after)}

    result = only_result(function.invoke({"portfolioId": PORTFOLIO, "mayHaveStarted": window}))

    assert result["outcome"] == "triggered"
    assert posts(emulator) == 1  # the replay sent nothing
    assert len(emulator.rebalances) == 1


# --- a repeat joined to the rebalance in flight: counted as joined, not as a new rebalance ----


def metric_values(function: LocalFunction, name: str) -> list[float]:
    return [value for m in function.metrics if name in m for value in m[name]]


def test_a_repeat_glider_joins_to_the_rebalance_in_flight_is_not_counted_as_a_new_rebalance(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.set_workflow_seconds(600)  # still in flight when the repeat comes
    first = only_result(function.invoke({"portfolioId": PORTFOLIO}))
    emulator.backdate_latest(PORTFOLIO, 120)  # submitted well before the repeat's delivery

    repeat = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    [rebalance] = emulator.rebalances  # one rebalance started, for two triggers
    assert repeat["rebalanceId"] == first["rebalanceId"] == rebalance.operation_id
    assert len(lines(function, "joined_in_flight")) == 1  # said once, for the repeat
    assert metric_values(function, "RebalancesTriggered") == [1.0]  # the first only
    assert metric_values(function, "TriggersJoinedInFlight") == [1.0]  # the repeat
