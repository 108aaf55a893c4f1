"""Arrival times read from the trailers in front of frames (``xdppacket/_arrival.py``).

The trailers are written here into an anonymous mapping laid out as a UMEM: the shipped
program's 32 bytes of metadata (arrival time, length, magic, then a pcap record header)
directly before each frame's data, or a custom program's 16-byte trailer alone.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from xdppacket._arrival import (
    PCAP_RECORD_HEADER_SIZE,
    SHIPPED_METADATA_SIZE,
    TRAILER_SIZE,
    XDPPACKET_META_MAGIC,
    ArrivalReader,
    IncompleteTimes,
    realtime_offset,
)

FRAME = 4096
HEADROOM = 256
ADDRESSES = [index * FRAME + HEADROOM for index in range(4)]


@pytest.fixture
def area() -> Iterator[mmap.mmap]:
    memory = mmap.mmap(-1, FRAME * len(ADDRESSES))
    yield memory
    memory.close()


def write_trailer(area: mmap.mmap, address: int, rx_time_ns: int, shipped: bool = True,
                  magic: int = XDPPACKET_META_MAGIC) -> None:
    trailer = address - (SHIPPED_METADATA_SIZE if shipped else TRAILER_SIZE)
    length = SHIPPED_METADATA_SIZE if shipped else TRAILER_SIZE
    struct.pack_into("=QII", area, trailer, rx_time_ns, length, magic)
    if shipped:
        struct.pack_into("=4I", area, address - PCAP_RECORD_HEADER_SIZE, 0, 0, 60, 60)


def read_times(area: mmap.mmap, custom: bool, batches: list[list[int]],
               metadata_missing: Callable[[], int] | None = None) -> list[list[int | None]]:
    reader = ArrivalReader(area, custom_metadata=custom, metadata_missing=metadata_missing)
    try:
        return [reader.arrival_times(addresses) for addresses in batches]
    finally:
        reader.close()


def test_fresh_trailers_give_realtime_arrival_times_in_a_plain_list(area: mmap.mmap) -> None:
    now = time.monotonic_ns()
    raw = [now - 4000, now - 3000, now - 2000, now - 1000]
    for address, rx_time in zip(ADDRESSES, raw):
        write_trailer(area, address, rx_time)
    [times] = read_times(area, False, [ADDRESSES])
    assert type(times) is list  # complete: the reader takes the fast path on its type alone
    offset = realtime_offset(time.monotonic_ns())
    assert times == [rx_time + offset for rx_time in raw]


def write_stale_and_future_trailers(area: mmap.mmap) -> int:
    """Trailers for a first batch of two frames and a second of all four: the second batch
    reuses the first's chunks (stale trailers), and the third trailer lies in the future.
    Returns the CLOCK_MONOTONIC time they are relative to."""
    now = time.monotonic_ns()
    for address, rx_time in zip(ADDRESSES[:2], (now - 9000, now - 8000)):
        write_trailer(area, address, rx_time)
    write_trailer(area, ADDRESSES[2], now + 10**12)
    write_trailer(area, ADDRESSES[3], now - 1000)
    return now


def test_a_stale_or_future_trailer_gives_none_in_an_incomplete_list(area: mmap.mmap) -> None:
    """Only the fourth frame of the second batch has a time of its own."""
    now = write_stale_and_future_trailers(area)
    first, second = read_times(area, False, [ADDRESSES[:2], ADDRESSES])
    assert type(first) is list
    assert isinstance(second, IncompleteTimes)
    offset = realtime_offset(time.monotonic_ns())
    assert second == [None, None, None, now - 1000 + offset]


def test_a_custom_trailer_counts_only_with_its_magic_word(area: mmap.mmap) -> None:
    now = time.monotonic_ns()
    write_trailer(area, ADDRESSES[0], now - 2000, shipped=False)
    write_trailer(area, ADDRESSES[1], now - 1000, shipped=False, magic=0x12345678)
    [times] = read_times(area, True, [ADDRESSES[:2]])
    assert isinstance(times, IncompleteTimes)
    assert times == [now - 2000 + realtime_offset(time.monotonic_ns()), None]


def test_while_the_program_reports_no_frame_without_metadata_its_trailers_are_trusted(area: mmap.mmap) -> None:
    """The shipped program raises its flag before it redirects a frame without metadata:
    while the flag is clear there is no stale trailer, so none is looked for (a trailer
    that would look stale or future is then taken as it is)."""
    polls: list[int] = []

    def flag_clear() -> int:
        polls.append(1)
        return 0

    now = write_stale_and_future_trailers(area)
    _, second = read_times(area, False, [ADDRESSES[:2], ADDRESSES], metadata_missing=flag_clear)
    assert len(polls) == 2  # once per batch
    assert type(second) is list
    offset = realtime_offset(time.monotonic_ns())
    assert second == [now - 9000 + offset, now - 8000 + offset, now + 10**12 + offset, now - 1000 + offset]


def test_once_the_program_reports_a_frame_without_metadata_every_trailer_is_checked(area: mmap.mmap) -> None:
    now = write_stale_and_future_trailers(area)
    _, second = read_times(area, False, [ADDRESSES[:2], ADDRESSES], metadata_missing=lambda: 1)
    assert isinstance(second, IncompleteTimes)
    assert second == [None, None, None, now - 1000 + realtime_offset(time.monotonic_ns())]
