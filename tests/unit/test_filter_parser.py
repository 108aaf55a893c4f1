"""pcap-filter parsing: the tree each expression becomes, and the errors bad ones raise."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network

import pytest

from xdppacket import XDPError, XDPFilterError
from xdppacket._filter_parser import (
    And,
    Arith,
    BinaryOp,
    Broadcast,
    Comparison,
    Constant,
    EtherHost,
    HostMatch,
    Load,
    Multicast,
    Negate,
    Not,
    Or,
    PacketLength,
    PortMatch,
    ProtoAbbrev,
    ProtoNumber,
    Vlan,
    parse,
)

MAC = bytes.fromhex("0011223344aa")


def host(address: str, layer: str = "default", direction: str = "or") -> HostMatch:
    network = IPv6Network(address) if ":" in address else IPv4Network(address)
    return HostMatch("ip6" if ":" in address else layer, direction, network)


@pytest.mark.parametrize(
    ("expression", "tree"),
    [
        ("tcp", ProtoAbbrev("tcp")),
        ("ip6", ProtoAbbrev("ip6")),
        ("host 10.0.0.1", host("10.0.0.1/32")),
        ("src host 10.0.0.1", host("10.0.0.1/32", direction="src")),
        ("dst 10.0.0.1", host("10.0.0.1/32", direction="dst")),
        ("src or dst host 10.0.0.1", host("10.0.0.1/32")),
        ("src and dst 10.0.0.1", host("10.0.0.1/32", direction="and")),
        ("arp host 10.0.0.1", host("10.0.0.1/32", layer="arp")),
        ("ip src 10.0.0.1", host("10.0.0.1/32", layer="ip", direction="src")),
        ("host fe80::1", host("fe80::1/128")),
        ("net fe80::/10", host("fe80::/10")),
        ("net 10.0.0.0/8", host("10.0.0.0/8")),
        ("net 10.0.0.0 mask 255.255.0.0", host("10.0.0.0/16")),
        ("net 10", host("10.0.0.0/8")),  # libpcap promotes a short network number
        ("net 192.168", host("192.168.0.0/16")),
        ("host 10", host("0.0.0.10/32")),
        ("host 10.1", host("10.1.0.0/16")),  # a short dotted address is a network
        ("ether host 00:11:22:33:44:aa", EtherHost("or", MAC)),
        ("ether src 00-11-22-33-44-aa", EtherHost("src", MAC)),
        ("ether dst 0011.2233.44aa", EtherHost("dst", MAC)),
        ("ether host 0:11:22:33:44:aa", EtherHost("or", MAC)),
        ("port 53", PortMatch("default", "or", 53, 53)),
        ("tcp dst port 80", PortMatch("tcp", "dst", 80, 80)),
        ("udp src portrange 60-50", PortMatch("udp", "src", 50, 60)),
        ("portrange 1-1024", PortMatch("default", "or", 1, 1024)),
        ("ether proto 0x88cc", ProtoNumber("link", 0x88CC)),
        ("ether proto \\arp", ProtoNumber("link", 0x0806)),
        ("ip proto 6", ProtoNumber("ip", 6)),
        ("ip6 proto \\udp", ProtoNumber("ip6", 17)),
        ("proto 132", ProtoNumber("default", 132)),
        ("broadcast", Broadcast("link")),
        ("ether multicast", Multicast("link")),
        ("ip6 multicast", Multicast("ip6")),
        ("vlan", Vlan(None)),
        ("vlan 100", Vlan(100)),
        ("less 100", Comparison("<=", PacketLength(), Constant(100))),
        ("greater 100", Comparison(">=", PacketLength(), Constant(100))),
        ("len != 60", Comparison("!=", PacketLength(), Constant(60))),
    ],
)
def test_primitives(expression: str, tree: object) -> None:
    assert parse(expression) == tree


def test_a_bare_address_after_and_or_reuses_the_last_qualifiers() -> None:
    assert parse("src host 1.2.3.4 or 5.6.7.8 and not 9.9.9.9") == And(
        Or(host("1.2.3.4/32", direction="src"), host("5.6.7.8/32", direction="src")),
        Not(host("9.9.9.9/32", direction="src")),
    )
    assert parse("tcp port 80 or 443") == Or(
        PortMatch("tcp", "or", 80, 80), PortMatch("tcp", "or", 443, 443)
    )
    assert parse("host (1.2.3.4 or 5.6.7.8)") == Or(host("1.2.3.4/32"), host("5.6.7.8/32"))
    # "( expr )" passes on the qualifiers that came before it, as in libpcap's grammar.
    assert parse("port 80 and (tcp) and 81") == And(
        And(PortMatch("default", "or", 80, 80), ProtoAbbrev("tcp")),
        PortMatch("default", "or", 81, 81),
    )


def test_and_and_or_share_one_precedence_and_group_from_the_left() -> None:
    assert parse("tcp or udp and port 53") == And(
        Or(ProtoAbbrev("tcp"), ProtoAbbrev("udp")), PortMatch("default", "or", 53, 53)
    )
    assert parse("!tcp && (udp || icmp)") == And(
        Not(ProtoAbbrev("tcp")), Or(ProtoAbbrev("udp"), ProtoAbbrev("icmp"))
    )


def test_arithmetic_has_libpcaps_precedence() -> None:
    ip0 = Load("ip", Constant(0), 1)
    assert parse("ip[0] & 0xf << 2 > 5 + 2 * 3") == Comparison(
        ">",
        BinaryOp("&", ip0, BinaryOp("<<", Constant(15), Constant(2))),
        BinaryOp("+", Constant(5), BinaryOp("*", Constant(2), Constant(3))),
    )
    assert parse("(ip[0] & 0xf) - -1 = 6") == Comparison(
        "=", BinaryOp("-", BinaryOp("&", ip0, Constant(15)), Negate(Constant(1))), Constant(6)
    )
    assert parse("ether[0] ^ 1 & 3 = 0") == Comparison(
        "=",
        BinaryOp("^", Load("link", Constant(0), 1), BinaryOp("&", Constant(1), Constant(3))),
        Constant(0),
    )


def test_modulo_and_xor_take_everything_after_them_as_libpcap_parses_them() -> None:
    """grammar.y declares no precedence for ``%`` and ``^``, so bison always shifts them:
    they bind to the operand just before them, and their right side runs to the end."""
    length, one, two, three = PacketLength(), Constant(1), Constant(2), Constant(3)

    def arithmetic(text: str) -> Arith:
        comparison = parse(f"{text} = 0")
        assert isinstance(comparison, Comparison)
        return comparison.left

    assert arithmetic("-len ^ 1") == Negate(BinaryOp("^", length, one))
    assert arithmetic("-len % 1") == Negate(BinaryOp("%", length, one))
    assert arithmetic("len * 2 % 3") == BinaryOp("*", length, BinaryOp("%", two, three))
    assert arithmetic("len % 2 * 3") == BinaryOp("%", length, BinaryOp("*", two, three))
    assert arithmetic("len ^ 2 + 3") == BinaryOp("^", length, BinaryOp("+", two, three))
    assert arithmetic("len - 1 ^ 3") == BinaryOp("-", length, BinaryOp("^", one, three))
    assert arithmetic("len % 2 % 3") == BinaryOp("%", length, BinaryOp("%", two, three))
    assert arithmetic("len & 2 | 3") == BinaryOp("|", BinaryOp("&", length, two), three)  # declared: as in C
    assert arithmetic("-len * 2") == BinaryOp("*", Negate(length), two)


def test_named_offsets_and_flags_are_numbers() -> None:
    assert parse("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn") == Comparison(
        "=",
        BinaryOp("&", Load("tcp", Constant(13), 1), BinaryOp("|", Constant(2), Constant(16))),
        Constant(2),
    )
    assert parse("icmp6[icmp6type] != icmp6-echo") == Comparison(
        "!=", Load("icmp6", Constant(0), 1), Constant(128)
    )
    assert parse("ip[2:2] > 0x240") == Comparison(">", Load("ip", Constant(2), 2), Constant(576))
    assert parse("ip[010] = 0") == Comparison("=", Load("ip", Constant(8), 1), Constant(0))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tcp and and udp", "syntax error at column 9: unexpected token 'and'"),
        ("tcp and", "syntax error at column 8: unexpected token end of expression"),
        ("host 1.2.3.4 )", "syntax error at column 14: unexpected token ')'"),
        ("ip[2:3] > 1", "syntax error at column 6: data size must be 1, 2 or 4, got '3'"),
        ("tcp and 80", "syntax error at column 9: unexpected token '80'"),
        ("1.2.3.4", "syntax error at column 1"),
        ("port 80 $", "syntax error at column 9: unexpected character '$'"),
        ("ip[0] >", "syntax error at column 8"),
        ("TCP", "host name 'TCP' (column 1)"),  # keywords are lower case, as in libpcap
        ("", "empty filter expression"),
    ],
)
def test_syntax_errors_name_the_column_and_the_token(expression: str, message: str) -> None:
    with pytest.raises(XDPFilterError, match="^" + re.escape(message)):
        parse(expression)


@pytest.mark.parametrize(
    ("expression", "construct"),
    [
        ("gateway 1.2.3.4", "'gateway' (column 1) is not supported"),
        ("ip6 protochain 6", "'protochain' (column 5) is not supported"),
        ("host example.com", "host name 'example.com' (column 6)"),
        ("src www", "host name 'www'"),
        ("mpls 5", "'mpls'"),
        ("tcp and vxlan", "'vxlan' (column 9)"),
        ("ip broadcast", "'ip broadcast' is not supported"),
        ("ether proto 0xfe", "ether proto 0xfe"),
        ("net 10.0.0.0 mask 255.0.255.0", "not contiguous"),
        ("ah[0] = 1", "'ah[...]'"),
        ("ip proto \\nosuchproto", "protocol name 'nosuchproto'"),
    ],
)
def test_unsupported_constructs_are_named(expression: str, construct: str) -> None:
    with pytest.raises(XDPFilterError, match=re.escape(construct)):
        parse(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("host 1.2.3.4/8", "for networks only"),
        ("net 1.2.3.4/8", "non-network bits"),
        ("net fe80::1/10", "non-network bits"),
        ("port 70000", "illegal port number 70000"),
        ("ip port 80", "illegal qualifier of 'port'"),
        ("vlan 4096", "greater than maximum 4095"),
        ("host 00:11:22:33:44:55", "non-ether expression"),
        ("ip6 host 1.2.3.4", "'ip6' qualifier applied to IPv4 address"),
        ("ip[0] / 0 = 1", "division by zero"),
        ("ether", "on its own"),
        ("ip[0] = 0x100000000", "exceeds 32 bits"),
    ],
)
def test_what_libpcap_also_refuses_is_refused(expression: str, message: str) -> None:
    from xdppacket._filter_codegen import generate

    with pytest.raises(XDPFilterError, match=message):
        generate(parse(expression))


def test_filter_errors_are_xdp_errors_and_value_errors() -> None:
    with pytest.raises(ValueError, match="syntax error") as raised:
        parse("tcp and")
    assert isinstance(raised.value, XDPError)
