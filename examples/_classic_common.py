"""What the classic AF_XDP example programs share: their options, how they stop, their rate lines.

Not an example itself. The programs (rxdrop.py, txonly.py, dump.py, l2fwd_*.py) import it
from this directory, as Python does for a script's own directory.

Output, on stdout (or the stream given), one line per label and second::

    rate q0 rx_pps=1000 tx_pps=1000 drops_ps=0
    rate all rx_pps=1000 tx_pps=1000 drops_ps=0

and once at the end (Ctrl-C, SIGTERM, ``--duration`` or the program's own end)::

    total q0 rx_packets=10 rx_bytes=640 tx_packets=10 tx_bytes=640 rx_dropped=0 rx_ring_full=0
    total all ...

Rates come from the deltas of ``get_stats()``; drops are the kernel's counters of frames it
could not deliver to the socket: ``rx_dropped`` (no free UMEM frame to put it in, or too big for one) plus
``rx_ring_full`` (the rx ring was full).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Protocol, TextIO

from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptIoMode,
    OptPollTimeout,
    OptXDPMode,
    XDPPacket,
    XDPStats,
)

__all__ = [
    "IDLE_POLL_US",
    "READ_BATCH",
    "REPORT_INTERVAL_S",
    "RX",
    "RX_TX",
    "TX",
    "RateReporter",
    "Reporter",
    "add_batch_argument",
    "add_run_arguments",
    "errors_as_messages",
    "positive_int",
    "queue_labels",
    "run_until_stopped",
    "send_all",
    "socket_options",
]

MODES = {"drv": XDP_MODE_DRV, "skb": XDP_MODE_SKB}
REPORT_INTERVAL_S = 1.0
# A read with nothing to do returns after this long, so the rate line comes on time when idle.
IDLE_POLL_US = 100_000
# The most frames one read takes. Each read costs Python a fixed few microseconds whatever
# it returns, so under load a larger batch leaves more CPU for the frames (forwarding on one
# veth queue: peak 245,592 -> 268,746 pps from 64 to 256, while C over libxdp gained nothing);
# a read never waits for a batch to fill, so a light load sees no extra latency.
READ_BATCH = 256

#: Which directions a program's lines show.
RX = ("rx",)
TX = ("tx",)
RX_TX = ("rx", "tx")

#: Labelled counters: one entry per queue (or interface) and usually "all", their sum.
LabelledStats = Mapping[str, XDPStats]


def add_batch_argument(parser: argparse.ArgumentParser) -> None:
    """``--batch``, for the programs that read in batches."""
    parser.add_argument("--batch", type=positive_int, default=READ_BATCH, metavar="B",
                        help=f"most frames per read (default {READ_BATCH})")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mode`` and ``--duration``, which every program has."""
    parser.add_argument("--mode", choices=MODES, default="drv",
                        help="XDP attach mode: drv = native (default), skb = generic (any driver)")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C or SIGTERM)")


@contextlib.contextmanager
def errors_as_messages() -> Iterator[None]:
    """Bad input or a kernel refusal ends the program with the library's message, not a traceback.

    The library's messages name the interface, the queue and the likely fix; exit status 1.
    """
    try:
        yield
    except (OSError, ValueError) as error:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {error}")


def positive_int(text: str) -> int:
    """An argparse type: a number of queues or frames must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def socket_options(mode: str, poll_timeout_us: int = IDLE_POLL_US) -> tuple[object, ...]:
    """Options for a socket of these programs: non-blocking, so they can print rates when idle."""
    return OptXDPMode(MODES[mode]), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(poll_timeout_us)


def queue_labels(stats: list[XDPStats]) -> dict[str, XDPStats]:
    """``XDPMultiQueue.get_stats()`` labelled: ``q<i>`` per queue (when several), then ``all``."""
    total, per_queue = stats[0], stats[1:]
    labelled = {f"q{queue}": queue_stats for queue, queue_stats in enumerate(per_queue)}
    if len(per_queue) == 1:
        labelled.clear()
    labelled["all"] = total
    return labelled


class Reporter(Protocol):
    """What ``run_until_stopped`` tells about progress: between steps, and once at the end."""

    def maybe_report(self) -> None: ...

    def print_totals(self) -> None: ...


class RateReporter:
    """Prints rate lines from ``get_stats`` deltas once a second, and the final totals.

    ``stats`` is called at each report; ``directions`` says which of rx and tx to show.
    Not thread-safe: one loop calls ``maybe_report`` and ``print_totals``.
    """

    def __init__(self, stats: Callable[[], LabelledStats], directions: tuple[str, ...],
                 out: TextIO = sys.stdout) -> None:
        self._stats = stats
        self._directions = directions
        self._out = out
        self._last = dict(stats())
        self._last_time = time.monotonic()

    def maybe_report(self) -> None:
        """Print the rate lines if a second has passed since the last ones."""
        now = time.monotonic()
        elapsed = now - self._last_time
        if elapsed < REPORT_INTERVAL_S:
            return
        current = dict(self._stats())
        for label, stats in current.items():
            delta = stats - self._last.get(label, XDPStats())
            rates = [f"{direction}_pps={getattr(delta, direction + '_packets') / elapsed:.0f}"
                     for direction in self._directions]
            if "rx" in self._directions:
                rates.append(f"drops_ps={kernel_drops(delta) / elapsed:.0f}")
            self._print(f"rate {label} " + " ".join(rates))
        self._last, self._last_time = current, now

    def print_totals(self) -> None:
        for label, stats in self._stats().items():
            counts = [f"{direction}_{unit}={getattr(stats, f'{direction}_{unit}')}"
                      for direction in self._directions for unit in ("packets", "bytes")]
            if "rx" in self._directions:
                counts += [f"rx_dropped={stats.rx_dropped}", f"rx_ring_full={stats.rx_ring_full}"]
            self._print(f"total {label} " + " ".join(counts))

    def _print(self, line: str) -> None:
        self._out.write(line + "\n")  # one write per line: lines of several processes never mix
        self._out.flush()


def send_all(sock: XDPPacket, frames: Sequence[bytes | memoryview]) -> None:
    """Queue every frame on ``sock``'s tx ring, waiting for room as often as needed.

    A non-blocking write queues what fits within its poll timeout; the rest (views not
    sent stay valid) is tried again.
    """
    while frames:
        frames = frames[sock.write_multi_packets(frames):]


def kernel_drops(stats: XDPStats) -> int:
    """Frames the kernel could not put on the socket's rx ring."""
    return stats.rx_dropped + stats.rx_ring_full


def raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: stop the way Ctrl-C does (a blocked library call is interrupted too)."""
    raise KeyboardInterrupt


def run_until_stopped(step: Callable[[], bool], reporter: Reporter, duration: float | None) -> None:
    """Call ``step`` until it returns False, ``duration`` seconds pass, Ctrl-C or SIGTERM.

    Between steps the reporter prints its rate lines; at the end, its totals.
    """
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while (deadline is None or time.monotonic() < deadline) and step():
            reporter.maybe_report()
    except KeyboardInterrupt:
        pass
    reporter.print_totals()
