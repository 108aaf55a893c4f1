"""Arrival times (and custom metadata) from the trailer an XDP program writes before each frame.

The shipped program puts ``struct xdppacket_capture_meta`` (``ebpf/xdppacket_meta.h``) in
front of every frame it redirects: the trailer ``struct xdppacket_meta`` (the frame's
arrival time, already CLOCK_REALTIME: ``bpf_ktime_get_ns`` plus the offset
``ShippedVariables`` keeps in the program; and the length of all metadata before the
frame), then a pcap record header directly before the frame (``_records`` writes it out
with the frame). A custom program puts the trailer alone directly before the frame, its
time CLOCK_MONOTONIC. Copy mode copies that metadata into the UMEM with the frame, so it
is read here, before the frame goes back to the kernel.

A trailer is trusted only if it is newer than every trailer read before on this queue:
frames reach the ring in the order the program saw them, so an older one is a stale
leftover of an earlier frame in the same chunk (a program or driver that wrote no
metadata). Such frames, and any frame without a trailer, get ``None``: the caller uses
the time it read the ring. The shipped program says when that can happen: it raises its
flag ``xdppacket_metadata_missing`` before it redirects a frame without metadata, so
while the flag is clear, read after the ring, every trailer is fresh and none is checked.
"""

from __future__ import annotations

import enum
import mmap
import struct
import time
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from ._maps import GlobalVariables

__all__ = [
    "METADATA_MISSING_VARIABLE",
    "PCAP_RECORD_HEADER_SIZE",
    "REALTIME_OFFSET_VARIABLE",
    "SHIPPED_METADATA_SIZE",
    "TRAILER_SIZE",
    "XDPPACKET_META_MAGIC",
    "ArrivalReader",
    "IncompleteTimes",
    "ShippedVariables",
    "TrailerSource",
    "realtime_offset",
]

#: ``struct xdppacket_meta``: u64 rx_time_ns, u32 meta_len, u32 magic ("XDPP").
TRAILER_SIZE = 16
#: ``struct xdppacket_pcap_record``: u32 ts_sec, ts_nsec, caplen, len, directly before the frame.
PCAP_RECORD_HEADER_SIZE = 16
#: What the shipped program writes before each frame: the trailer, then the pcap record header.
SHIPPED_METADATA_SIZE = TRAILER_SIZE + PCAP_RECORD_HEADER_SIZE
#: The shipped program's globals: the offset it adds to ``bpf_ktime_get_ns()`` for the record
#: headers (BPF has no wall clock), and its flag for a frame that went without metadata.
REALTIME_OFFSET_VARIABLE = "xdppacket_realtime_offset_ns"
METADATA_MISSING_VARIABLE = "xdppacket_metadata_missing"
XDPPACKET_META_MAGIC = 0x50504458
# CLOCK_REALTIME - CLOCK_MONOTONIC is re-measured this often (NTP may slew the former).
_OFFSET_REFRESH_NS = 1_000_000_000
_offset_cache = (0, -_OFFSET_REFRESH_NS)  # (offset, CLOCK_MONOTONIC when measured)
# Copy mode puts metadata in the kernel's headroom before the frame (XDP_PACKET_HEADROOM).
_MAX_METADATA = 256
# The trailer as the program writes it (host byte order), whole and its parts; read at any
# alignment (OptHeadroom can put a frame's data at any byte).
_TRAILER = struct.Struct("=QII")
_TIME = struct.Struct("=Q")
_META_LEN = struct.Struct("=I")


class TrailerSource(enum.Enum):
    """Who writes the trailers a socket reads, if it reads them."""

    SHIPPED = "the shipped program"  # a trailer in front of every frame it redirects
    CUSTOM = "a custom program"  # maybe: check the magic word; metadata of its own may precede it
    NOT_READ = "not read"  # OptBatchTimestamps: frames of one read share the time of that read


class IncompleteTimes(list[Optional[int]]):
    """Arrival times of which some are None (frames without a trustworthy trailer).

    Its own type so that a reader tells a complete list (a plain ``list``, the usual case)
    from this one by type alone, without looking for None among every frame's time.
    """


class ShippedVariables:
    """The shipped program's two variables, as a reader of its trailers uses them: the flag
    it raises before redirecting a frame without metadata (read), and the wall-clock offset
    it adds to its times (kept equal to ``realtime_offset``'s). Every socket on the program, and the capture
    fast path, keeps it current: they all give it the same process-wide measurement (other
    processes on the same program give theirs, which agree to microseconds)."""

    def __init__(self, metadata_missing: Callable[[], int], write_realtime_offset: Callable[[int], None]):
        self.metadata_missing = metadata_missing
        self._write_realtime_offset = write_realtime_offset
        self._offset_written: int | None = None

    @classmethod
    def of(cls, variables: GlobalVariables) -> ShippedVariables | None:
        """Those of a loaded program; None if it lacks them (not the shipped program) or
        their section cannot be mapped (a program another process loaded otherwise)."""
        if METADATA_MISSING_VARIABLE not in variables or REALTIME_OFFSET_VARIABLE not in variables:
            return None
        try:  # lock-free, so that an exception landing anywhere in a read leaves no lock held
            return cls(variables.reader(METADATA_MISSING_VARIABLE), variables.writer(REALTIME_OFFSET_VARIABLE))
        except OSError:
            return None

    def realtime_offset(self, monotonic_now: int) -> int:
        """``realtime_offset``, given to the program when it changed."""
        offset = realtime_offset(monotonic_now)
        if offset != self._offset_written:
            self._write_realtime_offset(offset)
            self._offset_written = offset
        return offset


class ArrivalReader:
    """Reads trailers in front of received frames of one UMEM.

    Holds views of the UMEM: ``close()`` releases them so the area can be unmapped.
    Not thread-safe: the rx path that owns it serialises calls.
    """

    def __init__(self, area: mmap.mmap, frame_size: int, data_offset: int, custom_metadata: bool,
                 variables: ShippedVariables | None = None):
        """``data_offset``: where a received frame's data starts in its UMEM frame (256 plus
        the UMEM's headroom), in copy mode and with zero-copy drivers alike. ``variables``:
        the shipped program's (None: a custom program, or a shipped one whose variables
        cannot be mapped; its trailers are then checked in every batch)."""
        self._area = area
        #: Whether to return metadata in front of the trailer (custom programs may write some).
        self._custom_metadata = custom_metadata
        self._variables = variables
        self._newest = 0  # the newest arrival time trusted so far, CLOCK_MONOTONIC
        # The shipped trailer's time of every UMEM frame whose data starts at ``data_offset``,
        # by frame number (address >> _frame_shift): one subscript per frame.
        whole = memoryview(area)
        start = data_offset - SHIPPED_METADATA_SIZE
        words = whole[start : start + (len(whole) - start) // 8 * 8].cast("Q")
        self._times_by_frame = words[:: frame_size // 8]
        self._views = [self._times_by_frame, words, whole]
        self._frame_shift = frame_size.bit_length() - 1
        self._frame_mask = frame_size - 1
        self._data_offset = data_offset

    def arrival_times(self, addresses: list[int]) -> list[int | None]:
        """CLOCK_REALTIME arrival time of each frame whose data starts at ``addresses``.

        ``None`` for a frame with no trustworthy trailer: older than the newest one read
        (stale), later than now (not a time at all), or, for a custom program, without
        the trailer's magic word. A list with a None in it is an ``IncompleteTimes``.
        """
        now = time.monotonic_ns()
        variables = self._variables
        offset = realtime_offset(now) if variables is None else variables.realtime_offset(now)
        if self._custom_metadata:
            return self._custom_times(addresses, now, offset)
        # The usual case: every frame's data at ``data_offset`` in its UMEM frame. The sum
        # tells in C: a frame elsewhere leaves a remainder (frames moved by amounts that
        # cancel out would not; the kernel moves none, only programs adjusting the head).
        if not (sum(addresses) - len(addresses) * self._data_offset) & self._frame_mask:
            by_frame = self._times_by_frame
            shift = self._frame_shift
            times = [by_frame[a >> shift] for a in addresses]
        else:
            area = self._area
            times = [_TIME.unpack_from(area, a - SHIPPED_METADATA_SIZE)[0] for a in addresses]
        if variables is not None and not variables.metadata_missing():  # the caller read the ring first
            self._newest = times[-1] - offset  # the newest but for a reordering (of µs)
            return times  # type: ignore[return-value]  # list[int] is a list[int | None]
        # Checked on CLOCK_MONOTONIC, which a change of the wall clock does not move.
        return self._checked([t - offset for t in times], now, offset)

    def _custom_times(self, addresses: list[int], now: int, offset: int) -> list[int | None]:
        """``arrival_times`` from a custom program's trailers: CLOCK_MONOTONIC, each checked
        for the magic word, wherever the program put the frame's data."""
        area = self._area
        trailers = [_TRAILER.unpack_from(area, a - TRAILER_SIZE) for a in addresses]
        return self._checked([rx_time if magic == XDPPACKET_META_MAGIC else 0 for rx_time, _, magic in trailers],
                             now, offset)

    def _checked(self, raw: list[int], now: int, offset: int) -> list[int | None]:
        """CLOCK_MONOTONIC times ``raw`` in CLOCK_REALTIME (``+ offset``), except those not
        newer than every time trusted before, or later than ``now``: None."""
        newest = self._newest
        highest = max(raw)
        if newest < min(raw) and highest <= now:  # every trailer is fresh
            self._newest = highest
            return [t + offset for t in raw]
        fresh = [t for t in raw if newest < t <= now]
        if fresh:
            self._newest = max(fresh)
        stamped: list[int | None] = [t + offset if newest < t <= now else None for t in raw]
        return IncompleteTimes(stamped) if len(fresh) < len(raw) else stamped

    def metadata(self, addresses: list[int], times: list[int | None]) -> list[bytes] | None:
        """Metadata before each trusted trailer (None when the program is the shipped one)."""
        if not self._custom_metadata:
            return None
        area = self._area
        found = []
        for address, arrival in zip(addresses, times):
            length = _META_LEN.unpack_from(area, address - 8)[0] if arrival is not None else TRAILER_SIZE
            if TRAILER_SIZE < length <= _MAX_METADATA:
                found.append(area[address - length : address - TRAILER_SIZE])
            else:
                found.append(b"")
        return found

    def close(self) -> None:
        for view in self._views:
            view.release()


def realtime_offset(monotonic_now: int) -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds, re-measured once a second;
    never below 0 (a wall clock set before boot), as the program's unsigned variable holds it.

    Measured per batch, the offset would jitter by however long a preemption between two
    clock reads lasts (tens of microseconds seen), putting frames of consecutive batches
    out of order; so it is measured as the tightest of three bracketed readings and kept.
    """
    global _offset_cache
    offset, measured = _offset_cache
    if monotonic_now - measured < _OFFSET_REFRESH_NS:
        return offset
    best_width = best_offset = 0
    for attempt in range(3):
        before = time.monotonic_ns()
        realtime = time.time_ns()
        after = time.monotonic_ns()
        if attempt == 0 or after - before < best_width:
            best_width, best_offset = after - before, realtime - (before + after) // 2
    best_offset = max(0, best_offset)
    _offset_cache = (best_offset, after)
    return best_offset
