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
        assert isinstance(store.check_integrity(), sqlitestream.admin.CheckReport)
        assert all(isinstance(s, sqlitestream.admin.StreamInfo) for s in store.list_streams())


def test_package_ships_type_information() -> None:
    from pathlib import Path

    assert (Path(sqlitestream.__file__).parent / "py.typed").exists()
