"""Typed wrappers over the bpf(2) system call.

Each command gets a ctypes structure laid out like its variant of the kernel's
``union bpf_attr`` (include/uapi/linux/bpf.h). ctypes zero-fills new structures, so
every field and padding byte a command does not use reaches the kernel as zero, which
the kernel requires. A structure shorter than the kernel's union is fine: the kernel
zero-extends it.

Every function that returns a file descriptor hands over ownership: the caller closes
it with ``os.close``. Failures raise ``OSError`` with the errno (``PermissionError``
when not root / without ``CAP_BPF``), except verifier rejections, which raise
:class:`~xdppacket.errors.BPFVerifierError` carrying the verifier's log.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

from ._libc import bpf_syscall
from .errors import BPFVerifierError

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_TEST_XDP_LIVE_FRAMES",
    "BPF_LINK_CREATE",
    "BPF_LINK_GET_FD_BY_ID",
    "BPF_LINK_GET_NEXT_ID",
    "BPF_LINK_TYPE_XDP",
    "BPF_MAP_CREATE",
    "BPF_MAP_DELETE_ELEM",
    "BPF_MAP_FREEZE",
    "BPF_MAP_GET_NEXT_KEY",
    "BPF_MAP_LOOKUP_ELEM",
    "BPF_MAP_GET_FD_BY_ID",
    "BPF_F_MMAPABLE",
    "BPF_F_RDONLY_PROG",
    "BPF_F_XDP_HAS_FRAGS",
    "BPF_MAP_TYPE_ARRAY",
    "BPF_MAP_TYPE_DEVMAP",
    "BPF_MAP_TYPE_DEVMAP_HASH",
    "BPF_MAP_TYPE_HASH",
    "BPF_MAP_TYPE_LRU_HASH",
    "BPF_MAP_TYPE_LRU_PERCPU_HASH",
    "BPF_MAP_TYPE_PERCPU_ARRAY",
    "BPF_MAP_TYPE_PERCPU_HASH",
    "BPF_MAP_TYPE_XSKMAP",
    "BPF_MAP_UPDATE_ELEM",
    "BPF_NOEXIST",
    "BPF_OBJ_GET_INFO_BY_FD",
    "BPF_OBJ_NAME_LEN",
    "BPF_PROG_GET_FD_BY_ID",
    "BPF_PROG_LOAD",
    "BPF_PROG_TEST_RUN",
    "BPF_PROG_TYPE_XDP",
    "BPF_PSEUDO_MAP_FD",
    "BPF_PSEUDO_MAP_VALUE",
    "BPF_XDP",
    "BpfLinkInfo",
    "BpfMapInfo",
    "BpfProgInfo",
    "VERIFIER_LOG_SIZE",
    "bpf_attr_link_create",
    "bpf_attr_map_create",
    "bpf_attr_map_elem",
    "bpf_attr_get_id",
    "bpf_attr_obj_info",
    "bpf_attr_prog_bind_map",
    "bpf_attr_prog_load",
    "bpf_attr_test_run",
    "bpf_link_info",
    "bpf_map_info",
    "bpf_prog_info",
    "kernel_object_name",
    "link_create",
    "link_get_fd_by_id",
    "link_get_info_by_fd",
    "link_get_next_id",
    "link_fds_of_program",
    "map_create",
    "map_delete",
    "map_delete_elem",
    "map_freeze",
    "map_get_next_key",
    "map_lookup",
    "map_update",
    "map_get_fd_by_id",
    "map_get_info_by_fd",
    "map_update_elem",
    "obj_get_info_by_fd",
    "prog_get_fd_by_id",
    "prog_get_info_by_fd",
    "prog_bind_map",
    "prog_load",
    "prog_test_run",
    "xdp_md",
]

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_CREATE = 28
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_MAP_FREEZE = 22
BPF_PROG_BIND_MAP = 35

# enum bpf_map_type
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_DEVMAP = 14
BPF_MAP_TYPE_XSKMAP = 17
BPF_MAP_TYPE_DEVMAP_HASH = 25
BPF_PROG_TYPE_XDP = 6  # enum bpf_prog_type
BPF_XDP = 37  # enum bpf_attach_type
BPF_LINK_TYPE_XDP = 6  # enum bpf_link_type

BPF_ANY = 0  # map update flags
BPF_NOEXIST = 1
BPF_EXIST = 2

BPF_PSEUDO_MAP_FD = 1  # ld_imm64 src_reg: the immediate is a map fd
BPF_PSEUDO_MAP_VALUE = 2  # ld_imm64 src_reg: map fd, then an offset into its value
BPF_F_RDONLY_PROG = 1 << 7  # map flags: programs may only read the map
BPF_F_MMAPABLE = 1 << 10  # map flags: user space may mmap an array map's values
BPF_F_XDP_HAS_FRAGS = 1 << 5  # prog flags: the program handles multi-buffer frames
BPF_F_TEST_XDP_LIVE_FRAMES = 2  # BPF_PROG_TEST_RUN flag (kernel >= 5.18)
BPF_OBJ_NAME_LEN = 16

#: Verifier log buffer for the retry after a rejection; big enough for small programs.
VERIFIER_LOG_SIZE = 1 << 20
_VERIFIER_LOG_LEVEL = 1
# Load failures that say nothing about the code: missing privileges, no descriptor left
# (the verifier would accept the program, and a retry with a log would fail the same way).
_NOT_A_VERDICT = frozenset({errno.EPERM, errno.EMFILE, errno.ENFILE})
_BPF_INSN_SIZE = 8

_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64
_name_t = ctypes.c_char * BPF_OBJ_NAME_LEN


class bpf_attr_map_create(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_MAP_CREATE`` (72 bytes)."""

    _fields_ = [
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", _name_t),
        ("map_ifindex", _u32),
        ("btf_fd", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("map_extra", _u64),
    ]


class bpf_attr_map_elem(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_MAP_*_ELEM`` (32 bytes); key/value are pointers."""

    _fields_ = [
        ("map_fd", _u32),
        ("key", _u64),
        ("value", _u64),
        ("flags", _u64),
    ]


class bpf_attr_prog_load(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_PROG_LOAD`` (144 bytes).

    ``log_true_size`` is filled in by kernels >= 6.4 with the log size the verifier
    wanted; older kernels leave it zero.
    """

    _fields_ = [
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", _name_t),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
        ("prog_btf_fd", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("func_info_cnt", _u32),
        ("line_info_rec_size", _u32),
        ("line_info", _u64),
        ("line_info_cnt", _u32),
        ("attach_btf_id", _u32),
        ("attach_prog_fd", _u32),
        ("core_relo_cnt", _u32),
        ("fd_array", _u64),
        ("core_relos", _u64),
        ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),
    ]


class bpf_attr_prog_bind_map(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_PROG_BIND_MAP`` (the ``prog_bind_map`` member, 12 bytes)."""

    _fields_ = [
        ("prog_fd", _u32),
        ("map_fd", _u32),
        ("flags", _u32),
    ]


class bpf_attr_test_run(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_PROG_TEST_RUN`` (the ``test`` member, 80 bytes)."""

    _fields_ = [
        ("prog_fd", _u32),
        ("retval", _u32),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("data_in", _u64),
        ("data_out", _u64),
        ("repeat", _u32),
        ("duration", _u32),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("ctx_in", _u64),
        ("ctx_out", _u64),
        ("flags", _u32),
        ("cpu", _u32),
        ("batch_size", _u32),
    ]


class bpf_attr_get_id(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_*_GET_FD_BY_ID`` and ``BPF_*_GET_NEXT_ID`` (12 bytes).

    ``start_id`` is also the kernel's ``prog_id``/``map_id``/``link_id``.
    """

    _fields_ = [
        ("start_id", _u32),
        ("next_id", _u32),
        ("open_flags", _u32),
    ]


class bpf_attr_obj_info(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_OBJ_GET_INFO_BY_FD`` (the ``info`` member, 16 bytes)."""

    _fields_ = [
        ("bpf_fd", _u32),
        ("info_len", _u32),
        ("info", _u64),
    ]


class bpf_attr_link_create(ctypes.Structure):
    """``union bpf_attr`` for ``BPF_LINK_CREATE`` (48 bytes).

    XDP links use only the first four fields; the rest is the attach-type-specific
    union (tracing, kprobe_multi, ...), which must be zero for them.
    """

    _fields_ = [
        ("prog_fd", _u32),
        ("target_ifindex", _u32),
        ("attach_type", _u32),
        ("flags", _u32),
        ("attach_type_specific", _u64 * 4),
    ]


class bpf_prog_info(ctypes.Structure):
    """``struct bpf_prog_info`` as of Linux 6.1 (232 bytes); newer kernels append fields."""

    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", _name_t),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),  # bit 0; the other 31 bits are padding
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
    ]


class bpf_map_info(ctypes.Structure):
    """``struct bpf_map_info`` (88 bytes)."""

    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", _name_t),
        ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("btf_id", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("map_extra", _u64),
    ]


class _bpf_link_info_xdp(ctypes.Structure):
    _fields_ = [("ifindex", _u32)]


class _bpf_link_info_variants(ctypes.Union):
    """The per-link-type union of ``struct bpf_link_info``; only ``xdp`` is read here."""

    _fields_ = [
        ("xdp", _bpf_link_info_xdp),
        ("largest_variant_as_of_6_1", _u64 * 4),
    ]


class bpf_link_info(ctypes.Structure):
    """``struct bpf_link_info`` as of Linux 6.1 (48 bytes); the union starts at offset 16."""

    _anonymous_ = ("variants",)
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("prog_id", _u32),
        ("variants", _bpf_link_info_variants),
    ]


class xdp_md(ctypes.Structure):
    """``struct xdp_md``: the context given to ``BPF_PROG_TEST_RUN`` as ``ctx_in``."""

    _fields_ = [
        ("data", _u32),
        ("data_end", _u32),
        ("data_meta", _u32),
        ("ingress_ifindex", _u32),
        ("rx_queue_index", _u32),
        ("egress_ifindex", _u32),
    ]


@dataclass(frozen=True)
class BpfProgInfo:
    """What the kernel reports about a loaded program."""

    id: int
    type: int
    name: str
    map_ids: tuple[int, ...]
    #: The kernel's hash of the instructions as loaded, map fds left out: two loads of one
    #: program have the same tag whatever maps they use.
    tag: bytes = b""


@dataclass(frozen=True)
class BpfMapInfo:
    """What the kernel reports about a map."""

    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    name: str
    map_flags: int = 0


@dataclass(frozen=True)
class BpfLinkInfo:
    """What the kernel reports about a link; ``ifindex`` is set for XDP links only."""

    id: int
    type: int
    prog_id: int
    ifindex: int | None


#: The verifier gives up with EAGAIN when a signal arrives while it works; it is retried.
_PROG_LOAD_SIGNAL_RETRIES = 1000


def _bpf_call(command: int, attr: ctypes.Structure, what: str) -> int:
    """``bpf_syscall`` whose EPERM says which privileges are missing."""
    try:
        for _ in range(_PROG_LOAD_SIGNAL_RETRIES if command == BPF_PROG_LOAD else 0):
            try:
                return bpf_syscall(command, attr, what)
            except BlockingIOError:
                continue  # a signal interrupted the verifier: a handler that returned, so verify again
        return bpf_syscall(command, attr, what)
    except PermissionError as err:
        if err.errno != errno.EPERM:
            raise
        raise PermissionError(
            err.errno,
            f"{err.strerror} (bpf() needs root, or CAP_BPF and CAP_NET_ADMIN; kernels "
            "before 5.11 also charge maps to RLIMIT_MEMLOCK)",
        ) from None


def kernel_object_name(name: str) -> str:
    """The name the kernel keeps for a map or program called ``name`` (see ``_object_name``)."""
    return _object_name(name).decode("ascii")


def _object_name(name: str) -> bytes:
    """A name the kernel accepts: at most 15 bytes of ``[A-Za-z0-9_.]``."""
    allowed = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)
    return allowed.encode("ascii")[: BPF_OBJ_NAME_LEN - 1]


def _u32_argument(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} must be an integer in [0, 2**32), got {value!r}")
    return value


def map_create(
    map_type: int, key_size: int, value_size: int, max_entries: int, name: str, map_flags: int = 0
) -> int:
    """Create a map (``BPF_MAP_CREATE``); return its fd."""
    attr = bpf_attr_map_create(
        map_type=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=map_flags,
        map_name=_object_name(name),
    )
    return _bpf_call(
        BPF_MAP_CREATE,
        attr,
        f"bpf(BPF_MAP_CREATE) of map {name!r} (type {map_type}, key {key_size} B, "
        f"value {value_size} B, {max_entries} entries)",
    )


def map_update_elem(map_fd: int, key: int, value: int, flags: int = BPF_ANY) -> None:
    """Set ``map[key] = value`` for a map with u32 keys and u32 values (an XSKMAP's fds)."""
    key_buffer = _u32(_u32_argument(key, "map key"))
    value_buffer = _u32(_u32_argument(value, "map value"))
    attr = bpf_attr_map_elem(
        map_fd=map_fd,
        key=ctypes.addressof(key_buffer),
        value=ctypes.addressof(value_buffer),
        flags=flags,
    )
    _bpf_call(
        BPF_MAP_UPDATE_ELEM, attr, f"bpf(BPF_MAP_UPDATE_ELEM) of key {key} in map fd {map_fd}"
    )


def map_delete_elem(map_fd: int, key: int) -> None:
    """Remove ``map[key]`` from a map with u32 keys; ``FileNotFoundError`` if absent."""
    key_buffer = _u32(_u32_argument(key, "map key"))
    attr = bpf_attr_map_elem(map_fd=map_fd, key=ctypes.addressof(key_buffer))
    _bpf_call(
        BPF_MAP_DELETE_ELEM, attr, f"bpf(BPF_MAP_DELETE_ELEM) of key {key} in map fd {map_fd}"
    )


def _bytes_buffer(data: bytes | None, size: int, what: str) -> ctypes.Array[ctypes.c_char] | None:
    if data is None:
        return None
    if len(data) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(data)}")
    return ctypes.create_string_buffer(bytes(data), size)


def _address(buffer: ctypes.Array[ctypes.c_char] | None) -> int:
    return ctypes.addressof(buffer) if buffer is not None else 0


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """``map[key]`` as ``value_size`` bytes (``BPF_MAP_LOOKUP_ELEM``), ``None`` if absent.

    ``key`` must be exactly the map's key size; for per-CPU maps ``value_size`` is the
    value size rounded up to 8, times the number of possible CPUs.
    """
    key_buffer = _bytes_buffer(key, len(key), "key")
    value_buffer = ctypes.create_string_buffer(value_size)
    attr = bpf_attr_map_elem(map_fd=map_fd, key=_address(key_buffer),
                             value=ctypes.addressof(value_buffer))
    try:
        _bpf_call(BPF_MAP_LOOKUP_ELEM, attr, f"bpf(BPF_MAP_LOOKUP_ELEM) of key {key.hex()} in map fd {map_fd}")
    except FileNotFoundError:
        return None
    return value_buffer.raw


def map_update(map_fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    """Set ``map[key] = value`` (``BPF_MAP_UPDATE_ELEM``); both as raw bytes."""
    key_buffer = _bytes_buffer(key, len(key), "key")
    value_buffer = _bytes_buffer(value, len(value), "value")
    attr = bpf_attr_map_elem(map_fd=map_fd, key=_address(key_buffer), value=_address(value_buffer),
                             flags=flags)
    _bpf_call(BPF_MAP_UPDATE_ELEM, attr, f"bpf(BPF_MAP_UPDATE_ELEM) of key {key.hex()} in map fd {map_fd}")


def map_delete(map_fd: int, key: bytes) -> None:
    """Remove ``map[key]`` (``BPF_MAP_DELETE_ELEM``); ``FileNotFoundError`` if absent."""
    key_buffer = _bytes_buffer(key, len(key), "key")
    attr = bpf_attr_map_elem(map_fd=map_fd, key=_address(key_buffer))
    _bpf_call(BPF_MAP_DELETE_ELEM, attr, f"bpf(BPF_MAP_DELETE_ELEM) of key {key.hex()} in map fd {map_fd}")


def map_get_next_key(map_fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after ``key`` (the first key for ``None``), or ``None`` after the last one."""
    key_buffer = _bytes_buffer(key, key_size, "key")
    next_buffer = ctypes.create_string_buffer(key_size)
    # The key pointer and the next-key pointer share the union slot named value here.
    attr = bpf_attr_map_elem(map_fd=map_fd, key=_address(key_buffer), value=ctypes.addressof(next_buffer))
    try:
        _bpf_call(BPF_MAP_GET_NEXT_KEY, attr, f"bpf(BPF_MAP_GET_NEXT_KEY) in map fd {map_fd}")
    except FileNotFoundError:
        return None
    return next_buffer.raw


def map_freeze(map_fd: int) -> None:
    """Make a map read-only for user space (``BPF_MAP_FREEZE``); programs may still read it."""
    attr = bpf_attr_map_elem(map_fd=map_fd)
    _bpf_call(BPF_MAP_FREEZE, attr, f"bpf(BPF_MAP_FREEZE) of map fd {map_fd}")


def prog_load(
    prog_type: int,
    instructions: bytes,
    prog_license: str,
    name: str = "",
    expected_attach_type: int = 0,
    prog_flags: int = 0,
) -> int:
    """Load a program (``BPF_PROG_LOAD``); return its fd.

    The first attempt runs without a verifier log, which is cheaper. If the kernel
    rejects the program, it is loaded once more with a log buffer and the rejection is
    raised as ``BPFVerifierError`` carrying the log (or as the first ``OSError`` if the
    kernel wrote no log, which means the problem was not the program's code).
    """
    if not instructions or len(instructions) % _BPF_INSN_SIZE:
        raise ValueError(
            f"BPF program {name!r} must be a non-empty multiple of {_BPF_INSN_SIZE} bytes, "
            f"got {len(instructions)}"
        )
    instruction_buffer = ctypes.create_string_buffer(bytes(instructions), len(instructions))
    license_buffer = ctypes.create_string_buffer(prog_license.encode())
    what = f"bpf(BPF_PROG_LOAD) of program {name!r}"

    def load_attr() -> bpf_attr_prog_load:
        return bpf_attr_prog_load(
            prog_type=prog_type,
            insn_cnt=len(instructions) // _BPF_INSN_SIZE,
            insns=ctypes.addressof(instruction_buffer),
            license=ctypes.addressof(license_buffer),
            prog_flags=prog_flags,
            prog_name=_object_name(name),
            expected_attach_type=expected_attach_type,
        )

    try:
        return _bpf_call(BPF_PROG_LOAD, load_attr(), what)
    except OSError as rejection:
        if rejection.errno in _NOT_A_VERDICT:  # the code was not the problem: no log to fetch
            raise
        first_error = rejection
    log_buffer = ctypes.create_string_buffer(VERIFIER_LOG_SIZE)
    attr = load_attr()
    attr.log_level = _VERIFIER_LOG_LEVEL
    attr.log_size = VERIFIER_LOG_SIZE
    attr.log_buf = ctypes.addressof(log_buffer)
    try:
        return _bpf_call(BPF_PROG_LOAD, attr, what + " with a verifier log")
    except OSError as retry_error:
        log = log_buffer.value.decode("utf-8", errors="replace")
        if not log:
            raise first_error from None
        if retry_error.errno == errno.ENOSPC:
            log = f"[the kernel truncated this log to {VERIFIER_LOG_SIZE} bytes]\n{log}"
        rejection_errno = first_error.errno or errno.EINVAL
        raise BPFVerifierError(
            rejection_errno,
            f"the kernel's verifier rejected BPF program {name!r}: {os.strerror(rejection_errno)}",
            log,
        ) from None


def prog_bind_map(prog_fd: int, map_fd: int) -> None:
    """Make a program hold a map it does not use (``BPF_PROG_BIND_MAP``, kernel >= 5.10).

    The map then lives as long as the program and is among its ``map_ids``: a way to
    leave information next to a program for other processes to find.
    """
    attr = bpf_attr_prog_bind_map(prog_fd=prog_fd, map_fd=map_fd)
    _bpf_call(BPF_PROG_BIND_MAP, attr, f"bpf(BPF_PROG_BIND_MAP) of map fd {map_fd} to program fd {prog_fd}")


def link_create(prog_fd: int, target_ifindex: int, attach_type: int, flags: int = 0) -> int:
    """Attach a program with a BPF link (``BPF_LINK_CREATE``); return the link's fd.

    For XDP (``attach_type=BPF_XDP``) ``flags`` takes ``XDP_FLAGS_SKB_MODE`` or
    ``XDP_FLAGS_DRV_MODE``. The kernel detaches the program when the last fd of the link
    closes.
    """
    attr = bpf_attr_link_create(
        prog_fd=prog_fd, target_ifindex=target_ifindex, attach_type=attach_type, flags=flags
    )
    return _bpf_call(
        BPF_LINK_CREATE,
        attr,
        f"bpf(BPF_LINK_CREATE) of program fd {prog_fd} on ifindex {target_ifindex} "
        f"(attach type {attach_type}, flags {flags:#x})",
    )


def _fd_by_id(command: int, object_id: int, what: str) -> int:
    attr = bpf_attr_get_id(start_id=_u32_argument(object_id, f"{what} id"))
    return _bpf_call(command, attr, f"bpf() opening {what} id {object_id}")


def prog_get_fd_by_id(prog_id: int) -> int:
    """Open a new fd on the program with id ``prog_id``."""
    return _fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id, "BPF program")


def map_get_fd_by_id(map_id: int) -> int:
    """Open a new fd on the map with id ``map_id``."""
    return _fd_by_id(BPF_MAP_GET_FD_BY_ID, map_id, "BPF map")


def link_get_fd_by_id(link_id: int) -> int:
    """Open a new fd on the link with id ``link_id``."""
    return _fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id, "BPF link")


def link_get_next_id(start_id: int) -> int | None:
    """The smallest link id above ``start_id``, or ``None`` when there is none.

    Start from 0 to walk every link on the system.
    """
    attr = bpf_attr_get_id(start_id=_u32_argument(start_id, "link start id"))
    try:
        _bpf_call(BPF_LINK_GET_NEXT_ID, attr, f"bpf(BPF_LINK_GET_NEXT_ID) after id {start_id}")
    except FileNotFoundError:
        return None
    return int(attr.next_id)


# The anonymous inode each kind of BPF fd points at (see /proc/self/fd); a link made by
# BPF_LINK_CREATE is "bpf_link", one reopened by BPF_LINK_GET_FD_BY_ID "bpf-link".
_FD_KIND_BY_INODE = {
    "anon_inode:bpf-prog": "program",
    "anon_inode:bpf-map": "map",
    "anon_inode:bpf_link": "link",
    "anon_inode:bpf-link": "link",
}


def _fd_kind(fd: int) -> str | None:
    """``program``/``map``/``link`` for a BPF fd, ``None`` if /proc cannot tell."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    kind = _FD_KIND_BY_INODE.get(target)
    if kind is None:
        raise ValueError(f"fd {fd} is not a BPF program, map or link (it is {target})")
    return kind


def _require_fd_kind(fd: int, expected: str) -> None:
    kind = _fd_kind(fd)
    if kind is not None and kind != expected:
        raise ValueError(f"fd {fd} is a BPF {kind}, not a BPF {expected}")


def _fill_info(fd: int, info: ctypes.Structure) -> None:
    """``BPF_OBJ_GET_INFO_BY_FD`` into ``info``; the kernel fills what fits."""
    attr = bpf_attr_obj_info(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _bpf_call(BPF_OBJ_GET_INFO_BY_FD, attr, f"bpf(BPF_OBJ_GET_INFO_BY_FD) of fd {fd}")


def prog_get_info_by_fd(prog_fd: int) -> BpfProgInfo:
    """Id, type, name and the ids of the maps a program uses."""
    _require_fd_kind(prog_fd, "program")
    info = bpf_prog_info()
    _fill_info(prog_fd, info)
    map_ids: tuple[int, ...] = ()
    if info.nr_map_ids:
        # A second call with a buffer: the first one only reported how many there are.
        id_buffer = (_u32 * info.nr_map_ids)()
        info = bpf_prog_info(nr_map_ids=len(id_buffer), map_ids=ctypes.addressof(id_buffer))
        _fill_info(prog_fd, info)
        map_ids = tuple(id_buffer[: min(info.nr_map_ids, len(id_buffer))])
    return BpfProgInfo(
        id=info.id, type=info.type, name=info.name.decode("ascii", "replace"), map_ids=map_ids,
        tag=bytes(info.tag),
    )


def map_get_info_by_fd(map_fd: int) -> BpfMapInfo:
    """Id, type, sizes and name of a map."""
    _require_fd_kind(map_fd, "map")
    info = bpf_map_info()
    _fill_info(map_fd, info)
    return BpfMapInfo(
        id=info.id,
        type=info.type,
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        name=info.name.decode("ascii", "replace"),
        map_flags=info.map_flags,
    )


def link_get_info_by_fd(link_fd: int) -> BpfLinkInfo:
    """Id, type and program of a link, and the interface for an XDP link."""
    _require_fd_kind(link_fd, "link")
    info = bpf_link_info()
    _fill_info(link_fd, info)
    return BpfLinkInfo(
        id=info.id,
        type=info.type,
        prog_id=info.prog_id,
        ifindex=info.xdp.ifindex if info.type == BPF_LINK_TYPE_XDP else None,
    )


def obj_get_info_by_fd(fd: int) -> BpfProgInfo | BpfMapInfo | BpfLinkInfo:
    """Information about any BPF fd, chosen by what the fd refers to (needs /proc)."""
    kind = _fd_kind(fd)
    if kind == "program":
        return prog_get_info_by_fd(fd)
    if kind == "map":
        return map_get_info_by_fd(fd)
    if kind == "link":
        return link_get_info_by_fd(fd)
    raise OSError(
        errno.ENOENT,
        f"cannot tell what BPF object fd {fd} refers to without /proc; call "
        "prog_get_info_by_fd, map_get_info_by_fd or link_get_info_by_fd instead",
    )


def prog_test_run(
    prog_fd: int,
    data: bytes,
    repeat: int = 1,
    flags: int = 0,
    batch_size: int = 0,
    ctx_in: bytes | None = None,
) -> tuple[int, int]:
    """Run a program on ``data`` in the kernel (``BPF_PROG_TEST_RUN``).

    Returns ``(retval, duration)``: the program's return value (an XDP action) and the
    average run time in nanoseconds. ``ctx_in`` is a ``struct xdp_md``, e.g.
    ``bytes(xdp_md(data_end=len(data), ingress_ifindex=...))``: the kernel wants
    ``data_end == len(data)``. With ``flags=BPF_F_TEST_XDP_LIVE_FRAMES`` the frames really
    go where the program sends them, ``batch_size`` at a time (0: the kernel's default),
    and the kernel reports no return value (0).
    """
    data_buffer = ctypes.create_string_buffer(bytes(data), len(data))
    ctx_buffer = ctypes.create_string_buffer(bytes(ctx_in), len(ctx_in)) if ctx_in else None
    attr = bpf_attr_test_run(
        prog_fd=prog_fd,
        data_size_in=len(data),
        data_in=ctypes.addressof(data_buffer),
        repeat=_u32_argument(repeat, "repeat"),
        ctx_size_in=len(ctx_in) if ctx_in else 0,
        ctx_in=ctypes.addressof(ctx_buffer) if ctx_buffer is not None else 0,
        flags=flags,
        batch_size=_u32_argument(batch_size, "batch_size"),
    )
    _bpf_call(BPF_PROG_TEST_RUN, attr, f"bpf(BPF_PROG_TEST_RUN) of program fd {prog_fd}")
    return int(attr.retval), int(attr.duration)


def link_fds_of_program(prog_id: int) -> list[int]:
    """This process's fds on BPF links that run program ``prog_id`` (read from /proc).

    The way to find a link fd whose number was lost: an exception (a ``KeyboardInterrupt``
    from a signal handler) can land after ``BPF_LINK_CREATE`` returned and before its
    result was stored anywhere, and a lost link fd keeps the program attached.
    """
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if _FD_KIND_BY_INODE.get(os.readlink(f"/proc/self/fd/{fd}")) != "link":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as fdinfo:
                fields = dict(line.split(":", 1) for line in fdinfo if ":" in line)
        except OSError:
            continue  # closed meanwhile (or the fd listing /proc/self/fd itself)
        if fields.get("prog_id", "").strip() == str(prog_id):
            found.append(fd)
    return found
