"""Make the sampled stacks add up to the exact per-line figures.

In the default mode the engine charges every block exactly to its line (the
capture's ``nodes``) and samples full stacks (``stacks``): one sample per
``sample_bytes`` allocated, each an estimate of that many bytes. Left as they
come, a line of exactly 44.5 MiB shows stacks summing to 37 or 55 MiB, and the
flame graph's total is not the peak beside it.

Here each line's sampled stacks are scaled, per view and per thread, so that
they sum to the line's exact bytes, blocks and native bytes: the stacks keep
their sampled *shares* (which callers allocated how much of the line), the
totals become exact. A line no sample hit has its exact bytes put under
``(stack not sampled)`` at its thread's root: the flame graph's total is then
every attributed byte. Only the split of a line between its callers remains
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
    exact = _per_line(nodes)
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
    for view in VIEWS:
        for key, indexes in found.items():
            _scale([stacks[i].view(view) for i in indexes], exact[view].get(key))
    missing = {key for view in VIEWS for key in exact[view] if key not in found}
    if missing:
        _add_unsampled(stacks, exact, sorted(missing), not_sampled_frame)


def _per_line(nodes: list[Node]) -> dict[str, dict[_Key, Counts]]:
    """The exact counts of each (line, thread) in each view."""
    out: dict[str, dict[_Key, Counts]] = {view: {} for view in VIEWS}
    for node in nodes:
        if node.frame < 0 and node.parent >= 0:
            continue
        key = (node.frame, node.thread)
        for view in VIEWS:
            counts = node.view(view)
            if counts.bytes or counts.count:
                out[view].setdefault(key, Counts()).add(counts)
    return out


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
    exact: dict[str, dict[_Key, Counts]],
    missing: list[_Key],
    not_sampled_frame: Callable[[], int],
) -> None:
    """Lines with exact bytes and no sampled stack: under their thread's root,
    below a ``(stack not sampled)`` frame."""
    roots = {node.thread: i for i, node in enumerate(stacks) if node.parent < 0 and node.frame < 0}
    marker = -1
    if any(frame >= 0 for frame, _ in missing):
        marker = not_sampled_frame()
    holders: dict[int, int] = {}
    for frame, thread in missing:
        counts = [_copy(exact[view].get((frame, thread))) for view in VIEWS]
        if frame < 0:  # a root with bytes of its own and no sample
            roots[thread] = len(stacks)
            stacks.append(Node(-1, -1, thread, *counts))
            continue
        if thread not in roots:
            roots[thread] = len(stacks)
            stacks.append(Node(-1, -1, thread))
        if thread not in holders:
            holders[thread] = len(stacks)
            stacks.append(Node(roots[thread], marker, thread))
        stacks.append(Node(holders[thread], frame, thread, *counts))


def _copy(counts: Counts | None) -> Counts:
    return Counts() if counts is None else Counts(counts.bytes, counts.count, counts.native)
