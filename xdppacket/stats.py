"""Value objects handed to users: per-packet ``CaptureInfo`` and per-socket ``XDPStats``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

__all__ = ["CaptureInfo", "XDPStats"]


class CaptureInfo(NamedTuple):
    """Metadata of one captured frame (gopacket's ``CaptureInfo``).

    A ``NamedTuple`` because the receive path builds one per packet: creating it with
    ``tuple.__new__`` is the cheapest immutable object Python offers.
    """

    timestamp_ns: int
    """CLOCK_REALTIME nanoseconds when the frame reached the XDP program (the shipped
    program writes it into the frame's metadata); when a program writes none, when the
    frame was taken off the rx ring (frames of one batch then share it)."""
    capture_length: int
    length: int
    interface_index: int
    queue_id: int
    metadata: bytes = b""
    """XDP metadata a custom program put before the frame, in front of xdppacket's trailer."""

    @property
    def timestamp(self) -> float:
        """``timestamp_ns`` in seconds (correctly rounded: int / int, not int / float)."""
        return self.timestamp_ns / 1_000_000_000


@dataclass(frozen=True)
class XDPStats:
    """Counters of one socket (or, summed, of several).

    User-space counters are kept by the library; kernel counters come from
    ``getsockopt(XDP_STATISTICS)``. ``a + b`` sums (across queues), ``a - b`` gives deltas.
    """

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    polls: int = 0
    rx_empty: int = 0
    tx_full: int = 0
    fq_full: int = 0
    cq_empty: int = 0
    send_busy: int = 0
    send_again: int = 0
    rx_dropped: int = 0
    rx_invalid_descs: int = 0
    tx_invalid_descs: int = 0
    rx_ring_full: int = 0
    rx_fill_ring_empty_descs: int = 0
    tx_ring_empty_descs: int = 0

    def __add__(self, other: XDPStats) -> XDPStats:
        if not isinstance(other, XDPStats):
            return NotImplemented
        return XDPStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: XDPStats) -> XDPStats:
        if not isinstance(other, XDPStats):
            return NotImplemented
        return XDPStats(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
