"""The asyncio examples run as documented against a veth pair, with real frames.

``examples/async_capture.py`` writes a pcap file and serves counters over HTTP while it
runs; ``examples/async_pingpong.py`` bounces frames between the two ends of the pair.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.example_runs import EXAMPLE_TIMEOUT_S, ctrl_c, example_running, finish, read_line
from tests.netns import VethPair
from tests.xdp_helpers import frames_from_peer, send_frames
from xdppacket.pcap import PcapReader

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_counters(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        counters: dict[str, int] = json.loads(response.read())
        return counters


@pytest.mark.parametrize("stop", ["ctrl-c", "count"])
def test_async_capture_writes_the_frames_to_pcap_and_serves_counters(
    veth_pair: VethPair, tmp_path: Path, stop: str
) -> None:
    frames = frames_from_peer(veth_pair, 50)
    pcap = tmp_path / "out.pcap"
    port = free_port()
    args = [veth_pair.capture, "-w", str(pcap), "--mode", "skb", "--http", str(port)]
    if stop == "count":
        args += ["-c", "30"]
    with example_running("examples/async_capture.py", *args) as example:
        assert read_line(example) == f"capturing on {veth_pair.capture} queues 0-0 into {pcap}"
        assert http_counters(port)["written"] == 0
        send_frames(veth_pair.peer, frames)
        if stop == "ctrl-c":
            deadline = time.monotonic() + EXAMPLE_TIMEOUT_S
            while http_counters(port)["written"] < len(frames):
                assert time.monotonic() < deadline, "the example did not write every frame"
                time.sleep(0.02)
            assert http_counters(port) == {"written": 50, "rx_packets": 50,
                                           "rx_bytes": sum(map(len, frames)), "rx_dropped": 0}
            ctrl_c(example)
        output = finish(example)
    written = 50 if stop == "ctrl-c" else 30
    final = dict(word.split("=") for word in output.split())
    assert (final["written"], final["rx_dropped"]) == (str(written), "0")
    with PcapReader(pcap) as reader:
        assert [data for data, _ in reader] == frames[:written]


def test_async_pingpong_bounces_every_frame(veth_pair: VethPair) -> None:
    with example_running("examples/async_pingpong.py", veth_pair.capture, veth_pair.peer,
                         "--count", "300", "--mode", "skb") as example:
        output = finish(example)
    words = output.split()
    assert words[:5] == ["300", "round", "trips,", "0", "lost:"], output


def test_aio_bench_measures_every_reader_under_every_load() -> None:
    """``cmd/aio_bench.py`` (one short round; it makes its own namespace) reports real counts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cmd" / "aio_bench.py"), "--rounds", "1", "--seconds", "0.2", "--json"],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    combinations = {(row["load"], row["reader"]) for row in report["rows"]}
    assert combinations == {(load, reader) for load in ("idle", "blocking", "python")
                            for reader in ("direct", "thread", "process")}
    for one in report["rounds"]:
        assert 0 < one["delivered"] <= one["offered"], one
