"""Arrival timestamps from the XDP metadata trailer, and custom programs' own metadata."""

from __future__ import annotations

import ctypes
import mmap
import struct
import time
from pathlib import Path

import pytest

from tests.netns import AfPacketSender, VethPair, make_test_frame
from tests.xdp_helpers import BOTH_MODES, frames_from_peer, read_frames, send_frames, settle
from xdppacket import (
    IO_MODE_NONBLOCK,
    CaptureInfo,
    OptBatchTimestamps,
    OptFrameSize,
    OptHeadroom,
    OptIoMode,
    OptNumFrames,
    OptRingSize,
    OptXDPMode,
    OptXDPProgram,
    XDPMode,
    XDPPacket,
)
from xdppacket._arrival import METADATA_MISSING_VARIABLE, SHIPPED_METADATA_SIZE

METADATA_PROGRAM = str(Path(__file__).resolve().parents[1] / "bpf" / "metadata.o")
NONBLOCK = (OptIoMode(IO_MODE_NONBLOCK),)
GAP_NS = 1_000_000
FRAME_SIZE = 2048


# Arrival times are the program's CLOCK_MONOTONIC stamps plus a CLOCK_REALTIME offset the
# library measures between two monotonic reads and keeps for a second (``realtime_offset``):
# off by half that bracket (microseconds) plus what NTP slewed since (100 ppm: 100 us).
OFFSET_SLACK_NS = 100_000


def send_spaced(pair: VethPair, frames: list[bytes], gap_s: float = GAP_NS / 1e9) -> list[tuple[int, int]]:
    """Send ``frames`` one by one ``gap_s`` apart; return CLOCK_REALTIME before and after each send.

    On a veth the program runs inside the send (the receive softirq runs before ``send``
    returns), so each frame's arrival lies within its own bracket however long the scheduler
    kept this thread off the CPU in between.
    """
    sends = []
    with AfPacketSender(pair.peer) as sender:
        for frame in frames:
            before = time.time_ns()
            sender.send(frame)
            sends.append((before, time.time_ns()))
            time.sleep(gap_s)
    return sends


def assert_each_stamped_during_its_send(sends: list[tuple[int, int]], stamps: list[int]) -> None:
    """Each arrival time lies within the bracket of its own frame's send.

    The brackets are at least the sending gap apart, so frames sharing one time (the time
    of their batch, or of the read) cannot pass: each needs its own.
    """
    assert all(after + GAP_NS <= next_before for (_, after), (next_before, _) in zip(sends, sends[1:]))
    for index, ((before, after), stamp) in enumerate(zip(sends, stamps)):
        assert before - OFFSET_SLACK_NS <= stamp <= after + OFFSET_SLACK_NS, (
            f"frame {index} stamped {stamp - before} ns after its send began, "
            f"which took {after - before} ns"
        )


def read_frames_sent_spaced(pair: VethPair, sock: XDPPacket, frames: list[bytes]) -> list[CaptureInfo]:
    """Send ``frames`` a millisecond apart, read them a little later in batches, check they
    came as sent, each stamped during its own send; return their ``CaptureInfo``s."""
    sends = send_spaced(pair, frames)
    time.sleep(0.03)
    got, infos = read_frames(sock, len(frames), "read_multi_packets")
    assert got == frames
    assert_each_stamped_during_its_send(sends, [info.timestamp_ns for info in infos])
    return infos


@BOTH_MODES
@pytest.mark.parametrize("method", ["read_multi_packets", "zero_copy_read_multi_packets", "read_packet_data"])
def test_frames_sent_a_millisecond_apart_and_read_late_are_stamped_a_millisecond_apart(
    veth_pair: VethPair, mode: XDPMode, method: str
) -> None:
    frames = frames_from_peer(veth_pair, 30)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *NONBLOCK) as sock:
        sends = send_spaced(veth_pair, frames)
        time.sleep(0.05)  # read late: the ring time would be 50 ms after every arrival
        read_started = time.time_ns()
        got, infos = read_frames(sock, len(frames), method, batch=64)
    assert got == frames
    stamps = [info.timestamp_ns for info in infos]
    assert_each_stamped_during_its_send(sends, stamps)  # each frame its own arrival time
    assert stamps[-1] < read_started - 40_000_000  # arrival, not the late read
    assert all(info.metadata == b"" for info in infos)


@BOTH_MODES
@pytest.mark.parametrize("headroom", [3, 100])
def test_arrival_times_hold_with_a_headroom_that_moves_frames_off_word_boundaries(
    veth_pair: VethPair, mode: XDPMode, headroom: int
) -> None:
    """OptHeadroom(3) starts every frame's data, and its trailer, 3 bytes past a word
    boundary (100: 4 bytes); each frame still gets its own arrival time."""
    frames = frames_from_peer(veth_pair, 10)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptHeadroom(headroom), *NONBLOCK) as sock:
        read_frames_sent_spaced(veth_pair, sock, frames)


@pytest.mark.parametrize("flag", [0, 1], ids=["trusted", "checked"])
def test_the_shipped_programs_flag_decides_whether_trailers_are_checked_and_times_hold_either_way(
    veth_pair: VethPair, flag: int
) -> None:
    """The flag clear (every frame got metadata, as on veth): trailers are taken as they
    are. Raised (as the program does when a driver refuses metadata): each is checked."""
    frames = frames_from_peer(veth_pair, 20)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.DRV), *NONBLOCK) as sock:
        variables = sock.program.global_variables
        assert variables[METADATA_MISSING_VARIABLE] == 0
        variables[METADATA_MISSING_VARIABLE] = flag
        read_frames_sent_spaced(veth_pair, sock, frames)


@pytest.mark.parametrize("flag", [0, 1], ids=["trusted", "checked"])
def test_a_socket_reads_its_programs_flag(veth_pair: VethPair, flag: int) -> None:
    """End to end, the flag a socket polls is its program's: the trailers of frames waiting
    in the ring are overwritten with a time in the future (through a writable view's
    mapping of the whole UMEM), which only a socket that checks them refuses."""
    frames = frames_from_peer(veth_pair, 9)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.DRV), OptFrameSize(FRAME_SIZE), *NONBLOCK) as sock:
        sock.program.global_variables[METADATA_MISSING_VARIABLE] = flag
        send_frames(veth_pair.peer, frames[:1])
        settle()
        views, _ = sock.zero_copy_read_multi_packets(1, writable=True)
        umem = views[0].obj  # the writable mapping the views come from: the whole UMEM
        assert isinstance(umem, mmap.mmap)
        view_buffer, umem_buffer = ctypes.c_char.from_buffer(views[0]), ctypes.c_char.from_buffer(umem)
        data_offset = (ctypes.addressof(view_buffer) - ctypes.addressof(umem_buffer)) % FRAME_SIZE
        del view_buffer, umem_buffer, views  # their exports would keep the view's frame lent
        send_frames(veth_pair.peer, frames[1:])
        settle()
        future = time.time_ns() + 10**12  # the shipped trailer holds CLOCK_REALTIME
        for chunk in range(0, len(umem), FRAME_SIZE):  # every frame's trailer, the waiting ones among them
            struct.pack_into("=Q", umem, chunk + data_offset - SHIPPED_METADATA_SIZE, future)
        read_started = time.time_ns()
        got, infos = read_frames(sock, len(frames) - 1, "read_multi_packets")
        del umem
    assert got == frames[1:]
    if flag:
        assert all(read_started <= info.timestamp_ns <= time.time_ns() for info in infos)  # the ring time
    else:
        assert all(info.timestamp_ns > time.time_ns() + 10**11 for info in infos)  # taken as written


@BOTH_MODES
@pytest.mark.parametrize("headroom", [0, 3])
def test_a_custom_program_hands_over_its_metadata_and_arrival_times(veth_pair: VethPair, mode: XDPMode,
                                                                   headroom: int) -> None:
    """Also with OptHeadroom(3), which starts the trailers 3 bytes past a word boundary."""
    frames = frames_from_peer(veth_pair, 12)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptXDPProgram(METADATA_PROGRAM), OptHeadroom(headroom),
                   *NONBLOCK) as sock:
        infos = read_frames_sent_spaced(veth_pair, sock, frames)
    assert [info.metadata for info in infos] == [b"CUSTOM" + bytes([0, i]) for i in range(len(frames))]


@BOTH_MODES
def test_a_frame_without_a_trailer_gets_the_ring_time_never_a_stale_one(veth_pair: VethPair, mode: XDPMode) -> None:
    """With 64 frames, every chunk is reused: the 0xEF frames (no metadata) land on chunks
    whose earlier frames left a trailer behind, which must not be mistaken for theirs."""
    stamped = frames_from_peer(veth_pair, 64)
    bare = [b"\xef" + frame[1:] for frame in frames_from_peer(veth_pair, 64, first_seq=100)]
    small = (OptNumFrames(64), OptRingSize(64))
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptXDPProgram(METADATA_PROGRAM), *small,
                   *NONBLOCK) as sock:
        send_frames(veth_pair.peer, stamped)
        settle()
        assert read_frames(sock, 64, "read_multi_packets")[0] == stamped
        send_frames(veth_pair.peer, bare)
        time.sleep(0.05)
        read_started = time.time_ns()
        got, infos = read_frames(sock, 64, "read_multi_packets")
    assert got == bare
    assert all(info.timestamp_ns >= read_started for info in infos)
    assert all(info.metadata == b"" for info in infos)


def test_a_program_that_writes_no_metadata_gets_ring_times(veth_pair: VethPair) -> None:
    frames = [make_test_frame(60, i, veth_pair.capture_mac, veth_pair.peer_mac) for i in range(5)]
    frames = [b"\xef" + frame[1:] for frame in frames]
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), OptXDPProgram(METADATA_PROGRAM),
                   *NONBLOCK) as sock:
        send_frames(veth_pair.peer, frames)
        time.sleep(0.03)
        read_started = time.time_ns()
        got, infos = read_frames(sock, 5, "read_multi_packets")
    assert got == frames
    assert len({info.timestamp_ns for info in infos}) == 1  # one batch, one ring time
    assert infos[0].timestamp_ns >= read_started


@BOTH_MODES
@pytest.mark.parametrize("method", ["read_multi_packets", "zero_copy_read_multi_packets"])
def test_batch_timestamps_share_the_time_of_the_read(veth_pair: VethPair, mode: XDPMode, method: str) -> None:
    frames = [make_test_frame(60, i, veth_pair.capture_mac, veth_pair.peer_mac) for i in range(10)]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptBatchTimestamps(), *NONBLOCK) as sock:
        send_spaced(veth_pair, frames)
        time.sleep(0.03)
        read_started = time.time_ns()
        packets, infos = getattr(sock, method)(64)
        assert [bytes(p) for p in packets] == frames
    assert all(info is infos[0] for info in infos)  # one shared CaptureInfo: equal lengths
    assert read_started <= infos[0].timestamp_ns <= time.time_ns()
