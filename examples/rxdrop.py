"""rxdrop: receive every frame on queues 0..N-1 of an interface and drop it, counting.

Like the kernel's xdpsock sample in rxdrop mode. Once a second it prints the receive rate
and the kernel's drop counters (frames it could not hand to the socket); at the end
(Ctrl-C, SIGTERM or --duration) the totals per queue.

Usage, as root:
    python examples/rxdrop.py -i IFNAME [--queues N] [--batch B] [--zero-copy]
                              [--mode drv|skb] [--duration S]

--zero-copy reads views into the UMEM (zero_copy_read_multi_packets) instead of copies:
the frames' bytes are never copied into Python objects. The kernel side stays copy mode
where the driver has no AF_XDP zero-copy support (veth, for one).
"""

from __future__ import annotations

import argparse

from _classic_common import (
    RX,
    RateReporter,
    add_batch_argument,
    add_run_arguments,
    errors_as_messages,
    positive_int,
    queue_labels,
    run_until_stopped,
    socket_options,
)

from xdppacket import OptQueueCount, XDPMultiQueue


def rxdrop(ifname: str, queues: int, batch: int, zero_copy: bool, mode: str,
           duration: float | None) -> None:
    with XDPMultiQueue(ifname, OptQueueCount(queues), *socket_options(mode)) as mq:
        read = mq.zero_copy_read_multi_packets if zero_copy else mq.read_multi_packets

        def drop_one_batch() -> bool:
            read(batch)  # the library counts what it read; dropping is not looking at it
            return True

        reporter = RateReporter(lambda: queue_labels(mq.get_stats()), RX)
        print(f"rxdrop on {ifname} queues 0-{queues - 1} ({mode} mode), Ctrl-C stops", flush=True)
        run_until_stopped(drop_one_batch, reporter, duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Runs until Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to receive on")
    parser.add_argument("--queues", type=positive_int, default=1, metavar="N", help="receive on queues 0..N-1 (default 1)")
    add_batch_argument(parser)
    parser.add_argument("--zero-copy", action="store_true",
                        help="read views into the UMEM instead of copies of the frames")
    add_run_arguments(parser)
    args = parser.parse_args()
    with errors_as_messages():
        rxdrop(args.interface, args.queues, args.batch, args.zero_copy, args.mode, args.duration)


if __name__ == "__main__":
    main()
