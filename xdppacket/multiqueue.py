"""``XDPMultiQueue``: one socket per queue ``[0, n)`` of an interface, read together.

Memory: by default each queue has its own UMEM. Every socket stays an ordinary,
independent ``XDPPacket`` (usable on its own, in its own thread), and a stalled queue can
never take frames from another. The cost is memory: ``queues * 2 * num_frames *
frame_size`` bytes (32 MiB for four queues with the defaults); README.md gives measured
figures. With ``OptSharedUmem()`` all queues share one UMEM of the same size
(``XDP_SHARED_UMEM``, a fill and completion ring per queue): a frame read on one queue
can be sent on another in place, and each queue's receive side holds at most its share
of the frames (``_frames.FramePool``).

Reads are fair: each call starts at the next queue in turn and shares its batch
between the queues that have frames, so a busy queue cannot starve the others.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType

from ._fairness import QueueRotation, fair_shares
from ._interface import rx_queue_count
from ._pcap_records import PcapRecordReader
from ._queue import Packet, XskQueue, frames_for_writing, wait_for_frames
from .errors import XDPWriteError
from .options import resolve_options
from .packet import XDPPacket, check_batch_size, wrap_queue
from .stats import CaptureInfo, XDPStats

__all__ = ["XDPMultiQueue", "get_xdp_socket_from_multi_queue"]


class XDPMultiQueue:
    """Owns one ``XskQueue`` per queue of ``ifname``, queues ``[0, OptQueueCount)``.

    ``close()`` closes them all. Calls are serialised by a lock; ``close()`` from another
    thread wakes a blocked call, which raises ``ValueError``. To read queues in parallel,
    take ``sockets`` and give one to each thread instead.
    """

    def __init__(self, ifname: str, *opts: object) -> None:
        self._queues: list[XskQueue] = []
        self._epoll: select.epoll | None = None
        options = resolve_options(opts, owner="XDPMultiQueue")
        available = rx_queue_count(ifname)
        if options.queue_count > available:
            raise ValueError(
                f"OptQueueCount({options.queue_count}): {ifname} has only {available} rx queue(s); "
                f"use OptQueueCount({available}) or fewer (ethtool -L changes a NIC's queue count)"
            )
        self.ifname = ifname
        self.options = options
        try:
            for queue_id in range(options.queue_count):
                per_queue = replace(options, queue_id=queue_id)
                if options.shared_umem and queue_id:
                    queue = XskQueue(ifname, per_queue, share_with=self._queues[0])
                else:
                    queue = XskQueue(ifname, per_queue,
                                     umem_sockets=options.queue_count if options.shared_umem else 1)
                self._queues.append(queue)
        except BaseException:
            self.close()
            raise
        self._sockets = [wrap_queue(queue) for queue in self._queues]
        self.ifindex = self._queues[0].ifindex
        self._fds = [fd for queue in self._queues for fd in queue.wait_fds]
        self._timeout_us = None if options.blocking else options.poll_timeout_us
        self._lock = threading.RLock()
        self._read_order = QueueRotation(self._queues)
        self._next_write_queue = 0

    # ----------------------------------------------------------------- lifetime
    @property
    def sockets(self) -> list[XDPPacket]:
        """The per-queue sockets, index i bound to queue i."""
        return list(self._sockets)

    @property
    def closed(self) -> bool:
        return all(queue.closing for queue in self._queues)

    @property
    def zero_copy(self) -> bool:
        """True when the kernel bound every queue in zero-copy mode (per queue: ``sockets[i].zero_copy``)."""
        self._check_open()
        return all(queue.zero_copy for queue in self._queues)

    def fileno(self) -> int:
        """An epoll descriptor, readable when any queue has frames (for ``select``/``asyncio``)."""
        self._check_open()
        if self._epoll is None:
            epoll = select.epoll()
            for queue in self._queues:
                epoll.register(queue.fileno(), select.EPOLLIN)
            self._epoll = epoll
        return self._epoll.fileno()

    def close(self) -> None:
        """Close every queue's socket (idempotent), even when one fails; then raise the first error."""
        first_error: BaseException | None = None
        if self._epoll is not None:
            self._epoll.close()
        for queue in self._queues:
            try:
                queue.close()
            except BaseException as error:  # noqa: PERF203 - every queue must be closed
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    def __enter__(self) -> XDPMultiQueue:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<XDPMultiQueue {getattr(self, 'ifname', '?')} queues {len(self._queues)} {state}>"

    def _check_open(self) -> None:
        for queue in self._queues:
            if queue.closed:
                raise ValueError(f"I/O operation on a closed XDPMultiQueue (queue {queue.queue_id} is closed)")

    # ---------------------------------------------------------------- receiving
    def read_packet(self) -> tuple[list[bytes], list[CaptureInfo]]:
        """At most one copied frame from each queue."""
        return self._read_one_per_queue(copy=True)  # type: ignore[return-value]

    def zero_copy_read_packet(self, writable: bool = False) -> tuple[list[memoryview], list[CaptureInfo]]:
        """At most one frame from each queue, as views valid until the next read or close()
        (writable ones if asked: ``XDPPacket.zero_copy_read_packet_data``)."""
        return self._read_one_per_queue(copy=False, writable=writable)  # type: ignore[return-value]

    def read_multi_packets(self, max_packets: int = 16) -> tuple[list[bytes], list[CaptureInfo]]:
        """Up to ``max_packets`` copied frames in all, shared fairly between the queues."""
        return self._read(check_batch_size(max_packets), copy=True)  # type: ignore[return-value]

    def zero_copy_read_multi_packets(self, max_packets: int = 16,
                                     writable: bool = False) -> tuple[list[memoryview], list[CaptureInfo]]:
        """Like ``read_multi_packets`` but as views, valid until the next read or close()
        (writable ones if asked)."""
        return self._read(check_batch_size(max_packets), copy=False, writable=writable)  # type: ignore[return-value]

    def _read_one_per_queue(self, copy: bool, writable: bool = False) -> tuple[list[Packet], list[CaptureInfo]]:
        """One frame from every queue that has one: all ready queues are served, so no
        fairness bookkeeping is needed, and each queue reads ahead as a single read does."""
        with self._lock:
            self._check_open()
            deadline: int | None = None
            waited = False  # the deadline is set at the first wait: a ready queue needs no clock
            while True:
                packets: list[Packet] = []
                infos: list[CaptureInfo] = []
                for queue in self._queues:
                    frame = queue.poll_one(copy, writable)
                    if frame is not None:
                        packets.append(frame[0])
                        infos.append(frame[1])
                if packets:
                    return packets, infos
                if not waited:
                    deadline = self._deadline()
                    waited = True
                if not self._wait(deadline):
                    return [], []

    def _deadline(self) -> int | None:
        """When a non-blocking call must give up (one poll timeout for the whole call)."""
        return None if self._timeout_us is None else time.monotonic_ns() + self._timeout_us * 1000

    def _wait(self, deadline: int | None) -> bool:
        """One wait over every queue; False once the deadline has passed."""
        for queue in self._queues:
            queue.note_empty()
        return wait_for_frames(self._queues, self._fds, deadline)

    def _read(self, limit: int, copy: bool, writable: bool = False) -> tuple[list[Packet], list[CaptureInfo]]:
        with self._lock:
            self._check_open()
            for queue in self._queues:
                queue.begin_read()
            deadline = self._deadline()
            while True:
                order = self._read_order.order()
                shares = fair_shares([queue.ready(limit) for queue in order], limit)
                if any(shares):
                    packets: list[Packet] = []
                    infos: list[CaptureInfo] = []
                    for queue, share in zip(order, shares):
                        if share:
                            taken, taken_infos = queue.take_ready(share, copy, writable)
                            packets += taken
                            infos += taken_infos
                    return packets, infos
                if not self._wait(deadline):
                    return [], []

    # ------------------------------------------------------------------ sending
    def write_packet(self, pkts: Iterable[object]) -> int:
        """Send ``pkts`` spread round-robin over the queues; return how many were queued.

        All frames are validated first, so a bad one raises before any is queued. If a
        queue cannot take its share (non-blocking timeout, kernel error), ``XDPWriteError``
        says in ``.sent`` how many frames had been queued in all.
        """
        with self._lock:
            self._check_open()
            frames, sizes, views = frames_for_writing(pkts, self._queues[0].frame_limit,
                                                      call="XDPMultiQueue.write_packet")
            frames = list(frames)
            count = len(self._queues)
            first = self._next_write_queue
            self._next_write_queue = (first + len(frames)) % count
            sent = 0
            for offset in range(count):
                # Frames offset, offset + count, ... go to the queue after ``first`` by ``offset``.
                queue = self._queues[(first + offset) % count]
                share = frames[offset::count]
                if not share:
                    continue
                try:
                    queued = queue.write(share, sizes[offset::count], views)
                except OSError as error:
                    raise XDPWriteError(f"writing to {queue.ifname} queue {queue.queue_id} failed after "
                                        f"{sent} frame(s): {error}", sent) from error
                sent += queued
                if queued < len(share):
                    raise XDPWriteError(
                        f"{queue.ifname} queue {queue.queue_id} took {queued} of its {len(share)} frame(s) "
                        f"within the poll timeout; {sent} of {len(frames)} frame(s) were queued in all",
                        sent,
                    )
            return sent

    # -------------------------------------------------------------------- stats
    def get_stats(self) -> list[XDPStats]:
        """``[0]`` is the sum over all queues, ``[1 + i]`` is queue i (as in the Go library)."""
        per_queue = [queue.stats() for queue in self._queues]
        total = XDPStats()
        for stats in per_queue:
            total = total + stats
        return [total, *per_queue]

    def check_frames(self) -> list[dict[str, dict[str, int]]]:
        """``XDPPacket.check_frames`` for every queue (for tests and debugging)."""
        return [queue.check_frames() for queue in self._queues]


def get_xdp_socket_from_multi_queue(mq: XDPMultiQueue) -> list[XDPPacket]:
    """The per-queue sockets of ``mq`` (the Go library's ``GetXDPSocketFromMultiQueue``)."""
    return mq.sockets


def pcap_record_reader(mq: XDPMultiQueue, snaplen: int) -> PcapRecordReader | None:
    """Internal, for ``xdppacket capture``: the fast path reading whole pcap records from
    ``mq``'s queues (``_pcap_records``), or None where their program writes no record headers."""
    mq._check_open()
    return PcapRecordReader.over(mq._queues, mq._fds, mq._timeout_us, mq._lock, snaplen)
