"""The chaos run's figures (`ChaosReport`): what passes, the printed table, the JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from local.chaos.faults import (
    AWS_FAULTS,
    GLIDER_FAULTS,
    SCENARIO_FAULTS,
    STORE_FAULT,
    STORE_FAULT_LABEL,
)
from local.chaos.pacing import PacingCheck

IN_WINDOW = "redeliveries inside a crashed batch's in-progress window"


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
    lost: int  # deliveries owed a rebalance that got none and are nowhere (not DLQ, not pending)
    doubled_by_redelivery: int  # ids triggered again after a trigger the function saw succeed
    doubled_extra_rebalances: int
    unpreventable_repeats: int  # extra rebalances after a lost or too-slow answer
    unpreventable_flagged: int  # ... of which the function logged maybe_delivered: true
    rebalances: int
    # ... of the repeats, those of ids whose only such faults were lost answers or 5xx after
    # Glider acted: reconciling finds their rebalance before sending again (should be 0).
    unpreventable_after_reconcilable: int = 0
    after_reconcilable_ids: list[str] = field(default_factory=list)
    reconciled: int = 0  # triggers found among recent rebalances, not sent again
    # Rebalances the function saw triggered (with an id), followed to their outcome: those with
    # no final outcome and those with more than one (both must be 0), and the outcomes.
    followed: int = 0
    unfollowable: int = 0  # triggered, which rebalance unknown: `unknown` at once
    followed_without_outcome: int = 0
    followed_with_outcomes_twice: int = 0
    final_outcomes: dict[str, int] = field(default_factory=dict)
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
    api_version: str = "v1"  # the Glider API the function called
    joined_in_flight: int = 0  # triggers Glider answered with the rebalance in flight (v2)
    # Repeats no client can prevent that the function did not announce (maybe_delivered_attempts
    # on the outcome of the delivery that sent them): extra rebalances, and their ids.
    unflagged_repeats: int = 0
    unflagged_ids: list[str] = field(default_factory=list)
    # The pacing check (pacing.py): requests that arrived over the ceiling, and the check.
    over_rate_ceiling: int = 0
    pacing: PacingCheck | None = None
    paced: bool = True  # the function ran with RATE_LIMIT_PER_SECOND
    # Deliveries of a shared portfolio satisfied by another's rebalance in flight (v2).
    joined_deliveries: int = 0
    # The phase: portfolios delivered twice under Glider's cooldown (by spacing), the triggers
    # the cooldown refused, their rebalances; lost answers more than a page down (the other
    # client's rebalances, the function's lookups cut off, found, sent again).
    shared_portfolios: int = 0
    shared_deliveries: int = 0
    shared_spacings: dict[str, int] = field(default_factory=dict)
    shared_refused: int = 0
    shared_rebalances: int = 0
    deep_portfolios: int = 0
    deep_other_rebalances: int = 0
    deep_cut_off: int = 0
    deep_found: int = 0
    deep_resent: int = 0
    # Glider's clock minus ours: the run's first half, its second half and the phase, the replay.
    clock_offsets: list[float] = field(default_factory=list)
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
    def doubled(self) -> int:
        """Ids doubled by a redelivery or retry, or by the replay of a letter the function
        wrote or of a destination record (whose deliveries it can recognise)."""
        return self.doubled_by_redelivery + self.replay_doubled_guarded

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.doubled == 0
            and self.unflagged_repeats == 0
            and self.over_rate_ceiling == 0
            and self.pending == 0
            and self.unpreventable_after_reconcilable == 0
            and self.followed_without_outcome == 0
            and self.followed_with_outcomes_twice == 0
        )

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["triggered_and_dead_lettered"] = self.triggered_and_dead_lettered
        document["doubled"] = self.doubled
        document["passed"] = self.passed
        return document

    def headline(self) -> str:
        """The four counts that must be 0, and the v2 joins, on one line."""
        return (
            f"lost {self.lost}, doubled {self.doubled}, unflagged repeats "
            f"{self.unflagged_repeats}, requests over the rate ceiling {self.over_rate_ceiling}"
            + (f", joined {self.joined_deliveries}" if self.api_version == "v2" else "")
        )

    def _pacing_row(self) -> str:
        check = self.pacing
        if check is None:
            return str(self.over_rate_ceiling)
        row = (
            f"{check.over} of {check.requests} requests to Glider (ceiling per execution "
            f"environment: {check.rate:g}/s, burst {check.capacity:g} with a "
            f"{check.allowance_seconds:g} s allowance, {check.needed_allowance_seconds:g} s "
            f"needed; {check.environments} environments; peak {check.peak_per_second} in a "
            "second)"
        )
        return row if self.paced else row + ", the function ran WITHOUT RATE_LIMIT_PER_SECOND"

    def _phase_rows(self) -> list[tuple[str, str]]:
        offsets = ", ".join(f"{offset:+g} s" for offset in self.clock_offsets)
        return [
            ("several deliveries of one portfolio", f"{self.shared_portfolios} portfolios, "
             f"{self.shared_deliveries} deliveries"
             + (f" ({listing(self.shared_spacings)})" if self.shared_spacings else "")),
            ("  triggers refused by Glider's cooldown", str(self.shared_refused)),
            ("  deliveries joined to another's rebalance in flight (v2)",
             str(self.joined_deliveries)),
            ("  rebalances", str(self.shared_rebalances)),
            ("lost answers more than a page down", f"{self.deep_portfolios} portfolios, "
             f"{self.deep_other_rebalances} rebalances by another client after them"),
            ("  lookups cut off (RECENT_LIST_CUT_OFF)", str(self.deep_cut_off)),
            ("  found anyway, not sent again", str(self.deep_found)),
            ("  sent again (must be flagged)", str(self.deep_resent)),
            ("Glider's clock minus ours (run, its 2nd half, replay)", offsets),
        ]  # fmt: skip

    def table(self) -> str:
        both = (
            f"{self.triggered_and_dead_lettered} (response lost: {len(self.both_response_lost)}"
            f", only in a whole-input record: {len(self.both_whole_input)}, other: "
            f"{len(self.both_other)})"
        )
        doubled = f"{self.doubled_by_redelivery} ids, {self.doubled_extra_rebalances} extra"
        if self.doubled_by_cause:
            doubled += f" ({listing(self.doubled_by_cause)})"
        replay_doubled = f"{self.replay_doubled} ids, {self.replay_doubled_extra_rebalances} extra"
        if self.replay_doubled_by_kind:
            replay_doubled += f" ({listing(self.replay_doubled_by_kind)})"
        replayed = sum(self.replayed.values())
        rows: list[tuple[str, str]] = [
            ("Glider API", self.api_version),
            ("ids in", f"{self.ids_in} ({self.ids_via_sqs} in SQS messages, "
             f"{self.ids_via_events} in EventBridge/Scheduler events)"),
            ("triggered", str(self.triggered)),
            ("in the DLQ (after the replay)", str(self.dead_lettered)),
            ("  dead-lettered only", str(self.dead_lettered_only)),
            ("  triggered and dead-lettered", both),
            ("still pending", str(self.pending)),
            ("LOST (must be 0)", str(self.lost)),
            ("DOUBLED by a redelivery/retry (must be 0)", doubled),
            ("UNFLAGGED REPEATS (must be 0)", str(self.unflagged_repeats)),
            ("REQUESTS OVER THE RATE CEILING (must be 0)", self._pacing_row()),
            ("repeats no client can prevent", f"{self.unpreventable_repeats} (the function "
             f"flagged maybe_delivered_attempts on {self.unpreventable_flagged})"),
            ("  after a lost answer or a 5xx Glider acted on", str(
                self.unpreventable_after_reconcilable)),
            ("  after an answer slower than the read timeout", str(
                self.unpreventable_repeats - self.unpreventable_after_reconcilable)),
            ("lost answers reconciled (found, not sent again)", str(self.reconciled)),
            ("repeats Glider joined to the rebalance in flight (v2)",
             str(self.joined_in_flight)),
            ("rebalances followed to their outcome", f"{self.followed}"
             + (f" ({listing(self.final_outcomes)})" if self.final_outcomes else "")),
            ("  WITHOUT a final outcome (must be 0)", str(self.followed_without_outcome)),
            ("triggered, which rebalance unknown (outcome unknown at once)",
             str(self.unfollowable)),
            ("  with MORE than one final outcome (must be 0)",
             str(self.followed_with_outcomes_twice)),
            ("rebalances in the emulator (not the other client's)", str(self.rebalances)),
            (IN_WINDOW, str(self.crash_retries_in_window)),
            ("DLQ replayed at the end", f"{replayed} messages"
             + (f" ({listing(self.replayed)})" if replayed else "")),
            ("  ids the replay triggered", str(self.replay_triggered)),
            ("  REPLAY DOUBLED by letters/destination records (must be 0)",
             str(self.replay_doubled_guarded)),
            ("  triggered again by the replay, every kind", replay_doubled),
            ("  replay repeats no client can prevent", str(self.replay_unpreventable)),
            *self._phase_rows(),
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
            ("repeated without a flag", self.unflagged_ids),
            ("repeated after a lost answer it could have found", self.after_reconcilable_ids),
            ("triggered again by the replay", self.replay_doubled_ids),
            ("triggered and dead-lettered (other)", self.both_other),
            ("pending", self.pending_ids),
        ):
            if ids:
                lines.append(f"{title}: {sample(ids)}")
        if self.pacing is not None and self.pacing.over_at:
            times = [f"{arrived:.3f}" for arrived in self.pacing.over_at]
            lines.append(f"over the rate ceiling at (time.time()): {sample(times)}")
        lines += self.notes
        lines.append(("PASS: " if self.passed else "FAIL: ") + self.headline())
        return "\n".join(lines)


def sample(ids: list[str], limit: int = 12) -> str:
    shown = ", ".join(ids[:limit])
    return f"{shown}, ... ({len(ids)} in all)" if len(ids) > limit else shown


def listing(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in counts.items())
