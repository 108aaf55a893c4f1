"""The eBPF instruction layer: exact bytes of each instruction and jump offsets from labels."""

from __future__ import annotations

import struct

import pytest

from xdppacket._ebpf import (
    BPF_ADD,
    BPF_AND,
    BPF_B,
    BPF_DW,
    BPF_H,
    BPF_JEQ,
    BPF_JGT,
    BPF_LSH,
    BPF_W,
    Assembler,
    Instruction,
    Label,
    Reg,
)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def assembled(build: object) -> bytes:
    asm = Assembler()
    build(asm)  # type: ignore[operator]
    return asm.assemble()


def test_instruction_encoding_is_the_kernels_struct_bpf_insn() -> None:
    assert Instruction(0xBF, dst=9, src=1).encode() == bytes([0xBF, 0x19, 0, 0, 0, 0, 0, 0])
    assert Instruction(0x07, dst=1, off=-2, imm=-1).encode() == bytes(
        [0x07, 0x01, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    )


@pytest.mark.parametrize(
    ("emit", "expected"),
    [
        (lambda a: a.mov64_reg(Reg.R9, Reg.R1), insn(0xBF, 9, 1)),
        (lambda a: a.mov32_imm(Reg.R0, 2), insn(0xB4, 0, 0, 0, 2)),
        (lambda a: a.mov32_imm(Reg.R3, 0xFFFFFFFF), insn(0xB4, 3, 0, 0, -1)),
        (lambda a: a.alu64_imm(BPF_ADD, Reg.R1, 14), insn(0x07, 1, 0, 0, 14)),
        (lambda a: a.alu64_reg(BPF_ADD, Reg.R1, Reg.R6), insn(0x0F, 1, 6)),
        (lambda a: a.alu32_imm(BPF_AND, Reg.R3, 0x0F), insn(0x54, 3, 0, 0, 0x0F)),
        (lambda a: a.alu32_imm(BPF_LSH, Reg.R3, 2), insn(0x64, 3, 0, 0, 2)),
        (lambda a: a.alu32_reg(BPF_ADD, Reg.R3, Reg.R4), insn(0x0C, 3, 4)),
        (lambda a: a.neg32(Reg.R3), insn(0x84, 3)),
        (lambda a: a.to_big_endian(Reg.R3, 16), insn(0xDC, 3, 0, 0, 16)),
        (lambda a: a.to_big_endian(Reg.R3, 32), insn(0xDC, 3, 0, 0, 32)),
        (lambda a: a.load(BPF_W, Reg.R6, Reg.R1, 0), insn(0x61, 6, 1, 0)),
        (lambda a: a.load(BPF_H, Reg.R3, Reg.R1, 0), insn(0x69, 3, 1, 0)),
        (lambda a: a.load(BPF_B, Reg.R3, Reg.R1, 0), insn(0x71, 3, 1, 0)),
        (lambda a: a.store_reg(BPF_W, Reg.R10, -64, Reg.R3), insn(0x63, 10, 3, -64)),
        (lambda a: a.store_imm(BPF_DW, Reg.R10, -8, 0), insn(0x7A, 10, 0, -8, 0)),
        (lambda a: a.exit(), insn(0x95)),
    ],
)
def test_each_instruction_has_the_kernels_encoding(emit: object, expected: bytes) -> None:
    assert assembled(emit) == expected


def test_jumps_resolve_labels_to_offsets_from_the_next_instruction() -> None:
    asm = Assembler()
    forward, here = Label("forward"), Label("here")
    asm.jump_imm(BPF_JEQ, Reg.R3, 0x800, forward)  # 32-bit compare by default
    asm.place(here)
    asm.jump_reg(BPF_JGT, Reg.R2, Reg.R7, forward, wide=True)
    asm.jump(here)
    asm.place(forward)
    asm.exit()
    assert asm.assemble() == b"".join(
        [
            insn(0x16, 3, 0, 2, 0x800),  # JMP32 | JEQ | K, skips two instructions
            insn(0x2D, 2, 7, 1),  # JMP | JGT | X
            insn(0x05, 0, 0, -2),  # JA back to "here"
            insn(0x95),
        ]
    )


def test_a_label_that_is_never_placed_is_an_error() -> None:
    asm = Assembler()
    asm.jump(Label("nowhere"))
    with pytest.raises(ValueError, match="never placed"):
        asm.assemble()


def test_a_label_cannot_be_placed_twice() -> None:
    asm = Assembler()
    label = Label("twice")
    asm.place(label)
    with pytest.raises(ValueError, match="placed twice"):
        asm.place(label)


def test_immediates_must_fit_in_32_bits() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        Assembler().mov32_imm(Reg.R0, 1 << 32)
