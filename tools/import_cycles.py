"""``python -m tools.import_cycles``: exit 1, naming each, if any module of the package imports
itself through others (type-only imports aside: they never run). import-linter's contracts in
pyproject.toml check the layers; this checks every module pair, with no exceptions."""

from __future__ import annotations

import sys

import grimp


def cycles(package: str) -> list[str]:
    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if importer.startswith(imported + ".") or imported.startswith(importer + "."):
                continue  # a package and its own modules
            chain = graph.find_shortest_chain(importer=imported, imported=importer)
            if chain is not None:
                found.append(" -> ".join((importer, *chain)))
    return found


def main() -> int:
    found = cycles("sqlitestream")
    for cycle in found:
        print(f"import cycle: {cycle}")
    print(f"{len(found)} import cycles in sqlitestream")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
