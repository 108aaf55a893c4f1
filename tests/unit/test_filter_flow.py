"""The flow-graph rewrites that make our loads happen in libpcap's order."""

from __future__ import annotations

from xdppacket._filter_flow import Exit, FieldTest, Node, Target, optimize, reachable

MATCH, NO_MATCH = Exit("match"), Exit("no match")


def field_test(
    name: str, offset: int, constant: int, true: Target, false: Target, op: str = "="
) -> Node:
    field = (offset, 4, None, None)
    return Node(name, FieldTest(field, field, op, constant), true, false)


def chain(start: Target, follow: str) -> list[object]:
    names = []
    while isinstance(start, Node):
        names.append(start.payload)
        start = start.false if follow == "false" else start.true
    return names


def test_a_test_known_on_every_path_is_skipped() -> None:
    again = field_test("ip again", 12, 0x800, MATCH, NO_MATCH)
    arp = field_test("arp", 12, 0x806, MATCH, NO_MATCH)
    port = field_test("port", 36, 53, again, arp)
    entry = field_test("ip", 12, 0x800, port, arp)
    assert optimize(entry) is entry
    assert port.true is MATCH  # "ip" is known true after "ip"
    assert entry.false is arp  # "arp" stays: the ethertype is only known not to be 0x800
    assert port.false is NO_MATCH  # ... but on this edge it is 0x800, so "arp" is false


def test_or_pullup_compares_one_field_with_every_value_first() -> None:
    """'host A or B': source = A, source = B, destination = A, destination = B."""
    dst_b = field_test("dst B", 30, 2, MATCH, NO_MATCH)
    src_b = field_test("src B", 26, 2, MATCH, dst_b)
    dst_a = field_test("dst A", 30, 1, MATCH, src_b)
    src_a = field_test("src A", 26, 1, MATCH, dst_a)
    entry = field_test("ip", 12, 0x800, src_a, NO_MATCH)
    assert optimize(entry) is entry
    assert chain(entry.true, "false") == ["src A", "src B", "dst A", "dst B"]


def test_and_pullup_mirrors_it_for_chains_that_share_their_false_exit() -> None:
    last = field_test("y > 2", 30, 2, MATCH, NO_MATCH, ">")
    third = field_test("x > 2", 26, 2, last, NO_MATCH, ">")
    second = field_test("y > 1", 30, 1, third, NO_MATCH, ">")
    first = field_test("x > 1", 26, 1, second, NO_MATCH, ">")
    entry = field_test("ip", 12, 0x800, first, NO_MATCH)
    assert optimize(entry) is entry
    assert chain(entry.true, "true") == ["x > 1", "x > 2", "y > 1", "y > 2"]


def test_a_chain_of_thousands_of_tests_is_walked_and_optimized_without_recursion() -> None:
    """'host A or host B or ...' makes a chain as long as the list; each test's false edge
    leads to the next. The walk places each node after its predecessors, false branch first."""
    tests = 3000
    entry: Target = NO_MATCH
    for index in reversed(range(tests)):
        entry = field_test(f"src {index}", 26, index, MATCH, entry)
    assert isinstance(entry, Node)
    assert [node.payload for node in reachable(entry)] == [f"src {index}" for index in range(tests)]
    assert chain(optimize(entry), "false") == [f"src {index}" for index in range(tests)]


def test_the_walk_places_a_node_after_every_predecessor() -> None:
    """A diamond and a shared tail: ip -> (tcp | udp) -> port, each reached once."""
    port = field_test("port", 36, 53, MATCH, NO_MATCH)
    tcp = field_test("tcp", 23, 6, port, NO_MATCH)
    udp = field_test("udp", 23, 17, port, NO_MATCH)
    ip = field_test("ip", 12, 0x800, tcp, udp)
    assert [node.payload for node in reachable(ip)] == ["ip", "tcp", "udp", "port"]
