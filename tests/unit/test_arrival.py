"""Arrival times read from the trailers in front of frames (``xdppacket/_arrival.py``).

The trailers are written here into an anonymous mapping laid out as a UMEM: the shipped
program's 32 bytes of metadata (arrival time in CLOCK_REALTIME, length, magic, then a pcap
record header) directly before each frame's data, or a custom program's 16-byte trailer
alone (its time in CLOCK_MONOTONIC).
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Iterator

import pytest

from xdppacket._arrival import (
    PCAP_RECORD_HEADER_SIZE,
    SHIPPED_METADATA_SIZE,
    TRAILER_SIZE,
    XDPPACKET_META_MAGIC,
    ArrivalReader,
    IncompleteTimes,
    ShippedVariables,
    realtime_offset,
)

FRAME = 4096
DATA_OFFSET = 256  # XDP_PACKET_HEADROOM, no OptHeadroom
ADDRESSES = [index * FRAME + DATA_OFFSET for index in range(4)]


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


def read_times(area: mmap.mmap, custom: bool, batches: list[list[int]], variables: ShippedVariables | None = None,
               data_offset: int = DATA_OFFSET) -> list[list[int | None]]:
    reader = ArrivalReader(area, FRAME, data_offset, custom_metadata=custom, variables=variables)
    try:
        return [reader.arrival_times(addresses) for addresses in batches]
    finally:
        reader.close()


def realtime_now() -> int:
    """CLOCK_REALTIME as the shipped program computes it (CLOCK_MONOTONIC plus the offset)."""
    now = time.monotonic_ns()
    return now + realtime_offset(now)


def test_fresh_trailers_give_their_realtime_arrival_times_in_a_plain_list(area: mmap.mmap) -> None:
    now = realtime_now()
    stamped = [now - 4000, now - 3000, now - 2000, now - 1000]
    for address, rx_time in zip(ADDRESSES, stamped):
        write_trailer(area, address, rx_time)
    [times] = read_times(area, False, [ADDRESSES])
    assert type(times) is list  # complete: the reader takes the fast path on its type alone
    assert times == stamped


@pytest.mark.parametrize("headroom", [3, 8, 1021])
@pytest.mark.parametrize("custom", [False, True], ids=["shipped", "custom"])
def test_trailers_are_read_at_any_headroom(area: mmap.mmap, headroom: int, custom: bool) -> None:
    """OptHeadroom moves every frame's data, its trailer with it, to any byte (3: not even
    4-aligned), where the trailer's fields are read all the same."""
    data_offset = DATA_OFFSET + headroom
    addresses = [index * FRAME + data_offset for index in range(4)]
    now = time.monotonic_ns()
    written = [now - 4000 + index for index in range(4)] if custom else [realtime_now() - 4000 + i for i in range(4)]
    for address, rx_time in zip(addresses, written):
        write_trailer(area, address, rx_time, shipped=not custom)
    [times] = read_times(area, custom, [addresses], data_offset=data_offset)
    assert type(times) is list
    offset = realtime_offset(time.monotonic_ns()) if custom else 0
    assert times == [rx_time + offset for rx_time in written]


def test_a_frame_whose_data_starts_elsewhere_in_its_frame_has_its_own_trailer_read(area: mmap.mmap) -> None:
    """Each frame's data normally starts at the same place in its UMEM frame, where the
    reader finds trailers by frame number; one elsewhere (a batch's addresses sum to
    something else) has every trailer read where its frame's data actually begins."""
    moved = [ADDRESSES[0], ADDRESSES[1] + 64, ADDRESSES[2], ADDRESSES[3]]
    now = realtime_now()
    stamped = [now - 4000, now - 3000, now - 2000, now - 1000]
    for address, rx_time in zip(moved, stamped):
        write_trailer(area, address, rx_time)
    write_trailer(area, ADDRESSES[1], now - 2500)  # where the moved frame's data would have started
    [times] = read_times(area, False, [moved])
    assert times == stamped


def write_stale_and_future_trailers(area: mmap.mmap) -> int:
    """Trailers for a first batch of two frames and a second of all four: the second batch
    reuses the first's chunks (stale trailers), and the third trailer lies in the future.
    Returns the CLOCK_REALTIME time they are relative to."""
    now = realtime_now()
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
    assert second == [None, None, None, now - 1000]


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
    variables = ShippedVariables(flag_clear, lambda offset: None)
    _, second = read_times(area, False, [ADDRESSES[:2], ADDRESSES], variables)
    assert len(polls) == 2  # once per batch
    assert type(second) is list
    assert second == [now - 9000, now - 8000, now + 10**12, now - 1000]


def test_once_the_program_reports_a_frame_without_metadata_every_trailer_is_checked(area: mmap.mmap) -> None:
    now = write_stale_and_future_trailers(area)
    _, second = read_times(area, False, [ADDRESSES[:2], ADDRESSES], ShippedVariables(lambda: 1, lambda offset: None))
    assert isinstance(second, IncompleteTimes)
    assert second == [None, None, None, now - 1000]


def test_the_program_is_given_the_clock_offset_whenever_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped program adds the offset it holds to its times: a reader gives it the
    process's measurement (re-measured once a second) as soon as that changes, and returns
    what the program holds."""
    measured = iter([5_000, 5_000, 7_000, 0, 7_000])
    monkeypatch.setattr("xdppacket._arrival.realtime_offset", lambda monotonic_now: next(measured))
    written: list[int] = []
    variables = ShippedVariables(lambda: 0, written.append)
    held = [variables.realtime_offset(time.monotonic_ns()) for _ in range(5)]
    assert held == [5_000, 5_000, 7_000, 0, 7_000]
    assert written == [5_000, 7_000, 0, 7_000]


def test_the_clock_offset_is_never_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wall clock set before boot would make CLOCK_REALTIME - CLOCK_MONOTONIC negative;
    the offset is 0 then, as the program's unsigned variable would hold it."""
    monkeypatch.setattr("xdppacket._arrival._offset_cache", (0, -(10**18)))  # measure again
    monkeypatch.setattr("xdppacket._arrival.time.time_ns", lambda: 5)
    assert realtime_offset(time.monotonic_ns()) == 0


def test_checked_trailers_survive_the_wall_clock_being_set_back(area: mmap.mmap, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the flag raised, trailers are checked on CLOCK_MONOTONIC: after the wall clock
    is set back an hour (the offset drops), new frames are still newer than the old ones."""
    hour = 3600 * 10**9
    offsets = iter([10 * hour, 9 * hour])
    monkeypatch.setattr("xdppacket._arrival.realtime_offset", lambda monotonic_now: next(offsets))
    now = time.monotonic_ns()
    for address, rx_time in zip(ADDRESSES[:2], (now - 9000, now - 8000)):
        write_trailer(area, address, rx_time + 10 * hour)
    reader = ArrivalReader(area, FRAME, DATA_OFFSET, custom_metadata=False,
                           variables=ShippedVariables(lambda: 1, lambda offset: None))
    try:
        first = reader.arrival_times(ADDRESSES[:2])
        for address, rx_time in zip(ADDRESSES[2:], (now - 2000, now - 1000)):
            write_trailer(area, address, rx_time + 9 * hour)
        second = reader.arrival_times(ADDRESSES[2:])
    finally:
        reader.close()
    assert first == [now - 9000 + 10 * hour, now - 8000 + 10 * hour]
    assert type(second) is list
    assert second == [now - 2000 + 9 * hour, now - 1000 + 9 * hour]
