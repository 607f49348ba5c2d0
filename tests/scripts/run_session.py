"""Writer process for the cross-process streaming tests.

usage: run_session.py DB SESSION_ID EVENTS DELAY_MS
Runs one session through SessionManager with a ScriptedAdapter emitting EVENTS deltas.
"""

import sys
from typing import Any

from sqlitestream import RunOutcome, ScriptedAdapter, SessionManager, SQLiteSessionStore


def main() -> None:
    db, session_id, count, delay_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    script: list[dict[str, Any]] = [{"type": "run_started"}]
    script += [{"type": "delta", "data": {"n": index}} for index in range(count)]
    script += [{"type": "done"}]
    adapter = ScriptedAdapter(script, delay_ms=delay_ms, outcome=RunOutcome(output={"ok": True}))
    with SQLiteSessionStore(db) as store:
        SessionManager(store, adapter).run_once({"prompt": "go"}, session_id=session_id)


if __name__ == "__main__":
    main()
