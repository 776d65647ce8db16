"""Take moto's own overhead out of the measurements (in the benchmark's moto process only).

1. Routing. moto's server finds the backend of every request under one global lock, and on
the way lists moto's package directory (os.listdir plus ~200 isdir calls) and tries the URL
patterns of every service in turn: a few ms of CPU per request, serialized. `apply()`
memoizes the lookup per host string (the answer depends on nothing else: the patterns and the
package do not change while the server runs).

2. SQS queues. moto 5.2.5 counts a queue's messages by calling two properties per message,
each of which reads the clock, and SendMessage builds every queue attribute (three of those
counts among them) just to look up ContentBasedDeduplication; DeleteMessage scans the queue
twice, building a list of receipt handles per message. Sending n messages costs O(n^2)
property calls: 1,000 messages take ~10 s to enqueue and ~30 s to receive and delete, 10,000
would take over an hour, all of it moto's time, not the function's.

`apply()` replaces those four members of moto.sqs.models.Queue with equivalents that read the
clock once per call and compare plain attributes: the same results (visibility and delay are
decided exactly as Message.visible and Message.delayed decide them), a constant factor of
~20x less work. The delete also takes the queue's lock, which moto's own does not (with two
pollers, two unlocked deletes at once could each undo the other), and so does a receive (two
unlocked receives at once could each take the same visible message, which SQS hands to one:
with ten environments polling, a batch found its message's delivery in progress in another).
That still leaves each
SendMessage linear in the queue's depth (the counts it builds and throws away), so 100,000
messages would take hours: while a SendMessage runs on a standard queue, `attributes` answers
without them (SendMessage reads only ContentBasedDeduplication, a FIFO queue's attribute, and a
FIFO queue still gets them all).

3. Per-request work that depends only on constants. Every response looks up its handler's
method names with inspect.getmembers (a fixed set per class), and every UpdateItem parses its
UpdateExpression twice (the idempotency guard sends the same expression each time). `apply()`
memoizes both: method names per class, the parsed expression per (parser, string). moto's
Validator deep-copies the tree before it touches it, and the other readers only search it, so a
shared parse is never modified.

The function under test is not touched; the fan-out checks (every message queued, every id
triggered exactly once, nothing left) hold the patched queue to account.
"""

from __future__ import annotations

import threading
from typing import Any

_APPLIED = False


def apply() -> bool:
    """Patch moto; False (and nothing changed) if its internals are not as expected."""
    global _APPLIED  # noqa: PLW0603 - once per process
    if _APPLIED:
        return True
    from moto.core import responses  # noqa: PLC0415
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # noqa: PLC0415
    from moto.moto_server import werkzeug_app  # noqa: PLC0415
    from moto.sqs import models  # noqa: PLC0415

    probe = models.Message("probe", "probe")
    expected = ("visible_at", "delayed_until", "receipt_handle", "_old_receipt_handles")
    members = (
        "messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
        "delete_message",
    )
    if (
        not all(hasattr(probe, name) for name in expected)
        or not all(hasattr(models.Queue, name) for name in members)
        or not hasattr(werkzeug_app.DomainDispatcherApplication, "get_backend_for_host")
        or not hasattr(responses, "method_names_from_class")
        or not isinstance(vars(UpdateExpressionParser).get("make"), classmethod)
        or not isinstance(vars(models.Queue).get("attributes"), property)
        or not hasattr(models.SQSBackend, "send_message")
        or not hasattr(models.SQSBackend, "receive_message")
        or not hasattr(models.SQSBackend, "get_queue")
    ):
        return False
    _memoize_routing(werkzeug_app.DomainDispatcherApplication)
    _count_queues_linearly(models.Queue)
    _send_without_counting(models.Queue, models.SQSBackend)
    _receive_under_lock(models.SQSBackend)
    _memoize_constant_work(responses, UpdateExpressionParser)
    _APPLIED = True
    return True


def _memoize_routing(dispatcher: Any) -> None:
    lookup = dispatcher.get_backend_for_host
    backends: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in backends:  # called under the dispatcher's lock
            backends[host] = lookup(self, host)
        return backends[host]

    dispatcher.get_backend_for_host = get_backend_for_host


def _count_queues_linearly(queue_class: Any) -> None:
    from moto.core.utils import unix_time_millis  # noqa: PLC0415
    from moto.sqs.exceptions import ReceiptHandleIsInvalid  # noqa: PLC0415

    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: moto (and SQS) accept it again
        # Under the lock SendMessage appends with: moto's own read-modify-write of the list is
        # unlocked, so two deletes at once (two pollers) could each drop the other's result.
        with self._messages_lock:
            current = self._messages
            for index, message in enumerate(current):
                if (
                    message.receipt_handle == receipt_handle
                    or receipt_handle in message._old_receipt_handles
                ):
                    self.pending_messages.discard(message)
                    self.deleted_messages.update(message.all_receipt_handles)
                    # A new list, as moto does: a receive iterating the old one is unaffected.
                    self._messages = current[:index] + current[index + 1 :]
                    return
        raise ReceiptHandleIsInvalid

    queue_class.messages = property(messages)
    queue_class.approximate_number_of_messages_delayed = property(delayed)
    queue_class.approximate_number_of_messages_not_visible = property(not_visible)
    queue_class.delete_message = delete_message


def _send_without_counting(queue_class: Any, backend_class: Any) -> None:
    sending = threading.local()
    all_attributes = queue_class.attributes.fget
    send_message = backend_class.send_message

    def attributes(self: Any) -> dict[str, Any]:
        if getattr(sending, "active", False) and not self.fifo_queue:
            return {}  # a standard queue has none of the attributes SendMessage reads
        result: dict[str, Any] = all_attributes(self)
        return result

    def send_message_uncounted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            sending.active = False

    queue_class.attributes = property(attributes)
    backend_class.send_message = send_message_uncounted


def _receive_under_lock(backend_class: Any) -> None:
    receive_message = backend_class.receive_message

    def receive_under_lock(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        # The queue's lock is a Condition on an RLock: a long poll's wait inside releases it.
        with self.get_queue(queue_name)._messages_lock:
            return receive_message(self, queue_name, *args, **kwargs)

    backend_class.receive_message = receive_under_lock


def _memoize_constant_work(responses: Any, update_parser: Any) -> None:
    method_names_of = responses.method_names_from_class
    method_names: dict[Any, list[str]] = {}

    def method_names_from_class(clazz: Any) -> list[str]:
        if clazz not in method_names:
            method_names[clazz] = method_names_of(clazz)
        return list(method_names[clazz])  # a copy: the caller owns its list, as before

    parse = vars(update_parser)["make"].__func__
    parsed: dict[tuple[Any, str], Any] = {}

    def make(cls: Any, expression_str: str) -> Any:
        key = (cls, expression_str)
        if key not in parsed:  # an invalid expression raises, and is not remembered
            parsed[key] = parse(cls, expression_str)
        return parsed[key]

    responses.method_names_from_class = method_names_from_class
    update_parser.make = classmethod(make)
