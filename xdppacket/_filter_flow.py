"""The control flow of a filter: field tests linked by their true/false successors.

libpcap optimizes every program tcpdump runs, and two of its rewrites change which loads
run first, so they decide whether a frame cut short inside a header matches:

- *jump threading*: a test whose outcome is known on an edge (the same field was
  compared on every path there) is skipped, and so is a test whose two outcomes lead to
  the same place (its loads are dead code to libpcap);
- *or/and pull-up*: in a chain of tests that share their "true" (or "false") successor,
  a later test of the field just compared moves up next to it ("host A or B" compares
  the source with A and with B before it loads the destination).

Applying the same two rewrites here makes a compiled expression load what libpcap's
program loads, in the same order. Nodes are mutable while the graph is rewritten and
never leave this module's callers' hands afterwards.
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


# --- facts: what every path to an edge knows about fields ----------------------------


@dataclass(frozen=True)
class _Knowledge:
    """What is known about one field: its value (after an equality held) and the outcomes
    of comparisons already made (libpcap's fold_edge knows exactly these two things)."""

    equal: int | None
    outcomes: frozenset[tuple[str, int, bool]]


_Facts = dict[tuple[object, ...], _Knowledge]

# libpcap compiles "!=", "<" and "<=" as "=", ">=" and ">" with the branches swapped.
_NEGATED = {"!=": "=", "<": ">=", "<=": ">"}


def _normal(op: str, outcome: bool) -> tuple[str, bool]:
    return (_NEGATED[op], not outcome) if op in _NEGATED else (op, outcome)


def _merge(a: _Facts, b: _Facts) -> _Facts:
    merged: _Facts = {}
    for field in a.keys() & b.keys():
        left, right = a[field], b[field]
        equal = left.equal if left.equal == right.equal else None
        outcomes = left.outcomes & right.outcomes
        if equal is not None or outcomes:
            merged[field] = _Knowledge(equal, outcomes)
    return merged


def _decide(test: FieldTest, facts: _Facts) -> bool | None:
    knowledge = facts.get(test.field)
    if knowledge is None:
        return None
    op, swapped = _normal(test.op, False)
    for known_op, constant, outcome in knowledge.outcomes:
        if (known_op, constant) == (op, test.constant):
            return outcome != swapped
    if op == "=" and knowledge.equal is not None:
        return (knowledge.equal == test.constant) != swapped
    return None


def _learn(facts: _Facts, test: FieldTest, outcome: bool) -> _Facts:
    """Facts after ``test`` turned out ``outcome``."""
    op, normal_outcome = _normal(test.op, outcome)
    known = facts.get(test.field, _Knowledge(None, frozenset()))
    equal = test.constant if (op, normal_outcome) == ("=", True) else known.equal
    learned = dict(facts)
    learned[test.field] = _Knowledge(equal, known.outcomes | {(op, test.constant, normal_outcome)})
    return learned


def _edge_facts(order: list[Node]) -> dict[int, _Facts]:
    """For each node: the facts that hold on every path into it."""
    facts: dict[int, _Facts] = {id(order[0]): {}} if order else {}
    for node in order:
        here = facts.get(id(node), {})
        for outcome, successor in ((True, node.true), (False, node.false)):
            if isinstance(successor, Exit):
                continue
            on_edge = _learn(here, node.test, outcome) if isinstance(node.test, FieldTest) else here
            previous = facts.get(id(successor))
            facts[id(successor)] = on_edge if previous is None else _merge(previous, on_edge)
    return facts


def _thread(entry: Node) -> bool:
    """Skip tests whose outcome is known on an edge. True if anything changed.

    Facts are computed once per pass: redirecting an edge only removes paths, so facts
    computed before stay true (if weaker) and the next pass uses the stronger ones.
    """
    order = reachable(entry)
    facts = _edge_facts(order)
    changed = False
    for node in order:
        here = facts.get(id(node), {})
        for outcome in (True, False):
            on_edge = _learn(here, node.test, outcome) if isinstance(node.test, FieldTest) else here
            target = node.true if outcome else node.false
            start = target
            while isinstance(target, Node):
                if target.true is target.false:  # either way leads to the same place
                    target = target.true
                    continue
                if not isinstance(target.test, FieldTest):
                    break
                decided = _decide(target.test, on_edge)
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
