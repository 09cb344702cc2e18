"""The RSS breakdown from plain facts: parts that add up to the RSS, and what they say."""

from __future__ import annotations

from memtrim.model.rss import LABELS, RssBreakdown, breakdown

MiB = 1 << 20


def facts(**changes):
    base = {
        "have_maps": 1,
        "have_malloc": 1,
        "have_pymalloc": 1,
        "rss": 500 * MiB,
        "libraries": 20 * MiB,
        "files": 1 * MiB,
        "stacks": 2 * MiB,
        "anonymous": 477 * MiB,
        "heap": 150 * MiB,
        "heap_size": 160 * MiB,
        "malloc_arena": 160 * MiB,
        "malloc_mmapped": 100 * MiB,
        "malloc_in_use": 140 * MiB,
        "malloc_free": 20 * MiB,
        "malloc_releasable": 5 * MiB,
        "pymalloc_arenas": 110,
        "pymalloc_allocated": 80 * MiB,
        "pymalloc_pools": 6000,
        "heap_installed": 1,
        "native_installed": 1,
        "level": 300 * MiB,
        "native": 150 * MiB,
        "python_malloc": 60 * MiB,
        "untouched": 10 * MiB,
        "native_mapped": 30 * MiB,
        "native_resident": 25 * MiB,
        "arenas_known": 100,
        "arenas_resident": 95 * MiB,
        "arenas_live": 75 * MiB,
        "arenas_pools": 5500,
        "pinned_arenas": 12,
        "pinned_free": 11 * MiB,
        "pinned_most_blocks": 3,
        "own": 7 * MiB,
        "own_resident": 6 * MiB,
        "native_libraries": [("/lib/libxml2.so.2", 100 * MiB), ("/x/_imaging.so", 50 * MiB)],
    }
    base.update(changes)
    return base


def test_the_parts_add_up_to_the_rss():
    result = breakdown(facts(), "peak")
    assert result.total() == result.rss == 500 * MiB
    assert result.when == "peak"
    assert [p.key for p in result.parts] == [
        "python_objects",
        "pymalloc_free",
        "native_malloc",
        "native_mmap",
        "malloc_free",
        "memtrim",
        "malloc_other",
        "thread_stacks",
        "libraries",
        "files",
        "untouched",
        "unaccounted",
    ]
    assert set(LABELS) >= {p.key for p in result.parts}


def test_each_part_from_its_facts():
    result = breakdown(facts())
    # pymalloc's live blocks and Python's blocks in malloc's heap
    assert result.part("python_objects") == 80 * MiB + 60 * MiB
    # 95 MiB measured in the known arenas, and 500 pools of the 10 others
    assert result.part("pymalloc_free") == 95 * MiB + 500 * (16 << 10) - 80 * MiB
    assert result.part("native_malloc") == 120 * MiB  # native minus its mappings
    (native,) = [p for p in result.parts if p.key == "native_malloc"]
    assert native.note == "libxml2.so.2 100.0 MiB, _imaging.so 50.0 MiB"
    assert result.libraries == [("/lib/libxml2.so.2", 100 * MiB), ("/x/_imaging.so", 50 * MiB)]
    assert result.part("native_mmap") == 25 * MiB
    # [heap] resident 150 + other arenas 0 - in use 140, at most the free 20
    assert result.part("malloc_free") == 10 * MiB
    assert result.part("memtrim") == 6 * MiB  # resident; all 7 MiB are malloc's
    assert result.part("malloc_other") == 140 * MiB + 100 * MiB - 60 * MiB - 120 * MiB - 7 * MiB
    assert result.part("untouched") == -10 * MiB
    assert (result.part("thread_stacks"), result.part("libraries")) == (2 * MiB, 20 * MiB)


def test_what_is_left_is_told_and_may_be_negative():
    result = breakdown(facts(rss=300 * MiB))
    assert result.part("unaccounted") < 0
    (last,) = [p for p in result.parts if p.key == "unaccounted"]
    assert "not resident" in last.note
    assert result.total() == 300 * MiB


def test_facts_a_user_can_act_on():
    result = breakdown(facts(heap=170 * MiB))
    pinned, trim = result.facts
    assert pinned.startswith("11.0 MiB sit free in 12 pymalloc arenas kept by at most 3 live")
    assert "malloc holds 20.0 MiB free" in trim and "malloc_trim(0)" in trim
    quiet = breakdown(facts(pinned_arenas=0, malloc_free=0))
    assert quiet.facts == []


def test_without_the_hooks_or_the_allocators_it_says_so():
    result = breakdown(facts(heap_installed=0, python_malloc=0, native=0, native_mapped=0))
    assert any("hooks were not in" in note for note in result.notes)
    assert result.total() == result.rss
    no_malloc = breakdown(facts(have_malloc=0))
    assert any("mallinfo2" in note for note in no_malloc.notes)
    assert "malloc_free" not in {p.key for p in no_malloc.parts}
    no_pymalloc = breakdown(facts(have_pymalloc=0))
    assert any("pymalloc" in note for note in no_pymalloc.notes)
    assert no_pymalloc.part("python_objects") == 60 * MiB
    nothing = breakdown(facts(have_maps=0))
    assert nothing.parts == [] and nothing.notes


def test_round_trip_and_findings():
    result = breakdown(facts(), "at_exit")
    again = RssBreakdown.from_dict(result.to_dict())
    assert again == result
    found = result.findings()
    assert [f.name for f in found] == [p.key for p in result.parts]
    assert all(f.metric == "live" and f.what == "rss" for f in found)
    assert sum(f.amount.bytes for f in found) == result.rss
