"""What every `glider-trigger` subcommand shares: its exit codes, its two errors, one-line AWS
errors, the table, the options that find a stack (--stack, --region, --profile, --json) and the
one `run_main` that turns a subcommand's errors into its exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

CLI: Final = "glider-trigger"
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1  # a check or an action failed, or AWS refused
EXIT_USAGE: Final = 2  # a missing or contradictory option
EXIT_TIMEOUT: Final = 3  # gave up waiting (trigger --wait)
EXIT_CODES: Final = (
    "exit status: 0 ok, 1 a check or an action failed (or AWS refused), 2 usage error, "
    "3 timed out waiting."
)


class ToolError(Exception):
    """A failure reported as one line, exit status 1."""


class UsageError(Exception):
    """A missing or contradictory option, exit status 2."""


def prog(command: str) -> str:
    """The name a subcommand's usage and errors show."""
    return f"{CLI} {command}"


def describe(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        if message.lstrip().startswith("<"):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = f"HTTP {status} without an AWS error body"
        return one_line(f"{exc.operation_name}: {code}: {message}")
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region, or set AWS_REGION (or a profile's region)"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: pass --profile, or set AWS_PROFILE (or the AWS_* keys)"
    return one_line(f"{type(exc).__name__}: {exc}")


def one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns, every cell whole."""
    sizes = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    return [
        "  ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip()
        for row in [list(headers), *rows]
    ]


def positive_int(maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < 1 or (maximum is not None and value > maximum):
            bound = f"1 to {maximum}" if maximum else "at least 1"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def add_stack_options(
    parser: argparse.ArgumentParser, *, stack_required: bool = False, json_help: str | None = None
) -> None:
    """--stack, --region, --profile and --json, the same on every subcommand. A stack that
    `make up` deployed is found by its name alone (its endpoint and credentials come from
    local/.up/stack.json); any other is an account's, reached with --region and --profile or
    the standard AWS environment."""
    parser.add_argument(
        "--stack",
        metavar="NAME",
        required=stack_required,
        help="the deployed stack (make up's local stack is found by its name)",
    )
    parser.add_argument("--region", metavar="REGION", help="AWS region (default: the profile's)")
    parser.add_argument("--profile", metavar="NAME", help="AWS profile (default: AWS_PROFILE)")
    parser.add_argument("--json", action="store_true", help=json_help or "JSON instead of a table")


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace | int:
    """The parsed command line, or the exit code when argparse has already printed the usage and
    the problem (or the help)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def run_main(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    work: Callable[[argparse.Namespace], int],
) -> int:
    """Parse, run `work`, and turn what it raises into one line and the documented exit code:
    UsageError 2, ToolError and AWS errors 1, an interrupt 1. Never a traceback."""
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    try:
        return work(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ToolError as exc:
        print(f"{parser.prog}: error: {one_line(str(exc))}", file=sys.stderr)
    except (ClientError, BotoCoreError) as exc:
        print(f"{parser.prog}: error: {describe(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
    return EXIT_ERROR
