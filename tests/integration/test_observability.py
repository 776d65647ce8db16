"""What an operator sees: structured logs per portfolio, EMF metrics, and connection reuse."""

from __future__ import annotations

from collections.abc import Callable

from local.fixtures.delivery import Story
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator


def test_each_outcome_is_one_json_log_line_with_request_and_portfolio_ids(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.script("port_def456", Fault.error(404, "API_200", "Portfolio not found"))

    story = deliver({"portfolioIds": ["port_abc123", "port_def456"]})

    assert sorted(log["portfolio_id"] for log in story.outcomes) == ["port_abc123", "port_def456"]
    triggered, failed = story.of("port_abc123"), story.of("port_def456")
    [rebalance] = emulator.rebalances
    assert triggered["rebalance_id"] == rebalance.rebalance_id
    assert triggered["schedule_id"] == rebalance.schedule_id
    assert triggered["glider_request_id"] == rebalance.request_id
    assert triggered["glider_correlation_id"] == rebalance.correlation_id
    assert triggered["function_request_id"]  # the Lambda request id, from the context
    assert failed["level"] == "WARNING"
    assert failed["action"] == "dead-lettered"
    assert failed["http_status"] == 404
    assert failed["api_error_code"] == "API_200"
    assert failed["glider_request_id"].startswith("req_")


def test_metrics_are_emitted_as_emf(
    deliver: Callable[..., Story], function: LocalFunction, emulator: GliderEmulator
) -> None:
    emulator.script("port_def456", Fault.error(503, "API_000", "down"))
    deliver({"portfolioIds": ["port_abc123", "port_def456", "port_gone"]})

    values: dict[str, list[float]] = {}
    failure_classes = set()
    for record in function.metrics:
        for definition in record["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                value = record[metric["Name"]]
                values.setdefault(metric["Name"], []).extend(
                    value if isinstance(value, list) else [value]
                )
        if "FailureClass" in record:
            failure_classes.add(record["FailureClass"])
        assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "GliderRebalanceTrigger"

    # Queued by the event's invocation, each received once from the work queue: the base the
    # outcomes add up to (two triggered, one dead-lettered).
    assert values["PortfoliosQueued"] == [3]
    assert sum(values["PortfolioIdsReceived"]) == 3
    assert values["RebalancesTriggered"] == [1, 1]
    assert values["DeadLettered"] == [1]
    assert values["TriggerFailures"] == [1]
    assert failure_classes == {"permanent"}
    assert len(values["GliderApiLatency"]) == 4  # one per attempt: 1 + 2 + 1


def test_keep_alive_connections_are_reused_across_warm_invocations(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    deliver({"portfolioIds": ["port_abc123", "port_def456"]})
    opened = emulator.connections_opened
    deliver({"portfolioId": "port_ghi789"})

    assert len(emulator.rebalances) == 3
    assert 1 <= opened <= 2  # at most one per worker in use
    assert emulator.connections_opened == opened  # the next invocation opened none


def test_workers_run_in_parallel_but_never_open_more_connections_than_workers(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
) -> None:
    function = start_function(MAX_CONCURRENCY="4")
    ids = [f"port_p{n:02d}" for n in range(24)]
    for portfolio_id in ids:
        emulator.add_portfolio(portfolio_id)
    emulator.set_latency(0.05)

    story = deliver({"portfolioIds": ids}, function=function)

    assert story.triggered == 24
    assert 1 < emulator.connections_opened <= 4
