"""`make chaos`: thousands of portfolio triggers through the real handler, under injected faults.

    python -m local.chaos                       # 2,000 ids
    python -m local.chaos --quick               # ~300 ids (what the test suite runs)
    python -m local.chaos --ids 5000 --seed 3 --json chaos.json

The run starts a moto server, the Glider emulator and a FaultProxy in front of moto (the
function's AWS endpoint is the proxy; the harness's own clients talk to moto directly), loads the
handler as Lambda does, and pushes every id through it:

- ~70% as SQS messages (one id, some with 2-3) on the work queue, consumed by the SQS event
  source until the queue and its in-flight and delayed messages drain: failures come back after
  the visibility timeout (1 s, or what the function set for a long Retry-After), and moto's
  redrive moves a message to the DLQ after maxReceiveCount receives;
- ~30% as EventBridge envelopes and Scheduler inputs (10-50 ids each), invoked asynchronously:
  when an attempt fails (the handler raised, or its execution environment crashed), Lambda tries
  the same event again with the same request id, about 1 minute and then about 2 more minutes
  later (3 attempts in all), then writes its on-failure destination record to the DLQ (on moto).
  Those delays are scaled by the run's timeout (`context_timeout_seconds` / the deployed
  function's 120 s: 15 s and 30 s more with the defaults), so that a retry relates to the
  invocation's in-progress window as it does on Lambda. Pending retries wait in a list with
  their due times and run between SQS polls; the drain does not end while any is pending.

Faults, seeded and bounded: Glider 5xx (API_000), 429 with a short Retry-After and a few with one
longer than the function waits, connection resets, answers slower than the read timeout, lost
responses (triggered, then reset), 200s whose body is cut off (triggered, the rebalance id never
arrives), 404 (unknown portfolio); through the proxy, Secrets Manager GetSecretValue throttling
(the secret is read for every trigger) and SendMessageBatch failures (the function's DLQ writes),
some long enough to exhaust the SDK's and the function's retries. And three scenarios:

- crashes: a few async events (`crashes`) lose their execution environment in the middle of
  their first attempt (`LocalLambdaContext(crash_after_calls=N)`, N drawn from the seed), after
  some of their triggers were done; the records the attempt had claimed stay "in progress" until
  its deadline, and Lambda's first retry comes inside that window. The next invocation runs in a
  new execution environment (a cold start); the logs of every environment are kept.
- a DLQ write that fails after its first batch landed (`partial_dlq_writes` async events of more
  than 10 ids): Glider is down for the event's first attempt (every id fails and is
  dead-lettered, in batches of 10), the first batch lands and the next one is denied, so the
  invocation fails; Lambda's retry triggers every id, and the first batch's letters stay in the
  DLQ as stale letters.
- the first event meets a DLQ outage on all three attempts: its on-failure destination record.

After the drain, every DLQ message is moved back to the work queue, body verbatim and no
attributes (what a message move task or `make dlq ARGS='redrive'` does), and the work queue is
drained through the function again (its DLQ writes and retries included). Then it checks:

- nothing lost: every id ends triggered (a rebalance in the emulator) or in the DLQ as it stands
  after the replay (every body parsed: portfolioId, portfolioIds, an EventBridge envelope's
  detail, a destination record's requestPayload), or is still on the work queue or in a pending
  async retry (none once the run has drained);
- nothing doubled: no id triggered again by a redelivery or retry of the same delivery after a
  trigger the function saw succeed. Repeats no client can prevent (Glider acted on a request
  whose answer never arrived: the scripted lost responses and too-slow answers) are counted
  apart, with how many of them the function flagged (`maybe_delivered: true` in its logs). A
  truncated 2xx is not one of them: the status line says Glider accepted, so a second rebalance
  after it is a double.
- nothing doubled by the replay: no id that had a rebalance before the replay gets another one
  from it (unless a lost or too-slow answer during the replay explains it, or the function never
  learned of the earlier one: a lost or too-slow answer before the replay was all it had). These
  are broken down by the kind of DLQ message that triggered them; the function's own letters
  and on-failure destination records must double nothing. Redriven work-queue messages (a new
  message id once replayed) are counted apart.

Exit status 1 when an id is lost, doubled, doubled by a replay of the function's letters or of a
destination record, or still pending when the drain timeout ran out.
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
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.retries.standard import ExponentialBackoff

from local.event_source import SqsEventSource
from local.fault_proxy import AwsFault, FaultProxy
from local.function import LocalFunction
from local.glider_emulator import Fault, GliderEmulator, Rebalance
from local.lambda_context import EnvironmentCrash, LocalLambdaContext
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
SQS_BATCH_ENTRIES = 10  # SendMessageBatch's limit: the function writes its letters 10 at a time
EXHAUSTION_MAX_IDS = 3  # a secret exhaustion waits for an invocation of at most this many ids

# Report keys and labels of the faults, in the order they are printed.
GLIDER_FAULTS = {
    "glider.server_error": "Glider 5xx API_000",
    "glider.rate_limited": "Glider 429, Retry-After 0-1 s",
    "glider.rate_limited_long": "Glider 429, Retry-After longer than the function waits",
    "glider.connection_reset": "Glider connection reset (nothing triggered)",
    "glider.slow": "Glider answer slower than the read timeout (triggered)",
    "glider.lost_response": "Glider lost response (triggered, then reset)",
    "glider.truncated": "Glider 200 with its body cut off (triggered)",
    "glider.not_found": "Glider 404 API_200 (unknown portfolio)",
}
AWS_FAULTS = {
    f"aws.{SECRETS_READ}.throttling": "GetSecretValue ThrottlingException",
    f"aws.{DLQ_WRITE}.server_error": "SendMessageBatch 500 InternalFailure",
    f"aws.{DLQ_WRITE}.connection_reset": "SendMessageBatch connection reset",
    f"aws.{DLQ_WRITE}.access_denied": "SendMessageBatch AccessDenied (DLQ outage)",
}
# Faults the harness stages around an invocation (not one request's answer).
CRASH_FAULT = "lambda.crash"
PARTIAL_DLQ_FAULT = "aws.partial_dlq_write"
SCENARIO_FAULTS = {
    CRASH_FAULT: "execution environment crashed mid-invocation (async, first attempt)",
    PARTIAL_DLQ_FAULT: "DLQ write failed after its first batch landed (stale letters)",
}
STORE_FAULT = f"aws.{STORE_UPDATE}.access_denied"
STORE_FAULT_LABEL = "DynamoDB UpdateItem AccessDenied (idempotency success write)"
# Faults after which Glider has acted although the function saw no answer. Not the truncated
# 2xx: its status line arrived, so the function knows Glider accepted.
MAYBE_DELIVERED_FAULTS = frozenset({"glider.slow", "glider.lost_response"})
DESTINATION = "on-failure destination records"
REDRIVEN = "redriven work-queue messages"
OWN_LETTERS = "function's own letters"
OTHER = "other"
# The replay doubles that must be 0: the function can recognise these messages' deliveries.
GUARDED_KINDS = (OWN_LETTERS, DESTINATION)
IN_WINDOW = "async retries inside a crashed attempt's in-progress window"


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
    p_truncated: float = 0.012
    long_rate_limits: int = 3  # single-id messages first answered with a long Retry-After
    long_retry_after: tuple[int, int] = (20, 30)
    slow_seconds: tuple[float, float] = (0.5, 0.9)
    min_each_fault: int = 2  # each Glider fault at least this often: no run can miss one
    # AWS faults through the proxy (the function's own calls only).
    secret_throttle_rate: float = 0.005  # any GetSecretValue: the SDK retries it
    secret_outage_chance: float = 0.03  # per invocation: one read's SDK attempts all throttled
    # Outages long enough to exhaust the function's retries too: each on the first invocation of
    # at most EXHAUSTION_MAX_IDS ids after a seeded point.
    secret_exhaustions: int = 2
    dlq_server_error_rate: float = 0.03  # any SendMessageBatch: the SDK retries it
    dlq_reset_rate: float = 0.01
    dlq_outage_chance_sqs: float = 0.03  # per SQS invocation: AccessDenied for 1-2 DLQ writes
    # Per async event: AccessDenied for the DLQ write of its first 1-3 attempts (3: the
    # on-failure destination record).
    dlq_outage_chance_event: float = 0.15
    store_fault_rate: float = 0.0  # opt-in: the guard's UpdateItem (success record) denied
    idempotency: bool = True  # False: run the function without its table (no guard)
    # Staged scenarios on async events (each event has at most one; the first event has the
    # DLQ outage that ends in its on-failure destination record).
    crashes: int = 3  # events whose first attempt loses its execution environment
    partial_dlq_writes: int = 1  # events of >10 ids whose first DLQ write fails after 1 batch
    # The function, the queue and the run.
    context_timeout_seconds: float = 30.0
    function_timeout_seconds: float = 120.0  # the deployed function's (template.yaml)
    # Lambda's async retries: about 1 minute after the first attempt failed, about 2 more after
    # the second; scaled by context_timeout_seconds / function_timeout_seconds in the run.
    lambda_retry_delays_seconds: tuple[float, float] = (60.0, 120.0)
    read_timeout_seconds: float = 0.3
    connect_timeout_seconds: float = 0.5
    visibility_timeout_seconds: int = 1
    max_receive_count: int = 5
    # Each drain (the run's, the replay's) gives up after this long. Generous: it must outlast
    # async retries (45 s) and delayed work-queue messages (SQS DelaySeconds, up to 900 s).
    drain_timeout_seconds: float = 600.0
    sdk_attempts: int = 4  # the function's botocore config: max_attempts=3 retries, 4 in all
    trigger_tries: int = 4  # GLIDER_MAX_ATTEMPTS: tries per trigger, key reads included
    dlq_send_attempts: int = 3  # DeadLetterQueue's own attempts per write
    # botocore's own backoff between its retries (up to 1 + 2 + 4 s per call for throttling),
    # scaled to compress time: 1.0 is botocore as shipped. Retries and errors are unchanged.
    sdk_backoff_scale: float = 1.0

    @classmethod
    def quick(cls, *, ids: int = 300, seed: int = 0) -> ChaosConfig:
        """The short run: the same mix, one long Retry-After (10 s), one secret exhaustion,
        two crashes, and botocore's backoff at a tenth (its retries of throttled reads would
        take most of it)."""
        return cls(
            ids=ids,
            seed=seed,
            sdk_backoff_scale=0.1,
            long_rate_limits=1,
            long_retry_after=(10, 10),
            secret_exhaustions=1,
            dlq_outage_chance_sqs=0.05,
            dlq_outage_chance_event=0.3,
            crashes=2,
        )

    @property
    def async_retry_delays(self) -> tuple[float, ...]:
        """Seconds before the 2nd and the 3rd attempt of an async event, scaled to the run."""
        scale = self.context_timeout_seconds / self.function_timeout_seconds
        return tuple(delay * scale for delay in self.lambda_retry_delays_seconds)

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
    dead_lettered: int  # in the DLQ as it stands after the replay
    dead_lettered_only: int
    pending: int
    lost: int
    doubled_by_redelivery: int  # ids triggered again after a trigger the function saw succeed
    doubled_extra_rebalances: int
    unpreventable_repeats: int  # extra rebalances after a lost or too-slow answer
    unpreventable_flagged: int  # ... of which the function logged maybe_delivered: true
    rebalances: int
    wall_seconds: float = 0.0
    # Async retries that started while a crashed attempt's in-progress records still held.
    crash_retries_in_window: int = 0
    # The replay of the whole DLQ at the end: messages moved back, by kind; ids it triggered;
    # ids it triggered although they had a rebalance before it (by the kind of DLQ message that
    # triggered them); ids it triggered again whose earlier rebalances the function never saw
    # (lost or too-slow answers: no client can prevent these).
    replayed: dict[str, int] = field(default_factory=dict)
    replay_triggered: int = 0
    replay_doubled: int = 0
    replay_doubled_extra_rebalances: int = 0
    replay_doubled_guarded: int = 0  # ... by the function's own letters or destination records
    replay_doubled_by_kind: dict[str, int] = field(default_factory=dict)
    replay_doubled_ids: list[str] = field(default_factory=list)
    replay_unpreventable: int = 0
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
    dlq_messages: dict[str, int] = field(default_factory=dict)  # after the replay
    notes: list[str] = field(default_factory=list)

    @property
    def triggered_and_dead_lettered(self) -> int:
        return len(self.both_response_lost) + len(self.both_whole_input) + len(self.both_other)

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.doubled_by_redelivery == 0
            and self.pending == 0
            and self.replay_doubled_guarded == 0
        )

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
        replay_doubled = f"{self.replay_doubled} ids, {self.replay_doubled_extra_rebalances} extra"
        if self.replay_doubled_by_kind:
            replay_doubled += f" ({_listing(self.replay_doubled_by_kind)})"
        replayed = sum(self.replayed.values())
        rows: list[tuple[str, str]] = [
            ("ids in", f"{self.ids_in} ({self.ids_via_sqs} in SQS messages, "
             f"{self.ids_via_events} in EventBridge/Scheduler events)"),
            ("triggered", str(self.triggered)),
            ("in the DLQ (after the replay)", str(self.dead_lettered)),
            ("  dead-lettered only", str(self.dead_lettered_only)),
            ("  triggered and dead-lettered", both),
            ("still pending", str(self.pending)),
            ("LOST (must be 0)", str(self.lost)),
            ("DOUBLED by a redelivery/retry (must be 0)", doubled),
            ("repeats no client can prevent", f"{self.unpreventable_repeats} (the function "
             f"flagged maybe_delivered on {self.unpreventable_flagged})"),
            ("rebalances in the emulator", str(self.rebalances)),
            (IN_WINDOW, str(self.crash_retries_in_window)),
            ("DLQ replayed at the end", f"{replayed} messages"
             + (f" ({_listing(self.replayed)})" if replayed else "")),
            ("  ids the replay triggered", str(self.replay_triggered)),
            ("  REPLAY DOUBLED by letters/destination records (must be 0)",
             str(self.replay_doubled_guarded)),
            ("  triggered again by the replay, every kind", replay_doubled),
            ("  replay repeats no client can prevent", str(self.replay_unpreventable)),
        ]  # fmt: skip
        labels = {**GLIDER_FAULTS, **AWS_FAULTS, **SCENARIO_FAULTS, STORE_FAULT: STORE_FAULT_LABEL}
        sections: list[tuple[str, Mapping[str, int], Mapping[str, str]]] = [
            ("faults injected", self.faults, labels),
            ("invocations", self.invocations, {}),
            ("final failures logged, by reason", self.final_failures, {}),
            ("DLQ messages (after the replay)", self.dlq_messages, {}),
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
            ("triggered again by the replay", self.replay_doubled_ids),
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
    """What goes in and which faults each id and each event meet, from the seed alone."""

    ids: list[str]
    messages: list[list[str]]  # the ids of each SQS message, in send order
    event_ids: list[list[str]]
    events: list[dict[str, Any]]
    scripts: dict[str, list[tuple[str, Fault]]]  # id -> (fault key, fault), served in order
    not_found: set[str]  # ids the emulator does not know (404 API_200)
    # Event index -> the call of the context's get_remaining_time_in_millis on which the
    # execution environment of the event's first attempt dies.
    crash_after: dict[int, int] = field(default_factory=dict)
    # Events whose first attempt meets a Glider outage and a DLQ write that fails after its
    # first batch of letters landed.
    partial_dlq: set[int] = field(default_factory=set)


def make_plan(config: ChaosConfig) -> ChaosPlan:
    rng = random.Random(config.seed)  # noqa: S311 - test data, not cryptography
    ids = [f"chaos_{n:05d}" for n in range(1, config.ids + 1)]
    sqs_count = round(config.ids * config.sqs_share)
    messages: list[list[str]] = []
    position = 0
    while position < sqs_count:
        size = rng.choice((2, 3)) if rng.random() < config.multi_id_message_share else 1
        messages.append(ids[position : min(position + size, sqs_count)])
        position = min(position + size, sqs_count)  # else the ids past the cut are never sent
    event_ids: list[list[str]] = []
    while position < config.ids:
        size = rng.randint(*config.event_size)
        event_ids.append(ids[position : position + size])
        position += size
    # A partial DLQ write needs an event (other than the first) of more than one batch of
    # letters: merge the last events until there is one.
    while (
        config.partial_dlq_writes
        and len(event_ids) > 2
        and not any(len(batch) > SQS_BATCH_ENTRIES for batch in event_ids[1:])
    ):
        last = event_ids.pop()
        event_ids[-1] = event_ids[-1] + last
    plan = ChaosPlan(ids, messages, event_ids, [], {}, set())
    _script_faults(plan, config, rng)
    plan.events = [_event(batch, index, rng) for index, batch in enumerate(event_ids)]
    _stage_event_scenarios(plan, config, rng)
    return plan


def _stage_event_scenarios(plan: ChaosPlan, config: ChaosConfig, rng: random.Random) -> None:
    """The earliest events after the first (so that their retries overlap the run): first the
    partial DLQ writes (events of more than 10 ids), then the crashes, each on its own event;
    when too few are left, the first event crashes too (its DLQ outage over every attempt still
    ends in its destination record). A crash comes on a call between the 5th and twice the
    event's ids: a trigger reads the deadline at least twice (three times with the guard), so
    it nearly always comes, mostly after some triggers were done."""
    later = list(range(1, len(plan.event_ids)))
    big = [i for i in later if len(plan.event_ids[i]) > SQS_BATCH_ENTRIES]
    plan.partial_dlq = set(big[: config.partial_dlq_writes])
    candidates = [i for i in later if i not in plan.partial_dlq] + ([0] if plan.event_ids else [])
    for index in candidates[: config.crashes]:
        plan.crash_after[index] = rng.randint(5, max(5, 2 * len(plan.event_ids[index])))


def _script_faults(plan: ChaosPlan, config: ChaosConfig, rng: random.Random) -> None:
    chances = [
        ("glider.not_found", config.p_not_found),
        ("glider.server_error", config.p_server_error),
        ("glider.rate_limited", config.p_rate_limited),
        ("glider.connection_reset", config.p_connection_reset),
        ("glider.slow", config.p_slow),
        ("glider.lost_response", config.p_lost_response),
        ("glider.truncated", config.p_truncated),
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
    elif kind == "glider.truncated":
        fault = Fault.truncated()
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
    env: dict[str, str]
    proxy: FaultProxy
    emulator: GliderEmulator
    deployment: Deployment
    sqs: SQSClient  # straight to moto, never through the proxy
    # Every execution environment, in order; the last one takes the invocations. A crash
    # replaces it with a new one (a cold start); the old ones are kept for their logs.
    functions: list[LocalFunction] = field(default_factory=list)

    @property
    def function(self) -> LocalFunction:
        if not self.functions:
            self.functions.append(LocalFunction(self.env))
        return self.functions[-1]

    def new_environment(self) -> None:
        self.functions.append(LocalFunction(self.env))

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines of every execution environment."""
        return [record for function in self.functions for record in function.logs]


@dataclass
class _AsyncDelivery:
    """One async event on its way through Lambda's attempts."""

    index: int
    event: dict[str, Any]
    ids: list[str]
    request_id: str
    crash_after: int | None = None  # the first attempt's environment dies on this context call
    partial_dlq: bool = False  # staged on the first attempt (or the next, if it did not take)
    dlq_outage_attempts: int = 0  # attempts, from the first, whose DLQ write is denied
    attempts: int = 0
    due: float = 0.0  # time.monotonic() of the next attempt
    error: BaseException | None = None
    in_progress_until: float | None = None  # a crashed attempt's deadline (monotonic)


@dataclass(frozen=True)
class _Replayed:
    kind: str
    ids: tuple[str, ...]


def dlq_kind(message: Mapping[str, Any], work_queue_message_ids: Collection[str] = ()) -> str:
    """What put a DLQ message there: the queue's redrive (a work-queue message id), Lambda's
    on-failure destination, the function itself (its attributes), or something else."""
    body = _json(str(message.get("Body", "")))
    if message.get("MessageId") in work_queue_message_ids:
        return REDRIVEN
    if isinstance(body, dict) and "requestPayload" in body and "requestContext" in body:
        return DESTINATION
    if "failureClass" in message.get("MessageAttributes", {}):
        return OWN_LETTERS
    return OTHER


class _Harness:
    def __init__(self, stack: _Stack, progress: Callable[[str], None]) -> None:
        self.stack = stack
        self.config = stack.config
        self.progress = progress
        self.rng = random.Random(stack.config.seed + 1)  # noqa: S311 - fault timing
        self.invocations: Counter[str] = Counter()
        self.handler_errors: Counter[str] = Counter()
        self.scenarios: Counter[str] = Counter()  # staged faults that really happened
        self.sent_message_ids: dict[str, list[str]] = {}
        self.work_queue_message_ids: set[str] = set()  # every message the event source got
        self.retries: list[_AsyncDelivery] = []  # failed attempts waiting for Lambda's retry
        self.abandoned: list[_AsyncDelivery] = []  # retries still pending when a drain gave up
        self.crash_retries_in_window = 0
        self.access_denied_staged = 0  # AccessDenied the staged DLQ outages may deny, in all
        self.secret_outage_staged = False
        # emulator.requests index ranges whose triggers the Glider outage answered
        self.outage_windows: list[tuple[int, int]] = []
        # The replay: where it starts in emulator.requests and emulator.rebalances, and what
        # each replayed message (by its new message id) was in the DLQ.
        self.replay_request_start: int | None = None
        self.replay_rebalance_start: int | None = None
        self.replayed: dict[str, _Replayed] = {}
        self.notes: list[str] = []
        self.source = SqsEventSource(
            self.stack.sqs, self.stack.deployment.work_queue, region=REGION
        )
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
        self.dlq_background_faults()
        if config.store_fault_rate:
            proxy.inject(STORE_UPDATE, AwsFault.access_denied(), rate=config.store_fault_rate)

    def dlq_background_faults(self) -> None:
        proxy, config = self.stack.proxy, self.config
        proxy.inject(DLQ_WRITE, AwsFault.server_error(), rate=config.dlq_server_error_rate)
        proxy.inject(DLQ_WRITE, AwsFault.connection_reset(), rate=config.dlq_reset_rate)
        # At least one of each early on, whatever the rates.
        injected = proxy.injected_by_fault
        for fault in (AwsFault.server_error(), AwsFault.connection_reset()):
            if not injected.get((DLQ_WRITE, fault.kind)):
                proxy.inject(DLQ_WRITE, fault, times=1)

    def end_dlq_outages(self) -> None:
        """A DLQ outage staged for an invocation ends with it: AccessDenied left over (the
        invocation wrote fewer letters than the outage would deny) would otherwise deny the
        next invocation's writes, whatever was staged for that one (a partial write, say). The
        DLQ's rules are reset to the background faults."""
        fired = self.stack.proxy.injected_by_fault.get((DLQ_WRITE, "access_denied"), 0)
        if fired < self.access_denied_staged:
            self.stack.proxy.clear(DLQ_WRITE)
            self.dlq_background_faults()
            self.invocations["DLQ outages that ended unused"] += 1
        self.access_denied_staged = fired

    def secret_faults(self, portfolios: int) -> None:
        """Secrets Manager throttling for the invocation about to run (`portfolios` ids)."""
        number = sum(self.invocations[k] for k in ("SQS batches", "async invocations"))
        sdk = self.config.sdk_attempts
        due = sorted(at for at in self.exhaust_secret_at if at <= number)
        if due and portfolios <= EXHAUSTION_MAX_IDS:
            # Every SDK attempt of every try of the invocation's triggers throttled: they fail
            # SECRET_THROTTLED. The function reads the key one trigger at a time, so the
            # throttles go round its triggers: a small invocation keeps that short.
            self.exhaust_secret_at.discard(due[0])
            reads = self.config.trigger_tries * portfolios
            self.stack.proxy.inject(SECRETS_READ, AwsFault.throttling(), times=sdk * reads)
            self.secret_outage_staged = True
        elif self.rng.random() < self.config.secret_outage_chance:
            # One read's SDK attempts all throttled: the function's own retry gets the key.
            self.stack.proxy.inject(SECRETS_READ, AwsFault.throttling(), times=sdk)
            self.secret_outage_staged = True

    def end_secret_outages(self) -> None:
        """A Secrets Manager outage staged for an invocation ends with it (the background
        throttling goes on)."""
        if self.secret_outage_staged:
            self.stack.proxy.clear(SECRETS_READ)
            rate = self.config.secret_throttle_rate
            self.stack.proxy.inject(SECRETS_READ, AwsFault.throttling(), rate=rate)
            self.secret_outage_staged = False

    def dlq_outage(self, writes: int) -> None:
        """AccessDenied (never retried by the SDK) for `writes` whole DLQ writes."""
        times = writes * self.config.dlq_send_attempts
        self.stack.proxy.inject(DLQ_WRITE, AwsFault.access_denied(), times=times)
        self.access_denied_staged += times

    def dlq_depth(self) -> int:
        attributes = self.stack.sqs.get_queue_attributes(
            QueueUrl=self.stack.deployment.dlq.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    def in_outage(self, request_index: int) -> bool:
        return any(start <= request_index < end for start, end in self.outage_windows)

    # ---- invocations

    def invoke_sqs(self, event: dict[str, Any]) -> Mapping[str, Any]:
        self.invocations["SQS batches"] += 1
        if self.replay_request_start is not None:
            self.invocations["SQS batches during the replay"] += 1
        self.work_queue_message_ids.update(r["messageId"] for r in event["Records"])
        self.secret_faults(
            len({i for r in event["Records"] for i in payload_ids(_json(str(r["body"])))})
        )
        if self.rng.random() < self.config.dlq_outage_chance_sqs:
            self.dlq_outage(self.rng.choice((1, 1, 2)))
        context = LocalLambdaContext(timeout_seconds=self.config.context_timeout_seconds)
        try:
            response: Mapping[str, Any] = self.stack.function.invoke(event, context=context)
        except Exception as exc:
            self.handler_errors[f"SQS batch: {type(exc).__name__}"] += 1
            raise
        finally:
            self.end_dlq_outages()
            self.end_secret_outages()
        return response

    def start_async(self, index: int, event: dict[str, Any]) -> None:
        """Lambda takes an async event: its first attempt now, the retries when they are due."""
        self.invocations["async events"] += 1
        plan = self.stack.plan
        delivery = _AsyncDelivery(
            index,
            event,
            plan.event_ids[index],
            str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            crash_after=plan.crash_after.get(index),
            partial_dlq=index in plan.partial_dlq,
        )
        if index == 0:
            # The first event names an unknown portfolio, so each of its attempts writes to the
            # DLQ: an outage over all three makes Lambda send the on-failure destination record.
            delivery.dlq_outage_attempts = ASYNC_ATTEMPTS
        elif (
            delivery.crash_after is None
            and not delivery.partial_dlq
            and self.rng.random() < self.config.dlq_outage_chance_event
        ):
            delivery.dlq_outage_attempts = self.rng.choice((1, 2, 3))
        self.attempt(delivery)

    def run_due_retries(self) -> None:
        now = time.monotonic()
        for delivery in sorted((d for d in self.retries if d.due <= now), key=lambda d: d.due):
            self.retries.remove(delivery)
            self.attempt(delivery)

    def attempt(self, delivery: _AsyncDelivery) -> None:
        """One attempt of an async event; a failure schedules Lambda's next attempt, or after
        the last one sends the on-failure destination record to the DLQ."""
        delivery.attempts += 1
        self.invocations["async invocations"] += 1
        if delivery.attempts > 1:
            self.invocations["async retries"] += 1
            if delivery.in_progress_until and time.monotonic() < delivery.in_progress_until:
                self.crash_retries_in_window += 1
        self.secret_faults(len(delivery.ids))
        if delivery.attempts <= delivery.dlq_outage_attempts:
            self.dlq_outage(1)
        staged = delivery.partial_dlq and delivery.attempts < ASYNC_ATTEMPTS
        context = LocalLambdaContext(
            timeout_seconds=self.config.context_timeout_seconds,
            aws_request_id=delivery.request_id,
            crash_after_calls=delivery.crash_after if delivery.attempts == 1 else None,
        )
        if staged:
            error = self._attempt_with_partial_dlq_write(delivery, context)
        else:
            error = self._invoke_async(delivery, context)
        self.end_dlq_outages()
        self.end_secret_outages()
        if error is None:
            return
        delivery.error = error
        if delivery.attempts < ASYNC_ATTEMPTS:
            delivery.due = time.monotonic() + self.config.async_retry_delays[delivery.attempts - 1]
            self.retries.append(delivery)
        else:
            self.send_destination_record(delivery)

    def _invoke_async(
        self, delivery: _AsyncDelivery, context: LocalLambdaContext
    ) -> BaseException | None:
        try:
            response = self.stack.function.invoke(delivery.event, context=context)
        except EnvironmentCrash as crash:
            # The environment is gone, and with it whatever the invocation was doing; its
            # claimed records stay in progress until its deadline. Lambda retries the event
            # (same request id) on a new environment.
            self.scenarios[CRASH_FAULT] += 1
            delivery.in_progress_until = context.deadline
            self.stack.new_environment()
            return crash
        except Exception as exc:
            self.handler_errors[f"async: {type(exc).__name__}"] += 1
            return exc
        if isinstance(response, Mapping):
            elsewhere = int(response.get("inProgressElsewhere") or 0)
            self.invocations["portfolios left in progress elsewhere (async summaries)"] += elsewhere
        return None

    def _attempt_with_partial_dlq_write(
        self, delivery: _AsyncDelivery, context: LocalLambdaContext
    ) -> BaseException | None:
        """Glider down for this attempt (every id fails and is dead-lettered, 10 letters a
        batch), and the DLQ write's second batch denied after its first one landed: the
        invocation fails and Lambda retries it; the first batch stays in the DLQ.

        For this attempt the DLQ meets the staged fault alone (a background fault on the first
        batch, retried by the SDK, would make the staged denial hit that batch instead); the
        background faults are back after it."""
        emulator, proxy = self.stack.emulator, self.stack.proxy
        dlq_before = self.dlq_depth()
        times = self.config.dlq_send_attempts
        proxy.clear(DLQ_WRITE)
        proxy.inject(DLQ_WRITE, AwsFault.access_denied(), times=times, after=1)
        self.access_denied_staged += times
        start = len(emulator.requests)
        emulator.set_outage(Fault.error(503, "API_000", "Service unavailable"))
        try:
            error = self._invoke_async(delivery, context)
        finally:
            emulator.set_outage(None)
            self.outage_windows.append((start, len(emulator.requests)))
            proxy.clear(DLQ_WRITE)
            self.dlq_background_faults()
        landed = self.dlq_depth() - dlq_before
        if error is not None and not isinstance(error, EnvironmentCrash) and landed > 0:
            delivery.partial_dlq = False  # done: the retry runs without an outage
            self.scenarios[PARTIAL_DLQ_FAULT] += 1
            self.invocations["stale DLQ letters (written before a failed write)"] += landed
        elif error is None:
            delivery.partial_dlq = False  # the write went through after all: nothing to retry
        # else (the environment crashed, or no letter landed): staged again on the retry.
        return error

    def send_destination_record(self, delivery: _AsyncDelivery) -> None:
        self.invocations[DESTINATION] += 1
        error = delivery.error
        crashed = isinstance(error, EnvironmentCrash)
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "requestContext": {
                "requestId": delivery.request_id,
                "functionArn": f"{FUNCTION_ARN}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": ASYNC_ATTEMPTS,
            },
            "requestPayload": delivery.event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {
                "errorMessage": str(error)[:1000],
                "errorType": "Runtime.ExitError" if crashed else type(error).__name__,
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
        """Messages on the work queue: visible, in flight, and delayed (DelaySeconds)."""
        attributes = self.stack.sqs.get_queue_attributes(
            QueueUrl=self.stack.deployment.work_queue.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    # ---- the run and the replay

    def run(self) -> None:
        """SQS batches, with an async event every `stride` of them, until everything drained
        (the work queue, delayed messages included, and Lambda's pending retries)."""
        self.background_faults()
        self.send_messages()
        events = deque(enumerate(self.stack.plan.events))
        batches = math.ceil(len(self.stack.plan.messages) / 10)
        stride = max(1, batches // (len(events) + 1))
        self.drain_work(events, stride, "the run")

    def replay(self) -> None:
        """Every DLQ message back to the work queue, body verbatim and no attributes (a message
        move task, `make dlq ARGS='redrive'`), then the work queue drained again."""
        emulator = self.stack.emulator
        self.replay_request_start = len(emulator.requests)
        self.replay_rebalance_start = len(emulator.rebalances)
        letters = drain(self.stack.sqs, self.stack.deployment.dlq.url)
        queue_url = self.stack.deployment.work_queue.url
        for start in range(0, len(letters), 10):
            chunk = letters[start : start + 10]
            response = self.stack.sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "MessageBody": message["Body"]}
                    for n, message in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                raise RuntimeError(f"could not replay the DLQ: {response['Failed']}")
            for sent in response["Successful"]:
                message = chunk[int(sent["Id"])]
                kind = dlq_kind(message, self.work_queue_message_ids)
                named = tuple(payload_ids(_json(message["Body"])))
                self.replayed[sent["MessageId"]] = _Replayed(kind, named)
        self.progress(f"  replaying {len(letters)} DLQ messages")
        self.drain_work(deque(), 1, "the replay")

    def drain_work(
        self, events: deque[tuple[int, dict[str, Any]]], stride: int, phase: str
    ) -> None:
        deadline = time.monotonic() + self.config.drain_timeout_seconds
        polls = 0
        while True:
            self.run_due_retries()
            if events and polls % stride == stride - 1:
                self.start_async(*events.popleft())
            result = self.source.poll(self.invoke_sqs)
            polls += 1
            self.report_progress()
            if result is not None:
                self.invocations["SQS records reported for retry"] += len(result.redelivered)
            elif events:
                self.start_async(*events.popleft())
            elif not self.retries and self.queue_depth() == 0:
                return
            elif time.monotonic() > deadline:
                self.abandoned += self.retries
                self.retries = []
                self.notes.append(
                    f"note: {phase}: the drain timed out after "
                    f"{self.config.drain_timeout_seconds:g} s with {self.queue_depth()} "
                    f"work-queue messages and {len(self.abandoned)} async retries pending"
                )
                return
            else:
                time.sleep(0.2)  # in flight, delayed, or a retry not yet due

    def report_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= 10:
            self._last_progress = now
            self.progress(
                f"  {now - self.started:4.0f} s: {self.invocations['SQS batches']} SQS batches,"
                f" {self.invocations['async invocations']} async invocations "
                f"({len(self.retries)} retries pending), "
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
        stack = _Stack(config, plan, env, proxy, emulator, deployment, moto.client("sqs"))
        stack.new_environment()
        harness = _Harness(stack, say)
        harness.run()
        # Answers slower than the read timeout still trigger: let them land before the replay
        # (which counts what lands after it starts as its own) and before counting.
        time.sleep(config.slow_seconds[1] + 0.2)
        harness.replay()
        time.sleep(config.slow_seconds[1] + 0.2)
        report = _Tally(stack, harness).report()
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


@dataclass
class _Repeats:
    """Extra rebalances, by what explains them (see _Tally.repeats)."""

    doubled: list[str] = field(default_factory=list)
    extra: int = 0
    unpreventable: int = 0
    flagged: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    replay_triggered: int = 0
    replay_doubled: list[str] = field(default_factory=list)
    replay_extra: int = 0
    replay_kinds: Counter[str] = field(default_factory=Counter)
    replay_guarded: int = 0
    replay_unpreventable: int = 0


class _Tally:
    """Reads what happened (the emulator, the function's logs, the queues) into a report."""

    def __init__(self, stack: _Stack, harness: _Harness) -> None:
        self.stack = stack
        self.harness = harness
        self.plan = stack.plan
        # Rebalances before the replay and during it (the emulator records them in order).
        everything = stack.emulator.rebalances
        split = harness.replay_rebalance_start
        split = len(everything) if split is None else split
        self.rebalances: dict[str, list[Rebalance]] = defaultdict(list)
        self.before: dict[str, list[Rebalance]] = defaultdict(list)
        self.during: dict[str, list[Rebalance]] = defaultdict(list)
        for number, rebalance in enumerate(everything):
            self.rebalances[rebalance.portfolio_id].append(rebalance)
            phase = self.before if number < split else self.during
            phase[rebalance.portfolio_id].append(rebalance)
        logs = stack.logs()  # every execution environment's
        # Successes the function saw, by rebalance id; "already-triggered" lines are not new.
        triggered = [r for r in logs if r.get("outcome") == "triggered"]
        self.observed = {str(r.get("rebalance_id")) for r in triggered}
        # Where the function saw each id triggered: outside the replay, the input's source;
        # during it, the kind of the replayed DLQ message.
        self.trigger_sources: dict[str, set[str]] = defaultdict(set)
        self.replay_triggers: dict[str, set[str]] = defaultdict(set)
        for record in triggered:
            portfolio_id = str(record.get("portfolio_id"))
            replayed = harness.replayed.get(str(record.get("delivery_id")))
            if replayed is not None:
                self.replay_triggers[portfolio_id].add(replayed.kind)
            else:
                self.trigger_sources[portfolio_id].add(str(record["source"]))
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
        # Scripted faults served, per id, before the replay and during it.
        self.served_before: dict[str, Counter[str]] = defaultdict(Counter)
        self.served_during: dict[str, Counter[str]] = defaultdict(Counter)
        self.faults = self._faults()

    def _faults(self) -> dict[str, int]:
        """Scripted faults the emulator really served (each call to an id takes the next one,
        except the calls a Glider outage answered), 404s answered, what the proxy injected,
        and the scenarios the harness staged that really happened."""
        recorded = self.stack.emulator.requests
        replay_start = self.harness.replay_request_start
        replay_start = len(recorded) if replay_start is None else replay_start
        calls: Counter[str] = Counter()
        faults: Counter[str] = Counter(dict.fromkeys(GLIDER_FAULTS, 0))
        for index, request in enumerate(recorded):
            portfolio_id = request.portfolio_id
            if not portfolio_id or request.method != "POST" or self.harness.in_outage(index):
                continue
            script = self.plan.scripts.get(portfolio_id, [])
            served = calls[portfolio_id]
            calls[portfolio_id] += 1
            if served < len(script):
                kind = script[served][0]
                faults[kind] += 1
                phase = self.served_during if index >= replay_start else self.served_before
                phase[portfolio_id][kind] += 1
        faults["glider.not_found"] = sum(
            1 for r in recorded if r.portfolio_id in self.plan.not_found and r.status == 404
        )
        injected = self.stack.proxy.injected_by_fault
        keys = [*AWS_FAULTS, *([STORE_FAULT] if self.stack.config.store_fault_rate else [])]
        for key in keys:
            operation, kind = key.removeprefix("aws.").rsplit(".", 1)
            faults[key] = injected.get((operation, kind), 0)
        for key in SCENARIO_FAULTS:
            faults[key] = self.harness.scenarios[key]
        return dict(faults)

    def _dlq(self) -> tuple[dict[str, set[str]], dict[str, bool], Counter[str]]:
        """Id -> letter kinds naming it; id -> named only by whole-input records; kinds."""
        kinds: Counter[str] = Counter()
        named_by: dict[str, set[str]] = defaultdict(set)
        whole_only: dict[str, bool] = {}
        mentions: Counter[str] = Counter()
        for message in drain(self.stack.sqs, self.stack.deployment.dlq.url):
            kind = dlq_kind(message, self.harness.work_queue_message_ids)
            kinds[kind] += 1
            named = payload_ids(_json(message.get("Body", "")))
            if not named:
                kinds["bodies naming no id"] += 1
            whole = kind == DESTINATION or (kind == REDRIVEN and len(named) > 1)
            mentions.update(set(named))
            for portfolio_id in named:
                named_by[portfolio_id].add(kind)
                whole_only[portfolio_id] = whole_only.get(portfolio_id, True) and whole
        kinds["ids named by more than one DLQ message"] = sum(1 for n in mentions.values() if n > 1)
        return named_by, whole_only, kinds

    def _unknown(self, rebalances: list[Rebalance], served: Counter[str]) -> int:
        """How many of these rebalances the function may never have learned of: unseen (their
        rebalance id is in no log line), as far as served lost-response or too-slow faults
        explain them."""
        unseen = sum(1 for r in rebalances if r.rebalance_id not in self.observed)
        return min(unseen, sum(served[kind] for kind in MAYBE_DELIVERED_FAULTS))

    def repeats(self, ids: set[str]) -> _Repeats:
        """Doubled ids and extra rebalances; repeats no client can prevent; replay doubles.

        Before the replay (and, for an id the replay is the first to trigger, within it), an
        id's extra rebalances are unpreventable as far as there were rebalances the function
        never saw that a served lost-response or too-slow fault explains; every other extra is
        a double by redelivery or retry. An id with a rebalance before the replay that the
        replay triggers again is a replay double (the extras within the replay that a lost or
        too-slow answer during it explains excepted), unless the function never learned of
        any of its earlier rebalances (each one unseen and explained so): no client could
        have known, so that one is a replay repeat no client can prevent."""
        result = _Repeats()
        for portfolio_id in sorted(ids):
            before, during = self.before.get(portfolio_id, []), self.during.get(portfolio_id, [])
            unknown_before = self._unknown(before, self.served_before[portfolio_id])
            unknown_during = self._unknown(during, self.served_during[portfolio_id])
            extras = max(0, len(before) - 1)
            unpreventable = min(extras, unknown_before)
            doubles = extras - unpreventable
            within = max(0, len(during) - 1)  # beyond the replay's first trigger
            explained_within = min(within, unknown_during)
            unpreventable += explained_within
            if during:
                result.replay_triggered += 1
            if before and during:
                again = 1 + within - explained_within
                if len(before) <= unknown_before:  # the function never learned of them
                    result.replay_unpreventable += 1
                    unpreventable += 1
                    doubles += again - 1
                else:
                    self._replay_double(portfolio_id, again, result)
            else:
                doubles += within - explained_within
            result.unpreventable += unpreventable
            result.flagged += min(unpreventable, self.flags[portfolio_id])
            if doubles:
                result.doubled.append(portfolio_id)
                result.extra += doubles
                result.causes[self._cause(portfolio_id)] += 1
        return result

    def _replay_double(self, portfolio_id: str, extra: int, result: _Repeats) -> None:
        """By the kind of the replayed message whose invocation triggered the id (else every
        kind of replayed message that named it)."""
        kinds = self.replay_triggers.get(portfolio_id) or {
            replayed.kind
            for replayed in self.harness.replayed.values()
            if portfolio_id in replayed.ids
        }
        result.replay_doubled.append(portfolio_id)
        result.replay_extra += extra
        result.replay_kinds.update(kinds or {"unknown"})
        if kinds & set(GUARDED_KINDS):
            result.replay_guarded += 1

    def _cause(self, portfolio_id: str) -> str:
        truncated = self.served_before[portfolio_id]["glider.truncated"]
        truncated += self.served_during[portfolio_id]["glider.truncated"]
        sources = self.trigger_sources[portfolio_id]
        if truncated:
            return "tried again after a truncated 2xx"
        if self.during.get(portfolio_id) and not self.before.get(portfolio_id):
            return "redelivery within the replay"
        if sources == {"sqs"}:
            return "SQS redelivery"
        if sources:
            return "async retry"
        return "triggered unseen, no lost answer"

    def _pending(self) -> tuple[set[str], list[str]]:
        """Ids still on the work queue (visible messages) or in an abandoned async retry."""
        harness = self.harness
        depth = harness.queue_depth()
        messages = drain(self.stack.sqs, self.stack.deployment.work_queue.url)
        pending = {i for m in messages for i in payload_ids(_json(m["Body"]))}
        for delivery in harness.abandoned:
            pending.update(delivery.ids)
        notes = []
        if depth > len(messages):
            notes.append(
                f"note: {depth - len(messages)} work-queue messages in flight or delayed "
                "could not be read: their ids count as lost"
            )
        return pending, notes

    def report(self) -> ChaosReport:
        ids_in = set(self.plan.ids)
        named_by, whole_only, dlq_kinds = self._dlq()
        pending_ids, notes = self._pending()
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
        repeats = self.repeats(ids_in)
        invocations = dict(self.harness.invocations)
        invocations["handler raised"] = sum(self.harness.handler_errors.values())
        invocations["function's DLQ writes that failed"] = self.dlq_write_failures
        invocations["execution environments (cold starts)"] = len(self.stack.functions)
        strangers = (set(named_by) | set(self.rebalances)) - ids_in
        if strangers:
            notes.append(f"note: ids the harness never sent: {_sample(sorted(strangers))}")
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
            doubled_by_redelivery=len(repeats.doubled),
            doubled_extra_rebalances=repeats.extra,
            unpreventable_repeats=repeats.unpreventable,
            unpreventable_flagged=repeats.flagged,
            rebalances=sum(len(v) for v in self.rebalances.values()),
            crash_retries_in_window=self.harness.crash_retries_in_window,
            replayed=dict(Counter(r.kind for r in self.harness.replayed.values()).most_common()),
            replay_triggered=repeats.replay_triggered,
            replay_doubled=len(repeats.replay_doubled),
            replay_doubled_extra_rebalances=repeats.replay_extra,
            replay_doubled_guarded=repeats.replay_guarded,
            replay_doubled_by_kind=dict(repeats.replay_kinds.most_common()),
            replay_doubled_ids=repeats.replay_doubled,
            replay_unpreventable=repeats.replay_unpreventable,
            both_response_lost=both["lost"],
            both_whole_input=both["whole"],
            both_other=both["other"],
            lost_ids=lost,
            pending_ids=sorted(pending),
            doubled_ids=repeats.doubled,
            doubled_by_cause=dict(repeats.causes),
            faults=self.faults,
            invocations=invocations,
            final_failures=dict(self.final_failures.most_common()),
            dlq_messages=dict(dlq_kinds),
            notes=notes,
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
