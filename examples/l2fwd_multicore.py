"""l2fwd_multicore: l2fwd_1link with one process per queue, to use more than one CPU.

Process q owns the socket of queue q and sends every frame arriving there back out of
the same queue with source and destination MAC swapped, in place, as l2fwd_1link does
(writable zero-copy views, no frame copied). Each process sends its counters to this one once a second; this one
prints per-queue and total rates, and at the end (Ctrl-C, SIGTERM or --duration) the
totals per queue.

Usage, as root:
    python examples/l2fwd_multicore.py -i IFNAME [--queues N] [--batch B] [--mode drv|skb] [--duration S]

SIGTERM to this process is passed on to the workers; Ctrl-C in a terminal reaches them all.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import signal
import sys
import time
from types import FrameType

from _classic_common import (
    REPORT_INTERVAL_S,
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
from l2fwd_1link import swap_macs_in_place

from xdppacket import OptBatchTimestamps, OptQueueID, XDPPacket, XDPStats

# What a worker sends: its queue, its counters, and whether they are its last.
StatsMessage = tuple[int, XDPStats, bool]


class StatsSender:
    """A worker's reporter: sends its socket's counters to the parent each second and at the end."""

    def __init__(self, xsk: XDPPacket, results: multiprocessing.Queue[StatsMessage]) -> None:
        self._xsk = xsk
        self._results = results
        self._last_time = time.monotonic()

    def maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last_time >= REPORT_INTERVAL_S:
            self._results.put((self._xsk.queue_id, self._xsk.get_stats(), False))
            self._last_time = now

    def print_totals(self) -> None:
        self._results.put((self._xsk.queue_id, self._xsk.get_stats(), True))


def forward_queue(ifname: str, queue_id: int, batch: int, mode: str, duration: float | None,
                  results: multiprocessing.Queue[StatsMessage]) -> None:
    """Runs in its own process: l2fwd_1link's loop on one queue."""
    with errors_as_messages(), XDPPacket(ifname, OptQueueID(queue_id), OptBatchTimestamps(),
                                                *socket_options(mode)) as xsk:

        def forward_one_batch() -> bool:
            frames, _ = xsk.zero_copy_read_multi_packets(batch, writable=True)
            swap_macs_in_place(frames)
            send_all(xsk, frames)
            return True

        sys.stdout.write(f"queue {queue_id}: forwarding\n")  # one write: lines never mix
        sys.stdout.flush()
        run_until_stopped(forward_one_batch, StatsSender(xsk, results), duration)


class QueueCounters:
    """The latest counters each worker sent, labelled like XDPMultiQueue's (``q<i>``, ``all``)."""

    def __init__(self, queues: int, results: multiprocessing.Queue[StatsMessage]) -> None:
        self._latest = [XDPStats()] * queues
        self._results = results

    def absorb(self, timeout: float) -> None:
        """Take in what the workers sent, waiting up to ``timeout`` seconds for the first message."""
        try:
            message = self._results.get(timeout=timeout)
            while True:
                queue_id, stats, _ = message
                self._latest[queue_id] = stats
                message = self._results.get_nowait()
        except queue.Empty:
            pass

    def labelled(self) -> dict[str, XDPStats]:
        return queue_labels([sum(self._latest, XDPStats()), *self._latest])


def main(ifname: str, queues: int, batch: int, mode: str, duration: float | None) -> int:
    results: multiprocessing.Queue[StatsMessage] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=forward_queue, args=(ifname, queue_id, batch, mode, duration, results))
        for queue_id in range(queues)
    ]
    for worker in workers:
        worker.start()

    def pass_sigterm_on(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, pass_sigterm_on)
    counters = QueueCounters(queues, results)
    reporter = RateReporter(counters.labelled, RX_TX)
    try:
        wait_for_workers(workers, counters, reporter)
    except KeyboardInterrupt:  # Ctrl-C reached the workers too: they are finishing
        wait_for_workers(workers, counters, reporter)
    counters.absorb(timeout=0)  # the last counters of workers that just exited
    reporter.print_totals()
    return 0 if all(worker.exitcode == 0 for worker in workers) else 1


def wait_for_workers(workers: list[multiprocessing.Process], counters: QueueCounters,
                     reporter: RateReporter) -> None:
    while any(worker.is_alive() for worker in workers):
        counters.absorb(timeout=0.1)
        reporter.maybe_report()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Copies each frame (no zero-copy forwarding yet). Runs until Ctrl-C, SIGTERM or --duration.")
    parser.add_argument("-i", "--interface", required=True, metavar="IF", help="interface to forward on")
    parser.add_argument("--queues", type=positive_int, default=1, metavar="N",
                        help="one process for each of queues 0..N-1 (default 1)")
    add_batch_argument(parser)
    add_run_arguments(parser)
    args = parser.parse_args()
    sys.exit(main(args.interface, args.queues, args.batch, args.mode, args.duration))
