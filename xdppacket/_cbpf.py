"""Classic BPF (``tcpdump -ddd``) translated to an eBPF prologue, the way cbpfc does it.

XDP programs may not use ``LD_ABS``/``LD_IND``, so every packet load becomes a direct
load guarded against ``data_end``: a load beyond the frame means "no match", exactly as
classic BPF returns 0 there. A and X start at zero; the scratch words M[0..15] live on
the stack (zeroed first, as the verifier wants); dividing by an X of zero means "no
match" (classic BPF returns 0), and shifting by an X of 32 or more gives 0, as in
libpcap. ``ret`` with a non-zero value (or A) is a match.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._ebpf import (
    BPF_ADD,
    BPF_AND,
    BPF_DIV,
    BPF_DW,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JNE,
    BPF_JSET,
    BPF_LSH,
    BPF_MOD,
    BPF_MUL,
    BPF_OR,
    BPF_RSH,
    BPF_SUB,
    BPF_W,
    BPF_XOR,
    Assembler,
    Label,
    Reg,
)
from ._filter_frame import LENGTH, MAX_STACK_BYTES, FilterFrame
from .errors import XDPFilterError

__all__ = ["ClassicInstruction", "parse_program", "translate"]

#: One classic BPF instruction: (code, jt, jf, k).
ClassicInstruction = tuple[int, int, int, int]

# Classic BPF fields (linux/filter.h, pcap/bpf.h).
_LD, _LDX, _ST, _STX, _ALU, _JMP, _RET, _MISC = range(8)
_SIZES = {0x00: 4, 0x08: 2, 0x10: 1}
_IMM, _ABS, _IND, _MEM, _LEN, _MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
_SRC_X = 0x08
_RET_K, _RET_A = 0x00, 0x10
_TAX, _TXA = 0x00, 0x80
_MEMWORDS = 16
_MAX_INSTRUCTIONS = 4096
#: Offsets from here up are Linux's ancillary-data extensions (SKF_LL_OFF and above).
_EXTENSIONS = 0xFFE00000

_ALU_OPS = {
    0x00: BPF_ADD,
    0x10: BPF_SUB,
    0x20: BPF_MUL,
    0x30: BPF_DIV,
    0x40: BPF_OR,
    0x50: BPF_AND,
    0x60: BPF_LSH,
    0x70: BPF_RSH,
    0x90: BPF_MOD,
    0xA0: BPF_XOR,
}
_ALU_NEG = 0x80
_JUMP_OPS = {0x10: BPF_JEQ, 0x20: BPF_JGT, 0x30: BPF_JGE, 0x40: BPF_JSET}
_JA = 0x00

# Register of A, of X; M[i] lives at r10 + _SCRATCH + 4 * i.
_A = Reg.R3
_X = Reg.R4
_SCRATCH = -MAX_STACK_BYTES


def parse_program(program: str | Sequence[Sequence[int]]) -> list[ClassicInstruction]:
    """Instructions from ``tcpdump -ddd`` text or from ``(code, jt, jf, k)`` tuples."""
    if isinstance(program, str):
        return _parse_text(program)
    instructions = []
    for index, item in enumerate(program):
        try:
            code, jt, jf, k = (int(field) for field in item)
        except (TypeError, ValueError):
            raise XDPFilterError(
                f"classic BPF instruction {index} must be (code, jt, jf, k) integers, got {item!r}"
            ) from None
        instructions.append(_checked(index, code, jt, jf, k))
    return instructions


def _parse_text(text: str) -> list[ClassicInstruction]:
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    if not lines or len(lines[0]) != 1:
        raise XDPFilterError(
            "classic BPF text must be what 'tcpdump -ddd' prints: a count, then 'code jt jf k' lines"
        )
    try:
        count = int(lines[0][0])
        rows = [[int(field) for field in line] for line in lines[1:]]
    except ValueError as error:
        raise XDPFilterError(f"classic BPF text: {error}") from None
    if count != len(rows):
        raise XDPFilterError(f"classic BPF text announces {count} instructions but has {len(rows)}")
    instructions = []
    for index, row in enumerate(rows):
        if len(row) != 4:
            raise XDPFilterError(
                f"classic BPF line {index + 2} must hold 'code jt jf k', got {row}"
            )
        instructions.append(_checked(index, *row))
    return instructions


def _checked(index: int, code: int, jt: int, jf: int, k: int) -> ClassicInstruction:
    if not (0 <= code <= 0xFFFF and 0 <= jt <= 255 and 0 <= jf <= 255):
        raise XDPFilterError(
            f"classic BPF instruction {index} is out of range: {(code, jt, jf, k)}"
        )
    if not -(1 << 31) <= k <= 0xFFFFFFFF:
        raise XDPFilterError(f"classic BPF instruction {index}: k={k} does not fit in 32 bits")
    return code, jt, jf, k & 0xFFFFFFFF


def _successors(index: int, instruction: ClassicInstruction) -> tuple[int, ...]:
    code, jt, jf, k = instruction
    kind = code & 0x07
    if kind == _RET:
        return ()
    if kind == _JMP:
        if code & 0xF0 == _JA:
            return (index + 1 + k,)
        return (index + 1 + jt, index + 1 + jf)
    return (index + 1,)


def _reachable(program: list[ClassicInstruction]) -> list[bool]:
    """Which instructions can run: eBPF's verifier refuses unreachable code."""
    reachable = [False] * len(program)
    reachable[0] = True
    for index, instruction in enumerate(program):  # jumps only go forward
        if not reachable[index]:
            continue
        for successor in _successors(index, instruction):
            if successor >= len(program):
                raise XDPFilterError(
                    f"classic BPF instruction {index} jumps or falls past the end of the program "
                    "(a jump that wraps around to go backwards, as libpcap's 'protochain' "
                    "makes, is not translated)"
                )
            reachable[successor] = True
    return reachable


def translate(program: list[ClassicInstruction], frags: bool = False) -> bytes:
    """The eBPF prologue (see ``_filter_frame``) equivalent to a classic BPF filter, in its
    form for frags-aware programs if ``frags``."""
    if not 0 < len(program) <= _MAX_INSTRUCTIONS:
        raise XDPFilterError(f"a classic BPF program has 1 to {_MAX_INSTRUCTIONS} instructions")
    reachable = _reachable(program)
    live = [instruction for index, instruction in enumerate(program) if reachable[index]]
    asm = Assembler()
    frame = FilterFrame(asm, frags)
    frame.enter(needs_length=any(code & 0xE7 in (_LD | _LEN, _LDX | _LEN) for code, *_ in live))
    asm.mov32_imm(_A, 0)
    asm.mov32_imm(_X, 0)
    if any(
        code & 0x07 in (_ST, _STX) or code & 0xE7 in (_LD | _MEM, _LDX | _MEM) for code, *_ in live
    ):
        for offset in range(_SCRATCH, 0, 8):
            asm.store_imm(BPF_DW, Reg.R10, offset, 0)
    labels = [Label(f"insn{index}") for index in range(len(program))]
    translator = _Translator(frame, labels)
    for index, instruction in enumerate(program):
        if reachable[index]:
            asm.place(labels[index])
            translator.instruction(index, instruction)
    frame.finish()
    return asm.assemble()


class _Translator:
    def __init__(self, frame: FilterFrame, labels: list[Label]) -> None:
        self._frame = frame
        self._asm = frame.asm
        self._labels = labels

    def instruction(self, index: int, instruction: ClassicInstruction) -> None:
        code, jt, jf, k = instruction
        kind = code & 0x07
        handler = {
            _LD: self._load,
            _LDX: self._load,
            _ST: self._store,
            _STX: self._store,
            _ALU: self._alu,
            _JMP: self._jump,
            _RET: self._return,
            _MISC: self._misc,
        }[kind]
        handler(index, code, jt, jf, k)

    def _unsupported(self, index: int, code: int, what: str = "") -> XDPFilterError:
        detail = f" ({what})" if what else ""
        return XDPFilterError(
            f"classic BPF instruction {index} (code {code:#06x}){detail} is not supported in XDP filters"
        )

    def _load(self, index: int, code: int, jt: int, jf: int, k: int) -> None:
        asm = self._asm
        dst = _A if code & 0x07 == _LD else _X
        mode = code & 0xE0
        size = _SIZES.get(code & 0x18)
        if size is None:
            raise self._unsupported(index, code, "load size")
        if mode == _IMM:
            asm.mov32_imm(dst, k)
        elif mode == _LEN:
            asm.mov64_reg(dst, LENGTH)
            asm.alu32_imm(BPF_ADD, dst, 0)  # the low 32 bits, zero-extended
        elif mode == _MEM:
            self._scratch_index(index, code, k)
            asm.load(BPF_W, dst, Reg.R10, _SCRATCH + 4 * k)
        elif mode == _ABS and dst == _A:
            if k >= _EXTENSIONS:
                raise self._unsupported(index, code, f"Linux ancillary data at k={k:#x}")
            self._frame.load_constant_offset(_A, k, size, keep=(_X,))
        elif mode == _IND and dst == _A:
            # As libpcap runs it: X + k without wrapping, so a k folded from a negative
            # index (``udp[-32]``) lies beyond every frame.
            self._frame.load_variable_offset(_A, _X, k, size, keep=(_X,))
        elif mode == _MSH and dst == _X and size == 1:
            if k >= _EXTENSIONS:
                raise self._unsupported(index, code, f"Linux ancillary data at k={k:#x}")
            self._frame.load_constant_offset(_X, k, 1, keep=(_A,))
            asm.alu32_imm(BPF_AND, _X, 0x0F)
            asm.alu32_imm(BPF_LSH, _X, 2)
        else:
            raise self._unsupported(index, code, "load mode")

    def _scratch_index(self, index: int, code: int, k: int) -> None:
        if k >= _MEMWORDS:
            raise XDPFilterError(
                f"classic BPF instruction {index} (code {code:#06x}) uses scratch word M[{k}]; "
                f"there are {_MEMWORDS}"
            )

    def _store(self, index: int, code: int, jt: int, jf: int, k: int) -> None:
        if code not in (_ST, _STX):
            raise self._unsupported(index, code, "store mode")
        self._scratch_index(index, code, k)
        self._asm.store_reg(BPF_W, Reg.R10, _SCRATCH + 4 * k, _A if code == _ST else _X)

    def _alu(self, index: int, code: int, jt: int, jf: int, k: int) -> None:
        asm = self._asm
        operation = code & 0xF0
        if operation == _ALU_NEG:
            asm.neg32(_A)
            return
        op = _ALU_OPS.get(operation)
        if op is None:
            raise self._unsupported(index, code, "ALU operation")
        if code & _SRC_X:
            self._frame.alu_by_register(op, _A, _X)
            return
        if op in (BPF_DIV, BPF_MOD) and k == 0:
            raise XDPFilterError(f"classic BPF instruction {index} divides by the constant 0")
        if op in (BPF_LSH, BPF_RSH) and k > 31:
            raise XDPFilterError(f"classic BPF instruction {index} shifts by {k} (more than 31)")
        asm.alu32_imm(op, _A, k)

    def _jump(self, index: int, code: int, jt: int, jf: int, k: int) -> None:
        asm = self._asm
        operation = code & 0xF0
        if operation == _JA:
            asm.jump(self._labels[index + 1 + k])
            return
        op = _JUMP_OPS.get(operation)
        if op is None:
            raise self._unsupported(index, code, "jump")
        true, false = self._labels[index + 1 + jt], self._labels[index + 1 + jf]
        if code & _SRC_X:
            asm.jump_reg(op, _A, _X, true)
        else:
            asm.jump_imm(op, _A, k, true)
        if jf != 0:
            asm.jump(false)

    def _return(self, index: int, code: int, jt: int, jf: int, k: int) -> None:
        asm = self._asm
        rval = code & 0x18
        if rval == _RET_K:
            asm.jump(self._frame.match if k else self._frame.no_match)
        elif rval == _RET_A:
            asm.jump_imm(BPF_JNE, _A, 0, self._frame.match)
            asm.jump(self._frame.no_match)
        else:
            raise self._unsupported(index, code, "return value")

    def _misc(self, index: int, code: int, jt: int, jf: int, k: int) -> None:
        if code & 0xF8 == _TAX:
            self._asm.mov64_reg(_X, _A)
        elif code & 0xF8 == _TXA:
            self._asm.mov64_reg(_A, _X)
        else:
            raise self._unsupported(index, code, "misc operation")
