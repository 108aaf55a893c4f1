"""The transmit half of a socket: where every tx frame goes, in one module.

A frame's round trip: free list -> data copied in -> tx ring (``queue``) -> kernel ->
completion ring -> free list (``reclaim_completed``). Every move is written down first
(``_frames.Move``) so that an exception landing in the middle of it is settled by the
next call.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Union

from ._frames import FrameCensus, FreeFrames, Move, MoveKind
from ._rings import CompletionRing, TxRing
from ._uapi import XDP_PKT_CONTD
from ._umem import Umem

__all__ = ["Frame", "MultiBufferTxPath", "TxPath"]

_U32 = 0xFFFFFFFF
# Moves are built with tuple.__new__ on the hot paths: a NamedTuple's own constructor costs
# twice as much, and this runs for every batch.
_new_move = tuple.__new__
_INTO_FREE = MoveKind.INTO_FREE
_OUT_OF_FREE = MoveKind.OUT_OF_FREE
# A tx descriptor's second word: length in the low half, options in the high half.
_CONTINUES = XDP_PKT_CONTD << 32
#: A frame ready to copy into the UMEM: validated, with ``len`` in bytes.
Frame = Union[bytes, bytearray, memoryview]


class TxPath:
    """Owns the tx and completion rings and the free tx frames.

    Lifetime: that of its socket, which closes the rings. Not thread-safe: the socket
    serialises calls.
    """

    def __init__(self, umem: Umem, tx: TxRing, completion: CompletionRing):
        self._area = umem.map
        self._tx = tx
        self._completion = completion
        self._all_frames = umem.tx_frames
        self._free = FreeFrames(list(self._all_frames))
        #: Writes that found the tx ring without room for every frame (``tx_full``).
        self.tx_ring_full = 0
        #: Writes short of free frames with nothing completed to take back (``cq_empty``).
        self.completions_empty = 0

    def reclaim_completed(self) -> int:
        """Take every frame the kernel has finished sending back into the free list."""
        free = self._free
        if free.move is not None:
            free.settle_ring_move()
        completion = self._completion
        count = completion.available(completion.size)
        if count:
            addresses = completion.peek(count)
            free.move = _new_move(Move, (_INTO_FREE, addresses, completion, completion.index_after(count)))
            completion.release(count)
            free.frames += addresses
            free.move = None
        return count

    def queue(self, frames: Sequence[Frame], sizes: list[int], start: int) -> int:
        """Copy as many of ``frames[start:]`` as fit into free frames and publish them; return how many."""
        completed = self.reclaim_completed()
        free = self._free.frames
        wanted = len(frames) - start
        count = wanted if wanted < len(free) else len(free)
        if count < wanted and not completed:
            self.completions_empty += 1
        tx = self._tx
        count = tx.reserve(count)
        if count < wanted:
            self.tx_ring_full += 1
        if not count:
            return 0
        addresses = free[-count:]
        batch_sizes = sizes[start : start + count]
        area = self._area
        for address, frame, size in zip(addresses, frames[start : start + count], batch_sizes):
            area[address : address + size] = frame  # still a free frame: harmless if interrupted
        descriptors = [0] * (2 * count)  # addr0, len0, addr1, len1, ... (options stay 0)
        descriptors[0::2] = addresses
        descriptors[1::2] = batch_sizes
        self._free.move = _new_move(Move, (_OUT_OF_FREE, addresses, tx, tx.index_after(count)))
        tx.submit(array("Q", descriptors))
        del free[-count:]
        self._free.move = None
        return count

    def unsent(self) -> int:
        """Descriptors in the tx ring the kernel has not taken yet."""
        return self._tx.outstanding()

    def needs_wakeup(self) -> bool:
        return self._tx.needs_wakeup()

    def has_free_frames(self) -> bool:
        return bool(self._free.frames)

    def census(self) -> FrameCensus:
        """Where every tx frame is now; an interrupted move is settled first.

        Frames in the tx ring or inside the kernel are counted, not named: the kernel
        may complete them out of order, so their addresses cannot be read back.
        """
        if self._free.move is not None:
            self._free.settle_ring_move()
        completed = self._completion.kernel_producer()
        unread = self._completion.unread(completed)
        return FrameCensus(
            "tx",
            self._all_frames,
            {
                "free": list(self._free.frames),
                "completion ring": self._completion.peek(unread) if unread else [],
            },
            unidentified=("tx ring or kernel", (self._tx.index - completed) & _U32),
        )


class MultiBufferTxPath(TxPath):
    """``TxPath`` for a socket bound with ``XDP_USE_SG`` (OptMultiBuffer): a long packet takes several frames.

    A packet goes out as consecutive descriptors, each filling one UMEM frame, every one
    but the last carrying ``XDP_PKT_CONTD``. A packet is queued whole or not at all: the
    kernel must never see the start of a packet whose end is missing.
    """

    def __init__(self, umem: Umem, tx: TxRing, completion: CompletionRing):
        super().__init__(umem, tx, completion)
        self._frame_size = umem.frame_size

    def queue(self, frames: Sequence[Frame], sizes: list[int], start: int) -> int:
        """Copy as many whole packets of ``frames[start:]`` as fit and publish them; return how many."""
        completed = self.reclaim_completed()
        free = self._free.frames
        frame_size = self._frame_size
        wanted = [-(-size // frame_size) for size in sizes[start:]]
        tx = self._tx
        room = tx.reserve(len(free))
        count = needed = 0
        for descriptors in wanted:
            if needed + descriptors > room:
                break
            needed += descriptors
            count += 1
        if count < len(wanted):  # short of ring room, else of free frames
            if room < len(free):
                self.tx_ring_full += 1
            elif not completed:
                self.completions_empty += 1
        if not count:
            return 0
        addresses = free[-needed:]
        descriptors_out = array("Q", bytes(16 * needed))
        area = self._area
        slot = 0
        for frame, size in zip(frames[start : start + count], sizes[start : start + count]):
            data = memoryview(frame).cast("B")  # slices of it copy nothing
            for offset in range(0, size, frame_size):
                address = addresses[slot]
                part = size - offset if size - offset < frame_size else frame_size
                area[address : address + part] = data[offset : offset + part]  # still free: harmless
                more = _CONTINUES if offset + part < size else 0
                descriptors_out[2 * slot] = address
                descriptors_out[2 * slot + 1] = part | more
                slot += 1
        self._free.move = _new_move(Move, (_OUT_OF_FREE, addresses, tx, tx.index_after(needed)))
        tx.submit(descriptors_out)
        del free[-needed:]
        self._free.move = None
        return count
