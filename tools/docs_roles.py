"""A Griffe extension for the API reference (mkdocs.yml loads it): the docstrings'
Sphinx-style cross-references (``:class:`Event```, ``:meth:`~sqlitestream.store.SessionStore.get_events```)
become links to the object's entry in the docs, or inline code where the object has none.

The docstrings keep the roles because ``help()``, IDEs and Sphinx all read them; mkdocstrings
reads Markdown and would show them as written. Each name is resolved in the scope of the
object whose docstring names it (its class, its module, what the module imports), as Sphinx
does. The links are *optional* autorefs: an object the reference does not render (a private
module, the standard library) leaves its name as code instead of failing the strict build.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Any

import griffe

ROLES = "class|meth|func|attr|mod|data|exc|obj"
"""The Sphinx roles rewritten (as a regex alternation): ``tools.docs_check`` looks for them too."""
_ROLE = re.compile(rf":(?:py:)?(?P<role>{ROLES}):`(?P<target>[^`]+)`")
_TITLED = re.compile(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>$")
_CALLABLE_ROLES = frozenset({"meth", "func"})


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            docstring = obj.docstring
            if docstring is not None and ":" in docstring.value:
                docstring.value = _ROLE.sub(functools.partial(_reference, obj), docstring.value)


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_objects(member))
    return found


def _reference(scope: griffe.Object, match: re.Match[str]) -> str:
    role, target = match["role"], match["target"].strip()
    title = None
    if titled := _TITLED.match(target):
        title, target = titled["title"], titled["target"]
    short = target.startswith("~")
    target = target.lstrip("~.")
    if title is None:
        title = target.rsplit(".", 1)[-1] if short else target
        if role in _CALLABLE_ROLES:
            title += "()"
    code = f"<code>{html.escape(title)}</code>"
    path = _resolve(scope, target)
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _resolve(scope: griffe.Object, target: str) -> str | None:
    """The canonical path of ``target`` as seen from ``scope``, or None where it is not an
    object of the package (the standard library's, say)."""
    path = _full_path(scope, target)
    if path is None:
        return None
    try:
        return str(scope.modules_collection[path].canonical_path)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _full_path(scope: griffe.Object, target: str) -> str | None:
    first, _, rest = target.partition(".")
    if first == scope.package.name:
        return target
    for where in _scopes(scope):
        try:
            found = where.resolve(first)
        except griffe.NameResolutionError:
            continue
        return f"{found}.{rest}" if rest else found
    return None


def _scopes(scope: griffe.Object) -> list[griffe.Object]:
    scopes = [scope] if scope.is_class or scope.is_module else []
    parent = scope.parent
    while parent is not None:
        scopes.append(parent)
        parent = parent.parent
    return scopes
