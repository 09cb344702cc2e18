"""why() in real scripts: leaks through an imported module's cache, module
globals of ``__main__``, class attributes, threads."""

from __future__ import annotations

import json

APP = """
CACHE = {}


class User:
    pass


class Config:
    REGISTRY = []


def remember(user):
    CACHE.setdefault("users", [None, None, None]).append(user)


def register(user):
    Config.REGISTRY.append(user)
"""


def run(runner, source: str) -> list[str]:
    runner.write(APP, "app.py")
    script = runner.write(source)
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_leak_through_a_cache_in_an_imported_module(runner):
    out = run(
        runner,
        """
        import json
        import memtrim
        import app

        def handle_request(i):
            user = app.User()
            app.remember(user)  # the leak: nothing ever removes it

        handle_request(0)
        leaked = app.CACHE["users"][3]
        chains = memtrim.why(leaked)
        print(chains)
        print(json.dumps([[c.root.kind, c.root.name, c.steps, c.target] for c in chains]))
        """,
    )
    assert out[0] == "app.CACHE -> dict['users'] -> list[3] -> <User object>"
    assert json.loads(out[1]) == [
        ["module", "app.CACHE", [["dict", "['users']"], ["list", "[3]"]], "<User object>"]
    ]


def test_module_level_object_is_named_through_its_global(runner):
    out = run(
        runner,
        """
        import memtrim

        CACHE = {"users": [None, None, None]}
        CACHE["users"].append(object())
        print(memtrim.why(CACHE["users"][3]))
        """,
    )
    assert out == ["__main__.CACHE -> dict['users'] -> list[3] -> <object object>"]


def test_class_attribute_and_several_chains(runner):
    out = run(
        runner,
        """
        import memtrim
        import app

        user = app.User()
        app.register(user)
        app.remember(user)
        for chain in memtrim.why(user, chains=3):
            print(chain)
        """,
    )
    assert out == [
        "app.Config.REGISTRY -> list[0] -> <User object>",
        "app.CACHE -> dict['users'] -> list[3] -> <User object>",
        "__main__.user -> <User object>",  # the script's own name for it comes last
    ]


def test_thread_holding_the_object(runner):
    out = run(
        runner,
        """
        import threading
        import memtrim
        import app

        def work(box, ready, done):
            del box  # from here on only the Thread object's args hold it
            ready.set()
            done.wait()

        ready, done = threading.Event(), threading.Event()
        box = [app.User()]
        worker = threading.Thread(target=work, args=(box, ready, done), name="worker")
        worker.start()
        ready.wait()
        user = box[0]
        del box
        print(memtrim.why(user))
        done.set()
        worker.join()
        """,
    )
    assert out == ["thread 'worker'._args -> tuple[0] -> list[0] -> <User object>"]


def test_frame_local_of_another_thread(runner):
    out = run(
        runner,
        """
        import threading
        import weakref
        import memtrim
        import app

        found = {}

        def work(ready, done):
            job = app.User()
            found["job"] = weakref.ref(job)
            ready.set()
            done.wait()

        ready, done = threading.Event(), threading.Event()
        worker = threading.Thread(target=work, args=(ready, done), name="worker")
        worker.start()
        ready.wait()
        chain = memtrim.why(found["job"]())[0]
        print(chain.root.kind)
        print(chain.root.name)
        print(chain.target)
        done.set()
        worker.join()
        """,
    )
    assert out[0] == "frame"
    assert out[1].startswith("worker: work (") and out[1].endswith(" local job")
    assert out[2] == "<User object>"


def test_dot_export(runner):
    out = run(
        runner,
        """
        import memtrim
        import app

        app.remember(app.User())
        print(memtrim.why(app.CACHE["users"][3]).dot())
        """,
    )
    dot = "\n".join(out)
    assert dot.startswith("digraph why {") and dot.endswith("}")
    assert 'label="app.CACHE"' in dot and 'label="[3]"' in dot
