"""l2fwd_2link: forward every frame between two interfaces, both ways, unchanged (a two-port wire).

A frame arriving on queue q of IF1 leaves through queue q of IF2, and the other way round.
Once a second it prints each interface's receive and transmit rates and the kernel's drop
counters; at the end (Ctrl-C, SIGTERM or --duration) the totals per interface.

Usage, as root:
    python examples/l2fwd_2link.py -i IF1 -j IF2 [--queues N] [--batch B] [--mode drv|skb] [--duration S]

No frame is copied: the sockets of queue q on both interfaces share one UMEM
(OptSharedUmem), so a zero-copy view read on one is sent in place on the other.
"""

from __future__ import annotations

import argparse
import contextlib
import select

from _classic_common import (
    IDLE_POLL_US,
    RX_TX,
    RateReporter,
    add_batch_argument,
    add_run_arguments,
    errors_as_messages,
    positive_int,
    run_until_stopped,
    send_all,
    socket_options,
)

from xdppacket import OptBatchTimestamps, OptQueueID, OptSharedUmem, XDPPacket, XDPStats


def forward(source: XDPPacket, destination: XDPPacket, batch: int) -> int:
    """Send what ``source`` has now (without waiting) out of ``destination``, in place."""
    frames, _ = source.zero_copy_read_multi_packets(batch)
    send_all(destination, frames)
    return len(frames)


def total(sockets: list[XDPPacket]) -> XDPStats:
    stats = XDPStats()
    for sock in sockets:
        stats = stats + sock.get_stats()
    return stats


def l2fwd(if1: str, if2: str, queues: int, batch: int, mode: str, duration: float | None) -> None:
    # Reads do not wait (poll timeout 0): one poll() over every socket waits when all are idle.
    # OptBatchTimestamps: a forwarder needs no arrival times, so the trailers are not read.
    options = (OptBatchTimestamps(), *socket_options(mode, poll_timeout_us=0))
    with contextlib.ExitStack() as stack:
        pairs = []
        for queue in range(queues):
            first = stack.enter_context(XDPPacket(if1, OptQueueID(queue), *options))
            second = stack.enter_context(XDPPacket(if2, OptQueueID(queue), OptSharedUmem(first), *options))
            pairs.append((first, second))
        idle = select.poll()
        for pair in pairs:
            for sock in pair:
                idle.register(sock.fileno(), select.POLLIN)

        def forward_both_ways() -> bool:
            drained = True
            for first, second in pairs:
                drained = forward(first, second, batch) < batch and drained
                drained = forward(second, first, batch) < batch and drained
            if drained:  # every ring was emptied: wait (poll returns at once if frames came meanwhile)
                idle.poll(IDLE_POLL_US // 1000)
            return True

        reporter = RateReporter(lambda: {if1: total([first for first, _ in pairs]),
                                         if2: total([second for _, second in pairs])}, RX_TX)
        print(f"l2fwd between {if1} and {if2} queues 0-{queues - 1} ({mode} mode), Ctrl-C stops", flush=True)
        run_until_stopped(forward_both_ways, reporter, duration)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Forwards in place over a shared UMEM. Runs until Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF1", help="first interface")
    parser.add_argument("-j", "--interface2", required=True, metavar="IF2", help="second interface")
    parser.add_argument("--queues", type=positive_int, default=1, metavar="N",
                        help="forward queues 0..N-1 of each interface (default 1)")
    add_batch_argument(parser)
    add_run_arguments(parser)
    args = parser.parse_args()
    with errors_as_messages():
        l2fwd(args.interface, args.interface2, args.queues, args.batch, args.mode, args.duration)


if __name__ == "__main__":
    main()
