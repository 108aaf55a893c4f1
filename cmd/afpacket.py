"""The baseline: the same scenarios with a plain Python AF_PACKET socket (Go's cmd/afpacket).

What a Python program does without xdppacket: ``recv_into`` one frame per call into a
reused buffer, ``send`` one frame per call. The output matches ``cmd/xdp.py``: a line per
second (with the kernel's ``PACKET_STATISTICS`` drops) and a summary, JSON with ``--json``.

Scenarios: rx (``recv_into`` per frame) and tx (``send`` per frame); ``rx-single`` and
``tx-single`` are accepted as the same, so both tools take the same scenario names.

Example (as root): python cmd/afpacket.py --iface veth0 --scenario rx --duration 5
"""

from __future__ import annotations

import argparse
import select
import socket
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd import runloop
else:
    import runloop

SCENARIOS = {"rx": "rx", "rx-single": "rx", "tx": "tx", "tx-single": "tx"}
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
_TPACKET_STATS = struct.Struct("II")  # struct tpacket_stats: tp_packets, tp_drops


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iface", required=True, help="interface to bind")
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--io", choices=("block", "nonblock"), default="block",
                        help="blocking calls, or non-blocking ones that wait in select (default block)")
    parser.add_argument("--poll-timeout", type=int, default=100,
                        help="microseconds a non-blocking call waits in select (default 100)")
    runloop.add_run_arguments(parser)
    args = parser.parse_args(argv)
    args.scenario = SCENARIOS[args.scenario]
    return args


def open_socket(ifname: str, direction: str, blocking: bool) -> socket.socket:
    """An AF_PACKET raw socket bound to ``ifname``: all protocols for rx, none for tx."""
    protocol = ETH_P_ALL if direction == "rx" else 0  # 0: a sender queues nothing it receives
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    try:
        sock.bind((ifname, protocol))
        sock.setblocking(blocking)
    except BaseException:
        sock.close()
        raise
    return sock


def rx_loop(sock: socket.socket, poll_timeout: float | None) -> Callable[[runloop.Counter], None]:
    """``recv_into`` one frame per call; in non-blocking mode wait in select when empty."""
    buffer = bytearray(65536)
    receive = sock.recv_into

    def blocking(counter: runloop.Counter) -> None:
        while True:
            counter.rx_bytes += receive(buffer)
            counter.rx_packets += 1

    def nonblocking(counter: runloop.Counter) -> None:
        waiting = [sock]
        while True:
            try:
                counter.rx_bytes += receive(buffer)
            except BlockingIOError:
                select.select(waiting, [], [], poll_timeout)
                continue
            counter.rx_packets += 1

    return blocking if poll_timeout is None else nonblocking


def tx_loop(sock: socket.socket, frame: bytes,
            poll_timeout: float | None) -> Callable[[runloop.Counter], None]:
    """``send`` one frame per call; in non-blocking mode wait in select when the queue is full."""
    send = sock.send

    def blocking(counter: runloop.Counter) -> None:
        while True:
            send(frame)
            counter.tx_packets += 1

    def nonblocking(counter: runloop.Counter) -> None:
        waiting = [sock]
        while True:
            try:
                send(frame)
            except BlockingIOError:
                select.select([], waiting, [], poll_timeout)
                continue
            counter.tx_packets += 1

    return blocking if poll_timeout is None else nonblocking


def counters_sampler(sock: socket.socket,
                     frame_size: int) -> Callable[[runloop.Counter], runloop.Sample]:
    """Cumulative counts: the loop's, plus the kernel's drops (which reset when read)."""
    dropped = 0

    def sample(counter: runloop.Counter) -> runloop.Sample:
        nonlocal dropped
        _, drops = _TPACKET_STATS.unpack(
            sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size))
        dropped += drops
        return runloop.Sample(counter.rx_packets, counter.rx_bytes, counter.tx_packets,
                              counter.tx_packets * frame_size, {"tp_drops": dropped})
    return sample


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    poll_timeout = None if args.io == "block" else args.poll_timeout / 1e6
    try:
        with open_socket(args.iface, args.scenario, blocking=args.io == "block") as sock:
            frame = runloop.bench_frame(args.frame_size, sock.getsockname()[4])
            loop = (rx_loop(sock, poll_timeout) if args.scenario == "rx"
                    else tx_loop(sock, frame, poll_timeout))
            summary = runloop.RunSummary(
                tool="afpacket", scenario=args.scenario,
                options={"iface": args.iface, "io": args.io, "poll_timeout_us": args.poll_timeout,
                         "frame_size": args.frame_size},
            )
            runloop.run_measured(loop, counters_sampler(sock, args.frame_size), summary, args)
    except (OSError, ValueError) as error:
        print(f"afpacket: {error}", file=sys.stderr)
        return 1
    runloop.print_summary(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
