"""The phase in the run's tail: portfolios delivered twice under Glider's cooldown, and lost
answers buried under more than a page of other rebalances.

It starts once every event of the run has started and the work queue shows nothing (what is
left of the run, delayed messages and Lambda's retries, goes on beside it), with Glider's
per-portfolio cooldown on (`set_cooldown`, for every portfolio: the run's own repeats in that
time are refused too, which they would be by Glider):

- each shared portfolio's two deliveries (plan.SharedPortfolio) at their times: upstream
  requests as work-queue messages (two at the same time in one SendMessageBatch, so that they
  are worked in one invocation), schedules as async invocations. The second is refused by the
  cooldown unless it comes after it (or, on v2, joins the first's rebalance still in flight).
- at once, one async event of the deep portfolios: three 429s, then a lost answer (the
  function gives up without having looked, and each id's letter carries the lost attempt's
  window). When the cooldown is off again (more than 5 s later, the function's allowance for
  clocks), another client of Glider's starts `deep_rebalances` rebalances of each (through the
  v1 trigger, which starts one every time, on either API version: the emulator shares one state)
  so that the lost one is more than a page down the list when the replay looks for it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import quote

from local.chaos.config import API_KEY, SQS_BATCH_ENTRIES
from local.chaos.harness import Harness
from local.chaos.plan import UPSTREAM

# The User-Agent of the other client's requests: the pacing check leaves them out.
EXTERNAL_AGENT = "chaos-harness (another client of Glider's)"
# The function takes a rebalance started this close to a lost attempt for that attempt's own
# (its clock-skew allowance, 5 s): the other client's come later than this.
AFTER_LOST_ATTEMPT_SECONDS = 6.0


class Phase:
    def __init__(self, harness: Harness, progress: Callable[[str], None]) -> None:
        self.harness = harness
        self.progress = progress
        self.external: set[str] = set()  # the other client's rebalances (their rebalance ids)
        self.started_at: float | None = None  # time.time()
        self.ended_at: float | None = None
        harness.phase_started = self.start

    def start(self) -> None:
        harness = self.harness
        plan, config = harness.stack.plan, harness.config
        if not plan.shared and not plan.deep:
            return
        self.started_at = time.time()
        harness.stack.emulator.set_cooldown(config.cooldown_seconds)
        self.progress(
            f"  phase: {len(plan.shared)} portfolios delivered twice under a "
            f"{config.cooldown_seconds:g} s cooldown, {len(plan.deep)} lost answers buried"
        )
        if plan.deep:
            harness.start_extra_async(plan.deep_event, plan.deep)
        together: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for shared in plan.shared:
            for delivery in shared.deliveries:
                if delivery.kind == UPSTREAM:
                    together[delivery.at].append(delivery.body)
                else:
                    start = partial(harness.start_extra_async, delivery.body, [shared.portfolio_id])
                    harness.at(delivery.at, start)
        for at, bodies in together.items():
            for first in range(0, len(bodies), SQS_BATCH_ENTRIES):
                chunk = bodies[first : first + SQS_BATCH_ENTRIES]
                harness.at(at, partial(harness.send_bodies, chunk))
        last = max((d.at for s in plan.shared for d in s.deliveries), default=0.0)
        # Off once the last delivery has met it (a refused one comes back after it anyway).
        harness.at(max(last + 2.0, AFTER_LOST_ATTEMPT_SECONDS), self.end)

    def end(self) -> None:
        harness = self.harness
        emulator, plan = harness.stack.emulator, harness.stack.plan
        emulator.set_cooldown(0)
        self.ended_at = time.time()
        if not plan.deep:
            return
        lost_at = max(
            (r.received_at for r in emulator.requests if r.portfolio_id in plan.deep),
            default=0.0,
        )
        time.sleep(max(0.0, lost_at + AFTER_LOST_ATTEMPT_SECONDS - time.time()))
        for portfolio_id in plan.deep:
            for _ in range(harness.config.deep_rebalances):
                self.external.add(self._trigger_elsewhere(portfolio_id))
        self.progress(f"  phase: {len(self.external)} rebalances by another client")

    def _trigger_elsewhere(self, portfolio_id: str) -> str:
        """One rebalance started by someone else (v1's trigger), its rebalance id."""
        base = self.harness.stack.emulator.base_url  # 127.0.0.1
        path = f"/v1/portfolio/{quote(portfolio_id, safe='')}/rebalance/schedule/trigger"
        request = urllib.request.Request(  # noqa: S310 - the local emulator's http URL
            base + path,
            data=json.dumps({"skipScheduleValidation": False}).encode(),
            method="POST",
            headers={
                "X-API-KEY": API_KEY,
                "Content-Type": "application/json",
                "User-Agent": EXTERNAL_AGENT,
            },
        )
        # No proxy from the environment: this goes to the emulator on loopback, nowhere else.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as response:
            document = json.load(response)
        return str(document["data"]["rebalanceId"])
