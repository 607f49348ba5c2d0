"""``python -m tools.docs_check SITE``: check a built docs site (``mkdocs build --site-dir
SITE``) for what ``--strict`` lets through: every public class and function of the package
(the ``__all__`` of its public packages) has an entry in the API reference, and no docstring's
Sphinx role (``:class:`...```) is shown as written. Exit 1, naming each, if any."""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

from tools.docs_roles import ROLES

PUBLIC_PACKAGES = (
    "sqlitestream",
    "sqlitestream.sqlite",
    "sqlitestream.postgres",
    "sqlitestream.memory",
    "sqlitestream.http",
    "sqlitestream.testing",
)
_ANCHOR = re.compile(r'\bid="(sqlitestream(?:\.\w+)+)"')
_RAW_ROLE = re.compile(rf":(?:py:)?(?:{ROLES}):")


def undocumented(anchors: set[str]) -> list[str]:
    """The public classes and functions with no entry in the reference: an anchor under the
    name they are exported as, where they are defined, or at the top of any public module."""
    module_level = {anchor.rsplit(".", 1)[1] for anchor in anchors if anchor.rsplit(".", 1)[0].islower()}
    missing = []
    for package_name in PUBLIC_PACKAGES:
        package = importlib.import_module(package_name)
        for name in package.__all__:
            obj = getattr(package, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            paths = {f"{package_name}.{name}", f"{obj.__module__}.{obj.__qualname__}"}
            if not paths & anchors and name not in module_level:
                missing.append(f"{package_name}.{name}")
    return missing


def raw_roles(pages: dict[str, str]) -> list[str]:
    """The pages that show a Sphinx role as written, with the first one on each."""
    return [f"{name}: {match.group()}" for name, text in pages.items() if (match := _RAW_ROLE.search(text))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("site", type=Path, help="the directory mkdocs built the site into")
    args = parser.parse_args(argv)
    pages = {
        str(page.relative_to(args.site)): page.read_text(encoding="utf-8")
        for page in sorted(args.site.rglob("*.html"))
    }
    if not pages:
        parser.error(f"no built pages in {args.site}")
    anchors = {anchor for text in pages.values() for anchor in _ANCHOR.findall(text)}
    problems = [f"no reference entry: {name}" for name in undocumented(anchors)]
    problems += [f"a Sphinx role shown as written: {where}" for where in raw_roles(pages)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(pages)} pages, {len(anchors)} reference anchors: {len(problems) or 'no'} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
