"""The contract for hostile values: ids and payload text full of quotes, wildcards, NUL, SQL
fragments and long or non-ASCII text are stored and filtered exactly, never interpreted; JSON
numbers at the edges come back exactly."""

from __future__ import annotations

from pathlib import Path

from sqlitestream.models import Event, Run, RunStatus, Session
from sqlitestream.store import SessionStore
from sqlitestream.testing._base import T0, ContractBase, new_event

HOSTILE_IDS = [
    "'",
    '"',
    "`",
    "%",
    "_",
    "%%",
    "a%",
    "_b",
    "[a-z]",
    "*",
    "?",
    "\\",
    "\\%",
    "'; DROP TABLE events; --",
    "x' OR '1'='1",
    '" OR ""="',
    "1; SELECT * FROM sessions",
    "?1",
    ":name",
    "$x",
    "@x",
    "/* comment */",
    "-- comment",
    " leading and trailing ",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "\x01\x02\x7f",
    "ünïcödé",
    "日本語のセッション",
    "emoji 🦆🧪",
    "rtl \u202e reversed",
    "e\u0301",  # e + combining acute: must not match the precomposed "é"
    "é",
    "A",
    "a",  # must not match "A" (no case folding)
    "x" * 10_000,
    "€" * 5_000,
]

HOSTILE_PAYLOAD_TEXT = [
    "NUL \x00 inside",
    "\x00",
    "\x00\x00\x00",
    "ends with NUL\x00",
    *HOSTILE_IDS,
    "__import__('os').system('touch pwned')",
    "{{7*7}} ${7*7} #{7*7}",
    "\\u0000 escaped, not a NUL",
    '{"looks": "like json"}',
    "cos\nsystem\n(S'touch pwned'\ntR.",  # a pickle protocol-0 payload, as text
    "\ufeffBOM",
    "\U0010ffff max code point",
    "y" * 200_000,
]


class HostileValuesContract(ContractBase):
    """Hostile values: stored and read back exactly, after reopening too."""

    def test_hostile_ids_are_stored_and_filtered_exactly(self, store: SessionStore, tmp_path: Path) -> None:
        for index, value in enumerate(HOSTILE_IDS):
            store.save_session(Session(agent_id=value, id=value, created_at=T0, updated_at=T0, tags=[value]))
            store.save_run(Run(session_id=value, id=f"run:{value}", status=RunStatus.RUNNING, started_at=T0))
            store.append_events(
                [
                    Event("message_sent", value, id=f"evt:{value}", run_id=f"run:{value}", data={"i": index}),
                    Event("message_received", value, id=f"evt2:{value}", run_id=value, data={"i": index}),
                ]
            )
        store = self.reopened(store, tmp_path)
        for index, value in enumerate(HOSTILE_IDS):
            session = store.get_session(value)
            assert (session.id, session.agent_id, session.tags) == (value, value, [value])
            assert [s.id for s in store.list_sessions(agent_id=value)] == [value]
            assert store.get_run(f"run:{value}").session_id == value
            assert [r.id for r in store.list_runs(value)] == [f"run:{value}"]
            assert [r.id for r in store.list_runs(value, status="running")] == [f"run:{value}"]
            active = store.get_active_run(value)
            assert active is not None and active.id == f"run:{value}"
            events = store.get_events(value)
            assert [(e.id, e.session_id, e.sequence_number, e.data) for e in events] == [
                (f"evt:{value}", value, 1, {"i": index}),
                (f"evt2:{value}", value, 2, {"i": index}),
            ]
            assert [e.id for e in store.get_events(value, run_id=f"run:{value}")] == [f"evt:{value}"]
            assert [e.id for e in store.get_events(value, run_id=value)] == [f"evt2:{value}"]
            assert [e.id for e in store.get_events(value, type="message_received")] == [f"evt2:{value}"]
            assert store.get_latest_sequence(value) == 2
        assert len(store.list_sessions()) == len(HOSTILE_IDS)

    def test_wildcards_and_case_never_widen_a_filter(self, store: SessionStore, tmp_path: Path) -> None:
        for value in ["%", "_", "a", "A", "ab", "a_", "a%", "é", "e\u0301"]:
            store.append_event(Event("message_sent", "s1", id=f"id-{value}", run_id=value))
            store.save_session(Session(agent_id=value, id=f"ses-{value}", created_at=T0, updated_at=T0))
        store = self.reopened(store, tmp_path)
        for value in ["%", "_", "a", "A", "a_", "a%", "é", "e\u0301"]:
            assert [e.id for e in store.get_events("s1", run_id=value)] == [f"id-{value}"]
            assert [s.id for s in store.list_sessions(agent_id=value)] == [f"ses-{value}"]
        for absent in ["%%", "__", "*", "a*", "A%", "É", ".*"]:
            assert store.get_events("s1", run_id=absent) == []
            assert store.list_sessions(agent_id=absent) == []
            assert store.get_events(absent) == []
            assert store.get_latest_sequence(absent) == 0

    def test_hostile_payload_text_round_trips_exactly(self, store: SessionStore, tmp_path: Path) -> None:
        data = {f"k{index}": text for index, text in enumerate(HOSTILE_PAYLOAD_TEXT)}
        keys = {text: index for index, text in enumerate(HOSTILE_PAYLOAD_TEXT[:-1])}  # texts as keys
        nested = {"list": list(HOSTILE_PAYLOAD_TEXT[:5]), "deep": {"\x00": {"'": ["%", {"_": "\x00"}]}}}
        metadata = {"keys": keys, "nested": nested}
        session = Session(
            agent_id="a", id="s1", metadata=metadata, context=data, tags=HOSTILE_PAYLOAD_TEXT[:8]
        )
        run = Run(session_id="s1", id="r1", input=data, output=metadata, error=nested, metadata=keys)
        store.save_session(session)
        store.save_run(run)
        stored = store.append_event_with_sequence(Event("message_sent", "s1", data=data, metadata=metadata))
        assert (stored.data, stored.metadata) == (data, metadata)
        store = self.reopened(store, tmp_path)
        (event,) = store.get_events("s1")
        assert event.data == data and event.metadata == metadata
        assert all(type(value) is str for value in event.data.values())
        assert store.get_session("s1") == session
        assert store.get_run("r1") == run
        assert not Path("pwned").exists()

    def test_json_numbers_at_the_edges_come_back_exactly(self, store: SessionStore, tmp_path: Path) -> None:
        """Big but finite numbers are valid JSON (not a bad input), and keep their type."""
        data = {"big": 2**70, "neg": -(2**70), "tiny": 5e-324, "max": 1.7976931348623157e308, "zero": -0.0}
        store.append_event(new_event(id="numbers", data=data))
        store = self.reopened(store, tmp_path)
        (read,) = store.get_events("s1")
        assert read.data == data
        assert all(type(read.data[k]) is type(v) for k, v in data.items())
