"""Test topology helpers: a private network namespace, veth pairs and raw test frames.

Plain functions and classes with no pytest dependency, so that ``tests/conftest.py``
wraps them in fixtures and the scripts in ``cmd/`` (demo, benchmark) build the same
topology. Nothing here touches an interface it did not create: veth pairs are only
made once this process has moved into its own network namespace.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

__all__ = [
    "ETH_P_TEST",
    "MAX_FRAME_SIZE",
    "MIN_FRAME_SIZE",
    "AfPacketCapture",
    "AfPacketSender",
    "PrivateNetns",
    "VethFactory",
    "VethPair",
    "create_veth_pair",
    "current_private_netns",
    "delete_veth_pair",
    "enter_private_netns",
    "frame_seq",
    "kernel_unavailable_reason",
    "make_test_frame",
    "mixed_sizes",
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
_CLONE_NEWNET = 0x40000000
_AF_XDP = 44
_SOL_PACKET = 263
_PACKET_IGNORE_OUTGOING = 23
_SO_RCVBUFFORCE = 33
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCGIFHWADDR = 0x8927
_IFF_UP = 0x1
_IFREQ_FLAGS = struct.Struct("16sH14x")
_IFREQ_HWADDR = struct.Struct("16sH6s8x")
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
# Private network namespace


@dataclass(frozen=True)
class PrivateNetns:
    """Identity of the network namespace this process moved into, and of the one it left."""

    inode: int
    original_inode: int


_private_netns: PrivateNetns | None = None


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _set_interface_up(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ_FLAGS.pack(ifname.encode(), 0)
        (_, flags) = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(ifname.encode(), flags | _IFF_UP))


def enter_private_netns() -> PrivateNetns:
    """Move this process into a new, empty network namespace (once; later calls return it).

    Needs root. Afterwards the process sees only ``lo`` (brought up here) and whatever it
    creates; IPv6 is disabled so new interfaces send no router solicitations or MLD reports.
    Subprocesses started later inherit the namespace, which disappears with the last of them.
    Only the calling thread moves: call this before starting threads.
    """
    global _private_netns
    if _private_netns is not None:
        return _private_netns
    original_inode = _netns_inode()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    for scope in ("default", "all"):
        sysctl = Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6")
        if sysctl.exists():  # absent when the kernel has no IPv6 at all
            sysctl.write_text("1\n")
    _set_interface_up("lo")
    _private_netns = PrivateNetns(inode=_netns_inode(), original_inode=original_inode)
    return _private_netns


def current_private_netns() -> PrivateNetns | None:
    """The namespace ``enter_private_netns`` created, if this process is still in it."""
    if _private_netns is None or _netns_inode() != _private_netns.inode:
        return None
    return _private_netns


# --------------------------------------------------------------------------------------------
# veth pairs


@dataclass(frozen=True)
class VethPair:
    """Both ends of a veth pair: tests capture on ``capture`` and send from ``peer``.

    A frame sent on one end arrives on the other. ``queues`` is the number of rx and tx
    queues of the capture end, ``peer_queues`` that of the peer (the same unless the pair
    was made asymmetric, see ``create_veth_pair``).
    """

    capture: str
    peer: str
    capture_index: int
    peer_index: int
    capture_mac: bytes
    peer_mac: bytes
    queues: int
    peer_queues: int


class VethFactory(Protocol):
    """Type of the ``make_veth`` fixture: creates a pair, deleted when the test ends."""

    def __call__(self, queues: int = 1, peer_queues: int | None = None) -> VethPair: ...


_veth_numbers = itertools.count(1)


def _mac_address(ifname: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        reply = fcntl.ioctl(sock, _SIOCGIFHWADDR, _IFREQ_HWADDR.pack(ifname.encode(), 0, b""))
    mac: bytes = _IFREQ_HWADDR.unpack(reply)[2]
    return mac


def _interface_exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def create_veth_pair(queues: int = 1, peer_queues: int | None = None) -> VethPair:
    """Create a veth pair ``xa<N>``/``xb<N>``, both up.

    The capture end ``xa<N>`` gets ``queues`` rx and tx queues, the peer ``xb<N>`` gets
    ``peer_queues`` (default: the same). An asymmetric pair is for generic-mode tests that
    steer frames to every capture queue (see ``tests.xdp_helpers.peer_tx_queue_reaching``);
    native XDP on veth refuses a capture end with fewer rx queues than its peer has tx queues.

    Refuses to run outside the namespace of ``enter_private_netns``, so it can never add
    interfaces to the machine's own network. The caller deletes it with ``delete_veth_pair``.
    """
    if current_private_netns() is None:
        raise RuntimeError("refusing to create a veth pair outside a private network namespace")
    if peer_queues is None:
        peer_queues = queues
    for name, count in (("queues", queues), ("peer_queues", peer_queues)):
        if not 1 <= count <= 4096:
            raise ValueError(f"{name} must be in 1..4096, not {count}")
    number = next(n for n in _veth_numbers if not _interface_exists(f"xa{n}"))
    capture, peer = f"xa{number}", f"xb{number}"
    capture_args = ("numrxqueues", str(queues), "numtxqueues", str(queues))
    peer_args = ("numrxqueues", str(peer_queues), "numtxqueues", str(peer_queues))
    run_command(
        "ip", "link", "add", capture, *capture_args, "type", "veth", "peer", "name", peer, *peer_args
    )
    try:
        for ifname in (capture, peer):
            _set_interface_up(ifname)
        return VethPair(
            capture=capture,
            peer=peer,
            capture_index=socket.if_nametoindex(capture),
            peer_index=socket.if_nametoindex(peer),
            capture_mac=_mac_address(capture),
            peer_mac=_mac_address(peer),
            queues=queues,
            peer_queues=peer_queues,
        )
    except BaseException:
        run_command("ip", "link", "delete", capture)
        raise


def delete_veth_pair(pair: VethPair) -> None:
    """Delete both ends of ``pair``; a pair the test already deleted is fine."""
    if _interface_exists(pair.capture):
        run_command("ip", "link", "delete", pair.capture)


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
