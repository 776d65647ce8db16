"""Lost answers reconciled with Glider's status endpoint, through the real handler, the moto
server and the emulator: a trigger whose answer proves nothing is looked for among the
portfolio's recent rebalances before it is sent again. Each event is delivered as the stack
delivers it (queued, then triggered from the work queue), and what happened is read from the
portfolio's outcome line, the emulator and the DLQ."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import urllib3

from glider_trigger.domain.reconcile import CLOCK_SKEW_SECONDS
from local.fixtures.delivery import Story
from local.fixtures.event_source import SqsEventSource
from local.fixtures.function import LocalFunction, json_records
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import Deployment
from tests.conftest import API_KEY

PORTFOLIO = "port_abc123"


def posts(emulator: GliderEmulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST")


def status_reads(emulator: GliderEmulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "GET")


def warnings_about(story: Story, words: str) -> list[dict[str, object]]:
    return [log for log in story.logs if words in str(log["message"])]


def test_a_lost_answer_is_reconciled_without_a_second_post(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())

    story = deliver({"portfolioId": PORTFOLIO})

    [rebalance] = emulator.rebalances
    line = story.of(PORTFOLIO)
    assert line["outcome"] == "triggered"
    assert line["reconciled"] is True
    assert line["rebalance_id"] == rebalance.rebalance_id
    assert (posts(emulator), status_reads(emulator)) == (1, 1)


def test_a_5xx_after_glider_acted_is_reconciled(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.acted_then_error(503))

    story = deliver({"portfolioId": PORTFOLIO})

    assert story.of(PORTFOLIO)["reconciled"] is True
    assert len(emulator.rebalances) == 1
    assert posts(emulator) == 1


def test_a_lost_answer_with_nothing_listed_is_posted_again(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.connection_reset())  # reset before Glider acted

    story = deliver({"portfolioId": PORTFOLIO})

    line = story.of(PORTFOLIO)
    assert line["outcome"] == "triggered"
    assert "reconciled" not in line
    assert len(emulator.rebalances) == 1
    assert (posts(emulator), status_reads(emulator)) == (2, 1)


def test_a_refusal_is_not_reconciled(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.rate_limited(retry_after=0))

    story = deliver({"portfolioId": PORTFOLIO})

    assert story.of(PORTFOLIO)["outcome"] == "triggered"
    assert posts(emulator) == 2  # refused, then sent again ...
    assert status_reads(emulator) == 0  # ... without looking for what a refusal cannot start


def test_with_the_status_endpoint_down_the_trigger_is_sent_again_and_flagged(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())
    emulator.set_status_outage(Fault.error(503, "API_000", "status unavailable"))

    story = deliver({"portfolioId": PORTFOLIO})

    line = story.of(PORTFOLIO)
    assert line["outcome"] == "triggered"
    assert len(emulator.rebalances) == 2  # the repeat, as without reconciling
    assert line["maybe_delivered_attempts"] == 1
    [warning] = warnings_about(story, "recent rebalances")
    assert warning["reason"] == "SERVER_ERROR"


def test_a_key_that_may_not_read_status_warns_once_and_stops_reconciling(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.add_portfolio("port_def456")
    emulator.script(PORTFOLIO, Fault.lost_response())
    emulator.script("port_def456", Fault.lost_response())
    emulator.set_status_outage(Fault.error(403, "API_104", "Permission denied"))

    first = deliver({"portfolioId": PORTFOLIO})
    second = deliver({"portfolioId": "port_def456"})  # the same execution environment

    assert (first.triggered, second.triggered) == (1, 1)
    assert status_reads(emulator) == 1  # not asked again by this execution environment
    assert len(warnings_about(first, "may not read rebalance status")) == 1
    assert warnings_about(second, "may not read rebalance status") == []
    assert len(emulator.rebalances) == 4  # each lost answer repeated, as without reconciling


def test_an_accepted_trigger_whose_answer_was_cut_off_gets_its_rebalance_id(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.script(PORTFOLIO, Fault.truncated())

    story = deliver({"portfolioId": PORTFOLIO})

    [rebalance] = emulator.rebalances
    line = story.of(PORTFOLIO)
    assert line["rebalance_id"] == rebalance.rebalance_id
    assert "reason" not in line  # no longer REBALANCE_ID_UNKNOWN
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
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> tuple[LocalFunction, dict[str, object]]:
    """A delivery whose last attempt's answer is lost, on its last receive: the function and
    the letter's body. Its first receive is refused (which starts nothing) and kept for retry;
    its second (the last, maxReceiveCount 2) sends its only attempt, whose answer is lost."""
    function = start_function(GLIDER_MAX_ATTEMPTS="1")
    emulator.script(PORTFOLIO, Fault.rate_limited(retry_after=0), Fault.lost_response())
    story = deliver({"portfolioId": PORTFOLIO}, function=function)
    assert story.of(PORTFOLIO)["action"] == "retry"
    last = SqsEventSource(deployment.sqs, deployment.work_queue).poll(
        function.invoke, wait_seconds=5
    )
    assert last is not None
    assert last.deleted  # lettered by the function itself, not left to the redrive
    [letter] = deployment.dlq_messages()
    assert len(emulator.rebalances) == 1
    return function, json.loads(letter["Body"])


def replayed(deployment: Deployment, function: LocalFunction, letter: dict[str, object]) -> Story:
    """The letter's body moved to the work queue verbatim (what `glider-trigger dlq redrive`
    does), and the work queue run through the function."""
    function.new_lines()
    deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=json.dumps(letter))
    batches = SqsEventSource(deployment.sqs, deployment.work_queue).drain(
        function.invoke, idle_seconds=0
    )
    logs = [r for r in json_records(function.new_lines()) if "_aws" not in r]
    return Story({}, batches, logs)


def test_a_replayed_dead_letter_looks_before_it_sends(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function, body = lost_and_dead_lettered(start_function, deliver, emulator, deployment)
    assert set(body["mayHaveStarted"]) == {"after", "before"}  # type: ignore[arg-type]
    sent = posts(emulator)

    story = replayed(deployment, function, body)  # the operator replays it

    assert story.of(PORTFOLIO)["reconciled"] is True
    assert len(emulator.rebalances) == 1
    assert posts(emulator) == sent  # looked for, found: not sent again


@pytest.mark.both_api_versions
@pytest.mark.parametrize("offset", [-60, 60])
def test_a_glider_clock_a_minute_off_still_finds_the_lost_answers_rebalance(
    deliver: Callable[..., Story], emulator: GliderEmulator, offset: int
) -> None:
    emulator.set_clock_offset(offset)  # its times are read on our clock, from its Date header
    emulator.script(PORTFOLIO, Fault.lost_response())

    line = deliver({"portfolioId": PORTFOLIO}).of(PORTFOLIO)

    assert line["outcome"] == "triggered"
    assert line.get("reconciled") is True
    assert posts(emulator) == 1
    assert len(emulator.rebalances) == 1


@pytest.mark.both_api_versions
def test_a_slow_answer_still_reads_glider_s_clock_within_its_round_trip(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
) -> None:
    # A loaded machine or network: every answer takes 2.5 s, so the Date header tells Glider's
    # clock only to within about half of that. Glider's clock a minute behind still has to be
    # read: taken as ours, the lost attempt's rebalance would look a minute too early, be
    # passed over, and be sent again.
    emulator.set_clock_offset(-60)
    emulator.set_latency(2.5)
    emulator.script(PORTFOLIO, Fault.lost_response())

    function = start_function(GLIDER_READ_TIMEOUT_SECONDS="6")
    line = deliver({"portfolioId": PORTFOLIO}, function=function).of(PORTFOLIO)

    assert line["outcome"] == "triggered"
    assert line.get("reconciled") is True
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
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function, body = lost_and_dead_lettered(start_function, deliver, emulator, deployment)
    rebalance_elsewhere(emulator, 12)  # more than the first page holds

    line = replayed(deployment, function, body).of(PORTFOLIO)

    assert line["reconciled"] is True  # found on the next page: not sent again
    assert line["rebalance_id"] == emulator.rebalances[0].rebalance_id  # the lost attempt's
    assert len(emulator.rebalances) == 13


def test_a_list_that_cannot_reach_back_to_the_lost_answer_is_no_proof_that_nothing_started(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function, body = lost_and_dead_lettered(start_function, deliver, emulator, deployment)
    rebalance_elsewhere(emulator, 60)  # more than Glider lists at all (the emulator: 50)

    story = replayed(deployment, function, body)

    triggered = story.of(PORTFOLIO)
    assert triggered["outcome"] == "triggered"
    assert len(emulator.rebalances) == 62  # the lost one's, the 60, and the replay's
    assert triggered["level"] == "WARNING"  # a possible repeat, flagged: never "nothing started"
    assert triggered["maybe_delivered_attempts"] == 1
    [warning] = warnings_about(story, "recent rebalances")
    assert warning["reason"] == "RECENT_LIST_CUT_OFF"


def test_a_listed_rebalance_id_too_long_to_follow_is_triggered_with_its_outcome_unknown_at_once(
    deliver: Callable[..., Story], emulator: GliderEmulator, deployment: Deployment
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

    story = deliver({"portfolioId": PORTFOLIO})

    line = story.of(PORTFOLIO)
    assert (line["outcome"], line["reconciled"]) == ("triggered", True)
    assert posts(emulator) == 1
    [outcome] = [log for log in story.logs if "rebalance_outcome" in log]
    assert (outcome["rebalance_outcome"], outcome["reason"]) == ("unknown", "REBALANCE_ID_UNKNOWN")
    assert deployment.follow_up_queue is not None
    assert (
        deployment.sqs.receive_message(QueueUrl=deployment.follow_up_queue.url).get("Messages", [])
        == []
    )  # no follow-up that the parser would refuse


def test_a_replay_looks_at_the_recorded_windows_not_at_one_around_them(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # Two receives of one delivery, 12 s apart, each a 503 that started nothing; between them
    # another delivery rebalances the portfolio. The letter carries one window around both;
    # the guard's record has the two exact ones, and the replay looks at those.
    function = start_function(GLIDER_MAX_ATTEMPTS="1")
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    down = Fault.error(503, "API_000", "down")
    emulator.script(PORTFOLIO, down)
    x = deliver({"portfolioId": PORTFOLIO, "idempotencyKey": "delivery-x"}, function=function)
    assert x.of(PORTFOLIO)["action"] == "retry"
    time.sleep(CLOCK_SKEW_SECONDS + 1)
    # Another delivery, an upstream system's message: triggered.
    y = sqs_event(
        json.dumps({"portfolioId": PORTFOLIO, "idempotencyKey": "delivery-y"}),
        receive_count=1,
        first_received_ms=int(time.time() * 1000),
    )
    assert function.invoke(y) == {"batchItemFailures": []}
    time.sleep(CLOCK_SKEW_SECONDS + 1)
    emulator.set_status_outage(Fault.error(503, "API_000", "status down"))
    emulator.script(PORTFOLIO, down)
    last = source.poll(function.invoke)  # delivery-x's last receive: the look fails, a 503
    assert last is not None
    assert last.deleted
    [letter] = deployment.dlq_messages()
    emulator.set_status_outage(None)
    assert len(emulator.rebalances) == 1  # delivery-y's

    line = replayed(deployment, function, json.loads(letter["Body"])).of(PORTFOLIO)

    assert line["outcome"] == "triggered"
    assert "reconciled" not in line  # delivery-y's rebalance is not taken for delivery-x's
    assert len(emulator.rebalances) == 2


def test_a_5xx_after_which_glider_acted_repeated_after_a_failed_look_is_flagged(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
) -> None:
    emulator.script(PORTFOLIO, Fault.acted_then_error(503))
    emulator.set_status_outage(Fault.error(503, "API_000", "status down"))

    function = start_function(GLIDER_MAX_ATTEMPTS="2")

    line = deliver({"portfolioId": PORTFOLIO}, function=function).of(PORTFOLIO)

    assert line["outcome"] == "triggered"
    assert len(emulator.rebalances) == 2  # the repeat no client can rule out here ...
    assert line["level"] == "WARNING"  # ... is never silent
    assert line["maybe_delivered_attempts"] == 1


def test_the_longer_list_takes_a_pacing_slot_of_its_own(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    _, body = lost_and_dead_lettered(start_function, deliver, emulator, deployment)
    rebalance_elsewhere(emulator, 12)  # more than the first page holds
    paced = start_function(RATE_LIMIT_PER_SECOND="0.5")
    before = len(emulator.requests)

    line = replayed(deployment, paced, body).of(PORTFOLIO)

    assert line["reconciled"] is True
    gets = [r.received_at for r in emulator.requests[before:] if r.method == "GET"]
    assert len(gets) == 2
    assert gets[1] - gets[0] >= 1.9  # 0.5 a second: a slot every 2 s
