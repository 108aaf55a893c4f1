"""``XDPPacket``: read and write raw frames on one queue of one interface."""

from __future__ import annotations

import errno
import time
from array import array
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Union

from . import _netlink
from . import _uapi as uapi
from ._interface import interface_index, rx_queue_count
from ._program import XskProgram
from ._umem import release_views
from ._wait import wait_readable, wait_writable
from ._xsk import XskSocket
from .errors import XDPTimeoutError
from .options import XDPMode, XDPOptions, resolve_options
from .stats import CaptureInfo, XDPStats

__all__ = ["XDPPacket"]

_new_tuple = tuple.__new__
#: A frame ready to copy into the UMEM: validated, with ``len`` in bytes.
Frame = Union[bytes, bytearray, memoryview]
#: A received frame: a copy or a zero-copy view.
Packet = Union[bytes, memoryview]
# Ethernet header and one VLAN tag: what a frame may carry beyond the MTU.
_ETH_HLEN = 14
_VLAN_HLEN = 4
# Frames a single read takes off the ring at once (see "receiving" below).
_READ_AHEAD = 64
# A blocked write re-checks the completion ring this often: copy-mode completions
# arrive when the kernel frees the sent buffers, which does not wake poll().
_BLOCKED_WRITE_RECHECK_US = 1000
# Upper bound on tx kicks per write: copy mode sends a limited batch per kick (32
# frames, or the whole ring where XDP_MAX_TX_SKB_BUDGET is available).
_MAX_KICKS_PER_WRITE = 256


class XDPPacket:
    """One AF_XDP socket bound to queue ``options.queue_id`` of interface ``ifname``.

    Owns the socket, its UMEM and rings, and one reference to the interface's shared
    XDP program. ``close()`` (or leaving a ``with`` block) releases all of it; the last
    socket of the process on the interface detaches the program.

    Not thread-safe: use one socket per thread (one per queue is the natural split).
    """

    def __init__(self, ifname: str, *opts: object) -> None:
        self._closed = True  # until fully built, so close() and __del__ are safe
        options = resolve_options(opts, owner="XDPPacket")
        self._open(ifname, options)

    @classmethod
    def _for_queue(cls, ifname: str, options: XDPOptions) -> XDPPacket:
        """Build a socket from resolved options (``XDPMultiQueue`` uses this per queue)."""
        self = cls.__new__(cls)
        self._closed = True
        self._open(ifname, options)
        return self

    def _open(self, ifname: str, options: XDPOptions) -> None:
        ifindex = interface_index(ifname)
        queues = rx_queue_count(ifname)
        if options.queue_id >= queues:
            raise ValueError(
                f"OptQueueID({options.queue_id}): {ifname} has {queues} rx queue(s), "
                f"so the queue id must be below {queues}"
            )
        self.ifname = ifname
        self.ifindex = ifindex
        self.queue_id = options.queue_id
        self.options = options
        self._frame_limit = _largest_frame(ifname, ifindex, options.frame_size)
        self._program = XskProgram.acquire(ifname, ifindex, options.xdp_mode, queues, options.program_path,
                                           options.queue_id)
        try:
            bind_flags = uapi.XDP_USE_NEED_WAKEUP
            if options.xdp_mode is XDPMode.SKB:
                bind_flags |= uapi.XDP_COPY
            self._xsk = XskSocket(
                ifname, ifindex, options.queue_id, options.num_frames, options.frame_size,
                options.ring_size, bind_flags,
            )
            try:
                self._program.register(options.queue_id, self._xsk.fileno())
            except BaseException:
                self._xsk.close()
                raise
        except BaseException:
            self._program.release()
            raise
        umem = self._xsk.umem
        assert umem is not None
        self._umem = umem
        self._area = umem.map
        self._rx = self._xsk.rx
        self._fill = self._xsk.fill
        self._tx = self._xsk.tx
        self._completion = self._xsk.completion
        self._fds = [self._xsk.fileno()]
        self._timeout_us: int | None = None if options.blocking else options.poll_timeout_us
        self._leases = umem.leases
        self._pending: deque[tuple[Packet, CaptureInfo]] = deque()
        self._pending_are_views = False
        # Read-ahead views keep their whole batch from the kernel until the batch is used
        # up, so zero-copy read-ahead takes at most an eighth of the rx frames.
        self._zero_copy_read_ahead = max(1, min(_READ_AHEAD, options.num_frames // 8))
        self._handed_views: list[memoryview] = []
        self._rx_packets = self._rx_bytes = self._tx_packets = self._tx_bytes = 0
        self._polls = self._rx_empty = self._tx_full = self._fq_full = 0
        self._cq_empty = self._send_busy = self._send_again = 0
        self._last_kick_errno = 0  # names a down interface in timeout errors
        self._closed = False

    # ----------------------------------------------------------------- lifetime
    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """The AF_XDP socket, for ``select``/``selectors``/``asyncio``: readable means frames wait."""
        self._check_open()
        return self._fds[0]

    def close(self) -> None:
        """Release zero-copy views, the socket, its memory and our share of the program."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        release_views(self._handed_views)
        try:
            self._program.unregister(self.queue_id)
        finally:
            self._xsk.close()
            self._program.release()

    def __enter__(self) -> XDPPacket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<XDPPacket {getattr(self, 'ifname', '?')} queue {getattr(self, 'queue_id', '?')} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed XDPPacket")

    # ---------------------------------------------------------------- receiving
    #
    # Frames come off the rx ring in batches. Single reads read ahead: they take up to
    # _READ_AHEAD ready frames at once into ``_pending`` and hand them out one per call,
    # which makes a single read about ten times cheaper. ``_pending`` holds either copies
    # or zero-copy views of the current lease (``_pending_are_views``); each read converts
    # to the flavour it promises. Views handed out from ``_pending`` are released at the
    # next read, like those of a batched zero-copy read.

    @property
    def pending_packets(self) -> int:
        """Frames already taken off the ring by read-ahead, returned by the next reads.

        ``select`` on ``fileno()`` only sees frames still in the ring, so an event loop
        should read until this is 0 before waiting again (like ``ssl.SSLSocket.pending``).
        """
        return len(self._pending)

    def read_packet_data(self) -> tuple[bytes, CaptureInfo]:
        """One frame, copied out of the UMEM."""
        pending = self._pending
        if pending and not self._pending_are_views and not self._handed_views:
            # The common case: a copy read ahead and no view to release first. (Pending
            # frames exist only while open: close() empties the queue.)
            return pending.popleft()  # type: ignore[return-value]
        return self._read_one(copy=True, call="read_packet_data")  # type: ignore[return-value]

    def zero_copy_read_packet_data(self) -> tuple[memoryview, CaptureInfo]:
        """One frame as a read-only view into the UMEM, valid until the next read or close()."""
        pending = self._pending
        if pending and self._pending_are_views:
            # The common case: a view read ahead. The view handed out last ends now; its
            # batch goes back to the kernel once the read-ahead is used up (_begin_read).
            if self._handed_views:
                release_views(self._handed_views)
            view, info = pending.popleft()
            self._handed_views = [view]  # type: ignore[list-item]
            return view, info  # type: ignore[return-value]
        return self._read_one(copy=False, call="zero_copy_read_packet_data")  # type: ignore[return-value]

    def read_multi_packets(self, max_packets: int = 16) -> tuple[list[bytes], list[CaptureInfo]]:
        """Up to ``max_packets`` copied frames; at least one in blocking mode, maybe none otherwise."""
        return self._read_batch(_check_batch_size(max_packets), copy=True)  # type: ignore[return-value]

    def zero_copy_read_multi_packets(self, max_packets: int = 16) -> tuple[list[memoryview], list[CaptureInfo]]:
        """Like ``read_multi_packets`` but as views, valid until the next read or close()."""
        return self._read_batch(_check_batch_size(max_packets), copy=False)  # type: ignore[return-value]

    def _read_one(self, copy: bool, call: str) -> tuple[Packet, CaptureInfo]:
        self._begin_read()
        frame = self._next_ready(copy)
        if frame is None:
            if not self._wait_for_rx(1):
                raise self._timeout(call)
            frame = self._next_ready(copy)
            assert frame is not None
        return frame

    def _poll_one(self, copy: bool) -> tuple[Packet, CaptureInfo] | None:
        """One frame if there is one, without waiting: the step of a multi-queue read.

        Takes ``read_packet_data``'s fast path when it can, and skips an idle queue (nothing
        read ahead, nothing lent, empty ring) without touching anything else.
        """
        pending = self._pending
        if copy and pending and not self._pending_are_views and not self._handed_views:
            return pending.popleft()
        if not (pending or self._handed_views or self._leases.outstanding or self._rx.available(1)):
            return None
        self._begin_read()
        return self._next_ready(copy)

    def _next_ready(self, copy: bool) -> tuple[Packet, CaptureInfo] | None:
        """One frame, read ahead if need be, without waiting; None if the ring is empty."""
        pending = self._pending
        if not pending and not self._read_ahead(copy):
            return None
        packet, info = pending.popleft()
        if copy and not self._pending_are_views:
            return packet, info  # the common case, kept short
        return self._hand_out(packet, copy), info

    def _read_batch(self, max_packets: int, copy: bool) -> tuple[list[Packet], list[CaptureInfo]]:
        self._begin_read()
        if self._pending:
            return self._take_ready(self._ready(max_packets), copy)
        count = self._rx.available(max_packets) or self._wait_for_rx(max_packets)
        if not count:
            return [], []
        return self._take(count, copy)

    def _begin_read(self) -> None:
        """Every read starts here: zero-copy views handed out by the previous read end now."""
        self._check_open()
        if self._handed_views:
            release_views(self._handed_views)  # one exported further keeps its frame via the lease
            self._handed_views = []
        if not self._pending and self._leases.outstanding:
            self._umem.rx_free.extend(self._leases.reclaim())
            self._refill()

    def _ready(self, limit: int) -> int:
        """How many frames (up to ``limit``) a read could return now without waiting."""
        if self._pending:
            return min(len(self._pending), limit)
        return self._rx.available(limit)

    def _read_ahead(self, copy: bool) -> bool:
        """Move the frames ready in the ring (up to a limit) to ``_pending``; False if none."""
        count = self._rx.available(_READ_AHEAD if copy else self._zero_copy_read_ahead)
        if not count:
            return False
        packets, infos = self._take(count, copy)
        self._pending.extend(zip(packets, infos))
        self._pending_are_views = not copy
        return True

    def _take_ready(self, count: int, copy: bool) -> tuple[list[Packet], list[CaptureInfo]]:
        """Take ``count`` frames that ``_ready`` reported, read-ahead ones first."""
        if not self._pending:
            return self._take(count, copy)
        pending = self._pending
        pairs = [pending.popleft() for _ in range(count)]
        return [self._hand_out(packet, copy) for packet, _ in pairs], [info for _, info in pairs]

    def _hand_out(self, packet: Packet, copy: bool) -> Packet:
        """A read-ahead frame in the flavour the read promises.

        Views (of the UMEM, or of a read-ahead copy) are recorded so the next read
        releases them, as the zero-copy rule requires.
        """
        if copy:
            return bytes(packet) if self._pending_are_views else packet
        view = packet if self._pending_are_views else memoryview(packet)
        self._handed_views.append(view)  # type: ignore[arg-type]
        return view

    def _take(self, count: int, copy: bool) -> tuple[list[Packet], list[CaptureInfo]]:
        """Take ``count`` frames off the rx ring (the caller checked they are there).

        A descriptor's address points past the kernel's headroom inside its frame. It goes
        back to the fill ring as it is: in aligned mode the kernel rounds fill addresses
        down to their frame (as libxdp's xdpsock does, this saves a step per frame).
        """
        addresses, lengths = self._rx.peek(count)
        packets: list[Packet]
        if copy:
            area = self._area
            packets = [area[a : a + n] for a, n in zip(addresses, lengths)]
            self._rx.release(count)
            self._umem.rx_free += addresses
            self._refill()
        else:
            packets = self._leases.lend(addresses, lengths)  # type: ignore[assignment]
            self._rx.release(count)
        self._rx_packets += count
        self._rx_bytes += sum(lengths)
        return packets, self._capture_infos(lengths)

    def _capture_infos(self, lengths: list[int]) -> list[CaptureInfo]:
        """One CaptureInfo per frame; frames of equal length share one (it is immutable).

        Sharing makes them a third as costly on real traffic, where few lengths recur, and
        a batch of one length (a flood of small frames) costs one tuple in all.
        """
        now = time.time_ns()
        ifindex = self.ifindex
        queue_id = self.queue_id
        first = lengths[0]
        if lengths.count(first) == len(lengths):
            return [_new_tuple(CaptureInfo, (now, first, first, ifindex, queue_id))] * len(lengths)
        shared: dict[int, CaptureInfo] = {}
        return [
            shared[n] if n in shared else shared.setdefault(n, _new_tuple(CaptureInfo, (now, n, n, ifindex, queue_id)))
            for n in lengths
        ]

    def _refill(self) -> None:
        """Hand every free rx frame the fill ring has room for to the kernel."""
        free = self._umem.rx_free
        if not free:
            return
        room = self._fill.reserve(len(free))
        if room < len(free):
            self._fq_full += 1
        if room:
            self._fill.submit(free[-room:])
            del free[-room:]

    def _note_empty(self) -> None:
        """Count a read that found nothing, and wake the driver if the fill ring asks for it."""
        self._rx_empty += 1
        if self._fill.needs_wakeup():
            self._note_poll()
            wait_readable(self._fds, 0)

    def _note_poll(self) -> None:
        self._polls += 1

    def _wait_for_rx(self, wanted: int) -> int:
        """Wait for frames per the I/O mode; return how many are ready (0 on timeout)."""
        self._note_empty()
        deadline = None if self._timeout_us is None else time.monotonic_ns() + self._timeout_us * 1000
        while True:
            count = self._rx.available(wanted)
            if count:
                return count
            if deadline is None:
                remaining: int | None = None
            else:
                remaining = (deadline - time.monotonic_ns()) // 1000
                if remaining < 0:
                    return 0
            self._note_poll()
            wait_readable(self._fds, remaining)

    def _timeout(self, call: str) -> XDPTimeoutError:
        cause = ""
        if self._last_kick_errno == errno.ENETDOWN:
            cause = f" (the kernel reports {self.ifname} is down: ip link set dev {self.ifname} up)"
        return XDPTimeoutError(
            f"{call} on {self.ifname} queue {self.queue_id}: nothing within the poll timeout "
            f"of {self.options.poll_timeout_us} us{cause}"
        )

    # ------------------------------------------------------------------ sending
    def write_packet(self, data: object) -> None:
        """Queue one frame for sending; waits for tx room per the I/O mode."""
        if not self._write(*_frames_for_writing([data], self._frame_limit)):
            raise self._timeout("write_packet")

    def write_multi_packets(self, pkts: Sequence[object]) -> int:
        """Queue frames in order; return how many were queued (all of them in blocking mode)."""
        return self._write(*_frames_for_writing(pkts, self._frame_limit))

    def _write(self, frames: Sequence[Frame], sizes: list[int]) -> int:
        """Queue validated ``frames`` (of ``sizes`` bytes) as the I/O mode allows; return the count."""
        self._check_open()
        queued = 0
        deadline = None if self._timeout_us is None else time.monotonic_ns() + self._timeout_us * 1000
        while True:
            queued += self._queue_frames(frames, sizes, queued)
            self._kick()
            if queued == len(frames):
                return queued
            if deadline is None:
                wait_us: int | None = _BLOCKED_WRITE_RECHECK_US
            else:
                remaining = (deadline - time.monotonic_ns()) // 1000
                if remaining < 0:
                    return queued
                wait_us = min(remaining, _BLOCKED_WRITE_RECHECK_US)
            self._polls += 1
            wait_writable(self._fds, wait_us)

    def _queue_frames(self, frames: Sequence[Frame], sizes: list[int], start: int) -> int:
        """Copy as many of ``frames[start:]`` as fit into tx frames and publish them."""
        free = self._umem.tx_free
        completed = self._completion.drain(self._completion.size)
        if completed:
            free.extend(completed)
        wanted = len(frames) - start
        count = wanted if wanted < len(free) else len(free)
        if count < wanted and not completed:
            self._cq_empty += 1
        count = self._tx.reserve(count)
        if count < wanted:
            self._tx_full += 1
        if not count:
            return 0
        addresses = free[-count:]
        del free[-count:]
        batch_sizes = sizes[start : start + count]
        area = self._area
        for address, frame, size in zip(addresses, frames[start : start + count], batch_sizes):
            area[address : address + size] = frame
        descriptors = [0] * (2 * count)  # addr0, len0, addr1, len1, ... (options stay 0)
        descriptors[0::2] = addresses
        descriptors[1::2] = batch_sizes
        self._tx.submit(array("Q", descriptors))
        self._tx_packets += count
        self._tx_bytes += sum(batch_sizes)
        return count

    def _kick(self) -> None:
        """Make the kernel send what is queued (copy mode sends a small batch per kick)."""
        tx = self._tx
        for _ in range(_MAX_KICKS_PER_WRITE):
            if not tx.outstanding() or not tx.needs_wakeup():
                return
            err = self._last_kick_errno = self._xsk.kick_tx()
            if err == errno.EAGAIN:
                self._send_again += 1
                self._umem.tx_free.extend(self._completion.drain(self._completion.size))
            elif err:
                self._send_busy += 1
                return

    # -------------------------------------------------------------------- stats
    def get_stats(self) -> XDPStats:
        """User-space counters plus the kernel's ``XDP_STATISTICS`` for this socket."""
        self._check_open()
        return XDPStats(
            self._rx_packets, self._rx_bytes, self._tx_packets, self._tx_bytes, self._polls,
            self._rx_empty, self._tx_full, self._fq_full, self._cq_empty, self._send_busy,
            self._send_again, *self._xsk.kernel_statistics(),
        )


def _check_batch_size(max_packets: int) -> int:
    if isinstance(max_packets, bool) or not isinstance(max_packets, int):
        raise TypeError(f"max_packets takes an int, got {type(max_packets).__name__}")
    if max_packets < 1:
        raise ValueError(f"max_packets must be at least 1, got {max_packets}")
    return max_packets


def _largest_frame(ifname: str, ifindex: int, frame_size: int) -> tuple[int, str]:
    """The longest frame a write may take, and how to allow longer ones.

    The kernel silently drops frames beyond the MTU plus the Ethernet header and a VLAN
    tag, so those are refused up front like frames that do not fit a UMEM frame.
    """
    mtu_limit = _netlink.get_link(ifindex).mtu + _ETH_HLEN + _VLAN_HLEN
    if mtu_limit < frame_size:
        return mtu_limit, f"raise the MTU of {ifname} (ip link set dev {ifname} mtu N)"
    if frame_size < 4096:
        return frame_size, "use OptFrameSize(4096)"
    return frame_size, "frames cannot be larger than the 4096-byte UMEM frame"


def _frames_for_writing(pkts: Sequence[object], limit: tuple[int, str],
                        call: str = "write_multi_packets") -> tuple[Sequence[Frame], list[int]]:
    """Validate every frame before any is queued; return them with their sizes.

    Lists of ``bytes`` (the usual case) are checked with C-level ``map``/``min``/``max``;
    anything else, or any bad frame, goes through ``_as_frame`` for a precise error.
    """
    if isinstance(pkts, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"{call} takes a sequence of packets, not one packet: wrap it in a list")
    if set(map(type, pkts)) <= {bytes, bytearray}:
        sizes = list(map(len, pkts))  # type: ignore[arg-type]
        if not sizes or (min(sizes) > 0 and max(sizes) <= limit[0]):
            return pkts, sizes  # type: ignore[return-value]
    frames = [_as_frame(data, limit) for data in pkts]
    return frames, [len(frame) for frame in frames]


def _as_frame(data: object, limit: tuple[int, str]) -> Frame:
    """Accept any bytes-like frame; refuse empty or oversized ones before anything is queued."""
    frame: Frame
    if isinstance(data, (bytes, bytearray)):
        frame = data
    else:
        try:
            frame = memoryview(data).cast("B")  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"a packet must be bytes-like (bytes, bytearray, memoryview), "
                            f"got {type(data).__name__}") from None
    size = len(frame)
    if not size:
        raise ValueError("cannot send an empty packet")
    max_size, how_to_allow_more = limit
    if size > max_size:
        raise ValueError(f"packet of {size} bytes is longer than the {max_size} bytes this socket can "
                         f"send; {how_to_allow_more}")
    return frame
