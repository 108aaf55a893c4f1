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
the first buffer only. For those the prologue is compiled a second time with the length
taken from ``bpf_xdp_get_buff_len`` (Linux 5.18+, as frags-aware programs are), so that
``len``, ``greater`` and ``less`` see a jumbo frame whole.
"""

from __future__ import annotations

from ._ebpf import (
    BPF_ADD,
    BPF_B,
    BPF_DIV,
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

__all__ = ["MAX_STACK_BYTES", "XDP_PASS", "FilterFrame"]

XDP_PASS = 2
#: The deepest stack slot a filter prologue may use (classic BPF's scratch memory M[0..15]).
MAX_STACK_BYTES = 64
#: Packet offsets beyond this cannot be reached (the verifier's MAX_PACKET_OFF).
_MAX_PACKET_OFFSET = 0xFFFF
# struct xdp_md field offsets.
_XDP_MD_DATA = 0
_XDP_MD_DATA_END = 4
# enum bpf_func_id (include/uapi/linux/bpf.h).
_BPF_FUNC_XDP_GET_BUFF_LEN = 188

CTX = Reg.R9
DATA = Reg.R6
DATA_END = Reg.R7
LENGTH = Reg.R8
_ADDRESS = Reg.R1
_LIMIT = Reg.R2

_SIZES = {1: BPF_B, 2: BPF_H, 4: BPF_W}


class FilterFrame:
    """Emits a filter's entry, its guarded loads and its two exits into one assembler."""

    def __init__(self, assembler: Assembler) -> None:
        self.asm = assembler
        #: Jump here when the frame does not match (also used for out-of-bounds loads).
        self.no_match = Label("no_match")
        #: Jump here when the frame matches.
        self.match = Label("match")

    def enter(self, needs_length: bool, whole_frame_length: bool = False) -> None:
        """Save ctx and load data/data_end; compute the frame length if it is used.

        The length is ``data_end - data``, a pointer subtraction, which the verifier
        allows only to programs loaded with CAP_PERFMON (root has it): it is emitted only
        when the filter reads the length. With ``whole_frame_length`` it comes from
        ``bpf_xdp_get_buff_len`` instead, every buffer of a multi-buffer frame counted.
        """
        asm = self.asm
        asm.mov64_reg(CTX, Reg.R1)
        ctx = Reg.R1
        if needs_length and whole_frame_length:
            asm.call_helper(_BPF_FUNC_XDP_GET_BUFF_LEN)  # takes r1 = ctx, clobbers r1-r5
            asm.mov64_reg(LENGTH, Reg.R0)
            ctx = CTX
        asm.load(BPF_W, DATA, ctx, _XDP_MD_DATA)
        asm.load(BPF_W, DATA_END, ctx, _XDP_MD_DATA_END)
        if needs_length and not whole_frame_length:
            asm.mov64_reg(LENGTH, DATA_END)
            asm.alu64_reg(BPF_SUB, LENGTH, DATA)
        # Never taken; keeps "no match" statically reachable when a filter never fails
        # (the verifier refuses unreachable instructions).
        asm.mov32_imm(Reg.R0, 0)
        asm.jump_imm(BPF_JNE, Reg.R0, 0, self.no_match)

    def finish(self) -> None:
        """Place the exits: no match returns XDP_PASS; a match falls through with r1 = ctx."""
        asm = self.asm
        asm.place(self.no_match)
        asm.mov32_imm(Reg.R0, XDP_PASS)
        asm.jump_imm(BPF_JNE, Reg.R0, XDP_PASS, self.match)  # never taken, as above
        asm.exit()
        asm.place(self.match)
        asm.mov64_reg(Reg.R1, CTX)

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

    def load_constant_offset(self, dst: Reg, offset: int, size: int) -> None:
        """``dst`` = the ``size``-byte big-endian value at ``offset``; no match if beyond the frame."""
        asm = self.asm
        if offset + size > _MAX_PACKET_OFFSET:
            # No frame is this long: the bounds check always fails.
            asm.mov32_imm(_ADDRESS, offset)
            self._bound_and_load(dst, size)
            return
        asm.mov64_reg(_ADDRESS, DATA)
        asm.alu64_imm(BPF_ADD, _ADDRESS, offset)
        self._load_at_address(dst, size)

    def load_variable_offset(self, dst: Reg, offset: Reg, extra: int, size: int) -> None:
        """``dst`` = the value at ``offset + extra`` (offset: a 32-bit value in a register)."""
        asm = self.asm
        asm.mov64_reg(_ADDRESS, offset)
        if extra >= 1 << 31:
            asm.mov32_imm(_LIMIT, extra)
            asm.alu64_reg(BPF_ADD, _ADDRESS, _LIMIT)
        elif extra:
            asm.alu64_imm(BPF_ADD, _ADDRESS, extra)
        self._bound_and_load(dst, size)

    def _bound_and_load(self, dst: Reg, size: int) -> None:
        """Load at packet offset r1 (a scalar), first bounding it for the verifier."""
        asm = self.asm
        # Bounds the offset for the verifier; no frame reaches this far anyway.
        asm.jump_imm(BPF_JGT, _ADDRESS, _MAX_PACKET_OFFSET - size, self.no_match, wide=True)
        asm.alu64_reg(BPF_ADD, _ADDRESS, DATA)
        self._load_at_address(dst, size)

    def _load_at_address(self, dst: Reg, size: int) -> None:
        asm = self.asm
        asm.mov64_reg(_LIMIT, _ADDRESS)
        asm.alu64_imm(BPF_ADD, _LIMIT, size)
        asm.jump_reg(BPF_JGT, _LIMIT, DATA_END, self.no_match, wide=True)
        asm.load(_SIZES[size], dst, _ADDRESS, 0)
        if size > 1:
            asm.to_big_endian(dst, size * 8)
