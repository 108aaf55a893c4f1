"""The forwarding benchmark's start of a forwarder (``cmd/l2fwd_bench.py: start_forwarder``):
a start that finds the queue still bound (EBUSY) is retried, any other failure is not.

No kernel needed: the forwarder processes and the testbed are stand-ins that fail the way
the real ones did (the C forwarder's "Device or resource busy" while the kernel's deferred
teardown of the previous forwarder's socket had not run yet).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# cmd/ is no package (the stdlib has a `cmd`): its modules import each other by bare name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cmd"))

if TYPE_CHECKING:
    import cmd.l2fwd_bench as l2fwd_bench
    from cmd.benchmain import BenchError
else:
    import l2fwd_bench
    from benchmain import BenchError

BUSY = "xsk_socket__create_shared: Device or resource busy"


class FakeProcess:
    def __init__(self, exited: bool) -> None:
        self._exited = exited

    def poll(self) -> int | None:
        return 1 if self._exited else None


class FakeForwarder:
    """A forwarder whose start ends as the next scripted outcome says."""

    outcomes: list[str] = []
    started: list[FakeForwarder] = []

    def __init__(self, name: str, link: str, cpu: int, batch: int) -> None:
        self.batch = batch
        self.outcome = FakeForwarder.outcomes.pop(0)
        self.process = FakeProcess(exited=self.outcome != "forwards")
        self.killed = False
        FakeForwarder.started.append(self)

    def output(self) -> str:
        return {"busy": BUSY, "other": "l2fwd: no such interface", "forwards": ""}[self.outcome]

    def kill(self) -> None:
        self.killed = True


class FakeTestbed:
    forwarder_cpu = 0

    def wait_until_forwarding(self, forwarder: Any, link: str) -> None:
        if forwarder.outcome != "forwards":
            raise BenchError(f"ended: {forwarder.output()}")


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Forwarders from the script instead of processes; returns the sleeps between attempts."""
    sleeps: list[float] = []
    FakeForwarder.started = []
    monkeypatch.setattr(l2fwd_bench, "Forwarder", FakeForwarder)
    monkeypatch.setattr(time, "sleep", sleeps.append)  # the module the bench calls it from
    return sleeps


def test_a_start_that_finds_the_queue_busy_is_retried_later_each_time(scripted: list[float]) -> None:
    FakeForwarder.outcomes = ["busy", "busy", "forwards"]
    logged: list[str] = []
    forwarder: Any = l2fwd_bench.start_forwarder(FakeTestbed(), "c", "2link", 96, logged.append)  # type: ignore[arg-type]
    assert forwarder is FakeForwarder.started[2]
    assert [f.batch for f in FakeForwarder.started] == [96, 96, 96]
    assert [f.killed for f in FakeForwarder.started] == [True, True, False]
    assert len(scripted) == 2
    assert scripted[0] < scripted[1]  # later each time
    assert len(logged) == 2
    assert all("EBUSY" in line for line in logged)


def test_any_other_failure_is_not_retried(scripted: list[float]) -> None:
    FakeForwarder.outcomes = ["other", "forwards"]
    with pytest.raises(BenchError, match="no such interface"):
        l2fwd_bench.start_forwarder(FakeTestbed(), "c", "1link", 64, print)  # type: ignore[arg-type]
    assert len(FakeForwarder.started) == 1
    assert FakeForwarder.started[0].killed
    assert scripted == []


def test_a_queue_busy_for_good_fails_after_the_last_retry(scripted: list[float]) -> None:
    FakeForwarder.outcomes = ["busy"] * l2fwd_bench.BUSY_RETRIES
    with pytest.raises(BenchError, match="Device or resource busy"):
        l2fwd_bench.start_forwarder(FakeTestbed(), "c", "1link", 64, print)  # type: ignore[arg-type]
    assert len(FakeForwarder.started) == l2fwd_bench.BUSY_RETRIES


@pytest.mark.parametrize("forwarder", ["xdppacket", "c"])
def test_both_af_xdp_forwarders_read_batches_of_the_same_size(forwarder: str) -> None:
    command = l2fwd_bench.forwarder_command(forwarder, "1link", 96)
    assert command[command.index("--batch") + 1] == "96"
    assert "--batch" not in l2fwd_bench.forwarder_command("afpacket", "1link", 96)  # one frame per read
