"""``fair_shares``: how one multi-queue read splits its batch between the queues.

A pure function: given how many frames each queue has ready (in the order this read
visits them) and the batch size, it says how many to take from each. The rules: never
more than a queue has, as many in all as the batch allows, and as even as possible
(a queue gets less than another only if it has no more ready), with the odd frame out
going to the queues visited first. ``XDPMultiQueue`` rotates the visiting order at each
call, so over several calls no queue is favoured.
"""

from __future__ import annotations

import itertools

import pytest

from xdppacket._fairness import fair_shares


@pytest.mark.parametrize(
    ("ready", "limit", "shares"),
    [
        # A flooded first queue does not crowd out the few frames of the others.
        ([16, 3, 3, 3], 16, [7, 3, 3, 3]),
        ([64, 1, 0, 2], 16, [13, 1, 0, 2]),
        # Everyone busy: an even split, the odd frames to the queues visited first.
        ([16, 16, 16, 16], 16, [4, 4, 4, 4]),
        ([16, 16, 16, 16], 6, [2, 2, 1, 1]),
        ([9, 9, 9], 4, [2, 1, 1]),
        # One frame per queue at most (read_packet asks for limit = queues, 1 ready at most).
        ([1, 0, 1, 1], 4, [1, 0, 1, 1]),
        # A batch of one goes to the first queue that has anything.
        ([0, 5, 5, 5], 1, [0, 1, 0, 0]),
        # Less ready than the batch allows: everything.
        ([2, 0, 3, 1], 16, [2, 0, 3, 1]),
        # Nothing ready: nothing taken.
        ([0, 0, 0, 0], 16, [0, 0, 0, 0]),
        # A queue capped by what it has leaves its share to the others.
        ([10, 1, 10], 7, [3, 1, 3]),
        ([1, 10, 10], 10, [1, 5, 4]),
        # One queue.
        ([5], 3, [3]),
        ([], 16, []),
    ],
)
def test_examples(ready: list[int], limit: int, shares: list[int]) -> None:
    assert fair_shares(ready, limit) == shares


def test_rules_hold_for_every_small_case() -> None:
    for ready in itertools.product(range(6), repeat=4):
        for limit in range(1, 22):
            shares = fair_shares(list(ready), limit)
            case = f"ready={ready} limit={limit} shares={shares}"
            assert all(0 <= share <= count for share, count in zip(shares, ready)), case
            assert sum(shares) == min(limit, sum(ready)), case
            for i, j in itertools.permutations(range(len(ready)), 2):
                if shares[i] < ready[i]:  # i wanted more: nobody got more than one frame extra
                    assert shares[j] <= shares[i] + 1, case
                if i < j and shares[i] < shares[j]:  # earlier queues win ties: i must be capped
                    assert shares[i] == ready[i], case


def test_the_inputs_are_not_modified() -> None:
    ready = [4, 4, 4]
    fair_shares(ready, 5)
    assert ready == [4, 4, 4]
