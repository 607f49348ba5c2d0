"""A linearizability check of concurrent histories against a sequential model of session logs.

``python -m tools.linearizability --help`` runs worker processes x threads on one store,
records every call with its interval on the system-wide monotonic clock
(:mod:`.history`), and searches for an order of the calls that the sequential model
(:mod:`.model`) explains (:mod:`.check`). ``tests/test_linearizability.py`` runs a short
version on SQLite and PostgreSQL, and plants faults in recorded histories to show the check
reports them.
"""
