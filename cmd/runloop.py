"""The measuring harness shared by ``cmd/xdp.py`` and ``cmd/afpacket.py``.

A scenario is a tight ``while True`` loop around one library call that only adds what the
call returned to a ``Counter``. Nothing in the loop checks the clock or a flag: the run
ends when a signal handler raises ``StopRun`` into it (an interval timer for the duration
or packet budget, SIGINT or SIGTERM from a user or ``cmd/bench.py``). The same timer
prints a line per second from cumulative ``Sample``s, so the loop pays nothing for them.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "BENCH_ETHERTYPE",
    "Counter",
    "RunSummary",
    "Sample",
    "StopRun",
    "add_run_arguments",
    "bench_frame",
    "print_summary",
    "run_measured",
]

#: IEEE 802 local experimental ethertype: nothing on the machine answers such frames.
BENCH_ETHERTYPE = 0x88B5
_TICK_SECONDS = 0.05  # how often the timer looks at the deadline and the packet budget


class StopRun(Exception):
    """Raised into the measured loop by a signal handler to end the run."""


class Counter:
    """What the loop counted: the calls' results, added per call (per batch when batched)."""

    __slots__ = ("rx_packets", "tx_packets", "rx_bytes")

    def __init__(self) -> None:
        self.rx_packets = 0
        self.tx_packets = 0
        self.rx_bytes = 0  # only AF_PACKET's recv_into hands back a size for free


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one instant; per-second figures are differences of two.

    A tool's sampler makes one from its library's counters or from the loop's ``Counter``.
    """

    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    drops: dict[str, int]
    """Kernel drop counters by name (XDP_STATISTICS, PACKET_STATISTICS)."""


@dataclass
class RunSummary:
    """The result of one run, printed as JSON with ``--json``."""

    tool: str
    scenario: str
    options: dict[str, Any]
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    system_cpu_seconds: float = 0.0
    """The part of ``cpu_seconds`` spent in the kernel (system calls, the softirqs they run)."""
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_pps: float = 0.0
    tx_pps: float = 0.0
    drops: dict[str, int] = field(default_factory=dict)
    rss_kib_start: int = 0
    rss_kib_end: int = 0
    rss_kib_max: int = 0
    per_second: list[dict[str, Any]] = field(default_factory=list)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every scenario tool takes for how long to run and how to report."""
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds to run; 0 runs until SIGINT/SIGTERM (default 10)")
    parser.add_argument("--count", type=int, default=0,
                        help="stop within a tick (50 ms) of this many packets counted (0: no limit)")
    parser.add_argument("--frame-size", type=int, default=64,
                        help="bytes per sent frame, no FCS (default 64)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as JSON on stdout; per-second lines go to stderr")
    parser.add_argument("--quiet", action="store_true", help="no per-second lines")


def bench_frame(size: int, src_mac: bytes) -> bytes:
    """A broadcast frame of ``size`` bytes with the experimental ethertype and zero payload."""
    if not 60 <= size <= 1514:
        raise ValueError(f"--frame-size must be 60..1514, got {size}")
    header = b"\xff" * 6 + src_mac + BENCH_ETHERTYPE.to_bytes(2, "big")
    return header + bytes(size - len(header))


def run_measured(loop: Callable[[Counter], None], sample: Callable[[Counter], Sample],
                 summary: RunSummary, args: argparse.Namespace) -> RunSummary:
    """Run ``loop`` until the duration, packet budget or a signal ends it; fill ``summary``."""
    out = sys.stderr if args.json else sys.stdout
    counter = Counter()
    clock = _RunClock(args.duration, args.count, counter, sample, summary,
                      None if args.quiet else out)
    _print(out, f"ready: {summary.tool} {summary.scenario} {_describe(summary.options)}")
    clock.start()
    try:
        loop(counter)
    except StopRun:
        pass
    finally:
        clock.stop()
    last = sample(counter)
    summary.seconds = clock.elapsed()
    user, system = _cpu_times()
    summary.cpu_seconds = user + system - sum(clock.cpu_start)
    summary.system_cpu_seconds = system - clock.cpu_start[1]
    summary.rx_packets = counter.rx_packets
    summary.tx_packets = counter.tx_packets
    summary.rx_bytes = last.rx_bytes - clock.first.rx_bytes
    summary.tx_bytes = last.tx_bytes - clock.first.tx_bytes
    summary.rx_pps = counter.rx_packets / summary.seconds
    summary.tx_pps = counter.tx_packets / summary.seconds
    summary.drops = {name: value - clock.first.drops[name] for name, value in last.drops.items()}
    summary.rss_kib_end = rss_kib()
    summary.rss_kib_max = max([summary.rss_kib_end, summary.rss_kib_start,
                               *(line["rss_kib"] for line in summary.per_second)])
    return summary


def print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(summary)))
        return
    print(f"done: {summary.scenario} for {summary.seconds:.2f} s, "
          f"CPU {summary.cpu_seconds / summary.seconds:.0%}")
    if summary.rx_packets:
        print(f"  rx {summary.rx_packets:,} packets, {summary.rx_pps:,.0f} pps, "
              f"{summary.rx_bytes * 8 / summary.seconds / 1e6:,.1f} Mbit/s")
    if summary.tx_packets:
        print(f"  tx {summary.tx_packets:,} packets, {summary.tx_pps:,.0f} pps, "
              f"{summary.tx_bytes * 8 / summary.seconds / 1e6:,.1f} Mbit/s")
    print(f"  kernel drops: {_describe(summary.drops)}")
    print(f"  RSS: {summary.rss_kib_start:,} KiB at start, {summary.rss_kib_end:,} KiB at the end, "
          f"{summary.rss_kib_max:,} KiB at most")


def rss_kib() -> int:
    """This process's resident set size now (not the peak ``getrusage`` gives)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError("no VmRSS in /proc/self/status")


def _cpu_times() -> tuple[float, float]:
    """This process's user and system CPU seconds so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _describe(values: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in values.items())


def _print(out: Any, line: str) -> None:
    print(line, file=out, flush=True)


class _RunClock:
    """The interval timer and signal handlers that report each second and end the run."""

    def __init__(self, duration: float, max_packets: int, counter: Counter,
                 sample: Callable[[Counter], Sample], summary: RunSummary, out: Any) -> None:
        self._duration = duration
        self._max_packets = max_packets
        self._counter = counter
        self._sample = sample
        self._summary = summary
        self._out = out
        self._stopping = False
        summary.rss_kib_start = rss_kib()
        self.cpu_start = _cpu_times()
        self.first = self._previous = sample(counter)
        self._start = self._previous_time = self._end = time.monotonic()

    def start(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGALRM, self._on_tick)
        signal.setitimer(signal.ITIMER_REAL, _TICK_SECONDS, _TICK_SECONDS)

    def stop(self) -> None:
        self._stopping = True
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._end = time.monotonic()

    def elapsed(self) -> float:
        return self._end - self._start

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._raise_stop()

    def _raise_stop(self) -> None:
        if not self._stopping:  # a second signal must not break the summary being written
            self._stopping = True
            raise StopRun

    def _on_tick(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if now - self._previous_time >= 1.0:
            self._report(now)
        counted = self._counter.rx_packets + self._counter.tx_packets
        if (self._duration and now - self._start >= self._duration) or (
                self._max_packets and counted >= self._max_packets):
            self._raise_stop()

    def _report(self, now: float) -> None:
        current = self._sample(self._counter)
        seconds = now - self._previous_time
        line = {
            "t": round(now - self._start, 3),
            "rx_pps": round((current.rx_packets - self._previous.rx_packets) / seconds),
            "tx_pps": round((current.tx_packets - self._previous.tx_packets) / seconds),
            "rx_mbps": round((current.rx_bytes - self._previous.rx_bytes) * 8 / seconds / 1e6, 1),
            "tx_mbps": round((current.tx_bytes - self._previous.tx_bytes) * 8 / seconds / 1e6, 1),
            "drops": {name: value - self._previous.drops[name] for name, value in current.drops.items()},
            "rss_kib": rss_kib(),
        }
        self._summary.per_second.append(line)
        self._previous, self._previous_time = current, now
        if self._out is not None:
            _print(self._out, _format_line(line))


def _format_line(line: dict[str, Any]) -> str:
    parts = [f"{line['t']:6.1f}s"]
    for direction in ("rx", "tx"):
        if line[f"{direction}_pps"]:
            parts.append(f"{direction} {line[f'{direction}_pps']:>10,} pps "
                         f"{line[f'{direction}_mbps']:>8,.1f} Mbit/s")
    parts.append(f"drops {_describe(line['drops'])}")
    parts.append(f"rss {line['rss_kib']:,} KiB")
    return "  ".join(parts)
