"""A v1 portfolio without a rebalance schedule: `glider-trigger doctor` says what
`glider-trigger trigger` then does with it, from the same stack setting
(DefaultSkipScheduleValidation): refused by Glider when it is false, triggered when true."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import tools.dlq
import tools.doctor
import tools.trigger
from local.fixtures.event_source import SqsEventSource
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import Deployment
from tests.conftest import API_KEY

PORTFOLIO = "port_nosched"


@pytest.fixture(autouse=True)
def quick_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.dlq, "RECEIVE_WAIT_SECONDS", 0)
    monkeypatch.setattr(tools.trigger, "DLQ_LOOK_SECONDS", 0.0)
    monkeypatch.setattr(tools.trigger, "POLL_SECONDS", 0.2)


@pytest.fixture
def stack_file(
    deployment: Deployment,
    emulator: GliderEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[bool], None]:
    """local/.stack.json, which both tools read, with DEFAULT_SKIP_SCHEDULE_VALIDATION set."""
    emulator.add_portfolio(PORTFOLIO, has_schedule=False)
    emulator.set_api_keys([API_KEY])
    path = tmp_path / ".stack.json"
    for module in (tools.doctor, tools.trigger):
        monkeypatch.setattr(module, "LOCAL_STACK_FILE", path)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    def write(default_skip: bool) -> None:
        environment = deployment.environment(
            DEFAULT_SKIP_SCHEDULE_VALIDATION=json.dumps(default_skip), OUTCOME_EVENT_BUS_NAME=""
        )
        path.write_text(json.dumps({"environment": environment}))

    return write


@pytest.fixture
def the_lambda(
    start_function: Callable[..., LocalFunction],
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The work queue delivered to the function between the trigger tool's polls."""
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    functions: dict[bool, LocalFunction] = {}

    def between_polls(seconds: float) -> None:
        environment = json.loads(tools.trigger.LOCAL_STACK_FILE.read_text())["environment"]
        skip = environment["DEFAULT_SKIP_SCHEDULE_VALIDATION"] == "true"
        if skip not in functions:
            functions[skip] = start_function(DEFAULT_SKIP_SCHEDULE_VALIDATION=json.dumps(skip))
        while source.poll(functions[skip].invoke) is not None:
            pass

    monkeypatch.setattr(tools.trigger, "_sleep", between_polls)


def doctor_row(capsys: pytest.CaptureFixture[str]) -> tuple[int, tuple[str, str]]:
    status = tools.doctor.main(["--json", "--portfolio-id", PORTFOLIO])
    document = json.loads(capsys.readouterr().out)
    rows = {c["check"]: (c["result"], c["detail"]) for c in document["checks"]}
    return status, rows[f"portfolio {PORTFOLIO}"]


def trigger(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = tools.trigger.main(["--portfolio-ids", PORTFOLIO, "--wait", "--no-outcome"])
    return status, capsys.readouterr().out


def test_doctor_fails_a_portfolio_without_a_schedule_that_trigger_would_have_refused(
    stack_file: Callable[[bool], None],
    the_lambda: None,
    emulator: GliderEmulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack_file(False)

    status, (result, detail) = doctor_row(capsys)
    triggered, out = trigger(capsys)

    assert (status, result) == (1, "FAIL")
    assert "no rebalance schedule (status inactive)" in detail
    assert "DEFAULT_SKIP_SCHEDULE_VALIDATION is false" in detail
    assert "--skip-schedule-validation" in detail
    assert triggered == 1  # what the doctor said: Glider refused it
    assert "FAILED BAD_REQUEST (permanent HTTP 400 API_002)" in out
    assert emulator.rebalances == []


def test_doctor_passes_it_when_the_stack_skips_the_validation_and_trigger_triggers_it(
    stack_file: Callable[[bool], None],
    the_lambda: None,
    emulator: GliderEmulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack_file(True)

    status, (result, detail) = doctor_row(capsys)
    triggered, out = trigger(capsys)

    assert (status, result) == (0, "OK")
    assert detail == (
        "no rebalance schedule (status inactive): triggered anyway, "
        "DEFAULT_SKIP_SCHEDULE_VALIDATION is true"
    )
    assert triggered == 0, out
    assert "skipScheduleValidation=true." in out
    [rebalance] = emulator.rebalances
    assert rebalance.skip_schedule_validation is True
