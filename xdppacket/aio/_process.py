"""``ReceiveProcess``: a socket opened and read in a child process, feeding asyncio code.

``ReceiveThread`` shares the GIL with the event loop; when the loop's own Python code is
what keeps it busy, a thread cannot help. A child process has an interpreter of its own:
it opens the socket, keeps the ring drained, and sends copied batches over a
``SOCK_SEQPACKET`` socket pair whose send buffer is the bounded queue: a batch that does
not fit is dropped and counted in the child, never waited for. The parent's loop reads
the pair like any socket. The cost is a copy through the kernel and a pickle per batch.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from types import TracebackType

from ..multiqueue import XDPMultiQueue
from ..packet import XDPPacket
from ..stats import CaptureInfo
from ._readiness import Readiness
from ._receive_child import CHILD_COMMAND, ChildConfig, Message
from ._runner import Batch, ReceiveStats

__all__ = ["ReceiveProcess"]

# Each message carries at most this many frame bytes, so any batch fits the send buffer.
_MAX_MESSAGE_BYTES = 256 * 1024
_STOP_TIMEOUT_S = 5.0


class ReceiveProcess:
    """Opens ``socket_class(ifname, *opts)`` in a child process and receives its batches.

    ``socket_class`` is ``XDPPacket`` or ``XDPMultiQueue`` (blocking mode, the default,
    lets the child sleep while nothing arrives). At most about ``buffer_bytes`` of
    batches wait for the consumer; the rest are dropped and counted (``stats()``).
    ``await start()`` (or ``async with``) raises what opening the socket raised;
    ``close()`` stops the child, which releases the socket. Use it from one event loop.
    """

    def __init__(self, socket_class: type[XDPPacket] | type[XDPMultiQueue], ifname: str, *opts: object,
                 batch_size: int = 256, buffer_bytes: int = 16 * 1024 * 1024) -> None:
        if socket_class not in (XDPPacket, XDPMultiQueue):
            raise TypeError(f"ReceiveProcess opens an XDPPacket or an XDPMultiQueue, not {socket_class!r}")
        for name, value in (("batch_size", batch_size), ("buffer_bytes", buffer_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReceiveProcess: {name} must be a positive int, got {value!r}")
        self._config = ChildConfig(socket_class, ifname, opts, batch_size, buffer_bytes,
                                   min(_MAX_MESSAGE_BYTES, buffer_bytes))
        self._channel: socket.socket | None = None
        self._readable: Readiness | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._latest = Message.ready()  # the child's counters as of the last message
        self._delivered_packets = 0

    # ----------------------------------------------------------------- lifetime
    async def start(self) -> None:
        """Start the child and wait until its socket is open (raising what opening raised)."""
        if self._child is not None:
            raise RuntimeError("ReceiveProcess.start() called twice")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._channel = ours
        self._readable = Readiness(ours.fileno(), writable=False)
        with theirs:
            self._child = subprocess.Popen(
                [sys.executable, "-c", CHILD_COMMAND, str(theirs.fileno()), str(os.getpid())],
                stdin=subprocess.PIPE, pass_fds=[theirs.fileno()],
            )
        assert self._child.stdin is not None
        with self._child.stdin as config_pipe:
            config_pipe.write(pickle.dumps(self._config))
        try:
            first = await self._receive()
        except BaseException:
            self.close()
            raise
        if first.error is not None:
            self.close()
            raise first.error

    def close(self) -> None:
        """Stop the child (which closes its socket) and drop undelivered batches. Idempotent."""
        if self._readable is not None:
            self._readable.detach()
        if self._channel is not None:
            self._channel.close()
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    async def __aenter__(self) -> ReceiveProcess:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- consuming
    async def _receive(self) -> Message:
        channel = self._channel
        readable = self._readable
        if channel is None or readable is None or channel.fileno() < 0:
            raise EOFError("the ReceiveProcess is closed")
        while True:
            try:
                data = channel.recv(_MAX_MESSAGE_BYTES * 2)
            except BlockingIOError:
                await readable.wait()
                if channel.fileno() < 0:
                    raise EOFError("the ReceiveProcess is closed") from None
                continue
            if not data:
                raise EOFError("the ReceiveProcess's child has exited")
            message: Message = pickle.loads(data)
            return message

    async def get(self) -> Batch:
        """The next batch (copies); ``EOFError`` once closed or once the child has exited."""
        message = await self._receive()
        self._latest = message
        self._delivered_packets += len(message.packets)
        infos: list[CaptureInfo] = message.infos
        return message.packets, infos

    def __aiter__(self) -> ReceiveProcess:
        return self

    async def __anext__(self) -> Batch:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    def stats(self) -> ReceiveStats:
        """The child's counters as of the batch delivered last, and what the consumer took."""
        latest = self._latest
        return ReceiveStats(latest.read_packets, self._delivered_packets, latest.dropped_batches,
                            latest.dropped_packets)

    @property
    def kernel_dropped(self) -> int:
        """The kernel's ``rx_dropped`` for the socket (all queues), as of the batch delivered last."""
        return self._latest.kernel_dropped

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return None if self._child is None else self._child.pid
