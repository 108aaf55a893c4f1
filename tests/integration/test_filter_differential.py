"""Capture filters proved against libpcap: our eBPF, run in the kernel, picks the frames tcpdump picks.

For every expression below, the corpus of ``tests/filter_corpus.py`` is written to a pcap
file; ``tcpdump -r corpus.pcap -w - EXPRESSION`` says which frames libpcap accepts (each
frame carries its index as its timestamp). The same frames then go through our compiled
program with ``BPF_PROG_TEST_RUN`` (return 3 = match, 2 = pass), once for
``compile_filter(EXPRESSION)`` and once for ``OptFilter.from_cbpf(tcpdump -ddd EXPRESSION)``.
Both sets must equal tcpdump's.

Needs root (bpf()) and tcpdump (the Makefile's TEST_TOOLS installs it).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dpkt
import pytest

from tests.filter_corpus import build_corpus
from xdppacket import CompiledFilter, OptFilter, XDPFilterError, _bpf, compile_filter
from xdppacket._bpf import BPF_PROG_TYPE_XDP

MATCHED = 3  # XDP_TX: any action other than XDP_PASS marks a match
XDP_PASS = 2

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
]

UNSUPPORTED = {
    "ip6 protochain 6": "protochain",
    "host localhost": "host name",
    "mpls": "mpls",
    "mpls 100": "mpls",
    "pppoes": "pppoes",
    "pppoed": "pppoed",
    "geneve": "geneve",
    "ip broadcast": "ip broadcast",
    "decnet host 10.15": "decnet",
    "stp": "stp",
    "ipx": "ipx",
    "iso": "iso",
    "llc": "llc",
    "atalk": "atalk",
    "netbeui": "netbeui",
    "inbound": "inbound",
    "ifindex 1": "ifindex",
    "byte 2 = 3": "byte",
    "ether proto 0xfe": "ether proto 0xfe",
    "ether proto \\atalk": "atalk",
    "net 10.0.0.0 mask 255.0.255.0": "not contiguous",
}

#: libpcap's optimizer reorders comparisons of one field across an "or" chain ("or_pullup"):
#: "host A or B" tests the source against A and B before loading the destination. The
#: result differs only for a frame cut inside the field read later; ours reads in source
#: order, as libpcap's unoptimized program (and its -ddd output translated) would.
OPTIMIZER_REORDERS = {
    "host 10.0.0.1 or 10.0.0.2",
    "host (10.0.0.1 or 5.6.7.8)",
    "port 53 or 80 or 443",
}


@pytest.fixture(scope="module")
def tcpdump() -> str:
    path = shutil.which("tcpdump") or next(
        (p for p in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip("tcpdump is not installed (make setup installs it from TEST_TOOLS)")
    return path


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return build_corpus()


@pytest.fixture(scope="module")
def corpus_pcap(corpus: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("filter") / "corpus.pcap"
    with path.open("wb") as file:
        writer = dpkt.pcap.Writer(file, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for index, frame in enumerate(corpus):
            writer.writepkt(frame, ts=index)  # the timestamp identifies the frame
    os.chmod(path.parent, 0o755)  # tcpdump may drop to its own user before reading
    os.chmod(path, 0o644)
    return path


def _tcpdump_matches(tcpdump: str, pcap: Path, expression: str) -> set[int]:
    result = subprocess.run(
        [tcpdump, "-Z", "root", "-nn", "-r", str(pcap), "-w", "-", "--", expression],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"tcpdump rejected {expression!r}: {result.stderr.decode().strip()}")
    return {int(ts) for ts, _ in dpkt.pcap.Reader(io.BytesIO(result.stdout))}


def _tcpdump_classic(tcpdump: str, expression: str) -> str:
    result = subprocess.run(
        [tcpdump, "-ddd", "--", expression], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"tcpdump -ddd rejected {expression!r}: {result.stderr.strip()}")
    return result.stdout


@pytest.fixture(scope="module")
def libpcap_verdicts(tcpdump: str, corpus_pcap: Path) -> dict[str, tuple[set[int], str]]:
    """tcpdump's matching frame indices and ``-ddd`` program for every expression."""

    def verdict(expression: str) -> tuple[set[int], str]:
        return _tcpdump_matches(tcpdump, corpus_pcap, expression), _tcpdump_classic(
            tcpdump, expression
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(EXPRESSIONS, pool.map(verdict, EXPRESSIONS)))


def _kernel_matches(compiled: CompiledFilter, corpus: list[bytes]) -> set[int]:
    fd = _bpf.prog_load(BPF_PROG_TYPE_XDP, compiled.standalone(MATCHED), "GPL", "filter_test")
    try:
        verdicts = [_bpf.prog_test_run(fd, frame)[0] for frame in corpus]
    finally:
        os.close(fd)
    unexpected = set(verdicts) - {MATCHED, XDP_PASS}
    assert not unexpected, f"the program returned {unexpected}"
    return {index for index, verdict in enumerate(verdicts) if verdict == MATCHED}


def _describe(difference: Iterator[int] | set[int], corpus: list[bytes]) -> str:
    return "\n".join(
        f"  frame {i} ({len(corpus[i])} bytes): {corpus[i][:64].hex()}"
        for i in sorted(difference)[:5]
    )


def _assert_same(ours: set[int], theirs: set[int], corpus: list[bytes], what: str) -> None:
    if ours != theirs:
        only_ours, only_theirs = ours - theirs, theirs - ours
        pytest.fail(
            f"{what}: {len(only_ours)} frames match only ours, {len(only_theirs)} only tcpdump's\n"
            f"only ours:\n{_describe(only_ours, corpus)}\nonly tcpdump:\n{_describe(only_theirs, corpus)}",
            pytrace=False,
        )


def test_corpus_is_large_and_mixed(
    corpus: list[bytes], libpcap_verdicts: dict[str, tuple[set[int], str]]
) -> None:
    assert len(corpus) >= 2000
    assert min(len(frame) for frame in corpus) == 14
    assert len(EXPRESSIONS) >= 150
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS)
    # Most expressions split the corpus: the comparison would be weak if they matched all or nothing.
    splitting = [
        e for e, (matches, _) in libpcap_verdicts.items() if 0 < len(matches) < len(corpus)
    ]
    assert len(splitting) >= len(EXPRESSIONS) - 5, set(EXPRESSIONS) - set(splitting)


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param(e, marks=pytest.mark.xfail(strict=True, reason="libpcap's optimizer reorders"))
        if e in OPTIMIZER_REORDERS
        else e
        for e in EXPRESSIONS
    ],
)
def test_compiled_expression_matches_tcpdump(
    expression: str, corpus: list[bytes], libpcap_verdicts: dict[str, tuple[set[int], str]]
) -> None:
    ours = _kernel_matches(compile_filter(expression), corpus)
    _assert_same(ours, libpcap_verdicts[expression][0], corpus, f"compile_filter({expression!r})")


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_translated_cbpf_matches_tcpdump(
    expression: str, corpus: list[bytes], libpcap_verdicts: dict[str, tuple[set[int], str]]
) -> None:
    option = OptFilter.from_cbpf(libpcap_verdicts[expression][1])
    assert option.expression is None
    ours = _kernel_matches(option.compiled, corpus)
    _assert_same(
        ours, libpcap_verdicts[expression][0], corpus, f"from_cbpf(tcpdump -ddd {expression!r})"
    )


@pytest.mark.parametrize("expression", sorted(UNSUPPORTED))
def test_what_tcpdump_accepts_and_we_refuse_is_named(expression: str, tcpdump: str) -> None:
    _tcpdump_classic(tcpdump, expression)  # tcpdump accepts it ...
    with pytest.raises(XDPFilterError) as raised:  # ... we refuse it, naming the construct
        compile_filter(expression)
    assert UNSUPPORTED[expression] in str(raised.value)


def test_named_constants_equal_tcpdump(tcpdump: str) -> None:
    """Each name tcpdump reads as a number (tcp-syn, icmp6-echo, ...) has libpcap's value."""
    from xdppacket._filter_parser import NAMED_CONSTANTS

    for name, value in NAMED_CONSTANTS.items():
        program = _tcpdump_classic(tcpdump, f"ether[0] = {name}").split("\n")[1:]
        compares = [line.split() for line in program if line.split()[:1] == ["21"]]  # jeq #k
        assert [int(fields[3]) for fields in compares] == [value], name


def test_classic_program_as_tuples_equals_text(tcpdump: str, corpus: list[bytes]) -> None:
    text = _tcpdump_classic(tcpdump, "tcp port 80")
    rows = [tuple(int(f) for f in line.split()) for line in text.strip().splitlines()[1:]]
    from_text, from_tuples = OptFilter.from_cbpf(text), OptFilter.from_cbpf(rows)
    assert from_text.compiled.instructions == from_tuples.compiled.instructions
    assert struct.unpack_from("<B", from_text.compiled.instructions)[0] == 0xBF  # r9 = r1 first
