"""Wrappers that bracket a profiled function's calls and each resumption.

A plain function gets the engine's C wrapper: it adds no Python frame, so
tracebacks, ``warnings.warn(stacklevel=...)``, ``sys._getframe()`` and
:mod:`inspect` see the user's frames only.

Generators, coroutines and async generators get the Python wrappers below.
On Python 3.11 they bracket every resumption (``step_in``/``step_out``: the C
trace function must be on in the running thread while the profiled frame
runs). On 3.12+ the engine's ``sys.monitoring`` events need no bracketing:
the wrapper only delegates (``yield from``, ``await``), which CPython does
in C, and counts the running calls. Their frames are taken out of the
tracebacks of exceptions that pass through them; a generator's caller
(``sys._getframe(1)`` inside it, a warning's stacklevel) is still a frame of
memtrim's (the wrapper; on 3.11 its stepping frame).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator
from types import CodeType, TracebackType
from typing import Any

from memtrim.engine import tracer

Hook = Callable[[], None]
_GENERATOR, _COROUTINE, _ASYNC_GENERATOR = 0x20, 0x80, 0x200  # inspect.CO_* flags
# Each resumption goes through step_in/step_out (3.11's trace function);
# 3.12+ delegates with no Python code per resumption.
BRACKETED = not tracer.MONITORING


def wrap(func: Callable[..., Any], code: CodeType, on_end: Hook | None) -> Any:
    """A wrapper of the same kind as the profiled ``code`` (plain, generator, async...).

    ``func`` is what is called (``code``'s function, or a decorator's wrapper
    around it); ``on_end`` runs when no call of the wrapper is running any more.
    """
    if code.co_flags & _ASYNC_GENERATOR:
        wrapper = _wrap_asyncgen(func, _Calls(on_end))
    elif code.co_flags & _COROUTINE:
        wrapper = _wrap_coroutine(func, _Calls(on_end))
    elif code.co_flags & _GENERATOR:
        wrapper = _wrap_generator(func, _Calls(on_end))
    else:
        wrapper = tracer.Wrapper(func, on_end, code)
    return functools.update_wrapper(wrapper, func)


class _Calls:
    """How many calls of one wrapper are running; ``on_end`` when none is left."""

    __slots__ = ("_lock", "_on_end", "_running")

    def __init__(self, on_end: Hook | None) -> None:
        self._lock = threading.Lock()
        self._on_end = on_end
        self._running = 0

    def begin(self) -> None:
        with self._lock:
            self._running += 1

    def end(self) -> None:
        with self._lock:
            self._running -= 1
            done = self._running == 0
        if done and self._on_end is not None:
            self._on_end()


_OWN_CODES: set[CodeType] = set()


def _own(func: Any) -> Any:
    """Mark a function of this module: its frames leave the tracebacks."""
    _OWN_CODES.add(func.__code__)
    return func


def _drop_own_frame(exc: BaseException) -> None:
    # Each of memtrim's frames an exception passes through removes its own
    # entry (the first one, added as the exception entered it) before a bare
    # `raise`, which does not add it again.
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code in _OWN_CODES:
        tb = tb.tb_next
    exc.__traceback__ = tb


@_own
def _stepping(it: Any) -> Generator[Any, Any, Any]:
    """Drive a generator or coroutine, bracketing each resumption.

    Forwards ``send``, ``throw`` and ``close`` like ``yield from`` does.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        tracer.enter()
        try:
            item = it.send(value) if error is None else it.throw(error)
        except StopIteration as stop:
            return stop.value
        except BaseException as exc:
            _drop_own_frame(exc)
            raise
        finally:
            tracer.exit()
        value, error = None, None
        try:
            value = yield item
        except GeneratorExit:
            tracer.enter()
            try:
                it.close()
            except BaseException as exc:
                _drop_own_frame(exc)
                raise
            finally:
                tracer.exit()
            raise
        except BaseException as exc:
            error = exc


def _wrap_generator(func, calls):  # type: ignore[no-untyped-def]
    @_own
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.begin()
        try:
            gen = func(*args, **kwargs)
            return (yield from (_stepping(gen) if BRACKETED else gen))
        except BaseException as exc:
            _drop_own_frame(exc)
            raise
        finally:
            calls.end()

    return wrapper


def _stepped(awaitable: Any) -> Any:
    """``awaitable``, with each resumption bracketed where that is needed (3.11)."""
    return _Stepped(awaitable) if BRACKETED else awaitable


class _Stepped:
    """An awaitable that awaits ``awaitable`` with each resumption bracketed."""

    __slots__ = ("_it",)

    def __init__(self, awaitable: Any) -> None:
        self._it = awaitable.__await__() if not hasattr(awaitable, "send") else awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        return _stepping(self._it)


def _wrap_coroutine(func, calls):  # type: ignore[no-untyped-def]
    @_own
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.begin()
        try:
            return await _stepped(func(*args, **kwargs))
        except BaseException as exc:
            _drop_own_frame(exc)
            raise
        finally:
            calls.end()

    return wrapper


def _wrap_asyncgen(func, calls):  # type: ignore[no-untyped-def]
    @_own
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.begin()
        agen = func(*args, **kwargs)
        try:
            pending = agen.asend(None)
            while True:
                try:
                    item = await _stepped(pending)
                except StopAsyncIteration:
                    return
                try:
                    pending = agen.asend((yield item))
                except GeneratorExit:
                    await _stepped(agen.aclose())
                    raise
                except BaseException as exc:
                    pending = agen.athrow(exc)
        except BaseException as exc:
            _drop_own_frame(exc)
            raise
        finally:
            calls.end()

    return wrapper
