"""A small BTF parser: enough to read a BPF object's map definitions and global variables.

Pure: it works on the bytes of a ``.BTF`` section and does no I/O. It decodes the whole
type table (every kind the kernel defines, so it can walk past the ones it does not
otherwise use) and resolves the kinds a map definition is built from, and which types
are integers (so Python can read a key, value or variable as ``int``). Malformed input,
self-referencing types included, raises ``ValueError``.

A map declared the modern way::

    struct {
        __uint(type, BPF_MAP_TYPE_XSKMAP);   /* int (*type)[17];  */
        __uint(max_entries, 64);             /* int (*max_entries)[64]; */
        __type(key, __u32);                  /* __u32 *key;       */
        __type(value, __u32);
    } xsks_map SEC(".maps");

is a ``VAR`` of the ``.maps`` ``DATASEC`` whose struct members carry each number as the
length of the array a pointer member points to, and the key and value types as the
pointee types, whose sizes give ``key_size`` and ``value_size``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "BTF_KIND_ARRAY",
    "BTF_KIND_CONST",
    "BTF_KIND_DATASEC",
    "BTF_KIND_DECL_TAG",
    "BTF_KIND_ENUM",
    "BTF_KIND_ENUM64",
    "BTF_KIND_FLOAT",
    "BTF_KIND_FUNC",
    "BTF_KIND_FUNC_PROTO",
    "BTF_KIND_FWD",
    "BTF_KIND_INT",
    "BTF_KIND_PTR",
    "BTF_KIND_RESTRICT",
    "BTF_KIND_STRUCT",
    "BTF_KIND_TYPEDEF",
    "BTF_KIND_TYPE_TAG",
    "BTF_KIND_UNION",
    "BTF_KIND_VAR",
    "BTF_KIND_VOLATILE",
    "Btf",
    "BtfArray",
    "BtfInteger",
    "BtfMapDefinition",
    "BtfMember",
    "BtfType",
    "BtfVarSecInfo",
    "BtfVariable",
    "datasec_variables",
    "parse_map_definitions",
]

BTF_MAGIC = 0xEB9F
_BTF_VERSION = 1

# enum btf_kind (include/uapi/linux/btf.h)
BTF_KIND_INT = 1
BTF_KIND_PTR = 2
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6
BTF_KIND_FWD = 7
BTF_KIND_TYPEDEF = 8
BTF_KIND_VOLATILE = 9
BTF_KIND_CONST = 10
BTF_KIND_RESTRICT = 11
BTF_KIND_FUNC = 12
BTF_KIND_FUNC_PROTO = 13
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_FLOAT = 16
BTF_KIND_DECL_TAG = 17
BTF_KIND_TYPE_TAG = 18
BTF_KIND_ENUM64 = 19

_KIND_NAMES = {
    BTF_KIND_INT: "INT",
    BTF_KIND_PTR: "PTR",
    BTF_KIND_ARRAY: "ARRAY",
    BTF_KIND_STRUCT: "STRUCT",
    BTF_KIND_UNION: "UNION",
    BTF_KIND_ENUM: "ENUM",
    BTF_KIND_FWD: "FWD",
    BTF_KIND_TYPEDEF: "TYPEDEF",
    BTF_KIND_VOLATILE: "VOLATILE",
    BTF_KIND_CONST: "CONST",
    BTF_KIND_RESTRICT: "RESTRICT",
    BTF_KIND_FUNC: "FUNC",
    BTF_KIND_FUNC_PROTO: "FUNC_PROTO",
    BTF_KIND_VAR: "VAR",
    BTF_KIND_DATASEC: "DATASEC",
    BTF_KIND_FLOAT: "FLOAT",
    BTF_KIND_DECL_TAG: "DECL_TAG",
    BTF_KIND_TYPE_TAG: "TYPE_TAG",
    BTF_KIND_ENUM64: "ENUM64",
}

# Kinds whose third word is a size rather than a referenced type id.
_SIZED_KINDS = frozenset(
    {
        BTF_KIND_INT,
        BTF_KIND_STRUCT,
        BTF_KIND_UNION,
        BTF_KIND_ENUM,
        BTF_KIND_DATASEC,
        BTF_KIND_FLOAT,
        BTF_KIND_ENUM64,
    }
)
# Kinds that only qualify or rename the type they reference.
_MODIFIER_KINDS = frozenset(
    {BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG}
)
# Bytes that follow ``struct btf_type``: a fixed amount, or so much per ``vlen`` entry.
_FIXED_TRAILER = {BTF_KIND_INT: 4, BTF_KIND_ARRAY: 12, BTF_KIND_VAR: 4, BTF_KIND_DECL_TAG: 4}
_PER_ENTRY_TRAILER = {
    BTF_KIND_STRUCT: 12,
    BTF_KIND_UNION: 12,
    BTF_KIND_ENUM: 8,
    BTF_KIND_FUNC_PROTO: 8,
    BTF_KIND_DATASEC: 12,
    BTF_KIND_ENUM64: 12,
}

_HEADER = struct.Struct("<HBBIIIII")  # struct btf_header, 24 bytes
_TYPE = struct.Struct("<III")  # struct btf_type: name_off, info, size/type
_TRIPLE = struct.Struct("<III")  # btf_array, btf_member, btf_var_secinfo
_POINTER_SIZE = 8  # BPF is a 64-bit target
BTF_INT_SIGNED = 1 << 0  # BTF_INT_ENCODING bits

#: Map definition members whose value is a number encoded as ``int (*name)[N]``.
_NUMERIC_MAP_MEMBERS = ("type", "max_entries", "map_flags", "key_size", "value_size")
#: Map definition members whose pointee type gives a size.
_TYPED_MAP_MEMBERS = {"key": "key_size", "value": "value_size"}


@dataclass(frozen=True)
class BtfMember:
    """A STRUCT/UNION member; ``offset`` is the raw ``btf_member.offset`` (bits)."""

    name: str
    type_id: int
    offset: int


@dataclass(frozen=True)
class BtfArray:
    """The ``struct btf_array`` that follows an ARRAY type."""

    element_type_id: int
    index_type_id: int
    element_count: int


@dataclass(frozen=True)
class BtfVarSecInfo:
    """One variable of a DATASEC: its VAR type id and where it lies in the section."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True)
class BtfType:
    """One entry of the type table.

    ``size_or_type`` is a size in bytes for INT, STRUCT, UNION, ENUM, ENUM64, FLOAT and
    DATASEC, and the referenced type id for every other kind (as in ``struct btf_type``).
    """

    type_id: int
    kind: int
    name: str
    size_or_type: int
    members: tuple[BtfMember, ...] = ()
    array: BtfArray | None = None
    var_secinfos: tuple[BtfVarSecInfo, ...] = ()
    #: ``kind_flag`` of ``btf_type.info``: for ENUM/ENUM64, whether the values are signed.
    kind_flag: bool = False
    #: For INT: the ``BTF_INT_ENCODING`` bits and the width in bits (``BTF_INT_BITS``).
    int_encoding: int = 0
    int_bits: int = 0

    @property
    def kind_name(self) -> str:
        """The kind as the kernel spells it (``STRUCT``, ``PTR``, ...)."""
        return _KIND_NAMES.get(self.kind, str(self.kind))


@dataclass(frozen=True)
class BtfMapDefinition:
    """A map as declared in ``.maps``: the numbers ``BPF_MAP_CREATE`` needs."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    #: Set when ``__type(key, T)``/``__type(value, T)`` names an integer type.
    key_integer: BtfInteger | None = None
    value_integer: BtfInteger | None = None


@dataclass(frozen=True)
class BtfInteger:
    """A whole-bytes integer type (INT, ENUM, ENUM64, char, bool): Python reads it as ``int``."""

    size: int
    signed: bool


@dataclass(frozen=True)
class BtfVariable:
    """A variable of a global data section (``.data``, ``.bss``, ``.rodata``) as its DATASEC says."""

    name: str
    offset: int
    size: int
    integer: BtfInteger | None


class Btf:
    """A parsed BTF type table with its string table. Immutable once built."""

    __slots__ = ("_types",)

    def __init__(self, types: tuple[BtfType, ...]) -> None:
        self._types = types  # index 0 stands for ``void``

    @classmethod
    def parse(cls, data: bytes) -> Btf:
        """Parse the contents of a ``.BTF`` section; ``ValueError`` if malformed."""
        if len(data) < _HEADER.size:
            raise ValueError(f"truncated BTF: {len(data)} bytes is shorter than its header")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(
            data
        )
        if magic != BTF_MAGIC:
            raise ValueError(
                f"not little-endian BTF: magic {magic:#06x}, expected {BTF_MAGIC:#06x}"
            )
        if version != _BTF_VERSION:
            raise ValueError(f"unsupported BTF version {version}, expected {_BTF_VERSION}")
        if hdr_len < _HEADER.size:
            raise ValueError(f"malformed BTF: header length {hdr_len} is below {_HEADER.size}")
        type_start, str_start = hdr_len + type_off, hdr_len + str_off
        if type_start + type_len > len(data) or str_start + str_len > len(data):
            raise ValueError(
                f"truncated BTF: its type or string section runs past the {len(data)} bytes given"
            )
        strings = data[str_start : str_start + str_len]
        type_table = data[type_start : type_start + type_len]
        return cls(cls._parse_types(type_table, strings))

    @staticmethod
    def _parse_types(table: bytes, strings: bytes) -> tuple[BtfType, ...]:
        def name_at(offset: int) -> str:
            end = strings.find(b"\0", offset)
            if offset >= len(strings) or end < 0:
                raise ValueError(f"malformed BTF: name offset {offset} is outside its strings")
            return strings[offset:end].decode("utf-8", errors="replace")

        types = [BtfType(type_id=0, kind=0, name="void", size_or_type=0)]
        position = 0
        while position < len(table):
            type_id = len(types)
            if position + _TYPE.size > len(table):
                raise ValueError(f"truncated BTF: type {type_id} is cut short")
            name_off, info, size_or_type = _TYPE.unpack_from(table, position)
            position += _TYPE.size
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
            if kind not in _KIND_NAMES:
                raise ValueError(
                    f"unsupported BTF: type {type_id} has unknown kind {kind}; "
                    "the object was built by a newer compiler than this parser knows"
                )
            trailer_size = _FIXED_TRAILER.get(kind, 0) + _PER_ENTRY_TRAILER.get(kind, 0) * vlen
            if position + trailer_size > len(table):
                raise ValueError(
                    f"truncated BTF: type {type_id} ({_KIND_NAMES[kind]}) is cut short"
                )
            trailer = table[position : position + trailer_size]
            position += trailer_size

            members: tuple[BtfMember, ...] = ()
            array = None
            var_secinfos: tuple[BtfVarSecInfo, ...] = ()
            int_encoding = int_bits = 0
            if kind == BTF_KIND_INT:
                (int_data,) = struct.unpack("<I", trailer)
                int_encoding, int_bits = (int_data >> 24) & 0x0F, int_data & 0xFF
            elif kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
                members = tuple(
                    BtfMember(name=name_at(member_name), type_id=member_type, offset=offset)
                    for member_name, member_type, offset in _TRIPLE.iter_unpack(trailer)
                )
            elif kind == BTF_KIND_ARRAY:
                array = BtfArray(*_TRIPLE.unpack(trailer))
            elif kind == BTF_KIND_DATASEC:
                var_secinfos = tuple(
                    BtfVarSecInfo(*entry) for entry in _TRIPLE.iter_unpack(trailer)
                )
            types.append(
                BtfType(
                    type_id=type_id,
                    kind=kind,
                    name=name_at(name_off),
                    size_or_type=size_or_type,
                    members=members,
                    array=array,
                    var_secinfos=var_secinfos,
                    kind_flag=kind_flag,
                    int_encoding=int_encoding,
                    int_bits=int_bits,
                )
            )
        return tuple(types)

    @property
    def types(self) -> tuple[BtfType, ...]:
        """Every type, indexed by type id (entry 0 stands for ``void``)."""
        return self._types

    def type(self, type_id: int) -> BtfType:
        """The type with id ``type_id``; ``ValueError`` if there is none."""
        if not 0 < type_id < len(self._types):
            raise ValueError(f"malformed BTF: reference to missing type id {type_id}")
        return self._types[type_id]

    def skip_modifiers(self, type_id: int) -> BtfType:
        """Follow TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG to the type they qualify."""
        seen: set[int] = set()
        btf_type = self.type(type_id)
        while btf_type.kind in _MODIFIER_KINDS:
            if btf_type.type_id in seen:
                raise ValueError(f"malformed BTF: type {type_id} refers to itself")
            seen.add(btf_type.type_id)
            btf_type = self.type(btf_type.size_or_type)
        return btf_type

    def resolve_size(self, type_id: int, _resolving: frozenset[int] = frozenset()) -> int:
        """The size in bytes of a type, following modifiers, VARs and arrays.

        A type that contains itself (an array of itself, a VAR of itself) is malformed
        BTF: ``ValueError``, not endless recursion.
        """
        if type_id in _resolving:
            raise ValueError(f"malformed BTF: type {type_id} contains itself")
        resolving = _resolving | {type_id}
        btf_type = self.skip_modifiers(type_id)
        if btf_type.kind == BTF_KIND_VAR:
            return self.resolve_size(btf_type.size_or_type, resolving | {btf_type.type_id})
        if btf_type.kind in _SIZED_KINDS:
            return btf_type.size_or_type
        if btf_type.kind == BTF_KIND_PTR:
            return _POINTER_SIZE
        if btf_type.array is not None:
            element = self.resolve_size(btf_type.array.element_type_id, resolving | {btf_type.type_id})
            return btf_type.array.element_count * element
        raise ValueError(f"BTF type {type_id} ({btf_type.kind_name} {btf_type.name!r}) has no size")

    def integer(self, type_id: int) -> BtfInteger | None:
        """The integer a type is (through modifiers and VARs), or ``None`` if it is none.

        Only whole-bytes integers of 1, 2, 4 or 8 bytes count: bitfields and 128-bit
        integers stay ``bytes``.
        """
        btf_type = self.skip_modifiers(type_id)
        if btf_type.kind == BTF_KIND_VAR:
            btf_type = self.skip_modifiers(btf_type.size_or_type)
        size = btf_type.size_or_type
        if btf_type.kind == BTF_KIND_INT and btf_type.int_bits == 8 * size and size in (1, 2, 4, 8):
            return BtfInteger(size=size, signed=bool(btf_type.int_encoding & BTF_INT_SIGNED))
        if btf_type.kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64) and size in (1, 2, 4, 8):
            return BtfInteger(size=size, signed=btf_type.kind_flag)
        return None

    def find_datasec(self, name: str) -> BtfType | None:
        """The DATASEC describing ELF section ``name``, or ``None``."""
        for btf_type in self._types:
            if btf_type.kind == BTF_KIND_DATASEC and btf_type.name == name:
                return btf_type
        return None

    def pointed_array_length(self, type_id: int) -> int:
        """Decode ``int (*name)[N]``: the N of a pointer to an array."""
        pointer = self.skip_modifiers(type_id)
        if pointer.kind != BTF_KIND_PTR:
            raise ValueError(f"expected a pointer to an array, found {pointer.kind_name}")
        target = self.skip_modifiers(pointer.size_or_type)
        if target.array is None:
            raise ValueError(
                f"expected a pointer to an array, found a pointer to {target.kind_name}"
            )
        return target.array.element_count


def datasec_variables(btf: Btf, section_name: str) -> tuple[BtfVariable, ...]:
    """The variables the DATASEC of a global data section lays out; empty if there is none."""
    datasec = btf.find_datasec(section_name)
    if datasec is None:
        return ()
    variables = []
    for info in datasec.var_secinfos:
        var = btf.type(info.type_id)
        if var.kind != BTF_KIND_VAR:
            raise ValueError(
                f"malformed BTF: {section_name} entry {info.type_id} is a {var.kind_name}, "
                "expected a VAR"
            )
        variables.append(BtfVariable(var.name, info.offset, info.size, btf.integer(var.type_id)))
    return tuple(variables)


def parse_map_definitions(btf: Btf, section_name: str = ".maps") -> tuple[BtfMapDefinition, ...]:
    """Decode every map the DATASEC ``section_name`` declares; empty if there is none."""
    datasec = btf.find_datasec(section_name)
    if datasec is None:
        return ()
    return tuple(_map_definition(btf, info.type_id, section_name) for info in datasec.var_secinfos)


def _map_definition(btf: Btf, var_type_id: int, section_name: str) -> BtfMapDefinition:
    var = btf.type(var_type_id)
    if var.kind != BTF_KIND_VAR:
        raise ValueError(
            f"malformed BTF: {section_name} entry {var_type_id} is a "
            f"{var.kind_name}, expected a VAR"
        )
    definition = btf.skip_modifiers(var.size_or_type)
    if definition.kind != BTF_KIND_STRUCT:
        raise ValueError(
            f"map {var.name!r} in {section_name} is a {definition.kind_name}, expected a struct "
            "built with __uint()/__type() members"
        )
    numbers: dict[str, int] = {}
    integers: dict[str, BtfInteger | None] = {}
    for member in definition.members:
        if member.name in _NUMERIC_MAP_MEMBERS:
            try:
                value = btf.pointed_array_length(member.type_id)
            except ValueError as err:
                raise ValueError(
                    f"map {var.name!r}: member {member.name!r} must be declared with "
                    f"__uint({member.name}, N), i.e. int (*{member.name})[N]: {err}"
                ) from None
            field = member.name
        elif member.name in _TYPED_MAP_MEMBERS:
            pointer = btf.skip_modifiers(member.type_id)
            if pointer.kind != BTF_KIND_PTR:
                raise ValueError(
                    f"map {var.name!r}: member {member.name!r} must be declared with "
                    f"__type({member.name}, T), i.e. T *{member.name}"
                )
            value = btf.resolve_size(pointer.size_or_type)
            field = _TYPED_MAP_MEMBERS[member.name]
            integers[field] = btf.integer(pointer.size_or_type)
        else:
            raise ValueError(
                f"map {var.name!r}: definition member {member.name!r} is not supported by "
                "xdppacket's loader (it reads type, max_entries, map_flags, key/key_size, "
                "value/value_size); remove it"
            )
        if field in numbers and numbers[field] != value:
            raise ValueError(
                f"map {var.name!r}: {field} is given twice with different values "
                f"({numbers[field]} and {value})"
            )
        numbers[field] = value
    missing = [
        name for name in ("type", "key_size", "value_size", "max_entries") if name not in numbers
    ]
    if missing:
        raise ValueError(f"map {var.name!r}: its definition lacks {', '.join(missing)}")
    return BtfMapDefinition(
        name=var.name,
        map_type=numbers["type"],
        key_size=numbers["key_size"],
        value_size=numbers["value_size"],
        max_entries=numbers["max_entries"],
        map_flags=numbers.get("map_flags", 0),
        key_integer=integers.get("key_size"),
        value_integer=integers.get("value_size"),
    )
