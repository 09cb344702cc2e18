"""The JSON report of a capture: how many sites it keeps, and that it says so."""

from __future__ import annotations

import json

import pytest

from memtrim.run.capture import sites
from memtrim.run.render.json import SITES_PER_VIEW, capture_to_dict, dumps_capture
from tests.unit.test_html_report import small_capture


def test_every_view_says_how_many_sites_it_has_and_how_many_are_left_out():
    capture = small_capture()
    whole = capture_to_dict(capture, limit=2)
    for view in ("peak", "at_exit", "allocated"):
        total = len(sites(capture, view))
        shown = whole[view]["sites"]
        assert len(shown) == min(2, total)
        assert whole[view]["sites_total"] == total
        assert whole[view]["sites_cut"] == total - len(shown)
    assert whole["peak"]["sites_total"] == 4 and whole["peak"]["sites_cut"] == 2
    assert [s["bytes"] for s in whole["peak"]["sites"]] == [5300, 2000]


def test_limit_zero_keeps_every_site_and_the_default_is_documented():
    capture = small_capture()
    every = json.loads(dumps_capture(capture, limit=0))
    assert every["peak"]["sites_cut"] == 0
    assert len(every["peak"]["sites"]) == every["peak"]["sites_total"] == 4
    assert SITES_PER_VIEW == 100
    assert capture_to_dict(capture)["peak"]["sites_cut"] == 0  # 4 sites < 100


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        capture_to_dict(small_capture(), limit=-1)
