"""A stand-in for urllib3's PoolManager that answers every request with a real urllib3 response,
for the Glider adapters' unit tests (the whole HttpSession runs, without a socket)."""

from __future__ import annotations

import io
from typing import Any

import urllib3

from glider_trigger.outbound.glider.http import HttpSession


class AnsweringPool:
    """Every request gets a response with this status, body and headers; `calls` records
    each request's method and URL."""

    def __init__(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.payload = payload
        self.headers = headers or {}
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        self.calls.append((method, url))
        return urllib3.HTTPResponse(
            body=io.BytesIO(self.payload),
            headers=self.headers,
            status=self.status,
            preload_content=False,
        )


def session(pool: AnsweringPool, base_url: str = "https://api.glider.fi") -> HttpSession:
    return HttpSession(
        base_url,
        connect_timeout_seconds=3,
        read_timeout_seconds=10,
        http=pool,  # type: ignore[arg-type]
    )
