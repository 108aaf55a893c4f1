"""Capture on queues 0..N-1 of an interface at once; print per-queue rates once a second.

Usage, as root:
    python examples/multiqueue_capture.py IFNAME --queues N [--mode skb|drv] [--duration SECONDS]

Ctrl-C (or the end of --duration) prints the final per-queue counters.
"""

from __future__ import annotations

import argparse
import time

from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptIoMode,
    OptPollTimeout,
    OptQueueCount,
    OptXDPMode,
    XDPMultiQueue,
    XDPStats,
)

MODES = {"drv": XDP_MODE_DRV, "skb": XDP_MODE_SKB}


def print_final(stats: list[XDPStats]) -> None:
    print(f"{'queue':>5} {'rx_packets':>12} {'rx_bytes':>14} {'rx_dropped':>10}")
    for name, queue in [*enumerate(stats[1:]), ("all", stats[0])]:  # [0] is the sum
        print(f"{name:>5} {queue.rx_packets:>12} {queue.rx_bytes:>14} {queue.rx_dropped:>10}")


def capture(ifname: str, queues: int, mode: str, duration: float | None) -> None:
    # Non-blocking with a 100 ms poll timeout: the loop wakes up to print rates even when idle.
    options = (OptQueueCount(queues), OptXDPMode(MODES[mode]),
               OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(100_000))
    with XDPMultiQueue(ifname, *options) as mq:
        print(f"capturing on {ifname} queues 0-{queues - 1} ({mode} mode), Ctrl-C stops", flush=True)
        started = last_time = time.monotonic()
        last = mq.get_stats()
        try:
            while duration is None or time.monotonic() - started < duration:
                packets, infos = mq.read_multi_packets(64)  # a real program looks at them here
                now = time.monotonic()
                if now - last_time >= 1:
                    stats = mq.get_stats()
                    rates = [(new - old).rx_packets / (now - last_time) for new, old in zip(stats, last)]
                    print("rx/s", *(f"q{i}={rate:.0f}" for i, rate in enumerate(rates[1:])),
                          f"all={rates[0]:.0f}", flush=True)
                    last, last_time = stats, now
        except KeyboardInterrupt:
            pass
        print_final(mq.get_stats())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ifname")
    parser.add_argument("--queues", type=int, required=True, help="capture queues 0..N-1")
    parser.add_argument("--mode", choices=MODES, default="drv", help="drv: native (default), skb: generic")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    capture(args.ifname, args.queues, args.mode, args.duration)
