"""rtnetlink: read an interface's link attributes and attach or detach XDP programs.

The module has two halves, as in h11: a pure core that encodes requests and decodes
replies from plain ``bytes`` (tested without root), and two small functions,
:func:`get_link` and :func:`set_xdp_fd`, that do one request/ACK exchange each over a
``socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)``. Constants and structures keep their
names from ``linux/netlink.h``, ``linux/rtnetlink.h`` and ``linux/if_link.h`` so that
grepping the kernel headers finds them here.

Every message and attribute is padded to 4 bytes (``NLMSG_ALIGNTO``/``RTA_ALIGNTO``).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "IFLA_ADDRESS",
    "IFLA_EXT_MASK",
    "IFLA_IFNAME",
    "IFLA_MTU",
    "IFLA_NUM_RX_QUEUES",
    "IFLA_NUM_TX_QUEUES",
    "IFLA_XDP",
    "IFLA_XDP_ATTACHED",
    "IFLA_XDP_DRV_PROG_ID",
    "IFLA_XDP_EXPECTED_FD",
    "IFLA_XDP_FD",
    "IFLA_XDP_FLAGS",
    "IFLA_XDP_HW_PROG_ID",
    "IFLA_XDP_PROG_ID",
    "IFLA_XDP_SKB_PROG_ID",
    "LinkInfo",
    "NLA_F_NESTED",
    "NLMSGERR_ATTR_MSG",
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLM_F_ACK",
    "NLM_F_ACK_TLVS",
    "NLM_F_CAPPED",
    "NLM_F_REQUEST",
    "NetlinkAck",
    "NetlinkMessage",
    "RTEXT_FILTER_SKIP_STATS",
    "RTM_GETLINK",
    "RTM_NEWLINK",
    "RTM_SETLINK",
    "XDP_ATTACHED_DRV",
    "XDP_ATTACHED_HW",
    "XDP_ATTACHED_MULTI",
    "XDP_ATTACHED_NONE",
    "XDP_ATTACHED_SKB",
    "decode_link",
    "decode_messages",
    "decode_nlmsgerr",
    "decode_rtattrs",
    "encode_getlink_request",
    "encode_nlmsg",
    "encode_rtattr",
    "encode_nested_rtattr",
    "encode_setlink_xdp_request",
    "get_link",
    "nlmsg_align",
    "set_xdp_fd",
]

# linux/netlink.h
NLMSG_ALIGNTO = 4
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request's payload was left out
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended-ack attributes follow
NLA_F_NESTED = 1 << 15
NLA_F_NET_BYTEORDER = 1 << 14
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270  # linux/socket.h; Python's socket module lacks it
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_SETLINK = 19
RTEXT_FILTER_SKIP_STATS = 1 << 3

# linux/if_link.h
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_EXT_MASK = 29
IFLA_NUM_TX_QUEUES = 31
IFLA_NUM_RX_QUEUES = 32
IFLA_XDP = 43

IFLA_XDP_FD = 1
IFLA_XDP_ATTACHED = 2
IFLA_XDP_FLAGS = 3
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
IFLA_XDP_HW_PROG_ID = 7
IFLA_XDP_EXPECTED_FD = 8

XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2
XDP_ATTACHED_HW = 3
XDP_ATTACHED_MULTI = 4

#: struct nlmsghdr: nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid.
NLMSGHDR = struct.Struct("=IHHII")
#: struct ifinfomsg: ifi_family, __ifi_pad, ifi_type, ifi_index, ifi_flags, ifi_change.
IFINFOMSG = struct.Struct("=BxHiII")
#: struct rtattr: rta_len, rta_type (struct nlattr has the same layout).
RTATTR = struct.Struct("=HH")
#: struct nlmsgerr without its embedded nlmsghdr: the (negative errno) error.
NLMSGERR_ERROR = struct.Struct("=i")

_U8 = struct.Struct("=B")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")

#: Large enough for one RTM_NEWLINK reply without statistics; a longer datagram is an error.
_RECV_BUFFER_SIZE = 1 << 16
#: The kernel answers rtnetlink requests at once; waiting longer means something is wrong.
_REPLY_TIMEOUT_S = 10.0


def nlmsg_align(length: int) -> int:
    """Round up to the 4-byte boundary every netlink message and attribute starts on."""
    return (length + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1)


def _padding(length: int) -> bytes:
    return bytes(nlmsg_align(length) - length)


class NetlinkMessage(NamedTuple):
    """One message cut out of a netlink datagram; ``payload`` follows the nlmsghdr."""

    type: int
    flags: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class NetlinkAck:
    """An ``NLMSG_ERROR`` reply: ``error`` is 0 for an ACK or a negative errno, as the kernel
    sends it; ``message`` is the extended-ack text (``NLMSGERR_ATTR_MSG``), or ``""``."""

    __slots__ = ("error", "message")

    error: int
    message: str


@dataclass(frozen=True)
class LinkInfo:
    """What ``RTM_GETLINK`` says about one interface.

    ``xdp_attached`` is ``IFLA_XDP_ATTACHED`` (``XDP_ATTACHED_NONE`` ... ``XDP_ATTACHED_MULTI``).
    ``xdp_prog_id`` is the attached program's id; when programs are attached in several modes
    (``XDP_ATTACHED_MULTI``) it is the native-mode one, which sees frames first. Ids are 0
    when nothing is attached.
    """

    __slots__ = (
        "ifindex",
        "ifname",
        "mtu",
        "address",
        "num_rx_queues",
        "num_tx_queues",
        "xdp_attached",
        "xdp_prog_id",
        "xdp_drv_prog_id",
        "xdp_skb_prog_id",
    )

    ifindex: int
    ifname: str
    mtu: int
    address: bytes
    num_rx_queues: int
    num_tx_queues: int
    xdp_attached: int
    xdp_prog_id: int
    xdp_drv_prog_id: int
    xdp_skb_prog_id: int


# --- encoding -------------------------------------------------------------------------


def encode_rtattr(rta_type: int, payload: bytes) -> bytes:
    """One attribute: rtattr header, payload, zero padding to 4 bytes."""
    rta_len = RTATTR.size + len(payload)
    if rta_len > 0xFFFF:
        raise ValueError(f"netlink attribute {rta_type} has {len(payload)} bytes; 65531 fit")
    return RTATTR.pack(rta_len, rta_type) + payload + _padding(rta_len)


def encode_nested_rtattr(rta_type: int, children: Iterable[bytes]) -> bytes:
    """An attribute whose payload is other (already encoded) attributes; sets ``NLA_F_NESTED``."""
    return encode_rtattr(rta_type | NLA_F_NESTED, b"".join(children))


def encode_nlmsg(nlmsg_type: int, nlmsg_flags: int, nlmsg_seq: int, payload: bytes) -> bytes:
    """One message: nlmsghdr (port id 0: the kernel fills in ours) and padded payload."""
    nlmsg_len = NLMSGHDR.size + len(payload)
    header = NLMSGHDR.pack(nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, 0)
    return header + payload + _padding(nlmsg_len)


def _encode_ifinfomsg(ifindex: int) -> bytes:
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)


def encode_getlink_request(ifindex: int, seq: int) -> bytes:
    """``RTM_GETLINK`` for one interface, asking for an ACK and leaving out statistics."""
    _check_ifindex(ifindex)
    payload = _encode_ifinfomsg(ifindex) + encode_rtattr(
        IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS)
    )
    return encode_nlmsg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, payload)


def encode_setlink_xdp_request(
    ifindex: int, seq: int, fd: int, flags: int, expected_fd: int | None = None
) -> bytes:
    """``RTM_SETLINK`` with ``IFLA_XDP {FD, FLAGS[, EXPECTED_FD]}``; fd -1 detaches."""
    _check_ifindex(ifindex)
    _check_fd(fd, "fd")
    if expected_fd is not None:
        _check_fd(expected_fd, "expected_fd")
    if isinstance(flags, bool) or not isinstance(flags, int):
        raise TypeError(f"XDP flags must be an int, not {type(flags).__name__}")
    if not 0 <= flags <= 0xFFFFFFFF:
        raise ValueError(f"XDP flags must be an unsigned 32-bit int, not {flags}")
    xdp_attrs = [
        encode_rtattr(IFLA_XDP_FD, _S32.pack(fd)),
        encode_rtattr(IFLA_XDP_FLAGS, _U32.pack(flags)),
    ]
    if expected_fd is not None:
        xdp_attrs.append(encode_rtattr(IFLA_XDP_EXPECTED_FD, _S32.pack(expected_fd)))
    payload = _encode_ifinfomsg(ifindex) + encode_nested_rtattr(IFLA_XDP, xdp_attrs)
    return encode_nlmsg(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, payload)


def _check_ifindex(ifindex: int) -> None:
    if isinstance(ifindex, bool) or not isinstance(ifindex, int):
        raise TypeError(f"ifindex must be an int, not {type(ifindex).__name__}")
    if not 0 < ifindex <= 0x7FFFFFFF:
        raise ValueError(f"ifindex must be a positive 32-bit int, not {ifindex}")


def _check_fd(fd: int, name: str) -> None:
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"{name} must be an int file descriptor, not {type(fd).__name__}")
    if not -1 <= fd <= 0x7FFFFFFF:
        raise ValueError(f"{name} must be a file descriptor or -1, not {fd}")


# --- decoding -------------------------------------------------------------------------


def decode_messages(buffer: bytes) -> list[NetlinkMessage]:
    """Cut a received datagram into messages; a truncated one raises ``ValueError``."""
    messages = []
    offset = 0
    while offset < len(buffer):
        if len(buffer) - offset < NLMSGHDR.size:
            raise ValueError(
                f"truncated netlink message: {len(buffer) - offset} bytes left at offset {offset}, "
                f"a header needs {NLMSGHDR.size}"
            )
        nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, _pid = NLMSGHDR.unpack_from(buffer, offset)
        if nlmsg_len < NLMSGHDR.size or offset + nlmsg_len > len(buffer):
            raise ValueError(
                f"bad netlink message length {nlmsg_len} at offset {offset} "
                f"of a {len(buffer)}-byte buffer"
            )
        payload = bytes(buffer[offset + NLMSGHDR.size : offset + nlmsg_len])
        messages.append(NetlinkMessage(nlmsg_type, nlmsg_flags, nlmsg_seq, payload))
        offset += nlmsg_align(nlmsg_len)
    return messages


def decode_rtattrs(data: bytes) -> dict[int, bytes]:
    """Map attribute type (flags masked off) to payload, one level deep; decode a nested
    attribute by calling this again on its payload. A repeated type keeps the last value,
    as the kernel's ``nla_parse`` does."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if len(data) - offset < RTATTR.size:
            raise ValueError(
                f"truncated netlink attribute: {len(data) - offset} bytes left at offset {offset}"
            )
        rta_len, rta_type = RTATTR.unpack_from(data, offset)
        if rta_len < RTATTR.size or offset + rta_len > len(data):
            raise ValueError(
                f"bad netlink attribute length {rta_len} (type {rta_type & NLA_TYPE_MASK}) "
                f"at offset {offset} of {len(data)} bytes"
            )
        attrs[rta_type & NLA_TYPE_MASK] = bytes(data[offset + RTATTR.size : offset + rta_len])
        offset += nlmsg_align(rta_len)
    return attrs


def decode_nlmsgerr(nlmsg_flags: int, payload: bytes) -> NetlinkAck:
    """Decode an ``NLMSG_ERROR`` payload: error code, echoed request, extended-ack TLVs."""
    header_size = NLMSGERR_ERROR.size + NLMSGHDR.size
    if len(payload) < header_size:
        raise ValueError(f"truncated NLMSG_ERROR: {len(payload)} bytes, {header_size} needed")
    (error,) = NLMSGERR_ERROR.unpack_from(payload)
    if not nlmsg_flags & NLM_F_ACK_TLVS:
        return NetlinkAck(error, "")
    tlv_offset = header_size
    if not nlmsg_flags & NLM_F_CAPPED:
        (echoed_len,) = _U32.unpack_from(payload, NLMSGERR_ERROR.size)
        tlv_offset = NLMSGERR_ERROR.size + nlmsg_align(echoed_len)
        if echoed_len < NLMSGHDR.size or tlv_offset > len(payload):
            raise ValueError(f"NLMSG_ERROR echoes a request of bad length {echoed_len}")
    text = decode_rtattrs(payload[tlv_offset:]).get(NLMSGERR_ATTR_MSG, b"")
    return NetlinkAck(error, text.split(b"\0", 1)[0].decode("utf-8", "replace"))


def _decode_u32(attrs: dict[int, bytes], attr_type: int, attr_name: str) -> int:
    value = attrs.get(attr_type)
    if value is None:
        return 0
    if len(value) != _U32.size:
        raise ValueError(f"{attr_name} has {len(value)} bytes, expected {_U32.size}")
    result: int = _U32.unpack(value)[0]
    return result


def decode_link(payload: bytes) -> LinkInfo:
    """Decode an ``RTM_NEWLINK`` payload (ifinfomsg and IFLA_* attributes, IFLA_XDP nested)."""
    if len(payload) < IFINFOMSG.size:
        raise ValueError(f"truncated RTM_NEWLINK: {len(payload)} bytes, {IFINFOMSG.size} needed")
    _family, _type, ifindex, _flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = decode_rtattrs(payload[IFINFOMSG.size :])
    if IFLA_IFNAME not in attrs:
        raise ValueError(f"RTM_NEWLINK for ifindex {ifindex} has no IFLA_IFNAME")
    xdp = decode_rtattrs(attrs.get(IFLA_XDP, b""))
    attached = xdp.get(IFLA_XDP_ATTACHED, _U8.pack(XDP_ATTACHED_NONE))
    if len(attached) != _U8.size:
        raise ValueError(f"IFLA_XDP_ATTACHED has {len(attached)} bytes, expected 1")
    drv_prog_id = _decode_u32(xdp, IFLA_XDP_DRV_PROG_ID, "IFLA_XDP_DRV_PROG_ID")
    skb_prog_id = _decode_u32(xdp, IFLA_XDP_SKB_PROG_ID, "IFLA_XDP_SKB_PROG_ID")
    hw_prog_id = _decode_u32(xdp, IFLA_XDP_HW_PROG_ID, "IFLA_XDP_HW_PROG_ID")
    # The kernel omits IFLA_XDP_PROG_ID when several modes are in use (XDP_ATTACHED_MULTI).
    single_prog_id = _decode_u32(xdp, IFLA_XDP_PROG_ID, "IFLA_XDP_PROG_ID")
    prog_id = single_prog_id or drv_prog_id or skb_prog_id or hw_prog_id
    return LinkInfo(
        ifindex=ifindex,
        ifname=attrs[IFLA_IFNAME].split(b"\0", 1)[0].decode("utf-8", "replace"),
        mtu=_decode_u32(attrs, IFLA_MTU, "IFLA_MTU"),
        address=attrs.get(IFLA_ADDRESS, b""),
        num_rx_queues=_decode_u32(attrs, IFLA_NUM_RX_QUEUES, "IFLA_NUM_RX_QUEUES"),
        num_tx_queues=_decode_u32(attrs, IFLA_NUM_TX_QUEUES, "IFLA_NUM_TX_QUEUES"),
        xdp_attached=_U8.unpack(attached)[0],
        xdp_prog_id=prog_id,
        xdp_drv_prog_id=drv_prog_id,
        xdp_skb_prog_id=skb_prog_id,
    )


# --- I/O ------------------------------------------------------------------------------

_sequence_numbers = itertools.count(1)


def _next_seq() -> int:
    return next(_sequence_numbers) & 0xFFFFFFFF


def _describe_interface(ifindex: int) -> str:
    """Name the interface for an error message, without failing if it is gone."""
    try:
        return f"interface {socket.if_indextoname(ifindex)!r} (ifindex {ifindex})"
    except OSError:
        return f"ifindex {ifindex}"


def _netlink_error(err: int, what: str, kernel_message: str) -> OSError:
    text = f"{what}: {os.strerror(err)}"
    if kernel_message:
        text += f" (kernel: {kernel_message})"
    return OSError(err, text)


def _transact(request: bytes, seq: int, describe: Callable[[], str]) -> list[NetlinkMessage]:
    """Send one request, return the replies that precede its ACK; raise on an error ACK.

    ``describe()`` names the request for error messages; it is called only on failure.
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.settimeout(_REPLY_TIMEOUT_S)
        sock.bind((0, 0))
        sock.sendto(request, (0, 0))
        replies: list[NetlinkMessage] = []
        while True:
            try:
                datagram, _ancdata, msg_flags, _address = sock.recvmsg(_RECV_BUFFER_SIZE)
            except socket.timeout:  # TimeoutError only from Python 3.10
                raise OSError(
                    errno.ETIMEDOUT, f"{describe()}: no netlink answer in {_REPLY_TIMEOUT_S} s"
                ) from None
            if msg_flags & socket.MSG_TRUNC:
                raise OSError(
                    errno.EMSGSIZE,
                    f"{describe()}: netlink reply longer than {_RECV_BUFFER_SIZE} bytes",
                )
            for message in decode_messages(datagram):
                if message.seq != seq:
                    raise OSError(
                        errno.EPROTO,
                        f"{describe()}: netlink reply has sequence number {message.seq}, "
                        f"expected {seq}",
                    )
                if message.type == NLMSG_ERROR:
                    ack = decode_nlmsgerr(message.flags, message.payload)
                    if ack.error:
                        raise _netlink_error(-ack.error, describe(), ack.message)
                    return replies
                replies.append(message)


def get_link(ifindex: int) -> LinkInfo:
    """Ask the kernel (not /sys, which lies inside ``unshare -n``) about one interface."""
    seq = _next_seq()
    request = encode_getlink_request(ifindex, seq)

    def describe() -> str:
        return f"RTM_GETLINK for {_describe_interface(ifindex)}"

    replies = _transact(request, seq, describe)
    links = [decode_link(reply.payload) for reply in replies if reply.type == RTM_NEWLINK]
    if len(links) != 1:
        raise OSError(errno.EPROTO, f"{describe()}: expected one RTM_NEWLINK, got {len(links)}")
    return links[0]


def set_xdp_fd(ifindex: int, fd: int, flags: int, expected_fd: int | None = None) -> None:
    """Attach the XDP program ``fd`` through netlink, or detach with fd -1.

    ``flags`` are ``XDP_FLAGS_*``; ``expected_fd`` (with ``XDP_FLAGS_REPLACE``) makes the
    kernel replace only that program. Raises ``OSError`` with the kernel's explanation.
    """
    seq = _next_seq()
    request = encode_setlink_xdp_request(ifindex, seq, fd, flags, expected_fd)
    action = "detach XDP program from" if fd == -1 else f"attach XDP program fd {fd} to"
    _transact(request, seq, lambda: f"RTM_SETLINK: {action} {_describe_interface(ifindex)}")
