"""The capture fast path: pcap records the shipped program writes in front of each frame,
written to the file straight from the UMEM (``xdppacket._pcap_records``).

Real frames go out of the peer of a veth pair; the file is read back by our reader and by
tcpdump, byte for byte and nanosecond for nanosecond, and compared with the frames sent
and the times they were sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.capture_files import tcpdump_records
from tests.integration.test_timestamps import assert_each_stamped_during_its_send, send_spaced
from tests.netns import VethPair, make_test_frame, run_command
from tests.xdp_helpers import BOTH_MODES, frames_from_peer, send_frames, watchdog
from xdppacket import (
    IO_MODE_NONBLOCK,
    OptFrameSize,
    OptIoMode,
    OptNumFrames,
    OptPollTimeout,
    OptQueueCount,
    OptRingSize,
    OptXDPMode,
    XDPMode,
    XDPMultiQueue,
)
from xdppacket._arrival import METADATA_MISSING_VARIABLE, REALTIME_OFFSET_VARIABLE
from xdppacket._pcap_records import PcapRecordReader
from xdppacket.multiqueue import pcap_record_reader
from xdppacket.pcap import DEFAULT_SNAPLEN, PcapReader, PcapWriter

TIMEOUT_S = 10


def open_capture(pair: VethPair, mode: XDPMode) -> XDPMultiQueue:
    return XDPMultiQueue(pair.capture, OptQueueCount(1), OptXDPMode(mode), OptIoMode(IO_MODE_NONBLOCK),
                         OptPollTimeout(20_000))


def reader_of(mq: XDPMultiQueue, snaplen: int = DEFAULT_SNAPLEN) -> PcapRecordReader:
    reader = pcap_record_reader(mq, snaplen)
    assert reader is not None  # the shipped program writes record headers
    return reader


def pass_all(reader: PcapRecordReader, writer: PcapWriter, count: int, batch: int = 64) -> list[int]:
    """Pass records until ``count`` came; return the size of each batch passed."""
    batches: list[int] = []
    with watchdog(TIMEOUT_S):
        while sum(batches) < count:
            passed = reader.pass_records(batch, writer.write_raw_records)
            assert passed is not None
            if passed:
                batches.append(passed)
    return batches


@BOTH_MODES
def test_records_are_the_frames_sent_stamped_with_their_arrival(
    veth_pair: VethPair, mode: XDPMode, tmp_path: Path
) -> None:
    """Frames sent a millisecond apart and passed late, in one batch, keep their own arrival
    times; tcpdump reads every byte and nanosecond our reader does."""
    frames = frames_from_peer(veth_pair, 20)
    path = tmp_path / "records.pcap"
    with open_capture(veth_pair, mode) as mq, PcapWriter(path) as writer:
        reader = reader_of(mq)
        sent = send_spaced(veth_pair, frames)
        time.sleep(0.05)  # read late: the time of the read would be 50 ms after every arrival
        read_started = time.time_ns()
        assert pass_all(reader, writer, len(frames)) == [len(frames)]
        stats = mq.get_stats()[0]
    assert (stats.rx_packets, stats.rx_bytes) == (len(frames), sum(map(len, frames)))
    with PcapReader(path) as file:
        records = list(file)
    assert [data for data, _ in records] == frames
    stamps = [stamp for _, stamp in records]
    assert_each_stamped_during_its_send(sent, stamps)  # CLOCK_REALTIME of arrival, each its own
    assert stamps[-1] < read_started - 40_000_000
    dumped = tcpdump_records(path)
    assert [(r.timestamp_ns, r.data, r.length) for r in dumped] == [(s, d, len(d)) for d, s in records]


def test_snaplen_cuts_the_records_and_keeps_each_frame_length(veth_pair: VethPair, tmp_path: Path) -> None:
    snaplen = 100
    frames = [make_test_frame(size, seq, veth_pair.capture_mac, veth_pair.peer_mac)
              for seq, size in enumerate([60, 99, 100, 101, 1514, 64])]
    path = tmp_path / "cut.pcap"
    with open_capture(veth_pair, XDPMode.DRV) as mq, PcapWriter(path, snaplen=snaplen) as writer:
        reader = reader_of(mq, snaplen)
        send_frames(veth_pair.peer, frames)
        pass_all(reader, writer, len(frames))
    dumped = tcpdump_records(path)
    assert [(r.data, r.length) for r in dumped] == [(f[:snaplen], len(f)) for f in frames]
    with PcapReader(path) as file:
        assert [data for data, _ in file] == [f[:snaplen] for f in frames]


def test_frames_stay_in_the_ring_while_written_and_go_back_to_the_kernel_after(
    veth_pair: VethPair, tmp_path: Path
) -> None:
    """Three times the frames the socket has (1024): each goes back to the kernel once
    written. While its record is being written, a frame is still in the rx ring: no view of
    it exists, so nothing can outlive it."""
    frames = [make_test_frame(64, seq, veth_pair.capture_mac, veth_pair.peer_mac) for seq in range(3000)]
    path = tmp_path / "many.pcap"
    in_ring_while_written = []
    with open_capture(veth_pair, XDPMode.DRV) as mq, PcapWriter(path) as writer:
        reader = reader_of(mq)

        def write(iovecs: bytes, count: int, total: int) -> None:
            in_ring_while_written.append((mq.check_frames()[0]["rx"]["rx ring"], count))
            writer.write_raw_records(iovecs, count, total)

        got = 0
        for start in range(0, len(frames), 500):  # fewer than the socket's frames at a time
            send_frames(veth_pair.peer, frames[start : start + 500])
            with watchdog(TIMEOUT_S):
                while got < start + 500:
                    passed = reader.pass_records(256, write)
                    assert passed is not None
                    got += passed
        census = mq.check_frames()[0]
    assert all(in_ring >= count for in_ring, count in in_ring_while_written)
    assert (census["rx"]["fill ring or kernel"], census["rx"]["rx ring"], census["rx"]["lent"]) == (1024, 0, 0)
    with PcapReader(path) as file:
        assert [data for data, _ in file] == frames


def test_a_failed_write_leaves_the_frames_for_the_next_read(veth_pair: VethPair, tmp_path: Path) -> None:
    frames = frames_from_peer(veth_pair, 8)
    path = tmp_path / "retry.pcap"

    def refuse(iovecs: bytes, count: int, total: int) -> None:
        raise OSError(28, "No space left on device")

    with open_capture(veth_pair, XDPMode.DRV) as mq, PcapWriter(path) as writer:
        reader = reader_of(mq)
        send_frames(veth_pair.peer, frames)
        time.sleep(0.05)
        with pytest.raises(OSError, match="No space left"):
            reader.pass_records(64, refuse)
        assert mq.get_stats()[0].rx_packets == 0
        pass_all(reader, writer, len(frames))
    with PcapReader(path) as file:
        assert [data for data, _ in file] == frames


def test_frames_without_the_programs_metadata_are_never_taken_as_records(veth_pair: VethPair) -> None:
    """A driver refusing the metadata sets the program's flag: the reader gives up before
    taking the frames, which an ordinary read then returns intact."""
    frames = frames_from_peer(veth_pair, 5)
    with open_capture(veth_pair, XDPMode.DRV) as mq:
        reader = reader_of(mq)
        variables = mq.sockets[0].program.global_variables
        assert variables[METADATA_MISSING_VARIABLE] == 0  # veth gives every frame its metadata
        send_frames(veth_pair.peer, frames)
        time.sleep(0.05)
        variables[METADATA_MISSING_VARIABLE] = 1  # what the program does when adjust_meta fails
        assert reader.pass_records(64, lambda iovecs, count, total: None) is None
        got, _ = mq.read_multi_packets(64)
    assert got == frames


def test_the_program_keeps_the_wall_clock_offset(veth_pair: VethPair, tmp_path: Path) -> None:
    """Set when the program is attached, before any frame can reach a socket, and put right
    by the reader when it drifts (a stepped clock)."""
    with open_capture(veth_pair, XDPMode.SKB) as mq, PcapWriter(tmp_path / "clock.pcap") as writer:
        variables = mq.sockets[0].program.global_variables
        offset = time.time_ns() - time.monotonic_ns()
        assert abs(variables[REALTIME_OFFSET_VARIABLE] - offset) < 5_000_000  # type: ignore[operator]
        variables[REALTIME_OFFSET_VARIABLE] = 0
        send_frames(veth_pair.peer, frames_from_peer(veth_pair, 2))
        reader_of(mq).pass_records(64, writer.write_raw_records)
        assert abs(variables[REALTIME_OFFSET_VARIABLE] - offset) < 5_000_000  # type: ignore[operator]


def test_a_capture_takes_buffers_that_outlast_a_stall_within_its_budget(veth_pair: VethPair) -> None:
    """4096 frames a queue, of 2048 bytes while the MTU fits them, fewer frames for many queues."""
    from xdppacket.cli.capture import _buffer_options

    assert _buffer_options(veth_pair.capture, 1) == [OptNumFrames(4096), OptRingSize(4096), OptFrameSize(2048)]
    assert _buffer_options(veth_pair.capture, 4) == [OptNumFrames(4096), OptRingSize(4096), OptFrameSize(2048)]
    assert _buffer_options(veth_pair.capture, 8) == [OptNumFrames(2048), OptRingSize(2048), OptFrameSize(2048)]
    assert _buffer_options(veth_pair.capture, 64) == [OptNumFrames(1024), OptRingSize(1024), OptFrameSize(2048)]
    run_command("ip", "link", "set", "dev", veth_pair.capture, "mtu", "1800")  # 1818-byte frames
    assert _buffer_options(veth_pair.capture, 1) == [OptNumFrames(4096), OptRingSize(4096), OptFrameSize(4096)]


def test_without_cap_ipc_lock_the_buffers_stay_within_rlimit_memlock(veth_pair: VethPair) -> None:
    """The UMEM is locked memory: a process without CAP_IPC_LOCK and the usual 8 MiB limit
    gets 2048 frames of 2048 bytes (8 MiB with the tx half), where 4096 would not open."""
    script = (
        "import sys\n"
        "from xdppacket.cli.capture import _buffer_options\n"
        "print([option.value for option in _buffer_options(sys.argv[1], 1)])\n"
    )
    result = subprocess.run(
        ["setpriv", "--bounding-set=-ipc_lock", "prlimit", f"--memlock={8 << 20}", sys.executable, "-c", script,
         veth_pair.capture],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "[2048, 2048, 2048]"
