"""Building a configured Fleet that points at the test SMTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from mailfleet.config import Config, Deployment, ServerConfig, parse_config
from mailfleet.errors import SmtpError
from mailfleet.plugins.manager import Plugins, load_plugins
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.servers import Server, resolve_servers
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.pytest_plugin import SMTP_USER
from mailfleet_testing.smtpd import FakeSMTP


def server_entry(smtp: FakeSMTP, certs: TLSCerts, *, name: str = "test",
                 security: str = "ssl", **overrides: Any) -> dict[str, Any]:
    """One ``[[servers]]`` table for ``smtp``: implicit TLS port for ssl, else the plain port."""
    entry: dict[str, Any] = {
        "name": name, "sender": SMTP_USER, "host": "127.0.0.1",
        "port": smtp.tls_port if security == "ssl" else smtp.port, "security": security,
        "login": SMTP_USER, "password_env": "MAILFLEET_TEST_PASSWORD",
        "ca_file": str(certs.ca_file), "timeout": 5.0,
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def fleet_for(*entries: dict[str, Any], plugins: Plugins | None = None,
              **deployment: Any) -> Fleet:
    return Fleet(parse_config({"deployment": deployment, "servers": list(entries)}), plugins)


def send_error(fleet: Fleet, to: str = "rcpt@example.org") -> SmtpError:
    """The SmtpError raised by sending one letter through the fleet's first server."""
    with pytest.raises(SmtpError) as info:
        asyncio.run(fleet.send_one(fleet.servers[0], to=to, subject="hi", text="hello"))
    return info.value


def resolve_with(defaults: Mapping[str, Any], deployment: Deployment | None = None,
                 **fields: Any) -> list[Server]:
    """One server config (``defaults`` overridden by ``fields``) resolved by every plugin."""
    config = Config(deployment=deployment or Deployment(),
                    servers=(ServerConfig(**{**defaults, **fields}),))
    return resolve_servers(config, load_plugins())


def provider_fleet(smtp: FakeSMTP, certs: TLSCerts, *, provider: str, box: str,
                   server_password: str, password: str | None = None, locale: str = "en",
                   starttls: bool = False, plugins: Plugins | None = None,
                   **fields: Any) -> Fleet:
    """A fleet with one ``provider`` server for mailbox ``box``, pointed at the fake server
    (implicit TLS, or STARTTLS); the fake accepts ``server_password``, the config sends
    ``password`` (default: the same)."""
    smtp.users = {box: server_password}
    port, security = (smtp.port, Security.STARTTLS) if starttls else (smtp.tls_port,
                                                                       Security.SSL)
    server = ServerConfig(name=provider, sender=box, provider=provider, host="127.0.0.1",
                          port=port, security=security, ca_file=str(certs.ca_file),
                          password=Secret(password or server_password), timeout=10, **fields)
    return Fleet(Config(deployment=Deployment(locale=locale), servers=(server,)), plugins)
