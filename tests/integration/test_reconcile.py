"""Lost answers reconciled with Glider's status endpoint, through the real handler, the moto
server and the emulator: a trigger whose answer proves nothing is looked for among the
portfolio's recent rebalances before it is sent again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import urllib3

from glider_trigger.domain.reconcile import CLOCK_SKEW_SECONDS
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import Deployment
from tests.conftest import API_KEY

PORTFOLIO = "port_abc123"


def posts(emulator: GliderEmulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST")


def status_reads(emulator: GliderEmulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "GET")


def only_result(response: dict[str, object]) -> dict[str, object]:
    [result] = response["results"]  # type: ignore[misc]
    return result  # type: ignore[no-any-return]


def test_a_lost_answer_is_reconciled_without_a_second_post(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    [rebalance] = emulator.rebalances
    assert result["outcome"] == "triggered"
    assert result["reconciled"] is True
    assert result["rebalanceId"] == rebalance.rebalance_id
    assert (posts(emulator), status_reads(emulator)) == (1, 1)
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert line["reconciled"] is True
    assert line["rebalance_id"] == rebalance.rebalance_id


def test_a_5xx_after_glider_acted_is_reconciled(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.acted_then_error(503))

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["reconciled"] is True
    assert len(emulator.rebalances) == 1
    assert posts(emulator) == 1


def test_a_lost_answer_with_nothing_listed_is_posted_again(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.connection_reset())  # reset before Glider acted

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert "reconciled" not in result
    assert len(emulator.rebalances) == 1
    assert (posts(emulator), status_reads(emulator)) == (2, 1)


def test_a_refusal_is_not_reconciled(function: LocalFunction, emulator: GliderEmulator) -> None:
    emulator.script(PORTFOLIO, Fault.rate_limited(retry_after=0))

    only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert status_reads(emulator) == 0


def test_with_the_status_endpoint_down_the_trigger_is_sent_again_and_flagged(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert len(emulator.rebalances) == 2  # the repeat, as without reconciling
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert line["maybe_delivered_attempts"] == 1
    [warning] = [log for log in function.logs if "recent rebalances" in log["message"]]
    assert warning["reason"] == "SERVER_ERROR"


def test_a_key_that_may_not_read_status_warns_once_and_stops_reconciling(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.add_portfolio("port_def456")
    emulator.script(PORTFOLIO, Fault.lost_response())
    emulator.script("port_def456", Fault.lost_response())
    emulator.set_status_outage(Fault.error(403, "API_104", "Permission denied"))

    function.invoke({"portfolioId": PORTFOLIO})
    function.invoke({"portfolioId": "port_def456"})

    assert status_reads(emulator) == 1  # not asked again by this execution environment
    warnings = [log for log in function.logs if "may not read rebalance status" in log["message"]]
    assert len(warnings) == 1
    assert len(emulator.rebalances) == 4  # each lost answer repeated, as without reconciling


def test_switched_off_a_lost_answer_is_repeated_as_before(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator
) -> None:
    function = start_function(RECONCILE_LOST_ANSWERS="false")
    emulator.script(PORTFOLIO, Fault.lost_response())

    function.invoke({"portfolioId": PORTFOLIO})

    assert status_reads(emulator) == 0
    assert len(emulator.rebalances) == 2


def test_an_accepted_trigger_whose_answer_was_cut_off_gets_its_rebalance_id(
    function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.truncated())

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    [rebalance] = emulator.rebalances
    assert result["rebalanceId"] == rebalance.rebalance_id
    assert "reason" not in result  # no longer REBALANCE_ID_UNKNOWN
    assert posts(emulator) == 1


def sqs_event(body: str, *, receive_count: int, first_received_ms: int) -> dict[str, object]:
    return {
        "Records": [
            {
                "messageId": "m-again",
                "receiptHandle": "h",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "ApproximateFirstReceiveTimestamp": str(first_received_ms),
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
            }
        ]
    }


def test_a_redelivered_record_looks_for_what_its_earlier_receive_started(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator
) -> None:
    function = start_function(GLIDER_MAX_ATTEMPTS="1")
    first_received_ms = int(time.time() * 1000)
    body = json.dumps({"portfolioId": PORTFOLIO})
    emulator.script(PORTFOLIO, Fault.lost_response())

    first = function.invoke(sqs_event(body, receive_count=1, first_received_ms=first_received_ms))
    again = function.invoke(sqs_event(body, receive_count=2, first_received_ms=first_received_ms))

    assert first == {"batchItemFailures": [{"itemIdentifier": "m-again"}]}
    assert again == {"batchItemFailures": []}
    assert len(emulator.rebalances) == 1
    assert posts(emulator) == 1  # the lost one: found on the redelivery, not sent again
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert line["reconciled"] is True


def lost_and_dead_lettered(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator, deployment: Deployment
) -> tuple[LocalFunction, dict[str, object]]:
    """An attempt whose answer is lost, its only one: the function and the letter's body."""
    function = start_function(GLIDER_MAX_ATTEMPTS="1")
    emulator.script(PORTFOLIO, Fault.lost_response())
    function.invoke({"portfolioId": PORTFOLIO})
    [letter] = deployment.dlq_messages()
    return function, json.loads(letter["Body"])


def test_a_replayed_dead_letter_looks_before_it_sends(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function, body = lost_and_dead_lettered(start_function, emulator, deployment)
    assert set(body["mayHaveStarted"]) == {"after", "before"}

    response = function.invoke(body)  # the operator replays it

    assert only_result(response)["reconciled"] is True
    assert len(emulator.rebalances) == 1
    assert posts(emulator) == 1


@pytest.mark.both_api_versions
@pytest.mark.parametrize("offset", [-60, 60])
def test_a_glider_clock_a_minute_off_still_finds_the_lost_answers_rebalance(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator, offset: int
) -> None:
    emulator.set_clock_offset(offset)  # its times are read on our clock, from its Date header
    emulator.script(PORTFOLIO, Fault.lost_response())

    result = only_result(start_function().invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert result.get("reconciled") is True
    assert posts(emulator) == 1
    assert len(emulator.rebalances) == 1


@pytest.mark.both_api_versions
def test_a_slow_answer_still_reads_glider_s_clock_within_its_round_trip(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator
) -> None:
    # A loaded machine or network: every answer takes 2.5 s, so the Date header tells Glider's
    # clock only to within about half of that. Glider's clock a minute behind still has to be
    # read: taken as ours, the lost attempt's rebalance would look a minute too early, be
    # passed over, and be sent again.
    emulator.set_clock_offset(-60)
    emulator.set_latency(2.5)
    emulator.script(PORTFOLIO, Fault.lost_response())

    function = start_function(GLIDER_READ_TIMEOUT_SECONDS="6")
    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert result["outcome"] == "triggered"
    assert result.get("reconciled") is True
    assert posts(emulator) == 1
    assert len(emulator.rebalances) == 1


def rebalance_elsewhere(emulator: GliderEmulator, times: int) -> None:
    """Later rebalances of the portfolio by others (its schedule, other deliveries), after the
    clock-skew allowance around the lost attempt (a scaled-down 6-hourly schedule)."""
    time.sleep(CLOCK_SKEW_SECONDS + 1)
    http = urllib3.PoolManager()
    for _ in range(times):
        answer = http.request(
            "POST",
            f"{emulator.base_url}/v1/portfolio/{PORTFOLIO}/rebalance/schedule/trigger",
            headers={"X-API-KEY": API_KEY, "Content-Type": "application/json"},
            body=b'{"skipScheduleValidation": false}',
        )
        assert answer.status == 200


def test_a_replay_pages_back_to_the_lost_answers_rebalance(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function, body = lost_and_dead_lettered(start_function, emulator, deployment)
    rebalance_elsewhere(emulator, 12)  # more than the first page holds

    result = only_result(function.invoke(body))

    assert result["reconciled"] is True  # found on the next page: not sent again
    assert result["rebalanceId"] == emulator.rebalances[0].rebalance_id  # the lost attempt's
    assert len(emulator.rebalances) == 13


def test_a_list_that_cannot_reach_back_to_the_lost_answer_is_no_proof_that_nothing_started(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function, body = lost_and_dead_lettered(start_function, emulator, deployment)
    rebalance_elsewhere(emulator, 60)  # more than Glider lists at all (the emulator: 50)

    result = only_result(function.invoke(body))

    assert result["outcome"] == "triggered"
    [triggered] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert triggered["level"] == "WARNING"  # a possible repeat, flagged: never "nothing started"
    assert triggered["maybe_delivered_attempts"] == 1
    [warning] = [log for log in function.logs if "recent rebalances" in log["message"]]
    assert warning["reason"] == "RECENT_LIST_CUT_OFF"


def test_a_listed_rebalance_id_too_long_to_follow_is_triggered_with_its_outcome_unknown_at_once(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())
    long_id = "rebal_" + "x" * 300
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    listing = {
        "success": True,
        "data": {
            "portfolioId": PORTFOLIO,
            "status": "active",
            "recentWorkflows": [{"workflowId": long_id, "startedAt": now, "status": "running"}],
        },
    }
    emulator.script_status(
        PORTFOLIO,
        Fault.malformed(body=json.dumps(listing).encode(), content_type="application/json"),
    )

    result = only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert (result["outcome"], result["reconciled"]) == ("triggered", True)
    assert posts(emulator) == 1
    [outcome] = [log for log in function.logs if "rebalance_outcome" in log]
    assert (outcome["rebalance_outcome"], outcome["reason"]) == ("unknown", "REBALANCE_ID_UNKNOWN")
    assert deployment.follow_up_queue is not None
    assert (
        deployment.sqs.receive_message(QueueUrl=deployment.follow_up_queue.url).get("Messages", [])
        == []
    )  # no follow-up that the parser would refuse


def test_a_replay_looks_at_the_recorded_windows_not_at_one_around_them(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # Two failures of one delivery, 12 s apart, each a 503 that started nothing; between them
    # another delivery rebalances the portfolio. The letter carries one window around both;
    # the guard's record has the two exact ones, and the replay looks at those.
    function = start_function(GLIDER_MAX_ATTEMPTS="1")
    down = Fault.error(503, "API_000", "down")
    emulator.script(PORTFOLIO, down)
    function.invoke({"portfolioId": PORTFOLIO, "idempotencyKey": "delivery-x"})
    [first] = deployment.dlq_messages()
    time.sleep(CLOCK_SKEW_SECONDS + 1)
    function.invoke({"portfolioId": PORTFOLIO, "idempotencyKey": "delivery-y"})
    time.sleep(CLOCK_SKEW_SECONDS + 1)
    emulator.set_status_outage(Fault.error(503, "API_000", "status down"))
    emulator.script(PORTFOLIO, down)
    function.invoke(json.loads(first["Body"]))  # replayed: the look fails, a 503 again
    [second] = deployment.dlq_messages()
    emulator.set_status_outage(None)

    result = only_result(function.invoke(json.loads(second["Body"])))

    assert result["outcome"] == "triggered"
    assert "reconciled" not in result  # delivery-y's rebalance is not taken for delivery-x's
    assert len(emulator.rebalances) == 2


def test_a_5xx_after_which_glider_acted_repeated_after_a_failed_look_is_flagged(
    start_function: Callable[..., LocalFunction], emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.acted_then_error(503))
    emulator.set_status_outage(Fault.error(503, "API_000", "status down"))

    function = start_function(GLIDER_MAX_ATTEMPTS="2")

    only_result(function.invoke({"portfolioId": PORTFOLIO}))

    assert len(emulator.rebalances) == 2  # the repeat no client can rule out here ...
    [line] = [log for log in function.logs if log.get("outcome") == "triggered"]
    assert line["level"] == "WARNING"  # ... is never silent
    assert line["maybe_delivered_attempts"] == 1


def test_the_longer_list_takes_a_pacing_slot_of_its_own(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    _, body = lost_and_dead_lettered(start_function, emulator, deployment)
    rebalance_elsewhere(emulator, 12)  # more than the first page holds
    paced = start_function(RATE_LIMIT_PER_SECOND="0.5")
    before = len(emulator.requests)

    result = only_result(paced.invoke(body))

    assert result["reconciled"] is True
    gets = [r.received_at for r in emulator.requests[before:] if r.method == "GET"]
    assert len(gets) == 2
    assert gets[1] - gets[0] >= 1.9  # 0.5 a second: a slot every 2 s
