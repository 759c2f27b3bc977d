"""The library entry point: a configured fleet of servers and its plugins.

Host applications build a :class:`Fleet` from a config file (or a parsed :class:`Config`)
and use it to check servers and send; the mailing engine builds on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import attrs

from mailfleet.addresses import normalize_address
from mailfleet.config import Config, load_config
from mailfleet.errors import ConfigError, SmtpError, Stage
from mailfleet.mailings.message import build_letter
from mailfleet.plugins.manager import Plugins, load_plugins
from mailfleet.sending.envelope import Envelope, SendObserver, SendResult, SmtpSession
from mailfleet.sending.sender import SenderDecision, SenderRequest
from mailfleet.sending.servers import Server, resolve_servers
from mailfleet.store import open_store
from mailfleet.store.base import Store


@attrs.frozen
class CheckResult:
    """The outcome of ``servers check`` for one server (``None`` where not applicable)."""

    name: str
    ok: bool
    stage: str | None = None
    code: int | None = None
    enhanced_status: str | None = None
    reply: str | None = None
    classification: str | None = None
    diagnosis: str | None = None

    @classmethod
    def failed(cls, name: str, error: SmtpError) -> CheckResult:
        diagnosis = None
        if error.diagnosis is not None:
            diagnosis = error.diagnosis.summary
            if error.diagnosis.next_step:
                diagnosis += f". Next step: {error.diagnosis.next_step}"
        return cls(name, False, error.stage.value, error.code, error.enhanced_status,
                   error.reply, error.classification.value, diagnosis)


@attrs.frozen
class Sent:
    """One letter accepted by a server."""

    message_id: str
    server: str
    sender: SenderDecision


class Fleet:
    """The configured servers, resolved through the installed provider plugins.

    Its transport methods (:meth:`connect`, :meth:`send`, :meth:`check`, :meth:`send_one`)
    diagnose every failure once, where it comes back: what they return or raise carries its
    diagnosis, and nothing downstream diagnoses again."""

    def __init__(self, config: Config, plugins: Plugins | None = None) -> None:
        self.config = config
        self.plugins = plugins or load_plugins()
        self.servers = resolve_servers(config, self.plugins)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None,
                  plugins: Plugins | None = None) -> Fleet:
        return cls(load_config(path), plugins)

    @property
    def locale(self) -> str:
        return self.config.deployment.locale

    @property
    def store_location(self) -> str:
        """``deployment.store``; a relative path is taken from the config file's directory."""
        return self.config.store_location

    def open_store(self) -> Store:
        """The store of this deployment (SQLite file or database URL)."""
        return open_store(self.store_location)

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        known = ", ".join(s.name for s in self.servers) or "none configured"
        raise ConfigError(f"no server named {name!r}; configured servers: {known}")

    def diagnose(self, server: Server, error: SmtpError) -> SmtpError:
        """``error`` with its provider's diagnosis (a new, immutable error)."""
        return self.plugins.diagnose(server, error, self.locale)

    async def connect(self, server: Server) -> SmtpSession:
        """Open a session on ``server``; a failure is raised diagnosed."""
        try:
            return await self.plugins.connect(server)
        except SmtpError as exc:
            raise self.diagnose(server, exc) from None

    async def send(self, server: Server, session: SmtpSession, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None = None) -> list[SendResult]:
        """Send ``envelopes`` on ``session`` (see :meth:`SmtpSession.send`), every failure
        diagnosed once: in the results, in what the session's observer is told, in what
        ``stop`` is asked about, and when the session raises."""
        diagnosed = _Diagnosed(self, server)
        observer: SendObserver | None = getattr(session, "observer", None)
        if observer is not None:
            session.observer = _DiagnosingObserver(observer, diagnosed)  # type: ignore[attr-defined]
        try:
            results = await self.plugins.send(
                server, session, envelopes,
                None if stop is None else lambda error: stop(diagnosed.error(error)))
        except SmtpError as exc:
            raise diagnosed.error(exc) from None
        finally:
            if observer is not None:
                session.observer = observer  # type: ignore[attr-defined]
        return [diagnosed.result(result) for result in results]

    def ended_in_data(self, server: Server) -> SmtpError:
        """The diagnosed failure of a session that ended inside DATA without saying why."""
        return self.diagnose(server, SmtpError(Stage.DATA, "the session ended inside DATA",
                                               server=server.name))

    async def check(self, server: Server) -> CheckResult:
        """Connect, TLS, AUTH and a sender probe (MAIL FROM then RSET); nothing is sent."""
        try:
            session = await self.connect(server)
        except SmtpError as exc:
            return CheckResult.failed(server.name, exc)
        try:
            decision = self.plugins.sender_policy(server, SenderRequest(server.sender))
            await session.probe_sender(decision.envelope_from)
        except SmtpError as exc:
            return CheckResult.failed(server.name, self.diagnose(server, exc))
        finally:
            await session.close()
        return CheckResult(server.name, True)

    async def send_one(self, server: Server, *, to: str, subject: str, text: str,
                       html: str | None = None, from_addr: str = "",
                       from_name: str = "") -> Sent:
        """Send one letter now through ``server``; raises a diagnosed SmtpError on failure."""
        decision = self.plugins.sender_policy(server, SenderRequest(from_addr, from_name))
        letter = build_letter(from_addr=decision.from_addr, from_name=decision.from_name,
                              to=to, subject=subject, text=text, html=html)
        envelope = Envelope(decision.envelope_from, (normalize_address(to),), letter.data)
        session = await self.connect(server)
        try:
            [result] = await self.send(server, session, [envelope])
        finally:
            await session.close()
        if result.error is not None:
            raise result.error
        return Sent(letter.message_id, server.name, decision)


class _Diagnosed:
    """The failures of one send on one server, each diagnosed once: the session shares one
    failure among the letters it did not attempt (as copies), and tells it to the observer,
    to ``stop`` and in its results."""

    def __init__(self, fleet: Fleet, server: Server) -> None:
        self.fleet = fleet
        self.server = server
        self._seen: dict[tuple[object, ...], SmtpError] = {}

    def error(self, error: SmtpError) -> SmtpError:
        if error.diagnosis is not None:  # a plugin's own session diagnosed it
            return error
        key = (error.stage, error.code, error.enhanced_status, error.reply,
               error.classification, error.server, error.recipient)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = self.fleet.diagnose(self.server, error)
        return found

    def result(self, result: SendResult) -> SendResult:
        if result.error is None and not result.refused:
            return result
        return attrs.evolve(
            result, error=None if result.error is None else self.error(result.error),
            refused={rcpt: self.error(error) for rcpt, error in result.refused.items()})


@attrs.frozen
class _DiagnosingObserver:
    """Tells the session's observer each letter's result diagnosed."""

    observer: SendObserver
    diagnosed: _Diagnosed

    async def data_starting(self, envelopes: Sequence[Envelope],
                            write: Callable[[], None]) -> None:
        await self.observer.data_starting(envelopes, write)

    def replied(self, result: SendResult) -> None:
        self.observer.replied(self.diagnosed.result(result))
