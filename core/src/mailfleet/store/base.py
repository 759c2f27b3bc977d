"""The storage interface of the mailing engine (SQLite and PostgreSQL).

Every method is one short transaction; none is held open across SMTP. Times are seconds
since the epoch from the engine's clock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import attrs

from mailfleet.clock import Clock, SystemClock
from mailfleet.plugins.providers import Limits
from mailfleet.sending import identity
from mailfleet.sending.quota import QuotaStatus
from mailfleet.store.leases import LEASE_SECONDS, takeback_at

LetterState = Literal["queued", "claimed", "sending", "sent", "failed", "skipped", "bounced",
                      "held"]


@attrs.frozen
class MailingRecord:
    """A mailing as stored: the template as a dict and how it runs."""

    id: str
    name: str
    created_at: float
    state: str
    template: Mapping[str, object]
    message_id_domain: str
    hold_in_data: bool = False
    state_reason: str = ""
    total: int = 0
    rejected: int = 0
    tenant: str = ""  # "" for a single-tenant deployment


@attrs.frozen
class LetterRow:
    """A claimed letter, what the dispatcher needs to render and send it."""

    id: int
    mailing_id: str
    seq: int
    email: str
    fields: str
    attempts: int

    @property
    def letter_id(self) -> str:
        return identity.letter_id(self.mailing_id, self.seq)


@attrs.frozen
class LetterRecord:
    """A letter as a bounce reader sees it."""

    letter_id: str
    mailing_id: str
    email: str
    state: str
    server: str | None
    from_addr: str | None
    message_id: str | None
    attempts: int
    last_error: str | None
    sent_at: float | None


@attrs.frozen
class Claim:
    """Letters claimed for one server; when empty, ``reason`` says why:
    ``empty`` (nothing queued may go now), ``spent`` (a window is full), ``blocked``."""

    letters: tuple[LetterRow, ...] = ()
    skipped: tuple[LetterRow, ...] = ()
    reason: str = ""
    until: float | None = None


@attrs.frozen
class Outcome:
    """The end of one attempt: the letter's new state and whether its charge stays.

    ``settle = False`` (for a ``sent`` letter only, never claimed again) keeps the charge
    without settling it in this commit; the caller settles it later (``record(settled=)``),
    so a letter's outcome alone touches no quota row on the hot path."""

    letter: int
    state: LetterState
    server: str | None = None
    from_addr: str | None = None
    error: str | None = None
    not_before: float | None = None
    attempts: int = 0
    charged: bool = False
    settle: bool = True


@attrs.frozen
class Recovery:
    """What a recovery found: letters put back, letters to resend, letters held for review."""

    requeued: int = 0
    resent: int = 0
    held: int = 0


@attrs.frozen
class Holder:
    """A dispatcher holding letters (claimed, or ``sending``: inside DATA) and when they are
    taken back if it is gone: ``alive`` is ``None`` when its host cannot tell (another
    machine: its lease decides); ``takeback_at`` is ``None`` while a live local process holds
    them (they come back the moment it dies)."""

    dispatcher: str
    host: str | None
    pid: int | None
    seen_at: float | None
    alive: bool | None
    claimed: int
    sending: int
    takeback_at: float | None


def holder(row: Sequence[Any], here: str, lease: float, now: float) -> Holder:
    """A :class:`Holder` from a row ``(dispatcher id, host, pid, seen_at, claimed, sending)``
    (host ``None``: the dispatcher's row is gone, so its letters go back at the next check)."""
    did, host, pid, seen, claimed, sending = row
    alive: bool | None
    back: float | None
    if host is None:
        alive, back = False, now
    else:
        alive, back = takeback_at(str(host), int(pid), float(seen), here, lease, now)
    return Holder(str(did), None if host is None else str(host),
                  None if pid is None else int(pid), None if seen is None else float(seen),
                  alive, int(claimed), int(sending), back)


def fair_share(rows: Sequence[tuple[str, LetterRow]]) -> list[LetterRow]:
    """``(tenant, letter)`` rows (each mailing's letters in order) reordered to take turns:
    first between tenants, then between each tenant's mailings, so that a tenant's (or a
    mailing's) million letters never hold back another's hundred."""
    tenants: dict[str, dict[str, collections.deque[LetterRow]]] = {}
    for tenant, letter in rows:
        tenants.setdefault(tenant, {}).setdefault(letter.mailing_id,
                                                  collections.deque()).append(letter)
    turns = collections.deque(collections.deque(m.values()) for m in tenants.values())
    out: list[LetterRow] = []
    while turns:
        mailings = turns.popleft()
        letters = mailings.popleft()
        out.append(letters.popleft())
        if letters:
            mailings.append(letters)
        if mailings:
            turns.append(mailings)
    return out


def take(letters: Sequence[LetterRow], suppressed: set[int], want: int
         ) -> tuple[list[LetterRow], list[LetterRow]]:
    """The first ``want`` letters that may go, and the suppressed ones met on the way."""
    chosen: list[LetterRow] = []
    skipped: list[LetterRow] = []
    for letter in letters:
        if len(chosen) >= want:
            break
        (skipped if letter.id in suppressed else chosen).append(letter)
    return chosen, skipped


@attrs.frozen
class WorkerInfo:
    """A registered dispatcher (a ``mailfleet worker``, or any running send): where it runs,
    since when, the letters it holds and the servers it sends through. ``alive`` as for
    :class:`Holder` (``None``: another host, alive while its lease is fresh)."""

    id: str
    host: str
    pid: int
    started_at: float
    seen_at: float
    alive: bool | None
    claimed: int
    sending: int
    servers: tuple[str, ...]


def worker_info(row: Sequence[Any], here: str, lease: float, now: float) -> WorkerInfo:
    """A :class:`WorkerInfo` from ``(id, host, pid, started_at, seen_at, servers, claimed,
    sending)``; ``servers`` is the comma-joined list the dispatcher registered."""
    did, host, pid, started, seen, servers, claimed, sending = row
    alive, _ = takeback_at(str(host), int(pid), float(seen), here, lease, now)
    if alive is None and float(seen) < now - lease:
        alive = False
    return WorkerInfo(str(did), str(host), int(pid), float(started), float(seen), alive,
                      int(claimed or 0), int(sending or 0),
                      tuple(s for s in str(servers or "").split(",") if s))


class Wakeups(Protocol):
    """Notifications that there may be work: letters queued, a mailing resumed, a server
    unblocked (PostgreSQL ``LISTEN``). Without them a worker polls."""

    async def wait(self) -> None:
        """Return at the next notification (those that came meanwhile count)."""
        ...

    def close(self) -> None: ...


class Store(Protocol):
    """Everything the mailing engine and the bounce reader keep."""

    #: How many :meth:`record_async` calls may be in flight at once. Above 1 the store
    #: commits them in the order they were called (each is sent before its first await),
    #: so the journal starts the next commit without waiting for the last one's reply.
    journal_depth: int = 1

    # -- mailings -----------------------------------------------------------------------
    def create_mailing(self, mailing: MailingRecord) -> None: ...
    def add_letters(self, mailing_id: str,
                    rows: Sequence[tuple[int, str, str]]) -> int:
        """Insert ``(seq, email, fields json)`` rows; duplicates of an address are ignored;
        returns how many were inserted."""
        ...
    def finish_creation(self, mailing_id: str, total: int, rejected: int) -> None: ...
    def delete_mailing(self, mailing_id: str) -> None: ...
    def get_mailing(self, mailing_id: str) -> MailingRecord | None: ...
    def list_mailings(self, states: Sequence[str] | None = None) -> list[MailingRecord]: ...
    def set_mailing_state(self, mailing_id: str, state: str, reason: str = "") -> None: ...
    def cancel_mailing(self, mailing_id: str, now: float) -> None: ...
    def release_held(self, mailing_id: str) -> int: ...
    def counts(self, mailing_id: str) -> dict[str, int]: ...
    def by_server(self, mailing_id: str) -> dict[str, int]: ...
    def complete_finished(self) -> list[str]: ...

    # -- dispatching ----------------------------------------------------------------------
    def register_dispatcher(self, dispatcher_id: str, now: float,
                            servers: Sequence[str] = ()) -> None:
        """Register (or renew the lease of) a dispatcher of this process, sending through
        ``servers``."""
        ...
    async def register_dispatcher_async(self, dispatcher_id: str, now: float,
                                        servers: Sequence[str] = ()) -> None:
        """:meth:`register_dispatcher` for the event loop, as :meth:`claim_async`."""
        self.register_dispatcher(dispatcher_id, now, servers)

    async def recover_async(self, now: float, *, lease: float = LEASE_SECONDS,
                            hold_in_doubt: bool = False) -> Recovery:
        """:meth:`recover` for the event loop, as :meth:`claim_async`."""
        return self.recover(now, lease=lease, hold_in_doubt=hold_in_doubt)

    def unregister_dispatcher(self, dispatcher_id: str) -> None: ...
    def workers(self, now: float, *, lease: float = LEASE_SECONDS) -> list[WorkerInfo]:
        """The registered dispatchers, oldest first, with the letters each holds."""
        ...
    def wakeups(self) -> Wakeups | None:
        """A source of wake-up notifications for an idle worker, or ``None``: poll."""
        return None

    def clock(self) -> Clock:
        """The clock every quota window is counted on: the database's where the store is
        shared between machines (their own clocks may differ), else this machine's."""
        return SystemClock()

    def recover(self, now: float, *, lease: float = LEASE_SECONDS,
                hold_in_doubt: bool = False) -> Recovery:
        """Take back the letters of dispatchers that are gone (a local process that ended,
        or a lease older than ``lease`` seconds): claimed ones are queued again uncharged;
        ``sending`` ones (inside DATA, in doubt) keep their charge and are queued again
        with one attempt used, or held for review when ``hold_in_doubt`` or their mailing
        says so."""
        ...
    def holders(self, mailing_id: str | None, now: float, *,
                lease: float = LEASE_SECONDS) -> list[Holder]:
        """Who holds letters (of one mailing, or any) and when they will be taken back."""
        ...
    def claim(self, dispatcher_id: str, server: str, limits: Limits, count: int, now: float,
              mailing_ids: Sequence[str] | None = None, *, tenant: str | None = None
              ) -> Claim:
        """Charge ``server``'s quota for up to ``count`` queued letters of the active mailings
        (``mailing_ids``: only those) and hand them to ``dispatcher_id``, in turns between
        tenants and mailings (:func:`fair_share`). ``tenant``: the server's tenant, whose
        mailings alone it sends (``None``: a shared server, every mailing)."""
        ...
    async def claim_async(self, dispatcher_id: str, server: str, limits: Limits, count: int,
                          now: float, mailing_ids: Sequence[str] | None = None, *,
                          tenant: str | None = None) -> Claim:
        """:meth:`claim` for the event loop: a store whose round trips take time runs them
        while the loop goes on with the sessions; an embedded one runs it at once."""
        return self.claim(dispatcher_id, server, limits, count, now, mailing_ids,
                          tenant=tenant)

    def mark_sending(self, letter_ids: Sequence[int], now: float) -> None:
        """The letters' messages are about to go: ``sending`` (in doubt until an outcome)."""
        self.record(letter_ids, (), now)

    def finish(self, outcomes: Sequence[Outcome], now: float) -> None:
        """Apply the outcomes of letters, as one commit."""
        self.record((), outcomes, now)

    def record(self, sending: Sequence[int], outcomes: Sequence[Outcome], now: float, *,
               settled: Sequence[int] = (),
               committed: Callable[[], None] | None = None) -> None:
        """One commit of the dispatcher's journal: letters whose message is about to go
        become ``sending`` (in doubt until their outcome), outcomes are applied, and the
        charges of ``settled`` letters (sent earlier) are settled at ``now``.

        ``committed`` (the messages' writes) runs the moment the commit can no longer be
        undone by this process dying: after it on SQLite; on PostgreSQL as soon as COMMIT is
        on the wire, before its reply, so a kill during the round trip cannot leave a letter
        marked ``sending`` (and charged) whose message never went."""
        ...
    async def record_async(self, sending: Sequence[int], outcomes: Sequence[Outcome],
                           now: float, *, settled: Sequence[int] = (),
                           committed: Callable[[], None] | None = None) -> None:
        """:meth:`record` for the event loop, as :meth:`claim_async`; ``committed`` runs on
        the loop's thread."""
        self.record(sending, outcomes, now, settled=settled, committed=committed)

    def waiting(self, mailing_ids: Sequence[str] | None, now: float) -> tuple[int, float | None]:
        """Queued letters of active mailings and the earliest ``not_before`` in the future."""
        ...

    # -- quota ----------------------------------------------------------------------------
    def quota(self, server: str, limits: Limits, now: float) -> QuotaStatus: ...
    def block_server(self, server: str, until: float, reason: str) -> None: ...
    def unblock_server(self, server: str) -> None:
        """End a block and close the server's circuit breaker (its failures are forgotten)."""
        ...
    def server_failed(self, server: str, now: float, reason: str,
                      rest: Callable[[int], float]) -> tuple[int, float]:
        """Open the circuit breaker: count one more consecutive failure of ``server`` and
        block it for ``rest(failures)`` seconds; returns the failures and the block's end."""
        ...
    def server_recovered(self, server: str) -> None:
        """The server worked again: its consecutive failures start from zero."""
        ...

    # -- suppression ----------------------------------------------------------------------
    def suppress(self, email: str, reason: str, now: float, source: str = "manual") -> None: ...
    def unsuppress(self, email: str) -> bool: ...
    def is_suppressed(self, email: str) -> bool: ...
    def suppressed(self) -> list[tuple[str, str, float, str]]: ...

    # -- bounces --------------------------------------------------------------------------
    def find_letter(self, letter_id: str) -> LetterRecord | None: ...
    def find_by_message_id(self, message_id: str) -> LetterRecord | None:
        """The letter a Message-ID of ours names, or ``None``."""
        letter = identity.parse_message_id(message_id)
        found = None if letter is None else self.find_letter(letter)
        if found is None or found.message_id != message_id.strip():
            return None
        return found

    def mark_bounced(self, letter_id: str, *, hard: bool, reason: str, status: str | None,
                     diagnostic: str | None, now: float) -> bool: ...
    def count_soft_bounces(self, email: str, since: float) -> int: ...
    def kv_get(self, key: str) -> str | None: ...
    def kv_set(self, key: str, value: str) -> None: ...

    # -- one-off letters and listings -------------------------------------------------------
    def charge(self, server: str, now: float) -> None:
        """Count one letter sent outside any mailing (``mailfleet send``) against ``server``."""
        ...
    def letters(self, mailing_id: str, states: Sequence[str] | None = None, after: int = 0,
                limit: int = 1000) -> list[LetterRecord]:
        """Letters of a mailing in order, those after sequence number ``after`` (paging)."""
        ...

    def close(self) -> None: ...
