"""POP3 reader: leaves messages on the server by default and remembers what it read by UIDL."""

from __future__ import annotations

import base64
import contextlib
import json
import poplib
import ssl
from collections.abc import Callable
from typing import Any

from mailfleet.errors import MailboxError
from mailfleet.mailbox.imap import Fetched
from mailfleet.mailbox.settings import (
    MailboxSettings,
    ReaderState,
    connect_error,
    reconnect_policy,
)
from mailfleet.providers import Security


class Pop3Reader:
    """Reads the messages whose UIDL it has not seen; deletes them only when configured."""

    def __init__(self, settings: MailboxSettings, state: ReaderState, *,
                 attempts: int = 4, sleep: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self.state = state
        self.retry = reconnect_policy(attempts, sleep)

    def connect(self) -> poplib.POP3:
        s = self.settings
        context = s.tls_context() if s.security is not Security.NONE else None
        try:
            if s.security is Security.SSL:
                client: poplib.POP3 = poplib.POP3_SSL(s.host, s.port, timeout=s.timeout,
                                                      context=context)
            else:
                client = poplib.POP3(s.host, s.port, timeout=s.timeout)
        except OSError as exc:  # ssl.SSLError included
            raise connect_error(s, exc) from None
        try:
            if s.security is Security.STARTTLS:
                try:
                    client.stls(context)
                except poplib.error_proto as exc:
                    raise MailboxError("tls", f"STARTTLS was required but refused: {exc}",
                                       transient=False) from None
            if s.auth == "xoauth2":  # RFC 5034 AUTH with the XOAUTH2 initial response
                token = base64.b64encode(
                    f"user={s.login}\x01auth=Bearer {s.oauth_token()}\x01\x01".encode())
                # poplib has no public AUTH command; _shortcmd sends one line and raises on
                # -ERR. A refused token first gets a "+ <error>" challenge: answering it with
                # an empty line makes the server say -ERR.
                shortcmd = client._shortcmd  # type: ignore[attr-defined]
                if not shortcmd(f"AUTH XOAUTH2 {token.decode()}").startswith(b"+OK"):
                    shortcmd("")
            else:
                client.user(s.login)
                client.pass_(s.password().reveal())
        except poplib.error_proto as exc:
            _quit(client)
            text = exc.args[0].decode("utf-8", "replace") if exc.args else ""
            raise MailboxError("auth", f"the server refused the login {s.login}: {text}",
                               transient=False) from None
        except MailboxError:
            _quit(client)
            raise
        except (OSError, ssl.SSLError) as exc:
            _quit(client)
            raise MailboxError("connect", str(exc)) from None
        return client

    def read(self, handle: Callable[[Fetched], Any]) -> int:
        """Pass every unseen message to ``handle``; return the count."""
        count = 0

        def cycle() -> None:
            nonlocal count
            s = self.settings
            client = self.connect()
            try:
                seen = set(json.loads(self.state.kv_get(s.state_key) or "[]"))
                listing = [line.decode().split(" ", 1) for line in client.uidl()[1]]
                on_server = {uid for _, uid in listing}
                seen &= on_server  # forget UIDLs of messages that are gone
                for number, uid in listing:
                    if uid in seen:
                        continue
                    lines = client.retr(int(number))[1]
                    handle(Fetched(uid, b"\r\n".join(lines) + b"\r\n"))
                    if s.processed == "delete":
                        client.dele(int(number))  # committed by QUIT below
                    seen.add(uid)
                    self.state.kv_set(s.state_key, json.dumps(sorted(seen)))
                    count += 1
                client.quit()  # commits deletions
            except (OSError, poplib.error_proto) as exc:
                _quit(client)
                raise MailboxError("read", f"connection lost: {exc}") from None

        self.retry(cycle)
        return count


def _quit(client: poplib.POP3) -> None:
    with contextlib.suppress(Exception):  # already closed
        client.close()
