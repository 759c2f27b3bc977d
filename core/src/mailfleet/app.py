"""The application layer: everything a host application (or the CLI) does with mailfleet.

:class:`Mailfleet` is the embedding API (see ``docs/embedding.md``): a fleet built from a
config file or from Python data (the keys of ``mailfleet.toml``, checked by the same
:func:`~mailfleet.config.parse_config`), with passwords handed over directly or read through
a callback into the host's secret store at the moment they are needed; mailings created from
a template object or dict and any iterable of rows (streamed into the store in batches);
sending as an ``async`` call inside the host's event loop, as a blocking call, or as a
bounded step for job systems; pause, resume, cancel; status, per-letter results, quotas,
blocked servers, suppression and bounce fetching; events to a callback or an async iterator.

The command line (:mod:`mailfleet.cli`) is a thin layer over this module and calls nothing
else of the library, so the business rules it shares with hosts live here once: a mailing's
counts (:func:`mailing_counts`), which servers cannot send and when sending resumes
(:func:`outlook`, :func:`resume_time`), a server's circuit breaker state
(:func:`breaker_state`), the suppression import, the bounce tally, report parsing within
the budget. Nothing here speaks to a terminal: every result is a typed value, every failure
an exception whose message names the cause and the fix, and whose attributes carry the
data (a command line words its own options from them).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import attrs

from mailfleet import aio
from mailfleet.addresses import check_header, normalize_address
from mailfleet.bounces.handling import BounceHandler, Handled, fetch_bounces
from mailfleet.bounces.mime import MAX_BYTES
from mailfleet.bounces.report import BounceReport
from mailfleet.clock import Clock
from mailfleet.config import Config, load_config, parse_config
from mailfleet.errors import AddressError, ConfigError, MailfleetError
from mailfleet.events import DeliveryEvent, EventType
from mailfleet.hookspecs import hookimpl
from mailfleet.mailbox.budget import ParseWorker, SetAside, SetAsideMessage
from mailfleet.mailbox.imap import ImapReader, idle_wait
from mailfleet.mailbox.settings import MailboxSettings, resolve_mailbox
from mailfleet.mailings.mailing import BadRowsError, CreateResult, create_mailing
from mailfleet.mailings.recipients import BadRow, column_for, read_rows
from mailfleet.mailings.template import Template
from mailfleet.plugins.manager import PluginRecord, load_plugins
from mailfleet.plugins.providers import Limits
from mailfleet.secrets import Secret, SecretRef
from mailfleet.sending.dispatcher import Dispatcher, RunReport
from mailfleet.sending.fleet import CheckResult, Fleet, Sent
from mailfleet.sending.identity import parse_letter_id
from mailfleet.sending.quota import QuotaStatus, WindowStatus
from mailfleet.sending.servers import Server
from mailfleet.sending.worker import Worker
from mailfleet.store.base import Claim, Holder, LetterRecord, Store, WorkerInfo

log = logging.getLogger(__name__)

#: The version of the embedding API (semantic versioning: a new minor version only adds).
API_VERSION = "1.1.0"

#: Letter states that still wait to be sent (claimed and ``sending`` ones are in flight).
WAITING_STATES = ("queued", "claimed", "sending")
#: A block this long means "until a person unblocks it" (the failure rules' HELD_UNTIL_UNBLOCKED
#: is a year; anything over 300 days is taken as such).
HELD_SECONDS = 300 * 86_400.0

#: ``secrets`` callback: the server name (``"bounces"`` for the bounce mailbox) to its
#: password, or ``None`` to use the config's ``password``/``password_env``/``password_file``.
SecretSource = Callable[[str], "str | Secret | None"]
EventCallback = Callable[[DeliveryEvent], None]
#: ``on_progress`` of a send: the mailing id and the letters one batch finished.
ProgressCallback = Callable[[str, int], None]
#: ``on_wait`` of a send: what the send did so far, what waits and when it resumes.
WaitCallback = Callable[["SendReport"], None]
MailingState = Literal["draft", "active", "paused", "done", "cancelled"]


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


# -- the business rules shared with the CLI ------------------------------------------------
@attrs.frozen
class MailingCounts:
    """A mailing's letters by state, disjoint: ``sent + bounced + failed + skipped + held +
    waiting == letters`` (``sent`` excludes letters that later bounced); ``rejected`` rows
    were never queued; ``by_server``: letters sent (or bounced) by each server."""

    id: str
    name: str
    state: str
    reason: str | None
    created_at: datetime
    letters: int
    rejected: int
    sent: int
    bounced: int
    failed: int
    skipped: int
    held: int
    waiting: int
    by_server: Mapping[str, int]
    tenant: str = ""  # whose mailing it is ("" in a single-tenant deployment)


def mailing_counts(store: Store, mailing_id: str) -> MailingCounts:
    """The counts of one mailing; LookupError when there is none with this id."""
    mailing = store.get_mailing(mailing_id)
    if mailing is None:
        raise LookupError(f"no mailing {mailing_id!r}")
    counts = store.counts(mailing_id)
    return MailingCounts(
        mailing.id, mailing.name, mailing.state, mailing.state_reason or None,
        datetime.fromtimestamp(mailing.created_at, UTC), mailing.total, mailing.rejected,
        counts.get("sent", 0), counts.get("bounced", 0), counts.get("failed", 0),
        counts.get("skipped", 0), counts.get("held", 0),
        sum(counts.get(s, 0) for s in WAITING_STATES), store.by_server(mailing_id),
        mailing.tenant)


@attrs.frozen
class SpentWindow:
    """A quota window that is full now."""

    window: Literal["minute", "hour", "day"]
    used: int
    limit: int | None
    frees_at: datetime | None


@attrs.frozen
class StoppedServer:
    """A server that cannot send now, and why: disabled, a window spent, or blocked
    (``until_unblocked``: blocked until a person unblocks it)."""

    server: str
    enabled: bool
    spent: tuple[SpentWindow, ...]
    blocked_until: datetime | None
    blocked_reason: str | None
    until_unblocked: bool


@attrs.frozen
class Outlook:
    """Which servers cannot send now, whether any can, and when the first usable server
    frees (``None``: none frees by itself, every enabled one waits for a person)."""

    stopped: tuple[StoppedServer, ...]
    can_send: bool
    frees_at: float | None


def outlook(fleet: Fleet, store: Store, now: float) -> Outlook:
    """Each server that cannot send now and why, and when the first usable server frees
    (``QuotaStatus.next_free``), skipping disabled servers and those blocked until a person
    unblocks them."""
    stopped: list[StoppedServer] = []
    frees: list[float] = []
    for server in fleet.servers:
        quota = store.quota(server.name, server.limits, now)
        windows: tuple[tuple[Literal["minute", "hour", "day"], WindowStatus], ...] = (
            ("minute", quota.minute), ("hour", quota.hour), ("day", quota.day))
        spent = tuple(SpentWindow(kind, w.used, w.limit, _at(w.frees_at))
                      for kind, w in windows if w.remaining == 0)
        held = quota.blocked_until is not None and quota.blocked_until - now > HELD_SECONDS
        if server.enabled and not held:
            frees.append(quota.next_free(now))
        if server.enabled and quota.available:
            continue
        stopped.append(StoppedServer(server.name, server.enabled, spent,
                                     _at(quota.blocked_until), quota.blocked_reason, held))
    names = {s.server for s in stopped}
    can_send = any(s.enabled and s.name not in names for s in fleet.servers)
    return Outlook(tuple(stopped), can_send, max(now, min(frees)) if frees else None)


def resume_time(store: Store, counts: MailingCounts, seen: Outlook, now: float
                ) -> float | None:
    """When sending of this mailing resumes: ``None`` unless it is active with letters
    waiting and some server frees by itself; else the later of that server's freeing and
    the mailing's earliest retry (the dispatcher's rule, ``Dispatcher._resume_at``)."""
    if not counts.waiting or counts.state != "active" or seen.frees_at is None:
        return None
    _, next_retry = store.waiting([counts.id], now)
    return max(seen.frees_at, next_retry or now)


def letter_pages(store: Store, mailing_id: str, states: Sequence[str] | None = None
                 ) -> Iterator[LetterRecord]:
    """Each letter of a mailing in order (or those in ``states``), read page by page."""
    after = 0
    while page := store.letters(mailing_id, list(states) if states else None, after):
        yield from page
        key = parse_letter_id(page[-1].letter_id)
        assert key is not None  # the store's own ids
        after = key[1]


def breaker_state(failures: int, blocked_until: float | None
                  ) -> Literal["closed", "open", "half-open"]:
    """A server's circuit breaker: ``closed`` (healthy), ``open`` (resting after consecutive
    failures), ``half-open`` (the rest is over: the next connection is the probe)."""
    if not failures:
        return "closed"
    return "open" if blocked_until is not None else "half-open"


# -- public result types -------------------------------------------------------------------
@attrs.frozen
class MailingStatus:
    """A mailing now: its counts, the servers that cannot send, and when sending resumes."""

    counts: MailingCounts
    stopped_servers: tuple[StoppedServer, ...]
    can_send: bool
    resume_at: datetime | None

    @property
    def id(self) -> str:
        return self.counts.id

    @property
    def state(self) -> str:
        return self.counts.state


@attrs.frozen
class Created:
    """A created mailing: its id, letters queued, rows refused, duplicate addresses dropped."""

    id: str
    letters: int
    rejected: tuple[BadRow, ...]
    duplicates: int

    @classmethod
    def of(cls, result: CreateResult) -> Created:
        return cls(result.id, result.letters, result.rejected, result.duplicates)


@attrs.frozen
class SendReport:
    """What a send did: letters sent, failed (for good), skipped (suppressed), deferred
    (to retry), what still waits, and when sending can resume. ``stopped``: why it returned
    (``done``: nothing waits; ``idle``: nothing can go now; ``letters``/``seconds``: the
    step's bound; ``stopped``: :meth:`Mailfleet.stop` was called)."""

    sent: int
    failed: int
    skipped: int
    deferred: int
    waiting: int
    resume_at: datetime | None
    stopped: Literal["done", "idle", "letters", "seconds", "stopped"]
    recovered: int = 0

    @classmethod
    def of(cls, report: RunReport, stopped: str) -> SendReport:
        r = report.recovered
        why = "done" if report.waiting == 0 and stopped == "idle" else stopped
        return cls(report.sent, report.failed, report.skipped, report.deferred,
                   report.waiting, _at(report.resume_at), why,  # type: ignore[arg-type]
                   r.requeued + r.resent + r.held)


@attrs.frozen
class LetterResult:
    """One letter: its address, state, the server and From that sent it, attempts, and the
    last error (why it failed, bounced or was deferred)."""

    letter_id: str
    mailing_id: str
    email: str
    state: str
    server: str | None
    from_addr: str | None
    message_id: str | None
    attempts: int
    error: str | None
    sent_at: datetime | None

    @classmethod
    def of(cls, r: LetterRecord) -> LetterResult:
        return cls(r.letter_id, r.mailing_id, r.email, r.state, r.server, r.from_addr,
                   r.message_id, r.attempts, r.last_error, _at(r.sent_at))


@attrs.frozen
class Window:
    """One quota window of a server: used, the limit (``None``: none), what is left, and
    when the next letter frees."""

    used: int
    limit: int | None
    remaining: int | None
    frees_at: datetime | None

    @classmethod
    def of(cls, w: WindowStatus) -> Window:
        return cls(w.used, w.limit, w.remaining, _at(w.frees_at))


@attrs.frozen
class ServerQuota:
    """A server's quota now: its windows, its block and its circuit breaker."""

    server: str
    priority: int
    enabled: bool
    minute: Window
    hour: Window
    day: Window
    limits: Limits
    blocked_until: datetime | None
    blocked_reason: str | None
    next_letter_at: datetime
    breaker: Literal["closed", "open", "half-open"]
    failures: int

    @classmethod
    def of(cls, server: Server, q: QuotaStatus, now: float) -> ServerQuota:
        return cls(server.name, server.priority, server.enabled, Window.of(q.minute),
                   Window.of(q.hour), Window.of(q.day), server.limits, _at(q.blocked_until),
                   q.blocked_reason, datetime.fromtimestamp(max(now, q.next_free(now)), UTC),
                   breaker_state(q.failures, q.blocked_until), q.failures)


@attrs.frozen
class WorkerStatus:
    """A running worker (or any dispatcher): where, since when, its lease, the letters it
    holds (``claimed``, and ``sending``: inside DATA) and its servers. ``alive``: ``True``
    or ``False`` on this host, ``None`` on another host with a fresh lease."""

    id: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    alive: bool | None
    claimed: int
    sending: int
    servers: tuple[str, ...]

    @classmethod
    def of(cls, w: WorkerInfo) -> WorkerStatus:
        return cls(w.id, w.host, w.pid, datetime.fromtimestamp(w.started_at, UTC),
                   datetime.fromtimestamp(w.seen_at, UTC), w.alive, w.claimed, w.sending,
                   w.servers)


@attrs.frozen
class Suppression:
    """An address never sent to: why, since when, and who put it there (manual, import,
    bounce)."""

    email: str
    reason: str
    added_at: datetime
    source: str


@attrs.frozen
class BounceFetch:
    """One read of the bounce mailbox: messages handled, bounces among them, letters
    marked, addresses suppressed, and messages set aside (unparseable within budget)."""

    read: int
    bounces: int
    marked: int
    suppressed: tuple[str, ...]
    set_aside: tuple[SetAsideMessage, ...]


class BounceTally:
    """Counts the results of a read of the bounce mailbox as they come (what
    :class:`BounceFetch` reports); nothing per message is kept but the suppressed addresses
    and the messages set aside."""

    def __init__(self) -> None:
        self.read = self.bounces = self.marked = 0
        self._suppressed: dict[str, None] = {}
        self._aside: list[SetAsideMessage] = []

    def add(self, result: Handled | SetAsideMessage) -> None:
        if isinstance(result, SetAsideMessage):
            self._aside.append(result)
            return
        self.read += 1
        self.bounces += result.report.kind == "bounce"
        self.marked += result.marked
        self._suppressed.update(dict.fromkeys(result.suppressed))

    def result(self) -> BounceFetch:
        return BounceFetch(self.read, self.bounces, self.marked, tuple(self._suppressed),
                           tuple(self._aside))


@attrs.frozen
class ParsedReport:
    """One report file parsed as the mailbox reader parses a message (its first 512 KiB,
    within the parse budget): the report, or why it was set aside."""

    path: Path
    report: BounceReport | None
    set_aside: str | None


@attrs.frozen
class SuppressImport:
    """An import into the suppression list: addresses added, rows refused."""

    added: int
    rejected: tuple[BadRow, ...]


class MailingStateError(MailfleetError):
    """The mailing's state does not allow the operation (``mailing_id``, ``state``)."""

    def __init__(self, mailing_id: str, state: str, message: str) -> None:
        self.mailing_id = mailing_id
        self.state = state
        super().__init__(message)


class SuppressedError(MailfleetError):
    """:meth:`Mailfleet.send_one` refused: ``address`` is on the suppression list."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"{address} is on the suppression list; unsuppress it to send anyway")


class ServerBusyError(MailfleetError):
    """:meth:`Mailfleet.send_one` refused: the server cannot send now; ``quota`` says why
    (a spent window, or a block) and ``quota.next_letter_at`` when it can."""

    def __init__(self, quota: ServerQuota) -> None:
        self.quota = quota
        free = quota.next_letter_at.isoformat(timespec="seconds")
        super().__init__(f"server {quota.server} cannot send now (a limit is spent or it is "
                         f"blocked) until {free}; use another server or wait")


def installed_plugins() -> list[PluginRecord]:
    """Every installed plugin (the built-in ones first): id, distribution, version, hooks."""
    return load_plugins().records()


def parse_report_files(paths: Iterable[Path]) -> Iterator[ParsedReport]:
    """Parse report files one by one as the mailbox reader does, through every installed
    plugin's parser."""
    with ParseWorker(load_plugins().parse_bounce) as worker:
        for path in paths:
            with path.open("rb") as file:
                raw = file.read(MAX_BYTES)
            try:
                report = worker.parse(raw)
            except SetAside as exc:
                yield ParsedReport(path, None, exc.reason)
            else:
                yield ParsedReport(path, report, None)


# -- events ------------------------------------------------------------------------------
class EventStream:
    """Events as an async iterator: ``async for event in stream``; ends after
    :meth:`close`. At most ``maxsize`` events wait to be read; more are counted in
    ``dropped`` (a reader that stops reading must not make memory grow)."""

    def __init__(self, owner: _EventSink, maxsize: int) -> None:
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue: asyncio.Queue[DeliveryEvent | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        self._closed = False

    def _put(self, item: DeliveryEvent | None) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            if item is None:  # make room for the end mark: the reader must stop
                self._queue.get_nowait()
                self._queue.put_nowait(None)
            else:
                self.dropped += 1

    def push(self, item: DeliveryEvent | None) -> None:
        if threading.get_ident() == self._thread:
            self._put(item)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._put, item)

    def close(self) -> None:
        """End the iteration once the events already received are read."""
        if not self._closed:
            self._closed = True
            self._owner.streams.discard(self)
            self.push(None)

    def __aiter__(self) -> AsyncIterator[DeliveryEvent]:
        return self

    async def __anext__(self) -> DeliveryEvent:
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


class _EventSink:
    """The host's ``mailfleet_event`` implementation: fans each event out to callbacks and
    streams (a failing callback is logged, the others still run)."""

    def __init__(self) -> None:
        self.callbacks: list[EventCallback] = []
        self.streams: set[EventStream] = set()

    @hookimpl
    def mailfleet_event(self, event: DeliveryEvent) -> None:
        for callback in list(self.callbacks):
            try:
                callback(event)
            except Exception:  # the host's bug must not stop sending nor the other callbacks
                log.exception("a host event callback failed on event %s", event.type)
        for stream in list(self.streams):
            stream.push(event)


class _Budget:
    """A store whose claims stop after ``letters`` letters (a step's bound); every other
    call goes to the store unchanged."""

    def __init__(self, store: Store, letters: int) -> None:
        self._store = store
        self.left = letters

    async def claim_async(self, dispatcher_id: str, server: str, limits: Limits, count: int,
                          now: float, mailing_ids: Sequence[str] | None = None, *,
                          tenant: str | None = None) -> Claim:
        if self.left <= 0:
            return Claim(reason="empty")
        want = min(count, self.left)
        self.left -= want  # reserved before the await: connections claim side by side
        claim = await self._store.claim_async(dispatcher_id, server, limits, want, now,
                                              mailing_ids, tenant=tenant)
        self.left += want - len(claim.letters)
        return claim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


# -- the application -------------------------------------------------------------------------
class Mailfleet:
    """A host application's handle on mailfleet: one fleet, its store, its events.

    Build it with :meth:`from_file` or :meth:`from_data`. ``passwords`` maps server names
    (and ``"bounces"``) to passwords handed over directly; ``secrets`` is called with such a
    name each time a password is needed (a callback into the host's secret store; ``None``
    falls back to ``passwords`` and then the config). ``on_event`` receives every delivery
    event; ``plugins`` adds the host's own hook implementations as ``(id, plugin)`` pairs.
    Close it (or use it as a context manager) to close its store.
    """

    def __init__(self, config: Config, *, passwords: Mapping[str, str | Secret] | None = None,
                 secrets: SecretSource | None = None, on_event: EventCallback | None = None,
                 plugins: Sequence[tuple[str, object]] = (), entry_points: bool = True,
                 clock: Clock | None = None) -> None:
        self._events = _EventSink()
        if on_event is not None:
            self._events.callbacks.append(on_event)
        loaded = load_plugins([*plugins, ("mailfleet-host-events", self._events)],
                              entry_points=entry_points)
        names = {s.name for s in config.servers} | {"bounces"}
        unknown = sorted(set(passwords or {}) - names)
        if unknown:
            known = ", ".join(sorted(names))
            raise ConfigError(f"passwords: no server named {', '.join(map(repr, unknown))}; "
                              f"the names are: {known}")
        self._passwords = dict(passwords or {})
        self._secrets = secrets
        hosted = {s.name for s in config.servers if secrets or s.name in self._passwords}
        # the servers resolve (and validate) with a stand-in password where the host supplies
        # it; their secret then reads from the host first, then from the config's own source
        own = {s.name: s for s in config.servers}
        standin = attrs.evolve(config, servers=tuple(
            attrs.evolve(s, password=Secret("host")) if s.name in hosted else s
            for s in config.servers))
        self.fleet = Fleet(standin, loaded)
        self.fleet.config = config
        self.fleet.servers = [
            attrs.evolve(s, secret=attrs.evolve(own[s.name].secret_ref(s.secret.where),
                                                host=self._host_secret(s.name)))
            if s.name in hosted else s for s in self.fleet.servers]
        self.config = config
        self._clock = clock
        self._store: Store | None = None
        self._dispatcher: Dispatcher | None = None
        self._worker: Worker | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, **options: Any
                  ) -> Mailfleet:
        """From a ``mailfleet.toml`` (default: ``$MAILFLEET_CONFIG``, else
        ``./mailfleet.toml``); ``options`` as for the constructor."""
        return cls(load_config(path), **options)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, source: str = "<host>",
                  **options: Any) -> Mailfleet:
        """From Python data with the keys of ``mailfleet.toml`` (``deployment``,
        ``servers``, ``bounces``, ``retry``), checked exactly as the file is; ConfigError
        names every bad key with ``source`` in front."""
        return cls(parse_config(dict(data), source), **options)

    def _host_secret(self, name: str) -> Callable[[], str | Secret | None]:
        def read() -> str | Secret | None:
            if self._secrets is not None and (found := self._secrets(name)) is not None:
                return found
            return self._passwords.get(name)
        return read

    # -- the store ----------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        """The clock given to the constructor, else the store's (a shared PostgreSQL
        store counts every quota window on the database's clock)."""
        return self._clock or self.store.clock()

    @property
    def store(self) -> Store:
        """The deployment's store (``deployment.store``), opened on first use."""
        if self._store is None:
            self._store = self.fleet.open_store()
        return self._store

    def close(self) -> None:
        """Close the store (a running send must have returned)."""
        for stream in list(self._events.streams):
            stream.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Mailfleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- events -------------------------------------------------------------------------
    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns the unsubscribe call."""
        self._events.callbacks.append(callback)
        return functools.partial(self._unsubscribe, callback)

    def _unsubscribe(self, callback: EventCallback) -> None:
        if callback in self._events.callbacks:
            self._events.callbacks.remove(callback)

    def events(self, maxsize: int = 10_000) -> EventStream:
        """An async iterator over the events from now on (create it inside the loop that
        reads it); :meth:`EventStream.close` ends it."""
        stream = EventStream(self._events, maxsize)
        self._events.streams.add(stream)
        return stream

    # -- mailings -------------------------------------------------------------------------
    def create_mailing(self, template: Template | Mapping[str, Any] | str | Path,
                       rows: Iterable[Mapping[str, Any]] | str | Path, *,
                       name: str = "", skip_bad_rows: bool = False,
                       hold_in_data: bool = False, start: bool = True,
                       encoding: str | None = None, tenant: str = "") -> Created:
        """Queue a mailing: ``template`` a :class:`~mailfleet.mailings.template.Template`, a dict
        with its keys (``subject``, ``text``, ``html``, ``sender``, ...) or a TOML file;
        ``rows`` any iterable of mappings with an ``email`` key and one key per merge field
        (read as it is consumed, inserted in batches), or a CSV / JSON-lines path.

        Every row is checked first: bad rows raise :class:`~mailfleet.mailings.mailing.BadRowsError`
        listing each (nothing queued) unless ``skip_bad_rows``. ``start=False`` leaves the
        mailing paused until :meth:`resume`; ``encoding`` is that of a CSV file (default:
        detected). ``tenant``: whose mailing it is, in a deployment that serves several
        (its letters go through that tenant's servers and the shared ones; the workers take
        turns between tenants, so no tenant's mailing holds back another's)."""
        if isinstance(template, Mapping):
            template = Template.from_dict(template)
        result = create_mailing(self.store, template, rows, name=name,
                                skip_bad_rows=skip_bad_rows, hold_in_data=hold_in_data,
                                encoding=encoding, clock=self.clock, tenant=tenant)
        if not start:
            self.store.set_mailing_state(result.id, "paused", "created paused")
        return Created.of(result)

    def mailings(self, states: Sequence[MailingState] | None = None, *,
                 tenant: str | None = None) -> list[MailingCounts]:
        """Every mailing (or those in ``states``, or of ``tenant``) with its counts."""
        return [mailing_counts(self.store, m.id)
                for m in self.store.list_mailings(list(states) if states else None)
                if tenant is None or m.tenant == tenant]

    def _mailing(self, mailing_id: str) -> str:
        found = self.store.get_mailing(mailing_id)
        if found is None:
            raise LookupError(f"no mailing {mailing_id!r}")
        return found.state

    def pause(self, mailing_id: str, reason: str = "paused by the host application") -> None:
        """Stop claiming letters of this mailing (letters in flight finish)."""
        state = self._mailing(mailing_id)
        if state not in ("active", "paused"):
            raise MailingStateError(mailing_id, state, f"mailing {mailing_id} is {state}; only "
                                    f"an active mailing can be paused")
        self.store.set_mailing_state(mailing_id, "paused", reason)
        self._emit(EventType.PAUSED, mailing_id, reason)

    def resume(self, mailing_id: str, reason: str = "resumed by the host application"
               ) -> int:
        """Resume a paused mailing; returns the letters released that were held for review
        after a crash."""
        state = self._mailing(mailing_id)
        if state not in ("active", "paused", "done"):
            raise MailingStateError(mailing_id, state, f"mailing {mailing_id} is {state}; it "
                                    f"cannot be resumed")
        released = self.store.release_held(mailing_id)
        self.store.set_mailing_state(mailing_id, "active", "")
        self._emit(EventType.RESUMED, mailing_id, reason)
        return released

    def cancel(self, mailing_id: str) -> None:
        """Cancel: the letters not yet sent are skipped."""
        self._mailing(mailing_id)
        self.store.cancel_mailing(mailing_id, self.clock.now())

    def _emit(self, kind: EventType, mailing_id: str, detail: str) -> None:
        self.fleet.plugins.emit(DeliveryEvent(kind, datetime.fromtimestamp(
            self.clock.now(), UTC), mailing_id=mailing_id, detail=detail))

    def status(self, mailing_id: str) -> MailingStatus:
        """The counts, the servers that cannot send now and why, and when sending resumes
        (the rule ``mailfleet mailing status`` shows)."""
        now = self.clock.now()
        counts = mailing_counts(self.store, mailing_id)
        seen = outlook(self.fleet, self.store, now)
        return MailingStatus(counts, seen.stopped, seen.can_send,
                             _at(resume_time(self.store, counts, seen, now)))

    def letters(self, mailing_id: str, states: Sequence[str] | None = None
                ) -> Iterator[LetterResult]:
        """Each letter of the mailing in order (or those in ``states``), read page by page."""
        self._mailing(mailing_id)
        return (LetterResult.of(r) for r in letter_pages(self.store, mailing_id, states))

    def holders(self, mailing_id: str | None = None) -> list[Holder]:
        """The dispatchers holding letters (of one mailing, or any) and when the letters are
        taken back if a dispatcher is gone (``deployment.lease_seconds``)."""
        if mailing_id is not None:
            self._mailing(mailing_id)
        return self.store.holders(mailing_id, self.clock.now(),
                                  lease=self.config.deployment.lease_seconds)

    def stopped_servers(self) -> tuple[StoppedServer, ...]:
        """The servers that cannot send now, and why (disabled, a window spent, blocked)."""
        return outlook(self.fleet, self.store, self.clock.now()).stopped

    # -- sending --------------------------------------------------------------------------
    async def send(self, mailings: Sequence[str] | None = None, *,
                   until_idle: bool = False, batch_size: int = 100,
                   on_progress: ProgressCallback | None = None,
                   on_wait: WaitCallback | None = None) -> SendReport:
        """Send the letters of ``mailings`` (default: every active one) inside the running
        event loop, until nothing waits (sleeping while quotas are spent), or with
        ``until_idle`` until nothing can go now. Cancelling it is safe: no letter stays
        claimed (the one inside DATA, if any, is in doubt: resent with the same
        Message-ID, or held, as ``deployment.in_doubt`` says).

        ``on_progress(mailing_id, letters)`` is called after each batch with the letters
        it finished; ``on_wait(report)`` before each sleep, with what was done so far, what
        waits and when sending resumes."""
        return await self._run(mailings, until_idle=until_idle, batch_size=batch_size,
                               on_progress=on_progress, on_wait=on_wait)

    def send_blocking(self, mailings: Sequence[str] | None = None, *,
                      until_idle: bool = False, batch_size: int = 100,
                      on_progress: ProgressCallback | None = None,
                      on_wait: WaitCallback | None = None) -> SendReport:
        """:meth:`send` for blocking code (it runs its own event loop)."""
        return self._blocking(self.send(mailings, until_idle=until_idle,
                                        batch_size=batch_size, on_progress=on_progress,
                                        on_wait=on_wait))

    async def step(self, mailings: Sequence[str] | None = None, *,
                   max_seconds: float | None = None, max_letters: int | None = None,
                   batch_size: int = 100, grace: float = 10.0) -> SendReport:
        """One bounded step for a job system: send what can go now, for at most
        ``max_seconds`` and at most ``max_letters`` letters, then return what happened (the
        next step goes on from there). At the time bound no new batch is claimed; letters in
        flight get ``grace`` more seconds, then the step is cancelled as :meth:`send` is."""
        if max_letters is not None and max_letters < 1:
            raise ValueError("max_letters must be at least 1")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError("max_seconds must be above 0")
        budget = None if max_letters is None else _Budget(self.store, max_letters)
        size = batch_size if max_letters is None else min(batch_size, max_letters)
        return await self._run(mailings, until_idle=True, batch_size=size, budget=budget,
                               max_seconds=max_seconds, grace=grace)

    def step_blocking(self, mailings: Sequence[str] | None = None, *,
                      max_seconds: float | None = None, max_letters: int | None = None,
                      batch_size: int = 100, grace: float = 10.0) -> SendReport:
        """:meth:`step` for blocking code (a Celery or RQ task)."""
        return self._blocking(self.step(mailings, max_seconds=max_seconds,
                                        max_letters=max_letters, batch_size=batch_size,
                                        grace=grace))

    async def work(self, *, concurrency: int | None = None, batch_size: int = 100,
                   poll_seconds: float = 5.0, grace: float = 30.0,
                   started: Callable[[str], None] | None = None) -> SendReport:
        """Run as a worker until :meth:`stop`: send every active mailing's letters, rest
        while nothing can go, wake when letters are queued (PostgreSQL notifications, else
        polling every ``poll_seconds``). Stopping lets the batches in hand finish for up to
        ``grace`` seconds and releases every other letter. ``concurrency``: connections per
        server (default: each server's ``connections``). ``started`` is called with the
        worker's id once it runs (the id :meth:`workers` lists)."""
        if self._dispatcher is not None:
            raise RuntimeError("this Mailfleet is already sending; one send at a time")
        worker = Worker(self.fleet, self.store, clock=self.clock, concurrency=concurrency,
                        batch_size=batch_size, poll_seconds=poll_seconds, grace=grace)
        self._dispatcher = worker.dispatcher
        self._worker = worker
        if started is not None:
            started(worker.id)
        try:
            report = await worker.run()
        finally:
            self._dispatcher = self._worker = None
        return SendReport.of(report, "stopped")

    def work_blocking(self, *, concurrency: int | None = None, batch_size: int = 100,
                      poll_seconds: float = 5.0, grace: float = 30.0,
                      started: Callable[[str], None] | None = None,
                      stopping: Callable[[], None] | None = None) -> SendReport:
        """:meth:`work` as the main loop of a process of its own: SIGTERM or SIGINT stops
        it as :meth:`stop` does (``stopping`` is called then); a second signal ends the
        process at once with status 128 + the signal (its letters go back to the other
        workers when its lease runs out; one inside DATA is in doubt)."""

        async def main() -> SendReport:
            loop = asyncio.get_running_loop()
            seen = 0

            def on_signal(signum: int) -> None:
                nonlocal seen
                seen += 1
                if seen > 1:
                    os._exit(128 + signum)
                if stopping is not None:
                    stopping()
                self.stop()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
            try:
                return await self.work(concurrency=concurrency, batch_size=batch_size,
                                       poll_seconds=poll_seconds, grace=grace,
                                       started=started)
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

        return self._blocking(main())

    def workers(self) -> list[WorkerStatus]:
        """The workers (and other running sends) registered in the store, oldest first."""
        now = self.clock.now()
        lease = self.config.deployment.lease_seconds
        return [WorkerStatus.of(w) for w in self.store.workers(now, lease=lease)]

    def stop(self) -> None:
        """Ask a running send or worker to return after the batches in flight."""
        if self._worker is not None:
            self._worker.stop()
        elif self._dispatcher is not None:
            self._dispatcher.stop()

    def _blocking(self, work: Coroutine[Any, Any, SendReport]) -> SendReport:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return aio.run(work)
        work.close()
        raise RuntimeError("a blocking call inside a running event loop; await send() or "
                           "step() instead")

    async def _run(self, mailings: Sequence[str] | None, *, until_idle: bool,
                   batch_size: int, budget: _Budget | None = None,
                   max_seconds: float | None = None, grace: float = 0.0,
                   on_progress: ProgressCallback | None = None,
                   on_wait: WaitCallback | None = None) -> SendReport:
        if self._dispatcher is not None:
            raise RuntimeError("this Mailfleet is already sending; one send at a time")
        for mailing_id in mailings or ():
            self._mailing(mailing_id)
        store = cast(Store, budget) if budget is not None else self.store
        dispatcher = Dispatcher(self.fleet, store, clock=self.clock, batch_size=batch_size,
                                mailings=list(mailings) if mailings else None,
                                on_progress=on_progress)
        self._dispatcher = dispatcher
        task = asyncio.ensure_future(
            dispatcher.arun(until_idle=until_idle) if until_idle or on_wait is None
            else self._waiting(dispatcher, on_wait))
        why = "idle"
        try:
            if max_seconds is None:
                report = await task
            else:
                done, _ = await asyncio.wait([task], timeout=max_seconds)
                if not done:
                    why = "seconds"
                    dispatcher.stop()
                    done, _ = await asyncio.wait([task], timeout=grace)
                    if not done:
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)
                        return self._after_cancel(why, dispatcher)
                report = task.result()
        except BaseException:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            self._dispatcher = None
        if budget is not None and budget.left <= 0 and why == "idle" and report.waiting:
            why = "letters"
        elif dispatcher._stop and why == "idle":
            why = "stopped"
        return SendReport.of(report, why)

    async def _waiting(self, dispatcher: Dispatcher, on_wait: WaitCallback) -> RunReport:
        """The dispatcher's loop (send what can go, sleep until a server frees), telling
        ``on_wait`` before each sleep."""
        total = RunReport()
        while True:
            total = total + await dispatcher.arun(until_idle=True)
            if total.waiting == 0 or total.resume_at is None or dispatcher._stop:
                return total
            on_wait(SendReport.of(total, "idle"))
            await self.clock.sleep(max(1.0, total.resume_at - self.clock.now()))

    def _after_cancel(self, why: str, dispatcher: Dispatcher) -> SendReport:
        # the cancelled dispatcher left the store's list and took its letters back
        # (Dispatcher.unregister, as its run ended)
        waiting, next_retry = self.store.waiting(dispatcher.mailings, self.clock.now())
        return SendReport.of(RunReport(waiting=waiting, resume_at=next_retry), why)

    # -- servers: checks and one-off letters ---------------------------------------------
    async def check(self, servers: Sequence[str] | None = None, *, force: bool = False
                    ) -> list[CheckResult]:
        """Connect, TLS, AUTH and a sender probe for each server (default: all), side by
        side; nothing is sent. A server the store has blocked is not contacted (a probe is
        an attempt, and some providers extend a block with every attempt) unless ``force``."""
        chosen = ([self.fleet.server(name) for name in servers] if servers is not None
                  else list(self.fleet.servers))
        now = self.clock.now()

        async def one(server: Server) -> CheckResult:
            quota = self.store.quota(server.name, server.limits, now)
            if quota.blocked_until is not None and not force:
                until = datetime.fromtimestamp(quota.blocked_until, UTC)
                return CheckResult(server.name, False, None, None, None, quota.blocked_reason,
                                   "quota", f"blocked until {until.isoformat(timespec='seconds')}"
                                   f"; not contacted before then (probing may extend a "
                                   f"provider's block); wait, or check it with force")
            return await self.fleet.check(server)

        return list(await asyncio.gather(*(one(s) for s in chosen)))

    async def send_one(self, server: str, *, to: str, subject: str, text: str,
                       html: str | None = None, from_addr: str = "", from_name: str = "",
                       count_in_quota: bool = True) -> Sent:
        """Send one letter now through ``server`` (outside any mailing). It is refused
        for a suppressed address (:class:`SuppressedError`) or a server that cannot send now
        (:class:`ServerBusyError`), and counts against the server's quota unless
        ``count_in_quota=False`` (a test letter); a refusal by the server raises its
        diagnosed SmtpError."""
        chosen = self.fleet.server(server)
        check_header("Subject", subject)
        check_header("display name", from_name)
        address = normalize_address(to)
        if self.store.is_suppressed(address):
            raise SuppressedError(address)
        if count_in_quota:
            now = self.clock.now()
            quota = self.store.quota(chosen.name, chosen.limits, now)
            if not quota.available:
                raise ServerBusyError(ServerQuota.of(chosen, quota, now))
        sent = await self.fleet.send_one(chosen, to=address, subject=subject, text=text,
                                         html=html, from_addr=from_addr, from_name=from_name)
        if count_in_quota:
            self.store.charge(chosen.name, self.clock.now())
        return sent

    # -- servers, quotas, suppression -----------------------------------------------------
    def servers(self) -> list[Server]:
        """The configured servers in priority order, with provider presets applied."""
        return list(self.fleet.servers)

    def quotas(self, *, tenant: str | None = None) -> list[ServerQuota]:
        """Each server's windows, block and circuit breaker, in priority order (with
        ``tenant``: the servers that send its mailings, its own and the shared ones)."""
        now = self.clock.now()
        return [ServerQuota.of(s, self.store.quota(s.name, s.limits, now), now)
                for s in self.fleet.servers
                if tenant is None or s.tenant is None or s.tenant == tenant]

    def blocked(self) -> list[ServerQuota]:
        """The servers blocked now (a provider's quota reply, or resting after failures)."""
        return [q for q in self.quotas() if q.blocked_until is not None]

    def unblock(self, server: str) -> str:
        """End a server's block and close its circuit breaker; returns the server's name."""
        name = self.fleet.server(server).name
        self.store.unblock_server(name)
        return name

    def suppress(self, email: str, reason: str = "added by the host application", *,
                 source: str = "host") -> str:
        """Never send to ``email`` again; returns the address as stored. ``source`` says who
        put it there (``host``, ``manual``, ``import``, ``bounce``)."""
        address = normalize_address(email).lower()
        self.store.suppress(address, reason, self.clock.now(), source=source)
        return address

    def import_suppressions(self, path: str | os.PathLike[str], reason: str = "imported", *,
                            encoding: str | None = None) -> SuppressImport:
        """Suppress the addresses of a CSV file (an ``email`` column and optionally a
        ``reason`` one; ``reason`` for rows without) or a JSON-lines file; rows that are
        not addresses are refused and listed, the others are added."""
        source = read_rows(str(path), encoding)
        email_column = column_for("email", source.columns or ("email",))
        reason_column = column_for("reason", source.columns or ())
        now = self.clock.now()
        added, bad = 0, []
        for number, row in source:
            if "__error__" in row:
                bad.append(BadRow(number, "", str(row["__error__"]), row.get("__column__")))
                continue
            raw = str(row.get(email_column or "email") or "").strip()
            try:
                address = normalize_address(raw)
            except AddressError as exc:
                bad.append(BadRow(number, raw, f"invalid address: {exc}", email_column))
                continue
            why = str(row.get(reason_column) or "").strip() if reason_column else ""
            self.store.suppress(address, why or reason, now, source="import")
            added += 1
        return SuppressImport(added, tuple(bad))

    def unsuppress(self, email: str) -> bool:
        """Send to ``email`` again; False when it was not suppressed."""
        return self.store.unsuppress(email.strip())

    def is_suppressed(self, email: str) -> bool:
        return self.store.is_suppressed(email.strip().lower())

    def suppressed(self) -> list[Suppression]:
        return [Suppression(e, r, datetime.fromtimestamp(at, UTC), s)
                for e, r, at, s in self.store.suppressed()]

    # -- bounces ----------------------------------------------------------------------------
    def mailbox(self) -> MailboxSettings:
        """The resolved bounce mailbox; ConfigError when the config has no ``bounces``."""
        bounces = self.config.bounces
        if bounces is None:
            raise ConfigError(f"{self.config.source}: no bounces section; add the bounce "
                              f"mailbox (protocol, host, login, and a password)")
        if not (self._passwords.get("bounces") or self._secrets):
            return resolve_mailbox(bounces, self.fleet.plugins)
        # the host supplies the password: resolve with a stand-in, then read it from the host
        settings = resolve_mailbox(attrs.evolve(bounces, password=Secret("host")),
                                   self.fleet.plugins)
        own = bounces.secret_ref()
        return attrs.evolve(settings, secret=SecretRef(
            own.where, own.env, own.file, own.inline, host=self._host_secret("bounces")))

    def fetch_bounces(self, on_result: Callable[[Handled | SetAsideMessage], Any] | None = None
                      ) -> BounceFetch:
        """Read the bounce mailbox once and apply every new report (blocking); raises
        MailboxError when the mailbox cannot be read."""
        settings = self.mailbox()
        assert self.config.bounces is not None
        handler = BounceHandler(self.store, self.fleet.plugins, self.config.bounces,
                                self.clock)
        tally = BounceTally()

        def count(result: Handled | SetAsideMessage) -> None:
            tally.add(result)
            if on_result is not None:
                on_result(result)

        fetch_bounces(settings, handler, count)
        return tally.result()

    def wait_for_bounces(self, seconds: float) -> None:
        """Wait up to ``seconds`` for new mail in the bounce mailbox (IMAP IDLE: returns as
        soon as a report arrives; other protocols just wait); raises MailboxError when the
        mailbox refuses the login."""
        settings = self.mailbox()
        if settings.protocol == "imap":
            idle_wait(ImapReader(settings, self.store), seconds)
        else:
            time.sleep(seconds)


__all__ = [
    "API_VERSION",
    "BadRow",
    "BadRowsError",
    "BounceFetch",
    "BounceReport",
    "BounceTally",
    "CheckResult",
    "Created",
    "EventStream",
    "Handled",
    "Holder",
    "LetterResult",
    "Mailfleet",
    "MailingCounts",
    "MailingStateError",
    "MailingStatus",
    "ParsedReport",
    "SendReport",
    "Sent",
    "ServerBusyError",
    "ServerQuota",
    "SetAsideMessage",
    "SpentWindow",
    "StoppedServer",
    "SuppressImport",
    "SuppressedError",
    "Suppression",
    "Window",
    "WorkerStatus",
]
