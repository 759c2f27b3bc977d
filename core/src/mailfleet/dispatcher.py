"""The dispatcher: claims letters under each server's quota, sends them, records the outcome.

Fill-first: the servers are used in priority order; a server's connections claim letters only
while every server before it is spent, blocked or down (servers of equal priority work side by
side). Each connection claims a batch (quota charged in the same transaction), marks it
``sending`` just before the SMTP transaction, sends it pipelined, and records every outcome in
one transaction. A provider's quota reply blocks the server and puts the letter back uncharged;
a server failure (auth, refused sender, connection) rests the server and moves on; transient
failures retry later with backoff; permanent failures fail that letter only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import attrs

from mailfleet import aio
from mailfleet.clock import Clock, SystemClock
from mailfleet.envelope import Envelope, SmtpSession
from mailfleet.errors import Classification, SmtpError, Stage
from mailfleet.events import DeliveryEvent, EventType
from mailfleet.fleet import Fleet
from mailfleet.quota import block_until_reset
from mailfleet.retry import RetryPolicy
from mailfleet.sender import SenderDecision, SenderRequest, envelope_for, verp_template
from mailfleet.servers import Server
from mailfleet.store.base import Claim, LetterRow, Outcome, Recovery, Store
from mailfleet.template import CompiledTemplate, DateCache, Template

log = logging.getLogger(__name__)


#: How long a server stays blocked after a reply that needs a person (a captcha, a disabled
#: account): until ``mailfleet servers unblock NAME``, in practice.
HELD_UNTIL_UNBLOCKED = 365 * 86_400.0


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

    def as_dict(self) -> dict[str, object]:
        return {"sent": self.sent, "failed": self.failed, "skipped": self.skipped,
                "deferred": self.deferred, "waiting": self.waiting,
                "resume_at": iso(self.resume_at)}


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


class Dispatcher:
    """Sends the queued letters of the store through the fleet.

    ``heartbeat_seconds``: how often the dispatcher renews its lease in the store while
    sending (the stores give a dispatcher 600 s before another one may recover its letters).

    :param mailings: only these mailing ids (default: every active mailing).
    :param batch_size: letters per claim and per pipelined SMTP batch on one connection.
    :param on_progress: called with ``(mailing_id, letters finished)`` after each batch.
    """

    heartbeat_seconds = 60.0

    def __init__(self, fleet: Fleet, store: Store, *, clock: Clock | None = None,
                 retry: RetryPolicy | None = None, batch_size: int = 100,
                 mailings: Sequence[str] | None = None,
                 on_progress: Callable[[str, int], None] | None = None,
                 dispatcher_id: str | None = None) -> None:
        self.fleet = fleet
        self.store = store
        self.clock = clock or SystemClock()
        self.retry = retry or fleet.config.retry
        self.batch_size = batch_size
        self.mailings = list(mailings) if mailings is not None else None
        self.on_progress = on_progress
        self.id = dispatcher_id or f"{os.getpid()}-{secrets.token_hex(4)}"
        self._started = False
        self._stop = False
        self._compiled: dict[tuple[str, str], tuple[CompiledTemplate, SenderDecision, str]] = {}
        self._server_failures: dict[str, int] = {}
        self._date = DateCache()
        self._observed = False
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
                    delay = 1.0
                if delay > 0:
                    await self.clock.sleep(delay)
                    self._emit(EventType.RESUMED, detail="a quota window reopened or a block "
                               "ended; sending goes on")
        finally:
            self.store.unregister_dispatcher(self.id)
            self._started = False

    async def arun_once(self) -> RunReport:
        recovered = Recovery()
        if not self._started:
            self.store.register_dispatcher(self.id, self.clock.now())
            recovered = self.store.recover(self.clock.now())
            self._started = True
        self._observed = self.fleet.plugins.has_event_observers()
        servers = [s for s in self.fleet.servers if s.enabled]
        run = _Run(servers)
        tasks = [self._worker(run, server) for server in servers
                 for _ in range(max(1, server.connections))]
        beat = asyncio.ensure_future(self._heartbeat())
        try:
            await asyncio.gather(*tasks)
        finally:
            beat.cancel()
        self.store.complete_finished()
        now = self.clock.now()
        waiting, next_retry = self.store.waiting(self.mailings, now)
        resume = self._resume_at(servers, waiting, next_retry, now)
        return RunReport(run.sent, run.failed, run.skipped, run.deferred, waiting, resume,
                         recovered)

    async def _heartbeat(self) -> None:
        """Renew this dispatcher's lease while letters are in flight, so a slow batch is never
        taken for abandoned by another machine's recovery (a wall-clock period: the injected
        clock may jump)."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            self.store.register_dispatcher(self.id, self.clock.now())

    # -- a pass -----------------------------------------------------------------------------
    def _resume_at(self, servers: Sequence[Server], waiting: int, next_retry: float | None,
                   now: float) -> float | None:
        if waiting == 0 or not servers:
            return None
        first = min(self.store.quota(s.name, s.limits, now).next_free(now) for s in servers)
        return max(first, next_retry or now)

    async def _worker(self, run: _Run, server: Server) -> None:
        run.workers[server.name] += 1
        session: SmtpSession | None = None
        try:
            while not self._stop and run.status[server.name] == "open":
                if not run.my_turn(server):
                    await run.wait(run.version)
                    continue
                claim = self.store.claim(self.id, server.name, server.limits, self.batch_size,
                                         self.clock.now(), self.mailings)
                self._skipped(run, claim)
                if not claim.letters:
                    if claim.skipped:
                        continue
                    if claim.reason == "spent" and run.status[server.name] == "open":
                        self._emit(EventType.QUOTA_EXHAUSTED, server=server.name,
                                   detail=f"the limit of {server.name} is spent until "
                                   f"{iso(claim.until)}")
                    if claim.reason in ("spent", "blocked"):
                        await run.close(server, claim.reason)
                    return
                if session is None:
                    try:
                        session = await self._connect(server)
                    except SmtpError as exc:
                        await self._batch_failed(run, server, claim.letters, exc)
                        return
                if not await self._send(run, server, session, claim.letters):
                    await session.close()
                    session = None
        finally:
            if session is not None:
                await session.close()
            run.workers[server.name] -= 1
            if run.workers[server.name] == 0:
                await run.close(server, "idle")

    async def _connect(self, server: Server) -> SmtpSession:
        async for attempt in self.retry.connect_retrying(self.clock.sleep):
            with attempt:
                try:
                    return await self.fleet.plugins.connect(server)
                except SmtpError as exc:
                    raise self.fleet.diagnose(server, exc) from None
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
        return found

    async def _send(self, run: _Run, server: Server, session: SmtpSession,
                    letters: Sequence[LetterRow]) -> bool:
        """Send one claimed batch; False when the session is no longer usable."""
        now = self.clock.now()
        date = self._date(now)
        envelopes: list[Envelope] = []
        decisions: list[SenderDecision] = []
        for letter in letters:
            compiled, decision, domain = self._prepared(letter.mailing_id, server)
            fields = json.loads(letter.fields)
            fields["email"] = letter.email
            lid = letter.letter_id
            data = compiled.render(to=letter.email, fields=fields, letter_id=lid,
                                   message_id=f"<{lid}@{domain}>", date=date)
            envelopes.append(Envelope(envelope_for(decision.envelope_from, lid),
                                      (letter.email,), data, lid))
            decisions.append(decision)
        self.store.mark_sending([letter.id for letter in letters], now)
        try:
            results = await self.fleet.plugins.send(
                server, session, envelopes, lambda error: self._stops_server(server, error))
        except SmtpError as exc:
            await self._batch_failed(run, server, letters, exc)
            return False
        now = self.clock.now()
        outcomes: list[Outcome] = []
        server_down = False
        for letter, decision, result in zip(letters, decisions, results, strict=True):
            if result.error is None:
                run.sent += 1
                self._server_failures.pop(letter.mailing_id, None)
                outcomes.append(Outcome(letter.id, "sent", server.name, decision.from_addr,
                                        None, None, letter.attempts + 1, charged=True))
                if self._observed:
                    self._emit(EventType.SENT, mailing_id=letter.mailing_id,
                               letter_id=letter.letter_id, recipient=letter.email,
                               server=server.name, detail=f"from {decision.from_addr}")
                continue
            error = result.error  # already diagnosed by the stop predicate, unless not attempted
            if error.diagnosis is None:
                error = self.fleet.diagnose(server, error)
            outcome, stops = self._failure(run, server, letter, error, now)
            outcomes.append(attrs.evolve(outcome, from_addr=decision.from_addr))
            if stops:
                server_down = True
                await self._server_trouble(run, server, error, [letter], now)
        self.store.finish(outcomes, now)
        self._progress(letters)
        return not server_down

    def _stops_server(self, server: Server, error: SmtpError) -> bool:
        """Whether a letter's failure means the server must not be sent more letters now."""
        kind = self.fleet.diagnose(server, error).classification
        return kind in (Classification.QUOTA, Classification.SERVER)

    def _failure(self, run: _Run, server: Server, letter: LetterRow, error: SmtpError,
                 now: float) -> tuple[Outcome, bool]:
        """The outcome of one failed letter, and whether the server must stop."""
        kind = error.classification
        text = str(error)
        if kind is Classification.PERMANENT:
            run.failed += 1
            self._emit(EventType.FAILED, mailing_id=letter.mailing_id,
                       letter_id=letter.letter_id, recipient=letter.email, server=server.name,
                       detail=text)
            return Outcome(letter.id, "failed", server.name, None, text, None,
                           letter.attempts + 1), False
        if kind is Classification.TRANSIENT:
            attempts = letter.attempts + 1
            if attempts >= self.retry.max_attempts:
                run.failed += 1
                self._emit(EventType.FAILED, mailing_id=letter.mailing_id,
                           letter_id=letter.letter_id, recipient=letter.email,
                           server=server.name, detail=f"gave up after {attempts} attempts: {text}")
                return Outcome(letter.id, "failed", server.name, None, text, None,
                               attempts), False
            run.deferred += 1
            retry_at = now + self.retry.backoff(attempts)
            self._emit(EventType.DEFERRED, mailing_id=letter.mailing_id,
                       letter_id=letter.letter_id, recipient=letter.email, server=server.name,
                       detail=f"{text}; retry at {iso(retry_at)}")
            return Outcome(letter.id, "queued", server.name, None, text, retry_at,
                           attempts), False
        # server or quota: the letter goes back untouched, the server stops
        return Outcome(letter.id, "queued", server.name, None, text, None,
                       letter.attempts), True

    async def _batch_failed(self, run: _Run, server: Server, letters: Sequence[LetterRow],
                            exc: SmtpError) -> None:
        """A session failed (connect, TLS, AUTH, or broken mid-batch): every letter of the
        batch goes back; the server stops unless the failure is transient."""
        now = self.clock.now()
        error = exc if exc.diagnosis is not None else self.fleet.diagnose(server, exc)
        if error.classification is Classification.TRANSIENT:
            outcomes = [self._failure(run, server, letter, error, now)[0] for letter in letters]
            self.store.finish(outcomes, now)
            return
        if error.classification is Classification.PERMANENT and error.stage not in (
                Stage.RCPT_TO, Stage.DATA):
            error.classification = Classification.SERVER
        self.store.finish([Outcome(letter.id, "queued", server.name, None, str(error), None,
                                   letter.attempts) for letter in letters], now)
        await self._server_trouble(run, server, error, letters, now)

    async def _server_trouble(self, run: _Run, server: Server, error: SmtpError,
                              letters: Sequence[LetterRow], now: float) -> None:
        diagnosis = error.diagnosis
        reason = diagnosis.summary if diagnosis else str(error)
        if error.classification is Classification.QUOTA:
            until = (now + diagnosis.block_seconds if diagnosis and diagnosis.block_seconds
                     else block_until_reset(server.limits, now))
            self.store.block_server(server.name, until, f"provider quota: {reason}")
            self._emit(EventType.QUOTA_EXHAUSTED, server=server.name,
                       detail=f"{server.name} says its limit is spent ({reason}); blocked "
                       f"until {iso(until)}")
            status = "blocked"
        else:
            if diagnosis and diagnosis.block_seconds:
                until = now + diagnosis.block_seconds
            elif diagnosis and diagnosis.pause_mailings:  # until a person acts and unblocks it
                until = now + HELD_UNTIL_UNBLOCKED
            else:
                until = now + self.retry.server_rest_seconds
            self.store.block_server(server.name, until, f"server failure: {reason}")
            status = "down"
            for mailing in {letter.mailing_id for letter in letters}:
                count = self._server_failures.get(mailing, 0) + 1
                self._server_failures[mailing] = count
                if count >= self.retry.max_server_failures:
                    why = (f"paused after {count} consecutive server failures; last: "
                           f"{error}")
                    self.store.set_mailing_state(mailing, "paused", why)
                    self._emit(EventType.PAUSED, mailing_id=mailing, detail=why)
        if diagnosis is not None and diagnosis.pause_mailings:
            # the verdict may be about the letters themselves (spam): the mailings that were
            # going through this server wait for a person instead of moving to other servers
            why = f"server {server.name}: {reason}"
            if diagnosis.next_step:
                why += f". Next step: {diagnosis.next_step}"
            for mailing in sorted({letter.mailing_id for letter in letters}):
                self.store.set_mailing_state(mailing, "paused", why)
                self._emit(EventType.PAUSED, mailing_id=mailing, server=server.name,
                           detail=why)
        log.warning("server %s stopped (%s): %s", server.name, status, error)
        await run.close(server, status)

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
