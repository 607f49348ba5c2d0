"""The curated public surface: everything in ``__all__`` imports, and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest

import sqlitestream
import sqlitestream.admin


@pytest.mark.parametrize("module", [sqlitestream, sqlitestream.admin], ids=lambda m: m.__name__)
def test_every_public_name_resolves(module: object) -> None:
    for name in module.__all__:  # type: ignore[attr-defined]
        assert getattr(module, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute"):
        sqlitestream.NoSuchThing  # noqa: B018


def test_every_error_derives_from_the_root() -> None:
    errors = importlib.import_module("sqlitestream.errors")
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), sqlitestream.SqliteStreamError), name
    assert issubclass(sqlitestream.ProviderError, sqlitestream.SqliteStreamError)


def test_admin_types_are_the_ones_the_store_returns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with sqlitestream.SQLiteSessionStore(tmp_path / "events.db") as store:
        store.append_event(sqlitestream.Event("message_sent", "s1"))
        assert isinstance(store.store_info(), sqlitestream.admin.StoreInfo)
        assert isinstance(store.check_integrity(), sqlitestream.CheckReport)
        assert all(isinstance(s, sqlitestream.admin.StreamInfo) for s in store.list_streams())


def test_package_ships_type_information() -> None:
    from pathlib import Path

    assert (Path(sqlitestream.__file__).parent / "py.typed").exists()


def test_type_checking_imports_list_exactly_the_public_names() -> None:
    """The TYPE_CHECKING block of ``__init__`` (what type checkers see) and the name table
    (what runs) must not drift apart."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(sqlitestream.__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    )
    seen: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.dump(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} must be re-exported as itself"
            seen[alias.name] = str(node.module)
    assert seen == sqlitestream._PUBLIC


def test_all_and_dir_come_from_the_name_table() -> None:
    assert sqlitestream.__all__ == ["__version__", *sqlitestream._PUBLIC]
    assert set(sqlitestream.__all__) <= set(dir(sqlitestream))


@pytest.mark.parametrize("name", sorted(sqlitestream._PUBLIC))
def test_each_public_name_comes_from_its_module(name: str) -> None:
    module = importlib.import_module(f"sqlitestream.{sqlitestream._PUBLIC[name]}")
    assert getattr(sqlitestream, name) is getattr(module, name)


def test_errors_keep_working_from_their_old_modules() -> None:
    from sqlitestream.adapters import ProviderError
    from sqlitestream.postgres import MissingDependencyError

    assert ProviderError is sqlitestream.ProviderError
    assert MissingDependencyError is sqlitestream.MissingDependencyError


def test_every_store_implements_the_admin_contract() -> None:
    for store in (
        sqlitestream.InMemorySessionStore,
        sqlitestream.SQLiteSessionStore,
        sqlitestream.PostgresSessionStore,
    ):
        assert issubclass(store, sqlitestream.AdminStore), store
        assert not getattr(store, "__abstractmethods__", None), store
