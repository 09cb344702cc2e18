"""The whole-program profiler as a library: ProgramRun's lifecycle and exit records."""

from __future__ import annotations

import os
import signal

import pytest

from memtrim.run import lifecycle
from memtrim.run.lifecycle import ProgramRun, SaveError
from memtrim.run.session import ProgramProfiler

MIB = 2**20


def test_a_run_records_the_block_and_hands_over_one_capture():
    saved = []
    run = ProgramRun(ProgramProfiler(), saved.append)
    with run, run.recording():
        block = bytearray(3 * MIB)
        del block
    assert len(saved) == 1 and saved[0] is run.outcome.capture
    assert run.outcome.exit == {"kind": "exit", "code": 0}
    assert saved[0].peak_bytes >= 3 * MIB
    assert not run.outcome.save_failed


def test_everything_comes_off_when_the_block_ends():
    real_exit, term = os._exit, signal.getsignal(signal.SIGTERM)
    run = ProgramRun(ProgramProfiler(), lambda capture: None)
    with run:
        assert os._exit != real_exit
        assert signal.getsignal(signal.SIGTERM) != term
    assert os._exit is real_exit
    assert signal.getsignal(signal.SIGTERM) == term
    assert lifecycle._fork.current is None


def test_the_programs_exception_is_recorded_and_goes_on():
    run = ProgramRun(ProgramProfiler(), lambda capture: None)
    with pytest.raises(ValueError, match="boom"), run, run.recording():
        raise ValueError("boom")
    assert run.outcome.exit == {"kind": "exception", "code": 1, "message": "ValueError: boom"}


def test_a_save_that_fails_is_said_once(capsys):
    def save(capture):
        raise SaveError("cannot write x.memtrim: disk full")

    run = ProgramRun(ProgramProfiler(), save)
    with run, run.recording():
        pass
    assert run.outcome.save_failed
    assert capsys.readouterr().err == "memtrim: cannot write x.memtrim: disk full\n"


@pytest.mark.parametrize(
    ("error", "info"),
    [
        (None, {"kind": "exit", "code": 0}),
        (SystemExit(3), {"kind": "exit", "code": 3}),
        (SystemExit(256), {"kind": "exit", "code": 0}),  # what the system reports
        (SystemExit("bye"), {"kind": "exit", "code": 1}),
        (KeyboardInterrupt(), {"kind": "signal", "code": -2, "message": "KeyboardInterrupt"}),
        (MemoryError(), {"kind": "oom", "code": 1, "message": "MemoryError", "rss": 0}),
        (ValueError("v"), {"kind": "exception", "code": 1, "message": "ValueError: v"}),
    ],
)
def test_exit_records(error, info):
    assert lifecycle.exit_info(error) == info


def test_a_tripped_limit_is_told_from_an_oom():
    info = lifecycle.exit_info(MemoryError("limit"), tripped=5 * MIB)
    assert info == {"kind": "limit", "code": 1, "message": "limit", "rss": 5 * MIB}


def test_a_profile_inside_a_profile_is_refused_and_the_outer_one_survives():
    from memtrim.engine import hooks

    outer = ProgramProfiler()
    with outer:
        kept = bytearray(2 * MIB)
        inner = ProgramProfiler()
        with pytest.raises(RuntimeError, match="a recording is already running"):
            inner.start()
        assert hooks.holders() == ["memtrim run"]  # the inner one let go of what it took
        more = bytearray(MIB)
    assert outer.capture is not None
    assert outer.capture.peak_bytes >= 3 * MIB
    del kept, more


def test_until_exit_goes_on_recording_past_the_block_until_its_atexit_handler():
    import atexit

    saved = []
    real_exit = os._exit
    run = ProgramRun(ProgramProfiler(), saved.append, until_exit=True)
    try:
        with run, run.recording():
            pass
        assert saved == [] and os._exit != real_exit  # the program is not over yet
        ignored = bytearray(5 * MIB)  # memtrim's code in the main thread: not counted
        del ignored
        run._release_own()  # what threading calls as the interpreter starts to end
        late = bytearray(3 * MIB)  # an atexit handler's, after the main code
        del late
        run._at_exit()  # what atexit calls, after the program's handlers
    finally:
        atexit.unregister(run._at_exit)
        run._at_exit()
    assert len(saved) == 1 and 3 * MIB <= saved[0].peak_bytes < 5 * MIB
    assert os._exit is real_exit and lifecycle._fork.current is None
    assert run.outcome.exit == {"kind": "exit", "code": 0}


def test_a_sigterm_handled_inside_the_claim_finds_this_thread_the_claimant(monkeypatch):
    # Seen as a hang: a pool worker's os._exit claimed the SIGTERM deadline in
    # C, and the SIGTERM's Python handler ran before the claim's result was
    # stored: it found the signal claimed by "someone else" and waited for
    # ever. The handler's claim, made inside the first, must be this thread's.
    from memtrim.engine import deadline

    real_claim = deadline.claim
    run = ProgramRun(ProgramProfiler(), lambda capture: None)
    inner: list[bool] = []

    def claim_then_signal() -> bool:
        got = real_claim()
        inner.append(run._claim_term())  # what _on_sigterm does, here
        return got

    with run:
        monkeypatch.setattr(deadline, "claim", claim_then_signal)
        assert run._claim_term()
        monkeypatch.undo()
    assert inner == [True]


def test_a_run_inside_another_leaves_the_outer_one_its_sigterm_deadline():
    outer = ProgramRun(ProgramProfiler(), lambda capture: None)
    inner = ProgramRun(ProgramProfiler(), lambda capture: None)
    with outer:
        with inner:  # the deadline is the outer run's: not armed twice, no error
            assert outer._armed and not inner._armed
        assert outer._armed  # the inner run did not take it down
    assert not outer._armed
