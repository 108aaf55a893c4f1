"""Read-path cost per frame: thread CPU time of each read method, for two source trees.

Issue 8 ("Speed must not drop") compares the read path of this tree with an older
commit's. Wall-clock rates (``cmd/drain.py``) move with whatever else the shared machine
runs; the CPU time the reading thread itself spends (``time.thread_time_ns``, its
system calls included) moves much less. So: a backlog of ``--backlog`` 64-byte frames is
put in the rx ring (``TrafficGenerator`` into the far end of a veth pair), then one read
method drains it, and the thread CPU time of the drain divided by the frames is the cost.

Each tree is measured in a subprocess of its own, with ``PYTHONPATH`` set to that tree,
so the old and the new ``xdppacket`` never meet in one interpreter. Rounds alternate the
order of the trees and the medians over rounds are quoted. A tree is given as
``LABEL=PATH`` (``PATH`` holds the ``xdppacket`` package), optionally with ``+batch``
(open the sockets with ``OptBatchTimestamps``: one time per read, as old code did).

``--instructions`` counts instructions instead (``valgrind --tool=callgrind``, user space
only, repeatable to the instruction whatever else the machine does): per tree and method,
a child drains one backlog of 1000 frames and another three of 7000, with the garbage
collector off and a fixed hash seed, and the difference divided by the 20,000 frames it
adds is the cost. It says nothing of system calls or memory stalls; thread time does.

Runs as root in a private network namespace of its own (the veth pair lives and dies
there). Usage::

    python cmd/readpath_bench.py old=/work/wt-old new+batch=. new=. [--rounds 5]
        [--backlog 4000] [--repeats 3] [--batch 64] [--cpu 0] [--json] [--instructions]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchmain import bench_run
    from cmd.benchnet import VethPair
else:
    from benchmain import bench_run
    from benchnet import VethPair

FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + bytes(50)  # 64 bytes
CAPTURE, PEER = "xrpath0", "xrpath1"
METHODS = ("read_packet_data", "zero_copy_read_packet_data", "read_multi_packets",
           "zero_copy_read_multi_packets")
#: Not a read method: a forwarding loop (writable zero-copy batches, MACs swapped, written back
#: out of the same socket in place), as examples/l2fwd_1link.py runs it. Trees from before
#: forwarding without a copy cannot run it; name it with ``--methods``.
FORWARD = "forward"
# Room for the whole backlog, so the kernel never drops while it is built.
RING = 8192


# ------------------------------------------------------------------ the child: one tree
def child_main(args: argparse.Namespace) -> int:
    """Measure every method on the tree this interpreter imports; print ns/frame as JSON."""
    import xdppacket
    from xdppacket import (
        IO_MODE_NONBLOCK,
        XDP_MODE_DRV,
        OptFrameSize,
        OptIoMode,
        OptNumFrames,
        OptPollTimeout,
        OptRingSize,
        OptXDPMode,
        XDPPacket,
        XDPTimeoutError,
    )
    try:
        from xdppacket.testing import TrafficGenerator
    except ImportError:  # older trees kept it at the top level
        from xdppacket import TrafficGenerator  # type: ignore[no-redef]

    options: list[object] = [OptXDPMode(XDP_MODE_DRV), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(0),
                             OptNumFrames(RING), OptRingSize(RING), OptFrameSize(2048)]
    if args.batch_timestamps:
        options.append(xdppacket.OptBatchTimestamps())
    os.sched_setaffinity(0, {args.cpu})
    if args.method:
        gc.disable()  # instruction counts: no collection whose timing shifts with every allocation
    generator = TrafficGenerator(PEER, FRAME, cpu=args.cpu)
    costs: dict[str, list[float]] = {}
    try:
        for method in [args.method] if args.method else args.methods:
            with XDPPacket(CAPTURE, *options) as sock:
                drain = _drain(sock, method, args.batch, XDPTimeoutError)
                for _ in range(args.repeats):
                    generator.send(args.backlog)
                    time.sleep(0.05)  # let the kernel finish delivering the last frames
                    started = time.thread_time_ns()
                    drained = drain()
                    spent = time.thread_time_ns() - started
                    if drained != args.backlog:
                        raise RuntimeError(f"{method}: drained {drained} frames, expected {args.backlog}")
                    costs.setdefault(method, []).append(spent / drained)
    finally:
        generator.close()
    # The cheapest repeat: interference (another process, an interrupt) only adds.
    print(json.dumps({method: min(values) for method, values in costs.items()}))
    return 0


def _drain(sock: Any, method: str, batch: int, timeout_error: type[Exception]) -> Callable[[], int]:
    """A loop that empties the ring with ``method``, as an application would; returns the frames."""
    if method == FORWARD:
        return _forward(sock, batch)
    read = getattr(sock, method)
    if "multi" in method:
        def drain_batches() -> int:
            count = 0
            while True:
                taken = len(read(batch)[0])
                if not taken:
                    return count
                count += taken
        return drain_batches

    def drain_singles() -> int:
        count = 0
        try:
            while True:
                read()
                count += 1
        except timeout_error:
            return count
    return drain_singles


def _forward(sock: Any, batch: int) -> Callable[[], int]:
    """Forward the backlog back out in place: read writable views, swap MACs, write them."""
    read = sock.zero_copy_read_multi_packets
    write = sock.write_multi_packets
    mac_pair = struct.Struct("6s6s")
    unpack, pack = mac_pair.unpack_from, mac_pair.pack_into

    def forward_all() -> int:
        count = 0
        while True:
            frames = read(batch, writable=True)[0]
            if not frames:
                return count
            for frame in frames:
                destination, source = unpack(frame)
                pack(frame, 0, source, destination)
            sent = write(frames)
            while sent < len(frames):
                sent += write(frames[sent:])
            count += len(frames)
    return forward_all


# ------------------------------------------------------------------ the parent: rounds
def parse_tree(text: str) -> tuple[str, str, bool]:
    """``LABEL[+batch]=PATH`` -> (label, absolute path, OptBatchTimestamps?)."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give a tree as LABEL=PATH or LABEL+batch=PATH")
    if not os.path.isdir(os.path.join(path, "xdppacket")):
        raise argparse.ArgumentTypeError(f"{path!r} holds no xdppacket package")
    return label, os.path.abspath(path), label.endswith("+batch")


def run_tree(tree: tuple[str, str, bool], args: argparse.Namespace) -> dict[str, float]:
    """One round on one tree, in a subprocess importing xdppacket from that tree only."""
    _, path, batch_timestamps = tree
    argv = [sys.executable, os.path.abspath(__file__), "--child", "--methods", *args.methods, "--backlog", str(args.backlog),
            "--repeats", str(args.repeats), "--batch", str(args.batch), "--cpu", str(args.cpu)]
    if batch_timestamps:
        argv.append("--batch-timestamps")
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"{tree[0]}: {result.stderr.strip()}")
    costs: dict[str, float] = json.loads(result.stdout)
    return costs


# --instructions: two drains' worth of frames; the difference is what the count is per frame of.
_SMALL_RUN, _LARGE_RUN = (1, 1000), (3, 7000)
_COUNTED_FRAMES = _LARGE_RUN[0] * _LARGE_RUN[1] - _SMALL_RUN[0] * _SMALL_RUN[1]


def count_instructions(tree: tuple[str, str, bool], method: str, args: argparse.Namespace) -> float:
    """User-space instructions per frame of ``method`` on ``tree`` (callgrind, two runs)."""
    _, path, batch_timestamps = tree
    totals = []
    for repeats, backlog in (_SMALL_RUN, _LARGE_RUN):
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                os.path.abspath(__file__), "--child", "--method", method, "--backlog", str(backlog),
                "--repeats", str(repeats), "--batch", str(args.batch), "--cpu", str(args.cpu)]
        if batch_timestamps:
            argv.append("--batch-timestamps")
        env = {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": "0"}
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=900)
        collected = re.search(r"Collected : (\d+)", result.stderr)
        if result.returncode != 0 or collected is None:
            raise RuntimeError(f"{tree[0]} {method} under callgrind: {result.stderr.strip()[-500:]}")
        totals.append(int(collected.group(1)))
    return (totals[1] - totals[0]) / _COUNTED_FRAMES


def instructions_table(trees: list[tuple[str, str, bool]], args: argparse.Namespace) -> str:
    """Instructions per frame, every method on every tree (deterministic: one run each)."""
    counts = {label: {method: count_instructions((label, path, stamps), method, args) for method in args.methods}
              for label, path, stamps in trees}
    first = trees[0][0]
    lines = [f"{'instructions/frame':34s}" + "".join(f"{label:>16s}" for label in counts) + f"   (vs {first})"]
    for method in args.methods:
        name = method + (f"({args.batch})" if "multi" in method or method == FORWARD else "")
        values = [counts[label][method] for label in counts]
        ratios = " ".join(f"{v / values[0]:.3f}" for v in values[1:])
        lines.append(f"{name:34s}" + "".join(f"{v:16.0f}" for v in values) + f"   {ratios}")
    return "\n".join(lines)


def measure(trees: list[tuple[str, str, bool]], args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """ns/frame by tree label, method, round; rounds alternate the order of the trees."""
    results: dict[str, dict[str, list[float]]] = {label: {} for label, _, _ in trees}
    for round_number in range(args.rounds):
        order = trees if round_number % 2 == 0 else trees[::-1]
        for tree in order:
            for method, cost in run_tree(tree, args).items():
                results[tree[0]].setdefault(method, []).append(cost)
            if not args.json:
                print(f"round {round_number + 1}: {tree[0]} done", file=sys.stderr)
    return results


def format_table(results: dict[str, dict[str, list[float]]], batch: int) -> str:
    labels = list(results)
    first = labels[0]
    header = f"{'ns/frame (median)':34s}" + "".join(f"{label:>16s}" for label in labels)
    lines = [header + f"   (vs {first})"]
    for method in results[first]:
        name = method + (f"({batch})" if "multi" in method or method == FORWARD else "")
        medians = [statistics.median(results[label][method]) for label in labels]
        ratios = " ".join(f"{m / medians[0]:.3f}" for m in medians[1:])
        lines.append(f"{name:34s}" + "".join(f"{m:16.0f}" for m in medians) + f"   {ratios}")
    lines.append("rounds:")
    for label in labels:
        for method in results[label]:
            values = " ".join(f"{v:.0f}" for v in results[label][method])
            lines.append(f"  {label:14s} {method:30s} {values}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", type=parse_tree, metavar="LABEL[+batch]=PATH")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all trees (default 5)")
    parser.add_argument("--backlog", type=int, default=4000, help=f"frames per drain (default 4000, < {RING})")
    parser.add_argument("--repeats", type=int, default=3, help="drains per method and round; the cheapest counts")
    parser.add_argument("--batch", type=int, default=64, help="max_packets of the batched reads (default 64)")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU that fills and drains (default 0)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per frame with valgrind's callgrind instead of timing")
    parser.add_argument("--methods", nargs="+", choices=(*METHODS, FORWARD), default=list(METHODS),
                        help=f"what to measure (default: the four read methods; {FORWARD!r}: an l2fwd loop)")
    parser.add_argument("--method", choices=(*METHODS, FORWARD), help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-timestamps", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 100 <= args.backlog < RING:
        parser.error(f"--backlog must be 100..{RING - 1}")
    if min(args.rounds, args.repeats, args.batch) < 1:
        parser.error("--rounds, --repeats and --batch must be positive")
    if args.cpu not in os.sched_getaffinity(0):
        parser.error(f"--cpu {args.cpu} is not among this process's CPUs")
    if not args.child and not args.trees:
        parser.error("name at least one tree, e.g. new=.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    # The children inherit the private network namespace.
    with bench_run("readpath_bench", roles=None, interrupted="the veth pair is deleted"), \
            VethPair.create(CAPTURE, PEER, queues=1):
        if args.instructions:
            print(instructions_table(args.trees, args))
            return 0
        results = measure(args.trees, args)
    if args.json:
        print(json.dumps({"backlog": args.backlog, "batch": args.batch, "rounds": args.rounds,
                          "trees": {label: path for label, path, _ in args.trees}, "ns_per_frame": results},
                         indent=2))
    else:
        print(format_table(results, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
