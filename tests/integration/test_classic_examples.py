"""The classic AF_XDP example programs (rxdrop, txonly, dump, l2fwd_*) do what they say, on veth.

Each program runs as a script in the test's network namespace. Once it prints its first
line (it is ready), the test sends a known set of frames from the peer, stops the program
(``--duration``, Ctrl-C or SIGTERM, as a user would) and checks the totals it prints and,
for the forwarders, the exact frames that come back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

import pytest

from tests.example_runs import EXAMPLE_TIMEOUT_S, ctrl_c, example_running, exit_output, read_line
from tests.netns import (
    AfPacketCapture,
    AfPacketSender,
    VethFactory,
    VethPair,
    run_command,
)
from tests.xdp_helpers import (
    BOTH_MODES,
    MULTI_QUEUES,
    QueueSenders,
    attached_prog_id,
    frames_for_queue,
    macs_swapped,
    peer_tx_queue_reaching,
    read_multiqueue,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    XDP_MODE_SKB,
    OptIoMode,
    OptPollTimeout,
    OptQueueCount,
    OptXDPMode,
    XDPMode,
    XDPMultiQueue,
)

MODE_ARG = {XDP_MODE_SKB: "skb", XDP_MODE_DRV: "drv"}
# Long enough for one rate line, short enough to keep the suite fast.
DURATION = "1.5"
PROGRAMS = ["rxdrop", "txonly", "dump", "l2fwd_1link", "l2fwd_2link", "l2fwd_multicore"]


# --------------------------------------------------------------------------------------------
# Running a program


def program_running(name: str, *args: str) -> AbstractContextManager[subprocess.Popen[str]]:
    """``examples/NAME.py args...``, leading its own process group, which is killed at the end."""
    return example_running(f"examples/{name}.py", *args)


def finish(program: subprocess.Popen[str], stop: str = "duration") -> tuple[str, str]:
    """Stop the program as ``stop`` says; return its remaining stdout and stderr once it exits cleanly.

    ``duration``: it stops by itself; ``ctrl-c``: SIGINT to its whole group, as a terminal
    sends; ``sigterm``: SIGTERM to the program alone, as ``kill`` does.
    """
    if stop == "ctrl-c":
        ctrl_c(program)
    elif stop == "sigterm":
        os.kill(program.pid, signal.SIGTERM)
    return exit_output(program)


def totals(output: str) -> dict[str, str]:
    """The final ``total LABEL counters...`` lines, by label; every other line must be a rate line."""
    found = {}
    for line in output.splitlines():
        kind, label, counters = line.split(" ", 2)
        assert kind in ("rate", "total"), line
        if kind == "total":
            found[label] = counters
    return found


def rate_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("rate ")]


def counters(rx: Sequence[bytes] = (), tx: Sequence[bytes] = (), directions: str = "rx") -> str:
    """The ``total`` line's counters for frames received ``rx`` and sent ``tx``, no drops."""
    parts = []
    if "rx" in directions:
        parts.append(f"rx_packets={len(rx)} rx_bytes={sum(map(len, rx))}")
    if "tx" in directions:
        parts.append(f"tx_packets={len(tx)} tx_bytes={sum(map(len, tx))}")
    if "rx" in directions:
        parts.append("rx_dropped=0 rx_ring_full=0")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Traffic


def frames_per_queue(pair: VethPair) -> dict[int, list[bytes]]:
    """Queue q gets 10 * (q + 1) distinct frames of mixed sizes."""
    return {queue: frames_for_queue(pair, queue, 10 * (queue + 1)) for queue in range(MULTI_QUEUES)}


class PeerEndpoint:
    """The peer end as an AF_XDP endpoint on all its queues (generic mode).

    Sends frames so they reach a chosen rx queue of the capture end (mode ``mode``) and
    reads every frame coming back: with a socket on each peer queue, none escapes.
    Owns an ``XDPMultiQueue`` until ``close()``.
    """

    def __init__(self, pair: VethPair, mode: XDPMode) -> None:
        self._mode = mode
        peer_queues = MULTI_QUEUES + 1 if mode is XDP_MODE_SKB else MULTI_QUEUES
        self._mq = XDPMultiQueue(pair.peer, OptXDPMode(XDP_MODE_SKB), OptQueueCount(peer_queues),
                                 OptIoMode(IO_MODE_NONBLOCK), OptPollTimeout(200_000))

    def send(self, rx_queue: int, frames: list[bytes]) -> None:
        sender = self._mq.sockets[peer_tx_queue_reaching(rx_queue, self._mode)]
        assert sender.write_multi_packets(frames) == len(frames)

    def receive(self, count: int) -> list[bytes]:
        """Exactly ``count`` frames, then nothing more for one poll timeout."""
        frames, _ = read_multiqueue(self._mq, count, "read_multi_packets")
        assert self._mq.read_multi_packets(64) == ([], [])
        return frames

    def close(self) -> None:
        self._mq.close()


@pytest.fixture
def peer_endpoint(pair: VethPair, mode: XDPMode) -> Iterator[PeerEndpoint]:
    endpoint = PeerEndpoint(pair, mode)
    try:
        yield endpoint
    finally:
        endpoint.close()


# --------------------------------------------------------------------------------------------
# Every program


@pytest.mark.parametrize("name", PROGRAMS)
def test_help_exits_0_and_describes_the_program(name: str) -> None:
    with program_running(name, "--help") as program:
        stdout, stderr = finish(program)
    assert stderr == ""
    assert stdout.startswith(f"usage: {name}.py ")
    assert f"{name}: " in stdout
    assert "--mode" in stdout
    assert "--duration" in stdout


# --------------------------------------------------------------------------------------------
# rxdrop


@pytest.mark.parametrize(
    ("mode", "stop", "extra"),
    [
        (XDP_MODE_SKB, "duration", []),
        (XDP_MODE_DRV, "sigterm", ["--batch", "7"]),
        (XDP_MODE_DRV, "ctrl-c", ["--zero-copy"]),
    ],
    ids=["skb-duration", "drv-sigterm-batch7", "drv-ctrl-c-zero-copy"],
)
def test_rxdrop_counts_every_frame_of_every_queue(
    pair: VethPair, senders: QueueSenders, mode: XDPMode, stop: str, extra: list[str]
) -> None:
    args = ["-i", pair.capture, "--queues", str(MULTI_QUEUES), "--mode", MODE_ARG[mode], *extra]
    if stop == "duration":
        args += ["--duration", DURATION]
    with program_running("rxdrop", *args) as program:
        assert read_line(program) == (
            f"rxdrop on {pair.capture} queues 0-3 ({MODE_ARG[mode]} mode), Ctrl-C stops"
        )
        sent = frames_per_queue(pair)
        for queue, frames in sent.items():
            senders.send(queue, frames)
        first_rates = [read_line(program) for _ in range(MULTI_QUEUES + 1)]
        output, stderr = finish(program, stop)
    assert stderr == ""
    assert [line.split()[:2] for line in first_rates] == [
        ["rate", label] for label in ("q0", "q1", "q2", "q3", "all")
    ]
    assert all(re.fullmatch(r"rate \S+ rx_pps=\d+ drops_ps=0", line) for line in first_rates)
    everything = [frame for frames in sent.values() for frame in frames]
    assert totals(output) == {
        **{f"q{queue}": counters(rx=frames) for queue, frames in sent.items()},
        "all": counters(rx=everything),
    }


# --------------------------------------------------------------------------------------------
# l2fwd_1link


@BOTH_MODES
def test_l2fwd_1link_sends_each_frame_back_with_macs_swapped(
    pair: VethPair, peer_endpoint: PeerEndpoint, mode: XDPMode
) -> None:
    args = ["-i", pair.capture, "--queues", str(MULTI_QUEUES), "--mode", MODE_ARG[mode]]
    stop = "ctrl-c" if mode is XDP_MODE_SKB else "sigterm"
    with program_running("l2fwd_1link", *args) as program:
        assert read_line(program) == (
            f"l2fwd on {pair.capture} queues 0-3 ({MODE_ARG[mode]} mode), Ctrl-C stops"
        )
        sent = frames_per_queue(pair)
        for queue, frames in sent.items():
            peer_endpoint.send(queue, frames)
        everything = [frame for frames in sent.values() for frame in frames]
        returned = peer_endpoint.receive(len(everything))
        output, stderr = finish(program, stop)
    assert stderr == ""
    assert sorted(returned) == sorted(map(macs_swapped, everything))
    both = "rx tx"
    assert totals(output) == {
        **{f"q{queue}": counters(frames, frames, both) for queue, frames in sent.items()},
        "all": counters(everything, everything, both),
    }


def test_l2fwd_1link_keeps_the_order_of_a_queue(make_veth: VethFactory) -> None:
    """One queue, AF_PACKET in and out: the frames come back in the order they were sent."""
    pair = make_veth()
    frames = frames_for_queue(pair, 0, 50)
    with AfPacketCapture(pair.peer) as capture, program_running(
        "l2fwd_1link", "-i", pair.capture, "--mode", "drv", "--duration", DURATION
    ) as program:
        read_line(program)
        with AfPacketSender(pair.peer) as sender:
            for frame in frames:
                sender.send(frame)
        returned = capture.recv_frames(len(frames) + 1, timeout=1.0)
        output, _ = finish(program)
    assert returned == [macs_swapped(frame) for frame in frames]
    assert totals(output) == {"all": counters(frames, frames, "rx tx")}


# --------------------------------------------------------------------------------------------
# txonly


def txonly_frame(size: int, dst: bytes, src: bytes) -> bytes:
    """The frame txonly documents: MACs, ethertype 0x88B5, then bytes counting from 0."""
    return dst + src + b"\x88\xb5" + bytes(i % 256 for i in range(size - 14))


def link_rx_counters(ifname: str) -> tuple[int, int]:
    """(packets, bytes) the kernel counted received on ``ifname``."""
    stats = json.loads(run_command("ip", "-j", "-s", "link", "show", "dev", ifname))[0]["stats64"]["rx"]
    return stats["packets"], stats["bytes"]


@BOTH_MODES
def test_txonly_sends_exactly_count_frames_of_the_documented_bytes(
    veth_pair: VethPair, peer_capture: AfPacketCapture, mode: XDPMode
) -> None:
    args = ["-i", veth_pair.capture, "--size", "100", "--count", "1000", "--batch", "48",
            "--dst", veth_pair.peer_mac.hex(":"), "--mode", MODE_ARG[mode]]
    with program_running("txonly", *args) as program:
        assert read_line(program) == (
            f"txonly on {veth_pair.capture} queue 0 ({MODE_ARG[mode]} mode): 100-byte frames to "
            f"{veth_pair.peer_mac.hex(':')}, Ctrl-C stops"
        )
        output, stderr = finish(program)  # it stops by itself after --count frames
    assert stderr == ""
    expected = txonly_frame(100, veth_pair.peer_mac, veth_pair.capture_mac)
    arrived = peer_capture.recv_frames(1001, timeout=1.0)
    assert len(arrived) == 1000
    assert set(arrived) == {expected}
    assert totals(output) == {"all": "tx_packets=1000 tx_bytes=100000"}


def test_txonly_at_full_speed_every_frame_it_counts_reaches_the_peer(make_veth: VethFactory) -> None:
    """Until --duration ends, from queue 2, to the broadcast address: the peer's counters agree."""
    pair = make_veth(MULTI_QUEUES)
    before = link_rx_counters(pair.peer)
    args = ["-i", pair.capture, "--queue", "2", "--mode", "skb", "--duration", DURATION]
    with program_running("txonly", *args) as program:
        read_line(program)
        output, stderr = finish(program)
    assert stderr == ""
    rates = rate_lines(output)
    assert rates
    assert all(re.fullmatch(r"rate all tx_pps=[1-9]\d*", line) for line in rates), rates
    total = totals(output)["all"]
    match = re.fullmatch(r"tx_packets=(\d+) tx_bytes=(\d+)", total)
    assert match is not None, total
    packets, octets = int(match[1]), int(match[2])
    assert packets > 1000
    assert octets == 64 * packets
    after = link_rx_counters(pair.peer)
    assert (after[0] - before[0], after[1] - before[1]) == (packets, octets)


# --------------------------------------------------------------------------------------------
# dump


def ipv4(protocol: int, src: str, dst: str, payload: bytes) -> bytes:
    """An IPv4 packet (checksum left 0: dump decodes, it does not verify)."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, protocol, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + payload


def ipv6(next_header: int, src: str, dst: str, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 0x6000_0000, len(payload), next_header, 64,
                       socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + payload


def tcp(sport: int, dport: int, flags: int, data: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + data


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


SYN, PSH, ACK, FIN = 0x02, 0x08, 0x10, 0x01


def crafted_frames(pair: VethPair) -> list[tuple[bytes, str]]:
    """Frames peer -> capture, each with the summary dump must print for it (after the MACs)."""
    ethernet = pair.capture_mac + pair.peer_mac
    ip4, ip6, other = ethernet + b"\x08\x00", ethernet + b"\x86\xdd", ethernet + b"\x88\xb5"
    return [
        (ip4 + ipv4(6, "10.0.0.1", "10.0.0.2", tcp(1234, 80, SYN, b"")),
         "IPv4 10.0.0.1:1234 > 10.0.0.2:80 TCP [S] len 0"),
        (ip4 + ipv4(6, "10.0.0.2", "10.0.0.1", tcp(80, 1234, PSH | ACK, b"hello")),
         "IPv4 10.0.0.2:80 > 10.0.0.1:1234 TCP [P.] len 5"),
        (ip4 + ipv4(6, "10.0.0.1", "10.0.0.2", tcp(1234, 80, FIN | ACK, b"")),
         "IPv4 10.0.0.1:1234 > 10.0.0.2:80 TCP [F.] len 0"),
        (ip4 + ipv4(17, "192.168.1.1", "192.168.1.2", udp(53, 5353, bytes(12))),
         "IPv4 192.168.1.1:53 > 192.168.1.2:5353 UDP len 12"),
        (ip6 + ipv6(17, "fe80::1", "ff02::1:2", udp(546, 547, b"\x01\x02\x03\x04")),
         "IPv6 [fe80::1]:546 > [ff02::1:2]:547 UDP len 4"),
        (ip4 + ipv4(1, "1.2.3.4", "5.6.7.8", b"\x08\x00\x00\x00\x00\x01\x00\x01"),
         "IPv4 1.2.3.4 > 5.6.7.8 proto 1"),
        (other + bytes(46), "ethertype 0x88b5"),
    ]


@BOTH_MODES
def test_dump_prints_one_decoded_line_per_frame(
    pair: VethPair, senders: QueueSenders, mode: XDPMode
) -> None:
    frames = crafted_frames(pair)
    args = ["-i", pair.capture, "-c", str(len(frames)), "--queues", str(MULTI_QUEUES), "--mode", MODE_ARG[mode]]
    with program_running("dump", *args) as program:
        ready = read_line(program, stderr=True)
        assert ready == f"dump on {pair.capture} queues 0-3 ({MODE_ARG[mode]} mode), Ctrl-C stops"
        before = time.time()
        for index, (frame, _) in enumerate(frames):
            senders.send(index % MULTI_QUEUES, [frame])
        after = time.time()
        output, stderr = finish(program)  # it stops by itself after -c frames
    macs = f"{pair.peer_mac.hex(':')} > {pair.capture_mac.hex(':')}"
    expected = [
        f"q{index % MULTI_QUEUES} {len(frame)} {macs} {decoded}"
        for index, (frame, decoded) in enumerate(frames)
    ]
    lines = output.splitlines()
    assert sorted(line.split(" ", 1)[1] for line in lines) == sorted(expected)
    stamps = [float(line.split(" ", 1)[0]) for line in lines]
    assert all(re.fullmatch(r"\d+\.\d{6}", line.split(" ", 1)[0]) for line in lines)
    assert all(before - 1e-6 <= stamp <= after + 1e-6 for stamp in stamps), (before, stamps, after)
    everything = [frame for frame, _ in frames]
    assert totals(stderr)["all"] == counters(rx=everything)


# --------------------------------------------------------------------------------------------
# l2fwd_2link and l2fwd_multicore


@BOTH_MODES
def test_l2fwd_2link_forwards_each_way_unchanged(make_veth: VethFactory, mode: XDPMode) -> None:
    """Two pairs: what the peer of one sends comes out at the peer of the other, and back."""
    one, two = make_veth(), make_veth()
    one_to_two = frames_for_queue(one, 0, 30)
    two_to_one = frames_for_queue(two, 0, 20, first_seq=1000)
    args = ["-i", one.capture, "-j", two.capture, "--mode", MODE_ARG[mode], "--duration", DURATION]
    with AfPacketCapture(one.peer) as at_one, AfPacketCapture(two.peer) as at_two, program_running(
        "l2fwd_2link", *args
    ) as program:
        assert read_line(program) == (
            f"l2fwd between {one.capture} and {two.capture} queues 0-0 ({MODE_ARG[mode]} mode), Ctrl-C stops"
        )
        with AfPacketSender(one.peer) as from_one, AfPacketSender(two.peer) as from_two:
            for frame in one_to_two:
                from_one.send(frame)
            for frame in two_to_one:
                from_two.send(frame)
        assert at_two.recv_frames(len(one_to_two) + 1, timeout=1.0) == one_to_two
        assert at_one.recv_frames(len(two_to_one) + 1, timeout=0.2) == two_to_one
        output, stderr = finish(program)
    assert stderr == ""
    both = "rx tx"
    assert totals(output) == {
        one.capture: counters(one_to_two, two_to_one, both),
        two.capture: counters(two_to_one, one_to_two, both),
    }


@BOTH_MODES
def test_l2fwd_multicore_sends_each_queues_frames_back_from_its_own_process(
    pair: VethPair, peer_endpoint: PeerEndpoint, mode: XDPMode
) -> None:
    args = ["-i", pair.capture, "--queues", str(MULTI_QUEUES), "--mode", MODE_ARG[mode]]
    stop = "ctrl-c" if mode is XDP_MODE_SKB else "sigterm"
    with program_running("l2fwd_multicore", *args) as program:
        ready = sorted(read_line(program) for _ in range(MULTI_QUEUES))
        assert ready == [f"queue {queue}: forwarding" for queue in range(MULTI_QUEUES)]
        sent = frames_per_queue(pair)
        for queue, frames in sent.items():
            peer_endpoint.send(queue, frames)
        everything = [frame for frames in sent.values() for frame in frames]
        returned = peer_endpoint.receive(len(everything))
        first_rates = [read_line(program) for _ in range(MULTI_QUEUES + 1)]
        output, stderr = finish(program, stop)
    assert stderr == ""
    assert sorted(returned) == sorted(map(macs_swapped, everything))
    assert [line.split()[:2] for line in first_rates] == [
        ["rate", label] for label in ("q0", "q1", "q2", "q3", "all")
    ]
    both = "rx tx"
    assert totals(output) == {
        **{f"q{queue}": counters(frames, frames, both) for queue, frames in sent.items()},
        "all": counters(everything, everything, both),
    }


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("name", PROGRAMS)
def test_a_missing_interface_is_one_clear_line_and_leaves_nothing_attached(
    veth_pair: VethPair, name: str
) -> None:
    """For l2fwd_2link the first interface exists: its program must be gone when it exits."""
    args = ["-i", veth_pair.capture, "-j", "nosuch0"] if name == "l2fwd_2link" else ["-i", "nosuch0"]
    with program_running(name, *args, "--mode", "skb") as program:
        try:
            stdout, stderr = program.communicate(timeout=EXAMPLE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not exit on a missing interface") from None
    assert program.returncode == 1
    assert stderr == (
        f"{name}.py: [Errno 19] no network interface named 'nosuch0' in this network namespace; "
        "list them with `ip link`\n"
    )
    if name == "l2fwd_multicore":  # the parent still says what its workers did: nothing
        assert stdout == "total all rx_packets=0 rx_bytes=0 tx_packets=0 tx_bytes=0 rx_dropped=0 rx_ring_full=0\n"
    assert attached_prog_id(socket.if_nametoindex(veth_pair.capture)) == 0
