"""`make run` itself: every sample event on the local stack, and what it shows a user."""

from __future__ import annotations

import re
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
    # Each failure's hint whole, not clipped: the part that says what is wrong comes last.
    assert "is not 1-128 letters, digits, '_' or '-'" in out
    assert "[...]" not in out
    # What docs/development.md shows of it, line by line (ids, ages and widths aside).
    printed = {comparable(line) for line in out.splitlines()}
    missing = [line for line in documented_excerpt() if comparable(line) not in printed]
    assert missing == []


def documented_excerpt() -> list[str]:
    """The lines of docs/development.md's excerpt of `make run`, without its elisions."""
    text = (REPO / "docs" / "development.md").read_text()
    start = text.index("```text\n", text.index("An excerpt of `make run`")) + len("```text\n")
    block = text[start : text.index("```", start)]
    return [line for line in block.splitlines() if line.strip() not in ("", "...")]


def comparable(line: str) -> str:
    """A line of `make run` as it reads on any run: its rebalance and message ids (a queued
    portfolio's work-queue message is new on each run), ages and spacing vary."""
    line = re.sub(r"rebal_[0-9a-f]{16}", "rebal_ID", line)
    line = re.sub(r"^(\s*)\[[0-9a-f]{8}\] ", r"\1[ID] ", line)
    line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", line)
    line = re.sub(r"\b\d+s\b", "AGE", line)
    return " ".join(line.split())


def test_make_run_on_v2_speaks_of_operations(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--api-version", "v2"]) == 0

    out = capsys.readouterr().out
    assert "triggered      operationId=" in out
    assert "COMPLETED      operationId=" in out
    assert "Glider joined it to the operation in flight" in out  # a repeat, not a new one
    assert "rebalanceId" not in out
    assert "None" not in out


def test_make_run_event_runs_only_that_event(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--event", str(REPO / "events" / "schedule-single.json")]) == 0

    out = capsys.readouterr().out
    assert "== schedule-single.json" in out
    assert out.count("\n== ") == 3  # the event, its follow-ups and the DLQ: nothing else
    assert "port_abc123            COMPLETED" in out


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "no such file"), ("{not json", "not JSON")]
)
def test_make_run_event_names_a_file_it_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, problem: str
) -> None:
    path = tmp_path / "mine.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(SystemExit) as exit_:
        run.main(["--event", str(path)])

    assert exit_.value.code == 2
    assert f"--event {path}: {problem}" in capsys.readouterr().err


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
