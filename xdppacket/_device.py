"""Facts about a network device that only ioctls tell: its driver and its up/carrier flags.

``ETHTOOL_GDRVINFO`` (what ``ethtool -i`` prints) and ``SIOCGIFFLAGS`` (``ip link``'s
``UP``/``LOWER_UP``), through the ioctl helpers of ``_interface`` and ``_libc``. Both
answer for the caller's own network namespace.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
from dataclasses import dataclass

from ._interface import IFNAMSIZ, SIOCETHTOOL, ifreq, no_such_interface, validate_ifname
from ._libc import ioctl_ptr

__all__ = ["IFF_RUNNING", "IFF_UP", "DriverInfo", "driver_info", "interface_flags"]

ETHTOOL_GDRVINFO = 0x3  # linux/ethtool.h
SIOCGIFFLAGS = 0x8913  # linux/sockios.h
# linux/if.h
IFF_UP = 0x1
IFF_RUNNING = 0x40  # up and with carrier (operationally up)

_IFREQ_FLAGS = struct.Struct(f"{IFNAMSIZ}sH22x")  # struct ifreq: name, short ifr_flags


class ethtool_drvinfo(ctypes.Structure):
    """``struct ethtool_drvinfo`` (linux/ethtool.h)."""

    _fields_ = [
        ("cmd", ctypes.c_uint32),
        ("driver", ctypes.c_char * 32),
        ("version", ctypes.c_char * 32),
        ("fw_version", ctypes.c_char * 32),
        ("bus_info", ctypes.c_char * 32),
        ("erom_version", ctypes.c_char * 32),
        ("reserved2", ctypes.c_char * 12),
        ("n_priv_flags", ctypes.c_uint32),
        ("n_stats", ctypes.c_uint32),
        ("testinfo_len", ctypes.c_uint32),
        ("eedump_len", ctypes.c_uint32),
        ("regdump_len", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class DriverInfo:
    """What ``ethtool -i`` says: driver name and version, firmware, bus address."""

    __slots__ = ("driver", "version", "fw_version", "bus_info")

    driver: str
    version: str
    fw_version: str
    bus_info: str


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def driver_info(ifname: str) -> DriverInfo | None:
    """The driver of ``ifname``; ``None`` when it does not say (``lo``: EOPNOTSUPP)."""
    info = ethtool_drvinfo(cmd=ETHTOOL_GDRVINFO)
    request = ifreq(ifr_name=validate_ifname(ifname))
    request.ifr_ifru.ifru_data = ctypes.addressof(info)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            ioctl_ptr(sock.fileno(), SIOCETHTOOL, request, f"ETHTOOL_GDRVINFO on {ifname!r}")
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                return None
            raise
    return DriverInfo(_text(info.driver), _text(info.version), _text(info.fw_version),
                      _text(info.bus_info))


def interface_flags(ifname: str) -> int:
    """``IFF_*`` flags of ``ifname`` (``SIOCGIFFLAGS``: ``IFF_UP``, ``IFF_RUNNING``, ...); a
    missing interface raises ``FileNotFoundError`` (ENODEV)."""
    request = _IFREQ_FLAGS.pack(validate_ifname(ifname), 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock, SIOCGIFFLAGS, request)
    except OSError as error:
        if error.errno == errno.ENODEV:
            raise no_such_interface(ifname) from None
        raise
    return int(_IFREQ_FLAGS.unpack(reply)[1])
