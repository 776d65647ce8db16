"""The Glider API key, read from Secrets Manager and cached for SECRET_CACHE_SECONDS.

The secret is a plain string or a JSON object with an "apiKey" field. The value lives only in
an ApiKey (domain/models.py), whose repr and str are redacted, so it cannot reach a log line by
accident. Implements the domain's ApiKeySource port.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import SecretUnavailableError
from glider_trigger.domain.models import ApiKey

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Errors worth retrying: the secret is there, Secrets Manager is just busy or unreachable.
_RETRYABLE_CODES: Final = frozenset(
    {"ThrottlingException", "InternalServiceError", "RequestTimeout", "ServiceUnavailable"}
)
_HINTS: Final = {
    "ResourceNotFoundException": "the secret does not exist (check GLIDER_API_KEY_SECRET_ID)",
    "AccessDeniedException": "the function's role lacks secretsmanager:GetSecretValue on it",
    "DecryptionFailure": "the function's role cannot kms:Decrypt the secret's key",
    "InvalidRequestException": "the secret is scheduled for deletion or disabled",
}


class ApiKeyProvider:
    def __init__(
        self,
        secret_id: str,
        *,
        max_age_seconds: int,
        client: Callable[[], SecretsManagerClient],
    ) -> None:
        self._secret_id = secret_id
        self._max_age = max_age_seconds
        self._client = client
        self._lock = threading.Lock()
        self._cached: tuple[ApiKey, float] | None = None  # the key and when it was read

    def get(self, *, refresh: bool = False) -> ApiKey:
        """The cached key, or a fresh read when `refresh` (after a 401: it may have rotated)."""
        # One read at a time: on a cold start every worker asks at once, and without the lock
        # each would miss the still-empty cache and read the secret itself.
        with self._lock:
            cached, now = self._cached, time.monotonic()
            if cached is not None and not refresh and now - cached[1] < self._max_age:
                return cached[0]
            key = _parse_secret(self._read(), self._secret_id)
            self._cached = (key, now)
            return key

    def _read(self) -> object:
        try:
            answer = self._client().get_secret_value(SecretId=self._secret_id)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            hint = _HINTS.get(code, "see the error code")
            raise SecretUnavailableError(
                f"cannot read secret {self._secret_id!r}: {code}: {hint}",
                retryable=code in _RETRYABLE_CODES,
            ) from exc
        except BotoCoreError as exc:
            raise SecretUnavailableError(
                f"cannot reach Secrets Manager for {self._secret_id!r}: {type(exc).__name__}",
                retryable=True,
            ) from exc
        # A binary secret's answer has no SecretString (the stubs say it always does).
        found: dict[str, object] = dict(answer)
        return found.get("SecretString", found.get("SecretBinary"))


def _parse_secret(raw: object, secret_id: str) -> ApiKey:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailableError(
                f"secret {secret_id!r} is binary and not UTF-8 text", retryable=False
            ) from None
    if not isinstance(raw, str):
        raise SecretUnavailableError(f"secret {secret_id!r} has no string value", retryable=False)
    text = raw.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            # Never echo the parser's message: it quotes the secret's text.
            raise SecretUnavailableError(
                f"secret {secret_id!r} looks like JSON but does not parse", retryable=False
            ) from None
        key = document.get("apiKey") if isinstance(document, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise SecretUnavailableError(
                f'secret {secret_id!r} is a JSON object without a non-empty "apiKey" field',
                retryable=False,
            )
        text = key.strip()
    if not text:
        raise SecretUnavailableError(f"secret {secret_id!r} is empty", retryable=False)
    if any(ord(char) < 0x21 or ord(char) > 0x7E for char in text):
        # A header value cannot carry it; urllib3 would echo it in the exception.
        raise SecretUnavailableError(
            f"secret {secret_id!r} holds characters an HTTP header cannot carry",
            retryable=False,
        )
    return ApiKey(text)
