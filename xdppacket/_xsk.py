"""One AF_XDP socket: its file descriptor, its UMEM and its four rings.

Set-up order follows the kernel's requirements: create the socket, register the UMEM,
size the four rings, read their offsets, map them, fill the fill ring, then bind.
Teardown runs in reverse, and a failure at any step undoes the steps before it.

A socket may share the UMEM of another (``XDP_SHARED_UMEM``, another queue or
interface): it registers no memory, sizes its own fill and completion rings, and binds
naming the other socket; its frames come from the same pool (``_frames.FramePool``).
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from . import _uapi as uapi
from ._arrival import ShippedVariables, TrailerSource
from ._device import driver_info
from ._frames import FrameCensus, FramePool
from ._interface import network_namespace_id
from ._libc import bind_raw
from ._rings import CompletionRing, FillRing, RxRing, TxRing, map_ring, require_supported_machine
from ._rx import MultiBufferRxPath, RxPath
from ._tx import MultiBufferTxPath, TxPath
from ._umem import Umem
from .options import BindMode, OptBusyPoll, XDPMode, XDPOptions

__all__ = ["XskSocket", "bind_flags_for", "explain_os_error"]

# The kernel frees a closed socket's queue in deferred work (``xp_release_deferred`` in
# net/xdp/xsk_buff_pool.c, which waits for the rtnl lock), so for a few milliseconds after
# close() (20 ms seen under load) binding that queue again fails with EBUSY. A bind meeting
# EBUSY on a queue this process released less than _RELEASE_GRACE_S ago retries until
# then; any other EBUSY (a socket really bound there) is reported at once.
_RELEASE_GRACE_S = 1.0
_BIND_RETRY_INTERVAL_S = 0.001
#: (network namespace inode, ifindex, queue id) -> time.monotonic() of our last close there.
_released_at: dict[tuple[int, int, int], float] = {}
_released_lock = threading.Lock()


def _queue_key(ifindex: int, queue_id: int) -> tuple[int, int, int]:
    """Interface indexes are per network namespace, so the key includes the namespace."""
    return network_namespace_id(), ifindex, queue_id


def _note_released(key: tuple[int, int, int]) -> None:
    now = time.monotonic()
    with _released_lock:
        for stale in [k for k, t in _released_at.items() if now - t > _RELEASE_GRACE_S]:
            del _released_at[stale]
        _released_at[key] = now


def _recently_released(key: tuple[int, int, int]) -> bool:
    with _released_lock:
        released = _released_at.get(key)
    return released is not None and time.monotonic() - released <= _RELEASE_GRACE_S

# Per-errno hints for the failures users actually meet; the message names the fix.
_HINTS = {
    errno.EPERM: "run as root or grant CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF (plus CAP_IPC_LOCK or a "
    "larger RLIMIT_MEMLOCK for the UMEM)",
    errno.EACCES: "run as root or grant CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF",
    errno.EAFNOSUPPORT: "this kernel lacks AF_XDP: it needs CONFIG_XDP_SOCKETS=y (Linux 4.18+, 5.11+ "
    "recommended)",
    errno.EBUSY: "the queue is already bound by another AF_XDP socket (in this or another process); "
    "close it or pick another queue with OptQueueID",
    errno.EOPNOTSUPP: "the driver has no native XDP support; use OptXDPMode(XDP_MODE_SKB)",
    errno.ENOMEM: "not enough locked memory for the UMEM: raise RLIMIT_MEMLOCK (ulimit -l), run with "
    "CAP_IPC_LOCK, or use fewer frames (OptNumFrames)",
    errno.ENOBUFS: "not enough locked memory for the UMEM: raise RLIMIT_MEMLOCK (ulimit -l), or use "
    "fewer frames (OptNumFrames)",
    errno.EINVAL: "the queue id may be beyond the interface's active queues (ethtool -l), or the "
    "interface is down",
    errno.ENETDOWN: "the interface is down: ip link set dev IFNAME up",
    errno.ENODEV: "the interface disappeared",
}


def explain_os_error(error: OSError, action: str, ifname: str, queue_id: int) -> OSError:
    """Re-raise-able ``OSError`` of the same errno whose text names the interface, queue and fix."""
    err = error.errno or errno.EIO
    hint = _HINTS.get(err, "")
    hint = hint.replace("IFNAME", ifname)
    detail = error.strerror or str(error)
    message = f"{action} on {ifname} queue {queue_id} failed: {detail}"
    if hint:
        message += f" ({hint})"
    return OSError(err, message)


_BIND_STEP = "binding the socket"
_HUGE_PAGES_STEP = "allocating the UMEM on huge pages"
# What bind answers when the driver cannot do zero-copy: no ndo_xsk_wakeup (EOPNOTSUPP),
# or a driver that refuses the pool for this queue (EINVAL).
_ZERO_COPY_REFUSALS = (errno.EOPNOTSUPP, errno.EINVAL)


def bind_flags_for(options: XDPOptions) -> int:
    """The ``sockaddr_xdp`` flags for ``options``: need_wakeup always, copy or zero-copy per OptBindMode,
    ``XDP_USE_SG`` with OptMultiBuffer.

    ``BIND_AUTO`` in generic mode binds with ``XDP_COPY`` (the only possibility there); in
    native mode it sets neither flag, so the kernel tries zero-copy and falls back to copy.
    """
    flags = uapi.XDP_USE_NEED_WAKEUP | int(options.bind_mode)
    if options.multi_buffer:
        flags |= uapi.XDP_USE_SG
    if options.bind_mode is BindMode.AUTO and options.xdp_mode is XDPMode.SKB:
        flags |= uapi.XDP_COPY
    return flags


def _zero_copy_refused(error: OSError, ifname: str, queue_id: int) -> OSError:
    """The error of a ``BIND_ZEROCOPY`` bind the driver refused: names the driver and the way out."""
    try:
        info = driver_info(ifname)
    except OSError:
        info = None
    driver = f"driver {info.driver!r}" if info is not None else "its driver"
    return OSError(
        error.errno,
        f"binding {ifname} queue {queue_id} with OptBindMode(BIND_ZEROCOPY) failed: {error.strerror}; "
        f"{driver} offers no AF_XDP zero-copy on it (`xdppacket diagnose {ifname}` shows the driver's "
        f"features); use OptBindMode(BIND_AUTO) to fall back to copy mode, or BIND_COPY",
    )


class XskSocket:
    """Owns an AF_XDP socket, the UMEM registered with it, its four rings and the two
    paths (``rx``: fill and rx rings; ``tx``: tx and completion rings) that own the frames.

    Lifetime: ``close()`` (idempotent) ends the zero-copy loans that can end, unmaps the
    rings, closes the socket (which makes the kernel drop the socket from any XSKMAP),
    then unmaps the UMEM. Not thread-safe: its user serialises calls.
    """

    def __init__(self, ifname: str, ifindex: int, queue_id: int, num_frames: int, frame_size: int,
                 ring_size: int, bind_flags: int, *, trailers: TrailerSource = TrailerSource.SHIPPED, headroom: int = 0,
                 huge_pages: bool = False, busy_poll: OptBusyPoll | None = None, umem_sockets: int = 1,
                 share_with: XskSocket | None = None, shipped_variables: ShippedVariables | None = None):
        """``umem_sockets``: how many sockets the new UMEM has frames for; ``share_with``:
        use that socket's UMEM instead (frame size, count, headroom and huge pages are its);
        ``shipped_variables``: the shipped program's, for reading its trailers (``ArrivalReader``)."""
        require_supported_machine()
        self.ifname = ifname
        self.queue_id = queue_id
        #: How the frame check names this socket.
        self.label = f"{ifname} q{queue_id}"
        self._queue_key = _queue_key(ifindex, queue_id)
        self._bound = False
        self._closed = False
        self._sock: socket.socket | None = None
        self._rings: list[FillRing | CompletionRing | RxRing | TxRing] = []
        self.umem: Umem | None = None
        self.pool: FramePool | None = None
        self.rx: RxPath | None = None
        self.tx: TxPath | None = None
        #: Whether the kernel bound the socket in zero-copy mode (``XDP_OPTIONS``).
        self.zero_copy = False
        step = "creating the AF_XDP socket"
        try:
            self._sock = socket.socket(uapi.AF_XDP, socket.SOCK_RAW, 0)
            if busy_poll is not None:
                step = "enabling busy polling (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET)"
                self._enable_busy_poll(busy_poll)
            if share_with is None:
                step = _HUGE_PAGES_STEP if huge_pages else "allocating the UMEM"
                self.umem = Umem(num_frames, frame_size, headroom=headroom, huge_pages=huge_pages,
                                 sockets=umem_sockets)
                self.pool = FramePool(self.umem.frames, frame_size, sockets=umem_sockets)
                step = "registering the UMEM (XDP_UMEM_REG)"
                # Aligned chunks (no XDP_UMEM_UNALIGNED_CHUNK_FLAG): receiving relies on the
                # kernel rounding fill-ring addresses down to their frame.
                self._sock.setsockopt(
                    uapi.SOL_XDP, uapi.XDP_UMEM_REG,
                    uapi.pack_umem_reg(self.umem.address, self.umem.size, frame_size, headroom),
                )
            else:
                step = "sharing the UMEM"
                self.umem, self.pool = share_with.umem, share_with.pool
                assert self.umem is not None
                assert self.pool is not None
                self.umem.add_user()
            step = "sizing the rings"
            for option in (uapi.XDP_UMEM_FILL_RING, uapi.XDP_UMEM_COMPLETION_RING, uapi.XDP_RX_RING, uapi.XDP_TX_RING):
                self._sock.setsockopt(uapi.SOL_XDP, option, ring_size)
            step = "reading the ring offsets (XDP_MMAP_OFFSETS)"
            offsets = uapi.MmapOffsets.unpack(
                self._sock.getsockopt(uapi.SOL_XDP, uapi.XDP_MMAP_OFFSETS, uapi.XDP_MMAP_OFFSETS_STRUCT.size)
            )
            step = "mapping the rings"
            fd = self._sock.fileno()
            fill = FillRing(map_ring(fd, uapi.XDP_UMEM_PGOFF_FILL_RING, offsets.fill, ring_size, False))
            self._rings.append(fill)
            completion = CompletionRing(
                map_ring(fd, uapi.XDP_UMEM_PGOFF_COMPLETION_RING, offsets.completion, ring_size, False)
            )
            self._rings.append(completion)
            rx = RxRing(map_ring(fd, uapi.XDP_PGOFF_RX_RING, offsets.rx, ring_size, True))
            self._rings.append(rx)
            tx = TxRing(map_ring(fd, uapi.XDP_PGOFF_TX_RING, offsets.tx, ring_size, True))
            self._rings.append(tx)
            self._raise_tx_budget(ring_size)
            # Multi-buffer sockets take their own paths, chosen once here: the others keep theirs.
            multi_buffer = bool(bind_flags & uapi.XDP_USE_SG)
            rx_path = MultiBufferRxPath if multi_buffer else RxPath
            self.tx = (MultiBufferTxPath if multi_buffer else TxPath)(self.umem, self.pool, tx, completion)
            self.pool.join(self)
            # Fills the fill ring before the bind.
            self.rx = rx_path(self.umem, self.pool, fill, rx, trailers, shipped_variables=shipped_variables)
            step = _BIND_STEP
            if share_with is None:
                self._bind(uapi.pack_sockaddr_xdp(bind_flags, ifindex, queue_id))
            else:  # the kernel takes the mode and need_wakeup from the UMEM's first socket, no flags
                self._bind(uapi.pack_sockaddr_xdp(uapi.XDP_SHARED_UMEM, ifindex, queue_id, share_with.fileno()))
            step = "reading the bind mode (XDP_OPTIONS)"
            self.zero_copy = self._read_zero_copy()
        except OSError as error:
            self.close()
            if step == _BIND_STEP and bind_flags & uapi.XDP_ZEROCOPY and error.errno in _ZERO_COPY_REFUSALS:
                raise _zero_copy_refused(error, ifname, queue_id) from error
            if step == _HUGE_PAGES_STEP and error.errno == errno.ENOMEM:  # the Umem's message names the fix
                raise OSError(error.errno, f"{step} for {ifname} queue {queue_id} failed: {error.strerror}") from error
            raise explain_os_error(error, step, ifname, queue_id) from error
        except BaseException:
            self.close()
            raise

    def _bind(self, address: bytes) -> None:
        """Bind to the queue, waiting out a release of it this process has just made."""
        assert self._sock is not None
        while True:
            try:
                bind_raw(self._sock.fileno(), address, "bind")
            except OSError as error:
                if error.errno != errno.EBUSY or not _recently_released(self._queue_key):
                    raise
                time.sleep(_BIND_RETRY_INTERVAL_S)
            else:
                self._bound = True
                return

    def _raise_tx_budget(self, ring_size: int) -> None:
        """Let one copy-mode kick send a whole tx ring instead of 32 frames.

        Fewer kicks per batch is the largest tx win available from user space. Kernels
        before 6.17 lack the option (ENOPROTOOPT) and keep their fixed budget.
        """
        assert self._sock is not None
        try:
            self._sock.setsockopt(uapi.SOL_XDP, uapi.XDP_MAX_TX_SKB_BUDGET, ring_size)
        except OSError as error:
            if error.errno not in (errno.ENOPROTOOPT, errno.EINVAL, errno.EACCES):
                raise

    def _enable_busy_poll(self, busy_poll: OptBusyPoll) -> None:
        """Let recvfrom/sendto/poll on this socket run the driver's NAPI work themselves."""
        assert self._sock is not None
        self._sock.setsockopt(socket.SOL_SOCKET, uapi.SO_PREFER_BUSY_POLL, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, uapi.SO_BUSY_POLL, busy_poll.timeout_us)
        self._sock.setsockopt(socket.SOL_SOCKET, uapi.SO_BUSY_POLL_BUDGET, busy_poll.budget)

    def _read_zero_copy(self) -> bool:
        assert self._sock is not None
        raw = self._sock.getsockopt(uapi.SOL_XDP, uapi.XDP_OPTIONS, uapi.XDP_OPTIONS_STRUCT.size)
        (flags,) = uapi.XDP_OPTIONS_STRUCT.unpack(raw)
        return bool(flags & uapi.XDP_OPTIONS_ZEROCOPY)

    def drive_rx(self) -> None:
        """One non-blocking ``recvfrom``: with busy polling it runs the driver's receive work now."""
        assert self._sock is not None
        try:
            # Not recv(0): CPython answers that itself, without the system call.
            self._sock.recv(1, socket.MSG_DONTWAIT)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN):
                raise explain_os_error(error, "driving rx (recvfrom)", self.ifname, self.queue_id) from error

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("the AF_XDP socket is closed")
        return self._sock.fileno()

    def kick_tx(self) -> int:
        """Ask the kernel to send what the tx ring holds; return the errno (0 if none).

        EAGAIN (more left: copy mode sends at most a small batch per call), EBUSY and
        ENOBUFS are flow control, not failures; the caller counts them and retries.
        """
        assert self._sock is not None
        try:
            self._sock.send(b"", socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError) as error:
            if error.errno in (errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.ENETDOWN):
                return error.errno
            raise explain_os_error(error, "kicking tx (sendto)", self.ifname, self.queue_id) from error
        return 0

    def pending_error(self) -> int:
        """Take the socket's pending error (``SO_ERROR``): ENETDOWN once its interface is gone."""
        assert self._sock is not None
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def kernel_statistics(self) -> tuple[int, ...]:
        """The six ``struct xdp_statistics`` counters (zeros for fields an old kernel lacks)."""
        assert self._sock is not None
        size = uapi.XDP_STATISTICS_STRUCT.size
        raw = self._sock.getsockopt(uapi.SOL_XDP, uapi.XDP_STATISTICS, size)
        return uapi.XDP_STATISTICS_STRUCT.unpack(raw.ljust(size, b"\0"))

    def censuses(self) -> dict[str, FrameCensus]:
        """Where the frames this socket holds are (the caller holds the pool's lock)."""
        halves = {"rx": self.rx, "tx": self.tx}
        return {half: path.census() for half, path in halves.items() if path is not None}

    def give_back_unbound(self) -> None:
        """Before a bind: return what the fill ring holds to the pool (the kernel never saw it)."""
        if self.rx is not None:
            self.rx.give_back_unbound()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.rx is not None:
            self.rx.close()
        if self.pool is not None and self.tx is not None:  # it joined the pool
            self.pool.leave(self, bound=self._bound)
        for ring in self._rings:
            ring.close()
        self._rings.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            if self._bound:
                _note_released(self._queue_key)
        if self.umem is not None:
            self.umem.close()
