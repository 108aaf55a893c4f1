"""Smoke test of the benchmark tools: ``cmd/xdp.py`` and ``cmd/afpacket.py`` run for a moment
on a veth pair (receivers fed by the TrafficGenerator), count packets and print valid JSON;
``cmd/drain.py`` drains a small backlog with every reader.

The tools are scripts, so they run as ``make bench`` runs them: in a subprocess, which
inherits the test's private network namespace (``cmd/drain.py`` makes one of its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.example_runs import read_line
from tests.netns import VethPair, make_test_frame, run_command
from xdppacket.testing import TrafficGenerator

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_SECONDS = 1.2  # one per-second line, and short enough for the suite
GENERATED_FRAMES = 100_000


def start_tool(tool: str, ifname: str, scenario: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "cmd" / f"{tool}.py"), "--iface", ifname,
         "--scenario", scenario, "--duration", str(RUN_SECONDS), "--json"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_tool(tool: str, scenario: str, pair: VethPair, *, feed: bool) -> dict[str, Any]:
    """Run ``tool`` to its end on ``pair.capture``; with ``feed``, generate frames towards it."""
    process = start_tool(tool, pair.capture, scenario)
    try:
        ready = read_line(process, stderr=True, timeout=30)
        assert ready.startswith("ready:"), ready
        if feed:
            frame = make_test_frame(64, 1, pair.capture_mac, pair.peer_mac)
            with TrafficGenerator(pair.peer, frame) as generator:
                generator.send(GENERATED_FRAMES)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    summary: dict[str, Any] = json.loads(stdout)
    return summary


@pytest.mark.parametrize(("tool", "scenario"), [("xdp", "rx-zc-batch"), ("afpacket", "rx")])
def test_receivers_count_generated_frames(tool: str, scenario: str, veth_pair: VethPair) -> None:
    run_command("ethtool", "-K", veth_pair.capture, "gro", "on")  # AF_PACKET needs it (no XDP program)
    summary = run_tool(tool, scenario, veth_pair, feed=True)
    assert summary["tool"] == tool
    assert 0 < summary["rx_packets"] <= GENERATED_FRAMES
    assert summary["per_second"], "no per-second line in a run longer than a second"


@pytest.mark.parametrize(("tool", "scenario"), [("xdp", "tx-batch"), ("afpacket", "tx")])
def test_senders_count_sent_frames(tool: str, scenario: str, veth_pair: VethPair) -> None:
    summary = run_tool(tool, scenario, veth_pair, feed=False)
    assert summary["tx_packets"] > 0
    assert summary["tx_pps"] > 0


def test_drain_reports_every_reader() -> None:
    """``cmd/drain.py`` enters a network namespace of its own, so it runs as a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cmd" / "drain.py"), "--rounds", "1", "--backlog", "2000",
         "--batches", "64", "--json"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    drains = json.loads(result.stdout)["drains"]
    assert set(drains) == {"AF_PACKET recv_into", "read_packet_data", "zero_copy_read_packet_data",
                           "read_multi_packets(64)", "zero_copy_read_multi_packets(64)",
                           "read_packet_data, OptBatchTimestamps",
                           "zero_copy_read_multi_packets(64), OptBatchTimestamps"}
    for name, row in drains.items():
        assert len(row["rounds_pps"]) == 1, name
        assert row["median_pps"] > 0, name
    assert drains["AF_PACKET recv_into"]["ratio_to_afpacket"] == 1.0


def run_capture_bench(*args: str) -> dict[str, Any]:
    """``cmd/capture_bench.py --json`` (it enters a network namespace of its own)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cmd" / "capture_bench.py"), *args, "--json"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_capture_bench_compares_both_tools() -> None:
    """A tiny run (one slow step, 0.3 s): both tools' rows, counts that add up, the verdict,
    and the filter scenario (xdppacket's row, or the note saying why it is missing)."""
    document = run_capture_bench("--rounds", "1", "--duration", "0.3", "--steps", "20000")
    assert [(row["tool"], row["rate"]) for row in document["steps"]] == [("xdppacket", 20000), ("tcpdump", 20000)]
    for run in document["runs"]:
        assert 0 < run["offered"] <= run["asked"], run
        assert 0 < run["in_file"] <= run["offered"], run
        assert run["loss"] == pytest.approx(1 - run["in_file"] / run["asked"]), run
    for row in document["steps"]:
        assert row["total_ns"] == pytest.approx(row["tool_ns"] + row["softirq_ns"])
        assert row["tool_ns"] > 0  # the tool ran (schedstat counts nanoseconds)
    assert set(document["verdict"]["lossless_pps"]) == {"xdppacket", "tcpdump"}
    assert document["verdict"]["target"] in {"PASS", "FAIL", "UNDECIDED"}
    filter_runs = {run["tool"]: run for run in document["filter"]["runs"]}
    expected = {"none", "tcpdump", "xdppacket"} if document["filter"]["note"] is None else {"none", "tcpdump"}
    assert set(filter_runs) == expected, document["filter"]["note"]
    tcpdump = filter_runs["tcpdump"]
    assert tcpdump["matching_offered"] == tcpdump["offered"] // 100
    assert tcpdump["in_file"] <= tcpdump["matching_offered"]
