"""The rules every UMEM frame move follows, and the check that they held.

Each half of the UMEM (rx, tx) has one owner (``_rx.RxPath``, ``_tx.TxPath``) and every
frame of it is, at every moment, in exactly one place: free in user space, in a ring,
inside the kernel, or lent out as zero-copy views.

A move between a ring and the free list takes two steps that Python cannot make atomic
(publish the ring index, update the list), and an exception raised by a signal handler
(``KeyboardInterrupt``) can land between any two bytecodes. So every move is first
written down as a ``Move``; the owner clears it when both steps are done. An owner that
finds a ``Move`` left behind settles it before anything else: the ring index it
committed (our own cached index, always stored before the shared word) says whether
the ring step happened, and the free list is made to agree. An interruption therefore
only delays frames; it never loses one or hands one out twice.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from .errors import XDPError

__all__ = [
    "FrameAccountingError",
    "FrameCensus",
    "FreeFrames",
    "Move",
    "MoveKind",
]


class MoveKind(enum.Enum):
    """Which way a move goes, relative to the free list."""

    OUT_OF_FREE = "free -> ring"
    INTO_FREE = "ring -> free"
    INTO_LEASE = "rx ring -> lease"
    LEASE_TO_FREE = "lease -> free"


class _IndexedRing(Protocol):
    @property
    def index(self) -> int: ...

    def republish(self) -> None: ...


class Move(NamedTuple):
    """One move in progress: its frames, the ring it crosses and that ring's index after it."""

    kind: MoveKind
    frames: list[int]
    ring: _IndexedRing | None
    index_after: int

    def ring_step_done(self) -> bool:
        """Whether the ring's index was committed (our index is stored before the shared word)."""
        assert self.ring is not None
        self.ring.republish()
        return self.ring.index == self.index_after


class FreeFrames:
    """The free frames of one UMEM half (a list used as a stack) and the move in progress.

    Not thread-safe: its owner serialises access.
    """

    __slots__ = ("frames", "move")

    def __init__(self, frames: list[int]) -> None:
        self.frames = frames
        self.move: Move | None = None

    def ensure_free(self, frames: Iterable[int]) -> None:
        """Add those of ``frames`` the list lacks (idempotent: one C-level ``+=``)."""
        present = set(self.frames)
        self.frames += [frame for frame in frames if frame not in present]

    def ensure_taken(self, frames: Iterable[int]) -> None:
        """Remove ``frames`` from the list if they are there (idempotent)."""
        taken = set(frames)
        self.frames[:] = [frame for frame in self.frames if frame not in taken]

    def settle_ring_move(self) -> None:
        """Finish or undo an interrupted move across a ring, then forget it."""
        move = self.move
        if move is None:
            return
        done = move.ring_step_done()
        if (move.kind is MoveKind.INTO_FREE) == done:
            self.ensure_free(move.frames)
        else:
            self.ensure_taken(move.frames)
        self.move = None


class FrameAccountingError(XDPError, AssertionError):
    """A UMEM frame is missing or in two places at once: a bug in the library."""


@dataclass
class FrameCensus:
    """Where every frame of one UMEM half is, by place (frame base addresses).

    ``unidentified`` counts frames known to be inside the kernel whose addresses user
    space cannot see (sent frames not completed yet): they must be exactly the frames
    no place names.
    """

    half: str
    all_frames: list[int]
    places: dict[str, list[int]] = field(default_factory=dict)
    unidentified: tuple[str, int] | None = None

    def counts(self) -> dict[str, int]:
        counts = {place: len(frames) for place, frames in self.places.items()}
        if self.unidentified is not None:
            counts[self.unidentified[0]] = self.unidentified[1]
        return counts

    def check(self) -> None:
        """Raise ``FrameAccountingError`` unless every frame is in exactly one place."""
        seen: Counter[int] = Counter()
        for frames in self.places.values():
            seen.update(frames)
        everything = set(self.all_frames)
        problems = []
        twice = sorted(frame for frame, times in seen.items() if times > 1)
        if twice:
            where = {hex(f): [p for p, fs in self.places.items() if f in fs] for f in twice[:8]}
            problems.append(f"{len(twice)} frame(s) in two places at once: {where}")
        strangers = sorted(set(seen) - everything)
        if strangers:
            problems.append(f"{len(strangers)} address(es) that are not frames of this half: "
                            f"{[hex(f) for f in strangers[:8]]}")
        missing = everything - set(seen)
        expected_missing = self.unidentified[1] if self.unidentified is not None else 0
        if len(missing) != expected_missing:
            inside = f" (the kernel holds {expected_missing})" if self.unidentified else ""
            problems.append(f"{len(missing)} frame(s) in no place{inside}: "
                            f"{[hex(f) for f in sorted(missing)[:8]]}")
        if problems:
            raise FrameAccountingError(f"{self.half} frames: " + "; ".join(problems) +
                                       f"; counts by place: {self.counts()}")
