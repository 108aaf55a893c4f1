"""``xdppacket capture``: tcpdump over AF_XDP, on every queue of an interface.

Every rx queue is captured unless ``--queues`` says otherwise: a socket on one queue of a
multi-queue NIC silently misses the frames the NIC steers to the others. Frames go to a
pcap/pcapng file (``-w``) or become one summary line each on stdout. SIGINT (Ctrl-C) and
SIGTERM end the capture cleanly: the file is completed and tcpdump's closing lines
("N packets captured", ...) go to stderr. A filter expression runs in the XDP program
(``OptFilter``): the frames it does not match go on to the host's network stack.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Callable, Protocol, TextIO

from .._frame_fit import longest_delivered_frame, received_bytes_per_frame
from .._interface import interface_index, rx_queue_count
from .._netlink import get_link
from .._pcap_records import PcapRecordReader
from .._rx import RecordWriter
from ..filter import OptFilter
from ..multiqueue import XDPMultiQueue, pcap_record_reader
from ..options import (
    IO_MODE_NONBLOCK,
    OptFrameSize,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptRingSize,
    OptXDPMode,
    XDPMode,
)
from ..pcap import PcapNgWriter, PcapWriter
from ..stats import CaptureInfo, XDPStats
from .diagnose import CAP_IPC_LOCK, parse_cap_eff
from .signals import StopSignals
from .summary import summarize

__all__ = ["CaptureRequest", "CaptureResult", "run_capture"]

#: How long one read may wait: the longest delay before a signal or --duration is noticed.
_POLL_TIMEOUT_US = 100_000
# The longest a file capture lets frames gather after a short batch (see _gathering_pause).
_GATHER_S = 0.002
_BATCH = 64
# Receive buffers per queue. A capture keeps every frame only if its ring outlasts the
# longest stall of its process: a sleep that ends late, another task on its CPU. On the
# 2-core VM of README's figures a 200 us sleep overran by 0.9 ms once in a thousand and by
# 2 ms at worst, longer than the library's default 1024 frames last at 750,000 pps (1.4 ms;
# tcpdump's default 2 MiB ring holds about 13,000 such frames). So a capture takes 4096
# frames (5.5 ms at that rate) of 2048 bytes where the MTU allows, halved while all queues'
# UMEMs (rx and tx halves) would exceed _UMEM_BUDGET, or RLIMIT_MEMLOCK for a process without
# CAP_IPC_LOCK (the kernel counts the UMEM as locked memory), down to the default 1024.
_CAPTURE_FRAMES = 4096
_MIN_CAPTURE_FRAMES = 1024
_SMALL_FRAME_SIZE = 2048
_LARGE_FRAME_SIZE = 4096
_UMEM_BUDGET = 64 << 20
_STATUS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class CaptureRequest:
    """What the command line asked for, checked and resolved."""

    ifname: str
    queues: int | None  # None: all of the interface's rx queues
    mode: XDPMode
    write_to: str | None  # a path, "-" for stdout, None to print summaries
    pcapng: bool
    count: int | None
    duration: float | None
    snaplen: int
    expression: str


@dataclass(frozen=True)
class CaptureResult:
    """tcpdump's closing figures, from the sockets' counters."""

    captured: int
    received: int
    dropped: int

    def closing_lines(self) -> str:
        return (f"{self.captured} packets captured\n"
                f"{self.received} packets received by filter\n"
                f"{self.dropped} packets dropped by kernel\n")


class _Sink(Protocol):
    def write_batch(self, datas: Sequence[memoryview], infos: Sequence[CaptureInfo]) -> None: ...


class _SummaryPrinter:
    """Prints a tcpdump line per frame to stdout (copying each view before decoding it)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write_batch(self, datas: Sequence[memoryview], infos: Sequence[CaptureInfo]) -> None:
        self._out.write("".join(summarize(bytes(data), info) + "\n" for data, info in zip(datas, infos)))
        self._out.flush()


class _StatusLine:
    """Once a second while writing a file: packets, rate and kernel drops, on stderr.

    On a terminal the line rewrites itself; otherwise each update is a line of its own.
    """

    def __init__(self, err: TextIO) -> None:
        self._err = err
        self._tty = err.isatty()
        self._last_time = time.monotonic()
        self._last_count = 0
        self._shown = False

    def update(self, captured: int, stats: Callable[[], XDPStats]) -> None:
        """Show the line if a second has passed (``stats`` is only called then)."""
        now = time.monotonic()
        elapsed = now - self._last_time
        if elapsed < _STATUS_INTERVAL_S:
            return
        rate = (captured - self._last_count) / elapsed
        self._last_time, self._last_count = now, captured
        text = f"{captured} packets captured, {rate:.0f} pps, {_dropped(stats())} dropped by kernel"
        self._err.write(f"\r{text}\x1b[K" if self._tty else text + "\n")
        self._err.flush()
        self._shown = True

    def finish(self) -> None:
        if self._tty and self._shown:
            self._err.write("\n")


def _dropped(stats: XDPStats) -> int:
    """Frames the kernel had for the sockets but dropped (see ``pcap.isb_counters``)."""
    return stats.rx_dropped + stats.rx_ring_full


def _buffer_options(ifname: str, queues: int) -> list[object]:
    """Frames and rings per queue as large as ``_UMEM_BUDGET`` allows (see ``_CAPTURE_FRAMES``)."""
    mtu = get_link(interface_index(ifname)).mtu
    fits_small = longest_delivered_frame(mtu) <= received_bytes_per_frame(_SMALL_FRAME_SIZE, 0)
    frame_size = _SMALL_FRAME_SIZE if fits_small else _LARGE_FRAME_SIZE
    budget = _locked_memory_budget()
    frames = _CAPTURE_FRAMES
    while frames > _MIN_CAPTURE_FRAMES and queues * 2 * frames * frame_size > budget:
        frames //= 2
    return [OptNumFrames(frames), OptRingSize(frames), OptFrameSize(frame_size)]


def _locked_memory_budget() -> int:
    """``_UMEM_BUDGET``, or RLIMIT_MEMLOCK if lower and the process lacks CAP_IPC_LOCK."""
    limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    if limit == resource.RLIM_INFINITY or _effective_capabilities() & (1 << CAP_IPC_LOCK):
        return _UMEM_BUDGET
    return min(_UMEM_BUDGET, limit)


def _effective_capabilities() -> int:
    """The process's effective capabilities (none known without a CapEff line)."""
    with open("/proc/self/status") as status:
        try:
            return parse_cap_eff(status.read())
        except ValueError:
            return 0


def _filter_options(expression: str) -> list[OptFilter]:
    """``OptFilter(expression)`` when one is given (a bad one raises ``XDPFilterError``)."""
    return [OptFilter(expression)] if expression else []


@contextmanager
def _writer(request: CaptureRequest) -> Iterator[PcapWriter | PcapNgWriter | None]:
    """The file writer -w asks for (None: print summaries), closed at the end."""
    if request.write_to is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        target: str | BinaryIO = request.write_to
        if request.write_to == "-":  # unbuffered, on fd 1: the writer then uses writev
            target = stack.enter_context(open(sys.stdout.fileno(), "wb", buffering=0, closefd=False))
        writer: PcapWriter | PcapNgWriter = (
            PcapNgWriter(target, snaplen=request.snaplen) if request.pcapng
            else PcapWriter(target, snaplen=request.snaplen))
        with writer:
            yield writer


def run_capture(request: CaptureRequest) -> CaptureResult:
    """Capture until ``count`` frames, ``duration`` seconds, SIGINT or SIGTERM."""
    queues = request.queues if request.queues is not None else rx_queue_count(request.ifname)
    options = [OptQueueCount(queues), OptXDPMode(request.mode), OptIoMode(IO_MODE_NONBLOCK),
               OptPollTimeout(_POLL_TIMEOUT_US), *_buffer_options(request.ifname, queues),
               *_filter_options(request.expression)]
    with XDPMultiQueue(request.ifname, *options) as mq, _writer(request) as writer:
        mode = "native" if request.mode is XDPMode.DRV else "generic"
        queue_text = "queue 0" if queues == 1 else f"queues 0-{queues - 1}"
        sys.stderr.write(f"xdppacket: listening on {request.ifname} {queue_text} ({mode} XDP), "
                         f"link-type EN10MB (Ethernet), snapshot length {request.snaplen} bytes\n")
        sys.stderr.flush()
        sink: _Sink = writer if writer is not None else _SummaryPrinter(sys.stdout)
        status = _StatusLine(sys.stderr) if writer is not None else None
        captured = _capture_loop(mq, sink, request, status)
        stats = mq.get_stats()
        if isinstance(writer, PcapNgWriter):
            writer.write_stats(stats, interface_index=mq.ifindex)
        if status is not None:
            status.finish()
    dropped = _dropped(stats[0])
    return CaptureResult(captured=captured, received=stats[0].rx_packets + dropped, dropped=dropped)


def _record_path(mq: XDPMultiQueue, sink: _Sink,
                 snaplen: int) -> tuple[PcapRecordReader, RecordWriter, int] | None:
    """Classic nanosecond pcap of the shipped program's frames: whole records go straight
    from the UMEM to the file (``_pcap_records``); None: frames are read the ordinary way.

    With the reader and the writer comes the batch: whole records cost little per frame and
    a fixed amount per batch, so a batch is a quarter of each queue's frames (which stay in
    its ring while they are written).
    """
    if not (isinstance(sink, PcapWriter) and sink.nanosecond):
        return None
    reader = pcap_record_reader(mq, snaplen)
    if reader is None:
        return None
    return reader, sink.write_raw_records, mq.options.num_frames // 4 * len(mq.sockets)


def _capture_loop(mq: XDPMultiQueue, sink: _Sink, request: CaptureRequest,
                  status: _StatusLine | None) -> int:
    captured = 0
    deadline = None if request.duration is None else time.monotonic() + request.duration
    records = _record_path(mq, sink, request.snaplen)
    previous_read = time.monotonic()  # when the last read returned
    with StopSignals() as stop:
        while not stop.requested:
            if request.count is not None and captured >= request.count:
                break
            started = time.monotonic()
            if deadline is not None and started >= deadline:
                break
            batch = _BATCH if records is None else records[2]
            wanted = batch if request.count is None else min(batch, request.count - captured)
            got = records[0].pass_records(wanted, records[1]) if records is not None else None
            if got is None:
                records = None  # a frame came without the program's metadata: no records from now on
                views, infos = mq.zero_copy_read_multi_packets(wanted)
                if views:
                    sink.write_batch(views, infos)
                got = len(views)
            returned = time.monotonic()
            if got:
                captured += got
                if got < wanted and request.write_to is not None and returned - started < _GATHER_S:
                    # A short batch read without waiting: let frames gather (tcpdump's buffer
                    # timeout does the same), or every frame of a slow stream costs a whole
                    # read and write. After a wait, the rate is not known yet: read on.
                    time.sleep(_gathering_pause(got, wanted, returned - previous_read))
            previous_read = returned
            if status is not None:
                status.update(captured, lambda: mq.get_stats()[0])
    return captured


def _gathering_pause(got: int, wanted: int, since_previous_read: float) -> float:
    """How long to let frames gather after a short batch: until the next batch would be full
    at the rate the last one came (``got`` since the previous read returned), at most ``_GATHER_S``.

    Capped by the rate, a pause never lets more than a batch arrive, so the ring (four
    batches or more) does not overflow while the loop sleeps.
    """
    return min(_GATHER_S, since_previous_read * (wanted - got) / got)
