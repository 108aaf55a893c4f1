"""Test traffic at millions of frames per second from Python, with no tool but the kernel.

A four-instruction XDP program, ``return bpf_redirect(ifindex, 0)``, is run by
``BPF_PROG_TEST_RUN`` with ``BPF_F_TEST_XDP_LIVE_FRAMES`` (Linux 5.18+): the kernel
builds ``repeat`` copies of one frame, ``batch_size`` at a time, runs the program on each
and really performs the redirect, so every copy is transmitted out of the interface.
One system call sends up to millions of frames, which is why plain Python keeps up.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from .._bpf import BPF_F_TEST_XDP_LIVE_FRAMES, BPF_PROG_TYPE_XDP, prog_load, prog_test_run
from .._interface import interface_index, interface_name

__all__ = [
    "BPF_FUNC_redirect",
    "DEFAULT_BATCH_SIZE",
    "GeneratorResult",
    "MAX_BATCH_SIZE",
    "MAX_FRAME_SIZE",
    "MIN_FRAME_SIZE",
    "TrafficGenerator",
    "redirect_program",
]

# struct bpf_insn (include/uapi/linux/bpf.h): u8 code; u8 dst_reg:4, src_reg:4; s16 off;
# s32 imm. In host byte order; every machine _libc supports is little-endian, where the
# register byte is (src_reg << 4) | dst_reg.
_BPF_INSN = struct.Struct("<BBhi")
_BPF_ALU64_MOV_K = 0x07 | 0xB0 | 0x00  # BPF_ALU64 | BPF_MOV | BPF_K: dst = imm (sign-extended)
_BPF_JMP_CALL = 0x05 | 0x80  # BPF_JMP | BPF_CALL: call helper number imm
_BPF_JMP_EXIT = 0x05 | 0x90  # BPF_JMP | BPF_EXIT: return r0
_BPF_REG_1 = 1
_BPF_REG_2 = 2
BPF_FUNC_redirect = 23  # long bpf_redirect(u32 ifindex, u64 flags): returns XDP_REDIRECT

#: Smallest frame the kernel accepts for a test run: an Ethernet header (``ETH_HLEN``).
MIN_FRAME_SIZE = 14
_XDP_PACKET_HEADROOM = 256
# sizeof(struct xdp_page_head) 112 + SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) 320,
# measured on Linux 6.18 x86-64; the structures change a little between kernel versions.
_LIVE_FRAME_PAGE_OVERHEAD = 432
#: Largest live frame: each one must fit in one page together with the XDP headroom, the
#: kernel's ``xdp_page_head`` and the tail room for ``skb_shared_info`` (3408 with 4 KiB pages).
MAX_FRAME_SIZE = mmap.PAGESIZE - _XDP_PACKET_HEADROOM - _LIVE_FRAME_PAGE_OVERHEAD
#: Frames the kernel builds and redirects between two flushes; ``TEST_XDP_MAX_BATCH`` is 256.
DEFAULT_BATCH_SIZE = 64
MAX_BATCH_SIZE = 256

# Each test run costs a fixed ~24 ms of kernel setup and teardown (Linux 6.18, any repeat
# above 1), so runs are long enough to amortise it, yet sized to about _CHUNK_SECONDS at
# the rate measured so far, so that send_for() ends close to its deadline.
_CHUNK_SECONDS = 0.2
_FIRST_CHUNK_FRAMES = 1 << 16
_MAX_CHUNK_FRAMES = 1 << 22


def redirect_program(ifindex: int) -> bytes:
    """The instructions of ``return bpf_redirect(ifindex, 0)``, ready for ``prog_load``."""
    if isinstance(ifindex, bool) or not isinstance(ifindex, int):
        raise TypeError(f"ifindex must be an int, not {type(ifindex).__name__}")
    if not 0 < ifindex <= 0x7FFFFFFF:  # a positive s32, so mov's sign extension keeps it
        raise ValueError(f"ifindex must be a positive 32-bit int, not {ifindex}")
    return b"".join(
        (
            _BPF_INSN.pack(_BPF_ALU64_MOV_K, _BPF_REG_1, 0, ifindex),  # r1 = ifindex
            _BPF_INSN.pack(_BPF_ALU64_MOV_K, _BPF_REG_2, 0, 0),  # r2 = 0 (flags)
            _BPF_INSN.pack(_BPF_JMP_CALL, 0, 0, BPF_FUNC_redirect),  # r0 = bpf_redirect(r1, r2)
            _BPF_INSN.pack(_BPF_JMP_EXIT, 0, 0, 0),  # return r0
        )
    )


@dataclass(frozen=True)
class GeneratorResult:
    """What one ``send``/``send_for`` call did: how many frames, and how fast.

    ``frames`` counts the frames the kernel built and redirected to the interface; whether
    the receiving side kept them is up to it (see ``TrafficGenerator``). ``seconds`` is
    wall time, system calls included.
    """

    __slots__ = ("frames", "seconds", "frame_size")

    frames: int
    seconds: float
    frame_size: int

    @property
    def pps(self) -> float:
        """Frames per second."""
        return self.frames / self.seconds

    @property
    def bps(self) -> float:
        """Bits per second of frame bytes (no preamble, inter-frame gap or FCS)."""
        return self.pps * self.frame_size * 8


class TrafficGenerator:
    """Sends copies of one Ethernet frame out of ``ifname`` at millions per second.

    Owns one loaded XDP program (its file descriptor) until ``close()``, also a context
    manager; nothing is attached to any interface. Not thread-safe: use it from one thread
    at a time (one generator per thread for parallel traffic).

    ``frame`` is any bytes-like object or anything ``bytes()`` converts, such as a dpkt
    packet; it must be ``MIN_FRAME_SIZE``..``MAX_FRAME_SIZE`` bytes, destination MAC
    first, no FCS. With ``cpu``, each call pins the calling thread to that CPU while it
    runs and then restores the thread's previous affinity.

    Where the frames go, for a veth pair (generate into one end, receive on the other):

    - The receiving end accepts redirected frames only when it has a native-mode XDP
      program (for example an ``XDPPacket`` with ``OptXDPMode(XDP_MODE_DRV)``) or GRO on
      (``ethtool -K DEV gro on``). Otherwise the kernel drops them silently, and
      ``GeneratorResult.frames`` still counts them.
    - They land on rx queue (sending CPU mod the receiver's rx queue count): pass ``cpu``
      to choose the queue.
    - Each veth rx queue buffers 256 frames; a receiver that falls behind loses frames.

    The frames bypass the sending interface's stack and qdisc: ``AF_PACKET`` sockets
    (tcpdump) on the sending side do not see them.

    Rates: every kernel call has a fixed cost of about 24 ms here, so a small ``send``
    reports a low rate; measure with ``send_for`` or counts of a million and more. Ctrl-C
    interrupts a call at once. A signal whose handler returns normally makes the kernel
    stop a call early, and the call is restarted: more frames than counted go out.
    """

    def __init__(
        self,
        ifname: str,
        frame: object,
        *,
        cpu: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._prog_fd = -1  # until loaded, so close() and __del__ are safe
        self.frame = _frame_bytes(frame)
        self.cpu = _check_cpu(cpu)
        self.batch_size = _check_batch_size(batch_size)
        self.ifname = ifname
        self.ifindex = interface_index(ifname)
        with _explained_errors(ifname):
            self._prog_fd = prog_load(
                BPF_PROG_TYPE_XDP, redirect_program(self.ifindex), "GPL", f"tgen_{ifname}"
            )
        try:
            self._require_live_frames()
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- lifetime
    @property
    def closed(self) -> bool:
        return self._prog_fd < 0

    def close(self) -> None:
        """Unload the program; idempotent."""
        if self._prog_fd >= 0:
            prog_fd, self._prog_fd = self._prog_fd, -1
            os.close(prog_fd)

    def __enter__(self) -> TrafficGenerator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_prog_fd", -1) >= 0:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<TrafficGenerator {self.ifname} {len(self.frame)}-byte frame {state}>"

    # ------------------------------------------------------------------ sending
    def send(self, count: int) -> GeneratorResult:
        """Send ``count`` copies of the frame; Ctrl-C raises ``KeyboardInterrupt`` at once."""
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"count must be an int, not {type(count).__name__}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        return self._generate(count, math.inf)

    def send_for(self, seconds: float) -> GeneratorResult:
        """Send copies of the frame for about ``seconds`` (a few tens of ms more at most)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if not 0 < seconds < math.inf:
            raise ValueError(f"seconds must be positive and finite, got {seconds}")
        return self._generate(math.inf, seconds)

    def _generate(self, frame_budget: float, time_budget: float) -> GeneratorResult:
        """Run test runs until either budget is spent, each sized by ``_next_chunk``."""
        if self.closed:
            raise ValueError("send on a closed TrafficGenerator")
        self._check_interface()
        with _pinned_to(self.cpu):
            sent = 0
            elapsed = 0.0
            start = time.perf_counter()
            while sent < frame_budget and elapsed < time_budget:
                chunk = min(_next_chunk(sent, elapsed, time_budget - elapsed), frame_budget - sent)
                self._run_live(int(chunk))
                sent += int(chunk)
                elapsed = time.perf_counter() - start
        return GeneratorResult(frames=sent, seconds=elapsed, frame_size=len(self.frame))

    def _run_live(self, frames: int) -> None:
        try:
            with _explained_errors(self.ifname):
                prog_test_run(
                    self._prog_fd,
                    self.frame,
                    repeat=frames,
                    flags=BPF_F_TEST_XDP_LIVE_FRAMES,
                    batch_size=self.batch_size,
                )
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
            # _require_live_frames passed and everything we pass was validated, so the
            # kernel's own frame limit (a page minus its overhead) is the likely cause.
            raise OSError(
                err.errno,
                f"TrafficGenerator on {self.ifname!r}: the kernel refused to send a "
                f"{len(self.frame)}-byte live frame (EINVAL); this kernel's limit may be "
                f"below MAX_FRAME_SIZE ({MAX_FRAME_SIZE}): try a smaller frame",
            ) from None

    def _require_live_frames(self) -> None:
        """Ask the kernel, sending nothing, whether it has ``BPF_F_TEST_XDP_LIVE_FRAMES``.

        A kernel that has it checks ``batch_size`` first and refuses one above its maximum
        with E2BIG before building any frame; an older kernel refuses the unknown flag
        (or the unknown ``batch_size`` field) with EINVAL.
        """
        try:
            prog_test_run(
                self._prog_fd,
                self.frame,
                flags=BPF_F_TEST_XDP_LIVE_FRAMES,
                batch_size=0xFFFFFFFF,
            )
        except OSError as err:
            if err.errno == errno.E2BIG:
                return
            if err.errno == errno.EINVAL:
                raise OSError(
                    errno.EINVAL,
                    f"TrafficGenerator on {self.ifname!r}: this kernel lacks "
                    "BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18+ needed)",
                ) from None
            raise

    def _check_interface(self) -> None:
        """Refuse to send when the interface is gone: the kernel would drop every frame."""
        try:
            current_name = interface_name(self.ifindex)
        except FileNotFoundError:
            current_name = None
        if current_name != self.ifname:
            raise FileNotFoundError(
                errno.ENODEV,
                f"TrafficGenerator: interface {self.ifname!r} (index {self.ifindex}) no "
                "longer exists in this network namespace",
            )


@contextmanager
def _explained_errors(ifname: str) -> Iterator[None]:
    """Re-raise EPERM naming the generator, the interface and the privileges it needs."""
    try:
        yield
    except PermissionError as err:
        if err.errno != errno.EPERM:
            raise
        raise PermissionError(
            err.errno,
            f"TrafficGenerator on {ifname!r}: {err.strerror}: loading and running an XDP "
            "program needs root, or CAP_BPF and CAP_NET_ADMIN",
        ) from None


@contextmanager
def _pinned_to(cpu: int | None) -> Iterator[None]:
    """Run the block with the calling thread on ``cpu`` only, then restore its affinity."""
    if cpu is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def _next_chunk(sent: int, elapsed: float, time_left: float) -> int:
    """Frames for the next test run: about ``_CHUNK_SECONDS`` (or ``time_left``) of them."""
    if sent == 0 or elapsed <= 0:
        return _FIRST_CHUNK_FRAMES
    rate = sent / elapsed
    return max(1, min(_MAX_CHUNK_FRAMES, int(rate * min(_CHUNK_SECONDS, time_left))))


def _frame_bytes(frame: object) -> bytes:
    """The frame as bytes, or a ``TypeError``/``ValueError`` saying what is wrong."""
    if isinstance(frame, str):
        raise TypeError("frame must be bytes-like, not str: encode it, or use bytes.fromhex()")
    if isinstance(frame, int):  # bytes(60) would be 60 zero bytes, almost surely a mistake
        raise TypeError(f"frame must be bytes-like, not {type(frame).__name__}")
    try:
        data: bytes = bytes(frame)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"frame must be bytes-like or convertible with bytes(), not {type(frame).__name__}"
        ) from None
    if not MIN_FRAME_SIZE <= len(data) <= MAX_FRAME_SIZE:
        raise ValueError(
            f"frame of {len(data)} bytes: live frames must be {MIN_FRAME_SIZE} (an Ethernet "
            f"header) to {MAX_FRAME_SIZE} (a page minus the kernel's headroom) bytes"
        )
    return data


def _check_cpu(cpu: int | None) -> int | None:
    if cpu is None:
        return None
    if isinstance(cpu, bool) or not isinstance(cpu, int):
        raise TypeError(f"cpu must be an int or None, not {type(cpu).__name__}")
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise ValueError(f"cpu {cpu} is not one this thread may run on: {sorted(allowed)}")
    return cpu


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, not {type(batch_size).__name__}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be in 1..{MAX_BATCH_SIZE}, got {batch_size}")
    return batch_size
