"""`python -m local.chaos` (what `make chaos` runs): the chaos run's command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from glider_trigger.settings import ApiVersion
from local.chaos.config import ChaosConfig
from local.chaos.run import run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.chaos",
        description=(
            "Chaos run of the trigger function: nothing lost, nothing doubled, no repeat "
            "unflagged, no request over the rate ceiling."
        ),
    )
    parser.add_argument("--ids", type=int, default=None, help="portfolio ids (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a short run (~300 ids)")
    parser.add_argument(
        "--api",
        choices=[version.value for version in ApiVersion],
        default=ApiVersion.V1.value,
        help="the Glider API the function calls (GLIDER_API_VERSION; default v1)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write figures")
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        metavar="PATH",
        help="write every execution environment's log lines (JSON lines), to read a failure",
    )
    parser.add_argument(
        "--store-fault-rate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="also deny this share of the idempotency guard's UpdateItem calls (default 0)",
    )
    parser.add_argument(
        "--guard-forgets",
        action="store_true",
        help="delete every guard record no invocation holds, to see the doubles the guard prevents",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="N",
        help="RATE_LIMIT_PER_SECOND, and the ceiling every request is checked against (default 20)",
    )
    parser.add_argument(
        "--no-pacing",
        action="store_true",
        help="run the function without RATE_LIMIT_PER_SECOND (the check keeps the ceiling)",
    )
    args = parser.parse_args(argv)
    if args.ids is not None and args.ids < 1:
        parser.error("--ids must be at least 1")
    if not 0 <= args.store_fault_rate <= 1:
        parser.error("--store-fault-rate must be between 0 and 1")
    if args.rate is not None and not 0.01 <= args.rate <= 10_000:
        parser.error("--rate must be between 0.01 and 10000 (RATE_LIMIT_PER_SECOND's range)")
    config = ChaosConfig.quick(seed=args.seed) if args.quick else ChaosConfig(seed=args.seed)
    config = replace(
        config,
        store_fault_rate=args.store_fault_rate,
        guard_forgets=args.guard_forgets,
        pacing=not args.no_pacing,
        api_version=args.api,
    )
    if args.rate is not None:
        config = replace(config, rate_limit_per_second=args.rate)

    report = run_chaos(
        ids=args.ids,
        config=config,
        logs=args.logs,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(report.table())
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
