"""``xdppacket generate``: the kernel's live-frame generator (``TrafficGenerator``) from the shell.

Sends copies of one test frame (destination ``--dst``, the interface's own MAC as source,
ethertype 0x88b5, "local experimental") at millions of frames per second. Stops after
``--count`` frames or ``--duration`` seconds, otherwise on Ctrl-C, printing a line a second.
"""

from __future__ import annotations

import signal
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from .._interface import interface_index
from .._netlink import get_link
from ..testing.trafficgen import GeneratorResult, TrafficGenerator

__all__ = ["ETH_P_LOCAL_EXPERIMENTAL", "GenerateRequest", "build_frame", "result_line", "run_generate"]

ETH_P_LOCAL_EXPERIMENTAL = 0x88B5
BROADCAST = b"\xff" * 6
_REPORT_INTERVAL_S = 1.0


@dataclass(frozen=True)
class GenerateRequest:
    ifname: str
    count: int | None
    duration: float | None
    size: int
    dst: bytes
    cpu: int | None


def build_frame(size: int, dst: bytes, src: bytes) -> bytes:
    """A ``size``-byte Ethernet frame: header, then bytes counting up (easy to recognise)."""
    header = struct.pack("!6s6sH", dst, src, ETH_P_LOCAL_EXPERIMENTAL)
    if size < len(header):
        raise ValueError(f"--size {size}: a frame needs at least {len(header)} bytes")
    payload_size = size - len(header)
    return header + (bytes(range(256)) * (payload_size // 256 + 1))[:payload_size]


def result_line(result: GeneratorResult) -> str:
    return (f"{result.frames} packets sent ({result.frame_size} bytes each) in {result.seconds:.3f} s: "
            f"{result.pps:.0f} pps, {result.bps / 1e6:.1f} Mbit/s")


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the generator as Ctrl-C does: at once (the kernel call is interrupted)."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_generate(request: GenerateRequest) -> GeneratorResult:
    src = get_link(interface_index(request.ifname)).address
    frame = build_frame(request.size, request.dst, src)
    frames = 0
    seconds = 0.0
    with TrafficGenerator(request.ifname, frame, cpu=request.cpu) as generator, _sigterm_interrupts():
        sys.stderr.write(f"xdppacket: generating {request.size}-byte frames on {request.ifname}\n")
        sys.stderr.flush()
        try:
            if request.count is not None:
                return generator.send(request.count)
            if request.duration is not None:
                return generator.send_for(request.duration)
            while True:  # until Ctrl-C: a line a second
                result = generator.send_for(_REPORT_INTERVAL_S)
                frames, seconds = frames + result.frames, seconds + result.seconds
                sys.stderr.write(result_line(result) + "\n")
                sys.stderr.flush()
        except KeyboardInterrupt:
            if not frames:
                raise
    return GeneratorResult(frames=frames, seconds=seconds, frame_size=len(frame))
