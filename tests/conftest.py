"""Shared fixtures: the local stack (a moto server over HTTP and the Glider API emulator, both
on 127.0.0.1 and stopped here) and a Lambda context with a real deadline."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest

from bench import moto_speedups
from glider_trigger.settings import ApiVersion
from local.fixtures.delivery import Story
from local.fixtures.delivery import deliver as delivered
from local.fixtures.event_source import SqsEventSource
from local.fixtures.fault_proxy import FaultProxy
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.lambda_context import LocalLambdaContext
from local.fixtures.stack import FAKE_AWS_CREDENTIALS, REGION, Deployment, MotoServer, deploy

API_KEY = "test-canary-key-7Hq2ZpXv9L"  # a canary: it must never show up in any output


@pytest.fixture
def lambda_context() -> Callable[..., LocalLambdaContext]:
    """A fake LambdaContext whose remaining time really runs down."""

    def make(timeout_seconds: float = 30.0) -> LocalLambdaContext:
        return LocalLambdaContext(timeout_seconds=timeout_seconds)

    return make


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    # moto's own per-request overhead taken out (bench/moto_speedups.py: the same answers, a
    # constant factor less work in its routing and SQS counts): the suite waits on moto less.
    if not moto_speedups.apply():
        warnings.warn("moto_speedups did not apply: moto's internals changed", stacklevel=1)
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def emulator() -> Iterator[GliderEmulator]:
    with GliderEmulator(api_keys=[API_KEY]) as glider:
        for portfolio_id in ("port_abc123", "port_def456", "port_ghi789"):
            glider.add_portfolio(portfolio_id)
        yield glider


@pytest.fixture
def api_version() -> str:
    """The Glider API the function calls (GLIDER_API_VERSION): v1, unless the test or its
    module is marked `both_api_versions`, which runs it once on each version."""
    return ApiVersion.V1.value


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "api_version" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_api_versions"
    ):
        metafunc.parametrize("api_version", [version.value for version in ApiVersion])


@pytest.fixture
def deployment(moto_server: MotoServer, emulator: GliderEmulator, api_version: str) -> Deployment:
    # A 1 s visibility timeout: a reported failure comes back within a test, not 12 minutes.
    return deploy(
        moto_server,
        emulator,
        api_key=API_KEY,
        max_receive_count=2,
        visibility_timeout=1,
        api_version=api_version,
    )


# Fast retries and timeouts, so failure paths take milliseconds; Retry-After up to 2 s is honoured.
FAST_SETTINGS = {
    "RETRY_BASE_DELAY_SECONDS": "0.01",
    "RETRY_MAX_DELAY_SECONDS": "2",
    "GLIDER_CONNECT_TIMEOUT_SECONDS": "1",
    "GLIDER_READ_TIMEOUT_SECONDS": "0.5",
    "DEADLINE_SAFETY_MARGIN_SECONDS": "0.5",
}


@pytest.fixture
def start_function(deployment: Deployment) -> Callable[..., LocalFunction]:
    """Start a fresh execution environment (module init) with environment overrides."""

    def start(**overrides: str) -> LocalFunction:
        return LocalFunction(deployment.environment(**{**FAST_SETTINGS, **overrides}))

    return start


@pytest.fixture
def function(start_function: Callable[..., LocalFunction]) -> LocalFunction:
    return start_function()


@pytest.fixture
def deliver(deployment: Deployment, request: pytest.FixtureRequest) -> Callable[..., Story]:
    """An event as the stack delivers it: invoked, then its queued portfolios from the work
    queue (`function=` another execution environment; other keywords go to invoke). The
    `function` fixture is started only when none is given: the environment started last takes
    the shared logger's lines, so starting one more would leave the given one's Story empty."""

    def run(event: object, *, function: LocalFunction | None = None, **invoke: object) -> Story:
        chosen = function or request.getfixturevalue("function")
        return delivered(
            chosen, SqsEventSource(deployment.sqs, deployment.work_queue), event, **invoke
        )

    return run


@pytest.fixture
def aws_environment(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard AWS environment pointed at the moto server: what the operator tools' --stack
    reads, with nothing of the developer's own (profile, session, retry settings)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the moto server (it also applies SQS's character
    rule for message contents, which moto does not)."""
    with FaultProxy(moto_server.endpoint_url) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def start_behind_proxy(deployment: Deployment, proxy: FaultProxy) -> Callable[..., LocalFunction]:
    """Start an execution environment whose AWS calls all go through the proxy."""

    def start(**overrides: str) -> LocalFunction:
        env = deployment.environment(**{**FAST_SETTINGS, **overrides})
        env["AWS_ENDPOINT_URL"] = proxy.endpoint_url
        return LocalFunction(env)

    return start
