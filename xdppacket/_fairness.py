"""Fairness between the queues of one interface: who is read first, and how much each gives.

A read over several queues (``XDPMultiQueue``'s reads, the capture's pcap records) visits
them in an order that starts one queue further along at each call (``QueueRotation``),
and splits its batch between them as evenly as their ready frames allow
(``fair_shares``), so that no queue is favoured over several calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

__all__ = ["QueueRotation", "fair_shares"]

_Queue = TypeVar("_Queue")


class QueueRotation(Generic[_Queue]):
    """The queues in the order of the next read. Not thread-safe: the reader's lock serialises it."""

    def __init__(self, queues: Sequence[_Queue]) -> None:
        self._queues = list(queues)
        self._next = 0

    def order(self) -> list[_Queue]:
        """All queues, starting one further along at each call."""
        queues = self._queues
        if len(queues) == 1:
            return queues
        start = self._next
        self._next = (start + 1) % len(queues)
        return queues[start:] + queues[:start]


def fair_shares(ready: list[int], limit: int) -> list[int]:
    """Split ``limit`` frames between queues with ``ready`` frames each, as evenly as possible.

    Earlier queues get the odd frame out; callers rotate the order between calls.
    """
    shares = [0] * len(ready)
    left = limit
    while left:
        hungry = [i for i, count in enumerate(ready) if count > shares[i]]
        if not hungry:
            break
        each = max(1, left // len(hungry))
        for i in hungry:
            give = min(each, ready[i] - shares[i], left)
            shares[i] += give
            left -= give
            if not left:
                break
    return shares
