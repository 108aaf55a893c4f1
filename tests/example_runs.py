"""Running an example script as a user would: start it, read what it prints, stop it, check its exit.

The script runs in the test's network namespace (``start_script``) and leads a process
group of its own, as a shell job does, so a Ctrl-C reaches every worker it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

from tests.netns import start_script
from tests.xdp_helpers import watchdog

__all__ = ["EXAMPLE_TIMEOUT_S", "ctrl_c", "example_running", "exit_output", "finish", "killed_with_its_group",
           "read_line"]

#: The longest a test waits for one line of an example, or for it to exit.
EXAMPLE_TIMEOUT_S = 20


@contextlib.contextmanager
def example_running(path: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``python PATH args...`` (PATH relative to the repository); its whole group is killed at the end.

    Killing only the example would leave its workers holding the output pipe open.
    """
    with killed_with_its_group(start_script(path, *args)) as example:
        yield example


@contextlib.contextmanager
def killed_with_its_group(process: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """``process`` (leading a process group); the whole group is killed and reaped at the end."""
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def read_line(process: subprocess.Popen[Any], *, stderr: bool = False, timeout: float = EXAMPLE_TIMEOUT_S) -> str:
    """The next line ``process`` prints on stdout (or on stderr), without its newline; fails
    if the stream ends first.

    Read a byte at a time from the pipe itself: ``readline()`` on the stream would buffer
    what follows the line, and ``communicate()`` (``exit_output``) reads the pipe, not that
    buffer, so the lines after it (an example's totals, an error) were lost to the test.
    """
    stream = process.stderr if stderr else process.stdout
    assert stream is not None
    fd = stream.fileno()
    data = b""
    with watchdog(timeout):
        while not data.endswith(b"\n"):
            byte = os.read(fd, 1)
            if not byte:
                break
            data += byte
    assert data, f"{'stderr' if stderr else 'stdout'} ended (the process exited early?)"
    return data.decode().rstrip("\n")


def ctrl_c(example: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to every process of the example's group."""
    os.killpg(example.pid, signal.SIGINT)


def exit_output(process: subprocess.Popen[Any], timeout: float = EXAMPLE_TIMEOUT_S) -> tuple[Any, Any]:
    """The rest of the process's stdout and stderr once it exits, which it must do with status 0
    within ``timeout`` seconds (else its group is killed and the test fails)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"the process did not exit:\n{stdout}\n{stderr}") from None
    assert process.returncode == 0, stderr
    return stdout, stderr


def finish(example: subprocess.Popen[str]) -> str:
    """The rest of the example's stdout once it exits cleanly: status 0, nothing on stderr."""
    stdout, stderr = exit_output(example)
    assert stderr == ""
    return str(stdout)
