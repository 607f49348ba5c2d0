"""Argument checks shared by the records and every store.

Each check names the argument and the bad value in its ``ValidationError`` and returns the
normalised value, so callers write ``x = check_...(x, "x")``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from itertools import repeat
from operator import itemgetter
from typing import Any

from sqlitestream.errors import ValidationError

_MAX_DEPTH = 100
_first, _second = itemgetter(0), itemgetter(1)


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _make_codec() -> tuple[
    Callable[[Any], str], Callable[[str], Any], Callable[[Sequence[str]], list[Any]]
]:
    """One compact, strict encoder, one decoder and one many-texts decoder, built once:
    ``json.dumps``/``loads`` with options build a new encoder per call and wrap the C scanner
    in Python. Our texts are
    compact (no whitespace), so the C scanner's ``(value, end)`` is the whole answer. Falls
    back to the documented API where the C accelerators are missing or differ."""
    slow = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    loads = json.JSONDecoder().decode
    try:
        from json import encoder as json_encoder
        from json import scanner as json_scanner

        # Undocumented module attributes (None without the _json accelerator), hence getattr.
        c_make_encoder = getattr(json_encoder, "c_make_encoder", None)
        c_make_scanner = getattr(json_scanner, "c_make_scanner", None)
        encode_basestring = json_encoder.encode_basestring
        if c_make_encoder is None or c_make_scanner is None:
            raise ImportError("no C accelerator")
        # markers=None: no shared cycle-detection state between calls or threads; a cyclic
        # value ends in RecursionError instead, which the caller treats like any refusal.
        c_encode = c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", False, False, False)
        scan = c_make_scanner(json.JSONDecoder())
        if "".join(c_encode({"a": [1, 2.5, "é", None, True]}, 0)) != '{"a":[1,2.5,"é",null,true]}':
            raise ImportError("unexpected C encoder behaviour")
    except (ImportError, TypeError):
        return slow.encode, loads, lambda texts: [loads(text) for text in texts]

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    def decode(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:  # not JSON at its start (e.g. whitespace): the full decoder judges
            return loads(text)
        if end != len(text):  # not one of our compact texts: let the full decoder judge
            return loads(text)
        return value

    def decode_many(texts: Sequence[str]) -> list[Any]:
        # The scanner mapped over the texts in C, no Python frame per text; a text the
        # scanner stops short on (not one of ours) or cannot read sends them all to decode.
        count = len(texts)
        if texts.count("{}") == count:  # e.g. a page of events without metadata
            return [{} for _ in range(count)]
        try:
            found = list(map(scan, texts, repeat(0)))  # a StopIteration ends the list early
        except ValueError:
            found = []
        if len(found) == count and list(map(_second, found)) == list(map(len, texts)):
            return list(map(_first, found))
        return [decode(text) for text in texts]

    return encode, decode, decode_many


_encode, _decode, decode_many = _make_codec()
_REPR_LIMIT = 80


def describe(value: object) -> str:
    """A short repr for error messages (long values are cut)."""
    try:
        text = repr(value)
    except Exception:  # an int too long to print, or a broken __repr__: still name the type
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
    if type(value) is datetime and value.tzinfo is timezone.utc:
        return value  # already what we return (the default timestamps are built this way)
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a timezone-aware datetime, got {describe(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{name} must be timezone-aware (naive datetimes are ambiguous), got {value.isoformat()}"
        )
    try:
        return value.astimezone(timezone.utc)
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
    return json_object_with_text(value, name)[0]


def json_object_with_text(value: object, name: str) -> tuple[dict[str, Any], str]:
    """:func:`check_json_object`'s copy together with its compact JSON text (as
    :func:`encode_json` writes it).

    The common case runs at C speed: encode, decode the text back as the copy, and accept it
    when the copy equals the input (so no key was coerced to a string), no container count
    could exceed the depth limit and the text is valid Unicode. Anything else (tuples, odd
    keys, NaN, lone surrogates, deep or cyclic values) takes the walk in ``_normalise``, which
    gives the same copy or names the offending value.
    """
    if type(value) is dict:
        if not value:
            return {}, "{}"
        try:
            text = _encode(value)
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            if text.count("{") + text.count("[") <= _MAX_DEPTH and _is_text(text):
                copy = _decode(text)
                if copy == value:
                    return copy, text
    if not isinstance(value, dict):
        raise ValidationError(f"{name} must be a dict (a JSON object), got {describe(value)}")
    copy = _normalise(value, name, 0)
    return copy, encode_json(copy, name)


def _is_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_optional_json_object(value: object, name: str) -> dict[str, Any] | None:
    return None if value is None else check_json_object(value, name)


def encode_json(value: Any, name: str) -> str:
    """Compact JSON text of an already normalised value."""
    try:
        return _encode(value)
    except ValueError as exc:  # e.g. an int too large for int->str conversion
        raise ValidationError(f"{name} cannot be encoded as JSON: {exc}") from exc


def check_tags(value: object, name: str) -> list[str]:
    if not isinstance(value, (list, tuple)):
        raise ValidationError(f"{name} must be a list of strings, got {describe(value)}")
    tags = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str):
            raise ValidationError(f"{name}[{index}] must be a string, got {describe(tag)}")
        tags.append(check_text(str.__str__(tag), f"{name}[{index}]"))
    return tags
