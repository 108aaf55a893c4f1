"""Run one xdppacket scenario on an existing interface and report its rates (Go's cmd/xdp).

Each scenario is a tight loop around one library call; the loop only counts what the
call returned. A line per second shows packets and Mbit/s (the library's counters) and the
kernel's drop counters (``XDP_STATISTICS`` deltas). Stop with Ctrl-C, ``--duration`` or
``--count``; the summary follows (JSON with ``--json``).

Scenarios:
  rx-single      XDPPacket.read_packet_data(), one frame per call
  rx-batch       XDPPacket.read_multi_packets(batch)
  rx-zc-batch    XDPPacket.zero_copy_read_multi_packets(batch)
  tx-single      XDPPacket.write_packet(frame)
  tx-batch       XDPPacket.write_multi_packets(batch frames)
  mq-rx-single   XDPMultiQueue.read_packet(): at most one frame per queue per call
  mq-rx-batch    XDPMultiQueue.read_multi_packets(batch)
  mq-tx-single   XDPMultiQueue.write_packet([frame])
  mq-tx-batch    XDPMultiQueue.write_packet(batch frames), spread over the queues
  duplex         one XDPPacket, one thread: a batched read, then a batched write, in turn
                 (non-blocking, so neither direction waits for the other)

Example (as root): python cmd/xdp.py --iface veth0 --scenario rx-zc-batch --duration 5
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

import xdppacket
from xdppacket import XDPMultiQueue, XDPPacket, XDPStats, XDPTimeoutError, XDPWriteError

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd import runloop
else:
    import runloop

Socket = Union[XDPPacket, XDPMultiQueue]
Loop = Callable[[runloop.Counter], None]

RX_SCENARIOS = ("rx-single", "rx-batch", "rx-zc-batch", "mq-rx-single", "mq-rx-batch")
TX_SCENARIOS = ("tx-single", "tx-batch", "mq-tx-single", "mq-tx-batch")
SCENARIOS = (*RX_SCENARIOS, *TX_SCENARIOS, "duplex")
RX_DROP_COUNTERS = ("rx_dropped", "rx_ring_full", "rx_fill_ring_empty_descs")
TX_DROP_COUNTERS = ("tx_invalid_descs",)  # tx_ring_empty_descs counts idle polls, not drops


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iface", required=True, help="interface to bind")
    parser.add_argument("--scenario", required=True, choices=SCENARIOS)
    parser.add_argument("--queue", type=int, default=0, help="queue of single-queue scenarios (default 0)")
    parser.add_argument("--queues", type=int, default=1, help="queue count of mq-* scenarios (default 1)")
    parser.add_argument("--mode", choices=("drv", "skb"), default="drv",
                        help="XDP mode: drv (native, default) or skb (generic)")
    parser.add_argument("--io", choices=("block", "nonblock"),
                        help="I/O mode (default block; duplex is always nonblock)")
    parser.add_argument("--poll-timeout", type=int, default=100,
                        help="microseconds a non-blocking call may wait (default 100)")
    parser.add_argument("--batch", type=int, default=64, help="frames per batched call (default 64)")
    parser.add_argument("--frames", type=int, default=1024,
                        help="UMEM frames per direction, OptNumFrames (default 1024)")
    parser.add_argument("--ring-size", type=int, default=1024,
                        help="entries of each ring, OptRingSize (default 1024)")
    runloop.add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.scenario == "duplex":
        if args.io == "block":
            parser.error("duplex alternates reads and writes in one thread: it needs --io nonblock")
        args.io = "nonblock"
    args.io = args.io or "block"
    return args


def open_socket(args: argparse.Namespace) -> Socket:
    options = [
        xdppacket.OptXDPMode(xdppacket.XDP_MODE_SKB if args.mode == "skb" else xdppacket.XDP_MODE_DRV),
        xdppacket.OptIoMode(xdppacket.IO_MODE_NONBLOCK if args.io == "nonblock" else xdppacket.IO_MODE_BLOCK),
        xdppacket.OptPollTimeout(args.poll_timeout),
        xdppacket.OptNumFrames(args.frames),
        xdppacket.OptRingSize(args.ring_size),
    ]
    if args.scenario.startswith("mq-"):
        return XDPMultiQueue(args.iface, xdppacket.OptQueueCount(args.queues), *options)
    return XDPPacket(args.iface, xdppacket.OptQueueID(args.queue), *options)


def scenario_loop(scenario: str, sock: Socket, frame: bytes, batch: int) -> Loop:
    """The measured loop of ``scenario``: one call per turn, counting what it returned."""
    if isinstance(sock, XDPMultiQueue):
        return _multi_queue_loop(scenario, sock, frame, batch)
    frames = [frame] * batch

    def rx_single(counter: runloop.Counter) -> None:
        read = sock.read_packet_data
        while True:
            try:
                read()
            except XDPTimeoutError:
                continue
            counter.rx_packets += 1

    def rx_batch(counter: runloop.Counter) -> None:
        read = sock.read_multi_packets
        while True:
            counter.rx_packets += len(read(batch)[0])

    def rx_zc_batch(counter: runloop.Counter) -> None:
        read = sock.zero_copy_read_multi_packets
        while True:
            counter.rx_packets += len(read(batch)[0])

    def tx_single(counter: runloop.Counter) -> None:
        write = sock.write_packet
        while True:
            try:
                write(frame)
            except XDPTimeoutError:
                continue
            counter.tx_packets += 1

    def tx_batch(counter: runloop.Counter) -> None:
        write = sock.write_multi_packets
        while True:
            counter.tx_packets += write(frames)

    def duplex(counter: runloop.Counter) -> None:
        read = sock.read_multi_packets
        write = sock.write_multi_packets
        while True:
            counter.rx_packets += len(read(batch)[0])
            counter.tx_packets += write(frames)

    loops: dict[str, Loop] = {"rx-single": rx_single, "rx-batch": rx_batch,
                              "rx-zc-batch": rx_zc_batch, "tx-single": tx_single,
                              "tx-batch": tx_batch, "duplex": duplex}
    return loops[scenario]


def _multi_queue_loop(scenario: str, mq: XDPMultiQueue, frame: bytes, batch: int) -> Loop:
    single: list[object] = [frame]
    frames: list[object] = [frame] * batch

    def mq_rx_single(counter: runloop.Counter) -> None:
        read = mq.read_packet
        while True:
            counter.rx_packets += len(read()[0])

    def mq_rx_batch(counter: runloop.Counter) -> None:
        read = mq.read_multi_packets
        while True:
            counter.rx_packets += len(read(batch)[0])

    def mq_tx(to_send: list[object]) -> Loop:
        def loop(counter: runloop.Counter) -> None:
            write = mq.write_packet
            while True:
                try:
                    counter.tx_packets += write(to_send)
                except XDPWriteError as partial:  # a queue timed out (non-blocking mode)
                    counter.tx_packets += partial.sent
        return loop

    loops: dict[str, Loop] = {"mq-rx-single": mq_rx_single, "mq-rx-batch": mq_rx_batch,
                              "mq-tx-single": mq_tx(single), "mq-tx-batch": mq_tx(frames)}
    return loops[scenario]


def total_stats(sock: Socket) -> XDPStats:
    if isinstance(sock, XDPMultiQueue):
        return sock.get_stats()[0]
    return sock.get_stats()


def stats_sampler(sock: Socket, scenario: str) -> Callable[[runloop.Counter], runloop.Sample]:
    """Cumulative library and kernel counters of ``sock``, with the drop counters that matter."""
    names: tuple[str, ...] = RX_DROP_COUNTERS if scenario in RX_SCENARIOS else TX_DROP_COUNTERS
    if scenario == "duplex":
        names = RX_DROP_COUNTERS + TX_DROP_COUNTERS

    def sample(counter: runloop.Counter) -> runloop.Sample:
        stats = total_stats(sock)  # the library counts what the calls returned, bytes too
        return runloop.Sample(stats.rx_packets, stats.rx_bytes, stats.tx_packets, stats.tx_bytes,
                              {name: getattr(stats, name) for name in names})
    return sample


def interface_mac(ifname: str) -> bytes:
    """The interface's MAC address, asked of the kernel through a bound AF_PACKET socket."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind((ifname, 0))
        address: bytes = sock.getsockname()[4]
    return address


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        frame = runloop.bench_frame(args.frame_size, interface_mac(args.iface))
        with open_socket(args) as sock:
            summary = runloop.RunSummary(
                tool="xdp", scenario=args.scenario,
                options={"iface": args.iface, "mode": args.mode, "io": args.io,
                         "poll_timeout_us": args.poll_timeout, "batch": args.batch,
                         "queue": args.queue, "queues": args.queues, "frames": args.frames,
                         "ring_size": args.ring_size,
                         "frame_size": args.frame_size},
            )
            loop = scenario_loop(args.scenario, sock, frame, args.batch)
            runloop.run_measured(loop, stats_sampler(sock, args.scenario), summary, args)
    except (OSError, ValueError) as error:
        print(f"xdp: {error}", file=sys.stderr)
        return 1
    runloop.print_summary(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
