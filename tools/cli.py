"""`glider-trigger`, the operator's one command line: it hands each subcommand to its module."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final

from tools.base import CLI, EXIT_CODES, EXIT_ERROR, EXIT_OK, EXIT_USAGE

# Each subcommand: its module (with `main(argv) -> int`) and what it is for. Modules are imported
# only when their subcommand runs: `glider-trigger status` does not load the chaos of the rest.
SUBCOMMANDS: Final[dict[str, tuple[str, str]]] = {
    "doctor": ("tools.doctor", "check the key, its scopes and the stack before the first run"),
    "trigger": ("tools.trigger", "rebalance portfolios now, through the work queue (--wait)"),
    "status": ("tools.status", "one screen: paused?, schedules, queues, DLQ, alarms, last runs"),
    "history": ("tools.history", "one portfolio's triggers and outcomes"),
    "schedules": ("tools.schedules", "list the stack's schedules; sync them from a YAML file"),
    "pause": ("tools.pause", "stop every way a rebalance is triggered (nothing is lost)"),
    "resume": ("tools.pause", "undo exactly what pause changed"),
    "dlq": ("tools.dlq", "list, redrive and discard dead letters"),
}

USAGE: Final = f"usage: {CLI} COMMAND [OPTIONS]   ({CLI} COMMAND --help for its options)"


def overview() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [USAGE, "", "Operate the Glider rebalance trigger's stack.", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in SUBCOMMANDS.items()]
    lines += [
        "",
        "Every command takes --stack NAME, --region, --profile and --json. A stack that",
        "`make up` deployed is found by its name alone; any other is an account's.",
        EXIT_CODES,
    ]
    return "\n".join(lines)


def entry(command: str) -> Callable[[Sequence[str]], int]:
    module = importlib.import_module(SUBCOMMANDS[command][0])
    run: Callable[..., int] = getattr(module, "main")  # noqa: B009 - a module's entry point
    if command in ("pause", "resume"):
        return lambda argv: run(argv, command=command)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(overview(), file=sys.stdout if args else sys.stderr)
        return EXIT_OK if args else EXIT_USAGE
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        print(USAGE, file=sys.stderr)
        known = ", ".join(SUBCOMMANDS)
        print(f"{CLI}: error: unknown command {command!r} (one of: {known})", file=sys.stderr)
        return EXIT_USAGE
    try:
        return entry(command)(rest)
    except BrokenPipeError:
        # Read by `head` or a pager that quit early: no traceback. As Python's docs advise, the
        # rest of the output goes nowhere and the exit is 1 (the pipeline's status is the
        # reader's anyway).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
