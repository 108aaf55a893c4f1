"""Arrival times (and custom metadata) from the trailer an XDP program writes before each frame.

The shipped program puts ``struct xdppacket_capture_meta`` (``ebpf/xdppacket_meta.h``) in
front of every frame it redirects: the trailer ``struct xdppacket_meta`` (the frame's
arrival time, ``bpf_ktime_get_ns``, CLOCK_MONOTONIC, and the length of all metadata before
the frame), then a pcap record header directly before the frame (``_records`` writes it
out with the frame). A custom program puts the trailer alone directly before the frame.
Copy mode copies that metadata into the UMEM with the frame, so it is read here, before
the frame goes back to the kernel.

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
import time
from typing import Callable, Optional

__all__ = [
    "METADATA_MISSING_VARIABLE",
    "PCAP_RECORD_HEADER_SIZE",
    "REALTIME_OFFSET_VARIABLE",
    "SHIPPED_METADATA_SIZE",
    "TRAILER_SIZE",
    "XDPPACKET_META_MAGIC",
    "ArrivalReader",
    "IncompleteTimes",
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


class ArrivalReader:
    """Reads trailers in front of received frames of one UMEM.

    Holds views of the UMEM: ``close()`` releases them so the area can be unmapped.
    Not thread-safe: the rx path that owns it serialises calls.
    """

    def __init__(self, area: mmap.mmap, custom_metadata: bool,
                 metadata_missing: Callable[[], int] | None = None):
        """``metadata_missing``: reads the shipped program's flag (None: a program without
        one, whose trailers are always checked)."""
        whole = memoryview(area)
        self._views = [whole.cast("I"), whole.cast("Q"), whole]
        self._u32, self._u64, self._bytes = self._views
        #: Whether to return metadata in front of the trailer (custom programs may write some).
        self._custom_metadata = custom_metadata
        # Where the arrival time lies, in u64 words before the frame's data.
        self._time_words = TRAILER_SIZE // 8 if custom_metadata else SHIPPED_METADATA_SIZE // 8
        self._newest = 0  # the newest arrival time trusted so far
        self._metadata_missing = metadata_missing

    def arrival_times(self, addresses: list[int]) -> list[int | None]:
        """CLOCK_REALTIME arrival time of each frame whose data starts at ``addresses``.

        ``None`` for a frame with no trustworthy trailer: older than the newest one read
        (stale), later than now (not a time at all), or, for a custom program, without
        the trailer's magic word. A list with a None in it is an ``IncompleteTimes``.
        """
        u64 = self._u64
        words = self._time_words
        now = time.monotonic_ns()
        offset = realtime_offset(now)
        newest = self._newest
        if not self._custom_metadata:
            # The usual case, converted as read: one pass.
            times = [u64[(a >> 3) - words] + offset for a in addresses]
            missing = self._metadata_missing
            if missing is not None and not missing():  # the caller read the ring first
                self._newest = times[-1] - offset  # the newest but for a reordering (of µs)
                return times  # type: ignore[return-value]  # list[int] is a list[int | None]
            # Otherwise checked on the extremes.
            lowest, highest = min(times) - offset, max(times) - offset
            if newest < lowest and highest <= now:  # every trailer is fresh
                self._newest = highest
                return times  # type: ignore[return-value]  # list[int] is a list[int | None]
            raw = [t - offset for t in times]
        else:
            u32 = self._u32
            raw = [u64[(a >> 3) - words] if u32[(a >> 2) - 1] == XDPPACKET_META_MAGIC else 0 for a in addresses]
            highest = max(raw)
            if newest < min(raw) and highest <= now:
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
        u32 = self._u32
        found = []
        for address, arrival in zip(addresses, times):
            length = u32[(address >> 2) - 2] if arrival is not None else TRAILER_SIZE
            if TRAILER_SIZE < length <= _MAX_METADATA:
                found.append(self._bytes[address - length : address - TRAILER_SIZE].tobytes())
            else:
                found.append(b"")
        return found

    def close(self) -> None:
        for view in self._views:
            view.release()


def realtime_offset(monotonic_now: int) -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds, re-measured once a second.

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
    _offset_cache = (best_offset, after)
    return best_offset
