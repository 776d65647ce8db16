"""`make chaos`: thousands of portfolio triggers through the real handler, under injected faults.

    python -m local.chaos                       # 2,000 ids
    python -m local.chaos --quick               # ~300 ids (what the test suite runs)
    python -m local.chaos --ids 5000 --seed 3 --json chaos.json

The run starts a moto server, the Glider emulator and a FaultProxy in front of moto (the
function's AWS endpoint is the proxy; the harness's own clients talk to moto directly), loads the
handler as Lambda does, and pushes every id through it:

- ~70% as SQS messages (one id, some with 2-3) on the work queue, consumed by the SQS event
  source until the queue and its in-flight messages drain: failures come back after the
  visibility timeout (1 s, or what the function set for a long Retry-After), and moto's redrive
  moves a message to the DLQ after maxReceiveCount receives;
- ~30% as EventBridge envelopes and Scheduler inputs (10-50 ids each), invoked asynchronously:
  when the handler raises, the same event is invoked again with the same request id up to two
  more times, then Lambda's on-failure destination record is written to the DLQ (on moto).

Faults, seeded and bounded: Glider 5xx (API_000), 429 with a short Retry-After and a few with one
longer than the function waits, connection resets, answers slower than the read timeout, lost
responses (triggered, then reset), 404 (unknown portfolio); through the proxy, Secrets Manager
GetSecretValue throttling (the secret is read for every trigger) and SendMessageBatch failures
(the function's DLQ writes), some long enough to exhaust the SDK's and the function's retries.

Then it checks two promises:
- nothing lost: every id ends triggered (a rebalance in the emulator) or in the DLQ (every body
  parsed: portfolioId, portfolioIds, an EventBridge envelope's detail, a destination record's
  requestPayload), or is still on the work queue (none once the run has drained);
- nothing doubled: no id triggered again by a redelivery or retry of the same delivery after a
  trigger the function saw succeed. Repeats no client can prevent (Glider acted on a request
  whose answer never arrived: the scripted lost responses and too-slow answers) are counted
  apart, with how many of them the function flagged (`maybe_delivered: true` in its logs).

Exit status 1 when an id is lost, doubled, or still pending when the drain timeout ran out.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.retries.standard import ExponentialBackoff

from local.event_source import SqsEventSource
from local.fault_proxy import AwsFault, FaultProxy
from local.function import LocalFunction
from local.glider_emulator import Fault, GliderEmulator, Rebalance
from local.lambda_context import LocalLambdaContext
from local.stack import Deployment, MotoServer, deploy, drain

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

API_KEY = "chaos-local-key-not-a-secret"  # the emulator's key, not a credential
ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:glider-rebalance-trigger"
SECRETS_READ = "secretsmanager.GetSecretValue"
DLQ_WRITE = "AmazonSQS.SendMessageBatch"
STORE_UPDATE = "DynamoDB_20120810.UpdateItem"  # the guard's "success" write (opt-in faults)
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries

# Report keys and labels of the faults, in the order they are printed.
GLIDER_FAULTS = {
    "glider.server_error": "Glider 5xx API_000",
    "glider.rate_limited": "Glider 429, Retry-After 0-1 s",
    "glider.rate_limited_long": "Glider 429, Retry-After longer than the function waits",
    "glider.connection_reset": "Glider connection reset (nothing triggered)",
    "glider.slow": "Glider answer slower than the read timeout (triggered)",
    "glider.lost_response": "Glider lost response (triggered, then reset)",
    "glider.not_found": "Glider 404 API_200 (unknown portfolio)",
}
AWS_FAULTS = {
    f"aws.{SECRETS_READ}.throttling": "GetSecretValue ThrottlingException",
    f"aws.{DLQ_WRITE}.server_error": "SendMessageBatch 500 InternalFailure",
    f"aws.{DLQ_WRITE}.connection_reset": "SendMessageBatch connection reset",
    f"aws.{DLQ_WRITE}.access_denied": "SendMessageBatch AccessDenied (DLQ outage)",
}
STORE_FAULT = f"aws.{STORE_UPDATE}.access_denied"
STORE_FAULT_LABEL = "DynamoDB UpdateItem AccessDenied (idempotency success write)"
# Faults after which Glider has acted although the function saw no answer.
MAYBE_DELIVERED_FAULTS = frozenset({"glider.slow", "glider.lost_response"})
DESTINATION = "on-failure destination records"
REDRIVEN = "redriven work-queue messages"
OWN_LETTERS = "function's own letters"


@dataclass(frozen=True)
class ChaosConfig:
    ids: int = 2000
    seed: int = 0
    sqs_share: float = 0.7
    multi_id_message_share: float = 0.15  # SQS messages with 2-3 ids
    event_size: tuple[int, int] = (10, 50)
    # Glider emulator faults: the chance that an id gets a script of each kind.
    p_not_found: float = 0.03
    p_server_error: float = 0.06
    p_rate_limited: float = 0.015
    p_connection_reset: float = 0.03
    p_slow: float = 0.012
    p_lost_response: float = 0.012
    long_rate_limits: int = 3  # single-id messages first answered with a long Retry-After
    long_retry_after: tuple[int, int] = (20, 30)
    slow_seconds: tuple[float, float] = (0.5, 0.9)
    min_each_fault: int = 2  # each Glider fault at least this often: no run can miss one
    # AWS faults through the proxy (the function's own calls only).
    secret_throttle_rate: float = 0.005  # any GetSecretValue: the SDK retries it
    secret_outage_chance: float = 0.03  # per invocation: one read's SDK attempts all throttled
    secret_exhaustions: int = 2  # outages long enough to exhaust the function's retries too
    dlq_server_error_rate: float = 0.03  # any SendMessageBatch: the SDK retries it
    dlq_reset_rate: float = 0.01
    dlq_outage_chance_sqs: float = 0.03  # per SQS invocation: AccessDenied for 1-2 DLQ writes
    dlq_outage_chance_event: float = 0.15  # per async event: 1-3 writes (3: destination record)
    store_fault_rate: float = 0.0  # opt-in: the guard's UpdateItem (success record) denied
    idempotency: bool = True  # False: run the function without its table (no guard)
    # The function, the queue and the run.
    context_timeout_seconds: float = 30.0
    read_timeout_seconds: float = 0.3
    connect_timeout_seconds: float = 0.5
    visibility_timeout_seconds: int = 1
    max_receive_count: int = 5
    drain_timeout_seconds: float = 240.0
    sdk_attempts: int = 4  # the function's botocore config: max_attempts=3 retries, 4 in all
    trigger_tries: int = 4  # GLIDER_MAX_ATTEMPTS: tries per trigger, key reads included
    dlq_send_attempts: int = 3  # DeadLetterQueue's own attempts per write
    # botocore's own backoff between its retries (up to 1 + 2 + 4 s per call for throttling),
    # scaled to compress time: 1.0 is botocore as shipped. Retries and errors are unchanged.
    sdk_backoff_scale: float = 1.0

    @classmethod
    def quick(cls, *, ids: int = 300, seed: int = 0) -> ChaosConfig:
        """The short run: the same mix, one long Retry-After (10 s), one secret exhaustion, and
        botocore's backoff at a tenth (its retries of throttled reads would take most of it)."""
        return cls(
            ids=ids,
            seed=seed,
            sdk_backoff_scale=0.1,
            long_rate_limits=1,
            long_retry_after=(10, 10),
            secret_exhaustions=1,
            dlq_outage_chance_sqs=0.05,
            dlq_outage_chance_event=0.3,
        )

    def function_environment(self) -> dict[str, str]:
        return {
            "SECRET_CACHE_SECONDS": "0",
            "RETRY_BASE_DELAY_SECONDS": "0.01",
            "RETRY_MAX_DELAY_SECONDS": "1.5",
            "GLIDER_MAX_ATTEMPTS": str(self.trigger_tries),
            "GLIDER_CONNECT_TIMEOUT_SECONDS": str(self.connect_timeout_seconds),
            "GLIDER_READ_TIMEOUT_SECONDS": str(self.read_timeout_seconds),
            "DEADLINE_SAFETY_MARGIN_SECONDS": "0.5",
        }


@dataclass
class ChaosReport:
    seed: int
    ids_in: int
    ids_via_sqs: int
    ids_via_events: int
    triggered: int
    dead_lettered: int
    dead_lettered_only: int
    pending: int
    lost: int
    doubled_by_redelivery: int  # ids triggered again after a trigger the function saw succeed
    doubled_extra_rebalances: int
    unpreventable_repeats: int  # extra rebalances after a lost or too-slow answer
    unpreventable_flagged: int  # ... of which the function logged maybe_delivered: true
    rebalances: int
    wall_seconds: float = 0.0
    # Ids both triggered and in the DLQ, by why: the function never saw the trigger succeed;
    # only a whole-input record (destination record, redriven multi-id message) names them;
    # anything else (the function dead-lettered an id it had seen triggered).
    both_response_lost: list[str] = field(default_factory=list)
    both_whole_input: list[str] = field(default_factory=list)
    both_other: list[str] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)
    pending_ids: list[str] = field(default_factory=list)
    doubled_ids: list[str] = field(default_factory=list)
    doubled_by_cause: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)
    final_failures: dict[str, int] = field(default_factory=dict)  # logged reasons
    dlq_messages: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def triggered_and_dead_lettered(self) -> int:
        return len(self.both_response_lost) + len(self.both_whole_input) + len(self.both_other)

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.doubled_by_redelivery == 0 and self.pending == 0

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["triggered_and_dead_lettered"] = self.triggered_and_dead_lettered
        document["passed"] = self.passed
        return document

    def table(self) -> str:
        both = (
            f"{self.triggered_and_dead_lettered} (response lost: {len(self.both_response_lost)}"
            f", only in a whole-input record: {len(self.both_whole_input)}, other: "
            f"{len(self.both_other)})"
        )
        doubled = f"{self.doubled_by_redelivery} ids, {self.doubled_extra_rebalances} extra"
        if self.doubled_by_cause:
            doubled += f" ({_listing(self.doubled_by_cause)})"
        rows: list[tuple[str, str]] = [
            ("ids in", f"{self.ids_in} ({self.ids_via_sqs} in SQS messages, "
             f"{self.ids_via_events} in EventBridge/Scheduler events)"),
            ("triggered", str(self.triggered)),
            ("in the DLQ", str(self.dead_lettered)),
            ("  dead-lettered only", str(self.dead_lettered_only)),
            ("  triggered and dead-lettered", both),
            ("still pending", str(self.pending)),
            ("LOST (must be 0)", str(self.lost)),
            ("DOUBLED by a redelivery/retry (must be 0)", doubled),
            ("repeats no client can prevent", f"{self.unpreventable_repeats} (the function "
             f"flagged maybe_delivered on {self.unpreventable_flagged})"),
            ("rebalances in the emulator", str(self.rebalances)),
        ]  # fmt: skip
        labels = {**GLIDER_FAULTS, **AWS_FAULTS, STORE_FAULT: STORE_FAULT_LABEL}
        sections: list[tuple[str, Mapping[str, int], Mapping[str, str]]] = [
            ("faults injected", self.faults, labels),
            ("invocations", self.invocations, {}),
            ("final failures logged, by reason", self.final_failures, {}),
            ("DLQ messages", self.dlq_messages, {}),
        ]
        for title, counts, names in sections:
            rows.append((title, "" if counts else "none"))
            rows += [(f"  {names.get(key, key)}", str(n)) for key, n in counts.items()]
        rows.append(("wall time", f"{self.wall_seconds:.1f} s"))
        width = max(len(name) for name, _ in rows)
        lines = [f"Chaos run, seed {self.seed}", "-" * (width + 40)]
        lines += [f"{name:<{width}}  {value}".rstrip() for name, value in rows]
        for title, ids in (
            ("lost", self.lost_ids),
            ("doubled by a redelivery/retry", self.doubled_ids),
            ("triggered and dead-lettered (other)", self.both_other),
            ("pending", self.pending_ids),
        ):
            if ids:
                lines.append(f"{title}: {_sample(ids)}")
        lines += self.notes
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


# --------------------------------------------------------------------------- the inputs


@dataclass
class ChaosPlan:
    """What goes in and which Glider faults each id meets, from the seed alone."""

    ids: list[str]
    messages: list[list[str]]  # the ids of each SQS message, in send order
    event_ids: list[list[str]]
    events: list[dict[str, Any]]
    scripts: dict[str, list[tuple[str, Fault]]]  # id -> (fault key, fault), served in order
    not_found: set[str]  # ids the emulator does not know (404 API_200)


def make_plan(config: ChaosConfig) -> ChaosPlan:
    rng = random.Random(config.seed)  # noqa: S311 - test data, not cryptography
    ids = [f"chaos_{n:05d}" for n in range(1, config.ids + 1)]
    sqs_count = round(config.ids * config.sqs_share)
    messages: list[list[str]] = []
    position = 0
    while position < sqs_count:
        size = rng.choice((2, 3)) if rng.random() < config.multi_id_message_share else 1
        messages.append(ids[position : min(position + size, sqs_count)])
        position += size
    event_ids: list[list[str]] = []
    while position < config.ids:
        size = rng.randint(*config.event_size)
        event_ids.append(ids[position : position + size])
        position += size
    plan = ChaosPlan(ids, messages, event_ids, [], {}, set())
    _script_faults(plan, config, rng)
    plan.events = [_event(batch, index, rng) for index, batch in enumerate(event_ids)]
    return plan


def _script_faults(plan: ChaosPlan, config: ChaosConfig, rng: random.Random) -> None:
    chances = [
        ("glider.not_found", config.p_not_found),
        ("glider.server_error", config.p_server_error),
        ("glider.rate_limited", config.p_rate_limited),
        ("glider.connection_reset", config.p_connection_reset),
        ("glider.slow", config.p_slow),
        ("glider.lost_response", config.p_lost_response),
    ]
    for portfolio_id in plan.ids:
        roll = rng.random()
        for kind, chance in chances:
            if roll < chance:
                _assign(plan, kind, portfolio_id, rng, config)
                break
            roll -= chance
    singles = [m[0] for m in plan.messages if len(m) == 1]
    # A few long Retry-Afters, on the first single-id messages (received first, so that the
    # wait overlaps the rest of the run).
    for portfolio_id in singles[: config.long_rate_limits]:
        plan.not_found.discard(portfolio_id)
        seconds = rng.randint(*config.long_retry_after)
        plan.scripts[portfolio_id] = [("glider.rate_limited_long", Fault.rate_limited(seconds))]
    # Multi-id messages that must be redelivered or dead-lettered in part: one id fails every
    # try of the first delivery (the others are triggered, and must not be triggered again on
    # the redelivery), or is unknown to the API.
    multi = [m for m in plan.messages if len(m) > 1]
    rng.shuffle(multi)
    for message in multi[: config.min_each_fault]:
        plan.not_found.discard(message[-1])
        error = Fault.error(503, "API_000", "Service unavailable")
        plan.scripts[message[-1]] = [("glider.server_error", error)] * config.trigger_tries
    for message in multi[config.min_each_fault : 2 * config.min_each_fault]:
        plan.scripts.pop(message[-1], None)
        plan.not_found.add(message[-1])
    # Each kind at least min_each_fault times, on single-id SQS messages: they are retried
    # until the API has been called, so the fault is really served.
    clean = [i for i in singles if i not in plan.scripts and i not in plan.not_found]
    rng.shuffle(clean)
    for kind, _ in chances:
        have = (
            len(plan.not_found)
            if kind == "glider.not_found"
            else sum(1 for script in plan.scripts.values() if script[0][0] == kind)
        )
        for _ in range(max(0, config.min_each_fault - have)):
            if clean:
                _assign(plan, kind, clean.pop(), rng, config)
    # The first event names an unknown portfolio, so each of its attempts writes to the DLQ: a
    # DLQ outage over all three makes Lambda send the on-failure destination record.
    if plan.event_ids and not plan.not_found.intersection(plan.event_ids[0]):
        victim = plan.event_ids[0][len(plan.event_ids[0]) // 2]
        plan.scripts.pop(victim, None)
        plan.not_found.add(victim)


def _assign(
    plan: ChaosPlan, kind: str, portfolio_id: str, rng: random.Random, config: ChaosConfig
) -> None:
    if kind == "glider.not_found":
        plan.not_found.add(portfolio_id)
        return
    count = 1
    if kind == "glider.server_error":
        # Sometimes as many as the function's tries: that invocation gives up on the id.
        count = rng.choices((1, 2, config.trigger_tries), weights=(70, 20, 10))[0]
        fault = Fault.error(rng.choice((500, 502, 503)), "API_000", "Service unavailable")
    elif kind == "glider.rate_limited":
        count = rng.choice((1, 1, 2))
        fault = Fault.rate_limited(retry_after=rng.choice((0, 0, 1)))
    elif kind == "glider.connection_reset":
        count = rng.choices((1, 2, config.trigger_tries), weights=(70, 20, 10))[0]
        fault = Fault.connection_reset()
    elif kind == "glider.slow":
        fault = Fault.slow(round(rng.uniform(*config.slow_seconds), 2))
    else:  # lost_response, sometimes twice in a row
        count = rng.choices((1, 2), weights=(80, 20))[0]
        fault = Fault.lost_response()
    plan.scripts[portfolio_id] = [(kind, fault)] * count


def _event(ids: list[str], index: int, rng: random.Random) -> dict[str, Any]:
    when = datetime(2026, 1, 5, 9, 30, tzinfo=UTC) + timedelta(minutes=index)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if rng.random() < 0.5:
        return {
            "version": "0",
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "detail-type": "Glider Rebalance Requested",
            "source": "chaos.harness",
            "account": ACCOUNT,
            "time": stamp,
            "region": REGION,
            "resources": [],
            "detail": {"portfolioIds": ids},
        }
    return {
        "portfolioIds": ids,
        "scheduleArn": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/chaos-{index:03d}",
        "scheduledTime": stamp,
    }


def _body(ids: list[str]) -> dict[str, Any]:
    return {"portfolioId": ids[0]} if len(ids) == 1 else {"portfolioIds": ids}


# --------------------------------------------------------------------------- the run


@dataclass
class _Stack:
    config: ChaosConfig
    plan: ChaosPlan
    function: LocalFunction
    proxy: FaultProxy
    emulator: GliderEmulator
    deployment: Deployment
    sqs: SQSClient  # straight to moto, never through the proxy


class _Harness:
    def __init__(self, stack: _Stack, progress: Callable[[str], None]) -> None:
        self.stack = stack
        self.config = stack.config
        self.progress = progress
        self.rng = random.Random(stack.config.seed + 1)  # noqa: S311 - fault timing
        self.invocations: Counter[str] = Counter()
        self.handler_errors: Counter[str] = Counter()
        self.sent_message_ids: dict[str, list[str]] = {}
        self.started = self._last_progress = time.monotonic()
        total = max(1, len(stack.plan.messages) // 10 + len(stack.plan.events))
        self.exhaust_secret_at = {
            1 + self.rng.randrange(max(1, total // 2))
            for _ in range(self.config.secret_exhaustions)
        }

    # ---- faults around the invocations

    def background_faults(self) -> None:
        proxy, config = self.stack.proxy, self.config
        proxy.inject(SECRETS_READ, AwsFault.throttling(), rate=config.secret_throttle_rate)
        proxy.inject(DLQ_WRITE, AwsFault.server_error(), rate=config.dlq_server_error_rate)
        proxy.inject(DLQ_WRITE, AwsFault.connection_reset(), rate=config.dlq_reset_rate)
        # At least one of each early on, whatever the rates.
        proxy.inject(DLQ_WRITE, AwsFault.server_error(), times=1)
        proxy.inject(DLQ_WRITE, AwsFault.connection_reset(), times=1)
        if config.store_fault_rate:
            proxy.inject(STORE_UPDATE, AwsFault.access_denied(), rate=config.store_fault_rate)

    def before_invocation(self, dlq_outage_chance: float, outage_writes: tuple[int, ...]) -> None:
        number = sum(self.invocations[k] for k in ("SQS batches", "async invocations"))
        sdk = self.config.sdk_attempts
        if number in self.exhaust_secret_at:
            # Every SDK attempt of every try of one trigger throttled: it fails SECRET_THROTTLED.
            reads = self.config.trigger_tries
            self.stack.proxy.inject(SECRETS_READ, AwsFault.throttling(), times=sdk * reads)
        elif self.rng.random() < self.config.secret_outage_chance:
            # One read's SDK attempts all throttled: the function's own retry gets the key.
            self.stack.proxy.inject(SECRETS_READ, AwsFault.throttling(), times=sdk)
        if self.rng.random() < dlq_outage_chance:
            self.dlq_outage(self.rng.choice(outage_writes))

    def dlq_outage(self, writes: int) -> None:
        """AccessDenied (never retried by the SDK) for `writes` whole DLQ writes."""
        times = writes * self.config.dlq_send_attempts
        self.stack.proxy.inject(DLQ_WRITE, AwsFault.access_denied(), times=times)

    # ---- invocations

    def invoke_sqs(self, event: dict[str, Any]) -> Mapping[str, Any]:
        self.invocations["SQS batches"] += 1
        self.before_invocation(self.config.dlq_outage_chance_sqs, (1, 1, 2))
        context = LocalLambdaContext(timeout_seconds=self.config.context_timeout_seconds)
        try:
            response: Mapping[str, Any] = self.stack.function.invoke(event, context=context)
        except Exception as exc:
            self.handler_errors[f"SQS batch: {type(exc).__name__}"] += 1
            raise
        return response

    def invoke_async(self, index: int, event: dict[str, Any]) -> None:
        """Lambda's asynchronous invocation: up to two retries of the same event with the same
        request id, then the on-failure destination record, written to the DLQ on moto."""
        self.invocations["async events"] += 1
        request_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if index == 0:
            self.dlq_outage(ASYNC_ATTEMPTS)
        error: Exception | None = None
        for attempt in range(1, ASYNC_ATTEMPTS + 1):
            self.invocations["async invocations"] += 1
            chance = self.config.dlq_outage_chance_event if attempt == 1 else 0.0
            self.before_invocation(chance, (1, 2, 3))
            context = LocalLambdaContext(
                timeout_seconds=self.config.context_timeout_seconds, aws_request_id=request_id
            )
            try:
                self.stack.function.invoke(event, context=context)
            except Exception as exc:
                self.handler_errors[f"async: {type(exc).__name__}"] += 1
                error = exc
            else:
                return
        self.invocations[DESTINATION] += 1
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"{FUNCTION_ARN}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": ASYNC_ATTEMPTS,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {
                "errorMessage": str(error)[:1000],
                "errorType": type(error).__name__,
            },
        }
        self.stack.sqs.send_message(
            QueueUrl=self.stack.deployment.dlq.url, MessageBody=json.dumps(record)
        )

    def send_messages(self) -> None:
        queue_url = self.stack.deployment.work_queue.url
        messages = self.stack.plan.messages
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            response = self.stack.sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "MessageBody": json.dumps(_body(ids))}
                    for n, ids in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                raise RuntimeError(f"could not fill the work queue: {response['Failed']}")
            for sent in response["Successful"]:
                self.sent_message_ids[sent["MessageId"]] = chunk[int(sent["Id"])]

    def queue_depth(self) -> int:
        attributes = self.stack.sqs.get_queue_attributes(
            QueueUrl=self.stack.deployment.work_queue.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def run(self) -> None:
        """SQS batches, with an async event every `stride` of them, until everything drained."""
        self.background_faults()
        self.send_messages()
        source = SqsEventSource(self.stack.sqs, self.stack.deployment.work_queue, region=REGION)
        events = deque(enumerate(self.stack.plan.events))
        batches = math.ceil(len(self.stack.plan.messages) / 10)
        stride = max(1, batches // (len(events) + 1))
        deadline = time.monotonic() + self.config.drain_timeout_seconds
        polls = 0
        while True:
            if events and polls % stride == stride - 1:
                self.invoke_async(*events.popleft())
            result = source.poll(self.invoke_sqs)
            polls += 1
            self.report_progress()
            if result is not None:
                self.invocations["SQS records reported for retry"] += len(result.redelivered)
            elif events:
                self.invoke_async(*events.popleft())
            elif self.queue_depth() == 0 or time.monotonic() > deadline:
                return
            else:
                time.sleep(0.2)  # in flight: wait for a visibility timeout to end

    def report_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= 10:
            self._last_progress = now
            self.progress(
                f"  {now - self.started:4.0f} s: {self.invocations['SQS batches']} SQS batches,"
                f" {self.invocations['async events']} async events, "
                f"{len(self.stack.emulator.rebalances)} rebalances"
            )


def run_chaos(
    ids: int | None = None,
    seed: int = 0,
    quick: bool = False,
    *,
    config: ChaosConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> ChaosReport:
    """One chaos run. Starts and stops its own moto server, Glider emulator and fault proxy."""
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
        deployment = deploy(
            moto,
            emulator,
            api_key=API_KEY,
            max_receive_count=config.max_receive_count,
            visibility_timeout=config.visibility_timeout_seconds,
        )
        env, notes = function_environment(deployment, moto, proxy, config)
        say(f"chaos: {config.ids} ids, seed {config.seed}")
        stack = _Stack(
            config, plan, LocalFunction(env), proxy, emulator, deployment, moto.client("sqs")
        )
        harness = _Harness(stack, say)
        harness.run()
        # Answers slower than the read timeout still trigger: let them land before counting.
        time.sleep(config.slow_seconds[1] + 0.2)
        report = _Tally(stack, harness).report()
        report.notes += notes
        if config.sdk_backoff_scale != 1.0:
            report.notes.append(
                f"note: botocore's retry backoff scaled by {config.sdk_backoff_scale:g}"
            )
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
) -> tuple[dict[str, str], list[str]]:
    """The function's environment: every AWS endpoint of moto's behind the proxy, and an
    idempotency table (created here if local.stack.deploy did not create one)."""
    notes: list[str] = []
    env = deployment.environment(**config.function_environment())
    for name, value in list(env.items()):
        if name.startswith("AWS_ENDPOINT_URL") and value.rstrip("/") == moto.endpoint_url:
            env[name] = proxy.endpoint_url
    if not config.idempotency:
        env["IDEMPOTENCY_TABLE_NAME"] = ""
        notes.append("note: the function ran without IDEMPOTENCY_TABLE_NAME (no guard)")
    elif not env.get("IDEMPOTENCY_TABLE_NAME"):
        table = getattr(deployment, "idempotency_table", None)
        if not isinstance(table, str) or not table:
            table = create_idempotency_table(moto)
            notes.append(f"note: the harness created the idempotency table {table}")
        env["IDEMPOTENCY_TABLE_NAME"] = table
    return env, notes


def create_idempotency_table(moto: MotoServer) -> str:
    """Powertools Idempotency's DynamoDB table: partition key `id` (string), on demand."""
    name = f"glider-rebalance-trigger-idempotency-{uuid.uuid4().hex[:8]}"
    moto.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


# --------------------------------------------------------------------------- the accounting


def payload_ids(payload: object, depth: int = 0) -> list[str]:
    """Portfolio ids in a DLQ body: portfolioId, portfolioIds, an EventBridge envelope's detail,
    a destination record's requestPayload (nested ones too)."""
    if not isinstance(payload, dict) or depth > 5:
        return []
    if isinstance(payload.get("requestContext"), dict) and "requestPayload" in payload:
        return payload_ids(payload["requestPayload"], depth + 1)
    if "detail-type" in payload and isinstance(payload.get("detail"), dict):
        return payload_ids(payload["detail"], depth + 1)
    found: list[str] = []
    if isinstance(payload.get("portfolioId"), str):
        found.append(payload["portfolioId"])
    many = payload.get("portfolioIds")
    if isinstance(many, list):
        found += [i for i in many if isinstance(i, str)]
    return found


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


class _Tally:
    """Reads what happened (the emulator, the function's logs, the queues) into a report."""

    def __init__(self, stack: _Stack, harness: _Harness) -> None:
        self.stack = stack
        self.harness = harness
        self.plan = stack.plan
        self.rebalances: dict[str, list[Rebalance]] = defaultdict(list)
        for rebalance in stack.emulator.rebalances:
            self.rebalances[rebalance.portfolio_id].append(rebalance)
        logs = stack.function.logs
        # Successes the function saw, by rebalance id; "already-triggered" lines are not new.
        self.observed = {
            str(r.get("rebalance_id")) for r in logs if r.get("outcome") == "triggered"
        }
        self.trigger_sources: dict[str, set[str]] = defaultdict(set)
        for record in logs:
            if record.get("outcome") == "triggered":
                self.trigger_sources[str(record.get("portfolio_id"))].add(str(record["source"]))
        # A final failure after sending (`maybe_delivered`), or earlier lost answers counted on
        # the line of the attempt that finally succeeded or failed (`maybe_delivered_attempts`).
        self.flags: Counter[str] = Counter()
        for record in logs:
            flagged = int(record.get("maybe_delivered_attempts") or 0)
            flagged += 1 if record.get("maybe_delivered") is True else 0
            if flagged:
                self.flags[str(record.get("portfolio_id"))] += flagged

        self.final_failures = Counter(
            str(r.get("reason")) for r in logs if r.get("outcome") == "failed"
        )
        self.dlq_write_failures = sum(
            1 for r in logs if str(r.get("message", "")).startswith("Dead-letter queue write fail")
        )
        self.explained: Counter[str] = Counter()  # served lost/slow faults, per id
        self.faults = self._faults()

    def _faults(self) -> dict[str, int]:
        """Scripted faults the emulator really served (each call to an id takes the next one),
        404s answered, and what the proxy injected."""
        recorded = self.stack.emulator.requests
        calls = Counter(r.portfolio_id for r in recorded if r.portfolio_id and r.method == "POST")
        faults: Counter[str] = Counter(dict.fromkeys(GLIDER_FAULTS, 0))
        for portfolio_id, script in self.plan.scripts.items():
            for kind, _ in script[: calls[portfolio_id]]:
                faults[kind] += 1
                if kind in MAYBE_DELIVERED_FAULTS:
                    self.explained[portfolio_id] += 1
        faults["glider.not_found"] = sum(
            1 for r in recorded if r.portfolio_id in self.plan.not_found and r.status == 404
        )
        injected = self.stack.proxy.injected_by_fault
        keys = [*AWS_FAULTS, *([STORE_FAULT] if self.stack.config.store_fault_rate else [])]
        for key in keys:
            operation, kind = key.removeprefix("aws.").rsplit(".", 1)
            faults[key] = injected.get((operation, kind), 0)
        return dict(faults)

    def _dlq(self) -> tuple[dict[str, set[str]], dict[str, bool], Counter[str]]:
        """Id -> letter kinds naming it; id -> named only by whole-input records; kinds."""
        kinds: Counter[str] = Counter()
        named_by: dict[str, set[str]] = defaultdict(set)
        whole_only: dict[str, bool] = {}
        mentions: Counter[str] = Counter()
        for message in drain(self.stack.sqs, self.stack.deployment.dlq.url):
            body = _json(message.get("Body", ""))
            if message.get("MessageId") in self.harness.sent_message_ids:
                kind = REDRIVEN
            elif isinstance(body, dict) and "requestPayload" in body and "requestContext" in body:
                kind = DESTINATION
            elif "failureClass" in message.get("MessageAttributes", {}):
                kind = OWN_LETTERS
            else:
                kind = "other"
            kinds[kind] += 1
            named = payload_ids(body)
            if not named:
                kinds["bodies naming no id"] += 1
            whole = kind == DESTINATION or (kind == REDRIVEN and len(named) > 1)
            mentions.update(set(named))
            for portfolio_id in named:
                named_by[portfolio_id].add(kind)
                whole_only[portfolio_id] = whole_only.get(portfolio_id, True) and whole
        kinds["ids named by more than one DLQ message"] = sum(1 for n in mentions.values() if n > 1)
        return named_by, whole_only, kinds

    def _repeats(self, ids: set[str]) -> tuple[list[str], int, int, int, Counter[str]]:
        """Doubled ids and extra rebalances; repeats no client can prevent, and flagged ones.

        An id's extra rebalances are unpreventable as far as there were rebalances the function
        never saw (their rebalance id is in no log line) that a served lost-response or too-slow
        fault explains; every other extra is a double by redelivery or retry."""
        doubled: list[str] = []
        extra_total = unpreventable = flagged = 0
        causes: Counter[str] = Counter()
        for portfolio_id in sorted(ids):
            done = self.rebalances.get(portfolio_id, [])
            extras = max(0, len(done) - 1)
            if not extras:
                continue
            unseen = sum(1 for r in done if r.rebalance_id not in self.observed)
            cannot_prevent = min(extras, unseen, self.explained[portfolio_id])
            unpreventable += cannot_prevent
            flagged += min(cannot_prevent, self.flags[portfolio_id])
            if extras > cannot_prevent:
                doubled.append(portfolio_id)
                extra_total += extras - cannot_prevent
                sources = self.trigger_sources[portfolio_id]
                if sources == {"sqs"}:
                    causes["SQS redelivery"] += 1
                elif sources:
                    causes["async retry"] += 1
                else:
                    causes["triggered unseen, no lost answer"] += 1
        return doubled, extra_total, unpreventable, flagged, causes

    def report(self) -> ChaosReport:
        ids_in = set(self.plan.ids)
        named_by, whole_only, dlq_kinds = self._dlq()
        pending_ids = {
            portfolio_id
            for message in drain(self.stack.sqs, self.stack.deployment.work_queue.url)
            for portfolio_id in payload_ids(_json(message["Body"]))
        }
        triggered = {i for i in ids_in if self.rebalances.get(i)}
        dead_lettered = ids_in & set(named_by)
        both: dict[str, list[str]] = {"lost": [], "whole": [], "other": []}
        for portfolio_id in sorted(triggered & dead_lettered):
            seen = any(r.rebalance_id in self.observed for r in self.rebalances[portfolio_id])
            which = (
                "other" if seen and not whole_only[portfolio_id] else "whole" if seen else "lost"
            )
            both[which].append(portfolio_id)
        pending = pending_ids & (ids_in - triggered - dead_lettered)
        lost = sorted(ids_in - triggered - dead_lettered - pending)
        doubled, extra, unpreventable, flagged, causes = self._repeats(ids_in)
        invocations = dict(self.harness.invocations)
        invocations["handler raised"] = sum(self.harness.handler_errors.values())
        invocations["function's DLQ writes that failed"] = self.dlq_write_failures
        strangers = (set(named_by) | set(self.rebalances)) - ids_in
        return ChaosReport(
            seed=self.stack.config.seed,
            ids_in=len(ids_in),
            ids_via_sqs=sum(len(m) for m in self.plan.messages),
            ids_via_events=sum(len(e) for e in self.plan.event_ids),
            triggered=len(triggered),
            dead_lettered=len(dead_lettered),
            dead_lettered_only=len(dead_lettered - triggered),
            pending=len(pending),
            lost=len(lost),
            doubled_by_redelivery=len(doubled),
            doubled_extra_rebalances=extra,
            unpreventable_repeats=unpreventable,
            unpreventable_flagged=flagged,
            rebalances=sum(len(v) for v in self.rebalances.values()),
            both_response_lost=both["lost"],
            both_whole_input=both["whole"],
            both_other=both["other"],
            lost_ids=lost,
            pending_ids=sorted(pending),
            doubled_ids=doubled,
            doubled_by_cause=dict(causes),
            faults=self.faults,
            invocations=invocations,
            final_failures=dict(self.final_failures.most_common()),
            dlq_messages=dict(dlq_kinds),
            notes=[f"note: ids the harness never sent: {_sample(sorted(strangers))}"]
            if strangers
            else [],
        )


def _sample(ids: list[str], limit: int = 12) -> str:
    shown = ", ".join(ids[:limit])
    return f"{shown}, ... ({len(ids)} in all)" if len(ids) > limit else shown


def _listing(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in counts.items())


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.chaos",
        description="Chaos run of the trigger function: nothing lost, nothing doubled.",
    )
    parser.add_argument("--ids", type=int, default=None, help="portfolio ids (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a short run (~300 ids)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write figures")
    parser.add_argument(
        "--store-fault-rate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="also deny this share of the idempotency guard's UpdateItem calls (default 0)",
    )
    parser.add_argument(
        "--no-idempotency",
        action="store_true",
        help="run the function without its idempotency table, to see the doubles it prevents",
    )
    args = parser.parse_args(argv)
    if args.ids is not None and args.ids < 1:
        parser.error("--ids must be at least 1")
    if not 0 <= args.store_fault_rate <= 1:
        parser.error("--store-fault-rate must be between 0 and 1")
    config = ChaosConfig.quick(seed=args.seed) if args.quick else ChaosConfig(seed=args.seed)
    config = replace(
        config, store_fault_rate=args.store_fault_rate, idempotency=not args.no_idempotency
    )

    report = run_chaos(
        ids=args.ids,
        config=config,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(report.table())
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
