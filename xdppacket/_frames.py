"""The frames of one UMEM: the pool they come from, the rules every move follows, and the check.

Every frame of a UMEM is, at every moment, in exactly one place: free in the pool, in a
ring, inside the kernel, or lent out as zero-copy views. The pool (``FramePool``) holds
the free frames of every socket using the UMEM (one socket, or several with
``OptSharedUmem``): the rx paths (``_rx``) draw frames from it for their fill rings and
the tx paths (``_tx``) for sending, and both give frames back to it. Rx and tx frames are
interchangeable, so a received frame can be sent in place (forwarding without a copy)
and return to the pool once the kernel has sent it.

A move between a ring and the pool takes steps that Python cannot make atomic (publish
the ring index, update the list), and an exception raised by a signal handler
(``KeyboardInterrupt``) can land between any two bytecodes. So every move is first
written down (``RingMove``, ``RingToRingMove``, ``LeaseMove``, ``ForwardMove``) and cleared when all its steps
are done. The next move on the pool, from any socket, settles one left behind first: the
ring index it committed (our own cached index, always stored before the shared word)
says whether the ring step happened, and the rest is made to agree. An interruption
therefore only delays frames; it never loses one or hands one out twice. Moves take the
pool's lock, so sockets sharing a UMEM may run in different threads.

Cost: the paths move frames once or twice per batch, and every batch is Python work, so
the hot paths journal a move as a plain tuple (``Journal``: the move's class, then its
fields), a third of what creating the NamedTuple costs, and take the lock with explicit
``acquire``/``release`` (half of what a ``with`` block costs on an RLock).
"""

from __future__ import annotations

import enum
import threading
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, Union

from .errors import XDPError

__all__ = [
    "FrameAccountingError",
    "FrameCensus",
    "FramePool",
    "ForwardMove",
    "Journal",
    "LeaseMove",
    "MoveKind",
    "RingMove",
    "RingToRingMove",
]


class MoveKind(enum.Enum):
    """Which way a move goes."""

    OUT_OF_FREE = "pool -> ring"
    INTO_FREE = "ring -> pool"
    INTO_LEASE = "rx ring -> lease"
    LEASE_TO_FREE = "lease -> pool"
    LEASE_TO_RING = "lease -> fill ring"


class _IndexedRing(Protocol):
    @property
    def index(self) -> int: ...

    def republish(self) -> None: ...


class _DescriptorRing(_IndexedRing, Protocol):
    def submit(self, addresses_and_lengths: array[int]) -> None: ...


class _Lender(Protocol):
    """What a lease move needs of a socket's zero-copy leases (``_leases.ZeroCopyLeases``)."""

    def holds(self, frames: list[int]) -> bool: ...

    def forget_within(self, frames: list[int]) -> None: ...


class _Member(Protocol):
    """A socket drawing on the pool, as the frame check sees it (``_xsk.XskSocket``)."""

    label: str

    def censuses(self) -> dict[str, FrameCensus]: ...

    def give_back_unbound(self) -> None: ...


class _Loan(Protocol):
    """What forwarding needs of one lease (``_leases.Lease``)."""

    def drop(self, frames: list[int]) -> None: ...


def _ring_step_done(ring: _IndexedRing, index_after: int) -> bool:
    """Whether the ring's index was committed (our index is stored before the shared word)."""
    ring.republish()
    return ring.index == index_after


class RingMove(NamedTuple):
    """Frames moving between the pool and a ring (fill, rx, tx, completion)."""

    kind: MoveKind
    frames: list[int]
    ring: _IndexedRing
    index_after: int

    def settle(self, pool: FramePool) -> None:
        if (self.kind is MoveKind.INTO_FREE) == _ring_step_done(self.ring, self.index_after):
            pool.ensure_free(self.frames)
        else:
            pool.ensure_taken(self.frames)


class RingToRingMove(NamedTuple):
    """Frames copied out of the rx ring going straight back to the fill ring (no stop in the pool)."""

    frames: list[int]
    source: _IndexedRing
    source_index_after: int
    destination: _IndexedRing
    destination_index_after: int

    def settle(self, pool: FramePool) -> None:
        # The source step comes first: frames it released and the second step did not
        # publish are free; otherwise they are in one ring or the other.
        if (_ring_step_done(self.source, self.source_index_after)
                and not _ring_step_done(self.destination, self.destination_index_after)):
            pool.ensure_free(self.frames)


class LeaseMove(NamedTuple):
    """Frames moving from the rx ring into a lease, or from an ended lease into the pool or
    straight back to the fill ring (``ring``)."""

    kind: MoveKind
    frames: list[int]
    ring: _IndexedRing | None
    index_after: int
    leases: _Lender

    def settle(self, pool: FramePool) -> None:
        if self.kind is MoveKind.LEASE_TO_FREE:
            # The views were released and checked before the move began: finish it.
            self.leases.forget_within(self.frames)
            pool.ensure_free(self.frames)
        elif self.kind is MoveKind.LEASE_TO_RING:
            self.leases.forget_within(self.frames)
            assert self.ring is not None
            if not _ring_step_done(self.ring, self.index_after):
                pool.ensure_free(self.frames)
        else:
            assert self.ring is not None
            if _ring_step_done(self.ring, self.index_after) and not self.leases.holds(self.frames):
                pool.ensure_free(self.frames)  # taken off the ring but never lent


class ForwardMove(NamedTuple):
    """A batch going into a tx ring: copies in frames taken from the pool, and frames
    forwarded in place out of leases (``forwarded``: each lease with its frames).

    Settled forwards: the views are released before the move begins, so their frames
    can only go on to the tx ring.
    """

    descriptors: array[int]
    ring: _DescriptorRing
    index_after: int
    copies: list[int]
    forwarded: list[tuple[_Loan, list[int]]]

    def settle(self, pool: FramePool) -> None:
        for lease, frames in self.forwarded:
            lease.drop(frames)
        pool.ensure_taken(self.copies)
        if not _ring_step_done(self.ring, self.index_after):
            self.ring.submit(self.descriptors)


Move = Union[RingMove, RingToRingMove, LeaseMove, ForwardMove]
#: A move as the hot paths write it down: ``(RingMove, kind, frames, ring, index_after)``,
#: the class followed by its fields; ``FramePool.settle`` makes the move of it.
Journal = tuple[Any, ...]


class FrameAccountingError(XDPError, AssertionError):
    """A UMEM frame is missing or in two places at once: a bug in the library."""


class FramePool:
    """The free frames of one UMEM (a list used as a stack), the move in progress, and
    how many frames each socket's receive side may hold.

    Rx quota: the sockets using the UMEM share half of its frames for receiving (fill
    ring, kernel, rx ring, views lent) in equal parts, so one that stops reading, or whose
    queue is idle, holds at most its part and never starves the others; the other half
    is for sending (a view forwarded in place leaves its socket's part).

    Every method but the lock-taking ones expects the caller to hold ``lock``.
    """

    __slots__ = ("lock", "frames", "move", "all_frames", "to_frame", "rx_quota", "retired", "_members",
                 "_awaited", "leases_by_exporter")

    def __init__(self, all_frames: list[int], frame_size: int, sockets: int = 1) -> None:
        """``sockets``: how many sockets the UMEM is made for (the first ones to join do not
        take the shares of those still to come)."""
        # Reentrant, as the sockets' own locks: an exception injected at the very end of a
        # ``with`` block (a trace function can do that, before ``__exit__`` runs) leaves it
        # held, and the thread it happened in must still be able to go on.
        self.lock = threading.RLock()
        self.all_frames = all_frames
        #: Rounds an address down to its frame's base (received addresses point past the headroom).
        self.to_frame = ~(frame_size - 1)
        self.frames = list(all_frames)
        self.move: Journal | None = None
        self._members: list[_Member] = []
        self._awaited = sockets
        self.rx_quota = len(all_frames) // 2
        #: Frames that went with a socket that closed while others still use the UMEM.
        self.retired = 0
        #: id(exporter) -> the lease whose views it exports: finds the frame behind a view to forward.
        self.leases_by_exporter: dict[int, object] = {}

    def settle(self) -> None:
        """Finish or undo a move an exception interrupted."""
        move = self.move
        if move is not None:
            move_class: type[Move] = move[0]
            move_class(*move[1:]).settle(self)
            self.move = None

    def ensure_free(self, frames: Iterable[int]) -> None:
        """Add those of ``frames`` the list lacks (idempotent: one C-level ``+=``)."""
        present = set(self.frames)
        self.frames += [frame for frame in frames if frame not in present]

    def ensure_taken(self, frames: Iterable[int]) -> None:
        """Remove ``frames`` from the list if they are there (idempotent)."""
        taken = set(frames)
        self.frames[:] = [frame for frame in self.frames if frame not in taken]

    # ----------------------------------------------------------- sockets
    def join(self, member: _Member) -> None:
        """One more socket draws on the pool: the receive quota is shared again."""
        with self.lock:
            self._members.append(member)
            self._awaited = max(0, self._awaited - 1)
            self._share_quota()

    def leave(self, member: _Member, *, bound: bool) -> None:
        """``member`` is closing (call before its rings go). Where others still use the
        pool, the frames it holds (in its rings, with the kernel, lent as views) are
        retired, never reused: a zero-copy driver may still write into them until the
        kernel has released the socket. One that never got bound gives them back."""
        with self.lock:
            if self.move is not None:
                self.settle()
            if member not in self._members:
                return
            if len(self._members) > 1:
                if not bound:
                    member.give_back_unbound()
                self.retired += sum(census.held() for census in member.censuses().values())
            self._members.remove(member)
            self._share_quota()

    def _share_quota(self) -> None:
        usable = len(self.all_frames) - self.retired
        self.rx_quota = max(1, usable // 2 // max(1, len(self._members) + self._awaited))

    def check_all(self) -> dict[str, dict[str, int]]:
        """``check`` over every socket drawing on the pool; the counts by place, by socket half."""
        with self.lock:
            if self.move is not None:
                self.settle()
            censuses = {f"{member.label} {half}": census
                        for member in self._members for half, census in member.censuses().items()}
            counts = {name: census.counts() for name, census in censuses.items()}
            counts["umem"] = self.check(censuses)
            return counts

    # ------------------------------------------------------------- check
    def check(self, censuses: dict[str, FrameCensus]) -> dict[str, int]:
        """Raise ``FrameAccountingError`` unless every frame is in exactly one place.

        ``censuses`` (one per socket half, by name) name where their frames are and count
        those inside the kernel that user space cannot name: exactly that many, plus the
        retired ones, must be in no place. Returns the pool's own counts.
        """
        to_frame = self.to_frame
        places = {"free": [a & to_frame for a in self.frames]}
        for owner, census in censuses.items():
            for place, frames in census.places.items():
                places[f"{owner} {place}"] = [a & to_frame for a in frames]
        seen: Counter[int] = Counter()
        for frames in places.values():
            seen.update(frames)
        everything = set(self.all_frames)
        problems = []
        twice = sorted(frame for frame, times in seen.items() if times > 1)
        if twice:
            where = {hex(f): [p for p, fs in places.items() if f in fs] for f in twice[:8]}
            problems.append(f"{len(twice)} frame(s) in two places at once: {where}")
        strangers = sorted(set(seen) - everything)
        if strangers:
            problems.append(f"{len(strangers)} address(es) that are not frames of this UMEM: "
                            f"{[hex(f) for f in strangers[:8]]}")
        missing = everything - set(seen)
        unnamed = sum(n for census in censuses.values() for n in census.unidentified.values())
        if len(missing) != unnamed + self.retired:
            problems.append(f"{len(missing)} frame(s) in no place (the kernel holds {unnamed} we cannot name, "
                            f"{self.retired} are retired): {[hex(f) for f in sorted(missing)[:8]]}")
        if problems:
            counts = {place: len(frames) for place, frames in places.items()}
            raise FrameAccountingError("UMEM frames: " + "; ".join(problems) + f"; counts by place: {counts}")
        return {"free": len(self.frames), "retired": self.retired}


@dataclass
class FrameCensus:
    """Where the frames one half of a socket holds are, by place (UMEM addresses, which
    ``FramePool.check`` rounds down to their frames).

    ``unidentified`` counts frames known to be inside the kernel whose addresses user
    space cannot see (sent frames not completed yet, frames being received).
    """

    places: dict[str, list[int]] = field(default_factory=dict)
    unidentified: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        counts = {place: len(frames) for place, frames in self.places.items()}
        counts.update(self.unidentified)
        return counts

    def held(self) -> int:
        """How many frames this half holds in all."""
        return sum(len(frames) for frames in self.places.values()) + sum(self.unidentified.values())
