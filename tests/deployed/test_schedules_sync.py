"""`schedules sync` on the deployed stack (MiniStack, the real template): the template's schedule
takes its time zone from ScheduleTimezone; a file's schedules are planned, created with --yes,
found unchanged by a second sync, and the one that fires triggers its portfolio through the
stack; --prune deletes what the file no longer names and never the template's own schedule.

Everything this module creates is deleted before it ends (the stack is shared)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.deployed.conftest import Deployed, wait_for
from tools.schedules import main

FIRES = "port_syncfire1"  # triggered by the synced schedule that fires
IDLE = ("port_syncidle1", "port_syncidle2")  # in a disabled schedule: never triggered
# MiniStack's Scheduler looks every 10 s; the sync and its checks take a few.
FIRE_DELAY = timedelta(seconds=25)
FIRE_SECONDS = 90


@pytest.fixture
def group(deployed: Deployed, local_stack_file: None) -> Iterator[str]:
    """The stack's group; the schedules this module made are deleted afterwards."""
    name = deployed.outputs["ScheduleGroupName"]
    scheduler = deployed.client("scheduler")
    before = names_in(scheduler, name)
    yield name
    for made in names_in(scheduler, name) - before:
        scheduler.delete_schedule(Name=made, GroupName=name)


def names_in(scheduler: Any, group: str) -> set[str]:
    return {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}


def sync(
    deployed: Deployed, capsys: pytest.CaptureFixture[str], path: Path, *extra: str
) -> tuple[int, dict[str, Any]]:
    status = main(["sync", "--stack", deployed.stack, "--file", str(path), "--json", *extra])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    document: dict[str, Any] = json.loads(captured.out)
    return status, document


def actions(document: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["action"] for step in document["steps"]}


def test_the_templates_schedule_has_its_time_zone(deployed: Deployed, group: str) -> None:
    scheduler = deployed.client("scheduler")
    own = deployed.client("cloudformation").describe_stack_resource(
        StackName=deployed.stack, LogicalResourceId="RebalanceSchedule"
    )["StackResourceDetail"]["PhysicalResourceId"]

    schedule = scheduler.get_schedule(Name=own, GroupName=group)

    assert deployed.parameters["ScheduleTimezone"] == "UTC"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"


def test_sync_creates_finds_nothing_to_do_and_prunes(
    deployed: Deployed,
    group: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_file: Callable[[str], Path],
) -> None:
    for portfolio in (FIRES, *IDLE):
        deployed.emulator.add_portfolio(portfolio)
    scheduler = deployed.client("scheduler")
    own = deployed.client("cloudformation").describe_stack_resource(
        StackName=deployed.stack, LogicalResourceId="RebalanceSchedule"
    )["StackResourceDetail"]["PhysicalResourceId"]
    due = datetime.now(UTC) + FIRE_DELAY
    both = write_file(
        "schedules:\n"
        "  - name: sync-fires\n"
        f"    expression: at({due:%Y-%m-%dT%H:%M:%S})\n"
        f"    portfolioIds: [{FIRES}]\n"
        "  - name: sync-idle\n"
        "    expression: cron(0 9 * * ? *)\n"
        "    timezone: Europe/Zurich\n"
        f"    portfolioIds: [{', '.join(IDLE)}]\n"
        "    enabled: false\n"
    )

    _, planned = sync(deployed, capsys, both)
    _, applied = sync(deployed, capsys, both, "--yes")
    _, again = sync(deployed, capsys, both)

    assert actions(planned) == {"sync-fires": "create", "sync-idle": "create", own: "stack"}
    assert planned["applied"] is False
    assert applied["applied"] is True
    assert {s["name"]: s.get("result") for s in applied["steps"]} == {
        "sync-fires": "done",
        "sync-idle": "done",
        own: None,
    }
    assert actions(again) == {"sync-fires": "unchanged", "sync-idle": "unchanged", own: "stack"}
    idle = scheduler.get_schedule(Name="sync-idle", GroupName=group)
    assert idle["State"] == "DISABLED"
    assert idle["ScheduleExpressionTimezone"] == "Europe/Zurich"
    assert idle["Target"]["Arn"] == deployed.outputs["TriggerFunctionArn"]
    # The schedule sync made runs through the stack: its portfolio is triggered, once.
    wait_for(
        lambda: deployed.emulator.rebalances_for(FIRES),
        seconds=FIRE_SECONDS,
        what=f"the synced schedule sync-fires ({due:%H:%M:%S} UTC) run",
    )
    assert len(deployed.emulator.rebalances_for(FIRES)) == 1

    only_idle = write_file(
        "schedules:\n"
        "  - name: sync-idle\n"
        "    expression: cron(0 9 * * ? *)\n"
        "    timezone: Europe/Zurich\n"
        f"    portfolioIds: [{', '.join(reversed(IDLE))}]\n"
        "    enabled: false\n"
    )
    _, kept = sync(deployed, capsys, only_idle, "--yes")
    _, pruned = sync(deployed, capsys, only_idle, "--prune", "--yes")

    assert actions(kept) == {"sync-idle": "unchanged", "sync-fires": "keep", own: "stack"}
    assert actions(pruned) == {"sync-idle": "unchanged", "sync-fires": "delete", own: "stack"}
    assert names_in(scheduler, group) == {own, "sync-idle"}
    assert [deployed.emulator.rebalances_for(p) for p in IDLE] == [[], []]


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str], Path]:
    count = iter(range(100))

    def write(text: str) -> Path:
        path = tmp_path / f"schedules-{next(count)}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write
