"""eBPF instruction encoding: opcodes, registers and an assembler with labels.

The filter compilers (pcap-filter expressions and classic BPF) emit code through this
small typed layer instead of packing bytes themselves. Names follow the kernel's
include/uapi/linux/bpf.h and bpf_common.h so they can be grepped there. Jumps name a
``Label``; ``Assembler.assemble`` resolves labels to the kernel's relative offsets
(counted in instructions from the one after the jump).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "Assembler",
    "Instruction",
    "JumpOutOfRange",
    "Label",
    "Reg",
]

# Instruction classes.
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# Load/store sizes and modes.
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18
BPF_IMM = 0x00
BPF_MEM = 0x60

# Operand source.
BPF_K = 0x00
BPF_X = 0x08

# ALU operations.
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_END = 0xD0
BPF_TO_BE = 0x08

# Jump operations.
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0

#: Bytes per access size, for the size codes above.
SIZE_BYTES = {BPF_B: 1, BPF_H: 2, BPF_W: 4, BPF_DW: 8}

_INSN = struct.Struct("<BBhi")


class JumpOutOfRange(ValueError):
    """A jump farther than eBPF's 16-bit offset reaches: the program is too large."""


class Reg(IntEnum):
    """eBPF registers; R10 is the read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


@dataclass(frozen=True)
class Instruction:
    """One ``struct bpf_insn``: 8 bytes, little-endian."""

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        return _INSN.pack(self.opcode, (self.src << 4) | self.dst, self.off, self.imm)


class Label:
    """A jump target; placed once with ``Assembler.place``. Compared by identity."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Label({self.name!r})"


@dataclass(frozen=True)
class _Jump:
    opcode: int
    dst: int
    src: int
    imm: int
    target: Label


def _imm32(value: int) -> int:
    """An immediate as the signed 32-bit field holds it (values up to 2**32 - 1 wrap)."""
    if not -(1 << 31) <= value < (1 << 32):
        raise ValueError(f"immediate {value} does not fit in 32 bits")
    return value - (1 << 32) if value >= (1 << 31) else value


class Assembler:
    """Collects instructions and labels, then encodes them with jump offsets resolved.

    Not thread-safe; one assembler builds one program.
    """

    def __init__(self) -> None:
        self._items: list[Instruction | _Jump] = []
        self._positions: dict[Label, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def place(self, label: Label) -> None:
        """Make ``label`` point at the next instruction emitted."""
        if label in self._positions:
            raise ValueError(f"{label!r} placed twice")
        self._positions[label] = len(self._items)

    def emit(self, instruction: Instruction) -> None:
        self._items.append(instruction)

    # ALU ------------------------------------------------------------------------------

    def alu32_imm(self, op: int, dst: Reg, imm: int) -> None:
        """32-bit ``dst op= imm``; the result is zero-extended to 64 bits."""
        self.emit(Instruction(BPF_ALU | op | BPF_K, dst, 0, 0, _imm32(imm)))

    def alu32_reg(self, op: int, dst: Reg, src: Reg) -> None:
        self.emit(Instruction(BPF_ALU | op | BPF_X, dst, src))

    def alu64_imm(self, op: int, dst: Reg, imm: int) -> None:
        """64-bit ``dst op= imm``: the immediate is sign-extended from 32 bits."""
        self.emit(Instruction(BPF_ALU64 | op | BPF_K, dst, 0, 0, _imm32(imm)))

    def alu64_reg(self, op: int, dst: Reg, src: Reg) -> None:
        self.emit(Instruction(BPF_ALU64 | op | BPF_X, dst, src))

    def mov32_imm(self, dst: Reg, imm: int) -> None:
        """``dst = imm`` as an unsigned 32-bit value (upper half zero)."""
        self.alu32_imm(BPF_MOV, dst, imm)

    def mov64_reg(self, dst: Reg, src: Reg) -> None:
        self.alu64_reg(BPF_MOV, dst, src)

    def neg32(self, dst: Reg) -> None:
        self.emit(Instruction(BPF_ALU | BPF_NEG, dst))

    def to_big_endian(self, dst: Reg, bits: int) -> None:
        """Convert ``dst`` from network byte order (``bits`` 16 or 32); zero-extends."""
        self.emit(Instruction(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits))

    # Memory ---------------------------------------------------------------------------

    def load(self, size: int, dst: Reg, src: Reg, off: int) -> None:
        """``dst = *(size *)(src + off)``."""
        self.emit(Instruction(BPF_LDX | BPF_MEM | size, dst, src, off))

    def store_reg(self, size: int, dst: Reg, off: int, src: Reg) -> None:
        """``*(size *)(dst + off) = src``."""
        self.emit(Instruction(BPF_STX | BPF_MEM | size, dst, src, off))

    def store_imm(self, size: int, dst: Reg, off: int, imm: int) -> None:
        """``*(size *)(dst + off) = imm``."""
        self.emit(Instruction(BPF_ST | BPF_MEM | size, dst, 0, off, _imm32(imm)))

    # Jumps ----------------------------------------------------------------------------

    def jump(self, target: Label) -> None:
        """Unconditional jump."""
        self._items.append(_Jump(BPF_JMP | BPF_JA, 0, 0, 0, target))

    def jump_imm(self, op: int, dst: Reg, imm: int, target: Label, wide: bool = False) -> None:
        """``if dst op imm goto target``: compares the low 32 bits unless ``wide``."""
        jump_class = BPF_JMP if wide else BPF_JMP32
        self._items.append(_Jump(jump_class | op | BPF_K, dst, 0, _imm32(imm), target))

    def jump_reg(self, op: int, dst: Reg, src: Reg, target: Label, wide: bool = False) -> None:
        """``if dst op src goto target``: compares the low 32 bits unless ``wide``."""
        jump_class = BPF_JMP if wide else BPF_JMP32
        self._items.append(_Jump(jump_class | op | BPF_X, dst, src, 0, target))

    def call_helper(self, helper: int) -> None:
        """Call kernel helper number ``helper`` (``enum bpf_func_id``): arguments in r1-r5,
        result in r0, r1-r5 clobbered."""
        self.emit(Instruction(BPF_JMP | BPF_CALL, Reg.R0, Reg.R0, 0, helper))

    def exit(self) -> None:
        self.emit(Instruction(BPF_JMP | BPF_EXIT))

    # Output ---------------------------------------------------------------------------

    def instructions(self) -> list[Instruction]:
        """The program with every label resolved to a relative offset."""
        resolved = []
        for index, item in enumerate(self._items):
            if isinstance(item, Instruction):
                resolved.append(item)
                continue
            if item.target not in self._positions:
                raise ValueError(f"jump to {item.target!r}, which was never placed")
            offset = self._positions[item.target] - index - 1
            if not -(1 << 15) <= offset < (1 << 15):
                raise JumpOutOfRange(f"a jump spans {abs(offset):,} instructions, and eBPF jumps reach "
                                     f"{(1 << 15) - 1:,}")
            resolved.append(Instruction(item.opcode, item.dst, item.src, offset, item.imm))
        return resolved

    def assemble(self) -> bytes:
        return b"".join(instruction.encode() for instruction in self.instructions())
