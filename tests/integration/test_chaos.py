"""The quick chaos run (`python -m local.chaos --quick`), in process: ~300 ids through the real
handler under every kind of injected fault. Nothing may be lost, nothing doubled."""

from __future__ import annotations

from dataclasses import replace

import pytest

from local.chaos import AWS_FAULTS, GLIDER_FAULTS, ChaosConfig, ChaosReport, run_chaos


@pytest.fixture(scope="module")
def report() -> ChaosReport:
    result = run_chaos(seed=7, quick=True)
    print(result.table())  # shown by pytest -rA, and on failure
    return result


def test_the_run_drained(report: ChaosReport) -> None:
    assert report.pending == 0, report.pending_ids


def test_nothing_lost(report: ChaosReport) -> None:
    assert report.lost == 0, report.lost_ids


def test_nothing_doubled_by_a_redelivery_or_a_retry(report: ChaosReport) -> None:
    assert report.doubled_by_redelivery == 0, (report.doubled_ids, report.doubled_by_cause)


def test_every_kind_of_fault_was_injected(report: ChaosReport) -> None:
    missing = [key for key in (*GLIDER_FAULTS, *AWS_FAULTS) if report.faults.get(key, 0) < 1]
    assert not missing, report.faults
    # ... and the paths they are there to exercise were taken.
    assert report.invocations["SQS records reported for retry"] > 0
    assert report.invocations["on-failure destination records"] > 0
    assert report.invocations["function's DLQ writes that failed"] > 0
    assert report.final_failures.get("SECRET_THROTTLED", 0) > 0


def test_every_id_is_triggered_or_dead_lettered_only_when_not_triggered(
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


def test_the_harness_sees_doubles_when_the_guard_is_off() -> None:
    """Without its idempotency table the function redelivers and retries into doubles: the
    accounting must see them (so a zero above means something)."""
    config = replace(ChaosConfig.quick(ids=120, seed=7), idempotency=False, secret_exhaustions=0)

    unguarded = run_chaos(config=config)

    assert unguarded.lost == 0
    assert unguarded.doubled_by_redelivery > 0, unguarded.table()
    assert unguarded.doubled_by_cause.get("SQS redelivery", 0) > 0
    assert unguarded.doubled_by_cause.get("async retry", 0) > 0
