"""``XDPMultiQueue`` on a 4-queue veth pair, in generic and native mode.

Traffic is put on each capture queue deterministically: an AF_XDP socket on the right
tx queue of the peer sends it (``QueueSenders``; which peer queue reaches which capture
queue depends on the mode, see ``peer_tx_queue_reaching``). Every frame is distinct, so
each check says exactly which frame arrived on which queue, and that none was lost or
returned twice.

What is checked: reads take at most one frame per queue (``read_packet``) or share a
batch fairly (a flooded queue does not hold back the others); one non-blocking call
waits one poll timeout in all, and a blocking one returns as soon as any queue has a
frame; writes go round-robin over the queues, continue the rotation across calls, queue
nothing when a frame is invalid and report ``XDPWriteError.sent`` when a queue is stuck;
stats are exact per queue with their sum first; every UMEM frame stays accounted for;
bad queue counts are refused before anything is attached.
"""

from __future__ import annotations

import errno
import itertools
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.netns import AfPacketCapture, VethFactory, VethPair, make_test_frame, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    MULTI_QUEUES,
    QueueSenders,
    attached_prog_id,
    frames_for_queue,
    frames_to_peer,
    open_fd_count,
    read_multiqueue,
    socket_mapping_count,
    split_by_queue,
    wait_until,
    wait_until_blocked,
    watchdog,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    CaptureInfo,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptQueueID,
    OptRingSize,
    OptXDPMode,
    XDPError,
    XDPMode,
    XDPMultiQueue,
    XDPPacket,
    XDPWriteError,
    get_xdp_socket_from_multi_queue,
)

QUEUES = OptQueueCount(MULTI_QUEUES)
NONBLOCK = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(20_000))
BATCHED_READS = ["read_multi_packets", "zero_copy_read_multi_packets"]



def wait_all_queues_readable(mq: XDPMultiQueue) -> None:
    """Every queue has at least one frame in its rx ring (so a read sees all of them)."""
    fds = [sock.fileno() for sock in mq.sockets]
    assert wait_until(lambda: len(select.select(fds, [], [], 0)[0]) == len(fds))


def assert_nothing_more(mq: XDPMultiQueue) -> None:
    """A non-blocking ``mq`` has no frame left on any queue."""
    assert mq.read_multi_packets(64) == ([], [])


# ---------------------------------------------------------------------- what arrives where


@BOTH_MODES
def test_read_packet_takes_at_most_one_frame_per_queue(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    # Queue q gets q + 1 frames, so the queues run dry one after the other.
    sent = {queue: frames_for_queue(pair, queue, queue + 1) for queue in range(MULTI_QUEUES)}
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        for queue, frames in sent.items():
            senders.send(queue, frames)
        wait_all_queues_readable(mq)
        received: dict[int, list[bytes]] = {queue: [] for queue in range(MULTI_QUEUES)}
        calls = []
        with watchdog(10):
            while sum(map(len, received.values())) < 10:
                packets, infos = mq.read_packet()
                queues = [info.queue_id for info in infos]
                assert len(set(queues)) == len(queues), f"two frames of one queue: {queues}"
                for packet, info in zip(packets, infos):
                    assert (info.interface_index, info.length) == (mq.ifindex, len(packet))
                    received[info.queue_id].append(packet)
                calls.append(sorted(queues))
        assert calls[0] == [0, 1, 2, 3]  # every queue had a frame: one from each
        assert len(calls) >= 4  # queue 3 has four frames and gives one per call
        assert received == sent
        assert_nothing_more(mq)


@BOTH_MODES
@pytest.mark.parametrize("variant", BATCHED_READS)
def test_batched_reads_return_every_frame_once_from_its_queue(
    pair: VethPair, senders: QueueSenders, mode: XDPMode, variant: str
) -> None:
    sent = {queue: frames_for_queue(pair, queue, 40 + 7 * queue) for queue in range(MULTI_QUEUES)}
    total = sum(map(len, sent.values()))
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        for queue, frames in sent.items():
            senders.send(queue, frames)
        frames, infos = read_multiqueue(mq, total, variant, batch=16)
        assert split_by_queue(frames, infos) == sent
        assert {info.interface_index for info in infos} == {mq.ifindex}
        assert_nothing_more(mq)


@BOTH_MODES
def test_each_socket_of_the_multiqueue_reads_its_own_queue(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        sockets = get_xdp_socket_from_multi_queue(mq)
        assert sockets == mq.sockets
        assert [sock.queue_id for sock in sockets] == [0, 1, 2, 3]
        assert all(sock.options.queue_id == i for i, sock in enumerate(sockets))
        frames = frames_for_queue(pair, 2, 5)
        senders.send(2, frames)
        with watchdog(10):
            received = [sockets[2].read_packet_data()[0] for _ in frames]
        assert received == frames
        assert_nothing_more(mq)


@BOTH_MODES
def test_zero_copy_views_of_every_queue_end_at_the_next_multiqueue_read(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        frames = frames_for_queue(pair, 1, 2)
        senders.send(1, frames)
        wait_until(lambda: bool(select.select([mq.sockets[1].fileno()], [], [], 0)[0]))
        views, infos = mq.zero_copy_read_packet()
        assert ([bytes(view) for view in views], [info.queue_id for info in infos]) == (frames[:1], [1])
        senders.send(3, frames_for_queue(pair, 3, 1))
        # The next read returns the other frames (queue 1's second, queue 3's) and ends the view.
        read_multiqueue(mq, 2, "zero_copy_read_multi_packets")
        with pytest.raises(ValueError, match="released memoryview"):
            bytes(views[0])
        later, _ = mq.zero_copy_read_multi_packets(16)
    assert later == []
    # close() ends views too; a view of queue 3 taken just before close() is released.
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        senders.send(3, frames_for_queue(pair, 3, 1, first_seq=5))
        views, _ = read_multiqueue_views(mq)
    with pytest.raises(ValueError, match="released memoryview"):
        bytes(views[0])


def read_multiqueue_views(mq: XDPMultiQueue) -> tuple[list[memoryview], list[CaptureInfo]]:
    """One non-empty zero-copy batch from ``mq`` (non-blocking), views left as they are."""
    with watchdog(10):
        while True:
            views, infos = mq.zero_copy_read_multi_packets(16)
            if views:
                return views, infos


# ------------------------------------------------------------------------------- fairness


@BOTH_MODES
@pytest.mark.parametrize("variant", BATCHED_READS)
def test_a_flooded_queue_does_not_hold_back_the_others(
    pair: VethPair, senders: QueueSenders, mode: XDPMode, variant: str
) -> None:
    flood = frames_for_queue(pair, 0, 600)
    few = {queue: frames_for_queue(pair, queue, 3) for queue in (1, 2, 3)}
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        senders.send(0, flood)  # queued first: a first-come reader would drain it first
        for queue, frames in few.items():
            senders.send(queue, frames)
        wait_all_queues_readable(mq)
        early: dict[int, list[bytes]] = {}
        for _ in range(4):  # a handful of batches of 16, while ~550 flood frames still wait
            packets, infos = getattr(mq, variant)(16)
            for queue, frames in split_by_queue([bytes(p) for p in packets], infos).items():
                early.setdefault(queue, []).extend(frames)
        assert {queue: early.get(queue) for queue in few} == few
        assert len(early[0]) >= 16  # the flooded queue got the rest of each batch
        rest, rest_infos = read_multiqueue(mq, 600 - len(early[0]), variant)
        assert {info.queue_id for info in rest_infos} == {0}
        assert early[0] + rest == flood


@BOTH_MODES
def test_single_frame_batches_rotate_over_busy_queues(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        for queue in range(MULTI_QUEUES):
            senders.send(queue, frames_for_queue(pair, queue, 8))
        wait_all_queues_readable(mq)
        order = [mq.read_multi_packets(1)[1][0].queue_id for _ in range(12)]
        # Each call starts one queue further along: every queue in turn, none favoured.
        for start in range(0, 12, 4):
            assert sorted(order[start : start + 4]) == [0, 1, 2, 3], order


# ---------------------------------------------------------------------------------- stats


@BOTH_MODES
def test_stats_are_exact_per_queue_and_summed_first(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    sent = {queue: frames_for_queue(pair, queue, 5 * (queue + 1)) for queue in range(MULTI_QUEUES)}
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK) as mq:
        for queue, frames in sent.items():
            senders.send(queue, frames)
        read_multiqueue(mq, 50, "read_multi_packets", batch=16)
        stats = mq.get_stats()
        assert len(stats) == 1 + MULTI_QUEUES
        for queue, frames in sent.items():
            per_queue = stats[1 + queue]
            assert (per_queue.rx_packets, per_queue.rx_bytes) == (len(frames), sum(map(len, frames)))
            assert (per_queue.tx_packets, per_queue.rx_dropped) == (0, 0)
        totals = stats[0].as_dict()
        for field, value in totals.items():
            assert value == sum(queue_stats.as_dict()[field] for queue_stats in stats[1:]), field
        assert (totals["rx_packets"], totals["rx_bytes"]) == (
            50, sum(len(frame) for frames in sent.values() for frame in frames)
        )


# ------------------------------------------------------------------------ waiting for data

TIMEOUT_US = 50_000
TIMEOUT_S = TIMEOUT_US / 1e6


@BOTH_MODES
@pytest.mark.parametrize("variant", ["read_packet", "zero_copy_read_packet", *BATCHED_READS])
def test_a_nonblocking_read_of_idle_queues_waits_one_poll_timeout_in_all(
    pair: VethPair, mode: XDPMode, variant: str
) -> None:
    options = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(TIMEOUT_US))
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode), *options) as mq:
        for _ in range(3):
            started = time.monotonic()
            assert getattr(mq, variant)() == ([], [])
            elapsed = time.monotonic() - started
            # One timeout per queue would take four times as long.
            assert TIMEOUT_S <= elapsed < MULTI_QUEUES * TIMEOUT_S, elapsed
        assert all(queue_stats.rx_empty >= 3 for queue_stats in mq.get_stats()[1:])


def start_reader(mq: XDPMultiQueue) -> tuple[threading.Thread, list[Any]]:
    """A thread calling ``mq.read_packet()``; the list gets (its result, when it returned)."""
    result: list[Any] = []

    def read() -> None:
        result.append((mq.read_packet(), time.monotonic()))

    thread = threading.Thread(target=read)
    thread.start()
    return thread, result


@BOTH_MODES
def test_a_blocking_read_returns_as_soon_as_any_queue_has_a_frame(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode)) as mq:
        for queue in (3, 1, 0, 2):
            reader, result = start_reader(mq)
            frame = frames_for_queue(pair, queue, 1)[0]
            try:
                assert reader.native_id is not None
                wait_until_blocked(reader.native_id)  # really waiting, on all four queues
                sent_at = time.monotonic()
                senders.send(queue, [frame])
                reader.join(timeout=10)
            finally:
                if reader.is_alive():  # never leave it blocked on sockets about to close
                    senders.send(queue, [frame])
                    reader.join(timeout=10)
            assert result, "the reader failed"
            (packets, infos), returned_at = result[0]
            assert (packets, [info.queue_id for info in infos]) == ([frame], [queue])
            assert returned_at - sent_at < 0.5


# ---------------------------------------------------------------------------------- writes


def tx_per_queue(mq: XDPMultiQueue) -> list[tuple[int, int]]:
    return [(stats.tx_packets, stats.tx_bytes) for stats in mq.get_stats()[1:]]


def expected_tx(frames: list[bytes], first_queue: int = 0) -> list[tuple[int, int]]:
    """(packets, bytes) per queue when ``frames`` go round-robin from ``first_queue``."""
    totals = [(0, 0)] * MULTI_QUEUES
    for i, frame in enumerate(frames):
        queue = (first_queue + i) % MULTI_QUEUES
        packets, size = totals[queue]
        totals[queue] = (packets + 1, size + len(frame))
    return totals


def add(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(x[0] + y[0], x[1] + y[1]) for x, y in zip(a, b)]


@BOTH_MODES
def test_writes_go_round_robin_and_continue_the_rotation(pair: VethPair, mode: XDPMode) -> None:
    # Frames of distinct sizes: each queue's tx_bytes says which frames it sent.
    frames = frames_to_peer(pair, 16)
    with AfPacketCapture(pair.peer) as peer_capture, XDPMultiQueue(
        pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK
    ) as mq:
        assert mq.write_packet(frames[:8]) == 8  # queues 0 1 2 3 0 1 2 3
        assert tx_per_queue(mq) == expected_tx(frames[:8])
        assert all(packets == 2 for packets, _ in tx_per_queue(mq))
        assert mq.write_packet(frames[8:13]) == 5  # queues 0 1 2 3 0
        after = add(expected_tx(frames[:8]), expected_tx(frames[8:13]))
        assert tx_per_queue(mq) == after
        assert mq.write_packet(frames[13:16]) == 3  # the rotation goes on: queues 1 2 3
        assert tx_per_queue(mq) == add(after, expected_tx(frames[13:16], first_queue=1))
        assert sorted(peer_capture.recv_frames(16, timeout=5)) == sorted(frames)
        assert mq.get_stats()[0].tx_packets == 16


@BOTH_MODES
@pytest.mark.parametrize("bad", ["oversized", "empty"])
def test_an_invalid_frame_in_a_write_queues_nothing(pair: VethPair, mode: XDPMode, bad: str) -> None:
    frames = frames_to_peer(pair, 4)
    invalid = make_test_frame(4097, 99, pair.peer_mac, pair.capture_mac) if bad == "oversized" else b""
    with AfPacketCapture(pair.peer) as peer_capture, XDPMultiQueue(
        pair.capture, QUEUES, OptXDPMode(mode), *NONBLOCK
    ) as mq:
        assert mq.write_packet(frames[:1]) == 1  # the rotation is now at queue 1
        with pytest.raises(ValueError, match="empty packet" if bad == "empty" else "4097 bytes"):
            mq.write_packet([frames[1], frames[2], invalid, frames[3]])
        assert mq.get_stats()[0].tx_packets == 1
        assert peer_capture.recv_frames(2, timeout=0.3) == frames[:1]
        # The refused call did not move the rotation: the next frame goes out of queue 1.
        assert mq.write_packet(frames[1:2]) == 1
        assert [stats.tx_packets for stats in mq.get_stats()[1:]] == [1, 1, 0, 0]
        assert peer_capture.recv_frames(1, timeout=5) == frames[1:2]


@BOTH_MODES
def test_a_stuck_queue_raises_write_error_saying_how_many_were_sent(
    pair: VethPair, mode: XDPMode
) -> None:
    frames = frames_to_peer(pair, 76)
    small = (OptNumFrames(64), OptRingSize(64))
    with AfPacketCapture(pair.peer) as peer_capture, XDPMultiQueue(
        pair.capture, QUEUES, OptXDPMode(mode), *small, *NONBLOCK
    ) as mq:
        # Down, the kernel refuses to send (ENETDOWN): queued frames stay on the tx ring.
        run_command("ip", "link", "set", pair.capture, "down")
        assert mq.sockets[2].write_multi_packets(frames[:64]) == 64  # queue 2 is now full
        with pytest.raises(XDPWriteError) as caught:
            mq.write_packet(frames[64:72])  # queues 0 1 2 ...: 0 and 1 take two each, 2 none
        error = caught.value
        assert isinstance(error, XDPError)
        assert error.sent == 4
        assert str(error) == (
            f"{pair.capture} queue 2 took 0 of its 2 frame(s) within the poll timeout; "
            f"4 of 8 frame(s) were queued in all"
        )
        assert [stats.tx_packets for stats in mq.get_stats()[1:]] == [2, 2, 64, 0]

        # Up again: the next write kicks every queue, and all that was queued goes out.
        run_command("ip", "link", "set", pair.capture, "up")
        assert mq.write_packet(frames[72:76]) == 4
        expected = frames[:64] + frames[64:66] + frames[68:70] + frames[72:76]
        assert sorted(peer_capture.recv_frames(len(expected), timeout=5)) == sorted(expected)
        assert peer_capture.recv_frames(1, timeout=0.2) == []


# ---------------------------------------------------------------------- frame accounting


def lent_frames(sock: XDPPacket) -> int:
    """How many rx frames of ``sock`` are lent out as zero-copy views (checking every frame)."""
    return sock.check_frames()["rx"]["lent"]


def assert_rx_frames_accounted(sock: XDPPacket) -> None:
    """Every frame of ``sock`` is in exactly one place, none is missing, none drifted."""
    sock.check_frames()


@BOTH_MODES
def test_every_rx_frame_stays_accounted_for_through_mixed_reads(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    num_frames, burst, bursts = 64, 32, 24  # 768 frames per queue: 12 times its rx frames
    options = (OptNumFrames(num_frames), OptRingSize(64), OptXDPMode(mode), *NONBLOCK)
    reads: Iterator[Callable[[XDPMultiQueue], tuple[list[Any], list[CaptureInfo]]]] = itertools.cycle([
        lambda mq: mq.read_packet(),
        lambda mq: mq.zero_copy_read_packet(),
        lambda mq: mq.read_multi_packets(16),
        lambda mq: mq.zero_copy_read_multi_packets(16),
        lambda mq: mq.zero_copy_read_multi_packets(5),
    ])  # fmt: skip
    received: dict[int, list[bytes]] = {queue: [] for queue in range(MULTI_QUEUES)}
    kept: list[memoryview] = []  # slices of zero-copy views kept past the next read
    with XDPMultiQueue(pair.capture, QUEUES, *options) as mq:
        for sock in mq.sockets:
            assert_rx_frames_accounted(sock)
        with watchdog(30):
            for number in range(bursts):
                for queue in range(MULTI_QUEUES):
                    senders.send(queue, frames_for_queue(pair, queue, burst, number * burst))
                got = 0
                while got < burst * MULTI_QUEUES:
                    packets, infos = next(reads)(mq)
                    for packet, info in zip(packets, infos):
                        received[info.queue_id].append(bytes(packet))
                    if packets and isinstance(packets[0], memoryview) and number % 3 == 0:
                        kept.append(packets[0][14:])  # holds its frame back from the kernel
                    elif kept and number % 3 == 1:
                        kept.pop(0)
                    got += len(packets)
                    for sock in mq.sockets:
                        assert_rx_frames_accounted(sock)
        kept.clear()
        mq.read_multi_packets(1)  # ends the last lease; the held frames go back too
        for sock in mq.sockets:
            assert_rx_frames_accounted(sock)
            assert lent_frames(sock) == 0
        for queue in range(MULTI_QUEUES):
            sent = [
                frame for number in range(bursts)
                for frame in frames_for_queue(pair, queue, burst, number * burst)
            ]  # fmt: skip
            assert received[queue] == sent
            stats = mq.get_stats()[1 + queue]
            assert (stats.rx_packets, stats.rx_dropped, stats.rx_fill_ring_empty_descs) == (
                burst * bursts, 0, 0
            )


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("count", "message"),
    [(0, r"^OptQueueCount\(0\): must be from 1 to 64$"), (65, r"^OptQueueCount\(65\): must be from 1 to 64$")],
)
def test_queue_counts_out_of_range_are_refused(count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OptQueueCount(count)


@BOTH_MODES
def test_more_queues_than_the_interface_has_is_refused_before_anything_is_attached(
    pair: VethPair, mode: XDPMode
) -> None:
    fds, mappings = open_fd_count(), socket_mapping_count()
    with pytest.raises(ValueError, match=(
        rf"^OptQueueCount\(5\): {pair.capture} has only 4 rx queue\(s\); use OptQueueCount\(4\) "
        r"or fewer"
    )):  # fmt: skip
        XDPMultiQueue(pair.capture, OptQueueCount(5), OptXDPMode(mode))
    with pytest.raises(TypeError, match="^XDPMultiQueue does not take OptQueueID; use OptQueueCount$"):
        XDPMultiQueue(pair.capture, OptQueueID(1))
    assert attached_prog_id(pair.capture_index) == 0
    assert (open_fd_count(), socket_mapping_count()) == (fds, mappings)


@BOTH_MODES
def test_a_busy_queue_fails_the_whole_multiqueue_and_frees_the_others(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    with XDPPacket(pair.capture, OptXDPMode(mode), OptQueueID(2)):  # the blocker
        fds, mappings = open_fd_count(), socket_mapping_count()
        prog_id = attached_prog_id(pair.capture_index)
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno and text checked below
            XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode))
        assert caught.value.errno == errno.EBUSY
        assert f"{pair.capture} queue 2 failed" in str(caught.value)
        assert (open_fd_count(), socket_mapping_count()) == (fds, mappings)
        assert attached_prog_id(pair.capture_index) == prog_id
        # Queues 0 and 1, opened before queue 2 failed, were released: they can be bound again.
        with XDPMultiQueue(pair.capture, OptQueueCount(2), OptXDPMode(mode), *NONBLOCK) as mq:
            frames = frames_for_queue(pair, 1, 3)
            senders.send(1, frames)
            assert read_multiqueue(mq, 3, "read_multi_packets")[0] == frames
    assert attached_prog_id(pair.capture_index) == 0


@BOTH_MODES
def test_close_releases_everything_and_is_idempotent(pair: VethPair, mode: XDPMode) -> None:
    fds, mappings = open_fd_count(), socket_mapping_count()
    mq = XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(mode))
    assert (mq.ifname, mq.ifindex, mq.options.queue_count) == (pair.capture, pair.capture_index, 4)
    assert not mq.closed
    assert attached_prog_id(pair.capture_index) != 0
    mq.close()
    mq.close()
    assert mq.closed
    assert all(sock.closed for sock in mq.sockets)
    assert attached_prog_id(pair.capture_index) == 0
    assert (open_fd_count(), socket_mapping_count()) == (fds, mappings)
    with pytest.raises(ValueError, match="closed"):
        mq.read_packet()
    with pytest.raises(ValueError, match="closed"):
        mq.get_stats()


def test_native_mode_on_a_veth_whose_peer_has_more_tx_queues_names_the_fix(
    make_veth: VethFactory,
) -> None:
    pair = make_veth(MULTI_QUEUES, MULTI_QUEUES + 1)  # the generic-mode test topology
    fds, mappings = open_fd_count(), socket_mapping_count()
    with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno and text checked below
        XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(XDP_MODE_DRV))
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).endswith(
        "(the device has too few queues for native XDP (for veth: fewer rx queues than its peer "
        "has tx queues; give both ends the same counts), or use OptXDPMode(XDP_MODE_SKB))"
    )
    assert attached_prog_id(pair.capture_index) == 0
    assert (open_fd_count(), socket_mapping_count()) == (fds, mappings)


@pytest.mark.parametrize("mode", [XDP_MODE_SKB], ids=["skb"])
def test_multiqueue_write_of_one_packet_asks_for_a_list(pair: VethPair) -> None:
    with XDPMultiQueue(pair.capture, QUEUES, OptXDPMode(XDP_MODE_SKB)) as mq, pytest.raises(
        TypeError, match=r"^XDPMultiQueue.write_packet takes a sequence of packets, not one packet"
    ):
        mq.write_packet(bytes(60))
