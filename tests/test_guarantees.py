"""The guarantees page cannot drift: every guarantee names a test, and every test it names exists."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")


def _sections() -> dict[str, list[str]]:
    """The numbered guarantees of each '## ' section that has any, by section title."""
    sections = {}
    for match in re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", PAGE, re.S | re.M):
        title, text = match.groups()
        start = text.find("\n1. ")
        if start < 0:
            continue
        numbered = text[start + 1 :].split("\n\n", 1)[0]  # the list ends at a blank line
        sections[title] = re.split(r"\n(?=\d+\. )", numbered)
    return sections


REFERENCES = sorted(set(re.findall(r"`([\w/]+\.py)::(\w+)`", PAGE)))


@functools.cache  # ~90 references into ~30 files: parse each file once
def _defined_names(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def test_every_guarantee_names_a_test() -> None:
    sections = _sections()
    assert len(sections) >= 2, "expected the store guarantees and the PostgreSQL guarantees"
    assert sum(len(items) for items in sections.values()) >= 20
    for title, items in sections.items():
        for number, item in enumerate(items, 1):
            assert item.startswith(f"{number}. "), f"{title}: {item[:40]}"
            assert re.search(r"`[\w/]+\.py::\w+`|`\.ci/run: ", item), (
                f"{title}: guarantee {number} names no test"
            )


@pytest.mark.parametrize(("path", "name"), REFERENCES, ids=[f"{p}::{n}" for p, n in REFERENCES])
def test_named_test_exists(path: str, name: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    assert name.startswith("test_") or name.startswith("Test"), name
    assert name in _defined_names(file), f"{path} defines no {name}"


CI_STEPS = sorted(set(re.findall(r"`\.ci/run: ([^`]+)`", PAGE)))


@pytest.mark.parametrize("command", CI_STEPS)
def test_named_ci_step_exists(command: str) -> None:
    """A guarantee checked by a step of CI rather than by a test (the conformance suite runs
    under node, apart from the test suite) names the step's command as ``.ci/run`` has it."""
    steps = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in [line.strip() for line in steps], f".ci/run runs no {command!r}"
