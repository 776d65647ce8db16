"""An in-memory MessageQueue: keeps what was sent; can refuse the next writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from glider_trigger.domain.errors import QueueWriteError
from glider_trigger.domain.models import OutgoingMessage


class InMemoryQueue:
    def __init__(self, error_type: type[QueueWriteError], name: str = "queue") -> None:
        self.queue_url = f"memory://{name}"
        self.error_type = error_type
        self.messages: list[OutgoingMessage] = []
        self.refuse_next = 0  # that many send() calls fail, writing nothing

    def send(self, messages: Sequence[OutgoingMessage], *, parallelism: int = 1) -> None:
        if self.refuse_next:
            self.refuse_next -= 1
            raise self.error_type(f"{len(messages)} message(s) refused", unsent=len(messages))
        self.messages.extend(messages)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(message.body) for message in self.messages]
