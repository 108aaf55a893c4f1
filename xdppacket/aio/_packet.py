"""``AsyncXDPPacket``: ``XDPPacket`` for asyncio, reads and writes as coroutines.

Built on a synchronous ``XDPPacket`` in non-blocking mode with a zero poll timeout, so
every call into it returns at once. A read tries the socket and, only if it had nothing,
awaits readiness and tries again: a coroutine never awaits after it has taken a frame,
so cancelling it (at its only await) can never lose one. Frames read ahead by the
synchronous socket stay there for the next read, and read-ahead leaves the last frame
in the ring, so the descriptor is readable for as long as frames wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, ValuesView
from collections.abc import Set as AbstractSet
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from ..errors import XDPTimeoutError
from ..options import XDPOptions
from ..packet import XDPPacket
from ..stats import CaptureInfo, XDPStats
from ._options import event_loop_options
from ._readiness import Readiness
from ._sending import QueueSender

__all__ = ["AsyncXDPPacket", "BatchIterator", "PacketIterator", "batch_if_any", "frame_if_any",
           "ordered_frames"]

_P = TypeVar("_P")  # bytes or memoryview
# What the synchronous write refuses with a precise message: one packet, or an unordered container.
_REFUSED = (bytes, bytearray, memoryview, str, AbstractSet, Mapping, ValuesView)


class AsyncXDPPacket:
    """One AF_XDP socket on queue ``OptQueueID`` of ``ifname``, driven by the running event loop.

    Owns a synchronous ``XDPPacket`` (the socket, its memory, its share of the XDP
    program) and the loop registrations of its descriptor, which exist only while a
    coroutine waits. ``close()`` releases everything and wakes waiting coroutines, which
    then raise ``ValueError``. Use it from one event loop's thread.

    Reads of several coroutines at once are allowed; zero-copy views are per socket, so
    any read ends the views an earlier read handed out (the synchronous rule). Writes of
    several coroutines are sent one call after the other, each call whole.
    """

    def __init__(self, ifname: str, *opts: object) -> None:
        self._sock = XDPPacket(ifname, *event_loop_options(opts))
        self._readable = Readiness(self._sock.fileno(), writable=False)
        self._sender = QueueSender(self._sock)
        self.ifname = self._sock.ifname
        self.ifindex = self._sock.ifindex
        self.queue_id = self._sock.queue_id
        self.options: XDPOptions = self._sock.options

    # ----------------------------------------------------------------- lifetime
    @property
    def closed(self) -> bool:
        return self._sock.closed

    def fileno(self) -> int:
        """The AF_XDP socket: readable while frames wait (as ``XDPPacket.fileno``)."""
        return self._sock.fileno()

    def close(self) -> None:
        """Release the socket; coroutines waiting on it wake and raise ``ValueError``. Idempotent."""
        if self._sock.closed:
            return
        self._readable.detach()  # before the descriptor goes: the loop must not watch a closed fd
        self._sender.detach()
        self._sock.close()

    async def __aenter__(self) -> AsyncXDPPacket:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AsyncXDPPacket {self.ifname} queue {self.queue_id} {'closed' if self.closed else 'open'}>"

    @property
    def sync_socket(self) -> XDPPacket:
        """The synchronous socket underneath (non-blocking, zero poll timeout): ``program``, ``check_frames``."""
        return self._sock

    def get_stats(self) -> XDPStats:
        return self._sock.get_stats()

    def check_frames(self) -> dict[str, dict[str, int]]:
        """``XDPPacket.check_frames``: every UMEM frame in exactly one place (tests, debugging)."""
        return self._sock.check_frames()

    # ---------------------------------------------------------------- receiving
    @property
    def pending_packets(self) -> int:
        """Frames already read ahead: the next reads return them without waiting."""
        return self._sock.pending_packets

    async def read_packet_data(self) -> tuple[bytes, CaptureInfo]:
        """One frame, copied; waits (without blocking the loop) until one arrives."""
        return await self._readable.first_result(lambda: frame_if_any(self._sock.read_packet_data))

    async def zero_copy_read_packet_data(self, writable: bool = False) -> tuple[memoryview, CaptureInfo]:
        """One frame as a view into the UMEM, valid until the next read or ``close()``; writable
        if asked, to change it and write it back (sent in place, as ``XDPPacket``'s are)."""
        return await self._readable.first_result(
            lambda: frame_if_any(lambda: self._sock.zero_copy_read_packet_data(writable)))

    async def read_multi_packets(self, max_packets: int = 16) -> tuple[list[bytes], list[CaptureInfo]]:
        """Between one and ``max_packets`` copied frames."""
        return await self._readable.first_result(
            lambda: batch_if_any(self._sock.read_multi_packets(max_packets)))

    async def zero_copy_read_multi_packets(self, max_packets: int = 16,
                                           writable: bool = False) -> tuple[list[memoryview], list[CaptureInfo]]:
        """Between one and ``max_packets`` frames as views, valid until the next read or
        ``close()`` (writable ones if asked)."""
        return await self._readable.first_result(
            lambda: batch_if_any(self._sock.zero_copy_read_multi_packets(max_packets, writable)))

    def __aiter__(self) -> PacketIterator:
        """``async for data, info in sock``: copies, one at a time; ends when the socket closes."""
        return PacketIterator(self.read_packet_data, lambda: self.closed)

    @overload
    def batches(self, max_packets: int = ..., zero_copy: Literal[False] = ...) -> BatchIterator[bytes]: ...

    @overload
    def batches(self, max_packets: int = ..., *, zero_copy: Literal[True],
                writable: bool = ...) -> BatchIterator[memoryview]: ...

    def batches(self, max_packets: int = 64, zero_copy: bool = False, writable: bool = False) -> BatchIterator[Any]:
        """``async for packets, infos in sock.batches(n)``: batches of up to ``n`` frames.

        With ``zero_copy=True`` the packets are views (writable ones if asked), valid until
        the next iteration.
        """
        if zero_copy:
            return BatchIterator(lambda: self.zero_copy_read_multi_packets(max_packets, writable),
                                 lambda: self.closed)
        return BatchIterator(lambda: self.read_multi_packets(max_packets), lambda: self.closed)

    # ------------------------------------------------------------------ sending
    async def write_packet(self, data: object) -> None:
        """Queue one frame for sending, waiting for room in the tx ring."""
        await self._sender.send([data])

    async def write_multi_packets(self, pkts: Iterable[object]) -> int:
        """Queue every frame in order, waiting for room; return how many (all of them).

        Every frame is checked before the first is queued. Cancelled while it waits, the
        frames queued so far are sent and the others are not.
        """
        return await self._sender.send(ordered_frames(pkts))


class PacketIterator:
    """The ``async for`` of a socket: holds no frame between iterations, so ``break`` loses none.

    Each step is one read; the iteration ends when the socket is closed.
    """

    def __init__(self, read: Callable[[], Awaitable[tuple[bytes, CaptureInfo]]],
                 closed: Callable[[], bool]) -> None:
        self._read = read
        self._closed = closed

    def __aiter__(self) -> PacketIterator:
        return self

    async def __anext__(self) -> tuple[bytes, CaptureInfo]:
        try:
            return await self._read()
        except ValueError:
            if self._closed():
                raise StopAsyncIteration from None
            raise


class BatchIterator(Generic[_P]):
    """``sock.batches(n)``: one batched read per iteration, nothing kept between them."""

    def __init__(self, read: Callable[[], Awaitable[tuple[list[_P], list[CaptureInfo]]]],
                 closed: Callable[[], bool]) -> None:
        self._read: Callable[[], Awaitable[tuple[list[_P], list[CaptureInfo]]]] = read
        self._closed = closed

    def __aiter__(self) -> BatchIterator[_P]:
        return self

    async def __anext__(self) -> tuple[list[_P], list[CaptureInfo]]:
        try:
            return await self._read()
        except ValueError:
            if self._closed():
                raise StopAsyncIteration from None
            raise


def frame_if_any(read: Callable[[], tuple[_P, CaptureInfo]]) -> tuple[_P, CaptureInfo] | None:
    """A non-blocking single-frame read's frame, or None where it found none."""
    try:
        return read()
    except XDPTimeoutError:
        return None


def batch_if_any(batch: tuple[list[_P], list[CaptureInfo]]) -> tuple[list[_P], list[CaptureInfo]] | None:
    """A non-blocking batched read's batch, or None where it found no frame."""
    return batch if batch[0] else None


def ordered_frames(pkts: Iterable[object]) -> Sequence[object]:
    """``pkts`` as a sequence a write can resume in: a one-shot iterator is read once, here.

    Anything else goes to the synchronous write as it is, which refuses bad containers
    (a set, a single bytes object) with its own message.
    """
    if isinstance(pkts, (list, tuple)):
        return pkts
    if isinstance(pkts, _REFUSED) or not isinstance(pkts, Iterable):
        return pkts  # type: ignore[return-value]  # the first write refuses it, by name
    return list(pkts)
