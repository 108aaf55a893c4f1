"""The forwarding benchmark (``cmd/l2fwd_bench.py``) in its quickest form: one round, one
low rate, both topologies, all three forwarders (the l2fwd examples, the C l2fwd built by
``make l2fwd-c``, the AF_PACKET one).

It runs as ``make bench`` runs it, a subprocess, which makes its own network namespace
(inside the test's private one). What is checked is real: the far end counts nothing
without a forwarder, every forwarder gets the frames there, and each forwarder's own
closing counters saw at least as many frames as the far end counted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.netns import PrivateNetns

REPO_ROOT = Path(__file__).resolve().parents[2]
RATE = 20_000  # far below what any of the three forwarders takes here
SECONDS = 0.3
BATCH = 7  # not the default: both AF_XDP forwarders must forward with what the bench passes
FORWARDERS = ("xdppacket", "afpacket", "c")
LINKS = ("1link", "2link")


def build_c_l2fwd() -> None:
    """The Makefile's target (quick when built: `make test` builds it first)."""
    build = subprocess.run(["make", "-C", str(REPO_ROOT), "l2fwd-c"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=600, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    assert os.access(REPO_ROOT / "build" / "xsk_l2fwd", os.X_OK)


def run_quick_bench() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cmd" / "l2fwd_bench.py"), "--quick", "--steps", str(RATE),
         "--duration", str(SECONDS), "--batch", str(BATCH), "--json"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def counter(lines: list[str], name: str) -> int:
    """The largest ``name=N`` among a forwarder's closing ``total`` lines (one per interface)."""
    values = [int(match) for line in lines for match in re.findall(rf"\b{name}=(\d+)", line)]
    assert values, f"no {name} in {lines}"
    return max(values)


def test_quick_bench_forwards_with_all_three(private_netns: PrivateNetns) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the forwarding benchmark needs 2 CPUs (one forwards, one generates)")
    build_c_l2fwd()
    document = run_quick_bench()
    assert document["settings"]["batch"] == BATCH

    assert [control["link"] for control in document["controls"]] == list(LINKS)
    for control in document["controls"]:
        assert control["sent"] > 0
        assert control["forwarded"] == 0, f"frames reached the far end with no forwarder: {control}"

    runs = {(run["link"], run["forwarder"]): run for run in document["runs"]}
    assert sorted(runs) == sorted((link, name) for link in LINKS for name in FORWARDERS)
    totals = {(entry["link"], entry["forwarder"]): entry["totals"] for entry in document["forwarder_totals"]}
    for key, run in runs.items():
        assert run["rate"] == RATE
        # The generator's call starts up for some ms of the window: the frames asked for count from the first.
        assert run["asked"] > 0.5 * RATE * SECONDS, run
        assert run["sent"] >= 0.9 * run["asked"], run
        assert run["forwarded"] <= run["sent"], run  # nothing counted but forwarded frames
        assert run["forwarded"] >= 0.9 * run["sent"], run
        assert counter(totals[key], "rx_packets") >= run["forwarded"], (key, totals[key])
        assert counter(totals[key], "tx_packets") >= run["forwarded"], (key, totals[key])

    for link in LINKS:
        peaks = document["verdict"][link]["peak_pps"]
        assert set(peaks) == set(FORWARDERS)
        assert all(peak > 0 for peak in peaks.values())


@pytest.mark.parametrize("batch", ["0", "1025", "many"])
def test_the_c_forwarder_refuses_a_batch_outside_its_ring(batch: str) -> None:
    build_c_l2fwd()
    result = subprocess.run([str(REPO_ROOT / "build" / "xsk_l2fwd"), "-i", "nosuchif0", "--batch", batch],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30, check=False)
    assert result.returncode == 2
    assert "--batch N (1-1024)" in result.stderr
