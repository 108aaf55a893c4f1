"""The example runner's line reader (``tests/example_runs.py``): a line read before the
example exits must not swallow the lines after it, which ``exit_output`` returns.

A quick example (txonly with ``--count``) prints its first line and its totals at almost
the same moment; a buffered ``readline`` took both, and ``communicate()``, which reads the
pipe, never saw the totals (a CI run failed so).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.example_runs import exit_output, read_line


def test_the_lines_after_the_one_read_stay_for_exit_output() -> None:
    script = "import sys; sys.stdout.write('first\\ntotal all tx_packets=3\\n'); sys.stdout.flush()"
    child = subprocess.Popen([sys.executable, "-c", script], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.wait()  # both lines are in the pipe before the first is read
    assert read_line(child) == "first"
    assert exit_output(child) == ("total all tx_packets=3\n", "")


def test_a_line_read_from_stderr_leaves_the_rest_of_stderr_too() -> None:
    script = "import sys; sys.stderr.write('ready\\nan error after it\\n'); sys.stderr.flush(); sys.exit(0)"
    child = subprocess.Popen([sys.executable, "-c", script], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.wait()
    assert read_line(child, stderr=True) == "ready"
    assert exit_output(child) == ("", "an error after it\n")


def test_a_line_read_from_an_example_that_exited_silently_fails() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.wait()
    with pytest.raises(AssertionError, match="exited early"):
        read_line(child)
    child.communicate()
