"""The transmit half of a socket: where every tx frame goes, in one module.

A frame's round trip: pool -> data copied in -> tx ring (``queue``) -> kernel ->
completion ring -> pool (``reclaim_completed``). A zero-copy view of a frame received on
this UMEM (this socket or one sharing it) skips the copy: its frame leaves its lease and
goes to the tx ring as it is (forwarding in place), then back to the pool like any sent
frame. Every move is written down first (``_frames``) and made under the pool's lock,
so that an exception landing in the middle of it is settled by the next move.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple, Union

from ._frames import ForwardMove, FrameCensus, FramePool, MoveKind, RingMove
from ._leases import Lease
from ._rings import CompletionRing, TxRing
from ._uapi import XDP_PKT_CONTD
from ._umem import Umem

__all__ = ["Forwarding", "Frame", "LentRun", "MultiBufferTxPath", "TxPath"]

_U32 = 0xFFFFFFFF
_INTO_FREE = MoveKind.INTO_FREE
_OUT_OF_FREE = MoveKind.OUT_OF_FREE
# A tx descriptor's second word: length in the low half, options in the high half.
_CONTINUES = XDP_PKT_CONTD << 32
_release = memoryview.release
#: A frame ready to copy into the UMEM: validated, with ``len`` in bytes.
Frame = Union[bytes, bytearray, memoryview]


class LentRun(NamedTuple):
    """The first ``length`` frames of a write are ``lease``'s views from ``position`` on, in
    the order it lent them (a read's batch written back), as seen before the write took
    the pool's lock; ``views`` is the lease's list of views then."""

    lease: Lease
    views: list[memoryview]
    position: int
    length: int

    def still_holds(self) -> bool:
        """Whether nothing changed the lease since: a forward or the end of the lease
        replaces the list of views or of frames lent."""
        lease = self.lease
        return lease.views is self.views and lease.lends_all()


#: What a write says of its frames: False, no memoryview among them; True, some are
#: memoryviews (maybe views to forward in place); a ``LentRun``, its first frames are.
Forwarding = Union[bool, LentRun]


class TxPath:
    """Owns the tx and completion rings; draws frames to send from the pool.

    Lifetime: that of its socket, which closes the rings. Not thread-safe: the socket
    serialises calls (the pool's lock only guards the frames it shares).
    """

    def __init__(self, umem: Umem, pool: FramePool, tx: TxRing, completion: CompletionRing):
        self._area = umem.map
        self._pool = pool
        self._tx = tx
        self._completion = completion
        #: Writes that found the tx ring without room for every frame (``tx_full``).
        self.tx_ring_full = 0
        #: Writes short of free frames with nothing completed to take back (``cq_empty``).
        self.completions_empty = 0

    def reclaim_completed(self) -> int:
        """Give every frame the kernel has finished sending back to the pool."""
        pool = self._pool
        with pool.lock:
            if pool.move is not None:
                pool.settle()
            return self._reclaim_completed()

    def _reclaim_completed(self) -> int:
        """``reclaim_completed`` for a caller holding the pool's lock, nothing left to settle."""
        completion = self._completion
        count = completion.available(completion.size)
        if count:
            pool = self._pool
            addresses = completion.peek(count)
            pool.move = (RingMove, _INTO_FREE, addresses, completion, completion.index_after(count))
            completion.release(count)
            pool.frames += addresses
            pool.move = None
        return count

    def queue(self, frames: Sequence[Frame], sizes: list[int], start: int, views: Forwarding = False) -> int:
        """Queue as many of ``frames[start:]`` as fit and publish them; return how many.

        Copies each frame into a free frame, except (where ``views`` says some frames are
        memoryviews) the zero-copy views of this UMEM's current batches, which go out in place.
        """
        pool = self._pool
        lock = pool.lock
        lock.acquire()
        try:
            return self._queue(frames, sizes, start, views)
        finally:
            lock.release()

    def _queue(self, frames: Sequence[Frame], sizes: list[int], start: int, views: Forwarding) -> int:
        """``queue`` for a caller holding the pool's lock."""
        pool = self._pool
        if pool.move is not None:
            pool.settle()
        completed = self._reclaim_completed()
        wanted = len(frames) - start
        count = self._tx.reserve(wanted)
        if count < wanted:
            self.tx_ring_full += 1
        if not count:
            return 0
        if views and pool.leases_by_exporter:
            return self._queue_forwarding(frames, sizes, start, count, completed, views)
        free = pool.frames
        if count > len(free):
            if not completed:
                self.completions_empty += 1
            count = len(free)
            if not count:
                return 0
        taken = free[-count:]
        to_frame = pool.to_frame
        addresses = [address & to_frame for address in taken]  # received frames point past their headroom
        batch_sizes = sizes[start : start + count]
        area = self._area
        for address, frame, size in zip(addresses, frames[start : start + count], batch_sizes):
            area[address : address + size] = frame  # still a free frame: harmless if interrupted
        descriptors = [0] * (2 * count)  # addr0, len0, addr1, len1, ... (options stay 0)
        descriptors[0::2] = addresses
        descriptors[1::2] = batch_sizes
        tx = self._tx
        pool.move = (RingMove, _OUT_OF_FREE, taken, tx, tx.index_after(count))
        tx.submit(array("Q", descriptors))
        del free[-count:]
        pool.move = None
        return count

    def _queue_forwarding(self, frames: Sequence[Frame], sizes: list[int], start: int, room: int,
                          completed: int, views: Forwarding) -> int:
        """``queue`` for a batch holding views: those of this UMEM's leases go out in place.

        A view to forward is released first (SPEC: it is gone once sent); one that cannot
        be (a buffer exported from it is alive) is copied instead. The batch stops at the
        first frame to copy when no free frame is left: views after it stay valid and the
        caller's.
        """
        # The fast path: a lease's views in order, found before the lock was taken (and
        # checked unchanged now) or found now.
        run = views if type(views) is LentRun and start == 0 else self.lent_run(frames[start : start + room])
        if run is not None and run.still_holds():
            count = min(run.length, room)
            in_place = self._forward_run(run.lease, frames[start : start + count], sizes[start : start + count],
                                         run.position)
            if in_place:
                return in_place
        pool = self._pool
        free = pool.frames
        # A view released since the write checked it (another write sent it) is refused
        # before any view of the batch is released here: those stay valid and the caller's.
        list(map(len, frames[start : start + room]))
        plan: list[tuple[Lease, int] | None] = []  # per frame: (lease, frame address) to forward, or None
        copies = 0
        for frame in frames[start : start + room]:
            forward = self._forwardable(frame)
            if forward is not None:
                try:
                    frame.release()  # type: ignore[union-attr]  # a memoryview: forward says so
                except BufferError:
                    forward = None  # exported further (a NumPy array, ...): copy it
            if forward is None:
                if copies == len(free):
                    if not completed:
                        self.completions_empty += 1
                    break
                copies += 1
            plan.append(forward)
        count = len(plan)
        if not count:
            return 0
        to_frame = pool.to_frame
        copy_frames = free[-copies:] if copies else []
        copy_bases = iter([address & to_frame for address in copy_frames])
        descriptors = array("Q", bytes(16 * count))
        forwarded: dict[int, tuple[Lease, list[int]]] = {}
        area = self._area
        for slot, (frame, size, forward) in enumerate(zip(frames[start : start + count],
                                                          sizes[start : start + count], plan)):
            if forward is None:
                address = next(copy_bases)
                area[address : address + size] = frame  # still a free frame: harmless if interrupted
            else:
                lease, address = forward
                forwarded.setdefault(id(lease), (lease, []))[1].append(address)
            descriptors[2 * slot] = address
            descriptors[2 * slot + 1] = size
        self._publish(descriptors, count, copy_frames, list(forwarded.values()))
        return count

    def lent_run(self, frames: Sequence[object]) -> LentRun | None:
        """The run of ``frames``, from the first on, that are one lease's views in the order
        it lent them (a read's batch written back); None if the first is not such a view.

        Needs no lock: it reads only which view objects a lease handed out. Called without
        the pool's lock, the answer is checked again under it (``LentRun.still_holds``).
        """
        first = frames[0]
        if type(first) is not memoryview:
            return None
        lease = self._pool.leases_by_exporter.get(id(first.obj))
        if not isinstance(lease, Lease):
            return None
        views = lease.views
        position, count = lease.views_in_order(frames)
        return LentRun(lease, views, position, count) if count else None

    def _forwardable(self, frame: Frame) -> tuple[Lease, int] | None:
        """(lease, frame address) if ``frame`` is a view of one of this UMEM's leases, still lent."""
        if type(frame) is not memoryview:
            return None
        lease = self._pool.leases_by_exporter.get(id(frame.obj))
        address = None if not isinstance(lease, Lease) else lease.frame_of(frame)
        return None if address is None else (lease, address)  # type: ignore[return-value]

    def _forward_run(self, lease: Lease, views: Sequence[Frame], sizes: list[int], position: int) -> int:
        """Send ``views``, the lease's views from ``position`` on, in place; return how many.

        The fast path of forwarding: no per-frame lookup. Stops before the first view that
        cannot be released (a buffer exported from it is alive): the general path copies it.
        """
        try:
            deque(map(_release, views), 0)  # type: ignore[arg-type]  # in C: runs for every frame forwarded
            count = len(views)
        except BufferError:  # a buffer exported from a view keeps it alive: stop before it
            count = 0
            for view in views:
                try:
                    view.release()  # type: ignore[union-attr]  # again: harmless for those released
                except BufferError:
                    break
                count += 1
            if not count:
                return 0
        addresses = lease.addresses[position : position + count]
        words = [0] * (2 * count)
        words[0::2] = addresses
        words[1::2] = sizes[:count]
        descriptors = array("Q", words)
        self._publish(descriptors, count, [], [(lease, addresses)])
        return count

    def _publish(self, descriptors: array[int], count: int, copies: list[int],
                 forwarded: list[tuple[Lease, list[int]]]) -> None:
        """Put ``count`` descriptors on the tx ring, in one journalled move: the frames of
        ``copies`` (data already in them) leave the free list, those of ``forwarded`` their
        leases. For a caller holding the pool's lock with nothing left to settle."""
        pool = self._pool
        tx = self._tx
        pool.move = (ForwardMove, descriptors, tx, tx.index_after(count), copies, forwarded)
        for lease, frames in forwarded:
            lease.drop(frames)
        if copies:
            del pool.frames[-len(copies):]
        tx.submit(descriptors)
        pool.move = None

    def unsent(self) -> int:
        """Descriptors in the tx ring the kernel has not taken yet."""
        return self._tx.outstanding()

    def needs_wakeup(self) -> bool:
        return self._tx.needs_wakeup()

    def has_free_frames(self) -> bool:
        return bool(self._pool.frames)

    def census(self) -> FrameCensus:
        """Where the frames of this transmit side are now (the caller holds the pool's lock
        and settled it).

        Frames in the tx ring or inside the kernel are counted, not named: the kernel
        may complete them out of order, so their addresses cannot be read back.
        """
        completed = self._completion.kernel_producer()
        unread = self._completion.unread(completed)
        return FrameCensus(
            {"completion ring": self._completion.peek(unread) if unread else []},
            {"tx ring or kernel": (self._tx.index - completed) & _U32},
        )


class MultiBufferTxPath(TxPath):
    """``TxPath`` for a socket bound with ``XDP_USE_SG`` (OptMultiBuffer): a long packet takes several frames.

    A packet goes out as consecutive descriptors, each filling one UMEM frame, every one
    but the last carrying ``XDP_PKT_CONTD``. A packet is queued whole or not at all: the
    kernel must never see the start of a packet whose end is missing. A zero-copy view of
    this UMEM's current batches (a one-buffer frame) goes out in place, as in ``TxPath``.
    """

    def __init__(self, umem: Umem, pool: FramePool, tx: TxRing, completion: CompletionRing):
        super().__init__(umem, pool, tx, completion)
        self._frame_size = umem.frame_size

    def queue(self, frames: Sequence[Frame], sizes: list[int], start: int, views: Forwarding = False) -> int:
        """Queue as many whole packets of ``frames[start:]`` as fit and publish them; return
        how many. Views of this UMEM's leases go in place; everything else is copied."""
        pool = self._pool
        with pool.lock:
            if pool.move is not None:
                pool.settle()
            return self._queue_whole_packets(frames, sizes, start, self._reclaim_completed(),
                                             bool(views) and bool(pool.leases_by_exporter))

    def _queue_whole_packets(self, frames: Sequence[Frame], sizes: list[int], start: int, completed: int,
                             forwarding: bool) -> int:
        pool = self._pool
        free = pool.frames
        frame_size = self._frame_size
        tx = self._tx
        room = tx.reserve(tx.size)  # descriptors the ring takes now
        if forwarding:  # a view released since the write checked it is refused before any is released
            list(map(len, frames[start:]))
        # Per packet, in order: the (lease, frame) it goes out in place from, or None (copied).
        plan: list[tuple[Lease, int] | None] = []
        needed = copied = 0  # descriptors, and free frames for the copies
        short_of_frames = False
        for frame, size in zip(frames[start:], sizes[start:]):
            forward = self._forwardable(frame) if forwarding else None
            if forward is not None:
                if needed + 1 > room:
                    break
                try:
                    frame.release()  # type: ignore[union-attr]  # a memoryview: forward says so
                except BufferError:
                    forward = None  # exported further (a NumPy array, ...): copy it
            if forward is None:
                parts = -(-size // frame_size)
                if copied + parts > len(free):
                    short_of_frames = True
                    break
                if needed + parts > room:
                    break
                copied += parts
                needed += parts
            else:
                needed += 1
            plan.append(forward)
        count = len(plan)
        if count < len(frames) - start:
            if short_of_frames:
                if not completed:
                    self.completions_empty += 1
            else:
                self.tx_ring_full += 1
        if not count:
            return 0
        taken = free[-copied:] if copied else []
        addresses = iter([address & pool.to_frame for address in taken])
        descriptors = array("Q", bytes(16 * needed))
        forwarded: dict[int, tuple[Lease, list[int]]] = {}
        area = self._area
        slot = 0
        for frame, size, forward in zip(frames[start : start + count], sizes[start : start + count], plan):
            if forward is not None:
                lease, address = forward
                forwarded.setdefault(id(lease), (lease, []))[1].append(address)
                descriptors[2 * slot] = address
                descriptors[2 * slot + 1] = size
                slot += 1
                continue
            data = memoryview(frame).cast("B")  # slices of it copy nothing
            for offset in range(0, size, frame_size):
                address = next(addresses)
                part = size - offset if size - offset < frame_size else frame_size
                area[address : address + part] = data[offset : offset + part]  # still free: harmless
                more = _CONTINUES if offset + part < size else 0
                descriptors[2 * slot] = address
                descriptors[2 * slot + 1] = part | more
                slot += 1
        self._publish(descriptors, needed, taken, list(forwarded.values()))
        return count
