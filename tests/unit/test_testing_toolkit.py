"""xdppacket.testing without root: argument checks, the refusal outside a private namespace,
the XDP action numbers, and the deprecation path of the traffic generator's old names."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pytest

import xdppacket
from tests.netns import run_in_subprocess
from xdppacket import testing
from xdppacket.testing import XDPAction, run_xdp

FRAME = bytes.fromhex("020000000001 020000000002 88b5") + bytes(46)
XDP_PASS_INSNS = bytes.fromhex("b700000002000000 9500000000000000")  # r0 = XDP_PASS; exit


def test_xdp_actions_are_the_kernel_numbers() -> None:
    # enum xdp_action, include/uapi/linux/bpf.h
    assert [(action.name, int(action)) for action in XDPAction] == [
        ("XDP_ABORTED", 0),
        ("XDP_DROP", 1),
        ("XDP_PASS", 2),
        ("XDP_TX", 3),
        ("XDP_REDIRECT", 4),
    ]


@pytest.mark.parametrize(
    ("program", "frame", "error", "message"),
    [
        (XDP_PASS_INSNS, "not bytes", TypeError, "frame must be bytes-like, not str"),
        (XDP_PASS_INSNS, FRAME[:13], ValueError, "frame of 13 bytes"),
        (1.5, FRAME, TypeError, "not float"),
        (True, FRAME, TypeError, "not bool"),
    ],
)
def test_run_xdp_rejects_bad_arguments(
    program: object, frame: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        run_xdp(program, frame)  # type: ignore[arg-type]


@pytest.mark.parametrize("program", [XDP_PASS_INSNS, 3])
def test_program_name_is_only_for_elf_objects(program: bytes | int) -> None:
    with pytest.raises(ValueError, match="program_name applies to an ELF object"):
        run_xdp(program, FRAME, program_name="xdp_sock")


def test_veth_pair_refuses_outside_a_private_namespace() -> None:
    # A fresh interpreter has entered no private_netns(), whatever namespace it runs in.
    child = run_in_subprocess(
        """
        import socket
        from xdppacket.testing import in_private_netns, veth_pair
        before = socket.if_nameindex()
        assert not in_private_netns()
        try:
            with veth_pair("tka", "tkb"):
                print("created")
        except RuntimeError as error:
            print(error)
        assert socket.if_nameindex() == before
        """
    )
    assert "only inside `with private_netns():`" in child.stdout
    assert "created" not in child.stdout


def test_importing_xdppacket_loads_neither_the_toolkit_nor_scapy() -> None:
    child = run_in_subprocess(
        "import sys, xdppacket; print(sorted(m for m in sys.modules "
        "if m.startswith(('scapy', 'xdppacket.testing', 'xdppacket.trafficgen'))))"
    )
    assert child.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["TrafficGenerator", "GeneratorResult"])
def test_old_top_level_names_warn_and_still_work(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"xdppacket.{name} is deprecated.*xdppacket.testing"):
        moved = getattr(xdppacket, name)
    assert moved is getattr(testing, name)


def test_from_import_of_an_old_name_warns_at_the_importer() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from xdppacket import TrafficGenerator  # noqa: F401
    assert caught, "no warning"
    assert {warning.category for warning in caught} == {DeprecationWarning}
    assert {warning.filename for warning in caught} == {__file__}


def test_old_module_warns_and_gives_the_same_objects() -> None:
    sys.modules.pop("xdppacket.trafficgen", None)
    with pytest.warns(DeprecationWarning, match="xdppacket.trafficgen is deprecated") as caught:
        import xdppacket.trafficgen as old
    assert caught[0].filename == __file__
    assert old.TrafficGenerator is testing.TrafficGenerator
    assert old.redirect_program is testing.trafficgen.redirect_program
    assert old.__all__ == testing.trafficgen.__all__


def test_unknown_attributes_still_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        xdppacket.NoSuchThing  # noqa: B018


def test_readme_excerpts_come_from_the_tested_example() -> None:
    # The example suite runs in tests/integration/test_testing_toolkit.py; the README quotes it.
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme.split("\n## Testing your own XDP code\n", 1)[1].split("\n## ", 1)[0]
    excerpts = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    example = (root / "examples" / "test_my_xdp_program.py").read_text()
    assert len(excerpts) == 3
    for excerpt in excerpts:
        assert excerpt in example
