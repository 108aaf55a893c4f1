"""The frame both filter compilers emit into: entry, guarded packet loads and the two exits.

A filter is an eBPF *prologue* spliced in front of an XDP program. Contract:

- entry: r1 = ``struct xdp_md *``; nothing else is assumed.
- no match: the prologue itself returns ``XDP_PASS`` (r0 = 2; exit).
- match: execution falls through past the prologue's last instruction with r1 = ctx
  again; r0, r2-r9 and the stack below r10 (at most ``MAX_STACK_BYTES``) are clobbered.

Every packet load is guarded against ``data_end``. As in classic BPF, a load beyond the
frame ends the filter with "no match", wherever it happens (also under ``not``): this is
what libpcap's programs do, and what the verifier needs. Arithmetic by a register follows
libpcap too where eBPF differs: a divisor of zero is "no match", a shift by 32 or more
gives 0 (eBPF would shift by the amount modulo 32).

Registers while the filter runs: r6 = data, r7 = data_end, r9 = ctx, r8 = frame length
(only computed when a filter asks for it), r1/r2 = scratch for address arithmetic.

The frame length is ``data_end - data`` by default: the whole frame for every program but a
frags-aware one (``SEC("xdp.frags")``, multi-buffer frames), where the packet pointers cover
the first buffer only. For those the prologue is compiled a second time (``frags``) with the
length taken from ``bpf_xdp_get_buff_len`` (Linux 5.18+, as frags-aware programs are), so that
``len``, ``greater`` and ``less`` see a jumbo frame whole, and with every load that falls
beyond the first buffer made again by ``bpf_xdp_load_bytes``, which reads the later buffers
(out of line: a load within the first buffer runs the same instructions as without frags).
That call clobbers r1-r5, so the values the load's caller still needs are saved on the stack
around it: the frags form uses ``FRAGS_STACK_BYTES`` more below the scratch words.
"""

from __future__ import annotations

from typing import NamedTuple

from ._ebpf import (
    BPF_ADD,
    BPF_B,
    BPF_DIV,
    BPF_DW,
    BPF_H,
    BPF_JEQ,
    BPF_JGT,
    BPF_JLT,
    BPF_JNE,
    BPF_LSH,
    BPF_MOD,
    BPF_RSH,
    BPF_SUB,
    BPF_W,
    Assembler,
    Label,
    Reg,
)

__all__ = ["FRAGS_STACK_BYTES", "MAX_STACK_BYTES", "XDP_PASS", "FilterFrame"]

XDP_PASS = 2
#: The deepest stack slot a filter prologue may use (classic BPF's scratch memory M[0..15]).
MAX_STACK_BYTES = 64
#: Below those, in the frags form: the buffer ``bpf_xdp_load_bytes`` fills, then room to
#: save the three value registers a load may have to keep.
_LOAD_BUFFER = -MAX_STACK_BYTES - 8
_SAVED = _LOAD_BUFFER - 8
FRAGS_STACK_BYTES = 8 + 3 * 8
#: Packet offsets beyond this cannot be reached (the verifier's MAX_PACKET_OFF).
_MAX_PACKET_OFFSET = 0xFFFF
# struct xdp_md field offsets.
_XDP_MD_DATA = 0
_XDP_MD_DATA_END = 4
# enum bpf_func_id (include/uapi/linux/bpf.h).
_BPF_FUNC_XDP_GET_BUFF_LEN = 188
_BPF_FUNC_XDP_LOAD_BYTES = 189

CTX = Reg.R9
DATA = Reg.R6
DATA_END = Reg.R7
LENGTH = Reg.R8
_ADDRESS = Reg.R1
_LIMIT = Reg.R2

_SIZES = {1: BPF_B, 2: BPF_H, 4: BPF_W}


class _LoadBeyondFirstBuffer(NamedTuple):
    """A load of the frags form whose bounds check failed: redone by the helper out of line."""

    start: Label  # where the failed check jumps
    resume: Label  # back in line, with the value loaded (before its byte swap)
    dst: Reg
    size: int
    keep: tuple[Reg, ...]  # registers the helper call would clobber that hold values still needed


class FilterFrame:
    """Emits a filter's entry, its guarded loads and its two exits into one assembler.

    ``frags``: for a frags-aware program (see the module's docstring).
    """

    def __init__(self, assembler: Assembler, frags: bool = False) -> None:
        self.asm = assembler
        self.frags = frags
        #: Jump here when the frame does not match (also used for out-of-bounds loads).
        self.no_match = Label("no_match")
        #: Jump here when the frame matches.
        self.match = Label("match")
        self._beyond_first_buffer: list[_LoadBeyondFirstBuffer] = []

    def enter(self, needs_length: bool) -> None:
        """Save ctx and load data/data_end; compute the frame length if it is used.

        The length is ``data_end - data``, a pointer subtraction, which the verifier
        allows only to programs loaded with CAP_PERFMON (root has it): it is emitted only
        when the filter reads the length. In the frags form it comes from
        ``bpf_xdp_get_buff_len`` instead, every buffer of a multi-buffer frame counted.
        """
        asm = self.asm
        asm.mov64_reg(CTX, Reg.R1)
        ctx = Reg.R1
        if needs_length and self.frags:
            asm.call_helper(_BPF_FUNC_XDP_GET_BUFF_LEN)  # takes r1 = ctx, clobbers r1-r5
            asm.mov64_reg(LENGTH, Reg.R0)
            ctx = CTX
        asm.load(BPF_W, DATA, ctx, _XDP_MD_DATA)
        asm.load(BPF_W, DATA_END, ctx, _XDP_MD_DATA_END)
        if needs_length and not self.frags:
            asm.mov64_reg(LENGTH, DATA_END)
            asm.alu64_reg(BPF_SUB, LENGTH, DATA)
        # Never taken; keeps "no match" statically reachable when a filter never fails
        # (the verifier refuses unreachable instructions).
        asm.mov32_imm(Reg.R0, 0)
        asm.jump_imm(BPF_JNE, Reg.R0, 0, self.no_match)

    def finish(self) -> None:
        """Place the exits: no match returns XDP_PASS; a match falls through with r1 = ctx.

        The loads beyond the first buffer go between the two, where only jumps lead.
        """
        asm = self.asm
        asm.place(self.no_match)
        asm.mov32_imm(Reg.R0, XDP_PASS)
        asm.jump_imm(BPF_JNE, Reg.R0, XDP_PASS, self.match)  # never taken, as above
        asm.exit()
        for load in self._beyond_first_buffer:
            self._load_with_helper(load)
        asm.place(self.match)
        asm.mov64_reg(Reg.R1, CTX)

    def _load_with_helper(self, load: _LoadBeyondFirstBuffer) -> None:
        """``bpf_xdp_load_bytes(ctx, r1 - data, buffer, size)`` for a load the first buffer
        does not hold (r1 = data + its offset); no match if the frame is shorter."""
        asm = self.asm
        asm.place(load.start)
        for slot, register in enumerate(load.keep):
            asm.store_reg(BPF_DW, Reg.R10, _SAVED - 8 * slot, register)
        asm.mov64_reg(Reg.R2, _ADDRESS)
        asm.alu64_reg(BPF_SUB, Reg.R2, DATA)  # the offset into the frame
        asm.mov64_reg(Reg.R1, CTX)
        asm.mov64_reg(Reg.R3, Reg.R10)
        asm.alu64_imm(BPF_ADD, Reg.R3, _LOAD_BUFFER)
        asm.mov32_imm(Reg.R4, load.size)
        asm.call_helper(_BPF_FUNC_XDP_LOAD_BYTES)
        asm.jump_imm(BPF_JNE, Reg.R0, 0, self.no_match, wide=True)  # -EFAULT: beyond the frame
        asm.load(_SIZES[load.size], load.dst, Reg.R10, _LOAD_BUFFER)
        for slot, register in enumerate(load.keep):
            asm.load(BPF_DW, register, Reg.R10, _SAVED - 8 * slot)
        asm.jump(load.resume)

    def alu_by_register(self, op: int, dst: Reg, src: Reg) -> None:
        """``dst op= src`` on 32 bits as libpcap computes it (see the module's docstring)."""
        asm = self.asm
        if op in (BPF_DIV, BPF_MOD):
            asm.jump_imm(BPF_JEQ, src, 0, self.no_match)
        elif op in (BPF_LSH, BPF_RSH):
            in_range, done = Label("shift"), Label("shifted")
            asm.jump_imm(BPF_JLT, src, 32, in_range)
            asm.mov32_imm(dst, 0)
            asm.jump(done)
            asm.place(in_range)
            asm.alu32_reg(op, dst, src)
            asm.place(done)
            return
        asm.alu32_reg(op, dst, src)

    def load_constant_offset(self, dst: Reg, offset: int, size: int, keep: tuple[Reg, ...] = ()) -> None:
        """``dst`` = the ``size``-byte big-endian value at ``offset``; no match if beyond the frame.

        ``keep``: registers (r3-r5, r0) holding values the caller still needs: the frags
        form saves them around its helper call.
        """
        asm = self.asm
        if offset + size > _MAX_PACKET_OFFSET:
            # No frame is this long: the bounds check always fails.
            asm.mov32_imm(_ADDRESS, offset)
            self._bound_and_load(dst, size, keep)
            return
        asm.mov64_reg(_ADDRESS, DATA)
        asm.alu64_imm(BPF_ADD, _ADDRESS, offset)
        self._load_at_address(dst, size, keep)

    def load_variable_offset(self, dst: Reg, offset: Reg, extra: int, size: int,
                             keep: tuple[Reg, ...] = ()) -> None:
        """``dst`` = the value at ``offset + extra`` (offset: a 32-bit value in a register)."""
        asm = self.asm
        asm.mov64_reg(_ADDRESS, offset)
        if extra >= 1 << 31:
            asm.mov32_imm(_LIMIT, extra)
            asm.alu64_reg(BPF_ADD, _ADDRESS, _LIMIT)
        elif extra:
            asm.alu64_imm(BPF_ADD, _ADDRESS, extra)
        self._bound_and_load(dst, size, keep)

    def _bound_and_load(self, dst: Reg, size: int, keep: tuple[Reg, ...]) -> None:
        """Load at packet offset r1 (a scalar), first bounding it for the verifier."""
        asm = self.asm
        # Bounds the offset for the verifier; no frame reaches this far anyway.
        asm.jump_imm(BPF_JGT, _ADDRESS, _MAX_PACKET_OFFSET - size, self.no_match, wide=True)
        asm.alu64_reg(BPF_ADD, _ADDRESS, DATA)
        self._load_at_address(dst, size, keep)

    def _load_at_address(self, dst: Reg, size: int, keep: tuple[Reg, ...]) -> None:
        asm = self.asm
        asm.mov64_reg(_LIMIT, _ADDRESS)
        asm.alu64_imm(BPF_ADD, _LIMIT, size)
        if self.frags:
            beyond = _LoadBeyondFirstBuffer(Label("beyond_first_buffer"), Label("loaded"), dst, size, keep)
            self._beyond_first_buffer.append(beyond)
            asm.jump_reg(BPF_JGT, _LIMIT, DATA_END, beyond.start, wide=True)
            asm.load(_SIZES[size], dst, _ADDRESS, 0)
            asm.place(beyond.resume)
        else:
            asm.jump_reg(BPF_JGT, _LIMIT, DATA_END, self.no_match, wide=True)
            asm.load(_SIZES[size], dst, _ADDRESS, 0)
        if size > 1:
            asm.to_big_endian(dst, size * 8)
