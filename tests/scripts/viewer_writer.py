"""Writer process for the viewer's browser tests: another OS process writing through the API.

usage: viewer_writer.py DB
Reads one JSON command per line on stdin and answers one line on stdout once it is committed:
  {"op": "session", "id": ..., "agent": ..., "status": ...}   -> "ok"
  {"op": "append", "session": ..., "type": ..., "data": {...}, "run": ...}   -> "ok <sequence>"
"""

import json
import sys

from sqlitestream import Event, Session, SQLiteSessionStore


def main() -> None:
    with SQLiteSessionStore(sys.argv[1]) as store:
        print("ready", flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "session":
                store.save_session(
                    Session(id=command["id"], agent_id=command["agent"], status=command["status"])
                )
                print("ok", flush=True)
            elif command["op"] == "append":
                stored = store.append_event(
                    Event(
                        type=command["type"],
                        session_id=command["session"],
                        data=command.get("data", {}),
                        run_id=command.get("run"),
                    )
                )
                print(f"ok {stored.sequence_number}", flush=True)


if __name__ == "__main__":
    main()
