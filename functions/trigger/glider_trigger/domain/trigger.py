"""Trigger one portfolio's rebalance, retrying what is worth retrying.

Knows nothing of Lambda events or HTTP: it gets a request and the invocation (its deadline and
breaker), calls the RebalancingApi port with a key from the ApiKeySource port, and returns an
Outcome. Retries use exponential backoff with full jitter, honour Retry-After, and never start
an attempt that could not finish before the deadline. After an attempt whose answer proves
nothing (a lost answer, a 5xx), and before the first attempt of a delivery that may have been
attempted before, the Reconciler looks for the rebalance it may have started (reconcile.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from glider_trigger.domain.errors import (
    ApiError,
    FailureClass,
    IdempotencyUnavailableError,
    KeyRefusedError,
    NotAttemptedError,
    SecretUnavailableError,
    TriggerError,
    classify,
)
from glider_trigger.domain.invocation import Invocation
from glider_trigger.domain.models import (
    ApiKey,
    Failed,
    Outcome,
    Receipt,
    Triggered,
    TriggerRequest,
    Window,
)
from glider_trigger.domain.ports import (
    ApiKeySource,
    Attempts,
    Clock,
    Deadline,
    Pacing,
    RebalancingApi,
)
from glider_trigger.domain.reconcile import JOINED_BEFORE_SECONDS, Reconciler
from glider_trigger.domain.retry import RetryPolicy
from glider_trigger.domain.slots import CallSlots


class RebalanceTrigger:
    def __init__(
        self,
        api: RebalancingApi,
        api_keys: ApiKeySource,
        policy: RetryPolicy,
        *,
        clock: Clock,
        reconciler: Reconciler,
        rng: random.Random | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self._slots = CallSlots(api, pacing)
        self._reconciler = reconciler
        self._api = api
        self._api_keys = api_keys
        self.policy = policy
        self._clock = clock
        # Jitter spreads retries out; it protects nothing, so a CSPRNG would add nothing.
        self._rng = rng or random.Random()  # noqa: S311  # nosec B311

    def trigger(
        self, request: TriggerRequest, invocation: Invocation, attempts: Attempts
    ) -> Outcome:
        """`attempts` records, before the first request leaves, that this holder may make Glider
        act (the guard's record of this delivery)."""
        outcome = self._attempt(request, invocation, attempts)
        if isinstance(outcome, Failed) and outcome.failure_class is FailureClass.SYSTEMIC:
            invocation.halt(outcome.error)
        return outcome

    def _attempt(
        self, request: TriggerRequest, invocation: Invocation, attempts: Attempts
    ) -> Outcome:
        tally = _Tally(attempts, inherited=request.may_have_started)
        tries = _Tries()
        while True:
            # Checked before every attempt, retries included: workers already in their retry
            # cycles stop too once another worker has seen a systemic failure or an outage.
            stop = invocation.blocker() or self._slots.late(invocation.deadline)
            if stop is not None:
                return tally.failed(request, tries.last_error or stop)
            sent = self._try(request, invocation, tally, tries)
            if not isinstance(sent, TriggerError):
                return sent
            tries.last_error = sent
            if isinstance(sent, KeyRefusedError) and not tries.key_refreshed:
                # The key may have been rotated since we cached it: read it again, once.
                tries.key_refreshed = tries.refresh_key = True
                continue
            delay = self._retry_delay(sent, tries.count, tally, invocation.deadline)
            if delay is None:
                return tally.failed(request, sent)
            self._clock.sleep(delay)

    def _try(
        self, request: TriggerRequest, invocation: Invocation, tally: _Tally, tries: _Tries
    ) -> Outcome | TriggerError:
        """One try: the key (a throttled Secrets Manager is retried like a busy API; a missing
        secret is not), then one attempt with it."""
        tries.count += 1
        try:
            api_key = self._api_keys.get(refresh=tries.refresh_key)
        except SecretUnavailableError as exc:
            return exc
        tries.refresh_key = False
        return self._send(request, api_key, invocation, tally, tries.last_error)

    def _retry_delay(
        self, error: TriggerError, tries: int, tally: _Tally, deadline: Deadline
    ) -> float | None:
        """How long to wait before the next try; None when there is none (not transient, the
        budget spent, or no time for the wait and a worst-case call)."""
        if classify(error) is not FailureClass.TRANSIENT or tries >= self.policy.max_attempts:
            return None
        delay = self.policy.delay_before_retry(error, tries, self._rng)
        if delay is not None and tally.unchecked:
            # An answer that never came may be a rebalance still starting: give it as long
            # again as its attempt waited before looking for it.
            delay = max(delay, tally.last_wait_seconds)
        if delay is None or deadline.seconds_left() < delay + self._api.worst_case_seconds:
            return None
        return delay

    def _send(
        self,
        request: TriggerRequest,
        api_key: ApiKey,
        invocation: Invocation,
        tally: _Tally,
        last_error: TriggerError | None,
    ) -> Outcome | TriggerError:
        """One attempt: a look for what an earlier attempt may have started, the call, each
        with its slot. An Outcome ends the portfolio's attempts; a TriggerError is this call's
        failure."""
        deadline = invocation.deadline
        if tally.unchecked:
            # The look takes a slot of its own; without one, nothing is sent again unlooked.
            found = self._reconciler.find(request, api_key, tally.unchecked, deadline=deadline)
            if isinstance(found, NotAttemptedError):
                return tally.failed(request, last_error or found)
            if isinstance(found, TriggerError):
                # Systemic (a refused key is refetched once by the caller's loop): nothing is
                # sent again unlooked, and the invocation halts with the work kept.
                return found
            if isinstance(found, Receipt):
                return tally.triggered(request, found)
            tally.looked(read=found)
        not_sent = self._slots.take(deadline)
        if not_sent is not None:
            return tally.failed(request, last_error or not_sent)
        answer = self._call(request, api_key, invocation, tally)
        if isinstance(answer, Receipt):
            return tally.triggered(request, self._identified(request, api_key, answer, deadline))
        return answer

    def _identified(
        self, request: TriggerRequest, api_key: ApiKey, receipt: Receipt, deadline: Deadline
    ) -> Receipt:
        """An accepted trigger whose answer was cut off, with its rebalance id if the API lists
        a rebalance it started (and the look gets a slot in time)."""
        if receipt.unread is None or receipt.sent_at is None:
            return receipt
        window = (Window(receipt.sent_at),)
        found = self._reconciler.find(request, api_key, window, deadline=deadline)
        if not isinstance(found, Receipt) or found.rebalance_id is None:
            return receipt  # nothing listed, or only when (v2): the id stays unknown
        return replace(
            receipt,
            rebalance_id=found.rebalance_id,
            unread=None,
            reconciled=True,
        )

    def _call(
        self, request: TriggerRequest, api_key: ApiKey, invocation: Invocation, tally: _Tally
    ) -> Receipt | TriggerError:
        """One call to the API, accounted for in the tally and the invocation's breaker."""
        recorded = tally.record_sending()
        if recorded is not None:
            return recorded  # nothing sent: the guard could not record that it may be
        tally.attempts += 1
        started = self._clock.monotonic()
        sent_at = self._clock.now()
        tally.first_sent_at = tally.first_sent_at or sent_at
        try:
            receipt = self._api.trigger(request, api_key)
        except TriggerError as exc:
            tally.latencies_ms.append((self._clock.monotonic() - started) * 1000)
            if isinstance(exc, ApiError) and exc.certainty.may_have_acted:
                tally.uncertain_attempt(sent_at, self._clock.now())
                tally.maybe_delivered += 1
            failure_class = classify(exc)
            if failure_class is FailureClass.TRANSIENT:
                invocation.call_failed_transiently()
            elif failure_class is FailureClass.PERMANENT:
                invocation.api_answered()
            return exc
        tally.latencies_ms.append((self._clock.monotonic() - started) * 1000)
        invocation.api_answered()
        if receipt.unread is not None:
            return replace(receipt, sent_at=sent_at)
        submitted = receipt.submitted_at
        if submitted is not None and submitted < tally.earliest_attempt - JOINED_BEFORE_SECONDS:
            # Submitted before any attempt of this delivery left, by more than clocks can differ,
            # and still in flight (v2 answers a repeat with the rebalance in progress): every
            # attempt joined it. Submitted later, it may be a lost attempt's: not proven.
            return replace(receipt, joined=True)
        return receipt


@dataclass
class _Tries:
    """One portfolio's tries so far: calls to the API and retried reads of the key."""

    count: int = 0
    last_error: TriggerError | None = None
    key_refreshed: bool = False  # the one refetch of a refused key was made
    refresh_key: bool = False  # the next try reads the key afresh


@dataclass
class _Tally:
    """What the attempts for one portfolio have cost so far."""

    record: Attempts
    # When earlier holders of this delivery may have started a rebalance (recorded by the guard,
    # or carried by a dead letter): looked at once, before the first attempt; carried on only
    # if they could not be.
    inherited: tuple[Window, ...] = ()
    # When this invocation's attempts whose answers prove nothing were sent and answered.
    own: Window | None = None
    # The windows not yet looked at by the Reconciler: the inherited ones, then from this
    # invocation's first such attempt on, open-ended (a slow attempt may still be starting its
    # rebalance after we stopped waiting for its answer). Never reopened to an inherited start.
    unchecked: tuple[Window, ...] = ()
    attempts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    # Attempts whose answers prove nothing (lost, or a 5xx): each may have started a rebalance.
    maybe_delivered: int = 0
    last_wait_seconds: float = 0.0  # how long the last attempt that proves nothing waited
    first_sent_at: float | None = None  # when this holder's first request left
    recorded: bool = False  # the guard knows that this holder sends
    # When the earliest inherited window opened: kept once they are looked at and dropped, so
    # that a rebalance an earlier holder of this delivery started is never called "joined".
    inherited_since: float = float("inf")

    def __post_init__(self) -> None:
        self.unchecked = self.inherited
        self.inherited_since = min((w.after for w in self.inherited), default=float("inf"))

    def record_sending(self) -> IdempotencyUnavailableError | None:
        """Once, before the first request leaves: the guard's record that it may have acted."""
        if self.recorded:
            return None
        try:
            self.record.sending()
        except IdempotencyUnavailableError as exc:
            return exc
        self.recorded = True
        return None

    @property
    def earliest_attempt(self) -> float:
        """When the first attempt of this delivery that may have reached Glider left."""
        first = self.first_sent_at if self.first_sent_at is not None else float("inf")
        return min(self.inherited_since, first)

    def looked(self, *, read: bool) -> None:
        if read and self.unchecked == self.inherited:
            self.inherited = ()  # listed, nothing in them: the earlier attempts started nothing
        self.unchecked = ()

    def uncertain_attempt(self, sent_at: float, answered_at: float) -> None:
        self.own = Window(sent_at, answered_at).joined(self.own)
        self.unchecked = (Window(self.own.after),)
        self.last_wait_seconds = max(0.0, answered_at - sent_at)

    @property
    def since(self) -> tuple[Window, ...]:
        """What a later delivery of this portfolio must look at (closed windows only)."""
        return self.inherited if self.own is None else (*self.inherited, self.own)

    def triggered(self, request: TriggerRequest, receipt: Receipt) -> Triggered:
        # Sent while earlier holders' windows stayed unresolved: each may have started one too
        # (whatever this holder's own attempts then found).
        earlier = len(self.inherited) if self.attempts else 0
        return Triggered(
            request,
            receipt,
            self.attempts,
            tuple(self.latencies_ms),
            # A rebalance in flight since before them: the lost answers' attempts joined it too.
            maybe_delivered_attempts=0 if receipt.joined else self.maybe_delivered + earlier,
        )

    def failed(self, request: TriggerRequest, error: TriggerError) -> Failed:
        return Failed(
            request,
            error,
            classify(error),
            self.attempts,
            tuple(self.latencies_ms),
            maybe_delivered_attempts=self.maybe_delivered,
            uncertain=self.since,
        )
