"""The side-by-side benchmark: sqlitestream against the raw SQLite limit and its peers.

Run from the repository root: ``python -m tools.bench --quick`` (seconds) or
``python -m tools.bench`` (the full run, minutes). See ``python -m tools.bench --help`` and
the README's "Performance" section. Every figure is a median of interleaved repetitions
measured in the same run, reported with its spread and as a ratio to its baseline.
"""
