"""IMAP reader: incremental by UID, UIDVALIDITY respected, processed messages flagged or moved.

Progress is saved after each batch is processed *and* marked, so a crash re-reads at most one
batch (the effects of a report are idempotent). A dropped connection is retried with
backoff; a refused login never is.
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

from mailfleet.errors import MailboxError
from mailfleet.mailbox.settings import (
    MailboxSettings,
    ReaderState,
    connect_error,
    reconnect_policy,
)
from mailfleet.providers import Security

PROCESSED_FLAG = b"$MailfleetProcessed"
BATCH = 50


@attrs.frozen
class Fetched:
    """One message from the mailbox: its id there (UID or UIDL) and its bytes."""

    id: str
    raw: bytes = attrs.field(repr=lambda r: f"<{len(r)} bytes>")


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
                client.login(s.login, s.password().reveal())
        except LoginError as exc:
            _close(client)
            raise MailboxError("auth", f"the server refused the login {s.login}: "
                               f"{_text(exc)}", transient=False) from None
        except ssl.SSLError as exc:
            _close(client)
            raise MailboxError("tls", f"STARTTLS failed: {exc.reason or exc}",
                               transient=False) from None
        except (OSError, IMAPClientError) as exc:
            _close(client)
            raise MailboxError("connect", str(exc)) from None
        return client

    def read(self, handle: Callable[[Fetched], Any]) -> int:
        """Pass every new message to ``handle``, mark it, save progress; return the count."""
        count = 0

        def cycle() -> None:
            nonlocal count
            client = self.connect()
            try:
                for batch in self._batches(client):
                    for message in batch:
                        handle(message)
                    self._mark(client, [int(m.id) for m in batch])
                    self._save(client, max(int(m.id) for m in batch))
                    count += len(batch)
            except (TimeoutError, OSError, IMAPClientAbortError) as exc:
                raise MailboxError("read", f"connection lost: {exc}") from None
            finally:
                _close(client)

        self.retry(cycle)
        return count

    def _batches(self, client: imapclient.IMAPClient) -> Iterator[list[Fetched]]:
        s = self.settings
        info = client.select_folder(s.folder)
        validity = int(info[b"UIDVALIDITY"])
        saved = json.loads(self.state.kv_get(s.state_key) or "{}")
        last = int(saved.get("last_uid", 0)) if saved.get("uidvalidity") == validity else 0
        self._validity = validity
        criteria: list[Any] = ["UID", f"{last + 1}:*"]
        if s.processed == "flag":
            criteria += ["UNKEYWORD", PROCESSED_FLAG.decode()]
        uids = sorted(uid for uid in client.search(criteria) if uid > last)
        for start in range(0, len(uids), BATCH):
            chunk = uids[start:start + BATCH]
            data = client.fetch(chunk, [b"BODY.PEEK[]"])
            yield [Fetched(str(uid), data[uid][b"BODY[]"]) for uid in chunk if uid in data]

    def _mark(self, client: imapclient.IMAPClient, uids: list[int]) -> None:
        s = self.settings
        if s.processed == "flag":
            client.add_flags(uids, [PROCESSED_FLAG, imapclient.SEEN])
        elif s.processed == "move":
            if not client.folder_exists(s.move_to):
                client.create_folder(s.move_to)
            if client.has_capability("MOVE"):
                client.move(uids, s.move_to)
            else:
                client.copy(uids, s.move_to)
                client.delete_messages(uids)
                client.uid_expunge(uids)
        elif s.processed == "delete":
            client.delete_messages(uids)
            client.expunge()

    def _save(self, client: imapclient.IMAPClient, last_uid: int) -> None:
        self.state.kv_set(self.settings.state_key, json.dumps(
            {"uidvalidity": self._validity, "last_uid": last_uid}))


def idle_wait(reader: ImapReader, seconds: float) -> bool:
    """Wait up to ``seconds`` for new mail with IMAP IDLE; ``True`` when the server said
    something arrived. Without IDLE, or when the server cannot be reached, it just waits."""
    try:
        client = reader.connect()
    except MailboxError as exc:
        if not exc.transient:
            raise
        time.sleep(seconds)
        return False
    try:
        client.select_folder(reader.settings.folder, readonly=True)
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
