"""The faults: their report keys and labels, and the AWS faults staged around invocations."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from local.chaos.config import ChaosConfig
from local.fixtures.fault_proxy import AwsFault, FaultProxy
from local.fixtures.glider_emulator import GliderEmulator

SECRETS_READ = "secretsmanager.GetSecretValue"
DLQ_WRITE = "AmazonSQS.SendMessageBatch"
STORE_UPDATE = "DynamoDB_20120810.UpdateItem"  # the guard's "success" write (opt-in faults)
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
    "glider.acted_then_error": "Glider 5xx after it started the rebalance (triggered)",
    "glider.lost_last_try": "Glider lost response on a delivery's last try (triggered)",
    "glider.not_found": "Glider 404 API_200 (unknown portfolio)",
}
AWS_FAULTS = {
    f"aws.{SECRETS_READ}.throttling": "GetSecretValue ThrottlingException",
    f"aws.{DLQ_WRITE}.server_error": "SendMessageBatch 500 InternalFailure",
    f"aws.{DLQ_WRITE}.connection_reset": "SendMessageBatch connection reset",
    f"aws.{DLQ_WRITE}.access_denied": "SendMessageBatch AccessDenied (DLQ or work-queue outage)",
}
# Faults the harness stages around an invocation (not one request's answer).
CRASH_FAULT = "lambda.crash"
PARTIAL_QUEUE_FAULT = "aws.partial_work_queue_write"
SCENARIO_FAULTS = {
    CRASH_FAULT: "execution environment crashed mid-invocation (an async event's queued batch)",
    PARTIAL_QUEUE_FAULT: "work-queue write failed after its first batch landed (stale messages)",
}
STORE_FAULT = f"aws.{STORE_UPDATE}.access_denied"
STORE_FAULT_LABEL = "DynamoDB UpdateItem AccessDenied (idempotency success write)"
# Faults after which Glider has acted although the function saw no answer that says so. Not
# the truncated 2xx: its status line arrived, so the function knows Glider accepted.
MAYBE_DELIVERED_FAULTS = frozenset(
    {"glider.slow", "glider.lost_response", "glider.acted_then_error", "glider.lost_last_try"}
)
# ... of which a lookup of the portfolio's recent rebalances finds the rebalance in time (an
# answer slower than the read timeout may start it only after the function looked).
RECONCILABLE_FAULTS = frozenset(
    {"glider.lost_response", "glider.acted_then_error", "glider.lost_last_try"}
)


class Outages:
    """The faults staged on the AWS proxy (and the Glider outage) for the invocation about to
    run, ended with it, over the background rates that hold for the whole run."""

    def __init__(
        self,
        config: ChaosConfig,
        proxy: FaultProxy,
        emulator: GliderEmulator,
        *,
        rng: random.Random,
        invocations: Counter[str],
        dlq_url: str,
        work_queue_url: str,
        expected_invocations: int,
    ) -> None:
        self.config = config
        self.proxy = proxy
        self.emulator = emulator
        self.rng = rng  # the harness's: one seeded sequence of draws for the run
        self.invocations = invocations  # the harness's counts, which this adds to
        self.dlq_url = dlq_url  # the staged DLQ outages deny writes to it, not to other queues
        self.work_queue_url = work_queue_url  # ... and the staged work-queue outages, to it
        self.access_denied_staged = 0  # AccessDenied the staged DLQ outages may deny, in all
        self.secret_outage_staged = False
        # emulator.requests index ranges whose triggers the Glider outage answered
        self.outage_windows: list[tuple[int, int]] = []
        self.exhaust_secret_at = {
            1 + self.rng.randrange(max(1, expected_invocations // 2))
            for _ in range(self.config.secret_exhaustions)
        }

    def background_faults(self) -> None:
        proxy, config = self.proxy, self.config
        proxy.inject(SECRETS_READ, AwsFault.throttling(), rate=config.secret_throttle_rate)
        self.dlq_background_faults()
        if config.store_fault_rate:
            proxy.inject(STORE_UPDATE, AwsFault.access_denied(), rate=config.store_fault_rate)

    def dlq_background_faults(self) -> None:
        proxy, config = self.proxy, self.config
        proxy.inject(DLQ_WRITE, AwsFault.server_error(), rate=config.dlq_server_error_rate)
        proxy.inject(DLQ_WRITE, AwsFault.connection_reset(), rate=config.dlq_reset_rate)
        # At least one of each early on, whatever the rates.
        injected = proxy.injected_by_fault
        for fault in (AwsFault.server_error(), AwsFault.connection_reset()):
            if not injected.get((DLQ_WRITE, fault.kind)):
                proxy.inject(DLQ_WRITE, fault, times=1)

    def end_dlq_outages(self) -> None:
        """A DLQ (or work-queue) outage staged for an invocation ends with it: AccessDenied
        left over (the invocation wrote less than the outage would deny) would otherwise deny
        the next invocation's writes, whatever was staged for that one (a partial write, say).
        The queues' rules are reset to the background faults."""
        fired = self.proxy.injected_by_fault.get((DLQ_WRITE, "access_denied"), 0)
        if fired < self.access_denied_staged:
            self.proxy.clear(DLQ_WRITE)
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
            self.proxy.inject(SECRETS_READ, AwsFault.throttling(), times=sdk * reads)
            self.secret_outage_staged = True
        elif self.rng.random() < self.config.secret_outage_chance:
            # One read's SDK attempts all throttled: the function's own retry gets the key.
            self.proxy.inject(SECRETS_READ, AwsFault.throttling(), times=sdk)
            self.secret_outage_staged = True

    def end_secret_outages(self) -> None:
        """A Secrets Manager outage staged for an invocation ends with it (the background
        throttling goes on)."""
        if self.secret_outage_staged:
            self.proxy.clear(SECRETS_READ)
            rate = self.config.secret_throttle_rate
            self.proxy.inject(SECRETS_READ, AwsFault.throttling(), rate=rate)
            self.secret_outage_staged = False

    def dlq_outage(self, writes: int) -> None:
        """AccessDenied (never retried by the SDK) for `writes` whole DLQ writes."""
        times = writes * self.config.dlq_send_attempts
        self.proxy.inject(DLQ_WRITE, AwsFault.access_denied(), times=times, within=self.dlq_url)
        self.access_denied_staged += times

    def work_queue_outage(self, writes: int) -> None:
        """AccessDenied for `writes` whole work-queue writes (batches of 10): an event's
        invocation that cannot queue its portfolios fails, and Lambda retries it."""
        times = writes * self.config.dlq_send_attempts  # the same writer, the same attempts
        proxy = self.proxy
        proxy.inject(DLQ_WRITE, AwsFault.access_denied(), times=times, within=self.work_queue_url)
        self.access_denied_staged += times

    def in_outage(self, request_index: int) -> bool:
        return any(start <= request_index < end for start, end in self.outage_windows)

    @contextmanager
    def partial_work_queue_write(self, batches: int) -> Iterator[None]:
        """An event's work-queue write (`batches` batches of 10) whose first batch lands and
        whose others are denied: the invocation fails and Lambda retries it, which queues every
        portfolio again under the same key; the first batch's messages are stale repeats.

        For this attempt the work queue meets the staged fault alone (a background fault on
        the first batch, retried by the SDK, would make the staged denial hit that batch
        instead); the background faults are back after it."""
        proxy = self.proxy
        times = max(1, batches - 1) * self.config.dlq_send_attempts
        proxy.clear(DLQ_WRITE)
        proxy.inject(
            DLQ_WRITE, AwsFault.access_denied(), times=times, after=1, within=self.work_queue_url
        )
        self.access_denied_staged += times
        try:
            yield
        finally:
            proxy.clear(DLQ_WRITE)
            self.dlq_background_faults()
