"""One process per queue: each process has its own ``XDPPacket`` on its own queue.

The first process attaches the XDP program; later ones join it (they find its BPF link by
id and hold their own descriptors), so the program stays attached while any of them
runs, whoever attached it, and goes away when the last one exits, even by SIGKILL. Two
sockets on one queue, or a process asking for the other XDP mode, get a clear error.

The processes are children of the test (``child_process``), in its network namespace.
Each reports on stdout what it attached or joined and every frame it reads, and the
test compares that with what it sent to the child's queue.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import subprocess
from contextlib import AbstractContextManager

import pytest

from tests.netns import AfPacketCapture, VethFactory, VethPair, frame_seq, run_in_subprocess
from tests.xdp_helpers import (
    BOTH_MODES,
    MULTI_QUEUES,
    QueueSenders,
    attached_prog_id,
    child_process,
    expect_line,
    frames_for_queue,
    open_fd_count,
    wait_until,
    watchdog,
)
from xdppacket import XDP_MODE_DRV, XDP_MODE_SKB, OptQueueID, OptXDPMode, XDPMode, XDPPacket

#: A frame with this sequence number tells a ``QUEUE_READER`` to exit normally.
STOP_SEQ = 99_999

# Opens one queue, says whether it attached or joined the program (and its id), then
# prints each frame it reads until a STOP_SEQ frame. argv: ifname, mode name, queue.
QUEUE_READER = f"""
    import sys
    from tests.netns import frame_seq
    from xdppacket import OptQueueID, OptXDPMode, XDPMode, XDPPacket, _netlink

    ifname, mode, queue = sys.argv[1], XDPMode[sys.argv[2]], int(sys.argv[3])
    with XDPPacket(ifname, OptXDPMode(mode), OptQueueID(queue)) as sock:
        how = "attached" if sock._queue.program.attached_here else "joined"
        print(how, _netlink.get_link(sock.ifindex).xdp_prog_id, flush=True)
        while True:
            data, info = sock.read_packet_data()
            if frame_seq(data) % 100_000 == {STOP_SEQ}:
                break
            print("frame", info.queue_id, data.hex(), flush=True)
    print("closed", flush=True)
"""

# Tries to open one queue; prints the errno and message it gets. argv: as QUEUE_READER.
OPEN_QUEUE = """
    import sys
    from xdppacket import OptQueueID, OptXDPMode, XDPMode, XDPPacket

    try:
        XDPPacket(sys.argv[1], OptXDPMode(XDPMode[sys.argv[2]]), OptQueueID(int(sys.argv[3])))
    except OSError as error:
        print(error.errno, error, flush=True)
    else:
        print("opened", flush=True)
"""



def start_reader(
    pair: VethPair, mode: XDPMode, queue: int
) -> AbstractContextManager[subprocess.Popen[str]]:
    """A ``QUEUE_READER`` child on ``queue``, killed (if still running) when the block ends."""
    return child_process(QUEUE_READER, pair.capture, mode.name, str(queue))


def first_line(child: subprocess.Popen[str]) -> list[str]:
    assert child.stdout is not None
    with watchdog(10):
        line = child.stdout.readline()
    assert line, f"the child exited: {child.stderr.read() if child.stderr else ''}"
    return line.split()


def expect_frames(child: subprocess.Popen[str], queue: int, frames: list[bytes]) -> None:
    """The child prints exactly ``frames``, in order, as read from ``queue``."""
    for frame in frames:
        expect_line(child, f"frame {queue} {frame.hex()}")


def stop_frame(pair: VethPair, queue: int) -> bytes:
    frame = frames_for_queue(pair, queue, 1, first_seq=STOP_SEQ)[0]
    assert frame_seq(frame) % 100_000 == STOP_SEQ
    return frame


@BOTH_MODES
def test_later_processes_join_the_program_which_outlives_a_killed_attacher(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    index = pair.capture_index
    with contextlib.ExitStack() as children:
        first = children.enter_context(start_reader(pair, mode, 0))
        how, prog_id = first_line(first)
        assert (how, int(prog_id)) == ("attached", attached_prog_id(index))
        second = children.enter_context(start_reader(pair, mode, 1))  # once the first runs
        assert first_line(second) == ["joined", prog_id]

        before = {queue: frames_for_queue(pair, queue, 5) for queue in (0, 1)}
        for queue, frames in before.items():
            senders.send(queue, frames)
        expect_frames(first, 0, before[0])
        expect_frames(second, 1, before[1])

        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        assert attached_prog_id(index) == int(prog_id)  # the second process holds the link

        with AfPacketCapture(pair.capture) as stack:
            after = frames_for_queue(pair, 1, 5, first_seq=10)
            senders.send(1, after)
            expect_frames(second, 1, after)
            # Queue 0 has no socket now: the program passes its frames to the kernel stack.
            orphan = frames_for_queue(pair, 0, 2, first_seq=10)
            senders.send(0, orphan)
            assert stack.recv_frames(2, timeout=5) == orphan

            # A third process cannot take the second one's queue.
            result = run_in_subprocess(OPEN_QUEUE, pair.capture, mode.name, "1")
            assert result.stdout == (
                f"{errno.EBUSY} [Errno 16] binding the socket on {pair.capture} queue 1 failed: "
                f"bind: Device or resource busy (the queue is already bound by another AF_XDP "
                f"socket (in this or another process); close it or pick another queue with "
                f"OptQueueID)\n"
            )
            assert attached_prog_id(index) == int(prog_id)
            last = frames_for_queue(pair, 1, 3, first_seq=20)
            senders.send(1, last)
            expect_frames(second, 1, last)
            assert stack.recv_frames(1, timeout=0.2) == []  # nothing of queue 1 leaked

        senders.send(1, [stop_frame(pair, 1)])
        expect_line(second, "closed")
        assert second.wait(timeout=10) == 0
    assert wait_until(lambda: attached_prog_id(index) == 0, timeout=5)


@BOTH_MODES
def test_processes_started_together_share_one_program_until_the_last_is_killed(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    index = pair.capture_index
    with contextlib.ExitStack() as children:
        # All four race to attach: one wins, the others join its program.
        readers = [children.enter_context(start_reader(pair, mode, q)) for q in range(MULTI_QUEUES)]
        reports = [first_line(reader) for reader in readers]
        assert sorted(how for how, _ in reports) == ["attached", "joined", "joined", "joined"]
        assert {int(prog_id) for _, prog_id in reports} == {attached_prog_id(index)}
        prog_id = attached_prog_id(index)

        sent = {queue: frames_for_queue(pair, queue, 4) for queue in range(MULTI_QUEUES)}
        for queue, frames in sent.items():
            senders.send(queue, frames)
        for queue, reader in enumerate(readers):
            expect_frames(reader, queue, sent[queue])

        # SIGKILL them one by one, the attacher first: the program stays while any runs.
        order = sorted(range(MULTI_QUEUES), key=lambda queue: reports[queue][0] != "attached")
        for killed, queue in enumerate(order, 1):
            readers[queue].send_signal(signal.SIGKILL)
            assert readers[queue].wait(timeout=10) == -signal.SIGKILL
            if killed < MULTI_QUEUES:
                assert attached_prog_id(index) == prog_id
                survivor = order[-1]
                frames = frames_for_queue(pair, survivor, 2, first_seq=10 * killed)
                senders.send(survivor, frames)
                expect_frames(readers[survivor], survivor, frames)
        assert wait_until(lambda: attached_prog_id(index) == 0, timeout=5)


@pytest.mark.parametrize(
    ("held", "asked"), [(XDP_MODE_SKB, XDP_MODE_DRV), (XDP_MODE_DRV, XDP_MODE_SKB)], ids=["skb", "drv"]
)
def test_a_process_asking_for_the_other_mode_is_refused(
    make_veth: VethFactory, held: XDPMode, asked: XDPMode
) -> None:
    pair = make_veth(MULTI_QUEUES)
    names = {XDP_MODE_SKB: "generic (XDP_MODE_SKB)", XDP_MODE_DRV: "native (XDP_MODE_DRV)"}
    with start_reader(pair, held, 0) as holder:
        how, prog_id = first_line(holder)
        assert how == "attached"
        fds = open_fd_count()
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno and text checked below
            XDPPacket(pair.capture, OptXDPMode(asked), OptQueueID(1))
        assert caught.value.errno == errno.EBUSY
        assert str(caught.value) == (
            f"[Errno 16] {pair.capture} already runs an XDP program in {names[held]} mode "
            f"(attached by another process); open this socket with the same OptXDPMode"
        )
        assert open_fd_count() == fds
        assert attached_prog_id(pair.capture_index) == int(prog_id)
        # The same mode joins fine.
        with XDPPacket(pair.capture, OptXDPMode(held), OptQueueID(1)) as joined:
            assert not joined._queue.program.attached_here  # type: ignore[union-attr]
