"""scapy over AF_XDP: ``XDPSuperSocket``, a scapy ``SuperSocket`` backed by xdppacket.

Needs scapy (``pip install xdppacket[scapy]``); importing ``xdppacket`` alone never
imports scapy. With it, scapy's own functions run over AF_XDP::

    from scapy.all import Ether, sendp, sniff
    from xdppacket import OptQueueCount
    from xdppacket.scapy import XDPSuperSocket

    with XDPSuperSocket("eth0", OptQueueCount(4)) as sock:
        packets = sniff(opened_socket=sock, count=10)
        sendp(Ether(dst="ff:ff:ff:ff:ff:ff") / b"hello", socket=sock)

How it meets scapy's contract: ``sniff`` waits in the class's ``select`` and then calls
``recv`` once per packet. ``recv`` hands out frames from a batch read
(``read_multi_packets``), so one system call serves many packets; the frames of that
batch, and any frames the ``XDPPacket`` itself read ahead (``pending_packets``), are
waiting in user space where no file descriptor shows them, so ``select`` reports such a
socket ready without asking the kernel. ``fileno()`` is the AF_XDP socket's, or for
several queues an epoll descriptor over all of them, so a plain ``select`` works too.
"""

from __future__ import annotations

import select as _select
import time
from collections import deque

from scapy.automaton import select_objects
from scapy.config import conf
from scapy.data import MTU
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.supersocket import SuperSocket

from .errors import XDPTimeoutError
from .multiqueue import XDPMultiQueue
from .options import IO_MODE_NONBLOCK, OptIoMode, OptPollTimeout, OptQueueCount
from .packet import XDPPacket
from .stats import CaptureInfo

__all__ = ["XDPSuperSocket"]

# Each read and write waits at most this long in the library (scapy's select does the
# real waiting); a write that finds the tx ring full simply tries again.
_POLL_TIMEOUT_US = 10_000


class XDPSuperSocket(SuperSocket):
    """A scapy ``SuperSocket`` over one AF_XDP queue of ``ifname``, or over queues
    ``[0, n)`` when ``OptQueueCount(n)`` is among ``opts``.

    Options are xdppacket's (``OptXDPMode``, ``OptQueueID``, ``OptFilter``, ...) except
    ``OptIoMode`` and ``OptPollTimeout``, which are overridden: waiting is scapy's.
    Received frames are dissected as ``Ether`` with ``time`` set from their
    ``CaptureInfo``; ``recv_capture_info`` gives that ``CaptureInfo`` for the last frame.
    ``send`` transmits on the first queue, so frames leave in the order sent.

    Owns the xdppacket socket(s) until ``close()`` (also a context manager). Like scapy's
    own sockets, use it from one thread at a time (``AsyncSniffer`` is that one thread
    while it runs).
    """

    desc = "AF_XDP through xdppacket"
    nonblocking_socket = False

    def __init__(self, ifname: str, *opts: object, batch_size: int = 64) -> None:
        # Everything close() (also run by scapy's __del__) looks at exists before anything can fail.
        self.closed = False
        self._received: deque[tuple[bytes, CaptureInfo]] = deque()
        self._epoll: _select.epoll | None = None
        self._xdp: XDPPacket | XDPMultiQueue
        self._sockets: list[XDPPacket] = []
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        self.iface = ifname
        self.LL: type[Packet] = Ether
        self._batch_size = batch_size
        self._last_info: CaptureInfo | None = None
        overrides = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(_POLL_TIMEOUT_US))
        if any(isinstance(opt, OptQueueCount) for opt in opts):
            self._xdp = XDPMultiQueue(ifname, *opts, *overrides)
            self._sockets = self._xdp.sockets
            try:
                self._epoll = _select.epoll()
                for sock in self._sockets:
                    self._epoll.register(sock.fileno(), _select.EPOLLIN)
            except BaseException:
                self.close()
                raise
        else:
            self._xdp = XDPPacket(ifname, *opts, *overrides)
            self._sockets = [self._xdp]

    # ---------------------------------------------------------------- receiving
    @property
    def pending_packets(self) -> int:
        """Frames already taken off the rings and waiting in user space for ``recv``."""
        return len(self._received) + sum(
            getattr(sock, "pending_packets", 0) for sock in self._sockets
        )

    def recv_raw(self, x: int = MTU) -> tuple[type[Packet] | None, bytes | None, float | None]:
        """The next frame (at most ``x`` bytes of it) as scapy wants it; ``(None, ...)`` if none.

        Raises ``EOFError`` once closed, which ends a ``sniff`` on this socket.
        """
        if self.closed:
            raise EOFError("XDPSuperSocket is closed")
        if not self._received:
            packets, infos = self._xdp.read_multi_packets(self._batch_size)
            self._received.extend(zip(packets, infos))
            if not self._received:
                return None, None, None
        data, info = self._received.popleft()
        self._last_info = info
        return self.LL, data if len(data) <= x else data[:x], info.timestamp

    @property
    def recv_capture_info(self) -> CaptureInfo | None:
        """The ``CaptureInfo`` (queue, timestamp, lengths) of the frame ``recv`` returned last."""
        return self._last_info

    @staticmethod
    def select(
        sockets: list[SuperSocket], remain: float | None = conf.recv_poll_rate
    ) -> list[SuperSocket]:
        """The sockets ready to ``recv``: those with frames waiting in user space at once,
        else whatever becomes readable within ``remain`` seconds (``None``: no limit)."""
        waiting: list[SuperSocket] = [
            sock
            for sock in sockets
            if isinstance(sock, XDPSuperSocket) and (sock.closed or sock.pending_packets)
        ]
        if waiting:
            return waiting
        ready: list[SuperSocket] = select_objects(sockets, remain)
        return ready

    def fileno(self) -> int:
        """Readable when a frame waits in a ring: the AF_XDP socket, or an epoll over all queues."""
        if self._epoll is not None:
            return self._epoll.fileno()
        return self._sockets[0].fileno()

    # ------------------------------------------------------------------ sending
    def send(self, x: Packet | bytes) -> int:
        """Send one frame (a scapy packet or bytes); wait for room; return its length."""
        frame = bytes(x)
        if isinstance(x, Packet):
            x.sent_time = time.time()
        sender = self._sockets[0]
        while True:
            try:
                sender.write_packet(frame)
            except XDPTimeoutError:
                continue  # the tx ring stayed full for a poll timeout: wait again
            return len(frame)

    # ----------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Close the AF_XDP socket(s); idempotent."""
        if self.closed:
            return
        self.closed = True
        self._received.clear()
        xdp = getattr(self, "_xdp", None)  # absent if __init__ failed before it existed
        if xdp is not None:
            xdp.close()
        if self._epoll is not None:
            self._epoll.close()

    def __enter__(self) -> XDPSuperSocket:
        return self

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._sockets)} queue(s)"
        return f"<XDPSuperSocket {self.iface} {state}>"
