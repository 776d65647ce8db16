"""One portfolio's triggers and outcomes, as the function recorded them in its stack.

    glider-trigger history --stack NAME --portfolio ID [--since 24h] [--limit N] [--json]

The function writes one history entry per trigger (what a delivery did to the portfolio:
triggered, or failed and why) and one per final outcome of a followed rebalance (completed,
failed, unknown) into its idempotency table, kept as long as the guard remembers a delivery
(the stack's IdempotencyTtlSeconds, 19 days by default). The format and the readers are the
function's own (outbound/history.py); this tool reads them by key, never with a Scan.

`recent_entries(aws, stack, limit)` gives `status` the latest entries across portfolios.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import InvalidPortfolioIdError
from glider_trigger.domain.trigger_input import iso_time, validate_portfolio_id
from glider_trigger.outbound import history
from glider_trigger.outbound.history import HistoryEntry
from glider_trigger.settings import Settings
from tools.base import (
    EXIT_OK,
    ToolError,
    UsageError,
    add_stack_options,
    describe,
    positive_int,
    prog,
    run_main,
    table,
)
from tools.common import (
    TABLE_RESOURCE,
    Aws,
    aws_for,
    describe_stack,
    error_code,
    parameters_of,
    stack_resource,
)

HEADERS: Final = ("WHEN (UTC)", "SOURCE", "KIND", "OUTCOME", "REASON", "REBALANCE/OPERATION ID")
DEFAULT_LIMIT: Final = 200
_UNITS: Final = {"m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"(\d+)([mhd])")


@dataclass(frozen=True)
class Records:
    """Where a stack keeps its history, and for how long."""

    table: str
    window_seconds: int

    def since(self, now: float, back_seconds: int | None = None) -> float:
        """The oldest time worth asking for: the guard's window, or less."""
        window = self.window_seconds
        return now - (window if back_seconds is None else min(back_seconds, window))


def records_of(aws: Aws, stack: str) -> Records:
    """The stack's idempotency table and the guard's window (its IdempotencyTtlSeconds)."""
    cloudformation = aws.cloudformation()
    parameters = parameters_of(describe_stack(cloudformation, stack))
    table_name = stack_resource(cloudformation, stack, TABLE_RESOURCE)
    if table_name is None:
        raise ToolError(f"stack {stack} has no {TABLE_RESOURCE}: the history lives in it")
    ttl = parameters.get("IdempotencyTtlSeconds", "").strip()
    window = int(ttl) if ttl.isdigit() else Settings.idempotency_ttl_seconds
    return Records(table_name, window)


def recent_entries(aws: Aws, stack: str, limit: int) -> list[HistoryEntry]:
    """The stack's `limit` latest triggers and outcomes across portfolios, newest first
    (HistoryEntry: at, portfolio_id, kind, source, outcome, reason, rebalance_id, detail,
    delivery_key). Raises ToolError when the stack or its table cannot be read."""
    records = records_of(aws, stack)
    now = time.time()
    try:
        return history.recent(aws.dynamodb(), records.table, limit, records.since(now), now=now)
    except ClientError as exc:
        # AWS says ValidationException ("does not have the specified index"); moto and others
        # ResourceNotFoundException: either, naming the index.
        missing = error_code(exc) in ("ValidationException", "ResourceNotFoundException")
        if missing and history.INDEX in describe(exc):
            raise ToolError(
                f"{records.table} has no {history.INDEX} index yet: deploy this version of the "
                "template (the history is written and read by portfolio without it)"
            ) from exc
        raise ToolError(f"{records.table}: {describe(exc)}") from exc
    except BotoCoreError as exc:
        raise ToolError(f"{records.table}: {describe(exc)}") from exc


def duration(text: str) -> int:
    """`30m`, `24h` or `7d` in seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"not a duration like 30m, 24h or 7d: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("history"),
        description=(
            "One portfolio's triggers and outcomes over the guard's window (newest last): when, "
            "where from, the rebalance or operation id, the outcome and why."
        ),
    )
    add_stack_options(parser, stack_required=True)
    parser.add_argument("--portfolio", metavar="ID", required=True, help="the portfolio id")
    parser.add_argument(
        "--since",
        metavar="DURATION",
        type=duration,
        help="only this far back, e.g. 30m, 24h, 7d (default: the guard's whole window)",
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=positive_int(10_000),
        default=DEFAULT_LIMIT,
        help=f"at most the N latest entries (default {DEFAULT_LIMIT})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    portfolio = _portfolio(args.portfolio)
    aws = aws_for(args)
    records = records_of(aws, args.stack)
    now = time.time()
    since = records.since(now, args.since)
    try:
        entries = history.of_portfolio(aws.dynamodb(), records.table, portfolio, since, now=now)
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"{records.table}: {describe(exc)}") from exc
    except history.HistoryUnreadableError as exc:
        raise ToolError(f"{records.table}: {exc}") from exc
    shown = entries[-args.limit :]
    if args.json:
        document = {
            "portfolioId": portfolio,
            "since": iso_time(since),
            "windowSeconds": records.window_seconds,
            "entries": [entry.as_json() for entry in shown],
        }
        print(json.dumps(document, indent=2))
        return EXIT_OK
    if not entries:
        print(f"no record of {portfolio} {_span(records, args.since)}")
        return EXIT_OK
    print("\n".join(table(HEADERS, [_cells(entry) for entry in shown])))
    if len(shown) < len(entries):
        print(
            f"(the {len(shown)} latest of {len(entries)} entries; --limit for more)",
            file=sys.stderr,
        )
    return EXIT_OK


def _portfolio(text: str) -> str:
    """The id as the function validates it (the history is kept under that very id)."""
    try:
        return validate_portfolio_id(text.strip())
    except InvalidPortfolioIdError as exc:
        raise UsageError(f"--portfolio: {exc}") from exc


def _span(records: Records, back_seconds: int | None) -> str:
    days = f"the last {records.window_seconds / 86400:g} days"
    if back_seconds is None or back_seconds >= records.window_seconds:
        return f"in {days} (the guard's window)"
    return f"in the last {_human(back_seconds)} (of {days}, the guard's window)"


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def _cells(entry: HistoryEntry) -> list[str]:
    return [
        iso_time(entry.at),
        entry.source,
        entry.kind.value,
        entry.outcome,
        entry.reason or "-",
        entry.rebalance_id or "-",
    ]


if __name__ == "__main__":
    sys.exit(main())
