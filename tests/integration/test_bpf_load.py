"""Loading XDP programs with xdppacket's own loader, against the real kernel.

Needs root and bpf(): tests/conftest.py skips these tests with the reason otherwise, and
fails them instead under XDPPACKET_REQUIRE_KERNEL=1. No interface is created; the link
test attaches to ``lo`` of the private network namespace pytest runs in.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

from tests.netns import PrivateNetns
from tests.unit.test_bpf_object import (
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
    assert prog_info.map_ids == (map_info.id,)
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
    map_fd = _bpf.map_get_fd_by_id(prog_info.map_ids[0])
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
        assert open_fd_count() == before + 2  # the program and xsks_map
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


def test_context_is_passed_to_the_program(xsk_program: LoadedBpfObject) -> None:
    context = bytes(_bpf.xdp_md(data_end=64, ingress_ifindex=LOOPBACK_IFINDEX))
    retval, _duration = _bpf.prog_test_run(xsk_program.prog_fd, bytes(64), ctx_in=context)
    assert retval == XDP_PASS


def test_live_frames_mode_runs(private_netns: PrivateNetns, xsk_program: LoadedBpfObject) -> None:
    # Frames really go through the program (here: passed to lo's stack in the private
    # namespace); the kernel reports no return value in this mode.
    context = bytes(_bpf.xdp_md(data_end=64, ingress_ifindex=LOOPBACK_IFINDEX))
    _bpf.prog_test_run(
        xsk_program.prog_fd,
        bytes(64),
        repeat=32,
        flags=_bpf.BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size=8,
        ctx_in=context,
    )


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
