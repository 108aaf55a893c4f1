"""The zero-copy rule: a view is valid until the next read or ``close()``, and never shows a
frame the kernel has reused.

A view returned by a zero-copy read raises ``ValueError`` once the next read starts or
the socket closes. A slice taken from it (``view[14:]``) is a separate memoryview on the
same memory, so the library holds that frame back from the kernel for as long as the
slice lives: the slice keeps showing its frame however much traffic follows, and the
frame returns to the kernel once the slice is gone.

The holding back is observed from the outside: with 64 rx frames, one held frame leaves
63 in the fill ring, so of 64 frames sent without reading, exactly one is dropped.
"""

from __future__ import annotations

import pytest

from tests.netns import VethPair
from tests.xdp_helpers import (
    BOTH_MODES,
    frames_from_peer,
    read_frames,
    read_until_empty,
    send_frames,
    settle,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    CaptureInfo,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPPacket,
    XDPStats,
    XDPTimeoutError,
)

SMALL_NONBLOCKING = (
    OptNumFrames(64), OptRingSize(64), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(20_000),
)  # fmt: skip


def assert_released(view: memoryview) -> None:
    with pytest.raises(ValueError, match="released memoryview"):
        bytes(view)
    with pytest.raises(ValueError, match="released memoryview"):
        view[0]  # noqa: B018 -- the access itself is what must fail


def read_frames_once_zero_copy(sock: XDPPacket) -> tuple[memoryview, CaptureInfo]:
    """One zero-copy single read, retried while the frame is on its way (non-blocking)."""
    for _ in range(100):
        try:
            return sock.zero_copy_read_packet_data()
        except XDPTimeoutError:
            continue
    raise AssertionError("no frame arrived")


def drops_while_not_reading(sock: XDPPacket, pair: VethPair, count: int, first_seq: int) -> XDPStats:
    """Send ``count`` frames without reading, then read them all; return the stats delta."""
    before = sock.get_stats()
    frames = frames_from_peer(pair, count, first_seq)
    send_frames(pair.peer, frames)
    settle()
    received = read_until_empty(sock)
    delta = sock.get_stats() - before
    assert received == frames[: len(received)]  # what was kept arrives whole and in order
    assert delta.rx_packets == len(received)
    return delta


@BOTH_MODES
@pytest.mark.parametrize("next_read", ["frames", "timeout"])
def test_a_view_is_released_by_the_next_read(
    veth_pair: VethPair, mode: XDPMode, next_read: str
) -> None:
    frames = frames_from_peer(veth_pair, 4)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_NONBLOCKING) as sock:
        send_frames(veth_pair.peer, frames[:1] if next_read == "timeout" else frames)
        view, _ = read_frames_once_zero_copy(sock)
        assert bytes(view) == frames[0]
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 0
        if next_read == "frames":
            assert sock.read_multi_packets(3)[0] == frames[1:]
        else:
            with pytest.raises(XDPTimeoutError):
                sock.read_packet_data()
        assert_released(view)


@BOTH_MODES
def test_every_view_of_a_batch_is_released_by_the_next_read(veth_pair: VethPair, mode: XDPMode) -> None:
    frames = frames_from_peer(veth_pair, 5)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_NONBLOCKING) as sock:
        send_frames(veth_pair.peer, frames)
        views, infos = sock.zero_copy_read_multi_packets(3)
        assert [bytes(view) for view in views] == frames[: len(views)]
        assert [info.length for info in infos] == [len(view) for view in views]
        rest, _ = sock.zero_copy_read_multi_packets(16)
        for view in views:
            assert_released(view)
        assert [bytes(view) for view in rest] == frames[len(views) :]


@BOTH_MODES
def test_views_are_released_by_close(veth_pair: VethPair, mode: XDPMode) -> None:
    frames = frames_from_peer(veth_pair, 2)
    sock = XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_NONBLOCKING)
    with sock:
        send_frames(veth_pair.peer, frames)
        single, _ = read_frames_once_zero_copy(sock)
        assert bytes(single) == frames[0]
        views, _ = sock.zero_copy_read_multi_packets(1)
        assert [bytes(view) for view in views] == frames[1:]
    for view in [single, *views]:
        assert_released(view)


@BOTH_MODES
@pytest.mark.parametrize("reads", ["read_multi_packets", "zero_copy_read_multi_packets"])
def test_a_kept_slice_holds_its_frame_back_until_dropped(veth_pair: VethPair, mode: XDPMode, reads: str) -> None:
    first = frames_from_peer(veth_pair, 2)[1]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_NONBLOCKING) as sock:
        send_frames(veth_pair.peer, [first])
        view, _ = read_frames_once_zero_copy(sock)
        payload = view[14:]
        # 200 more frames through the 63 frames left: each is reused three times or more
        # (zero-copy batches meanwhile reuse freed buffer exporters, never the held one).
        for round_number in range(4):
            frames = frames_from_peer(veth_pair, 50, first_seq=100 * (round_number + 1))
            send_frames(veth_pair.peer, frames)
            assert read_frames(sock, 50, reads, batch=16)[0] == frames
            assert bytes(payload) == first[14:]
        assert_released(view)
        assert sock.read_multi_packets() == ([], [])  # a last zero-copy batch goes back now

        # One frame held: 63 in the fill ring, so 1 of 64 frames is dropped.
        delta = drops_while_not_reading(sock, veth_pair, 64, first_seq=1000)
        assert (delta.rx_packets, delta.rx_dropped, delta.rx_fill_ring_empty_descs) == (63, 1, 1)
        assert bytes(payload) == first[14:]

        del payload  # the next read gives the frame back to the kernel
        assert sock.read_multi_packets() == ([], [])
        delta = drops_while_not_reading(sock, veth_pair, 64, first_seq=2000)
        assert (delta.rx_packets, delta.rx_dropped, delta.rx_fill_ring_empty_descs) == (64, 0, 0)


@BOTH_MODES
def test_a_kept_slice_stays_readable_after_close(veth_pair: VethPair, mode: XDPMode) -> None:
    frame = frames_from_peer(veth_pair, 2)[1]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_NONBLOCKING) as sock:
        send_frames(veth_pair.peer, [frame])
        view, _ = read_frames_once_zero_copy(sock)
        payload = view[14:]
    assert_released(view)
    assert bytes(payload) == frame[14:]  # the memory stays mapped while the slice lives


@BOTH_MODES
def test_close_unmaps_the_frames_after_zero_copy_reads(veth_pair: VethPair, mode: XDPMode) -> None:
    frames = frames_from_peer(veth_pair, 40)
    assert umem_mappings() == 0
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_NONBLOCKING) as sock:
        send_frames(veth_pair.peer, frames)
        settle()
        assert read_frames(sock, len(frames), "zero_copy_read_multi_packets", batch=8)[0] == frames
        assert umem_mappings() >= 2  # read-write, and the read-only one behind the views
    assert umem_mappings() == 0  # no buffer export (a spare exporter included) pins the area


def umem_mappings() -> int:
    """How many mappings of UMEM memory this process has (the kernel's own list)."""
    with open("/proc/self/maps") as maps:
        return sum("memfd:xdppacket-umem" in line for line in maps)
