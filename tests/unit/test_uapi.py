"""The AF_XDP ABI in ``xdppacket._uapi`` against the kernel's ``include/uapi/linux/if_xdp.h``.

Expected values are copied from the kernel header (as listed in KERNEL_NOTES.md), not
computed from the module, so a typo in either place shows up here. Field offsets are
checked by packing distinct values and reading each field back at its kernel offset.
"""

from __future__ import annotations

import struct

import pytest

from xdppacket import _uapi as uapi


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AF_XDP", 44),
        ("SOL_XDP", 283),
        ("XDP_MMAP_OFFSETS", 1),
        ("XDP_RX_RING", 2),
        ("XDP_TX_RING", 3),
        ("XDP_UMEM_REG", 4),
        ("XDP_UMEM_FILL_RING", 5),
        ("XDP_UMEM_COMPLETION_RING", 6),
        ("XDP_STATISTICS", 7),
        ("XDP_OPTIONS", 8),
        ("XDP_SHARED_UMEM", 1),
        ("XDP_COPY", 2),
        ("XDP_ZEROCOPY", 4),
        ("XDP_USE_NEED_WAKEUP", 8),
        ("XDP_RING_NEED_WAKEUP", 1),
        ("XDP_PGOFF_RX_RING", 0),
        ("XDP_PGOFF_TX_RING", 0x80000000),
        ("XDP_UMEM_PGOFF_FILL_RING", 0x100000000),
        ("XDP_UMEM_PGOFF_COMPLETION_RING", 0x180000000),
        ("XDP_PACKET_HEADROOM", 256),
        ("XDP_DESC_SIZE", 16),
        ("XDP_ADDR_SIZE", 8),
    ],
)
def test_constants_match_the_kernel_headers(name: str, value: int) -> None:
    assert getattr(uapi, name) == value


@pytest.mark.parametrize(
    ("layout", "size"),
    [
        (uapi.SOCKADDR_XDP, 16),
        (uapi.XDP_UMEM_REG_STRUCT, 32),
        (uapi.XDP_RING_OFFSET, 32),
        (uapi.XDP_MMAP_OFFSETS_STRUCT, 128),
        (uapi.XDP_STATISTICS_STRUCT, 48),
    ],
    ids=["sockaddr_xdp", "xdp_umem_reg", "xdp_ring_offset", "xdp_mmap_offsets", "xdp_statistics"],
)
def test_struct_sizes_match_the_kernel(layout: struct.Struct, size: int) -> None:
    assert layout.size == size


def test_sockaddr_xdp_fields_sit_at_the_kernel_offsets() -> None:
    raw = uapi.pack_sockaddr_xdp(flags=0x0A0B, ifindex=0x11223344, queue_id=0x55667788,
                                 shared_umem_fd=0x0102A0B0)
    # struct sockaddr_xdp { __u16 sxdp_family; __u16 sxdp_flags; __u32 sxdp_ifindex;
    #                       __u32 sxdp_queue_id; __u32 sxdp_shared_umem_fd; }
    assert struct.unpack_from("=H", raw, 0) == (44,)
    assert struct.unpack_from("=H", raw, 2) == (0x0A0B,)
    assert struct.unpack_from("=I", raw, 4) == (0x11223344,)
    assert struct.unpack_from("=I", raw, 8) == (0x55667788,)
    assert struct.unpack_from("=I", raw, 12) == (0x0102A0B0,)


def test_sockaddr_xdp_shares_no_umem_by_default() -> None:
    assert uapi.pack_sockaddr_xdp(flags=8, ifindex=3, queue_id=1)[12:] == bytes(4)


def test_xdp_umem_reg_fields_sit_at_the_kernel_offsets() -> None:
    raw = uapi.pack_umem_reg(addr=0x1122334455667788, length=0x0102030405060708,
                             chunk_size=4096, headroom=0x3344, flags=1)
    # struct xdp_umem_reg { __u64 addr; __u64 len; __u32 chunk_size; __u32 headroom;
    #                       __u32 flags; __u32 tx_metadata_len; }
    assert struct.unpack_from("=Q", raw, 0) == (0x1122334455667788,)
    assert struct.unpack_from("=Q", raw, 8) == (0x0102030405060708,)
    assert struct.unpack_from("=I", raw, 16) == (4096,)
    assert struct.unpack_from("=I", raw, 20) == (0x3344,)
    assert struct.unpack_from("=I", raw, 24) == (1,)
    assert struct.unpack_from("=I", raw, 28) == (0,)


def test_xdp_umem_reg_has_no_stray_bytes() -> None:
    # The kernel answers EINVAL to anything in tx_metadata_len or padding it does not expect.
    assert uapi.pack_umem_reg(addr=0, length=0, chunk_size=0) == bytes(32)


def test_mmap_offsets_unpack_in_kernel_order() -> None:
    # struct xdp_mmap_offsets { struct xdp_ring_offset rx, tx, fr, cr; } puts the rings at
    # bytes 0, 32, 64 and 96; in each, struct xdp_ring_offset { __u64 producer; __u64 consumer;
    # __u64 desc; __u64 flags; } puts the words at 0, 8, 16 and 24. Each word gets its own
    # value, written at that offset without the module's (or any) struct format.
    raw = bytearray(128)
    for ring_offset, ring_number in ((0, 1), (32, 2), (64, 3), (96, 4)):
        for word_offset, word_number in ((0, 1), (8, 2), (16, 3), (24, 4)):
            value = 0x1000 * ring_number + word_number
            raw[ring_offset + word_offset : ring_offset + word_offset + 8] = value.to_bytes(8, "little")
    offsets = uapi.MmapOffsets.unpack(bytes(raw))
    assert offsets.rx == uapi.RingOffsets(producer=0x1001, consumer=0x1002, desc=0x1003, flags=0x1004)
    assert offsets.tx == uapi.RingOffsets(producer=0x2001, consumer=0x2002, desc=0x2003, flags=0x2004)
    assert offsets.fill == uapi.RingOffsets(producer=0x3001, consumer=0x3002, desc=0x3003, flags=0x3004)
    assert offsets.completion == uapi.RingOffsets(
        producer=0x4001, consumer=0x4002, desc=0x4003, flags=0x4004
    )


@pytest.mark.parametrize("size", [96, 127, 129])
def test_mmap_offsets_of_another_size_are_refused(size: int) -> None:
    # 96 bytes is what kernels before 5.4 answered (no flags word).
    with pytest.raises(OSError, match=f"returned {size} bytes, expected 128"):
        uapi.MmapOffsets.unpack(bytes(size))


def test_xdp_statistics_unpack_in_kernel_order() -> None:
    # struct xdp_statistics { __u64 rx_dropped; rx_invalid_descs; tx_invalid_descs;
    # rx_ring_full; rx_fill_ring_empty_descs; tx_ring_empty_descs; }: counter n at byte 8 * n,
    # each value wider than 32 bits so a 4-byte field cannot pass.
    raw = b"".join(((n << 40) | n).to_bytes(8, "little") for n in range(1, 7))
    assert uapi.XDP_STATISTICS_STRUCT.unpack(raw) == tuple((n << 40) | n for n in range(1, 7))
