"""l2fwd_1link: send every frame back out of the queue it came in on, source and destination MAC swapped.

Like the kernel's xdpsock sample in l2fwd mode, on queues 0..N-1 of one interface. Once a
second it prints the receive and transmit rates and the kernel's drop counters; at the end
(Ctrl-C, SIGTERM or --duration) the totals per queue.

Usage, as root:
    python examples/l2fwd_1link.py -i IFNAME [--queues N] [--batch B] [--mode drv|skb] [--duration S]

No frame is copied: each is read as a writable zero-copy view, its MAC addresses are
swapped inside the UMEM, and the view written back is sent in place (its frame goes from
the rx ring to the tx ring, and back to the fill ring once sent).
"""

from __future__ import annotations

import argparse

from _classic_common import (
    RX_TX,
    RateReporter,
    add_run_arguments,
    errors_as_messages,
    positive_int,
    queue_labels,
    run_until_stopped,
    send_all,
    socket_options,
)

from xdppacket import CaptureInfo, OptBatchTimestamps, OptQueueCount, XDPMultiQueue, XDPPacket


def swap_macs_in_place(frame: memoryview) -> None:
    """Swap the destination (bytes 0-5) and source (bytes 6-11) MAC addresses inside ``frame``."""
    addresses = frame[:12].tobytes()
    frame[:12] = addresses[6:] + addresses[:6]


def forward_back(sockets: list[XDPPacket], frames: list[memoryview], infos: list[CaptureInfo]) -> None:
    """Send each frame, MACs swapped, out of the queue it arrived on (``sockets[i]``: queue i)."""
    by_queue: dict[int, list[memoryview]] = {}
    for frame, info in zip(frames, infos):
        swap_macs_in_place(frame)
        by_queue.setdefault(info.queue_id, []).append(frame)
    for queue, swapped in by_queue.items():
        send_all(sockets[queue], swapped)


def l2fwd(ifname: str, queues: int, batch: int, mode: str, duration: float | None) -> None:
    # OptBatchTimestamps: a forwarder needs no arrival times, so the trailers are not read.
    with XDPMultiQueue(ifname, OptQueueCount(queues), OptBatchTimestamps(), *socket_options(mode)) as mq:
        sockets = mq.sockets

        def forward_one_batch() -> bool:
            frames, infos = mq.zero_copy_read_multi_packets(batch, writable=True)
            forward_back(sockets, frames, infos)
            return True

        reporter = RateReporter(lambda: queue_labels(mq.get_stats()), RX_TX)
        print(f"l2fwd on {ifname} queues 0-{queues - 1} ({mode} mode), Ctrl-C stops", flush=True)
        run_until_stopped(forward_one_batch, reporter, duration)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Forwards in place, without copying frames. Runs until Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to forward on")
    parser.add_argument("--queues", type=positive_int, default=1, metavar="N", help="forward on queues 0..N-1 (default 1)")
    parser.add_argument("--batch", type=positive_int, default=64, metavar="B", help="frames per read (default 64)")
    add_run_arguments(parser)
    args = parser.parse_args()
    with errors_as_messages():
        l2fwd(args.interface, args.queues, args.batch, args.mode, args.duration)


if __name__ == "__main__":
    main()
