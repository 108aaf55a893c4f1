"""``QueueSender``: writes to one non-blocking ``XDPPacket`` that wait for room without blocking.

A non-blocking write queues what fits and returns at once. What it could not queue
waits for one of two things, and the wait differs:

- the tx ring is full: the socket turns writable when the kernel has taken frames from
  it, so the loop watches the descriptor;
- every tx frame is in flight: frames come back through the completion ring, which does
  not wake the socket, so the sender yields to the loop and tries again, first at once
  and then after short sleeps.

A write that made progress waits for writability; one that made none sleeps. Each
non-blocking write is a single synchronous call, so cancellation lands only between
them: the frames queued so far go out, the rest were never taken, and no tx frame is
lost either way.

An interface that is down takes nothing from the tx ring, so neither wait would ever
end: a write that keeps making no progress checks the interface, and raises ENETDOWN
if it is down, as a blocking write of the synchronous classes does.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence

from .._device import IFF_UP, interface_flags
from ..packet import XDPPacket
from ._readiness import Readiness

__all__ = ["QueueSender"]

# Attempts without progress that just yield to the loop before the sender starts sleeping.
_YIELDS_BEFORE_SLEEP = 8
# The sleep between attempts once every tx frame has been in flight for a while.
_COMPLETION_SLEEP_S = 0.0005
# Attempts without progress between checks that the interface is up (the first check
# comes when the sender starts sleeping, then about every 30 ms).
_DOWN_CHECK_EVERY = 64


class QueueSender:
    """Sends through one socket; calls are served one at a time, each one whole and in order.

    Owns the socket's write readiness registration (``detach()`` before the socket closes)
    and an ``asyncio.Lock``. Not thread-safe: use it from one event loop.
    """

    def __init__(self, sock: XDPPacket) -> None:
        self._sock = sock
        self._writable = Readiness(sock.fileno(), writable=True)
        self._lock: asyncio.Lock | None = None  # made in the loop that first writes

    async def send(self, frames: Sequence[object]) -> int:
        """Queue every frame of ``frames`` in order, waiting for room; return how many (all).

        The first call validates every frame before any is queued (``TypeError``/``ValueError``).
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._send_locked(frames)

    async def _send_locked(self, frames: Sequence[object]) -> int:
        sock = self._sock
        queued = sock.write_multi_packets(frames)
        total = len(frames)
        idle = 0  # attempts in a row that queued nothing
        while queued < total:
            if idle == 0:
                await self._writable.wait()
            elif idle < _YIELDS_BEFORE_SLEEP:
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(_COMPLETION_SLEEP_S)
            more = sock.write_multi_packets(frames[queued:])
            queued += more
            idle = 0 if more else idle + 1
            if idle % _DOWN_CHECK_EVERY == _YIELDS_BEFORE_SLEEP and not interface_flags(sock.ifname) & IFF_UP:
                raise OSError(
                    errno.ENETDOWN,
                    f"writing to {sock.ifname} queue {sock.queue_id}: the interface is down "
                    f"(ip link set dev {sock.ifname} up); {queued} frame(s) of this call were "
                    f"queued and go out once it is up, the other {total - queued} were not",
                )
        return queued

    def detach(self) -> None:
        """Stop watching the socket and wake a waiting write (which then finds it closed)."""
        self._writable.detach()
