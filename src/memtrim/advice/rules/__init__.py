"""The advisor's rules, one module per family, each a function of a :class:`Walk`.

A rule looks at the live objects (or a profile's line figures), builds the
alternative from the program's own data, and returns :class:`~memtrim.model.advice.Advice`.
Nothing here calls a user's dunder method or builds an instance ``__dict__``:
values are type-checked with ``type(x) is T`` first, then only atoms (``int``,
``float``, ``str``, ``bytes``) are hashed and compared.
"""
