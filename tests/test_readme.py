"""The README's quick start cannot drift from CI. (Its code sample runs in test_docs_examples.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
VENV = "python3 -m venv .venv && . .venv/bin/activate && "


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _commands() -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", _section("Quick start"), re.S | re.M)
    assert len(blocks) == 1
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_quick_start_is_two_commands_in_one_sh_block() -> None:
    commands = _commands()
    assert len(commands) == 2
    # Each works on a system Python that refuses `pip install` outside a virtual environment.
    assert commands[0].startswith(VENV + "pip install . && ")
    assert commands[1].startswith(VENV + 'pip install ".[test]" && ')
    assert commands[1].endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command_exactly() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert _commands()[1] in ci_lines


def test_readme_is_short() -> None:
    assert len(README.encode("utf-8")) <= 12 * 1024
