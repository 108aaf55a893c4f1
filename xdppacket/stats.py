"""Value objects handed to users: per-packet ``CaptureInfo`` and per-socket ``XDPStats``."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from operator import itemgetter
from typing import TYPE_CHECKING, Any

__all__ = ["CaptureInfo", "XDPStats"]


class _CaptureInfoType(type):
    """Calling ``CaptureInfo(...)`` with its fields builds one; see ``CaptureInfo``."""

    def __call__(cls, timestamp_ns: int, capture_length: int, length: int, interface_index: int,
                 queue_id: int, metadata: bytes = b"") -> Any:
        return super().__call__((timestamp_ns, capture_length, length, interface_index, queue_id, metadata))

    # What a wrong call's TypeError names (Python 3.9 takes the code's name, later ones the qualname).
    __call__.__code__ = __call__.__code__.replace(co_name="CaptureInfo")
    __call__.__qualname__ = "CaptureInfo"


def _field(index: int, doc: str) -> Any:
    """The read-only attribute of a ``CaptureInfo`` field: namedtuple's own (a C descriptor
    in CPython), or a property where ``collections`` has none."""
    make = getattr(collections, "_tuplegetter", None)
    return make(index, doc) if make is not None else property(itemgetter(index), doc=doc)


class CaptureInfo(tuple, metaclass=_CaptureInfoType):  # type: ignore[type-arg]
    """Metadata of one captured frame (gopacket's ``CaptureInfo``): an immutable tuple of its fields.

    The receive path builds one per frame, so it is a tuple subclass built in C:
    ``capture_info_from_fields`` (what the library calls) goes straight to ``tuple``'s
    constructor, about a fifth cheaper per frame (made and freed) than a ``NamedTuple``,
    whose ``__new__`` (or ``tuple.__new__(cls, ...)``) takes more steps. Users call
    ``CaptureInfo(timestamp_ns, capture_length, length, interface_index, queue_id,
    metadata=b"")``, as with a ``NamedTuple`` (the metaclass's ``__call__``).
    """

    __slots__ = ()
    _fields = ("timestamp_ns", "capture_length", "length", "interface_index", "queue_id", "metadata")
    __match_args__ = _fields

    timestamp_ns: int = _field(0, "CLOCK_REALTIME nanoseconds when the frame reached the XDP program (the "
                                  "shipped program writes it into the frame's metadata); when a program "
                                  "writes none, when the frame was taken off the rx ring (frames of one "
                                  "batch then share it).")
    capture_length: int = _field(1, "Bytes of the frame captured.")
    length: int = _field(2, "Bytes of the whole frame.")
    interface_index: int = _field(3, "Index of the interface the frame was received on.")
    queue_id: int = _field(4, "Rx queue the frame was received on.")
    metadata: bytes = _field(5, "XDP metadata a custom program put before the frame, in front of "
                                "xdppacket's trailer.")

    if TYPE_CHECKING:  # the constructor's signature, for type checkers (the metaclass builds it)
        def __new__(cls, timestamp_ns: int, capture_length: int, length: int, interface_index: int,
                    queue_id: int, metadata: bytes = b"") -> CaptureInfo: ...

    @property
    def timestamp(self) -> float:
        """``timestamp_ns`` in seconds (correctly rounded: int / int, not int / float)."""
        return self.timestamp_ns / 1_000_000_000

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self))

    def _replace(self, **changes: Any) -> CaptureInfo:
        fields = self._asdict()
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValueError(f"CaptureInfo has no field(s) {sorted(unknown)}; its fields are {self._fields}")
        fields.update(changes)
        return CaptureInfo(**fields)

    def __repr__(self) -> str:
        return "CaptureInfo(" + ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self)) + ")"


#: Builds a ``CaptureInfo`` from a tuple of its six fields, in C: ``type.__call__`` bound to
#: the class skips the metaclass's ``__call__`` and reaches ``tuple``'s constructor with
#: one argument. What the receive path maps over zipped fields, one call per frame.
capture_info_from_fields: Callable[[tuple[int, int, int, int, int, bytes]], CaptureInfo] = (
    type.__call__.__get__(CaptureInfo))


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
