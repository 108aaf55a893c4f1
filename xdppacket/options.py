"""Option objects, passed in any order like Go's ``opts ...interface{}``.

Each option checks its own type and range when it is built; ``resolve_options`` checks
the combinations and returns an immutable ``XDPOptions``. Both run before any kernel
resource exists, so a bad option never leaves anything behind.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Union

from .filter import CompiledFilter, OptFilter

__all__ = [
    "OptBatchTimestamps",
    "BIND_AUTO",
    "BIND_COPY",
    "BIND_ZEROCOPY",
    "BindMode",
    "IO_MODE_BLOCK",
    "IO_MODE_NONBLOCK",
    "IOMode",
    "MAX_POLL_TIMEOUT_US",
    "MAX_QUEUE_COUNT",
    "OptBindMode",
    "OptBusyPoll",
    "OptSharedUmem",
    "OptFrameSize",
    "OptHeadroom",
    "OptHugePages",
    "OptIoMode",
    "OptNumFrames",
    "OptPollTimeout",
    "OptQueueCount",
    "OptQueueID",
    "OptRingSize",
    "OptXDPMode",
    "OptXDPProgram",
    "XDPMode",
    "XDPOptions",
    "XDP_MODE_DRV",
    "XDP_MODE_SKB",
    "resolve_options",
]

MAX_QUEUE_COUNT = 64
#: One day: a longer non-blocking wait is a blocking one, and poll(2) takes an int of milliseconds.
MAX_POLL_TIMEOUT_US = 86_400 * 1_000_000
#: Where copy-mode receive puts a frame's data: this far into its UMEM frame, plus OptHeadroom.
XDP_PACKET_HEADROOM = 256
# The largest UMEM frame (OptFrameSize): no headroom can reach beyond it.
_LARGEST_FRAME_SIZE = 4096


class XDPMode(enum.IntEnum):
    """Where the XDP program runs: in the driver (native) or on the generic skb path."""

    DRV = 4  # XDP_FLAGS_DRV_MODE
    SKB = 2  # XDP_FLAGS_SKB_MODE


class IOMode(enum.IntEnum):
    """Whether calls wait without limit (block) or at most the poll timeout."""

    BLOCK = 0
    NONBLOCK = 1


class BindMode(enum.IntEnum):
    """How the socket binds: let the kernel choose, or insist on copy or zero-copy.

    Values are the ``sockaddr_xdp`` bind flags (``XDP_COPY``, ``XDP_ZEROCOPY``); ``AUTO``
    sets neither, so the kernel tries zero-copy and falls back to copy.
    """

    AUTO = 0
    COPY = 1 << 1  # XDP_COPY
    ZEROCOPY = 1 << 2  # XDP_ZEROCOPY


XDP_MODE_DRV = XDPMode.DRV
XDP_MODE_SKB = XDPMode.SKB
IO_MODE_BLOCK = IOMode.BLOCK
IO_MODE_NONBLOCK = IOMode.NONBLOCK
BIND_AUTO = BindMode.AUTO
BIND_COPY = BindMode.COPY
BIND_ZEROCOPY = BindMode.ZEROCOPY


def _require_int(option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{option} takes an int, got {type(value).__name__} {value!r}")
    return value


def _require_power_of_two(option: str, value: object, low: int, high: int) -> int:
    number = _require_int(option, value)
    if not low <= number <= high or number & (number - 1):
        raise ValueError(f"{option}({number}): must be a power of two from {low} to {high}")
    return number


@dataclass(frozen=True)
class OptNumFrames:
    """UMEM frames per direction: rx and tx each get this many."""

    value: int

    def __post_init__(self) -> None:
        _require_power_of_two("OptNumFrames", self.value, 64, 262144)


@dataclass(frozen=True)
class OptFrameSize:
    """UMEM frame (chunk) size in bytes; bounds the largest packet."""

    value: int

    def __post_init__(self) -> None:
        number = _require_int("OptFrameSize", self.value)
        if number not in (2048, 4096):
            raise ValueError(f"OptFrameSize({number}): must be 2048 or 4096")


@dataclass(frozen=True)
class OptRingSize:
    """Entries in each of the fill, completion, rx and tx rings."""

    value: int

    def __post_init__(self) -> None:
        # The upper bound depends on OptNumFrames and is checked in resolve_options.
        _require_power_of_two("OptRingSize", self.value, 64, 262144 * 2)


@dataclass(frozen=True)
class OptXDPMode:
    """``XDP_MODE_DRV`` (native, fast) or ``XDP_MODE_SKB`` (generic, works on any driver)."""

    value: XDPMode

    def __post_init__(self) -> None:
        if not isinstance(self.value, XDPMode):
            raise TypeError(f"OptXDPMode takes XDP_MODE_DRV or XDP_MODE_SKB, got {self.value!r}")


@dataclass(frozen=True)
class OptQueueID:
    """Which NIC queue an ``XDPPacket`` binds."""

    value: int

    def __post_init__(self) -> None:
        # The upper bound is the interface's queue count, checked when the socket opens.
        number = _require_int("OptQueueID", self.value)
        if number < 0:
            raise ValueError(f"OptQueueID({number}): must be 0 or more")


@dataclass(frozen=True)
class OptQueueCount:
    """How many queues, ``[0, n)``, an ``XDPMultiQueue`` binds."""

    value: int

    def __post_init__(self) -> None:
        number = _require_int("OptQueueCount", self.value)
        if not 1 <= number <= MAX_QUEUE_COUNT:
            raise ValueError(f"OptQueueCount({number}): must be from 1 to {MAX_QUEUE_COUNT}")


@dataclass(frozen=True)
class OptPollTimeout:
    """How long a non-blocking call may wait, in microseconds."""

    value: int

    def __post_init__(self) -> None:
        number = _require_int("OptPollTimeout", self.value)
        if not 0 <= number <= MAX_POLL_TIMEOUT_US:
            raise ValueError(
                f"OptPollTimeout({number}): must be from 0 to {MAX_POLL_TIMEOUT_US} microseconds "
                f"(one day); to wait without limit use OptIoMode(IO_MODE_BLOCK)"
            )


@dataclass(frozen=True)
class OptIoMode:
    """``IO_MODE_BLOCK`` or ``IO_MODE_NONBLOCK``."""

    value: IOMode

    def __post_init__(self) -> None:
        if not isinstance(self.value, IOMode):
            raise TypeError(f"OptIoMode takes IO_MODE_BLOCK or IO_MODE_NONBLOCK, got {self.value!r}")


@dataclass(frozen=True)
class OptBatchTimestamps:
    """Frames taken off the ring in one read share one timestamp, the time of that read.

    By default each frame carries its arrival time (the XDP program stamps it); that
    needs one ``CaptureInfo`` per frame, which costs more than the rest of a batched
    read. With this option frames of equal length in a read share one ``CaptureInfo``
    (xdppacket 1.x's behaviour), for the highest packet rates.
    """

    value: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.value, bool):
            raise TypeError(f"OptBatchTimestamps takes a bool, got {type(self.value).__name__} {self.value!r}")


@dataclass(frozen=True)
class OptXDPProgram:
    """Path of your own compiled XDP object instead of the shipped ``xdpsock_kern.o``.

    Any XDP program works that redirects to an XSKMAP named ``xsks_map`` (u32 keys and
    values), as ``ebpf/xdpsock_kern.c`` does; it goes through the same loader.
    ``program`` names the program to load when the object holds several (required then).
    """

    value: str
    program: str | None = None

    def __post_init__(self) -> None:
        if self.program is not None and not isinstance(self.program, str):
            raise TypeError(f"OptXDPProgram's program takes a name (str), got {type(self.program).__name__}")
        if not isinstance(self.value, (str, os.PathLike)):
            raise TypeError(f"OptXDPProgram takes a path, got {type(self.value).__name__} {self.value!r}")
        path = os.fspath(self.value)
        if not os.path.isfile(path):
            raise ValueError(f"OptXDPProgram({path!r}): no such file; build one with `make -C ebpf`")
        object.__setattr__(self, "value", path)


@dataclass(frozen=True)
class OptBindMode:
    """``BIND_AUTO`` (zero-copy where the driver can, else copy), ``BIND_COPY`` or ``BIND_ZEROCOPY``.

    ``sock.zero_copy`` says what the kernel chose. ``BIND_ZEROCOPY`` fails with an
    ``OSError`` naming the driver where zero-copy is impossible.
    """

    value: BindMode

    def __post_init__(self) -> None:
        if not isinstance(self.value, BindMode):
            raise TypeError(f"OptBindMode takes BIND_AUTO, BIND_COPY or BIND_ZEROCOPY, got {self.value!r}")


@dataclass(frozen=True)
class OptBusyPoll:
    """Busy polling: the application's own calls run the driver's receive and send work.

    Sets ``SO_PREFER_BUSY_POLL``, ``SO_BUSY_POLL`` (``timeout_us``) and
    ``SO_BUSY_POLL_BUDGET`` (``budget``, frames per poll) on the socket, and a read that
    finds the ring empty spins on ``recvfrom`` for up to ``timeout_us`` before it sleeps.
    Pays off on NICs whose interrupts are deferred (README: busy polling).
    """

    budget: int = 64
    timeout_us: int = 20

    def __post_init__(self) -> None:
        budget = _require_int("OptBusyPoll budget", self.budget)
        if not 1 <= budget <= 65535:
            raise ValueError(f"OptBusyPoll(budget={budget}): the budget must be from 1 to 65535 frames")
        timeout = _require_int("OptBusyPoll timeout_us", self.timeout_us)
        if not 0 <= timeout <= 2**31 - 1:
            raise ValueError(f"OptBusyPoll(timeout_us={timeout}): must be from 0 to {2**31 - 1} microseconds")

    @property
    def value(self) -> OptBusyPoll:
        return self


@dataclass(frozen=True)
class OptHugePages:
    """Put the UMEM on huge pages (fewer TLB misses), rounded up to whole huge pages.

    Needs free huge pages: ``echo N > /proc/sys/vm/nr_hugepages``.
    """

    @property
    def value(self) -> bool:
        return True


@dataclass(frozen=True)
class OptHeadroom:
    """Bytes the kernel leaves free before each received frame (``xdp_umem_reg.headroom``).

    For programs that grow frames at the front with ``bpf_xdp_adjust_head`` in
    zero-copy mode; in copy mode a frame's data starts ``256 + n`` bytes into its UMEM frame.
    Every frame the interface can deliver must still fit (checked when the socket opens).
    """

    value: int

    def __post_init__(self) -> None:
        number = _require_int("OptHeadroom", self.value)
        limit = _LARGEST_FRAME_SIZE - XDP_PACKET_HEADROOM
        if not 0 <= number < limit:
            raise ValueError(f"OptHeadroom({number}): must be from 0 to {limit - 1} bytes")


@dataclass(frozen=True)
class OptMultiBuffer:
    """Frames longer than one UMEM frame (jumbo frames): received as one packet, sent as several descriptors.

    Binds with ``XDP_USE_SG`` and runs the frags-aware variant of the shipped program
    (an ``OptXDPProgram`` must itself be frags-aware: ``SEC("xdp.frags")``). Counters
    count packets; a zero-copy read returns a frame spread over several UMEM frames as
    ``bytes`` (README: jumbo frames).
    """

    @property
    def value(self) -> bool:
        return True


@dataclass(frozen=True)
class OptSharedUmem:
    """One UMEM for several sockets (``XDP_SHARED_UMEM``): frames received on one can be sent
    on another in place (zero-copy views written to it).

    ``XDPMultiQueue``: ``OptSharedUmem()``, one UMEM for all its queues (``OptNumFrames(n)``
    still means n frames per direction per queue, pooled). ``XDPPacket``:
    ``OptSharedUmem(sock)``, the UMEM of the open ``XDPPacket`` ``sock`` (another queue or
    interface); frame size and count come from that UMEM. The sockets share the frames:
    each may hold an equal part of half of them on its receive side (README: shared UMEM).
    """

    sock: object = None


Option = Union[
    OptNumFrames,
    OptFrameSize,
    OptRingSize,
    OptXDPMode,
    OptQueueID,
    OptQueueCount,
    OptPollTimeout,
    OptIoMode,
    OptXDPProgram,
    OptFilter,
    OptBindMode,
    OptBusyPoll,
    OptHugePages,
    OptHeadroom,
    OptBatchTimestamps,
    OptMultiBuffer,
    OptSharedUmem,
]

_FIELD_BY_OPTION: dict[type, str] = {
    OptNumFrames: "num_frames",
    OptFrameSize: "frame_size",
    OptRingSize: "ring_size",
    OptXDPMode: "xdp_mode",
    OptQueueID: "queue_id",
    OptQueueCount: "queue_count",
    OptPollTimeout: "poll_timeout_us",
    OptIoMode: "io_mode",
    OptXDPProgram: "program_path",
    OptFilter: "filter",
    OptBindMode: "bind_mode",
    OptBusyPoll: "busy_poll",
    OptHugePages: "huge_pages",
    OptHeadroom: "headroom",
    OptBatchTimestamps: "batch_timestamps",
    OptMultiBuffer: "multi_buffer",
    OptSharedUmem: "shared_umem",
}


@dataclass(frozen=True)
class XDPOptions:
    """The resolved options of a socket, available as ``.options``."""

    num_frames: int = 1024
    frame_size: int = 4096
    ring_size: int = 1024
    xdp_mode: XDPMode = XDPMode.DRV
    queue_id: int = 0
    queue_count: int = 1
    poll_timeout_us: int = 100
    io_mode: IOMode = IOMode.BLOCK
    #: None: the program shipped with xdppacket.
    program_path: str | None = None
    #: Which program of ``program_path`` (None: its only one).
    program_name: str | None = None
    #: The capture filter spliced into the XDP program (None: every frame is captured).
    filter: CompiledFilter | None = None
    bind_mode: BindMode = BindMode.AUTO
    #: None: no busy polling.
    busy_poll: OptBusyPoll | None = None
    huge_pages: bool = False
    #: Bytes kept free before each received frame, beyond the kernel's own 256.
    headroom: int = 0
    #: Frames of one read share the time of that read instead of carrying their arrival times.
    batch_timestamps: bool = False
    #: OptMultiBuffer: frames may span several UMEM frames.
    multi_buffer: bool = False
    #: OptSharedUmem: one UMEM for all queues (XDPMultiQueue), or that of ``shared_umem_with``.
    shared_umem: bool = False
    #: OptSharedUmem(sock): the open XDPPacket whose UMEM an XDPPacket uses.
    shared_umem_with: object = None

    @property
    def blocking(self) -> bool:
        return self.io_mode is IOMode.BLOCK


def resolve_options(opts: Iterable[object], *, owner: str) -> XDPOptions:
    """Fold option objects (later ones win) into ``XDPOptions`` and check combinations.

    ``owner`` names the class being built, so an option that does not apply to it
    (``OptQueueCount`` for ``XDPPacket``, ``OptQueueID`` for ``XDPMultiQueue``) is refused
    by name rather than silently ignored.
    """
    not_for_owner = {"XDPPacket": OptQueueCount, "XDPMultiQueue": OptQueueID}.get(owner)
    resolved = XDPOptions()
    for opt in opts:
        field = _FIELD_BY_OPTION.get(type(opt))
        if field is None:
            raise TypeError(
                f"{owner}: unknown option {opt!r}; options are "
                + ", ".join(cls.__name__ for cls in _FIELD_BY_OPTION)
            )
        if type(opt) is not_for_owner:
            hint = "OptQueueID" if owner == "XDPPacket" else "OptQueueCount"
            raise TypeError(f"{owner} does not take {type(opt).__name__}; use {hint}")
        if isinstance(opt, OptFilter):
            resolved = replace(resolved, filter=opt.compiled)
            continue
        if isinstance(opt, OptSharedUmem):
            if (opt.sock is None) != (owner == "XDPMultiQueue"):
                raise TypeError("OptSharedUmem() (no socket) is for XDPMultiQueue; an XDPPacket takes "
                                "OptSharedUmem(sock), sock being the open XDPPacket whose UMEM it shares")
            resolved = replace(resolved, shared_umem=True, shared_umem_with=opt.sock)
            continue
        resolved = replace(resolved, **{field: opt.value})  # type: ignore[attr-defined]
        if isinstance(opt, OptXDPProgram):
            resolved = replace(resolved, program_name=opt.program)
    if resolved.ring_size > resolved.num_frames * 2:
        raise ValueError(
            f"OptRingSize({resolved.ring_size}) exceeds twice OptNumFrames({resolved.num_frames}); "
            f"use a ring size of at most {resolved.num_frames * 2} or more frames"
        )
    if resolved.bind_mode is BindMode.ZEROCOPY and resolved.xdp_mode is XDPMode.SKB:
        raise ValueError(
            "OptBindMode(BIND_ZEROCOPY) cannot work with OptXDPMode(XDP_MODE_SKB): generic mode always "
            "copies frames; use OptXDPMode(XDP_MODE_DRV) on a driver with zero-copy, or BIND_AUTO"
        )
    if resolved.shared_umem and resolved.multi_buffer:
        raise ValueError("OptSharedUmem cannot be combined with OptMultiBuffer: the kernel takes no bind "
                         "flags (XDP_USE_SG) for a socket sharing a UMEM; use one of them")
    frame_room = resolved.frame_size - XDP_PACKET_HEADROOM
    if resolved.headroom >= frame_room:
        raise ValueError(
            f"OptHeadroom({resolved.headroom}) leaves no room for a frame in OptFrameSize({resolved.frame_size}) "
            f"after the kernel's own {XDP_PACKET_HEADROOM} bytes; use less than {frame_room} bytes"
        )
    return resolved
