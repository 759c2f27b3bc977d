"""An asyncio SMTP client made for mass mailing.

One connection carries many letters. With PIPELINING (RFC 2920) each letter costs one round
trip: the end of the previous letter's data, and this letter's MAIL FROM, RCPT TO and DATA
go out in one write. RSET follows a failed transaction; a completed DATA ends the transaction
by itself (RFC 5321 4.1.1.4), so successful letters need none. TLS is verified by default;
STARTTLS that was asked for is required; AUTH over a plain connection is refused unless the
server allows insecure auth.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence

from mailfleet.errors import Classification, ConfigError, SmtpError, Stage
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret, mask_secrets
from mailfleet.sending.envelope import Envelope, SendObserver, SendResult
from mailfleet.sending.servers import Server
from mailfleet.smtp.replies import Reply, is_last_line, parse_reply_lines

log = logging.getLogger(__name__)

_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_MAX_LINE = 8192
_MAX_LINES = 100
_READ_SIZE = 65536
_WRITE_HIGH = 256 * 1024
#: the most one CHUNKING write carries (at least one letter): a batch of large letters goes
#: in several writes, each answered before the next
_MAX_WRITE = 2 * 1024 * 1024
#: the most :meth:`SmtpClient.close` waits for a polite QUIT before dropping the connection
CLOSE_SECONDS = 1.0


def tls_context(server: Server) -> ssl.SSLContext:
    """The client TLS context for ``server``: verified against the system or ``ca_file``;
    a ``ca_file`` gone or broken since the config was read is a TLS SmtpError (the server
    rests, its letters go back to the queue)."""
    try:
        context = ssl.create_default_context(cafile=server.ca_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise SmtpError(Stage.TLS, f"servers[{server.name}].ca_file: cannot load "
                        f"{server.ca_file!r} ({reason}); point it at the PEM file of the CA "
                        f"that signed the server's certificate", server=server.name) from None
    if not server.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


#: servers (host, port) that offered CHUNKING but refused BDAT: they get DATA in this process
_NO_CHUNKING: set[tuple[str, int]] = set()


def to_crlf(data: bytes) -> bytes:
    """The message with CRLF line ends only, ending with CRLF (a BDAT chunk as is)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf:  # counting is ~20x cheaper than a regex search
        data = _BARE_LF.sub(b"\r\n", data)
        crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf:
        data = _BARE_CR.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def dot_stuff(data: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, ending with ``CRLF.CRLF``."""
    data = to_crlf(data)
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


def _commands(envelope: Envelope) -> bytes:
    """The MAIL FROM and RCPT TO lines of one letter."""
    if len(envelope.rcpt_to) == 1:
        return f"MAIL FROM:<{envelope.mail_from}>\r\nRCPT TO:<{envelope.rcpt_to[0]}>\r\n".encode()
    return "".join([f"MAIL FROM:<{envelope.mail_from}>\r\n",
                    *(f"RCPT TO:<{r}>\r\n" for r in envelope.rcpt_to)]).encode()


def _chunk(envelope: Envelope) -> bytes:
    """The message as a BDAT chunk."""
    return envelope.data if envelope.wire_ready else to_crlf(envelope.data)


def _stuffed(envelope: Envelope) -> bytes:
    """The message as DATA sends it, ending with ``CRLF.CRLF``."""
    return envelope.data + b".\r\n" if envelope.wire_ready else dot_stuff(envelope.data)


def _bdat(chunk: bytes) -> bytes:
    """The whole message as one last chunk: ``BDAT <size> LAST`` and the bytes."""
    return b"BDAT %d LAST\r\n%b" % (len(chunk), chunk)


class SmtpClient:
    """A session with one SMTP server; create it with :func:`open_session`."""

    def __init__(self, server: Server, *, local_hostname: str | None = None) -> None:
        self.server = server
        self.local_hostname = local_hostname or _local_hostname()
        self.extensions: dict[str, str] = {}
        self.tls = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()
        self._secrets: list[str] = []
        #: told of each letter's DATA and final reply (set by the dispatcher)
        self.observer: SendObserver | None = None
        self._broken: SmtpError | None = None
        #: the letters whose messages went and whose final replies have not come
        self._in_data: list[Envelope] = []
        self._chunking_refused = False
        #: letters sent on this connection (``server.letters_per_connection`` caps it)
        self._carried = 0
        #: logs in again on a fresh connection (set by :func:`open_session`)
        self._login: Callable[[], Awaitable[None]] | None = None

    # -- opening ----------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect, read the greeting, EHLO, and negotiate TLS as configured."""
        server = self.server
        implicit = server.security is Security.SSL
        context = tls_context(server) if server.security is not Security.NONE else None
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    server.host, server.port, ssl=context if implicit else None,
                    server_hostname=server.host if implicit else None, limit=_MAX_LINE * 4),
                server.timeout)
        except ssl.SSLError as exc:
            raise self._error(Stage.TLS, f"TLS handshake failed: {_ssl_reason(exc)}") from None
        except (OSError, TimeoutError) as exc:
            raise self._error(Stage.CONNECT, f"cannot connect to {server.host}:{server.port}: "
                              f"{_os_reason(exc)}") from None
        self.tls = implicit
        greeting = await self._read(Stage.CONNECT)
        if greeting.code != 220:
            raise self._reply_error(Stage.CONNECT, greeting)
        await self._ehlo()
        if server.security is Security.STARTTLS:
            await self._starttls(context)

    async def _ehlo(self) -> None:
        reply = await self._command(f"EHLO {self.local_hostname}", Stage.CONNECT)
        if reply.code == 250:
            self.extensions = {}
            for line in reply.lines[1:]:
                name, _, params = line.partition(" ")
                self.extensions[name.upper()] = params
            if (self.server.host, self.server.port) in _NO_CHUNKING:
                self.extensions.pop("CHUNKING", None)
            return
        reply = await self._command(f"HELO {self.local_hostname}", Stage.CONNECT)
        if reply.code != 250:
            raise self._reply_error(Stage.CONNECT, reply)
        self.extensions = {}

    async def _starttls(self, context: ssl.SSLContext | None) -> None:
        if "STARTTLS" not in self.extensions:
            raise self._error(
                Stage.TLS, "STARTTLS was required by the config but the server does not offer "
                "it; refusing to continue in plain text")
        reply = await self._command("STARTTLS", Stage.TLS)
        if reply.code != 220:
            raise self._reply_error(Stage.TLS, reply)
        if self._buffer:  # plain-text bytes after 220 would be read as if they came over TLS
            raise self._error(Stage.TLS, "the server sent data after agreeing to STARTTLS; "
                              "refusing to continue (possible command injection)")
        assert self._writer is not None and context is not None
        try:
            await asyncio.wait_for(
                self._writer.start_tls(context, server_hostname=self.server.host),
                self.server.timeout)
        except ssl.SSLError as exc:
            raise self._error(Stage.TLS, f"TLS handshake failed: {_ssl_reason(exc)}") from None
        except (OSError, TimeoutError) as exc:
            raise self._error(Stage.TLS, f"TLS handshake failed: {_os_reason(exc)}") from None
        self.tls = True
        await self._ehlo()

    async def authenticate(self, login: str, secret: Secret, mechanism: str = "auto") -> None:
        """AUTH with a password (PLAIN, else LOGIN) or ``xoauth2`` with a token as ``secret``."""
        if not self.tls and not self.server.allow_insecure_auth:
            raise self._error(
                Stage.AUTH, "refusing to send credentials over an unencrypted connection; use "
                "security = \"ssl\" or \"starttls\", or set allow_insecure_auth = true")
        value = secret.reveal()
        offered = self.extensions.get("AUTH", "").upper().split()
        if mechanism == "xoauth2":
            payload = f"user={login}\x01auth=Bearer {value}\x01\x01"
            encoded = base64.b64encode(payload.encode()).decode()
            self._secrets = [value, encoded]
            reply = await self._command(f"AUTH XOAUTH2 {encoded}", Stage.AUTH, secret=True)
            if reply.code == 334:  # the server's JSON error; an empty line ends the exchange
                reply = await self._command("", Stage.AUTH)
        elif "PLAIN" in offered or not offered:
            encoded = base64.b64encode(f"\0{login}\0{value}".encode()).decode()
            self._secrets = [value, encoded]
            reply = await self._command(f"AUTH PLAIN {encoded}", Stage.AUTH, secret=True)
        elif "LOGIN" in offered:
            user64 = base64.b64encode(login.encode()).decode()
            pass64 = base64.b64encode(value.encode()).decode()
            self._secrets = [value, pass64]
            reply = await self._command("AUTH LOGIN", Stage.AUTH)
            if reply.code == 334:
                reply = await self._command(user64, Stage.AUTH)
            if reply.code == 334:
                reply = await self._command(pass64, Stage.AUTH, secret=True)
        else:
            raise self._error(Stage.AUTH, f"the server offers no supported AUTH mechanism "
                              f"(offered: {' '.join(offered) or 'none'})")
        if reply.code != 235:
            raise self._reply_error(Stage.AUTH, reply)

    # -- sending ----------------------------------------------------------------------
    @property
    def chunking(self) -> bool:
        """True when letters go as ``BDAT <size> LAST`` (RFC 3030) instead of DATA."""
        return "CHUNKING" in self.extensions

    async def send(self, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None = None) -> list[SendResult]:
        """Send each envelope: pipelined when the server offers PIPELINING, as BDAT chunks
        when it offers CHUNKING too (the whole batch in one write, replies read together).

        The batch stops at a refusal at MAIL FROM (it concerns the sender or the account, not
        the letter) and at any failure ``stop`` picks (the provider said its limit is reached,
        say); the letters not attempted get the same error, so each is diagnosed like the one
        refused. With DATA, a letter already inside DATA when that happens is dropped with
        the connection, never completed; with CHUNKING the letters already on the wire get
        the server's own replies.

        When the session breaks (connection lost, timeout, 421, a malformed or oversized
        reply) the letters already answered keep their results, the ones whose messages had
        gone without a final reply are ``in_doubt``, and the rest are ``attempted = False``;
        the session is closed and every later call returns its letters unattempted.
        """
        def stops(result: SendResult) -> bool:
            error = result.error
            return error is not None and (error.stage is Stage.MAIL_FROM
                                          or (stop is not None and stop(error)))

        cap = self.server.letters_per_connection
        if cap is None:
            return await self._send_part(envelopes, stops)
        results: list[SendResult] = []
        while len(results) < len(envelopes):
            if self._carried >= cap and self._broken is None:
                try:  # the server takes only so many letters a session: a fresh one
                    await self._reconnect()
                except SmtpError as exc:
                    return self._broke(envelopes, results, exc)
            part = envelopes[len(results):len(results) + cap - self._carried]
            done = await self._send_part(part, stops)
            self._carried += len(part)
            results += done
            last = done[-1]
            broken = self._broken is not None
            if broken or stops(last):  # the rest share the error, as within one session
                assert last.error is not None
                error = last.error
                results += [SendResult(rest, SmtpError(
                    error.stage, error.reply, code=error.code,
                    enhanced_status=error.enhanced_status, server=error.server,
                    classification=error.classification if broken else None),
                    attempted=not broken) for rest in envelopes[len(results):]]
        return results

    async def _reconnect(self) -> None:
        """QUIT, then connect, negotiate TLS and log in again as the session first did."""
        await self.close()
        self._buffer.clear()
        self.tls = False
        self._carried = 0
        await self.connect()
        if self._login is not None:
            await self._login()

    async def _send_part(self, envelopes: Sequence[Envelope],
                         stops: Callable[[SendResult], bool]) -> list[SendResult]:
        """:meth:`send` within one connection."""
        results: list[SendResult] = []
        self._in_data = []
        try:
            if self._broken is not None:
                raise self._broken
            if "PIPELINING" in self.extensions and self.chunking:
                await self._send_chunked(envelopes, stops, results)
            elif "PIPELINING" in self.extensions:
                await self._send_pipelined(envelopes, stops, results)
            else:
                for envelope in envelopes:
                    results.append(await self._send_one(envelope))
                    if stops(results[-1]):
                        break
        except SmtpError as exc:
            return self._broke(envelopes, results, exc)
        if len(results) < len(envelopes):
            error = results[-1].error
            assert error is not None
            results += [SendResult(rest, SmtpError(
                error.stage, error.reply, code=error.code, enhanced_status=error.enhanced_status,
                server=error.server)) for rest in envelopes[len(results):]]
        return results

    def _broke(self, envelopes: Sequence[Envelope], results: list[SendResult],
               exc: SmtpError) -> list[SendResult]:
        """The results of a batch whose session just broke (see :meth:`send`)."""
        self._abort()
        if self._broken is None:
            self._broken = self._error(Stage.CONNECT, f"the session is closed after: {exc.reply}",
                                       Classification.SERVER)
        in_data, self._in_data = self._in_data, []
        for envelope in in_data:
            if len(results) >= len(envelopes):
                break
            # a 421 refuses the letter it answers, and the server reads nothing after it; a
            # server that does not take BDAT had none of the messages: neither has them
            if exc.code == 421 or self._chunking_refused:
                results.append(self._replied(SendResult(envelope, exc, attempted=False)))
            else:  # the message went and no final reply came: it may have been delivered
                results.append(SendResult(envelope, exc, in_doubt=True))
        results += [SendResult(rest, SmtpError(
            exc.stage, exc.reply, code=exc.code, enhanced_status=exc.enhanced_status,
            classification=exc.classification, server=exc.server), attempted=False)
            for rest in envelopes[len(results):]]
        return results

    async def _write_data(self, envelopes: list[Envelope], data: bytes) -> None:
        """Write ``data``, which carries the messages of ``envelopes``: through the observer,
        which writes it the moment it has made "these letters may be delivered" durable.
        The list is kept as the letters in flight; each final reply removes its letter."""
        self._in_data = envelopes
        if self.observer is not None:
            await self.observer.data_starting(envelopes, functools.partial(self._write, data))
        else:
            self._write(data)

    def _replied(self, result: SendResult) -> SendResult:
        if self._in_data and self._in_data[0] is result.envelope:
            del self._in_data[0]
        if self.observer is not None:
            self.observer.replied(result)
        return result

    async def _send_one(self, envelope: Envelope) -> SendResult:
        reply = await self._command(f"MAIL FROM:<{envelope.mail_from}>", Stage.MAIL_FROM)
        if reply.code != 250:
            await self._rset()
            return self._replied(SendResult(envelope, self._reply_error(Stage.MAIL_FROM, reply)))
        refused: dict[str, SmtpError] = {}
        for rcpt in envelope.rcpt_to:
            reply = await self._command(f"RCPT TO:<{rcpt}>", Stage.RCPT_TO)
            if reply.code not in (250, 251):
                refused[rcpt] = self._reply_error(Stage.RCPT_TO, reply, rcpt)
        if len(refused) == len(envelope.rcpt_to):
            await self._rset()
            return self._replied(SendResult(envelope, _first(refused), refused))
        if self.chunking:  # BDAT n LAST: the command and the message in one write
            deadline = self._deadline()
            await self._write_data([envelope], _bdat(_chunk(envelope)))
            reply = await self._read(Stage.DATA, deadline)
            self._check_bdat(reply)
            return self._finished(envelope, reply, refused)
        reply = await self._command("DATA", Stage.DATA)
        if reply.code != 354:
            await self._rset()
            return self._replied(SendResult(envelope, self._reply_error(Stage.DATA, reply),
                                            refused))
        deadline = self._deadline()
        await self._write_data([envelope], _stuffed(envelope))
        return self._finished(envelope, await self._read(Stage.DATA, deadline), refused)

    def _finished(self, envelope: Envelope, reply: Reply,
                  refused: dict[str, SmtpError]) -> SendResult:
        """The result of a letter whose message went, from the server's final reply."""
        error = None if reply.code == 250 else self._reply_error(Stage.DATA, reply)
        return self._replied(SendResult(envelope, error, refused))

    async def _send_pipelined(self, envelopes: Sequence[Envelope],
                              stops: Callable[[SendResult], bool],
                              results: list[SendResult]) -> None:
        """DATA with PIPELINING: one write per letter (the previous letter's message, then
        this letter's MAIL FROM, RCPT TO and DATA), one round trip per letter for the 354."""
        pending: tuple[Envelope, dict[str, SmtpError]] | None = None
        body = b""
        for envelope in envelopes:
            group = _commands(envelope) + b"DATA\r\n"
            if pending is not None:
                await self._write_data([pending[0]], body + group)
                results.append(self._finished(pending[0], await self._read(Stage.DATA),
                                              pending[1]))
                pending = None
                if stops(results[-1]):  # this letter's commands are already on the wire
                    self._abort()
                    return
            else:
                self._write(group)
            mail = await self._read(Stage.MAIL_FROM)
            refused: dict[str, SmtpError] = {}
            for rcpt in envelope.rcpt_to:
                reply = await self._read(Stage.RCPT_TO)
                if reply.code not in (250, 251):
                    refused[rcpt] = self._reply_error(Stage.RCPT_TO, reply, rcpt)
            data = await self._read(Stage.DATA)
            body = b""
            if mail.code != 250:
                error = self._reply_error(Stage.MAIL_FROM, mail)
            elif len(refused) == len(envelope.rcpt_to):
                error = _first(refused)
            elif data.code != 354:
                error = self._reply_error(Stage.DATA, data)
            else:
                body = _stuffed(envelope)
                pending = (envelope, refused)
                continue
            if data.code == 354:  # accepted DATA although the letter failed: end it empty
                self._write(b".\r\n")
                await self._read(Stage.DATA)
            results.append(self._replied(SendResult(envelope, error, refused)))
            await self._rset()
            if stops(results[-1]):
                return
        if pending is not None:
            await self._write_data([pending[0]], body)
            results.append(self._finished(pending[0], await self._read(Stage.DATA), pending[1]))

    async def _send_chunked(self, envelopes: Sequence[Envelope],
                            stops: Callable[[SendResult], bool],
                            results: list[SendResult]) -> None:
        """CHUNKING with PIPELINING: every letter as MAIL FROM, RCPT TO and ``BDAT <size>
        LAST`` with its message (no dot-stuffing), the batch in one write (in writes of at
        most :data:`_MAX_WRITE` bytes when the letters are large), then the replies read
        together: one round trip per write.

        A letter refused at MAIL FROM or RCPT TO still has its chunk read by the server
        (RFC 3030 4.2), which refuses the BDAT too, so the letters after it carry on. After
        a refused sender or a failure ``stop`` picks, the letters already on the wire get
        the server's own replies (they may have been accepted); nothing more is written,
        and the letters left share the failure.
        """
        done = 0
        while done < len(envelopes):
            buffer = bytearray()
            group: list[Envelope] = []
            for envelope in envelopes[done:]:
                if group and len(buffer) + len(envelope.data) > _MAX_WRITE:
                    break
                buffer += _commands(envelope)
                buffer += _bdat(_chunk(envelope))
                group.append(envelope)
            await self._write_data(list(group), bytes(buffer))  # a copy: replies pop it
            del buffer
            stopped = None
            for envelope in group:
                result = await self._chunk_result(envelope)
                results.append(result)
                if stopped is None and stops(result):
                    stopped = result.error
            done += len(group)
            if stopped is not None:
                results += [SendResult(rest, SmtpError(
                    stopped.stage, stopped.reply, code=stopped.code,
                    enhanced_status=stopped.enhanced_status, server=stopped.server))
                    for rest in envelopes[done:]]
                return

    async def _chunk_result(self, envelope: Envelope) -> SendResult:
        """Read the replies to one letter's MAIL FROM, RCPT TO and BDAT."""
        mail = await self._read(Stage.MAIL_FROM)
        refused: dict[str, SmtpError] = {}
        for rcpt in envelope.rcpt_to:
            reply = await self._read(Stage.RCPT_TO)
            if reply.code not in (250, 251):
                refused[rcpt] = self._reply_error(Stage.RCPT_TO, reply, rcpt)
        data = await self._read(Stage.DATA)
        if mail.code != 250:
            return self._replied(SendResult(envelope, self._reply_error(Stage.MAIL_FROM,
                                                                        mail)))
        if len(refused) == len(envelope.rcpt_to):
            return self._replied(SendResult(envelope, _first(refused), refused))
        self._check_bdat(data)
        return self._finished(envelope, data, refused)

    def _check_bdat(self, reply: Reply) -> None:
        """A server that offers CHUNKING but answers BDAT as an unknown command read the
        messages as commands: the session is out of step and is dropped, and this server gets
        DATA from now on (in this process)."""
        if reply.code in (500, 502, 504):
            _NO_CHUNKING.add((self.server.host, self.server.port))
            self._chunking_refused = True
            raise self._error(Stage.DATA, f"the server offers CHUNKING but refused BDAT "
                              f"({reply.code} {reply.message}); it gets DATA from now on")

    async def probe_sender(self, mail_from: str) -> None:
        """MAIL FROM then RSET: proves the sender is accepted; nothing is sent."""
        reply = await self._command(f"MAIL FROM:<{mail_from}>", Stage.MAIL_FROM)
        if reply.code != 250:
            await self._rset()
            raise self._reply_error(Stage.MAIL_FROM, reply)
        await self._rset()

    async def _rset(self) -> None:
        reply = await self._command("RSET", Stage.MAIL_FROM)
        if reply.code != 250:
            raise self._reply_error(Stage.MAIL_FROM, reply)

    def _abort(self) -> None:
        """Drop the connection at once: the server discards the unfinished transaction."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()

    async def close(self) -> None:
        """QUIT and close the connection; never raises and never waits more than about
        :data:`CLOSE_SECONDS` (a broken or hostile session is simply dropped)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                if self._broken is None and self._reader is not None:
                    writer.write(b"QUIT\r\n")
                    await writer.drain()
                    await self._reader.read(_READ_SIZE)  # the 221 (or the end), never parsed
                writer.close()
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError, ValueError, RuntimeError,
                asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    # -- wire -------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise self._error(Stage.CONNECT, "the session is closed")
        self._writer.write(data)

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.server.timeout

    async def _command(self, line: str, stage: Stage, *, secret: bool = False) -> Reply:
        """Write one command and read its reply, the whole exchange within ``timeout``."""
        if "\r" in line or "\n" in line:
            raise self._error(stage, "refusing to send a command containing CR or LF")
        log.debug("%s > %s", self.server.name, "AUTH ***" if secret else line)
        deadline = self._deadline()
        self._write(line.encode("utf-8") + b"\r\n")
        return await self._read(stage, deadline)

    async def _read(self, stage: Stage, deadline: float | None = None) -> Reply:
        """The next reply; pipelined replies are taken from the buffer without waiting.

        The whole reply must arrive within ``timeout`` seconds of starting to wait for it
        (or by ``deadline``), however the server dribbles it: a slow reply fails, while a long
        batch of quick replies never does. A reply line over 8,192 bytes, a reply of more than
        100 lines or a malformed line is a ``server`` error (the server is broken or hostile).
        """
        if self._reader is None or self._writer is None:
            raise self._error(stage, "the session is closed")
        try:
            lines = self._take_reply()  # pipelined replies are often all there already
            if lines is None:
                lines = await self._wait_reply(stage, deadline)
            reply = parse_reply_lines(lines)
        except TimeoutError:
            raise self._error(stage, f"no reply within {self.server.timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise self._error(stage, f"connection lost: {_os_reason(exc)}") from None
        except ValueError as exc:
            self._buffer.clear()
            raise self._error(stage, f"a broken server reply: {exc}",
                              Classification.SERVER) from None
        if reply.code == 421:  # the server is closing the session
            raise self._reply_error(stage, reply)
        return reply

    async def _wait_reply(self, stage: Stage, deadline: float | None) -> list[bytes]:
        """Read until one whole reply is in the buffer (within the deadline)."""
        assert self._reader is not None and self._writer is not None
        async with asyncio.timeout_at(deadline or self._deadline()):
            if self._writer.transport.get_write_buffer_size() > _WRITE_HIGH:
                await self._writer.drain()
            while (lines := self._take_reply()) is None:
                chunk = await self._reader.read(_READ_SIZE)
                if not chunk:
                    raise self._error(stage, "the server closed the connection")
                self._buffer += chunk
        return lines

    def _take_reply(self) -> list[bytes] | None:
        """Cut one complete reply off the buffer, or ``None`` if it has not all arrived."""
        buffer, start, lines = self._buffer, 0, []
        while (end := buffer.find(b"\n", start)) >= 0:
            if end - start > _MAX_LINE:
                raise ValueError("an SMTP reply line longer than 8192 bytes")
            line = bytes(buffer[start:end + 1])
            lines.append(line)
            start = end + 1
            if is_last_line(line):
                del buffer[:start]
                return lines
            if len(lines) > _MAX_LINES:
                raise ValueError("an SMTP reply of more than 100 lines")
        if len(buffer) - start > _MAX_LINE:
            raise ValueError("an SMTP reply line longer than 8192 bytes")
        return None

    # -- errors -----------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return mask_secrets(text, self._secrets)

    def _error(self, stage: Stage, text: str,
               classification: Classification | None = None) -> SmtpError:
        return SmtpError(stage, self._scrub(text), classification=classification,
                         server=self.server.name)

    def _reply_error(self, stage: Stage, reply: Reply, recipient: str | None = None) -> SmtpError:
        return SmtpError(stage, self._scrub(reply.message), code=reply.code,
                         enhanced_status=reply.enhanced_status, server=self.server.name,
                         recipient=recipient)


async def open_session(server: Server, oauth_token: str | None = None) -> SmtpClient:
    """Connect, negotiate TLS and authenticate as ``server`` says; raises SmtpError."""
    client = SmtpClient(server)
    token = Secret(oauth_token) if oauth_token else None

    async def login() -> None:
        if server.auth == "xoauth2":
            if token is None:
                raise client._error(
                    Stage.AUTH, "auth = \"xoauth2\" but no plugin supplied a token; implement "
                    "the mailfleet_oauth_token hook in the host application")
            await client.authenticate(server.login or server.sender, token, "xoauth2")
        elif server.auth == "password" and server.login:
            try:
                password = server.password()
            except ConfigError as exc:  # the variable or file is missing or empty now
                raise client._error(Stage.AUTH, "; ".join(exc.problems)) from None
            if password is None:
                raise client._error(
                    Stage.AUTH, f"servers[{server.name}] has a login but no password; set "
                    f"password_env or password_file")
            await client.authenticate(server.login, password)

    try:
        await client.connect()
        await login()
    except BaseException:
        await client.close()
        raise
    client._login = login
    return client


def _first(refused: dict[str, SmtpError]) -> SmtpError:
    return next(iter(refused.values()))


@functools.cache
def _local_hostname() -> str:
    name = socket.getfqdn()
    return name if name and "." in name else "localhost.localdomain"


def _ssl_reason(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
