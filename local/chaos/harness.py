"""The deliveries, as Lambda makes them: SQS batches, async attempts and retries, the drains."""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from local.chaos.config import FUNCTION_ARN, REGION, ChaosConfig
from local.chaos.faults import CRASH_FAULT, PARTIAL_QUEUE_FAULT, Outages
from local.chaos.letters import DESTINATION, body_ids, dlq_kind
from local.chaos.plan import ChaosPlan, message_body
from local.fixtures.event_source import SqsEventSource
from local.fixtures.fault_proxy import FaultProxy
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.lambda_context import EnvironmentCrash, LocalLambdaContext
from local.fixtures.stack import Deployment, drain

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries


class BatchLost(Exception):
    """A work-queue batch whose execution environment crashed: no answer, so SQS delivers
    every message again after its visibility timeout."""


def batches_of(ids: list[str]) -> int:
    """The work-queue writes (SendMessageBatch, 10 entries each) of an event's portfolios."""
    return max(1, math.ceil(len(set(ids)) / 10))


def delivery_key_of(body: str) -> str:
    """The delivery key a work-queue message carries ("" for none or an unreadable body)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    return str(parsed.get("deliveryKey") or "") if isinstance(parsed, dict) else ""


@dataclass
class Stack:
    """What one run stands on: its plan, the proxy, the emulator, the deployment, the function."""

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
    # When each began to take invocations (time.time(), the emulator's clock for arrivals).
    # One invocation runs at a time and a crashed one has finished all its work (its worker
    # pool is joined) before the next environment starts, so each request to Glider belongs to
    # the environment whose span holds its arrival: the pacing check reads them so.
    environment_started: list[float] = field(default_factory=list)

    @property
    def function(self) -> LocalFunction:
        if not self.functions:
            self.new_environment()
        return self.functions[-1]

    def new_environment(self) -> None:
        self.functions.append(LocalFunction(self.env))
        self.environment_started.append(time.time())

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines of every execution environment."""
        return [record for function in self.functions for record in function.logs]


@dataclass
class AsyncDelivery:
    """One async event on its way through Lambda's attempts."""

    index: int
    event: dict[str, Any]
    ids: list[str]
    request_id: str
    # The environment of the first work-queue batch of its queued portfolios dies on this
    # context call (an event's invocation triggers nothing: the work is the batch's).
    crash_after: int | None = None
    # Meets the run's staged AWS faults (secret outages, work-queue outages); not the phase's
    # events, whose scenario is Glider's cooldown and lost answers.
    staged: bool = True
    partial_write: bool = False  # staged on the first attempt (or the next, if it did not take)
    outage_attempts: int = 0  # attempts, from the first, whose work-queue write is denied
    attempts: int = 0
    due: float = 0.0  # time.monotonic() of the next attempt
    error: BaseException | None = None
    key: str = ""  # the delivery key its answer named (what its queued messages carry)


@dataclass(frozen=True)
class Replayed:
    kind: str
    ids: tuple[str, ...]


class Harness:
    """Plays Lambda for one run: the SQS event source, async invocations and their retries."""

    def __init__(self, stack: Stack, progress: Callable[[str], None]) -> None:
        self.stack = stack
        self.config = stack.config
        self.progress = progress
        self.rng = random.Random(stack.config.seed + 1)  # noqa: S311 - fault timing
        self.invocations: Counter[str] = Counter()
        self.handler_errors: Counter[str] = Counter()
        self.scenarios: Counter[str] = Counter()  # staged faults that really happened
        self.sent_message_ids: dict[str, list[str]] = {}
        self.work_queue_message_ids: set[str] = set()  # every message the event source got
        self.retries: list[AsyncDelivery] = []  # failed attempts waiting for Lambda's retry
        self.abandoned: list[AsyncDelivery] = []  # retries still pending when a drain gave up
        # Crashes armed for the work-queue batch of an event's queued portfolios (by the
        # event's delivery key: the context call to crash on), and the messages a crashed
        # batch held, until when (monotonic: the crashed invocation's deadline).
        self.crash_armed: dict[str, int] = {}
        self.crashed_until: dict[str, float] = {}
        self.crash_retries_in_window = 0  # redeliveries of those messages inside that window
        # Each work-queue message's delivery key, as the event source handed it over, and the
        # delivery keys of the async events (their answers name them).
        self.message_keys: dict[str, str] = {}
        self.event_keys: set[str] = set()
        # The replay: where it starts in emulator.requests and emulator.rebalances, and what
        # each replayed message (by its new message id) was in the DLQ.
        self.replay_request_start: int | None = None
        self.replay_rebalance_start: int | None = None
        self.replayed: dict[str, Replayed] = {}
        self.notes: list[str] = []
        # Timed actions (the phase's deliveries and its end), by due time.monotonic(): a drain
        # does not end while one is pending.
        self.actions: list[tuple[float, Callable[[], None]]] = []
        self.phase_started: Callable[[], None] | None = None  # set by the phase, run once
        self.source = SqsEventSource(
            self.stack.sqs, self.stack.deployment.work_queue, region=REGION
        )
        follow_up_queue = self.stack.deployment.follow_up_queue
        assert follow_up_queue is not None  # noqa: S101 - deploy() creates it
        self.follow_up_queue = follow_up_queue
        # The follow-up queue's event source: the rebalances followed to their outcome.
        self.follow_ups = SqsEventSource(self.stack.sqs, follow_up_queue, region=REGION)
        self.started = self._last_progress = time.monotonic()
        total = max(1, len(stack.plan.messages) // 10 + len(stack.plan.events))
        self.outages = Outages(
            self.config,
            stack.proxy,
            stack.emulator,
            rng=self.rng,
            invocations=self.invocations,
            dlq_url=stack.deployment.dlq.url,
            work_queue_url=stack.deployment.work_queue.url,
            expected_invocations=total,
        )

    def dlq_depth(self) -> int:
        attributes = self.stack.sqs.get_queue_attributes(
            QueueUrl=self.stack.deployment.dlq.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    # ---- invocations

    def invoke_sqs(self, event: dict[str, Any]) -> Mapping[str, Any]:
        self.invocations["SQS batches"] += 1
        if self.replay_request_start is not None:
            self.invocations["SQS batches during the replay"] += 1
        records = event["Records"]
        self.work_queue_message_ids.update(r["messageId"] for r in records)
        keys = {r["messageId"]: delivery_key_of(str(r["body"])) for r in records}
        self.message_keys.update({m: k for m, k in keys.items() if k})
        now = time.monotonic()
        self.crash_retries_in_window += sum(
            1 for m in keys if now < self.crashed_until.get(m, float("-inf"))
        )
        named = {i for r in records for i in body_ids(str(r["body"]))}
        self.outages.secret_faults(len(named))
        if self.rng.random() < self.config.dlq_outage_chance_sqs or (
            named & self.stack.plan.not_found
            and self.rng.random() < self.config.dlq_outage_chance_letters
        ):
            self.outages.dlq_outage(self.rng.choice((1, 1, 2)))
        armed = next((k for k in keys.values() if k in self.crash_armed), None)
        crash_after = None
        if armed is not None:
            # Each trigger reads the deadline at least once: within the batch's calls.
            crash_after = max(1, min(self.crash_armed[armed], 2 * len(records) - 1))
        context = LocalLambdaContext(
            timeout_seconds=self.config.context_timeout_seconds, crash_after_calls=crash_after
        )
        try:
            response: Mapping[str, Any] = self.stack.function.invoke(event, context=context)
        except EnvironmentCrash as crash:
            # The environment is gone, and with it whatever the batch was doing; its claimed
            # records stay in progress until its deadline. The batch is not answered: SQS
            # delivers every message again after its visibility timeout, to a new environment.
            self.scenarios[CRASH_FAULT] += 1
            del self.crash_armed[str(armed)]
            self.crashed_until.update(dict.fromkeys(keys, context.deadline))
            self.stack.new_environment()
            raise BatchLost(str(crash)) from None
        except Exception as exc:
            self.handler_errors[f"SQS batch: {type(exc).__name__}"] += 1
            raise
        finally:
            self.outages.end_dlq_outages()
            self.outages.end_secret_outages()
        return response

    def invoke_follow_ups(self, event: dict[str, Any]) -> Mapping[str, Any]:
        self.invocations["follow-up batches"] += 1
        context = LocalLambdaContext(timeout_seconds=self.config.context_timeout_seconds)
        try:
            response: Mapping[str, Any] = self.stack.function.invoke(event, context=context)
        except Exception as exc:
            self.handler_errors[f"follow-up batch: {type(exc).__name__}"] += 1
            raise
        return response

    def start_async(self, index: int, event: dict[str, Any]) -> None:
        """Lambda takes an async event: its first attempt now, the retries when they are due."""
        self.invocations["async events"] += 1
        plan = self.stack.plan
        delivery = AsyncDelivery(
            index,
            event,
            plan.event_ids[index],
            str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            crash_after=plan.crash_after.get(index),
            partial_write=index in plan.partial_dlq,
        )
        if index == 0:
            # Each attempt of the first event writes to the work queue: an outage over all
            # three makes Lambda send the on-failure destination record.
            delivery.outage_attempts = ASYNC_ATTEMPTS
        elif (
            delivery.crash_after is None
            and not delivery.partial_write
            and self.rng.random() < self.config.dlq_outage_chance_event
        ):
            delivery.outage_attempts = self.rng.choice((1, 2, 3))
        self.attempt(delivery)

    def start_extra_async(self, event: dict[str, Any], ids: list[str]) -> None:
        """An async event outside the plan's list (the phase's): Lambda's attempts and
        retries as for any, without the run's staged AWS faults."""
        self.invocations["async events"] += 1
        request_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.attempt(AsyncDelivery(-1, event, ids, request_id, staged=False))

    def send_bodies(self, bodies: list[dict[str, Any]]) -> None:
        """Work-queue messages in one SendMessageBatch (at most 10): received together."""
        response = self.stack.sqs.send_message_batch(
            QueueUrl=self.stack.deployment.work_queue.url,
            Entries=[{"Id": str(n), "MessageBody": json.dumps(b)} for n, b in enumerate(bodies)],
        )
        if response.get("Failed"):
            raise RuntimeError(f"could not send to the work queue: {response['Failed']}")

    def at(self, delay: float, action: Callable[[], None]) -> None:
        self.actions.append((time.monotonic() + delay, action))
        self.actions.sort(key=lambda entry: entry[0])

    def run_due_actions(self) -> None:
        while self.actions and self.actions[0][0] <= time.monotonic():
            _, action = self.actions.pop(0)
            action()

    def run_due_retries(self) -> None:
        now = time.monotonic()
        for delivery in sorted((d for d in self.retries if d.due <= now), key=lambda d: d.due):
            self.retries.remove(delivery)
            self.attempt(delivery)

    def attempt(self, delivery: AsyncDelivery) -> None:
        """One attempt of an async event; a failure schedules Lambda's next attempt, or after
        the last one sends the on-failure destination record to the DLQ."""
        delivery.attempts += 1
        self.invocations["async invocations"] += 1
        if delivery.attempts > 1:
            self.invocations["async retries"] += 1
        # No secret faults: an event's invocation only queues its portfolios, it reads no key.
        if delivery.attempts <= delivery.outage_attempts:
            self.outages.work_queue_outage(batches_of(delivery.ids))
        staged = delivery.partial_write and delivery.attempts < ASYNC_ATTEMPTS
        context = LocalLambdaContext(
            timeout_seconds=self.config.context_timeout_seconds,
            aws_request_id=delivery.request_id,
        )
        if staged:
            error = self._attempt_with_partial_write(delivery, context)
        else:
            error = self._invoke_async(delivery, context)
        self.outages.end_dlq_outages()
        self.outages.end_secret_outages()
        if error is None:
            if delivery.crash_after is not None and delivery.key:  # its queued batch crashes
                self.crash_armed[delivery.key] = delivery.crash_after
                delivery.crash_after = None
            return
        delivery.error = error
        if delivery.attempts < ASYNC_ATTEMPTS:
            delivery.due = time.monotonic() + self.config.async_retry_delays[delivery.attempts - 1]
            self.retries.append(delivery)
        else:
            self.send_destination_record(delivery)

    def _invoke_async(
        self, delivery: AsyncDelivery, context: LocalLambdaContext
    ) -> BaseException | None:
        try:
            response = self.stack.function.invoke(delivery.event, context=context)
        except Exception as exc:
            self.handler_errors[f"async: {type(exc).__name__}"] += 1
            return exc
        if isinstance(response, Mapping):
            delivery.key = str(response.get("deliveryKey") or "")
            self.event_keys.add(delivery.key)
            # An event triggers nothing itself: it queues one work-queue message per portfolio
            # (the drain hands them to the function) and dead-letters what it rejects.
            queued = int(response.get("queued") or 0)
            self.invocations["portfolios queued by async events"] += queued
            dead_lettered = int(response.get("deadLettered") or 0)
            self.invocations["ids dead-lettered by async events"] += dead_lettered
        return None

    def _attempt_with_partial_write(
        self, delivery: AsyncDelivery, context: LocalLambdaContext
    ) -> BaseException | None:
        """The event's work-queue write (one message per portfolio, 10 a batch) denied after
        its first batch landed: the invocation fails and Lambda retries it, which queues every
        portfolio again under the same key; the first batch's messages are stale repeats the
        guard finds done (or in progress)."""
        before = self.queue_depth()
        with self.outages.partial_work_queue_write(batches_of(delivery.ids)):
            error = self._invoke_async(delivery, context)
        landed = self.queue_depth() - before
        if error is not None and landed > 0:
            delivery.partial_write = False  # done: the retry runs without an outage
            self.scenarios[PARTIAL_QUEUE_FAULT] += 1
            self.invocations["stale work-queue messages (written before a failed write)"] += landed
        elif error is None:
            delivery.partial_write = False  # the write went through after all: nothing to retry
        # else (no message landed): staged again on the retry.
        return error

    def send_destination_record(self, delivery: AsyncDelivery) -> None:
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
                    {"Id": str(n), "MessageBody": json.dumps(message_body(ids))}
                    for n, ids in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                raise RuntimeError(f"could not fill the work queue: {response['Failed']}")
            for sent in response["Successful"]:
                self.sent_message_ids[sent["MessageId"]] = chunk[int(sent["Id"])]

    def queue_depth(self, queue_url: str | None = None) -> int:
        """Messages on the work queue (or another): visible, in flight, and delayed."""
        attributes = self.stack.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.stack.deployment.work_queue.url,
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
        (the work queue, delayed messages included, Lambda's pending retries and the phase).
        Glider's clock is off ours by the plan's first offset, then by its second once half the
        events have started."""
        self.stack.emulator.set_clock_offset(self.stack.plan.clock_offsets[0])
        self.outages.background_faults()
        self.send_messages()
        events = deque(enumerate(self.stack.plan.events))
        batches = math.ceil(len(self.stack.plan.messages) / 10)
        stride = max(1, batches // (len(events) + 1))
        self.drain_work(events, stride, "the run")

    def replay(self) -> None:
        """Every DLQ message back to the work queue, body verbatim and no attributes (a message
        move task, `make dlq ARGS='redrive'`), then the work queue drained again."""
        emulator = self.stack.emulator
        emulator.set_clock_offset(self.stack.plan.clock_offsets[2])
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
                named = tuple(body_ids(message["Body"]))
                self.replayed[sent["MessageId"]] = Replayed(kind, named)
        self.progress(f"  replaying {len(letters)} DLQ messages")
        self.drain_work(deque(), 1, "the replay")

    def drain_work(
        self, events: deque[tuple[int, dict[str, Any]]], stride: int, phase: str
    ) -> None:
        deadline = time.monotonic() + self.config.drain_timeout_seconds
        polls = 0
        half, flipped = len(events) // 2, phase != "the run"
        while True:
            if not flipped and len(events) <= half:
                self.stack.emulator.set_clock_offset(self.stack.plan.clock_offsets[1])
                flipped = True
            self.run_due_retries()
            self.run_due_actions()
            if events and polls % stride == stride - 1:
                self.start_async(*events.popleft())
            result = self.source.poll(self.invoke_sqs)
            followed = self.follow_ups.poll(self.invoke_follow_ups)
            polls += 1
            self.report_progress()
            if result is not None:
                self.invocations["SQS records reported for retry"] += len(result.redelivered)
            elif events:
                self.start_async(*events.popleft())
            elif followed is not None:
                continue
            elif self.phase_started is not None and phase == "the run":
                # The run's tail: every event started, nothing visible on the work queue.
                start, self.phase_started = self.phase_started, None
                start()
            elif (
                not self.retries
                and not self.actions
                and self.queue_depth() == 0
                and self.queue_depth(self.follow_up_queue.url) == 0
            ):
                return
            elif time.monotonic() > deadline:
                self.abandoned += self.retries
                self.retries = []
                self.actions = []
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
