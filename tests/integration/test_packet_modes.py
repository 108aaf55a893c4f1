"""Blocking and non-blocking I/O of ``XDPPacket``.

Non-blocking: a call waits at most the poll timeout, then a single read raises
``XDPTimeoutError``, a batched read returns ``([], [])``, ``write_multi_packets`` returns
how many frames it queued and ``write_packet`` raises. To make tx unable to progress the
capture end is brought down (``ip link set DEV down``): the kernel then refuses to send
with ENETDOWN, frames stay on the tx ring and no tx frame comes back.

Blocking: a read waits for a frame however long it takes; Ctrl-C (SIGINT) ends the wait
with ``KeyboardInterrupt``, while a signal whose handler returns normally does not. Those
run in a child process, which the parent signals once it sleeps in select/poll.
"""

from __future__ import annotations

import errno
import signal
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from tests.netns import AfPacketCapture, VethPair, make_test_frame, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    child_process,
    expect_line,
    frames_from_peer,
    frames_to_peer,
    read_frames,
    send_frames,
    wait_until_blocked,
    watchdog,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptRingSize,
    OptXDPMode,
    XDPError,
    XDPMode,
    XDPPacket,
    XDPTimeoutError,
)

TIMEOUT_US = 50_000
TIMEOUT_S = TIMEOUT_US / 1e6
# Far above any scheduling noise, far below "the timeout was ignored".
GENEROUS_BOUND_S = 1.0
NONBLOCK = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(TIMEOUT_US))
# 64 tx frames: the 65th frame written while nothing completes has nowhere to go.
SMALL_UMEM = (OptNumFrames(64), OptRingSize(64))
T = TypeVar("T")


def timed(call: Callable[..., T], *args: object) -> tuple[T, float]:
    """``call(*args)`` and the seconds it took."""
    started = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - started


# -------------------------------------------------------------------------- non-blocking


@BOTH_MODES
@pytest.mark.parametrize("variant", ["read_packet_data", "zero_copy_read_packet_data"])
def test_single_read_raises_timeout_after_the_poll_timeout(
    veth_pair: VethPair, mode: XDPMode, variant: str
) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *NONBLOCK) as sock:
        started = time.monotonic()
        with pytest.raises(XDPTimeoutError) as caught:
            getattr(sock, variant)()
        elapsed = time.monotonic() - started
        assert TIMEOUT_S <= elapsed < GENEROUS_BOUND_S
        assert isinstance(caught.value, XDPError)
        assert isinstance(caught.value, TimeoutError)
        assert str(caught.value) == (
            f"{variant} on {veth_pair.capture} queue 0: nothing within the poll timeout of "
            f"{TIMEOUT_US} us"
        )
        # The socket still works: a frame sent now is read at once.
        frames = frames_from_peer(veth_pair, 3)
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, 3, variant)[0] == frames


@BOTH_MODES
@pytest.mark.parametrize("variant", ["read_multi_packets", "zero_copy_read_multi_packets"])
def test_batched_read_returns_nothing_after_the_poll_timeout(
    veth_pair: VethPair, mode: XDPMode, variant: str
) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *NONBLOCK) as sock:
        result, elapsed = timed(getattr(sock, variant), 16)
        assert result == ([], [])
        assert TIMEOUT_S <= elapsed < GENEROUS_BOUND_S
        frames = frames_from_peer(veth_pair, 3)
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, 3, variant)[0] == frames
        assert sock.get_stats().rx_packets == 3


@BOTH_MODES
def test_zero_poll_timeout_returns_at_once(veth_pair: VethPair, mode: XDPMode) -> None:
    with XDPPacket(
        veth_pair.capture, OptXDPMode(mode), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(0)
    ) as sock:
        with watchdog(GENEROUS_BOUND_S), pytest.raises(XDPTimeoutError):
            sock.read_packet_data()
        with watchdog(GENEROUS_BOUND_S):
            assert sock.read_multi_packets() == ([], [])


@BOTH_MODES
def test_nonblocking_writes_report_what_they_queued_and_time_out_on_a_down_interface(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode
) -> None:
    frames = frames_to_peer(veth_pair, 229)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_UMEM, *NONBLOCK) as sock:
        # Up: the kernel sends and completes frames, so all 100 fit through 64 tx frames.
        assert sock.write_multi_packets(frames[:100]) == 100
        assert peer_capture.recv_frames(100, timeout=5) == frames[:100]

        run_command("ip", "link", "set", veth_pair.capture, "down")
        # Down: 64 frames fill the UMEM's tx half and the tx ring; none of them completes.
        queued, elapsed = timed(sock.write_multi_packets, frames[100:200])
        assert queued == 64
        assert TIMEOUT_S <= elapsed < GENEROUS_BOUND_S
        assert sock.write_multi_packets(frames[164:200]) == 0
        started = time.monotonic()
        with pytest.raises(XDPTimeoutError) as caught:
            sock.write_packet(frames[164])
        assert TIMEOUT_S <= time.monotonic() - started < GENEROUS_BOUND_S
        assert str(caught.value) == (
            f"write_packet on {veth_pair.capture} queue 0: nothing within the poll timeout of "
            f"{TIMEOUT_US} us (the kernel reports {veth_pair.capture} is down: "
            f"ip link set dev {veth_pair.capture} up)"
        )
        stats = sock.get_stats()
        assert (stats.tx_packets, stats.tx_invalid_descs) == (164, 0)

        # Up again: the 64 frames waiting on the tx ring go out first, then new ones.
        run_command("ip", "link", "set", veth_pair.capture, "up")
        assert sock.write_multi_packets(frames[164:229]) == 65
        assert peer_capture.recv_frames(129, timeout=5) == frames[100:229]


# ------------------------------------------------------------------------------ blocking

# Reads one frame in blocking mode; prints what ended the read. argv: ifname, mode name.
BLOCKED_READER = """
    import signal, sys
    from xdppacket import OptXDPMode, XDPMode, XDPPacket

    signal.signal(signal.SIGUSR1, lambda signum, frame: print("SIGUSR1 handled", flush=True))
    with XDPPacket(sys.argv[1], OptXDPMode(XDPMode[sys.argv[2]])) as sock:
        print("reading", flush=True)
        try:
            data, info = sock.read_packet_data()
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        else:
            print("frame", data.hex(), info.length, flush=True)
"""


@BOTH_MODES
def test_sigint_interrupts_a_blocked_read(veth_pair: VethPair, mode: XDPMode) -> None:
    with child_process(BLOCKED_READER, veth_pair.capture, mode.name) as child:
        expect_line(child, "reading")
        wait_until_blocked(child.pid)
        child.send_signal(signal.SIGINT)
        expect_line(child, "KeyboardInterrupt")
        assert child.wait(timeout=10) == 0


@BOTH_MODES
def test_a_signal_whose_handler_returns_does_not_end_a_blocked_read(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    frame = make_test_frame(1000, 7, veth_pair.capture_mac, veth_pair.peer_mac)
    with child_process(BLOCKED_READER, veth_pair.capture, mode.name) as child:
        expect_line(child, "reading")
        wait_until_blocked(child.pid)
        child.send_signal(signal.SIGUSR1)
        expect_line(child, "SIGUSR1 handled")
        wait_until_blocked(child.pid)  # back to waiting, not returned
        send_frames(veth_pair.peer, [frame])
        expect_line(child, f"frame {frame.hex()} 1000")
        assert child.wait(timeout=10) == 0


@BOTH_MODES
def test_a_blocking_write_to_a_down_interface_raises_enetdown_and_keeps_what_it_queued(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode
) -> None:
    frames = frames_to_peer(veth_pair, 100)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), *SMALL_UMEM) as sock:
        run_command("ip", "link", "set", veth_pair.capture, "down")
        with watchdog(10), pytest.raises(OSError, match="the interface is down") as caught:
            sock.write_multi_packets(frames)
        assert caught.value.errno == errno.ENETDOWN
        assert str(caught.value) == (
            f"[Errno {errno.ENETDOWN}] writing to {veth_pair.capture} queue 0: the interface is down "
            f"(ip link set dev {veth_pair.capture} up); 64 frame(s) of this call were queued and go "
            f"out once it is up, the other 36 were not"
        )
        assert sock.get_stats().tx_packets == 64  # what fitted in the tx half

        run_command("ip", "link", "set", veth_pair.capture, "up")
        with watchdog(10):
            assert sock.write_multi_packets(frames[64:]) == 36
        assert peer_capture.recv_frames(100, timeout=5) == frames
