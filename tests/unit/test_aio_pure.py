"""The pure parts of ``xdppacket.aio``: no socket, no root."""

from __future__ import annotations

from xdppacket.aio._multiqueue import _unsent_shares
from xdppacket.aio._options import event_loop_options
from xdppacket.aio._receive_child import _parts
from xdppacket.options import (
    IO_MODE_BLOCK,
    IO_MODE_NONBLOCK,
    OptIoMode,
    OptNumFrames,
    resolve_options,
)


def test_unsent_shares_follow_the_synchronous_round_robin() -> None:
    """Frames offset, offset + 4, ... go to queue (first + offset) % 4; queues fill in offset order."""
    frames = list(range(10))
    # Offsets 0 and 1 (queues 1 and 2) took 3 + 2 of the 5 sent; the rest never started.
    assert _unsent_shares(frames, 1, 4, 5) == [(2, [9]), (3, [2, 6]), (0, [3, 7])]
    assert _unsent_shares(frames, 3, 4, 0) == [(3, [0, 4, 8]), (0, [1, 5, 9]), (1, [2, 6]), (2, [3, 7])]
    assert _unsent_shares(frames, 0, 4, 10) == []
    assert _unsent_shares(frames[:2], 2, 4, 1) == [(3, [1])]  # offsets without frames are skipped


def test_event_loop_options_override_the_users_waiting_options() -> None:
    options = resolve_options(event_loop_options((OptIoMode(IO_MODE_BLOCK), OptNumFrames(4096))), owner="XDPPacket")
    assert (options.io_mode, options.poll_timeout_us, options.num_frames) == (IO_MODE_NONBLOCK, 0, 4096)


def test_child_messages_split_batches_by_bytes() -> None:
    packets = [bytes(n) for n in (100, 100, 300, 50, 500)]
    infos = ["a", "b", "c", "d", "e"]
    assert _parts(packets, infos, 250) == [
        (packets[:2], infos[:2]), (packets[2:3], infos[2:3]), (packets[3:4], infos[3:4]), (packets[4:], infos[4:]),
    ]
    assert _parts(packets, infos, 10_000) == [(packets, infos)]
