"""Files written by ``PcapWriter``/``PcapNgWriter`` read back by tcpdump, tshark and dpkt.

Frames captured for real (zero-copy views from every queue of a 4-queue veth, written as
they were read) and synthetic ones (snaplen, microseconds) must come back from each tool
with the exact bytes, original length and nanosecond timestamp, in order: tcpdump with
``-tt --time-stamp-precision=nano -xx``, tshark with ``-T json -x`` (``frame_raw``), dpkt's
readers. dpkt's pcapng reader returns float seconds, so there timestamps are compared to
the microsecond.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.capture_files import Record, dpkt_records, tcpdump_records, tshark_records
from tests.netns import VethFactory, make_test_frame, mixed_sizes
from tests.xdp_helpers import (
    MULTI_QUEUES,
    QueueSenders,
    frames_for_queue,
    make_multiqueue_veth,
    watchdog,
)
from xdppacket import (
    IO_MODE_NONBLOCK,
    XDP_MODE_DRV,
    CaptureInfo,
    OptIoMode,
    OptPollTimeout,
    OptQueueCount,
    OptXDPMode,
    XDPMultiQueue,
)
from xdppacket.pcap import PcapNgWriter, PcapWriter

IFINDEX = 1  # lo: every namespace has it, so pcapng interface names are "lo:q<N>"


def check_every_reader(path: Path, expected: list[Record], *, nanosecond: bool = True) -> None:
    """tcpdump, tshark and dpkt each report exactly ``expected`` (names: tshark, pcapng only)."""
    assert tcpdump_records(path) == [Record(r.timestamp_ns, r.data, r.length) for r in expected]
    assert tshark_records(path) == expected
    read_by_dpkt = dpkt_records(path)
    assert [data for _, data in read_by_dpkt] == [r.data for r in expected]
    stamps = [ts for ts, _ in read_by_dpkt]
    if isinstance(stamps[0], Decimal):  # dpkt's pcap reader on a nanosecond file: exact
        assert [int(ts * 10**9) for ts in stamps] == [r.timestamp_ns for r in expected]
    elif nanosecond:  # floats: 1.7e9 s holds about 0.2 us of precision
        assert all(abs(float(ts) * 1e9 - r.timestamp_ns) < 1000 for ts, r in zip(stamps, expected))
    else:
        assert [round(float(ts) * 1e6) * 1000 for ts in stamps] == [r.timestamp_ns for r in expected]


@pytest.mark.parametrize("suffix", [".pcap", ".pcapng"])
def test_frames_captured_on_every_queue_are_read_back_exactly(
    make_veth: VethFactory, tmp_path: Path, suffix: str
) -> None:
    pair = make_multiqueue_veth(make_veth, XDP_MODE_DRV)
    sent = {queue: frames_for_queue(pair, queue, 3 + queue) for queue in range(MULTI_QUEUES)}
    total = sum(len(frames) for frames in sent.values())
    path = tmp_path / f"capture{suffix}"
    frames: list[bytes] = []
    infos: list[CaptureInfo] = []
    options = (OptQueueCount(MULTI_QUEUES), OptXDPMode(XDP_MODE_DRV), OptIoMode(IO_MODE_NONBLOCK),
               OptPollTimeout(20_000))
    with XDPMultiQueue(pair.capture, *options) as mq, QueueSenders(pair, XDP_MODE_DRV) as senders:
        for queue, queue_frames in sent.items():
            senders.send(queue, queue_frames)
        with PcapWriter(path) if suffix == ".pcap" else PcapNgWriter(path) as writer, watchdog(10):
            while len(frames) < total:
                views, batch_infos = mq.zero_copy_read_multi_packets(64)
                writer.write_batch(views, batch_infos)  # the views themselves, no copy
                frames += [bytes(view) for view in views]
                infos += batch_infos
    assert sorted(frames) == sorted(frame for queue_frames in sent.values() for frame in queue_frames)
    assert {info.queue_id for info in infos} == set(range(MULTI_QUEUES))
    names = [f"{pair.capture}:q{info.queue_id}" if suffix == ".pcapng" else "" for info in infos]
    check_every_reader(path, [
        Record(info.timestamp_ns, frame, len(frame), name) for frame, info, name in zip(frames, infos, names)
    ])


@pytest.mark.parametrize("suffix", [".pcap", ".pcapng"])
@pytest.mark.parametrize("nanosecond", [True, False], ids=["ns", "us"])
def test_snaplen_and_resolution_are_what_the_tools_read(tmp_path: Path, suffix: str, nanosecond: bool) -> None:
    """Frames of 60..1514 bytes cut at 100 keep their wire length; timestamps keep their unit."""
    mac_a, mac_b = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    frames = [make_test_frame(size, seq, mac_a, mac_b) for seq, size in enumerate(mixed_sizes(12))]
    infos = [CaptureInfo(1_700_000_000_000_000_001 + seq * 987_654_321, len(frame), len(frame), IFINDEX, seq % 3)
             for seq, frame in enumerate(frames)]
    path = tmp_path / f"synthetic{suffix}"
    writer_class = PcapWriter if suffix == ".pcap" else PcapNgWriter
    with writer_class(path, nanosecond=nanosecond, snaplen=100) as writer:
        writer.write_batch(frames[:5], infos[:5])
        for frame, info in zip(frames[5:], infos[5:]):
            writer.write(memoryview(frame), info)
    unit = 1 if nanosecond else 1000
    check_every_reader(path, [
        Record(info.timestamp_ns // unit * unit, frame[:100], len(frame),
               f"lo:q{info.queue_id}" if suffix == ".pcapng" else "")
        for frame, info in zip(frames, infos)
    ], nanosecond=nanosecond)
