"""xdppacket's own BPF object loader: no libbpf, just the ELF and BTF parsers and bpf(2).

:meth:`BpfObject.parse` is pure: it finds the XDP programs, the license, the map
definitions (BTF ``.maps`` or a legacy ``maps`` section), the global variables and the
relocations. :meth:`BpfObject.load` then creates the maps, patches the program's map
references with the new map fds and loads it, as libbpf would:

* global variables: each of ``.data``, ``.bss`` and ``.rodata`` (and their ``.name``
  variants) becomes an array map of one element holding the section, created
  mmap-able so user space can reach one variable without rewriting its neighbours;
  ``.rodata`` is frozen (``BPF_MAP_FREEZE``) and read-only for the program, so the
  verifier may treat it as constant. A reference to a variable loads its address
  (``BPF_PSEUDO_MAP_VALUE`` with the variable's offset).
* several programs in one object: one is chosen by name.
* ``SEC("xdp.frags")``: loaded with ``BPF_F_XDP_HAS_FRAGS`` (multi-buffer frames).
* a prologue (a capture filter, see ``xdppacket.filter``) may go in front of the chosen
  program: its references then move down by the prologue's length. Jumps and bpf-to-bpf
  calls are relative and need no change, and the loader passes the kernel no BTF
  function or line info that would.

Anything else (calls to non-inlined functions, externs) is refused at parse time with a
message saying how to change the program.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from types import TracebackType

from . import _bpf
from ._btf import Btf, BtfInteger, datasec_variables, parse_map_definitions
from ._elf import (
    SHN_LORESERVE,
    SHT_NOBITS,
    SHT_PROGBITS,
    STT_FUNC,
    STT_OBJECT,
    STT_SECTION,
    ElfFile,
    ElfRelocation,
    ElfSection,
    ElfSymbol,
)
from .errors import BPFVerifierError

__all__ = [
    "SHIPPED_COMPAT_PROGRAM",
    "SHIPPED_FRAGS_PROGRAM",
    "SHIPPED_OBJECT_NAME",
    "SHIPPED_PROGRAM",
    "XSKS_MAP_NAME",
    "BpfObject",
    "BpfProgram",
    "GlobalVariable",
    "LoadedBpfObject",
    "MapDefinition",
    "MapRelocation",
    "is_data_section",
    "load_xsk_program",
    "read_bpf_object",
    "relocate",
]

#: The XDP program built from ebpf/xdpsock_kern.c, shipped inside the package.
SHIPPED_OBJECT_NAME = "xdpsock_kern.o"
#: The shipped object's programs: the plain one, and the frags-aware one OptMultiBuffer runs.
#: Both write a pcap record header in front of each frame (``_pcap_records``).
SHIPPED_PROGRAM = "xdp_sock_prog"
SHIPPED_FRAGS_PROGRAM = "xdp_sock_prog_frags"
#: What is loaded instead of SHIPPED_PROGRAM where the kernel refuses it (before Linux 5.18, no
#: bpf_xdp_get_buff_len): the same metadata with the pcap record lengths left zero.
SHIPPED_COMPAT_PROGRAM = "xdp_sock_compat"
#: The XSKMAP every program used with xdppacket must declare: rx queue -> AF_XDP socket.
XSKS_MAP_NAME = "xsks_map"

# BPF relocation types (llvm's ELFRelocs/BPF.def).
R_BPF_64_64 = 1  # ld_imm64 of a symbol's address: a map reference
R_BPF_64_32 = 10  # call to a function: a bpf-to-bpf call

# Instruction encoding (include/uapi/linux/bpf_common.h, bpf.h).
_INSN_SIZE = 8
_INSN = struct.Struct("<BBhi")  # code, dst_reg:4 | src_reg:4, off, imm
_BPF_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW, two instruction slots
_BPF_CALL = 0x85  # BPF_JMP | BPF_CALL
_BPF_PSEUDO_CALL = 1  # call src_reg: imm is a relative instruction offset

_LEGACY_MAP_DEF = struct.Struct("<5I")  # struct bpf_map_def: type, key/value size, entries, flags
_BTF_MAPS_SECTION = ".maps"
_LEGACY_MAPS_SECTION = "maps"
_GLOBAL_DATA_SECTIONS = (".data", ".rodata", ".bss")
_READ_ONLY_DATA_SECTION = ".rodata"
_FRAGS_SECTION = "xdp.frags"
_INLINE_ADVICE = (
    "xdppacket's loader supports single-function programs: mark helper functions "
    "'static __always_inline'"
)


def _is_xdp_section(name: str) -> bool:
    return name == "xdp" or name.startswith(("xdp/", "xdp."))


def is_data_section(name: str) -> bool:
    """``.data``, ``.bss``, ``.rodata`` and their variants (``.rodata.str1.1``, ``.data.mine``)."""
    return any(name == base or name.startswith(base + ".") for base in _GLOBAL_DATA_SECTIONS)


@dataclass(frozen=True)
class MapDefinition:
    """A map the object declares; ``section_index``/``offset`` locate its definition."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    section_index: int
    offset: int
    #: Where BTF says the key or value is an integer (Python then reads and writes ``int``).
    key_integer: BtfInteger | None = None
    value_integer: BtfInteger | None = None
    #: A global data section's map: its one value, set before the program loads.
    initial_value: bytes | None = None
    #: ``.rodata``: frozen once set, so neither user space nor the program can change it.
    read_only: bool = False

    @property
    def holds_global_variables(self) -> bool:
        """Whether this map is a global data section rather than a map the source declares."""
        return self.initial_value is not None


@dataclass(frozen=True)
class GlobalVariable:
    """A global or static variable: ``size`` bytes at ``offset`` of map ``map_name``'s value."""

    name: str
    map_name: str
    offset: int
    size: int
    integer: BtfInteger | None
    read_only: bool


@dataclass(frozen=True)
class MapRelocation:
    """The ``ld_imm64`` at ``instruction_index`` must load map ``map_name``.

    ``value_offset`` None: the map itself (its fd, ``BPF_PSEUDO_MAP_FD``); otherwise the
    address of that byte of the map's value (a global variable, ``BPF_PSEUDO_MAP_VALUE``).
    """

    instruction_index: int
    map_name: str
    value_offset: int | None = None


@dataclass(frozen=True)
class BpfProgram:
    """One XDP program of the object: its instructions before relocation."""

    name: str
    section_name: str
    instructions: bytes
    map_relocations: tuple[MapRelocation, ...]

    @property
    def frags(self) -> bool:
        """Whether the program handles multi-buffer frames (``SEC("xdp.frags")``)."""
        return self.section_name == _FRAGS_SECTION or self.section_name.startswith(_FRAGS_SECTION + "/")

    @property
    def instruction_count(self) -> int:
        """Instruction slots (an ``ld_imm64`` takes two)."""
        return len(self.instructions) // _INSN_SIZE

    def with_prologue(self, prologue: bytes) -> BpfProgram:
        """This program with ``prologue`` in front: it runs first and falls through to it.

        The prologue must use no maps and keep its jumps inside itself (as a compiled
        ``CompiledFilter`` does); the program's map references move down by its length.
        """
        if len(prologue) % _INSN_SIZE:
            raise ValueError(
                f"a prologue must be whole {_INSN_SIZE}-byte BPF instructions, got {len(prologue)} bytes"
            )
        shift = len(prologue) // _INSN_SIZE
        relocations = tuple(
            replace(relocation, instruction_index=relocation.instruction_index + shift)
            for relocation in self.map_relocations
        )
        return replace(self, instructions=prologue + self.instructions, map_relocations=relocations)


def relocate(
    instructions: bytes, relocations: Iterable[MapRelocation], map_fds: Mapping[str, int]
) -> bytes:
    """A copy of ``instructions`` whose map references load the given map fds.

    Each relocated ``ld_imm64`` keeps its destination register and gets the map fd in its
    first immediate, with ``src_reg = BPF_PSEUDO_MAP_FD`` (the map) or
    ``BPF_PSEUDO_MAP_VALUE`` and the value offset in its second immediate (a variable).
    """
    patched = bytearray(instructions)
    for relocation in relocations:
        at = relocation.instruction_index * _INSN_SIZE
        code, registers, offset, _imm = _INSN.unpack_from(patched, at)
        if code != _BPF_LD_IMM64 or at + 2 * _INSN_SIZE > len(patched):
            raise ValueError(
                f"instruction {relocation.instruction_index} is not an ld_imm64; "
                f"cannot make it load map {relocation.map_name!r}"
            )
        if relocation.value_offset is None:
            pseudo, second_immediate = _bpf.BPF_PSEUDO_MAP_FD, 0
        else:
            pseudo, second_immediate = _bpf.BPF_PSEUDO_MAP_VALUE, relocation.value_offset
        registers = (registers & 0x0F) | (pseudo << 4)
        _INSN.pack_into(patched, at, code, registers, offset, map_fds[relocation.map_name])
        struct.pack_into("<i", patched, at + _INSN_SIZE + 4, second_immediate)
    return bytes(patched)


class LoadedBpfObject:
    """A loaded XDP program and the maps created for it.

    Owns ``prog_fd`` and every fd in ``map_fds`` from :meth:`BpfObject.load` until
    :meth:`close` (idempotent; also a context manager). The kernel keeps the program
    and maps alive while any fd (for example a BPF link's) still refers to them. Not
    thread-safe: close it from one thread.
    """

    __slots__ = ("_map_fds", "_prog_fd", "bpf_object", "program_name")

    def __init__(self, program_name: str, prog_fd: int, map_fds: Mapping[str, int],
                 bpf_object: BpfObject) -> None:
        self.program_name = program_name
        #: What was loaded: the parsed object (maps' key/value types, global variables).
        self.bpf_object = bpf_object
        self._prog_fd: int | None = prog_fd
        self._map_fds = dict(map_fds)

    @property
    def prog_fd(self) -> int:
        """The program's fd (for ``link_create``); ``ValueError`` once closed."""
        if self._prog_fd is None:
            raise ValueError(f"BPF program {self.program_name!r} is closed")
        return self._prog_fd

    @property
    def map_fds(self) -> dict[str, int]:
        """Map name -> fd, for every map of the object; ``ValueError`` once closed."""
        if self._prog_fd is None:
            raise ValueError(f"BPF program {self.program_name!r} is closed")
        return dict(self._map_fds)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`take_fds` has run."""
        return self._prog_fd is None

    def take_fds(self) -> tuple[int, dict[str, int]]:
        """Hand the program's fd and the map fds over to the caller, who closes them.

        Afterwards this object is closed and :meth:`close` does nothing.
        """
        prog_fd, map_fds = self.prog_fd, self._map_fds
        self._prog_fd = None
        self._map_fds = {}
        return prog_fd, map_fds

    def close(self) -> None:
        """Close the program's and the maps' fds; a second call does nothing."""
        if self._prog_fd is None:
            return
        fds = [self._prog_fd, *self._map_fds.values()]
        self._prog_fd = None
        self._map_fds = {}
        first_error = _close_all(fds)
        if first_error is not None:
            raise first_error

    def __enter__(self) -> LoadedBpfObject:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._prog_fd is None:
            return f"<LoadedBpfObject {self.program_name!r} closed>"
        return (
            f"<LoadedBpfObject {self.program_name!r} prog_fd={self._prog_fd} "
            f"map_fds={self._map_fds}>"
        )


def _close_all(fds: Iterable[int]) -> OSError | None:
    """Close every fd even if one fails; return the first failure."""
    first_error: OSError | None = None
    for fd in fds:
        try:
            os.close(fd)
        except OSError as err:
            first_error = first_error or err
    return first_error


@dataclass(frozen=True)
class BpfObject:
    """The parsed contents of a BPF ELF object: XDP programs, maps, global variables, license.

    ``maps`` includes one map per global data section (``holds_global_variables``).
    """

    programs: tuple[BpfProgram, ...]
    maps: tuple[MapDefinition, ...]
    license: str
    global_variables: tuple[GlobalVariable, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> BpfObject:
        """Parse an object built with ``clang -target bpf``; ``ValueError`` if unusable."""
        elf = ElfFile.parse(data)
        symbols = elf.symbols()
        if not symbols:
            raise ValueError(
                "the BPF object has no symbol table; do not strip it (llvm-strip -g "
                "is fine, it keeps the symbols)"
            )
        btf_section = elf.section_by_name(".BTF")
        btf = Btf.parse(btf_section.data) if btf_section is not None else None
        data_maps, variables = _global_data(elf, symbols, btf)
        maps = _btf_maps(elf, symbols, btf) + _legacy_maps(elf, symbols) + data_maps
        names = [definition.name for definition in maps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"the BPF object declares map(s) {duplicates} more than once")
        programs = _xdp_programs(elf, symbols, maps)
        return cls(programs=programs, maps=maps, license=_license(elf), global_variables=variables)

    def map(self, name: str) -> MapDefinition:
        """The map called ``name``; ``KeyError`` naming the maps there are otherwise."""
        for definition in self.maps:
            if definition.name == name:
                return definition
        raise KeyError(
            f"no map named {name!r}; the object declares "
            f"{[definition.name for definition in self.maps]}"
        )

    def program(self, name: str | None = None) -> BpfProgram:
        """The program called ``name`` (function or section name), or the only one."""
        if name is None:
            if len(self.programs) > 1:
                raise ValueError(
                    "the BPF object has several XDP programs "
                    f"{[program.name for program in self.programs]}; choose one by name"
                )
            return self.programs[0]
        for program in self.programs:
            if name in (program.name, program.section_name):
                return program
        raise ValueError(
            f"no XDP program named {name!r}; the object has "
            f"{[program.name for program in self.programs]}"
        )

    def load(
        self,
        max_entries_overrides: Mapping[str, int] | None = None,
        program_name: str | None = None,
        prologue: bytes = b"",
        frags_prologue: bytes | None = None,
    ) -> LoadedBpfObject:
        """Create every map, relocate and load the XDP program; the caller owns the result.

        ``max_entries_overrides`` resizes maps by name. ``prologue`` (see
        :meth:`BpfProgram.with_prologue`) runs in front of the program; ``frags_prologue``
        instead, where given, in front of a frags-aware one. Global data maps get their section's
        contents, and ``.rodata`` is frozen, before the program loads. If anything fails part
        way, every fd created so far is closed before the error propagates.
        """
        chosen = self.program(program_name)
        program = chosen.with_prologue(frags_prologue if chosen.frags and frags_prologue is not None else prologue)
        overrides = dict(max_entries_overrides or {})
        unknown = sorted(set(overrides) - {definition.name for definition in self.maps})
        if unknown:
            raise ValueError(
                f"max_entries_overrides names unknown map(s) {unknown}; the object "
                f"declares {[definition.name for definition in self.maps]}"
            )
        for name, entries in overrides.items():
            if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
                raise ValueError(
                    f"max_entries for map {name!r} must be a positive int, got {entries!r}"
                )
        map_fds: dict[str, int] = {}
        try:
            for definition in self.maps:
                map_fds[definition.name] = _bpf.map_create(
                    definition.map_type,
                    definition.key_size,
                    definition.value_size,
                    overrides.get(definition.name, definition.max_entries),
                    definition.name,
                    definition.map_flags,
                )
                if definition.initial_value is not None:
                    _bpf.map_update(map_fds[definition.name], bytes(4), definition.initial_value)
                if definition.read_only:
                    _bpf.map_freeze(map_fds[definition.name])
            instructions = relocate(program.instructions, program.map_relocations, map_fds)
            prog_fd = _bpf.prog_load(
                _bpf.BPF_PROG_TYPE_XDP,
                instructions,
                self.license,
                name=program.name,
                expected_attach_type=_bpf.BPF_XDP,
                prog_flags=_bpf.BPF_F_XDP_HAS_FRAGS if program.frags else 0,
            )
        except BaseException:
            _close_all(map_fds.values())  # the load's own error is the one worth reporting
            raise
        return LoadedBpfObject(program.name, prog_fd, map_fds, self)


def _license(elf: ElfFile) -> str:
    section = elf.section_by_name("license")
    if section is None or not section.data:
        raise ValueError(
            'the BPF object has no license; add: char _license[] SEC("license") = "GPL";'
        )
    return section.data.split(b"\0", 1)[0].decode("ascii", errors="replace")


def _symbols_in(symbols: Iterable[ElfSymbol], section: ElfSection) -> list[ElfSymbol]:
    """Named, non-section symbols defined in ``section``, in address order."""
    return sorted(
        (
            s
            for s in symbols
            if s.section_index == section.index and s.name and s.type != STT_SECTION
        ),
        key=lambda s: s.value,
    )


def _btf_maps(
    elf: ElfFile, symbols: tuple[ElfSymbol, ...], btf: Btf | None
) -> tuple[MapDefinition, ...]:
    section = elf.section_by_name(_BTF_MAPS_SECTION)
    if section is None:
        return ()
    if btf is None:
        raise ValueError(
            "the BPF object has a .maps section but no .BTF section to describe it; "
            "build with clang -g"
        )
    offsets = {symbol.name: symbol.value for symbol in _symbols_in(symbols, section)}
    definitions = []
    for btf_map in parse_map_definitions(btf, _BTF_MAPS_SECTION):
        if btf_map.name not in offsets:
            raise ValueError(f"map {btf_map.name!r} is in the .maps BTF but has no ELF symbol")
        definitions.append(
            MapDefinition(
                name=btf_map.name,
                map_type=btf_map.map_type,
                key_size=btf_map.key_size,
                value_size=btf_map.value_size,
                max_entries=btf_map.max_entries,
                map_flags=btf_map.map_flags,
                section_index=section.index,
                offset=offsets[btf_map.name],
                key_integer=btf_map.key_integer,
                value_integer=btf_map.value_integer,
            )
        )
    return tuple(definitions)


def _global_data(
    elf: ElfFile, symbols: tuple[ElfSymbol, ...], btf: Btf | None
) -> tuple[tuple[MapDefinition, ...], tuple[GlobalVariable, ...]]:
    """One array map per non-empty global data section, and the variables each holds.

    Variables come from the section's BTF DATASEC (which says which are integers), or
    from the ELF symbols when the object has no BTF.
    """
    maps: list[MapDefinition] = []
    variables: list[GlobalVariable] = []
    for section in elf.sections:
        if section.type not in (SHT_PROGBITS, SHT_NOBITS) or not is_data_section(section.name):
            continue
        if section.size == 0:
            continue
        read_only = section.name.startswith(_READ_ONLY_DATA_SECTION)
        flags = _bpf.BPF_F_MMAPABLE | (_bpf.BPF_F_RDONLY_PROG if read_only else 0)
        contents = section.data if section.type == SHT_PROGBITS else bytes(section.size)
        maps.append(
            MapDefinition(
                name=section.name,
                map_type=_bpf.BPF_MAP_TYPE_ARRAY,
                key_size=4,
                value_size=section.size,
                max_entries=1,
                map_flags=flags,
                section_index=section.index,
                offset=0,
                initial_value=contents,
                read_only=read_only,
            )
        )
        # Where a variable lies: its ELF symbol says (clang leaves the DATASEC offsets 0 in
        # objects, for the loader to fill in); BTF says what it is.
        in_section = {sym.name: sym for sym in _symbols_in(symbols, section) if sym.type == STT_OBJECT}
        described = datasec_variables(btf, section.name) if btf is not None else ()
        if described:
            found = [
                (v.name, in_section[v.name].value if v.name in in_section else v.offset, v.size,
                 v.integer)
                for v in described
            ]
        else:
            found = [(sym.name, sym.value, sym.size, None) for sym in in_section.values() if sym.size]
        for name, offset, size, integer in found:
            if offset + size > section.size:
                raise ValueError(
                    f"global variable {name!r} runs past the end of section {section.name!r}"
                )
            variables.append(GlobalVariable(name, section.name, offset, size, integer, read_only))
    names = [variable.name for variable in variables]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"the BPF object has several global variables named {duplicates} (static variables "
            "of different functions?); give them distinct names"
        )
    return tuple(maps), tuple(variables)


def _legacy_maps(elf: ElfFile, symbols: tuple[ElfSymbol, ...]) -> tuple[MapDefinition, ...]:
    """Maps from a ``maps`` section of ``struct bpf_map_def``, named by their symbols."""
    section = elf.section_by_name(_LEGACY_MAPS_SECTION)
    if section is None:
        return ()
    definitions = []
    for symbol in _symbols_in(symbols, section):
        end = symbol.value + _LEGACY_MAP_DEF.size
        if end > len(section.data):
            raise ValueError(f"legacy map {symbol.name!r} runs past the end of the maps section")
        extra = section.data[end : symbol.value + symbol.size]
        if any(extra):
            raise ValueError(
                f"legacy map {symbol.name!r} sets fields beyond struct bpf_map_def's type, "
                "key_size, value_size, max_entries and map_flags, which xdppacket does not support"
            )
        map_type, key_size, value_size, max_entries, map_flags = _LEGACY_MAP_DEF.unpack_from(
            section.data, symbol.value
        )
        definitions.append(
            MapDefinition(
                name=symbol.name,
                map_type=map_type,
                key_size=key_size,
                value_size=value_size,
                max_entries=max_entries,
                map_flags=map_flags,
                section_index=section.index,
                offset=symbol.value,
            )
        )
    return tuple(definitions)


def _xdp_programs(
    elf: ElfFile, symbols: tuple[ElfSymbol, ...], maps: tuple[MapDefinition, ...]
) -> tuple[BpfProgram, ...]:
    programs: list[BpfProgram] = []
    for section in elf.sections:
        if section.type != SHT_PROGBITS or not _is_xdp_section(section.name) or not section.data:
            continue
        if len(section.data) % _INSN_SIZE:
            raise ValueError(f"section {section.name!r} is not a whole number of BPF instructions")
        relocations = _relocations_of(elf, section)
        functions = [s for s in _symbols_in(symbols, section) if s.type == STT_FUNC and s.size]
        for function in functions:
            _check_function_bounds(function, section)
        # An object without function symbols holds one program spanning the section.
        spans = [(f.name, f.value, f.value + f.size) for f in functions] or [
            (section.name, 0, len(section.data))
        ]
        for name, start, end in spans:
            map_relocations = tuple(
                _map_relocation(elf, section, symbols, maps, relocation, start)
                for relocation in relocations
                if start <= relocation.offset < end
            )
            instructions = section.data[start:end]
            _check_calls_stay_inside(name, instructions)
            programs.append(BpfProgram(name, section.name, instructions, map_relocations))
    if not programs:
        raise ValueError(
            "the BPF object has no XDP program: expected code in a section named 'xdp' "
            "(or starting with 'xdp/' or 'xdp.'), e.g. SEC(\"xdp\")"
        )
    return tuple(programs)


def _check_function_bounds(function: ElfSymbol, section: ElfSection) -> None:
    """A function symbol must cover whole instructions inside its section."""
    if function.value % _INSN_SIZE or function.size % _INSN_SIZE:
        raise ValueError(
            f"function {function.name!r} in section {section.name!r} starts at byte "
            f"{function.value} and is {function.size} bytes long: not whole {_INSN_SIZE}-byte "
            "BPF instructions (a corrupt object)"
        )
    if function.value + function.size > len(section.data):
        raise ValueError(
            f"function {function.name!r} runs past the end of section {section.name!r} "
            f"({function.value} + {function.size} > {len(section.data)} bytes; a corrupt object)"
        )


def _relocations_of(elf: ElfFile, section: ElfSection) -> list[ElfRelocation]:
    """Every relocation that patches ``section``."""
    found: list[ElfRelocation] = []
    for relocation_section in elf.relocation_sections():
        if relocation_section.info == section.index:
            found.extend(elf.relocations(relocation_section))
    return found


def _map_relocation(
    elf: ElfFile,
    section: ElfSection,
    symbols: tuple[ElfSymbol, ...],
    maps: tuple[MapDefinition, ...],
    relocation: ElfRelocation,
    program_start: int,
) -> MapRelocation:
    """Turn one ELF relocation into a map reference, or explain why it is unsupported."""
    offset, where = relocation.offset, f"{section.name}+{relocation.offset:#x}"
    if relocation.symbol_index >= len(symbols):
        raise ValueError(f"relocation at {where} names missing symbol {relocation.symbol_index}")
    symbol = symbols[relocation.symbol_index]
    if relocation.type == R_BPF_64_32:
        raise ValueError(f"{where} calls function {symbol.name!r}; {_INLINE_ADVICE}")
    if relocation.type != R_BPF_64_64:
        raise ValueError(
            f"{where}: relocation type {relocation.type} is not supported "
            "(only map references, R_BPF_64_64)"
        )
    if offset % _INSN_SIZE or offset + 2 * _INSN_SIZE > len(section.data):
        raise ValueError(f"{where}: relocation does not point at a whole ld_imm64 instruction")
    code, _registers, _off, imm = _INSN.unpack_from(section.data, offset)
    if code != _BPF_LD_IMM64:
        raise ValueError(
            f"{where}: relocation against {symbol.name!r} is on opcode {code:#x}, "
            "not on an ld_imm64 (0x18)"
        )
    if symbol.section_index == 0:
        raise ValueError(
            f"{where} refers to undefined (extern) symbol {symbol.name!r}, "
            "which xdppacket's loader does not support; define it in the program"
        )
    target_section = (
        elf.section(symbol.section_index) if symbol.section_index < SHN_LORESERVE else None
    )
    target_name = target_section.name if target_section else f"special index {symbol.section_index}"
    instruction_index = (offset - program_start) // _INSN_SIZE
    if target_section is not None and is_data_section(target_section.name):
        # A variable's address: the symbol's offset in its section, plus the immediate
        # (which holds the offset when the relocation names the section symbol).
        if not 0 <= symbol.value + imm < max(target_section.size, 1):
            raise ValueError(f"{where} points outside section {target_name!r}")
        return MapRelocation(instruction_index, target_section.name, symbol.value + imm)
    # A section symbol carries the map's offset in the instruction's immediate.
    map_offset = symbol.value + (imm if symbol.type == STT_SECTION else 0)
    for definition in maps:
        if definition.section_index == symbol.section_index and definition.offset == map_offset:
            return MapRelocation(instruction_index, definition.name)
    if target_section is not None and target_section.is_executable:
        raise ValueError(f"{where} takes the address of function {symbol.name!r}; {_INLINE_ADVICE}")
    raise ValueError(
        f"{where} refers to {symbol.name!r} in section {target_name!r}, "
        "which is not a map xdppacket knows"
    )


def _check_calls_stay_inside(name: str, instructions: bytes) -> None:
    """Refuse bpf-to-bpf calls that leave the program: they need a linker we do not have."""
    count = len(instructions) // _INSN_SIZE
    for index in range(count):
        code, registers, _off, imm = _INSN.unpack_from(instructions, index * _INSN_SIZE)
        if code == _BPF_CALL and registers >> 4 == _BPF_PSEUDO_CALL:
            target = index + 1 + imm
            if not 0 <= target < count:
                raise ValueError(
                    f"program {name!r} calls a function outside itself at instruction {index}; "
                    f"{_INLINE_ADVICE}"
                )


def _read_object_name(path: str | os.PathLike[str] | None) -> str:
    """How to name the object in messages."""
    return f"xdppacket's shipped {SHIPPED_OBJECT_NAME}" if path is None else os.fspath(path)


def _read_object(path: str | os.PathLike[str] | None) -> tuple[bytes, str]:
    """The object's bytes and how to name it in messages."""
    if path is None:
        shipped = resources.files(__package__ or "xdppacket").joinpath(SHIPPED_OBJECT_NAME)
        return shipped.read_bytes(), _read_object_name(path)
    return Path(path).read_bytes(), _read_object_name(path)


def read_bpf_object(path: str | os.PathLike[str] | None) -> BpfObject:
    """Parse the object at ``path`` (None: the shipped one); a ``ValueError`` names the file."""
    data, source = _read_object(path)
    try:
        return BpfObject.parse(data)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def load_xsk_program(
    path: str | os.PathLike[str] | None,
    queue_count: int,
    program_name: str | None = None,
    prologue: bytes = b"",
    frags_prologue: bytes | None = None,
) -> LoadedBpfObject:
    """Load an XDP program for AF_XDP sockets with its ``xsks_map`` sized to ``queue_count``.

    ``path=None`` loads the program shipped with xdppacket (its plain one unless
    ``program_name`` says ``SHIPPED_FRAGS_PROGRAM``); ``prologue`` (a capture
    filter's instructions) runs in front of it, or ``frags_prologue`` in front of a
    frags-aware program (see ``CompiledFilter.frags_instructions``). A user's object must
    declare an XSKMAP named ``xsks_map`` with u32 keys and values (see
    ebpf/xdpsock_kern.c). The caller owns the result and closes it.
    """
    if isinstance(queue_count, bool) or not isinstance(queue_count, int):
        raise TypeError(f"queue_count must be an int, got {type(queue_count).__name__}")
    if queue_count < 1:
        raise ValueError(f"queue_count must be at least 1, got {queue_count}")
    bpf_object = read_bpf_object(path)
    source = _read_object_name(path)
    if path is None and program_name is None:
        program_name = SHIPPED_PROGRAM
    try:
        xsks_map = bpf_object.map(XSKS_MAP_NAME)
    except KeyError:
        raise ValueError(
            f"{source} declares no map named {XSKS_MAP_NAME!r}; an XDP program for xdppacket "
            f"must redirect through an XSKMAP called {XSKS_MAP_NAME} (see ebpf/xdpsock_kern.c)"
        ) from None
    if xsks_map.map_type != _bpf.BPF_MAP_TYPE_XSKMAP:
        raise ValueError(
            f"{source}: map {XSKS_MAP_NAME!r} has type {xsks_map.map_type}, expected "
            f"BPF_MAP_TYPE_XSKMAP ({_bpf.BPF_MAP_TYPE_XSKMAP})"
        )
    if (xsks_map.key_size, xsks_map.value_size) != (4, 4):
        raise ValueError(
            f"{source}: map {XSKS_MAP_NAME!r} has {xsks_map.key_size}-byte keys and "
            f"{xsks_map.value_size}-byte values; declare both as __u32"
        )
    try:
        try:
            return bpf_object.load({XSKS_MAP_NAME: queue_count}, program_name, prologue, frags_prologue)
        except BPFVerifierError as refused:
            if path is not None or program_name != SHIPPED_PROGRAM:
                raise
            # An older kernel: the program without the record lengths' helper. If the kernel
            # refuses that too (a filter it cannot take), the first refusal says why.
            try:
                return bpf_object.load({XSKS_MAP_NAME: queue_count}, SHIPPED_COMPAT_PROGRAM, prologue)
            except BPFVerifierError:
                raise refused from None
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
