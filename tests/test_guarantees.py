"""The README's guarantees cannot drift: every test a guarantee names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _guarantees() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Guarantees\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert match, "README has no '## Guarantees' section"
    return match.group(1)


def _items() -> list[str]:
    text = _guarantees()
    numbered = text[text.index("\n1. ") + 1 :].split("\n\n", 1)[0]  # the list ends at a blank line
    return re.split(r"\n(?=\d+\. )", numbered)


REFERENCES = sorted(set(re.findall(r"`([\w/]+\.py)::(\w+)`", _guarantees())))


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_every_guarantee_names_a_test() -> None:
    items = _items()
    assert len(items) >= 10
    for number, item in enumerate(items, 1):
        assert item.startswith(f"{number}. "), item[:40]
        assert re.search(r"`[\w/]+\.py::\w+`", item), f"guarantee {number} names no test"


@pytest.mark.parametrize(("path", "name"), REFERENCES, ids=[f"{p}::{n}" for p, n in REFERENCES])
def test_named_test_exists(path: str, name: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    assert name.startswith("test_") or name.startswith("Test"), name
    assert name in _defined_names(file), f"{path} defines no {name}"
