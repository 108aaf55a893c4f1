"""UMEM: the packet memory shared with the kernel.

The area holds ``2 * num_frames`` frames per socket using it (``sockets``: more than one
with ``OptSharedUmem``). Which frame is where at any moment is not this module's
business: ``_frames.FramePool`` holds the free ones, and the sockets' rx and tx paths
(``_rx``, ``_tx``) the others.

The memory is a memfd mapped several times: read-write for the library, read-only for
the exporters behind zero-copy views, so a read-only view (and its ``.obj``) can never
write into a frame the kernel or the tx side owns; writable views, asked for to forward
frames in place, get a read-write exporter. With ``huge_pages`` the memfd is on hugetlbfs
(``MFD_HUGETLB``) and its size is rounded up to whole huge pages; the frames beyond
``2 * num_frames * sockets`` are registered with the kernel but never used.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading

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

    def __init__(self, num_frames: int, frame_size: int, *, headroom: int = 0, huge_pages: bool = False,
                 sockets: int = 1):
        self.frame_size = frame_size
        #: Frames per direction per socket (OptNumFrames).
        self.num_frames = num_frames
        #: Bytes the kernel keeps free before each received frame (beyond its own 256).
        self.headroom = headroom
        self.huge_pages = huge_pages
        self.size = 2 * num_frames * sockets * frame_size
        self._frame_count = 2 * num_frames * sockets
        self._users = 1
        self._users_lock = threading.Lock()  # sockets sharing the memory may close in different threads
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
    def frames(self) -> list[int]:
        """Base addresses of every frame in use."""
        return [i * self.frame_size for i in range(self._frame_count)]

    def read_only_exporter(self) -> mmap.mmap:
        """A new read-only mapping of the whole area, for one batch of zero-copy views."""
        return mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)

    def writable_exporter(self) -> mmap.mmap:
        """A new read-write mapping of the whole area, for one batch of writable views."""
        return mmap.mmap(self._fd, self.size, flags=mmap.MAP_SHARED)

    def add_user(self) -> None:
        """One more socket registered this memory (``XDP_SHARED_UMEM``): it stays until that one closes too."""
        with self._users_lock:
            if self._fd < 0:
                raise ValueError("the UMEM to share is closed")
            self._users += 1

    def close(self) -> None:
        """Drop one user; the last unmaps the frames, unless a user still holds a view of this mapping.

        The read-write mapping is only exported briefly by the library itself; read-only
        exporters unmap themselves when their last view dies.
        """
        with self._users_lock:
            self._users -= 1
            if self._users > 0:
                return
            with contextlib.suppress(BufferError):
                self.map.close()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
