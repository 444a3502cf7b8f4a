"""Benchmarks: `make bench` runs every section and writes BENCHMARKS.md.

Each section module exposes ``run() -> str`` returning a markdown section with its own
peers measured in the same run; ratios, not absolute times, are what carry meaning.
"""
