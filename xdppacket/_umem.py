"""UMEM: the packet memory shared with the kernel, and who owns each frame.

The area holds ``2 * num_frames`` frames: the first half for receiving, the second for
sending, so rx and tx never compete for frames. Every frame is always in exactly one
place: the kernel (fill, rx, tx or completion ring), a free list here, or lent out
as zero-copy views. ``ZeroCopyLeases`` is what makes lending safe.
"""

from __future__ import annotations

import contextlib
import mmap
import sys
from typing import TYPE_CHECKING, Callable

from ._libc import buffer_address, exporter_factory
from ._uapi import MAP_POPULATE

if TYPE_CHECKING:
    import ctypes

__all__ = ["Umem", "ZeroCopyLeases", "release_views"]


class Umem:
    """Owns the anonymous mapping of all frames and the rx/tx free-frame lists.

    Lifetime: created before the socket registers it, closed after the socket is closed.
    Not thread-safe.
    """

    def __init__(self, num_frames: int, frame_size: int):
        self.frame_size = frame_size
        self.num_frames = num_frames
        self.size = 2 * num_frames * frame_size
        self.map = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_POPULATE)
        self.address = buffer_address(self.map)
        self.rx_free: list[int] = [i * frame_size for i in range(num_frames)]
        self.tx_free: list[int] = [(num_frames + i) * frame_size for i in range(num_frames)]
        self.leases = ZeroCopyLeases(self.map)

    def close(self) -> None:
        """Unmap the frames, unless a user still holds a zero-copy view of them.

        In that case the mapping is left to the garbage collector, which unmaps it when the
        last view dies; unmapping now would turn that view into a dangling pointer.
        """
        self.leases.close()
        with contextlib.suppress(BufferError):
            self.map.close()


def release_views(views: list[memoryview]) -> bool:
    """Release every view; False if one could not be (a buffer export of it is alive).

    A plain loop: as fast as C-level tricks for a batch, and several times faster for
    the single view a single read hands out. Releasing twice is harmless.
    """
    try:
        for view in views:
            view.release()
        return True
    except BufferError:
        released_all = True
        for view in views:
            try:
                view.release()
            except BufferError:
                released_all = False
        return released_all


class _Lease:
    """One batch of zero-copy views and the frames behind them."""

    __slots__ = ("exporter", "views", "frames")

    def __init__(self, exporter: ctypes.Array[ctypes.c_ubyte], views: list[memoryview], frames: list[int]):
        self.exporter = exporter
        self.views = views
        self.frames = frames

    def try_end(self) -> bool:
        """Release our views; True if no view of this batch survives anywhere."""
        if not release_views(self.views):
            return False  # someone holds a buffer export of one of our views itself
        self.views = []
        # References now: self.exporter and getrefcount's argument. A third means a
        # memoryview derived from ours (a slice, memoryview(v), ...) is still alive.
        return sys.getrefcount(self.exporter) <= 2


class ZeroCopyLeases:
    """Lends frames as read-only views and takes them back only when no view survives.

    SPEC's rule: a zero-copy view is valid until the next read or ``close()``, then it
    raises ``ValueError``. Releasing the view we returned is not enough: a slice of it
    (``view[14:]``) is a separate memoryview on the same buffer. So each batch gets its
    own exporter object; while any view of the batch is alive the exporter's reference
    count shows it, and the batch's frames stay out of the fill ring ("held") until it
    drops. A frame the kernel may overwrite is therefore never visible through a view.
    """

    def __init__(self, area: mmap.mmap):
        self._new_exporter: Callable[[], ctypes.Array[ctypes.c_ubyte]] = exporter_factory(area)
        # An exporter no view refers to any more: the next lease reuses it (making one
        # maps the whole area into a ctypes array, which costs as much as ten views).
        self._spare_exporter: ctypes.Array[ctypes.c_ubyte] | None = None
        self._current: _Lease | None = None
        self._held: list[_Lease] = []

    def lend(self, addresses: list[int], lengths: list[int]) -> list[memoryview]:
        """Views of ``lengths`` bytes at ``addresses``; the frames come back via ``reclaim``."""
        exporter = self._spare_exporter
        if exporter is None:
            exporter = self._new_exporter()
        self._spare_exporter = None
        base = memoryview(exporter).cast("B").toreadonly()
        views = [base[a : a + n] for a, n in zip(addresses, lengths)]
        self._current = _Lease(exporter, [*views, base], addresses)
        return views

    def reclaim(self) -> list[int]:
        """End the current lease; return every frame no longer visible to anyone."""
        free: list[int] = []
        if self._current is not None:
            lease, self._current = self._current, None
            if lease.try_end():
                free = lease.frames
                self._spare_exporter = lease.exporter
            else:
                self._held.append(lease)
        if self._held:
            still_held = []
            for lease in self._held:
                if lease.try_end():
                    free += lease.frames
                else:
                    still_held.append(lease)
            self._held = still_held
        return free

    @property
    def outstanding(self) -> bool:
        """True while any lent frame has not come back (checked by every read)."""
        return self._current is not None or bool(self._held)

    def close(self) -> None:
        """Take back what can be; drop the spare exporter, whose buffer export pins the area."""
        self.reclaim()
        self._spare_exporter = None
