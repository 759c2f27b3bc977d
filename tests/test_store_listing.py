"""The store methods behind `mailfleet send` (a charge outside any mailing) and
`mailing letters` (paged listing by state), on every store."""

from __future__ import annotations

from mailfleet.clock import FakeClock
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import Template
from mailfleet.plugins.providers import Limits
from mailfleet.store.base import Outcome, Store

T0 = 1_767_225_600.0


def test_a_charge_counts_in_every_window_of_the_server_only(store: Store) -> None:
    limits = Limits(per_minute=5, per_hour=1)
    store.charge("one", T0)
    quota = store.quota("one", limits, T0 + 1)
    assert (quota.minute.used, quota.hour.used, quota.hour.remaining) == (1, 1, 0)
    assert not quota.available and store.quota("other", limits, T0 + 1).available


def test_letters_are_listed_in_order_by_state_and_in_pages(store: Store) -> None:
    rows = [{"email": f"u{i}@dest.test"} for i in range(5)]
    mailing = create_mailing(store, Template(subject="s", text="t"), rows,
                             clock=FakeClock(T0)).id
    store.set_mailing_state(mailing, "active")
    claim = store.claim("d1", "srv", Limits(), 2, T0, [mailing])
    store.finish([Outcome(claim.letters[0].id, "sent", "srv", "a@example.org", None, None, 1,
                          charged=True),
                  Outcome(claim.letters[1].id, "failed", "srv", None, "550 no", None, 1)], T0)
    every = store.letters(mailing)
    assert [r.letter_id for r in every] == [f"{mailing}-{i}" for i in range(1, 6)]
    assert [(r.state, r.server, r.from_addr) for r in every[:2]] == [
        ("sent", "srv", "a@example.org"), ("failed", "srv", None)]
    assert [r.last_error for r in store.letters(mailing, ["failed"])] == ["550 no"]
    assert [r.email for r in store.letters(mailing, ["queued"], after=3, limit=1)] == [
        "u3@dest.test"]
