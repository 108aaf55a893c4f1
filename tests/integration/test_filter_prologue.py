"""The prologue contract, in the kernel: a program spliced after a filter gets r1 = ctx.

The tail program below reads ``ctx->data``/``ctx->data_end`` through r1 and returns the
frame's first byte (the verifier itself refuses it unless r1 still is the context), and
uses the stack where classic BPF's scratch words were.
"""

from __future__ import annotations

import os
import struct

import pytest

from xdppacket import OptFilter, _bpf, compile_filter
from xdppacket._bpf import BPF_PROG_TYPE_XDP
from xdppacket.filter import CompiledFilter

XDP_PASS = 2


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


#: return data[0], reading the context through r1 and keeping a value on the stack.
TAIL = b"".join(
    [
        insn(0x7A, 10, 0, -8, 0x55),  # *(u64 *)(r10 - 8) = 0x55
        insn(0x61, 2, 1, 0),  # r2 = ctx->data
        insn(0x61, 3, 1, 4),  # r3 = ctx->data_end
        insn(0xBF, 4, 2),  # r4 = r2
        insn(0x07, 4, 0, 0, 1),  # r4 += 1
        insn(0x2D, 4, 3, 4),  # if r4 > r3 goto out
        insn(0x71, 0, 2, 0),  # r0 = data[0]
        insn(0x79, 5, 10, -8),  # r5 = *(u64 *)(r10 - 8)
        insn(0x55, 5, 0, 1, 0x55),  # if r5 != 0x55 goto out
        insn(0x95),  # exit
        insn(0xB4, 0, 0, 0, 0),  # out: r0 = 0
        insn(0x95),
    ]
)

FRAMES = [
    bytes.fromhex("66778899aabb001122334455") + b"\x08\x00" + bytes(46),  # IPv4
    bytes.fromhex("02000000000100112233445586dd") + bytes(46),  # IPv6
    bytes.fromhex("ffffffffffff001122334455") + b"\x08\x06" + bytes(46),  # ARP
]


def run_spliced(compiled: CompiledFilter) -> list[int]:
    fd = _bpf.prog_load(BPF_PROG_TYPE_XDP, compiled.instructions + TAIL, "GPL", "spliced")
    try:
        return [_bpf.prog_test_run(fd, frame)[0] for frame in FRAMES]
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("compiled", "expected"),
    [
        (compile_filter("ip or arp"), [0x66, XDP_PASS, 0xFF]),
        (compile_filter("ip6 or less 10"), [XDP_PASS, 0x02, XDP_PASS]),
        (
            OptFilter.from_cbpf("4\n40 0 0 12\n21 0 1 34525\n6 0 0 1\n6 0 0 0\n").compiled,
            [XDP_PASS, 0x02, XDP_PASS],
        ),
        # Classic BPF that uses its scratch memory (the stack) before falling through.
        (
            OptFilter.from_cbpf(
                [
                    (0x28, 0, 0, 12),
                    (0x02, 0, 0, 15),
                    (0x61, 0, 0, 15),
                    (0x87, 0, 0, 0),
                    (0x15, 0, 1, 0x0806),
                    (0x06, 0, 0, 1),
                    (0x06, 0, 0, 0),
                ]
            ).compiled,
            [XDP_PASS, XDP_PASS, 0xFF],
        ),
    ],
    ids=["expression", "expression-len", "cbpf", "cbpf-scratch"],
)
def test_a_match_falls_through_with_r1_as_the_context(
    compiled: CompiledFilter, expected: list[int]
) -> None:
    assert run_spliced(compiled) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # libpcap's interpreter: a shift by 32 or more gives 0 (eBPF's would shift by 0 here).
        ("ether[0:4] << (31 + 1) = 0", [0x66, 0x02, 0xFF]),
        # A divisor of 0 ends the filter with no match when it runs, "or" or not.
        ("ip6 or ether[0] / (3 - 3) = 0", [XDP_PASS, 0x02, XDP_PASS]),
    ],
)
def test_constants_only_folding_shows_out_of_range_compile_and_run_as_in_libpcap(
    expression: str, expected: list[int]
) -> None:
    """The verifier refuses such constants as immediates; written out (``<< 32``, ``/ 0``)
    both compilers refuse them, as tcpdump does."""
    assert run_spliced(compile_filter(expression)) == expected
