"""Sending with ``XDPPacket``: what the peer captures is exactly what was written, in order.

``write_packet`` and ``write_multi_packets`` take any bytes-like object; hundreds of
mixed-size frames go out of the capture end and an AF_PACKET socket on the peer checks
them. With a 64-frame UMEM the writes must wait for the kernel to complete earlier frames
and reuse them (blocking mode), which is checked by sending far more than 64.
"""

from __future__ import annotations

import array
from collections.abc import Callable

import pytest

from tests.netns import AfPacketCapture, VethPair
from tests.xdp_helpers import BOTH_MODES, frames_to_peer, watchdog
from xdppacket import OptNumFrames, OptRingSize, OptXDPMode, XDPMode, XDPPacket

COUNT = 300
SMALL_UMEM = (OptNumFrames(64), OptRingSize(64))


def as_memoryview_slice(frame: bytes) -> memoryview:
    """A view into the middle of a larger buffer: the frame must be taken from its offset."""
    return memoryview(b"\xaa" * 7 + frame + b"\xbb" * 5)[7:-5]


BYTES_LIKE: dict[str, Callable[[bytes], object]] = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": as_memoryview_slice,
    "array": lambda frame: array.array("B", frame),
}


def write_all(sock: XDPPacket, writer: str, packets: list[object]) -> None:
    with watchdog(10):
        if writer == "write_packet":
            for packet in packets:
                sock.write_packet(packet)
        else:
            assert sock.write_multi_packets(packets) == len(packets)


def assert_sent(sock: XDPPacket, peer_capture: AfPacketCapture, frames: list[bytes]) -> None:
    assert peer_capture.recv_frames(len(frames), timeout=5) == frames
    stats = sock.get_stats()
    assert (stats.tx_packets, stats.tx_bytes) == (len(frames), sum(map(len, frames)))
    assert (stats.tx_invalid_descs, stats.rx_packets) == (0, 0)


@BOTH_MODES
@pytest.mark.parametrize("writer", ["write_packet", "write_multi_packets"])
@pytest.mark.parametrize("kind", list(BYTES_LIKE))
def test_frames_reach_the_peer_exactly_through_a_small_umem(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode, writer: str, kind: str
) -> None:
    frames = frames_to_peer(veth_pair, COUNT)
    packets = [BYTES_LIKE[kind](frame) for frame in frames]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_UMEM) as sock:
        write_all(sock, writer, packets)
        assert_sent(sock, peer_capture, frames)


@BOTH_MODES
@pytest.mark.parametrize("writer", ["write_packet", "write_multi_packets"])
def test_frames_reach_the_peer_exactly_with_default_options(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode, writer: str
) -> None:
    frames = frames_to_peer(veth_pair, COUNT)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        write_all(sock, writer, list(frames))
        assert_sent(sock, peer_capture, frames)


@BOTH_MODES
def test_writes_interleave_in_call_order(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode
) -> None:
    frames = frames_to_peer(veth_pair, 100)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_UMEM) as sock:
        with watchdog(10):
            sock.write_packet(frames[0])
            assert sock.write_multi_packets(frames[1:90]) == 89
            sock.write_packet(frames[90])
            assert sock.write_multi_packets([]) == 0
            assert sock.write_multi_packets(frames[91:]) == 9
        assert_sent(sock, peer_capture, frames)
