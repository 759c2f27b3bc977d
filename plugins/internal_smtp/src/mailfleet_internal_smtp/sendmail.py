"""A session that hands each letter to a ``sendmail``-compatible binary instead of SMTP.

Each envelope runs ``sendmail -i -f SENDER -- RCPT...`` with the letter on stdin (LF line
ends, as local submission expects). The exit status (sysexits) decides the outcome:
``75`` (EX_TEMPFAIL) is transient, ``65``/``67``/``68`` (bad data, unknown user or host) fail
the letter, anything else means the local MTA cannot send (server).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence

from mailfleet.plugin import Classification, Envelope, SendResult, Server, SmtpError, Stage

EX_TEMPFAIL = 75
_LETTER_ERRORS = {65: "bad message data", 67: "unknown user", 68: "unknown host"}


def sendmail_path(server: Server) -> str | None:
    """The ``sendmail`` option, or ``None`` when the server speaks SMTP."""
    value = server.options.get("sendmail")
    return value if isinstance(value, str) and value else None


def unusable(path: str) -> str | None:
    """Why ``path`` cannot be run as sendmail, or ``None`` when it can."""
    if not os.path.isabs(path):
        return f"{path!r} is not an absolute path"
    if not os.path.isfile(path):
        return f"{path} does not exist"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    return None


class SendmailSession:
    """The :class:`~mailfleet.sending.envelope.SmtpSession` protocol over a sendmail binary."""

    def __init__(self, server: Server, path: str) -> None:
        self.server = server
        self.path = path

    async def send(self, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None = None) -> list[SendResult]:
        """Pipe each letter to the binary; after a failure ``stop`` picks, the letters left
        get that failure without being attempted."""
        results: list[SendResult] = []
        for envelope in envelopes:
            result = await self._send_one(envelope)
            results.append(result)
            if result.error is not None and stop is not None and stop(result.error):
                results += [SendResult(rest, result.error) for rest in envelopes[len(results):]]
                break
        return results

    async def _send_one(self, envelope: Envelope) -> SendResult:
        argv = [self.path, "-i", "-f", envelope.mail_from, "--", *envelope.rcpt_to]
        data = envelope.data.replace(b"\r\n", b"\n")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            return SendResult(envelope, self._error(
                Stage.CONNECT, f"cannot run {self.path}: {exc.strerror or exc}",
                Classification.SERVER))
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(data), self.server.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return SendResult(envelope, self._error(
                Stage.DATA, f"{self.path} did not finish within {self.server.timeout:g} s",
                Classification.TRANSIENT))
        if proc.returncode == 0:
            return SendResult(envelope)
        status = proc.returncode
        detail = stderr.decode("utf-8", "replace").strip().splitlines()
        text = f"{self.path} exited with status {status}"
        if detail:
            text += f": {detail[-1][:300]}"
        if status == EX_TEMPFAIL:
            cls = Classification.TRANSIENT
        elif status in _LETTER_ERRORS:
            cls = Classification.PERMANENT
        else:
            cls = Classification.SERVER
        return SendResult(envelope, self._error(Stage.DATA, text, cls))

    async def probe_sender(self, mail_from: str) -> None:
        """Nothing to probe without SMTP; only checks that the binary can be run."""
        del mail_from
        why = unusable(self.path)
        if why is not None:
            raise self._error(Stage.CONNECT, f"sendmail {why}", Classification.SERVER)

    async def close(self) -> None:
        """Nothing to close: each letter is its own process."""

    def _error(self, stage: Stage, text: str, cls: Classification) -> SmtpError:
        return SmtpError(stage, text, classification=cls, server=self.server.name)


async def open_sendmail(server: Server, path: str) -> SendmailSession:
    """A sendmail "session"; raises SmtpError (stage connect) when the binary is unusable."""
    why = unusable(path)
    if why is not None:
        raise SmtpError(Stage.CONNECT, f"sendmail {why}", classification=Classification.SERVER,
                        server=server.name)
    return SendmailSession(server, path)
