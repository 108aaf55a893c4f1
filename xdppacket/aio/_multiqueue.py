"""``AsyncXDPMultiQueue``: ``XDPMultiQueue`` for asyncio.

Built on a synchronous ``XDPMultiQueue`` in non-blocking mode with a zero poll timeout.
Reads wait on its ``fileno()``, one epoll descriptor over every queue, so the event loop
watches a single descriptor however many queues there are; the reads themselves are the
synchronous class's, fair between queues in the same way.

Writes go first through the synchronous ``write_packet`` (all frames validated, spread
round-robin). What a full queue could not take waits on that queue alone, through its
own ``QueueSender``, so one slow queue holds up only its share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, overload

from ..errors import XDPWriteError
from ..multiqueue import XDPMultiQueue
from ..options import XDPOptions
from ..packet import XDPPacket
from ..stats import CaptureInfo, XDPStats
from ._options import event_loop_options
from ._packet import BatchIterator, PacketIterator, batch_if_any, ordered_frames
from ._readiness import Readiness
from ._sending import QueueSender

__all__ = ["AsyncXDPMultiQueue"]


class AsyncXDPMultiQueue:
    """Queues ``[0, OptQueueCount)`` of ``ifname``, driven by the running event loop.

    Owns a synchronous ``XDPMultiQueue`` and the loop registrations of its descriptors
    (only while a coroutine waits). ``close()`` releases everything and wakes waiting
    coroutines, which raise ``ValueError``. Use it from one event loop's thread.
    """

    def __init__(self, ifname: str, *opts: object) -> None:
        self._mq = XDPMultiQueue(ifname, *event_loop_options(opts))
        try:
            self._readable = Readiness(self._mq.fileno(), writable=False)
            self._senders = [QueueSender(sock) for sock in self._mq.sockets]
        except BaseException:
            self._mq.close()
            raise
        self.ifname = self._mq.ifname
        self.ifindex = self._mq.ifindex
        self.options: XDPOptions = self._mq.options
        # Mirrors XDPMultiQueue's rotation: the queue that takes the first frame of the next write.
        self._next_write_queue = 0

    # ----------------------------------------------------------------- lifetime
    @property
    def closed(self) -> bool:
        return self._mq.closed

    def fileno(self) -> int:
        """An epoll descriptor, readable when any queue has frames (as ``XDPMultiQueue.fileno``)."""
        return self._mq.fileno()

    def close(self) -> None:
        """Release every queue; waiting coroutines wake and raise ``ValueError``. Idempotent."""
        if self._mq.closed:
            return
        self._readable.detach()
        for sender in self._senders:
            sender.detach()
        self._mq.close()

    async def __aenter__(self) -> AsyncXDPMultiQueue:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AsyncXDPMultiQueue {self.ifname} queues {len(self._senders)} {state}>"

    @property
    def sync_socket(self) -> XDPMultiQueue:
        """The synchronous ``XDPMultiQueue`` underneath (non-blocking, zero poll timeout)."""
        return self._mq

    @property
    def sockets(self) -> list[XDPPacket]:
        """The per-queue synchronous sockets (non-blocking), index i bound to queue i."""
        return self._mq.sockets

    def get_stats(self) -> list[XDPStats]:
        """``[0]`` is the sum over all queues, ``[1 + i]`` is queue i."""
        return self._mq.get_stats()

    def check_frames(self) -> list[dict[str, dict[str, int]]]:
        return self._mq.check_frames()

    # ---------------------------------------------------------------- receiving
    async def read_packet(self) -> tuple[list[bytes], list[CaptureInfo]]:
        """At most one copied frame from each queue, at least one in all."""
        return await self._readable.first_result(lambda: batch_if_any(self._mq.read_packet()))

    async def zero_copy_read_packet(self, writable: bool = False) -> tuple[list[memoryview], list[CaptureInfo]]:
        """As ``read_packet``, as views valid until the next read or ``close()`` (writable ones if asked)."""
        return await self._readable.first_result(lambda: batch_if_any(self._mq.zero_copy_read_packet(writable)))

    async def read_multi_packets(self, max_packets: int = 16) -> tuple[list[bytes], list[CaptureInfo]]:
        """Between one and ``max_packets`` copied frames, shared fairly between the queues."""
        return await self._readable.first_result(
            lambda: batch_if_any(self._mq.read_multi_packets(max_packets)))

    async def zero_copy_read_multi_packets(self, max_packets: int = 16,
                                           writable: bool = False) -> tuple[list[memoryview], list[CaptureInfo]]:
        """As ``read_multi_packets``, as views valid until the next read or ``close()`` (writable
        ones if asked)."""
        return await self._readable.first_result(
            lambda: batch_if_any(self._mq.zero_copy_read_multi_packets(max_packets, writable)))

    async def _read_one(self) -> tuple[bytes, CaptureInfo]:
        packets, infos = await self.read_multi_packets(1)
        return packets[0], infos[0]

    def __aiter__(self) -> PacketIterator:
        """``async for data, info in mq``: copies one at a time, queues served in turn."""
        return PacketIterator(self._read_one, lambda: self.closed)

    @overload
    def batches(self, max_packets: int = ..., zero_copy: Literal[False] = ...) -> BatchIterator[bytes]: ...

    @overload
    def batches(self, max_packets: int = ..., *, zero_copy: Literal[True],
                writable: bool = ...) -> BatchIterator[memoryview]: ...

    def batches(self, max_packets: int = 64, zero_copy: bool = False, writable: bool = False) -> BatchIterator[Any]:
        """``async for packets, infos in mq.batches(n)``; zero-copy views (writable ones if asked)
        last until the next iteration."""
        if zero_copy:
            return BatchIterator(lambda: self.zero_copy_read_multi_packets(max_packets, writable),
                                 lambda: self.closed)
        return BatchIterator(lambda: self.read_multi_packets(max_packets), lambda: self.closed)

    # ------------------------------------------------------------------ sending
    async def write_packet(self, pkts: Iterable[object]) -> int:
        """Send ``pkts`` spread round-robin over the queues, waiting for room; return how many (all).

        Every frame is validated before any is queued. A kernel error raises
        ``XDPWriteError`` whose ``.sent`` says how many frames were queued before it.
        """
        frames = ordered_frames(pkts)
        count = len(self._senders)
        first = self._next_write_queue
        try:
            sent = self._mq.write_packet(frames)
        except XDPWriteError as error:  # validation passed: the rotation moved on
            self._next_write_queue = (first + len(frames)) % count
            if isinstance(error.__cause__, OSError):
                raise
            unsent = _unsent_shares(frames, first, count, error.sent)
        else:
            self._next_write_queue = (first + len(frames)) % count
            return sent
        sent = len(frames) - sum(len(share) for _, share in unsent)
        for queue, share in unsent:
            try:
                sent += await self._senders[queue].send(share)
            except OSError as error:
                raise XDPWriteError(f"writing to {self.ifname} queue {queue} failed after "
                                    f"{sent} frame(s): {error}", sent) from error
        return sent


def _unsent_shares(frames: Sequence[object], first: int, count: int, sent: int) -> list[tuple[int, Sequence[object]]]:
    """What ``XDPMultiQueue.write_packet`` left unsent when it stopped after ``sent`` frames.

    It gives frames ``offset, offset + count, ...`` to queue ``(first + offset) % count``,
    fills the queues in offset order, and stops at the first that cannot take its whole
    share: the queues before it took everything, that one took the rest of ``sent``.
    """
    unsent: list[tuple[int, Sequence[object]]] = []
    left = sent
    for offset in range(count):
        share = frames[offset::count]
        taken = min(left, len(share))
        left -= taken
        if taken < len(share):
            unsent.append(((first + offset) % count, share[taken:]))
    return unsent
