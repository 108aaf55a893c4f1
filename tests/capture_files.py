"""Reading capture files the way other tools do, for tests: tcpdump, tshark, dpkt, raw pcapng blocks.

Each reader returns ``Record`` values (time, stored bytes, wire length, interface name) so
tests compare what every tool saw with what was written. Plain functions, no pytest.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import dpkt

__all__ = [
    "Record",
    "dpkt_records",
    "isb_interface",
    "isb_options",
    "parse_tcpdump",
    "pcapng_blocks",
    "tcpdump_command",
    "tcpdump_records",
    "tshark_records",
]

#: tcpdump printing what the records hold: epoch time in ns, MACs and length, hex of every byte.
TCPDUMP_ARGS = ("-nn", "-e", "-tt", "--time-stamp-precision=nano", "-xx")


@dataclass(frozen=True)
class Record:
    """One frame as a reader reports it (``interface``: pcapng's name, as tshark shows it)."""

    timestamp_ns: int
    data: bytes
    length: int
    interface: str = ""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed: run `make setup` (the Makefile's TEST_TOOLS)")
    return path


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {result.stderr}")
    return result.stdout


def epoch_ns(text: str) -> int:
    seconds, _, fraction = text.partition(".")
    return int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9])


def tcpdump_command(source: str) -> list[str]:
    """tcpdump reading ``source`` (a path, or "-" for standard input) as ``parse_tcpdump`` wants."""
    return [_tool("tcpdump"), "-r", source, *TCPDUMP_ARGS]


def parse_tcpdump(output: str) -> list[Record]:
    """Records from tcpdump's output: a header line (time, MACs, length), then hex lines."""
    records: list[tuple[int, int, list[str]]] = []
    for line in output.splitlines():
        if line.startswith("\t0x"):
            records[-1][2].append(line.split(":", 1)[1].replace(" ", ""))
        else:
            length = re.search(r", length (\d+)", line)
            if length is None:
                raise ValueError(f"not a tcpdump -e header line: {line!r}")
            records.append((epoch_ns(line.split()[0]), int(length.group(1)), []))
    return [Record(ts, bytes.fromhex("".join(hex_lines)), length) for ts, length, hex_lines in records]


def tcpdump_records(path: Path) -> list[Record]:
    return parse_tcpdump(_run(*tcpdump_command(str(path))))


def tshark_records(path: Path) -> list[Record]:
    """tshark's view: every frame's raw bytes, epoch time, wire length and interface name."""
    packets = json.loads(_run(_tool("tshark"), "-r", str(path), "-T", "json", "-x"))
    records = []
    for packet in packets:
        layers = packet["_source"]["layers"]
        frame = layers["frame"]
        records.append(Record(
            epoch_ns(frame["frame.time_epoch"]),
            bytes.fromhex(layers["frame_raw"][0]),
            int(frame["frame.len"]),
            frame.get("frame.interface_id_tree", {}).get("frame.interface_name", ""),
        ))
    return records


def dpkt_records(path: Path) -> list[tuple[Decimal | float, bytes]]:
    """dpkt's view: (timestamp in seconds, data); a ``Decimal`` only for nanosecond pcap."""
    with path.open("rb") as file:
        reader = dpkt.pcapng.Reader(file) if path.suffix == ".pcapng" else dpkt.pcap.Reader(file)
        return [(timestamp, bytes(data)) for timestamp, data in reader]


def pcapng_blocks(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(block type, whole block) of a little-endian pcapng file, checking each trailer."""
    offset = 0
    while offset < len(data):
        block_type, length = struct.unpack_from("<II", data, offset)
        if struct.unpack_from("<I", data, offset + length - 4)[0] != length:
            raise ValueError(f"pcapng block at {offset}: trailer differs from its length {length}")
        yield block_type, data[offset : offset + length]
        offset += length


def isb_interface(block: bytes) -> int:
    """The interface id of an interface statistics block (dpkt has no parser for these)."""
    return int(struct.unpack_from("<I", block, 8)[0])


def isb_options(block: bytes) -> dict[int, bytes]:
    """Option code -> value of an interface statistics block, parsed by hand."""
    options: dict[int, bytes] = {}
    offset = 20  # type, length, interface id, timestamp high and low
    while True:
        code, length = struct.unpack_from("<HH", block, offset)
        if code == 0:
            if offset + 4 + 4 != len(block):  # end of options, then the trailer
                raise ValueError("interface statistics block: bytes after the end of options")
            return options
        options[code] = block[offset + 4 : offset + 4 + length]
        offset += 4 + length + (-length % 4)
