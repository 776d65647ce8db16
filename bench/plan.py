"""What a run measures: its sizes and goals (Plan), and the command line that chooses them."""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


def template_default(parameter: str) -> int:
    """A numeric parameter's default in template.yaml: the deployed stack's own figure, read
    where it is set rather than copied here."""
    return int(_template_parameters()[parameter]["Default"])


@functools.cache
def _template_parameters() -> dict[str, Any]:
    """template.yaml's Parameters, read once per process."""
    # Here, not at the top: only a run reads the template (cfn-lint's loader: !Ref and the like).
    from cfnlint.decode import cfn_yaml  # noqa: PLC0415

    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return dict(loaded["Parameters"])


@dataclass(frozen=True)
class Plan:
    """The full run's sizes and goals (the defaults); `--quick` shrinks the sizes."""

    quick: bool = False
    inline_ids: tuple[int, ...] = (10, 100, 1000)
    latencies_ms: tuple[float, ...] = (20, 100)
    goal_ids: int = 200
    goal_latency_ms: float = 100
    goal_speedup: float = 12
    workers: int = 16
    # The work queue's event source as the template deploys it: up to `environments` execution
    # environments at once (ScalingConfig.MaximumConcurrency), each taking batches of at most
    # `batch_size` messages. The goal case and the inline runs are drained that way.
    environments: int = field(default_factory=lambda: template_default("SqsMaximumConcurrency"))
    batch_size: int = field(default_factory=lambda: template_default("BatchSize"))
    sweep_workers: tuple[int, ...] = (1, 4, 16, 64)
    fanout_ids: tuple[int, ...] = (1000, 10000)
    # Fanned out, counted, then purged: too many to drain here.
    enqueue_only_ids: tuple[int, ...] = (100_000,)
    fanout_latency_ms: float = 20  # also the drain's
    drain_pollers: int = 2
    cold_runs: int = 15
    import_ratio_goal: float = 1.3
    # The built artifact's cold import (bench/cold.py), with its shipped bytecode, vs boto3's.
    artifact_runs: int = 20
    artifact_ratio_goal: float = 1.10
    rss_ids: int = 1000
    rss_goal_mb: float = 128
    # What each AWS call waits in moto's process (--aws-latency-ms), as AWS's round trip does.
    aws_latency_ms: float = 0

    @classmethod
    def build(cls, quick: bool, latencies: Sequence[float] | None) -> Plan:
        plan = (
            cls(
                quick=True,
                inline_ids=(5, 20),
                latencies_ms=(20,),
                goal_ids=40,
                goal_latency_ms=20,
                fanout_ids=(60, 120),
                enqueue_only_ids=(1000,),
                fanout_latency_ms=5,
                cold_runs=3,
                artifact_runs=3,
                rss_ids=20,
            )
            if quick
            else cls()
        )
        return dataclasses.replace(plan, latencies_ms=tuple(latencies)) if latencies else plan


def parse_args(argv: Sequence[str] | None, *, description: str) -> argparse.Namespace:
    """`python -m bench.run`'s command line; `description` is its help's first paragraph."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds: to iterate")
    parser.add_argument(
        "--latency-ms", type=float, nargs="+", default=None, help="inline-path API latencies"
    )
    parser.add_argument(
        "--fanout-ids", type=int, nargs="+", default=None, help="fan-out sizes (ids)"
    )
    parser.add_argument(
        "--aws-latency-ms",
        type=float,
        default=0,
        help="what each AWS call (moto) waits, as AWS's round trip does (default: 0)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--only",
        default="inline,throughput,fanout,cold",
        help="comma-separated sections to run (default: all)",
    )
    return parser.parse_args(argv)
