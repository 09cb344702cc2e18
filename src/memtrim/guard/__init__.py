"""Budgets in code: ``memtrim.limit``."""
