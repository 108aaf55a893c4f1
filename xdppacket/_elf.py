"""A small parser for the ELF64 little-endian relocatable objects clang emits for BPF.

Pure: it works on bytes and does no I/O, so it is tested with hand-built objects.
It reads only what a BPF loader needs (section headers and names, the symbol table,
``REL`` relocation sections and raw section contents) and rejects anything else with
a ``ValueError`` that names the problem.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "EM_BPF",
    "SHF_EXECINSTR",
    "SHN_LORESERVE",
    "SHT_NOBITS",
    "SHT_PROGBITS",
    "SHT_REL",
    "SHT_RELA",
    "SHT_STRTAB",
    "SHT_SYMTAB",
    "STB_GLOBAL",
    "STT_FUNC",
    "STT_OBJECT",
    "STT_SECTION",
    "ElfFile",
    "ElfRelocation",
    "ElfSection",
    "ElfSymbol",
]

# e_ident fields and header values (include/uapi/linux/elf.h).
_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_EV_CURRENT = 1
_ET_REL = 1
EM_BPF = 247

# Section header types and flags.
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHF_EXECINSTR = 0x4

# Symbol binding and type (the high and low nibble of st_info).
STB_GLOBAL = 1
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3

# Special section indexes: below SHN_LORESERVE an index names a real section.
SHN_LORESERVE = 0xFF00

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, 64 bytes
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr, 64 bytes
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym, 24 bytes
_REL = struct.Struct("<QQ")  # Elf64_Rel, 16 bytes


@dataclass(frozen=True)
class ElfSection:
    """One section header, its resolved name and its bytes (empty for ``SHT_NOBITS``)."""

    index: int
    name: str
    type: int
    flags: int
    size: int
    link: int
    info: int
    entsize: int
    data: bytes

    @property
    def is_executable(self) -> bool:
        """Whether the section holds code (``SHF_EXECINSTR``)."""
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class ElfSymbol:
    """One ``Elf64_Sym`` with its name resolved; ``section_index`` is ``st_shndx``."""

    index: int
    name: str
    value: int
    size: int
    binding: int
    type: int
    section_index: int


@dataclass(frozen=True)
class ElfRelocation:
    """One ``Elf64_Rel``: patch ``offset`` in the target section against ``symbol_index``."""

    offset: int
    symbol_index: int
    type: int


def _c_string(table: bytes, offset: int, what: str) -> str:
    """Read the NUL-terminated name at ``offset`` of a string table."""
    if offset >= len(table):
        raise ValueError(f"ELF {what} name offset {offset} is outside its string table")
    end = table.find(b"\0", offset)
    if end < 0:
        raise ValueError(f"ELF {what} name at offset {offset} is not NUL-terminated")
    return table[offset:end].decode("utf-8", errors="replace")


class ElfFile:
    """A parsed ELF64 little-endian ``EM_BPF`` relocatable object.

    Immutable once built by :meth:`parse`; holds copies of the section contents, never
    a reference into a caller's buffer beyond the ``bytes`` it was given.
    """

    __slots__ = ("_sections", "_sections_by_name")

    def __init__(self, sections: tuple[ElfSection, ...]) -> None:
        self._sections = sections
        self._sections_by_name = {section.name: section for section in sections}

    @classmethod
    def parse(cls, data: bytes) -> ElfFile:
        """Parse ``data``; raise ``ValueError`` if it is not a well-formed BPF object."""
        data = bytes(data)
        if len(data) < _EHDR.size:
            raise ValueError(
                f"not an ELF object: {len(data)} bytes is shorter than an ELF64 header "
                f"({_EHDR.size} bytes); the file is truncated or not an object file"
            )
        (
            ident,
            e_type,
            e_machine,
            e_version,
            _entry,
            _phoff,
            e_shoff,
            _flags,
            _ehsize,
            _phentsize,
            _phnum,
            e_shentsize,
            e_shnum,
            e_shstrndx,
        ) = _EHDR.unpack_from(data)
        if ident[:4] != _ELF_MAGIC:
            raise ValueError("not an ELF object: the file does not start with \\x7fELF")
        if ident[4] != _ELFCLASS64:
            raise ValueError("unsupported ELF object: only 64-bit (ELFCLASS64) objects are read")
        if ident[5] != _ELFDATA2LSB:
            raise ValueError(
                "unsupported ELF object: only little-endian objects are read; "
                "build with -target bpf (or bpfel), not bpfeb"
            )
        if ident[6] != _EV_CURRENT or e_version != _EV_CURRENT:
            raise ValueError(f"unsupported ELF version {e_version}")
        if e_machine != EM_BPF:
            raise ValueError(
                f"not a BPF object: ELF machine is {e_machine}, expected EM_BPF ({EM_BPF}); "
                "build it with clang -target bpf"
            )
        if e_type != _ET_REL:
            raise ValueError(
                f"unsupported ELF type {e_type}: expected a relocatable object (ET_REL), "
                "as produced by clang -c"
            )
        if e_shnum == 0 or e_shnum >= SHN_LORESERVE:
            raise ValueError(f"unsupported ELF object: section count {e_shnum} (none, or extended)")
        if e_shentsize != _SHDR.size:
            raise ValueError(
                f"malformed ELF object: section header size {e_shentsize}, expected 64"
            )
        if e_shoff + e_shnum * _SHDR.size > len(data):
            raise ValueError(
                f"truncated ELF object: section headers end at byte "
                f"{e_shoff + e_shnum * _SHDR.size} but the file has {len(data)} bytes"
            )
        if e_shstrndx >= e_shnum:
            raise ValueError(
                f"malformed ELF object: section name table index {e_shstrndx} "
                f"is not below the section count {e_shnum}"
            )

        headers = [_SHDR.unpack_from(data, e_shoff + i * _SHDR.size) for i in range(e_shnum)]
        contents = [cls._section_bytes(data, index, header) for index, header in enumerate(headers)]
        if headers[e_shstrndx][1] != SHT_STRTAB:
            raise ValueError("malformed ELF object: the section name table is not a string table")
        names_table = contents[e_shstrndx]
        sections = tuple(
            ElfSection(
                index=index,
                name=_c_string(names_table, sh_name, "section"),
                type=sh_type,
                flags=sh_flags,
                size=sh_size,
                link=sh_link,
                info=sh_info,
                entsize=sh_entsize,
                data=contents[index],
            )
            for index, (
                sh_name,
                sh_type,
                sh_flags,
                _addr,
                _offset,
                sh_size,
                sh_link,
                sh_info,
                _align,
                sh_entsize,
            ) in enumerate(headers)
        )
        return cls(sections)

    @staticmethod
    def _section_bytes(data: bytes, index: int, header: tuple[int, ...]) -> bytes:
        sh_type, sh_offset, sh_size = header[1], header[4], header[5]
        if sh_type == SHT_NOBITS or index == 0:
            return b""
        if sh_offset + sh_size > len(data):
            raise ValueError(
                f"truncated ELF object: section {index} ends at byte {sh_offset + sh_size} "
                f"but the file has {len(data)} bytes"
            )
        return data[sh_offset : sh_offset + sh_size]

    @property
    def sections(self) -> tuple[ElfSection, ...]:
        """All sections in header order; index 0 is the null section."""
        return self._sections

    def section(self, index: int) -> ElfSection:
        """The section with header index ``index``."""
        if not 0 <= index < len(self._sections):
            raise ValueError(f"malformed ELF object: no section with index {index}")
        return self._sections[index]

    def section_by_name(self, name: str) -> ElfSection | None:
        """The section called ``name``, or ``None``."""
        return self._sections_by_name.get(name)

    def symbols(self) -> tuple[ElfSymbol, ...]:
        """The entries of the (single) ``SHT_SYMTAB`` section; empty if there is none."""
        tables = [section for section in self._sections if section.type == SHT_SYMTAB]
        if not tables:
            return ()
        if len(tables) > 1:
            raise ValueError("unsupported ELF object: more than one symbol table")
        table = tables[0]
        if table.entsize != _SYM.size or len(table.data) % _SYM.size:
            raise ValueError(
                f"malformed ELF symbol table {table.name!r}: entry size "
                f"{table.entsize}, size {len(table.data)}"
            )
        names = self.section(table.link)
        if names.type != SHT_STRTAB:
            raise ValueError(
                f"malformed ELF symbol table {table.name!r}: its string table "
                f"(section {table.link}) is not a string table"
            )
        symbols = []
        for index in range(len(table.data) // _SYM.size):
            st_name, st_info, _other, st_shndx, st_value, st_size = _SYM.unpack_from(
                table.data, index * _SYM.size
            )
            symbols.append(
                ElfSymbol(
                    index=index,
                    name=_c_string(names.data, st_name, "symbol"),
                    value=st_value,
                    size=st_size,
                    binding=st_info >> 4,
                    type=st_info & 0xF,
                    section_index=st_shndx,
                )
            )
        return tuple(symbols)

    def relocation_sections(self) -> tuple[ElfSection, ...]:
        """Every ``SHT_REL`` and ``SHT_RELA`` section; ``info`` is the section they patch."""
        return tuple(s for s in self._sections if s.type in (SHT_REL, SHT_RELA))

    def relocations(self, section: ElfSection) -> tuple[ElfRelocation, ...]:
        """Decode a ``SHT_REL`` section (BPF objects use ``REL``, never ``RELA``)."""
        if section.type != SHT_REL:
            raise ValueError(
                f"unsupported relocation section {section.name!r}: only SHT_REL is read "
                f"(section type {section.type})"
            )
        if section.entsize != _REL.size or len(section.data) % _REL.size:
            raise ValueError(
                f"malformed ELF relocation section {section.name!r}: entry size "
                f"{section.entsize}, size {len(section.data)}"
            )
        return tuple(
            ElfRelocation(offset=r_offset, symbol_index=r_info >> 32, type=r_info & 0xFFFFFFFF)
            for r_offset, r_info in _REL.iter_unpack(section.data)
        )
