"""rtnetlink encoding and decoding against hand-written bytes; needs no root.

Expected bytes are written out field by field (little-endian, as on x86-64) so that a
mistake in the encoder cannot hide behind the same mistake in the decoder.
"""

import errno
import struct
import sys

import pytest

from xdppacket import _netlink as nl

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="expected bytes are little-endian"
)


def test_struct_sizes_match_the_kernel_headers():
    assert nl.NLMSGHDR.size == 16  # struct nlmsghdr
    assert nl.IFINFOMSG.size == 16  # struct ifinfomsg
    assert nl.RTATTR.size == 4  # struct rtattr / struct nlattr
    assert nl.NLMSGERR_ERROR.size + nl.NLMSGHDR.size == 20  # struct nlmsgerr


def test_constants_match_the_kernel_headers():
    assert (nl.RTM_NEWLINK, nl.RTM_GETLINK, nl.RTM_SETLINK) == (16, 18, 19)
    assert (nl.IFLA_NUM_TX_QUEUES, nl.IFLA_NUM_RX_QUEUES, nl.IFLA_XDP) == (31, 32, 43)
    assert (nl.IFLA_XDP_FD, nl.IFLA_XDP_FLAGS, nl.IFLA_XDP_EXPECTED_FD) == (1, 3, 8)
    assert (nl.NLM_F_CAPPED, nl.NLM_F_ACK_TLVS, nl.NLMSGERR_ATTR_MSG) == (0x100, 0x200, 1)


@pytest.mark.parametrize(("length", "aligned"), [(0, 0), (1, 4), (3, 4), (4, 4), (5, 8), (43, 44)])
def test_nlmsg_align_rounds_up_to_four(length, aligned):
    assert nl.nlmsg_align(length) == aligned


def test_encode_rtattr_pads_to_four_bytes():
    assert nl.encode_rtattr(3, b"xa\0") == bytes.fromhex("0700 0300 78 61 00 00")
    assert nl.encode_rtattr(2, b"\x01") == bytes.fromhex("0500 0200 01 000000")
    assert nl.encode_rtattr(4, b"\xdc\x05\0\0") == bytes.fromhex("0800 0400 dc050000")
    assert nl.encode_rtattr(9, b"") == bytes.fromhex("0400 0900")


def test_encode_nested_rtattr_sets_nla_f_nested():
    nested = nl.encode_nested_rtattr(43, [nl.encode_rtattr(2, b"\x01")])
    assert nested == bytes.fromhex("0c00 2b800500 0200 01 000000")


def test_encode_rtattr_refuses_an_oversized_payload():
    with pytest.raises(ValueError, match="65531 fit"):
        nl.encode_rtattr(1, bytes(0xFFFC))


def test_encode_getlink_request():
    request = nl.encode_getlink_request(7, 0x01020304)
    expected = bytes.fromhex(
        "28000000"  # nlmsg_len 40
        "1200"  # nlmsg_type RTM_GETLINK
        "0500"  # nlmsg_flags NLM_F_REQUEST | NLM_F_ACK
        "04030201"  # nlmsg_seq
        "00000000"  # nlmsg_pid
        "00 00 0000"  # ifi_family AF_UNSPEC, __ifi_pad, ifi_type
        "07000000"  # ifi_index 7
        "00000000 00000000"  # ifi_flags, ifi_change
        "0800 1d00 08000000"  # IFLA_EXT_MASK = RTEXT_FILTER_SKIP_STATS
    )
    assert request == expected


def test_encode_setlink_attach_request():
    request = nl.encode_setlink_xdp_request(7, 9, fd=5, flags=2)
    expected = bytes.fromhex(
        "34000000 1300 0500 09000000 00000000"  # 52 bytes, RTM_SETLINK, REQUEST|ACK, seq 9
        "00 00 0000 07000000 00000000 00000000"  # ifinfomsg for ifindex 7
        "1400 2b80"  # IFLA_XDP | NLA_F_NESTED, 20 bytes
        "0800 0100 05000000"  # IFLA_XDP_FD 5
        "0800 0300 02000000"  # IFLA_XDP_FLAGS XDP_FLAGS_SKB_MODE
    )
    assert request == expected


def test_encode_setlink_detach_request_with_expected_fd():
    request = nl.encode_setlink_xdp_request(7, 10, fd=-1, flags=0x10, expected_fd=6)
    expected = bytes.fromhex(
        "3c000000 1300 0500 0a000000 00000000"  # 60 bytes
        "00 00 0000 07000000 00000000 00000000"
        "1c00 2b80"  # IFLA_XDP, 28 bytes
        "0800 0100 ffffffff"  # IFLA_XDP_FD -1: detach
        "0800 0300 10000000"  # IFLA_XDP_FLAGS XDP_FLAGS_REPLACE
        "0800 0800 06000000"  # IFLA_XDP_EXPECTED_FD 6
    )
    assert request == expected


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ifindex": 0}, ValueError, "ifindex must be a positive"),
        ({"ifindex": "eth0"}, TypeError, "ifindex must be an int"),
        ({"ifindex": True}, TypeError, "ifindex must be an int"),
        ({"fd": -2}, ValueError, "fd must be a file descriptor or -1"),
        ({"fd": 3.0}, TypeError, "fd must be an int"),
        ({"expected_fd": -5}, ValueError, "expected_fd must be"),
        ({"flags": -1}, ValueError, "XDP flags must be an unsigned 32-bit int"),
        ({"flags": 1 << 32}, ValueError, "XDP flags must be an unsigned 32-bit int"),
        ({"flags": "2"}, TypeError, "XDP flags must be an int, not str"),
    ],
)
def test_encode_setlink_rejects_bad_arguments(kwargs, error, match):
    arguments = {"ifindex": 1, "seq": 1, "fd": -1, "flags": 0, **kwargs}
    with pytest.raises(error, match=match):
        nl.encode_setlink_xdp_request(**arguments)


# An RTM_NEWLINK reply the way the kernel lays it out: IFLA_XDP nested without NLA_F_NESTED.
NEWLINK_SKB_PAYLOAD = bytes.fromhex(
    "00 00 0100 03000000 43100100 00000000"  # ifinfomsg: ARPHRD_ETHER, ifindex 3, flags
    "0700 0300 786100 00"  # IFLA_IFNAME "xa\0" + 1 byte padding
    "0800 0400 dc050000"  # IFLA_MTU 1500
    "0a00 0100 c6fe006c6cbb 0000"  # IFLA_ADDRESS + 2 bytes padding
    "0500 1000 06 000000"  # IFLA_OPERSTATE (ignored)
    "0800 1f00 04000000"  # IFLA_NUM_TX_QUEUES 4
    "0800 2000 04000000"  # IFLA_NUM_RX_QUEUES 4
    "1c00 2b00"  # IFLA_XDP, 28 bytes
    "0800 0600 65000000"  # IFLA_XDP_SKB_PROG_ID 101
    "0500 0200 02 000000"  # IFLA_XDP_ATTACHED XDP_ATTACHED_SKB
    "0800 0400 65000000"  # IFLA_XDP_PROG_ID 101
)


def test_decode_link_with_a_generic_mode_program():
    link = nl.decode_link(NEWLINK_SKB_PAYLOAD)
    assert link == nl.LinkInfo(
        ifindex=3,
        ifname="xa",
        mtu=1500,
        address=bytes.fromhex("c6fe006c6cbb"),
        num_rx_queues=4,
        num_tx_queues=4,
        xdp_attached=nl.XDP_ATTACHED_SKB,
        xdp_prog_id=101,
        xdp_drv_prog_id=0,
        xdp_skb_prog_id=101,
    )


def test_decode_link_with_programs_in_several_modes():
    payload = bytes.fromhex(
        "00 00 0100 05000000 00000000 00000000"
        "0800 0300 65746830"  # IFLA_IFNAME "eth0" without NUL still decodes
        "0800 0400 dc050000"
        "2400 2b80"  # IFLA_XDP with NLA_F_NESTED, 36 bytes
        "0800 0600 08000000"  # IFLA_XDP_SKB_PROG_ID 8
        "0800 0500 07000000"  # IFLA_XDP_DRV_PROG_ID 7
        "0800 0700 09000000"  # IFLA_XDP_HW_PROG_ID 9
        "0500 0200 04 000000"  # IFLA_XDP_ATTACHED XDP_ATTACHED_MULTI; no IFLA_XDP_PROG_ID
    )
    link = nl.decode_link(payload)
    assert (link.ifname, link.address, link.num_rx_queues) == ("eth0", b"", 0)
    assert link.xdp_attached == nl.XDP_ATTACHED_MULTI
    assert (link.xdp_prog_id, link.xdp_drv_prog_id, link.xdp_skb_prog_id) == (7, 7, 8)


def test_decode_link_without_xdp_attribute_reports_nothing_attached():
    payload = bytes.fromhex("00 00 0100 02000000 00000000 000000000700 0300 786200 00")
    link = nl.decode_link(payload)
    assert (link.xdp_attached, link.xdp_prog_id) == (nl.XDP_ATTACHED_NONE, 0)


def test_link_info_is_immutable():
    link = nl.decode_link(NEWLINK_SKB_PAYLOAD)
    with pytest.raises(AttributeError):
        link.mtu = 9000  # type: ignore[misc]


def test_decode_rtattrs_masks_flags_and_keeps_the_last_duplicate():
    data = bytes.fromhex("0800 2b80 010000000500 0200 01 0000000500 0200 02 000000")
    assert nl.decode_rtattrs(data) == {43: b"\x01\0\0\0", 2: b"\x02"}


def test_decode_rtattrs_accepts_a_missing_final_padding():
    assert nl.decode_rtattrs(bytes.fromhex("0500 0200 01")) == {2: b"\x01"}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (bytes.fromhex("0800 0400 dc05"), "bad netlink attribute length 8"),
        (bytes.fromhex("0200 0400"), "bad netlink attribute length 2"),
        (bytes.fromhex("0800 0400 dc050000 0800"), "truncated netlink attribute"),
    ],
)
def test_decode_rtattrs_rejects_truncated_input(data, match):
    with pytest.raises(ValueError, match=match):
        nl.decode_rtattrs(data)


ACK_SEQ_9 = bytes.fromhex(
    "24000000 0200 0001 09000000 d2100000"  # NLMSG_ERROR, NLM_F_CAPPED, seq 9, 36 bytes
    "00000000"  # error 0: ACK
    "34000000 1300 0500 09000000 00000000"  # the request's nlmsghdr
)


def test_decode_messages_splits_a_datagram():
    newlink = struct.pack("=IHHII", 16 + len(NEWLINK_SKB_PAYLOAD), 16, 0, 9, 4306)
    messages = nl.decode_messages(newlink + NEWLINK_SKB_PAYLOAD + ACK_SEQ_9)
    assert [(m.type, m.flags, m.seq) for m in messages] == [(16, 0, 9), (2, 0x100, 9)]
    assert messages[0].payload == NEWLINK_SKB_PAYLOAD
    assert nl.decode_nlmsgerr(messages[1].flags, messages[1].payload) == nl.NetlinkAck(0, "")


def test_decode_messages_skips_padding_between_messages():
    odd = bytes.fromhex("11000000 0300 0000 01000000 00000000 aa 000000")  # 17 bytes + 3 padding
    messages = nl.decode_messages(odd + odd[:17])
    assert [m.payload for m in messages] == [b"\xaa", b"\xaa"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (ACK_SEQ_9[:10], "truncated netlink message: 10 bytes left"),
        (ACK_SEQ_9[:-1], "bad netlink message length 36"),
        (bytes.fromhex("08000000 0200 0000 01000000 00000000"), "bad netlink message length 8"),
        (ACK_SEQ_9 + ACK_SEQ_9[:4], "truncated netlink message: 4 bytes left at offset 36"),
    ],
)
def test_decode_messages_rejects_truncated_input(data, match):
    with pytest.raises(ValueError, match=match):
        nl.decode_messages(data)


KERNEL_TEXT = b"Active program does not match expected\0"  # 39 bytes


def test_decode_nlmsgerr_with_extended_ack_message():
    payload = (
        bytes.fromhex("efffffff")  # error -EEXIST
        + bytes.fromhex("34000000 1300 0500 09000000 00000000")  # echoed header only
        + bytes.fromhex("0800 0200 24000000")  # NLMSGERR_ATTR_OFFS (ignored)
        + bytes.fromhex("2b00 0100")  # NLMSGERR_ATTR_MSG, 43 bytes
        + KERNEL_TEXT
        + b"\0"  # padding
    )
    ack = nl.decode_nlmsgerr(nl.NLM_F_CAPPED | nl.NLM_F_ACK_TLVS, payload)
    assert ack == nl.NetlinkAck(-errno.EEXIST, "Active program does not match expected")


def test_decode_nlmsgerr_skips_an_echoed_request_that_was_not_capped():
    request = nl.encode_setlink_xdp_request(7, 9, fd=-1, flags=0)  # 52 bytes
    payload = (
        bytes.fromhex("eaffffff")  # error -EINVAL
        + request
        + bytes.fromhex("2b00 0100")
        + KERNEL_TEXT
        + b"\0"
    )
    ack = nl.decode_nlmsgerr(nl.NLM_F_ACK_TLVS, payload)
    assert ack == nl.NetlinkAck(-errno.EINVAL, KERNEL_TEXT[:-1].decode())


def test_decode_nlmsgerr_ignores_tlvs_without_nlm_f_ack_tlvs():
    payload = bytes.fromhex("edffffff34000000 1300 0500 09000000 00000000")
    assert nl.decode_nlmsgerr(nl.NLM_F_CAPPED, payload) == nl.NetlinkAck(-errno.ENODEV, "")


@pytest.mark.parametrize(
    ("flags", "payload", "match"),
    [
        (0, bytes.fromhex("eaffffff 34000000"), "truncated NLMSG_ERROR: 8 bytes"),
        (
            nl.NLM_F_ACK_TLVS,
            bytes.fromhex("eaffffff 34000000 1300 0500 09000000 00000000"),
            "echoes a request of bad length 52",
        ),
        (
            nl.NLM_F_ACK_TLVS | nl.NLM_F_CAPPED,
            bytes.fromhex("eaffffff 14000000 1300 0500 09000000 000000002b00 0100 41"),
            "bad netlink attribute length 43",
        ),
    ],
)
def test_decode_nlmsgerr_rejects_truncated_input(flags, payload, match):
    with pytest.raises(ValueError, match=match):
        nl.decode_nlmsgerr(flags, payload)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (NEWLINK_SKB_PAYLOAD[:12], "truncated RTM_NEWLINK: 12 bytes"),
        (bytes(16), "has no IFLA_IFNAME"),
        (bytes(16) + bytes.fromhex("0700 0300 786100 000600 0400 dc05 0000"), "IFLA_MTU has 2"),
        (
            bytes(16) + bytes.fromhex("0700 0300 786100 000c00 2b00 0600 0200 0202 0000"),
            "IFLA_XDP_ATTACHED has 2 bytes",
        ),
    ],
)
def test_decode_link_rejects_malformed_payloads(payload, match):
    with pytest.raises(ValueError, match=match):
        nl.decode_link(payload)


def test_kernel_error_becomes_an_oserror_subclass_with_the_kernel_text():
    error = nl._netlink_error(errno.EEXIST, "RTM_SETLINK on 'xa'", "Active program does not match")
    assert isinstance(error, FileExistsError)
    assert error.errno == errno.EEXIST
    assert str(error) == (
        "[Errno 17] RTM_SETLINK on 'xa': File exists (kernel: Active program does not match)"
    )
    assert str(nl._netlink_error(errno.ENODEV, "what", "")) == "[Errno 19] what: No such device"


@pytest.mark.parametrize("value", [nl.NetlinkAck(0, ""), nl.decode_link(NEWLINK_SKB_PAYLOAD)])
def test_value_objects_are_slotted(value):
    assert not hasattr(value, "__dict__")
