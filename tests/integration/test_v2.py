"""What only Glider's v2 API does, through the real handler, the moto server and the emulator:
a lost answer closed by the portfolio's lastRebalanceAt, a repeat Glider joins to the rebalance
in flight, a key that lacks a scope, and the operation states v1 does not have. Each event is
delivered as the stack delivers it (queued, then triggered from the work queue)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from glider_trigger.domain.trigger_input import iso_time
from local.fixtures.delivery import Story
from local.fixtures.event_source import SqsEventSource, sqs_event
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import REGION, Deployment, attribute_values, drain

PORTFOLIO = "port_abc123"


@pytest.fixture
def api_version() -> str:
    return "v2"


def posts(emulator: GliderEmulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST")


def lines(logs: LocalFunction | Story, field: str) -> list[dict[str, Any]]:
    return [log for log in logs.logs if field in log]


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
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.set_workflow_seconds(60)
    emulator.script(PORTFOLIO, Fault.lost_response())

    story = deliver({"portfolioId": PORTFOLIO})

    triggered = story.of(PORTFOLIO)
    assert triggered["outcome"] == "triggered"
    assert posts(emulator) == 1  # the lost one: never sent twice
    assert len(emulator.rebalances) == 1
    assert triggered["reconciled"] is True
    assert triggered.get("rebalance_id") is None  # v2 says when, not which
    # Which rebalance is unknown, so it cannot be followed: its outcome is said at once.
    [outcome] = lines(story, "rebalance_outcome")
    assert (outcome["rebalance_outcome"], outcome["reason"]) == ("unknown", "REBALANCE_ID_UNKNOWN")


def test_unreconciled_a_late_repeat_answered_with_the_lost_attempts_rebalance_stays_flagged(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
) -> None:
    emulator.set_workflow_seconds(60)
    # Lost, then a cooldown answer that holds the repeat back 6 s, then Glider's own answer:
    # the rebalance in flight, submitted after the delivery's first attempt left. Nothing
    # doubled, but nothing proves which attempt started it: flagged, not called "joined".
    emulator.script(PORTFOLIO, Fault.lost_response(), Fault.rate_limited(retry_after=6))
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))  # nothing found
    function = start_function(RETRY_MAX_DELAY_SECONDS="10")

    triggered = deliver({"portfolioId": PORTFOLIO}, function=function).of(PORTFOLIO)

    assert triggered["outcome"] == "triggered"
    assert posts(emulator) == 3
    [rebalance] = emulator.rebalances  # one rebalance for three POSTs
    assert triggered["rebalance_id"] == rebalance.operation_id
    assert emulator.collapsed_triggers() == 1
    assert "joined_in_flight" not in triggered
    assert triggered["level"] == "WARNING"
    assert triggered["maybe_delivered_attempts"] == 1


def test_a_glider_clock_behind_ours_never_passes_a_second_rebalance_off_as_joined(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.set_clock_offset(-10)  # Glider's clock 10 s behind ours
    emulator.script(PORTFOLIO, Fault.lost_response())
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))

    triggered = deliver({"portfolioId": PORTFOLIO}).of(PORTFOLIO)

    assert triggered["outcome"] == "triggered"
    assert len(emulator.rebalances) == 2  # the lost one had finished: the repeat started one
    assert "joined_in_flight" not in triggered  # never "started no new one"
    assert triggered["maybe_delivered_attempts"] == 1  # flagged for support


def test_a_key_without_portfolios_write_is_systemic_and_says_what_to_ask_for(
    function: LocalFunction,
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    emulator.add_v2_key("gldr_sk_readonly", scopes=("portfolios:read",))
    deployment.put_api_key(json.dumps({"apiKey": "gldr_sk_readonly"}))
    function = LocalFunction(function.env)  # a new environment: the new key, not the cached one

    story = deliver({"portfolioId": PORTFOLIO}, function=function)
    failed = story.of(PORTFOLIO)
    assert (failed["failure_class"], failed["reason"]) == ("systemic", "FORBIDDEN")
    assert failed["action"] == "retry"  # kept for when the key is fixed
    assert deployment.dlq_messages() == []
    # Not fixed by its last receive (maxReceiveCount 2): lettered, with what to ask for.
    last = SqsEventSource(deployment.sqs, deployment.work_queue).poll(
        function.invoke, wait_seconds=5
    )

    assert last is not None
    assert last.deleted
    assert emulator.rebalances == []
    [letter] = deployment.dlq_messages()
    attributes = attribute_values(letter)
    assert attributes["failureClass"] == "systemic"
    assert attributes["apiErrorCode"] == "API_104"
    assert "ask Glider for portfolios:write" in attributes["detail"]
    assert "gldr_sk_readonly" not in json.dumps(function.logs)


def test_if_glider_serves_the_trigger_under_the_docs_other_name_it_is_said_once_loudly(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # The docs disagree: /rebalance (which we call) or /trigger. Were it /trigger, no portfolio
    # would be "not found": the invocation halts on the route, keeps the work and alarms.
    emulator.set_v2_trigger_route("trigger")
    function = start_function(MAX_CONCURRENCY="1")
    ids = [PORTFOLIO, "port_def456"]

    story = deliver({"portfolioIds": ids}, function=function)

    assert [len(batch.redelivered) for batch in story.batches] == [2]  # kept for later
    assert {o["action"] for o in story.outcomes} == {"retry"}
    # One call: whichever portfolio went first halted the invocation on the route.
    [request] = emulator.requests
    assert {o["reason"] for o in story.outcomes} == {"ROUTE_NOT_FOUND"}
    [failed] = [o for o in story.outcomes if o["attempts"] == 1]
    assert failed["portfolio_id"] in ids
    assert request.path == f"/v2/portfolios/{failed['portfolio_id']}/rebalance"
    assert failed["level"] == "ERROR"
    assert f"POST {emulator.base_url}{request.path}" in failed["detail"]
    assert [m["SystemicFailures"] for m in function.metrics if "SystemicFailures" in m] == [[1.0]]
    assert emulator.rebalances == []
    assert deployment.dlq_messages() == []


def test_a_rebalance_awaiting_its_owner_is_said_once_counted_and_followed_on(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(FOLLOW_FIRST_DELAY_SECONDS="1")
    emulator.set_workflow_seconds(2)
    emulator.await_user_next_rebalance(PORTFOLIO)

    assert deliver({"portfolioId": PORTFOLIO}, function=function).triggered == 1
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
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(FOLLOW_FIRST_DELAY_SECONDS="1")
    emulator.set_workflow_seconds(1)
    emulator.fail_next_rebalance(PORTFOLIO, "cancelled by the owner", state="cancelled")

    triggered = deliver({"portfolioId": PORTFOLIO}, function=function).of(PORTFOLIO)
    run_follow_ups(function, deployment)

    [outcome] = lines(function, "rebalance_outcome")
    assert (outcome["rebalance_outcome"], outcome["rebalance_status"]) == ("failed", "cancelled")
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["reason"] == "REBALANCE_FAILED"
    assert attribute_values(letter)["source"] == f"follow-up:{triggered['rebalance_id']}"


# --- lastRebalanceAt read as an end time (the docs say neither): still nothing doubled -------


def test_read_as_an_end_a_lost_answer_still_in_flight_is_sent_again_and_joined_not_doubled(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.set_last_rebalance_at("end")
    emulator.set_workflow_seconds(60)  # still running when the repeat comes
    emulator.script(PORTFOLIO, Fault.lost_response())

    triggered = deliver({"portfolioId": PORTFOLIO}).of(PORTFOLIO)

    assert posts(emulator) == 2  # nothing has ended yet: the repeat is sent ...
    [rebalance] = emulator.rebalances  # ... and Glider answers it with the one in flight
    assert emulator.collapsed_triggers() == 1
    assert triggered["outcome"] == "triggered"
    assert triggered["rebalance_id"] == rebalance.operation_id  # known, so it is followed


def test_read_as_an_end_a_lost_answers_finished_rebalance_closes_it(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.set_last_rebalance_at("end")  # instantly final: it has ended when looked for
    emulator.script(PORTFOLIO, Fault.lost_response())

    triggered = deliver({"portfolioId": PORTFOLIO}).of(PORTFOLIO)

    assert triggered["outcome"] == "triggered"
    assert triggered["reconciled"] is True
    assert posts(emulator) == 1
    assert len(emulator.rebalances) == 1


def test_a_replay_after_the_lost_attempts_rebalance_ended_long_after_its_window_sends_nothing(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    # A letter of a failure after a lost answer carries the window its attempt was sent in; the
    # rebalance it started ran for 7 s and ended long after that window closed. Read as an
    # end, lastRebalanceAt is outside the window; it still says a rebalance ran since.
    emulator.set_last_rebalance_at("end")
    emulator.set_workflow_seconds(7)
    before = time.time()
    deliver({"portfolioId": PORTFOLIO})  # the lost attempt's rebalance, as it were
    after = time.time()
    time.sleep(7.5)
    window = {"after": iso_time(before), "before": iso_time(after)}

    replay = deliver({"portfolioId": PORTFOLIO, "mayHaveStarted": window}).of(PORTFOLIO)

    assert replay["outcome"] == "triggered"
    assert replay["reconciled"] is True
    assert posts(emulator) == 1  # the replay sent nothing
    assert len(emulator.rebalances) == 1


# --- a repeat joined to the rebalance in flight: counted as joined, not as a new rebalance ----


def metric_values(function: LocalFunction, name: str) -> list[float]:
    return [value for m in function.metrics if name in m for value in m[name]]


def test_a_repeat_glider_joins_to_the_rebalance_in_flight_is_not_counted_as_a_new_rebalance(
    function: LocalFunction, deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.set_workflow_seconds(600)  # still in flight when the repeat comes
    first = deliver({"portfolioId": PORTFOLIO}).of(PORTFOLIO)
    emulator.backdate_latest(PORTFOLIO, 120)  # submitted well before the repeat's delivery

    repeat = deliver({"portfolioId": PORTFOLIO}).of(PORTFOLIO)

    [rebalance] = emulator.rebalances  # one rebalance started, for two triggers
    assert repeat["rebalance_id"] == first["rebalance_id"] == rebalance.operation_id
    assert posts(emulator) == 2
    assert len(lines(function, "joined_in_flight")) == 1  # said once, for the repeat
    assert metric_values(function, "RebalancesTriggered") == [1.0]  # the first only
    assert metric_values(function, "TriggersJoinedInFlight") == [1.0]  # the repeat
