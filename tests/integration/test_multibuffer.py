"""OptMultiBuffer on veth at MTU 9000: jumbo frames received whole and sent whole, in both modes.

Frames from 60 to 9014 bytes span one to three 4096-byte UMEM frames. Each read method
must return them exactly (a zero-copy read: a view of a one-descriptor frame, ``bytes``
of a longer one), each write must reach the peer exactly, the counters must count
packets, and a frame needing more descriptors than the kernel takes must be refused
before anything is queued. The integration conftest audits every socket's UMEM frames
when it closes; the tests also call ``check_frames()`` themselves.
"""

from __future__ import annotations

import warnings

import pytest

from tests.integration.test_robustness import EveryLine, one_read, read_after_chaos
from tests.netns import AfPacketCapture, VethPair, frame_seq, make_test_frame, run_command
from tests.xdp_helpers import BOTH_MODES, READ_VARIANTS, read_frames, send_frames, settle, watchdog
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_SKB,
    OptFilter,
    OptFrameSize,
    OptIoMode,
    OptMultiBuffer,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPMultiQueue,
    XDPPacket,
)
from xdppacket._queue import max_descriptors_per_packet

pytestmark = pytest.mark.integration

JUMBO_MTU = 9000
#: From a minimum frame to the longest a 9000-byte MTU allows (9000 + the Ethernet header).
SIZES = (60, 1500, 3000, 4000, 5000, 8000, 9014)
_ETH_P_TEST = 0x88B5


def set_mtu(mtu: int, *ifnames: str) -> None:
    for ifname in ifnames:
        run_command("ip", "link", "set", "dev", ifname, "mtu", str(mtu))


@pytest.fixture
def jumbo_pair(veth_pair: VethPair) -> VethPair:
    set_mtu(JUMBO_MTU, veth_pair.capture, veth_pair.peer)
    return veth_pair


def jumbo_frames(pair: VethPair, to_peer: bool = False) -> list[bytes]:
    dst, src = (pair.peer_mac, pair.capture_mac) if to_peer else (pair.capture_mac, pair.peer_mac)
    return [make_test_frame(size, seq, dst, src) for seq, size in enumerate(SIZES)]


def open_jumbo_socket(pair: VethPair, mode: XDPMode, *extra: object) -> XDPPacket:
    """An OptMultiBuffer socket; opening it at MTU 9000 must not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return XDPPacket(pair.capture, OptXDPMode(mode), OptMultiBuffer(), *extra)


@BOTH_MODES
@pytest.mark.parametrize("variant", READ_VARIANTS)
def test_jumbo_frames_arrive_whole(jumbo_pair: VethPair, mode: XDPMode, variant: str) -> None:
    frames = jumbo_frames(jumbo_pair)
    with open_jumbo_socket(jumbo_pair, mode) as sock:
        send_frames(jumbo_pair.peer, frames)
        received, infos = read_frames(sock, len(frames), variant)
        assert received == frames
        assert [(info.capture_length, info.length) for info in infos] == [(n, n) for n in SIZES]
        stats = sock.get_stats()
        assert (stats.rx_packets, stats.rx_bytes, stats.rx_dropped) == (len(SIZES), sum(SIZES), 0)
        sock.check_frames()


@BOTH_MODES
@pytest.mark.parametrize(("expression", "matching"), [("greater 5000", (5000, 8000, 9014)),
                                                      ("len > 3999 and len < 8001", (4000, 5000, 8000))])
def test_a_length_filter_counts_every_buffer_of_a_jumbo_frame(
    jumbo_pair: VethPair, mode: XDPMode, expression: str, matching: tuple[int, ...]
) -> None:
    """A frags-aware program's packet pointers cover the first buffer only (about 3,500
    bytes on veth): the filter must take the length of the whole frame."""
    frames = jumbo_frames(jumbo_pair)
    with open_jumbo_socket(jumbo_pair, mode, OptFilter(expression), OptIoMode(IO_MODE_NONBLOCK),
                           OptPollTimeout(0)) as sock:
        send_frames(jumbo_pair.peer, frames)
        received, _ = read_frames(sock, len(matching), "read_multi_packets")
        assert received == [frame for frame in frames if len(frame) in matching]
        settle()
        assert sock.read_multi_packets(16) == ([], [])  # the others went to the kernel


@BOTH_MODES
def test_a_filter_reads_bytes_beyond_the_first_buffer_of_a_jumbo_frame(jumbo_pair: VethPair, mode: XDPMode) -> None:
    """Byte 4,500 lies in a later buffer (the first holds about 3,500 bytes on veth): the
    filter reads it with ``bpf_xdp_load_bytes``, as tcpdump reads the whole frame."""
    marked = {5000: 0x5A, 8000: 0x00, 9014: 0x5A}
    frames = []
    for frame in jumbo_frames(jumbo_pair):
        if len(frame) in marked:
            frame = frame[:4500] + bytes([marked[len(frame)]]) + frame[4501:]
        frames.append(frame)
    with open_jumbo_socket(jumbo_pair, mode, OptFilter("ether[4500] = 0x5a"), OptIoMode(IO_MODE_NONBLOCK),
                           OptPollTimeout(0)) as sock:
        send_frames(jumbo_pair.peer, frames)
        received, _ = read_frames(sock, 2, "read_multi_packets")
        assert received == [frame for frame in frames if len(frame) in (5000, 9014)]
        settle()
        assert sock.read_multi_packets(16) == ([], [])  # the others went to the kernel


@BOTH_MODES
@pytest.mark.parametrize("batch", [1, 7, 0], ids=["single", "batch", "single-then-batch"])
def test_zero_copy_reads_lend_single_frames_and_copy_joined_ones(
    jumbo_pair: VethPair, mode: XDPMode, batch: int
) -> None:
    """A frame within one UMEM frame comes as a view; one spread over several as ``bytes``.

    ``single-then-batch``: a single read reads the rest ahead, the batch read hands those out.
    """
    frames = jumbo_frames(jumbo_pair)
    one_frame_room = 4096 - 256
    kinds: list[str] = []
    received: list[bytes] = []
    with open_jumbo_socket(jumbo_pair, mode) as sock:
        send_frames(jumbo_pair.peer, frames)
        with watchdog(10):
            while len(received) < len(frames):
                if batch == 1 or (batch == 0 and not received):
                    packet, _ = sock.zero_copy_read_packet_data()
                    packets = [packet]
                else:
                    packets, _ = sock.zero_copy_read_multi_packets(batch or len(frames))
                kinds += ["view" if isinstance(packet, memoryview) else "bytes" if isinstance(packet, bytes)
                          else type(packet).__name__ for packet in packets]
                received += [bytes(packet) for packet in packets]  # views die at the next read
        assert received == frames
        assert kinds == ["view" if size <= one_frame_room else "bytes" for size in SIZES]
        sock.check_frames()


@BOTH_MODES
def test_jumbo_frames_are_sent_whole(jumbo_pair: VethPair, mode: XDPMode) -> None:
    frames = jumbo_frames(jumbo_pair, to_peer=True)
    with AfPacketCapture(jumbo_pair.peer) as capture, open_jumbo_socket(jumbo_pair, mode) as sock:
        assert sock.write_multi_packets(frames[:3]) == 3
        for frame in frames[3:5]:
            sock.write_packet(bytearray(frame))
        sock.write_packet(memoryview(frames[5]))
        assert sock.write_multi_packets(iter(frames[6:])) == 1
        assert capture.recv_frames(len(frames), timeout=5) == frames
        stats = sock.get_stats()
        assert (stats.tx_packets, stats.tx_bytes, stats.tx_invalid_descs) == (len(SIZES), sum(SIZES), 0)
        sock.check_frames()


@BOTH_MODES
def test_many_jumbo_frames_go_out_whole_through_a_short_tx_ring(jumbo_pair: VethPair, mode: XDPMode) -> None:
    """64 tx ring slots and frames, three descriptors a frame: each round queues whole frames only."""
    frames = [make_test_frame(9014 - seq, seq, jumbo_pair.peer_mac, jumbo_pair.capture_mac) for seq in range(100)]
    with AfPacketCapture(jumbo_pair.peer) as capture, \
            open_jumbo_socket(jumbo_pair, mode, OptNumFrames(64), OptRingSize(64)) as sock:
        assert sock.write_multi_packets(frames) == len(frames)
        assert capture.recv_frames(len(frames), timeout=5) == frames
        stats = sock.get_stats()
        assert (stats.tx_packets, stats.tx_bytes, stats.tx_invalid_descs) == (100, sum(map(len, frames)), 0)
        sock.check_frames()


@BOTH_MODES
def test_a_frame_over_the_descriptor_limit_is_refused_and_nothing_is_queued(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    """2048-byte frames at MTU 40000: frames longer than the kernel's descriptor limit allows."""
    limit = max_descriptors_per_packet()
    longest = limit * 2048
    set_mtu(40000, veth_pair.capture, veth_pair.peer)
    frames = [make_test_frame(size, seq, veth_pair.peer_mac, veth_pair.capture_mac)
              for seq, size in enumerate((1000, longest, longest + 1))]
    with AfPacketCapture(veth_pair.peer) as capture, \
            open_jumbo_socket(veth_pair, mode, OptFrameSize(2048), OptIoMode(IO_MODE_NONBLOCK)) as sock:
        with pytest.raises(ValueError, match="descriptors") as refused:
            sock.write_multi_packets(frames)
        assert str(refused.value) == (
            f"packet of {longest + 1} bytes is longer than the {longest} bytes this socket can send; with "
            f"OptMultiBuffer a frame may span at most {limit} descriptors of 2048 bytes (the kernel's limit: "
            f"net.core.max_skb_frags + 1); use OptFrameSize(4096)"
        )
        assert sock.get_stats().tx_packets == 0
        counts = sock.check_frames()
        assert counts["tx"] == {"completion ring": 0, "tx ring or kernel": 0}
        assert counts["umem"]["free"] == 1024  # all but the receive side's 1024: nothing was taken
        assert capture.recv_frames(1, timeout=0.2) == []
        assert sock.write_multi_packets(frames[:2]) == 2  # the limit itself goes out whole
        assert capture.recv_frames(2, timeout=5) == frames[:2]
        assert sock.get_stats().tx_packets == 2
        sock.check_frames()


@BOTH_MODES
def test_rx_never_hands_out_part_of_a_packet(jumbo_pair: VethPair, mode: XDPMode) -> None:
    """Non-blocking single reads of many jumbo frames: each read returns one whole frame."""
    frames = [make_test_frame(9014 - seq, seq, jumbo_pair.capture_mac, jumbo_pair.peer_mac) for seq in range(40)]
    with open_jumbo_socket(jumbo_pair, mode, OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000)) as sock:
        send_frames(jumbo_pair.peer, frames)
        received, _ = read_frames(sock, len(frames), "read_packet_data")
        assert received == frames
        assert sock.get_stats().rx_packets == len(frames)
        sock.check_frames()


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "zero-copy"])
def test_a_multi_queue_socket_reads_and_writes_jumbo_frames_whole(jumbo_pair: VethPair, copy: bool) -> None:
    frames = jumbo_frames(jumbo_pair)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mq = XDPMultiQueue(jumbo_pair.capture, OptQueueCount(1), OptXDPMode(XDP_MODE_SKB), OptMultiBuffer())
    with mq, AfPacketCapture(jumbo_pair.peer) as capture:
        send_frames(jumbo_pair.peer, frames)
        received: list[bytes] = []
        with watchdog(10):
            while len(received) < len(frames):
                packets, _ = mq.read_multi_packets(4) if copy else mq.zero_copy_read_multi_packets(4)
                received += [bytes(packet) for packet in packets]
        assert received == frames
        back = jumbo_frames(jumbo_pair, to_peer=True)
        assert mq.write_packet(back) == len(back)
        assert capture.recv_frames(len(back), timeout=5) == back
        stats = mq.get_stats()[0]  # the sum over the queues: the one queue
        assert (stats.rx_packets, stats.tx_packets, stats.rx_bytes) == (len(SIZES), len(SIZES), sum(SIZES))


@BOTH_MODES
def test_zero_copy_views_of_a_multi_buffer_socket_are_forwarded_in_place(jumbo_pair: VethPair, mode: XDPMode) -> None:
    """The one-buffer frames of a batch come as views and go back out in place; the frames
    spread over several buffers come as copies and go out copied; all arrive exactly."""
    frames = jumbo_frames(jumbo_pair)
    singles = [frame for frame in frames if len(frame) <= 3840]
    with AfPacketCapture(jumbo_pair.peer) as peer, open_jumbo_socket(
        jumbo_pair, mode, OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000)
    ) as sock:
        send_frames(jumbo_pair.peer, frames)
        settle()
        packets, _ = sock.zero_copy_read_multi_packets(len(frames), writable=True)
        assert [bytes(packet) for packet in packets] == frames
        assert sum(isinstance(packet, memoryview) for packet in packets) == len(singles)
        lent = sock.check_frames()["rx"]["lent"]
        assert sock.write_multi_packets(packets) == len(frames)
        # In place, the views' frames left the lease for the tx ring; copied, they would stay lent.
        assert sock.check_frames()["rx"]["lent"] == lent - len(singles)
        assert peer.recv_frames(len(frames), timeout=5) == frames


# ------------------------------------------------------------------- interruptions
def read_frames_as_read(sock: XDPPacket, count: int) -> list[object]:
    """The ``count`` packets waiting, in one zero-copy read (a second read would end the
    first one's views): views of one-buffer frames, copies of the others."""
    settle()
    packets = sock.zero_copy_read_multi_packets(count, writable=True)[0]
    assert len(packets) == count
    return list(packets)


def mixed_jumbo_frames(pair: VethPair, first_seq: int, to_peer: bool = False) -> list[bytes]:
    """One frame of each size in SIZES (one to three descriptors), numbered from ``first_seq``."""
    dst, src = (pair.peer_mac, pair.capture_mac) if to_peer else (pair.capture_mac, pair.peer_mac)
    return [make_test_frame(size, first_seq + index, dst, src) for index, size in enumerate(SIZES)]


@pytest.mark.parametrize("method", READ_VARIANTS)
def test_an_exception_at_every_line_of_a_multi_buffer_read_loses_no_frame(jumbo_pair: VethPair, method: str) -> None:
    """As the plain read's test in test_robustness: the exception lands at line 1, 2, 3, ...
    of one read of frames spread over several descriptors; nothing is lost for good or
    handed out twice, and whole frames still arrive afterwards."""
    sent: list[bytes] = []
    received: list[bytes] = []
    with open_jumbo_socket(jumbo_pair, XDP_MODE_SKB, OptNumFrames(64), OptRingSize(64),
                           OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000)) as sock:
        lines = EveryLine()
        for interrupted in lines:
            if not sock.pending_packets and not sock.check_frames()["rx"]["rx ring"]:
                batch = mixed_jumbo_frames(jumbo_pair, len(sent))
                send_frames(jumbo_pair.peer, batch)
                sent += batch
                settle()
            with interrupted():
                received += one_read(sock, method)
            sock.check_frames()
        assert lines.longest > 20
        received += read_after_chaos(sock, method)
        seqs = [frame_seq(frame) for frame in received]
        assert len(seqs) == len(set(seqs)), "a frame was handed out twice"
        assert set(received) <= set(sent)
        fresh = mixed_jumbo_frames(jumbo_pair, 1_000_000)
        send_frames(jumbo_pair.peer, fresh)
        assert read_frames(sock, len(fresh), method)[0] == fresh


@pytest.mark.parametrize("forwarded", [False, True], ids=["copies", "zero-copy-reads"])
def test_an_exception_at_every_line_of_a_multi_buffer_write_loses_no_frame(jumbo_pair: VethPair,
                                                                           forwarded: bool) -> None:
    """Copies, or a zero-copy read's batch written back (its views go in place, its joined
    frames are copied), with the exception at line 1, 2, 3, ... of the write."""
    frames = mixed_jumbo_frames(jumbo_pair, 0, to_peer=True)
    with AfPacketCapture(jumbo_pair.peer) as peer, open_jumbo_socket(
        jumbo_pair, XDP_MODE_SKB, OptNumFrames(64), OptRingSize(64), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000)
    ) as sock:
        lines = EveryLine()
        for line, interrupted in enumerate(lines, 1):
            packets: list[object] = list(frames)
            if forwarded:
                send_frames(jumbo_pair.peer, mixed_jumbo_frames(jumbo_pair, 1000 * line))
                packets = list(read_frames_as_read(sock, len(frames)))
            with interrupted():
                sock.write_multi_packets(packets)
            sock.check_frames()
        assert lines.longest > 20
        went_out = peer.recv_frames(10_000, timeout=0.5)  # whatever went out during the chaos
        assert all(len(frame) in SIZES for frame in went_out)  # whole frames only, never a part of one
        if forwarded:  # every round forwards frames of its own
            assert len(set(went_out)) == len(went_out), "a frame went out twice"
        else:
            assert set(went_out) <= set(frames)
        fresh = mixed_jumbo_frames(jumbo_pair, 2_000_000, to_peer=True)
        with watchdog(10):
            assert sock.write_multi_packets(fresh) == len(fresh)
        assert peer.recv_frames(len(fresh), timeout=5) == fresh
        sock.check_frames()
