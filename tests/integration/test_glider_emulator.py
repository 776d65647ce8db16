"""The local Glider API emulator, exercised over real HTTP with urllib3 (no mocks)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import urllib3
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError

from local.fixtures.glider_emulator import Fault, GliderEmulator, Rebalance

API_KEY = "test-key-s3cr3t-0123456789"
PORTFOLIO = "port_abc123"
NO_SCHEDULE = "port_noschedule"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ENVELOPE_KEYS = {"success", "error", "correlationId", "requestId", "timestamp"}

MakeEmulator = Callable[..., GliderEmulator]


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    started: list[GliderEmulator] = []

    def make(**kwargs: Any) -> GliderEmulator:
        emulator = GliderEmulator([API_KEY], **kwargs)
        emulator.add_portfolio(PORTFOLIO)
        emulator.add_portfolio(NO_SCHEDULE, has_schedule=False)
        started.append(emulator.start())
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: MakeEmulator) -> GliderEmulator:
    return make_emulator()


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0))
    yield pool
    pool.clear()


def trigger_url(emulator: GliderEmulator, portfolio_id: str = PORTFOLIO) -> str:
    segment = quote(portfolio_id, safe="")
    return f"{emulator.base_url}/v1/portfolio/{segment}/rebalance/schedule/trigger"


def trigger(
    http: urllib3.PoolManager,
    emulator: GliderEmulator,
    portfolio_id: str = PORTFOLIO,
    *,
    body: bytes = b'{"skipScheduleValidation": false}',
    key: str | None = API_KEY,
    method: str = "POST",
    **kwargs: Any,
) -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-KEY"] = key
    return http.request(
        method, trigger_url(emulator, portfolio_id), body=body, headers=headers, **kwargs
    )


def assert_error(response: urllib3.BaseHTTPResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    payload: dict[str, Any] = response.json()
    assert set(payload) == ENVELOPE_KEYS
    assert payload["success"] is False
    assert payload["error"]["code"] == code
    assert isinstance(payload["error"]["message"], str)
    assert payload["error"]["details"] == {}
    assert payload["correlationId"].startswith("corr_")
    assert payload["requestId"].startswith("req_")
    assert TIMESTAMP.match(payload["timestamp"])
    assert API_KEY not in response.data.decode()
    return payload


def assert_rate_limit_headers(response: urllib3.BaseHTTPResponse) -> None:
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert response.headers[name].isdigit(), name
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())


def assert_429(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    assert response.status == 429
    retry_after = int(response.headers["Retry-After"])
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"error", "message", "retryAfter", "correlationId", "requestId"}
    assert payload["error"] == "Too Many Requests"
    assert payload["retryAfter"] == retry_after
    assert f"Try again in {retry_after} seconds" in payload["message"]
    assert_rate_limit_headers(response)
    return payload


# --------------------------------------------------------------------------- the happy path


def test_success_body_follows_the_contract(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    response = trigger(http, emulator)

    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert_rate_limit_headers(response)
    payload = response.json()
    assert set(payload) == {"success", "data", "correlationId", "requestId", "timestamp"}
    assert payload["success"] is True
    data = payload["data"]
    assert set(data) == {
        "portfolioId",
        "scheduleId",
        "rebalanceId",
        "status",
        "message",
        "triggerTime",
    }
    assert data["portfolioId"] == PORTFOLIO
    assert data["status"] == "triggered"
    assert data["message"] == "Portfolio rebalance triggered successfully"
    assert re.fullmatch(r"rebal_[0-9a-f]+", data["rebalanceId"])
    assert re.fullmatch(r"sched_[0-9a-f]+", data["scheduleId"])
    assert isinstance(data["triggerTime"], int)
    assert abs(data["triggerTime"] - time.time()) < 5
    assert re.fullmatch(r"corr_[0-9a-f]+", payload["correlationId"])
    assert re.fullmatch(r"req_[0-9a-f]+", payload["requestId"])
    assert TIMESTAMP.match(payload["timestamp"])

    [rebalance] = emulator.rebalances
    assert rebalance.portfolio_id == PORTFOLIO
    assert rebalance.rebalance_id == data["rebalanceId"]
    assert rebalance.schedule_id == data["scheduleId"]
    assert rebalance.request_id == payload["requestId"]
    assert rebalance.correlation_id == payload["correlationId"]
    assert rebalance.skip_schedule_validation is False
    assert rebalance.trigger_time == data["triggerTime"]
    assert emulator.rebalances_for(PORTFOLIO) == [rebalance]
    assert emulator.rebalances_for(NO_SCHEDULE) == []

    [request] = emulator.requests
    assert request.method == "POST"
    assert request.path == f"/v1/portfolio/{PORTFOLIO}/rebalance/schedule/trigger"
    assert request.portfolio_id == PORTFOLIO
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["content-type"] == "application/json"
    assert request.body == b'{"skipScheduleValidation": false}'
    assert request.status == 200
    assert abs(request.received_at - time.time()) < 5
    assert API_KEY not in repr(request)


def test_ids_are_unique_and_schedule_id_is_stable(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    first = trigger(http, emulator).json()
    second = trigger(http, emulator).json()
    assert first["data"]["rebalanceId"] != second["data"]["rebalanceId"]
    assert first["requestId"] != second["requestId"]
    assert first["correlationId"] != second["correlationId"]
    assert first["data"]["scheduleId"] == second["data"]["scheduleId"]
    assert len(emulator.rebalances) == 2


@pytest.mark.parametrize("body", [b"", b"{}", b"  "])
def test_missing_body_means_skip_false(
    emulator: GliderEmulator, http: urllib3.PoolManager, body: bytes
) -> None:
    assert trigger(http, emulator, body=body).status == 200
    assert trigger(http, emulator, NO_SCHEDULE, body=body).status == 400


def test_header_name_is_case_insensitive_and_query_is_ignored(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    response = http.request(
        "POST",
        trigger_url(emulator) + "?foo=bar",
        body=b"{}",
        headers={"x-api-key": API_KEY},
    )
    assert response.status == 200
    assert emulator.requests[0].portfolio_id == PORTFOLIO


def test_percent_encoded_portfolio_id_is_decoded(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    odd_id = "port/1 ä?#%"
    emulator.add_portfolio(odd_id)
    response = trigger(http, emulator, odd_id)
    assert response.status == 200
    assert response.json()["data"]["portfolioId"] == odd_id
    assert emulator.requests[0].portfolio_id == odd_id
    assert emulator.requests[0].path.startswith("/v1/portfolio/port%2F1%20")
    assert emulator.rebalances_for(odd_id)


# --------------------------------------------------------------------------- errors


def test_missing_api_key_is_401_api_101(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    payload = assert_error(trigger(http, emulator, key=None), 401, "API_101")
    assert payload["error"]["message"] == "API key missing"
    assert emulator.rebalances == []


def test_invalid_api_key_is_401_api_102_and_never_echoed(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    response = trigger(http, emulator, key="wrong-key-value")
    payload = assert_error(response, 401, "API_102")
    assert payload["error"]["message"] == "Invalid API key"
    assert b"wrong-key-value" not in response.data
    assert emulator.rebalances == []


def test_key_rotation_stops_old_key_at_once(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    assert trigger(http, emulator).status == 200
    emulator.set_api_keys(["rotated-key"])
    assert_error(trigger(http, emulator), 401, "API_102")
    assert trigger(http, emulator, key="rotated-key").status == 200
    assert len(emulator.rebalances) == 2


def test_unknown_portfolio_is_404_api_200(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    payload = assert_error(trigger(http, emulator, "port_unknown"), 404, "API_200")
    assert payload["error"]["message"] == "Portfolio not found"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/portfolio/x/rebalance/schedule/trigger/",
        "/v1/portfolio//rebalance/schedule/trigger",
        "/v1/portfolio/a/b/rebalance/schedule/trigger",
        "/v1/portfolio/x/rebalance/status/rebal_1/more",
        "/",
    ],
)
def test_other_paths_get_a_routers_404_not_gliders_envelope(
    emulator: GliderEmulator, http: urllib3.PoolManager, path: str
) -> None:
    # What a web framework answers for a route it does not have: JSON, but not Glider's.
    response = http.request("POST", emulator.base_url + path, headers={"X-API-KEY": API_KEY})
    assert response.status == 404
    assert response.json() == {
        "message": f"Route POST:{path} not found",
        "error": "Not Found",
        "statusCode": 404,
    }
    assert emulator.requests[0].portfolio_id is None
    assert emulator.requests[0].status == 404


def test_portfolio_without_schedule_needs_skip_schedule_validation(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    payload = assert_error(trigger(http, emulator, NO_SCHEDULE), 400, "API_002")
    assert "schedule" in payload["error"]["message"]
    assert emulator.rebalances == []

    response = trigger(http, emulator, NO_SCHEDULE, body=b'{"skipScheduleValidation": true}')
    assert response.status == 200
    [rebalance] = emulator.rebalances
    assert rebalance.portfolio_id == NO_SCHEDULE
    assert rebalance.skip_schedule_validation is True


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"null",
        b'"skipScheduleValidation"',
        b'{"skipScheduleValidation": "true"}',
        b'{"skipScheduleValidation": 1}',
        b'{"skipScheduleValidation": null}',
        b"\xff\xfe",
    ],
)
def test_bad_body_is_400_api_002(
    emulator: GliderEmulator, http: urllib3.PoolManager, body: bytes
) -> None:
    payload = assert_error(trigger(http, emulator, body=body), 400, "API_002")
    assert payload["error"]["message"] == "Invalid request"
    assert emulator.rebalances == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "PURGE"])
def test_other_methods_on_the_trigger_path_are_405_api_003(
    emulator: GliderEmulator, http: urllib3.PoolManager, method: str
) -> None:
    response = trigger(http, emulator, method=method)
    assert_error(response, 405, "API_003")
    assert response.headers["Allow"] == "POST"
    assert emulator.requests[0].method == method
    assert emulator.requests[0].status == 405


def test_head_is_405_without_a_body(emulator: GliderEmulator, http: urllib3.PoolManager) -> None:
    response = trigger(http, emulator, method="HEAD", body=b"")
    assert response.status == 405
    assert response.data == b""
    assert int(response.headers["Content-Length"]) > 0


def test_garbage_on_the_wire_gets_an_envelope_and_the_server_survives(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    host, port = emulator.base_url.removeprefix("http://").split(":")
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"POST /v1/portfolio/p/rebalance/schedule/trigger HTTP/1.1\r\n"
        b"Host: x\r\nContent-Length: abc\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=2) as conn:
            conn.sendall(raw)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert b"Content-Type: application/json" in head
        assert json.loads(body)["error"]["code"] == "API_002"
    assert trigger(http, emulator).status == 200


# --------------------------------------------------------------------------- scripted faults


def test_error_fault_is_used_once_then_normal_service(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.error(503, "API_000", "Service unavailable"))
    payload = assert_error(trigger(http, emulator), 503, "API_000")
    assert payload["error"]["message"] == "Service unavailable"
    assert emulator.rebalances == []
    assert trigger(http, emulator).status == 200


def test_a_key_quoting_fault_answers_an_error_that_quotes_the_key_received(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    # For the function's canary tests: the one answer that carries a key is one a test asked for.
    emulator.script(PORTFOLIO, Fault.quoting_key(403, "API_104"))
    response = trigger(http, emulator)
    assert response.status == 403
    error = response.json()["error"]
    assert error["code"] == "API_104"
    assert error["message"] == f"Permission denied for API key {API_KEY}"
    assert error["details"] == {"apiKey": API_KEY}
    assert emulator.rebalances == []
    assert_error(trigger(http, emulator, key="bad"), 401, "API_102")  # never the key refused
    assert trigger(http, emulator).status == 200


def test_faults_are_consumed_in_order_per_portfolio(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(
        PORTFOLIO,
        Fault.error(500, "API_000", "boom"),
        Fault.error(403, "API_104", "Permission denied"),
    )
    other = trigger(http, emulator, NO_SCHEDULE, body=b'{"skipScheduleValidation":true}')
    assert other.status == 200
    assert_error(trigger(http, emulator), 500, "API_000")
    assert_error(trigger(http, emulator), 403, "API_104")
    assert trigger(http, emulator).status == 200


def test_faults_wait_for_an_authorised_request(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.error(500, "API_000", "boom"))
    assert_error(trigger(http, emulator, key="bad"), 401, "API_102")
    assert_error(trigger(http, emulator), 500, "API_000")


def test_rate_limited_fault_uses_the_non_envelope_429_body(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.rate_limited(retry_after=42))
    response = trigger(http, emulator)
    payload = assert_429(response)
    assert payload["retryAfter"] == 42
    assert response.headers["Retry-After"] == "42"
    assert payload["correlationId"].startswith("corr_")
    assert payload["requestId"].startswith("req_")
    assert emulator.rebalances == []


def test_slow_fault_exceeds_the_client_read_timeout(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.slow(1.0))
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        trigger(http, emulator, timeout=urllib3.Timeout(connect=2.0, read=0.2))
    assert time.monotonic() - started < 0.9


def test_slow_fault_then_answers_normally(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.slow(0.2))
    started = time.monotonic()
    assert trigger(http, emulator).status == 200
    assert time.monotonic() - started >= 0.2


def test_connection_reset_fault_gives_a_protocol_error(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.connection_reset())
    with pytest.raises(ProtocolError):
        trigger(http, emulator)
    assert emulator.rebalances == []
    assert emulator.requests[0].status is None
    assert trigger(http, emulator).status == 200


def test_malformed_fault_sends_the_raw_body(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(
        PORTFOLIO, Fault.malformed(502), Fault.malformed(200, b"{not json", "text/plain")
    )
    response = trigger(http, emulator)
    assert response.status == 502
    assert response.headers["Content-Type"] == "text/html"
    assert response.data == b"<html>oops</html>"
    assert_rate_limit_headers(response)
    response = trigger(http, emulator)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert response.data == b"{not json"
    assert emulator.rebalances == []


def test_lost_response_triggers_but_the_client_gets_an_error(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())
    with pytest.raises(ProtocolError):
        trigger(http, emulator)
    [rebalance] = emulator.rebalances
    assert rebalance.portfolio_id == PORTFOLIO
    assert emulator.requests[0].status is None
    # A retry triggers a second time: the API has no idempotency key.
    assert trigger(http, emulator).status == 200
    assert len(emulator.rebalances_for(PORTFOLIO)) == 2


# --------------------------------------------------------------------------- rate limits


def test_rate_limit_answers_429_with_retry_after(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator(rate_limit_per_second=0.5)  # burst of 1, then one every 2 s
    first = trigger(http, emulator)
    assert first.status == 200
    assert first.headers["X-RateLimit-Limit"] == "1"
    assert first.headers["X-RateLimit-Remaining"] == "0"
    second = trigger(http, emulator)
    payload = assert_429(second)
    assert 1 <= payload["retryAfter"] <= 2
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert len(emulator.rebalances) == 1


def test_rate_limit_burst_is_the_rate(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator(rate_limit_per_second=3)
    statuses = [trigger(http, emulator).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_cooldown_between_triggers_of_one_portfolio(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator(cooldown_seconds=30)
    assert trigger(http, emulator).status == 200
    payload = assert_429(trigger(http, emulator))
    assert 1 <= payload["retryAfter"] <= 30
    other = trigger(http, emulator, NO_SCHEDULE, body=b'{"skipScheduleValidation": true}')
    assert other.status == 200
    assert len(emulator.rebalances_for(PORTFOLIO)) == 1


def test_failed_trigger_does_not_start_the_cooldown(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator(cooldown_seconds=30)
    assert trigger(http, emulator, body=b"[]").status == 400
    assert trigger(http, emulator).status == 200


# --------------------------------------------------------------------------- lifecycle


def test_latency_is_applied(emulator: GliderEmulator, http: urllib3.PoolManager) -> None:
    emulator.set_latency(0.2)
    started = time.monotonic()
    assert trigger(http, emulator).status == 200
    assert time.monotonic() - started >= 0.2
    emulator.set_latency(0)


def test_keep_alive_reuses_one_connection(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    assert trigger(http, emulator).status == 200
    assert trigger(http, emulator, key="bad").status == 401
    assert trigger(http, emulator, "port_unknown").status == 404
    assert trigger(http, emulator, body=b"[]").status == 400
    assert trigger(http, emulator, method="GET").status == 405
    assert trigger(http, emulator).status == 200
    assert emulator.connections_opened == 1
    assert len(emulator.requests) == 6


def test_stop_is_prompt_with_an_idle_keep_alive_client(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator()
    assert trigger(http, emulator).status == 200  # the pool now holds an idle connection
    base_url = emulator.base_url
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 1.0
    emulator.stop()  # idempotent
    with pytest.raises(HTTPError):
        http.request("POST", base_url + "/", timeout=1.0)


def test_stop_is_prompt_during_a_slow_fault(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator()
    emulator.script(PORTFOLIO, Fault.slow(30))
    with pytest.raises(ReadTimeoutError):
        trigger(http, emulator, timeout=urllib3.Timeout(connect=2.0, read=0.1))
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 1.0


def test_context_manager_and_reset(http: urllib3.PoolManager) -> None:
    with GliderEmulator([API_KEY]) as emulator:
        emulator.add_portfolio(PORTFOLIO)
        emulator.script(PORTFOLIO, Fault.error(500, "API_000", "boom"))
        assert trigger(http, emulator, "other").status == 404
        emulator.reset()
        assert emulator.requests == []
        assert emulator.connections_opened == 0
        # The script was cleared; the portfolio and the key were kept.
        assert trigger(http, emulator).status == 200
        assert len(emulator.rebalances) == 1
        assert len(emulator.requests) == 1
    with pytest.raises(RuntimeError):
        _ = emulator.base_url


# --- the status endpoints --------------------------------------------------------------------


def status(
    http: urllib3.PoolManager, emulator: GliderEmulator, path: str = ""
) -> urllib3.BaseHTTPResponse:
    return http.request(
        "GET",
        f"{emulator.base_url}/v1/portfolio/{PORTFOLIO}/rebalance/status{path}",
        headers={"X-API-KEY": API_KEY},
    )


def test_a_triggered_rebalance_is_listed_newest_first_and_runs_to_completed(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_workflow_seconds(0.3)
    first = trigger(http, emulator).json()["data"]["rebalanceId"]
    second = trigger(http, emulator).json()["data"]["rebalanceId"]

    listed = status(http, emulator, "?limit=1").json()["data"]["recentWorkflows"]
    running = status(http, emulator, f"/{second}").json()["data"]
    time.sleep(0.35)
    done = status(http, emulator, f"/{second}").json()["data"]

    assert [w["workflowId"] for w in listed] == [second]
    assert listed[0]["startedAt"].endswith("Z")
    assert (running["status"], running["result"]) == ("running", None)
    assert done["status"] == "completed"
    assert done["result"]["status"] == "success"
    assert done["result"]["transactionHash"].startswith("0x")
    assert first != second
    assert [r.method for r in emulator.trigger_requests] == ["POST", "POST"]


def test_a_scripted_failure_ends_the_rebalance_failed_with_its_error(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.fail_next_rebalance(PORTFOLIO, "execution reverted")
    rebalance = trigger(http, emulator).json()["data"]["rebalanceId"]

    data = status(http, emulator, f"/{rebalance}").json()["data"]

    assert (data["status"], data["error"], data["result"]["status"]) == (
        "failed",
        {"message": "execution reverted"},
        "failed",
    )


def test_a_lost_answer_still_creates_the_listed_workflow(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.lost_response())
    with pytest.raises(urllib3.exceptions.ProtocolError):
        trigger(http, emulator, retries=False)

    [workflow] = status(http, emulator).json()["data"]["recentWorkflows"]

    assert workflow["workflowId"] == emulator.rebalances[0].rebalance_id


def test_status_faults_and_unknown_workflows_answer_like_the_api(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script_status(PORTFOLIO, Fault.error(503, "API_000", "down"))

    assert_error(status(http, emulator), 503, "API_000")
    assert_error(status(http, emulator, "/rebal_nope"), 404, "API_201")
    assert status(http, emulator).status == 200  # the scripted fault was used up


def test_a_v1_rebalance_also_has_a_v2_operation_id(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    rebalance_id = trigger(http, emulator).json()["data"]["rebalanceId"]
    [rebalance] = emulator.rebalances

    assert rebalance.rebalance_id == rebalance_id
    assert rebalance.api_version == "v1"
    assert re.fullmatch(rf"rebalance:{PORTFOLIO}:[0-9a-f]{{16}}%2F1", rebalance.operation_id)
    # Positional construction, as before the v2 fields, still works.
    old_style = Rebalance(PORTFOLIO, "rebal_1", "sched_1", "req_1", "corr_1", False, 1, 2.0)
    assert (old_style.operation_id, old_style.api_version) == ("", "v1")


def test_a_scripted_cancellation_shows_cancelled_without_a_transaction(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.fail_next_rebalance(PORTFOLIO, "cancelled by the user", state="cancelled")
    rebalance = trigger(http, emulator).json()["data"]["rebalanceId"]

    data = status(http, emulator, f"/{rebalance}").json()["data"]
    listed = status(http, emulator).json()["data"]["recentWorkflows"]

    assert (data["status"], data["error"], data["result"]) == (
        "cancelled",
        {"message": "cancelled by the user"},
        None,
    )
    assert listed[0]["status"] == "cancelled"


def test_on_its_own_it_learns_portfolios_added_to_its_file_and_logs_each_request(
    tmp_path: Path,
) -> None:
    """make up's emulator: a portfolio appended to --portfolios-file exists at once; each answered
    request is a line of its output (never the key)."""
    portfolios = tmp_path / "portfolios.txt"
    portfolios.write_text("# comment\nport_first\n")
    output = tmp_path / "emulator.log"
    key = "emulator-cli-test-key"
    with output.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, the emulator's module
            [sys.executable, "-m", "local.fixtures.glider_emulator", "--port", "0",
             "--portfolios-file", str(portfolios)],
            env={**os.environ, "GLIDER_API_KEY": key},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = _wait_for_line(output, r"listening on (http://\S+)")

        def trigger(portfolio: str) -> int:
            answer = urllib3.request(
                "POST",
                f"{url}/v1/portfolio/{portfolio}/rebalance/schedule/trigger",
                body=b'{"skipScheduleValidation": false}',
                headers={"X-API-KEY": key, "Content-Type": "application/json"},
                timeout=5,
            )
            return int(answer.status)

        assert trigger("port_first") == 200
        assert trigger("port_later") == 404
        with portfolios.open("a") as file:
            file.write("port_later\n")
        _wait_for_line(output, r"portfolio added: (port_later)")
        assert trigger("port_later") == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    log = output.read_text()
    assert "POST /v1/portfolio/port_later/rebalance/schedule/trigger -> 404" in log
    assert "POST /v1/portfolio/port_later/rebalance/schedule/trigger -> 200" in log
    assert key not in log


def _wait_for_line(path: Path, pattern: str, seconds: float = 15) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text())
        if match:
            return match.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no line matching {pattern!r} in {path}: {path.read_text()!r}")
