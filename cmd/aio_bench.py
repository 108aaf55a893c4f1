"""asyncio receive paths compared: reading in the event loop against ``ReceiveThread``.

A traffic generator (``xdppacket.testing.TrafficGenerator``, pinned to the other CPU)
floods a veth pair in a private network namespace with 64-byte frames for ``--seconds``
per round, far more than Python can take. The consumer, an asyncio task pinned with the
loop to CPU 0, counts the frames it is handed; the figure is frames per second handed to
asyncio code. Each reader runs under three loads of the event loop:

- ``idle``: nothing else runs on the loop;
- ``blocking``: another task blocks the loop 5 ms in every 10 ms in a call that releases
  the GIL (``time.sleep``, like a blocking C library or file call);
- ``python``: another task runs pure-Python code 5 ms in every 10 ms (holds the GIL).

Readers: ``direct`` (``AsyncXDPPacket.batches(256)``, copies), ``thread``
(``ReceiveThread``, batches of 256, at most 64 waiting) and ``process`` (``ReceiveProcess``,
batches of 256, 16 MiB of buffer; the child shares CPU 0 too). Rounds alternate the
combinations; medians are printed, with the share of offered frames that were lost (in
the ring, the kernel's ``rx_dropped``, or dropped by the thread's bounded queue).
Usage, as root: ``python cmd/aio_bench.py [--rounds N] [--seconds S] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from xdppacket import XDP_MODE_DRV, OptXDPMode, XDPPacket
from xdppacket.aio import AsyncXDPPacket, ReceiveProcess, ReceiveThread
from xdppacket.testing import GeneratorResult, TrafficGenerator, private_netns, veth_pair

FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(50)  # 64 bytes
BATCH = 256
LOADS = ("idle", "blocking", "python")
READERS = ("direct", "thread", "process")
BUSY_S, PERIOD_S = 0.005, 0.010


@dataclass(frozen=True)
class Round:
    reader: str
    load: str
    delivered: int
    offered: int
    kernel_dropped: int
    queue_dropped: int
    seconds: float

    @property
    def pps(self) -> float:
        return self.delivered / self.seconds

    @property
    def lost(self) -> float:
        return 1 - self.delivered / self.offered if self.offered else 0.0


async def load_the_loop(load: str, stop: asyncio.Event) -> None:
    """Occupy the loop ``BUSY_S`` in every ``PERIOD_S`` the way ``load`` says."""
    while not stop.is_set():
        if load == "blocking":
            time.sleep(BUSY_S)
        elif load == "python":
            deadline = time.perf_counter() + BUSY_S
            while time.perf_counter() < deadline:
                pass
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), PERIOD_S - BUSY_S if load != "idle" else None)


async def consume_direct(capture: str, counts: dict[str, int], ready: asyncio.Event) -> None:
    """Count frames read in the loop until cancelled; then note the kernel's drops."""
    async with AsyncXDPPacket(capture, OptXDPMode(XDP_MODE_DRV)) as sock:
        ready.set()
        try:
            async for packets, _ in sock.batches(BATCH):
                counts["delivered"] += len(packets)
        finally:
            counts["kernel_dropped"] = sock.get_stats().rx_dropped


async def consume_thread(capture: str, counts: dict[str, int], ready: asyncio.Event) -> None:
    """Count frames handed over by a ``ReceiveThread`` until cancelled; then note both drops."""
    sock = XDPPacket(capture, OptXDPMode(XDP_MODE_DRV))
    async with ReceiveThread(sock, batch_size=BATCH, max_batches=64) as runner:
        ready.set()
        try:
            async for packets, _ in runner:
                counts["delivered"] += len(packets)
        finally:
            counts["kernel_dropped"] = sock.get_stats().rx_dropped
            counts["queue_dropped"] = runner.stats().dropped_packets


async def consume_process(capture: str, counts: dict[str, int], ready: asyncio.Event) -> None:
    """Count frames handed over by a ``ReceiveProcess`` (same CPU) until cancelled; then both drops."""
    async with ReceiveProcess(XDPPacket, capture, OptXDPMode(XDP_MODE_DRV), batch_size=BATCH) as runner:
        ready.set()
        try:
            async for packets, _ in runner:
                counts["delivered"] += len(packets)
        finally:
            counts["kernel_dropped"] = runner.kernel_dropped
            counts["queue_dropped"] = runner.stats().dropped_packets


async def one_round(pair_capture: str, generator: TrafficGenerator, reader: str, load: str,
                    seconds: float) -> Round:
    counts = {"delivered": 0, "kernel_dropped": 0, "queue_dropped": 0}
    consumers: dict[str, Callable[..., Awaitable[None]]] = {
        "direct": consume_direct, "thread": consume_thread, "process": consume_process}
    ready = asyncio.Event()
    stop = asyncio.Event()
    consumer = asyncio.ensure_future(consumers[reader](pair_capture, counts, ready))
    await ready.wait()
    loader = asyncio.ensure_future(load_the_loop(load, stop))
    result: list[GeneratorResult] = []
    sender = threading.Thread(target=lambda: result.append(generator.send_for(seconds)))
    started = time.perf_counter()
    sender.start()
    while sender.is_alive():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # what is already in the ring is still delivered
    elapsed = time.perf_counter() - started
    stop.set()
    await loader
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    return Round(reader, load, counts["delivered"], result[0].frames, counts["kernel_dropped"],
                 counts["queue_dropped"], elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if os.cpu_count() is None or (os.cpu_count() or 1) < 2:
        sys.exit("needs two CPUs: the generator runs on the second")
    rounds: list[Round] = []
    with private_netns(), veth_pair("xaio0", "xaio1") as pair, \
            TrafficGenerator(pair.peer, FRAME, cpu=1) as generator:
        os.sched_setaffinity(0, {0})  # the loop and the reader thread; the generator pins itself
        for _ in range(args.rounds):
            for load in LOADS:
                for reader in READERS:
                    rounds.append(asyncio.run(one_round(pair.capture, generator, reader, load, args.seconds)))
    table: list[dict[str, Any]] = []
    for load in LOADS:
        for reader in READERS:
            mine = [r for r in rounds if (r.reader, r.load) == (reader, load)]
            table.append({
                "reader": reader, "load": load,
                "pps": statistics.median(r.pps for r in mine),
                "lost": statistics.median(r.lost for r in mine),
                "queue_dropped_share": statistics.median(r.queue_dropped / r.offered for r in mine),
                "offered_pps": statistics.median(r.offered / r.seconds for r in mine),
            })
    if args.json:
        print(json.dumps({"rows": table, "rounds": [asdict(r) for r in rounds]}, indent=1))
    else:
        print(f"{'load':<9} {'reader':<8} {'handed to asyncio':>18} {'lost':>6} {'of which queue':>15} {'offered':>10}")
        for row in table:
            print(f"{row['load']:<9} {row['reader']:<8} {row['pps'] / 1e3:>14.0f} kpps {row['lost']:>6.0%} "
                  f"{row['queue_dropped_share']:>15.0%} {row['offered_pps'] / 1e6:>6.2f} Mpps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
