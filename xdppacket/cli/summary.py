"""One line per captured frame, as tcpdump prints it.

With dpkt installed (the ``cli`` extra) IPv4, IPv6, ARP, TCP, UDP and ICMP are decoded
tcpdump's way (``IP 10.0.0.1.1234 > 10.0.0.2.80: Flags [S], length 0``); anything else,
or everything without dpkt, gets tcpdump ``-e``'s link-level line
(``aa:.. > bb:.., ethertype IPv4 (0x0800), length 98``). The time is local, in microseconds.

dpkt keeps views into the buffer it parses, so frames are decoded from a copy.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from ..stats import CaptureInfo

__all__ = ["link_line", "summarize"]

try:  # optional: pip install 'xdppacket[cli]'
    import dpkt
    from dpkt.utils import inet_to_str
except ImportError:  # pragma: no cover - exercised where dpkt is absent
    dpkt = None

_ETHERTYPE_NAMES = {
    0x0800: "IPv4",
    0x0806: "ARP",
    0x8100: "802.1Q",
    0x86DD: "IPv6",
    0x88A8: "802.1Q-QinQ",
    0x88CC: "LLDP",
    0x8847: "MPLS unicast",
}
_ETH_HEADER = struct.Struct("!6s6sH")
_TCP_FLAG_LETTERS = [(0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"),
                     (0x40, "E"), (0x80, "W")]


def _clock(timestamp_ns: int) -> str:
    seconds, nanoseconds = divmod(timestamp_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{nanoseconds // 1000:06d}"


def _mac(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


def link_line(frame: bytes, length: int) -> str:
    """tcpdump ``-e``'s link-level summary (without the time)."""
    if len(frame) < _ETH_HEADER.size:
        return f"[|ether], length {length}"
    dst, src, ethertype = _ETH_HEADER.unpack_from(frame)
    name = _ETHERTYPE_NAMES.get(ethertype, "Unknown")
    if ethertype < 0x0600:  # an 802.3 length field, not an ethertype
        return f"{_mac(src)} > {_mac(dst)}, 802.3, length {length}"
    return f"{_mac(src)} > {_mac(dst)}, ethertype {name} (0x{ethertype:04x}), length {length}"


def _tcp_flags(flags: int) -> str:
    letters = "".join(letter for bit, letter in _TCP_FLAG_LETTERS if flags & bit)
    return letters or "none"


def _transport(ip: Any, src: str, dst: str, payload_length: int) -> str:
    """The part after the IP or IP6 keyword."""
    segment = ip.data
    if isinstance(segment, dpkt.tcp.TCP):
        data_length = len(segment.data)
        return (f"{src}.{segment.sport} > {dst}.{segment.dport}: Flags [{_tcp_flags(segment.flags)}], "
                f"seq {segment.seq}, length {data_length}")
    if isinstance(segment, dpkt.udp.UDP):
        return f"{src}.{segment.sport} > {dst}.{segment.dport}: UDP, length {len(segment.data)}"
    if isinstance(segment, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
        kind = "ICMP6" if isinstance(segment, dpkt.icmp6.ICMP6) else "ICMP"
        return f"{src} > {dst}: {kind} type {segment.type} code {segment.code}, length {payload_length}"
    protocol = ip.p if hasattr(ip, "p") else ip.nxt
    return f"{src} > {dst}: ip-proto-{protocol} {payload_length}"


def _decoded_line(frame: bytes, length: int) -> str | None:
    """tcpdump's default line for IP and ARP; None for anything else."""
    eth = dpkt.ethernet.Ethernet(frame)
    prefix = "".join(f"vlan {tag.id}, " for tag in getattr(eth, "vlan_tags", []))
    packet = eth.data
    if isinstance(packet, dpkt.ip.IP):
        src, dst = inet_to_str(packet.src), inet_to_str(packet.dst)
        return prefix + "IP " + _transport(packet, src, dst, packet.len - packet.hl * 4)
    if isinstance(packet, dpkt.ip6.IP6):
        src, dst = inet_to_str(packet.src), inet_to_str(packet.dst)
        return prefix + "IP6 " + _transport(packet, src, dst, packet.plen)
    if isinstance(packet, dpkt.arp.ARP):
        target, sender = inet_to_str(packet.tpa), inet_to_str(packet.spa)
        if packet.op == dpkt.arp.ARP_OP_REQUEST:
            return f"{prefix}ARP, Request who-has {target} tell {sender}, length {len(packet)}"
        if packet.op == dpkt.arp.ARP_OP_REPLY:
            return f"{prefix}ARP, Reply {sender} is-at {_mac(packet.sha)}, length {len(packet)}"
    return None


def summarize(frame: bytes, info: CaptureInfo) -> str:
    """tcpdump's line for one frame: local time, then the decoded or link-level summary."""
    line = None
    if dpkt is not None:
        try:
            line = _decoded_line(frame, info.length)
        except (dpkt.UnpackError, ValueError, struct.error):
            line = None
    return f"{_clock(info.timestamp_ns)} {line or link_line(frame, info.length)}"
