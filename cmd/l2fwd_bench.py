"""Forwarding: the l2fwd examples against a C l2fwd on libxdp and a Python AF_PACKET one.

Three forwarders, each in two topologies, in the same run:

- ``xdppacket``: ``examples/l2fwd_1link.py`` and ``examples/l2fwd_2link.py``, run as they are;
- ``c``: ``cmd/l2fwd_c/xsk_l2fwd.c`` (libxdp's ``<xdp/xsk.h>``, copy mode, need_wakeup,
  native XDP; built by ``make l2fwd-c``): what the same work costs in C;

both read at most ``--batch`` frames at a time (default 256, the examples' own default;
the C forwarder's own default is 64, libxdp's xdpsock's, which forwarded no faster here);
- ``afpacket``: ``cmd/afpacket_l2fwd.py``, raw ``AF_PACKET`` sockets, ``recv_into`` and
  ``send`` per frame: what a Python program does without AF_XDP.

Topology, in a private network namespace (``cmd/benchnet.py``), all veth, one queue:

- 1link: the generator sends out of ``l2gen``, so frames arrive on ``l2fwa``, the
  forwarder's interface; the forwarder sends them back out of ``l2fwa`` and they arrive
  on ``l2gen``, where they are counted.
- 2link: the same way in on ``l2fwa``; the forwarder sends them out of ``l2fwb`` and they
  arrive on ``l2sink``, where they are counted.

The count is the far end's kernel rx counter (``/proc/net/dev``), which an XDP program
there (``XDP_DROP``) keeps cheap: the network stack never sees the forwarded frames. The
forwarders' own counters are not used. Before any forwarder runs, a control run with none
checks that nothing reaches the counting ends on its own.

The load: a paced live-frames generator (``cmd/pacedgen.py``) offers 64-byte frames of a
local-experiment ethertype at each rate step, evenly spaced; the rate steps up. For each
forwarder and rate the run records the frames the rate asked for, those sent, those
counted at the far end, the forwarder process's CPU time and the softirq time of all CPUs.
A forwarder is started once per round and topology and runs every step; the forwarders'
order alternates between rounds; the tables quote medians over the rounds.

What the figures show, and what they do not (read before quoting one):

- Forwarded rate and loss: loss is 1 - frames counted at the far end / frames the rate
  asked for. A step is sustained when its median loss is under 0.1%.
- veth moves each frame by running the receiving end's kernel work on the sending CPU:
  the forwarder's receive side (its XDP program and the copy into the UMEM; for
  AF_PACKET the skb, the stack and the socket queue) runs on the generator's CPU, and
  the far end's receive (its XDP_DROP) runs on the forwarder's CPU. A receive path too
  slow for the rate therefore slows the generator rather than dropping frames ("not sent"
  counts those, and they count as lost). A real NIC would spread this work differently.
- Copy mode only (veth has no zero-copy): every AF_XDP transmit is a ``sendto`` in which
  the kernel builds an skb and copies the frame; this bounds the C forwarder too.
- Scheduling: the forwarders are pinned to one CPU, the generator to the other, both
  SCHED_FIFO (priority 1) by default, so that other work on a shared machine neither
  takes the forwarder's CPU (its rings would overflow meanwhile) nor stalls the pacing.
  The kernel still gives ordinary tasks up to 50 ms of each second a real-time task
  keeps a CPU busy; each step's load lasts at most 0.9 s, then the forwarder drains and
  idles. "waited" shows how long the forwarder was still runnable without running.
- Below its limit a forwarder sleeps in ``poll`` and is woken for nearly every frame, so
  its CPU per frame at low rates is mostly wake-ups; near its limit it runs in batches.
- CPU per forwarded frame: the forwarder process (user and kernel, from
  ``/proc/PID/schedstat``: its sends' kernel work included) and the softirq time of all
  CPUs (both ends' receive work; tick-sampled, so noisy at low rates), over the frames
  counted. Not counted: the generator's own work.
- The Python forwarder's XDP program also writes an arrival time into each frame's
  metadata (the library's program); the C one only redirects.

Usage: ``python cmd/l2fwd_bench.py [--quick] [--rounds N] [--steps PPS ...] [--json]``
(root, 2 CPUs; ``make l2fwd-c`` first). ``make bench`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import xdppacket
from xdppacket._bpf import BPF_PROG_TYPE_XDP, BPF_XDP, link_create, prog_load
from xdppacket._program import XDP_FLAGS_DRV_MODE

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchmain import BenchError, bench_run, idle_share
    from cmd.benchnet import VethPair, link_counters
    from cmd.capture_bench import STEP_FRAME, ProcessTimes, format_table, softirq_seconds
    from cmd.pacedgen import REALTIME_MAX_SECONDS, REALTIME_PRIORITY, PacedGenerator
else:
    from benchmain import BenchError, bench_run, idle_share
    from benchnet import VethPair, link_counters
    from capture_bench import STEP_FRAME, ProcessTimes, format_table, softirq_seconds
    from pacedgen import REALTIME_MAX_SECONDS, REALTIME_PRIORITY, PacedGenerator

REPO = Path(__file__).resolve().parents[1]
C_L2FWD = REPO / "build" / "xsk_l2fwd"
FRAME_SIZE = len(STEP_FRAME)
LOSSLESS = 0.001
"""A step is sustained when under this share of the frames asked for is missing at the far end."""
STEPS = (50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000, 600_000, 800_000, 1_000_000)
QUICK_STEPS = (100_000, 200_000, 400_000, 800_000)
DEFAULT_ROUNDS = 3
DEFAULT_BATCH = 256  # the examples' default (READ_BATCH in examples/_classic_common.py)
MAX_BATCH = 1024  # the rings' size in both forwarders
GRACE_SECONDS = 0.3
"""After the load: frames still in the forwarder's rings get out before the count."""
BUSY_RETRIES = 5  # starts of a forwarder that found the queue still bound by the one before
READY_TIMEOUT = 30.0
PROBE_RATE, PROBE_SECONDS = 20_000, 0.05
TARGET_SHARE = 0.5
"""The issue's target: Python (xdppacket) forwards at least this share of C's rate (both its
lossless rate and its peak forwarded rate)."""

FORWARDERS = ("xdppacket", "afpacket", "c")
LABELS = {"xdppacket": "Python xdppacket", "afpacket": "Python AF_PACKET", "c": "C libxdp", "none": "no forwarder"}
LINKS = ("1link", "2link")
GEN_IF, FWD_A, FWD_B, SINK_IF = "l2gen", "l2fwa", "l2fwb", "l2sink"
COUNTING_IF = {"1link": GEN_IF, "2link": SINK_IF}
_XDP_DROP = 1
_XDP_DROP_PROGRAM = bytes([0xB7, 0x00, 0, 0, _XDP_DROP, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])  # r0 = 1; exit


def forwarder_command(forwarder: str, link: str, batch: int) -> list[str]:
    """The command line of ``forwarder`` in ``link`` topology: the same interface for all,
    and for the AF_XDP forwarders the same most frames per read (AF_PACKET reads one)."""
    interfaces = ["-i", FWD_A] if link == "1link" else ["-i", FWD_A, "-j", FWD_B]
    if forwarder == "xdppacket":
        return [sys.executable, str(REPO / "examples" / f"l2fwd_{link}.py"), *interfaces, "--mode", "drv",
                "--batch", str(batch)]
    if forwarder == "afpacket":
        return [sys.executable, str(REPO / "cmd" / "afpacket_l2fwd.py"), *interfaces]
    if not os.access(C_L2FWD, os.X_OK):
        raise BenchError(f"{C_L2FWD} is missing: build it with `make l2fwd-c` (gcc, libxdp-dev, libbpf-dev)")
    return [str(C_L2FWD), *interfaces, "--mode", "drv", "--batch", str(batch)]


class Forwarder:
    """One forwarder process, pinned to ``cpu``, its output in a temporary file; stopped
    with SIGTERM as a user's ``kill`` would."""

    def __init__(self, forwarder: str, link: str, cpu: int, batch: int) -> None:
        self.forwarder = forwarder
        command = forwarder_command(forwarder, link, batch)

        # Lives as long as the process: closed by stop() or kill().
        self._output: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
            )
        except BaseException:
            self._output.close()
            raise

    def output(self) -> str:
        self._output.seek(0)
        return self._output.read().strip()

    def make_realtime(self) -> None:
        """SCHED_FIFO from now on. Only once it forwards: while it starts, the kernel's
        deferred teardown of the previous forwarder's socket (a worker on this CPU) must
        run, or the queue is still bound (EBUSY). The forwarders are single-threaded."""
        os.sched_setscheduler(self.process.pid, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{LABELS[self.forwarder]} ended (status {self.process.returncode}): "
                             f"{self.output()[-1000:]}")

    def times(self) -> ProcessTimes:
        return ProcessTimes.of(self.process.pid)

    def stop(self) -> list[str]:
        """SIGTERM, and a clean exit expected: a forwarder that failed fails the bench.
        Returns the forwarder's own closing ``total`` lines (its view, for the record)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"{LABELS[self.forwarder]} did not stop within 30 s of SIGTERM") from None
        if self.process.returncode != 0:
            raise BenchError(f"{LABELS[self.forwarder]} failed (status {self.process.returncode}): "
                             f"{self.output()[-1000:]}")
        totals = [line for line in self.output().splitlines() if line.startswith("total ")]
        self._output.close()
        return totals

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._output.close()


# --------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class Run:
    """One forwarder in one topology at one rate in one round."""

    forwarder: str
    link: str
    round: int
    rate: int
    asked: int
    """Frames the rate asked for over the load (sent, and those the generator fell behind on)."""
    sent: int
    seconds: float
    forwarded: int
    """Frames counted at the far end."""
    forwarder_s: float
    """CPU time of the forwarder process, user and kernel."""
    user_ticks: int
    kernel_ticks: int
    """The split of ``forwarder_s`` in 1/100 s ticks (/proc/PID/stat): coarse, for the user share."""
    waited_s: float
    """Time the forwarder was runnable but waited for its CPU (other work on the machine)."""
    softirq_s: float

    @property
    def loss(self) -> float:
        return max(0.0, 1 - self.forwarded / self.asked) if self.asked else 0.0

    @property
    def user_share(self) -> float | None:
        """The user-space share of the forwarder's CPU time (None: too short to tell)."""
        ticks = self.user_ticks + self.kernel_ticks
        return self.user_ticks / ticks if ticks else None

    @property
    def forwarded_pps(self) -> float:
        return self.forwarded / self.seconds if self.seconds else 0.0

    @property
    def offered_pps(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def ns_per_frame(self, seconds: float) -> float:
        return seconds / self.forwarded * 1e9 if self.forwarded else float("nan")


_NO_PROCESS = ProcessTimes(0.0, 0.0, 0, 0)


class Testbed:
    """The veth pairs, the XDP_DROP programs on the counting ends, and the generator.

    All exist until ``close()``, or the end of a ``with`` block on the testbed.
    """

    def __init__(self, generator_cpu: int, forwarder_cpu: int, duration: float, realtime: bool) -> None:
        self.forwarder_cpu = forwarder_cpu
        self.duration = duration
        self.realtime = realtime
        self._fds: list[int] = []
        self.pairs = [VethPair.create(FWD_A, GEN_IF, 1), VethPair.create(FWD_B, SINK_IF, 1)]
        try:
            for ifname in COUNTING_IF.values():
                self._drop_at(ifname)
            self.generator = PacedGenerator(GEN_IF, STEP_FRAME, cpu=generator_cpu, realtime=realtime)
        except BaseException:
            self.close()
            raise

    def _drop_at(self, ifname: str) -> None:
        """Frames arriving on ``ifname`` are counted (rx) and dropped before the stack."""
        prog_fd = prog_load(BPF_PROG_TYPE_XDP, _XDP_DROP_PROGRAM, "GPL", "l2fwd_sink")
        self._fds.append(prog_fd)
        self._fds.append(link_create(prog_fd, socket.if_nametoindex(ifname), BPF_XDP, XDP_FLAGS_DRV_MODE))

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        generator = getattr(self, "generator", None)
        if generator is not None:
            generator.close()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        for pair in self.pairs:
            pair.delete()

    def counted(self, link: str) -> int:
        return link_counters(COUNTING_IF[link])["rx_packets"]

    def wait_until_forwarding(self, forwarder: Forwarder, link: str) -> None:
        """Probe with a few frames until some come back: the forwarder is ready then,
        whatever it prints. The probe's frames are over before the steps count."""
        deadline = time.monotonic() + READY_TIMEOUT
        before = self.counted(link)
        while self.counted(link) == before:
            forwarder.check_running()
            if time.monotonic() > deadline:
                raise BenchError(f"{LABELS[forwarder.forwarder]} forwarded nothing within {READY_TIMEOUT:g} s: "
                                 f"{forwarder.output()[-1000:]}")
            self.generator.send(PROBE_RATE, PROBE_SECONDS)
            time.sleep(0.05)
        time.sleep(GRACE_SECONDS)

    def run(self, forwarder: Forwarder | None, link: str, round_number: int, rate: int) -> Run:
        before = self.counted(link)
        times_before = forwarder.times() if forwarder else None
        softirq_before = softirq_seconds()
        result = self.generator.send(rate, self.duration)
        time.sleep(GRACE_SECONDS)
        forwarded = self.counted(link) - before
        softirq = softirq_seconds() - softirq_before
        times = _NO_PROCESS
        if forwarder is not None and times_before is not None:
            forwarder.check_running()
            times = forwarder.times() - times_before
        return Run(forwarder=forwarder.forwarder if forwarder else "none", link=link, round=round_number,
                   rate=rate, asked=result.asked, sent=result.sent, seconds=result.seconds,
                   forwarded=forwarded, forwarder_s=times.ran_s, user_ticks=times.user_ticks,
                   kernel_ticks=times.kernel_ticks, waited_s=times.waited_s, softirq_s=softirq)


@dataclass(frozen=True)
class ForwarderTotals:
    """A forwarder's own closing lines after one round's steps (probe frames included)."""

    forwarder: str
    link: str
    round: int
    totals: list[str]


def run_all(testbed: Testbed, args: argparse.Namespace,
            log: Any) -> tuple[list[Run], list[Run], list[ForwarderTotals]]:
    """The control runs, then every round: per topology, each forwarder (in alternating
    order) started once and run through every step."""
    controls = [testbed.run(None, link, 0, min(args.steps)) for link in args.links]
    for run in controls:
        log(f"control {run.link}: no forwarder, {run.sent:,} frames sent, {run.forwarded:,} counted at the far end")
    runs: list[Run] = []
    totals: list[ForwarderTotals] = []
    for round_number in range(1, args.rounds + 1):
        order = args.forwarders if round_number % 2 else args.forwarders[::-1]
        for link in args.links:
            for name in order:
                forwarder = start_forwarder(testbed, name, link, args.batch, log)
                try:
                    if testbed.realtime:
                        forwarder.make_realtime()
                    for rate in args.steps:
                        run = testbed.run(forwarder, link, round_number, rate)
                        runs.append(run)
                        log(f"round {round_number}/{args.rounds}  {link}  {LABELS[name]:<16}  rate {rate:>9,}  "
                            f"asked {run.asked:>9,}  sent {run.sent:>9,}  forwarded {run.forwarded:>9,}  "
                            f"loss {run.loss:7.2%}")
                    totals.append(ForwarderTotals(name, link, round_number, forwarder.stop()))
                except BaseException:
                    forwarder.kill()
                    raise
    return controls, runs, totals


def start_forwarder(testbed: Testbed, name: str, link: str, batch: int, log: Callable[[str], None]) -> Forwarder:
    """Start ``name`` in ``link`` and wait until it forwards.

    The kernel tears the previous forwarder's socket down in a deferred worker; until that
    has run, binding the queue fails with EBUSY (seen when other work kept the CPU busy).
    Such a start is retried, a little later each time; any other failure is the bench's.
    """
    for attempt in range(1, BUSY_RETRIES + 1):
        forwarder = Forwarder(name, link, testbed.forwarder_cpu, batch)
        try:
            testbed.wait_until_forwarding(forwarder, link)
            return forwarder
        except BenchError:
            busy = forwarder.process.poll() is not None and "busy" in forwarder.output().lower()
            forwarder.kill()
            if not busy or attempt == BUSY_RETRIES:
                raise
            log(f"{LABELS[name]} found the queue still bound (EBUSY); retrying ({attempt}/{BUSY_RETRIES})")
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class StepRow:
    """Medians of one forwarder in one topology at one rate over the rounds."""

    forwarder: str
    link: str
    rate: int
    rounds: int
    offered_pps: float
    shortfall: float
    forwarded_pps: float
    loss: float
    forwarder_ns: float
    user_share: float | None
    """Of ``forwarder_ns``, the share in user space (median of the rounds that could tell)."""
    softirq_ns: float
    waited: float

    @property
    def sustained(self) -> bool:
        return self.loss < LOSSLESS


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return median(known) if known else None


def step_rows(runs: Sequence[Run]) -> list[StepRow]:
    rows = []
    for link in LINKS:
        for forwarder in FORWARDERS:
            for rate in sorted({run.rate for run in runs if run.link == link and run.forwarder == forwarder}):
                mine = [run for run in runs if (run.link, run.forwarder, run.rate) == (link, forwarder, rate)]
                rows.append(StepRow(
                    forwarder=forwarder, link=link, rate=rate, rounds=len(mine),
                    offered_pps=median(run.offered_pps for run in mine),
                    shortfall=median(1 - run.sent / run.asked for run in mine),
                    forwarded_pps=median(run.forwarded_pps for run in mine),
                    loss=median(run.loss for run in mine),
                    forwarder_ns=median(run.ns_per_frame(run.forwarder_s) for run in mine),
                    user_share=_median_or_none([run.user_share for run in mine]),
                    softirq_ns=median(run.ns_per_frame(run.softirq_s) for run in mine),
                    waited=median(run.waited_s / run.seconds for run in mine),
                ))
    return rows


def verdict(rows: Sequence[StepRow]) -> dict[str, Any]:
    """Per topology: each forwarder's lossless rate (the highest step sustained) and peak
    forwarded rate (the best median over the steps), the ratios, and the CPU per frame at
    the highest step all three sustain."""
    result: dict[str, Any] = {}
    for link in LINKS:
        mine = [row for row in rows if row.link == link]
        if not mine:
            continue
        ran = [name for name in FORWARDERS if any(row.forwarder == name for row in mine)]
        lossless = {name: max((row.rate for row in mine if row.forwarder == name and row.sustained), default=None)
                    for name in ran}
        peak_rows = {name: max((row for row in mine if row.forwarder == name), key=lambda row: row.forwarded_pps)
                     for name in ran}
        peak = {name: row.forwarded_pps for name, row in peak_rows.items()}
        entry: dict[str, Any] = {"lossless_pps": lossless, "peak_pps": peak}
        for key, top, bottom in (("xdppacket_over_c", "xdppacket", "c"),
                                 ("xdppacket_over_afpacket", "xdppacket", "afpacket")):
            entry[key] = {"lossless": _ratio(lossless.get(top), lossless.get(bottom)),
                          "peak": _ratio(peak.get(top), peak.get(bottom))}
        sustained = [rate for rate in lossless.values() if rate is not None]
        common = min(sustained) if len(sustained) == len(FORWARDERS) else None
        entry["common_rate"] = common
        entry["cpu_ns_per_frame"] = {row.forwarder: row.forwarder_ns + row.softirq_ns
                                     for row in mine if row.rate == common}
        # At its peak a forwarder is busy: its CPU per frame is the cost of the work itself.
        entry["cpu_ns_per_frame_at_peak"] = {name: {"forwarder": row.forwarder_ns, "softirq": row.softirq_ns}
                                             for name, row in peak_rows.items()}
        # Judged on both rates: the lossless one moves in steps (one step's loss just over
        # the line halves it), the peak one does not.
        ratios = [entry["xdppacket_over_c"][kind] for kind in ("lossless", "peak")]
        entry["target"] = ("UNDECIDED" if None in ratios
                           else "PASS" if min(ratios) >= TARGET_SHARE else "FAIL")
        result[link] = entry
    return result


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def steps_table(rows: Sequence[StepRow]) -> str:
    header = ("topology", "forwarder", "rate pps", "offered pps", "not sent", "forwarded pps", "loss",
              "fwd ns/f", "user", "softirq ns/f", "waited")
    cells = [(row.link, LABELS[row.forwarder], f"{row.rate:,}", f"{row.offered_pps:,.0f}", f"{row.shortfall:.1%}",
              f"{row.forwarded_pps:,.0f}", f"{row.loss:.2%}", f"{row.forwarder_ns:,.0f}",
              "-" if row.user_share is None else f"{row.user_share:.0%}", f"{row.softirq_ns:,.0f}",
              f"{row.waited:.0%}") for row in rows]
    return format_table(header, cells, left=2)


def verdict_lines(result: dict[str, Any], top_rate: int) -> list[str]:
    lines = []
    for link, entry in result.items():
        lines.append(f"{link}:")
        for name, peak in entry["peak_pps"].items():
            rate = entry["lossless_pps"][name]
            text = "none of the steps" if rate is None else f"{rate:,} pps"
            bound = " (the top step: a lower bound)" if rate == top_rate else ""
            lines.append(f"  {LABELS[name]:<16}  lossless (< {LOSSLESS:.1%} loss) {text}{bound}; "
                         f"peak forwarded {peak:,.0f} pps")
        for key, text in (("xdppacket_over_c", "Python xdppacket / C libxdp"),
                          ("xdppacket_over_afpacket", "Python xdppacket / Python AF_PACKET")):
            ratios = entry[key]
            shown = [f"{kind} {ratios[kind]:.2f}x" for kind in ("lossless", "peak") if ratios[kind] is not None]
            if shown:
                lines.append(f"  {text}: {', '.join(shown)}")
        costs = ", ".join(f"{LABELS[name]} {ns['forwarder']:,.0f} + {ns['softirq']:,.0f} ns"
                          for name, ns in entry["cpu_ns_per_frame_at_peak"].items())
        lines.append(f"  CPU per forwarded frame at each one's peak (forwarder + softirq): {costs}")
        if entry["cpu_ns_per_frame"]:
            costs = ", ".join(f"{LABELS[name]} {ns:,.0f} ns" for name, ns in entry["cpu_ns_per_frame"].items())
            lines.append(f"  CPU per forwarded frame at {entry['common_rate']:,} pps (all sustain it; forwarder "
                         f"+ softirq; mostly wake-ups): {costs}")
        lines.append(f"  {entry['target']:<9} target: Python xdppacket's lossless and peak rates >= {TARGET_SHARE:.0%} "
                     f"of C's")
    return lines


# --------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("--duration", type=float, default=REALTIME_MAX_SECONDS,
                        help=f"seconds of load per step (default and, unless --no-realtime, most "
                             f"{REALTIME_MAX_SECONDS:g})")
    parser.add_argument("--steps", type=int, nargs="+", metavar="PPS",
                        help=f"offered rates (default {' '.join(map(str, STEPS))})")
    parser.add_argument("--forwarders", nargs="+", choices=FORWARDERS, default=list(FORWARDERS))
    parser.add_argument("--links", nargs="+", choices=LINKS, default=list(LINKS))
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N",
                        help=f"most frames per read, for both AF_XDP forwarders (default {DEFAULT_BATCH}, at "
                             f"most {MAX_BATCH})")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="run the forwarders and the generator as ordinary tasks (by default "
                             "SCHED_FIFO, priority 1)")
    parser.add_argument("--quick", action="store_true",
                        help=f"about a minute: 1 round at {' '.join(map(str, QUICK_STEPS))} pps")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON document on stdout (progress on stderr)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="also write the JSON document to DIR/l2fwd-bench-<time>.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.steps = args.steps or list(QUICK_STEPS)
    args.steps = sorted(set(args.steps or STEPS))
    args.forwarders = [name for name in FORWARDERS if name in args.forwarders]
    args.links = [link for link in LINKS if link in args.links]
    if args.rounds < 1 or args.duration <= 0 or min(args.steps) < 1:
        parser.error("--rounds, --duration and --steps must be positive")
    if not 1 <= args.batch <= MAX_BATCH:
        parser.error(f"--batch must be 1 to {MAX_BATCH} (the forwarders' ring size)")
    if args.realtime and args.duration > REALTIME_MAX_SECONDS:
        parser.error(f"--duration above {REALTIME_MAX_SECONDS:g} s needs --no-realtime")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    if "c" in args.forwarders and not os.access(C_L2FWD, os.X_OK):
        print(f"l2fwd_bench: {C_L2FWD} is missing: build it with `make l2fwd-c`", file=sys.stderr)
        return 1
    with bench_run("l2fwd_bench", roles="one forwards, one generates",
                   interrupted="the forwarders are stopped and the veth pairs deleted") as cpus:
        started = time.time()
        with Testbed(generator_cpu=cpus[1], forwarder_cpu=cpus[0], duration=args.duration,
                     realtime=args.realtime) as testbed:
            idle = idle_share(1.0)
            log(f"l2fwd_bench: CPUs {idle:.0%} idle just before the run; forwarders on CPU {cpus[0]}, "
                f"generator on CPU {cpus[1]}")
            controls, runs, totals = run_all(testbed, args, log)
    report(args, started, cpus, idle, controls, runs, totals)
    return 0


def report(args: argparse.Namespace, started: float, cpus: Sequence[int], idle: float, controls: list[Run],
           runs: list[Run], totals: list[ForwarderTotals]) -> None:
    rows = step_rows(runs)
    result = verdict(rows)
    document = {
        "settings": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                     "seconds": round(time.time() - started, 1), "rounds": args.rounds,
                     "duration": args.duration, "steps": args.steps, "frame_size": FRAME_SIZE,
                     "batch": args.batch,
                     "forwarder_cpu": cpus[0], "generator_cpu": cpus[1], "idle_before": idle,
                     "lossless_below": LOSSLESS, "realtime": args.realtime, "kernel": platform.release(),
                     "cpu": cpu_model(),
                     "python": platform.python_version(), "xdppacket": xdppacket.__version__},
        "controls": [asdict(run) for run in controls],
        "steps": [{**asdict(row), "sustained": row.sustained} for row in rows],
        "runs": [{**asdict(run), "loss": run.loss} for run in runs],
        "forwarder_totals": [asdict(entry) for entry in totals],
        "verdict": result,
    }
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / f"l2fwd-bench-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
        return
    print(f"\nl2fwd_bench: {FRAME_SIZE}-byte frames, one queue, veth, medians of {args.rounds} round(s) of "
          f"{args.duration:g} s per step, reads of at most {args.batch} frames; kernel {platform.release()}, {cpu_model()}; forwarders on CPU "
          f"{cpus[0]}, generator on CPU {cpus[1]}; CPUs {idle:.0%} idle just before the run.\n"
          f"forwarded: counted at the far end; loss: of the frames the rate asked for; not sent: the share "
          f"the generator fell behind on (the forwarder's receive work runs on its CPU); fwd ns/f: the "
          f"forwarder process's CPU per forwarded frame (user: its user-space share); softirq ns/f: all CPUs' softirq time per forwarded "
          f"frame; waited: share of the load's time the forwarder was runnable but not running.\n")
    print(steps_table(rows))
    print()
    print("\n".join(verdict_lines(result, max(args.steps))))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
