"""The data path under interruption, event loops, threads, fork and a vanishing interface.

Every test here ends with the frame audit of ``conftest.frames_accounted_at_close`` (each
socket's frames are checked when it closes), and most check ``check_frames()`` mid-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import multiprocessing
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.netns import AfPacketCapture, VethFactory, VethPair, frame_seq, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    QueueSenders,
    frames_for_queue,
    frames_from_peer,
    frames_to_peer,
    make_multiqueue_veth,
    read_frames,
    send_frames,
    settle,
    watchdog,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPMultiQueue,
    XDPPacket,
)
from xdppacket._xsk import XskSocket

SMALL = (OptNumFrames(64), OptRingSize(64))
NONBLOCK = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(1000))
READS = ["read_packet_data", "zero_copy_read_packet_data", "read_multi_packets", "zero_copy_read_multi_packets"]
WRITES = ["write_packet", "write_multi_packets"]
LIBRARY_DIR = str(Path(__file__).resolve().parents[2] / "xdppacket")


def tx_frames_at_rest(counts: dict[str, dict[str, int]]) -> int:
    """Frames neither held by the receive side nor being sent: the free ones beyond the
    receive side's share, plus those in the completion ring."""
    held_by_rx = sum(counts["rx"].values())
    return counts["umem"]["free"] + counts["tx"]["completion ring"] + held_by_rx - 64


class Injected(Exception):
    """Raised into the library's code at a chosen point, as a signal handler's exception would be."""


def one_read(sock: Any, method: str, batch: int = 8) -> list[bytes]:
    """One call of ``method``; its frames copied (views die at the next read); [] on timeout."""
    try:
        if method.endswith("multi_packets"):
            packets, _ = getattr(sock, method)(batch)
        else:
            packet, _ = getattr(sock, method)()
            packets = [packet]
    except TimeoutError:
        return []
    return [bytes(packet) for packet in packets]


def one_write(sock: XDPPacket, method: str, frames: list[bytes]) -> int:
    if method == "write_packet":
        sock.write_packet(frames[0])
        return 1
    return sock.write_multi_packets(frames)


@contextlib.contextmanager
def exception_at_line(number: int) -> Iterator[list[int]]:
    """Raise ``Injected`` at the ``number``-th line the library executes inside the block.

    Yields a one-element list that holds how many library lines ran (to know when
    ``number`` went past the end of the call).
    """
    seen = [0]

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            seen[0] += 1
            if seen[0] == number:
                raise Injected(f"at line {frame.f_lineno} of {frame.f_code.co_name}")
        return local

    def global_(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code.co_filename.startswith(LIBRARY_DIR) else None

    sys.settrace(global_)
    try:
        yield seen
    finally:
        sys.settrace(None)


class EveryLine:
    """Drives an every-line test: ``for interrupted in lines:``, then ``with interrupted():``
    around the one call to interrupt (an ``Injected`` it raises is swallowed). The first
    round raises at the call's first library line, the next at its second, and so on; the
    loop ends after the round whose call finished before its line, as every line has had
    its turn. ``longest``: the most library lines a call ran, over every loop so far.
    """

    def __init__(self) -> None:
        self.longest = 0

    def __iter__(self) -> Iterator[Callable[[], contextlib.AbstractContextManager[None]]]:
        line = 0
        while True:
            line += 1
            ran = [0]

            @contextlib.contextmanager
            def interrupted(line: int = line, ran: list[int] = ran) -> Iterator[None]:
                with exception_at_line(line) as seen, contextlib.suppress(Injected):
                    yield
                ran[0] = seen[0]

            yield interrupted
            self.longest = max(self.longest, ran[0])
            if ran[0] < line:
                return


# ------------------------------------------------------------------- interruptions


@BOTH_MODES
@pytest.mark.parametrize("method", READS)
def test_an_exception_at_every_line_of_a_read_loses_and_duplicates_no_frame(
    veth_pair: VethPair, mode: XDPMode, method: str
) -> None:
    """Deterministic: the exception lands at line 1, 2, 3, ... of one read, each in turn.

    Two rounds over every line, with frames waiting in the ring each time (so the read
    really moves frames), then the chaos is over: nothing lost for good, nothing twice.
    """
    received: list[bytes] = []
    sent: list[bytes] = []
    lines = EveryLine()
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK) as sock:
        for _ in range(2):
            for interrupted in lines:
                if not sock.pending_packets and not sock.check_frames()["rx"]["rx ring"]:
                    batch = frames_from_peer(veth_pair, 20, first_seq=len(sent))
                    send_frames(veth_pair.peer, batch)
                    sent += batch
                    settle()
                with interrupted():
                    received += one_read(sock, method)
                sock.check_frames()
        assert lines.longest > 20  # the calls that moved frames ran through many lines
        received += read_after_chaos(sock, method)
        seqs = [frame_seq(frame) for frame in received]
        assert len(seqs) == len(set(seqs)), "a frame was handed out twice"
        assert set(received) <= set(sent)
        assert_traffic_still_flows(veth_pair, sock, method)


@BOTH_MODES
@pytest.mark.parametrize("method", READS + WRITES)
def test_thousands_of_signal_interruptions_lose_no_frame(
    veth_pair: VethPair, mode: XDPMode, method: str
) -> None:
    """Random: a 200 us interval timer whose handler raises, as Ctrl-C's does."""
    interrupts = 0
    armed = [False]  # a plain list: a lock (threading.Event) could be held by the code interrupted

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if armed[0]:
            armed[0] = False  # one exception per attempt, never inside the test's own bookkeeping
            raise Injected

    previous = signal.signal(signal.SIGALRM, interrupt)
    outgoing = frames_to_peer(veth_pair, 16)
    try:
        with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK) as sock:
            signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
            deadline = time.monotonic() + 8
            attempts = seq = 0
            while interrupts < 1500 and time.monotonic() < deadline:
                attempts += 1
                if not method.startswith("write") and attempts % 10 == 1:
                    send_frames(veth_pair.peer, frames_from_peer(veth_pair, 16, first_seq=seq))
                    seq += 16
                try:
                    armed[0] = True
                    for _ in range(8):
                        if method.startswith("write"):
                            one_write(sock, method, outgoing)
                        else:
                            one_read(sock, method)
                    armed[0] = False
                except Injected:
                    interrupts += 1
                if attempts % 25 == 0:
                    sock.check_frames()
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            sock.check_frames()
            assert interrupts >= 1000, interrupts
            if method.startswith("write"):
                assert_writes_still_flow(veth_pair, sock, method)
            else:
                read_after_chaos(sock, method)
                assert_traffic_still_flows(veth_pair, sock, method)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)  # first: one C call, nothing can interrupt it
        signal.signal(signal.SIGALRM, previous)


@BOTH_MODES
@pytest.mark.parametrize("method", WRITES)
def test_an_exception_at_every_line_of_a_write_loses_no_frame(
    veth_pair: VethPair, mode: XDPMode, method: str
) -> None:
    frames = frames_to_peer(veth_pair, 8)
    with AfPacketCapture(veth_pair.peer) as peer, XDPPacket(
        veth_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK
    ) as sock:
        line, rounds = 1, 0
        while rounds < 2:
            with exception_at_line(line) as seen, contextlib.suppress(Injected):
                one_write(sock, method, frames)
            sock.check_frames()
            if seen[0] >= line:
                line += 1
            else:
                line, rounds = 1, rounds + 1
        assert line == 1
        peer.recv_frames(10_000, timeout=0.5)  # whatever went out during the chaos
        assert_writes_still_flow(veth_pair, sock, method, peer)


def read_after_chaos(sock: XDPPacket, method: str) -> list[bytes]:
    """Whatever is left, read with ``method`` until it times out twice."""
    frames: list[bytes] = []
    empty = 0
    with watchdog(10):
        while empty < 2:
            got = one_read(sock, method, batch=64)
            empty = 0 if got else empty + 1
            frames += got
    sock.check_frames()
    return frames


def assert_traffic_still_flows(pair: VethPair, sock: XDPPacket, method: str) -> None:
    """Fresh frames (more than the UMEM holds) all arrive, exactly, in order."""
    fresh = frames_from_peer(pair, 150, first_seq=1_000_000)
    got: list[bytes] = []
    for start in range(0, len(fresh), 50):
        send_frames(pair.peer, fresh[start : start + 50])
        got += read_frames(sock, 50, method, batch=16)[0]
    assert got == fresh
    counts = sock.check_frames()
    assert counts["rx"]["lent"] <= 16


def assert_writes_still_flow(pair: VethPair, sock: XDPPacket, method: str,
                             peer: AfPacketCapture | None = None) -> None:
    """Fresh frames (more than the UMEM holds) all reach the peer, exactly, in order."""
    fresh = frames_to_peer(pair, 150, first_seq=2_000_000)
    with contextlib.ExitStack() as stack:
        if peer is None:
            peer = stack.enter_context(AfPacketCapture(pair.peer))
            time.sleep(0.3)
            peer.recv_frames(100_000, timeout=0.2)
        with watchdog(10):
            for frame in fresh:
                while not one_write_blocking(sock, method, frame):
                    pass
        # Frames an interrupted write had queued but not kicked go out first: they were delayed.
        got = peer.recv_frames(len(fresh) + 64, timeout=3)
        assert [frame for frame in got if frame_seq(frame) >= 2_000_000] == fresh
    settle()
    counts = sock.check_frames()
    assert tx_frames_at_rest(counts) == 64


def one_write_blocking(sock: XDPPacket, method: str, frame: bytes) -> bool:
    try:
        return one_write(sock, method, [frame]) == 1
    except TimeoutError:
        return False


# ------------------------------------------------------------------------- event loops


def drain_with_selector(fileobj: Any, read: Any, expected: int) -> list[bytes]:
    """One read call per readiness event, as an event loop does, until ``expected`` frames came."""
    got: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        selector.register(fileobj, selectors.EVENT_READ)
        while len(got) < expected:
            if not selector.select(timeout=1.0):
                break  # a second without readiness: the rest is stranded
            got += read()
    return got


@BOTH_MODES
@pytest.mark.parametrize("blocking", [True, False], ids=["block", "nonblock"])
@pytest.mark.parametrize("method", READS)
def test_a_selector_loop_doing_one_read_per_event_gets_every_frame(
    veth_pair: VethPair, mode: XDPMode, method: str, blocking: bool
) -> None:
    sent = frames_from_peer(veth_pair, 200)
    io = () if blocking else NONBLOCK
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *io) as sock:
        send_frames(veth_pair.peer, sent)
        settle()
        got = drain_with_selector(sock, lambda: one_read(sock, method, batch=3), len(sent))
        assert got == sent


@BOTH_MODES
@pytest.mark.parametrize("method", ["read_packet", "zero_copy_read_packet", "read_multi_packets"])
def test_a_selector_on_the_multi_queue_descriptor_gets_every_frame(
    make_veth: VethFactory, mode: XDPMode, method: str
) -> None:
    pair = make_multiqueue_veth(make_veth, mode)
    sent = {queue: frames_for_queue(pair, queue, 60) for queue in range(4)}
    with XDPMultiQueue(pair.capture, OptQueueCount(4), OptXDPMode(mode), *NONBLOCK) as mq, \
            QueueSenders(pair, mode) as senders:
        for queue, frames in sent.items():
            senders.send(queue, frames)
        settle()

        def read() -> list[bytes]:
            packets, _ = getattr(mq, method)(*([2] if method.endswith("multi_packets") else []))
            return [bytes(packet) for packet in packets]

        got = drain_with_selector(mq.fileno(), read, 240)
        assert sorted(got) == sorted(frame for frames in sent.values() for frame in frames)
        # Each queue's own socket works with an event loop as well.
        for queue, frames in sent.items():
            senders.send(queue, frames)
        settle()
        for sock in mq.sockets:
            got = drain_with_selector(sock, lambda sock=sock: one_read(sock, "read_packet_data"), 60)
            assert got == sent[sock.queue_id]


@BOTH_MODES
@pytest.mark.parametrize("method", READS)
def test_asyncio_add_reader_doing_one_read_per_wakeup_gets_every_frame(
    veth_pair: VethPair, mode: XDPMode, method: str
) -> None:
    sent = frames_from_peer(veth_pair, 150)

    async def capture(sock: XDPPacket) -> list[bytes]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        done = loop.create_future()

        def on_readable() -> None:
            got.extend(one_read(sock, method, batch=2))
            if len(got) >= len(sent) and not done.done():
                done.set_result(None)

        loop.add_reader(sock.fileno(), on_readable)
        try:
            await asyncio.wait_for(done, timeout=5)
        finally:
            loop.remove_reader(sock.fileno())
        return got

    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *NONBLOCK) as sock:
        send_frames(veth_pair.peer, sent)
        settle()
        assert asyncio.run(capture(sock)) == sent


# ---------------------------------------------------------------------- fork, threads


def _child_closes(sock: XDPPacket) -> None:
    sock.close()


def _child_drops(sock: XDPPacket) -> None:
    del sock
    gc.collect()


@pytest.mark.parametrize("child", [_child_closes, _child_drops], ids=["close", "garbage-collected"])
def test_a_forked_child_that_closes_its_copy_leaves_the_parent_receiving(
    veth_pair: VethPair, child: Any
) -> None:
    frames = frames_from_peer(veth_pair, 30)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *NONBLOCK) as sock:
        worker = multiprocessing.get_context("fork").Process(target=child, args=(sock,))
        worker.start()
        worker.join(10)
        assert worker.exitcode == 0
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, 30, "read_multi_packets")[0] == frames


@BOTH_MODES
@pytest.mark.parametrize("multi", [False, True], ids=["XDPPacket", "XDPMultiQueue"])
def test_close_from_another_thread_wakes_a_blocked_read(veth_pair: VethPair, mode: XDPMode, multi: bool) -> None:
    sock: Any = (XDPMultiQueue(veth_pair.capture, OptXDPMode(mode)) if multi
                 else XDPPacket(veth_pair.capture, OptXDPMode(mode)))
    closed_at: list[float] = []

    def close_later() -> None:
        time.sleep(0.3)
        closed_at.append(time.monotonic())
        sock.close()

    closer = threading.Thread(target=close_later)
    closer.start()
    with watchdog(5), pytest.raises(ValueError, match="closed"):
        sock.read_multi_packets(8)
    woke_after = time.monotonic() - closed_at[0]
    closer.join()
    assert woke_after < 0.1
    assert sock.closed


def drop_last_reference(objects: list[Any]) -> None:
    objects.clear()
    gc.collect()


def test_a_socket_dropped_without_close_warns_and_is_closed(veth_pair: VethPair) -> None:
    sockets = [XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB))]
    description = repr(sockets[0])
    with pytest.warns(ResourceWarning, match=f"unclosed {description}"):
        drop_last_reference(sockets)
    # The queue is free again: a new socket binds it.
    XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB)).close()


@BOTH_MODES
@pytest.mark.parametrize("method", ["read_packet_data", "read_multi_packets"])
def test_two_threads_reading_one_socket_share_the_frames_without_corruption(
    veth_pair: VethPair, mode: XDPMode, method: str
) -> None:
    sent = frames_from_peer(veth_pair, 600)
    results: list[list[bytes]] = [[], []]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL, *NONBLOCK) as sock:
        stop = threading.Event()

        def reader(index: int) -> None:
            while not stop.is_set():
                results[index] += one_read(sock, method, batch=4)

        threads = [threading.Thread(target=reader, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for start in range(0, len(sent), 40):
            # 40 frames at a time, fewer than the 64 rx frames: the kernel never has to drop one.
            send_frames(veth_pair.peer, sent[start : start + 40])
            deadline = time.monotonic() + 5
            while sum(map(len, results)) < start + 40 and time.monotonic() < deadline:
                time.sleep(0.001)
        stop.set()
        for thread in threads:
            thread.join()
        got = results[0] + results[1]
        assert sorted(got) == sorted(sent)  # each frame exactly once, none corrupted
        assert results[0]
        assert results[1]
        sock.check_frames()


# --------------------------------------------------------------------------------- writes


def test_writes_take_any_ordered_iterable_and_refuse_unordered_ones_keeping_no_frame(
    veth_pair: VethPair, peer_capture: AfPacketCapture
) -> None:
    frames = frames_to_peer(veth_pair, 10)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *SMALL) as sock:
        for _ in range(200):  # more than the 64 tx frames: a leak would stop writes
            with pytest.raises(TypeError, match="order is undefined"):
                sock.write_multi_packets(set(frames))
            with pytest.raises(TypeError, match="order is undefined"):
                sock.write_multi_packets(dict.fromkeys(frames))
        assert sock.write_multi_packets(frame for frame in frames) == 10
        assert sock.write_multi_packets(iter(frames[:3])) == 3
        assert peer_capture.recv_frames(13, timeout=5) == frames + frames[:3]
        settle()
        assert tx_frames_at_rest(sock.check_frames()) == 64


@pytest.mark.parametrize("size", [1, 6, 13])
def test_frames_shorter_than_an_ethernet_header_are_refused(veth_pair: VethPair, size: int) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB)) as sock:
        with pytest.raises(ValueError, match=f"packet of {size} bytes is shorter than an Ethernet header"):
            sock.write_packet(b"\x01" * size)
        with pytest.raises(ValueError, match="shorter than an Ethernet header"):
            sock.write_multi_packets([b"\x02" * 60, b"\x01" * size])
        assert sock.get_stats().tx_packets == 0


@BOTH_MODES
def test_without_the_raised_tx_budget_writes_kick_again_on_eagain_and_send_everything(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kernels before 6.17 send 32 frames per kick and answer EAGAIN while more remain."""
    monkeypatch.setattr(XskSocket, "_raise_tx_budget", lambda self, ring_size: None)
    frames = frames_to_peer(veth_pair, 500)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptRingSize(256), OptNumFrames(256)) as sock:
        with watchdog(10):
            assert sock.write_multi_packets(frames) == 500
        assert peer_capture.recv_frames(500, timeout=5) == frames
        stats = sock.get_stats()
        assert stats.send_again >= 256 // 32 - 1  # the 32-frame budget ran out within a batch
        assert stats.tx_invalid_descs == 0


def test_a_zero_copy_views_object_gives_no_write_access(veth_pair: VethPair) -> None:
    frames = frames_from_peer(veth_pair, 2)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *NONBLOCK) as sock:
        send_frames(veth_pair.peer, frames)
        settle()
        view, _ = sock.zero_copy_read_packet_data()
        assert bytes(view) == frames[0]
        whole = memoryview(view.obj)
        assert whole.readonly
        with pytest.raises(TypeError):
            whole[0] = 1
        whole.release()


def test_a_multi_queue_wait_counts_one_poll_per_queue(make_veth: VethFactory) -> None:
    pair = make_multiqueue_veth(make_veth, XDPMode.SKB)
    with XDPMultiQueue(pair.capture, OptQueueCount(4), OptXDPMode(XDPMode.SKB), *NONBLOCK) as mq:
        assert mq.read_multi_packets(8) == ([], [])
        assert [stats.polls for stats in mq.get_stats()[1:]] == [1, 1, 1, 1]
        assert mq.get_stats()[0].polls == 4


# ------------------------------------------------------------------ vanished interface


def read_until_error(sock: Any) -> None:
    while True:
        sock.read_multi_packets(8)


@BOTH_MODES
@pytest.mark.parametrize("blocking", [True, False], ids=["block", "nonblock"])
@pytest.mark.parametrize("multi", [False, True], ids=["XDPPacket", "XDPMultiQueue"])
def test_a_read_raises_once_its_interface_is_deleted(
    make_veth: VethFactory, mode: XDPMode, blocking: bool, multi: bool
) -> None:
    pair = make_veth(1)
    io = () if blocking else NONBLOCK
    sock: Any = (XDPMultiQueue(pair.capture, OptXDPMode(mode), *io) if multi
                 else XDPPacket(pair.capture, OptXDPMode(mode), *io))
    with sock:
        deleted_at: list[float] = []

        def delete_later() -> None:
            time.sleep(0.2)
            run_command("ip", "link", "del", pair.capture)
            deleted_at.append(time.monotonic())

        deleter = threading.Thread(target=delete_later)
        deleter.start()
        with watchdog(10), pytest.raises(OSError, match="the interface is gone") as caught:
            read_until_error(sock)
        deleter.join()
        assert time.monotonic() - deleted_at[0] < 1.5
        assert caught.value.errno == errno.ENODEV
        assert f"{pair.capture} queue 0: the interface is gone" in str(caught.value)


def test_opening_a_socket_under_a_stream_of_signals_succeeds(veth_pair: VethPair) -> None:
    """The verifier answers EAGAIN when a signal lands while it works: loading retries."""
    handled = [0]

    def count(signum: int, frame: FrameType | None) -> None:
        handled[0] += 1

    previous = signal.signal(signal.SIGALRM, count)
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
    try:
        for _ in range(5):
            XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB)).close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert handled[0] > 0


# ----------------------------------------------------------------------- loops


def waited_for_a_cpu() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (/proc/thread-self/schedstat).

    Taken from a wall-clock time it leaves the time spent asleep or running, which the code
    under test decides, without the scheduler's latency on a loaded machine.
    """
    return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9


@pytest.mark.parametrize("io", [(), NONBLOCK], ids=["block", "nonblock"])
def test_packets_stops_at_count_and_at_timeout(veth_pair: VethPair, io: tuple[Any, ...]) -> None:
    frames = frames_from_peer(veth_pair, 10)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), *io) as sock:
        send_frames(veth_pair.peer, frames)
        with watchdog(5):
            assert [data for data, _ in sock.packets(count=4)] == frames[:4]
            started, queued_before = time.monotonic(), waited_for_a_cpu()
            rest = [data for data, _ in sock.packets(timeout=0.3)]
            elapsed, queued = time.monotonic() - started, waited_for_a_cpu() - queued_before
        assert rest == frames[4:]
        assert elapsed >= 0.3  # waited out the timeout
        assert elapsed - queued < 0.5, f"{elapsed:.3f} s, {queued:.3f} s of it waiting for a CPU"  # ended there
        assert list(sock.packets(count=0)) == []
        with pytest.raises(ValueError, match="count must be a non-negative int or None"):
            sock.packets(count=-1).__next__()


@BOTH_MODES
def test_a_for_loop_yields_copies_and_ends_when_another_thread_closes(veth_pair: VethPair, mode: XDPMode) -> None:
    frames = frames_from_peer(veth_pair, 20)
    sock = XDPPacket(veth_pair.capture, OptXDPMode(mode))
    got: list[bytes] = []
    closed_at: list[float] = []

    def send_then_close() -> None:
        send_frames(veth_pair.peer, frames)
        time.sleep(0.3)
        closed_at.append(time.monotonic())
        sock.close()

    worker = threading.Thread(target=send_then_close)
    worker.start()
    with watchdog(5):
        for data, info in sock:
            assert isinstance(data, bytes)
            assert info.length == len(data)
            got.append(data)
    ended_after = time.monotonic() - closed_at[0]
    worker.join()
    assert got == frames
    assert ended_after < 0.1
    assert sock.closed
