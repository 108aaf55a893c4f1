"""Shared pytest setup for unit and integration tests.

As root, the whole pytest process moves into a private network namespace before any test
runs (``pytest_configure``, with ``xdppacket.testing.private_netns``), so tests see only
``lo`` and the interfaces they create, and nothing they do can reach the machine's own
interfaces. The process leaves it in ``pytest_unconfigure``, and it disappears.

Integration tests (marker ``integration``, given automatically to everything under
``tests/integration/``) need root, AF_XDP and bpf(). Without them they are skipped with
the precise reason; with ``XDPPACKET_REQUIRE_KERNEL=1`` (as in CI) they fail instead, and
any other skip of an integration test is turned into a failure too.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.netns import (
    AfPacketCapture,
    PrivateNetns,
    VethFactory,
    VethPair,
    kernel_unavailable_reason,
    next_veth_names,
)
from xdppacket import testing

# pytester runs pytest inside a test: used to check that fixtures clean up after a failure.
pytest_plugins = ["pytester"]

_INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
# Why pytest_configure could not move the process into a private namespace, if it could not.
_netns_failure = "not root"
# The namespace pytest_configure entered (left in pytest_unconfigure), and how to leave it.
_netns: PrivateNetns | None = None
_LEAVE_NETNS = pytest.StashKey[contextlib.ExitStack]()


def _kernel_required() -> bool:
    return os.environ.get("XDPPACKET_REQUIRE_KERNEL") == "1"


@functools.cache
def _cached_kernel_unavailable_reason() -> str | None:
    return kernel_unavailable_reason()


def _skip_or_fail(reason: str) -> NoReturn:
    if _kernel_required():
        pytest.fail(f"XDPPACKET_REQUIRE_KERNEL=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs root, AF_XDP and bpf(); runs in the private netns"
    )
    global _netns_failure, _netns
    # A pytest run inside a test (pytester, in process) keeps the namespace it is already in.
    if os.geteuid() == 0 and _netns is None:
        leave = contextlib.ExitStack()
        try:
            _netns = leave.enter_context(testing.private_netns())
        except OSError as exc:  # unit tests still run; integration tests say why they cannot
            _netns_failure = str(exc)
        else:
            config.stash[_LEAVE_NETNS] = leave


def pytest_unconfigure(config: pytest.Config) -> None:
    global _netns
    leave = config.stash.get(_LEAVE_NETNS, None)
    if leave is not None:
        _netns = None
        leave.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration") is not None:
        reason = _cached_kernel_unavailable_reason()
        if reason is not None:
            _skip_or_fail(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """With XDPPACKET_REQUIRE_KERNEL=1, report a skipped integration test as failed."""
    outcome = yield
    report = outcome.get_result()
    if (
        _kernel_required()
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("integration") is not None
    ):
        # A skip's longrepr is (path, line, reason).
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped although XDPPACKET_REQUIRE_KERNEL=1: {reason}"


@pytest.fixture
def require_kernel() -> None:
    """Skip the test (fail it under XDPPACKET_REQUIRE_KERNEL=1) unless AF_XDP can run here.

    Creates nothing. Integration tests get this check automatically; unit tests that touch
    the kernel ask for it by name.
    """
    reason = _cached_kernel_unavailable_reason()
    if reason is not None:
        _skip_or_fail(reason)


@pytest.fixture(name="private_netns")
def private_netns_fixture(require_kernel: None) -> PrivateNetns:
    """The private network namespace the whole pytest process runs in.

    Created once in ``pytest_configure`` and gone when pytest exits; this fixture creates
    nothing. Skips or fails (see ``require_kernel``) if the process is not in it.
    """
    if _netns is None:
        _skip_or_fail(f"the test process is not in a private network namespace: {_netns_failure}")
    return _netns


@pytest.fixture
def make_veth(private_netns: PrivateNetns) -> Iterator[VethFactory]:
    """Factory: ``make_veth(queues=1)`` creates a veth pair (see ``VethPair``) and returns it.

    Each call creates a new uniquely named pair (``xa<N>``/``xb<N>``, both up) in the
    private namespace, with ``queues`` rx and tx queues per end (``peer_queues``, if given,
    for the peer end). Every pair made is deleted after the test, whether it passed,
    failed or errored.
    """
    with contextlib.ExitStack() as cleanup:  # runs every deletion even if one of them fails

        def make(queues: int = 1, peer_queues: int | None = None) -> VethPair:
            capture, peer = next_veth_names()
            return cleanup.enter_context(
                testing.veth_pair(capture, peer, queues=queues, peer_queues=peer_queues)
            )

        yield make


@pytest.fixture
def veth_pair(request: pytest.FixtureRequest, make_veth: VethFactory) -> VethPair:
    """One veth pair for this test, deleted afterwards even if the test fails.

    One queue per end unless parametrized indirectly with the queue count:
    ``@pytest.mark.parametrize("veth_pair", [4], indirect=True)``. With one queue every
    frame lands on queue 0; with more, an AF_PACKET frame lands on a queue the kernel picks.
    """
    queues: int = getattr(request, "param", 1)
    return make_veth(queues)


@pytest.fixture
def peer_capture(veth_pair: VethPair) -> Iterator[AfPacketCapture]:
    """An ``AfPacketCapture`` of the test frames arriving on ``veth_pair.peer``.

    Bound before the test body runs, so it sees every frame the test sends towards the
    peer; closed after the test.
    """
    with AfPacketCapture(veth_pair.peer) as capture:
        yield capture
