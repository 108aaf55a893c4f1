"""Does the longest frame an interface can deliver fit a UMEM frame? Checked when a socket opens.

Copy-mode receive puts a frame's data ``XDP_PACKET_HEADROOM`` (256) plus ``OptHeadroom``
bytes into its UMEM frame, so a frame holds ``frame_size - 256 - headroom`` received
bytes. The interface delivers frames up to its MTU plus the Ethernet header and one VLAN
tag. A longer frame never reaches the socket: the kernel drops it and counts it in
``rx_dropped``. Without a headroom that is a warning (the MTU is the user's choice of
traffic, and ``OptMultiBuffer`` is the cure); with one it is the option's fault, refused.

Pure: the caller reads the MTU.
"""

from __future__ import annotations

import warnings

from .options import XDP_PACKET_HEADROOM, XDPOptions

__all__ = ["FramesTooLongWarning", "check_frames_fit", "longest_delivered_frame", "received_bytes_per_frame"]

_ETH_HLEN = 14
_VLAN_HLEN = 4
_LARGEST_FRAME_SIZE = 4096


class FramesTooLongWarning(UserWarning):
    """The interface can deliver frames longer than a UMEM frame holds: those will be dropped.

    Its own class so that a socket that only sends (``xdppacket replay``) can ignore it.
    """


def longest_delivered_frame(mtu: int) -> int:
    """The longest frame an interface of this MTU hands to XDP: MTU, Ethernet header, VLAN tag."""
    return mtu + _ETH_HLEN + _VLAN_HLEN


def received_bytes_per_frame(frame_size: int, headroom: int) -> int:
    """How much of a received frame one UMEM frame holds in copy mode."""
    return frame_size - XDP_PACKET_HEADROOM - headroom


def check_frames_fit(ifname: str, mtu: int, options: XDPOptions, stacklevel: int) -> None:
    """Refuse a headroom that makes frames of ``ifname`` not fit; warn when its MTU alone does.

    With ``OptMultiBuffer`` a long frame spans several UMEM frames: nothing to check.

    ``stacklevel`` is passed to ``warnings.warn`` counting from the caller of this function.
    """
    if options.multi_buffer:
        return
    longest = longest_delivered_frame(mtu)
    room = received_bytes_per_frame(options.frame_size, options.headroom)
    if longest <= room:
        return
    if options.headroom:
        largest_headroom = received_bytes_per_frame(options.frame_size, 0) - longest
        fix = (f"use OptHeadroom({largest_headroom}) or less" if largest_headroom >= 0
               else f"use no OptHeadroom or lower the MTU (ip link set dev {ifname} mtu N)")
        raise ValueError(
            f"OptHeadroom({options.headroom}): {ifname} (MTU {mtu}) delivers frames of up to {longest} bytes "
            f"(with the Ethernet header and a VLAN tag), but a {options.frame_size}-byte UMEM frame then holds "
            f"only {room} received bytes after the kernel's {XDP_PACKET_HEADROOM}; {fix}"
        )
    fixes = []
    if options.frame_size < _LARGEST_FRAME_SIZE and longest <= received_bytes_per_frame(_LARGEST_FRAME_SIZE, 0):
        fixes.append(f"use OptFrameSize({_LARGEST_FRAME_SIZE})")
    fixes.append("use OptMultiBuffer() to receive them whole")
    fixes.append(f"lower the MTU (ip link set dev {ifname} mtu N)")
    warnings.warn(
        f"{ifname} has MTU {mtu}, so it delivers frames of up to {longest} bytes, but a "
        f"{options.frame_size}-byte UMEM frame holds only {room} received bytes: longer frames are dropped "
        f"by the kernel and show only in rx_dropped; " + ", or ".join(fixes),
        FramesTooLongWarning,
        stacklevel=stacklevel + 1,
    )
