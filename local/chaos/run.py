"""One chaos run (`run_chaos`): its stack started, the harness run and replayed, the tally read."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.retries.standard import ExponentialBackoff

from local.chaos.accounting import Tally
from local.chaos.amnesia import forget_released_records
from local.chaos.config import API_KEY, ChaosConfig
from local.chaos.harness import Harness, Stack
from local.chaos.phase import Phase
from local.chaos.plan import make_plan
from local.chaos.report import ChaosReport
from local.fixtures.fault_proxy import FaultProxy
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import Deployment, MotoServer, deploy

GUARD_FORGETS_NOTE = "note: the guard forgot every record no invocation held (--guard-forgets)"


def run_chaos(
    ids: int | None = None,
    seed: int = 0,
    quick: bool = False,
    *,
    config: ChaosConfig | None = None,
    logs: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ChaosReport:
    """One chaos run. Starts and stops its own moto server, Glider emulator and fault proxy;
    with `logs`, writes every execution environment's log lines there (JSON lines)."""
    if config is None:
        config = ChaosConfig.quick(seed=seed) if quick else ChaosConfig(seed=seed)
    if ids is not None:
        config = replace(config, ids=ids)
    say = progress or (lambda _line: None)
    started = time.monotonic()
    plan = make_plan(config)
    moto = MotoServer()
    emulator = GliderEmulator(api_keys=[API_KEY])
    stoppers: list[Callable[[], None]] = []
    try:
        stoppers.append(_scale_sdk_backoff(config.sdk_backoff_scale))
        moto.start()
        stoppers.append(moto.stop)
        emulator.start()
        stoppers.append(emulator.stop)
        proxy = FaultProxy(moto.endpoint_url, seed=config.seed).start()
        stoppers.append(proxy.stop)
        for portfolio_id in plan.ids:
            if portfolio_id not in plan.not_found:
                emulator.add_portfolio(portfolio_id)
        for portfolio_id, script in plan.scripts.items():
            emulator.script(portfolio_id, *(fault for _, fault in script))
        emulator.set_workflow_seconds(config.workflow_seconds)
        deployment = deploy(
            moto,
            emulator,
            api_key=API_KEY,
            max_receive_count=config.max_receive_count,
            visibility_timeout=config.visibility_timeout_seconds,
            api_version=config.api_version,
        )
        env = function_environment(deployment, moto, proxy, config)
        notes = [GUARD_FORGETS_NOTE] if config.guard_forgets else []
        if config.guard_forgets:
            forgetting = forget_released_records(
                moto.client("dynamodb"), deployment.idempotency_table
            )
            stoppers.append(forgetting)
        say(f"chaos: {config.ids} ids, seed {config.seed}, Glider API {config.api_version}")
        stack = Stack(config, plan, env, proxy, emulator, deployment, moto.client("sqs"))
        stack.new_environment()
        harness = Harness(stack, say)
        phase = Phase(harness, say)
        harness.run()
        # Answers slower than the read timeout still trigger: let them land before the replay
        # (which counts what lands after it starts as its own) and before counting.
        time.sleep(config.slow_seconds[1] + 0.2)
        harness.replay()
        time.sleep(config.slow_seconds[1] + 0.2)
        report = Tally(stack, harness, phase).report()
        if logs is not None:
            logs.write_text("".join(json.dumps(line) + "\n" for line in stack.logs()))
        report.notes += notes + harness.notes
        if config.sdk_backoff_scale != 1.0:
            report.notes.append(
                f"note: botocore's retry backoff scaled by {config.sdk_backoff_scale:g}"
            )
        delays = " and ".join(f"{delay:g} s" for delay in config.async_retry_delays)
        report.notes.append(f"note: Lambda's async retries after {delays} (scaled to the run)")
    finally:
        for stop in reversed(stoppers):
            stop()
    report.wall_seconds = round(time.monotonic() - started, 1)
    return report


def _scale_sdk_backoff(scale: float) -> Callable[[], None]:
    """Scale botocore's standard-mode backoff in this process; returns the undo."""
    original = ExponentialBackoff.delay_amount
    if scale == 1.0:
        return lambda: None

    def delay_amount(self: ExponentialBackoff, context: Any) -> float:
        return float(original(self, context)) * scale

    setattr(ExponentialBackoff, "delay_amount", delay_amount)  # noqa: B010 - patch a method
    return lambda: setattr(ExponentialBackoff, "delay_amount", original)


def function_environment(
    deployment: Deployment, moto: MotoServer, proxy: FaultProxy, config: ChaosConfig
) -> dict[str, str]:
    """The function's environment: every AWS endpoint of moto's behind the proxy."""
    env = deployment.environment(**config.function_environment())
    for name, value in list(env.items()):
        if name.startswith("AWS_ENDPOINT_URL") and value.rstrip("/") == moto.endpoint_url:
            env[name] = proxy.endpoint_url
    return env
