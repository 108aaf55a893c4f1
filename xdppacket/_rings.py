"""The four AF_XDP rings, mapped from the socket and driven in batches.

Each ring is a single-producer/single-consumer queue shared with the kernel: a
producer word, a consumer word, a flags word and an array of entries. Like libxdp,
producer rings (fill, tx) are ``reserve``d and ``submit``ted, consumer rings (rx,
completion) are ``peek``ed and ``release``d, and both keep cached copies of the
kernel's index so the shared words are touched once per batch, not once per packet.

Entries are read and written through ``memoryview.cast`` with strided slices, so a
whole batch is one C-level copy: no per-packet ctypes call. The hot methods spell
``min`` as a conditional expression: the builtin costs about 0.1 us a call, and a read
makes several.

Memory ordering: Python has no fences. On x86-64 (total store order) a plain store of
the producer word after the entries, and a plain load of the entries after the
producer word, are correctly ordered; ``require_supported_machine`` refuses other
architectures rather than risk torn rings.

None of these classes is thread-safe: each ring has exactly one owner, the socket.
"""

from __future__ import annotations

import mmap
from array import array

from ._machine import require_supported_machine
from ._uapi import MAP_POPULATE, XDP_ADDR_SIZE, XDP_DESC_SIZE, XDP_RING_NEED_WAKEUP, RingOffsets

__all__ = [
    "CompletionRing",
    "FillRing",
    "RxRing",
    "TxRing",
    "require_supported_machine",
]

_U32 = 0xFFFFFFFF


class _RingMemory:
    """One ring's mapping and the views of its index words and entries."""

    def __init__(self, fd: int, page_offset: int, offsets: RingOffsets, size: int, entry_size: int):
        self.size = size
        self.mask = size - 1
        length = offsets.desc + size * entry_size
        self._map = mmap.mmap(
            fd,
            length,
            flags=mmap.MAP_SHARED | MAP_POPULATE,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
            offset=page_offset,
        )
        whole = memoryview(self._map)
        words = whole.cast("I")
        self.producer = words[offsets.producer // 4 : offsets.producer // 4 + 1]
        self.consumer = words[offsets.consumer // 4 : offsets.consumer // 4 + 1]
        self.flags = words[offsets.flags // 4 : offsets.flags // 4 + 1]
        entries = whole[offsets.desc : length]
        self.entries_u64 = entries.cast("Q")
        self.entries_u32 = entries.cast("I")
        self._views = [self.entries_u32, self.entries_u64, entries, self.flags, self.consumer,
                       self.producer, words, whole]

    def close(self) -> None:
        for view in self._views:
            view.release()
        self._views.clear()
        self._map.close()


class _ProducerRing:
    """A ring user space fills and the kernel drains (fill, tx)."""

    def __init__(self, memory: _RingMemory):
        self._memory = memory
        self.size = memory.size
        self._mask = memory.mask
        self._producer_word = memory.producer
        self._consumer_word = memory.consumer
        self._flags_word = memory.flags
        #: Our producer index: entries we have submitted, counted from 0 (mod 2**32). A plain
        #: attribute, not a property: the receive quota reads it on every read.
        self.index = memory.producer[0]
        self._cached_consumer = memory.consumer[0]

    def reserve(self, wanted: int) -> int:
        """How many of ``wanted`` entries fit now (re-reading the kernel's consumer if needed)."""
        free = self.size - ((self.index - self._cached_consumer) & _U32)
        if free < wanted:
            self._cached_consumer = self._consumer_word[0]
            free = self.size - ((self.index - self._cached_consumer) & _U32)
        return free if free < wanted else wanted

    def outstanding(self) -> int:
        """Entries submitted that the kernel has not consumed yet."""
        self._cached_consumer = self._consumer_word[0]
        return (self.index - self._cached_consumer) & _U32

    def needs_wakeup(self) -> bool:
        return bool(self._flags_word[0] & XDP_RING_NEED_WAKEUP)

    def index_after(self, count: int) -> int:
        """The producer index once ``count`` more entries are submitted."""
        return (self.index + count) & _U32

    def republish(self) -> None:
        """Store our producer index in the shared word again (finishes an interrupted submit)."""
        self._producer_word[0] = self.index

    def kernel_consumer(self) -> int:
        """The consumer index the kernel has published (it may lag behind its real progress)."""
        return self._consumer_word[0]

    def _store(self, entries: memoryview, words_per_entry: int, values: array[int]) -> None:
        """Copy ``values`` into the slots after the producer, then publish them."""
        count = len(values) // words_per_entry
        start = self.index & self._mask
        first = (count if count < self.size - start else self.size - start) * words_per_entry
        base = start * words_per_entry
        if first == len(values):
            entries[base : base + first] = values
        else:  # the batch wraps around the ring's end
            entries[base : base + first] = values[:first]
            entries[0 : len(values) - first] = values[first:]
        # Our index first, then the shared word: an interruption between the two leaves the
        # entries unpublished until ``republish`` (never published twice or overwritten).
        self.index = (self.index + count) & _U32
        self._producer_word[0] = self.index  # publish after the entries (TSO)

    def close(self) -> None:
        self._memory.close()


class FillRing(_ProducerRing):
    """Gives empty rx frames (UMEM addresses) to the kernel."""

    def submit(self, addresses: list[int]) -> None:
        """Publish ``addresses``; the caller has ``reserve``d room for all of them."""
        if addresses:
            self._store(self._memory.entries_u64, 1, array("Q", addresses))

    def withdraw(self, count: int) -> list[int]:
        """Take back the last ``count`` addresses submitted; only for a socket never bound,
        whose entries the kernel cannot have consumed."""
        addresses = self.recent(count)
        self.index = (self.index - count) & _U32
        self._producer_word[0] = self.index
        return addresses

    def recent(self, count: int) -> list[int]:
        """The last ``count`` addresses submitted (``count`` <= size), oldest first."""
        u64 = self._memory.entries_u64
        return [u64[(self.index - count + i) & self._mask] for i in range(count)]


class TxRing(_ProducerRing):
    """Hands frames to send (address, length) to the kernel."""

    def submit(self, addresses_and_lengths: array[int]) -> None:
        """Publish descriptors given as ``[addr0, len0, addr1, len1, ...]``.

        Each second word is the length (low 32 bits) and the options (high 32 bits:
        ``XDP_PKT_CONTD << 32`` on every descriptor of a packet but its last).
        """
        if addresses_and_lengths:
            self._store(self._memory.entries_u64, 2, addresses_and_lengths)


class _ConsumerRing:
    """A ring the kernel fills and user space drains (rx, completion)."""

    def __init__(self, memory: _RingMemory):
        self._memory = memory
        self.size = memory.size
        self._mask = memory.mask
        self._producer_word = memory.producer
        self._consumer_word = memory.consumer
        self._cached_producer = memory.producer[0]
        #: Our consumer index: entries we have taken, counted from 0 (mod 2**32).
        self.index = memory.consumer[0]

    def available(self, wanted: int) -> int:
        """How many of ``wanted`` entries are ready (re-reading the kernel's producer if needed)."""
        ready = (self._cached_producer - self.index) & _U32
        if ready < wanted:
            self._cached_producer = self._producer_word[0]
            ready = (self._cached_producer - self.index) & _U32
        return ready if ready < wanted else wanted

    def _spans(self, count: int) -> tuple[int, int, int]:
        """Split ``count`` entries after the consumer at the ring's end: (start, first, rest)."""
        start = self.index & self._mask
        first = count if count < self.size - start else self.size - start
        return start, first, count - first

    def release(self, count: int) -> None:
        """Give ``count`` peeked entries back to the kernel.

        Our index first, then the shared word: an interruption between the two can only
        delay the kernel's view (``republish`` completes it), never let us read an entry twice.
        """
        self.index = (self.index + count) & _U32
        self._consumer_word[0] = self.index

    def index_after(self, count: int) -> int:
        """The consumer index once ``count`` more entries are released."""
        return (self.index + count) & _U32

    def republish(self) -> None:
        """Store our consumer index in the shared word again (finishes an interrupted release)."""
        self._consumer_word[0] = self.index

    def kernel_producer(self) -> int:
        """The producer index the kernel has published."""
        return self._producer_word[0]

    def unread(self, kernel_producer: int) -> int:
        """Entries between our consumer and ``kernel_producer`` (a value of ``kernel_producer()``)."""
        return (kernel_producer - self.index) & _U32

    def close(self) -> None:
        self._memory.close()


class RxRing(_ConsumerRing):
    """Received frames: descriptors (UMEM address, length)."""

    def peek(self, count: int) -> tuple[list[int], list[int]]:
        """Addresses and lengths of the next ``count`` descriptors (``count`` <= ``available``)."""
        # ``_spans`` written out, and no wrap handled apart: every read runs this once.
        start = self.index & self._mask
        end = start + count
        memory = self._memory
        u64 = memory.entries_u64
        u32 = memory.entries_u32
        if end <= self.size:  # the usual case: no wrap around the ring's end
            return u64[2 * start : 2 * end : 2].tolist(), u32[4 * start + 2 : 4 * end : 4].tolist()
        rest = end - self.size
        addresses = u64[2 * start :: 2].tolist() + u64[0 : 2 * rest : 2].tolist()
        lengths = u32[4 * start + 2 :: 4].tolist() + u32[2 : 4 * rest : 4].tolist()
        return addresses, lengths

    def descriptors(self, count: int) -> bytes:
        """The next ``count`` descriptors as the kernel wrote them: 16 bytes each (u64 address,
        u32 length, u32 options), ``count`` <= ``available``."""
        start, first, rest = self._spans(count)
        u64 = self._memory.entries_u64
        raw = u64[2 * start : 2 * (start + first)].tobytes()
        if rest:
            raw += u64[0 : 2 * rest].tobytes()
        return raw

    def peek_with_options(self, count: int) -> tuple[list[int], list[int], list[int]]:
        """``peek`` plus each descriptor's ``options`` word (``XDP_PKT_CONTD``: the packet goes on)."""
        addresses, lengths = self.peek(count)
        return addresses, lengths, self.peek_options(count)

    def peek_options(self, count: int) -> list[int]:
        """The ``options`` words alone of the next ``count`` descriptors."""
        start, first, rest = self._spans(count)
        u32 = self._memory.entries_u32
        options = u32[4 * start + 3 : 4 * (start + first) : 4].tolist()
        if rest:
            options += u32[3 : 4 * rest : 4].tolist()
        return options


class CompletionRing(_ConsumerRing):
    """Sent frames the kernel is done with (UMEM addresses)."""

    def peek(self, count: int) -> list[int]:
        """The next ``count`` completed addresses (``count`` <= ``available``), not yet released."""
        start, first, rest = self._spans(count)
        u64 = self._memory.entries_u64
        addresses = u64[start : start + first].tolist()
        if rest:
            addresses += u64[0:rest].tolist()
        return addresses


def map_ring(fd: int, page_offset: int, offsets: RingOffsets, size: int, is_descriptor_ring: bool) -> _RingMemory:
    """Map one ring of socket ``fd``; descriptor rings (rx, tx) have 16-byte entries."""
    return _RingMemory(fd, page_offset, offsets, size, XDP_DESC_SIZE if is_descriptor_ring else XDP_ADDR_SIZE)
