"""The receive half of a socket: where every rx frame goes, in one module.

A frame's round trip: pool -> fill ring (``refill``) -> kernel -> rx ring -> either
copied out and straight back to the fill ring (``take_copies``; through the pool when
the fill ring or the socket's quota has no room) or lent as a zero-copy view
(``lend_views``) until the next read ends the loan (``end_loans``), or until the view is
forwarded in place (``_tx``). Every move is written down first (``_frames``) and made
under the pool's lock, so that an exception landing in the middle of it is settled by
the next move, and so that sockets sharing the UMEM can move frames in other threads.
"""

from __future__ import annotations

import functools
import struct
from array import array
from typing import Any, Callable, Optional

from ._arrival import PCAP_RECORD_HEADER_SIZE, ArrivalReader, ShippedVariables, TrailerSource
from ._frames import (
    FrameAccountingError,
    FrameCensus,
    FramePool,
    LeaseMove,
    MoveKind,
    RingMove,
    RingToRingMove,
)
from ._leases import Lease, ZeroCopyLeases
from ._libc import buffer_address
from ._rings import FillRing, RxRing
from ._uapi import XDP_PACKET_HEADROOM, XDP_PKT_CONTD
from ._umem import Umem

__all__ = ["JoinedFrame", "MultiBufferRxPath", "Received", "RecordWriter", "RxPath"]

#: What a read takes off the ring: packets (copies or views), their lengths, their arrival
#: times (CLOCK_REALTIME ns, None where the frame had none; no list when trailers are not
#: read) and custom metadata (None: the program is the shipped one, which writes none).
Received = tuple[list[Any], list[int], Optional[list[Optional[int]]], Optional[list[bytes]]]

#: Writes records lying in the UMEM: ``write(iovecs, count, total)`` (``RxPath.pass_records``).
RecordWriter = Callable[[bytes, int, int], None]

_U32 = 0xFFFFFFFF
# A pcap record header's caplen: the third of its four u32, 8 bytes before the frame's data.
_CAPLEN = struct.Struct("<I")
_CAPLEN_BEFORE_DATA = 8
_IOVEC = struct.Struct("<QQ")  # struct iovec: base, length
_IOVEC_SHIFT_LANES = 1024  # the largest batch whose shift is kept ready
_INTO_FREE = MoveKind.INTO_FREE
_INTO_LEASE = MoveKind.INTO_LEASE
_LEASE_TO_FREE = MoveKind.LEASE_TO_FREE
_LEASE_TO_RING = MoveKind.LEASE_TO_RING
_OUT_OF_FREE = MoveKind.OUT_OF_FREE


class RxPath:
    """Owns the fill and rx rings and the zero-copy leases; draws frames from the pool.

    Lifetime: that of its socket, which closes the rings. Not thread-safe: the socket
    serialises calls (the pool's lock only guards the frames it shares).
    """

    def __init__(self, umem: Umem, pool: FramePool, fill: FillRing, rx: RxRing, trailers: TrailerSource, *,
                 shipped_variables: ShippedVariables | None = None):
        self._area = umem.map
        self._arrivals = (None if trailers is TrailerSource.NOT_READ
                          else ArrivalReader(umem.map, umem.frame_size, XDP_PACKET_HEADROOM + umem.headroom,
                                             custom_metadata=trailers is TrailerSource.CUSTOM,
                                             variables=shipped_variables))
        self._fill = fill
        self._rx = rx
        self._pool = pool
        self._frame_size = umem.frame_size
        self._headroom = umem.headroom
        self._leases = ZeroCopyLeases(umem, pool)
        #: Refills that found the fill ring too full for every free frame (``fq_full``).
        self.fill_ring_full = 0
        self.refill()

    # ------------------------------------------------------------------ verbs
    def ready(self, limit: int) -> int:
        """Frames waiting in the rx ring, up to ``limit``."""
        return self._rx.available(limit)

    def take_copies(self, count: int) -> Received:
        """Copy ``count`` ready frames out (``count`` <= ``ready``); their frames go back to the kernel.

        A descriptor's address points past the kernel's headroom inside its frame. It
        goes back to the pool as it is: in aligned mode the kernel rounds fill addresses
        down to their frame (libxdp's xdpsock relies on the same), and the tx side rounds
        the frames it takes. Arrival times are read from the frames' metadata first.
        """
        pool = self._pool
        rx = self._rx
        lock = pool.lock
        lock.acquire()
        try:
            if pool.move is not None:
                pool.settle()
            addresses, lengths = rx.peek(count)
            area = self._area
            packets = [area[a : a + n] for a, n in zip(addresses, lengths)]
            times, metadata = self._read_trailers(addresses) if self._arrivals is not None else (None, None)
            self._release_to_kernel(addresses, count)
        finally:
            lock.release()
        return packets, lengths, times, metadata

    def lend_views(self, count: int, writable: bool = False, end_loans: bool = False) -> Received:
        """Lend ``count`` ready frames as views (writable ones if asked) until ``end_loans``.

        With ``end_loans`` the loans no view shows any more end first, in the same locked
        section: a batched zero-copy read loop's two steps for the price of one.
        """
        pool = self._pool
        rx = self._rx
        leases = self._leases
        lock = pool.lock
        lock.acquire()
        try:
            if pool.move is not None:
                pool.settle()
            emptied = self._end_loans(refill=True, keep=writable) if end_loans else None
            addresses, lengths = rx.peek(count)
            times, metadata = self._read_trailers(addresses) if self._arrivals is not None else (None, None)
            pool.move = (LeaseMove, _INTO_LEASE, addresses, rx, rx.index_after(count), leases)
            rx.release(count)
            if emptied is None:
                lease = leases.record(addresses, writable)
            else:
                emptied.relend(addresses)
                lease = emptied
            pool.move = None
        finally:
            lock.release()
        return leases.views(lease, addresses, lengths), lengths, times, metadata

    def pass_records(self, count: int, snaplen: int, write: RecordWriter) -> int:
        """Hand ``write`` the pcap records of ``count`` ready frames where they lie, then give
        the frames back to the kernel; return the bytes of frame data passed.

        Each record is the 16-byte pcap record header the shipped program wrote directly
        before the frame (the caller made sure it did) and the frame's first ``snaplen``
        bytes. ``write(iovecs, count, total)`` gets them as a ``struct iovec`` array into
        the UMEM mapping (``total`` bytes in all) and must be done with it when it
        returns. Until then the frames stay in the rx ring, whose consumed entries the
        kernel never takes back: nothing is lent, no view is made, the frame census finds
        them in the ring, and if ``write`` raises they stay there for the next read.

        The array is the ring's own descriptors (u64 address, u32 length, u32 options:
        zero without OptMultiBuffer) shifted by one addition on them all as a single
        integer: ``address - 16 + base`` and ``length + 16``, no carry between fields. A
        frame longer than ``snaplen`` gets its header's caplen lowered to match first.
        """
        rx = self._rx
        addresses, lengths = rx.peek(count)
        lanes = _IOVEC_SHIFT_LANES
        shift = (self._iovec_shift >> (128 * (lanes - count)) if count <= lanes
                 else int.from_bytes(self._iovec_lane * count, "little"))
        iovecs = (int.from_bytes(rx.descriptors(count), "little") + shift).to_bytes(16 * count, "little")
        frame_bytes = sum(lengths)
        total = frame_bytes + PCAP_RECORD_HEADER_SIZE * count
        if snaplen < self._frame_size and max(lengths) > snaplen:
            iovecs, total = self._truncate(iovecs, addresses, lengths, snaplen)
        write(iovecs, count, total)
        self._give_back(addresses, count)
        return frame_bytes

    @functools.cached_property
    def _iovec_lane(self) -> bytes:
        """What turns one rx descriptor into the ``struct iovec`` of its pcap record, added to it."""
        return _IOVEC.pack(buffer_address(self._area) - PCAP_RECORD_HEADER_SIZE, PCAP_RECORD_HEADER_SIZE)

    @functools.cached_property
    def _iovec_shift(self) -> int:
        """``_iovec_lane`` for ``_IOVEC_SHIFT_LANES`` descriptors as one integer (fewer: shifted
        right by the lanes not needed)."""
        return int.from_bytes(self._iovec_lane * _IOVEC_SHIFT_LANES, "little")

    def _truncate(self, iovecs: bytes, addresses: list[int], lengths: list[int],
                  snaplen: int) -> tuple[bytes, int]:
        """Records of frames longer than ``snaplen`` cut to it, header (caplen) and span."""
        spans = array("Q", iovecs)
        area = self._area
        for index, (address, length) in enumerate(zip(addresses, lengths)):
            if length > snaplen:
                _CAPLEN.pack_into(area, address - _CAPLEN_BEFORE_DATA, snaplen)
                spans[2 * index + 1] = PCAP_RECORD_HEADER_SIZE + snaplen
        return spans.tobytes(), sum(spans[1::2])

    def _give_back(self, addresses: list[int], count: int) -> None:
        """Release ``count`` frames at ``addresses`` from the rx ring to the kernel, as
        ``take_copies`` does once it has copied them."""
        pool = self._pool
        with pool.lock:
            if pool.move is not None:
                pool.settle()
            self._release_to_kernel(addresses, count)

    def _release_to_kernel(self, addresses: list[int], count: int) -> None:
        """Move the next ``count`` frames of the rx ring (at ``addresses``) back to the kernel,
        for a caller holding the pool's lock with nothing left to settle.

        The usual case: straight back to the fill ring (what this socket holds stays the
        same), one move instead of two through the pool.
        """
        pool = self._pool
        rx = self._rx
        fill = self._fill
        held = self._held()
        if held <= pool.rx_quota and fill.reserve(count) == count:
            pool.move = (RingToRingMove, addresses, rx, rx.index_after(count), fill, fill.index_after(count))
            rx.release(count)
            fill.submit(addresses)
            pool.move = None
            if held < pool.rx_quota:
                self._refill()
        else:
            pool.move = (RingMove, _INTO_FREE, addresses, rx, rx.index_after(count))
            rx.release(count)
            pool.frames += addresses
            pool.move = None
            self._refill()

    def _read_trailers(self, addresses: list[int]) -> tuple[list[int | None] | None, list[bytes] | None]:
        """Arrival times and custom metadata of frames still ours (before they go back).

        Reads without trailers (OptBatchTimestamps) skip the call: (None, None) then.
        """
        arrivals = self._arrivals
        if arrivals is None:
            return None, None
        times = arrivals.arrival_times(addresses)
        return times, arrivals.metadata(addresses, times)

    def end_loans(self, refill: bool = True) -> bool:
        """Take back every lent frame no view shows any more, and give it to the kernel
        (unless ``refill`` is False: the socket is closing). True if frames stay lent (a
        view kept elsewhere holds its batch)."""
        pool = self._pool
        lock = pool.lock
        lock.acquire()
        try:
            if pool.move is not None:
                pool.settle()  # first: it may return leases that ``ended`` would find again
            self._end_loans(refill)
            return self._leases.outstanding
        finally:
            lock.release()

    def _end_loans(self, refill: bool, keep: bool | None = None) -> Lease | None:
        """``end_loans`` for a caller holding the pool's lock, nothing left to settle.

        ``keep``: the caller lends the next batch right after, as views writable or not;
        a lone ended lease of that kind is emptied rather than forgotten, and returned
        for ``Lease.relend`` (None: there was none).
        """
        pool = self._pool
        leases = self._leases
        ended = leases.ended()
        held = self._held() if refill else 0
        emptied = None
        if ended:
            frames = ended[0].frames if len(ended) == 1 else [f for lease in ended for f in lease.frames]
            fill = self._fill
            count = len(frames)
            if refill and held <= pool.rx_quota and fill.reserve(count) == count:
                # The usual case: straight back to the fill ring (what this socket
                # holds stays the same), one move instead of two through the pool.
                pool.move = (LeaseMove, _LEASE_TO_RING, frames, fill, fill.index_after(count), leases)
                if keep is ended[0].writable and len(ended) == 1:
                    emptied = ended[0]
                    emptied.empty()
                else:
                    leases.forget(ended)
                fill.submit(frames)
            else:
                pool.move = (LeaseMove, _LEASE_TO_FREE, frames, None, 0, leases)
                leases.forget(ended)
                pool.frames += frames
                held -= count
            pool.move = None
        if refill and held < pool.rx_quota and pool.frames:
            self._refill()
        return emptied

    def refill(self) -> None:
        """Hand the kernel every free frame the fill ring and this socket's quota have room for."""
        pool = self._pool
        with pool.lock:
            if pool.move is not None:
                pool.settle()
            self._refill()

    def _refill(self) -> None:
        """``refill`` for a caller holding the pool's lock, nothing left to settle."""
        pool = self._pool
        frames = pool.frames
        if not frames:
            return
        fill = self._fill
        held = self._held()
        wanted = pool.rx_quota - held
        if wanted > len(frames):
            wanted = len(frames)
        if wanted <= 0:
            return
        room = fill.reserve(wanted)
        if room < wanted:
            self.fill_ring_full += 1
        if room:
            batch = frames[-room:]
            pool.move = (RingMove, _OUT_OF_FREE, batch, fill, fill.index_after(room))
            fill.submit(batch)
            del frames[-room:]
            pool.move = None

    def _held(self) -> int:
        """What counts against this socket's receive quota: frames given to the kernel that
        we have not taken off the rx ring yet, and those lent as views (a reader keeping
        views holds its own frames back, not the senders')."""
        return ((self._fill.index - self._rx.index) & _U32) + self._leases.lent_count()

    def needs_wakeup(self) -> bool:
        """The kernel asks for a poll/recvfrom to go on filling the rx ring."""
        return self._fill.needs_wakeup()

    def has_idle_free_frames(self) -> bool:
        """Free frames this socket may take wait outside the fill ring although it has room
        (never wait for rx then)."""
        pool = self._pool
        return bool(pool.frames) and self._held() < pool.rx_quota and self._fill.reserve(1) > 0

    # ----------------------------------------------------------------- check
    def census(self) -> FrameCensus:
        """Where the frames of this receive side are now (the caller holds the pool's lock
        and settled it).

        The kernel holds ``fill producer - rx producer`` frames: those we gave it last,
        read back from the fill ring, except any it is receiving right now beyond the
        ring's size (counted, not named). Also checks that no address drifted within its
        frame (addresses go back to the fill ring unrounded; the kernel rounds them down).
        """
        produced = self._rx.kernel_producer()
        unread = self._rx.unread(produced)
        in_kernel = (self._fill.index - produced) & _U32
        named_in_kernel = min(in_kernel, self._fill.size)
        raw = {
            "fill ring or kernel": self._fill.recent(named_in_kernel),
            "rx ring": self._rx.peek(unread)[0] if unread else [],
            "lent": self._leases.lent_frames(),
        }
        # Received data starts 256 + headroom bytes into its frame: drift is beyond that.
        drift_at = self._frame_size // 2 + self._headroom
        drifted = [hex(a) for addresses in raw.values() for a in addresses if a % self._frame_size >= drift_at]
        if drifted:
            raise FrameAccountingError(f"rx addresses drifted within their frames: {drifted[:8]}")
        return FrameCensus(raw, {"kernel, receiving": in_kernel - named_in_kernel})

    def give_back_unbound(self) -> None:
        """Return the fill ring's frames to the pool: the socket was never bound, so the
        kernel never saw them (the caller holds the pool's lock)."""
        self._pool.ensure_free(self._fill.withdraw((self._fill.index - self._rx.index) & _U32))

    def close(self) -> None:
        """End the loans that can end (views raise ``ValueError`` from now on) and give their
        frames back to the pool; drop our views."""
        self.end_loans(refill=False)
        with self._pool.lock:
            self._leases.close()
        if self._arrivals is not None:
            self._arrivals.close()


class JoinedFrame(bytes):
    """A received frame joined from several descriptors: what a zero-copy read returns for it.

    Its parts lie in separate UMEM frames, so no single view can show it. Its own type
    so that a zero-copy read handing out read-ahead frames keeps it a copy, and so that
    it can stand among the views a read hands out, which the next read releases.
    """

    __slots__ = ()

    def release(self) -> None:
        """Nothing to give back: a copy (what ``memoryview.release`` is to a view)."""


class MultiBufferRxPath(RxPath):
    """``RxPath`` for a socket bound with ``XDP_USE_SG`` (OptMultiBuffer): counts and takes packets.

    A packet is one descriptor or several, every one but the last carrying
    ``XDP_PKT_CONTD``. ``ready`` counts complete packets only, so a read never takes the
    first part of a packet whose rest the kernel has not published yet. Each descriptor
    is still one UMEM frame and moves like one (same journal, same census).
    """

    def ready(self, limit: int) -> int:
        """Complete packets waiting in the rx ring, up to ``limit``."""
        return self._packet_ends(limit)[0]

    def _packet_ends(self, limit: int) -> tuple[int, int]:
        """(packets, descriptors they take): the first ``limit`` complete packets in the ring."""
        rx = self._rx
        available = rx.available(rx.size)
        if not available:
            return 0, 0
        packets = descriptors = 0
        for index, options in enumerate(rx.peek_options(available), 1):
            if not options & XDP_PKT_CONTD:
                packets += 1
                descriptors = index
                if packets == limit:
                    break
        return packets, descriptors

    def _peek_packets(self, count: int) -> tuple[int, list[int], list[int], list[list[int]]]:
        """The next ``count`` packets: descriptor count, addresses, lengths, each packet's indexes."""
        descriptors = self._packet_ends(count)[1]
        addresses, lengths, options = self._rx.peek_with_options(descriptors)
        parts: list[list[int]] = []
        current: list[int] = []
        for index, option in enumerate(options):
            current.append(index)
            if not option & XDP_PKT_CONTD:
                parts.append(current)
                current = []
        return descriptors, addresses, lengths, parts

    def take_copies(self, count: int) -> Received:
        """Copy ``count`` ready packets out, joining their parts; every frame goes back to the kernel."""
        pool = self._pool
        rx = self._rx
        with pool.lock:
            if pool.move is not None:
                pool.settle()
            descriptors, addresses, lengths_by_descriptor, parts = self._peek_packets(count)
            area = self._area
            packets = []
            lengths = []
            for indexes in parts:
                chunks = [area[addresses[i] : addresses[i] + lengths_by_descriptor[i]] for i in indexes]
                packet = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                packets.append(packet)
                lengths.append(len(packet))
            heads = [addresses[indexes[0]] for indexes in parts]
            times, metadata = self._read_trailers(heads)
            pool.move = (RingMove, _INTO_FREE, addresses, rx, rx.index_after(descriptors))
            rx.release(descriptors)
            pool.frames += addresses
            pool.move = None
            self._refill()
        return packets, lengths, times, metadata

    def lend_views(self, count: int, writable: bool = False, end_loans: bool = False) -> Received:
        """Lend ``count`` ready packets: views of one-descriptor packets, ``JoinedFrame`` copies of the others.

        The copied packets' frames are lent with the rest of the batch (one lease, one
        journalled move) and come back with it. The views go out in place when written
        to a socket of this UMEM, as a single-buffer socket's do.
        """
        pool = self._pool
        rx = self._rx
        with pool.lock:
            if pool.move is not None:
                pool.settle()
            if end_loans:
                self._end_loans(refill=True)
            descriptors, addresses, lengths_by_descriptor, parts = self._peek_packets(count)
            heads = [addresses[indexes[0]] for indexes in parts]
            times, metadata = self._read_trailers(heads)
            singles = [indexes[0] for indexes in parts if len(indexes) == 1]
            viewed = [addresses[i] for i in singles]
            pool.move = (LeaseMove, _INTO_LEASE, addresses, rx, rx.index_after(descriptors), self._leases)
            rx.release(descriptors)
            lease = self._leases.record(addresses, writable=writable, addresses=viewed)
            pool.move = None
        views = iter(self._leases.views(lease, viewed, [lengths_by_descriptor[i] for i in singles]))
        area = self._area
        packets: list[Any] = []
        lengths = []
        for indexes in parts:
            if len(indexes) == 1:
                packets.append(next(views))
                lengths.append(lengths_by_descriptor[indexes[0]])
            else:
                joined = JoinedFrame(b"".join(area[addresses[i] : addresses[i] + lengths_by_descriptor[i]]
                                              for i in indexes))
                packets.append(joined)
                lengths.append(len(joined))
        return packets, lengths, times, metadata
