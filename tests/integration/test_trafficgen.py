"""TrafficGenerator against the kernel: frames generated into one end of a veth pair
arrive, exactly, on the other end.

The generator redirects into ``peer``; the veth hands the frames to ``capture``, which keeps
them only when it has GRO on or a native XDP program (otherwise it drops them silently).

Why the exact counts hold for 1000 frames: the kernel runs the program on one CPU, 64 frames
per batch, and flushes each batch to the capture side's rx ring (256 entries per queue);
the receiver's NAPI poll then runs in a softirq on that same CPU as soon as the batch is
flushed, so the ring never holds more than about one batch. Frames would be lost only if
that softirq were pushed to ksoftirqd for the whole run, or if the receiving socket filled
up: the AF_PACKET capture has an 8 MiB buffer and XDPPacket 1024 rx frames, both more than
1000 frames need. The capture side's kernel counters (``/proc/net/dev``) confirm it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.netns import (
    AfPacketCapture,
    VethFactory,
    make_test_frame,
    run_command,
    run_in_subprocess,
    start_subprocess,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    OptIoMode,
    OptPollTimeout,
    OptQueueID,
    OptXDPMode,
    XDPPacket,
)
from xdppacket.testing.trafficgen import MAX_FRAME_SIZE, TrafficGenerator

FRAMES = 1000
RECEIVE_TIMEOUT = 5.0


def enable_gro(ifname: str) -> None:
    """GRO on: the veth then accepts XDP-redirected frames even without an XDP program."""
    run_command("ethtool", "-K", ifname, "gro", "on")


def rx_packets(ifname: str) -> int:
    """The kernel's rx packet counter of ``ifname`` in this thread's network namespace."""
    for line in Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]:
        name, counters = line.split(":", 1)
        if name.strip() == ifname:
            return int(counters.split()[1])
    raise LookupError(f"{ifname} not in /proc/net/dev")


def read_xdp_frames(sock: XDPPacket, count: int, timeout: float) -> list[bytes]:
    """Up to ``count`` frames from a non-blocking ``XDPPacket``, checking their queue id."""
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        packets, infos = sock.read_multi_packets(min(64, count - len(frames)))
        assert all(info.queue_id == sock.queue_id for info in infos)
        frames.extend(packets)
    return frames


def test_frames_reach_an_af_packet_socket_when_gro_is_on(make_veth: VethFactory) -> None:
    pair = make_veth()
    enable_gro(pair.capture)
    frame = make_test_frame(60, 1, pair.capture_mac, pair.peer_mac)
    before = rx_packets(pair.capture)
    with AfPacketCapture(pair.capture) as capture, TrafficGenerator(pair.peer, frame) as gen:
        result = gen.send(FRAMES)
        received = capture.recv_frames(FRAMES, RECEIVE_TIMEOUT)
        assert capture.recv_frames(1, 0.2) == []  # and nothing more
    assert result.frames == FRAMES
    assert len(received) == FRAMES
    assert set(received) == {frame}
    assert rx_packets(pair.capture) - before == FRAMES


def test_frames_are_dropped_without_gro_or_an_xdp_program(make_veth: VethFactory) -> None:
    pair = make_veth()
    frame = make_test_frame(60, 2, pair.capture_mac, pair.peer_mac)
    with AfPacketCapture(pair.capture) as capture, TrafficGenerator(pair.peer, frame) as gen:
        assert gen.send(100).frames == 100  # counted although the veth drops them
        assert capture.recv_frames(1, 0.2) == []


def test_native_xdp_receiver_gets_every_frame_on_the_sending_cpus_queue(
    make_veth: VethFactory,
) -> None:
    pair = make_veth(queues=2)
    cpus = sorted(os.sched_getaffinity(0))[:2]  # CPU 0 and, if there is one, CPU 1
    affinity = os.sched_getaffinity(0)
    sockets = [
        XDPPacket(
            pair.capture,
            OptXDPMode(XDP_MODE_DRV),
            OptQueueID(queue),
            OptIoMode(IO_MODE_NONBLOCK),
            OptPollTimeout(10_000),
        )
        for queue in range(pair.queues)
    ]
    try:
        for cpu in cpus:
            frame = make_test_frame(100, cpu, pair.capture_mac, pair.peer_mac)
            with TrafficGenerator(pair.peer, frame, cpu=cpu) as gen:
                assert gen.send(FRAMES).frames == FRAMES
            assert os.sched_getaffinity(0) == affinity  # the pin was undone
            expected_queue = cpu % pair.queues
            for queue, sock in enumerate(sockets):
                if queue == expected_queue:
                    received = read_xdp_frames(sock, FRAMES, RECEIVE_TIMEOUT)
                    assert len(received) == FRAMES, f"cpu {cpu}: queue {queue}"
                    assert set(received) == {frame}
                else:
                    assert read_xdp_frames(sock, 1, 0.1) == [], f"cpu {cpu}: queue {queue}"
        assert sum(sock.get_stats().rx_dropped for sock in sockets) == 0
    finally:
        for sock in sockets:
            sock.close()


def test_send_for_reports_a_plausible_rate(make_veth: VethFactory) -> None:
    pair = make_veth()
    enable_gro(pair.capture)  # the capture side's stack takes the frames and drops them
    frame = make_test_frame(64, 3, pair.capture_mac, pair.peer_mac)
    before = rx_packets(pair.capture)
    with TrafficGenerator(pair.peer, frame, cpu=0) as gen:
        result = gen.send_for(0.2)
    assert 0.2 <= result.seconds < 1.0
    assert result.frames == rx_packets(pair.capture) - before
    assert result.pps == pytest.approx(result.frames / result.seconds)
    assert result.pps > 100_000
    assert result.bps == pytest.approx(result.pps * 64 * 8)


def test_largest_frame_arrives_intact(make_veth: VethFactory) -> None:
    pair = make_veth()
    # Both ends check the MTU for redirected frames: the target at the redirect, the
    # receiver when it takes the frame in.
    for ifname in (pair.peer, pair.capture):
        run_command("ip", "link", "set", "dev", ifname, "mtu", "4000")
    enable_gro(pair.capture)
    frame = make_test_frame(MAX_FRAME_SIZE, 4, pair.capture_mac, pair.peer_mac)
    with AfPacketCapture(pair.capture) as capture, TrafficGenerator(pair.peer, frame) as gen:
        gen.send(10)
        assert capture.recv_frames(10, RECEIVE_TIMEOUT) == [frame] * 10


def test_missing_interface_and_bad_frame_are_refused(make_veth: VethFactory) -> None:
    pair = make_veth()
    frame = make_test_frame(60, 5, pair.capture_mac, pair.peer_mac)
    with pytest.raises(FileNotFoundError, match="no network interface named 'xdp-nothing'"):
        TrafficGenerator("xdp-nothing", frame)
    with pytest.raises(ValueError, match="frame of 13 bytes"):
        TrafficGenerator(pair.peer, frame[:13])
    with pytest.raises(ValueError, match=f"frame of {MAX_FRAME_SIZE + 1} bytes"):
        TrafficGenerator(pair.peer, bytes(MAX_FRAME_SIZE + 1))
    with pytest.raises(TypeError, match="not str"):
        TrafficGenerator(pair.peer, "hello")


def test_sending_after_the_interface_is_gone_fails(make_veth: VethFactory) -> None:
    pair = make_veth()
    frame = make_test_frame(60, 6, pair.capture_mac, pair.peer_mac)
    with TrafficGenerator(pair.peer, frame) as gen:
        run_command("ip", "link", "delete", pair.peer)
        with pytest.raises(FileNotFoundError, match="no longer exists"):
            gen.send(1)


def test_close_releases_the_program(make_veth: VethFactory) -> None:
    pair = make_veth()
    gen = TrafficGenerator(pair.peer, make_test_frame(60, 7, pair.capture_mac, pair.peer_mac))
    open_fds = set(os.listdir("/proc/self/fd"))
    with gen:
        assert not gen.closed
    assert gen.closed
    assert len(open_fds - set(os.listdir("/proc/self/fd"))) == 1  # the program's fd
    gen.close()  # idempotent
    with pytest.raises(ValueError, match="closed TrafficGenerator"):
        gen.send(1)


def test_without_privileges_the_error_says_what_is_needed(make_veth: VethFactory) -> None:
    pair = make_veth()
    child = run_in_subprocess(
        """
        import os, sys
        from xdppacket.testing.trafficgen import TrafficGenerator
        os.setuid(65534)  # nobody: no capabilities left
        try:
            TrafficGenerator(sys.argv[1], bytes(60))
        except PermissionError as exc:
            print(exc)
        """,
        pair.peer,
    )
    assert f"TrafficGenerator on {pair.peer!r}" in child.stdout
    assert "needs root, or CAP_BPF and CAP_NET_ADMIN" in child.stdout


def test_ctrl_c_interrupts_send_for_and_restores_the_affinity(make_veth: VethFactory) -> None:
    pair = make_veth()
    child = start_subprocess(
        """
        import os, sys, time
        from xdppacket.testing.trafficgen import TrafficGenerator
        affinity = os.sched_getaffinity(0)
        with TrafficGenerator(sys.argv[1], bytes(60), cpu=0) as gen:
            print("sending", flush=True)
            start = time.monotonic()
            try:
                gen.send_for(30.0)
            except KeyboardInterrupt:
                print(f"interrupted after {time.monotonic() - start:.2f} s")
            print("affinity restored" if os.sched_getaffinity(0) == affinity else "still pinned")
        """,
        pair.peer,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "sending\n"
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=10)
    finally:
        child.kill()
        child.wait()
    lines = stdout.splitlines()
    assert lines[0].startswith("interrupted after "), stderr
    assert float(lines[0].split()[2]) < 2.0
    assert lines[1] == "affinity restored"
