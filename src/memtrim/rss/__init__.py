"""The RSS explained: what the process's resident memory is made of (``memtrim.explain()``)."""
