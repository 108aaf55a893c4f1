"""pcap-filter expressions (``man 7 pcap-filter``) parsed into a tree of frozen dataclasses.

The grammar follows libpcap's grammar.y: ``and`` and ``or`` share one precedence and
group from the left; a bare address after ``and``/``or`` reuses the qualifiers of the
primitive before it (``host 1.2.3.4 or 5.6.7.8``); arithmetic groups as libpcap's does
(see ``_PRECEDENCE``: ``%`` and ``^`` take everything after them). The
parser resolves qualifiers into typed primitives (``HostMatch``, ``PortMatch``, ...), so
the code generator never sees qualifier rules. Nothing here emits code.

Constructs tcpdump accepts but an XDP filter cannot honour (host names, ``gateway``,
``protochain``, MPLS, 802.11, ...) raise ``XDPFilterError`` naming the construct.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Union

from .errors import XDPFilterError

__all__ = [
    "And",
    "Arith",
    "BinaryOp",
    "Broadcast",
    "Comparison",
    "Constant",
    "EtherHost",
    "Expr",
    "HostMatch",
    "Load",
    "Multicast",
    "Negate",
    "Not",
    "Or",
    "PacketLength",
    "PortMatch",
    "ProtoAbbrev",
    "ProtoNumber",
    "Vlan",
    "parse",
]

# --------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True)
class Constant:
    value: int


@dataclass(frozen=True)
class PacketLength:
    """``len``: the frame's length."""


@dataclass(frozen=True)
class Load:
    """``layer[index:size]``: ``size`` bytes at ``index`` from the start of ``layer``."""

    layer: str
    index: Arith
    size: int


@dataclass(frozen=True)
class BinaryOp:
    op: str  # one of + - * / % & | ^ << >>
    left: Arith
    right: Arith


@dataclass(frozen=True)
class Negate:
    operand: Arith


Arith = Union[Constant, PacketLength, Load, BinaryOp, Negate]


@dataclass(frozen=True)
class Comparison:
    """``left op right`` on unsigned 32-bit values; op is one of > >= < <= = !=."""

    op: str
    left: Arith
    right: Arith


@dataclass(frozen=True)
class ProtoAbbrev:
    """A protocol name on its own: ``ip``, ``tcp``, ``arp``, ..."""

    name: str


@dataclass(frozen=True)
class ProtoNumber:
    """``ether proto N`` (layer ``link``), ``ip proto N``, ``ip6 proto N``, ``proto N``."""

    layer: str  # "link", "ip", "ip6" or "default" (ip or ip6)
    number: int


@dataclass(frozen=True)
class HostMatch:
    """``[ip|ip6|arp|rarp] [src|dst] host|net ADDRESS``; a host is a /32 or /128 network."""

    layer: str  # "default", "ip", "ip6", "arp" or "rarp"
    direction: str  # "src", "dst", "or" (either) or "and" (both)
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class EtherHost:
    direction: str
    mac: bytes


@dataclass(frozen=True)
class PortMatch:
    """``[tcp|udp|sctp] [src|dst] port N`` and ``portrange LOW-HIGH``."""

    transport: str  # "tcp", "udp", "sctp" or "default" (any of the three)
    direction: str
    low: int
    high: int


@dataclass(frozen=True)
class Broadcast:
    layer: str  # "link"


@dataclass(frozen=True)
class Multicast:
    layer: str  # "link", "ip" or "ip6"


@dataclass(frozen=True)
class Vlan:
    """``vlan [ID]``: also moves the offsets of everything parsed after it by one tag."""

    vid: int | None


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


Expr = Union[
    Comparison,
    ProtoAbbrev,
    ProtoNumber,
    HostMatch,
    EtherHost,
    PortMatch,
    Broadcast,
    Multicast,
    Vlan,
    Not,
    And,
    Or,
]

# --------------------------------------------------------------------------------------
# Vocabulary

#: Protocol names usable as qualifiers and on their own.
_PROTOCOLS = frozenset(
    [
        "link",
        "ip",
        "ip6",
        "arp",
        "rarp",
        "tcp",
        "udp",
        "sctp",
        "icmp",
        "icmp6",
        "igmp",
        "igrp",
        "pim",
        "vrrp",
        "carp",
        "ah",
        "esp",
    ]
)
#: Other names for ``link`` (tcpdump treats them alike on Ethernet).
_LINK_ALIASES = frozenset(["link", "ether", "fddi", "tr", "wlan", "ppp", "slip"])
_KEYWORDS = (
    frozenset(
        [
            "src",
            "dst",
            "host",
            "net",
            "mask",
            "port",
            "portrange",
            "proto",
            "gateway",
            "protochain",
            "less",
            "greater",
            "broadcast",
            "multicast",
            "and",
            "or",
            "not",
            "len",
            "vlan",
        ]
    )
    | _PROTOCOLS
    | _LINK_ALIASES
)

#: Keywords of constructs tcpdump knows that an XDP filter does not support.
_UNSUPPORTED = frozenset(
    [
        "gateway",
        "protochain",
        "byte",
        "inbound",
        "outbound",
        "ifindex",
        "mpls",
        "pppoed",
        "pppoes",
        "geneve",
        "vxlan",
        "batadv",
        "llc",
        "radio",
        "atalk",
        "aarp",
        "decnet",
        "lat",
        "sca",
        "moprc",
        "mopdl",
        "iso",
        "esis",
        "isis",
        "clnp",
        "stp",
        "ipx",
        "netbeui",
        "l1",
        "l2",
        "iih",
        "lsp",
        "snp",
        "csnp",
        "psnp",
        "type",
        "subtype",
        "dir",
        "addr1",
        "addr2",
        "addr3",
        "addr4",
        "ra",
        "ta",
        "on",
        "ifname",
        "rnr",
        "rulenum",
        "srnr",
        "subrulenum",
        "reason",
        "action",
        "lane",
        "metac",
        "bcc",
        "oam",
        "oamf4",
        "oamf4ec",
        "oamf4sc",
        "sc",
        "ilmic",
        "vpi",
        "vci",
        "connectmsg",
        "metaconnect",
        "fisu",
        "lssu",
        "msu",
        "hfisu",
        "hlssu",
        "hmsu",
        "sio",
        "opc",
        "dpc",
        "sls",
        "hsio",
        "hopc",
        "hdpc",
        "hsls",
    ]
)

#: Names tcpdump reads as numbers (offsets into headers, ICMP types, TCP flags).
NAMED_CONSTANTS = {
    "tcpflags": 13,
    "tcp-fin": 0x01,
    "tcp-syn": 0x02,
    "tcp-rst": 0x04,
    "tcp-push": 0x08,
    "tcp-ack": 0x10,
    "tcp-urg": 0x20,
    "tcp-ece": 0x40,
    "tcp-cwr": 0x80,
    "icmptype": 0,
    "icmpcode": 1,
    "icmp-echoreply": 0,
    "icmp-unreach": 3,
    "icmp-sourcequench": 4,
    "icmp-redirect": 5,
    "icmp-echo": 8,
    "icmp-routeradvert": 9,
    "icmp-routersolicit": 10,
    "icmp-timxceed": 11,
    "icmp-paramprob": 12,
    "icmp-tstamp": 13,
    "icmp-tstampreply": 14,
    "icmp-ireq": 15,
    "icmp-ireqreply": 16,
    "icmp-maskreq": 17,
    "icmp-maskreply": 18,
    "icmp6type": 0,
    "icmp6code": 1,
    "icmp6-destinationunreach": 1,
    "icmp6-packettoobig": 2,
    "icmp6-timeexceeded": 3,
    "icmp6-parameterproblem": 4,
    "icmp6-echo": 128,
    "icmp6-echoreply": 129,
    "icmp6-multicastlistenerquery": 130,
    "icmp6-multicastlistenerreportv1": 131,
    "icmp6-multicastlistenerdone": 132,
    "icmp6-routersolicit": 133,
    "icmp6-routeradvert": 134,
    "icmp6-neighborsolicit": 135,
    "icmp6-neighboradvert": 136,
    "icmp6-redirect": 137,
    "icmp6-routerrenum": 138,
    "icmp6-nodeinformationquery": 139,
    "icmp6-nodeinformationresponse": 140,
    "icmp6-ineighbordiscoverysolicit": 141,
    "icmp6-ineighbordiscoveryadvert": 142,
    "icmp6-multicastlistenerreportv2": 143,
    "icmp6-homeagentdiscoveryrequest": 144,
    "icmp6-homeagentdiscoveryreply": 145,
    "icmp6-mobileprefixsolicit": 146,
    "icmp6-mobileprefixadvert": 147,
    "icmp6-certpathsolicit": 148,
    "icmp6-certpathadvert": 149,
    "icmp6-multicastrouteradvert": 151,
    "icmp6-multicastroutersolicit": 152,
    "icmp6-multicastrouterterm": 153,
}

#: ``ether proto \\NAME``: the names libpcap knows (IP protocol names come from
#: /etc/protocols, as in libpcap).
_ETHER_PROTOCOL_NAMES = {"ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806, "rarp": 0x8035}

#: Ethertype values libpcap compiles to something other than a plain comparison
#: (802.2 LLC encapsulations of IPX, AppleTalk, NetBEUI, OSI).
_SPECIAL_ETHER_PROTOCOLS = frozenset({0x06, 0xE0, 0xF0, 0xFE, 0x809B, 0x80F3})

_MAX_U32 = 0xFFFFFFFF

# --------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "hid", "hid6", "eid", "name", "kw", "op", "end"
    text: str
    column: int  # 1-based
    value: int = 0
    mac: bytes = field(default=b"")


_MAC_RE = re.compile(
    r"[0-9A-Fa-f]{1,2}(?P<sep>[:.-])[0-9A-Fa-f]{1,2}(?:(?P=sep)[0-9A-Fa-f]{1,2}){4}"
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}"
    r"|[0-9A-Fa-f]{12}(?![-_.A-Za-z0-9])"
)
_IPV6_RE = re.compile(r"[0-9A-Fa-f:][0-9A-Fa-f:.]*")
_IPV4_RE = re.compile(r"[0-9]+(?:\.[0-9]+){1,3}")
_NUMBER_RE = re.compile(r"0[xX][0-9A-Fa-f]+|[0-9]+")
_WORD_RE = re.compile(r"[A-Za-z0-9_](?:[-_.A-Za-z0-9]*[.A-Za-z0-9_])?")
_ESCAPED_RE = re.compile(r"\\[^ !()\n\t\\]+")
_OPERATORS = (
    "&&",
    "||",
    "<<",
    ">>",
    ">=",
    "<=",
    "==",
    "!=",
    "(",
    ")",
    "[",
    "]",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "&",
    "|",
    "^",
    ">",
    "<",
    "=",
    "!",
)
_NAME_CHARS = re.compile(r"[-_.A-Za-z0-9:]")
_NUMBER_FOLLOWERS = re.compile(r"[-_.A-Za-z0-9]")  # "ip[2:2]": a number may precede ":"


def _syntax_error(token: Token, detail: str = "unexpected token") -> XDPFilterError:
    shown = "end of expression" if token.kind == "end" else repr(token.text)
    return XDPFilterError(f"syntax error at column {token.column}: {detail} {shown}")


def _parse_number(text: str) -> int:
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8)
    return int(text)


def _whole(
    match: re.Match[str] | None, text: str, followers: re.Pattern[str] = _NAME_CHARS
) -> bool:
    """True when ``match`` ends where a token may end (not inside a longer name)."""
    if match is None:
        return False
    end = match.end()
    return end == len(text) or followers.match(text, end) is None


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            tokens.append(Token("end", "", position + 1))
            return tokens
        token = _next_token(text, position)
        tokens.append(token)
        position += len(token.text)


def _next_token(text: str, position: int) -> Token:
    column = position + 1
    match = _MAC_RE.match(text, position)
    if _whole(match, text):
        assert match is not None
        digits = re.sub(r"[:.-]", "", match.group())
        if len(digits) != 12:  # one-digit groups: "0:1:2:3:4:5"
            digits = "".join(part.zfill(2) for part in re.split(r"[:.-]", match.group()))
        return Token("eid", match.group(), column, mac=bytes.fromhex(digits))
    match = _IPV6_RE.match(text, position)
    if _whole(match, text) and match is not None and ":" in match.group():
        try:
            ipaddress.IPv6Address(match.group())
        except ValueError:
            pass
        else:
            return Token("hid6", match.group(), column)
    match = _IPV4_RE.match(text, position)
    if _whole(match, text):
        assert match is not None
        return Token("hid", match.group(), column)
    match = _NUMBER_RE.match(text, position)
    if _whole(match, text, _NUMBER_FOLLOWERS):
        assert match is not None
        try:
            value = _parse_number(match.group())
        except ValueError:
            raise XDPFilterError(
                f"syntax error at column {column}: bad number {match.group()!r}"
            ) from None
        if value > _MAX_U32:
            raise XDPFilterError(
                f"syntax error at column {column}: number {match.group()!r} exceeds 32 bits"
            )
        return Token("num", match.group(), column, value=value)
    match = _WORD_RE.match(text, position)
    if match is not None:
        word = match.group()
        # Keywords are lower case, as in libpcap ("TCP" would be a host name there).
        if word in NAMED_CONSTANTS:
            return Token("num", word, column, value=NAMED_CONSTANTS[word])
        if word in _UNSUPPORTED:
            raise XDPFilterError(f"'{word}' (column {column}) is not supported in XDP filters")
        if word in _KEYWORDS:
            return Token("kw", word, column)
        return Token("name", word, column)
    match = _ESCAPED_RE.match(text, position)
    if match is not None:
        return Token("name", match.group(), column)
    for operator in _OPERATORS:
        if text.startswith(operator, position):
            return Token("op", operator, column)
    raise XDPFilterError(
        f"syntax error at column {column}: unexpected character {text[position]!r}"
    )


# --------------------------------------------------------------------------------------
# Parser


@dataclass(frozen=True)
class _Qualifiers:
    """What ``head`` says before an id: protocol, direction, address type."""

    proto: str = "default"
    direction: str = "default"
    kind: str = "default"  # "host", "net", "port", "portrange", "proto" or "default"


#: What a primitive leaves for a following bare id; ``None``: a bare id is an error.
_Inherited = Union[_Qualifiers, None]

_AND = ("and", "&&")
_OR = ("or", "||")
_NOT = ("not", "!")
#: Words that start the qualifiers of an id (after an optional protocol).
_HEAD_WORDS = frozenset(("src", "dst", "host", "net", "port", "portrange", "proto"))
_RELATIONS = {">": ">", ">=": ">=", "=": "=", "==": "=", "<": "<", "<=": "<=", "!=": "!="}
#: Binary arithmetic operators by precedence, as libpcap's grammar.y declares them, and
#: unary minus (``_NEGATE``) above all. grammar.y gives ``%`` and ``^`` none (None here),
#: so bison's default applies to them, shift: before either the parser never reduces
#: (``-a ^ b`` is ``-(a ^ b)``, ``a * b % c`` is ``a * (b % c)``), and after either it
#: reduces only at the end of the arithmetic (``a ^ b + c`` is ``a ^ (b + c)``).
_PRECEDENCE: dict[str, int | None] = {
    "|": 1, "&": 2, "<<": 3, ">>": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": None, "^": None,
}
_NEGATE = "negate"
_NEGATE_PRECEDENCE = 6
#: Operators that show a number or a parenthesis belongs to arithmetic.
_ARITHMETIC_FOLLOWERS = frozenset(_PRECEDENCE) | frozenset(_RELATIONS)


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = tokenize(text)
        self._index = 0

    # Token helpers ---------------------------------------------------------------------

    @property
    def _token(self) -> Token:
        return self._tokens[self._index]

    def _peek(self, ahead: int = 1) -> Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _is(self, *texts: str) -> bool:
        token = self._token
        return token.kind in ("kw", "op") and token.text.lower() in texts

    def _advance(self) -> Token:
        token = self._token
        self._index += 1
        return token

    def _expect(self, text: str) -> Token:
        if not self._is(text):
            raise _syntax_error(self._token, f"expected {text!r}, got")
        return self._advance()

    # Boolean structure -----------------------------------------------------------------

    def parse(self) -> Expr:
        if self._token.kind == "end":
            raise XDPFilterError("empty filter expression: use no filter to capture everything")
        expr, _ = self._expression()
        if self._token.kind != "end":
            raise _syntax_error(self._token)
        return expr

    def _expression(self) -> tuple[Expr, _Inherited]:
        left, inherited = self._term()
        while self._is(*_AND, *_OR):
            combine = And if self._advance().text.lower() in _AND else Or
            right, inherited = self._term_or_id(inherited)
            left = combine(left, right)
        return left, inherited

    def _term_or_id(self, inherited: _Inherited) -> tuple[Expr, _Inherited]:
        """After and/or: a full term, or a bare id that reuses the last qualifiers."""
        if self._starts_bare_id():
            if inherited is None:
                raise _syntax_error(self._token)
            return self._id(inherited), inherited
        return self._term(inherited)

    def _starts_bare_id(self) -> bool:
        index = self._index
        while self._tokens[index].kind in ("kw", "op") and self._tokens[index].text.lower() in _NOT:
            index += 1
        token = self._tokens[index]
        if token.kind in ("hid", "hid6", "eid", "name"):
            return True
        if token.kind == "num":  # a number alone is an id; "1 + 2 > 3" is arithmetic
            following = self._tokens[index + 1]
            return not (following.kind == "op" and following.text in _ARITHMETIC_FOLLOWERS)
        return False

    def _term(self, inherited: _Inherited = None) -> tuple[Expr, _Inherited]:
        if self._is(*_NOT):
            self._advance()
            operand, inherited = self._term(inherited)
            return Not(operand), inherited
        return self._rterm(inherited)

    def _rterm(self, inherited: _Inherited) -> tuple[Expr, _Inherited]:
        token = self._token
        if self._is("(") and not self._parenthesis_is_arithmetic():
            self._advance()
            expr, _ = self._expression()
            self._expect(")")
            return expr, inherited  # libpcap: "( expr )" passes on the qualifiers before it
        if token.kind == "kw":
            word = token.text.lower()
            if word in ("less", "greater"):
                self._advance()
                number = self._token
                if number.kind != "num":
                    raise _syntax_error(number)
                self._advance()
                op = "<=" if word == "less" else ">="
                return Comparison(op, PacketLength(), Constant(number.value)), None
            if word == "vlan":
                self._advance()
                vid = self._optional_pnum()
                if vid is not None and vid > 4095:
                    raise XDPFilterError(f"VLAN tag {vid} greater than maximum 4095")
                return Vlan(vid), None
            if word in ("broadcast", "multicast"):
                return self._cast("default"), None
            protocol = self._protocol_word(word)
            if protocol is not None:
                following = self._peek()
                if following.kind == "op" and following.text == "[":
                    return self._relation(), None
                if following.kind == "kw" and following.text.lower() in ("broadcast", "multicast"):
                    self._advance()
                    return self._cast(protocol), None
                if following.kind == "kw" and following.text.lower() in _HEAD_WORDS:
                    self._advance()
                    return self._head_id(protocol)
                self._advance()
                return _proto_abbrev(protocol, token), None
            if word in _HEAD_WORDS:
                return self._head_id("default")
            if word == "len":
                return self._relation(), None
            raise _syntax_error(token)
        if token.kind == "num" or self._is("(", "-"):
            return self._relation(), None
        if token.kind == "name":
            raise _unresolvable_name(token)
        raise _syntax_error(token)

    def _parenthesis_is_arithmetic(self) -> bool:
        """Whether "(" opens arithmetic, like "(ip[0] & 0xf) > 5", rather than an expression."""
        depth = 0
        for index in range(self._index, len(self._tokens)):
            token = self._tokens[index]
            if token.kind == "op" and token.text == "(":
                depth += 1
            elif token.kind == "op" and token.text == ")":
                depth -= 1
                if depth == 0:
                    following = self._tokens[index + 1]
                    return following.kind == "op" and following.text in _ARITHMETIC_FOLLOWERS
            elif token.kind == "end":
                return False
        return False

    @staticmethod
    def _protocol_word(word: str) -> str | None:
        if word in _LINK_ALIASES:
            return "link"
        return word if word in _PROTOCOLS else None

    def _optional_pnum(self) -> int | None:
        if self._token.kind == "num":
            return self._advance().value
        if self._is("(") and self._peek().kind == "num" and self._peek(2).text == ")":
            self._advance()
            value = self._advance().value
            self._advance()
            return value
        return None

    def _cast(self, protocol: str) -> Expr:
        token = self._advance()
        word = token.text.lower()
        if protocol in ("default", "link"):
            return Broadcast("link") if word == "broadcast" else Multicast("link")
        if word == "multicast" and protocol in ("ip", "ip6"):
            return Multicast(protocol)
        if word == "broadcast" and protocol == "ip":
            raise XDPFilterError(
                "'ip broadcast' is not supported in XDP filters: it needs the interface's netmask"
            )
        raise XDPFilterError(
            f"'{protocol} {word}' is not a valid primitive (column {token.column})"
        )

    # Qualified ids ---------------------------------------------------------------------

    def _head_id(self, proto: str) -> tuple[Expr, _Inherited]:
        direction = "default"
        if self._is("src", "dst"):
            first = self._advance().text.lower()
            direction = first
            if self._is(*_AND, *_OR) and self._peek().kind == "kw":
                second = self._peek().text.lower()
                if second in ("src", "dst") and second != first:
                    direction = "and" if self._advance().text.lower() in _AND else "or"
                    self._advance()
        kind = "default"
        if self._is("host", "net", "port", "portrange", "proto"):
            kind = self._advance().text.lower()
            if kind == "proto" and direction != "default":
                raise _syntax_error(self._tokens[self._index - 1])
        qualifiers = _Qualifiers(proto, direction, kind)
        return self._id(qualifiers), qualifiers

    def _id(self, qualifiers: _Qualifiers) -> Expr:
        if self._is(*_NOT):
            self._advance()
            return Not(self._id(qualifiers))
        if self._is("("):
            self._advance()
            expr = self._id(qualifiers)
            while self._is(*_AND, *_OR):
                combine = And if self._advance().text.lower() in _AND else Or
                expr = combine(expr, self._id(qualifiers))
            self._expect(")")
            return expr
        token = self._advance()
        if token.kind == "num":
            return _number_id(token, qualifiers)
        if token.kind == "hid":
            if self._is("/"):
                self._advance()
                length = self._token
                if length.kind != "num":
                    raise _syntax_error(length)
                self._advance()
                return _ipv4_id(token, qualifiers, prefix_length=length.value)
            if self._is("mask"):
                self._advance()
                mask = self._token
                if mask.kind != "hid":
                    raise _syntax_error(mask)
                self._advance()
                return _ipv4_id(token, qualifiers, mask=mask.text)
            return _ipv4_id(token, qualifiers)
        if token.kind == "hid6":
            prefix_length = 128
            if self._is("/"):
                self._advance()
                length = self._token
                if length.kind != "num":
                    raise _syntax_error(length)
                self._advance()
                prefix_length = length.value
            return _ipv6_id(token, qualifiers, prefix_length)
        if token.kind == "eid":
            if qualifiers.proto != "link" or qualifiers.kind not in ("host", "default"):
                raise XDPFilterError(
                    f"ethernet address {token.text!r} (column {token.column}) used in a "
                    "non-ether expression: write 'ether host ...'"
                )
            return EtherHost(_direction(qualifiers), token.mac)
        if token.kind == "name":
            return _name_id(token, qualifiers)
        raise _syntax_error(token)

    # Arithmetic ------------------------------------------------------------------------

    def _relation(self) -> Comparison:
        left = self._arith()
        token = self._token
        if token.kind != "op" or token.text not in _RELATIONS:
            raise _syntax_error(token, "expected a comparison, got")
        self._advance()
        right = self._arith()
        return Comparison(_RELATIONS[token.text], left, right)

    def _arith(self) -> Arith:
        """Arithmetic, grouped as libpcap's LALR parser groups it (``_PRECEDENCE``)."""
        operands: list[Arith] = []
        pending: list[str] = []  # operators waiting for their right operand; _NEGATE for unary minus
        while True:
            while self._is("-"):
                self._advance()
                pending.append(_NEGATE)
            operands.append(self._operand())
            token = self._token
            lookahead = token.text if token.kind == "op" and token.text in _PRECEDENCE else None
            while pending and (lookahead is None or _reduces_before(pending[-1], lookahead)):
                op = pending.pop()
                operand = operands.pop()
                operands.append(Negate(operand) if op == _NEGATE else BinaryOp(op, operands.pop(), operand))
            if lookahead is None:
                return operands[0]
            pending.append(self._advance().text)

    def _operand(self) -> Arith:
        token = self._token
        if self._is("("):
            self._advance()
            inner = self._arith()
            self._expect(")")
            return inner
        if token.kind == "num":
            self._advance()
            return Constant(token.value)
        if token.kind == "kw" and token.text.lower() == "len":
            self._advance()
            return PacketLength()
        if token.kind == "kw":
            protocol = self._protocol_word(token.text.lower())
            if protocol is not None and self._peek().text == "[":
                self._advance()
                self._advance()
                index = self._arith()
                size = 1
                if self._is(":"):
                    self._advance()
                    size_token = self._token
                    if size_token.kind != "num" or size_token.value not in (1, 2, 4):
                        raise _syntax_error(size_token, "data size must be 1, 2 or 4, got")
                    size = self._advance().value
                self._expect("]")
                if protocol not in _LOADABLE:
                    raise XDPFilterError(
                        f"'{protocol}[...]' (column {token.column}) is not supported in XDP filters"
                    )
                return Load(protocol, index, size)
        if token.kind == "name":
            raise _unresolvable_name(token)
        raise _syntax_error(token)


def _reduces_before(pending: str, lookahead: str) -> bool:
    """Whether bison, holding ``pending`` with its right operand, reduces it before
    shifting binary operator ``lookahead``: only when both have a precedence, and
    ``pending``'s is higher, or equal (all of grammar.y's operators group from the left)."""
    held = _NEGATE_PRECEDENCE if pending == _NEGATE else _PRECEDENCE[pending]
    coming = _PRECEDENCE[lookahead]
    return held is not None and coming is not None and held >= coming


#: Layers ``layer[...]`` may address: every protocol qualifier but the IPsec headers.
_LOADABLE = _PROTOCOLS - {"ah", "esp"}


def _proto_abbrev(protocol: str, token: Token) -> ProtoAbbrev:
    if protocol == "link":
        raise XDPFilterError(
            f"'{token.text}' on its own (column {token.column}) is not a filter; "
            "write e.g. 'ether host ...' or 'ether proto ...'"
        )
    return ProtoAbbrev(protocol)


def _unresolvable_name(token: Token) -> XDPFilterError:
    return XDPFilterError(
        f"host name {token.text!r} (column {token.column}) is not supported in XDP filters: "
        "names would need DNS; write the address"
    )


def _direction(qualifiers: _Qualifiers) -> str:
    return "or" if qualifiers.direction == "default" else qualifiers.direction


def _number_id(token: Token, qualifiers: _Qualifiers) -> Expr:
    kind = qualifiers.kind
    if kind in ("port", "portrange"):
        return _port_match(token, qualifiers, token.value, token.value)
    if kind == "proto":
        return _proto_number(token, qualifiers, token.value)
    # libpcap: "net 10" promotes a short number to 10.0.0.0/8, "host 10" is 0.0.0.10.
    value, mask = token.value, _MAX_U32
    if kind == "net":
        while value and not value & 0xFF000000:
            value = (value << 8) & _MAX_U32
            mask = (mask << 8) & _MAX_U32
    return _host_match(token, qualifiers, value, mask)


def _ipv4_id(
    token: Token, qualifiers: _Qualifiers, prefix_length: int | None = None, mask: str | None = None
) -> Expr:
    if qualifiers.kind in ("port", "portrange", "proto"):
        raise XDPFilterError(f"'{qualifiers.kind}' modifier applied to IP address {token.text!r}")
    parts = [int(part) for part in token.text.split(".")]
    if any(part > 255 for part in parts):
        raise XDPFilterError(f"invalid IPv4 address {token.text!r} at column {token.column}")
    value = 0
    for part in parts:
        value = (value << 8) | part
    value <<= 8 * (4 - len(parts))
    if prefix_length is None and mask is None:
        # A short dotted address is a network ("host 10.1" is 10.1.0.0/16, as in libpcap).
        netmask = (_MAX_U32 << (8 * (4 - len(parts)))) & _MAX_U32
        return _host_match(token, qualifiers, value, netmask)
    if qualifiers.kind != "net":
        raise XDPFilterError(
            f"mask syntax (column {token.column}) is for networks only: write 'net'"
        )
    if prefix_length is not None:
        if prefix_length > 32:
            raise XDPFilterError(f"mask length {prefix_length} > 32 in {token.text!r}")
        netmask = (_MAX_U32 << (32 - prefix_length)) & _MAX_U32 if prefix_length else 0
    else:
        assert mask is not None
        try:
            netmask = int(ipaddress.IPv4Address(mask))
        except ValueError:
            raise XDPFilterError(f"invalid netmask {mask!r}") from None
    if value & ~netmask & _MAX_U32:
        raise XDPFilterError(f"non-network bits set in {token.text!r}")
    return _host_match(token, qualifiers, value, netmask)


def _host_match(token: Token, qualifiers: _Qualifiers, value: int, mask: int) -> Expr:
    if qualifiers.kind in ("port", "portrange", "proto"):
        raise XDPFilterError(f"'{qualifiers.kind}' modifier applied to IP address {token.text!r}")
    layer = qualifiers.proto
    if layer not in ("default", "ip", "arp", "rarp"):
        raise XDPFilterError(
            f"'{layer}' qualifier applied to IPv4 address {token.text!r} (column {token.column})"
        )
    # An arbitrary mask (from "mask") is kept by storing it in an IPv4Network only when
    # it is a prefix; libpcap accepts any mask, so the generic form carries both.
    network = ipaddress.IPv4Network((value, _prefix_length(mask, 32, token)))
    return HostMatch(layer, _direction(qualifiers), network)


def _prefix_length(mask: int, bits: int, token: Token) -> int:
    length = bin(mask).count("1")
    if mask != ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1):
        raise XDPFilterError(
            f"netmask of {token.text!r} (column {token.column}) is not contiguous; "
            "XDP filters support prefix masks only"
        )
    return length


def _ipv6_id(token: Token, qualifiers: _Qualifiers, prefix_length: int) -> Expr:
    if qualifiers.kind in ("port", "portrange", "proto"):
        raise XDPFilterError(f"'{qualifiers.kind}' modifier applied to IP address {token.text!r}")
    if qualifiers.proto not in ("default", "ip6"):
        raise XDPFilterError(
            f"'{qualifiers.proto}' qualifier applied to IPv6 address {token.text!r} "
            f"(column {token.column})"
        )
    if prefix_length > 128:
        raise XDPFilterError(f"mask length {prefix_length} > 128 in {token.text!r}")
    if prefix_length != 128 and qualifiers.kind != "net":
        raise XDPFilterError(
            f"mask syntax (column {token.column}) is for networks only: write 'net'"
        )
    try:
        network = ipaddress.IPv6Network(f"{token.text}/{prefix_length}")
    except ValueError:
        raise XDPFilterError(f"non-network bits set in {token.text}/{prefix_length}") from None
    return HostMatch("ip6", _direction(qualifiers), network)


def _port_match(token: Token, qualifiers: _Qualifiers, low: int, high: int) -> PortMatch:
    if qualifiers.proto not in ("default", "tcp", "udp", "sctp"):
        raise XDPFilterError(f"illegal qualifier of 'port': '{qualifiers.proto}'")
    for port in (low, high):
        if port > 65535:
            raise XDPFilterError(f"illegal port number {port} > 65535 (column {token.column})")
    if low > high:
        low, high = high, low
    return PortMatch(qualifiers.proto, _direction(qualifiers), low, high)


def _proto_number(token: Token, qualifiers: _Qualifiers, number: int) -> ProtoNumber:
    layer = qualifiers.proto
    if layer == "link":
        if number > 0xFFFF:
            raise XDPFilterError(f"ether proto {number} does not fit in 16 bits")
        if number in _SPECIAL_ETHER_PROTOCOLS:
            raise XDPFilterError(
                f"ether proto {number:#x} (an 802.2 LLC encapsulation) is not supported in XDP filters"
            )
        return ProtoNumber("link", number)
    if layer not in ("default", "ip", "ip6"):
        raise XDPFilterError(
            f"'proto' qualifier applied to '{layer}' is not supported in XDP filters"
        )
    if number > 255:
        raise XDPFilterError(f"IP protocol {number} does not fit in 8 bits (column {token.column})")
    return ProtoNumber(layer, number)


def _name_id(token: Token, qualifiers: _Qualifiers) -> Expr:
    name = token.text.lstrip("\\")
    lowered = name.lower()
    kind = qualifiers.kind
    if kind == "proto":
        number = _protocol_number(lowered, qualifiers.proto == "link")
        if number is None:
            raise XDPFilterError(
                f"protocol name {name!r} (column {token.column}) is not supported in XDP filters; "
                "write its number"
            )
        return _proto_number(token, qualifiers, number)
    if kind == "portrange":
        bounds = re.fullmatch(r"([0-9]+)-([0-9]+)", name)
        if bounds is None:
            raise XDPFilterError(
                f"port range {name!r} (column {token.column}) must be LOW-HIGH in numbers"
            )
        return _port_match(token, qualifiers, int(bounds.group(1)), int(bounds.group(2)))
    if kind == "port":
        port, transport = _service_port(name, token)
        if transport != "default":
            if qualifiers.proto not in ("default", transport):
                raise XDPFilterError(f"port {name!r} is {transport} (column {token.column})")
            qualifiers = _Qualifiers(transport, qualifiers.direction, kind)
        return _port_match(token, qualifiers, port, port)
    raise _unresolvable_name(token)


def _protocol_number(name: str, ethernet: bool) -> int | None:
    if ethernet:
        return _ETHER_PROTOCOL_NAMES.get(name)
    try:
        return socket.getprotobyname(name)
    except OSError:
        return None


def _service_port(name: str, token: Token) -> tuple[int, str]:
    """A service name resolved as libpcap does: (port, "tcp"/"udp", or "default" for both)."""
    ports = {}
    for transport in ("tcp", "udp"):
        try:
            ports[transport] = socket.getservbyname(name, transport)
        except OSError:
            continue
    if "tcp" in ports:  # libpcap prefers TCP's number when the two differ
        return ports["tcp"], "default" if ports.get("udp") == ports["tcp"] else "tcp"
    if "udp" in ports:
        return ports["udp"], "udp"
    raise XDPFilterError(f"unknown port name {name!r} (column {token.column})")


def parse(expression: str) -> Expr:
    """Parse a pcap-filter expression; raise ``XDPFilterError`` on anything not supported."""
    return _Parser(expression).parse()
