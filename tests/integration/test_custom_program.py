"""Users' own XDP objects (``OptXDPProgram``) go through the same loader as the shipped one.

The first objects are built byte by byte with the ELF writer of the unit tests: a working
legacy-maps program that redirects through ``xsks_map``, one without that map, and one
the verifier rejects. The others are built from C in tests/bpf (committed built, rebuilt by
``make -C tests/bpf``): global variables and maps of several kinds, two programs in one
object, a frags-aware program. What the library says about them is checked against what
the kernel reports (bpf() info calls, /proc fdinfo) and what the programs count when run.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import VethPair, run_command
from tests.unit.test_bpf_object import build_bpf_elf, legacy_spec, mov64_imm
from tests.xdp_helpers import (
    BOTH_MODES,
    attached_prog_id,
    frames_from_peer,
    open_fd_count,
    read_frames,
    send_frames,
)
from xdppacket import BPFVerifierError, OptXDPMode, OptXDPProgram, XDPMode, XDPPacket
from xdppacket._bpf import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_MAP_TYPE_XSKMAP,
    BPF_XDP,
    link_create,
    map_get_info_by_fd,
    map_lookup,
    map_update,
    prog_get_info_by_fd,
    prog_test_run,
)
from xdppacket._bpf_object import read_bpf_object
from xdppacket._program import XskProgram

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



# --- Objects built from C (tests/bpf): global variables, maps, several programs, frags -------

BPF_DIR = Path(__file__).resolve().parents[1] / "bpf"
GLOBALS = str(BPF_DIR / "globals.o")
TWO_PROGRAMS = str(BPF_DIR / "two_programs.o")
FRAGS = str(BPF_DIR / "frags.o")
XDP_DROP, XDP_PASS = 1, 2


def possible_cpus() -> int:
    """Counted here from the kernel's list, independently of xdppacket._maps."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return sum(
        int(part.split("-")[-1]) - int(part.split("-")[0]) + 1 for part in text.split(",")
    )


def fdinfo(fd: int) -> dict[str, str]:
    lines = Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


@pytest.fixture
def globals_program(veth_pair: VethPair) -> Iterator[XskProgram]:
    """tests/bpf/globals.o attached to the capture end in generic mode, released after."""
    program = XskProgram.acquire(veth_pair.capture, veth_pair.capture_index, XDPMode.SKB, 1,
                                 GLOBALS, 0)
    yield program
    program.release()


def test_maps_are_what_the_source_declares_and_the_kernel_reports(globals_program: XskProgram) -> None:
    loaded = globals_program.program
    assert sorted(loaded.maps) == ["flows", "lengths", "per_cpu_frames", "xsks_map"]
    expected = {  # (type, key size, value size, max_entries) from globals.c; xsks_map resized
        "lengths": (BPF_MAP_TYPE_HASH, 4, 8, 16),
        "per_cpu_frames": (BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 2),
        "flows": (BPF_MAP_TYPE_ARRAY, 4, 16, 4),
        "xsks_map": (BPF_MAP_TYPE_XSKMAP, 4, 4, 1),
    }
    for name, numbers in expected.items():
        bpf_map = loaded.maps[name]
        kernel = map_get_info_by_fd(loaded.map_fd(name))
        assert (kernel.type, kernel.key_size, kernel.value_size, kernel.max_entries) == numbers, name
        assert (bpf_map.map_type, bpf_map.key_size, bpf_map.value_size, bpf_map.max_entries) == numbers
    prog_maps = set(prog_get_info_by_fd(loaded.prog_fd).map_ids)
    data_maps = {name: map_get_info_by_fd(loaded.map_fd(name)) for name in (".data", ".bss", ".rodata")}
    assert {info.id for info in data_maps.values()} <= prog_maps
    for name, size in ((".data", 16), (".bss", 8), (".rodata", 10)):
        info = data_maps[name]
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (
            BPF_MAP_TYPE_ARRAY, 4, size, 1), name


def test_rodata_is_frozen_and_refuses_writes(globals_program: XskProgram) -> None:
    loaded = globals_program.program
    rodata_fd = loaded.map_fd(".rodata")
    assert fdinfo(rodata_fd)["frozen"] == "1"
    assert fdinfo(loaded.map_fd(".data"))["frozen"] == "0"
    with pytest.raises(PermissionError):  # the kernel itself refuses
        map_update(rodata_fd, bytes(4), bytes(10))
    with pytest.raises(TypeError, match=r"'verdict' is in \.rodata, which is read-only"):
        loaded.global_variables["verdict"] = XDP_DROP
    assert loaded.global_variables["verdict"] == XDP_PASS


def test_global_variables_start_as_the_source_says(globals_program: XskProgram) -> None:
    variables = globals_program.program.global_variables
    assert dict(variables) == {
        "frames": 0,
        "last_length": -1,  # signed: __s32
        "bytes_seen": 7,
        "verdict": XDP_PASS,
        "banner": b"hello\0",  # not an integer: bytes
    }


def test_the_program_counts_and_python_reads_and_writes_its_state(globals_program: XskProgram) -> None:
    loaded = globals_program.program
    variables, lengths, per_cpu = loaded.global_variables, loaded.maps["lengths"], loaded.maps["per_cpu_frames"]
    retval, _ = prog_test_run(loaded.prog_fd, bytes(64), repeat=5)
    assert retval == XDP_PASS  # the .rodata verdict, for a queue without socket
    assert (variables["frames"], variables["bytes_seen"], variables["last_length"]) == (5, 7 + 5 * 64, 64)
    assert lengths[64] == 5
    assert map_lookup(loaded.map_fd("lengths"), (64).to_bytes(4, "little"), 8) == (5).to_bytes(8, "little")
    counts = per_cpu[0]
    assert isinstance(counts, tuple)
    assert len(counts) == possible_cpus()
    assert sum(counts) == 5  # type: ignore[arg-type]
    variables["bytes_seen"] = 1000
    variables["last_length"] = -5
    assert variables["last_length"] == -5
    prog_test_run(loaded.prog_fd, bytes(100))
    assert (variables["frames"], variables["bytes_seen"], variables["last_length"]) == (6, 1100, 100)
    assert dict(lengths.items()) == {64: 5, 100: 1}


def test_a_variable_reader_and_writer_follow_the_program_and_fail_cleanly_once_it_is_closed(
    veth_pair: VethPair,
) -> None:
    program = XskProgram.acquire(veth_pair.capture, veth_pair.capture_index, XDPMode.SKB, 1, GLOBALS, 0)
    try:
        variables = program.program.global_variables
        frames, last_length = variables.reader("frames"), variables.reader("last_length")
        set_frames, set_last_length = variables.writer("frames"), variables.writer("last_length")
        assert (frames(), last_length()) == (0, -1)  # signed as the variable is
        prog_test_run(program.program.prog_fd, bytes(64), repeat=3)
        assert (frames(), last_length()) == (3, 64)  # the program's own writes, read live
        variables["frames"] = 41
        assert frames() == 41
        set_frames(7)
        set_last_length(-9)
        assert (variables["frames"], variables["last_length"]) == (7, -9)
        prog_test_run(program.program.prog_fd, bytes(70))
        assert (frames(), last_length()) == (8, 70)  # the program counted on from what was written
        with pytest.raises(ValueError, match="does not fit"):
            set_frames(-1)
        for make in (variables.reader, variables.writer):
            with pytest.raises(TypeError, match="'banner' is not an integer"):
                make("banner")
            with pytest.raises(KeyError, match="no global variable named 'nope'"):
                make("nope")
        with pytest.raises(TypeError, match="read-only once the program is loaded"):
            variables.writer("verdict")
    finally:
        program.release()
    with pytest.raises(ValueError, match="mmap closed"):  # unmapped with the program: an error, not a stale read
        frames()
    with pytest.raises(ValueError, match="mmap closed"):
        set_frames(1)


def test_maps_read_write_delete_and_iterate(globals_program: XskProgram) -> None:
    maps = globals_program.program.maps
    lengths, flows, per_cpu = maps["lengths"], maps["flows"], maps["per_cpu_frames"]
    lengths[99] = 3
    lengths[(7).to_bytes(4, "little")] = (8).to_bytes(8, "little")  # bytes work too
    assert (lengths[99], lengths[7], len(lengths), sorted(lengths)) == (3, 8, 2, [7, 99])
    del lengths[99]
    with pytest.raises(KeyError):
        _ = lengths[99]
    with pytest.raises(KeyError):
        del lengths[12345]
    assert 7 in lengths
    assert 99 not in lengths
    key = bytes(range(12)) + (443).to_bytes(4, "little")
    flows[1] = key
    assert flows[1] == key
    assert len(flows) == 4
    assert list(flows) == [0, 1, 2, 3]
    with pytest.raises(TypeError, match="not an integer: pass bytes"):
        flows[2] = 5
    with pytest.raises(ValueError, match="is 16 bytes, got 3"):
        flows[2] = b"abc"
    with pytest.raises(TypeError, match="is an array"):
        del flows[1]
    with pytest.raises(ValueError, match="unsigned 32-bit integer; -1 does not fit"):
        lengths[-1] = 1
    per_cpu[1] = 7
    assert per_cpu[1] == (7,) * possible_cpus()
    per_cpu[1] = tuple(range(possible_cpus()))
    assert per_cpu[1] == tuple(range(possible_cpus()))
    with pytest.raises(ValueError, match="one per possible CPU"):
        per_cpu[1] = (1,) * (possible_cpus() + 1)


def test_a_full_hash_map_says_which_map(globals_program: XskProgram) -> None:
    lengths = globals_program.program.maps["lengths"]
    for length in range(16):
        lengths[length] = length
    with pytest.raises(OSError, match="writing key 16 of map 'lengths' failed") as caught:
        lengths[16] = 16
    assert caught.value.errno == errno.E2BIG


def test_a_released_program_refuses_access(veth_pair: VethPair) -> None:
    program = XskProgram.acquire(veth_pair.capture, veth_pair.capture_index, XDPMode.SKB, 1, GLOBALS, 0)
    loaded = program.program
    lengths = loaded.maps["lengths"]
    before = open_fd_count()
    program.release()
    assert open_fd_count() == before - 1 - 8  # the link, the program and its 7 maps
    with pytest.raises(ValueError, match="closed"):
        _ = loaded.global_variables["frames"]
    with pytest.raises(ValueError, match="closed"):
        lengths[1] = 1
    assert attached_prog_id(veth_pair.capture_index) == 0


def test_sockets_see_the_counts_of_frames_they_receive(veth_pair: VethPair) -> None:
    frames = frames_from_peer(veth_pair, 12)
    with XDPPacket(veth_pair.capture, OptXDPMode(XDPMode.SKB), OptXDPProgram(GLOBALS)) as sock:
        send_frames(veth_pair.peer, frames)
        assert read_frames(sock, len(frames), "read_multi_packets", batch=16)[0] == frames
        variables = sock.program.global_variables
        assert variables["frames"] >= len(frames)  # type: ignore[operator]
        lengths = sock.program.maps["lengths"]
        assert sum(lengths[len(f)] for f in set(frames)) >= len(frames)  # type: ignore[misc]


def test_one_of_several_programs_is_chosen_by_name(veth_pair: VethPair) -> None:
    with pytest.raises(ValueError, match=r"two_programs\.o.*several XDP programs \['first', 'second'\]"):
        XskProgram.acquire(veth_pair.capture, veth_pair.capture_index, XDPMode.SKB, 1, TWO_PROGRAMS, 0)
    program = XskProgram.acquire(veth_pair.capture, veth_pair.capture_index, XDPMode.SKB, 1,
                                 TWO_PROGRAMS, 0, program_name="second")
    try:
        loaded = program.program
        assert prog_get_info_by_fd(loaded.prog_fd).name == "second"
        assert attached_prog_id(veth_pair.capture_index) == prog_get_info_by_fd(loaded.prog_fd).id
        assert prog_test_run(loaded.prog_fd, bytes(64), repeat=3)[0] == XDP_DROP
        assert dict(loaded.global_variables) == {"calls_of_first": 0, "calls_of_second": 3}
        with pytest.raises(ValueError, match=r"two_programs\.o \(program 'second'\)"):
            XskProgram.acquire(veth_pair.capture, veth_pair.capture_index, XDPMode.SKB, 1,
                               TWO_PROGRAMS, 0, program_name="first")
    finally:
        program.release()


def test_frags_program_sees_whole_jumbo_frames(make_veth) -> None:
    pair = make_veth()
    for ifname in (pair.capture, pair.peer):
        run_command("ip", "link", "set", "dev", ifname, "mtu", "9000")
    frags = read_bpf_object(FRAGS)
    assert frags.program().frags
    with frags.load({"xsks_map": 1}) as loaded:
        assert prog_test_run(loaded.prog_fd, bytes(9000))[0] == XDP_PASS
        assert map_lookup(loaded.map_fds[".bss"], bytes(4), 8) == (9000).to_bytes(8, "little")
        # The kernel lets only frags-aware programs run natively on a 9000-byte MTU veth.
        os.close(link_create(loaded.prog_fd, pair.capture_index, BPF_XDP, XDPMode.DRV))
    single_buffer = dataclasses.replace(
        frags, programs=(dataclasses.replace(frags.program(), section_name="xdp"),)
    )
    with single_buffer.load({"xsks_map": 1}) as loaded, pytest.raises(OSError, match="BPF_LINK_CREATE") as caught:
        link_create(loaded.prog_fd, pair.capture_index, BPF_XDP, XDPMode.DRV)
    assert caught.value.errno == errno.ERANGE
