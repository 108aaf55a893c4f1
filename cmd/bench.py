"""The performance suite (`make bench`): xdppacket against a plain AF_PACKET socket.

Runs as root, entirely inside a private network namespace of its own (the machine's own
interfaces are never seen or touched): creates veth pairs, then for every scenario starts
``cmd/xdp.py`` or ``cmd/afpacket.py`` pinned to one CPU while the ``TrafficGenerator``
offers 64-byte frames from the other CPU (send scenarios: the sender runs alone and the
far end's kernel counters say what arrived; the RPS variants move the far end's receive
work to the other CPU through a sysfs of the private namespace, in a private mount
namespace). Several rounds, alternating the scenario order; the table quotes medians. Then
a long receive run checks that memory stays flat, and ``cmd/drain.py`` (a subprocess, in a
namespace of its own) measures how fast each reader empties a ready backlog.

Prints the tables and the project's targets, each judged on every measure that bears on it
(PASS/FAIL/UNDECIDED, naming the measure), and writes ``results/bench-<timestamp>.json``
and ``.png``.

Usage: ``make bench`` or ``.venv/bin/python cmd/bench.py [--quick] [--rounds N] ...``
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xdppacket
from xdppacket.testing import TrafficGenerator

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd import benchreport, drain, runloop
    from cmd.benchmain import BenchError, bench_run, idle_share
    from cmd.benchnet import VethPair, enter_private_sysfs
    from cmd.benchreport import Evidence, Target
    from cmd.benchrun import Measurement, Scenario, Testbed, ToolProcess, measure
else:
    import benchreport
    import drain
    import runloop
    from benchmain import BenchError, bench_run, idle_share
    from benchnet import VethPair, enter_private_sysfs
    from benchreport import Evidence, Target
    from benchrun import Measurement, Scenario, Testbed, ToolProcess, measure

FRAME_SIZE = 64
CMD_DIR = Path(__file__).resolve().parent
RESULTS_DIR = CMD_DIR.parent / "results"

SCENARIOS = (
    Scenario("AF_PACKET rx", "afpacket", "rx", "socket.recv_into", ("--scenario", "rx")),
    Scenario("rx-single", "xdp", "rx", "read_packet_data", ("--scenario", "rx-single")),
    Scenario("rx-batch", "xdp", "rx", "read_multi_packets", ("--scenario", "rx-batch")),
    Scenario("rx-zc-batch", "xdp", "rx", "zero_copy_read_multi_packets", ("--scenario", "rx-zc-batch")),
    Scenario("rx-zc-batch (skb)", "xdp", "rx", "zero_copy_read_multi_packets",
             ("--scenario", "rx-zc-batch"), mode="skb"),
    Scenario("mq-rx-single", "xdp", "rx-alternate", "XDPMultiQueue.read_packet",
             ("--scenario", "mq-rx-single"), queues=2),
    Scenario("mq-rx-batch", "xdp", "rx-alternate", "XDPMultiQueue.read_multi_packets",
             ("--scenario", "mq-rx-batch"), queues=2),
    Scenario("rx-zc-batch x2 proc", "xdp", "rx-per-queue", "zero_copy_read_multi_packets",
             ("--scenario", "rx-zc-batch"), queues=2),
    Scenario("duplex", "xdp", "duplex", "read_multi_packets + write_multi_packets",
             ("--scenario", "duplex")),
    Scenario("AF_PACKET tx", "afpacket", "tx", "socket.send", ("--scenario", "tx")),
    Scenario("tx-single", "xdp", "tx", "write_packet", ("--scenario", "tx-single")),
    Scenario("tx-batch", "xdp", "tx", "write_multi_packets", ("--scenario", "tx-batch")),
    Scenario("mq-tx-single", "xdp", "tx", "XDPMultiQueue.write_packet([frame])",
             ("--scenario", "mq-tx-single"), queues=2),
    Scenario("mq-tx-batch", "xdp", "tx", "XDPMultiQueue.write_packet(frames)",
             ("--scenario", "mq-tx-batch"), queues=2),
    Scenario("AF_PACKET tx (RPS)", "afpacket", "tx", "socket.send", ("--scenario", "tx"), rps=True),
    Scenario("tx-batch (RPS)", "xdp", "tx", "write_multi_packets", ("--scenario", "tx-batch"), rps=True),
)


def targets(batch: int) -> tuple[Target, ...]:
    """The issue's targets, each with the measures it is judged on (batched: ``batch`` frames)."""
    return (
        Target("zero_copy_read_multi_packets drains >= 4x the pps of AF_PACKET", 4.0,
               (Evidence("live load", "rx-zc-batch"),
                Evidence("drain", f"zero_copy_read_multi_packets({batch})", drain=True),
                Evidence("drain, batch ts", f"zero_copy_read_multi_packets({batch}), OptBatchTimestamps",
                         drain=True))),
        Target("read_packet_data drains >= 2x the pps of AF_PACKET", 2.0,
               (Evidence("live load", "rx-single"), Evidence("drain", "read_packet_data", drain=True),
                Evidence("drain, batch ts", "read_packet_data, OptBatchTimestamps", drain=True))),
        Target("write_multi_packets sends >= 2x the pps of AF_PACKET", 2.0,
               (Evidence("same core", "tx-batch"), Evidence("RPS", "tx-batch (RPS)"))),
    )


MEMORY_SCENARIOS = ("rx-zc-batch", "rx-batch")
WORK_PLACEMENT = (
    "Where the work runs: the generator's CPU also does the kernel's receive work (redirect into\n"
    "the veth, its NAPI poll, the XDP program and the copy into the UMEM, or the stack up to the\n"
    "AF_PACKET socket); the receiver's CPU figure is its own process only. 'x2 proc': a receiver\n"
    "process per queue, each pinned to the CPU of the other queue's generator, so on this\n"
    "2-CPU machine the two processes share the CPUs with the kernel's work rather than each\n"
    "getting a core of its own. Sends: the sender runs on the receiver's CPU, and veth runs the\n"
    "peer's receive work on the sending CPU too; the (RPS) rows steer that work to the other CPU."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Many short rounds rather than a few long ones: the median then survives the bursts of
    # other work on a shared machine that spoil a round or two.
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all scenarios (default 5)")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds of load per scenario and round (default 3)")
    parser.add_argument("--batch", type=int, default=64, help="frames per batched call (default 64)")
    parser.add_argument("--memory-packets", type=int, default=10_000_000,
                        help="packets of the memory run (default 10 million; 0 skips it)")
    parser.add_argument("--drain-backlog", type=int, default=50_000,
                        help="frames per drain of cmd/drain.py (default 50000; 0 skips the drains)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO",
                        help="only these scenarios (their AF_PACKET baselines always run)")
    parser.add_argument("--quick", action="store_true",
                        help="about a minute and a half: 1 round of 1.5 s, a 2-million-packet "
                             "memory run, 1 drain round")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="where results go")
    args = parser.parse_args(argv)
    if args.drain_backlog and not 1000 <= args.drain_backlog < drain.RING:
        parser.error(f"--drain-backlog must be 0 (no drains) or 1000..{drain.RING - 1}")
    if args.quick:
        args.rounds, args.duration, args.memory_packets = 1, 1.5, min(args.memory_packets, 2_000_000)
    if args.only:
        known = {scenario.name for scenario in SCENARIOS}
        unknown = set(args.only) - known
        if unknown:
            parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(known)}")
    return args


def selected_scenarios(only: Sequence[str] | None, rps: bool) -> list[Scenario]:
    """The ``--only`` scenarios and their groups' baselines (all by default); none with RPS
    when the private sysfs could not be had."""
    chosen = [s for s in SCENARIOS if (rps or not s.rps) and (not only or s.name in only)]
    groups = set()
    for s in chosen:  # a duplex run measures both directions
        groups |= {"tx (RPS)"} if s.rps else {"rx", "tx"} if s.kind == "duplex" else {s.direction}
    baselines = {benchreport.BASELINE[group] for group in groups}
    return [s for s in SCENARIOS if s in chosen or s.name in baselines]


def build_testbed(args: argparse.Namespace, cpus: list[int]) -> Testbed:
    """Veth pairs with 1 and 2 queues, and a generator for each pair and CPU."""
    receiver_cpu, generator_cpu = cpus[0], cpus[1]
    if receiver_cpu % 2 == generator_cpu % 2:
        raise BenchError(f"CPUs {receiver_cpu} and {generator_cpu} map to the same queue of a "
                         f"2-queue veth (queue = CPU mod 2); the multi-queue runs need both queues")
    testbed = Testbed(pairs={}, generators={}, receiver_cpu=receiver_cpu,
                      generator_cpu=generator_cpu, duration=args.duration, batch=args.batch)
    try:
        for queues in (1, 2):
            pair = VethPair.create(f"xbench{queues}a", f"xbench{queues}b", queues)
            testbed.pairs[queues] = pair
            frame = runloop.bench_frame(FRAME_SIZE, b"\x02\x00\x00\x00\x00\x02")
            for cpu in (receiver_cpu, generator_cpu):
                testbed.generators[(queues, cpu)] = TrafficGenerator(pair.peer, frame, cpu=cpu)
    except BaseException:
        tear_down(testbed)
        raise
    return testbed


def tear_down(testbed: Testbed) -> None:
    """Stop the tools, unload the generators, delete the veth pairs (the namespace goes too)."""
    testbed.kill_children()
    for generator in testbed.generators.values():
        generator.close()
    for pair in testbed.pairs.values():
        pair.delete()


def run_rounds(testbed: Testbed, scenarios: list[Scenario], rounds: int) -> list[Measurement]:
    """Every scenario once per round, in reverse order every other round."""
    measurements: list[Measurement] = []
    for round_number in range(1, rounds + 1):
        order = scenarios if round_number % 2 else scenarios[::-1]
        for scenario in order:
            for result in measure(scenario, testbed, round_number):
                measurements.append(result)
                print(f"round {round_number}/{rounds}  {result.scenario:<20} offered "
                      f"{result.offered_pps:>11,.0f}  received {result.received_pps:>11,.0f} pps  "
                      f"loss {result.loss:6.1%}  CPU {result.cpu:5.0%}", flush=True)
    return measurements


def run_memory(testbed: Testbed, scenario: str, packets: int) -> dict[str, Any]:
    """Receive ``packets`` frames in one run; the receiver reports its RSS along the way."""
    args = ["--iface", testbed.pairs[1].capture, "--scenario", scenario, "--batch", str(testbed.batch),
            "--count", str(packets)]
    cap = 60 + packets / 100_000  # seconds: even at 0.1 Mpps the run would end
    receiver = ToolProcess(testbed, "xdp", [*args, "--duration", str(cap)], {testbed.receiver_cpu})
    generator = testbed.generator(1, testbed.generator_cpu)
    deadline = time.monotonic() + cap
    while receiver.process.poll() is None and time.monotonic() < deadline:
        generator.send_for(0.5)
    summary = receiver.summary() if receiver.process.poll() is not None else receiver.stop()
    rss = [line["rss_kib"] for line in summary["per_second"]]
    result = {
        "scenario": scenario, "packets": summary["rx_packets"], "seconds": summary["seconds"],
        "rss_kib_start": summary["rss_kib_start"], "rss_kib_after_1s": rss[0] if rss else None,
        "rss_kib_end": summary["rss_kib_end"], "rss_kib_max": summary["rss_kib_max"],
    }
    result["flat"] = benchreport.memory_flat(result)
    print(f"memory  {scenario:<12} {result['packets']:,} packets in {result['seconds']:.1f} s: "
          f"RSS {result['rss_kib_start']:,} KiB at start, {result['rss_kib_end']:,} KiB at the end, "
          f"{result['rss_kib_max']:,} KiB at most", flush=True)
    return result


def run_drains(args: argparse.Namespace, cpu: int) -> dict[str, drain.DrainResult]:
    """``cmd/drain.py`` in a subprocess (it enters a network namespace of its own and pins
    itself to ``cpu``); its readers' drain rates, with the batch sizes of the live runs."""
    batches = sorted({*drain.BATCHES, args.batch})
    print(f"drain   {args.rounds} round(s): each reader empties a backlog of "
          f"{args.drain_backlog:,} frames on CPU {cpu} (cmd/drain.py)", flush=True)
    command = [sys.executable, str(CMD_DIR / "drain.py"), "--json", "--rounds", str(args.rounds),
               "--backlog", str(args.drain_backlog), "--cpu", str(cpu),
               "--batches", *map(str, batches)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        output, errors = process.communicate(timeout=120 + 60 * args.rounds)
    finally:
        if process.poll() is None:  # interrupted or timed out: it must not outlive the bench
            process.kill()
            process.communicate()
    if process.returncode != 0:
        raise BenchError(f"drain.py failed: {errors.strip()}")
    return {name: drain.DrainResult(**values) for name, values in json.loads(output)["drains"].items()}


def report(args: argparse.Namespace, started: float, cpus: list[int], scenarios: list[Scenario],
           measurements: list[Measurement], memory: list[dict[str, Any]],
           drains: dict[str, drain.DrainResult], idle: float) -> None:
    rows = benchreport.rows_from(measurements, scenarios)
    checks = benchreport.target_lines(rows, targets(args.batch), measurements, drains)
    by_name = {row.scenario: row for row in rows}
    print(f"\n{FRAME_SIZE}-byte frames, medians of {args.rounds} round(s) of {args.duration:g} s; "
          f"receiver/sender on CPU {cpus[0]}, generator on CPU {cpus[1]}; batch {args.batch}; "
          f"'vs AF_PACKET' compares received pps with its group's baseline; "
          f"CPUs {idle:.0%} idle just before the run\n")
    print(benchreport.format_table(rows))
    print(f"\n{WORK_PLACEMENT}")
    if drains:
        print(f"\nDrain rates (cmd/drain.py): each reader empties a ready backlog of "
              f"{args.drain_backlog:,} {FRAME_SIZE}-byte frames on CPU {cpus[0]}; medians of "
              f"{args.rounds} round(s)\n")
        print(drain.format_table(drains))
    print("\nTargets (one queue, native mode, one run; each verdict names its measure):")
    print(benchreport.format_targets(checks))
    print("Other checks:")
    scaling: dict[str, Any] = {}
    if "rx-zc-batch" in by_name and "rx-zc-batch x2 proc" in by_name:
        one, two = by_name["rx-zc-batch"].received_pps, by_name["rx-zc-batch x2 proc"].received_pps
        scaling = {"one_process_pps": one, "two_processes_pps": two, "ratio": two / one}
        print(f"  info      receive scaling, a process per queue: 1 process {one:,.0f} pps, "
              f"2 processes {two:,.0f} pps in all ({two / one:.2f}x)")
    send_costs = benchreport.send_costs(measurements)
    for line in send_costs["lines"]:
        print(f"  info      {line}")
    for run in memory:
        verdict = "PASS" if run["flat"] else "FAIL"
        print(f"  {verdict:<9} memory flat over {run['packets']:,} packets ({run['scenario']}): RSS "
              f"{run['rss_kib_start']:,} -> {run['rss_kib_end']:,} KiB "
              f"(allowed growth {benchreport.FLAT_RSS_GROWTH_KIB:,} KiB)")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    args.output.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.output / f"bench-{stamp}.json", args.output / f"bench-{stamp}.png"
    settings = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1), "rounds": args.rounds,
        "duration": args.duration, "batch": args.batch, "frame_size": FRAME_SIZE,
        "drain_backlog": args.drain_backlog,
        "receiver_cpu": cpus[0], "generator_cpu": cpus[1], "idle_before": idle,
        "kernel": platform.release(),
        "python": platform.python_version(), "xdppacket": xdppacket.__version__,
    }
    benchreport.write_json(json_path, settings, measurements, rows, checks,
                           {"drains": {name: asdict(row) for name, row in drains.items()},
                            "memory": memory, "scaling": scaling, "send_costs": send_costs["costs"]})
    benchreport.chart(png_path, rows, drains, f"xdppacket vs AF_PACKET, {FRAME_SIZE}-byte frames, "
                                              f"medians of {args.rounds} round(s) (kernel {platform.release()})")
    print(f"\nwrote {json_path}\nwrote {png_path}")


def enter_private_mounts() -> bool:
    """The private sysfs the RPS scenarios need; without it they are left out, said so."""
    try:
        enter_private_sysfs()
    except OSError as error:
        print(f"bench: no private sysfs, so no RPS scenarios: {error}", flush=True)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    drains: dict[str, drain.DrainResult] = {}
    with bench_run("bench", roles="one receives, one generates",
                   interrupted="the tools are stopped and the veth pairs deleted") as cpus:
        started = time.time()
        scenarios = selected_scenarios(args.only, rps=enter_private_mounts())
        testbed = build_testbed(args, cpus)
        idle = idle_share(1.0)
        if idle < 0.9:
            print(f"bench: the CPUs were only {idle:.0%} idle just now; other work will skew the "
                  f"figures (the medians of several rounds soften that)", flush=True)
        try:
            measurements = run_rounds(testbed, scenarios, args.rounds)
            memory = [run_memory(testbed, scenario, args.memory_packets)
                      for scenario in MEMORY_SCENARIOS if args.memory_packets]
        finally:
            tear_down(testbed)
        if args.drain_backlog:
            try:
                drains = run_drains(args, cpus[0])
            except BenchError as error:  # the live figures still stand; the targets say MISSING
                print(f"bench: {error}", file=sys.stderr, flush=True)
    report(args, started, cpus, scenarios, measurements, memory, drains, idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
