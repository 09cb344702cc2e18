"""The step display on stderr: only on a terminal, only after the delay."""

from __future__ import annotations

import io
import time

from memtrim.commands._progress import Steps


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_slow_step_is_shown_on_a_terminal():
    out = Terminal()
    with Steps(out, delay=0.05) as steps:
        steps("building the capture")
        time.sleep(0.4)
        steps("writing out.html")
        time.sleep(0.3)
    text = out.getvalue()
    assert "memtrim: building the capture" in text
    assert "memtrim: writing out.html" in text


def test_quick_work_and_pipes_show_nothing():
    quick = Terminal()
    with Steps(quick, delay=5) as steps:
        steps("building the capture")
    assert quick.getvalue() == ""
    piped = io.StringIO()
    with Steps(piped, delay=0.01) as steps:
        steps("building the capture")
        time.sleep(0.1)
    assert piped.getvalue() == ""


def test_a_closed_stream_is_no_terminal():
    closed = io.StringIO()
    closed.close()
    with Steps(closed, delay=0.01) as steps:
        steps("x")
        time.sleep(0.05)
