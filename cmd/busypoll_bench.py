"""What ``OptBusyPoll`` changes on veth: ping-pong latency and one-way throughput, with and without.

Two processes, each pinned to its own CPU, each with an ``XDPPacket`` in native mode on
one end of a veth pair in a private network namespace. Latency: the client writes one
64-byte frame, the echo process reads it and writes it back, the client reads it: one
round trip, timed with ``perf_counter_ns``. Throughput: the client writes ``--frames``
frames as fast as it can, the sink counts what arrives between its first and last frame.
Both ends use busy polling or neither; rounds alternate the two variants (and their order)
and medians are quoted.

``--defer`` also sets ``napi_defer_hard_irqs`` and ``gro_flush_timeout`` on both ends
(through a sysfs of the private namespace), the settings that make busy polling pay on a
real NIC: README.md ("Busy polling") says what veth can and cannot show.

Runs as root. Usage: ``python cmd/busypoll_bench.py [--rounds N] [--pings N] [--frames N]
[--busy-us US] [--defer] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import xdppacket
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    OptBusyPoll,
    OptIoMode,
    OptPollTimeout,
    OptXDPMode,
    XDPPacket,
    XDPTimeoutError,
)

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchmain import bench_run
    from cmd.benchnet import VethPair, enter_private_sysfs
else:
    from benchmain import bench_run
    from benchnet import VethPair, enter_private_sysfs

_HEADER = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5"
_DATA, _STOP = b"D", b"S"
CLIENT_CPU, SERVER_CPU = 0, 1
#: Settings of --defer: NAPI stays scheduled (no re-arm) for two empty polls, flushed by a 200 us timer.
DEFER_HARD_IRQS, GRO_FLUSH_TIMEOUT_NS = 2, 200_000
#: How long a client read waits for its echo before counting the frame lost.
_LOST_AFTER_US = 1_000_000


def frame(kind: bytes, seq: int) -> bytes:
    """A 64-byte frame: header, kind, sequence number, padding."""
    return _HEADER + kind + seq.to_bytes(4, "big") + bytes(45)


def options(busy_us: int | None) -> list[object]:
    opts: list[object] = [OptXDPMode(XDP_MODE_DRV), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(_LOST_AFTER_US)]
    if busy_us is not None:
        opts.append(OptBusyPoll(budget=64, timeout_us=busy_us))
    return opts


# ------------------------------------------------------------------------------ the far end


def echo(ifname: str, busy_us: int | None, conn: Connection) -> None:
    """Write every frame back until a stop frame arrives."""
    os.sched_setaffinity(0, {SERVER_CPU})
    with XDPPacket(ifname, *options(busy_us)) as sock:
        conn.send("ready")
        while True:
            frames, _ = sock.read_multi_packets(64)
            if any(data[14:15] == _STOP for data in frames):
                return
            if frames:
                sock.write_multi_packets(frames)


def sink(ifname: str, busy_us: int | None, conn: Connection) -> None:
    """Count data frames until a stop frame; report (count, ns from the first to the last)."""
    os.sched_setaffinity(0, {SERVER_CPU})
    count, first, last = 0, 0, 0
    with XDPPacket(ifname, *options(busy_us)) as sock:
        conn.send("ready")
        while True:
            frames, _ = sock.read_multi_packets(256)
            if not frames:
                continue
            now = time.perf_counter_ns()
            data = sum(1 for packet in frames if packet[14:15] == _DATA)
            if data:
                first = first or now
                last = now
                count += data
            if data < len(frames):
                conn.send((count, last - first))
                return


FarEnd = Callable[[str, Optional[int], Connection], None]


def start(target: FarEnd, ifname: str, busy_us: int | None) -> tuple[BaseProcess, Connection]:
    """Fork the far end (it inherits the namespace) and wait until its socket is open."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=target, args=(ifname, busy_us, child))
    process.start()
    if not parent.poll(10) or parent.recv() != "ready":
        process.kill()
        raise RuntimeError(f"the {target.__name__} process did not start")
    return process, parent


def stop(sock: XDPPacket, process: BaseProcess) -> None:
    for seq in range(100):  # until it has seen one: a frame may be lost
        sock.write_packet(frame(_STOP, seq))
        process.join(0.05)
        if not process.is_alive():
            return
    process.kill()
    raise RuntimeError("the far end did not stop")


# ---------------------------------------------------------------------------- measurements


def ping_pong(pair: VethPair, busy_us: int | None, pings: int) -> tuple[list[int], int]:
    """Round-trip times (ns) of ``pings`` frames after a warm-up, and how many were lost."""
    process, _ = start(echo, pair.peer, busy_us)
    rtts: list[int] = []
    lost = 0
    with XDPPacket(pair.capture, *options(busy_us)) as sock:
        try:
            for seq in range(pings + 100):
                sent = frame(_DATA, seq)
                begin = time.perf_counter_ns()
                sock.write_packet(sent)
                try:
                    while sock.read_packet_data()[0] != sent:
                        pass
                except XDPTimeoutError:
                    lost += 1
                    continue
                if seq >= 100:
                    rtts.append(time.perf_counter_ns() - begin)
        finally:
            stop(sock, process)
    return rtts, lost


def throughput(pair: VethPair, busy_us: int | None, count: int) -> tuple[float, float]:
    """(frames per second received, fraction of the sent frames received)."""
    process, conn = start(sink, pair.peer, busy_us)
    batch = [frame(_DATA, seq) for seq in range(64)]
    with XDPPacket(pair.capture, *options(busy_us)) as sock:
        try:
            sent = 0
            while sent < count:
                sent += sock.write_multi_packets(batch[: count - sent])
        finally:
            stop(sock, process)
    received, elapsed_ns = conn.recv()
    return (received / elapsed_ns * 1e9 if elapsed_ns else 0.0), received / count


def set_deferral(pair: VethPair) -> None:
    """The busy-poll settings of a real NIC, on both veth ends (needs the private sysfs)."""
    for ifname in (pair.capture, pair.peer):
        Path(f"/sys/class/net/{ifname}/napi_defer_hard_irqs").write_text(f"{DEFER_HARD_IRQS}\n")
        Path(f"/sys/class/net/{ifname}/gro_flush_timeout").write_text(f"{GRO_FLUSH_TIMEOUT_NS}\n")


def measure(pair: VethPair, rounds: int, pings: int, frames: int, busy_us: int) -> dict[str, dict[str, object]]:
    variants = {"no busy poll": None, f"OptBusyPoll(timeout_us={busy_us})": busy_us}
    rtt_medians: dict[str, list[float]] = {name: [] for name in variants}
    rtt_p99s: dict[str, list[float]] = {name: [] for name in variants}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    delivered: dict[str, list[float]] = {name: [] for name in variants}
    losses = dict.fromkeys(variants, 0)
    os.sched_setaffinity(0, {CLIENT_CPU})
    for round_number in range(rounds):
        order = list(variants.items())
        if round_number % 2:
            order.reverse()
        for name, variant in order:
            rtts, lost = ping_pong(pair, variant, pings)
            losses[name] += lost
            rtt_medians[name].append(statistics.median(rtts) / 1000)
            rtt_p99s[name].append(sorted(rtts)[int(len(rtts) * 0.99) - 1] / 1000)
            rate, fraction = throughput(pair, variant, frames)
            rates[name].append(rate)
            delivered[name].append(fraction)
    return {
        name: {
            "rtt_median_us": statistics.median(rtt_medians[name]),
            "rtt_p99_us": statistics.median(rtt_p99s[name]),
            "rtt_median_us_rounds": rtt_medians[name],
            "pings_lost": losses[name],
            "throughput_pps": statistics.median(rates[name]),
            "throughput_pps_rounds": rates[name],
            "delivered_fraction": statistics.median(delivered[name]),
        }
        for name in variants
    }


def format_table(rows: dict[str, dict[str, object]]) -> str:
    lines = [f"{'variant':28s} {'RTT median':>11s} {'RTT p99':>9s} {'lost':>5s} {'rx pps':>10s} {'delivered':>10s}"]
    for name, row in rows.items():
        lines.append(f"{name:28s} {row['rtt_median_us']:>9.1f}us {row['rtt_p99_us']:>7.1f}us "
                     f"{row['pings_lost']:>5d} {row['throughput_pps']:>10,.0f} {row['delivered_fraction']:>10.1%}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant (alternating)")
    parser.add_argument("--pings", type=int, default=2000, help="round trips per round")
    parser.add_argument("--frames", type=int, default=200_000, help="frames per throughput round")
    parser.add_argument("--busy-us", type=int, default=50, help="OptBusyPoll timeout_us")
    parser.add_argument("--defer", action="store_true",
                        help=f"napi_defer_hard_irqs={DEFER_HARD_IRQS}, gro_flush_timeout={GRO_FLUSH_TIMEOUT_NS} ns")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with bench_run("busypoll_bench", roles="one per end", interrupted="the veth pair is deleted"):
        if args.defer:
            enter_private_sysfs()
        with VethPair.create("xbusy0", "xbusy1", queues=1) as pair:
            if args.defer:
                set_deferral(pair)
            rows = measure(pair, args.rounds, args.pings, args.frames, args.busy_us)
    if args.json:
        print(json.dumps({"xdppacket": xdppacket.__version__, "rounds": args.rounds, "pings": args.pings,
                          "frames": args.frames, "defer": args.defer, "variants": rows}, indent=2))
    else:
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
