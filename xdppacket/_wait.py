"""Waiting for AF_XDP sockets to become readable or writable, with microsecond timeouts.

``poll(2)`` counts in milliseconds, so the default 100 us poll timeout would become
1 ms. ``select(2)`` takes microseconds, so it is used for descriptors below
FD_SETSIZE; ``poll`` (rounded up to whole milliseconds) covers the rest.

A signal interrupts the wait: Python runs its handler, so Ctrl-C raises
``KeyboardInterrupt`` out of a blocked call; other signals resume the wait (PEP 475).
"""

from __future__ import annotations

import select
from collections.abc import Sequence

__all__ = ["wait_readable", "wait_writable"]

_FD_SETSIZE = 1024


def _wait(fds: Sequence[int], timeout_us: int | None, writable: bool) -> list[int]:
    if max(fds) < _FD_SETSIZE:
        timeout = None if timeout_us is None else timeout_us / 1e6
        if writable:
            return select.select([], fds, [], timeout)[1]
        return select.select(fds, [], [], timeout)[0]
    poller = select.poll()
    event = select.POLLOUT if writable else select.POLLIN
    for fd in fds:
        poller.register(fd, event)
    timeout_ms = None if timeout_us is None else -(-timeout_us // 1000)
    return [fd for fd, _ in poller.poll(timeout_ms)]


def wait_readable(fds: Sequence[int], timeout_us: int | None) -> list[int]:
    """Wait until one of ``fds`` has received frames or ``timeout_us`` passes (None: forever)."""
    return _wait(fds, timeout_us, writable=False)


def wait_writable(fds: Sequence[int], timeout_us: int | None) -> list[int]:
    """Wait until one of ``fds`` has room in its tx ring or ``timeout_us`` passes."""
    return _wait(fds, timeout_us, writable=True)
