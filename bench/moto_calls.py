"""Reading the call counts bench/moto_process.py serves: standard library only, so that the
measured child (bench/case.py) can read them without importing moto."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

CALLS_PATH = "/_bench/calls"


def read_calls(calls_url: str) -> tuple[Counter[str], int]:
    """AWS calls moto served so far, by operation, and the TCP connections it accepted (this
    request's own among them)."""
    with urllib.request.urlopen(calls_url, timeout=10) as answer:  # noqa: S310 - our loopback URL
        served = json.load(answer)
    return Counter(served["calls"]), int(served["connections"])
