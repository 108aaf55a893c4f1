"""Drain rates: how fast each reader empties a backlog of frames, xdppacket against AF_PACKET.

Live-load figures (``cmd/bench.py``) depend on the traffic generator: it offers about
3.3 Mpps at most, in bursts. A drain isolates the reader. A backlog of ``--backlog``
64-byte frames is put in place first (the generator fills the AF_XDP rx ring, or the
AF_PACKET socket's receive buffer), then the reader, pinned to one CPU, empties it as
fast as it can, and frames per second of that drain are what is reported. Nothing
arrives while it drains, so the figure is the reader's own per-frame cost: the Python
work plus its system calls. Every drain must return exactly the backlog, or the run
fails.

Runs as root in a private network namespace of its own; rounds alternate the readers and
the medians are quoted. ``make bench`` runs it too (``cmd/bench.py`` starts it as a
subprocess). Usage: ``python cmd/drain.py [--rounds N] [--backlog N] [--batches N ...]
[--cpu C] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING

import xdppacket
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    OptBatchTimestamps,
    OptFrameSize,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptRingSize,
    OptXDPMode,
    XDPPacket,
    XDPTimeoutError,
)
from xdppacket.testing import TrafficGenerator

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchmain import bench_run
    from cmd.benchnet import VethPair
else:
    from benchmain import bench_run
    from benchnet import VethPair

FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(50)  # 64 bytes
BATCHES = (16, 64, 256)
BASELINE = "AF_PACKET recv_into"
ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33
RING = 65536  # > any backlog, so the kernel never drops while the backlog is built

#: A drain: empties whatever is queued and returns how many frames it took.
Drain = Callable[[], int]


def afpacket_drain(ifname: str) -> tuple[Drain, Callable[[], None]]:
    """``recv_into`` per frame into one reused buffer, as a careful Python capture loop does."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 30)
    sock.setblocking(False)
    buffer = bytearray(2048)

    def drain() -> int:
        count = 0
        receive = sock.recv_into
        try:
            while True:
                receive(buffer)
                count += 1
        except BlockingIOError:
            return count

    return drain, sock.close


def xdp_single_drain(sock: XDPPacket, zero_copy: bool) -> Drain:
    read = sock.zero_copy_read_packet_data if zero_copy else sock.read_packet_data

    def drain() -> int:
        count = 0
        try:
            while True:
                read()
                count += 1
        except XDPTimeoutError:
            return count

    return drain


def xdp_batch_drain(sock: XDPPacket, zero_copy: bool, batch: int) -> Drain:
    read = sock.zero_copy_read_multi_packets if zero_copy else sock.read_multi_packets

    def drain() -> int:
        count = 0
        while True:
            taken = len(read(batch)[0])
            if not taken:
                return count
            count += taken

    return drain


def timed_drain(fill: Callable[[], None], drain: Drain, backlog: int) -> float:
    """Build the backlog, drain it on the reader CPU, return frames per second."""
    fill()
    time.sleep(0.05)  # let the kernel finish delivering the last frames
    started = time.perf_counter()
    drained = drain()
    elapsed = time.perf_counter() - started
    if drained != backlog:
        raise RuntimeError(f"drained {drained} frames, expected the backlog of {backlog}")
    return drained / elapsed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all readers (default 5)")
    parser.add_argument("--backlog", type=int, default=50_000, help="frames per drain (default 50000)")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), metavar="N",
                        help=f"batch sizes of the batched readers (default {' '.join(map(str, BATCHES))})")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU that fills and drains (default 0)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if not 1000 <= args.backlog < RING:
        parser.error(f"--backlog must be 1000..{RING - 1}")
    if args.rounds < 1 or any(batch < 1 for batch in args.batches):
        parser.error("--rounds and --batches must be positive")
    if args.cpu not in os.sched_getaffinity(0):
        parser.error(f"--cpu {args.cpu} is not among this process's CPUs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with bench_run("drain", roles=None, interrupted="the veth pair is deleted"), \
            VethPair.create("xdrain0", "xdrain1", queues=1) as pair:
        results = measure(pair, args.rounds, args.backlog, sorted(set(args.batches)), args.cpu)
    rows = summarize(results)
    if args.json:
        drains = {name: asdict(row) for name, row in rows.items()}
        print(json.dumps({"xdppacket": xdppacket.__version__, "backlog": args.backlog,
                          "rounds": args.rounds, "cpu": args.cpu, "drains": drains}, indent=2))
    else:
        print(format_table(rows))
    return 0


def measure(pair: VethPair, rounds: int, backlog: int, batches: list[int],
            cpu: int) -> dict[str, list[float]]:
    """Drain rates (frames per second) of every reader, by round."""
    generator = TrafficGenerator(pair.peer, FRAME, cpu=cpu)
    os.sched_setaffinity(0, {cpu})

    def fill() -> None:
        generator.send(backlog)

    results: dict[str, list[float]] = {}
    try:
        for round_number in range(rounds):
            drains = list(readers(pair, batches).items())
            if round_number % 2:
                drains.reverse()
            for name, (make, close) in drains:
                drain = make()
                try:
                    results.setdefault(name, []).append(timed_drain(fill, drain, backlog))
                finally:
                    close()
    finally:
        generator.close()
    return results


Reader = tuple[Callable[[], Drain], Callable[[], None]]


def readers(pair: VethPair, batches: list[int]) -> dict[str, Reader]:
    """Each reader as (open and return its drain, close); opened per round, one at a time."""
    opened: list[Callable[[], None]] = []

    def close_all() -> None:
        while opened:
            opened.pop()()

    def afpacket() -> Drain:
        drain, close = afpacket_drain(pair.capture)
        opened.append(close)
        return drain

    def xdp(make: Callable[[XDPPacket], Drain], *extra: object) -> Callable[[], Drain]:
        def open_and_make() -> Drain:
            sock = XDPPacket(pair.capture, OptXDPMode(XDP_MODE_DRV), OptIoMode(IO_MODE_NONBLOCK),
                             OptPollTimeout(0), OptNumFrames(RING), OptRingSize(RING), OptFrameSize(2048),
                             *extra)
            opened.append(sock.close)
            return make(sock)
        return open_and_make

    table: dict[str, Reader] = {BASELINE: (afpacket, close_all)}
    table["read_packet_data"] = (xdp(partial(xdp_single_drain, zero_copy=False)), close_all)
    table["zero_copy_read_packet_data"] = (xdp(partial(xdp_single_drain, zero_copy=True)), close_all)
    for batch in batches:
        for zero_copy in (False, True):
            name = f"{'zero_copy_' if zero_copy else ''}read_multi_packets({batch})"
            table[name] = (xdp(partial(xdp_batch_drain, zero_copy=zero_copy, batch=batch)), close_all)
    # The same readers without a CaptureInfo per frame: frames of a read share its time.
    shared = OptBatchTimestamps()
    table["read_packet_data, OptBatchTimestamps"] = (
        xdp(partial(xdp_single_drain, zero_copy=False), shared), close_all)
    for batch in batches:
        table[f"zero_copy_read_multi_packets({batch}), OptBatchTimestamps"] = (
            xdp(partial(xdp_batch_drain, zero_copy=True, batch=batch), shared), close_all)
    return table


@dataclass(frozen=True)
class DrainResult:
    """One reader's drain rates: the median, each round's, and the median over AF_PACKET's."""

    median_pps: float
    rounds_pps: list[float]
    ratio_to_afpacket: float


def summarize(results: dict[str, list[float]]) -> dict[str, DrainResult]:
    baseline = statistics.median(results[BASELINE])
    return {name: DrainResult(statistics.median(rates), rates, statistics.median(rates) / baseline)
            for name, rates in results.items()}


def round_ratios(rows: dict[str, DrainResult], name: str) -> list[float]:
    """``name``'s rate over AF_PACKET's, round by round (each round drains both)."""
    return [rate / base for rate, base in zip(rows[name].rounds_pps, rows[BASELINE].rounds_pps)]


def format_table(rows: dict[str, DrainResult]) -> str:
    lines = [f"{'reader':52s} {'drain pps (median)':>19s} {'vs AF_PACKET':>13s}   rounds (Mpps)"]
    for name, row in rows.items():
        rounds_text = " ".join(f"{rate / 1e6:.2f}" for rate in row.rounds_pps)
        lines.append(f"{name:52s} {row.median_pps:>19,.0f} {row.ratio_to_afpacket:>12.2f}x   {rounds_text}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
