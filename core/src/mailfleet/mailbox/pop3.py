"""POP3 reader: leaves messages on the server by default and remembers what it read by UIDL.

Each message is handled and remembered before the next one is downloaded. Lines of any length
are read: a message keeps its first :data:`MAX_BYTES` (the parser's own input cap) and the rest
is read off the wire and dropped, so neither a 1 MB line nor a 30 MB report fails the fetch or
fills the memory. A message the handler sets aside (:class:`SetAside`) is remembered as read
and never deleted. With ``processed = "delete"``, a message handled in a session that ended
before QUIT (whose deletion the server therefore dropped) is deleted in the next one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import poplib
import ssl
from collections.abc import Callable

from mailfleet.bounces.mime import MAX_BYTES
from mailfleet.errors import MailboxError
from mailfleet.mailbox.budget import SetAside, SetAsideMessage
from mailfleet.mailbox.imap import Fetched, Handle, Report
from mailfleet.mailbox.settings import (
    MailboxSettings,
    ReaderState,
    connect_error,
    reconnect_policy,
)
from mailfleet.plugins.providers import Security

_CHUNK = 65536


class _Pop3(poplib.POP3):
    """poplib with lines of any length (poplib refuses any over 2,048 bytes) and a download
    that keeps only the first bytes of a message."""

    def _getline(self) -> tuple[bytes, int]:  # replaces poplib's, used by all its commands
        line = self.file.readline(_CHUNK)
        octets = len(line)
        if not line:
            raise ConnectionError("the server closed the connection")
        if not line.endswith(b"\n"):
            kept = bytearray(line)
            while line and not line.endswith(b"\n"):
                line = self.file.readline(_CHUNK)
                octets += len(line)
                if len(kept) < MAX_BYTES:
                    kept += line
            line = bytes(kept[:MAX_BYTES])
        return line.removesuffix(b"\n").removesuffix(b"\r"), octets

    def retrieve(self, which: int) -> tuple[bytes, int]:
        """RETR: the message's first :data:`MAX_BYTES` and its whole size."""
        self.sock.sendall(f"RETR {which}\r\n".encode())
        reply, _ = self._getline()
        if not reply.startswith(b"+"):
            raise poplib.error_proto(reply)
        kept, size = bytearray(), 0
        while True:
            line, octets = self._getline()
            if line == b".":
                break
            if line.startswith(b".."):
                line, octets = line[1:], octets - 1
            size += octets
            if len(kept) < MAX_BYTES:
                kept += line + b"\r\n"
        return bytes(kept[:MAX_BYTES]), size


class _Pop3SSL(_Pop3, poplib.POP3_SSL):
    pass


class Pop3Reader:
    """Reads the messages whose UIDL it has not seen; deletes them only when configured."""

    def __init__(self, settings: MailboxSettings, state: ReaderState, *,
                 attempts: int = 4, sleep: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self.state = state
        self.retry = reconnect_policy(attempts, sleep)

    def connect(self) -> _Pop3:
        s = self.settings
        context = s.tls_context() if s.security is not Security.NONE else None
        try:
            if s.security is Security.SSL:
                client: _Pop3 = _Pop3SSL(s.host, s.port, timeout=s.timeout, context=context)
            else:
                client = _Pop3(s.host, s.port, timeout=s.timeout)
        except OSError as exc:  # ssl.SSLError included
            raise connect_error(s, exc) from None
        except poplib.error_proto as exc:
            raise MailboxError("connect", f"{s.host}:{s.port} is not a POP3 server: "
                               f"{s.mask(_text(exc))}") from None
        try:
            if s.security is Security.STARTTLS:
                try:
                    client.stls(context)
                except poplib.error_proto as exc:
                    raise MailboxError("tls", f"STARTTLS was required but refused: "
                                       f"{s.mask(_text(exc))}", transient=False) from None
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
            raise MailboxError("auth", f"the server refused the login {s.login}: "
                               f"{s.mask(_text(exc))}", transient=False) from None
        except MailboxError:
            _quit(client)
            raise
        except (OSError, ssl.SSLError) as exc:
            _quit(client)
            raise MailboxError("connect", s.mask(str(exc))) from None
        return client

    def read(self, handle: Handle, set_aside: Report | None = None) -> int:
        """Pass every unseen message to ``handle``, remembering each one at once; return how
        many were taken (handled or set aside). ``set_aside`` hears of each message set
        aside; a message the server refuses to give is reported and tried again next time."""
        count = 0

        def cycle() -> None:
            nonlocal count
            s = self.settings
            client = self.connect()
            done = False
            try:
                listing = _listing(client.uidl()[1])
                seen = _Seen(self.state, s.state_key, {uid for _, uid in listing})
                for number, uid in listing:
                    if uid in seen:
                        if s.processed == "delete" and uid not in seen.aside:
                            client.dele(number)  # handled before, its deletion never committed
                        continue
                    try:
                        raw, size = client.retrieve(number)
                    except poplib.error_proto as exc:
                        if set_aside is not None:
                            set_aside(SetAsideMessage(uid, "the server would not give the "
                                                      f"message: {s.mask(_text(exc))}"))
                        continue
                    try:
                        handle(Fetched(uid, raw, size))
                    except SetAside as exc:
                        seen.set_aside(uid)
                        if set_aside is not None:
                            set_aside(SetAsideMessage(uid, exc.reason))
                    else:
                        if s.processed == "delete":
                            client.dele(number)  # committed by QUIT below
                    seen.add(uid)
                    count += 1
                client.quit()  # commits deletions
                done = True
            except (OSError, poplib.error_proto) as exc:
                raise MailboxError("read", f"connection lost: {s.mask(_text(exc))}") from None
            finally:
                if not done:
                    _quit(client)

        self.retry(cycle)
        return count


class _Seen:
    """The UIDLs already read, kept in the store under ``key`` (a JSON list, forgetting those
    no longer on the server) plus ``key#new`` for the latest ones. Remembering a message
    rewrites only ``key#new``; it is folded into ``key`` once it holds about the square root
    of the total, so 20,000 messages cost O(n^1.5) bytes written, not O(n^2). The messages
    set aside (never to be deleted) are also listed under ``key#aside``."""

    def __init__(self, state: ReaderState, key: str, on_server: set[str]) -> None:
        self.state, self.key = state, key
        stored = set(json.loads(state.kv_get(key) or "[]"))
        recent = set(json.loads(state.kv_get(key + "#new") or "[]"))
        self.base = (stored | recent) & on_server  # forget UIDLs of messages that are gone
        self.recent: set[str] = set()
        if recent or stored != self.base:
            self._fold()
        self.aside = set(json.loads(state.kv_get(key + "#aside") or "[]")) & on_server

    def set_aside(self, uid: str) -> None:
        self.aside.add(uid)
        self.state.kv_set(self.key + "#aside", json.dumps(sorted(self.aside)))

    def __contains__(self, uid: str) -> bool:
        return uid in self.base or uid in self.recent

    def add(self, uid: str) -> None:
        self.recent.add(uid)
        if len(self.recent) ** 2 > max(len(self.base), 2500):
            self._fold()
        else:
            self.state.kv_set(self.key + "#new", json.dumps(sorted(self.recent)))

    def _fold(self) -> None:
        self.base |= self.recent
        self.recent = set()
        self.state.kv_set(self.key, json.dumps(sorted(self.base)))
        self.state.kv_set(self.key + "#new", "[]")


def _listing(lines: list[bytes]) -> list[tuple[int, str]]:
    """(message number, UIDL) from a UIDL listing; malformed lines are left out."""
    out = []
    for line in lines:
        parts = line.decode("ascii", "replace").split()
        if len(parts) == 2 and parts[0].isdigit():
            out.append((int(parts[0]), parts[1]))
    return out


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(exc)


def _quit(client: poplib.POP3) -> None:
    with contextlib.suppress(Exception):  # already closed
        client.close()
