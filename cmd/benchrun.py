"""How ``cmd/bench.py`` measures one scenario: the tools in subprocesses, the generator here.

Receive scenarios: the receiver (``cmd/xdp.py`` or ``cmd/afpacket.py``) starts, says it is
ready, and the ``TrafficGenerator`` offers load for a fixed time; a short grace later the
receiver is stopped and reports what it counted. Offered pps is the generator's count over
its time, received pps the receiver's count over the same time, CPU the receiver's CPU
time (``/proc/PID/stat``) over that window. Send scenarios: the sender runs for the same
time and the peer end's kernel rx counter says how many frames arrived. veth hands a sent
frame to the peer's stack on the sending CPU; an ``rps`` scenario steers that work to the
other CPU (receive packet steering on the peer), as a NIC's receiver would be elsewhere.

Where the work runs on a 2-CPU machine: the generator's thread runs the kernel's whole
receive side (build the frame, redirect into the veth, the receiving end's NAPI poll, the
XDP program and the copy into the UMEM, or the stack up to the AF_PACKET socket) on the
generator's CPU; the receiver process only drains rings on the other CPU.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdppacket.testing import GeneratorResult, TrafficGenerator

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchmain import BenchError
    from cmd.benchnet import VethPair, link_counters, set_rps_cpus
else:
    from benchmain import BenchError
    from benchnet import VethPair, link_counters, set_rps_cpus

__all__ = ["Measurement", "Scenario", "Testbed", "measure"]

_CMD_DIR = Path(__file__).resolve().parent
_READY_TIMEOUT = 30.0
_GRACE_SECONDS = 0.2  # lets the receiver drain its rings after the generator stops
_ALTERNATE_SLICE_SECONDS = 0.5
_ORPHAN_CAP_SECONDS = 60.0


@dataclass(frozen=True)
class Scenario:
    """One row of the benchmark.

    ``kind`` says how it is measured: ``rx`` (one generator, one receiver), ``rx-alternate``
    (2 queues: one generator switching between both CPUs, so both queues get traffic in
    turn, the receiver always on the other CPU), ``rx-per-queue`` (2 queues, a generator and a
    receiver process per queue), ``tx`` or ``duplex``. ``rps`` (send scenarios): the peer's
    receive work runs on the other CPU, not the sender's.
    """

    name: str
    tool: str
    kind: str
    call: str
    tool_args: tuple[str, ...]
    queues: int = 1
    mode: str = "drv"
    rps: bool = False

    @property
    def direction(self) -> str:
        return "tx" if self.kind == "tx" else "rx"


@dataclass(frozen=True)
class Measurement:
    """One scenario's figures in one round (a duplex run gives an rx and a tx one)."""

    scenario: str
    direction: str
    round: int
    offered_pps: float
    received_pps: float
    cpu: float
    """Of the measured process(es): CPU seconds per wall second (2.0 is both CPUs)."""
    drops: dict[str, int] = field(default_factory=dict)
    kernel_cpu: float = 0.0
    """Of ``cpu``, the share spent in the kernel (system time); measured for sends only."""

    @property
    def loss(self) -> float:
        return max(0.0, 1 - self.received_pps / self.offered_pps) if self.offered_pps else 0.0


@dataclass
class Testbed:
    """The veth pairs (by queue count), the generators (by pair and CPU) and the CPUs."""

    pairs: dict[int, VethPair]
    generators: dict[tuple[int, int], TrafficGenerator]
    receiver_cpu: int
    generator_cpu: int
    duration: float
    batch: int
    children: set[subprocess.Popen[str]] = field(default_factory=set)

    def until_stopped(self) -> tuple[str, ...]:
        """Tool arguments for a run the benchmark stops; the time cap only makes sure that a
        tool orphaned by a killed benchmark ends by itself."""
        return ("--duration", str(self.duration + _ORPHAN_CAP_SECONDS))

    def generator(self, queues: int, cpu: int) -> TrafficGenerator:
        return self.generators[(queues, cpu)]

    def kill_children(self) -> None:
        """Ctrl-C and errors: no tool process may outlive the benchmark."""
        for child in list(self.children):
            if child.poll() is None:
                child.kill()
            child.wait()
        self.children.clear()


class ToolProcess:
    """One ``cmd/xdp.py`` or ``cmd/afpacket.py`` run, pinned to ``cpus``, ready to measure."""

    def __init__(self, testbed: Testbed, tool: str, args: Sequence[str], cpus: set[int]) -> None:
        self._testbed = testbed
        self._tool = tool
        self.process = subprocess.Popen(
            [sys.executable, str(_CMD_DIR / f"{tool}.py"), *args, "--json", "--quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        testbed.children.add(self.process)
        os.sched_setaffinity(self.process.pid, cpus)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process.stderr is not None
        readable, _, _ = select.select([self.process.stderr], [], [], _READY_TIMEOUT)
        line = self.process.stderr.readline() if readable else ""
        if not line.startswith("ready:"):
            self.process.kill()
            _, errors = self.process.communicate()
            raise BenchError(f"{self._tool}.py did not start: {(line + errors).strip() or 'no output'}")

    def cpu_seconds(self) -> float:
        """User and system CPU time so far, from /proc/PID/stat (fields 14 and 15)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict[str, Any]:
        """Stop the run (as Ctrl-C would) and return its JSON summary."""
        self.process.send_signal(signal.SIGTERM)
        return self.summary()

    def summary(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the tool to end and return its JSON summary."""
        try:
            output, errors = self.process.communicate(timeout=timeout)
        finally:
            self._testbed.children.discard(self.process)
        if self.process.returncode != 0:
            raise BenchError(f"{self._tool}.py failed: {errors.strip()}")
        summary: dict[str, Any] = json.loads(output)
        return summary


def measure(scenario: Scenario, testbed: Testbed, round_number: int) -> list[Measurement]:
    """Run ``scenario`` once and return its figures."""
    measurers = {"rx": _measure_rx, "rx-alternate": _measure_rx, "rx-per-queue": _measure_per_queue,
                 "tx": _measure_tx, "duplex": _measure_duplex}
    return measurers[scenario.kind](scenario, testbed, round_number)


def _tool_args(scenario: Scenario, testbed: Testbed, *extra: str) -> list[str]:
    args = ["--iface", testbed.pairs[scenario.queues].capture, *scenario.tool_args, *extra]
    if scenario.tool == "xdp":
        args += ["--mode", scenario.mode, "--batch", str(testbed.batch),
                 "--queues", str(scenario.queues)]
    return args


def _measure_rx(scenario: Scenario, testbed: Testbed, round_number: int) -> list[Measurement]:
    receiver = ToolProcess(testbed, scenario.tool, _tool_args(scenario, testbed, *testbed.until_stopped()),
                           {testbed.receiver_cpu})
    try:
        cpu_before, start = receiver.cpu_seconds(), time.monotonic()
        if scenario.kind == "rx-alternate":
            offered = _offer_alternating(testbed, scenario.queues, receiver)
        else:
            offered = testbed.generator(scenario.queues, testbed.generator_cpu).send_for(testbed.duration)
        time.sleep(_GRACE_SECONDS)
        cpu = (receiver.cpu_seconds() - cpu_before) / (time.monotonic() - start)
    finally:
        summary = receiver.stop()
    return [Measurement(scenario.name, "rx", round_number, offered.pps,
                        summary["rx_packets"] / offered.seconds, cpu, summary["drops"])]


def _offer_alternating(testbed: Testbed, queues: int, receiver: ToolProcess) -> GeneratorResult:
    """Load each queue in turn: the generator switches CPUs (so queues) every slice, and the
    receiver moves to the CPU the generator leaves, so neither ever shares a CPU."""
    cpus = [testbed.generator_cpu, testbed.receiver_cpu]
    frames, seconds, turn = 0, 0.0, 0
    while seconds < testbed.duration:
        generator_cpu, receiver_cpu = cpus[turn % 2], cpus[(turn + 1) % 2]
        os.sched_setaffinity(receiver.process.pid, {receiver_cpu})
        result = testbed.generator(queues, generator_cpu).send_for(_ALTERNATE_SLICE_SECONDS)
        frames, seconds, turn = frames + result.frames, seconds + result.seconds, turn + 1
    os.sched_setaffinity(receiver.process.pid, {testbed.receiver_cpu})
    return GeneratorResult(frames, seconds, result.frame_size)


def _measure_per_queue(scenario: Scenario, testbed: Testbed, round_number: int) -> list[Measurement]:
    """One receiver process per queue, each on the CPU of the other queue's generator."""
    cpus = [testbed.receiver_cpu, testbed.generator_cpu]
    queue_of = {cpu: cpu % scenario.queues for cpu in cpus}
    receivers = [
        ToolProcess(testbed, scenario.tool,
                    _tool_args(scenario, testbed, *testbed.until_stopped(), "--queue", str(queue_of[gen_cpu])),
                    {recv_cpu})
        for gen_cpu, recv_cpu in zip(cpus, reversed(cpus))
    ]
    summaries: list[dict[str, Any]] = []
    try:
        cpu_before, start = sum(r.cpu_seconds() for r in receivers), time.monotonic()
        results = _offer_in_parallel([testbed.generator(scenario.queues, cpu) for cpu in cpus],
                                     testbed.duration)
        time.sleep(_GRACE_SECONDS)
        cpu = (sum(r.cpu_seconds() for r in receivers) - cpu_before) / (time.monotonic() - start)
    finally:
        summaries = [receiver.stop() for receiver in receivers]
    seconds = max(result.seconds for result in results)
    offered = sum(result.frames for result in results) / seconds
    received = sum(summary["rx_packets"] for summary in summaries) / seconds
    drops = {name: sum(s["drops"][name] for s in summaries) for name in summaries[0]["drops"]}
    return [Measurement(scenario.name, "rx", round_number, offered, received, cpu, drops)]


def _offer_in_parallel(generators: list[TrafficGenerator], seconds: float) -> list[GeneratorResult]:
    """All generators at once, one thread each (each pins itself to its CPU while sending)."""
    results: list[GeneratorResult | BaseException] = [RuntimeError("no result")] * len(generators)

    def send(index: int) -> None:
        try:
            results[index] = generators[index].send_for(seconds)
        except BaseException as error:  # re-raised in the main thread below
            results[index] = error

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(generators))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if isinstance(result, GeneratorResult)]


def _measure_tx(scenario: Scenario, testbed: Testbed, round_number: int) -> list[Measurement]:
    """The sender on the receiver CPU; the peer's stack on the same CPU, or with ``rps`` on
    the generator's (idle here), set only for this run."""
    peer = testbed.pairs[scenario.queues].peer
    if scenario.rps:
        set_rps_cpus(peer, {testbed.generator_cpu})
    try:
        before = link_counters(peer)["rx_packets"]
        sender = ToolProcess(testbed, scenario.tool,
                             _tool_args(scenario, testbed, "--duration", str(testbed.duration)),
                             {testbed.receiver_cpu})
        summary = sender.summary(timeout=testbed.duration + 30)
        time.sleep(_GRACE_SECONDS)
        arrived = link_counters(peer)["rx_packets"] - before
    finally:
        if scenario.rps:
            set_rps_cpus(peer, set())
    seconds = summary["seconds"]
    return [Measurement(scenario.name, "tx", round_number, summary["tx_pps"], arrived / seconds,
                        summary["cpu_seconds"] / seconds, summary["drops"],
                        summary["system_cpu_seconds"] / seconds)]


def _measure_duplex(scenario: Scenario, testbed: Testbed, round_number: int) -> list[Measurement]:
    """Receive the generator's load and send back to the peer from the same socket."""
    peer = testbed.pairs[scenario.queues].peer
    process = ToolProcess(testbed, scenario.tool, _tool_args(scenario, testbed, *testbed.until_stopped()),
                          {testbed.receiver_cpu})
    try:
        before, cpu_before, start = link_counters(peer)["rx_packets"], process.cpu_seconds(), time.monotonic()
        offered = testbed.generator(scenario.queues, testbed.generator_cpu).send_for(testbed.duration)
        time.sleep(_GRACE_SECONDS)
        stopped = time.monotonic()
        cpu = (process.cpu_seconds() - cpu_before) / (stopped - start)
    finally:
        summary = process.stop()
    time.sleep(_GRACE_SECONDS)  # frames still in flight arrive
    arrived_pps = (link_counters(peer)["rx_packets"] - before) / (stopped - start)
    return [
        Measurement(f"{scenario.name} rx", "rx", round_number, offered.pps,
                    summary["rx_packets"] / offered.seconds, cpu, summary["drops"]),
        Measurement(f"{scenario.name} tx", "tx", round_number, summary["tx_pps"], arrived_pps, cpu,
                    summary["drops"]),
    ]
