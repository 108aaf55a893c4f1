"""AF_XDP kernel ABI: constants and structure layouts from ``include/uapi/linux/if_xdp.h``.

Names are the kernel's, so grepping the kernel headers finds the code. Structures are
``struct`` formats (pure data, no ctypes) because Python's socket module passes them
to ``setsockopt``/``getsockopt`` as bytes.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

AF_XDP = 44

# Pre-fault mappings (asm-generic/mman-common.h); Python's mmap module names it from 3.10 on.
MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0x8000)
SOL_XDP = 283

# Socket options (SOL_XDP).
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_OPTIONS = 8
XDP_MAX_TX_SKB_BUDGET = 9  # Linux 6.17+: frames one copy-mode sendto() may send (default 32)

# struct xdp_options { u32 flags; }: the answer to getsockopt(XDP_OPTIONS) on a bound socket.
XDP_OPTIONS_STRUCT = struct.Struct("=I")
XDP_OPTIONS_ZEROCOPY = 1 << 0

# Busy polling (SOL_SOCKET, asm-generic/socket.h).
SO_BUSY_POLL = 46
SO_PREFER_BUSY_POLL = 69
SO_BUSY_POLL_BUDGET = 70

# sockaddr_xdp.sxdp_flags
XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_USE_NEED_WAKEUP = 1 << 3
XDP_USE_SG = 1 << 4  # multi-buffer: a packet may span several descriptors

# xdp_desc.options: more descriptors of the same packet follow this one
XDP_PKT_CONTD = 1 << 0

# xdp_ring_offset.flags word
XDP_RING_NEED_WAKEUP = 1 << 0

# mmap page offsets of the four rings
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

# Received data starts this far into a frame in copy mode (include/linux/bpf.h).
XDP_PACKET_HEADROOM = 256

# struct sockaddr_xdp { u16 family; u16 flags; u32 ifindex; u32 queue_id; u32 shared_umem_fd; }
SOCKADDR_XDP = struct.Struct("=HHIII")
# struct xdp_umem_reg { u64 addr; u64 len; u32 chunk_size; u32 headroom; u32 flags; u32 tx_metadata_len; }
XDP_UMEM_REG_STRUCT = struct.Struct("=QQIIII")
# struct xdp_ring_offset { u64 producer; u64 consumer; u64 desc; u64 flags; } x 4 (rx, tx, fr, cr)
XDP_RING_OFFSET = struct.Struct("=QQQQ")
XDP_MMAP_OFFSETS_STRUCT = struct.Struct("=" + "QQQQ" * 4)
# struct xdp_statistics: six u64 counters
XDP_STATISTICS_STRUCT = struct.Struct("=QQQQQQ")
# struct xdp_desc { u64 addr; u32 len; u32 options; }
XDP_DESC_SIZE = 16
# fill and completion ring entries: one u64 address
XDP_ADDR_SIZE = 8


@dataclass(frozen=True)
class RingOffsets:
    """Where the producer, consumer, flags words and the descriptors sit in a ring mapping."""

    producer: int
    consumer: int
    desc: int
    flags: int


@dataclass(frozen=True)
class MmapOffsets:
    """The answer to ``getsockopt(XDP_MMAP_OFFSETS)``: one ``RingOffsets`` per ring."""

    rx: RingOffsets
    tx: RingOffsets
    fill: RingOffsets
    completion: RingOffsets

    @classmethod
    def unpack(cls, raw: bytes) -> MmapOffsets:
        if len(raw) != XDP_MMAP_OFFSETS_STRUCT.size:
            raise OSError(
                f"XDP_MMAP_OFFSETS returned {len(raw)} bytes, expected "
                f"{XDP_MMAP_OFFSETS_STRUCT.size}: this kernel predates the ring flags word (5.4+ needed)"
            )
        words = XDP_MMAP_OFFSETS_STRUCT.unpack(raw)
        rings = [RingOffsets(*words[i : i + 4]) for i in range(0, 16, 4)]
        return cls(rx=rings[0], tx=rings[1], fill=rings[2], completion=rings[3])


def pack_sockaddr_xdp(flags: int, ifindex: int, queue_id: int, shared_umem_fd: int = 0) -> bytes:
    return SOCKADDR_XDP.pack(AF_XDP, flags, ifindex, queue_id, shared_umem_fd)


def pack_umem_reg(addr: int, length: int, chunk_size: int, headroom: int = 0, flags: int = 0) -> bytes:
    """Every byte is set explicitly: stray padding makes the kernel answer EINVAL."""
    return XDP_UMEM_REG_STRUCT.pack(addr, length, chunk_size, headroom, flags, 0)
