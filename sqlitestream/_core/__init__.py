"""Backend-neutral internals shared by every store: validation, row codecs, transfer planning
and the in-process wake-up hub. Nothing here is public API."""
