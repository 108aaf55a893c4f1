"""Loading XDP programs with xdppacket's own loader, against the real kernel.

Needs root and bpf(): tests/conftest.py skips these tests with the reason otherwise, and
fails them instead under XDPPACKET_REQUIRE_KERNEL=1. No interface is created; the link
test attaches to ``lo`` of the private network namespace pytest runs in.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import PrivateNetns
from tests.unit.test_bpf_object import (
    BPF_MAP_TYPE_ARRAY,
    EXIT,
    LOAD_RX_QUEUE_INDEX_INTO_R2,
    build_bpf_elf,
    insn,
    legacy_spec,
)
from xdppacket import _bpf
from xdppacket._bpf_object import BpfObject, LoadedBpfObject, load_xsk_program
from xdppacket.errors import BPFVerifierError

XDP_PASS = 2
XDP_FLAGS_SKB_MODE = 2
LOOPBACK_IFINDEX = 1
# r0 = r2; exit: reads a register nothing initialised, which the verifier refuses.
UNINITIALISED_READ = insn(0xBF, dst=0, src=2) + EXIT


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves more (or fewer) fds open than it found."""
    before = open_fd_count()
    yield
    assert open_fd_count() == before, "the test leaked (or closed someone else's) fds"


@pytest.fixture
def xsk_program(no_fd_leak: None) -> Iterator[LoadedBpfObject]:
    """The shipped program with a 4-entry xsks_map, closed after the test."""
    with load_xsk_program(None, 4) as loaded:
        yield loaded


def test_shipped_program_loads_with_a_resized_xskmap(xsk_program: LoadedBpfObject) -> None:
    map_info = _bpf.map_get_info_by_fd(xsk_program.map_fds["xsks_map"])
    assert (
        map_info.type,
        map_info.max_entries,
        map_info.key_size,
        map_info.value_size,
        map_info.name,
    ) == (_bpf.BPF_MAP_TYPE_XSKMAP, 4, 4, 4, "xsks_map")
    prog_info = _bpf.prog_get_info_by_fd(xsk_program.prog_fd)
    assert (prog_info.type, prog_info.name) == (_bpf.BPF_PROG_TYPE_XDP, "xdp_sock_prog")
    # Its other map holds its globals: the clock offset and the metadata flag (_pcap_records).
    globals_info = _bpf.map_get_info_by_fd(xsk_program.map_fds[".bss"])
    assert sorted(prog_info.map_ids) == sorted([map_info.id, globals_info.id])
    assert (globals_info.type, globals_info.max_entries, globals_info.value_size) == (_bpf.BPF_MAP_TYPE_ARRAY, 1, 12)
    assert _bpf.obj_get_info_by_fd(xsk_program.prog_fd) == prog_info
    assert _bpf.obj_get_info_by_fd(xsk_program.map_fds["xsks_map"]) == map_info


def test_frame_on_a_queue_without_socket_passes(xsk_program: LoadedBpfObject) -> None:
    retval, _duration = _bpf.prog_test_run(xsk_program.prog_fd, bytes(64), repeat=1)
    assert retval == XDP_PASS


def test_info_of_the_wrong_kind_of_fd_is_refused(xsk_program: LoadedBpfObject) -> None:
    with pytest.raises(ValueError, match="is a BPF program, not a BPF map"):
        _bpf.map_get_info_by_fd(xsk_program.prog_fd)


def test_objects_reopen_by_id(xsk_program: LoadedBpfObject) -> None:
    prog_info = _bpf.prog_get_info_by_fd(xsk_program.prog_fd)
    prog_fd = _bpf.prog_get_fd_by_id(prog_info.id)
    xsks_map_id = _bpf.map_get_info_by_fd(xsk_program.map_fds["xsks_map"]).id
    assert xsks_map_id in prog_info.map_ids
    map_fd = _bpf.map_get_fd_by_id(xsks_map_id)
    try:
        assert _bpf.prog_get_info_by_fd(prog_fd).id == prog_info.id
        assert _bpf.map_get_info_by_fd(map_fd).name == "xsks_map"
    finally:
        os.close(prog_fd)
        os.close(map_fd)


def test_xskmap_refuses_a_non_socket_and_deletes_freely(xsk_program: LoadedBpfObject) -> None:
    xsks_map = xsk_program.map_fds["xsks_map"]
    with pytest.raises(OSError):  # noqa: PT011 - the errno differs between kernels
        _bpf.map_update_elem(xsks_map, 0, xsk_program.prog_fd)
    _bpf.map_delete_elem(xsks_map, 0)  # an empty slot: nothing to delete, no error
    with pytest.raises(OSError, match="Invalid argument"):
        _bpf.map_delete_elem(xsks_map, 4)  # beyond max_entries


def test_close_is_idempotent_and_releases_every_fd(no_fd_leak: None) -> None:
    before = open_fd_count()
    with load_xsk_program(None, 2) as loaded:
        assert open_fd_count() == before + 3  # the program, xsks_map and its globals (.bss)
    assert loaded.closed
    loaded.close()
    assert open_fd_count() == before
    with pytest.raises(ValueError, match="closed"):
        _ = loaded.prog_fd


def test_verifier_rejection_carries_the_log(no_fd_leak: None) -> None:
    with pytest.raises(BPFVerifierError) as caught:
        _bpf.prog_load(
            _bpf.BPF_PROG_TYPE_XDP,
            UNINITIALISED_READ,
            "GPL",
            name="bad",
            expected_attach_type=_bpf.BPF_XDP,
        )
    assert caught.value.log.strip()
    assert "R2 !read_ok" in caught.value.log
    assert "R2 !read_ok" in str(caught.value)


def test_failed_load_closes_the_maps_it_created(no_fd_leak: None) -> None:
    # The legacy object's maps are created, then its program is rejected.
    spec = legacy_spec()
    spec.sections[0].data = (
        LOAD_RX_QUEUE_INDEX_INTO_R2 + spec.sections[0].data[8:-8] + (UNINITIALISED_READ)
    )
    spec.symbols[0].size = len(spec.sections[0].data)
    bpf_object = BpfObject.parse(build_bpf_elf(spec))
    with pytest.raises(BPFVerifierError) as caught:
        bpf_object.load({"xsks_map": 2})
    assert caught.value.log


def test_hand_built_legacy_object_loads_and_passes(no_fd_leak: None) -> None:
    bpf_object = BpfObject.parse(build_bpf_elf(legacy_spec()))
    with bpf_object.load({"xsks_map": 3}) as loaded:
        assert set(loaded.map_fds) == {"xsks_map", "counters"}
        assert _bpf.map_get_info_by_fd(loaded.map_fds["xsks_map"]).max_entries == 3
        counters = _bpf.map_get_info_by_fd(loaded.map_fds["counters"])
        assert (counters.type, counters.value_size) == (2, 8)
        assert len(_bpf.prog_get_info_by_fd(loaded.prog_fd).map_ids) == 2
        assert _bpf.prog_test_run(loaded.prog_fd, bytes(64))[0] == XDP_PASS


# r0 = ctx->ingress_ifindex << 8 | ctx->rx_queue_index; exit: the answer depends on the context.
RETURNS_ITS_CONTEXT = (
    insn(0x61, dst=0, src=1, off=12)  # r0 = *(u32 *)(r1 + 12): ingress_ifindex
    + insn(0x67, dst=0, imm=8)  # r0 <<= 8
    + insn(0x61, dst=2, src=1, off=16)  # r2 = *(u32 *)(r1 + 16): rx_queue_index
    + insn(0x4F, dst=0, src=2)  # r0 |= r2
    + EXIT
)


def counting_program(counter_map_fd: int) -> bytes:
    """Adds one to the u64 at key 0 of an array map each run, then returns XDP_PASS."""
    return (
        insn(0x62, dst=10, off=-4, imm=0)  # *(u32 *)(r10 - 4) = 0: the key
        + insn(0xBF, dst=2, src=10)  # r2 = r10
        + insn(0x07, dst=2, imm=-4)  # r2 += -4
        + insn(0x18, dst=1, src=_bpf.BPF_PSEUDO_MAP_FD, imm=counter_map_fd) + insn(0)  # r1 = map
        + insn(0x85, imm=1)  # call bpf_map_lookup_elem
        + insn(0x15, dst=0, off=2, imm=0)  # if r0 == 0 goto +2
        + insn(0xB7, dst=1, imm=1)  # r1 = 1
        + insn(0xDB, dst=0, src=1, off=0, imm=0)  # lock *(u64 *)(r0 + 0) += r1
        + insn(0xB7, dst=0, imm=XDP_PASS)  # r0 = XDP_PASS
        + EXIT
    )


def test_context_is_passed_to_the_program(make_veth, no_fd_leak: None) -> None:
    pair = make_veth(queues=4)
    prog_fd = _bpf.prog_load(_bpf.BPF_PROG_TYPE_XDP, RETURNS_ITS_CONTEXT, "GPL", name="ctx",
                             expected_attach_type=_bpf.BPF_XDP)
    try:
        context = bytes(_bpf.xdp_md(data_end=64, ingress_ifindex=pair.capture_index, rx_queue_index=3))
        retval, _duration = _bpf.prog_test_run(prog_fd, bytes(64), ctx_in=context)
        assert retval == pair.capture_index << 8 | 3
        retval, _duration = _bpf.prog_test_run(prog_fd, bytes(64))  # no context: lo, queue 0
        assert retval == LOOPBACK_IFINDEX << 8
    finally:
        os.close(prog_fd)


def test_live_frames_mode_runs_the_program_once_per_frame(
    private_netns: PrivateNetns, no_fd_leak: None
) -> None:
    # Frames really go through the program (here: passed to lo's stack in the private
    # namespace); the kernel reports no return value in this mode, so the program counts.
    counter_fd = _bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "counter")
    try:
        prog_fd = _bpf.prog_load(_bpf.BPF_PROG_TYPE_XDP, counting_program(counter_fd), "GPL",
                                 name="count", expected_attach_type=_bpf.BPF_XDP)
        try:
            context = bytes(_bpf.xdp_md(data_end=64, ingress_ifindex=LOOPBACK_IFINDEX))
            _bpf.prog_test_run(prog_fd, bytes(64), repeat=32, flags=_bpf.BPF_F_TEST_XDP_LIVE_FRAMES,
                               batch_size=8, ctx_in=context)
            assert _bpf.map_lookup(counter_fd, bytes(4), 8) == (32).to_bytes(8, "little")
            _bpf.prog_test_run(prog_fd, bytes(64), repeat=5)  # not live: counts too
            assert _bpf.map_lookup(counter_fd, bytes(4), 8) == (37).to_bytes(8, "little")
        finally:
            os.close(prog_fd)
    finally:
        os.close(counter_fd)


def test_xdp_link_on_loopback(private_netns: PrivateNetns, xsk_program: LoadedBpfObject) -> None:
    link_fd = _bpf.link_create(
        xsk_program.prog_fd, LOOPBACK_IFINDEX, _bpf.BPF_XDP, XDP_FLAGS_SKB_MODE
    )
    try:
        link = _bpf.link_get_info_by_fd(link_fd)
        assert link.type == _bpf.BPF_LINK_TYPE_XDP
        assert link.ifindex == LOOPBACK_IFINDEX
        assert link.prog_id == _bpf.prog_get_info_by_fd(xsk_program.prog_fd).id
        link_ids = []
        next_id = _bpf.link_get_next_id(0)
        while next_id is not None:
            link_ids.append(next_id)
            next_id = _bpf.link_get_next_id(next_id)
        assert link.id in link_ids
        reopened = _bpf.link_get_fd_by_id(link.id)
        try:
            assert _bpf.obj_get_info_by_fd(reopened) == link
        finally:
            os.close(reopened)
    finally:
        os.close(link_fd)


def test_prog_test_run_reports_a_bad_fd() -> None:
    with pytest.raises(OSError, match="BPF_PROG_TEST_RUN"):
        _bpf.prog_test_run(-1 & 0xFFFFFFFF, struct.pack("!6s6sH", bytes(6), bytes(6), 0x88B5))


def test_the_shipped_programs_load_with_cap_bpf_and_cap_net_admin_alone() -> None:
    """README's Requirements: no CAP_PERFMON or CAP_SYS_ADMIN, so no pointer subtraction
    (the record lengths come from bpf_xdp_get_buff_len). Checked in a child process that
    lost both capabilities; the ptr - ptr version of the program was refused there."""
    script = (
        "from xdppacket._bpf_object import load_xsk_program\n"
        "for name in ('xdp_sock_prog', 'xdp_sock_prog_frags', 'xdp_sock_compat'):\n"
        "    with load_xsk_program(None, 1, name) as loaded:\n"
        "        print(loaded.program_name)\n"
    )
    result = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin,-perfmon", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["xdp_sock_prog", "xdp_sock_prog_frags", "xdp_sock_compat"]
    with load_xsk_program(None, 1) as loaded:  # this kernel takes the program with the lengths
        assert loaded.program_name == "xdp_sock_prog"
