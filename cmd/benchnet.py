"""The benchmark's private network: a namespace of its own and veth pairs inside it.

``cmd/bench.py`` moves itself into a new network namespace before creating anything, so
it never sees, let alone touches, the machine's own interfaces; its subprocesses inherit
the namespace, which the kernel removes when the last of them exits.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VethPair", "enter_private_netns", "link_counters", "run_tool"]

_CLONE_NEWNET = 0x40000000
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


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def enter_private_netns() -> None:
    """unshare(CLONE_NEWNET) for this process, with IPv6 off so new links stay silent.

    Call it before starting any thread: only the calling thread moves.
    """
    before = _netns_inode()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    if _netns_inode() == before:
        raise OSError("unshare(CLONE_NEWNET) succeeded but the network namespace is unchanged")
    for scope in ("default", "all"):
        sysctl = Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6")
        if sysctl.exists():  # absent when the kernel has no IPv6
            sysctl.write_text("1\n")
    run_tool("ip", "link", "set", "dev", "lo", "up")


@dataclass(frozen=True)
class VethPair:
    """A veth pair: traffic is received (or sent) on ``capture``; ``peer`` is the far end.

    The generator redirects frames out of ``peer`` so that they arrive on ``capture``, and
    frames sent on ``capture`` are counted by ``peer``'s kernel rx counters.
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


def link_counters(ifname: str) -> dict[str, int]:
    """The kernel's packet counters of ``ifname`` in this namespace (from /proc/net/dev)."""
    for line in Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]:
        name, values = line.split(":", 1)
        if name.strip() == ifname:
            fields = [int(value) for value in values.split()]
            return {"rx_packets": fields[1], "rx_dropped": fields[3],
                    "tx_packets": fields[9], "tx_dropped": fields[11]}
    raise LookupError(f"{ifname} is not in /proc/net/dev of this network namespace")
