"""Helpers shared by the ``XDPPacket`` integration tests: modes, frames, reads, kernel probes.

Plain functions (plus one ``pytest.mark`` shortcut), so every test file states its checks
and nothing else. Nothing here creates interfaces: tests get veth pairs from the fixtures
in ``tests/conftest.py`` and pass them in.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

import pytest

from tests.netns import (
    MIN_FRAME_SIZE,
    AfPacketCapture,
    AfPacketSender,
    VethFactory,
    VethPair,
    make_test_frame,
    mixed_sizes,
    start_subprocess,
)
from xdppacket import (
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    CaptureInfo,
    OptQueueID,
    OptXDPMode,
    XDPMode,
    XDPMultiQueue,
    XDPPacket,
    _bpf,
    _netlink,
)

__all__ = [
    "BOTH_MODES",
    "MULTI_QUEUES",
    "READ_VARIANTS",
    "XDP_FLAGS_BY_MODE",
    "XDP_PASS_PROGRAM",
    "QueueSenders",
    "WatchdogExpired",
    "assert_capture_infos",
    "assert_nothing_arrives",
    "attach_foreign_xdp_pass",
    "attached_prog_id",
    "child_process",
    "expect_line",
    "frames_for_queue",
    "frames_from_peer",
    "frames_to_peer",
    "macs_swapped",
    "make_multiqueue_veth",
    "open_fd_count",
    "peer_tx_queue_reaching",
    "read_frames",
    "read_multiqueue",
    "read_until_empty",
    "send_frames",
    "send_on_rx_queue",
    "socket_mapping_count",
    "split_by_queue",
    "settle",
    "wait_until",
    "wait_until_blocked",
    "watchdog",
]

#: Runs a test once per attach mode. veth supports both: generic (skb) and native (drv).
BOTH_MODES = pytest.mark.parametrize("mode", [XDP_MODE_SKB, XDP_MODE_DRV], ids=["skb", "drv"])

#: The four read methods of ``XDPPacket``, by name.
READ_VARIANTS = (
    "read_packet_data",
    "zero_copy_read_packet_data",
    "read_multi_packets",
    "zero_copy_read_multi_packets",
)

#: ``r0 = XDP_PASS (2); exit``: the smallest XDP program, loaded from raw instructions.
XDP_PASS_PROGRAM = struct.pack("<BBhi", 0xB7, 0, 0, 2) + struct.pack("<BBhi", 0x95, 0, 0, 0)
#: IFLA_XDP_FLAGS for attaching through netlink in each mode (linux/if_link.h).
XDP_FLAGS_BY_MODE = {XDP_MODE_SKB: 1 << 1, XDP_MODE_DRV: 1 << 2}

# Syscalls a Python thread sits in while select()/poll() waits (x86-64 and arm64 numbers).
_WAIT_SYSCALLS_BY_MACHINE = {
    "x86_64": {7, 23, 270, 271},  # poll, select, pselect6, ppoll
    "aarch64": {72, 73},  # pselect6, ppoll
}


# --------------------------------------------------------------------------------------------
# Frames


def macs_swapped(frame: bytes) -> bytes:
    """``frame`` as an l2fwd forwarder sends it back: destination and source MAC exchanged."""
    return frame[6:12] + frame[:6] + frame[12:]


def frames_from_peer(pair: VethPair, count: int, first_seq: int = 0) -> list[bytes]:
    """``count`` distinct test frames of mixed sizes (60..1514) addressed peer -> capture."""
    return [
        make_test_frame(size, first_seq + i, pair.capture_mac, pair.peer_mac)
        for i, size in enumerate(mixed_sizes(count))
    ]


def frames_to_peer(pair: VethPair, count: int, first_seq: int = 0) -> list[bytes]:
    """``count`` distinct test frames of mixed sizes (60..1514) addressed capture -> peer."""
    return [
        make_test_frame(size, first_seq + i, pair.peer_mac, pair.capture_mac)
        for i, size in enumerate(mixed_sizes(count))
    ]


def send_frames(ifname: str, frames: Sequence[bytes]) -> None:
    """Send ``frames`` in order out of ``ifname`` through AF_PACKET."""
    with AfPacketSender(ifname) as sender:
        for frame in frames:
            sender.send(frame)


# --------------------------------------------------------------------------------------------
# Reading through XDPPacket


class WatchdogExpired(Exception):
    """A blocking call did not return in time: the test fails instead of hanging."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise ``WatchdogExpired`` inside the block if it runs longer than ``seconds``.

    Uses SIGALRM, so a blocked ``select`` in the library is interrupted too (main thread only).
    """

    def expire(signum: int, frame: FrameType | None) -> None:
        raise WatchdogExpired(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_frames(
    sock: XDPPacket, count: int, variant: str, batch: int = 64, timeout: float = 10.0
) -> tuple[list[bytes], list[CaptureInfo]]:
    """Read exactly ``count`` frames with the read method ``variant``, copying zero-copy views.

    Works in both I/O modes: an empty non-blocking read is just retried. Fails with
    ``WatchdogExpired`` if the frames do not all come within ``timeout`` seconds.
    """
    method = getattr(sock, variant)
    frames: list[bytes] = []
    infos: list[CaptureInfo] = []
    with watchdog(timeout):
        while len(frames) < count:
            if variant.endswith("multi_packets"):
                packets, batch_infos = method(min(batch, count - len(frames)))
            else:
                try:
                    packet, info = method()
                except TimeoutError:
                    continue
                packets, batch_infos = [packet], [info]
            # A zero-copy view dies at the next read: copy it now.
            frames += [bytes(packet) for packet in packets]
            infos += batch_infos
    return frames, infos


def read_until_empty(sock: XDPPacket) -> list[bytes]:
    """Drain a non-blocking socket: read batches until one comes back empty."""
    frames: list[bytes] = []
    while True:
        packets, _ = sock.read_multi_packets(64)
        if not packets:
            return frames
        frames += packets


def assert_capture_infos(
    infos: Sequence[CaptureInfo], frames: Sequence[bytes], sock: XDPPacket, not_before: int,
    not_after: int,
) -> None:
    """Each info describes its frame, on ``sock``'s interface and queue, within the time span.

    Timestamps are arrival times, in the order the frames arrived.
    """
    assert len(infos) == len(frames)
    for info, frame in zip(infos, frames):
        assert (info.capture_length, info.length) == (len(frame), len(frame))
        assert (info.interface_index, info.queue_id) == (sock.ifindex, sock.queue_id)
        assert not_before <= info.timestamp_ns <= not_after
        assert info.timestamp == info.timestamp_ns / 10**9
    stamps = [info.timestamp_ns for info in infos]
    disorder = [(i, stamps[i] - stamps[i + 1]) for i in range(len(stamps) - 1) if stamps[i] > stamps[i + 1]]
    assert not disorder, (disorder[:5], not_before, not_after, stamps[:3], stamps[-3:])


def assert_nothing_arrives(capture: AfPacketCapture, wait: float = 0.2) -> None:
    """No test frame reaches ``capture`` within ``wait`` seconds."""
    assert capture.recv_frames(1, wait) == []


# --------------------------------------------------------------------------------------------
# Queues


def peer_tx_queue_reaching(rx_queue: int, mode: XDPMode) -> int:
    """The peer tx queue an AF_XDP sender uses so its frames reach capture rx queue ``rx_queue``.

    veth hands a frame sent on tx queue q to the other end's rx queue q. In native mode
    the XDP program runs on that rx queue. In generic mode it runs later, on the skb, and
    the kernel takes the queue from ``skb->queue_mapping``, which it reads as "rx queue + 1"
    (``skb_get_rx_queue``), so tx queue q is seen as rx queue q - 1 there (q = 0: queue 0).
    """
    return rx_queue if mode is XDP_MODE_DRV else rx_queue + 1


def send_on_rx_queue(pair: VethPair, rx_queue: int, mode: XDPMode, frames: list[bytes]) -> None:
    """Send ``frames`` from the peer so they arrive on capture rx queue ``rx_queue``.

    The sender is an ``XDPPacket`` in copy (generic) mode bound to the right peer tx queue;
    ``mode`` is the capture end's mode, which decides that queue.
    """
    tx_queue = peer_tx_queue_reaching(rx_queue, mode)
    sender = XDPPacket(pair.peer, OptXDPMode(XDP_MODE_SKB), OptQueueID(tx_queue))
    with sender, watchdog(10):
        assert sender.write_multi_packets(frames) == len(frames)


# --------------------------------------------------------------------------------------------
# Kernel state


def open_fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def socket_mapping_count() -> int:
    """How many memory mappings of sockets (AF_XDP rings) this process has."""
    with open("/proc/self/maps") as maps:
        return sum("socket:[" in line for line in maps)


def attached_prog_id(ifindex: int) -> int:
    """The id of the XDP program on ``ifindex`` (0 if none), as netlink reports it."""
    return _netlink.get_link(ifindex).xdp_prog_id


def attach_foreign_xdp_pass(ifindex: int, mode: XDPMode) -> int:
    """Attach an XDP_PASS program through netlink, as a tool like ``ip`` would; return its id.

    Our descriptor is closed at once: the program stays attached to the interface (netlink
    attachments have no owner) until something detaches it.
    """
    prog_fd = _bpf.prog_load(_bpf.BPF_PROG_TYPE_XDP, XDP_PASS_PROGRAM, "GPL", name="foreign_pass")
    try:
        _netlink.set_xdp_fd(ifindex, prog_fd, XDP_FLAGS_BY_MODE[mode])
        return _bpf.prog_get_info_by_fd(prog_fd).id
    finally:
        os.close(prog_fd)


def settle() -> None:
    """Let the kernel finish receiving frames just sent, before counting what it did.

    A send runs the receiving side synchronously in this thread (softirq on bottom-half
    enable), except that under load the kernel may hand the rest of that work to ksoftirqd;
    a short pause lets it finish. Use before asserting kernel counters or an empty ring.
    """
    time.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` every millisecond until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def wait_until_blocked(pid: int, timeout: float = 5.0) -> None:
    """Wait until process ``pid`` sleeps in select/poll (per ``/proc/PID/syscall``)."""
    wait_syscalls = _WAIT_SYSCALLS_BY_MACHINE[platform.machine()]

    def blocked() -> bool:
        with open(f"/proc/{pid}/syscall") as status:
            number = status.read().split()[0]
        return number.isdigit() and int(number) in wait_syscalls

    if not wait_until(blocked, timeout):
        raise AssertionError(f"process {pid} did not block in select/poll within {timeout} s")


# --------------------------------------------------------------------------------------------
# Child processes


@contextlib.contextmanager
def child_process(source: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``start_subprocess(source, *args)``, killed (if still running) and reaped on exit."""
    child = start_subprocess(source, *args)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def expect_line(child: subprocess.Popen[str], expected: str, timeout: float = 10.0) -> None:
    """The child's next line of output is ``expected``; on a mismatch, show its stderr."""
    assert child.stdout is not None
    assert child.stderr is not None
    with watchdog(timeout):
        line = child.stdout.readline()
    if not line:  # the child exited: its traceback says why
        raise AssertionError(f"child exited before printing {expected!r}:\n{child.stderr.read()}")
    assert line == expected + "\n"


# --------------------------------------------------------------------------------------------
# Multi-queue: steering frames to every queue, reading an XDPMultiQueue

#: Queues of the capture end in the multi-queue tests.
MULTI_QUEUES = 4


def make_multiqueue_veth(make_veth: VethFactory, mode: XDPMode, queues: int = MULTI_QUEUES) -> VethPair:
    """A veth pair whose capture end has ``queues`` queues, each reachable from the peer in ``mode``.

    Native mode: a symmetric pair (veth refuses native XDP on an end with fewer rx queues
    than its peer has tx queues). Generic mode: the peer gets one queue more, because the
    capture rx queue ``q`` is reached from peer tx queue ``q + 1`` (``peer_tx_queue_reaching``).
    """
    return make_veth(queues, queues + 1 if mode is XDP_MODE_SKB else queues)


class QueueSenders:
    """Sends frames from the peer to chosen rx queues of the capture end.

    Owns one copy-mode ``XDPPacket`` per peer tx queue, opened on first use and closed by
    ``close()`` (also a context manager). ``mode`` is the capture end's mode: it decides
    which peer tx queue reaches which capture rx queue (``peer_tx_queue_reaching``).
    Not thread-safe.
    """

    def __init__(self, pair: VethPair, mode: XDPMode) -> None:
        self._pair = pair
        self._mode = mode
        self._senders: dict[int, XDPPacket] = {}

    def send(self, rx_queue: int, frames: Sequence[bytes]) -> None:
        """Send ``frames`` (all of them, in order) so they arrive on capture rx queue ``rx_queue``."""
        tx_queue = peer_tx_queue_reaching(rx_queue, self._mode)
        if tx_queue not in self._senders:
            self._senders[tx_queue] = XDPPacket(
                self._pair.peer, OptXDPMode(XDP_MODE_SKB), OptQueueID(tx_queue)
            )
        with watchdog(10):
            assert self._senders[tx_queue].write_multi_packets(frames) == len(frames)

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()

    def __enter__(self) -> QueueSenders:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def frames_for_queue(pair: VethPair, queue: int, count: int, first_seq: int = 0) -> list[bytes]:
    """``count`` distinct frames (peer -> capture) for ``queue``: sequence numbers ``queue * 100000 + ...``.

    Sizes are mixed (60..1514) from two frames on; a single frame has 60 bytes.
    """
    first = queue * 100_000 + first_seq
    if count == 1:
        return [make_test_frame(MIN_FRAME_SIZE, first, pair.capture_mac, pair.peer_mac)]
    return frames_from_peer(pair, count, first_seq=first)


def read_multiqueue(
    mq: XDPMultiQueue, count: int, variant: str, batch: int = 64, timeout: float = 10.0
) -> tuple[list[bytes], list[CaptureInfo]]:
    """Read exactly ``count`` frames from ``mq`` with the read method ``variant``.

    Zero-copy views are copied at once (they die at the next read). An empty non-blocking
    read is retried; ``WatchdogExpired`` if the frames do not all come within ``timeout`` s.
    A read returning more than still wanted fails the test: frames nobody sent arrived.
    """
    method = getattr(mq, variant)
    frames: list[bytes] = []
    infos: list[CaptureInfo] = []
    with watchdog(timeout):
        while len(frames) < count:
            if variant.endswith("multi_packets"):
                packets, batch_infos = method(min(batch, count - len(frames)))
            else:
                packets, batch_infos = method()
            frames += [bytes(packet) for packet in packets]
            infos += batch_infos
    assert len(frames) == count, f"read {len(frames)} frames, expected {count}"
    return frames, infos


def split_by_queue(frames: Sequence[bytes], infos: Sequence[CaptureInfo]) -> dict[int, list[bytes]]:
    """Frames grouped by the queue their ``CaptureInfo`` names, in the order read."""
    by_queue: dict[int, list[bytes]] = {}
    for frame, info in zip(frames, infos):
        by_queue.setdefault(info.queue_id, []).append(frame)
    return by_queue
