"""The control flow of a filter: field tests linked by their true/false successors.

libpcap optimizes every program tcpdump runs, and two of its rewrites change which loads
run first, so they decide whether a frame cut short inside a header matches:

- *jump threading*: a test whose outcome follows from one edge that every path to it
  takes (the same comparison, or the field found equal to another constant: libpcap's
  edge dominators and fold_edge) is skipped, and so is a test whose two outcomes lead
  to the same place (its loads are dead code to libpcap);
- *or/and pull-up*: in a chain of tests that share their "true" (or "false") successor,
  a later test of the field just compared moves up next to it ("host A or B" compares
  the source with A and with B before it loads the destination).

Applying the same rewrites here makes a compiled expression load what libpcap's program
loads, in the same order. ``optimize`` rewrites the graph in place; not thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["Exit", "FieldTest", "Node", "Opaque", "Target", "optimize", "reachable"]


@dataclass(frozen=True)
class FieldTest:
    """``field op constant``; ``field`` identifies a loaded (and masked) value."""

    field: tuple[object, ...]
    #: Identity of the value libpcap holds in its accumulator after the test (a ``jset``
    #: leaves the unmasked value there).
    value_key: tuple[object, ...]
    op: str
    constant: int


@dataclass(frozen=True)
class Opaque:
    """A test the flow cannot reason about (arithmetic comparisons)."""


class Exit:
    """A terminal: the filter matches or does not."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Node:
    """One test (``payload``, what the emitter needs; ``test``, what the flow may reason
    about) and where control goes after it."""

    __slots__ = ("false", "payload", "test", "true")

    def __init__(
        self, payload: object, test: FieldTest | Opaque, true: Target, false: Target
    ) -> None:
        self.payload = payload
        self.test = test
        self.true = true
        self.false = false


Target = Union[Node, Exit]


def reachable(entry: Target) -> list[Node]:
    """The nodes reachable from ``entry``, each after all of its predecessors."""
    order: list[Node] = []
    seen: set[int] = set()

    def visit(node: Target) -> None:
        if isinstance(node, Exit) or id(node) in seen:
            return
        seen.add(id(node))
        visit(node.false)
        visit(node.true)
        order.append(node)

    visit(entry)
    order.reverse()
    return order


# --- facts: the comparisons made on every path to an edge -----------------------------

#: An edge: (id of the node whose test it leaves, the outcome it stands for).
_Edge = tuple[int, bool]

# libpcap compiles "!=", "<" and "<=" as "=", ">=" and ">" with the branches swapped.
_NEGATED = {"!=": "=", "<": ">=", "<=": ">"}


def _normal(op: str, outcome: bool) -> tuple[str, bool]:
    return (_NEGATED[op], not outcome) if op in _NEGATED else (op, outcome)


def _dominators(order: list[Node]) -> dict[int, frozenset[_Edge]]:
    """For each node: the edges every path into it takes (libpcap's edge dominators)."""
    dominators: dict[int, frozenset[_Edge]] = {id(order[0]): frozenset()} if order else {}
    for node in order:
        here = dominators.get(id(node), frozenset())
        for outcome, successor in ((True, node.true), (False, node.false)):
            if isinstance(successor, Exit):
                continue
            on_edge = here | {(id(node), outcome)}
            previous = dominators.get(id(successor))
            dominators[id(successor)] = on_edge if previous is None else previous & on_edge
    return dominators


def _decide(test: FieldTest, edges: frozenset[_Edge], tests: dict[int, FieldTest]) -> bool | None:
    """The outcome of ``test`` if one dominating edge implies it (libpcap's fold_edge):
    the same comparison was made, or the field was found equal to another constant."""
    op, swapped = _normal(test.op, False)
    for node_id, outcome in edges:
        known = tests.get(node_id)
        if known is None or known.field != test.field:
            continue
        known_op, known_outcome = _normal(known.op, outcome)
        if (known_op, known.constant) == (op, test.constant):
            return known_outcome != swapped
        if (known_op, known_outcome, op) == ("=", True, "="):
            return swapped  # equal to another constant: "=" is false
    return None


def _thread(entry: Node) -> bool:
    """Skip tests whose outcome is known on an edge. True if anything changed.

    Dominators are computed once per pass: redirecting an edge only removes paths, so
    what dominated before still holds (if weaker), and the next pass sees the rest.
    """
    order = reachable(entry)
    dominators = _dominators(order)
    tests = {id(node): node.test for node in order if isinstance(node.test, FieldTest)}
    changed = False
    for node in order:
        here = dominators.get(id(node), frozenset())
        for outcome in (True, False):
            on_edge = here | {(id(node), outcome)}
            target = node.true if outcome else node.false
            start = target
            while isinstance(target, Node):
                if target.true is target.false:  # either way leads to the same place
                    target = target.true
                    continue
                if not isinstance(target.test, FieldTest):
                    break
                decided = _decide(target.test, on_edge, tests)
                if decided is None:
                    break
                target = target.true if decided else target.false
            if target is not start:
                changed = True
                if outcome:
                    node.true = target
                else:
                    node.false = target
    return changed


# --- pull-up -----------------------------------------------------------------------------


def _predecessors(order: list[Node]) -> dict[int, list[Node]]:
    preds: dict[int, list[Node]] = {id(node): [] for node in order}
    for node in order:
        for successor in (node.true, node.false):
            if isinstance(successor, Node):
                preds[id(successor)].append(node)
    return preds


def _value_key(node: Target) -> tuple[object, ...] | None:
    if isinstance(node, Node) and isinstance(node.test, FieldTest):
        return node.test.value_key
    return None


def _pull_up(entry: Node, chain_on_false: bool) -> bool:
    """libpcap's or_pullup (``chain_on_false``) or and_pullup. True if anything changed."""
    order = reachable(entry)
    preds = _predecessors(order)

    def shared(node: Node) -> Target:
        return node.true if chain_on_false else node.false

    def following(node: Node) -> Target:
        return node.false if chain_on_false else node.true

    def in_chain(node: Target, first: Node) -> bool:
        return (
            isinstance(node, Node)
            and isinstance(node.test, FieldTest)
            and shared(node) is shared(first)
            and (node is first or len(preds[id(node)]) == 1)
        )

    changed = False
    for first in order:
        incoming = preds[id(first)]
        if not incoming or not isinstance(first.test, FieldTest):
            continue
        value = _value_key(incoming[0])
        if value is None or any(_value_key(p) != value for p in incoming):
            continue
        diff: Target = first
        diff_pred: Node | None = None
        while in_chain(diff, first) and _value_key(diff) == value:
            assert isinstance(diff, Node)
            diff_pred, diff = diff, following(diff)
        if not in_chain(diff, first):
            continue
        assert isinstance(diff, Node)
        before, same = diff, following(diff)
        while in_chain(same, first) and _value_key(same) != value:
            assert isinstance(same, Node)
            before, same = same, following(same)
        if not in_chain(same, first):
            continue
        assert isinstance(same, Node)
        _set_following(before, following(same), chain_on_false)
        _set_following(same, diff, chain_on_false)
        for pred in [diff_pred] if diff_pred is not None else preds[id(diff)]:
            assert pred is not None
            if pred.true is diff:
                pred.true = same
            if pred.false is diff:
                pred.false = same
        changed = True
        preds = _predecessors(order)  # moving a node keeps the set of reachable nodes
    return changed


def _set_following(node: Node, target: Target, chain_on_false: bool) -> None:
    if chain_on_false:
        node.false = target
    else:
        node.true = target


def optimize(entry: Target, max_rounds: int = 10_000) -> Target:
    """Apply jump threading and both pull-ups until nothing changes; return the new entry."""
    root = Node(None, Opaque(), entry, entry)  # a fixed predecessor, so the entry can change
    for _ in range(max_rounds):
        if not (_thread(root) or _pull_up(root, True) or _pull_up(root, False)):
            break
    return root.true
