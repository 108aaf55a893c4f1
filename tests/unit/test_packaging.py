"""The sdist and the wheel hold what they must: built here, then their contents are listed.

The sdist is built from a copy of the working tree with setuptools' own build backend (no
network, no isolation: the ``test`` extra installs a setuptools that builds wheels by
itself); the wheel is then built from the unpacked sdist, which proves the sdist is enough
to rebuild. A few seconds.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import xdppacket

REPOSITORY = Path(__file__).resolve().parents[2]
# Tracked files that have no business in an sdist.
NOT_IN_SDIST = {".gitignore"}
# Left out of the copy the sdist is built from: local state, never part of a release.
LOCAL_STATE = (".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", "results",
               ".pytest_cache", ".mypy_cache", ".ruff_cache")


def tracked_files() -> set[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True,
                             check=False)
    if listing.returncode != 0:  # an unpacked sdist: every file in it is a release file
        return {
            str(path.relative_to(REPOSITORY)) for path in REPOSITORY.rglob("*")
            if path.is_file() and not any(part in LOCAL_STATE or part.endswith(".egg-info")
                                          for part in path.relative_to(REPOSITORY).parts)
            and path.name != "PKG-INFO" and path.suffix != ".pyc"
        }
    return set(listing.stdout.split())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(sdist, wheel)`` built from a copy of the working tree."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(*LOCAL_STATE))
    subprocess.run(
        [sys.executable, "-c",
         "import sys, setuptools.build_meta as backend; backend.build_sdist(sys.argv[1])",
         str(work / "sdist")],
        cwd=source, check=True, capture_output=True, timeout=120,
    )
    (sdist,) = (work / "sdist").glob("xdppacket-*.tar.gz")
    with tarfile.open(sdist) as archive:
        # The "data" filter where this Python has it (3.9.17+), as 3.14 will by default.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work / "unpacked", **safe)  # type: ignore[arg-type]
    (unpacked,) = (work / "unpacked").iterdir()
    subprocess.run(
        [sys.executable, "-c",
         "import sys, setuptools.build_meta as backend; backend.build_wheel(sys.argv[1])",
         str(work / "wheel")],
        cwd=unpacked, check=True, capture_output=True, timeout=120,
    )
    (wheel,) = (work / "wheel").glob("xdppacket-*.whl")
    return sdist, wheel


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_sdist_holds_every_file_needed_to_rebuild_and_test(built: tuple[Path, Path]) -> None:
    names = sdist_names(built[0])
    missing = sorted(tracked_files() - NOT_IN_SDIST - names)
    assert missing == []
    for needed in ("LICENSE", "LICENSE.GPL-2.0", "Makefile", "tox.ini", ".ci/run",
                   "ebpf/xdpsock_kern.c", "ebpf/Makefile", "xdppacket/xdpsock_kern.o",
                   "tests/conftest.py", "examples/capture.py", "cmd/demo.py"):
        assert needed in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_wheel_ships_the_program_and_both_licenses(built: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built[1]) as wheel:
        names = set(wheel.namelist())
        metadata = email.message_from_bytes(
            wheel.read(f"xdppacket-{xdppacket.__version__}.dist-info/METADATA")
        )
    package_modules = {f"xdppacket/{path.name}" for path in (REPOSITORY / "xdppacket").glob("*.py")}
    assert package_modules <= names
    assert {"xdppacket/xdpsock_kern.o", "xdppacket/py.typed"} <= names
    dist_info = f"xdppacket-{xdppacket.__version__}.dist-info"
    assert {f"{dist_info}/licenses/LICENSE", f"{dist_info}/licenses/LICENSE.GPL-2.0"} <= names
    assert not [name for name in names if name.startswith(("tests/", "cmd/", "examples/"))]
    assert metadata["Version"] == xdppacket.__version__
    assert metadata["License"] == "MIT AND GPL-2.0-only"
    classifiers = metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: Implementation :: CPython" in classifiers
    assert "Programming Language :: Python :: 3.9" in classifiers
    assert "Programming Language :: Python :: 3.13" in classifiers
    assert metadata["Requires-Python"] == ">=3.9"
    requirements = metadata.get_all("Requires-Dist")
    assert requirements  # the extras'
    assert [r for r in requirements if "extra ==" not in r] == [], "the package depends on nothing"


def test_the_version_is_written_once() -> None:
    setup_cfg = (REPOSITORY / "setup.cfg").read_text()
    assert "version = attr: xdppacket.__version__" in setup_cfg
    assert xdppacket.__version__ not in setup_cfg


def test_package_docstring_points_only_inside_the_repository() -> None:
    assert xdppacket.__doc__ is not None
    assert "../" not in xdppacket.__doc__


def test_the_bpf_programs_and_license_file_state_their_licenses() -> None:
    # The C sources carry GPL-2.0-only; the Python code is MIT, as LICENSE says.
    for path in sorted((REPOSITORY / "ebpf").glob("*.c")) + sorted((REPOSITORY / "tests" / "bpf").glob("*.c")):
        assert path.read_text().startswith("// SPDX-License-Identifier: GPL-2.0"), path
    license_text = (REPOSITORY / "LICENSE").read_text()
    assert "MIT License" in license_text
    assert "GPL-2.0-only" in license_text
