"""pcap-filter expressions the filter tests compile: every one is checked against tcpdump.

They cover each primitive tcpdump documents for Ethernet, qualifier inheritance, byte
access and arithmetic, named offsets and flags, and boolean structure; most of them split
the corpus of ``tests/filter_corpus.py`` (some frames match, some do not).
"""

from __future__ import annotations

import random

__all__ = ["ARITHMETIC_EXPRESSIONS", "EXPRESSIONS", "RANDOM_EXPRESSIONS"]

EXPRESSIONS = [
    # Link layer.
    "ether host 00:11:22:33:44:55",
    "ether src 00:11:22:33:44:55",
    "ether dst 66:77:88:99:aa:bb",
    "ether src host 02:00:00:00:00:01",
    "ether dst host ff:ff:ff:ff:ff:ff",
    "ether host 66-77-88-99-aa-bb",
    "ether host 6677.8899.aabb",
    "ether src 00:11:22:33:44:55 and ether dst 66:77:88:99:aa:bb",
    "ether src and dst 00:11:22:33:44:55",
    "ether broadcast",
    "ether multicast",
    "broadcast",
    "multicast",
    "not ether multicast",
    "ether proto 0x0800",
    "ether proto 0x86dd",
    "ether proto 0x0806",
    "ether proto \\arp",
    "ether proto \\ip6",
    "ether proto 0x88cc",
    "ether proto 100",
    "ether proto 0xaa",
    "ether proto 0x42",
    "ether[0] & 1 != 0",
    "ether[12:2] = 0x8100",
    "ether[12:2] > 1500",
    "ether[6:4] = 0x66778899",
    # VLAN.
    "vlan",
    "vlan 5",
    "vlan 100",
    "vlan 4095",
    "vlan and ip",
    "vlan 5 and ip",
    "vlan and vlan",
    "vlan 5 and vlan 100",
    "vlan and vlan 200",
    "vlan and ip6",
    "vlan and arp",
    "vlan 100 and udp port 53",
    "vlan and host 10.0.0.1",
    "not vlan",
    "ip or vlan",
    "vlan or ip",
    "vlan and ether[14:2] & 0xfff = 5",
    "vlan and vlan and vlan",
    # Network layer.
    "ip",
    "ip6",
    "arp",
    "rarp",
    "not ip",
    "ip or ip6",
    "ip and not tcp",
    "ip6 and not icmp6",
    "proto 6",
    "proto 17",
    "ip proto 6",
    "ip proto 1",
    "ip proto \\tcp",
    "ip proto 132",
    "ip6 proto 6",
    "ip6 proto 17",
    "ip6 proto 44",
    "ip6 proto 0",
    "ip6 proto \\udp",
    "proto \\ipv6-icmp",
    "ip multicast",
    "ip6 multicast",
    # Transport protocols.
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "igmp",
    "pim",
    "vrrp",
    "ah",
    "esp",
    "tcp or udp",
    "not tcp and not udp",
    "icmp or icmp6",
    # Hosts and networks.
    "host 10.0.0.1",
    "host 1.2.3.4",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "src or dst host 5.6.7.8",
    "src and dst host 10.0.0.1",
    "ip host 10.0.0.1",
    "arp host 10.0.0.1",
    "rarp host 192.168.1.200",
    "ip src 192.168.1.1",
    "arp src host 192.168.1.200",
    "arp dst 10.0.0.2",
    "host 10.0.0.1 or 10.0.0.2",
    "host 10.0.0.1 and 10.0.0.2",
    "host 1.2.3.4 and not 5.6.7.8",
    "src host 10.0.0.1 or 1.2.3.4",
    "host (10.0.0.1 or 5.6.7.8)",
    "host 224.0.0.1",
    "host 255.255.255.255",
    "host ::1",
    "host fe80::1",
    "src host fe80::1",
    "dst host ff02::1",
    "ip6 host 2001:db8::1",
    "ip6 src 2001:db8:1::5",
    "host fe80::1 or fe80::2",
    "net 10.0.0.0/8",
    "net 10.0.0.0/24",
    "net 192.168.1.0/24",
    "net 192.168.1.128/25",
    "src net 10.0.0.0/8",
    "dst net 172.16.0.0/12",
    "net 10",
    "net 192.168",
    "net 10.1",
    "net 10.0.0.0 mask 255.0.0.0",
    "ip net 10.0.0.0/8",
    "arp net 10.0.0.0/8",
    "net 0.0.0.0/0",
    "net fe80::/10",
    "net 2001:db8::/32",
    "net 2001:db8:1::/48",
    "src net fe80::/64",
    "dst net ff00::/8",
    "ip6 net ::/0",
    "not net 10.0.0.0/8",
    # Ports.
    "port 53",
    "port 80",
    "port 443",
    "port 65535",
    "tcp port 80",
    "udp port 53",
    "sctp port 5000",
    "src port 22",
    "dst port 80",
    "tcp src port 5000",
    "udp dst port 1024",
    "src or dst port 53",
    "src and dst port 53",
    "tcp port 80 or 443",
    "port 80 and not 443",
    "port 53 or 80 or 443",
    "portrange 1-1024",
    "portrange 1000-6000",
    "tcp portrange 20-22",
    "udp dst portrange 50-60",
    "src portrange 8000-9000",
    "port 53 and host 10.0.0.1",
    "tcp dst port 80 and src host 10.0.0.1",
    "udp and port 53",
    "ip and port 53",
    "ip6 and port 80",
    "tcp and not port 80",
    "port domain",
    "port http",
    # Length.
    "less 60",
    "less 100",
    "greater 100",
    "greater 1000",
    "len < 64",
    "len > 120",
    "len = 60",
    "len >= 54 and len <= 70",
    "len - 14 = ip[2:2]",
    # Byte access and arithmetic.
    "ip[2:2] > 576",
    "ip[0] & 0xf > 5",
    "ip[0] & 0xf != 5",
    "ip[6:2] & 0x1fff != 0",
    "ip[6] & 0x20 != 0",
    "ip[8] < 65",
    "ip[9] = 6",
    "ip[12:4] = 0x0a000001",
    "ip[16] >= 224",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 40",
    "ip[0] = ip[1] + 69",
    "ip[2:2] / 4 > 20",
    "ip[2:2] % 7 = 3",
    "ip[2:2] * 2 > 200",
    "ip[2:2] / ip[1] > 5",
    "ip[2:2] % ip[1] > 1",
    "-ip[0] > 0",
    "ip[1] ^ 0xff = 0xff",
    "ether[0] ^ 1 & 3 = 0",
    "ip[0] | 0x0f = 0x4f",
    "ip[2:2] >> 4 > 3",
    # Shifts by a packet byte: by 32 or more, libpcap gives 0 (eBPF would shift modulo 32).
    "ip[12:4] << ip[9] = 0",
    "ip[12:4] >> ip[9] != 0",
    "tcp[4:4] >> tcp[13] = 0",
    "ip6[8:4] << (ip6[6] + 1) = 0",
    # In "a op b" libpcap keeps a's protocol checks only: b's loads run on any frame.
    "ether[0] + tcp[0] >= 0",
    "ip[9] - udp[0] != 0",
    # A constant index is folded into the load's offset on 32 bits (libpcap's optimizer).
    "ip[-14] = 2",
    "icmp6[(4294967295 << 4):2] > 0",
    "tcp[4294967295] > 0",
    "udp[-32:1] < 100",
    # libpcap's grammar gives % and ^ no precedence: they take everything after them.
    "len = 60 and len - 1 ^ 3 = 58",
    "len = 60 and -len % 7 = 4294967292",
    "len = 60 and len * 2 % 7 = 120",
    "len = 60 and len % 7 * 2 = 4",
    "len = 60 and -len ^ 1 = 4294967235",
    # What libpcap's optimizer decides while compiling: two numbers compared, and 0 times x.
    "(ip[31] > 0 or 7 < 256) and tcp",
    "ip[31] > 0 or (3 + 4) < 256",
    "tcp[0] * 0 = 0",
    "0 * ip[31] = 0 and udp",
    "ip6[6] = 6",
    "ip6[0] & 0xf0 = 0x60",
    "ip6[40] = 128",
    "arp[6:2] = 1",
    "arp[7] = 2",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-fin|tcp-rst) != 0",
    "tcp[tcpflags] == tcp-ack",
    "tcp[tcpflags] & tcp-push != 0 and tcp[tcpflags] & tcp-ack != 0",
    "tcp[13] & 0xc0 != 0",
    "tcp[tcpflags] & (tcp-ece|tcp-cwr) != 0",
    "tcp[tcpflags] & tcp-urg != 0",
    "tcp[0:2] = 22",
    "tcp[2:2] = 80",
    "tcp[12] >> 4 = 5",
    "tcp[tcp[12] >> 4] = 0",
    "udp[0:2] = 53",
    "udp[2:2] = 53 or udp[0:2] = 53",
    "udp[4:2] > 20",
    "icmp[icmptype] = icmp-echo",
    "icmp[icmptype] == icmp-echoreply",
    "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp[icmptype] = icmp-unreach or icmp[icmptype] = icmp-timxceed",
    "icmp[icmpcode] = 1",
    "icmp[0] = icmp-tstamp or icmp[0] = icmp-maskreply",
    "icmp6[icmp6type] = icmp6-echo",
    "icmp6[icmp6type] = icmp6-neighborsolicit or icmp6[icmp6type] = icmp6-neighboradvert",
    "icmp6[icmp6type] = icmp6-multicastlistenerquery",
    "icmp6[icmp6type] = icmp6-multicastlistenerreportv2",
    "icmp6[0] = 1 or icmp6[0] = icmp6-packettoobig",
    "sctp[0:2] = 5000",
    "igmp[0] = 0x11",
    # Boolean structure, precedence and negation.
    "tcp and (port 80 or port 443)",
    "tcp and port 80 or udp",
    "udp or tcp and port 80",
    "not (tcp or udp)",
    "!tcp && !udp",
    "tcp || udp && port 53",
    "not not ip",
    "not ip[20] = 0",
    "not tcp[13] = 2",
    "not ether[60] = 0",
    "ether[60] = 0 or ip",
    "ip or ether[60] = 0",
    "not (ip and ip[100] = 1)",
    "(ip or ip6) and (tcp or udp) and not port 53",
    "host 10.0.0.1 and (tcp or icmp)",
    "arp or (ip and icmp)",
    "ip6 and tcp and dst port 443",
    "(vlan and ip) or ip6",
    "vlan and (ip or ip6)",
    # More combinations.
    "vlan 100 or vlan 200",
    "not vlan and ip",
    "ether proto 0x8100",
    "ether proto 0x88a8 or ether proto 0x9100",
    "tcp port 80 and tcp[13] & 2 != 0",
    "icmp6 and ip6[40] = 135",
    "ip[0] & 0xf > 5 and tcp",
    "len > ip[2:2]",
    "greater 60 and less 100",
    "ether src 00:11:22:33:44:55 or ether dst 02:00:00:00:00:01",
    "src port 53 and dst port 53",
    "dst portrange 1-1023 or src portrange 1-1023",
    "udp portrange 50-60 and not port 53",
    "ip host 10.0.0.1 and tcp",
    "ip6 src net fe80::/10 and icmp6",
    "arp or rarp",
    "net 10.0.0.0/8 or net 192.168.0.0/16",
    "not host 10.0.0.1 and not host 10.0.0.2",
    "host 10.0.0.1 and host 10.0.0.2",
    "src 10.0.0.1 and dst 10.0.0.2",
    "(tcp or udp) and (src port 53 or dst port 53)",
    "port 53 and not (udp or tcp)",
    "ip proto 17 and udp[2:2] = 53",
    "tcp[((tcp[12] & 0xf0) >> 2):4] = 0",
    "udp[8:4] & 0xffff0000 != 0",
    "ip[ip[0] & 0xf] = 0",
    "ether[len - 1] & 1 = 1",
    "ip6[6] = 44 and ip6[40] = 6",
    "ip6 and (ip6[6] = 0 or ip6[6] = 43 or ip6[6] = 60)",
    # Nesting that takes every value register (the deeper side is computed first).
    "ip[0] + (ip[1] + (ip[2] + (ip[3] + (ip[4] + ip[5])))) > 100",
    "(ip[0] + ip[1]) * (ip[2] + ip[3]) - (ip[4] + ip[5]) * (ip[6] + ip[7]) > 1000",
    "ip[1] < (ip[2:2] - (ip[0] & 0xf) * 4) / (ip[8] + 1)",
]

#: Building blocks of the random compound expressions.
_PRIMITIVES = (
    "ip",
    "ip6",
    "arp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "vlan",
    "vlan 100",
    "ether multicast",
    "ether broadcast",
    "ether src 00:11:22:33:44:55",
    "host 10.0.0.1",
    "src host 1.2.3.4",
    "dst net 192.168.1.0/24",
    "host fe80::1",
    "net 2001:db8::/32",
    "port 53",
    "tcp dst port 80",
    "udp src port 53",
    "portrange 20-443",
    "less 80",
    "greater 120",
    "ip[8] > 60",
    "ip[6:2] & 0x1fff != 0",
    "tcp[tcpflags] & tcp-syn != 0",
    "icmp[icmptype] = icmp-echo",
    "ip6[6] = 44",
    "ether[12:2] = 0x8100",
    "proto 17",
    "ip6 proto 58",
    "host 10.0.0.1 or 10.0.0.2",
    "src port 53 or 80",
    "tcp port 80 or 443",
    "net 10 or 192.168",
    "vlan and vlan 200",
    "vlan 5 and ip6",
    "ether proto 0x42",
    "ip multicast",
    "ip6 multicast",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 40",
    "udp[4:2] > 20",
    "len - 14 = ip[2:2]",
    "icmp6[icmp6type] = icmp6-echo",
    "tcp[tcp[12] >> 4] = 0",
    "arp src 10.0.0.1",
    "src and dst port 53",
    "udp dst portrange 50-60",
    "ip6 src net fe80::/10",
    "ip[1] & 0x10 != 0",
)


def _random_expression(rng: random.Random, depth: int = 0) -> str:
    if depth >= 2 or rng.random() < 0.3:
        primitive = rng.choice(_PRIMITIVES)
        return f"not {primitive}" if rng.random() < 0.2 else primitive
    parts = [_random_expression(rng, depth + 1) for _ in range(rng.choice((2, 2, 3)))]
    joined = parts[0]
    for part in parts[1:]:
        joined += f" {rng.choice(('and', 'or', '&&', '||'))} {part}"
    return f"({joined})" if depth else joined


def _random_expressions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    expressions: list[str] = []
    while len(expressions) < count:
        expression = _random_expression(rng)
        if expression not in expressions and expression not in EXPRESSIONS:
            expressions.append(expression)
    return expressions


#: Seeded random compositions of the primitives above, with not/and/or and parentheses.
RANDOM_EXPRESSIONS = _random_expressions(120, seed=7)


# Random arithmetic: where eBPF's arithmetic and libpcap's part (shifts past 31, divisors
# of 0, wrapping offsets, operator grouping, protocol tests of operands, what libpcap's
# optimizer decides while compiling). Divisors and shift counts are never constants, so
# that tcpdump, which refuses any it can see to be 0 or above 31, accepts every one.
_LAYERS = ("ether", "ip", "ip6", "tcp", "udp", "icmp", "arp", "icmp6", "sctp")
_NUMBERS = (0, 1, 2, 3, 4, 7, 8, 12, 14, 20, 31, 32, 40, 60, 64, 255, 256, 1500,
            0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
_OPERATORS = ("+", "-", "*", "&", "|", "^", "/", "%", "<<", ">>")
_COMPARISONS = (">", "<", ">=", "<=", "=", "!=")


def _random_load(rng: random.Random, depth: int, nonzero_index: bool = False, short_index: bool = False) -> str:
    if depth < 2 and not (nonzero_index or short_index) and rng.random() < 0.25:
        index = _random_arithmetic(rng, depth + 1)
    else:
        index = str(rng.randint(1 if nonzero_index else 0, 31 if short_index else 40))
    return f"{rng.choice(_LAYERS)}[{index}{rng.choice(('', ':1', ':2', ':4'))}]"


def _random_arithmetic(rng: random.Random, depth: int = 0) -> str:
    if depth >= 2 or rng.random() < 0.3:
        roll = rng.random()
        if roll < 0.35:
            return str(rng.choice(_NUMBERS))
        return "len" if roll < 0.5 else _random_load(rng, depth)
    op = rng.choice(_OPERATORS)
    left = _random_arithmetic(rng, depth + 1)
    if op in ("/", "%", "<<", ">>"):  # a load whose index libpcap sees as a number: not 0, not above 31
        right = "len" if rng.random() < 0.2 else _random_load(rng, 2, nonzero_index=op in ("/", "%"),
                                                                short_index=op in ("<<", ">>"))
    else:
        right = _random_arithmetic(rng, depth + 1)
    negate = "-" if rng.random() < 0.15 else ""
    return f"{negate}({left} {op} {right})"


def _random_arithmetic_expressions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    expressions: list[str] = []
    while len(expressions) < count:
        relation = f"{_random_arithmetic(rng)} {rng.choice(_COMPARISONS)} {_random_arithmetic(rng)}"
        roll = rng.random()
        if roll < 0.25:
            relation = f"{rng.choice(_PRIMITIVES)} {rng.choice(('and', 'or'))} {relation}"
        elif roll < 0.35:
            relation = f"not ({relation})"
        if relation not in expressions:
            expressions.append(relation)
    return expressions


#: Seeded random arithmetic, compared with tcpdump like the rest.
ARITHMETIC_EXPRESSIONS = _random_arithmetic_expressions(150, seed=11)
