"""Receiving with ``XDPPacket``: exact frames, in order, through every read method, both modes.

Frames of mixed sizes (60..1514 bytes) go out of the veth peer through AF_PACKET and are
read on the capture end. Each test checks the bytes, the order, every ``CaptureInfo``
field and the socket's rx counters.
"""

from __future__ import annotations

import time

import pytest

from tests.netns import VethPair
from tests.xdp_helpers import (
    BOTH_MODES,
    READ_VARIANTS,
    assert_capture_infos,
    frames_from_peer,
    read_frames,
    send_frames,
    watchdog,
)
from xdppacket import OptNumFrames, OptRingSize, OptXDPMode, XDPMode, XDPPacket

COUNT = 300


def assert_clean_rx_stats(sock: XDPPacket, frames: list[bytes]) -> None:
    stats = sock.get_stats()
    assert (stats.rx_packets, stats.rx_bytes) == (len(frames), sum(map(len, frames)))
    assert (stats.rx_dropped, stats.rx_invalid_descs, stats.rx_ring_full) == (0, 0, 0)
    assert (stats.tx_packets, stats.tx_bytes) == (0, 0)


@BOTH_MODES
@pytest.mark.parametrize("variant", READ_VARIANTS)
def test_a_burst_is_read_exactly_and_in_order(veth_pair: VethPair, mode: XDPMode, variant: str) -> None:
    """300 frames sent at once (default options: they all fit the fill ring), then read."""
    frames = frames_from_peer(veth_pair, COUNT)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        not_before = time.time_ns()  # timestamps are arrival times: before the read
        send_frames(veth_pair.peer, frames)
        received, infos = read_frames(sock, COUNT, variant)
        not_after = time.time_ns()
        assert received == frames
        assert_capture_infos(infos, frames, sock, not_before, not_after)
        assert_clean_rx_stats(sock, frames)


@BOTH_MODES
@pytest.mark.parametrize("variant", READ_VARIANTS)
def test_frames_are_recycled_through_a_small_umem(
    veth_pair: VethPair, mode: XDPMode, variant: str
) -> None:
    """300 frames through 64 rx frames: every frame goes back to the kernel and is reused."""
    frames = frames_from_peer(veth_pair, COUNT)
    chunk = 50  # below the 64 frames the kernel holds, so nothing is dropped
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptNumFrames(64), OptRingSize(64)) as sock:
        received = []
        for start in range(0, COUNT, chunk):
            not_before = time.time_ns()
            send_frames(veth_pair.peer, frames[start : start + chunk])
            got, infos = read_frames(sock, chunk, variant, batch=16)
            assert_capture_infos(infos, got, sock, not_before, time.time_ns())
            received += got
        assert received == frames
        assert_clean_rx_stats(sock, frames)


@BOTH_MODES
@pytest.mark.parametrize("variant", ["read_multi_packets", "zero_copy_read_multi_packets"])
def test_batched_reads_return_at_most_max_packets(
    veth_pair: VethPair, mode: XDPMode, variant: str
) -> None:
    frames = frames_from_peer(veth_pair, 10)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        send_frames(veth_pair.peer, frames)
        received: list[bytes] = []
        with watchdog(10):
            while len(received) < len(frames):
                packets, infos = getattr(sock, variant)(4)
                assert 1 <= len(packets) == len(infos) <= 4  # blocking: at least one
                received += [bytes(packet) for packet in packets]
        assert received == frames
