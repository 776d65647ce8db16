"""Reading the call counts bench/moto_process.py serves, and setting its AWS latency: standard
library only, so that the measured child (bench/case.py) can read them without importing moto."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

CALLS_PATH = "/_bench/calls"
LATENCY_PATH = "/_bench/latency"


def read_calls(calls_url: str) -> tuple[Counter[str], int]:
    """AWS calls moto served so far, by operation, and the TCP connections it accepted (this
    request's own among them)."""
    with urllib.request.urlopen(calls_url, timeout=10) as answer:  # noqa: S310 - our loopback URL
        served = json.load(answer)
    return Counter(served["calls"]), int(served["connections"])


def set_latency(latency_url: str, latency_ms: float) -> None:
    """moto's process waits `latency_ms` before each AWS call from now on."""
    url = f"{latency_url}?ms={latency_ms:g}"
    request = urllib.request.Request(url, method="PUT")  # noqa: S310 - our loopback URL
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our loopback URL
        pass
