"""UMEM: the packet memory shared with the kernel.

The area holds ``2 * num_frames`` frames: the first half for receiving, the second for
sending, so rx and tx never compete for frames. Which frame is where at any moment is
not this module's business: ``_rx.RxPath`` and ``_tx.TxPath`` own the frames of their
half (see ``_frames`` for the rules every move follows).

The memory is a memfd mapped twice: read-write for the library, read-only for the
exporters behind zero-copy views, so a view (and its ``.obj``) can never write into a
frame the kernel or the tx side owns. With ``huge_pages`` the memfd is on hugetlbfs
(``MFD_HUGETLB``) and its size is rounded up to whole huge pages; the frames beyond
``2 * num_frames`` are registered with the kernel but never used.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os

from ._libc import buffer_address
from ._uapi import MAP_POPULATE

__all__ = ["Umem", "huge_page_size"]

_MEMINFO = "/proc/meminfo"
_NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"


def huge_page_size() -> int:
    """The default huge page size in bytes (``Hugepagesize`` in /proc/meminfo), what MFD_HUGETLB uses."""
    with open(_MEMINFO) as meminfo:
        for line in meminfo:
            if line.startswith("Hugepagesize:"):
                return int(line.split()[1]) * 1024
    raise OSError(errno.EOPNOTSUPP, f"this kernel has no huge pages ({_MEMINFO} has no Hugepagesize)")


class Umem:
    """Owns the memfd and the read-write mapping of all frames.

    Lifetime: created before the socket registers it, closed after the socket is closed.
    Not thread-safe (its owner, the socket, serialises access).
    """

    def __init__(self, num_frames: int, frame_size: int, *, headroom: int = 0, huge_pages: bool = False):
        self.frame_size = frame_size
        self.num_frames = num_frames
        #: Bytes the kernel keeps free before each received frame (beyond its own 256).
        self.headroom = headroom
        self.huge_pages = huge_pages
        self.size = 2 * num_frames * frame_size
        flags = os.MFD_CLOEXEC
        if huge_pages:
            page = huge_page_size()
            self.size = -(-self.size // page) * page
            flags |= os.MFD_HUGETLB
        self._fd = os.memfd_create("xdppacket-umem", flags)
        try:
            os.ftruncate(self._fd, self.size)
            try:
                self.map = mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED | MAP_POPULATE)
            except OSError as error:
                if huge_pages and error.errno == errno.ENOMEM:
                    raise self._too_few_huge_pages(page) from error
                raise
        except BaseException:
            os.close(self._fd)
            raise
        self.address = buffer_address(self.map)

    def _too_few_huge_pages(self, page: int) -> OSError:
        needed = self.size // page
        return OSError(
            errno.ENOMEM,
            f"OptHugePages: the UMEM needs {needed} free huge page(s) of {page // 1024} kB and fewer are "
            f"free (HugePages_Free in {_MEMINFO}); reserve more as root: echo N > {_NR_HUGEPAGES}, N being "
            f"the huge pages already in use plus {needed} for this socket",
        )

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
