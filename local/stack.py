"""The embedded local stack: a moto server (Secrets Manager, SQS, DynamoDB) and the Glider API
emulator, both on loopback, plus the environment that points the function at them.

Used by `make run` and by the integration tests; nothing here talks to AWS.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
from moto.server import ThreadedMotoServer

from local.glider_emulator import GliderEmulator

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

FUNCTION_DIR = Path(__file__).resolve().parent.parent / "functions" / "trigger"
REGION = "us-east-1"
# moto accepts any credentials; these keep boto3 from looking for real ones.
FAKE_AWS_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class MotoServer:
    """A moto server in a thread on 127.0.0.1, on a free port."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    def start(self) -> MotoServer:
        # werkzeug logs every request to stderr; the demo and test output stay readable without.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=FAKE_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )


@dataclass
class Queue:
    url: str
    arn: str


@dataclass
class Deployment:
    """What `sam deploy` would create, on moto: the secret, the work queue and its DLQ."""

    moto: MotoServer
    glider_api_url: str
    secret_id: str
    work_queue: Queue
    dlq: Queue
    idempotency_table: str
    max_receive_count: int = 5  # the work queue's redrive policy

    @property
    def sqs(self) -> SQSClient:
        client: SQSClient = self.moto.client("sqs")
        return client

    @property
    def secrets(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self.moto.client("secretsmanager")
        return client

    def environment(self, **overrides: str) -> dict[str, str]:
        """The function's environment, as the template sets it, pointed at the local stack."""
        env = {
            **FAKE_AWS_CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # The standard variable every boto3 client honours: no endpoint code of our own.
            "AWS_ENDPOINT_URL": self.moto.endpoint_url,
            "GLIDER_API_BASE_URL": self.glider_api_url,
            "GLIDER_API_KEY_SECRET_ID": self.secret_id,
            "DLQ_URL": self.dlq.url,
            "WORK_QUEUE_URL": self.work_queue.url,
            "MAX_RECEIVE_COUNT": str(self.max_receive_count),
            "IDEMPOTENCY_TABLE_NAME": self.idempotency_table,
            "AWS_LAMBDA_FUNCTION_NAME": "glider-rebalance-trigger",
            "POWERTOOLS_SERVICE_NAME": "glider-rebalance-trigger",
            "POWERTOOLS_METRICS_NAMESPACE": "GliderRebalanceTrigger",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        env.update(overrides)
        return env

    def put_api_key(self, value: str) -> None:
        """Rotate the secret: a new version becomes AWSCURRENT."""
        self.secrets.put_secret_value(SecretId=self.secret_id, SecretString=value)

    def dlq_messages(self, *, wait_seconds: int = 0) -> list[dict[str, Any]]:
        return drain(self.sqs, self.dlq.url, wait_seconds=wait_seconds)


def deploy(
    moto: MotoServer, emulator: GliderEmulator, *, api_key: str, max_receive_count: int = 5,
    visibility_timeout: int = 720,
) -> Deployment:  # fmt: skip
    """Create uniquely named resources, so several deployments can share one moto server."""
    suffix = uuid.uuid4().hex[:8]
    sqs: SQSClient = moto.client("sqs")
    secrets: SecretsManagerClient = moto.client("secretsmanager")
    secret = secrets.create_secret(
        Name=f"glider/api-key-{suffix}", SecretString=json.dumps({"apiKey": api_key})
    )
    dlq = _create_queue(sqs, f"glider-rebalance-trigger-dlq-{suffix}", {})
    work = _create_queue(
        sqs,
        f"glider-rebalance-trigger-work-{suffix}",
        {
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": str(max_receive_count)}
            ),
        },
    )
    table = f"glider-rebalance-trigger-idempotency-{suffix}"
    dynamodb: DynamoDBClient = moto.client("dynamodb")
    # As the template creates it: Powertools' default key, TTL on its expiry attribute.
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )
    return Deployment(moto, emulator.base_url, secret["ARN"], work, dlq, table, max_receive_count)


def _create_queue(sqs: SQSClient, name: str, attributes: dict[str, str]) -> Queue:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Queue(url, arn)


def drain(sqs: SQSClient, queue_url: str, *, wait_seconds: int = 0) -> list[dict[str, Any]]:
    """Receive and delete everything on a queue, with attributes."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=wait_seconds,
        ).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        messages.extend(dict(m) for m in batch)
        wait_seconds = 0


def attribute_values(message: Mapping[str, Any]) -> dict[str, str]:
    """A received message's attributes as plain strings."""
    return {
        name: value.get("StringValue", "")
        for name, value in message.get("MessageAttributes", {}).items()
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_function() -> ModuleType:
    """Import the handler module afresh, as a new execution environment's init would."""
    # Powertools configures a service's stdlib logger once per process and reuses it after;
    # a new execution environment is a new process, so forget the previous configuration.
    service_logger = logging.getLogger(
        os.environ.get("POWERTOOLS_SERVICE_NAME", "service_undefined")
    )
    for handler in list(service_logger.handlers):
        service_logger.removeHandler(handler)
    for attribute in ("init", "powertools_handler"):
        if hasattr(service_logger, attribute):
            delattr(service_logger, attribute)
    if str(FUNCTION_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTION_DIR))
    sys.modules.pop("app", None)
    return importlib.import_module("app")
