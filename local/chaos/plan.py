"""The plan: what goes in and which faults each id and each event meet, from the seed alone."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from glider_trigger.domain.trigger_input import (
    IDEMPOTENCY_KEY,
    PORTFOLIO_ID,
    PORTFOLIO_IDS,
    SCHEDULE_ARN,
    SCHEDULED_TIME,
)
from local.chaos.config import ACCOUNT, REGION, SQS_BATCH_ENTRIES, ChaosConfig
from local.fixtures.glider_emulator import Fault

# Deliveries of a portfolio that others also request: an upstream request (a work-queue message
# with its own idempotencyKey) or a Scheduler occurrence (scheduleArn and scheduledTime, invoked
# asynchronously). Each is a delivery of its own for the guard: each must rebalance.
UPSTREAM = "upstream request"
SCHEDULE = "schedule"
# How far apart a shared portfolio's two deliveries come, against Glider's cooldown (`c`):
# together (one SQS batch: on v2 the second joins the first's rebalance in flight, on v1 the
# cooldown refuses it), minutes apart (refused, with a Retry-After longer than the function
# waits), just before the cooldown ends (refused, with a Retry-After short enough to wait out),
# after it (both go through).
TOGETHER = "together"
MINUTES_APART = "minutes apart"
AT_COOLDOWN_END = "at the cooldown's end"
AFTER_COOLDOWN = "after the cooldown"
_SPACINGS = (TOGETHER, MINUTES_APART, AT_COOLDOWN_END, MINUTES_APART, TOGETHER, AFTER_COOLDOWN)
_KINDS = ((UPSTREAM, SCHEDULE), (SCHEDULE, UPSTREAM), (UPSTREAM, UPSTREAM))


@dataclass(frozen=True)
class Delivery:
    """One delivery of a shared portfolio: when (seconds after its phase starts) and what."""

    kind: str  # UPSTREAM or SCHEDULE
    at: float
    body: dict[str, Any]  # the work-queue message body, or the asynchronous event


@dataclass(frozen=True)
class SharedPortfolio:
    portfolio_id: str
    spacing: str
    deliveries: tuple[Delivery, ...]


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
    # The phase in the run's tail: portfolios requested by two deliveries, and portfolios whose
    # lost answer gets buried under more than a page of other rebalances (one async event).
    shared: list[SharedPortfolio] = field(default_factory=list)
    deep: list[str] = field(default_factory=list)
    deep_event: dict[str, Any] = field(default_factory=dict)
    # Glider's clock minus ours: the run's first half, its second half (and the phase), the
    # replay.
    clock_offsets: tuple[float, float, float] = (0.0, 0.0, 0.0)


def make_plan(config: ChaosConfig) -> ChaosPlan:
    rng = random.Random(config.seed)  # noqa: S311 - test data, not cryptography
    ids = [f"chaos_{n:05d}" for n in range(1, config.ids + 1)]
    # The phase's ids come off the end: the rest go through the run as before.
    shared_count = config.shared_count(config.ids)
    deep_count = min(config.deep_portfolios, max(0, config.ids - shared_count) // 4)
    main = ids[: config.ids - shared_count - deep_count]
    sqs_count = round(len(main) * config.sqs_share)
    messages: list[list[str]] = []
    position = 0
    while position < sqs_count:
        size = rng.choice((2, 3)) if rng.random() < config.multi_id_message_share else 1
        messages.append(main[position : min(position + size, sqs_count)])
        position = min(position + size, sqs_count)  # else the ids past the cut are never sent
    event_ids: list[list[str]] = []
    while position < len(main):
        size = rng.randint(*config.event_size)
        event_ids.append(main[position : position + size])
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
    _script_faults(plan, main, config, rng)
    plan.events = [_event(batch, index, rng) for index, batch in enumerate(event_ids)]
    _stage_event_scenarios(plan, config, rng)
    shared = ids[len(main) : len(main) + shared_count]
    turns: Counter[str] = Counter()  # each spacing goes round the kinds of deliveries
    for number, portfolio_id in enumerate(shared):
        spacing = _SPACINGS[number % len(_SPACINGS)]
        kinds = _KINDS[turns[spacing] % len(_KINDS)]
        turns[spacing] += 1
        plan.shared.append(
            _shared(portfolio_id, number, spacing=spacing, kinds=kinds, config=config, rng=rng)
        )
    plan.deep = ids[len(main) + shared_count :]
    if plan.deep:
        # The function gives up on each without having looked: its letter carries the window.
        for portfolio_id in plan.deep:
            plan.scripts[portfolio_id] = lost_on_the_last_try(config, "glider.lost_last_try")
        plan.deep_event = _schedule(plan.deep, "chaos-deep", rng)
    low, high = config.clock_skew_seconds
    sign = rng.choice((-1.0, 1.0))
    plan.clock_offsets = (
        round(sign * rng.uniform(low, high), 1),
        round(-sign * rng.uniform(low, high), 1),  # Glider behind ours, then ahead (or reverse)
        round(rng.choice((-1.0, 1.0)) * rng.uniform(low, high), 1),
    )
    return plan


def lost_on_the_last_try(config: ChaosConfig, kind: str) -> list[tuple[str, Fault]]:
    """Refused (429, Retry-After 0) on every try but the last, whose answer is lost: the
    invocation gives up without having looked for the rebalance that attempt started."""
    refused = [("glider.rate_limited", Fault.rate_limited(0))] * (config.trigger_tries - 1)
    return [*refused, (kind, Fault.lost_response())]


def _shared(
    portfolio_id: str,
    number: int,
    *,
    spacing: str,
    kinds: tuple[str, str],
    config: ChaosConfig,
    rng: random.Random,
) -> SharedPortfolio:
    """Two deliveries of one portfolio, `spacing` apart."""
    cooldown = config.cooldown_seconds
    first_at = round(rng.uniform(0.0, 2.0), 2)
    if spacing == TOGETHER:
        kinds = (UPSTREAM, UPSTREAM)  # one SendMessageBatch: one SQS batch
        second_at = first_at
    else:
        gap = {
            MINUTES_APART: (2.0, cooldown - 3.0),
            AT_COOLDOWN_END: (cooldown - 1.2, cooldown - 0.6),
            AFTER_COOLDOWN: (cooldown + 0.5, cooldown + 2.0),
        }[spacing]
        second_at = round(first_at + rng.uniform(*gap), 2)
    deliveries = tuple(
        Delivery(
            kind,
            at,
            {PORTFOLIO_ID: portfolio_id, IDEMPOTENCY_KEY: f"upstream:{portfolio_id}:{turn}"}
            if kind == UPSTREAM
            else _schedule([portfolio_id], f"chaos-shared-{number:03d}-{turn}", rng),
        )
        for turn, (kind, at) in enumerate(zip(kinds, (first_at, second_at), strict=True))
    )
    return SharedPortfolio(portfolio_id, spacing, deliveries)


def _schedule(ids: list[str], name: str, rng: random.Random) -> dict[str, Any]:
    """A Scheduler target input: its schedule's ARN and this occurrence's time."""
    when = datetime(2026, 1, 5, 12, 0, tzinfo=UTC) + timedelta(minutes=rng.randrange(600))
    return {
        PORTFOLIO_IDS: ids,
        SCHEDULE_ARN: f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{name}",
        SCHEDULED_TIME: when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


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


def _script_faults(
    plan: ChaosPlan, main: list[str], config: ChaosConfig, rng: random.Random
) -> None:
    chances = [
        ("glider.not_found", config.p_not_found),
        ("glider.server_error", config.p_server_error),
        ("glider.rate_limited", config.p_rate_limited),
        ("glider.connection_reset", config.p_connection_reset),
        ("glider.slow", config.p_slow),
        ("glider.lost_response", config.p_lost_response),
        ("glider.truncated", config.p_truncated),
        ("glider.acted_then_error", config.p_acted_then_error),
        ("glider.lost_last_try", config.p_lost_last_try),
    ]
    for portfolio_id in main:
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
            else sum(1 for script in plan.scripts.values() if script[-1][0] == kind)
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
    elif kind == "glider.acted_then_error":
        fault = Fault.acted_then_error(rng.choice((500, 502, 503)))
    elif kind == "glider.lost_last_try":
        plan.scripts[portfolio_id] = lost_on_the_last_try(config, kind)
        return
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
            "detail": {PORTFOLIO_IDS: ids},
        }
    return {
        PORTFOLIO_IDS: ids,
        SCHEDULE_ARN: f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/chaos-{index:03d}",
        SCHEDULED_TIME: stamp,
    }


def message_body(ids: list[str]) -> dict[str, Any]:
    """A work-queue message of the trigger shape: one id as portfolioId, more as portfolioIds."""
    return {PORTFOLIO_ID: ids[0]} if len(ids) == 1 else {PORTFOLIO_IDS: ids}
