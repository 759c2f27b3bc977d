"""Security by port (465 ssl, 587 and 25 starttls), a hint at the other security mode when
the connection fails the way that mode explains, and an empty password variable refused."""

from __future__ import annotations

import pytest
from fleet_config import fleet_for, resolve_with, send_error, server_entry

from mailfleet.errors import ConfigError, Stage
from mailfleet.plugins.providers import Security
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP


@pytest.mark.parametrize(("port", "security"), [(465, Security.SSL),
                                                (587, Security.STARTTLS),
                                                (25, Security.STARTTLS)])
def test_security_defaults_by_port(port: int, security: Security) -> None:
    [server] = resolve_with({"name": "s", "sender": "a@example.com",
                             "host": "smtp.example.com"}, port=port)
    assert server.security is security


def test_no_greeting_over_plain_text_hints_at_implicit_tls(smtp: FakeSMTP,
                                                           tls_certs: TLSCerts) -> None:
    entry = server_entry(smtp, tls_certs, security="none", port=smtp.tls_port, timeout=1.0,
                         login=None, password_env=None)
    error = send_error(fleet_for(entry))
    assert error.diagnosis is not None
    assert 'set security = "ssl"' in error.diagnosis.next_step
    assert "no greeting" in error.diagnosis.summary


def test_tls_answered_in_plain_text_hints_at_starttls(smtp: FakeSMTP,
                                                      tls_certs: TLSCerts) -> None:
    entry = server_entry(smtp, tls_certs, security="ssl", port=smtp.port, timeout=2.0)
    error = send_error(fleet_for(entry))
    assert error.diagnosis is not None
    assert 'set security = "starttls"' in error.diagnosis.next_step


def test_an_empty_password_variable_is_an_error_naming_it(
        smtp: FakeSMTP, tls_certs: TLSCerts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", "")
    fleet = fleet_for(server_entry(smtp, tls_certs))
    with pytest.raises(ConfigError, match="environment variable MAILFLEET_TEST_PASSWORD is "
                                          "empty"):
        fleet.servers[0].password()
    # At send time the same problem is the server's AUTH failure, so it rests and the next
    # server takes over; no empty password reaches the server.
    error = send_error(fleet)
    assert error.stage is Stage.AUTH and "MAILFLEET_TEST_PASSWORD is empty" in str(error)
    assert smtp.events == [] or all(e.stage != "AUTH" for e in smtp.events)
