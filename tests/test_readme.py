"""The README cannot drift: its quick start matches CI and its code samples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def test_quick_start_is_two_commands_in_one_sh_block() -> None:
    blocks = _blocks("sh", _section("Quick start"))
    assert len(blocks) == 1
    commands = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].startswith("pip install . && ")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    command = [line for line in _blocks("sh", _section("Quick start"))[0].splitlines() if line.strip()][1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


RUNNABLE = [block for block in _blocks("python") if not block.startswith("# illustration")]


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"sample{i}" for i in range(len(RUNNABLE))])
def test_readme_python_sample_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_sample"})
