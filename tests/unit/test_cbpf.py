"""Classic BPF to eBPF: exact bytes, input formats, and the programs it refuses.

The kernel runs translations of tcpdump's own programs in
tests/integration/test_filter_differential.py; here the bytes are checked without root.
"""

from __future__ import annotations

import struct

import pytest

from xdppacket import OptFilter, XDPFilterError
from xdppacket._cbpf import parse_program, translate

#: ``tcpdump -ddd ip``.
IP_TEXT = "4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n"


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    return [
        (code, regs & 0x0F, regs >> 4, off, imm)
        for code, regs, off, imm in struct.iter_unpack("<BBhi", program)
    ]


def test_tcpdump_ip_translates_to_exactly_these_instructions() -> None:
    assert translate(parse_program(IP_TEXT)) == b"".join(
        [
            insn(0xBF, 9, 1),  # r9 = ctx
            insn(0x61, 6, 1, 0),  # r6 = data
            insn(0x61, 7, 1, 4),  # r7 = data_end
            insn(0xB4, 0, 0, 0, 0),
            insn(0x56, 0, 0, 13, 0),  # never taken: keeps no_match reachable
            insn(0xB4, 3, 0, 0, 0),  # A = 0
            insn(0xB4, 4, 0, 0, 0),  # X = 0
            # (000) ldh [12]: a guarded direct load, not LD_ABS
            insn(0xBF, 1, 6),
            insn(0x07, 1, 0, 0, 12),
            insn(0xBF, 2, 1),
            insn(0x07, 2, 0, 0, 2),
            insn(0x2D, 2, 7, 6),  # beyond data_end: no match, as classic BPF returns 0
            insn(0x69, 3, 1, 0),
            insn(0xDC, 3, 0, 0, 16),
            # (001) jeq #0x800 jt 2 jf 3
            insn(0x16, 3, 0, 1, 0x800),
            insn(0x05, 0, 0, 1),
            # (002) ret #262144: match
            insn(0x05, 0, 0, 4),
            # (003) ret #0: no match
            insn(0x05, 0, 0, 0),
            insn(0xB4, 0, 0, 0, 2),  # no_match: XDP_PASS
            insn(0x56, 0, 0, 1, 2),
            insn(0x95),
            insn(0xBF, 1, 9),  # match: r1 = ctx, fall through
        ]
    )


def test_text_and_tuples_give_the_same_program() -> None:
    tuples = [(40, 0, 0, 12), (21, 0, 1, 2048), (6, 0, 0, 262144), (6, 0, 0, 0)]
    assert parse_program(IP_TEXT) == tuples
    assert parse_program(tuples) == tuples
    option = OptFilter.from_cbpf(tuples)
    assert option.expression is None
    assert option.compiled == OptFilter.from_cbpf(IP_TEXT).compiled
    assert option.compiled.stack_bytes == 64


def test_unreachable_instructions_are_left_out() -> None:
    """The verifier refuses unreachable code; classic BPF allows it."""
    with_dead_code = [(6, 0, 0, 1), (40, 0, 0, 12), (6, 0, 0, 0)]
    assert translate(with_dead_code) == translate([(6, 0, 0, 1)])


def test_scratch_memory_is_zeroed_on_the_stack() -> None:
    program = decode(
        translate([(0x02, 0, 0, 15), (0x61, 0, 0, 15), (0x87, 0, 0, 0), (0x16, 0, 0, 0)])
    )
    zeroing = [i for i in program if i[0] == 0x7A]  # *(u64 *)(r10 + off) = 0
    assert [i[3] for i in zeroing] == [-64, -56, -48, -40, -32, -24, -16, -8]
    assert (0x63, 10, 3, -4, 0) in program  # st M[15]: *(u32 *)(r10 - 4) = A
    assert (0x61, 4, 10, -4, 0) in program  # ldx M[15]
    assert (0xBF, 3, 4, 0, 0) in program  # txa


def test_division_by_x_checks_for_zero_first() -> None:
    program = decode(translate([(0x3C, 0, 0, 0), (0x16, 0, 0, 0)]))  # A /= X; ret A
    divide = [i[:3] for i in program].index((0x3C, 3, 4))  # w3 /= w4
    code, dst, _, off, imm = program[divide - 1]
    assert (code, dst, imm) == (0x16, 4, 0)  # if w4 == 0 goto ...
    no_match = divide + off  # ... the exit that returns XDP_PASS
    assert program[no_match][:3] == (0xB4, 0, 0)
    assert program[no_match][4] == 2


def test_ret_a_matches_when_a_is_not_zero() -> None:
    program = decode(translate([(0x80, 0, 0, 0), (0x16, 0, 0, 0)]))  # A = len; ret A
    assert (0x1F, 8, 6, 0, 0) in program  # r8 = data_end - data, computed because it is read
    assert any(i[:3] == (0x56, 3, 0) and i[4] == 0 for i in program)  # if w3 != 0 goto match


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ([(0x20, 0, 0, 0xFFFFF000), (0x16, 0, 0, 0)], "ancillary data"),
        ([(0x30, 0, 0, 0xFFFFF004), (0x16, 0, 0, 0)], "ancillary data"),
        ([(0x15, 0, 5, 1), (0x06, 0, 0, 0)], "past the end"),
        ([(0x28, 0, 0, 12)], "past the end"),
        ([(0x34, 0, 0, 0), (0x16, 0, 0, 0)], "divides by the constant 0"),
        ([(0x64, 0, 0, 32), (0x16, 0, 0, 0)], "shifts by 32"),
        ([(0x60, 0, 0, 16), (0x16, 0, 0, 0)], "scratch word M\\[16\\]"),
        ([(0x0E, 0, 0, 0)], "return value"),
        ([(0xE4, 0, 0, 0), (0x06, 0, 0, 0)], "ALU operation"),
        ([], "1 to 4096 instructions"),
    ],
)
def test_programs_xdp_cannot_run_are_refused(
    program: list[tuple[int, int, int, int]], message: str
) -> None:
    with pytest.raises(XDPFilterError, match=message):
        translate(parse_program(program))


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("3\n40 0 0 12\n6 0 0 0\n", "announces 3 instructions but has 2"),
        ("(000) ldh [12]\n", "what 'tcpdump -ddd' prints"),
        ("1\n6 0 0\n", "must hold 'code jt jf k'"),
        ([(6, 0, 0)], "must be \\(code, jt, jf, k\\)"),
        ([(6, 0, 256, 0)], "out of range"),
        ([(6, 0, 0, 1 << 32)], "does not fit in 32 bits"),
    ],
)
def test_malformed_input_is_refused(program: object, message: str) -> None:
    with pytest.raises(XDPFilterError, match=message):
        parse_program(program)  # type: ignore[arg-type]
