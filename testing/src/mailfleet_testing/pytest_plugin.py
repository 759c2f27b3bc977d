"""pytest fixtures with real servers on 127.0.0.1 (entry point ``pytest11: mailfleet``).

Session fixtures start each server once per test run (lazily, only when a test asks for it);
function fixtures give every test a clean view. A missing server binary skips the test, or fails
it when ``CI=true`` or ``MAILFLEET_SERVERS_REQUIRED=1``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest

from mailfleet_testing._util import (
    ServerUnavailable,
    make_server_dir,
    remove_tree,
    servers_required,
)
from mailfleet_testing.certs import TLSCerts, make_certs
from mailfleet_testing.dovecot import DovecotServer, Mailbox
from mailfleet_testing.postfix import PostfixServer
from mailfleet_testing.postgres import PostgresServer
from mailfleet_testing.smtp_sink import SmtpSink
from mailfleet_testing.smtpd import FakeSMTP

__all__ = [
    "SMTP_PASSWORD",
    "SMTP_TOKEN",
    "SMTP_TOKENS",
    "SMTP_USER",
    "SMTP_USERS",
    "unavailable",
]

SMTP_USER = "sender@test.local"
SMTP_PASSWORD = "sender-pw"  # noqa: S105 - throwaway test credential
SMTP_TOKEN = "ya29.test-token"  # noqa: S105 - throwaway test credential
SMTP_USERS: dict[str, str] = {SMTP_USER: SMTP_PASSWORD, "other@test.local": "other-pw"}
SMTP_TOKENS: dict[str, str] = {SMTP_USER: SMTP_TOKEN}

T = TypeVar("T")


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail under ``CI=true`` / ``MAILFLEET_SERVERS_REQUIRED=1``."""
    if servers_required():
        pytest.fail(f"required test server unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _start(start: Callable[[], T]) -> T:
    try:
        return start()
    except ServerUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def tls_certs() -> Iterator[TLSCerts]:
    """Throwaway trusted + untrusted CA/leaf for 127.0.0.1/localhost (files in a 0755 temp dir)."""
    directory = make_server_dir("mailfleet-certs-")
    try:
        yield make_certs(directory)
    finally:
        remove_tree(directory)


@pytest.fixture(scope="session")
def smtp_server(tls_certs: TLSCerts) -> Iterator[FakeSMTP]:
    """Session FakeSMTP: users ``SMTP_USERS``, XOAUTH2 tokens ``SMTP_TOKENS``, STARTTLS + SMTPS."""
    server = FakeSMTP(tls_certs.trusted, users=SMTP_USERS, tokens=SMTP_TOKENS).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp(smtp_server: FakeSMTP) -> Iterator[FakeSMTP]:
    """The session FakeSMTP, reset (rules, messages, events, settings) before and after the test."""
    smtp_server.reset()
    try:
        yield smtp_server
    finally:
        smtp_server.reset()


@pytest.fixture
def smtp_factory(tls_certs: TLSCerts) -> Iterator[Callable[..., FakeSMTP]]:
    """``make(**FakeSMTP kwargs) -> started FakeSMTP`` (TLS from ``tls_certs``); stopped after."""
    started: list[FakeSMTP] = []

    def make(**kwargs: Any) -> FakeSMTP:
        kwargs.setdefault("tls", tls_certs.trusted)
        server = FakeSMTP(**kwargs).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def dovecot(tls_certs: TLSCerts) -> Iterator[DovecotServer]:
    """Private Dovecot 2.3: IMAP(+STARTTLS), IMAPS, POP3(+STLS), POP3S on 127.0.0.1."""
    server = _start(DovecotServer(tls_certs.trusted).start)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> Mailbox:
    """A fresh, empty ``u<hex>@test.local`` mailbox (password ``ANY_USER_PASSWORD``)."""
    return dovecot.mailbox()


@pytest.fixture(scope="session")
def postfix(tls_certs: TLSCerts, smtp_server: FakeSMTP,
            dovecot: DovecotServer) -> Iterator[PostfixServer]:
    """Private Postfix relaying to ``smtp_server.port`` (one try); SASL/@test.local via Dovecot."""
    server = _start(PostfixServer(tls_certs.trusted, smtp_server.port, dovecot).start)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """Postfix ``smtp-sink -a`` on a free port (plain SMTP only, no AUTH, no TLS)."""
    server = _start(SmtpSink().start)
    try:
        yield server
    finally:
        server.stop()


class _Prestart:
    """Start a slow server in a background thread while the first tests run."""

    def __init__(self, start: Callable[[], PostgresServer]) -> None:
        self._result: PostgresServer | None = None
        self._error: BaseException | None = None
        self.taken = False
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True,
                                        name="mailfleet-prestart")
        self._thread.start()

    def _run(self, start: Callable[[], PostgresServer]) -> None:
        try:
            self._result = start()
        except BaseException as exc:  # re-raised in the test thread by take()
            self._error = exc

    def take(self) -> PostgresServer:
        """Wait for the start; return the server or raise what the start raised."""
        self._thread.join()
        self.taken = True
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def discard(self) -> None:
        """Stop the server if no fixture took it."""
        if not self.taken:
            self._thread.join()
            if self._result is not None:
                self._result.stop()


_PG_PRESTART_KEY = pytest.StashKey[_Prestart]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Pre-start PostgreSQL (initdb ~1 s) in the background when collected tests need it.

    Disable with ``MAILFLEET_PRESTART=0``.
    """
    if os.environ.get("MAILFLEET_PRESTART", "1") == "0" or session.config.option.collectonly:
        return
    needed = {"postgres", "pg_dsn"}
    if any(needed & set(getattr(item, "fixturenames", ())) for item in session.items):
        session.stash[_PG_PRESTART_KEY] = _Prestart(PostgresServer().start)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop a pre-started server that no test used (e.g. deselected on this xdist worker)."""
    prestart = session.stash.get(_PG_PRESTART_KEY, None)
    if prestart is not None:
        prestart.discard()


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """Private PostgreSQL cluster (initdb + pg_ctl, trust auth, fsync off)."""
    prestart = request.session.stash.get(_PG_PRESTART_KEY, None)
    start = prestart.take if prestart is not None else PostgresServer().start
    server = _start(start)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> Iterator[str]:
    """DSN of a fresh database ``postgresql://postgres@127.0.0.1:PORT/t_<hex>``, dropped after."""
    dsn = postgres.create_database()
    try:
        yield dsn
    finally:
        postgres.drop_database(dsn.rsplit("/", 1)[1])
