"""The quota ledger's per-minute counts stay exact under charges, refunds and moves."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailfleet.store.sqlite import SqliteStore

T0 = 1_767_225_600.0
operations = st.lists(st.tuples(
    st.sampled_from(["charge", "refund", "move"]),
    st.sampled_from(["a", "b"]),
    st.floats(min_value=0, max_value=3 * 86_400, allow_nan=False)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(ops=operations, starts=st.lists(st.floats(min_value=-3600, max_value=3 * 86_400,
                                                  allow_nan=False), min_size=1, max_size=5))
def test_window_counts_equal_a_full_count_of_the_ledger(tmp_path_factory: object,
                                                        ops: list[tuple[str, str, float]],
                                                        starts: list[float]) -> None:
    path = Path(tmp_path_factory.mktemp("ledger")) / "s.db"  # type: ignore[attr-defined]
    store = SqliteStore(path)
    db = store.db
    for op, server, offset in ops:
        at = T0 + offset
        if op == "charge":
            db.execute("INSERT INTO ledger (server, at, letter_id) VALUES (?,?,1)", (server, at))
            continue
        row = db.execute("SELECT id FROM ledger WHERE server=? ORDER BY id LIMIT 1",
                         (server,)).fetchone()
        if row is None:
            continue
        if op == "refund":
            db.execute("DELETE FROM ledger WHERE id=?", row)
        else:  # settled at the time it really went (possibly another minute)
            db.execute("UPDATE ledger SET at=?, settled=1 WHERE id=?", (at, row[0]))
    for server in ("a", "b"):
        for start in starts:
            naive = db.execute("SELECT COUNT(*) FROM ledger WHERE server=? AND at>?",
                               (server, T0 + start)).fetchone()[0]
            assert store._used(server, T0 + start) == naive
    store.close()
