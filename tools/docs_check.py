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

PUBLIC_PACKAGES = (
    "sqlitestream",
    "sqlitestream.sqlite",
    "sqlitestream.postgres",
    "sqlitestream.memory",
    "sqlitestream.http",
    "sqlitestream.testing",
)
_ANCHOR = re.compile(r'\bid="(sqlitestream(?:\.\w+)+)"')
_RAW_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj):")


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


def raw_roles(site: Path) -> list[str]:
    """The pages that show a Sphinx role as written, with the first one on each."""
    found = []
    for page in sorted(site.rglob("*.html")):
        if match := _RAW_ROLE.search(page.read_text(encoding="utf-8")):
            found.append(f"{page.relative_to(site)}: {match.group()}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("site", type=Path, help="the directory mkdocs built the site into")
    args = parser.parse_args(argv)
    pages = sorted(args.site.rglob("*.html"))
    if not pages:
        parser.error(f"no built pages in {args.site}")
    anchors = {anchor for page in pages for anchor in _ANCHOR.findall(page.read_text(encoding="utf-8"))}
    problems = [f"no reference entry: {name}" for name in undocumented(anchors)]
    problems += [f"a Sphinx role shown as written: {where}" for where in raw_roles(args.site)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(pages)} pages, {len(anchors)} reference anchors: {len(problems) or 'no'} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
