"""A private network namespace and veth pairs inside it, for tests that need real interfaces.

``private_netns()`` moves the calling thread into a new, empty network namespace and back
again; ``veth_pair()`` creates both ends of a veth pair there and deletes them afterwards.
Both are context managers that clean up even when their block raises, so they work as
pytest fixtures (``yield`` inside the ``with``) and in plain scripts alike.

veth pairs are only ever created inside a namespace made by ``private_netns()``: a test
built on these helpers cannot add, change or remove the machine's own interfaces, and
the frames it sends cannot leave the namespace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .._interface import IFNAMSIZ
from .._libc import setns, unshare

__all__ = ["PrivateNetns", "VethPair", "in_private_netns", "private_netns", "veth_pair"]

_CLONE_NEWNET = 0x40000000  # linux/sched.h
_SIOCGIFFLAGS = 0x8913  # linux/sockios.h
_SIOCSIFFLAGS = 0x8914
_SIOCGIFHWADDR = 0x8927
_IFF_UP = 0x1  # linux/if.h
_IFREQ_FLAGS = struct.Struct("16sH14x")  # struct ifreq with ifr_flags
_IFREQ_HWADDR = struct.Struct("16sH6s8x")  # struct ifreq with ifr_hwaddr (a sockaddr)
_MAX_QUEUES = 4096  # what veth accepts for numrxqueues/numtxqueues
# iproute2 lives in /usr/sbin, which a non-login root shell may not have on PATH.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

# Inode numbers of the namespaces private_netns() made and has not left yet (any thread).
_private_inodes: set[int] = set()
_private_inodes_lock = threading.Lock()


def _netns_inode() -> int:
    """The inode number naming the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


@dataclass(frozen=True)
class PrivateNetns:
    """The namespace ``private_netns()`` made (``inode``) and the one it came from."""

    inode: int
    original_inode: int


def in_private_netns() -> bool:
    """Whether the calling thread runs in a namespace made by ``private_netns()``."""
    with _private_inodes_lock:
        return _netns_inode() in _private_inodes


@contextmanager
def private_netns() -> Iterator[PrivateNetns]:
    """Run the block in a new, empty network namespace; return to the previous one after.

    Only the calling thread moves (threads and subprocesses it starts inside the block
    inherit the namespace). Inside, ``lo`` is up and IPv6 is off, so interfaces created
    there send no router solicitations or MLD reports of their own. On leaving, even
    through an exception, the thread goes back to the namespace it came from; the new
    one disappears with its interfaces as soon as nothing uses it any more (a socket
    left open or a subprocess still running there keeps it alive).

    Needs root (``CAP_SYS_ADMIN``). Nesting works: each block returns to its own origin.
    """
    original_inode = _netns_inode()
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(_CLONE_NEWNET, "unshare(CLONE_NEWNET) (a private namespace needs root)")
        try:
            netns = PrivateNetns(inode=_netns_inode(), original_inode=original_inode)
            _disable_ipv6()
            _set_up("lo")
            with _private_inodes_lock:
                _private_inodes.add(netns.inode)
            try:
                yield netns
            finally:
                with _private_inodes_lock:
                    _private_inodes.discard(netns.inode)
        finally:
            setns(original, _CLONE_NEWNET, "setns() back to the original network namespace")
    finally:
        os.close(original)


def _disable_ipv6() -> None:
    for scope in ("default", "all"):
        sysctl = Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6")
        if sysctl.exists():  # absent when the kernel has no IPv6 at all
            sysctl.write_text("1\n")


@dataclass(frozen=True)
class VethPair:
    """Both ends of a veth pair: capture on ``capture``, send from ``peer`` (or the reverse).

    A frame sent on one end arrives on the other. ``queues`` is the number of rx and tx
    queues of the capture end, ``peer_queues`` that of the peer. MAC addresses are the
    6 raw bytes, ready for an Ethernet header.
    """

    capture: str
    peer: str
    capture_index: int
    peer_index: int
    capture_mac: bytes
    peer_mac: bytes
    queues: int
    peer_queues: int


@contextmanager
def veth_pair(
    capture: str = "xa", peer: str = "xb", *, queues: int = 1, peer_queues: int | None = None
) -> Iterator[VethPair]:
    """Create the veth pair ``capture``/``peer``, both up; delete it when the block ends.

    ``queues`` rx and tx queues for the capture end, ``peer_queues`` (default: the same)
    for the peer. Native XDP on veth needs the receiving end to have at least as many rx
    queues as its peer has tx queues; an asymmetric pair suits generic-mode tests (a frame
    from peer tx queue q reaches capture rx queue max(q - 1, 0) there).

    Only inside ``private_netns()``: elsewhere a ``RuntimeError`` says so and nothing is
    created. Needs iproute2's ``ip`` and root.
    """
    if not in_private_netns():
        raise RuntimeError(
            "veth_pair() creates interfaces only inside `with private_netns():` (so that a "
            "test never touches the machine's own network); enter one first"
        )
    peer_queues = queues if peer_queues is None else peer_queues
    for what, name in (("capture", capture), ("peer", peer)):
        if not isinstance(name, str) or not 0 < len(name.encode()) < IFNAMSIZ:
            raise ValueError(
                f"{what} must be an interface name of 1 to {IFNAMSIZ - 1} bytes, not {name!r}"
            )
    if capture == peer:
        raise ValueError(f"the two ends need different names, both are {capture!r}")
    for what, count in (("queues", queues), ("peer_queues", peer_queues)):
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _MAX_QUEUES:
            raise ValueError(f"{what} must be an int from 1 to {_MAX_QUEUES}, not {count!r}")
    for name in (capture, peer):
        if _exists(name):
            raise FileExistsError(errno.EEXIST, f"interface {name!r} already exists here", name)
    _ip(
        # "name" spelt out: a bare name that abbreviates a keyword ("ma": master) is misread.
        "link", "add", "name", capture, "numrxqueues", str(queues), "numtxqueues", str(queues),
        "type", "veth",
        "peer", "name", peer, "numrxqueues", str(peer_queues), "numtxqueues", str(peer_queues),
    )  # fmt: skip
    try:
        _set_up(capture)
        _set_up(peer)
        yield VethPair(
            capture=capture,
            peer=peer,
            capture_index=socket.if_nametoindex(capture),
            peer_index=socket.if_nametoindex(peer),
            capture_mac=_mac_address(capture),
            peer_mac=_mac_address(peer),
            queues=queues,
            peer_queues=peer_queues,
        )
    finally:
        if _exists(capture):  # deleting one end deletes both; the block may have done it
            _ip("link", "delete", "dev", capture)


def _ip(*args: str) -> None:
    """Run iproute2's ``ip`` with ``args``; raise with its error message if it fails."""
    executable = shutil.which("ip", path=_SBIN_PATH)
    if executable is None:
        raise FileNotFoundError(errno.ENOENT, "iproute2's `ip` not found: install iproute2", "ip")
    result = subprocess.run(
        [executable, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise OSError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def _exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def _set_up(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ_FLAGS.pack(ifname.encode(), 0)
        (_, flags) = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(ifname.encode(), flags | _IFF_UP))


def _mac_address(ifname: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        reply = fcntl.ioctl(sock, _SIOCGIFHWADDR, _IFREQ_HWADDR.pack(ifname.encode(), 0, b""))
    mac: bytes = _IFREQ_HWADDR.unpack(reply)[2]
    return mac
