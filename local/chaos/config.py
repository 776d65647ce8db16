"""The chaos run's settings (`ChaosConfig`) and the fixed facts of its stack."""

from __future__ import annotations

from dataclasses import dataclass

API_KEY = "chaos-local-key-not-a-secret"  # the emulator's key, not a credential
ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:glider-rebalance-trigger"
SQS_BATCH_ENTRIES = 10  # SendMessageBatch's limit: the function writes its letters 10 at a time


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
    p_acted_then_error: float = 0.012  # a 5xx Glider answers after it started the rebalance
    # 429s on every try but the last, whose answer is lost: the delivery's next receive, retry
    # or replayed letter must find that rebalance (finished by then: on v2 a repeat would not
    # be joined to it) on Glider's clock, however far off ours it is.
    p_lost_last_try: float = 0.01
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
    # ... and per SQS invocation naming an unknown portfolio (a letter it will write).
    dlq_outage_chance_letters: float = 0.25
    # Per async event: AccessDenied for the work-queue write of its first 1-3 attempts (an
    # event's invocation only queues its portfolios; 3: the on-failure destination record).
    dlq_outage_chance_event: float = 0.15
    store_fault_rate: float = 0.0  # opt-in: the guard's UpdateItem (success record) denied
    # True: the guard's table forgets every record no invocation holds (local/chaos/amnesia.py).
    guard_forgets: bool = False
    # Several deliveries of one portfolio (an upstream request and a schedule, or two upstream
    # requests), in a phase of the run's tail with Glider's per-portfolio cooldown on: this share
    # of the ids (at least shared_min) is requested twice, by two distinct deliveries.
    shared_share: float = 0.03
    shared_min: int = 8
    # The cooldown, scaled like Lambda's retries (80 s when deployed): the second delivery of a
    # pair that comes inside it is refused with a 429 whose Retry-After is what is left of it.
    cooldown_seconds: float = 20.0
    # Portfolios with more than one page of rebalances: a lost answer on the last try of their
    # delivery (its letter carries the window), then this many rebalances of someone else's
    # (more than the emulator lists at most, 50), then the replay of the letter.
    deep_portfolios: int = 3
    deep_rebalances: int = 55
    # Glider's clock: off ours by a seeded offset of this magnitude at most (20 s at least, so
    # that it always exceeds the function's 5 s allowance), changed per phase of the run.
    clock_skew_seconds: tuple[float, float] = (20.0, 60.0)
    # Pacing: RATE_LIMIT_PER_SECOND for the function (pacing=False leaves it unset, to see the
    # check fail), and the ceiling every request to Glider is checked against: per execution
    # environment, a bucket of max(1, rate) tokens refilled at `rate` a second, with an
    # allowance of `pacing_allowance_seconds` for the time between the function's slot and the
    # request's arrival at Glider (the guard's write before a first attempt, a busy machine:
    # runs on 2 shared cores needed up to 0.08 s; with none, a few requests a run arrive over).
    rate_limit_per_second: float = 20.0
    pacing: bool = True
    pacing_allowance_seconds: float = 0.15
    # Staged scenarios on async events (each event has at most one; the first event has the
    # work-queue outage that ends in its on-failure destination record).
    crashes: int = 3  # events whose queued portfolios' first batch loses its environment
    partial_dlq_writes: int = 1  # events of >10 ids whose first queue write fails after 1 batch
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
    # Following rebalances to their outcome: each runs this long on the emulator's chain, and
    # the first follow-up comes after this many seconds (then 2x, ...; 30 s when deployed).
    workflow_seconds: float = 0.5
    api_version: str = "v1"  # GLIDER_API_VERSION: the emulator serves both from one state
    follow_first_delay_seconds: int = 1
    sdk_attempts: int = 4  # the function's botocore config: max_attempts=3 retries, 4 in all
    trigger_tries: int = 4  # GLIDER_MAX_ATTEMPTS: tries per trigger, key reads included
    dlq_send_attempts: int = 3  # DeadLetterQueue's own attempts per write
    # botocore's own backoff between its retries (up to 1 + 2 + 4 s per call for throttling),
    # scaled to compress time: 1.0 is botocore as shipped. Retries and errors are unchanged.
    sdk_backoff_scale: float = 1.0

    @classmethod
    def quick(cls, *, ids: int = 300, seed: int = 0, api_version: str = "v1") -> ChaosConfig:
        """The short run: the same mix, one long Retry-After (10 s), one secret exhaustion,
        two crashes, two lost answers a page down, and botocore's backoff at a tenth (its
        retries of throttled reads would take most of it)."""
        return cls(
            ids=ids,
            seed=seed,
            api_version=api_version,
            sdk_backoff_scale=0.1,
            long_rate_limits=1,
            long_retry_after=(10, 10),
            secret_exhaustions=1,
            dlq_outage_chance_sqs=0.05,
            dlq_outage_chance_event=0.3,
            crashes=2,
            deep_portfolios=2,
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
            "FOLLOW_FIRST_DELAY_SECONDS": str(self.follow_first_delay_seconds),
            **({"RATE_LIMIT_PER_SECOND": f"{self.rate_limit_per_second:g}"} if self.pacing else {}),
        }

    def shared_count(self, ids: int) -> int:
        """How many of `ids` are requested by two deliveries (0 when there are too few ids)."""
        wanted = max(self.shared_min, round(ids * self.shared_share)) if self.shared_share else 0
        return min(wanted, ids // 4)

    @property
    def pacing_capacity(self) -> float:
        """The function's bucket: one second's worth, at least one request (pacing.py)."""
        return max(1.0, self.rate_limit_per_second)
