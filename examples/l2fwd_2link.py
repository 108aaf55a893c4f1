"""l2fwd_2link: forward every frame between two interfaces, both ways, unchanged (a two-port wire).

A frame arriving on queue q of IF1 leaves through queue q of IF2, and the other way round.
Once a second it prints each interface's receive and transmit rates and the kernel's drop
counters; at the end (Ctrl-C, SIGTERM or --duration) the totals per interface.

Usage, as root:
    python examples/l2fwd_2link.py -i IF1 -j IF2 [--queues N] [--batch B] [--mode drv|skb] [--duration S]

Each interface has its own socket per queue, each with its own UMEM, so each frame is
copied: out of IF1's UMEM by read_multi_packets, into IF2's by write_multi_packets.
Sharing one UMEM between the two interfaces (XDP_SHARED_UMEM), which would let a frame be
forwarded without a copy, is not implemented in xdppacket yet.
"""

from __future__ import annotations

import argparse
import select

from _classic_common import (
    IDLE_POLL_US,
    RX_TX,
    RateReporter,
    add_run_arguments,
    errors_as_messages,
    positive_int,
    run_until_stopped,
    send_all,
    socket_options,
)

from xdppacket import OptQueueCount, XDPMultiQueue


def forward(source: XDPMultiQueue, destination: XDPMultiQueue, batch: int) -> int:
    """Move what ``source`` has now (without waiting) to the same queues of ``destination``."""
    frames, infos = source.read_multi_packets(batch)
    by_queue: dict[int, list[bytes]] = {}
    for frame, info in zip(frames, infos):
        by_queue.setdefault(info.queue_id, []).append(frame)
    sockets = destination.sockets
    for queue, queue_frames in by_queue.items():
        send_all(sockets[queue], queue_frames)
    return len(frames)


def l2fwd(if1: str, if2: str, queues: int, batch: int, mode: str, duration: float | None) -> None:
    # Reads do not wait (poll timeout 0): one poll() over both interfaces waits when both are idle.
    options = (OptQueueCount(queues), *socket_options(mode, poll_timeout_us=0))
    with XDPMultiQueue(if1, *options) as mq1, XDPMultiQueue(if2, *options) as mq2:
        idle = select.poll()
        for mq in (mq1, mq2):
            idle.register(mq.fileno(), select.POLLIN)

        def forward_both_ways() -> bool:
            if not forward(mq1, mq2, batch) + forward(mq2, mq1, batch):
                idle.poll(IDLE_POLL_US // 1000)
            return True

        reporter = RateReporter(lambda: {if1: mq1.get_stats()[0], if2: mq2.get_stats()[0]}, RX_TX)
        print(f"l2fwd between {if1} and {if2} queues 0-{queues - 1} ({mode} mode), Ctrl-C stops", flush=True)
        run_until_stopped(forward_both_ways, reporter, duration)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Copies each frame (no shared UMEM yet). Runs until Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF1", help="first interface")
    parser.add_argument("-j", "--interface2", required=True, metavar="IF2", help="second interface")
    parser.add_argument("--queues", type=positive_int, default=1, metavar="N",
                        help="forward queues 0..N-1 of each interface (default 1)")
    parser.add_argument("--batch", type=positive_int, default=64, metavar="B", help="frames per read (default 64)")
    add_run_arguments(parser)
    args = parser.parse_args()
    with errors_as_messages():
        l2fwd(args.interface, args.interface2, args.queues, args.batch, args.mode, args.duration)


if __name__ == "__main__":
    main()
