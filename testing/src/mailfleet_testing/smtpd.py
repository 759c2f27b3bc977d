"""``FakeSMTP``: a scriptable SMTP "provider" built on aiosmtpd, running in-process threads.

Two listeners on 127.0.0.1 share one handler: ``port`` (plain, STARTTLS offered unless
``starttls=False``) and ``tls_port`` (implicit TLS / SMTPS). AUTH PLAIN, LOGIN and XOAUTH2 are
checked against ``users`` / ``tokens``; PIPELINING and ENHANCEDSTATUSCODES are advertised,
and CHUNKING (RFC 3030 ``BDAT``, which aiosmtpd lacks) when ``chunking`` is set.
Replies can be scripted per stage with :meth:`FakeSMTP.add_rule`; a ``421`` reply closes the
connection afterwards, as real servers do.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email
import email.message
import email.policy
import enum
import json
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from mailfleet_testing._util import LOCALHOST
from mailfleet_testing.certs import CertBundle, TLSCerts

__all__ = ["FakeSMTP", "HostileSMTP", "ReceivedMessage", "Rule", "SMTPEvent", "Stage"]


class Stage(enum.StrEnum):
    """SMTP stages a rule can hook."""

    CONNECT = "CONNECT"  # the greeting; match= is tried against the peer "ip:port"
    EHLO = "EHLO"  # EHLO/HELO; match= on the client's hostname
    AUTH = "AUTH"  # after credentials were read; match= on the login (user name)
    MAIL = "MAIL"  # match= on the sender address
    RCPT = "RCPT"  # match= on the recipient address
    DATA = "DATA"  # the final reply after the message; match= on the message (decoded latin-1)


@dataclass
class Rule:
    """A scripted reply at ``stage`` when ``match`` (regex search) matches, ``times`` times."""

    stage: Stage
    reply: str
    match: re.Pattern[str] | None = None
    times: int | None = None  # None = forever
    delay: float = 0.0  # seconds to wait before replying
    fired: int = 0
    drop: bool = False  # drop the connection instead of replying (at DATA: message kept)
    chance: float = 1.0  # the probability that a matching rule fires

    @property
    def exhausted(self) -> bool:
        """True once the rule fired ``times`` times."""
        return self.times is not None and self.fired >= self.times


@dataclass(frozen=True)
class SMTPEvent:
    """One command seen by the server and the reply it got."""

    stage: str
    argument: str
    reply: str
    peer: tuple[str, int]
    port: int
    tls: bool
    time: float


@dataclass(frozen=True)
class ReceivedMessage:
    """A message accepted after DATA."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # raw message as received (CRLF line ends, dot-unstuffed)
    login: str | None  # authenticated user, None if the session did not AUTH
    tls: bool  # STARTTLS or implicit TLS
    peer: tuple[str, int]
    port: int  # which listener received it
    queue_id: str
    mail_options: list[str] = field(default_factory=list)
    rcpt_options: list[str] = field(default_factory=list)

    @property
    def message(self) -> email.message.EmailMessage:
        """The parsed message (``email.policy.default``)."""
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


_ENHANCED_OK = {
    Stage.MAIL: "250 2.1.0 Sender OK",
    Stage.RCPT: "250 2.1.5 Recipient OK",
}


def _normalize_reply(reply: str) -> str:
    lines = [ln for ln in reply.replace("\r\n", "\n").split("\n") if ln]
    if not lines or not re.match(r"^[2-5]\d\d([ -]|$)", lines[0]):
        raise ValueError(f"not an SMTP reply: {reply!r}")
    return "\n".join(lines)


class _Handler:
    """aiosmtpd handler shared by both listeners; state lives in the owning FakeSMTP."""

    def __init__(self, owner: FakeSMTP) -> None:
        self.owner = owner

    async def handle_EHLO(
        self, server: _ProviderSMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        del envelope
        scripted = await server.scripted(Stage.EHLO, hostname)
        if scripted is not None:
            return [scripted]
        session.host_name = hostname
        out = [r for r in responses if not r.startswith(("250-AUTH", "250 HELP"))]
        out += ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        if self.owner.chunking:
            out.append("250-CHUNKING")
        if server.can_auth():
            offered = [m for m in sorted(server._auth_methods)
                       if m in self.owner.auth_mechanisms]
            out.append("250-AUTH " + " ".join(offered))
        out.append("250 HELP")
        reply = "\n".join(out)
        server.record(Stage.EHLO, hostname, reply)
        return [reply]  # one write: line-by-line pushes cost ~40 ms (delayed ACK)

    async def handle_MAIL(
        self, server: _ProviderSMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        del session
        scripted = await server.scripted(Stage.MAIL, address)
        if scripted is not None:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        server.record(Stage.MAIL, address, _ENHANCED_OK[Stage.MAIL])
        return _ENHANCED_OK[Stage.MAIL]

    async def handle_RCPT(
        self, server: _ProviderSMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        del session
        scripted = await server.scripted(Stage.RCPT, address)
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        server.record(Stage.RCPT, address, _ENHANCED_OK[Stage.RCPT])
        return _ENHANCED_OK[Stage.RCPT]

    async def handle_DATA(
        self, server: _ProviderSMTP, session: Session, envelope: Envelope,
    ) -> str:
        raw = envelope.original_content or b""
        scripted = await server.scripted(Stage.DATA, raw.decode("latin-1"))
        if scripted is not None and not server.dropping:
            return scripted
        queue_id = uuid.uuid4().hex[:12].upper()
        auth = getattr(session, "auth_data", None)
        msg = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(raw),
            login=auth.login if isinstance(auth, _AuthData) else None,
            tls=server.is_tls,
            peer=server.peer,
            port=server.listen_port,
            queue_id=queue_id,
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
        )
        reply = f"250 2.0.0 Ok: queued as {queue_id}"
        if not server.dropping:  # a dropped DATA was recorded by its rule
            server.record(Stage.DATA, f"{len(raw)} bytes", reply)
        self.owner._add_message(msg)
        return scripted if scripted is not None else reply


@dataclass(frozen=True)
class _AuthData:
    login: str
    mechanism: str


class _ProviderSMTP(SMTP):
    """aiosmtpd SMTP with scripted replies, XOAUTH2, implicit-TLS AUTH and 421-closes."""

    def __init__(self, handler: _Handler, *, implicit_tls: bool, listen_port: int,
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.owner = handler.owner
        self.implicit_tls = implicit_tls
        self.listen_port = listen_port
        self._greeted = False
        self.dropping = False  # a drop rule fired: the next reply closes the connection

    # -- helpers -----------------------------------------------------------------------------
    @property
    def is_tls(self) -> bool:
        """True on the SMTPS listener or after STARTTLS."""
        return self.implicit_tls or self._tls_protocol is not None

    @property
    def peer(self) -> tuple[str, int]:
        """Client address."""
        peer = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            return (str(peer[0]), int(peer[1]))
        return ("", 0)

    def can_auth(self) -> bool:
        """AUTH is offered/accepted when TLS is active or the owner allows plain AUTH."""
        return self.is_tls or not self.owner.auth_require_tls

    def record(self, stage: str, argument: str, reply: str) -> None:
        """Append an event to the owner's log."""
        self.owner._add_event(SMTPEvent(stage, argument, reply, self.peer, self.listen_port,
                                        self.is_tls, time.time()))

    async def scripted(self, stage: Stage, argument: str) -> str | None:
        """Return the reply of the first matching rule (after its delay), or None."""
        rule = self.owner._take_rule(stage, argument)
        if rule is None:
            return None
        if rule.delay > 0:
            await asyncio.sleep(rule.delay)
        self.dropping = rule.drop
        self.record(stage, argument, "DROPPED" if rule.drop else rule.reply)
        return rule.reply

    # -- protocol overrides --------------------------------------------------------------------
    async def push(self, status: Any) -> None:
        """Send a reply; the first one is the greeting (CONNECT rules); 421 closes afterwards."""
        if self.dropping:
            if isinstance(self.transport, asyncio.Transport):
                self.transport.abort()
            return
        if isinstance(status, bytes):
            text = status.decode("utf-8", "surrogateescape")
        else:
            text = str(status)
        if not self._greeted:
            self._greeted = True
            peer = self.peer
            scripted = await self.scripted(Stage.CONNECT, f"{peer[0]}:{peer[1]}")
            if scripted is not None:
                text = scripted
            else:
                self.record(Stage.CONNECT, f"{peer[0]}:{peer[1]}", text)
        lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln] or [text]
        await super().push("\r\n".join(lines))
        if lines[-1].startswith("421") and self.transport is not None:
            self.transport.close()
            # a server that said 421 reads nothing more: pipelined commands already buffered
            # (a whole CHUNKING batch) are dropped, not served
            self._reader._buffer.clear()  # type: ignore[attr-defined]
            self._reader.feed_eof()

    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH PLAIN / LOGIN / XOAUTH2, allowed on implicit TLS too (aiosmtpd 1.4.6 says 538)."""
        if await self.check_helo_needed("EHLO"):
            return
        assert self.session is not None
        if not self.session.extended_smtp:
            await self.push("500 Error: command 'AUTH' not recognized")
            return
        if not self.can_auth():
            await self.push("538 5.7.11 Encryption required for requested authentication "
                            "mechanism")
            return
        if self.session.authenticated:
            await self.push("503 5.5.1 Already authenticated")
            return
        args = (arg or "").split()
        if not args or len(args) > 2:
            await self.push("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
            return
        mechanism = args[0].upper()
        initial = args[1] if len(args) == 2 else None
        reader = {"PLAIN": self._read_plain, "LOGIN": self._read_login,
                  "XOAUTH2": self._read_xoauth2}.get(mechanism)
        if reader is None or mechanism not in self.event_handler.owner.auth_mechanisms:
            await self.push("504 5.5.4 Unrecognized authentication type")
            return
        creds = await reader(initial)
        if creds is None:  # aborted / malformed: reply already sent
            return
        login, check = creds
        scripted = await self.scripted(Stage.AUTH, login)
        if scripted is not None:
            ok = scripted.startswith("2")
        else:
            ok = check()
            if not ok and mechanism == "XOAUTH2":
                # Like Gmail: a 334 with a JSON error, the client answers with an empty line.
                err = json.dumps({"status": "401", "schemes": "Bearer",
                                  "scope": "https://mail.google.com/"})
                line = await self._challenge(base64.b64encode(err.encode()).decode())
                if line is None:
                    return
            scripted = ("235 2.7.0 Authentication successful" if ok
                        else "535 5.7.8 Authentication credentials invalid")
            self.record(Stage.AUTH, f"{mechanism} {login}", scripted)
        if ok:
            self.session.authenticated = True
            self.session.auth_data = _AuthData(login, mechanism)  # type: ignore[assignment]
        await self.push(scripted)

    async def smtp_BDAT(self, arg: str) -> None:
        """BDAT (RFC 3030) when the owner offers CHUNKING. The chunk is always read, even
        when the transaction has failed; the LAST chunk goes through the DATA rules and the
        handler like a message after DATA. With ``chunking = "unimplemented"`` the server
        offers CHUNKING but answers BDAT as an unknown command (and reads the chunk as
        commands), as a broken server would."""
        if not self.owner.chunking or self.owner.chunking == "unimplemented":
            await self.push('500 Error: command "BDAT" not recognized')
            return
        if await self.check_helo_needed():
            return
        parts = (arg or "").split()
        if (not 1 <= len(parts) <= 2 or not parts[0].isdigit()
                or (len(parts) == 2 and parts[1].upper() != "LAST")):
            await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
            return
        chunk = await self._reader.readexactly(int(parts[0]))
        assert self.envelope is not None
        chunks: list[bytes] = getattr(self.envelope, "chunks", [])
        if not self.envelope.rcpt_tos:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        chunks.append(chunk)
        if len(parts) == 1:
            self.envelope.chunks = chunks  # type: ignore[attr-defined]
            await self.push(f"250 2.0.0 {len(chunk)} octets received")
            return
        content = b"".join(chunks)
        self.envelope.original_content = content
        self.envelope.content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    # Stubs so aiosmtpd advertises these mechanisms (smtp_AUTH above does the work).
    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        """Advertised only; handled by smtp_AUTH."""
        return AuthResult(success=False, handled=True)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        """Advertised only; handled by smtp_AUTH."""
        return AuthResult(success=False, handled=True)

    async def auth_XOAUTH2(self, _: Any, args: list[str]) -> AuthResult:
        """Advertised only; handled by smtp_AUTH."""
        return AuthResult(success=False, handled=True)

    # -- AUTH readers ---------------------------------------------------------------------------
    async def _challenge(self, b64_text: str) -> bytes | None:
        """Send ``334 <b64_text>`` and return the client's raw line (None on '*' abort)."""
        await self.push(f"334 {b64_text}")
        line = (await self._reader.readline()).strip()
        if line == b"*":
            await self.push("501 5.7.0 Authentication aborted")
            return None
        return line

    async def _decode(self, blob: bytes | str) -> bytes | None:
        try:
            return base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    def _password_check(self, login: str, password: str) -> Any:
        users: Mapping[str, str] = self.owner.users
        return lambda: login in users and users[login] == password

    async def _read_plain(self, initial: str | None) -> tuple[str, Any] | None:
        blob: bytes | str | None = initial
        if blob is None or blob == "=":
            blob = await self._challenge("")
            if blob is None:
                return None
        raw = await self._decode(blob)
        if raw is None:
            return None
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot split auth value")
            return None
        login, password = parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
        return login, self._password_check(login, password)

    async def _read_login(self, initial: str | None) -> tuple[str, Any] | None:
        blob: bytes | str | None = initial
        if blob is None:
            blob = await self._challenge(base64.b64encode(b"Username:").decode())
            if blob is None:
                return None
        user = await self._decode(blob)
        if user is None:
            return None
        pw_blob = await self._challenge(base64.b64encode(b"Password:").decode())
        if pw_blob is None:
            return None
        password = await self._decode(pw_blob)
        if password is None:
            return None
        login = user.decode("utf-8", "replace")
        return login, self._password_check(login, password.decode("utf-8", "replace"))

    async def _read_xoauth2(self, initial: str | None) -> tuple[str, Any] | None:
        blob: bytes | str | None = initial
        if blob is None:
            blob = await self._challenge("")
            if blob is None:
                return None
        raw = await self._decode(blob)
        if raw is None:
            return None
        m = re.fullmatch(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]*)\x01\x01", raw)
        if m is None:
            await self.push("501 5.5.2 Malformed XOAUTH2 initial response")
            return None
        login, token = m.group(1).decode("utf-8", "replace"), m.group(2).decode("utf-8", "replace")
        tokens: Mapping[str, str] = self.owner.tokens
        return login, lambda: login in tokens and tokens[login] == token


class _Controller(Controller):
    """aiosmtpd Controller listening on a pre-bound socket (port 0: no port race)."""

    def __init__(self, owner: FakeSMTP, sock: socket.socket, *, implicit_tls: bool,
                 ssl_context: ssl.SSLContext | None) -> None:
        self._sock = sock
        self._owner = owner
        self._implicit = implicit_tls
        port = int(sock.getsockname()[1])
        super().__init__(owner._handler, hostname=LOCALHOST, port=port,
                         ssl_context=ssl_context, ready_timeout=10.0)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock,
                                       ssl=self.ssl_context)

    def factory(self) -> _ProviderSMTP:
        o = self._owner
        return _ProviderSMTP(
            o._handler,
            implicit_tls=self._implicit,
            listen_port=self.port,
            hostname=o.hostname,
            ident=o.banner,
            tls_context=None if (self._implicit or not o.starttls) else o._tls_context,
            auth_require_tls=o.auth_require_tls,
            data_size_limit=o.data_size_limit,
            enable_SMTPUTF8=True,
            timeout=o.idle_timeout,
            loop=self.loop,
        )


@dataclass(frozen=True)
class _Settings:
    users: dict[str, str]
    tokens: dict[str, str]
    auth_require_tls: bool
    starttls: bool
    hostname: str
    banner: str
    auth_mechanisms: tuple[str, ...]
    chunking: bool | str


class FakeSMTP:
    """Scriptable SMTP provider on 127.0.0.1: ``port`` (plain+STARTTLS) and ``tls_port`` (SMTPS).

    Settings are plain attributes read for every new connection: ``users``, ``tokens``,
    ``auth_require_tls``, ``starttls``, ``hostname``, ``banner``, ``auth_mechanisms`` (the
    AUTH mechanisms offered and accepted) and ``chunking`` (``True``: CHUNKING offered and
    BDAT taken; ``"unimplemented"``: offered, but BDAT is an unknown command).
    :meth:`reset` restores the values given to the constructor and clears rules, messages
    and events.
    """

    host = LOCALHOST

    def __init__(
        self,
        tls: CertBundle | TLSCerts | tuple[str | Path, str | Path],
        *,
        users: Mapping[str, str] | None = None,
        tokens: Mapping[str, str] | None = None,
        auth_require_tls: bool = True,
        starttls: bool = True,
        implicit_tls: bool = True,
        hostname: str = "smtp.test.local",
        banner: str = "ESMTP mailfleet FakeSMTP",
        auth_mechanisms: tuple[str, ...] = ("LOGIN", "PLAIN", "XOAUTH2"),
        data_size_limit: int = 32 * 1024 * 1024,
        idle_timeout: float = 60.0,
        chunking: bool | str = False,
    ) -> None:
        if isinstance(tls, tuple):
            cert_file, key_file = tls
        else:
            cert_file, key_file = tls.cert_file, tls.key_file
        self._tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls_context.load_cert_chain(str(cert_file), str(key_file))
        # No TLS 1.3 session tickets: the ticket write before the greeting costs ~40 ms per
        # SMTPS connection (delayed ACK), and test clients never resume sessions.
        self._tls_context.num_tickets = 0
        self._defaults = _Settings(dict(users or {}), dict(tokens or {}), auth_require_tls,
                                   starttls, hostname, banner, tuple(auth_mechanisms),
                                   chunking)
        self.users: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.auth_require_tls = auth_require_tls
        self.starttls = starttls
        self.hostname = hostname
        self.banner = banner
        self.auth_mechanisms: tuple[str, ...] = ()
        self.chunking: bool | str = False
        self._restore_settings()
        self.data_size_limit = data_size_limit
        self.idle_timeout = idle_timeout
        self._with_implicit = implicit_tls
        self._handler = _Handler(self)
        self._lock = threading.Condition(threading.RLock())
        self._rules: list[Rule] = []
        self._messages: list[ReceivedMessage] = []
        self._events: list[SMTPEvent] = []
        self._controllers: list[_Controller] = []
        self.port = 0
        self.tls_port = 0
        self.random = random.Random(0)  # decides the rules with a chance

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeSMTP:
        """Bind both listeners on free ports and start their threads."""
        plain = socket.create_server((LOCALHOST, 0))
        self._controllers.append(_Controller(self, plain, implicit_tls=False, ssl_context=None))
        self.port = int(plain.getsockname()[1])
        if self._with_implicit:
            smtps = socket.create_server((LOCALHOST, 0))
            self._controllers.append(
                _Controller(self, smtps, implicit_tls=True, ssl_context=self._tls_context))
            self.tls_port = int(smtps.getsockname()[1])
        try:
            for c in self._controllers:
                c.start()
        except BaseException:
            self.stop()
            raise
        with self._lock:
            self._events.clear()  # drop the controllers' own readiness probes
        return self

    def stop(self) -> None:
        """Stop both listeners (idempotent)."""
        for c in self._controllers:
            c.stop(no_assert=True)
            c._sock.close()
        self._controllers.clear()

    def __enter__(self) -> FakeSMTP:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------------
    def add_rule(self, stage: Stage | str, reply: str, match: str | re.Pattern[str] | None = None,
                 times: int | None = None, delay: float = 0.0, *, drop: bool = False,
                 chance: float = 1.0) -> Rule:
        """Script ``reply`` (e.g. ``"550 5.1.1 <x@y>: user unknown"``) at ``stage``.

        Multi-line replies are written with ``\\n``: ``"550-5.4.5 a\\n550 5.4.5 b"``.

        ``match`` is a regex searched in the stage argument (address for MAIL/RCPT, login for AUTH,
        client hostname for EHLO, message text for DATA, ``ip:port`` for CONNECT); ``times`` limits
        how often it fires (None = always); ``delay`` waits before replying. Rules are tried in the
        order they were added. A 421 reply closes the connection after it is sent.

        Faults: ``drop`` closes the connection instead of replying (its event's reply is
        ``DROPPED``; at DATA the message was received and is kept, as a server that queued it
        and then lost the connection would); ``chance`` makes the rule fire at random with that
        probability (seeded by :attr:`FakeSMTP.random`).
        """
        pattern = re.compile(match) if isinstance(match, str) else match
        rule = Rule(Stage(str(stage).upper()), _normalize_reply(reply), pattern, times, delay,
                    drop=drop, chance=chance)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """Clear rules, messages and events and restore the constructor's settings."""
        with self._lock:
            self._rules.clear()
            self._messages.clear()
            self._events.clear()
            self._restore_settings()

    # -- observations ----------------------------------------------------------------------------
    @property
    def messages(self) -> list[ReceivedMessage]:
        """Snapshot of accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def events(self) -> list[SMTPEvent]:
        """Snapshot of every command/reply seen, oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def rules(self) -> list[Rule]:
        """Snapshot of the active rules (with their ``fired`` counters)."""
        with self._lock:
            return list(self._rules)

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; raise TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"{len(self._messages)} of {count} messages after {timeout}s")
            return list(self._messages)

    # -- internals (called from the server threads) ------------------------------------------------
    def _restore_settings(self) -> None:
        d = self._defaults
        self.users = dict(d.users)
        self.tokens = dict(d.tokens)
        self.auth_require_tls = d.auth_require_tls
        self.starttls = d.starttls
        self.hostname = d.hostname
        self.banner = d.banner
        self.auth_mechanisms = d.auth_mechanisms
        self.chunking = d.chunking

    def _take_rule(self, stage: Stage, argument: str) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.stage != stage or rule.exhausted:
                    continue
                if rule.match is not None and not rule.match.search(argument):
                    continue
                if rule.chance < 1.0 and self.random.random() >= rule.chance:
                    continue
                rule.fired += 1
                return rule
        return None

    def _add_event(self, event: SMTPEvent) -> None:
        with self._lock:
            self._events.append(event)

    def _add_message(self, msg: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(msg)
            self._lock.notify_all()


class HostileSMTP:
    """A hostile "SMTP server" on 127.0.0.1 that breaks the protocol on purpose.

    ``behaviour`` picks how: ``huge_greeting`` (one 1 MB greeting line), ``no_crlf`` (a
    greeting without its line end, then silence), ``slow`` (a greeting dribbled one byte every
    ``interval`` seconds, for ever), ``endless`` (a greeting that is an endless multi-line
    reply), ``huge_ehlo`` (a normal greeting, then a 1 MB EHLO line), ``mute`` (a normal
    greeting and EHLO, then no reply to anything, QUIT included). Each connection is
    served by its own thread until the client goes; ``connections`` counts them.
    """

    host = LOCALHOST
    BEHAVIOURS = ("huge_greeting", "no_crlf", "slow", "endless", "huge_ehlo", "mute")

    def __init__(self, behaviour: str, *, interval: float = 0.5) -> None:
        if behaviour not in self.BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {self.BEHAVIOURS}")
        self.behaviour = behaviour
        self.interval = interval
        self.connections = 0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.port = 0

    def start(self) -> HostileSMTP:
        self._listener = socket.create_server((LOCALHOST, 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> HostileSMTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        huge = b"220 " + b"x" * (1 << 20) + b"\r\n"
        try:
            with conn:
                if self.behaviour == "huge_greeting":
                    conn.sendall(huge)
                elif self.behaviour == "no_crlf":
                    conn.sendall(b"220 hostile.test ESMTP without a line end")
                elif self.behaviour == "slow":
                    for byte in b"220 hostile.test ESMTP, very slowly\r\n" * 1000:
                        if self._stop.wait(self.interval):
                            return
                        conn.sendall(bytes([byte]))
                elif self.behaviour == "endless":
                    while not self._stop.is_set():
                        conn.sendall(b"220-hostile.test still greeting\r\n" * 100)
                elif self.behaviour == "huge_ehlo":
                    conn.sendall(b"220 hostile.test ESMTP\r\n")
                    conn.recv(1024)
                    conn.sendall(b"250-" + huge[4:])
                elif self.behaviour == "mute":
                    conn.sendall(b"220 hostile.test ESMTP\r\n")
                    conn.recv(1024)
                    conn.sendall(b"250-hostile.test\r\n250 PIPELINING\r\n")
                self._stop.wait(30)
        except OSError:
            return
