"""The JSON codec for stored payloads: every store, the records' validation and the row codecs
encode and decode JSON here, so the stored text has one format.

The text is compact (no whitespace) and keeps non-ASCII characters as they are. Encoding
refuses NaN and infinities and values that are not JSON; it does not check keys or text (it
writes a non-string key as a string and a lone surrogate as it is): the records' validation
(``_core.validate``) does that before anything is stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["decode", "decode_many", "decode_object", "encode"]

# Built once: json.dumps/json.loads with options build a new encoder or decoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()

encode = _ENCODER.encode
"""``encode(value) -> str``: compact JSON text. Raises ``TypeError`` for a value that is not
JSON, ``ValueError`` for NaN, an infinity, a cycle or an int too long to write out."""

decode = _DECODER.decode
"""``decode(text) -> Any``: the value of a JSON text (``ValueError`` if it is not JSON)."""


def decode_many(texts: Sequence[str]) -> list[Any]:
    """``[decode(text) for text in texts]``, for a page of payloads."""
    if texts.count("{}") == len(texts):  # e.g. a page of events without metadata
        return [{} for _ in texts]
    return list(map(decode, texts))


def decode_object(text: str) -> dict[str, Any]:
    """The JSON object a text holds (``ValueError`` if it holds anything else)."""
    value = decode(text)
    if type(value) is not dict:
        raise ValueError(f"not a JSON object: {type(value).__name__}")
    return value
