"""Shared helpers of the mailing tests: real FakeSMTP servers, a fleet on them, a store.

Imported by the other ``test_mailing_*`` modules; it holds no tests itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mailfleet.clock import FakeClock
from mailfleet.config import parse_config
from mailfleet.events import DeliveryEvent
from mailfleet.hookspecs import hookimpl
from mailfleet.mailings.mailing import CreateResult, create_mailing
from mailfleet.mailings.template import Template
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

PASSWORD = "s3cret-pw"


class Recorder:
    """An event observer plugin."""

    def __init__(self) -> None:
        self.events: list[DeliveryEvent] = []

    @hookimpl
    def mailfleet_event(self, event: DeliveryEvent) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [str(e.type) for e in self.events]


@pytest.fixture
def certs(tls_certs: TLSCerts) -> TLSCerts:
    """The shared test CA (``tls_certs`` of mailfleet_testing), under the name these tests use."""
    return tls_certs


@pytest.fixture
def servers(smtp_factory: Callable[..., FakeSMTP]) -> list[FakeSMTP]:
    """Three independent FakeSMTP servers (STARTTLS + AUTH), users a@ b@ c@example.org."""
    return [smtp_factory(users={f"{name}@example.org": PASSWORD}) for name in ("a", "b", "c")]


def server_entry(name: str, smtp: FakeSMTP, certs: TLSCerts, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name, "sender": f"{name}@example.org", "host": "127.0.0.1", "port": smtp.port,
        "security": "starttls", "login": f"{name}@example.org", "password": PASSWORD,
        "ca_file": str(certs.ca_file), "timeout": 10.0, "connections": 1,
        "priority": 10 * (ord(name[0]) - ord("a") + 1)}
    entry.update(extra)
    return entry


def make_fleet(entries: Sequence[Mapping[str, Any]], store: Path,
               recorder: Recorder | None = None,
               retry: Mapping[str, Any] | None = None) -> Fleet:
    config = parse_config({"deployment": {"store": str(store)}, "servers": list(entries),
                           "retry": {"connect_attempts": 1, **(retry or {})}})
    plugins = load_plugins([("recorder", recorder)] if recorder else [], entry_points=False)
    return Fleet(config, plugins)


TEMPLATE = Template(subject="Hello {{ name }}", text="Dear {{ name }},\nnews.\n",
                    html="<p>Dear {{ name }}</p>", sender="news@example.net",
                    sender_name="News")


def people(count: int, start: int = 1) -> list[dict[str, str]]:
    return [{"email": f"user{i}@dest.test", "name": f"User {i}"}
            for i in range(start, start + count)]


def new_mailing(store: SqliteStore, count: int, clock: FakeClock,
                template: Template = TEMPLATE, **kwargs: Any) -> CreateResult:
    return create_mailing(store, template, people(count), clock=clock, **kwargs)


def dispatcher(fleet: Fleet, store: SqliteStore, clock: FakeClock, **kwargs: Any) -> Dispatcher:
    kwargs.setdefault("batch_size", 10)
    return Dispatcher(fleet, store, clock=clock, **kwargs)


def recipients_of(smtp: FakeSMTP) -> list[str]:
    return [rcpt for m in smtp.messages for rcpt in m.rcpt_tos]
