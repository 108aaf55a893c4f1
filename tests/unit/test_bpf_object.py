"""The ELF, BTF and BPF object parsers and the bpf(2) structures, without the kernel.

The shipped ``xdppacket/xdpsock_kern.o`` is parsed as is; every other object is built
byte by byte here (``build_bpf_elf``, ``BtfBuilder``), so these tests need neither root
nor a compiler.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xdppacket import _bpf, compile_filter
from xdppacket._bpf_object import (
    BpfObject,
    MapRelocation,
    load_xsk_program,
    relocate,
)
from xdppacket._btf import Btf, BtfInteger, parse_map_definitions
from xdppacket._elf import ElfFile

SHIPPED_OBJECT = Path(__file__).resolve().parents[2] / "xdppacket" / "xdpsock_kern.o"

EM_BPF = 247
EM_X86_64 = 62
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_REL = 1, 2, 3, 9
SHF_WRITE_ALLOC, SHF_ALLOC_EXEC = 0x3, 0x6
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL = 0, 1
R_BPF_64_64, R_BPF_64_32 = 1, 10
BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_XSKMAP = 2, 17
BPF_FUNC_redirect_map = 51


# --- BPF instructions ------------------------------------------------------------------


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte BPF instruction (little-endian: dst in the low nibble of byte 1)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def ld_imm64(dst: int, imm: int = 0) -> bytes:
    return insn(0x18, dst=dst, imm=imm) + insn(0)


def mov64_imm(dst: int, imm: int) -> bytes:
    return insn(0xB7, dst=dst, imm=imm)


def call_helper(number: int) -> bytes:
    return insn(0x85, imm=number)


EXIT = insn(0x95)
LOAD_RX_QUEUE_INDEX_INTO_R2 = insn(0x61, dst=2, src=1, off=16)  # r2 = ctx->rx_queue_index


# --- A hand-made ELF writer ------------------------------------------------------------


@dataclass
class Section:
    name: str
    type: int = SHT_PROGBITS
    flags: int = 0
    data: bytes = b""


@dataclass
class Symbol:
    name: str
    section: str | None  # None: undefined (an extern)
    value: int = 0
    size: int = 0
    type: int = STT_OBJECT
    binding: int = STB_GLOBAL


@dataclass
class Relocation:
    section: str  # the section patched
    offset: int
    symbol: str  # a Symbol's name, or "section:NAME" for the section symbol of NAME
    type: int = R_BPF_64_64


@dataclass
class ElfSpec:
    sections: list[Section]
    symbols: list[Symbol] = field(default_factory=list)
    relocations: list[Relocation] = field(default_factory=list)
    machine: int = EM_BPF
    elf_class: int = 2
    data_encoding: int = 1


def build_bpf_elf(spec: ElfSpec) -> bytes:
    """An ET_REL object laid out like clang's: sections, .rel*, .symtab, .strtab, .shstrtab."""
    sections = list(spec.sections)
    index_of = {section.name: position + 1 for position, section in enumerate(sections)}
    symtab_index = len(sections) + 1 + len({r.section for r in spec.relocations})

    # Section symbols (local) first, then the named ones, as ELF requires.
    names = bytearray(b"\0")

    def string(text: str) -> int:
        if not text:
            return 0
        names.extend(text.encode() + b"\0")
        return len(names) - len(text) - 1

    symbol_entries = [struct.pack("<IBBHQQ", 0, 0, 0, 0, 0, 0)]
    symbol_index: dict[str, int] = {}
    for section in spec.sections:
        symbol_index["section:" + section.name] = len(symbol_entries)
        symbol_entries.append(
            struct.pack(
                "<IBBHQQ", 0, (STB_LOCAL << 4) | STT_SECTION, 0, index_of[section.name], 0, 0
            )
        )
    first_global = len(symbol_entries)
    for symbol in spec.symbols:
        symbol_index[symbol.name] = len(symbol_entries)
        shndx = index_of[symbol.section] if symbol.section else 0
        symbol_entries.append(
            struct.pack(
                "<IBBHQQ",
                string(symbol.name),
                (symbol.binding << 4) | symbol.type,
                0,
                shndx,
                symbol.value,
                symbol.size,
            )
        )

    headers: list[tuple[str, int, int, bytes, int, int, int]] = [
        (s.name, s.type, s.flags, s.data, 0, 0, 0) for s in sections
    ]
    for target in dict.fromkeys(r.section for r in spec.relocations):
        entries = b"".join(
            struct.pack("<QQ", r.offset, (symbol_index[r.symbol] << 32) | r.type)
            for r in spec.relocations
            if r.section == target
        )
        headers.append((".rel" + target, SHT_REL, 0, entries, symtab_index, index_of[target], 16))
    headers.append(
        (".symtab", SHT_SYMTAB, 0, b"".join(symbol_entries), symtab_index + 1, first_global, 24)
    )
    headers.append((".strtab", SHT_STRTAB, 0, bytes(names), 0, 0, 0))
    section_names = bytearray(b"\0")
    name_offsets = []
    for name in [header[0] for header in headers] + [".shstrtab"]:
        name_offsets.append(len(section_names))
        section_names.extend(name.encode() + b"\0")
    headers.append((".shstrtab", SHT_STRTAB, 0, bytes(section_names), 0, 0, 0))

    body = bytearray(64)
    placed = []
    for _name, _type, _flags, data, *_ in headers:
        body.extend(b"\0" * (-len(body) % 8))
        placed.append(len(body))
        body.extend(data)
    body.extend(b"\0" * (-len(body) % 8))
    section_header_offset = len(body)
    body.extend(bytes(64))  # the null section
    for (_name, sh_type, flags, data, link, info, entsize), name_offset, offset in zip(
        headers, name_offsets, placed
    ):
        body.extend(
            struct.pack(
                "<IIQQQQIIQQ",
                name_offset,
                sh_type,
                flags,
                0,
                offset,
                len(data),
                link,
                info,
                8,
                entsize,
            )
        )
    ident = b"\x7fELF" + bytes([spec.elf_class, spec.data_encoding, 1]) + bytes(9)
    body[:64] = struct.pack(
        "<16sHHIQQQIHHHHHH",
        ident,
        1,
        spec.machine,
        1,
        0,
        0,
        section_header_offset,
        0,
        64,
        0,
        0,
        64,
        len(headers) + 1,
        len(headers),
    )
    return bytes(body)


def legacy_map_def(map_type: int, key_size: int, value_size: int, max_entries: int) -> bytes:
    return struct.pack("<5I", map_type, key_size, value_size, max_entries, 0)


LEGACY_PROGRAM = (
    LOAD_RX_QUEUE_INDEX_INTO_R2
    + ld_imm64(1)  # r1 = &xsks_map (relocated against the map's symbol)
    + ld_imm64(4, imm=20)  # r4 = &counters (relocated against the maps section symbol + 20)
    + mov64_imm(3, 2)  # r3 = XDP_PASS
    + call_helper(BPF_FUNC_redirect_map)
    + EXIT
)


def legacy_spec(
    program: bytes = LEGACY_PROGRAM, xsk_map_type: int = BPF_MAP_TYPE_XSKMAP, **changes: object
) -> ElfSpec:
    """An object with a legacy ``maps`` section: xsks_map at 0, counters at 20."""
    spec = ElfSpec(
        sections=[
            Section("xdp/legacy", flags=SHF_ALLOC_EXEC, data=program),
            Section(
                "maps",
                flags=SHF_WRITE_ALLOC,
                data=legacy_map_def(xsk_map_type, 4, 4, 8)
                + legacy_map_def(BPF_MAP_TYPE_ARRAY, 4, 8, 1),
            ),
            Section("license", flags=SHF_WRITE_ALLOC, data=b"Dual MIT/GPL\0"),
        ],
        symbols=[
            Symbol("legacy_prog", "xdp/legacy", size=len(program), type=STT_FUNC),
            Symbol("xsks_map", "maps", value=0, size=20),
            Symbol("counters", "maps", value=20, size=20),
        ],
        relocations=[
            Relocation("xdp/legacy", 8, "xsks_map"),
            Relocation("xdp/legacy", 24, "section:maps"),
        ],
    )
    for name, value in changes.items():
        setattr(spec, name, value)
    return spec


# --- A hand-made BTF writer ------------------------------------------------------------


class BtfBuilder:
    """Appends BTF types one by one; ``build()`` returns a ``.BTF`` section's bytes."""

    def __init__(self) -> None:
        self.types = bytearray()
        self.strings = bytearray(b"\0")
        self.count = 0
        self.int_id = self.integer("int", 4)

    def _name(self, name: str) -> int:
        if not name:
            return 0
        self.strings.extend(name.encode() + b"\0")
        return len(self.strings) - len(name) - 1

    def add(
        self, kind: int, name: str, size_or_type: int, vlen: int = 0, trailer: bytes = b""
    ) -> int:
        self.types.extend(struct.pack("<III", self._name(name), (kind << 24) | vlen, size_or_type))
        self.types.extend(trailer)
        self.count += 1
        return self.count

    def integer(self, name: str, size: int) -> int:
        return self.add(1, name, size, trailer=struct.pack("<I", size * 8))

    def pointer(self, target: int) -> int:
        return self.add(2, "", target)

    def uint_member(self, value: int) -> int:
        """The type of ``__uint(name, value)``: ``int (*)[value]``."""
        array = self.add(3, "", 0, trailer=struct.pack("<III", self.int_id, self.int_id, value))
        return self.pointer(array)

    def structure(self, name: str, size: int, members: list[tuple[str, int]]) -> int:
        trailer = b"".join(
            struct.pack("<III", self._name(member), type_id, 64 * position)
            for position, (member, type_id) in enumerate(members)
        )
        return self.add(4, name, size, vlen=len(members), trailer=trailer)

    def build(self) -> bytes:
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings)
        )
        return header + bytes(self.types) + bytes(self.strings)


def btf_with_map(members: list[tuple[str, int]], builder: BtfBuilder) -> bytes:
    definition = builder.structure("", 8 * len(members), members)
    var = builder.add(14, "my_map", definition, trailer=struct.pack("<I", 1))
    builder.add(15, ".maps", 0, vlen=1, trailer=struct.pack("<III", var, 0, 8 * len(members)))
    return builder.build()


# --- The shipped object ----------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> BpfObject:
    return BpfObject.parse(SHIPPED_OBJECT.read_bytes())


def test_shipped_object_has_a_plain_a_frags_aware_and_a_compat_xdp_program(shipped: BpfObject) -> None:
    program, compat, frags = shipped.programs
    assert (program.name, program.section_name, program.frags) == ("xdp_sock_prog", "xdp", False)
    # The metadata (bpf_xdp_adjust_meta, bounds check, bpf_ktime_get_ns, the clock offset,
    # bpf_xdp_get_buff_len, the trailer's and the pcap record's stores: 31 instructions), the
    # "metadata missing" flag (4), then r2 = ctx->rx_queue_index; r1 = &xsks_map (2 slots);
    # r3 = XDP_PASS; call; exit
    assert program.instruction_count == 41
    # For kernels before 5.18: no bpf_xdp_get_buff_len (call 188), the lengths left zero.
    assert (compat.name, compat.section_name, compat.frags) == ("xdp_sock_compat", "xdp", False)
    assert compat.instruction_count == 38
    calls = {struct.unpack_from("<i", compat.instructions, i + 4)[0]
             for i in range(0, len(compat.instructions), 8) if compat.instructions[i] == 0x85}
    assert calls == {54, 5, 51}  # xdp_adjust_meta, ktime_get_ns, redirect_map
    # OptMultiBuffer's: the same body, loaded with BPF_F_XDP_HAS_FRAGS.
    assert (frags.name, frags.section_name, frags.frags) == ("xdp_sock_prog_frags", "xdp.frags", True)
    assert frags.instructions == program.instructions
    assert frags.map_relocations == program.map_relocations
    assert shipped.program("xdp") is program
    assert shipped.program("xdp_sock_prog_frags") is frags
    with pytest.raises(ValueError, match="several XDP programs"):
        shipped.program()
    assert shipped.license == "GPL"


def test_shipped_object_declares_xsks_map_in_btf(shipped: BpfObject) -> None:
    xsks_map = shipped.map("xsks_map")
    assert (
        xsks_map.map_type,
        xsks_map.key_size,
        xsks_map.value_size,
        xsks_map.max_entries,
        xsks_map.map_flags,
    ) == (BPF_MAP_TYPE_XSKMAP, 4, 4, 64, 0)
    # And the globals of _pcap_records, in .bss.
    assert [definition.name for definition in shipped.maps] == ["xsks_map", ".bss"]
    assert [(v.name, v.map_name, v.offset, v.size) for v in shipped.global_variables] == [
        ("xdppacket_realtime_offset_ns", ".bss", 0, 8), ("xdppacket_metadata_missing", ".bss", 8, 4)]


def test_shipped_object_relocations_point_at_ld_imm64(shipped: BpfObject) -> None:
    program = shipped.program("xdp_sock_prog")
    assert program.map_relocations == (
        MapRelocation(instruction_index=12, map_name=".bss", value_offset=0),  # the clock offset
        MapRelocation(instruction_index=31, map_name=".bss", value_offset=8),  # the metadata flag
        MapRelocation(instruction_index=36, map_name="xsks_map"),
    )
    for relocation in program.map_relocations:
        assert program.instructions[relocation.instruction_index * 8] == 0x18


def test_relocate_sets_pseudo_map_fd_and_keeps_dst_register(shipped: BpfObject) -> None:
    program = shipped.program("xdp_sock_prog")
    patched = relocate(program.instructions, program.map_relocations[2:], {"xsks_map": 42})
    at = 36 * 8  # the ld_imm64 of &xsks_map
    code, registers, off, imm = struct.unpack_from("<BBhi", patched, at)
    assert (code, registers & 0x0F, registers >> 4, off, imm) == (0x18, 1, 1, 0, 42)
    assert struct.unpack_from("<i", patched, at + 12) == (0,)  # upper half of the immediate
    assert patched[:at] == program.instructions[:at]
    assert patched[at + 16 :] == program.instructions[at + 16 :]
    assert program.instructions[at + 1] == 0x01  # the parsed program itself is left untouched


def test_elf_parser_reads_sections_and_symbols() -> None:
    elf = ElfFile.parse(SHIPPED_OBJECT.read_bytes())
    names = {section.name for section in elf.sections}
    assert {"xdp", ".relxdp", ".maps", "license", ".BTF", ".symtab", ".strtab"} <= names
    xdp = elf.section_by_name("xdp")
    assert xdp is not None
    assert xdp.is_executable
    assert len(xdp.data) == (41 + 38) * 8  # xdp_sock_prog, then xdp_sock_compat
    symbols = {symbol.name: symbol for symbol in elf.symbols()}
    assert symbols["xdp_sock_prog"].type == STT_FUNC
    assert symbols["xdp_sock_prog"].size == 41 * 8
    assert symbols["xsks_map"].section_index == elf.section_by_name(".maps").index  # type: ignore[union-attr]
    (rel,) = [s for s in elf.relocation_sections() if s.info == xdp.index]
    relocation = elf.relocations(rel)[2]
    assert (relocation.offset, relocation.type) == (36 * 8, R_BPF_64_64)
    assert elf.symbols()[relocation.symbol_index].name == "xsks_map"


def test_btf_parser_resolves_the_shipped_types() -> None:
    elf = ElfFile.parse(SHIPPED_OBJECT.read_bytes())
    btf_section = elf.section_by_name(".BTF")
    assert btf_section is not None
    btf = Btf.parse(btf_section.data)
    (xdp_md,) = [t for t in btf.types if t.name == "xdp_md"]
    assert btf.resolve_size(xdp_md.type_id) == 24
    assert [m.name for m in xdp_md.members][4] == "rx_queue_index"
    maps_datasec = btf.find_datasec(".maps")
    assert maps_datasec is not None
    assert len(maps_datasec.var_secinfos) == 1
    assert btf.find_datasec(".data") is None


# --- Legacy maps and hand-built objects ------------------------------------------------


def test_legacy_maps_section_is_read() -> None:
    bpf_object = BpfObject.parse(build_bpf_elf(legacy_spec()))
    assert [
        (m.name, m.map_type, m.key_size, m.value_size, m.max_entries) for m in bpf_object.maps
    ] == [
        ("xsks_map", BPF_MAP_TYPE_XSKMAP, 4, 4, 8),
        ("counters", BPF_MAP_TYPE_ARRAY, 4, 8, 1),
    ]
    (program,) = bpf_object.programs
    assert (program.name, program.section_name, program.instruction_count) == (
        "legacy_prog",
        "xdp/legacy",
        8,
    )
    assert program.map_relocations == (
        MapRelocation(1, "xsks_map"),
        MapRelocation(3, "counters"),  # section symbol + the immediate's offset 20
    )
    assert bpf_object.license == "Dual MIT/GPL"
    patched = relocate(
        program.instructions, program.map_relocations, {"xsks_map": 7, "counters": 9}
    )
    assert struct.unpack_from("<BBhi", patched, 24) == (0x18, 0x14, 0, 9)


def test_program_without_function_symbols_spans_its_section() -> None:
    spec = legacy_spec()
    spec.symbols = [s for s in spec.symbols if s.type != STT_FUNC]
    (program,) = BpfObject.parse(build_bpf_elf(spec)).programs
    assert (program.name, program.instruction_count) == ("xdp/legacy", 8)


def test_two_programs_must_be_chosen_by_name() -> None:
    spec = legacy_spec()
    spec.sections.append(Section("xdp.second", flags=SHF_ALLOC_EXEC, data=mov64_imm(0, 2) + EXIT))
    bpf_object = BpfObject.parse(build_bpf_elf(spec))
    assert [p.name for p in bpf_object.programs] == ["legacy_prog", "xdp.second"]
    with pytest.raises(ValueError, match="several XDP programs"):
        bpf_object.program()
    assert bpf_object.program("xdp.second").instruction_count == 2
    with pytest.raises(ValueError, match="no XDP program named 'nope'"):
        bpf_object.program("nope")


def test_btf_map_definition_with_typed_key_and_flags() -> None:
    builder = BtfBuilder()
    u64 = builder.integer("unsigned long long", 8)
    key_struct = builder.structure("flow", 12, [("a", builder.int_id), ("b", u64)])
    typedef = builder.add(8, "flow_t", key_struct)
    const = builder.add(10, "", typedef)
    btf = Btf.parse(
        btf_with_map(
            [
                ("type", builder.uint_member(1)),
                ("key", builder.pointer(const)),
                ("value", builder.pointer(u64)),
                ("max_entries", builder.uint_member(1024)),
                ("map_flags", builder.uint_member(1)),
            ],
            builder,
        )
    )
    (definition,) = parse_map_definitions(btf)
    assert (
        definition.name,
        definition.map_type,
        definition.key_size,
        definition.value_size,
        definition.max_entries,
        definition.map_flags,
    ) == ("my_map", 1, 12, 8, 1024, 1)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("pinning", "member 'pinning' is not supported"),
        ("key_size_conflict", "key_size is given twice"),
        ("missing_max_entries", "lacks max_entries"),
        ("bad_uint", r"must be declared with __uint\(type, N\)"),
    ],
)
def test_btf_map_definition_errors(member: str, message: str) -> None:
    builder = BtfBuilder()
    members = [
        ("type", builder.uint_member(2)),
        ("key", builder.pointer(builder.int_id)),
        ("value", builder.pointer(builder.int_id)),
        ("max_entries", builder.uint_member(4)),
    ]
    if member == "pinning":
        members.append(("pinning", builder.uint_member(1)))
    elif member == "key_size_conflict":
        members.append(("key_size", builder.uint_member(8)))
    elif member == "missing_max_entries":
        members.pop()
    elif member == "bad_uint":
        members[0] = ("type", builder.int_id)
    btf = Btf.parse(btf_with_map(members, builder))
    with pytest.raises(ValueError, match=message):
        parse_map_definitions(btf)


# --- Malformed and unsupported input ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than an ELF64 header"),
        (SHIPPED_OBJECT.read_bytes()[:100], "truncated ELF object"),
        (SHIPPED_OBJECT.read_bytes()[:-300], "truncated ELF object"),
        (b"MZ" + bytes(100), "does not start with"),
        (build_bpf_elf(legacy_spec(machine=EM_X86_64)), r"EM_BPF \(247\)"),
        (build_bpf_elf(legacy_spec(elf_class=1)), "64-bit"),
        (build_bpf_elf(legacy_spec(data_encoding=2)), "little-endian"),
    ],
    ids=[
        "empty",
        "truncated-header",
        "truncated-sections",
        "not-elf",
        "wrong-machine",
        "32-bit",
        "big-endian",
    ],
)
def test_malformed_elf_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BpfObject.parse(data)


def test_truncated_btf_is_refused() -> None:
    btf_data = ElfFile.parse(SHIPPED_OBJECT.read_bytes()).section_by_name(".BTF").data  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="truncated BTF"):
        Btf.parse(btf_data[:-40])
    with pytest.raises(ValueError, match="magic"):
        Btf.parse(b"\xeb\x9f" + btf_data[2:])  # big-endian BTF


def test_object_without_xdp_section_is_refused() -> None:
    spec = legacy_spec()
    spec.sections[0].name = "tc"
    spec.symbols[0].section = "tc"
    for relocation in spec.relocations:
        relocation.section = "tc"
    with pytest.raises(ValueError, match=r"no XDP program.*SEC\(\"xdp\"\)"):
        BpfObject.parse(build_bpf_elf(spec))


def test_object_without_license_is_refused() -> None:
    spec = legacy_spec()
    spec.sections.pop()
    with pytest.raises(ValueError, match=r'SEC\("license"\)'):
        BpfObject.parse(build_bpf_elf(spec))


def test_call_to_a_subprogram_asks_for_inlining() -> None:
    program = insn(0x85, src=1, imm=-1) + EXIT  # a bpf-to-bpf call, resolved by relocation
    spec = legacy_spec(program=program)
    spec.sections.append(Section(".text", flags=SHF_ALLOC_EXEC, data=mov64_imm(0, 2) + EXIT))
    spec.symbols.append(Symbol("helper", ".text", size=16, type=STT_FUNC))
    spec.relocations = [Relocation("xdp/legacy", 0, "helper", R_BPF_64_32)]
    with pytest.raises(ValueError, match="calls function 'helper'.*static __always_inline"):
        BpfObject.parse(build_bpf_elf(spec))


def test_pseudo_call_leaving_the_program_asks_for_inlining() -> None:
    program = insn(0x85, src=1, imm=5) + EXIT
    with pytest.raises(ValueError, match="outside itself.*static __always_inline"):
        BpfObject.parse(build_bpf_elf(legacy_spec(program=program, relocations=[])))


def test_a_prologue_goes_in_front_and_moves_every_reference_down() -> None:
    (program,) = parse_test_object("globals.o").programs
    prologue = compile_filter("udp port 53").instructions
    shift = len(prologue) // 8
    spliced = program.with_prologue(prologue)
    assert spliced.instructions == prologue + program.instructions
    assert spliced.instruction_count == program.instruction_count + shift
    # Map references and the addresses of global variables (BPF_PSEUDO_MAP_VALUE) alike.
    assert [(r.instruction_index, r.map_name, r.value_offset) for r in spliced.map_relocations] == [
        (r.instruction_index + shift, r.map_name, r.value_offset) for r in program.map_relocations
    ]
    assert any(r.value_offset is not None for r in spliced.map_relocations)
    fds = {name: 3 for name in {r.map_name for r in program.map_relocations}}
    patched = relocate(spliced.instructions, spliced.map_relocations, fds)
    assert patched[: len(prologue)] == prologue
    assert patched[len(prologue) :] == relocate(program.instructions, program.map_relocations, fds)
    assert (spliced.name, spliced.section_name) == (program.name, program.section_name)


def test_a_prologue_keeps_the_frags_flag_and_no_prologue_changes_nothing() -> None:
    (program,) = parse_test_object("frags.o").programs
    assert program.with_prologue(compile_filter("ip").instructions).frags
    assert program.with_prologue(b"") == program


def test_a_prologue_must_be_whole_instructions(shipped: BpfObject) -> None:
    with pytest.raises(ValueError, match="a prologue must be whole 8-byte BPF instructions, got 12 bytes"):
        shipped.programs[0].with_prologue(bytes(12))


def test_global_data_becomes_a_map_and_its_address_a_map_value() -> None:
    # r1 = &.rodata + 4 (a section symbol: the offset is in the immediate), the legacy map
    # reference to xsks_map kept at instruction 1.
    spec = legacy_spec()
    spec.sections.append(Section(".rodata", data=b"\x2a\0\0\0hello\0"))
    spec.sections[0].data = spec.sections[0].data[:24] + ld_imm64(4, imm=4) + spec.sections[0].data[40:]
    spec.relocations[1] = Relocation("xdp/legacy", 24, "section:.rodata")
    bpf_object = BpfObject.parse(build_bpf_elf(spec))
    rodata = bpf_object.map(".rodata")
    assert (rodata.map_type, rodata.key_size, rodata.value_size, rodata.max_entries) == (2, 4, 10, 1)
    assert rodata.initial_value == b"\x2a\0\0\0hello\0"
    assert rodata.read_only
    assert rodata.map_flags == _bpf.BPF_F_MMAPABLE | _bpf.BPF_F_RDONLY_PROG
    (program,) = bpf_object.programs
    assert program.map_relocations[1] == MapRelocation(3, ".rodata", value_offset=4)
    patched = relocate(program.instructions, program.map_relocations, {"xsks_map": 7, ".rodata": 9})
    # src_reg BPF_PSEUDO_MAP_VALUE (2), dst r4, the fd, then the offset in the second slot.
    assert struct.unpack_from("<BBhi", patched, 24) == (0x18, 0x24, 0, 9)
    assert struct.unpack_from("<BBhi", patched, 32) == (0, 0, 0, 4)
    assert struct.unpack_from("<BBhi", patched, 8) == (0x18, 0x11, 0, 7)  # the map itself


def test_extern_symbol_is_refused() -> None:
    spec = legacy_spec()
    spec.symbols.append(Symbol("CONFIG_HZ", None, type=STT_NOTYPE))
    spec.relocations[0].symbol = "CONFIG_HZ"
    with pytest.raises(ValueError, match="undefined \\(extern\\) symbol 'CONFIG_HZ'"):
        BpfObject.parse(build_bpf_elf(spec))


def test_relocation_not_on_ld_imm64_is_refused() -> None:
    spec = legacy_spec()
    spec.relocations[0].offset = 0
    with pytest.raises(ValueError, match="not on an ld_imm64"):
        BpfObject.parse(build_bpf_elf(spec))


# --- Checks made before any kernel call ------------------------------------------------


def test_load_refuses_unknown_override_before_creating_anything() -> None:
    bpf_object = BpfObject.parse(SHIPPED_OBJECT.read_bytes())
    with pytest.raises(ValueError, match=r"unknown map\(s\) \['xsk_map'\]"):
        bpf_object.load({"xsk_map": 4}, "xdp_sock_prog")
    with pytest.raises(ValueError, match="positive int"):
        bpf_object.load({"xsks_map": 0}, "xdp_sock_prog")


@pytest.mark.parametrize(
    ("queue_count", "error"), [(0, ValueError), ("4", TypeError), (True, TypeError)]
)
def test_load_xsk_program_checks_queue_count(queue_count: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="queue_count"):
        load_xsk_program(None, queue_count)  # type: ignore[arg-type]


def test_load_xsk_program_requires_xsks_map(tmp_path: Path) -> None:
    spec = legacy_spec()
    spec.symbols[1].name = "sockets"
    spec.relocations[0].symbol = "sockets"
    path = tmp_path / "custom.o"
    path.write_bytes(build_bpf_elf(spec))
    with pytest.raises(ValueError, match=f"{path}.* no map named 'xsks_map'"):
        load_xsk_program(path, 1)


def test_load_xsk_program_requires_an_xskmap(tmp_path: Path) -> None:
    path = tmp_path / "array.o"
    path.write_bytes(build_bpf_elf(legacy_spec(xsk_map_type=BPF_MAP_TYPE_ARRAY)))
    with pytest.raises(ValueError, match=f"{path}.*type 2, expected BPF_MAP_TYPE_XSKMAP \\(17\\)"):
        load_xsk_program(str(path), 1)


def test_load_xsk_program_names_the_path_of_a_malformed_object(tmp_path: Path) -> None:
    path = tmp_path / "broken.o"
    path.write_bytes(b"not an object")
    with pytest.raises(ValueError, match=f"{path}: not an ELF object"):
        load_xsk_program(path, 1)


# --- union bpf_attr and info structures ------------------------------------------------

# Sizes and offsets from /usr/include/linux/bpf.h (linux-libc-dev 6.1), checked with offsetof.
EXPECTED_LAYOUT = {
    _bpf.bpf_attr_map_create: (
        72,
        {"map_name": 28, "btf_vmlinux_value_type_id": 60, "map_extra": 64},
    ),
    _bpf.bpf_attr_map_elem: (32, {"key": 8, "value": 16, "flags": 24}),
    _bpf.bpf_attr_prog_load: (
        144,
        {
            "insns": 8,
            "log_buf": 32,
            "prog_name": 48,
            "expected_attach_type": 68,
            "fd_array": 120,
            "core_relo_rec_size": 136,
            "log_true_size": 140,
        },
    ),
    _bpf.bpf_attr_test_run: (
        80,
        {"data_in": 16, "repeat": 32, "ctx_in": 48, "flags": 64, "batch_size": 72},
    ),
    _bpf.bpf_attr_prog_bind_map: (12, {"map_fd": 4, "flags": 8}),
    _bpf.bpf_attr_get_id: (12, {"next_id": 4, "open_flags": 8}),
    _bpf.bpf_attr_obj_info: (16, {"info": 8}),
    _bpf.bpf_attr_link_create: (
        48,
        {"target_ifindex": 4, "attach_type": 8, "flags": 12, "attach_type_specific": 16},
    ),
    _bpf.bpf_prog_info: (
        232,
        {"tag": 8, "nr_map_ids": 52, "map_ids": 56, "name": 64, "netns_dev": 88, "attach_btf_id": 224},
    ),
    _bpf.bpf_map_info: (88, {"max_entries": 16, "name": 24, "map_extra": 80}),
    _bpf.bpf_link_info: (48, {"prog_id": 8, "variants": 16}),
    _bpf.xdp_md: (24, {"ingress_ifindex": 12, "rx_queue_index": 16}),
}


@pytest.mark.parametrize("structure", list(EXPECTED_LAYOUT), ids=lambda s: s.__name__)
def test_bpf_structure_layout_matches_the_kernel(structure: type[ctypes.Structure]) -> None:
    size, offsets = EXPECTED_LAYOUT[structure]
    assert ctypes.sizeof(structure) == size
    for name, offset in offsets.items():
        assert getattr(structure, name).offset == offset, name


def test_bpf_attr_unused_bytes_are_zero() -> None:
    attr = _bpf.bpf_attr_map_elem(map_fd=0xFFFFFFFF)
    assert bytes(attr)[4:] == bytes(28)  # including the padding after map_fd


# --- Self-referencing BTF and corrupt function symbols ---------------------------------


def _map_whose_value_is(builder: BtfBuilder, value_type: int) -> bytes:
    return btf_with_map(
        [
            ("type", builder.uint_member(BPF_MAP_TYPE_ARRAY)),
            ("key", builder.pointer(builder.int_id)),
            ("value", builder.pointer(value_type)),
            ("max_entries", builder.uint_member(1)),
        ],
        builder,
    )


def _array_of_itself(builder: BtfBuilder) -> int:
    # ARRAY trailer: element type, index type, count; the element is the array itself.
    return builder.add(3, "", 0, trailer=struct.pack("<III", builder.count + 1, builder.int_id, 2))


def _typedef_loop(builder: BtfBuilder) -> int:
    first = builder.count + 1
    builder.add(8, "a_t", first + 1)
    builder.add(8, "b_t", first)
    return first


def _var_of_itself(builder: BtfBuilder) -> int:
    return builder.add(14, "v", builder.count + 1, trailer=struct.pack("<I", 1))


@pytest.mark.parametrize(
    ("make_type", "message"),
    [
        (_array_of_itself, "contains itself"),
        (_typedef_loop, "refers to itself"),
        (_var_of_itself, "contains itself"),
    ],
    ids=["array-of-itself", "typedef-loop", "var-of-itself"],
)
def test_self_referencing_btf_is_a_value_error(make_type, message: str) -> None:
    builder = BtfBuilder()
    btf = Btf.parse(_map_whose_value_is(builder, make_type(builder)))
    with pytest.raises(ValueError, match=f"malformed BTF: type [0-9]+ {message}"):
        parse_map_definitions(btf)


def test_self_referencing_btf_in_an_object_names_the_object(tmp_path: Path) -> None:
    builder = BtfBuilder()
    btf = _map_whose_value_is(builder, _array_of_itself(builder))
    spec = legacy_spec()
    spec.sections += [Section(".maps", flags=SHF_WRITE_ALLOC, data=bytes(32)), Section(".BTF", data=btf)]
    spec.symbols.append(Symbol("my_map", ".maps", size=32))
    path = tmp_path / "looping-btf.o"
    path.write_bytes(build_bpf_elf(spec))
    with pytest.raises(ValueError, match=f"{path}: malformed BTF: type [0-9]+ contains itself"):
        load_xsk_program(path, 1)


@pytest.mark.parametrize(("value", "size"), [(0, 12), (4, 16), (0, 4096)],
                         ids=["size-not-whole", "start-not-whole", "past-the-end"])
def test_function_symbol_not_covering_whole_instructions_is_refused(
    tmp_path: Path, value: int, size: int
) -> None:
    spec = legacy_spec()
    spec.symbols[0].value, spec.symbols[0].size = value, size
    path = tmp_path / "odd-function.o"
    path.write_bytes(build_bpf_elf(spec))
    with pytest.raises(ValueError, match=f"{path}: function 'legacy_prog' .*corrupt object"):
        load_xsk_program(path, 1)


# --- Objects built from C in tests/bpf ---------------------------------------------------

BPF_DIR = Path(__file__).resolve().parents[1] / "bpf"


def parse_test_object(name: str) -> BpfObject:
    return BpfObject.parse((BPF_DIR / name).read_bytes())


def test_global_data_sections_become_one_element_arrays() -> None:
    bpf_object = parse_test_object("globals.o")
    data_maps = {m.name: m for m in bpf_object.maps if m.holds_global_variables}
    # Section sizes: .data holds an __s32 and, 8-byte aligned, a __u64; .rodata a __u32 and
    # char[6]; .bss a __u64.
    assert {name: (m.map_type, m.key_size, m.value_size, m.max_entries, m.read_only)
            for name, m in data_maps.items()} == {
        ".data": (BPF_MAP_TYPE_ARRAY, 4, 16, 1, False),
        ".rodata": (BPF_MAP_TYPE_ARRAY, 4, 10, 1, True),
        ".bss": (BPF_MAP_TYPE_ARRAY, 4, 8, 1, False),
    }
    assert data_maps[".data"].initial_value == (-1).to_bytes(4, "little", signed=True) + bytes(4) + (7).to_bytes(8, "little")
    assert data_maps[".rodata"].initial_value == (2).to_bytes(4, "little") + b"hello\0"
    assert data_maps[".bss"].initial_value == bytes(8)
    assert data_maps[".rodata"].map_flags == _bpf.BPF_F_MMAPABLE | _bpf.BPF_F_RDONLY_PROG
    assert data_maps[".bss"].map_flags == _bpf.BPF_F_MMAPABLE


def test_global_variables_and_their_types_come_from_btf_and_symbols() -> None:
    variables = {v.name: v for v in parse_test_object("globals.o").global_variables}
    assert {name: (v.map_name, v.offset, v.size, v.integer, v.read_only) for name, v in variables.items()} == {
        "frames": (".bss", 0, 8, BtfInteger(8, signed=False), False),
        "last_length": (".data", 0, 4, BtfInteger(4, signed=True), False),
        "bytes_seen": (".data", 8, 8, BtfInteger(8, signed=False), False),
        "verdict": (".rodata", 0, 4, BtfInteger(4, signed=False), True),
        "banner": (".rodata", 4, 6, None, True),
    }


def test_variable_references_become_map_value_relocations() -> None:
    (program,) = parse_test_object("globals.o").programs
    by_target = {(r.map_name, r.value_offset) for r in program.map_relocations}
    assert {(".bss", 0), (".data", 0), (".data", 8), (".rodata", 0)} <= by_target
    assert {("lengths", None), ("per_cpu_frames", None), ("xsks_map", None)} <= by_target
    assert not program.frags


def test_map_key_and_value_types_come_from_btf() -> None:
    maps = {m.name: m for m in parse_test_object("globals.o").maps}
    assert (maps["lengths"].key_integer, maps["lengths"].value_integer) == (
        BtfInteger(4, signed=False), BtfInteger(8, signed=False))
    assert maps["flows"].value_integer is None  # a struct: bytes
    assert (maps["per_cpu_frames"].map_type, maps["per_cpu_frames"].max_entries) == (6, 2)


def test_two_programs_share_the_object_s_variables() -> None:
    bpf_object = parse_test_object("two_programs.o")
    assert [p.name for p in bpf_object.programs] == ["first", "second"]
    with pytest.raises(ValueError, match=r"several XDP programs \['first', 'second'\]"):
        bpf_object.program()
    second = bpf_object.program("second")
    assert (".bss", 4) in {(r.map_name, r.value_offset) for r in second.map_relocations}


def test_xdp_frags_section_marks_the_program() -> None:
    assert parse_test_object("frags.o").program().frags


@pytest.mark.parametrize(
    ("encoding", "bits", "size", "expected"),
    [
        (1, 32, 4, BtfInteger(4, signed=True)),
        (0, 64, 8, BtfInteger(8, signed=False)),
        (4, 8, 1, BtfInteger(1, signed=False)),  # _Bool
        (0, 3, 4, None),  # a bitfield's width: not whole bytes
        (0, 128, 16, None),  # __int128: stays bytes
    ],
)
def test_btf_integers(encoding: int, bits: int, size: int, expected: BtfInteger | None) -> None:
    builder = BtfBuilder()
    integer = builder.add(1, "n", size, trailer=struct.pack("<I", encoding << 24 | bits))
    typedef = builder.add(8, "n_t", integer)
    btf = Btf.parse(builder.build())
    assert btf.integer(typedef) == expected


def test_btf_enums_are_integers_signed_by_their_kind_flag() -> None:
    builder = BtfBuilder()
    unsigned = builder.add(6, "e", 4)  # an ENUM with no enumerators, kind_flag clear
    # The same with kind_flag (bit 31 of info) set: a signed enum.
    builder.types.extend(struct.pack("<III", builder._name("s"), (1 << 31) | (6 << 24), 4))
    builder.count += 1
    signed = builder.count
    structure = builder.structure("pair", 8, [("a", builder.int_id), ("b", builder.int_id)])
    btf = Btf.parse(builder.build())
    assert btf.integer(unsigned) == BtfInteger(4, signed=False)
    assert btf.integer(signed) == BtfInteger(4, signed=True)
    assert btf.integer(structure) is None
