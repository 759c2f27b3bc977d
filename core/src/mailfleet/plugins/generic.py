"""The core's own plugin: generic SMTP behaviour that every provider plugin may override.

Each implementation is ``trylast`` so a provider's answer comes first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage

from mailfleet.bounces.report import BounceReport
from mailfleet.config import Deployment
from mailfleet.errors import Diagnosis, SmtpError
from mailfleet.hookspecs import hookimpl
from mailfleet.plugins.providers import Security
from mailfleet.sending.diagnosis import generic_diagnosis
from mailfleet.sending.envelope import Envelope, SendResult, SmtpSession
from mailfleet.sending.sender import SenderDecision, SenderRequest, decide, sender_problems
from mailfleet.sending.servers import Server
from mailfleet.smtp.client import open_session


@hookimpl(trylast=True)
def mailfleet_validate_server(server: Server, deployment: Deployment) -> list[str]:
    where = f"servers[{server.name}]"
    problems = []
    if deployment.saas and not server.operator_default:
        if server.kind == "internal":
            problems.append(
                f"{where}.kind: in a SaaS deployment the internal server (this host's MTA) is "
                f"the operator's only; mark it operator_default = true, and let users add an "
                f"external server on port 465 (security = \"ssl\") or 587 (security = "
                f"\"starttls\")")
        elif server.port == 25:
            problems.append(
                f"{where}.port: port 25 is not allowed for user servers in a SaaS deployment "
                f"(outbound 25 is blocked); use 465 with security = \"ssl\" or 587 with "
                f"security = \"starttls\"")
    if server.auth == "password" and server.login and not server.secret.present:
        problems.append(f"{where}: login is set but no password; add password_env = \"VAR\" "
                        f"or password_file = \"/path\"")
    if (server.login and server.auth != "none" and server.security is Security.NONE
            and not server.allow_insecure_auth):
        problems.append(
            f"{where}.security: AUTH over an unencrypted connection is refused; use "
            f"security = \"ssl\" or \"starttls\", or set allow_insecure_auth = true if the "
            f"network is trusted")
    if not 0 < server.port < 65536:
        problems.append(f"{where}.port: {server.port} is not a TCP port; expected 1-65535")
    problems.extend(sender_problems(server))
    info = server.provider_info
    if (info is not None and info.login == "address" and "localpart" not in info.login_fallbacks
            and server.login and "@" not in server.login):
        problems.append(f"{where}.login: {info.name}'s login is the full address (e.g. "
                        f"{server.sender}); remove login or write the full address")
    if info is not None and server.kind == "external" and info.smtp and info.auth:
        if server.auth == "none":
            problems.append(f"{where}.auth: {info.name} requires AUTH; set password_env or "
                            f"password_file" + (" (an app password)" if "app_password"
                                                in info.auth else ""))
        elif server.auth == "xoauth2" and "xoauth2" not in info.auth:
            problems.append(f"{where}.auth: {info.name} takes no OAuth2 over SMTP; remove auth "
                            f"and set password_env or password_file")
    if server.connections < 1:
        problems.append(f"{where}.connections: expected at least 1 (got {server.connections})")
    if server.timeout <= 0:
        problems.append(f"{where}.timeout: expected a positive number of seconds")
    if server.kind == "internal" and not _is_local(server.host) and server.login is None:
        problems.append(f"{where}.host: an internal server is the mail server on this host; "
                        f"{server.host!r} is not local (use kind = \"external\")")
    return problems


def _is_local(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@hookimpl(trylast=True)
def mailfleet_connect(server: Server, oauth_token: str | None) -> Awaitable[SmtpSession]:
    return open_session(server, oauth_token)


@hookimpl(trylast=True)
def mailfleet_sender_policy(server: Server, wanted: SenderRequest) -> SenderDecision:
    """The core's one sender policy (:func:`mailfleet.sending.sender.decide`)."""
    return decide(server, wanted)


@hookimpl(trylast=True)
def mailfleet_send(server: Server, session: SmtpSession, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None) -> Awaitable[list[SendResult]]:
    return session.send(envelopes, stop)


@hookimpl(trylast=True)
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis:
    return generic_diagnosis(server, error, locale)


@hookimpl(trylast=True)
def mailfleet_parse_bounce(message: EmailMessage, raw: bytes) -> BounceReport:
    from mailfleet.bounces.parse import parse_message  # loaded only by bounce readers

    return parse_message(message, raw)
