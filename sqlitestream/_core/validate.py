"""Argument checks shared by the records and every store.

Each check names the argument and the bad value in its ``ValidationError`` and returns the
normalised value, so callers write ``x = check_...(x, "x")``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlitestream._core import codec
from sqlitestream.errors import ValidationError

_MAX_DEPTH = 100
_MAX_NESTING_CHARS = 2 * _MAX_DEPTH + 1
"""A JSON text this short cannot nest deeper than ``_MAX_DEPTH``: each level takes two
characters. Shorter texts skip counting their brackets (a tenth of validating a 150-byte
payload: callgrind)."""
_REPR_LIMIT = 80


def describe(value: object) -> str:
    """A short repr for error messages (long values are cut)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - an int too long to print, or a broken __repr__: still name the type
        text = f"<{type(value).__name__} object>"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return f"{text} ({type(value).__name__})"


def check_id(value: object, name: str) -> str:
    """An id: a non-empty ``str`` without NUL (ids are also file names and CLI arguments)."""
    if type(value) is not str:
        if isinstance(value, str):
            value = str.__str__(value)
        else:
            raise ValidationError(f"{name} must be a non-empty string, got {describe(value)}")
    if not value:
        raise ValidationError(f"{name} must be a non-empty string, got ''")
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain NUL characters, got {describe(value)}")
    return check_text(value, name)


def check_text(value: str, name: str) -> str:
    """A ``str`` that is valid Unicode text: a lone surrogate (e.g. from ``surrogateescape``
    decoding) cannot be stored as UTF-8, so it is refused here rather than half way into a write."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"{name} is not valid Unicode text (a lone surrogate at position {exc.start}), "
                f"got {describe(value)}"
            ) from None
    return value


def check_optional_id(value: object, name: str) -> str | None:
    return None if value is None else check_id(value, name)


def check_int(value: object, name: str, *, minimum: int, allow_none: bool = True) -> int | None:
    """An ``int`` (``bool`` refused) not below ``minimum``; ``None`` when allowed."""
    if value is None:
        if allow_none:
            return None
        raise ValidationError(f"{name} is required, got None")
    if type(value) is not int:
        raise ValidationError(f"{name} must be an int >= {minimum}, got {describe(value)}")
    if value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}")
    if value > 2**63 - 1:
        raise ValidationError(f"{name} must fit in 64 bits, got {value}")
    return value


def check_aware_datetime(value: object, name: str) -> datetime:
    """A timezone-aware ``datetime``, returned in UTC."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value  # already what we return (the default timestamps are built this way)
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a timezone-aware datetime, got {describe(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{name} must be timezone-aware (naive datetimes are ambiguous), got {value.isoformat()}"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValidationError(f"{name} is out of range in UTC: {value.isoformat()}") from exc


def check_choice(value: object, name: str, choices: type[Any]) -> Any:
    """A member of the ``str`` enum ``choices``, given as a member or its string value."""
    if isinstance(value, choices):
        return value
    if isinstance(value, str):
        try:
            return choices(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in choices)
    raise ValidationError(f"{name} must be one of: {allowed}; got {describe(value)}")


def _check_int_digits(value: int, path: str) -> int:
    """A big int is valid JSON only if Python can write it out (``sys.set_int_max_str_digits``)."""
    try:
        int.__repr__(value)
    except ValueError:
        raise ValidationError(
            f"{path} is an integer with too many digits to store ({value.bit_length()} bits)"
        ) from None
    return value


def _normalise(value: Any, path: str, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        return check_text(value, path)
    if kind is bool or value is None:
        return value
    if kind is int:
        return value if value.bit_length() <= 64 else _check_int_digits(value, path)
    if kind is float:
        if not math.isfinite(value):
            raise ValidationError(f"{path} must be a finite number, got {value!r}")
        return value
    if depth >= _MAX_DEPTH:
        raise ValidationError(f"{path} is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{path} has a non-string key {describe(key)}")
            key = check_text(str.__str__(key), f"{path} key")
            out[key] = _normalise(item, f"{path}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_normalise(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, str):
        return check_text(str.__str__(value), path)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _normalise(int(value), path, depth)
    if isinstance(value, float):
        return _normalise(float(value), path, depth)
    raise ValidationError(f"{path} is not JSON-representable: {describe(value)}")


def check_json_object(value: object, name: str) -> dict[str, Any]:
    """A JSON object: a ``dict`` with ``str`` keys and JSON values, finite numbers only.

    Returns a deep copy (tuples become lists), so later changes to the caller's dict do not
    reach the stored record.
    """
    if type(value) is dict:
        copy = _round_trip(value)
        if copy is not None:
            return copy
    if not isinstance(value, dict):
        raise ValidationError(f"{name} must be a dict (a JSON object), got {describe(value)}")
    walked: dict[str, Any] = _normalise(value, name, 0)  # holds only what codec.encode writes
    return walked


def _round_trip(value: dict[str, Any]) -> dict[str, Any] | None:
    """The copy of ``value`` read back from its JSON text, if that is a valid copy; ``None``
    when the value needs the walk in ``_normalise`` to be judged.

    The common case, in C: about 4x faster than the walk on a typical 150-byte payload. The
    copy is valid when it equals the input (no NaN became ``null``) and no container count
    could exceed the depth limit (only a text longer than ``_MAX_NESTING_CHARS`` may). Anything else (tuples, odd keys, NaN, lone surrogates, huge
    ints, deep or cyclic values) takes the walk, which gives the same copy or names the
    offending value.
    """
    if not value:
        return {}
    found = codec.round_trip(value)
    if found is None:
        return None
    copy, text = found
    if copy != value or (len(text) > _MAX_NESTING_CHARS and text.count("{") + text.count("[") > _MAX_DEPTH):
        return None
    result: dict[str, Any] = copy
    return result


def check_optional_json_object(value: object, name: str) -> dict[str, Any] | None:
    return None if value is None else check_json_object(value, name)


def check_tags(value: object, name: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise ValidationError(f"{name} must be a list of strings, got {describe(value)}")
    tags = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str):
            raise ValidationError(f"{name}[{index}] must be a string, got {describe(tag)}")
        tags.append(check_text(str.__str__(tag), f"{name}[{index}]"))
    return tags
