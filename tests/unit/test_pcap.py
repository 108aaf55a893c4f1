"""``xdppacket.pcap`` without the kernel: exact bytes of the files, round trips, system calls.

The byte layouts are checked against the format drafts field by field (pcap record
headers) and by an independent parser (dpkt's pcapng blocks); tcpdump, tshark and dpkt
reading whole files are in ``tests/integration/test_pcap_tools.py``.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import dpkt
import pytest

from tests.capture_files import isb_interface, isb_options, pcapng_blocks
from xdppacket import CaptureInfo, XDPStats
from xdppacket.pcap import PcapNgWriter, PcapReader, PcapWriter, isb_counters

# An ifindex no namespace has, so interface names are predictable: "ifindex<N>:q<queue>".
IFINDEX = 987654
BASE_NS = 1_700_000_000_123_456_789


def frames_and_infos(count: int, ifindex: int = IFINDEX, queues: int = 1) -> tuple[list[bytes], list[CaptureInfo]]:
    """Distinct frames of sizes 60, 61, ... with nanosecond-distinct timestamps."""
    frames = [bytes([i % 256]) * (60 + i) for i in range(count)]
    infos = [
        CaptureInfo(BASE_NS + i * 1_000_001, len(frame), len(frame), ifindex, i % queues)
        for i, frame in enumerate(frames)
    ]
    return frames, infos


def read_all(path: Path | io.BytesIO) -> list[tuple[bytes, int]]:
    with PcapReader(path) as reader:
        return list(reader)


# --------------------------------------------------------------------------- pcap


@pytest.mark.parametrize("nanosecond", [True, False])
def test_pcap_round_trip_keeps_bytes_and_timestamps(tmp_path: Path, nanosecond: bool) -> None:
    frames, infos = frames_and_infos(5)
    path = tmp_path / "a.pcap"
    with PcapWriter(path, nanosecond=nanosecond) as writer:
        writer.write(frames[0], infos[0])
        writer.write_batch(frames[1:], infos[1:])
    expected_ts = [i.timestamp_ns if nanosecond else i.timestamp_ns // 1000 * 1000 for i in infos]
    assert read_all(path) == list(zip(frames, expected_ts))
    data = path.read_bytes()
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    assert struct.unpack_from("<IHHiIII", data) == (magic, 2, 4, 0, 0, 262144, 1)
    seconds, fraction, incl, orig = struct.unpack_from("<IIII", data, 24)
    assert (seconds, fraction) == (1_700_000_000, 123_456_789 if nanosecond else 123_456)
    assert (incl, orig) == (60, 60)
    assert len(data) == 24 + sum(16 + len(frame) for frame in frames)


def test_snaplen_truncates_data_and_keeps_the_original_length(tmp_path: Path) -> None:
    frame = bytes(range(200))
    info = CaptureInfo(BASE_NS, 200, 200, IFINDEX, 0)
    path = tmp_path / "a.pcap"
    with PcapWriter(path, snaplen=64) as writer:
        writer.write(frame, info)
    data = path.read_bytes()
    assert struct.unpack_from("<I", data, 16)[0] == 64  # snaplen in the file header
    assert struct.unpack_from("<II", data, 24 + 8) == (64, 200)  # incl_len, orig_len
    assert data[24 + 16 :] == frame[:64]


def test_original_length_beyond_the_data_is_kept(tmp_path: Path) -> None:
    """A frame already cut short (length > captured bytes) keeps its real length."""
    path = tmp_path / "a.pcap"
    with PcapWriter(path) as writer:
        writer.write(bytes(60), CaptureInfo(BASE_NS, 60, 9000, IFINDEX, 0))
    assert struct.unpack_from("<II", path.read_bytes(), 24 + 8) == (60, 9000)


@pytest.mark.parametrize("writer_class", [PcapWriter, PcapNgWriter])
def test_views_are_not_kept_after_the_call(tmp_path: Path, writer_class: type[PcapWriter]) -> None:
    """A zero-copy view can be released right after a write: no export of it survives."""
    buffer = bytearray(range(100)) * 3
    view = memoryview(buffer)
    with writer_class(tmp_path / "a", snaplen=100) as writer:
        writer.write_batch([view, view[:80]], [CaptureInfo(BASE_NS, 300, 300, IFINDEX, 0)] * 2)
        view.release()  # raises BufferError if the writer still held a slice of it
        buffer.extend(b"x")  # likewise, if anything still exported the bytearray
    assert [data for data, _ in read_all(tmp_path / "a")] == [bytes(buffer[:100]), bytes(buffer[:80])]


def test_a_path_gets_one_writev_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_writev = os.writev

    def counting_writev(fd: int, buffers: list[bytes]) -> int:
        calls.append(len(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", counting_writev)
    frames, infos = frames_and_infos(600)
    path = tmp_path / "a.pcap"
    with PcapWriter(path) as writer:
        assert calls == [1]  # the file header
        writer.write_batch(frames[:300], infos[:300])
        assert calls == [1, 600]  # one call: a header and a frame each
        writer.write_batch(frames, infos)
        assert calls == [1, 600, 1024, 176]  # IOV_MAX buffers at most per call
    assert len(read_all(path)) == 900


def test_a_file_object_gets_one_write_per_batch(tmp_path: Path) -> None:
    class CountingFile(io.BytesIO):
        writes = 0

        def write(self, data: object) -> int:
            self.writes += 1
            return super().write(data)  # type: ignore[arg-type]

    frames, infos = frames_and_infos(50)
    target = CountingFile()
    with PcapNgWriter(target) as writer:
        before = target.writes
        writer.write_batch(frames, infos)
        assert target.writes == before + 1
    assert not target.closed  # a file object passed in stays open
    # Same bytes as through a path and writev.
    with PcapNgWriter(tmp_path / "b.pcapng") as writer:
        writer.write_batch(frames, infos)
    assert target.getvalue() == (tmp_path / "b.pcapng").read_bytes()


def test_partial_writes_and_more_buffers_than_iov_max(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """writev may write less than asked (a pipe, a signal): the rest follows in order."""
    real_writev = os.writev
    calls = 0

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        nonlocal calls
        calls += 1
        assert calls < 100, "no progress: a partial write is being repeated"
        assert len(buffers) <= 1024  # IOV_MAX
        joined = b"".join(bytes(b) for b in buffers)
        return real_writev(fd, [joined[: max(1, len(joined) // 3 - 7)]])

    monkeypatch.setattr(os, "writev", short_writev)
    frames, infos = frames_and_infos(1500)
    path = tmp_path / "a.pcap"
    with PcapWriter(path) as writer:
        writer.write_batch(frames, infos)
    assert read_all(path) == [(frame, info.timestamp_ns) for frame, info in zip(frames, infos)]


def test_unbuffered_file_io_is_written_with_writev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-w -`` hands the writer ``open(1, "wb", buffering=0)``: writev, and it stays open."""
    calls: list[int] = []
    real_writev = os.writev

    def recording_writev(fd: int, buffers: list[bytes]) -> int:
        calls.append(fd)
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", recording_writev)
    with open(tmp_path / "a.pcap", "wb", buffering=0) as raw:
        with PcapWriter(raw) as writer:
            writer.write_batch(*frames_and_infos(3))
        assert calls == [raw.fileno(), raw.fileno()]
        assert not raw.closed
    assert len(read_all(tmp_path / "a.pcap")) == 3


def test_bad_use_is_refused(tmp_path: Path) -> None:
    frames, infos = frames_and_infos(2)
    with pytest.raises(TypeError, match="path or a binary file object"):
        PcapWriter(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="snaplen"):
        PcapWriter(tmp_path / "a", snaplen=0)
    writer = PcapWriter(tmp_path / "a")
    with pytest.raises(ValueError, match="2 frames but 1 infos"):
        writer.write_batch(frames, infos[:1])
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed PcapWriter"):
        writer.write(frames[0], infos[0])


# ------------------------------------------------------------------------- pcapng


@pytest.mark.parametrize("nanosecond", [True, False])
def test_pcapng_round_trip_and_one_interface_per_queue(tmp_path: Path, nanosecond: bool) -> None:
    frames, infos = frames_and_infos(7, queues=3)
    path = tmp_path / "a.pcapng"
    with PcapNgWriter(path, nanosecond=nanosecond) as writer:
        writer.write_batch(frames[:4], infos[:4])
        writer.write_batch(frames[4:], infos[4:])
    expected_ts = [i.timestamp_ns if nanosecond else i.timestamp_ns // 1000 * 1000 for i in infos]
    assert read_all(path) == list(zip(frames, expected_ts))
    blocks = list(pcapng_blocks(path.read_bytes()))
    assert [t for t, _ in blocks] == [0x0A0D0D0A, 1, 6, 1, 6, 1, 6, 6, 6, 6, 6]
    idbs = [dpkt.pcapng.InterfaceDescriptionBlockLE(block) for t, block in blocks if t == 1]
    names = [{opt.code: opt.data for opt in idb.opts} for idb in idbs]
    tsresol = [bytes([9])] if nanosecond else []
    assert [(n[2], [n[9]] if 9 in n else []) for n in names] == [
        (f"ifindex{IFINDEX}:q{q}".encode(), tsresol) for q in range(3)
    ]
    assert all((idb.linktype, idb.snaplen) == (1, 262144) for idb in idbs)
    epbs = [dpkt.pcapng.EnhancedPacketBlockLE(block) for t, block in blocks if t == 6]
    assert [epb.iface_id for epb in epbs] == [0, 1, 2, 0, 1, 2, 0]
    assert [bytes(epb.pkt_data) for epb in epbs] == frames


def test_pcapng_snaplen_pads_and_keeps_the_original_length(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    with PcapNgWriter(path, snaplen=61) as writer:
        writer.write(bytes(range(100)), CaptureInfo(BASE_NS, 100, 100, IFINDEX, 0))
    (_, epb_block), = [b for b in pcapng_blocks(path.read_bytes()) if b[0] == 6]
    assert len(epb_block) == 32 + 64  # 61 bytes padded to 64
    assert struct.unpack_from("<II", epb_block, 20) == (61, 100)
    assert epb_block[28 : 28 + 64] == bytes(range(61)) + bytes(3)


def test_write_stats_of_a_multiqueue_writes_one_block_per_queue(tmp_path: Path) -> None:
    frames, infos = frames_and_infos(2, queues=2)
    stats = [
        XDPStats(rx_packets=10, rx_dropped=3, rx_ring_full=4, rx_fill_ring_empty_descs=3),
        XDPStats(rx_packets=0, rx_dropped=5),  # queue 2: no frame yet, gets an IDB now
    ]
    path = tmp_path / "a.pcapng"
    with PcapNgWriter(path) as writer:
        writer.write_batch(frames, infos)
        writer.write_stats([stats[0] + stats[1], XDPStats(rx_packets=1), *stats])
    blocks = list(pcapng_blocks(path.read_bytes()))
    assert [t for t, _ in blocks] == [0x0A0D0D0A, 1, 6, 1, 6, 5, 5, 1, 5]
    assert [isb_interface(b) for t, b in blocks if t == 5] == [0, 1, 2]
    counters = [isb_options(block) for t, block in blocks if t == 5]
    u64 = struct.Struct("<Q").pack
    assert [(c[4], c[5], c[8]) for c in counters] == [
        (u64(1), u64(0), u64(1)),
        (u64(17), u64(7), u64(10)),
        (u64(5), u64(5), u64(0)),
    ]
    starts = [struct.unpack("<II", c[2]) for c in counters]
    ends = [struct.unpack("<II", c[3]) for c in counters]
    assert all((s[0] << 32 | s[1]) <= (e[0] << 32 | e[1]) for s, e in zip(starts, ends))
    assert read_all(path) == [(f, i.timestamp_ns) for f, i in zip(frames, infos)]  # ISBs skipped


def test_isb_counters_count_each_dropped_frame_once() -> None:
    stats = XDPStats(rx_packets=100, rx_dropped=7, rx_ring_full=5, rx_fill_ring_empty_descs=7,
                     rx_invalid_descs=2)
    assert isb_counters(stats) == {4: 112, 5: 12, 8: 100}


def test_stats_callable_is_written_on_close_and_single_stats_need_a_queue(tmp_path: Path) -> None:
    frames, infos = frames_and_infos(2, queues=2)
    path = tmp_path / "a.pcapng"
    writer = PcapNgWriter(path, stats=lambda: XDPStats(rx_packets=2, rx_ring_full=1))
    writer.write_batch(frames[:1], infos[:1])
    writer.write_stats(XDPStats(rx_packets=1))  # one queue seen: queue 0
    writer.write_batch(frames[1:], infos[1:])
    with pytest.raises(ValueError, match=r"queue_id \(frames so far: 0, 1\); pass queue_id="):
        writer.write_stats(XDPStats())
    with pytest.raises(ValueError, match="pass queue_id="):
        writer.close()  # the callable gives a single XDPStats: ambiguous now; it still closes
    assert writer.closed
    queue_stats = [XDPStats(rx_packets=2, rx_ring_full=1), XDPStats(rx_dropped=2)]
    writer = PcapNgWriter(path, stats=lambda: [queue_stats[0] + queue_stats[1], *queue_stats])
    writer.write_batch(frames, infos)
    writer.write_stats(XDPStats(rx_packets=1), queue_id=1)
    writer.close()
    isbs = [b for t, b in pcapng_blocks(path.read_bytes()) if t == 5]
    assert [isb_interface(b) for b in isbs] == [1, 0, 1]  # write_stats, then close()
    assert [struct.unpack("<Q", isb_options(b)[5])[0] for b in isbs] == [0, 1, 2]


def test_write_stats_needs_an_interface_when_none_was_seen(tmp_path: Path) -> None:
    with PcapNgWriter(tmp_path / "a.pcapng") as writer:
        with pytest.raises(ValueError, match="interface_index"):
            writer.write_stats([XDPStats(), XDPStats()])
        writer.write_stats([XDPStats(), XDPStats(rx_dropped=1)], interface_index=IFINDEX)
    blocks = list(pcapng_blocks((tmp_path / "a.pcapng").read_bytes()))
    assert [t for t, _ in blocks] == [0x0A0D0D0A, 1, 5]


# ------------------------------------------------------------------------- reader


def test_reader_reads_big_endian_pcap_and_pcapng() -> None:
    frame = bytes(range(60))
    pcap = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    pcap += struct.pack(">IIII", 5, 7, 60, 60) + frame
    assert read_all(io.BytesIO(pcap)) == [(frame, 5_000_007_000)]

    def block(block_type: int, body: bytes) -> bytes:
        return struct.pack(">II", block_type, len(body) + 12) + body + struct.pack(">I", len(body) + 12)

    # An interface with binary resolution 2^-10 s and an offset of 3 s; a simple packet block.
    idb_opts = struct.pack(">HH", 9, 1) + bytes([0x80 | 10, 0, 0, 0])
    idb_opts += struct.pack(">HHq", 14, 8, 3) + struct.pack(">HH", 0, 0)
    ng = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    ng += block(1, struct.pack(">HHI", 1, 0, 0) + idb_opts)
    ng += block(6, struct.pack(">IIIII", 0, 0, 2048, 60, 60) + frame)
    ng += block(3, struct.pack(">I", 60) + frame)
    assert read_all(io.BytesIO(ng)) == [(frame, 5_000_000_000), (frame, 0)]


def test_reader_rejects_what_is_not_a_whole_capture_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty capture file"):
        read_all(io.BytesIO(b""))
    with pytest.raises(ValueError, match="not a pcap or pcapng file"):
        read_all(io.BytesIO(b"GIF89a" + bytes(40)))
    frames, infos = frames_and_infos(2)
    with PcapWriter(tmp_path / "a.pcap") as writer:
        writer.write_batch(frames, infos)
    cut = (tmp_path / "a.pcap").read_bytes()[:-5]
    reader = PcapReader(io.BytesIO(cut))
    it = iter(reader)
    assert next(it) == (frames[0], infos[0].timestamp_ns)
    with pytest.raises(ValueError, match="truncated capture file: a record's data"):
        next(it)


@pytest.mark.parametrize("writer_class", [PcapWriter, PcapNgWriter])
def test_a_failing_file_leaves_no_descriptor_open(writer_class: type[PcapWriter]) -> None:
    """/dev/full refuses every write (ENOSPC): the writer says so and closes what it opened."""
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="No space left on device") as failure:
        writer_class("/dev/full")
    # The traceback keeps the half-built writer alive: its file must be closed all the same.
    assert failure.tb is not None
    assert len(os.listdir("/proc/self/fd")) == before
