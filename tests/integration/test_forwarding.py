"""Forwarding without a copy, and shared UMEM (SPEC: "Forwarding without a copy", ``OptSharedUmem``).

A zero-copy view written back to the socket that read it (or to one sharing its UMEM)
goes out in place: its frame moves from the lease to the tx ring, no free frame is taken
for a copy, and it returns to the pool once sent. The tests check the exact bytes the
peer receives and, through ``check_frames()``, where every frame of the UMEM is; the
conftest audits every socket's frames again when it closes.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from tests.integration.test_robustness import EveryLine
from tests.netns import AfPacketCapture, VethFactory, VethPair, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    frames_for_queue,
    frames_from_peer,
    macs_swapped,
    make_multiqueue_veth,
    read_frames,
    send_frames,
    send_on_rx_queue,
    settle,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    OptFrameSize,
    OptIoMode,
    OptMultiBuffer,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptRingSize,
    OptSharedUmem,
    OptXDPMode,
    XDPMode,
    XDPMultiQueue,
    XDPPacket,
)

SMALL = (OptNumFrames(64), OptRingSize(64))
NONBLOCK = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(2000))


def counts(sock: XDPPacket) -> tuple[int, int]:
    """(frames free or on the transmit side, frames lent as views), every frame checked.

    A view sent in place moves its frame from the second number to the first; a copy
    moves a frame within the first (free -> tx ring -> completion ring -> free).
    """
    census = sock.check_frames()
    return census["umem"]["free"] + sum(census["tx"].values()), census["rx"]["lent"]


def read_views(sock: XDPPacket, count: int, writable: bool = False) -> list[memoryview]:
    """Exactly ``count`` zero-copy views of one batch (the frames are waiting already)."""
    views, _ = sock.zero_copy_read_multi_packets(count, writable=writable)
    assert len(views) == count
    return views


@BOTH_MODES
def test_writable_views_forwarded_in_place_reach_the_peer_changed(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode
) -> None:
    """l2fwd: swap the MAC addresses inside each view, write the views back, many rounds."""
    rounds, batch = 12, 16  # 192 frames through 64 rx frames: each frame forwarded three times
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK) as sock:
        sent: list[bytes] = []
        for round_ in range(rounds):
            frames = frames_from_peer(veth_pair, batch, first_seq=round_ * batch)
            send_frames(veth_pair.peer, frames)
            sent += frames
            settle()
            views = read_views(sock, batch, writable=True)
            for view in views:
                view[:12] = bytes(view[6:12]) + bytes(view[:6])
            assert sock.write_multi_packets(views) == batch
            for view in views:
                with pytest.raises(ValueError, match="released"):
                    bytes(view)  # sent in place: the view is gone
            sock.check_frames()
        assert peer_capture.recv_frames(len(sent), timeout=5) == [macs_swapped(frame) for frame in sent]
        stats = sock.get_stats()
        assert (stats.rx_packets, stats.tx_packets) == (len(sent), len(sent))


@BOTH_MODES
def test_a_forwarded_view_takes_no_free_frame_and_a_slice_is_copied(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode
) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK) as sock:
        frames = frames_from_peer(veth_pair, 4)
        send_frames(veth_pair.peer, frames)
        settle()
        views = read_views(sock, 4)  # read-only views forward unchanged
        outside, lent = counts(sock)
        assert lent == 4
        sock.write_packet(views[0])  # in place: the frame leaves the lease for the tx ring
        assert counts(sock) == (outside + 1, 3)
        sock.write_packet(views[1][:])  # a slice is another object: copied into a free frame
        assert counts(sock) == (outside + 1, 3)
        sock.write_packet(bytes(views[2]))  # bytes: copied
        assert counts(sock) == (outside + 1, 3)
        assert bytes(views[1]) == frames[1]  # the copied views stay valid and the caller's
        assert bytes(views[3]) == frames[3]
        assert peer_capture.recv_frames(3, timeout=5) == frames[:3]
        sock.read_multi_packets(1)  # the next read ends the loan of the views kept
        settle()
        assert counts(sock)[1] == 0
        with pytest.raises(ValueError, match="released"):
            sock.write_packet(views[3])  # a view the next read released cannot be sent


@BOTH_MODES
def test_a_view_out_of_order_goes_in_place_from_every_batch_of_a_read_loop(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode
) -> None:
    """Each batch of a zero-copy read loop lends through the lease of the batch before
    (emptied and lent again): any one of its views, written alone, must still be found
    and sent in place, not copied, and the views kept must stay the caller's."""
    batch = 4
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK) as sock:
        forwarded = []
        for round_ in range(6):
            frames = frames_from_peer(veth_pair, batch, first_seq=round_ * batch)
            send_frames(veth_pair.peer, frames)
            settle()
            views = read_views(sock, batch)
            outside, lent = counts(sock)
            assert lent == batch
            chosen = (round_ * 3 + 1) % batch  # a different position each round
            sock.write_packet(views[chosen])
            forwarded.append(frames[chosen])
            assert counts(sock) == (outside + 1, batch - 1), f"round {round_}: view {chosen} was copied"
            assert [bytes(view) for i, view in enumerate(views) if i != chosen] == \
                [frame for i, frame in enumerate(frames) if i != chosen]
        assert peer_capture.recv_frames(len(forwarded), timeout=5) == forwarded


def test_a_view_exported_further_is_copied_and_the_others_go_in_place(
    veth_pair: VethPair, peer_capture: AfPacketCapture
) -> None:
    """A buffer exported from a view (here a PickleBuffer; NumPy does the same) pins it: it
    cannot be released, so that frame is copied,
    the views around it still go out in place, and all arrive in order."""
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL, *NONBLOCK) as sock:
        frames = frames_from_peer(veth_pair, 3)
        send_frames(veth_pair.peer, frames)
        settle()
        views = read_views(sock, 3, writable=True)
        pinned = pickle.PickleBuffer(views[1])
        assert sock.write_multi_packets(views) == 3
        assert peer_capture.recv_frames(3, timeout=5) == frames
        assert counts(sock)[1] == 1  # the pinned view's frame stays lent, the other two were sent
        assert bytes(views[1]) == frames[1]
        assert bytes(pinned.raw()) == frames[1]
        pinned.release()


def test_views_kept_stay_valid_and_forwarded_frames_come_back(
    veth_pair: VethPair, peer_capture: AfPacketCapture
) -> None:
    """Half a batch forwarded, half kept: the kept views show their bytes until the next
    read, and after both the frames return to the pool (none missing, none twice)."""
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.DRV), *SMALL, *NONBLOCK) as sock:
        at_start = counts(sock)
        frames = frames_from_peer(veth_pair, 8)
        send_frames(veth_pair.peer, frames)
        settle()
        views = read_views(sock, 8, writable=True)
        assert sock.write_multi_packets(views[::2]) == 4
        assert [bytes(view) for view in views[1::2]] == frames[1::2]
        assert peer_capture.recv_frames(4, timeout=5) == frames[::2]
        assert counts(sock)[1] == 4
        settle()
        sock.write_multi_packets([])  # a write takes the completed frames back into the pool
        sock.read_multi_packets(1)  # ends the loan of the kept views
        assert counts(sock) == at_start


def test_views_another_thread_sent_meanwhile_are_never_sent_twice(
    veth_pair: VethPair, peer_capture: AfPacketCapture
) -> None:
    """Two threads write the same read's views (a misuse, which must corrupt nothing). The
    late one checked all eight before the other sent the last four, then takes the lock: it
    must see that those four left the lease, send none of them again, and refuse the write
    before touching the first four, which stay valid."""
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.DRV), *SMALL, *NONBLOCK) as sock:
        frames = frames_from_peer(veth_pair, 8)
        send_frames(veth_pair.peer, frames)
        settle()
        views = read_views(sock, 8, writable=True)
        checked, half_sent = threading.Event(), threading.Event()
        outcome: list[object] = []

        def pause_before_the_write(frame: FrameType, event: str, arg: object) -> None:
            """Holds the late thread between its checks and its locked write."""
            code = frame.f_code
            if event == "call" and code.co_name == "write" and code.co_filename.endswith("_queue.py"):
                checked.set()
                half_sent.wait(5)

        def late_writer() -> None:
            sys.settrace(pause_before_the_write)
            try:
                outcome.append(sock.write_multi_packets(views))
            except ValueError as error:
                outcome.append(error)
            finally:
                sys.settrace(None)

        late = threading.Thread(target=late_writer)
        late.start()
        assert checked.wait(5)
        assert sock.write_multi_packets(views[4:]) == 4
        half_sent.set()
        late.join(5)
        assert len(outcome) == 1
        assert isinstance(outcome[0], ValueError), outcome  # released views
        sock.check_frames()  # a frame queued twice fails here
        assert peer_capture.recv_frames(5, timeout=1) == frames[4:]
        assert [bytes(view) for view in views[:4]] == frames[:4]


def test_views_a_nonblocking_write_did_not_queue_stay_the_callers(veth_pair: VethPair) -> None:
    """The interface goes down between read and write, with 32 frames already waiting in
    the 64-entry tx ring: only 32 of the 48 views fit, the other 16 stay valid and lent."""
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL, OptIoMode(IO_MODE_NONBLOCK),
                   OptPollTimeout(50_000)) as sock:
        frames = frames_from_peer(veth_pair, 48)
        send_frames(veth_pair.peer, frames)
        settle()
        views = read_views(sock, 48)
        kept = [bytes(view) for view in views]
        run_command("ip", "link", "set", "dev", veth_pair.capture, "down")
        try:
            assert sock.write_multi_packets(kept[:32]) == 32  # copies: they wait in the tx ring
            queued = sock.write_multi_packets(views)
        finally:
            run_command("ip", "link", "set", "dev", veth_pair.capture, "up")
        assert queued == 32
        assert [bytes(view) for view in views[queued:]] == kept[queued:]
        assert sock.check_frames()["rx"]["lent"] == 48 - queued


@BOTH_MODES
def test_shared_umem_multiqueue_forwards_between_queues_in_place(
    make_veth: VethFactory, mode: XDPMode
) -> None:
    pair = make_veth(2)
    with XDPMultiQueue(pair.capture, OptQueueCount(2), OptSharedUmem(), OptXDPMode(mode), *SMALL,
                       *NONBLOCK) as mq, AfPacketCapture(pair.peer) as capture:
        census = mq.check_frames()
        assert census[0]["umem"] == census[1]["umem"]  # one pool
        assert census[0]["umem"]["free"] == 2 * 2 * 64 - 2 * 64  # each queue holds its 64 rx frames
        first, second = mq.sockets
        frames = frames_from_peer(pair, 6)
        send_frames(pair.peer, frames)
        settle()
        views, infos = mq.zero_copy_read_multi_packets(6)
        assert sorted(bytes(view) for view in views) == sorted(frames)
        assert sum(queue["rx"]["lent"] for queue in mq.check_frames()) == 6
        assert second.write_multi_packets(views) == 6  # whatever queue they came in on
        assert sum(queue["rx"]["lent"] for queue in mq.check_frames()) == 0  # sent in place
        assert sorted(capture.recv_frames(6, timeout=5)) == sorted(frames)
        assert first.get_stats().tx_packets == 0
        assert second.get_stats().tx_packets == 6


@BOTH_MODES
def test_a_stalled_queue_of_a_shared_umem_does_not_starve_the_others(make_veth: VethFactory, mode: XDPMode) -> None:
    """Queue 0 is flooded and never read; queue 1 still receives every frame sent to it,
    many times its share, and queue 0 holds no more than its share although its fill ring
    could take twice as much."""
    pair = make_multiqueue_veth(make_veth, mode, queues=2)
    with XDPMultiQueue(pair.capture, OptQueueCount(2), OptSharedUmem(), OptXDPMode(mode), OptNumFrames(64),
                       OptRingSize(128), *NONBLOCK) as mq:
        stalled, reader = mq.sockets
        send_on_rx_queue(pair, 0, mode, frames_for_queue(pair, 0, 300))
        wanted = frames_for_queue(pair, 1, 320)
        got: list[bytes] = []
        for start in range(0, 320, 40):
            send_on_rx_queue(pair, 1, mode, wanted[start : start + 40])
            got += read_frames(reader, 40, "read_multi_packets")[0]
        assert got == wanted
        census = mq.check_frames()
        assert sum(census[0]["rx"].values()) == 64  # its share: fill ring and rx ring together
        assert census[0]["umem"]["free"] >= 64  # what sending needs is still there
        assert stalled.get_stats().rx_packets == 0


@BOTH_MODES
def test_shared_umem_between_two_interfaces_forwards_in_place_both_ways(
    make_veth: VethFactory, mode: XDPMode
) -> None:
    """l2fwd_2link: frames from interface A's peer leave through B to B's peer, and back."""
    a_pair, b_pair = make_veth(), make_veth()
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(XDPPacket(a_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK))
        b = stack.enter_context(XDPPacket(b_pair.capture, OptXDPMode(mode), OptSharedUmem(a), *NONBLOCK))
        assert (b.options.num_frames, b.options.frame_size) == (64, a.options.frame_size)
        at_b_peer = stack.enter_context(AfPacketCapture(b_pair.peer))
        at_a_peer = stack.enter_context(AfPacketCapture(a_pair.peer))
        for round_ in range(8):  # 128 frames each way through 128 frames in all
            towards_b = frames_from_peer(a_pair, 16, first_seq=round_ * 16)
            towards_a = frames_from_peer(b_pair, 16, first_seq=1000 + round_ * 16)
            send_frames(a_pair.peer, towards_b)
            send_frames(b_pair.peer, towards_a)
            settle()
            assert b.write_multi_packets(read_views(a, 16)) == 16
            assert counts(a)[1] == 0  # a's views went out through b in place
            assert a.write_multi_packets(read_views(b, 16)) == 16
            assert counts(b)[1] == 0
            assert at_b_peer.recv_frames(16, timeout=5) == towards_b
            assert at_a_peer.recv_frames(16, timeout=5) == towards_a
        a.check_frames()


def test_two_threads_forwarding_both_ways_over_a_shared_umem(make_veth: VethFactory) -> None:
    """Each socket of the pair is read in its own thread and its views sent out of the other:
    the pool's lock keeps the frames of both in order while both move them at once."""
    a_pair, b_pair = make_veth(), make_veth()
    count = 600
    with contextlib.ExitStack() as stack:
        # 512 frames: a receive share of 128 each, more than a burst of 50 needs
        a = stack.enter_context(XDPPacket(a_pair.capture, OptXDPMode(XDPMode.DRV), OptNumFrames(256),
                                          OptRingSize(128), *NONBLOCK))
        b = stack.enter_context(XDPPacket(b_pair.capture, OptXDPMode(XDPMode.DRV), OptSharedUmem(a), *NONBLOCK))
        at_b_peer = stack.enter_context(AfPacketCapture(b_pair.peer))
        at_a_peer = stack.enter_context(AfPacketCapture(a_pair.peer))
        errors: list[BaseException] = []

        def forward(source: XDPPacket, destination: XDPPacket) -> None:
            moved = 0
            deadline = time.monotonic() + 20
            try:
                while moved < count and time.monotonic() < deadline:
                    views, _ = source.zero_copy_read_multi_packets(16)
                    sent = 0
                    while sent < len(views):
                        sent += destination.write_multi_packets(views[sent:])
                    moved += len(views)
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        threads = [threading.Thread(target=forward, args=(a, b)), threading.Thread(target=forward, args=(b, a))]
        for thread in threads:
            thread.start()
        towards_b = frames_from_peer(a_pair, count)
        towards_a = frames_from_peer(b_pair, count, first_seq=10_000)
        for start in range(0, count, 50):
            send_frames(a_pair.peer, towards_b[start : start + 50])
            send_frames(b_pair.peer, towards_a[start : start + 50])
            time.sleep(0.002)
        for thread in threads:
            thread.join(30)
        assert not errors
        assert at_b_peer.recv_frames(count, timeout=5) == towards_b
        assert at_a_peer.recv_frames(count, timeout=5) == towards_a
        a.check_frames()


def test_a_socket_sharing_a_umem_outlives_the_one_that_made_it(make_veth: VethFactory) -> None:
    a_pair, b_pair = make_veth(), make_veth()
    a = XDPPacket(a_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL, *NONBLOCK)
    with XDPPacket(b_pair.capture, OptXDPMode(XDPMode.SKB), OptSharedUmem(a), *NONBLOCK) as b:
        a.close()  # its frames in rings are retired; b keeps the UMEM
        census = b.check_frames()
        assert census["umem"]["retired"] == 64  # what a's fill ring held when it closed
        frames = frames_from_peer(b_pair, 40)  # more than b's 32-frame share: frames circulate
        send_frames(b_pair.peer, frames[:20])
        settle()
        got, _ = read_frames(b, 20, "read_multi_packets")
        send_frames(b_pair.peer, frames[20:])
        settle()
        got += read_frames(b, 20, "zero_copy_read_multi_packets")[0]
        assert got == frames
        b.check_frames()


def test_shared_umem_refuses_what_it_cannot_do(veth_pair: VethPair, make_veth: VethFactory) -> None:
    other = make_veth()
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL) as a:
        with pytest.raises(ValueError, match=r"OptFrameSize\(value=2048\) conflicts with the shared UMEM"):
            XDPPacket(other.capture, OptSharedUmem(a), OptFrameSize(2048))
        with pytest.raises(ValueError, match="OptNumFrames"):
            XDPPacket(other.capture, OptSharedUmem(a), OptNumFrames(128))
        XDPPacket(other.capture, OptXDPMode(XDPMode.SKB), OptSharedUmem(a), *SMALL).close()  # agrees
        with pytest.raises(TypeError, match="OptSharedUmem takes an open XDPPacket"):
            XDPPacket(other.capture, OptSharedUmem("xa0"))
        with pytest.raises(TypeError, match=r"OptSharedUmem\(\) \(no socket\) is for XDPMultiQueue"):
            XDPPacket(other.capture, OptSharedUmem())
        with pytest.raises(TypeError, match="an XDPPacket takes"):
            XDPMultiQueue(other.capture, OptSharedUmem(a))
        with pytest.raises(ValueError, match="OptMultiBuffer"):
            XDPPacket(other.capture, OptSharedUmem(a), OptMultiBuffer())
        a.check_frames()
    with pytest.raises(ValueError, match="is closed"):
        XDPPacket(other.capture, OptSharedUmem(a))


def test_a_sharing_socket_that_fails_to_bind_gives_its_frames_back(veth_pair: VethPair) -> None:
    """Sharing a socket's UMEM on the very queue it is bound to: the kernel refuses the bind;
    the error names the queue, and the frames the new socket had put in its fill ring come
    back to the pool (the first socket's accounting stays exact and it keeps receiving)."""
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL, *NONBLOCK) as sock:
        before = sock.check_frames()["umem"]
        with pytest.raises(OSError, match=f"{veth_pair.capture} queue 0"):
            XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), OptSharedUmem(sock), *NONBLOCK)
        assert sock.check_frames()["umem"] == before
        frames = frames_from_peer(veth_pair, 8)
        send_frames(veth_pair.peer, frames)
        settle()
        assert read_frames(sock, 8, "read_multi_packets")[0] == frames


@pytest.fixture
def reads_ahead(veth_pair: VethPair) -> Iterator[XDPPacket]:
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL, *NONBLOCK) as sock:
        send_frames(veth_pair.peer, frames_from_peer(veth_pair, 6))
        settle()
        yield sock


def test_single_reads_hand_out_read_ahead_views_in_the_kind_they_were_read(reads_ahead: XDPPacket) -> None:
    sock = reads_ahead
    view, _ = sock.zero_copy_read_packet_data(writable=True)
    assert not view.readonly
    assert sock.pending_packets > 0
    with pytest.raises(ValueError, match="read ahead as writable views; read them with writable=True"):
        sock.zero_copy_read_packet_data()
    view, _ = sock.zero_copy_read_packet_data(writable=True)
    assert not view.readonly
    plain, _ = sock.read_packet_data()  # copies are always fine
    assert isinstance(plain, bytes)


# ------------------------------------------------------------------- interruptions


@pytest.mark.parametrize("shared", [False, True], ids=["one socket", "shared UMEM"])
def test_an_exception_at_every_line_of_a_forwarding_write_loses_no_frame(
    make_veth: VethFactory, shared: bool
) -> None:
    """Views forwarded in place while an exception lands at line 1, 2, 3, ... of the write
    (as a signal handler's would): every frame stays accounted for, none goes out twice,
    and forwarding still works afterwards."""
    a_pair, b_pair = make_veth(), make_veth()
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(XDPPacket(a_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL, *NONBLOCK))
        out = a
        out_pair = a_pair
        if shared:
            out = stack.enter_context(XDPPacket(b_pair.capture, OptXDPMode(XDPMode.SKB), OptSharedUmem(a),
                                                *SMALL, *NONBLOCK))
            out_pair = b_pair
        capture = stack.enter_context(AfPacketCapture(out_pair.peer))
        seq = 0
        lines = EveryLine()
        for interrupted in lines:
            frames = frames_from_peer(a_pair, 4, first_seq=seq)
            seq += 4
            send_frames(a_pair.peer, frames)
            settle()
            views = read_views(a, 4)
            with interrupted():
                out.write_multi_packets(views)
            a.check_frames()
        assert lines.longest > 30
        sent_through = capture.recv_frames(seq, timeout=2)
        assert len(sent_through) == len(set(sent_through)), "a frame went out twice"
        frames = frames_from_peer(a_pair, 8, first_seq=seq)
        send_frames(a_pair.peer, frames)
        settle()
        assert out.write_multi_packets(read_views(a, 8)) == 8
        assert capture.recv_frames(8, timeout=5) == frames
        a.check_frames()
