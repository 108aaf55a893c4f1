"""Lifecycle of the XDP program and the sockets: attach, share, detach, clean up.

The library attaches its program with a BPF link, so the kernel detaches it when the last
descriptor of the link closes: at ``close()`` of the last socket on the interface, when a
socket is garbage-collected, and when the owning process dies, even by SIGKILL. Sockets on
several queues of one interface share one program. A program attached by another tool
(netlink, as ``ip link set xdp`` does) is never replaced silently.

What the interface runs is checked from the outside: rtnetlink's ``IFLA_XDP`` attributes
and ``ip -d link show``.
"""

from __future__ import annotations

import errno
import gc
import time

import pytest

from tests.netns import VethPair, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    attach_foreign_xdp_pass,
    attached_prog_id,
    child_process,
    expect_line,
    frames_from_peer,
    open_fd_count,
    read_frames,
    read_until_empty,
    send_frames,
    send_on_rx_queue,
    socket_mapping_count,
    wait_until,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueID,
    OptRingSize,
    OptXDPMode,
    XDPError,
    XDPMode,
    XDPPacket,
    XDPProgramBusyError,
    _netlink,
    clear_iface_residue_xdp_resources,
)

NONBLOCK = (OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(20_000))
ATTACHED_BY_MODE = {XDP_MODE_SKB: _netlink.XDP_ATTACHED_SKB, XDP_MODE_DRV: _netlink.XDP_ATTACHED_DRV}
# How `ip link show` names the attach mode on the interface's first line.
IP_MODE_WORD = {XDP_MODE_SKB: " xdpgeneric ", XDP_MODE_DRV: " xdp "}


def assert_receives(sock: XDPPacket, pair: VethPair, first_seq: int = 0) -> None:
    """``sock`` (on a one-queue interface) receives what the peer sends."""
    frames = frames_from_peer(pair, 3, first_seq)
    send_frames(pair.peer, frames)
    assert read_frames(sock, 3, "read_multi_packets")[0] == frames


def ip_link_details(ifname: str) -> str:
    return run_command("ip", "-d", "link", "show", ifname)


# ------------------------------------------------------------------------ one socket


@BOTH_MODES
def test_the_program_is_attached_while_open_and_detached_by_close(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    assert _netlink.get_link(veth_pair.capture_index).xdp_attached == _netlink.XDP_ATTACHED_NONE
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        link = _netlink.get_link(veth_pair.capture_index)
        assert link.xdp_attached == ATTACHED_BY_MODE[mode]
        assert link.xdp_prog_id > 0
        details = ip_link_details(veth_pair.capture)
        assert IP_MODE_WORD[mode] in details.splitlines()[0]
        assert f"prog/xdp id {link.xdp_prog_id} name xdp_sock_prog " in details
        assert_receives(sock, veth_pair)
    link = _netlink.get_link(veth_pair.capture_index)
    assert (link.xdp_attached, link.xdp_prog_id) == (_netlink.XDP_ATTACHED_NONE, 0)
    assert "prog/xdp" not in ip_link_details(veth_pair.capture)


def test_a_socket_dropped_without_close_detaches(veth_pair: VethPair) -> None:
    sock = XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB))
    assert attached_prog_id(veth_pair.capture_index) != 0
    del sock
    gc.collect()
    assert attached_prog_id(veth_pair.capture_index) == 0


@BOTH_MODES
def test_open_close_cycles_leak_no_fd_and_no_mapping(veth_pair: VethPair, mode: XDPMode) -> None:
    fds, mappings = open_fd_count(), socket_mapping_count()
    for cycle in range(5):
        with XDPPacket(veth_pair.capture, OptXDPMode(mode), *NONBLOCK) as sock:
            assert_receives(sock, veth_pair, first_seq=10 * cycle)
            sock.write_packet(frames_from_peer(veth_pair, 2)[0])
            sock.zero_copy_read_multi_packets()  # a lease open at close
        assert (open_fd_count(), socket_mapping_count()) == (fds, mappings)
    assert attached_prog_id(veth_pair.capture_index) == 0


@BOTH_MODES
@pytest.mark.parametrize("veth_pair", [4], indirect=True)
def test_a_queue_can_be_reopened_right_after_close(veth_pair: VethPair, mode: XDPMode) -> None:
    # The kernel frees a closed socket's queue a little later, in deferred work; a bind in
    # between meets EBUSY, which the library waits out for queues it has just released.
    # With the program kept attached by a socket on another queue, reopening is fast enough
    # to hit that window about every other time.
    small = (OptNumFrames(64), OptRingSize(64), *NONBLOCK)
    frame = frames_from_peer(veth_pair, 2)[1]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptQueueID(1), *small):
        for _ in range(10):
            with XDPPacket(veth_pair.capture, OptXDPMode(mode), *small) as sock:
                sock.write_packet(frame)
        with XDPPacket(veth_pair.capture, OptXDPMode(mode), *small) as sock:
            frames = frames_from_peer(veth_pair, 3)
            send_on_rx_queue(veth_pair, 0, mode, frames)
            assert read_frames(sock, 3, "read_multi_packets")[0] == frames


# Opens a socket, says so, then waits to be killed. argv: ifname, mode name.
HOLD_OPEN = """
    import sys, time
    from xdppacket import OptXDPMode, XDPMode, XDPPacket

    sock = XDPPacket(sys.argv[1], OptXDPMode(XDPMode[sys.argv[2]]))
    print("open", flush=True)
    time.sleep(60)
"""


@BOTH_MODES
def test_a_killed_process_leaves_no_program_behind(veth_pair: VethPair, mode: XDPMode) -> None:
    with child_process(HOLD_OPEN, veth_pair.capture, mode.name) as child:
        expect_line(child, "open")
        assert attached_prog_id(veth_pair.capture_index) != 0
        child.kill()
        child.wait(timeout=10)
    assert wait_until(lambda: attached_prog_id(veth_pair.capture_index) == 0, timeout=5)
    # Nothing of the dead process's socket is in the way either.
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        assert_receives(sock, veth_pair)


# ---------------------------------------------------------------- several sockets, one program


@BOTH_MODES
@pytest.mark.parametrize("veth_pair", [4], indirect=True)
def test_sockets_on_two_queues_share_the_program_until_the_last_closes(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    index = veth_pair.capture_index
    first = XDPPacket(veth_pair.capture, OptXDPMode(mode), OptQueueID(1), *NONBLOCK)
    with first:
        prog_id = attached_prog_id(index)
        with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptQueueID(2), *NONBLOCK) as second:
            assert attached_prog_id(index) == prog_id
            for queue, sock, other in ((1, first, second), (2, second, first)):
                frames = frames_from_peer(veth_pair, 20, first_seq=100 * queue)
                send_on_rx_queue(veth_pair, queue, mode, frames)
                received, infos = read_frames(sock, 20, "read_multi_packets")
                assert received == frames
                assert {info.queue_id for info in infos} == {queue}
                assert read_until_empty(other) == []
        # The first socket keeps the program, and keeps working.
        assert attached_prog_id(index) == prog_id
        frames = frames_from_peer(veth_pair, 5, first_seq=500)
        send_on_rx_queue(veth_pair, 1, mode, frames)
        assert read_frames(first, 5, "read_multi_packets")[0] == frames
    assert attached_prog_id(index) == 0


@BOTH_MODES
def test_a_second_socket_on_a_bound_queue_fails_and_leaves_the_first_working(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as first:
        fds, prog_id = open_fd_count(), attached_prog_id(veth_pair.capture_index)
        started = time.monotonic()
        with pytest.raises(OSError) as caught:  # noqa: PT011 -- errno and text checked below
            XDPPacket(veth_pair.capture, OptXDPMode(mode))
        assert time.monotonic() - started < 0.5  # really busy: no waiting for a release
        assert caught.value.errno == errno.EBUSY
        assert str(caught.value) == (
            f"[Errno 16] binding the socket on {veth_pair.capture} queue 0 failed: bind: Device "
            f"or resource busy (the queue is already bound by another AF_XDP socket (in this or "
            f"another process); close it or pick another queue with OptQueueID)"
        )
        assert (open_fd_count(), attached_prog_id(veth_pair.capture_index)) == (fds, prog_id)
        assert_receives(first, veth_pair)


@pytest.mark.parametrize("veth_pair", [4], indirect=True)
def test_a_socket_in_the_other_mode_is_refused_while_the_program_runs(veth_pair: VethPair) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptQueueID(1), *NONBLOCK) as first:
        fds = open_fd_count()
        with pytest.raises(ValueError, match=(
            f"^{veth_pair.capture} already runs the XDP program in generic \\(XDP_MODE_SKB\\) mode "
            "for other sockets of this process; open this socket with OptXDPMode in the same mode$"
        )):  # fmt: skip
            XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_DRV), OptQueueID(2))
        assert open_fd_count() == fds
        frames = frames_from_peer(veth_pair, 3)
        send_on_rx_queue(veth_pair, 1, XDP_MODE_SKB, frames)
        assert read_frames(first, 3, "read_multi_packets")[0] == frames


# Opens queue 2, prints the program id, then the frame it reads; waits to be killed.
# argv: ifname, mode name.
JOIN_AND_READ = """
    import sys, time
    from xdppacket import OptQueueID, OptXDPMode, XDPMode, XDPPacket, _netlink

    with XDPPacket(sys.argv[1], OptXDPMode(XDPMode[sys.argv[2]]), OptQueueID(2)) as sock:
        print("prog", _netlink.get_link(sock.ifindex).xdp_prog_id, flush=True)
        data, info = sock.read_packet_data()
        print("frame", data.hex(), info.queue_id, flush=True)
        time.sleep(60)  # until killed
"""


@BOTH_MODES
@pytest.mark.parametrize("veth_pair", [4], indirect=True)
def test_another_process_joins_the_program_and_keeps_it_after_we_close(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    index = veth_pair.capture_index
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptQueueID(1), *NONBLOCK) as ours:
        prog_id = attached_prog_id(index)
        with child_process(JOIN_AND_READ, veth_pair.capture, mode.name) as child:
            expect_line(child, f"prog {prog_id}")
            frame = frames_from_peer(veth_pair, 2, first_seq=20)[1]
            send_on_rx_queue(veth_pair, 2, mode, [frame])
            expect_line(child, f"frame {frame.hex()} 2")
            ours.close()
            assert attached_prog_id(index) == prog_id  # the child still holds the link
            child.kill()
    assert wait_until(lambda: attached_prog_id(index) == 0, timeout=5)


# ------------------------------------------------------------------ programs of other tools


@BOTH_MODES
@pytest.mark.parametrize("foreign_mode", [XDP_MODE_SKB, XDP_MODE_DRV], ids=["foreign_skb", "foreign_drv"])
def test_a_program_attached_by_another_tool_is_reported_and_can_be_cleared(
    veth_pair: VethPair, mode: XDPMode, foreign_mode: XDPMode
) -> None:
    prog_id = attach_foreign_xdp_pass(veth_pair.capture_index, foreign_mode)
    assert attached_prog_id(veth_pair.capture_index) == prog_id
    fds = open_fd_count()
    with pytest.raises(XDPProgramBusyError) as caught:
        XDPPacket(veth_pair.capture, OptXDPMode(mode))
    error = caught.value
    assert isinstance(error, XDPError)
    assert isinstance(error, OSError)
    assert (error.errno, error.prog_id) == (errno.EBUSY, prog_id)
    assert str(error) == (
        f"[Errno 16] {veth_pair.capture} already has XDP program id {prog_id} attached by another "
        f"tool (not through a BPF link); remove it with xdppacket.clear_iface_residue_xdp_resources("
        f"'{veth_pair.capture}') or `ip link set dev {veth_pair.capture} xdp off`"
    )
    assert open_fd_count() == fds
    assert attached_prog_id(veth_pair.capture_index) == prog_id  # left alone

    assert clear_iface_residue_xdp_resources(veth_pair.capture) == [prog_id]
    assert attached_prog_id(veth_pair.capture_index) == 0
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        assert_receives(sock, veth_pair)
    assert clear_iface_residue_xdp_resources(veth_pair.capture) == []


@BOTH_MODES
def test_clearing_refuses_to_remove_our_own_running_program(veth_pair: VethPair, mode: XDPMode) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        prog_id = attached_prog_id(veth_pair.capture_index)
        with pytest.raises(OSError, match=(
            f"^\\[Errno 16\\] XDP program id {prog_id} on {veth_pair.capture} is attached through "
            "a BPF link held by a running process; it is removed when that process exits$"
        )):  # fmt: skip
            clear_iface_residue_xdp_resources(veth_pair.capture)
        assert attached_prog_id(veth_pair.capture_index) == prog_id
        assert_receives(sock, veth_pair)
