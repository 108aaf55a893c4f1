"""Which capture filter an attached XDP program runs, recorded next to it in the kernel.

All sockets of one interface share one program, hence one filter. A process joining the
program another process attached learns *whether* that program is the one it would load
by comparing the kernel's tags (see ``_program``); this record tells it *what* the other
process asked for, so the refusal can name both filters.

The record is a one-element read-only array map named ``xdpp_filter`` whose value is the
filter's option text (``OptFilter('udp port 53')``). The attaching process binds it to
the program (``BPF_PROG_BIND_MAP``) before attaching: the program's code never reads it,
the kernel keeps it as long as the program and lists it among the program's maps, and
the program's tag does not change. A program without the record has no filter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from . import _bpf
from .filter import CompiledFilter

__all__ = ["FILTER_RECORD_MAP_NAME", "NO_FILTER_TEXT", "filter_text", "read_filter_record",
           "record_filter"]

FILTER_RECORD_MAP_NAME = "xdpp_filter"
#: How messages name the absence of a filter.
NO_FILTER_TEXT = "no OptFilter"
_KEY = bytes(4)


def filter_text(capture_filter: CompiledFilter | None) -> str:
    """``OptFilter('udp port 53')``, or ``no OptFilter``: how messages name a filter."""
    return NO_FILTER_TEXT if capture_filter is None else capture_filter.option_text


def record_filter(prog_fd: int, capture_filter: CompiledFilter | None) -> None:
    """Bind the record of ``capture_filter`` to the loaded program (nothing for no filter)."""
    if capture_filter is None:
        return
    text = filter_text(capture_filter).encode()
    map_fd = _bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, len(_KEY), len(text), 1,
                             FILTER_RECORD_MAP_NAME, _bpf.BPF_F_RDONLY_PROG)
    try:
        _bpf.map_update(map_fd, _KEY, text)
        _bpf.map_freeze(map_fd)
        _bpf.prog_bind_map(prog_fd, map_fd)
    finally:
        os.close(map_fd)  # the program holds the map from here on


def read_filter_record(map_fds: Mapping[str, int]) -> str:
    """The filter text recorded among a program's maps (by name), or ``no OptFilter``."""
    map_fd = map_fds.get(FILTER_RECORD_MAP_NAME)
    if map_fd is None:
        return NO_FILTER_TEXT
    value = _bpf.map_lookup(map_fd, _KEY, _bpf.map_get_info_by_fd(map_fd).value_size)
    return NO_FILTER_TEXT if value is None else value.decode("utf-8", errors="replace")
