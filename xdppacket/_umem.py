"""UMEM: the packet memory shared with the kernel.

The area holds ``2 * num_frames`` frames: the first half for receiving, the second for
sending, so rx and tx never compete for frames. Which frame is where at any moment is
not this module's business: ``_rx.RxPath`` and ``_tx.TxPath`` own the frames of their
half (see ``_frames`` for the rules every move follows).

The memory is a memfd mapped twice: read-write for the library, read-only for the
exporters behind zero-copy views, so a view (and its ``.obj``) can never write into a
frame the kernel or the tx side owns.
"""

from __future__ import annotations

import contextlib
import mmap
import os

from ._libc import buffer_address
from ._uapi import MAP_POPULATE

__all__ = ["Umem"]


class Umem:
    """Owns the memfd and the read-write mapping of all frames.

    Lifetime: created before the socket registers it, closed after the socket is closed.
    Not thread-safe (its owner, the socket, serialises access).
    """

    def __init__(self, num_frames: int, frame_size: int):
        self.frame_size = frame_size
        self.num_frames = num_frames
        self.size = 2 * num_frames * frame_size
        self._fd = os.memfd_create("xdppacket-umem", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self._fd, self.size)
            self.map = mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED | MAP_POPULATE)
        except BaseException:
            os.close(self._fd)
            raise
        self.address = buffer_address(self.map)

    @property
    def rx_frames(self) -> list[int]:
        """Base addresses of the receive half's frames."""
        return [i * self.frame_size for i in range(self.num_frames)]

    @property
    def tx_frames(self) -> list[int]:
        """Base addresses of the transmit half's frames."""
        return [(self.num_frames + i) * self.frame_size for i in range(self.num_frames)]

    def read_only_exporter(self) -> mmap.mmap:
        """A new read-only mapping of the whole area, for one batch of zero-copy views."""
        return mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)

    def close(self) -> None:
        """Unmap the frames, unless a user still holds a view of this mapping.

        The read-write mapping is only exported briefly by the library itself; read-only
        exporters unmap themselves when their last view dies.
        """
        with contextlib.suppress(BufferError):
            self.map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
