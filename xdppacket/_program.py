"""The XDP program and its ``xsks_map`` on one interface, shared by every socket using it.

The program is attached with a BPF link (``BPF_LINK_CREATE``), not netlink: the kernel
detaches it as soon as the last file descriptor of the link closes, so a crashed or
SIGKILLed process never leaves it behind.

Sharing works at two levels:

* within a process, sockets on one interface share one ``XskProgram`` (reference
  counted; the last ``release()`` closes its descriptors);
* across processes, a process that finds an xdppacket program already attached joins
  it: it finds the XDP link by id (no bpffs needed), opens its own descriptors for the
  link, program and maps, and so keeps the program attached for as long as it runs.

A capture filter (``OptFilter``) is part of the program: its instructions go in front of
the program's own. Sockets sharing a program therefore share its filter, and a socket
asking for a different program or filter is refused: in one process by comparing what
the sockets asked for; across processes by comparing the kernel's tag of the attached
program (a hash of its instructions that leaves out map fds) with the tag of the program
this process would load, loaded for that purpose without being attached. The error names
the other process's filter, which the attaching process records next to its program
(``_filter_record``).

Every error path closes what it opened, and the registry is keyed per network namespace
of the calling thread, since interface indexes are only unique within one namespace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterable
from typing import ClassVar

from . import _bpf, _netlink
from ._arrival import REALTIME_OFFSET_VARIABLE, realtime_offset
from ._bpf_object import BpfObject, load_xsk_program, read_bpf_object
from ._filter_record import (
    FILTER_RECORD_MAP_NAME,
    filter_text,
    read_filter_record,
    record_filter,
)
from ._interface import interface_index, network_namespace_id
from ._machine import require_supported_machine
from ._maps import LoadedProgram
from .errors import BPFVerifierError, XDPProgramBusyError
from .filter import CompiledFilter
from .options import XDPMode

__all__ = ["XskProgram", "clear_iface_residue_xdp_resources"]

XSKS_MAP_NAME = "xsks_map"
# Mode flags shared by BPF_LINK_CREATE and IFLA_XDP_FLAGS (include/uapi/linux/if_link.h).
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2

_MODE_BY_ATTACHED = {_netlink.XDP_ATTACHED_DRV: XDPMode.DRV, _netlink.XDP_ATTACHED_SKB: XDPMode.SKB}
_MODE_NAME = {XDPMode.DRV: "native (XDP_MODE_DRV)", XDPMode.SKB: "generic (XDP_MODE_SKB)"}
# Attempts to attach-or-join when another process attaches or detaches at the same moment.
_ATTACH_ATTEMPTS = 5


class XskProgram:
    """One attached XDP program: owns its link's fd and the :class:`LoadedProgram` (the
    program's and its maps' fds, which Python reaches through ``program``).

    Lifetime: ``acquire`` hands out shared references; each ``release`` drops one and
    the last closes the descriptors, which detaches the program unless another process
    holds the link too. Thread-safe: the registry and reference counts are locked.
    """

    _registry: ClassVar[dict[tuple[int, int], XskProgram]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: tuple[int, int], ifname: str, mode: XDPMode, link_fd: int,
                 program: LoadedProgram, map_entries: int, attached_here: bool,
                 program_path: str | None = None, program_name: str | None = None,
                 capture_filter: CompiledFilter | None = None):
        self._key = key
        self.program_path = program_path
        self.program_name = program_name
        #: The filter in front of the program (None: it captures every frame).
        self.capture_filter = capture_filter
        self.ifname = ifname
        self.mode = mode
        self.link_fd = link_fd
        #: The program, its maps and global variables (what ``sock.program`` shows users).
        self.program = program
        self.map_entries = map_entries
        #: False when this process joined a program another process attached.
        self.attached_here = attached_here
        self._users = 0

    @property
    def prog_fd(self) -> int:
        """The program's fd."""
        return self.program.prog_fd

    @property
    def map_fd(self) -> int:
        """The fd of ``xsks_map``."""
        return self.program.map_fd(XSKS_MAP_NAME)

    @classmethod
    def acquire(cls, ifname: str, ifindex: int, mode: XDPMode, queue_count: int,
                program_path: str | None, queue_id: int,
                program_name: str | None = None,
                capture_filter: CompiledFilter | None = None) -> XskProgram:
        """A shared reference to the interface's program, attaching or joining it if needed.

        ``program_path`` None means the shipped program; ``program_name`` chooses one
        program of an object holding several; ``capture_filter`` goes in front of it.
        Joining a program another process attached, the object is still read, for the
        types of its maps and variables. ``queue_id`` is the queue the caller opens, named
        in error messages. A different program or filter than the interface's sockets
        already use is a ``ValueError``.
        """
        require_supported_machine()  # before any bpf() call: the socket could not run anyway
        # ifindexes are per network namespace, and each thread may be in its own.
        key = (network_namespace_id(), ifindex)
        with cls._lock:
            program = cls._registry.get(key)
            if program is None:
                try:
                    program = _attach_or_join(key, ifname, ifindex, mode, queue_count, program_path,
                                              program_name, capture_filter)
                except (XDPProgramBusyError, BPFVerifierError):
                    raise  # their messages name the interface or program already
                except OSError as error:
                    if ifname in str(error.strerror):
                        raise
                    # A bare kernel call's error (bpf(BPF_MAP_CREATE) ...): say what it was for.
                    raise OSError(error.errno, f"opening {ifname} queue {queue_id}: "
                                               f"{error.strerror}") from error
                cls._registry[key] = program
            elif program.mode is not mode:
                raise ValueError(
                    f"{ifname} already runs the XDP program in {_MODE_NAME[program.mode]} mode for "
                    f"other sockets of this process; open this socket with OptXDPMode in the same mode"
                )
            elif (program.program_path, program.program_name) != (program_path, program_name):
                running = program.program_path or "the shipped program"
                if program.program_name is not None:
                    running += f" (program {program.program_name!r})"
                raise ValueError(
                    f"{ifname} already runs {running} for other sockets of this process; all its "
                    f"sockets must use the same OptXDPProgram"
                )
            elif _prologue(program.capture_filter) != _prologue(capture_filter):  # the code, as across processes
                raise ValueError(
                    f"{ifname} already captures with {filter_text(program.capture_filter)} for other "
                    f"sockets of this process, and this socket asks for {filter_text(capture_filter)}; "
                    f"the sockets of one interface share one XDP program, hence one filter: open "
                    f"them all with the same OptFilter"
                )
            program._users += 1
            return program

    def register(self, queue_id: int, xsk_fd: int) -> None:
        """Point the program's ``xsks_map[queue_id]`` at a bound socket."""
        if queue_id >= self.map_entries:
            raise ValueError(
                f"queue {queue_id} is beyond the {self.map_entries} entries of the xsks_map attached "
                f"to {self.ifname}; close the sockets using it so it is reloaded with the current queue count"
            )
        try:
            _bpf.map_update_elem(self.map_fd, queue_id, xsk_fd)
        except OSError as error:
            raise OSError(error.errno, f"adding the socket of {self.ifname} queue {queue_id} to xsks_map "
                                       f"failed: {error.strerror}") from error

    def unregister(self, queue_id: int) -> None:
        """Remove a socket from the map (the kernel also does this when the socket closes)."""
        with contextlib.suppress(FileNotFoundError):
            _bpf.map_delete_elem(self.map_fd, queue_id)

    def release(self) -> None:
        """Drop one reference; the last one closes every descriptor, then raises the first error."""
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            del self._registry[self._key]
        first_error = _close_all([self.link_fd])
        try:
            self.program.close()
        except OSError as error:
            first_error = first_error or error
        if first_error is not None:
            raise first_error


def _attach_or_join(key: tuple[int, int], ifname: str, ifindex: int, mode: XDPMode,
                    queue_count: int, program_path: str | None,
                    program_name: str | None, capture_filter: CompiledFilter | None) -> XskProgram:
    for _ in range(_ATTACH_ATTEMPTS):
        link = _netlink.get_link(ifindex)
        if link.xdp_attached == _netlink.XDP_ATTACHED_NONE:
            program = _attach(key, ifname, ifindex, mode, queue_count, program_path, program_name,
                              capture_filter)
        else:
            program = _join(key, ifname, link, mode, program_path, program_name, capture_filter)
        if program is not None:
            return program
    raise OSError(errno.EBUSY, f"could not attach to or join the XDP program of {ifname}: other "
                               f"processes keep attaching and detaching it; try again")


def _attach(key: tuple[int, int], ifname: str, ifindex: int, mode: XDPMode,
            queue_count: int, program_path: str | None,
            program_name: str | None, capture_filter: CompiledFilter | None) -> XskProgram | None:
    """Load and attach our program; ``None`` if another process attached one first."""
    with load_xsk_program(program_path, queue_count, program_name, _prologue(capture_filter),
                          _frags_prologue(capture_filter)) as loaded:
        record_filter(loaded.prog_fd, capture_filter)  # before other processes can see it
        prog_id = _bpf.prog_get_info_by_fd(loaded.prog_fd).id
        try:
            try:
                link_fd = _bpf.link_create(loaded.prog_fd, ifindex, _bpf.BPF_XDP, int(mode))
            except OSError as error:
                if error.errno in (errno.EBUSY, errno.EEXIST):
                    return None  # lost a race with another process: join its program instead
                raise _attach_error(error, ifname, mode) from error
            bpf_object, name = loaded.bpf_object, loaded.program_name
            prog_fd, map_fds = loaded.take_fds()
            program = _loaded_program(name, prog_fd, map_fds, bpf_object)
            _set_clock_offset(program)
            return XskProgram(key, ifname, mode, link_fd, program, queue_count, attached_here=True,
                              program_path=program_path, program_name=program_name,
                              capture_filter=capture_filter)
        except BaseException:
            # Found through /proc rather than by link_fd: an exception (KeyboardInterrupt from
            # a signal handler) may land after the kernel made the link and before its fd
            # reached us, and a lost link fd keeps the program attached.
            _close_all(_bpf.link_fds_of_program(prog_id))
            raise


def _attach_error(error: OSError, ifname: str, mode: XDPMode) -> OSError:
    hints = {
        errno.EOPNOTSUPP: "the driver has no native XDP support; use OptXDPMode(XDP_MODE_SKB)",
        errno.EPERM: "run as root or grant CAP_NET_ADMIN and CAP_BPF",
        errno.EINVAL: "the kernel refused the program for this device (check the MTU: native XDP "
                      "often needs it below about 3500 bytes)",
        errno.ERANGE: "the MTU is too large for native XDP on this device (for veth: the MTU of "
                      "its peer); lower it, e.g. to 1500, or use OptXDPMode(XDP_MODE_SKB)",
        errno.ENOSPC: "the device has too few queues for native XDP (for veth: fewer rx queues than "
                      "its peer has tx queues; give both ends the same counts), or use "
                      "OptXDPMode(XDP_MODE_SKB)",
    }
    hint = hints.get(error.errno or 0, "")
    return OSError(error.errno, f"attaching the XDP program to {ifname} in {_MODE_NAME[mode]} mode "
                                f"failed: {error.strerror}" + (f" ({hint})" if hint else ""))


def _loaded_program(name: str, prog_fd: int, map_fds: dict[str, int],
                    bpf_object: BpfObject | None) -> LoadedProgram:
    """A ``LoadedProgram`` owning these fds; they are closed if it cannot be built."""
    try:
        return LoadedProgram(name, prog_fd, map_fds, bpf_object)
    except BaseException:
        _close_all([*map_fds.values(), prog_fd])
        raise


def _set_clock_offset(program: LoadedProgram) -> None:
    """Give a program that stamps pcap record headers (the shipped one) the wall clock's
    offset, before any socket receives through it (see ``_pcap_records``)."""
    variables = program.global_variables
    if REALTIME_OFFSET_VARIABLE in variables:
        try:
            variables[REALTIME_OFFSET_VARIABLE] = realtime_offset(time.monotonic_ns())
        except BaseException:
            program.close()
            raise


def _prologue(capture_filter: CompiledFilter | None) -> bytes:
    return b"" if capture_filter is None else capture_filter.instructions


def _frags_prologue(capture_filter: CompiledFilter | None) -> bytes:
    """The filter's form for a frags-aware program (its length counts every buffer)."""
    return b"" if capture_filter is None else capture_filter.frags_instructions


def _join(key: tuple[int, int], ifname: str, link: _netlink.LinkInfo, mode: XDPMode,
          program_path: str | None, program_name: str | None,
          capture_filter: CompiledFilter | None) -> XskProgram | None:
    """Join the xdppacket program another process attached; ``None`` if it just went away."""
    bpf_object = read_bpf_object(program_path)  # what its maps and variables hold
    try:
        link_fd = _find_xdp_link(link.ifindex, link.xdp_prog_id)
    except PermissionError as error:
        raise PermissionError(
            error.errno,
            f"{ifname} already runs XDP program id {link.xdp_prog_id}; joining it (to share it with "
            f"the process that attached it) looks BPF links up by id, which needs CAP_SYS_ADMIN: "
            f"run as root or grant CAP_SYS_ADMIN",
        ) from error
    if link_fd is None:
        if _netlink.get_link(link.ifindex).xdp_prog_id != link.xdp_prog_id:
            return None  # its link went away (or a new program replaced it) meanwhile: look again
        raise XDPProgramBusyError(
            errno.EBUSY,
            f"{ifname} already has XDP program id {link.xdp_prog_id} attached by another tool (not "
            f"through a BPF link); remove it with xdppacket.clear_iface_residue_xdp_resources("
            f"{ifname!r}) or `ip link set dev {ifname} xdp off`",
            link.xdp_prog_id,
        )
    fds = [link_fd]
    try:
        attached_mode = _MODE_BY_ATTACHED.get(link.xdp_attached)
        if attached_mode is not mode:
            raise OSError(
                errno.EBUSY,
                f"{ifname} already runs an XDP program in "
                f"{_MODE_NAME[attached_mode] if attached_mode else 'another'} mode "
                f"(attached by another process); open this socket with the same OptXDPMode",
            )
        prog_fd = _bpf.prog_get_fd_by_id(link.xdp_prog_id)
        fds.append(prog_fd)
        map_fds = _open_maps(prog_fd)
        fds.extend(map_fds.values())
        map_entries = _xsks_map_entries(map_fds, ifname, link.xdp_prog_id)
        attached = _bpf.prog_get_info_by_fd(prog_fd)
        _require_same_program(ifname, attached, read_filter_record(map_fds), program_path,
                              program_name, capture_filter)
        record_fd = map_fds.pop(FILTER_RECORD_MAP_NAME, None)  # not one of the program's maps
        if record_fd is not None:
            fds.remove(record_fd)
            os.close(record_fd)
        del fds[1:]  # the LoadedProgram owns the program and map fds from here on
        program = _loaded_program(attached.name, prog_fd, map_fds, bpf_object)
    except FileNotFoundError:
        _close_all(fds)
        return None  # the program was detached while we looked: start over
    except BaseException:
        _close_all(fds)
        raise
    return XskProgram(key, ifname, mode, link_fd, program, map_entries, attached_here=False,
                      program_path=program_path, program_name=program_name,
                      capture_filter=capture_filter)


def _require_same_program(ifname: str, attached: _bpf.BpfProgInfo, attached_filter: str,
                          program_path: str | None, program_name: str | None,
                          capture_filter: CompiledFilter | None) -> None:
    """Refuse to join a program other than the one this process would attach.

    The program this process would load is loaded (not attached) for its tag, then
    closed; equal tags mean equal instructions, filter included, whatever maps each uses.
    """
    with load_xsk_program(program_path, 1, program_name, _prologue(capture_filter),
                          _frags_prologue(capture_filter)) as ours:
        if _bpf.prog_get_info_by_fd(ours.prog_fd).tag == attached.tag:
            return
    wanted = filter_text(capture_filter)
    if attached_filter != wanted:
        raise ValueError(
            f"{ifname} already captures with {attached_filter} for another process's sockets, and "
            f"this socket asks for {wanted}; the sockets of one interface share one XDP program, "
            f"hence one filter: open them all with the same OptFilter, or wait until the other "
            f"process closes its sockets"
        )
    ours_text = program_path or "the shipped program"
    if program_name is not None:
        ours_text += f" (program {program_name!r})"
    raise ValueError(
        f"{ifname} already runs XDP program id {attached.id} ({attached.name!r}, {attached_filter}) "
        f"for another process's sockets, which is not what this socket would load ({ours_text}, "
        f"{wanted}); the sockets of one interface share one XDP program: open them all with the "
        f"same OptXDPProgram and OptFilter (and the same xdppacket version)"
    )


def _find_xdp_link(ifindex: int, prog_id: int) -> int | None:
    """An fd of the XDP link running ``prog_id`` on ``ifindex``, or ``None`` if there is none.

    Link ids are global across network namespaces, so the program id (which netlink
    reported for our interface) must match as well as the ifindex.
    """
    link_id = _bpf.link_get_next_id(0)
    while link_id is not None:
        try:
            fd = _bpf.link_get_fd_by_id(link_id)
        except FileNotFoundError:
            fd = None  # that link went away meanwhile
        if fd is not None:
            try:
                info = _bpf.link_get_info_by_fd(fd)
            except BaseException:
                os.close(fd)
                raise
            if info.type == _bpf.BPF_LINK_TYPE_XDP and info.ifindex == ifindex and info.prog_id == prog_id:
                return fd
            os.close(fd)
        link_id = _bpf.link_get_next_id(link_id)
    return None


def _open_maps(prog_fd: int) -> dict[str, int]:
    """An fd on every map the program uses, by name; closes them all if one fails."""
    map_fds: dict[str, int] = {}
    try:
        for map_id in _bpf.prog_get_info_by_fd(prog_fd).map_ids:
            map_fd = _bpf.map_get_fd_by_id(map_id)
            try:
                name = _bpf.map_get_info_by_fd(map_fd).name
            except BaseException:
                os.close(map_fd)
                raise
            if name in map_fds:  # two maps of one name: keep the first, as lookups would
                os.close(map_fd)
            else:
                map_fds[name] = map_fd
    except BaseException:
        _close_all(map_fds.values())
        raise
    return map_fds


def _xsks_map_entries(map_fds: dict[str, int], ifname: str, prog_id: int) -> int:
    """The size of the program's XSKMAP named ``xsks_map``; refuse a program without it."""
    map_fd = map_fds.get(XSKS_MAP_NAME)
    info = _bpf.map_get_info_by_fd(map_fd) if map_fd is not None else None
    if info is None or info.type != _bpf.BPF_MAP_TYPE_XSKMAP:
        raise XDPProgramBusyError(
            errno.EBUSY,
            f"{ifname} runs XDP program id {prog_id} through a BPF link held by another process, and "
            f"it has no XSKMAP named {XSKS_MAP_NAME!r}, so AF_XDP sockets cannot join it; stop that "
            f"process (`bpftool link show` names it)",
            prog_id,
        )
    return info.max_entries


def _close_all(fds: Iterable[int]) -> OSError | None:
    """Close every fd even if one fails; return the first failure."""
    first_error: OSError | None = None
    for fd in fds:
        try:
            os.close(fd)
        except OSError as error:
            first_error = first_error or error
    return first_error


def clear_iface_residue_xdp_resources(ifname: str) -> list[int]:
    """Detach XDP programs left on ``ifname`` by netlink-based tools; return their ids.

    Like the Go library's ``ClearIfaceResidueXDPResources``. Programs attached through a
    BPF link (xdppacket's own) cannot be removed this way: they go away when the process
    holding the link exits, and trying raises an ``OSError`` saying so.
    """
    ifindex = interface_index(ifname)
    link = _netlink.get_link(ifindex)
    removed = []
    for flag, prog_id in ((XDP_FLAGS_DRV_MODE, link.xdp_drv_prog_id), (XDP_FLAGS_SKB_MODE, link.xdp_skb_prog_id)):
        if not prog_id:
            continue
        try:
            _netlink.set_xdp_fd(ifindex, -1, flag)
        except OSError as error:
            if error.errno == errno.EBUSY:
                raise OSError(errno.EBUSY, f"XDP program id {prog_id} on {ifname} is attached through a "
                                           f"BPF link held by a running process; it is removed when that "
                                           f"process exits") from error
            raise
        removed.append(prog_id)
    return removed
