"""mailfleet provider plugin for this host's mail server (entry point ``internal_smtp``).

Only the sender address is configured: ``localhost:25``, no AUTH, no TLS. Server options:
``sendmail = "/usr/sbin/sendmail"`` pipes letters to that binary instead of SMTP;
``dkim_selector``, ``dkim_domain``, ``dkim_key_file`` sign every letter with DKIM.
Sender substitution is allowed (the host's MTA is the operator's own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from mailfleet import hookimpl
from mailfleet.config import Deployment
from mailfleet.envelope import Envelope, SendResult, SmtpSession
from mailfleet.errors import Diagnosis, SmtpError
from mailfleet.providers import ProviderInfo
from mailfleet.servers import Server
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
def mailfleet_send(server: Server, session: SmtpSession, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None
                   ) -> Awaitable[list[SendResult]] | None:
    if not signing.configured(server):
        return None
    return signing.send_signed(server, session, envelopes, stop)


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)
