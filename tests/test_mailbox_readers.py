"""Reading the bounce mailbox from a real Dovecot over IMAP and POP3."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mailfleet.config import BouncesConfig
from mailfleet.errors import MailboxError
from mailfleet.mailbox.imap import Fetched, ImapReader
from mailfleet.mailbox.pop3 import Pop3Reader
from mailfleet.mailbox.settings import resolve_mailbox
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret
from mailfleet_testing.dovecot import Mailbox


class MemoryState:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def kv_get(self, key: str) -> str | None:
        return self.values.get(key)

    def kv_set(self, key: str, value: str) -> None:
        self.values[key] = value


def report(n: int) -> bytes:
    return (f"From: MAILER-DAEMON@test.local\r\nTo: bounces@test.local\r\n"
            f"Subject: Undelivered Mail {n}\r\nMessage-ID: <b{n}@test.local>\r\n\r\n"
            f"body {n}\r\n").encode()


def settings_for(box: Mailbox, protocol: str = "imap", security: str = "ssl",
                 port: int | None = None, **extra: Any) -> Any:
    ports = {("imap", "ssl"): box.imaps_port, ("imap", "starttls"): box.imap_port,
             ("pop3", "ssl"): box.pop3s_port, ("pop3", "starttls"): box.pop3_port}
    config = BouncesConfig(protocol=protocol, host=box.host,  # type: ignore[arg-type]
                           port=port or ports[(protocol, security)],
                           security=Security(security), login=box.login,
                           password=Secret(box.password),
                           ca_file=str(box.ca_file), timeout=5.0, **extra)
    return resolve_mailbox(config)


def collect(reader: ImapReader | Pop3Reader) -> list[Fetched]:
    got: list[Fetched] = []
    reader.read(got.append)
    return got


def no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_imap_reads_new_messages_and_flags_them(mailbox: Mailbox, security: str) -> None:
    for n in range(3):
        mailbox.append(report(n))
    state = MemoryState()
    reader = ImapReader(settings_for(mailbox, security=security), state)
    assert [b"Undelivered Mail 0" in m.raw for m in collect(reader)] == [True, False, False]
    assert collect(reader) == []
    with mailbox.imap() as client:
        client.select_folder("INBOX")
        flags = client.get_flags(client.search("ALL"))
        assert all(b"$MailfleetProcessed" in f for f in flags.values())
        assert len(flags) == 3  # flagged, never deleted


def test_imap_rerun_reads_only_messages_that_arrived_since(mailbox: Mailbox) -> None:
    state = MemoryState()
    reader = ImapReader(settings_for(mailbox, processed="none"), state)
    mailbox.append(report(1))
    mailbox.append(report(2))
    assert len(collect(reader)) == 2
    mailbox.append(report(3))
    [new] = collect(reader)
    assert b"Undelivered Mail 3" in new.raw


def test_imap_moves_processed_messages_to_the_configured_folder(mailbox: Mailbox) -> None:
    mailbox.append(report(1))
    reader = ImapReader(settings_for(mailbox, processed="move", move_to="Done"), MemoryState())
    assert len(collect(reader)) == 1
    assert mailbox.fetch_all("INBOX") == [] and len(mailbox.fetch_all("Done")) == 1


def test_imap_uidvalidity_change_resets_progress(mailbox: Mailbox) -> None:
    state = MemoryState()
    reader = ImapReader(settings_for(mailbox, processed="none", folder="Bounces"), state)
    mailbox.append(report(1), folder="Bounces")
    mailbox.append(report(2), folder="Bounces")
    assert len(collect(reader)) == 2
    with mailbox.imap() as client:  # the mailbox is reset: new folder, new UIDVALIDITY
        client.delete_folder("Bounces")
    mailbox.append(report(3), folder="Bounces")
    [again] = collect(reader)  # UID 1 again, but under a new UIDVALIDITY
    assert b"Undelivered Mail 3" in again.raw


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 that cuts the first ``drops`` connections at once."""

    def __init__(self, target_port: int, drops: int) -> None:
        self.target_port = target_port
        self.drops = drops
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.drops:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy_factory() -> Iterator[Any]:
    proxies: list[DroppingProxy] = []

    def make(port: int, drops: int) -> DroppingProxy:
        proxies.append(DroppingProxy(port, drops))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


def test_imap_reconnects_after_a_dropped_connection(mailbox: Mailbox,
                                                    proxy_factory: Any) -> None:
    mailbox.append(report(1))
    proxy = proxy_factory(mailbox.imaps_port, drops=2)
    reader = ImapReader(settings_for(mailbox, port=proxy.port), MemoryState(), sleep=no_sleep)
    assert len(collect(reader)) == 1
    assert proxy.connections == 3


def test_imap_login_failure_is_never_retried(mailbox: Mailbox, proxy_factory: Any) -> None:
    proxy = proxy_factory(mailbox.imaps_port, drops=0)
    settings = settings_for(mailbox, port=proxy.port)
    object.__setattr__(settings, "secret", BouncesConfig(password=Secret("wrong")).secret_ref())
    reader = ImapReader(settings, MemoryState(), sleep=no_sleep)
    with pytest.raises(MailboxError, match="auth: the server refused the login"):
        collect(reader)
    assert proxy.connections == 1


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_pop3_keeps_messages_and_remembers_uidls(mailbox: Mailbox, security: str) -> None:
    mailbox.append(report(1))
    mailbox.append(report(2))
    state = MemoryState()
    reader = Pop3Reader(settings_for(mailbox, "pop3", security), state)
    assert len(collect(reader)) == 2
    assert collect(reader) == []
    mailbox.append(report(3))
    [new] = collect(reader)
    assert b"Undelivered Mail 3" in new.raw
    assert len(mailbox.fetch_all()) == 3  # left on the server


def test_pop3_deletes_after_download_when_asked(mailbox: Mailbox) -> None:
    mailbox.append(report(1))
    reader = Pop3Reader(settings_for(mailbox, "pop3", processed="delete"), MemoryState())
    assert len(collect(reader)) == 1
    assert mailbox.fetch_all() == []


def test_pop3_reconnects_after_a_dropped_connection(mailbox: Mailbox,
                                                    proxy_factory: Any) -> None:
    mailbox.append(report(1))
    proxy = proxy_factory(mailbox.pop3s_port, drops=1)
    reader = Pop3Reader(settings_for(mailbox, "pop3", port=proxy.port), MemoryState(),
                        sleep=no_sleep)
    assert len(collect(reader)) == 1 and proxy.connections == 2


def test_mailbox_presets_come_from_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailfleet.plugins.manager import load_plugins

    config = BouncesConfig(protocol="pop3", login="bounces@yandex.ru", password_env="X")
    settings = resolve_mailbox(config, load_plugins())
    assert (settings.host, settings.port, settings.security) == ("pop.yandex.ru", 995,
                                                                 Security.SSL)


def test_plain_mailbox_login_is_refused_unless_allowed() -> None:
    from mailfleet.errors import ConfigError

    config = BouncesConfig(host="imap.example.com", security=Security.NONE,
                           login="b@example.com", password_env="X")
    with pytest.raises(ConfigError, match=r"bounces\.security"):
        resolve_mailbox(config)


def test_imap_untrusted_certificate_is_refused_without_retry(
        mailbox: Mailbox, tls_certs: Any, proxy_factory: Any) -> None:
    proxy = proxy_factory(mailbox.imaps_port, drops=0)
    settings = settings_for(mailbox, port=proxy.port)
    object.__setattr__(settings, "ca_file", str(tls_certs.untrusted.ca_file))
    with pytest.raises(MailboxError, match="tls"):
        collect(ImapReader(settings, MemoryState(), sleep=no_sleep))
    assert proxy.connections == 1


def test_a_report_that_came_before_the_idle_wakes_the_watcher_at_once(
        mailbox: Mailbox) -> None:
    import time

    from mailfleet.mailbox.imap import idle_wait

    reader = ImapReader(settings_for(mailbox), MemoryState())
    mailbox.append(report(1))  # after the last read, before the watcher waits again
    started = time.monotonic()
    assert idle_wait(reader, 30.0)
    assert time.monotonic() - started < 10
    assert len(collect(reader)) == 1
    assert not idle_wait(reader, 0.5)  # taken: nothing new any more


def test_imap_idle_wakes_the_watcher_when_a_report_arrives(mailbox: Mailbox) -> None:
    import time

    from mailfleet.mailbox.imap import idle_wait

    reader = ImapReader(settings_for(mailbox), MemoryState())
    timer = threading.Timer(0.5, mailbox.append, args=(report(1),))
    timer.start()
    started = time.monotonic()
    assert idle_wait(reader, 30.0)  # woken by the new message, long before 30 s
    assert time.monotonic() - started < 20
    timer.join()
    assert len(collect(reader)) == 1
