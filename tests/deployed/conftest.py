"""The one deploy every deployed-stack test shares (the `deployed` fixture, once per session):
template.yaml built with `sam build` and deployed with `sam deploy` to a MiniStack of the tests'
own (127.0.0.1, a free port), with a Glider emulator in this process as its API; both stopped by
the fixture. Skipped, loudly, only where MiniStack is not installed (`make deployed` installs it
first, and says SKIPPED itself when it cannot).

Test modules share the stack: each uses portfolio ids of its own, and one that changes the
stack's state (pause, schedules) puts it back before it ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tools.common
from local.aws.deploy import (
    LocalAws,
    build,
    create_boundary,
    deploy_stack,
    put_secret,
    settle,
    stack_description,
)
from local.aws.processes import REPO, ministack_python, start_ministack, stop
from local.fixtures.glider_emulator import GliderEmulator

STACK = "glider-deployed-test"
API_KEY = "glider-deployed-test-key"  # the emulator's; not a real credential
UPSTREAM_SOURCE = "com.example.treasury"
UPSTREAM_BUS = "glider-upstream-test"
OUTCOME_BUS = "glider-outcomes-test"
ALARM_TOPIC = "glider-alarms-test"  # AlarmTopicArn: an existing topic, as in an account
SCHEDULED = ("port_sched1", "port_sched2")
# The template's schedule runs once, this long after its deploy starts: after the deploy (about
# 10 s here), and late enough for MiniStack's Scheduler, which looks every 10 s.
SCHEDULE_DELAY = timedelta(seconds=30)


@dataclass
class Deployed:
    aws: LocalAws
    stack: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    emulator: GliderEmulator
    outcome_queue_url: str
    state_dir: Path
    workarounds: list[str]

    def client(self, service: str) -> Any:
        return self.aws.client(service)

    @property
    def log(self) -> Path:
        return self.state_dir / "ministack.log"


def wait_for(condition: Callable[[], Any], *, seconds: float, what: str) -> Any:
    """Poll `condition` until it returns something true, or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:.0f} s: {what}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    if not ministack_python().exists():
        pytest.skip(
            f"DEPLOYED-STACK TEST SKIPPED: MiniStack is not installed at {ministack_python()} "
            "(make deployed installs it; `make ministack` alone)"
        )
    state_dir = tmp_path_factory.mktemp("local-aws")
    log = state_dir / "deploy.log"
    emulator = GliderEmulator([API_KEY]).start()
    ministack = None
    try:
        ministack = start_ministack(state_dir)
        aws = LocalAws(ministack.url)
        events = aws.client("events")
        # The buses exist before the stack, as in an account: the template names them.
        for bus in (UPSTREAM_BUS, OUTCOME_BUS):
            events.create_event_bus(Name=bus)
        outcome_queue_url = _outcome_queue(aws)
        alarm_topic_arn: str = aws.client("sns").create_topic(Name=ALARM_TOPIC)["TopicArn"]
        template = build(
            build_dir=state_dir / "build",
            cache_dir=REPO / ".aws-sam" / "deployed-test-cache",
            state_dir=state_dir,
            log=log,
        )
        scheduled_at = datetime.now(UTC) + SCHEDULE_DELAY
        parameters = {
            "GliderApiKeySecretArn": put_secret(aws, API_KEY),
            "PermissionsBoundaryArn": create_boundary(aws),
            "UpstreamEventSource": UPSTREAM_SOURCE,
            "EventBusName": UPSTREAM_BUS,
            "OutcomeEventBusName": OUTCOME_BUS,
            "GliderApiBaseUrl": emulator.base_url,
            "SchedulePortfolioIds": ",".join(SCHEDULED),
            "ScheduleExpression": f"at({scheduled_at:%Y-%m-%dT%H:%M:%S})",
            "LogLevel": "INFO",
            "AlarmTopicArn": alarm_topic_arn,
        }
        deploy_stack(
            aws, template=template, stack=STACK, parameters=parameters, state_dir=state_dir, log=log
        )
        workarounds = settle(aws, STACK)
        outputs, deployed_parameters = stack_description(aws, STACK)
        yield Deployed(
            aws=aws,
            stack=STACK,
            outputs=outputs,
            parameters=deployed_parameters,
            emulator=emulator,
            outcome_queue_url=outcome_queue_url,
            state_dir=state_dir,
            workarounds=workarounds,
        )
    finally:
        if ministack is not None:
            stop(ministack.pid)
        emulator.stop()


def _outcome_queue(aws: LocalAws) -> str:
    """A queue of the test's own, fed by a rule on the outcome bus with the function's events."""
    sqs = aws.client("sqs")
    url: str = sqs.create_queue(QueueName="outcomes-seen-by-the-test")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = aws.client("events")
    events.put_rule(
        Name="outcomes-to-the-test",
        EventBusName=OUTCOME_BUS,
        EventPattern=json.dumps({"source": ["glider-rebalance-trigger"]}),
    )
    events.put_targets(
        Rule="outcomes-to-the-test", EventBusName=OUTCOME_BUS, Targets=[{"Id": "q", "Arn": arn}]
    )
    return url


@pytest.fixture
def local_stack_file(deployed: Deployed, tmp_path: Path) -> Iterator[None]:
    """What `make up` writes for the tools, for this stack: they find it by --stack NAME."""
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"stack": deployed.stack, "aws": deployed.aws.environment()}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tools.common, "LOCAL_AWS_FILE", path)
        yield
