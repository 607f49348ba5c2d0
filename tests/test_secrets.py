"""A password in a postgresql:// location never appears in an error, from the library or the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sqlitestream import ValidationError, open_store
from sqlitestream.cli import cli

LOCATIONS = [
    "postgresql://app:s3cr3t-pw@db.internal/app?schema=a&schema=b",
    "postgresql://app@db.internal/app?password=s3cr3t-pw&schema=a&schema=b",
]


@pytest.mark.parametrize("location", LOCATIONS)
def test_a_refused_location_is_named_without_its_password(location: str) -> None:
    with pytest.raises(ValidationError, match="schema 2 times") as raised:
        open_store(location)
    assert "s3cr3t-pw" not in str(raised.value)
    assert "***" in str(raised.value)


@pytest.mark.parametrize("location", LOCATIONS)
def test_the_cli_never_prints_the_password(location: str) -> None:
    result = CliRunner().invoke(cli, ["--db", location, "info"])
    assert result.exit_code != 0
    assert "schema 2 times" in result.output
    assert "s3cr3t-pw" not in result.output
