"""The README's PostgreSQL section cannot drift: its Python sample runs against the test server,
every test it names exists, and every option it lists is one the store takes."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from sqlitestream.postgres import PostgresSessionStore

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = re.search(r"^## PostgreSQL\n(.*?)(?=^## |\Z)", README, re.DOTALL | re.MULTILINE).group(1)  # type: ignore[union-attr]
SAMPLE_DSN = "postgresql://app@db.internal:5432/app"


def test_the_python_sample_runs_against_the_server(pg_dsn: str, pg_schema: str) -> None:
    (code,) = re.findall(r"^```python\n(.*?)^```", SECTION, re.DOTALL | re.MULTILINE)
    assert SAMPLE_DSN in code and 'schema="agents"' in code
    code = code.replace(SAMPLE_DSN, pg_dsn).replace('schema="agents"', f'schema="{pg_schema}"')
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_sample"})  # noqa: S102 - the sample is ours


REFERENCES = sorted(set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", SECTION)))


@pytest.mark.parametrize(("path", "name"), REFERENCES, ids=[f"{p}::{n}" for p, n in REFERENCES])
def test_every_named_test_exists(path: str, name: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    assert name in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_the_listed_signature_matches_the_store() -> None:
    listed = re.search(r"`PostgresSessionStore\(dsn, \*, (.*?)\)`", SECTION, re.DOTALL)
    assert listed is not None
    names = [part.split("=")[0].strip() for part in " ".join(listed.group(1).split()).split(",")]
    actual = [name for name in inspect.signature(PostgresSessionStore).parameters if name != "dsn"]
    assert names == actual
