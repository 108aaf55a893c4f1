"""The benchmark's judging logic (``cmd/benchreport.py``): verdicts and send costs, from
hand-made measurements (no kernel needed). ``make bench`` prints exactly these."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# cmd/ is no package (the stdlib has a `cmd`): its modules import each other by bare name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cmd"))

if TYPE_CHECKING:
    from cmd import benchreport, drain
    from cmd.bench import targets
    from cmd.benchrun import Measurement, Scenario
else:
    import benchreport
    import drain
    from bench import targets
    from benchrun import Measurement, Scenario

SCENARIOS = (
    Scenario("AF_PACKET rx", "afpacket", "rx", "socket.recv_into", ()),
    Scenario("rx-single", "xdp", "rx", "read_packet_data", ()),
    Scenario("rx-zc-batch", "xdp", "rx", "zero_copy_read_multi_packets", ()),
    Scenario("AF_PACKET tx", "afpacket", "tx", "socket.send", ()),
    Scenario("tx-batch", "xdp", "tx", "write_multi_packets", ()),
)


def rx(scenario: str, round_number: int, offered: float, received: float) -> Measurement:
    return Measurement(scenario, "rx", round_number, offered, received, 0.8)


def tx(scenario: str, round_number: int, pps: float, cpu: float, kernel_cpu: float) -> Measurement:
    return Measurement(scenario, "tx", round_number, pps, pps, cpu, {}, kernel_cpu)


def verdicts(measurements: list[Measurement], drains: dict[str, drain.DrainResult]) -> dict[tuple[str, str], str]:
    rows = benchreport.rows_from(measurements, SCENARIOS)
    checks = benchreport.target_lines(rows, targets(64), measurements, drains)
    return {(check["target"][:12], check["measure"]): check["verdict"] for check in checks}


def test_each_target_is_judged_on_each_of_its_measures() -> None:
    measurements = [
        rx("AF_PACKET rx", 1, 1_500_000, 1_000_000),
        rx("rx-single", 1, 3_000_000, 2_100_000),   # 2.1x while losing 30%: PASS
        rx("rx-zc-batch", 1, 3_000_000, 2_990_000),  # 2.99x but took all it was offered
        tx("AF_PACKET tx", 1, 500_000, 1.0, 0.8),
        tx("tx-batch", 1, 750_000, 1.0, 0.8),         # 1.5x: FAIL
    ]
    drains = drain.summarize({
        drain.BASELINE: [700_000.0],
        "read_packet_data": [1_300_000.0],                   # 1.86x: FAIL
        "zero_copy_read_multi_packets(64)": [2_900_000.0],  # 4.14x: PASS
        "read_packet_data, OptBatchTimestamps": [1_500_000.0],  # 2.14x: PASS
    })
    assert verdicts(measurements, drains) == {
        ("zero_copy_re", "live load"): "UNDECIDED",
        ("zero_copy_re", "drain"): "PASS",
        ("zero_copy_re", "drain, batch ts"): "MISSING",
        ("read_packet_", "live load"): "PASS",
        ("read_packet_", "drain"): "FAIL",
        ("read_packet_", "drain, batch ts"): "PASS",
        ("write_multi_", "same core"): "FAIL",
        ("write_multi_", "RPS"): "MISSING",
    }


def test_send_costs_split_each_frame_and_bound_the_ratio() -> None:
    measurements = [
        # AF_PACKET: 2,000 ns a frame at 500 kpps, 1,600 of them in the kernel.
        tx("AF_PACKET tx", 1, 500_000, 1.0, 0.8),
        tx("AF_PACKET tx", 2, 400_000, 0.8, 0.64),
        # write_multi_packets: 1,250 ns a frame at 800 kpps, 1,000 of them in the kernel.
        tx("tx-batch", 1, 800_000, 1.0, 0.8),
        tx("tx-batch", 2, 800_000, 1.0, 0.8),
    ]
    python_ns, kernel_ns = benchreport.send_cost_ns(measurements, "tx-batch") or (0.0, 0.0)
    assert (python_ns, kernel_ns) == pytest.approx((250.0, 1000.0))
    result = benchreport.send_costs(measurements)
    assert result["costs"]["AF_PACKET tx"] == pytest.approx({"python_ns": 400.0, "kernel_ns": 1600.0})
    assert result["costs"]["tx-batch"]["ceiling"] == pytest.approx(2.0)  # 2,000 ns / 1,000 ns
    assert result["lines"] == [
        "send cost per frame, tx-batch: 250 ns in Python + 1,000 ns in the kernel; AF_PACKET tx: "
        "400 + 1,600 ns; at zero Python cost the ratio could reach 2.00x"
    ]
    assert "AF_PACKET tx (RPS)" not in result["costs"]  # not measured: no line, no figures
