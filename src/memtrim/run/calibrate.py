"""Make the sampled stacks add up to the exact per-line figures.

In the default mode the engine charges every block exactly to its line (the
capture's ``nodes``) and samples full stacks (``stacks``): one sample per
``sample_bytes`` allocated, each an estimate of that many bytes. Left as they
come, a line of exactly 44.5 MiB shows stacks summing to 37 or 55 MiB, and the
flame graph's total is not the peak beside it.

Here each line's sampled stacks are scaled, per view and per thread, so that
they sum to the line's exact bytes, blocks and native bytes: the stacks keep
their sampled *shares* (which callers allocated how much of the line), the
totals become exact. The lines no sample hit have their exact bytes summed
into one ``(stack not sampled)`` node under their thread's root: the flame
graph's total is then every attributed byte. Only the split of a line between its callers remains
an estimate (the reports say so).
"""

from __future__ import annotations

from collections.abc import Callable

from memtrim.run.capture import VIEWS, Counts, Node

NOT_SAMPLED = "(stack not sampled)"
_Key = tuple[int, int]  # (frame, thread)


def calibrate(
    nodes: list[Node],
    stacks: list[Node],
    not_sampled_frame: Callable[[], int],
    is_c: Callable[[int], bool] = lambda frame: False,
) -> None:
    """Scale ``stacks`` (in place) to the exact figures of ``nodes``.

    ``not_sampled_frame()`` gives the index of the ``(stack not sampled)``
    frame (called only when a line has no sampled stack); ``is_c(frame)``
    tells a C function's frame (``--native-frames``), whose bytes belong to
    the Python line above it.
    """
    found: dict[_Key, list[int]] = {}
    line_of: list[_Key | None] = []
    for index, node in enumerate(stacks):  # parents come before their children
        key: _Key | None = None
        if node.frame < 0:  # a thread's root: its own bytes ran no Python line
            key = (-1, node.thread) if node.parent < 0 else None
        elif not is_c(node.frame):
            key = (node.frame, node.thread)
        elif node.parent >= 0:
            key = line_of[node.parent]
        line_of.append(key)
        if key is not None:
            found.setdefault(key, []).append(index)
    exact, unsampled, bare_roots = _per_line(nodes, found)
    for at, view in enumerate(VIEWS):
        for key, indexes in found.items():
            whole = exact.get(key)
            _scale([stacks[i].view(view) for i in indexes], whole[at] if whole else None)
    _add_unsampled(stacks, unsampled, bare_roots, not_sampled_frame)


_Sums = list[Counts]  # one Counts per view, in the order of VIEWS


def _per_line(
    nodes: list[Node], found: dict[_Key, list[int]]
) -> tuple[dict[_Key, _Sums], dict[int, _Sums], dict[int, _Sums]]:
    """One pass over the exact nodes: the counts of each (line, thread) that
    has sampled stacks; per thread, the sum of the lines that have none; and
    per thread, a root's own bytes that no sample saw."""
    exact: dict[_Key, _Sums] = {}
    unsampled: dict[int, _Sums] = {}
    bare_roots: dict[int, _Sums] = {}
    for node in nodes:
        frame = node.frame
        if frame < 0 and node.parent >= 0:
            continue
        key = (frame, node.thread)
        if key in found:
            sums = exact.get(key) or exact.setdefault(key, _zero())
        else:
            into = bare_roots if frame < 0 else unsampled
            sums = into.get(node.thread) or into.setdefault(node.thread, _zero())
        sums[0].add(node.peak)
        sums[1].add(node.at_exit)
        sums[2].add(node.allocated)
    return exact, unsampled, bare_roots


def _zero() -> _Sums:
    return [Counts(), Counts(), Counts()]


def _scale(parts: list[Counts], whole: Counts | None) -> None:
    """Scale ``parts`` so that they sum to ``whole`` (zero if None), keeping
    their proportions; the rounding goes to the largest parts."""
    whole = whole or Counts()
    for field in ("bytes", "count", "native"):
        target = getattr(whole, field)
        weights = [max(getattr(part, field), 0) for part in parts]
        if sum(weights) == 0 and field == "native":
            # no sample saw native bytes: follow the bytes
            weights = [max(part.bytes, 0) for part in parts]
        total = sum(weights)
        if total == 0:
            if target and parts:  # no weight at all: the first part takes it
                weights = [1] + [0] * (len(parts) - 1)
                total = 1
            else:
                for part in parts:
                    setattr(part, field, 0)
                continue
        shares = [target * w // total for w in weights]
        left = target - sum(shares)
        for i in sorted(range(len(parts)), key=lambda i: -weights[i])[:left]:
            shares[i] += 1
        for part, share in zip(parts, shares, strict=True):
            setattr(part, field, share)
    for part in parts:
        part.native = min(part.native, part.bytes)


def _add_unsampled(
    stacks: list[Node],
    unsampled: dict[int, _Sums],
    bare_roots: dict[int, _Sums],
    not_sampled_frame: Callable[[], int],
) -> None:
    """Lines with exact bytes and no sampled stack: their sum, per thread, in
    one ``(stack not sampled)`` node under the thread's root (one node, not
    one per line: a big program has 100,000s of lines too small to sample)."""
    unsampled = {t: sums for t, sums in unsampled.items() if any(c.bytes or c.count for c in sums)}
    bare_roots = {
        t: sums for t, sums in bare_roots.items() if any(c.bytes or c.count for c in sums)
    }
    if not unsampled and not bare_roots:
        return
    roots = {node.thread: i for i, node in enumerate(stacks) if node.parent < 0 and node.frame < 0}
    for thread, sums in sorted(bare_roots.items()):
        roots[thread] = len(stacks)
        stacks.append(Node(-1, -1, thread, *sums))
    if not unsampled:
        return
    marker = not_sampled_frame()
    for thread, sums in sorted(unsampled.items()):
        if thread not in roots:
            roots[thread] = len(stacks)
            stacks.append(Node(-1, -1, thread))
        stacks.append(Node(roots[thread], marker, thread, *sums))
