"""The pure parts of ``xdppacket._maps``: CPU lists. (Map and variable access needs the
kernel: tests/integration/test_custom_program.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from xdppacket._maps import parse_cpu_list, possible_cpu_count


@pytest.mark.parametrize(
    ("text", "count"), [("0", 1), ("0-3", 4), ("0-3,8-11", 8), ("0,2,4-5", 4), ("0-255", 256)]
)
def test_cpu_lists(text: str, count: int) -> None:
    assert parse_cpu_list(text) == count


def test_possible_cpus_are_read_from_sysfs() -> None:
    text = Path("/sys/devices/system/cpu/possible").read_text()
    last = int(text.strip().replace(",", "-").split("-")[-1])
    assert possible_cpu_count() == last + 1  # possible CPUs are numbered from 0 without gaps
