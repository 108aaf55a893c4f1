"""Interface-name checks and ethtool structure layouts; needs no root, opens no socket."""

import ctypes

import pytest

from xdppacket import _interface


def test_ethtool_channels_is_nine_u32():
    assert ctypes.sizeof(_interface.ethtool_channels) == 36
    assert _interface.ethtool_channels.combined_count.offset == 32


def test_ifreq_layout_matches_linux_if_h():
    pointer_size = ctypes.sizeof(ctypes.c_void_p)
    # struct ifmap: two unsigned longs, a u16 and three u8, padded to the long's alignment.
    assert ctypes.sizeof(_interface.ifmap) == 3 * pointer_size
    assert ctypes.sizeof(_interface.ifreq) == 16 + 3 * pointer_size
    assert _interface.ifreq.ifr_ifru.offset == 16


def test_ioctl_numbers_match_the_kernel_headers():
    assert (_interface.SIOCETHTOOL, _interface.ETHTOOL_GCHANNELS) == (0x8946, 0x3C)


@pytest.mark.parametrize("name", ["eth0", "xa", "a" * 15, "veth-0.1_x", "ens3f0np0"])
def test_valid_names_pass(name):
    assert _interface.validate_ifname(name) == name.encode()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "interface name is empty"),
        ("a" * 16, "is 16 bytes long; Linux allows at most 15"),
        ("é" * 8, "is 16 bytes long"),
        ("a/b", "is not valid"),
        ("a b", "is not valid"),
        ("eth0\n", "is not valid"),
        ("eth0:1", "is not valid"),
        ("a\0b", "is not valid"),
        ("..", "is not valid"),
    ],
)
def test_invalid_names_raise_value_error(name, match):
    with pytest.raises(ValueError, match=match):
        _interface.validate_ifname(name)


@pytest.mark.parametrize(
    "function", [_interface.interface_index, _interface.rx_queue_count, _interface.validate_ifname]
)
def test_a_name_that_is_not_a_str_raises_type_error(function):
    with pytest.raises(TypeError, match="interface name must be a str, not bytes"):
        function(b"eth0")


@pytest.mark.parametrize(
    ("ifindex", "error"), [(0, ValueError), (-3, ValueError), ("1", TypeError)]
)
def test_interface_name_rejects_a_bad_ifindex(ifindex, error):
    with pytest.raises(error, match="ifindex must be"):
        _interface.interface_name(ifindex)
