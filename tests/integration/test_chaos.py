"""The quick chaos run (`python -m local.chaos --quick`), in process: ~300 ids through the real
handler under every kind of injected fault, execution environments that crash mid-invocation
among them, portfolios delivered twice under Glider's cooldown, lost answers more than a page
down, Glider's clock off ours, then a replay of the whole DLQ. Nothing may be lost, nothing
doubled (the replay of the function's own letters and of destination records included), no
repeat unflagged, no request to Glider over the rate ceiling."""

from __future__ import annotations

from dataclasses import replace

import pytest

from glider_trigger.outbound.guard import ONCE_KEY_PREFIX, Status, record_id
from glider_trigger.settings import ApiVersion
from local.chaos.accounting import announced_repeats, joined_deliveries
from local.chaos.amnesia import sweep
from local.chaos.config import ChaosConfig
from local.chaos.faults import (
    AWS_FAULTS,
    CRASH_FAULT,
    GLIDER_FAULTS,
    PARTIAL_QUEUE_FAULT,
    SCENARIO_FAULTS,
)
from local.chaos.letters import DESTINATION, GUARDED_KINDS, OWN_LETTERS
from local.chaos.pacing import check_pacing
from local.chaos.plan import AFTER_COOLDOWN, AT_COOLDOWN_END, MINUTES_APART, TOGETHER
from local.chaos.report import ChaosReport
from local.chaos.run import run_chaos
from local.fixtures.glider_emulator import RecordedRequest
from local.fixtures.stack import Deployment


class ChaosChecks:
    """What every quick run must show; run once per Glider API version (the subclasses), each in
    its own class scope, so `--dist loadscope` gives the two runs to different workers."""

    def test_the_run_drained(self, report: ChaosReport) -> None:
        assert report.pending == 0, report.pending_ids

    def test_nothing_lost(self, report: ChaosReport) -> None:
        assert report.lost == 0, report.lost_ids

    def test_nothing_doubled_by_a_redelivery_or_a_retry(self, report: ChaosReport) -> None:
        assert report.doubled_by_redelivery == 0, (report.doubled_ids, report.doubled_by_cause)

    def test_every_kind_of_fault_was_injected(self, report: ChaosReport) -> None:
        kinds = (*GLIDER_FAULTS, *AWS_FAULTS, *SCENARIO_FAULTS)
        missing = [key for key in kinds if report.faults.get(key, 0) < 1]
        assert not missing, report.faults
        # ... and the paths they are there to exercise were taken.
        assert report.invocations["SQS records reported for retry"] > 0
        assert report.invocations["on-failure destination records"] > 0
        assert report.invocations["function's DLQ writes that failed"] > 0
        # A secret exhausted for a batch fails its triggers SECRET_THROTTLED: transient, so kept
        # on the work queue and triggered on a later receive (a letter only on a last receive):
        # injected (above), and nothing lost (the verdict).

    def test_crashed_environments_were_replaced_and_retried_inside_their_in_progress_window(
        self,
        report: ChaosReport,
    ) -> None:
        assert report.faults[CRASH_FAULT] >= 2
        # Each crash costs the environment: the next invocation is a cold start.
        assert (
            report.invocations["execution environments (cold starts)"] > report.faults[CRASH_FAULT]
        )
        # SQS redelivered the crashed batch (after its 1 s visibility timeout) while the crashed
        # invocation's claimed records were still in progress: the case under test.
        assert report.crash_retries_in_window >= 1

    def test_a_partial_work_queue_write_left_stale_messages(self, report: ChaosReport) -> None:
        # An event's queue write failed after a batch of it landed (its batches go out in
        # parallel: how many landed varies): Lambda's retry queued every portfolio again under
        # the same key, and the copies that had landed were found done (nothing doubled: above).
        assert report.faults[PARTIAL_QUEUE_FAULT] >= 1
        stale = "stale work-queue messages (written before a failed write)"
        assert report.invocations[stale] >= 1

    def test_the_whole_dlq_was_replayed(self, report: ChaosReport) -> None:
        assert sum(report.replayed.values()) > 0
        assert report.replayed.get(OWN_LETTERS, 0) > 0, report.replayed
        assert report.replayed.get(DESTINATION, 0) > 0, report.replayed
        assert report.invocations["SQS batches during the replay"] > 0

    def test_the_replay_of_letters_and_destination_records_doubles_nothing(
        self,
        report: ChaosReport,
    ) -> None:
        assert report.replay_doubled_guarded == 0, (
            report.replay_doubled_ids,
            report.replay_doubled_by_kind,
        )
        assert all(report.replay_doubled_by_kind.get(kind, 0) == 0 for kind in GUARDED_KINDS)

    def test_lost_answers_and_5xx_after_glider_acted_repeat_nothing(
        self, report: ChaosReport
    ) -> None:
        assert report.faults["glider.lost_response"] + report.faults["glider.acted_then_error"] > 0
        # ... on a delivery's last try too: its next receive, retry or replayed letter finds
        # the rebalance on Glider's clock, behind ours and then ahead of it.
        assert report.faults["glider.lost_last_try"] > 0
        assert min(report.clock_offsets) <= -20
        assert max(report.clock_offsets) >= 20
        assert report.reconciled > 0
        assert report.unpreventable_after_reconcilable == 0, report.table()

    def test_every_repeat_is_flagged_by_the_delivery_that_sent_it(
        self, report: ChaosReport
    ) -> None:
        assert report.unflagged_repeats == 0, (report.unflagged_ids, report.table())
        assert report.unpreventable_flagged == report.unpreventable_repeats

    def test_a_lost_answer_more_than_a_page_down_is_found_or_sent_again_flagged(
        self, report: ChaosReport
    ) -> None:
        assert report.deep_portfolios >= 2
        assert report.deep_other_rebalances > 50 * report.deep_portfolios
        assert report.deep_found + report.deep_resent == report.deep_portfolios
        assert report.unflagged_repeats == 0

    def test_each_delivery_of_a_portfolio_gets_its_rebalance_despite_the_cooldown(
        self, report: ChaosReport
    ) -> None:
        spacings = {TOGETHER, MINUTES_APART, AT_COOLDOWN_END, AFTER_COOLDOWN}
        assert set(report.shared_spacings) == spacings
        assert report.shared_deliveries == 2 * report.shared_portfolios
        assert report.shared_refused > 0  # the cooldown refused second deliveries
        # One rebalance each, or (v2) Glider's own for both: none lost, none doubled.
        assert report.shared_rebalances + report.joined_deliveries == report.shared_deliveries
        assert report.lost == 0

    def test_no_request_to_glider_over_the_rate_ceiling(self, report: ChaosReport) -> None:
        check = report.pacing
        assert check is not None
        assert report.paced
        # Every request: triggers, lookups and each rebalance's status calls alike.
        assert check.requests > 2 * report.rebalances
        assert check.over == report.over_rate_ceiling == 0, check.over_at
        # The run pushed at the ceiling: more in a second than the rate alone would allow.
        assert check.peak_per_second > check.rate

    def test_every_followed_rebalance_has_exactly_one_final_outcome(
        self, report: ChaosReport
    ) -> None:
        # Each id triggered is followed, or its outcome was `unknown` at once (which rebalance is
        # not known); the same rebalance for two deliveries (v2 joins a repeat) is followed once.
        assert (
            report.followed + report.unfollowable >= report.triggered - report.unpreventable_repeats
        )
        assert report.followed_without_outcome == 0
        assert report.followed_with_outcomes_twice == 0
        assert sum(report.final_outcomes.values()) == report.followed + report.unfollowable

    def test_the_run_passed(self, report: ChaosReport) -> None:
        assert report.passed, report.table()

    def test_every_id_is_triggered_or_dead_lettered_only_when_not_triggered(
        self,
        report: ChaosReport,
    ) -> None:
        assert report.ids_in == report.triggered + report.dead_lettered_only
        # An id both triggered and dead-lettered: allowed when its response was lost (the function
        # never saw the trigger succeed), or when only a whole-input record names it (Lambda's
        # on-failure destination record, a redriven multi-id message: AWS keeps the whole input).
        assert report.both_other == []
        print(
            f"triggered and dead-lettered: response lost {report.both_response_lost}, "
            f"whole-input records only {report.both_whole_input}"
        )


def _quick_run(api_version: ApiVersion) -> ChaosReport:
    result = run_chaos(config=ChaosConfig.quick(seed=7, api_version=api_version.value))
    print(result.table())  # shown by pytest -rA, and on failure
    return result


class TestQuickRunOnV1(ChaosChecks):
    @pytest.fixture(scope="class")
    @classmethod
    def report(cls) -> ChaosReport:
        return _quick_run(ApiVersion.V1)

    def test_deliveries_together_are_refused_not_joined(self, report: ChaosReport) -> None:
        assert report.joined_deliveries == 0
        assert report.shared_rebalances == report.shared_deliveries

    def test_the_lost_answers_a_page_down_are_found_or_sent_again_flagged(
        self, report: ChaosReport
    ) -> None:
        # The lost attempt's message comes back a second later and looks before the other
        # client's rebalances bury it: found, not sent again. One looked for only once buried
        # (v1 lists the newest 10, then 50) is sent again flagged: never silently
        # (tests/integration/test_reconcile.py drives that case directly).
        assert report.deep_found + report.deep_cut_off == report.deep_portfolios
        assert report.deep_resent == report.deep_cut_off
        assert report.unpreventable_flagged >= report.deep_resent


class TestQuickRunOnV2(ChaosChecks):
    """The same accounting on v2, where Glider joins a repeat to the rebalance in flight."""

    @pytest.fixture(scope="class")
    @classmethod
    def report(cls) -> ChaosReport:
        return _quick_run(ApiVersion.V2)

    def test_deliveries_together_are_joined_by_glider(self, report: ChaosReport) -> None:
        assert report.joined_deliveries > 0
        assert report.joined_deliveries <= report.joined_in_flight

    def test_the_lost_answers_a_page_down_are_closed_by_the_later_rebalances(
        self, report: ChaosReport
    ) -> None:
        # v2 shows the latest rebalance only: one after the lost attempt closes it.
        assert report.deep_found == report.deep_portfolios


def test_the_harness_sees_doubles_when_the_guard_forgets() -> None:
    """With a guard that forgets every record as soon as its holder lets it go (no settled
    outcome, no recorded window), redeliveries trigger again: the accounting must see them (so
    a zero above means something). And without RATE_LIMIT_PER_SECOND, its requests go over a
    ceiling of 5 a second."""
    config = replace(
        ChaosConfig.quick(ids=120, seed=7),
        guard_forgets=True,
        secret_exhaustions=0,
        pacing=False,
        rate_limit_per_second=5.0,
    )

    unguarded = run_chaos(config=config)

    assert unguarded.lost == 0
    # Every trigger runs from the work queue, one portfolio a message: with the guard forgetful, a
    # message that comes back after its trigger went out (a lost answer, a crashed batch) is
    # sent again without a look and without a flag. The accounting sees each as a double of its
    # delivery or as an unflagged repeat: either fails the run.
    seen = unguarded.doubled_by_redelivery + unguarded.unflagged_repeats
    assert seen > 0, unguarded.table()
    assert unguarded.over_rate_ceiling > 0, unguarded.table()
    assert not unguarded.passed


# The accounting's rules, on what a run would have recorded: each counter can fail.


def test_the_pacing_check_counts_what_arrives_over_the_bucket_of_its_environment() -> None:
    # One environment, 2 a second, burst 2: a third request in the first instant is over; so
    # are two more a quarter second later (half a token refilled).
    check = check_pacing([0.0, 0.0, 0.0, 0.25, 0.25, 1.0], [0.0], rate=2, allowance_seconds=0)
    assert (check.requests, check.over) == (6, 3)
    # A second environment, started at 0.5 s, has a bucket of its own.
    check = check_pacing([0.0, 0.0, 0.5, 0.5], [0.0, 0.5], rate=2, allowance_seconds=0)
    assert check.over == 0
    # The allowance: 0.5 s at 2 a second is one more request in a burst; what was needed.
    assert check_pacing([0.0, 0.0, 0.0], [0.0], rate=2, allowance_seconds=0.5).over == 0
    assert check_pacing([0.0, 0.0, 0.0, 1.0], [0.0], rate=2, allowance_seconds=0).over == 1
    needed = check_pacing([0.0, 0.0, 0.0, 0.25], [0.0], rate=2, allowance_seconds=0)
    assert needed.needed_allowance_seconds == 0.75  # 4 in 0.25 s: 1.5 beyond 2 + 2 * 0.25


def test_a_repeat_is_flagged_only_by_the_outcome_of_the_delivery_that_sent_it() -> None:
    lost = {"portfolio_id": "p", "outcome": "failed", "maybe_delivered_attempts": 1}
    silent = {"portfolio_id": "p", "outcome": "triggered", "rebalance_id": "r2"}
    joined = {**silent, "joined_in_flight": True}
    flagged = {**silent, "maybe_delivered_attempts": 1}
    # The lost attempt's own failure line announces its own rebalance, not a repeat (case 2);
    # a repeat made to look joined is not announced either (case 5).
    assert announced_repeats([lost, silent])["p"] == 0
    assert announced_repeats([lost, joined])["p"] == 0
    assert announced_repeats([lost, flagged])["p"] == 1


def test_a_delivery_is_joined_only_when_glider_collapsed_it_and_the_function_sent_it() -> None:
    def trigger(status: int) -> RecordedRequest:
        return RecordedRequest("POST", "/v2/portfolios/p/rebalance", "p", {}, b"", status, 0.0)

    sent = {"portfolio_id": "p", "outcome": "triggered", "rebalance_id": "op1"}
    a, b = {**sent, "delivery_id": "a"}, {**sent, "delivery_id": "b"}
    # Two accepted triggers, one rebalance, both deliveries on it: one joined.
    assert joined_deliveries({"p": 2}, [trigger(202), trigger(202)], [a, b], {"p": 1}) == {"p": 1}
    # B refused (429), then only looked and took A's rebalance for its own: case 1, not a join.
    taken = {**b, "reconciled": True}
    assert joined_deliveries({"p": 2}, [trigger(202), trigger(429)], [a, taken], {"p": 1}) == {}


def test_the_forgetful_guard_forgets_only_the_triggers_it_may(deployment: Deployment) -> None:
    # --guard-forgets must not forget a record its holder still needs, nor `once` records (a
    # letter or an outcome line written twice would be the harness's double, not the function's).
    dynamodb = deployment.moto.client("dynamodb")
    table = deployment.idempotency_table
    records = {
        "open": (record_id("schedule:a#p1"), Status.OPEN),
        "settled": (record_id("schedule:a#p2"), Status.SETTLED),
        "held": (record_id("schedule:a#p3"), Status.HELD),
        "once": (record_id("letter:x", prefix=ONCE_KEY_PREFIX), Status.SETTLED),
    }
    for key, status in records.values():
        dynamodb.put_item(TableName=table, Item={"id": {"S": key}, "status": {"S": status.value}})
    dynamodb.put_item(TableName=table, Item={"id": {"S": "history#p1#2026-12-07"}})

    assert sweep(dynamodb, table) == 2

    left = {item["id"]["S"] for item in dynamodb.scan(TableName=table)["Items"]}
    assert left == {records["held"][0], records["once"][0], "history#p1#2026-12-07"}
