"""Building a configured Fleet that points at the test SMTP servers."""

from __future__ import annotations

from typing import Any

from mailfleet.config import parse_config
from mailfleet.fleet import Fleet
from mailfleet.plugins import Plugins
from mailfleet.testing.certs import TLSCerts
from mailfleet.testing.pytest_plugin import SMTP_USER
from mailfleet.testing.smtpd import FakeSMTP


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
