"""The multi-buffer rx and tx paths on memfd rings standing in for the kernel (see test_rings).

What the kernel on this machine never shows on demand: an rx ring holding only the first
descriptors of a packet (``XDP_PKT_CONTD`` on the last one published), and a tx ring too
short for a whole packet. The test plays the kernel's side of the rings.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from tests.unit.test_rings import SIZE, KernelSide
from xdppacket._arrival import TrailerSource
from xdppacket._frames import FrameCensus, FramePool
from xdppacket._rings import CompletionRing, FillRing, RxRing, TxRing
from xdppacket._rx import JoinedFrame, MultiBufferRxPath
from xdppacket._tx import MultiBufferTxPath
from xdppacket._umem import Umem

FRAME_SIZE = 4096
DATA_OFFSET = 256  # where copy mode puts received data in its frame
CONTD = 1


@pytest.fixture
def umem() -> Iterator[Umem]:
    area = Umem(SIZE, FRAME_SIZE)
    yield area
    area.close()


@pytest.fixture
def pool(umem: Umem) -> FramePool:
    return FramePool(umem.frames, FRAME_SIZE)


def check(pool: FramePool, half: str, census: FrameCensus) -> dict[str, int]:
    """Every frame of the UMEM accounted for, the other half's all free; ``census``'s counts."""
    pool.check({half: census})
    return census.counts()


@pytest.fixture
def kernels() -> Iterator[tuple[KernelSide, KernelSide]]:
    """Two rings' memory: addresses (fill or completion) and descriptors (rx or tx)."""
    addresses, descriptors = KernelSide(8), KernelSide(16)
    yield addresses, descriptors
    addresses.close()
    descriptors.close()


def write_rx_desc(kernel: KernelSide, index: int, address: int, length: int, options: int) -> None:
    struct.pack_into("=QII", kernel.map, kernel.slot(index), address, length, options)


def publish(kernel: KernelSide, umem: Umem, index: int, frame: int, data: bytes, more: bool) -> None:
    """Receive ``data`` into the frame at ``frame`` as descriptor ``index`` of the rx ring."""
    address = frame + DATA_OFFSET
    umem.map[address : address + len(data)] = data
    write_rx_desc(kernel, index, address, len(data), CONTD if more else 0)


def test_rx_takes_only_complete_packets_and_joins_their_parts(
    umem: Umem, pool: FramePool, kernels: tuple[KernelSide, KernelSide]
) -> None:
    fill_kernel, rx_kernel = kernels
    rx = MultiBufferRxPath(umem, pool, fill_kernel.ring(FillRing), rx_kernel.ring(RxRing), TrailerSource.SHIPPED)
    assert fill_kernel.producer == SIZE  # the rx quota (half the frames) went to the kernel
    given = [fill_kernel.read_addr(i) for i in range(SIZE)]
    first, second, third = b"A" * 3840, b"B" * 1000, b"C" * 3840
    publish(rx_kernel, umem, 0, given[0], first, more=True)
    publish(rx_kernel, umem, 1, given[1], second, more=False)
    publish(rx_kernel, umem, 2, given[2], third, more=True)  # a packet whose end is not published yet
    rx_kernel.producer = 3
    assert rx.ready(16) == 1
    packets, lengths, _, _ = rx.take_copies(1)
    assert (packets, lengths) == ([first + second], [4840])
    assert rx_kernel.consumer == 2  # both descriptors of the packet, not the half packet after it
    assert rx.ready(16) == 0  # "nothing ready" while only the start of a packet is there
    publish(rx_kernel, umem, 3, given[3], b"D" * 60, more=False)
    publish(rx_kernel, umem, 4, given[4], b"E" * 70, more=False)
    rx_kernel.producer = 5
    assert rx.ready(16) == 2
    assert rx.ready(1) == 1
    packets, lengths, _, _ = rx.lend_views(2)
    assert [bytes(packet) for packet in packets] == [third + b"D" * 60, b"E" * 70]
    assert (type(packets[0]), type(packets[1]), lengths) == (JoinedFrame, memoryview, [3900, 70])
    assert rx_kernel.consumer == 5
    assert check(pool, "rx", rx.census())["lent"] == 3
    packets[1].release()
    rx.end_loans()  # the joined packet's frames were lent with the batch: all come back
    assert check(pool, "rx", rx.census())["lent"] == 0
    rx.close()


def test_tx_splits_packets_over_frames_and_queues_only_whole_packets(
    umem: Umem, pool: FramePool, kernels: tuple[KernelSide, KernelSide]
) -> None:
    completion_kernel, tx_kernel = kernels
    del pool.frames[:-8]  # eight free frames: two packets' worth and two over
    tx = MultiBufferTxPath(umem, pool, tx_kernel.ring(TxRing), completion_kernel.ring(CompletionRing))
    packets = [bytes([seq]) * 9000 for seq in range(3)]  # three descriptors each; the ring holds 8
    assert tx.queue(packets, [9000] * 3, 0) == 2
    assert tx_kernel.producer == 6
    descriptors = [struct.unpack_from("=QII", tx_kernel.map, tx_kernel.slot(i)) for i in range(6)]
    assert [(length, options) for _, length, options in descriptors] == [
        (4096, CONTD), (4096, CONTD), (808, 0), (4096, CONTD), (4096, CONTD), (808, 0)
    ]
    sent = [b"".join(umem.map[a : a + n] for a, n, _ in descriptors[i : i + 3]) for i in (0, 3)]
    assert sent == packets[:2]
    assert tx.queue(packets, [9000] * 3, 2) == 0  # two slots left: nothing of the third packet
    assert tx_kernel.producer == 6
    assert len(pool.frames) == 2
    assert tx.census().counts() == {"completion ring": 0, "tx ring or kernel": 6}
    assert (tx.tx_ring_full, tx.completions_empty) == (0, 2)  # short of frames, none completed
