"""``xdppacket replay``: send the frames of a pcap or pcapng file out of an interface.

Frames go out in file order through one ``XDPPacket`` (its tx ring), in batches; with
``--pps`` they are paced to that rate (in batches of about 10 ms), otherwise sent as fast
as the ring takes them. ``--loop N`` sends the file N times (0: until stopped).
SIGINT and SIGTERM stop after the current batch.
"""

from __future__ import annotations

import itertools
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .._frame_fit import FramesTooLongWarning
from ..options import OptQueueID, OptXDPMode, XDPMode
from ..packet import XDPPacket
from ..pcap import PcapReader
from .signals import StopSignals

__all__ = ["ReplayRequest", "ReplayResult", "run_replay"]

_MAX_BATCH = 64
_PACING_SLICE_S = 0.01


@dataclass(frozen=True)
class ReplayRequest:
    ifname: str
    path: str  # "-" reads standard input
    pps: float | None
    loop: int  # 0: until stopped
    mode: XDPMode
    queue: int


@dataclass(frozen=True)
class ReplayResult:
    packets: int
    bytes: int
    seconds: float

    def summary(self) -> str:
        rate = self.packets / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.packets} packets ({self.bytes} bytes) sent in {self.seconds:.3f} s, "
                f"{rate:.0f} pps")


def _batches(source: str | BinaryIO, size: int) -> Iterator[list[bytes]]:
    with PcapReader(source) as reader:
        frames = iter(frame for frame, _timestamp in reader)
        while batch := list(itertools.islice(frames, size)):
            yield batch


def run_replay(request: ReplayRequest) -> ReplayResult:
    if request.path == "-" and request.loop != 1:
        raise ValueError("--loop needs a file: standard input can be read only once")
    batch_size = _MAX_BATCH if request.pps is None else max(1, min(_MAX_BATCH, int(request.pps * _PACING_SLICE_S)))
    packets = sent_bytes = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FramesTooLongWarning)  # replay only sends
        sock = XDPPacket(request.ifname, OptXDPMode(request.mode), OptQueueID(request.queue))
    with sock, StopSignals() as stop:
        start = time.monotonic()
        passes = itertools.count() if request.loop == 0 else range(request.loop)
        for _ in passes:
            source: str | BinaryIO = sys.stdin.buffer if request.path == "-" else request.path
            for batch in _batches(source, batch_size):
                if stop.requested:
                    break
                if request.pps is not None:
                    delay = start + packets / request.pps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                try:
                    packets += sock.write_multi_packets(batch)
                except ValueError as exc:
                    raise ValueError(f"{request.path}: packet {packets + 1} or one of the "
                                     f"{len(batch) - 1} after it: {exc}") from None
                sent_bytes += sum(map(len, batch))
            if stop.requested:
                break
    return ReplayResult(packets, sent_bytes, time.monotonic() - start)
