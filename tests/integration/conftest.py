"""Fixtures shared by the multi-queue integration tests (the ``mode`` comes from ``BOTH_MODES``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.netns import VethFactory, VethPair
from tests.xdp_helpers import QueueSenders, make_multiqueue_veth
from xdppacket import XDPMode
from xdppacket._queue import audit_frames_at_close


@pytest.fixture
def pair(make_veth: VethFactory, mode: XDPMode) -> VethPair:
    """A veth pair whose four capture queues the peer can each reach in ``mode``."""
    return make_multiqueue_veth(make_veth, mode)


@pytest.fixture
def senders(pair: VethPair, mode: XDPMode) -> Iterator[QueueSenders]:
    """One AF_XDP sender per capture queue of ``pair``, closed after the test."""
    with QueueSenders(pair, mode) as queue_senders:
        yield queue_senders


@pytest.fixture(autouse=True)
def frames_accounted_at_close() -> Iterator[None]:
    """Every socket an integration test closes must have every UMEM frame in exactly one place."""
    failures: list[str] = []
    audit_frames_at_close(failures)
    try:
        yield
    finally:
        audit_frames_at_close(None)
    assert not failures, "\n".join(failures)
