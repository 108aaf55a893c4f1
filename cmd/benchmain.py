"""What every benchmark's ``main()`` does around its measurement.

Before anything is created it refuses, in one line, to run without root or (for the
benchmarks that keep the measured tool and its load on CPUs of their own) without a second
CPU. Then ``kill`` works like Ctrl-C, so the measurement's own clean-up runs either way; the
run moves into a private network namespace; and a run that is interrupted or fails ends in
one line and exit status 130 or 1, once that clean-up has run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:  # cmd/ is no package at run time (stdlib has a `cmd`); mypy knows it as one
    from cmd.benchnet import enter_private_netns, run_tool
else:
    from benchnet import enter_private_netns, run_tool

__all__ = ["BenchError", "all_cpus_ticks", "bench_run", "idle_share"]


class BenchError(Exception):
    """A run failed in a way the user should read (a tool's error output), not a bug."""


@contextlib.contextmanager
def bench_run(tool: str, *, roles: str | None, interrupted: str) -> Iterator[list[int]]:
    """The body of ``tool``'s ``main()``, in a private network namespace; yields this process's CPUs.

    ``roles`` says what the two CPUs it needs are for (None: one will do); ``interrupted``
    what the body's clean-up has done once Ctrl-C or ``kill`` stopped it. Ends the program
    (``SystemExit``, after one line on stderr) when it cannot start, is stopped or fails.
    """
    if os.geteuid() != 0:
        _exit(1, f"{tool}: AF_XDP, bpf() and network namespaces need root: run it with sudo")
    cpus = sorted(os.sched_getaffinity(0))
    if roles is not None and len(cpus) < 2:
        _exit(1, f"{tool}: needs 2 CPUs ({roles})")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up like Ctrl-C
    try:
        enter_private_netns()
        run_tool("ip", "-V")  # fail early, and plainly, without iproute2
        yield cpus
    except KeyboardInterrupt:
        _exit(130, f"\n{tool}: interrupted; {interrupted}")
    except (BenchError, OSError) as error:
        _exit(1, f"\n{tool} failed: {error}")


def _exit(status: int, line: str) -> NoReturn:
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(status) from None


def all_cpus_ticks() -> list[int]:
    """The first line of /proc/stat: user nice system idle iowait irq softirq ... of all CPUs."""
    return [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def idle_share(seconds: float) -> float:
    """How idle all CPUs were over ``seconds``: other work on the machine skews every figure."""
    before = all_cpus_ticks()
    time.sleep(seconds)
    after = all_cpus_ticks()
    idle = after[3] + after[4] - before[3] - before[4]  # idle + iowait
    return idle / max(1, sum(after) - sum(before))
