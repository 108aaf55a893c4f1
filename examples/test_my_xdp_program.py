"""An example test suite for your own XDP code: copy it next to your tests and adapt it.

Run it as root: ``pytest examples/test_my_xdp_program.py``. It needs no NIC and touches
none of the machine's interfaces: the program is unit-tested with ``run_xdp``
(``BPF_PROG_TEST_RUN``), and the end-to-end test runs on a veth pair inside a private
network namespace that disappears afterwards.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

import pytest

from xdppacket import XDP_MODE_SKB, OptXDPMode, XDPPacket
from xdppacket.testing import VethPair, XDPAction, private_netns, run_xdp, veth_pair

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_NET_ADMIN, CAP_BPF)")

ETH_P_EXPERIMENT = 0x88B5  # IEEE 802 local experimental ethertype

# The program under test: pass frames of ethertype 0x88B5, drop everything else. Yours would
# usually come from clang: run_xdp("build/my_prog.o", frame) loads an ELF object the same way.
insn = struct.Struct("<BBhi").pack  # code, (src_reg << 4) | dst_reg, offset, immediate
KEEP_EXPERIMENTS = b"".join(
    [
        insn(0x61, 0x12, 0, 0),  # r2 = ctx->data
        insn(0x61, 0x13, 4, 0),  # r3 = ctx->data_end
        insn(0xBF, 0x24, 0, 0),  # r4 = r2
        insn(0x07, 0x04, 0, 14),  # r4 += 14 (an Ethernet header)
        insn(0x2D, 0x34, 4, 0),  # if r4 > r3 goto drop
        insn(0x69, 0x22, 12, 0),  # r2 = *(u16 *)(data + 12): the ethertype, network order
        insn(0x55, 0x02, 2, socket.htons(ETH_P_EXPERIMENT)),  # if r2 != 0x88B5 goto drop
        insn(0xB7, 0x00, 0, XDPAction.XDP_PASS),  # r0 = XDP_PASS
        insn(0x95, 0x00, 0, 0),  # exit
        insn(0xB7, 0x00, 0, XDPAction.XDP_DROP),  # drop: r0 = XDP_DROP
        insn(0x95, 0x00, 0, 0),  # exit
    ]
)


def ethernet_frame(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


@pytest.fixture
def pair() -> Iterator[VethPair]:
    """A veth pair ``xa``/``xb`` in a private network namespace, both gone after the test."""
    with private_netns(), veth_pair("xa", "xb") as created:
        yield created


def test_program_keeps_experiments_and_drops_the_rest() -> None:
    experiment = ethernet_frame(b"\xff" * 6, b"\x02" * 6, ETH_P_EXPERIMENT, b"hello".ljust(46))
    ipv4 = ethernet_frame(b"\xff" * 6, b"\x02" * 6, 0x0800, bytes(46))

    assert run_xdp(KEEP_EXPERIMENTS, experiment) == (XDPAction.XDP_PASS, experiment)
    action, _ = run_xdp(KEEP_EXPERIMENTS, ipv4)
    assert action is XDPAction.XDP_DROP


def test_capture_what_the_peer_sends(pair: VethPair) -> None:
    frame = ethernet_frame(pair.capture_mac, pair.peer_mac, ETH_P_EXPERIMENT, b"ping".ljust(46))
    with XDPPacket(pair.capture, OptXDPMode(XDP_MODE_SKB)) as capture:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sender:
            sender.bind((pair.peer, 0))
            sender.send(frame)
        data, info = capture.read_packet_data()
    assert data == frame
    assert info.length == len(frame)
