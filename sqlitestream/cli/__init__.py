"""The ``sqlitestream`` command line: one click group (``main``) whose commands are thin
clients of the public API."""

from sqlitestream.cli.main import cli, main

__all__ = ["cli", "main"]
