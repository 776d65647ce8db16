"""The AWS SDK clients, each built on its first use and typed for `mypy --strict`.

A cold start pays only for the clients its work needs (an SQS-only invocation that succeeds
never builds the DLQ writer's client, for instance). One lock builds every client: boto3's
session is not safe to build clients from on several threads at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

_T = TypeVar("_T")
BOTOCORE_DEFAULT_POOL = 10  # botocore's own max_pool_connections


class Lazy(Generic[_T]):
    """Built on first use, then reused; built once even when workers ask at the same time."""

    def __init__(self, build: Callable[[], _T], *, lock: threading.Lock | None = None) -> None:
        self._build = build
        self._value: _T | None = None
        self._lock = lock or threading.Lock()

    def get(self) -> _T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value


def client_config(max_concurrency: int) -> Config:
    """The SDK retries throttles itself (standard mode); bounded so a dependency outage cannot
    eat the invocation. Endpoint and region come from the standard AWS environment.

    The connection pool holds one connection per worker: every worker calls DynamoDB twice per
    trigger, and botocore's default pool of 10 would make workers beyond the tenth open a new
    TLS connection for each call and throw it away after."""
    return Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"mode": "standard", "total_max_attempts": 3},
        max_pool_connections=max(BOTOCORE_DEFAULT_POOL, max_concurrency),
    )


def silence_sdk_debug_logs() -> None:
    """botocore logs whole response bodies at DEBUG, and Secrets Manager's holds the key:
    keep SDK and HTTP library loggers at INFO or above whatever the root level is."""
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        sdk_logger = logging.getLogger(name)
        if sdk_logger.getEffectiveLevel() < logging.INFO:
            sdk_logger.setLevel(logging.INFO)


class AwsClients:
    """sqs, dynamodb, secretsmanager and events, each a typed boto3 client built on first use."""

    def __init__(self, config: Config, *, region: str | None) -> None:
        lock = threading.Lock()
        session = Lazy(lambda: boto3.session.Session(region_name=region), lock=threading.Lock())
        self._sqs: Lazy[SQSClient] = Lazy(
            lambda: session.get().client("sqs", config=config), lock=lock
        )
        self._dynamodb: Lazy[DynamoDBClient] = Lazy(
            lambda: session.get().client("dynamodb", config=config), lock=lock
        )
        self._secretsmanager: Lazy[SecretsManagerClient] = Lazy(
            lambda: session.get().client("secretsmanager", config=config), lock=lock
        )

        self._events: Lazy[EventBridgeClient] = Lazy(
            lambda: session.get().client("events", config=config), lock=lock
        )

    def sqs(self) -> SQSClient:
        return self._sqs.get()

    def dynamodb(self) -> DynamoDBClient:
        return self._dynamodb.get()

    def secretsmanager(self) -> SecretsManagerClient:
        return self._secretsmanager.get()

    def events(self) -> EventBridgeClient:
        return self._events.get()
