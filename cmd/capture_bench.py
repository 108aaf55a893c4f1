"""Capture to a file against tcpdump: the highest offered rate each keeps, and its CPU per frame.

``xdppacket capture -w FILE`` and ``tcpdump -w FILE`` each capture the capture end of a veth
pair (one queue) in a private network namespace while a paced live-frames generator
(``cmd/pacedgen.py``) offers 64-byte frames at a set rate from the other CPU. The rate
steps up; for each step and tool this prints what was offered, what reached the file, the
loss and the CPU spent per captured frame; then each tool's lossless rate (the highest step
whose median loss is under 0.1%), the ratios, and the filter scenario: 1 frame in 100 of a
3 Mpps UDP stream matches ``udp port 53``, the rest goes on to the network stack, and both
tools capture with that expression.

How the load is made, and what that means (read before quoting a figure):

- Rate control: the generator's XDP program sends a frame only when its time slot has come
  (one every 1/rate s, by the kernel's clock), so the frames arrive evenly spaced, a few
  tens at a time (a batch flush), as from a NIC at that rate; one call covers a run.
- veth runs the receiving end's kernel work (the XDP program and the copy into the UMEM for
  xdppacket; the stack and AF_PACKET's copy for tcpdump) on the generator's CPU, as a NIC's
  interrupt CPU would; the tool itself runs on the other CPU. A path too slow for the rate
  delays the generator instead of losing frames, where a NIC would drop them: the loss is
  therefore counted against the frames the rate asked for, not only against those sent
  ("not sent" shows the generator's shortfall).
- Loss: 1 - frames in the written file / frames asked for. Both files go to the same tmpfs
  (``/dev/shm``), are counted by walking their records, and are deleted at once. The tools'
  own kernel drop counters (their closing "dropped by kernel" lines) are shown too.
- Buffers: each tool's default (tcpdump: no ``-B``, libpcap's 2 MiB ring, about 13,000
  64-byte frames; xdppacket capture: 4096 UMEM frames of 2048 bytes and a 4096-entry rx ring
  per queue, 16 MiB with the tx half it does not use);
  ``--tcpdump-buffer`` changes tcpdump's.
- Scheduling: the tools and the generator run SCHED_FIFO (priority 1) by default, so that
  other work on a shared machine neither keeps a tool waiting for its CPU (its ring or
  buffer would overflow meanwhile) nor stalls the pacing; the "waited" column shows how
  long each tool still waited, runnable, for its CPU (``/proc/PID/schedstat``). Each run's
  load lasts at most 0.9 s: the kernel gives ordinary tasks 50 ms of every second a
  real-time task keeps a CPU busy, and the generator keeps its CPU busy.
- CPU per captured frame: the tool process's CPU time, user and kernel (``/proc/PID/schedstat``,
  in nanoseconds; its user share from the coarse ticks of ``/proc/PID/stat``), plus the
  softirq time of all CPUs (``/proc/stat``: the kernel's receive work, whichever CPU ran
  it), from just before the load to the end of the drain grace, over the frames in the file.
  Not counted: the generator's own work (building, pacing and redirecting frames, the same
  for both tools). The softirq time is tick-sampled (250 Hz here) and counted in 1/100 s: a
  few percent of noise per run, more for few frames; other work on a shared machine adds
  softirq time of its own (the idle share before the run is printed).

Usage: ``python cmd/capture_bench.py [--quick] [--rounds N] [--duration S] [--json]``
(root; tcpdump installed). ``make bench`` runs it after ``cmd/bench.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xdppacket

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchmain import BenchError, all_cpus_ticks, bench_run, idle_share
    from cmd.benchnet import VethPair
    from cmd.pacedgen import REALTIME_MAX_SECONDS, REALTIME_PRIORITY, PacedGenerator
else:
    from benchmain import BenchError, all_cpus_ticks, bench_run, idle_share
    from benchnet import VethPair
    from pacedgen import REALTIME_MAX_SECONDS, REALTIME_PRIORITY, PacedGenerator

FRAME_SIZE = 64
LOSSLESS = 0.001
"""A step is sustained when under this share of the frames asked for is missing from the file."""
STEPS = (50_000, 100_000, 150_000, 250_000, 350_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000)
QUICK_STEPS = (100_000, 250_000, 500_000, 1_000_000, 2_000_000)
FILTER_RATE = 3_000_000
FILTER_PORT = 53
OTHER_PORT = 9
FILTER_EXPRESSION = f"udp port {FILTER_PORT}"
FILTER_SHARE = 100
"""One frame in this many matches the filter."""
GRACE_SECONDS = 1.5
"""After the load, before the stop: longer than tcpdump's 1 s buffer timeout (TPACKET_V3
hands a partly filled block to tcpdump only after it), so both have drained what they hold."""
READY_TIMEOUT = 30.0
FAILURES_BEFORE_GIVING_UP = 2
"""Consecutive failed steps after which a tool's higher steps are skipped in that round."""
TCPDUMP_DEFAULT_BUFFER_KIB = 2048  # libpcap's default when -B is not given (Linux)
XDP_CAPTURE_RING_FRAMES = 4096  # xdppacket capture's default for one queue: 4096 UMEM frames, rx ring 4096

TOOLS = ("xdppacket", "tcpdump")
TOOL_LABELS = {"xdppacket": "xdppacket capture -w", "tcpdump": "tcpdump -w", "none": "no capture"}
CAPTURE_IF, PEER_IF = "xcapa", "xcapb"
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_PCAP_HEADER_SIZE = 24
_PCAP_RECORD = struct.Struct("<IIII")  # ts_sec, ts_frac, incl_len, orig_len
_PROC_STAT_SOFTIRQ = 7  # the field after "cpu": user nice system idle iowait irq softirq


class FilterUnavailable(BenchError):
    """``xdppacket capture EXPRESSION`` refused the expression: the filter is not wired yet."""


# --------------------------------------------------------------------------- frames
def udp_frame(dport: int) -> bytes:
    """A 64-byte broadcast IPv4/UDP frame to ``dport`` (10.0.0.1:1024 -> 10.0.0.2)."""
    payload = bytes(FRAME_SIZE - 14 - 20 - 8)
    udp = struct.pack("!HHHH", 1024, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    checksum = _ip_checksum(header)
    header = header[:10] + struct.pack("!H", checksum) + header[12:]
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + header + udp


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


#: The rate steps' frame: the local-experiment ethertype, which the stack drops right after
#: the AF_PACKET taps, so tcpdump's path pays for capture and not for IP processing.
STEP_FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(FRAME_SIZE - 14)


# --------------------------------------------------------------------------- CPU
def softirq_seconds() -> float:
    """Softirq time of all CPUs together so far."""
    return all_cpus_ticks()[_PROC_STAT_SOFTIRQ - 1] / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessTimes:
    """A single-threaded process's scheduler figures so far."""

    ran_s: float
    """CPU time, user and kernel, in nanoseconds' precision (/proc/PID/schedstat)."""
    waited_s: float
    """Time runnable but waiting for a CPU (/proc/PID/schedstat)."""
    user_ticks: int
    kernel_ticks: int
    """The split of CPU time, in 1/100 s ticks (/proc/PID/stat fields 14, 15): coarse, so
    used only for the user share of ``ran_s``."""

    @classmethod
    def of(cls, pid: int) -> ProcessTimes:
        ran_ns, waited_ns = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return cls(int(ran_ns) / 1e9, int(waited_ns) / 1e9, int(fields[11]), int(fields[12]))

    def __sub__(self, before: ProcessTimes) -> ProcessTimes:
        return ProcessTimes(self.ran_s - before.ran_s, self.waited_s - before.waited_s,
                            self.user_ticks - before.user_ticks, self.kernel_ticks - before.kernel_ticks)


_NO_PROCESS = ProcessTimes(0.0, 0.0, 0, 0)


# --------------------------------------------------------------------------- the tools
class CaptureTool:
    """One ``tcpdump -w`` or ``xdppacket capture -w`` run, pinned to ``cpu``, ready once it
    says "listening on"; stopped with SIGINT as a user's Ctrl-C would."""

    def __init__(self, tool: str, path: Path, cpu: int, expression: str, tcpdump_buffer_kib: int | None,
                 realtime: bool) -> None:
        self.tool = tool

        def place() -> None:
            os.sched_setaffinity(0, {cpu})
            if realtime:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))

        self.process = subprocess.Popen(
            self.command(tool, path, expression, tcpdump_buffer_kib),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=place,
        )
        self._early_errors = ""
        try:
            self._wait_ready(expression)
        except BaseException:
            self.kill()
            raise

    @staticmethod
    def command(tool: str, path: Path, expression: str, tcpdump_buffer_kib: int | None) -> list[str]:
        words = expression.split()
        if tool == "tcpdump":
            executable = shutil.which("tcpdump", path=_SBIN_PATH)
            if executable is None:
                raise BenchError("tcpdump is missing: run `make setup` (it installs it)")
            buffer = ["-B", str(tcpdump_buffer_kib)] if tcpdump_buffer_kib else []
            # -Z root: tcpdump would otherwise drop to its own user before opening the file.
            return [executable, "-n", "-Z", "root", "-i", CAPTURE_IF, *buffer, "-w", str(path), *words]
        return [sys.executable, "-m", "xdppacket", "capture", "-i", CAPTURE_IF, "--mode", "drv",
                "-w", str(path), *words]

    def _wait_ready(self, expression: str) -> None:
        assert self.process.stderr is not None
        deadline = time.monotonic() + READY_TIMEOUT
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:  # the tool ended before listening
                break
            lines.append(line)
            if "listening on" in line:
                return
        self.process.wait(timeout=5)
        errors = "".join(lines).strip() or "no output"
        if expression and self.tool == "xdppacket" and self.process.returncode == 1:
            raise FilterUnavailable(errors)
        raise BenchError(f"{TOOL_LABELS[self.tool]} did not start: {errors}")

    def stop(self) -> dict[str, int]:
        """SIGINT, wait, and return its closing counters (captured, received, dropped)."""
        self.process.send_signal(signal.SIGINT)
        try:
            _, errors = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"{TOOL_LABELS[self.tool]} did not stop within 30 s of SIGINT") from None
        if self.process.returncode != 0:
            raise BenchError(f"{TOOL_LABELS[self.tool]} failed: {errors.strip()}")
        return closing_counters(errors)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def closing_counters(stderr: str) -> dict[str, int]:
    """tcpdump's closing lines ("N packets captured", "... received by filter", "... dropped
    by kernel"), which ``xdppacket capture`` prints alike."""
    counters = {}
    for line in stderr.splitlines():
        for key, suffix in (("captured", "packets captured"), ("received", "packets received by filter"),
                            ("dropped", "packets dropped by kernel")):
            if line.strip().endswith(suffix):
                counters[key] = int(line.split()[0])
    missing = {"captured", "received", "dropped"} - set(counters)
    if missing:
        raise BenchError(f"no closing lines {sorted(missing)} in: {stderr.strip()[-500:]}")
    return counters


def count_pcap_records(path: Path) -> int:
    """Records in a classic pcap file, walking every record header (the file's own count)."""
    with open(path, "rb") as file:
        data = file.read()
    if len(data) < _PCAP_HEADER_SIZE:
        raise BenchError(f"{path} is not a pcap file ({len(data)} bytes)")
    offset, count, size = _PCAP_HEADER_SIZE, 0, len(data)
    record = _PCAP_RECORD.size
    view = memoryview(data)
    # Fast path: every record the same length (the generator's frames all are): check each
    # record's length field through one strided view, then the count is the division.
    first = _PCAP_RECORD.unpack_from(data, offset)[2] if size >= offset + record else 0
    stride = record + first
    if first and first % 4 == 0 and (size - offset) % stride == 0:
        lengths = view[offset:].cast("I")[2::stride // 4]
        if lengths.tolist().count(first) == len(lengths):
            return len(lengths)
    while offset + record <= size:
        offset += record + _PCAP_RECORD.unpack_from(data, offset)[2]
        count += 1
    if offset != size:
        raise BenchError(f"{path}: the last record is cut short")
    return count


# --------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class Run:
    """One tool at one rate in one round."""

    tool: str
    round: int
    rate: int
    asked: int
    """Frames the rate asked for over the load (those the generator sent, and those it fell behind on)."""
    offered: int
    """Frames the generator sent."""
    offered_seconds: float
    in_file: int
    tool_dropped: int
    tool_s: float
    """CPU time of the tool process, user and kernel."""
    user_ticks: int
    kernel_ticks: int
    softirq_s: float
    waited_s: float
    """Time the tool was ready to run but waited for its CPU (other work on the machine)."""
    matching_asked: int = 0
    """Filter scenario: frames among ``asked`` that the expression matches (1 in FILTER_SHARE)."""
    matching_offered: int = 0

    @property
    def loss(self) -> float:
        """Share of the frames asked for (matching ones in the filter scenario) not in the file."""
        wanted = self.matching_asked if self.matching_asked else self.asked
        return max(0.0, 1 - self.in_file / wanted) if wanted else 0.0

    @property
    def offered_pps(self) -> float:
        return self.offered / self.offered_seconds if self.offered_seconds else 0.0

    @property
    def user_share(self) -> float | None:
        """The user share of the tool's CPU time, from ticks (None: too short to tell)."""
        ticks = self.user_ticks + self.kernel_ticks
        return self.user_ticks / ticks if ticks else None

    def ns_per_frame(self, seconds: float, frames: int | None = None) -> float:
        count = self.in_file if frames is None else frames
        return seconds / count * 1e9 if count else float("nan")


@dataclass
class Bench:
    """Where the tools run and their files go, and the generators (by load)."""

    tool_cpu: int
    duration: float
    directory: Path
    tcpdump_buffer_kib: int | None
    realtime: bool
    generators: dict[str, PacedGenerator] = field(default_factory=dict)

    def run(self, tool: str, round_number: int, rate: int, load: str = "steps", expression: str = "") -> Run:
        """``tool`` ("none": the load only) captures, with ``expression``, while the
        generator of ``load`` offers ``rate`` frames a second for the bench's duration."""
        path = self.directory / f"{tool}-{rate}.pcap"
        capture = None if tool == "none" else CaptureTool(tool, path, self.tool_cpu, expression,
                                                           self.tcpdump_buffer_kib, self.realtime)
        try:
            time.sleep(0.2)  # past its start-up: the CPU window holds the load only
            tool_before = ProcessTimes.of(capture.process.pid) if capture else _NO_PROCESS
            softirq_before = softirq_seconds()
            offered = self.generators[load].send(rate, self.duration)
            time.sleep(GRACE_SECONDS)
            times = (ProcessTimes.of(capture.process.pid) if capture else _NO_PROCESS) - tool_before
            softirq = softirq_seconds() - softirq_before
            counters = capture.stop() if capture else {"dropped": 0}
        except BaseException:
            if capture is not None:
                capture.kill()
            raise
        in_file = count_pcap_records(path) if capture else 0
        path.unlink(missing_ok=True)
        return Run(tool=tool, round=round_number, rate=rate, asked=offered.asked, offered=offered.sent,
                   offered_seconds=offered.seconds, in_file=in_file, tool_dropped=counters["dropped"],
                   tool_s=times.ran_s, user_ticks=times.user_ticks, kernel_ticks=times.kernel_ticks,
                   waited_s=times.waited_s,
                   softirq_s=softirq,
                   matching_asked=offered.asked // FILTER_SHARE if expression else 0,
                   matching_offered=offered.marked)


# --------------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class StepRow:
    """Medians of one tool at one rate over the rounds that ran it."""

    tool: str
    rate: int
    rounds: int
    offered_pps: float
    captured_pps: float
    loss: float
    tool_dropped: int
    shortfall: float
    tool_ns: float
    user_share: float | None
    """Of ``tool_ns``, the share in user space (median of the rounds that could tell)."""
    softirq_ns: float
    waited: float
    """Share of the load's time the tool waited, runnable, for its CPU."""

    @property
    def total_ns(self) -> float:
        return self.tool_ns + self.softirq_ns

    @property
    def sustained(self) -> bool:
        return self.loss < LOSSLESS


def step_rows(runs: Sequence[Run], duration: float) -> list[StepRow]:
    rows = []
    for tool in TOOLS:
        for rate in sorted({run.rate for run in runs if run.tool == tool}):
            mine = [run for run in runs if run.tool == tool and run.rate == rate]
            rows.append(StepRow(
                tool=tool, rate=rate, rounds=len(mine),
                offered_pps=statistics.median(run.offered_pps for run in mine),
                captured_pps=statistics.median(run.in_file / run.offered_seconds for run in mine),
                loss=statistics.median(run.loss for run in mine),
                tool_dropped=int(statistics.median(run.tool_dropped for run in mine)),
                shortfall=statistics.median(1 - run.offered / run.asked for run in mine),
                tool_ns=statistics.median(run.ns_per_frame(run.tool_s) for run in mine),
                user_share=_median_or_none([run.user_share for run in mine]),
                softirq_ns=statistics.median(run.ns_per_frame(run.softirq_s) for run in mine),
                waited=statistics.median(run.waited_s / run.offered_seconds for run in mine),
            ))
    return rows


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def lossless_rate(rows: Sequence[StepRow], tool: str, rounds: int) -> int | None:
    """The highest rate at which ``tool`` was sustained (a step skipped in some round, after
    failures below it, counts as failed there: its median is over all rounds)."""
    best = None
    for row in rows:
        if row.tool == tool and row.rounds * 2 > rounds and row.sustained:
            best = row.rate if best is None else max(best, row.rate)
    return best


def format_table(header: Sequence[str], cells: Sequence[Sequence[str]], left: int = 1) -> str:
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) if i < left else value.rjust(width)
                         for i, (value, width) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * width for width in widths), *map(line, cells)])


def steps_table(rows: Sequence[StepRow]) -> str:
    header = ("tool", "rate pps", "offered pps", "not sent", "in file pps", "loss", "tool drops", "waited",
              "tool ns/f", "user", "softirq ns/f", "total ns/f")
    cells = [(TOOL_LABELS[row.tool], f"{row.rate:,}", f"{row.offered_pps:,.0f}", f"{row.shortfall:.1%}",
              f"{row.captured_pps:,.0f}", f"{row.loss:.2%}", f"{row.tool_dropped:,}", f"{row.waited:.0%}",
              f"{row.tool_ns:,.0f}",
              "-" if row.user_share is None else f"{row.user_share:.0%}", f"{row.softirq_ns:,.0f}",
              f"{row.total_ns:,.0f}") for row in rows]
    return format_table(header, cells)


def verdict(rows: Sequence[StepRow], rounds: int) -> dict[str, Any]:
    """Each tool's lossless rate, their ratio, and the CPU per frame at the highest rate both
    sustain; the issue's target is judged on both."""
    rates = {tool: lossless_rate(rows, tool, rounds) for tool in TOOLS}
    result: dict[str, Any] = {"lossless_pps": rates, "rate_ratio": None, "common_rate": None,
                              "cpu_ns_per_frame": {}, "cpu_ratio": None}
    if rates["xdppacket"] and rates["tcpdump"]:
        result["rate_ratio"] = rates["xdppacket"] / rates["tcpdump"]
    common = min((rate for rate in rates.values() if rate), default=None) if all(rates.values()) else None
    if common:
        by_key = {(row.tool, row.rate): row for row in rows}
        result["common_rate"] = common
        result["cpu_ns_per_frame"] = {tool: by_key[(tool, common)].total_ns for tool in TOOLS}
        result["cpu_ratio"] = result["cpu_ns_per_frame"]["xdppacket"] / result["cpu_ns_per_frame"]["tcpdump"]
    passed = bool(result["rate_ratio"] is not None and result["rate_ratio"] >= 1
                  and result["cpu_ratio"] is not None and result["cpu_ratio"] <= 1)
    result["target"] = "PASS" if passed else "FAIL" if result["cpu_ratio"] is not None else "UNDECIDED"
    return result


def verdict_lines(result: dict[str, Any], top_rate: int) -> list[str]:
    lines = []
    for tool in TOOLS:
        rate = result["lossless_pps"][tool]
        text = "none of the steps" if rate is None else f"{rate:,} pps"
        bound = " (the top step: a lower bound)" if rate == top_rate else ""
        lines.append(f"  lossless rate (< {LOSSLESS:.1%} loss), {TOOL_LABELS[tool]:<22} {text}{bound}")
    if result["rate_ratio"] is not None:
        lines.append(f"  lossless rate, xdppacket / tcpdump: {result['rate_ratio']:.2f}x")
    if result["common_rate"]:
        costs = result["cpu_ns_per_frame"]
        lines.append(f"  CPU per captured frame at {result['common_rate']:,} pps (both sustain it): "
                     f"xdppacket {costs['xdppacket']:,.0f} ns, tcpdump {costs['tcpdump']:,.0f} ns "
                     f"({result['cpu_ratio']:.2f}x)")
    lines.append(f"  {result['target']:<9} target: xdppacket's lossless rate >= tcpdump's, at no more "
                 f"CPU per frame")
    return lines


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def filter_table(runs: Sequence[Run]) -> str:
    header = ("tool", "offered pps", "matching sent", "in file", "loss", "loss of sent", "tool drops", "tool ns/f",
              "softirq ns/f", "tool ns/offered f", "softirq ns/offered f")
    cells = []
    for tool in ("none", *TOOLS):
        mine = [run for run in runs if run.tool == tool]
        if not mine:
            continue
        captured = tool != "none"
        cells.append((
            TOOL_LABELS[tool], f"{median(run.offered_pps for run in mine):,.0f}",
            f"{median(run.matching_offered for run in mine):,.0f}",
            f"{median(run.in_file for run in mine):,.0f}" if captured else "-",
            f"{median(run.loss for run in mine):.2%}" if captured else "-",
            f"{median(1 - run.in_file / max(1, run.matching_offered) for run in mine):.2%}" if captured else "-",
            f"{median(run.tool_dropped for run in mine):,.0f}" if captured else "-",
            f"{median(run.ns_per_frame(run.tool_s) for run in mine):,.0f}" if captured else "-",
            f"{median(run.ns_per_frame(run.softirq_s) for run in mine):,.0f}" if captured else "-",
            f"{median(run.ns_per_frame(run.tool_s, run.offered) for run in mine):,.1f}",
            f"{median(run.ns_per_frame(run.softirq_s, run.offered) for run in mine):,.1f}",
        ))
    return format_table(header, cells)


# --------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all steps (default 5)")
    parser.add_argument("--duration", type=float, default=REALTIME_MAX_SECONDS,
                        help=f"seconds of load per run (default and, unless --no-realtime, most "
                             f"{REALTIME_MAX_SECONDS:g}: the kernel stops a busy real-time task for 50 ms "
                             f"a second)")
    parser.add_argument("--steps", type=int, nargs="+", metavar="PPS",
                        help=f"offered rates (default {' '.join(map(str, STEPS))})")
    parser.add_argument("--tcpdump-buffer", type=int, metavar="KIB",
                        help=f"tcpdump -B (default: none given, libpcap's {TCPDUMP_DEFAULT_BUFFER_KIB} KiB)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="run the tools and the generator as ordinary tasks (by default they run "
                             "SCHED_FIFO, priority 1, so that other work on a shared machine neither "
                             "keeps a tool waiting for its CPU nor upsets the pacing)")
    parser.add_argument("--no-filter", action="store_true", help="skip the filter scenario")
    parser.add_argument("--quick", action="store_true",
                        help=f"about a minute: 1 round of 0.9 s at {' '.join(map(str, QUICK_STEPS))} pps")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON document on stdout (progress on stderr)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="also write the JSON document to DIR/capture-bench-<time>.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, min(args.duration, REALTIME_MAX_SECONDS)
        args.steps = args.steps or list(QUICK_STEPS)
    args.steps = sorted(set(args.steps or STEPS))
    if args.rounds < 1 or args.duration <= 0 or min(args.steps) < 1:
        parser.error("--rounds, --duration and --steps must be positive")
    if args.realtime and args.duration > REALTIME_MAX_SECONDS:
        parser.error(f"--duration above {REALTIME_MAX_SECONDS:g} s needs --no-realtime: the kernel gives "
                     f"ordinary tasks 50 ms of every second a real-time task keeps a CPU busy, and the "
                     f"load would stop for them")
    return args


def run_steps(bench: Bench, args: argparse.Namespace, log: Any) -> list[Run]:
    """Every step for both tools, the tools in alternating order; a tool that failed
    ``FAILURES_BEFORE_GIVING_UP`` steps in a row skips its higher steps in that round."""
    runs: list[Run] = []
    for round_number in range(1, args.rounds + 1):
        failures = dict.fromkeys(TOOLS, 0)
        for index, rate in enumerate(args.steps):
            order = TOOLS if (round_number + index) % 2 else TOOLS[::-1]
            for tool in order:
                if failures[tool] >= FAILURES_BEFORE_GIVING_UP:
                    continue
                run = bench.run(tool, round_number, rate)
                runs.append(run)
                failures[tool] = 0 if run.loss < LOSSLESS else failures[tool] + 1
                log(f"round {round_number}/{args.rounds}  {TOOL_LABELS[tool]:<22} rate {rate:>10,}  frames: asked "
                    f"{run.asked:>10,}  sent {run.offered:>10,}  in file {run.in_file:>10,}  loss {run.loss:7.2%}  "
                    f"tool drops {run.tool_dropped:,}")
    return runs


def run_filter(bench: Bench, args: argparse.Namespace, log: Any) -> tuple[list[Run], str | None]:
    """1 frame in ``FILTER_SHARE`` is ``udp port 53`` in a ``FILTER_RATE`` stream of UDP; each
    tool captures with the expression, and a load-only run shows what the stack costs without
    a capture. When ``xdppacket capture`` refuses the expression, the others still run and
    the note says why xdppacket's row is missing."""
    runs: list[Run] = []
    note = None
    for round_number in range(1, args.rounds + 1):
        order = ("none", *TOOLS) if round_number % 2 else ("none", *TOOLS[::-1])
        for tool in order:
            if tool == "xdppacket" and note:
                continue
            try:
                run = bench.run(tool, round_number, FILTER_RATE, "filter", "" if tool == "none" else FILTER_EXPRESSION)
            except FilterUnavailable as error:
                note = (f"xdppacket skipped: `xdppacket capture ... {FILTER_EXPRESSION}` is refused on this "
                        f"version ({error}); it runs once the capture filter is wired into the sockets")
                log(f"filter: {note}")
                continue
            runs.append(run)
            log(f"filter {round_number}/{args.rounds}  {TOOL_LABELS[tool]:<22} frames: asked {run.asked:>10,}  "
                f"sent {run.offered:>10,}  matching sent {run.matching_offered:>8,}  in file {run.in_file:>8,}")
    return runs, note


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    with bench_run("capture_bench", roles="one captures, one generates",
                   interrupted="the tools are stopped and the veth pair deleted") as cpus, \
            contextlib.ExitStack() as clean_up:
        started = time.time()
        directory = Path(tempfile.mkdtemp(prefix="capture-bench-", dir="/dev/shm"))
        clean_up.callback(shutil.rmtree, directory, ignore_errors=True)
        clean_up.enter_context(VethPair.create(CAPTURE_IF, PEER_IF, 1))
        bench = Bench(tool_cpu=cpus[0], duration=args.duration,
                      directory=directory, tcpdump_buffer_kib=args.tcpdump_buffer, realtime=args.realtime)
        bench.generators["steps"] = clean_up.enter_context(
            PacedGenerator(PEER_IF, STEP_FRAME, cpu=cpus[1], realtime=args.realtime))
        bench.generators["filter"] = clean_up.enter_context(
            PacedGenerator(PEER_IF, udp_frame(OTHER_PORT), cpu=cpus[1], realtime=args.realtime,
                           mark_every=FILTER_SHARE, mark_port=FILTER_PORT, other_port=OTHER_PORT))
        idle = idle_share(1.0)
        log(f"capture_bench: CPUs {idle:.0%} idle just before the run; tools on CPU {cpus[0]}, "
            f"generator (and the kernel's receive work) on CPU {cpus[1]}; files in {directory} (tmpfs)")
        runs = run_steps(bench, args, log)
        filter_runs, filter_note = ([], "skipped (--no-filter)") if args.no_filter else run_filter(bench, args, log)
    report(args, started, cpus, idle, runs, filter_runs, filter_note)
    return 0


def settings_text(args: argparse.Namespace, cpus: Sequence[int], idle: float) -> str:
    buffer = (f"-B {args.tcpdump_buffer} (KiB)" if args.tcpdump_buffer
              else f"no -B: libpcap's default {TCPDUMP_DEFAULT_BUFFER_KIB} KiB ring")
    return (f"{FRAME_SIZE}-byte frames, one queue, medians of {args.rounds} round(s) of {args.duration:g} s "
            f"per step; tools on CPU {cpus[0]}, generator and the kernel's receive work on CPU {cpus[1]}; "
            f"CPUs {idle:.0%} idle just before the run.\n"
            f"Buffers, each tool's default: tcpdump {buffer} (TPACKET_V3, default 1 s block timeout); "
            f"xdppacket capture {XDP_CAPTURE_RING_FRAMES} UMEM frames, rx ring {XDP_CAPTURE_RING_FRAMES} "
            f"(native XDP). Files: tmpfs (/dev/shm), classic pcap, both.\n"
            f"loss: frames missing from the file out of those the rate asked for; not sent: the share "
            f"of those the generator fell behind on (a NIC would have dropped them); tool drops: its "
            f"own 'dropped by kernel'; waited: share of the load's time the tool was runnable but not "
            f"running; CPU per frame in the file: the tool process's (user and kernel; 'user' is its "
            f"user share) and the softirq time of all CPUs (the kernel's receive work).")


def report(args: argparse.Namespace, started: float, cpus: Sequence[int], idle: float, runs: list[Run],
           filter_runs: list[Run], filter_note: str | None) -> None:
    rows = step_rows(runs, args.duration)
    result = verdict(rows, args.rounds)
    filter_result = {"expression": FILTER_EXPRESSION, "rate": FILTER_RATE, "matching_share": 1 / FILTER_SHARE,
                     "note": filter_note, "runs": [{**asdict(run), "loss": run.loss} for run in filter_runs]}
    document = {
        "settings": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                     "seconds": round(time.time() - started, 1), "rounds": args.rounds,
                     "duration": args.duration, "steps": args.steps, "frame_size": FRAME_SIZE,
                     "tool_cpu": cpus[0], "generator_cpu": cpus[1], "idle_before": idle,
                     "tcpdump_buffer_kib": args.tcpdump_buffer or TCPDUMP_DEFAULT_BUFFER_KIB,
                     "xdppacket_ring_frames": XDP_CAPTURE_RING_FRAMES, "lossless_below": LOSSLESS,
                     "kernel": platform.release(), "python": platform.python_version(),
                     "xdppacket": xdppacket.__version__},
        "steps": [{**asdict(row), "total_ns": row.total_ns, "sustained": row.sustained} for row in rows],
        "runs": [{**asdict(run), "loss": run.loss} for run in runs],
        "verdict": result,
        "filter": filter_result,
    }
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / f"capture-bench-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
        return
    print(f"\n{settings_text(args, cpus, idle)}\n")
    print(steps_table(rows))
    print()
    print("\n".join(verdict_lines(result, max(args.steps))))
    print(f"\nFilter: 1 frame in {FILTER_SHARE} matches `{FILTER_EXPRESSION}` in a {FILTER_RATE:,} pps stream "
          f"of 64-byte UDP frames (the others to port 9, passed on to the stack), both tools with the expression:")
    if filter_runs:
        print(filter_table(filter_runs))
        print("(loss: of the matching frames asked for; loss of sent: of those the generator sent; ns/f: "
              "per frame in the file; ns/offered f: per frame of the whole stream; 'no capture' is the load "
              "alone: the stack's own cost)")
    if filter_note:
        print(f"  {filter_note}")


if __name__ == "__main__":
    sys.exit(main())
