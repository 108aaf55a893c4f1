"""xdppacket.scapy: scapy's sniff, AsyncSniffer and sendp over an XDPSuperSocket, on a veth pair,
checked by the exact bytes of the frames on the other end."""

from __future__ import annotations

import json
import time
from functools import partial

import pytest
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.sendrecv import AsyncSniffer, sendp, sniff

from tests.netns import AfPacketCapture, PrivateNetns, VethFactory, VethPair, start_script
from tests.xdp_helpers import (
    BOTH_MODES,
    MULTI_QUEUES,
    QueueSenders,
    frames_for_queue,
    frames_from_peer,
    frames_to_peer,
    make_multiqueue_veth,
    send_frames,
    wait_until,
)
from xdppacket import XDP_MODE_SKB, OptQueueCount, OptXDPMode, XDPMode
from xdppacket.scapy import XDPSuperSocket


@BOTH_MODES
def test_sniff_returns_the_exact_frames_sent_from_the_peer(veth_pair: VethPair, mode: XDPMode) -> None:
    frames = frames_from_peer(veth_pair, 40)
    with XDPSuperSocket(veth_pair.capture, OptXDPMode(mode)) as sock:
        before = time.time()
        # All sent before sniffing: one batch read takes many of them off the ring, and
        # the rest wait in user space, where select() must still see them.
        send_frames(veth_pair.peer, frames)
        packets = sniff(opened_socket=sock, count=len(frames), timeout=5)
        after = time.time()
    assert [bytes(packet) for packet in packets] == frames
    assert all(isinstance(packet, Ether) and Raw in packet for packet in packets)
    assert all(before <= float(packet.time) <= after for packet in packets)
    assert sock.closed


def test_sniff_over_every_queue(make_veth: VethFactory) -> None:
    pair = make_multiqueue_veth(make_veth, XDP_MODE_SKB)
    frames = {queue: frames_for_queue(pair, queue, 8) for queue in range(MULTI_QUEUES)}
    with XDPSuperSocket(pair.capture, OptXDPMode(XDP_MODE_SKB), OptQueueCount(MULTI_QUEUES)) as sock:
        queues_seen: list[int] = []

        def note_queue(packet: Ether) -> None:
            info = sock.recv_capture_info
            assert info is not None
            queues_seen.append(info.queue_id)

        with QueueSenders(pair, XDP_MODE_SKB) as senders:
            for queue, queue_frames in frames.items():
                senders.send(queue, queue_frames)
        packets = sniff(opened_socket=sock, count=8 * MULTI_QUEUES, timeout=5, prn=note_queue)
    received = [bytes(packet) for packet in packets]
    assert sorted(received) == sorted(frame for queue_frames in frames.values() for frame in queue_frames)
    for queue, queue_frames in frames.items():  # each queue's frames in order, on that queue
        assert [frame for frame, seen in zip(received, queues_seen) if seen == queue] == queue_frames


def _has_count(sniffer: AsyncSniffer, count: int) -> bool:
    return bool(sniffer.count == count)


def test_async_sniffer_wakes_for_frames_on_any_queue(make_veth: VethFactory) -> None:
    pair = make_multiqueue_veth(make_veth, XDP_MODE_SKB)
    with XDPSuperSocket(pair.capture, OptXDPMode(XDP_MODE_SKB), OptQueueCount(MULTI_QUEUES)) as sock:
        sniffer = AsyncSniffer(opened_socket=sock)
        sniffer.start()
        assert wait_until(lambda: sniffer.running, timeout=5.0)
        expected: list[bytes] = []
        with QueueSenders(pair, XDP_MODE_SKB) as senders:
            for queue in reversed(range(MULTI_QUEUES)):  # the sniffer waits before each arrives
                time.sleep(0.05)
                frames = frames_for_queue(pair, queue, 3)
                senders.send(queue, frames)
                expected += frames
                assert wait_until(partial(_has_count, sniffer, len(expected)), timeout=3.0), queue
        packets = sniffer.stop()
    assert packets is not None
    assert [bytes(packet) for packet in packets] == expected


def test_sniff_with_nothing_arriving_ends_at_its_timeout(veth_pair: VethPair) -> None:
    with XDPSuperSocket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
        start = time.monotonic()
        packets = sniff(opened_socket=sock, timeout=0.3)
        elapsed = time.monotonic() - start
    assert len(packets) == 0
    assert 0.25 <= elapsed < 2.0


def test_async_sniffer_captures_until_stopped(veth_pair: VethPair) -> None:
    frames = frames_from_peer(veth_pair, 20)
    with XDPSuperSocket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB)) as sock:
        sniffer = AsyncSniffer(opened_socket=sock, store=True)
        sniffer.start()
        assert wait_until(lambda: sniffer.running, timeout=5.0)
        send_frames(veth_pair.peer, frames[:10])
        assert wait_until(lambda: sniffer.count == 10, timeout=5.0)
        send_frames(veth_pair.peer, frames[10:])
        assert wait_until(lambda: sniffer.count == 20, timeout=5.0)
        start = time.monotonic()
        packets = sniffer.stop()  # the sniffer is blocked in select(): stop wakes it
        assert time.monotonic() - start < 2.0
        assert not sock.closed  # an opened_socket stays the caller's
    assert packets is not None
    assert [bytes(packet) for packet in packets] == frames


def test_sendp_frames_arrive_on_the_peer(veth_pair: VethPair) -> None:
    frames = frames_to_peer(veth_pair, 30)
    built: Packet = Ether(dst=veth_pair.peer_mac.hex(":"), src=veth_pair.capture_mac.hex(":"), type=0x88B5) / b"scapy"
    with AfPacketCapture(veth_pair.peer) as capture, XDPSuperSocket(
        veth_pair.capture, OptXDPMode(XDP_MODE_SKB)
    ) as sock:
        sendp([Ether(frame) for frame in frames], socket=sock, verbose=False)
        sendp(built, socket=sock, verbose=False)
        received = capture.recv_frames(len(frames) + 2, timeout=2.0)
    assert received == [*frames, bytes(built)]
    assert built.sent_time is not None


def test_recv_after_close_is_end_of_stream(veth_pair: VethPair) -> None:
    sock = XDPSuperSocket(veth_pair.capture, OptXDPMode(XDP_MODE_SKB))
    sock.close()
    sock.close()  # idempotent
    with pytest.raises(EOFError):
        sock.recv()
    assert XDPSuperSocket.select([sock], 0) == [sock]  # so that sniff() sees the end at once


def test_bad_options_leave_nothing_open(veth_pair: VethPair) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        XDPSuperSocket(veth_pair.capture, batch_size=0)
    with pytest.raises(TypeError, match="unknown option"):
        XDPSuperSocket(veth_pair.capture, "not an option")


def test_scapy_bench_runs_and_reports_both_sockets(private_netns: PrivateNetns) -> None:
    script = start_script(
        "cmd/scapy_bench.py", "--rounds", "1", "--seconds", "0.3", "--rate", "5000", "--json"
    )
    stdout, stderr = script.communicate(timeout=60)
    assert script.returncode == 0, stderr
    report = json.loads(stdout)
    assert set(report["medians"]) == {"scapy L2 socket (AF_PACKET)", "XDPSuperSocket (AF_XDP)"}
    for median in report["medians"].values():
        assert median["rounds"] == 1
        assert median["offered"] >= 1500  # 3 bursts of 500 frames at least
        assert 0 < median["received"] <= median["offered"]
