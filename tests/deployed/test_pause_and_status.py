"""`glider-trigger pause`, `resume` and `status` against the deployed stack: pause disables the
schedules and the work queue's event source mapping and holds the upstream rule (its events to the
work queue), a message and an upstream event sent while paused wait in the work queue untriggered,
status shows the pause and its reason; resume triggers each of them once and leaves a schedule
disabled before the pause disabled.

The stack is shared with the other modules here: the module resumes (and removes the schedule it
added) before it ends, whatever happened, and waits first for the template's own schedule to have
run (test_deployed_stack.py checks that run; a pause before it would stop it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tools.common
from tests.deployed.conftest import UPSTREAM_SOURCE, Deployed, wait_for
from tools import cli

PAUSED = "port_pause1"  # sent to the work queue while paused
UPSTREAM_WHILE_PAUSED = "port_pause_upstream1"  # put on the upstream bus while paused
TRIGGERED_WHILE_PAUSED = "port_pause_trigger1"  # sent by `glider-trigger trigger` while paused
DISABLED_BEFORE = "pause-test-disabled"  # a schedule disabled before the pause
REASON = "deployed test: Glider maintenance window"
QUIET_SECONDS = 8  # how long a paused stack is watched for a trigger that must not happen
TRIGGER_SECONDS = 60
SCHEDULER_LAG = timedelta(seconds=25)


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Scene:
    deployed: Deployed

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
        capsys.readouterr()
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    @property
    def stack(self) -> str:
        return self.deployed.stack

    def schedule_states(self) -> dict[str, str]:
        scheduler = self.deployed.client("scheduler")
        group = self.deployed.outputs["ScheduleGroupName"]
        names = [s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]]
        return {name: scheduler.get_schedule(Name=name, GroupName=group)["State"] for name in names}

    def rule_state(self) -> str:
        events = self.deployed.client("events")
        bus = self.deployed.parameters["EventBusName"]
        [rule] = events.list_rules(EventBusName=bus, NamePrefix=self.stack)["Rules"]
        state: str = rule["State"]
        return state

    def rule_targets(self) -> list[str]:
        events = self.deployed.client("events")
        bus = self.deployed.parameters["EventBusName"]
        [rule] = events.list_rules(EventBusName=bus, NamePrefix=self.stack)["Rules"]
        targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        return sorted(target["Arn"] for target in targets)

    def put_upstream(self, portfolio: str) -> None:
        entry = {
            "Source": UPSTREAM_SOURCE,
            "DetailType": "PortfolioRebalanceRequested",
            "Detail": json.dumps({"portfolioIds": [portfolio]}),
            "EventBusName": self.deployed.parameters["EventBusName"],
        }
        put = self.deployed.client("events").put_events(Entries=[entry])
        assert put["FailedEntryCount"] == 0

    def mapping_state(self) -> str:
        mappings = self.deployed.client("lambda").list_event_source_mappings(
            FunctionName=self.deployed.outputs["TriggerFunctionName"],
            EventSourceArn=self.deployed.outputs["WorkQueueArn"],
        )["EventSourceMappings"]
        [mapping] = mappings
        state: str = mapping["State"]
        return state

    def work_queue_depth(self) -> int:
        attributes = self.deployed.client("sqs").get_queue_attributes(
            QueueUrl=self.deployed.outputs["WorkQueueUrl"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


@pytest.fixture(scope="module")
def scene(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    # What `make up` writes for the tools (conftest's local_stack_file, for the whole module).
    path: Path = tmp_path_factory.mktemp("pause") / "stack.json"
    path.write_text(json.dumps({"stack": deployed.stack, "aws": deployed.aws.environment()}))
    deployed.emulator.add_portfolio(PAUSED)
    deployed.emulator.add_portfolio(UPSTREAM_WHILE_PAUSED)
    deployed.emulator.add_portfolio(TRIGGERED_WHILE_PAUSED)
    wait_for_the_templates_schedule(deployed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tools.common, "LOCAL_AWS_FILE", path)
        added = [
            "schedules", "add", "--stack", deployed.stack, "--name", DISABLED_BEFORE,
            "--expression", "cron(0 9 ? * MON *)", "--time-zone", "Europe/Zurich",
            "--portfolio-ids", "port_pause_never", "--disabled",
        ]  # fmt: skip
        assert cli.main(added) == 0
        try:
            yield Scene(deployed)
        finally:
            # Whatever happened: the other modules get the stack back running.
            cli.main(["resume", "--stack", deployed.stack])
            cli.main(["schedules", "remove", "--stack", deployed.stack, "--name",
                      DISABLED_BEFORE, "--yes"])  # fmt: skip


def wait_for_the_templates_schedule(deployed: Deployed) -> None:
    """Until the template's one at() run is past, and MiniStack's Scheduler (which looks every
    10 s) has dispatched it: a pause before would stop the run test_deployed_stack.py checks."""
    expression = deployed.parameters["ScheduleExpression"]
    at = datetime.fromisoformat(expression.removeprefix("at(").removesuffix(")"))
    ran = at.replace(tzinfo=UTC) + SCHEDULER_LAG
    time.sleep(max(0.0, (ran - datetime.now(UTC)).total_seconds()))


def status_json(scene: Scene, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    result = scene.run(capsys, "status", "--stack", scene.stack, "--json")
    assert result.code == 0, result.err
    document: dict[str, Any] = json.loads(result.out)
    return document


def test_status_shows_a_running_stack_with_its_schedules_next_runs(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    result = scene.run(capsys, "status", "--stack", scene.stack)

    assert result.code == 0, result.err
    assert "running (not paused)" in result.out
    for heading in ("Schedules", "Queues", "Dead letters by reason", "Alarms in ALARM"):
        assert heading in result.out
    assert "Last triggers" in result.out
    document = status_json(scene, capsys)
    assert document["paused"] is False
    rows = {row["name"]: row for row in document["schedules"]}
    assert rows[DISABLED_BEFORE]["nextRun"] == "- (disabled)"
    assert rows[DISABLED_BEFORE]["timeZone"] == "Europe/Zurich"
    assert [q["queue"] for q in document["queues"]] == ["work queue", "follow-up queue", "DLQ"]
    # The template's schedule has run (the scene waited for it): the last triggers and outcomes
    # are listed, newest first, and each one "triggered" is a rebalance Glider started.
    assert document["lastTriggersUnread"] is None
    last = document["lastTriggers"]
    assert last, "no trigger listed after the template's schedule ran"
    assert [t["time"] for t in last] == sorted((t["time"] for t in last), reverse=True)
    for entry in last:
        if entry["kind"] == "trigger" and entry["outcome"] == "triggered":
            assert scene.deployed.emulator.rebalances_for(entry["portfolio"]), entry


def test_pause_stops_every_trigger_and_the_work_waits_in_the_queue(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    result = scene.run(capsys, "pause", "--stack", scene.stack, "--reason", REASON)

    assert result.code == 0, result.err
    assert "Follow-ups of rebalances already triggered keep running" in result.out
    assert "the oldest waiting message would be lost" in result.out
    assert set(scene.schedule_states().values()) == {"DISABLED"}
    # The rule stays enabled (EventBridge would drop its events), held: to the work queue only.
    assert scene.rule_state() == "ENABLED"
    assert scene.rule_targets() == [scene.deployed.outputs["WorkQueueArn"]]
    assert scene.mapping_state() in ("Disabled", "Disabling")

    scene.deployed.client("sqs").send_message(
        QueueUrl=scene.deployed.outputs["WorkQueueUrl"],
        MessageBody=json.dumps({"portfolioIds": [PAUSED]}),
    )
    scene.put_upstream(UPSTREAM_WHILE_PAUSED)
    time.sleep(QUIET_SECONDS)
    assert scene.deployed.emulator.rebalances_for(PAUSED) == []
    assert scene.deployed.emulator.rebalances_for(UPSTREAM_WHILE_PAUSED) == []
    assert scene.work_queue_depth() >= 2


def test_status_shows_the_pause_its_reason_and_who(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    result = scene.run(capsys, "status", "--stack", scene.stack)

    assert result.code == 0, result.err
    assert "PAUSED since" in result.out
    assert REASON in result.out
    document = status_json(scene, capsys)
    assert document["paused"] is True
    assert document["pause"]["reason"] == REASON
    assert document["pause"]["pausedBy"]
    assert {t["state"] for t in document["triggers"]} == {"DISABLED"}
    [work] = [q for q in document["queues"] if q["queue"] == "work queue"]
    assert work["waiting"] + work["inFlight"] >= 1


def test_pausing_again_keeps_the_first_pause(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    result = scene.run(capsys, "pause", "--stack", scene.stack, "--reason", "a second pause")

    assert result.code == 0, result.err
    assert "already paused" in result.out
    assert status_json(scene, capsys)["pause"]["reason"] == REASON


def test_a_paused_stacks_schedules_are_not_enabled_behind_its_back(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    added = scene.run(
        capsys, "schedules", "add", "--stack", scene.stack, "--name", "pause-test-enabled",
        "--expression", "rate(1 minute)", "--portfolio-ids", PAUSED,
    )  # fmt: skip

    assert added.code == 1
    assert "is paused since" in added.err
    assert "pause-test-enabled" not in scene.schedule_states()


def test_a_trigger_sent_while_paused_says_it_waits_for_resume(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = scene.run(
        capsys, "trigger", "--stack", scene.stack, "--portfolio-ids", TRIGGERED_WHILE_PAUSED
    )

    assert sent.code == 0, sent.err
    assert f"stack {scene.stack} is PAUSED since" in sent.err
    assert "triggered after `glider-trigger resume" in sent.err


def test_resume_triggers_the_waiting_message_once_and_restores_what_pause_changed(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    result = scene.run(capsys, "resume", "--stack", scene.stack)

    assert result.code == 0, result.err
    assert f"{DISABLED_BEFORE} (disabled before the pause: left so)" in result.out
    for portfolio in (PAUSED, UPSTREAM_WHILE_PAUSED, TRIGGERED_WHILE_PAUSED):
        wait_for(
            lambda portfolio=portfolio: scene.deployed.emulator.rebalances_for(portfolio),
            seconds=TRIGGER_SECONDS,
            what=f"{portfolio}, sent while paused, triggered after resume",
        )
    time.sleep(3)
    assert len(scene.deployed.emulator.rebalances_for(PAUSED)) == 1
    assert len(scene.deployed.emulator.rebalances_for(UPSTREAM_WHILE_PAUSED)) == 1
    assert len(scene.deployed.emulator.rebalances_for(TRIGGERED_WHILE_PAUSED)) == 1
    assert scene.rule_targets() == [scene.deployed.outputs["TriggerFunctionArn"]]
    states = scene.schedule_states()
    assert states.pop(DISABLED_BEFORE) == "DISABLED"
    assert set(states.values()) == {"ENABLED"}
    assert scene.rule_state() == "ENABLED"
    assert scene.mapping_state() in ("Enabled", "Enabling")
    assert status_json(scene, capsys)["paused"] is False


def test_resume_when_not_paused_says_so(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    result = scene.run(capsys, "resume", "--stack", scene.stack)

    assert result.code == 0, result.err
    assert "is not paused: nothing to resume" in result.out
