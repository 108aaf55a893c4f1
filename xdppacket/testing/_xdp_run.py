"""Unit-test an XDP program without a NIC: run it once on a frame with ``BPF_PROG_TEST_RUN``.

The kernel runs the program on a copy of the frame exactly as a driver would (same
context, same helpers, same verifier) and reports the action it returned and the frame as
the program left it, so a test can assert both: "this filter drops ARP", "this program
swaps the MAC addresses and returns XDP_TX". Nothing is attached to any interface.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from enum import IntEnum
from pathlib import Path

from .. import _bpf
from .._bpf_object import BpfObject
from .._libc import bpf_syscall

__all__ = ["XDPAction", "run_xdp"]

# The kernel keeps XDP_PACKET_HEADROOM in front of the frame: a program may grow the frame
# at the head by that much (bpf_xdp_adjust_head), and at the tail up to the end of a page.
_XDP_PACKET_HEADROOM = 256
_OUTPUT_ROOM = _XDP_PACKET_HEADROOM + mmap.PAGESIZE


class XDPAction(IntEnum):
    """``enum xdp_action`` (include/uapi/linux/bpf.h): what an XDP program returns."""

    XDP_ABORTED = 0
    XDP_DROP = 1
    XDP_PASS = 2
    XDP_TX = 3
    XDP_REDIRECT = 4


def run_xdp(
    program: bytes | bytearray | memoryview | int | str | os.PathLike[str],
    frame: bytes | bytearray | memoryview,
    *,
    program_name: str | None = None,
    ingress_ifindex: int = 0,
    rx_queue_index: int = 0,
) -> tuple[XDPAction, bytes]:
    """Run an XDP program once on ``frame``; return its action and the frame it left.

    The frame out is the packet as the program left it (moved head and tail included,
    any metadata the program put before it left out).

    ``program`` is one of:

    - raw eBPF instructions (bytes-like, 8 bytes each), loaded for this run under the
      GPL license and unloaded afterwards;
    - the file descriptor (int) of an XDP program already loaded (left open);
    - the path (str or path-like) of an ELF object built with ``clang -target bpf``,
      loaded with xdppacket's own loader (its maps are created empty), and unloaded
      afterwards; ``program_name`` picks one program of an object that has several.

    ``ingress_ifindex`` and ``rx_queue_index`` fill the program's ``struct xdp_md``: the
    interface must exist in this network namespace when it is not 0 (the default).
    A program the verifier rejects raises ``BPFVerifierError`` with the verifier's log.
    Needs root, or ``CAP_BPF`` and ``CAP_NET_ADMIN``.
    """
    data = _frame_bytes(frame)
    if isinstance(program, bool):
        raise TypeError("program must be eBPF instructions, a program fd or an ELF path, not bool")
    if isinstance(program, int):
        if program_name is not None:
            raise ValueError("program_name applies to an ELF object, not to a program fd")
        return _test_run(program, data, ingress_ifindex, rx_queue_index)
    if isinstance(program, (str, os.PathLike)):
        try:
            bpf_object = BpfObject.parse(Path(program).read_bytes())
        except ValueError as err:
            raise ValueError(f"{os.fspath(program)}: {err}") from None
        with bpf_object.load(program_name=program_name) as loaded:
            return _test_run(loaded.prog_fd, data, ingress_ifindex, rx_queue_index)
    if isinstance(program, (bytes, bytearray, memoryview)):
        if program_name is not None:
            raise ValueError("program_name applies to an ELF object, not to raw instructions")
        prog_fd = _bpf.prog_load(
            _bpf.BPF_PROG_TYPE_XDP,
            bytes(program),
            "GPL",
            name="run_xdp",
            expected_attach_type=_bpf.BPF_XDP,
        )
        try:
            return _test_run(prog_fd, data, ingress_ifindex, rx_queue_index)
        finally:
            os.close(prog_fd)
    raise TypeError(
        "program must be eBPF instructions (bytes), a loaded program's fd (int) or the path "
        f"of an ELF object (str or path-like), not {type(program).__name__}"
    )


def _frame_bytes(frame: object) -> bytes:
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise TypeError(f"frame must be bytes-like, not {type(frame).__name__}")
    data = bytes(frame)
    if len(data) < 14:
        raise ValueError(
            f"frame of {len(data)} bytes: the kernel needs at least an Ethernet header (14)"
        )
    return data


def _test_run(
    prog_fd: int, data: bytes, ingress_ifindex: int, rx_queue_index: int
) -> tuple[XDPAction, bytes]:
    """One ``BPF_PROG_TEST_RUN`` of ``prog_fd`` that also asks for the output frame."""
    data_in = ctypes.create_string_buffer(data, len(data))
    data_out = ctypes.create_string_buffer(len(data) + _OUTPUT_ROOM)
    context = _bpf.xdp_md(
        data_end=len(data), ingress_ifindex=ingress_ifindex, rx_queue_index=rx_queue_index
    )
    context_out = _bpf.xdp_md()
    attr = _bpf.bpf_attr_test_run(
        prog_fd=prog_fd,
        data_size_in=len(data),
        data_in=ctypes.addressof(data_in),
        data_size_out=len(data_out),
        data_out=ctypes.addressof(data_out),
        repeat=1,
        ctx_size_in=ctypes.sizeof(context),
        ctx_in=ctypes.addressof(context),
        ctx_size_out=ctypes.sizeof(context_out),
        ctx_out=ctypes.addressof(context_out),
    )
    try:
        what = f"run_xdp: bpf(BPF_PROG_TEST_RUN) of program fd {prog_fd}"
        bpf_syscall(_bpf.BPF_PROG_TEST_RUN, attr, what)
    except PermissionError as err:
        raise PermissionError(
            err.errno,
            f"{err.strerror} (running an XDP program needs root, or CAP_BPF and CAP_NET_ADMIN)",
        ) from None
    except OSError as err:
        if err.errno == errno.EINVAL:
            raise OSError(
                err.errno,
                f"{err.strerror}: is fd {prog_fd} an XDP program, the frame at most a page, and "
                "ingress_ifindex/rx_queue_index an existing interface and queue?",
            ) from None
        raise
    try:
        action = XDPAction(attr.retval)
    except ValueError:
        raise ValueError(f"the program returned {attr.retval}, which is no XDP action") from None
    # The kernel hands back metadata (bpf_xdp_adjust_meta) and frame together; the
    # output context says where the frame starts.
    return action, data_out.raw[context_out.data : attr.data_size_out]
