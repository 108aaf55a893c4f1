"""``xdppacket diagnose IF``: everything that decides whether frames can arrive on IF.

Each check yields a ``Finding``: what was found and, when it stops or limits a capture,
the ``problem`` with its fix. The judgements (frame size against MTU, capabilities,
memlock) are pure functions of the facts, so they are tested without the kernel.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass

from .. import _bpf
from .._bpf_object import SHIPPED_FRAGS_PROGRAM, SHIPPED_PROGRAM
from .._device import IFF_RUNNING, IFF_UP, driver_info, interface_flags
from .._frame_fit import longest_delivered_frame, received_bytes_per_frame
from .._interface import interface_index, rx_queue_count
from .._netdev import xdp_features
from .._netlink import XDP_ATTACHED_NONE, get_link
from ..options import XDP_PACKET_HEADROOM

__all__ = [
    "DEFAULT_UMEM_BYTES_PER_QUEUE",
    "Finding",
    "capability_finding",
    "diagnose",
    "frame_size_finding",
    "memlock_finding",
    "parse_cap_eff",
    "render",
]

#: Default UMEM of one queue: 1024 frames of 4096 bytes for rx and as many for tx.
DEFAULT_UMEM_BYTES_PER_QUEUE = 2 * 1024 * 4096
#: The shipped program's function name, as bpf() reports it (ebpf/xdpsock_kern.c).
# The shipped programs, by the names the kernel keeps (cut to 15 characters).
SHIPPED_PROGRAM_NAMES = frozenset(map(_bpf.kernel_object_name, (SHIPPED_PROGRAM, SHIPPED_FRAGS_PROGRAM)))
# linux/capability.h
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_BPF = 39
_CAP_NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW", CAP_IPC_LOCK: "CAP_IPC_LOCK",
              CAP_SYS_ADMIN: "CAP_SYS_ADMIN", CAP_SYS_RESOURCE: "CAP_SYS_RESOURCE", CAP_BPF: "CAP_BPF"}


@dataclass(frozen=True)
class Finding:
    """One line of the report; ``problem`` (with its fix) when it can stop frames arriving."""

    topic: str
    text: str
    problem: str | None = None


def frame_size_finding(ifname: str, mtu: int) -> Finding:
    """Whether the interface's largest frame fits a UMEM frame, and which options to use."""
    largest = longest_delivered_frame(mtu)
    small, default = received_bytes_per_frame(2048, 0), received_bytes_per_frame(4096, 0)
    text = (f"MTU {mtu}: frames up to {largest} bytes (with a VLAN tag); a UMEM frame holds its size "
            f"minus {XDP_PACKET_HEADROOM} bytes of XDP headroom")
    if largest <= small:
        return Finding("frame size", f"{text}: they fit OptFrameSize(2048) ({small} bytes) and the "
                                     f"default 4096 ({default} bytes)")
    if largest <= default:
        return Finding("frame size", f"{text}: they fit the default OptFrameSize(4096) ({default} bytes), "
                                     f"not OptFrameSize(2048) ({small} bytes)")
    largest_mtu = mtu - (largest - default)
    return Finding("frame size", f"{text}: they do not fit a 4096-byte frame ({default} bytes)",
                   f"use OptMultiBuffer() for jumbo frames, or lower the MTU to {largest_mtu} or less "
                   f"(ip link set dev {ifname} mtu {largest_mtu})")


def parse_cap_eff(status: str) -> int:
    """The effective capability set from the text of ``/proc/self/status``."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise ValueError("/proc/self/status has no CapEff line")


def capability_finding(cap_eff: int) -> Finding:
    """AF_XDP needs CAP_NET_RAW (the socket), CAP_NET_ADMIN (attaching), CAP_BPF or CAP_SYS_ADMIN."""
    held = [name for cap, name in _CAP_NAMES.items() if cap_eff >> cap & 1]
    text = "effective capabilities: " + (", ".join(held) if held else "none of those xdppacket uses")
    missing = [_CAP_NAMES[cap] for cap in (CAP_NET_RAW, CAP_NET_ADMIN) if not cap_eff >> cap & 1]
    if not (cap_eff >> CAP_BPF & 1 or cap_eff >> CAP_SYS_ADMIN & 1):
        missing.append("CAP_BPF (or CAP_SYS_ADMIN)")
    if missing:
        return Finding("privileges", text, f"missing {', '.join(missing)}: run as root, or grant them "
                                           "(setcap, or systemd's AmbientCapabilities=)")
    return Finding("privileges", text)


def _limit_text(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else f"{limit // 1024} KiB"


def memlock_finding(soft: int, hard: int, cap_eff: int, queues: int) -> Finding:
    """Whether the UMEM of a default capture of every queue fits ``RLIMIT_MEMLOCK``."""
    needed = queues * DEFAULT_UMEM_BYTES_PER_QUEUE
    text = (f"RLIMIT_MEMLOCK {_limit_text(soft)} (hard {_limit_text(hard)}); a default capture of "
            f"{queues} queue(s) locks {needed // 1024} KiB of UMEM")
    if cap_eff >> CAP_IPC_LOCK & 1:
        return Finding("memlock", text + ": not charged, CAP_IPC_LOCK is held")
    if soft != resource.RLIM_INFINITY and soft < needed:
        return Finding("memlock", text, "raise it (ulimit -l, LimitMEMLOCK=) or use fewer frames "
                                        "(OptNumFrames) or queues")
    return Finding("memlock", text + ": fits")


def _program_name(prog_id: int) -> str:
    """The name of program ``prog_id``, or ``"?"`` when it cannot be opened (privileges)."""
    try:
        fd = _bpf.prog_get_fd_by_id(prog_id)
    except OSError:
        return "?"
    try:
        return _bpf.prog_get_info_by_fd(fd).name
    finally:
        os.close(fd)


def _program_findings(ifname: str, ifindex: int) -> Iterator[Finding]:
    link = get_link(ifindex)
    if link.xdp_attached == XDP_ATTACHED_NONE:
        yield Finding("XDP programs", "none attached (xdppacket attaches its own while capturing)")
        return
    for mode, prog_id in (("native", link.xdp_drv_prog_id), ("generic", link.xdp_skb_prog_id)):
        if not prog_id:
            continue
        name = _program_name(prog_id)
        text = f"{mode}: id {prog_id}, name {name!r}"
        if name in SHIPPED_PROGRAM_NAMES:
            yield Finding("XDP programs", text + " (xdppacket's, in use by a capture)")
        else:
            yield Finding("XDP programs", text, "another XDP program is attached: xdppacket cannot attach "
                          f"its own; remove it (ip link set dev {ifname} xdp{'' if mode == 'native' else 'generic'} "
                          "off) if nothing needs it")


def _feature_finding(ifindex: int) -> Finding:
    features = xdp_features(ifindex)
    if features is None:
        return Finding("XDP support", "unknown: this kernel does not report XDP features (Linux 6.3+ does); "
                                      "try --mode drv, and --mode skb if that fails")
    native = "yes (--mode drv)" if features.native else "no, generic mode only (--mode skb, chosen by default)"
    zero_copy = "yes" if features.zero_copy else "no (copy mode)"
    multi = "yes" if features.multi_buffer else "no"
    text = (f"native XDP: {native}; zero-copy AF_XDP: {zero_copy}; multi-buffer: {multi} "
            f"[{', '.join(features.names) or 'no xdp-features'}]")
    return Finding("XDP support", text)


def diagnose(ifname: str) -> list[Finding]:
    """Every finding about ``ifname``, in the order a user reads them."""
    ifindex = interface_index(ifname)
    link = get_link(ifindex)
    flags = interface_flags(ifname)
    mac = ":".join(f"{byte:02x}" for byte in link.address) or "none"
    state = Finding("interface", f"{ifname} (index {ifindex}), MAC {mac}: " + (
        "up, running" if flags & IFF_RUNNING else "up, no carrier" if flags & IFF_UP else "down"))
    if not flags & IFF_UP:
        state = Finding(state.topic, state.text, f"bring it up: ip link set dev {ifname} up")
    elif not flags & IFF_RUNNING:
        state = Finding(state.topic, state.text, "no carrier: check the cable or link (for veth: is the peer up?)")
    findings = [state]
    driver = driver_info(ifname)
    findings.append(Finding("driver", "not reported (no ethtool driver information)" if driver is None else
                            f"{driver.driver} {driver.version}".strip()
                            + (f", firmware {driver.fw_version}" if driver.fw_version else "")
                            + (f", bus {driver.bus_info}" if driver.bus_info else "")))
    findings.append(_feature_finding(ifindex))
    queues = rx_queue_count(ifname)
    findings.append(Finding("queues", f"rx {queues}, tx {link.num_tx_queues}: `xdppacket capture` opens "
                            f"{'all ' if queues > 1 else ''}{queues} queue(s); a socket on one queue (OptQueueID) sees only what the NIC steers there"))
    findings.append(frame_size_finding(ifname, link.mtu))
    findings.extend(_program_findings(ifname, ifindex))
    with open("/proc/self/status") as status:
        cap_eff = parse_cap_eff(status.read())
    findings.append(capability_finding(cap_eff))
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    findings.append(memlock_finding(soft, hard, cap_eff, queues))
    return findings


def render(findings: list[Finding]) -> str:
    """The report: a line per finding, its fix indented below, and a count of problems."""
    lines = []
    for finding in findings:
        lines.append(f"{finding.topic + ':':<14}{finding.text}")
        if finding.problem:
            lines.append(f"{'':<14}problem: {finding.problem}")
    problems = sum(1 for finding in findings if finding.problem)
    lines.append(f"{'summary:':<14}" + ("no problem found" if not problems else f"{problems} problem(s) found"))
    return "\n".join(lines) + "\n"
