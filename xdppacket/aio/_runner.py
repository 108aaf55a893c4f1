"""``ReceiveThread``: a socket's receive loop in a thread of its own, feeding asyncio code.

An event loop that is busy elsewhere (parsing, HTTP, a database) may not come back to a
socket often enough to keep its ring drained, and the kernel then drops frames it has no
room for. A thread that does nothing but read keeps the ring drained; it hands the
copied batches to the loop through a bounded queue and counts the batches it had to drop
when the consumer falls behind, so loss is visible in one place and never unbounded
memory. README.md ("asyncio") compares it with reading directly, with figures.

The thread competes with the loop for the GIL: it helps when the loop waits (on I/O, on
C code that releases the GIL) or does its work in bursts, not when the loop's Python code
runs flat out on the only core it could use.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from ..stats import CaptureInfo

__all__ = ["Batch", "ReceiveStats", "ReceiveThread"]

#: What the thread hands over: copied frames and their infos, as ``read_multi_packets`` returns them.
Batch = tuple[list[bytes], list[CaptureInfo]]


class BatchReader(Protocol):
    """A synchronous socket: ``XDPPacket`` or ``XDPMultiQueue``."""

    @property
    def closed(self) -> bool: ...

    def read_multi_packets(self, max_packets: int = ...) -> Batch: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReceiveStats:
    """Counters of a receive runner: frames read, taken by the consumer, dropped because it fell behind."""

    __slots__ = ("read_packets", "delivered_packets", "dropped_batches", "dropped_packets")

    read_packets: int
    delivered_packets: int
    dropped_batches: int
    dropped_packets: int


class ReceiveThread:
    """Reads ``sock`` in a daemon thread and queues copied batches for asyncio code.

    Takes ownership of ``sock`` (an ``XDPPacket`` or ``XDPMultiQueue`` in blocking mode,
    so the thread sleeps while nothing arrives): ``close()`` closes it, which wakes the
    thread, and waits for the thread to end. At most ``max_batches`` batches of up to
    ``batch_size`` frames wait for the consumer; a batch read while that many wait is
    dropped and counted (``stats()``). ``get()``, ``async for`` and ``close()`` belong
    to the event loop that called ``start()`` (``async with`` starts it).
    """

    def __init__(self, sock: BatchReader, *, batch_size: int = 256, max_batches: int = 64) -> None:
        for name, value in (("batch_size", batch_size), ("max_batches", max_batches)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReceiveThread: {name} must be a positive int, got {value!r}")
        self._sock = sock
        self._batch_size = batch_size
        self._max_batches = max_batches
        self._batches: deque[Batch] = deque()
        self._lock = threading.Lock()  # guards the deque, the waiter, the counters and the end
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ended = False
        self._closing = False
        self._error: BaseException | None = None
        self._read_packets = self._delivered_packets = self._dropped_batches = self._dropped_packets = 0

    # ----------------------------------------------------------------- lifetime
    def start(self) -> None:
        """Start reading, for the running event loop."""
        if self._thread is not None:
            raise RuntimeError("ReceiveThread.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"xdppacket-receive-{id(self):x}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Close the socket, which ends the thread, and wait for it; pending batches are discarded."""
        self._closing = True
        self._sock.close()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._batches.clear()

    async def __aenter__(self) -> ReceiveThread:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        sock = self._sock
        read = sock.read_multi_packets
        size = self._batch_size
        error: BaseException | None = None
        try:
            while True:
                try:
                    packets, infos = read(size)
                except ValueError:
                    # A blocked read that close() woke raises before ``sock.closed`` turns True.
                    if self._closing or sock.closed:
                        break
                    raise
                if packets:
                    self._hand_over((packets, infos))
        except BaseException as exc:  # given to the consumer, which raises it
            error = exc
        with self._lock:
            self._ended = True
            self._error = error
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._wake(waiter)

    def _hand_over(self, batch: Batch) -> None:
        count = len(batch[0])
        with self._lock:
            self._read_packets += count
            if len(self._batches) >= self._max_batches:
                self._dropped_batches += 1
                self._dropped_packets += count
                return
            self._batches.append(batch)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:  # wake the loop only when the consumer waits: one syscall per wait
            self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(_set_done, waiter)

    # ---------------------------------------------------------------- consuming
    async def get(self) -> Batch:
        """The next batch, waiting for one; ``EOFError`` once the socket is closed and all were taken.

        An error that ended the thread (an ``OSError`` from the socket) is raised here.
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._batches:
                    batch = self._batches.popleft()
                    self._delivered_packets += len(batch[0])
                    return batch
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    raise EOFError("the ReceiveThread's socket is closed")
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiter = waiter
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None

    def __aiter__(self) -> ReceiveThread:
        return self

    async def __anext__(self) -> Batch:
        """``async for packets, infos in runner``: batches until the socket is closed."""
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    def stats(self) -> ReceiveStats:
        """Frames read, taken by the consumer, dropped because it fell behind."""
        with self._lock:
            return ReceiveStats(self._read_packets, self._delivered_packets, self._dropped_batches,
                                self._dropped_packets)

    @property
    def pending_batches(self) -> int:
        """Batches read and waiting for the consumer."""
        with self._lock:
            return len(self._batches)


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
