"""``XskQueue``: one AF_XDP socket on one queue, driven: waiting, reading, writing, counting.

``XDPPacket`` is a thin public face over one ``XskQueue``; ``XDPMultiQueue`` drives several.
Frames themselves are owned by the socket's rx and tx paths (``_rx``, ``_tx``): this
module only asks them for frames and never touches a free list or a ring index.

Receiving. Single reads read ahead: they take the ready frames at once into ``ahead``
(copies) or ``ahead_views`` (zero-copy views of one lease) and hand them out one per
call, which makes a single read several times cheaper. Read-ahead always leaves the
last ready frame in the rx ring, so the socket stays readable (``select``/``asyncio``
wake up) for as long as frames wait inside it. Views handed out by a read are released
at the next read (SPEC's zero-copy rule).

Threads. Reads are serialised by one lock, writes by another (a reader blocked in
``poll`` never holds up a writer). ``close()`` may come from any thread: it wakes a
blocked call, which raises ``ValueError``, then tears down.

fork. Only the process that opened the socket removes it from the program's
``xsks_map``; a child that inherited it just drops its own descriptors and mappings.
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Union

from . import _netlink
from ._arrival import ShippedVariables, TrailerSource
from ._bpf_object import SHIPPED_FRAGS_PROGRAM
from ._frame_fit import check_frames_fit
from ._frames import FrameAccountingError
from ._interface import interface_index, rx_queue_count
from ._leases import release_views
from ._program import XskProgram
from ._rx import JoinedFrame, RecordWriter
from ._tx import Forwarding, Frame
from ._wait import wait_readable, wait_writable
from ._xsk import XskSocket, bind_flags_for
from .errors import XDPTimeoutError
from .options import XDPOptions
from .stats import CaptureInfo, XDPStats, capture_info_from_fields

__all__ = ["Packet", "XskQueue", "audit_frames_at_close", "frames_for_writing", "wait_for_frames"]

#: A received frame: a copy or a zero-copy view.
Packet = Union[bytes, memoryview]
# Ethernet header and one VLAN tag: what a frame may carry beyond the MTU.
_ETH_HLEN = 14
_VLAN_HLEN = 4
# The kernel's page-fragment limit per skb (MAX_SKB_FRAGS unless lowered).
_MAX_SKB_FRAGS_PATH = "/proc/sys/net/core/max_skb_frags"
_DEFAULT_MAX_SKB_FRAGS = 17
# Frames a single read takes off the ring at once (only those ready: it never waits for
# more). Each read of the ring costs the same whatever it takes, so under a backlog more is
# cheaper per frame: 256 rather than 128 saves 4% of read_packet_data's instructions.
_READ_AHEAD = 256
# A blocking wait re-checks the socket this often: the kernel reports a deleted
# interface only in SO_ERROR, never through poll.
BLOCKING_WAIT_SLICE_US = 250_000
# A write short of free tx frames waits this long for completions between checks:
# copy-mode completions arrive when the kernel frees the sent buffers, which does not
# wake poll().
_COMPLETION_WAIT_US = 100
# Tx kicks per write: copy mode sends a limited batch per kick (32 frames, or the
# whole ring where XDP_MAX_TX_SKB_BUDGET is available) and answers EAGAIN when more
# remain; each EAGAIN earns one more kick, up to this many.
_MAX_KICKS_PER_WRITE = 256
_BYTES_TYPES = {bytes, bytearray}
# How often check_alive asks the kernel whether the interface is still there.
_ALIVE_CHECK_INTERVAL_NS = 50_000_000
_BYTES_AND_VIEWS = {bytes, bytearray, memoryview}
_VIEWS = {memoryview}
_nbytes = operator.attrgetter("nbytes")
_c_contiguous = operator.attrgetter("c_contiguous")
# Containers whose order is undefined: sending from them would send in an arbitrary order.
_UNORDERED: tuple[type, ...] = (set, frozenset, dict, type({}.keys()), type({}.values()), type({}.items()))


class XskQueue:
    """One AF_XDP socket bound to queue ``options.queue_id`` of ``ifname``, with its counters.

    Owns the ``XskSocket`` (and through it the UMEM, rings and frames), one reference
    to the interface's shared XDP program, and a pipe that wakes a blocked call when
    another thread closes the queue. Thread-safe as described in the module docstring.
    """

    def __init__(self, ifname: str, options: XDPOptions, *, umem_sockets: int = 1,
                 share_with: XskQueue | None = None) -> None:
        """``umem_sockets``: how many sockets the new UMEM has frames for (``XDPMultiQueue``
        with ``OptSharedUmem``); ``share_with``: use that open queue's UMEM instead."""
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
        self.frame_limit = _largest_frame(ifname, ifindex, options.frame_size, options.multi_buffer)
        check_frames_fit(ifname, _netlink.get_link(ifindex).mtu, options, stacklevel=3)
        program: XskProgram | None = None
        xsk: XskSocket | None = None
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            program = XskProgram.acquire(ifname, ifindex, options.xdp_mode, queues, options.program_path,
                                         options.queue_id, _program_name(options), options.filter)
            trailers = _trailer_source(options)
            xsk = XskSocket(ifname, ifindex, options.queue_id, options.num_frames, options.frame_size,
                            options.ring_size, bind_flags_for(options), trailers=trailers,
                            headroom=options.headroom, huge_pages=options.huge_pages, busy_poll=options.busy_poll,
                            umem_sockets=umem_sockets, share_with=_umem_source(share_with),
                            shipped_variables=_shipped_variables(program, trailers))
            program.register(options.queue_id, xsk.fileno())
        except BaseException:
            if xsk is not None:
                xsk.close()
            if program is not None:
                program.release()
            os.close(wake_read)
            os.close(wake_write)
            raise
        assert xsk.rx is not None
        assert xsk.tx is not None
        self.program = program
        self._xsk = xsk
        #: Whether the kernel bound the socket in zero-copy mode (OptBindMode).
        self.zero_copy = xsk.zero_copy
        #: OptBusyPoll: an empty read spins this long on recvfrom before it sleeps; None: off.
        self._busy_poll_us = None if options.busy_poll is None else options.busy_poll.timeout_us
        self._rx = xsk.rx
        self._tx = xsk.tx
        self._wake_read = wake_read
        self._wake_write = wake_write
        self._fds = [xsk.fileno(), wake_read]
        self._owner_pid = os.getpid()
        self._timeout_us: int | None = None if options.blocking else options.poll_timeout_us
        self._read_lock = threading.RLock()
        self._write_lock = threading.RLock()
        #: Copies read ahead, handed out by the next reads.
        self.ahead: deque[tuple[bytes, CaptureInfo]] = deque()
        #: Zero-copy views of the current lease read ahead, handed out by the next reads.
        self.ahead_views: deque[tuple[memoryview, CaptureInfo]] = deque()
        #: Whether the views read ahead are writable (a read asking for the other kind refuses).
        self.ahead_writable = False
        #: Views the last read handed out; the next read releases them (emptied in place).
        self.handed_views: list[memoryview] = []
        # Whether lent frames may not have come back, kept here so that a copy read, the
        # usual one, need not ask the rx path: set before a lend, refreshed by what
        # ``end_loans`` answers.
        self._loans_may_be_out = False
        # Read-ahead views keep their whole batch from the kernel until the batch is used
        # up, so zero-copy read-ahead takes at most an eighth of the rx frames.
        self._zero_copy_read_ahead = max(1, min(_READ_AHEAD, options.num_frames // 8))
        self._rx_packets = self._rx_bytes = self._tx_packets = self._tx_bytes = 0
        self._polls = self._rx_empty = self._send_busy = self._send_again = 0
        self._gone = False  # the interface was deleted under the socket
        self._next_alive_check = 0  # CLOCK_MONOTONIC ns: check_alive asks the kernel again from then on
        self._last_kick_errno = 0  # names a down interface in timeout errors
        self._closing = False
        self.closed = False

    # ----------------------------------------------------------------- lifetime
    def fileno(self) -> int:
        self.check_open()
        return self._fds[0]

    @property
    def wait_fds(self) -> list[int]:
        """What a wait on this queue watches: the socket and the close wake-up pipe."""
        return self._fds

    @property
    def closing(self) -> bool:
        """True from the moment close() begins (another thread may still be tearing down)."""
        return self._closing or self.closed

    def check_open(self) -> None:
        if self.closed or self._closing:
            raise ValueError(f"I/O operation on a closed socket ({self.ifname} queue {self.queue_id})")

    def close(self) -> None:
        """Wake a blocked call, then release views, the socket, its memory and the program share."""
        if self.closed or self._closing:
            return
        self._closing = True
        with contextlib.suppress(BlockingIOError):  # already signalled
            os.write(self._wake_write, b"x")
        with self._read_lock, self._write_lock:
            if _close_audit is not None and self.opened_here:
                self._audit_frames(_close_audit)
            self.closed = True
            self.ahead.clear()
            self.ahead_views.clear()
            release_views(self.handed_views)
            self.handed_views.clear()
            try:
                if self.opened_here:  # a forked child must not unplug its parent's socket
                    self.program.unregister(self.queue_id)
            finally:
                self._xsk.close()
                self.program.release()
                os.close(self._wake_read)
                os.close(self._wake_write)

    def _audit_frames(self, failures: list[str]) -> None:
        try:
            self._rx.end_loans()  # views of the caller's last read end with the socket anyway
            self._check_frames()
        except FrameAccountingError as error:
            failures.append(f"{self.ifname} queue {self.queue_id} at close: {error}")

    @property
    def opened_here(self) -> bool:
        """False in a child process that inherited the socket through fork."""
        return os.getpid() == self._owner_pid

    # ---------------------------------------------------------------- receiving
    def read_one(self, copy: bool, call: str, writable: bool = False) -> tuple[Packet, CaptureInfo]:
        """One frame, waiting per the I/O mode; ``XDPTimeoutError`` when the poll timeout passes."""
        frame = self._read_one_until(copy, self._deadline(), writable)
        if frame is None:
            raise self.timeout(call)
        return frame

    def read_within(self, deadline: float | None) -> tuple[bytes, CaptureInfo] | None:
        """One copied frame, waiting per the I/O mode but not past ``deadline`` (``time.monotonic()``)."""
        mode_deadline = self._deadline()
        if deadline is not None:
            own = int(deadline * 1e9)
            mode_deadline = own if mode_deadline is None else min(own, mode_deadline)
        return self._read_one_until(True, mode_deadline)  # type: ignore[return-value]

    def _read_one_until(self, copy: bool, deadline: int | None,
                        writable: bool = False) -> tuple[Packet, CaptureInfo] | None:
        with self._read_lock:
            self._begin_read()
            frame = self._next_ready(copy, writable)
            if frame is None:
                self.note_empty()
                while frame is None:
                    if not self.wait_for_rx(deadline):
                        return None
                    frame = self._next_ready(copy, writable)
            return frame

    def read_batch(self, max_packets: int, copy: bool,
                   writable: bool = False) -> tuple[list[Packet], list[CaptureInfo]]:
        """Up to ``max_packets`` frames; at least one in blocking mode, maybe none otherwise."""
        lock = self._read_lock
        lock.acquire()  # not ``with``: twice as costly on an RLock, and this runs for every batch
        try:
            self._begin_read(end_loans=False)
            if self.ahead or self.ahead_views:
                self._end_loans()
                return self._take_ready(self.ready(max_packets), copy, writable)
            count = self._rx.ready(max_packets)
            if count and not copy:  # the usual zero-copy step: end the last batch's loans as this one is lent
                return self._take(count, copy, writable, end_loans=self._loans_may_be_out)
            self._end_loans()
            if not count:
                self.note_empty()
                deadline = self._deadline()
                while not count:
                    if not self.wait_for_rx(deadline):
                        return [], []
                    count = self._rx.ready(max_packets)
            return self._take(count, copy, writable)
        finally:
            lock.release()

    def poll_one(self, copy: bool, writable: bool = False) -> tuple[Packet, CaptureInfo] | None:
        """One frame if there is one, without waiting: the step of a multi-queue read.

        Takes the read-ahead fast path when it can, and skips an idle queue (nothing read
        ahead, nothing lent, empty ring) without touching anything else.
        """
        ahead = self.ahead
        if copy and ahead and not self.handed_views:
            return ahead.popleft()
        if not (ahead or self.ahead_views or self.handed_views or self._loans_may_be_out
                or self._rx.ready(1)):
            return None
        with self._read_lock:
            self._begin_read()
            return self._next_ready(copy, writable)

    def begin_read(self) -> None:
        """Every read starts here: zero-copy views handed out by the previous read end now."""
        with self._read_lock:
            self._begin_read()

    def _begin_read(self, end_loans: bool = True) -> None:
        """``begin_read`` for a caller that holds the read lock (one that ends the loans
        itself, later in the read, passes ``end_loans=False``)."""
        if self._closing:  # close() sets it first: check_open raises
            self.check_open()
        handed = self.handed_views
        if handed:
            release_views(handed)  # one exported further keeps its frame via the lease
            handed.clear()
        if end_loans:
            self._end_loans()

    def _end_loans(self) -> None:
        """The loans of earlier reads end, unless views read ahead still wait to be handed out."""
        if self._loans_may_be_out and not self.ahead_views:
            self._loans_may_be_out = self._rx.end_loans()  # a view kept elsewhere holds its batch

    def ready(self, limit: int) -> int:
        """How many frames (up to ``limit``) a read could return now without waiting."""
        read_ahead = len(self.ahead) + len(self.ahead_views)
        if read_ahead >= limit:
            return limit
        return read_ahead + self._rx.ready(limit - read_ahead)

    def take_ready(self, count: int, copy: bool, writable: bool = False) -> tuple[list[Packet], list[CaptureInfo]]:
        """Take ``count`` frames that ``ready`` reported: read-ahead ones first, then the ring's."""
        with self._read_lock:
            return self._take_ready(count, copy, writable)

    def _take_ready(self, count: int, copy: bool, writable: bool) -> tuple[list[Packet], list[CaptureInfo]]:
        """``take_ready`` for a caller that holds the read lock."""
        read_ahead = len(self.ahead) + len(self.ahead_views)
        if not read_ahead:
            return self._take(count, copy, writable)
        if not copy:
            self._check_ahead_kind(writable)
        pairs = [self._pop_ahead() for _ in range(min(count, read_ahead))]
        packets = [self._hand_out(packet, copy) for packet, _ in pairs]
        infos = [info for _, info in pairs]
        if count > read_ahead:
            more, more_infos = self._take(count - read_ahead, copy, writable)
            packets += more
            infos += more_infos
        return packets, infos

    def _pop_ahead(self) -> tuple[Packet, CaptureInfo]:
        return self.ahead.popleft() if self.ahead else self.ahead_views.popleft()

    def _next_ready(self, copy: bool, writable: bool = False) -> tuple[Packet, CaptureInfo] | None:
        """One frame, read ahead if need be, without waiting; None if the ring is empty."""
        ahead = self.ahead
        if not (ahead or self.ahead_views):
            ready = self._rx.ready((_READ_AHEAD if copy else self._zero_copy_read_ahead) + 1)
            if not ready:
                return None
            if ready == 1:  # the last frame: take it, read nothing ahead
                packets, infos = self._take(1, copy, writable)
                if not copy:
                    self.handed_views.append(packets[0])  # type: ignore[arg-type]
                return packets[0], infos[0]
            packets, infos = self._take(ready - 1, copy, writable)  # leave one: the socket stays readable
            if copy:
                ahead.extend(zip(packets, infos))  # type: ignore[arg-type]
            else:
                self.ahead_views.extend(zip(packets, infos))  # type: ignore[arg-type]
                self.ahead_writable = writable
        # Read-ahead holds copies or views, never both. Each in the flavour of its own read
        # goes out as it is (what _hand_out would do, without its two calls); the other is converted.
        if ahead:
            if copy:
                return ahead.popleft()
        elif not copy:
            if writable != self.ahead_writable:
                self._check_ahead_kind(writable)
            view, info = self.ahead_views.popleft()
            self.handed_views.append(view)
            return view, info
        packet, info = self._pop_ahead()
        return self._hand_out(packet, copy), info

    def _hand_out(self, packet: Packet, copy: bool) -> Packet:
        """A read-ahead frame in the flavour the read promises; views are recorded for release."""
        if copy:
            return packet if isinstance(packet, bytes) else bytes(packet)
        if isinstance(packet, memoryview):
            view = packet
        elif type(packet) is JoinedFrame:  # OptMultiBuffer: a frame no single view can show
            return packet
        else:
            view = memoryview(packet)
        self.handed_views.append(view)
        return view

    def _check_ahead_kind(self, writable: bool) -> None:
        """Views read ahead are handed out as they were read: refuse a read asking for the other kind."""
        if self.ahead_views and writable != self.ahead_writable:
            kind = "writable" if self.ahead_writable else "read-only"
            raise ValueError(
                f"{len(self.ahead_views)} frame(s) of {self.ifname} queue {self.queue_id} were read ahead as "
                f"{kind} views; read them with writable={self.ahead_writable} first (pending_packets says "
                f"how many), or use one kind of zero-copy read per socket"
            )

    def _take(self, count: int, copy: bool, writable: bool = False,
              end_loans: bool = False) -> tuple[list[Packet], list[CaptureInfo]]:
        """Take ``count`` frames off the rx ring (the caller checked they are there); views
        end the earlier loans first if ``end_loans``."""
        if copy:
            packets, lengths, times, metadata = self._rx.take_copies(count)
        else:
            self._loans_may_be_out = True  # before: an interrupted lend must still be ended
            packets, lengths, times, metadata = self._rx.lend_views(count, writable, end_loans)
        self._rx_packets += count
        self._rx_bytes += sum(lengths)
        return packets, self._capture_infos(lengths, times, metadata)

    def _capture_infos(self, lengths: list[int], times: list[int | None] | None,
                       metadata: list[bytes] | None) -> list[CaptureInfo]:
        """One CaptureInfo per frame, stamped with its arrival time.

        A frame without one gets the time of this read. Without arrival times at all,
        frames of equal length share one CaptureInfo (it is immutable): a per-frame
        object is most of a batched read's Python work, hence ``OptBatchTimestamps``.
        """
        ifindex = self.ifindex
        queue_id = self.queue_id
        if type(times) is list and metadata is None:  # every frame has its time (not IncompleteTimes)
            # The common case, per frame: built by C-level map/zip, a third cheaper than a
            # comprehension (one CaptureInfo per frame is most of a read's Python work).
            return list(map(capture_info_from_fields,
                            zip(times, lengths, lengths, repeat(ifindex), repeat(queue_id), repeat(b""))))
        now = time.time_ns()
        if times is None:  # OptBatchTimestamps: the read's time, one CaptureInfo per length
            first = lengths[0]
            if lengths.count(first) == len(lengths):
                return [capture_info_from_fields((now, first, first, ifindex, queue_id, b""))] * len(lengths)
            shared: dict[int, CaptureInfo] = {}
            return [shared[n] if n in shared else
                    shared.setdefault(n, capture_info_from_fields((now, n, n, ifindex, queue_id, b"")))
                    for n in lengths]
        metas = metadata if metadata is not None else [b""] * len(lengths)
        return [capture_info_from_fields((now if t is None else t, n, n, ifindex, queue_id, m))
                for t, n, m in zip(times, lengths, metas)]

    def pass_pcap_records(self, count: int, snaplen: int, write: RecordWriter) -> None:
        """Hand ``write`` the pcap records of ``count`` frames that ``ready`` reported, where
        they lie in the UMEM (``RxPath.pass_records``); the frames go back to the kernel after.

        For the capture fast path (``_pcap_records``), which checked that the program wrote
        the record headers after ``ready`` read the ring. Nothing may be read ahead.
        """
        with self._read_lock:
            if self.ahead or self.ahead_views:
                raise ValueError(f"{self.ifname} queue {self.queue_id}: frames were read ahead by single "
                                 f"reads; pcap records are passed by batch reads only")
            self._rx_bytes += self._rx.pass_records(count, snaplen, write)
            self._rx_packets += count

    # ------------------------------------------------------------------ waiting
    def _deadline(self) -> int | None:
        return None if self._timeout_us is None else time.monotonic_ns() + self._timeout_us * 1000

    def note_empty(self) -> None:
        """A read found nothing: count it, and never wait while free frames sit outside the fill ring."""
        self._rx_empty += 1
        if self._rx.has_idle_free_frames():
            with self._read_lock:
                self._rx.refill()

    def wait_for_rx(self, deadline: int | None) -> bool:
        """Wait once for frames, at most until ``deadline``; False once it has passed."""
        if self._busy_poll_us is not None and self._busy_poll_rx(deadline):
            return True
        return wait_for_frames([self], self._fds, deadline)

    def _busy_poll_rx(self, deadline: int | None) -> bool:
        """Spin on recvfrom, each running the driver's receive work (busy polling), for up to
        the busy-poll timeout; True as soon as frames are ready.

        The need_wakeup flag is not consulted: with busy polling the driver may leave the
        work to the application without asking (its interrupts deferred).
        """
        assert self._busy_poll_us is not None
        spin_until = time.monotonic_ns() + self._busy_poll_us * 1000
        if deadline is not None:
            spin_until = min(spin_until, deadline)
        while True:
            self._xsk.drive_rx()
            if self._rx.ready(1):
                return True
            if time.monotonic_ns() >= spin_until:
                return False

    def check_alive(self) -> None:
        """Raise ``OSError`` if the interface vanished under the socket (SO_ERROR says ENETDOWN).

        Asks the kernel at most every 50 ms: a non-blocking loop with a zero poll timeout
        checks on every empty read, and each answer is a system call.
        """
        if not self._gone:
            now = time.monotonic_ns()
            if now < self._next_alive_check:
                return
            self._next_alive_check = now + _ALIVE_CHECK_INTERVAL_NS
            if self._xsk.pending_error() in (errno.ENETDOWN, errno.ENODEV):
                self._gone = True
        if self._gone:
            raise OSError(
                errno.ENODEV,
                f"{self.ifname} queue {self.queue_id}: the interface is gone (deleted, or moved to "
                f"another network namespace), so the kernel unbound the socket; close it and open "
                f"a new socket once the interface exists again",
            )

    def timeout(self, call: str) -> XDPTimeoutError:
        """The error of a non-blocking call that waited its whole poll timeout."""
        cause = ""
        if self._last_kick_errno == errno.ENETDOWN:
            cause = f" (the kernel reports {self.ifname} is down: ip link set dev {self.ifname} up)"
        return XDPTimeoutError(
            f"{call} on {self.ifname} queue {self.queue_id}: nothing within the poll timeout "
            f"of {self.options.poll_timeout_us} us{cause}"
        )

    # ------------------------------------------------------------------ sending
    def write(self, frames: Sequence[Frame], sizes: list[int], views: Forwarding = False) -> int:
        """Queue validated ``frames`` (of ``sizes`` bytes) as the I/O mode allows; return the count.

        ``views``: some frames are memoryviews (``frames_for_writing`` says), which may go out in place.
        """
        lock = self._write_lock
        lock.acquire()  # not ``with``: twice as costly on an RLock, and this runs for every batch
        try:
            return self._write(frames, sizes, views)
        finally:
            lock.release()

    def frames_to_write(self, pkts: object) -> tuple[Sequence[Frame], list[int], Forwarding]:
        """``frames_for_writing`` for this socket, with a shortcut for the usual forwarding
        batch: a read's views written back in order are the library's own one-dimensional
        byte views, so only their sizes need checking (the checks of arbitrary views cost
        a tenth of forwarding a frame), and the run found is passed on to the write."""
        if type(pkts) is list and pkts and type(pkts[0]) is memoryview:
            sizes = list(map(len, pkts))  # ValueError for a released view, as any use of one
            run = self._tx.lent_run(pkts)
            # Received into this UMEM's frames, they fit one when sent: only runts are refused.
            if run is not None and run.length == len(pkts) and min(sizes) >= _ETH_HLEN:
                return pkts, sizes, run
        return frames_for_writing(pkts, self.frame_limit)

    def _write(self, frames: Sequence[Frame], sizes: list[int], views: Forwarding) -> int:
        """``write`` for a caller holding the write lock."""
        self.check_open()
        tx = self._tx
        queued = 0
        deadline = self._deadline()
        while True:
            queued += tx.queue(frames, sizes, queued, views)
            down = self._kick() == errno.ENETDOWN
            if queued == len(frames):
                break
            if down and deadline is None:  # blocking: waiting would never end
                self._tx_packets += queued
                self._tx_bytes += sum(sizes[:queued])
                raise OSError(
                    errno.ENETDOWN,
                    f"writing to {self.ifname} queue {self.queue_id}: the interface is down "
                    f"(ip link set dev {self.ifname} up); {queued} frame(s) of this call were "
                    f"queued and go out once it is up, the other {len(frames) - queued} were not",
                )
            remaining = _remaining_us(deadline)
            if remaining is not None and remaining < 0:
                break
            self._polls += 1
            if tx.has_free_frames():  # the tx ring is full: poll says when it has room
                wait_us = BLOCKING_WAIT_SLICE_US if remaining is None else remaining
                wait_writable(self._fds, wait_us)
            else:  # every frame is in flight: completions do not wake poll, so sleep
                wait_us = _COMPLETION_WAIT_US if remaining is None else min(remaining, _COMPLETION_WAIT_US)
                wait_readable(self._fds[1:], wait_us)
            self.check_open()
            self.check_alive()
        self._tx_packets += queued
        self._tx_bytes += sum(sizes[:queued])
        return queued

    def _kick(self) -> int:
        """Make the kernel send what is queued; kick again only when it answers EAGAIN."""
        tx = self._tx
        err = 0
        for _ in range(_MAX_KICKS_PER_WRITE):
            if not tx.unsent() or not (tx.needs_wakeup() or self._busy_poll_us is not None):
                return 0  # with busy polling every kick runs the driver's tx work
            err = self._last_kick_errno = self._xsk.kick_tx()
            if err != errno.EAGAIN:
                break
            self._send_again += 1
            tx.reclaim_completed()
        if err in (errno.EBUSY, errno.ENOBUFS):
            self._send_busy += 1
        return err

    # -------------------------------------------------------------------- stats
    def stats(self) -> XDPStats:
        """User-space counters plus the kernel's ``XDP_STATISTICS`` for this socket."""
        self.check_open()
        return XDPStats(
            self._rx_packets, self._rx_bytes, self._tx_packets, self._tx_bytes, self._polls,
            self._rx_empty, self._tx.tx_ring_full, self._rx.fill_ring_full, self._tx.completions_empty,
            self._send_busy, self._send_again, *self._xsk.kernel_statistics(),
        )

    def note_poll(self) -> None:
        """Count one wait on this queue (alone or among others)."""
        self._polls += 1

    def check_frames(self) -> dict[str, dict[str, int]]:
        """Check that every UMEM frame is in exactly one place; return the counts by place.

        Raises ``FrameAccountingError`` otherwise. Frames the kernel is moving at this
        very moment are counted where the kernel last published them.
        """
        with self._read_lock, self._write_lock:
            self.check_open()
            return self._check_frames()

    def _check_frames(self) -> dict[str, dict[str, int]]:
        """Every frame of the UMEM is checked (those of sockets sharing it too); the counts
        returned are this socket's and the pool's."""
        counts = self._xsk.pool.check_all()  # type: ignore[union-attr]
        label = self._xsk.label
        return {"rx": counts[f"{label} rx"], "tx": counts[f"{label} tx"], "umem": counts["umem"]}


def wait_for_frames(queues: Sequence[XskQueue], fds: Sequence[int], deadline: int | None) -> bool:
    """One wait over ``queues`` (watching ``fds``), at most until ``deadline``; False once it passed.

    Without a deadline (blocking mode) the wait lasts a slice, so that an interface that
    vanished is noticed (the kernel says so only in SO_ERROR); the caller loops.
    """
    remaining = _remaining_us(deadline)
    if remaining is not None and remaining < 0:
        for queue in queues:
            queue.check_alive()
        return False
    for queue in queues:
        queue.note_poll()
    ready = wait_readable(fds, BLOCKING_WAIT_SLICE_US if remaining is None else remaining)
    for queue in queues:
        queue.check_open()
        if not ready:
            queue.check_alive()
    return True


#: While not None, every close() checks the frame accounting first and appends failures here.
_close_audit: list[str] | None = None


def audit_frames_at_close(failures: list[str] | None) -> None:
    """Check every socket's frame accounting when it closes (tests); None turns it off."""
    global _close_audit
    _close_audit = failures


def _umem_source(queue: XskQueue | None) -> XskSocket | None:
    """The socket whose UMEM a new queue shares (OptSharedUmem); it must be open."""
    if queue is None:
        return None
    queue.check_open()
    return queue._xsk


def _trailer_source(options: XDPOptions) -> TrailerSource:
    """Whose metadata trailers a socket with ``options`` reads (see ``_arrival``)."""
    if options.batch_timestamps:
        return TrailerSource.NOT_READ
    return TrailerSource.SHIPPED if options.program_path is None else TrailerSource.CUSTOM


def _shipped_variables(program: XskProgram, trailers: TrailerSource) -> ShippedVariables | None:
    """The shipped program's variables that its trailers' reader uses; None when there are
    none to use (another program, or one whose variables cannot be mapped): then every
    batch's trailers are checked instead (``ArrivalReader``)."""
    if trailers is not TrailerSource.SHIPPED:
        return None
    return ShippedVariables.of(program.program.global_variables)


def _remaining_us(deadline: int | None) -> int | None:
    """Microseconds left until ``deadline`` (negative once passed); None without a deadline."""
    return None if deadline is None else (deadline - time.monotonic_ns()) // 1000


def _program_name(options: XDPOptions) -> str | None:
    """The program to run: the user's choice, else the shipped one (frags-aware with OptMultiBuffer)."""
    if options.program_path is None and options.multi_buffer:
        return SHIPPED_FRAGS_PROGRAM
    return options.program_name


def _largest_frame(ifname: str, ifindex: int, frame_size: int, multi_buffer: bool) -> tuple[int, str]:
    """The longest frame a write may take, and how to allow longer ones.

    The kernel silently drops frames beyond the MTU plus the Ethernet header and a VLAN
    tag, so those are refused up front like frames that do not fit a UMEM frame. With
    OptMultiBuffer a frame spans several UMEM frames, up to the kernel's descriptor limit.
    """
    mtu_limit = _netlink.get_link(ifindex).mtu + _ETH_HLEN + _VLAN_HLEN
    if multi_buffer:
        descriptors = max_descriptors_per_packet()
        if mtu_limit <= descriptors * frame_size:
            return mtu_limit, f"raise the MTU of {ifname} (ip link set dev {ifname} mtu N)"
        return descriptors * frame_size, (
            f"with OptMultiBuffer a frame may span at most {descriptors} descriptors of {frame_size} bytes "
            f"(the kernel's limit: net.core.max_skb_frags + 1)"
            + ("; use OptFrameSize(4096)" if frame_size < 4096 else "")
        )
    if mtu_limit < frame_size:
        return mtu_limit, f"raise the MTU of {ifname} (ip link set dev {ifname} mtu N)"
    if frame_size < 4096:
        return frame_size, "use OptFrameSize(4096)"
    return frame_size, "frames cannot be larger than the 4096-byte UMEM frame"


def max_descriptors_per_packet() -> int:
    """How many descriptors one sent packet may span.

    A copy-mode send builds one skb: its first descriptor is the linear part and each
    other one a page fragment, up to ``net.core.max_skb_frags``. That sysctl exists only
    in the initial network namespace; elsewhere the kernel's default (17) is assumed.
    """
    try:
        with open(_MAX_SKB_FRAGS_PATH) as sysctl:
            return int(sysctl.read()) + 1
    except FileNotFoundError:
        return _DEFAULT_MAX_SKB_FRAGS + 1


def frames_for_writing(pkts: object, limit: tuple[int, str],
                       call: str = "write_multi_packets") -> tuple[Sequence[Frame], list[int], bool]:
    """Validate every frame before any is queued; return them, their sizes, and whether
    any is a memoryview (a zero-copy view may be sent in place).

    Takes any iterable of bytes-like objects in a defined order (a generator is read
    once, here). Lists of ``bytes`` or of views (the usual cases) are checked with C-level
    ``map``/``min``/``max``; anything else, or any bad frame, goes through ``_as_frame``
    for a precise error.
    """
    if isinstance(pkts, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"{call} takes a sequence of packets, not one packet: wrap it in a list")
    if isinstance(pkts, _UNORDERED):
        raise TypeError(f"{call} takes an ordered sequence of packets (a list or tuple), not a "
                        f"{type(pkts).__name__}, whose order is undefined")
    if not isinstance(pkts, (list, tuple)):
        try:
            pkts = list(pkts)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(f"{call} takes a list of packets, got {type(pkts).__name__}") from None
    assert isinstance(pkts, (list, tuple))
    types = set(map(type, pkts))
    views = memoryview in types
    if types <= _BYTES_TYPES or (types <= _BYTES_AND_VIEWS and _byte_views(pkts, types)):
        sizes = list(map(len, pkts))
        if not sizes or (min(sizes) >= _ETH_HLEN and max(sizes) <= limit[0]):
            return pkts, sizes, views
    frames = [_as_frame(data, limit) for data in pkts]
    return frames, [len(frame) for frame in frames], views


def _byte_views(pkts: Sequence[Any], types: set[type]) -> bool:
    """Whether every memoryview among ``pkts`` is one-dimensional, contiguous, of bytes.

    A batch of views only (forwarding) is checked in C: a view whose ``len`` is its
    ``nbytes`` has one-byte items in one dimension, and ``c_contiguous`` says the rest.
    """
    if types == _VIEWS:
        return list(map(len, pkts)) == list(map(_nbytes, pkts)) and all(map(_c_contiguous, pkts))
    return all(map(_is_byte_view, pkts))


def _is_byte_view(data: object) -> bool:
    """A one-dimensional, contiguous view of bytes (or not a view at all: checked elsewhere)."""
    return type(data) is not memoryview or (data.format == "B" and data.ndim == 1 and data.c_contiguous)


def _as_frame(data: object, limit: tuple[int, str]) -> Frame:
    """Accept any bytes-like frame; refuse runts and oversized ones before anything is queued."""
    frame: Frame
    if isinstance(data, (bytes, bytearray)) or (type(data) is memoryview and _is_byte_view(data)):
        frame = data  # a view keeps its identity: it may be forwarded in place
    else:
        try:
            frame = memoryview(data).cast("B")  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"a packet must be bytes-like (bytes, bytearray, memoryview), "
                            f"got {type(data).__name__}") from None
    size = len(frame)
    if not size:
        raise ValueError("cannot send an empty packet")
    if size < _ETH_HLEN:
        raise ValueError(f"packet of {size} bytes is shorter than an Ethernet header ({_ETH_HLEN} "
                         f"bytes: destination, source, type); the kernel would drop it")
    max_size, how_to_allow_more = limit
    if size > max_size:
        raise ValueError(f"packet of {size} bytes is longer than the {max_size} bytes this socket can "
                         f"send; {how_to_allow_more}")
    return frame
