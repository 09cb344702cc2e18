"""Run a user's script as ``__main__``, exactly as ``python script.py`` would.

Shared by every command that runs a program. What must stay unchanged for the
program: ``sys.argv``, ``sys.path[0]``, ``__name__``/``__file__``, its output,
its exceptions (traceback without memtrim's frames) and its exit status.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import fnmatch
import importlib.machinery
import importlib.util
import os
import runpy
import signal
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.machinery import SourceFileLoader
from types import CodeType

from memtrim.commands.errors import CommandError
from memtrim.engine.runner import run_detached, user_traceback


@dataclass(frozen=True)
class Script:
    """A compiled script, ready to run."""

    path: str
    code: CodeType


def load_script(path: str) -> Script:
    """Read and compile ``path``; a :class:`CommandError` explains what is wrong."""
    if not os.path.exists(path):
        raise CommandError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory, not a Python script")
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        code = compile(source, script_filename(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise CommandError(f"cannot compile {path}: {exc.msg}{where}") from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise CommandError(f"cannot compile {path}: {exc}") from None
    return Script(path, code)


def script_filename(path: str) -> str:
    """The script's ``__file__`` as python makes it: absolute, but not normalized.

    ``python ./s.py`` runs ``/cwd/./s.py``; an absolute path is kept as typed.
    """
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def functions_named(code: CodeType, pattern: str) -> list[CodeType]:
    """Functions in ``code`` whose qualified or plain name matches ``pattern``.

    ``pattern`` is a name (``work``, ``Cache.get``) or a shell-style pattern
    (``load_*``, ``*``); lambdas and comprehensions are never matched on their
    own (they count toward the function that contains them).
    """
    found = []
    stack = [code]
    while stack:
        current = stack.pop()
        for const in current.co_consts:
            if isinstance(const, CodeType):
                if not const.co_name.startswith("<") and (
                    fnmatch.fnmatchcase(const.co_qualname, pattern)
                    or fnmatch.fnmatchcase(const.co_name, pattern)
                ):
                    found.append(const)
                stack.append(const)
    return sorted(found, key=lambda c: c.co_firstlineno)


def new_main_module() -> types.ModuleType:
    """A fresh ``__main__`` with the attributes python gives it, in python's order."""
    module = types.ModuleType("__main__")
    module.__dict__.update(__annotations__={}, __builtins__=builtins)
    return module


@contextlib.contextmanager
def as_main(script: Script, args: list[str]) -> Iterator[types.ModuleType]:
    """Make a fresh ``__main__`` module and the script's argv/path for the block."""
    _arm_final_exit()
    module = new_main_module()
    filename = script.code.co_filename
    module.__dict__.update(
        __loader__=SourceFileLoader("__main__", filename),
        __file__=filename,
        __cached__=None,
    )
    saved = sys.modules.get("__main__"), sys.argv[:], sys.path[:]
    sys.modules["__main__"] = module
    sys.argv[:] = [script.path, *args]
    sys.path[0:1] = [os.path.dirname(os.path.realpath(script.path))]
    try:
        yield module
    finally:
        if _final["keep"]:  # as python's pymain_run_file leaves them
            module.__dict__.pop("__file__", None)
            module.__dict__.pop("__cached__", None)
        else:
            main, argv, path = saved
            if main is not None:
                sys.modules["__main__"] = main
            sys.argv[:] = argv
            sys.path[:] = path


def run(script: Script, module: types.ModuleType) -> None:
    """Execute the script in ``module``'s namespace; its exceptions propagate.

    It runs at the bottom of the stack, as under python: the frames of
    memtrim's command line are hidden from it (its first frame has no caller)
    and do not count against the recursion limit.
    """
    run_detached(script.code, module.__dict__)


def exit_like_python(exc: BaseException | None) -> int:
    """Report the script's outcome as the interpreter would; returns the exit status.

    ``SystemExit`` is re-raised so the interpreter handles its code and message.
    Other exceptions are printed through ``sys.excepthook`` (the script may
    have replaced it) and give status 1; after ``KeyboardInterrupt`` the
    process ends with SIGINT, as CPython does: once the threads have finished
    and the ``atexit`` handlers have run.
    """
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        raise exc.with_traceback(None)
    exc = exc.with_traceback(user_traceback(exc.__traceback__))
    sys.excepthook(type(exc), exc, exc.__traceback__)
    if isinstance(exc, KeyboardInterrupt):
        if _final["armed"]:
            _final["sigint"] = True
        else:
            _die_of_sigint()
    return 1


_final = {"armed": False, "sigint": False, "keep": False}


def keep_program_state(keep: bool) -> None:
    """``keep``: memtrim is the process's entry point (its command line), so the
    program's ``sys.argv``, ``sys.path`` and ``__main__`` stay as python leaves
    them until the interpreter ends (the program's ``atexit`` handlers see them)
    instead of being put back when its main code returns; a script's
    ``__file__`` and ``__cached__`` go, as python removes them then."""
    _final["keep"] = keep


def _arm_final_exit() -> None:
    # Registered before the program runs, so atexit calls it after every
    # handler registered later (the program's, memtrim's reports).
    if not _final["armed"]:
        _final["armed"] = True
        atexit.register(_final_exit)


def _final_exit() -> None:
    if _final["sigint"]:
        _die_of_sigint()


def _die_of_sigint() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


# ------------------------------------------------------- -m module, -c code


@dataclass(frozen=True)
class Program:
    """What to run: a script, a module (``-m``) or a code string (``-c``)."""

    kind: str  # "script", "module" or "code"
    target: str
    args: list[str]

    @property
    def label(self) -> list[str]:
        """The command line as the user would type it after ``python``."""
        if self.kind == "script":
            return [self.target, *self.args]
        return ["-m" if self.kind == "module" else "-c", self.target, *self.args]


def split_program(argv: list[str], takes_value: set[str]) -> tuple[list[str], Program | None]:
    """Split ``[memtrim options] (script | -m mod | -c code) [program args]``.

    ``takes_value`` lists memtrim's options that consume the next word.
    """
    own: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-m", "-c"):
            if i + 1 >= len(argv):
                raise CommandError(
                    f"argument {word}: expected a {'module' if word == '-m' else 'code'}"
                )
            kind = "module" if word == "-m" else "code"
            return own, Program(kind, argv[i + 1], argv[i + 2 :])
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        own.append(word)
        if word in takes_value and "=" not in word:
            if i + 1 < len(argv):
                own.append(argv[i + 1])
            i += 1
        i += 1
    if i >= len(argv):
        return own, None
    return own, Program("script", argv[i], argv[i + 1 :])


def check_program(program: Program) -> Script | None:
    """Fail early on a missing script or module, or code that does not compile."""
    if program.kind == "script":
        return load_script(program.target)
    if program.kind == "module":
        check_module(program.target)
        return None
    try:
        code = compile(program.target, "<string>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise CommandError(f"cannot compile the -c code: {exc}") from None
    return Script("<string>", code)


def check_module(name: str) -> None:
    """Fail early if the top-level package of ``-m name`` cannot be found.

    Only the top level is looked up, on the path ``python -m`` would use (the
    current directory first): finding ``pkg.sub`` would import ``pkg``
    before profiling starts. What goes wrong below it is reported by runpy,
    word for word as ``python -m`` does.
    """
    top = name.partition(".")[0]
    if not top or not all(part.isidentifier() for part in name.split(".")):
        raise CommandError(f"invalid module name {name!r}")
    saved = sys.path[:]
    sys.path[0:1] = [os.getcwd()]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise CommandError(f"cannot find module {top}: {exc}") from None
    finally:
        sys.path[:] = saved
    if spec is None:
        raise CommandError(f"no module named {top}")


def run_program(
    program: Program,
    script: Script | None,
    around: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> None:
    """Run it as ``python script``, ``python -m`` or ``python -c`` would.

    ``around()`` is entered right before the program's first instruction and
    left right after its last: what memtrim does to set the stage stays out.
    """
    if program.kind == "script":
        assert script is not None
        with as_main(script, program.args) as module, around():
            run(script, module)
        return
    _arm_final_exit()
    saved = sys.argv[:], sys.path[:], sys.modules.get("__main__")
    try:
        if program.kind == "module":
            sys.argv[:] = [program.target, *program.args]
            sys.path[0:1] = [os.getcwd()]
            with around():
                runpy._run_module_as_main(program.target, alter_argv=True)  # type: ignore[attr-defined]
        else:
            assert script is not None
            module = new_main_module()
            module.__loader__ = importlib.machinery.BuiltinImporter  # as python -c has it
            sys.modules["__main__"] = module
            sys.argv[:] = ["-c", *program.args]
            sys.path[0:1] = [""]
            with around():
                run_detached(script.code, module.__dict__)
    finally:
        if not _final["keep"]:  # (kept: as python leaves them, see keep_program_state)
            sys.argv[:], sys.path[:] = saved[0], saved[1]
            if saved[2] is not None:
                sys.modules["__main__"] = saved[2]
