"""Follower process for the cross-process streaming tests.

usage: follow_session.py DB SESSION_ID MODE     (MODE: poll or longpoll)
Prints "ready", then one JSON line per event as it arrives, and exits after the session ends.
"""

import json
import sys
from typing import TypedDict

from sqlitestream import SessionManager, SQLiteSessionStore

ENDS = {"session_completed", "session_failed", "session_cancelled"}


class FollowMode(TypedDict, total=False):
    poll_interval_ms: int
    wait_timeout_ms: int


def main() -> None:
    db, session_id, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    options: FollowMode = {"poll_interval_ms": 5} if mode == "poll" else {"wait_timeout_ms": 2000}
    with SQLiteSessionStore(db) as store:
        print("ready", flush=True)
        for event in SessionManager(store).stream_session_events(session_id, limit=7, **options):
            line = {"seq": event.sequence_number, "id": event.id, "type": event.type.value}
            print(json.dumps(line), flush=True)
            if event.type.value in ENDS:
                return


if __name__ == "__main__":
    main()
