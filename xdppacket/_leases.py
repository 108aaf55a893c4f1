"""Zero-copy leases: rx frames lent to the user as views.

SPEC's rule: a zero-copy view is valid until the next read or ``close()``, then it
raises ``ValueError``. Releasing the view we returned is not enough: a slice of it
(``view[14:]``) is a separate memoryview on the same buffer. So each batch gets its own
exporter (a read-only mapping of the UMEM); while any view of the batch is alive, the
exporter's reference count shows it and the batch's frames stay lent ("held") until it
drops. A frame the kernel may overwrite is therefore never visible through a view, and
no read-only view (nor its ``.obj``) can write into the UMEM. Writable views (asked for,
to change frames before forwarding them) come through a read-write mapping instead.

Forwarding: a view of a lease written to a socket of the same UMEM leaves the lease
(``drop``): its frame goes to the tx ring as it is. The pool finds the lease of a view
through its exporter (``FramePool.leases_by_exporter``), and the frame through the
view's identity, so a slice of a view (a different object) is never taken for it.
"""

from __future__ import annotations

import contextlib
import mmap
import operator
import sys
from collections.abc import Sequence

from ._frames import FramePool
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
    """One batch of zero-copy views and the frames behind them.

    ``addresses`` are the frames of ``views``, in their order (where ``forwardable``);
    ``frames`` those still lent (forwarding drops frames from it). They are one list unless
    the batch lends frames no view shows (the parts of multi-buffer frames read as copies).
    """

    __slots__ = ("exporter", "writable", "views", "frames", "addresses", "forwardable", "_view_index")

    def __init__(self, exporter: mmap.mmap, writable: bool, frames: list[int], forwardable: bool,
                 addresses: list[int] | None = None):
        self.exporter = exporter
        self.writable = writable
        self.frames = frames
        self.addresses = frames if addresses is None else addresses
        self.forwardable = forwardable
        self.views: list[memoryview] = []
        self._view_index: dict[int, int] | None = None

    def frame_of(self, view: memoryview) -> int | None:
        """The address behind ``view`` if it is one of this lease's views (not a slice of
        one) and its frame is still lent; else None."""
        if not self.forwardable:
            return None
        position = self._index().get(id(view))
        if position is None or self.views[position] is not view:
            return None
        address = self.addresses[position]
        if not self.lends_all() and address not in self.frames:
            return None  # forwarded already, by a write that began after this one
        return address

    def lends_all(self) -> bool:
        """Whether every frame of the lease is surely still lent: none was forwarded
        (``drop`` replaces the list; it starts as ``addresses`` itself, except in a
        multi-buffer batch, where this stays False and ``frame_of`` looks the frame up)."""
        return self.frames is self.addresses

    def views_in_order(self, frames: Sequence[object]) -> tuple[int, int]:
        """(position, n): ``frames[:n]`` are this lease's views from ``position`` on, one after
        another (the usual forwarding batch: a read's views written back as they came)."""
        views = self.views
        if not self.forwardable or not views:
            return 0, 0
        first = frames[0]
        if views[0] is first:
            position = 0
        else:
            index = self._index()
            found = index.get(id(first))
            if found is None or views[found] is not first:
                return 0, 0
            position = found
        # Identity compared in C; the last of ``views`` is the base view, never handed out.
        candidates = views[position : len(views) - 1]
        if all(map(operator.is_, candidates, frames)):  # the usual case: no list, no compares
            return position, min(len(candidates), len(frames))
        return position, list(map(operator.is_, candidates, frames)).index(False)

    def _index(self) -> dict[int, int]:
        """id(view) -> its position, built on the first forward only: reads never pay for it."""
        index = self._view_index
        if index is None:
            index = self._view_index = {id(v): i for i, v in enumerate(self.views[:-1])}
        return index

    def empty(self) -> None:
        """Stop lending the frames of this ended lease but keep it (its exporter, its entry in
        the pool's registry) to ``relend``: the usual zero-copy step, cheaper than forgetting
        it and recording a new one. Left empty, it ends at the next ``ZeroCopyLeases.ended``."""
        self.frames = self.addresses = []

    def relend(self, frames: list[int]) -> None:
        """Lend ``frames`` through this emptied lease, as ``ZeroCopyLeases.record`` lends a new
        one's (the caller took them off the rx ring and holds the pool's lock); its views
        come from ``ZeroCopyLeases.views``."""
        self.views = []
        self._view_index = None
        self.frames = self.addresses = frames  # last: until then the frames count as not lent

    def drop(self, frames: list[int]) -> None:
        """Stop lending ``frames`` (forwarded in place); idempotent."""
        if frames == self.frames:  # the usual forward: the whole batch (one C-level compare)
            self.frames = []
            # Every view was released to be forwarded: ``try_end`` need only release the base
            # (and no view of this lease can be found any more).
            self.views = self.views[-1:]
            self._view_index = None
            return
        gone = set(frames)
        self.frames = [frame for frame in self.frames if frame not in gone]

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

    A lease is recorded before its views exist and forgotten (or emptied, to lend the
    next batch: ``Lease.empty``, ``Lease.relend``) only after ``try_end`` said no view
    survives, so an interruption can leave a lease with no views or no frames (it ends
    at the next read) but never a view whose frames are not lent. Not thread-safe.
    """

    def __init__(self, umem: Umem, pool: FramePool):
        self._umem = umem
        self._pool = pool
        self._leases: list[Lease] = []
        # Exporters no view refers to any more, read-only and writable: the next lease of
        # that kind reuses it (a new one is a new mapping whose pages fault in again).
        self._spare: dict[bool, mmap.mmap] = {}

    def record(self, frames: list[int], writable: bool = False, forwardable: bool = True,
               addresses: list[int] | None = None) -> Lease:
        """Lend ``frames`` (views come from ``views``, of ``addresses`` if only some frames
        get one); the caller took them off the rx ring and holds the pool's lock."""
        exporter = self._spare.pop(writable, None)
        if exporter is None:
            exporter = self._umem.writable_exporter() if writable else self._umem.read_only_exporter()
        lease = Lease(exporter, writable, frames, forwardable, addresses)
        self._leases.append(lease)
        if forwardable:
            self._pool.leases_by_exporter[id(exporter)] = lease
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

    def forget_within(self, frames: list[int]) -> None:
        """Forget the recorded leases all of whose frames are among ``frames`` (settling an
        interrupted return of ended leases)."""
        wanted = set(frames)
        self.forget([lease for lease in self._leases if wanted.issuperset(lease.frames)])

    def ended(self) -> list[Lease]:
        """The leases no view of which survives (their views are released now)."""
        leases = self._leases
        if len(leases) == 1:  # the usual case: the previous read's batch alone
            return [leases[0]] if leases[0].try_end() else []
        return [lease for lease in leases if lease.try_end()]

    def forget(self, ended: list[Lease]) -> None:
        """Stop tracking ``ended`` leases (idempotent); keep one exporter of each kind for reuse."""
        if not ended:
            return
        if ended == self._leases:  # the usual case: every batch lent ended (leases compare by identity)
            self._leases = []
        else:
            gone = set(map(id, ended))
            self._leases = [lease for lease in self._leases if id(lease) not in gone]
        registry = self._pool.leases_by_exporter
        for lease in ended:
            key = id(lease.exporter)
            if registry.get(key) is lease:
                del registry[key]
            self._spare[lease.writable] = lease.exporter

    @property
    def outstanding(self) -> bool:
        """True while any lent frame has not come back."""
        return bool(self._leases)

    def lent_count(self) -> int:
        """How many frames are lent now."""
        leases = self._leases
        if not leases:
            return 0
        return len(leases[0].frames) if len(leases) == 1 else sum(len(lease.frames) for lease in leases)

    def lent_frames(self) -> list[int]:
        return [frame for lease in self._leases for frame in lease.frames]

    def close(self) -> list[Lease]:
        """End what can be ended; drop the spare exporter. Returns the ended leases."""
        ended = self.ended()
        self.forget(ended)
        spares, self._spare = self._spare, {}
        for spare in spares.values():
            with contextlib.suppress(BufferError):  # a view still exports it: it goes with that view
                spare.close()
        return ended
