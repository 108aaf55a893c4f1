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
import select
import struct

from _classic_common import (
    IDLE_POLL_US,
    RX_TX,
    RateReporter,
    add_batch_argument,
    add_run_arguments,
    errors_as_messages,
    positive_int,
    queue_labels,
    run_until_stopped,
    send_all,
    socket_options,
)

from xdppacket import OptBatchTimestamps, OptQueueCount, XDPMultiQueue

# Destination and source MAC address: the first 12 bytes of an Ethernet frame.
_MAC_PAIR = struct.Struct("6s6s")


def swap_macs_in_place(frames: list[memoryview]) -> None:
    """Swap the destination (bytes 0-5) and source (bytes 6-11) MAC addresses inside each frame."""
    unpack, pack = _MAC_PAIR.unpack_from, _MAC_PAIR.pack_into  # the loop runs for every frame
    for frame in frames:
        destination, source = unpack(frame)
        pack(frame, 0, source, destination)


def l2fwd(ifname: str, queues: int, batch: int, mode: str, duration: float | None) -> None:
    # Reads do not wait (poll timeout 0): one poll() over every queue waits when all are idle.
    # OptBatchTimestamps: a forwarder needs no arrival times, so the trailers are not read.
    options = (OptQueueCount(queues), OptBatchTimestamps(), *socket_options(mode, poll_timeout_us=0))
    with XDPMultiQueue(ifname, *options) as mq:
        sockets = mq.sockets
        idle = select.poll()
        idle.register(mq.fileno(), select.POLLIN)

        def forward_one_round() -> bool:
            """Each queue's frames back out of the same queue, MACs swapped in place."""
            drained = True
            for sock in sockets:
                frames, _ = sock.zero_copy_read_multi_packets(batch, writable=True)
                swap_macs_in_place(frames)
                send_all(sock, frames)
                drained = drained and len(frames) < batch
            if drained:  # every ring was emptied: wait (poll returns at once if frames came meanwhile)
                idle.poll(IDLE_POLL_US // 1000)
            return True

        reporter = RateReporter(lambda: queue_labels(mq.get_stats()), RX_TX)
        print(f"l2fwd on {ifname} queues 0-{queues - 1} ({mode} mode), Ctrl-C stops", flush=True)
        run_until_stopped(forward_one_round, reporter, duration)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Forwards in place, without copying frames. Runs until Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to forward on")
    parser.add_argument("--queues", type=positive_int, default=1, metavar="N", help="forward on queues 0..N-1 (default 1)")
    add_batch_argument(parser)
    add_run_arguments(parser)
    args = parser.parse_args()
    with errors_as_messages():
        l2fwd(args.interface, args.queues, args.batch, args.mode, args.duration)


if __name__ == "__main__":
    main()
