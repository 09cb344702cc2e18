"""Wrappers that bracket a profiled function's calls and each resumption.

``begin``/``end`` bracket a whole call (for a generator or coroutine: from its
first resumption to its end). ``step_in``/``step_out`` bracket every stretch
of the function's own execution: on Python 3.11 that is when the C trace
function must be installed in the running thread.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator
from typing import Any

Hook = Callable[[], None]


def wrap(func: Callable[..., Any], begin: Hook, end: Hook, step_in: Hook, step_out: Hook) -> Any:
    """Return a wrapper of the same kind as ``func`` (plain, generator, async...)."""
    if inspect.isasyncgenfunction(func):
        return _wrap_asyncgen(func, begin, end, step_in, step_out)
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(func, begin, end, step_in, step_out)
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(func, begin, end, step_in, step_out)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin()
        step_in()
        try:
            return func(*args, **kwargs)
        finally:
            step_out()
            end()

    return wrapper


def _stepping(it: Any, step_in: Hook, step_out: Hook) -> Generator[Any, Any, Any]:
    """Drive a generator or coroutine, bracketing each resumption.

    Forwards ``send``, ``throw`` and ``close`` like ``yield from`` does.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        step_in()
        try:
            item = it.send(value) if error is None else it.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            step_out()
        value, error = None, None
        try:
            value = yield item
        except GeneratorExit:
            step_in()
            try:
                it.close()
            finally:
                step_out()
            raise
        except BaseException as exc:
            error = exc


def _wrap_generator(func, begin, end, step_in, step_out):  # type: ignore[no-untyped-def]
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin()
        try:
            return (yield from _stepping(func(*args, **kwargs), step_in, step_out))
        finally:
            end()

    return wrapper


class _Stepped:
    """An awaitable that awaits ``awaitable`` with each resumption bracketed."""

    __slots__ = ("_it", "_step_in", "_step_out")

    def __init__(self, awaitable: Any, step_in: Hook, step_out: Hook) -> None:
        self._it = awaitable.__await__() if not hasattr(awaitable, "send") else awaitable
        self._step_in, self._step_out = step_in, step_out

    def __await__(self) -> Generator[Any, Any, Any]:
        return _stepping(self._it, self._step_in, self._step_out)


def _wrap_coroutine(func, begin, end, step_in, step_out):  # type: ignore[no-untyped-def]
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin()
        try:
            return await _Stepped(func(*args, **kwargs), step_in, step_out)
        finally:
            end()

    return wrapper


def _wrap_asyncgen(func, begin, end, step_in, step_out):  # type: ignore[no-untyped-def]
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        begin()
        agen = func(*args, **kwargs)
        try:
            pending = agen.asend(None)
            while True:
                try:
                    item = await _Stepped(pending, step_in, step_out)
                except StopAsyncIteration:
                    return
                try:
                    pending = agen.asend((yield item))
                except GeneratorExit:
                    await _Stepped(agen.aclose(), step_in, step_out)
                    raise
                except BaseException as exc:
                    pending = agen.athrow(exc)
        finally:
            end()

    return wrapper
