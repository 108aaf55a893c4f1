"""``xdppacket.aio``: coroutine reads and writes on real veth traffic, under both event loops.

Every test runs on the default asyncio loop and, when installed, on uvloop. Frames are
checked byte for byte and in order. The cancellation tests cancel thousands of reads and
writes at random moments, then check that no frame was lost or duplicated (the frames
read, ``check_frames()``, and the frames the peer received) and that traffic still flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from tests.netns import AfPacketCapture, AfPacketSender, VethPair, run_command
from tests.xdp_helpers import (
    MULTI_QUEUES,
    QueueSenders,
    frames_for_queue,
    frames_from_peer,
    frames_to_peer,
    macs_swapped,
    send_frames,
    split_by_queue,
)
from xdppacket import (
    IO_MODE_BLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPPacket,
    XDPWriteError,
)
from xdppacket.aio import AsyncXDPMultiQueue, AsyncXDPPacket, ReceiveProcess, ReceiveThread

T = TypeVar("T")
#: The ``run`` fixture: runs a coroutine to completion on a fresh event loop, returns its result.
Run = Callable[[Coroutine[Any, Any, Any]], Any]

NEW_UVLOOP: Callable[[], asyncio.AbstractEventLoop] | None
try:
    import uvloop

    NEW_UVLOOP = uvloop.new_event_loop
except ImportError:  # optional (the test extra installs it): the default loop is always tested
    NEW_UVLOOP = None

LOOPS = ["asyncio", "uvloop"]
READS = ["read_packet_data", "zero_copy_read_packet_data", "read_multi_packets",
         "zero_copy_read_multi_packets"]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a coroutine to completion on a fresh loop of the kind named by the parameter."""
    factory = asyncio.new_event_loop
    if request.param == "uvloop":
        if NEW_UVLOOP is None:
            pytest.skip("uvloop is not installed (pip install uvloop)")
        factory = NEW_UVLOOP

    def run_on_loop(coro: Coroutine[Any, Any, Any]) -> Any:
        loop = factory()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, 60))
        finally:
            loop.close()

    return run_on_loop


async def read_frames(sock: AsyncXDPPacket | AsyncXDPMultiQueue, variant: str, count: int) -> list[bytes]:
    """Exactly ``count`` frames through ``variant``; zero-copy views are copied at once."""
    frames: list[bytes] = []
    while len(frames) < count:
        result = await getattr(sock, variant)(*([min(64, count - len(frames))] if "multi" in variant else []))
        packets = result[0] if isinstance(result[0], list) else [result[0]]
        frames += [bytes(packet) for packet in packets]
    assert len(frames) == count
    return frames


async def ticking(seconds: float) -> int:
    """How many times a task got the loop in ``seconds``: the loop was never blocked if many."""
    ticks = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.001)
        ticks += 1
    return ticks


# ------------------------------------------------------------------------------ reading
@pytest.mark.parametrize("variant", READS)
def test_reads_wait_without_blocking_the_loop_then_return_exact_frames(
    veth_pair: VethPair, run: Run, variant: str
) -> None:
    frames = frames_from_peer(veth_pair, 300)

    async def main() -> None:
        # OptIoMode(IO_MODE_BLOCK) is ignored: waiting is the loop's.
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptIoMode(IO_MODE_BLOCK)) as sock:
            reader = asyncio.ensure_future(read_frames(sock, variant, len(frames)))
            assert await ticking(0.2) > 50  # the reader waits, the loop runs
            assert not reader.done()
            send_frames(veth_pair.peer, frames)
            assert await reader == frames
            stats = sock.get_stats()
            assert (stats.rx_packets, stats.rx_bytes) == (300, sum(map(len, frames)))

    run(main())


def test_async_for_yields_copies_and_break_loses_nothing(veth_pair: VethPair, run: Run) -> None:
    frames = frames_from_peer(veth_pair, 40)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
            send_frames(veth_pair.peer, frames)
            got: list[bytes] = []
            async for data, info in sock:
                assert isinstance(data, bytes)
                assert info.length == len(data)
                got.append(data)
                if len(got) == 3:
                    break
            async for packets, _ in sock.batches(8):
                got += packets
                if len(got) >= 20:
                    break
            got += await read_frames(sock, "read_multi_packets", len(frames) - len(got))
            assert got == frames

    run(main())


def test_zero_copy_batches_end_at_the_next_iteration(veth_pair: VethPair, run: Run) -> None:
    frames = frames_from_peer(veth_pair, 20)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
            send_frames(veth_pair.peer, frames)
            got: list[bytes] = []
            previous: list[memoryview] = []
            async for views, _ in sock.batches(5, zero_copy=True):
                assert all(isinstance(view, memoryview) for view in views)
                for old in previous:
                    with pytest.raises(ValueError, match="released"):
                        bytes(old)
                got += [bytes(view) for view in views]
                previous = views
                if len(got) == len(frames):
                    break
            assert got == frames

    run(main())


def frames_lent_and_outside(sock: AsyncXDPPacket) -> tuple[int, int]:
    """(frames lent as views, frames free or on the transmit side), every frame checked: a
    view sent in place moves its frame from the first number to the second."""
    census = sock.check_frames()
    return census["rx"]["lent"], census["umem"]["free"] + sum(census["tx"].values())


@pytest.mark.parametrize("read", ["zero_copy_read_multi_packets", "zero_copy_read_packet_data", "batches"])
def test_writable_views_are_forwarded_in_place(
    veth_pair: VethPair, peer_capture: AfPacketCapture, run: Run, read: str
) -> None:
    """l2fwd on the event loop: MACs swapped inside writable views, written back, sent without a copy."""
    frames = frames_from_peer(veth_pair, 8)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
            send_frames(veth_pair.peer, frames)
            if read == "zero_copy_read_multi_packets":
                views, _ = await sock.zero_copy_read_multi_packets(8, writable=True)
                while len(views) < 8:  # the frames may still be arriving: never the case in practice
                    views = views + (await sock.zero_copy_read_multi_packets(8 - len(views), writable=True))[0]
            elif read == "zero_copy_read_packet_data":
                views = [(await sock.zero_copy_read_packet_data(writable=True))[0]]
            else:
                views, _ = await sock.batches(8, zero_copy=True, writable=True).__anext__()
            for view in views:
                view[:12] = bytes(view[6:12]) + bytes(view[:6])
            lent, outside = frames_lent_and_outside(sock)
            assert lent >= len(views)
            assert await sock.write_multi_packets(views) == len(views)
            assert frames_lent_and_outside(sock) == (lent - len(views), outside + len(views))
            expected = [macs_swapped(frame) for frame in frames[: len(views)]]
            assert peer_capture.recv_frames(len(views), timeout=5) == expected

    run(main())


def test_multiqueue_views_are_writable_when_asked(mq_pair: VethPair, run: Run) -> None:
    sent = {queue: frames_for_queue(mq_pair, queue, 2) for queue in range(MULTI_QUEUES)}

    async def main() -> None:
        async with AsyncXDPMultiQueue(mq_pair.capture, OptXDPMode(XDP_MODE_SKB),
                                      OptQueueCount(MULTI_QUEUES)) as mq:
            with QueueSenders(mq_pair, XDP_MODE_SKB) as senders:
                for queue, frames in sent.items():
                    senders.send(queue, frames)
            views, _ = await mq.zero_copy_read_multi_packets(1, writable=True)
            assert not views[0].readonly
            views[0][0] ^= 0xFF  # a writable view changes the frame where it lies
            read_only, _ = await mq.zero_copy_read_packet()
            assert read_only
            assert all(view.readonly for view in read_only)

    run(main())


def test_close_wakes_a_waiting_read_and_ends_iteration(veth_pair: VethPair, run: Run) -> None:
    async def main() -> None:
        sock = AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB))
        reader = asyncio.ensure_future(sock.read_packet_data())

        async def iterate() -> int:
            return sum([1 async for _ in sock])

        iteration = asyncio.ensure_future(iterate())
        await asyncio.sleep(0.05)
        sock.close()
        with pytest.raises(ValueError, match="closed"):
            await asyncio.wait_for(reader, 1)
        assert await asyncio.wait_for(iteration, 1) == 0
        sock.close()  # idempotent

    run(main())


def test_concurrent_readers_all_wake_on_one_registration(veth_pair: VethPair, run: Run) -> None:
    """Three tasks wait on one socket; the loop watches its descriptor once and wakes them all.

    (``add_reader`` keeps one callback per descriptor: a waiter whose callback was replaced
    would only notice frames at the end of its wait slice, 250 ms later.)
    """
    frames = frames_from_peer(veth_pair, 3)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
            readers = [asyncio.ensure_future(sock.read_packet_data()) for _ in range(3)]
            await asyncio.sleep(0.05)
            send_frames(veth_pair.peer, frames)
            started = time.monotonic()
            done = await asyncio.gather(*readers)
            assert time.monotonic() - started < 0.15
            assert sorted(data for data, _ in done) == sorted(frames)

    run(main())


def test_close_wakes_a_waiting_write(veth_pair: VethPair, run: Run) -> None:
    frames = frames_to_peer(veth_pair, 2000)

    async def main() -> None:
        sock = AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptNumFrames(64), OptRingSize(64))
        writer = asyncio.ensure_future(sock.write_multi_packets(frames))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        sock.close()
        with pytest.raises(ValueError, match="closed"):
            await asyncio.wait_for(writer, 1)

    run(main())


# ------------------------------------------------------------------------------ writing
def test_writes_wait_for_room_and_every_frame_arrives_in_order(
    veth_pair: VethPair, peer_capture: AfPacketCapture, run: Run
) -> None:
    """3000 frames through 64 tx frames: the writes wait for completions, the loop keeps running."""
    frames = frames_to_peer(veth_pair, 3000)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptNumFrames(64),
                                  OptRingSize(64)) as sock:
            ticker = asyncio.ensure_future(ticking(0.3))
            assert await sock.write_multi_packets(iter(frames[:2000])) == 2000  # a generator is fine
            for frame in frames[2000:]:
                await sock.write_packet(frame)
            assert await ticker > 50
            assert sock.get_stats().tx_packets == 3000

    run(main())
    assert peer_capture.recv_frames(len(frames), 10) == frames


@pytest.mark.parametrize("mode", [XDP_MODE_SKB, XDP_MODE_DRV], ids=["skb", "drv"])
def test_a_write_to_a_down_interface_raises_enetdown_and_keeps_what_it_queued(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode, run: Run
) -> None:
    """The kernel takes nothing from the tx ring of a down interface: the write must not wait
    forever but raise ENETDOWN as a blocking write does; the frames it queued go out once
    the interface is up again."""
    frames = frames_to_peer(veth_pair, 100)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(mode), OptNumFrames(64),
                                  OptRingSize(64)) as sock:
            run_command("ip", "link", "set", veth_pair.capture, "down")
            started = time.monotonic()
            with pytest.raises(OSError, match="the interface is down") as caught:
                await sock.write_multi_packets(frames)
            assert time.monotonic() - started < 2
            assert caught.value.errno == errno.ENETDOWN
            assert str(caught.value) == (
                f"[Errno {errno.ENETDOWN}] writing to {veth_pair.capture} queue 0: the interface is "
                f"down (ip link set dev {veth_pair.capture} up); 64 frame(s) of this call were queued "
                f"and go out once it is up, the other 36 were not"
            )
            run_command("ip", "link", "set", veth_pair.capture, "up")
            assert await sock.write_multi_packets(frames[64:]) == 36

    run(main())
    assert peer_capture.recv_frames(100, timeout=5) == frames


def test_bad_frames_raise_before_anything_is_queued(
    veth_pair: VethPair, peer_capture: AfPacketCapture, run: Run
) -> None:
    frames = frames_to_peer(veth_pair, 10)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
            with pytest.raises(ValueError, match="longer than"):
                await sock.write_multi_packets([*frames, bytes(9000)])
            with pytest.raises(TypeError, match="order is undefined"):
                await sock.write_multi_packets(set(frames))
            assert sock.get_stats().tx_packets == 0

    run(main())
    assert peer_capture.recv_frames(1, 0.2) == []


# ------------------------------------------------------------------------- cancellation
async def cancel_at_random(rng: random.Random, coro: Awaitable[T]) -> tuple[bool, T | None]:
    """Run ``coro`` as a task and cancel it after a random number of loop turns (maybe none)."""
    task = asyncio.ensure_future(coro)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5])):
        await asyncio.sleep(0)
    if rng.random() < 0.2:
        await asyncio.sleep(rng.random() * 0.002)
    task.cancel()
    try:
        return True, await task
    except asyncio.CancelledError:
        return False, None


@pytest.mark.parametrize("mode", [XDP_MODE_SKB, XDP_MODE_DRV], ids=["skb", "drv"])
def test_cancelled_reads_lose_no_frame(veth_pair: VethPair, mode: XDPMode, run: Run) -> None:
    """3000 reads of every kind cancelled at random moments while frames keep arriving."""
    frames = frames_from_peer(veth_pair, 4000)
    rng = random.Random(11)

    async def main() -> None:
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(mode), OptNumFrames(256), OptRingSize(256)) as sock:
            got: list[bytes] = []
            sent = 0
            cancelled = 0
            with AfPacketSender(veth_pair.peer) as sender:
                for attempt in range(3000):
                    if attempt % 3 == 0 and sent < len(frames) and sent - len(got) < 100:
                        for frame in frames[sent : sent + 4]:
                            sender.send(frame)
                        sent = min(sent + 4, len(frames))
                    variant = rng.choice(READS)
                    args = [rng.randint(1, 8)] if "multi" in variant else []
                    completed, result = await cancel_at_random(rng, getattr(sock, variant)(*args))
                    if not completed:
                        cancelled += 1
                        continue
                    assert result is not None
                    packets = result[0] if isinstance(result[0], list) else [result[0]]
                    got += [bytes(packet) for packet in packets]
                for frame in frames[sent:]:
                    sender.send(frame)
            assert cancelled > 1000
            sock.check_frames()
            got += await read_frames(sock, "read_multi_packets", len(frames) - len(got))
            assert got == frames
            sock.check_frames()
            assert sock.get_stats().rx_dropped == 0

    run(main())


def test_cancelled_writes_leak_no_frame_and_traffic_still_flows(
    veth_pair: VethPair, peer_capture: AfPacketCapture, run: Run
) -> None:
    """2000 writes cancelled at random: each call's frames arrive as a prefix of it, in order."""
    rng = random.Random(12)
    calls: list[list[bytes]] = []
    seq = 0
    for _ in range(2000):
        size = rng.randint(1, 6)  # about 7000 frames in all: the peer's socket buffer holds them
        calls.append([frame for frame in frames_to_peer(veth_pair, max(2, size), first_seq=seq)][:size])
        seq += size

    async def main() -> int:
        cancelled = 0
        async with AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptNumFrames(64),
                                  OptRingSize(64)) as sock:
            for call in calls:
                writes = sock.write_multi_packets(call) if len(call) > 1 else sock.write_packet(call[0])
                completed, _ = await cancel_at_random(rng, writes)
                cancelled += not completed
            last = frames_to_peer(veth_pair, 500, first_seq=seq)
            assert await sock.write_multi_packets(last) == 500
            await asyncio.sleep(0.1)
            sock.check_frames()
            return cancelled

    cancelled = run(main())
    received_all = peer_capture.recv_frames(10**6, 1.0)  # everything sent, already queued
    assert cancelled > 200
    last = frames_to_peer(veth_pair, 500, first_seq=seq)
    assert received_all[-500:] == last
    rest = received_all[:-500]
    position = 0
    for call in calls:  # each call contributed a prefix of its frames, calls in order
        taken = 0
        while taken < len(call) and position < len(rest) and rest[position] == call[taken]:
            taken += 1
            position += 1
    assert position == len(rest), "a frame arrived that no write call queued, or out of order"


# -------------------------------------------------------------------------- multi-queue
@pytest.fixture
def mq_pair(make_veth: Callable[..., VethPair]) -> VethPair:
    return make_veth(MULTI_QUEUES, MULTI_QUEUES + 1)  # generic mode: capture queue q <- peer tx q + 1


def small_multiqueue(pair: VethPair, *options: object) -> AsyncXDPMultiQueue:
    """Generic mode, MULTI_QUEUES queues of 64 frames each: a queue's tx half fills after 64."""
    return AsyncXDPMultiQueue(pair.capture, OptXDPMode(XDP_MODE_SKB), OptQueueCount(MULTI_QUEUES),
                              OptNumFrames(64), OptRingSize(64), *options)


@pytest.mark.parametrize("variant", ["read_packet", "zero_copy_read_packet", "read_multi_packets",
                                     "zero_copy_read_multi_packets"])
def test_multiqueue_reads_every_queue_through_one_descriptor(
    mq_pair: VethPair, run: Run, variant: str
) -> None:
    sent = {queue: frames_for_queue(mq_pair, queue, 30 + 10 * queue) for queue in range(MULTI_QUEUES)}

    async def main() -> None:
        async with AsyncXDPMultiQueue(mq_pair.capture, OptXDPMode(XDP_MODE_SKB), OptQueueCount(MULTI_QUEUES)) as mq:
            total = sum(map(len, sent.values()))
            reader = asyncio.ensure_future(read_multiqueue(mq, variant, total))
            assert await ticking(0.1) > 20
            with QueueSenders(mq_pair, XDP_MODE_SKB) as senders:
                for queue, frames in sent.items():
                    senders.send(queue, frames)
            frames, infos = await reader
            assert split_by_queue(frames, infos) == sent

    run(main())


async def read_multiqueue(mq: AsyncXDPMultiQueue, variant: str, count: int) -> tuple[list[bytes], list[Any]]:
    frames: list[bytes] = []
    infos: list[Any] = []
    while len(frames) < count:
        args = [min(16, count - len(frames))] if "multi" in variant else []
        packets, batch_infos = await getattr(mq, variant)(*args)
        frames += [bytes(packet) for packet in packets]
        infos += batch_infos
    assert len(frames) == count
    return frames, infos


def test_multiqueue_reads_are_fair_between_queues(mq_pair: VethPair, run: Run) -> None:
    """A busy queue does not starve a quiet one: the first batches take from both."""
    async def main() -> None:
        async with AsyncXDPMultiQueue(mq_pair.capture, OptXDPMode(XDP_MODE_SKB), OptQueueCount(2)) as mq:
            with QueueSenders(mq_pair, XDP_MODE_SKB) as senders:
                senders.send(0, frames_for_queue(mq_pair, 0, 200))
                senders.send(1, frames_for_queue(mq_pair, 1, 10))
            packets, infos = await mq.read_multi_packets(20)
            assert sorted(info.queue_id for info in infos) == [0] * 10 + [1] * 10

    run(main())


def test_multiqueue_cancelled_reads_and_writes_lose_nothing(
    mq_pair: VethPair, run: Run
) -> None:
    rng = random.Random(13)
    sent = {queue: frames_for_queue(mq_pair, queue, 300) for queue in range(MULTI_QUEUES)}
    out = frames_to_peer(mq_pair, 1200)

    async def main() -> None:
        async with small_multiqueue(mq_pair, OptPollTimeout(5)) as mq:
            with QueueSenders(mq_pair, XDP_MODE_SKB) as senders:
                for queue, queue_frames in sent.items():
                    senders.send(queue, queue_frames[:40])
            frames: list[bytes] = []
            infos: list[Any] = []
            for _ in range(1500):
                variant = rng.choice(["read_packet", "read_multi_packets", "zero_copy_read_multi_packets"])
                args = [rng.randint(1, 8)] if "multi" in variant else []
                completed, result = await cancel_at_random(rng, getattr(mq, variant)(*args))
                if completed:
                    assert result is not None
                    frames += [bytes(packet) for packet in result[0]]
                    infos += result[1]
            mq.check_frames()
            with QueueSenders(mq_pair, XDP_MODE_SKB) as senders:
                for start in range(40, 300, 40):  # at most 40 frames waiting per queue of 64 rx frames
                    more, more_infos = await read_multiqueue(mq, "read_multi_packets", start * MULTI_QUEUES - len(frames))
                    frames += more
                    infos += more_infos
                    for queue, queue_frames in sent.items():
                        senders.send(queue, queue_frames[start : start + 40])
            more, more_infos = await read_multiqueue(mq, "read_multi_packets", 1200 - len(frames))
            assert split_by_queue(frames + more, infos + more_infos) == sent
            assert sum(stats.rx_dropped for stats in mq.get_stats()[1:]) == 0
            # Writes: spread round-robin; a cancelled one may have sent only part of its frames.
            with AfPacketCapture(mq_pair.peer) as capture:
                for start in range(0, 600, 4):  # 150 writes cancelled at random moments
                    await cancel_at_random(rng, mq.write_packet(out[start : start + 4]))
                assert await mq.write_packet(out[600:]) == 600
                await asyncio.sleep(0.1)
                mq.check_frames()
                loop = asyncio.get_running_loop()
                arrived = await loop.run_in_executor(None, capture.recv_frames, 1200, 2.0)
            assert len(set(arrived)) == len(arrived)
            assert set(out[600:]) <= set(arrived) <= set(out)

    run(main())


def test_multiqueue_write_waits_for_room_and_sends_every_frame_once(
    mq_pair: VethPair, run: Run
) -> None:
    """2000 frames over 4 queues of 64 tx frames each: the sync write fills up, the rest waits."""
    frames = frames_to_peer(mq_pair, 2000)

    async def main() -> None:
        async with small_multiqueue(mq_pair) as mq:
            with pytest.raises(ValueError, match="shorter than an Ethernet header"):
                await mq.write_packet([frames[0], b"x", frames[1]])  # nothing queued, no queue used up
            assert await mq.write_packet(frames[:1001]) == 1001
            assert await mq.write_packet(frames[1001:]) == 999
            per_queue = [stats.tx_packets for stats in mq.get_stats()[1:]]
            assert per_queue == [500, 500, 500, 500]

    with AfPacketCapture(mq_pair.peer) as capture:
        run(main())
        arrived = capture.recv_frames(2001, 1.0)
    assert sorted(arrived) == sorted(frames)


def test_multiqueue_write_to_a_down_interface_raises_instead_of_waiting_forever(
    mq_pair: VethPair, run: Run
) -> None:
    """Each queue's tx half fills (64 frames), then the write reports the down interface."""
    frames = frames_to_peer(mq_pair, 2000)

    async def main() -> None:
        async with small_multiqueue(mq_pair) as mq:
            run_command("ip", "link", "set", mq_pair.capture, "down")
            with pytest.raises(XDPWriteError, match="the interface is down") as caught:
                await mq.write_packet(frames)
            assert isinstance(caught.value.__cause__, OSError)
            assert caught.value.__cause__.errno == errno.ENETDOWN
            assert caught.value.sent == sum(stats.tx_packets for stats in mq.get_stats()[1:]) > 0
            run_command("ip", "link", "set", mq_pair.capture, "up")

    run(main())


# ----------------------------------------------------------------------- ReceiveThread
def test_receive_thread_hands_every_frame_to_the_loop_in_order(
    veth_pair: VethPair, run: Run
) -> None:
    frames = frames_from_peer(veth_pair, 600)
    rng = random.Random(14)

    async def main() -> None:
        sock = XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB))
        async with ReceiveThread(sock, batch_size=16, max_batches=1000) as runner:
            got: list[bytes] = []
            with AfPacketSender(veth_pair.peer) as sender:
                for start in range(0, len(frames), 20):
                    for frame in frames[start : start + 20]:
                        sender.send(frame)
                    # Cancelled gets take nothing: what they would have had comes next.
                    completed, batch = await cancel_at_random(rng, runner.get())
                    if completed:
                        assert batch is not None
                        got += batch[0]
            async for packets, infos in runner:
                assert [info.length for info in infos] == list(map(len, packets))
                got += packets
                if len(got) >= len(frames):
                    break
            assert got == frames
            stats = runner.stats()
            assert (stats.read_packets, stats.delivered_packets, stats.dropped_packets) == (600, 600, 0)
            waiting = asyncio.ensure_future(runner.get())
            await asyncio.sleep(0.01)
        assert sock.closed
        with pytest.raises(EOFError):
            await waiting

    run(main())


def test_receive_thread_drops_and_counts_batches_when_the_consumer_falls_behind(
    veth_pair: VethPair, run: Run
) -> None:
    frames = frames_from_peer(veth_pair, 100)

    async def main() -> None:
        sock = XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB))
        async with ReceiveThread(sock, batch_size=4, max_batches=2) as runner:
            send_frames(veth_pair.peer, frames)
            deadline = time.monotonic() + 5
            while runner.stats().read_packets < len(frames) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            stats = runner.stats()
            assert (stats.read_packets, stats.delivered_packets, runner.pending_batches) == (100, 0, 2)
            first, _ = await runner.get()
            second, _ = await runner.get()
            assert first + second == frames[: len(first) + len(second)]  # the oldest are kept
            stats = runner.stats()
            assert stats.dropped_packets == 100 - len(first) - len(second)
            assert stats.dropped_batches >= stats.dropped_packets / 4
            assert stats.delivered_packets == len(first) + len(second)
            assert sock.get_stats().rx_dropped == 0  # the ring itself never overflowed

    run(main())


# ---------------------------------------------------------------------- ReceiveProcess
def test_receive_process_hands_every_frame_to_the_loop_in_order(
    veth_pair: VethPair, run: Run
) -> None:
    frames = frames_from_peer(veth_pair, 600)

    async def main() -> None:
        async with ReceiveProcess(XDPPacket, veth_pair.capture, OptXDPMode(XDP_MODE_SKB), batch_size=32) as runner:
            child = runner.pid
            assert child is not None
            got: list[bytes] = []
            with AfPacketSender(veth_pair.peer) as sender:
                for start in range(0, len(frames), 100):
                    for frame in frames[start : start + 100]:
                        sender.send(frame)
                    while len(got) < start + 100:
                        packets, infos = await asyncio.wait_for(runner.get(), 10)
                        assert [(info.length, info.queue_id) for info in infos] == [(len(p), 0) for p in packets]
                        got += packets
            assert got == frames
            stats = runner.stats()
            assert (stats.read_packets, stats.delivered_packets, stats.dropped_packets) == (600, 600, 0)
            assert runner.kernel_dropped == 0
        assert runner.pid is None
        with pytest.raises(ChildProcessError):
            os.waitpid(child, os.WNOHANG)  # reaped
        with pytest.raises(EOFError):
            await runner.get()
        # The child released the queue: it can be opened again at once.
        AsyncXDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)).close()

    run(main())


def test_receive_process_raises_what_opening_the_socket_raised(run: Run) -> None:
    async def main() -> None:
        runner = ReceiveProcess(XDPPacket, "no-such-if0")
        with pytest.raises(OSError, match="no-such-if0"):
            await runner.start()
        assert runner.pid is None

    run(main())


def test_receive_process_drops_and_counts_what_the_consumer_cannot_take(
    veth_pair: VethPair, run: Run
) -> None:
    frames = frames_from_peer(veth_pair, 400)

    async def main() -> None:
        async with ReceiveProcess(XDPPacket, veth_pair.capture, OptXDPMode(XDP_MODE_SKB), batch_size=8,
                                  buffer_bytes=16384) as runner:
            send_frames(veth_pair.peer, frames)
            await asyncio.sleep(0.5)  # the child reads everything; most does not fit the buffer
            got: list[bytes] = []
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    got += (await asyncio.wait_for(runner.get(), 0.3))[0]
            assert 0 < len(got) < 400
            assert set(got) <= set(frames)
            assert got == sorted(got, key=frames.index)  # in order, gaps where batches were dropped
            # Counters travel with the batches: one more frame brings them up to date.
            send_frames(veth_pair.peer, frames[:1])
            assert (await asyncio.wait_for(runner.get(), 5))[0] == frames[:1]
            stats = runner.stats()
            assert (stats.read_packets, stats.delivered_packets) == (401, len(got) + 1)
            assert stats.dropped_packets == 400 - len(got)
            assert stats.dropped_batches >= stats.dropped_packets / 8
            assert runner.kernel_dropped == 0

    run(main())
