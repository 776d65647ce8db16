"""`make run`: every sample event through the real handler, on the embedded local stack.

Starts a moto server (Secrets Manager, SQS, DynamoDB) and the Glider API emulator on loopback,
creates the secret, the queues and the idempotency table, invokes the handler with each file in
events/ as Lambda would (with a context that has a real deadline), then hands it the work
queue's messages as the stack's event source would (an event's invocation only queues one
message per portfolio: every trigger runs from the work queue), and prints what happened to
each portfolio (read from the function's own JSON log lines) and what ended up in the DLQ.

    make run                                  # the local demo, no AWS account, no Docker
    make run ARGS=--verbose                   # also print the raw JSON logs and EMF metrics
    make run ARGS="--api-version v2"          # the same story on Glider's v2 API
    make run ARGS="--event events/sqs-batch.json"   # only that event (repeatable)
    GLIDER_API_KEY=... make run ARGS="--real-api --portfolio-ids ao04x0r6"
                                              # the real Glider API (real rebalances!)
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glider_trigger.settings import ApiVersion
from local.demo.show import (
    OutcomeRows,
    describe_batches,
    describe_response,
    print_dlq,
    print_raw,
    print_stack,
)
from local.fixtures.event_source import SqsEventSource, sqs_event
from local.fixtures.function import LocalFunction, json_records
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import REGION, Deployment, MotoServer, deploy, drain

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
DEMO_API_KEY = "glider-local-demo-key"  # the emulator's key; not a real credential
REAL_API_URL = "https://api.glider.fi"

# Run order and what each sample shows; any other file in events/ runs afterwards.
EVENT_NOTES = {
    "schedule-single.json": "EventBridge Scheduler constant input, one portfolio",
    "schedule-many.json": "Scheduler input, several ids (one duplicate, one without a schedule)",
    "eventbridge-rule.json": (
        "EventBridge bus event (rule target): a lost answer reconciled, a 503 then OK, unknown id"
    ),
    "sqs-batch.json": "SQS batch: 429 then OK, OK, 503 x4, a path-bending id, a non-JSON body",
    "direct-unknown-shape.json": "Direct invocation with an input of an unknown shape",
}
REDELIVERY = "sqs-batch.json, delivered again"
EVENT_NOTES[REDELIVERY] = "SQS redelivers the same messages: the idempotency guard at work"


def prepare_emulator(emulator: GliderEmulator) -> None:
    """The demo's portfolios, and scripted failures so that the failure paths show too."""
    for portfolio_id in ("port_abc123", "port_def456", "port_ghi789", "port_busy01"):
        emulator.add_portfolio(portfolio_id)
    emulator.add_portfolio("port_flaky01")
    emulator.script("port_flaky01", Fault.error(503, "API_000", "Service temporarily unavailable"))
    emulator.add_portfolio("port_nosched", has_schedule=False)
    emulator.script("port_busy01", Fault.rate_limited(retry_after=1))
    emulator.add_portfolio("port_down01")
    emulator.script("port_down01", *[Fault.error(503, "API_000", "Upstream unavailable")] * 4)
    # port_gone01 is deliberately unknown: the API answers 404 API_200.
    # Glider acts on port_ghi789's trigger but its answer is lost: reconciled, not sent twice.
    emulator.script("port_ghi789", Fault.lost_response())
    # Rebalances run for a second on chain; port_def456's fails there.
    emulator.set_workflow_seconds(1.0)
    emulator.fail_next_rebalance("port_def456", "execution reverted: slippage tolerance exceeded")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--verbose", action="store_true", help="print raw logs and metrics")
    parser.add_argument(
        "--real-api",
        action="store_true",
        help="call the real Glider API (key from $GLIDER_API_KEY or a prompt); needs "
        "--portfolio-ids; AWS stays local (moto)",
    )
    parser.add_argument("--portfolio-ids", default="", help="comma-separated ids (--real-api)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the local stack running afterwards (make dlq)"
    )
    parser.add_argument(
        "--api-version",
        choices=[version.value for version in ApiVersion],
        default=ApiVersion.V1.value,
        help="the Glider API the function calls (GLIDER_API_VERSION; default v1)",
    )
    parser.add_argument(
        "--event",
        metavar="FILE",
        action="append",
        type=Path,
        help="run only this event file (repeatable; default: every file in events/)",
    )
    args = parser.parse_args(argv)
    if args.real_api and not args.portfolio_ids:
        parser.error("--real-api needs --portfolio-ids: the sample ids do not exist on Glider")
    if args.real_api and args.event:
        parser.error("--event runs a sample event on the emulator: not with --real-api")
    chosen = [_read_event(parser, path) for path in args.event or []]

    moto = MotoServer().start()
    emulator = GliderEmulator(api_keys=[DEMO_API_KEY]).start()
    try:
        if args.real_api:
            api_key = os.environ.get("GLIDER_API_KEY") or getpass.getpass("Glider API key: ")
            api_url = os.environ.get("GLIDER_API_BASE_URL") or REAL_API_URL
            deployment = deploy(moto, emulator, api_key=api_key, api_version=args.api_version)
            deployment.glider_api_url = api_url
            ids = [i.strip() for i in args.portfolio_ids.split(",") if i.strip()]
            events = [("portfolio-ids (command line)", {"portfolioIds": ids})]
        else:
            prepare_emulator(emulator)
            deployment = deploy(moto, emulator, api_key=DEMO_API_KEY, api_version=args.api_version)
            events = chosen or list(_sample_events())
        print_stack(moto, deployment, real_api=args.real_api)
        run(deployment, events, verbose=args.verbose)
        if not args.real_api:
            print(
                f"\nGlider emulator received {len(emulator.requests)} requests and triggered "
                f"{len(emulator.rebalances)} rebalances."
            )
        if args.keep:
            _keep_running(moto, deployment)
    finally:
        emulator.stop()
        moto.stop()
    return 0


def run(deployment: Deployment, events: list[tuple[str, Any]], *, verbose: bool) -> None:
    # Follow-ups after 1 s (then 2, 4, ...) instead of 30 s: the story fits in seconds.
    function = LocalFunction(deployment.environment(FOLLOW_FIRST_DELAY_SECONDS="1"))
    work_queue = SqsEventSource(deployment.sqs, deployment.work_queue, region=REGION)
    shown = OutcomeRows(ApiVersion(deployment.api_version))
    print_raw(function.new_lines(), verbose=verbose)
    for name, event in events:
        print(f"\n== {name}: {EVENT_NOTES.get(name, 'sample event')}")
        try:
            response = function.invoke(event)
        except Exception as exc:
            response, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = ""
        show_lines(function.new_lines(), shown, verbose=verbose)
        if error:
            print(f"   handler raised {error}: Lambda would retry and keep the event")
        else:
            print(f"   returned {describe_response(response)}")
        # What it queued (or split), handed to the function as the work queue's event source
        # would: what is visible at once; a redelivery comes back after its visibility timeout.
        batches = work_queue.drain(function.invoke, idle_seconds=0)
        if batches:
            show_lines(function.new_lines(), shown, verbose=verbose)
            print(f"   work queue: {describe_batches(batches)}")
    follow_outcomes(function, deployment, shown, verbose=verbose)
    print_dlq(deployment)


def show_lines(lines: list[str], shown: OutcomeRows, *, verbose: bool) -> None:
    """Each portfolio's outcome among an invocation's output lines (and them raw if verbose)."""
    for row in shown.rows([r for r in json_records(lines) if "_aws" not in r]):
        print(row)
    print_raw(lines, verbose=verbose)


def follow_outcomes(
    function: LocalFunction, deployment: Deployment, shown: OutcomeRows, *, verbose: bool
) -> None:
    """The follow-up queue delivered to the function, as its event source would, until every
    rebalance has its outcome; then the outcome events the bus's rule delivered."""
    queue = deployment.follow_up_queue
    if queue is None:
        return
    print("\n== Follow-ups: every rebalance followed to its outcome (status calls, delayed)")
    for _ in range(30):
        messages = drain(deployment.sqs, queue.url, wait_seconds=3)
        if not messages:
            break
        function.invoke(sqs_event(messages, queue.arn, REGION))
        lines = function.new_lines()
        for row in shown.rows([r for r in json_records(lines) if "_aws" not in r]):
            print(row)
        print_raw(lines, verbose=verbose)
    if deployment.outcome_events is not None:
        events = drain(deployment.sqs, deployment.outcome_events.url, wait_seconds=1)
        kinds = Counter(json.loads(m["Body"])["detail-type"] for m in events)
        listed = ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items())) or "none"
        print(f"   outcome events on the bus {deployment.outcome_bus}: {listed}")


def _read_event(parser: argparse.ArgumentParser, path: Path) -> tuple[str, Any]:
    """One --event file, or the usage error (exit status 2) that names it and what is wrong."""
    try:
        return path.name, json.loads(path.read_text())
    except FileNotFoundError:
        parser.error(f"--event {path}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"--event {path}: cannot be read: {exc}")
    except json.JSONDecodeError as exc:
        parser.error(f"--event {path}: not JSON: {exc}")


def _sample_events() -> Iterator[tuple[str, Any]]:
    files = sorted(EVENTS_DIR.glob("*.json"))
    ordered = [EVENTS_DIR / n for n in EVENT_NOTES if (EVENTS_DIR / n).exists()]
    for path in ordered + [f for f in files if f not in ordered]:
        yield path.name, json.loads(path.read_text())
    redelivered = EVENTS_DIR / "sqs-batch.json"
    if redelivered.exists():
        # SQS delivers at least once: the same messages again must not trigger again.
        yield REDELIVERY, json.loads(redelivered.read_text())


def sam_local_env(deployment: Deployment) -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` for the local stack: the function's variables, pointed at
    it, so that its start-up validation finds real queue URLs and names instead of the logical
    ids `sam local` resolves `!Ref`s to. SAM applies only variables the template declares:
    AWS_ENDPOINT_URL is not one (the function would call AWS itself), see docs/development.md."""
    return {"TriggerFunction": deployment.environment()}


def _keep_running(moto: MotoServer, deployment: Deployment) -> None:
    # `make doctor` (tools/doctor.py) finds the stack here while it is up, `sam local invoke
    # --env-vars local/env.json` its variables; both removed when it stops.
    stack_file = Path(__file__).resolve().parents[1] / ".stack.json"
    env_file = Path(__file__).resolve().parents[1] / "env.json"
    stack_file.write_text(json.dumps({"environment": deployment.environment()}, indent=2) + "\n")
    env_file.write_text(json.dumps(sam_local_env(deployment), indent=2) + "\n")
    try:
        print("\nThe local stack stays up (Ctrl-C to stop). In another shell, for example:")
        print(
            f"  AWS_ENDPOINT_URL={moto.endpoint_url} AWS_DEFAULT_REGION={REGION} "
            "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\"
        )
        follow_ups = deployment.follow_up_queue.url if deployment.follow_up_queue else ""
        print(f"  DLQ_URL={deployment.dlq.url} WORK_QUEUE_URL={deployment.work_queue.url} \\")
        print(f"  FOLLOW_UP_QUEUE_URL={follow_ups} \\")
        print("  make dlq ARGS='redrive --reason NOT_FOUND --dry-run'")
        print(
            "  make doctor ARGS='--portfolio-id port_abc123'   checks the key, the queues and "
            "the table (it reads local/.stack.json: no variables needed)"
        )
        print(
            "  sam local invoke TriggerFunction -e events/schedule-single.json "
            "--env-vars local/env.json --docker-network host   (Docker, Linux)"
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        stack_file.unlink(missing_ok=True)
        env_file.unlink(missing_ok=True)
