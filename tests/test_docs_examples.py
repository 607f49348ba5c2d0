"""Every Python code block in the README and docs/ runs, as written, so no sample can rot.

Each ```python block is written to a file in a fresh temporary directory and run there by a new
interpreter with this checkout first on its path. A block titled ``Needs PostgreSQL``
(```python title="Needs PostgreSQL") runs against the test server of ``SQLITESTREAM_PG_DSN``,
with its sample URL and schema replaced by that server and a fresh schema, and skips with the
reason when no server is configured. Text that is not meant to run goes in ```text blocks.

A block that runs pytest (the contract kit's example) runs only the kit's tests that reopen the
store, which use both of its hooks; tests/test_contract.py runs the whole kit on the same store.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PG_DSN_VARIABLE
from support import child_env

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
POSTGRES_TITLE = "Needs PostgreSQL"
SAMPLE_DSN = "postgresql://app@db.internal:5432/app"
SAMPLE_SCHEMA = 'schema="agents"'
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```", re.S | re.M)
PYTHON_INFO = re.compile(r'python(?: title="(?P<title>[^"]*)")?')


def _blocks() -> list[tuple[str, str, bool]]:
    """(id, code, needs PostgreSQL) for every Python block, in page order."""
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            info = match.group("info").strip()
            if not info.lower().startswith("py"):
                continue
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(ROOT)}:{line}"
            python = PYTHON_INFO.fullmatch(info)
            # A block that looks like Python but would not be run is an error, not a silent skip.
            assert python, f"{where}: fence {info!r}; use ```python (runs) or ```text (does not)"
            title = python.group("title")
            assert title in (None, POSTGRES_TITLE), f"{where}: unknown block title {title!r}"
            blocks.append((where, match.group("code"), title == POSTGRES_TITLE))
    return blocks


BLOCKS = _blocks()


def test_the_pages_have_python_samples() -> None:
    pages = {where.split(":")[0] for where, _, _ in BLOCKS}
    assert "README.md" in pages and len(BLOCKS) >= 8


@pytest.mark.parametrize(("where", "code", "needs_postgres"), BLOCKS, ids=[where for where, _, _ in BLOCKS])
def test_python_block_runs(
    where: str, code: str, needs_postgres: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if needs_postgres:
        if not os.environ.get(PG_DSN_VARIABLE):
            pytest.skip(f"{where} needs PostgreSQL: set {PG_DSN_VARIABLE} to run it")
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        assert SAMPLE_DSN in code and SAMPLE_SCHEMA in code, f"{where}: use {SAMPLE_DSN} and {SAMPLE_SCHEMA}"
        code = code.replace(SAMPLE_DSN, dsn).replace(SAMPLE_SCHEMA, f'schema="{schema}"')
    script = tmp_path / "sample.py"
    script.write_text(code, encoding="utf-8")
    # A sample that runs pytest keeps its temporary directories in this test's (TMPDIR) and loads
    # no installed plugin: none takes part in the kit's tests, and hypothesis's is assertion-
    # rewritten from source where PYTHONDONTWRITEBYTECODE is set (about 2 s of this test's 6).
    addopts = "--disable-plugin-autoload -k 'reopen or reads_back'"
    env = {**child_env(), "PYTEST_ADDOPTS": addopts, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"
