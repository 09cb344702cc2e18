"""The HTML report in a real browser: headless Chromium runs the page's script.

Each test renders a page to a temporary directory, opens it from ``file://``
with ``chromium --headless --dump-dom`` (or ``--screenshot``) and checks the
DOM that the page's script built: the tables and flame-graph boxes exist,
names from the profiled program are text (no element came out of them), and a
``#view=...`` fragment selects the view.
"""

from __future__ import annotations

import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from memtrim.run import capture as capture_file
from memtrim.run.render.html import render_html
from tests.unit.test_html_report import (
    HOSTILE_COMMAND,
    HOSTILE_FUNC,
    HOSTILE_SOURCE,
    HOSTILE_THREAD,
    big_capture,
    small_capture,
)

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"headless Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)",
)


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a fresh profile and nothing that goes online."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


class Dom(HTMLParser):
    """What the tests look at in a serialized DOM: elements, visible text, table rows."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: list[str] = []
        self._row: list[str] | None = None
        self._code = 0  # inside <script> or <style>
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.elements.append((tag, found))
        if tag in ("script", "style"):
            self._code += 1
        if tag == "tr" and "data-frame" in found:
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._code -= 1
        if tag == "tr" and self._row is not None:
            self.rows.append(" | ".join(self._row))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._code:
            return
        self.text.append(data)
        if self._row is not None and data.strip():
            self._row.append(data.strip())

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [
            attrs
            for name, attrs in self.elements
            if name == tag and (cls is None or cls in (attrs.get("class") or "").split())
        ]

    def body(self) -> dict[str, str | None]:
        return self.all("body")[0]

    def visible_text(self) -> str:
        return "".join(self.text)


def dump(tmp: Path, page: Path, fragment: str = "") -> Dom:
    """The DOM of ``page`` after its script ran."""
    proc = chromium(tmp, "--dump-dom", page.as_uri() + fragment)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "</html>" in proc.stdout, proc.stderr[-2000:]
    return Dom(proc.stdout)


def assert_ran(dom: Dom) -> None:
    body = dom.body()
    assert body.get("data-ready") == "1", "the page's script did not finish"
    assert "data-error" not in body, body.get("data-error")
    assert "data-pwned" not in body


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("html")
    page = tmp / "report.html"
    page.write_text(render_html(small_capture()), encoding="utf-8")
    return {
        "tmp": tmp,
        "page": page,
        "peak": dump(tmp, page),
        "at_exit": dump(tmp, page, "#view=at_exit"),
    }


def test_the_script_draws_tables_and_the_flame_graph(small: dict[str, Any]) -> None:
    dom = small["peak"]
    assert_ran(dom)
    assert dom.body().get("data-view") == "peak"
    assert len(dom.rows) == 4
    assert dom.rows[0].startswith("5.18 KiB | 6 | 65% | ")
    assert "build" in dom.rows[0] and "data = build(n)" in dom.rows[0]
    boxes = dom.all("div", "fg-n")
    assert len(boxes) == 8  # "all", two threads, main, build, the hostile line, load, build
    assert len(dom.all("details", "file")) == 3
    assert len(dom.all("svg")) == 1 and dom.all("circle", "peak-dot")
    text = dom.visible_text()
    assert "Live at the peak" in text and "8.01 KiB" in text
    assert "ValueError: <x-pwn>bad</x-pwn>" in text  # the exit message, as text


def test_names_from_the_program_stay_text(small: dict[str, Any]) -> None:
    dom = small["peak"]
    assert_ran(dom)
    assert len(dom.all("script")) == 2  # the data and the page's own script
    assert dom.all("img") == [] and dom.all("x-pwn") == []
    text = dom.visible_text()
    assert " ".join(HOSTILE_COMMAND) in text
    assert HOSTILE_FUNC in text
    assert f"thread {HOSTILE_THREAD}" in text
    assert HOSTILE_SOURCE.replace("\u2028", "").replace("\u2029", "")[:20] in text
    assert "script>.py" in text  # the end of the hostile file name


def test_the_fragment_selects_the_view(small: dict[str, Any]) -> None:
    dom = small["at_exit"]
    assert_ran(dom)
    assert dom.body().get("data-view") == "at_exit"
    active = [a for a in dom.all("button", "tab") if "active" in (a.get("class") or "")]
    assert [a.get("data-view") for a in active] == ["at_exit"]
    assert len(dom.rows) == 2
    assert "load" in dom.rows[0] and dom.rows[0].startswith("1.95 KiB | 2 | 67%")
    assert "Top lines: still allocated at exit" in dom.visible_text()
    assert len(dom.all("div", "fg-n")) == 5  # all, MainThread, main, load, build


def test_an_unknown_view_falls_back_to_the_peak(small: dict[str, Any]) -> None:
    dom = dump(small["tmp"], small["page"], "#view=<script>")
    assert_ran(dom)
    assert dom.body().get("data-view") == "peak"


def test_a_screenshot_is_drawn(small: dict[str, Any]) -> None:
    shot = small["tmp"] / "report.png"
    proc = chromium(small["tmp"], f"--screenshot={shot}", small["page"].as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000


def test_a_big_page_stays_quick(tmp_path: Path) -> None:
    page = tmp_path / "big.html"
    page.write_text(render_html(big_capture()), encoding="utf-8")
    dom = dump(tmp_path, page, "#view=allocated")
    assert_ran(dom)
    assert len(dom.rows) == 50  # the first rows of the 200 embedded
    boxes = len(dom.all("div", "fg-n"))
    assert 100 < boxes < 13_000
    assert int(dom.body().get("data-render-ms") or 0) < 10_000  # typically 100-400 ms


HOSTILE_SCRIPT = """
import threading

def grow(n):
    return [bytes(1000) for _ in range(n)]

SOURCE = "def hostile():\\n    return [bytearray(4096) for _ in range(300)]\\n"
space = {}
exec(compile(SOURCE, "</script><img src=x>.py", "exec"), space)
hostile = space["hostile"]
hostile.__code__ = hostile.__code__.replace(co_qualname="\\"'&<x-pwn>hostile</x-pwn>")

keep = []

def work():
    keep.append(hostile())

t = threading.Thread(target=work, name="</script>thread")
t.start()
t.join()
keep.append(grow(2000))
"""


def test_a_real_run_renders(runner: Any) -> None:
    script = runner.write(HOSTILE_SCRIPT, "prog.py")
    proc = runner.memtrim("run", "-q", "-o", "prog.memtrim", "--html", "page.html", str(script))
    assert proc.returncode == 0, proc.stderr
    dom = dump(runner.tmp_path, runner.tmp_path / "page.html")
    assert_ran(dom)
    assert dom.all("img") == [] and dom.all("x-pwn") == []
    assert any("grow" in row and "bytes(1000)" in row for row in dom.rows)
    assert any("\"'&<x-pwn>hostile</x-pwn>" in row for row in dom.rows)
    assert "</script><img src=x>.py" in " ".join(
        a.get("title") or "" for a in dom.all("td", "where")
    )
    assert dom.all("div", "fg-n")
    assert "Sampled mode: every total is exact" in dom.visible_text()  # the default mode


NATIVE_SCRIPT = """
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(20_000_000)
ctypes.memset(block, 1, 20_000_000)
data = [bytearray(1000) for _ in range(5000)]
"""


def test_native_bytes_and_the_rss_panel_render(runner: Any) -> None:
    script = runner.write(NATIVE_SCRIPT, "nat.py")
    proc = runner.memtrim("run", "-q", "-o", "nat.memtrim", "--html", "page.html", str(script))
    assert proc.returncode == 0, proc.stderr
    dom = dump(runner.tmp_path, runner.tmp_path / "page.html")
    assert_ran(dom)
    text = dom.visible_text()
    # the lines table grows a "native" column: 19.1 MiB of the malloc line are native
    (row,) = [row for row in dom.rows if "libc.malloc" in row]
    assert row.count("19.1 MiB") == 2, row  # bytes, and native
    assert "native" in text
    # the RSS panel: its parts, near the peak and at exit
    assert "Resident memory" in text and "At exit" in text
    assert "Python objects (live)" in text and "native heap in use" in text


ADVICE_SCRIPT = """
class Point:
    def __init__(self, i):
        self.x = i
        self.y = 2
        self.z = 3


points = [Point(i % 100) for i in range(60_000)]
names = ["".join(["<x-pwn>name", str(i % 7), "</x-pwn>"]) for i in range(60_000)]
"""


def test_the_advice_section_renders_and_links_to_its_line(runner: Any) -> None:
    script = runner.write(ADVICE_SCRIPT, "adv.py")
    proc = runner.memtrim(
        "run",
        "-q",
        "--advise",
        "--advise-threshold",
        "256K",
        "-o",
        "adv.memtrim",
        "--html",
        "page.html",
        str(script),
    )
    assert proc.returncode == 0, proc.stderr
    dom = dump(runner.tmp_path, runner.tmp_path / "page.html")
    assert_ran(dom)
    entries = dom.all("details", "advice")
    assert len(entries) >= 2
    text = dom.visible_text()
    assert "Advice" in text and "slots" in text and "intern" in text
    assert "class Point: __slots__ = ('x', 'y', 'z')" in text
    assert dom.all("x-pwn") == []  # the program's strings stay text
    # each entry's line is a button that picks that line's frame in the page
    assert len(dom.all("button", "linkish")) == len(entries)


def test_the_processes_and_sigterm_notes_render(runner: Any) -> None:
    script = runner.write("keep = bytearray(10**6)\n", "prog.py")
    proc = runner.memtrim("run", "-q", "-o", "prog.memtrim", str(script))
    assert proc.returncode == 0, proc.stderr
    capture = capture_file.read(str(runner.tmp_path / "prog.memtrim"))
    capture.meta["processes"] = {
        "count": 1,
        "peak": 3 * 2**20,
        "time": 0.5,
        "at_peak": [
            {"pid": 7, "heap": 2 * 2**20, "file": "<x-pwn>.7.memtrim"},
            {"pid": 1, "heap": 2**20, "file": ""},
        ],
    }
    capture.meta["partial"] = {"reason": "SIGTERM during a long C call", "time": 0.5}
    capture.meta["exit"] = {"kind": "signal", "code": -15, "message": "SIGTERM"}
    (runner.tmp_path / "edited.memtrim").write_bytes(capture_file.dumps(capture))
    proc = runner.memtrim("report", "edited.memtrim", "--html", "page.html")
    assert proc.returncode == 0, proc.stderr
    dom = dump(runner.tmp_path, runner.tmp_path / "page.html")
    assert_ran(dom)
    assert dom.all("x-pwn") == []
    text = dom.visible_text()
    assert (
        "This process and its 1 forked child together: heap peak 3.00 MiB at 0.500 s "
        "(<x-pwn>.7.memtrim (pid 7) 2.00 MiB, this process 1.00 MiB)" in text
    )
    assert "ended by SIGTERM in a C call that did not return" in text
