"""The ring classes of ``xdppacket._rings`` on a shared memory file standing in for the kernel.

A ring only needs a file descriptor it can ``mmap`` with ``MAP_SHARED``: here a memfd.
The test maps the same memfd a second time and plays the kernel's side on that mapping
(moving its index, writing or reading entries), exactly as the kernel would through its
own mapping of the ring. No root and no AF_XDP socket needed.
"""

from __future__ import annotations

import mmap
import os
import struct
from array import array
from collections.abc import Iterator
from typing import Any

import pytest

from xdppacket._rings import CompletionRing, FillRing, RxRing, TxRing, map_ring
from xdppacket._uapi import RingOffsets

# The kernel's layout on x86-64 keeps each index word on its own cache line; any layout works.
OFFSETS = RingOffsets(producer=0, consumer=64, desc=192, flags=128)
SIZE = 8
U32_MAX = 0xFFFFFFFF


class KernelSide:
    """The other end of one ring: a second mapping of the same memory."""

    def __init__(self, entry_size: int):
        self.entry_size = entry_size
        self.length = OFFSETS.desc + SIZE * entry_size
        self.fd = os.memfd_create("xdp-ring-test")
        os.ftruncate(self.fd, self.length)
        self.map = mmap.mmap(self.fd, self.length)

    def word(self, offset: int) -> int:
        return int(struct.unpack_from("=I", self.map, offset)[0])

    def set_word(self, offset: int, value: int) -> None:
        struct.pack_into("=I", self.map, offset, value)

    @property
    def producer(self) -> int:
        return self.word(OFFSETS.producer)

    @producer.setter
    def producer(self, value: int) -> None:
        self.set_word(OFFSETS.producer, value)

    @property
    def consumer(self) -> int:
        return self.word(OFFSETS.consumer)

    @consumer.setter
    def consumer(self, value: int) -> None:
        self.set_word(OFFSETS.consumer, value)

    def slot(self, index: int) -> int:
        return OFFSETS.desc + (index % SIZE) * self.entry_size

    def read_addr(self, index: int) -> int:
        return int(struct.unpack_from("=Q", self.map, self.slot(index))[0])

    def write_addr(self, index: int, address: int) -> None:
        struct.pack_into("=Q", self.map, self.slot(index), address)

    def read_desc(self, index: int) -> tuple[int, int, int]:
        addr, length, options = struct.unpack_from("=QII", self.map, self.slot(index))
        return addr, length, options

    def write_desc(self, index: int, address: int, length: int) -> None:
        struct.pack_into("=QII", self.map, self.slot(index), address, length, 0)

    def ring(self, cls: Any, start: int = 0) -> Any:
        """Map ``cls`` over this memory with both indices at ``start`` (as after bind)."""
        self.producer = self.consumer = start
        return cls(map_ring(self.fd, 0, OFFSETS, SIZE, is_descriptor_ring=self.entry_size == 16))

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


@pytest.fixture
def addr_kernel() -> Iterator[KernelSide]:
    """Memory for a fill or completion ring (8-byte entries), unmapped after the test."""
    kernel = KernelSide(8)
    yield kernel
    kernel.close()


@pytest.fixture
def desc_kernel() -> Iterator[KernelSide]:
    """Memory for an rx or tx ring (16-byte descriptors), unmapped after the test."""
    kernel = KernelSide(16)
    yield kernel
    kernel.close()


def test_fill_ring_reserve_submit_and_wrap(addr_kernel: KernelSide) -> None:
    fill: FillRing = addr_kernel.ring(FillRing)
    assert fill.reserve(10) == SIZE  # an empty ring has room for its size, no more
    fill.submit([0x1000 * i for i in range(SIZE)])
    assert addr_kernel.producer == SIZE
    assert [addr_kernel.read_addr(i) for i in range(SIZE)] == [0x1000 * i for i in range(SIZE)]
    assert fill.reserve(1) == 0  # full until the kernel consumes
    assert fill.outstanding() == SIZE

    addr_kernel.consumer = 3  # the kernel took three frames
    assert fill.reserve(5) == 3
    fill.submit([0xA000, 0xB000, 0xC000])
    assert addr_kernel.producer == SIZE + 3
    assert [addr_kernel.read_addr(i) for i in (8, 9, 10)] == [0xA000, 0xB000, 0xC000]
    assert addr_kernel.read_addr(3) == 0x3000  # slots 3..7 the kernel has not consumed: intact
    assert fill.outstanding() == SIZE


def test_fill_ring_reserve_uses_its_cached_consumer_while_it_suffices(addr_kernel: KernelSide) -> None:
    fill: FillRing = addr_kernel.ring(FillRing)
    fill.submit([1, 2, 3, 4])
    # A consumer word no kernel could write (past the producer): reading it would make
    # reserve() answer nonsense, so a sane answer shows the shared word was not read.
    addr_kernel.consumer = 4 + 100
    assert fill.reserve(4) == 4  # four slots known free from the cached consumer
    addr_kernel.consumer = 4
    assert fill.reserve(8) == 8  # more than the cache promises: the word is read now


def test_producer_index_wraps_at_2_to_the_32(addr_kernel: KernelSide) -> None:
    start = U32_MAX - 1
    fill: FillRing = addr_kernel.ring(FillRing, start=start)
    assert fill.reserve(4) == 4
    fill.submit([11, 22, 33, 44])
    assert addr_kernel.producer == 2  # (2**32 - 2 + 4) mod 2**32
    assert [addr_kernel.read_addr(start + i) for i in range(4)] == [11, 22, 33, 44]
    assert [addr_kernel.slot(start + i) for i in range(4)] == [
        addr_kernel.slot(6), addr_kernel.slot(7), addr_kernel.slot(0), addr_kernel.slot(1),
    ]  # fmt: skip
    assert fill.outstanding() == 4
    addr_kernel.consumer = 2
    assert fill.outstanding() == 0
    assert fill.reserve(SIZE) == SIZE


def test_tx_ring_writes_xdp_desc_entries(desc_kernel: KernelSide) -> None:
    tx: TxRing = desc_kernel.ring(TxRing, start=6)
    assert tx.reserve(3) == 3
    tx.submit(array("Q", [0x10000, 60, 0x11000, 1514, 0x12000, 777]))
    assert desc_kernel.producer == 9
    # Slots 6, 7 and (wrapped) 0, each { u64 addr; u32 len; u32 options = 0 }.
    assert [desc_kernel.read_desc(i) for i in (6, 7, 8)] == [
        (0x10000, 60, 0), (0x11000, 1514, 0), (0x12000, 777, 0),
    ]  # fmt: skip


def test_rx_ring_peek_and_release_across_the_end(desc_kernel: KernelSide) -> None:
    rx: RxRing = desc_kernel.ring(RxRing, start=5)
    assert rx.available(16) == 0
    for index, (address, length) in enumerate([(0x1100, 60), (0x2100, 61), (0x3100, 1514),
                                               (0x4100, 100)], start=5):
        desc_kernel.write_desc(index, address, length)
    desc_kernel.producer = 9  # four descriptors: slots 5, 6, 7, 0

    assert rx.available(16) == 4
    assert rx.available(3) == 3
    assert rx.peek(4) == ([0x1100, 0x2100, 0x3100, 0x4100], [60, 61, 1514, 100])
    assert desc_kernel.consumer == 5  # peeking does not consume
    rx.release(3)
    assert desc_kernel.consumer == 8
    assert rx.available(16) == 1
    assert rx.peek(1) == ([0x4100], [100])
    rx.release(1)
    assert (desc_kernel.consumer, rx.available(16)) == (9, 0)


def test_rx_ring_sees_new_descriptors_only_when_it_needs_them(desc_kernel: KernelSide) -> None:
    rx: RxRing = desc_kernel.ring(RxRing)
    desc_kernel.write_desc(0, 0x1000, 60)
    desc_kernel.write_desc(1, 0x2000, 70)
    desc_kernel.producer = 1
    assert rx.available(1) == 1
    # A producer word no kernel could write (behind the consumer's view): reading it
    # would find nothing, so an answer of 1 shows the cached entry served the request.
    desc_kernel.producer = 0
    assert rx.available(1) == 1
    desc_kernel.producer = 2
    assert rx.available(2) == 2  # more than the cache holds: the word is read now
    assert rx.peek(2) == ([0x1000, 0x2000], [60, 70])


def test_completion_ring_peek_release_wraps(addr_kernel: KernelSide) -> None:
    completion: CompletionRing = addr_kernel.ring(CompletionRing, start=U32_MAX - 2)
    assert completion.available(SIZE) == 0
    for i in range(5):
        addr_kernel.write_addr(U32_MAX - 2 + i, 0x100 * (i + 1))
    addr_kernel.producer = 2  # five entries, wrapping both the slots and the u32 index
    assert completion.available(3) == 3
    assert completion.peek(3) == [0x100, 0x200, 0x300]
    assert addr_kernel.consumer == U32_MAX - 2  # peeking does not consume
    assert completion.index_after(3) == 0
    completion.release(3)
    assert (completion.index, addr_kernel.consumer) == (0, 0)
    assert completion.unread(completion.kernel_producer()) == 2
    assert completion.peek(completion.available(SIZE)) == [0x400, 0x500]
    completion.release(2)
    assert (addr_kernel.consumer, completion.available(SIZE)) == (2, 0)


def test_an_interrupted_release_is_completed_by_republish(desc_kernel: KernelSide) -> None:
    rx: RxRing = desc_kernel.ring(RxRing)
    desc_kernel.producer = 3
    assert rx.available(3) == 3
    rx.index = 3  # as if an exception landed between the two stores of release()
    assert desc_kernel.consumer == 0
    rx.republish()
    assert desc_kernel.consumer == 3


def test_fill_ring_recent_reads_back_the_last_submitted_addresses(addr_kernel: KernelSide) -> None:
    fill: FillRing = addr_kernel.ring(FillRing, start=U32_MAX - 1)
    fill.submit([0x1000, 0x2000, 0x3000])
    addr_kernel.consumer = U32_MAX + 1 - 0x100000000  # the kernel took all three
    fill.submit([0x4000, 0x5000])
    assert fill.recent(4) == [0x2000, 0x3000, 0x4000, 0x5000]
    assert fill.index == 3


def test_need_wakeup_follows_the_flags_word(addr_kernel: KernelSide) -> None:
    fill: FillRing = addr_kernel.ring(FillRing)
    assert not fill.needs_wakeup()
    addr_kernel.set_word(OFFSETS.flags, 1)  # XDP_RING_NEED_WAKEUP
    assert fill.needs_wakeup()
    addr_kernel.set_word(OFFSETS.flags, 2)  # another bit: not a wakeup request
    assert not fill.needs_wakeup()


def test_close_unmaps_the_ring(addr_kernel: KernelSide) -> None:
    fill: FillRing = addr_kernel.ring(FillRing)
    memory = fill._memory
    fill.close()
    assert memory._map.closed
