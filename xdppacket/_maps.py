"""Python access to a loaded program's maps and global variables.

``LoadedProgram`` is what ``sock.program`` returns: ``.maps[name]`` is a :class:`BpfMap`
(a mutable mapping over ``bpf(BPF_MAP_*_ELEM)``) and ``.global_variables[name]`` reads
and writes one variable of ``.data``, ``.bss`` or ``.rodata`` (read-only).

Keys, values and variables are ``bytes`` of exactly their size; where the object's BTF
says one is an integer (``__u32``, ``int``, an enum, ...), an ``int`` is accepted and
returned instead. A per-CPU map's value is a tuple with one value per possible CPU.

Global variables are read and written in place through an mmap of their section's map
(created ``BPF_F_MMAPABLE``), so writing one variable never rewrites a neighbour that
the program is updating at the same moment.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Union

from . import _bpf
from ._bpf_object import BpfObject, GlobalVariable, MapDefinition, is_data_section
from ._btf import BtfInteger

__all__ = [
    "BpfMap",
    "GlobalVariables",
    "LoadedProgram",
    "MapKey",
    "MapValue",
    "possible_cpu_count",
]

#: A key or a (non-per-CPU) value: bytes, or an int where BTF says it is an integer.
MapKey = Union[bytes, int]
#: What a lookup returns: one value, or one per possible CPU for per-CPU maps.
MapValue = Union[bytes, int, tuple[Union[bytes, int], ...]]

_PER_CPU_TYPES = frozenset(
    {_bpf.BPF_MAP_TYPE_PERCPU_HASH, _bpf.BPF_MAP_TYPE_PERCPU_ARRAY, _bpf.BPF_MAP_TYPE_LRU_PERCPU_HASH}
)
_ARRAY_TYPES = frozenset({_bpf.BPF_MAP_TYPE_ARRAY, _bpf.BPF_MAP_TYPE_PERCPU_ARRAY})
_POSSIBLE_CPUS = "/sys/devices/system/cpu/possible"


@functools.cache
def possible_cpu_count() -> int:
    """How many CPUs may ever exist (``/sys/devices/system/cpu/possible``, e.g. ``0-3``).

    A per-CPU map's value holds one slot per possible CPU, not per online CPU.
    """
    with open(_POSSIBLE_CPUS) as file:
        ranges = file.read().strip()
    return parse_cpu_list(ranges)


def parse_cpu_list(text: str) -> int:
    """The number of CPUs in a kernel CPU list such as ``0-3,8-11`` or ``0``."""
    count = 0
    for part in text.split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def _encode(value: object, size: int, integer: BtfInteger | None, what: str) -> bytes:
    """``value`` as the ``size`` bytes the kernel wants."""
    if isinstance(value, int):
        if integer is None:
            raise TypeError(f"{what} is {size} bytes whose BTF type is not an integer: pass bytes")
        try:
            return value.to_bytes(integer.size, "little", signed=integer.signed)
        except OverflowError:
            kind = "signed" if integer.signed else "unsigned"
            raise ValueError(
                f"{what} is a {kind} {8 * integer.size}-bit integer; {value} does not fit"
            ) from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != size:
            raise ValueError(f"{what} is {size} bytes, got {len(raw)}")
        return raw
    raise TypeError(f"{what} must be bytes or an int, not {type(value).__name__}")


def _decode(raw: bytes, integer: BtfInteger | None) -> bytes | int:
    if integer is None:
        return raw
    return int.from_bytes(raw, "little", signed=integer.signed)


class BpfMap(MutableMapping[MapKey, MapValue]):
    """One map of a loaded program: ``m[key]``, ``m[key] = value``, ``del m[key]``, ``len``.

    Every operation is one or more ``bpf()`` calls on the map's fd, which the
    :class:`LoadedProgram` owns: once it is closed, operations raise ``ValueError``.
    Thread-safe as far as the kernel's map operations are. Iteration walks the keys with
    ``BPF_MAP_GET_NEXT_KEY``: keys the program adds or removes meanwhile may or may not
    be seen.
    """

    def __init__(self, program: LoadedProgram, name: str, info: _bpf.BpfMapInfo,
                 definition: MapDefinition | None) -> None:
        self._program = program
        self.name = name
        self.map_type = info.type
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self._key_integer = definition.key_integer if definition is not None else None
        self._value_integer = definition.value_integer if definition is not None else None

    @property
    def per_cpu(self) -> bool:
        """Whether each key holds one value per possible CPU."""
        return self.map_type in _PER_CPU_TYPES

    def _fd(self) -> int:
        return self._program.map_fd(self.name)

    def _key(self, key: object) -> bytes:
        return _encode(key, self.key_size, self._key_integer, f"a key of map {self.name!r}")

    def _error(self, error: OSError, action: str, key: object) -> OSError:
        return OSError(error.errno, f"{action} key {key!r} of map {self.name!r} failed: {error.strerror}")

    def __getitem__(self, key: MapKey) -> MapValue:
        raw_key = self._key(key)
        slot = (self.value_size + 7) // 8 * 8  # per-CPU values are 8-byte aligned
        cpus = possible_cpu_count() if self.per_cpu else 1
        try:
            raw = _bpf.map_lookup(self._fd(), raw_key, slot * cpus if self.per_cpu else self.value_size)
        except OSError as error:
            raise self._error(error, "reading", key) from error
        if raw is None:
            raise KeyError(key)
        if not self.per_cpu:
            return _decode(raw, self._value_integer)
        return tuple(
            _decode(raw[cpu * slot : cpu * slot + self.value_size], self._value_integer)
            for cpu in range(cpus)
        )

    def __setitem__(self, key: MapKey, value: MapValue) -> None:
        raw_key = self._key(key)
        what = f"a value of map {self.name!r}"
        if self.per_cpu:
            cpus = possible_cpu_count()
            values: Sequence[object] = (
                value if isinstance(value, (tuple, list)) else [value] * cpus
            )
            if len(values) != cpus:
                raise ValueError(
                    f"map {self.name!r} is per-CPU: give one value for all CPUs or {cpus} values "
                    f"(one per possible CPU), not {len(values)}"
                )
            pad = bytes((8 - self.value_size % 8) % 8)
            raw = b"".join(_encode(v, self.value_size, self._value_integer, what) + pad for v in values)
        else:
            raw = _encode(value, self.value_size, self._value_integer, what)
        try:
            _bpf.map_update(self._fd(), raw_key, raw)
        except OSError as error:
            raise self._error(error, "writing", key) from error

    def __delitem__(self, key: MapKey) -> None:
        raw_key = self._key(key)
        if self.map_type in _ARRAY_TYPES:
            raise TypeError(
                f"map {self.name!r} is an array: its entries always exist and cannot be deleted; "
                "set them to zero instead"
            )
        try:
            _bpf.map_delete(self._fd(), raw_key)
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as error:
            raise self._error(error, "deleting", key) from error

    def __iter__(self) -> Iterator[MapKey]:
        raw: bytes | None = None
        while True:
            try:
                raw = _bpf.map_get_next_key(self._fd(), raw, self.key_size)
            except OSError as error:
                raise OSError(error.errno, f"listing the keys of map {self.name!r} failed: "
                                           f"{error.strerror}") from error
            if raw is None:
                return
            yield _decode(raw, self._key_integer)

    def __len__(self) -> int:
        if self.map_type in _ARRAY_TYPES:
            return self.max_entries
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return (f"<BpfMap {self.name!r} type {self.map_type}, key {self.key_size} B, value "
                f"{self.value_size} B, {self.max_entries} entries>")


class GlobalVariables(Mapping[str, Union[bytes, int]]):
    """The global and static variables of a loaded program, by name.

    ``gv[name]`` reads one variable and ``gv[name] = value`` writes it, in the memory the
    program itself uses (an mmap of its section's map), so neither call disturbs the
    variables around it. Variables of ``.rodata`` are read-only: the map is frozen.
    Owned by its :class:`LoadedProgram`, which unmaps everything on close.
    """

    def __init__(self, program: LoadedProgram, variables: Sequence[GlobalVariable]) -> None:
        self._program = program
        self._variables = {variable.name: variable for variable in variables}
        self._mappings: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()  # one mapping per section, whichever thread asks first

    def _memory(self, variable: GlobalVariable) -> mmap.mmap:
        with self._lock:
            return self._mapping_of(variable)

    def _mapping_of(self, variable: GlobalVariable) -> mmap.mmap:
        memory = self._mappings.get(variable.map_name)
        if memory is None:
            fd = self._program.map_fd(variable.map_name)
            info = _bpf.map_get_info_by_fd(fd)
            if not info.map_flags & _bpf.BPF_F_MMAPABLE:
                raise OSError(
                    errno.EOPNOTSUPP,
                    f"global variable {variable.name!r}: its map {variable.map_name!r} was not "
                    "created mmap-able (not loaded by xdppacket?), so it cannot be reached",
                )
            length = -(-((info.value_size + 7) // 8 * 8) // mmap.PAGESIZE) * mmap.PAGESIZE
            protection = mmap.PROT_READ | (0 if variable.read_only else mmap.PROT_WRITE)
            memory = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=protection)
            self._mappings[variable.map_name] = memory
        return memory

    def _variable(self, name: str) -> GlobalVariable:
        self._program.require_open()
        try:
            return self._variables[name]
        except KeyError:
            raise KeyError(
                f"no global variable named {name!r}; the program has {sorted(self._variables)}"
            ) from None

    def __getitem__(self, name: str) -> bytes | int:
        variable = self._variable(name)
        memory = self._memory(variable)
        return _decode(memory[variable.offset : variable.offset + variable.size], variable.integer)

    def reader(self, name: str) -> Callable[[], int]:
        """A function that reads integer variable ``name`` as ``gv[name]`` does, for a hot
        path that polls it: no lookup and no lock per call. Once the program is closed
        the function raises ``ValueError``; it holds no buffer export, so it never keeps
        the section mapped."""
        variable, integer = self._integer_variable(name)
        memory = self._memory(variable)
        start, end, signed = variable.offset, variable.offset + variable.size, integer.signed
        from_bytes = int.from_bytes

        def read() -> int:
            return from_bytes(memory[start:end], "little", signed=signed)

        return read

    def writer(self, name: str) -> Callable[[int], None]:
        """A function that writes integer variable ``name`` as ``gv[name] = value`` does, for
        a hot path: no lookup and no lock per call (one slice assignment, which nothing can
        interrupt halfway). Fails as ``reader``'s function does once the program is closed."""
        variable, integer = self._integer_variable(name)
        if variable.read_only:
            raise TypeError(self._read_only_message(variable))
        memory = self._memory(variable)
        start, end = variable.offset, variable.offset + variable.size
        what = f"global variable {name!r}"

        def write(value: int) -> None:
            memory[start:end] = _encode(value, end - start, integer, what)

        return write

    def _integer_variable(self, name: str) -> tuple[GlobalVariable, BtfInteger]:
        """Variable ``name`` and its integer type, for ``reader`` and ``writer``."""
        variable = self._variable(name)
        if variable.integer is None:
            raise TypeError(f"global variable {name!r} is not an integer")
        return variable, variable.integer

    @staticmethod
    def _read_only_message(variable: GlobalVariable) -> str:
        return (f"global variable {variable.name!r} is in {variable.map_name}, which is read-only once the "
                "program is loaded (frozen with BPF_MAP_FREEZE); make it non-const to change it")

    def __setitem__(self, name: str, value: bytes | int) -> None:
        variable = self._variable(name)
        if variable.read_only:
            raise TypeError(self._read_only_message(variable))
        raw = _encode(value, variable.size, variable.integer, f"global variable {name!r}")
        self._memory(variable)[variable.offset : variable.offset + variable.size] = raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)

    def close(self) -> None:
        """Unmap every section mapped so far."""
        with self._lock:
            for memory in self._mappings.values():
                memory.close()
            self._mappings.clear()

    def __repr__(self) -> str:
        return f"<GlobalVariables {sorted(self._variables)}>"


class LoadedProgram:
    """A loaded XDP program, its maps and its global variables.

    Owns the program's fd and one fd per map from construction until :meth:`close`
    (idempotent; also a context manager), after which every access raises ``ValueError``.
    ``bpf_object`` (the parsed object the program came from, or ``None``) says which keys,
    values and variables are integers, and where each variable lies; the kernel says the
    rest. Thread-safe for map and variable access; close it from one thread.
    """

    def __init__(self, name: str, prog_fd: int, map_fds: Mapping[str, int],
                 bpf_object: BpfObject | None) -> None:
        self.name = name
        self._prog_fd: int | None = prog_fd
        self._map_fds = dict(map_fds)
        definitions = {d.name: d for d in bpf_object.maps} if bpf_object is not None else {}
        # A map found through the kernel is known by its kernel name (at most 15 bytes).
        by_kernel_name = {_bpf.kernel_object_name(name): d for name, d in definitions.items()}
        maps = {}
        for map_name, fd in self._map_fds.items():
            if is_data_section(map_name):
                continue
            definition = definitions.get(map_name) or by_kernel_name.get(map_name)
            maps[map_name] = BpfMap(self, map_name, _bpf.map_get_info_by_fd(fd), definition)
        self._maps: Mapping[str, BpfMap] = MappingProxyType(maps)
        variables = bpf_object.global_variables if bpf_object is not None else ()
        self._global_variables = GlobalVariables(self, variables)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._prog_fd is None

    def require_open(self) -> None:
        """Raise ``ValueError`` once closed: the fds may already name other files."""
        if self._prog_fd is None:
            raise ValueError(f"XDP program {self.name!r} is closed (its sockets were closed)")

    @property
    def prog_fd(self) -> int:
        """The program's fd."""
        self.require_open()
        assert self._prog_fd is not None
        return self._prog_fd

    def map_fd(self, name: str) -> int:
        """The fd of map ``name`` (a map's or a data section's name, or its kernel name)."""
        self.require_open()
        fd = self._map_fds.get(name)
        if fd is None:
            fd = self._map_fds.get(_bpf.kernel_object_name(name))
        if fd is None:
            raise KeyError(f"XDP program {self.name!r} has no map named {name!r}; "
                           f"it has {sorted(self._map_fds)}")
        return fd

    @property
    def maps(self) -> Mapping[str, BpfMap]:
        """The maps the program's source declares, by name (global data sections excluded)."""
        self.require_open()
        return self._maps

    @property
    def global_variables(self) -> GlobalVariables:
        """The program's global and static variables, by name."""
        self.require_open()
        return self._global_variables

    def close(self) -> None:
        """Unmap the variables, close every map fd and the program fd; raise the first error."""
        if self._prog_fd is None:
            return
        self._global_variables.close()
        fds = [*self._map_fds.values(), self._prog_fd]
        self._prog_fd = None
        first_error: OSError | None = None
        for fd in fds:
            try:
                os.close(fd)
            except OSError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    def __enter__(self) -> LoadedProgram:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._prog_fd is None else f"maps {sorted(self._maps)}"
        return f"<LoadedProgram {self.name!r} {state}>"

