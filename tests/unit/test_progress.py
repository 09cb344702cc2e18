"""The step display on stderr: only on a terminal, only after the delay."""

from __future__ import annotations

import io
import time

from memtrim.commands._progress import Steps


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_slow_step_is_shown_on_a_terminal_and_cleared_at_the_end():
    out = Terminal()
    steps = Steps(out, delay=0.05)
    steps("building the capture")
    time.sleep(0.4)
    steps("writing out.html")
    time.sleep(0.3)
    steps.close()
    text = out.getvalue()
    assert "memtrim: building the capture…" in text
    assert "memtrim: writing out.html…" in text
    assert text.endswith("\r\x1b[2K")  # the line is cleared for what follows
    steps.close()  # idempotent


def test_quick_work_and_pipes_show_nothing():
    quick = Terminal()
    steps = Steps(quick, delay=5)
    steps("building the capture")
    steps.close()
    assert quick.getvalue() == ""
    piped = io.StringIO()
    steps = Steps(piped, delay=0.01)
    steps("building the capture")
    time.sleep(0.1)
    steps.close()
    assert piped.getvalue() == ""


def test_nothing_before_the_first_step():
    out = Terminal()
    steps = Steps(out, delay=0.01)
    time.sleep(0.1)
    steps.close()
    assert out.getvalue() == ""


def test_a_closed_stream_is_no_terminal():
    closed = io.StringIO()
    closed.close()
    steps = Steps(closed, delay=0.01)
    steps("x")
    time.sleep(0.05)
    steps.close()
