"""The capture fast path: whole pcap records straight from the UMEM, many per ``writev``.

The shipped XDP program writes a classic pcap record header (nanosecond timestamp, caplen,
length; little-endian on the machines we run on) directly in front of every frame it
redirects (``ebpf/xdppacket_meta.h``). So a capture to a pcap file needs no Python object
per frame: a batch goes to ``PcapWriter.write_raw_records`` as a ``struct iovec`` array of
whole records (header and frame) in the UMEM, made from the rx ring's descriptors by one
addition, which ``writev`` writes out while the frames are still in the rx ring
(``RxPath.pass_records``); only then do they go back to the kernel. No view is made, so
none can outlive its frame or write to the UMEM.

Queues share a batch as ``XDPMultiQueue``'s reads do (``_fairness``): as evenly as their
ready frames allow, starting one queue further each call.

Two things keep the headers right:

- BPF has no wall clock: the program adds ``xdppacket_realtime_offset_ns`` (CLOCK_REALTIME
  minus CLOCK_MONOTONIC) to ``bpf_ktime_get_ns()``. The process attaching the program sets
  it before any socket can receive (``_program``); a reader keeps it current as
  ``realtime_offset`` re-measures it (once a second), so a record's time is the time the
  ordinary reads give the same frame.
- A driver that refuses XDP metadata leaves stale bytes before a frame; the program then
  sets ``xdppacket_metadata_missing``. The reader reads that flag after the ring and
  before taking the frames the ring showed, so a batch holding such a frame is never
  taken as records: the reader says so (``None``) and the caller reads frames the ordinary
  way from then on.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

from ._arrival import ShippedVariables
from ._bpf_object import SHIPPED_PROGRAM
from ._fairness import QueueRotation, fair_shares
from ._queue import XskQueue, wait_for_frames
from ._rx import RecordWriter

__all__ = ["PcapRecordReader"]


class PcapRecordReader:
    """Reads batches of pcap records from the queues of one interface, fairly.

    Made by ``multiqueue.pcap_record_reader``; holds no resources of its own (the queues
    and the program belong to the ``XDPMultiQueue``). Calls are serialised by ``lock``.
    """

    def __init__(self, queues: Sequence[XskQueue], fds: Sequence[int], timeout_us: int | None,
                 lock: threading.RLock, snaplen: int, variables: ShippedVariables) -> None:
        self._queues = list(queues)
        self._fds = list(fds)
        self._timeout_us = timeout_us
        self._lock = lock
        self._snaplen = snaplen
        self._variables = variables
        self._order = QueueRotation(self._queues)

    @classmethod
    def over(cls, queues: Sequence[XskQueue], fds: Sequence[int], timeout_us: int | None,
             lock: threading.RLock, snaplen: int) -> PcapRecordReader | None:
        """A reader for ``queues``, or None when their program writes no whole record headers
        (a custom program, the multi-buffer one, the one for kernels before 5.18) or the
        headers' byte order is not pcap's little-endian one."""
        if sys.byteorder != "little":
            return None
        if any(q.options.program_path is not None or q.options.multi_buffer for q in queues):
            return None
        program = queues[0].program.program
        if program.name != SHIPPED_PROGRAM:  # the compat one of older kernels leaves the lengths zero
            return None
        variables = ShippedVariables.of(program.global_variables)
        if variables is None:
            return None
        return cls(queues, fds, timeout_us, lock, snaplen, variables)

    def pass_records(self, limit: int, write: RecordWriter) -> int | None:
        """Hand ``write`` the records of up to ``limit`` frames (``RxPath.pass_records``),
        waiting at most the poll timeout; return how many (0: none came). None once a
        frame came without the program's metadata: read frames the ordinary way then."""
        with self._lock:
            queues = self._queues
            for queue in queues:
                queue.begin_read()
            deadline = None if self._timeout_us is None else time.monotonic_ns() + self._timeout_us * 1000
            while True:
                order = self._order.order()
                shares = fair_shares([queue.ready(limit) for queue in order], limit)
                if any(shares):
                    # After the rings were read: a frame they showed set the flag before.
                    if self._variables.metadata_missing():
                        return None
                    self._variables.realtime_offset(time.monotonic_ns())  # keeps the program's clock current
                    for queue, share in zip(order, shares):
                        if share:
                            queue.pass_pcap_records(share, self._snaplen, write)
                    return sum(shares)
                for queue in queues:
                    queue.note_empty()
                if not wait_for_frames(queues, self._fds, deadline):
                    return 0
