"""Hostile IMAP and POP3 servers on 127.0.0.1, scripted to misbehave (plain TCP, free port).

- :class:`HostileImap`: serves ``messages``; refuses LOGIN or AUTHENTICATE PLAIN echoing the
  password, answers SELECT with one line of ``huge_line`` bytes, or refuses a FETCH naming an
  ``unfetchable`` UID.
- :class:`HostilePop3`: serves ``messages`` (sent as they are, dot-stuffed, so a line may be
  megabytes long), with an optional huge greeting, a PASS refusal that echoes the password,
  and RETR refused for chosen message numbers.

Each runs an asyncio server in a background thread: ``with HostilePop3(...) as server:``.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from types import TracebackType
from typing import Self

from mailfleet_testing._util import LOCALHOST


class ScriptedServer:
    """An asyncio TCP server on a free port of 127.0.0.1, one :meth:`session` per client."""

    host = LOCALHOST

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.commands: list[bytes] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self.session(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away, or sent a line longer than the stream limit
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _line(self, reader: asyncio.StreamReader) -> bytes:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        self.commands.append(line.rstrip(b"\r\n"))
        return line.rstrip(b"\r\n")

    def start(self) -> Self:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        async def open_server() -> None:
            self._server = await asyncio.start_server(self._serve, LOCALHOST, 0)
            self.port = self._server.sockets[0].getsockname()[1]

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(open_server())
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):  # each session then ends on its next read
                writer.transport.abort()
            sessions = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.wait(sessions, timeout=2) if sessions else None

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class HostileImap(ScriptedServer):
    """IMAP4rev1 just far enough for the reader (LOGIN, SELECT, UID SEARCH/FETCH/STORE),
    serving ``messages`` as UIDs 1, 2, … and misbehaving as asked: a batch FETCH that names a
    UID in ``unfetchable`` is refused whole (as Gmail does: "Some messages could not be
    FETCHed")."""

    def __init__(self, messages: list[bytes] | None = None, *, echo_password: bool = False,
                 huge_line: int = 0, unfetchable: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.messages = messages or []
        self.echo_password = echo_password
        self.huge_line = huge_line
        self.unfetchable = unfetchable
        self.flags: dict[int, set[bytes]] = {n: set() for n in range(1, len(self.messages) + 1)}

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hostile ready\r\n")
        while True:
            tag, _, rest = (await self._line(reader)).partition(b" ")
            command, _, args = rest.partition(b" ")
            verb = command.upper()
            if verb == b"UID":
                command, _, args = args.partition(b" ")
                writer.write(self._uid(tag, command.upper(), args))
            elif verb == b"CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif verb == b"AUTHENTICATE" and args.upper() == b"PLAIN":
                writer.write(b"+ \r\n")
                await writer.drain()
                _, _, password = base64.b64decode(await self._line(reader)).split(b"\0")
                writer.write(tag + (b" NO [AUTHENTICATIONFAILED] wrong password " + password
                                    if self.echo_password else b" OK logged in") + b"\r\n")
            elif verb == b"LOGIN":
                if self.echo_password:  # the user name, then the password as the client sent it
                    password = args.partition(b" ")[2]
                    writer.write(tag + b" NO [AUTHENTICATIONFAILED] wrong password "
                                 + password + b"\r\n")
                else:
                    writer.write(tag + b" OK logged in\r\n")
            elif verb in (b"SELECT", b"EXAMINE"):
                if self.huge_line:
                    writer.write(b"* OK [ALERT] " + b"x" * self.huge_line + b"\r\n")
                writer.write(f"* {len(self.messages)} EXISTS\r\n".encode()
                             + b"* OK [UIDVALIDITY 1] ok\r\n" + tag + b" OK [READ-WRITE] ok\r\n")
            elif verb == b"LOGOUT":
                writer.write(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(tag + b" BAD unknown command\r\n")
            await writer.drain()

    def _uid(self, tag: bytes, command: bytes, args: bytes) -> bytes:
        if command == b"SEARCH":  # every message without a keyword: enough for the reader
            found = [uid for uid, flags in self.flags.items()
                     if not any(f.startswith(b"$") for f in flags)]
            return (b"* SEARCH " + b" ".join(b"%d" % u for u in found) + b"\r\n"
                    + tag + b" OK done\r\n")
        uid_set, _, items = args.partition(b" ")
        uids = [int(u) for u in uid_set.split(b",")]
        if command == b"STORE":
            for uid in uids:
                self.flags[uid].update(items.partition(b"(")[2].rstrip(b")").split())
            return tag + b" OK stored\r\n"
        if command == b"FETCH":
            if len(uids) > 1 and self.unfetchable & set(uids):
                return tag + b" NO Some messages could not be FETCHed (Failure)\r\n"
            if self.unfetchable & set(uids):
                return tag + b" NO [UNAVAILABLE] the message could not be read\r\n"
            out = b""
            for uid in uids:
                raw = self.messages[uid - 1]
                out += (b"* %d FETCH (UID %d RFC822.SIZE %d BODY[]<0> {%d}\r\n"
                        % (uid, uid, len(raw), len(raw)) + raw + b")\r\n")
            return out + tag + b" OK fetched\r\n"
        return tag + b" BAD unknown UID command\r\n"


class HostilePop3(ScriptedServer):
    """POP3 (RFC 1939 plus UIDL) serving ``messages``, misbehaving as asked."""

    def __init__(self, messages: list[bytes], *, password: str = "pw",  # noqa: S107
                 echo_password: bool = False, greeting_size: int = 0,
                 refuse_retr: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.messages = messages
        self.password = password
        self.echo_password = echo_password
        self.greeting_size = greeting_size
        self.refuse_retr = refuse_retr

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK hostile ready " + b"x" * self.greeting_size + b"\r\n")
        while True:
            command, _, arg = (await self._line(reader)).partition(b" ")
            verb = command.upper()
            if verb == b"USER":
                writer.write(b"+OK\r\n")
            elif verb == b"PASS":
                if arg.decode() == self.password and not self.echo_password:
                    writer.write(b"+OK logged in\r\n")
                else:
                    writer.write(b"-ERR [AUTH] wrong password " + arg + b"\r\n")
            elif verb == b"UIDL":
                writer.write(b"+OK\r\n" + b"".join(
                    f"{n} uid-{n}\r\n".encode() for n in range(1, len(self.messages) + 1))
                    + b".\r\n")
            elif verb == b"RETR":
                number = int(arg)
                if number in self.refuse_retr or not 1 <= number <= len(self.messages):
                    writer.write(b"-ERR no such message\r\n")
                else:
                    writer.write(b"+OK message follows\r\n")
                    for line in self.messages[number - 1].splitlines(keepends=True):
                        writer.write((b"." if line.startswith(b".") else b"") + line)
                        await writer.drain()
                    writer.write(b".\r\n")
            elif verb in (b"DELE", b"NOOP"):
                writer.write(b"+OK\r\n")
            elif verb == b"QUIT":
                writer.write(b"+OK bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"-ERR unknown command\r\n")
            await writer.drain()
