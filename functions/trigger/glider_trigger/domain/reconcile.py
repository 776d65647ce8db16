"""Before sending a trigger again after an answer that proves nothing (a lost answer, a 5xx),
look for the rebalance that attempt may have started among the portfolio's recent ones.

A rebalance listed as started inside the attempt's window (widened by CLOCK_SKEW_SECONDS on each
side, for the difference between our clock and Glider's) is taken as that attempt's: the outcome
is `triggered`, reconciled, and nothing is sent again. Where the API shows only the latest
rebalance (v2), one at or after the window's start closes it: a rebalance has run since. When
the list cannot be read, the trigger is sent again, as without reconciling; when the key may
not read it (FORBIDDEN), reconciling stops in this execution environment, with one warning.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

from glider_trigger.domain.errors import (
    ApiError,
    FailureClass,
    ListCutOffError,
    TriggerError,
    classify,
)
from glider_trigger.domain.models import ApiKey, Receipt, TriggerRequest, Window
from glider_trigger.domain.ports import (
    Clock,
    Deadline,
    Pacing,
    RebalancingApi,
    RecentRebalances,
    ReconcileReports,
    StartedRebalance,
)
from glider_trigger.domain.slots import CallSlots

# Our clock and Glider's may differ by this much; a listed start this far outside the window
# still counts. Small on purpose: a wider window could take another delivery's rebalance for ours.
CLOCK_SKEW_SECONDS: Final = 5.0
# A rebalance Glider answers a repeat with (v2 collapses a repeat into the one in flight) was
# joined, not started by this delivery, only if submitted this long before the delivery's first
# attempt: more than what is left of a clock difference once Glider's times are read on our
# clock (outbound/glider/http.py), with room for a Glider clock read wrong by a minute.
JOINED_BEFORE_SECONDS: Final = 90.0
FORBIDDEN: Final = "FORBIDDEN"


class Reconciler:
    def __init__(
        self,
        api: RebalancingApi,
        telemetry: ReconcileReports,
        *,
        clock: Clock,
        pacing: Pacing | None = None,
    ) -> None:
        self._api = api
        self._slots = CallSlots(api, pacing)
        self._telemetry = telemetry
        self._clock = clock
        self._forbidden = False
        self._lock = threading.Lock()

    def find(
        self,
        request: TriggerRequest,
        api_key: ApiKey,
        windows: Sequence[Window],
        *,
        deadline: Deadline,
    ) -> Receipt | bool | TriggerError:
        """The rebalance an attempt in one of `windows` started, if the API lists one; else True
        when the list was read (nothing started in them), False when it could not be; a
        NotAttemptedError when the look got no slot before the deadline (nothing was asked), and
        a systemic ApiError that every other call would meet too (a route that does not exist,
        a refused key): nothing is sent again, and the invocation halts with the work kept."""
        if self._forbidden:
            return False
        not_sent = self._slots.take(deadline)
        if not_sent is not None:
            return not_sent
        since = min(window.after for window in windows) - CLOCK_SKEW_SECONDS
        looked = self._look(request, api_key, since, windows, deadline)
        if not isinstance(looked, tuple):
            return looked
        recent, found = looked
        if found is not None:
            return found
        if not recent.complete:
            # Cut off before the attempt's time: "nothing listed" proves nothing about it.
            self._telemetry.reconcile_failed(
                request.portfolio_id,
                ListCutOffError(
                    "the recent rebalances listed do not reach back to the attempt's time"
                ),
            )
            return False
        return True

    def _look(
        self,
        request: TriggerRequest,
        api_key: ApiKey,
        since: float,
        windows: Sequence[Window],
        deadline: Deadline,
    ) -> tuple[RecentRebalances, Receipt | None] | bool | TriggerError:
        """The list read (and what it shows started in `windows`), or why it could not be."""
        recent = self._listing(request, api_key, since, longer=False)
        if not isinstance(recent, RecentRebalances):
            return recent
        found = self._started(recent, windows)
        if found is None and recent.more and self._slots.take(deadline) is None:
            # Cut off before the window: one more call, with a slot of its own, for the longest
            # list the API gives. Without a slot, the short list is all there is.
            recent = self._listing(request, api_key, since, longer=True)
            if not isinstance(recent, RecentRebalances):
                return recent
            found = self._started(recent, windows)
        return recent, found

    def _started(self, recent: RecentRebalances, windows: Sequence[Window]) -> Receipt | None:
        """The receipt of a listed rebalance started in one of `windows`, if one was."""
        now = self._clock.now()
        for window in windows:
            found = _started_in(recent.listed, window, now)
            if found is not None:
                return Receipt(
                    rebalance_id=found.rebalance_id,
                    schedule_id=None,
                    request_id=None,
                    correlation_id=None,
                    reconciled=True,
                )
        return None

    def _listing(
        self, request: TriggerRequest, api_key: ApiKey, since: float, *, longer: bool
    ) -> RecentRebalances | bool | TriggerError:
        """The list, or False when it could not be read, or the systemic error that stops."""
        try:
            return self._api.recent_rebalances(request, api_key, since, longer=longer)
        except Exception as exc:  # noqa: BLE001 - a bug here must not hide a sent trigger
            error = (
                exc
                if isinstance(exc, TriggerError)
                else TriggerError(f"unexpected {type(exc).__name__}")
            )
        if isinstance(error, ApiError) and error.reason == FORBIDDEN:
            self._stop(error)
            return False
        if classify(error) is FailureClass.SYSTEMIC:
            return error  # the trigger fails with it: logged and counted there, once
        self._telemetry.reconcile_failed(request.portfolio_id, error)
        return False

    def _stop(self, error: ApiError) -> None:
        with self._lock:
            if self._forbidden:
                return
            self._forbidden = True
        self._telemetry.reconcile_forbidden(error)


def _started_in(
    listed: Sequence[StartedRebalance], window: Window, now: float
) -> StartedRebalance | None:
    earliest = window.after - CLOCK_SKEW_SECONDS
    latest = (now if window.before is None else window.before) + CLOCK_SKEW_SECONDS
    for rebalance in listed:
        started = rebalance.started_at
        if (
            started is not None
            and earliest <= started
            and (started <= latest or rebalance.latest_only)
        ):
            return rebalance
    return None
