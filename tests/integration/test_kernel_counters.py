"""The kernel's ``XDP_STATISTICS`` drop counters, as ``get_stats()`` reports them.

How the kernel fills an AF_XDP socket in copy mode (``__xsk_rcv`` in net/xdp/xsk.c; veth
has no zero-copy support, so both attach modes take this path here). For each frame the
XDP program redirects to the socket, the kernel first needs a buffer from the fill ring:
with none left it drops the frame, counting it in ``rx_dropped``, and the empty fill ring
in ``rx_fill_ring_empty_descs``. Then it needs a free slot in the rx ring: with none, it
drops the frame and counts it in ``rx_ring_full`` only. The values asserted below are
exact, as measured on kernel 6.18, and follow from that mechanism as each test explains.

The library gives the fill ring every free rx frame it has room for: at open, and again
after each copying read.
"""

from __future__ import annotations

from tests.netns import VethPair
from tests.xdp_helpers import BOTH_MODES, frames_from_peer, read_until_empty, send_frames, settle
from xdppacket import (
    IO_MODE_NONBLOCK,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPPacket,
)

NONBLOCK = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(20_000))


def kernel_counters(sock: XDPPacket) -> tuple[int, int, int, int]:
    """rx_dropped, rx_fill_ring_empty_descs, rx_ring_full, rx_invalid_descs, once settled."""
    settle()
    stats = sock.get_stats()
    return (stats.rx_dropped, stats.rx_fill_ring_empty_descs, stats.rx_ring_full,
            stats.rx_invalid_descs)  # fmt: skip


@BOTH_MODES
def test_frames_beyond_the_fill_ring_are_dropped_when_nobody_reads(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    # 64 rx frames, all in the 64-entry fill ring at open; the rx ring has 64 slots too.
    # Of 100 frames, the first 64 take every buffer and land in the rx ring; the other 36
    # find the fill ring empty: 36 in rx_dropped and 36 in rx_fill_ring_empty_descs. The rx
    # ring never overflows (it has as many slots as there are buffers): rx_ring_full 0.
    frames = frames_from_peer(veth_pair, 100)
    with XDPPacket(
        veth_pair.capture, OptXDPMode(mode), OptNumFrames(64), OptRingSize(64), *NONBLOCK
    ) as sock:
        send_frames(veth_pair.peer, frames)
        assert kernel_counters(sock) == (36, 36, 0, 0)
        assert sock.get_stats().rx_packets == 0

        # The 64 kept are the first 64, intact and in order; reading refills the fill ring,
        # after which nothing more is dropped.
        assert read_until_empty(sock) == frames[:64]
        more = frames_from_peer(veth_pair, 50, first_seq=100)
        send_frames(veth_pair.peer, more)
        settle()
        assert read_until_empty(sock) == more
        assert kernel_counters(sock) == (36, 36, 0, 0)
        assert sock.get_stats().rx_packets == 114


@BOTH_MODES
def test_frames_beyond_the_rx_ring_count_as_rx_ring_full(veth_pair: VethPair, mode: XDPMode) -> None:
    # 128 rx frames but 64-entry rings: at open, 64 frames go to the fill ring and 64 stay
    # free in the library. 64 frames then fill the rx ring and empty the fill ring. Reading
    # exactly one frame frees one rx slot and returns that frame to the library (65 free),
    # and the refill after the read hands 64 of them to the kernel. So of 10 more frames all
    # find a buffer, but only the first finds an rx slot: rx_ring_full 9, rx_dropped 0.
    frames = frames_from_peer(veth_pair, 74)
    with XDPPacket(
        veth_pair.capture, OptXDPMode(mode), OptNumFrames(128), OptRingSize(64), *NONBLOCK
    ) as sock:
        send_frames(veth_pair.peer, frames[:64])
        assert kernel_counters(sock) == (0, 0, 0, 0)  # settled: all 64 are in the rx ring
        assert sock.read_multi_packets(1)[0] == frames[:1]
        send_frames(veth_pair.peer, frames[64:])
        assert kernel_counters(sock) == (0, 0, 9, 0)

        # Kept: the 63 left in the rx ring and the one frame that found the free slot.
        assert read_until_empty(sock) == frames[1:65]
        assert sock.get_stats().rx_packets == 65
