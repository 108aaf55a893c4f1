"""The eBPF a pcap-filter expression compiles to: exact bytes, and properties of every program.

The kernel runs these programs in tests/integration/test_filter_differential.py; here the
bytes are checked without root.
"""

from __future__ import annotations

import struct

import pytest

from tests.filter_expressions import EXPRESSIONS
from xdppacket import XDPFilterError, compile_filter

R1, R2, R6, R7, R9 = 1, 2, 6, 7, 9


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    return [
        (code, regs & 0x0F, regs >> 4, off, imm)
        for code, regs, off, imm in struct.iter_unpack("<BBhi", program)
    ]


#: The prologue for "ip", instruction by instruction.
IP_PROLOGUE = [
    insn(0xBF, R9, R1),  # r9 = ctx
    insn(0x61, R6, R1, 0),  # r6 = ctx->data
    insn(0x61, R7, R1, 4),  # r7 = ctx->data_end
    insn(0xB4, 0, 0, 0, 0),  # w0 = 0
    insn(0x56, 0, 0, 9, 0),  # if w0 != 0 goto no_match (never: keeps no_match reachable)
    insn(0xBF, R1, R6),  # r1 = data
    insn(0x07, R1, 0, 0, 12),  # r1 += 12
    insn(0xBF, R2, R1),  # r2 = r1
    insn(0x07, R2, 0, 0, 2),  # r2 += 2
    insn(0x2D, R2, R7, 4),  # if r2 > data_end goto no_match
    insn(0x69, 3, R1, 0),  # r3 = *(u16 *)r1
    insn(0xDC, 3, 0, 0, 16),  # r3 = be16(r3)
    insn(0x16, 3, 0, 4, 0x0800),  # if w3 == 0x800 goto match
    insn(0x05, 0, 0, 0),  # goto no_match
    insn(0xB4, 0, 0, 0, 2),  # no_match: w0 = XDP_PASS
    insn(0x56, 0, 0, 1, 2),  # if w0 != 2 goto match (never)
    insn(0x95),  # exit
    insn(0xBF, R1, R9),  # match: r1 = ctx, fall through
]


def test_ip_compiles_to_exactly_these_instructions() -> None:
    compiled = compile_filter("ip")
    assert compiled.instructions == b"".join(IP_PROLOGUE)
    assert compiled.expression == "ip"
    assert compiled.stack_bytes == 0


def test_standalone_appends_the_matched_action() -> None:
    program = compile_filter("ip").standalone(3)
    assert program == b"".join(IP_PROLOGUE) + insn(0xB4, 0, 0, 0, 3) + insn(0x95)


def packet_offsets(expression: str) -> list[int]:
    """The constant packet offsets the program adds to r1 = data, in program order."""
    program = decode(compile_filter(expression).instructions)
    return [
        program[i + 1][4]
        for i, (code, dst, src, _, _) in enumerate(program[:-1])
        if (code, dst, src) == (0xBF, R1, R6) and program[i + 1][:2] == (0x07, R1)
    ]


def test_vlan_moves_everything_after_it_by_one_tag() -> None:
    """The loads ``tcpdump -d`` lists: a field compared with several values in a row (the
    tag's three TPIDs) is loaded once."""
    assert packet_offsets("ip") == [12]
    assert packet_offsets("vlan and ip") == [12, 16]
    assert packet_offsets("vlan 5 and vlan and ip") == [12, 14, 16, 20]
    assert packet_offsets("ip or vlan") == [12]  # "ip" came before the tag


def test_a_field_compared_in_a_row_is_loaded_once_where_every_way_in_loaded_it() -> None:
    """'host A or host B' compares the source with A and B, then the destination (libpcap's
    pull-up): one load each, as ``tcpdump -d`` lists [12, 26, 30, 28, 38] (it shares the
    ARP and RARP tests, which we emit twice). A test reached from a different field loads."""
    assert packet_offsets("host 1.2.3.4 or host 5.6.7.8") == [12, 26, 30, 28, 38, 28, 38]
    assert packet_offsets(" or ".join(f"host 10.9.0.{i}" for i in range(50))) == [12, 26, 30, 28, 38, 28, 38]
    # tcpdump -d: 12, 20, 54, 56, 54, 56, 23, 20, 4*([14]&0xf), x+14, x+16, 20, 4*([14]&0xf), x+14,
    # x+16; our IPv4 port loads add the header length to r1 (no constant offset) and load it each time.
    assert packet_offsets("tcp port 80 or udp port 53") == [12, 20, 54, 56, 54, 56, 23, 20, 14, 14, 20, 14, 14]


def test_tests_that_cannot_change_the_outcome_load_nothing() -> None:
    """As in libpcap: once "greater 120" failed, "net ... and greater 120" cannot match."""
    assert packet_offsets("net 2001:db8::/32") == [12, 22, 38]
    assert packet_offsets("greater 120 or net 2001:db8::/32 and greater 120") == []
    assert packet_offsets("net 0.0.0.0/0") == [12]  # masked words of mask 0; ip, arp, rarp


def test_the_frame_length_is_computed_only_when_used() -> None:
    subtract = insn(0x1F, 8, R6)  # r8 -= data
    assert subtract not in compile_filter("tcp").instructions
    assert subtract in compile_filter("less 100").instructions


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_every_packet_load_is_bounds_checked(expression: str) -> None:
    """Each load through r1 is preceded by r2 = r1 + size; if r2 > data_end goto no_match."""
    program = decode(compile_filter(expression).instructions)
    sizes = {0x61: 4, 0x69: 2, 0x71: 1}
    assert program[1][:3] == (0x61, R6, R1)  # data and data_end come from ctx
    assert program[2][:3] == (0x61, R7, R1)
    loads = 0
    for index, (code, _, src, off, _) in enumerate(program[3:], start=3):
        if code in sizes:
            assert (src, off) == (R1, 0), f"instruction {index} loads through r{src}"
            copy, add, check = program[index - 3 : index]
            assert copy[:3] == (0xBF, R2, R1)
            assert add[:2] == (0x07, R2)
            assert add[4] == sizes[code]
            assert check[:3] == (0x2D, R2, R7)
            loads += 1
        assert code & 0x07 not in (0x02, 0x03), "an expression filter uses no stack"
        assert code != 0x85, "no helper calls"
        assert code != 0x18, "no map references (ld_imm64)"
    assert loads > 0 or expression.startswith(("less", "greater", "len"))


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_every_jump_stays_inside_the_prologue_and_goes_forward(expression: str) -> None:
    program = decode(compile_filter(expression).instructions)
    for index, (code, _, _, off, _) in enumerate(program):
        if code & 0x07 in (0x05, 0x06) and code != 0x95:
            assert off >= 0, f"instruction {index} jumps back"
            assert index + 1 + off < len(program), f"instruction {index} jumps out"
    assert program[-1][:3] == (0xBF, R1, R9)  # a match falls through with r1 = ctx


def test_arithmetic_beyond_the_value_registers_is_refused_by_name() -> None:
    four = "(ip[0] + ip[1]) * (ip[2] + ip[3]) - (ip[4] + ip[5]) * (ip[6] + ip[7])"
    compile_filter(f"{four} > 0")  # needs all four value registers
    with pytest.raises(XDPFilterError, match="nested too deeply"):
        compile_filter(f"({four}) + ({four}) > 0")
