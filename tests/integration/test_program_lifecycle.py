"""Attaching, joining and releasing the XDP program (``XskProgram``) when things go wrong.

Another process's program is played by the test itself: it loads the shipped program and
attaches it with its own BPF link, as a second xdppacket process would. Failures are
injected with monkeypatch at the exact call that fails in real life; every test counts the
process's open descriptors before and after, and checks what netlink says is attached.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import VethPair
from tests.xdp_helpers import attached_prog_id, open_fd_count
from xdppacket import XDPMode, XDPPacket, _bpf, _interface, _program
from xdppacket._bpf_object import LoadedBpfObject, load_xsk_program, read_bpf_object
from xdppacket._program import XskProgram
from xdppacket.errors import BPFVerifierError

SKB = XDPMode.SKB
XDP_PASS = 2
REPOSITORY = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
# r0 = XDP_PASS; exit
XDP_PASS_PROGRAM = bytes.fromhex("b700000002000000" "9500000000000000")


def acquire(pair: VethPair, queue_count: int = 1) -> XskProgram:
    return XskProgram.acquire(pair.capture, pair.capture_index, SKB, queue_count, None, 0)


class OtherProcess:
    """The shipped program attached through a link this object holds, like another process."""

    def __init__(self, ifindex: int) -> None:
        self.ifindex = ifindex
        self.loaded: LoadedBpfObject = load_xsk_program(None, 2)
        self.prog_id = _bpf.prog_get_info_by_fd(self.loaded.prog_fd).id
        self.link_fd: int | None = _bpf.link_create(self.loaded.prog_fd, ifindex, _bpf.BPF_XDP, SKB)

    def exit(self) -> None:
        """Close the link and program, as the kernel does when the process exits."""
        if self.link_fd is not None:
            os.close(self.link_fd)
            self.link_fd = None
        self.loaded.close()


@pytest.fixture
def other_process(veth_pair: VethPair) -> Iterator[OtherProcess]:
    holder = OtherProcess(veth_pair.capture_index)
    yield holder
    holder.exit()


# --- Joining a program whose link vanishes -------------------------------------------------


def test_join_retries_when_a_new_program_replaced_the_link(
    veth_pair: VethPair, other_process: OtherProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    replacement: list[OtherProcess] = []
    real_find = _program._find_xdp_link

    def link_vanishes_once(ifindex: int, prog_id: int) -> int | None:
        if not replacement:
            # Between netlink's answer and the link lookup, the last holder exits and
            # another process attaches a fresh program.
            other_process.exit()
            replacement.append(OtherProcess(ifindex))
            return real_find(ifindex, prog_id)  # finds nothing: that program is gone
        return real_find(ifindex, prog_id)

    monkeypatch.setattr(_program, "_find_xdp_link", link_vanishes_once)
    program = acquire(veth_pair)
    try:
        assert not program.attached_here
        assert _bpf.prog_get_info_by_fd(program.prog_fd).id == replacement[0].prog_id
    finally:
        program.release()
        replacement[0].exit()
    assert attached_prog_id(veth_pair.capture_index) == 0


def test_join_attaches_its_own_when_the_link_vanished(
    veth_pair: VethPair, other_process: OtherProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find = _program._find_xdp_link

    def holder_exits(ifindex: int, prog_id: int) -> int | None:
        other_process.exit()
        return real_find(ifindex, prog_id)

    monkeypatch.setattr(_program, "_find_xdp_link", holder_exits)
    program = acquire(veth_pair)
    try:
        assert program.attached_here
        assert attached_prog_id(veth_pair.capture_index) == _bpf.prog_get_info_by_fd(program.prog_fd).id
    finally:
        program.release()
    assert attached_prog_id(veth_pair.capture_index) == 0


# --- No descriptor left behind -------------------------------------------------------------


def failing(message: str):
    def fail(*_args: object, **_kwargs: object) -> object:
        raise OSError(errno.EIO, message)

    return fail


@pytest.mark.parametrize("call", ["link_get_info_by_fd", "map_get_info_by_fd", "prog_get_info_by_fd"])
def test_join_failures_close_what_they_opened(
    veth_pair: VethPair, other_process: OtherProcess, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    before = open_fd_count()
    monkeypatch.setattr(_bpf, call, failing(f"injected {call} failure"))
    with pytest.raises(OSError, match=f"{veth_pair.capture} queue 0: injected {call} failure"):
        acquire(veth_pair)
    assert open_fd_count() == before
    assert attached_prog_id(veth_pair.capture_index) == other_process.prog_id


def test_interrupt_right_after_link_create_detaches(
    veth_pair: VethPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link_create = _bpf.link_create

    def interrupted(*args: int) -> int:
        real_link_create(*args)  # the kernel made the link; its fd never reaches the caller
        raise KeyboardInterrupt

    before = open_fd_count()
    monkeypatch.setattr(_bpf, "link_create", interrupted)
    with pytest.raises(KeyboardInterrupt):
        acquire(veth_pair)
    assert open_fd_count() == before
    assert attached_prog_id(veth_pair.capture_index) == 0


def test_release_closes_everything_when_one_close_fails(
    veth_pair: VethPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = open_fd_count()
    program = acquire(veth_pair)
    # link, program, xsks_map, the globals (.bss) and their mapping (mmap keeps a dup of the fd)
    assert open_fd_count() == before + 5
    real_close = os.close
    refused: list[int] = []

    def close_fails_once(fd: int) -> None:
        if not refused:
            refused.append(fd)
            raise OSError(errno.EIO, "injected close failure")
        real_close(fd)

    monkeypatch.setattr(os, "close", close_fails_once)
    try:
        with pytest.raises(OSError, match="injected close failure"):
            program.release()
    finally:
        monkeypatch.undo()
    assert open_fd_count() == before + 1  # only the fd whose close failed
    os.close(refused[0])
    assert open_fd_count() == before
    assert attached_prog_id(veth_pair.capture_index) == 0
    program = acquire(veth_pair)  # the registry forgot it: a new one attaches
    program.release()


# --- The registry key is the calling thread's network namespace ---------------------------


def test_a_thread_in_another_namespace_gets_its_own_program(veth_pair: VethPair) -> None:
    main_program = XskProgram.acquire("lo", 1, SKB, 1, None, 0)
    results: dict[str, object] = {}

    def in_new_namespace() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:  # this thread only
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            results["namespace"] = _interface.network_namespace_id()
            program = XskProgram.acquire("lo", 1, SKB, 1, None, 0)  # lo is ifindex 1 here too
            try:
                results["same_object"] = program is main_program
                results["attached_here"] = program.attached_here
                results["attached_id"] = attached_prog_id(1)
                results["prog_id"] = _bpf.prog_get_info_by_fd(program.prog_fd).id
            finally:
                program.release()
        except BaseException as error:
            results["error"] = error

    try:
        thread = threading.Thread(target=in_new_namespace)
        thread.start()
        thread.join(30)
        assert "error" not in results, results.get("error")
        assert results["namespace"] != _interface.network_namespace_id()
        assert results["same_object"] is False
        assert results["attached_here"] is True
        assert results["attached_id"] == results["prog_id"]
        assert results["prog_id"] != _bpf.prog_get_info_by_fd(main_program.prog_fd).id
    finally:
        main_program.release()


# --- Running out of descriptors --------------------------------------------------------------


EMFILE_HINT = r"too many open files: raise the limit with `ulimit -n`"


def test_out_of_descriptors_is_not_a_missing_interface(veth_pair: VethPair) -> None:
    def attempt() -> None:
        _interface.interface_index(veth_pair.capture)

    with pytest.raises(OSError, match=EMFILE_HINT) as caught:
        run_without_descriptors(attempt)
    assert caught.value.errno == errno.EMFILE
    assert not isinstance(caught.value, FileNotFoundError)


def test_out_of_descriptors_is_not_a_verifier_rejection() -> None:
    def attempt() -> None:
        _bpf.prog_load(_bpf.BPF_PROG_TYPE_XDP, XDP_PASS_PROGRAM, "GPL", name="pass")

    with pytest.raises(OSError, match=EMFILE_HINT) as caught:
        run_without_descriptors(attempt)
    assert caught.value.errno == errno.EMFILE
    assert not isinstance(caught.value, BPFVerifierError)


def test_out_of_descriptors_when_opening_a_socket(veth_pair: VethPair) -> None:
    with pytest.raises(OSError, match=EMFILE_HINT) as caught:
        run_without_descriptors(lambda: XDPPacket(veth_pair.capture).close())
    assert caught.value.errno == errno.EMFILE
    assert attached_prog_id(veth_pair.capture_index) == 0


def run_without_descriptors(attempt) -> None:
    """Run ``attempt`` with every descriptor below a lowered limit taken; restore after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
    try:
        while True:
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as error:
                if error.errno != errno.EMFILE:
                    raise
                break
        attempt()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- Without privileges ----------------------------------------------------------------------


def test_without_capabilities_the_error_names_interface_and_queue(veth_pair: VethPair) -> None:
    code = (
        "import errno\n"
        "from xdppacket import XDPPacket, OptXDPMode, XDP_MODE_SKB\n"
        "try:\n"
        f"    XDPPacket({veth_pair.capture!r}, OptXDPMode(XDP_MODE_SKB))\n"
        "except OSError as error:\n"
        "    print(type(error).__name__, errno.errorcode[error.errno], error.strerror)\n"
    )
    # Root without any capability, as an unprivileged user would be for bpf().
    result = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--",
         sys.executable, "-c", code],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"PermissionError EPERM opening {veth_pair.capture} queue 0: "), result.stdout
    assert "bpf(BPF_MAP_CREATE)" in result.stdout
    assert "Operation not permitted" in result.stdout
    assert "CAP_BPF" in result.stdout
    assert attached_prog_id(veth_pair.capture_index) == 0


# --- Joining a custom program: its maps and variables are the other process's -------------

GLOBALS = str(REPOSITORY / "tests" / "bpf" / "globals.o")


def test_joined_program_shows_the_maps_and_variables_of_the_one_attached(
    veth_pair: VethPair,
) -> None:
    bpf_object = read_bpf_object(GLOBALS)
    with bpf_object.load({"xsks_map": 2}) as other:
        link_fd = _bpf.link_create(other.prog_fd, veth_pair.capture_index, _bpf.BPF_XDP, SKB)
        try:
            _bpf.prog_test_run(other.prog_fd, bytes(80), repeat=4)  # the other process's traffic
            before = open_fd_count()
            program = XskProgram.acquire(veth_pair.capture, veth_pair.capture_index, SKB, 1, GLOBALS, 0)
            try:
                assert not program.attached_here
                # The link, the program and the 6 maps its code uses: a map the code never
                # references (flows) is not the program's as far as the kernel knows.
                assert open_fd_count() == before + 1 + 1 + 6
                assert sorted(program.program.maps) == ["lengths", "per_cpu_frames", "xsks_map"]
                variables = program.program.global_variables
                assert (variables["frames"], variables["bytes_seen"], variables["verdict"]) == (4, 7 + 320, XDP_PASS)
                assert program.program.maps["lengths"][80] == 4
                variables["bytes_seen"] = 0  # the same memory the other process's program uses
                assert _bpf.map_lookup(other.map_fds[".data"], bytes(4), 16)[8:] == bytes(8)  # type: ignore[index]
            finally:
                program.release()
            assert open_fd_count() == before
        finally:
            os.close(link_fd)
