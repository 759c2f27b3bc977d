"""IMAP reader: incremental by UID, UIDVALIDITY respected, each message recorded at once.

Messages are fetched in batches of :data:`BATCH`, at most :data:`MAX_BYTES` of each (the parser's
own input cap, so a 30 MB report costs the reader 512 KiB). Each message is then handled,
marked (flagged, moved or deleted) and the progress saved before the next one, so a crash
re-reads at most the message it was handling (the effects of a report are idempotent). A
message its handler sets aside (:class:`SetAside`: it failed or spent its parse budget) gets
the ``$MailfleetSetAside`` keyword, stays where it is and is never read again. A dropped
connection is retried with backoff; a refused login never is.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from mailfleet.bounces.mime import MAX_BYTES
from mailfleet.errors import MailboxError
from mailfleet.mailbox.budget import SetAside, SetAsideMessage
from mailfleet.mailbox.settings import (
    MailboxSettings,
    ReaderState,
    connect_error,
    reconnect_policy,
)
from mailfleet.plugins.providers import Security

PROCESSED_FLAG = b"$MailfleetProcessed"
SET_ASIDE_FLAG = b"$MailfleetSetAside"
BATCH = 50
_BODY = f"BODY.PEEK[]<0.{MAX_BYTES}>".encode()


@attrs.frozen
class Fetched:
    """One message from the mailbox: its id there (UID or UIDL), its first :data:`MAX_BYTES`
    bytes and its whole size as the server gave it."""

    id: str
    raw: bytes = attrs.field(repr=lambda r: f"<{len(r)} bytes>")
    size: int = attrs.field(default=-1, eq=False)

    @property
    def truncated(self) -> bool:
        """True when only the first :data:`MAX_BYTES` of a larger message were read."""
        return self.size > len(self.raw)


Handle = Callable[[Fetched], Any]
"""Takes one message; raises :class:`SetAside` to leave it aside."""

Report = Callable[[SetAsideMessage], Any]


class ImapReader:
    """Reads new messages from one IMAP folder."""

    def __init__(self, settings: MailboxSettings, state: ReaderState, *,
                 attempts: int = 4, sleep: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self.state = state
        self.retry = reconnect_policy(attempts, sleep)

    def connect(self) -> imapclient.IMAPClient:
        s = self.settings
        context = s.tls_context() if s.security is not Security.NONE else None
        try:
            client = imapclient.IMAPClient(s.host, port=s.port, ssl=s.security is Security.SSL,
                                           ssl_context=context, timeout=s.timeout)
        except (OSError, IMAPClientError) as exc:  # ssl.SSLError is an OSError
            raise connect_error(s, exc) from None
        try:
            if s.security is Security.STARTTLS:
                if b"STARTTLS" not in client.capabilities():
                    raise MailboxError("tls", "STARTTLS was required but the server does not "
                                       "offer it", transient=False)
                client.starttls(context)
            if s.auth == "xoauth2":
                client.oauth2_login(s.login, s.oauth_token())
            else:
                password = s.password().reveal()
                if (s.login + password).isascii():
                    client.login(s.login, password)
                elif b"AUTH=PLAIN" in client.capabilities():  # UTF-8, where LOGIN is ASCII only
                    client.plain_login(s.login, password)
                else:
                    raise MailboxError("auth", f"the login {s.login} or its password has "
                                       "non-ASCII characters, which IMAP LOGIN cannot send, "
                                       "and the server offers no AUTH=PLAIN; use an ASCII "
                                       "password", transient=False)
        except LoginError as exc:
            _close(client)
            raise MailboxError("auth", f"the server refused the login {s.login}: "
                               f"{s.mask(_text(exc))}", transient=False) from None
        except ssl.SSLError as exc:
            _close(client)
            raise MailboxError("tls", f"STARTTLS failed: {exc.reason or exc}",
                               transient=False) from None
        except MailboxError:
            _close(client)
            raise
        except (OSError, IMAPClientError) as exc:
            _close(client)
            raise MailboxError("connect", s.mask(_text(exc))) from None
        return client

    def read(self, handle: Handle, set_aside: Report | None = None) -> int:
        """Pass every new message to ``handle``, recording each one at once; return how many
        were taken (handled or set aside). ``set_aside`` hears of each message set aside."""
        count = 0

        def cycle() -> None:
            nonlocal count
            client = self.connect()
            try:
                for uid, message in self._messages(client):
                    reason = message if isinstance(message, str) else None
                    if isinstance(message, Fetched):
                        try:
                            handle(message)
                        except SetAside as exc:
                            reason = exc.reason
                    if reason is None:
                        self._mark(client, uid)
                    else:
                        if self.settings.processed != "none":
                            client.add_flags([uid], [SET_ASIDE_FLAG], silent=True)
                        if set_aside is not None:
                            set_aside(SetAsideMessage(str(uid), reason))
                    self._save(uid)
                    count += 1
            except (TimeoutError, OSError, IMAPClientAbortError) as exc:
                raise MailboxError("read", f"connection lost: {exc}") from None
            except IMAPClientError as exc:
                raise MailboxError("read", "the server refused a command: "
                                   f"{self.settings.mask(_text(exc))}") from None
            finally:
                _close(client)

        self.retry(cycle)
        return count

    def _messages(self, client: imapclient.IMAPClient) -> Iterator[tuple[int, Fetched | str]]:
        """(UID, message) for each new message; a message the server would not give is
        (UID, the server's reason)."""
        uids = self._new_uids(client, readonly=False)
        for start in range(0, len(uids), BATCH):
            chunk = uids[start:start + BATCH]
            try:
                data = client.fetch(chunk, [_BODY, b"RFC822.SIZE"])
            except IMAPClientAbortError:
                raise
            except IMAPClientError:  # one message the server cannot give: ask one by one
                yield from (self._fetch_one(client, uid) for uid in chunk)
                continue
            yield from ((uid, _fetched(uid, data[uid])) for uid in chunk if uid in data)

    def _new_uids(self, client: imapclient.IMAPClient, *, readonly: bool) -> list[int]:
        """Select the folder; the UIDs of the messages not taken yet, in order."""
        s = self.settings
        info = client.select_folder(s.folder, readonly=readonly)
        validity = int(info[b"UIDVALIDITY"])
        saved = json.loads(self.state.kv_get(s.state_key) or "{}")
        last = int(saved.get("last_uid", 0)) if saved.get("uidvalidity") == validity else 0
        self._validity, self._folder_ready = validity, False
        criteria: list[Any] = ["UID", f"{last + 1}:*", "UNKEYWORD", SET_ASIDE_FLAG.decode()]
        if s.processed == "flag":
            criteria += ["UNKEYWORD", PROCESSED_FLAG.decode()]
        return sorted(uid for uid in client.search(criteria) if uid > last)

    def _fetch_one(self, client: imapclient.IMAPClient, uid: int) -> tuple[int, Fetched | str]:
        try:
            data = client.fetch([uid], [_BODY, b"RFC822.SIZE"])
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            return uid, f"the server would not give the message: {self.settings.mask(_text(exc))}"
        return (uid, _fetched(uid, data[uid])) if uid in data else (
            uid, "the server returned no data for the message")

    def _mark(self, client: imapclient.IMAPClient, uid: int) -> None:
        s = self.settings
        if s.processed == "flag":
            client.add_flags([uid], [PROCESSED_FLAG, imapclient.SEEN], silent=True)
        elif s.processed == "move":
            if not self._folder_ready and not client.folder_exists(s.move_to):
                client.create_folder(s.move_to)
            self._folder_ready = True
            if client.has_capability("MOVE"):
                client.move([uid], s.move_to)
            else:
                client.copy([uid], s.move_to)
                client.delete_messages([uid])
                client.uid_expunge([uid])
        elif s.processed == "delete":
            client.delete_messages([uid])
            client.expunge()

    def _save(self, last_uid: int) -> None:
        self.state.kv_set(self.settings.state_key, json.dumps(
            {"uidvalidity": self._validity, "last_uid": last_uid}))


def _fetched(uid: int, item: dict[bytes, Any]) -> Fetched | str:
    body = next((v for k, v in item.items() if k.startswith(b"BODY[")), None)
    if body is None:  # Dovecot, when the message file vanished under it
        return "the server returned no content for the message"
    return Fetched(str(uid), bytes(body), int(item.get(b"RFC822.SIZE", len(body))))


def idle_wait(reader: ImapReader, seconds: float) -> bool:
    """Wait up to ``seconds`` for new mail with IMAP IDLE; ``True`` when the server said
    something arrived, or at once when a message not taken yet is already there (it came
    after the last read, before the IDLE). Without IDLE, or when the server cannot be
    reached, it just waits."""
    try:
        client = reader.connect()
    except MailboxError as exc:
        if not exc.transient:
            raise
        time.sleep(seconds)
        return False
    try:
        if reader._new_uids(client, readonly=True):
            return True
        if not client.has_capability("IDLE"):
            time.sleep(seconds)
            return False
        client.idle()
        try:
            responses = client.idle_check(timeout=seconds)
        finally:
            client.idle_done()
        return any(b"EXISTS" in r for r in responses if isinstance(r, tuple))
    except (OSError, IMAPClientError):
        return False
    finally:
        _close(client)


def _close(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # already gone: only the socket is left to release
        with contextlib.suppress(Exception):
            client.shutdown()


def _text(exc: BaseException) -> str:
    text = str(exc)
    return text[2:-1] if text.startswith("b'") else text
