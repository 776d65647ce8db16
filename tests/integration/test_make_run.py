"""`make run` itself: every sample event on the local stack, and what it shows a user."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

from glider_trigger.settings import Settings
from local.demo import run
from local.fixtures.stack import Deployment
from tests.unit.test_template import function_environment

REPO = Path(__file__).resolve().parents[2]


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


def test_the_env_file_for_sam_local_passes_the_functions_start_up_validation(
    deployment: Deployment,
) -> None:
    template = cfn_yaml.load(str(REPO / "template.yaml"))
    declared = set(function_environment(template))  # what `sam local` applies from the file

    env = run.sam_local_env(deployment)["TriggerFunction"]
    applied = {name: value for name, value in env.items() if name in declared}

    settings = Settings.from_environment(applied)
    assert settings.dlq_url == deployment.dlq.url
    assert settings.work_queue_url == deployment.work_queue.url
    assert settings.idempotency_table_name == deployment.idempotency_table
    assert {"GLIDER_API_KEY_SECRET_ID", "DLQ_URL", "FOLLOW_UP_QUEUE_URL"} <= set(applied)
