"""The benchmark's private network: a namespace of its own and veth pairs inside it.

``cmd/bench.py`` moves itself into a new network namespace before creating anything, so
it never sees, let alone touches, the machine's own interfaces; its subprocesses inherit
the namespace, which the kernel removes when the last of them exits. For per-device
settings that only sysfs offers (RPS), it also moves into a mount namespace of its own
with a sysfs of the private network namespace on ``/sys``: the machine's ``/sys`` is never
written to, and the mount goes away with the last process in the namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VethPair", "enter_private_netns", "enter_private_sysfs", "link_counters", "run_tool",
           "set_rps_cpus"]

_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
#: Set once this process has its own sysfs on /sys; RPS is written only then.
_private_sysfs = False
# iproute2 and ethtool live in /usr/sbin, which a non-login shell may lack.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def run_tool(*argv: str) -> str:
    """Run ``ip``/``ethtool`` and return its stdout; raise with its stderr when it fails."""
    executable = shutil.which(argv[0], path=_SBIN_PATH)
    if executable is None:
        raise FileNotFoundError(f"{argv[0]} is missing: run `make setup` (it installs it)")
    result = subprocess.run([executable, *argv[1:]], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=30, check=False)
    if result.returncode != 0:
        raise OSError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


def _ns_inode(kind: str) -> int:
    return os.stat(f"/proc/thread-self/ns/{kind}").st_ino


def _libc_call(name: str, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")


def enter_private_netns() -> None:
    """unshare(CLONE_NEWNET) for this process, with IPv6 off so new links stay silent.

    Call it before starting any thread: only the calling thread moves.
    """
    before = _ns_inode("net")
    _libc_call("unshare", _CLONE_NEWNET)
    if _ns_inode("net") == before:
        raise OSError("unshare(CLONE_NEWNET) succeeded but the network namespace is unchanged")
    for scope in ("default", "all"):
        sysctl = Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6")
        if sysctl.exists():  # absent when the kernel has no IPv6
            sysctl.write_text("1\n")
    run_tool("ip", "link", "set", "dev", "lo", "up")


def enter_private_sysfs() -> None:
    """A mount namespace of this process's own, with the private network namespace's sysfs
    on ``/sys`` (the inherited one shows the machine's devices, not the veth pairs).

    The order is what keeps the machine's mounts untouched: a new mount namespace starts as
    a copy whose shared mounts still propagate to the machine's, so every mount is made
    private (recursively) and checked to be so before anything is mounted. Call it after
    ``enter_private_netns`` and before starting any thread; subprocesses inherit it.
    """
    global _private_sysfs
    before = _ns_inode("mnt")
    _libc_call("unshare", _CLONE_NEWNS)
    if _ns_inode("mnt") == before:
        raise OSError("unshare(CLONE_NEWNS) succeeded but the mount namespace is unchanged")
    _libc_call("mount", b"none", b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None)
    for line in Path("/proc/thread-self/mountinfo").read_text().splitlines():
        if " shared:" in line.split(" - ", 1)[0]:  # optional fields name the peer group
            raise OSError(f"a mount still propagates after making / rprivate: {line}")
    _libc_call("mount", b"sysfs", b"/sys", b"sysfs", ctypes.c_ulong(0), None)
    listed = set(os.listdir("/sys/class/net"))
    if listed != {name for _, name in socket.if_nameindex()}:
        raise OSError(f"the new /sys lists {sorted(listed)}, not this network namespace's devices")
    _private_sysfs = True


def set_rps_cpus(ifname: str, cpus: set[int]) -> None:
    """Receive packet steering of ``ifname``'s rx queue 0: its stack work runs on ``cpus``
    (empty: on the CPU that received the frame, the default). Needs ``enter_private_sysfs``."""
    if not _private_sysfs:
        raise OSError("RPS is set through the private sysfs only: call enter_private_sysfs() first")
    mask = sum(1 << cpu for cpu in cpus)
    Path(f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus").write_text(f"{mask:x}\n")


@dataclass(frozen=True)
class VethPair:
    """A veth pair: traffic is received (or sent) on ``capture``; ``peer`` is the far end.

    The generator redirects frames out of ``peer`` so that they arrive on ``capture``, and
    frames sent on ``capture`` are counted by ``peer``'s kernel rx counters. The pair exists
    until ``delete()``, or the end of a ``with`` block on it.
    """

    capture: str
    peer: str
    queues: int

    @classmethod
    def create(cls, capture: str, peer: str, queues: int) -> VethPair:
        """Create both ends with ``queues`` rx/tx queues each, up, GRO on on ``capture``.

        GRO lets ``capture`` accept XDP-redirected frames even with no native XDP program
        on it, which the AF_PACKET baseline and generic (skb) mode need.
        """
        queue_args = ("numrxqueues", str(queues), "numtxqueues", str(queues))
        run_tool("ip", "link", "add", capture, *queue_args, "type", "veth",
                 "peer", "name", peer, *queue_args)
        pair = cls(capture, peer, queues)
        try:
            for ifname in (capture, peer):
                run_tool("ip", "link", "set", "dev", ifname, "up")
            run_tool("ethtool", "-K", capture, "gro", "on")
        except BaseException:
            pair.delete()
            raise
        return pair

    def delete(self) -> None:
        """Delete both ends (deleting one deletes the other); already gone is fine."""
        try:
            socket.if_nametoindex(self.capture)
        except OSError:
            return
        run_tool("ip", "link", "delete", self.capture)

    def __enter__(self) -> VethPair:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.delete()


def link_counters(ifname: str) -> dict[str, int]:
    """The kernel's packet counters of ``ifname`` in this namespace (from /proc/net/dev)."""
    for line in Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]:
        name, values = line.split(":", 1)
        if name.strip() == ifname:
            fields = [int(value) for value in values.split()]
            return {"rx_packets": fields[1], "rx_dropped": fields[3],
                    "tx_packets": fields[9], "tx_dropped": fields[11]}
    raise LookupError(f"{ifname} is not in /proc/net/dev of this network namespace")
