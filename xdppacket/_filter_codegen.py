"""Lower a parsed pcap-filter tree to an eBPF prologue with libpcap's semantics (Ethernet).

Three steps, kept apart: ``_Lowering`` turns the parser's primitives into field tests
(``_Test``: "the 2 bytes at offset 12 equal 0x0800") combined with all/any/not, the way
libpcap's gencode.c builds them, in source order so that ``vlan`` moves the offsets of
everything after it; ``_flow`` links them into a graph that ``_filter_flow.optimize``
rewrites as libpcap's optimizer would (so the same loads run in the same order);
``_Emitter`` turns the graph into guarded loads and jumps.

What follows libpcap exactly (and is checked against tcpdump by the differential tests):
``tcp``/``udp``/``sctp`` also accept IPv6 with one fragment header before the transport
header; ports of IPv4 fragments other than the first do not match; IPv6 ports and
``ip6 proto`` look at no other extension header; ``host``/``net`` with an IPv4 address
also match ARP and RARP; a load past the frame's end makes the whole filter fail, also
under ``not``; masked address words whose mask is zero are not loaded (libpcap's
optimizer drops them).
"""

from __future__ import annotations

import ipaddress
import operator
from dataclasses import dataclass
from typing import Callable, Union

from . import _filter_parser as ast
from ._ebpf import (
    BPF_ADD,
    BPF_AND,
    BPF_DIV,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JNE,
    BPF_LSH,
    BPF_MOD,
    BPF_MUL,
    BPF_OR,
    BPF_RSH,
    BPF_SUB,
    BPF_XOR,
    Assembler,
    Label,
    Reg,
)
from ._filter_flow import Exit, FieldTest, Node, Opaque, Target, optimize, reachable
from ._filter_frame import FilterFrame
from .errors import XDPFilterError

__all__ = ["generate"]

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_REVARP = 0x8035
ETHERTYPE_IPV6 = 0x86DD
#: VLAN tag protocol identifiers libpcap accepts for ``vlan``.
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
IPPROTO_FRAGMENT = 44
_ETHERNET_TYPE_OFFSET = 12
_ETHERNET_HEADER = 14
_VLAN_TAG = 4

# Protocol abbreviations: which IP layers they apply to, and their protocol number.
_IP_ONLY = {"icmp": 1, "igmp": 2, "igrp": 9, "vrrp": 112, "carp": 112}
_IP_OR_IP6 = {"tcp": 6, "udp": 17, "sctp": 132, "pim": 103, "ah": 51, "esp": 50}
_TRANSPORT_LAYERS = frozenset(["tcp", "udp", "sctp", "icmp", "igmp", "igrp", "pim", "vrrp", "carp"])
_PORT_PROTOCOLS = {"tcp": (6,), "udp": (17,), "sctp": (132,), "default": (132, 6, 17)}
_LINK_TYPES = {
    "ip": ETHERTYPE_IP,
    "ip6": ETHERTYPE_IPV6,
    "arp": ETHERTYPE_ARP,
    "rarp": ETHERTYPE_REVARP,
}
# (ethertype, source offset, destination offset) of IPv4 addresses per layer.
_IPV4_ADDRESSES = {
    "ip": (ETHERTYPE_IP, 12, 16),
    "arp": (ETHERTYPE_ARP, 14, 24),
    "rarp": (ETHERTYPE_REVARP, 14, 24),
}

# --------------------------------------------------------------------------------------
# Field tests and values (what the lowering produces)


@dataclass(frozen=True)
class _Test:
    """``(size bytes at offset) & mask  op  value``.

    With ``ip_header`` set, ``offset`` counts from the end of the IPv4 header that starts
    at ``ip_header`` (its length read from the header), as for ports.
    """

    offset: int
    size: int
    op: str
    value: int
    mask: int | None = None
    ip_header: int | None = None


@dataclass(frozen=True)
class _All:
    parts: tuple[_Cond, ...]


@dataclass(frozen=True)
class _Any:
    parts: tuple[_Cond, ...]


@dataclass(frozen=True)
class _Invert:
    part: _Cond


@dataclass(frozen=True)
class _Always:
    """A test libpcap's optimizer reduces to a constant (a masked word with mask 0, two
    numbers compared)."""

    value: bool


@dataclass(frozen=True)
class _Const:
    value: int


@dataclass(frozen=True)
class _Length:
    pass


@dataclass(frozen=True)
class _Fetch:
    """``size`` bytes at ``base + index`` (+ the IPv4 header length when ``transport``)."""

    base: int
    transport: bool
    index: _Value
    size: int


@dataclass(frozen=True)
class _Arith:
    op: str
    left: _Value
    right: _Value


@dataclass(frozen=True)
class _Neg:
    operand: _Value


_Value = Union[_Const, _Length, _Fetch, _Arith, _Neg]


@dataclass(frozen=True)
class _Relation:
    op: str
    left: _Value
    right: _Value


_Cond = Union[_Test, _All, _Any, _Invert, _Always, _Relation]


def _all(*parts: _Cond) -> _All:
    return _All(parts)


def _any(*parts: _Cond) -> _Any:
    return _Any(parts)


# --------------------------------------------------------------------------------------
# Lowering


class _Lowering:
    """AST -> field tests, walking the tree in source order (libpcap generates as it parses)."""

    def __init__(self) -> None:
        self.vlan_tags = 0
        self.uses_length = False

    @property
    def _type_offset(self) -> int:
        return _ETHERNET_TYPE_OFFSET + _VLAN_TAG * self.vlan_tags

    @property
    def _payload(self) -> int:
        return _ETHERNET_HEADER + _VLAN_TAG * self.vlan_tags

    def lower(self, node: ast.Expr) -> _Cond:
        if isinstance(node, ast.And):
            left = self.lower(node.left)
            return _all(left, self.lower(node.right))
        if isinstance(node, ast.Or):
            left = self.lower(node.left)
            return _any(left, self.lower(node.right))
        if isinstance(node, ast.Not):
            return _Invert(self.lower(node.operand))
        if isinstance(node, ast.ProtoAbbrev):
            return self._abbrev(node.name)
        if isinstance(node, ast.ProtoNumber):
            return self._proto_number(node)
        if isinstance(node, ast.HostMatch):
            return self._host(node)
        if isinstance(node, ast.EtherHost):
            return _direction(node.direction, self._mac(6, node.mac), self._mac(0, node.mac))
        if isinstance(node, ast.PortMatch):
            return self._port(node)
        if isinstance(node, ast.Broadcast):
            return self._mac(0, b"\xff" * 6)
        if isinstance(node, ast.Multicast):
            return self._multicast(node.layer)
        if isinstance(node, ast.Vlan):
            return self._vlan(node.vid)
        return self._comparison(node)

    # Link and network layer --------------------------------------------------------------

    def _link_type(self, ethertype: int) -> _Test:
        return _Test(self._type_offset, 2, "=", ethertype)

    def _abbrev(self, name: str) -> _Cond:
        if name in _LINK_TYPES:
            return self._link_type(_LINK_TYPES[name])
        if name in _IP_ONLY:
            return self._ip_protocol(_IP_ONLY[name])
        if name == "icmp6":
            return self._ip6_protocol(58)
        return _any(self._ip_protocol(_IP_OR_IP6[name]), self._ip6_protocol(_IP_OR_IP6[name]))

    def _ip_protocol(self, number: int) -> _Cond:
        return _all(self._link_type(ETHERTYPE_IP), _Test(self._payload + 9, 1, "=", number))

    def _ip6_protocol(self, number: int) -> _Cond:
        """IPv6 next header, or the header after one fragment header (as libpcap)."""
        payload = self._payload
        return _all(
            self._link_type(ETHERTYPE_IPV6),
            _any(
                _Test(payload + 6, 1, "=", number),
                _all(
                    _Test(payload + 6, 1, "=", IPPROTO_FRAGMENT),
                    _Test(payload + 40, 1, "=", number),
                ),
            ),
        )

    def _proto_number(self, node: ast.ProtoNumber) -> _Cond:
        if node.layer == "link":
            if node.number > 1500:
                return self._link_type(node.number)
            # An 802.3 length field, then the LLC DSAP (libpcap's gen_ether_linktype).
            return _all(
                _Test(self._type_offset, 2, "<=", 1500),
                _Test(self._type_offset + 2, 1, "=", node.number),
            )
        if node.layer == "ip":
            return self._ip_protocol(node.number)
        if node.layer == "ip6":
            return self._ip6_protocol(node.number)
        return _any(self._ip_protocol(node.number), self._ip6_protocol(node.number))

    def _host(self, node: ast.HostMatch) -> _Cond:
        network = node.network
        if isinstance(network, ipaddress.IPv6Network):
            source = self._address_words(self._payload + 8, network)
            destination = self._address_words(self._payload + 24, network)
            return _all(
                self._link_type(ETHERTYPE_IPV6), _direction(node.direction, source, destination)
            )
        layers = ("ip", "arp", "rarp") if node.layer == "default" else (node.layer,)
        branches = []
        for layer in layers:
            ethertype, source_offset, destination_offset = _IPV4_ADDRESSES[layer]
            source = self._address_words(self._payload + source_offset, network)
            destination = self._address_words(self._payload + destination_offset, network)
            branches.append(
                _all(self._link_type(ethertype), _direction(node.direction, source, destination))
            )
        return branches[0] if len(branches) == 1 else _Any(tuple(branches))

    @staticmethod
    def _address_words(
        offset: int, network: ipaddress.IPv4Network | ipaddress.IPv6Network
    ) -> _Cond:
        address = network.network_address.packed
        mask = network.netmask.packed
        tests: list[_Cond] = []
        for word in range(len(address) // 4):
            word_mask = int.from_bytes(mask[4 * word : 4 * word + 4], "big")
            if word_mask == 0:
                continue
            value = int.from_bytes(address[4 * word : 4 * word + 4], "big")
            tests.append(
                _Test(
                    offset + 4 * word, 4, "=", value, None if word_mask == 0xFFFFFFFF else word_mask
                )
            )
        if not tests:
            return _Always(True)
        return tests[0] if len(tests) == 1 else _All(tuple(tests))

    @staticmethod
    def _mac(offset: int, mac: bytes) -> _Cond:
        return _all(
            _Test(offset + 2, 4, "=", int.from_bytes(mac[2:], "big")),
            _Test(offset, 2, "=", int.from_bytes(mac[:2], "big")),
        )

    def _multicast(self, layer: str) -> _Cond:
        if layer == "ip":
            return _all(self._link_type(ETHERTYPE_IP), _Test(self._payload + 16, 1, ">=", 224))
        if layer == "ip6":
            return _all(self._link_type(ETHERTYPE_IPV6), _Test(self._payload + 24, 1, "=", 255))
        return _Test(0, 1, "!=", 0, mask=1)

    def _vlan(self, vid: int | None) -> _Cond:
        tpid = _Any(tuple(self._link_type(value) for value in VLAN_TPIDS))
        result: _Cond = (
            tpid if vid is None else _all(tpid, _Test(self._payload, 2, "=", vid, 0x0FFF))
        )
        self.vlan_tags += 1  # everything parsed after "vlan" looks one tag further in
        return result

    # Transport layer ---------------------------------------------------------------------

    def _not_a_later_fragment(self) -> _Test:
        return _Test(self._payload + 6, 2, "=", 0, mask=0x1FFF)

    def _port(self, node: ast.PortMatch) -> _Cond:
        protocols = _PORT_PROTOCOLS[node.transport]
        payload = self._payload

        def port_tests(offset: int, ip_header: int | None) -> _Cond:
            if node.low == node.high:
                return _Test(offset, 2, "=", node.low, ip_header=ip_header)
            return _all(
                _Test(offset, 2, ">=", node.low, ip_header=ip_header),
                _Test(offset, 2, "<=", node.high, ip_header=ip_header),
            )

        # One branch per transport protocol, as libpcap generates them (its optimizer
        # then threads jumps between them, and so does ours).
        ip6_ports = _direction(
            node.direction, port_tests(payload + 40, None), port_tests(payload + 42, None)
        )
        ip6 = _all(
            self._link_type(ETHERTYPE_IPV6),
            _Any(tuple(_all(_Test(payload + 6, 1, "=", n), ip6_ports) for n in protocols)),
        )
        ip4_ports = _direction(node.direction, port_tests(0, payload), port_tests(2, payload))
        ip4 = _all(
            self._link_type(ETHERTYPE_IP),
            _Any(
                tuple(
                    _all(_Test(payload + 9, 1, "=", n), self._not_a_later_fragment(), ip4_ports)
                    for n in protocols
                )
            ),
        )
        return _any(ip6, ip4)

    # Arithmetic --------------------------------------------------------------------------

    def _comparison(self, node: ast.Comparison) -> _Cond:
        guards: list[_Cond] = []
        left = self._value(node.left, guards)
        right = self._value(node.right, guards)
        if isinstance(node.left, ast.Constant) and isinstance(node.right, ast.Constant):
            # Two numbers: libpcap's optimizer decides it while compiling, and the tests
            # only the other branch needed go (``ip[1] > 0 or 7 < 256`` matches frames too
            # short for ip[1]). A side that is a constant only once folded (``3 + 4``,
            # ``0 * len``) stays a test there, which keeps the tests before it.
            return _Always(_COMPARE[node.op](node.left.value, node.right.value))
        return _All((*guards, _Relation(node.op, left, right)))

    def _value(self, node: ast.Arith, guards: list[_Cond]) -> _Value:
        if isinstance(node, ast.Constant):
            return _Const(node.value)
        if isinstance(node, ast.PacketLength):
            self.uses_length = True
            return _Length()
        if isinstance(node, ast.Negate):
            operand = self._value(node.operand, guards)
            return _Const(-operand.value & _U32) if isinstance(operand, _Const) else _Neg(operand)
        if isinstance(node, ast.BinaryOp):
            left = self._value(node.left, guards)
            # libpcap's gen_arth keeps the left operand's protocol checks only: the right
            # one's loads still run (and end the filter beyond the frame), whatever the
            # protocol. ``ether[0] + tcp[0] >= 0`` matches frames that are not TCP.
            right = self._value(node.right, [])
            if isinstance(node.right, ast.Constant):  # refused as libpcap refuses them, written out
                if node.op in ("/", "%") and node.right.value == 0:
                    raise XDPFilterError(f"division by zero in filter expression ('{node.op} 0')")
                if node.op in ("<<", ">>") and node.right.value > 31:
                    raise XDPFilterError(f"shift by more than 31 bits ('{node.op} {node.right.value}')")
            if isinstance(right, _Const):
                # A divisor of 0 that only folding shows ends the filter when it runs, as
                # in libpcap's interpreter (its optimizer refuses it where it is reachable).
                divides_by_zero = node.op in ("/", "%") and right.value == 0
                if isinstance(left, _Const) and not divides_by_zero:
                    return _Const(_folded(node.op, left.value, right.value))
                if right.value == 0 and node.op in ("*", "&"):
                    return _Const(0)  # as libpcap's optimizer has it: the left side's loads go
            elif isinstance(left, _Const) and left.value == 0 and node.op in _ZERO_ABSORBS:
                return _Const(0)  # likewise the right side's loads (a divisor of 0 included)
            return _Arith(node.op, left, right)
        return self._fetch(node, guards)

    def _fetch(self, node: ast.Load, guards: list[_Cond]) -> _Value:
        layer = node.layer
        if layer == "link":
            return _Fetch(0, False, self._value(node.index, guards), node.size)
        if layer in _LINK_TYPES:
            index = self._value(node.index, guards)
            guards.append(self._link_type(_LINK_TYPES[layer]))
            return _Fetch(self._payload, False, index, node.size)
        if layer == "icmp6":
            index = self._value(node.index, guards)
            guards.append(self._link_type(ETHERTYPE_IPV6))
            guards.append(_Test(self._payload + 6, 1, "=", 58))
            return _Fetch(self._payload + 40, False, index, node.size)
        assert layer in _TRANSPORT_LAYERS
        # libpcap: "ip", then the index's own guards, then the protocol and "first fragment".
        ip_check = self._link_type(ETHERTYPE_IP)
        inner: list[_Cond] = []
        index = self._value(node.index, inner)
        guards.append(ip_check)
        guards.extend(inner)
        guards.append(self._abbrev(layer))
        guards.append(self._not_a_later_fragment())
        return _Fetch(self._payload, True, index, node.size)


def _immediate_allowed(op: int, value: int) -> bool:
    """Whether eBPF takes ``value`` as this operation's immediate: the verifier refuses a
    constant divisor of 0 and shifts of 32 or more, which the register form handles as
    libpcap does (``FilterFrame.alu_by_register``)."""
    if op in (BPF_DIV, BPF_MOD):
        return value != 0
    return value < 32 if op in (BPF_LSH, BPF_RSH) else True


def _folded(op: str, left: int, right: int) -> int:
    """``left op right`` of two constants on 32 bits, as libpcap's optimizer folds them: a
    shift by 32 or more gives 0 (a divisor of 0 is left to the running filter)."""
    if op in ("<<", ">>"):
        return 0 if right > 31 else (left << right if op == "<<" else left >> right) & _U32
    return _FOLDS[op](left, right) & _U32


def _direction(direction: str, source: _Cond, destination: _Cond) -> _Cond:
    if direction == "src":
        return source
    if direction == "dst":
        return destination
    if direction == "and":
        return _all(source, destination)
    return _any(source, destination)


# --------------------------------------------------------------------------------------
# Flow graph

MATCH = Exit("match")
NO_MATCH = Exit("no match")


def _flow(cond: _Cond, true: Target, false: Target) -> Target:
    """The graph that evaluates ``cond`` left to right and goes to ``true`` or ``false``."""
    if isinstance(cond, _All):
        entry = true
        for part in reversed(cond.parts):
            entry = _flow(part, entry, false)
        return entry
    if isinstance(cond, _Any):
        entry = false
        for part in reversed(cond.parts):
            entry = _flow(part, true, entry)
        return entry
    if isinstance(cond, _Invert):
        return _flow(cond.part, false, true)
    if isinstance(cond, _Always):
        return true if cond.value else false
    if isinstance(cond, _Test):
        return Node(cond, _field_test(cond), true, false)
    if isinstance(cond.right, _Const):  # libpcap knows "len >= 120" once it has tested it
        value = ("value", cond.left)
        return Node(cond, FieldTest(value, value, cond.op, cond.right.value), true, false)
    return Node(cond, Opaque(), true, false)


def _field_test(test: _Test) -> FieldTest:
    field = (test.offset, test.size, test.mask, test.ip_header)
    # libpcap tests "x & mask == 0" with jset, which leaves x itself in its accumulator.
    jset = test.mask is not None and test.value == 0 and test.op in ("=", "!=")
    value_key = (test.offset, test.size, None if jset else test.mask, test.ip_header)
    return FieldTest(field, value_key, test.op, test.value)


# --------------------------------------------------------------------------------------
# Emission

_JUMPS = {"=": BPF_JEQ, "!=": BPF_JNE, ">": BPF_JGT, ">=": BPF_JGE, "<": BPF_JLT, "<=": BPF_JLE}
_ALU = {
    "+": BPF_ADD,
    "-": BPF_SUB,
    "*": BPF_MUL,
    "/": BPF_DIV,
    "%": BPF_MOD,
    "&": BPF_AND,
    "|": BPF_OR,
    "^": BPF_XOR,
    "<<": BPF_LSH,
    ">>": BPF_RSH,
}
_FOLDS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv,
    "%": operator.mod, "&": operator.and_, "|": operator.or_, "^": operator.xor,
}
_U32 = 0xFFFFFFFF
#: ``0 op x`` is 0 whatever x is: libpcap's optimizer drops x's loads.
_ZERO_ABSORBS = frozenset(("*", "/", "%", "&", "<<", ">>"))
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "=": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
#: Registers holding intermediate values, in order of nesting depth.
_VALUE_REGISTERS = (Reg.R3, Reg.R4, Reg.R5, Reg.R0)
#: "a op b" is "b op' a".
_MIRRORED = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _registers_needed(value: _Value) -> int:
    """How many value registers computing ``value`` takes (its Sethi-Ullman number)."""
    if isinstance(value, (_Const, _Length)):
        return 1
    if isinstance(value, _Neg):
        return _registers_needed(value.operand)
    if isinstance(value, _Fetch):
        if isinstance(value.index, _Const) and not value.transport:
            return 1
        index = _registers_needed(value.index)
        return max(index, 2) if value.transport else index
    left = _registers_needed(value.left)
    if isinstance(value.right, _Const):
        return left
    right = _registers_needed(value.right)
    return max(left, right) if left != right else left + 1


class _Emitter:
    def __init__(self, frame: FilterFrame) -> None:
        self._frame = frame
        self._asm: Assembler = frame.asm

    def program(self, entry: Target) -> None:
        """Emit the flow graph from ``entry``; every test leaves through a jump."""
        order = reachable(entry)
        labels = {id(node): Label("test") for node in order}

        def label(target: Target) -> Label:
            if target is MATCH:
                return self._frame.match
            if target is NO_MATCH:
                return self._frame.no_match
            return labels[id(target)]

        if isinstance(entry, Exit):  # the whole filter is a constant
            self._asm.jump(label(entry))
        loaded = _loaded_on_entry(order)
        for node in order:
            self._asm.place(labels[id(node)])
            if isinstance(node.payload, _Test):
                self._test(node.payload, label(node.true), label(node.false),
                           loaded.get(id(node)) == _loaded_value(node.payload))
            else:
                assert isinstance(node.payload, _Relation)
                self._relation(node.payload, label(node.true), label(node.false))

    def _test(self, test: _Test, true: Label, false: Label, loaded: bool) -> None:
        """Compare the test's field; ``loaded``: every way in left it in the value register."""
        asm = self._asm
        value = Reg.R3
        if not loaded:
            if test.ip_header is not None:
                self._ipv4_header_length(value, test.ip_header)
                self._frame.load_variable_offset(value, value, test.ip_header + test.offset, test.size)
            else:
                self._frame.load_constant_offset(value, test.offset, test.size)
            if test.mask is not None:
                asm.alu32_imm(BPF_AND, value, test.mask)
        asm.jump_imm(_JUMPS[test.op], value, test.value, true)
        asm.jump(false)

    def _ipv4_header_length(self, dst: Reg, payload: int, keep: tuple[Reg, ...] = ()) -> None:
        """``dst`` = 4 * (IHL of the IPv4 header at ``payload``); ``keep``: see ``_fetch``."""
        self._frame.load_constant_offset(dst, payload, 1, keep)
        self._asm.alu32_imm(BPF_AND, dst, 0x0F)
        self._asm.alu32_imm(BPF_LSH, dst, 2)

    def _relation(self, relation: _Relation, true: Label, false: Label) -> None:
        asm = self._asm
        if isinstance(relation.right, _Const):
            left = self._value(relation.left, 0)
            asm.jump_imm(_JUMPS[relation.op], left, relation.right.value, true)
        elif _registers_needed(relation.right) > _registers_needed(relation.left):
            right = self._value(relation.right, 0)  # the deeper side first: fewer registers
            left = self._value(relation.left, 1)
            asm.jump_reg(_JUMPS[_MIRRORED[relation.op]], right, left, true)
        else:
            left = self._value(relation.left, 0)
            right = self._value(relation.right, 1)
            asm.jump_reg(_JUMPS[relation.op], left, right, true)
        asm.jump(false)

    def _value(self, value: _Value, depth: int) -> Reg:
        """Compute ``value`` into the register for ``depth``; return that register."""
        if depth >= len(_VALUE_REGISTERS):
            raise XDPFilterError("arithmetic in the filter expression is nested too deeply")
        asm = self._asm
        dst = _VALUE_REGISTERS[depth]
        if isinstance(value, _Const):
            asm.mov32_imm(dst, value.value)
        elif isinstance(value, _Length):
            asm.mov64_reg(dst, Reg.R8)
            asm.alu32_imm(BPF_ADD, dst, 0)  # keep the low 32 bits, zero-extended
        elif isinstance(value, _Neg):
            self._value(value.operand, depth)
            asm.neg32(dst)
        elif isinstance(value, _Arith):
            op = _ALU[value.op]
            if isinstance(value.right, _Const) and _immediate_allowed(op, value.right.value):
                self._value(value.left, depth)
                asm.alu32_imm(op, dst, value.right.value)
                return dst
            # The deeper side first, so nesting needs fewer registers (Sethi-Ullman); all
            # loads run either way, and any that fails ends the filter, so order is free.
            right_first = _registers_needed(value.right) > _registers_needed(value.left)
            if right_first:
                divisor = self._value(value.right, depth)
                result = self._value(value.left, depth + 1)
            else:
                result = self._value(value.left, depth)
                divisor = self._value(value.right, depth + 1)
            self._frame.alu_by_register(op, result, divisor)
            if right_first:
                asm.mov64_reg(dst, result)
        else:
            self._fetch(value, dst, depth)
        return dst

    def _fetch(self, fetch: _Fetch, dst: Reg, depth: int) -> None:
        """Load ``fetch`` into ``dst``, the register of ``depth``; those of lower depths hold
        values still needed (the frags form keeps them across its helper call)."""
        asm = self._asm
        keep = _VALUE_REGISTERS[:depth]
        if isinstance(fetch.index, _Const):
            # libpcap's optimizer folds a constant index into the load's offset, on 32 bits:
            # ``ip[4294967290]`` reads byte 8, and ``udp[-32]`` lies beyond any frame.
            offset = (fetch.base + fetch.index.value) & _U32
            if not fetch.transport:
                self._frame.load_constant_offset(dst, offset, fetch.size, keep)
                return
            self._ipv4_header_length(dst, fetch.base, keep)
            self._frame.load_variable_offset(dst, dst, offset, fetch.size, keep)
            return
        index = self._value(fetch.index, depth)
        if fetch.transport:
            if depth + 1 >= len(_VALUE_REGISTERS):
                raise XDPFilterError("arithmetic in the filter expression is nested too deeply")
            header_length = _VALUE_REGISTERS[depth + 1]
            self._ipv4_header_length(header_length, fetch.base, _VALUE_REGISTERS[: depth + 1])
            asm.alu32_reg(BPF_ADD, index, header_length)
        self._frame.load_variable_offset(dst, index, fetch.base, fetch.size, keep)


#: What a test leaves in the value register (r3): its field, loaded and masked.
_LoadedValue = tuple[int, int, Union[int, None], Union[int, None]]


def _loaded_value(test: _Test) -> _LoadedValue:
    return (test.offset, test.size, test.mask, test.ip_header)


def _loaded_on_entry(order: list[Node]) -> dict[int, _LoadedValue | None]:
    """For each node: the field every jump into it leaves in the value register, or None.

    A chain comparing one field with many values ("host A or host B": the source with
    A, then with B, after the or pull-up) then loads it once, as libpcap's program keeps
    it in its accumulator: the same loads succeed or fail, only the repeats go.
    """
    loaded: dict[int, _LoadedValue | None] = {}
    for node in order:
        leaves = _loaded_value(node.payload) if isinstance(node.payload, _Test) else None
        for successor in {id(node.true): node.true, id(node.false): node.false}.values():
            if isinstance(successor, Node):
                key = id(successor)
                loaded[key] = leaves if key not in loaded or loaded[key] == leaves else None
    return loaded


def generate(expression: ast.Expr) -> tuple[bytes, bytes]:
    """The eBPF prologue (see ``_filter_frame``) for a parsed expression, and its form for
    frags-aware programs, whose frame length comes from ``bpf_xdp_get_buff_len`` (the same
    bytes when the filter does not read the length). One flow graph serves both."""
    lowering = _Lowering()
    cond = lowering.lower(expression)
    entry = optimize(_flow(cond, MATCH, NO_MATCH))
    return _emit(entry, lowering.uses_length, frags=False), _emit(entry, lowering.uses_length, frags=True)


def _emit(entry: Target, needs_length: bool, frags: bool) -> bytes:
    asm = Assembler()
    frame = FilterFrame(asm, frags)
    frame.enter(needs_length=needs_length)
    _Emitter(frame).program(entry)
    frame.finish()
    return asm.assemble()
