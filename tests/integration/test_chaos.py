"""The quick chaos run (`python -m local.chaos --quick`), in process: ~300 ids through the real
handler under every kind of injected fault, execution environments that crash mid-invocation
among them, then a replay of the whole DLQ. Nothing may be lost, nothing doubled, and the
replay of the function's own letters and of destination records may double nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from glider_trigger.settings import ApiVersion
from local.chaos.config import ChaosConfig
from local.chaos.faults import (
    AWS_FAULTS,
    CRASH_FAULT,
    GLIDER_FAULTS,
    PARTIAL_DLQ_FAULT,
    SCENARIO_FAULTS,
)
from local.chaos.letters import DESTINATION, GUARDED_KINDS, OWN_LETTERS
from local.chaos.report import ChaosReport
from local.chaos.run import run_chaos


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
        assert report.final_failures.get("SECRET_THROTTLED", 0) > 0

    def test_crashed_environments_were_replaced_and_retried_inside_their_in_progress_window(
        self,
        report: ChaosReport,
    ) -> None:
        assert report.faults[CRASH_FAULT] >= 2
        # Each crash costs the environment: the next invocation is a cold start.
        assert (
            report.invocations["execution environments (cold starts)"] > report.faults[CRASH_FAULT]
        )
        # Lambda's first retry (15 s after the crash, scaled) came while the crashed invocation's
        # claimed records were still in progress: the case under test.
        assert report.crash_retries_in_window >= 1

    def test_a_partial_dlq_write_left_stale_letters(self, report: ChaosReport) -> None:
        assert report.faults[PARTIAL_DLQ_FAULT] >= 1
        assert report.invocations["stale DLQ letters (written before a failed write)"] >= 10

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
        assert report.reconciled > 0
        assert report.unpreventable_after_reconcilable == 0, report.table()

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


class TestQuickRunOnV2(ChaosChecks):
    """The same accounting on v2, where Glider joins a repeat to the rebalance in flight."""

    @pytest.fixture(scope="class")
    @classmethod
    def report(cls) -> ChaosReport:
        return _quick_run(ApiVersion.V2)


def test_the_harness_sees_doubles_when_the_guard_is_off() -> None:
    """Without its idempotency table (and without reconciling, which would find a redelivered
    record's earlier rebalance) the function redelivers and retries into doubles: the
    accounting must see them (so a zero above means something)."""
    config = replace(
        ChaosConfig.quick(ids=120, seed=7), idempotency=False, reconcile=False, secret_exhaustions=0
    )

    unguarded = run_chaos(config=config)

    assert unguarded.lost == 0
    assert unguarded.doubled_by_redelivery > 0, unguarded.table()
    assert unguarded.doubled_by_cause.get("SQS redelivery", 0) > 0
    assert unguarded.doubled_by_cause.get("async retry", 0) > 0
    # ... and the replay of a destination record triggers again what the event had triggered.
    assert unguarded.replay_doubled_by_kind.get(DESTINATION, 0) > 0, unguarded.table()
