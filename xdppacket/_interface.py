"""Network interface names, indexes and rx queue counts, asked of the kernel.

Nothing here reads ``/sys/class/net``: inside ``unshare -n`` without a new mount
namespace it still lists the old namespace's devices. Names and indexes come from the
``SIOCGIFINDEX``/``SIOCGIFNAME`` ioctls, the queue count from the ethtool ioctl or
rtnetlink, all of which answer for the calling thread's network namespace. (Not
``socket.if_nametoindex``: it reports every failure, running out of file descriptors
included, as "no interface with this name".)
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct

from ._libc import OUT_OF_DESCRIPTORS_HINTS, ioctl_ptr
from ._netlink import get_link

__all__ = [
    "ETHTOOL_GCHANNELS",
    "IFNAMSIZ",
    "SIOCETHTOOL",
    "SIOCGIFINDEX",
    "SIOCGIFNAME",
    "ethtool_channels",
    "ifmap",
    "ifreq",
    "interface_index",
    "interface_name",
    "no_such_interface",
    "rx_queue_count",
    "validate_ifname",
]

IFNAMSIZ = 16  # linux/if.h, including the terminating NUL
SIOCGIFNAME = 0x8910  # linux/sockios.h
SIOCGIFINDEX = 0x8933
SIOCETHTOOL = 0x8946
ETHTOOL_GCHANNELS = 0x3C  # linux/ethtool.h

_LIST_HINT = "list them with `ip link`"


class ethtool_channels(ctypes.Structure):
    """``struct ethtool_channels`` (linux/ethtool.h): a driver's rx/tx/combined channels."""

    _fields_ = [
        ("cmd", ctypes.c_uint32),
        ("max_rx", ctypes.c_uint32),
        ("max_tx", ctypes.c_uint32),
        ("max_other", ctypes.c_uint32),
        ("max_combined", ctypes.c_uint32),
        ("rx_count", ctypes.c_uint32),
        ("tx_count", ctypes.c_uint32),
        ("other_count", ctypes.c_uint32),
        ("combined_count", ctypes.c_uint32),
    ]


class ifmap(ctypes.Structure):
    """``struct ifmap`` (linux/if.h); present only because it sets the size of ``ifreq``."""

    _fields_ = [
        ("mem_start", ctypes.c_ulong),
        ("mem_end", ctypes.c_ulong),
        ("base_addr", ctypes.c_ushort),
        ("irq", ctypes.c_ubyte),
        ("dma", ctypes.c_ubyte),
        ("port", ctypes.c_ubyte),
    ]


class _ifreq_ifru(ctypes.Union):
    """The ``ifr_ifru`` union of ``struct ifreq``, reduced to the members this module needs."""

    _fields_ = [("ifru_map", ifmap), ("ifru_data", ctypes.c_void_p)]


class ifreq(ctypes.Structure):
    """``struct ifreq`` (linux/if.h): for SIOCETHTOOL, ``ifr_data`` points at the command."""

    _fields_ = [("ifr_name", ctypes.c_char * IFNAMSIZ), ("ifr_ifru", _ifreq_ifru)]


def validate_ifname(ifname: str) -> bytes:
    """Check a name the way the kernel's ``dev_valid_name`` does; return it encoded.

    Catching a bad name here gives a clear ``ValueError`` instead of a bare ENODEV.
    """
    if not isinstance(ifname, str):
        raise TypeError(f"interface name must be a str, not {type(ifname).__name__}")
    encoded = ifname.encode()
    if not encoded:
        raise ValueError("interface name is empty; list interfaces with `ip link`")
    if len(encoded) >= IFNAMSIZ:
        raise ValueError(
            f"interface name {ifname!r} is {len(encoded)} bytes long; "
            f"Linux allows at most {IFNAMSIZ - 1}"
        )
    if ifname in (".", "..") or any(char in "/:\0" or char.isspace() for char in ifname):
        raise ValueError(
            f"interface name {ifname!r} is not valid: it may not be '.' or '..' nor contain "
            "'/', ':', NUL or whitespace"
        )
    return encoded


def no_such_interface(ifname: str) -> FileNotFoundError:
    return FileNotFoundError(
        errno.ENODEV,
        f"no network interface named {ifname!r} in this network namespace; {_LIST_HINT}",
    )


def _control_socket() -> socket.socket:
    """A socket to run interface ioctls on; running out of descriptors says so."""
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as error:
        hint = OUT_OF_DESCRIPTORS_HINTS.get(error.errno or 0)
        if hint is None:
            raise
        raise OSError(error.errno, f"opening a socket to look up network interfaces: {hint}") from None


def _ifreq_ioctl(request: int, name: bytes, ifindex: int) -> tuple[bytes, int]:
    """Run a ``struct ifreq`` ioctl carrying a name and an ifindex; return both as answered."""
    raw = struct.pack(f"{IFNAMSIZ}si", name, ifindex).ljust(ctypes.sizeof(ifreq), b"\0")
    with _control_socket() as sock:
        answer = fcntl.ioctl(sock.fileno(), request, raw)
    answered_name, answered_index = struct.unpack_from(f"{IFNAMSIZ}si", answer)
    return answered_name.split(b"\0", 1)[0], answered_index


def interface_index(ifname: str) -> int:
    """The ifindex of ``ifname``; a missing interface raises ``FileNotFoundError`` (ENODEV)."""
    encoded = validate_ifname(ifname)
    try:
        return _ifreq_ioctl(SIOCGIFINDEX, encoded, 0)[1]
    except OSError as error:
        if error.errno == errno.ENODEV:
            raise no_such_interface(ifname) from None
        raise


def interface_name(ifindex: int) -> str:
    """The name of interface ``ifindex``; a missing one raises ``FileNotFoundError`` (ENODEV)."""
    if isinstance(ifindex, bool) or not isinstance(ifindex, int):
        raise TypeError(f"ifindex must be an int, not {type(ifindex).__name__}")
    if not 0 < ifindex <= 0x7FFFFFFF:
        raise ValueError(f"ifindex must be a positive 32-bit int, not {ifindex}")
    try:
        return _ifreq_ioctl(SIOCGIFNAME, b"", ifindex)[0].decode()
    except OSError as error:
        if error.errno != errno.ENODEV:
            raise
        raise FileNotFoundError(
            errno.ENODEV,
            f"no network interface with index {ifindex} in this network namespace; {_LIST_HINT}",
        ) from None


def _ethtool_rx_channels(ifname: str) -> int:
    """rx + combined channels from ``ETHTOOL_GCHANNELS``; 0 if the driver cannot say."""
    channels = ethtool_channels(cmd=ETHTOOL_GCHANNELS)
    request = ifreq(ifr_name=validate_ifname(ifname))
    request.ifr_ifru.ifru_data = ctypes.addressof(channels)
    with _control_socket() as sock:
        try:
            ioctl_ptr(sock.fileno(), SIOCETHTOOL, request, f"ETHTOOL_GCHANNELS on {ifname!r}")
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                return 0
            if exc.errno == errno.ENODEV:
                raise no_such_interface(ifname) from None
            raise
    return int(channels.rx_count + channels.combined_count)


def rx_queue_count(ifname: str) -> int:
    """How many rx queues of ``ifname`` can feed an AF_XDP socket (queue ids 0 .. n-1).

    That is the device's ``real_num_rx_queues``, which ethtool reports as rx plus
    combined channels; for drivers without ``get_channels`` (EOPNOTSUPP) this falls back
    to rtnetlink's ``IFLA_NUM_RX_QUEUES``, the number of queues allocated.
    """
    count = _ethtool_rx_channels(ifname)
    if count > 0:
        return count
    return get_link(interface_index(ifname)).num_rx_queues


def network_namespace_id() -> int:
    """The calling thread's network namespace (its inode): interface indexes are only unique
    within one, and a thread may have entered another namespace (``setns``) than the process's
    main thread."""
    return os.stat("/proc/thread-self/ns/net").st_ino
