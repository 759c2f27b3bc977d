"""The dispatcher: claims letters under each server's quota, sends them, records the outcome.

Fill-first: the servers are used in priority order; a server's connections claim letters only
while every server before it is spent, blocked or down (servers of equal priority work side by
side), and a server that comes back from a rest takes over again. Each connection claims a
batch (quota charged in the same transaction) and sends it pipelined. Letter by letter, a
journal makes two facts durable, group-committed across connections: a letter is ``sending``
before its message is written (from then on it may be delivered: in doubt), and its outcome
as soon as its final reply arrives. So after a crash only the letters inside DATA are in
doubt, and a letter the server accepted is never sent again.

A broken connection (dropped, timed out, 421, a broken reply) is a server event: letters
already accepted keep their success, letters not attempted go back uncharged with their
attempts, the letter in DATA is in doubt (resent, or held for review: ``deployment.in_doubt``),
and the server rests behind its circuit breaker (persisted, shared by every dispatcher,
doubling with each consecutive failure). A provider's quota reply blocks the server and puts
the letter back uncharged; a refused account (auth, sender) rests the server; transient
refusals retry later with backoff; permanent refusals fail that letter only (the rule table
is :mod:`mailfleet.sending.failure`; the dispatcher applies its decisions). Every live
dispatcher takes back the letters of a dead one while it runs (its heartbeat renews its own
lease and checks the others').
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from mailfleet import aio
from mailfleet.clock import Clock, SystemClock
from mailfleet.errors import MailfleetError, SmtpError, StoreUnavailable
from mailfleet.events import DeliveryEvent, EventType
from mailfleet.mailings.template import CompiledTemplate, DateCache, Template
from mailfleet.sending import failure, identity
from mailfleet.sending.envelope import Envelope, SendResult, SmtpSession
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.retry import RetryPolicy
from mailfleet.sending.sender import SenderDecision, SenderRequest, envelope_for, verp_template
from mailfleet.sending.servers import Server
from mailfleet.store.base import Claim, LetterRow, Outcome, Recovery, Store

log = logging.getLogger(__name__)


@attrs.frozen
class RunReport:
    """What a run did, and what is left: letters waiting and when sending can resume."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    waiting: int = 0
    resume_at: float | None = None
    recovered: Recovery = attrs.field(factory=Recovery)

    def __add__(self, other: RunReport) -> RunReport:
        return RunReport(self.sent + other.sent, self.failed + other.failed,
                         self.skipped + other.skipped, self.deferred + other.deferred,
                         other.waiting, other.resume_at,
                         Recovery(self.recovered.requeued + other.recovered.requeued,
                                  self.recovered.resent + other.recovered.resent,
                                  self.recovered.held + other.recovered.held))


def iso(at: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (``None`` stays ``None``)."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


class _Run:
    """State shared by the connections of one pass."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = list(servers)
        self.status = {s.name: "open" for s in servers}
        self.workers = {s.name: 0 for s in servers}
        self.changed = asyncio.Condition()
        self.version = 0
        self.sent = self.failed = self.skipped = self.deferred = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.revivals: dict[str, asyncio.TimerHandle] = {}
        self.recovered = Recovery()
        self.errors: list[BaseException] = []

    def track(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task of this pass (the pass ends when none is left; the first
        task that fails ends it with that error)."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    def my_turn(self, server: Server) -> bool:
        return all(self.status[s.name] != "open" for s in self.servers
                   if s.priority < server.priority)

    async def close(self, server: Server, status: str) -> None:
        if self.status[server.name] == "open":
            self.status[server.name] = status
        await self.bump()

    async def bump(self) -> None:
        async with self.changed:
            self.version += 1
            self.changed.notify_all()

    async def wait(self, seen: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.version != seen)


class _Journal:
    """Group commit of per-letter facts: letters entering DATA (the session waits until that
    is durable) and outcomes (committed within ``linger`` seconds, or with the next DATA of
    any connection), one store transaction for all of them. Up to the store's
    ``journal_depth`` commits are in flight at a time (one on SQLite; on PostgreSQL the next
    is sent while the last one runs); what arrives meanwhile goes in the next one, right
    after (the event loop never waits for the store: on PostgreSQL the round trips run
    beside the SMTP sessions)."""

    def __init__(self, store: Store, clock: Clock, retry: RetryPolicy,
                 linger: float = 0.005) -> None:
        self.store = store
        self.clock = clock
        self.retry = retry
        self.linger = linger
        self._sending: list[int] = []
        self._outcomes: list[Outcome] = []
        self._settled: list[int] = []
        self._waiters: list[tuple[asyncio.Future[None], Callable[[], None]]] = []
        self._flush: asyncio.Handle | None = None
        self._soon = False
        self._depth = max(1, store.journal_depth)
        self._running: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    async def stop(self) -> None:
        await self.flush()

    async def data_starting(self, letters: Sequence[int], write: Callable[[], None]) -> None:
        """Mark ``letters`` as ``sending`` and, right after the commit, ``write`` their
        messages (no await between the two: a crash in between is as unlikely as can be)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._sending.extend(letters)
        self._waiters.append((waiter, write))
        if not self._soon:  # the next turn of the loop: every connection ready by then joins
            if self._flush is not None:
                self._flush.cancel()
            self._flush = loop.call_soon(self._start)
            self._soon = True
        await waiter

    def outcome(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.linger, self._start)

    def settle(self, letters: Sequence[int]) -> None:
        """Settle the charges of these sent letters with the next commit."""
        self._settled.extend(letters)

    def _pending(self) -> bool:
        return bool(self._sending or self._outcomes or self._settled or self._waiters)

    def _start(self) -> None:
        """Commit now, or right after a commit in flight."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._soon = False
        while len(self._running) < self._depth and self._pending():
            task = asyncio.ensure_future(self._commit(*self._take()))
            self._running.add(task)
            task.add_done_callback(self._committed)

    def _committed(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # the waiters got the error; the letters stay as they were
            log.error("the store could not record letter outcomes: %s", exc,
                      exc_info=None if isinstance(exc, MailfleetError) else exc)
            self._error = exc
        self._start()  # what arrived meanwhile

    async def flush(self) -> None:
        """Commit every entry now and wait until it is done; raises the store's error if a
        commit failed since the last flush."""
        self._start()
        while self._running:
            await asyncio.wait(set(self._running))
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _take(self) -> tuple[list[int], list[Outcome], list[int],
                             list[tuple[asyncio.Future[None], Callable[[], None]]]]:
        taken = self._sending, self._outcomes, self._settled, self._waiters
        self._sending, self._outcomes, self._settled, self._waiters = [], [], [], []
        return taken

    async def _commit(self, sending: list[int], outcomes: list[Outcome], settled: list[int],
                      waiters: list[tuple[asyncio.Future[None], Callable[[], None]]]) -> None:
        """One store transaction for these entries; the waiting messages are written the
        moment the commit is sure (see :meth:`Store.record`)."""

        def write_all() -> None:
            for waiter, write in waiters:
                if waiter.done():  # its session was cancelled meanwhile
                    continue
                try:
                    write()
                except Exception as exc:  # a closed session: the waiting client sees why
                    waiter.set_exception(exc)
                else:
                    waiter.set_result(None)

        async def record() -> None:
            await self.store.record_async(sending, outcomes, self.clock.now(),
                                          settled=settled, committed=write_all)

        try:
            try:
                await record()
            except StoreUnavailable as exc:
                # again, for a while: every part of a commit is idempotent (one whose reply
                # was lost may go twice)
                what = "the store could not record letter outcomes"
                log.warning("%s: %s; trying again", what, exc)
                async for attempt in self.retry.store_retrying(asyncio.sleep, what):
                    with attempt:
                        await record()
        except BaseException as exc:
            for waiter, _ in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise


class _Batch:
    """One claimed batch on one connection: the session's observer, turning each letter's
    DATA and reply into journal entries as they happen."""

    def __init__(self, dispatcher: Dispatcher, run: _Run, server: Server,
                 letters: Sequence[LetterRow], decisions: Sequence[SenderDecision]) -> None:
        self.dispatcher = dispatcher
        self.run = run
        self.server = server
        self.by_id = {letter.letter_id: (letter, decision)
                      for letter, decision in zip(letters, decisions, strict=True)}
        self.started: set[str] = set()
        self.done: set[str] = set()
        self.trouble: SmtpError | None = None  # a refusal that stops the server
        self.broken: SmtpError | None = None  # the session broke (421 before a letter)
        self.unattempted: set[str] = set()
        self.accepted: list[int] = []  # letters the server took; charges settled at the end

    async def data_starting(self, envelopes: Sequence[Envelope],
                            write: Callable[[], None]) -> None:
        ids = []
        for envelope in envelopes:
            found = self.by_id.get(envelope.letter_id or "")
            if found is not None:  # else not a letter of this batch (a plugin's own)
                self.started.add(found[0].letter_id)
                ids.append(found[0].id)
        if not ids:
            write()
            return
        await self.dispatcher._journal_for().data_starting(ids, write)

    def replied(self, result: SendResult) -> None:
        found = self.by_id.get(result.envelope.letter_id or "")
        if found is None or found[0].letter_id in self.done:
            return
        letter, decision = found
        if not result.attempted:  # refused before it was taken (421): not a letter failure
            self.unattempted.add(letter.letter_id)
            self.broken = self.broken or result.error
            return
        self.done.add(letter.letter_id)
        self.dispatcher._journal_for().outcome(self.dispatcher._outcome(
            self, letter, decision, result))

class Dispatcher:
    """Sends the queued letters of the store through the fleet.

    ``heartbeat_seconds``: how often the dispatcher renews its lease in the store and takes
    back the letters of dispatchers that are gone (a third of ``deployment.lease_seconds``).

    :param mailings: only these mailing ids (default: every active mailing).
    :param batch_size: letters per claim and per pipelined SMTP batch on one connection.
    :param on_progress: called with ``(mailing_id, letters finished)`` after each batch.
    :param connections: connections per server at once (default: each server's
        ``connections``).
    """

    def __init__(self, fleet: Fleet, store: Store, *, clock: Clock | None = None,
                 retry: RetryPolicy | None = None, batch_size: int = 100,
                 mailings: Sequence[str] | None = None,
                 on_progress: Callable[[str, int], None] | None = None,
                 dispatcher_id: str | None = None, connections: int | None = None) -> None:
        self.fleet = fleet
        self.store = store
        self.clock = clock or SystemClock()
        self.retry = retry or fleet.config.retry
        self.batch_size = batch_size
        self.mailings = list(mailings) if mailings is not None else None
        self.on_progress = on_progress
        self.connections = connections
        self.id = dispatcher_id or f"{os.getpid()}-{secrets.token_hex(4)}"
        deployment = fleet.config.deployment
        self.lease_seconds = deployment.lease_seconds
        self.hold_in_doubt = deployment.in_doubt == "hold"
        self.heartbeat_seconds = max(0.2, self.lease_seconds / 3)
        self._registered = False
        self._stop = False
        self._compiled: dict[tuple[str, str], tuple[CompiledTemplate, SenderDecision, str]] = {}
        self._holds: dict[str, bool] = {}
        self._server_failures: dict[str, int] = {}
        self._date = DateCache()
        self._observed = False
        self._journal: _Journal | None = None
        bounces = fleet.config.bounces
        self._verp = (verp_template(bounces.login) if bounces and bounces.verp and bounces.login
                      else None)

    # -- public API -----------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> RunReport:
        """Send until every mailing is finished (sleeping while quotas are spent), or with
        ``until_idle`` until nothing can be sent now. Blocking."""
        return aio.run(self.arun(until_idle=until_idle))

    def run_once(self) -> RunReport:
        """One pass: send what can be sent now, return when idle. Blocking."""
        return aio.run(self.arun_once())

    def stop(self) -> None:
        """Ask :meth:`arun` to return after the current pass."""
        self._stop = True

    async def arun(self, *, until_idle: bool = False) -> RunReport:
        total = RunReport()
        try:
            while True:
                report = await self.arun_once()
                total = total + report
                if (report.waiting == 0 or until_idle or report.resume_at is None
                        or self._stop):
                    return total
                delay = report.resume_at - self.clock.now()
                if delay <= 0 and report.sent == 0 and report.failed == 0:
                    delay = min(1.0, self.heartbeat_seconds)
                if delay > 0:
                    await self.rest(delay)
                    self._emit(EventType.RESUMED, detail="a quota window reopened or a block "
                               "ended; sending goes on")
        finally:
            self.unregister()

    def unregister(self) -> None:
        """Leave the store's list of dispatchers and take back at once the letters this
        dispatcher still holds (after a cancelled pass)."""
        if self._registered:  # until both are done (a store that failed between: again)
            self.store.unregister_dispatcher(self.id)
            self._recover(None)
            self._registered = False

    async def rest(self, delay: float, wake: asyncio.Event | None = None) -> None:
        """Sleep ``delay`` seconds of the clock, renewing the lease and recovering others'
        letters meanwhile (a sleeping dispatcher is alive too); return early when ``wake``
        is set, or when the heartbeat took letters back (they can go now)."""
        wake = wake or asyncio.Event()
        beat = asyncio.ensure_future(self._heartbeat(None, wake))
        sleep = asyncio.ensure_future(self.clock.sleep(delay))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([sleep, woken, beat], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (beat, sleep, woken):
                task.cancel()
            await asyncio.gather(beat, sleep, woken, return_exceptions=True)

    async def arun_once(self) -> RunReport:
        now = self.clock.now()
        servers = [s for s in self.fleet.servers if s.enabled]
        if not self._registered:
            self.store.register_dispatcher(self.id, now, [s.name for s in servers])
            self._registered = True
        self._observed = self.fleet.plugins.has_event_observers()
        run = _Run(servers)
        self._recover(run)
        self._journal = _Journal(self.store, self.clock, self.retry)
        for server in servers:
            self._spawn(run, server)
        beat = asyncio.ensure_future(self._heartbeat(run))
        try:
            while run.tasks and not run.errors:
                await asyncio.wait(list(run.tasks), return_when=asyncio.FIRST_COMPLETED)
            if run.errors:
                raise run.errors[0]
        finally:
            beat.cancel()
            for handle in run.revivals.values():
                handle.cancel()
            for task in run.tasks:
                task.cancel()
            await self._journal.stop()
        self.store.complete_finished()
        now = self.clock.now()
        waiting, next_retry = self.store.waiting(self.mailings, now)
        resume = self._resume_at(servers, waiting, next_retry, now)
        return RunReport(run.sent, run.failed, run.skipped, run.deferred, waiting, resume,
                         run.recovered)

    def _journal_for(self) -> _Journal:
        assert self._journal is not None
        return self._journal

    def _spawn(self, run: _Run, server: Server) -> None:
        run.status[server.name] = "open"
        for _ in range(max(1, self.connections or server.connections)):
            run.track(self._worker(run, server))

    def _revive_at(self, run: _Run, server: Server, until: float) -> None:
        """Bring ``server`` back into this pass when its rest ends (fill-first then hands
        the letters back to it)."""
        if server.name in run.revivals or until - self.clock.now() > 3600:
            return

        def revive() -> None:
            run.revivals.pop(server.name, None)
            if run.tasks and run.status[server.name] in ("down", "blocked") and not self._stop:
                self._spawn(run, server)
                run.track(run.bump())

        delay = max(0.0, until - self.clock.now()) + 0.01  # timers may fire a little early
        run.revivals[server.name] = asyncio.get_running_loop().call_later(delay, revive)

    def _recover(self, run: _Run | None) -> Recovery:
        return self._recovered(run, self.store.recover(
            self.clock.now(), lease=self.lease_seconds, hold_in_doubt=self.hold_in_doubt))

    def _recovered(self, run: _Run | None, found: Recovery) -> Recovery:
        if found.requeued or found.resent or found.held:
            self._emit(EventType.RECOVERED, detail=(
                f"took back the letters of a stopped dispatcher: {found.requeued} queued "
                f"again, {found.resent} in doubt resent, {found.held} in doubt held"))
            if run is not None:
                r = run.recovered
                run.recovered = Recovery(r.requeued + found.requeued, r.resent + found.resent,
                                         r.held + found.held)
        return found

    async def _heartbeat(self, run: _Run | None, wake: asyncio.Event | None = None) -> None:
        """Renew this dispatcher's lease and take back the letters of dispatchers that are
        gone, every ``heartbeat_seconds`` (a wall-clock period: the injected clock may
        jump). Letters taken back mid-pass wake the connections that went idle; while
        resting they set ``wake``."""
        servers = [s.name for s in self.fleet.servers if s.enabled]
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                # on the event loop, beside the claims (never blocking the loop on a lock
                # that one of this dispatcher's own claims holds)
                await self.store.register_dispatcher_async(self.id, self.clock.now(), servers)
                self._registered = True
                found = self._recovered(run, await self.store.recover_async(
                    self.clock.now(), lease=self.lease_seconds,
                    hold_in_doubt=self.hold_in_doubt))
            except StoreUnavailable as exc:  # a store hiccup: the next beat tries again
                log.warning("the dispatcher's heartbeat failed: %s", exc)
                continue
            except Exception:
                log.exception("the dispatcher's heartbeat failed")
                continue
            if wake is not None and (found.requeued or found.resent):
                wake.set()
            if run is not None and (found.requeued or found.resent):
                for server in run.servers:
                    if run.status[server.name] == "idle" and run.workers[server.name] == 0:
                        self._spawn(run, server)
                await run.bump()

    # -- a pass -----------------------------------------------------------------------------
    def _resume_at(self, servers: Sequence[Server], waiting: int, next_retry: float | None,
                   now: float) -> float | None:
        if waiting == 0 or not servers:
            return None
        first = min(self.store.quota(s.name, s.limits, now).next_free(now) for s in servers)
        return max(first, next_retry or now)

    async def _worker(self, run: _Run, server: Server) -> None:
        """One connection's loop: claim a batch, send it, again. While a full batch goes
        out, the next one is claimed beside it (on PostgreSQL a claim is a few round trips,
        and connections that finish together would otherwise queue for their claims)."""
        run.workers[server.name] += 1
        session: SmtpSession | None = None
        healthy = False
        ahead: asyncio.Task[Claim] | None = None
        try:
            # a batch claimed ahead is charged to this server: it goes out even when
            # another connection has since found the limit spent
            while not self._stop and (run.status[server.name] == "open" or (
                    ahead is not None and run.status[server.name] == "spent")):
                if ahead is None and not run.my_turn(server):
                    await run.wait(run.version)
                    continue
                claim = await (ahead if ahead is not None else self._claim(server))
                ahead = None
                self._skipped(run, claim)
                if not claim.letters:
                    if claim.skipped:
                        continue
                    if claim.reason == "spent" and run.status[server.name] == "open":
                        self._emit(EventType.QUOTA_EXHAUSTED, server=server.name,
                                   detail=f"the limit of {server.name} is spent until "
                                   f"{iso(claim.until)}")
                    if claim.reason in ("spent", "blocked"):
                        if claim.reason == "blocked" and claim.until is not None:
                            self._revive_at(run, server, claim.until)
                        await run.close(server, claim.reason)
                    return
                if session is None:
                    try:
                        session = await self._connect(server)
                    except SmtpError as exc:
                        await self._batch_failed(run, server, claim.letters, exc)
                        return
                if (len(claim.letters) >= self.batch_size and not self._stop
                        and run.status[server.name] == "open"):
                    ahead = asyncio.ensure_future(self._claim(server))
                sent, usable = await self._send(run, server, session, claim.letters)
                if sent and not healthy:
                    healthy = True
                    self.store.server_recovered(server.name)  # the breaker closes again
                if not usable:
                    await session.close()
                    session = None
        finally:
            if ahead is not None:
                await self._give_back(run, server, ahead)
            if session is not None:
                await session.close()
            run.workers[server.name] -= 1
            if run.workers[server.name] == 0:
                await run.close(server, "idle")

    def _claim(self, server: Server) -> Coroutine[Any, Any, Claim]:
        return self.store.claim_async(self.id, server.name, server.limits, self.batch_size,
                                      self.clock.now(), self.mailings, tenant=server.tenant)

    async def _give_back(self, run: _Run, server: Server, ahead: asyncio.Task[Claim]) -> None:
        """A batch claimed ahead that will not be sent here goes back to the queue,
        uncharged. A claim still running when the dispatcher is cancelled is cut short:
        whatever it took comes back with this dispatcher's recovery."""
        current = asyncio.current_task()
        cancelled = current is not None and current.cancelling() > 0
        if not ahead.done():
            if cancelled:
                ahead.cancel()
                return
            await asyncio.wait([ahead])
        if ahead.cancelled() or ahead.exception() is not None:
            return  # nothing was taken
        claim = ahead.result()
        self._skipped(run, claim)
        journal = self._journal_for()
        for letter in claim.letters:
            journal.outcome(self._not_attempted(run, server, letter, None))
        if not cancelled:  # else the dispatcher's last flush commits them
            await journal.flush()

    async def _connect(self, server: Server) -> SmtpSession:
        async for attempt in self.retry.connect_retrying(self.clock.sleep):
            with attempt:
                return await self.fleet.connect(server)
        raise AssertionError("unreachable")  # pragma: no cover

    def _skipped(self, run: _Run, claim: Claim) -> None:
        for letter in claim.skipped:
            run.skipped += 1
            self._emit(EventType.SKIPPED, mailing_id=letter.mailing_id,
                       letter_id=letter.letter_id, recipient=letter.email,
                       detail="the recipient is on the suppression list")

    def _prepared(self, mailing_id: str, server: Server
                  ) -> tuple[CompiledTemplate, SenderDecision, str]:
        key = (mailing_id, server.name)
        found = self._compiled.get(key)
        if found is None:
            record = self.store.get_mailing(mailing_id)
            if record is None:
                raise LookupError(f"mailing {mailing_id} is gone")
            template = Template.from_dict(record.template)
            decision = self.fleet.plugins.sender_policy(
                server, SenderRequest(template.sender, template.sender_name, self._verp))
            compiled = CompiledTemplate(template, from_addr=decision.from_addr,
                                        from_name=decision.from_name)
            found = (compiled, decision, record.message_id_domain)
            self._compiled[key] = found
            self._holds[mailing_id] = record.hold_in_data
        return found

    async def _send(self, run: _Run, server: Server, session: SmtpSession,
                    letters: Sequence[LetterRow]) -> tuple[int, bool]:
        """Send one claimed batch; returns the letters accepted and whether the session is
        still usable."""
        now = self.clock.now()
        date = self._date(now)
        envelopes: list[Envelope] = []
        decisions: list[SenderDecision] = []
        for letter in letters:
            compiled, decision, domain = self._prepared(letter.mailing_id, server)
            fields = json.loads(letter.fields)
            fields["email"] = letter.email
            lid = letter.letter_id
            data, ready = compiled.render_wire(
                to=letter.email, fields=fields, letter_id=lid,
                message_id=identity.message_id(lid, domain), date=date)
            envelopes.append(Envelope(envelope_for(decision.envelope_from, lid),
                                      (letter.email,), data, lid, ready))
            decisions.append(decision)
        batch = _Batch(self, run, server, letters, decisions)
        journal = self._journal_for()
        observed = hasattr(session, "observer")
        if observed:
            session.observer = batch  # type: ignore[attr-defined]
        else:  # a session that cannot tell letter by letter: the whole batch is in doubt
            await journal.flush()
            await self.store.record_async([letter.id for letter in letters], (), now)
            batch.started.update(letter.letter_id for letter in letters)
        broken: SmtpError | None = None
        results: dict[str, SendResult] = {}
        try:
            returned = await self.fleet.send(server, session, envelopes, failure.stops_server)
            results = {r.envelope.letter_id or "": r for r in returned}
        except SmtpError as exc:
            broken = exc
        finally:
            if observed:
                session.observer = None  # type: ignore[attr-defined]
        now = self.clock.now()
        for letter, decision in zip(letters, decisions, strict=True):
            lid = letter.letter_id
            if lid in batch.done:
                continue
            result = results.get(lid)
            if result is not None and result.error is not None and (
                    result.in_doubt or not result.attempted):
                broken = broken or result.error  # the client says the session broke
            if observed:
                in_doubt = lid in batch.started and lid not in batch.unattempted
            else:
                in_doubt = result is None or result.in_doubt
            if in_doubt:
                broken = broken or batch.broken or self.fleet.ended_in_data(server)
                journal.outcome(self._in_doubt(run, server, letter, decision, result, now))
            elif observed or result is None or not result.attempted:
                journal.outcome(self._not_attempted(run, server, letter, result))
            else:  # an unobserved session's result
                journal.outcome(self._outcome(batch, letter, decision, result))
        broken = broken or batch.broken
        journal.settle(batch.accepted)  # a sent letter is never claimed again: no hurry
        await journal.flush()
        self._progress(letters)
        if broken is not None:
            await self._server_trouble(run, server, broken, letters, now, broken=True)
            return len(batch.accepted), False
        if batch.trouble is not None:
            await self._server_trouble(run, server, batch.trouble, letters, now)
            return len(batch.accepted), False
        return len(batch.accepted), True

    def _outcome(self, batch: _Batch, letter: LetterRow, decision: SenderDecision,
                 result: SendResult) -> Outcome:
        """The outcome of a letter the server answered."""
        run, server = batch.run, batch.server
        if result.error is None:
            run.sent += 1
            batch.accepted.append(letter.id)
            self._server_failures.pop(letter.mailing_id, None)
            if self._observed:
                self._emit(EventType.SENT, mailing_id=letter.mailing_id,
                           letter_id=letter.letter_id, recipient=letter.email,
                           server=server.name, detail=f"from {decision.from_addr}")
            return Outcome(letter.id, "sent", server.name, decision.from_addr, None, None,
                           letter.attempts + 1, charged=True, settle=False)
        decided = failure.refused(result.error, letter.attempts, self.retry, self.clock.now())
        if decided.stops_server and batch.trouble is None:
            batch.trouble = result.error
        return self._apply(run, server, letter, decided, decision.from_addr)

    def _not_attempted(self, run: _Run, server: Server, letter: LetterRow,
                       result: SendResult | None) -> Outcome:
        """A letter the server never received (see :func:`failure.not_attempted`)."""
        error = result.error if result is not None else None
        return self._apply(run, server, letter, failure.not_attempted(error, letter.attempts),
                           None)

    def _in_doubt(self, run: _Run, server: Server, letter: LetterRow,
                  decision: SenderDecision, result: SendResult | None, now: float) -> Outcome:
        """A letter whose message went without a final reply (see :func:`failure.in_doubt`)."""
        hold = self.hold_in_doubt or self._holds.get(letter.mailing_id, False)
        decided = failure.in_doubt(result.error if result is not None else None,
                                   letter.attempts, self.retry, hold=hold)
        return self._apply(run, server, letter, decided, decision.from_addr)

    def _apply(self, run: _Run, server: Server, letter: LetterRow,
               decided: failure.LetterDecision, from_addr: str | None) -> Outcome:
        """A letter's decision applied: the run's counts and its event; returns the outcome
        to record."""
        if decided.state == "failed":
            run.failed += 1
        elif decided.deferred:
            run.deferred += 1
        if decided.event is not None:
            detail = decided.detail
            if decided.not_before is not None:
                detail += f"; retry at {iso(decided.not_before)}"
            self._emit(decided.event, mailing_id=letter.mailing_id, letter_id=letter.letter_id,
                       recipient=letter.email, server=server.name, detail=detail)
        return Outcome(letter.id, decided.state, server.name, from_addr, decided.text,
                       decided.not_before, decided.attempts, charged=decided.charged)

    async def _batch_failed(self, run: _Run, server: Server, letters: Sequence[LetterRow],
                            exc: SmtpError) -> None:
        """No session could be opened (connect, TLS, AUTH, a broken greeting): the letters
        were never attempted and go back uncharged with their attempts; the server rests."""
        now = self.clock.now()
        journal = self._journal_for()
        for letter in letters:  # the journal's commit never stops the loop (see record_async)
            journal.outcome(self._apply(run, server, letter,
                                        failure.not_connected(exc, letter.attempts), None))
        await journal.flush()
        await self._server_trouble(run, server, exc, letters, now,
                                   broken=failure.connection_broken(exc))

    async def _server_trouble(self, run: _Run, server: Server, error: SmtpError,
                              letters: Sequence[LetterRow], now: float, *,
                              broken: bool = False) -> None:
        """The server stopped on ``error``: block or rest it, pause mailings as
        :func:`failure.server_stopped` decides, and close it in this pass."""
        decided = failure.server_stopped(error, server.name, server.limits, now, broken=broken)
        if decided.blocked_until is not None:
            until = decided.blocked_until
            self.store.block_server(server.name, until, decided.note)
            self._emit(EventType.QUOTA_EXHAUSTED, server=server.name,
                       detail=f"{server.name} says its limit is spent ({decided.reason}); "
                       f"blocked until {iso(until)}")
        else:
            failures, until = self.store.server_failed(
                server.name, now, decided.note, lambda n: decided.rest_after(n, self.retry))
            self._emit(EventType.SERVER_DOWN, server=server.name,
                       detail=f"{server.name} rests until {iso(until)} after {failures} "
                       f"consecutive failure(s): {decided.reason}")
            if decided.revive:
                self._revive_at(run, server, until)
            if decided.counts_for_mailings:
                for mailing in {letter.mailing_id for letter in letters}:
                    count = self._server_failures.get(mailing, 0) + 1
                    self._server_failures[mailing] = count
                    why = failure.mailing_pause(count, error, self.retry)
                    if why is not None:
                        self.store.set_mailing_state(mailing, "paused", why)
                        self._emit(EventType.PAUSED, mailing_id=mailing, detail=why)
        if decided.pause_mailings is not None:
            for mailing in sorted({letter.mailing_id for letter in letters}):
                self.store.set_mailing_state(mailing, "paused", decided.pause_mailings)
                self._emit(EventType.PAUSED, mailing_id=mailing, server=server.name,
                           detail=decided.pause_mailings)
        log.warning("server %s stopped (%s): %s", server.name, decided.status, error)
        await run.close(server, decided.status)

    # -- events -----------------------------------------------------------------------------
    def _progress(self, letters: Sequence[LetterRow]) -> None:
        if self.on_progress is None:
            return
        counts: dict[str, int] = {}
        for letter in letters:
            counts[letter.mailing_id] = counts.get(letter.mailing_id, 0) + 1
        for mailing, count in counts.items():
            self.on_progress(mailing, count)

    def _emit(self, type: EventType, *, mailing_id: str | None = None,
              letter_id: str | None = None, recipient: str | None = None,
              server: str | None = None, detail: str = "") -> None:
        if not self._observed:
            return
        self.fleet.plugins.emit(DeliveryEvent(
            type, datetime.fromtimestamp(self.clock.now(), UTC), mailing_id, letter_id,
            recipient, server, detail))
