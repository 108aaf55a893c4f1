"""Checks of the shared test infrastructure itself: namespace, veth pairs, AF_PACKET helpers."""

from __future__ import annotations

import socket

import pytest

from tests.netns import (
    MIN_FRAME_SIZE,
    AfPacketCapture,
    AfPacketSender,
    PrivateNetns,
    VethFactory,
    VethPair,
    make_test_frame,
    mixed_sizes,
    run_command,
    run_in_subprocess,
)

_LIST_INTERFACES = "import socket; print(' '.join(sorted(n for _, n in socket.if_nameindex())))"


def _interface_names() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


def test_namespace_is_private(private_netns: PrivateNetns) -> None:
    assert private_netns.inode != private_netns.original_inode
    assert _interface_names() == {"lo"}


def test_subprocess_inherits_namespace(veth_pair: VethPair) -> None:
    listed = run_in_subprocess(_LIST_INTERFACES).stdout.split()
    assert listed == sorted(["lo", veth_pair.capture, veth_pair.peer])


def test_veth_pair_fixture_describes_the_pair(veth_pair: VethPair) -> None:
    assert _interface_names() == {"lo", veth_pair.capture, veth_pair.peer}
    assert socket.if_nametoindex(veth_pair.capture) == veth_pair.capture_index
    assert socket.if_nametoindex(veth_pair.peer) == veth_pair.peer_index
    assert len(veth_pair.capture_mac) == len(veth_pair.peer_mac) == 6
    assert veth_pair.capture_mac != veth_pair.peer_mac
    assert veth_pair.queues == 1


@pytest.mark.parametrize("veth_pair", [4], indirect=True)
def test_veth_pair_queue_count_is_parametrizable(veth_pair: VethPair) -> None:
    assert veth_pair.queues == 4
    details = run_command("ip", "-d", "link", "show", veth_pair.capture)
    assert "numtxqueues 4 numrxqueues 4" in details


def test_frames_cross_veth_pair_with_exact_bytes(veth_pair: VethPair) -> None:
    frames = [
        make_test_frame(size, seq, veth_pair.capture_mac, veth_pair.peer_mac)
        for seq, size in enumerate(mixed_sizes(16))
    ]
    with AfPacketCapture(veth_pair.capture) as capture, AfPacketSender(veth_pair.peer) as sender:
        for frame in frames:
            sender.send(frame)
        received = capture.recv_frames(len(frames), timeout=5.0)
    assert received == frames


def test_capture_ignores_its_own_outgoing_frames(veth_pair: VethPair) -> None:
    frame = make_test_frame(MIN_FRAME_SIZE, 1, veth_pair.peer_mac, veth_pair.capture_mac)
    with AfPacketCapture(veth_pair.capture) as capture, AfPacketSender(veth_pair.capture) as sender:
        sender.send(frame)
        assert capture.recv_frames(1, timeout=0.3) == []


def test_make_veth_names_are_unique(make_veth: VethFactory) -> None:
    first, second = make_veth(), make_veth(queues=2)
    assert len({first.capture, first.peer, second.capture, second.peer}) == 4
    assert _interface_names() == {"lo", first.capture, first.peer, second.capture, second.peer}


def test_pairs_are_deleted_even_when_the_test_fails(
    private_netns: PrivateNetns, pytester: pytest.Pytester
) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]')
    pytester.makepyfile(
        """
        def test_fails(make_veth):
            pair = make_veth(queues=2)
            print("created", pair.capture, pair.peer)
            assert False
        """
    )
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*created xa* xb*"])
    assert _interface_names() == {"lo"}
