"""The public filter API: compile_filter, OptFilter and its classic BPF constructor."""

from __future__ import annotations

import dataclasses

import pytest

import xdppacket
from xdppacket import CompiledFilter, OptFilter, XDPError, XDPFilterError, compile_filter


def test_the_names_are_exported() -> None:
    for name in ("CompiledFilter", "OptFilter", "XDPFilterError", "compile_filter"):
        assert name in xdppacket.__all__
        assert getattr(xdppacket, name) is not None


def test_compile_filter_needs_neither_root_nor_kernel() -> None:
    compiled = compile_filter("tcp port 80")
    assert isinstance(compiled, CompiledFilter)
    assert compiled.expression == "tcp port 80"
    assert len(compiled.instructions) == 8 * compiled.instruction_count > 0


def test_opt_filter_holds_the_expression_and_its_compiled_prologue() -> None:
    option = OptFilter("udp and port 53")
    assert option.expression == "udp and port 53"
    assert option.compiled == compile_filter("udp and port 53")
    assert option == OptFilter("udp and port 53")
    assert option != OptFilter("udp")
    assert repr(option) == "OptFilter('udp and port 53')"


def test_opt_filter_is_immutable() -> None:
    option = OptFilter("ip")
    with pytest.raises(dataclasses.FrozenInstanceError):
        option.compiled = compile_filter("ip6")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        compile_filter("ip").instructions = b""  # type: ignore[misc]


def test_a_bad_expression_raises_before_anything_exists() -> None:
    with pytest.raises(XDPFilterError, match="column 10: unexpected token 'port'") as raised:
        OptFilter("tcp port port 80")
    assert isinstance(raised.value, XDPError)
    assert isinstance(raised.value, ValueError)


def test_an_expression_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        compile_filter(b"tcp")  # type: ignore[arg-type]


def test_from_cbpf_has_no_expression() -> None:
    option = OptFilter.from_cbpf([(6, 0, 0, 0xFFFF)])
    assert option.expression is None
    assert repr(option).startswith("OptFilter.from_cbpf(<")
    assert option.compiled.standalone(3).endswith(
        bytes([0xB4, 0, 0, 0, 3, 0, 0, 0, 0x95]) + bytes(7)
    )


@pytest.mark.parametrize(
    "expression",
    [
        " or ".join(f"host 10.0.{i // 256}.{i % 256}" for i in range(1000)),  # a generated host list
        "(" * 2000 + "tcp" + ")" * 2000,
        "not " * 2000 + "tcp",
    ],
    ids=["long-or-chain", "deep-parentheses", "deep-not"],
)
def test_an_expression_past_the_compilers_depth_is_refused_with_a_way_out(expression: str) -> None:
    with pytest.raises(XDPFilterError, match="too long or nested too deeply to compile.*instead of many 'host'"):
        compile_filter(expression)


def test_a_program_too_large_for_ebpfs_jumps_is_refused_with_its_size() -> None:
    """4,092 classic loads, each nine eBPF instructions, jumped over at once."""
    loads = 4092
    program = [(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (0x05, 0, 0, loads)]
    program += [(0x50, 0, 0, 0x80000000)] * loads + [(0x06, 0, 0, 1)]
    with pytest.raises(XDPFilterError, match=r"too large a program \(a jump spans 36,841 instructions, and "
                                             r"eBPF jumps reach 32,767\)"):
        OptFilter.from_cbpf(program)
