"""X-Ray tracing, for TRACING=Active only: a subsegment per Glider call and per AWS call.

Powertools' Tracer patches botocore, so every Secrets Manager, DynamoDB, SQS and EventBridge
call gets its subsegment; `TracedApi` wraps the Glider adapter in one per call, annotated with
the portfolio id and the API version (never the key: it is not an argument of any annotation,
and the HTTP call itself is not patched, so no header is recorded). composition.py imports
this module only when tracing is on: the X-Ray SDK costs cold-start time (`make bench`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Tracer

from glider_trigger.domain.models import ApiKey, FollowUp, RebalanceState, Receipt, TriggerRequest
from glider_trigger.domain.ports import RebalancingApi, RecentRebalances


def tracer(service: str) -> Tracer:
    """The tracer, with botocore patched before the first AWS client is built (AwsClients
    builds them on first use)."""
    return Tracer(service=service, patch_modules=("botocore",))


class TracedApi:
    """A RebalancingApi whose every call is an X-Ray subsegment."""

    def __init__(self, api: RebalancingApi, tracing: Tracer) -> None:
        self._api = api
        self._tracer = tracing

    @property
    def worst_case_seconds(self) -> float:
        return self._api.worst_case_seconds

    @property
    def version(self) -> str:
        return self._api.version

    def trigger(self, request: TriggerRequest, api_key: ApiKey) -> Receipt:
        with self._subsegment("glider.trigger", request.portfolio_id):
            return self._api.trigger(request, api_key)

    def recent_rebalances(
        self, request: TriggerRequest, api_key: ApiKey, since: float, *, longer: bool = False
    ) -> RecentRebalances:
        with self._subsegment("glider.recent_rebalances", request.portfolio_id):
            return self._api.recent_rebalances(request, api_key, since, longer=longer)

    def rebalance_state(self, follow_up: FollowUp, api_key: ApiKey) -> RebalanceState:
        with self._subsegment("glider.rebalance_state", follow_up.portfolio_id):
            return self._api.rebalance_state(follow_up, api_key)

    @contextmanager
    def _subsegment(self, name: str, portfolio_id: str) -> Iterator[None]:
        with self._tracer.provider.in_subsegment(name) as subsegment:
            subsegment.put_annotation("portfolio_id", portfolio_id)
            subsegment.put_annotation("glider_api_version", self._api.version)
            yield
