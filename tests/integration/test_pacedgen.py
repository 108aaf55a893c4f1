"""The capture benchmark's paced generator (``cmd/pacedgen.py``): every frame it counts as
sent arrives, none it counts as not sent does, and its mix marks exactly one frame in N."""

from __future__ import annotations

import os
import socket
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.netns import VethPair, run_command

# cmd/ is no package (the stdlib has a `cmd`): its modules import each other by bare name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cmd"))

if TYPE_CHECKING:
    from cmd.capture_bench import udp_frame
    from cmd.pacedgen import PacedGenerator
else:
    from capture_bench import udp_frame
    from pacedgen import PacedGenerator

ETH_P_ALL = 0x0003
RATE = 5000
SECONDS = 0.4


def test_paced_frames_arrive_and_one_in_n_is_marked(veth_pair: VethPair) -> None:
    run_command("ethtool", "-K", veth_pair.capture, "gro", "on")  # redirected frames need it (no XDP there)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((veth_pair.capture, 0))
        sock.setblocking(False)
        cpu = min(os.sched_getaffinity(0))
        with PacedGenerator(veth_pair.peer, udp_frame(9), cpu=cpu, mark_every=10, mark_port=53,
                            other_port=9) as generator:
            result = generator.send(RATE, SECONDS)
        ports = []
        while True:
            try:
                frame = sock.recv(2048)
            except BlockingIOError:
                break
            ports.append(struct.unpack_from("!H", frame, 36)[0])
    assert abs(result.asked - RATE * result.seconds) <= 1
    assert result.sent + result.shortfall == result.asked
    assert result.sent > 0.9 * result.asked  # 5000 pps is far below what any path here takes
    assert len(ports) == result.sent
    assert result.marked == result.sent // 10
    assert [i for i, port in enumerate(ports, 1) if port == 53] == list(range(10, result.sent + 1, 10))
    assert set(ports) == {9, 53}
