"""Renderers of the RSS breakdown, from plain data."""
