"""The capture benchmark's own arithmetic (``cmd/capture_bench.py``): counting the records of
a pcap file, and the lossless rate and verdict from hand-made rows (no kernel needed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from xdppacket.pcap import PcapWriter
from xdppacket.stats import CaptureInfo

# cmd/ is no package (the stdlib has a `cmd`): its modules import each other by bare name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cmd"))

if TYPE_CHECKING:
    from cmd.benchmain import BenchError
    from cmd.capture_bench import StepRow, count_pcap_records, lossless_rate, verdict
else:
    from benchmain import BenchError
    from capture_bench import StepRow, count_pcap_records, lossless_rate, verdict


def write_pcap(path: Path, sizes: list[int]) -> None:
    with PcapWriter(str(path)) as writer:
        for number, size in enumerate(sizes):
            writer.write(bytes([number % 256]) * size, CaptureInfo(number, size, size, 1, 0))


@pytest.mark.parametrize("sizes", [[64] * 1000, [64, 60, 1514, 64, 4], [], [64]])
def test_counts_every_record(tmp_path: Path, sizes: list[int]) -> None:
    path = tmp_path / "frames.pcap"
    write_pcap(path, sizes)
    assert count_pcap_records(path) == len(sizes)


def test_equal_lengths_but_one_record_differs(tmp_path: Path) -> None:
    """A record of another length whose file size still divides evenly: the walk, not the division."""
    path = tmp_path / "frames.pcap"
    write_pcap(path, [64, 144, 64])  # 80 + 160 + 80 bytes: four 80-byte records by size alone
    assert count_pcap_records(path) == 3


def test_a_record_cut_short_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "frames.pcap"
    write_pcap(path, [64, 64, 64])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BenchError, match="cut short"):
        count_pcap_records(path)


def row(tool: str, rate: int, loss: float, ns: float, rounds: int = 3) -> StepRow:
    return StepRow(tool=tool, rate=rate, rounds=rounds, offered_pps=rate, captured_pps=rate * (1 - loss),
                   loss=loss, shortfall=0.0, tool_dropped=0, tool_ns=ns, user_share=None, softirq_ns=0.0,
                   waited=0.0)


def test_lossless_rate_is_the_highest_sustained_step() -> None:
    rows = [row("tcpdump", 100, 0.0, 500), row("tcpdump", 200, 0.0005, 400), row("tcpdump", 300, 0.002, 300),
            row("tcpdump", 400, 0.0, 300, rounds=1)]  # run in 1 round of 3 (skipped in 2): not sustained
    assert lossless_rate(rows, "tcpdump", rounds=3) == 200
    assert lossless_rate(rows, "xdppacket", rounds=3) is None


def test_verdict_compares_rates_and_cpu_at_the_common_rate() -> None:
    rows = [row("xdppacket", 100, 0.0, 900), row("xdppacket", 200, 0.0, 800), row("tcpdump", 100, 0.0, 600),
            row("tcpdump", 200, 0.01, 500)]
    result = verdict(rows, rounds=3)
    assert result["lossless_pps"] == {"xdppacket": 200, "tcpdump": 100}
    assert result["rate_ratio"] == 2.0
    assert result["common_rate"] == 100
    assert result["cpu_ratio"] == pytest.approx(1.5)
    assert result["target"] == "FAIL"  # faster, but more CPU per frame
    cheaper = [row("xdppacket", 100, 0.0, 300), *rows[1:]]
    assert verdict(cheaper, rounds=3)["target"] == "PASS"
