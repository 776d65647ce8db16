"""`make run` itself: every sample event on the local stack, and what it shows a user."""

from __future__ import annotations

import pytest

from local.demo import run


def test_make_run_shows_each_outcome_and_the_dlq(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main([]) == 0

    out = capsys.readouterr().out
    for name in run.EVENT_NOTES:
        assert f"== {name}" in out
    assert "triggered      rebalanceId=rebal_" in out
    assert "FAILED transient SERVER_ERROR HTTP 503" in out  # a failure path, shown
    assert "already triggered by an earlier delivery" in out  # the redelivery step
    assert "found among recent rebalances, not sent again" in out  # a lost answer reconciled
    assert "COMPLETED      rebalanceId=rebal_" in out  # followed to its outcome
    assert "REBALANCE FAILED" in out  # ... or to its failure, and its letter:
    assert "REBALANCE_FAILED" in out
    assert "Glider Rebalance Completed x" in out  # the outcome events on the bus
    assert "PORTFOLIO" in out  # the DLQ table
    assert "By reason:" in out
    assert "glider-local-demo-key" not in out  # the key is never printed


def test_the_real_api_switch_needs_explicit_ids() -> None:
    with pytest.raises(SystemExit):
        run.main(["--real-api"])
