"""A live-frames generator that sends at a set rate, one frame per time slot, for benchmarks.

``xdppacket.testing.TrafficGenerator`` sends as fast as the receiving path takes frames,
and each of its calls costs ~30 ms of fixed, serialised kernel time: paced from user space
the load could only come as ~30 bursts a second. Here the pacing is in the XDP program the
kernel runs for every frame (``BPF_PROG_TEST_RUN`` with live frames): it reads the clock
(``bpf_ktime_get_ns``, CLOCK_MONOTONIC) and redirects a frame into the interface only when
its slot has come (one every 1/rate seconds), dropping the others before they leave (an
``XDP_DROP`` costs tens of nanoseconds). One long call covers a whole run, so the frames
arrive evenly spaced, a batch flush at a time (``batch_size`` frames of the run, sent or
not), as from a NIC at that rate.

A receiving path slower than the rate delays the slots (the kernel's receive work runs on
the generator's CPU for veth); the program then sends back to back until it has caught up,
and what is still due at the end is never sent: ``PacedResult.shortfall``. A NIC would have
dropped those frames; the caller decides how to count them.

Optionally every ``mark_every``-th frame sent gets UDP destination port ``mark_port`` (the
others ``other_port``): an exact mix from one frame, for filter benchmarks (the frame must
be IPv4 without options, UDP; its UDP checksum must be 0).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from xdppacket._bpf import (
    BPF_F_TEST_XDP_LIVE_FRAMES,
    BPF_MAP_TYPE_ARRAY,
    BPF_PROG_TYPE_XDP,
    BPF_PSEUDO_MAP_FD,
    map_create,
    map_lookup,
    map_update,
    prog_load,
    prog_test_run,
)

__all__ = ["REALTIME_MAX_SECONDS", "REALTIME_PRIORITY", "PacedGenerator", "PacedResult"]

#: SCHED_FIFO priority of real-time runs: the lowest, above every ordinary task.
REALTIME_PRIORITY = 1
#: The longest real-time send that the kernel's 950 ms of every second never interrupts.
REALTIME_MAX_SECONDS = 0.9

_INSN = struct.Struct("<BBhi")
# The program's state: one array entry of u64 fields, written by user space before each run.
_STATE = struct.Struct("<QQQQQQQQ")
_NEXT, _INTERVAL, _END, _SENT, _EVERY, _MARK_PORT, _OTHER_PORT, _FIRST = (8 * i for i in range(8))
_UDP_DPORT_OFFSET = 14 + 20 + 2  # Ethernet, IPv4 without options, UDP source port
_XDP_DROP = 1
_BPF_FUNC_map_lookup_elem = 1
_BPF_FUNC_ktime_get_ns = 5
_BPF_FUNC_redirect = 23
_MAX_REPEAT = 0xFFFFFFFF
_CALIBRATION_FRAMES = 2_000_000
#: Spare frames per call: the call must last past the run's end, or a second call (after its
#: ~30 ms of fixed kernel time) has to catch up.
_REPEAT_MARGIN = 1.3


class _Assembler:
    """Just enough of an eBPF assembler for the pacing program: instructions and labels."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int, int, int, int, str | None]] = []
        self.labels: dict[str, int] = {}

    def insn(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self.code.append((code, dst, src, off, imm, None))

    def jump(self, code: int, dst: int, label: str, src: int = 0, imm: int = 0) -> None:
        self.code.append((code, dst, src, 0, imm, label))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = []
        for index, (code, dst, src, off, imm, label) in enumerate(self.code):
            if label is not None:
                off = self.labels[label] - index - 1
            out.append(_INSN.pack(code, (src << 4) | dst, off, imm))
        return b"".join(out)


# Opcodes (include/uapi/linux/bpf.h): class | size/op | mode/source.
_LDX_DW, _LDX_W, _STX_DW, _STX_H, _ST_W = 0x79, 0x61, 0x7B, 0x6B, 0x62
_ADD_K, _ADD_X, _MOD_X, _MOV_K, _MOV_X = 0x07, 0x0F, 0x9F, 0xB7, 0xBF
_JA, _JEQ_K, _JNE_K, _JGT_X, _JGE_X, _JLT_X = 0x05, 0x15, 0x55, 0x2D, 0x3D, 0xAD
_CALL, _EXIT, _LD_IMM64 = 0x85, 0x95, 0x18


def _program(map_fd: int, ifindex: int) -> bytes:
    """r6 = ctx, r7 = &state, r8 = now, r9 = next slot."""
    a = _Assembler()
    a.insn(_MOV_X, 6, 1)
    a.insn(_ST_W, 10, off=-4, imm=0)  # key 0 on the stack
    a.insn(_MOV_X, 2, 10)
    a.insn(_ADD_K, 2, imm=-4)
    a.insn(_LD_IMM64, 1, BPF_PSEUDO_MAP_FD, imm=map_fd)
    a.insn(0)  # second half of ld_imm64 (upper 32 bits of the immediate: 0)
    a.insn(_CALL, imm=_BPF_FUNC_map_lookup_elem)
    a.jump(_JEQ_K, 0, "drop", imm=0)
    a.insn(_MOV_X, 7, 0)
    a.insn(_CALL, imm=_BPF_FUNC_ktime_get_ns)
    a.insn(_MOV_X, 8, 0)
    a.insn(_LDX_DW, 1, 7, off=_END)
    a.jump(_JGE_X, 8, "drop", src=1)  # the run is over
    a.insn(_LDX_DW, 9, 7, off=_NEXT)
    a.jump(_JNE_K, 9, "started", imm=0)
    a.insn(_MOV_X, 9, 8)  # the first frame of a run: its slot is now
    a.insn(_STX_DW, 7, 8, off=_FIRST)
    a.label("started")
    a.jump(_JLT_X, 8, "drop", src=9)  # not this frame's slot yet
    a.insn(_LDX_DW, 1, 7, off=_INTERVAL)
    a.insn(_ADD_X, 9, 1)
    a.insn(_STX_DW, 7, 9, off=_NEXT)
    a.insn(_LDX_DW, 4, 7, off=_SENT)
    a.insn(_ADD_K, 4, imm=1)
    a.insn(_STX_DW, 7, 4, off=_SENT)
    a.insn(_LDX_DW, 3, 7, off=_EVERY)
    a.jump(_JEQ_K, 3, "redirect", imm=0)  # no mix: the frame as it is
    a.insn(_LDX_W, 5, 6, off=0)  # data
    a.insn(_LDX_W, 1, 6, off=4)  # data_end
    a.insn(_MOV_X, 2, 5)
    a.insn(_ADD_K, 2, imm=_UDP_DPORT_OFFSET + 2)
    a.jump(_JGT_X, 2, "redirect", src=1)  # too short to mark (bounds check for the verifier)
    a.insn(_MOV_X, 0, 4)
    a.insn(_MOD_X, 0, 3)  # sent % every
    a.insn(_LDX_DW, 2, 7, off=_OTHER_PORT)
    a.jump(_JNE_K, 0, "store", imm=0)
    a.insn(_LDX_DW, 2, 7, off=_MARK_PORT)
    a.label("store")
    a.insn(_STX_H, 5, 2, off=_UDP_DPORT_OFFSET)
    a.label("redirect")
    a.insn(_MOV_K, 1, imm=ifindex)
    a.insn(_MOV_K, 2, imm=0)
    a.insn(_CALL, imm=_BPF_FUNC_redirect)
    a.insn(_EXIT)
    a.label("drop")
    a.insn(_MOV_K, 0, imm=_XDP_DROP)
    a.insn(_EXIT)
    return a.assemble()


@dataclass(frozen=True)
class PacedResult:
    """One paced run: frames sent, frames due that were never sent, and the marked ones."""

    sent: int
    shortfall: int
    marked: int
    seconds: float
    calls: int

    @property
    def asked(self) -> int:
        """Frames the rate asked for over the run."""
        return self.sent + self.shortfall


class PacedGenerator:
    """Sends copies of ``frame`` out of ``ifname`` at a set rate (see the module's doc).

    ``cpu``: the thread runs there while sending (a veth receiver gets the frames on rx
    queue CPU mod its queue count, and its kernel receive work runs there too); with
    ``realtime``, as SCHED_FIFO (see ``_run``).
    """

    def __init__(self, ifname: str, frame: bytes, *, cpu: int, batch_size: int = 64, realtime: bool = False,
                 mark_every: int = 0, mark_port: int = 0, other_port: int = 0) -> None:
        self.frame = bytes(frame)
        self.cpu = cpu
        self.realtime = realtime
        self.batch_size = batch_size
        self._mix = (mark_every, socket.htons(mark_port), socket.htons(other_port))
        if mark_every and len(self.frame) < _UDP_DPORT_OFFSET + 2:
            raise ValueError("a marked mix needs an IPv4/UDP frame")
        self._prog_fd = -1
        self._map_fd = map_create(BPF_MAP_TYPE_ARRAY, 4, _STATE.size, 1, "paced_state")
        try:
            self._prog_fd = prog_load(BPF_PROG_TYPE_XDP, _program(self._map_fd, socket.if_nametoindex(ifname)),
                                      "GPL", "paced_gen")
            self._drop_rate = self._calibrate()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in (self._prog_fd, self._map_fd):
            if fd >= 0:
                os.close(fd)
        self._prog_fd = self._map_fd = -1

    def __enter__(self) -> PacedGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _calibrate(self) -> float:
        """Frames a second the program gets through when it sends none (the run is over)."""
        self._write_state(next_slot=0, interval=1, end=0)
        start = time.monotonic()
        self._run(_CALIBRATION_FRAMES)
        return _CALIBRATION_FRAMES / (time.monotonic() - start)

    def _write_state(self, next_slot: int, interval: int, end: int) -> None:
        every, mark, other = self._mix
        map_update(self._map_fd, bytes(4), _STATE.pack(next_slot, interval, end, 0, every, mark, other, 0))

    def _sent_and_first(self) -> tuple[int, int]:
        """Frames sent in this run, and the clock when the first of them was."""
        value = map_lookup(self._map_fd, bytes(4), _STATE.size)
        assert value is not None  # an array map has every index
        state = _STATE.unpack(value)
        return state[_SENT // 8], state[_FIRST // 8]

    def _run(self, frames: int) -> None:
        """One test run on ``cpu``; with ``realtime`` as SCHED_FIFO, so that other work on a
        shared machine cannot preempt the pacing. The kernel still gives ordinary tasks 50 ms
        of each second a real-time task keeps a CPU busy (RT throttling, or the fair server
        since Linux 6.12): keep each ``send`` under ``REALTIME_MAX_SECONDS``, with a pause
        after it, or the frames stop for those 50 ms."""
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cpu})
        if self.realtime:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        try:
            prog_test_run(self._prog_fd, self.frame, repeat=frames, flags=BPF_F_TEST_XDP_LIVE_FRAMES,
                          batch_size=self.batch_size)
        finally:
            if self.realtime:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            os.sched_setaffinity(0, previous)

    def send(self, rate: float, seconds: float) -> PacedResult:
        """Send ``rate`` frames a second for ``seconds``, paced by the program."""
        interval = max(1, round(1e9 / rate))
        start = time.monotonic_ns()
        end = start + round(seconds * 1e9)
        self._write_state(next_slot=0, interval=interval, end=end)
        calls = 0
        while time.monotonic_ns() < end:
            left = (end - time.monotonic_ns()) / 1e9
            self._run(min(_MAX_REPEAT, max(self.batch_size, int(self._drop_rate * left * _REPEAT_MARGIN))))
            calls += 1
        sent, first = self._sent_and_first()
        # Slots from the first frame on (the call's fixed start-up time asks for none): one at
        # the first frame, then one every interval before the end.
        asked = -(-(end - (first if sent else start)) // interval)
        every = self._mix[0]
        return PacedResult(sent=sent, shortfall=max(0, asked - sent), marked=sent // every if every else 0,
                           seconds=(end - (first if sent else start)) / 1e9, calls=calls)
