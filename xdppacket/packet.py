"""``XDPPacket``: read and write raw frames on one queue of one interface."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import replace
from types import TracebackType

from ._leases import release_views
from ._maps import LoadedProgram
from ._queue import XskQueue, frames_for_writing
from .options import (
    OptFrameSize,
    OptHeadroom,
    OptHugePages,
    OptNumFrames,
    XDPOptions,
    resolve_options,
)
from .stats import CaptureInfo, XDPStats

__all__ = ["XDPPacket", "check_batch_size", "wrap_queue"]


class XDPPacket:
    """One AF_XDP socket bound to queue ``options.queue_id`` of interface ``ifname``.

    Owns an ``XskQueue`` (the socket, its UMEM, rings and frames, and one reference to
    the interface's shared XDP program). ``close()`` (or leaving a ``with`` block)
    releases all of it; the last socket of the process on the interface detaches the
    program.

    Thread-safety: calls from several threads are serialised (reads with reads, writes
    with writes), so they never corrupt anything, and ``close()`` from another thread
    wakes a blocked call, which raises ``ValueError``. Zero-copy views are per socket,
    not per thread: any read ends the views any earlier read handed out.
    """

    def __init__(self, ifname: str, *opts: object) -> None:
        self._queue: XskQueue | None = None  # until fully built, so close() and __del__ are safe
        options = resolve_options(opts, owner="XDPPacket")
        sharer = None
        if options.shared_umem_with is not None:
            sharer = _umem_owner(options.shared_umem_with, opts)
            umem = sharer.options
            options = replace(options, frame_size=umem.frame_size, num_frames=umem.num_frames,
                              headroom=umem.headroom, huge_pages=umem.huge_pages)
        self._attach(XskQueue(ifname, options, share_with=sharer))

    def _attach(self, queue: XskQueue) -> None:
        self._queue = queue
        self.ifname = queue.ifname
        self.ifindex = queue.ifindex
        self.queue_id = queue.queue_id
        self.options: XDPOptions = queue.options
        # The fast paths below read these directly: the same objects as the queue's.
        self._ahead = queue.ahead
        self._ahead_views = queue.ahead_views
        self._handed = queue.handed_views

    # ----------------------------------------------------------------- lifetime
    @property
    def closed(self) -> bool:
        """True from the moment ``close()`` begins (in any thread)."""
        return self._queue is None or self._queue.closing

    def fileno(self) -> int:
        """The AF_XDP socket, for ``select``/``selectors``/``asyncio``: readable while frames wait."""
        return self._open_queue().fileno()

    def close(self) -> None:
        """Release zero-copy views, the socket, its memory and our share of the program.

        Idempotent; may be called from another thread (a blocked call then raises
        ``ValueError``). In a child process that inherited the socket through fork, only
        the child's own descriptors and mappings go: the parent keeps receiving.
        """
        if self._queue is not None:
            self._queue.close()

    def __enter__(self) -> XDPPacket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        queue = getattr(self, "_queue", None)
        if queue is not None and not queue.closed:
            if queue.opened_here:
                warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
            queue.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<XDPPacket {getattr(self, 'ifname', '?')} queue {getattr(self, 'queue_id', '?')} {state}>"

    def _open_queue(self) -> XskQueue:
        queue = self._queue
        if queue is None or queue.closed:
            raise ValueError("I/O operation on a closed XDPPacket")
        return queue

    @property
    def zero_copy(self) -> bool:
        """Whether the kernel bound this socket in zero-copy mode (see ``OptBindMode``)."""
        return self._open_queue().zero_copy

    @property
    def program(self) -> LoadedProgram:
        """The XDP program this socket's interface runs: its ``maps`` and ``global_variables``."""
        return self._open_queue().program.program

    # ---------------------------------------------------------------- receiving
    @property
    def pending_packets(self) -> int:
        """Frames already read ahead, returned by the next reads without waiting.

        While any wait, the socket also stays readable (read-ahead leaves one frame in
        the ring), so an event loop may do one read per readiness event.
        """
        return len(self._ahead) + len(self._ahead_views)

    def read_packet_data(self) -> tuple[bytes, CaptureInfo]:
        """One frame, copied out of the UMEM."""
        ahead = self._ahead
        if ahead and not self._handed:
            # The common case: a copy read ahead and no view to release first. (Frames
            # are read ahead only while open: close() empties the queue.)
            return ahead.popleft()
        return self._open_queue().read_one(copy=True, call="read_packet_data")  # type: ignore[return-value]

    def zero_copy_read_packet_data(self, writable: bool = False) -> tuple[memoryview, CaptureInfo]:
        """One frame as a view into the UMEM, valid until the next read or close().

        Read-only unless ``writable``. Written to this socket (or one sharing its UMEM),
        the view is sent in place, without a copy.
        """
        ahead = self._ahead_views
        if ahead and writable is self._queue.ahead_writable:  # type: ignore[union-attr]
            # The common case: a view read ahead. The view handed out last ends now; its
            # batch goes back to the kernel once the read-ahead is used up.
            handed = self._handed
            if len(handed) == 1:  # the last single read's view: released here, no call
                try:  # noqa: SIM105  (not contextlib.suppress: a with block costs more than the release)
                    handed.pop().release()
                except BufferError:
                    pass  # exported further: its batch stays lent until the export goes
            elif handed:
                release_views(handed)
                handed.clear()
            view, info = ahead.popleft()
            handed.append(view)
            return view, info
        return self._open_queue().read_one(copy=False, call="zero_copy_read_packet_data",  # type: ignore[return-value]
                                           writable=writable)

    def read_multi_packets(self, max_packets: int = 16) -> tuple[list[bytes], list[CaptureInfo]]:
        """Up to ``max_packets`` copied frames; at least one in blocking mode, maybe none otherwise."""
        return self._open_queue().read_batch(check_batch_size(max_packets), copy=True)  # type: ignore[return-value]

    def zero_copy_read_multi_packets(self, max_packets: int = 16,
                                     writable: bool = False) -> tuple[list[memoryview], list[CaptureInfo]]:
        """Like ``read_multi_packets`` but as views, valid until the next read or close()
        (writable ones if asked; see ``zero_copy_read_packet_data``)."""
        return self._open_queue().read_batch(check_batch_size(max_packets), copy=False,  # type: ignore[return-value]
                                             writable=writable)

    def __iter__(self) -> Iterator[tuple[bytes, CaptureInfo]]:
        """``for data, info in sock``: copies, waiting for each (ends when the socket closes)."""
        return self.packets()

    def packets(self, count: int | None = None, timeout: float | None = None) -> Iterator[tuple[bytes, CaptureInfo]]:
        """Copied frames until ``count`` were read or ``timeout`` seconds passed (None: no limit).

        Ends, rather than raising, when the socket is closed (from another thread too).
        In non-blocking mode an idle poll timeout just waits again.
        """
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError(f"count must be a non-negative int or None, got {count!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        queue = self._open_queue()
        taken = 0
        while count is None or taken < count:
            if deadline is not None and time.monotonic() >= deadline:
                return
            frame: tuple[bytes, CaptureInfo] | None
            try:
                if self._ahead and not self._handed:
                    frame = self._ahead.popleft()
                else:
                    frame = queue.read_within(deadline)
            except ValueError:
                if queue.closing:
                    return
                raise
            if frame is None:
                continue
            yield frame
            taken += 1

    # ------------------------------------------------------------------ sending
    def write_packet(self, data: object) -> None:
        """Queue one frame for sending; waits for tx room per the I/O mode."""
        queue = self._open_queue()
        if not queue.write(*frames_for_writing([data], queue.frame_limit)):
            raise queue.timeout("write_packet")

    def write_multi_packets(self, pkts: Iterable[object]) -> int:
        """Queue frames in order; return how many were queued (all of them in blocking mode).

        ``pkts`` is any ordered iterable of bytes-like frames (a list, a tuple, a
        generator); every frame is checked before the first is queued.
        """
        queue = self._open_queue()
        return queue.write(*queue.frames_to_write(pkts))

    # -------------------------------------------------------------------- stats
    def get_stats(self) -> XDPStats:
        """User-space counters plus the kernel's ``XDP_STATISTICS`` for this socket."""
        return self._open_queue().stats()

    def check_frames(self) -> dict[str, dict[str, int]]:
        """Check that every UMEM frame is in exactly one place; return the counts by place.

        For tests and debugging: raises ``FrameAccountingError`` (a library bug) when a
        frame is missing or in two places.
        """
        return self._open_queue().check_frames()


def _umem_owner(sock: object, opts: tuple[object, ...]) -> XskQueue:
    """The queue whose UMEM ``OptSharedUmem(sock)`` names; options that would size another
    UMEM are refused (they come from that one)."""
    if not isinstance(sock, XDPPacket):
        raise TypeError(f"OptSharedUmem takes an open XDPPacket, got {type(sock).__name__}")
    queue = sock._queue
    if queue is None or queue.closing:
        raise ValueError("OptSharedUmem: the XDPPacket whose UMEM to share is closed")
    umem = queue.options
    umem_settings = {OptFrameSize: umem.frame_size, OptNumFrames: umem.num_frames, OptHeadroom: umem.headroom,
                     OptHugePages: umem.huge_pages}
    for opt in opts:
        value = getattr(opt, "value", None)
        if umem_settings.get(type(opt), value) != value:
            raise ValueError(f"{opt!r} conflicts with the shared UMEM (frame size {umem.frame_size}, "
                             f"{umem.num_frames} frames, headroom {umem.headroom}, huge pages "
                             f"{umem.huge_pages}): leave it out, the UMEM's own settings apply")
    return queue


def wrap_queue(queue: XskQueue) -> XDPPacket:
    """An ``XDPPacket`` over an already open queue (``XDPMultiQueue`` builds its sockets so)."""
    sock = XDPPacket.__new__(XDPPacket)
    sock._attach(queue)
    return sock


def check_batch_size(max_packets: int) -> int:
    if isinstance(max_packets, bool) or not isinstance(max_packets, int):
        raise TypeError(f"max_packets takes an int, got {type(max_packets).__name__}")
    if max_packets < 1:
        raise ValueError(f"max_packets must be at least 1, got {max_packets}")
    return max_packets
