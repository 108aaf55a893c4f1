"""Users' own XDP objects (``OptXDPProgram``) go through the same loader as the shipped one.

The objects are built byte by byte with the ELF writer of the unit tests: a working
legacy-maps program that redirects through ``xsks_map``, one without that map, and one
the verifier rejects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.netns import VethPair
from tests.unit.test_bpf_object import BPF_MAP_TYPE_ARRAY, build_bpf_elf, legacy_spec, mov64_imm
from tests.xdp_helpers import (
    BOTH_MODES,
    attached_prog_id,
    frames_from_peer,
    open_fd_count,
    read_frames,
    send_frames,
)
from xdppacket import BPFVerifierError, OptXDPMode, OptXDPProgram, XDPMode, XDPPacket
from xdppacket._bpf import prog_get_info_by_fd

# r2 is read before anything wrote it: the verifier refuses the program.
READS_UNINITIALISED_R2 = bytes.fromhex("bf20000000000000") + mov64_imm(0, 2) + bytes.fromhex("9500000000000000")


def write_object(tmp_path: Path, data: bytes, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@BOTH_MODES
def test_own_object_captures_frames(veth_pair: VethPair, mode: XDPMode, tmp_path: Path) -> None:
    path = write_object(tmp_path, build_bpf_elf(legacy_spec()), "legacy.o")
    frames = frames_from_peer(veth_pair, 20)
    with XDPPacket(veth_pair.capture, OptXDPMode(mode), OptXDPProgram(path)) as sock:
        assert prog_get_info_by_fd(sock.program.prog_fd).name == "legacy_prog"
        assert attached_prog_id(veth_pair.capture_index) == prog_get_info_by_fd(sock.program.prog_fd).id
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, len(frames), "read_multi_packets", batch=16)[0] == frames
    assert attached_prog_id(veth_pair.capture_index) == 0


def test_object_without_xsks_map_is_refused(veth_pair: VethPair, tmp_path: Path) -> None:
    spec = legacy_spec(xsk_map_type=BPF_MAP_TYPE_ARRAY)
    path = write_object(tmp_path, build_bpf_elf(spec), "no-xskmap.o")
    before = open_fd_count()
    with pytest.raises(ValueError, match=r"no-xskmap\.o.*BPF_MAP_TYPE_XSKMAP"):
        XDPPacket(veth_pair.capture, OptXDPProgram(path))
    assert attached_prog_id(veth_pair.capture_index) == 0
    assert open_fd_count() == before


def test_verifier_rejection_reaches_the_user_with_its_log(veth_pair: VethPair, tmp_path: Path) -> None:
    spec = legacy_spec(program=READS_UNINITIALISED_R2)
    spec.symbols[0].size = len(READS_UNINITIALISED_R2)
    spec.relocations = []
    path = write_object(tmp_path, build_bpf_elf(spec), "rejected.o")
    before = open_fd_count()
    with pytest.raises(BPFVerifierError) as caught:
        XDPPacket(veth_pair.capture, OptXDPProgram(path))
    assert "R2 !read_ok" in caught.value.log
    assert attached_prog_id(veth_pair.capture_index) == 0
    assert open_fd_count() == before


def test_missing_object_is_refused_before_anything_happens(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"OptXDPProgram\('.*missing\.o'\): no such file"):
        OptXDPProgram(str(tmp_path / "missing.o"))
    with pytest.raises(TypeError, match="OptXDPProgram takes a path"):
        OptXDPProgram(42)  # type: ignore[arg-type]


def test_sockets_of_one_interface_must_agree_on_the_program(veth_pair: VethPair, tmp_path: Path) -> None:
    path = write_object(tmp_path, build_bpf_elf(legacy_spec()), "legacy.o")
    with XDPPacket(veth_pair.capture, OptXDPProgram(path)), pytest.raises(ValueError, match="same OptXDPProgram"):
        XDPPacket(veth_pair.capture)

