"""Capture filters proved against libpcap: our eBPF, run by the kernel, picks tcpdump's frames.

For every expression below, the corpus of ``tests/filter_corpus.py`` is written to a pcap
file; ``tcpdump -r corpus.pcap -w - EXPRESSION`` says which frames libpcap accepts (each
frame carries its index as its timestamp). The same frames then go through our compiled
program with ``BPF_PROG_TEST_RUN`` (return 3 = match, 2 = pass), once for
``compile_filter(EXPRESSION)`` and once for ``OptFilter.from_cbpf(tcpdump -ddd EXPRESSION)``.
Both sets must equal tcpdump's.

Needs root (bpf()) and tcpdump (the Makefile's TEST_TOOLS installs it).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dpkt
import pytest

from tests.filter_corpus import JUMBO_MARK, build_corpus, build_jumbo_corpus
from tests.filter_expressions import ARITHMETIC_EXPRESSIONS, EXPRESSIONS, RANDOM_EXPRESSIONS
from xdppacket import CompiledFilter, OptFilter, XDPFilterError, _bpf, compile_filter
from xdppacket._bpf import BPF_F_XDP_HAS_FRAGS, BPF_PROG_TYPE_XDP

#: Hand-written expressions, then seeded random compositions of primitives and random arithmetic.
ALL_EXPRESSIONS = EXPRESSIONS + RANDOM_EXPRESSIONS + ARITHMETIC_EXPRESSIONS
MATCHED = 3  # XDP_TX: any action other than XDP_PASS marks a match
XDP_PASS = 2

UNSUPPORTED = {
    "ip6 protochain 6": "protochain",
    "host localhost": "host name",
    "mpls": "mpls",
    "mpls 100": "mpls",
    "pppoes": "pppoes",
    "pppoed": "pppoed",
    "geneve": "geneve",
    "ip broadcast": "ip broadcast",
    "decnet host 10.15": "decnet",
    "stp": "stp",
    "ipx": "ipx",
    "iso": "iso",
    "llc": "llc",
    "atalk": "atalk",
    "netbeui": "netbeui",
    "inbound": "inbound",
    "ifindex 1": "ifindex",
    "byte 2 = 3": "byte",
    "ether proto 0xfe": "ether proto 0xfe",
    "ether proto \\atalk": "atalk",
    "net 10.0.0.0 mask 255.0.255.0": "not contiguous",
}


@pytest.fixture(scope="module")
def tcpdump() -> str:
    path = shutil.which("tcpdump") or next(
        (p for p in ("/usr/sbin/tcpdump", "/usr/bin/tcpdump") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip("tcpdump is not installed (make setup installs it from TEST_TOOLS)")
    return path


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return build_corpus()


@pytest.fixture(scope="module")
def corpus_pcap(corpus: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _written_for_tcpdump(corpus, tmp_path_factory)


def _written_for_tcpdump(corpus: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("filter") / "corpus.pcap"
    with path.open("wb") as file:
        writer = dpkt.pcap.Writer(file, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for index, frame in enumerate(corpus):
            writer.writepkt(frame, ts=index)  # the timestamp identifies the frame
    os.chmod(path.parent, 0o755)  # tcpdump may drop to its own user before reading
    os.chmod(path, 0o644)
    return path


#: tcpdump refuses a filter its optimizer proves can never match; the verdict is "no frame".
REJECTS_ALL = "expression rejects all packets"


def _run_tcpdump(tcpdump: str, arguments: list[str], expression: str) -> bytes | None:
    """tcpdump's output, or None when it refuses a filter that can never match."""
    result = subprocess.run(
        [tcpdump, *arguments, "--", expression], capture_output=True, check=False, timeout=60
    )
    if result.returncode != 0:
        error = result.stderr.decode().strip()
        if REJECTS_ALL in error:
            return None
        raise AssertionError(f"tcpdump {' '.join(arguments)} rejected {expression!r}: {error}")
    return result.stdout


def _tcpdump_matches(tcpdump: str, pcap: Path, expression: str) -> set[int]:
    output = _run_tcpdump(tcpdump, ["-Z", "root", "-nn", "-r", str(pcap), "-w", "-"], expression)
    if output is None:
        return set()
    return {int(ts) for ts, _ in dpkt.pcap.Reader(io.BytesIO(output))}


def _tcpdump_classic(tcpdump: str, expression: str) -> str | None:
    """``tcpdump -ddd`` output; None if libpcap proved the filter never matches."""
    output = _run_tcpdump(tcpdump, ["-ddd"], expression)
    return None if output is None else output.decode()


def _accepted_classic(tcpdump: str, expression: str) -> str:
    program = _tcpdump_classic(tcpdump, expression)
    assert program is not None, f"tcpdump: {expression!r} {REJECTS_ALL}"
    return program


@pytest.fixture(scope="module")
def libpcap_verdicts(tcpdump: str, corpus_pcap: Path) -> dict[str, tuple[set[int], str | None]]:
    """tcpdump's matching frame indices and ``-ddd`` program for every expression."""

    def verdict(expression: str) -> tuple[set[int], str | None]:
        return (
            _tcpdump_matches(tcpdump, corpus_pcap, expression),
            _tcpdump_classic(tcpdump, expression),
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(ALL_EXPRESSIONS, pool.map(verdict, ALL_EXPRESSIONS)))


def _kernel_matches(compiled: CompiledFilter, corpus: list[bytes], frags: bool = False) -> set[int]:
    """The frames the program matches; ``frags``: its frags form, loaded frags-aware, so that
    the kernel hands it a frame longer than a page in several buffers, as a NIC would."""
    fd = _bpf.prog_load(BPF_PROG_TYPE_XDP, compiled.standalone(MATCHED, frags), "GPL", "filter_test",
                        prog_flags=BPF_F_XDP_HAS_FRAGS if frags else 0)
    try:
        verdicts = [_bpf.prog_test_run(fd, frame)[0] for frame in corpus]
    finally:
        os.close(fd)
    unexpected = set(verdicts) - {MATCHED, XDP_PASS}
    assert not unexpected, f"the program returned {unexpected}"
    return {index for index, verdict in enumerate(verdicts) if verdict == MATCHED}


def _describe(difference: set[int], corpus: list[bytes]) -> str:
    return "\n".join(
        f"  frame {i} ({len(corpus[i])} bytes): {corpus[i][:64].hex()}"
        for i in sorted(difference)[:5]
    )


def _assert_same(ours: set[int], theirs: set[int], corpus: list[bytes], what: str) -> None:
    if ours != theirs:
        only_ours, only_theirs = ours - theirs, theirs - ours
        pytest.fail(
            f"{what}: {len(only_ours)} frames match only ours, {len(only_theirs)} only tcpdump's\n"
            f"only ours:\n{_describe(only_ours, corpus)}\nonly tcpdump:\n{_describe(only_theirs, corpus)}",
            pytrace=False,
        )


def test_corpus_is_large_and_mixed(
    corpus: list[bytes], libpcap_verdicts: dict[str, tuple[set[int], str | None]]
) -> None:
    assert len(corpus) >= 2000
    assert min(len(frame) for frame in corpus) == 14
    assert len(EXPRESSIONS) >= 150
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS)
    # Most expressions split the corpus: the comparison would be weak if they matched all or nothing.
    splitting = [e for e in EXPRESSIONS if 0 < len(libpcap_verdicts[e][0]) < len(corpus)]
    assert len(splitting) >= len(EXPRESSIONS) - 5, set(EXPRESSIONS) - set(splitting)


@pytest.mark.parametrize("expression", ALL_EXPRESSIONS)
def test_compiled_expression_matches_tcpdump(
    expression: str, corpus: list[bytes], libpcap_verdicts: dict[str, tuple[set[int], str | None]]
) -> None:
    ours = _kernel_matches(compile_filter(expression), corpus)
    _assert_same(ours, libpcap_verdicts[expression][0], corpus, f"compile_filter({expression!r})")


def test_a_long_host_list_matches_tcpdump(tcpdump: str, corpus: list[bytes], corpus_pcap: Path) -> None:
    """400 alternatives, past what a recursive walk of the flow graph could take: the
    addresses of the corpus among hundreds that match nothing, in a scattered order."""
    others = [f"10.9.{i // 200}.{i % 200}" for i in range(396)]
    hosts = others[:100] + ["1.2.3.4"] + others[100:250] + ["10.0.0.2", "172.16.5.4"] + others[250:] + ["10.1.2.3"]
    expression = " or ".join(f"host {host}" for host in hosts)
    theirs = _tcpdump_matches(tcpdump, corpus_pcap, expression)
    assert 0 < len(theirs) < len(corpus)
    _assert_same(_kernel_matches(compile_filter(expression), corpus), theirs, corpus, "400 hosts")
    classic = OptFilter.from_cbpf(_accepted_classic(tcpdump, expression)).compiled
    _assert_same(_kernel_matches(classic, corpus), theirs, corpus, "400 hosts, from tcpdump -ddd")


#: The expressions that read the frame length, whose frags-aware form takes it from a helper.
LENGTH_EXPRESSIONS = [e for e in ALL_EXPRESSIONS if any(word in e.split() for word in ("len", "greater", "less"))]


@pytest.mark.parametrize("expression", LENGTH_EXPRESSIONS)
def test_the_frags_form_of_a_length_filter_matches_tcpdump(
    expression: str, corpus: list[bytes], libpcap_verdicts: dict[str, tuple[set[int], str | None]]
) -> None:
    """The same verdicts with the length from ``bpf_xdp_get_buff_len`` (one buffer here), for
    the expression compiler and the classic translation."""
    compiled = compile_filter(expression)
    assert compiled.frags_instructions != compiled.instructions
    ours = _kernel_matches(compiled, corpus, frags=True)
    matches, program = libpcap_verdicts[expression]
    _assert_same(ours, matches, corpus, f"compile_filter({expression!r}), frags form")
    if program is not None:
        ours = _kernel_matches(OptFilter.from_cbpf(program).compiled, corpus, frags=True)
        _assert_same(ours, matches, corpus, f"from_cbpf(tcpdump -ddd {expression!r}), frags form")


#: Conditions on bytes beyond a jumbo frame's first buffer, through every kind of load:
#: constant offsets, header-relative ones (IPv4 header length, IPv6, VLAN), a computed index,
#: arithmetic keeping values across loads, and offsets past the frame's end ({m}: the mark).
JUMBO_EXPRESSIONS = [expression.format(m=f"{JUMBO_MARK:#x}") for expression in (
    "ether[5000] = {m}",
    "ether[3600] = {m} and ether[8999] = {m}",
    "ether[6000:2] > 0x5a00",
    "ether[4998:4] & 0xff00 = 0x5a00",
    "ip[4986] = {m}",
    "udp[4958] = {m}",
    "tcp[4946] = {m} or udp[5958] = {m}",
    "ip6[4986] = {m}",
    "vlan and ip[4982] = {m}",
    "ether[(ether[0] & 0) + 5000] = {m}",
    "ether[5000] + ether[6000] + ether[8999] = 3 * {m}",
    "ether[5000] * 2 > ether[6000] + ether[7000]",
    "ether[9013] = ether[9013] and ether[3400] = ether[3400]",
    "ether[9014] = 0 or ether[20000] = 0",
    "len > 6000 and ether[5000] != {m}",
    "arp and ether[4000] > 0x80",
)]


@pytest.fixture(scope="module")
def jumbo_corpus() -> list[bytes]:
    return build_jumbo_corpus()


@pytest.mark.parametrize("expression", JUMBO_EXPRESSIONS)
def test_the_frags_form_reads_a_jumbo_frame_beyond_its_first_buffer_as_tcpdump_does(
    expression: str, tcpdump: str, jumbo_corpus: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Frames of up to 9,014 bytes, which the kernel hands a frags-aware program in several
    buffers: loads beyond the first go through ``bpf_xdp_load_bytes``. Expression compiler
    and classic translation alike."""
    theirs = _tcpdump_matches(tcpdump, _written_for_tcpdump(jumbo_corpus, tmp_path_factory), expression)
    if "9014" not in expression:
        assert 0 < len(theirs) < len(jumbo_corpus), "an expression that splits the frames says more"
    ours = _kernel_matches(compile_filter(expression), jumbo_corpus, frags=True)
    _assert_same(ours, theirs, jumbo_corpus, f"compile_filter({expression!r}), frags form")
    classic = OptFilter.from_cbpf(_accepted_classic(tcpdump, expression)).compiled
    _assert_same(_kernel_matches(classic, jumbo_corpus, frags=True), theirs, jumbo_corpus,
                 f"from_cbpf(tcpdump -ddd {expression!r}), frags form")


def test_length_filters_are_among_the_expressions() -> None:
    assert len(LENGTH_EXPRESSIONS) >= 5, LENGTH_EXPRESSIONS


@pytest.mark.parametrize("expression", ALL_EXPRESSIONS)
def test_translated_cbpf_matches_tcpdump(
    expression: str, corpus: list[bytes], libpcap_verdicts: dict[str, tuple[set[int], str | None]]
) -> None:
    matches, program = libpcap_verdicts[expression]
    if program is None:  # libpcap proved it never matches: so must the expression compiler
        assert not matches
        assert not _kernel_matches(compile_filter(expression), corpus)
        return
    option = OptFilter.from_cbpf(program)
    assert option.expression is None
    ours = _kernel_matches(option.compiled, corpus)
    _assert_same(ours, matches, corpus, f"from_cbpf(tcpdump -ddd {expression!r})")


@pytest.mark.parametrize("expression", sorted(UNSUPPORTED))
def test_what_tcpdump_accepts_and_we_refuse_is_named(expression: str, tcpdump: str) -> None:
    _accepted_classic(tcpdump, expression)  # tcpdump accepts it ...
    with pytest.raises(XDPFilterError) as raised:  # ... we refuse it, naming the construct
        compile_filter(expression)
    assert UNSUPPORTED[expression] in str(raised.value)


#: Refused by the expression compiler, yet tcpdump's own programs for them translate.
CLASSIC_ONLY = [
    "ip broadcast",
    "llc",
    "stp",
    "ipx",
    "byte 2 = 3",
    "mpls 100 and ip",
    "pppoes",
    "geneve",
    "decnet host 10.15",
    "ether proto 0xfe",
    "iso",
]


@pytest.mark.parametrize("expression", CLASSIC_ONLY)
def test_refused_constructs_work_through_classic_bpf(
    expression: str, tcpdump: str, corpus: list[bytes], corpus_pcap: Path
) -> None:
    with pytest.raises(XDPFilterError):
        compile_filter(expression)
    option = OptFilter.from_cbpf(_accepted_classic(tcpdump, expression))
    ours = _kernel_matches(option.compiled, corpus)
    theirs = _tcpdump_matches(tcpdump, corpus_pcap, expression)
    _assert_same(ours, theirs, corpus, f"from_cbpf(tcpdump -ddd {expression!r})")


def test_protochain_loops_are_refused_in_classic_bpf_too(tcpdump: str) -> None:
    with pytest.raises(XDPFilterError, match="protochain"):
        OptFilter.from_cbpf(_accepted_classic(tcpdump, "ip6 protochain 6"))


def test_named_constants_equal_tcpdump(tcpdump: str) -> None:
    """Each name tcpdump reads as a number (tcp-syn, icmp6-echo, ...) has libpcap's value."""
    from xdppacket._filter_parser import NAMED_CONSTANTS

    for name, value in NAMED_CONSTANTS.items():
        program = _accepted_classic(tcpdump, f"ether[0] = {name}").split("\n")[1:]
        compares = [line.split() for line in program if line.split()[:1] == ["21"]]  # jeq #k
        assert [int(fields[3]) for fields in compares] == [value], name


def test_classic_program_as_tuples_equals_text(tcpdump: str, corpus: list[bytes]) -> None:
    text = _accepted_classic(tcpdump, "tcp port 80")
    rows = [tuple(int(f) for f in line.split()) for line in text.strip().splitlines()[1:]]
    from_text, from_tuples = OptFilter.from_cbpf(text), OptFilter.from_cbpf(rows)
    assert from_text.compiled.instructions == from_tuples.compiled.instructions
    assert struct.unpack_from("<B", from_text.compiled.instructions)[0] == 0xBF  # r9 = r1 first
