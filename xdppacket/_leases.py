"""Zero-copy leases: rx frames lent to the user as read-only views.

SPEC's rule: a zero-copy view is valid until the next read or ``close()``, then it
raises ``ValueError``. Releasing the view we returned is not enough: a slice of it
(``view[14:]``) is a separate memoryview on the same buffer. So each batch gets its own
exporter (a read-only mapping of the UMEM); while any view of the batch is alive, the
exporter's reference count shows it and the batch's frames stay lent ("held") until it
drops. A frame the kernel may overwrite is therefore never visible through a view, and
no view (nor its ``.obj``) can write into the UMEM.
"""

from __future__ import annotations

import contextlib
import mmap
import sys

from ._umem import Umem

__all__ = ["Lease", "ZeroCopyLeases", "release_views"]


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


class Lease:
    """One batch of zero-copy views and the frames behind them."""

    __slots__ = ("exporter", "views", "frames")

    def __init__(self, exporter: mmap.mmap, frames: list[int]):
        self.exporter = exporter
        self.frames = frames
        self.views: list[memoryview] = []

    def try_end(self) -> bool:
        """Release our views; True if no view of this batch survives anywhere."""
        if not release_views(self.views):
            return False  # someone holds a buffer export of one of our views itself
        self.views = []
        # References now: self.exporter and getrefcount's argument. A third is the
        # buffer of a memoryview derived from ours (a slice, memoryview(v), ...).
        return sys.getrefcount(self.exporter) <= 2


class ZeroCopyLeases:
    """The leases of one rx half, oldest first; the newest is the current batch.

    A lease is recorded before its views exist and forgotten only after ``try_end``
    said no view survives, so an interruption can leave a lease with no views (it ends
    at the next read) but never a view whose frames are not lent. Not thread-safe.
    """

    def __init__(self, umem: Umem):
        self._umem = umem
        self._leases: list[Lease] = []
        # An exporter no view refers to any more: the next lease reuses it (a new one is
        # a new mapping whose pages fault in again on first access).
        self._spare: mmap.mmap | None = None

    def record(self, frames: list[int]) -> Lease:
        """Lend ``frames`` (views come from ``views``); the caller took them off the rx ring."""
        exporter = self._spare
        if exporter is None:
            exporter = self._umem.read_only_exporter()
        self._spare = None
        lease = Lease(exporter, frames)
        self._leases.append(lease)
        return lease

    @staticmethod
    def views(lease: Lease, addresses: list[int], lengths: list[int]) -> list[memoryview]:
        """Views of ``lengths`` bytes at ``addresses`` through the lease's exporter."""
        base = memoryview(lease.exporter)
        views = [base[a : a + n] for a, n in zip(addresses, lengths)]
        lease.views = [*views, base]
        return views

    def holds(self, frames: list[int]) -> bool:
        """Whether a recorded lease lends exactly ``frames`` (settling an interrupted lend)."""
        return any(lease.frames == frames for lease in self._leases)

    def within(self, frames: list[int]) -> list[Lease]:
        """The recorded leases all of whose frames are among ``frames``."""
        wanted = set(frames)
        return [lease for lease in self._leases if wanted.issuperset(lease.frames)]

    def ended(self) -> list[Lease]:
        """The leases no view of which survives (their views are released now)."""
        return [lease for lease in self._leases if lease.try_end()]

    def forget(self, ended: list[Lease]) -> None:
        """Stop tracking ``ended`` leases (idempotent); keep one exporter for reuse."""
        if not ended:
            return
        if ended == self._leases:  # the usual case: every batch lent ended (leases compare by identity)
            self._leases = []
        else:
            gone = set(map(id, ended))
            self._leases = [lease for lease in self._leases if id(lease) not in gone]
        self._spare = ended[-1].exporter

    @property
    def outstanding(self) -> bool:
        """True while any lent frame has not come back."""
        return bool(self._leases)

    def lent_frames(self) -> list[int]:
        return [frame for lease in self._leases for frame in lease.frames]

    def close(self) -> list[Lease]:
        """End what can be ended; drop the spare exporter. Returns the ended leases."""
        ended = self.ended()
        self.forget(ended)
        spare, self._spare = self._spare, None
        if spare is not None:
            with contextlib.suppress(BufferError):  # a view still exports it: it goes with that view
                spare.close()
        return ended
