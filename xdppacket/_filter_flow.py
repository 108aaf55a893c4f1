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
    # A depth-first walk, false branch first, each node placed once both branches are
    # done; with a stack of its own, as a chain of a thousand tests is that deep.
    stack: list[tuple[Target, bool]] = [(entry, False)]
    while stack:
        node, branches_done = stack.pop()
        if branches_done:
            order.append(node)  # type: ignore[arg-type]  # only nodes are pushed as done
        elif isinstance(node, Node) and id(node) not in seen:
            seen.add(id(node))
            stack += ((node, True), (node.true, False), (node.false, False))
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


class _Facts:
    """The edges of one pass indexed by what they tell, so that deciding a test looks up
    the few edges that bear on it rather than every edge dominating it (a chain of a
    hundred hosts has hundreds of those). Sets, so that C walks the smaller side."""

    def __init__(self, order: list[Node]) -> None:
        #: (field, op, constant, outcome), after ``_normal`` -> the edges on which that holds.
        self.comparisons: dict[tuple[object, str, int, bool], set[_Edge]] = {}
        #: field -> the edges on which it was found equal to a constant.
        self.equalities: dict[tuple[object, ...], set[_Edge]] = {}
        for node in order:
            test = node.test
            if not isinstance(test, FieldTest):
                continue
            for outcome in (True, False):
                op, known = _normal(test.op, outcome)
                self.comparisons.setdefault((test.field, op, test.constant, known), set()).add((id(node), outcome))
                if (op, known) == ("=", True):
                    self.equalities.setdefault(test.field, set()).add((id(node), outcome))

    def decide(self, test: FieldTest, edges: frozenset[_Edge]) -> bool | None:
        """The outcome of ``test`` if one of ``edges`` (those dominating it) implies it
        (libpcap's fold_edge): the same comparison was made, or the field was found equal
        to another constant."""
        op, swapped = _normal(test.op, False)
        for known in (True, False):
            if not edges.isdisjoint(self.comparisons.get((test.field, op, test.constant, known), ())):
                return known != swapped
        if op == "=" and not edges.isdisjoint(self.equalities.get(test.field, ())):
            return swapped  # equal to another constant (the same one was found above): "=" is false
        return None


def _thread(entry: Node) -> bool:
    """Skip tests whose outcome is known on an edge. True if anything changed.

    Dominators are computed once per pass: redirecting an edge only removes paths, so
    what dominated before still holds (if weaker), and the next pass sees the rest.
    """
    order = reachable(entry)
    dominators = _dominators(order)
    facts = _Facts(order)
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
                decided = facts.decide(target.test, on_edge)
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
        into_diff = [diff_pred] if diff_pred is not None else list(preds[id(diff)])  # before ``same`` is one
        _retarget(preds, before, not chain_on_false, following(same))
        _retarget(preds, same, not chain_on_false, diff)
        for pred in into_diff:
            for outcome in (True, False):
                if (pred.true if outcome else pred.false) is diff:
                    _retarget(preds, pred, outcome, same)
        changed = True
    return changed


def _retarget(preds: dict[int, list[Node]], node: Node, outcome: bool, target: Target) -> None:
    """Point ``node``'s ``outcome`` edge at ``target``, keeping ``preds`` (one entry per edge)
    current: recomputing it after every move made long chains ("host A or host B or ...")
    quadratic to compile."""
    previous = node.true if outcome else node.false
    if previous is target:
        return
    if isinstance(previous, Node):
        preds[id(previous)].remove(node)
    if isinstance(target, Node):
        preds[id(target)].append(node)
    if outcome:
        node.true = target
    else:
        node.false = target


def optimize(entry: Target, max_rounds: int = 10_000) -> Target:
    """Apply jump threading and both pull-ups until nothing changes; return the new entry."""
    root = Node(None, Opaque(), entry, entry)  # a fixed predecessor, so the entry can change
    for _ in range(max_rounds):
        if not (_thread(root) or _pull_up(root, True) or _pull_up(root, False)):
            break
    return root.true
