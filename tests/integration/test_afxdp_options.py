"""The advanced AF_XDP options on veth: bind mode, busy polling, huge pages, headroom, MTU checks.

veth has no zero-copy, so ``BIND_ZEROCOPY`` must fail naming the driver and ``BIND_AUTO``
must fall back to copy mode; ``zero_copy`` is read back from the kernel (``XDP_OPTIONS``).
Busy polling is checked in the kernel (``getsockopt``) and in the system calls an empty
read makes (strace). Huge pages are reserved for the tests and the previous reservation
is restored afterwards, even when a test fails. Headroom is checked where the kernel puts
the data (the selftest's UMEM_HEADROOM scenario: every frame exact, at 256 + headroom).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.netns import VethPair, make_test_frame, run_command
from tests.xdp_helpers import (
    BOTH_MODES,
    READ_VARIANTS,
    attached_prog_id,
    frames_from_peer,
    open_fd_count,
    read_frames,
    send_frames,
    socket_mapping_count,
    wait_until,
)
from xdppacket import (
    BIND_AUTO,
    BIND_COPY,
    BIND_ZEROCOPY,
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    BindMode,
    OptBindMode,
    OptBusyPoll,
    OptFrameSize,
    OptHeadroom,
    OptHugePages,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPMultiQueue,
    XDPPacket,
    XDPTimeoutError,
)

_AF_XDP = 44
_SO_BUSY_POLL = 46
_SO_PREFER_BUSY_POLL = 69
_NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
_XDP_PACKET_HEADROOM = 256


@contextlib.contextmanager
def leaves_nothing_behind(pair: VethPair) -> Iterator[None]:
    """The block attaches no XDP program, and leaves no extra fd or socket mapping."""
    fds, mappings = open_fd_count(), socket_mapping_count()
    yield
    assert attached_prog_id(pair.capture_index) == 0
    assert (open_fd_count(), socket_mapping_count()) == (fds, mappings)


def set_mtu(mtu: int, *ifnames: str) -> None:
    for ifname in ifnames:
        run_command("ip", "link", "set", "dev", ifname, "mtu", str(mtu))


# ------------------------------------------------------------------------------- bind mode


@BOTH_MODES
@pytest.mark.parametrize("bind_mode", [None, BIND_AUTO, BIND_COPY], ids=["default", "auto", "copy"])
def test_veth_binds_in_copy_mode(veth_pair: VethPair, mode: XDPMode, bind_mode: BindMode | None) -> None:
    """veth has no zero-copy: the default (BIND_AUTO) falls back to copy, and says so."""
    opts = [OptXDPMode(mode)] + ([] if bind_mode is None else [OptBindMode(bind_mode)])
    frames = frames_from_peer(veth_pair, 20)
    with XDPPacket(veth_pair.capture, *opts) as sock:
        assert sock.options.bind_mode is (bind_mode or BIND_AUTO)
        assert sock.zero_copy is False
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, len(frames), "read_multi_packets")[0] == frames


def test_zero_copy_refused_by_veth_names_the_driver(veth_pair: VethPair) -> None:
    with leaves_nothing_behind(veth_pair), pytest.raises(OSError) as caught:  # noqa: PT011
        XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_DRV), OptBindMode(BIND_ZEROCOPY))
    assert caught.value.errno == errno.EOPNOTSUPP
    message = str(caught.value)
    assert message.startswith(
        f"[Errno 95] binding {veth_pair.capture} queue 0 with OptBindMode(BIND_ZEROCOPY) failed: "
    )
    assert "driver 'veth' offers no AF_XDP zero-copy" in message
    assert message.endswith("use OptBindMode(BIND_AUTO) to fall back to copy mode, or BIND_COPY")
    with XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_DRV), OptBindMode(BIND_AUTO)) as sock:
        assert sock.zero_copy is False  # the way out the message names works


def test_zero_copy_in_generic_mode_is_refused_before_anything_exists(veth_pair: VethPair) -> None:
    with leaves_nothing_behind(veth_pair), pytest.raises(ValueError, match=r"generic mode always copies"):
        XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB), OptBindMode(BIND_ZEROCOPY))


@pytest.mark.parametrize("veth_pair", [4], indirect=True)
def test_multiqueue_zero_copy_covers_every_queue(veth_pair: VethPair) -> None:
    with XDPMultiQueue(veth_pair.capture, OptQueueCount(4), OptXDPMode(XDP_MODE_DRV),
                       OptNumFrames(64), OptRingSize(64)) as mq:
        assert mq.zero_copy is False
        assert [sock.zero_copy for sock in mq.sockets] == [False] * 4
    with leaves_nothing_behind(veth_pair), pytest.raises(OSError, match="driver 'veth'"):
        XDPMultiQueue(veth_pair.capture, OptQueueCount(4), OptBindMode(BIND_ZEROCOPY))


# ----------------------------------------------------------------------------- busy polling


def socket_option(sock: XDPPacket, option: int) -> int:
    """``getsockopt(SOL_SOCKET, option)`` on the AF_XDP socket, through a duplicate descriptor."""
    with socket.socket(_AF_XDP, socket.SOCK_RAW, 0, fileno=os.dup(sock.fileno())) as dup:
        return dup.getsockopt(socket.SOL_SOCKET, option)


@BOTH_MODES
def test_busy_poll_socket_options_reach_the_kernel(veth_pair: VethPair, mode: XDPMode) -> None:
    # SO_BUSY_POLL_BUDGET has no getsockopt (ENOPROTOOPT on 6.18): its setsockopt not
    # failing is all that can be seen of it.
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptBusyPoll(budget=16, timeout_us=50)) as sock:
        assert socket_option(sock, _SO_BUSY_POLL) == 50
        assert socket_option(sock, _SO_PREFER_BUSY_POLL) == 1
    with XDPPacket(veth_pair.capture, OptXDPMode(mode)) as sock:
        assert (socket_option(sock, _SO_BUSY_POLL), socket_option(sock, _SO_PREFER_BUSY_POLL)) == (0, 0)


@BOTH_MODES
@pytest.mark.parametrize("variant", READ_VARIANTS)
def test_busy_polled_reads_are_exact(veth_pair: VethPair, mode: XDPMode, variant: str) -> None:
    frames = frames_from_peer(veth_pair, 200)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptBusyPoll()) as sock:
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, len(frames), variant)[0] == frames
        stats = sock.get_stats()
        assert (stats.rx_packets, stats.rx_dropped) == (len(frames), 0)
        sock.write_multi_packets(frames[:3])  # tx kicks regardless of need_wakeup: still sent once
        assert wait_until(lambda: sock.get_stats().tx_packets == 3)


@BOTH_MODES
def test_busy_polled_non_blocking_read_still_times_out(veth_pair: VethPair, mode: XDPMode) -> None:
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(20_000),
                   OptBusyPoll(timeout_us=5_000)) as sock:
        start = time.monotonic()
        with pytest.raises(XDPTimeoutError):
            sock.read_packet_data()
        assert 0.015 <= time.monotonic() - start < 1.0


@contextlib.contextmanager
def traced_recvfroms(log: Path) -> Iterator[list[str]]:
    """strace this process's recvfrom calls during the block; the list holds them afterwards."""
    calls: list[str] = []
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=recvfrom", "-o", str(log), "-p", str(os.getpid())],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert wait_until(lambda: _traced(os.getpid()), timeout=10), "strace did not attach"
        yield calls
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=10)
    calls += log.read_text().splitlines()


def _traced(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        return any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in status)


@pytest.mark.parametrize("busy_poll", [True, False], ids=["busy-poll", "no-busy-poll"])
def test_an_empty_read_drives_the_driver_only_with_busy_poll(
    veth_pair: VethPair, tmp_path: Path, busy_poll: bool
) -> None:
    """With OptBusyPoll, an empty read spins on recvfrom(MSG_DONTWAIT), the call that runs NAPI."""
    opts = [OptXDPMode(XDP_MODE_DRV), OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(2_000)]
    with XDPPacket(veth_pair.capture, *opts, *([OptBusyPoll(timeout_us=1_000)] if busy_poll else [])) as sock:
        fd = sock.fileno()
        with traced_recvfroms(tmp_path / "strace.log") as calls:
            for _ in range(3):
                assert sock.read_multi_packets(8) == ([], [])
    on_socket = [call for call in calls if re.search(rf"recvfrom\({fd}, .*, 1, MSG_DONTWAIT", call)]
    if busy_poll:
        assert len(on_socket) >= 3, calls
    else:
        assert on_socket == [], calls


# ------------------------------------------------------------------------------- huge pages


def meminfo(field: str) -> int:
    with open("/proc/meminfo") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture
def reserve_huge_pages() -> Iterator[Callable[[int], None]]:
    """``reserve(n)`` makes n more huge pages free; the previous nr_hugepages comes back afterwards."""
    previous = _NR_HUGEPAGES.read_text().strip()

    def reserve(count: int) -> None:
        _NR_HUGEPAGES.write_text(str(int(previous) + count))
        if meminfo("HugePages_Free") < count:
            pytest.skip(f"the kernel could not reserve {count} huge pages (memory too fragmented)")

    try:
        yield reserve
    finally:
        # A closed UMEM's pages are unpinned from a workqueue: wait for them, then give back.
        wait_until(lambda: meminfo("HugePages_Free") == meminfo("HugePages_Total"), timeout=5)
        _NR_HUGEPAGES.write_text(previous)


@pytest.mark.parametrize(
    ("num_frames", "frame_size", "pages"),
    [pytest.param(1024, 4096, 4, id="8MiB"), pytest.param(64, 2048, 1, id="256KiB-rounded-up")],
)
def test_umem_on_huge_pages(veth_pair: VethPair, reserve_huge_pages: Callable[[int], None], num_frames: int,
                            frame_size: int, pages: int) -> None:
    assert meminfo("Hugepagesize") == 2048
    reserve_huge_pages(pages + 1)
    free_before = meminfo("HugePages_Free")
    frames = frames_from_peer(veth_pair, 50)
    with XDPPacket(veth_pair.capture, OptHugePages(), OptNumFrames(num_frames), OptFrameSize(frame_size),
                   OptRingSize(64)) as sock:
        assert sock.options.huge_pages is True
        assert free_before - meminfo("HugePages_Free") == pages
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, len(frames), "zero_copy_read_multi_packets")[0] == frames
        sock.check_frames()


def test_too_few_huge_pages_names_the_sysctl(veth_pair: VethPair, reserve_huge_pages: Callable[[int], None]) -> None:
    reserve_huge_pages(1)
    with leaves_nothing_behind(veth_pair), pytest.raises(OSError) as caught:  # noqa: PT011
        XDPPacket(veth_pair.capture, OptHugePages())  # 8 MiB: 4 pages
    assert caught.value.errno == errno.ENOMEM
    assert str(caught.value) == (
        f"[Errno 12] allocating the UMEM on huge pages for {veth_pair.capture} queue 0 failed: OptHugePages: "
        f"the UMEM needs 4 free huge page(s) of 2048 kB and fewer are free (HugePages_Free in /proc/meminfo); "
        f"reserve more as root: echo N > /proc/sys/vm/nr_hugepages, N being the huge pages already in use "
        f"plus 4 for this socket"
    )


# --------------------------------------------------------------------------------- headroom


class _PyBuffer(ctypes.Structure):
    """``Py_buffer`` (Include/pybuffer.h), to learn where a read-only view points."""

    _fields_ = [
        ("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p),
    ]


def buffer_address(obj: object) -> int:
    view = _PyBuffer()
    ctypes.pythonapi.PyObject_GetBuffer(ctypes.py_object(obj), ctypes.byref(view), 0)
    try:
        return int(view.buf)
    finally:
        ctypes.pythonapi.PyBuffer_Release(ctypes.byref(view))


def umem_offsets(views: list[memoryview]) -> set[int]:
    """Each zero-copy view's offset into the UMEM it was lent from."""
    return {buffer_address(view) - buffer_address(view.obj) for view in views}


@BOTH_MODES
@pytest.mark.parametrize("headroom", [0, 128])
def test_umem_headroom_scenario(veth_pair: VethPair, mode: XDPMode, headroom: int) -> None:
    """The kernel selftest's UMEM_HEADROOM: 128 bytes of headroom, 4096 frames of 64 bytes, all exact,
    each at 256 + headroom into its UMEM frame."""
    frames = [make_test_frame(64, seq, veth_pair.capture_mac, veth_pair.peer_mac) for seq in range(4096)]
    offsets: set[int] = set()
    received: list[bytes] = []
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptHeadroom(headroom), OptNumFrames(1024)) as sock:
        assert sock.options.headroom == headroom
        for start in range(0, len(frames), 512):  # below the 1024 frames the kernel holds
            send_frames(veth_pair.peer, frames[start : start + 512])
            while len(received) < start + 512:
                views, _ = sock.zero_copy_read_multi_packets(64)
                offsets |= {offset % 4096 for offset in umem_offsets(views)}
                received += [bytes(view) for view in views]
            sock.check_frames()
        assert received == frames
        assert sock.get_stats().rx_dropped == 0
    assert offsets == {_XDP_PACKET_HEADROOM + headroom}


@BOTH_MODES
def test_headroom_beyond_half_a_frame_keeps_the_frame_census(veth_pair: VethPair, mode: XDPMode) -> None:
    """774 bytes of headroom in 2048-byte frames: data starts past the middle of each frame,
    the fill ring gets those addresses back unrounded, and every frame stays accounted for."""
    set_mtu(1000, veth_pair.capture, veth_pair.peer)
    headroom = 2048 - _XDP_PACKET_HEADROOM - 1018  # 774: exactly room for the longest frame
    frames = [make_test_frame(size, seq, veth_pair.capture_mac, veth_pair.peer_mac)
              for seq, size in enumerate([60, 1014, 500] * 60)]
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptFrameSize(2048), OptHeadroom(headroom),
                   OptNumFrames(64), OptRingSize(64)) as sock:
        received: list[bytes] = []
        for start in range(0, len(frames), 30):
            send_frames(veth_pair.peer, frames[start : start + 30])
            received += read_frames(sock, 30, "read_multi_packets")[0]
            sock.check_frames()
        assert received == frames


def vlan_frame(pair: VethPair, size: int) -> bytes:
    """A VLAN-tagged test frame of exactly ``size`` bytes: the longest an MTU lets through is MTU + 18."""
    inner = make_test_frame(size - 4, 7, pair.capture_mac, pair.peer_mac)
    return inner[:12] + b"\x81\x00\x00\x05" + inner[12:]


@BOTH_MODES
def test_a_headroom_leaving_exactly_the_longest_frame_receives_it(veth_pair: VethPair, mode: XDPMode) -> None:
    mtu = 1500
    headroom = 4096 - _XDP_PACKET_HEADROOM - (mtu + 18)
    frame = vlan_frame(veth_pair, mtu + 18)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptHeadroom(headroom)) as sock:
        send_frames(veth_pair.peer, [frame])
        assert read_frames(sock, 1, "read_packet_data")[0] == [frame]
    with leaves_nothing_behind(veth_pair), pytest.raises(ValueError) as caught:  # noqa: PT011
        XDPPacket(veth_pair.capture, OptXDPMode(mode), OptHeadroom(headroom + 1))
    assert str(caught.value) == (
        f"OptHeadroom({headroom + 1}): {veth_pair.capture} (MTU 1500) delivers frames of up to 1518 bytes "
        f"(with the Ethernet header and a VLAN tag), but a 4096-byte UMEM frame then holds only 1517 "
        f"received bytes after the kernel's 256; use OptHeadroom({headroom}) or less"
    )


# ------------------------------------------------------------------------ MTU against frames


def test_jumbo_mtu_warns_about_multi_buffer(veth_pair: VethPair) -> None:
    set_mtu(9000, veth_pair.capture, veth_pair.peer)
    with pytest.warns(UserWarning, match="OptMultiBuffer") as caught, XDPPacket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)):
        pass
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message == (
        f"{veth_pair.capture} has MTU 9000, so it delivers frames of up to 9018 bytes, but a 4096-byte UMEM "
        f"frame holds only 3840 received bytes: longer frames are dropped by the kernel and show only in "
        f"rx_dropped; use OptMultiBuffer() to receive them whole, or lower the MTU (ip link set dev "
        f"{veth_pair.capture} mtu N)"
    )
    assert caught[0].filename == __file__  # points at the caller's line


@BOTH_MODES
def test_an_mtu_beyond_a_2048_byte_frame_warns_and_such_frames_are_dropped(
    veth_pair: VethPair, mode: XDPMode
) -> None:
    set_mtu(3000, veth_pair.capture, veth_pair.peer)
    if mode is XDP_MODE_DRV:  # native XDP on veth needs the peer's MTU to fit a page
        set_mtu(1500, veth_pair.peer)
    with pytest.warns(UserWarning, match=r"use OptFrameSize\(4096\), or use OptMultiBuffer\(\) to receive"):
        sock = XDPPacket(veth_pair.capture, OptXDPMode(mode), OptFrameSize(2048),
                         OptIoMode(IO_MODE_NONBLOCK))
    with sock:
        long_frame = make_test_frame(1514 if mode is XDP_MODE_DRV else 3014, 1, veth_pair.capture_mac,
                                     veth_pair.peer_mac)
        if mode is XDP_MODE_SKB:  # the warning's claim: a frame beyond 1792 bytes vanishes
            send_frames(veth_pair.peer, [long_frame])
            assert wait_until(lambda: sock.get_stats().rx_dropped == 1)
            assert sock.read_multi_packets(1) == ([], [])
        short = make_test_frame(1000, 2, veth_pair.capture_mac, veth_pair.peer_mac)
        send_frames(veth_pair.peer, [short])
        assert read_frames(sock, 1, "read_packet_data")[0] == [short]


@pytest.mark.parametrize("veth_pair", [2], indirect=True)
def test_default_mtu_does_not_warn_and_multiqueue_warns_too(veth_pair: VethPair) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        XDPPacket(veth_pair.capture, OptFrameSize(2048)).close()
        XDPMultiQueue(veth_pair.capture, OptQueueCount(2), OptFrameSize(2048)).close()
    set_mtu(3000, veth_pair.capture)
    with pytest.warns(UserWarning, match="OptMultiBuffer"):
        XDPMultiQueue(veth_pair.capture, OptQueueCount(2), OptXDPMode(XDP_MODE_SKB), OptFrameSize(2048)).close()


# ------------------------------------------------------------------------- the benchmark


def test_busy_poll_benchmark_reports_both_variants() -> None:
    """``cmd/busypoll_bench.py`` enters a network namespace of its own, so it runs as a subprocess."""
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(repo / "cmd" / "busypoll_bench.py"), "--rounds", "1", "--pings", "50",
         "--frames", "2000", "--json"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    variants = json.loads(result.stdout)["variants"]
    assert set(variants) == {"no busy poll", "OptBusyPoll(timeout_us=50)"}
    for name, row in variants.items():
        assert row["pings_lost"] == 0, name
        assert 0 < row["rtt_median_us"] <= row["rtt_p99_us"], name
        assert row["throughput_pps"] > 0, name
        assert 0 < row["delivered_fraction"] <= 1, name
