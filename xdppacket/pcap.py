"""Write captured frames to pcap and pcapng files, and read such files back.

``PcapWriter`` writes classic pcap (nanosecond timestamps by default, magic ``0xa1b23c4d``);
``PcapNgWriter`` writes pcapng with one interface description block per (interface, queue)
seen, named like ``eth0:q3``, and interface statistics blocks carrying the kernel's drop
counters. ``PcapReader`` iterates ``(bytes, timestamp_ns)`` over either format.

Both writers take what the sockets return: ``write(data, info)`` and
``write_batch(datas, infos)`` with ``bytes`` or zero-copy ``memoryview`` frames (byte format,
as the sockets return them) and their ``CaptureInfo``. Frames are read during the call only; no reference is kept, so views may
be released right after. ``write_batch`` makes a handful of system calls per batch: to a
path (or an unbuffered ``io.FileIO``) it hands record headers and the frames themselves to
``os.writev``, copying nothing; to any other binary file object it joins the batch into one
``write``.

Records use little-endian byte order (readers learn it from the magic number) and
link type Ethernet. ``snaplen`` truncates the stored data; the record keeps the frame's
original length.
"""

from __future__ import annotations

import ctypes
import io
import os
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import BinaryIO, Callable, TypeVar, Union

from ._libc import IOV_MAX, writev_iovecs
from .stats import CaptureInfo, XDPStats

__all__ = [
    "LINKTYPE_ETHERNET",
    "PcapNgWriter",
    "PcapReader",
    "PcapWriter",
    "isb_counters",
]

#: A path, or a binary file object opened for writing (reading, for ``PcapReader``).
FileTarget = Union[str, "os.PathLike[str]", BinaryIO]
#: What a writer accepts as one frame.
FrameData = Union[bytes, bytearray, memoryview]
#: ``XDPPacket.get_stats()`` or ``XDPMultiQueue.get_stats()``.
StatsLike = Union[XDPStats, Sequence[XDPStats]]

LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 262144  # tcpdump's default since 4.x

# --- pcap (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html) -------------
PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
_PCAP_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
_PCAP_RECORD = struct.Struct("<IIII")  # ts_sec, ts_frac, incl_len, orig_len

# --- pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-01.html) ---------
BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB_OBSOLETE = 0x00000002
BT_SPB = 0x00000003
BT_ISB = 0x00000005
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
IF_NAME = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFRECV = 4
ISB_IFDROP = 5
ISB_USRDELIV = 8
_BLOCK_HEADER = struct.Struct("<II")  # type, total length
_SHB_BODY = struct.Struct("<IHHq")  # byte-order magic, major, minor, section length (-1: unknown)
_IDB_BODY = struct.Struct("<HHI")  # link type, reserved, snaplen
_EPB_HEAD = struct.Struct("<IIIIIII")  # type, length, interface id, ts high, ts low, caplen, origlen
#: The previous packet block's padding (0..3 zero bytes) and trailer, then a packet block head.
_EPB_HEAD_AFTER = [struct.Struct(f"<{pad}xI" + _EPB_HEAD.format[1:]) for pad in range(4)]
#: The last packet block's padding and trailer.
_EPB_TAIL = [struct.Struct(f"<{pad}xI") for pad in range(4)]
_ISB_BODY = struct.Struct("<III")  # interface id, ts high, ts low
_OPTION_HEADER = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_TIMESTAMP = struct.Struct("<II")  # high, low
_END_OF_OPTIONS = _OPTION_HEADER.pack(OPT_ENDOFOPT, 0)


def _pad4(length: int) -> int:
    return -length % 4


def _option(code: int, value: bytes) -> bytes:
    return _OPTION_HEADER.pack(code, len(value)) + value + bytes(_pad4(len(value)))


def _block(block_type: int, body: bytes) -> bytes:
    total = _BLOCK_HEADER.size + len(body) + 4
    return _BLOCK_HEADER.pack(block_type, total) + body + _U32.pack(total)


def _check_snaplen(snaplen: int) -> int:
    if isinstance(snaplen, bool) or not isinstance(snaplen, int):
        raise TypeError(f"snaplen must be an int, not {type(snaplen).__name__}")
    if not 1 <= snaplen <= 0x7FFFFFFF:
        raise ValueError(f"snaplen must be in 1..{0x7FFFFFFF}, not {snaplen}")
    return snaplen


class _Output:
    """Where a writer's bytes go: an fd written with ``os.writev``, or a file object.

    A path is opened here (and closed by ``close()``); a file object passed in is flushed
    on ``close()`` but left open, as ``tarfile``/``zipfile`` do with a passed ``fileobj``.
    An unbuffered ``io.FileIO`` has no buffer to bypass, so its descriptor is used directly.
    """

    def __init__(self, target: FileTarget) -> None:
        self._owned: BinaryIO | None = None
        self._file: BinaryIO | None = None
        self._fd = -1
        if isinstance(target, (str, os.PathLike)):
            raw = open(target, "wb", buffering=0)  # noqa: SIM115 (closed by close())
            self._owned = raw
            self._fd = raw.fileno()
        elif isinstance(target, io.FileIO):
            if not target.writable():
                raise ValueError(f"{target!r} is not open for writing")
            self._fd = target.fileno()
        elif callable(getattr(target, "write", None)):
            self._file = target
        else:
            raise TypeError(
                f"file must be a path or a binary file object, not {type(target).__name__}"
            )

    def write(self, buffers: list[FrameData]) -> None:
        """Write ``buffers`` in order, completely."""
        if self._fd >= 0:
            _writev_all(self._fd, buffers)
        else:
            assert self._file is not None
            self._file.write(b"".join(buffers))

    def write_iovecs(self, iovecs: bytes, count: int, total: int) -> None:
        """Write the ``count`` spans of a ``struct iovec`` array (``total`` bytes), in order, completely."""
        if self._fd >= 0:
            writev_iovecs(self._fd, iovecs, count, total)
            return
        assert self._file is not None
        spans = memoryview(iovecs).cast("Q")
        self._file.write(b"".join(map(ctypes.string_at, spans[0::2], spans[1::2])))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._owned is not None:
                self._owned.close()
            self._owned = self._file = None
            self._fd = -1


def _writev_all(fd: int, buffers: list[FrameData]) -> None:
    """``os.writev`` the buffers, at most IOV_MAX at a time, resuming after partial writes.

    Buffers are bytes or byte-format memoryviews, so ``len`` is their size in bytes.
    """
    start = 0
    while start < len(buffers):
        chunk = buffers[start : start + IOV_MAX]
        written = os.writev(fd, chunk)
        if written == sum(map(len, chunk)):  # the usual case: all of it
            start += len(chunk)
            continue
        # Skip the buffers written completely; cut the first one written in part.
        for buffer in chunk:
            if written < len(buffer):
                break
            written -= len(buffer)
            start += 1
        if written:
            buffers[start] = memoryview(buffers[start])[written:]


_W = TypeVar("_W", bound="_Writer")


class _Writer:
    """What both writers share: the output, snaplen, timestamp resolution, the lifetime."""

    def __init__(self, file: FileTarget, nanosecond: bool, snaplen: int) -> None:
        self.snaplen = _check_snaplen(snaplen)
        self.nanosecond = bool(nanosecond)
        self._out = _Output(file)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: FrameData, info: CaptureInfo) -> None:
        """Write one frame with its capture metadata."""
        self.write_batch([data], [info])

    def write_batch(self, datas: Sequence[FrameData], infos: Sequence[CaptureInfo]) -> None:
        """Write a batch of frames (as a read returns them) with a few system calls."""
        self._check_open()
        if len(datas) != len(infos):
            raise ValueError(f"write_batch got {len(datas)} frames but {len(infos)} infos")
        buffers = self._records(datas, infos)
        try:
            self._out.write(buffers)
        finally:
            buffers.clear()  # drop every reference to the caller's frames

    def _write_header(self, header: bytes) -> None:
        """Start the file; if that fails, close what was opened before raising."""
        try:
            self._out.write([header])
        except BaseException:
            self.close()
            raise

    def _records(self, datas: Sequence[FrameData], infos: Sequence[CaptureInfo]) -> list[FrameData]:
        """The buffers of a batch: record headers and the frames (or their first snaplen bytes)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Push buffered bytes of a file object to the OS (a path is never buffered)."""
        self._check_open()
        self._out.flush()

    def close(self) -> None:
        """Flush, and close the file if the writer opened it; idempotent."""
        if not self._closed:
            self._closed = True
            self._out.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"I/O operation on a closed {type(self).__name__}")

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PcapWriter(_Writer):
    """Writes classic pcap, link type Ethernet, to a path or a binary file object.

    ``nanosecond=True`` (the default) writes the nanosecond variant (magic ``0xa1b23c4d``),
    which tcpdump, tshark and dpkt read with full precision; ``False`` writes microseconds.
    Owns the file it opened from a path. Not thread-safe.
    """

    def __init__(
        self, file: FileTarget, *, nanosecond: bool = True, snaplen: int = DEFAULT_SNAPLEN
    ) -> None:
        super().__init__(file, nanosecond, snaplen)
        magic = PCAP_MAGIC_NANOSECONDS if self.nanosecond else PCAP_MAGIC_MICROSECONDS
        self._write_header(_PCAP_HEADER.pack(magic, 2, 4, 0, 0, self.snaplen, LINKTYPE_ETHERNET))

    def _records(self, datas: Sequence[FrameData], infos: Sequence[CaptureInfo]) -> list[FrameData]:
        # The per-frame work of the whole writer: kept to one pack and a few int operations.
        divisor = 1 if self.nanosecond else 1000
        snaplen = self.snaplen
        pack = _PCAP_RECORD.pack
        buffers: list[FrameData] = []
        append = buffers.append
        for data, info in zip(datas, infos):
            length = len(data)
            original = info.length
            if original < length:
                original = length
            if length > snaplen:
                data = memoryview(data)[:snaplen]
                length = snaplen
            timestamp = info.timestamp_ns
            append(pack(timestamp // 1_000_000_000, timestamp % 1_000_000_000 // divisor, length, original))
            append(data)
        return buffers


    def write_raw_records(self, iovecs: bytes, count: int, total: int) -> None:
        """Write ``count`` whole records that lie in memory, given as a ``struct iovec`` array
        (``total`` bytes in all): each a 16-byte little-endian record header in this file's
        timestamp resolution, then at most ``snaplen`` bytes of frame.

        For ``xdppacket capture``'s fast path (``_pcap_records``): the records go from the
        UMEM to the file in one ``writev`` per 1024, with nothing built per frame. The
        memory is only read, during the call.
        """
        self._check_open()
        self._out.write_iovecs(iovecs, count, total)


class PcapNgWriter(_Writer):
    """Writes pcapng: one section, one interface per (interface, queue), enhanced packets.

    An interface description block (``if_name`` like ``eth0:q3``, ``if_tsresol`` 9 for
    nanoseconds, or microseconds with ``nanosecond=False``) is written before the first
    frame of each (interface index, queue) pair.

    ``write_stats(stats)`` writes interface statistics blocks from ``get_stats()`` (see
    ``isb_counters`` for what each field holds). With ``stats=callable`` (for example
    ``mq.get_stats``) ``close()`` calls it and writes them too; close the writer before the
    socket then. Owns the file it opened from a path. Not thread-safe.
    """

    def __init__(
        self,
        file: FileTarget,
        *,
        nanosecond: bool = True,
        snaplen: int = DEFAULT_SNAPLEN,
        stats: Callable[[], StatsLike] | None = None,
    ) -> None:
        super().__init__(file, nanosecond, snaplen)
        self._stats_source = stats
        self._interfaces: dict[tuple[int, int], int] = {}  # (ifindex, queue) -> interface id
        self._started_ns = time.time_ns()
        shb = _block(BT_SHB, _SHB_BODY.pack(BYTE_ORDER_MAGIC, 1, 0, -1) + _END_OF_OPTIONS)
        self._write_header(shb)

    def _timestamp(self, timestamp_ns: int) -> int:
        return timestamp_ns if self.nanosecond else timestamp_ns // 1000

    def _interface_block(self, ifindex: int, queue_id: int) -> tuple[int, bytes]:
        """The id of (ifindex, queue), and its description block if it is new (else b"")."""
        key = (ifindex, queue_id)
        known = self._interfaces.get(key)
        if known is not None:
            return known, b""
        interface_id = self._interfaces[key] = len(self._interfaces)
        try:
            ifname = socket.if_indextoname(ifindex)
        except (OSError, ValueError, OverflowError):  # gone, or not an index at all
            ifname = f"ifindex{ifindex}"
        options = _option(IF_NAME, f"{ifname}:q{queue_id}".encode())
        if self.nanosecond:
            options += _option(IF_TSRESOL, bytes([9]))
        body = _IDB_BODY.pack(LINKTYPE_ETHERNET, 0, self.snaplen) + options + _END_OF_OPTIONS
        return interface_id, _block(BT_IDB, body)

    def _records(self, datas: Sequence[FrameData], infos: Sequence[CaptureInfo]) -> list[FrameData]:
        # Each frame's padding and block trailer are packed in front of the next block's
        # header (``_EPB_HEAD_AFTER``), so a frame costs one pack and two buffers.
        nanosecond = self.nanosecond
        snaplen = self.snaplen
        interfaces = self._interfaces
        buffers: list[FrameData] = []
        append = buffers.append
        head = _EPB_HEAD.pack
        previous_total = 0
        previous_padding = 0
        for data, info in zip(datas, infos):
            length = len(data)
            original = info.length
            if original < length:
                original = length
            if length > snaplen:
                data = memoryview(data)[:snaplen]
                length = snaplen
            interface_id = interfaces.get((info.interface_index, info.queue_id))
            if interface_id is None:
                interface_id, idb = self._interface_block(info.interface_index, info.queue_id)
                if previous_total:
                    append(_EPB_TAIL[previous_padding].pack(previous_total))
                    previous_total = 0
                append(idb)
            timestamp = info.timestamp_ns if nanosecond else info.timestamp_ns // 1000
            padding = -length % 4
            total = _EPB_HEAD.size + length + padding + 4
            if previous_total:
                append(_EPB_HEAD_AFTER[previous_padding].pack(
                    previous_total, BT_EPB, total, interface_id, timestamp >> 32, timestamp & 0xFFFFFFFF,
                    length, original))
            else:
                append(head(BT_EPB, total, interface_id, timestamp >> 32, timestamp & 0xFFFFFFFF,
                            length, original))
            append(data)
            previous_total, previous_padding = total, padding
        if previous_total:
            append(_EPB_TAIL[previous_padding].pack(previous_total))
        return buffers

    def write_stats(
        self, stats: StatsLike, *, interface_index: int | None = None, queue_id: int | None = None
    ) -> None:
        """Write interface statistics blocks for ``stats``, timestamped now.

        ``stats`` is one ``XDPStats`` (of queue ``queue_id``) or a list as
        ``XDPMultiQueue.get_stats()`` returns it (``[0]`` the sum, ``[1 + i]`` queue i: one
        block per queue). ``interface_index`` and ``queue_id`` may be left out when the
        frames written so far came from one interface, or one queue for a single ``XDPStats``.
        """
        self._check_open()
        per_queue = self._stats_by_queue(stats, queue_id, interface_index)
        ifindex = self._only_seen("interface_index", interface_index, [k[0] for k in self._interfaces])
        now = self._timestamp(time.time_ns())
        started = self._timestamp(self._started_ns)
        blocks: list[FrameData] = []
        for queue, queue_stats in per_queue:
            interface_id, idb = self._interface_block(ifindex, queue)
            body = _ISB_BODY.pack(interface_id, now >> 32, now & 0xFFFFFFFF)
            # Times are two u32 (high, low) as in a packet block; counters are u64.
            options = _option(ISB_STARTTIME, _TIMESTAMP.pack(started >> 32, started & 0xFFFFFFFF))
            options += _option(ISB_ENDTIME, _TIMESTAMP.pack(now >> 32, now & 0xFFFFFFFF))
            options += b"".join(
                _option(code, _U64.pack(value)) for code, value in isb_counters(queue_stats).items()
            )
            blocks.append(idb + _block(BT_ISB, body + options + _END_OF_OPTIONS))
        self._out.write(blocks)

    def _stats_by_queue(
        self, stats: StatsLike, queue_id: int | None, interface_index: int | None
    ) -> list[tuple[int, XDPStats]]:
        if isinstance(stats, XDPStats):
            queues = [k[1] for k in self._interfaces if interface_index in (None, k[0])]
            return [(self._only_seen("queue_id", queue_id, queues), stats)]
        if not isinstance(stats, Sequence) or not all(isinstance(s, XDPStats) for s in stats):
            raise TypeError("stats must be an XDPStats or a list of them (as get_stats() returns)")
        if len(stats) < 2:
            raise ValueError(
                "a list of stats must be [sum, queue 0, queue 1, ...] as XDPMultiQueue.get_stats() "
                f"returns it; got {len(stats)} item(s)"
            )
        if queue_id is not None:
            raise ValueError("queue_id applies to a single XDPStats; a list gives every queue")
        return list(enumerate(stats[1:]))

    @staticmethod
    def _only_seen(name: str, given: int | None, seen: list[int]) -> int:
        if given is not None:
            return given
        distinct = sorted(set(seen))
        if len(distinct) == 1:
            return distinct[0]
        which = "none" if not distinct else ", ".join(map(str, distinct))
        raise ValueError(f"write_stats cannot tell the {name} (frames so far: {which}); pass {name}=")

    def close(self) -> None:
        """Write statistics from the ``stats`` callable (if given), flush and close."""
        if self._closed:
            return
        try:
            if self._stats_source is not None:
                self.write_stats(self._stats_source())
        finally:
            super().close()


def isb_counters(stats: XDPStats) -> dict[int, int]:
    """The interface statistics block counters for one queue's ``XDPStats``.

    - ``isb_ifdrop`` = ``rx_dropped + rx_ring_full``: frames the XDP program sent to the
      socket that the kernel dropped, for want of a free UMEM frame (or because the frame
      did not fit one) and because the rx ring was full. This is what tcpdump prints as
      "dropped by kernel", and what dumpcap writes as ``isb_ifdrop``.
      ``rx_fill_ring_empty_descs`` is left out: it counts the times the kernel found the
      fill ring empty, which are the same events ``rx_dropped`` already counts as frames.
    - ``isb_usrdeliv`` = ``rx_packets``: frames taken off the rx ring by the program.
    - ``isb_ifrecv`` = the sum of both: frames the socket was offered. Frames the XDP
      program passed to the kernel stack never reach the socket and are not counted.
    """
    dropped = stats.rx_dropped + stats.rx_ring_full
    return {
        ISB_IFRECV: stats.rx_packets + dropped,
        ISB_IFDROP: dropped,
        ISB_USRDELIV: stats.rx_packets,
    }


class PcapReader:
    """Iterates ``(bytes, timestamp_ns)`` over a pcap or pcapng file (either byte order).

    pcap: microsecond and nanosecond magics. pcapng: every section, enhanced, simple and
    obsolete packet blocks, ``if_tsresol`` (decimal and binary) and ``if_tsoffset``; a
    simple packet block has no timestamp and gives 0. Other blocks are skipped. A file
    that is neither, or that ends inside a record, raises ``ValueError``.
    ``linktypes`` lists the link type of the pcap file or of each pcapng interface seen.
    Owns the file it opened from a path (``close()``, context manager).
    """

    def __init__(self, file: FileTarget) -> None:
        if isinstance(file, (str, os.PathLike)):
            self._file: BinaryIO = open(file, "rb")  # noqa: SIM115 (closed by close())
            self._owned = True
        elif callable(getattr(file, "read", None)):
            self._file = file
            self._owned = False
        else:
            raise TypeError(f"file must be a path or a binary file object, not {type(file).__name__}")
        self.linktypes: list[int] = []
        self._offset = 0

    def close(self) -> None:
        if self._owned:
            self._file.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, size: int, what: str, allow_eof: bool = False) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._file.read(size - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) < size and not (allow_eof and not data):
            raise ValueError(
                f"truncated capture file: {what} at offset {self._offset} needs {size} bytes, "
                f"{len(data)} left"
            )
        self._offset += len(data)
        return data

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        head = self._read(4, "the file header", allow_eof=True)
        if not head:
            raise ValueError("empty capture file: neither pcap nor pcapng")
        if head == _U32.pack(BT_SHB):
            return self._pcapng(head)
        return self._pcap(head)

    # -------------------------------------------------------------------- pcap
    def _pcap(self, head: bytes) -> Iterator[tuple[bytes, int]]:
        for order in "<>":
            (magic,) = struct.unpack(order + "I", head)
            if magic in (PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS):
                break
        else:
            raise ValueError(f"not a pcap or pcapng file (magic {head.hex()})")
        scale = 1 if magic == PCAP_MAGIC_NANOSECONDS else 1000
        rest = self._read(_PCAP_HEADER.size - 4, "the pcap file header")
        self.linktypes.append(struct.unpack(order + "IHHiIII", head + rest)[6] & 0x0FFFFFFF)
        record = struct.Struct(order + "IIII")
        while True:
            header = self._read(record.size, "a record header", allow_eof=True)
            if not header:
                return
            seconds, fraction, length, _original = record.unpack(header)
            data = self._read(length, "a record's data")
            yield data, seconds * 1_000_000_000 + fraction * scale

    # ------------------------------------------------------------------ pcapng
    def _pcapng(self, head: bytes) -> Iterator[tuple[bytes, int]]:
        order = "<"
        interfaces: list[tuple[int, int]] = []  # per interface id: (units per second, offset s)
        block_type = BT_SHB
        while True:
            length_bytes = self._read(4, "a block length")
            if block_type == BT_SHB:
                bom = self._read(4, "a byte-order magic")
                order = "<" if _U32.unpack(bom)[0] == BYTE_ORDER_MAGIC else ">"
                if struct.unpack(order + "I", bom)[0] != BYTE_ORDER_MAGIC:
                    raise ValueError(f"bad pcapng byte-order magic {bom.hex()}")
                (total,) = struct.unpack(order + "I", length_bytes)
                body = bom + self._read(total - 16, "a section header block")
                interfaces = []
            else:
                (total,) = struct.unpack(order + "I", length_bytes)
                if total < 12 or total % 4:
                    raise ValueError(f"bad pcapng block length {total} at offset {self._offset - 8}")
                body = self._read(total - 12, "a block body")
            self._read(4, "a block trailer")
            if block_type == BT_IDB:
                interfaces.append(self._idb(order, body))
            elif block_type in (BT_EPB, BT_PB_OBSOLETE):
                yield self._packet(order, body, interfaces, block_type)
            elif block_type == BT_SPB:
                (original,) = struct.unpack_from(order + "I", body)
                yield body[4 : 4 + original], 0  # the data stops at the snaplen anyway
            type_bytes = self._read(4, "a block type", allow_eof=True)
            if not type_bytes:
                return
            (block_type,) = struct.unpack(order + "I", type_bytes)

    def _idb(self, order: str, body: bytes) -> tuple[int, int]:
        linktype, _reserved, _snaplen = struct.unpack_from(order + "HHI", body)
        self.linktypes.append(linktype)
        units, offset = 1_000_000, 0
        for code, value in _options(order, body[8:]):
            if code == IF_TSRESOL and value:
                exponent = value[0] & 0x7F
                units = 2**exponent if value[0] & 0x80 else 10**exponent
            elif code == IF_TSOFFSET and len(value) == 8:
                (offset,) = struct.unpack(order + "q", value)
        return units, offset

    @staticmethod
    def _packet(
        order: str, body: bytes, interfaces: list[tuple[int, int]], block_type: int
    ) -> tuple[bytes, int]:
        if block_type == BT_EPB:
            interface_id, high, low, length, _original = struct.unpack_from(order + "IIIII", body)
        else:  # obsolete packet block: u16 interface id, u16 drops count
            interface_id, _drops, high, low, length, _original = struct.unpack_from(
                order + "HHIIII", body
            )
        if interface_id >= len(interfaces):
            raise ValueError(f"pcapng packet of undescribed interface {interface_id}")
        units, offset = interfaces[interface_id]
        timestamp_ns = ((high << 32) | low) * 1_000_000_000 // units + offset * 1_000_000_000
        return body[20 : 20 + length], timestamp_ns


def _options(order: str, data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        code, length = struct.unpack_from(order + "HH", data, offset)
        if code == OPT_ENDOFOPT:
            return
        yield code, data[offset + 4 : offset + 4 + length]
        offset += 4 + length + _pad4(length)
