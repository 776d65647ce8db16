"""`glider-trigger history` against the deployed stack: work-queue messages through the function
that `sam deploy` created on MiniStack, then the history read with --stack alone, as an operator
would (the template's table and its index, the function's own writes, the tool's reads).

The deploy is tests/deployed/conftest.py's; the portfolios here are this module's own."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import tools.history
from local.fixtures.glider_emulator import Fault
from tests.deployed.conftest import STACK, Deployed, wait_for
from tools.common import Aws, local_aws

DONE = "port_history1"  # triggered, then followed to completed
BUSY = "port_history2"  # 429 with a Retry-After longer than the function waits: redelivered
RETRY_AFTER = 10
# Generous against this machine's load (the first follow-up comes 30 s after the trigger).
OUTCOME_SECONDS = 120


def entries(portfolio: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    status = tools.history.main(
        ["--stack", "glider-deployed-test", "--portfolio", portfolio, "--json"]
    )
    out = capsys.readouterr().out
    assert status == 0
    found: list[dict[str, Any]] = json.loads(out)["entries"]
    return found


@pytest.mark.usefixtures("local_stack_file")
def test_the_history_shows_each_trigger_and_outcome_the_deployed_function_wrote(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = deployed.emulator
    for portfolio in (DONE, BUSY):
        emulator.add_portfolio(portfolio)
    emulator.script(BUSY, Fault.rate_limited(retry_after=RETRY_AFTER))
    sqs = deployed.client("sqs")
    work = deployed.outputs["WorkQueueUrl"]
    started = time.time()
    for portfolio in (DONE, BUSY):
        sqs.send_message(QueueUrl=work, MessageBody=json.dumps({"portfolioId": portfolio}))

    def followed() -> list[dict[str, Any]] | None:
        seen = entries(DONE, capsys)
        return seen if [e["kind"] for e in seen] == ["trigger", "outcome"] else None

    trigger, outcome = wait_for(followed, seconds=OUTCOME_SECONDS, what=f"{DONE}'s outcome")
    [rebalance] = emulator.rebalances_for(DONE)
    assert (trigger["source"], trigger["outcome"]) == ("sqs", "triggered")
    assert (outcome["source"], outcome["outcome"]) == ("follow-up", "completed")
    assert trigger["rebalanceId"] == outcome["rebalanceId"] == rebalance.rebalance_id

    def retried() -> list[dict[str, Any]] | None:
        seen = entries(BUSY, capsys)
        return seen if any(e["outcome"] == "triggered" for e in seen) else None

    busy = wait_for(retried, seconds=OUTCOME_SECONDS, what=f"{BUSY} triggered after its 429")
    assert [(e["outcome"], e["reason"]) for e in busy if e["kind"] == "trigger"] == [
        ("failed", "RATE_LIMITED"),
        ("triggered", None),
    ]

    # What `status` shows: the latest entries across portfolios, from the table's index.
    latest = tools.history.recent_entries(Aws(local_aws(STACK)), STACK, 50)
    mine = [e for e in latest if e.portfolio_id in (DONE, BUSY) and e.at >= started - 5]
    assert len(mine) >= 4
    assert [e.at for e in latest] == sorted((e.at for e in latest), reverse=True)
