"""xdppacket.testing against the kernel: namespaces really made and left, veth pairs made and
deleted (also when the block raises), and run_xdp's action and exact output frame."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import (
    AfPacketCapture,
    AfPacketSender,
    PrivateNetns,
    make_test_frame,
    run_command,
)
from tests.xdp_helpers import wait_until
from xdppacket import BPFVerifierError, _bpf
from xdppacket.testing import XDPAction, in_private_netns, private_netns, run_xdp, veth_pair

_REPO_ROOT = Path(__file__).resolve().parents[2]
_ETH_P_ALL = 0x0003
_SHIPPED_OBJECT = _REPO_ROOT / "xdppacket" / "xdpsock_kern.o"
_insn = struct.Struct("<BBhi").pack  # code, (src_reg << 4) | dst_reg, off, imm


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _interfaces() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


@pytest.fixture
def pytest_netns(request: pytest.FixtureRequest) -> PrivateNetns:
    """The private namespace pytest runs in (conftest's ``private_netns`` fixture)."""
    netns: PrivateNetns = request.getfixturevalue("private_netns")
    return netns


# --------------------------------------------------------------------------------------------
# private_netns


def test_private_netns_enters_an_empty_namespace_and_comes_back(pytest_netns: PrivateNetns) -> None:
    outside = _netns_inode()
    with private_netns() as netns:
        assert (netns.inode, netns.original_inode) == (_netns_inode(), outside)
        assert netns.inode != outside
        assert in_private_netns()
        assert _interfaces() == {"lo"}
        assert Path("/proc/sys/net/ipv6/conf/default/disable_ipv6").read_text() == "1\n"
    assert _netns_inode() == outside


def test_private_netns_comes_back_when_the_block_raises(pytest_netns: PrivateNetns) -> None:
    outside = _netns_inode()
    with pytest.raises(KeyError), private_netns():
        raise KeyError("boom")
    assert _netns_inode() == outside


def test_nested_namespaces_each_return_to_their_origin(pytest_netns: PrivateNetns) -> None:
    with private_netns() as outer:
        with private_netns() as inner:
            assert inner.original_inode == outer.inode
        assert _netns_inode() == outer.inode
        assert in_private_netns()
    assert _netns_inode() == outer.original_inode


def test_the_namespace_is_destroyed_after_the_block(pytest_netns: PrivateNetns) -> None:
    # One end of a veth pair made inside is moved out to this namespace: when the private
    # namespace is destroyed, the kernel deletes its end, and with it the end out here.
    outside = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        with private_netns():
            run_command("ip", "link", "add", "tk-in", "type", "veth", "peer", "name", "tk-out")
            subprocess.run(
                ["ip", "link", "set", "tk-out", "netns", f"/proc/self/fd/{outside}"],
                check=True, pass_fds=(outside,), env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"},
            )  # fmt: skip
            assert _interfaces() == {"lo", "tk-in"}
        assert "tk-out" in _interfaces()
        assert wait_until(lambda: "tk-out" not in _interfaces(), timeout=10.0)
    finally:
        os.close(outside)
        if "tk-out" in _interfaces():
            run_command("ip", "link", "delete", "tk-out")


def test_subprocesses_started_inside_inherit_the_namespace(pytest_netns: PrivateNetns) -> None:
    with private_netns(), veth_pair("tka", "tkb"):
        listed = subprocess.run(
            [sys.executable, "-c", "import socket; print(sorted(n for _, n in socket.if_nameindex()))"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    assert listed.strip() == "['lo', 'tka', 'tkb']"


# --------------------------------------------------------------------------------------------
# veth_pair


def test_veth_pair_creates_both_ends_and_deletes_them(pytest_netns: PrivateNetns) -> None:
    with private_netns(), veth_pair("tka", "tkb", queues=4, peer_queues=2) as pair:
        assert _interfaces() == {"lo", "tka", "tkb"}
        assert (pair.capture, pair.peer, pair.queues, pair.peer_queues) == ("tka", "tkb", 4, 2)
        assert (pair.capture_index, pair.peer_index) == (
            socket.if_nametoindex("tka"),
            socket.if_nametoindex("tkb"),
        )
        for name, mac, queues in (("tka", pair.capture_mac, 4), ("tkb", pair.peer_mac, 2)):
            details = run_command("ip", "-d", "-o", "link", "show", name)
            assert f"link/ether {mac.hex(':')} " in details
            assert f"numtxqueues {queues} numrxqueues {queues}" in details
            assert ",UP,LOWER_UP>" in details
        assert pair.capture_mac != pair.peer_mac
        assert in_private_netns()
        inside = _netns_inode()
        assert inside != pytest_netns.inode
        # Only the interfaces of the block's namespace exist there; deleted on leaving.
        with veth_pair("tkc", "tkd"):
            assert _interfaces() == {"lo", "tka", "tkb", "tkc", "tkd"}
        assert _interfaces() == {"lo", "tka", "tkb"}
    assert not {"tka", "tkb"} & _interfaces()


@pytest.mark.parametrize("names", [("ma", "mb"), ("dev", "name")], ids=["keyword-prefix", "keywords"])
def test_veth_pair_takes_names_that_look_like_ip_keywords(pytest_netns: PrivateNetns, names: tuple[str, str]) -> None:
    """``ip link add ma ...`` reads "ma" as the keyword "master": names must be spelt out."""
    with private_netns(), veth_pair(*names):
        assert _interfaces() == {"lo", *names}
    assert not set(names) & _interfaces()


def test_veth_pair_is_deleted_when_the_block_raises(pytest_netns: PrivateNetns) -> None:
    with private_netns():
        with pytest.raises(ZeroDivisionError), veth_pair("tka", "tkb"):
            1 / 0  # noqa: B018
        assert _interfaces() == {"lo"}


def test_veth_pair_refuses_a_name_in_use_and_creates_nothing(pytest_netns: PrivateNetns) -> None:
    with private_netns(), veth_pair("tka", "tkb"):
        with pytest.raises(FileExistsError, match="'tkb' already exists"), veth_pair("tkc", "tkb"):
            pass
        assert _interfaces() == {"lo", "tka", "tkb"}


def test_frames_cross_the_pair_and_the_pair_stays_quiet(pytest_netns: PrivateNetns) -> None:
    with private_netns(), veth_pair("tka", "tkb") as pair:
        # Nothing but what we send: no IPv6 router solicitation or MLD report of its own.
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL)) as anything:
            anything.bind((pair.capture, _ETH_P_ALL))
            anything.settimeout(1.5)
            with pytest.raises(socket.timeout):
                print("unexpected frame:", anything.recv(65536).hex())
        frame = make_test_frame(100, 7, pair.capture_mac, pair.peer_mac)
        with AfPacketCapture(pair.capture) as capture, AfPacketSender(pair.peer) as sender:
            sender.send(frame)
            assert capture.recv_frames(2, timeout=0.5) == [frame]


# --------------------------------------------------------------------------------------------
# run_xdp

#: if the frame has an Ethernet header: data[0] = 0x42, return XDP_TX; else XDP_PASS.
REWRITE_AND_TX = b"".join(
    [
        _insn(0x61, 0x12, 0, 0),  # r2 = *(u32 *)(r1 + 0): ctx->data
        _insn(0x61, 0x13, 4, 0),  # r3 = *(u32 *)(r1 + 4): ctx->data_end
        _insn(0xBF, 0x24, 0, 0),  # r4 = r2
        _insn(0x07, 0x04, 0, 14),  # r4 += 14
        _insn(0x2D, 0x34, 3, 0),  # if r4 > r3 goto pass (+3)
        _insn(0x72, 0x02, 0, 0x42),  # *(u8 *)(r2 + 0) = 0x42
        _insn(0xB7, 0x00, 0, int(XDPAction.XDP_TX)),  # r0 = XDP_TX
        _insn(0x95, 0x00, 0, 0),  # exit
        _insn(0xB7, 0x00, 0, int(XDPAction.XDP_PASS)),  # pass: r0 = XDP_PASS
        _insn(0x95, 0x00, 0, 0),  # exit
    ]
)
#: bpf_xdp_adjust_meta(ctx, -8) (helper 54), bpf_xdp_adjust_head(ctx, 4) (helper 44): PASS.
ADD_META_AND_DROP_4_BYTES = b"".join(
    [
        _insn(0xBF, 0x16, 0, 0),  # r6 = r1 (ctx, kept across the calls)
        _insn(0xB7, 0x02, 0, -8),  # r2 = -8
        _insn(0x85, 0x00, 0, 54),  # bpf_xdp_adjust_meta(ctx, -8)
        _insn(0xBF, 0x61, 0, 0),  # r1 = r6
        _insn(0xB7, 0x02, 0, 4),  # r2 = 4
        _insn(0x85, 0x00, 0, 44),  # bpf_xdp_adjust_head(ctx, 4)
        _insn(0xB7, 0x00, 0, int(XDPAction.XDP_PASS)),  # r0 = XDP_PASS
        _insn(0x95, 0x00, 0, 0),  # exit
    ]
)
FRAME = make_test_frame(64, 1, bytes.fromhex("020000000001"), bytes.fromhex("020000000002"))


def test_run_xdp_returns_the_action_and_the_rewritten_frame(require_kernel: None) -> None:
    action, frame_out = run_xdp(REWRITE_AND_TX, FRAME)
    assert action is XDPAction.XDP_TX
    assert frame_out == b"\x42" + FRAME[1:]


def test_run_xdp_leaves_metadata_out_and_follows_a_moved_head(require_kernel: None) -> None:
    action, frame_out = run_xdp(ADD_META_AND_DROP_4_BYTES, FRAME)
    assert action is XDPAction.XDP_PASS
    assert frame_out == FRAME[4:]


def test_run_xdp_on_a_loaded_program_fd_leaves_it_open(require_kernel: None) -> None:
    prog_fd = _bpf.prog_load(_bpf.BPF_PROG_TYPE_XDP, REWRITE_AND_TX, "GPL", name="tk_rewrite")
    try:
        assert run_xdp(prog_fd, FRAME) == (XDPAction.XDP_TX, b"\x42" + FRAME[1:])
        assert run_xdp(prog_fd, FRAME[:13] + b"\x00") == (XDPAction.XDP_TX, b"\x42" + FRAME[1:13] + b"\x00")
        os.fstat(prog_fd)  # still open
    finally:
        os.close(prog_fd)


def test_run_xdp_on_an_elf_object(require_kernel: None) -> None:
    # The shipped program passes a frame of a queue with no AF_XDP socket to the stack. The
    # object holds two (plain and frags-aware): one is chosen by name.
    assert run_xdp(_SHIPPED_OBJECT, FRAME, program_name="xdp_sock_prog") == (XDPAction.XDP_PASS, FRAME)
    assert run_xdp(str(_SHIPPED_OBJECT), FRAME, ingress_ifindex=1,
                   program_name="xdp_sock_prog_frags") == (XDPAction.XDP_PASS, FRAME)


def test_run_xdp_reports_a_program_the_verifier_rejects(require_kernel: None) -> None:
    no_exit = _insn(0xB7, 0x00, 0, 2)  # r0 = 2, then falls off the end
    with pytest.raises(BPFVerifierError, match="run_xdp"):
        run_xdp(no_exit, FRAME)


# --------------------------------------------------------------------------------------------
# The example suite users copy (README: "Testing your own XDP code")


def test_the_example_suite_passes_as_a_user_would_run_it(pytest_netns: PrivateNetns) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_my_xdp_program.py"],
        cwd=_REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert _interfaces() == {"lo"}  # its namespace and pair are gone, nothing leaked here


def test_run_xdp_names_an_object_it_cannot_use(require_kernel: None, tmp_path: Path) -> None:
    not_elf = tmp_path / "not_an_object.o"
    not_elf.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not_an_object.o: "):
        run_xdp(not_elf, FRAME)
    with pytest.raises(FileNotFoundError):
        run_xdp(tmp_path / "missing.o", FRAME)
