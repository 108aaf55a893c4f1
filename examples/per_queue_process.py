"""One process per queue, each with its own XDPPacket: the way to use more than one CPU.

Usage, as root:
    python examples/per_queue_process.py IFNAME --queues N [--mode skb|drv] [--duration SECONDS]

The first process to start attaches the XDP program and the others join it; it stays
attached while any of them runs, and goes away with the last one, even if it is killed.
Ctrl-C (or the end of --duration) stops them all and each prints its counts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptIoMode,
    OptPollTimeout,
    OptQueueID,
    OptXDPMode,
    XDPPacket,
)

MODES = {"drv": XDP_MODE_DRV, "skb": XDP_MODE_SKB}


def say(line: str) -> None:
    """Print ``line`` in one write, so the lines of several processes never run together."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def capture_queue(ifname: str, queue: int, mode: str, duration: float | None) -> None:
    """Runs in its own process: count the frames of one queue."""
    options = (OptQueueID(queue), OptXDPMode(MODES[mode]),
               OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(100_000))
    packets = octets = 0
    try:
        with XDPPacket(ifname, *options) as xsk:
            say(f"queue {queue}: capturing")
            started = time.monotonic()
            while duration is None or time.monotonic() - started < duration:
                frames, infos = xsk.read_multi_packets(64)
                packets += len(frames)
                octets += sum(info.length for info in infos)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal's group
        pass
    say(f"queue {queue}: {packets} packets, {octets} bytes")


def main(ifname: str, queues: int, mode: str, duration: float | None) -> int:
    workers = [
        multiprocessing.Process(target=capture_queue, args=(ifname, queue, mode, duration))
        for queue in range(queues)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        for worker in workers:  # they got Ctrl-C too: let them print their counts
            worker.join()
    return 0 if all(worker.exitcode == 0 for worker in workers) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ifname")
    parser.add_argument("--queues", type=int, required=True, help="one process for each of queues 0..N-1")
    parser.add_argument("--mode", choices=MODES, default="drv", help="drv: native (default), skb: generic")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    raise SystemExit(main(args.ifname, args.queues, args.mode, args.duration))
