"""The fault-injecting AWS proxy, with real boto3 clients in front of a moto server."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError

from local.fixtures.fault_proxy import AwsFault, FaultProxy
from local.fixtures.stack import FAKE_AWS_CREDENTIALS, REGION, MotoServer

# No SDK retries: every call is exactly one request, so counts and faults line up one to one.
# (botocore's "max_attempts" counts retries only: max_attempts=1 would allow one retry.)
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})

MakeClient = Callable[..., Any]


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url, seed=1) as started:
        yield started


@pytest.fixture
def client(proxy: FaultProxy) -> MakeClient:
    def make(service: str, *, config: Config = NO_RETRIES, endpoint: str | None = None) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoint or proxy.endpoint_url,
            region_name=REGION,
            aws_access_key_id=FAKE_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=config,
        )

    return make


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_secrets_manager_and_sqs_pass_through(
    proxy: FaultProxy, client: MakeClient, moto_server: MotoServer
) -> None:
    secrets, sqs = client("secretsmanager"), client("sqs")
    secrets.create_secret(Name="proxy/pass-through", SecretString='{"apiKey": "k"}')
    queue_url = sqs.create_queue(QueueName="proxy-pass-through")["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "MessageBody": f"body-{i}"} for i in range(3)],
    )

    assert secrets.get_secret_value(SecretId="proxy/pass-through")["SecretString"] == (
        '{"apiKey": "k"}'
    )
    # What went through the proxy really is on moto: read it back without the proxy.
    direct = client("sqs", endpoint=moto_server.endpoint_url)
    received = direct.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in received) == ["body-0", "body-1", "body-2"]
    assert proxy.counts == {
        "secretsmanager.CreateSecret": 1,
        "secretsmanager.GetSecretValue": 1,
        "AmazonSQS.CreateQueue": 1,
        "AmazonSQS.SendMessageBatch": 1,
    }
    assert proxy.injected == {}


def test_query_protocol_operations_pass_through_and_fault_by_action(
    proxy: FaultProxy, client: MakeClient
) -> None:
    sts = client("sts")  # a query-protocol service: Action=GetCallerIdentity in a form body
    assert sts.get_caller_identity()["Account"]
    proxy.inject("GetCallerIdentity", AwsFault.throttling(), times=1)

    with pytest.raises(ClientError) as excinfo:
        sts.get_caller_identity()

    assert error_code(excinfo) == ("Throttling", 400)
    assert proxy.counts == {"GetCallerIdentity": 2}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (AwsFault.throttling(), ("ThrottlingException", 400)),
        (AwsFault.server_error(), ("InternalFailure", 500)),
        (AwsFault.access_denied(), ("AccessDeniedException", 400)),
    ],
    ids=["throttling", "server_error", "access_denied"],
)
def test_an_injected_error_is_what_botocore_raises_for_each_json_protocol(
    proxy: FaultProxy, client: MakeClient, fault: AwsFault, expected: tuple[str, int]
) -> None:
    secrets, sqs, dynamodb = client("secretsmanager"), client("sqs"), client("dynamodb")
    secrets.create_secret(Name=f"proxy/{fault.kind}", SecretString="k")
    queue_url = sqs.create_queue(QueueName=f"proxy-{fault.kind}")["QueueUrl"]
    calls: dict[str, Callable[[], object]] = {
        "secretsmanager.GetSecretValue": lambda: secrets.get_secret_value(
            SecretId=f"proxy/{fault.kind}"
        ),
        "AmazonSQS.SendMessageBatch": lambda: sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": "1", "MessageBody": "b"}]
        ),
        "DynamoDB_20120810.ListTables": dynamodb.list_tables,
    }
    for operation, call in calls.items():
        proxy.inject(operation, fault)
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == expected, operation

    assert proxy.injected == dict.fromkeys(calls, 1)
    assert proxy.injected_by_fault == {(operation, fault.kind): 1 for operation in calls}


def test_botocore_retries_an_injected_throttle_as_a_throttle(
    proxy: FaultProxy, client: MakeClient
) -> None:
    secrets = client("secretsmanager", config=Config(retries={"total_max_attempts": 2}))
    secrets.create_secret(Name="proxy/retried", SecretString="k")
    proxy.inject("secretsmanager.GetSecretValue", AwsFault.throttling(), times=1)

    assert secrets.get_secret_value(SecretId="proxy/retried")["SecretString"] == "k"
    assert proxy.counts["secretsmanager.GetSecretValue"] == 2
    assert proxy.injected == {"secretsmanager.GetSecretValue": 1}


def test_times_limits_the_faults_and_only_the_named_operation_is_affected(
    proxy: FaultProxy, client: MakeClient
) -> None:
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName="proxy-times")["QueueUrl"]
    proxy.inject("AmazonSQS.SendMessage", AwsFault.server_error(), times=2)

    outcomes = []
    for i in range(4):
        try:
            sqs.send_message(QueueUrl=queue_url, MessageBody=str(i))
            outcomes.append("ok")
        except ClientError:
            outcomes.append("fault")
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])

    assert outcomes == ["fault", "fault", "ok", "ok"]
    assert proxy.counts["AmazonSQS.SendMessage"] == 4
    assert proxy.counts["AmazonSQS.GetQueueAttributes"] == 4
    assert proxy.injected == {"AmazonSQS.SendMessage": 2}
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "2"  # faulted requests never reach moto


def test_rate_is_respected_and_the_pattern_is_determined_by_the_seed(
    moto_server: MotoServer, client: MakeClient
) -> None:
    def pattern(seed: int, calls: int = 60) -> list[bool]:
        with FaultProxy(moto_server.endpoint_url, seed=seed) as proxy:
            sts = client("sts", endpoint=proxy.endpoint_url)
            proxy.inject("GetCallerIdentity", AwsFault.throttling(), rate=0.5)
            faulted = []
            for _ in range(calls):
                try:
                    sts.get_caller_identity()
                    faulted.append(False)
                except ClientError:
                    faulted.append(True)
            assert proxy.injected.get("GetCallerIdentity", 0) == sum(faulted)
            assert proxy.counts == {"GetCallerIdentity": calls}
            return faulted

    first = pattern(seed=3)
    assert 15 <= sum(first) <= 45  # rate 0.5 of 60 calls
    assert pattern(seed=3) == first
    assert pattern(seed=4) != first


def test_rate_and_times_together_and_clear(proxy: FaultProxy, client: MakeClient) -> None:
    sts = client("sts")
    proxy.inject("GetCallerIdentity", AwsFault.access_denied(), rate=0.5, times=3)
    failures = 0
    for _ in range(40):
        try:
            sts.get_caller_identity()
        except ClientError:
            failures += 1
    assert failures == 3
    proxy.inject("GetCallerIdentity", AwsFault.access_denied())
    proxy.clear()
    sts.get_caller_identity()
    assert proxy.injected == {"GetCallerIdentity": 3}
    assert proxy.counts == {"GetCallerIdentity": 41}


def test_a_connection_reset_is_a_botocore_connection_error_and_nothing_is_forwarded(
    proxy: FaultProxy, client: MakeClient
) -> None:
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName="proxy-reset")["QueueUrl"]
    proxy.inject("AmazonSQS.SendMessage", AwsFault.connection_reset(), times=1)

    with pytest.raises(HTTPClientError) as excinfo:
        sqs.send_message(QueueUrl=queue_url, MessageBody="lost")

    assert isinstance(excinfo.value, ConnectionClosedError)
    sqs.send_message(QueueUrl=queue_url, MessageBody="kept")  # a new connection works
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue_url)["Messages"]]
    assert bodies == ["kept"]
    assert proxy.injected_by_fault == {("AmazonSQS.SendMessage", "connection_reset"): 1}


def test_stop_is_prompt_with_a_kept_alive_connection_and_frees_the_port(
    moto_server: MotoServer, client: MakeClient
) -> None:
    proxy = FaultProxy(moto_server.endpoint_url).start()
    port = int(proxy.endpoint_url.rsplit(":", 1)[1])
    sqs = client("sqs", endpoint=proxy.endpoint_url)
    sqs.list_queues()  # leaves a kept-alive connection open in the client's pool

    started = time.monotonic()
    proxy.stop()

    assert time.monotonic() - started < 1.0
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass
    proxy.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = proxy.endpoint_url
