"""A deterministic corpus of Ethernet frames for testing capture filters against tcpdump.

Hand-made frames cover what filters distinguish (VLAN and QinQ tags, IPv4 options and
fragments, IPv6 extension headers, ARP/RARP, ICMP types, TCP flags, 802.3/LLC frames,
broadcast and multicast addresses); seeded random frames mix the same building blocks
with random fields; truncated copies and runts exercise the bounds checks. Every frame
is at least 14 bytes: ``BPF_PROG_TEST_RUN`` refuses shorter XDP input.

Addresses and ports come from small pools, so filters on them match some frames and
miss others.
"""

from __future__ import annotations

import random
import struct

__all__ = [
    "IPV4_POOL",
    "IPV6_POOL",
    "MAC_POOL",
    "PORT_POOL",
    "build_corpus",
]

MAC_POOL = (
    "00:11:22:33:44:55",
    "66:77:88:99:aa:bb",
    "ff:ff:ff:ff:ff:ff",
    "01:00:5e:00:00:01",
    "33:33:00:00:00:01",
    "02:00:00:00:00:01",
)
IPV4_POOL = (
    "10.0.0.1",
    "10.0.0.2",
    "10.1.2.3",
    "192.168.1.1",
    "192.168.1.200",
    "1.2.3.4",
    "5.6.7.8",
    "224.0.0.1",
    "255.255.255.255",
    "172.16.5.4",
)
IPV6_POOL = ("fe80::1", "fe80::2", "2001:db8::1", "2001:db8:1::5", "ff02::1", "::1")
PORT_POOL = (20, 22, 53, 80, 443, 1024, 5000, 8080, 65535)

ETH_IP, ETH_ARP, ETH_RARP, ETH_IP6 = 0x0800, 0x0806, 0x8035, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
# IP protocol numbers.
ICMP, IGMP, TCP, UDP, GRE, ESP, AH, ICMP6, PIM, VRRP, SCTP = (
    1,
    2,
    6,
    17,
    47,
    50,
    51,
    58,
    103,
    112,
    132,
)
HOPOPTS, ROUTING, FRAGMENT, DSTOPTS = 0, 43, 44, 60


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip4(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def _ip6(text: str) -> bytes:
    import ipaddress

    return ipaddress.IPv6Address(text).packed


def ethernet(
    dst: str, src: str, ethertype: int, payload: bytes, tags: tuple[tuple[int, int], ...] = ()
) -> bytes:
    """An Ethernet frame; ``tags``: (tpid, tci) pairs, outermost first."""
    header = _mac(dst) + _mac(src)
    for tpid, tci in tags:
        header += struct.pack("!HH", tpid, tci)
    return header + struct.pack("!H", ethertype) + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    options: bytes = b"",
    flags_fragment: int = 0,
    ttl: int = 64,
    tos: int = 0,
) -> bytes:
    options += b"\x00" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    total = 4 * ihl + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        tos,
        total,
        0x1234,
        flags_fragment,
        ttl,
        proto,
        0,
        _ip4(src),
        _ip4(dst),
    )
    return header + options + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    return (
        struct.pack("!IHBB16s16s", 0x60000000, len(payload), next_header, 64, _ip6(src), _ip6(dst))
        + payload
    )


def ipv6_extension(next_header: int, kind: int, body: bytes) -> bytes:
    """One extension header: fragment headers are 8 bytes, others padded to 8."""
    if kind == FRAGMENT:
        return struct.pack("!BBHI", next_header, 0, 0, 0xABCD) + body
    return struct.pack("!BB", next_header, 0) + b"\x01\x04\x00\x00\x00\x00" + body


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 1024, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def sctp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHII", sport, dport, 0, 0) + b"\x00" * 16


def icmp(kind: int, code: int = 0) -> bytes:
    return struct.pack("!BBHHH", kind, code, 0, 1, 1) + b"ping" * 4


def arp(op: int, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str) -> bytes:
    return (
        struct.pack("!HHBBH", 1, ETH_IP, 6, 4, op)
        + _mac(sender_mac)
        + _ip4(sender_ip)
        + _mac(target_mac)
        + _ip4(target_ip)
    )


def _transport(rng: random.Random, proto: int) -> bytes:
    sport, dport = rng.choice(PORT_POOL), rng.choice(PORT_POOL)
    if rng.random() < 0.2:
        sport = rng.randrange(65536)
    if proto == TCP:
        return tcp(sport, dport, rng.randrange(256), rng.randbytes(rng.randrange(0, 40)))
    if proto == UDP:
        return udp(sport, dport, rng.randbytes(rng.randrange(0, 40)))
    if proto == SCTP:
        return sctp(sport, dport)
    if proto in (ICMP, ICMP6):
        return icmp(rng.choice((0, 3, 8, 11, 128, 129, 135, 136)), rng.randrange(4))
    return rng.randbytes(rng.randrange(8, 48))


def _random_ipv4(rng: random.Random) -> bytes:
    proto = rng.choice((TCP, TCP, UDP, UDP, ICMP, SCTP, IGMP, PIM, VRRP, AH, ESP, GRE))
    options = b""
    if rng.random() < 0.25:
        options = bytes([0x94, 0x04, 0, 0]) + rng.randbytes(rng.choice((0, 4, 8, 36)))
    flags_fragment = 0
    roll = rng.random()
    if roll < 0.1:
        flags_fragment = 0x2000  # first fragment: more fragments, offset 0
    elif roll < 0.2:
        flags_fragment = rng.choice((0x2000, 0)) | rng.randrange(1, 0x1FFF)  # a later fragment
    elif roll < 0.3:
        flags_fragment = 0x4000  # don't fragment
    return ipv4(
        rng.choice(IPV4_POOL),
        rng.choice(IPV4_POOL),
        proto,
        _transport(rng, proto),
        options,
        flags_fragment,
        rng.choice((64, 1, 255)),
        rng.choice((0, 0, 4, 0x10, 0xB8)),
    )


def _random_ipv6(rng: random.Random) -> bytes:
    proto = rng.choice((TCP, UDP, ICMP6, SCTP, PIM, AH, ESP))
    body = _transport(rng, proto)
    next_header = proto
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
        kind = rng.choice((HOPOPTS, ROUTING, FRAGMENT, DSTOPTS))
        body = ipv6_extension(next_header, kind, body)
        next_header = kind
    return ipv6(rng.choice(IPV6_POOL), rng.choice(IPV6_POOL), next_header, body)


def _random_frame(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.4:
        ethertype, payload = ETH_IP, _random_ipv4(rng)
    elif kind < 0.7:
        ethertype, payload = ETH_IP6, _random_ipv6(rng)
    elif kind < 0.8:
        ethertype = rng.choice((ETH_ARP, ETH_RARP))
        payload = arp(
            rng.choice((1, 2, 3, 4)),
            rng.choice(MAC_POOL),
            rng.choice(IPV4_POOL),
            rng.choice(MAC_POOL),
            rng.choice(IPV4_POOL),
        )
    elif kind < 0.9:  # 802.3 length field and an LLC header
        payload = bytes(
            [rng.choice((0x42, 0xAA, 0x06, 0x64)), rng.randrange(256), 3]
        ) + rng.randbytes(40)
        ethertype = len(payload)
    else:
        ethertype, payload = rng.randrange(0x600, 0x10000), rng.randbytes(rng.randrange(0, 64))
    tags: tuple[tuple[int, int], ...] = ()
    roll = rng.random()
    if roll < 0.15:
        tags = ((rng.choice(VLAN_TPIDS), rng.choice((5, 100, 4095, rng.randrange(0x10000)))),)
    elif roll < 0.22:
        tags = (
            (rng.choice(VLAN_TPIDS), rng.choice((5, 100, 200))),
            (0x8100, rng.choice((5, 100, 200))),
        )
    frame = ethernet(rng.choice(MAC_POOL), rng.choice(MAC_POOL), ethertype, payload, tags)
    if rng.random() < 0.1:
        frame += rng.randbytes(rng.randrange(1, 30))  # trailing padding
    return frame


def _hand_made() -> list[bytes]:
    a, b = "00:11:22:33:44:55", "66:77:88:99:aa:bb"
    frames = []
    for flags in (0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0x01, 0x29, 0xC2, 0x00):
        frames.append(
            ethernet(b, a, ETH_IP, ipv4("10.0.0.1", "10.0.0.2", TCP, tcp(5000, 80, flags)))
        )
        frames.append(
            ethernet(b, a, ETH_IP6, ipv6("fe80::1", "fe80::2", TCP, tcp(5000, 80, flags)))
        )
    for port in PORT_POOL:
        frames.append(ethernet(b, a, ETH_IP, ipv4("1.2.3.4", "5.6.7.8", UDP, udp(port, 1024))))
        frames.append(
            ethernet(b, a, ETH_IP, ipv4("1.2.3.4", "5.6.7.8", TCP, tcp(1024, port, 0x02)))
        )
        frames.append(ethernet(b, a, ETH_IP, ipv4("1.2.3.4", "5.6.7.8", SCTP, sctp(port, port))))
        frames.append(ethernet(b, a, ETH_IP6, ipv6("2001:db8::1", "ff02::1", UDP, udp(1024, port))))
    for kind in (0, 3, 4, 5, 8, 11, 12, 13, 14, 17, 18):
        frames.append(ethernet(b, a, ETH_IP, ipv4("192.168.1.1", "10.1.2.3", ICMP, icmp(kind))))
    for kind in (1, 2, 3, 4, 128, 129, 130, 133, 134, 135, 136, 143):
        frames.append(ethernet(b, a, ETH_IP6, ipv6("fe80::1", "ff02::1", ICMP6, icmp(kind))))
    # IPv4 options (IHL 6..15) in front of a port.
    for words in range(1, 11):
        options = bytes([0x94, 0x04, 0, 0]) + b"\x01" * (4 * words - 4)
        frames.append(
            ethernet(b, a, ETH_IP, ipv4("10.0.0.1", "10.0.0.2", TCP, tcp(22, 53, 0x02), options))
        )
    # Fragments: the first one carries the ports, later ones carry data that looks like ports.
    for flags_fragment in (0x2000, 0x2001, 0x0010, 0x4000, 0x3FFF, 0x1000, 0x3000, 0x0100):
        for proto, body in ((TCP, tcp(53, 80, 0x02)), (UDP, udp(53, 80))):
            frames.append(
                ethernet(
                    b, a, ETH_IP, ipv4("10.0.0.1", "10.0.0.2", proto, body, b"", flags_fragment)
                )
            )
    # IPv6 extension headers before TCP/UDP/ICMPv6.
    for kinds in (
        (FRAGMENT,),
        (HOPOPTS,),
        (ROUTING,),
        (DSTOPTS,),
        (HOPOPTS, FRAGMENT),
        (FRAGMENT, DSTOPTS),
    ):
        for proto, body in ((TCP, tcp(80, 443, 0x12)), (UDP, udp(53, 53)), (ICMP6, icmp(128))):
            next_header = proto
            for kind in reversed(kinds):
                body = ipv6_extension(next_header, kind, body)
                next_header = kind
            frames.append(
                ethernet(b, a, ETH_IP6, ipv6("2001:db8:1::5", "fe80::2", next_header, body))
            )
    # ARP and RARP.
    for ethertype in (ETH_ARP, ETH_RARP):
        for op in (1, 2):
            frames.append(
                ethernet("ff:ff:ff:ff:ff:ff", a, ethertype, arp(op, a, "10.0.0.1", b, "10.0.0.2"))
            )
            frames.append(ethernet(b, a, ethertype, arp(op, b, "192.168.1.200", a, "1.2.3.4")))
    # VLAN, QinQ, and all three tag protocol identifiers.
    inner = ipv4("10.0.0.1", "10.0.0.2", UDP, udp(53, 53))
    for tpid in VLAN_TPIDS:
        for vid in (5, 100, 4095):
            frames.append(ethernet(b, a, ETH_IP, inner, ((tpid, vid),)))
            frames.append(ethernet(b, a, ETH_IP, inner, ((tpid, 0xE000 | vid),)))
    for outer, inner_vid in ((5, 100), (100, 5), (200, 200), (5, 5)):
        frames.append(ethernet(b, a, ETH_IP, inner, ((0x88A8, outer), (0x8100, inner_vid))))
        frames.append(
            ethernet(
                b,
                a,
                ETH_IP6,
                ipv6("fe80::1", "::1", TCP, tcp(80, 80, 0x02)),
                ((0x8100, outer), (0x8100, inner_vid)),
            )
        )
        frames.append(
            ethernet(
                b,
                a,
                ETH_ARP,
                arp(1, a, "10.0.0.1", b, "10.0.0.2"),
                ((0x8100, outer), (0x9100, inner_vid)),
            )
        )
    frames.append(ethernet(b, a, ETH_IP, inner, ((0x8100, 5), (0x8100, 100), (0x8100, 200))))
    # Broadcast and multicast destinations; IPv4/IPv6 multicast addresses.
    for dst in MAC_POOL:
        frames.append(
            ethernet(dst, a, ETH_IP, ipv4("10.0.0.1", "224.0.0.1", IGMP, b"\x11\x00\x00\x00" * 2))
        )
        frames.append(ethernet(dst, a, ETH_IP6, ipv6("fe80::1", "ff02::1", ICMP6, icmp(130))))
    # 802.3 frames with LLC headers.
    for dsap in (0x42, 0xAA, 0x06, 0x64, 0xE0):
        payload = bytes([dsap, dsap, 3]) + b"\x00" * 43
        frames.append(ethernet(b, a, len(payload), payload))
    return frames


def build_corpus(seed: int = 20261130, random_frames: int = 1400) -> list[bytes]:
    """Hand-made frames, seeded random frames, their truncations, and runts."""
    rng = random.Random(seed)
    frames = _hand_made()
    frames += [_random_frame(rng) for _ in range(random_frames)]
    # Truncated copies: cut inside every header.
    truncated = []
    for frame in rng.sample([f for f in frames if len(f) > 15], 500):
        truncated.append(frame[: rng.randrange(14, len(frame))])
    frames += truncated
    for cut in (14, 15, 16, 18, 20, 22, 23, 24, 26, 30, 34, 36, 38, 42, 50, 54, 56, 58):
        frames.append(_hand_made()[0][:cut])
        frames.append(_hand_made()[1][:cut])
    # Runts: random short frames of 14..59 bytes.
    for _ in range(100):
        ethertype = rng.choice((ETH_IP, ETH_IP6, ETH_ARP, 0x8100, rng.randrange(0x10000)))
        frames.append(
            ethernet(
                rng.choice(MAC_POOL),
                rng.choice(MAC_POOL),
                ethertype,
                rng.randbytes(rng.randrange(0, 46)),
            )
        )
    return frames


#: Where jumbo frames carry a marker byte (``JUMBO_MARK``), well beyond the first buffer a
#: frags-aware XDP program sees directly (about 3,500 bytes).
JUMBO_MARKED_OFFSETS = (3600, 5000, 6000, 8999)
JUMBO_MARK = 0x5A


def build_jumbo_corpus(seed: int = 20261201) -> list[bytes]:
    """Frames of 3,400 to 9,014 bytes (IPv4 UDP and TCP, IPv4 with options, IPv6 UDP, a VLAN
    tag, ARP padded long): random payloads, some with ``JUMBO_MARK`` at the marked offsets."""
    rng = random.Random(seed)
    frames = []
    for size in (3400, 3600, 3601, 4000, 5000, 5001, 6001, 7000, 8000, 9000, 9014):
        for kind in range(6):
            if kind == 0:
                head = ethernet("02:00:00:00:00:02", "02:00:00:00:00:01", ETH_IP, ipv4("10.0.0.1", "10.0.0.2", UDP, udp(53, 5353)))
            elif kind == 1:
                head = ethernet("02:00:00:00:00:02", "02:00:00:00:00:01", ETH_IP, ipv4("10.0.0.2", "10.0.0.1", TCP, tcp(80, 40000, 0x18)))
            elif kind == 2:
                head = ethernet("02:00:00:00:00:02", "02:00:00:00:00:01", ETH_IP,
                                ipv4("1.2.3.4", "5.6.7.8", UDP, udp(1000, 2000), options=b"\x01" * 8))
            elif kind == 3:
                head = ethernet("02:00:00:00:00:02", "02:00:00:00:00:01", ETH_IP6, ipv6("2001:db8::1", "2001:db8::2", UDP, udp(53, 53)))
            elif kind == 4:
                head = ethernet("02:00:00:00:00:02", "02:00:00:00:00:01", ETH_IP, ipv4("10.0.0.1", "10.0.0.2", UDP, udp(53, 53)),
                                tags=((0x8100, 5),))
            else:
                head = ethernet("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", ETH_ARP,
                                arp(1, "02:00:00:00:00:01", "10.0.0.1", "00:00:00:00:00:00", "10.0.0.2"))
            frame = bytearray(head + rng.randbytes(size - len(head)))
            if rng.random() < 0.6:
                for offset in JUMBO_MARKED_OFFSETS:
                    if offset < size and rng.random() < 0.7:
                        frame[offset] = JUMBO_MARK
            frames.append(bytes(frame))
    return frames
