"""Test topology helpers: a private network namespace, veth pairs and raw test frames.

Plain functions and classes with no pytest dependency, so that ``tests/conftest.py``
wraps them in fixtures and the scripts in ``cmd/`` (demo, benchmark) build the same
topology. The namespace and veth pairs themselves come from ``xdppacket.testing`` (the
toolkit users get), re-exported here; it creates veth pairs only inside a private
network namespace, so nothing here can touch an interface it did not create.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import platform
import random
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

from xdppacket.testing import PrivateNetns, VethPair

__all__ = [
    "ETH_P_TEST",
    "MAX_FRAME_SIZE",
    "MIN_FRAME_SIZE",
    "AfPacketCapture",
    "AfPacketSender",
    "PrivateNetns",
    "VethFactory",
    "VethPair",
    "frame_seq",
    "kernel_unavailable_reason",
    "make_test_frame",
    "mixed_sizes",
    "next_veth_names",
    "run_command",
    "run_in_subprocess",
    "start_script",
    "start_subprocess",
]

#: Ethertype reserved for local experiments (IEEE 802 "local experimental ethertype 1").
ETH_P_TEST = 0x88B5
#: Smallest Ethernet frame without FCS, and the largest one a 1500-byte MTU allows.
MIN_FRAME_SIZE = 60
MAX_FRAME_SIZE = 1514

_ETH_HEADER = struct.Struct("!6s6sH")
_SEQ = struct.Struct("!I")
_AF_XDP = 44
_SOL_PACKET = 263
_PACKET_IGNORE_OUTGOING = 23
_SO_RCVBUFFORCE = 33
_BPF_SYSCALL_BY_MACHINE = {"x86_64": 321, "aarch64": 280, "arm64": 280}
_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_XDP = 6
_REPO_ROOT = Path(__file__).resolve().parent.parent
# iproute2 lives in /usr/sbin, which a non-login root shell may not have on PATH.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


# --------------------------------------------------------------------------------------------
# Test frames


def make_test_frame(size: int, seq: int, dst: bytes, src: bytes) -> bytes:
    """Build an Ethernet frame of exactly ``size`` bytes with ethertype ``ETH_P_TEST``.

    The payload is ``seq`` (u32, big endian) followed by bytes counting up from ``seq % 256``,
    so every frame is distinct and a corrupted or truncated copy is easy to spot.
    """
    header_size = _ETH_HEADER.size + _SEQ.size
    if size < header_size:
        raise ValueError(f"a test frame needs at least {header_size} bytes, not {size}")
    if len(dst) != 6 or len(src) != 6:
        raise ValueError("dst and src must be 6-byte MAC addresses")
    pattern_size = size - header_size
    start = seq % 256
    pattern = (bytes(range(256)) * (pattern_size // 256 + 2))[start : start + pattern_size]
    return _ETH_HEADER.pack(dst, src, ETH_P_TEST) + _SEQ.pack(seq & 0xFFFFFFFF) + pattern


def frame_seq(frame: bytes | memoryview) -> int:
    """Return the sequence number ``make_test_frame`` put into ``frame``."""
    return int(_SEQ.unpack_from(frame, _ETH_HEADER.size)[0])


def mixed_sizes(count: int) -> list[int]:
    """A deterministic shuffled list of ``count`` frame sizes spread over 60..1514, both ends included."""
    if count < 2:
        raise ValueError(f"mixed_sizes needs count >= 2 to include both ends, not {count}")
    span = MAX_FRAME_SIZE - MIN_FRAME_SIZE
    sizes = [MIN_FRAME_SIZE + span * i // (count - 1) for i in range(count)]
    random.Random(ETH_P_TEST).shuffle(sizes)
    return sizes


# --------------------------------------------------------------------------------------------
# Commands and subprocesses


def run_command(*argv: str, timeout: float = 30.0) -> str:
    """Run a command (``ip``, ``ethtool``, ...) and return its stdout; raise with its stderr."""
    executable = shutil.which(argv[0], path=_SBIN_PATH)
    if executable is None:
        raise FileNotFoundError(errno.ENOENT, f"{argv[0]} not found; run `make setup`", argv[0])
    result = subprocess.run(
        [executable, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv)}` exited with {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def start_subprocess(source: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c source args...`` in this process's network namespace.

    The child uses this interpreter and can import ``xdppacket`` and ``tests.netns`` from
    this checkout. ``source`` is dedented, so it can be written as an indented string.
    For tests that need a second process: a separate sender, a signal, a killed owner.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_in_subprocess(
    source: str, *args: str, timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c source args...`` to completion (see ``start_subprocess``).

    With ``check`` a non-zero exit raises ``RuntimeError`` carrying the child's output.
    """
    process = start_subprocess(source, *args)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise RuntimeError(
            f"subprocess did not finish within {timeout} s\n--- stdout ---\n{stdout}"
            f"--- stderr ---\n{stderr}"
        ) from None
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and completed.returncode != 0:
        raise RuntimeError(
            f"subprocess exited with {completed.returncode}\n--- stdout ---\n{stdout}"
            f"--- stderr ---\n{stderr}"
        )
    return completed


# --------------------------------------------------------------------------------------------
# Kernel support


def _bpf_can_load_xdp() -> str | None:
    """Load and close a two-instruction XDP program; return why that failed, or None."""
    syscall_number = _BPF_SYSCALL_BY_MACHINE.get(platform.machine())
    if syscall_number is None:
        return f"no known bpf() syscall number on {platform.machine()}"
    instructions = (
        struct.pack("<BBhi", 0xB7, 0, 0, 2)  # r0 = XDP_PASS
        + struct.pack("<BBhi", 0x95, 0, 0, 0)  # exit
    )
    program = ctypes.create_string_buffer(instructions, len(instructions))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "<IIQQ",
        attr,
        0,
        _BPF_PROG_TYPE_XDP,
        len(instructions) // 8,
        ctypes.addressof(program),
        ctypes.addressof(license_),
    )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(
        ctypes.c_long(syscall_number),
        ctypes.c_long(_BPF_PROG_LOAD),
        ctypes.c_void_p(ctypes.addressof(attr)),
        ctypes.c_uint(len(attr)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        return f"bpf(BPF_PROG_LOAD) of an XDP program failed: {os.strerror(err)}"
    os.close(fd)
    return None


def kernel_unavailable_reason() -> str | None:
    """Say why this process cannot run AF_XDP integration tests here, or None if it can."""
    if os.geteuid() != 0:
        return "not root: AF_XDP, bpf() and veth pairs need CAP_NET_ADMIN and CAP_BPF"
    try:
        socket.socket(_AF_XDP, socket.SOCK_RAW).close()
    except OSError as exc:
        return f"socket(AF_XDP) failed ({exc.strerror}): kernel without CONFIG_XDP_SOCKETS?"
    bpf_problem = _bpf_can_load_xdp()
    if bpf_problem is not None:
        return bpf_problem
    if shutil.which("ip", path=_SBIN_PATH) is None:
        return "iproute2's `ip` not found: run `make setup`"
    return None


# --------------------------------------------------------------------------------------------
# Private network namespace and veth pairs: xdppacket.testing's, which users get too


class VethFactory(Protocol):
    """Type of the ``make_veth`` fixture: creates a pair, deleted when the test ends."""

    def __call__(self, queues: int = 1, peer_queues: int | None = None) -> VethPair: ...


_veth_numbers = itertools.count(1)


def next_veth_names() -> tuple[str, str]:
    """Names ``xa<N>``/``xb<N>`` for a new pair (capture end, peer), unused in this namespace."""
    number = next(n for n in _veth_numbers if not _interface_exists(f"xa{n}"))
    return f"xa{number}", f"xb{number}"


def _interface_exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# AF_PACKET sender and capture


class _AfPacketSocket:
    """Owns ``self._sock`` until ``close()``; a context manager that closes it."""

    _sock: socket.socket

    def close(self) -> None:
        self._sock.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


_Self = TypeVar("_Self", bound=_AfPacketSocket)


class AfPacketSender(_AfPacketSocket):
    """Sends raw Ethernet frames out of one interface through an ``AF_PACKET`` socket.

    Owns the socket until ``close()`` (also a context manager). Not thread-safe.
    """

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        # Protocol 0: the socket only sends and never queues received frames.
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._sock.bind((ifname, 0))
        except BaseException:
            self._sock.close()
            raise

    def send(self, frame: bytes) -> None:
        """Send one complete frame (destination MAC first, no FCS)."""
        sent = self._sock.send(frame)
        if sent != len(frame):
            raise OSError(errno.EMSGSIZE, f"{self.ifname}: sent {sent} of {len(frame)} bytes")



class AfPacketCapture(_AfPacketSocket):
    """Captures frames of ethertype ``ETH_P_TEST`` arriving on one interface.

    The socket is bound to the interface as soon as the object exists, so create it before
    sending. With ``ignore_outgoing`` (the default) frames this host sends out of the
    interface are not captured. Owns the socket until ``close()``. Not thread-safe.
    """

    _RECEIVE_BUFFER_BYTES = 8 << 20  # room for a burst of full-size test frames

    def __init__(self, ifname: str, *, ignore_outgoing: bool = True) -> None:
        self.ifname = ifname
        # Protocol 0 until bound: no frame from another interface can slip in before bind().
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self._RECEIVE_BUFFER_BYTES)
            if ignore_outgoing:
                self._sock.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
            self._sock.bind((ifname, ETH_P_TEST))
        except BaseException:
            self._sock.close()
            raise

    def recv_frames(self, count: int, timeout: float) -> list[bytes]:
        """Return the next ``count`` frames, exact bytes; fewer if ``timeout`` seconds pass first."""
        frames: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(frames) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._sock.settimeout(remaining)
            try:
                frames.append(self._sock.recv(65536))
            except socket.timeout:
                break
        return frames



# --------------------------------------------------------------------------------------------
# Scripts of this checkout (examples, cmd/)


def start_script(path: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python PATH args...`` (PATH relative to the repository root) like ``start_subprocess``.

    The script runs in this process's network namespace, with this interpreter, and can
    import ``xdppacket`` from this checkout; stdout and stderr are pipes (text). It leads
    a process group of its own, as a shell job would: ``os.killpg(script.pid, SIGINT)``
    is Ctrl-C for it and every process it starts.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(_REPO_ROOT / path), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
