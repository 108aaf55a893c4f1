"""Capture filters: pcap-filter expressions and classic BPF compiled to an XDP prologue.

``compile_filter(expression)`` parses and compiles in pure Python, with no root and no
kernel, so it doubles as validation. ``OptFilter`` is the socket option carrying the
result. The compiled code is a *prologue* (see ``CompiledFilter``) that the library
splices in front of its XDP program: frames that do not match continue to the kernel's
network stack (``XDP_PASS``); frames that match go on to the program, which redirects
them to the AF_XDP socket.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Union

from . import _cbpf, _filter_codegen, _filter_parser
from ._ebpf import JumpOutOfRange
from ._filter_frame import MAX_STACK_BYTES
from .errors import XDPFilterError

__all__ = ["CompiledFilter", "OptFilter", "compile_filter"]

#: ``(code, jt, jf, k)`` instructions or the text ``tcpdump -ddd`` prints.
ClassicProgram = Union[str, Sequence[Sequence[int]]]  # noqa: UP007 (a runtime alias on 3.9)

_MOV32_R0_IMM = 0xB4
_EXIT = 0x95


@dataclass(frozen=True)
class CompiledFilter:
    """A filter compiled to an eBPF prologue.

    Contract of ``instructions`` (for splicing in front of an XDP program):

    - at entry r1 = ``struct xdp_md *`` (the program's context);
    - a frame that does not match: the prologue returns ``XDP_PASS`` itself;
    - a frame that matches: execution falls through past the prologue's last instruction
      with r1 = ctx again; r0, r2-r9 and up to ``stack_bytes`` bytes below r10 are
      clobbered, so the code after it must assume nothing about them;
    - no maps, no helper calls; jumps stay inside the prologue.

    ``frags_instructions`` is the same filter for a frags-aware program (multi-buffer
    frames, whose packet pointers cover the first buffer only): its frame length (``len``,
    ``greater``, ``less``) comes from ``bpf_xdp_get_buff_len``, and a load beyond the first
    buffer is made again by ``bpf_xdp_load_bytes`` (its helper calls), which uses the 32 bytes
    of the stack below the 64 of classic BPF's scratch words (down to r10 - 96).

    Immutable.
    """

    expression: str | None  # None for a filter given as classic BPF
    instructions: bytes
    frags_instructions: bytes
    stack_bytes: int = 0

    @property
    def instruction_count(self) -> int:
        return len(self.instructions) // 8

    @property
    def option_text(self) -> str:
        """How the option making this filter is written: what error messages name."""
        if self.expression is None:
            return f"OptFilter.from_cbpf(<{self.instruction_count} eBPF instructions>)"
        return f"OptFilter({self.expression!r})"

    def __repr__(self) -> str:  # the instructions' bytes would drown everything else
        return f"<CompiledFilter of {self.option_text}: {self.instruction_count} instructions>"

    def standalone(self, matched_action: int, frags: bool = False) -> bytes:
        """A whole XDP program: the prologue (its frags-aware form if asked), then
        ``return matched_action`` on a match."""
        return (
            (self.frags_instructions if frags else self.instructions)
            + struct.pack("<BBhi", _MOV32_R0_IMM, 0, 0, matched_action)
            + struct.pack("<BBhi", _EXIT, 0, 0, 0)
        )


def compile_filter(expression: str) -> CompiledFilter:
    """Compile a pcap-filter expression (tcpdump's syntax) for XDP.

    Raises ``XDPFilterError`` (a ``ValueError``) naming the column and token of a syntax
    error, or the construct an XDP filter does not support.
    """
    if not isinstance(expression, str):
        raise TypeError(f"a filter expression must be a str, got {type(expression).__name__}")
    with _compiler_limits("the filter expression"):
        tree = _filter_parser.parse(expression)
        return CompiledFilter(expression, *_filter_codegen.generate(tree))


def compile_classic_filter(program: ClassicProgram) -> CompiledFilter:
    """Translate classic BPF (``tcpdump -ddd`` text or ``(code, jt, jf, k)`` tuples)."""
    instructions = _cbpf.parse_program(program)
    with _compiler_limits("the classic BPF program"):
        return CompiledFilter(None, _cbpf.translate(instructions),
                              _cbpf.translate(instructions, frags=True), stack_bytes=MAX_STACK_BYTES)


@contextlib.contextmanager
def _compiler_limits(what: str) -> Iterator[None]:
    """The compilers' own limits, reported as what the user can change.

    They walk expressions recursively, which takes about 950 chained alternatives
    (``host a or host b or ...``; the optimizer's time grows with the square of the
    chain: a second or two for 300 hosts) or nested parentheses; and eBPF's jumps
    reach 32,767 instructions. Neither leaves anything behind: compiling is pure.
    """
    try:
        yield
    except RecursionError:
        raise XDPFilterError(
            f"{what} is too long or nested too deeply to compile (Python's recursion limit): "
            "shorten it, for example match an address range with one 'net' instead of many "
            "'host' alternatives, or a 'portrange' instead of many ports"
        ) from None
    except JumpOutOfRange as error:
        raise XDPFilterError(f"{what} compiles to too large a program ({error}): shorten it") from None


@dataclass(frozen=True)
class OptFilter:
    """Option: capture only frames matching a filter; the others go on to the kernel.

    ``OptFilter("tcp port 80")`` compiles at once, so a bad expression raises
    ``XDPFilterError`` before any kernel resource exists. ``OptFilter.from_cbpf(...)``
    takes classic BPF instead; its ``expression`` is None. Immutable.
    """

    compiled: CompiledFilter

    def __init__(self, expression: str) -> None:
        object.__setattr__(self, "compiled", compile_filter(expression))

    @classmethod
    def from_cbpf(cls, program: ClassicProgram) -> OptFilter:
        """A filter from classic BPF: ``(code, jt, jf, k)`` tuples or ``tcpdump -ddd`` text."""
        option = cls.__new__(cls)
        object.__setattr__(option, "compiled", compile_classic_filter(program))
        return option

    @property
    def expression(self) -> str | None:
        """The pcap-filter expression, or None for a filter given as classic BPF."""
        return self.compiled.expression

    def __repr__(self) -> str:
        return self.compiled.option_text
