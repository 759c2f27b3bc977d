"""mailfleet provider plugin for this host's mail server (entry point ``internal_smtp``).

Only the sender address is configured: ``localhost:25``, no AUTH, no TLS. Server options:
``sendmail = "/usr/sbin/sendmail"`` pipes letters to that binary instead of SMTP;
``dkim_selector``, ``dkim_domain``, ``dkim_key_file`` sign every letter with DKIM.
Sender substitution is allowed (the host's MTA is the operator's own).
"""

from __future__ import annotations

from collections.abc import Awaitable

from mailfleet.plugin import (
    Deployment,
    Diagnosis,
    OutgoingLetter,
    ProviderInfo,
    Server,
    SmtpError,
    SmtpSession,
    hookimpl,
)
from mailfleet_internal_smtp import config, replies, signing
from mailfleet_internal_smtp.provider import PROVIDER
from mailfleet_internal_smtp.sendmail import open_sendmail, sendmail_path

__all__ = ["PROVIDER"]


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER


@hookimpl
def mailfleet_validate_server(server: Server, deployment: Deployment) -> list[str]:
    return config.validate(server, deployment)


@hookimpl
def mailfleet_connect(server: Server, oauth_token: str | None) -> Awaitable[SmtpSession] | None:
    del oauth_token
    path = sendmail_path(server)
    return open_sendmail(server, path) if path is not None else None


@hookimpl
def mailfleet_sign_letter(server: Server, letter: OutgoingLetter) -> None:
    if signing.configured(server):
        signing.sign_letter(server, letter)


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)
