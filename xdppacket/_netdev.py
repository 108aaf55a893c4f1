"""What XDP an interface's driver supports, from the ``netdev`` generic netlink family.

Linux 6.3 and later report each device's ``xdp-features`` (native XDP, redirect target,
zero-copy AF_XDP, multi-buffer) through the generic netlink family ``netdev``
(``Documentation/netlink/specs/netdev.yaml``). An older kernel has no such family:
:func:`xdp_features` then returns ``None`` and callers say the support is unknown.

As in ``_netlink``, a pure core encodes and decodes bytes; one function does the I/O.
Constants keep their names from ``linux/genetlink.h`` and ``linux/netdev.h``.
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from dataclasses import dataclass

from ._netlink import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    decode_messages,
    decode_nlmsgerr,
    decode_rtattrs,
    encode_nlmsg,
    encode_rtattr,
)

__all__ = [
    "NETDEV_XDP_ACT_NAMES",
    "XdpFeatures",
    "decode_dev",
    "decode_family_id",
    "encode_dev_get",
    "encode_get_family",
    "xdp_features",
]

NETLINK_GENERIC = 16
# linux/genetlink.h
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
#: struct genlmsghdr: cmd, version, reserved.
GENLMSGHDR = struct.Struct("=BBH")
# linux/netdev.h
NETDEV_FAMILY_NAME = b"netdev"
NETDEV_CMD_DEV_GET = 1
NETDEV_A_DEV_IFINDEX = 1
NETDEV_A_DEV_XDP_FEATURES = 3
NETDEV_A_DEV_XDP_ZC_MAX_SEGS = 4
NETDEV_XDP_ACT_BASIC = 1 << 0
NETDEV_XDP_ACT_REDIRECT = 1 << 1
NETDEV_XDP_ACT_NDO_XMIT = 1 << 2
NETDEV_XDP_ACT_XSK_ZEROCOPY = 1 << 3
NETDEV_XDP_ACT_HW_OFFLOAD = 1 << 4
NETDEV_XDP_ACT_RX_SG = 1 << 5
NETDEV_XDP_ACT_NDO_XMIT_SG = 1 << 6
#: The names ``ip``/``ynl`` print for each feature bit, in bit order.
NETDEV_XDP_ACT_NAMES = {
    NETDEV_XDP_ACT_BASIC: "basic",
    NETDEV_XDP_ACT_REDIRECT: "redirect",
    NETDEV_XDP_ACT_NDO_XMIT: "ndo-xmit",
    NETDEV_XDP_ACT_XSK_ZEROCOPY: "xsk-zerocopy",
    NETDEV_XDP_ACT_HW_OFFLOAD: "hw-offload",
    NETDEV_XDP_ACT_RX_SG: "rx-sg",
    NETDEV_XDP_ACT_NDO_XMIT_SG: "ndo-xmit-sg",
}

_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_RECV_BUFFER_SIZE = 1 << 16
_REPLY_TIMEOUT_S = 10.0
_sequence_numbers = itertools.count(1)


@dataclass(frozen=True)
class XdpFeatures:
    """The driver's XDP feature bits (``NETDEV_XDP_ACT_*``) and zero-copy segment limit."""

    __slots__ = ("flags", "zc_max_segs")

    flags: int
    zc_max_segs: int

    @property
    def native(self) -> bool:
        """The driver runs XDP programs itself (``XDP_MODE_DRV`` works)."""
        return bool(self.flags & NETDEV_XDP_ACT_BASIC)

    @property
    def zero_copy(self) -> bool:
        """AF_XDP sockets can bind in zero-copy mode."""
        return bool(self.flags & NETDEV_XDP_ACT_XSK_ZEROCOPY)

    @property
    def multi_buffer(self) -> bool:
        """Native XDP takes frames larger than one page (``OptMultiBuffer``)."""
        return bool(self.flags & NETDEV_XDP_ACT_RX_SG)

    @property
    def names(self) -> list[str]:
        return [name for bit, name in NETDEV_XDP_ACT_NAMES.items() if self.flags & bit]


def _genl_request(family_id: int, cmd: int, seq: int, attrs: bytes) -> bytes:
    payload = GENLMSGHDR.pack(cmd, 1, 0) + attrs
    return encode_nlmsg(family_id, NLM_F_REQUEST | NLM_F_ACK, seq, payload)


def encode_get_family(name: bytes, seq: int) -> bytes:
    """``CTRL_CMD_GETFAMILY`` for the family ``name`` (its id is assigned at boot)."""
    return _genl_request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, seq,
                         encode_rtattr(CTRL_ATTR_FAMILY_NAME, name + b"\0"))


def encode_dev_get(family_id: int, ifindex: int, seq: int) -> bytes:
    """``NETDEV_CMD_DEV_GET`` for one interface."""
    return _genl_request(family_id, NETDEV_CMD_DEV_GET, seq,
                         encode_rtattr(NETDEV_A_DEV_IFINDEX, _U32.pack(ifindex)))


def decode_family_id(payload: bytes) -> int:
    """The family id in a ``CTRL_CMD_NEWFAMILY`` reply payload (after the genlmsghdr)."""
    attrs = decode_rtattrs(payload[GENLMSGHDR.size :])
    if CTRL_ATTR_FAMILY_ID not in attrs:
        raise ValueError("generic netlink family reply has no CTRL_ATTR_FAMILY_ID")
    return int(_U16.unpack(attrs[CTRL_ATTR_FAMILY_ID][:2])[0])


def decode_dev(payload: bytes) -> XdpFeatures:
    """The XDP features in a ``NETDEV_CMD_DEV_GET`` reply payload."""
    attrs = decode_rtattrs(payload[GENLMSGHDR.size :])
    flags = attrs.get(NETDEV_A_DEV_XDP_FEATURES, bytes(8))
    segs = attrs.get(NETDEV_A_DEV_XDP_ZC_MAX_SEGS, bytes(4))
    return XdpFeatures(flags=int(_U64.unpack(flags)[0]), zc_max_segs=int(_U32.unpack(segs)[0]))


def _transact(request: bytes, seq: int, what: str) -> list[bytes]:
    """Send one generic netlink request; return the reply payloads before its ACK."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as sock:
        sock.settimeout(_REPLY_TIMEOUT_S)
        sock.bind((0, 0))
        sock.sendto(request, (0, 0))
        replies: list[bytes] = []
        while True:
            try:
                datagram = sock.recv(_RECV_BUFFER_SIZE)
            except socket.timeout:
                raise OSError(errno.ETIMEDOUT, f"{what}: no netlink answer") from None
            for message in decode_messages(datagram):
                if message.seq != seq:
                    continue
                if message.type == NLMSG_ERROR:
                    ack = decode_nlmsgerr(message.flags, message.payload)
                    if ack.error:
                        detail = f" (kernel: {ack.message})" if ack.message else ""
                        raise OSError(-ack.error, f"{what}: {errno.errorcode.get(-ack.error)}{detail}")
                    return replies
                replies.append(message.payload)


def xdp_features(ifindex: int) -> XdpFeatures | None:
    """The XDP features of interface ``ifindex``; ``None`` on a kernel without them (< 6.3)."""
    seq = next(_sequence_numbers) & 0xFFFFFFFF
    try:
        replies = _transact(encode_get_family(NETDEV_FAMILY_NAME, seq), seq,
                            "generic netlink: resolving family 'netdev'")
    except FileNotFoundError:  # ENOENT: no such family on this kernel
        return None
    family_id = decode_family_id(replies[0])
    seq = next(_sequence_numbers) & 0xFFFFFFFF
    replies = _transact(encode_dev_get(family_id, ifindex, seq), seq,
                        f"netdev: NETDEV_CMD_DEV_GET for ifindex {ifindex}")
    return decode_dev(replies[0])
